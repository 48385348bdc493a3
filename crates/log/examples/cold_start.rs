//! Cold start of a big log: open time and resident memory, from the index snapshot and
//! from a rescan of the index records (as after a crash that left no snapshot).
//!
//! ```text
//! cargo run --release -p plaint-log --example cold_start -- DIR [EVENTS]
//! ```
//!
//! Builds a log of EVENTS (default 10,000,000) events in DIR if DIR holds none (five events
//! per complaint, 1,000-event batches, `durability = "flush"`), then opens it in fresh
//! processes, so that each figure is the open log's memory and nothing else's.

use std::time::Instant;

use plaint_log::{Candidate, Durability, ExpectedVersion, Log, LogOptions};
use plaint_testkit::fixtures::{self, at};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "plaint_log=debug".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--open") => return open(&args[1], args.get(2).is_some_and(|a| a == "--rescan")),
        Some(dir) => {
            let events: u64 = args.get(1).map_or(Ok(10_000_000), |n| n.parse())?;
            let dir = std::path::Path::new(dir);
            if !dir.exists() {
                build(dir, events)?;
            }
            for mode in ["snapshot", "--rescan", "snapshot"] {
                let output = std::process::Command::new(std::env::current_exe()?)
                    .arg("--open")
                    .arg(dir)
                    .arg(mode)
                    .stderr(std::process::Stdio::inherit())
                    .output()?;
                print!("{}", String::from_utf8_lossy(&output.stdout));
            }
        }
        None => return Err("usage: cold_start DIR [EVENTS]".into()),
    }
    Ok(())
}

fn build(dir: &std::path::Path, events: u64) -> Result<(), Box<dyn std::error::Error>> {
    let log = Log::open(
        dir,
        LogOptions {
            durability: Durability::Flush,
            ..Default::default()
        },
    )?;
    let started = Instant::now();
    let complaints = events / 5;
    let regions = ["eu-west", "eu-north", "us-east", "us-west", "apac", "latam"];
    for chunk in 0..complaints.div_ceil(200) {
        let writer = log.writer();
        let mut batch = writer.begin();
        let mut encoded = Vec::with_capacity(1000);
        for c in chunk * 200..((chunk + 1) * 200).min(complaints) {
            let id = format!("C-{c:09}");
            let t = (c / 100) as i64;
            encoded.push(fixtures::bytes(&fixtures::filed(
                &id,
                regions[c as usize % regions.len()],
                "billing",
                at(t),
            )));
            for event in [
                fixtures::acknowledged(&id, at(t + 5)),
                fixtures::contacted(&id, at(t + 60)),
                fixtures::resolved(&id, at(t + 600)),
                fixtures::closed(&id, at(t + 6000)),
            ] {
                encoded.push(fixtures::bytes(&event));
            }
        }
        for bytes in &encoded {
            let event = plaint_events::decode_stored(bytes)?;
            writer.stage(
                &mut batch,
                Candidate {
                    event: &event,
                    bytes,
                    subject_region: None,
                    expected: ExpectedVersion::Any,
                },
            )?;
        }
        writer.commit(batch)?;
        if chunk % 1000 == 0 {
            eprintln!("built {} events", log.last_seq());
        }
    }
    eprintln!(
        "built {} events in {:.1} s",
        log.last_seq(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn open(dir: &str, rescan: bool) -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(dir);
    if rescan {
        let _ = std::fs::remove_file(plaint_log::index_snapshot_path(dir));
    }
    let started = Instant::now();
    let log = Log::open(dir, LogOptions::default())?;
    let seconds = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mib = |field: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            >> 10
    };
    println!(
        "{:<9} {} events, {} complaints: open {seconds:.2} s, resident {} MiB, peak {} MiB",
        if rescan { "rescan" } else { "snapshot" },
        log.last_seq(),
        log.status().complaints,
        mib("VmRSS:"),
        mib("VmHWM:"),
    );
    Ok(())
}
