//! Smooth weighted round robin, nginx's algorithm.
//!
//! Each pick adds every backend's weight to its running score, takes the highest score (the
//! first in config order on ties) and subtracts the total weight from it. Weights 5,1,1 give
//! `a a b a c a a`: a heavy backend never gets a burst. The sequence repeats every
//! `sum(weights) / gcd(weights)` picks, so it is computed once when the selector is built and a
//! request only bumps an atomic counter: O(1), lock-free, whatever the number of backends.

use super::padded::CachePadded;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Above this many score updates (`period * backends`) the exact nginx sequence is replaced by
/// stride scheduling, which is just as smooth and costs O(period * log n) to build.
const EXACT_BUILD_LIMIT: u64 = 16_000_000;

/// Smooth weighted round robin selector.
pub struct SmoothWeighted {
    /// Number of backends.
    len: usize,
    /// The repeating schedule, as positions in config order.
    sequence: Box<[u32]>,
    /// The next turn, out of line on cache lines of its own.
    next: Box<CachePadded<AtomicUsize>>,
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
        // Stride scheduling: backend i's k-th pick is due at (k + 1/2) / w_i. The heap pops
        // the earliest due time, then the lowest config index. Due times are compared as
        // fractions by cross multiplication, exactly.
        #[derive(PartialEq, Eq)]
        struct Due {
            num: u128,
            den: u128,
            index: usize,
        }
        impl Ord for Due {
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                (o.num * self.den)
                    .cmp(&(self.num * o.den))
                    .then(o.index.cmp(&self.index))
            }
        }
        impl PartialOrd for Due {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        let due = |k: u64, index: usize| Due {
            num: 2 * k as u128 + 1,
            den: 2 * weights[index] as u128,
            index,
        };
        let mut picks = vec![0u64; weights.len()];
        // Zero weights (free slots of a group) get no turn.
        let mut heap: BinaryHeap<Due> = (0..weights.len())
            .filter(|&i| weights[i] > 0)
            .map(|i| due(0, i))
            .collect();
        while sequence.len() < period {
            let Some(Due { index, .. }) = heap.pop() else {
                break;
            };
            sequence.push(index as u32);
            picks[index] += 1;
            heap.push(due(picks[index], index));
        }
    }
    sequence
}

impl SmoothWeighted {
    /// The schedule for backends of these weights, in config order.
    pub fn new(weights: &[u64]) -> Self {
        // A weight of 0 (a free slot of the group) gets no turn; the schedule needs one turn.
        let mut weights = weights.to_vec();
        if weights.iter().all(|w| *w == 0) {
            weights.iter_mut().for_each(|w| *w = 1);
        }
        SmoothWeighted {
            len: weights.len(),
            sequence: smooth_sequence(&weights).into_boxed_slice(),
            next: Box::new(CachePadded::new(AtomicUsize::new(0))),
        }
    }

    /// Number of backends.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Length of the repeating schedule.
    pub fn period(&self) -> usize {
        self.sequence.len()
    }

    /// The position (in config order) of the next scheduled backend.
    pub fn start(&self) -> usize {
        if self.sequence.is_empty() {
            return 0;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.sequence[n % self.sequence.len()] as usize
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
