//! A synthetic load for the SLA projector: rebuild rate, memory with many open complaints,
//! and the cost of firing deadlines.
//!
//! [`run`] generates complaints with a seeded generator (no randomness from outside),
//! applies their events as a rebuild does (timed; after every chunk the changed rows are
//! taken and, as once committed, cold complaints evicted), then ticks through time until
//! a number of deadlines have fired (timed). Generation is not timed. This module reads the
//! monotonic clock (`std::time::Instant`) to measure, which the projector itself never
//! does; the resident memory is read by the caller (the example reads `/proc`), so the
//! library stays free of I/O.

use std::fmt;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use plaint_events::*;
use plaint_projection::{Effect, Projection};
use uuid::Uuid;

use crate::{
    BusinessHoursConfig, CalendarChoice, PolicyConfig, PolicyMatch, SlaConfig, SlaProjector,
};

#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Complaints left open (their deadlines stay armed).
    pub open_complaints: usize,
    /// Complaints that run a whole lifecycle (filed → … → closed) before the open ones.
    pub closed_complaints: usize,
    /// Stop ticking once this many deadlines (warnings and breaches) have fired.
    pub deadlines_to_fire: usize,
    pub seed: u64,
    /// Evict after every chunk, as the runner does after every committed batch (false:
    /// every complaint stays in memory, to compare).
    pub page_out: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            open_complaints: 1_000_000,
            closed_complaints: 200_000,
            deadlines_to_fire: 200_000,
            seed: 7,
            page_out: true,
        }
    }
}

/// What [`run`] measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub events_applied: u64,
    /// Wall-clock time in apply.
    pub apply_time: Duration,
    /// CPU time of the applying thread in apply, from the caller's probe: on a shared
    /// machine this is the figure that says what one core does.
    pub apply_cpu: Option<Duration>,
    /// Complaints filed.
    pub complaints: usize,
    pub open_complaints: usize,
    /// Complaints still in memory after the rebuild.
    pub resident_complaints: usize,
    /// (warn entries, due entries) in the deadline index after the rebuild.
    pub armed_timers: (usize, usize),
    /// Resident memory grown by the rebuild, from the caller's probe (None if unknown).
    pub state_bytes: Option<u64>,
    /// Row writes and deletes taken over the rebuild.
    pub rows_written: usize,
    /// Time in `take_changes` and `evict` (serialising the rows, paging out).
    pub take_changes_time: Duration,
    pub ticks: u64,
    pub deadlines_fired: u64,
    pub effects_emitted: u64,
    pub fire_time: Duration,
    pub fire_cpu: Option<Duration>,
}

impl BenchReport {
    pub fn events_per_second(&self) -> f64 {
        self.events_applied as f64 / self.apply_time.as_secs_f64().max(1e-9)
    }

    pub fn micros_per_fired_deadline(&self) -> f64 {
        self.fire_time.as_secs_f64() * 1e6 / self.deadlines_fired.max(1) as f64
    }

    pub fn cpu_events_per_second(&self) -> Option<f64> {
        self.apply_cpu
            .map(|cpu| self.events_applied as f64 / cpu.as_secs_f64().max(1e-9))
    }

    pub fn cpu_micros_per_fired_deadline(&self) -> Option<f64> {
        self.fire_cpu
            .map(|cpu| cpu.as_secs_f64() * 1e6 / self.deadlines_fired.max(1) as f64)
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "SLA projector benchmark")?;
        writeln!(
            f,
            "  rebuild: {} events through apply in {:.2} s = {:.0} events/s (one core)",
            self.events_applied,
            self.apply_time.as_secs_f64(),
            self.events_per_second()
        )?;
        if let Some(rate) = self.cpu_events_per_second() {
            writeln!(
                f,
                "           {rate:.0} events/s per CPU second of the applying thread"
            )?;
        }
        writeln!(
            f,
            "  state: {} complaints, {} open, {} in memory; deadline index {} warn + {} due entries",
            self.complaints,
            self.open_complaints,
            self.resident_complaints,
            self.armed_timers.0,
            self.armed_timers.1
        )?;
        match self.state_bytes {
            Some(bytes) => writeln!(
                f,
                "  memory: {:.0} MiB resident for the state ({:.0} bytes per complaint in memory)",
                bytes as f64 / (1024.0 * 1024.0),
                bytes as f64 / self.resident_complaints.max(1) as f64
            )?,
            None => writeln!(f, "  memory: not measured (no probe)")?,
        }
        writeln!(
            f,
            "  take_changes + evict after each chunk: {} row changes in {:.2} s",
            self.rows_written,
            self.take_changes_time.as_secs_f64()
        )?;
        write!(
            f,
            "  firing: {} deadlines fired over {} ticks in {:.3} s = {:.2} µs per fired deadline ({} effects)",
            self.deadlines_fired,
            self.ticks,
            self.fire_time.as_secs_f64(),
            self.micros_per_fired_deadline(),
            self.effects_emitted
        )?;
        if let Some(micros) = self.cpu_micros_per_fired_deadline() {
            write!(
                f,
                "\n          {micros:.2} µs CPU per fired deadline (effects built, JSON included)"
            )?;
        }
        Ok(())
    }
}

/// splitmix64: small, seeded, good enough to shape synthetic traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The configuration the benchmark runs: business hours in three zones, a 24x7 policy
/// for critical complaints, business-hours policies for the rest.
pub fn bench_config() -> SlaConfig {
    let calendar = |zone: &str| BusinessHoursConfig {
        time_zone: zone.into(),
        ..BusinessHoursConfig::default()
    };
    let mut config = SlaConfig::default();
    config
        .business_hours
        .insert("eu-west".into(), calendar("Europe/Paris"));
    config
        .business_hours
        .insert("us-east".into(), calendar("America/New_York"));
    config
        .business_hours
        .insert("apac".into(), calendar("Asia/Tokyo"));
    config.policies = vec![
        PolicyConfig {
            name: "critical".into(),
            matches: PolicyMatch {
                severity: vec![Severity::Critical],
                ..PolicyMatch::default()
            },
            calendar: CalendarChoice::AllHours,
            first_response: Some("30m".into()),
            resolution: Some("8h".into()),
            periodic_update: Some("2h".into()),
            ..PolicyConfig::default()
        },
        PolicyConfig {
            name: "vip".into(),
            matches: PolicyMatch {
                vip: Some(true),
                ..PolicyMatch::default()
            },
            calendar: CalendarChoice::Business,
            first_response: Some("1h".into()),
            resolution: Some("16h".into()),
            periodic_update: Some("8h".into()),
            ..PolicyConfig::default()
        },
    ];
    config.default_policy = PolicyConfig {
        name: "standard".into(),
        calendar: CalendarChoice::Business,
        first_response: Some("8h".into()),
        resolution: Some("40h".into()),
        periodic_update: Some("24h".into()),
        ..PolicyConfig::default()
    };
    config
}

const REGIONS: [&str; 4] = ["eu-west", "us-east", "apac", "latam"];
const CATEGORIES: [&str; 8] = [
    "billing", "delivery", "quality", "refunds", "service", "fraud", "privacy", "other",
];
const SEVERITIES: [Severity; 4] = [
    Severity::Low,
    Severity::Medium,
    Severity::High,
    Severity::Critical,
];

fn plus(time: Timestamp, seconds: i64) -> Timestamp {
    time.checked_add(SignedDuration::from_secs(seconds))
        .expect("bench times are in range")
}

/// The events of complaint `n`, in order.
fn complaint_events(
    n: usize,
    filed_at: Timestamp,
    open: bool,
    rng: &mut Rng,
    out: &mut Vec<Event>,
) {
    let complaint_id = format!("bench-{n:08}");
    let mut serial = 0u128;
    let mut push = |time: Timestamp, body: EventBody, out: &mut Vec<Event>| {
        serial += 1;
        out.push(Event {
            id: Uuid::from_u128(((n as u128) << 16) | serial),
            source: "bench".into(),
            complaint_id: complaint_id.clone(),
            time,
            body,
        });
    };
    let severity = SEVERITIES[rng.below(4) as usize];
    push(
        filed_at,
        EventBody::Filed(ComplaintFiled {
            customer_id: format!("cust-{}", rng.below(400_000)),
            region: REGIONS[rng.below(4) as usize].into(),
            category: CATEGORIES[rng.below(8) as usize].into(),
            channel: Channel::Email,
            severity,
            amount_at_stake: None,
            summary: None,
            tags: Vec::new(),
            vip: rng.below(50) == 0,
        }),
        out,
    );
    let mut at = filed_at;
    let mut step = |rng: &mut Rng, max_minutes: u64| {
        at = plus(at, 60 * (1 + rng.below(max_minutes)) as i64);
        at
    };
    if open {
        let roll = rng.below(10);
        if roll < 6 {
            let time = step(rng, 120);
            push(
                time,
                EventBody::Acknowledged(ComplaintAcknowledged { by: "agent".into() }),
                out,
            );
        }
        if roll == 1 || roll == 2 {
            let time = step(rng, 240);
            push(
                time,
                EventBody::AwaitingCustomer(AwaitingCustomer {
                    by: "agent".into(),
                    reason: None,
                }),
                out,
            );
        }
        if roll == 3 {
            let time = step(rng, 60);
            let due_by = plus(time, 3600 * (1 + rng.below(48)) as i64);
            push(
                time,
                EventBody::CallbackPromised(CallbackPromised {
                    by: "agent".into(),
                    due_by,
                }),
                out,
            );
        }
    } else {
        let time = step(rng, 120);
        push(
            time,
            EventBody::Acknowledged(ComplaintAcknowledged { by: "agent".into() }),
            out,
        );
        let time = step(rng, 600);
        push(
            time,
            EventBody::CustomerContacted(CustomerContacted {
                by: "agent".into(),
                channel: Channel::Phone,
                note: None,
            }),
            out,
        );
        let time = step(rng, 2400);
        push(
            time,
            EventBody::Resolved(ComplaintResolved {
                by: "agent".into(),
                resolution: "fixed".into(),
            }),
            out,
        );
        let time = step(rng, 1440);
        push(time, EventBody::Closed(ComplaintClosed { by: None }), out);
    }
}

/// What [`run`] needs from its caller to read the process: resident bytes and the CPU
/// time of the current thread (None where unknown).
pub struct Probes<'a> {
    pub resident_bytes: &'a dyn Fn() -> Option<u64>,
    pub thread_cpu: &'a dyn Fn() -> Option<Duration>,
}

impl fmt::Debug for Probes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Probes")
    }
}

fn cpu_between(before: Option<Duration>, after: Option<Duration>) -> Option<Duration> {
    Some(after?.saturating_sub(before?))
}

/// Runs the benchmark.
pub fn run(config: &BenchConfig, probes: &Probes) -> BenchReport {
    let memory_probe = probes.resident_bytes;
    let mut projector =
        SlaProjector::new(bench_config()).expect("the bench configuration is valid");
    // The apply phase is a rebuild (`plaint_runner::rebuild` discards effects, so none are
    // built); the deadlines are fired live below.
    projector.set_rebuilding(true);
    // The bench keeps no rows, and measures what open complaints cost in full: armed ones
    // stay (the cold ones still leave).
    projector.set_armed_cache(usize::MAX);
    let mut rng = Rng(config.seed);
    let start: Timestamp = "2025-03-03T00:00:00Z".parse().expect("valid time");
    let total = config.closed_complaints + config.open_complaints;
    // Closed complaints over the four weeks before the open ones, open ones over two days.
    let closed_span = 28 * 86_400i64;
    let open_start = plus(start, closed_span);
    let memory_before = memory_probe();
    let mut events_applied = 0u64;
    let mut apply_time = Duration::ZERO;
    let mut apply_cpu = Some(Duration::ZERO);
    let mut seq = 0u64;
    let mut chunk = Vec::with_capacity(64 * 1024);
    let mut rows_written = 0;
    let mut take_changes_time = Duration::ZERO;
    let mut n = 0;
    while n < total {
        // A chunk holds whole lifecycles: no complaint paged out is needed again.
        chunk.clear();
        while n < total && chunk.len() < 60_000 {
            let (filed_at, open) = if n < config.closed_complaints {
                (
                    plus(
                        start,
                        closed_span * n as i64 / config.closed_complaints.max(1) as i64,
                    ),
                    false,
                )
            } else {
                let k = (n - config.closed_complaints) as i64;
                (
                    plus(
                        open_start,
                        2 * 86_400 * k / config.open_complaints.max(1) as i64,
                    ),
                    true,
                )
            };
            complaint_events(n, filed_at, open, &mut rng, &mut chunk);
            n += 1;
        }
        let cpu_before = (probes.thread_cpu)();
        let started = Instant::now();
        if config.page_out {
            // What the runner asks before applying a batch. Every row asked for is of a
            // complaint filed in this chunk, which the store does not hold yet.
            let mut keys = Vec::new();
            for event in &chunk {
                projector.rows_needed(event, &mut keys);
            }
            for key in keys {
                projector
                    .page_in(&key, None)
                    .expect("an absent row pages nothing in");
            }
        }
        for event in &chunk {
            seq += 1;
            std::hint::black_box(projector.apply(seq, event));
        }
        apply_time += started.elapsed();
        apply_cpu = apply_cpu
            .and_then(|total| Some(total + cpu_between(cpu_before, (probes.thread_cpu)())?));
        events_applied += chunk.len() as u64;
        if config.page_out {
            // The rows are dropped where the runner commits them; then the cold leave.
            let started = Instant::now();
            rows_written += std::hint::black_box(projector.take_changes()).len();
            projector.evict();
            take_changes_time += started.elapsed();
        }
    }
    drop(chunk);
    let memory_after = memory_probe();
    let state_bytes = match (memory_before, memory_after) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let armed_timers = projector.armed_timers();
    let resident_complaints = projector.resident();
    projector.set_rebuilding(false);

    if !config.page_out {
        let started = Instant::now();
        rows_written = projector.take_changes().len();
        take_changes_time = started.elapsed();
    }

    // Tick minute by minute from the first open complaint on, as a live runner would.
    let mut now = open_start;
    let mut ticks = 0u64;
    let mut deadlines_fired = 0u64;
    let mut effects_emitted = 0u64;
    let mut fire_time = Duration::ZERO;
    let mut fire_cpu = Some(Duration::ZERO);
    let horizon = plus(open_start, 30 * 86_400);
    while (deadlines_fired as usize) < config.deadlines_to_fire && now < horizon {
        let cpu_before = (probes.thread_cpu)();
        let started = Instant::now();
        let effects = projector.tick(now);
        fire_time += started.elapsed();
        fire_cpu = fire_cpu
            .and_then(|total| Some(total + cpu_between(cpu_before, (probes.thread_cpu)())?));
        ticks += 1;
        effects_emitted += effects.len() as u64;
        // A breach is two effects (event + alert), a warning one.
        deadlines_fired += effects
            .iter()
            .filter(|e| match e {
                Effect::AppendEvent { .. } => true,
                Effect::Publish { subject, .. } => subject.contains(".at_risk."),
            })
            .count() as u64;
        now = plus(now, 60);
    }
    BenchReport {
        events_applied,
        apply_time,
        apply_cpu,
        complaints: total,
        open_complaints: config.open_complaints,
        resident_complaints,
        armed_timers,
        state_bytes,
        rows_written,
        take_changes_time,
        ticks,
        deadlines_fired,
        effects_emitted,
        fire_time,
        fire_cpu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_applies_every_event_and_fires_deadlines() {
        let config = BenchConfig {
            open_complaints: 2_000,
            closed_complaints: 500,
            deadlines_to_fire: 100,
            seed: 1,
            page_out: true,
        };
        let probes = Probes {
            resident_bytes: &|| None,
            thread_cpu: &|| None,
        };
        let report = run(&config, &probes);
        assert_eq!(report.complaints, 2_500);
        // Paged out: the closed complaints, and the open ones awaiting the customer with
        // every clock paused or met (nothing can fire for them until the reply).
        assert!(
            (1_000..=2_000).contains(&report.resident_complaints),
            "{report}"
        );
        assert!(report.events_applied >= 2_500 + 500 * 4);
        assert!(report.armed_timers.1 > 2_000, "{report}");
        assert!(report.deadlines_fired >= 100, "{report}");
        // Chunks hold whole lifecycles: each complaint is written once, on its side.
        assert_eq!(report.rows_written, 2_500, "{report}");
        assert!(report.to_string().contains("events/s"));

        let kept = run(
            &BenchConfig {
                page_out: false,
                ..config
            },
            &probes,
        );
        assert_eq!(kept.resident_complaints, 2_500);
        assert_eq!(kept.rows_written, 2_500);
        assert_eq!(
            (
                kept.armed_timers,
                kept.deadlines_fired,
                kept.effects_emitted
            ),
            (
                report.armed_timers,
                report.deadlines_fired,
                report.effects_emitted
            ),
            "paging changes nothing a tick sees"
        );
    }
}
