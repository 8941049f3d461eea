//! A group's backends at one moment: [`Members`], an immutable snapshot that requests read
//! without locks, and the slots that tie each backend to its row of the group's
//! [`GroupStats`] table.
//!
//! A group's backends change at run time (discovery, the runtime API). Each change builds a
//! new snapshot, selectors included, and publishes it in one atomic swap
//! ([`super::UpstreamGroup`]); a request keeps the snapshot it started with until it ends. A
//! backend holds the same *slot* (its index in the stats table, in every selector and in
//! every per-backend table) for as long as it stays in the group, so its health, breaker and
//! counters carry over from one snapshot to the next. A slot is given back, and may go to
//! another backend, only once nothing is in flight on it and a grace period has passed since
//! its backend left: no request can still count into it by then ([`SlotPool`]).

use super::stats::{GroupStats, State};
use super::sticky::StickyCookies;
use super::{Chosen, Pick, Selector};
use crate::config::model::{self, Algorithm};
use http::HeaderValue;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::Backend;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Where a backend came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The config's `backends:`.
    Static,
    /// Added through the runtime API.
    Api,
    /// `discovery: {dns: ...}` or `{dns_srv: ...}`.
    Dns,
    /// `discovery: {file: ...}`.
    File,
}

impl Source {
    /// The name shown by `/status` and the runtime API.
    pub fn name(self) -> &'static str {
        match self {
            Source::Static => "static",
            Source::Api => "api",
            Source::Dns => "dns",
            Source::File => "file",
        }
    }
}

/// How long a removed backend's slot stays retired, at the least, before another backend may
/// take it: longer than any request spends between reading a snapshot and counting itself in
/// flight (one synchronous step of selection), so that no request can count into a slot that
/// changed hands.
pub const RETIRE_GRACE: Duration = Duration::from_secs(2);

/// The slots of a group's stats table: free ones, lowest first, and retired ones (their backend
/// left) that come free once nothing is in flight on them and [`RETIRE_GRACE`] has passed.
///
/// Requests do not hold a reference to the snapshot they chose from (that reference count
/// would be a cache line every worker thread writes, see [`super::UpstreamGroup::with_members`]);
/// the in-flight count of the backend they chose is their hold on its slot.
#[derive(Debug)]
pub struct SlotPool {
    free: BTreeSet<usize>,
    retired: Vec<(usize, Instant)>,
    grace: Duration,
    stats: &'static GroupStats,
}

impl SlotPool {
    /// Every slot of `stats` free; retired slots wait `grace`.
    pub fn new(stats: &'static GroupStats, grace: Duration) -> Self {
        SlotPool {
            free: (0..stats.capacity()).collect(),
            retired: Vec::new(),
            grace,
            stats,
        }
    }

    /// Take the lowest free slot for a new backend, its counters reset; `None` when the group
    /// is full.
    pub fn take(&mut self, healthy: bool, now: Instant) -> Option<usize> {
        self.reclaim(now);
        let slot = self.free.pop_first()?;
        self.stats.reset(slot, healthy);
        Some(slot)
    }

    /// The backend on `slot` left the group at `now`: it takes no new request
    /// ([`State::Removed`]) and its slot waits until the requests on it end.
    pub fn retire(&mut self, slot: usize, now: Instant) {
        if let Some(s) = self.stats.get(slot) {
            s.set_state(State::Removed);
        }
        self.retired.push((slot, now));
    }

    /// Slots a new backend could take now.
    pub fn available(&mut self, now: Instant) -> usize {
        self.reclaim(now);
        self.free.len()
    }

    /// Free the retired slots that nothing is in flight on, once their grace has passed.
    fn reclaim(&mut self, now: Instant) {
        let (grace, stats, free) = (self.grace, self.stats, &mut self.free);
        self.retired.retain(|&(slot, since)| {
            let done = now.saturating_duration_since(since) >= grace && stats.in_flight(slot) == 0;
            if done {
                free.insert(slot);
            }
            !done
        });
    }
}

/// One backend of a snapshot.
#[derive(Debug, Clone)]
pub struct Member {
    /// Address, TLS name and current weight.
    pub backend: model::Backend,
    /// Where it came from.
    pub source: Source,
    /// The prepared peer.
    pub peer: HttpPeer,
    /// The address as a header value (for `served_by`).
    pub served_by: HeaderValue,
    /// The slot it holds.
    pub slot: usize,
}

impl Member {
    /// The slot: index into the stats table, the selectors and every per-backend table.
    pub fn slot(&self) -> usize {
        self.slot
    }
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members")
            .field("generation", &self.generation)
            .field("slots", &self.present)
            .finish_non_exhaustive()
    }
}

/// A group's backends and selectors at one moment.
pub struct Members {
    /// By slot; `None` for free slots below the highest one in use.
    by_slot: Vec<Option<Member>>,
    /// Slots in use, in order.
    present: Vec<usize>,
    keyed: Option<Selector>,
    plain: Selector,
    sticky: Option<StickyCookies>,
    max_steps: usize,
    /// Counts the snapshots of the group (1 for the first).
    pub generation: u64,
}

impl Members {
    /// The snapshot of `members` (each on its own slot) for `config`'s algorithm.
    pub fn build(
        config: &model::Upstream,
        stats: &'static GroupStats,
        members: Vec<Member>,
        generation: u64,
    ) -> Self {
        let span = members.iter().map(|m| m.slot() + 1).max().unwrap_or(0);
        let mut by_slot: Vec<Option<Member>> = vec![None; span];
        let mut weights = vec![0u64; span];
        let mut set = BTreeSet::new();
        for m in members {
            let mut backend = Backend {
                addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(m.backend.addr),
                weight: m.backend.weight as usize,
                ext: Default::default(),
            };
            backend.ext.insert(super::BackendIndex(m.slot()));
            set.insert(backend);
            weights[m.slot()] = u64::from(m.backend.weight);
            let slot = m.slot();
            by_slot[slot] = Some(m);
        }
        let present: Vec<usize> = (0..span).filter(|&i| by_slot[i].is_some()).collect();
        let selector = |algorithm| Selector::new(algorithm, &set, &weights, stats);
        let (keyed, plain) = match config.algorithm {
            Algorithm::Consistent | Algorithm::IpHash => {
                (Some(selector(config.algorithm)), selector(config.fallback))
            }
            Algorithm::Cookie => (None, selector(config.fallback)),
            other => (None, selector(other)),
        };
        let sticky = config.sticky.as_ref().map(|s| {
            StickyCookies::new(
                s,
                by_slot
                    .iter()
                    .map(|m| m.as_ref().map(|m| &m.backend))
                    .collect::<Vec<_>>()
                    .as_slice(),
            )
        });
        // Enough steps for any of Pingora's iterators to reach every backend, random included.
        let max_steps = 64 + 8 * span;
        Members {
            by_slot,
            present,
            keyed,
            plain,
            sticky,
            max_steps,
            generation,
        }
    }

    /// Backends in the snapshot.
    pub fn len(&self) -> usize {
        self.present.len()
    }

    /// True when the group has no backend now.
    pub fn is_empty(&self) -> bool {
        self.present.is_empty()
    }

    /// One past the highest slot in use: per-slot loops run to here.
    pub fn span(&self) -> usize {
        self.by_slot.len()
    }

    /// The backend on a slot.
    #[inline]
    pub fn get(&self, slot: usize) -> Option<&Member> {
        self.by_slot.get(slot).and_then(Option::as_ref)
    }

    /// Every backend, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.present.iter().filter_map(|&i| self.get(i))
    }

    /// The backend with this address.
    pub fn find(&self, addr: SocketAddr) -> Option<&Member> {
        self.iter().find(|m| m.backend.addr == addr)
    }

    /// For `cookie` groups: the sticky cookies of this snapshot's backends.
    pub fn sticky(&self) -> Option<&StickyCookies> {
        self.sticky.as_ref()
    }

    /// Pick a backend that may take traffic and is not excluded (it already failed for this
    /// request), or `None` when no backend is left. `slow_start` groups admit a backend that
    /// is ramping up with the probability of how far its ramp has come, on every choice but a
    /// keyed one (a key's backend must not flap).
    #[inline(always)]
    pub fn select(
        &self,
        stats: &GroupStats,
        pick: Pick<'_>,
        excluded: impl Fn(usize) -> bool,
    ) -> Option<Chosen> {
        use super::stats::Admission;
        if self.present.is_empty() {
            return None;
        }
        let trial = std::cell::Cell::new(false);
        let admitted = |a: Option<Admission>| match a {
            Some(Admission::Normal) => true,
            Some(Admission::Trial) => {
                trial.set(true);
                true
            }
            _ => false,
        };
        let eligible = |i: usize| !excluded(i) && stats.get(i).is_some_and(|s| s.is_ready());
        let accept = |i: usize| {
            if excluded(i) {
                return false;
            }
            let Some(s) = stats.get(i) else {
                return false;
            };
            if let Some(ramp) = s.ramp() {
                let keyed = pick.key.is_some() && self.keyed.is_some();
                if !keyed && super::fast_rng::unit() >= ramp {
                    return false;
                }
            }
            admitted(Some(s.admit()))
        };
        let sticky = pick
            .sticky
            .filter(|&i| !excluded(i) && admitted(stats.get(i).map(|s| s.admit_sticky())));
        let index = match sticky {
            Some(i) => Some(i),
            None => {
                let (selector, key) = match (&self.keyed, pick.key) {
                    (Some(keyed), Some(key)) => (keyed, key),
                    _ => (&self.plain, &[][..]),
                };
                selector
                    .select(key, self.max_steps, &eligible, &accept)
                    // A random walk can miss a lone acceptable backend (and a ramping one
                    // can be passed over every time): scan in order, ramps ignored.
                    .or_else(|| {
                        self.present
                            .iter()
                            .copied()
                            .find(|&i| !excluded(i) && admitted(stats.get(i).map(|s| s.admit())))
                    })
            }
        };
        index.map(|index| Chosen {
            index,
            trial: trial.get(),
        })
    }
}
