//! Queries: open at-risk items, open breaches, one complaint's SLA state.

use jiff::Timestamp;
use plaint_events::SlaMetric;
use plaint_projection::{ProjectionError, RowError, RowSource};
use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, ALL_HOURS};
use crate::config::{clock_index, CLOCK_METRICS};
use crate::index::{DeadlineKey, CALLBACK_BASE};
use crate::projector::{
    breach_key_complaint, clock_calendar, complaint_from_row, decode_complaint_row,
    decode_view_row, envs, policy_by_name, region_calendar, row_key, Names, SlaProjector,
    BREACH_PREFIX,
};
use crate::slots::Held;
use crate::state::*;

/// Which items a query returns; every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlaFilter {
    pub region: Option<String>,
    pub category: Option<String>,
    pub policy: Option<String>,
    pub metric: Option<SlaMetric>,
    /// At most this many items (the latest first).
    pub limit: Option<usize>,
}

/// One open deadline of one complaint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaItem {
    pub complaint_id: String,
    pub region: String,
    pub category: String,
    pub policy: String,
    pub metric: SlaMetric,
    /// Set for callback promises: the promise's serial within the complaint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promise: Option<u16>,
    pub started_at: Timestamp,
    pub due_at: Timestamp,
    /// Target in seconds of the metric's calendar.
    pub target_seconds: i64,
    /// Calendar seconds used by `now` (pauses excluded).
    pub used_seconds: i64,
    pub fraction_used: f64,
    /// Wall-clock seconds since the deadline; 0 if it has not passed.
    pub late_by_seconds: i64,
    pub paused: bool,
    /// The `sla.breached` event of this deadline is in the log.
    pub breach_recorded: bool,
}

/// One metric of one complaint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSla {
    pub metric: SlaMetric,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promise: Option<u16>,
    /// `running`, `paused`, `stopped`, `met`, `idle` (periodic update between cycles), or
    /// `pending` (callback promise).
    pub state: String,
    /// `24x7` or `business:<calendar>`.
    pub calendar: String,
    pub target_seconds: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    pub used_seconds: i64,
    pub paused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met_at: Option<Timestamp>,
    /// Breach recorded, or met after the deadline.
    pub breached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_by_seconds: Option<i64>,
}

/// A finished cycle of a metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletedCycle {
    pub metric: SlaMetric,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    /// Absent when the cycle ended unmet after its deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met_at: Option<Timestamp>,
    pub used_seconds: i64,
    pub breached: bool,
}

/// One complaint's SLA state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintSla {
    pub complaint_id: String,
    pub region: String,
    pub category: String,
    pub policy: String,
    pub status: ComplaintStatus,
    pub filed_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_since: Option<Timestamp>,
    pub metrics: Vec<MetricSla>,
    pub completed: Vec<CompletedCycle>,
}

struct Resolved {
    region: Option<u32>,
    category: Option<u32>,
    policy: Option<u16>,
}

impl Resolved {
    /// Whether a complaint with these (region, category, policy) passes the filter.
    fn admits(&self, (region, category, policy): (u32, u32, u16)) -> bool {
        self.region.is_none_or(|r| r == region)
            && self.category.is_none_or(|c| c == category)
            && self.policy.is_none_or(|p| p == policy)
    }
}

/// The metric of a timer id.
fn timer_metric(timer: u16) -> SlaMetric {
    if timer < CALLBACK_BASE {
        CLOCK_METRICS[timer as usize]
    } else {
        SlaMetric::Callback
    }
}

impl SlaProjector {
    /// Resolves the filter's names; None if a name is unknown (nothing can match).
    fn resolve(&self, filter: &SlaFilter) -> Option<Resolved> {
        let region = match &filter.region {
            Some(name) => Some(self.names.regions.find(name)?),
            None => None,
        };
        let category = match &filter.category {
            Some(name) => Some(self.names.categories.find(name)?),
            None => None,
        };
        let policy = match &filter.policy {
            Some(name) => Some(self.config.policies.iter().position(|p| &p.name == name)? as u16),
            None => None,
        };
        Some(Resolved {
            region,
            category,
            policy,
        })
    }

    /// The item of `complaint`'s timer behind `key` (its slot is not read).
    fn item(
        &self,
        complaint: &Complaint,
        key: &DeadlineKey,
        filter: &SlaFilter,
        resolved: &Resolved,
        now: i64,
    ) -> Option<SlaItem> {
        if !resolved.admits((complaint.region, complaint.category, complaint.policy)) {
            return None;
        }
        let (metric, started_at, due_at, target, used, paused, breached, promise) =
            if key.timer < CALLBACK_BASE {
                let i = key.timer as usize;
                let env = self.envs_of(complaint)[i]?;
                let clock = &complaint.clocks[i];
                (
                    CLOCK_METRICS[i],
                    clock.started_at,
                    clock.due_at,
                    env.target,
                    clock.used_at(env, now),
                    clock.phase != ClockPhase::Running,
                    clock.breached,
                    None,
                )
            } else {
                let serial = key.timer - CALLBACK_BASE;
                let promise = complaint.promises.iter().find(|p| p.serial == serial)?;
                let target = promise.due_at - promise.promised_at;
                let used = (now - promise.promised_at).max(0);
                (
                    SlaMetric::Callback,
                    promise.promised_at,
                    promise.due_at,
                    target,
                    used,
                    false,
                    promise.breached,
                    Some(serial),
                )
            };
        if filter.metric.is_some_and(|m| m != metric) {
            return None;
        }
        Some(SlaItem {
            complaint_id: complaint.id.to_string(),
            region: self.names.regions.name(complaint.region).to_string(),
            category: self.names.categories.name(complaint.category).to_string(),
            policy: self.policy_name(complaint).to_string(),
            metric,
            promise,
            started_at: ts(started_at),
            due_at: ts(due_at),
            target_seconds: target,
            used_seconds: used,
            fraction_used: fraction_used(used, target),
            late_by_seconds: (now - due_at).max(0),
            paused,
            breach_recorded: breached,
        })
    }

    fn sorted(mut items: Vec<SlaItem>, filter: &SlaFilter) -> Vec<SlaItem> {
        // The latest first: the earliest deadline is the one overdue longest (or closest).
        items.sort_by(|a, b| {
            (a.due_at, &a.complaint_id, a.metric, a.promise).cmp(&(
                b.due_at,
                &b.complaint_id,
                b.metric,
                b.promise,
            ))
        });
        if let Some(limit) = filter.limit {
            items.truncate(limit);
        }
        items
    }

    /// Open deadlines past their at-risk threshold at `now` whose breach is not recorded,
    /// including ones already overdue whose `sla.breached` event has not come back yet
    /// (`late_by_seconds > 0`). Sorted by deadline: the latest first.
    ///
    /// Chosen and ordered from memory (the deadline index and what stays of a paged-out
    /// complaint); only the items returned that belong to paged-out complaints are read
    /// from `rows`, the view's persisted rows (read under the projector's lock).
    pub fn at_risk(
        &self,
        filter: &SlaFilter,
        rows: &dyn RowSource,
        now: Timestamp,
    ) -> Result<Vec<SlaItem>, ProjectionError> {
        let Some(resolved) = self.resolve(filter) else {
            return Ok(Vec::new());
        };
        let now = now.as_second();
        let mut candidates: Vec<(i64, &str, &DeadlineKey)> = self
            .index
            .warned_by(now)
            .filter(|(key, _)| filter.metric.is_none_or(|m| m == timer_metric(key.timer)))
            .filter_map(|(key, &due_at)| {
                let held = self.complaints.held(key.slot)?;
                resolved
                    .admits(held.names())
                    .then(|| (due_at, &**held.id(), key))
            })
            .collect();
        // The answer's order (deadline, complaint, metric and promise, which is timer
        // order), so that a limited answer reads only the rows it returns.
        candidates.sort_unstable_by(|a, b| (a.0, a.1, a.2.timer).cmp(&(b.0, b.1, b.2.timer)));
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut names = None;
        let mut items = Vec::new();
        for (_, id, key) in candidates {
            if items.len() >= limit {
                break;
            }
            let item = match self.complaints.get(key.slot) {
                Some(complaint) => self.item(complaint, key, filter, &resolved, now),
                None => {
                    let row_key = row_key(Stored::Live, id);
                    let value = rows
                        .row(&row_key)?
                        .ok_or_else(|| ProjectionError::MissingRow {
                            projector: "sla",
                            key: String::from_utf8_lossy(&row_key).into_owned(),
                        })?;
                    let row = decode_complaint_row(&row_key, &value)?;
                    // Its names are interned already: the copy stays as memory has it.
                    let names = names.get_or_insert_with(|| self.names.clone());
                    let complaint = complaint_from_row(&self.config, names, id.into(), &row);
                    self.item(&complaint, key, filter, &resolved, now)
                }
            };
            items.extend(item);
        }
        Ok(Self::sorted(items, filter))
    }

    /// Open deadlines whose breach is recorded and whose metric is not met yet, of
    /// complaints that are open or resolved (closed and withdrawn ones are history: see the
    /// compliance report). Sorted by deadline, the latest first (the one overdue longest),
    /// then by complaint, metric and promise; at most `filter.limit` of them. `now` gives
    /// `late_by_seconds` and the time used.
    ///
    /// Read from the breach rows (`b/`, one per listed breach) of `rows`, the view's
    /// persisted rows, whose key order is this order: a complaint whose every deadline is
    /// breached has nothing left to fire and need not be in memory. The answer is therefore
    /// that of the last committed batch (read `rows` under the projector's lock, as for
    /// [`SlaProjector::read_complaint`]).
    pub fn breaches(
        &self,
        filter: &SlaFilter,
        rows: &dyn RowSource,
        now: Timestamp,
    ) -> Result<Vec<SlaItem>, ProjectionError> {
        let now = now.as_second();
        let mut items = Vec::new();
        if filter.limit == Some(0) {
            return Ok(items);
        }
        for row in rows.rows_with_prefix(BREACH_PREFIX.as_bytes()) {
            let (key, value) = row?;
            let breach: BreachRow = decode_view_row(&key, &value)?;
            let skip =
                |wanted: &Option<String>, name: &str| wanted.as_deref().is_some_and(|w| w != name);
            if skip(&filter.region, &breach.region)
                || skip(&filter.category, &breach.category)
                || skip(&filter.policy, &breach.policy)
                || filter.metric.is_some_and(|m| m != breach.metric)
            {
                continue;
            }
            let Some(calendar) = self.breach_calendar(&breach) else {
                continue;
            };
            let complaint_id =
                breach_key_complaint(&key).ok_or_else(|| ProjectionError::UndecodableRow {
                    projector: "sla",
                    key: String::from_utf8_lossy(&key).into_owned(),
                    source: RowError {
                        at: 0,
                        what: "not a breach row key (b/<due>/<complaint id>#<timer>)".into(),
                    },
                })?;
            let used = breach.used_seconds
                + breach
                    .running_since
                    .map_or(0, |since| calendar.counted_between(since.as_second(), now));
            let target = breach.target_seconds;
            items.push(SlaItem {
                complaint_id: complaint_id.to_string(),
                region: breach.region,
                category: breach.category,
                policy: breach.policy,
                metric: breach.metric,
                promise: breach.promise,
                started_at: breach.started_at,
                due_at: breach.due_at,
                target_seconds: target,
                used_seconds: used,
                fraction_used: fraction_used(used, target),
                late_by_seconds: (now - breach.due_at.as_second()).max(0),
                paused: breach.paused,
                breach_recorded: true,
            });
            if filter.limit.is_some_and(|limit| items.len() >= limit) {
                break;
            }
        }
        Ok(items)
    }

    /// What [`SlaProjector::breaches`] answered before breaches had rows (layout 2), from
    /// the complaints in memory: the oracle the row-based query is tested against, for a
    /// projector that never evicted.
    #[cfg(test)]
    pub(crate) fn breaches_in_memory(&self, filter: &SlaFilter, now: Timestamp) -> Vec<SlaItem> {
        let Some(resolved) = self.resolve(filter) else {
            return Vec::new();
        };
        let now = now.as_second();
        let mut keys: Vec<DeadlineKey> = self
            .by_id
            .values()
            .flat_map(|&slot| {
                self.complaints
                    .get(slot)
                    .map(Complaint::listed_breaches)
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |b| DeadlineKey {
                        at: b.due_at,
                        slot,
                        timer: b.timer,
                    })
            })
            .collect();
        keys.sort_unstable();
        let items = keys
            .iter()
            .filter_map(|key| {
                let complaint = self.complaints.get(key.slot)?;
                self.item(complaint, key, filter, &resolved, now)
            })
            .collect();
        Self::sorted(items, filter)
    }

    /// The calendar a breach row's clock counts on under the configuration: None where a
    /// complaint in memory would have no environment for it (its policy has no target for
    /// the metric any more, or the region no business calendar), which the in-memory
    /// query skipped too.
    fn breach_calendar(&self, breach: &BreachRow) -> Option<&Calendar> {
        let Some(i) = clock_index(breach.metric) else {
            return Some(&ALL_HOURS);
        };
        let policy = &self.config.policies[policy_by_name(&self.config, &breach.policy) as usize];
        clock_calendar(
            &self.config,
            region_calendar(&self.config, &breach.region),
            policy.targets[i]?,
        )
    }

    /// The complaint's next deadline: the least `due_at` among its metrics that are
    /// still running and its callback promises still pending, none of them breached (the
    /// metrics of [`SlaProjector::complaint`] in state `running` or `pending`). Read from
    /// the compact state without building that report: the escalation queue asks for it
    /// for every item of the severity band a page reaches, so it must not allocate.
    ///
    /// A met metric keeps its `due_at` in the report but is no deadline any more, and a
    /// paused clock's deadline moves when it resumes: neither counts.
    pub fn next_due(&self, complaint_id: &str) -> Option<Timestamp> {
        let &slot = self.by_id.get(complaint_id)?;
        let due_at = match self.complaints.held(slot)? {
            Held::Resident(complaint) => self.next_due_of(complaint)?,
            Held::PagedOut(dormant) => Some(dormant.next_due).filter(|&d| d != NONE)?,
        };
        Some(ts(due_at))
    }

    /// [`SlaProjector::next_due`] of a complaint in memory, in Unix seconds.
    pub(crate) fn next_due_of(&self, complaint: &Complaint) -> Option<i64> {
        let clocks = self
            .envs_of(complaint)
            .into_iter()
            .zip(&complaint.clocks)
            .filter(|(env, clock)| {
                env.is_some()
                    && clock.phase == ClockPhase::Running
                    && !clock.breached
                    && clock.due_at != NONE
            })
            .map(|(_, clock)| clock.due_at);
        let promises = complaint
            .promises
            .iter()
            .filter(|p| !p.breached)
            .map(|p| p.due_at);
        clocks.chain(promises).min()
    }

    /// One complaint's SLA state at `now`, if the complaint is held in full in memory:
    /// for a projector that never evicts (benchmarks, tests). A paged projector answers
    /// for every complaint through [`SlaProjector::read_complaint`].
    pub fn complaint(&self, complaint_id: &str, now: Timestamp) -> Option<ComplaintSla> {
        let &slot = self.by_id.get(complaint_id)?;
        Some(self.report(&self.names, self.complaints.get(slot)?, now))
    }

    /// One complaint's SLA state at `now`: each metric's target, deadline, time used,
    /// pause, met or breached; and its completed cycles. A complaint paged out of memory
    /// is read from `rows`, the view's persisted rows (read under the projector's lock,
    /// so that rows and memory are of one batch boundary).
    pub fn read_complaint(
        &self,
        complaint_id: &str,
        rows: &dyn RowSource,
        now: Timestamp,
    ) -> Result<Option<ComplaintSla>, ProjectionError> {
        // An armed complaint paged out is read from its live row, the others from the
        // archive.
        let mut side = Stored::Archive;
        if let Some(&slot) = self.by_id.get(complaint_id) {
            match self.complaints.get(slot) {
                Some(complaint) => return Ok(Some(self.report(&self.names, complaint, now))),
                None => side = Stored::Live,
            }
        }
        let key = row_key(side, complaint_id);
        let Some(value) = rows.row(&key)? else {
            return Ok(None);
        };
        let row = decode_complaint_row(&key, &value)?;
        // Names of an archived complaint may be unknown to memory (after a restart).
        let mut names = self.names.clone();
        let complaint = complaint_from_row(&self.config, &mut names, complaint_id.into(), &row);
        Ok(Some(self.report(&names, &complaint, now)))
    }

    fn report(&self, names: &Names, complaint: &Complaint, now: Timestamp) -> ComplaintSla {
        let now = now.as_second();
        let environments = envs(&self.config, &names.region_calendar, complaint);
        let policy = &self.config.policies[complaint.policy as usize];
        let mut metrics = Vec::new();
        for (i, env) in environments.iter().enumerate() {
            let (Some(env), Some(target)) = (env, policy.targets[i]) else {
                continue;
            };
            let clock = &complaint.clocks[i];
            let calendar = if target.business {
                let index = names.region_calendar[complaint.region as usize].unwrap_or(0);
                format!("business:{}", self.config.calendars[index as usize].0)
            } else {
                "24x7".to_string()
            };
            let late_by = if clock.phase == ClockPhase::Met {
                (clock.breached && clock.due_at != NONE).then(|| clock.met_at - clock.due_at)
            } else {
                (clock.due_at != NONE && now > clock.due_at && clock.phase.is_open())
                    .then(|| now - clock.due_at)
            };
            metrics.push(MetricSla {
                metric: CLOCK_METRICS[i],
                promise: None,
                state: phase_name(clock.phase).to_string(),
                calendar,
                target_seconds: env.target,
                started_at: opt_ts(clock.started_at),
                due_at: opt_ts(clock.due_at),
                used_seconds: clock.used_at(*env, now),
                paused: clock.phase == ClockPhase::Paused,
                met_at: opt_ts(clock.met_at),
                breached: clock.breached,
                late_by_seconds: late_by,
            });
        }
        for promise in &complaint.promises {
            metrics.push(MetricSla {
                metric: SlaMetric::Callback,
                promise: Some(promise.serial),
                state: "pending".to_string(),
                calendar: "24x7".to_string(),
                target_seconds: promise.due_at - promise.promised_at,
                started_at: Some(ts(promise.promised_at)),
                due_at: Some(ts(promise.due_at)),
                used_seconds: (now - promise.promised_at).max(0),
                paused: false,
                met_at: None,
                breached: promise.breached,
                late_by_seconds: (now > promise.due_at).then(|| now - promise.due_at),
            });
        }
        ComplaintSla {
            complaint_id: complaint.id.to_string(),
            region: names.regions.name(complaint.region).to_string(),
            category: names.categories.name(complaint.category).to_string(),
            policy: policy.name.clone(),
            status: complaint.status,
            filed_at: ts(complaint.filed_at),
            paused_since: opt_ts(complaint.paused_since),
            metrics,
            completed: complaint
                .completed
                .iter()
                .map(|r| CompletedCycle {
                    metric: r.metric,
                    started_at: ts(r.started_at),
                    due_at: opt_ts(r.due_at),
                    met_at: opt_ts(r.met_at),
                    used_seconds: r.used,
                    breached: r.breached,
                })
                .collect(),
        }
    }
}

fn phase_name(phase: ClockPhase) -> &'static str {
    match phase {
        ClockPhase::Off => "off",
        ClockPhase::Idle => "idle",
        ClockPhase::Running => "running",
        ClockPhase::Paused => "paused",
        ClockPhase::Stopped => "stopped",
        ClockPhase::Met => "met",
    }
}

/// The share of its target a deadline has used (1 for a target of zero).
fn fraction_used(used: i64, target: i64) -> f64 {
    if target > 0 {
        used as f64 / target as f64
    } else {
        1.0
    }
}
