//! Runs a preset or mapping over an export and prints the summary and the throughput.
//!
//! `cargo run --release -p plaint-import --example import_stats -- nyc-council /work/shared/data/nyc_council_complaints.csv.gz`
//!
//! With `--wire`, every event is also serialised (`Event::to_wire`), as the CLI does
//! before publishing, so the figure covers the whole CPU cost of an import.

use std::time::Instant;

use plaint_import::{Importer, Mapping};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let wire = args.iter().any(|a| a == "--wire");
    args.retain(|a| a != "--wire");
    let [preset_or_mapping, file] = args.as_slice() else {
        return Err("usage: import_stats [--wire] <preset|mapping.toml> <file.csv[.gz]>".into());
    };
    let mapping = Mapping::load(preset_or_mapping)?;
    let started = Instant::now();
    let mut wire_bytes = 0u64;
    let summary = Importer::open(&mapping, file)?.run(|item| {
        if wire {
            wire_bytes += item
                .events()
                .iter()
                .map(|e| e.to_wire().len() as u64)
                .sum::<u64>();
        }
    })?;
    let seconds = started.elapsed().as_secs_f64();
    println!("{summary}");
    println!(
        "{:.2} s, {:.0} rows/s, {:.0} events/s{}",
        seconds,
        summary.rows as f64 / seconds,
        summary.events as f64 / seconds,
        if wire {
            format!(" (with to_wire: {wire_bytes} bytes of JSON)")
        } else {
            String::new()
        }
    );
    Ok(())
}
