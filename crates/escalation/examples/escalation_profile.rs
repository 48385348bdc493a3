//! Rebuilds the benchmark's log repeatedly, for a profiler to look at `apply` alone.
//!
//! `cargo run --release -p plaint-escalation --example escalation_profile [rounds]`

use std::time::Instant;

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
}
