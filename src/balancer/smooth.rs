//! Smooth weighted round robin, nginx's algorithm, as a Pingora [`BackendSelection`].
//!
//! Each pick adds every backend's weight to its running score, takes the highest score (the
//! first in config order on ties) and subtracts the total weight from it. Weights 5,1,1 give
//! `a a b a c a a`: a heavy backend never gets a burst. The sequence repeats every
//! `sum(weights) / gcd(weights)` picks, so it is computed once when the selector is built and a
//! request only bumps an atomic counter: O(1), lock-free, whatever the number of backends.

use super::ConfigOrder;
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Above this many score updates (`period * backends`) the exact nginx sequence is replaced by
/// stride scheduling, which is just as smooth and costs O(period * log n) to build.
const EXACT_BUILD_LIMIT: u64 = 16_000_000;

/// Smooth weighted round robin selector.
pub struct SmoothWeighted {
    backends: Box<[Backend]>,
    sequence: Box<[u32]>,
    next: AtomicUsize,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The repeating pick sequence for these weights, as indexes into `weights`.
pub fn smooth_sequence(weights: &[u64]) -> Vec<u32> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let weights: Vec<i64> = weights.iter().map(|w| (w / g) as i64).collect();
    let total: i64 = weights.iter().sum();
    let period = total.max(0) as usize;
    let mut sequence = Vec::with_capacity(period);
    if (period as u64).saturating_mul(weights.len() as u64) <= EXACT_BUILD_LIMIT {
        let mut current = vec![0i64; weights.len()];
        for _ in 0..period {
            let mut best = 0;
            for i in 0..weights.len() {
                current[i] += weights[i];
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            sequence.push(best as u32);
        }
    } else {
        // Stride scheduling: backend i is due at (k + 1/2) / w_i for its k-th pick.
        // Entries order by earliest due time, then by config order.
        let mut heap: BinaryHeap<(std::cmp::Reverse<(u128, u128)>, std::cmp::Reverse<usize>)> =
            BinaryHeap::new();
        let due = |k: u64, w: i64| -> (u128, u128) { ((2 * k + 1) as u128, 2 * w as u128) };
        let key = |(num, den): (u128, u128)| num * 1_000_000_000_000 / den;
        let mut picks = vec![0u64; weights.len()];
        for (i, w) in weights.iter().enumerate() {
            heap.push((
                std::cmp::Reverse((key(due(0, *w)), 0)),
                std::cmp::Reverse(i),
            ));
        }
        while sequence.len() < period {
            let Some((_, std::cmp::Reverse(i))) = heap.pop() else {
                break;
            };
            sequence.push(i as u32);
            picks[i] += 1;
            heap.push((
                std::cmp::Reverse((key(due(picks[i], weights[i])), 0)),
                std::cmp::Reverse(i),
            ));
        }
    }
    sequence
}

impl SmoothWeighted {
    fn from_ordered(backends: Vec<Backend>) -> Self {
        let weights: Vec<u64> = backends.iter().map(|b| b.weight.max(1) as u64).collect();
        SmoothWeighted {
            sequence: smooth_sequence(&weights).into_boxed_slice(),
            backends: backends.into_boxed_slice(),
            next: AtomicUsize::new(0),
        }
    }
}

impl BackendSelection for SmoothWeighted {
    type Iter = SmoothIter;
    type Config = Arc<ConfigOrder>;

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::from_ordered(backends.iter().cloned().collect())
    }

    fn build_with_config(backends: &BTreeSet<Backend>, order: &Self::Config) -> Self {
        Self::from_ordered(order.sorted(backends))
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> SmoothIter {
        let start = if self.sequence.is_empty() {
            0
        } else {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            self.sequence[n % self.sequence.len()] as usize
        };
        SmoothIter {
            selector: Arc::clone(self),
            start,
            step: 0,
        }
    }
}

/// Yields the scheduled backend, then every other backend once, in config order.
pub struct SmoothIter {
    selector: Arc<SmoothWeighted>,
    start: usize,
    step: usize,
}

impl BackendIter for SmoothIter {
    fn next(&mut self) -> Option<&Backend> {
        let n = self.selector.backends.len();
        if self.step >= n {
            return None;
        }
        let i = (self.start + self.step) % n;
        self.step += 1;
        self.selector.backends.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letters(weights: &[u64]) -> String {
        smooth_sequence(weights)
            .iter()
            .map(|i| (b'a' + *i as u8) as char)
            .collect()
    }

    #[test]
    fn nginx_example_is_smooth() {
        assert_eq!(letters(&[5, 1, 1]), "aabacaa");
    }

    #[test]
    fn equal_weights_rotate_and_gcd_shortens_the_period() {
        assert_eq!(letters(&[1, 1, 1]), "abc");
        assert_eq!(letters(&[10, 10, 10]), "abc");
        assert_eq!(letters(&[4, 2]), "aba");
    }

    #[test]
    fn shares_follow_weights_for_large_groups() {
        // Large enough to take the stride-scheduling path.
        let weights: Vec<u64> = (1..=1000).collect();
        let seq = smooth_sequence(&weights);
        assert_eq!(seq.len() as u64, weights.iter().sum::<u64>());
        let mut counts = vec![0u64; weights.len()];
        for i in seq {
            counts[i as usize] += 1;
        }
        assert_eq!(counts, weights);
    }
}
