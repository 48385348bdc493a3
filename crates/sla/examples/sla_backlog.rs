//! Memory with a backlog of breached open complaints:
//! `cargo run --release -p plaint-sla --example sla_backlog [complaints]`.
//!
//! Files `complaints` complaints (default 400 000) over 60 days, an hour of them at a time;
//! three quarters are acknowledged, resolved and closed, a quarter is never answered. After
//! each hour it ticks to the hour's end, feeds the `sla.breached` events the tick wrote back
//! through `apply` (as the log does), takes the changed rows and evicts (as the runner does
//! after every committed batch). A week after its filing every deadline of a
//! never-answered complaint is breached: nothing can fire for it any more. It prints how
//! many complaints stay in memory along the way and at the end, the resident memory grown,
//! and the CPU time of the run.
//!
//! Cold complaints stay cached up to `plaint_projection::COLD_CACHE` (50 000) after their
//! rows are committed, so give more complaints than that to see the backlog itself.
//!
//! `--rows` keeps the committed rows in a `BTreeMap` (which the memory figure then
//! includes) and times the breaches query over them at the end; with it, `--armed=N` keeps
//! N armed complaints whole (`[sla] armed_in_memory`, default 20,000) and pages the others
//! out and back in as the runner does.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use plaint_events::*;
use plaint_projection::{Effect, Projection};
use plaint_sla::bench::bench_config;
use plaint_sla::{SlaFilter, SlaProjector};
use uuid::Uuid;

/// Hands the projector the rows it asked for, as the runner does.
fn page_in(
    projector: &mut SlaProjector,
    rows: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    keys: Vec<Vec<u8>>,
) {
    for key in keys {
        projector
            .page_in(&key, rows.get(&key).map(Vec::as_slice))
            .expect("a committed row pages in");
    }
}

/// Resident set size from `/proc/self/statm` (Linux); None elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("?".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0))
}

fn plus(time: Timestamp, seconds: i64) -> Timestamp {
    time.checked_add(SignedDuration::from_secs(seconds))
        .expect("times in range")
}

const REGIONS: [&str; 4] = ["eu-west", "us-east", "apac", "latam"];

/// Time this thread has spent on a CPU, from `/proc/thread-self/schedstat` (Linux).
fn thread_cpu() -> Option<Duration> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// The events of complaint `n`, filed at `filed_at`: filed only (every fourth), or a whole
/// lifecycle within a day.
fn complaint_events(n: usize, filed_at: Timestamp) -> Vec<Event> {
    let id = format!("backlog-{n:08}");
    let mut serial = 0u128;
    let mut event = |time: Timestamp, body: EventBody| {
        serial += 1;
        Event {
            id: Uuid::from_u128(((n as u128) << 16) | serial),
            source: "backlog".into(),
            complaint_id: id.clone(),
            time,
            body,
        }
    };
    let mut events = vec![event(
        filed_at,
        EventBody::Filed(ComplaintFiled {
            customer_id: format!("cust-{n}"),
            region: REGIONS[n % 4].into(),
            category: "delivery".into(),
            channel: Channel::Email,
            severity: if n.is_multiple_of(7) {
                Severity::Critical
            } else {
                Severity::Medium
            },
            amount_at_stake: None,
            summary: None,
            tags: Vec::new(),
            vip: false,
        }),
    )];
    if n % 4 != 3 {
        events.push(event(
            plus(filed_at, 1800),
            EventBody::Acknowledged(ComplaintAcknowledged { by: "agent".into() }),
        ));
        events.push(event(
            plus(filed_at, 7200),
            EventBody::Resolved(ComplaintResolved {
                by: "agent".into(),
                resolution: "fixed".into(),
            }),
        ));
        events.push(event(
            plus(filed_at, 86_400),
            EventBody::Closed(ComplaintClosed { by: None }),
        ));
    }
    events
}

fn main() {
    let complaints: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.replace('_', "").parse().ok())
        .unwrap_or(400_000);
    let keep_rows = std::env::args().any(|a| a == "--rows");
    let start: Timestamp = "2025-03-03T00:00:00Z".parse().expect("valid time");
    let hours = 60 * 24;
    let mut projector = SlaProjector::new(bench_config()).expect("valid configuration");
    let armed = std::env::args().find_map(|a| a.strip_prefix("--armed=")?.parse().ok());
    match (keep_rows, armed) {
        // Without rows nothing can be paged back in: armed complaints stay whole, and the
        // figure is what the backlog of breached ones costs.
        (false, _) => projector.set_armed_cache(usize::MAX),
        (true, Some(armed)) => projector.set_armed_cache(armed),
        (true, None) => {}
    }
    let memory_before = resident_bytes();
    let cpu_before = thread_cpu();
    let started = Instant::now();
    let mut rows = std::collections::BTreeMap::new();
    let (mut seq, mut rows_written, mut breaches, mut peak) = (0u64, 0usize, 0usize, 0usize);
    let mut n = 0;
    for hour in 0..hours {
        let now = plus(start, 3600 * (hour as i64 + 1));
        let mut events = Vec::new();
        while n < complaints * (hour + 1) / hours {
            let filed_at = plus(start, 3600 * hour as i64 + (n % 3600) as i64);
            events.extend(complaint_events(n, filed_at));
            n += 1;
        }
        loop {
            for event in &events {
                // Without rows, every complaint an event is about is in memory: a
                // lifecycle is applied at once, and a breach comes back while its timer
                // is still armed. With them, armed complaints beyond the cache come back
                // from their rows, as the runner pages them in.
                let mut keys = Vec::new();
                projector.rows_needed(event, &mut keys);
                assert!(keep_rows || keys.is_empty(), "nothing to page in");
                page_in(&mut projector, &rows, keys);
                seq += 1;
                projector.apply(seq, event);
            }
            let changes = projector.take_changes();
            rows_written += changes.len();
            if keep_rows {
                plaint_projection::apply_changes(&mut rows, changes);
            }
            projector.evict();
            peak = peak.max(projector.resident());
            // The breaches due by the hour's end, written back through the log.
            let mut keys = Vec::new();
            projector.rows_due(now, &mut keys);
            page_in(&mut projector, &rows, keys);
            events = projector
                .tick(now)
                .into_iter()
                .filter_map(|effect| match effect {
                    Effect::AppendEvent { event, .. } => Some(event),
                    Effect::Publish { .. } => None,
                })
                .collect();
            breaches += events.len();
            if events.is_empty() {
                break;
            }
        }
        if (hour + 1).is_multiple_of(24 * 10) {
            println!(
                "day {:>2}: {} complaints in memory, {} more paged out with their timers",
                (hour + 1) / 24,
                projector.resident(),
                projector.paged_out()
            );
        }
    }
    let memory_after = resident_bytes();
    let cpu = thread_cpu()
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    println!(
        "{complaints} complaints, a quarter never answered, {breaches} breaches recorded; \
         {rows_written} row changes; {:.2} s ({} CPU)",
        started.elapsed().as_secs_f64(),
        cpu.map_or("?".into(), |c| format!("{:.2} s", c.as_secs_f64()))
    );
    println!(
        "complaints in memory: {} at the end, {peak} at most (cold cache up to {} \
         included); armed timers {:?}",
        projector.resident(),
        plaint_projection::COLD_CACHE,
        projector.armed_timers()
    );
    println!(
        "resident memory grown by {} (from {} to {})",
        mib(memory_before
            .zip(memory_after)
            .map(|(b, a)| a.saturating_sub(b))),
        mib(memory_before),
        mib(memory_after)
    );
    if keep_rows {
        for limit in [Some(100), None] {
            let filter = SlaFilter {
                limit,
                ..SlaFilter::default()
            };
            let started = Instant::now();
            let items = projector
                .breaches(&filter, &rows, plus(start, 3600 * hours as i64))
                .expect("rows decode");
            println!(
                "breaches query (limit {limit:?}) over {} rows: {} items in {:.1} ms",
                rows.len(),
                items.len(),
                started.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}
