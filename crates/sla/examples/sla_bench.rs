//! Measures the SLA projector: `cargo run --release -p plaint-sla --example sla_bench`.
//!
//! Optional arguments: open complaints, closed complaints, deadlines to fire
//! (defaults 1 000 000, 200 000, 200 000); `--keep-all` keeps every complaint in memory
//! (no eviction after each chunk), to compare.

use std::time::Duration;

use plaint_sla::bench::{run, BenchConfig, Probes};

/// Resident set size from `/proc/self/statm` (Linux); None elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Time this thread has spent on a CPU, in nanoseconds, from `/proc/thread-self/schedstat`
/// (Linux); None elsewhere.
fn thread_cpu() -> Option<Duration> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn main() {
    let mut config = BenchConfig {
        page_out: !std::env::args().any(|a| a == "--keep-all"),
        ..BenchConfig::default()
    };
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    if let Some(&open) = args.first() {
        config.open_complaints = open;
    }
    if let Some(&closed) = args.get(1) {
        config.closed_complaints = closed;
    }
    if let Some(&fire) = args.get(2) {
        config.deadlines_to_fire = fire;
    }
    println!(
        "{} open + {} closed complaints, firing {} deadlines, {}...",
        config.open_complaints,
        config.closed_complaints,
        config.deadlines_to_fire,
        if config.page_out {
            "cold complaints paged out"
        } else {
            "every complaint kept in memory"
        }
    );
    let report = run(
        &config,
        &Probes {
            resident_bytes: &resident_bytes,
            thread_cpu: &thread_cpu,
        },
    );
    println!("{report}");
}
