//! `consistent`: Pingora's Ketama ring (`pingora_ketama::Continuum`, as `KetamaHashing` builds
//! it), point for point, with a faster lookup.
//!
//! The ring is the same: 160 points per unit of weight for each backend, in the order of
//! Pingora's backend set, each point the CRC-32 of `"{ip}\0{port}"` followed by the previous
//! point's hash; sorted the same way and with the same duplicates dropped; a key's CRC-32 lands
//! on the first point at or after it, wrapping around. So every key maps to exactly the backend
//! `KetamaHashing` would choose, and walking on from there (for a backend that cannot take the
//! request) visits the same points in the same order as its `BackendIter`.
//!
//! What differs is finding the point. Pingora binary-searches all the points (160,000 at 1,000
//! backends of weight 1, far more than the caches hold for random keys) and then looks the
//! point's address up in a `HashMap` of backends, per step. Here a table indexed by the top
//! 16 bits of the hash gives the first candidate point, a short forward scan finds the one
//! (about 7 points per table slot at 1,000 backends of mixed weights, usually none at 3), and
//! each point carries its backend's slot, an index into the backends' config indexes.
//!
//! Hash collisions between backends (a few dozen among 480,000 points) are settled as Pingora
//! settles them: whichever point the standard library's unstable sort leaves first. That sort
//! is deterministic, and fulcrum and pingora-ketama are always built by the same compiler, so
//! the same points in the same order give the same result; a unit test aims keys at every
//! collision to check it.

use super::crc32;
use super::BackendIndex;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_load_balancing::Backend;
use std::cmp::Ordering;
use std::collections::BTreeSet;

/// Points per unit of weight: `pingora_ketama::DEFAULT_POINT_MULTIPLE` (nginx's 160).
pub const POINTS_PER_WEIGHT: u32 = 160;

/// One point of the ring while it is built. Deliberately the shape of pingora-ketama's
/// `PointV1` (two `u32`s, `Clone` but not `Copy`, ordered by `hash` alone) so that the standard
/// library's unstable sort, fed the same points in the same order, leaves equal hashes from
/// different backends in the same order, and the same one survives de-duplication.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Point {
    /// The backend's slot: its position among the set's IP backends, as a `u16` (as
    /// pingora-ketama stores it, which also caps a ring at 65,536 distinct backends).
    node: u32,
    hash: u32,
}

impl Ord for Point {
    fn cmp(&self, other: &Self) -> Ordering {
        self.hash.cmp(&other.hash)
    }
}

impl PartialOrd for Point {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Bits of the hash that index the lookup table: 65,536 slots (256 KiB).
const TABLE_BITS: u32 = 16;

/// A Ketama ring over a group's backends, answering with config indexes.
///
/// Four bytes a point (half of Pingora's eight): the table slot gives a point's top 16 hash
/// bits, so a point keeps only its low 16 bits (high half) and its backend's slot (low half),
/// and comparing those words compares hashes within a slot.
pub struct Ring {
    /// The points, by hash: `low 16 bits of the hash << 16 | backend slot`.
    points: Box<[u32]>,
    /// `start[t]`: the first point whose hash's top 16 bits are `t` or more; one extra entry
    /// (the number of points) ends the last slot.
    start: Box<[u32]>,
    /// Config index of each backend slot.
    nodes: Box<[u32]>,
}

impl Ring {
    /// The ring `KetamaHashing::build(backends)` makes. Each backend is known by its
    /// [`BackendIndex`] (its position in `backends` when it has none); backends that are not
    /// IP addresses are left out, as Pingora does.
    pub fn build(backends: &BTreeSet<Backend>) -> Self {
        let mut points = Vec::new();
        let mut nodes = Vec::new();
        let inet = backends
            .iter()
            .enumerate()
            .filter_map(|(position, b)| match &b.addr {
                SocketAddr::Inet(addr) => Some((position, b, addr)),
                _ => None,
            });
        for (slot, (position, b, addr)) in inet.enumerate() {
            if slot <= u16::MAX as usize {
                nodes.push(b.ext.get::<BackendIndex>().map_or(position, |i| i.0) as u32);
            }
            let node = u32::from(slot as u16);
            let seed = crc32::hash(format!("{}\0{}", addr.ip(), addr.port()).as_bytes());
            let mut prev = 0u32;
            for _ in 0..(b.weight as u32).saturating_mul(POINTS_PER_WEIGHT) {
                let hash = crc32::update(seed, &prev.to_le_bytes());
                points.push(Point { node, hash });
                prev = hash;
            }
        }
        points.sort_unstable();
        points.dedup_by(|a, b| a.hash == b.hash);

        let shift = 32 - TABLE_BITS;
        let mut start = Vec::with_capacity((1 << TABLE_BITS) + 1);
        let mut i = 0;
        for t in 0..1u32 << TABLE_BITS {
            while i < points.len() && points[i].hash >> shift < t {
                i += 1;
            }
            start.push(i as u32);
        }
        start.push(points.len() as u32);
        Ring {
            points: points
                .iter()
                .map(|p| p.hash << TABLE_BITS | p.node)
                .collect(),
            start: start.into_boxed_slice(),
            nodes: nodes.into_boxed_slice(),
        }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when the ring has no points (no backends).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The position of the first point at or after `hash`, wrapping to 0 past the last one
    /// (`pingora_ketama`'s `node_idx`). The ring must not be empty.
    fn position(&self, hash: u32) -> usize {
        let t = (hash >> (32 - TABLE_BITS)) as usize;
        let (mut i, end) = (self.start[t] as usize, self.start[t + 1] as usize);
        // Within the slot, points below the key's low bits (with any backend slot) come first.
        let low = hash << TABLE_BITS;
        while i < end && self.points[i] < low {
            i += 1;
        }
        if i == self.points.len() {
            0
        } else {
            i
        }
    }

    /// The config index of the backend at point `i`.
    fn node(&self, i: usize) -> usize {
        let slot = (self.points[i] & 0xFFFF) as usize;
        self.nodes[slot] as usize
    }

    /// The config index of the backend `key` maps to (`None` for an empty ring).
    pub fn get(&self, key: &[u8]) -> Option<usize> {
        self.walk(key).next()
    }

    /// The backends of the points from `key`'s onwards, around and around the ring (a backend
    /// appears once per point it has): the order `KetamaHashing`'s iterator yields them in.
    pub fn walk(&self, key: &[u8]) -> Walk<'_> {
        let pos = if self.is_empty() {
            0
        } else {
            self.position(crc32::hash(key))
        };
        Walk { ring: self, pos }
    }
}

/// The points of a [`Ring`] from a key's one onwards, as config indexes; endless unless the
/// ring is empty.
pub struct Walk<'a> {
    ring: &'a Ring,
    pos: usize,
}

impl Iterator for Walk<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let len = self.ring.len();
        if len == 0 {
            return None;
        }
        let node = self.ring.node(self.pos);
        self.pos += 1;
        if self.pos == len {
            self.pos = 0;
        }
        Some(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_load_balancing::selection::consistent::KetamaHashing;
    use pingora_load_balancing::selection::{BackendIter, BackendSelection};
    use std::sync::Arc;

    /// `n` backends in config order with the weights `weight(i)` and their indexes in `ext`.
    fn backends(n: usize, weight: impl Fn(usize) -> usize) -> BTreeSet<Backend> {
        (0..n)
            .map(|i| {
                let mut b = Backend::new_with_weight(
                    &format!(
                        "10.{}.{}.{}:{}",
                        i / 65536,
                        i / 256 % 256,
                        i % 256,
                        8000 + i % 7
                    ),
                    weight(i),
                )
                .unwrap();
                b.ext.insert(BackendIndex(i));
                b
            })
            .collect()
    }

    fn index(b: &Backend) -> usize {
        b.ext.get::<BackendIndex>().unwrap().0
    }

    /// The first `steps` backends Pingora's iterator yields for `key`.
    fn pingora_walk(p: &Arc<KetamaHashing>, key: &[u8], steps: usize) -> Vec<usize> {
        let mut it = p.iter(key);
        (0..steps).map_while(|_| it.next().map(index)).collect()
    }

    fn sets() -> Vec<(&'static str, BTreeSet<Backend>)> {
        vec![
            ("3 equal", backends(3, |_| 1)),
            ("3 mixed", backends(3, |i| [1, 5, 2][i])),
            ("10 mixed", backends(10, |i| i % 4 + 1)),
            ("100 mixed", backends(100, |i| i % 5 + 1)),
            ("1000 mixed", backends(1000, |i| i % 5 + 1)),
            ("1000 equal", backends(1000, |_| 1)),
        ]
    }

    #[test]
    fn maps_100k_keys_like_pingora_and_walks_the_same_way() {
        for (name, set) in sets() {
            let ring = Ring::build(&set);
            let pingora = Arc::new(KetamaHashing::build(&set));
            for k in 0..100_000u32 {
                // Short binary keys and text keys like a client address.
                let text = format!("192.168.{}.{}", k / 256, k % 256);
                for key in [&k.to_be_bytes()[..], text.as_bytes()] {
                    let mut it = pingora.iter(key);
                    let first = it.next().map(index);
                    assert_eq!(ring.get(key), first, "{name}: key {key:?}");
                }
            }
            for k in 0..2_000u32 {
                let key = k.to_le_bytes();
                let ours: Vec<usize> = ring.walk(&key).take(40).collect();
                assert_eq!(ours, pingora_walk(&pingora, &key, 40), "{name}: walk {k}");
            }
        }
    }

    #[test]
    fn every_point_and_every_hash_collision_agrees_with_pingora() {
        for (name, set) in sets() {
            let ring = Ring::build(&set);
            let pingora = Arc::new(KetamaHashing::build(&set));
            // Count every generated hash, to find those several points share.
            let mut all: Vec<u32> = Vec::new();
            for b in &set {
                let SocketAddr::Inet(addr) = &b.addr else {
                    unreachable!()
                };
                let seed = crc32::hash(format!("{}\0{}", addr.ip(), addr.port()).as_bytes());
                let mut prev = 0u32;
                for _ in 0..b.weight as u32 * POINTS_PER_WEIGHT {
                    prev = crc32::update(seed, &prev.to_le_bytes());
                    all.push(prev);
                }
            }
            all.sort_unstable();
            let collided: Vec<u32> = all
                .windows(2)
                .filter(|w| w[0] == w[1])
                .map(|w| w[0])
                .collect();
            all.dedup();
            assert_eq!(ring.len(), all.len(), "{name}");
            // Aim a key at every point (the whole ring for the smaller sets), at both sides of
            // it, and at every collision: the backend that kept a shared hash must be Pingora's.
            let step = (all.len() / 20_000).max(1);
            let aimed = all
                .iter()
                .step_by(step)
                .flat_map(|&h| [h, h.wrapping_add(1), h.wrapping_sub(1)])
                .chain(collided.iter().copied())
                .chain([0, u32::MAX]);
            for target in aimed {
                let key = crc32::four_bytes_hashing_to(target);
                assert_eq!(
                    ring.walk(&key).take(3).collect::<Vec<_>>(),
                    pingora_walk(&pingora, &key, 3),
                    "{name}: hash {target:#x}"
                );
            }
            if name == "1000 mixed" {
                // 480,000 points: about 27 shared hashes expected.
                assert!(
                    !collided.is_empty(),
                    "{name}: expected some collisions to check"
                );
            }
        }
    }

    #[test]
    fn an_empty_ring_has_no_answer() {
        let ring = Ring::build(&BTreeSet::new());
        assert!(ring.is_empty());
        assert_eq!(ring.get(b"key"), None);
        assert_eq!(ring.walk(b"key").next(), None);
    }
}
