//! From NATS JetStream into the log.
//!
//! - [`Topology`] and [`ensure_streams`]: the three streams of the contract
//!   (`COMPLAINTS`, `COMPLAINTS_REJECTED`, `COMPLAINT_ALERTS`), created or updated
//!   idempotently at start, with file storage and duplicate windows.
//! - [`Ingester`]: the durable pull consumer loop. For each batch: decode and validate
//!   every message ([`plaint_events::decode`] plus the subject checks), stage the valid ones
//!   in the log (lifecycle, region, duplicates), commit and make durable; then a settling
//!   task publishes each rejection to `complaints.rejected.<reason>`, awaits its ack, and
//!   only then acks the batch (each message explicitly) while the loop commits the next
//!   batch. Nothing is acknowledged that is not durable in the log or in the rejected
//!   stream.
//! - [`IngestMetrics`]: counters an operator asks about (appended, duplicates, rejected by
//!   reason, batches).
//! - [`rejection_headers`]: how a rejection is described on the rejected stream.
//!
//! Only this crate acknowledges JetStream messages of the `COMPLAINTS` stream. It does not
//! run projectors or serve queries.

mod metrics;

use std::{sync::Arc, time::Duration};

use async_nats::{
    jetstream::{self, consumer::pull, stream, Context},
    HeaderMap,
};
use bytes::Bytes;
use futures::StreamExt;
use plaint_events::{decode, subjects, EventType, Limits, RejectReason, Rejection, Timestamp};
use plaint_log::{Candidate, ExpectedVersion, InputWatermark, Log, LogError, Outcome};
use tokio_util::sync::CancellationToken;

pub use metrics::{IngestMetrics, MetricsSnapshot};

/// Names and settings of the JetStream objects plaint uses.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Topology {
    pub subject_prefix: String,
    pub events_stream: String,
    pub rejected_stream: String,
    pub alerts_stream: String,
    /// Durable name of the ingest consumer.
    pub consumer: String,
    /// JetStream's own duplicate window on `COMPLAINTS` (publish retries within it are
    /// dropped by the server; the log's id index catches the rest, however late).
    #[serde(with = "secs")]
    pub duplicate_window: Duration,
    /// Duplicate window of the alerts stream: alerts re-sent after a restart within it
    /// reach nobody twice.
    #[serde(with = "secs")]
    pub alerts_duplicate_window: Duration,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            subject_prefix: "complaints".into(),
            events_stream: "COMPLAINTS".into(),
            rejected_stream: "COMPLAINTS_REJECTED".into(),
            alerts_stream: "COMPLAINT_ALERTS".into(),
            consumer: "plaint-ingest".into(),
            duplicate_window: Duration::from_secs(120),
            alerts_duplicate_window: Duration::from_secs(24 * 3600),
        }
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// Tuning of the consumer loop.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Most messages handled (and committed as one segment) per batch.
    pub batch_size: usize,
    /// How long JetStream waits for an ack before redelivering.
    pub ack_wait: Duration,
    pub limits: Limits,
    /// Rejections in flight at once (publish acks not yet awaited). Must stay below the
    /// JetStream context's `max_ack_inflight`, which it shares with the projectors: a
    /// publish beyond that waits for a permit that only an awaited ack returns.
    pub ack_window: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            batch_size: 1000,
            ack_wait: Duration::from_secs(30),
            limits: Limits::default(),
            ack_window: 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot set up JetStream stream {stream}: {detail}. Is JetStream enabled on the server (`nats-server -js`) and does this user have permission?")]
    Setup { stream: String, detail: String },
    #[error("cannot write to the log ({0}); nothing unwritten was acknowledged. Free disk space or fix the disk, then start `plaint serve` again: JetStream redelivers the rest")]
    Log(#[from] LogError),
}

/// Creates or updates the contract's streams. Safe to call at every start and from
/// several processes.
pub async fn ensure_streams(js: &Context, topology: &Topology) -> Result<(), IngestError> {
    let prefix = &topology.subject_prefix;
    let configs = [
        stream::Config {
            name: topology.events_stream.clone(),
            subjects: vec![subjects::events_wildcard(prefix)],
            storage: stream::StorageType::File,
            duplicate_window: topology.duplicate_window,
            ..Default::default()
        },
        stream::Config {
            name: topology.rejected_stream.clone(),
            subjects: vec![subjects::rejected_wildcard(prefix)],
            storage: stream::StorageType::File,
            duplicate_window: topology.duplicate_window,
            ..Default::default()
        },
        stream::Config {
            name: topology.alerts_stream.clone(),
            subjects: vec![
                subjects::alerts_wildcard(prefix),
                subjects::escalations_wildcard(prefix),
            ],
            storage: stream::StorageType::File,
            duplicate_window: topology.alerts_duplicate_window,
            ..Default::default()
        },
    ];
    for config in configs {
        let name = config.name.clone();
        js.create_or_update_stream(config)
            .await
            .map_err(|e| IngestError::Setup {
                stream: name.clone(),
                detail: e.to_string(),
            })?;
    }
    Ok(())
}

/// Headers that describe a rejection on `complaints.rejected.<reason>`. The payload is the
/// original message, byte for byte.
pub fn rejection_headers(
    rejection: &Rejection,
    original_subject: &str,
    stream_seq: u64,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Plaint-Reject-Reason", rejection.reason.as_str());
    // Header values cannot hold newlines; details are one line by construction, but a
    // serde message may quote input, so flatten defensively.
    let detail: String = rejection
        .detail
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    headers.insert("Plaint-Reject-Detail", detail.as_str());
    headers.insert("Plaint-Original-Subject", original_subject);
    headers.insert("Plaint-Original-Seq", stream_seq.to_string().as_str());
    // Redelivery of the same poison message must not fill the rejected stream twice.
    headers.insert("Nats-Msg-Id", format!("rejected-{stream_seq}").as_str());
    headers
}

/// How long one pull request waits for messages; also the longest a graceful shutdown
/// waits for a quiet stream.
const PULL_EXPIRES: Duration = Duration::from_millis(1000);

/// How long a batch waits for more messages of the same pull request before it is
/// committed.
const TOP_UP: Duration = Duration::from_millis(2);

/// The ingest consumer. One per data directory.
pub struct Ingester {
    log: Log,
    js: Context,
    topology: Topology,
    options: IngestOptions,
    metrics: Arc<IngestMetrics>,
}

/// What happened to one message of a batch.
enum Verdict {
    Valid {
        event: Box<plaint_events::Event>,
        region: String,
    },
    Invalid(Rejection),
}

impl Ingester {
    pub fn new(log: Log, js: Context, topology: Topology, options: IngestOptions) -> Self {
        // Until the consumer has been read, nobody knows what waits upstream.
        log.set_input_watermark(InputWatermark::Unknown);
        Ingester {
            log,
            js,
            topology,
            options,
            metrics: Arc::new(IngestMetrics::default()),
        }
    }

    pub fn metrics(&self) -> Arc<IngestMetrics> {
        self.metrics.clone()
    }

    async fn consumer(&self) -> Result<jetstream::consumer::Consumer<pull::Config>, String> {
        let stream = self
            .js
            .get_stream(&self.topology.events_stream)
            .await
            .map_err(|e| e.to_string())?;
        // An empty log with a consumer that already acknowledged messages means a new
        // data directory behind an old consumer: start the consumer over, or the stream's
        // history would never reach this log (duplicates are recognised, so it is safe).
        if self.log.last_seq() == 0 {
            if let Ok(mut existing) = stream
                .get_consumer::<pull::Config>(&self.topology.consumer)
                .await
            {
                let acked = existing
                    .info()
                    .await
                    .map(|i| i.ack_floor.stream_sequence)
                    .unwrap_or(0);
                if acked > 0 {
                    tracing::warn!(consumer = %self.topology.consumer, acked, "the log is empty but the consumer is not: replaying the stream from its start");
                    stream
                        .delete_consumer(&self.topology.consumer)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        stream
            .create_consumer(pull::Config {
                durable_name: Some(self.topology.consumer.clone()),
                description: Some("plaint ingest: JetStream → sled log".into()),
                // Explicit, not All: after a crash, messages delivered to the dead process
                // stay pending until `ack_wait`; an AckAll on newer messages would
                // acknowledge them too, and they would never reach the log.
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: self.options.ack_wait,
                // The 2.9 default of 1,000 silently caps every pull.
                max_ack_pending: (self.options.batch_size * 20) as i64,
                filter_subject: subjects::events_wildcard(&self.topology.subject_prefix),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())
    }

    /// Consumes until `shutdown` is cancelled. Batches in progress when the signal comes
    /// are finished (committed, rejections stored, acknowledged) before returning; a batch
    /// whose write cannot be made durable is abandoned unacknowledged (JetStream
    /// redelivers it).
    ///
    /// Two stages run at once: this loop fetches, validates and commits batch N+1 while
    /// a settling task stores batch N's rejections and acknowledges its messages. Each
    /// batch is acknowledged only after its own commit returned, so the overlap changes
    /// the rate, not the guarantee; a poison flood then costs its rejection round trips
    /// beside the commits instead of between them.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), IngestError> {
        ensure_streams_with_retry(&self.js, &self.topology, &shutdown).await?;
        let (to_settle, mut settle_queue) = tokio::sync::mpsc::channel::<Committed>(SETTLE_QUEUE);
        let settler = Settler {
            js: self.js.clone(),
            prefix: self.topology.subject_prefix.clone(),
            window: self.options.ack_window.max(1),
            metrics: self.metrics.clone(),
        };
        let settle_shutdown = shutdown.clone();
        let settling = tokio::spawn(async move {
            while let Some(batch) = settle_queue.recv().await {
                settler.settle(batch, &settle_shutdown).await;
            }
        });
        let consumed = self.consume(&shutdown, &to_settle).await;
        // Committed batches are settled even when the loop stops on a storage error:
        // what is durable is acknowledged.
        drop(to_settle);
        if let Err(error) = settling.await {
            tracing::error!(%error, "the settling task failed; unacknowledged messages will be redelivered and deduplicated");
        }
        tracing::info!("ingest stopped");
        consumed
    }

    async fn consume(
        &self,
        shutdown: &CancellationToken,
        to_settle: &tokio::sync::mpsc::Sender<Committed>,
    ) -> Result<(), IngestError> {
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            let consumer = match self.consumer().await {
                Ok(c) => c,
                Err(error) => {
                    self.log.set_input_watermark(InputWatermark::Unknown);
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot reach the ingest consumer; is NATS up?");
                    sleep_or_cancel(backoff, shutdown).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            tracing::info!(consumer = %self.topology.consumer, "ingest consuming");
            backoff = Duration::from_millis(200);
            // One pull request at a time, each read to its end: when shutdown comes, no
            // message is left delivered-but-unread (it would wait `ack_wait` for
            // redelivery). Within a request, whatever has arrived is handled as one batch,
            // so a busy stream gives full batches and a quiet one low latency.
            while !shutdown.is_cancelled() {
                let request = consumer
                    .batch()
                    .max_messages(self.options.batch_size)
                    .expires(PULL_EXPIRES)
                    .messages()
                    .await;
                let request = match request {
                    Ok(r) => r,
                    Err(error) => {
                        self.log.set_input_watermark(InputWatermark::Unknown);
                        tracing::warn!(%error, "pull request failed; is NATS up? re-creating the consumer");
                        sleep_or_cancel(backoff, shutdown).await;
                        break;
                    }
                };
                let mut chunks = request.ready_chunks(self.options.batch_size);
                let mut broken = false;
                let mut ended = false;
                let mut received = false;
                while !ended {
                    let Some(first) = chunks.next().await else {
                        break;
                    };
                    received = true;
                    // Top the batch up with what arrives within TOP_UP of its first
                    // message: under load one commit (one fsync) then covers a full batch
                    // instead of whatever happened to be in the socket buffer, and the
                    // deadline is fixed so a steady trickle cannot keep a batch open (a
                    // per-chunk timeout let 5,000 msg/s grow batches for ~100 ms).
                    let mut items = first;
                    let deadline = tokio::time::Instant::now() + TOP_UP;
                    while items.len() < self.options.batch_size {
                        match tokio::time::timeout_at(deadline, chunks.next()).await {
                            Ok(Some(more)) => items.extend(more),
                            Ok(None) => {
                                ended = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let mut batch = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            Ok(message) => batch.push(message),
                            Err(error) => {
                                tracing::warn!(%error, "pull consumer error; re-creating the consumer");
                                broken = true;
                            }
                        }
                    }
                    if !batch.is_empty() {
                        let watermark = batch.last().map_or(InputWatermark::Unknown, after);
                        let committed = self.commit_batch(batch).await?;
                        self.log.set_input_watermark(watermark);
                        if to_settle.send(committed).await.is_err() {
                            // The settling task only ends when this sender is dropped.
                            unreachable!("the settling task outlives the consume loop");
                        }
                    }
                }
                if broken {
                    self.log.set_input_watermark(InputWatermark::Unknown);
                    sleep_or_cancel(backoff, shutdown).await;
                    break;
                }
                if !received {
                    // A pull request that expired empty: nothing waits upstream.
                    self.log.set_input_watermark(InputWatermark::Complete);
                }
            }
        }
        Ok(())
    }

    /// Decodes and validates one batch and commits its valid events durably. What is
    /// left to do (store the rejections, acknowledge) is returned for the settler.
    async fn commit_batch(&self, batch: Vec<jetstream::Message>) -> Result<Committed, IngestError> {
        let started = std::time::Instant::now();
        let now = Timestamp::now();
        let prefix = &self.topology.subject_prefix;
        // Valid events go to the log; the stateless rejections stay here.
        let mut valid: Vec<Option<(plaint_events::Event, String)>> =
            Vec::with_capacity(batch.len());
        let mut invalid: Vec<Option<Rejection>> = Vec::with_capacity(batch.len());
        for m in &batch {
            match verdict(prefix, &m.subject, &m.payload, now, &self.options.limits) {
                Verdict::Valid { event, region } => {
                    valid.push(Some((*event, region)));
                    invalid.push(None);
                }
                Verdict::Invalid(r) => {
                    valid.push(None);
                    invalid.push(Some(r));
                }
            }
        }
        let payloads: Vec<Bytes> = batch.iter().map(|m| m.payload.clone()).collect();
        let decoded = started.elapsed();

        // Stage and commit on a blocking thread: the commit fsyncs.
        let log = self.log.clone();
        let staged = tokio::task::spawn_blocking(move || stage_and_commit(&log, &valid, &payloads))
            .await
            .expect("the staging task does not panic");
        let outcomes = match staged {
            Ok(outcomes) => outcomes,
            // sled 0.34 returns the same error from every later write and flush once one
            // failed, until the database is reopened: retrying in-process cannot succeed.
            // Nothing of this batch was acknowledged, so stopping loses nothing; the
            // supervisor (deploy/plaint.service) restarts plaint and JetStream redelivers.
            Err(error) => {
                self.metrics
                    .storage_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(%error, "cannot write to the log; stopping without acknowledging the batch");
                return Err(IngestError::Log(error));
            }
        };
        let committed = started.elapsed();

        let mut rejections = Vec::new();
        for ((message, invalid), outcome) in batch.iter().zip(invalid).zip(&outcomes) {
            let rejection = match (invalid, outcome) {
                (Some(r), _) => Some(r),
                (_, Some(Outcome::Rejected(r))) => Some(r.clone()),
                (_, Some(Outcome::Appended(_))) => {
                    self.metrics
                        .appended
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    None
                }
                (_, Some(Outcome::Duplicate(_))) => {
                    self.metrics
                        .duplicates
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    None
                }
                _ => None,
            };
            if let Some(rejection) = rejection {
                self.metrics.record_rejection(rejection.reason);
                let stream_seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
                tracing::debug!(reason = %rejection.reason, stream_seq, "event rejected");
                rejections.push((
                    rejection,
                    message.subject.to_string(),
                    stream_seq,
                    message.payload.clone(),
                ));
            }
        }
        Ok(Committed {
            messages: batch,
            rejections,
            started,
            decoded,
            committed,
        })
    }
}

/// How far the log holds the stream once `last` (the last message of a committed batch) is
/// in it: all of it if nothing more was pending for the consumer, else everything the
/// stream stored before `last` (the stream is read in order).
fn after(last: &jetstream::Message) -> InputWatermark {
    let Ok(info) = last.info() else {
        return InputWatermark::Unknown;
    };
    if info.pending == 0 {
        return InputWatermark::Complete;
    }
    match Timestamp::from_nanosecond(info.published.unix_timestamp_nanos()) {
        Ok(stored) => InputWatermark::Through(stored),
        Err(_) => InputWatermark::Unknown,
    }
}

/// Batches committed but not yet settled that the consume loop may run ahead by: enough
/// to overlap one batch's settling with the next one's commit, few enough that
/// unacknowledged messages do not pile up towards `max_ack_pending`.
const SETTLE_QUEUE: usize = 2;

/// A batch whose valid events are durable in the log and whose rejections still have to
/// be stored before its messages are acknowledged.
struct Committed {
    messages: Vec<jetstream::Message>,
    rejections: Vec<(Rejection, String, u64, Bytes)>,
    started: std::time::Instant,
    decoded: Duration,
    committed: Duration,
}

/// Stores rejections and acknowledges committed batches, in commit order.
struct Settler {
    js: Context,
    prefix: String,
    /// See [`IngestOptions::ack_window`].
    window: usize,
    metrics: Arc<IngestMetrics>,
}

impl Settler {
    async fn settle(&self, batch: Committed, shutdown: &CancellationToken) {
        if !self.publish_rejections(&batch.rejections, shutdown).await {
            // Shutting down with a rejection not stored: leave the batch unacknowledged;
            // its events are durable, so the redelivery is a duplicate, and the
            // rejection is published again then (same Nats-Msg-Id).
            return;
        }
        for message in &batch.messages {
            if let Err(error) = message.ack().await {
                // Not fatal: the batch is durable, a redelivery is a duplicate.
                tracing::warn!(%error, "ack failed; the message will be redelivered and deduplicated");
            }
        }
        let elapsed = batch.started.elapsed();
        tracing::debug!(
            size = batch.messages.len(),
            rejected = batch.rejections.len(),
            decode_ms = batch.decoded.as_secs_f64() * 1e3,
            commit_ms = (batch.committed - batch.decoded).as_secs_f64() * 1e3,
            total_ms = elapsed.as_secs_f64() * 1e3,
            "batch acknowledged"
        );
        self.metrics.record_batch(batch.messages.len(), elapsed);
    }

    /// Publishes rejections and waits for JetStream to acknowledge each, retrying until it
    /// does: a rejection must be stored before its message is acknowledged.
    async fn publish_rejections(
        &self,
        rejections: &[(Rejection, String, u64, Bytes)],
        shutdown: &CancellationToken,
    ) -> bool {
        let prefix = &self.prefix;
        // All of a batch's rejections are in flight at once and their acks awaited
        // together, so a flood of poison messages costs one round trip per batch, not one
        // per message. Failed ones are retried until stored.
        let mut pending: Vec<usize> = (0..rejections.len()).collect();
        let mut backoff = Duration::from_millis(100);
        let window = self.window;
        while !pending.is_empty() {
            let mut acks = std::collections::VecDeque::with_capacity(pending.len().min(window));
            let mut failed = Vec::new();
            for &i in &pending {
                if acks.len() >= window {
                    let (i, sent) = acks.pop_front().expect("the window is not empty");
                    if let Err(error) = stored(sent).await {
                        tracing::warn!(%error, "cannot store a rejection; retrying before acknowledging the batch");
                        failed.push(i);
                    }
                }
                let (rejection, subject, stream_seq, payload) = &rejections[i];
                let headers = rejection_headers(rejection, subject, *stream_seq);
                let sent = self
                    .js
                    .publish_with_headers(
                        subjects::rejected(prefix, rejection.reason),
                        headers,
                        payload.clone(),
                    )
                    .await;
                acks.push_back((i, sent));
            }
            for (i, sent) in acks {
                if let Err(error) = stored(sent).await {
                    tracing::warn!(%error, "cannot store a rejection; retrying before acknowledging the batch");
                    failed.push(i);
                }
            }
            pending = failed;
            if !pending.is_empty() {
                if sleep_or_cancel(backoff, shutdown).await {
                    return false;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        true
    }
}

/// Waits for a publish's ack.
async fn stored(
    sent: Result<
        async_nats::jetstream::context::PublishAckFuture,
        async_nats::jetstream::context::PublishError,
    >,
) -> Result<(), String> {
    match sent {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Returns true if cancelled.
async fn sleep_or_cancel(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}

async fn ensure_streams_with_retry(
    js: &Context,
    topology: &Topology,
    shutdown: &CancellationToken,
) -> Result<(), IngestError> {
    let mut attempts = 0;
    loop {
        match ensure_streams(js, topology).await {
            Ok(()) => return Ok(()),
            Err(error) if attempts < 10 => {
                attempts += 1;
                tracing::warn!(%error, attempts, "stream setup failed; retrying");
                if sleep_or_cancel(Duration::from_millis(500 * attempts), shutdown).await {
                    return Ok(());
                }
            }
            Err(error) => return Err(error),
        }
    }
}

/// The stateless checks of one message: payload validation, then the subject: it must be
/// `<prefix>.events.<region>.<kind>` with a valid region token and the kind of the
/// event's type. (The region's match with the complaint is stateful: the log checks it.)
fn verdict(
    prefix: &str,
    subject: &str,
    payload: &[u8],
    now: Timestamp,
    limits: &Limits,
) -> Verdict {
    let event = match decode(payload, now, limits) {
        Ok(e) => e,
        Err(r) => return Verdict::Invalid(r),
    };
    let Some((region, kind)) = subjects::parse_event(prefix, subject) else {
        return Verdict::Invalid(Rejection::new(
            RejectReason::SchemaViolation,
            format!("subject {subject:?} is not {prefix}.events.<region>.<kind>"),
        ));
    };
    if !plaint_events::is_token(region) {
        return Verdict::Invalid(Rejection::new(
            RejectReason::SchemaViolation,
            format!("region token {region:?} in the subject must match [a-z0-9_-]{{1,64}}"),
        ));
    }
    let expected_kind = event.event_type().subject_kind();
    if kind != expected_kind {
        let hint = EventType::from_subject_kind(kind)
            .map(|t| t.as_str())
            .unwrap_or("no known type");
        return Verdict::Invalid(Rejection::new(
            RejectReason::SubjectTypeMismatch,
            format!("subject kind {kind:?} ({hint}) does not match type {}; publish it on {prefix}.events.{region}.{expected_kind}", event.event_type()),
        ));
    }
    Verdict::Valid {
        region: region.to_owned(),
        event: Box::new(event),
    }
}

fn stage_and_commit(
    log: &Log,
    verdicts: &[Option<(plaint_events::Event, String)>],
    payloads: &[Bytes],
) -> Result<Vec<Option<Outcome>>, LogError> {
    let writer = log.writer();
    let mut pending = writer.begin();
    let mut outcomes = Vec::with_capacity(verdicts.len());
    for (verdict, payload) in verdicts.iter().zip(payloads) {
        let outcome = match verdict {
            Some((event, region)) => Some(writer.stage(
                &mut pending,
                Candidate {
                    event,
                    bytes: payload,
                    subject_region: Some(region),
                    expected: ExpectedVersion::Any,
                },
            )?),
            None => None,
        };
        outcomes.push(outcome);
    }
    writer.commit(pending)?;
    Ok(outcomes)
}
