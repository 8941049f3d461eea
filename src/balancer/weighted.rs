//! `random` and `ip_hash`: Pingora's `Weighted` selection (`Random`, `FNVHash`), pick for pick,
//! answering with config indexes.
//!
//! Pingora's `Weighted` lists each backend `weight` times (in the backend set's order); the
//! first pick is entry `draw % len` of that list, each later pick (a retry asking for another
//! backend) is backend `draw' % n`, where `draw'` is the next draw: a fresh random number for
//! `Random`, the FNV-1a hash of the previous draw's little-endian bytes for `FNVHash`. This
//! module walks the same lists with the same draws; unit tests compare it with Pingora's
//! selectors pick for pick.
//!
//! Two costs of going through Pingora's `iter` are left out: it clones an `Arc` on every pick
//! (a reference count every worker thread writes), and `Random` draws from `rand`'s ChaCha
//! thread generator; here a pick reads shared tables only, and `random` draws from
//! [`fast_rng`](super::fast_rng).

use super::fast_rng;
use super::BackendIndex;
use pingora_load_balancing::Backend;
use std::collections::BTreeSet;

/// How a [`WeightedDraws`] selector draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw {
    /// Random numbers (Pingora's `Random`).
    Random,
    /// FNV-1a of the key, then of each previous draw (Pingora's `FNVHash`).
    Fnv,
}

/// 64-bit FNV-1a, as the `fnv` crate's `FnvHasher` computes it.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A weighted selector over a backend set.
#[derive(Debug)]
pub struct WeightedDraws {
    draw: Draw,
    /// Config index of each backend, in the set's order.
    index: Box<[usize]>,
    /// Each backend's position in `index`, repeated `weight` times.
    weighted: Box<[u16]>,
}

impl WeightedDraws {
    /// The selector for `backends` (each carrying its [`BackendIndex`]).
    pub fn build(backends: &BTreeSet<Backend>, draw: Draw) -> Self {
        assert!(backends.len() <= u16::MAX as usize, "up to 2^16 backends");
        let index: Box<[usize]> = backends
            .iter()
            .map(|b| b.ext.get::<BackendIndex>().map_or(usize::MAX, |i| i.0))
            .collect();
        let weighted = backends
            .iter()
            .enumerate()
            .flat_map(|(pos, b)| std::iter::repeat_n(pos as u16, b.weight))
            .collect();
        WeightedDraws {
            draw,
            index,
            weighted,
        }
    }

    fn first_draw(&self, key: &[u8]) -> u64 {
        match self.draw {
            Draw::Random => fast_rng::next_u64(),
            Draw::Fnv => fnv1a(key),
        }
    }

    fn next_draw(&self, previous: u64) -> u64 {
        match self.draw {
            Draw::Random => fast_rng::next_u64(),
            Draw::Fnv => fnv1a(&previous.to_le_bytes()),
        }
    }

    /// Config indexes in the order Pingora's `Weighted` iterator yields their backends for
    /// `key` (endless; backends may repeat).
    pub fn walk<'a>(&'a self, key: &[u8]) -> impl Iterator<Item = usize> + 'a {
        let n = self.index.len() as u64;
        let mut draw = self.first_draw(key);
        let first = (!self.weighted.is_empty()).then(|| {
            let pos = self.weighted[(draw % self.weighted.len() as u64) as usize];
            self.index[pos as usize]
        });
        let rest = std::iter::from_fn(move || {
            if n == 0 {
                return None;
            }
            draw = self.next_draw(draw);
            Some(self.index[(draw % n) as usize])
        });
        first.into_iter().chain(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_load_balancing::selection::{BackendIter, BackendSelection, FNVHash};
    use std::sync::Arc;

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

    fn pingora_walk(mut it: impl BackendIter, steps: usize) -> Vec<usize> {
        (0..steps)
            .map(|_| it.next().unwrap().ext.get::<BackendIndex>().unwrap().0)
            .collect()
    }

    #[test]
    fn fnv_matches_the_fnv_crate_on_known_values() {
        // FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn ip_hash_picks_exactly_as_pingora_fnv_hash() {
        for weights in [
            &[1, 4, 2, 1, 3][..],
            &[1],
            &[1, 1, 1],
            &[7, 1, 2, 9, 1, 1, 3, 2],
        ] {
            let set = set(weights);
            let ours = WeightedDraws::build(&set, Draw::Fnv);
            let pingora = Arc::new(FNVHash::build(&set));
            let mut counts = vec![0usize; weights.len()];
            for k in 0..20_000u32 {
                let key = k.to_be_bytes();
                let mine: Vec<usize> = ours.walk(&key).take(6).collect();
                assert_eq!(mine, pingora_walk(pingora.iter(&key), 6), "key {k}");
                counts[mine[0]] += 1;
            }
            if weights.len() == 5 {
                // The first choice follows the weights, 1:4:2:1:3.
                assert!(
                    counts[1] > 3 * counts[0] && counts[4] > 2 * counts[3],
                    "{counts:?}"
                );
            }
        }
    }

    #[test]
    fn random_first_picks_follow_the_weights_and_retries_reach_every_backend() {
        let ours = WeightedDraws::build(&set(&[3, 1]), Draw::Random);
        let first = (0..10_000)
            .filter(|_| ours.walk(b"").next() == Some(0))
            .count();
        assert!((7_000..8_000).contains(&first), "{first}");
        let ours = WeightedDraws::build(&set(&[100, 1, 1]), Draw::Random);
        let mut seen = [0usize; 3];
        for i in ours.walk(b"").skip(1).take(3_000) {
            seen[i] += 1;
        }
        // After the first pick, uniform over backends, as Pingora's `Weighted` does.
        assert!(seen.iter().all(|&c| (800..1_200).contains(&c)), "{seen:?}");
    }

    #[test]
    fn an_empty_set_yields_nothing() {
        let ours = WeightedDraws::build(&BTreeSet::new(), Draw::Fnv);
        assert_eq!(ours.walk(b"k").next(), None);
    }
}
