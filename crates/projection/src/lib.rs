//! What a projector is, without any I/O.
//!
//! A projector is a deterministic fold over the log: [`Projection::apply`] takes the next
//! event (with its sequence number) and returns the [`Effect`]s it wants carried out;
//! [`Projection::tick`] lets it act on the passage of time, with the time passed in. It
//! never reads a clock, a socket or a file. The runner (`plaint-runner`) owns sled, NATS,
//! batching, checkpoints and the clock, and calls these methods.
//!
//! - [`Projection`]: the trait every projector implements.
//! - [`Effect`]: what a projector may ask for: publish an alert, write an event of its
//!   own through the `COMPLAINTS` stream.
//! - [`ViewMap`]: an ordered map that remembers which rows changed, so the runner can
//!   persist exactly those rows together with the checkpoint; optionally paged
//!   ([`ViewMap::paged`]), keeping only live items in memory.
//! - [`RowSource`]: read access to a projector's own persisted rows, through which state
//!   that was paged out of memory comes back (before `apply`, and for queries).
//! - [`ViewRow`], [`ViewChange`]: the persisted form of a view, one row per key.
//! - [`digest_rows`]: the deterministic digest of a view, used to compare a rebuild with
//!   the live view.
//! - [`codec`]: the binary form of rows ([`RowCodec`], [`encode_row`], [`decode_row`],
//!   which also reads the JSON rows of older versions).
//!
//! Projections keep their state in ordered maps, so the same events always give the same
//! rows in the same order, and so the same digest.
//!
//! # Memory: the working set in memory, the rest in rows
//!
//! A log of ten million events holds millions of complaints, nearly all closed. A
//! projector keeps in memory only what its decisions need (open complaints, timers,
//! queues, windows) and pages the rest out once its rows are committed:
//!
//! 1. Rows of live items sit under one key prefix, rows of paged-out ("archived") items
//!    under another, so a restart reads only the live prefixes
//!    ([`Projection::resident_prefixes`]).
//! 2. Before `apply`, the runner asks [`Projection::rows_needed`] which archived rows an
//!    event touches, reads them and hands them to [`Projection::page_in`]: `apply` stays a
//!    pure function of the state in memory.
//! 3. Before `tick`, the runner asks [`Projection::rows_due`] the same for the timers
//!    about to fire, so an item with a distant deadline need not stay in memory.
//! 4. After every commit (and every tick) the runner calls [`Projection::evict`]: items
//!    that went cold and are persisted leave memory.
//!
//! The rows, and so the digest, do not depend on what happened to be in memory.

pub mod codec;

use std::collections::{BTreeMap, BTreeSet};

use plaint_events::{Event, Timestamp};
use serde::de::DeserializeOwned;

pub use codec::{decode_row, encode_row, RowCodec, RowError, RowReader, RowWriter};

/// A persisted row of a view: key and value bytes.
pub type ViewRow = (Vec<u8>, Vec<u8>);

/// A change to one row: `Some(value)` writes it, `None` deletes it.
pub type ViewChange = (Vec<u8>, Option<Vec<u8>>);

/// Something a projector wants done outside itself. Effects are carried out by the runner
/// after the batch that produced them is committed, so a crash replays them; every effect
/// therefore carries a deterministic id and must be safe to repeat.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Publish to a JetStream subject (alerts, escalations) with `Nats-Msg-Id = msg_id`,
    /// so that the stream's duplicate window absorbs a repeat.
    Publish {
        subject: String,
        msg_id: String,
        payload: Vec<u8>,
    },
    /// Write one of plaint's own events (wire bytes) through the `COMPLAINTS` stream on
    /// `subject`. Its UUIDv5 id makes a repeat a no-op in the log.
    AppendEvent { subject: String, event: Event },
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("view row {key:?} of projector {projector} cannot be decoded ({source}); run `plaint rebuild {projector}`")]
    CorruptRow {
        projector: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("reading the rows of a view failed: {0}")]
    Storage(String),
    #[error("view row {key:?} of projector {projector} cannot be decoded ({source}); run `plaint rebuild {projector}`")]
    UndecodableRow {
        projector: &'static str,
        key: String,
        #[source]
        source: RowError,
    },
    /// Memory refers to an item paged out under `key`, and the rows do not hold it.
    #[error("view row {key:?} of projector {projector} is missing, though the projector paged it out; run `plaint rebuild {projector}`")]
    MissingRow {
        projector: &'static str,
        key: String,
    },
}

/// A projector's pure core.
///
/// `apply` is called once per log entry in sequence order, `tick` whenever the runner's
/// clock advances (live only, never during a rebuild: a rebuild sees the effects of past
/// ticks as the events they wrote, e.g. `sla.breached`). Implementations must be
/// deterministic: same state + same input = same effects and same rows.
pub trait Projection: Send + 'static {
    /// Stable name: the sled tree prefix, checkpoint key and CLI name.
    fn name(&self) -> &'static str;

    /// The version of the row layout. The runner records it with the view; a view written
    /// with another layout is rebuilt from the log when the runner starts.
    fn layout(&self) -> u32 {
        1
    }

    /// Folds one event into the state.
    fn apply(&mut self, seq: u64, event: &Event) -> Vec<Effect>;

    /// Acts on the passage of time (timers, deadlines). `now` comes from the runner's clock.
    fn tick(&mut self, _now: Timestamp) -> Vec<Effect> {
        Vec::new()
    }

    /// The earliest time at which `tick` would have something to do, so the runner can
    /// sleep until then instead of polling.
    fn next_wakeup(&self) -> Option<Timestamp> {
        None
    }

    /// Rows changed since the last call, to be committed with the checkpoint.
    fn take_changes(&mut self) -> Vec<ViewChange>;

    /// Whether the runner throws away what `apply` returns (a rebuild, an offline
    /// catch-up: the effects of logged events are in the log already). A projector may
    /// then skip building effects; its rows and every other state must come out the same.
    fn set_rebuilding(&mut self, _rebuilding: bool) {}

    /// Restores the state from its persisted rows (in key order), replacing any state held.
    /// The runner passes the rows under [`Projection::resident_prefixes`] only.
    fn restore(&mut self, rows: &mut dyn Iterator<Item = ViewRow>) -> Result<(), ProjectionError>;

    /// Key prefixes of the rows `restore` needs: the live state. Rows under other prefixes
    /// (paged-out items) stay on disk until [`Projection::rows_needed`] asks for them.
    /// Default: every row.
    fn resident_prefixes(&self) -> Vec<Vec<u8>> {
        vec![Vec::new()]
    }

    /// Pushes onto `keys` the keys of paged-out rows that `apply(event)` needs in memory.
    /// Called for every event of a batch before any of them is applied, against the state
    /// as of the batch's start (nothing is evicted within a batch).
    fn rows_needed(&self, _event: &Event, _keys: &mut Vec<Vec<u8>>) {}

    /// Pushes onto `keys` the keys of paged-out rows that `tick(now)` needs in memory (the
    /// items whose timers it would fire). The runner reads them and hands them to
    /// [`Projection::page_in`] before the tick, and calls [`Projection::evict`] after it,
    /// so a timer may belong to an item kept on disk until it fires. Ask for a bounded
    /// number: what is left fires at the next tick.
    fn rows_due(&self, _now: Timestamp, _keys: &mut Vec<Vec<u8>>) {}

    /// Takes back a row asked for by `rows_needed` or `rows_due` (`None`: there is no such row). Must
    /// leave the state as if the row had never been paged out, and not mark it changed.
    fn page_in(&mut self, _key: &[u8], _row: Option<&[u8]>) -> Result<(), ProjectionError> {
        Ok(())
    }

    /// Drops from memory the items whose rows are persisted and that nothing in memory
    /// needs (closed complaints, expired windows). The runner calls it only when every
    /// change taken so far is committed; items changed since the last `take_changes`
    /// must stay.
    fn evict(&mut self) {}

    /// What `tick` has done that the rows do not record (alerts already sent), as a number
    /// the runner keeps beside the view, never in its rows or digest, and hands back to
    /// [`Projection::restore_tick_cursor`] after a restart, so that a restart does not send
    /// those alerts again. `None`: nothing to keep.
    fn tick_cursor(&self) -> Option<u64> {
        None
    }

    /// Takes back, after `restore`, the last [`Projection::tick_cursor`] the runner kept.
    fn restore_tick_cursor(&mut self, _cursor: u64) {}

    /// Items (complaints, customers, cells…) held in memory now, for `plaint status`:
    /// what the projector's memory grows with. `None` when the projector does not count.
    fn resident_items(&self) -> Option<usize> {
        None
    }
}

/// Read access to a projector's persisted rows (its view tree, without the checkpoint).
/// The runner implements it over sled; tests use a `BTreeMap`.
pub trait RowSource: Send + Sync {
    /// The row stored under `key`.
    fn row(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError>;

    /// Rows whose key starts with `prefix`, in key order.
    fn rows_with_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<ViewRow, ProjectionError>> + 'a>;
}

impl RowSource for BTreeMap<Vec<u8>, Vec<u8>> {
    fn row(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        Ok(self.get(key).cloned())
    }

    fn rows_with_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<ViewRow, ProjectionError>> + 'a> {
        let prefix = prefix.to_vec();
        Box::new(
            self.range(prefix.clone()..)
                .take_while(move |(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| Ok((k.clone(), v.clone()))),
        )
    }
}

/// No rows at all: for projections queried without their store (unit tests, a view
/// that was never persisted).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRows;

impl RowSource for NoRows {
    fn row(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        Ok(None)
    }

    fn rows_with_prefix<'a>(
        &'a self,
        _prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<ViewRow, ProjectionError>> + 'a> {
        Box::new(std::iter::empty())
    }
}

/// Applies a batch of changes to an in-memory row store: what the runner does to sled.
/// For tests of paging (a projector, its rows, and eviction in between).
pub fn apply_changes(rows: &mut BTreeMap<Vec<u8>, Vec<u8>>, changes: Vec<ViewChange>) {
    for (key, value) in changes {
        match value {
            Some(value) => rows.insert(key, value),
            None => rows.remove(&key),
        };
    }
}

/// An ordered map of view rows that records which keys changed since the last
/// [`ViewMap::take_changes`]. Values are stored in their binary row form ([`codec`]).
///
/// A map made with [`ViewMap::paged`] keeps only live rows in memory, plus a bounded cache
/// of cold ones: a row that is cold (the map's predicate says so) is written under the
/// archive prefix instead of the live one, and once more than `cold_capacity` cold rows
/// are resident, [`ViewMap::evict`] drops the least recently touched. [`ViewMap::page_in`]
/// brings one back when an event touches it again; [`ViewMap::read`] reads it for a
/// query. The cache matters: a row read back from a large sled tree costs tens of
/// microseconds, and most complaints see their next event soon after going cold.
#[derive(Debug, Clone)]
pub struct ViewMap<V> {
    rows: BTreeMap<String, Resident<V>>,
    dirty: BTreeSet<String>,
    paging: Option<Paging<V>>,
    touches: u64,
}

#[derive(Debug, Clone)]
struct Resident<V> {
    value: V,
    stored: Stored,
    /// When the row was last touched (the map's own counter), for least-recently-used
    /// eviction.
    touched: u64,
}

/// Where a resident item's persisted row is (under the live or the archive prefix), so a
/// row that changes side is deleted from the other one, and only then: a delete with every
/// write would double a rebuild's writes. Every paged store keeps one per item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Not written yet.
    Nowhere,
    Live,
    Archive,
}

impl Stored {
    /// The side whose copy must be deleted when the row is written to `target`.
    pub fn stale_copy(self, target: Stored) -> Option<Stored> {
        (self != Stored::Nowhere && self != target).then_some(self)
    }
}

/// Cold items a paged view keeps in memory after their rows are committed, the most
/// recently cooled: a resolved complaint's `closed` usually follows within days. Small,
/// since views live in redb: a row read back from a view of a million rows takes ~5 µs
/// (p50; p99 ~18 µs; `cargo run --release -p plaint-runner --example view_reads`), where a
/// decoded escalation row holds ~1.6 KB of memory (50,000 of them were 80 MB).
pub const COLD_CACHE: usize = 10_000;

/// Gives back most of a hash map's table once it holds under a quarter of what it has room
/// for. A map keeps the capacity of its peak: after a backfill, whose ingest outruns the
/// ticks that let complaints go, a paged store's id map kept a table sized for several
/// hundred thousand ids (about 13 MB) to hold ten thousand. Shrinking to twice the length
/// rehashes that many entries, and only after the map has lost half of them again.
pub fn shrink_when_sparse<K: Eq + std::hash::Hash, V, S: std::hash::BuildHasher>(
    map: &mut std::collections::HashMap<K, V, S>,
) {
    if map.capacity() > 4 * map.len() + 4096 {
        map.shrink_to(2 * map.len());
    }
}

/// Removes and returns the longest-cold candidates of `cooled` (oldest first) beyond the
/// `capacity` most recent: what a paged store's `evict` considers.
pub fn coldest_beyond<T>(cooled: &mut Vec<T>, capacity: usize) -> Vec<T> {
    let excess = cooled.len().saturating_sub(capacity);
    cooled.drain(..excess).collect()
}

#[derive(Debug, Clone)]
struct Paging<V> {
    archive_prefix: &'static str,
    cold: fn(&V) -> bool,
    /// Cold rows kept resident at most.
    cold_capacity: usize,
    /// Cold rows in the order they went cold, with their `touched` then: eviction
    /// candidates, oldest first. An entry whose row was touched since is stale and skipped.
    cooled: std::collections::VecDeque<(String, u64)>,
}

impl<V> Default for ViewMap<V> {
    fn default() -> Self {
        ViewMap {
            rows: BTreeMap::new(),
            dirty: BTreeSet::new(),
            paging: None,
            touches: 0,
        }
    }
}

impl<V: RowCodec + DeserializeOwned> ViewMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A map that pages cold rows out: they are persisted under `archive_prefix` (not the
    /// live prefix given to `take_changes`), and `evict` drops the least recently touched
    /// beyond `cold_capacity` from memory. A predicate that is always true makes the map a
    /// bounded cache over its rows.
    pub fn paged(archive_prefix: &'static str, cold: fn(&V) -> bool, cold_capacity: usize) -> Self {
        ViewMap {
            paging: Some(Paging {
                archive_prefix,
                cold,
                cold_capacity,
                cooled: std::collections::VecDeque::new(),
            }),
            ..Self::default()
        }
    }

    fn touch(&mut self) -> u64 {
        self.touches += 1;
        self.touches
    }

    /// The resident value of `key` (a paged map may hold it on disk only: see `read`).
    pub fn get(&self, key: &str) -> Option<&V> {
        self.rows.get(key).map(|r| &r.value)
    }

    /// Mutable access marks the row changed.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let touched = self.touches + 1;
        let resident = self.rows.get_mut(key)?;
        self.touches = touched;
        resident.touched = touched;
        if !self.dirty.contains(key) {
            self.dirty.insert(key.to_owned());
        }
        Some(&mut resident.value)
    }

    pub fn insert(&mut self, key: String, value: V) {
        self.dirty.insert(key.clone());
        let stored = self.rows.get(&key).map_or(Stored::Nowhere, |r| r.stored);
        let touched = self.touch();
        self.rows.insert(
            key,
            Resident {
                value,
                stored,
                touched,
            },
        );
    }

    /// Removes a resident row. (A paged-out row is removed by paging it in first.)
    pub fn remove(&mut self, key: &str) -> Option<V> {
        let removed = self.rows.remove(key);
        if removed.is_some() {
            self.dirty.insert(key.to_owned());
        }
        removed.map(|r| r.value)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.rows.contains_key(key)
    }

    /// Resident rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Resident rows in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.rows.iter().map(|(k, r)| (k, &r.value))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.rows.values().map(|r| &r.value)
    }

    /// The rows changed since the last call, serialised, each prefixed by `prefix` (so
    /// several maps can share one projector's tree); in a paged map, cold rows go under
    /// the archive prefix instead.
    pub fn take_changes(&mut self, prefix: &str) -> Vec<ViewChange> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut changes = Vec::with_capacity(dirty.len());
        for key in dirty {
            let live_key = || format!("{prefix}{key}").into_bytes();
            let Some(paging) = &mut self.paging else {
                let value = self.rows.get(&key).map(|r| encode_row(&r.value));
                changes.push((live_key(), value));
                continue;
            };
            let archive_key = || format!("{}{key}", paging.archive_prefix).into_bytes();
            let Some(resident) = self.rows.get_mut(&key) else {
                // Removed: wherever it was.
                changes.push((live_key(), None));
                changes.push((archive_key(), None));
                continue;
            };
            let value = Some(encode_row(&resident.value));
            let target = if (paging.cold)(&resident.value) {
                paging.cooled.push_back((key.clone(), resident.touched));
                changes.push((archive_key(), value));
                Stored::Archive
            } else {
                changes.push((live_key(), value));
                Stored::Live
            };
            match resident.stored.stale_copy(target) {
                Some(Stored::Live) => changes.push((live_key(), None)),
                Some(Stored::Archive) => changes.push((archive_key(), None)),
                _ => {}
            }
            resident.stored = target;
        }
        changes
    }

    /// Drops from memory the least recently touched cold rows beyond the cold capacity,
    /// among those written by earlier `take_changes` and not touched since. Call it only
    /// once those changes are committed.
    pub fn evict(&mut self) {
        let Some(paging) = &mut self.paging else {
            return;
        };
        while paging.cooled.len() > paging.cold_capacity {
            let Some((key, touched)) = paging.cooled.pop_front() else {
                break;
            };
            let evictable = self.rows.get(&key).is_some_and(|r| {
                r.touched == touched && r.stored == Stored::Archive && (paging.cold)(&r.value)
            });
            if evictable && !self.dirty.contains(&key) {
                self.rows.remove(&key);
            }
        }
    }

    /// The archive row key of `key` (what `rows_needed` asks for), if the map is paged
    /// and `key` is not resident.
    pub fn archive_key(&self, key: &str) -> Option<Vec<u8>> {
        let paging = self.paging.as_ref()?;
        (!self.rows.contains_key(key))
            .then(|| format!("{}{key}", paging.archive_prefix).into_bytes())
    }

    /// Takes back an archived row read for `rows_needed`; returns whether `row_key` was
    /// one of this map's archive keys. A key already resident is left as it is (memory
    /// is never older than disk).
    pub fn page_in(
        &mut self,
        projector: &'static str,
        row_key: &[u8],
        row: Option<&[u8]>,
    ) -> Result<bool, ProjectionError> {
        let Some(paging) = &self.paging else {
            return Ok(false);
        };
        let Some(key) = row_key.strip_prefix(paging.archive_prefix.as_bytes()) else {
            return Ok(false);
        };
        let (Some(bytes), Ok(key)) = (row, std::str::from_utf8(key)) else {
            return Ok(true);
        };
        if self.rows.contains_key(key) {
            return Ok(true);
        }
        let value = decode_row(bytes).map_err(|source| ProjectionError::UndecodableRow {
            projector,
            key: String::from_utf8_lossy(row_key).into_owned(),
            source,
        })?;
        let touched = self.touch();
        // A candidate for eviction again, in case the event leaves it unchanged.
        if let Some(paging) = &mut self.paging {
            paging.cooled.push_back((key.to_owned(), touched));
        }
        self.rows.insert(
            key.to_owned(),
            Resident {
                value,
                stored: Stored::Archive,
                touched,
            },
        );
        Ok(true)
    }

    /// The value of `key`, resident or paged out (read from `rows`, which must be this
    /// map's persisted rows).
    pub fn read(
        &self,
        projector: &'static str,
        key: &str,
        rows: &dyn RowSource,
    ) -> Result<Option<std::borrow::Cow<'_, V>>, ProjectionError>
    where
        V: Clone,
    {
        if let Some(resident) = self.rows.get(key) {
            return Ok(Some(std::borrow::Cow::Borrowed(&resident.value)));
        }
        let Some(paging) = &self.paging else {
            return Ok(None);
        };
        let row_key = format!("{}{key}", paging.archive_prefix);
        let Some(bytes) = rows.row(row_key.as_bytes())? else {
            return Ok(None);
        };
        let value = decode_row(&bytes).map_err(|source| ProjectionError::UndecodableRow {
            projector,
            key: row_key,
            source,
        })?;
        Ok(Some(std::borrow::Cow::Owned(value)))
    }

    /// Adds a persisted row whose key starts with `prefix` (the live prefix); other rows
    /// are ignored. Returns whether the row was taken.
    pub fn restore_row(
        &mut self,
        projector: &'static str,
        prefix: &str,
        row: &ViewRow,
    ) -> Result<bool, ProjectionError> {
        let Some(key) = row.0.strip_prefix(prefix.as_bytes()) else {
            return Ok(false);
        };
        let key = String::from_utf8_lossy(key).into_owned();
        let value = decode_row(&row.1).map_err(|source| ProjectionError::UndecodableRow {
            projector,
            key: format!("{prefix}{key}"),
            source,
        })?;
        let touched = self.touch();
        self.rows.insert(
            key,
            Resident {
                value,
                stored: Stored::Live,
                touched,
            },
        );
        Ok(true)
    }

    pub fn clear(&mut self) {
        self.rows.clear();
        self.dirty.clear();
        if let Some(paging) = &mut self.paging {
            paging.cooled.clear();
        }
    }
}

/// The digest of a view: BLAKE3 over its rows in key order, each length-prefixed. Two
/// views with the same rows have the same digest whatever order they were written in.
pub fn digest_rows<'a>(rows: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> String {
    let mut hasher = blake3::Hasher::new();
    for (key, value) in rows {
        hasher.update(&(key.len() as u64).to_be_bytes());
        hasher.update(key);
        hasher.update(&(value.len() as u64).to_be_bytes());
        hasher.update(value);
    }
    hasher.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_map_gives_back_its_table_and_a_full_one_keeps_it() {
        let mut map: std::collections::HashMap<u32, u32> = (0..100_000).map(|i| (i, i)).collect();
        let peak = map.capacity();
        shrink_when_sparse(&mut map);
        assert_eq!(map.capacity(), peak, "a full map keeps its table");
        map.retain(|k, _| *k < 10_000);
        shrink_when_sparse(&mut map);
        assert!(map.capacity() <= peak / 4, "{} of {peak}", map.capacity());
        assert!(map.capacity() >= 20_000);
        assert!((0..10_000).all(|k| map[&k] == k));
    }

    #[test]
    fn view_map_reports_each_changed_row_once() {
        let mut map: ViewMap<u32> = ViewMap::new();
        map.insert("b".into(), 1);
        map.insert("a".into(), 2);
        *map.get_mut("b").unwrap() += 1;
        let changes = map.take_changes("x/");
        assert_eq!(
            changes,
            vec![
                (b"x/a".to_vec(), Some(encode_row(&2u32))),
                (b"x/b".to_vec(), Some(encode_row(&2u32)))
            ]
        );
        assert!(map.take_changes("x/").is_empty());
        map.remove("a");
        assert_eq!(map.take_changes("x/"), vec![(b"x/a".to_vec(), None)]);
    }

    #[test]
    fn restore_reads_back_what_was_written() {
        let mut map: ViewMap<Vec<u8>> = ViewMap::new();
        map.insert("k".into(), vec![1, 2]);
        let rows: Vec<ViewRow> = map
            .take_changes("p/")
            .into_iter()
            .map(|(k, v)| (k, v.unwrap()))
            .collect();
        let mut restored: ViewMap<Vec<u8>> = ViewMap::new();
        for row in &rows {
            assert!(restored.restore_row("t", "p/", row).unwrap());
        }
        assert_eq!(restored.get("k"), Some(&vec![1, 2]));
        let damaged = (b"p/x".to_vec(), vec![codec::ROW_FORMAT_V1, 5]);
        let error = restored.restore_row("t", "p/", &damaged).unwrap_err();
        assert!(error.to_string().contains("\"p/x\""), "{error}");
    }

    fn cold_when_odd(v: &u32) -> bool {
        v % 2 == 1
    }

    #[test]
    fn a_paged_map_archives_cold_rows_and_pages_them_back() {
        let mut map: ViewMap<u32> = ViewMap::paged("a/", cold_when_odd, 0);
        let mut disk = BTreeMap::new();
        map.insert("x".into(), 2);
        map.insert("y".into(), 3);
        apply_changes(&mut disk, map.take_changes("l/"));
        assert_eq!(
            disk.keys().cloned().collect::<Vec<_>>(),
            vec![b"a/y".to_vec(), b"l/x".to_vec()]
        );
        map.evict();
        assert_eq!(map.get("y"), None, "the cold row left memory");
        assert_eq!(map.get("x"), Some(&2));
        assert_eq!(map.read("t", "y", &disk).unwrap().as_deref(), Some(&3));
        assert_eq!(map.archive_key("y"), Some(b"a/y".to_vec()));
        assert_eq!(map.archive_key("x"), None);

        // An event touches y again: paged in, warmed, moved back to the live prefix.
        let row = disk.get(b"a/y".as_slice()).cloned();
        assert!(map.page_in("t", b"a/y", row.as_deref()).unwrap());
        assert!(
            map.take_changes("l/").is_empty(),
            "paging in changes nothing"
        );
        *map.get_mut("y").unwrap() = 4;
        // x goes cold in the same batch.
        *map.get_mut("x").unwrap() = 5;
        apply_changes(&mut disk, map.take_changes("l/"));
        assert_eq!(
            disk.keys().cloned().collect::<Vec<_>>(),
            vec![b"a/x".to_vec(), b"l/y".to_vec()]
        );
        // A row changed after the last take_changes stays even if it is cold.
        *map.get_mut("x").unwrap() = 7;
        map.evict();
        assert_eq!(map.get("x"), Some(&7));
        apply_changes(&mut disk, map.take_changes("l/"));
        map.evict();
        assert_eq!(map.get("x"), None);
        assert_eq!(disk.get(b"a/x".as_slice()), Some(&encode_row(&7u32)));
    }

    #[test]
    fn cold_rows_stay_cached_up_to_the_capacity_least_recently_touched_leave_first() {
        let mut map: ViewMap<u32> = ViewMap::paged("a/", cold_when_odd, 2);
        let mut disk = BTreeMap::new();
        for (key, value) in [("k1", 1), ("k2", 3), ("k3", 5), ("k4", 2)] {
            map.insert(key.into(), value);
        }
        apply_changes(&mut disk, map.take_changes("l/"));
        // k1 is touched again (and stays cold): it becomes the most recent.
        *map.get_mut("k1").unwrap() = 7;
        apply_changes(&mut disk, map.take_changes("l/"));
        map.evict();
        let resident: Vec<&String> = map.iter().map(|(k, _)| k).collect();
        assert_eq!(
            resident,
            ["k1", "k3", "k4"],
            "k2 was the least recently touched"
        );
        // A row paged in and left unchanged is evicted again in its turn.
        let row = disk.get(b"a/k2".as_slice()).cloned();
        map.page_in("t", b"a/k2", row.as_deref()).unwrap();
        map.evict();
        assert_eq!(
            map.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["k1", "k2", "k4"]
        );
    }

    #[test]
    fn page_in_of_a_missing_row_or_a_resident_key_changes_nothing() {
        let mut map: ViewMap<u32> = ViewMap::paged("a/", cold_when_odd, 0);
        assert!(map.page_in("t", b"a/q", None).unwrap());
        assert!(map.is_empty());
        map.insert("q".into(), 2);
        assert!(map.page_in("t", b"a/q", Some(&encode_row(&9u32))).unwrap());
        assert_eq!(map.get("q"), Some(&2), "memory is never older than disk");
        assert!(!map.page_in("t", b"other/q", None).unwrap());
    }

    #[test]
    fn digest_depends_on_content_not_write_order() {
        let a = [(b"1".as_slice(), b"x".as_slice()), (b"2", b"y")];
        let b = [(b"1".as_slice(), b"x".as_slice()), (b"2", b"z")];
        assert_eq!(
            digest_rows(a.iter().copied()),
            digest_rows(a.iter().copied())
        );
        assert_ne!(
            digest_rows(a.iter().copied()),
            digest_rows(b.iter().copied())
        );
    }
}

pub mod paging {
    //! What the runner does around `apply`, over an in-memory row store: for tests that a
    //! projection's rows and effects do not depend on what it kept in memory.

    use std::collections::BTreeMap;

    use plaint_events::Event;

    use crate::{apply_changes, Effect, Projection, ProjectionError, RowSource};

    /// How often a [`PagedRun`] evicts and restarts.
    #[derive(Debug, Clone, Copy)]
    pub struct PagingSchedule {
        /// Events per batch (rows committed and `evict` called after each).
        pub batch: usize,
        /// Restore from the rows (resident prefixes only) every this many batches; 0: never.
        pub restart_every: usize,
        /// Whether `evict` is called at all (false: the projector keeps everything).
        pub evict: bool,
    }

    /// A projector driven like the runner drives it, with its rows in a `BTreeMap`.
    pub struct PagedRun<P> {
        pub projector: P,
        pub rows: BTreeMap<Vec<u8>, Vec<u8>>,
        pub effects: Vec<Effect>,
    }

    impl<P: Projection> PagedRun<P> {
        pub fn new(projector: P) -> Self {
            PagedRun {
                projector,
                rows: BTreeMap::new(),
                effects: Vec::new(),
            }
        }

        /// Applies `events` (sequence numbers from 1) in batches per `schedule`; `fresh`
        /// makes the projector a restart restores into.
        pub fn run(
            &mut self,
            events: &[Event],
            schedule: PagingSchedule,
            fresh: impl Fn() -> P,
        ) -> Result<(), ProjectionError> {
            for (i, batch) in events.chunks(schedule.batch.max(1)).enumerate() {
                let mut keys = Vec::new();
                for event in batch {
                    self.projector.rows_needed(event, &mut keys);
                }
                keys.sort_unstable();
                keys.dedup();
                for key in keys {
                    let row = self.rows.row(&key)?;
                    self.projector.page_in(&key, row.as_deref())?;
                }
                let first_seq = (i * schedule.batch.max(1)) as u64 + 1;
                for (j, event) in batch.iter().enumerate() {
                    let effects = self.projector.apply(first_seq + j as u64, event);
                    self.effects.extend(effects);
                }
                apply_changes(&mut self.rows, self.projector.take_changes());
                if schedule.evict {
                    self.projector.evict();
                }
                if schedule.restart_every > 0 && (i + 1) % schedule.restart_every == 0 {
                    let mut projector = fresh();
                    let mut resident = Vec::new();
                    for prefix in projector.resident_prefixes() {
                        for row in self.rows.rows_with_prefix(&prefix) {
                            resident.push(row?);
                        }
                    }
                    projector.restore(&mut resident.into_iter())?;
                    self.projector = projector;
                }
            }
            Ok(())
        }
    }
}
