//! Rebuilds the benchmark's log repeatedly, for a profiler to look at `apply` alone, and
//! prints where the time goes by event type.
//!
//! `cargo run --release -p plaint-escalation --example escalation_profile [rounds]`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plaint_escalation::bench::{live_log, BenchOptions};
use plaint_escalation::{EscalationConfig, EscalationProjector};
use plaint_projection::Projection;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(5, |a| a.parse().expect("rounds"));
    let (_, log, _) = live_log(&BenchOptions::default());
    for _ in 0..rounds {
        let began = Instant::now();
        let mut rebuilt = EscalationProjector::new(EscalationConfig::default()).expect("valid");
        for (i, event) in log.iter().enumerate() {
            rebuilt.apply(i as u64 + 1, event);
        }
        let elapsed = began.elapsed();
        println!(
            "{} events in {elapsed:?}: {:.0} events/s",
            log.len(),
            log.len() as f64 / elapsed.as_secs_f64()
        );
    }
    let mut by_type: BTreeMap<&str, (usize, Duration, usize)> = BTreeMap::new();
    let mut rebuilt = EscalationProjector::new(EscalationConfig::default()).expect("valid");
    for (i, event) in log.iter().enumerate() {
        let began = Instant::now();
        let effects = rebuilt.apply(i as u64 + 1, event);
        let spent = began.elapsed();
        let entry = by_type.entry(event.event_type().as_str()).or_default();
        entry.0 += 1;
        entry.1 += spent;
        entry.2 += effects.len();
    }
    for (event_type, (count, spent, effects)) in by_type {
        println!(
            "  {event_type:<22} {count:>7} events, {:>7.0} ns each, {spent:>10.3?} in all, {effects} effects",
            spent.as_nanos() as f64 / count as f64
        );
    }
}
