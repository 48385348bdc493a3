//! plaint's configuration: a TOML file (see `deploy/plaint.toml`), then environment
//! variables, then command-line flags, each overriding the one before.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use plaint_events::Limits;
use plaint_ingest::Topology;
use plaint_log::Durability;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub nats: NatsConfig,
    /// The data directory; the sled database is `<data>/plaint.sled`.
    pub data: PathBuf,
    pub durability: Durability,
    /// Save the log's index snapshot every this many events (0: only at shutdown). A start
    /// after a crash rescans at most this many index records.
    pub index_snapshot_every: u64,
    pub topology: Topology,
    pub ingest: IngestConfig,
    pub api: ApiConfig,
    /// Projector sections are kept as raw TOML here and parsed by their crates, so a
    /// projector's config lives next to its code.
    pub sla: Option<toml::Value>,
    pub trends: Option<toml::Value>,
    pub escalation: Option<toml::Value>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats: NatsConfig::default(),
            data: PathBuf::from("./data"),
            durability: Durability::Fsync,
            index_snapshot_every: plaint_log::LogOptions::default().index_snapshot_every,
            topology: Topology::default(),
            ingest: IngestConfig::default(),
            api: ApiConfig::default(),
            sla: None,
            trends: None,
            escalation: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    pub url: String,
    /// Connection name shown in the server's monitoring.
    pub name: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// File holding an NKey seed (`SU...`).
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (JWT + NKey seed), as issued by `nsc`.
    pub credentials_file: Option<PathBuf>,
    pub tls: Option<TlsConfig>,
    /// Outstanding JetStream publish acks allowed (publish, import, effects).
    pub max_ack_inflight: usize,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            name: "plaint".into(),
            user: None,
            password: None,
            token: None,
            nkey_seed_file: None,
            credentials_file: None,
            tls: None,
            max_ack_inflight: 4096,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Require TLS even if the URL is `nats://`.
    pub required: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    pub batch_size: usize,
    pub ack_wait_seconds: u64,
    pub max_payload_bytes: usize,
    pub max_future_skew_seconds: u64,
    pub max_tags: usize,
    pub max_text_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        let limits = Limits::default();
        IngestConfig {
            batch_size: 1000,
            ack_wait_seconds: 30,
            max_payload_bytes: limits.max_payload_bytes,
            max_future_skew_seconds: limits.max_future_skew.as_secs(),
            max_tags: limits.max_tags,
            max_text_bytes: limits.max_text_bytes,
        }
    }
}

impl IngestConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            max_payload_bytes: self.max_payload_bytes,
            max_future_skew: Duration::from_secs(self.max_future_skew_seconds),
            max_tags: self.max_tags,
            max_text_bytes: self.max_text_bytes,
            ..Limits::default()
        }
    }

    pub fn options(&self) -> plaint_ingest::IngestOptions {
        plaint_ingest::IngestOptions {
            batch_size: self.batch_size.max(1),
            ack_wait: Duration::from_secs(self.ack_wait_seconds.max(1)),
            limits: self.limits(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve `complaints.api.>` from `plaint serve`.
    pub enabled: bool,
    /// Largest replay page sent in one reply (must stay under the server's max_payload).
    pub replay_page_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            replay_page_bytes: 512 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}. See deploy/plaint.toml for every key")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("environment variable {name}={value:?} is not valid: {why}")]
    Env {
        name: &'static str,
        value: String,
        why: String,
    },
}

impl Config {
    /// Reads the file if given (a missing file named explicitly is an error), then applies
    /// environment overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::parse(path, &text)?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        Ok(config)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// `PLAINT_NATS_URL`, `PLAINT_DATA`, `PLAINT_DURABILITY`, `PLAINT_SUBJECT_PREFIX`,
    /// `PLAINT_NATS_USER`, `PLAINT_NATS_PASSWORD`, `PLAINT_NATS_TOKEN`,
    /// `PLAINT_NATS_CREDS`, `PLAINT_NATS_NKEY`.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = env("PLAINT_NATS_URL") {
            self.nats.url = v;
        }
        if let Some(v) = env("PLAINT_DATA") {
            self.data = v.into();
        }
        if let Some(v) = env("PLAINT_DURABILITY") {
            self.durability = match v.as_str() {
                "fsync" => Durability::Fsync,
                "flush" => Durability::Flush,
                _ => {
                    return Err(ConfigError::Env {
                        name: "PLAINT_DURABILITY",
                        value: v,
                        why: "use \"fsync\" or \"flush\"".into(),
                    })
                }
            };
        }
        if let Some(v) = env("PLAINT_SUBJECT_PREFIX") {
            self.topology.subject_prefix = v;
        }
        if let Some(v) = env("PLAINT_NATS_USER") {
            self.nats.user = Some(v);
        }
        if let Some(v) = env("PLAINT_NATS_PASSWORD") {
            self.nats.password = Some(v);
        }
        if let Some(v) = env("PLAINT_NATS_TOKEN") {
            self.nats.token = Some(v);
        }
        if let Some(v) = env("PLAINT_NATS_CREDS") {
            self.nats.credentials_file = Some(v.into());
        }
        if let Some(v) = env("PLAINT_NATS_NKEY") {
            self.nats.nkey_seed_file = Some(v.into());
        }
        Ok(())
    }

    pub fn db_path(&self) -> PathBuf {
        self.data.join("plaint.sled")
    }

    pub fn log_options(&self) -> plaint_log::LogOptions {
        plaint_log::LogOptions {
            durability: self.durability,
            index_snapshot_every: self.index_snapshot_every,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file() {
        let mut config = Config::parse(
            Path::new("x.toml"),
            "data = \"/srv/plaint\"\n[nats]\nurl = \"nats://a:4222\"\n",
        )
        .unwrap();
        assert_eq!(config.nats.url, "nats://a:4222");
        config
            .apply_env(|k| match k {
                "PLAINT_NATS_URL" => Some("nats://b:4222".into()),
                "PLAINT_DURABILITY" => Some("flush".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.nats.url, "nats://b:4222");
        assert_eq!(config.durability, Durability::Flush);
        assert_eq!(config.data, PathBuf::from("/srv/plaint"));
    }

    #[test]
    fn unknown_keys_and_bad_env_are_clear_errors() {
        let err = Config::parse(Path::new("x.toml"), "dat = 1").unwrap_err();
        assert!(err.to_string().contains("dat"), "{err}");
        let err = Config::default()
            .apply_env(|k| (k == "PLAINT_DURABILITY").then(|| "sometimes".into()))
            .unwrap_err();
        assert!(err.to_string().contains("fsync"), "{err}");
    }

    #[test]
    fn the_shipped_example_parses_and_its_projectors_validate() {
        let text = include_str!("../../../deploy/plaint.toml");
        let config = Config::parse(Path::new("deploy/plaint.toml"), text).unwrap();
        assert!(config.sla.is_some() && config.escalation.is_some() && config.trends.is_some());
        crate::serve_projectors(&config).unwrap();
    }
}
