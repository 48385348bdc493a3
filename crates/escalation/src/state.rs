//! The persisted rows of the escalation view.
//!
//! The kinds of row, each in the binary row form of `plaint_projection::codec`:
//! - `archived-complaint/<complaint id>` → [`ComplaintRow`]: the facts the rules read, the
//!   queue item if the complaint is in a queue, and its escalation history (under
//!   `complaint/` until layout 3);
//! - `queue/<complaint id>` → [`QueueRow`]: what the queue index keeps of a queued
//!   complaint, so that a restart rebuilds the queues without reading complaint rows;
//! - `customer/<customer id>` → [`CustomerFilings`]: filing times inside the repeat window.
//!
//! The queue item and the history change only when `escalation.*` events come back through
//! the log, so a rebuild (which carries out no effects) produces the same rows as the live
//! projector.

use jiff::Timestamp;
use plaint_events::{AmountAtStake, EscalationReason, Severity};
use plaint_projection::{RowCodec, RowError, RowReader, RowWriter};
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

/// `queue/<complaint id>`: a queued complaint as the queue index keeps it (its entry in
/// the index and in the alert schedule), written and deleted together with the complaint's
/// row. Names are kept as names (the index numbers them in memory only), and the amount
/// rather than its rank, which depends on the configured limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueRow {
    pub tier: u8,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_at_stake: Option<AmountAtStake>,
    pub filed_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breached_since: Option<Timestamp>,
    /// The rules among its reasons, one bit each (`rules::rule_bit`).
    pub reasons_mask: u8,
    pub entered_at: Timestamp,
    /// `Some` while it waits unclaimed: since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unclaimed_since: Option<Timestamp>,
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

impl CustomerFilings {
    /// Whether a filing at `now` or later would count none of these: every one is at or
    /// before `window_start` (`now - window`), so the row may leave memory.
    pub fn all_before(&self, window_start: Timestamp) -> bool {
        self.filed_at
            .last()
            .is_none_or(|newest| *newest <= window_start)
    }
}

/// The wait from entering a tier to the first claim there: what the median time to
/// claim of [`crate::QueueStats`] is taken over. Kept apart from the complaint's history
/// so that the statistics need no complaint in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimWait {
    /// When the claim was made.
    pub at: Timestamp,
    pub tier: u8,
    pub seconds: i64,
}

// ---- binary row form (see `plaint_projection::codec`): fields in declaration order ----

impl RowCodec for ComplaintRow {
    fn encode(&self, out: &mut RowWriter) {
        out.str(&self.region);
        out.str(&self.customer_id);
        out.put(&self.severity);
        out.put(&self.amount_at_stake);
        out.bool(self.vip);
        out.put(&self.team);
        out.put(&self.filed_at);
        out.put(&self.status);
        out.uint(self.repeat_count.into());
        out.uint(self.reopen_count.into());
        out.put(&self.sla_breach);
        out.put(&self.breached_since);
        out.put(&self.manual);
        out.uint(self.raise_count.into());
        out.put(&self.queue);
        out.put(&self.history);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(ComplaintRow {
            region: input.string()?,
            customer_id: input.string()?,
            severity: input.get()?,
            amount_at_stake: input.get()?,
            vip: input.bool()?,
            team: input.get()?,
            filed_at: input.get()?,
            status: input.get()?,
            repeat_count: input.uint_as()?,
            reopen_count: input.uint_as()?,
            sla_breach: input.get()?,
            breached_since: input.get()?,
            manual: input.get()?,
            raise_count: input.uint_as()?,
            queue: input.get()?,
            history: input.get()?,
        })
    }
}

impl RowCodec for SlaBreachFact {
    fn encode(&self, out: &mut RowWriter) {
        out.uint(self.count.into());
        out.u8(self.tier);
        out.put(&self.latest_metric);
        out.put(&self.latest_due_at);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(SlaBreachFact {
            count: input.uint_as()?,
            tier: input.u8()?,
            latest_metric: input.get()?,
            latest_due_at: input.get()?,
        })
    }
}

impl RowCodec for ManualEscalation {
    fn encode(&self, out: &mut RowWriter) {
        out.u8(self.tier);
        out.str(&self.by);
        out.str(&self.reason);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(ManualEscalation {
            tier: input.u8()?,
            by: input.string()?,
            reason: input.string()?,
        })
    }
}

impl RowCodec for QueueItem {
    fn encode(&self, out: &mut RowWriter) {
        out.u8(self.tier);
        out.put(&self.entered_at);
        out.put(&self.raised_event_id);
        out.put(&self.reasons);
        out.put(&self.claim);
        out.put(&self.unclaimed_since);
        out.put(&self.last_release);
        out.uint(self.operator_events.into());
        out.bool(self.clear_requested);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(QueueItem {
            tier: input.u8()?,
            entered_at: input.get()?,
            raised_event_id: input.get()?,
            reasons: input.get()?,
            claim: input.get()?,
            unclaimed_since: input.get()?,
            last_release: input.get()?,
            operator_events: input.uint_as()?,
            clear_requested: input.bool()?,
        })
    }
}

impl RowCodec for QueueRow {
    fn encode(&self, out: &mut RowWriter) {
        out.u8(self.tier);
        out.str(&self.region);
        out.put(&self.team);
        out.put(&self.claimed_by);
        out.put(&self.severity);
        out.put(&self.amount_at_stake);
        out.put(&self.filed_at);
        out.put(&self.breached_since);
        out.u8(self.reasons_mask);
        out.put(&self.entered_at);
        out.put(&self.unclaimed_since);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(QueueRow {
            tier: input.u8()?,
            region: input.string()?,
            team: input.get()?,
            claimed_by: input.get()?,
            severity: input.get()?,
            amount_at_stake: input.get()?,
            filed_at: input.get()?,
            breached_since: input.get()?,
            reasons_mask: input.u8()?,
            entered_at: input.get()?,
            unclaimed_since: input.get()?,
        })
    }
}

impl RowCodec for ClaimRecord {
    fn encode(&self, out: &mut RowWriter) {
        out.str(&self.by);
        out.put(&self.at);
        out.put(&self.event_id);
        out.put(&self.reassigned_from);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(ClaimRecord {
            by: input.string()?,
            at: input.get()?,
            event_id: input.get()?,
            reassigned_from: input.get()?,
        })
    }
}

impl RowCodec for ReleaseRecord {
    fn encode(&self, out: &mut RowWriter) {
        out.str(&self.by);
        out.str(&self.reason);
        out.put(&self.at);
        out.put(&self.event_id);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(ReleaseRecord {
            by: input.string()?,
            reason: input.string()?,
            at: input.get()?,
            event_id: input.get()?,
        })
    }
}

/// A tag byte per kind (0 raised, 1 claimed, 2 released, 3 cleared), then its fields.
impl RowCodec for HistoryEntry {
    fn encode(&self, out: &mut RowWriter) {
        match self {
            HistoryEntry::Raised {
                seq,
                at,
                event_id,
                tier,
                previous_tier,
                reasons,
                ended_claim_of,
            } => {
                out.u8(0);
                out.uint(*seq);
                out.put(at);
                out.put(event_id);
                out.u8(*tier);
                out.put(previous_tier);
                out.put(reasons);
                out.put(ended_claim_of);
            }
            HistoryEntry::Claimed {
                seq,
                at,
                event_id,
                by,
                tier,
                reassigned_from,
            } => {
                out.u8(1);
                out.uint(*seq);
                out.put(at);
                out.put(event_id);
                out.str(by);
                out.u8(*tier);
                out.put(reassigned_from);
            }
            HistoryEntry::Released {
                seq,
                at,
                event_id,
                by,
                reason,
            } => {
                out.u8(2);
                out.uint(*seq);
                out.put(at);
                out.put(event_id);
                out.str(by);
                out.str(reason);
            }
            HistoryEntry::Cleared {
                seq,
                at,
                event_id,
                reason,
            } => {
                out.u8(3);
                out.uint(*seq);
                out.put(at);
                out.put(event_id);
                out.str(reason);
            }
        }
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        let kind = input.tag("history entry kind", |tag| (tag <= 3).then_some(tag))?;
        let seq = input.uint()?;
        let at = input.get()?;
        let event_id = input.get()?;
        Ok(match kind {
            0 => HistoryEntry::Raised {
                seq,
                at,
                event_id,
                tier: input.u8()?,
                previous_tier: input.get()?,
                reasons: input.get()?,
                ended_claim_of: input.get()?,
            },
            1 => HistoryEntry::Claimed {
                seq,
                at,
                event_id,
                by: input.string()?,
                tier: input.u8()?,
                reassigned_from: input.get()?,
            },
            2 => HistoryEntry::Released {
                seq,
                at,
                event_id,
                by: input.string()?,
                reason: input.string()?,
            },
            _ => HistoryEntry::Cleared {
                seq,
                at,
                event_id,
                reason: input.string()?,
            },
        })
    }
}

impl RowCodec for ClaimWait {
    fn encode(&self, out: &mut RowWriter) {
        out.put(&self.at);
        out.u8(self.tier);
        out.int(self.seconds);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(ClaimWait {
            at: input.get()?,
            tier: input.u8()?,
            seconds: input.int()?,
        })
    }
}

impl RowCodec for CustomerFilings {
    fn encode(&self, out: &mut RowWriter) {
        out.put(&self.filed_at);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(CustomerFilings {
            filed_at: input.get()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plaint_projection::{decode_row, encode_row};

    #[test]
    fn every_history_kind_survives_the_row_form() {
        let at: Timestamp = "2024-05-01T09:30:00.25Z".parse().unwrap();
        let event_id = Uuid::from_u128(7);
        let reasons = vec![EscalationReason {
            rule: "vip".into(),
            tier: 2,
            detail: "VIP customer".into(),
        }];
        let history = vec![
            HistoryEntry::Raised {
                seq: 1,
                at,
                event_id,
                tier: 2,
                previous_tier: Some(1),
                reasons: reasons.clone(),
                ended_claim_of: Some("ana".into()),
            },
            HistoryEntry::Claimed {
                seq: 2,
                at,
                event_id,
                by: "ben".into(),
                tier: 2,
                reassigned_from: None,
            },
            HistoryEntry::Released {
                seq: 3,
                at,
                event_id,
                by: "ben".into(),
                reason: "lunch".into(),
            },
            HistoryEntry::Cleared {
                seq: 4,
                at,
                event_id,
                reason: "resolved".into(),
            },
        ];
        assert_eq!(decode_row(&encode_row(&history)), Ok(history));
        let item = QueueItem {
            tier: 3,
            entered_at: at,
            raised_event_id: event_id,
            reasons,
            claim: Some(ClaimRecord {
                by: "ana".into(),
                at,
                event_id,
                reassigned_from: Some("ben".into()),
            }),
            unclaimed_since: at,
            last_release: Some(ReleaseRecord {
                by: "ben".into(),
                reason: "shift".into(),
                at,
                event_id,
            }),
            operator_events: 5,
            clear_requested: true,
        };
        assert_eq!(decode_row(&encode_row(&item)), Ok(item));
        let queued = QueueRow {
            tier: 2,
            region: "eu".into(),
            team: Some("billing".into()),
            claimed_by: None,
            severity: Severity::High,
            amount_at_stake: Some(AmountAtStake {
                value: "12.5".parse().unwrap(),
                currency: "EUR".into(),
            }),
            filed_at: at,
            breached_since: Some(at),
            reasons_mask: 0b101,
            entered_at: at,
            unclaimed_since: Some(at),
        };
        assert_eq!(decode_row(&encode_row(&queued)), Ok(queued));
    }
}
