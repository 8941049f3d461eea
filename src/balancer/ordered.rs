//! Backends in config order, shared by fulcrum's own selectors, and the iterator they return.

use super::stats::GroupStats;
use pingora_load_balancing::selection::BackendIter;
use pingora_load_balancing::Backend;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

/// What fulcrum's selectors get on every rebuild (Pingora hands a selector only an
/// address-sorted set): config positions and the group's counters.
#[derive(Debug)]
pub struct BackendTable {
    position: HashMap<SocketAddr, usize>,
    /// The group's per-backend counters.
    pub stats: &'static GroupStats,
}

impl BackendTable {
    /// A table for backends at these addresses, in config order.
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>, stats: &'static GroupStats) -> Self {
        BackendTable {
            position: addrs.into_iter().enumerate().map(|(i, a)| (a, i)).collect(),
            stats,
        }
    }

    /// A table of its own for a bare backend set (address order, fresh counters), for
    /// selectors built without fulcrum's group table.
    pub fn standalone(backends: &BTreeSet<Backend>) -> Self {
        let addrs: Vec<SocketAddr> = backends
            .iter()
            .filter_map(|b| b.addr.as_inet().copied())
            .collect();
        let n = addrs.len();
        Self::new(addrs, GroupStats::leak(n, Default::default()))
    }

    /// The config index of a backend, if it belongs to the group.
    pub fn index_of(&self, backend: &Backend) -> Option<usize> {
        backend
            .addr
            .as_inet()
            .and_then(|a| self.position.get(a).copied())
    }

    /// The backends in config order, with their config indexes.
    pub fn ordered(&self, backends: &BTreeSet<Backend>) -> Ordered {
        let mut v: Vec<(usize, Backend)> = backends
            .iter()
            .filter_map(|b| Some((self.index_of(b)?, b.clone())))
            .collect();
        v.sort_by_key(|(i, _)| *i);
        Ordered {
            index: v.iter().map(|(i, _)| *i).collect(),
            weight: v.iter().map(|(_, b)| b.weight.max(1) as u64).collect(),
            backends: v.into_iter().map(|(_, b)| b).collect(),
        }
    }
}

/// Backends in config order with their config indexes and weights.
pub struct Ordered {
    /// The backends.
    pub backends: Box<[Backend]>,
    /// Config index of each backend.
    pub index: Box<[usize]>,
    /// Weight of each backend (>= 1).
    pub weight: Box<[u64]>,
}

impl Ordered {
    /// Number of backends.
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }
}

/// Gives access to a selector's ordered backends.
pub trait HasOrdered {
    /// The ordered backends.
    fn ordered(&self) -> &Ordered;
}

/// Yields the chosen position first, then every other backend once, in config order after it:
/// what a retry asks for is "another one", and every one is reachable.
pub struct RotationIter<S> {
    selector: Arc<S>,
    start: usize,
    step: usize,
}

impl<S> RotationIter<S> {
    /// An iterator starting at position `start`.
    pub fn new(selector: Arc<S>, start: usize) -> Self {
        RotationIter {
            selector,
            start,
            step: 0,
        }
    }
}

impl<S: HasOrdered> BackendIter for RotationIter<S> {
    fn next(&mut self) -> Option<&Backend> {
        let o = self.selector.ordered();
        let n = o.len();
        if self.step >= n {
            return None;
        }
        let i = (self.start + self.step) % n;
        self.step += 1;
        o.backends.get(i)
    }
}
