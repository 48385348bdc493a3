//! `plaint serve` and everything the CLI shares with it.
//!
//! - [`Config`]: the TOML file with environment overrides ([`config`]).
//! - [`nats::connect`]: NATS with user/password, token, NKey, credentials file and TLS.
//! - [`Api`]: the query and command handlers ([`api`]), used by the NATS service of a
//!   running server and, in-process, by the CLI working offline on a data directory.
//! - [`replay`]: filtered NDJSON replay in bounded pages.
//! - [`serve`]: ingest + projectors + API under one shutdown signal ([`Node`]).
//! - [`NatsEffects`]: carries projector effects out over JetStream.
//!
//! It does not parse command lines (the binary does) and decides nothing about complaints
//! (the projector crates do).

pub mod api;
pub mod config;
pub mod nats;
pub mod replay;
mod serve;
pub mod views;

pub use api::{Api, ApiError, ApiReply, LogApi};
pub use config::Config;
pub use serve::{
    open_offline, open_offline_log, projectors as serve_projectors, serve, serve_with_clock,
    NatsEffects, Node, Projectors,
};

/// `<prefix>.api`
pub fn api_subject(prefix: &str) -> String {
    plaint_events::subjects::api(prefix)
}
