//! The persisted rows of the escalation view.
//!
//! Two kinds of row, each a JSON value:
//! - `complaint/<complaint id>` → [`ComplaintRow`]: the facts the rules read, the queue
//!   item if the complaint is in a queue, and its escalation history;
//! - `customer/<customer id>` → [`CustomerFilings`]: filing times inside the repeat window.
//!
//! The queue item and the history change only when `escalation.*` events come back through
//! the log, so a rebuild (which carries out no effects) produces the same rows as the live
//! projector.

use jiff::Timestamp;
use plaint_events::{AmountAtStake, EscalationReason, Severity};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::rules::{ManualEscalation, RuleFacts, SlaBreachFact};

/// A complaint's lifecycle status: the one the log's lifecycle rules use.
pub use plaint_events::lifecycle::StreamStatus as ComplaintStatus;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintRow {
    pub region: String,
    pub customer_id: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_at_stake: Option<AmountAtStake>,
    pub vip: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub filed_at: Timestamp,
    pub status: ComplaintStatus,
    /// Complaints of the customer within the repeat window when this one was filed,
    /// this one included.
    pub repeat_count: u32,
    pub reopen_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_breach: Option<SlaBreachFact>,
    /// The earliest deadline this complaint missed: its SLA urgency in the queue order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breached_since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<ManualEscalation>,
    /// `escalation.raised` events applied so far; part of operator command ids, so that a
    /// command prepared against an older raise never collides with a newer one.
    pub raise_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

impl ComplaintRow {
    pub fn rule_facts(&self) -> RuleFacts<'_> {
        RuleFacts {
            severity: self.severity,
            amount_at_stake: self.amount_at_stake.as_ref(),
            vip: self.vip,
            repeat_count: self.repeat_count,
            reopen_count: self.reopen_count,
            sla_breach: self.sla_breach.as_ref(),
            manual: self.manual.as_ref(),
        }
    }

    pub fn queue_tier(&self) -> Option<u8> {
        self.queue.as_ref().map(|q| q.tier)
    }
}

/// A complaint's place in a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueItem {
    pub tier: u8,
    /// Time of the `escalation.raised` that put it in this tier.
    pub entered_at: Timestamp,
    pub raised_event_id: Uuid,
    pub reasons: Vec<EscalationReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimRecord>,
    /// When it last became unclaimed (entered the tier or was released): the unclaimed
    /// alert measures its age from here.
    pub unclaimed_since: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_release: Option<ReleaseRecord>,
    /// Operator events applied since it entered the tier; part of command ids.
    pub operator_events: u32,
    /// An `escalation.cleared` for this item is written and on its way back. Persisted
    /// (it is decided in `apply`, from the event sequence alone) so that a complaint
    /// reopened before the clear is back is raised again even across a restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clear_requested: bool,
}

/// The claim an item is under; keeps the event so that a retried command can hand back
/// exactly the event that took effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub by: String,
    pub at: Timestamp,
    pub event_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reassigned_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub by: String,
    pub reason: String,
    pub at: Timestamp,
    pub event_id: Uuid,
}

/// One `escalation.*` event that took effect, with its log sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HistoryEntry {
    Raised {
        seq: u64,
        at: Timestamp,
        event_id: Uuid,
        tier: u8,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_tier: Option<u8>,
        reasons: Vec<EscalationReason>,
        /// The operator whose claim the raise ended (the item now waits in a higher tier).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ended_claim_of: Option<String>,
    },
    Claimed {
        seq: u64,
        at: Timestamp,
        event_id: Uuid,
        by: String,
        tier: u8,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reassigned_from: Option<String>,
    },
    Released {
        seq: u64,
        at: Timestamp,
        event_id: Uuid,
        by: String,
        reason: String,
    },
    Cleared {
        seq: u64,
        at: Timestamp,
        event_id: Uuid,
        reason: String,
    },
}

/// Filing times of one customer inside the repeat window (ascending).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CustomerFilings {
    pub filed_at: Vec<Timestamp>,
}
