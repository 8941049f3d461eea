//! Load-aware selectors: least connections and power of two choices.
//!
//! Load is the backend's in-flight requests divided by its weight, compared by cross
//! multiplication. In-flight counts are request-level and live in the group's
//! [`GroupStats`](super::stats::GroupStats), which survives selector rebuilds.

use super::fast_rng;
use super::ordered::{BackendTable, HasOrdered, Ordered, RotationIter};
use super::turns::Turns;
use pingora_load_balancing::selection::BackendSelection;
use pingora_load_balancing::Backend;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Groups up to this size are scanned exactly; larger ones are sampled.
pub const EXACT_SCAN_LIMIT: usize = 32;
/// Candidates examined per pick in a large group.
pub const SAMPLE_SIZE: usize = 8;

struct Loads {
    ordered: Ordered,
    table: Arc<BackendTable>,
}

impl Loads {
    fn in_flight(&self, pos: usize) -> u64 {
        self.table.stats.in_flight(self.ordered.index[pos]) as u64
    }

    /// Whether position `a` is strictly less loaded than position `b`.
    fn less(&self, a: usize, b: usize) -> bool {
        let (wa, wb) = (self.ordered.weight[a], self.ordered.weight[b]);
        self.in_flight(a) * wb < self.in_flight(b) * wa
    }
}

/// Least connections: exact for groups up to [`EXACT_SCAN_LIMIT`] backends (ties take
/// turns, per worker thread); above, the least loaded of [`SAMPLE_SIZE`] random
/// backends, as Envoy's least-request balancer does, so a pick stays O(1) at 1,000 backends.
pub struct LeastConnections {
    loads: Loads,
    next: Box<Turns>,
}

impl HasOrdered for LeastConnections {
    fn ordered(&self) -> &Ordered {
        &self.loads.ordered
    }
}

impl BackendSelection for LeastConnections {
    type Iter = RotationIter<LeastConnections>;
    type Config = Arc<BackendTable>;

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::build_with_config(backends, &Arc::new(BackendTable::standalone(backends)))
    }

    fn build_with_config(backends: &BTreeSet<Backend>, table: &Self::Config) -> Self {
        LeastConnections {
            loads: Loads {
                ordered: table.ordered(backends),
                table: Arc::clone(table),
            },
            next: Box::default(),
        }
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> Self::Iter {
        RotationIter::new(Arc::clone(self), self.start())
    }
}

impl LeastConnections {
    /// The position (in config order) of the least loaded backend.
    pub fn start(&self) -> usize {
        self.start_among(|_| true)
    }

    /// The position of the least loaded backend among the positions `eligible` allows (a
    /// rotating position when none is).
    pub fn start_among(&self, eligible: impl Fn(usize) -> bool) -> usize {
        let n = self.loads.ordered.len();
        if n == 0 {
            return 0;
        }
        let turn = self.next.next();
        if n > EXACT_SCAN_LIMIT {
            // Sampled: a rotating candidate and random ones, the least loaded eligible wins.
            let mut best: Option<usize> = None;
            // Readiness is asked only of a candidate that would win on load.
            let mut consider = |pos: usize| {
                if best.is_none_or(|b| self.loads.less(pos, b)) && eligible(pos) {
                    best = Some(pos);
                }
            };
            consider(turn % n);
            (1..SAMPLE_SIZE).for_each(|_| consider(fast_rng::below(n)));
            return best.unwrap_or(turn % n);
        }
        // Exact: the least loaded eligible backends; among equals, take turns, so ties spread
        // evenly instead of favouring whichever backend follows a busy or unavailable one.
        // Each load is read once (another thread may be changing it): `None` when ineligible.
        let mut load = [None; EXACT_SCAN_LIMIT];
        for (p, l) in load.iter_mut().enumerate().take(n) {
            *l = eligible(p).then(|| self.loads.in_flight(p));
        }
        let weight = &self.loads.ordered.weight;
        let less = |a: usize, b: usize| match (load[a], load[b]) {
            (Some(la), Some(lb)) => la * weight[b] < lb * weight[a],
            _ => false,
        };
        let least = (0..n)
            .filter(|&p| load[p].is_some())
            .reduce(|a, b| if less(b, a) { b } else { a });
        let Some(least) = least else {
            return turn % n;
        };
        let tied = |p: &usize| load[*p].is_some() && !less(least, *p);
        let ties = (0..n).filter(tied).count().max(1);
        (0..n).filter(tied).nth(turn % ties).unwrap_or(least)
    }
}

/// Power of two choices: two distinct random backends, the less loaded wins (the first on a
/// tie).
pub struct PowerOfTwo {
    loads: Loads,
}

impl HasOrdered for PowerOfTwo {
    fn ordered(&self) -> &Ordered {
        &self.loads.ordered
    }
}

impl BackendSelection for PowerOfTwo {
    type Iter = RotationIter<PowerOfTwo>;
    type Config = Arc<BackendTable>;

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::build_with_config(backends, &Arc::new(BackendTable::standalone(backends)))
    }

    fn build_with_config(backends: &BTreeSet<Backend>, table: &Self::Config) -> Self {
        PowerOfTwo {
            loads: Loads {
                ordered: table.ordered(backends),
                table: Arc::clone(table),
            },
        }
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> Self::Iter {
        RotationIter::new(Arc::clone(self), self.start())
    }
}

impl PowerOfTwo {
    /// The position (in config order) of the less loaded of two random backends.
    pub fn start(&self) -> usize {
        self.start_among(|_| true)
    }

    /// Like [`start`](Self::start), drawing among the positions `eligible` allows.
    pub fn start_among(&self, eligible: impl Fn(usize) -> bool) -> usize {
        let n = self.loads.ordered.len();
        if n < 2 {
            return 0;
        }
        // Draw again (a few times) rather than slide to a neighbour, so the turns of an
        // unavailable backend spread over all the others.
        let draw = |other: Option<usize>| {
            (0..8)
                .map(|_| fast_rng::below(n))
                .find(|&p| Some(p) != other && eligible(p))
        };
        match draw(None) {
            Some(a) => match draw(Some(a)) {
                Some(b) if self.loads.less(b, a) => b,
                _ => a,
            },
            None => fast_rng::below(n),
        }
    }
}
