//! The trend-detection benchmark (see `plaint_trends::benchmark`).
//!
//! `cargo run --release -p plaint-trends --example trends_benchmark -- --seeds 20 [--quick] [--first-seed 0] [--phi 1.5] [--threads 2] [--scenarios ABCN] [--verbose] [--oracle | --oracle-only]`
//! (`--help` for what each does).

use plaint_trends::benchmark::{run, BenchConfig};

const HELP: &str = "\
trends_benchmark: the trend-detection benchmark (shared/design/trends-benchmark.md)

usage: cargo run --release -p plaint-trends --example trends_benchmark -- [options]

options:
  --seeds N          seeds to run (default 20; the reported table is seeds 0..20)
  --first-seed S     run seeds S..S+N instead (to tune on other seeds than 0..20)
  --quick            2 seeds and 10 categories: under a minute
  --threads T        seeds run in parallel on T threads (the table does not depend on it;
                     use 1 on a shared machine)
  --scenarios LIST   scenarios to run, letters of ABCN (default ABCN): A single-cell
                     spikes, B multi-region rises, C drift, N nuisances
  --phi F            dispersion of the counts (default 1.5, the headline)
  --regions R        regions (default 50)
  --categories C     categories (default 20)
  --verbose          per injected event, the episodes that detected it in the run and in
                     the no-injection twin, and more diagnostics, on stderr
  --oracle           also print the oracle table for the B events: an upper bound on any
                     detector, told the true expectations, phi, regions and onset, testing
                     once a day the regions' count since onset ('cumul.') or over the
                     window of the largest expected z given the rise's known shape ('best
                     w.') at alpha = budget / 365 (budgets of 1 and 0.5 false cross-region
                     alarms per category-year), beside our detector (as scored, and its
                     cross-region alerts only), per B row, for the bar rows pooled and by
                     category density; needs B in --scenarios
  --oracle-only      only the oracle table: no detector runs (seconds per seed, so many
                     seeds are cheap)
  --help             this text
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}");
        return;
    }
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
    cfg.oracle_only = args.iter().any(|a| a == "--oracle-only");
    cfg.oracle = cfg.oracle_only || args.iter().any(|a| a == "--oracle");
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
