//! Upstream groups at run time: pingora-load-balancing's selectors plus fulcrum's own.
//!
//! Each group holds one selector for its algorithm (and, for keyed algorithms, a second one
//! for requests without a key) and one [`GroupStats`] table: per-backend in-flight counts,
//! counters, the active health verdict and the circuit breaker. Selection reads readiness from
//! that table, lock-free, by the backend's config index, which Pingora's `Backend` carries in
//! its `ext` ([`BackendIndex`]).
//!
//! Selection does not go through `LoadBalancer::select_with`, which clones every candidate
//! `Backend`, hashes it to look its health up and allocates a set of visited backends per
//! request; fulcrum's table answers the same question with one atomic load. Active health
//! checks still use pingora-load-balancing's checkers (see [`crate::health`]).
//!
//! | algorithm | selector |
//! | --- | --- |
//! | `random`, `ip_hash` | [`weighted::WeightedDraws`]: Pingora's `Random` and `FNVHash`, pick for pick |
//! | `round_robin` | [`round_robin::RoundRobin`]: Pingora's `RoundRobin` rotation, turn for turn |
//! | `consistent` | [`ketama::Ring`]: Pingora's Ketama ring, point for point |
//! | `weighted_round_robin` | [`smooth::SmoothWeighted`] |
//! | `least_connections`, `p2c` | [`least_conn::LeastConnections`], [`least_conn::PowerOfTwo`] |
//! | `first` | config order, from the top |
//! | `cookie` | [`sticky::StickyCookies`] over the fallback's selector |
//!
//! The four that follow Pingora choose exactly as it does (unit tests compare them pick for
//! pick), with lookups of their own: Pingora's Ketama lookup searches a large ring and a
//! `HashMap` per step, and its `iter` clones an `Arc` on every pick, a reference count every
//! worker thread would write (docs/performance.md has the figures). Counters
//! written on every pick (turns, in-flight counts) are kept per worker thread ([`stripes`],
//! [`counts`]) on cache lines of their own ([`padded`]).

pub mod check_record;
pub mod counts;
pub mod crc32;
pub mod fast_rng;
pub mod group;
pub mod held;
pub mod ketama;
pub mod latency;
pub mod least_conn;
pub mod members;
pub mod padded;
pub mod round_robin;
pub mod smooth;
pub mod state;
pub mod stats;
pub mod sticky;
pub mod stripes;
pub mod turns;
pub mod weighted;

use crate::config::model::Algorithm;
pub use group::{ChangeError, UpstreamGroup};
pub use members::{Member, Members, Source};
use pingora_load_balancing::Backend;
use stats::GroupStats;
use std::collections::BTreeSet;

/// A backend's slot in its group (see [`members`]), carried in Pingora's `Backend::ext` so
/// that a selector's answer maps back to fulcrum's tables without hashing the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendIndex(pub usize);

/// One selector over the group's backends. Each answers with config indexes (no `Arc`
/// traffic on the hot path): the walks that follow Pingora's selectors propose candidates in
/// Pingora's order, fulcrum's own choose a starting position in config order.
enum Selector {
    RoundRobin(round_robin::RoundRobin),
    Random(weighted::WeightedDraws),
    Fnv(weighted::WeightedDraws),
    Consistent(ketama::Ring),
    Smooth(smooth::SmoothWeighted),
    LeastConnections(least_conn::LeastConnections),
    P2c(least_conn::PowerOfTwo),
    /// `first`: config order from the top, for this many backends.
    First(usize),
}

/// Starting at position `start`, the first of `n` backends in config order that `accept`
/// takes.
#[inline(always)]
fn first_accepted_from(n: usize, start: usize, accept: &impl Fn(usize) -> bool) -> Option<usize> {
    let start = start.min(n);
    // Two plain loops: `Chain::find` does not inline as well.
    for i in start..n {
        if accept(i) {
            return Some(i);
        }
    }
    (0..start).find(|&i| accept(i))
}

impl Selector {
    /// `backends` as Pingora's selectors see them; `weights` and `stats` in config order, for
    /// fulcrum's own.
    fn new(
        algorithm: Algorithm,
        backends: &BTreeSet<Backend>,
        weights: &[u64],
        stats: &'static GroupStats,
    ) -> Self {
        match algorithm {
            Algorithm::RoundRobin | Algorithm::Cookie => {
                Selector::RoundRobin(round_robin::RoundRobin::build(backends))
            }
            Algorithm::Random => Selector::Random(weighted::WeightedDraws::build(
                backends,
                weighted::Draw::Random,
            )),
            Algorithm::IpHash => Selector::Fnv(weighted::WeightedDraws::build(
                backends,
                weighted::Draw::Fnv,
            )),
            Algorithm::Consistent => Selector::Consistent(ketama::Ring::build(backends)),
            Algorithm::WeightedRoundRobin => Selector::Smooth(smooth::SmoothWeighted::new(weights)),
            Algorithm::LeastConnections => {
                Selector::LeastConnections(least_conn::LeastConnections::new(weights, stats))
            }
            Algorithm::P2c => Selector::P2c(least_conn::PowerOfTwo::new(weights, stats)),
            Algorithm::First => Selector::First(weights.len()),
        }
    }

    /// The first backend the selector proposes that `accept` admits. `eligible` is the
    /// side-effect-free part of `accept` (ready and not excluded): fulcrum's own selectors use
    /// it to choose among backends that can actually serve, so a dead or ejected backend,
    /// which always looks idle, is never the "least loaded" one and its turns are not all
    /// handed to its neighbour.
    #[inline(always)]
    fn select(
        &self,
        key: &[u8],
        max_steps: usize,
        eligible: &impl Fn(usize) -> bool,
        accept: &impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match self {
            Selector::RoundRobin(s) => s.walk().take(max_steps).find(|&i| accept(i)),
            Selector::Random(s) | Selector::Fnv(s) => {
                s.walk(key).take(max_steps).find(|&i| accept(i))
            }
            Selector::Consistent(s) => s.walk(key).take(max_steps).find(|&i| accept(i)),
            Selector::Smooth(s) => {
                // Skip unavailable backends' turns along the schedule itself.
                for _ in 0..s.period().min(max_steps) {
                    let i = s.start();
                    if eligible(i) && accept(i) {
                        return Some(i);
                    }
                }
                first_accepted_from(s.len(), 0, accept)
            }
            Selector::LeastConnections(s) => {
                first_accepted_from(s.len(), s.start_among(eligible), accept)
            }
            Selector::P2c(s) => first_accepted_from(s.len(), s.start_among(eligible), accept),
            Selector::First(n) => first_accepted_from(*n, 0, accept),
        }
    }
}

/// The backend selection chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chosen {
    /// Config index of the backend.
    pub index: usize,
    /// The request is the half-open trial of the backend's circuit breaker.
    pub trial: bool,
}

/// What a request brings to selection.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pick<'a> {
    /// Hash input for `consistent` and `ip_hash`; `None` when the request has none.
    pub key: Option<&'a [u8]>,
    /// For `cookie` groups: the backend the request's sticky cookie names.
    pub sticky: Option<usize>,
}

/// A group for unit tests: backends 10.0.x.y:80 with these weights.
#[cfg(test)]
pub(crate) fn test_upstream(
    algorithm: Algorithm,
    weights: &[u32],
) -> crate::config::model::Upstream {
    use crate::config::model::{Backend as ModelBackend, HashKey, Timeouts, Upstream};
    Upstream {
        name: "t".into(),
        algorithm,
        hash_key: HashKey::ClientIp,
        fallback: Algorithm::RoundRobin,
        sticky: None,
        backends: weights
            .iter()
            .enumerate()
            .map(|(i, w)| ModelBackend {
                addr: format!("10.0.{}.{}:80", i / 200, i % 200 + 1)
                    .parse()
                    .unwrap(),
                host: None,
                weight: *w,
            })
            .collect(),
        timeouts: Timeouts::default(),
        tls: None,
        protocol: Default::default(),
        max_tries: 3,
        max_try_duration: None,
        health_check: None,
        circuit_breaker: Default::default(),
        backend_limit: None,
        discovery: None,
        slow_start: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::stats::InFlight;

    fn group(algorithm: Algorithm, weights: &[u32]) -> UpstreamGroup {
        UpstreamGroup::new(test_upstream(algorithm, weights))
    }

    fn pick(g: &UpstreamGroup, p: Pick<'_>, excluded: impl Fn(usize) -> bool) -> Option<usize> {
        g.select(p, excluded).map(|c| c.index)
    }

    fn shares(g: &UpstreamGroup, n: usize) -> Vec<f64> {
        let mut counts = vec![0usize; g.len()];
        for _ in 0..n {
            counts[pick(g, Pick::default(), |_| false).unwrap()] += 1;
        }
        counts.iter().map(|c| *c as f64 / n as f64).collect()
    }

    #[test]
    fn random_and_p2c_shares_over_10k_selections() {
        let s = shares(&group(Algorithm::Random, &[3, 1]), 10_000);
        assert!((s[0] - 0.75).abs() < 0.03, "random 3:1 gave {s:?}");
        for algorithm in [
            Algorithm::P2c,
            Algorithm::Random,
            Algorithm::LeastConnections,
        ] {
            let s = shares(&group(algorithm, &[1, 1, 1]), 10_000);
            for share in &s {
                assert!((share - 1.0 / 3.0).abs() < 0.03, "{algorithm:?} gave {s:?}");
            }
        }
    }

    #[test]
    fn least_connections_avoids_the_loaded_backend_and_rotates_ties() {
        let g = group(Algorithm::LeastConnections, &[1, 1, 1]);
        let held: Vec<InFlight> = (0..3).map(|_| InFlight::start(g.stats, 1, false)).collect();
        let picks: Vec<usize> = (0..6)
            .map(|_| pick(&g, Pick::default(), |_| false).unwrap())
            .collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert!(
            picks.contains(&0) && picks.contains(&2),
            "ties rotate: {picks:?}"
        );
        drop(held);
        assert_eq!(g.stats.total_in_flight(), 0);
    }

    #[test]
    fn least_connections_divides_by_weight() {
        let g = group(Algorithm::LeastConnections, &[4, 1]);
        // 3 in flight on a weight-4 backend is less load than 1 on a weight-1 backend.
        let _a: Vec<InFlight> = (0..3).map(|_| InFlight::start(g.stats, 0, false)).collect();
        let _b = InFlight::start(g.stats, 1, false);
        for _ in 0..4 {
            assert_eq!(pick(&g, Pick::default(), |_| false), Some(0));
        }
    }

    #[test]
    fn least_connections_samples_large_groups_well() {
        let g = group(Algorithm::LeastConnections, &[1; 1000]);
        // Load every backend but a tenth of them; sampling must land on idle ones mostly.
        let _held: Vec<InFlight> = (0..1000)
            .filter(|i: &usize| !i.is_multiple_of(10))
            .map(|i| InFlight::start(g.stats, i, false))
            .collect();
        let idle_picks = (0..1000)
            .filter(|_| {
                pick(&g, Pick::default(), |_| false)
                    .unwrap()
                    .is_multiple_of(10)
            })
            .count();
        // P(no idle among 8 samples) = 0.9^8 = 0.43, so about 57% land on idle backends.
        assert!(idle_picks > 450, "{idle_picks}");
    }

    #[test]
    fn ketama_moves_about_one_in_n_keys_when_a_backend_goes() {
        let g = group(Algorithm::Consistent, &[1; 10]);
        let by_key = |key: &[u8]| {
            let p = Pick {
                key: Some(key),
                sticky: None,
            };
            pick(&g, p, |_| false).unwrap()
        };
        let keys: Vec<Vec<u8>> = (0..10_000u32).map(|k| k.to_be_bytes().to_vec()).collect();
        let before: Vec<usize> = keys.iter().map(|k| by_key(k)).collect();
        g.stats.get(3).unwrap().set_healthy(false);
        let after: Vec<usize> = keys.iter().map(|k| by_key(k)).collect();
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        for (b, a) in before.iter().zip(&after) {
            if *b != 3 {
                assert_eq!(b, a, "a key not on the removed backend moved");
            }
        }
        let fraction = moved as f64 / keys.len() as f64;
        assert!((0.05..0.15).contains(&fraction), "moved {fraction}");
    }

    #[test]
    fn every_algorithm_skips_unready_and_excluded_backends() {
        for (name, algorithm) in Algorithm::ALL {
            let g = group(*algorithm, &[1, 2, 3, 1]);
            g.stats.get(0).unwrap().set_healthy(false);
            for seq in 0..50u32 {
                let key = seq.to_be_bytes();
                let p = Pick {
                    key: Some(&key),
                    sticky: Some(0),
                };
                let i = pick(&g, p, |i| i == 2).unwrap();
                assert!(i == 1 || i == 3, "{name} picked {i}");
            }
            for i in 0..4 {
                g.stats.get(i).unwrap().set_healthy(false);
            }
            assert_eq!(pick(&g, Pick::default(), |_| false), None, "{name}");
        }
    }

    #[test]
    fn an_unavailable_backends_turns_spread_over_the_others() {
        for algorithm in [
            Algorithm::WeightedRoundRobin,
            Algorithm::LeastConnections,
            Algorithm::P2c,
        ] {
            let g = group(algorithm, &[1, 1, 1, 1]);
            g.stats.get(1).unwrap().set_healthy(false);
            let s = shares(&g, 3_000);
            assert_eq!(s[1], 0.0, "{algorithm:?}: {s:?}");
            for i in [0, 2, 3] {
                assert!((s[i] - 1.0 / 3.0).abs() < 0.05, "{algorithm:?}: {s:?}");
            }
        }
    }

    #[test]
    fn first_prefers_config_order() {
        let g = group(Algorithm::First, &[1, 1, 1]);
        assert_eq!(pick(&g, Pick::default(), |_| false), Some(0));
        assert_eq!(pick(&g, Pick::default(), |i| i == 0), Some(1));
        g.stats.get(1).unwrap().set_healthy(false);
        assert_eq!(pick(&g, Pick::default(), |i| i == 0), Some(2));
    }
}
