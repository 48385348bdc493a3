//! Memory with a backlog of breached open complaints:
//! `cargo run --release -p plaint-sla --example sla_backlog [complaints]`.
//!
//! Files `complaints` complaints (default 400 000) over two days; three quarters are
//! acknowledged, resolved and closed, a quarter is never answered. Then it ticks past every
//! deadline, feeds the `sla.breached` events the ticks wrote back through `apply` (as the
//! log does), takes the changed rows and evicts after every round (as the runner does after
//! every committed batch), and prints how many complaints stay in memory. Every deadline of
//! a never-answered complaint is then breached: nothing can fire for it any more.
//!
//! Cold complaints stay cached up to `plaint_projection::COLD_CACHE` (50 000) after their
//! rows are committed, so give more complaints than that to see the backlog itself.
//!
//! `--rows` keeps the committed rows in a `BTreeMap` (which the memory figure then
//! includes) and times the breaches query over them at the end.

use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use plaint_events::*;
use plaint_projection::{Effect, Projection};
use plaint_sla::bench::bench_config;
use plaint_sla::{SlaFilter, SlaProjector};
use uuid::Uuid;

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

fn main() {
    let complaints: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.replace('_', "").parse().ok())
        .unwrap_or(400_000);
    let keep_rows = std::env::args().any(|a| a == "--rows");
    let mut rows = std::collections::BTreeMap::new();
    let mut commit = |projector: &mut SlaProjector| {
        let changes = projector.take_changes();
        let count = changes.len();
        if keep_rows {
            plaint_projection::apply_changes(&mut rows, changes);
        }
        projector.evict();
        count
    };
    let start: Timestamp = "2025-03-03T00:00:00Z".parse().expect("valid time");
    let mut projector = SlaProjector::new(bench_config()).expect("valid configuration");
    let memory_before = resident_bytes();
    let mut seq = 0u64;
    let mut apply = |projector: &mut SlaProjector, event: &Event| {
        // Every complaint this needs is in memory (see the module doc): nothing to page in.
        let mut keys = Vec::new();
        projector.rows_needed(event, &mut keys);
        for key in keys {
            projector.page_in(&key, None).expect("nothing to page in");
        }
        seq += 1;
        projector.apply(seq, event)
    };

    // Upstream events, a chunk at a time, each chunk committed and evicted.
    projector.set_rebuilding(true);
    let mut never_answered = 0;
    let mut rows_written = 0usize;
    for chunk in (0..complaints).collect::<Vec<_>>().chunks(10_000) {
        for &n in chunk {
            let id = format!("backlog-{n:08}");
            let filed_at = plus(start, 2 * 86_400 * n as i64 / complaints as i64);
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
                    severity: if n % 7 == 0 {
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
            if n % 4 == 3 {
                never_answered += 1;
            } else {
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
            for event in &events {
                apply(&mut projector, event);
            }
        }
        rows_written += commit(&mut projector);
    }
    projector.set_rebuilding(false);
    println!(
        "{complaints} complaints filed, {never_answered} never answered; {} in memory before the deadlines pass",
        projector.resident()
    );

    // Past every deadline: tick, write the breaches back, commit, evict, until quiet.
    let now = plus(start, 60 * 86_400);
    let mut breaches = 0usize;
    let started = Instant::now();
    loop {
        let effects = projector.tick(now);
        if effects.is_empty() {
            break;
        }
        for effect in effects {
            if let Effect::AppendEvent { event, .. } = effect {
                breaches += 1;
                apply(&mut projector, &event);
            }
        }
        rows_written += commit(&mut projector);
    }
    let memory_after = resident_bytes();
    println!(
        "{breaches} breaches recorded in {:.2} s; {} row changes in all",
        started.elapsed().as_secs_f64(),
        rows_written
    );
    println!(
        "after every deadline passed: {} complaints in memory (cold cache up to {} included), armed timers {:?}",
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
                .breaches(&filter, &rows, plus(now, 86_400))
                .expect("rows decode");
            println!(
                "breaches query (limit {limit:?}): {} items in {:.1} ms",
                items.len(),
                started.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}
