//! Client connections per listener: `fulcrum_open_connections{listener}` (open now) and
//! `fulcrum_connections_total{listener}` (accepted). Handles resolved per listener at
//! start-up; a connection bumps two atomics.

use super::{counter_vec, gauge_vec};
use pingora_prometheus::prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use std::sync::OnceLock;

fn open_vec() -> &'static IntGaugeVec {
    static V: OnceLock<IntGaugeVec> = OnceLock::new();
    V.get_or_init(|| {
        gauge_vec(
            "fulcrum_open_connections",
            "Client connections open now, by listener address (TLS handshakes included).",
            &["listener"],
        )
    })
}

fn accepted_vec() -> &'static IntCounterVec {
    static V: OnceLock<IntCounterVec> = OnceLock::new();
    V.get_or_init(|| {
        counter_vec(
            "fulcrum_connections_total",
            "Client connections accepted, by listener address (those refused by \
             limits.max_connections included).",
            &["listener"],
        )
    })
}

/// The connection metrics of one listener.
#[derive(Clone)]
pub struct ListenerMetrics {
    open: IntGauge,
    accepted: IntCounter,
}

/// An open connection, counted in its listener's gauge until dropped.
pub struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl ListenerMetrics {
    /// The metrics of the listener at `addr` (as configured).
    pub fn new(addr: &str) -> Self {
        ListenerMetrics {
            open: open_vec().with_label_values(&[addr]),
            accepted: accepted_vec().with_label_values(&[addr]),
        }
    }

    /// Count an accepted connection.
    pub fn accepted(&self) {
        self.accepted.inc();
    }

    /// Count a connection as open until the returned guard is dropped.
    pub fn open(&self) -> OpenConnection {
        self.open.inc();
        OpenConnection(self.open.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_follows_the_guards() {
        let m = ListenerMetrics::new("192.0.2.1:1");
        m.accepted();
        let a = m.open();
        let b = m.open();
        assert_eq!(m.open.get(), 2);
        drop(a);
        assert_eq!(m.open.get(), 1);
        drop(b);
        assert_eq!(m.open.get(), 0);
        assert_eq!(m.accepted.get(), 1);
    }
}
