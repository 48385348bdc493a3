//! Compact in-memory indexes: event id → sequence, complaint → stream head.
//!
//! Why in memory: a sled tree keyed by random UUIDs costs one random B-tree insert per
//! event and cut durable ingest from ~100k/s to ~26k/s on the reference machine (see
//! ARCHITECTURE.md, "Storage"). The index records themselves are durable (they are written
//! in the same atomic batch as the events), so these structures are a cache that is always
//! complete; [`crate::snapshot`] saves them so that opening a big log does not rescan it.
//!
//! Why this shape: at 10 million events a `HashMap<Uuid, u64>` plus a map of complaint id
//! strings to `Vec<u64>` took ~80 bytes per event. Here an event costs 8 bytes of memory (a
//! 48-bit id fingerprint, of which the sorted array stores the 32 bits under its part's and
//! radix bucket's 16, and a 32-bit sequence) and 4 bytes of a scratch file (a 32-bit
//! back-pointer to the previous event of its complaint; [`BackPointers`] keeps the last
//! million in memory), and a complaint 32 bytes (a 128-bit key and its 16-byte head).
//! New entries go to small hash maps and are merged into the sorted arrays when those grow
//! past a sixteenth of the arrays, so the merge cost is amortised and lookups stay two cache
//! misses deep (a radix table on the top 16 bits, then a short binary search).
//!
//! Why in parts: the sorted arrays are split into 256 parts by the keys' top 8 bits (see
//! [`PARTS`]), each with its own hash map of recent entries, merged on its own when that
//! map reaches a sixteenth of the part. A merge allocates one part's new arrays beyond the
//! live index, never a whole run's (the single sorted arrays of before held 160 MB more at
//! 10 million events while the id index merged, every ~600,000 appends). A snapshot capture
//! shares the parts: the id parts are never changed, only replaced by a merge (a capture
//! keeps the ones replaced while it is held), and a stream head changed in a part a capture
//! shares copies that part's heads first (copy-on-write, 16 bytes per complaint of the
//! part), where the capture used to copy every key and head (68 MB at 2 million
//! complaints) on the writer.
//!
//! Fingerprints: ids are looked up by 48 bits, so two ids may share a fingerprint (about
//! one pair in a log of 10 million events, and a new id meets a false candidate once in
//! ~28 million appends at that size); the index returns every candidate and the caller
//! checks the stored id, which costs one read of a stored event. 64 bits would cost a
//! third more memory per event (40 MB more at 10 million events) to save that read.
//! Complaint keys are 128 bits of BLAKE3: a collision is as likely as guessing a random
//! 128-bit key, so the head is trusted as is.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use plaint_events::lifecycle::{self, StreamStatus};
use plaint_events::EventType;
use uuid::Uuid;

/// Keys here are already uniformly distributed hashes: folding them to 64 bits is a good
/// enough hash and much cheaper than SipHash.
#[derive(Default)]
pub struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(29) ^ u64::from_le_bytes(buf))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        // Multiplied, not taken as is: the hash map tells keys apart in a probe by the
        // hash's top 7 bits, which in a part's map of id keys are the part's own (all the
        // same); the product's top bits depend on the key's random low ones.
        self.0 = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = (v as u64) ^ ((v >> 64) as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FoldHasher>>;

/// The 48-bit fingerprint an id is indexed by, in a `u64` whose bits 32 to 47 are zero
/// (see [`IdBits`]). Part of the snapshot format: changing it needs a new snapshot version.
pub fn id_key(id: &Uuid) -> u64 {
    fingerprint_bits(id_hash(id))
}

/// 64 well-mixed bits of an id (format-1 snapshots stored them whole).
pub(crate) fn id_hash(id: &Uuid) -> u64 {
    let v = id.as_u128();
    // UUIDv7 puts a timestamp in the high half and v4/v5 fix a few version bits: mix both
    // halves so every kind spreads over the whole range (the radix table relies on it).
    let x = (v as u64) ^ ((v >> 64) as u64).rotate_left(32);
    let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Keeps the 48 bits of a 64-bit hash that the id index stores: the top 16 (the radix
/// table's bucket) and the low 32 (the sorted array's entry).
pub fn fingerprint_bits(hash: u64) -> u64 {
    hash & 0xffff_0000_ffff_ffff
}

/// The 128-bit key a complaint id is indexed by (BLAKE3, truncated).
pub fn complaint_key(complaint_id: &str) -> u128 {
    let hash = blake3::hash(complaint_id.as_bytes());
    u128::from_le_bytes(hash.as_bytes()[..16].try_into().expect("16 bytes"))
}

/// Keys of the sorted arrays: their top 16 bits choose a part and a radix bucket in it, and
/// the arrays store what is left ([`SortKey::Low`]) where the key type allows fewer bytes.
pub trait SortKey: Copy + Ord {
    /// What a run stores per key; ordered as the keys are within one top-16 bucket.
    type Low: Copy + Ord;
    fn top16(self) -> usize;
    fn low(self) -> Self::Low;
    /// The key back from its top 16 bits and stored part.
    fn join(top16: usize, low: Self::Low) -> Self;
}

/// An id fingerprint: 48 bits with bits 32 to 47 zero ([`fingerprint_bits`]), so that a
/// run stores 4 bytes per key and the 16 top bits live in its part and radix bucket.
impl SortKey for u64 {
    type Low = u32;
    fn top16(self) -> usize {
        (self >> 48) as usize
    }
    fn low(self) -> u32 {
        debug_assert_eq!(self, fingerprint_bits(self), "id keys have 48 bits");
        self as u32
    }
    fn join(top16: usize, low: u32) -> u64 {
        ((top16 as u64) << 48) | u64::from(low)
    }
}

/// A complaint key: 128 bits kept whole.
impl SortKey for u128 {
    type Low = u128;
    fn top16(self) -> usize {
        (self >> 112) as usize
    }
    fn low(self) -> u128 {
        self
    }
    fn join(_: usize, low: u128) -> u128 {
        low
    }
}

/// A run is split into parts by the top 8 bits of its keys, and each part has a radix table
/// over the next 8. Why these numbers: a merge rebuilds one part at a time, so what it
/// allocates beyond the live run is one part, 1/256 of the run (0.3 MB of the id run at
/// 10 million events, where a whole-run merge held 158 MB more). The two tables together
/// have 65,536 buckets, as the single radix table over the top 16 bits had, so a lookup
/// still reads one bucket's bounds and binary-searches ~150 keys at 10 million events; the
/// 256 parts' tables (1 KB each, inline in the part) cost what that table cost. More parts
/// would shrink a merge's extra further, but it is already small beside the recent maps,
/// and each part costs its table, `Arc` and hash map even in a small log (4,096 parts: 4 MB
/// of tables per index). Copy-on-write would not gain from more parts either: a head
/// changed while a capture is held copies its part's heads (125 KB at 2 million
/// complaints), and under steady ingest a snapshot write lasts long enough for every part
/// to be touched, whatever their number, so the heads are copied once (32 MB), half what
/// the capture's copy of keys and heads was.
const PART_BITS: u32 = 8;
const BUCKET_BITS: u32 = 8;
pub const PARTS: usize = 1 << PART_BITS;
const BUCKETS: usize = 1 << BUCKET_BITS;

/// Per bucket of a part, the first position whose key is in that bucket or a later one.
type RadixTable = [u32; BUCKETS + 1];

/// The part a key belongs to.
pub fn part_of<K: SortKey>(key: K) -> usize {
    key.top16() >> BUCKET_BITS
}

fn bucket_of<K: SortKey>(key: K) -> usize {
    key.top16() & (BUCKETS - 1)
}

/// One part of a [`SortedRun`]: its keys in ascending order with their values, and for each
/// radix bucket the first position holding it. Cloning it (copy-on-write) copies the
/// values and shares the keys, which only a merge changes: 16 bytes per complaint, not 32.
#[derive(Clone)]
pub struct Part<K: SortKey, V> {
    lows: Arc<[K::Low]>,
    values: Vec<V>,
    /// `radix[b]`: the first position whose key's bucket is `b` or more.
    radix: RadixTable,
}

impl<K: SortKey, V: Copy> Part<K, V> {
    fn empty() -> Self {
        Part {
            lows: Arc::new([]),
            values: Vec::new(),
            radix: [0; BUCKETS + 1],
        }
    }

    pub fn len(&self) -> usize {
        self.lows.len()
    }

    /// Bytes of its arrays (what a merge allocates for it).
    #[cfg(test)]
    pub fn array_bytes(&self) -> usize {
        self.lows.len() * std::mem::size_of::<K::Low>()
            + self.values.capacity() * std::mem::size_of::<V>()
    }

    /// Positions of the entries with this key (which must belong to this part).
    fn positions(&self, key: K) -> std::ops::Range<usize> {
        let bucket = bucket_of(key);
        let (lo, hi) = (self.radix[bucket] as usize, self.radix[bucket + 1] as usize);
        let (slice, low) = (&self.lows[lo..hi], key.low());
        let start = slice.partition_point(|k| *k < low);
        let end = start + slice[start..].partition_point(|k| *k == low);
        lo + start..lo + end
    }

    /// Every entry in key order; `part` is this part's number.
    fn entries(&self, part: usize) -> impl Iterator<Item = (K, V)> + Clone + '_ {
        // Walks the entries, not the buckets: an empty part or bucket costs nothing.
        let mut bucket = 0;
        (0..self.len()).map(move |i| {
            while self.radix[bucket + 1] as usize <= i {
                bucket += 1;
            }
            let top16 = (part << BUCKET_BITS) | bucket;
            (K::join(top16, self.lows[i]), self.values[i])
        })
    }
}

/// A part's radix table, filled as its keys come in order.
struct Radix {
    starts: RadixTable,
    /// Buckets below this one have their start.
    next: usize,
}

impl Radix {
    fn new() -> Self {
        Radix {
            starts: [0; BUCKETS + 1],
            next: 0,
        }
    }

    /// The key at `position` is in `bucket`, at or after the buckets noted so far.
    fn note(&mut self, bucket: usize, position: usize) {
        while self.next <= bucket {
            self.starts[self.next] = position as u32;
            self.next += 1;
        }
    }

    fn finish(mut self, len: usize) -> RadixTable {
        self.note(BUCKETS, len);
        self.starts
    }
}

/// The keys of one part as they come in order, stored in their short form at once.
struct PartKeys<K: SortKey> {
    lows: Vec<K::Low>,
    radix: Radix,
}

impl<K: SortKey> PartKeys<K> {
    fn with_capacity(n: usize) -> Self {
        PartKeys {
            lows: Vec::with_capacity(n),
            radix: Radix::new(),
        }
    }

    /// `key` must belong to this part and come at or after the keys pushed so far.
    fn push(&mut self, key: K) {
        self.radix.note(bucket_of(key), self.lows.len());
        self.lows.push(key.low());
    }
}

/// Keys in ascending order with their values, in [`PARTS`] parts by the keys' top bits,
/// each behind an `Arc`: cloning a run shares its parts, a merge replaces one part at a
/// time and [`SortedRun::value_mut`] copies a part's values only if a clone shares it.
pub struct SortedRun<K: SortKey, V> {
    parts: Vec<Arc<Part<K, V>>>,
    len: usize,
}

impl<K: SortKey, V> Clone for SortedRun<K, V> {
    fn clone(&self) -> Self {
        SortedRun {
            parts: self.parts.clone(),
            len: self.len,
        }
    }
}

impl<K: SortKey, V: Copy> SortedRun<K, V> {
    pub fn empty() -> Self {
        SortedRun {
            parts: (0..PARTS).map(|_| Arc::new(Part::empty())).collect(),
            len: 0,
        }
    }

    /// `keys` must be sorted (equal keys allowed) and as long as `values`.
    pub fn from_sorted(keys: Vec<K>, values: Vec<V>) -> Self {
        assert_eq!(keys.len(), values.len());
        let mut builder = RunBuilder::with_capacity(keys.len());
        keys.into_iter().for_each(|k| builder.push(k));
        values.into_iter().for_each(|v| builder.push_value(v));
        builder.finish().expect("sorted keys, one value each")
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn part(&self, part: usize) -> &Part<K, V> {
        &self.parts[part]
    }

    /// Every value in key order.
    pub fn values(&self) -> impl Iterator<Item = V> + '_ {
        self.parts.iter().flat_map(|p| p.values.iter().copied())
    }

    #[cfg(test)]
    pub fn is_sorted(&self) -> bool {
        let keys = self.entries().map(|(k, _)| k);
        keys.clone().zip(keys.skip(1)).all(|(a, b)| a <= b)
            && self
                .parts
                .iter()
                .enumerate()
                .all(|(i, p)| p.entries(i).all(|(k, _)| part_of(k) == i))
    }

    /// The values of the entries with this key, in the order they were merged.
    pub fn values_of(&self, key: K) -> impl Iterator<Item = V> + '_ {
        let part = &self.parts[part_of(key)];
        part.values[part.positions(key)].iter().copied()
    }

    /// The value of the first entry with this key.
    pub fn first(&self, key: K) -> Option<V> {
        self.values_of(key).next()
    }

    /// The value of the first entry with this key, to change in place: if a capture shares
    /// its part, the part's values are copied first (copy-on-write; its keys stay shared,
    /// and no other part is copied).
    pub fn value_mut(&mut self, key: K) -> Option<&mut V> {
        let part = &mut self.parts[part_of(key)];
        let at = part.positions(key);
        if at.is_empty() {
            return None;
        }
        Some(&mut Arc::make_mut(part).values[at.start])
    }

    /// Every entry in key order.
    pub fn entries(&self) -> impl Iterator<Item = (K, V)> + Clone + '_ {
        self.parts
            .iter()
            .enumerate()
            .flat_map(|(i, part)| part.entries(i))
    }

    /// A new part `part` holding this run's entries there and `more` (sorted by key, all
    /// of that part). Entries with equal keys keep their order: this run's first, then
    /// `more`'s in the order given. The keys go straight into their short form.
    pub fn merged_part(&self, part: usize, more: &[(K, V)]) -> Part<K, V> {
        debug_assert!(more.iter().all(|&(k, _)| part_of(k) == part));
        let old = &self.parts[part];
        let total = old.len() + more.len();
        let mut merged = merge_by_key(old.entries(part), more.iter().copied());
        let (mut values, mut radix) = (Vec::with_capacity(total), Radix::new());
        // Collected from a range (an iterator of known length), the keys are written into
        // their shared array directly, not into a vector that is then copied.
        let lows: Arc<[K::Low]> = (0..total)
            .map(|i| {
                let (key, value) = merged.next().expect("as many entries as counted");
                radix.note(bucket_of(key), i);
                values.push(value);
                key.low()
            })
            .collect();
        Part {
            lows,
            values,
            radix: radix.finish(total),
        }
    }

    /// Puts `new` in place of part `part` and hands back the part it replaced, so that the
    /// caller can free it after releasing a lock.
    pub fn replace_part(&mut self, part: usize, new: Part<K, V>) -> Arc<Part<K, V>> {
        self.len = self.len - self.parts[part].len() + new.len();
        std::mem::replace(&mut self.parts[part], Arc::new(new))
    }

    /// Bytes of the parts' arrays and tables.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.parts
            .iter()
            .map(|p| p.array_bytes() + std::mem::size_of::<Part<K, V>>())
            .sum()
    }
}

/// A [`SortedRun`] built from its keys as they come (in order), then their values (in the
/// same order), straight into its parts: a snapshot's 8-byte id keys are never all held,
/// nor a whole array of values beside the parts' arrays.
pub struct RunBuilder<K: SortKey, V> {
    /// Parts whose keys are all in; once values come, the parts still to fill, the next
    /// one last.
    keyed: Vec<(Arc<[K::Low]>, RadixTable)>,
    current: PartKeys<K>,
    last: Option<K>,
    keys: usize,
    sorted: bool,
    /// The parts with all their values, in order.
    parts: Vec<Arc<Part<K, V>>>,
    /// The values of the next part to fill, and how many values came in all.
    values: Vec<V>,
    values_in: usize,
    keys_done: bool,
}

impl<K: SortKey, V: Copy> RunBuilder<K, V> {
    /// For `n` keys, spread evenly over the parts (fingerprints and BLAKE3 keys are).
    pub fn with_capacity(n: usize) -> Self {
        let mean = n / PARTS;
        // The array a part's keys are gathered in (then copied out, exactly sized): four
        // standard deviations over the mean, so that it rarely has to grow.
        let per_part = mean + 4 * (mean as f64).sqrt() as usize + 16;
        RunBuilder {
            keyed: Vec::with_capacity(PARTS),
            current: PartKeys::with_capacity(per_part.min(n)),
            last: None,
            keys: 0,
            sorted: true,
            parts: Vec::with_capacity(PARTS),
            values: Vec::new(),
            values_in: 0,
            keys_done: false,
        }
    }

    /// The next key; all keys come before the values.
    pub fn push(&mut self, key: K) {
        assert!(!self.keys_done, "keys come before values");
        self.sorted &= self.last.is_none_or(|last| last <= key);
        self.last = Some(key);
        self.keys += 1;
        if !self.sorted {
            return;
        }
        while self.keyed.len() < part_of(key) {
            self.close_part();
        }
        self.current.push(key);
    }

    /// Ends the current part's keys (copied into their shared array, exactly sized) and
    /// starts the next part's in the same gathering array.
    fn close_part(&mut self) {
        let current = &mut self.current;
        let radix = std::mem::replace(&mut current.radix, Radix::new()).finish(current.lows.len());
        let lows: Arc<[K::Low]> = current.lows.as_slice().into();
        current.lows.clear();
        if self.keyed.len() + 1 == PARTS {
            current.lows = Vec::new();
        }
        self.keyed.push((lows, radix));
    }

    fn end_keys(&mut self) {
        if !self.keys_done {
            self.keys_done = true;
            while self.keyed.len() < PARTS {
                self.close_part();
            }
            self.keyed.reverse();
        }
    }

    /// The next value, in the order of the keys.
    pub fn push_value(&mut self, value: V) {
        self.end_keys();
        self.values_in += 1;
        if !self.sorted || self.values_in > self.keys {
            return;
        }
        // The next part with room; parts before it (and empty ones) are complete.
        while self.values.len() == self.keyed.last().map_or(0, |(lows, _)| lows.len()) {
            self.finish_part();
        }
        if self.values.capacity() == 0 {
            let wanted = self.keyed.last().map_or(0, |(lows, _)| lows.len());
            self.values.reserve_exact(wanted);
        }
        self.values.push(value);
    }

    /// Moves the next part's keys, with its values, into `parts`.
    fn finish_part(&mut self) {
        let (lows, radix) = self
            .keyed
            .pop()
            .expect("values beyond the keys are not stored");
        let values = std::mem::take(&mut self.values);
        self.parts.push(Arc::new(Part {
            lows,
            values,
            radix,
        }));
    }

    /// The run, if the keys came sorted and as many as the values.
    pub fn finish(mut self) -> Option<SortedRun<K, V>> {
        self.end_keys();
        if !self.sorted || self.values_in != self.keys {
            return None;
        }
        while !self.keyed.is_empty() {
            self.finish_part();
        }
        Some(SortedRun {
            parts: self.parts,
            len: self.keys,
        })
    }
}

/// Two sequences sorted by key as one; on equal keys `first`'s entries come first.
pub fn merge_by_key<K: Ord + Copy, V>(
    first: impl Iterator<Item = (K, V)>,
    second: impl Iterator<Item = (K, V)>,
) -> impl Iterator<Item = (K, V)> {
    let (mut first, mut second) = (first.peekable(), second.peekable());
    std::iter::from_fn(move || {
        let take_first = match (first.peek(), second.peek()) {
            (Some((a, _)), Some((b, _))) => a <= b,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        if take_first {
            first.next()
        } else {
            second.next()
        }
    })
}

/// When a part's recent entries are merged into it: at a sixteenth of the part. A recent
/// entry costs 16 to 32 bytes in its hash map against 8 in the run, so at a quarter (the
/// first choice) the maps held as much memory as half the run (~70 MB at 13 million
/// events); a sixteenth costs each entry ~16 copies over its life (a part's merge is a
/// linear pass over 1/256 of the run). Below 256 recent entries a part is not merged: a
/// small log keeps up to 65,536 entries in its maps, as before the run had parts.
fn should_merge(recent: usize, part: usize) -> bool {
    recent >= (part / 16).max((1 << 16) / PARTS)
}

/// Entries not merged yet, in one hash map per part (so that a part's merge takes its
/// entries alone, and no map ever doubles more than 1/256 of them at once), and the parts
/// due to be merged.
struct Recent<K, V> {
    maps: Vec<FastMap<K, V>>,
    len: usize,
    /// Parts whose map reached [`should_merge`], in the order they did.
    due: Vec<usize>,
}

impl<K: std::hash::Hash + Eq + Copy, V: Copy> Recent<K, V> {
    fn new() -> Self {
        Recent {
            maps: (0..PARTS).map(|_| FastMap::default()).collect(),
            len: 0,
            due: Vec::new(),
        }
    }

    /// Notes an entry just added to map `part`, whose run part holds `in_run` entries.
    fn added(&mut self, part: usize, in_run: usize) {
        self.len += 1;
        // Exactly once per part between merges: the map grows by one at a time and only
        // a merge of the part changes `in_run` (and empties the map).
        let n = self.maps[part].len();
        if should_merge(n, in_run) && !should_merge(n - 1, in_run) {
            self.due.push(part);
        }
    }

    /// Takes map `part` out (its entries are now in the run).
    fn take(&mut self, part: usize) -> FastMap<K, V> {
        let map = std::mem::take(&mut self.maps[part]);
        self.len -= map.len();
        self.due.retain(|&p| p != part);
        map
    }

    fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.maps
            .iter()
            .flat_map(|m| m.iter().map(|(&k, &v)| (k, v)))
    }
}

/// What installing a merged part replaced: freed by the caller, after any lock.
pub struct Replaced<K: SortKey, V> {
    _part: Arc<Part<K, V>>,
    _recent: FastMap<K, V>,
}

/// Event id fingerprint → sequence numbers.
pub struct IdIndex {
    /// Parts shared with snapshot captures; a merge replaces a part rather than changing it.
    run: SortedRun<u64, u32>,
    recent: Recent<u64, u32>,
    /// Recent entries whose fingerprint was already in `recent` (rare).
    recent_shared: Vec<(u64, u32)>,
}

impl Default for IdIndex {
    fn default() -> Self {
        Self::from_run(SortedRun::empty())
    }
}

impl IdIndex {
    pub fn from_run(run: SortedRun<u64, u32>) -> Self {
        IdIndex {
            run,
            recent: Recent::new(),
            recent_shared: Vec::new(),
        }
    }

    /// Every sequence number whose id has this fingerprint, at most a few.
    pub fn candidates(&self, key: u64) -> impl Iterator<Item = u64> + '_ {
        let recent = self.recent.maps[part_of(key)].get(&key);
        self.run
            .values_of(key)
            .chain(recent.copied())
            .chain(
                self.recent_shared
                    .iter()
                    .filter(move |(k, _)| *k == key)
                    .map(|&(_, s)| s),
            )
            .map(u64::from)
    }

    pub fn insert(&mut self, key: u64, seq: u32) {
        let part = part_of(key);
        match self.recent.maps[part].entry(key) {
            std::collections::hash_map::Entry::Occupied(already) => {
                if *already.get() != seq {
                    self.recent_shared.push((key, seq));
                }
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(seq);
                self.recent.added(part, self.run.part(part).len());
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.run.len() + self.recent.len + self.recent_shared.len()
    }

    /// The parts due to be merged, for [`Self::merged_part`] and [`Self::install_part`].
    pub fn due_parts(&self) -> Vec<usize> {
        self.recent.due.clone()
    }

    /// Part `part` with its recent entries merged in, built without changing `self`, so
    /// that the writer can build it under a read lock and install it under a short write
    /// lock. Equal fingerprints keep sequence order: the run's are older than the recent.
    pub fn merged_part(&self, part: usize) -> Part<u64, u32> {
        let mut more: Vec<(u64, u32)> = self.recent.maps[part]
            .iter()
            .map(|(&k, &s)| (k, s))
            .chain(
                self.recent_shared
                    .iter()
                    .filter(|(k, _)| part_of(*k) == part)
                    .copied(),
            )
            .collect();
        more.sort_unstable();
        self.run.merged_part(part, &more)
    }

    /// Installs a part built by [`Self::merged_part`] and drops the recent entries it
    /// took in, at once: no lookup finds an entry twice or misses it. The caller must not
    /// insert in between (the log's single writer builds and installs).
    pub fn install_part(&mut self, part: usize, new: Part<u64, u32>) -> Replaced<u64, u32> {
        let old = self.run.replace_part(part, new);
        self.recent_shared.retain(|(k, _)| part_of(*k) != part);
        Replaced {
            _part: old,
            _recent: self.recent.take(part),
        }
    }

    /// Merges the parts that are due, one at a time, in place (a scan that owns the index;
    /// the live log builds under a read lock instead, see `Inner::merge_indexes`).
    pub fn merge_if_due(&mut self) {
        for part in self.due_parts() {
            let new = self.merged_part(part);
            self.install_part(part, new);
        }
    }

    /// Merges every part that has recent entries, due or not.
    #[cfg(test)]
    pub fn merge_all(&mut self) {
        for part in 0..PARTS {
            if !self.recent.maps[part].is_empty() {
                let new = self.merged_part(part);
                self.install_part(part, new);
            }
        }
    }

    /// The recent entries by fingerprint, then sequence: so that a snapshot is
    /// byte-for-byte the same whatever the hash maps' iteration order was.
    pub fn recent_sorted(&self) -> Vec<(u64, u32)> {
        let mut recent = Vec::with_capacity(self.recent.len + self.recent_shared.len());
        recent.extend(self.recent.iter());
        recent.extend_from_slice(&self.recent_shared);
        recent.sort_unstable();
        recent
    }

    pub fn run(&self) -> &SortedRun<u64, u32> {
        &self.run
    }
}

/// Back-pointers per event: sealed chunks of [`BackPointers::CHUNK`] entries and an open
/// tail. A sealed chunk is in memory, shared with snapshot captures (a capture clones the
/// chunks' `Arc`s instead of copying 4 bytes per event), or, once a [`SpillFile`] is
/// attached, written to that file and dropped from memory: back-pointers are the one index
/// that grows with every event and is read only to list one complaint's events (a few
/// 4-byte reads from the page cache), so the log keeps them out of its resident memory
/// (46 MB at 11 million events).
#[derive(Debug, Clone, Default)]
pub struct BackPointers {
    /// `None`: the chunk is in the spill file, at its index times the chunk's bytes.
    sealed: Vec<Option<Arc<Vec<u32>>>>,
    tail: Vec<u32>,
    spill: Option<Arc<SpillFile>>,
}

/// A scratch file holding sealed back-pointer chunks. It is derived state, written again
/// from the snapshot or the rescan at every open (never trusted across runs, so it needs
/// no fsync), and unlinked as soon as it is created: it lives as long as the last holder
/// (the log or a capture) keeps it open, and a crash leaves nothing behind.
#[derive(Debug)]
pub struct SpillFile {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl SpillFile {
    /// Creates the file at `path` and unlinks it at once.
    pub fn create(path: std::path::PathBuf) -> std::io::Result<SpillFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(SpillFile { file, path })
    }
}

impl BackPointers {
    /// Entries per sealed chunk.
    const CHUNK: usize = 1 << 20;
    const CHUNK_BYTES: u64 = (Self::CHUNK * 4) as u64;

    pub fn len(&self) -> usize {
        self.sealed.len() * Self::CHUNK + self.tail.len()
    }

    /// Sealed chunks held in memory (the rest are in the spill file).
    #[cfg(test)]
    pub fn chunks_in_memory(&self) -> usize {
        self.sealed.iter().flatten().count()
    }

    pub fn get(&self, i: usize) -> std::io::Result<u32> {
        use std::os::unix::fs::FileExt;
        match self.sealed.get(i / Self::CHUNK) {
            Some(Some(chunk)) => Ok(chunk[i % Self::CHUNK]),
            Some(None) => {
                let spill = self.spill.as_ref().expect("spilled chunks have a file");
                let mut bytes = [0u8; 4];
                spill.file.read_exact_at(&mut bytes, i as u64 * 4)?;
                Ok(u32::from_le_bytes(bytes))
            }
            None => Ok(self.tail[i - self.sealed.len() * Self::CHUNK]),
        }
    }

    pub fn push(&mut self, pointer: u32) {
        self.tail.push(pointer);
        if self.tail.len() == Self::CHUNK {
            let full = std::mem::replace(&mut self.tail, Vec::with_capacity(Self::CHUNK));
            self.sealed.push(Some(Arc::new(full)));
            self.spill_sealed();
        }
    }

    /// From now on sealed chunks go to `spill`; those sealed so far go there at once.
    pub fn attach_spill(&mut self, spill: SpillFile) {
        self.spill = Some(Arc::new(spill));
        self.spill_sealed();
    }

    /// Writes the sealed chunks still in memory to the spill file, if there is one. A
    /// chunk that cannot be written stays in memory (the log goes on; only memory is lost).
    fn spill_sealed(&mut self) {
        use std::os::unix::fs::FileExt;
        let Some(spill) = &self.spill else { return };
        for (i, slot) in self.sealed.iter_mut().enumerate() {
            let Some(chunk) = slot else { continue };
            let bytes: Vec<u8> = chunk.iter().flat_map(|p| p.to_le_bytes()).collect();
            match spill
                .file
                .write_all_at(&bytes, i as u64 * Self::CHUNK_BYTES)
            {
                Ok(()) => *slot = None,
                Err(error) => {
                    tracing::warn!(%error, path = %spill.path.display(), "could not write back-pointers to their spill file; they stay in memory");
                    return;
                }
            }
        }
    }

    /// Every entry in order, a chunk at a time (spilled chunks are read back one by one).
    pub fn for_each_chunk(
        &self,
        mut f: impl FnMut(&[u32]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut bytes = Vec::new();
        let mut read = Vec::new();
        for (i, slot) in self.sealed.iter().enumerate() {
            match slot {
                Some(chunk) => f(chunk)?,
                None => {
                    let spill = self.spill.as_ref().expect("spilled chunks have a file");
                    bytes.resize(Self::CHUNK_BYTES as usize, 0);
                    spill
                        .file
                        .read_exact_at(&mut bytes, i as u64 * Self::CHUNK_BYTES)?;
                    read.clear();
                    read.extend(
                        bytes
                            .chunks_exact(4)
                            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes"))),
                    );
                    f(&read)?;
                }
            }
        }
        f(&self.tail)
    }
}

/// What the log knows about one complaint's stream: the last event, how many there are,
/// its region and lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHead {
    pub last_seq: u32,
    pub version: u32,
    pub region: u32,
    pub status: StreamStatus,
}

/// Complaint key → stream head, the back-pointers that chain each complaint's events, the
/// interned regions and the number of complaints in each status.
pub struct StreamIndex {
    /// Heads change in place; a part a snapshot capture shares is copied first.
    run: SortedRun<u128, StreamHead>,
    recent: Recent<u128, StreamHead>,
    /// `previous[seq - 1]`: the sequence number of the complaint's event before `seq`, 0
    /// for its first.
    previous: BackPointers,
    regions: Vec<Box<str>>,
    region_ids: HashMap<Box<str>, u32>,
    status_counts: [u64; 5],
}

impl Default for StreamIndex {
    fn default() -> Self {
        Self::from_parts(SortedRun::empty(), BackPointers::default(), Vec::new())
    }
}

impl StreamIndex {
    pub fn from_parts(
        run: SortedRun<u128, StreamHead>,
        previous: BackPointers,
        regions: Vec<Box<str>>,
    ) -> Self {
        let region_ids = regions
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), i as u32))
            .collect();
        let mut status_counts = [0; 5];
        for head in run.values() {
            status_counts[head.status as usize] += 1;
        }
        StreamIndex {
            run,
            recent: Recent::new(),
            previous,
            regions,
            region_ids,
            status_counts,
        }
    }

    pub fn get(&self, key: u128) -> Option<StreamHead> {
        if let Some(head) = self.recent.maps[part_of(key)].get(&key) {
            return Some(*head);
        }
        self.run.first(key)
    }

    /// The sequence numbers of the stream ending at `head`, oldest first (an error only
    /// if the back-pointers' spill file cannot be read).
    pub fn seqs(&self, head: StreamHead) -> std::io::Result<Vec<u64>> {
        let mut seqs = Vec::with_capacity(head.version as usize);
        let mut seq = head.last_seq;
        while seq != 0 {
            seqs.push(seq as u64);
            seq = self.previous.get(seq as usize - 1)?;
        }
        seqs.reverse();
        Ok(seqs)
    }

    /// Sends sealed back-pointer chunks to `spill` (see [`BackPointers`]).
    pub fn spill_back_pointers(&mut self, spill: SpillFile) {
        self.previous.attach_spill(spill);
    }

    pub fn region_name(&self, id: u32) -> &str {
        &self.regions[id as usize]
    }

    fn intern(&mut self, region: &str) -> u32 {
        if let Some(&id) = self.region_ids.get(region) {
            return id;
        }
        let id = self.regions.len() as u32;
        self.regions.push(region.into());
        self.region_ids.insert(region.into(), id);
        id
    }

    /// Records the entry at `seq`, which must be the next sequence number. Index records
    /// come from the log itself, so the lifecycle is followed, not checked, here.
    pub fn record(&mut self, key: u128, region: &str, event_type: EventType, seq: u32) {
        assert_eq!(
            seq as usize,
            self.previous.len() + 1,
            "entries are recorded in sequence order"
        );
        let current = self.get(key);
        let head = match current {
            Some(head) => StreamHead {
                last_seq: seq,
                version: head.version + 1,
                status: lifecycle::next(head.status, event_type),
                region: head.region,
            },
            None => StreamHead {
                last_seq: seq,
                version: 1,
                region: self.intern(region),
                status: StreamStatus::Open,
            },
        };
        self.previous.push(current.map_or(0, |h| h.last_seq));
        if let Some(old) = current {
            self.status_counts[old.status as usize] -= 1;
        }
        self.status_counts[head.status as usize] += 1;
        if let Some(in_run) = self.run.value_mut(key) {
            *in_run = head;
            return;
        }
        let part = part_of(key);
        if self.recent.maps[part].insert(key, head).is_none() {
            self.recent.added(part, self.run.part(part).len());
        }
    }

    pub fn len(&self) -> usize {
        self.run.len() + self.recent.len
    }

    pub fn count(&self, status: StreamStatus) -> u64 {
        self.status_counts[status as usize]
    }

    /// See [`IdIndex::due_parts`].
    pub fn due_parts(&self) -> Vec<usize> {
        self.recent.due.clone()
    }

    /// See [`IdIndex::merged_part`]; keys are unique, so the maps' order does not matter.
    pub fn merged_part(&self, part: usize) -> Part<u128, StreamHead> {
        let mut more: Vec<(u128, StreamHead)> = self.recent.maps[part]
            .iter()
            .map(|(&k, &h)| (k, h))
            .collect();
        more.sort_unstable_by_key(|(k, _)| *k);
        self.run.merged_part(part, &more)
    }

    /// See [`IdIndex::install_part`]: heads recorded between building and installing
    /// would be lost, so the caller must not record in between.
    pub fn install_part(
        &mut self,
        part: usize,
        new: Part<u128, StreamHead>,
    ) -> Replaced<u128, StreamHead> {
        let old = self.run.replace_part(part, new);
        Replaced {
            _part: old,
            _recent: self.recent.take(part),
        }
    }

    /// Merges the parts that are due, in place (see [`IdIndex::merge_if_due`]).
    pub fn merge_if_due(&mut self) {
        for part in self.due_parts() {
            let new = self.merged_part(part);
            self.install_part(part, new);
        }
    }

    /// Merges every part that has recent entries, due or not.
    #[cfg(test)]
    pub fn merge_all(&mut self) {
        for part in 0..PARTS {
            if !self.recent.maps[part].is_empty() {
                let new = self.merged_part(part);
                self.install_part(part, new);
            }
        }
    }

    /// Keys are unique, so the hash maps' order does not matter once sorted.
    pub fn recent_sorted(&self) -> Vec<(u128, StreamHead)> {
        let mut recent = Vec::with_capacity(self.recent.len);
        recent.extend(self.recent.iter());
        recent.sort_unstable_by_key(|(k, _)| *k);
        recent
    }

    pub fn run(&self) -> &SortedRun<u128, StreamHead> {
        &self.run
    }

    pub fn previous(&self) -> &BackPointers {
        &self.previous
    }

    pub fn regions(&self) -> &[Box<str>] {
        &self.regions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Counts the heap bytes each thread allocates (and the most it has held since
    /// [`alloc_count::reset_peak`]), so that a test can see what a merge holds without
    /// the other tests running beside it.
    // The counting allocator is the one use of `unsafe` here: it forwards to `System`.
    #[allow(unsafe_code)]
    mod alloc_count {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            // `const` and no destructor: usable from the allocator at any point of a
            // thread's life, never allocating itself.
            static LIVE: Cell<isize> = const { Cell::new(0) };
            static PEAK: Cell<isize> = const { Cell::new(0) };
        }

        fn note(delta: isize) {
            let _ = LIVE.try_with(|live| {
                let now = live.get() + delta;
                live.set(now);
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
            });
        }

        /// Bytes this thread has allocated and not freed.
        pub fn live() -> isize {
            LIVE.with(Cell::get)
        }

        /// Starts a new peak from now; returns the bytes live now.
        pub fn reset_peak() -> isize {
            let now = live();
            PEAK.with(|p| p.set(now));
            now
        }

        pub fn peak() -> isize {
            PEAK.with(Cell::get)
        }

        struct Counting;

        // SAFETY: every call is forwarded to `System` with the same arguments; the
        // counters are only arithmetic on the sizes.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let ptr = System.alloc(layout);
                if !ptr.is_null() {
                    note(layout.size() as isize);
                }
                ptr
            }

            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                let ptr = System.alloc_zeroed(layout);
                if !ptr.is_null() {
                    note(layout.size() as isize);
                }
                ptr
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                System.dealloc(ptr, layout);
                note(-(layout.size() as isize));
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                let new = System.realloc(ptr, layout, new_size);
                if !new.is_null() {
                    // Both blocks may be held for a moment: counted as such.
                    note(new_size as isize);
                    note(-(layout.size() as isize));
                }
                new
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;
    }

    /// A 48-bit fingerprint for `i`, spread over the parts and buckets.
    fn spread(i: u64) -> u64 {
        fingerprint_bits(id_hash(&Uuid::from_u128(u128::from(i) * 0x9E37_79B9)))
    }

    #[test]
    fn fingerprints_spread_over_the_radix_buckets() {
        // Sequential UUIDs (v7-like: only low bits differ) must not pile into one bucket.
        let mut buckets = std::collections::HashSet::new();
        for i in 0..10_000u128 {
            buckets.insert(id_key(&Uuid::from_u128(i)).top16());
        }
        assert!(buckets.len() > 8_000, "{} buckets", buckets.len());
    }

    #[test]
    fn back_pointers_read_alike_across_sealed_chunks_and_a_capture_keeps_its_copy() {
        let dir = tempfile::tempdir().unwrap();
        for spilled in [false, true] {
            let n = BackPointers::CHUNK * 2 + 5;
            let mut pointers = BackPointers::default();
            for i in 0..BackPointers::CHUNK + 3 {
                pointers.push(i as u32 ^ 0x5a5a);
            }
            let spill_path = dir.path().join("back-pointers");
            if spilled {
                pointers.attach_spill(SpillFile::create(spill_path.clone()).unwrap());
            }
            // Captured with one chunk spilled (or not): chunks spilled later stay readable.
            let early = pointers.clone();
            for i in BackPointers::CHUNK + 3..n {
                pointers.push(i as u32 ^ 0x5a5a);
            }
            let captured = pointers.clone();
            pointers.push(7);
            assert_eq!(captured.len(), n);
            assert_eq!(pointers.len(), n + 1);
            assert_eq!(pointers.chunks_in_memory(), if spilled { 0 } else { 2 });
            for i in [
                0,
                BackPointers::CHUNK - 1,
                BackPointers::CHUNK,
                2 * BackPointers::CHUNK,
                n - 1,
            ] {
                assert_eq!(pointers.get(i).unwrap(), i as u32 ^ 0x5a5a);
                assert_eq!(captured.get(i).unwrap(), i as u32 ^ 0x5a5a);
            }
            assert_eq!(
                early.get(BackPointers::CHUNK + 2).unwrap(),
                (BackPointers::CHUNK as u32 + 2) ^ 0x5a5a
            );
            assert_eq!(pointers.get(n).unwrap(), 7);
            let all = collect(&captured);
            assert_eq!(all.len(), n);
            assert!(all.iter().enumerate().all(|(i, &p)| p == i as u32 ^ 0x5a5a));
            let mut rebuilt = BackPointers::default();
            all.iter().for_each(|&p| rebuilt.push(p));
            assert_eq!(collect(&rebuilt), all);
            assert_eq!(collect(&early), all[..BackPointers::CHUNK + 3]);
            assert!(!spill_path.exists(), "the spill file is unlinked once open");
        }
    }

    fn collect(pointers: &BackPointers) -> Vec<u32> {
        let mut all = Vec::new();
        pointers
            .for_each_chunk(|chunk| {
                all.extend_from_slice(chunk);
                Ok(())
            })
            .unwrap();
        all
    }

    #[test]
    fn a_run_built_key_by_key_equals_one_merged_part_by_part_and_refuses_disorder() {
        let mut keys: Vec<u64> = (0..20_000u64).map(spread).collect();
        // Shared fingerprints, and parts with no key at all.
        keys.extend_from_within(..50);
        keys.retain(|&k| part_of(k) % 7 != 3);
        keys.sort_unstable();
        let values: Vec<u32> = (1..=keys.len() as u32).collect();
        let mut builder = RunBuilder::with_capacity(keys.len());
        keys.iter().for_each(|&k| builder.push(k));
        values.iter().for_each(|&v| builder.push_value(v));
        let built = builder.finish().unwrap();
        assert_eq!(built.len(), keys.len());
        assert!(built.is_sorted());
        assert!(built
            .entries()
            .eq(keys.iter().copied().zip(values.iter().copied())));
        // No slack left in the arrays: they are what the index holds from then on.
        for part in 0..PARTS {
            let p = built.part(part);
            assert_eq!(p.array_bytes(), p.len() * 8, "part {part}");
        }
        let mut index = IdIndex::default();
        for (&k, &v) in keys.iter().zip(&values) {
            index.insert(k, v);
        }
        index.merge_all();
        assert!(index.run().entries().eq(built.entries()));
        for &key in keys.iter().step_by(97) {
            assert!(built.values_of(key).eq(index.run().values_of(key)));
        }
        assert_eq!(built.values_of(keys[0]).count(), 2);

        let (a, b) = (keys[0], keys[keys.len() - 1]);
        let mut builder = RunBuilder::with_capacity(2);
        builder.push(b);
        builder.push(a);
        builder.push_value(1u32);
        builder.push_value(2);
        assert!(builder.finish().is_none());
        for values in [&[1u32][..], &[1, 2, 3]] {
            let mut builder = RunBuilder::with_capacity(2);
            builder.push(a);
            builder.push(b);
            values.iter().for_each(|&v| builder.push_value(v));
            assert!(builder.finish().is_none(), "as many values as keys");
        }
        let empty = RunBuilder::<u64, u32>::with_capacity(0).finish().unwrap();
        assert_eq!((empty.len(), empty.entries().count()), (0, 0));
    }

    #[test]
    fn streams_chain_their_events_and_count_statuses() {
        let mut streams = StreamIndex::default();
        let (a, b) = (complaint_key("C-a"), complaint_key("C-b"));
        streams.record(a, "eu", EventType::Filed, 1);
        streams.record(b, "us", EventType::Filed, 2);
        streams.record(a, "ignored", EventType::Resolved, 3);
        let head = streams.get(a).unwrap();
        assert_eq!(head.version, 2);
        assert_eq!(head.status, StreamStatus::Resolved);
        assert_eq!(streams.region_name(head.region), "eu");
        assert_eq!(streams.seqs(head).unwrap(), vec![1, 3]);
        assert_eq!(streams.count(StreamStatus::Open), 1);
        assert_eq!(streams.count(StreamStatus::Resolved), 1);
        streams.merge_all();
        assert_eq!(streams.run().len(), 2);
        streams.record(b, "us", EventType::Withdrawn, 4);
        assert_eq!(streams.seqs(streams.get(b).unwrap()).unwrap(), vec![2, 4]);
        assert_eq!(streams.count(StreamStatus::Open), 0);
        assert!(streams.get(complaint_key("C-c")).is_none());
    }

    #[test]
    fn parts_are_merged_as_they_fill_and_every_entry_stays_found() {
        let n = 300_000u64;
        let mut ids = IdIndex::default();
        let mut streams = StreamIndex::default();
        for i in 0..n {
            let seq = i as u32 + 1;
            ids.insert(spread(i), seq);
            ids.merge_if_due();
            let complaint = complaint_key(&format!("C-{}", i / 3));
            let event_type = if i.is_multiple_of(3) {
                EventType::Filed
            } else {
                EventType::Acknowledged
            };
            streams.record(complaint, "eu", event_type, seq);
            streams.merge_if_due();
        }
        // Each part merges on its own once it has a sixteenth of its entries recent.
        assert!(ids.due_parts().is_empty() && streams.due_parts().is_empty());
        assert!(ids.run().len() > n as usize * 3 / 4, "{}", ids.run().len());
        for part in 0..PARTS {
            let in_run = ids.run().part(part).len();
            assert!(!should_merge(ids.recent.maps[part].len(), in_run));
        }
        assert_eq!(ids.len(), n as usize);
        assert_eq!(streams.len(), n as usize / 3);
        for i in (0..n).step_by(7) {
            assert!(ids.candidates(spread(i)).any(|s| s == i + 1));
        }
        for c in (0..n / 3).step_by(5) {
            let head = streams.get(complaint_key(&format!("C-{c}"))).unwrap();
            assert_eq!((head.version, head.last_seq as u64), (3, c * 3 + 3));
        }
    }

    /// What a merge allocates beyond the live index while it runs: one part's new arrays
    /// (and that part's recent entries, sorted), never a second part's nor a whole run's.
    /// Measured by the test allocator, so a merge that built two parts before installing
    /// them, or kept the old ones, fails here.
    #[test]
    fn a_merge_holds_at_most_one_new_part_beyond_the_live_index() {
        let n = 1u64 << 19;
        let mut ids = IdIndex::default();
        (0..n).for_each(|i| ids.insert(spread(i), i as u32 + 1));
        ids.merge_all();
        // 256 (the least merged) and a bit more in every part: nearly all parts are due.
        for i in n..n + n / 8 + n / 32 {
            ids.insert(spread(i), i as u32 + 1);
        }
        let due = ids.due_parts();
        assert!(due.len() > PARTS * 9 / 10, "{} parts due", due.len());
        let entry = std::mem::size_of::<(u64, u32)>();
        let largest = |recent: &Recent<u64, u32>, run: &SortedRun<u64, u32>| {
            let new = |p: usize| (run.part(p).len() + recent.maps[p].len()) * 8;
            let sorted = |p: usize| recent.maps[p].len() * entry;
            let most = due.iter().map(|&p| new(p) + sorted(p)).max().unwrap();
            // The part's `Arc` and header, and the list of due parts.
            most + std::mem::size_of::<Part<u64, u32>>() + 64 + PARTS * 8
        };
        let bound = largest(&ids.recent, ids.run()) as isize;
        let run_bytes = ids.run().bytes() as isize;
        let before = alloc_count::reset_peak();
        ids.merge_if_due();
        let extra = alloc_count::peak() - before;
        assert!(ids.due_parts().is_empty());
        assert!(
            extra <= bound,
            "a merge held {extra} bytes more, one part is {bound}"
        );
        assert!(extra * 100 < run_bytes, "{extra} of a {run_bytes}-byte run");
        // And the recent maps it emptied were freed: the index is smaller than before.
        assert!(alloc_count::live() < before);

        // The same for the stream heads (16 + 16 bytes per complaint); keys as BLAKE3's,
        // spread over every bit, without hashing a million strings.
        let complaints = 1u64 << 18;
        let mut streams = StreamIndex::default();
        let key = |c: u64| u128::from(spread(c)) << 64 | u128::from(c);
        for c in 0..complaints {
            streams.record(key(c), "eu", EventType::Filed, c as u32 + 1);
        }
        streams.merge_all();
        for c in complaints..complaints + complaints / 4 + complaints / 16 {
            streams.record(key(c), "eu", EventType::Filed, c as u32 + 1);
        }
        let due = streams.due_parts();
        assert!(due.len() > PARTS * 9 / 10, "{} parts due", due.len());
        let head = std::mem::size_of::<(u128, StreamHead)>();
        let most = due
            .iter()
            .map(|&p| {
                let recent = streams.recent.maps[p].len();
                (streams.run().part(p).len() + recent) * 32 + recent * head
            })
            .max()
            .unwrap();
        let bound =
            (most + std::mem::size_of::<Part<u128, StreamHead>>() + 64 + PARTS * 8) as isize;
        let run_bytes = streams.run().bytes() as isize;
        let before = alloc_count::reset_peak();
        streams.merge_if_due();
        let extra = alloc_count::peak() - before;
        assert!(
            extra <= bound,
            "a merge held {extra} bytes more, one part is {bound}"
        );
        assert!(extra * 100 < run_bytes, "{extra} of a {run_bytes}-byte run");
    }

    /// One step of the model test: an id, a complaint, and sometimes a merge.
    #[derive(Debug, Clone)]
    enum Merge {
        None,
        /// Whatever is due, as the log does after each batch.
        Due,
        /// Every part, due or not.
        All,
        /// A few parts, due or not: so that merged and unmerged parts mix.
        Some(Vec<usize>),
    }

    fn merge_strategy() -> impl Strategy<Value = Merge> {
        prop_oneof![
            8 => Just(Merge::None),
            2 => Just(Merge::Due),
            1 => Just(Merge::All),
            2 => proptest::collection::vec(0..PARTS, 1..8).prop_map(Merge::Some),
        ]
    }

    /// A small key space with collisions: ids 0..40 spread over the parts, 40..64 all in
    /// part 5 (a few buckets); complaints likewise few, so heads change often.
    fn id_of(k: u64) -> u64 {
        if k < 40 {
            spread(k)
        } else {
            fingerprint_bits((5u64 << 56) | ((k % 3) << 48) | (k * 0x9E37_79B9))
        }
    }

    proptest! {
        /// Whatever the interleaving of inserts and part merges, every id finds exactly
        /// its sequence numbers (fingerprints forced to collide often by a small key
        /// space), and every complaint its head, as naive maps say; the run stays sorted
        /// and the snapshot order (run, then recent) gives every entry once.
        #[test]
        fn a_partitioned_index_answers_as_naive_maps_across_merges(
            steps in proptest::collection::vec(
                (0u64..64, 0u8..12, 0usize..4, merge_strategy()),
                1..400,
            ),
        ) {
            let mut ids = IdIndex::default();
            let mut streams = StreamIndex::default();
            let mut id_model: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            let mut head_model: HashMap<u128, (StreamHead, &str)> = HashMap::new();
            let regions = ["eu", "us", "apac", "latam"];
            let types = [
                EventType::Acknowledged,
                EventType::Resolved,
                EventType::Reopened,
                EventType::Closed,
                EventType::Withdrawn,
            ];
            for (i, (k, complaint, region, merge)) in steps.iter().enumerate() {
                let seq = i as u32 + 1;
                let key = id_of(*k);
                ids.insert(key, seq);
                id_model.entry(key).or_default().push(u64::from(seq));

                let ckey = complaint_key(&format!("C-{complaint}"));
                let event_type = match head_model.get(&ckey) {
                    None => EventType::Filed,
                    Some(_) => types[(*k as usize + i) % types.len()],
                };
                streams.record(ckey, regions[*region], event_type, seq);
                let head = match head_model.get(&ckey) {
                    None => (
                        StreamHead {
                            last_seq: seq,
                            version: 1,
                            region: 0,
                            status: StreamStatus::Open,
                        },
                        regions[*region],
                    ),
                    Some((h, region)) => (
                        StreamHead {
                            last_seq: seq,
                            version: h.version + 1,
                            region: 0,
                            status: lifecycle::next(h.status, event_type),
                        },
                        *region,
                    ),
                };
                head_model.insert(ckey, head);

                match merge {
                    Merge::None => {}
                    Merge::Due => {
                        ids.merge_if_due();
                        streams.merge_if_due();
                    }
                    Merge::All => {
                        ids.merge_all();
                        streams.merge_all();
                        prop_assert_eq!(ids.run().len(), ids.len());
                    }
                    Merge::Some(parts) => {
                        for &p in parts {
                            let new = ids.merged_part(p);
                            ids.install_part(p, new);
                            let new = streams.merged_part(p);
                            streams.install_part(p, new);
                        }
                    }
                }
            }
            prop_assert!(ids.run().is_sorted());
            prop_assert!(streams.run().is_sorted());
            for (key, seqs) in &id_model {
                let mut found: Vec<u64> = ids.candidates(*key).collect();
                found.sort_unstable();
                prop_assert_eq!(&found, seqs);
            }
            for k in 64..80 {
                prop_assert_eq!(ids.candidates(id_of(k)).count(), 0);
            }
            prop_assert_eq!(ids.len(), steps.len());
            // Run, then recent, in key order: the model's entries, each once.
            let written: Vec<(u64, u64)> =
                merge_by_key(ids.run().entries(), ids.recent_sorted().into_iter())
                    .map(|(k, s)| (k, u64::from(s)))
                    .collect();
            let expected: Vec<(u64, u64)> = id_model
                .iter()
                .flat_map(|(&k, seqs)| seqs.iter().map(move |&s| (k, s)))
                .collect();
            prop_assert_eq!(written, expected);

            prop_assert_eq!(streams.len(), head_model.len());
            for (key, (expected, region)) in &head_model {
                let head = streams.get(*key).unwrap();
                prop_assert_eq!(
                    (head.last_seq, head.version, head.status),
                    (expected.last_seq, expected.version, expected.status)
                );
                prop_assert_eq!(streams.region_name(head.region), *region);
                prop_assert_eq!(streams.seqs(head).unwrap().len(), head.version as usize);
            }
            for status in [StreamStatus::Open, StreamStatus::Resolved, StreamStatus::Closed] {
                let n = head_model.values().filter(|(h, _)| h.status == status).count();
                prop_assert_eq!(streams.count(status), n as u64);
            }
            let keys: Vec<u128> = merge_by_key(
                streams.run().entries(),
                streams.recent_sorted().into_iter(),
            )
            .map(|(k, _)| k)
            .collect();
            let mut expected: Vec<u128> = head_model.keys().copied().collect();
            expected.sort_unstable();
            prop_assert_eq!(keys, expected);
        }
    }
}
