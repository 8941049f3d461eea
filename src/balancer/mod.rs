//! Upstream groups at run time: pingora-load-balancing selectors plus fulcrum's own.
//!
//! Each group owns one Pingora [`HealthRegistry`] (health is per backend, shared by every
//! selector of the group), one [`GroupStats`] table of counters, and a selector for its
//! algorithm. Keyed algorithms add a way to turn the request into a choice (a Ketama ring, a
//! sticky cookie) and fall back to a plain selector when the request carries no key. Selection
//! always ends in Pingora's [`LoadBalancer::select_with`], so health and "not this one again"
//! filtering work the same for every algorithm.
//!
//! | algorithm | selector |
//! | --- | --- |
//! | `round_robin`, `random`, `consistent`, `ip_hash` | Pingora's `RoundRobin`, `Random`, `KetamaHashing`, `FNVHash` |
//! | `weighted_round_robin` | [`smooth::SmoothWeighted`] |
//! | `least_connections`, `p2c` | [`least_conn::LeastConnections`], [`least_conn::PowerOfTwo`] |
//! | `first` | [`first::First`] |
//! | `cookie` | [`sticky::StickyCookies`] over the fallback's selector |

pub mod first;
pub mod least_conn;
pub mod ordered;
pub mod smooth;
pub mod stats;
pub mod sticky;

use crate::config::model::{self, Algorithm};
use futures::FutureExt;
use ordered::BackendTable;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::selection::consistent::KetamaHashing;
use pingora_load_balancing::selection::{
    BackendIter, BackendSelection, FNVHash, Random, RoundRobin,
};
use pingora_load_balancing::{Backend, Backends, HealthRegistry, LoadBalancer};
use stats::GroupStats;
use std::collections::BTreeSet;
use std::sync::Arc;
use sticky::StickyCookies;

/// One selector over the group's backends.
enum Selector {
    RoundRobin(LoadBalancer<RoundRobin>),
    Random(LoadBalancer<Random>),
    Fnv(LoadBalancer<FNVHash>),
    Consistent(LoadBalancer<KetamaHashing>),
    Smooth(LoadBalancer<smooth::SmoothWeighted>),
    LeastConnections(LoadBalancer<least_conn::LeastConnections>),
    P2c(LoadBalancer<least_conn::PowerOfTwo>),
    First(LoadBalancer<first::First>),
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

/// Dispatch one expression over every selector variant.
macro_rules! each_selector {
    ($sel:expr, $lb:ident => $body:expr) => {
        match $sel {
            Selector::RoundRobin($lb) => $body,
            Selector::Random($lb) => $body,
            Selector::Fnv($lb) => $body,
            Selector::Consistent($lb) => $body,
            Selector::Smooth($lb) => $body,
            Selector::LeastConnections($lb) => $body,
            Selector::P2c($lb) => $body,
            Selector::First($lb) => $body,
        }
    };
}

impl Selector {
    fn new(
        algorithm: Algorithm,
        backends: &BTreeSet<Backend>,
        registry: &Arc<HealthRegistry>,
        table: &Arc<BackendTable>,
    ) -> Self {
        let t = || Some(Arc::clone(table));
        match algorithm {
            Algorithm::RoundRobin | Algorithm::Cookie => {
                Selector::RoundRobin(load_balancer(backends, registry, None))
            }
            Algorithm::Random => Selector::Random(load_balancer(backends, registry, None)),
            Algorithm::IpHash => Selector::Fnv(load_balancer(backends, registry, None)),
            Algorithm::Consistent => Selector::Consistent(load_balancer(backends, registry, None)),
            Algorithm::WeightedRoundRobin => {
                Selector::Smooth(load_balancer(backends, registry, t()))
            }
            Algorithm::LeastConnections => {
                Selector::LeastConnections(load_balancer(backends, registry, t()))
            }
            Algorithm::P2c => Selector::P2c(load_balancer(backends, registry, t())),
            Algorithm::First => Selector::First(load_balancer(backends, registry, t())),
        }
    }

    fn select_with<F>(&self, key: &[u8], max_iterations: usize, accept: F) -> Option<Backend>
    where
        F: Fn(&Backend, bool) -> bool,
    {
        each_selector!(self, lb => lb.select_with(key, max_iterations, accept))
    }

    fn is_ready(&self, backend: &Backend) -> bool {
        each_selector!(self, lb => lb.backends().ready(backend))
    }
}

/// What a request brings to selection.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pick<'a> {
    /// Hash input for `consistent` and `ip_hash`; `None` when the request has none.
    pub key: Option<&'a [u8]>,
    /// For `cookie` groups: the backend the request's sticky cookie names.
    pub sticky: Option<usize>,
}

/// An upstream group ready to pick backends.
pub struct UpstreamGroup {
    /// The validated config of the group.
    pub config: model::Upstream,
    /// Health of the group's backends, shared by its selectors.
    pub registry: Arc<HealthRegistry>,
    /// Per-backend counters (in-flight requests, ...), in config order.
    pub stats: Arc<GroupStats>,
    /// For `cookie` groups: the sticky cookie.
    pub sticky: Option<StickyCookies>,
    /// Backends as Pingora sees them, in config order.
    backends: Vec<Backend>,
    table: Arc<BackendTable>,
    /// Selector for requests with a key (`consistent`, `ip_hash`).
    keyed: Option<Selector>,
    /// Selector for everything else: the algorithm itself, or the fallback of a keyed one.
    plain: Selector,
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
        let stats = Arc::new(GroupStats::new(backends.len()));
        let table = Arc::new(BackendTable::new(
            config.backends.iter().map(|b| b.addr),
            Arc::clone(&stats),
        ));
        let set: BTreeSet<Backend> = backends.iter().cloned().collect();
        let registry = Arc::new(HealthRegistry::new());
        let (keyed, plain) = match config.algorithm {
            Algorithm::Consistent | Algorithm::IpHash => (
                Some(Selector::new(config.algorithm, &set, &registry, &table)),
                Selector::new(config.fallback, &set, &registry, &table),
            ),
            Algorithm::Cookie => (
                None,
                Selector::new(config.fallback, &set, &registry, &table),
            ),
            other => (None, Selector::new(other, &set, &registry, &table)),
        };
        let sticky = config
            .sticky
            .as_ref()
            .map(|s| StickyCookies::new(s, &config.backends));
        // Enough steps for any selector to reach every backend, including random ones.
        let max_iterations = 64 + 8 * backends.len();
        UpstreamGroup {
            config,
            registry,
            stats,
            sticky,
            backends,
            table,
            keyed,
            plain,
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

    /// Whether the backend at a config index may take traffic now.
    pub fn is_ready(&self, index: usize) -> bool {
        self.backends
            .get(index)
            .is_some_and(|b| self.plain.is_ready(b))
    }

    /// Pick a backend that may take traffic and is not excluded (it already failed for this
    /// request). Returns a config index, or `None` when no backend is left.
    pub fn select(&self, pick: Pick<'_>, excluded: impl Fn(usize) -> bool) -> Option<usize> {
        if let Some(i) = pick.sticky {
            if !excluded(i) && self.is_ready(i) {
                return Some(i);
            }
        }
        let (selector, key) = match (&self.keyed, pick.key) {
            (Some(keyed), Some(key)) => (keyed, key),
            _ => (&self.plain, &[][..]),
        };
        let accept = |b: &Backend, ready: bool| {
            ready && self.table.index_of(b).is_some_and(|i| !excluded(i))
        };
        if let Some(b) = selector.select_with(key, self.max_iterations, accept) {
            return self.table.index_of(&b);
        }
        // The selector gave up (a random walk can miss a lone ready backend): scan in order.
        (0..self.backends.len()).find(|&i| !excluded(i) && self.is_ready(i))
    }
}
