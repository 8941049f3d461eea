//! The cache's metrics: lookups by route and outcome (handles resolved at start-up, so a
//! request bumps one atomic), and the store's size, objects and evictions, read when
//! Prometheus scrapes.

use super::status::CacheStatus;
use super::Cache;
use pingora_prometheus::prometheus::core::{Collector, Desc};
use pingora_prometheus::prometheus::proto::MetricFamily;
use pingora_prometheus::prometheus::{self, IntCounter, IntCounterVec, IntGauge, Opts};
use std::sync::OnceLock;

fn requests_vec() -> &'static IntCounterVec {
    static V: OnceLock<IntCounterVec> = OnceLock::new();
    V.get_or_init(|| {
        let v = IntCounterVec::new(
            Opts::new(
                "fulcrum_cache_requests_total",
                "Requests on caching routes, by what the cache did (hit, miss, expired, stale, \
                 revalidated, bypass).",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let _ = prometheus::register(Box::new(v.clone()));
        v
    })
}

/// Per caching route, its counters by [`CacheStatus`].
pub struct CacheCounters {
    routes: Vec<Option<[IntCounter; 6]>>,
}

impl CacheCounters {
    /// Counters for the routes whose labels are given (`None` for routes that do not cache).
    pub fn new(labels: &[Option<String>]) -> Self {
        let v = requests_vec();
        let routes = labels
            .iter()
            .map(|l| {
                l.as_ref().map(|route| {
                    CacheStatus::ALL.map(|s| v.with_label_values(&[route.as_str(), s.as_label()]))
                })
            })
            .collect();
        CacheCounters { routes }
    }

    /// Count one request of route `route`.
    pub fn observe(&self, route: usize, status: CacheStatus) {
        if let Some(Some(c)) = self.routes.get(route) {
            c[status.index()].inc();
        }
    }
}

/// The store's gauges, read from the eviction manager at scrape time.
struct UsageCollector {
    cache: &'static Cache,
    size: IntGauge,
    objects: IntGauge,
    evictions: IntCounter,
    descs: Vec<Desc>,
}

impl Collector for UsageCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let (objects, bytes, evicted) = self.cache.usage();
        self.size.set(bytes as i64);
        self.objects.set(objects as i64);
        self.evictions.reset();
        self.evictions.inc_by(evicted as u64);
        [
            self.size.collect(),
            self.objects.collect(),
            self.evictions.collect(),
        ]
        .concat()
    }
}

/// Register the store's gauges (`fulcrum_cache_size_bytes`, `fulcrum_cache_objects`,
/// `fulcrum_cache_evictions_total`); once per process.
pub fn register_usage(cache: &'static Cache) {
    let size = IntGauge::new(
        "fulcrum_cache_size_bytes",
        "Bytes held by the response cache (bodies, heads and bookkeeping).",
    )
    .expect("valid metric");
    let objects = IntGauge::new("fulcrum_cache_objects", "Responses held by the cache.")
        .expect("valid metric");
    let evictions = IntCounter::new(
        "fulcrum_cache_evictions_total",
        "Responses evicted to keep the cache within cache.max_size.",
    )
    .expect("valid metric");
    let descs = [size.desc(), objects.desc(), evictions.desc()]
        .concat()
        .into_iter()
        .cloned()
        .collect();
    let collector = UsageCollector {
        cache,
        size,
        objects,
        evictions,
        descs,
    };
    let _ = prometheus::register(Box::new(collector));
}
