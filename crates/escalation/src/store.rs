//! [`RowStore`]: the view's rows in memory, found by id through a hash map and addressed
//! by slot, with the set of rows changed since the last `take_changes`.
//!
//! It persists exactly what a paged `plaint_projection::ViewMap` would (same keys, same
//! bytes, the same rows marked changed by the same calls, changes listed in key order),
//! but a lookup hashes the id once instead of comparing it with the ids along a B-tree
//! path, and an item's slot lets the projector keep in-memory companions of a row in
//! plain vectors.
//!
//! Paging: a row that is cold when its changes are taken is written under the archive
//! prefix instead of the live one, and may then leave memory ([`RowStore::evict`]); its
//! slot goes on a free list for the next new item. Each resident row remembers which
//! prefix holds its persisted copy, so a row that changes side is deleted from the other
//! one, and only then (a delete per write would double a rebuild's writes).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
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

/// The key prefixes of one kind of row: live items (restored at start) and archived ones
/// (read back only when an event or a query asks).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prefixes {
    pub live: &'static str,
    pub archive: &'static str,
}

impl Prefixes {
    fn key(&self, side: Stored, id: &str) -> Vec<u8> {
        let prefix = match side {
            Stored::Archive => self.archive,
            Stored::Live | Stored::Nowhere => self.live,
        };
        [prefix.as_bytes(), id.as_bytes()].concat()
    }
}

pub(crate) use plaint_projection::Stored;

/// The ids that left memory, as a scalable Bloom filter: an id it has never seen has no
/// archived row (when the filter is `complete`), so an event about a new item needs no
/// lookup. A rebuild meets every item new, and a lookup that finds nothing cost as much
/// as applying a few events. About 10 bits per id, 1 % false positives (a lookup that
/// finds nothing, as without the filter).
#[derive(Debug, Clone, Default)]
pub(crate) struct PagedOutIds {
    /// False after a restore from rows: which ids have archived rows is then unknown, and
    /// every id not in memory is looked up.
    complete: bool,
    /// Each twice the capacity of the one before; ids go into the last.
    layers: Vec<BloomLayer>,
}

#[derive(Debug, Clone)]
struct BloomLayer {
    bits: Vec<u64>,
    capacity: usize,
    len: usize,
}

impl PagedOutIds {
    const PROBES: u64 = 7;
    const FIRST_CAPACITY: usize = 1 << 14;

    fn complete() -> PagedOutIds {
        PagedOutIds {
            complete: true,
            layers: Vec::new(),
        }
    }

    /// Two independent halves of one hash drive the probes (Kirsch–Mitzenmacher).
    fn probes(id: &str, bit_count: u64) -> impl Iterator<Item = u64> {
        let hash = BuildHasherDefault::<IdHasher>::default().hash_one(id);
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        (0..Self::PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bit_count)
    }

    pub fn may_contain(&self, id: &str) -> bool {
        !self.complete || self.layers.iter().any(|layer| layer.contains(id))
    }

    pub fn insert(&mut self, id: &str) {
        if !self.complete || self.layers.iter().any(|layer| layer.contains(id)) {
            return;
        }
        if self.layers.last().is_none_or(|l| l.len >= l.capacity) {
            let capacity = self
                .layers
                .last()
                .map_or(Self::FIRST_CAPACITY, |l| l.capacity * 2);
            self.layers.push(BloomLayer {
                bits: vec![0; capacity * 10 / 64 + 1],
                capacity,
                len: 0,
            });
        }
        let layer = self.layers.last_mut().expect("pushed above");
        let bit_count = layer.bits.len() as u64 * 64;
        for bit in Self::probes(id, bit_count) {
            layer.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        layer.len += 1;
    }
}

impl BloomLayer {
    fn contains(&self, id: &str) -> bool {
        let bit_count = self.bits.len() as u64 * 64;
        PagedOutIds::probes(id, bit_count)
            .all(|bit| self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

#[derive(Debug, Clone, Copy)]
struct SlotState {
    /// Changed since the last `take_changes` (then listed in `dirty`).
    changed: bool,
    stored: Stored,
    /// The stamp of the slot's latest entry in `evictable` (0: none); older entries of
    /// the slot, or of an item that had the slot before, are stale.
    listed: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct RowStore<V> {
    slots: IdMap,
    /// By slot; `None` in a free slot (its item left memory), which `free` lists.
    ids: Vec<Option<Arc<str>>>,
    /// Boxed: this table keeps the length of the most rows ever resident at once, and a
    /// complaint row inline made every slot, free or not, ~300 bytes (40 MB at 130,000
    /// slots in a heap profile of a live ingest, kept after the rows left).
    rows: Vec<Option<Box<V>>>,
    state: Vec<SlotState>,
    /// Slots changed since the last `take_changes`, each once.
    dirty: Vec<u32>,
    free: Vec<u32>,
    /// Slots whose row went to the archive (or came from it) and may leave memory at the
    /// next `evict`, oldest first, each with the stamp it was listed with. Entries of
    /// slots listed again since, or freed, are stale: `evict` drops them.
    evictable: Vec<(u32, u64)>,
    /// The last stamp given out.
    stamps: u64,
    paged_out: PagedOutIds,
}

impl<V> Default for RowStore<V> {
    fn default() -> Self {
        RowStore {
            slots: IdMap::default(),
            ids: Vec::new(),
            rows: Vec::new(),
            state: Vec::new(),
            dirty: Vec::new(),
            free: Vec::new(),
            evictable: Vec::new(),
            stamps: 0,
            paged_out: PagedOutIds::complete(),
        }
    }
}

impl<V: RowCodec + DeserializeOwned> RowStore<V> {
    pub fn slot(&self, id: &str) -> Option<u32> {
        self.slots.get(id).copied()
    }

    pub fn get(&self, id: &str) -> Option<&V> {
        self.slot(id).map(|slot| self.row(slot))
    }

    pub fn row(&self, slot: u32) -> &V {
        self.rows[slot as usize]
            .as_deref()
            .expect("a slot in use holds a row")
    }

    pub fn id(&self, slot: u32) -> &Arc<str> {
        self.ids[slot as usize]
            .as_ref()
            .expect("a slot in use holds an id")
    }

    /// Whether `slot` holds an item (slots of evicted items are free until reused).
    pub fn in_use(&self, slot: u32) -> bool {
        self.ids.get(slot as usize).is_some_and(Option::is_some)
    }

    /// One past the highest slot ever used: the length companions by slot need.
    pub fn slot_count(&self) -> usize {
        self.ids.len()
    }

    pub fn stored(&self, slot: u32) -> Stored {
        self.state[slot as usize].stored
    }

    /// Mutable access marks the row changed.
    pub fn row_mut(&mut self, slot: u32) -> &mut V {
        self.mark(slot);
        self.rows[slot as usize]
            .as_deref_mut()
            .expect("a slot in use holds a row")
    }

    /// Lists `slot` as a candidate for eviction (the most recent), making its earlier
    /// entries stale.
    fn list_evictable(&mut self, slot: u32) {
        self.stamps += 1;
        self.state[slot as usize].listed = self.stamps;
        self.evictable.push((slot, self.stamps));
    }

    /// Marks the row changed, so that `take_changes` writes it again (and places it again).
    pub fn mark(&mut self, slot: u32) {
        let state = &mut self.state[slot as usize];
        if !state.changed {
            state.changed = true;
            self.dirty.push(slot);
        }
    }

    /// Inserts or replaces a row (marked changed); returns its slot and whether it is new.
    pub fn insert(&mut self, id: &str, value: V) -> (u32, bool) {
        let (slot, new) = self.put(id, value, Stored::Nowhere);
        self.mark(slot);
        (slot, new)
    }

    /// A new item takes a free slot if there is one; `stored` is where its row already is.
    fn put(&mut self, id: &str, value: V, stored: Stored) -> (u32, bool) {
        if let Some(slot) = self.slot(id) {
            self.rows[slot as usize] = Some(Box::new(value));
            return (slot, false);
        }
        let id: Arc<str> = Arc::from(id);
        let state = SlotState {
            changed: false,
            stored,
            listed: 0,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.ids[slot as usize] = Some(Arc::clone(&id));
                self.rows[slot as usize] = Some(Box::new(value));
                self.state[slot as usize] = state;
                slot
            }
            None => {
                let slot = u32::try_from(self.rows.len()).expect("fewer than 2^32 rows");
                self.ids.push(Some(Arc::clone(&id)));
                self.rows.push(Some(Box::new(value)));
                self.state.push(state);
                slot
            }
        };
        self.slots.insert(id, slot);
        (slot, true)
    }

    /// The slot of `id`, inserting the row `make` builds when `id` is new; marked changed
    /// either way, as a `get_mut` or an `insert` would.
    pub fn upsert(&mut self, id: &str, make: impl FnOnce() -> V) -> u32 {
        let slot = match self.slot(id) {
            Some(slot) => slot,
            None => self.put(id, make(), Stored::Nowhere).0,
        };
        self.mark(slot);
        slot
    }

    /// Rows in memory.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Every resident row, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &V)> {
        self.ids
            .iter()
            .zip(&self.rows)
            .filter_map(|(id, row)| Some((id.as_ref()?, row.as_deref()?)))
    }

    /// The rows changed since the last call, serialised, in key order: a cold row (as
    /// `cold` says) under `prefixes.archive`, any other under `prefixes.live`, and a
    /// delete of the copy on the other side when a row moved. `placed` hears where each
    /// row went (slot, id, row, side).
    pub fn take_changes(
        &mut self,
        prefixes: Prefixes,
        mut cold: impl FnMut(&V) -> bool,
        mut placed: impl FnMut(u32, &str, &V, Stored),
    ) -> Vec<ViewChange> {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable_by(|a, b| self.id(*a).cmp(self.id(*b)));
        let mut changes = Vec::with_capacity(dirty.len());
        let mut cooled = Vec::new();
        for slot in dirty {
            let row = self.rows[slot as usize]
                .as_deref()
                .expect("a changed slot is in use");
            let id = self.ids[slot as usize]
                .as_deref()
                .expect("a changed slot is in use");
            let state = &mut self.state[slot as usize];
            state.changed = false;
            let side = if cold(row) {
                cooled.push(slot);
                Stored::Archive
            } else {
                Stored::Live
            };
            changes.push((prefixes.key(side, id), Some(encode_row(row))));
            if let Some(stale) = state.stored.stale_copy(side) {
                changes.push((prefixes.key(stale, id), None));
            }
            state.stored = side;
            placed(slot, id, row, side);
        }
        for slot in cooled {
            self.list_evictable(slot);
        }
        changes
    }

    /// Drops from memory archived rows that have not changed since they were taken (call
    /// it only once those changes are committed) and for which `leave(slot)` agrees, the
    /// longest cold first, until at most `cold_capacity` are listed; `leave` may clear the
    /// caller's companions of the slot. A row `leave` holds back is asked about again at
    /// the next call. The cold rows kept are a cache: most complaints get their next event
    /// (closed after resolved) soon, and reading a row back from a large sled tree costs
    /// tens of microseconds.
    pub fn evict(&mut self, cold_capacity: usize, mut leave: impl FnMut(u32) -> bool) {
        // One entry per listed row, so that the capacity counts rows: a row touched again
        // is listed anew (and cached the longer), and a stale entry must not evict it, or
        // the item that reused a freed slot.
        let state = &self.state;
        self.evictable
            .retain(|(slot, stamp)| state[*slot as usize].listed == *stamp);
        let mut held = Vec::new();
        for (slot, stamp) in plaint_projection::coldest_beyond(&mut self.evictable, cold_capacity) {
            if !self.in_use(slot) {
                continue;
            }
            let state = self.state[slot as usize];
            // A changed row is taken again, and listed again if it is still cold.
            if state.changed || state.stored != Stored::Archive {
                continue;
            }
            if !leave(slot) {
                held.push((slot, stamp));
                continue;
            }
            let id = self.ids[slot as usize].take().expect("in use");
            self.paged_out.insert(&id);
            self.slots.remove(&id);
            self.rows[slot as usize] = None;
            self.state[slot as usize].listed = 0;
            self.free.push(slot);
        }
        // Held ones stay the first candidates.
        held.append(&mut self.evictable);
        self.evictable = held;
        plaint_projection::shrink_when_sparse(&mut self.slots);
    }

    /// The archive key of `id` when it is not in memory and may have been paged out: the
    /// row an event about it needs.
    pub fn archive_key(&self, prefixes: Prefixes, id: &str) -> Option<Vec<u8>> {
        (!self.slots.contains_key(id) && self.paged_out.may_contain(id))
            .then(|| prefixes.key(Stored::Archive, id))
    }

    /// After a restore from rows, any id may have an archived row.
    pub fn forget_paged_out(&mut self) {
        self.paged_out = PagedOutIds::default();
    }

    /// Takes back an archived row (`id`'s row under the archive prefix, read from the
    /// view's rows), unchanged: it may leave again at the next `evict`. Returns the slot,
    /// or None when `id` is in memory already (memory is never older than disk).
    pub fn page_in(
        &mut self,
        projector: &'static str,
        prefixes: Prefixes,
        id: &str,
        bytes: &[u8],
    ) -> Result<Option<u32>, ProjectionError> {
        if self.slots.contains_key(id) {
            return Ok(None);
        }
        let value = decode(projector, prefixes.archive, id, bytes)?;
        let (slot, _) = self.put(id, value, Stored::Archive);
        self.list_evictable(slot);
        Ok(Some(slot))
    }

    /// Every resident row as it would be persisted now (cold ones under the archive
    /// prefix), not sorted.
    pub fn persisted<'a>(
        &'a self,
        prefixes: Prefixes,
        cold: impl Fn(&V) -> bool + 'a,
    ) -> impl Iterator<Item = ViewRow> + 'a {
        self.iter().map(move |(id, value)| {
            let side = if cold(value) {
                Stored::Archive
            } else {
                Stored::Live
            };
            (prefixes.key(side, id), encode_row(value))
        })
    }

    /// Takes a persisted row whose key starts with either of `prefixes`; returns Ok(None)
    /// for other rows and the slot and side of a taken one.
    pub fn restore_row(
        &mut self,
        projector: &'static str,
        prefixes: Prefixes,
        row: &ViewRow,
    ) -> Result<Option<(u32, Stored)>, ProjectionError> {
        let (prefix, side) = if row.0.starts_with(prefixes.live.as_bytes()) {
            (prefixes.live, Stored::Live)
        } else if row.0.starts_with(prefixes.archive.as_bytes()) {
            (prefixes.archive, Stored::Archive)
        } else {
            return Ok(None);
        };
        let id = String::from_utf8_lossy(&row.0[prefix.len()..]);
        let value = decode(projector, prefix, &id, &row.1)?;
        let (slot, _) = self.put(&id, value, side);
        if side == Stored::Archive {
            self.list_evictable(slot);
        }
        Ok(Some((slot, side)))
    }

    pub fn clear(&mut self) {
        *self = RowStore::default();
    }
}

fn decode<V: RowCodec + DeserializeOwned>(
    projector: &'static str,
    prefix: &str,
    id: &str,
    bytes: &[u8],
) -> Result<V, ProjectionError> {
    decode_row(bytes).map_err(|source| ProjectionError::UndecodableRow {
        projector,
        key: format!("{prefix}{id}"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plaint_projection::{apply_changes, ViewMap};
    use std::collections::BTreeMap;

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

    const PREFIXES: Prefixes = Prefixes {
        live: "p/",
        archive: "q/",
    };

    fn odd(value: &u32) -> bool {
        value % 2 == 1
    }

    /// The store and a paged `ViewMap` given the same calls persist the same changes, keep
    /// the same rows in memory and page the same rows back in.
    #[test]
    fn it_persists_and_pages_what_a_paged_view_map_would() {
        let mut store: RowStore<u32> = RowStore::default();
        let mut map: ViewMap<u32> = ViewMap::paged("q/", odd, 0);
        let mut disk: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let ids = ["b", "a", "c", "a", "d", "b", "c", "e", "a", "b"];
        for (round, chunk) in ids.chunks(2).enumerate() {
            // An event about an evicted id pages its row in first, as the runner does.
            for id in chunk {
                if let Some(key) = store.archive_key(PREFIXES, id) {
                    assert_eq!(map.archive_key(id), Some(key.clone()));
                    if let Some(row) = disk.get(&key) {
                        store.page_in("test", PREFIXES, id, row).unwrap();
                        map.page_in("test", &key, Some(row.as_slice())).unwrap();
                    }
                }
            }
            for (i, id) in chunk.iter().enumerate() {
                let value = (round * 3 + i) as u32;
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
            let changes = store.take_changes(PREFIXES, odd, |_, _, _, _| {});
            assert_eq!(changes, map.take_changes("p/"), "round {round}");
            apply_changes(&mut disk, changes);
            store.evict(0, |_| true);
            map.evict();
            let resident: Vec<_> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
            let mut ours: Vec<_> = store.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            ours.sort();
            assert_eq!(ours, resident, "round {round}");
        }
        assert!(store.free.len() + store.len() == store.slot_count());
        let mut restored: RowStore<u32> = RowStore::default();
        for row in disk.iter().filter(|(k, _)| k.starts_with(b"p/")) {
            let (_, side) = restored
                .restore_row("test", PREFIXES, &(row.0.clone(), row.1.clone()))
                .unwrap()
                .unwrap();
            assert_eq!(side, Stored::Live);
        }
        assert!(
            restored
                .take_changes(PREFIXES, odd, |_, _, _, _| {})
                .is_empty(),
            "restoring changes nothing"
        );
        assert_eq!(restored.len(), store.len());
    }

    #[test]
    fn a_row_held_back_by_the_caller_leaves_at_a_later_evict() {
        let mut store: RowStore<u32> = RowStore::default();
        let (slot, _) = store.insert("a", 1);
        store.take_changes(PREFIXES, odd, |_, _, _, _| {});
        store.evict(0, |_| false);
        assert_eq!(store.get("a"), Some(&1));
        store.evict(0, |s| s == slot);
        assert_eq!(store.get("a"), None);
        assert_eq!(store.archive_key(PREFIXES, "a"), Some(b"q/a".to_vec()));
        assert_eq!(
            store.archive_key(PREFIXES, "never-seen"),
            None,
            "an id never paged out has no archived row to look up"
        );
        let (reused, new) = store.insert("b", 2);
        assert_eq!((reused, new), (slot, true), "the free slot is reused");
        assert_eq!(store.len(), 1);
        store.forget_paged_out();
        assert_eq!(
            store.archive_key(PREFIXES, "never-seen"),
            Some(b"q/never-seen".to_vec()),
            "after a restore any id may be archived"
        );
    }

    #[test]
    fn cold_rows_up_to_the_capacity_stay_the_longest_cold_leave_first() {
        let mut store: RowStore<u32> = RowStore::default();
        for (id, value) in [("a", 1), ("b", 3)] {
            store.insert(id, value);
        }
        store.take_changes(PREFIXES, odd, |_, _, _, _| {});
        store.insert("c", 5);
        store.take_changes(PREFIXES, odd, |_, _, _, _| {});
        store.evict(2, |_| true);
        assert_eq!(store.get("a"), None, "the longest cold left");
        assert_eq!((store.get("b"), store.get("c")), (Some(&3), Some(&5)));
        store.evict(2, |_| true);
        assert_eq!(store.len(), 2, "within the capacity nothing leaves");
        store.evict(0, |_| true);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn a_row_cooled_again_is_cached_from_its_latest_listing() {
        let mut store: RowStore<u32> = RowStore::default();
        store.insert("a", 1);
        store.insert("b", 3);
        store.take_changes(PREFIXES, odd, |_, _, _, _| {});
        let a = store.slot("a").unwrap();
        *store.row_mut(a) = 5;
        store.take_changes(PREFIXES, odd, |_, _, _, _| {});
        store.evict(1, |_| true);
        assert_eq!(store.get("b"), None, "b cooled the longest ago");
        assert_eq!(
            store.get("a"),
            Some(&5),
            "a's first listing is stale: it cooled again since"
        );
        // c takes b's freed slot: a left first, whatever b's slot was listed with.
        store.insert("c", 7);
        store.take_changes(PREFIXES, odd, |_, _, _, _| {});
        store.evict(1, |_| true);
        assert_eq!((store.get("a"), store.get("c")), (None, Some(&7)));
    }

    /// Ids a filter took are always found (a miss would lose an archived row); few of the
    /// others are.
    #[test]
    fn the_paged_out_filter_finds_every_id_it_took() {
        let mut ids = PagedOutIds::complete();
        for i in 0..50_000 {
            ids.insert(&format!("C-{i}"));
        }
        assert!((0..50_000).all(|i| ids.may_contain(&format!("C-{i}"))));
        let false_positives = (0..50_000)
            .filter(|i| ids.may_contain(&format!("D-{i}")))
            .count();
        assert!(false_positives < 2_500, "{false_positives} of 50,000");
    }
}
