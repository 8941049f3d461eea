//! The health checks' own Prometheus metric: `fulcrum_health_check_duration_seconds{upstream}`,
//! a histogram observed once per check of one backend (passed or failed), in the default
//! registry `/metrics` gathers.

use pingora_prometheus::prometheus::{self, HistogramOpts, HistogramVec};
use std::sync::OnceLock;
use std::time::Duration;

/// Bucket bounds, in seconds: checks on a LAN take about a millisecond, a timed-out one as
/// long as `health_check.timeout` (seconds).
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

fn duration_vec() -> &'static HistogramVec {
    static V: OnceLock<HistogramVec> = OnceLock::new();
    V.get_or_init(|| {
        let v = HistogramVec::new(
            HistogramOpts::new(
                "fulcrum_health_check_duration_seconds",
                "Time one active health check of one backend took, by upstream.",
            )
            .buckets(BUCKETS.to_vec()),
            &["upstream"],
        )
        .expect("valid metric");
        let _ = prometheus::register(Box::new(v.clone()));
        v
    })
}

/// Make the metric appear in `/metrics` for `upstream` (with no observation yet).
pub fn register(upstream: &str) {
    let _ = duration_vec().with_label_values(&[upstream]);
}

/// Observe one check of a backend of `upstream` that took `took`.
pub fn observe(upstream: &str, took: Duration) {
    duration_vec()
        .with_label_values(&[upstream])
        .observe(took.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_are_counted_per_upstream() {
        observe("health-metrics-test", Duration::from_millis(2));
        observe("health-metrics-test", Duration::from_millis(30));
        let h = duration_vec().with_label_values(&["health-metrics-test"]);
        assert_eq!(h.get_sample_count(), 2);
        assert!((h.get_sample_sum() - 0.032).abs() < 1e-9);
    }
}
