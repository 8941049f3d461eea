//! A backend's recent latencies, for `/status`: the last [`LATENCY_WINDOW`] requests, recorded
//! without a lock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Latencies of the most recent requests to a backend, in microseconds, without a lock: a
/// ring of atomic slots and an atomic count of the samples ever recorded.
///
/// A request claims the next slot with one `fetch_add` and stores its sample there. A reader
/// copies the ring slot by slot, so with requests finishing meanwhile a figure may mix a
/// sample with the one that replaced it: each is a real recent latency. A slot claimed but
/// not yet written holds [`UNWRITTEN`] (or the sample it replaces) and is skipped.
#[derive(Debug)]
pub struct LatencyWindow {
    samples: Box<[AtomicU32]>,
    recorded: AtomicU64,
}

/// A slot with no sample yet; recorded latencies are capped one below it (about 71 minutes).
const UNWRITTEN: u32 = u32::MAX;

impl LatencyWindow {
    /// An empty window.
    pub fn new() -> Self {
        LatencyWindow {
            samples: (0..LATENCY_WINDOW)
                .map(|_| AtomicU32::new(UNWRITTEN))
                .collect(),
            recorded: AtomicU64::new(0),
        }
    }

    /// Forget every sample.
    pub fn clear(&self) {
        for s in self.samples.iter() {
            s.store(UNWRITTEN, Relaxed);
        }
    }

    /// Record one request's latency.
    pub fn record(&self, took: Duration) {
        let micros = took.as_micros().min(u128::from(UNWRITTEN - 1)) as u32;
        let slot = self.recorded.fetch_add(1, Relaxed) as usize % LATENCY_WINDOW;
        self.samples[slot].store(micros, Relaxed);
    }

    /// Mean, p50 and p99 over the samples in the window, exact to the microsecond.
    pub fn summary(&self) -> Latency {
        let mut v = self.samples();
        if v.is_empty() {
            return Latency {
                samples: 0,
                mean_ms: 0.0,
                p50_ms: 0.0,
                p99_ms: 0.0,
            };
        }
        v.sort_unstable();
        let mean = v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64;
        Latency {
            samples: v.len(),
            mean_ms: mean / 1000.0,
            p50_ms: f64::from(percentile(&v, 50)) / 1000.0,
            p99_ms: f64::from(percentile(&v, 99)) / 1000.0,
        }
    }

    /// The samples now in the window, in no particular order.
    fn samples(&self) -> Vec<u32> {
        self.samples
            .iter()
            .map(|s| s.load(Relaxed))
            .filter(|&s| s != UNWRITTEN)
            .collect()
    }
}

/// The nearest-rank `p`th percentile of sorted, non-empty `v`: the smallest sample with at
/// least `p`% of the samples at or below it.
fn percentile(v: &[u32], p: usize) -> u32 {
    v[(v.len() * p).div_ceil(100).saturating_sub(1)]
}

/// How many recent requests the latency figures cover.
pub const LATENCY_WINDOW: usize = 512;

/// Mean, median and 99th percentile latency over the recent window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Requests in the window.
    pub samples: usize,
    /// Mean, in milliseconds.
    pub mean_ms: f64,
    /// Median (50th percentile, nearest rank), in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, in milliseconds.
    pub p99_ms: f64,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_window_keeps_the_most_recent_requests() {
        let b = LatencyWindow::new();
        assert_eq!(b.summary().samples, 0);
        for ms in 1..=100u64 {
            b.record(Duration::from_millis(ms));
        }
        let l = b.summary();
        assert_eq!(l.samples, 100);
        assert!((l.mean_ms - 50.5).abs() < 1e-9, "{l:?}");
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p99_ms, 99.0);
        for _ in 0..LATENCY_WINDOW {
            b.record(Duration::from_millis(2));
        }
        assert_eq!(b.summary().p99_ms, 2.0);
        assert_eq!(b.summary().p50_ms, 2.0);
        assert_eq!(b.summary().samples, LATENCY_WINDOW);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        assert_eq!(percentile(&[7], 50), 7);
        assert_eq!(percentile(&[1, 2], 50), 1);
        assert_eq!(percentile(&[1, 2, 3], 50), 2);
        assert_eq!(percentile(&[1, 2, 3, 4], 50), 2);
        assert_eq!(percentile(&[1, 2, 3, 4], 99), 4);
    }

    #[test]
    fn latency_recorded_from_many_threads_fills_the_window_exactly() {
        let b = LatencyWindow::new();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let b = &b;
                s.spawn(move || {
                    for _ in 0..1000 {
                        b.record(Duration::from_micros(1000 * (t + 1)));
                    }
                });
            }
        });
        let l = b.summary();
        assert_eq!(l.samples, LATENCY_WINDOW);
        assert!((1.0..=4.0).contains(&l.mean_ms), "{l:?}");
        assert!([1.0, 2.0, 3.0, 4.0].contains(&l.p99_ms), "{l:?}");
    }
}
