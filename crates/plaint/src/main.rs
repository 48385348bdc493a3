//! The `plaint` command line: parses flags, resolves config, and calls the library crates.
//! Only this crate knows the CLI.

mod bench;
mod demo;
mod publish;

use std::{
    io::{BufRead, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::{
    parser::ValueSource, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand,
};
use plaint_service::{api, replay::ReplayFilter, Api, ApiError, ApiReply, Config};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Decoding and projecting allocate many small strings per event; glibc's allocator spent
/// a third of rebuild time in malloc/free (perf), mimalloc's thread-local free lists do
/// not.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// plaint: an event-sourced complaint-tracking backend.
///
/// Upstream systems publish CloudEvents to NATS JetStream; `plaint serve` ingests them into
/// an append-only sled log and runs the complaints, SLA and escalation projectors over it.
/// Query commands talk to a running server over `complaints.api.>`; give `--data DIR`
/// (or PLAINT_DATA) to read a data directory offline instead.
#[derive(Debug, Parser)]
#[command(
    name = "plaint",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// NATS server URL.
    #[arg(
        long,
        global = true,
        env = "PLAINT_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats: String,
    /// Data directory (holds plaint.sled). Given explicitly, query commands read it offline.
    #[arg(long, global = true, env = "PLAINT_DATA", default_value = "./data")]
    data: PathBuf,
    /// Config file (TOML; see deploy/plaint.toml).
    #[arg(long, global = true, env = "PLAINT_CONFIG")]
    config: Option<PathBuf>,
    /// Machine-readable output: one JSON document, or NDJSON for streams.
    #[arg(long, global = true)]
    json: bool,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `plaint_ingest=debug`.
    #[arg(long, global = true, env = "PLAINT_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest from JetStream, run the projectors and serve the API until SIGINT/SIGTERM.
    Serve,
    /// Publish NDJSON events (one CloudEvent per line, or replay lines) to JetStream and wait for the acks.
    Publish(PublishArgs),
    /// Print the log (filtered) as NDJSON `{"seq": N, "event": ...}`, or republish it.
    Replay(ReplayArgs),
    /// Drop a projector's view and rebuild it from the log (offline: stop `serve` first).
    Rebuild {
        /// complaints, sla, escalation, trends, or all.
        projector: String,
    },
    /// Log head, chain head, projector checkpoints and lag, complaint counts.
    Status,
    /// One complaint: its current state and its full history.
    Complaint { id: String },
    /// Walk the hash chain and indexes; report the first inconsistent sequence.
    Verify,
    /// Truncate a damaged log after its last good entry (offline). Lost events come back from JetStream.
    Repair {
        /// Keep entries up to and including this sequence (default: the last good one found by verify).
        #[arg(long)]
        truncate_after: Option<u64>,
        /// Also reset the ingest consumer so JetStream redelivers everything (deduplicated by id).
        #[arg(long)]
        redeliver: bool,
    },
    /// Inspect or retry events that were rejected (COMPLAINTS_REJECTED).
    Rejected {
        #[command(subcommand)]
        command: RejectedCommand,
    },
    /// Generate a realistic stream of complaint events (NDJSON to stdout, or --publish).
    Demo(DemoArgs),
    /// Import a historical export (CSV, gzip or plain) as events: presets `cfpb`, `nyc-council`, or a mapping TOML.
    Import(ImportArgs),
    /// SLA queries: at-risk items, breaches, one complaint, compliance report.
    Sla {
        #[command(subcommand)]
        command: SlaCommand,
    },
    /// Escalation queues: list, history, stats; claim, release, reassign.
    Escalation {
        #[command(subcommand)]
        command: EscalationCommand,
    },
    /// Trend alerts: active episodes, one series observed vs expected, the model.
    Trends {
        #[command(subcommand)]
        command: TrendsCommand,
    },
    /// Benchmarks: ingest, replay and rebuild rates beside the raw limits of NATS, sled and a bare file append.
    Bench(bench::BenchArgs),
    /// (Used by `bench`.) Opens the log in DIR in a fresh process and prints the time and
    /// resident memory it took, as JSON.
    #[command(hide = true)]
    BenchOpen { dir: std::path::PathBuf },
}

#[derive(Debug, Args)]
struct PublishArgs {
    /// NDJSON file; `-` or absent for stdin.
    file: Option<PathBuf>,
    /// Region for events whose complaint was not filed earlier in the same input.
    #[arg(long)]
    region: Option<String>,
    /// Outstanding acks allowed.
    #[arg(long, default_value_t = 1024)]
    window: usize,
}

#[derive(Debug, Args, Default)]
struct FilterArgs {
    #[arg(long)]
    from_seq: Option<u64>,
    #[arg(long)]
    to_seq: Option<u64>,
    /// Event time at or after (RFC 3339).
    #[arg(long)]
    since: Option<jiff::Timestamp>,
    /// Event time before (RFC 3339).
    #[arg(long)]
    until: Option<jiff::Timestamp>,
    #[arg(long)]
    complaint: Option<String>,
    #[arg(long)]
    region: Option<String>,
    /// Event type, e.g. complaint.filed (repeatable).
    #[arg(long = "type")]
    types: Vec<String>,
}

impl FilterArgs {
    fn filter(&self) -> ReplayFilter {
        ReplayFilter {
            from_seq: self.from_seq,
            to_seq: self.to_seq,
            since: self.since,
            until: self.until,
            complaint: self.complaint.clone(),
            region: self.region.clone(),
            types: self.types.clone(),
        }
    }
}

#[derive(Debug, Args)]
struct ReplayArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Republish each event to this subject instead of printing (e.g. a test environment's stream).
    #[arg(long)]
    to_subject: Option<String>,
    /// Events per second when republishing (0: as fast as acks allow).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

#[derive(Debug, Subcommand)]
enum RejectedCommand {
    /// List rejected events with reason and detail.
    List {
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Publish rejected events again to their original subject (e.g. after their complaint was filed), then remove them from the rejected stream.
    Retry {
        #[arg(long)]
        reason: Option<String>,
        /// Only this rejected-stream sequence.
        #[arg(long)]
        seq: Option<u64>,
    },
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Complaints to generate.
    #[arg(long, default_value_t = 2000)]
    complaints: usize,
    /// Days of history, ending now.
    #[arg(long, default_value_t = 21)]
    days: i64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Publish to JetStream instead of printing NDJSON.
    #[arg(long)]
    publish: bool,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// `cfpb`, `nyc-council`, or the path of a mapping TOML (see deploy/import-mapping.example.toml).
    mapping: String,
    /// The export: CSV, plain or gzip.
    file: PathBuf,
    /// Stop after this many rows.
    #[arg(long)]
    limit: Option<u64>,
    /// Convert and count only; publish nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args, Default)]
struct SlaFilterArgs {
    #[arg(long)]
    region: Option<String>,
    #[arg(long)]
    category: Option<String>,
    #[arg(long)]
    policy: Option<String>,
    /// first_response, resolution, periodic_update, callback.
    #[arg(long)]
    metric: Option<String>,
    #[arg(long)]
    limit: Option<usize>,
}

impl SlaFilterArgs {
    fn json(&self) -> serde_json::Value {
        json!({"region": self.region, "category": self.category, "policy": self.policy, "metric": self.metric, "limit": self.limit})
    }
}

#[derive(Debug, Subcommand)]
enum SlaCommand {
    /// Open deadlines at risk (or passed, breach not yet recorded), latest first.
    AtRisk(SlaFilterArgs),
    /// Open breaches, latest first.
    Breaches(SlaFilterArgs),
    /// One complaint's SLA state.
    Complaint { id: String },
    /// Compliance report for a period.
    Compliance {
        #[arg(long)]
        from: Option<jiff::Timestamp>,
        #[arg(long)]
        to: Option<jiff::Timestamp>,
        /// Comma-separated: region, category, policy, metric.
        #[arg(long, value_delimiter = ',')]
        group_by: Vec<String>,
        /// table, csv or json (default: table; json with --json).
        #[arg(long)]
        format: Option<String>,
        #[command(flatten)]
        filter: SlaFilterArgs,
    },
}

#[derive(Debug, Subcommand)]
enum TrendsCommand {
    /// Open trend episodes, newest first.
    Active {
        #[arg(long)]
        region: Option<String>,
        /// A category, or a tracked tag such as vendor:acme.
        #[arg(long)]
        series: Option<String>,
        /// spike, sustained, cross_region or drift.
        #[arg(long)]
        kind: Option<String>,
    },
    /// One series (region x category or tag): observed vs expected and the detector statistic, as JSON ready to plot.
    Series { region: String, series: String },
    /// The configured model, fitted terms and thresholds.
    Model,
}

#[derive(Debug, Subcommand)]
enum EscalationCommand {
    /// One page of a tier's queue in priority order.
    Queue {
        tier: u8,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        team: Option<String>,
        /// Rule name: money, severity, sla_breach, repeat_complainant, reopened, vip, manual.
        #[arg(long)]
        reason: Option<String>,
        /// Only claimed (true) or unclaimed (false) items.
        #[arg(long)]
        claimed: Option<bool>,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One complaint's escalation history.
    History { id: String },
    /// Depth per tier and region, oldest items, median time to claim.
    Stats,
    /// Claim an escalated complaint.
    Claim {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        tier: Option<u8>,
    },
    /// Release a claim.
    Release {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: String,
    },
    /// Hand a claimed complaint to another operator.
    Reassign {
        id: String,
        #[arg(long)]
        to: String,
    },
}

fn init_tracing(filter: Option<&str>, serve: bool) {
    let default = if serve { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_tracing(cli.log.as_deref(), matches!(cli.command, Command::Serve));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(run(cli, &matches));
    runtime.shutdown_timeout(Duration::from_secs(2));
    if let Err(error) = result {
        // One line that says what went wrong and, where we know it, what to do.
        let mut message = error.to_string();
        for cause in error.chain().skip(1) {
            message.push_str(": ");
            message.push_str(&cause.to_string());
        }
        eprintln!("plaint: {message}");
        std::process::exit(1);
    }
}

fn load_config(cli: &Cli, matches: &ArgMatches) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref(), |k| std::env::var(k).ok())?;
    // Flags (and their env vars) override the file when they were given.
    if matches.value_source("nats") != Some(ValueSource::DefaultValue) {
        config.nats.url = cli.nats.clone();
    }
    if matches.value_source("data") != Some(ValueSource::DefaultValue) {
        config.data = cli.data.clone();
    }
    Ok(config)
}

/// Where query commands get their answers.
enum Target {
    Remote {
        client: async_nats::Client,
        prefix: String,
    },
    Offline(Box<Api>),
    /// Offline, for the commands that read the log alone.
    OfflineLog(plaint_service::LogApi),
}

impl Target {
    async fn call(&self, command: &str, request: serde_json::Value) -> Result<ApiReply, ApiError> {
        let body = serde_json::to_vec(&request).expect("json");
        match self {
            Target::Remote { client, prefix } => {
                api::call(
                    client,
                    prefix,
                    command,
                    Bytes::from(body),
                    Duration::from_secs(120),
                )
                .await
            }
            Target::Offline(api) => api.handle(command, &body).await,
            Target::OfflineLog(api) => api.handle(command, &body).await,
        }
    }

    async fn call_json(
        &self,
        command: &str,
        request: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let reply = self
            .call(command, request)
            .await
            .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))?;
        serde_json::from_slice(&reply.body).context("the server's reply is not JSON")
    }
}

async fn target(cli: &Cli, matches: &ArgMatches, config: &Config) -> anyhow::Result<Target> {
    open_target(cli, matches, config, true).await
}

/// The target of `replay` and `verify`: offline, the log alone (no view is restored).
async fn log_target(cli: &Cli, matches: &ArgMatches, config: &Config) -> anyhow::Result<Target> {
    open_target(cli, matches, config, false).await
}

async fn open_target(
    cli: &Cli,
    matches: &ArgMatches,
    config: &Config,
    views: bool,
) -> anyhow::Result<Target> {
    let offline = matches
        .value_source("data")
        .is_some_and(|s| s != ValueSource::DefaultValue);
    if offline {
        if !config.db_path().exists() {
            bail!(
                "no plaint data in {} (expected {}); check --data",
                config.data.display(),
                config.db_path().display()
            );
        }
        if !views {
            let api = plaint_service::open_offline_log(config.clone()).await?;
            return Ok(Target::OfflineLog(api));
        }
        let api = plaint_service::open_offline(config.clone()).await?;
        return Ok(Target::Offline(Box::new(api)));
    }
    let _ = cli;
    let client = plaint_service::nats::connect(&config.nats).await?;
    Ok(Target::Remote {
        client,
        prefix: config.topology.subject_prefix.clone(),
    })
}

async fn jetstream(config: &Config) -> anyhow::Result<async_nats::jetstream::Context> {
    let client = plaint_service::nats::connect(&config.nats).await?;
    let js = plaint_service::nats::jetstream(client, &config.nats);
    plaint_ingest::ensure_streams(&js, &config.topology).await?;
    Ok(js)
}

fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("json");
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}") {
        // `plaint ... | head` closes the pipe early: that is not an error.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("plaint: cannot write output: {e}");
        std::process::exit(1);
    }
}

fn progress_bar(len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = if len.is_some() {
        format!("{what} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})")
    } else {
        format!("{what} {{spinner}} {{pos}} ({{per_sec}})")
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

async fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<()> {
    let config = load_config(&cli, matches)?;
    match &cli.command {
        Command::Serve => {
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                signal.cancel();
            });
            plaint_service::serve(config, shutdown).await?;
            Ok(())
        }
        Command::Publish(args) => publish_ndjson(&config, args, cli.json).await,
        Command::Replay(args) => replay(&cli, matches, &config, args).await,
        Command::Rebuild { projector } => rebuild(&config, projector, cli.json).await,
        Command::Status => {
            let t = target(&cli, matches, &config).await?;
            let status = t.call_json("status", json!({})).await?;
            if cli.json {
                print_json(&status);
            } else {
                print_status(&status);
            }
            Ok(())
        }
        Command::Complaint { id } => {
            let t = target(&cli, matches, &config).await?;
            let report = t.call_json("complaint", json!({"id": id})).await?;
            let sla = t.call_json("sla.complaint", json!({"id": id})).await.ok();
            let escalation = t
                .call_json("escalation.history", json!({"id": id}))
                .await
                .ok();
            if cli.json {
                print_json(&json!({"complaint": report, "sla": sla, "escalation": escalation}));
            } else {
                print_complaint(&report, sla.as_ref(), escalation.as_ref());
            }
            Ok(())
        }
        Command::Verify => verify(&cli, matches, &config).await,
        Command::Repair {
            truncate_after,
            redeliver,
        } => repair(&config, *truncate_after, *redeliver).await,
        Command::Rejected { command } => rejected(&config, command, cli.json).await,
        Command::Demo(args) => demo_cmd(&config, args).await,
        Command::Import(args) => import(&config, args, cli.json).await,
        Command::Sla { command } => {
            let t = target(&cli, matches, &config).await?;
            sla(&t, command, cli.json).await
        }
        Command::Escalation { command } => {
            let t = target(&cli, matches, &config).await?;
            escalation(&t, command, cli.json).await
        }
        Command::Trends { command } => {
            let t = target(&cli, matches, &config).await?;
            let value = match command {
                TrendsCommand::Active {
                    region,
                    series,
                    kind,
                } => {
                    t.call_json(
                        "trends.active",
                        json!({"filter": {"region": region, "series": series, "kind": kind}}),
                    )
                    .await?
                }
                TrendsCommand::Series { region, series } => {
                    t.call_json("trends.series", json!({"region": region, "series": series}))
                        .await?
                }
                TrendsCommand::Model => t.call_json("trends.model", json!({})).await?,
            };
            print_json(&value);
            Ok(())
        }
        Command::Bench(args) => bench::run(&config, args).await,
        Command::BenchOpen { dir } => bench::open_and_measure(dir),
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn print_status(s: &serde_json::Value) {
    let log = &s["log"];
    println!("mode        {}", s["mode"].as_str().unwrap_or("?"));
    println!("log head    {}", log["last_seq"]);
    println!("chain head  {}", log["chain_head"].as_str().unwrap_or(""));
    println!(
        "segments    {}   durability {}   index snapshot at {}",
        log["segments"],
        log["durability"].as_str().unwrap_or(""),
        log["index_snapshot_seq"]
    );
    println!("projectors");
    for p in s["projectors"].as_array().into_iter().flatten() {
        let resident = p["resident"]
            .as_u64()
            .map_or(String::new(), |n| format!("  in memory {n}"));
        println!(
            "  {:<12} checkpoint {:>10}  lag {}{resident}",
            p["name"].as_str().unwrap_or(""),
            p["checkpoint"],
            p["lag"]
        );
    }
    let c = &s["complaints"];
    println!("complaints  {} total", c["total"]);
    for (status, n) in c["by_status"].as_object().into_iter().flatten() {
        println!("  {status:<18} {n}");
    }
    if let Some(regions) = c["by_region"].as_object() {
        let line: Vec<String> = regions.iter().map(|(r, n)| format!("{r} {n}")).collect();
        println!("by region   {}", line.join(", "));
    }
    if let Some(i) = s.get("ingest").filter(|i| !i.is_null()) {
        println!(
            "ingest      appended {}  duplicates {}  batches {}  storage errors {}",
            i["appended"], i["duplicates"], i["batches"], i["storage_errors"]
        );
        if let Some(r) = i["rejected"].as_object().filter(|r| !r.is_empty()) {
            let line: Vec<String> = r.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("rejected    {}", line.join(", "));
        }
    }
}

fn print_complaint(
    report: &serde_json::Value,
    sla: Option<&serde_json::Value>,
    escalation: Option<&serde_json::Value>,
) {
    let state = &report["state"];
    println!(
        "complaint {}  region {}  lifecycle {}  version {}",
        state["complaint_id"].as_str().unwrap_or("?"),
        report["region"].as_str().unwrap_or("?"),
        report["lifecycle"].as_str().unwrap_or("?"),
        report["version"]
    );
    if state.is_object() {
        for key in [
            "status",
            "category",
            "severity",
            "channel",
            "filed_at",
            "first_response_at",
            "resolved_at",
            "closed_at",
            "assignee",
            "escalation_tier",
            "reopen_count",
            "sla_breaches",
        ] {
            if let Some(v) = state.get(key).filter(|v| !v.is_null()) {
                println!(
                    "  {key:<18} {}",
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                );
            }
        }
    }
    if let Some(sla) = sla {
        println!("SLA (policy {})", sla["policy"].as_str().unwrap_or("?"));
        for m in sla["metrics"].as_array().into_iter().flatten() {
            println!(
                "  {:<16} {:<8} due {:<22} used {:>7}s of {:>7}s{}",
                m["metric"].as_str().unwrap_or(""),
                m["state"].as_str().unwrap_or(""),
                m["due_at"].as_str().unwrap_or("-"),
                m["used_seconds"],
                m["target_seconds"],
                if m["breached"].as_bool() == Some(true) {
                    "  BREACHED"
                } else {
                    ""
                }
            );
        }
    }
    if let Some(e) = escalation {
        if let Some(current) = e.get("current").filter(|c| !c.is_null()) {
            println!(
                "escalation  tier {}  claimed by {}",
                current["tier"],
                current["claim"]["by"].as_str().unwrap_or("nobody")
            );
        }
    }
    println!("history");
    for h in report["history"].as_array().into_iter().flatten() {
        let e = &h["event"];
        println!(
            "  {:>8}  {}  {:<30} {}",
            h["seq"],
            e["time"].as_str().unwrap_or(""),
            e["type"].as_str().unwrap_or(""),
            e["source"].as_str().unwrap_or("")
        );
    }
}

/// Subject of an NDJSON line for publishing: from the complaint's region (known from its
/// `complaint.filed` earlier in the input, or --region).
fn subject_for(
    prefix: &str,
    event: &serde_json::Value,
    regions: &mut std::collections::HashMap<String, String>,
    default_region: Option<&str>,
) -> anyhow::Result<String> {
    let complaint = event["subject"].as_str().unwrap_or_default().to_owned();
    let event_type = event["type"].as_str().unwrap_or_default();
    let kind = plaint_events::EventType::parse(event_type)
        .map(|t| t.subject_kind().to_owned())
        .unwrap_or_else(|| {
            event_type
                .rsplit('.')
                .next()
                .unwrap_or("unknown")
                .to_owned()
        });
    let region = if let Some(r) = event["data"]["region"].as_str() {
        regions.insert(complaint, r.to_owned());
        r.to_owned()
    } else if let Some(r) = regions.get(&complaint) {
        r.clone()
    } else if let Some(r) = default_region {
        r.to_owned()
    } else {
        bail!("no region known for complaint {complaint:?}: its complaint.filed is not earlier in the input; pass --region");
    };
    Ok(plaint_events::subjects::event(
        prefix,
        &region,
        plaint_events::EventType::parse(event_type).unwrap_or(plaint_events::EventType::Filed),
    )
    .rsplit_once('.')
    .map(|(head, _)| format!("{head}.{kind}"))
    .unwrap_or_default())
}

async fn publish_ndjson(config: &Config, args: &PublishArgs, json_out: bool) -> anyhow::Result<()> {
    let reader: Box<dyn BufRead> = match &args.file {
        Some(p) if p.as_os_str() != "-" => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        )),
        _ => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let js = jetstream(config).await?;
    let mut publisher = publish::Publisher::new(js, args.window);
    let mut regions = std::collections::HashMap::new();
    let bar = progress_bar(None, "publishing");
    for (n, line) in reader.lines().enumerate() {
        let line = line.context("cannot read input")?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("line {} is not JSON", n + 1))?;
        // Accept replay output too: {"seq": N, "event": {...}}.
        let (event, payload) = match value.get("event") {
            Some(e) if value.get("seq").is_some() => {
                (e.clone(), Bytes::from(serde_json::to_vec(e)?))
            }
            _ => (value, Bytes::from(line.into_bytes())),
        };
        let subject = subject_for(
            &config.topology.subject_prefix,
            &event,
            &mut regions,
            args.region.as_deref(),
        )
        .with_context(|| format!("line {}", n + 1))?;
        let id = event["id"].as_str().map(str::to_owned);
        publisher.send(subject, id.as_deref(), payload).await?;
        bar.inc(1);
    }
    let stats = publisher.finish().await?;
    bar.finish_and_clear();
    if json_out {
        println!("{}", serde_json::to_string(&stats)?);
    } else {
        println!(
            "published {} events: {} accepted, {} duplicates (already in the stream) in {:.1}s",
            stats.published, stats.accepted, stats.duplicates, stats.seconds
        );
    }
    Ok(())
}

async fn replay(
    cli: &Cli,
    matches: &ArgMatches,
    config: &Config,
    args: &ReplayArgs,
) -> anyhow::Result<()> {
    let filter = args.filter.filter();
    filter.parsed_types().map_err(|e| anyhow::anyhow!(e))?;
    let t = log_target(cli, matches, config).await?;
    let mut publisher = match &args.to_subject {
        Some(_) => Some(publish::Publisher::new(jetstream(config).await?, 1024)),
        None => None,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut start = filter.from_seq.unwrap_or(1);
    let started = Instant::now();
    let mut sent = 0u64;
    loop {
        let reply = t
            .call("replay", json!({"filter": filter, "start": start}))
            .await
            .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))?;
        match (&mut publisher, &args.to_subject) {
            (Some(p), Some(subject)) => {
                for line in reply.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    let v: serde_json::Value = serde_json::from_slice(line)?;
                    let event = serde_json::to_vec(&v["event"])?;
                    if args.rate > 0 {
                        let due = started + Duration::from_secs_f64(sent as f64 / args.rate as f64);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    publisher_send(p, subject, v["event"]["id"].as_str(), event).await?;
                    sent += 1;
                }
            }
            _ => out.write_all(&reply.body)?,
        }
        match reply.next_seq {
            Some(next) => start = next,
            None => break,
        }
    }
    out.flush()?;
    if let Some(p) = publisher {
        let stats = p.finish().await?;
        eprintln!(
            "republished {} events ({} accepted, {} duplicates)",
            stats.published, stats.accepted, stats.duplicates
        );
    }
    Ok(())
}

async fn publisher_send(
    p: &mut publish::Publisher,
    subject: &str,
    id: Option<&str>,
    payload: Vec<u8>,
) -> anyhow::Result<()> {
    p.send(subject.to_owned(), id, Bytes::from(payload)).await
}

async fn rebuild(config: &Config, projector: &str, json_out: bool) -> anyhow::Result<()> {
    let names: Vec<&str> = match projector {
        "all" => vec!["complaints", "sla", "escalation", "trends"],
        one @ ("complaints" | "sla" | "escalation" | "trends") => vec![one],
        other => {
            bail!("no projector named {other:?}; use complaints, sla, escalation, trends or all")
        }
    };
    let log = plaint_log::Log::open(config.db_path(), config.log_options())?;
    for name in names {
        let bar = progress_bar(Some(log.last_seq()), &format!("rebuilding {name}"));
        let options = plaint_runner::RunnerOptions::default();
        let progress = |seq| bar.set_position(seq);
        let projectors = plaint_service::serve_projectors(config)?;
        let report = match name {
            "complaints" => {
                plaint_runner::rebuild(
                    &log,
                    plaint_complaints::ComplaintsProjector::new(),
                    options,
                    progress,
                )
                .await?
            }
            "sla" => plaint_runner::rebuild(&log, projectors.sla, options, progress).await?,
            "trends" => plaint_runner::rebuild(&log, projectors.trends, options, progress).await?,
            _ => plaint_runner::rebuild(&log, projectors.escalation, options, progress).await?,
        };
        bar.finish_and_clear();
        if json_out {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!(
                "{:<12} {} events in {:.2}s ({:.0}/s), checkpoint {}, digest {}",
                report.projector,
                report.events,
                report.seconds,
                report.events_per_second,
                report.checkpoint,
                report.digest
            );
        }
    }
    Ok(())
}

async fn verify(cli: &Cli, matches: &ArgMatches, config: &Config) -> anyhow::Result<()> {
    let t = log_target(cli, matches, config).await?;
    let report = t.call_json("verify", json!({})).await?;
    if cli.json {
        print_json(&report);
    } else if report["problem"].is_null() {
        println!(
            "ok: {} entries in {} segments, chain head {}",
            report["entries"],
            report["segments"],
            report["chain_head"].as_str().unwrap_or("")
        );
    }
    if let Some(problem) = report.get("problem").filter(|p| !p.is_null()) {
        bail!(
            "log is inconsistent at sequence {}: {}. Run `plaint repair --data DIR` (with the server stopped) to truncate before it",
            problem["seq"],
            problem["what"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

async fn repair(
    config: &Config,
    truncate_after: Option<u64>,
    redeliver: bool,
) -> anyhow::Result<()> {
    // Opening checks the head; a damaged log refuses, so open the raw tree for repair.
    let keep = match truncate_after {
        Some(seq) => seq,
        None => {
            let log = plaint_log::Log::open(config.db_path(), config.log_options());
            match log {
                Ok(log) => match log.verify(|_| {})?.problem {
                    Some(p) => p.seq.saturating_sub(1),
                    None => {
                        println!("the log verifies; nothing to repair");
                        return Ok(());
                    }
                },
                Err(plaint_log::LogError::Corrupt { seq, .. }) => seq.saturating_sub(1),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let (kept, removed) = plaint_log::repair_truncate(&config.db_path(), keep)?;
    println!("kept entries 1..={kept}, removed {removed}");
    if redeliver {
        let js = jetstream(config).await?;
        js.delete_consumer_from_stream(&config.topology.consumer, &config.topology.events_stream)
            .await
            .context("cannot reset the ingest consumer")?;
        println!("ingest consumer reset: JetStream will redeliver every event to the next `plaint serve` (duplicates are recognised)");
    }
    println!("rebuild views with `plaint rebuild all` before serving");
    Ok(())
}

async fn rejected(
    config: &Config,
    command: &RejectedCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    let js = jetstream(config).await?;
    let mut stream = js
        .get_stream(&config.topology.rejected_stream)
        .await
        .context("no rejected stream")?;
    let info = stream.info().await?.clone();
    let (reason_filter, seq_filter, limit) = match command {
        RejectedCommand::List { reason, limit } => (reason.clone(), None, *limit),
        RejectedCommand::Retry { reason, seq } => (reason.clone(), *seq, usize::MAX),
    };
    let mut shown = 0usize;
    let mut retried = 0u64;
    let first = seq_filter.unwrap_or(info.state.first_sequence);
    let last = seq_filter.unwrap_or(info.state.last_sequence);
    for seq in first..=last {
        if shown >= limit {
            break;
        }
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        let reason = header("Plaint-Reject-Reason");
        if reason_filter.as_ref().is_some_and(|r| *r != reason) {
            continue;
        }
        shown += 1;
        match command {
            RejectedCommand::List { .. } => {
                let payload = String::from_utf8_lossy(&message.payload);
                if json_out {
                    println!(
                        "{}",
                        json!({"seq": seq, "reason": reason, "detail": header("Plaint-Reject-Detail"), "subject": header("Plaint-Original-Subject"), "payload": payload})
                    );
                } else {
                    let preview: String = payload.chars().take(100).collect();
                    println!("{seq:>8}  {reason:<24} {}\n          subject {}\n          payload {preview}", header("Plaint-Reject-Detail"), header("Plaint-Original-Subject"));
                }
            }
            RejectedCommand::Retry { .. } => {
                let subject = header("Plaint-Original-Subject");
                if subject.is_empty() {
                    continue;
                }
                js.publish(subject, message.payload.clone())
                    .await?
                    .await
                    .context("republish not acknowledged")?;
                stream
                    .delete_message(seq)
                    .await
                    .context("cannot remove the retried message")?;
                retried += 1;
            }
        }
    }
    if let RejectedCommand::Retry { .. } = command {
        println!("republished {retried} rejected events to their original subjects; any still invalid are rejected again");
    } else if shown == 0 && !json_out {
        println!(
            "no rejected events{}",
            reason_filter
                .map(|r| format!(" with reason {r}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

async fn demo_cmd(config: &Config, args: &DemoArgs) -> anyhow::Result<()> {
    let events = demo::generate(
        args.complaints,
        args.days,
        args.seed,
        jiff::Timestamp::now(),
    );
    if !args.publish {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        for e in &events {
            out.write_all(&e.bytes)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        return Ok(());
    }
    let js = jetstream(config).await?;
    let mut publisher = publish::Publisher::new(js, 1024);
    let bar = progress_bar(Some(events.len() as u64), "publishing demo");
    let prefix = &config.topology.subject_prefix;
    for e in events {
        let subject = match e.subject.strip_prefix("complaints.") {
            Some(rest) => format!("{prefix}.{rest}"),
            None => e.subject,
        };
        publisher
            .send(subject, Some(&e.id), Bytes::from(e.bytes))
            .await?;
        bar.inc(1);
    }
    let stats = publisher.finish().await?;
    bar.finish_and_clear();
    println!(
        "demo: published {} events ({} accepted, {} duplicates) in {:.1}s",
        stats.published, stats.accepted, stats.duplicates, stats.seconds
    );
    Ok(())
}

async fn import(config: &Config, args: &ImportArgs, json_out: bool) -> anyhow::Result<()> {
    let mapping = plaint_import::Mapping::load(&args.mapping)?;
    let mut importer = plaint_import::Importer::open(&mapping, &args.file)?;
    let mut publisher = if args.dry_run {
        None
    } else {
        Some(publish::Publisher::new(jetstream(config).await?, 2048))
    };
    let total = importer.progress().total_bytes;
    let bar = progress_bar(total, "importing (bytes)");
    let prefix = config.topology.subject_prefix.clone();
    let mut rows = 0u64;
    while let Some(item) = importer.next() {
        let item = item?;
        rows += 1;
        if let (plaint_import::ImportItem::Imported { imported, .. }, Some(p)) =
            (&item, &mut publisher)
        {
            for m in imported.messages(&prefix) {
                p.send(m.subject, Some(&m.msg_id), Bytes::from(m.payload))
                    .await?;
            }
        }
        if rows.is_multiple_of(1000) {
            bar.set_position(importer.progress().bytes_read);
        }
        if args.limit.is_some_and(|l| rows >= l) {
            break;
        }
    }
    bar.finish_and_clear();
    let summary = importer.summary();
    let stats = match publisher {
        Some(p) => Some(p.finish().await?),
        None => None,
    };
    if json_out {
        println!("{}", json!({"summary": summary, "publish": stats}));
    } else {
        println!("{summary}");
        if let Some(s) = stats {
            println!(
                "published {} events: {} accepted, {} duplicates, in {:.1}s",
                s.published, s.accepted, s.duplicates, s.seconds
            );
        }
    }
    Ok(())
}

async fn sla(t: &Target, command: &SlaCommand, json_out: bool) -> anyhow::Result<()> {
    match command {
        SlaCommand::AtRisk(f) => print_json(
            &t.call_json("sla.at_risk", json!({"filter": f.json()}))
                .await?,
        ),
        SlaCommand::Breaches(f) => print_json(
            &t.call_json("sla.breaches", json!({"filter": f.json()}))
                .await?,
        ),
        SlaCommand::Complaint { id } => {
            print_json(&t.call_json("sla.complaint", json!({"id": id})).await?)
        }
        SlaCommand::Compliance {
            from,
            to,
            group_by,
            format,
            filter,
        } => {
            let format = format.clone().unwrap_or_else(|| {
                if json_out {
                    "json".into()
                } else {
                    "table".into()
                }
            });
            let reply = t
                .call(
                    "sla.compliance",
                    json!({"query": {"from": from, "to": to, "group_by": group_by, "filter": filter.json()}, "format": format}),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))?;
            std::io::stdout().write_all(&reply.body)?;
            println!();
        }
    }
    Ok(())
}

async fn escalation(
    t: &Target,
    command: &EscalationCommand,
    _json_out: bool,
) -> anyhow::Result<()> {
    let value = match command {
        EscalationCommand::Queue { tier, region, team, reason, claimed, offset, limit } => {
            t.call_json(
                "escalation.queue",
                json!({"tier": tier, "region": region, "team": team, "reason": reason, "claimed": claimed, "offset": offset, "limit": limit}),
            )
            .await?
        }
        EscalationCommand::History { id } => t.call_json("escalation.history", json!({"id": id})).await?,
        EscalationCommand::Stats => t.call_json("escalation.stats", json!({})).await?,
        EscalationCommand::Claim { id, by, tier } => t.call_json("escalation.claim", json!({"id": id, "by": by, "tier": tier})).await?,
        EscalationCommand::Release { id, by, reason } => {
            t.call_json("escalation.release", json!({"id": id, "by": by, "reason": reason})).await?
        }
        EscalationCommand::Reassign { id, to } => t.call_json("escalation.reassign", json!({"id": id, "to": to})).await?,
    };
    print_json(&value);
    Ok(())
}
