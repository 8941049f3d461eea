//! Per-client request rate limiting: a token bucket per client IP, with bounded memory.
//!
//! Each client's bucket is one number, its theoretical arrival time (the GCRA form of a token
//! bucket): a request is allowed when the client is no more than `burst - 1` intervals ahead
//! of its sustained rate, and each allowed request moves it one interval ahead. A client
//! whose time is in the past has a full bucket, exactly like a client never seen, so such
//! entries can be forgotten at any moment without changing any answer: that is how the table
//! stays within `max_clients`. When it is full of clients that are all still ahead of their
//! rate (a flood of distinct addresses), the one closest to a full bucket is forgotten.

use crate::config::model::RateLimit;
use std::collections::hash_map::{DefaultHasher, HashMap};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Independent locks; a client always maps to the same one.
const SHARDS: usize = 32;

/// A per-client-IP token bucket table.
#[derive(Debug)]
pub struct RateLimiter {
    /// Nanoseconds between two requests at the sustained rate.
    interval: u64,
    /// How far ahead of its rate a client may be: `(burst - 1) * interval`.
    tolerance: u64,
    /// Most entries per shard.
    shard_capacity: usize,
    shards: Box<[Mutex<HashMap<IpAddr, u64>>]>,
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
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
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
        let mut h = DefaultHasher::new();
        client.hash(&mut h);
        let shard = &self.shards[h.finish() as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let tat = map.get(&client).copied().unwrap_or(now).max(now);
        if tat - now > self.tolerance {
            let wait = tat - now - self.tolerance;
            return Err(Duration::from_nanos(wait));
        }
        if map.len() >= self.shard_capacity && !map.contains_key(&client) {
            Self::make_room(&mut map, now, self.shard_capacity);
        }
        map.insert(client, tat + self.interval);
        Ok(())
    }

    /// Forget every client back at a full bucket; if none is, the one nearest to it.
    fn make_room(map: &mut HashMap<IpAddr, u64>, now: u64, capacity: usize) {
        map.retain(|_, tat| *tat > now);
        if map.len() >= capacity {
            if let Some(nearest) = map.iter().min_by_key(|(_, t)| **t).map(|(ip, _)| *ip) {
                map.remove(&nearest);
            }
        }
    }

    /// Clients remembered now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
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
        let l = limiter(1.0, 2, 64);
        let a = ip(7);
        assert!(l.check_at(a, 0).is_ok() && l.check_at(a, 0).is_ok());
        assert!(l.check_at(a, 0).is_err());
        // A flood of distinct clients evicts the ones nearest a full bucket first; `a` is the
        // furthest ahead, so it is evicted last.
        for n in 0..20 {
            let _ = l.check_at(ip(100 + n), 0);
        }
        assert!(l.check_at(a, 0).is_err());
    }
}
