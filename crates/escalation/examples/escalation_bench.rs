//! Escalation benchmark: apply/rebuild rate and first-page queue latency.
//!
//! `cargo run --release -p plaint-escalation --example escalation_bench [--deadlines=sla|sla-report|model] [complaints [queries]]`
//!
//! Deadlines come from a real SLA projector fed the same log (`sla`, the default: the
//! service's `next_due`), from its full per-complaint report (`sla-report`,
//! what the service called before), or from the library's modelled lookup (`model`).
//!
//! `... --example escalation_bench --queued [complaints]` runs the queued workload
//! instead (`bench::run_queued`, default 200,000 complaints): what stays in memory when
//! most of what is left is queued and never claimed, with the heap bytes the projector
//! holds (counted by this example's allocator).

// The counting allocator below is the one use of `unsafe`: it forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use plaint_escalation::bench::{
    query_time, run, run_queued, run_with_deadlines, BenchOptions, QueuedOptions,
};
use plaint_projection::Projection;
use plaint_sla::SlaProjector;

/// Bytes currently allocated (as requested, without the allocator's own overhead).
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: every call is forwarded to `System` with the same arguments; the counter is
// only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
            ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn sla_projector(log: &[plaint_events::Event]) -> SlaProjector {
    let mut sla = SlaProjector::new(plaint_sla::bench::bench_config()).expect("valid config");
    for (i, event) in log.iter().enumerate() {
        sla.apply(i as u64 + 1, event);
    }
    sla
}

fn main() {
    let mut options = BenchOptions::default();
    let mut source = "sla".to_owned();
    let mut numbers = Vec::new();
    let mut queued = false;
    for arg in std::env::args().skip(1) {
        if arg == "--queued" {
            queued = true;
            continue;
        }
        match arg.strip_prefix("--deadlines=") {
            Some(name) => source = name.to_owned(),
            None => numbers.push(arg.parse::<usize>()),
        }
    }
    let numbers: Result<Vec<usize>, _> = numbers.into_iter().collect();
    if queued {
        let mut options = QueuedOptions::default();
        match numbers.as_deref() {
            Ok([]) => {}
            Ok([complaints]) => options.complaints = *complaints,
            _ => {
                eprintln!("usage: escalation_bench --queued [complaints]   (default 200000)");
                std::process::exit(2);
            }
        }
        let heap = || Some(ALLOCATED.load(Ordering::Relaxed));
        print!("{}", run_queued(&options, &heap));
        return;
    }
    match numbers.as_deref() {
        Ok([]) => {}
        Ok([complaints]) => options.complaints = *complaints,
        Ok([complaints, queries]) if *queries > 0 => {
            options.complaints = *complaints;
            options.queries = *queries;
        }
        _ => {
            eprintln!("usage: escalation_bench [--deadlines=sla|sla-report|model] [complaints [queries per scenario]]   (defaults sla 100000 2000)");
            eprintln!("       escalation_bench --queued [complaints]   (default 200000)");
            std::process::exit(2);
        }
    }
    let report = match source.as_str() {
        "sla" => run_with_deadlines(&options, "from SlaProjector::next_due", |log| {
            let sla = sla_projector(log);
            move |id: &str| sla.next_due(id)
        }),
        "sla-report" => run_with_deadlines(
            &options,
            "from SlaProjector::complaint (full report)",
            |log| {
                let sla = sla_projector(log);
                let now = query_time();
                move |id: &str| {
                    sla.complaint(id, now)?
                        .metrics
                        .iter()
                        .filter(|m| !m.breached)
                        .filter_map(|m| m.due_at)
                        .min()
                }
            },
        ),
        "model" => run(&options),
        other => {
            eprintln!("--deadlines={other}: use sla, sla-report or model");
            std::process::exit(2);
        }
    };
    print!("{report}");
}
