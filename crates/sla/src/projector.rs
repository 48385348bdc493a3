//! [`SlaProjector`]: the fold over the log, the timers, and the persisted rows.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use jiff::Timestamp;
use plaint_events::{own, subjects, Event, EventBody, EventType, SlaBreached, SlaMetric};
use plaint_projection::{
    decode_row, digest_rows, Effect, Projection, ProjectionError, RowCodec, ViewChange, ViewRow,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::calendar::{Calendar, ALL_HOURS};
use crate::config::{Compiled, SlaConfig, SlaConfigError, Target, CLOCK_METRICS};
use crate::index::{DeadlineIndex, DeadlineKey, CALLBACK_BASE};
use crate::slots::{Dormant, Held, Slots};
use crate::state::*;

/// Key prefix of the rows of complaints kept in memory (see [`Complaint::is_cold`]).
pub(crate) const ROW_PREFIX: &str = "c/";
/// Key prefix of the rows of cold complaints, paged out of memory once committed.
pub(crate) const ARCHIVE_PREFIX: &str = "a/";
/// Key prefix of the breach rows, one per listed breach (see [`breach_key`]).
pub(crate) const BREACH_PREFIX: &str = "b/";

/// Names interned to small indexes, so per-complaint state holds `u32`s.
#[derive(Debug, Clone, Default)]
pub(crate) struct Interner {
    pub names: Vec<String>,
    by_name: BTreeMap<String, u32>,
}

impl Interner {
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&index) = self.by_name.get(name) {
            return index;
        }
        let index = self.names.len() as u32;
        self.names.push(name.to_string());
        self.by_name.insert(name.to_string(), index);
        index
    }

    pub(crate) fn find(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn name(&self, index: u32) -> &str {
        &self.names[index as usize]
    }
}

/// The names complaints refer to by index. They only grow (a handful of regions and
/// categories): an evicted complaint's names stay interned for when it comes back.
#[derive(Debug, Clone, Default)]
pub(crate) struct Names {
    pub regions: Interner,
    pub categories: Interner,
    /// Business calendar of each interned region (its own, or `default`).
    pub region_calendar: Vec<Option<u16>>,
}

impl Names {
    pub(crate) fn intern_region(&mut self, config: &Compiled, region: &str) -> u32 {
        let index = self.regions.intern(region);
        if index as usize == self.region_calendar.len() {
            self.region_calendar.push(region_calendar(config, region));
        }
        index
    }
}

/// See [`plaint_projection::COLD_CACHE`]. The crate's own tests keep none, so every event
/// after a cooling exercises paging.
const COLD_CACHE: usize = if cfg!(test) {
    0
} else {
    plaint_projection::COLD_CACHE
};

/// The crate's own tests keep no armed complaint whole once committed, whatever the
/// configuration says (see [`SlaProjector::set_armed_cache`]), so that every event and
/// tick after a commit exercises paging.
const TESTS_PAGE_OUT_ARMED: bool = cfg!(test);

/// Warnings and breaches a tick hands out at most (each): after a long stop, or when a
/// year of history arrives at once, millions of deadlines are due together, and their
/// effects all in one vector took gigabytes. The rest is due at once: the runner applies
/// what came in meanwhile and ticks again. 10,000 a tick held ~30 MB of effects, and as
/// many complaints paged in, at the height of a backfill's breach flood.
const TICK_LIMIT: usize = 2_000;

/// The SLA projector. See the crate documentation for the rules it applies.
#[derive(Debug)]
pub struct SlaProjector {
    pub(crate) config: Compiled,
    pub(crate) names: Names,
    /// Complaints in memory: live ones, and cold ones until their row is committed.
    pub(crate) complaints: Slots,
    /// Complaint id → slot. A hash map with a fixed (unkeyed) hasher: it is only looked
    /// up, never iterated, so it cannot make the output depend on hashing, and with a
    /// million ids it is several times faster than an ordered map.
    pub(crate) by_id: HashMap<Arc<str>, u32, BuildHasherDefault<DefaultHasher>>,
    pub(crate) index: DeadlineIndex,
    dirty: Vec<u32>,
    /// The breach rows (see [`breach_key`]) of the complaints changed since the last
    /// `take_changes` that had any: their listed breaches as they were before the first
    /// change, which are what their committed rows go with (a complaint not changed since
    /// its row was taken, restored or paged in lists what its row lists). `take_changes`
    /// deletes those a complaint no longer lists, without reading disk. Usually empty: few
    /// complaints have breaches listed when they change.
    breach_rows_before: HashMap<u32, Vec<ListedBreach>, BuildHasherDefault<DefaultHasher>>,
    /// Eviction candidates, longest cold first: slots whose row a `take_changes` wrote to
    /// the archive, and slots paged in. `evict` leaves the last [`COLD_CACHE`] of them.
    cooled: Vec<u32>,
    /// Paging-out candidates, least recently touched first: (slot, `touched`) of armed
    /// complaints whose row a `take_changes` wrote live or that were paged back in. An
    /// entry whose complaint was touched since is stale. `evict` leaves the last
    /// `armed_cache` of them.
    settled: VecDeque<(u32, u32)>,
    armed_cache: usize,
    /// The counter behind [`Complaint::touched`].
    touches: u32,
    /// Effects are discarded (see `Projection::set_rebuilding`): met-late breaches are
    /// not built.
    rebuilding: bool,
}

/// A metric met after its deadline with no breach recorded yet; becomes a met-late
/// `sla.breached` event.
struct MetLate {
    metric: SlaMetric,
    due_at: i64,
    met_at: i64,
    target: i64,
    promise: Option<u16>,
}

/// A timer's index entries: (warn, due) while it is armed.
type TimerState = Option<(i64, i64)>;

fn clock_state(clock: &Clock) -> TimerState {
    clock.armed()
}

fn sync_timer(
    index: &mut DeadlineIndex,
    slot: u32,
    timer: u16,
    before: TimerState,
    after: TimerState,
) {
    if before != after {
        if let Some((warn_at, due_at)) = before {
            index.disarm(slot, timer, warn_at, due_at);
        }
        if let Some((warn_at, due_at)) = after {
            index.arm(slot, timer, warn_at, due_at);
        }
    }
}

fn promise_state(promise: &Promise) -> TimerState {
    promise.armed()
}

/// Every timer of a complaint (clocks, then promises) with its state.
fn timer_states(complaint: &Complaint) -> impl Iterator<Item = (u16, TimerState)> + '_ {
    let clocks = (0u16..)
        .zip(&complaint.clocks)
        .map(|(i, c)| (i, clock_state(c)));
    let promises = complaint
        .promises
        .iter()
        .map(|p| (CALLBACK_BASE + p.serial, promise_state(p)));
    clocks.chain(promises)
}

/// The clock environments of a complaint's three metrics under its policy.
pub(crate) fn envs<'a>(
    config: &'a Compiled,
    region_calendar: &[Option<u16>],
    complaint: &Complaint,
) -> [Option<ClockEnv<'a>>; 3] {
    let policy = &config.policies[complaint.policy as usize];
    std::array::from_fn(|i| {
        let target = policy.targets[i]?;
        Some(ClockEnv {
            calendar: clock_calendar(config, region_calendar[complaint.region as usize], target)?,
            target: target.seconds,
            fraction: config.at_risk_fraction,
        })
    })
}

/// The calendar a clock with `target` counts on in a region whose business calendar is
/// `region_calendar`: None if the target is on business hours and the region has none.
pub(crate) fn clock_calendar(
    config: &Compiled,
    region_calendar: Option<u16>,
    target: Target,
) -> Option<&Calendar> {
    if target.business {
        Some(&config.calendars[region_calendar? as usize].1)
    } else {
        Some(&ALL_HOURS)
    }
}

/// The business calendar of a region (its own, or `default`), by name.
pub(crate) fn region_calendar(config: &Compiled, region: &str) -> Option<u16> {
    config
        .calendar_by_region
        .get(region)
        .copied()
        .or(config.default_calendar)
}

/// The policy of a persisted row, by name: a policy removed from the configuration since
/// falls back to the default policy until `plaint rebuild sla` re-evaluates its complaints.
pub(crate) fn policy_by_name(config: &Compiled, name: &str) -> u16 {
    config
        .policies
        .iter()
        .position(|p| p.name == name)
        .unwrap_or(config.policies.len() - 1) as u16
}

impl SlaProjector {
    /// Validates the configuration (time zones, hours, targets, policies).
    pub fn new(config: SlaConfig) -> Result<SlaProjector, SlaConfigError> {
        let armed_cache = if TESTS_PAGE_OUT_ARMED {
            0
        } else {
            config.armed_in_memory
        };
        Ok(SlaProjector {
            config: config.compile()?,
            names: Names::default(),
            complaints: Slots::default(),
            by_id: HashMap::default(),
            index: DeadlineIndex::default(),
            dirty: Vec::new(),
            breach_rows_before: HashMap::default(),
            cooled: Vec::new(),
            settled: VecDeque::new(),
            armed_cache,
            touches: 0,
            rebuilding: false,
        })
    }

    /// Complaints held in full in memory: armed ones recently touched, and cold ones
    /// whose row is not committed yet (see [`Projection::evict`]).
    pub fn resident(&self) -> usize {
        self.complaints.len()
    }

    /// Armed complaints paged out: their timers are in memory, the rest in their rows.
    pub fn paged_out(&self) -> usize {
        self.complaints.paged_out()
    }

    /// How many armed complaints stay in full once their rows are committed (from
    /// `[sla] armed_in_memory`, default 20,000), the most recently touched; `evict` pages the others out, keeping their
    /// timers and what filters and `next_due` read (about 50 bytes beside their index
    /// entries, where one in full takes ~600), until a tick fires one of their timers
    /// (`rows_due`) or an event changes them (`rows_needed`). `usize::MAX` keeps them all.
    pub fn set_armed_cache(&mut self, complaints: usize) {
        self.armed_cache = complaints;
    }

    /// Armed timers: (warn entries, due entries) in the deadline index.
    pub fn armed_timers(&self) -> (usize, usize) {
        self.index.len()
    }

    /// The rows of the complaints in memory, in key order, each under the prefix its
    /// state puts it (live or archive), and their breach rows: for a projector that never
    /// evicted, every row a rebuild must reproduce.
    pub fn rows(&self) -> Vec<ViewRow> {
        let mut rows: Vec<ViewRow> = Vec::with_capacity(self.complaints.len());
        for complaint in self.complaints.iter() {
            let side = if complaint.is_cold() {
                Stored::Archive
            } else {
                Stored::Live
            };
            rows.push((row_key(side, &complaint.id), self.row_bytes(complaint)));
            for breach in complaint.listed_breaches() {
                rows.push(self.breach_row(complaint, &breach));
            }
        }
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    /// The digest of all rows (see [`plaint_projection::digest_rows`]).
    pub fn digest(&self) -> String {
        let rows = self.rows();
        digest_rows(rows.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
    }

    pub(crate) fn policy_name(&self, complaint: &Complaint) -> &str {
        &self.config.policies[complaint.policy as usize].name
    }

    pub(crate) fn envs_of(&self, complaint: &Complaint) -> [Option<ClockEnv<'_>>; 3] {
        envs(&self.config, &self.names.region_calendar, complaint)
    }

    fn on_filed(&mut self, event: &Event, filed: &plaint_events::ComplaintFiled) {
        if self.by_id.contains_key(event.complaint_id.as_str()) {
            return;
        }
        let region = self.names.intern_region(&self.config, &filed.region);
        let category = self.names.categories.intern(&filed.category);
        let policy = self
            .config
            .policies
            .iter()
            .position(|p| {
                p.matches.fits(
                    filed.severity,
                    &filed.category,
                    &filed.region,
                    filed.channel,
                    filed.vip,
                )
            })
            .unwrap_or(self.config.policies.len() - 1) as u16;
        let at = event.time.as_second();
        let id: Arc<str> = Arc::from(event.complaint_id.as_str());
        let mut complaint = Complaint {
            id: id.clone(),
            filed_at: at,
            last_event_at: at,
            paused_since: NONE,
            region,
            category,
            policy,
            status: ComplaintStatus::Open,
            dirty: true,
            stored: Stored::Nowhere,
            next_promise: 0,
            touched: 0,
            clocks: [Clock::off(); 3],
            promises: Vec::new(),
            completed: Vec::new(),
        };
        let slot = self.complaints.next_slot();
        let environments = envs(&self.config, &self.names.region_calendar, &complaint);
        for (i, env) in environments.into_iter().enumerate() {
            if let Some(env) = env {
                complaint.clocks[i].start_cycle(env, at);
                sync_timer(
                    &mut self.index,
                    slot,
                    i as u16,
                    None,
                    clock_state(&complaint.clocks[i]),
                );
            }
        }
        self.complaints.insert(complaint);
        self.by_id.insert(id, slot);
        self.dirty.push(slot);
    }

    fn on_breach_recorded(&mut self, event: &Event, breach: &SlaBreached) {
        // A met-late record describes a cycle that is already complete, whose outcome the
        // met event decided by event time.
        if breach.met_at.is_some() {
            return;
        }
        let Some(&slot) = self.by_id.get(event.complaint_id.as_str()) else {
            return;
        };
        let complaint = &mut self.complaints[slot as usize];
        let listed_before = (!complaint.dirty).then(|| complaint.listed_breaches());
        let due_at = breach.due_at.as_second();
        let changed = match breach.metric {
            SlaMetric::Callback => {
                match complaint
                    .promises
                    .iter_mut()
                    .find(|p| !p.breached && p.due_at == due_at)
                {
                    Some(promise) => {
                        let before = promise_state(promise);
                        promise.breached = true;
                        let timer = CALLBACK_BASE + promise.serial;
                        sync_timer(&mut self.index, slot, timer, before, promise_state(promise));
                        true
                    }
                    None => false,
                }
            }
            metric => {
                let i = crate::config::clock_index(metric).expect("clock metric");
                let clock = &mut complaint.clocks[i];
                if clock.phase.is_open() && !clock.breached && clock.due_at == due_at {
                    let before = clock_state(clock);
                    clock.breached = true;
                    sync_timer(&mut self.index, slot, i as u16, before, clock_state(clock));
                    true
                } else {
                    false
                }
            }
        };
        if changed && !complaint.dirty {
            complaint.dirty = true;
            self.dirty.push(slot);
            note_breach_rows(&mut self.breach_rows_before, slot, listed_before);
        }
    }

    fn on_update(&mut self, slot: u32, event: &Event, effects: &mut Vec<Effect>) {
        let SlaProjector {
            config,
            names,
            complaints,
            index,
            dirty,
            breach_rows_before,
            rebuilding,
            ..
        } = self;
        let complaint = &mut complaints[slot as usize];
        let listed_before = (!complaint.dirty).then(|| complaint.listed_breaches());
        let at = event.time.as_second().max(complaint.last_event_at);
        complaint.last_event_at = at;
        let environments = envs(config, &names.region_calendar, complaint);
        let policy = &config.policies[complaint.policy as usize];
        let before: [TimerState; 3] = std::array::from_fn(|i| clock_state(&complaint.clocks[i]));
        let mut met_late: Vec<MetLate> = Vec::new();

        match &event.body {
            EventBody::Acknowledged(_) => {
                respond(
                    complaint,
                    &environments,
                    policy.pausable[2],
                    at,
                    &mut met_late,
                );
            }
            EventBody::CustomerContacted(_) => {
                respond(
                    complaint,
                    &environments,
                    policy.pausable[2],
                    at,
                    &mut met_late,
                );
                for promise in std::mem::take(&mut complaint.promises) {
                    let record = promise.keep(at);
                    if record.breached && !promise.breached {
                        met_late.push(MetLate {
                            metric: SlaMetric::Callback,
                            due_at: promise.due_at,
                            met_at: at,
                            target: promise.due_at - promise.promised_at,
                            promise: Some(promise.serial),
                        });
                    }
                    let timer = CALLBACK_BASE + promise.serial;
                    sync_timer(index, slot, timer, promise_state(&promise), None);
                    complaint.completed.push(record);
                }
            }
            EventBody::CallbackPromised(promised) => {
                let serial = complaint.next_promise;
                if policy.callback
                    && complaint.status == ComplaintStatus::Open
                    && serial < u16::MAX - CALLBACK_BASE
                {
                    complaint.next_promise += 1;
                    let promise = Promise::new(
                        serial,
                        at,
                        promised.due_by.as_second(),
                        config.at_risk_fraction,
                    );
                    sync_timer(
                        index,
                        slot,
                        CALLBACK_BASE + serial,
                        None,
                        promise_state(&promise),
                    );
                    complaint.promises.push(promise);
                }
            }
            EventBody::AwaitingCustomer(_) => {
                if complaint.status == ComplaintStatus::Open && complaint.paused_since == NONE {
                    complaint.paused_since = at;
                    for (i, env) in environments.iter().enumerate() {
                        if let (Some(env), true) = (env, policy.pausable[i]) {
                            if complaint.clocks[i].phase == ClockPhase::Running {
                                complaint.clocks[i].halt(*env, at, ClockPhase::Paused);
                            }
                        }
                    }
                }
            }
            EventBody::CustomerReplied(_) => {
                if complaint.paused_since != NONE {
                    complaint.paused_since = NONE;
                    for (i, env) in environments.iter().enumerate() {
                        if let Some(env) = env {
                            if complaint.clocks[i].phase == ClockPhase::Paused {
                                complaint.clocks[i].resume(*env, at);
                            }
                        }
                    }
                }
            }
            EventBody::Resolved(_) => {
                if complaint.status == ComplaintStatus::Open {
                    finish(complaint, &environments, at, &mut met_late);
                    complaint.status = ComplaintStatus::Resolved;
                }
            }
            EventBody::Closed(_) => {
                if complaint.status == ComplaintStatus::Open {
                    // Closing an open complaint resolves it (as a closed ticket is solved
                    // in Zendesk).
                    finish(complaint, &environments, at, &mut met_late);
                }
                if matches!(
                    complaint.status,
                    ComplaintStatus::Open | ComplaintStatus::Resolved
                ) {
                    complaint.status = ComplaintStatus::Closed;
                    drop_unbroken_promises(complaint, index, slot, at);
                }
            }
            EventBody::Withdrawn(_) => {
                if complaint.status == ComplaintStatus::Open {
                    for (i, env) in environments.iter().enumerate() {
                        if let Some(env) = env {
                            complaint.clocks[i].halt(*env, at, ClockPhase::Stopped);
                        }
                    }
                    complaint.paused_since = NONE;
                    complaint.status = ComplaintStatus::Withdrawn;
                    drop_unbroken_promises(complaint, index, slot, at);
                }
            }
            EventBody::Reopened(_) => {
                if complaint.status != ComplaintStatus::Open {
                    reopen(complaint, &environments, at);
                }
            }
            _ => return,
        }

        for (i, before) in before.into_iter().enumerate() {
            sync_timer(
                index,
                slot,
                i as u16,
                before,
                clock_state(&complaint.clocks[i]),
            );
        }
        if !complaint.dirty {
            complaint.dirty = true;
            dirty.push(slot);
            note_breach_rows(breach_rows_before, slot, listed_before);
        }
        if *rebuilding {
            return;
        }
        for late in met_late {
            effects.extend(breach_effects(
                &config.subject_prefix,
                complaint,
                names.regions.name(complaint.region),
                &policy.name,
                late.metric,
                late.due_at,
                late.target,
                Some(late.met_at),
                late.promise,
            ));
        }
    }

    fn row_bytes(&self, complaint: &Complaint) -> Vec<u8> {
        encode_complaint(
            complaint,
            self.names.regions.name(complaint.region),
            self.names.categories.name(complaint.category),
            self.policy_name(complaint),
        )
    }

    /// The `b/` row of one of the complaint's listed breaches.
    fn breach_row(&self, complaint: &Complaint, breach: &ListedBreach) -> ViewRow {
        let target = match self.config.policies[complaint.policy as usize]
            .targets
            .get(breach.timer as usize)
        {
            // A listed clock is open, so its policy has a target for it.
            Some(target) => target.map_or(0, |t| t.seconds),
            None => 0,
        };
        let names = [
            self.names.regions.name(complaint.region),
            self.names.categories.name(complaint.category),
            self.policy_name(complaint),
        ];
        (
            breach_key(breach.due_at, &complaint.id, breach.timer),
            encode_breach(names, breach, target),
        )
    }

    /// Takes a persisted row back into memory (from `stored`), arming its timers; returns
    /// its slot. A complaint already in memory is left as it is: memory is never older
    /// than the rows.
    fn restore_row(&mut self, id: &str, row: &ComplaintRow, stored: Stored) -> Option<u32> {
        if self.by_id.contains_key(id) {
            return None;
        }
        let id: Arc<str> = Arc::from(id);
        let mut complaint = complaint_from_row(&self.config, &mut self.names, id.clone(), row);
        complaint.stored = stored;
        let settled = stored == Stored::Live && !complaint.is_cold();
        if settled {
            complaint.touched = self.touch();
        }
        let slot = self.complaints.next_slot();
        self.sync_all_timers(slot, &complaint, true);
        if settled {
            self.settled.push_back((slot, complaint.touched));
        }
        self.complaints.insert(complaint);
        self.by_id.insert(id, slot);
        Some(slot)
    }

    fn touch(&mut self) -> u32 {
        self.touches = self.touches.wrapping_add(1);
        self.touches
    }

    /// Pages out the least recently touched armed complaints beyond `armed_cache`, of
    /// those whose row is committed and unchanged since: their timers stay in the index,
    /// the rest of their state is their `c/` row.
    fn page_out_settled(&mut self) {
        while self.settled.len() > self.armed_cache {
            let (slot, touched) = self.settled.pop_front().expect("longer than the cache");
            let Some(complaint) = self.complaints.get(slot) else {
                continue;
            };
            if complaint.touched != touched
                || complaint.dirty
                || complaint.stored != Stored::Live
                || complaint.is_cold()
            {
                continue;
            }
            let dormant = Dormant {
                id: complaint.id.clone(),
                region: complaint.region,
                category: complaint.category,
                policy: complaint.policy,
                next_due: self.next_due_of(complaint).unwrap_or(NONE),
            };
            self.complaints.page_out(slot, dormant);
        }
    }

    /// Takes back the committed `c/` row of an armed complaint paged out. Its timers are
    /// in the index already: the row gives back the state that armed them.
    fn page_in_armed(&mut self, key: &[u8], row: Option<&[u8]>) -> Result<(), ProjectionError> {
        let id = String::from_utf8_lossy(&key[ROW_PREFIX.len()..]);
        let Some(&slot) = self.by_id.get(&*id) else {
            return Ok(());
        };
        let Some(Held::PagedOut(dormant)) = self.complaints.held(slot) else {
            return Ok(());
        };
        let id = dormant.id.clone();
        let Some(value) = row else {
            return Err(ProjectionError::MissingRow {
                projector: "sla",
                key: String::from_utf8_lossy(key).into_owned(),
            });
        };
        let row = decode_complaint_row(key, value)?;
        let mut complaint = complaint_from_row(&self.config, &mut self.names, id, &row);
        complaint.stored = Stored::Live;
        complaint.touched = self.touch();
        debug_assert!(
            self.timers_indexed(slot, &complaint),
            "a paged-in complaint arms what it armed when it left: {complaint:?}"
        );
        self.settled.push_back((slot, complaint.touched));
        self.complaints.page_in(slot, complaint);
        Ok(())
    }

    /// Whether every armed timer of `complaint` is in the index at `slot` as it arms it.
    fn timers_indexed(&self, slot: u32, complaint: &Complaint) -> bool {
        timer_states(complaint).all(|(timer, state)| match state {
            Some((warn_at, due_at)) => self.index.holds(slot, timer, warn_at, due_at),
            None => true,
        })
    }

    /// Drops a complaint from memory with its index entries.
    fn forget(&mut self, slot: u32) {
        let Some(complaint) = self.complaints.remove(slot) else {
            return;
        };
        self.sync_all_timers(slot, &complaint, false);
        self.by_id.remove(&*complaint.id);
    }

    /// Enters every armed timer of `complaint` (at `slot`) into the index (`present`), or
    /// takes them all out: a complaint coming into memory or leaving it.
    fn sync_all_timers(&mut self, slot: u32, complaint: &Complaint, present: bool) {
        let absent: TimerState = None;
        for (timer, state) in timer_states(complaint) {
            let (before, after) = if present {
                (absent, state)
            } else {
                (state, absent)
            };
            sync_timer(&mut self.index, slot, timer, before, after);
        }
    }

    /// Orders the timers fired by one tick by (time, complaint id, timer): the effects
    /// then come out in the same order whatever slots the complaints happen to hold (slots
    /// are reused after evictions and given in key order by a restore).
    fn in_firing_order(&self, mut keys: Vec<DeadlineKey>) -> Vec<DeadlineKey> {
        // The keys come in (time, slot, timer) order: a stable sort passes over them once
        // and looks complaints up only where two timers are due at the same second.
        let id = |key: &DeadlineKey| self.complaints.held(key.slot).map(Held::id);
        keys.sort_by(|a, b| {
            a.at.cmp(&b.at)
                .then_with(|| id(a).cmp(&id(b)))
                .then(a.timer.cmp(&b.timer))
        });
        keys
    }

    /// The timer behind an index key: (metric, due, target, warn, promise serial).
    fn timer(&self, key: &DeadlineKey) -> Option<(SlaMetric, i64, i64, i64, Option<u16>)> {
        let complaint = &self.complaints[key.slot as usize];
        if key.timer < CALLBACK_BASE {
            let i = key.timer as usize;
            let clock = &complaint.clocks[i];
            let (warn_at, due_at) = clock.armed()?;
            let target = self.config.policies[complaint.policy as usize].targets[i]?.seconds;
            Some((CLOCK_METRICS[i], due_at, target, warn_at, None))
        } else {
            let serial = key.timer - CALLBACK_BASE;
            let promise = complaint.promises.iter().find(|p| p.serial == serial)?;
            let (warn_at, due_at) = promise.armed()?;
            Some((
                SlaMetric::Callback,
                due_at,
                due_at - promise.promised_at,
                warn_at,
                Some(serial),
            ))
        }
    }
}

/// An update to the customer (acknowledged, customer_contacted): meets the first response
/// and ends the current periodic-update cycle, starting the next one.
fn respond(
    complaint: &mut Complaint,
    environments: &[Option<ClockEnv>; 3],
    periodic_pausable: bool,
    at: i64,
    met_late: &mut Vec<MetLate>,
) {
    if let Some(env) = environments[0] {
        meet_clock(complaint, 0, env, at, met_late);
    }
    if let Some(env) = environments[2] {
        if matches!(
            complaint.clocks[2].phase,
            ClockPhase::Running | ClockPhase::Paused
        ) {
            meet_clock(complaint, 2, env, at, met_late);
            complaint.clocks[2].start_cycle(env, at);
            if complaint.paused_since != NONE && periodic_pausable {
                complaint.clocks[2].halt(env, at, ClockPhase::Paused);
            }
        }
    }
}

fn meet_clock(
    complaint: &mut Complaint,
    i: usize,
    env: ClockEnv,
    at: i64,
    met_late: &mut Vec<MetLate>,
) {
    let clock = &mut complaint.clocks[i];
    let breach_recorded = clock.breached;
    if let Some(record) = clock.meet(env, CLOCK_METRICS[i], at) {
        if record.breached && !breach_recorded {
            met_late.push(MetLate {
                metric: record.metric,
                due_at: record.due_at,
                met_at: at,
                target: env.target,
                promise: None,
            });
        }
        complaint.completed.push(record);
    }
}

/// Resolution (or closing an open complaint): the resolution is met, the last
/// periodic-update cycle too (a resolution is an update to the customer), an unmet first
/// response stops until a reopening.
fn finish(
    complaint: &mut Complaint,
    environments: &[Option<ClockEnv>; 3],
    at: i64,
    met_late: &mut Vec<MetLate>,
) {
    if let Some(env) = environments[1] {
        meet_clock(complaint, 1, env, at, met_late);
    }
    if let Some(env) = environments[2] {
        meet_clock(complaint, 2, env, at, met_late);
        complaint.clocks[2] = Clock {
            phase: ClockPhase::Idle,
            ..Clock::off()
        };
    }
    if let Some(env) = environments[0] {
        complaint.clocks[0].halt(env, at, ClockPhase::Stopped);
    }
    complaint.paused_since = NONE;
}

/// Reopening: resolution resumes with the time it had already used (its completed record
/// is taken back), a stopped first response resumes, a new periodic-update cycle starts.
fn reopen(complaint: &mut Complaint, environments: &[Option<ClockEnv>; 3], at: i64) {
    complaint.status = ComplaintStatus::Open;
    complaint.paused_since = NONE;
    if let Some(env) = environments[0] {
        complaint.clocks[0].resume(env, at);
    }
    if let Some(env) = environments[1] {
        let clock = &mut complaint.clocks[1];
        if clock.phase == ClockPhase::Met {
            let taken_back = complaint
                .completed
                .iter()
                .rposition(|r| r.metric == SlaMetric::Resolution);
            match taken_back.map(|position| complaint.completed.remove(position)) {
                Some(record) => {
                    *clock = Clock {
                        phase: ClockPhase::Stopped,
                        breached: record.breached,
                        started_at: record.started_at,
                        used: record.used,
                        due_at: if record.used >= env.target {
                            record.due_at
                        } else {
                            NONE
                        },
                        ..Clock::off()
                    };
                    clock.resume(env, at);
                }
                None => clock.start_cycle(env, at),
            }
        } else {
            clock.resume(env, at);
        }
    }
    if let Some(env) = environments[2] {
        if let Some(record) = complaint.clocks[2].abandon(SlaMetric::PeriodicUpdate) {
            complaint.completed.push(record);
        }
        complaint.clocks[2].start_cycle(env, at);
    }
}

/// Notes the breach rows of the complaint at `slot`, changed for the first time since its
/// row was taken: `listed` is what it listed before the change (None: it was changed
/// already).
fn note_breach_rows(
    before: &mut HashMap<u32, Vec<ListedBreach>, BuildHasherDefault<DefaultHasher>>,
    slot: u32,
    listed: Option<Vec<ListedBreach>>,
) {
    if let Some(listed) = listed.filter(|l| !l.is_empty()) {
        before.insert(slot, listed);
    }
}

/// Closing or withdrawing releases the promises not yet broken; broken ones stay breached.
fn drop_unbroken_promises(
    complaint: &mut Complaint,
    index: &mut DeadlineIndex,
    slot: u32,
    at: i64,
) {
    complaint.promises.retain(|promise| {
        let keep = promise.breached || promise.due_at <= at;
        if !keep {
            sync_timer(
                index,
                slot,
                CALLBACK_BASE + promise.serial,
                promise_state(promise),
                None,
            );
        }
        keep
    });
}

/// A complaint's state from its persisted row, clocks scheduled, names interned into
/// `names`; no timer is armed (the caller decides whether the complaint joins the index).
pub(crate) fn complaint_from_row(
    config: &Compiled,
    names: &mut Names,
    id: Arc<str>,
    row: &ComplaintRow,
) -> Complaint {
    let region = names.intern_region(config, &row.region);
    let category = names.categories.intern(&row.category);
    let policy = policy_by_name(config, &row.policy);
    let mut complaint = Complaint {
        id,
        filed_at: row.filed_at.as_second(),
        last_event_at: row.last_event_at.as_second(),
        paused_since: from_opt_ts(row.paused_since),
        region,
        category,
        policy,
        status: row.status,
        dirty: false,
        stored: Stored::Nowhere,
        next_promise: row.next_promise,
        touched: 0,
        clocks: [
            row.first_response.to_clock(),
            row.resolution.to_clock(),
            row.periodic_update.to_clock(),
        ],
        promises: row
            .promises
            .iter()
            .map(|p| Promise {
                breached: p.breached,
                ..Promise::new(
                    p.serial,
                    p.promised_at.as_second(),
                    p.due_at.as_second(),
                    config.at_risk_fraction,
                )
            })
            .collect(),
        completed: row.completed.iter().map(RecordRow::to_record).collect(),
    };
    let environments = envs(config, &names.region_calendar, &complaint);
    for (clock, env) in complaint.clocks.iter_mut().zip(environments) {
        match env {
            Some(env) => clock.schedule(env),
            None => *clock = Clock::off(),
        }
    }
    complaint
}

/// The key of a complaint's row on `side` (live or archive).
pub(crate) fn row_key(side: Stored, complaint_id: &str) -> Vec<u8> {
    let prefix = match side {
        Stored::Archive => ARCHIVE_PREFIX,
        Stored::Live | Stored::Nowhere => ROW_PREFIX,
    };
    let mut key = Vec::with_capacity(prefix.len() + complaint_id.len());
    key.extend_from_slice(prefix.as_bytes());
    key.extend_from_slice(complaint_id.as_bytes());
    key
}

/// The key of a breach row: `b/<due>/<complaint id>#<timer>`, so that key order is the
/// breaches query's order (deadline, complaint id, then metric and promise, which is timer
/// order). The deadline is written as `10^12 +` its Unix second in 13 decimal digits,
/// zero-padded (every time jiff can hold gives a number from 0 to 10^13); `#` sorts before every byte
/// a complaint id may hold (`[A-Za-z0-9._:-]`), so a shorter id comes before the ids it
/// begins; the timer is 5 digits.
pub(crate) fn breach_key(due_at: i64, complaint_id: &str, timer: u16) -> Vec<u8> {
    format!(
        "{BREACH_PREFIX}{:013}/{complaint_id}#{timer:05}",
        due_at + 1_000_000_000_000
    )
    .into_bytes()
}

/// The complaint id of a breach row's key.
pub(crate) fn breach_key_complaint(key: &[u8]) -> Option<&str> {
    let rest = key.strip_prefix(BREACH_PREFIX.as_bytes())?.get(14..)?;
    let id = rest.get(..rest.len().checked_sub(6)?)?;
    std::str::from_utf8(id).ok()
}

/// Whether `apply` acts on an event of this kind about a complaint already filed: the
/// events for which a paged-out complaint must come back first.
fn updates_a_filed_complaint(body: &EventBody) -> bool {
    match body {
        // A met-late record changes nothing (see `on_breach_recorded`).
        EventBody::SlaBreached(breach) => breach.met_at.is_none(),
        EventBody::Acknowledged(_)
        | EventBody::CustomerContacted(_)
        | EventBody::CallbackPromised(_)
        | EventBody::AwaitingCustomer(_)
        | EventBody::CustomerReplied(_)
        | EventBody::Resolved(_)
        | EventBody::Reopened(_)
        | EventBody::Closed(_)
        | EventBody::Withdrawn(_) => true,
        _ => false,
    }
}

fn due_text(due_at: i64) -> String {
    ts(due_at).to_string()
}

/// The id parts of a deadline: complaint, metric, deadline (and the promise for
/// callbacks, since two promises may share a `due_by`).
fn deadline_name(
    complaint_id: &str,
    metric: SlaMetric,
    due_at: i64,
    promise: Option<u16>,
) -> Vec<String> {
    let mut parts = vec![
        complaint_id.to_string(),
        metric.as_str().to_string(),
        due_text(due_at),
    ];
    if let Some(serial) = promise {
        parts.push(format!("promise-{serial}"));
    }
    parts
}

/// The `sla.breached` event (through the log) and the breach alert for one deadline.
#[allow(clippy::too_many_arguments)]
fn breach_effects(
    prefix: &str,
    complaint: &Complaint,
    region: &str,
    policy: &str,
    metric: SlaMetric,
    due_at: i64,
    target: i64,
    met_at: Option<i64>,
    promise: Option<u16>,
) -> [Effect; 2] {
    let mut parts = deadline_name(&complaint.id, metric, due_at, promise);
    // A distinct name for the met-late record: the timer may have written its own breach
    // event for the same deadline, and the log rejects one id with two contents.
    if met_at.is_some() {
        parts.push("met_late".to_string());
    }
    let part_refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let id = own::event_id(&part_refs);
    let event = Event {
        id,
        source: own::source("sla"),
        complaint_id: complaint.id.to_string(),
        time: ts(met_at.unwrap_or(due_at)),
        body: EventBody::SlaBreached(SlaBreached {
            metric,
            policy: policy.to_string(),
            region: region.to_string(),
            due_at: ts(due_at),
            target_seconds: target,
            met_at: met_at.map(ts),
            late_by_seconds: met_at.map(|m| m - due_at),
        }),
    };
    let payload = event.to_wire();
    [
        Effect::AppendEvent {
            subject: subjects::event(prefix, region, EventType::SlaBreached),
            event,
        },
        Effect::Publish {
            subject: subjects::sla_alert(prefix, "breached", region),
            msg_id: id.to_string(),
            payload,
        },
    ]
}

/// Payload of `<prefix>.alerts.sla.at_risk.<region>`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AtRiskAlert {
    pub complaint_id: String,
    pub metric: SlaMetric,
    pub policy: String,
    pub region: String,
    pub category: String,
    /// When the at-risk threshold was crossed.
    pub warn_at: Timestamp,
    pub due_at: Timestamp,
    pub target_seconds: i64,
    pub at_risk_fraction: f64,
}

impl Projection for SlaProjector {
    fn name(&self) -> &'static str {
        "sla"
    }

    fn layout(&self) -> u32 {
        // 2: cold complaints under `a/`, paged out of memory.
        // 3: listed breaches as rows under `b/`, and open complaints whose every deadline
        //    is breached are cold (a view of layout 2 has no breach rows to list them).
        3
    }

    fn apply(&mut self, _seq: u64, event: &Event) -> Vec<Effect> {
        let mut effects = Vec::new();
        match &event.body {
            EventBody::Filed(filed) => self.on_filed(event, filed),
            EventBody::SlaBreached(breach) => self.on_breach_recorded(event, breach),
            body if updates_a_filed_complaint(body) => {
                if let Some(&slot) = self.by_id.get(event.complaint_id.as_str()) {
                    self.on_update(slot, event, &mut effects);
                }
            }
            _ => {}
        }
        effects
    }

    fn tick(&mut self, now: Timestamp) -> Vec<Effect> {
        let now = now.as_second();
        let mut effects = Vec::new();
        let warnings = self.index.take_warnings(now, TICK_LIMIT);
        let warnings = self.in_firing_order(warnings);
        let due = self.index.take_due(now, TICK_LIMIT);
        let due = self.in_firing_order(due);
        let prefix = &self.config.subject_prefix;
        for key in warnings {
            // Past the deadline a warning is pointless: the breach follows in this tick (and
            // `rows_due` did not page its complaint in for it).
            if self.index.warn_due(&key).is_none_or(|due_at| due_at <= now) {
                continue;
            }
            let Some((metric, due_at, target, warn_at, promise)) = self.timer(&key) else {
                continue;
            };
            let complaint = &self.complaints[key.slot as usize];
            let region = self.names.regions.name(complaint.region);
            let alert = AtRiskAlert {
                complaint_id: complaint.id.to_string(),
                metric,
                policy: self.policy_name(complaint).to_string(),
                region: region.to_string(),
                category: self.names.categories.name(complaint.category).to_string(),
                warn_at: ts(warn_at),
                due_at: ts(due_at),
                target_seconds: target,
                at_risk_fraction: self.config.at_risk_fraction,
            };
            let mut parts = deadline_name(&complaint.id, metric, due_at, promise);
            parts.push("at_risk".to_string());
            let part_refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            effects.push(Effect::Publish {
                subject: subjects::sla_alert(prefix, "at_risk", region),
                msg_id: own::event_id(&part_refs).to_string(),
                payload: serde_json::to_vec(&alert).expect("alerts serialise infallibly"),
            });
        }
        for key in due {
            let Some((metric, due_at, target, _, promise)) = self.timer(&key) else {
                continue;
            };
            if due_at != key.at {
                continue;
            }
            let complaint = &self.complaints[key.slot as usize];
            effects.extend(breach_effects(
                prefix,
                complaint,
                self.names.regions.name(complaint.region),
                self.policy_name(complaint),
                metric,
                due_at,
                target,
                None,
                promise,
            ));
        }
        effects
    }

    /// Complaints tracked in memory: in full, or paged out to a stub with their timers.
    fn resident_items(&self) -> Option<usize> {
        Some(self.complaints.len() + self.complaints.paged_out())
    }

    fn next_wakeup(&self) -> Option<Timestamp> {
        self.index.next_wakeup().map(ts)
    }

    /// At-risk warnings handed out: every one due before this second. The runner keeps it
    /// beside the view, so a restart does not warn again.
    fn tick_cursor(&self) -> Option<u64> {
        self.index
            .warned_before()
            .map(|before| u64::try_from(before).unwrap_or(0))
    }

    fn restore_tick_cursor(&mut self, cursor: u64) {
        self.index
            .restore_warned_before(i64::try_from(cursor).unwrap_or(i64::MAX));
    }

    fn set_rebuilding(&mut self, rebuilding: bool) {
        self.rebuilding = rebuilding;
    }

    fn take_changes(&mut self) -> Vec<ViewChange> {
        let mut slots = std::mem::take(&mut self.dirty);
        slots.sort_unstable_by(|a, b| {
            self.complaints[*a as usize]
                .id
                .cmp(&self.complaints[*b as usize].id)
        });
        let mut changes = Vec::with_capacity(slots.len());
        for slot in slots {
            let complaint = &self.complaints[slot as usize];
            let cold = complaint.is_cold();
            let side = if cold { Stored::Archive } else { Stored::Live };
            changes.push((
                row_key(side, &complaint.id),
                Some(self.row_bytes(complaint)),
            ));
            if let Some(stale) = complaint.stored.stale_copy(side) {
                changes.push((row_key(stale, &complaint.id), None));
            }
            // Its breach rows go with it: the ones it no longer lists are deleted, those
            // that are new or whose clock moved are written.
            let listed = complaint.listed_breaches();
            let before = self.breach_rows_before.remove(&slot).unwrap_or_default();
            for old in &before {
                if !listed
                    .iter()
                    .any(|new| (new.due_at, new.timer) == (old.due_at, old.timer))
                {
                    changes.push((breach_key(old.due_at, &complaint.id, old.timer), None));
                }
            }
            for breach in listed.iter().filter(|new| !before.contains(new)) {
                let (key, value) = self.breach_row(complaint, breach);
                changes.push((key, Some(value)));
            }
            let touched = self.touch();
            let complaint = &mut self.complaints[slot as usize];
            complaint.dirty = false;
            complaint.stored = side;
            complaint.touched = touched;
            if cold {
                self.cooled.push(slot);
            } else {
                self.settled.push_back((slot, touched));
            }
        }
        changes
    }

    fn resident_prefixes(&self) -> Vec<Vec<u8>> {
        vec![ROW_PREFIX.into()]
    }

    fn rows_needed(&self, event: &Event, keys: &mut Vec<Vec<u8>>) {
        if !updates_a_filed_complaint(&event.body) {
            return;
        }
        match self.by_id.get(event.complaint_id.as_str()) {
            None => keys.push(row_key(Stored::Archive, &event.complaint_id)),
            Some(&slot) if self.complaints.get(slot).is_none() => {
                keys.push(row_key(Stored::Live, &event.complaint_id));
            }
            Some(_) => {}
        }
    }

    /// The rows of the paged-out complaints whose timers `tick(now)` fires: the warnings
    /// and breaches it hands out (at most [`TICK_LIMIT`] of each), save warnings already
    /// overdue, which it skips.
    fn rows_due(&self, now: Timestamp, keys: &mut Vec<Vec<u8>>) {
        if self.complaints.paged_out() == 0 {
            return;
        }
        let now = now.as_second();
        let warnings = self
            .index
            .peek_warnings(now, TICK_LIMIT)
            .filter(|key| self.index.warn_due(key).is_some_and(|due_at| due_at > now));
        for key in warnings.chain(self.index.peek_due(now, TICK_LIMIT)) {
            if let Some(Held::PagedOut(dormant)) = self.complaints.held(key.slot) {
                keys.push(row_key(Stored::Live, &dormant.id));
            }
        }
    }

    fn page_in(&mut self, key: &[u8], row: Option<&[u8]>) -> Result<(), ProjectionError> {
        if key.starts_with(ROW_PREFIX.as_bytes()) {
            return self.page_in_armed(key, row);
        }
        let (Some(id), Some(value)) = (key.strip_prefix(ARCHIVE_PREFIX.as_bytes()), row) else {
            return Ok(());
        };
        let id = String::from_utf8_lossy(id);
        if self.by_id.contains_key(&*id) {
            return Ok(());
        }
        let row = decode_complaint_row(key, value)?;
        if let Some(slot) = self.restore_row(&id, &row, Stored::Archive) {
            // Its row is committed already: unless an event changes it, it may go again.
            self.cooled.push(slot);
        }
        Ok(())
    }

    fn evict(&mut self) {
        for slot in plaint_projection::coldest_beyond(&mut self.cooled, COLD_CACHE) {
            // A slot listed twice (paged in, then written) is gone after the first.
            let Some(complaint) = self.complaints.get(slot) else {
                continue;
            };
            if !complaint.dirty && complaint.stored == Stored::Archive && complaint.is_cold() {
                self.forget(slot);
            }
        }
        self.page_out_settled();
        plaint_projection::shrink_when_sparse(&mut self.by_id);
    }

    fn restore(&mut self, rows: &mut dyn Iterator<Item = ViewRow>) -> Result<(), ProjectionError> {
        self.names = Names::default();
        self.complaints.clear();
        self.by_id.clear();
        self.index.clear();
        self.dirty.clear();
        self.breach_rows_before.clear();
        self.cooled.clear();
        self.settled.clear();
        // The runner passes the live rows only; archived ones given too come back as if
        // paged in (and leave again at the next `evict`).
        for (key, value) in rows {
            let (id, stored) = if let Some(id) = key.strip_prefix(ROW_PREFIX.as_bytes()) {
                (id, Stored::Live)
            } else if let Some(id) = key.strip_prefix(ARCHIVE_PREFIX.as_bytes()) {
                (id, Stored::Archive)
            } else {
                continue;
            };
            let row = decode_complaint_row(&key, &value)?;
            let slot = self.restore_row(&String::from_utf8_lossy(id), &row, stored);
            if let (Some(slot), Stored::Archive) = (slot, stored) {
                self.cooled.push(slot);
            }
        }
        Ok(())
    }
}

pub(crate) fn decode_complaint_row(
    key: &[u8],
    value: &[u8],
) -> Result<ComplaintRow, ProjectionError> {
    decode_view_row(key, value)
}

/// One of the view's rows, or the error that names it.
pub(crate) fn decode_view_row<V: RowCodec + DeserializeOwned>(
    key: &[u8],
    value: &[u8],
) -> Result<V, ProjectionError> {
    decode_row(value).map_err(|source| ProjectionError::UndecodableRow {
        projector: "sla",
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}
