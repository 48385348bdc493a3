//! API handlers of the SLA, escalation and trends projectors.

use std::time::{Duration, Instant};

use plaint_escalation::{CommandError, PreparedCommand, QueueQuery};
use plaint_log::{Candidate, ExpectedVersion, Outcome};
use plaint_sla::{ComplianceQuery, SlaFilter};
use serde::{Deserialize, Serialize};

use crate::api::{parse, Api, ApiError, ApiReply};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FilterRequest {
    filter: SlaFilter,
}

#[derive(Debug, Deserialize)]
struct IdRequest {
    id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ComplianceRequest {
    query: ComplianceQuery,
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TrendsActiveRequest {
    filter: plaint_trends::TrendFilter,
}

#[derive(Debug, Deserialize)]
struct SeriesRequest {
    region: String,
    series: String,
}

#[derive(Debug, Deserialize)]
struct ClaimRequest {
    id: String,
    by: String,
    tier: Option<u8>,
}

#[derive(Debug, Deserialize)]
struct ReleaseRequest {
    id: String,
    by: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
struct ReassignRequest {
    id: String,
    to: String,
}

/// The answer to an operator command.
#[derive(Debug, Serialize, Deserialize)]
pub struct CommandReply {
    /// Sequence number of the event in the log (absent when a retry found it applied).
    pub seq: Option<u64>,
    pub event_id: String,
    pub event_type: String,
    pub complaint_id: String,
    pub already_applied: bool,
}

fn command_error(e: CommandError) -> ApiError {
    let code = match e {
        CommandError::UnknownComplaint(..) | CommandError::NotInQueue { .. } => 404,
        CommandError::AlreadyClaimed { .. }
        | CommandError::NotClaimedBy { .. }
        | CommandError::NotClaimed { .. }
        | CommandError::WrongTier { .. } => 409,
        CommandError::Rows(_) => 500,
        _ => 400,
    };
    ApiError {
        code,
        message: format!("{} ({})", e, e.code()),
    }
}

impl Api {
    pub(crate) fn handle_view(&self, command: &str, request: &[u8]) -> Result<ApiReply, ApiError> {
        let now = self.clock.now();
        match command {
            "sla.at_risk" => {
                let req: FilterRequest = parse(request)?;
                let items = self
                    .views
                    .sla
                    .lock()
                    .at_risk(&req.filter, self.views.sla.rows(), now)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                ApiReply::json(&items)
            }
            "sla.breaches" => {
                let req: FilterRequest = parse(request)?;
                let items = self
                    .views
                    .sla
                    .lock()
                    .breaches(&req.filter, self.views.sla.rows(), now)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                ApiReply::json(&items)
            }
            "sla.complaint" => {
                let req: IdRequest = parse(request)?;
                let state = self
                    .views
                    .sla
                    .lock()
                    .read_complaint(&req.id, self.views.sla.rows(), now)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                match state {
                    Some(s) => ApiReply::json(&s),
                    None => Err(ApiError::not_found(format!(
                        "the SLA view has no complaint {:?}",
                        req.id
                    ))),
                }
            }
            "sla.compliance" => {
                let req: ComplianceRequest = parse(request)?;
                let report = self
                    .views
                    .sla
                    .lock()
                    .compliance(&req.query, self.views.sla.rows())
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                let body = match req.format.as_deref().unwrap_or("json") {
                    "json" => report.to_json(),
                    "table" => report.to_table(),
                    "csv" => report.to_csv(),
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "format {other:?}: use json, table or csv"
                        )))
                    }
                };
                Ok(ApiReply {
                    body: body.into(),
                    next_seq: None,
                })
            }
            "escalation.queue" => {
                let query: QueueQuery = parse(request)?;
                let escalation = self.views.escalation.lock();
                let sla = self.views.sla.lock();
                // Called for every item of the severity band a page reaches: the SLA
                // projector answers from its compact state, without building a report.
                let next_deadline = |id: &str| sla.next_due(id);
                let rows = self.views.escalation.rows();
                let page = escalation
                    .queue(&query, now, Some(&next_deadline), rows)
                    .map_err(command_error)?;
                ApiReply::json(&page)
            }
            "escalation.history" => {
                let req: IdRequest = parse(request)?;
                let escalation = self.views.escalation.lock();
                let history = escalation
                    .history(&req.id, self.views.escalation.rows())
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                match history {
                    Some(h) => ApiReply::json(&h),
                    None => Err(ApiError::not_found(format!(
                        "complaint {:?} was never escalated",
                        req.id
                    ))),
                }
            }
            "escalation.stats" => ApiReply::json(&self.views.escalation.lock().stats(now)),
            "escalation.claim" => {
                let req: ClaimRequest = parse(request)?;
                self.operator_command(&req.id, |p, rows| {
                    p.prepare_claim(&req.id, &req.by, req.tier, now, rows)
                })
            }
            "escalation.release" => {
                let req: ReleaseRequest = parse(request)?;
                self.operator_command(&req.id, |p, rows| {
                    p.prepare_release(&req.id, &req.by, &req.reason, now, rows)
                })
            }
            "escalation.reassign" => {
                let req: ReassignRequest = parse(request)?;
                self.operator_command(&req.id, |p, rows| {
                    p.prepare_reassign(&req.id, &req.to, now, rows)
                })
            }
            "trends.active" => {
                let req: TrendsActiveRequest = parse(request)?;
                ApiReply::json(&self.views.trends.lock().active(&req.filter))
            }
            "trends.series" => {
                let req: SeriesRequest = parse(request)?;
                match self.views.trends.lock().series(&req.region, &req.series) {
                    Some(s) => ApiReply::json(&s),
                    None => Err(ApiError::not_found(format!(
                        "no series {:?} in region {:?}; series are categories or tracked tags like vendor:acme",
                        req.series, req.region
                    ))),
                }
            }
            "trends.model" => ApiReply::json(&self.views.trends.lock().model()),
            other => Err(ApiError::not_found(format!("unknown command {other:?}"))),
        }
    }

    /// Prepares an operator command against the escalation view and appends it with the
    /// complaint's stream version as the expected version. If another writer got there
    /// first, waits for the view to see that write and decides again, so of two operators
    /// claiming at once exactly one succeeds and the other hears who holds the item.
    /// `prepare` gets the view and its rows (for a complaint paged out of memory).
    fn operator_command(
        &self,
        complaint_id: &str,
        prepare: impl Fn(
            &plaint_escalation::EscalationProjector,
            &dyn plaint_projection::RowSource,
        ) -> Result<PreparedCommand, CommandError>,
    ) -> Result<ApiReply, ApiError> {
        for _attempt in 0..5 {
            self.wait_for_escalation_view(Duration::from_secs(5));
            let version = self
                .log
                .stream(complaint_id)?
                .map(|s| s.version())
                .ok_or_else(|| {
                    ApiError::not_found(format!("no complaint {complaint_id:?} in the log"))
                })?;
            let rows = self.views.escalation.rows();
            let prepared = prepare(&self.views.escalation.lock(), rows).map_err(command_error)?;
            let event = &prepared.event;
            let reply = |seq| CommandReply {
                seq,
                event_id: event.id.to_string(),
                event_type: event.event_type().as_str().to_owned(),
                complaint_id: complaint_id.to_owned(),
                already_applied: seq.is_none(),
            };
            if prepared.already_applied {
                return ApiReply::json(&reply(None));
            }
            let bytes = event.to_wire();
            let outcome = self.log.writer().append_one(Candidate {
                event,
                bytes: &bytes,
                subject_region: None,
                expected: ExpectedVersion::Exactly(version),
            })?;
            match outcome {
                Outcome::Appended(seq) | Outcome::Duplicate(seq) => {
                    self.mirror(&prepared.subject, event.id.to_string(), bytes);
                    return ApiReply::json(&reply(Some(seq)));
                }
                Outcome::VersionConflict { .. } => continue,
                Outcome::Rejected(r) => return Err(ApiError::conflict(r.to_string())),
            }
        }
        Err(ApiError {
            code: 503,
            message: "the complaint changed five times while deciding; try again".into(),
        })
    }

    fn wait_for_escalation_view(&self, at_most: Duration) {
        let deadline = Instant::now() + at_most;
        while self.views.escalation.checkpoint() < self.log.last_seq() && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Publishes an event written directly to the log to JetStream too, so the stream
    /// stays a complete record; the ingester sees it as a duplicate.
    fn mirror(&self, subject: &str, msg_id: String, bytes: Vec<u8>) {
        let Some(js) = &self.js else { return };
        let js = js.clone();
        let subject = subject.to_owned();
        let handle = tokio::runtime::Handle::current();
        handle.spawn(async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", msg_id.as_str());
            match js
                .publish_with_headers(subject, headers, bytes.into())
                .await
            {
                Ok(ack) => {
                    if let Err(error) = ack.await {
                        tracing::warn!(%error, "operator command not mirrored to JetStream");
                    }
                }
                Err(error) => tracing::warn!(%error, "operator command not mirrored to JetStream"),
            }
        });
    }
}
