//! Operator commands (claim, release, reassign) as pure validations against the view.
//!
//! A `prepare_*` method checks the command against the current view and builds the event
//! to append; it changes nothing. A complaint whose row is paged out of memory is read
//! from the view's rows (`rows`, as for `history`). The caller appends the event through the `COMPLAINTS`
//! stream with an expected-version check on the complaint's stream, so that of two
//! operators claiming the same item at the same moment exactly one append succeeds; the
//! loser's caller re-prepares after the view caught up and gets
//! [`CommandError::AlreadyClaimed`]. The view changes only when the event comes back
//! through the log, where the first claim in log order wins.
//!
//! Event ids are UUIDv5 over (complaint, command, operator, raise count, operator-event
//! count), so a command prepared twice against the same view state gets the same id. When
//! the view shows that the very same command already took effect (a retry after a lost
//! reply), the original event is handed back with `already_applied: true`: answer success
//! and do not append.

use jiff::Timestamp;
use plaint_events::{own, subjects, EscalationClaimed, EscalationReleased, Event, EventBody};
use plaint_projection::RowSource;
use serde::Serialize;
use uuid::Uuid;

use crate::config::MAX_TIER;
use crate::projector::EscalationProjector;
use crate::state::{ComplaintRow, QueueItem};

/// Errors of operator commands and queue queries; each message says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The view has no row of this complaint (in memory or paged out).
    #[error("complaint {0} is not in the escalation view; check the id and its status with `plaint complaint <id>`")]
    UnknownComplaint(String),
    #[error("complaint {complaint_id} is not in an escalation queue; only escalated complaints can be claimed, released or reassigned")]
    NotInQueue { complaint_id: String },
    #[error("tier {0} does not exist; tiers are 1 (frontline) to 4 (executive)")]
    UnknownTier(u8),
    #[error("complaint {complaint_id} waits in the tier {actual} queue, not tier {requested}; claim it as a tier {actual} operator")]
    WrongTier {
        complaint_id: String,
        requested: u8,
        actual: u8,
    },
    #[error("complaint {complaint_id} is already claimed by {by}; ask {by} to release it, or reassign it")]
    AlreadyClaimed { complaint_id: String, by: String },
    #[error("complaint {complaint_id} is not claimed by anyone; claim it instead")]
    NotClaimed { complaint_id: String },
    #[error("complaint {complaint_id} is claimed by {holder}, not by {by}; only the holder can release it (or reassign it)")]
    NotClaimedBy {
        complaint_id: String,
        by: String,
        holder: String,
    },
    #[error("operator name {0:?} is not valid; use 1 to 128 printable characters without spaces")]
    InvalidOperator(String),
    #[error("a release needs a reason of 1 to 1024 characters")]
    InvalidReason,
    #[error("{0:?} is not an escalation rule; use one of money, severity, sla_breach, repeat_complainant, reopened, vip, manual")]
    UnknownRule(String),
    #[error("page limit {0} is out of range; ask for 1 to 1000 items")]
    InvalidLimit(usize),
    /// A row paged out of memory could not be read back (the message says why and what
    /// to do).
    #[error("{0}")]
    Rows(String),
}

impl CommandError {
    /// A stable machine-readable code for API replies.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::UnknownComplaint(_) => "unknown_complaint",
            CommandError::NotInQueue { .. } => "not_in_queue",
            CommandError::UnknownTier(_) => "unknown_tier",
            CommandError::WrongTier { .. } => "wrong_tier",
            CommandError::AlreadyClaimed { .. } => "already_claimed",
            CommandError::NotClaimed { .. } => "not_claimed",
            CommandError::NotClaimedBy { .. } => "not_claimed_by",
            CommandError::InvalidOperator(_) => "invalid_operator",
            CommandError::InvalidReason => "invalid_reason",
            CommandError::UnknownRule(_) => "unknown_rule",
            CommandError::InvalidLimit(_) => "invalid_limit",
            CommandError::Rows(_) => "view_unreadable",
        }
    }
}

/// The event an operator command writes, ready to append on `subject`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreparedCommand {
    pub subject: String,
    pub event: Event,
    /// The view already holds exactly this event (the command is a retry of one that took
    /// effect): report success without appending.
    pub already_applied: bool,
}

pub(crate) fn check_tier(tier: u8) -> Result<(), CommandError> {
    if (1..=MAX_TIER).contains(&tier) {
        Ok(())
    } else {
        Err(CommandError::UnknownTier(tier))
    }
}

fn check_operator(name: &str) -> Result<(), CommandError> {
    let valid = !name.is_empty()
        && name.chars().count() <= 128
        && name.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if valid {
        Ok(())
    } else {
        Err(CommandError::InvalidOperator(name.to_owned()))
    }
}

impl EscalationProjector {
    /// Runs `decide` on a queued complaint's row and queue item, the row from memory or
    /// from `rows`.
    fn with_queued<T>(
        &self,
        complaint_id: &str,
        rows: &dyn RowSource,
        decide: impl FnOnce(&ComplaintRow, &QueueItem) -> Result<T, CommandError>,
    ) -> Result<T, CommandError> {
        let row = self
            .complaint_row(complaint_id, rows)
            .map_err(|e| CommandError::Rows(e.to_string()))?
            .ok_or_else(|| CommandError::UnknownComplaint(complaint_id.to_owned()))?;
        let item = row
            .queue
            .as_ref()
            .filter(|q| !q.clear_requested)
            .ok_or_else(|| CommandError::NotInQueue {
                complaint_id: complaint_id.to_owned(),
            })?;
        decide(&row, item)
    }

    fn command(
        &self,
        complaint_id: &str,
        row: &ComplaintRow,
        id: Uuid,
        time: Timestamp,
        body: EventBody,
        already_applied: bool,
    ) -> PreparedCommand {
        let event = Event {
            id,
            source: own::source("escalation"),
            complaint_id: complaint_id.to_owned(),
            time,
            body,
        };
        PreparedCommand {
            subject: subjects::event(&self.subject_prefix, &row.region, event.event_type()),
            event,
            already_applied,
        }
    }

    fn command_id(
        complaint_id: &str,
        command: &str,
        operator: &str,
        row: &ComplaintRow,
        item: &QueueItem,
    ) -> Uuid {
        own::event_id(&[
            complaint_id,
            command,
            operator,
            &row.raise_count.to_string(),
            &item.operator_events.to_string(),
        ])
    }

    /// `claim <complaint> --by <operator> [--tier <tier>]`: `tier`, when given, is the
    /// operator's tier and must be the item's.
    pub fn prepare_claim(
        &self,
        complaint_id: &str,
        by: &str,
        tier: Option<u8>,
        now: Timestamp,
        rows: &dyn RowSource,
    ) -> Result<PreparedCommand, CommandError> {
        check_operator(by)?;
        if let Some(tier) = tier {
            check_tier(tier)?;
        }
        self.with_queued(complaint_id, rows, |row, item| {
            self.decide_claim(complaint_id, by, tier, now, row, item)
        })
    }

    fn decide_claim(
        &self,
        complaint_id: &str,
        by: &str,
        tier: Option<u8>,
        now: Timestamp,
        row: &ComplaintRow,
        item: &QueueItem,
    ) -> Result<PreparedCommand, CommandError> {
        if let Some(requested) = tier.filter(|t| *t != item.tier) {
            return Err(CommandError::WrongTier {
                complaint_id: complaint_id.to_owned(),
                requested,
                actual: item.tier,
            });
        }
        if let Some(claim) = &item.claim {
            if claim.by != by {
                return Err(CommandError::AlreadyClaimed {
                    complaint_id: complaint_id.to_owned(),
                    by: claim.by.clone(),
                });
            }
            let body = EventBody::EscalationClaimed(EscalationClaimed {
                by: claim.by.clone(),
                tier: item.tier,
                reassigned_from: claim.reassigned_from.clone(),
            });
            return Ok(self.command(complaint_id, row, claim.event_id, claim.at, body, true));
        }
        let body = EventBody::EscalationClaimed(EscalationClaimed {
            by: by.to_owned(),
            tier: item.tier,
            reassigned_from: None,
        });
        let id = Self::command_id(complaint_id, "claimed", by, row, item);
        Ok(self.command(complaint_id, row, id, now, body, false))
    }

    /// `release <complaint> --by <operator> --reason <text>`: only the holder releases.
    pub fn prepare_release(
        &self,
        complaint_id: &str,
        by: &str,
        reason: &str,
        now: Timestamp,
        rows: &dyn RowSource,
    ) -> Result<PreparedCommand, CommandError> {
        check_operator(by)?;
        if reason.trim().is_empty() || reason.chars().count() > 1024 {
            return Err(CommandError::InvalidReason);
        }
        self.with_queued(complaint_id, rows, |row, item| {
            self.decide_release(complaint_id, by, reason, now, row, item)
        })
    }

    fn decide_release(
        &self,
        complaint_id: &str,
        by: &str,
        reason: &str,
        now: Timestamp,
        row: &ComplaintRow,
        item: &QueueItem,
    ) -> Result<PreparedCommand, CommandError> {
        match &item.claim {
            Some(claim) if claim.by == by => {
                let body = EventBody::EscalationReleased(EscalationReleased {
                    by: by.to_owned(),
                    reason: reason.to_owned(),
                });
                let id = Self::command_id(complaint_id, "released", by, row, item);
                Ok(self.command(complaint_id, row, id, now, body, false))
            }
            Some(claim) => Err(CommandError::NotClaimedBy {
                complaint_id: complaint_id.to_owned(),
                by: by.to_owned(),
                holder: claim.by.clone(),
            }),
            None => match &item.last_release {
                Some(release) if release.by == by && release.reason == reason => {
                    let body = EventBody::EscalationReleased(EscalationReleased {
                        by: release.by.clone(),
                        reason: release.reason.clone(),
                    });
                    Ok(self.command(complaint_id, row, release.event_id, release.at, body, true))
                }
                _ => Err(CommandError::NotClaimed {
                    complaint_id: complaint_id.to_owned(),
                }),
            },
        }
    }

    /// `reassign <complaint> --to <operator>`: moves a claimed item to another operator
    /// (an `escalation.claimed` with `reassigned_from` = the current holder).
    pub fn prepare_reassign(
        &self,
        complaint_id: &str,
        to: &str,
        now: Timestamp,
        rows: &dyn RowSource,
    ) -> Result<PreparedCommand, CommandError> {
        check_operator(to)?;
        self.with_queued(complaint_id, rows, |row, item| {
            self.decide_reassign(complaint_id, to, now, row, item)
        })
    }

    fn decide_reassign(
        &self,
        complaint_id: &str,
        to: &str,
        now: Timestamp,
        row: &ComplaintRow,
        item: &QueueItem,
    ) -> Result<PreparedCommand, CommandError> {
        let Some(claim) = &item.claim else {
            return Err(CommandError::NotClaimed {
                complaint_id: complaint_id.to_owned(),
            });
        };
        if claim.by == to {
            if claim.reassigned_from.is_some() {
                let body = EventBody::EscalationClaimed(EscalationClaimed {
                    by: claim.by.clone(),
                    tier: item.tier,
                    reassigned_from: claim.reassigned_from.clone(),
                });
                return Ok(self.command(complaint_id, row, claim.event_id, claim.at, body, true));
            }
            return Err(CommandError::AlreadyClaimed {
                complaint_id: complaint_id.to_owned(),
                by: claim.by.clone(),
            });
        }
        let body = EventBody::EscalationClaimed(EscalationClaimed {
            by: to.to_owned(),
            tier: item.tier,
            reassigned_from: Some(claim.by.clone()),
        });
        let id = Self::command_id(complaint_id, "reassigned", to, row, item);
        Ok(self.command(complaint_id, row, id, now, body, false))
    }
}
