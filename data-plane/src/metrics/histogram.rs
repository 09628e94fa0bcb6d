//! A latency histogram updated with atomics only. prometheus-client's own
//! `Histogram` takes a mutex on every observation, and the request path
//! observes three per request into histograms every request to the same
//! model group and deployment shares: under load, a convoy on one lock.
//! Here an observation is two relaxed `fetch_add`s and a bucket search; the
//! exposition is the same as prometheus-client's (a test holds it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A histogram of durations with fixed bucket bounds, in seconds. Clones
/// share the counts.
#[derive(Debug, Clone)]
pub struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds in seconds, ascending; the last bucket (`+Inf`) is past
    /// them.
    bounds: Box<[f64]>,
    /// Observations per bucket (not cumulative), one more than `bounds`.
    counts: Box<[AtomicU64]>,
    /// The sum, in nanoseconds: integer so that adding is one `fetch_add`,
    /// not a compare-and-swap loop on an `f64`'s bits. It wraps after 584
    /// years of summed time.
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// A histogram with these upper bounds (in seconds; sorted here).
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let mut bounds: Vec<f64> = bounds.into_iter().filter(|b| !b.is_nan()).collect();
        bounds.sort_by(f64::total_cmp);
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            inner: Arc::new(Inner {
                bounds: bounds.into_boxed_slice(),
                counts,
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Counts one observation of `took`.
    pub fn observe(&self, took: Duration) {
        let inner = &*self.inner;
        let seconds = took.as_secs_f64();
        // The first bucket whose bound is at least `seconds` (`le`).
        let bucket = inner.bounds.partition_point(|&b| b < seconds);
        inner.counts[bucket].fetch_add(1, Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        inner.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// Observations so far.
    #[cfg(test)]
    fn count(&self) -> u64 {
        self.inner.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// The sum of the observations, in seconds.
    pub fn sum(&self) -> f64 {
        Duration::from_nanos(self.inner.sum_nanos.load(Relaxed)).as_secs_f64()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        // Read bucket by bucket while others observe: the count is the sum
        // of what was read, so the buckets always add up to it.
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(inner.counts.iter().map(|c| c.load(Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::exponential_buckets;
    use prometheus_client::registry::{Registry, Unit};

    fn exposition(register: impl FnOnce(&mut Registry)) -> String {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn the_exposition_is_prometheus_clients() {
        let bounds = || exponential_buckets(0.005, 2.0, 16);
        let ours = Histogram::new(bounds());
        let theirs = prometheus_client::metrics::histogram::Histogram::new(bounds());
        // Below the first bound, on a bound, between, past the last.
        for ms in [1, 5, 6, 10, 300, 2_000, 500_000, 0, 5] {
            ours.observe(Duration::from_millis(ms));
            theirs.observe(ms as f64 / 1000.0);
        }
        let ours =
            exposition(|r| r.register_with_unit("latency", "Latency", Unit::Seconds, ours.clone()));
        let theirs = exposition(|r| {
            r.register_with_unit("latency", "Latency", Unit::Seconds, theirs.clone())
        });
        assert_eq!(ours, theirs);
        assert!(ours.contains("latency_seconds_count 9"), "{ours}");
        assert!(
            ours.contains(r#"latency_seconds_bucket{le="0.005"} 4"#),
            "{ours}"
        );
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let histogram = Histogram::new([0.001, 0.01]);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let histogram = histogram.clone();
                s.spawn(move || {
                    for i in 0..10_000u64 {
                        histogram.observe(Duration::from_micros((t * 10_000 + i) % 20_000));
                    }
                });
            }
        });
        assert_eq!(histogram.count(), 40_000);
        // 0..20 ms in µs steps, each value twice: sum = 2 × Σ i µs.
        let expected = 2.0 * (0..20_000u64).sum::<u64>() as f64 / 1e6;
        assert!(
            (histogram.sum() - expected).abs() < 1e-6,
            "{}",
            histogram.sum()
        );
        let below_1ms = histogram.inner.counts[0].load(Relaxed);
        assert_eq!(below_1ms, 2 * 1_001, "0..=1000 µs, twice");
    }
}
