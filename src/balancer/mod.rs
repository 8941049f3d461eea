//! Upstream groups at run time: pingora-load-balancing selectors plus fulcrum's own.
//!
//! Each group owns one Pingora [`HealthRegistry`] (health is per backend, shared by every
//! selector of the group) and one or two selectors built from the same static backend list:
//! the group's algorithm, and for `consistent` groups the fallback used when a request has no
//! hash key. Selection always goes through Pingora's [`LoadBalancer::select_with`], so health
//! and "not this one again" filtering are the same for every algorithm.

pub mod smooth;

use crate::config::model::{self, Algorithm};
use futures::FutureExt;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::selection::consistent::KetamaHashing;
use pingora_load_balancing::selection::{BackendIter, BackendSelection, Random, RoundRobin};
use pingora_load_balancing::{Backend, Backends, HealthRegistry, LoadBalancer};
use smooth::SmoothWeighted;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

/// Backend positions in config order, handed to fulcrum's selectors on every rebuild (Pingora
/// only gives a selector an address-sorted set).
#[derive(Debug, Default)]
pub struct ConfigOrder {
    position: HashMap<SocketAddr, usize>,
}

impl ConfigOrder {
    /// The config index of a backend, if it belongs to the group.
    pub fn index_of(&self, backend: &Backend) -> Option<usize> {
        backend
            .addr
            .as_inet()
            .and_then(|a| self.position.get(a).copied())
    }

    /// The backends sorted by config position (unknown ones last, by address).
    pub fn sorted(&self, backends: &BTreeSet<Backend>) -> Vec<Backend> {
        let mut v: Vec<Backend> = backends.iter().cloned().collect();
        v.sort_by_key(|b| self.index_of(b).unwrap_or(usize::MAX));
        v
    }
}

/// One selector over the group's backends.
enum Selector {
    RoundRobin(LoadBalancer<RoundRobin>),
    Random(LoadBalancer<Random>),
    Consistent(LoadBalancer<KetamaHashing>),
    Smooth(LoadBalancer<SmoothWeighted>),
}

fn load_balancer<S>(
    backends: &BTreeSet<Backend>,
    registry: &Arc<HealthRegistry>,
    config: Option<S::Config>,
) -> LoadBalancer<S>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    let view =
        Backends::new_with_health_registry(Static::new(backends.clone()), Arc::clone(registry));
    let lb = LoadBalancer::from_backends_with_config(view, config);
    // Static discovery completes at once and cannot fail; update() only fills the selector.
    if let Some(Err(e)) = lb.update().now_or_never() {
        log::error!("building a selector failed: {e}");
    }
    lb
}

impl Selector {
    fn new(
        algorithm: Algorithm,
        backends: &BTreeSet<Backend>,
        registry: &Arc<HealthRegistry>,
        order: &Arc<ConfigOrder>,
    ) -> Self {
        match algorithm {
            Algorithm::RoundRobin => Selector::RoundRobin(load_balancer(backends, registry, None)),
            Algorithm::Random => Selector::Random(load_balancer(backends, registry, None)),
            Algorithm::Consistent => Selector::Consistent(load_balancer(backends, registry, None)),
            Algorithm::WeightedRoundRobin => {
                Selector::Smooth(load_balancer(backends, registry, Some(Arc::clone(order))))
            }
        }
    }

    fn select_with<F>(&self, key: &[u8], max_iterations: usize, accept: F) -> Option<Backend>
    where
        F: Fn(&Backend, bool) -> bool,
    {
        match self {
            Selector::RoundRobin(lb) => lb.select_with(key, max_iterations, accept),
            Selector::Random(lb) => lb.select_with(key, max_iterations, accept),
            Selector::Consistent(lb) => lb.select_with(key, max_iterations, accept),
            Selector::Smooth(lb) => lb.select_with(key, max_iterations, accept),
        }
    }

    fn is_ready(&self, backend: &Backend) -> bool {
        match self {
            Selector::RoundRobin(lb) => lb.backends().ready(backend),
            Selector::Random(lb) => lb.backends().ready(backend),
            Selector::Consistent(lb) => lb.backends().ready(backend),
            Selector::Smooth(lb) => lb.backends().ready(backend),
        }
    }
}

/// An upstream group ready to pick backends.
pub struct UpstreamGroup {
    /// The validated config of the group.
    pub config: model::Upstream,
    /// Health of the group's backends, shared by its selectors.
    pub registry: Arc<HealthRegistry>,
    /// Backends as Pingora sees them, in config order.
    backends: Vec<Backend>,
    order: Arc<ConfigOrder>,
    primary: Selector,
    /// For `consistent` groups: the selector used when a request has no hash key.
    fallback: Option<Selector>,
    max_iterations: usize,
}

impl UpstreamGroup {
    /// Build the group's selectors from its validated config.
    pub fn new(config: model::Upstream) -> Self {
        let backends: Vec<Backend> = config
            .backends
            .iter()
            .map(|b| Backend {
                addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(b.addr),
                weight: b.weight as usize,
                ext: Default::default(),
            })
            .collect();
        let order = Arc::new(ConfigOrder {
            position: config
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| (b.addr, i))
                .collect(),
        });
        let set: BTreeSet<Backend> = backends.iter().cloned().collect();
        let registry = Arc::new(HealthRegistry::new());
        let primary = Selector::new(config.algorithm, &set, &registry, &order);
        let fallback = (config.algorithm == Algorithm::Consistent)
            .then(|| Selector::new(config.hash_fallback, &set, &registry, &order));
        // Enough steps for any selector to reach every backend, including random ones.
        let max_iterations = 64 + 8 * backends.len();
        UpstreamGroup {
            config,
            registry,
            backends,
            order,
            primary,
            fallback,
            max_iterations,
        }
    }

    /// Number of backends.
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// True when the group has no backends (never, for a validated config).
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// The backend at a config index.
    pub fn backend(&self, index: usize) -> Option<&model::Backend> {
        self.config.backends.get(index)
    }

    /// Pick a backend that is healthy and not excluded; `key` is the hash key for `consistent`
    /// groups (`None`: the request has none, use the fallback). Returns a config index.
    pub fn select(&self, key: Option<&[u8]>, excluded: impl Fn(usize) -> bool) -> Option<usize> {
        let (selector, key) = match (&self.fallback, key) {
            (Some(fallback), None) => (fallback, &[][..]),
            (_, key) => (&self.primary, key.unwrap_or_default()),
        };
        let accept = |b: &Backend, healthy: bool| {
            healthy && self.order.index_of(b).is_some_and(|i| !excluded(i))
        };
        if let Some(b) = selector.select_with(key, self.max_iterations, accept) {
            return self.order.index_of(&b);
        }
        // The selector gave up (a random walk can miss a lone healthy backend): scan in order.
        self.backends
            .iter()
            .enumerate()
            .find(|(i, b)| !excluded(*i) && self.primary.is_ready(b))
            .map(|(i, _)| i)
    }
}
