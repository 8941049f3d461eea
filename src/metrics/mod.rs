//! Prometheus metrics, served as text by the admin listener's `/metrics`.
//!
//! Metrics live in the `prometheus` crate's default registry, the one `pingora-prometheus`
//! re-exports and gathers. One module per concern:
//!
//! * [`requests`]: per-request counters (by route and status code, by backend), duration and
//!   bytes; handles resolved ahead, so a request only bumps atomics.
//! * [`groups`]: per-backend tables read at scrape time.
//! * [`rejections`]: requests refused by a limit, queue waits.
//! * [`listeners`]: open and accepted client connections per listener.
//! * [`process`]: the standard `process_*` metrics, read from `/proc/self` at scrape time.
//! * [`info`]: build, config and start-up facts, and TLS certificate expiry.
//! * [`codes`]: counters by status code, created on first use.

pub mod codes;
pub mod groups;
pub mod info;
pub mod listeners;
pub mod process;
pub mod rejections;
pub mod requests;

pub use groups::{register_groups, GroupCollector};
pub use requests::{Finished, RequestMetrics};

use crate::config::model::Config;
use pingora_prometheus::prometheus::{
    self, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
};
use std::sync::OnceLock;

/// A counter family registered in the default registry.
fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    let _ = prometheus::register(Box::new(v.clone()));
    v
}

/// A gauge family registered in the default registry.
fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    let _ = prometheus::register(Box::new(v.clone()));
    v
}

/// A histogram family registered in the default registry.
fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    let v = HistogramVec::new(opts, labels).expect("valid metric");
    let _ = prometheus::register(Box::new(v.clone()));
    v
}

fn grpc_vec() -> &'static IntCounterVec {
    static V: OnceLock<IntCounterVec> = OnceLock::new();
    V.get_or_init(|| {
        let v = IntCounterVec::new(
            Opts::new(
                "fulcrum_grpc_responses_total",
                "gRPC calls answered, by route, upstream and gRPC status code (0 OK ... 16).",
            ),
            &["route", "upstream", "code"],
        )
        .expect("valid metric");
        let _ = prometheus::register(Box::new(v.clone()));
        v
    })
}

fn mirror_vec() -> &'static IntCounterVec {
    static V: OnceLock<IntCounterVec> = OnceLock::new();
    V.get_or_init(|| {
        let v = IntCounterVec::new(
            Opts::new(
                "fulcrum_mirror_requests_total",
                "Mirrored copies of requests, by route, mirror upstream and result \
                 (ok, error, timeout, too_large, dropped).",
            ),
            &["route", "upstream", "result"],
        )
        .expect("valid metric");
        let _ = prometheus::register(Box::new(v.clone()));
        v
    })
}

/// The counter of mirrored copies of `route` sent to the group `upstream` that ended with
/// `result` (see `proxy::mirror::MirrorResult`); resolved once per route at start-up.
pub fn mirror_counter(route: &str, upstream: &str, result: &str) -> IntCounter {
    mirror_vec().with_label_values(&[route, upstream, result])
}

/// The `code` label of a gRPC status: its number, `other` beyond the 17 defined ones.
fn grpc_code_label(code: u16) -> &'static str {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    CODES.get(usize::from(code)).copied().unwrap_or("other")
}

fn discovery_failures_vec() -> &'static IntCounterVec {
    static V: OnceLock<IntCounterVec> = OnceLock::new();
    V.get_or_init(|| {
        let v = IntCounterVec::new(
            Opts::new(
                "fulcrum_discovery_failures_total",
                "Discovery looks that failed (the group kept its last good backends).",
            ),
            &["upstream"],
        )
        .expect("valid metric");
        let _ = prometheus::register(Box::new(v.clone()));
        v
    })
}

fn discovery_backends_vec() -> &'static IntGaugeVec {
    static V: OnceLock<IntGaugeVec> = OnceLock::new();
    V.get_or_init(|| {
        let v = IntGaugeVec::new(
            Opts::new(
                "fulcrum_discovery_backends",
                "Backends of the group after its last successful discovery look.",
            ),
            &["upstream"],
        )
        .expect("valid metric");
        let _ = prometheus::register(Box::new(v.clone()));
        v
    })
}

/// Count a failed discovery look of `upstream`.
pub fn discovery_failed(upstream: &str) {
    discovery_failures_vec()
        .with_label_values(&[upstream])
        .inc();
}

/// Record the backends of `upstream` after a successful discovery look.
pub fn discovery_backends(upstream: &str, n: usize) {
    discovery_backends_vec()
        .with_label_values(&[upstream])
        .set(n as i64);
    // The failure counter shows (at 0) from the first look on.
    discovery_failures_vec().with_label_values(&[upstream]);
}

/// A route's metrics label: `host/path`, or `path` for catch-all routes.
pub fn route_label(config: &Config, route: usize) -> String {
    label_of(&config.routes, route)
}

/// [`route_label`] of `routes[route]`.
pub fn label_of(routes: &[crate::config::model::Route], route: usize) -> String {
    let r = &routes[route];
    if let Some(name) = &r.name {
        return name.clone();
    }
    let where_ = |r: &crate::config::model::Route| match &r.host {
        crate::config::model::HostMatch::Any => r.path.clone(),
        crate::config::model::HostMatch::Exact(h) => format!("{h}{}", r.path),
        crate::config::model::HostMatch::Suffix(s) => format!("*{s}{}", r.path),
    };
    let label = where_(r);
    // Routes told apart only by their `match:` conditions: the index keeps their series apart.
    let shared = routes
        .iter()
        .filter(|o| o.name.is_none() && where_(o) == label)
        .count();
    if shared > 1 {
        format!("{label}#{route}")
    } else {
        label
    }
}

/// The metrics text for `/metrics`.
pub fn render() -> (String, Vec<u8>) {
    use prometheus::Encoder;
    let encoder = prometheus::TextEncoder::new();
    let mut buf = Vec::new();
    let _ = encoder.encode(&prometheus::gather(), &mut buf);
    (encoder.format_type().to_string(), buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_are_labelled_by_their_number() {
        assert_eq!(grpc_code_label(0), "0");
        assert_eq!(grpc_code_label(14), "14");
        assert_eq!(grpc_code_label(16), "16");
        assert_eq!(grpc_code_label(17), "other");
    }
}
