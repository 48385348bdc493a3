//! The `complaints` projection: the current state of each complaint.
//!
//! - [`ComplaintsProjector`]: a pure fold from events to one [`ComplaintState`] row per
//!   complaint (status, region, category, severity, channel, when it was filed, first
//!   responded to, resolved, closed; assignee, escalation tier, reopen count, version).
//! - [`ComplaintCounts`]: totals by status and region for `plaint status`.
//!
//! It serves `plaint complaint <id>` (together with the log's history of the complaint)
//! and the counts in `plaint status`. It emits no effects. Complaint text (summary,
//! notes) and customer ids are deliberately not copied into the view: the log has them,
//! and a view that operators browse should not spread them further.

use std::collections::BTreeMap;

use plaint_events::{Event, EventBody, Timestamp};
use plaint_projection::{
    Effect, Projection, ProjectionError, RowCodec, RowError, RowReader, RowWriter, ViewChange,
    ViewMap, ViewRow,
};
use serde::{Deserialize, Serialize};

/// Where a complaint is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    AwaitingCustomer,
    Resolved,
    Closed,
    Withdrawn,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::AwaitingCustomer => "awaiting_customer",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
            Status::Withdrawn => "withdrawn",
        }
    }
}

/// One complaint as of its last event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintState {
    pub complaint_id: String,
    pub status: Status,
    pub region: String,
    pub category: String,
    pub severity: plaint_events::Severity,
    pub channel: plaint_events::Channel,
    pub vip: bool,
    pub filed_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_response_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_tier: Option<u8>,
    pub reopen_count: u32,
    pub sla_breaches: u32,
    pub last_event_at: Timestamp,
    /// Number of events in the complaint's stream.
    pub version: u32,
    pub last_seq: u64,
}

plaint_projection::enum_codec!(Status, "status", {
    Status::Open = 0,
    Status::AwaitingCustomer = 1,
    Status::Resolved = 2,
    Status::Closed = 3,
    Status::Withdrawn = 4,
});

/// The row form: fields in declaration order (see `plaint_projection::codec`).
impl RowCodec for ComplaintState {
    fn encode(&self, out: &mut RowWriter) {
        out.str(&self.complaint_id);
        out.put(&self.status);
        out.str(&self.region);
        out.str(&self.category);
        out.put(&self.severity);
        out.put(&self.channel);
        out.bool(self.vip);
        out.put(&self.filed_at);
        out.put(&self.first_response_at);
        out.put(&self.resolved_at);
        out.put(&self.closed_at);
        out.put(&self.assignee);
        out.put(&self.team);
        out.put(&self.escalation_tier);
        out.uint(self.reopen_count.into());
        out.uint(self.sla_breaches.into());
        out.put(&self.last_event_at);
        out.uint(self.version.into());
        out.uint(self.last_seq);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(ComplaintState {
            complaint_id: input.string()?,
            status: input.get()?,
            region: input.string()?,
            category: input.string()?,
            severity: input.get()?,
            channel: input.get()?,
            vip: input.bool()?,
            filed_at: input.get()?,
            first_response_at: input.get()?,
            resolved_at: input.get()?,
            closed_at: input.get()?,
            assignee: input.get()?,
            team: input.get()?,
            escalation_tier: input.get()?,
            reopen_count: input.uint_as()?,
            sla_breaches: input.uint_as()?,
            last_event_at: input.get()?,
            version: input.uint_as()?,
            last_seq: input.uint()?,
        })
    }
}

/// Totals for `plaint status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComplaintCounts {
    pub total: u64,
    pub by_status: BTreeMap<String, u64>,
    pub by_region: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
pub struct ComplaintsProjector {
    complaints: ViewMap<ComplaintState>,
}

const ROW_PREFIX: &str = "c/";

impl ComplaintsProjector {
    pub const NAME: &'static str = "complaints";

    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, complaint_id: &str) -> Option<&ComplaintState> {
        self.complaints.get(complaint_id)
    }

    pub fn counts(&self) -> ComplaintCounts {
        let mut counts = ComplaintCounts::default();
        for c in self.complaints.values() {
            counts.total += 1;
            *counts
                .by_status
                .entry(c.status.as_str().to_owned())
                .or_insert(0) += 1;
            *counts.by_region.entry(c.region.clone()).or_insert(0) += 1;
        }
        counts
    }

    pub fn len(&self) -> usize {
        self.complaints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.complaints.is_empty()
    }
}

impl Projection for ComplaintsProjector {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn apply(&mut self, seq: u64, event: &Event) -> Vec<Effect> {
        if let EventBody::Filed(filed) = &event.body {
            self.complaints.insert(
                event.complaint_id.clone(),
                ComplaintState {
                    complaint_id: event.complaint_id.clone(),
                    status: Status::Open,
                    region: filed.region.clone(),
                    category: filed.category.clone(),
                    severity: filed.severity,
                    channel: filed.channel,
                    vip: filed.vip,
                    filed_at: event.time,
                    first_response_at: None,
                    resolved_at: None,
                    closed_at: None,
                    assignee: None,
                    team: None,
                    escalation_tier: None,
                    reopen_count: 0,
                    sla_breaches: 0,
                    last_event_at: event.time,
                    version: 1,
                    last_seq: seq,
                },
            );
            return Vec::new();
        }
        // The log only holds events of filed complaints (the ingester enforces it), so a
        // miss here means the view is behind a truncated log; ignoring is right because a
        // rebuild fixes it.
        let Some(c) = self.complaints.get_mut(&event.complaint_id) else {
            return Vec::new();
        };
        c.version += 1;
        c.last_seq = seq;
        c.last_event_at = c.last_event_at.max(event.time);
        match &event.body {
            EventBody::Acknowledged(_) | EventBody::CustomerContacted(_) => {
                c.first_response_at.get_or_insert(event.time);
            }
            EventBody::Assigned(a) => {
                c.assignee = Some(a.assignee.clone());
                c.team = a.team.clone().or(c.team.take());
            }
            EventBody::AwaitingCustomer(_) => c.status = Status::AwaitingCustomer,
            EventBody::CustomerReplied(_) if c.status == Status::AwaitingCustomer => {
                c.status = Status::Open
            }
            EventBody::Resolved(_) => {
                c.status = Status::Resolved;
                c.resolved_at = Some(event.time);
                c.first_response_at.get_or_insert(event.time);
            }
            EventBody::Reopened(_) => {
                c.status = Status::Open;
                c.reopen_count += 1;
                c.resolved_at = None;
                c.closed_at = None;
            }
            EventBody::Closed(_) => {
                c.status = Status::Closed;
                c.closed_at = Some(event.time);
            }
            EventBody::Withdrawn(_) => {
                c.status = Status::Withdrawn;
                c.closed_at = Some(event.time);
            }
            EventBody::SlaBreached(_) => c.sla_breaches += 1,
            EventBody::EscalationRaised(r) => c.escalation_tier = Some(r.tier),
            EventBody::EscalationCleared(_) => c.escalation_tier = None,
            _ => {}
        }
        Vec::new()
    }

    fn take_changes(&mut self) -> Vec<ViewChange> {
        self.complaints.take_changes(ROW_PREFIX)
    }

    fn restore(&mut self, rows: &mut dyn Iterator<Item = ViewRow>) -> Result<(), ProjectionError> {
        self.complaints.clear();
        for row in rows {
            self.complaints.restore_row(Self::NAME, ROW_PREFIX, &row)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plaint_testkit::fixtures::{self, at};

    fn event(v: &serde_json::Value) -> Event {
        plaint_events::decode_stored(&fixtures::bytes(v)).unwrap()
    }

    #[test]
    fn follows_a_complaint_through_its_life() {
        let mut p = ComplaintsProjector::new();
        let history = [
            fixtures::filed("C-1", "eu", "billing", at(0)),
            fixtures::acknowledged("C-1", at(30)),
            fixtures::contacted("C-1", at(60)),
            fixtures::resolved("C-1", at(120)),
            fixtures::reopened("C-1", at(200)),
        ];
        for (i, e) in history.iter().enumerate() {
            assert!(p.apply(i as u64 + 1, &event(e)).is_empty());
        }
        let c = p.get("C-1").unwrap();
        assert_eq!(c.status, Status::Open);
        assert_eq!(c.first_response_at, Some(at(30)));
        assert_eq!(
            c.resolved_at, None,
            "a reopened complaint is no longer resolved"
        );
        assert_eq!(c.reopen_count, 1);
        assert_eq!(c.version, 5);
        assert_eq!(p.counts().by_status.get("open"), Some(&1));
    }

    #[test]
    fn rows_restore_to_the_same_state() {
        let mut p = ComplaintsProjector::new();
        p.apply(1, &event(&fixtures::filed("C-1", "eu", "billing", at(0))));
        p.apply(2, &event(&fixtures::filed("C-2", "us", "delivery", at(0))));
        let rows: Vec<ViewRow> = p
            .take_changes()
            .into_iter()
            .map(|(k, v)| (k, v.unwrap()))
            .collect();
        let mut q = ComplaintsProjector::new();
        q.restore(&mut rows.clone().into_iter()).unwrap();
        assert_eq!(q.get("C-2"), p.get("C-2"));
        assert_eq!(q.counts(), p.counts());
    }

    #[test]
    fn every_field_survives_the_row_form() {
        let state = ComplaintState {
            complaint_id: "C-1".into(),
            status: Status::AwaitingCustomer,
            region: "eu-west".into(),
            category: "billing".into(),
            severity: plaint_events::Severity::High,
            channel: plaint_events::Channel::Letter,
            vip: true,
            filed_at: at(0),
            first_response_at: Some(at(30)),
            resolved_at: None,
            closed_at: Some(at(90)),
            assignee: Some("ana".into()),
            team: None,
            escalation_tier: Some(3),
            reopen_count: 2,
            sla_breaches: 1,
            last_event_at: at(120),
            version: 9,
            last_seq: 1 << 40,
        };
        let row = plaint_projection::encode_row(&state);
        assert_eq!(
            plaint_projection::decode_row::<ComplaintState>(&row),
            Ok(state)
        );
    }

    /// A view written before rows were binary restores as it is.
    #[test]
    fn json_rows_of_older_versions_restore() {
        let mut p = ComplaintsProjector::new();
        p.apply(1, &event(&fixtures::filed("C-1", "eu", "billing", at(0))));
        let (key, _) = p.take_changes().remove(0);
        let json = serde_json::to_vec(p.get("C-1").unwrap()).unwrap();
        let mut q = ComplaintsProjector::new();
        q.restore(&mut std::iter::once((key, json))).unwrap();
        assert_eq!(q.get("C-1"), p.get("C-1"));
    }
}
