//! Queries: a tier's queue, one complaint's history, queue statistics.
//!
//! The queue of a tier is kept in an ordered index (severity, breach time, money, filing
//! time, id), so a first page walks only the front of the index. The one part of the order
//! the escalation view cannot know is the next SLA deadline of items that are not
//! breached; the caller passes it as `next_deadline` (wired to the SLA projector). Only
//! the not-breached items of the severity bands the page reaches are looked up and sorted
//! by deadline, so the cost of a page is the size of those bands, not of the queue.
//!
//! The index holds what filters and the order need; the rest of an entry (reasons,
//! amount, claim time…) comes from the complaint's row, which may be paged out of memory:
//! a page reads the rows of its own items only, from the view's rows when they are not
//! resident.

use std::collections::BTreeMap;

use jiff::Timestamp;
use plaint_events::{AmountAtStake, EscalationReason, Severity};
use serde::{Deserialize, Serialize};

use crate::commands::{check_tier, CommandError};
use crate::config::MAX_TIER;
use crate::priority::IndexKey;
use crate::projector::{EscalationProjector, ItemSummary, NameNumber};
use crate::rules;
use crate::state::{ComplaintStatus, HistoryEntry};
use plaint_projection::{ProjectionError, RowSource};

/// The next SLA deadline of a complaint (from the SLA projector), if it has one.
pub type NextDeadline<'a> = &'a dyn Fn(&str) -> Option<Timestamp>;

/// An item on its way to a page: its key and its next deadline if looked up.
type Ranked<'a> = (&'a IndexKey, Option<Timestamp>);

/// Which items of a tier's queue to list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueQuery {
    pub tier: u8,
    pub region: Option<String>,
    pub team: Option<String>,
    /// A rule name: items raised (among other reasons) by this rule.
    pub reason: Option<String>,
    /// `Some(true)`: claimed items only; `Some(false)`: unclaimed only.
    pub claimed: Option<bool>,
    pub claimed_by: Option<String>,
    pub offset: usize,
    /// 1 to 1000; 50 by default.
    pub limit: usize,
}

impl Default for QueueQuery {
    fn default() -> Self {
        QueueQuery {
            tier: 2,
            region: None,
            team: None,
            reason: None,
            claimed: None,
            claimed_by: None,
            offset: 0,
            limit: 50,
        }
    }
}

impl QueueQuery {
    pub fn tier(tier: u8) -> QueueQuery {
        QueueQuery {
            tier,
            ..QueueQuery::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuePage {
    pub tier: u8,
    pub offset: usize,
    pub limit: usize,
    /// Items in this tier's queue, whatever the filters.
    pub tier_depth: usize,
    /// More items match after this page.
    pub has_more: bool,
    pub items: Vec<QueueEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueEntry {
    /// 1-based position among the items matching the filters.
    pub position: usize,
    pub complaint_id: String,
    pub tier: u8,
    pub region: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub severity: Severity,
    pub vip: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_at_stake: Option<AmountAtStake>,
    pub reasons: Vec<EscalationReason>,
    pub filed_at: Timestamp,
    pub entered_at: Timestamp,
    pub waiting_seconds: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breached_since: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_deadline: Option<Timestamp>,
}

/// Where a complaint stands and every escalation event that took effect on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationHistory {
    pub complaint_id: String,
    pub region: String,
    pub status: ComplaintStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<CurrentEscalation>,
    pub entries: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurrentEscalation {
    pub tier: u8,
    pub entered_at: Timestamp,
    pub reasons: Vec<EscalationReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<Timestamp>,
    pub unclaimed_since: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStats {
    pub at: Timestamp,
    pub total_depth: usize,
    /// Tiers 1 to 4, each present even when empty.
    pub tiers: Vec<TierStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierStats {
    pub tier: u8,
    pub depth: usize,
    pub unclaimed: usize,
    /// The item that has waited longest in this tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest: Option<OldestItem>,
    /// Median time from entering this tier to the first claim, over claims made within
    /// `time_to_claim_window` before `at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_time_to_claim_seconds: Option<i64>,
    pub claims_in_window: usize,
    pub regions: Vec<RegionStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionStats {
    pub region: String,
    pub depth: usize,
    pub unclaimed: usize,
    pub oldest: OldestItem,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OldestItem {
    pub complaint_id: String,
    pub entered_at: Timestamp,
    pub waiting_seconds: i64,
}

/// A query's filters, names turned into the index's numbers.
struct Filter {
    region: Option<NameNumber>,
    team: Option<NameNumber>,
    reason_bit: Option<u8>,
    claimed: Option<bool>,
    claimed_by: Option<NameNumber>,
}

impl Filter {
    fn matches(&self, item: &ItemSummary) -> bool {
        self.region.is_none_or(|r| r == item.region)
            && self.team.is_none_or(|t| item.team == Some(t))
            && self
                .reason_bit
                .is_none_or(|bit| item.reasons_mask & bit != 0)
            && self.claimed.is_none_or(|c| c == item.claimed_by.is_some())
            && self.claimed_by.is_none_or(|by| item.claimed_by == Some(by))
    }
}

fn oldest_of(
    current: &mut Option<OldestItem>,
    complaint_id: &str,
    entered_at: Timestamp,
    now: Timestamp,
) {
    let older = current
        .as_ref()
        .is_none_or(|o| (entered_at, complaint_id) < (o.entered_at, o.complaint_id.as_str()));
    if older {
        *current = Some(OldestItem {
            complaint_id: complaint_id.to_owned(),
            entered_at,
            waiting_seconds: now.duration_since(entered_at).as_secs(),
        });
    }
}

impl EscalationProjector {
    /// One page of a tier's queue in priority order (see [`crate::priority`]).
    /// `next_deadline` supplies the next SLA deadline of items not breached; without it
    /// those items keep the index order (money, then age). The rows of the page's items
    /// that are paged out of memory are read from `rows`, the view's persisted rows (as
    /// for [`EscalationProjector::history`]).
    pub fn queue(
        &self,
        query: &QueueQuery,
        now: Timestamp,
        next_deadline: Option<NextDeadline<'_>>,
        rows: &dyn RowSource,
    ) -> Result<QueuePage, CommandError> {
        check_tier(query.tier)?;
        if query.limit == 0 || query.limit > 1000 {
            return Err(CommandError::InvalidLimit(query.limit));
        }
        let reason_bit = match &query.reason {
            Some(rule) => {
                Some(rules::rule_bit(rule).ok_or_else(|| CommandError::UnknownRule(rule.clone()))?)
            }
            None => None,
        };
        let filter = Filter {
            region: query.region.as_deref().map(|r| self.names.find(r)),
            team: query.team.as_deref().map(|t| self.names.find(t)),
            reason_bit,
            claimed: query.claimed,
            claimed_by: query.claimed_by.as_deref().map(|by| self.names.find(by)),
        };
        let index = &self.queues[usize::from(query.tier - 1)];
        // One more than the page, to tell whether more follow.
        let wanted = query.offset.saturating_add(query.limit).saturating_add(1);
        let mut ordered: Vec<Ranked<'_>> = Vec::new();
        let mut walk = index.iter().peekable();
        while ordered.len() < wanted {
            let Some((key, summary)) = walk.next() else {
                break;
            };
            if !filter.matches(summary) {
                continue;
            }
            let Some(deadline_of) = next_deadline.filter(|_| !key.is_breached()) else {
                ordered.push((key, None));
                continue;
            };
            // Not-breached items sort last within their severity, so the band runs to the
            // next severity; within it the deadline decides.
            let mut band = vec![(key, deadline_of(key.complaint_id()))];
            while let Some((next_key, next_summary)) = walk.peek() {
                if !next_key.same_severity(key) {
                    break;
                }
                if filter.matches(next_summary) {
                    band.push((next_key, deadline_of(next_key.complaint_id())));
                }
                walk.next();
            }
            let order = |a: &Ranked<'_>, b: &Ranked<'_>| {
                IndexKey::compare_with_deadlines(a.0, a.1, b.0, b.1)
            };
            let room = wanted - ordered.len();
            if band.len() > room {
                band.select_nth_unstable_by(room - 1, order);
                band.truncate(room);
            }
            band.sort_unstable_by(order);
            ordered.extend(band);
        }
        let has_more = ordered.len() > query.offset + query.limit;
        let mut items = Vec::with_capacity(query.limit.min(ordered.len()));
        for (position, (key, deadline)) in ordered
            .iter()
            .enumerate()
            .skip(query.offset)
            .take(query.limit)
        {
            let row = self
                .complaint_row(key.complaint_id(), rows)
                .map_err(|e| CommandError::Rows(e.to_string()))?;
            let Some(row) = row else {
                continue;
            };
            let Some(item) = row.queue.as_ref() else {
                continue;
            };
            let next_deadline = match (deadline, next_deadline) {
                (Some(d), _) => Some(*d),
                (None, Some(deadline_of)) => deadline_of(key.complaint_id()),
                (None, None) => None,
            };
            items.push(QueueEntry {
                position: position + 1,
                complaint_id: key.complaint_id().to_string(),
                tier: item.tier,
                region: row.region.clone(),
                team: row.team.clone(),
                severity: row.severity,
                vip: row.vip,
                amount_at_stake: row.amount_at_stake.clone(),
                reasons: item.reasons.clone(),
                filed_at: row.filed_at,
                entered_at: item.entered_at,
                waiting_seconds: now.duration_since(item.entered_at).as_secs(),
                claimed_by: item.claim.as_ref().map(|c| c.by.clone()),
                claimed_at: item.claim.as_ref().map(|c| c.at),
                breached_since: row.breached_since,
                next_deadline,
            });
        }
        Ok(QueuePage {
            tier: query.tier,
            offset: query.offset,
            limit: query.limit,
            tier_depth: index.len(),
            has_more,
            items,
        })
    }

    /// Where a complaint stands and its escalation events; None for an unknown complaint.
    /// A complaint paged out of memory is read from `rows`, the view's persisted rows
    /// (`ProjectorHandle::rows()` in the service; tests that never evict pass `NoRows`).
    pub fn history(
        &self,
        complaint_id: &str,
        rows: &dyn RowSource,
    ) -> Result<Option<EscalationHistory>, ProjectionError> {
        let Some(row) = self.complaint_row(complaint_id, rows)? else {
            return Ok(None);
        };
        Ok(Some(EscalationHistory {
            complaint_id: complaint_id.to_owned(),
            region: row.region.clone(),
            status: row.status,
            current: row.queue.as_ref().map(|item| CurrentEscalation {
                tier: item.tier,
                entered_at: item.entered_at,
                reasons: item.reasons.clone(),
                claimed_by: item.claim.as_ref().map(|c| c.by.clone()),
                claimed_at: item.claim.as_ref().map(|c| c.at),
                unclaimed_since: item.unclaimed_since,
            }),
            entries: row.history.clone(),
        }))
    }

    /// Depth per tier and region, the oldest item, and the median time to claim.
    ///
    /// Reads every queued item and the waits of the first claims after an item entered a
    /// tier (kept as claims are applied, in memory and in rows of their own, so closed
    /// complaints paged out of memory still count). Waits are kept for two windows before
    /// the latest event time: exact for any `now` from one window before the latest event
    /// time on (the service asks at its clock's now, which event times do not pass by more
    /// than the ingester's future skew). Meant for dashboards and the CLI.
    pub fn stats(&self, now: Timestamp) -> QueueStats {
        let window_start = now
            .checked_sub(self.config.time_to_claim_window)
            .unwrap_or(Timestamp::MIN);
        let mut waits: [Vec<i64>; MAX_TIER as usize] = Default::default();
        for ((at, _), wait) in &self.claim_waits {
            if *at > window_start && *at <= now {
                waits[usize::from(wait.tier - 1)].push(wait.seconds);
            }
        }
        let tiers = (1..=MAX_TIER)
            .map(|tier| {
                let index = &self.queues[usize::from(tier - 1)];
                let mut regions: BTreeMap<&str, (usize, usize, Option<OldestItem>)> =
                    BTreeMap::new();
                let mut oldest = None;
                let mut unclaimed = 0;
                for (key, item) in index {
                    let region = regions.entry(self.names.name(item.region)).or_default();
                    region.0 += 1;
                    if item.claimed_by.is_none() {
                        region.1 += 1;
                        unclaimed += 1;
                    }
                    let entered_at = item.entered_at();
                    oldest_of(&mut region.2, key.complaint_id(), entered_at, now);
                    oldest_of(&mut oldest, key.complaint_id(), entered_at, now);
                }
                let tier_waits = &mut waits[usize::from(tier - 1)];
                tier_waits.sort_unstable();
                TierStats {
                    tier,
                    depth: index.len(),
                    unclaimed,
                    oldest,
                    median_time_to_claim_seconds: median(tier_waits),
                    claims_in_window: tier_waits.len(),
                    regions: regions
                        .into_iter()
                        .filter_map(|(region, (depth, unclaimed, oldest))| {
                            Some(RegionStats {
                                region: region.to_owned(),
                                depth,
                                unclaimed,
                                oldest: oldest?,
                            })
                        })
                        .collect(),
                }
            })
            .collect::<Vec<_>>();
        QueueStats {
            at: now,
            total_depth: tiers.iter().map(|t| t.depth).sum(),
            tiers,
        }
    }
}

/// The median of sorted values (the mean of the two middle ones for an even count).
fn median(sorted: &[i64]) -> Option<i64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}
