//! plaint's integration tests: real `nats-server -js` processes on free ports with temp
//! stores (see `plaint_testkit::NatsServer`), real sled databases in temp dirs.
//! Every await has a timeout; nothing sleeps waiting for a deadline.

/// Shared harness: a node (nats-server + plaint serve in-process) and helpers.
mod support;

/// Escalation: a scripted day's queues, concurrent claims, restart, rebuild.
mod escalation;
/// Ingest: ordering, gaplessness, idempotency, redelivery, restart.
mod ingest;
/// What plaint serve logs at INFO and above: no customer data, complaint text or secrets.
mod logs;
/// Replay filters, offline vs online, rebuild digests, the NATS API.
mod queries;
/// One test per rejection reason, poison messages in the middle of a batch.
mod rejections;
/// deploy/nats-server.conf: each role may do what the file says and is refused the rest.
mod security;
/// SLA: a scripted scenario's alerts and breach events, restart, rebuild.
mod sla;
/// Trends: imported history plus an injected multi-region rise.
mod trends;
