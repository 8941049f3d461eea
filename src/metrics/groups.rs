//! Per-backend metrics read from the upstream groups' tables when Prometheus scrapes (in
//! flight, health, ejections, attempts, failures, connection reuse, retries): no cost per
//! request.

use crate::balancer::UpstreamGroup;
use pingora_prometheus::prometheus::core::{Collector, Desc};
use pingora_prometheus::prometheus::proto::MetricFamily;
use pingora_prometheus::prometheus::{self, IntCounterVec, IntGaugeVec, Opts};
use std::sync::{Arc, Mutex};

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
