use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Money;

/// One validated event. `complaint_id` is the CloudEvents `subject`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: Uuid,
    pub source: String,
    pub complaint_id: String,
    /// Event time (when it happened), not arrival time.
    pub time: Timestamp,
    pub body: EventBody,
}

impl Event {
    pub fn event_type(&self) -> EventType {
        self.body.event_type()
    }
}

/// The closed set of event types, upstream ones first, then the ones plaint writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EventType {
    Filed = 1,
    Acknowledged = 2,
    Assigned = 3,
    CustomerContacted = 4,
    CallbackPromised = 5,
    AwaitingCustomer = 6,
    CustomerReplied = 7,
    Escalated = 8,
    Resolved = 9,
    Reopened = 10,
    Closed = 11,
    Withdrawn = 12,
    SlaBreached = 32,
    EscalationRaised = 33,
    EscalationClaimed = 34,
    EscalationReleased = 35,
    EscalationCleared = 36,
}

impl EventType {
    pub const ALL: [EventType; 17] = [
        EventType::Filed,
        EventType::Acknowledged,
        EventType::Assigned,
        EventType::CustomerContacted,
        EventType::CallbackPromised,
        EventType::AwaitingCustomer,
        EventType::CustomerReplied,
        EventType::Escalated,
        EventType::Resolved,
        EventType::Reopened,
        EventType::Closed,
        EventType::Withdrawn,
        EventType::SlaBreached,
        EventType::EscalationRaised,
        EventType::EscalationClaimed,
        EventType::EscalationReleased,
        EventType::EscalationCleared,
    ];

    /// The CloudEvents `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Filed => "complaint.filed",
            EventType::Acknowledged => "complaint.acknowledged",
            EventType::Assigned => "complaint.assigned",
            EventType::CustomerContacted => "complaint.customer_contacted",
            EventType::CallbackPromised => "complaint.callback_promised",
            EventType::AwaitingCustomer => "complaint.awaiting_customer",
            EventType::CustomerReplied => "complaint.customer_replied",
            EventType::Escalated => "complaint.escalated",
            EventType::Resolved => "complaint.resolved",
            EventType::Reopened => "complaint.reopened",
            EventType::Closed => "complaint.closed",
            EventType::Withdrawn => "complaint.withdrawn",
            EventType::SlaBreached => "sla.breached",
            EventType::EscalationRaised => "escalation.raised",
            EventType::EscalationClaimed => "escalation.claimed",
            EventType::EscalationReleased => "escalation.released",
            EventType::EscalationCleared => "escalation.cleared",
        }
    }

    /// The `<kind>` token of `complaints.events.<region>.<kind>`: the type without
    /// `complaint.`, and plaint's own types with the dot replaced (`sla_breached`).
    pub fn subject_kind(self) -> &'static str {
        match self {
            EventType::SlaBreached => "sla_breached",
            EventType::EscalationRaised => "escalation_raised",
            EventType::EscalationClaimed => "escalation_claimed",
            EventType::EscalationReleased => "escalation_released",
            EventType::EscalationCleared => "escalation_cleared",
            other => &other.as_str()["complaint.".len()..],
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn from_subject_kind(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.subject_kind() == s)
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Types written by plaint itself (SLA and escalation projectors).
    pub fn is_plaint_own(self) -> bool {
        self.code() >= 32
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `data` of an event, one variant per type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventBody {
    #[serde(rename = "complaint.filed")]
    Filed(ComplaintFiled),
    #[serde(rename = "complaint.acknowledged")]
    Acknowledged(ComplaintAcknowledged),
    #[serde(rename = "complaint.assigned")]
    Assigned(ComplaintAssigned),
    #[serde(rename = "complaint.customer_contacted")]
    CustomerContacted(CustomerContacted),
    #[serde(rename = "complaint.callback_promised")]
    CallbackPromised(CallbackPromised),
    #[serde(rename = "complaint.awaiting_customer")]
    AwaitingCustomer(AwaitingCustomer),
    #[serde(rename = "complaint.customer_replied")]
    CustomerReplied(CustomerReplied),
    #[serde(rename = "complaint.escalated")]
    Escalated(ComplaintEscalated),
    #[serde(rename = "complaint.resolved")]
    Resolved(ComplaintResolved),
    #[serde(rename = "complaint.reopened")]
    Reopened(ComplaintReopened),
    #[serde(rename = "complaint.closed")]
    Closed(ComplaintClosed),
    #[serde(rename = "complaint.withdrawn")]
    Withdrawn(ComplaintWithdrawn),
    #[serde(rename = "sla.breached")]
    SlaBreached(SlaBreached),
    #[serde(rename = "escalation.raised")]
    EscalationRaised(EscalationRaised),
    #[serde(rename = "escalation.claimed")]
    EscalationClaimed(EscalationClaimed),
    #[serde(rename = "escalation.released")]
    EscalationReleased(EscalationReleased),
    #[serde(rename = "escalation.cleared")]
    EscalationCleared(EscalationCleared),
}

impl EventBody {
    pub fn event_type(&self) -> EventType {
        match self {
            EventBody::Filed(_) => EventType::Filed,
            EventBody::Acknowledged(_) => EventType::Acknowledged,
            EventBody::Assigned(_) => EventType::Assigned,
            EventBody::CustomerContacted(_) => EventType::CustomerContacted,
            EventBody::CallbackPromised(_) => EventType::CallbackPromised,
            EventBody::AwaitingCustomer(_) => EventType::AwaitingCustomer,
            EventBody::CustomerReplied(_) => EventType::CustomerReplied,
            EventBody::Escalated(_) => EventType::Escalated,
            EventBody::Resolved(_) => EventType::Resolved,
            EventBody::Reopened(_) => EventType::Reopened,
            EventBody::Closed(_) => EventType::Closed,
            EventBody::Withdrawn(_) => EventType::Withdrawn,
            EventBody::SlaBreached(_) => EventType::SlaBreached,
            EventBody::EscalationRaised(_) => EventType::EscalationRaised,
            EventBody::EscalationClaimed(_) => EventType::EscalationClaimed,
            EventBody::EscalationReleased(_) => EventType::EscalationReleased,
            EventBody::EscalationCleared(_) => EventType::EscalationCleared,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Phone,
    Web,
    Chat,
    Letter,
    Social,
    Other,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Phone => "phone",
            Channel::Web => "web",
            Channel::Chat => "chat",
            Channel::Letter => "letter",
            Channel::Social => "social",
            Channel::Other => "other",
        }
    }
}

/// Ordered from least to most severe, so `Severity::High > Severity::Low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmountAtStake {
    pub value: Money,
    /// ISO 4217 code, three upper-case letters.
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintFiled {
    pub customer_id: String,
    pub region: String,
    pub category: String,
    pub channel: Channel,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_at_stake: Option<AmountAtStake>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub vip: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintAcknowledged {
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintAssigned {
    pub assignee: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerContacted {
    pub by: String,
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackPromised {
    pub by: String,
    pub due_by: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AwaitingCustomer {
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerReplied {
    pub channel: Channel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintEscalated {
    /// 1 (frontline) to 4 (executive).
    pub tier: u8,
    pub reason: String,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintResolved {
    pub by: String,
    pub resolution: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintReopened {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintClosed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintWithdrawn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The SLA metrics of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaMetric {
    FirstResponse,
    Resolution,
    PeriodicUpdate,
    Callback,
}

impl SlaMetric {
    pub const ALL: [SlaMetric; 4] = [
        SlaMetric::FirstResponse,
        SlaMetric::Resolution,
        SlaMetric::PeriodicUpdate,
        SlaMetric::Callback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SlaMetric::FirstResponse => "first_response",
            SlaMetric::Resolution => "resolution",
            SlaMetric::PeriodicUpdate => "periodic_update",
            SlaMetric::Callback => "callback",
        }
    }

    pub fn parse(s: &str) -> Option<SlaMetric> {
        SlaMetric::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// `sla.breached`: a deadline passed with its metric unmet (written when the deadline
/// passes, `met_at` absent), or a metric was met after its deadline without a breach having
/// been recorded yet (`met_at` present, `late_by_seconds` says how late).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaBreached {
    pub metric: SlaMetric,
    pub policy: String,
    pub region: String,
    /// The deadline that was missed.
    pub due_at: Timestamp,
    /// Target in seconds of calendar (business) time.
    pub target_seconds: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_by_seconds: Option<i64>,
}

/// One reason a complaint was raised to a tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationReason {
    /// Rule name: `money`, `severity`, `sla_breach`, `repeat_complainant`, `reopened`,
    /// `vip`, `manual`.
    pub rule: String,
    pub tier: u8,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationRaised {
    pub tier: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_tier: Option<u8>,
    pub region: String,
    pub reasons: Vec<EscalationReason>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationClaimed {
    pub by: String,
    pub tier: u8,
    /// Set when this claim reassigns an item another operator held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reassigned_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationReleased {
    pub by: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationCleared {
    /// What cleared it: `resolved`, `closed` or `withdrawn`.
    pub reason: String,
}
