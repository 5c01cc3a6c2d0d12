//! Counters and histograms the writer keeps, for `/metrics` and benchmarks. Integers only:
//! latencies in microseconds, sizes in events.

use std::sync::atomic::{AtomicU64, Ordering};

/// A fixed-bucket histogram (cumulative counts are computed when read).
pub struct Histogram {
    bounds: &'static [u64],
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// `(upper bound, cumulative count)` per bucket (`None` = +Inf), the sum and the count.
    pub fn snapshot(&self) -> (Vec<(Option<u64>, u64)>, u64, u64) {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            buckets.push((self.bounds.get(i).copied(), cumulative));
        }
        (buckets, self.sum.load(Ordering::Relaxed), self.count.load(Ordering::Relaxed))
    }
}

/// Microsecond buckets from 50 us to 1 s.
pub const LATENCY_BUCKETS_US: &[u64] =
    &[50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];
/// Events per group commit.
pub const BATCH_BUCKETS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 8192];

pub struct Metrics {
    pub appended: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub commits: AtomicU64,
    pub fsync_us: Histogram,
    pub batch_events: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            appended: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            fsync_us: Histogram::new(LATENCY_BUCKETS_US),
            batch_events: Histogram::new(BATCH_BUCKETS),
        }
    }
}
