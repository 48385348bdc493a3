//! The escalation benchmark: apply and rebuild rate, and first-page query latency with
//! 100,000 escalated complaints.
//!
//! This is the one module that reads a clock (`std::time::Instant`), only to measure.
//! Synthetic events come from a seeded generator, so every run applies the same log.
//! Run it with `cargo run --release -p plaint-escalation --example escalation_bench`.
//!
//! Queries with deadlines ask a deadline source for every item of the severity band a
//! page reaches, so the source's cost per call is part of the latency. [`run`] models it
//! with an ordered map lookup; [`run_with_deadlines`] takes any source, and the example
//! passes a real `plaint_sla::SlaProjector` fed the same log, as the service does.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use plaint_events::{
    AmountAtStake, Channel, ComplaintAssigned, ComplaintFiled, Event, EventBody, Money, Severity,
    SlaBreached, SlaMetric,
};
use plaint_projection::paging::{PagedRun, PagingSchedule};
use plaint_projection::{Effect, NoRows, Projection};
use uuid::Uuid;

use crate::{EscalationConfig, EscalationProjector, QueueQuery, Resident};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Complaints filed; every one is escalated by at least one rule.
    pub complaints: usize,
    pub regions: usize,
    /// Queries measured per scenario.
    pub queries: usize,
    pub page_size: usize,
    pub seed: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            complaints: 100_000,
            regions: 8,
            queries: 2_000,
            page_size: 50,
            seed: 7,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LatencySummary {
    pub scenario: String,
    pub tier: u8,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub complaints: usize,
    pub depths: [usize; 4],
    /// Upstream events plus the escalation events fed back.
    pub live_events: usize,
    pub live_events_per_sec: f64,
    pub rebuild_events: usize,
    pub rebuild_events_per_sec: f64,
    /// Rebuild including `take_changes` (row serialisation) every 1,000 events.
    pub rebuild_with_rows_events_per_sec: f64,
    pub rows: usize,
    /// Rebuild as the runner pages: rows committed (to an in-memory map) every 1,000
    /// events, what went cold evicted, archived rows paged in before the events that
    /// need them.
    pub paged_rebuild_events_per_sec: f64,
    /// What the paged rebuild kept in memory at its end.
    pub resident: Resident,
    /// What answered the next-deadline lookups.
    pub deadline_source: String,
    pub latencies: Vec<LatencySummary>,
}

/// SplitMix64: small, seeded, good enough to spread synthetic data.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of the four severities, equally likely.
    fn severity(&mut self) -> Severity {
        [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ][self.below(4) as usize]
    }
}

fn synthetic_upstream(options: &BenchOptions, start: Timestamp) -> Vec<Event> {
    let mut random = Seeded(options.seed);
    let mut events = Vec::with_capacity(options.complaints * 2);
    let mut next_id = 0u128;
    let mut id = || {
        next_id += 1;
        Uuid::from_u128(next_id)
    };
    let span_minutes = 30 * 24 * 60;
    for i in 0..options.complaints {
        let complaint_id = format!("cmp-{i:07}");
        let filed_at = start
            .checked_add(SignedDuration::from_mins(
                (i as i64 * span_minutes) / options.complaints as i64,
            ))
            .expect("in range");
        let severity = random.severity();
        let amount = random.chance(70).then(|| AmountAtStake {
            value: Money::from_units(random.below(40_000) as i64 + 1),
            currency: ["EUR", "USD", "GBP"][random.below(3) as usize].into(),
        });
        let escalates_anyway = severity == Severity::Critical
            || amount
                .as_ref()
                .is_some_and(|a| a.value > Money::from_units(100));
        let vip = !escalates_anyway || random.chance(10);
        let region = format!("region-{}", random.below(options.regions as u64));
        events.push(Event {
            id: id(),
            source: "bench".into(),
            complaint_id: complaint_id.clone(),
            time: filed_at,
            body: billing_filing(
                format!("cust-{}", random.below(options.complaints as u64 / 2 + 1)),
                region.clone(),
                severity,
                amount,
                vip,
            ),
        });
        if random.chance(30) {
            events.push(Event {
                id: id(),
                source: "bench".into(),
                complaint_id: complaint_id.clone(),
                time: filed_at,
                body: EventBody::Assigned(ComplaintAssigned {
                    assignee: "agent".into(),
                    team: Some(format!("team-{}", random.below(5))),
                }),
            });
        }
        if random.chance(15) {
            let due_at = filed_at
                .checked_add(SignedDuration::from_hours(4))
                .expect("in range");
            events.push(Event {
                id: id(),
                source: "bench".into(),
                complaint_id,
                time: due_at,
                body: EventBody::SlaBreached(SlaBreached {
                    metric: SlaMetric::FirstResponse,
                    policy: "standard".into(),
                    region,
                    due_at,
                    target_seconds: 4 * 3600,
                    met_at: None,
                    late_by_seconds: None,
                }),
            });
        }
    }
    events
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The live projector after applying the synthetic upstream log, every event it wrote
/// fed back right away (as the runner's stream would) and 30% of the raised items claimed
/// by an operator; the whole log in order; and how long that took.
pub fn live_log(options: &BenchOptions) -> (EscalationProjector, Vec<Event>, Duration) {
    let start = bench_start();
    let upstream = synthetic_upstream(options, start);
    let mut live =
        EscalationProjector::new(EscalationConfig::default()).expect("default config is valid");
    let mut log: Vec<Event> = Vec::with_capacity(upstream.len() * 2);
    let mut random = Seeded(options.seed ^ 0xabcd);
    let began = Instant::now();
    for event in upstream {
        append_live(&mut live, &mut log, event, |live, raise| {
            if !random.chance(30) {
                return None;
            }
            let claim =
                live.prepare_claim(&raise.complaint_id, "operator-1", None, raise.time, &NoRows);
            claim.ok().map(|c| c.event)
        });
    }
    (live, log, began.elapsed())
}

/// Appends `event` to `log` and applies it, every event the projector writes fed back
/// right away (as the runner's stream would); after each raise, `after_raise` may write
/// an operator command.
fn append_live(
    live: &mut EscalationProjector,
    log: &mut Vec<Event>,
    event: Event,
    mut after_raise: impl FnMut(&EscalationProjector, &Event) -> Option<Event>,
) {
    let mut pending = vec![event];
    while let Some(event) = pending.pop() {
        log.push(event);
        let event = log.last().expect("just pushed");
        let written = live.apply(log.len() as u64, event);
        pending.extend(written.into_iter().filter_map(|effect| match effect {
            Effect::AppendEvent { event, .. } => Some(event),
            Effect::Publish { .. } => None,
        }));
        if matches!(event.body, EventBody::EscalationRaised(_)) {
            pending.extend(after_raise(live, event));
        }
    }
}

/// The start of the synthetic log; complaints are filed over the 30 days after it.
/// Rebuilds `log` as the runner does (batches of 1,000 committed to an in-memory row
/// store, eviction after each), timed.
fn paged_rebuild(log: &[Event]) -> (PagedRun<EscalationProjector>, Duration) {
    let rebuilding = || {
        let mut projector = EscalationProjector::new(EscalationConfig::default()).expect("valid");
        projector.set_rebuilding(true);
        projector
    };
    let began = Instant::now();
    let mut paged = PagedRun::new(rebuilding());
    let schedule = PagingSchedule {
        batch: 1000,
        restart_every: 0,
        evict: true,
    };
    paged
        .run(log, schedule, rebuilding)
        .expect("rows written by this run decode");
    (paged, began.elapsed())
}

fn bench_start() -> Timestamp {
    "2025-01-01T00:00:00Z".parse().expect("valid")
}

/// The time the queries are asked at: a day after the last filing.
pub fn query_time() -> Timestamp {
    bench_start()
        .checked_add(SignedDuration::from_hours(31 * 24))
        .expect("in range")
}

/// [`run_with_deadlines`] with next deadlines modelled by an ordered map lookup (three
/// complaints in four have one), for a run without an SLA projector.
pub fn run(options: &BenchOptions) -> BenchReport {
    let start = bench_start();
    let complaints = options.complaints;
    run_with_deadlines(options, "modelled (ordered map lookup)", move |_| {
        let deadlines: BTreeMap<String, Timestamp> = (0..complaints)
            .filter(|i| i % 4 != 0)
            .map(|i| {
                let offset = SignedDuration::from_mins((i as i64 * 7919) % (60 * 24 * 40));
                (
                    format!("cmp-{i:07}"),
                    start.checked_add(offset).expect("in range"),
                )
            })
            .collect();
        move |id: &str| deadlines.get(id).copied()
    })
}

/// Builds the escalated complaints through `apply`, then measures rebuild and queries.
/// `deadlines` builds the next-deadline source from the whole log (upstream events and
/// the escalation events fed back); queries ask it at [`query_time`].
pub fn run_with_deadlines<D>(
    options: &BenchOptions,
    source: &str,
    deadlines: impl FnOnce(&[Event]) -> D,
) -> BenchReport
where
    D: Fn(&str) -> Option<Timestamp>,
{
    let (live, log, live_elapsed) = live_log(options);
    let mut random = Seeded(options.seed ^ 0x1234);
    let live_events = log.len();

    let began = Instant::now();
    let mut rebuilt = EscalationProjector::new(EscalationConfig::default()).expect("valid");
    // As `plaint_runner::rebuild` does: its effects are discarded, so none are built.
    rebuilt.set_rebuilding(true);
    for (i, event) in log.iter().enumerate() {
        rebuilt.apply(i as u64 + 1, event);
    }
    let rebuild_elapsed = began.elapsed();
    drop(rebuilt);

    let began = Instant::now();
    let mut rebuilt = EscalationProjector::new(EscalationConfig::default()).expect("valid");
    rebuilt.set_rebuilding(true);
    let mut rows = 0;
    for (i, event) in log.iter().enumerate() {
        rebuilt.apply(i as u64 + 1, event);
        if i % 1000 == 999 {
            rows += rebuilt.take_changes().len();
        }
    }
    rows += rebuilt.take_changes().len();
    let rebuild_with_rows_elapsed = began.elapsed();
    drop(rebuilt);

    let (paged, paged_rebuild_elapsed) = paged_rebuild(&log);
    let resident = paged.projector.resident();

    let deadline_of = deadlines(&log);
    let now = query_time();
    let mut latencies = Vec::new();
    let regions = options.regions as u64;
    type Scenario<'a> = (
        &'a str,
        Box<dyn Fn(&mut Seeded, u8) -> QueueQuery + 'a>,
        bool,
    );
    let page = options.page_size;
    let scenarios: Vec<Scenario<'_>> = vec![
        (
            "first page",
            Box::new(move |_, tier| QueueQuery {
                tier,
                limit: page,
                ..QueueQuery::default()
            }),
            false,
        ),
        (
            "first page + SLA deadlines",
            Box::new(move |_, tier| QueueQuery {
                tier,
                limit: page,
                ..QueueQuery::default()
            }),
            true,
        ),
        (
            "region, unclaimed + deadlines",
            Box::new(move |r, tier| QueueQuery {
                tier,
                limit: page,
                region: Some(format!("region-{}", r.below(regions))),
                claimed: Some(false),
                ..QueueQuery::default()
            }),
            true,
        ),
        (
            "team + reason vip",
            Box::new(move |r, tier| QueueQuery {
                tier,
                limit: page,
                team: Some(format!("team-{}", r.below(5))),
                reason: Some("vip".into()),
                ..QueueQuery::default()
            }),
            false,
        ),
    ];
    for (name, make, with_deadlines) in &scenarios {
        for tier in 2..=4u8 {
            let mut samples = Vec::with_capacity(options.queries);
            for _ in 0..options.queries {
                let query = make(&mut random, tier);
                let began = Instant::now();
                let result = if *with_deadlines {
                    live.queue(&query, now, Some(&deadline_of), &NoRows)
                } else {
                    live.queue(&query, now, None, &NoRows)
                };
                samples.push(began.elapsed());
                assert!(result.is_ok(), "benchmark queries are valid");
            }
            samples.sort_unstable();
            latencies.push(LatencySummary {
                scenario: (*name).to_owned(),
                tier,
                p50: percentile(&samples, 0.50),
                p99: percentile(&samples, 0.99),
                max: *samples.last().expect("queries > 0"),
            });
        }
    }
    // The paged rebuild's projector: the rows of a page's items are read back from the
    // view's rows (an in-memory map here) unless they are among the cold rows cached.
    for tier in 2..=4u8 {
        let query = QueueQuery {
            tier,
            limit: page,
            ..QueueQuery::default()
        };
        let mut samples = Vec::with_capacity(options.queries);
        for _ in 0..options.queries {
            let began = Instant::now();
            let result = paged
                .projector
                .queue(&query, now, Some(&deadline_of), &paged.rows);
            samples.push(began.elapsed());
            assert!(result.is_ok(), "benchmark queries are valid");
        }
        samples.sort_unstable();
        latencies.push(LatencySummary {
            scenario: "paged view, first page + deadlines".to_owned(),
            tier,
            p50: percentile(&samples, 0.50),
            p99: percentile(&samples, 0.99),
            max: *samples.last().expect("queries > 0"),
        });
    }
    drop(paged);

    let rate = |events: usize, elapsed: Duration| events as f64 / elapsed.as_secs_f64().max(1e-9);
    BenchReport {
        complaints: options.complaints,
        depths: live.depths(),
        live_events,
        live_events_per_sec: rate(live_events, live_elapsed),
        rebuild_events: log.len(),
        rebuild_events_per_sec: rate(log.len(), rebuild_elapsed),
        rebuild_with_rows_events_per_sec: rate(log.len(), rebuild_with_rows_elapsed),
        rows,
        paged_rebuild_events_per_sec: rate(log.len(), paged_rebuild_elapsed),
        resident,
        deadline_source: source.to_owned(),
        latencies,
    }
}

/// A workload where most of what stays is queued and never claimed, as in the 10 M
/// demo: complaints filed over 60 days, one in four breaches its SLA (which raises it)
/// and is never answered, the others are resolved two hours after filing and closed a
/// day later (critical ones were raised and are cleared).
#[derive(Debug, Clone)]
pub struct QueuedOptions {
    pub complaints: usize,
    pub seed: u64,
}

impl Default for QueuedOptions {
    fn default() -> Self {
        QueuedOptions {
            complaints: 200_000,
            seed: 7,
        }
    }
}

/// What a paged rebuild of the [`QueuedOptions`] workload keeps in memory, and what a
/// restart reads.
#[derive(Debug, Clone)]
pub struct QueuedReport {
    pub complaints: usize,
    pub events: usize,
    pub depths: [usize; 4],
    /// Rebuild as the runner pages (batches of 1,000, evicting after each).
    pub paged_rebuild_events_per_sec: f64,
    /// In memory after the paged rebuild.
    pub resident: Resident,
    /// Heap bytes the projector held then (freed when it was dropped), if measured.
    pub heap_bytes: Option<usize>,
    /// Of those, the queue index's B-tree nodes (its ids are shared with the alert
    /// schedule), built entry by entry as events were applied.
    pub live_index_heap_bytes: Option<usize>,
    /// Rows under the resident prefixes: what a restart reads.
    pub restart_rows: usize,
    pub restart_row_bytes: usize,
    pub restore: Duration,
    /// In memory after the restore.
    pub restored_resident: Resident,
    pub restored_heap_bytes: Option<usize>,
    /// First page of tier 2 after the restore (p50 of 200).
    pub first_page_p50: Duration,
    /// Heap bytes of a projector restored from the `queue/` rows alone: what the queue
    /// entries cost, if measured.
    pub queue_entries_heap_bytes: Option<usize>,
}

/// A web filing in the `billing` category: what both generated workloads file.
fn billing_filing(
    customer_id: String,
    region: String,
    severity: Severity,
    amount_at_stake: Option<AmountAtStake>,
    vip: bool,
) -> EventBody {
    EventBody::Filed(ComplaintFiled {
        customer_id,
        region,
        category: "billing".into(),
        channel: Channel::Web,
        severity,
        amount_at_stake,
        summary: None,
        tags: Vec::new(),
        vip,
    })
}

fn queued_upstream(options: &QueuedOptions, start: Timestamp) -> Vec<Event> {
    let mut random = Seeded(options.seed);
    let mut events = Vec::with_capacity(options.complaints * 3);
    let span_minutes = 60 * 24 * 60;
    for i in 0..options.complaints {
        let complaint_id = format!("cmp-{i:07}");
        let minutes = (i as i64 * span_minutes) / options.complaints.max(1) as i64;
        let at = |extra_minutes: i64| {
            start
                .checked_add(SignedDuration::from_mins(minutes + extra_minutes))
                .expect("in range")
        };
        let event = |n: u64, time: Timestamp, body: EventBody| Event {
            id: Uuid::from_u128((i as u128) << 8 | u128::from(n)),
            source: "bench".into(),
            complaint_id: complaint_id.clone(),
            time,
            body,
        };
        let severity = random.severity();
        let amount = random.chance(50).then(|| AmountAtStake {
            value: Money::from_units(random.below(2_000) as i64 + 1),
            currency: "EUR".into(),
        });
        let region = format!("region-{}", random.below(8));
        events.push(event(
            0,
            at(0),
            billing_filing(
                format!("cust-{}", random.below(options.complaints as u64 / 3 + 1)),
                region.clone(),
                severity,
                amount,
                random.chance(5),
            ),
        ));
        if i % 4 == 0 {
            events.push(event(
                1,
                at(240),
                EventBody::SlaBreached(SlaBreached {
                    metric: SlaMetric::FirstResponse,
                    policy: "standard".into(),
                    region,
                    due_at: at(240),
                    target_seconds: 4 * 3600,
                    met_at: None,
                    late_by_seconds: None,
                }),
            ));
        } else {
            events.push(event(
                1,
                at(120),
                EventBody::Resolved(plaint_events::ComplaintResolved {
                    by: "agent".into(),
                    resolution: "refund".into(),
                }),
            ));
            events.push(event(
                2,
                at(26 * 60),
                EventBody::Closed(plaint_events::ComplaintClosed { by: None }),
            ));
        }
    }
    events.sort_by_key(|e| e.time);
    events
}

/// Runs the [`QueuedOptions`] workload: the log as a live projector writes it, then a
/// paged rebuild and a restart from the resident rows; `heap_bytes` (when it measures
/// anything) gives the bytes allocated now, so that the projector's share is the drop in
/// it when the projector is dropped.
pub fn run_queued(options: &QueuedOptions, heap_bytes: &dyn Fn() -> Option<usize>) -> QueuedReport {
    let mut live = EscalationProjector::new(EscalationConfig::default()).expect("valid");
    let mut log = Vec::new();
    for event in queued_upstream(options, bench_start()) {
        append_live(&mut live, &mut log, event, |_, _| None);
    }
    let depths = live.depths();
    drop(live);

    let (paged, paged_rebuild_elapsed) = paged_rebuild(&log);
    let PagedRun {
        mut projector,
        rows,
        ..
    } = paged;
    let resident = projector.resident();
    let heap_of = |projector: EscalationProjector| {
        let with = heap_bytes();
        drop(projector);
        Some(with?.saturating_sub(heap_bytes()?))
    };
    // The queue index's nodes as applying events leaves them (the ids stay, shared with
    // the alert schedule), unlike a restore, which builds the index at once.
    let with_index = heap_bytes();
    drop(std::mem::take(&mut projector.queues));
    let live_index_heap = with_index
        .zip(heap_bytes())
        .map(|(with, without)| with.saturating_sub(without));
    let heap = heap_of(projector).map(|rest| rest + live_index_heap.unwrap_or(0));

    let mut restored = EscalationProjector::new(EscalationConfig::default()).expect("valid");
    let mut restart_rows = Vec::new();
    for prefix in restored.resident_prefixes() {
        for row in plaint_projection::RowSource::rows_with_prefix(&rows, &prefix) {
            restart_rows.push(row.expect("in memory"));
        }
    }
    let restart_row_bytes = restart_rows.iter().map(|(k, v)| k.len() + v.len()).sum();
    let restart_row_count = restart_rows.len();
    let began = Instant::now();
    restored
        .restore(&mut restart_rows.into_iter())
        .expect("rows written by this run decode");
    let restore = began.elapsed();
    restored.evict();
    let restored_resident = restored.resident();
    let mut samples: Vec<Duration> = (0..200)
        .map(|_| {
            let began = Instant::now();
            let page = restored.queue(&QueueQuery::tier(2), query_time(), None, &rows);
            let spent = began.elapsed();
            assert!(page.is_ok(), "a valid query");
            spent
        })
        .collect();
    samples.sort_unstable();
    let restored_heap = heap_of(restored);

    let queue_rows: Vec<_> = plaint_projection::RowSource::rows_with_prefix(&rows, b"queue/")
        .map(|row| row.expect("in memory"))
        .collect();
    let mut queues_only = EscalationProjector::new(EscalationConfig::default()).expect("valid");
    queues_only
        .restore(&mut queue_rows.into_iter())
        .expect("rows written by this run decode");
    let queue_entries_heap = heap_of(queues_only);
    let rate = |events: usize, elapsed: Duration| events as f64 / elapsed.as_secs_f64().max(1e-9);
    QueuedReport {
        complaints: options.complaints,
        events: log.len(),
        depths,
        paged_rebuild_events_per_sec: rate(log.len(), paged_rebuild_elapsed),
        resident,
        heap_bytes: heap,
        live_index_heap_bytes: live_index_heap,
        restart_rows: restart_row_count,
        restart_row_bytes,
        restore,
        restored_resident,
        restored_heap_bytes: restored_heap,
        first_page_p50: percentile(&samples, 0.5),
        queue_entries_heap_bytes: queue_entries_heap,
    }
}

impl fmt::Display for QueuedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queued: usize = self.depths.iter().sum();
        let heap = |bytes: Option<usize>| match bytes {
            Some(bytes) => format!(
                "{:.1} MiB heap ({} B per queued item)",
                bytes as f64 / f64::from(1 << 20),
                bytes / queued.max(1)
            ),
            None => "heap not measured".to_owned(),
        };
        let resident = |r: &Resident| {
            format!(
                "{} complaint rows, {} queue entries, {} customers, {} claim waits",
                r.complaints, r.queued, r.customers, r.claim_waits
            )
        };
        writeln!(
            f,
            "escalation queued workload: {} complaints filed over 60 days, one in four breached and never answered",
            self.complaints
        )?;
        writeln!(
            f,
            "  queue depth per tier 1..4: {:?} (total {queued}); {} events",
            self.depths, self.events
        )?;
        writeln!(
            f,
            "  rebuild paged (evicted every 1000): {:.0} events/s; in memory after: {}; {}",
            self.paged_rebuild_events_per_sec,
            resident(&self.resident),
            heap(self.heap_bytes)
        )?;
        writeln!(
            f,
            "    of which the queue index's nodes, built entry by entry: {}",
            heap(self.live_index_heap_bytes)
        )?;
        writeln!(
            f,
            "  restart: reads {} rows ({:.1} MiB) in {:.3?}; in memory after: {}; {}",
            self.restart_rows,
            self.restart_row_bytes as f64 / f64::from(1 << 20),
            self.restore,
            resident(&self.restored_resident),
            heap(self.restored_heap_bytes)
        )?;
        writeln!(
            f,
            "  tier 2 first page after the restart: p50 {:.3?}",
            self.first_page_p50
        )?;
        writeln!(
            f,
            "  restored from the queue/ rows alone: {}",
            heap(self.queue_entries_heap_bytes)
        )
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "escalation benchmark: {} complaints filed",
            self.complaints
        )?;
        writeln!(
            f,
            "  queue depth per tier 1..4: {:?} (total {})",
            self.depths,
            self.depths.iter().sum::<usize>()
        )?;
        writeln!(
            f,
            "  live apply (incl. raises fed back, claims): {} events at {:.0} events/s",
            self.live_events, self.live_events_per_sec
        )?;
        writeln!(
            f,
            "  rebuild apply only:                       {} events at {:.0} events/s",
            self.rebuild_events, self.rebuild_events_per_sec
        )?;
        writeln!(
            f,
            "  rebuild + take_changes every 1000 events:  {:.0} events/s ({} row writes)",
            self.rebuild_with_rows_events_per_sec, self.rows
        )?;
        writeln!(
            f,
            "  rebuild paged (rows committed, evicted every 1000): {:.0} events/s; resident after: {} complaint rows, {} queue entries, {} customers, {} claim waits",
            self.paged_rebuild_events_per_sec,
            self.resident.complaints,
            self.resident.queued,
            self.resident.customers,
            self.resident.claim_waits
        )?;
        writeln!(
            f,
            "  queue query latency (p50 / p99 / max), deadlines {}:",
            self.deadline_source
        )?;
        for l in &self.latencies {
            writeln!(
                f,
                "    tier {} {:<32} {:>9.3?} / {:>9.3?} / {:>9.3?}",
                l.tier, l.scenario, l.p50, l.p99, l.max
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_escalates_every_complaint_and_reports_figures() {
        let report = run(&BenchOptions {
            complaints: 300,
            queries: 5,
            ..BenchOptions::default()
        });
        assert_eq!(
            report.depths.iter().sum::<usize>(),
            300,
            "every synthetic complaint escalates"
        );
        assert!(report.live_events > 300 && report.rebuild_events == report.live_events);
        assert_eq!(report.latencies.len(), 15);
        assert!(report.to_string().contains("tier 2 first page"));
    }

    #[test]
    fn the_queued_workload_leaves_a_quarter_queued() {
        let report = run_queued(
            &QueuedOptions {
                complaints: 400,
                ..QueuedOptions::default()
            },
            &|| None,
        );
        assert_eq!(report.depths.iter().sum::<usize>(), 100);
        assert!(report.restart_rows > 0);
        assert!(report.to_string().contains("restart: reads"));
    }
}
