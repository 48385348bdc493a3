//! Connecting to NATS with the configured credentials and TLS.

use async_nats::{jetstream, Client, ConnectOptions};

use crate::config::NatsConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to NATS at {url}: {detail}. Is nats-server running (`nats-server -js`) and is --nats / PLAINT_NATS_URL right?")]
    Connect { url: String, detail: String },
    #[error("cannot read NATS credentials from {path}: {detail}")]
    Credentials { path: String, detail: String },
}

/// Connects with the configured authentication. Secrets are never logged: only the URL
/// and which kind of authentication is in use.
pub async fn connect(config: &NatsConfig) -> Result<Client, ConnectError> {
    let mut options = ConnectOptions::new()
        .name(&config.name)
        .retry_on_initial_connect();
    let mut auth = "none";
    // Credentials in the URL (`nats://user:password@host`) are used as user/password, and
    // the URL is logged without them.
    let (url, url_credentials) = split_credentials(&config.url);
    if let (Some((user, password)), None) = (url_credentials, &config.user) {
        options = options.user_and_password(user, password);
        auth = "user/password (from the URL)";
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
        auth = "user/password";
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
        auth = "token";
    }
    if let Some(path) = &config.nkey_seed_file {
        let seed = std::fs::read_to_string(path).map_err(|e| ConnectError::Credentials {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        options = options.nkey(seed.trim().to_owned());
        auth = "nkey";
    }
    if let Some(path) = &config.credentials_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| ConnectError::Credentials {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        auth = "credentials file";
    }
    if let Some(tls) = &config.tls {
        options = options.require_tls(tls.required);
        if let Some(ca) = &tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    options = options.event_callback(|event| async move {
        match event {
            async_nats::Event::Disconnected => tracing::warn!("NATS connection lost; reconnecting"),
            async_nats::Event::Connected => tracing::info!("NATS connected"),
            other => tracing::info!(event = %other, "NATS event"),
        }
    });
    tracing::info!(%url, auth, "connecting to NATS");
    let connect = options.connect(url.as_str());
    // retry_on_initial_connect makes connect return at once; the first request waits for
    // the connection. Bound the wait so a wrong URL is reported instead of hanging.
    let client = connect.await.map_err(|e| ConnectError::Connect {
        url: url.clone(),
        detail: e.to_string(),
    })?;
    Ok(client)
}

/// Splits `scheme://user:password@rest` into the URL without its userinfo and the
/// credentials (of the first URL that has some, for comma-separated server lists).
pub fn split_credentials(url: &str) -> (String, Option<(String, String)>) {
    let mut credentials = None;
    let cleaned: Vec<String> = url
        .split(',')
        .map(|one| {
            let (scheme, rest) = match one.split_once("://") {
                Some((s, r)) => (Some(s), r),
                None => (None, one),
            };
            let (userinfo, host) = match rest.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, rest),
            };
            if let Some(userinfo) = userinfo {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                credentials.get_or_insert((user.to_owned(), password.to_owned()));
            }
            match scheme {
                Some(s) => format!("{s}://{host}"),
                None => host.to_owned(),
            }
        })
        .collect();
    (cleaned.join(","), credentials)
}

/// A JetStream context with the configured publish window.
pub fn jetstream(client: Client, config: &NatsConfig) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .max_ack_inflight(config.max_ack_inflight)
        .build(client)
}

#[cfg(test)]
mod tests {
    use super::split_credentials;

    #[test]
    fn url_credentials_are_split_off() {
        assert_eq!(
            split_credentials("nats://u:p%40ss@host:4222"),
            (
                "nats://host:4222".into(),
                Some(("u".into(), "p%40ss".into()))
            )
        );
        assert_eq!(
            split_credentials("nats://127.0.0.1:4222"),
            ("nats://127.0.0.1:4222".into(), None)
        );
    }
}
