//! Escalation benchmark: apply/rebuild rate and first-page queue latency.
//!
//! `cargo run --release -p plaint-escalation --example escalation_bench [--deadlines=sla|sla-report|model] [complaints [queries]]`
//!
//! Deadlines come from a real SLA projector fed the same log (`sla`, the default: the
//! service's `next_due`), from its full per-complaint report (`sla-report`,
//! what the service called before), or from the library's modelled lookup (`model`).

use plaint_escalation::bench::{query_time, run, run_with_deadlines, BenchOptions};
use plaint_projection::Projection;
use plaint_sla::SlaProjector;

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
    for arg in std::env::args().skip(1) {
        match arg.strip_prefix("--deadlines=") {
            Some(name) => source = name.to_owned(),
            None => numbers.push(arg.parse::<usize>()),
        }
    }
    let numbers: Result<Vec<usize>, _> = numbers.into_iter().collect();
    match numbers.as_deref() {
        Ok([]) => {}
        Ok([complaints]) => options.complaints = *complaints,
        Ok([complaints, queries]) if *queries > 0 => {
            options.complaints = *complaints;
            options.queries = *queries;
        }
        _ => {
            eprintln!("usage: escalation_bench [--deadlines=sla|sla-report|model] [complaints [queries per scenario]]   (defaults sla 100000 2000)");
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
