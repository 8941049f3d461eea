//! Requests refused by a limit (`fulcrum_rejected_requests_total{reason}`, a fixed set of
//! reasons, every one shown from start-up at 0) and time spent in a backend queue
//! (`fulcrum_queue_wait_seconds{upstream}`).

use super::{counter_vec, histogram_vec};
use pingora_prometheus::prometheus::{HistogramVec, IntCounter};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

/// Why fulcrum refused a request (or a connection) itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Over the route's rate limit (429).
    RateLimited,
    /// Body over `max_body_bytes` (413), declared or streamed.
    BodyTooLarge,
    /// Head over `max_header_bytes` or `max_headers` (431).
    HeaderTooLarge,
    /// Head not received within `header_timeout` (408).
    HeaderTimeout,
    /// Every backend at `max_connections` and the queue full (503).
    QueueFull,
    /// Every backend at `max_connections` and the queue wait ran out (503).
    QueueTimeout,
    /// Connection over `max_connections` of the process (503 on plain HTTP, closed on TLS).
    TooManyConnections,
}

impl Reason {
    /// Every reason, in label order.
    pub const ALL: [Reason; 7] = [
        Reason::RateLimited,
        Reason::BodyTooLarge,
        Reason::HeaderTooLarge,
        Reason::HeaderTimeout,
        Reason::QueueFull,
        Reason::QueueTimeout,
        Reason::TooManyConnections,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::RateLimited => "rate_limited",
            Reason::BodyTooLarge => "body_too_large",
            Reason::HeaderTooLarge => "header_too_large",
            Reason::HeaderTimeout => "header_timeout",
            Reason::QueueFull => "queue_full",
            Reason::QueueTimeout => "queue_timeout",
            Reason::TooManyConnections => "too_many_connections",
        }
    }

    /// The reason fulcrum answers with `status` before a backend is involved, for the statuses
    /// that mean a limit (the others are not rejections).
    pub fn of_status(status: u16) -> Option<Reason> {
        match status {
            429 => Some(Reason::RateLimited),
            413 => Some(Reason::BodyTooLarge),
            431 => Some(Reason::HeaderTooLarge),
            _ => None,
        }
    }
}

static REJECTED: LazyLock<[IntCounter; 7]> = LazyLock::new(|| {
    let v = counter_vec(
        "fulcrum_rejected_requests_total",
        "Requests (and connections) fulcrum refused because of a limit, by reason \
         (rate_limited, body_too_large, header_too_large, header_timeout, queue_full, \
         queue_timeout, too_many_connections).",
        &["reason"],
    );
    Reason::ALL.map(|r| v.with_label_values(&[r.label()]))
});

/// Count one request refused for `reason`.
pub fn rejected(reason: Reason) {
    REJECTED[reason as usize].inc();
}

fn queue_wait_vec() -> &'static HistogramVec {
    static V: OnceLock<HistogramVec> = OnceLock::new();
    V.get_or_init(|| {
        histogram_vec(
            "fulcrum_queue_wait_seconds",
            "Time requests waited in an upstream's queue for a backend under max_connections \
             (those that got one and those whose wait ran out), by upstream.",
            &["upstream"],
            vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )
    })
}

/// Record a request's wait in the queue of `upstream` (only requests that queued: the slow
/// path, so the series is looked up here).
pub fn queue_waited(upstream: &str, waited: Duration) {
    queue_wait_vec()
        .with_label_values(&[upstream])
        .observe(waited.as_secs_f64());
}

/// Show the rejection counters, and the queue histogram of each group in `queued`, at 0.
pub fn register<'a>(queued: impl IntoIterator<Item = &'a str>) {
    LazyLock::force(&REJECTED);
    for upstream in queued {
        queue_wait_vec().with_label_values(&[upstream]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_distinct_and_in_label_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut labels: Vec<_> = Reason::ALL.iter().map(|r| r.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), Reason::ALL.len());
    }

    #[test]
    fn limit_statuses_map_to_their_reason() {
        assert_eq!(Reason::of_status(429), Some(Reason::RateLimited));
        assert_eq!(Reason::of_status(413), Some(Reason::BodyTooLarge));
        assert_eq!(Reason::of_status(431), Some(Reason::HeaderTooLarge));
        assert_eq!(Reason::of_status(404), None);
    }
}
