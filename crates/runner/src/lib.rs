//! The shell around every projector: it owns the views' storage, the clock, batching,
//! effects and checkpoints, so that projectors stay pure folds.
//!
//! - [`Runner`]: runs one [`Projection`] over the log. On start it restores the view from
//!   its [`ViewStore`] (a redb database per view), catches up from the checkpoint in
//!   batches, then tails new appends and calls `tick` when the projector's next wake-up
//!   comes due, with the time capped at the log's [`plaint_log::InputWatermark`] (while an
//!   ingest backlog waits upstream, time stops at the store time of the last message read;
//!   with upstream unknown, no tick). Each batch commits the changed view rows and the
//!   checkpoint in one write transaction (atomic), *after* the
//!   batch's effects were carried out, so a crash repeats effects (all idempotent) but
//!   never skips one.
//! - [`ProjectorHandle`]: what the rest of the system holds: the projector (for queries,
//!   behind a mutex never held across an await), its checkpoint and its name.
//! - [`EffectSink`]: where effects go (NATS in `serve`, a vector in tests).
//! - [`Clock`], [`SystemClock`], [`ManualClock`]: time is injected, so tests never sleep
//!   for a deadline; [`JumpGuardClock`] keeps wall-clock jumps from firing timers en masse
//!   or stalling them.
//! - [`rebuild`] and [`view_digest`]: drop a view and replay the whole log into it (no
//!   ticks, effects discarded; segments decoded ahead on one thread, rows written on
//!   another, `apply` on the caller's), and the deterministic digest to compare views.
//!   A view whose rows are of an older layout is rebuilt when its runner starts: in
//!   [`Runner::new`], or, with [`RunnerOptions::defer_rebuild`] (what `serve` uses), in
//!   [`Runner::run`], so that the rest of the node answers meanwhile. A rebuild marks the
//!   view until it finishes; a view still marked at a start (a crash, a stop halfway) is
//!   rebuilt again rather than caught up live from a partial state.
//! - [`ViewStore`] (`store`): where a view's rows and checkpoint live, and why not sled.
//!
//! What it does not do: decide anything about complaints. It never looks inside an event
//! beyond decoding it.

mod clock;
mod store;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use plaint_events::Timestamp;
use plaint_log::Log;
use plaint_projection::{digest_rows, Effect, Projection, ProjectionError, RowSource};
use tokio_util::sync::CancellationToken;

pub use clock::{Clock, InstantMonotonic, JumpGuardClock, ManualClock, Monotonic, SystemClock};
pub use store::ViewStore;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Log(#[from] plaint_log::LogError),
    #[error("view storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("entry {seq} of the log does not decode ({detail}); the log is damaged: run `plaint verify`")]
    Undecodable { seq: u64, detail: String },
}

/// Carries out effects. `serve` publishes them to NATS; tests collect them.
pub trait EffectSink: Send + Sync + 'static {
    fn carry_out(
        &self,
        projector: &'static str,
        effects: Vec<Effect>,
    ) -> BoxFuture<'_, Result<(), String>>;
}

/// An [`EffectSink`] that drops everything (rebuilds, offline tools).
#[derive(Debug, Default)]
pub struct DiscardEffects;

impl EffectSink for DiscardEffects {
    fn carry_out(&self, _: &'static str, _: Vec<Effect>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// An [`EffectSink`] that records effects, for tests.
#[derive(Debug, Default)]
pub struct CollectEffects(pub Mutex<Vec<Effect>>);

impl EffectSink for CollectEffects {
    fn carry_out(
        &self,
        _: &'static str,
        effects: Vec<Effect>,
    ) -> BoxFuture<'_, Result<(), String>> {
        self.0.lock().unwrap().extend(effects);
        Box::pin(async { Ok(()) })
    }
}

/// Tuning of a runner.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Events applied per committed batch.
    pub batch_size: usize,
    /// Longest sleep when nothing happens (also bounds how late a tick can be if the
    /// projector gives no wake-up time).
    pub idle_tick: Duration,
    /// Events per committed batch during a rebuild (at least `batch_size`).
    pub rebuild_batch: usize,
    /// Page cache of the view's database (the first runner or query to open a view in a
    /// process sets it).
    pub view_cache_bytes: usize,
    /// A view that must be rebuilt (rows of an older layout, an interrupted rebuild) is
    /// rebuilt by [`Runner::run`] (or [`Runner::catch_up`]) instead of [`Runner::new`], so
    /// that its handle exists at once: `serve` answers queries while one view rebuilds,
    /// and that view answers as of its checkpoint, which starts at 0.
    pub defer_rebuild: bool,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            batch_size: 2000,
            idle_tick: Duration::from_secs(1),
            rebuild_batch: 50_000,
            view_cache_bytes: ViewStore::DEFAULT_CACHE_BYTES,
            defer_rebuild: false,
        }
    }
}

/// A running projector as seen from outside.
pub struct ProjectorHandle<P> {
    pub name: &'static str,
    pub projector: Arc<Mutex<P>>,
    checkpoint: Arc<AtomicU64>,
    rows: ViewStore,
}

impl<P> Clone for ProjectorHandle<P> {
    fn clone(&self) -> Self {
        ProjectorHandle {
            name: self.name,
            projector: self.projector.clone(),
            checkpoint: self.checkpoint.clone(),
            rows: self.rows.clone(),
        }
    }
}

impl<P> ProjectorHandle<P> {
    /// Last sequence number applied and committed.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint.load(Ordering::Acquire)
    }

    /// Locks the projector for a query. Never hold this across an await.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, P> {
        self.projector.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The persisted rows, for queries about items paged out of memory. Read them under
    /// [`ProjectorHandle::lock`]: rows and memory are then of the same batch boundary.
    pub fn rows(&self) -> &ViewStore {
        &self.rows
    }
}

/// Type-erased status of a projector, for `plaint status`.
pub trait ProjectorStatus: Send + Sync {
    fn name(&self) -> &'static str;
    fn checkpoint(&self) -> u64;
    /// Digest of the persisted view and the checkpoint it belongs to, taken at a batch
    /// boundary.
    fn digest(&self) -> Result<(String, u64), RunnerError>;
    /// See [`Projection::resident_items`].
    fn resident_items(&self) -> Option<usize>;
}

impl<P: Projection> ProjectorStatus for ProjectorHandle<P> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn checkpoint(&self) -> u64 {
        ProjectorHandle::checkpoint(self)
    }
    fn digest(&self) -> Result<(String, u64), RunnerError> {
        let _projector = self.lock();
        store_digest(&self.rows)
    }
    fn resident_items(&self) -> Option<usize> {
        self.lock().resident_items()
    }
}

/// Applies the log from the handle's checkpoint to the head, in memory only: nothing is
/// committed and effects are discarded. Offline queries use this to read views that are
/// current without taking a running server's place (a later `serve` still applies, and
/// carries out the effects of, these events).
pub async fn catch_up_in_memory<P: Projection>(
    log: &Log,
    handle: &ProjectorHandle<P>,
) -> Result<u64, RunnerError> {
    let from = handle.checkpoint() + 1;
    let mut applied = 0;
    let mut projector = handle.lock();
    projector.set_rebuilding(true);
    let caught_up = (|| {
        for item in log.read_range(from, log.last_seq()) {
            let (seq, bytes) = item?;
            let event = decode_entry(seq, &bytes)?;
            page_in(&mut *projector, &handle.rows, [&event])?;
            projector.apply(seq, &event);
            handle.checkpoint.store(seq, Ordering::Release);
            applied += 1;
        }
        Ok(applied)
    })();
    projector.set_rebuilding(false);
    caught_up
}

/// Runs one projector.
pub struct Runner<P: Projection> {
    log: Log,
    handle: ProjectorHandle<P>,
    sink: Arc<dyn EffectSink>,
    clock: Arc<dyn Clock>,
    options: RunnerOptions,
    /// Cancelled when `run` is told to stop: a delivery that keeps failing gives up then.
    stopping: CancellationToken,
    /// The view was emptied for a rebuild that `run` or `catch_up` does
    /// ([`RunnerOptions::defer_rebuild`]).
    rebuild_pending: bool,
}

impl<P: Projection> Runner<P> {
    /// Restores `projector` from its view in the log's directory; a view that must be
    /// rebuilt (see [`RunnerOptions::defer_rebuild`]) is rebuilt from the log first.
    pub fn new(
        log: Log,
        projector: P,
        sink: Arc<dyn EffectSink>,
        clock: Arc<dyn Clock>,
        options: RunnerOptions,
    ) -> Result<Self, RunnerError> {
        let name = projector.name();
        let rows = ViewStore::open(log.path(), name, options.view_cache_bytes)?;
        let Some(why) = rebuild_needed(&log, &rows, name, projector.layout())? else {
            return Self::restore(log, projector, sink, clock, options, rows);
        };
        if options.defer_rebuild {
            tracing::warn!(
                projector = name,
                why,
                "the view will be rebuilt from the log; until then it answers as of its progress"
            );
            rows.begin_rebuild()?;
            let mut runner =
                Self::restore(log, projector_fresh(projector), sink, clock, options, rows)?;
            runner.rebuild_pending = true;
            return Ok(runner);
        }
        tracing::warn!(projector = name, why, "rebuilding the view from the log");
        // Effects discarded: they are in the log already.
        let (mut runner, report) = rebuild_runner(&log, projector, options, |_| {})?;
        tracing::info!(
            projector = name,
            events = report.events,
            seconds = report.seconds,
            "view rebuilt"
        );
        runner.handle.lock().set_rebuilding(false);
        runner.sink = sink;
        runner.clock = clock;
        Ok(runner)
    }

    /// Restores `projector` from `rows`, which need no rebuild.
    fn restore(
        log: Log,
        mut projector: P,
        sink: Arc<dyn EffectSink>,
        clock: Arc<dyn Clock>,
        options: RunnerOptions,
        rows: ViewStore,
    ) -> Result<Self, RunnerError> {
        let name = projector.name();
        let checkpoint = rows.checkpoint()?;
        let layout = projector.layout();
        if checkpoint == 0 && rows.layout()? != Some(layout) {
            rows.set_layout(layout)?;
        }
        // Only the live state: paged-out rows come back when an event or a query asks.
        let prefixes = projector.resident_prefixes();
        let mut failed = None;
        let mut resident = prefixes
            .iter()
            .flat_map(|prefix| rows.rows_with_prefix(prefix))
            .map_while(|row| row.map_err(|e| failed = Some(e)).ok());
        projector.restore(&mut resident)?;
        drop(resident);
        if let Some(error) = failed {
            return Err(error.into());
        }
        take_back_tick_cursor(&mut projector, &rows)?;
        if checkpoint > log.last_seq() {
            // The view is ahead of the log: the log was truncated (repair). Start over.
            tracing::warn!(
                projector = name,
                checkpoint,
                log_head = log.last_seq(),
                "view is ahead of the log; rebuilding it"
            );
            rows.clear()?;
            return Self::new(log, projector_fresh(projector), sink, clock, options);
        }
        tracing::info!(projector = name, checkpoint, "projector restored");
        let handle = ProjectorHandle {
            name,
            projector: Arc::new(Mutex::new(projector)),
            checkpoint: Arc::new(AtomicU64::new(checkpoint)),
            rows,
        };
        Ok(Runner {
            log,
            handle,
            sink,
            clock,
            options,
            stopping: CancellationToken::new(),
            rebuild_pending: false,
        })
    }

    /// Whether the view still has to be rebuilt by `run` or `catch_up`.
    pub fn rebuild_pending(&self) -> bool {
        self.rebuild_pending
    }

    /// Does the rebuild that `new` deferred, if any, on the blocking pool: queries go on
    /// meanwhile (the projector is locked one segment at a time). Returns false if
    /// `stopping` ended it early: the view stays marked, and the next start rebuilds again.
    async fn finish_pending_rebuild(&mut self) -> Result<bool, RunnerError> {
        if !self.rebuild_pending {
            return Ok(true);
        }
        let (log, handle, stopping) =
            (self.log.clone(), self.handle.clone(), self.stopping.clone());
        let batch_size = self.options.batch_size.max(self.options.rebuild_batch);
        handle.lock().set_rebuilding(true);
        let started = Instant::now();
        let replayed = tokio::task::spawn_blocking(move || {
            replay_into(&log, &handle, batch_size, |_| {}, Some(&stopping))
        })
        .await
        .map_err(|e| RunnerError::Storage(format!("the rebuild stopped: {e}")))?;
        self.handle.lock().set_rebuilding(false);
        let Some(events) = replayed? else {
            tracing::warn!(
                projector = self.handle.name,
                "stopped while rebuilding the view; the next start rebuilds it again"
            );
            return Ok(false);
        };
        let layout = self.handle.lock().layout();
        self.handle.rows.finish_rebuild(layout)?;
        self.rebuild_pending = false;
        tracing::info!(
            projector = self.handle.name,
            events,
            seconds = started.elapsed().as_secs_f64(),
            "view rebuilt"
        );
        Ok(true)
    }

    pub fn handle(&self) -> ProjectorHandle<P> {
        self.handle.clone()
    }

    /// Applies every entry after the checkpoint, batch by batch, without ticking. Returns
    /// the number of events applied.
    pub async fn catch_up(&mut self) -> Result<u64, RunnerError> {
        let from = self.handle.checkpoint();
        if !self.finish_pending_rebuild().await? {
            return Ok(self.handle.checkpoint() - from);
        }
        let mut applied = self.handle.checkpoint() - from;
        loop {
            let n = self.apply_batch().await?;
            if n == 0 {
                return Ok(applied);
            }
            applied += n;
        }
    }

    /// One batch: read, decode, apply, carry out effects, commit rows + checkpoint.
    async fn apply_batch(&self) -> Result<u64, RunnerError> {
        let from = self.handle.checkpoint() + 1;
        let head = self.log.last_seq();
        if from > head {
            return Ok(0);
        }
        let to = head.min(from + self.options.batch_size as u64 - 1);
        // Segment by segment: decode outside the projector's lock (queries wait on it),
        // apply a segment's events while they are still in cache.
        let mut effects = Vec::new();
        let mut applied = 0u64;
        for segment in self.log.segments(from) {
            let segment = segment?;
            if segment.first_seq > to {
                break;
            }
            let events = decode_segment(&segment, from, to)?;
            let mut projector = self.handle.lock();
            page_in(
                &mut *projector,
                &self.handle.rows,
                events.iter().map(|(_, e)| e),
            )?;
            for (seq, event) in &events {
                effects.extend(projector.apply(*seq, event));
            }
            applied += events.len() as u64;
        }
        let changes = self.handle.lock().take_changes();
        if !self.deliver(effects).await {
            // Stopping with effects not delivered: the batch stays uncommitted, so the
            // next start applies it again and repeats them (all idempotent).
            return Ok(0);
        }
        // Commit under the projector's lock so a digest taken under the same lock sees
        // rows and checkpoint of one batch boundary.
        let mut projector = self.handle.lock();
        self.commit(changes, to)?;
        // Everything taken is committed: what went cold may leave memory.
        projector.evict();
        Ok(applied)
    }

    /// Carries out effects, retrying until they succeed: skipping one would lose an alert
    /// or a breach record, and all of them are idempotent. Returns false only when the
    /// runner is stopping before they could be delivered.
    async fn deliver(&self, effects: Vec<Effect>) -> bool {
        if effects.is_empty() {
            return true;
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.sink.carry_out(self.handle.name, effects.clone()).await {
                Ok(()) => return true,
                Err(error) => {
                    tracing::warn!(projector = self.handle.name, %error, retry_in_ms = backoff.as_millis() as u64, "effects not delivered; retrying");
                    tokio::select! {
                        _ = self.stopping.cancelled() => {
                            tracing::warn!(projector = self.handle.name, "stopping with effects not delivered; they are repeated at the next start");
                            return false;
                        }
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn commit(
        &self,
        changes: Vec<plaint_projection::ViewChange>,
        checkpoint: u64,
    ) -> Result<(), RunnerError> {
        commit_rows(
            &self.handle.rows,
            &self.handle.checkpoint,
            changes,
            checkpoint,
        )
    }

    /// Catches up, then follows the log and the clock until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), RunnerError> {
        self.stopping = shutdown.clone();
        let followed = match self.finish_pending_rebuild().await {
            Ok(true) => self.follow(shutdown).await,
            stopped_or_failed => stopped_or_failed.map(drop),
        };
        // What was committed since the last durable commit is not applied again at the
        // next start.
        let synced = self.handle.rows.sync();
        followed.and(synced)
    }

    async fn follow(&mut self, shutdown: CancellationToken) -> Result<(), RunnerError> {
        let mut tail = self.log.subscribe();
        let name = self.handle.name;
        // Ticks never go back in time, though the input watermark may.
        let mut ticked = Timestamp::MIN;
        let mut kept_cursor = self.handle.rows.tick_cursor()?;
        loop {
            // Apply everything available before acting on time: a deadline must not fire
            // for a complaint whose response is already in the log.
            while self.apply_batch().await? > 0 {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
            }
            // Nor while that response may still wait upstream (an ingest backlog): act on
            // time only as far as the log is known to hold what was published.
            let now = self.clock.now();
            if let Some(upto) = self.log.input_watermark().cap(now) {
                if upto < now {
                    tracing::debug!(projector = name, %upto, %now, "ticking at the input watermark");
                }
                ticked = ticked.max(upto);
                let effects = {
                    let mut projector = self.handle.lock();
                    let mut keys = Vec::new();
                    projector.rows_due(ticked, &mut keys);
                    page_in_rows(&mut *projector, &self.handle.rows, keys)?;
                    let effects = projector.tick(ticked);
                    // Every change taken is committed (the loop above drained the log),
                    // and a tick changes no row: what it paged in may leave again.
                    projector.evict();
                    if let Some(cursor) = projector.tick_cursor() {
                        if kept_cursor != Some(cursor) {
                            self.handle.rows.set_tick_cursor(cursor)?;
                            kept_cursor = Some(cursor);
                        }
                    }
                    effects
                };
                self.deliver(effects).await;
            }
            let sleep_for = {
                let wakeup = self.handle.lock().next_wakeup();
                match wakeup {
                    Some(at) => {
                        let millis = at.duration_since(self.clock.now()).as_millis().max(0) as u64;
                        Duration::from_millis(millis).min(self.options.idle_tick)
                    }
                    None => self.options.idle_tick,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {
                    tracing::info!(projector = name, checkpoint = self.handle.checkpoint(), "projector stopped");
                    return Ok(());
                }
                changed = tail.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                _ = self.clock.sleep(sleep_for) => {}
            }
        }
    }
}

/// Reads the paged-out rows that `events` need and hands them to the projector, so that
/// `apply` finds in memory everything it decides on.
fn page_in<'e, P: Projection>(
    projector: &mut P,
    rows: &ViewStore,
    events: impl IntoIterator<Item = &'e plaint_events::Event>,
) -> Result<(), RunnerError> {
    let mut keys = Vec::new();
    for event in events {
        projector.rows_needed(event, &mut keys);
    }
    page_in_rows(projector, rows, keys)
}

/// Reads the rows under `keys` (asked for by `rows_needed` or `rows_due`) and hands each
/// to the projector, in key order.
fn page_in_rows<P: Projection>(
    projector: &mut P,
    rows: &ViewStore,
    mut keys: Vec<Vec<u8>>,
) -> Result<(), RunnerError> {
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let row = rows.row(&key)?;
        projector.page_in(&key, row.as_deref())?;
    }
    Ok(())
}

/// Hands the projector the tick cursor kept beside its view, if any.
fn take_back_tick_cursor<P: Projection>(
    projector: &mut P,
    rows: &ViewStore,
) -> Result<(), RunnerError> {
    if let Some(cursor) = rows.tick_cursor()? {
        projector.restore_tick_cursor(cursor);
    }
    Ok(())
}

fn projector_fresh<P: Projection>(mut projector: P) -> P {
    let mut empty = std::iter::empty();
    // Restoring from no rows resets the state.
    let _ = projector.restore(&mut empty);
    projector
}

/// Writes changed rows and the checkpoint in one transaction, then publishes the
/// checkpoint.
fn commit_rows(
    store: &ViewStore,
    published: &AtomicU64,
    changes: Vec<plaint_projection::ViewChange>,
    checkpoint: u64,
) -> Result<(), RunnerError> {
    store.commit(changes, checkpoint)?;
    published.store(checkpoint, Ordering::Release);
    Ok(())
}

/// Drops the sled tree in which plaint kept `projector`'s view before views moved to redb.
/// Returns whether there was one.
fn drop_sled_view(log: &Log, projector: &str) -> Result<bool, RunnerError> {
    let name = format!("view/{projector}");
    let existed = log
        .db()
        .drop_tree(name.as_bytes())
        .map_err(|e| RunnerError::Storage(format!("dropping the sled tree {name}: {e}")))?;
    Ok(existed)
}

/// The decoded entries of one segment with `from <= seq <= to`.
fn decode_segment(
    segment: &plaint_log::Segment,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, plaint_events::Event)>, RunnerError> {
    let view = segment.view();
    let mut events = Vec::with_capacity(view.len());
    for (seq, bytes) in view.iter() {
        if seq < from {
            continue;
        }
        if seq > to {
            break;
        }
        events.push((seq, decode_entry(seq, bytes)?));
    }
    Ok(events)
}

/// Decoded segments of `from..=to`, decoded on a thread of their own: a rebuild decodes
/// the next segments while it applies this one (decoding is about half of a rebuild's
/// CPU, and the machine has more than one core). A few segments of read-ahead bound the
/// memory.
type DecodedSegment = Result<Vec<(u64, plaint_events::Event)>, RunnerError>;

fn decode_ahead(
    log: Log,
    from: u64,
    to: u64,
) -> (
    std::thread::JoinHandle<()>,
    std::sync::mpsc::Receiver<DecodedSegment>,
) {
    let (tx, rx) = std::sync::mpsc::sync_channel(8);
    let thread = std::thread::Builder::new()
        .name("plaint-decode".into())
        .spawn(move || {
            for segment in log.segments(from) {
                let decoded = segment
                    .map_err(RunnerError::from)
                    .and_then(|segment| {
                        if segment.first_seq > to {
                            Ok(None)
                        } else {
                            decode_segment(&segment, from, to).map(Some)
                        }
                    })
                    .transpose();
                let Some(decoded) = decoded else { return };
                let failed = decoded.is_err();
                // The receiver is gone when the rebuild stopped on an error of its own.
                if tx.send(decoded).is_err() || failed {
                    return;
                }
            }
        })
        .expect("a thread can be spawned");
    (thread, rx)
}

/// Decodes a log entry; an entry that does not decode means a damaged log.
fn decode_entry(seq: u64, bytes: &[u8]) -> Result<plaint_events::Event, RunnerError> {
    plaint_events::decode_stored(bytes).map_err(|r| RunnerError::Undecodable {
        seq,
        detail: r.to_string(),
    })
}

/// The digest of a view's rows (not the checkpoint) and its checkpoint.
pub fn view_digest(log: &Log, projector: &str) -> Result<(String, u64), RunnerError> {
    store_digest(&ViewStore::open(
        log.path(),
        projector,
        ViewStore::DEFAULT_CACHE_BYTES,
    )?)
}

fn store_digest(store: &ViewStore) -> Result<(String, u64), RunnerError> {
    let checkpoint = store.checkpoint()?;
    let mut rows = Vec::new();
    store.for_each_row(|k, v| rows.push((k.to_vec(), v.to_vec())))?;
    Ok((
        digest_rows(rows.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))),
        checkpoint,
    ))
}

/// What a rebuild did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RebuildReport {
    pub projector: &'static str,
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub digest: String,
    pub checkpoint: u64,
}

/// Drops the projector's view and replays the whole log into `fresh` (a projector built
/// from config, with no state). No ticks; effects are discarded (their results are in the
/// log already). `progress` is called with the sequence reached after each batch.
pub async fn rebuild<P: Projection>(
    log: &Log,
    fresh: P,
    options: RunnerOptions,
    progress: impl FnMut(u64),
) -> Result<RebuildReport, RunnerError> {
    rebuild_runner(log, fresh, options, progress).map(|(_, report)| report)
}

/// Replays the whole log into the empty view of `handle` (no ticks, effects dropped),
/// committing every `batch_size` events; returns the number of events, or `None` if
/// `stop` ended it first.
fn replay_into<P: Projection>(
    log: &Log,
    handle: &ProjectorHandle<P>,
    batch_size: usize,
    mut progress: impl FnMut(u64),
    stop: Option<&CancellationToken>,
) -> Result<Option<u64>, RunnerError> {
    let head = log.last_seq();
    // Three stages on their own threads: decode, apply (here), write rows. Each
    // is a large share of the work, and the rows of batch N are written while batch N+1
    // is applied.
    let (decoder, decoded) = decode_ahead(log.clone(), 1, head);
    let (to_commit, commits) =
        std::sync::mpsc::sync_channel::<(Vec<plaint_projection::ViewChange>, u64)>(1);
    // One message per committed batch: eviction waits for the rows it relies on.
    let (committed_tx, committed_rx) = std::sync::mpsc::channel::<()>();
    let committer = {
        let store = handle.rows.clone();
        let published = handle.checkpoint.clone();
        std::thread::Builder::new()
            .name("plaint-commit".into())
            .spawn(move || -> Result<(), RunnerError> {
                for (changes, checkpoint) in commits {
                    commit_rows(&store, &published, changes, checkpoint)?;
                    // The receiver is gone only when the rebuild stopped already.
                    let _ = committed_tx.send(());
                }
                Ok(())
            })
            .expect("a thread can be spawned")
    };
    let mut in_flight = 0usize;
    let committed = |committer: std::thread::JoinHandle<Result<(), RunnerError>>| {
        committer.join().expect("the commit thread does not panic")
    };
    let mut events = 0;
    let mut uncommitted = 0;
    let mut reached = 0;
    while let Ok(segment) = decoded.recv() {
        if stop.is_some_and(|stop| stop.is_cancelled()) {
            drop(to_commit);
            drop(decoded);
            decoder.join().expect("the decoding thread does not panic");
            committed(committer)?;
            handle.rows.sync()?;
            return Ok(None);
        }
        let segment = match segment {
            Ok(segment) => segment,
            Err(error) => {
                drop(to_commit);
                committed(committer)?;
                return Err(error);
            }
        };
        {
            let mut projector = handle.lock();
            // Rows of evicted items are committed (eviction waited for them).
            page_in(
                &mut *projector,
                &handle.rows,
                segment.iter().map(|(_, e)| e),
            )?;
            for (seq, event) in &segment {
                // Effects are dropped: their results are in the log already.
                projector.apply(*seq, event);
            }
        }
        if let Some((last, _)) = segment.last() {
            reached = *last;
        }
        events += segment.len() as u64;
        uncommitted += segment.len();
        if uncommitted >= batch_size {
            // The previous batch was written while this one was applied; once it is
            // committed, what went cold in it may leave memory.
            while in_flight > 0 && committed_rx.recv().is_ok() {
                in_flight -= 1;
            }
            let changes = {
                let mut projector = handle.lock();
                if in_flight == 0 {
                    projector.evict();
                }
                projector.take_changes()
            };
            if to_commit.send((changes, reached)).is_err() {
                // The committer stopped on an error: report it.
                break;
            }
            in_flight += 1;
            progress(reached);
            uncommitted = 0;
        }
    }
    if uncommitted > 0 {
        let changes = handle.lock().take_changes();
        // An error here is the committer's, reported by the join below.
        let _ = to_commit.send((changes, reached));
        progress(reached);
    }
    drop(to_commit);
    drop(decoded);
    decoder.join().expect("the decoding thread does not panic");
    committed(committer)?;
    handle.rows.sync()?;
    // What ticks sent before the rebuild stays sent: the replay re-created its timers.
    take_back_tick_cursor(&mut *handle.lock(), &handle.rows)?;
    Ok(Some(events))
}

/// Why the view in `rows` must be rebuilt from the log before it can be used, if it must.
fn rebuild_needed(
    log: &Log,
    rows: &ViewStore,
    projector: &str,
    layout: u32,
) -> Result<Option<&'static str>, RunnerError> {
    let checkpoint = rows.checkpoint()?;
    let stored_layout = rows.layout()?;
    let moved_out_of_sled = drop_sled_view(log, projector)?;
    Ok(if rows.rebuild_interrupted()? {
        Some("a rebuild of the view did not finish")
    } else if checkpoint > 0 && stored_layout != Some(layout) {
        Some("the view's rows are of an older layout")
    } else if checkpoint == 0 && moved_out_of_sled && log.last_seq() > 0 {
        Some("the view was kept in sled by an older plaint")
    } else {
        None
    })
}

/// [`rebuild`], returning the runner over the rebuilt view (with a sink that discards
/// effects and the system clock; the caller swaps in its own) and the projector still
/// marked rebuilding.
fn rebuild_runner<P: Projection>(
    log: &Log,
    fresh: P,
    options: RunnerOptions,
    progress: impl FnMut(u64),
) -> Result<(Runner<P>, RebuildReport), RunnerError> {
    let mut fresh = fresh;
    // Its effects are dropped below, so it need not build them.
    fresh.set_rebuilding(true);
    let name = fresh.name();
    let layout = fresh.layout();
    let rows = ViewStore::open(log.path(), name, options.view_cache_bytes)?;
    rows.begin_rebuild()?;
    // Large batches: a row touched by many events of a batch is encoded and written once,
    // and a rebuild has no live reader waiting for the next checkpoint.
    let options = RunnerOptions {
        batch_size: options.batch_size.max(options.rebuild_batch),
        ..options
    };
    let batch_size = options.batch_size;
    let started = Instant::now();
    let runner = Runner::restore(
        log.clone(),
        fresh,
        Arc::new(DiscardEffects),
        Arc::new(SystemClock),
        options,
        rows,
    )?;
    let events = replay_into(log, &runner.handle, batch_size, progress, None)?
        .expect("a replay without a stop signal runs to the end");
    runner.handle.rows.finish_rebuild(layout)?;
    let seconds = started.elapsed().as_secs_f64();
    let (digest, checkpoint) = view_digest(log, name)?;
    runner.handle.lock().evict();
    let report = RebuildReport {
        projector: name,
        events,
        seconds,
        events_per_second: events as f64 / seconds.max(1e-9),
        digest,
        checkpoint,
    };
    Ok((runner, report))
}
