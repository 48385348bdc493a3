//! The on-disk layout of the log (format version 2).
//!
//! The events' bytes live in **segment files** (`segments/<first seq, 20 digits>.seg` in
//! the database directory), appended to and never rewritten; a file rolls over at
//! [`ROLL_BYTES`]. One append writes one *record* at the end of the active file: the
//! segment (the events of that append, bytes exactly as received, with an offset table)
//! followed by its index records (id, time, type, version, complaint, region, chain hash).
//! Segment files are append-only: only `plaint repair` and the open after an interrupted
//! append cut their ends.
//!
//! The sled tree `log` holds only small values, written together in one atomic
//! `sled::Batch` per append:
//!
//! | key | value |
//! |---|---|
//! | `s` + first seq (u64 BE) | the segment's [`Location`]: file, offset, lengths, index-record checksum |
//! | `h` | the head: last seq, chain head, segment count |
//! | `v` | the layout version (`plaint-log/2`) |
//!
//! Why files: sled keeps every value it has read in memory and, for values it stores as
//! blobs (a 1,000-event segment is one), does not count them against its cache, so a full
//! read of a 10-million-event log grew a process by ~1 KB per event and never gave it
//! back. Segment files are read with `pread`: what a reader holds is the segment in hand,
//! and caching is the kernel's page cache. Big-endian sequence keys make range scans run
//! in log order; the index records sit apart from the payloads in each record so that
//! opening the log reads ~70 bytes per event, not ~450.
//!
//! Write order (see `LogWriter::commit`): the record is written (and, with
//! `Durability::Fsync`, fdatasync'ed) *before* its location goes into sled, so a durable
//! location never points at bytes that are not. Bytes past the last location are the
//! leftovers of an append that never committed and are cut off when the log opens.

use plaint_events::{EventType, Timestamp};
use uuid::Uuid;

pub const LAYOUT_VERSION: &[u8] = b"plaint-log/2";
pub const HEAD_KEY: &[u8] = b"h";
pub const VERSION_KEY: &[u8] = b"v";
const SEGMENT_MAGIC: &[u8; 4] = b"PLS1";
/// Magic, first seq (u64) and count (u32); the offset table (a u32 end per event) follows.
pub const SEGMENT_HEADER_LEN: usize = 16;

/// The number of events a segment holds, from its header.
pub fn segment_count(header: &[u8]) -> Option<usize> {
    if header.get(0..4)? != SEGMENT_MAGIC {
        return None;
    }
    Some(u32::from_be_bytes(header.get(12..16)?.try_into().ok()?) as usize)
}

/// By default, a segment file takes no new record once it is this long (records are never
/// split, so a file may end a little past it); `LogOptions::segment_file_bytes` sets it.
pub const ROLL_BYTES: u64 = 128 << 20;

/// The directory of the segment files, inside the log's database directory.
pub fn segments_dir(log_dir: &std::path::Path) -> std::path::PathBuf {
    log_dir.join("segments")
}

/// The path of segment file `file` (the first sequence number it holds).
pub fn segment_file(log_dir: &std::path::Path, file: u64) -> std::path::PathBuf {
    segments_dir(log_dir).join(format!("{file:020}.seg"))
}

/// The number of a segment file from its name, if it is one.
pub fn segment_file_number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The sled key of the [`Location`] of the segment starting at `first_seq`.
pub fn segment_key(first_seq: u64) -> [u8; 9] {
    prefixed(b's', first_seq)
}

/// Where one segment's record is: in which file, at which offset, how long its two parts
/// are, and a checksum of the index records (the events' bytes are covered by the chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The segment file's number: the first sequence number it holds.
    pub file: u64,
    pub offset: u64,
    pub segment_len: u32,
    pub meta_len: u32,
    pub meta_check: u64,
}

impl Location {
    pub const ENCODED_LEN: usize = 32;

    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[0..8].copy_from_slice(&self.file.to_be_bytes());
        out[8..16].copy_from_slice(&self.offset.to_be_bytes());
        out[16..20].copy_from_slice(&self.segment_len.to_be_bytes());
        out[20..24].copy_from_slice(&self.meta_len.to_be_bytes());
        out[24..32].copy_from_slice(&self.meta_check.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Location> {
        let bytes: &[u8; Self::ENCODED_LEN] = bytes.try_into().ok()?;
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        Some(Location {
            file: u64_at(0),
            offset: u64_at(8),
            segment_len: u32_at(16),
            meta_len: u32_at(20),
            meta_check: u64_at(24),
        })
    }

    /// Where the index records start in the file.
    pub fn meta_offset(&self) -> u64 {
        self.offset + u64::from(self.segment_len)
    }

    /// Where the record ends in the file.
    pub fn end(&self) -> u64 {
        self.meta_offset() + u64::from(self.meta_len)
    }
}

/// The checksum of a segment's index records kept in its [`Location`].
pub fn meta_check(meta: &[u8]) -> u64 {
    let hash = blake3::hash(meta);
    u64::from_be_bytes(hash.as_bytes()[..8].try_into().unwrap())
}

fn prefixed(prefix: u8, seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = prefix;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub fn seq_of_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

/// The chain hash of an entry: it commits to the previous entry's hash, the sequence
/// number and the exact bytes, so changing, removing or reordering any entry changes every
/// hash after it.
pub fn chain_hash(previous: &[u8; 32], seq: u64, bytes: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(previous);
    hasher.update(&seq.to_be_bytes());
    hasher.update(bytes);
    *hasher.finalize().as_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub last_seq: u64,
    pub chain: [u8; 32],
    pub segments: u64,
}

impl Head {
    pub const EMPTY: Head = Head {
        last_seq: 0,
        chain: [0; 32],
        segments: 0,
    };

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        out.extend_from_slice(&self.last_seq.to_be_bytes());
        out.extend_from_slice(&self.chain);
        out.extend_from_slice(&self.segments.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Head> {
        if bytes.len() != 48 {
            return None;
        }
        Some(Head {
            last_seq: u64::from_be_bytes(bytes[0..8].try_into().ok()?),
            chain: bytes[8..40].try_into().ok()?,
            segments: u64::from_be_bytes(bytes[40..48].try_into().ok()?),
        })
    }
}

/// The index record of one entry, stored after its segment in the segment's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    pub id: Uuid,
    pub time: Timestamp,
    pub event_type: EventType,
    /// The entry's version in its complaint's stream (1 for `complaint.filed`).
    pub version: u32,
    pub complaint_id: String,
    pub region: String,
    pub chain: [u8; 32],
}

pub fn encode_meta(entries: &[EntryMeta]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * 96);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        out.extend_from_slice(e.id.as_bytes());
        let micros = e.time.as_microsecond();
        out.extend_from_slice(&micros.to_be_bytes());
        out.push(e.event_type.code());
        out.extend_from_slice(&e.version.to_be_bytes());
        out.push(e.complaint_id.len() as u8);
        out.extend_from_slice(e.complaint_id.as_bytes());
        out.push(e.region.len() as u8);
        out.extend_from_slice(e.region.as_bytes());
        out.extend_from_slice(&e.chain);
    }
    out
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<&'a str> {
        let len = self.u8()? as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }
}

/// One index record, borrowed from the index records it was read from: what opening the log
/// reads for every event, so it must not allocate.
#[derive(Debug, Clone, Copy)]
pub struct MetaRef<'a> {
    pub id: Uuid,
    pub time_micros: i64,
    pub event_type: EventType,
    pub version: u32,
    pub complaint_id: &'a str,
    pub region: &'a str,
    pub chain: [u8; 32],
}

impl MetaRef<'_> {
    pub fn to_owned(&self) -> Option<EntryMeta> {
        Some(EntryMeta {
            id: self.id,
            time: Timestamp::from_microsecond(self.time_micros).ok()?,
            event_type: self.event_type,
            version: self.version,
            complaint_id: self.complaint_id.to_owned(),
            region: self.region.to_owned(),
            chain: self.chain,
        })
    }
}

/// The index records of a segment, in order; an item is `None` where the value is malformed
/// (nothing follows it).
pub fn meta_records(bytes: &[u8]) -> impl Iterator<Item = Option<MetaRef<'_>>> {
    let mut c = Cursor { bytes, at: 0 };
    let count = c.u32();
    let mut left = count.unwrap_or(0) as usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        if count.is_none() {
            done = true;
            return Some(None);
        }
        if left == 0 {
            done = true;
            // A value longer than its records is malformed too.
            return (c.at != c.bytes.len()).then_some(None);
        }
        left -= 1;
        let record = (|| {
            Some(MetaRef {
                id: Uuid::from_slice(c.take(16)?).ok()?,
                time_micros: c.u64()? as i64,
                event_type: EventType::from_code(c.u8()?)?,
                version: c.u32()?,
                complaint_id: c.str()?,
                region: c.str()?,
                chain: c.take(32)?.try_into().ok()?,
            })
        })();
        done = record.is_none();
        Some(record)
    })
}

pub fn decode_meta(bytes: &[u8]) -> Option<Vec<EntryMeta>> {
    meta_records(bytes).map(|r| r?.to_owned()).collect()
}

pub fn encode_segment<'a>(
    first_seq: u64,
    events: impl ExactSizeIterator<Item = &'a [u8]> + Clone,
) -> Vec<u8> {
    let count = events.len();
    let data_len: usize = events.clone().map(<[u8]>::len).sum();
    let mut out = Vec::with_capacity(16 + count * 4 + data_len);
    out.extend_from_slice(SEGMENT_MAGIC);
    out.extend_from_slice(&first_seq.to_be_bytes());
    out.extend_from_slice(&(count as u32).to_be_bytes());
    let mut end = 0u32;
    for e in events.clone() {
        end += e.len() as u32;
        out.extend_from_slice(&end.to_be_bytes());
    }
    for e in events {
        out.extend_from_slice(e);
    }
    out
}

/// A decoded view of a segment: offsets into the bytes, no copies.
#[derive(Debug, Clone, Copy)]
pub struct SegmentView<'a> {
    pub first_seq: u64,
    offsets: &'a [u8],
    data: &'a [u8],
}

impl<'a> SegmentView<'a> {
    pub fn parse(bytes: &'a [u8]) -> Option<SegmentView<'a>> {
        if bytes.get(0..4)? != SEGMENT_MAGIC {
            return None;
        }
        let first_seq = u64::from_be_bytes(bytes.get(4..12)?.try_into().ok()?);
        let count = u32::from_be_bytes(bytes.get(12..16)?.try_into().ok()?) as usize;
        let offsets = bytes.get(16..16 + count.checked_mul(4)?)?;
        let data = &bytes[16 + count * 4..];
        let view = SegmentView {
            first_seq,
            offsets,
            data,
        };
        // Every end offset must be inside the data and non-decreasing, or the segment is torn.
        let mut previous = 0usize;
        for i in 0..count {
            let end = view.end(i);
            if end < previous || end > data.len() {
                return None;
            }
            previous = end;
        }
        (previous == data.len()).then_some(view)
    }

    fn end(&self, i: usize) -> usize {
        u32::from_be_bytes(self.offsets[i * 4..i * 4 + 4].try_into().unwrap()) as usize
    }

    pub fn len(&self) -> usize {
        self.offsets.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.len() as u64 - 1
    }

    pub fn event(&self, i: usize) -> &'a [u8] {
        let start = if i == 0 { 0 } else { self.end(i - 1) };
        &self.data[start..self.end(i)]
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &'a [u8])> + '_ {
        (0..self.len()).map(move |i| (self.first_seq + i as u64, self.event(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_round_trips_and_detects_truncation() {
        let events: Vec<&[u8]> = vec![b"{\"a\":1}", b"", b"{\"b\":22}"];
        let bytes = encode_segment(7, events.iter().copied());
        let view = SegmentView::parse(&bytes).unwrap();
        assert_eq!(view.len(), 3);
        assert_eq!(view.last_seq(), 9);
        assert_eq!(
            view.iter().collect::<Vec<_>>(),
            vec![(7, events[0]), (8, events[1]), (9, events[2])]
        );
        assert!(SegmentView::parse(&bytes[..bytes.len() - 1]).is_none());
    }

    #[test]
    fn meta_round_trips() {
        let meta = vec![EntryMeta {
            id: Uuid::from_u128(42),
            time: "2024-05-01T10:00:00.123456Z".parse().unwrap(),
            event_type: EventType::Resolved,
            version: 3,
            complaint_id: "C-1".into(),
            region: "eu".into(),
            chain: [9; 32],
        }];
        assert_eq!(decode_meta(&encode_meta(&meta)).unwrap(), meta);
        assert!(decode_meta(&encode_meta(&meta)[..20]).is_none());
    }
}
