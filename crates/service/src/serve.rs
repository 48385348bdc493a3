use std::{sync::Arc, time::Duration};

use async_nats::jetstream;
use futures::future::BoxFuture;
use plaint_complaints::ComplaintsProjector;
use plaint_ingest::Ingester;
use plaint_log::Log;
use plaint_projection::{Effect, Projection};
use plaint_runner::{
    Clock, EffectSink, ProjectorHandle, ProjectorStatus, Runner, RunnerOptions, SystemClock,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use plaint_escalation::EscalationProjector;
use plaint_sla::SlaProjector;
use plaint_trends::TrendsProjector;

use crate::{
    api::{Api, LogApi, Views},
    config::Config,
    nats,
};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Log(#[from] plaint_log::LogError),
    #[error(transparent)]
    Runner(#[from] plaint_runner::RunnerError),
    #[error(transparent)]
    Connect(#[from] nats::ConnectError),
    #[error(transparent)]
    Ingest(#[from] plaint_ingest::IngestError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration {0}; see deploy/plaint.toml")]
    Config(String),
    #[error("{0}")]
    Other(String),
}

/// Publishes projector effects to JetStream and waits for every ack.
#[derive(Clone)]
pub struct NatsEffects {
    js: jetstream::Context,
    /// Publish acks one call awaits at most at once.
    window: usize,
}

impl NatsEffects {
    /// A sink over `js`, whose context lends `max_ack_inflight` ack permits: the four
    /// projectors' sinks take an eighth each, ingest's rejections half.
    pub fn new(js: jetstream::Context, max_ack_inflight: usize) -> Self {
        NatsEffects {
            js,
            window: (max_ack_inflight / 8).max(1),
        }
    }
}

impl EffectSink for NatsEffects {
    fn carry_out(
        &self,
        projector: &'static str,
        effects: Vec<Effect>,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            // The context lends a permit per outstanding ack (`max_ack_inflight`) and takes
            // it back only when the ack is awaited: publishing a tick's thousands of
            // breaches before awaiting any would wait for a permit forever. So acks are
            // awaited as the window fills.
            let mut acks = std::collections::VecDeque::with_capacity(self.window);
            for effect in effects {
                if acks.len() >= self.window {
                    let ack: async_nats::jetstream::context::PublishAckFuture =
                        acks.pop_front().expect("the window is not empty");
                    ack.await
                        .map_err(|e| format!("{projector}: publish not acknowledged: {e}"))?;
                }
                let (subject, msg_id, payload) = match effect {
                    Effect::Publish {
                        subject,
                        msg_id,
                        payload,
                    } => (subject, msg_id, payload),
                    Effect::AppendEvent { subject, event } => {
                        (subject, event.id.to_string(), event.to_wire())
                    }
                };
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", msg_id.as_str());
                let ack = self
                    .js
                    .publish_with_headers(subject, headers, payload.into())
                    .await
                    .map_err(|e| format!("{projector}: publish failed: {e}"))?;
                acks.push_back(ack);
            }
            for ack in acks {
                ack.await
                    .map_err(|e| format!("{projector}: publish not acknowledged: {e}"))?;
            }
            Ok(())
        })
    }
}

/// Everything a node runs, assembled but not yet started: used by `serve` and by tests
/// that need to reach into the parts.
pub struct Node {
    pub config: Config,
    pub log: Log,
    pub views: Views,
    pub clock: Arc<dyn Clock>,
    runners: Vec<BoxFuture<'static, Result<(), plaint_runner::RunnerError>>>,
}

/// The configured projectors, built from their config sections.
pub struct Projectors {
    pub sla: SlaProjector,
    pub escalation: EscalationProjector,
    pub trends: TrendsProjector,
}

/// Builds the projectors from their config sections.
pub fn projectors(config: &Config) -> Result<Projectors, ServeError> {
    let prefix = &config.topology.subject_prefix;
    let mut sla: plaint_sla::SlaConfig = match &config.sla {
        Some(v) => v
            .clone()
            .try_into()
            .map_err(|e| ServeError::Config(format!("[sla]: {e}")))?,
        None => Default::default(),
    };
    sla.subject_prefix = prefix.clone();
    let sla = SlaProjector::new(sla).map_err(|e| ServeError::Config(format!("[sla]: {e}")))?;
    let escalation: plaint_escalation::EscalationConfig = match &config.escalation {
        Some(v) => v
            .clone()
            .try_into()
            .map_err(|e| ServeError::Config(format!("[escalation]: {e}")))?,
        None => Default::default(),
    };
    let escalation = EscalationProjector::new(escalation)
        .map_err(|e| ServeError::Config(format!("[escalation]: {e}")))?
        .with_subject_prefix(prefix.clone());
    let mut trends: plaint_trends::TrendsConfig = match &config.trends {
        Some(v) => v
            .clone()
            .try_into()
            .map_err(|e| ServeError::Config(format!("[trends]: {e}")))?,
        None => Default::default(),
    };
    trends.subject_prefix = prefix.clone();
    let trends =
        TrendsProjector::new(trends).map_err(|e| ServeError::Config(format!("[trends]: {e}")))?;
    Ok(Projectors {
        sla,
        escalation,
        trends,
    })
}

fn open_log(config: &Config) -> Result<Log, ServeError> {
    std::fs::create_dir_all(&config.data).map_err(|source| ServeError::DataDir {
        path: config.data.display().to_string(),
        source,
    })?;
    Ok(Log::open(config.db_path(), config.log_options())?)
}

fn add_runner<P: Projection>(
    runners: &mut Vec<BoxFuture<'static, Result<(), plaint_runner::RunnerError>>>,
    statuses: &mut Vec<Arc<dyn ProjectorStatus>>,
    runner: Result<Runner<P>, plaint_runner::RunnerError>,
    shutdown: &CancellationToken,
) -> Result<ProjectorHandle<P>, ServeError> {
    let runner = runner?;
    let handle = runner.handle();
    statuses.push(Arc::new(handle.clone()));
    let shutdown = shutdown.clone();
    runners.push(Box::pin(runner.run(shutdown)));
    Ok(handle)
}

impl Node {
    /// Opens the log and restores every projector.
    pub fn assemble(
        config: Config,
        sink: Arc<dyn EffectSink>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<Node, ServeError> {
        let projectors = projectors(&config)?;
        let log = open_log(&config)?;
        Self::assemble_with_log(config, log, projectors, sink, clock, shutdown, false)
    }

    /// Restores every projector over an open log. With `defer_rebuilds`, a view that must
    /// be rebuilt (a new row layout after an upgrade) is rebuilt by its runner once the
    /// node runs, so the API answers meanwhile (that view as of its progress; `status`
    /// shows its lag); without, it is rebuilt here.
    pub fn assemble_with_log(
        config: Config,
        log: Log,
        projectors: Projectors,
        sink: Arc<dyn EffectSink>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
        defer_rebuilds: bool,
    ) -> Result<Node, ServeError> {
        let Projectors {
            sla,
            escalation,
            trends,
        } = projectors;
        // Each runner restores its projector's view from its rows: independent work that
        // dominates a big node's start, so on threads of their own.
        let options = RunnerOptions {
            defer_rebuild: defer_rebuilds,
            ..Default::default()
        };
        fn new_runner<P: Projection>(
            log: &Log,
            projector: P,
            sink: &Arc<dyn EffectSink>,
            clock: &Arc<dyn Clock>,
            options: &RunnerOptions,
        ) -> Result<Runner<P>, plaint_runner::RunnerError> {
            Runner::new(
                log.clone(),
                projector,
                sink.clone(),
                clock.clone(),
                options.clone(),
            )
        }
        fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }
        let (complaints, sla, escalation, trends) = std::thread::scope(|scope| {
            let complaints = scope
                .spawn(|| new_runner(&log, ComplaintsProjector::new(), &sink, &clock, &options));
            let sla = scope.spawn(|| new_runner(&log, sla, &sink, &clock, &options));
            let escalation = scope.spawn(|| new_runner(&log, escalation, &sink, &clock, &options));
            let trends = scope.spawn(|| new_runner(&log, trends, &sink, &clock, &options));
            (join(complaints), join(sla), join(escalation), join(trends))
        });
        let mut runners = Vec::new();
        let mut all = Vec::new();
        let (r, a) = (&mut runners, &mut all);
        let complaints = add_runner(r, a, complaints, &shutdown)?;
        let sla = add_runner(r, a, sla, &shutdown)?;
        let escalation = add_runner(r, a, escalation, &shutdown)?;
        let trends = add_runner(r, a, trends, &shutdown)?;
        let views = Views {
            complaints,
            sla,
            escalation,
            trends,
            all,
        };
        Ok(Node {
            config,
            log,
            views,
            clock,
            runners,
        })
    }

    pub fn api(
        &self,
        ingest: Option<Arc<plaint_ingest::IngestMetrics>>,
        mode: &'static str,
        js: Option<jetstream::Context>,
    ) -> Api {
        Api::new(
            self.log.clone(),
            self.views.clone(),
            ingest,
            mode,
            self.config.api.replay_page_bytes,
            self.clock.clone(),
            js,
        )
    }

    /// Brings every view that is at most `limit` events behind up to the log's head in
    /// memory (offline queries). A view further behind answers as of its checkpoint, with
    /// a warning: catching it up in memory would hold all of those events' state at once
    /// (nothing can be committed offline, since the effects must wait for `serve`).
    pub async fn catch_up_in_memory(&self, limit: u64) -> Result<(), plaint_runner::RunnerError> {
        async fn one<P: Projection>(
            log: &Log,
            handle: &ProjectorHandle<P>,
            limit: u64,
        ) -> Result<(), plaint_runner::RunnerError> {
            let behind = log.last_seq().saturating_sub(handle.checkpoint());
            if behind > limit {
                let name = ProjectorStatus::name(handle);
                tracing::warn!(
                    projector = name,
                    behind,
                    checkpoint = handle.checkpoint(),
                    "this view is too far behind the log to catch up offline; its answers are as of its checkpoint. Start `plaint serve` to bring it up to date (and carry out its effects), or run `plaint rebuild {name}`",
                );
                return Ok(());
            }
            plaint_runner::catch_up_in_memory(log, handle).await?;
            Ok(())
        }
        let v = &self.views;
        one(&self.log, &v.complaints, limit).await?;
        one(&self.log, &v.sla, limit).await?;
        one(&self.log, &v.escalation, limit).await?;
        one(&self.log, &v.trends, limit).await?;
        Ok(())
    }
}

/// Runs ingest, the projectors and the API until `shutdown` is cancelled, then stops them
/// in order: the ingester finishes its batch, the runners their batch, the API its
/// requests; finally the log is flushed.
pub async fn serve(config: Config, shutdown: CancellationToken) -> Result<(), ServeError> {
    serve_with_clock(
        config,
        Arc::new(plaint_runner::JumpGuardClock::new(SystemClock)),
        shutdown,
    )
    .await
}

pub async fn serve_with_clock(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let client = nats::connect(&config.nats).await?;
    let js = nats::jetstream(client.clone(), &config.nats);
    plaint_ingest::ensure_streams(&js, &config.topology).await?;
    let sink: Arc<dyn EffectSink> =
        Arc::new(NatsEffects::new(js.clone(), config.nats.max_ack_inflight));
    // A bad projector config fails the start before anything runs.
    let projectors = projectors(&config)?;
    let log = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_log(&config))
            .await
            .map_err(|e| ServeError::Other(e.to_string()))??
    };
    let ingester = Ingester::new(
        log.clone(),
        js.clone(),
        config.topology.clone(),
        plaint_ingest::IngestOptions {
            // Half of the context's ack permits; the projectors' sinks share the rest.
            ack_window: (config.nats.max_ack_inflight / 2).max(1),
            ..config.ingest.options()
        },
    );
    let metrics = ingester.metrics();
    let tracker = TaskTracker::new();
    let failure = CancellationToken::new();
    let first_failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let fail = {
        let failure = failure.clone();
        let first_failure = first_failure.clone();
        move |what: &str, error: String| {
            tracing::error!(%error, "{what} failed");
            first_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(error);
            failure.cancel();
        }
    };
    // Ingest needs only the log, so it resumes while the views restore (on a big node that
    // is most of the start: 15 s of the 18 s at 10 million events); the projectors then
    // catch up from their checkpoints as always.
    let ingest_stop = shutdown.child_token();
    {
        let stop = ingest_stop.clone();
        let fail = fail.clone();
        tracker.spawn(async move {
            if let Err(error) = ingester.run(stop).await {
                fail("ingest", error.to_string());
            }
        });
    }
    let node = {
        let (config, log, shutdown) = (config.clone(), log.clone(), shutdown.clone());
        tokio::task::spawn_blocking(move || {
            Node::assemble_with_log(config, log, projectors, sink, clock, shutdown, true)
        })
        .await
        .map_err(|e| ServeError::Other(e.to_string()))
        .and_then(|assembled| assembled)
    };
    let node = match node {
        Ok(node) => node,
        Err(error) => {
            // Stop the ingest started above before reporting.
            ingest_stop.cancel();
            tracker.close();
            tracker.wait().await;
            return Err(error);
        }
    };
    let api = node.api(Some(metrics), "server", Some(js.clone()));
    // Before the runners: catching up keeps the runtime's threads busy, and the API's
    // endpoints took seconds to register behind them at 10 million events.
    if config.api.enabled {
        let client = client.clone();
        let prefix = config.topology.subject_prefix.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            if let Err(error) = crate::api::serve_api(client, api, &prefix, shutdown).await {
                tracing::error!(%error, "API failed");
            }
        });
    }
    let Node { runners, .. } = node;
    for runner in runners {
        let fail = fail.clone();
        tracker.spawn(async move {
            if let Err(error) = runner.await {
                fail("projector", error.to_string());
            }
        });
    }
    tracker.close();
    tracing::info!(data = %config.data.display(), last_seq = log.last_seq(), "plaint serving");
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = failure.cancelled() => {
            shutdown.cancel();
        }
    }
    tracing::info!("shutting down");
    if tokio::time::timeout(Duration::from_secs(30), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("tasks did not stop within 30 s");
    }
    let _ = client.flush().await;
    let log_for_sync = log.clone();
    tokio::task::spawn_blocking(move || {
        log_for_sync.sync()?;
        // Now rather than when the last handle drops: a snapshot error is reported here,
        // and the next start reads the indexes instead of rescanning the log.
        if let Err(error) = log_for_sync.save_index_snapshot() {
            tracing::warn!(%error, "could not save the index snapshot; the next start rescans the log");
        }
        Ok::<_, plaint_log::LogError>(())
    })
    .await
    .map_err(|e| ServeError::Other(e.to_string()))??;
    tracing::info!(last_seq = log.last_seq(), "stopped");
    if failure.is_cancelled() {
        return Err(ServeError::Other(
            "a component failed; see the log above".into(),
        ));
    }
    Ok(())
}

/// Opens a data directory for offline queries: the log plus every projector restored and
/// brought up to the log's head *in memory only* (nothing is committed, no effects run,
/// so a later `serve` still carries out whatever effects are due).
pub async fn open_offline(config: Config) -> Result<Api, ServeError> {
    let shutdown = CancellationToken::new();
    let node = tokio::task::spawn_blocking(move || {
        Node::assemble(
            config,
            Arc::new(plaint_runner::DiscardEffects),
            Arc::new(SystemClock),
            shutdown,
        )
    })
    .await
    .map_err(|e| ServeError::Other(e.to_string()))??;
    // Runners are not started: the API reads the restored views. Bring them up to date.
    node.catch_up_in_memory(OFFLINE_CATCH_UP).await?;
    Ok(node.api(None, "offline", None))
}

/// How far behind the log a view may be for an offline query to catch it up in memory.
pub const OFFLINE_CATCH_UP: u64 = 200_000;

/// Opens the log alone, for the offline commands that read nothing else (`replay`,
/// `verify`): no view is restored, so they start at once and hold only the log's indexes.
pub async fn open_offline_log(config: Config) -> Result<LogApi, ServeError> {
    let replay_page_bytes = config.api.replay_page_bytes;
    let log = tokio::task::spawn_blocking(move || open_log(&config))
        .await
        .map_err(|e| ServeError::Other(e.to_string()))??;
    Ok(LogApi {
        log,
        replay_page_bytes,
    })
}
