//! Compression's metrics, in the default registry beside `crate::metrics`'s:
//! `fulcrum_compression_responses_total{route,encoding}` (responses compressed) and
//! `fulcrum_compression_bytes_total{route,encoding,direction}` (body bytes before, `in`, and
//! after, `out`, compression). Resolved once per route at start-up, so a response only bumps
//! atomics.

use super::negotiate::Encoding;
use pingora_prometheus::prometheus::{self, IntCounter, IntCounterVec, Opts};
use std::sync::OnceLock;

fn responses_vec() -> &'static IntCounterVec {
    static V: OnceLock<IntCounterVec> = OnceLock::new();
    V.get_or_init(|| {
        let v = IntCounterVec::new(
            Opts::new(
                "fulcrum_compression_responses_total",
                "Responses compressed, by route and encoding.",
            ),
            &["route", "encoding"],
        )
        .expect("valid metric");
        let _ = prometheus::register(Box::new(v.clone()));
        v
    })
}

fn bytes_vec() -> &'static IntCounterVec {
    static V: OnceLock<IntCounterVec> = OnceLock::new();
    V.get_or_init(|| {
        let v = IntCounterVec::new(
            Opts::new(
                "fulcrum_compression_bytes_total",
                "Response body bytes of compressed responses, by route, encoding and direction \
                 (in: before compression, out: after).",
            ),
            &["route", "encoding", "direction"],
        )
        .expect("valid metric");
        let _ = prometheus::register(Box::new(v.clone()));
        v
    })
}

/// The counters of one encoding on one route.
#[derive(Clone)]
pub struct Tally {
    /// Responses compressed.
    pub responses: IntCounter,
    /// Body bytes before compression.
    pub bytes_in: IntCounter,
    /// Body bytes after compression.
    pub bytes_out: IntCounter,
}

/// The counters of one route, by encoding (indexed by [`Encoding::index`]).
pub struct RouteTallies([Tally; 3]);

impl RouteTallies {
    /// The counters of the route labelled `route`.
    pub fn new(route: &str) -> Self {
        RouteTallies(Encoding::PREFERENCE.map(|e| {
            let enc = e.token();
            Tally {
                responses: responses_vec().with_label_values(&[route, enc]),
                bytes_in: bytes_vec().with_label_values(&[route, enc, "in"]),
                bytes_out: bytes_vec().with_label_values(&[route, enc, "out"]),
            }
        }))
    }

    /// The counters of `encoding`.
    pub fn of(&self, encoding: Encoding) -> &Tally {
        &self.0[encoding.index()]
    }
}
