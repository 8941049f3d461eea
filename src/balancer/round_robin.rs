//! `round_robin`: Pingora's `RoundRobin` (`Weighted<algorithms::RoundRobin>`) turn for turn,
//! without its per-pick cost under contention.
//!
//! The rotation is Pingora's: backends in the order of Pingora's backend set (by address),
//! each repeated `weight` times in a row; a pick takes the next turn of one shared counter, and
//! each step past an unavailable backend takes another turn and uses it over the backends
//! without weights, so the healthy ones keep taking turns in order.
//!
//! Pingora's `iter` clones an `Arc` of the selector on every pick, and the reference count
//! sits on the same cache line as the turn counter and the backend arrays: with two threads
//! selecting, every pick moves that line between cores several times. Here the turn counter
//! is alone on its cache lines, nothing else is written, and each turn names a config index.

use super::padded::CachePadded;
use super::BackendIndex;
use pingora_load_balancing::Backend;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Round robin over a group's backends, answering with config indexes.
pub struct RoundRobin {
    /// Config index of each backend, in Pingora's order.
    backends: Box<[u32]>,
    /// The rotation: each backend's config index `weight` times in a row.
    weighted: Box<[u32]>,
    /// The next turn, out of line on cache lines of its own.
    turn: Box<CachePadded<AtomicUsize>>,
}

impl RoundRobin {
    /// The rotation `RoundRobin::build(backends)` makes. Each backend is known by its
    /// [`BackendIndex`] (its position in `backends` when it has none).
    pub fn build(backends: &BTreeSet<Backend>) -> Self {
        let index = |(position, b): (usize, &Backend)| {
            b.ext.get::<BackendIndex>().map_or(position, |i| i.0) as u32
        };
        let weighted = backends
            .iter()
            .enumerate()
            .flat_map(|(p, b)| std::iter::repeat_n(index((p, b)), b.weight))
            .collect();
        RoundRobin {
            backends: backends.iter().enumerate().map(index).collect(),
            weighted,
            turn: Box::new(CachePadded::new(AtomicUsize::new(0))),
        }
    }

    /// Candidates for one request: the next turn of the rotation, then (for each backend
    /// that cannot take it) further turns over the backends without weights. Endless unless
    /// there are no backends.
    pub fn walk(&self) -> Walk<'_> {
        Walk {
            rr: self,
            first: true,
        }
    }

    fn next_turn(&self) -> usize {
        self.turn.fetch_add(1, Relaxed)
    }
}

/// The candidates of one pick of a [`RoundRobin`], as config indexes.
pub struct Walk<'a> {
    rr: &'a RoundRobin,
    first: bool,
}

impl Iterator for Walk<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let rr = self.rr;
        if rr.weighted.is_empty() {
            return None;
        }
        let turn = rr.next_turn();
        let i = if self.first {
            self.first = false;
            rr.weighted[turn % rr.weighted.len()]
        } else {
            rr.backends[turn % rr.backends.len()]
        };
        Some(i as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_load_balancing::selection::{BackendIter, BackendSelection};
    use std::sync::Arc;

    #[test]
    fn takes_the_same_turns_as_pingora() {
        for weights in [&[1, 1, 1][..], &[5, 1, 2], &[1, 3, 1, 1, 2, 7, 1]] {
            // Config order differs from address order.
            let set: BTreeSet<Backend> = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| {
                    let port = 9000 - 7 * i;
                    let mut b = Backend::new_with_weight(&format!("10.0.0.1:{port}"), w).unwrap();
                    b.ext.insert(BackendIndex(i));
                    b
                })
                .collect();
            let ours = RoundRobin::build(&set);
            let pingora = Arc::new(pingora_load_balancing::selection::RoundRobin::build(&set));
            for pick in 0..500 {
                // Picks that walk on for 0 to 3 unavailable backends.
                let steps = 1 + pick % 4;
                let mut it = pingora.iter(b"");
                let theirs: Vec<usize> = (0..steps)
                    .map(|_| it.next().unwrap().ext.get::<BackendIndex>().unwrap().0)
                    .collect();
                let mine: Vec<usize> = ours.walk().take(steps).collect();
                assert_eq!(mine, theirs, "weights {weights:?}, pick {pick}");
            }
        }
    }

    #[test]
    fn no_backends_no_candidates() {
        assert_eq!(RoundRobin::build(&BTreeSet::new()).walk().next(), None);
    }
}
