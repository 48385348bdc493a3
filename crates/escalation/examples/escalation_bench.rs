//! Escalation benchmark: apply/rebuild rate and first-page queue latency.
//!
//! `cargo run --release -p plaint-escalation --example escalation_bench [complaints [queries]]`

use plaint_escalation::bench::{run, BenchOptions};

fn main() {
    let mut options = BenchOptions::default();
    let numbers: Result<Vec<usize>, _> = std::env::args().skip(1).map(|a| a.parse()).collect();
    match numbers.as_deref() {
        Ok([]) => {}
        Ok([complaints]) => options.complaints = *complaints,
        Ok([complaints, queries]) if *queries > 0 => {
            options.complaints = *complaints;
            options.queries = *queries;
        }
        _ => {
            eprintln!("usage: escalation_bench [complaints [queries per scenario]]   (defaults 100000 2000)");
            std::process::exit(2);
        }
    }
    print!("{}", run(&options));
}
