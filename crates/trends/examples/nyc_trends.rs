//! Runs the trends projector over the real NYC Council constituent complaints (borough x
//! complaint type, daily) and lists the strongest episodes, so a person can judge whether
//! they look like real events.
//!
//! `cargo run --release -p plaint-trends --example nyc_trends [-- path/to/nyc_council_complaints.csv.gz] [--top 20]`
//!
//! Skips cleanly (exit 0) when the file is absent.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;

use jiff::Timestamp;
use plaint_events::{Channel, ComplaintFiled, Event, EventBody, Severity};
use plaint_projection::{Effect, Projection};
use plaint_trends::{AlertKind, AlertStatus, TrendAlert, TrendsConfig, TrendsProjector};

const DEFAULT_PATH: &str = "/work/shared/data/nyc_council_complaints.csv.gz";

fn token(text: &str) -> String {
    let mut out = String::new();
    for ch in text.trim().to_lowercase().chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').chars().take(64).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .iter()
        .find(|a| !a.starts_with("--") && a.parse::<usize>().is_err())
        .cloned()
        .unwrap_or(DEFAULT_PATH.into());
    let top: usize = args
        .iter()
        .position(|a| a == "--top")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let Ok(file) = std::fs::File::open(&path) else {
        eprintln!("{path} not found: skipping the NYC run");
        return Ok(());
    };
    let mut reader = csv::Reader::from_reader(BufReader::new(flate2::read::GzDecoder::new(file)));
    let headers = reader.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or(format!("column {name} missing"))
    };
    let (key_i, date_i, type_i, borough_i) = (
        col("unique_key")?,
        col("opendate")?,
        col("complaint_type")?,
        col("borough")?,
    );
    let mut seen = BTreeSet::new();
    let mut projector = TrendsProjector::new(TrendsConfig {
        tracked_tag_prefixes: Vec::new(),
        ..TrendsConfig::default()
    })?;
    let mut messages: Vec<TrendAlert> = Vec::new();
    let (mut used, mut skipped) = (0u64, 0u64);
    let started = std::time::Instant::now();
    for (seq, record) in reader.records().enumerate() {
        let record = record?;
        let (key, date, kind, borough) = (
            &record[key_i],
            &record[date_i],
            &record[type_i],
            &record[borough_i],
        );
        if borough.is_empty() || kind.is_empty() || !seen.insert(key.to_owned()) {
            skipped += 1;
            continue;
        }
        let Ok(time) = format!("{date}T12:00:00Z").parse::<Timestamp>() else {
            skipped += 1;
            continue;
        };
        let event = Event {
            id: plaint_events::own::event_id(&["nyc", key]),
            source: "nyc-council".into(),
            complaint_id: key.to_owned(),
            time,
            body: EventBody::Filed(ComplaintFiled {
                customer_id: String::new(),
                region: token(borough),
                category: token(kind),
                channel: Channel::Other,
                severity: Severity::Medium,
                amount_at_stake: None,
                summary: None,
                tags: Vec::new(),
                vip: false,
            }),
        };
        used += 1;
        for effect in projector.apply(seq as u64 + 1, &event) {
            if let Effect::Publish { payload, .. } = effect {
                match serde_json::from_slice(&payload) {
                    Ok(m) => messages.push(m),
                    Err(e) => eprintln!(
                        "unreadable alert ({e}): {}",
                        String::from_utf8_lossy(&payload)
                    ),
                }
            }
        }
    }
    eprintln!(
        "{used} complaints used, {skipped} skipped (no borough/type, or duplicate key); {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // One line per episode: its strongest message.
    let mut episodes: BTreeMap<String, (TrendAlert, Option<Timestamp>)> = BTreeMap::new();
    for m in messages {
        let entry = episodes
            .entry(m.id.clone())
            .or_insert_with(|| (m.clone(), None));
        if m.status == AlertStatus::Ended {
            entry.1 = m.ended_at;
        } else if m.score / m.threshold > entry.0.score / entry.0.threshold {
            let ended = entry.1;
            *entry = (m, ended);
        }
    }
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for (a, _) in episodes.values() {
        *by_kind.entry(a.kind.as_str()).or_default() += 1;
    }
    println!("{} episodes: {by_kind:?}", episodes.len());
    let mut ranked: Vec<&(TrendAlert, Option<Timestamp>)> = episodes.values().collect();
    // Ranked by excess complaints (observed - expected over the named regions): a ratio
    // ranking would be topped by series whose expectation is near zero.
    let excess = |a: &TrendAlert| {
        a.regions
            .iter()
            .map(|r| r.observed as f64 - r.expected)
            .filter(|e| *e > 0.0)
            .sum::<f64>()
    };
    ranked.sort_by(|a, b| {
        excess(&b.0)
            .total_cmp(&excess(&a.0))
            .then(a.0.id.cmp(&b.0.id))
    });
    for wanted in [None, Some(AlertKind::CrossRegion), Some(AlertKind::Drift)] {
        let title = wanted.map_or("all kinds".to_owned(), |k| k.as_str().to_owned());
        println!("\ntop episodes ({title}), by excess complaints; columns: start .. end, kind, region, series, score/threshold, detector, [region observed/expected]");
        for (a, ended) in ranked
            .iter()
            .filter(|(a, _)| wanted.is_none_or(|k| a.kind == k))
            .take(top)
        {
            let regions: Vec<String> = a
                .regions
                .iter()
                .take(5)
                .map(|r| format!("{} {}/{:.1}", r.region, r.observed, r.expected))
                .collect();
            println!(
                "{} .. {:<10}  {:<12} {:<14} {:<36} x{:>5.1} {:<22} [{}]",
                a.started_at.strftime("%Y-%m-%d"),
                ended.map_or("open".to_owned(), |e| e.strftime("%Y-%m-%d").to_string()),
                a.kind.as_str(),
                a.region,
                a.series,
                a.score / a.threshold,
                a.detector,
                regions.join(", ")
            );
        }
    }
    Ok(())
}
