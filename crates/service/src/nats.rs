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
    tracing::info!(url = %config.url, auth, "connecting to NATS");
    let connect = options.connect(&config.url);
    // retry_on_initial_connect makes connect return at once; the first request waits for
    // the connection. Bound the wait so a wrong URL is reported instead of hanging.
    let client = connect.await.map_err(|e| ConnectError::Connect {
        url: config.url.clone(),
        detail: e.to_string(),
    })?;
    Ok(client)
}

/// A JetStream context with the configured publish window.
pub fn jetstream(client: Client, config: &NatsConfig) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .max_ack_inflight(config.max_ack_inflight)
        .build(client)
}
