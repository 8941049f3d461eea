//! One copy of a stateless Pingora selector per worker thread (up to [`STRIPES`]), so that
//! threads picking at the same time do not write one reference count.
//!
//! Pingora's `BackendSelection::iter` takes `&Arc<Self>` and clones it into the iterator: an
//! atomic increment and decrement of the `Arc`'s count on every pick. With one `Arc` per group
//! every worker thread writes that count, and the cache line bounces between cores on every
//! request. `random` and `ip_hash` keep no state between picks (a random number, a hash of the
//! key), so copies built from the same backends choose exactly alike, and each thread can
//! clone its own.
//!
//! The copies are Pingora's own `Weighted` selectors with Pingora's own algorithms, wrapped in
//! [`CachePadded`]: that makes each copy 128-byte aligned, so its reference count has a cache
//! line to itself, apart from the other copies' counts and from the backend arrays every pick
//! reads.

use super::padded::CachePadded;
use super::turns::{stripe, STRIPES};
use pingora_load_balancing::selection::weighted::Weighted;
use pingora_load_balancing::selection::{
    algorithms, BackendSelection, FNVHash, SelectionAlgorithm,
};
use pingora_load_balancing::Backend;
use std::collections::BTreeSet;
use std::sync::Arc;

impl<A: SelectionAlgorithm> SelectionAlgorithm for CachePadded<A> {
    fn new() -> Self {
        CachePadded::new(A::new())
    }

    fn next(&self, key: &[u8]) -> u64 {
        self.0.next(key)
    }
}

/// Names the algorithm of a `Weighted` selector (`fnv::FnvHasher` for [`FNVHash`], a crate
/// fulcrum does not depend on directly).
pub trait AlgorithmOf {
    /// The selection algorithm.
    type Algorithm;
}

impl<H> AlgorithmOf for Weighted<H> {
    type Algorithm = H;
}

/// Pingora's `Random` (`Weighted<algorithms::Random>`), 128-byte aligned.
pub type PaddedRandom = Weighted<CachePadded<algorithms::Random>>;

/// Pingora's `FNVHash` (`Weighted<fnv::FnvHasher>`), 128-byte aligned.
pub type PaddedFnv = Weighted<CachePadded<<FNVHash as AlgorithmOf>::Algorithm>>;

/// Copies of a selector, one per thread stripe.
pub struct Replicas<S> {
    copies: Box<[Arc<S>]>,
}

impl<S: BackendSelection> Replicas<S> {
    /// [`STRIPES`] copies of `S::build(backends)`.
    pub fn build(backends: &BTreeSet<Backend>) -> Self {
        Replicas {
            copies: (0..STRIPES).map(|_| Arc::new(S::build(backends))).collect(),
        }
    }

    /// The current thread's copy.
    pub fn get(&self) -> &Arc<S> {
        &self.copies[stripe()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::BackendIndex;
    use pingora_load_balancing::selection::BackendIter;

    fn set(weights: &[usize]) -> BTreeSet<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let mut b = Backend::new_with_weight(&format!("10.0.1.{}:80", 200 - i), w).unwrap();
                b.ext.insert(BackendIndex(i));
                b
            })
            .collect()
    }

    fn walk(mut it: impl BackendIter, steps: usize) -> Vec<usize> {
        (0..steps)
            .map(|_| it.next().unwrap().ext.get::<BackendIndex>().unwrap().0)
            .collect()
    }

    #[test]
    fn copies_are_aligned_apart_and_hash_like_pingora() {
        assert_eq!(std::mem::align_of::<PaddedFnv>(), 128);
        assert_eq!(std::mem::align_of::<PaddedRandom>(), 128);
        let set = set(&[1, 4, 2, 1, 3]);
        let ours = Replicas::<PaddedFnv>::build(&set);
        let pingora = Arc::new(FNVHash::build(&set));
        let mut counts = [0usize; 5];
        for k in 0..10_000u32 {
            let key = k.to_be_bytes();
            let mine = walk(ours.get().iter(&key), 6);
            assert_eq!(mine, walk(pingora.iter(&key), 6), "key {k}");
            counts[mine[0]] += 1;
        }
        // The first choice follows the weights, 1:4:2:1:3.
        assert!(
            counts[1] > 3 * counts[0] && counts[4] > 2 * counts[3],
            "{counts:?}"
        );
    }

    #[test]
    fn random_copies_follow_the_weights() {
        let ours = Replicas::<PaddedRandom>::build(&set(&[3, 1]));
        let first = (0..10_000)
            .filter(|_| walk(ours.get().iter(b""), 1)[0] == 0)
            .count();
        assert!((7_000..8_000).contains(&first), "{first}");
    }
}
