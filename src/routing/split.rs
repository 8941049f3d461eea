//! Choosing the side of a `split:` route.
//!
//! - **Without a key** (or when the request lacks it): the sides take turns in the smooth
//!   weighted round-robin order of their weights (nginx's), so any window of `sum(weights)`
//!   requests holds each side exactly its weight's share; the turn is one shared atomic counter.
//! - **With `split_key`**: weighted rendezvous hashing. Each side scores
//!   `weight / -ln(u)`, `u` a uniform draw seeded by the key and the side's upstream *name*,
//!   and the highest score wins. A side's share is its weight's, a key stays on its side while
//!   the weights stay, and when weights change only the share that must move does: raising a
//!   side's weight only brings keys to it, lowering it only takes keys away, and the other
//!   sides keep theirs. Sides are recognised by name, so reordering them moves nothing.

use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Turn sequences longer than this (after dividing the weights by their common divisor)
/// are not precomputed: such splits draw each unkeyed request at random instead.
const MAX_SEQUENCE: u64 = 1 << 16;

/// The weights a split is using now, and what follows from them.
#[derive(Debug)]
pub struct Plan {
    /// Weight of each side, in config order.
    pub weights: Vec<u32>,
    /// Sides in smooth weighted round-robin order; empty when too long (random draws).
    sequence: Vec<u16>,
    total: u64,
}

impl Plan {
    /// The plan for `weights` (at least one above 0).
    pub fn new(weights: Vec<u32>) -> Plan {
        let g = weights.iter().fold(0u32, |g, &w| gcd(g, w)).max(1);
        let reduced: Vec<u64> = weights.iter().map(|&w| u64::from(w / g)).collect();
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let length: u64 = reduced.iter().sum();
        let sequence = if length <= MAX_SEQUENCE {
            smooth_order(&reduced)
        } else {
            Vec::new()
        };
        Plan {
            weights,
            sequence,
            total,
        }
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// nginx's smooth weighted round robin, run once over a whole cycle.
fn smooth_order(weights: &[u64]) -> Vec<u16> {
    let total: i64 = weights.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += *w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u16);
    }
    out
}

/// A split route's side chooser; weights may change at run time.
#[derive(Debug)]
pub struct Splitter {
    /// Seed of each side, from its upstream's name.
    seeds: Vec<u64>,
    plan: ArcSwap<Plan>,
    turn: AtomicUsize,
}

impl Splitter {
    /// A chooser between sides named `names` with `weights` (same order).
    pub fn new(names: &[&str], weights: Vec<u32>) -> Splitter {
        Splitter {
            seeds: names.iter().map(|n| side_seed(n)).collect(),
            plan: ArcSwap::from_pointee(Plan::new(weights)),
            turn: AtomicUsize::new(0),
        }
    }

    /// The weights in use.
    pub fn weights(&self) -> Vec<u32> {
        self.plan.load().weights.clone()
    }

    /// Use `weights` from now on (same number of sides, at least one above 0).
    pub fn set_weights(&self, weights: Vec<u32>) {
        debug_assert_eq!(weights.len(), self.seeds.len());
        self.plan.store(Arc::new(Plan::new(weights)));
    }

    /// The side (index in config order) for a request with split key `key`, if it has one.
    pub fn choose(&self, key: Option<&[u8]>) -> usize {
        let plan = self.plan.load();
        match key {
            Some(key) => keyed_side(&self.seeds, &plan.weights, key),
            None => {
                let n = self.turn.fetch_add(1, Ordering::Relaxed);
                if plan.sequence.is_empty() {
                    random_side(&plan.weights, plan.total)
                } else {
                    usize::from(plan.sequence[n % plan.sequence.len()])
                }
            }
        }
    }
}

fn random_side(weights: &[u32], total: u64) -> usize {
    let mut draw = fastrand::u64(0..total.max(1));
    for (i, &w) in weights.iter().enumerate() {
        if draw < u64::from(w) {
            return i;
        }
        draw -= u64::from(w);
    }
    weights.len() - 1
}

/// The seed of a side named `name` (FNV-1a of the name).
pub fn side_seed(name: &str) -> u64 {
    fnv1a(name.as_bytes())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// splitmix64's finalizer: every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The side a key goes to: weighted rendezvous over sides seeded by `seeds`, with `weights`
/// (sides of weight 0 never win). The same function `fulcrum diff` evaluates.
pub fn keyed_side(seeds: &[u64], weights: &[u32], key: &[u8]) -> usize {
    let k = fnv1a(key);
    let mut best = (f64::NEG_INFINITY, 0);
    for (i, (&seed, &w)) in seeds.iter().zip(weights).enumerate() {
        if w == 0 {
            continue;
        }
        // A uniform draw in (0, 1]: never 0, so -ln(u) is finite and >= 0.
        let u = ((mix(k ^ seed) >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let score = f64::from(w) / -u.ln();
        if score > best.0 {
            best = (score, i);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unkeyed_turns_follow_the_weights_exactly() {
        let s = Splitter::new(&["v1", "v2"], vec![95, 5]);
        let mut counts = [0usize; 2];
        for _ in 0..10_000 {
            counts[s.choose(None)] += 1;
        }
        assert_eq!(counts, [9_500, 500]);
        // Smooth: the canary's turns are spread out, not bunched.
        let order: Vec<usize> = (0..20).map(|_| s.choose(None)).collect();
        assert_eq!(order.iter().filter(|&&i| i == 1).count(), 1);
    }

    #[test]
    fn weight_zero_takes_nothing() {
        let s = Splitter::new(&["a", "b", "c"], vec![1, 0, 3]);
        let mut counts = [0usize; 3];
        for i in 0..4_000u32 {
            counts[s.choose(None)] += 1;
            counts[s.choose(Some(&i.to_le_bytes()))] += 1;
        }
        assert_eq!(counts[1], 0);
        assert_eq!(counts[0] + counts[2], 8_000);
    }

    #[test]
    fn keyed_shares_follow_the_weights() {
        let seeds = [side_seed("v1"), side_seed("v2")];
        let n = 100_000;
        let v2 = (0..n)
            .filter(|i| keyed_side(&seeds, &[90, 10], format!("user-{i}").as_bytes()) == 1)
            .count();
        let share = v2 as f64 / n as f64;
        assert!((share - 0.10).abs() < 0.005, "share of v2: {share}");
    }

    #[test]
    fn raising_a_weight_only_brings_keys_to_that_side() {
        let seeds = [side_seed("a"), side_seed("b"), side_seed("c")];
        let n = 50_000;
        let mut moved = 0;
        for i in 0..n {
            let key = format!("k{i}");
            let before = keyed_side(&seeds, &[50, 45, 5], key.as_bytes());
            let after = keyed_side(&seeds, &[50, 45, 10], key.as_bytes());
            if before != after {
                assert_eq!(after, 2, "key {key} moved from {before} to {after}");
                moved += 1;
            }
        }
        // c's share goes from 5 % to 10/105: the keys that move are that difference.
        let expected = 10.0 / 105.0 - 0.05;
        let share = moved as f64 / n as f64;
        assert!((share - expected).abs() < 0.005, "moved {share}, expected {expected}");
    }

    #[test]
    fn side_order_does_not_matter() {
        let ab = [side_seed("a"), side_seed("b")];
        let ba = [side_seed("b"), side_seed("a")];
        for i in 0..1_000u32 {
            let key = i.to_be_bytes();
            assert_eq!(
                keyed_side(&ab, &[3, 1], &key),
                1 - keyed_side(&ba, &[1, 3], &key)
            );
        }
    }
}
