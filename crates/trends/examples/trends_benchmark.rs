//! The trend-detection benchmark (see `plaint_trends::benchmark`).
//!
//! `cargo run --release -p plaint-trends --example trends_benchmark -- --seeds 20 [--quick] [--first-seed 0] [--phi 1.5] [--threads 2] [--scenarios ABCN] [--verbose]`

use plaint_trends::benchmark::{run, BenchConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mut cfg = if args.iter().any(|a| a == "--quick") {
        BenchConfig::quick()
    } else {
        BenchConfig::full(20)
    };
    if let Some(seeds) = value("--seeds") {
        cfg.seeds = seeds.parse().expect("--seeds takes a number");
    }
    if let Some(first) = value("--first-seed") {
        cfg.first_seed = first.parse().expect("--first-seed takes a number");
    }
    if let Some(threads) = value("--threads") {
        cfg.threads = threads.parse().expect("--threads takes a number");
    }
    if let Some(list) = value("--scenarios") {
        use plaint_trends::benchmark::Scenario;
        cfg.scenarios = list
            .chars()
            .map(|c| match c {
                'A' => Scenario::A,
                'B' => Scenario::B,
                'C' => Scenario::C,
                'N' => Scenario::N,
                _ => panic!("--scenarios takes letters of ABCN"),
            })
            .collect();
    }
    cfg.verbose = args.iter().any(|a| a == "--verbose");
    if let Some(phi) = value("--phi") {
        cfg.phi = phi.parse().expect("--phi takes a number");
    }
    if let Some(regions) = value("--regions") {
        cfg.regions = regions.parse().expect("--regions takes a number");
    }
    if let Some(categories) = value("--categories") {
        cfg.categories = categories.parse().expect("--categories takes a number");
    }
    let started = std::time::Instant::now();
    let report = run(&cfg, |line| {
        eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64())
    });
    print!("{}", report.table);
    eprintln!("total {:.1}s", started.elapsed().as_secs_f64());
}
