//! The log's in-memory indexes alone at 10 million events: heap bytes, merge time and the
//! extra bytes a merge holds, lookup and append rate, and what a snapshot capture costs.
//!
//! ```text
//! cargo run --release -p plaint-log --example index_memory -- [EVENTS]
//! ```
//!
//! EVENTS (default 10,000,000) events over EVENTS / 5 complaints: every fifth event files
//! a complaint, the others update one of the last 100,000 filed. Ids are indexed as the
//! log does (`insert`, then `merge_if_due` after each event, as a scan does; the live log
//! merges after each batch under its lock, building the same arrays). Bytes are counted by
//! this example's allocator: what the index holds, not the process's resident memory.
//!
//! The index and snapshot modules are compiled into this example from the crate's source
//! (they are private to the crate), so it measures exactly the code the log runs.

// The counting allocator below is the one use of `unsafe`: it forwards to `System`.
#![allow(unsafe_code)]

#[allow(dead_code)]
#[path = "../src/index.rs"]
mod index;
#[allow(dead_code)]
#[path = "../src/snapshot.rs"]
mod snapshot;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use index::{complaint_key, id_key, IdIndex, StreamIndex};
use plaint_events::EventType;
use uuid::Uuid;

/// Bytes currently allocated (as requested), and the most since the last reset.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

fn allocated(n: usize) {
    let live = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` with the same arguments; the counters are
// only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            allocated(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            allocated(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            // Counted as a new block then the old one freed: a moving realloc holds both.
            allocated(new_size);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a new peak from what is allocated now.
fn reset_peak() -> usize {
    let now = live();
    PEAK.store(now, Ordering::Relaxed);
    now
}

fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

fn mb(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The id of event `i`: random-looking, as UUIDv4 or v7 ids are to the fingerprint.
fn event_id(i: u64) -> Uuid {
    let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    Uuid::from_u128(((x ^ (x >> 31)) as u128) << 64 | i as u128)
}

/// The complaint event `i` belongs to, and whether the event files it.
fn complaint_of(i: u64) -> (u64, bool) {
    let filed = i / 5;
    if i.is_multiple_of(5) {
        return (filed, true);
    }
    let back = (i.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) % filed.clamp(1, 100_000);
    (filed - back.min(filed), false)
}

/// Merge calls that merged something: how many, the longest, all together, and the most
/// bytes one held beyond what was allocated before it.
#[derive(Default)]
struct Merges {
    count: usize,
    longest: Duration,
    total: Duration,
    peak_extra: usize,
}

impl Merges {
    fn run(&mut self, merge: impl FnOnce()) {
        let before = reset_peak();
        let started = Instant::now();
        merge();
        let took = started.elapsed();
        // A call with nothing due allocates nothing.
        if peak() > before {
            self.count += 1;
            self.longest = self.longest.max(took);
            self.total += took;
            self.peak_extra = self.peak_extra.max(peak() - before);
        }
    }

    fn report(&self, what: &str) {
        println!(
            "  {what} merges: {} calls, longest {:.1} ms, all {:.2} s, most extra bytes in one {}",
            self.count,
            self.longest.as_secs_f64() * 1e3,
            self.total.as_secs_f64(),
            mb(self.peak_extra),
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(10_000_000), |n| n.parse())?;
    println!("{events} events, {} complaints", events / 5);

    let base = live();
    let mut ids = IdIndex::default();
    let mut merges = Merges::default();
    let started = Instant::now();
    for i in 0..events {
        ids.insert(id_key(&event_id(i)), i as u32 + 1);
        merges.run(|| ids.merge_if_due());
    }
    let took = started.elapsed();
    println!(
        "ids: {} held ({:.2} bytes per event), {:.2} M inserts/s with merges",
        mb(live() - base),
        (live() - base) as f64 / events as f64,
        events as f64 / took.as_secs_f64() / 1e6,
    );
    merges.report("id");
    // Best of three passes: the figure least disturbed by other processes.
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let mut found = 0u64;
        for i in (0..events).step_by(3) {
            found += ids.candidates(id_key(&event_id(i))).count() as u64;
        }
        best = best.min(started.elapsed());
        assert!(found >= events / 3);
    }
    println!(
        "  lookups: {:.0} ns each (best of three passes over a third of the ids)",
        best.as_secs_f64() * 1e9 / (events / 3) as f64,
    );

    let base = live();
    let mut streams = StreamIndex::default();
    let mut merges = Merges::default();
    let record = |streams: &mut StreamIndex, merges: &mut Merges, i: u64| {
        let (complaint, filed) = complaint_of(i);
        let key = complaint_key(&format!("C-{complaint:09}"));
        let event_type = if filed {
            EventType::Filed
        } else {
            EventType::Acknowledged
        };
        streams.record(key, "eu-west", event_type, i as u32 + 1);
        merges.run(|| streams.merge_if_due());
    };
    let started = Instant::now();
    for i in 0..events {
        record(&mut streams, &mut merges, i);
    }
    let took = started.elapsed();
    println!(
        "streams: {} held ({:.2} bytes per complaint with 4 of back-pointer per event), {:.2} M records/s with merges",
        mb(live() - base),
        (live() - base) as f64 / (events / 5) as f64,
        events as f64 / took.as_secs_f64() / 1e6,
    );
    merges.report("stream");
    let keys: Vec<u128> = (0..events / 5)
        .step_by(7)
        .map(|c| complaint_key(&format!("C-{c:09}")))
        .collect();
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        for &key in &keys {
            assert!(streams.get(key).is_some());
        }
        best = best.min(started.elapsed());
    }
    println!(
        "  head lookups: {:.0} ns each (best of three passes over a seventh of the complaints)",
        best.as_secs_f64() * 1e9 / keys.len() as f64
    );
    drop(keys);

    let before = live();
    let started = Instant::now();
    let capture = snapshot::Capture::of(events, [0; 32], &ids, &streams);
    println!(
        "capture: {:.1} ms, {} copied",
        started.elapsed().as_secs_f64() * 1e3,
        mb(live() - before)
    );
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    snapshot::write(dir.path(), &capture)?;
    println!(
        "  snapshot written in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // As a log opens: what the indexes read from the snapshot hold, and the most held
    // while reading it.
    let before = reset_peak();
    let started = Instant::now();
    let read = snapshot::read(dir.path())?.ok_or("the snapshot just written")?;
    println!(
        "  read back in {:.2} s: {} held, {} at the most while reading",
        started.elapsed().as_secs_f64(),
        mb(live() - before),
        mb(peak() - before),
    );
    drop(read);
    // What the writer allocates while a capture is alive (as while the snapshot thread
    // writes): 200,000 more events, ids then streams.
    let before = live();
    let mut merges = Merges::default();
    for i in events..events + 200_000 {
        ids.insert(id_key(&event_id(i)), i as u32 + 1);
        merges.run(|| ids.merge_if_due());
    }
    let after_ids = live();
    for i in events..events + 200_000 {
        record(&mut streams, &mut merges, i);
    }
    let held = live();
    drop(capture);
    println!(
        "  200,000 events recorded while it is held: ids {} more, streams {} more; dropping it frees {}",
        mb(after_ids - before),
        mb(held - after_ids),
        mb(held - live()),
    );
    Ok(())
}
