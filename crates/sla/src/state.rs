//! Per-complaint SLA state, compact in memory, and its persisted row form.
//!
//! In memory every time is Unix seconds (`i64`, [`NONE`] for absent) and names are
//! interned indexes, so that a million open complaints stay small. The row form
//! ([`ComplaintRow`], binary as every view row, see `plaint_projection::codec`) spells
//! names out, so that it does not depend on interning order.

use jiff::Timestamp;
use plaint_events::SlaMetric;
use plaint_projection::{RowCodec, RowError, RowReader, RowWriter};
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::index::CALLBACK_BASE;

/// An absent time.
pub(crate) const NONE: i64 = i64::MIN;

pub(crate) fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap_or(if seconds < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

pub(crate) fn opt_ts(seconds: i64) -> Option<Timestamp> {
    (seconds != NONE).then(|| ts(seconds))
}

pub(crate) fn from_opt_ts(value: Option<Timestamp>) -> i64 {
    value.map_or(NONE, |t| t.as_second())
}

/// A complaint's lifecycle status: the one the log's lifecycle rules use.
pub use plaint_events::lifecycle::StreamStatus as ComplaintStatus;

/// Where a metric's clock is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockPhase {
    /// The policy has no target for this metric.
    Off,
    /// No cycle under way (periodic update while the complaint is not open).
    Idle,
    Running,
    /// Paused while awaiting the customer.
    Paused,
    /// Stopped because the complaint is no longer open; resumes if it is reopened.
    Stopped,
    /// The single cycle of first response or resolution was met.
    Met,
}

impl ClockPhase {
    pub(crate) fn is_open(self) -> bool {
        matches!(
            self,
            ClockPhase::Running | ClockPhase::Paused | ClockPhase::Stopped
        )
    }
}

/// What a clock is measured against.
#[derive(Clone, Copy)]
pub(crate) struct ClockEnv<'a> {
    pub calendar: &'a Calendar,
    pub target: i64,
    pub fraction: f64,
}

impl ClockEnv<'_> {
    /// Counted seconds at which the at-risk threshold is crossed.
    fn warn_threshold(&self) -> i64 {
        ((self.target as f64 * self.fraction).ceil() as i64).clamp(0, self.target)
    }
}

/// One cycle of a time metric.
///
/// Invariant: `due_at` is set while the clock runs, and also after it stopped or paused
/// once its target was used up (the deadline passed; the fact stays). `used` counts the
/// calendar seconds before `since`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Clock {
    pub phase: ClockPhase,
    /// Breach recorded (its `sla.breached` event is in the log) or, once met, met late.
    pub breached: bool,
    pub started_at: i64,
    pub used: i64,
    pub since: i64,
    pub due_at: i64,
    pub met_at: i64,
    /// Derived from the fields above (never persisted): when the at-risk threshold passes.
    pub warn_at: i64,
}

/// A completed cycle, kept for compliance reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Record {
    pub metric: SlaMetric,
    pub breached: bool,
    pub started_at: i64,
    pub due_at: i64,
    /// NONE when the cycle ended unmet (its deadline passed and the complaint moved on).
    pub met_at: i64,
    pub used: i64,
}

impl Record {
    /// The instant a report files the outcome under.
    pub(crate) fn outcome_at(&self) -> i64 {
        if self.met_at != NONE {
            self.met_at
        } else {
            self.due_at
        }
    }
}

impl Clock {
    pub(crate) fn off() -> Clock {
        Clock {
            phase: ClockPhase::Off,
            breached: false,
            started_at: NONE,
            used: 0,
            since: NONE,
            due_at: NONE,
            met_at: NONE,
            warn_at: NONE,
        }
    }

    /// The timer's (warn, due) entries while it can still fire.
    pub(crate) fn armed(&self) -> Option<(i64, i64)> {
        (self.phase.is_open() && !self.breached && self.due_at != NONE)
            .then_some((self.warn_at, self.due_at))
    }

    /// The deadline of a recorded breach of a cycle still open.
    pub(crate) fn open_breach(&self) -> Option<i64> {
        (self.phase.is_open() && self.breached && self.due_at != NONE).then_some(self.due_at)
    }

    pub(crate) fn start_cycle(&mut self, env: ClockEnv, at: i64) {
        *self = Clock {
            phase: ClockPhase::Running,
            breached: false,
            started_at: at,
            used: 0,
            since: at,
            due_at: NONE,
            met_at: NONE,
            warn_at: NONE,
        };
        self.schedule(env);
    }

    /// Recomputes the deadline of a running clock; a clock whose target is used up keeps
    /// the deadline it passed.
    pub(crate) fn schedule(&mut self, env: ClockEnv) {
        match self.phase {
            ClockPhase::Running if self.used < env.target => {
                self.due_at = env.calendar.add_counted(self.since, env.target - self.used);
                let threshold = env.warn_threshold();
                self.warn_at = if self.used >= threshold {
                    self.since
                } else {
                    env.calendar.add_counted(self.since, threshold - self.used)
                };
            }
            ClockPhase::Running | ClockPhase::Paused | ClockPhase::Stopped
                if self.due_at != NONE =>
            {
                self.warn_at = self.due_at;
            }
            _ => {}
        }
    }

    /// Counted seconds used by `now`.
    pub(crate) fn used_at(&self, env: ClockEnv, now: i64) -> i64 {
        if self.phase == ClockPhase::Running {
            self.used + env.calendar.counted_between(self.since, now)
        } else {
            self.used
        }
    }

    /// Pauses or stops a running or paused clock.
    pub(crate) fn halt(&mut self, env: ClockEnv, at: i64, phase: ClockPhase) {
        if !self.phase.is_open() {
            return;
        }
        if self.phase == ClockPhase::Running {
            self.used += env.calendar.counted_between(self.since, at);
            self.since = NONE;
        }
        self.phase = phase;
        if self.used < env.target {
            self.due_at = NONE;
            self.warn_at = NONE;
        } else {
            self.warn_at = self.due_at;
        }
    }

    pub(crate) fn resume(&mut self, env: ClockEnv, at: i64) {
        if matches!(self.phase, ClockPhase::Paused | ClockPhase::Stopped) {
            self.phase = ClockPhase::Running;
            self.since = at;
            self.schedule(env);
        }
    }

    /// Ends the cycle as met at `at`; returns its record (late if after the deadline).
    pub(crate) fn meet(&mut self, env: ClockEnv, metric: SlaMetric, at: i64) -> Option<Record> {
        if !self.phase.is_open() {
            return None;
        }
        self.used = self.used_at(env, at);
        self.since = NONE;
        let late = self.due_at != NONE && at > self.due_at;
        self.phase = ClockPhase::Met;
        self.met_at = at;
        self.breached = late;
        Some(Record {
            metric,
            breached: late,
            started_at: self.started_at,
            due_at: self.due_at,
            met_at: at,
            used: self.used,
        })
    }

    /// Ends a cycle that cannot be met any more (a periodic-update cycle interrupted by a
    /// withdrawal); it counts only if its deadline had passed.
    pub(crate) fn abandon(&mut self, metric: SlaMetric) -> Option<Record> {
        let record = (self.phase.is_open() && self.due_at != NONE).then_some(Record {
            metric,
            breached: true,
            started_at: self.started_at,
            due_at: self.due_at,
            met_at: NONE,
            used: self.used,
        });
        *self = Clock {
            phase: ClockPhase::Idle,
            ..Clock::off()
        };
        record
    }
}

/// A callback promise not yet kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Promise {
    pub serial: u16,
    pub breached: bool,
    pub promised_at: i64,
    pub due_at: i64,
    pub warn_at: i64,
}

impl Promise {
    pub(crate) fn new(serial: u16, promised_at: i64, due_at: i64, fraction: f64) -> Promise {
        let span = (due_at - promised_at).max(0);
        let warn_at = promised_at + ((span as f64 * fraction).ceil() as i64).min(span);
        Promise {
            serial,
            breached: false,
            promised_at,
            due_at,
            warn_at,
        }
    }

    pub(crate) fn armed(&self) -> Option<(i64, i64)> {
        (!self.breached).then_some((self.warn_at, self.due_at))
    }

    pub(crate) fn keep(&self, at: i64) -> Record {
        Record {
            metric: SlaMetric::Callback,
            breached: at > self.due_at,
            started_at: self.promised_at,
            due_at: self.due_at,
            met_at: at,
            used: at - self.promised_at,
        }
    }
}

pub(crate) use plaint_projection::Stored;

/// One complaint's SLA state.
#[derive(Debug, Clone)]
pub(crate) struct Complaint {
    pub id: std::sync::Arc<str>,
    pub filed_at: i64,
    /// Latest event time applied; earlier event times are read as this one, so clocks
    /// never run backwards.
    pub last_event_at: i64,
    pub paused_since: i64,
    pub region: u32,
    pub category: u32,
    pub policy: u16,
    pub status: ComplaintStatus,
    pub dirty: bool,
    pub stored: Stored,
    pub next_promise: u16,
    /// When its row was last written or read back (the projector's own counter): an armed
    /// complaint not touched since its entry in the projector's `settled` list may be paged
    /// out.
    pub touched: u32,
    pub clocks: [Clock; 3],
    pub promises: Vec<Promise>,
    pub completed: Vec<Record>,
}

/// One listed breach of a complaint: where its row is (deadline and timer: clock index,
/// or `CALLBACK_BASE + serial` for a callback promise) and what else of its row may change
/// (see [`encode_breach`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListedBreach {
    pub due_at: i64,
    pub timer: u16,
    pub started_at: i64,
    /// Calendar seconds used before `running_since`.
    pub used: i64,
    /// While the clock runs (a promise: since it was made); else [`NONE`].
    pub running_since: i64,
}

impl Complaint {
    /// Whether the complaint may leave memory once its row is committed: no timer can
    /// fire for it (no clock or promise armed in the deadline index). What stays in memory
    /// is then exactly what ticks, `at_risk` and `next_due` read; the breaches query reads
    /// the breach rows, and an event about the complaint pages it back in first.
    pub(crate) fn is_cold(&self) -> bool {
        !(self.clocks.iter().any(|c| c.armed().is_some())
            || self.promises.iter().any(|p| p.armed().is_some()))
    }

    /// The breaches the breaches query lists for this complaint, in timer order: each
    /// recorded breach of a cycle still open (clock) or of a promise not yet kept, while
    /// the complaint is open or resolved (closed and withdrawn ones are history).
    pub(crate) fn listed_breaches(&self) -> Vec<ListedBreach> {
        if !lists_breaches(self.status) {
            return Vec::new();
        }
        let clocks = (0u16..).zip(&self.clocks).filter_map(|(timer, clock)| {
            Some(ListedBreach {
                due_at: clock.open_breach()?,
                timer,
                started_at: clock.started_at,
                used: clock.used,
                running_since: if clock.phase == ClockPhase::Running {
                    clock.since
                } else {
                    NONE
                },
            })
        });
        let promises = self
            .promises
            .iter()
            .filter(|p| p.breached)
            .map(|p| ListedBreach {
                due_at: p.due_at,
                timer: CALLBACK_BASE + p.serial,
                started_at: p.promised_at,
                used: 0,
                running_since: p.promised_at,
            });
        clocks.chain(promises).collect()
    }
}

/// Whether a complaint in this status has its breaches listed.
fn lists_breaches(status: ComplaintStatus) -> bool {
    matches!(status, ComplaintStatus::Open | ComplaintStatus::Resolved)
}

// ---- persisted form ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ComplaintRow {
    pub region: String,
    pub category: String,
    pub policy: String,
    pub status: ComplaintStatus,
    pub filed_at: Timestamp,
    pub last_event_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_since: Option<Timestamp>,
    pub first_response: ClockRow,
    pub resolution: ClockRow,
    pub periodic_update: ClockRow,
    #[serde(default)]
    pub next_promise: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promises: Vec<PromiseRow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completed: Vec<RecordRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClockRow {
    pub phase: ClockPhase,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub breached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub used_seconds: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met_at: Option<Timestamp>,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PromiseRow {
    pub serial: u16,
    pub promised_at: Timestamp,
    pub due_at: Timestamp,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub breached: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RecordRow {
    pub metric: SlaMetric,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met_at: Option<Timestamp>,
    pub used_seconds: i64,
    pub breached: bool,
}

/// One listed breach as the breaches query reads it (a `b/` row, see [`breach_key`]):
/// what an [`SlaItem`] needs that does not depend on `now`. The complaint id is in the key.
///
/// [`SlaItem`]: crate::SlaItem
/// [`breach_key`]: crate::projector::breach_key
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BreachRow {
    pub region: String,
    pub category: String,
    pub policy: String,
    pub metric: SlaMetric,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promise: Option<u16>,
    pub started_at: Timestamp,
    pub due_at: Timestamp,
    pub target_seconds: i64,
    /// Seconds of the metric's calendar used before `running_since`.
    pub used_seconds: i64,
    /// Set while the clock runs (for a promise: since it was made, on the wall clock); the
    /// query adds the calendar seconds from it to its `now`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<Timestamp>,
    pub paused: bool,
}

impl ClockRow {
    /// The clock without its derived warn time (the caller schedules it).
    pub(crate) fn to_clock(&self) -> Clock {
        Clock {
            phase: self.phase,
            breached: self.breached,
            started_at: from_opt_ts(self.started_at),
            used: self.used_seconds,
            since: from_opt_ts(self.running_since),
            due_at: from_opt_ts(self.due_at),
            met_at: from_opt_ts(self.met_at),
            warn_at: NONE,
        }
    }
}

impl RecordRow {
    pub(crate) fn to_record(&self) -> Record {
        Record {
            metric: self.metric,
            breached: self.breached,
            started_at: self.started_at.as_second(),
            due_at: from_opt_ts(self.due_at),
            met_at: from_opt_ts(self.met_at),
            used: self.used_seconds,
        }
    }
}

// ---- binary row form (see `plaint_projection::codec`): fields in declaration order ----

plaint_projection::enum_codec!(ClockPhase, "clock phase", {
    ClockPhase::Off = 0,
    ClockPhase::Idle = 1,
    ClockPhase::Running = 2,
    ClockPhase::Paused = 3,
    ClockPhase::Stopped = 4,
    ClockPhase::Met = 5,
});

/// An optional time kept as seconds ([`NONE`] for absent), as `Option<Timestamp>` encodes.
fn put_opt_seconds(out: &mut RowWriter, seconds: i64) {
    out.put(&opt_ts(seconds));
}

/// The row of `complaint` written straight from the compact state: the bytes
/// `encode_row(&ComplaintRow { .. })` would give, without building the row's strings and
/// vectors first (take_changes writes every changed complaint).
pub(crate) fn encode_complaint(
    complaint: &Complaint,
    region: &str,
    category: &str,
    policy: &str,
) -> Vec<u8> {
    let mut out = RowWriter::new();
    out.str(region);
    out.str(category);
    out.str(policy);
    out.put(&complaint.status);
    out.put(&ts(complaint.filed_at));
    out.put(&ts(complaint.last_event_at));
    put_opt_seconds(&mut out, complaint.paused_since);
    for clock in &complaint.clocks {
        encode_clock(&mut out, clock);
    }
    out.uint(complaint.next_promise.into());
    out.uint(complaint.promises.len() as u64);
    for promise in &complaint.promises {
        out.uint(promise.serial.into());
        out.put(&ts(promise.promised_at));
        out.put(&ts(promise.due_at));
        out.bool(promise.breached);
    }
    out.uint(complaint.completed.len() as u64);
    for record in &complaint.completed {
        encode_record(&mut out, record);
    }
    out.finish()
}

fn encode_clock(out: &mut RowWriter, clock: &Clock) {
    out.put(&clock.phase);
    out.bool(clock.breached);
    put_opt_seconds(out, clock.started_at);
    out.int(clock.used);
    put_opt_seconds(out, clock.since);
    put_opt_seconds(out, clock.due_at);
    put_opt_seconds(out, clock.met_at);
}

fn encode_record(out: &mut RowWriter, record: &Record) {
    out.put(&record.metric);
    out.put(&ts(record.started_at));
    put_opt_seconds(out, record.due_at);
    put_opt_seconds(out, record.met_at);
    out.int(record.used);
    out.bool(record.breached);
}

/// The `b/` row of a listed breach written straight from the compact state: the bytes
/// `encode_row(&BreachRow { .. })` would give. `names` are the complaint's region,
/// category and policy; `target` is the clock's target under its policy (a promise has its
/// own). Nothing else of the row can change while the breach is listed.
pub(crate) fn encode_breach(names: [&str; 3], breach: &ListedBreach, target: i64) -> Vec<u8> {
    let mut out = RowWriter::new();
    for name in names {
        out.str(name);
    }
    let (metric, promise, target, paused) = match breach.timer.checked_sub(CALLBACK_BASE) {
        None => (
            crate::config::CLOCK_METRICS[breach.timer as usize],
            None,
            target,
            breach.running_since == NONE,
        ),
        Some(serial) => (
            SlaMetric::Callback,
            Some(serial),
            breach.due_at - breach.started_at,
            false,
        ),
    };
    out.put(&metric);
    out.put(&promise);
    out.put(&ts(breach.started_at));
    out.put(&ts(breach.due_at));
    out.int(target);
    out.int(breach.used);
    put_opt_seconds(&mut out, breach.running_since);
    out.bool(paused);
    out.finish()
}

impl RowCodec for BreachRow {
    fn encode(&self, out: &mut RowWriter) {
        out.str(&self.region);
        out.str(&self.category);
        out.str(&self.policy);
        out.put(&self.metric);
        out.put(&self.promise);
        out.put(&self.started_at);
        out.put(&self.due_at);
        out.int(self.target_seconds);
        out.int(self.used_seconds);
        out.put(&self.running_since);
        out.bool(self.paused);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(BreachRow {
            region: input.string()?,
            category: input.string()?,
            policy: input.string()?,
            metric: input.get()?,
            promise: input.get()?,
            started_at: input.get()?,
            due_at: input.get()?,
            target_seconds: input.int()?,
            used_seconds: input.int()?,
            running_since: input.get()?,
            paused: input.bool()?,
        })
    }
}

impl RowCodec for ComplaintRow {
    fn encode(&self, out: &mut RowWriter) {
        out.str(&self.region);
        out.str(&self.category);
        out.str(&self.policy);
        out.put(&self.status);
        out.put(&self.filed_at);
        out.put(&self.last_event_at);
        out.put(&self.paused_since);
        out.put(&self.first_response);
        out.put(&self.resolution);
        out.put(&self.periodic_update);
        out.uint(self.next_promise.into());
        out.put(&self.promises);
        out.put(&self.completed);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(ComplaintRow {
            region: input.string()?,
            category: input.string()?,
            policy: input.string()?,
            status: input.get()?,
            filed_at: input.get()?,
            last_event_at: input.get()?,
            paused_since: input.get()?,
            first_response: input.get()?,
            resolution: input.get()?,
            periodic_update: input.get()?,
            next_promise: input.uint_as()?,
            promises: input.get()?,
            completed: input.get()?,
        })
    }
}

impl RowCodec for ClockRow {
    fn encode(&self, out: &mut RowWriter) {
        out.put(&self.phase);
        out.bool(self.breached);
        out.put(&self.started_at);
        out.int(self.used_seconds);
        out.put(&self.running_since);
        out.put(&self.due_at);
        out.put(&self.met_at);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(ClockRow {
            phase: input.get()?,
            breached: input.bool()?,
            started_at: input.get()?,
            used_seconds: input.int()?,
            running_since: input.get()?,
            due_at: input.get()?,
            met_at: input.get()?,
        })
    }
}

impl RowCodec for PromiseRow {
    fn encode(&self, out: &mut RowWriter) {
        out.uint(self.serial.into());
        out.put(&self.promised_at);
        out.put(&self.due_at);
        out.bool(self.breached);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(PromiseRow {
            serial: input.uint_as()?,
            promised_at: input.get()?,
            due_at: input.get()?,
            breached: input.bool()?,
        })
    }
}

impl RowCodec for RecordRow {
    fn encode(&self, out: &mut RowWriter) {
        out.put(&self.metric);
        out.put(&self.started_at);
        out.put(&self.due_at);
        out.put(&self.met_at);
        out.int(self.used_seconds);
        out.bool(self.breached);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(RecordRow {
            metric: input.get()?,
            started_at: input.get()?,
            due_at: input.get()?,
            met_at: input.get()?,
            used_seconds: input.int()?,
            breached: input.bool()?,
        })
    }
}
