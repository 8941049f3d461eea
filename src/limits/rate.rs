//! Per-client request rate limiting: a token bucket per client IP, with bounded memory.
//!
//! Each client's bucket is one number, its theoretical arrival time (the GCRA form of a token
//! bucket): a request is allowed when the client is no more than `burst - 1` intervals ahead
//! of its sustained rate, and each allowed request moves it one interval ahead. A client
//! whose time is in the past has a full bucket, exactly like a client never seen, so such
//! entries can be forgotten at any moment without changing any answer: that is how the table
//! stays within `max_clients`. Making room costs a bounded number of steps, whatever the
//! table's size: a clock hand looks at the next [`EVICTION_SCAN`] entries of the full shard and
//! forgets the first one back at a full bucket, or, when all of them are still ahead of their
//! rate (a flood of distinct addresses), the one of them closest to a full bucket.

use crate::config::model::RateLimit;
use std::collections::hash_map::{DefaultHasher, HashMap};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Independent locks; a client always maps to the same one.
const SHARDS: usize = 32;

/// Entries a full shard looks at to make room for a new client.
pub const EVICTION_SCAN: usize = 8;

/// One shard: clients in slots, a client's slot by address, and the clock hand.
#[derive(Debug, Default)]
struct Shard {
    /// (client, theoretical arrival time) per slot.
    slots: Vec<(IpAddr, u64)>,
    slot_of: HashMap<IpAddr, usize>,
    /// The next slot eviction looks at.
    hand: usize,
}

impl Shard {
    /// The client's theoretical arrival time, if remembered.
    fn get(&self, client: &IpAddr) -> Option<u64> {
        self.slot_of.get(client).map(|&i| self.slots[i].1)
    }

    /// Remember the client's arrival time, replacing a forgotten client when the shard holds
    /// `capacity` already.
    fn set(&mut self, client: IpAddr, tat: u64, now: u64, capacity: usize) {
        if let Some(&i) = self.slot_of.get(&client) {
            self.slots[i].1 = tat;
        } else if self.slots.len() < capacity {
            self.slot_of.insert(client, self.slots.len());
            self.slots.push((client, tat));
        } else {
            let i = self.make_room(now);
            self.slot_of.remove(&self.slots[i].0);
            self.slot_of.insert(client, i);
            self.slots[i] = (client, tat);
        }
    }

    /// The slot to give a new client: among the next [`EVICTION_SCAN`] slots from the clock
    /// hand, the first whose client is back at a full bucket (forgetting it changes no
    /// answer), or else the one nearest to a full bucket (whose answers change the least).
    fn make_room(&mut self, now: u64) -> usize {
        let n = self.slots.len();
        let mut nearest = self.hand % n;
        for step in 0..EVICTION_SCAN.min(n) {
            let i = (self.hand + step) % n;
            if self.slots[i].1 <= now {
                nearest = i;
                break;
            }
            if self.slots[i].1 < self.slots[nearest].1 {
                nearest = i;
            }
        }
        self.hand = (nearest + 1) % n;
        nearest
    }
}

/// The shard a client always maps to.
fn shard_of(client: IpAddr) -> usize {
    let mut h = DefaultHasher::new();
    client.hash(&mut h);
    h.finish() as usize % SHARDS
}

/// A per-client-IP token bucket table.
#[derive(Debug)]
pub struct RateLimiter {
    /// Nanoseconds between two requests at the sustained rate.
    interval: u64,
    /// How far ahead of its rate a client may be: `(burst - 1) * interval`.
    tolerance: u64,
    /// Most entries per shard.
    shard_capacity: usize,
    shards: Box<[Mutex<Shard>]>,
    epoch: Instant,
}

impl RateLimiter {
    /// An empty table for `limit`.
    pub fn new(limit: &RateLimit) -> Self {
        let interval = (1e9 / limit.requests_per_second).round().max(1.0) as u64;
        RateLimiter {
            interval,
            tolerance: interval.saturating_mul(u64::from(limit.burst.max(1) - 1)),
            shard_capacity: limit.max_clients.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            epoch: Instant::now(),
        }
    }

    /// Count a request from `client` now: `Ok` when allowed, else how long until it would be.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let now = self.epoch.elapsed().as_nanos() as u64;
        self.check_at(client, now)
    }

    /// [`RateLimiter::check`] at a given time (nanoseconds since the table was made).
    pub fn check_at(&self, client: IpAddr, now: u64) -> Result<(), Duration> {
        let shard = &self.shards[shard_of(client)];
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        let tat = shard.get(&client).unwrap_or(now).max(now);
        if tat - now > self.tolerance {
            let wait = tat - now - self.tolerance;
            return Err(Duration::from_nanos(wait));
        }
        shard.set(client, tat + self.interval, now, self.shard_capacity);
        Ok(())
    }

    /// Clients remembered now.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|s| self.shard_len(s)).sum()
    }

    /// Clients remembered now in one shard.
    fn shard_len(&self, shard: usize) -> usize {
        let shard = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        shard.slots.len()
    }

    /// True when no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn limiter(rps: f64, burst: u32, max_clients: usize) -> RateLimiter {
        RateLimiter::new(&RateLimit {
            requests_per_second: rps,
            burst,
            max_clients,
        })
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn allows_the_burst_then_the_rate() {
        let l = limiter(10.0, 5, 100);
        let a = ip(1);
        for _ in 0..5 {
            assert_eq!(l.check_at(a, 0), Ok(()));
        }
        let wait = l.check_at(a, 0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        // Another client is not affected.
        assert_eq!(l.check_at(ip(2), 0), Ok(()));
        // One interval later, exactly one more request.
        assert_eq!(l.check_at(a, SECOND / 10), Ok(()));
        assert!(l.check_at(a, SECOND / 10).is_err());
        // Over ten seconds at 10/s: about 100 allowed, plus the burst.
        let allowed = (0..1000u64)
            .filter(|i| l.check_at(a, SECOND + i * SECOND / 100).is_ok())
            .count();
        assert!((99..=106).contains(&allowed), "{allowed}");
    }

    /// `count` distinct addresses that all map to the same shard as `ip(1)`.
    fn same_shard(count: usize) -> Vec<IpAddr> {
        let shard = shard_of(ip(1));
        (1..)
            .map(ip)
            .filter(|a| shard_of(*a) == shard)
            .take(count)
            .collect()
    }

    #[test]
    fn a_full_shard_forgets_a_client_to_make_room() {
        // 4 clients per shard.
        let l = limiter(1.0, 1, 4 * SHARDS);
        let shard = shard_of(ip(1));
        let clients = same_shard(1000);
        // All ahead of their rate: each newcomer replaces one, the shard never grows.
        for c in &clients {
            assert_eq!(l.check_at(*c, 0), Ok(()));
        }
        assert_eq!(l.shard_len(shard), 4);
        assert_eq!(l.len(), 4);
        // Later, with every bucket full again, still 4.
        for c in &clients[..100] {
            assert_eq!(l.check_at(*c, 2 * SECOND), Ok(()));
        }
        assert_eq!(l.shard_len(shard), 4);
    }

    #[test]
    fn a_full_shard_forgets_a_refilled_client_before_a_limited_one() {
        let l = limiter(1.0, 3, 4 * SHARDS);
        let c = same_shard(6);
        // c[0] takes the first slot, then the others fill the shard; all at t = 0.
        for client in &c[..4] {
            assert_eq!(l.check_at(*client, 0), Ok(()));
        }
        // At 5 s the others' buckets are full again; c[0] uses its burst and is limited.
        for _ in 0..3 {
            assert_eq!(l.check_at(c[0], 5 * SECOND), Ok(()));
        }
        assert!(l.check_at(c[0], 5 * SECOND).is_err());
        // Two newcomers: the clock hand passes c[0] and takes refilled clients' slots.
        for newcomer in &c[4..6] {
            assert_eq!(l.check_at(*newcomer, 5 * SECOND), Ok(()));
        }
        assert!(l.check_at(c[0], 5 * SECOND).is_err(), "c[0] was forgotten");
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_addresses() {
        let l = limiter(1.0, 1, 1000);
        for n in 0..100_000 {
            assert_eq!(l.check_at(ip(n), 0), Ok(()));
        }
        // Bounded by shard capacity (1000 / 32 rounded up, per shard).
        assert!(l.len() <= 32 * 1000usize.div_ceil(32), "{}", l.len());
        // Once their buckets refill, old clients are forgotten to make room.
        for n in 0..1000 {
            assert_eq!(l.check_at(ip(1_000_000 + n), 2 * SECOND), Ok(()));
        }
        assert!(l.len() <= 32 * 1000usize.div_ceil(32));
    }

    #[test]
    fn a_limited_client_stays_limited_while_others_come_and_go() {
        // 2 clients per shard, and a flood in `a`'s own shard.
        let l = limiter(1.0, 2, 2 * SHARDS);
        let clients = same_shard(21);
        let a = clients[0];
        assert!(l.check_at(a, 0).is_ok() && l.check_at(a, 0).is_ok());
        assert!(l.check_at(a, 0).is_err());
        // Every newcomer evicts the client nearest a full bucket; `a` is the furthest ahead,
        // so the newcomers replace each other.
        for n in &clients[1..] {
            assert_eq!(l.check_at(*n, 0), Ok(()));
        }
        assert_eq!(l.shard_len(shard_of(a)), 2);
        assert!(l.check_at(a, 0).is_err());
    }
}
