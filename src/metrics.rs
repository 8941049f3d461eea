//! Prometheus metrics, served as text by the admin listener's `/metrics`.
//!
//! Per-request metrics (requests by route, upstream, backend and status class; duration by
//! route) are resolved to metric handles once at start-up, so a request only bumps atomics.
//! Everything fulcrum already counts per backend (in flight, health, ejections, retries,
//! connection reuse) is read from the groups' tables when Prometheus scrapes, by a collector,
//! at no cost per request. Metrics live in the `prometheus` crate's default registry, the one
//! `pingora-prometheus` re-exports and gathers.

use crate::balancer::UpstreamGroup;
use crate::config::model::Config;
use arc_swap::ArcSwap;
use pingora_prometheus::prometheus::core::{Collector, Desc};
use pingora_prometheus::prometheus::proto::MetricFamily;
use pingora_prometheus::prometheus::{
    self, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::{Mutex, OnceLock};

/// Status classes, as labels; index 0 is for requests answered without a status.
const CLASSES: [&str; 6] = ["error", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Label value for requests that had no route or no backend.
const NONE: &str = "none";

/// The label index of a status.
fn class(status: u16) -> usize {
    match status {
        100..=599 => (status / 100) as usize,
        _ => 0,
    }
}

fn requests_vec() -> &'static IntCounterVec {
    static V: OnceLock<IntCounterVec> = OnceLock::new();
    V.get_or_init(|| {
        let v = IntCounterVec::new(
            Opts::new(
                "fulcrum_requests_total",
                "Requests answered, by route, upstream, backend and status class.",
            ),
            &["route", "upstream", "backend", "class"],
        )
        .expect("valid metric");
        let _ = prometheus::register(Box::new(v.clone()));
        v
    })
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

fn duration_vec() -> &'static HistogramVec {
    static V: OnceLock<HistogramVec> = OnceLock::new();
    V.get_or_init(|| {
        let v = HistogramVec::new(
            HistogramOpts::new(
                "fulcrum_request_duration_seconds",
                "Time from reading a request's head to its end, by route.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let _ = prometheus::register(Box::new(v.clone()));
        v
    })
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

/// The request counters of one backend on one route.
type Handles = [IntCounter; 6];

/// One route's per-backend request counters, by slot of the route's group: a slot's entry
/// names the address it counts for, so a slot that went to another backend is noticed.
type BySlot = Vec<Option<(SocketAddr, Arc<Handles>)>>;

/// Per-request metric handles: resolved once per route and backend, so a request only loads a
/// pointer and bumps an atomic.
pub struct RequestMetrics {
    /// `[route + 1]`, one entry per upstream group the route sends to (a split has several);
    /// index 0 is "no route".
    routes: Vec<Vec<(usize, RouteMetrics)>>,
    /// `[route + 1]`.
    durations: Vec<Histogram>,
}

/// The request counters of one route.
struct RouteMetrics {
    label: String,
    upstream: String,
    /// Requests that reached no backend.
    none: Handles,
    by_slot: ArcSwap<BySlot>,
    /// Serializes writers of `by_slot`.
    writing: Mutex<()>,
}

fn handles(route: &str, upstream: &str, backend: &str) -> Handles {
    CLASSES.map(|c| requests_vec().with_label_values(&[route, upstream, backend, c]))
}

impl RouteMetrics {
    fn new(label: &str, upstream: &str) -> Self {
        RouteMetrics {
            label: label.to_string(),
            upstream: upstream.to_string(),
            none: handles(label, upstream, NONE),
            by_slot: ArcSwap::from_pointee(Vec::new()),
            writing: Mutex::new(()),
        }
    }

    fn count(&self, backend: Option<(usize, SocketAddr)>, class: usize) {
        let Some((slot, addr)) = backend else {
            self.none[class].inc();
            return;
        };
        if let Some(Some((a, h))) = self.by_slot.load().get(slot) {
            if *a == addr {
                h[class].inc();
                return;
            }
        }
        self.resolve(slot, addr)[class].inc();
    }

    /// The slow path: the first request of a backend on this route.
    fn resolve(&self, slot: usize, addr: SocketAddr) -> Arc<Handles> {
        let _one_writer = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.by_slot.load_full();
        if let Some(Some((a, h))) = current.get(slot) {
            if *a == addr {
                return h.clone();
            }
            // The slot went to another backend: the old one's series go with it.
            let old = a.to_string();
            for c in CLASSES {
                let _ = requests_vec().remove_label_values(&[&self.label, &self.upstream, &old, c]);
            }
        }
        let h = Arc::new(handles(&self.label, &self.upstream, &addr.to_string()));
        let mut next: BySlot = (*current).clone();
        if next.len() <= slot {
            next.resize(slot + 1, None);
        }
        next[slot] = Some((addr, h.clone()));
        self.by_slot.store(Arc::new(next));
        h
    }
}

impl RequestMetrics {
    /// Handles for every route of a config.
    pub fn new(config: &Config) -> Self {
        let mut routes = vec![vec![(usize::MAX, RouteMetrics::new(NONE, NONE))]];
        let mut durations = vec![duration_vec().with_label_values(&[NONE])];
        for (i, r) in config.routes.iter().enumerate() {
            let label = route_label(config, i);
            let sides = r
                .upstreams()
                .map(|g| (g, RouteMetrics::new(&label, &config.upstreams[g].name)))
                .collect();
            routes.push(sides);
            durations.push(duration_vec().with_label_values(&[&label]));
        }
        RequestMetrics { routes, durations }
    }

    /// The counters of `route` (`None`: no route) and the group `upstream` that served it.
    fn series(&self, route: Option<usize>, upstream: Option<usize>) -> Option<&RouteMetrics> {
        let sides = self.routes.get(route.map_or(0, |r| r + 1))?;
        let side = sides.iter().find(|(g, _)| Some(*g) == upstream);
        side.or(sides.first()).map(|(_, m)| m)
    }

    /// Count a finished gRPC call of `route`, served by `upstream`, by its gRPC status `code`.
    pub fn observe_grpc(&self, route: usize, upstream: Option<usize>, code: u16) {
        if let Some(m) = self.series(Some(route), upstream) {
            grpc_vec()
                .with_label_values(&[&m.label, &m.upstream, grpc_code_label(code)])
                .inc();
        }
    }

    /// Count a finished request of `route`, served by the group `upstream`; `backend` is the
    /// slot and address of the backend it reached last.
    pub fn observe(
        &self,
        (route, upstream): (Option<usize>, Option<usize>),
        backend: Option<(usize, SocketAddr)>,
        status: u16,
        seconds: f64,
    ) {
        if let Some(m) = self.series(route, upstream) {
            m.count(backend, class(status));
        }
        if let Some(h) = self.durations.get(route.map_or(0, |r| r + 1)) {
            h.observe(seconds);
        }
    }
}

/// Reads the groups' tables at scrape time.
pub struct GroupCollector {
    groups: Vec<Arc<UpstreamGroup>>,
    descs: Vec<Desc>,
    metrics: Mutex<GroupMetrics>,
}

struct GroupMetrics {
    in_flight: IntGaugeVec,
    healthy: IntGaugeVec,
    ejected: IntGaugeVec,
    attempts: IntCounterVec,
    failures: IntCounterVec,
    ejections: IntCounterVec,
    connections: IntCounterVec,
    retries: IntCounterVec,
}

impl GroupMetrics {
    /// Forget every series (each scrape sets those of the current backends).
    fn reset(&self) {
        self.in_flight.reset();
        self.healthy.reset();
        self.ejected.reset();
        self.attempts.reset();
        self.failures.reset();
        self.ejections.reset();
        self.connections.reset();
        self.retries.reset();
    }

    fn collectors(&self) -> [&dyn Collector; 8] {
        [
            &self.in_flight,
            &self.healthy,
            &self.ejected,
            &self.attempts,
            &self.failures,
            &self.ejections,
            &self.connections,
            &self.retries,
        ]
    }
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

/// Set a counter that mirrors one of fulcrum's own monotonic counts.
fn mirror(v: &IntCounterVec, labels: &[&str], value: u64) {
    let c = v.with_label_values(labels);
    c.reset();
    c.inc_by(value);
}

impl GroupCollector {
    /// A collector over these groups' current backends.
    pub fn new(groups: Vec<Arc<UpstreamGroup>>) -> Self {
        let ub = &["upstream", "backend"];
        let m = GroupMetrics {
            in_flight: gauge("fulcrum_backend_in_flight", "Requests in flight.", ub),
            healthy: gauge(
                "fulcrum_backend_healthy",
                "1 when active health checks pass.",
                ub,
            ),
            ejected: gauge(
                "fulcrum_backend_ejected",
                "1 while the circuit breaker is open or half-open.",
                ub,
            ),
            attempts: counter(
                "fulcrum_backend_attempts_total",
                "Attempts sent to the backend.",
                ub,
            ),
            failures: counter("fulcrum_backend_failures_total", "Failed attempts.", ub),
            ejections: counter(
                "fulcrum_backend_ejections_total",
                "Circuit-breaker ejections.",
                ub,
            ),
            connections: counter(
                "fulcrum_backend_connections_total",
                "Upstream connections used, by whether they were reused from the pool.",
                &["upstream", "backend", "reused"],
            ),
            retries: counter(
                "fulcrum_upstream_retries_total",
                "Requests retried on another attempt.",
                &["upstream"],
            ),
        };
        let descs = m
            .collectors()
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        GroupCollector {
            groups,
            descs,
            metrics: Mutex::new(m),
        }
    }
}

impl Collector for GroupCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        // Backends that left since the last scrape must not linger.
        m.reset();
        for g in &self.groups {
            let name = &g.config.name;
            let stats = g.stats;
            mirror(&m.retries, &[name], stats.retries());
            for member in g.members().iter() {
                let i = member.slot();
                let Some(b) = stats.get(i) else {
                    continue;
                };
                let addr = member.backend.addr.to_string();
                let l = [name.as_str(), addr.as_str()];
                m.in_flight
                    .with_label_values(&l)
                    .set(stats.in_flight(i) as i64);
                m.healthy.with_label_values(&l).set(b.is_healthy() as i64);
                m.ejected.with_label_values(&l).set(b.is_ejected() as i64);
                mirror(&m.attempts, &l, stats.requests(i));
                mirror(&m.failures, &l, b.failures());
                mirror(&m.ejections, &l, b.ejections());
                let (new, reused) = b.connections();
                mirror(&m.connections, &[name, &addr, "false"], new);
                mirror(&m.connections, &[name, &addr, "true"], reused);
            }
        }
        m.collectors().iter().flat_map(|c| c.collect()).collect()
    }
}

/// Register the collector for these groups in the default registry, in place of the one a
/// previous call registered: `/metrics` reports the groups of the latest proxy state.
pub fn register_groups(groups: Vec<Arc<UpstreamGroup>>) {
    register_groups_in(prometheus::default_registry(), groups);
}

/// [`register_groups`] into `registry`.
fn register_groups_in(registry: &prometheus::Registry, groups: Vec<Arc<UpstreamGroup>>) {
    // Replacing is unregister-then-register: one at a time, or two could both unregister and
    // then race to register.
    static REPLACING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = REPLACING.lock().unwrap_or_else(|e| e.into_inner());
    // A registry knows a collector by its descriptions, which every `GroupCollector` shares:
    // an empty one stands for the one registered before.
    let _ = registry.unregister(Box::new(GroupCollector::new(Vec::new())));
    let _ = registry.register(Box::new(GroupCollector::new(groups)));
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
    use prometheus::Encoder;

    fn text(registry: &prometheus::Registry) -> String {
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut buf)
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn groups(name: &str) -> Vec<Arc<UpstreamGroup>> {
        let mut u = crate::balancer::test_upstream(crate::config::model::Algorithm::Random, &[1]);
        u.name = name.to_string();
        vec![Arc::new(UpstreamGroup::new(u))]
    }

    #[test]
    fn grpc_codes_are_labelled_by_their_number() {
        assert_eq!(grpc_code_label(0), "0");
        assert_eq!(grpc_code_label(14), "14");
        assert_eq!(grpc_code_label(16), "16");
        assert_eq!(grpc_code_label(17), "other");
    }

    #[test]
    fn registering_again_replaces_the_previous_groups() {
        let registry = prometheus::Registry::new();
        register_groups_in(&registry, groups("first"));
        assert!(text(&registry).contains("upstream=\"first\""));
        register_groups_in(&registry, groups("second"));
        let t = text(&registry);
        assert!(t.contains("upstream=\"second\""), "{t}");
        assert!(!t.contains("upstream=\"first\""), "{t}");
    }
}
