//! Crash and fault tests of the `plaint` binary, run as real processes against a real
//! `nats-server -js`.
//!
//! - `kill_serve_at_random_moments`: `kill -9` of `plaint serve` at seeded random moments
//!   while a publisher pushes events at full speed; every event JetStream acknowledged is in
//!   the log exactly once, the log verifies, and every view equals a fresh rebuild.
//! - `nats_server_crashes_under_load`: `kill -9` of `nats-server` under load; serve
//!   reconnects by itself, logs the outage, answers `status` again, and loses nothing.
//! - `torn_last_segment_*`: a damaged last write makes `serve` refuse to start with a
//!   one-line cause naming `plaint repair`; repair, rebuild and redelivery bring every
//!   acknowledged event back exactly once.
//! - `write_errors_lose_nothing`: serve runs under `prlimit --fsize` so that sled's writes
//!   fail (EFBIG, the per-process stand-in for a full disk); nothing unwritten is
//!   acknowledged, and once the disk accepts writes again ingest comes back, by itself or
//!   after serve exits with a one-line cause and is restarted (as a supervisor would). What
//!   serve may not do is stay up and retry for ever.
//!
//! Soak (the kill loop only, with more kills; a release build ingests faster):
//!
//! ```text
//! PLAINT_SOAK_KILLS=50 cargo test -p plaint --test faults --release -- kill_serve --nocapture
//! ```
//!
//! `PLAINT_SOAK_KILLS` is the number of kills (default 5), `PLAINT_SOAK_EVENTS` caps the
//! events published at full speed until the last kill (default 6,000 per kill), and
//! `PLAINT_FAULT_SEED` picks the moments (default 1). Each test prints its figures.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, consumer::pull};
use bytes::Bytes;
use futures::{stream::FuturesUnordered, StreamExt};
use plaint_testkit::{fixtures, NatsServer};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Every single wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(30);
/// Draining a backlog after faults may take longer than one ordinary wait (debug build,
/// two shared cores, redelivery after `ack_wait`).
const DRAIN_WAIT: Duration = Duration::from_secs(120);
/// Short enough that messages delivered to a killed serve come back quickly.
const ACK_WAIT_SECONDS: u64 = 5;
const REGION: &str = "eu";
const PREFIX: &str = "complaints";

fn plaint_bin() -> &'static str {
    env!("CARGO_BIN_EXE_plaint")
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A nats-server, a data directory and (when started) a `plaint serve` process whose
/// stderr is appended to `<data>/serve.stderr`.
struct Node {
    nats: NatsServer,
    dir: tempfile::TempDir,
    client: async_nats::Client,
    js: jetstream::Context,
    serve: Option<Child>,
    serve_starts: u32,
}

impl Node {
    async fn new() -> Node {
        let nats = NatsServer::start();
        let dir = tempfile::tempdir().expect("temp data dir");
        std::fs::write(
            dir.path().join("plaint.toml"),
            format!(
                "# process crashes only: fsync adds nothing to a kill -9 test\n\
                 durability = \"flush\"\n\n[ingest]\nack_wait_seconds = {ACK_WAIT_SECONDS}\n"
            ),
        )
        .expect("write config");
        let client = tokio::time::timeout(WAIT, async_nats::connect(nats.url()))
            .await
            .expect("connect in time")
            .expect("connect to nats");
        let js = jetstream::new(client.clone());
        // The publisher needs the stream before serve has created it.
        tokio::time::timeout(
            WAIT,
            plaint_ingest::ensure_streams(&js, &plaint_ingest::Topology::default()),
        )
        .await
        .expect("streams in time")
        .expect("streams");
        Node {
            nats,
            dir,
            client,
            js,
            serve: None,
            serve_starts: 0,
        }
    }

    fn data(&self) -> &Path {
        self.dir.path()
    }

    fn db_path(&self) -> PathBuf {
        self.data().join("plaint.sled")
    }

    fn stderr_path(&self) -> PathBuf {
        self.data().join("serve.stderr")
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    fn stderr_tail(&self) -> String {
        let text = self.stderr_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// The arguments of `plaint serve` for this node.
    fn serve_args(&self) -> Vec<String> {
        let config = self.data().join("plaint.toml");
        vec![
            "serve".into(),
            "--nats".into(),
            self.nats.url(),
            "--data".into(),
            self.data().display().to_string(),
            "--config".into(),
            config.display().to_string(),
        ]
    }

    fn spawn_serve(&mut self) {
        let command = {
            let mut c = Command::new(plaint_bin());
            c.args(self.serve_args());
            c
        };
        self.spawn_serve_with(command);
    }

    fn spawn_serve_with(&mut self, mut command: Command) {
        assert!(self.serve.is_none(), "serve is already running");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("serve stderr file");
        self.serve_starts += 1;
        let child = command
            .env("NO_COLOR", "1")
            .env_remove("PLAINT_DATA")
            .env_remove("PLAINT_NATS_URL")
            .env_remove("PLAINT_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn plaint serve");
        self.serve = Some(child);
    }

    fn serve_pid(&self) -> u32 {
        self.serve.as_ref().expect("serve running").id()
    }

    /// Waits until `plaint status --json` (a separate process, over NATS) answers. Panics if
    /// serve exits first.
    async fn wait_ready(&mut self) -> Duration {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                panic!(
                    "plaint serve exited ({status}) before it answered; stderr:\n{}",
                    self.stderr_tail()
                );
            }
            let out = self
                .cli(&["status", "--json", "--nats", &self.nats.url()])
                .await;
            if out.status.success() {
                let status: Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
                assert_eq!(
                    status["mode"], "server",
                    "status comes from the running server"
                );
                return started.elapsed();
            }
            assert!(
                started.elapsed() < WAIT,
                "plaint serve did not answer `plaint status` within {WAIT:?}; last answer: {}; serve stderr:\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                self.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The exit status if serve has ended (it is reaped and forgotten), None while it runs
    /// or when none was started.
    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.serve.as_mut()?.try_wait().expect("try_wait")?;
        self.serve = None;
        Some(status)
    }

    /// kill -9, as a crash would.
    fn kill9(&mut self) {
        let mut child = self.serve.take().expect("serve running");
        child.kill().expect("kill -9 plaint serve");
        child.wait().expect("reap plaint serve");
    }

    /// Waits for serve to exit by itself.
    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            assert!(self.serve.is_some(), "serve running");
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "plaint serve did not exit within {within:?}; stderr:\n{}",
                self.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for a clean exit (batch finished, log flushed).
    async fn stop(&mut self) {
        let pid = self.serve_pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let status = self.wait_exit(WAIT).await;
        assert!(
            status.success(),
            "serve exits 0 on SIGTERM, got {status}; stderr:\n{}",
            self.stderr_tail()
        );
    }

    /// Runs the plaint CLI (not serve) to completion, bounded.
    async fn cli(&self, args: &[&str]) -> Output {
        let run = tokio::process::Command::new(plaint_bin())
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("PLAINT_DATA")
            .env_remove("PLAINT_NATS_URL")
            .env_remove("PLAINT_CONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(WAIT, run)
            .await
            .unwrap_or_else(|_| {
                panic!("`plaint {}` did not finish within {WAIT:?}", args.join(" "))
            })
            .expect("run plaint")
    }

    /// Runs an offline command against the data directory and insists that it succeeds.
    async fn cli_offline_ok(&self, args: &[&str]) -> String {
        let data = self.data().display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data", &data]);
        let out = self.cli(&all).await;
        assert!(
            out.status.success(),
            "`plaint {}` failed ({}): {}",
            all.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    async fn api(&self, command: &str, request: Value) -> Option<Value> {
        let reply = plaint_service::api::call(
            &self.client,
            PREFIX,
            command,
            Bytes::from(serde_json::to_vec(&request).expect("json")),
            Duration::from_secs(5),
        )
        .await
        .ok()?;
        serde_json::from_slice(&reply.body).ok()
    }

    /// The ingest consumer's (pending, ack pending) counts, if NATS answers.
    async fn consumer_backlog(&self) -> Option<(u64, usize)> {
        let topology = plaint_ingest::Topology::default();
        let info = tokio::time::timeout(Duration::from_secs(5), async {
            let stream = self.js.get_stream(&topology.events_stream).await.ok()?;
            let mut consumer = stream
                .get_consumer::<pull::Config>(&topology.consumer)
                .await
                .ok()?;
            consumer.info().await.ok().cloned()
        })
        .await
        .ok()??;
        Some((info.num_pending, info.num_ack_pending))
    }

    /// Waits until JetStream has nothing left for the ingest consumer, every projector has
    /// caught up with the log, and the head has stopped moving. Returns the last status.
    async fn wait_drained(&self) -> Value {
        let started = Instant::now();
        let mut last_head = None;
        loop {
            let backlog = self.consumer_backlog().await;
            let status = self.api("status", json!({})).await;
            if let (Some((0, 0)), Some(status)) = (backlog, &status) {
                let head = status["log"]["last_seq"].as_u64();
                let caught_up = status["projectors"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().all(|p| p["lag"] == 0));
                if caught_up && head.is_some() && head == last_head {
                    return status.clone();
                }
                last_head = head;
            } else {
                last_head = None;
            }
            assert!(
                started.elapsed() < DRAIN_WAIT,
                "ingest did not drain within {DRAIN_WAIT:?}: consumer (pending, ack pending) {backlog:?}, status {}; serve stderr:\n{}",
                status.unwrap_or(Value::Null),
                self.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Live digests of every projector the server runs (as its status lists them), from
    /// the running server's API.
    async fn live_digests(&self) -> BTreeMap<String, (String, u64)> {
        let status = self
            .api("status", json!({}))
            .await
            .expect("status from the running server");
        let names: Vec<String> = status["projectors"]
            .as_array()
            .expect("projectors")
            .iter()
            .map(|p| p["name"].as_str().expect("projector name").to_owned())
            .collect();
        assert!(!names.is_empty(), "the server runs projectors");
        let mut out = BTreeMap::new();
        for name in &names {
            let reply = self
                .api("digest", json!({"projector": name}))
                .await
                .unwrap_or_else(|| panic!("digest of {name} from the running server"));
            let digest = reply["digest"].as_str().expect("digest").to_owned();
            let checkpoint = reply["checkpoint"].as_u64().expect("checkpoint");
            out.insert(name.clone(), (digest, checkpoint));
        }
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.serve.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the publisher did.
#[derive(Debug, Default)]
struct PublishFigures {
    /// Ids whose publish JetStream acknowledged.
    acked: Vec<String>,
    attempts: u64,
    retries: u64,
    /// Events given up on (never acknowledged within their deadline).
    abandoned: u64,
    /// When the last of `limit` events was acknowledged (or given up on).
    done_at: Option<Instant>,
}

impl PublishFigures {
    fn record(&mut self, (id, attempts, acked): (String, u64, bool)) {
        self.attempts += attempts;
        self.retries += attempts - 1;
        if acked {
            self.acked.push(id);
        } else {
            self.abandoned += 1;
        }
    }
}

/// A task that publishes up to `limit` `complaint.filed` events for distinct complaints,
/// at full speed or at most `per_second`, `window` acks outstanding, each retried (same
/// id, same bytes) until acknowledged.
struct Publisher {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<PublishFigures>,
}

impl Publisher {
    fn start(js: jetstream::Context, run: &str, limit: u64, per_second: Option<u64>) -> Publisher {
        const WINDOW: usize = 256;
        let stop = CancellationToken::new();
        let token = stop.clone();
        let run = run.to_owned();
        let task = tokio::spawn(async move {
            let mut figures = PublishFigures::default();
            let mut in_flight = FuturesUnordered::new();
            let mut next = 0u64;
            let started = tokio::time::Instant::now();
            loop {
                let generating = !token.is_cancelled() && next < limit;
                if generating && in_flight.len() < WINDOW {
                    if let Some(rate) = per_second {
                        let due = started + Duration::from_secs_f64(next as f64 / rate as f64);
                        if due > tokio::time::Instant::now() {
                            // Pace, but keep collecting acks meanwhile.
                            tokio::select! {
                                _ = tokio::time::sleep_until(due) => {}
                                Some(done) = in_flight.next() => figures.record(done),
                            }
                            continue;
                        }
                    }
                    let complaint = format!("{run}-{next}");
                    next += 1;
                    let event =
                        fixtures::filed(&complaint, REGION, "delivery", jiff::Timestamp::now());
                    let id = event["id"].as_str().expect("id").to_owned();
                    let subject = fixtures::subject(REGION, &event);
                    let payload = Bytes::from(fixtures::bytes(&event));
                    in_flight.push(publish_until_acked(js.clone(), subject, id, payload));
                    continue;
                }
                match in_flight.next().await {
                    Some(done) => figures.record(done),
                    None if generating => {}
                    None => {
                        figures.done_at = Some(Instant::now());
                        return figures;
                    }
                }
            }
        });
        Publisher { stop, task }
    }

    /// Stops generating events, waits for those in flight, and returns the figures.
    async fn finish(self) -> PublishFigures {
        self.stop.cancel();
        self.completed().await
    }

    /// Waits until all `limit` events were published (or given up on).
    async fn completed(self) -> PublishFigures {
        tokio::time::timeout(DRAIN_WAIT, self.task)
            .await
            .expect("the publisher finishes its window in time")
            .expect("publisher task")
    }
}

/// Publishes one event with `Nats-Msg-Id` until JetStream acknowledges it (a retry after a
/// lost ack is a duplicate to JetStream and to the log, never a second event). Gives up
/// after two minutes. Returns (id, attempts, acknowledged).
async fn publish_until_acked(
    js: jetstream::Context,
    subject: String,
    id: String,
    payload: Bytes,
) -> (String, u64, bool) {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        let attempt = tokio::time::timeout(Duration::from_secs(5), async {
            js.publish_with_headers(subject.clone(), headers, payload.clone())
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        if let Ok(Ok(_)) = attempt {
            return (id, attempts, true);
        }
        if started.elapsed() > Duration::from_secs(120) {
            return (id, attempts, false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the log holds, read offline after serve stopped.
#[derive(Debug)]
struct LogFigures {
    entries: u64,
    /// How many times each event id occurs.
    ids: HashMap<String, u32>,
    digests: BTreeMap<String, (String, u64)>,
}

fn read_log(db_path: &Path, projectors: &[&String]) -> LogFigures {
    let options = plaint_log::LogOptions {
        durability: plaint_log::Durability::Flush,
        ..Default::default()
    };
    // The process has exited, so sled's file lock is free; retry briefly all the same.
    let started = Instant::now();
    let log = loop {
        match plaint_log::Log::open(db_path, options.clone()) {
            Ok(log) => break log,
            Err(e) if started.elapsed() < WAIT => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot open the log offline: {e}"),
        }
    };
    let last = log.last_seq();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut entries = 0;
    for item in log.read_range(1, last) {
        let (seq, bytes) = item.expect("read the log");
        let event: Value = serde_json::from_slice(&bytes).expect("stored events are JSON");
        let id = event["id"]
            .as_str()
            .unwrap_or_else(|| panic!("entry {seq} has an id"))
            .to_owned();
        *ids.entry(id).or_default() += 1;
        entries += 1;
    }
    assert_eq!(entries, last, "the log is gapless from 1 to its head");
    let mut digests = BTreeMap::new();
    for name in projectors {
        let (digest, checkpoint) = plaint_runner::view_digest(&log, name).expect("view digest");
        digests.insert((*name).clone(), (digest, checkpoint));
    }
    LogFigures {
        entries,
        ids,
        digests,
    }
}

/// The end-of-test checks shared by every scenario, with serve stopped: every acknowledged
/// event is in the log exactly once, the log verifies, every view as served equals its
/// stored state and a fresh rebuild. Returns (entries, acked ids missing, duplicates).
async fn check_everything(
    node: &Node,
    acked: &[String],
    live: &BTreeMap<String, (String, u64)>,
) -> (u64, usize, usize) {
    let figures = read_log(&node.db_path(), &live.keys().collect::<Vec<_>>());
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !figures.ids.contains_key(*id))
        .collect();
    let duplicates = figures.ids.values().filter(|n| **n > 1).count();
    assert_eq!(duplicates, 0, "no event id is in the log twice");
    if !missing.is_empty() {
        // Where the losses sit in publish order: whole runs point at batches that were
        // delivered to a serve that died, then acknowledged by a later batch's AckAll.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (i, id) in acked.iter().enumerate() {
            if figures.ids.contains_key(id) {
                continue;
            }
            match runs.last_mut() {
                Some((_, end)) if *end + 1 == i => *end = i,
                _ => runs.push((i, i)),
            }
        }
        panic!(
            "{} of {} acknowledged events are not in the log, in {} runs by publish order \
             (first runs, as index ranges: {:?}; e.g. ids {:?})",
            missing.len(),
            acked.len(),
            runs.len(),
            runs.iter().take(8).collect::<Vec<_>>(),
            missing.iter().take(3).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        figures.digests, *live,
        "the views stored on disk are the ones the server answered with before it stopped"
    );
    let verify = node.cli_offline_ok(&["verify"]).await;
    assert!(verify.starts_with("ok:"), "plaint verify: {verify}");
    let rebuilt = node.cli_offline_ok(&["rebuild", "all", "--json"]).await;
    let mut rebuilt_digests = BTreeMap::new();
    for line in rebuilt.lines().filter(|l| !l.trim().is_empty()) {
        let report: Value = serde_json::from_str(line).expect("rebuild --json lines");
        rebuilt_digests.insert(
            report["projector"].as_str().expect("projector").to_owned(),
            (
                report["digest"].as_str().expect("digest").to_owned(),
                report["checkpoint"].as_u64().expect("checkpoint"),
            ),
        );
    }
    assert_eq!(
        rebuilt_digests, *live,
        "every view equals a fresh rebuild from the log"
    );
    (figures.entries, missing.len(), duplicates)
}

/// kill -9 of `plaint serve` at seeded random moments under a full-speed publisher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_serve_at_random_moments() {
    let kills = env_number("PLAINT_SOAK_KILLS", 5);
    let limit = env_number("PLAINT_SOAK_EVENTS", kills * 6000);
    let seed = env_number("PLAINT_FAULT_SEED", 1);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let mut node = Node::new().await;
    node.spawn_serve();
    node.wait_ready().await;
    let publisher = Publisher::start(node.js.clone(), "kill-serve", limit, None);

    let mut early_kills = 0;
    let mut ready_times = Vec::new();
    let mut kill_times = Vec::new();
    // The log head seen just before each kill (None: serve did not answer yet).
    let mut heads_at_kills = Vec::new();
    // The first kill hits a serve that is up; after that, a quarter of the restarts are
    // killed again during start-up (log open, projector restore, catch-up), before they
    // answer `status`.
    let mut during_start_up = false;
    for kill in 0..kills {
        let delay = if during_start_up {
            early_kills += 1;
            Duration::from_millis(rng.random_range(0..400))
        } else {
            Duration::from_millis(rng.random_range(50..1500))
        };
        tokio::time::sleep(delay).await;
        heads_at_kills.push(
            node.api("status", json!({}))
                .await
                .and_then(|s| s["log"]["last_seq"].as_u64()),
        );
        kill_times.push(Instant::now());
        node.kill9();
        node.spawn_serve();
        during_start_up = kill + 1 < kills && rng.random_bool(0.25);
        if !during_start_up {
            ready_times.push(node.wait_ready().await);
        }
    }
    // Publishing stops with the last kill; then the last serve drains the backlog.
    let published = publisher.finish().await;
    let status = node.wait_drained().await;
    let live = node.live_digests().await;
    node.stop().await;
    let (entries, missing, duplicates) = check_everything(&node, &published.acked, &live).await;

    let slowest_ready = ready_times.iter().max().copied().unwrap_or_default();
    let publishing_done = published.done_at.unwrap_or_else(Instant::now);
    let kills_while_publishing = kill_times.iter().filter(|t| **t < publishing_done).count();
    println!(
        "kill_serve_at_random_moments (seed {seed}): {kills} kills survived ({early_kills} during start-up, \
         {kills_while_publishing} while the publisher was running), log head just before each kill {heads_at_kills:?}, \
         {} serve starts, slowest restart-to-status {slowest_ready:.2?}; events attempted {} (retries {}), \
         acked {}, abandoned {}; log entries {entries}, acked missing {missing}, duplicates {duplicates}; \
         ingest (last serve) {}; {:.1?} in all",
        node.serve_starts,
        published.attempts,
        published.retries,
        published.acked.len(),
        published.abandoned,
        status["ingest"],
        started.elapsed(),
    );
}

/// kill -9 of nats-server (same port, same store) while serve ingests under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_crashes_under_load() {
    let outages = 3;
    let seed = env_number("PLAINT_FAULT_SEED", 1);
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(2));
    let started = Instant::now();

    let mut node = Node::new().await;
    node.spawn_serve();
    node.wait_ready().await;
    let publisher = Publisher::start(node.js.clone(), "nats-crash", 60_000, Some(2_000));

    let mut answered_after = Vec::new();
    for _ in 0..outages {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        tokio::task::block_in_place(|| node.nats.kill());
        // The outage lasts a moment; serve and the publisher see connection errors.
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1000))).await;
        let restarted_at = Instant::now();
        tokio::task::block_in_place(|| node.nats.restart());
        // Serve must come back by itself: no restart of serve here.
        answered_after.push(restarted_at.elapsed() + node.wait_ready().await);
    }
    let published = publisher.finish().await;
    let status = node.wait_drained().await;
    let live = node.live_digests().await;
    node.stop().await;
    assert_eq!(node.serve_starts, 1, "serve was never restarted");
    let stderr = node.stderr_text();
    let lost_lines = stderr
        .lines()
        .filter(|l| l.contains("NATS connection lost; reconnecting"))
        .count();
    assert!(
        lost_lines >= outages,
        "serve's log names the NATS outage (\"NATS connection lost; reconnecting\"); stderr:\n{}",
        node.stderr_tail()
    );
    let (entries, missing, duplicates) = check_everything(&node, &published.acked, &live).await;

    println!(
        "nats_server_crashes_under_load (seed {seed}): {outages} nats-server kills survived, \
         status answered again after {answered_after:.2?} (from restart); \"connection lost\" logged {lost_lines} times; \
         events attempted {} (retries {}), acked {}, abandoned {}; log entries {entries}, acked missing {missing}, \
         duplicates {duplicates}; ingest {}; {:.1?} in all",
        published.attempts,
        published.retries,
        published.acked.len(),
        published.abandoned,
        status["ingest"],
        started.elapsed(),
    );
}

/// How a test damages the last write.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// One byte of the last segment's stored events flipped (a rotten write).
    FlipByteInLastSegment,
    /// The end of the last record (its index records) missing from its segment file (a
    /// torn write).
    CutLastRecordShort,
}

/// Damages the last segment of a stopped node's log, reading its location from sled and
/// writing to its segment file directly (the layout of `plaint_log::format`). Returns the
/// first sequence number of the damaged segment.
fn damage_last_segment(db_path: &Path, damage: Damage) -> u64 {
    use plaint_log::format;
    use std::os::unix::fs::FileExt;
    let (first_seq, location) = {
        let db = sled::open(db_path).expect("open sled directly");
        let tree = db.open_tree("log").expect("log tree");
        let (key, value) = tree
            .range(format::segment_key(0)..=format::segment_key(u64::MAX))
            .next_back()
            .expect("a last segment")
            .expect("read the last segment's location");
        let location = plaint_log::Location::decode(&value).expect("a location record");
        (format::seq_of_key(&key).expect("segment key"), location)
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format::segment_file(db_path, location.file))
        .expect("open the segment file");
    match damage {
        Damage::FlipByteInLastSegment => {
            // Near the end of the events: inside the last event's JSON.
            let at = location.meta_offset() - 3;
            let mut byte = [0u8; 1];
            file.read_exact_at(&mut byte, at).expect("read a byte");
            file.write_all_at(&[byte[0] ^ 0x20], at)
                .expect("write the damaged byte");
        }
        Damage::CutLastRecordShort => {
            file.set_len(location.end() - 20).expect("cut the file");
        }
    }
    file.sync_all().expect("sync the segment file");
    first_seq
}

async fn torn_last_segment(damage: Damage) {
    let started = Instant::now();
    let mut node = Node::new().await;
    node.spawn_serve();
    node.wait_ready().await;
    // Three rounds, so that the log has several segments and the damaged one is the last.
    let mut acked = Vec::new();
    for round in 0..3 {
        let figures = Publisher::start(node.js.clone(), &format!("torn-{round}"), 200, None)
            .completed()
            .await;
        assert_eq!(figures.abandoned, 0);
        acked.extend(figures.acked);
        node.wait_drained().await;
    }
    node.stop().await;
    let first_damaged = damage_last_segment(&node.db_path(), damage);

    // Serve refuses: non-zero exit, and a last line that names the way out.
    node.spawn_serve();
    let status = node.wait_exit(WAIT).await;
    assert!(!status.success(), "serve refuses a damaged log");
    let stderr = node.stderr_text();
    let cause = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(
        cause.starts_with("plaint: ") && cause.contains("plaint repair"),
        "serve's last stderr line is a one-line cause naming `plaint repair`; got:\n{}",
        node.stderr_tail()
    );

    // `plaint verify` agrees and points the same way.
    let data = node.data().display().to_string();
    let verify = node.cli(&["verify", "--data", &data]).await;
    let verify_err = String::from_utf8_lossy(&verify.stderr).trim().to_owned();
    assert!(!verify.status.success(), "verify fails on a damaged log");
    assert!(
        verify_err.contains("plaint repair"),
        "verify names `plaint repair`: {verify_err}"
    );

    // Repair: truncate before the damage and reset the consumer for redelivery.
    let nats = node.nats.url();
    let repaired = node
        .cli(&["repair", "--redeliver", "--data", &data, "--nats", &nats])
        .await;
    let repaired_out = String::from_utf8_lossy(&repaired.stdout).into_owned();
    assert!(
        repaired.status.success(),
        "plaint repair: {}{}",
        repaired_out,
        String::from_utf8_lossy(&repaired.stderr)
    );
    assert!(
        repaired_out.contains(&format!("kept entries 1..={}", first_damaged - 1)),
        "repair keeps everything before the damaged segment: {repaired_out}"
    );
    node.cli_offline_ok(&["verify"]).await;
    // As repair says: views may be ahead of the truncated log, so rebuild before serving.
    node.cli_offline_ok(&["rebuild", "all"]).await;

    node.spawn_serve();
    node.wait_ready().await;
    let status = node.wait_drained().await;
    let live = node.live_digests().await;
    node.stop().await;
    let (entries, missing, duplicates) = check_everything(&node, &acked, &live).await;

    // The suggested command must work as printed: `--data` takes the data directory
    // (holding plaint.sled), not the sled directory itself.
    assert!(
        cause.contains(&format!("plaint repair --data {data}"))
            && !cause.contains(&format!(
                "plaint repair --data {}",
                node.db_path().display()
            )),
        "the cause names `plaint repair --data <the data directory>`: {cause}"
    );
    println!(
        "torn_last_segment ({damage:?}): damaged segment from seq {first_damaged}; serve refused with: {cause}; \
         {}; acked {}, log entries {entries}, acked missing {missing}, duplicates {duplicates}; ingest {}; {:.1?}",
        repaired_out.lines().next().unwrap_or_default(),
        acked.len(),
        status["ingest"],
        started.elapsed(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_last_segment_flipped_byte() {
    torn_last_segment(Damage::FlipByteInLastSegment).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_last_segment_cut_short() {
    torn_last_segment(Damage::CutLastRecordShort).await;
}

/// Total size of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Write errors: serve runs with a file-size limit (`prlimit --fsize`), so once sled's
/// files reach it every write fails with EFBIG, as on a full disk. SIGXFSZ is ignored by
/// the shell that execs serve (an ignored signal stays ignored across exec), so the
/// process sees the error instead of being killed by the signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_errors_lose_nothing() {
    let prlimit_works = Command::new("prlimit")
        .args(["--fsize=unlimited", "--", "true"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(prlimit_works, "this test needs util-linux `prlimit`");
    let started = Instant::now();
    let limit_bytes = env_number("PLAINT_FAULT_FSIZE", 4 << 20);

    let mut node = Node::new().await;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; exec prlimit --fsize={limit_bytes}:unlimited -- \"$0\" \"$@\""
        ))
        .arg(plaint_bin())
        .args(node.serve_args());
    node.spawn_serve_with(command);
    node.wait_ready().await;
    let publisher = Publisher::start(node.js.clone(), "disk-full", 10_000, None);

    // Wait for the write error to show: in the status counters, or as an exit.
    let hit = Instant::now();
    let mut exited = None;
    loop {
        if let Some(status) = node.exited() {
            exited = Some(status);
            break;
        }
        if let Some(status) = node.api("status", json!({})).await {
            if status["ingest"]["storage_errors"].as_u64().unwrap_or(0) > 0 {
                break;
            }
        }
        assert!(
            hit.elapsed() < DRAIN_WAIT,
            "no write error within {DRAIN_WAIT:?} (data dir {} bytes, limit {limit_bytes}); raise the load or lower PLAINT_FAULT_FSIZE",
            dir_bytes(node.data())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error_after = hit.elapsed();
    let head_at_error = node
        .api("status", json!({}))
        .await
        .map(|s| s["log"]["last_seq"].clone());

    // The disk accepts writes again.
    let mut recovered_in_process = false;
    if let Some(child) = &node.serve {
        let pid = child.id().to_string();
        let raised = Command::new("prlimit")
            .args(["--pid", &pid, "--fsize=unlimited"])
            .status()
            .expect("run prlimit");
        assert!(raised.success(), "prlimit --pid {pid} --fsize=unlimited");
        // Either ingest resumes by itself, or serve gives up with a clear cause so that a
        // supervisor restarts it. What it may not do is neither: retry a dead handle forever.
        let resumed = Instant::now();
        loop {
            if let Some(status) = node.exited() {
                exited = Some(status);
                break;
            }
            let backlog = node.consumer_backlog().await;
            if let Some((0, 0)) = backlog {
                recovered_in_process = true;
                break;
            }
            assert!(
                resumed.elapsed() < WAIT,
                "after the file-size limit was lifted, serve neither resumed ingest nor exited within {WAIT:?} \
                 (consumer pending/ack pending {backlog:?}); stderr:\n{}",
                node.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let cause = node
        .stderr_text()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    if let Some(status) = exited {
        assert!(
            !status.success(),
            "serve reports a storage failure with a non-zero exit, got {status}"
        );
        assert!(
            cause.starts_with("plaint: "),
            "serve's last stderr line is a one-line cause; got:\n{}",
            node.stderr_tail()
        );
        // A supervisor restarts it, now without the limit.
        node.spawn_serve();
        node.wait_ready().await;
    }
    let published = publisher.finish().await;
    let status = node.wait_drained().await;
    let live = node.live_digests().await;
    node.stop().await;
    let (entries, missing, duplicates) = check_everything(&node, &published.acked, &live).await;

    let stderr = node.stderr_text();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains(" WARN"))
        .collect();
    println!(
        "serve's warnings and errors ({}):\n{}",
        errors.len(),
        errors
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!(
        "write_errors_lose_nothing: fsize limit {limit_bytes} B; write error seen after {error_after:.1?} \
         (log head then {head_at_error:?}); {}; events acked {}, abandoned {}; log entries {entries}, \
         acked missing {missing}, duplicates {duplicates}; ingest {}; {:.1?} in all",
        match exited {
            Some(s) if !recovered_in_process => format!("serve exited ({s}) with: {cause}; restarted"),
            _ => "ingest resumed in the same process".to_owned(),
        },
        published.acked.len(),
        published.abandoned,
        status["ingest"],
        started.elapsed(),
    );
}
