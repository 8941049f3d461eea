//! Per-request metrics: requests by route and status code, requests by backend and the status
//! the backend answered, duration and body bytes by route, and backend timeouts.
//!
//! Every series a request touches is resolved before the request: per route at start-up, per
//! status code on the first request with that code (see [`super::codes`]), per backend on the
//! first request it serves. A request then only indexes arrays and bumps atomics.

use super::codes::StatusCounters;
use super::{counter_vec, histogram_vec};
use crate::config::model::Config;
use arc_swap::ArcSwap;
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_prometheus::prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

/// Buckets of `fulcrum_request_duration_seconds`.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn requests_vec() -> &'static IntCounterVec {
    static V: OnceLock<IntCounterVec> = OnceLock::new();
    V.get_or_init(|| {
        counter_vec(
            "fulcrum_requests_total",
            "Requests that matched a route, by route and the status code sent to the client \
             (499: the client closed the connection before the response was complete).",
            &["route", "code"],
        )
    })
}

fn unrouted_vec() -> &'static IntCounterVec {
    static V: OnceLock<IntCounterVec> = OnceLock::new();
    V.get_or_init(|| {
        counter_vec(
            "fulcrum_unrouted_requests_total",
            "Requests fulcrum answered itself before any route matched (404 no route, 400 bad \
             request, 431 head too large, 408 head timeout, 308 HTTPS redirect, ...), by code.",
            &["code"],
        )
    })
}

fn upstream_vec() -> &'static IntCounterVec {
    static V: OnceLock<IntCounterVec> = OnceLock::new();
    V.get_or_init(|| {
        counter_vec(
            "fulcrum_upstream_requests_total",
            "Requests a backend answered, by upstream, backend and the status code of its \
             response (502: it broke the response after its head).",
            &["upstream", "backend", "code"],
        )
    })
}

fn duration_vec() -> &'static HistogramVec {
    static V: OnceLock<HistogramVec> = OnceLock::new();
    V.get_or_init(|| {
        histogram_vec(
            "fulcrum_request_duration_seconds",
            "Time from reading a request's head to its end, by route.",
            &["route"],
            DURATION_BUCKETS.to_vec(),
        )
    })
}

fn request_bytes_vec() -> &'static IntCounterVec {
    static V: OnceLock<IntCounterVec> = OnceLock::new();
    V.get_or_init(|| {
        counter_vec(
            "fulcrum_request_bytes_total",
            "Request body bytes read from clients, by route.",
            &["route"],
        )
    })
}

fn response_bytes_vec() -> &'static IntCounterVec {
    static V: OnceLock<IntCounterVec> = OnceLock::new();
    V.get_or_init(|| {
        counter_vec(
            "fulcrum_response_bytes_total",
            "Response body bytes sent to clients, by route (after compression).",
            &["route"],
        )
    })
}

fn timeouts_vec() -> &'static IntCounterVec {
    static V: OnceLock<IntCounterVec> = OnceLock::new();
    V.get_or_init(|| {
        counter_vec(
            "fulcrum_upstream_timeouts_total",
            "Attempts that timed out, by upstream and kind (connect: TCP or TLS connect; read: \
             waiting for the backend's response; write: sending the request to it).",
            &["upstream", "kind"],
        )
    })
}

/// Requests answered before any route matched: one process-wide set of counters (the head
/// guard answers some before the proxy sees them).
static UNROUTED: LazyLock<StatusCounters> =
    LazyLock::new(|| StatusCounters::new(unrouted_vec(), &[]));

/// Count a request fulcrum answered with `code` before any route matched.
pub fn unrouted(code: u16) {
    UNROUTED.inc(code);
}

/// Kinds of backend timeouts, the `kind` label of `fulcrum_upstream_timeouts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// TCP connect or TLS handshake.
    Connect,
    /// Reading the response.
    Read,
    /// Writing the request.
    Write,
}

impl TimeoutKind {
    const ALL: [TimeoutKind; 3] = [TimeoutKind::Connect, TimeoutKind::Read, TimeoutKind::Write];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            TimeoutKind::Connect => "connect",
            TimeoutKind::Read => "read",
            TimeoutKind::Write => "write",
        }
    }

    /// The kind of timeout `e` is, when it is a backend's timeout.
    pub fn of(e: &Error) -> Option<TimeoutKind> {
        if !matches!(e.esource(), ErrorSource::Upstream) {
            return None;
        }
        match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout => {
                Some(TimeoutKind::Connect)
            }
            ErrorType::ReadTimedout => Some(TimeoutKind::Read),
            ErrorType::WriteTimedout => Some(TimeoutKind::Write),
            _ => None,
        }
    }
}

/// What a finished request is counted as.
#[derive(Debug, Clone, Copy, Default)]
pub struct Finished {
    /// The route it matched.
    pub route: Option<usize>,
    /// The upstream group that served it.
    pub upstream: Option<usize>,
    /// Slot and address of the backend its last attempt reached.
    pub backend: Option<(usize, SocketAddr)>,
    /// The status code counted for the client (see `proxy::report`).
    pub code: u16,
    /// The status the backend answered with, when one did.
    pub upstream_code: Option<u16>,
    /// Seconds from its head to its end.
    pub seconds: f64,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
}

/// One backend's counters: the address they count for, so a slot that went to another
/// backend is noticed.
type BySlot = Vec<Option<(SocketAddr, Arc<StatusCounters>)>>;

/// The series of one route.
struct RouteSeries {
    label: String,
    /// The group named in its gRPC counts when fulcrum answered (no group chosen).
    first_upstream: Option<usize>,
    requests: StatusCounters,
    duration: Histogram,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
}

/// The series of one upstream group.
struct GroupSeries {
    name: String,
    by_slot: ArcSwap<BySlot>,
    /// Serializes writers of `by_slot`.
    writing: Mutex<()>,
    /// By [`TimeoutKind`].
    timeouts: [IntCounter; 3],
}

impl GroupSeries {
    fn count(&self, (slot, addr): (usize, SocketAddr), code: u16) {
        if let Some(Some((a, c))) = self.by_slot.load().get(slot) {
            if *a == addr {
                c.inc(code);
                return;
            }
        }
        self.resolve(slot, addr).inc(code);
    }

    /// The slow path: the first request of a backend in this slot.
    fn resolve(&self, slot: usize, addr: SocketAddr) -> Arc<StatusCounters> {
        let _one_writer = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.by_slot.load_full();
        if let Some(Some((a, c))) = current.get(slot) {
            if *a == addr {
                return c.clone();
            }
            // The slot went to another backend: the old one's series go with it.
            c.remove();
        }
        let backend = addr.to_string();
        let c = Arc::new(StatusCounters::new(
            upstream_vec(),
            &[self.name.as_str(), backend.as_str()],
        ));
        let mut next: BySlot = (*current).clone();
        if next.len() <= slot {
            next.resize(slot + 1, None);
        }
        next[slot] = Some((addr, c.clone()));
        self.by_slot.store(Arc::new(next));
        c
    }
}

/// Per-request metric handles, built once per config.
pub struct RequestMetrics {
    /// `[route]`.
    routes: Vec<RouteSeries>,
    /// `[group]`.
    groups: Vec<GroupSeries>,
}

impl RequestMetrics {
    /// Handles for every route and group of a config.
    pub fn new(config: &Config) -> Self {
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let label = super::route_label(config, i);
                let l = [label.as_str()];
                RouteSeries {
                    first_upstream: r.upstreams().next(),
                    requests: StatusCounters::new(requests_vec(), &l),
                    duration: duration_vec().with_label_values(&l),
                    bytes_in: request_bytes_vec().with_label_values(&l),
                    bytes_out: response_bytes_vec().with_label_values(&l),
                    label,
                }
            })
            .collect();
        let groups = config
            .upstreams
            .iter()
            .map(|u| GroupSeries {
                name: u.name.clone(),
                by_slot: ArcSwap::from_pointee(Vec::new()),
                writing: Mutex::new(()),
                timeouts: TimeoutKind::ALL
                    .map(|k| timeouts_vec().with_label_values(&[u.name.as_str(), k.label()])),
            })
            .collect();
        let queued = config
            .upstreams
            .iter()
            .filter(|u| u.backend_limit.is_some());
        super::rejections::register(queued.map(|u| u.name.as_str()));
        // The families show (empty) before the first request.
        requests_vec();
        upstream_vec();
        unrouted_vec();
        RequestMetrics { routes, groups }
    }

    /// Count a finished request.
    pub fn observe(&self, f: &Finished) {
        match f.route.and_then(|r| self.routes.get(r)) {
            Some(r) => {
                r.requests.inc(f.code);
                r.duration.observe(f.seconds);
                r.bytes_in.inc_by(f.bytes_in);
                r.bytes_out.inc_by(f.bytes_out);
            }
            None => unrouted(f.code),
        }
        let group = f.upstream.and_then(|g| self.groups.get(g));
        if let (Some(g), Some(b), Some(code)) = (group, f.backend, f.upstream_code) {
            g.count(b, code);
        }
    }

    /// Count an attempt on a backend of `upstream` that ended with `e`, when `e` is a timeout.
    pub fn observe_error(&self, upstream: Option<usize>, e: &Error) {
        let Some(kind) = TimeoutKind::of(e) else {
            return;
        };
        if let Some(g) = upstream.and_then(|g| self.groups.get(g)) {
            g.timeouts[kind as usize].inc();
        }
    }

    /// Count a finished gRPC call of `route`, served by `upstream`, by its gRPC status `code`.
    pub fn observe_grpc(&self, route: usize, upstream: Option<usize>, code: u16) {
        let Some(r) = self.routes.get(route) else {
            return;
        };
        if let Some(g) = upstream
            .or(r.first_upstream)
            .and_then(|g| self.groups.get(g))
        {
            super::grpc_vec()
                .with_label_values(&[
                    r.label.as_str(),
                    g.name.as_str(),
                    super::grpc_code_label(code),
                ])
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_told_apart_and_only_the_backends_count() {
        let up = |t| {
            let mut e = Error::new(t);
            e.esource = ErrorSource::Upstream;
            e
        };
        assert_eq!(
            TimeoutKind::of(&up(ErrorType::ConnectTimedout)),
            Some(TimeoutKind::Connect)
        );
        assert_eq!(
            TimeoutKind::of(&up(ErrorType::TLSHandshakeTimedout)),
            Some(TimeoutKind::Connect)
        );
        assert_eq!(
            TimeoutKind::of(&up(ErrorType::ReadTimedout)),
            Some(TimeoutKind::Read)
        );
        assert_eq!(
            TimeoutKind::of(&up(ErrorType::WriteTimedout)),
            Some(TimeoutKind::Write)
        );
        assert_eq!(TimeoutKind::of(&up(ErrorType::ConnectRefused)), None);
        let mut client = Error::new(ErrorType::ReadTimedout);
        client.esource = ErrorSource::Downstream;
        assert_eq!(TimeoutKind::of(&client), None);
    }
}
