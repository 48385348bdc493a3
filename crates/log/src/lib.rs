//! plaint's append-only event log, stored in sled.
//!
//! Every accepted event gets a global sequence number (gapless, from 1) and is kept with
//! its bytes exactly as received. The log is the only source of truth: every view is a
//! fold over it.
//!
//! - [`Log`]: a cheap, clonable handle: open a data directory, read by sequence range,
//!   by complaint, tail new appends ([`Log::subscribe`]), [`Log::verify`] the hash chain.
//! - [`LogWriter`]: the single writer (a mutex guard). [`LogWriter::begin`] starts a
//!   [`PendingBatch`]; [`LogWriter::stage`] decides each candidate's [`Outcome`]
//!   (appended, duplicate, rejected, version conflict) against the log *and* the batch so
//!   far; [`LogWriter::commit`] writes the batch atomically and makes it durable.
//! - [`Segment`], [`EntryMeta`]: what reads return: whole segments (for fast replay that
//!   splices stored bytes) and per-entry index records (id, time, type, version,
//!   complaint, region, chain hash), so filters need no JSON decoding.
//! - [`Durability`]: `Fsync` (default; survives power loss) or `Flush` (survives a
//!   process crash only).
//!
//! Invariants, each tested: an append is all-or-nothing (the segment's record is written
//! to its file first, then its location and the chain head are one `sled::Batch` on one
//! tree, and bytes no location refers to are cut at open); a duplicate id with the same JSON content is
//! `Duplicate(seq)` however late it comes; the same id with other content is rejected
//! `conflicting_duplicate`; stateful rules (lifecycle, subject region, expected version)
//! are checked here, where the stream state lives. What it does not do: decode or
//! validate JSON ([`plaint_events::decode`] does), talk to NATS, run projectors.
//!
//! The layout is described in [`format`]; why it looks like that is in ARCHITECTURE.md ("Storage").

mod files;
pub mod format;
mod index;
mod snapshot;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, RwLock,
    },
};

use plaint_events::{lifecycle, Event, EventBody, RejectReason, Rejection};
use tokio::sync::watch;
use uuid::Uuid;

use files::SegmentFiles;
pub use format::{EntryMeta, Head, Location, MetaRef, SegmentView};
use index::{complaint_key, id_key, IdIndex, StreamHead, StreamIndex};

/// The file, inside the log's directory, that caches its in-memory indexes between runs.
pub fn index_snapshot_path(dir: &Path) -> PathBuf {
    snapshot::path(dir)
}

/// The scratch file, inside the log's directory, that holds the sealed chunks of
/// back-pointers (see `index::BackPointers`): written again at every open and unlinked as
/// soon as it is created, so it never outlives the process.
const BACK_POINTERS_FILE: &str = "plaint-back-pointers";

/// Opening a log whose snapshot is this many events behind (or missing) rewrites the
/// snapshot straight away, so that the next start is fast even if this process crashes.
const SNAPSHOT_AFTER_SCANNING: u64 = 1_000_000;

/// How hard a commit pushes its bytes to the disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// sled `flush` then `syncfs` of the database's filesystem: survives a power cut.
    /// (sled 0.34's flush uses `sync_file_range`, and never fsyncs its blob files.)
    #[default]
    Fsync,
    /// sled `flush` only: survives a crash of the process, not of the machine.
    Flush,
}

#[derive(Debug, Clone)]
pub struct LogOptions {
    pub durability: Durability,
    /// sled's page cache; sled's own default (1 GiB) is too much for a small node, and
    /// sled holds only 32 bytes per segment (about 320 KB at 10 million events).
    pub cache_bytes: u64,
    /// Save the index snapshot after this many appended events (0: only when the last
    /// handle closes), which bounds what a start after a crash rescans. Saving holds the
    /// writer for ~0.05 s per million events in the log.
    pub index_snapshot_every: u64,
    /// A segment file takes no new append once it is this long ([`format::ROLL_BYTES`] by
    /// default); small values make tests roll files.
    pub segment_file_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            durability: Durability::Fsync,
            cache_bytes: 8 * 1024 * 1024,
            index_snapshot_every: 2_000_000,
            segment_file_bytes: format::ROLL_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot open the log at {path}: {source}. Is another `plaint` process using this data directory? Stop it, or use the running server's API instead of --data")]
    Open { path: PathBuf, source: sled::Error },
    #[error("sled error: {0}")]
    Storage(#[from] sled::Error),
    #[error("cannot read or write the segment files: {0}")]
    Files(std::io::Error),
    #[error("the log at {path} has layout {found:?}, this plaint reads {expected:?}; export it with the plaint version that wrote it (`plaint replay`) and import it here")]
    Incompatible {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("the log is inconsistent at sequence {seq}: {what}. Do not serve from it: run `plaint verify --data {data}` to see the first bad entry, then `plaint repair --data {data} --redeliver` to truncate to the last good entry (events after it come back from JetStream)", data = .path.parent().unwrap_or(.path.as_path()).display())]
    Corrupt {
        path: PathBuf,
        seq: u64,
        what: String,
    },
    #[error("the log holds {0} events, the most this version of plaint indexes (32-bit sequence numbers in memory); start a new log")]
    Full(u64),
    #[error("the batch was written but could not be made durable ({0}); nothing was acknowledged. plaint retries; check free disk space and the disk's health")]
    NotDurable(std::io::Error),
}

/// How far the log is known to hold what upstream published: projectors act on time (fire
/// deadlines, close periods) only up to it, so that a deadline does not fire while the
/// event that meets it is still waiting upstream, unread.
///
/// The ingester keeps it (a log without one is [`InputWatermark::Complete`]):
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputWatermark {
    /// Nothing upstream is waiting (or nothing feeds this log): time is not held back.
    #[default]
    Complete,
    /// Everything upstream published before this time is in the log; later messages may
    /// be waiting (a backlog).
    Through(plaint_events::Timestamp),
    /// Upstream is not reachable (or not read yet): nothing is known.
    Unknown,
}

impl InputWatermark {
    /// The time projectors may act up to at wall time `now` (`None`: not at all).
    pub fn cap(self, now: plaint_events::Timestamp) -> Option<plaint_events::Timestamp> {
        match self {
            InputWatermark::Complete => Some(now),
            InputWatermark::Through(through) => Some(now.min(through)),
            InputWatermark::Unknown => None,
        }
    }
}

/// What [`LogWriter::stage`] decided for one candidate event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Will have this sequence number once the batch commits.
    Appended(u64),
    /// The same event (same id, same JSON content) is already at this sequence number.
    Duplicate(u64),
    Rejected(Rejection),
    /// `ExpectedVersion::Exactly` did not match the complaint's current version.
    VersionConflict {
        expected: u32,
        actual: u32,
    },
}

/// Optimistic concurrency for direct appends (operator commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpectedVersion {
    #[default]
    Any,
    /// The complaint's stream must be at exactly this version (0: no events yet).
    Exactly(u32),
}

/// One event offered to the log.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub event: &'a Event,
    /// The bytes exactly as received; these are stored.
    pub bytes: &'a [u8],
    /// The `<region>` token of the subject it arrived on, if it came from NATS.
    pub subject_region: Option<&'a str>,
    pub expected: ExpectedVersion,
}

struct PendingEntry {
    meta: EntryMeta,
    bytes: Vec<u8>,
}

#[derive(Clone)]
struct PendingStream {
    status: lifecycle::StreamStatus,
    version: u32,
    region: String,
}

/// Events staged for one atomic append.
pub struct PendingBatch {
    first_seq: u64,
    entries: Vec<PendingEntry>,
    by_id: HashMap<Uuid, usize>,
    streams: HashMap<String, PendingStream>,
}

impl PendingBatch {
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The result of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub first_seq: u64,
    pub last_seq: u64,
    pub chain: [u8; 32],
}

/// Summary of the log's state, for `plaint status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogStatus {
    pub last_seq: u64,
    /// Hex BLAKE3 chain head: publish it externally to make later tampering evident.
    pub chain_head: String,
    pub segments: u64,
    pub complaints: usize,
    pub durability: Durability,
    /// The last sequence number the index snapshot on disk covers (0: none yet).
    pub index_snapshot_seq: u64,
}

struct State {
    head: Head,
    ids: IdIndex,
    streams: StreamIndex,
}

impl State {
    fn stream_head(&self, complaint_id: &str) -> Option<StreamHead> {
        self.streams.get(complaint_key(complaint_id))
    }
}

/// Where the log's bytes are: the sled tree of segment locations and the head, and the
/// segment files they point into.
struct Store {
    /// The database directory (`plaint.sled`), named in errors.
    path: PathBuf,
    tree: sled::Tree,
    files: SegmentFiles,
}

impl Store {
    fn corrupt(&self, seq: u64, what: String) -> LogError {
        LogError::Corrupt {
            path: self.path.clone(),
            seq,
            what,
        }
    }

    /// A failed read of a segment file: missing or short bytes are damage at `seq`;
    /// anything else (permissions, I/O) is reported as it is.
    fn read_failed(&self, seq: u64, error: std::io::Error) -> LogError {
        use std::io::ErrorKind as K;
        match error.kind() {
            K::UnexpectedEof | K::InvalidData | K::NotFound => {
                self.corrupt(seq, format!("the segment's bytes are unreadable ({error})"))
            }
            _ => LogError::Files(error),
        }
    }

    fn decode_location(&self, key: &[u8], value: &[u8]) -> Result<(u64, Location), LogError> {
        let first_seq = format::seq_of_key(key).unwrap_or(0);
        let location = Location::decode(value).ok_or_else(|| {
            self.corrupt(
                first_seq,
                "the segment's location record is unreadable".into(),
            )
        })?;
        Ok((first_seq, location))
    }

    /// The locations of the segments starting at `from` or later, in order.
    fn locations(&self, from: u64) -> impl Iterator<Item = Result<(u64, Location), LogError>> + '_ {
        self.tree
            .range(format::segment_key(from)..=format::segment_key(u64::MAX))
            .map(move |item| {
                let (key, value) = item?;
                self.decode_location(&key, &value)
            })
    }

    /// The location of the segment holding `seq` (or of the last one, past the head).
    fn location_at(&self, seq: u64) -> Result<Option<(u64, Location)>, LogError> {
        if seq == 0 {
            return Ok(None);
        }
        self.tree
            .range(format::segment_key(1)..=format::segment_key(seq))
            .next_back()
            .map(|item| {
                let (key, value) = item?;
                self.decode_location(&key, &value)
            })
            .transpose()
    }

    fn last_location(&self) -> Result<Option<(u64, Location)>, LogError> {
        self.location_at(u64::MAX)
    }

    fn segment_bytes(&self, first_seq: u64, location: &Location) -> Result<Vec<u8>, LogError> {
        self.files
            .read_segment(location)
            .map_err(|e| self.read_failed(first_seq, e))
    }

    /// The segment's index records; `None` if they fail their checksum.
    fn meta_bytes(&self, first_seq: u64, location: &Location) -> Result<Option<Vec<u8>>, LogError> {
        self.files
            .read_meta(location)
            .map_err(|e| self.read_failed(first_seq, e))
    }

    /// The index record at `seq`, and whether it is the last of its segment.
    fn meta_at<T>(
        &self,
        seq: u64,
        f: impl FnOnce(MetaRef<'_>, bool) -> T,
    ) -> Result<Option<T>, LogError> {
        let Some((first_seq, location)) = self.location_at(seq)? else {
            return Ok(None);
        };
        let Some(value) = self.meta_bytes(first_seq, &location)? else {
            return Ok(None);
        };
        let mut records = format::meta_records(&value).skip((seq - first_seq) as usize);
        let Some(Some(record)) = records.next() else {
            return Ok(None);
        };
        let last_of_segment = records.next().is_none();
        Ok(Some(f(record, last_of_segment)))
    }

    fn id_at(&self, seq: u64) -> Result<Option<Uuid>, LogError> {
        self.meta_at(seq, |m, _| m.id)
    }

    /// The chain hash at `seq` if a segment ends there ([0; 32] at 0: the empty log).
    fn chain_at_segment_end(&self, seq: u64) -> Result<Option<[u8; 32]>, LogError> {
        if seq == 0 {
            return Ok(Some([0; 32]));
        }
        Ok(self
            .meta_at(seq, |m, last| last.then_some(m.chain))?
            .flatten())
    }

    /// Whether an earlier entry has this id (fingerprints may collide: the index records
    /// say whose id each candidate is).
    fn is_indexed(&self, ids: &IdIndex, id: &Uuid) -> Result<bool, LogError> {
        for earlier in ids.candidates(id_key(id)) {
            if self.id_at(earlier)? == Some(*id) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One entry's bytes, read without the rest of its segment.
    fn event(&self, seq: u64) -> Result<Option<Vec<u8>>, LogError> {
        let Some((first_seq, location)) = self.location_at(seq)? else {
            return Ok(None);
        };
        self.files
            .read_event(&location, (seq - first_seq) as usize)
            .map_err(|e| self.read_failed(first_seq, e))
    }
}

struct Inner {
    db: sled::Db,
    store: Store,
    options: LogOptions,
    state: RwLock<State>,
    writer: Mutex<()>,
    tail: watch::Sender<u64>,
    input: watch::Sender<InputWatermark>,
    /// The last sequence number the index snapshot on disk covers.
    snapshot_seq: Arc<AtomicU64>,
    /// A snapshot being written in the background, if any.
    snapshot_job: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Inner {
    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Merges the indexes' recent entries into their sorted runs, one part at a time, for
    /// the parts whose entries have grown enough. Each part is built under the read lock
    /// (readers go on meanwhile) and installed, with its recent entries dropped, under a
    /// short write lock; the part it replaced is freed after the lock is released. So a
    /// merge holds at most one part's new arrays beyond the live indexes (1/256 of them).
    /// Only the single writer may call this, since nothing may be recorded between
    /// building a part and installing it.
    fn merge_indexes(&self) {
        let (id_parts, stream_parts) = {
            let state = self.read_state();
            (state.ids.due_parts(), state.streams.due_parts())
        };
        for part in id_parts {
            let new = self.read_state().ids.merged_part(part);
            let replaced = self.write_state().ids.install_part(part, new);
            drop(replaced);
        }
        for part in stream_parts {
            let new = self.read_state().streams.merged_part(part);
            let replaced = self.write_state().streams.install_part(part, new);
            drop(replaced);
        }
    }

    /// A copy of the indexes if the snapshot on disk is behind them. Only the single writer
    /// (or the last handle, in `drop`) may call this.
    fn capture(&self) -> Option<snapshot::Capture> {
        let state = self.read_state();
        (self.snapshot_seq.load(Ordering::Acquire) != state.head.last_seq).then(|| {
            snapshot::Capture::of(
                state.head.last_seq,
                state.head.chain,
                &state.ids,
                &state.streams,
            )
        })
    }

    fn write_snapshot(
        dir: &Path,
        capture: &snapshot::Capture,
        covered: &AtomicU64,
    ) -> std::io::Result<()> {
        let started = std::time::Instant::now();
        snapshot::write(dir, capture)?;
        covered.store(capture.last_seq(), Ordering::Release);
        tracing::info!(
            last_seq = capture.last_seq(),
            millis = started.elapsed().as_millis() as u64,
            "index snapshot saved"
        );
        Ok(())
    }

    /// Waits for a background snapshot, then writes one if the log has moved on since.
    fn save_snapshot(&self) -> std::io::Result<bool> {
        let job = self
            .snapshot_job
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(job) = job {
            let _ = job.join();
        }
        let Some(capture) = self.capture() else {
            return Ok(false);
        };
        Self::write_snapshot(&self.store.path, &capture, &self.snapshot_seq)?;
        Ok(true)
    }

    /// Starts writing a snapshot on a thread of its own, unless one is being written. Only
    /// the single writer may call this: the capture is taken on its thread (it shares the
    /// indexes' parts and copies their recent entries: ~15 ms at 10 million events), the
    /// writing and fsync are not.
    fn start_snapshot(&self) {
        let mut job = self.snapshot_job.lock().unwrap_or_else(|e| e.into_inner());
        if job.as_ref().is_some_and(|j| !j.is_finished()) {
            return;
        }
        let started = std::time::Instant::now();
        let Some(capture) = self.capture() else {
            return;
        };
        tracing::debug!(
            millis = started.elapsed().as_millis() as u64,
            last_seq = capture.last_seq(),
            "indexes captured for a snapshot"
        );
        let (dir, covered) = (self.store.path.clone(), self.snapshot_seq.clone());
        let spawned = std::thread::Builder::new()
            .name("plaint-index-snapshot".into())
            .spawn(move || {
                if let Err(error) = Self::write_snapshot(&dir, &capture, &covered) {
                    tracing::warn!(%error, "could not save the index snapshot; a start after a crash rescans more of the log");
                }
            });
        match spawned {
            Ok(handle) => *job = Some(handle),
            Err(error) => tracing::warn!(%error, "could not start the index snapshot thread"),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(error) = self.save_snapshot() {
            tracing::warn!(%error, path = %self.store.path.display(), "could not save the index snapshot; the next start rescans the log's index records");
        }
    }
}

/// A handle on the log. Clones share one database; reads may run on any thread while the
/// single [`LogWriter`] appends.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("path", &self.inner.store.path)
            .finish()
    }
}

impl Log {
    /// Opens (or creates) the log in `dir` (a sled database directory, by default
    /// `./data/plaint.sled`), checks that its last segment agrees with its head and loads
    /// the id and stream indexes from the index records.
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<Log, LogError> {
        let path = dir.as_ref().to_path_buf();
        let started = std::time::Instant::now();
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(options.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|source| LogError::Open {
                path: path.clone(),
                source,
            })?;
        // sled replays its own log since its last page-table snapshot here: the part of a
        // cold start that grows with what was written since the database was last opened.
        tracing::debug!(
            millis = started.elapsed().as_millis() as u64,
            "sled database opened"
        );
        Self::from_db(path, db, options)
    }

    /// The sled database this log lives in; projectors keep their trees in it too, so one
    /// flush covers everything.
    pub fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    pub fn path(&self) -> &Path {
        &self.inner.store.path
    }

    fn from_db(path: PathBuf, db: sled::Db, options: LogOptions) -> Result<Log, LogError> {
        let tree = db.open_tree("log")?;
        match tree.get(format::VERSION_KEY)? {
            Some(v) if v.as_ref() != format::LAYOUT_VERSION => {
                return Err(LogError::Incompatible {
                    path,
                    found: String::from_utf8_lossy(&v).into_owned(),
                    expected: String::from_utf8_lossy(format::LAYOUT_VERSION).into_owned(),
                })
            }
            Some(_) => {}
            None => {
                tree.insert(format::VERSION_KEY, format::LAYOUT_VERSION)?;
            }
        }
        let head = match tree.get(format::HEAD_KEY)? {
            Some(bytes) => Head::decode(&bytes).ok_or_else(|| LogError::Corrupt {
                path: path.clone(),
                seq: 0,
                what: "the head record is unreadable".into(),
            })?,
            None => Head::EMPTY,
        };
        let fsync = options.durability == Durability::Fsync;
        let files = SegmentFiles::open(&path, fsync, options.segment_file_bytes)
            .map_err(LogError::Files)?;
        let store = Store { path, tree, files };
        let last = store.last_location()?;
        store
            .files
            .trim_after(last.as_ref().map(|(_, l)| l))
            .map_err(LogError::Files)?;
        let started = std::time::Instant::now();
        let (mut state, snapshot_seq) = Self::load_indexes(&store, head)?;
        match index::SpillFile::create(store.path.join(BACK_POINTERS_FILE)) {
            Ok(spill) => state.streams.spill_back_pointers(spill),
            Err(error) => {
                tracing::warn!(%error, path = %store.path.display(), "cannot create the back-pointers' spill file; they stay in memory (4 bytes per event)")
            }
        }
        let (tail, _) = watch::channel(head.last_seq);
        tracing::info!(
            path = %store.path.display(),
            last_seq = head.last_seq,
            complaints = state.streams.len(),
            from_snapshot = snapshot_seq,
            index_millis = started.elapsed().as_millis() as u64,
            "log opened"
        );
        let log = Log {
            inner: Arc::new(Inner {
                db,
                store,
                options,
                state: RwLock::new(state),
                writer: Mutex::new(()),
                tail,
                input: watch::channel(InputWatermark::Complete).0,
                snapshot_seq: Arc::new(AtomicU64::new(snapshot_seq)),
                snapshot_job: Mutex::new(None),
            }),
        };
        if head.last_seq - snapshot_seq >= SNAPSHOT_AFTER_SCANNING {
            // No writer exists yet, so nothing changes while the copy is taken.
            log.inner.start_snapshot();
        }
        Ok(log)
    }

    /// Saves the in-memory indexes to the index snapshot (if it is behind the log), so that
    /// the next open reads them instead of rescanning the log. The last handle's drop does
    /// it too; a server calls it on shutdown to be sure. Waits for the writer: do not call
    /// it while holding a [`LogWriter`].
    pub fn save_index_snapshot(&self) -> Result<bool, LogError> {
        let _writer = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.save_snapshot().map_err(LogError::NotDurable)
    }

    /// The indexes from the snapshot if it agrees with the log, plus the index records after
    /// it (all of them without a snapshot). Returns the state and the sequence number the
    /// snapshot covered (0: none).
    fn load_indexes(store: &Store, head: Head) -> Result<(State, u64), LogError> {
        let snapshot = match snapshot::read(&store.path) {
            Ok(Some(s))
                if s.last_seq <= head.last_seq
                    && store.chain_at_segment_end(s.last_seq)? == Some(s.chain) =>
            {
                Some(s)
            }
            Ok(Some(s)) => {
                tracing::warn!(
                    snapshot_seq = s.last_seq,
                    last_seq = head.last_seq,
                    "the index snapshot does not match the log (restored or repaired?); rescanning the index records"
                );
                None
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "the index snapshot is unreadable; rescanning the index records");
                None
            }
        };
        let (mut ids, mut streams, mut last_chain, from) = match snapshot {
            Some(s) => (s.ids, s.streams, s.chain, s.last_seq),
            None => (IdIndex::default(), StreamIndex::default(), [0u8; 32], 0),
        };
        let mut expected_seq = from + 1;
        for item in store.locations(expected_seq) {
            let (first_seq, location) = item?;
            if first_seq != expected_seq {
                return Err(store.corrupt(
                    expected_seq,
                    format!("a segment starts at {first_seq}, expected {expected_seq}"),
                ));
            }
            let unreadable = || {
                store.corrupt(
                    first_seq,
                    "the segment's index records are unreadable".into(),
                )
            };
            let value = store
                .meta_bytes(first_seq, &location)?
                .ok_or_else(unreadable)?;
            let mut seq = first_seq;
            for record in format::meta_records(&value) {
                let record = record.ok_or_else(unreadable)?;
                if store.is_indexed(&ids, &record.id)? {
                    return Err(store.corrupt(seq, format!("event id {} appears twice", record.id)));
                }
                let complaint = complaint_key(record.complaint_id);
                let entry = (&record.id, complaint, record.region, record.event_type);
                Self::index_scanned(&mut ids, &mut streams, entry, seq)?;
                last_chain = record.chain;
                seq += 1;
            }
            expected_seq = seq;
        }
        let last_seq = expected_seq - 1;
        if last_seq != head.last_seq || last_chain != head.chain {
            return Err(store.corrupt(
                last_seq.min(head.last_seq) + 1,
                format!(
                    "the head says {} events but the index records end at {last_seq}, or the chain heads differ",
                    head.last_seq
                ),
            ));
        }
        // The last segment is the one a torn write would hit: check its bytes against the
        // chain before serving anything.
        if last_seq > 0 {
            let corrupt = |seq: u64, what: &str| store.corrupt(seq, what.into());
            let (first_seq, location) = store
                .last_location()?
                .ok_or_else(|| corrupt(last_seq, "no segment holds the last entries"))?;
            let torn = || corrupt(first_seq, "the last segment is torn");
            let value = store.segment_bytes(first_seq, &location)?;
            let view = SegmentView::parse(&value).ok_or_else(torn)?;
            if view.first_seq != first_seq || view.last_seq() != last_seq {
                return Err(corrupt(
                    view.first_seq,
                    "the last segment does not end at the head",
                ));
            }
            let metas_value = store
                .meta_bytes(first_seq, &location)?
                .ok_or_else(|| corrupt(first_seq, "the last segment has no index records"))?;
            let metas = format::decode_meta(&metas_value).unwrap_or_default();
            let mut previous = store.chain_at_segment_end(first_seq - 1)?.ok_or_else(|| {
                corrupt(first_seq, "the chain before the last segment is missing")
            })?;
            for ((seq, bytes), meta) in view.iter().zip(&metas) {
                let chain = format::chain_hash(&previous, seq, bytes);
                if chain != meta.chain {
                    return Err(corrupt(seq, "the stored bytes do not match the hash chain"));
                }
                previous = chain;
            }
        }
        Ok((State { head, ids, streams }, from))
    }

    /// Indexes the entry at `seq` during a scan of the index records (an open without a
    /// snapshot, `verify`), which owns its indexes.
    fn index_scanned(
        ids: &mut IdIndex,
        streams: &mut StreamIndex,
        (id, complaint, region, event_type): (&Uuid, u128, &str, plaint_events::EventType),
        seq: u64,
    ) -> Result<(), LogError> {
        let seq32 = u32::try_from(seq).map_err(|_| LogError::Full(seq - 1))?;
        ids.insert(id_key(id), seq32);
        streams.record(complaint, region, event_type, seq32);
        // Merging as the scan goes keeps the peak near the final size.
        ids.merge_if_due();
        streams.merge_if_due();
        Ok(())
    }

    /// Takes the writer lock. There is one writer at a time; readers are never blocked
    /// except for the moment a commit publishes its index updates.
    pub fn writer(&self) -> LogWriter<'_> {
        LogWriter {
            log: self,
            _guard: self.inner.writer.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.read_state().head.last_seq
    }

    pub fn status(&self) -> LogStatus {
        let state = self.read_state();
        LogStatus {
            last_seq: state.head.last_seq,
            chain_head: hex(&state.head.chain),
            segments: state.head.segments,
            complaints: state.streams.len(),
            durability: self.inner.options.durability,
            index_snapshot_seq: self.inner.snapshot_seq.load(Ordering::Acquire),
        }
    }

    /// A receiver of the last committed sequence number; it changes after every commit.
    /// Wakes only the tail: readers always read by range from their own position.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.tail.subscribe()
    }

    /// Records how far the log holds upstream's input (the ingester calls this).
    pub fn set_input_watermark(&self, watermark: InputWatermark) {
        self.inner.input.send_if_modified(|current| {
            let changed = *current != watermark;
            *current = watermark;
            changed
        });
    }

    /// How far the log is known to hold upstream's input.
    pub fn input_watermark(&self) -> InputWatermark {
        *self.inner.input.borrow()
    }

    /// A receiver of the input watermark's changes.
    pub fn subscribe_input_watermark(&self) -> watch::Receiver<InputWatermark> {
        self.inner.input.subscribe()
    }

    /// The sequence number of the event with this id, if the log has it.
    pub fn seq_of_id(&self, id: &Uuid) -> Result<Option<u64>, LogError> {
        // Copied out so that the lock is not held while reading index records.
        let candidates: Vec<u64> = self.read_state().ids.candidates(id_key(id)).collect();
        for seq in candidates {
            // Fingerprints may collide: the index record says whose id it is.
            if self.inner.store.id_at(seq)? == Some(*id) {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// The complaint's stream: its events' sequence numbers, region and lifecycle status.
    pub fn stream(&self, complaint_id: &str) -> Result<Option<StreamInfo>, LogError> {
        let state = self.read_state();
        let Some(head) = state.stream_head(complaint_id) else {
            return Ok(None);
        };
        Ok(Some(StreamInfo {
            seqs: state.streams.seqs(head).map_err(LogError::Files)?,
            region: state.streams.region_name(head.region).to_owned(),
            status: head.status,
        }))
    }

    fn stream_head(&self, complaint_id: &str) -> Option<PendingStream> {
        let state = self.read_state();
        let head = state.stream_head(complaint_id)?;
        Some(PendingStream {
            status: head.status,
            version: head.version,
            region: state.streams.region_name(head.region).to_owned(),
        })
    }

    /// Counts of complaints by lifecycle status.
    pub fn complaint_counts(&self) -> HashMap<&'static str, u64> {
        use lifecycle::StreamStatus as S;
        let state = self.read_state();
        [S::Open, S::Resolved, S::Closed, S::Withdrawn]
            .into_iter()
            .map(|status| (status.as_str(), state.streams.count(status)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.read_state()
    }

    /// Segments holding `from..`, in order. The first may start before `from`.
    pub fn segments(&self, from: u64) -> impl Iterator<Item = Result<Segment, LogError>> + '_ {
        let store = &self.inner.store;
        // An error finding the start is the only item; nothing starts at u64::MAX.
        let (failed, start) = match store.location_at(from.max(1)) {
            Ok(found) => (None, found.map_or(1, |(first_seq, _)| first_seq)),
            Err(error) => (Some(Err(error)), u64::MAX),
        };
        failed
            .into_iter()
            .chain(store.locations(start).map(move |item| {
                let (first_seq, location) = item?;
                let value = store.segment_bytes(first_seq, &location)?;
                if SegmentView::parse(&value).is_none_or(|v| v.first_seq != first_seq) {
                    return Err(store.corrupt(first_seq, "segment is unreadable".into()));
                }
                let file = store
                    .files
                    .file(location.file)
                    .map_err(|e| store.read_failed(first_seq, e))?;
                Ok(Segment {
                    first_seq,
                    value,
                    file,
                    location,
                })
            }))
    }

    /// Every entry with `from <= seq <= to`, in order, as owned bytes.
    pub fn read_range(&self, from: u64, to: u64) -> impl Iterator<Item = EntryResult> + '_ {
        self.segments(from)
            .take_while(move |s| s.as_ref().map(|s| s.first_seq <= to).unwrap_or(true))
            .flat_map(move |segment| -> Box<dyn Iterator<Item = EntryResult>> {
                match segment {
                    Err(e) => Box::new(std::iter::once(Err(e))),
                    Ok(segment) => {
                        let items: Vec<_> = segment
                            .view()
                            .iter()
                            .filter(|(seq, _)| *seq >= from && *seq <= to)
                            .map(|(seq, b)| Ok((seq, b.to_vec())))
                            .collect();
                        Box::new(items.into_iter())
                    }
                }
            })
    }

    /// One entry's bytes.
    pub fn read(&self, seq: u64) -> Result<Option<Vec<u8>>, LogError> {
        if seq > self.last_seq() {
            return Ok(None);
        }
        self.inner.store.event(seq)
    }

    /// Walks every segment: gapless sequence, readable segments and index records, hash
    /// chain recomputed over the stored bytes, ids unique, stream versions contiguous, chain
    /// head equal to the head record. Stops at the first problem and names its sequence.
    pub fn verify(&self, mut progress: impl FnMut(u64)) -> Result<VerifyReport, LogError> {
        let head = self.read_state().head;
        let mut report = VerifyReport {
            entries: 0,
            segments: 0,
            chain_head: String::new(),
            problem: None,
        };
        let mut previous = [0u8; 32];
        let mut expected_seq = 1u64;
        // The same compact indexes as the open log's (~16 bytes per event), built afresh
        // from the index records: a set of ids and a map of complaint strings took ~150.
        let mut ids = IdIndex::default();
        let mut streams = StreamIndex::default();
        let fail = |report: &mut VerifyReport, seq: u64, what: String| {
            report.problem = Some(VerifyProblem { seq, what });
        };
        for segment in self.segments(1) {
            let segment = match segment {
                Ok(s) => s,
                Err(LogError::Corrupt { seq, what, .. }) => {
                    fail(&mut report, seq, what);
                    return Ok(report);
                }
                Err(e) => return Err(e),
            };
            let view = segment.view();
            if view.first_seq != expected_seq {
                fail(
                    &mut report,
                    expected_seq,
                    format!("gap: next segment starts at {}", view.first_seq),
                );
                return Ok(report);
            }
            let Some(metas) = segment.meta()? else {
                fail(
                    &mut report,
                    view.first_seq,
                    "index records missing or unreadable".into(),
                );
                return Ok(report);
            };
            if metas.len() != view.len() {
                fail(
                    &mut report,
                    view.first_seq,
                    "index records and segment differ in length".into(),
                );
                return Ok(report);
            }
            for ((seq, bytes), meta) in view.iter().zip(&metas) {
                let chain = format::chain_hash(&previous, seq, bytes);
                if chain != meta.chain {
                    fail(
                        &mut report,
                        seq,
                        "stored bytes do not match the hash chain (modified or torn)".into(),
                    );
                    return Ok(report);
                }
                if self.inner.store.is_indexed(&ids, &meta.id)? {
                    fail(
                        &mut report,
                        seq,
                        format!("event id {} appears twice", meta.id),
                    );
                    return Ok(report);
                }
                let complaint = complaint_key(&meta.complaint_id);
                let version = streams.get(complaint).map_or(0, |h| h.version) + 1;
                if version != meta.version {
                    fail(
                        &mut report,
                        seq,
                        format!(
                            "stream version {} where {} was expected",
                            meta.version, version
                        ),
                    );
                    return Ok(report);
                }
                match plaint_events::decode_stored(bytes) {
                    Ok(event) if event.id == meta.id && event.complaint_id == meta.complaint_id => {
                    }
                    _ => {
                        fail(
                            &mut report,
                            seq,
                            "stored event does not decode to its index record".into(),
                        );
                        return Ok(report);
                    }
                }
                let entry = (&meta.id, complaint, meta.region.as_str(), meta.event_type);
                Self::index_scanned(&mut ids, &mut streams, entry, seq)?;
                previous = chain;
                report.entries += 1;
            }
            expected_seq = view.last_seq() + 1;
            report.segments += 1;
            progress(view.last_seq());
        }
        report.chain_head = hex(&previous);
        if expected_seq - 1 != head.last_seq || previous != head.chain {
            fail(
                &mut report,
                expected_seq,
                "the head record does not match the end of the chain".into(),
            );
        }
        Ok(report)
    }

    fn make_durable(&self) -> Result<(), LogError> {
        self.inner.db.flush().map_err(|e| match e {
            sled::Error::Io(io) => LogError::NotDurable(io),
            other => LogError::Storage(other),
        })?;
        if self.inner.options.durability == Durability::Fsync {
            syncfs(&self.inner.store.path).map_err(LogError::NotDurable)?;
        }
        Ok(())
    }

    /// Flushes and (with `Durability::Fsync`) fsyncs whatever sled holds, e.g. projector
    /// checkpoints.
    pub fn sync(&self) -> Result<(), LogError> {
        self.make_durable()
    }
}

/// Repairs a damaged log in `path` (no other process may have it open): removes every
/// segment that ends after `keep_last_seq` and rewrites the head to the end of what is
/// kept. A segment straddling `keep_last_seq` is removed whole, so the log may end a
/// little earlier than asked. Returns (last sequence kept, entries removed). The removed
/// events are still in JetStream and come back when the ingest consumer redelivers them.
pub fn repair_truncate(path: &Path, keep_last_seq: u64) -> Result<(u64, u64), LogError> {
    let db = sled::Config::new()
        .path(path)
        .open()
        .map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let store = Store {
        path: path.to_path_buf(),
        tree: db.open_tree("log")?,
        files: SegmentFiles::open(path, true, format::ROLL_BYTES).map_err(LogError::Files)?,
    };
    let old_head = store
        .tree
        .get(format::HEAD_KEY)?
        .and_then(|h| Head::decode(&h));
    let mut removed = 0u64;
    let mut batch = sled::Batch::default();
    let mut head = Head::EMPTY;
    let mut kept: Option<Location> = None;
    let mut truncating = false;
    for item in store
        .tree
        .range(format::segment_key(0)..=format::segment_key(u64::MAX))
    {
        let (key, value) = item?;
        let first_seq = format::seq_of_key(&key).unwrap_or(0);
        let location = Location::decode(&value);
        // Whatever cannot be read counts as damaged: it and everything after it go.
        let metas = location.and_then(|l| {
            store
                .files
                .read_meta(&l)
                .ok()
                .flatten()
                .and_then(|m| format::decode_meta(&m))
        });
        let count = metas.as_ref().map_or(0, Vec::len) as u64;
        let last = first_seq + count.max(1) - 1;
        let readable = metas.is_some()
            && location
                .and_then(|l| store.files.read_segment(&l).ok())
                .is_some_and(|s| {
                    SegmentView::parse(&s)
                        .is_some_and(|v| v.first_seq == first_seq && v.len() as u64 == count)
                });
        if truncating || last > keep_last_seq || !readable || first_seq != head.last_seq + 1 {
            truncating = true;
            batch.remove(key);
            removed += count;
            continue;
        }
        head = Head {
            last_seq: last,
            chain: metas
                .and_then(|m| m.last().map(|m| m.chain))
                .unwrap_or(head.chain),
            segments: head.segments + 1,
        };
        kept = location;
    }
    batch.insert(format::HEAD_KEY, head.encode());
    store.tree.apply_batch(batch)?;
    db.flush()?;
    syncfs(path).map_err(LogError::NotDurable)?;
    // Only now that no location points past it may the files' tails go.
    store
        .files
        .trim_after(kept.as_ref())
        .map_err(LogError::Files)?;
    // A snapshot past the new end would be rejected at open anyway; removing it says so.
    snapshot::remove(path).map_err(LogError::NotDurable)?;
    // Unreadable segments cannot say how many entries they held; the old head can.
    let removed = old_head.map_or(removed, |h| h.last_seq.saturating_sub(head.last_seq));
    Ok((head.last_seq, removed))
}

/// `syncfs(2)` on the filesystem holding the database: one call makes sled's log file and
/// any blob file it spilled a large value into (a projector's, say) durable; sled 0.34's
/// flush uses `sync_file_range`, which does not make metadata durable, and never fsyncs
/// blob files.
#[allow(unsafe_code)]
fn syncfs(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(path)?;
    // SAFETY: `dir` is an open file descriptor for the duration of the call; syncfs only
    // reads the descriptor.
    let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One entry read from the log: its sequence number and bytes.
pub type EntryResult = Result<(u64, Vec<u8>), LogError>;

/// A complaint's stream as the log sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Sequence numbers in order; the stream's version is `seqs.len()`.
    pub seqs: Vec<u64>,
    pub region: String,
    pub status: lifecycle::StreamStatus,
}

impl StreamInfo {
    pub fn version(&self) -> u32 {
        self.seqs.len() as u32
    }
}

/// One stored segment: the events of one append, with lazy access to their index records.
#[derive(Clone)]
pub struct Segment {
    pub first_seq: u64,
    value: Vec<u8>,
    file: Arc<std::fs::File>,
    location: Location,
}

impl Segment {
    pub fn view(&self) -> SegmentView<'_> {
        SegmentView::parse(&self.value).expect("segments are validated when read")
    }

    /// The segment's index records, read on demand (filters need them, plain replay not).
    pub fn meta(&self) -> Result<Option<Vec<EntryMeta>>, LogError> {
        match files::read_meta(&self.file, &self.location) {
            Ok(bytes) => Ok(bytes.and_then(|v| format::decode_meta(&v))),
            // A short file: the records are as unreadable as a bad checksum makes them.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(LogError::Files(e)),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub entries: u64,
    pub segments: u64,
    pub chain_head: String,
    pub problem: Option<VerifyProblem>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyProblem {
    pub seq: u64,
    pub what: String,
}

/// The single writer. Holding it is what makes staging and committing race-free.
pub struct LogWriter<'a> {
    log: &'a Log,
    _guard: MutexGuard<'a, ()>,
}

impl LogWriter<'_> {
    pub fn begin(&self) -> PendingBatch {
        PendingBatch {
            first_seq: self.log.last_seq() + 1,
            entries: Vec::new(),
            by_id: HashMap::new(),
            streams: HashMap::new(),
        }
    }

    /// Decides what happens to `candidate` if the batch commits, and stages it if it is to
    /// be appended. Rules, in order: duplicate id (same content → `Duplicate`, other content
    /// → `conflicting_duplicate`); expected version; lifecycle; subject region.
    pub fn stage(
        &self,
        batch: &mut PendingBatch,
        candidate: Candidate<'_>,
    ) -> Result<Outcome, LogError> {
        let event = candidate.event;
        if let Some(&i) = batch.by_id.get(&event.id) {
            let seq = batch.first_seq + i as u64;
            return Ok(duplicate_or_conflict(
                seq,
                &batch.entries[i].bytes,
                candidate.bytes,
            ));
        }
        if let Some(seq) = self.log.seq_of_id(&event.id)? {
            let stored = self.log.read(seq)?.unwrap_or_default();
            return Ok(duplicate_or_conflict(seq, &stored, candidate.bytes));
        }
        let current = match batch.streams.get(&event.complaint_id) {
            Some(s) => Some(s.clone()),
            // The head only: staging runs once per ingested event, and a complaint's full
            // list of sequence numbers is not needed to decide.
            None => self.log.stream_head(&event.complaint_id),
        };
        let current_version = current.as_ref().map_or(0, |s| s.version);
        if let ExpectedVersion::Exactly(expected) = candidate.expected {
            if expected != current_version {
                return Ok(Outcome::VersionConflict {
                    expected,
                    actual: current_version,
                });
            }
        }
        let status = match lifecycle::check(current.as_ref().map(|s| s.status), event.event_type())
        {
            Ok(status) => status,
            Err(rejection) => return Ok(Outcome::Rejected(rejection)),
        };
        let region = match (&event.body, &current) {
            (EventBody::Filed(filed), _) => filed.region.clone(),
            (_, Some(s)) => s.region.clone(),
            (_, None) => {
                unreachable!("lifecycle::check accepts only complaint.filed for a new complaint")
            }
        };
        if let Some(subject_region) = candidate.subject_region {
            if subject_region != region {
                return Ok(Outcome::Rejected(Rejection::new(
                    RejectReason::SubjectRegionMismatch,
                    format!(
                        "published on region {subject_region:?} but complaint {} belongs to region {region:?}",
                        event.complaint_id
                    ),
                )));
            }
        }
        let seq = batch.first_seq + batch.entries.len() as u64;
        let version = current_version + 1;
        batch.by_id.insert(event.id, batch.entries.len());
        batch.streams.insert(
            event.complaint_id.clone(),
            PendingStream {
                status,
                version,
                region: region.clone(),
            },
        );
        batch.entries.push(PendingEntry {
            meta: EntryMeta {
                id: event.id,
                time: event.time,
                event_type: event.event_type(),
                version,
                complaint_id: event.complaint_id.clone(),
                region,
                chain: [0; 32],
            },
            bytes: candidate.bytes.to_vec(),
        });
        Ok(Outcome::Appended(seq))
    }

    /// Writes the batch as one segment with its index records, then its location and the
    /// new head atomically, then makes it durable. Returns `None` for an empty batch.
    ///
    /// If the write succeeds but durability fails ([`LogError::NotDurable`]), the entries
    /// are in the log (sled has them) but must not be acknowledged until [`Log::sync`]
    /// succeeds.
    pub fn commit(&self, batch: PendingBatch) -> Result<Option<Committed>, LogError> {
        if batch.entries.is_empty() {
            return Ok(None);
        }
        let inner = &self.log.inner;
        let head = self.log.read_state().head;
        assert_eq!(
            batch.first_seq,
            head.last_seq + 1,
            "a batch must be committed by the writer that began it"
        );
        let mut entries = batch.entries;
        let mut chain = head.chain;
        for (i, entry) in entries.iter_mut().enumerate() {
            chain = format::chain_hash(&chain, batch.first_seq + i as u64, &entry.bytes);
            entry.meta.chain = chain;
        }
        let last_seq = batch.first_seq + entries.len() as u64 - 1;
        if last_seq > u32::MAX as u64 {
            return Err(LogError::Full(head.last_seq));
        }
        let segment =
            format::encode_segment(batch.first_seq, entries.iter().map(|e| e.bytes.as_slice()));
        let metas: Vec<EntryMeta> = entries.into_iter().map(|e| e.meta).collect();
        let new_head = Head {
            last_seq,
            chain,
            segments: head.segments + 1,
        };
        // The record first (durable already with fsync), then its location: a location in
        // sled never points at bytes that may be lost.
        let location = inner
            .store
            .files
            .append(batch.first_seq, &segment, &format::encode_meta(&metas))
            .map_err(LogError::Files)?;
        let mut write = sled::Batch::default();
        write.insert(
            &format::segment_key(batch.first_seq)[..],
            &location.encode()[..],
        );
        write.insert(format::HEAD_KEY, new_head.encode());
        inner.store.tree.apply_batch(write)?;
        // Hashed before taking the lock, so that readers wait as little as possible.
        let keys: Vec<(u64, u128)> = metas
            .iter()
            .map(|m| (id_key(&m.id), complaint_key(&m.complaint_id)))
            .collect();
        {
            let mut state = inner.write_state();
            for (i, (meta, (id, complaint))) in metas.iter().zip(keys).enumerate() {
                let seq = (batch.first_seq + i as u64) as u32;
                state.ids.insert(id, seq);
                state
                    .streams
                    .record(complaint, &meta.region, meta.event_type, seq);
            }
            state.head = new_head;
        }
        inner.merge_indexes();
        let every = inner.options.index_snapshot_every;
        if every > 0 && last_seq - inner.snapshot_seq.load(Ordering::Acquire) >= every {
            inner.start_snapshot();
        }
        let durable = self.log.make_durable();
        inner.tail.send_replace(last_seq);
        durable?;
        Ok(Some(Committed {
            first_seq: batch.first_seq,
            last_seq,
            chain,
        }))
    }

    /// Stages and commits one event (operator commands, tools).
    pub fn append_one(&self, candidate: Candidate<'_>) -> Result<Outcome, LogError> {
        let mut batch = self.begin();
        let outcome = self.stage(&mut batch, candidate)?;
        self.commit(batch)?;
        Ok(outcome)
    }
}

/// Same id: the same event if the JSON is equal (key order and whitespace may differ
/// between a producer's retries), else a conflicting duplicate.
fn duplicate_or_conflict(seq: u64, stored: &[u8], incoming: &[u8]) -> Outcome {
    if stored == incoming || json_equal(stored, incoming) {
        return Outcome::Duplicate(seq);
    }
    Outcome::Rejected(Rejection::new(
        RejectReason::ConflictingDuplicate,
        format!("an event with this id but different content is already in the log at sequence {seq}; use a new id for a new event"),
    ))
}

fn json_equal(a: &[u8], b: &[u8]) -> bool {
    match (
        serde_json::from_slice::<serde_json::Value>(a),
        serde_json::from_slice::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
