//! The query and command handlers behind `complaints.api.>`.
//!
//! [`Api::handle`] is one function from (command, JSON request) to a reply. `plaint serve`
//! exposes it as a NATS service (one endpoint per command, discoverable through
//! `$SRV.PING/INFO/STATS`), and the CLI calls the very same function in-process when it
//! works offline on a data directory, so both paths print identical output.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use plaint_complaints::{ComplaintState, ComplaintsProjector};
use plaint_ingest::{IngestMetrics, MetricsSnapshot};
use plaint_log::{Log, LogStatus};
use plaint_runner::{ProjectorHandle, ProjectorStatus};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::replay::{self, ReplayFilter};

/// Every command of the API, with the subject suffix it is served on.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "status",
        "log head, chain head, projector checkpoints and lag, counts",
    ),
    (
        "complaint",
        "one complaint's state and full history; request {\"id\": ...}",
    ),
    (
        "replay",
        "one page of a filtered replay; request {\"filter\": ..., \"start\": N}",
    ),
    ("verify", "walk the hash chain and indexes"),
    (
        "digest",
        "digest of a projector's view; request {\"projector\": ...}",
    ),
    (
        "sla.at_risk",
        "open deadlines at risk or passed; request {\"filter\": SlaFilter}",
    ),
    (
        "sla.breaches",
        "open breaches; request {\"filter\": SlaFilter}",
    ),
    (
        "sla.complaint",
        "one complaint's SLA state; request {\"id\": ...}",
    ),
    (
        "sla.compliance",
        "compliance report; request {\"query\": ComplianceQuery, \"format\": \"json|table|csv\"}",
    ),
    (
        "escalation.queue",
        "one page of a tier's queue; request QueueQuery",
    ),
    (
        "escalation.history",
        "one complaint's escalation history; request {\"id\": ...}",
    ),
    (
        "escalation.stats",
        "queue depths, oldest items, median time to claim",
    ),
    (
        "escalation.claim",
        "claim an escalated complaint; request {\"id\", \"by\", \"tier\"?}",
    ),
    (
        "escalation.release",
        "release a claim; request {\"id\", \"by\", \"reason\"}",
    ),
    (
        "escalation.reassign",
        "reassign a claim; request {\"id\", \"to\"}",
    ),
    (
        "trends.active",
        "open trend episodes; request {\"filter\": {\"region\"?, \"series\"?, \"kind\"?}}",
    ),
    (
        "trends.series",
        "observed vs expected of one series; request {\"region\", \"series\"}",
    ),
    ("trends.model", "the fitted model and thresholds"),
];

/// A reply: the body plus, for paged commands, where the next page starts.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiReply {
    pub body: Bytes,
    pub next_seq: Option<u64>,
}

impl ApiReply {
    pub(crate) fn json<T: Serialize>(value: &T) -> Result<ApiReply, ApiError> {
        let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(ApiReply {
            body: body.into(),
            next_seq: None,
        })
    }
}

/// An error reply, with an HTTP-like code (400 bad request, 404 not found, 409 conflict,
/// 500 internal, 503 unavailable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            code: 400,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            code: 404,
            message: message.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError {
            code: 409,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            code: 500,
            message: message.into(),
        }
    }
}

impl From<plaint_log::LogError> for ApiError {
    fn from(e: plaint_log::LogError) -> Self {
        ApiError::internal(e.to_string())
    }
}

/// What `plaint status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub log: LogStatusView,
    pub projectors: Vec<ProjectorStatusView>,
    pub complaints: plaint_complaints::ComplaintCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<MetricsSnapshot>,
    pub mode: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogStatusView {
    pub last_seq: u64,
    pub chain_head: String,
    pub segments: u64,
    pub complaints: usize,
    pub durability: String,
    /// The last sequence number the on-disk index snapshot covers.
    #[serde(default)]
    pub index_snapshot_seq: u64,
}

impl From<LogStatus> for LogStatusView {
    fn from(s: LogStatus) -> Self {
        LogStatusView {
            last_seq: s.last_seq,
            chain_head: s.chain_head,
            segments: s.segments,
            complaints: s.complaints,
            durability: format!("{:?}", s.durability).to_lowercase(),
            index_snapshot_seq: s.index_snapshot_seq,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectorStatusView {
    pub name: String,
    pub checkpoint: u64,
    pub lag: u64,
    /// Items the projector holds in memory (its working set), when it counts them.
    #[serde(default)]
    pub resident: Option<usize>,
}

/// `plaint complaint <id>`.
#[derive(Debug, Serialize)]
pub struct ComplaintReport {
    pub state: Option<ComplaintState>,
    pub region: String,
    pub lifecycle: String,
    pub version: u32,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    pub seq: u64,
    pub event: Box<RawValue>,
}

#[derive(Debug, Deserialize)]
struct ComplaintRequest {
    id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReplayRequest {
    pub filter: ReplayFilter,
    pub start: u64,
    pub max_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct DigestRequest {
    projector: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DigestReply {
    pub projector: String,
    pub digest: String,
    pub checkpoint: u64,
}

/// The projectors' handles, for queries.
#[derive(Clone)]
pub struct Views {
    pub complaints: ProjectorHandle<ComplaintsProjector>,
    pub sla: ProjectorHandle<plaint_sla::SlaProjector>,
    pub escalation: ProjectorHandle<plaint_escalation::EscalationProjector>,
    pub trends: ProjectorHandle<plaint_trends::TrendsProjector>,
    pub all: Vec<Arc<dyn ProjectorStatus>>,
}

/// The handlers' shared state: the log and the projectors' handles.
/// The commands that read the log alone (`replay`, `verify`): offline, they open the log
/// without restoring (or catching up) any view.
#[derive(Clone)]
pub struct LogApi {
    pub log: Log,
    pub replay_page_bytes: usize,
}

/// Runs `handler` for one command on the blocking pool (handlers scan, read files, wait for
/// projector locks).
async fn on_blocking_pool<T: Clone + Send + 'static>(
    api: &T,
    command: &str,
    request: &[u8],
    handler: fn(&T, &str, &[u8]) -> Result<ApiReply, ApiError>,
) -> Result<ApiReply, ApiError> {
    let api = api.clone();
    let command = command.to_owned();
    let request = request.to_vec();
    tokio::task::spawn_blocking(move || handler(&api, &command, &request))
        .await
        .map_err(|e| ApiError::internal(format!("handler failed: {e}")))?
}

impl LogApi {
    pub async fn handle(&self, command: &str, request: &[u8]) -> Result<ApiReply, ApiError> {
        on_blocking_pool(self, command, request, Self::handle_blocking).await
    }

    fn handle_blocking(&self, command: &str, request: &[u8]) -> Result<ApiReply, ApiError> {
        match command {
            "replay" => {
                let req: ReplayRequest = parse(request)?;
                req.filter.parsed_types().map_err(ApiError::bad_request)?;
                let max = req
                    .max_bytes
                    .unwrap_or(self.replay_page_bytes)
                    .min(self.replay_page_bytes);
                let page = replay::page(&self.log, &req.filter, req.start, max)?;
                Ok(ApiReply {
                    body: page.lines.into(),
                    next_seq: page.next_seq,
                })
            }
            "verify" => ApiReply::json(&self.log.verify(|_| {})?),
            other => Err(ApiError::bad_request(format!(
                "{other:?} needs the views; only replay and verify read the log alone"
            ))),
        }
    }
}

#[derive(Clone)]
pub struct Api {
    pub(crate) log: Log,
    pub(crate) views: Views,
    complaints: ProjectorHandle<ComplaintsProjector>,
    projectors: Vec<Arc<dyn ProjectorStatus>>,
    ingest: Option<Arc<IngestMetrics>>,
    mode: &'static str,
    replay_page_bytes: usize,
    pub(crate) clock: Arc<dyn plaint_runner::Clock>,
    /// Where operator commands are mirrored so JetStream keeps a complete record (None
    /// offline).
    pub(crate) js: Option<async_nats::jetstream::Context>,
}

impl Api {
    pub fn new(
        log: Log,
        views: Views,
        ingest: Option<Arc<IngestMetrics>>,
        mode: &'static str,
        replay_page_bytes: usize,
        clock: Arc<dyn plaint_runner::Clock>,
        js: Option<async_nats::jetstream::Context>,
    ) -> Self {
        Api {
            log,
            complaints: views.complaints.clone(),
            projectors: views.all.clone(),
            views,
            ingest,
            mode,
            replay_page_bytes,
            clock,
            js,
        }
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Runs one command. Blocking work (scans) runs on the blocking pool.
    pub async fn handle(&self, command: &str, request: &[u8]) -> Result<ApiReply, ApiError> {
        on_blocking_pool(self, command, request, Self::handle_blocking).await
    }

    fn handle_blocking(&self, command: &str, request: &[u8]) -> Result<ApiReply, ApiError> {
        match command {
            "status" => ApiReply::json(&self.status()),
            "complaint" => {
                let req: ComplaintRequest = parse(request)?;
                ApiReply::json(&self.complaint(&req.id)?)
            }
            "replay" | "verify" => LogApi {
                log: self.log.clone(),
                replay_page_bytes: self.replay_page_bytes,
            }
            .handle_blocking(command, request),
            "digest" => {
                let req: DigestRequest = parse(request)?;
                let Some(projector) = self.projectors.iter().find(|p| p.name() == req.projector)
                else {
                    return Err(ApiError::not_found(format!(
                        "no projector named {:?}; projectors: {}",
                        req.projector,
                        self.projector_names().join(", ")
                    )));
                };
                let (digest, checkpoint) = projector
                    .digest()
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                ApiReply::json(&DigestReply {
                    projector: req.projector,
                    digest,
                    checkpoint,
                })
            }
            other
                if other.starts_with("sla.")
                    || other.starts_with("escalation.")
                    || other.starts_with("trends.") =>
            {
                self.handle_view(other, request)
            }
            other => Err(ApiError::not_found(format!(
                "unknown command {other:?}; commands: {}",
                COMMANDS
                    .iter()
                    .map(|(c, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    pub fn projector_names(&self) -> Vec<&'static str> {
        self.projectors.iter().map(|p| p.name()).collect()
    }

    pub fn status(&self) -> StatusReport {
        let log_status = self.log.status();
        let head = log_status.last_seq;
        StatusReport {
            log: log_status.into(),
            projectors: self
                .projectors
                .iter()
                .map(|p| ProjectorStatusView {
                    name: p.name().to_owned(),
                    checkpoint: p.checkpoint(),
                    lag: head.saturating_sub(p.checkpoint()),
                    resident: p.resident_items(),
                })
                .collect(),
            complaints: self.complaints.lock().counts(),
            ingest: self.ingest.as_ref().map(|m| m.snapshot()),
            mode: self.mode.to_owned(),
        }
    }

    pub fn complaint(&self, id: &str) -> Result<ComplaintReport, ApiError> {
        let stream = self
            .log
            .stream(id)?
            .ok_or_else(|| ApiError::not_found(format!("no complaint {id:?} in the log")))?;
        let mut history = Vec::with_capacity(stream.seqs.len());
        for &seq in &stream.seqs {
            let bytes = self
                .log
                .read(seq)?
                .ok_or_else(|| ApiError::internal(format!("entry {seq} missing")))?;
            let text = String::from_utf8(bytes).map_err(|e| ApiError::internal(e.to_string()))?;
            let event =
                RawValue::from_string(text).map_err(|e| ApiError::internal(e.to_string()))?;
            history.push(HistoryEntry { seq, event });
        }
        Ok(ComplaintReport {
            state: self
                .complaints
                .lock()
                .read(id, self.complaints.rows())
                .map_err(|e| ApiError::internal(e.to_string()))?,
            region: stream.region.clone(),
            lifecycle: stream.status.as_str().to_owned(),
            version: stream.version(),
            history,
        })
    }
}

pub(crate) fn parse<'a, T: Deserialize<'a>>(request: &'a [u8]) -> Result<T, ApiError> {
    let request = if request.is_empty() {
        b"{}".as_slice()
    } else {
        request
    };
    serde_json::from_slice(request)
        .map_err(|e| ApiError::bad_request(format!("request is not valid: {e}")))
}

/// Serves [`Api`] as the NATS service `plaint` on `<prefix>.api.<command>`, one task per
/// request, until `shutdown`.
pub async fn serve_api(
    client: async_nats::Client,
    api: Api,
    prefix: &str,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), async_nats::Error> {
    use async_nats::service::ServiceExt;
    use futures::StreamExt;

    let service = client
        .service_builder()
        .description("plaint: complaint log queries, replay, projector views and operator commands")
        .start("plaint", env!("CARGO_PKG_VERSION"))
        .await?;
    let group = service.group(crate::api_subject(prefix));
    let mut endpoints = Vec::new();
    for (command, _) in COMMANDS {
        let endpoint = group.endpoint(*command).await?;
        endpoints.push(endpoint.map(move |request| (*command, request)).boxed());
    }
    let mut requests = futures::stream::select_all(endpoints);
    let tracker = tokio_util::task::TaskTracker::new();
    tracing::info!(subject = %format!("{}.>", crate::api_subject(prefix)), "API serving");
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = requests.next() => next,
        };
        let Some((command, request)) = next else {
            break;
        };
        let api = api.clone();
        tracker.spawn(async move {
            let started = std::time::Instant::now();
            let result = api.handle(command, &request.message.payload).await;
            let mut headers = async_nats::HeaderMap::new();
            let response = match result {
                Ok(reply) => {
                    if let Some(next) = reply.next_seq {
                        headers.insert("Plaint-Next-Seq", next.to_string().as_str());
                    }
                    Ok(reply.body)
                }
                Err(e) => Err(async_nats::service::error::Error {
                    status: e.message,
                    code: e.code as usize,
                }),
            };
            if let Err(error) = request.respond_with_headers(response, headers).await {
                tracing::warn!(command, %error, "could not send the API reply");
            }
            tracing::debug!(
                command,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "API request"
            );
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await;
    let _ = service.stop().await;
    Ok(())
}

/// Calls a command of a running `plaint serve`.
pub async fn call(
    client: &async_nats::Client,
    prefix: &str,
    command: &str,
    request: Bytes,
    timeout: Duration,
) -> Result<ApiReply, ApiError> {
    let subject = format!("{}.{command}", crate::api_subject(prefix));
    let req = async_nats::Request::new()
        .payload(request)
        .timeout(Some(timeout));
    let message = client.send_request(subject, req).await.map_err(|e| {
        let unavailable = matches!(e.kind(), async_nats::RequestErrorKind::NoResponders | async_nats::RequestErrorKind::TimedOut);
        if unavailable {
            ApiError {
                code: 503,
                message: format!("no plaint server answered on {prefix}.api ({e}); start `plaint serve`, or pass --data DIR to read a data directory offline"),
            }
        } else {
            ApiError::internal(e.to_string())
        }
    })?;
    let headers = message.headers.as_ref();
    if let Some(code) = headers.and_then(|h| h.get("Nats-Service-Error-Code")) {
        let code = code.as_str().parse().unwrap_or(500);
        let text = headers
            .and_then(|h| h.get("Nats-Service-Error"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        return Err(ApiError {
            code,
            message: text,
        });
    }
    let next_seq = headers
        .and_then(|h| h.get("Plaint-Next-Seq"))
        .and_then(|v| v.as_str().parse().ok());
    Ok(ApiReply {
        body: message.payload,
        next_seq,
    })
}
