//! `plaint bench`: plaint's rates beside the raw limits of its building blocks, measured
//! in the same run on the same machine, so every figure can be read as a ratio.
//!
//! It starts its own `nats-server -js` on a free loopback port with a temporary store (the
//! machine's own server is never touched) and a temporary sled database, and prints:
//! - raw limits: JetStream async publish; bare pull consume with one AckAll per batch;
//!   bare sled (one key per event + a UUID index tree, batch + flush);
//! - plaint: durable ingest (JetStream → log, acknowledged) with `fsync` and `flush`
//!   durability; publish → durable latency percentiles at a fixed offered rate; offline
//!   replay to a sink; rebuild rate of each projector.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull};
use bytes::Bytes;
use clap::Args;
use futures::StreamExt;
use plaint_log::{Durability, Log, LogOptions};
use plaint_service::Config;
use tokio_util::sync::CancellationToken;

use crate::{demo, publish::Publisher};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Events for the throughput runs.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Offered rate (events/s) of the latency run.
    #[arg(long, default_value_t = 5000)]
    latency_rate: u64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// Skip the runs that need nats-server (storage and projector figures only).
    #[arg(long)]
    no_nats: bool,
    /// Run only these measures (comma-separated): sled, publish, consume, ingest, poison,
    /// latency, append, replay, rebuild, cold. Runs a measure's prerequisites too (ingest
    /// and consume need publish; replay, rebuild and cold need append).
    #[arg(long, value_delimiter = ',', value_parser = [
        "sled", "publish", "consume", "ingest", "poison", "latency", "append", "replay",
        "rebuild", "cold",
    ])]
    only: Vec<String>,
    /// Rebuild only these projectors (comma-separated; all four by default).
    #[arg(long, value_delimiter = ',', value_parser = ["complaints", "sla", "escalation", "trends"])]
    projectors: Vec<String>,
    /// Rebuild each projector this many times over the same log and report the median
    /// (the range in the note): single runs on a shared two-core machine vary by ±30 %.
    #[arg(long, default_value_t = 1)]
    rebuild_runs: usize,
}

impl BenchArgs {
    fn runs(&self, measure: &str) -> bool {
        let only = |m: &str| self.only.iter().any(|o| o == m);
        self.only.is_empty()
            || only(measure)
            || (measure == "publish" && (only("consume") || only("ingest")))
            || (measure == "append" && (only("replay") || only("rebuild") || only("cold")))
    }
}

struct Row {
    what: String,
    rate: f64,
    note: String,
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn events_for(n: usize) -> Vec<demo::DemoEvent> {
    // About five events per complaint; cut to exactly n.
    let mut events = demo::generate(n / 4 + 10, 60, 42, jiff::Timestamp::now());
    events.truncate(n);
    events
}

pub async fn run(_config: &Config, args: &BenchArgs) -> anyhow::Result<()> {
    let events = events_for(args.events);
    let n = events.len();
    let avg = events.iter().map(|e| e.bytes.len()).sum::<usize>() / n.max(1);
    println!(
        "plaint bench: {n} demo events, {avg} bytes on average, {} cores",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    let mut rows = Vec::new();
    if args.runs("sled") {
        rows.push(bare_sled(&events)?);
        rows.push(bare_file(&events)?);
    }
    let dir = tempfile::tempdir()?;
    let needs_nats = ["publish", "poison", "latency"]
        .iter()
        .any(|m| args.runs(m));
    if !args.no_nats && needs_nats {
        let server = plaint_testkit::NatsServer::start();
        let client = async_nats::connect(server.url()).await?;
        let js = jetstream::ContextBuilder::new()
            .max_ack_inflight(4096)
            .build(client.clone());
        let mut config = Config::default();
        config.nats.url = server.url();
        plaint_ingest::ensure_streams(&js, &config.topology).await?;
        if args.runs("publish") {
            rows.push(publish_all(&js, &events, &config.topology.subject_prefix).await?);
        }
        if args.runs("consume") {
            rows.push(bare_consume(&js, n).await?);
        }
        if args.runs("ingest") {
            for durability in [Durability::Fsync, Durability::Flush] {
                let data = dir.path().join(format!("ingest-{durability:?}"));
                rows.push(durable_ingest(&js, &config, &data, durability, n).await?);
            }
        }
        if args.runs("poison") {
            rows.push(poison_flood(&js, &config, dir.path(), &events[..n / 2]).await?);
        }
        if args.runs("latency") {
            rows.extend(
                latency(
                    &js,
                    &config,
                    dir.path(),
                    args.latency_rate,
                    args.latency_seconds,
                )
                .await?,
            );
        }
    }
    // Replay and rebuild over a log with the events, written through the log API.
    let log = Log::open(
        dir.path().join("offline.sled"),
        LogOptions {
            durability: Durability::Flush,
            ..Default::default()
        },
    )?;
    if args.runs("append") {
        rows.push(append_direct(&log, &events)?);
    }
    if args.runs("replay") {
        rows.push(replay(&log)?);
    }
    if args.runs("rebuild") {
        rows.extend(rebuilds(&log, args).await?);
    }
    drop(log);
    if args.runs("cold") {
        rows.push(cold_start(&dir.path().join("offline.sled"))?);
    }
    println!();
    println!("{:<58} {:>14}  note", "measure", "events/s");
    for r in &rows {
        println!("{:<58} {:>14.0}  {}", r.what, r.rate, r.note);
    }
    Ok(())
}

fn bare_sled(events: &[demo::DemoEvent]) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(128 << 20)
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let log = db.open_tree("log")?;
    let ids = db.open_tree("ids")?;
    let started = Instant::now();
    for (chunk_no, chunk) in events.chunks(1000).enumerate() {
        let mut lb = sled::Batch::default();
        let mut ib = sled::Batch::default();
        for (i, e) in chunk.iter().enumerate() {
            let seq = (chunk_no * 1000 + i + 1) as u64;
            lb.insert(&seq.to_be_bytes(), e.bytes.as_slice());
            ib.insert(e.id.as_bytes(), &seq.to_be_bytes());
        }
        log.apply_batch(lb)?;
        ids.apply_batch(ib)?;
        db.flush()?;
    }
    Ok(Row {
        what: "raw: sled key per event + id index tree, batch 1000 + flush".into(),
        rate: rate(events.len(), started.elapsed()),
        note: "the naive layout (no fsync)".into(),
    })
}

/// The building block plaint's log stores events' bytes with: appends of 1,000-event
/// records to one file, each made durable with `fdatasync`.
fn bare_file(events: &[demo::DemoEvent]) -> anyhow::Result<Row> {
    use std::io::Write;
    let dir = tempfile::tempdir()?;
    let mut file = std::fs::File::create(dir.path().join("bare.seg"))?;
    let started = Instant::now();
    let mut record = Vec::new();
    for chunk in events.chunks(1000) {
        record.clear();
        for e in chunk {
            record.extend_from_slice(&e.bytes);
        }
        file.write_all(&record)?;
        file.sync_data()?;
    }
    Ok(Row {
        what: "raw: file append, 1000-event records + fdatasync".into(),
        rate: rate(events.len(), started.elapsed()),
        note: "where the log keeps events' bytes".into(),
    })
}

async fn publish_all(
    js: &jetstream::Context,
    events: &[demo::DemoEvent],
    prefix: &str,
) -> anyhow::Result<Row> {
    let mut publisher = Publisher::new(js.clone(), 1024);
    let started = Instant::now();
    for e in events {
        let subject = e.subject.replacen("complaints.", &format!("{prefix}."), 1);
        publisher
            .send(subject, Some(&e.id), Bytes::from(e.bytes.clone()))
            .await?;
    }
    let stats = publisher.finish().await?;
    Ok(Row {
        what: "raw: JetStream async publish, window 1024, Nats-Msg-Id".into(),
        rate: rate(stats.accepted as usize, started.elapsed()),
        note: format!("{} accepted", stats.accepted),
    })
}

async fn bare_consume(js: &jetstream::Context, n: usize) -> anyhow::Result<Row> {
    let stream = js.get_stream("COMPLAINTS").await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("bench-bare".into()),
            ack_policy: jetstream::consumer::AckPolicy::All,
            max_ack_pending: 50_000,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut seen = 0usize;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(1000)
        .messages()
        .await?
        .ready_chunks(1000);
    while seen < n {
        let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .context("bare consume stalled")?
        else {
            break;
        };
        let last = chunk
            .into_iter()
            .filter_map(Result::ok)
            .inspect(|_| seen += 1)
            .last();
        if let Some(last) = last {
            last.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    Ok(Row {
        what: "raw: JetStream pull consume, batch 1000, one AckAll per batch".into(),
        rate: rate(seen, started.elapsed()),
        note: String::new(),
    })
}

/// A topology with streams of its own (subject prefix `prefix`, streams named after
/// `stream`), so a run starts from an empty stream whatever ran before it.
fn own_streams(config: &Config, prefix: &str, stream: &str) -> plaint_ingest::Topology {
    plaint_ingest::Topology {
        subject_prefix: prefix.into(),
        events_stream: stream.into(),
        rejected_stream: format!("{stream}_REJECTED"),
        alerts_stream: format!("{stream}_ALERTS"),
        ..config.topology.clone()
    }
}

async fn durable_ingest(
    js: &jetstream::Context,
    config: &Config,
    data: &std::path::Path,
    durability: Durability,
    n: usize,
) -> anyhow::Result<Row> {
    let log = Log::open(
        data,
        LogOptions {
            durability,
            ..Default::default()
        },
    )?;
    let mut topology = config.topology.clone();
    topology.consumer = format!("bench-ingest-{durability:?}").to_lowercase();
    let ingester =
        plaint_ingest::Ingester::new(log.clone(), js.clone(), topology, config.ingest.options());
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(ingester.run(shutdown.clone()));
    let mut tail = log.subscribe();
    while log.last_seq() < n as u64 {
        tokio::time::timeout(Duration::from_secs(60), tail.changed())
            .await
            .context("ingest stalled")??;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    task.await??;
    Ok(Row {
        what: format!("plaint: durable ingest JetStream → log, durability {durability:?}")
            .to_lowercase(),
        rate: rate(n, elapsed),
        note: "acked only after the batch is durable".into(),
    })
}

/// Durable ingest of `valid` events with one malformed message after each: the rate of
/// valid events, to compare with the clean run (the 2x bound of the reliability issue).
async fn poison_flood(
    js: &jetstream::Context,
    config: &Config,
    dir: &std::path::Path,
    valid: &[demo::DemoEvent],
) -> anyhow::Result<Row> {
    let topology = own_streams(config, "benchpoison", "BENCH_POISON");
    plaint_ingest::ensure_streams(js, &topology).await?;
    let mut publisher = Publisher::new(js.clone(), 1024);
    for (i, e) in valid.iter().enumerate() {
        let subject = e.subject.replacen("complaints.", "benchpoison.", 1);
        publisher
            .send(subject.clone(), Some(&e.id), Bytes::from(e.bytes.clone()))
            .await?;
        let poison = Bytes::from_static(b"{\"specversion\": oops");
        publisher
            .send(subject, Some(&format!("poison-{i}")), poison)
            .await?;
    }
    publisher.finish().await?;
    let log = Log::open(dir.join("poison.sled"), LogOptions::default())?;
    let ingester =
        plaint_ingest::Ingester::new(log.clone(), js.clone(), topology, config.ingest.options());
    let metrics = ingester.metrics();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(ingester.run(shutdown.clone()));
    let target = valid.len() as u64;
    while log.last_seq() < target || metrics.snapshot().rejected.values().sum::<u64>() < target {
        tokio::time::sleep(Duration::from_millis(5)).await;
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "poison flood stalled"
        );
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    task.await??;
    Ok(Row {
        what: "plaint: durable ingest, one poison message per valid event (fsync)".into(),
        rate: rate(valid.len(), elapsed),
        note: format!("valid events/s; {target} rejections stored too"),
    })
}

async fn latency(
    js: &jetstream::Context,
    config: &Config,
    dir: &std::path::Path,
    offered: u64,
    seconds: u64,
) -> anyhow::Result<Vec<Row>> {
    let count = (offered * seconds) as usize;
    let topology = own_streams(config, "benchlat", "BENCH_LATENCY");
    plaint_ingest::ensure_streams(js, &topology).await?;
    let log = Log::open(dir.join("latency.sled"), LogOptions::default())?;
    let ingester =
        plaint_ingest::Ingester::new(log.clone(), js.clone(), topology, config.ingest.options());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ingester.run(shutdown.clone()));
    let events = events_for(count);
    let sent_at: Arc<std::sync::Mutex<Vec<Instant>>> =
        Arc::new(std::sync::Mutex::new(Vec::with_capacity(count)));
    // Watch commits: each commit makes seqs up to the new head durable.
    let watcher = {
        let log = log.clone();
        let sent_at = sent_at.clone();
        let total = events.len() as u64;
        tokio::spawn(async move {
            let mut tail = log.subscribe();
            let mut latencies = Vec::with_capacity(total as usize);
            let mut done = 0u64;
            while done < total {
                if tokio::time::timeout(Duration::from_secs(30), tail.changed())
                    .await
                    .is_err()
                {
                    break;
                }
                let head = *tail.borrow_and_update();
                let now = Instant::now();
                let sent = sent_at.lock().unwrap();
                for seq in done + 1..=head.min(sent.len() as u64) {
                    latencies.push(now.duration_since(sent[(seq - 1) as usize]));
                }
                done = head;
            }
            latencies
        })
    };
    let mut publisher = Publisher::new(js.clone(), 4096);
    let started = Instant::now();
    for (i, e) in events.iter().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / offered as f64);
        tokio::time::sleep_until(due.into()).await;
        sent_at.lock().unwrap().push(Instant::now());
        let subject = e.subject.replacen("complaints.", "benchlat.", 1);
        publisher
            .send(subject, Some(&e.id), Bytes::from(e.bytes.clone()))
            .await?;
    }
    publisher.finish().await?;
    let mut latencies = watcher.await?;
    shutdown.cancel();
    task.await??;
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(vec![Row {
        what: format!("plaint: publish → durable latency at {offered}/s offered (fsync)"),
        rate: offered as f64,
        note: format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} events",
            pct(0.5),
            pct(0.99),
            pct(1.0),
            latencies.len()
        ),
    }])
}

fn append_direct(log: &Log, events: &[demo::DemoEvent]) -> anyhow::Result<Row> {
    let started = Instant::now();
    let mut appended = 0;
    for chunk in events.chunks(1000) {
        let decoded: Vec<_> = chunk
            .iter()
            .map(|e| plaint_events::decode_stored(&e.bytes))
            .collect();
        let writer = log.writer();
        let mut batch = writer.begin();
        for (e, d) in chunk.iter().zip(&decoded) {
            let Ok(event) = d else { continue };
            let outcome = writer.stage(
                &mut batch,
                plaint_log::Candidate {
                    event,
                    bytes: &e.bytes,
                    subject_region: None,
                    expected: plaint_log::ExpectedVersion::Any,
                },
            )?;
            if matches!(outcome, plaint_log::Outcome::Appended(_)) {
                appended += 1;
            }
        }
        writer.commit(batch)?;
    }
    Ok(Row {
        what: "plaint: log append without NATS (decode + stage + commit), flush".into(),
        rate: rate(appended, started.elapsed()),
        note: "segment per batch + in-memory indexes".into(),
    })
}

/// Reopens the log in a fresh process (`plaint bench-open`): the head check, the last
/// segment's chain check and the in-memory indexes rebuilt from the index records. A
/// process of its own, so its resident memory is the open log's and nothing else's.
fn cold_start(path: &std::path::Path) -> anyhow::Result<Row> {
    // Let sled's flusher release the previous handle's lock.
    std::thread::sleep(Duration::from_millis(500));
    let output = std::process::Command::new(std::env::current_exe()?)
        .arg("bench-open")
        .arg(path)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "bench-open failed (its error is printed above)"
    );
    let measured: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let n = measured["events"].as_u64().unwrap_or(0);
    let seconds = measured["seconds"].as_f64().unwrap_or(0.0);
    let resident = measured["resident_bytes"].as_u64().unwrap_or(0);
    let peak = measured["peak_resident_bytes"].as_u64().unwrap_or(0);
    Ok(Row {
        what: "plaint: cold start, open the log and load its indexes".into(),
        rate: n as f64 / seconds.max(1e-9),
        note: format!(
            "{n} events in {seconds:.2} s; process resident {} MiB ({} B/event), peak {} MiB",
            resident >> 20,
            resident / n.max(1),
            peak >> 20
        ),
    })
}

/// The body of `plaint bench-open DIR`.
pub fn open_and_measure(dir: &std::path::Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let log = Log::open(dir, LogOptions::default())?;
    let seconds = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    println!(
        "{}",
        serde_json::json!({
            "events": log.last_seq(),
            "seconds": seconds,
            "resident_bytes": kib("VmRSS:") * 1024,
            "peak_resident_bytes": kib("VmHWM:") * 1024,
        })
    );
    Ok(())
}

fn replay(log: &Log) -> anyhow::Result<Row> {
    let started = Instant::now();
    let filter = plaint_service::replay::ReplayFilter::default();
    let mut start = 1;
    let mut events = 0u64;
    let mut bytes = 0usize;
    loop {
        let page = plaint_service::replay::page(log, &filter, start, 4 << 20)?;
        events += page.events;
        bytes += page.lines.len();
        match page.next_seq {
            Some(next) => start = next,
            None => break,
        }
    }
    Ok(Row {
        what: "plaint: offline replay to a sink (NDJSON lines built)".into(),
        rate: rate(events as usize, started.elapsed()),
        note: format!("{} MB of output", bytes / 1_000_000),
    })
}

/// CPU seconds used by this process so far (all threads), from `/proc/self/stat`.
fn process_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // Clock ticks; 100 per second on every Linux this runs on.
    Some((utime + stime) / 100.0)
}

async fn rebuilds(log: &Log, args: &BenchArgs) -> anyhow::Result<Vec<Row>> {
    // The appended log is still being written back by sled; flushed here, that work is not
    // counted in the first rebuild's time and CPU.
    log.sync()?;
    let config = Config::default();
    let wanted =
        |name: &str| args.projectors.is_empty() || args.projectors.iter().any(|p| p == name);
    let mut rows = Vec::new();
    for name in ["complaints", "sla", "escalation", "trends"] {
        if !wanted(name) {
            continue;
        }
        let mut rates = Vec::new();
        let mut cpu = Vec::new();
        let mut events = 0;
        for _ in 0..args.rebuild_runs.max(1) {
            let p = plaint_service::serve_projectors(&config)?;
            // Cleared here so that the rebuild's own clear, outside its clock, costs no CPU.
            let store = plaint_runner::ViewStore::open(
                log.path(),
                name,
                plaint_runner::ViewStore::DEFAULT_CACHE_BYTES,
            )?;
            store.clear()?;
            let cpu_before = process_cpu();
            let opts = plaint_runner::RunnerOptions::default();
            let report = match name {
                "complaints" => {
                    let fresh = plaint_complaints::ComplaintsProjector::new();
                    plaint_runner::rebuild(log, fresh, opts, |_| {}).await?
                }
                "sla" => plaint_runner::rebuild(log, p.sla, opts, |_| {}).await?,
                "escalation" => plaint_runner::rebuild(log, p.escalation, opts, |_| {}).await?,
                _ => plaint_runner::rebuild(log, p.trends, opts, |_| {}).await?,
            };
            rates.push(report.events_per_second);
            events = report.events;
            let cpu_after = process_cpu();
            // The rebuild ends by digesting the view after its clock stopped; a second
            // digest measures that share of the CPU time, to take it out.
            plaint_runner::view_digest(log, name)?;
            if let (Some(before), Some(after), Some(digested)) =
                (cpu_before, cpu_after, process_cpu())
            {
                let rebuilding = (after - before) - (digested - after);
                cpu.push(rebuilding / report.events.max(1) as f64 * 1e6);
            }
        }
        rates.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        let runs = if rates.len() > 1 {
            format!(
                "; median of {} runs, range {:.0}–{:.0}",
                rates.len(),
                rates[0],
                rates[rates.len() - 1]
            )
        } else {
            String::new()
        };
        rows.push(Row {
            what: format!("plaint: rebuild of the {name} view (decode + apply + commit)"),
            rate: rates[rates.len() / 2],
            note: match cpu.get(cpu.len() / 2) {
                // CPU time is steadier than the rate when other work shares the cores.
                Some(us) => format!("{events} events; {us:.2} µs CPU per event{runs}"),
                None => format!("{events} events{runs}"),
            },
        });
    }
    Ok(rows)
}
