//! Compact in-memory indexes: event id → sequence, complaint → stream head.
//!
//! Why in memory: a sled tree keyed by random UUIDs costs one random B-tree insert per
//! event and cut durable ingest from ~100k/s to ~26k/s on the reference machine (see
//! ARCHITECTURE.md, "Storage"). The index records themselves are durable (they are written
//! in the same atomic batch as the events), so these structures are a cache that is always
//! complete; [`crate::snapshot`] saves them so that opening a big log does not rescan it.
//!
//! Why this shape: at 10 million events a `HashMap<Uuid, u64>` plus a map of complaint id
//! strings to `Vec<u64>` took ~80 bytes per event. Here an event costs 12 bytes (a 48-bit
//! id fingerprint, of which the sorted array stores the 32 bits under the radix table's 16,
//! a 32-bit sequence, and a 32-bit back-pointer to the previous event of its complaint)
//! and a complaint 32 bytes (a 128-bit key and its head).
//! New entries go to small hash maps and are merged into the sorted arrays when those grow
//! past a sixteenth of the arrays, so the merge cost is amortised and lookups stay two cache
//! misses deep (a radix table on the top 16 bits, then a short binary search).
//!
//! Fingerprints: ids are looked up by 48 bits, so two ids may share a fingerprint (about
//! one pair in a log of 10 million events, and a new id meets a false candidate once in
//! ~28 million appends at that size); the index returns every candidate and the caller
//! checks the stored id, which costs one read of a stored event. 64 bits would cost a
//! third more memory per event (40 MB more at 10 million events) to save that read. Complaint keys are 128 bits of BLAKE3: a collision is as
//! likely as guessing a random 128-bit key, so the head is trusted as is.

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
        self.0 = v;
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

/// Keys of the sorted arrays: the radix table indexes their top 16 bits, and the arrays
/// store what is left ([`SortKey::Low`]) where the key type allows fewer bytes.
pub trait SortKey: Copy + Ord {
    /// What a run stores per key; ordered as the keys are within one top-16 bucket.
    type Low: Copy + Ord;
    fn top16(self) -> usize;
    fn low(self) -> Self::Low;
    /// The key back from its bucket and stored part.
    fn join(top16: usize, low: Self::Low) -> Self;
}

/// An id fingerprint: 48 bits with bits 32 to 47 zero ([`fingerprint_bits`]), so that a
/// run stores 4 bytes per key and the 16 top bits live in the radix table.
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

/// Keys in ascending order with their values, and for each value of the top 16 bits the
/// first position holding it.
pub struct SortedRun<K: SortKey, V> {
    lows: Vec<K::Low>,
    values: Vec<V>,
    radix: Vec<u32>,
}

impl<K: SortKey, V: Copy> SortedRun<K, V> {
    pub fn empty() -> Self {
        Self::from_sorted(Vec::new(), Vec::new())
    }

    /// `keys` must be sorted (equal keys allowed) and as long as `values`.
    pub fn from_sorted(keys: Vec<K>, values: Vec<V>) -> Self {
        assert_eq!(keys.len(), values.len());
        assert!(
            keys.len() <= u32::MAX as usize,
            "index arrays hold 32-bit positions"
        );
        let mut radix = vec![0u32; (1 << 16) + 1];
        let mut at = 0usize;
        for (bucket, start) in radix.iter_mut().enumerate() {
            while at < keys.len() && keys[at].top16() < bucket {
                at += 1;
            }
            *start = at as u32;
        }
        let lows = keys.iter().map(|k| k.low()).collect();
        SortedRun {
            lows,
            values,
            radix,
        }
    }

    pub fn len(&self) -> usize {
        self.lows.len()
    }

    pub fn values(&self) -> &[V] {
        &self.values
    }

    pub fn is_sorted(&self) -> bool {
        let keys = self.entries().map(|(k, _)| k);
        keys.clone().zip(keys.skip(1)).all(|(a, b)| a <= b)
    }

    /// Positions of the entries with this key.
    pub fn positions(&self, key: K) -> std::ops::Range<usize> {
        let bucket = key.top16();
        let (lo, hi) = (self.radix[bucket] as usize, self.radix[bucket + 1] as usize);
        let (slice, low) = (&self.lows[lo..hi], key.low());
        let start = slice.partition_point(|k| *k < low);
        let end = start + slice[start..].partition_point(|k| *k == low);
        lo + start..lo + end
    }

    pub fn value(&self, i: usize) -> V {
        self.values[i]
    }

    pub fn value_mut(&mut self, i: usize) -> &mut V {
        &mut self.values[i]
    }

    /// Every entry in key order.
    pub fn entries(&self) -> impl Iterator<Item = (K, V)> + Clone + '_ {
        self.radix
            .windows(2)
            .enumerate()
            .flat_map(move |(bucket, range)| {
                (range[0] as usize..range[1] as usize)
                    .map(move |i| (K::join(bucket, self.lows[i]), self.values[i]))
            })
    }

    /// A new run holding this run's entries and `more`. Entries with equal keys keep their
    /// order: this run's first, then `more`'s in the order given.
    pub fn merged_with(&self, mut more: Vec<(K, V)>) -> Self {
        more.sort_by_key(|(k, _)| *k);
        let total = self.len() + more.len();
        let (mut keys, mut values) = (Vec::with_capacity(total), Vec::with_capacity(total));
        for (k, v) in merge_by_key(self.entries(), more.into_iter()) {
            keys.push(k);
            values.push(v);
        }
        Self::from_sorted(keys, values)
    }
}

/// A [`SortedRun`] built from its keys as they come (in order), storing each in its
/// short form at once: a snapshot's 8-byte id keys are never all held.
pub struct RunBuilder<K: SortKey> {
    lows: Vec<K::Low>,
    radix: Vec<u32>,
    last: Option<K>,
    sorted: bool,
}

impl<K: SortKey> RunBuilder<K> {
    pub fn with_capacity(n: usize) -> Self {
        RunBuilder {
            lows: Vec::with_capacity(n),
            radix: Vec::with_capacity((1 << 16) + 1),
            last: None,
            sorted: true,
        }
    }

    pub fn push(&mut self, key: K) {
        self.sorted &= self.last.is_none_or(|last| last <= key);
        self.last = Some(key);
        // radix[b]: the first position whose key's bucket is b or more.
        while self.radix.len() <= key.top16() {
            self.radix.push(self.lows.len() as u32);
        }
        self.lows.push(key.low());
    }

    /// The run, if the keys came sorted and as many as `values`.
    pub fn finish<V: Copy>(mut self, values: Vec<V>) -> Option<SortedRun<K, V>> {
        if !self.sorted || values.len() != self.lows.len() {
            return None;
        }
        while self.radix.len() < (1 << 16) + 1 {
            self.radix.push(self.lows.len() as u32);
        }
        Some(SortedRun {
            lows: self.lows,
            values,
            radix: self.radix,
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

/// When the recent entries are merged into the sorted run: at a sixteenth of the run. A
/// recent entry costs 16 to 32 bytes in its hash map against 8 in the run, so at a quarter
/// (the first choice) the map held as much memory as half the run (~70 MB at 13 million
/// events); a sixteenth costs each entry ~16 copies over its life (a merge is a linear
/// pass, ~0.1 s at 10 million events, every ~600,000 appends there).
fn should_merge(recent: usize, run: usize) -> bool {
    recent >= (run / 16).max(1 << 16)
}

/// Event id fingerprint → sequence numbers.
pub struct IdIndex {
    /// Shared so that a snapshot can be written from it on another thread; a merge
    /// replaces it rather than changing it.
    run: Arc<SortedRun<u64, u32>>,
    recent: FastMap<u64, u32>,
    /// Recent entries whose fingerprint was already in `recent` (rare).
    recent_shared: Vec<(u64, u32)>,
}

impl Default for IdIndex {
    fn default() -> Self {
        IdIndex {
            run: Arc::new(SortedRun::empty()),
            recent: FastMap::default(),
            recent_shared: Vec::new(),
        }
    }
}

impl IdIndex {
    pub fn from_run(run: SortedRun<u64, u32>) -> Self {
        IdIndex {
            run: Arc::new(run),
            ..Default::default()
        }
    }

    /// Every sequence number whose id has this fingerprint, at most a few.
    pub fn candidates(&self, key: u64) -> impl Iterator<Item = u64> + '_ {
        let old = self.positions_in_run(key);
        old.chain(self.recent.get(&key).map(|&s| s as u64)).chain(
            self.recent_shared
                .iter()
                .filter(move |(k, _)| *k == key)
                .map(|&(_, s)| s as u64),
        )
    }

    fn positions_in_run(&self, key: u64) -> impl Iterator<Item = u64> + '_ {
        self.run
            .positions(key)
            .map(move |i| self.run.value(i) as u64)
    }

    pub fn insert(&mut self, key: u64, seq: u32) {
        if let Some(&already) = self.recent.get(&key) {
            if already != seq {
                self.recent_shared.push((key, seq));
            }
            return;
        }
        self.recent.insert(key, seq);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.run.len() + self.recent.len() + self.recent_shared.len()
    }

    pub fn needs_merge(&self) -> bool {
        should_merge(self.recent.len(), self.run.len())
    }

    /// The run with the recent entries merged in (built without changing `self`, so that a
    /// writer can build it under a read lock and install it under a short write lock).
    pub fn merged_run(&self) -> SortedRun<u64, u32> {
        self.run.merged_with(self.recent_sorted())
    }

    /// The recent entries by fingerprint, then sequence: so that a snapshot is
    /// byte-for-byte the same whatever the hash map's iteration order was.
    pub fn recent_sorted(&self) -> Vec<(u64, u32)> {
        let mut recent: Vec<(u64, u32)> = self
            .recent
            .iter()
            .map(|(&k, &s)| (k, s))
            .chain(self.recent_shared.iter().copied())
            .collect();
        recent.sort_unstable();
        recent
    }

    /// Merges in place when due (a scan that owns the index; the live log builds under a
    /// read lock instead, see `Inner::merge_indexes`).
    pub fn merge_if_due(&mut self) {
        if self.needs_merge() {
            let run = self.merged_run();
            self.install(run);
        }
    }

    pub fn install(&mut self, run: SortedRun<u64, u32>) {
        self.run = Arc::new(run);
        self.recent.clear();
        self.recent.shrink_to(1 << 16);
        self.recent_shared.clear();
    }

    pub fn run(&self) -> &Arc<SortedRun<u64, u32>> {
        &self.run
    }
}

/// Back-pointers per event, in sealed chunks shared with snapshot captures (a capture
/// clones the chunks' `Arc`s instead of copying 4 bytes per event: 40 MB at 10 million
/// events, every 2 million events) and an open tail.
#[derive(Debug, Clone, Default)]
pub struct BackPointers {
    /// Full chunks of [`BackPointers::CHUNK`] entries, each sealed as it fills (moved, not
    /// copied).
    sealed: Vec<Arc<Vec<u32>>>,
    tail: Vec<u32>,
}

impl BackPointers {
    /// Entries per sealed chunk.
    const CHUNK: usize = 1 << 20;

    pub fn len(&self) -> usize {
        self.sealed.len() * Self::CHUNK + self.tail.len()
    }

    pub fn get(&self, i: usize) -> u32 {
        match self.sealed.get(i / Self::CHUNK) {
            Some(chunk) => chunk[i % Self::CHUNK],
            None => self.tail[i - self.sealed.len() * Self::CHUNK],
        }
    }

    pub fn push(&mut self, pointer: u32) {
        self.tail.push(pointer);
        if self.tail.len() == Self::CHUNK {
            let full = std::mem::replace(&mut self.tail, Vec::with_capacity(Self::CHUNK));
            self.sealed.push(Arc::new(full));
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.sealed
            .iter()
            .flat_map(|chunk| chunk.iter().copied())
            .chain(self.tail.iter().copied())
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
    run: SortedRun<u128, StreamHead>,
    recent: FastMap<u128, StreamHead>,
    /// `previous[seq - 1]`: the sequence number of the complaint's event before `seq`, 0
    /// for its first.
    previous: BackPointers,
    regions: Vec<Box<str>>,
    region_ids: HashMap<Box<str>, u32>,
    status_counts: [u64; 5],
}

impl Default for StreamIndex {
    fn default() -> Self {
        StreamIndex {
            run: SortedRun::empty(),
            recent: FastMap::default(),
            previous: BackPointers::default(),
            regions: Vec::new(),
            region_ids: HashMap::new(),
            status_counts: [0; 5],
        }
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
            recent: FastMap::default(),
            previous,
            regions,
            region_ids,
            status_counts,
        }
    }

    pub fn get(&self, key: u128) -> Option<StreamHead> {
        if let Some(head) = self.recent.get(&key) {
            return Some(*head);
        }
        let at = self.run.positions(key);
        (!at.is_empty()).then(|| self.run.value(at.start))
    }

    /// The sequence numbers of the stream ending at `head`, oldest first.
    pub fn seqs(&self, head: StreamHead) -> Vec<u64> {
        let mut seqs = Vec::with_capacity(head.version as usize);
        let mut seq = head.last_seq;
        while seq != 0 {
            seqs.push(seq as u64);
            seq = self.previous.get(seq as usize - 1);
        }
        seqs.reverse();
        seqs
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
        let at = self.run.positions(key);
        if at.is_empty() {
            self.recent.insert(key, head);
        } else {
            *self.run.value_mut(at.start) = head;
        }
    }

    pub fn len(&self) -> usize {
        self.run.len() + self.recent.len()
    }

    pub fn count(&self, status: StreamStatus) -> u64 {
        self.status_counts[status as usize]
    }

    pub fn needs_merge(&self) -> bool {
        should_merge(self.recent.len(), self.run.len())
    }

    pub fn merged_run(&self) -> SortedRun<u128, StreamHead> {
        self.run.merged_with(self.recent_sorted())
    }

    /// Keys are unique, so the hash map's order does not matter once sorted.
    pub fn recent_sorted(&self) -> Vec<(u128, StreamHead)> {
        let mut recent: Vec<(u128, StreamHead)> =
            self.recent.iter().map(|(&k, &h)| (k, h)).collect();
        recent.sort_unstable_by_key(|(k, _)| *k);
        recent
    }

    /// Merges in place when due (see [`IdIndex::merge_if_due`]).
    pub fn merge_if_due(&mut self) {
        if self.needs_merge() {
            let run = self.merged_run();
            self.install(run);
        }
    }

    /// Installs a run built by [`Self::merged_run`]. Heads changed since it was built would
    /// be lost, so the caller must not record in between (the log's single writer builds
    /// and installs).
    pub fn install(&mut self, run: SortedRun<u128, StreamHead>) {
        self.run = run;
        self.recent.clear();
        self.recent.shrink_to(1 << 16);
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
        let n = BackPointers::CHUNK * 2 + 5;
        let mut pointers = BackPointers::default();
        for i in 0..n {
            pointers.push(i as u32 ^ 0x5a5a);
        }
        let captured = pointers.clone();
        pointers.push(7);
        assert_eq!(captured.len(), n);
        assert_eq!(pointers.len(), n + 1);
        for i in [
            0,
            BackPointers::CHUNK - 1,
            BackPointers::CHUNK,
            2 * BackPointers::CHUNK,
            n - 1,
        ] {
            assert_eq!(pointers.get(i), i as u32 ^ 0x5a5a);
        }
        assert_eq!(pointers.get(n), 7);
        let all: Vec<u32> = captured.iter().collect();
        assert_eq!(all.len(), n);
        let mut rebuilt = BackPointers::default();
        all.iter().for_each(|&p| rebuilt.push(p));
        assert!(rebuilt.iter().eq(all.iter().copied()));
        assert_eq!(rebuilt.len(), n);
    }

    #[test]
    fn a_run_built_key_by_key_equals_one_built_from_all_keys_and_refuses_disorder() {
        let mut keys: Vec<u64> = (0..20_000u64)
            .map(|i| fingerprint_bits(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect();
        keys.sort_unstable();
        let values: Vec<u32> = (1..=keys.len() as u32).collect();
        let mut builder = RunBuilder::with_capacity(keys.len());
        keys.iter().for_each(|&k| builder.push(k));
        let built = builder.finish(values.clone()).unwrap();
        let whole = SortedRun::from_sorted(keys.clone(), values.clone());
        assert!(built.entries().eq(whole.entries()));
        for &key in keys.iter().step_by(97) {
            assert_eq!(built.positions(key), whole.positions(key));
        }
        let mut builder = RunBuilder::with_capacity(2);
        builder.push(keys[1]);
        builder.push(keys[0]);
        assert!(builder.finish(vec![1u32, 2]).is_none());
        let mut builder = RunBuilder::with_capacity(1);
        builder.push(keys[0]);
        assert!(
            builder.finish(vec![1u32, 2]).is_none(),
            "as many values as keys"
        );
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
        assert_eq!(streams.seqs(head), vec![1, 3]);
        assert_eq!(streams.count(StreamStatus::Open), 1);
        assert_eq!(streams.count(StreamStatus::Resolved), 1);
        let run = streams.merged_run();
        streams.install(run);
        streams.record(b, "us", EventType::Withdrawn, 4);
        assert_eq!(streams.seqs(streams.get(b).unwrap()), vec![2, 4]);
        assert_eq!(streams.count(StreamStatus::Open), 0);
        assert!(streams.get(complaint_key("C-c")).is_none());
    }

    proptest! {
        /// Whatever the interleaving of inserts and merges, every id finds exactly its
        /// sequence numbers (fingerprints forced to collide often by a small key space).
        #[test]
        fn id_index_finds_every_entry_across_merges(
            keys in proptest::collection::vec(0u64..64, 1..300),
            merge_every in 1usize..50,
        ) {
            let mut index = IdIndex::default();
            let mut model: HashMap<u64, Vec<u64>> = HashMap::new();
            for (i, key) in keys.iter().enumerate() {
                // Spread the small keys over the radix buckets too.
                let key = fingerprint_bits(key.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let seq = i as u32 + 1;
                index.insert(key, seq);
                model.entry(key).or_default().push(seq as u64);
                if i % merge_every == 0 {
                    let run = index.merged_run();
                    prop_assert!(run.is_sorted());
                    index.install(run);
                }
            }
            for (key, seqs) in &model {
                let mut found: Vec<u64> = index.candidates(*key).collect();
                found.sort_unstable();
                prop_assert_eq!(&found, seqs);
            }
            prop_assert_eq!(index.len(), keys.len());
        }

        #[test]
        fn stream_heads_survive_merges(
            complaints in proptest::collection::vec(0u8..20, 1..200),
            merge_every in 1usize..40,
        ) {
            let mut index = StreamIndex::default();
            let mut model: HashMap<u8, Vec<u64>> = HashMap::new();
            for (i, c) in complaints.iter().enumerate() {
                let seq = i as u32 + 1;
                let event_type = if model.contains_key(c) { EventType::Acknowledged } else { EventType::Filed };
                index.record(complaint_key(&format!("C-{c}")), "eu", event_type, seq);
                model.entry(*c).or_default().push(seq as u64);
                if i % merge_every == 0 {
                    let run = index.merged_run();
                    index.install(run);
                }
            }
            for (c, seqs) in &model {
                let head = index.get(complaint_key(&format!("C-{c}"))).unwrap();
                prop_assert_eq!(head.version as usize, seqs.len());
                prop_assert_eq!(&index.seqs(head), seqs);
            }
            prop_assert_eq!(index.len(), model.len());
            prop_assert_eq!(index.count(StreamStatus::Open), model.len() as u64);
        }
    }
}
