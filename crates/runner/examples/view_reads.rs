//! How long a paged-out row takes to come back: reads rows of a view in random order, as
//! `page_in` does, and prints the latency percentiles. What the projectors' cold caches
//! are sized against.
//!
//! `cargo run --release -p plaint-runner --example view_reads -- LOG_DIR VIEW PREFIX [N]`
//! (LOG_DIR is `data/plaint.sled`; stop `serve` first, a view opens in one process).

use std::time::Instant;

use plaint_projection::RowSource;
use plaint_runner::ViewStore;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, view, prefix, rest @ ..] = args.as_slice() else {
        eprintln!("usage: view_reads LOG_DIR VIEW PREFIX [N]");
        std::process::exit(2);
    };
    let n: usize = rest
        .first()
        .map_or(100_000, |n| n.parse().expect("N is a number"));
    let store = ViewStore::open(dir.as_ref(), view, ViewStore::DEFAULT_CACHE_BYTES)
        .expect("the view opens");
    let mut keys: Vec<Vec<u8>> = store
        .rows_with_prefix(prefix.as_bytes())
        .map(|row| row.expect("rows read").0)
        .collect();
    println!("{} rows under {prefix:?}", keys.len());
    // A fixed shuffle (xorshift), so runs compare.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..keys.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        keys.swap(i, (state % (i as u64 + 1)) as usize);
    }
    keys.truncate(n);
    let mut micros = Vec::with_capacity(keys.len());
    let started = Instant::now();
    let mut bytes = 0;
    for key in &keys {
        let at = Instant::now();
        bytes += store.row(key).expect("a row reads").map_or(0, |v| v.len());
        micros.push(at.elapsed().as_secs_f64() * 1e6);
    }
    let total = started.elapsed().as_secs_f64();
    micros.sort_by(f64::total_cmp);
    let pct = |p: f64| micros[((micros.len() - 1) as f64 * p) as usize];
    println!(
        "{} random reads in {total:.2} s ({:.0}/s), {} bytes; p50 {:.1} µs, p90 {:.1}, p99 {:.1}, max {:.1}",
        keys.len(),
        keys.len() as f64 / total,
        bytes,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}
