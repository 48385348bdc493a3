//! The index snapshot: the in-memory indexes saved to one file, so that opening a big log
//! reads ~16 bytes per event from a file instead of rescanning every index record
//! (~80 bytes per event through sled, plus decoding).
//!
//! The snapshot is a cache, never the truth: it names the sequence number and chain hash it
//! was taken at, and [`crate::Log::open`] uses it only if the log's own index record at that
//! sequence has the same chain hash; the entries after it are then scanned from the log. A
//! missing, stale, damaged or foreign snapshot costs a full scan, nothing else.
//!
//! Layout of `plaint-indexes` in the sled directory (little-endian; format 2, whose id
//! fingerprints have 48 bits; a format-1 snapshot, with 64-bit ones, is read and its
//! fingerprints cut to 48 bits):
//!
//! | field | size |
//! |---|---|
//! | magic `PLAINTIX`, format version | 8 + 4 |
//! | last sequence, chain hash at it | 8 + 32 |
//! | ids, complaints, regions (counts) | 8 + 8 + 4 |
//! | regions: length, UTF-8 | 2 + n each |
//! | id fingerprints (`index::id_key`), then their sequence numbers, sorted by fingerprint | 8 + 4 each |
//! | complaint keys, then heads (last seq, version, region, status), sorted by key | 16 + 13 each |
//! | back-pointers, one per event | 4 each |
//! | BLAKE3 of everything above | 32 |

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use plaint_events::lifecycle::StreamStatus;

use crate::index::{
    fingerprint_bits, merge_by_key, BackPointers, IdIndex, RunBuilder, SortedRun, StreamHead,
    StreamIndex,
};

const MAGIC: &[u8; 8] = b"PLAINTIX";
const FORMAT: u32 = 2;
/// Format 1 differs only by its 64-bit id fingerprints.
const FORMAT_64_BIT_IDS: u32 = 1;
const FILE_NAME: &str = "plaint-indexes";

/// Where the snapshot of the log in `dir` lives (inside sled's directory, so that it moves
/// and is deleted with the database).
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Indexes as of `last_seq`.
pub struct Snapshot {
    pub last_seq: u64,
    pub chain: [u8; 32],
    pub ids: IdIndex,
    pub streams: StreamIndex,
}

struct Hashing<T> {
    inner: T,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A consistent copy of the indexes, taken on the writer and written on another thread.
/// Cheap to take: the runs' parts and the back-pointers' sealed chunks are shared, not
/// copied; only the recent entries (at most a sixteenth of the runs) are. While it is held,
/// a merge that replaces a part, or a stream head changed in a part it shares (copied on
/// write), keeps that old part alive until the capture is dropped.
pub struct Capture {
    last_seq: u64,
    chain: [u8; 32],
    id_run: SortedRun<u64, u32>,
    id_recent: Vec<(u64, u32)>,
    stream_run: SortedRun<u128, StreamHead>,
    stream_recent: Vec<(u128, StreamHead)>,
    previous: BackPointers,
    regions: Vec<Box<str>>,
}

impl Capture {
    pub fn of(last_seq: u64, chain: [u8; 32], ids: &IdIndex, streams: &StreamIndex) -> Self {
        Capture {
            last_seq,
            chain,
            id_run: ids.run().clone(),
            id_recent: ids.recent_sorted(),
            stream_run: streams.run().clone(),
            stream_recent: streams.recent_sorted(),
            previous: streams.previous().clone(),
            regions: streams.regions().to_vec(),
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

/// Writes the snapshot atomically: a temporary file, fsync, rename, fsync of the directory.
/// Each index is written as its sorted run and recent entries merged on the fly, so the
/// file holds one sorted array per index.
pub fn write(dir: &Path, capture: &Capture) -> io::Result<()> {
    let final_path = path(dir);
    let tmp_path = dir.join(format!("{FILE_NAME}.tmp"));
    let file = File::create(&tmp_path)?;
    let mut out = BufWriter::with_capacity(
        1 << 20,
        Hashing {
            inner: file,
            hasher: blake3::Hasher::new(),
        },
    );
    let ids = || merge_by_key(capture.id_run.entries(), capture.id_recent.iter().copied());
    let streams = || {
        merge_by_key(
            capture.stream_run.entries(),
            capture.stream_recent.iter().copied(),
        )
    };
    out.write_all(MAGIC)?;
    out.write_all(&FORMAT.to_le_bytes())?;
    out.write_all(&capture.last_seq.to_le_bytes())?;
    out.write_all(&capture.chain)?;
    let id_count = capture.id_run.len() + capture.id_recent.len();
    let stream_count = capture.stream_run.len() + capture.stream_recent.len();
    out.write_all(&(id_count as u64).to_le_bytes())?;
    out.write_all(&(stream_count as u64).to_le_bytes())?;
    out.write_all(&(capture.regions.len() as u32).to_le_bytes())?;
    for region in &capture.regions {
        let bytes = region.as_bytes();
        out.write_all(&(bytes.len() as u16).to_le_bytes())?;
        out.write_all(bytes)?;
    }
    for (key, _) in ids() {
        out.write_all(&key.to_le_bytes())?;
    }
    for (_, seq) in ids() {
        out.write_all(&seq.to_le_bytes())?;
    }
    for (key, _) in streams() {
        out.write_all(&key.to_le_bytes())?;
    }
    for (_, head) in streams() {
        out.write_all(&head.last_seq.to_le_bytes())?;
        out.write_all(&head.version.to_le_bytes())?;
        out.write_all(&head.region.to_le_bytes())?;
        out.write_all(&[head.status as u8])?;
    }
    capture.previous.for_each_chunk(|chunk| {
        chunk
            .iter()
            .try_for_each(|previous| out.write_all(&previous.to_le_bytes()))
    })?;
    let Hashing { mut inner, hasher } = out.into_inner().map_err(|e| e.into_error())?;
    inner.write_all(hasher.finalize().as_bytes())?;
    inner.sync_all()?;
    drop(inner);
    std::fs::rename(&tmp_path, &final_path)?;
    File::open(dir)?.sync_all()
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Reads `count` fixed-size little-endian values in large chunks.
fn read_array<T, const N: usize>(
    input: &mut impl Read,
    count: usize,
    convert: impl Fn([u8; N]) -> T,
) -> io::Result<Vec<T>> {
    let mut out = Vec::with_capacity(count);
    read_each(input, count, |bytes| out.push(convert(bytes)))?;
    Ok(out)
}

/// Hands `count` fixed-size values to `each`, read in large chunks: for arrays stored in
/// another form than the file's (holding both would double an open's peak).
fn read_each<const N: usize>(
    input: &mut impl Read,
    count: usize,
    mut each: impl FnMut([u8; N]),
) -> io::Result<()> {
    let mut buf = vec![0u8; N * 8192];
    let mut left = count;
    while left > 0 {
        let n = left.min(8192);
        input.read_exact(&mut buf[..n * N])?;
        for chunk in buf[..n * N].chunks_exact(N) {
            each(chunk.try_into().expect("chunk of N"));
        }
        left -= n;
    }
    Ok(())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Reads the snapshot of the log in `dir`: `Ok(None)` if there is none, an error of kind
/// `InvalidData` if it is damaged or inconsistent.
pub fn read(dir: &Path) -> io::Result<Option<Snapshot>> {
    let mut file = match File::open(path(dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len < 32 + 72 {
        return Err(invalid("the snapshot is too short"));
    }
    let mut expected_hash = [0u8; 32];
    file.seek(SeekFrom::Start(len - 32))?;
    file.read_exact(&mut expected_hash)?;
    file.seek(SeekFrom::Start(0))?;
    let mut input = BufReader::with_capacity(
        1 << 20,
        Hashing {
            inner: file.take(len - 32),
            hasher: blake3::Hasher::new(),
        },
    );
    let mut header = [0u8; 72];
    input.read_exact(&mut header)?;
    let format = u32_at(&header, 8);
    if &header[..8] != MAGIC || (format != FORMAT && format != FORMAT_64_BIT_IDS) {
        return Err(invalid("not a plaint index snapshot of format 1 or 2"));
    }
    let last_seq = u64::from_le_bytes(header[12..20].try_into().expect("8"));
    let chain: [u8; 32] = header[20..52].try_into().expect("32");
    let n_ids = u64::from_le_bytes(header[52..60].try_into().expect("8"));
    let n_streams = u64::from_le_bytes(header[60..68].try_into().expect("8"));
    let n_regions = u32_at(&header, 68);
    // Sizes must add up to the file's before anything is allocated from them.
    let least = 72
        + 12 * n_ids as u128
        + 29 * n_streams as u128
        + 4 * last_seq as u128
        + 2 * n_regions as u128;
    if least > (len - 32) as u128 || n_ids != last_seq || last_seq > u32::MAX as u64 {
        return Err(invalid("the snapshot's counts do not match its size"));
    }
    let mut regions = Vec::with_capacity(n_regions as usize);
    for _ in 0..n_regions {
        let mut n = [0u8; 2];
        input.read_exact(&mut n)?;
        let mut bytes = vec![0u8; u16::from_le_bytes(n) as usize];
        input.read_exact(&mut bytes)?;
        let region = String::from_utf8(bytes).map_err(|_| invalid("a region is not UTF-8"))?;
        regions.push(region.into_boxed_str());
    }
    let n_ids = n_ids as usize;
    let n_streams = n_streams as usize;
    // The checksum catches damage; the range checks catch a snapshot that was written
    // wrong.
    let in_range = |seq: u32| seq >= 1 && seq as u64 <= last_seq;
    let mut plausible = true;
    let unsorted = || invalid("the snapshot's keys are not sorted");
    let id_run = if format == FORMAT_64_BIT_IDS {
        let keys = read_array(&mut input, n_ids, u64::from_le_bytes)?;
        let seqs = read_array(&mut input, n_ids, u32::from_le_bytes)?;
        plausible &= seqs.iter().all(|&s| in_range(s));
        let (keys, seqs) = cut_to_48_bits(keys, seqs);
        SortedRun::from_sorted(keys, seqs)
    } else {
        // Straight into the run's parts in their 4-byte form: never all 8-byte keys, nor
        // a whole array of sequence numbers beside the parts'.
        let mut run = RunBuilder::with_capacity(n_ids);
        read_each(&mut input, n_ids, |bytes| {
            run.push(u64::from_le_bytes(bytes))
        })?;
        read_each(&mut input, n_ids, |bytes| {
            let seq = u32::from_le_bytes(bytes);
            plausible &= in_range(seq);
            run.push_value(seq);
        })?;
        run.finish().ok_or_else(unsorted)?
    };
    let mut run = RunBuilder::with_capacity(n_streams);
    read_each(&mut input, n_streams, |bytes| {
        run.push(u128::from_le_bytes(bytes))
    })?;
    read_each(&mut input, n_streams, |b: [u8; 13]| {
        let status = match b[12] {
            1 => Some(StreamStatus::Open),
            2 => Some(StreamStatus::Resolved),
            3 => Some(StreamStatus::Closed),
            4 => Some(StreamStatus::Withdrawn),
            _ => None,
        };
        let head = StreamHead {
            last_seq: u32_at(&b, 0),
            version: u32_at(&b, 4),
            region: u32_at(&b, 8),
            status: status.unwrap_or(StreamStatus::Open),
        };
        plausible &= status.is_some() && in_range(head.last_seq) && head.region < n_regions;
        run.push_value(head);
    })?;
    let stream_run = run.finish().ok_or_else(unsorted)?;
    let mut previous = BackPointers::default();
    let mut previous_in_range = true;
    read_each(&mut input, last_seq as usize, |bytes| {
        let pointer = u32::from_le_bytes(bytes);
        previous_in_range &= (pointer as usize) <= previous.len();
        previous.push(pointer);
    })?;
    let mut rest = [0u8; 1];
    if input.read(&mut rest)? != 0 {
        return Err(invalid("the snapshot has trailing bytes"));
    }
    let Hashing { hasher, .. } = input.into_inner();
    if hasher.finalize().as_bytes() != &expected_hash {
        return Err(invalid("the snapshot's checksum does not match"));
    }
    if !(plausible && previous_in_range) {
        return Err(invalid("the snapshot's entries are out of range"));
    }
    Ok(Some(Snapshot {
        last_seq,
        chain,
        ids: IdIndex::from_run(id_run),
        streams: StreamIndex::from_parts(stream_run, previous, regions),
    }))
}

/// The entries of a format-1 snapshot with their fingerprints cut to 48 bits, sorted again
/// (cutting reorders keys within a radix bucket).
fn cut_to_48_bits(keys: Vec<u64>, seqs: Vec<u32>) -> (Vec<u64>, Vec<u32>) {
    let mut entries: Vec<(u64, u32)> = keys.into_iter().map(fingerprint_bits).zip(seqs).collect();
    entries.sort_unstable();
    entries.into_iter().unzip()
}

/// Removes the snapshot of the log in `dir`, if any (after a repair truncated the log).
pub fn remove(dir: &Path) -> io::Result<()> {
    match std::fs::remove_file(path(dir)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{id_hash, id_key, part_of, PARTS};
    use std::collections::HashMap;
    use uuid::Uuid;

    fn ids(n: u32) -> Vec<Uuid> {
        (0..n)
            .map(|i| Uuid::new_v5(&Uuid::NAMESPACE_OID, &i.to_le_bytes()))
            .collect()
    }

    #[test]
    fn a_format_1_snapshot_with_64_bit_fingerprints_finds_every_id() {
        let ids = ids(5_000);
        // As format 1 stored them: whole 64-bit hashes, sorted.
        let mut entries: Vec<(u64, u32)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id_hash(id), i as u32 + 1))
            .collect();
        entries.sort_unstable();
        let (keys, seqs) = entries.into_iter().unzip();
        let (keys, seqs) = cut_to_48_bits(keys, seqs);
        let index = IdIndex::from_run(SortedRun::from_sorted(keys, seqs));
        assert!(index.run().is_sorted());
        for (i, id) in ids.iter().enumerate() {
            let found: Vec<u64> = index.candidates(id_key(id)).collect();
            assert!(found.contains(&(i as u64 + 1)), "id {i}: {found:?}");
        }
    }

    #[test]
    fn a_snapshot_written_as_format_1_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ids(3);
        let mut index = IdIndex::default();
        let mut streams = StreamIndex::default();
        for (i, id) in ids.iter().enumerate() {
            index.insert(id_key(id), i as u32 + 1);
            streams.record(
                crate::index::complaint_key("C-1"),
                "eu",
                if i == 0 {
                    plaint_events::EventType::Filed
                } else {
                    plaint_events::EventType::Acknowledged
                },
                i as u32 + 1,
            );
        }
        write(dir.path(), &Capture::of(3, [7; 32], &index, &streams)).unwrap();
        let mut bytes = std::fs::read(path(dir.path())).unwrap();
        bytes[8..12].copy_from_slice(&FORMAT_64_BIT_IDS.to_le_bytes());
        let body = bytes.len() - 32;
        let hash = *blake3::hash(&bytes[..body]).as_bytes();
        bytes[body..].copy_from_slice(&hash);
        std::fs::write(path(dir.path()), &bytes).unwrap();

        let snapshot = read(dir.path()).unwrap().expect("a snapshot");
        assert_eq!(snapshot.last_seq, 3);
        for (i, id) in ids.iter().enumerate() {
            let found: Vec<u64> = snapshot.ids.candidates(id_key(id)).collect();
            assert_eq!(found, vec![i as u64 + 1]);
        }
    }

    /// The events of the capture test: ids, complaints (some updated many times, so that
    /// their heads sit in the run's parts when the capture is taken) and types.
    fn event(i: u32) -> (Uuid, u128, &'static str, plaint_events::EventType) {
        let complaint = if i.is_multiple_of(4) {
            i / 4
        } else {
            (i * 7919) % (i / 4 + 1)
        };
        let event_type = if i.is_multiple_of(4) {
            plaint_events::EventType::Filed
        } else if i.is_multiple_of(5) {
            plaint_events::EventType::Resolved
        } else {
            plaint_events::EventType::Acknowledged
        };
        let region = ["eu", "us", "apac"][complaint as usize % 3];
        let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, &i.to_le_bytes());
        (
            id,
            crate::index::complaint_key(&format!("C-{complaint}")),
            region,
            event_type,
        )
    }

    fn record(ids: &mut IdIndex, streams: &mut StreamIndex, seq: u32) {
        let (id, complaint, region, event_type) = event(seq - 1);
        ids.insert(id_key(&id), seq);
        streams.record(complaint, region, event_type, seq);
    }

    /// A capture shares the runs' parts; heads changed after it (in place, in parts it
    /// shares) and parts merged after it must not reach it: it still reads the heads it
    /// saw, only the parts written to were copied, and the snapshot written from it is
    /// the same file, byte for byte, as one from an index that never saw the later events.
    #[test]
    fn a_capture_keeps_the_heads_it_saw_while_the_index_changes_them_copy_on_write() {
        let (at, more) = (40_000u32, 200u32);
        let (mut ids, mut streams) = (IdIndex::default(), StreamIndex::default());
        for seq in 1..=at {
            record(&mut ids, &mut streams, seq);
            if seq % 9_000 == 0 {
                ids.merge_all();
                streams.merge_all();
            }
        }
        // Some entries in the runs, some recent.
        assert!(streams.run().len() > 0 && streams.len() > streams.run().len());
        let capture = Capture::of(u64::from(at), [9; 32], &ids, &streams);
        let (mut fresh_ids, mut fresh_streams) = (IdIndex::default(), StreamIndex::default());
        (1..=at).for_each(|seq| record(&mut fresh_ids, &mut fresh_streams, seq));
        let seen: HashMap<u128, StreamHead> = (0..at)
            .map(|i| event(i).1)
            .map(|key| (key, fresh_streams.get(key).unwrap()))
            .collect();

        let mut touched = std::collections::HashSet::new();
        for seq in at + 1..=at + more {
            let key = event(seq - 1).1;
            if streams.run().first(key).is_some() {
                touched.insert(part_of(key));
            }
            record(&mut ids, &mut streams, seq);
        }
        // Only the parts whose heads changed were copied; the others are still shared.
        let shared = (0..PARTS)
            .filter(|&p| std::ptr::eq(streams.run().part(p), capture.stream_run.part(p)))
            .count();
        assert!(
            !touched.is_empty() && touched.len() < PARTS,
            "{}",
            touched.len()
        );
        assert_eq!(shared, PARTS - touched.len());
        ids.merge_all();
        streams.merge_all();
        let mut changed = 0;
        for (&key, &then) in &seen {
            let captured = capture
                .stream_run
                .first(key)
                .or_else(|| {
                    let at = capture
                        .stream_recent
                        .binary_search_by_key(&key, |(k, _)| *k);
                    at.ok().map(|i| capture.stream_recent[i].1)
                })
                .unwrap();
            assert_eq!(captured, then);
            changed += usize::from(streams.get(key).unwrap() != then);
        }
        assert!(changed > 100, "{changed} heads changed after the capture");

        let (dir, fresh_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(dir.path(), &capture).unwrap();
        let fresh = Capture::of(u64::from(at), [9; 32], &fresh_ids, &fresh_streams);
        write(fresh_dir.path(), &fresh).unwrap();
        let bytes = std::fs::read(path(dir.path())).unwrap();
        assert!(bytes == std::fs::read(path(fresh_dir.path())).unwrap());

        let read = read(dir.path()).unwrap().expect("a snapshot");
        assert_eq!(read.streams.len(), seen.len());
        for (&key, &then) in &seen {
            assert_eq!(read.streams.get(key), Some(then));
        }
        for seq in (1..=at).step_by(13) {
            let found: Vec<u64> = read.ids.candidates(id_key(&event(seq - 1).0)).collect();
            assert!(found.contains(&u64::from(seq)));
        }
    }
}
