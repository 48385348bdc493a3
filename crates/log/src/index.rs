//! In-memory indexes rebuilt from the segments' index records when the log opens.
//!
//! Why in memory: a sled tree keyed by random UUIDs costs one random B-tree insert per
//! event and cut durable ingest from ~100k/s to ~26k/s on the reference machine (see
//! ARCHITECTURE.md, "Storage"). The index records themselves are durable (they are written in the
//! same atomic batch as the events), so these maps are a cache that is always complete.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use plaint_events::lifecycle::StreamStatus;
use uuid::Uuid;

/// Event ids are UUIDs, mostly random: folding the 128 bits to 64 is a good enough hash
/// and much cheaper than SipHash.
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
    fn write_u128(&mut self, v: u128) {
        self.0 = ((v as u64) ^ ((v >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FoldHasher>>;

/// Event id → sequence number. Unbounded by design: a duplicate is recognised however
/// late it comes (JetStream's own window is minutes). About 40 bytes per event.
#[derive(Default)]
pub struct IdIndex {
    map: FastMap<u128, u64>,
}

impl IdIndex {
    pub fn with_capacity(n: usize) -> Self {
        IdIndex {
            map: FastMap::with_capacity_and_hasher(n, Default::default()),
        }
    }
    pub fn get(&self, id: &Uuid) -> Option<u64> {
        self.map.get(&id.as_u128()).copied()
    }
    pub fn insert(&mut self, id: Uuid, seq: u64) -> Option<u64> {
        self.map.insert(id.as_u128(), seq)
    }
}

/// What the log knows about one complaint's stream.
#[derive(Debug, Clone)]
pub struct StreamState {
    /// Sequence numbers of the complaint's events; version N is `seqs[N - 1]`.
    pub seqs: Vec<u64>,
    pub region: u32,
    pub status: StreamStatus,
}

/// Complaint id → stream state, with interned regions (there are few regions and many
/// complaints).
#[derive(Default)]
pub struct StreamIndex {
    streams: HashMap<Box<str>, StreamState>,
    regions: Vec<Box<str>>,
    region_ids: HashMap<Box<str>, u32>,
}

impl StreamIndex {
    pub fn get(&self, complaint: &str) -> Option<&StreamState> {
        self.streams.get(complaint)
    }

    pub fn region_name(&self, id: u32) -> &str {
        &self.regions[id as usize]
    }

    pub fn intern(&mut self, region: &str) -> u32 {
        if let Some(&id) = self.region_ids.get(region) {
            return id;
        }
        let id = self.regions.len() as u32;
        self.regions.push(region.into());
        self.region_ids.insert(region.into(), id);
        id
    }

    /// Records an entry. Index records come from the log itself, so the lifecycle is
    /// followed, not checked, here.
    pub fn record(
        &mut self,
        complaint: &str,
        region: &str,
        event_type: plaint_events::EventType,
        seq: u64,
    ) {
        let region_id = self.intern(region);
        match self.streams.get_mut(complaint) {
            Some(state) => {
                state.seqs.push(seq);
                state.status = plaint_events::lifecycle::next(state.status, event_type);
            }
            None => {
                self.streams.insert(
                    complaint.into(),
                    StreamState {
                        seqs: vec![seq],
                        region: region_id,
                        status: StreamStatus::Open,
                    },
                );
            }
        }
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &StreamState)> {
        self.streams.iter().map(|(k, v)| (&**k, v))
    }
}
