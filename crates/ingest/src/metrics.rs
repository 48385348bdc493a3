use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use plaint_events::RejectReason;

/// Counters of the ingest loop, cheap to update from the hot path.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    pub appended: AtomicU64,
    pub duplicates: AtomicU64,
    pub batches: AtomicU64,
    pub storage_errors: AtomicU64,
    rejected: [AtomicU64; RejectReason::ALL.len()],
    last_batch_micros: AtomicU64,
    last_batch_size: AtomicU64,
}

/// A consistent-enough copy of the counters, for `plaint status`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct MetricsSnapshot {
    pub appended: u64,
    pub duplicates: u64,
    pub batches: u64,
    pub storage_errors: u64,
    pub rejected: BTreeMap<String, u64>,
    pub last_batch_size: u64,
    pub last_batch_ms: f64,
}

impl IngestMetrics {
    pub fn record_rejection(&self, reason: RejectReason) {
        let i = RejectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_batch(&self, size: usize, elapsed: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.last_batch_size.store(size as u64, Ordering::Relaxed);
        self.last_batch_micros
            .store(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            appended: self.appended.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            storage_errors: self.storage_errors.load(Ordering::Relaxed),
            rejected: RejectReason::ALL
                .iter()
                .zip(&self.rejected)
                .map(|(r, c)| (r.as_str().to_owned(), c.load(Ordering::Relaxed)))
                .filter(|(_, c)| *c > 0)
                .collect(),
            last_batch_size: self.last_batch_size.load(Ordering::Relaxed),
            last_batch_ms: self.last_batch_micros.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}
