//! [`RowStore`]: the view's rows in memory, found by id through a hash map and addressed
//! by slot, with the set of rows changed since the last `take_changes`.
//!
//! It persists exactly what `plaint_projection::ViewMap` would (same keys, same bytes, the
//! same rows marked changed by the same calls, changes listed in key order), but a lookup
//! hashes the id once instead of comparing it with the ids along a B-tree path, and a
//! complaint's slot lets the projector keep in-memory companions of a row in plain
//! vectors. Rows are never removed: the escalation view keeps every complaint.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use plaint_projection::{decode_row, encode_row, ProjectionError, RowCodec, ViewChange, ViewRow};
use serde::de::DeserializeOwned;

/// Id → slot. The map is only looked up, never iterated for output, so hashing cannot
/// change what the view shows or persists.
type IdMap = HashMap<Arc<str>, u32, BuildHasherDefault<IdHasher>>;

/// The multiply-rotate hash of rustc's `FxHasher`, a word at a time. Ids are short, so
/// hashing them with SipHash (`DefaultHasher`) cost more than the probe; SipHash with its
/// fixed default keys would not resist chosen ids any better.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl IdHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        // The rounds above carry input bits only upwards (a multiply never moves a high bit
        // down), and hashbrown picks the bucket from the low bits: without this, ids that
        // differ only in their last characters ("cust-000000001"...) shared a few buckets
        // and restoring two million of them took minutes. murmur3's finaliser folds the
        // high bits down.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RowStore<V> {
    slots: IdMap,
    ids: Vec<Arc<str>>,
    rows: Vec<V>,
    changed: Vec<bool>,
    /// Slots changed since the last `take_changes`, each once.
    dirty: Vec<u32>,
}

impl<V> Default for RowStore<V> {
    fn default() -> Self {
        RowStore {
            slots: IdMap::default(),
            ids: Vec::new(),
            rows: Vec::new(),
            changed: Vec::new(),
            dirty: Vec::new(),
        }
    }
}

impl<V: RowCodec + DeserializeOwned> RowStore<V> {
    pub fn slot(&self, id: &str) -> Option<u32> {
        self.slots.get(id).copied()
    }

    pub fn get(&self, id: &str) -> Option<&V> {
        self.slot(id).map(|slot| &self.rows[slot as usize])
    }

    pub fn row(&self, slot: u32) -> &V {
        &self.rows[slot as usize]
    }

    pub fn id(&self, slot: u32) -> &Arc<str> {
        &self.ids[slot as usize]
    }

    /// Mutable access marks the row changed.
    pub fn row_mut(&mut self, slot: u32) -> &mut V {
        self.mark(slot);
        &mut self.rows[slot as usize]
    }

    fn mark(&mut self, slot: u32) {
        let changed = &mut self.changed[slot as usize];
        if !*changed {
            *changed = true;
            self.dirty.push(slot);
        }
    }

    /// Inserts or replaces a row (marked changed); returns its slot and whether it is new.
    pub fn insert(&mut self, id: &str, value: V) -> (u32, bool) {
        let (slot, new) = self.put(id, value);
        self.mark(slot);
        (slot, new)
    }

    fn put(&mut self, id: &str, value: V) -> (u32, bool) {
        if let Some(slot) = self.slot(id) {
            self.rows[slot as usize] = value;
            return (slot, false);
        }
        let slot = u32::try_from(self.rows.len()).expect("fewer than 2^32 rows");
        let id: Arc<str> = Arc::from(id);
        self.slots.insert(Arc::clone(&id), slot);
        self.ids.push(id);
        self.rows.push(value);
        self.changed.push(false);
        (slot, true)
    }

    /// The slot of `id`, inserting the row `make` builds when `id` is new; marked changed
    /// either way, as a `get_mut` or an `insert` would.
    pub fn upsert(&mut self, id: &str, make: impl FnOnce() -> V) -> u32 {
        let slot = match self.slot(id) {
            Some(slot) => slot,
            None => self.put(id, make()).0,
        };
        self.mark(slot);
        slot
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Every row, in slot order (the order rows were first written or restored).
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &V)> {
        self.ids.iter().zip(&self.rows)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.rows.iter()
    }

    /// The rows changed since the last call, serialised, each key prefixed by `prefix`,
    /// in key order.
    pub fn take_changes(&mut self, prefix: &str) -> Vec<ViewChange> {
        let mut dirty = std::mem::take(&mut self.dirty);
        for slot in &dirty {
            self.changed[*slot as usize] = false;
        }
        dirty.sort_unstable_by(|a, b| self.ids[*a as usize].cmp(&self.ids[*b as usize]));
        dirty
            .into_iter()
            .map(|slot| {
                let value = encode_row(&self.rows[slot as usize]);
                let key = [prefix.as_bytes(), self.ids[slot as usize].as_bytes()].concat();
                (key, Some(value))
            })
            .collect()
    }

    /// Every row as persisted, keys prefixed by `prefix` (not sorted).
    pub fn persisted(&self, prefix: &str) -> impl Iterator<Item = ViewRow> + '_ {
        let prefix = prefix.as_bytes().to_vec();
        self.iter().map(move |(id, value)| {
            (
                [prefix.as_slice(), id.as_bytes()].concat(),
                encode_row(value),
            )
        })
    }

    /// Takes a persisted row whose key starts with `prefix`; returns Ok(None) for other
    /// rows and the slot of a taken one.
    pub fn restore_row(
        &mut self,
        projector: &'static str,
        prefix: &str,
        row: &ViewRow,
    ) -> Result<Option<u32>, ProjectionError> {
        let Some(key) = row.0.strip_prefix(prefix.as_bytes()) else {
            return Ok(None);
        };
        let key = String::from_utf8_lossy(key);
        let value = decode_row(&row.1).map_err(|source| ProjectionError::UndecodableRow {
            projector,
            key: format!("{prefix}{key}"),
            source,
        })?;
        Ok(Some(self.put(&key, value).0))
    }

    pub fn clear(&mut self) {
        *self = RowStore::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plaint_projection::ViewMap;
    use std::hash::BuildHasher;

    /// Ids that differ only in their last characters must spread over the low bits, which
    /// pick the bucket.
    #[test]
    fn similar_ids_spread_over_the_buckets() {
        let build = BuildHasherDefault::<IdHasher>::default();
        let buckets: std::collections::HashSet<u64> = (0..100_000)
            .map(|i| build.hash_one(format!("cust-C-{i:09}").as_str()) & 0xffff)
            .collect();
        assert!(
            buckets.len() > 50_000,
            "{} of 65,536 buckets",
            buckets.len()
        );
    }

    /// The store and a `ViewMap` given the same calls persist the same changes and rows.
    #[test]
    fn it_persists_what_a_view_map_would() {
        let mut store: RowStore<u32> = RowStore::default();
        let mut map: ViewMap<u32> = ViewMap::new();
        let ids = ["b", "a", "c", "a", "d", "b"];
        for (round, chunk) in ids.chunks(2).enumerate() {
            for (i, id) in chunk.iter().enumerate() {
                let value = (round * 10 + i) as u32;
                if i == 0 {
                    store.insert(id, value);
                    map.insert((*id).to_owned(), value);
                } else {
                    let slot = store.upsert(id, || 0);
                    *store.row_mut(slot) += value;
                    if map.get(id).is_none() {
                        map.insert((*id).to_owned(), 0);
                    }
                    *map.get_mut(id).unwrap() += value;
                }
            }
            assert_eq!(store.take_changes("p/"), map.take_changes("p/"));
        }
        let mut rows: Vec<ViewRow> = store.persisted("p/").collect();
        rows.sort();
        let mut restored: RowStore<u32> = RowStore::default();
        for row in &rows {
            restored.restore_row("test", "p/", row).unwrap();
        }
        assert!(
            restored.take_changes("p/").is_empty(),
            "restoring changes nothing"
        );
        assert_eq!(restored.get("a"), store.get("a"));
        assert_eq!(restored.len(), 4);
    }
}
