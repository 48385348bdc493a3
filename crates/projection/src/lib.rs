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
//!   persist exactly those rows together with the checkpoint.
//! - [`ViewRow`], [`ViewChange`]: the persisted form of a view, one row per key.
//! - [`digest_rows`]: the deterministic digest of a view, used to compare a rebuild with
//!   the live view.
//! - [`codec`]: the binary form of rows ([`RowCodec`], [`encode_row`], [`decode_row`],
//!   which also reads the JSON rows of older versions).
//!
//! Projections keep their state in ordered maps, so the same events always give the same
//! rows in the same order, and so the same digest.

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
    #[error("view row {key:?} of projector {projector} cannot be decoded ({source}); run `plaint rebuild {projector}`")]
    UndecodableRow {
        projector: &'static str,
        key: String,
        #[source]
        source: RowError,
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
    fn restore(&mut self, rows: &mut dyn Iterator<Item = ViewRow>) -> Result<(), ProjectionError>;
}

/// An ordered map of view rows that records which keys changed since the last
/// [`ViewMap::take_changes`]. Values are stored in their binary row form ([`codec`]).
#[derive(Debug, Clone)]
pub struct ViewMap<V> {
    rows: BTreeMap<String, V>,
    dirty: BTreeSet<String>,
}

impl<V> Default for ViewMap<V> {
    fn default() -> Self {
        ViewMap {
            rows: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }
}

impl<V: RowCodec + DeserializeOwned> ViewMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.rows.get(key)
    }

    /// Mutable access marks the row changed.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let value = self.rows.get_mut(key)?;
        if !self.dirty.contains(key) {
            self.dirty.insert(key.to_owned());
        }
        Some(value)
    }

    pub fn insert(&mut self, key: String, value: V) {
        self.dirty.insert(key.clone());
        self.rows.insert(key, value);
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        let removed = self.rows.remove(key);
        if removed.is_some() {
            self.dirty.insert(key.to_owned());
        }
        removed
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.rows.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.rows.iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.rows.values()
    }

    /// The rows changed since the last call, serialised, each prefixed by `prefix` (so
    /// several maps can share one projector's tree).
    pub fn take_changes(&mut self, prefix: &str) -> Vec<ViewChange> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|key| {
                let value = self.rows.get(&key).map(encode_row);
                (format!("{prefix}{key}").into_bytes(), value)
            })
            .collect()
    }

    /// Replaces the content with persisted rows whose key starts with `prefix`; other rows
    /// are ignored.
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
        self.rows.insert(key, value);
        Ok(true)
    }

    pub fn clear(&mut self) {
        self.rows.clear();
        self.dirty.clear();
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
