//! [`JournalStats`]: what the journal has done since it opened, as counters any metrics
//! exporter can read (`GET /metrics` renders them in the Prometheus text format).
//!
//! Invariants: only atomics (relaxed: each value is a monotone count or a bucket of one), no
//! lock and no allocation on the append path; the flusher updates them once per batch write
//! and once per fsync, the sealer once per sealed segment. Histograms are fixed-bucket, with
//! cumulative counts computed when read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the fsync latency buckets.
pub const FSYNC_BUCKETS_S: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Upper bounds (records) of the group-commit batch size buckets.
pub const BATCH_BUCKETS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0,
];

/// A fixed-bucket histogram of atomics.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    /// Per bucket (not cumulative); the last slot counts values above every bound.
    counts: [AtomicU64; N],
    over: AtomicU64,
    /// Sum of observed values, in millionths.
    sum_micros: AtomicU64,
}

/// A histogram as read: `(upper bound, cumulative count)` per bucket, the sum and the count.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(le, cumulative count)`, ending with `(+Inf, count)`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observed values.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl<const N: usize> Histogram<N> {
    const fn new(bounds: &'static [f64; N]) -> Histogram<N> {
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; N],
            over: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        let slot = self.bounds.iter().position(|b| value <= *b);
        match slot.and_then(|i| self.counts.get(i)) {
            Some(count) => count.fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    /// The buckets, cumulative, as Prometheus wants them.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(N + 1);
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            total += count.load(Ordering::Relaxed);
            buckets.push((*bound, total));
        }
        total += self.over.load(Ordering::Relaxed);
        buckets.push((f64::INFINITY, total));
        HistogramSnapshot {
            buckets,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: total,
        }
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct JournalStats {
    records: AtomicU64,
    bytes: AtomicU64,
    sealed: AtomicU64,
    fsync: Histogram<12>,
    batch: Histogram<13>,
}

impl Default for JournalStats {
    fn default() -> Self {
        JournalStats {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            sealed: AtomicU64::new(0),
            fsync: Histogram::new(&FSYNC_BUCKETS_S),
            batch: Histogram::new(&BATCH_BUCKETS),
        }
    }
}

impl JournalStats {
    /// One batch of `records` records, `bytes` bytes of frames, written.
    pub(crate) fn batch_written(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.batch.observe(records as f64);
    }

    /// One fsync of the active segment took `took`.
    pub(crate) fn fsynced(&self, took: Duration) {
        self.fsync.observe(took.as_secs_f64());
    }

    /// One segment sealed.
    pub(crate) fn segment_sealed(&self) {
        self.sealed.fetch_add(1, Ordering::Relaxed);
    }

    /// Records written since open.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Bytes of frames written since open.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Segments sealed since open.
    pub fn segments_sealed(&self) -> u64 {
        self.sealed.load(Ordering::Relaxed)
    }

    /// fsync latency of the active segment (seconds).
    pub fn fsync_seconds(&self) -> HistogramSnapshot {
        self.fsync.snapshot()
    }

    /// Records per batch write (group commit).
    pub fn batch_records(&self) -> HistogramSnapshot {
        self.batch.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_count_everything() {
        let stats = JournalStats::default();
        for n in [1, 3, 3, 100_000] {
            stats.batch_written(n, n * 10);
        }
        stats.fsynced(Duration::from_micros(200));
        stats.fsynced(Duration::from_secs(2));
        let batch = stats.batch_records();
        assert_eq!(batch.count, 4);
        assert_eq!(batch.buckets.first(), Some(&(1.0, 1)));
        assert_eq!(batch.buckets.get(2), Some(&(4.0, 3)));
        assert_eq!(batch.buckets.last(), Some(&(f64::INFINITY, 4)));
        assert_eq!(stats.records(), 100_007);
        assert_eq!(stats.bytes(), 1_000_070);
        let fsync = stats.fsync_seconds();
        assert_eq!(fsync.buckets.get(1), Some(&(0.000_25, 1)));
        assert_eq!(fsync.count, 2);
        assert!((fsync.sum - 2.0002).abs() < 1e-9);
    }
}
