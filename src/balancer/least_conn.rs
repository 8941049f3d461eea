//! Load-aware selectors: least connections and power of two choices.
//!
//! Load is the backend's in-flight requests divided by its weight, compared by cross
//! multiplication. In-flight counts are request-level and live in the group's
//! [`GroupStats`](super::stats::GroupStats), which survives selector rebuilds; a pick reads
//! them through a [`LoadView`]: the picking thread's own requests exactly, other worker
//! threads' as of at most about 2 ms ago, so that threads picking at once do not pass cache
//! lines back and forth on every pick.

use super::counts::LoadView;
use super::fast_rng;
use super::stats::GroupStats;
use super::turns::Turns;

/// Groups up to this size are scanned exactly; larger ones are sampled.
pub const EXACT_SCAN_LIMIT: usize = 32;
/// Candidates examined per pick in a large group.
pub const SAMPLE_SIZE: usize = 8;

/// The group's weights and in-flight counts, by config index (a selector's positions are
/// config indexes).
struct Loads {
    /// Weight of each backend (>= 1).
    weight: Box<[u64]>,
    stats: &'static GroupStats,
}

impl Loads {
    fn new(weights: &[u64], stats: &'static GroupStats) -> Self {
        Loads {
            weight: weights.iter().map(|w| (*w).max(1)).collect(),
            stats,
        }
    }

    fn len(&self) -> usize {
        self.weight.len()
    }

    /// In-flight counts for one pick.
    fn view(&self) -> LoadView<'_> {
        self.stats.loads()
    }

    /// In-flight requests to the backend at position `pos`.
    #[inline]
    fn in_flight(&self, view: &LoadView<'_>, pos: usize) -> u64 {
        view.in_flight(pos)
    }

    /// Whether position `a`, with `la` requests in flight, is strictly less loaded than
    /// position `b` with `lb`.
    fn less(&self, (a, la): (usize, u64), (b, lb): (usize, u64)) -> bool {
        la * self.weight[b] < lb * self.weight[a]
    }
}

/// Least connections: exact for groups up to [`EXACT_SCAN_LIMIT`] backends (ties take
/// turns, per worker thread); above, the least loaded of [`SAMPLE_SIZE`] random
/// backends, as Envoy's least-request balancer does, so a pick stays O(1) at 1,000 backends.
pub struct LeastConnections {
    loads: Loads,
    next: Box<Turns>,
}

impl LeastConnections {
    /// A selector over backends of these weights (config order) counted in `stats`.
    pub fn new(weights: &[u64], stats: &'static GroupStats) -> Self {
        LeastConnections {
            loads: Loads::new(weights, stats),
            next: Box::default(),
        }
    }
}

impl LeastConnections {
    /// Number of backends.
    pub fn len(&self) -> usize {
        self.loads.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The position (in config order) of the least loaded backend.
    pub fn start(&self) -> usize {
        self.start_among(|_| true)
    }

    /// The position of the least loaded backend among the positions `eligible` allows (a
    /// rotating position when none is).
    pub fn start_among(&self, eligible: impl Fn(usize) -> bool) -> usize {
        let n = self.loads.len();
        if n == 0 {
            return 0;
        }
        let view = self.loads.view();
        if n > EXACT_SCAN_LIMIT {
            // Sampled: a rotating candidate and random ones, the least loaded eligible wins.
            let mut best: Option<(usize, u64)> = None;
            // Readiness is asked only of a candidate that would win on load.
            let mut consider = |pos: usize| {
                let c = (pos, self.loads.in_flight(&view, pos));
                if best.is_none_or(|b| self.loads.less(c, b)) && eligible(pos) {
                    best = Some(c);
                }
            };
            let turn = self.next.next();
            consider(turn % n);
            (1..SAMPLE_SIZE).for_each(|_| consider(fast_rng::below(n)));
            return best.map_or(turn % n, |(pos, _)| pos);
        }
        // Exact: the least loaded eligible backends; among equals, take turns, so ties spread
        // evenly instead of favouring whichever backend follows a busy or unavailable one.
        // One pass: each load is read once (another thread may be changing it), and `tied`
        // holds the positions as loaded as the least loaded so far.
        let mut least: Option<(usize, u64)> = None;
        let mut tied = 0u32;
        for p in 0..n {
            if !eligible(p) {
                continue;
            }
            let c = (p, self.loads.in_flight(&view, p));
            match least {
                Some(b) if !self.loads.less(c, b) => {
                    if !self.loads.less(b, c) {
                        tied |= 1 << p;
                    }
                }
                _ => {
                    least = Some(c);
                    tied = 1 << p;
                }
            }
        }
        let Some((least, _)) = least else {
            return self.next.next() % n;
        };
        let ties = tied.count_ones() as usize;
        if ties <= 1 {
            return least;
        }
        // The turn's tie: drop that many lowest positions from the set.
        for _ in 0..self.next.next() % ties {
            tied &= tied - 1;
        }
        tied.trailing_zeros() as usize
    }
}

/// Power of two choices: two distinct random backends, the less loaded wins (the first on a
/// tie).
pub struct PowerOfTwo {
    loads: Loads,
}

impl PowerOfTwo {
    /// A selector over backends of these weights (config order) counted in `stats`.
    pub fn new(weights: &[u64], stats: &'static GroupStats) -> Self {
        PowerOfTwo {
            loads: Loads::new(weights, stats),
        }
    }

    /// Number of backends.
    pub fn len(&self) -> usize {
        self.loads.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PowerOfTwo {
    /// The position (in config order) of the less loaded of two random backends.
    pub fn start(&self) -> usize {
        self.start_among(|_| true)
    }

    /// Like [`start`](Self::start), drawing among the positions `eligible` allows.
    pub fn start_among(&self, eligible: impl Fn(usize) -> bool) -> usize {
        let n = self.loads.len();
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
                Some(b) => {
                    let view = self.loads.view();
                    let load = |p| (p, self.loads.in_flight(&view, p));
                    if self.loads.less(load(b), load(a)) {
                        b
                    } else {
                        a
                    }
                }
                None => a,
            },
            None => fast_rng::below(n),
        }
    }
}
