//! Complaint events as plaint understands them.
//!
//! Every message on an events subject is a CloudEvents 1.0 JSON object (see
//! the "Contract" section of README.md). This crate turns those bytes into typed Rust values and decides,
//! without any I/O, whether they may enter the log.
//!
//! - [`Event`], [`EventBody`] and one struct per `data` shape ([`ComplaintFiled`],
//!   [`SlaBreached`], ...): the typed events, named in the past tense.
//! - [`EventType`]: the closed set of `type` strings, with the subject token of each.
//! - [`decode`] / [`Limits`]: bytes → validated [`Event`], or a [`Rejection`] carrying a
//!   [`RejectReason`] and a precise detail. Checks the size before parsing anything.
//! - [`lifecycle`]: the per-complaint state machine the ingester enforces
//!   ([`lifecycle::StreamStatus`], [`lifecycle::check`]).
//! - [`subjects`]: subject names (`complaints.events.<region>.<kind>`, rejected, alerts).
//! - [`own`]: building the events plaint writes itself, with deterministic UUIDv5 ids.
//! - [`Money`]: exact decimal amounts for authority limits.
//!
//! What this crate does not do: storage, NATS, clocks. Whoever calls [`decode`] passes
//! the current time, so validation is a pure function of (bytes, now, limits).

mod decode;
pub mod lifecycle;
mod model;
mod money;
pub mod own;
mod reject;
pub mod subjects;

pub use decode::{decode, decode_stored, is_token, Limits};
pub use model::*;
pub use money::Money;
pub use reject::{RejectReason, Rejection};

/// Timestamps throughout plaint are UTC instants; offsets given by producers are kept in
/// the stored bytes but normalised away in typed values.
pub use jiff::Timestamp;
