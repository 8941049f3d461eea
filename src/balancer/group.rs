//! [`UpstreamGroup`]: an upstream group at run time, whose backends may change while it
//! serves.
//!
//! Requests read the group's current [`Members`] snapshot without a lock and without writing
//! anything shared: each worker thread keeps its own reference to the snapshot and replaces it
//! when the group's published generation (one atomic load) moves on
//! ([`UpstreamGroup::with_members`]). Changes (discovery answers, the runtime API) are
//! serialized by one mutex on the writer side: each merges the group's sources, builds a new
//! snapshot (selectors included) and publishes it with one swap.
//!
//! What the group is made of, in order of precedence for an address given twice: the static
//! `backends:`, those added through the runtime API, and the discovered ones. The runtime API
//! may also override a backend's weight or state, or delete it; overrides are kept by
//! address, so a backend that leaves discovery and comes back keeps them.
//!
//! A backend that joins a serving group starts unhealthy when the group has health checks
//! (it takes traffic once its first check passes, which the health service runs at once), and
//! ramps up over `slow_start` when set. A backend that leaves is drained: no new request
//! chooses it, requests that chose it earlier finish on it, and its slot goes to no other
//! backend while any of them is in flight ([`SlotPool`]).

use super::members::{Member, Members, SlotPool, Source, RETIRE_GRACE};
use super::stats::{GroupStats, State};
use super::{Chosen, Pick};
use crate::config::model::{self, Backend};
use arc_swap::ArcSwap;
use http::HeaderValue;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod runtime;

/// Why the runtime API cannot make a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    /// No backend with this address in the group.
    UnknownBackend(SocketAddr),
    /// The backend is already in the group.
    Exists(SocketAddr),
    /// The change would leave the group with no enabled backend (pass `force` to insist).
    WouldEmpty,
    /// The group holds as many backends as it can.
    Full(usize),
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeError::UnknownBackend(a) => write!(f, "no backend {a} in this upstream"),
            ChangeError::Exists(a) => write!(f, "backend {a} is already in this upstream"),
            ChangeError::WouldEmpty => write!(
                f,
                "the change would leave the upstream with no enabled backend; \
                 add ?force=true to make it anyway"
            ),
            ChangeError::Full(n) => write!(f, "the upstream already holds {n} backends"),
        }
    }
}

impl std::error::Error for ChangeError {}

/// A runtime API override of one backend, kept by address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Override {
    /// State set through the API (`None`: enabled).
    pub state: Option<State>,
    /// Weight set through the API (`None`: the source's).
    pub weight: Option<u32>,
    /// Deleted through the API: left out whatever its source says.
    pub deleted: bool,
}

/// The writer side: the sources and overrides, the members they made last and the slots.
#[derive(Debug)]
struct Control {
    discovered: Vec<Backend>,
    discovered_source: Option<Source>,
    api: Vec<Backend>,
    overrides: BTreeMap<SocketAddr, Override>,
    current: BTreeMap<SocketAddr, Member>,
    generation: u64,
    slots: SlotPool,
}

/// Distinct connection-pool keys per group (see [`crate::peer::build`]).
static NEXT_GROUP_KEY: AtomicU64 = AtomicU64::new(0);

/// An upstream group ready to pick backends.
pub struct UpstreamGroup {
    /// The validated config of the group.
    pub config: model::Upstream,
    /// Per-slot counters and state (in-flight requests, health, ...).
    pub stats: &'static GroupStats,
    /// Wakes the health service when backends join.
    pub joined: tokio::sync::Notify,
    members: ArcSwap<Members>,
    /// The generation of the snapshot in `members`, stored after it.
    published: AtomicU64,
    control: Mutex<Control>,
    serving: AtomicBool,
    group_key: u64,
}

/// What an update changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Addresses that joined.
    pub added: Vec<SocketAddr>,
    /// Addresses that left.
    pub removed: Vec<SocketAddr>,
}

impl UpstreamGroup {
    /// The group with its static backends.
    pub fn new(config: model::Upstream) -> Self {
        Self::with_grace(config, RETIRE_GRACE)
    }

    /// [`new`](Self::new), with the time a removed backend's slot stays retired.
    fn with_grace(config: model::Upstream, grace: Duration) -> Self {
        let stats = GroupStats::leak(config.capacity(), config.circuit_breaker);
        let empty = Members::build(&config, stats, Vec::new(), 0);
        let control = Control {
            discovered: Vec::new(),
            discovered_source: None,
            api: Vec::new(),
            overrides: BTreeMap::new(),
            current: BTreeMap::new(),
            generation: 0,
            slots: SlotPool::new(stats, grace),
        };
        let group = UpstreamGroup {
            stats,
            joined: tokio::sync::Notify::new(),
            members: ArcSwap::from_pointee(empty),
            published: AtomicU64::new(0),
            control: Mutex::new(control),
            serving: AtomicBool::new(false),
            group_key: NEXT_GROUP_KEY.fetch_add(1, Ordering::Relaxed),
            config,
        };
        let mut control = group.lock();
        group.publish(&mut control);
        drop(control);
        group
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current snapshot, to keep (the status page, health checks). Requests use
    /// [`with_members`](Self::with_members) instead, which writes nothing shared.
    pub fn members(&self) -> Arc<Members> {
        self.members.load_full()
    }

    /// Run `f` on the current snapshot. The calling thread keeps its own reference to the
    /// snapshot and takes a new one only when the group publishes another, so the cost is one
    /// atomic load of a line that changes only with the group: no reference count per call,
    /// which every worker thread would write ([`super::held`]).
    #[inline(always)]
    pub fn with_members<R>(&self, f: impl FnOnce(&Members) -> R) -> R {
        f(&self.snapshot())
    }

    /// The current snapshot, borrowed for one synchronous step (see
    /// [`with_members`](Self::with_members)). The guard is not `Send`, so a request's future
    /// cannot hold it across an `await`.
    #[inline(always)]
    pub fn snapshot(&self) -> super::held::Snapshot {
        let published = self.published.load(Ordering::Acquire);
        super::held::borrow(self.group_key as usize, published, || {
            self.members.load_full()
        })
    }

    /// Backends now.
    pub fn len(&self) -> usize {
        self.members.load().len()
    }

    /// True when the group has no backend now.
    pub fn is_empty(&self) -> bool {
        self.members.load().is_empty()
    }

    /// Whether the backend on a slot may take traffic now (enabled, and health check and
    /// circuit breaker both allow it).
    #[inline]
    pub fn is_ready(&self, slot: usize) -> bool {
        self.stats.get(slot).is_some_and(|s| s.is_ready())
    }

    /// Pick a backend from the current snapshot (see [`Members::select`]).
    pub fn select(&self, pick: Pick<'_>, excluded: impl Fn(usize) -> bool) -> Option<Chosen> {
        self.snapshot().select(self.stats, pick, excluded)
    }

    /// From now on, backends that join start unhealthy until checked (with health checks)
    /// and ramp up over `slow_start`: the proxy serves.
    pub fn mark_serving(&self) {
        self.serving.store(true, Ordering::Relaxed);
    }

    /// Whether [`mark_serving`](Self::mark_serving) was called.
    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Relaxed)
    }

    /// Replace the discovered backends with `backends` (from `source`).
    pub fn set_discovered(&self, source: Source, backends: Vec<Backend>) -> Changes {
        let mut control = self.lock();
        control.discovered = backends;
        control.discovered_source = Some(source);
        self.publish(&mut control)
    }

    /// The runtime API's backends and overrides, for the state file.
    pub fn runtime_state(&self) -> (Vec<Backend>, BTreeMap<SocketAddr, Override>) {
        let control = self.lock();
        (control.api.clone(), control.overrides.clone())
    }

    /// Take over runtime API backends and overrides (from the state file).
    pub fn restore(&self, api: Vec<Backend>, overrides: BTreeMap<SocketAddr, Override>) {
        let mut control = self.lock();
        control.api = api;
        control.overrides = overrides;
        self.publish(&mut control);
    }

    /// Merge the sources, give joining backends slots, drain leaving ones and publish the
    /// snapshot.
    fn publish(&self, control: &mut Control) -> Changes {
        let discovered_source = control.discovered_source.unwrap_or(Source::Dns);
        let mut wanted: BTreeMap<SocketAddr, (Backend, Source)> = BTreeMap::new();
        let sources = [
            (self.config.backends.as_slice(), Source::Static),
            (control.api.as_slice(), Source::Api),
            (control.discovered.as_slice(), discovered_source),
        ];
        // Order of joining: the config's order, then the API's, then discovery's.
        let mut order: Vec<SocketAddr> = Vec::new();
        for (backends, source) in sources {
            for b in backends {
                let o = control.overrides.get(&b.addr).copied().unwrap_or_default();
                if o.deleted || wanted.contains_key(&b.addr) {
                    continue;
                }
                let mut b = b.clone();
                if let Some(w) = o.weight {
                    b.weight = w;
                }
                order.push(b.addr);
                wanted.insert(b.addr, (b, source));
            }
        }
        let mut changes = Changes::default();
        let now = Instant::now();
        let leaving: Vec<SocketAddr> = control
            .current
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for addr in leaving {
            if let Some(m) = control.current.remove(&addr) {
                control.slots.retire(m.slot(), now);
                changes.removed.push(addr);
            }
        }
        let checked = self.config.health_check.is_some();
        let serving = self.is_serving();
        for addr in order {
            let Some((backend, source)) = wanted.remove(&addr) else {
                continue;
            };
            let member = match control.current.remove(&addr) {
                Some(mut m) => {
                    if m.backend != backend {
                        m.peer = crate::peer::build(self.group_key, &self.config, &backend);
                        m.backend = backend;
                    }
                    m.source = source;
                    m
                }
                None => {
                    let Some(slot) = control.slots.take(!(serving && checked), now) else {
                        log::warn!(
                            "upstream {}: no room for backend {addr} (the group holds {} \
                             backends)",
                            self.config.name,
                            self.stats.capacity()
                        );
                        continue;
                    };
                    if serving {
                        if let (Some(window), Some(s)) =
                            (self.config.slow_start, self.stats.get(slot))
                        {
                            s.start_ramp(window);
                        }
                    }
                    changes.added.push(addr);
                    self.join(slot, backend, source)
                }
            };
            let o = control.overrides.get(&addr).copied().unwrap_or_default();
            if let Some(s) = self.stats.get(member.slot()) {
                s.set_state(o.state.unwrap_or(State::Enabled));
            }
            control.current.insert(addr, member);
        }
        control.generation += 1;
        let members: Vec<Member> = control.current.values().cloned().collect();
        let snapshot = Members::build(&self.config, self.stats, members, control.generation);
        self.members.store(Arc::new(snapshot));
        self.published.store(control.generation, Ordering::Release);
        if !changes.added.is_empty() {
            self.joined.notify_one();
        }
        changes
    }

    fn join(&self, slot: usize, backend: Backend, source: Source) -> Member {
        Member {
            peer: crate::peer::build(self.group_key, &self.config, &backend),
            served_by: HeaderValue::from_str(&backend.addr.to_string())
                .unwrap_or(HeaderValue::from_static("")),
            backend,
            source,
            slot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::stats::InFlight;
    use crate::balancer::test_upstream;
    use crate::config::model::{Algorithm, Discovery, DiscoverySource};
    use std::time::Duration;

    fn addr(i: usize) -> SocketAddr {
        format!("10.1.{}.{}:80", i / 200, i % 200 + 1)
            .parse()
            .unwrap()
    }

    fn fleet(ids: impl IntoIterator<Item = usize>) -> Vec<Backend> {
        ids.into_iter()
            .map(|i| Backend {
                addr: addr(i),
                host: None,
                weight: 1,
            })
            .collect()
    }

    /// A group with `statics` static backends and room for discovered ones.
    fn dynamic(algorithm: Algorithm, statics: usize) -> UpstreamGroup {
        let mut u = test_upstream(algorithm, &vec![1; statics]);
        u.discovery = Some(Discovery {
            source: DiscoverySource::Dns {
                name: "t.test".into(),
                port: 80,
            },
            interval: Duration::from_secs(5),
            required: true,
            max_backends: 64,
        });
        UpstreamGroup::new(u)
    }

    fn chosen_addr(g: &UpstreamGroup, key: &[u8]) -> SocketAddr {
        let m = g.members();
        let pick = Pick {
            key: Some(key),
            sticky: None,
        };
        let c = m.select(g.stats, pick, |_| false).unwrap();
        m.get(c.index).unwrap().backend.addr
    }

    #[test]
    fn consistent_moves_only_the_keys_of_backends_that_came_or_went() {
        let g = dynamic(Algorithm::Consistent, 0);
        g.set_discovered(Source::Dns, fleet(0..10));
        let keys: Vec<[u8; 4]> = (0..10_000u32).map(|k| k.to_be_bytes()).collect();
        let before: Vec<SocketAddr> = keys.iter().map(|k| chosen_addr(&g, k)).collect();
        // Backend 3 leaves, backend 10 joins.
        let changes = g.set_discovered(Source::Dns, fleet((0..10).filter(|&i| i != 3).chain([10])));
        assert_eq!(changes.added, vec![addr(10)]);
        assert_eq!(changes.removed, vec![addr(3)]);
        let mut moved = 0;
        for (k, b) in keys.iter().zip(&before) {
            let a = chosen_addr(&g, k);
            if a != *b {
                moved += 1;
                assert!(
                    *b == addr(3) || a == addr(10),
                    "a key moved from {b} to {a}, neither of which came or went"
                );
            }
        }
        let share = moved as f64 / keys.len() as f64;
        assert!((0.1..0.3).contains(&share), "moved {share}");
    }

    #[test]
    fn a_backend_that_stays_keeps_its_slot_state_and_cookie() {
        let mut u = test_upstream(Algorithm::Cookie, &[]);
        u.sticky = Some(crate::config::model::StickyCookie {
            name: "sid".into(),
            path: "/".into(),
            max_age: None,
            http_only: true,
            secure: false,
            same_site: None,
            secret: b"0123456789abcdef".to_vec(),
        });
        u.discovery = dynamic(Algorithm::Cookie, 0).config.discovery.clone();
        let g = UpstreamGroup::new(u);
        g.set_discovered(Source::Dns, fleet(0..3));
        let before = g.members();
        let kept = before.find(addr(1)).unwrap().slot();
        let cookie = before.sticky().unwrap().set_cookie(kept).unwrap().clone();
        g.stats.get(kept).unwrap().set_healthy(false);
        g.set_discovered(Source::Dns, fleet([1, 2, 5]));
        let after = g.members();
        assert_eq!(after.find(addr(1)).unwrap().slot(), kept);
        assert!(
            !g.stats.get(kept).unwrap().is_healthy(),
            "health carried over"
        );
        assert_eq!(after.sticky().unwrap().set_cookie(kept), Some(&cookie));
        assert!(after.find(addr(0)).is_none());
    }

    #[test]
    fn a_slot_is_reused_only_once_nothing_is_in_flight_on_it_and_its_grace_passed() {
        let mut u = dynamic(Algorithm::RoundRobin, 0).config.clone();
        u.name = "graceless".into();
        let g = UpstreamGroup::with_grace(u, Duration::ZERO);
        g.set_discovered(Source::Dns, fleet([0]));
        let held = g.members();
        let slot = held.find(addr(0)).unwrap().slot();
        let attempt = InFlight::start(g.stats, slot, false);
        g.set_discovered(Source::Dns, fleet([1]));
        // A request that chose backend 0 is still on it: backend 1 gets another slot, and
        // backend 0 takes no new request even from an old snapshot.
        assert_ne!(g.members().find(addr(1)).unwrap().slot(), slot);
        assert_eq!(held.select(g.stats, Pick::default(), |_| false), None);
        drop(attempt);
        g.set_discovered(Source::Dns, fleet([1, 2]));
        assert_eq!(g.members().find(addr(2)).unwrap().slot(), slot);
        assert_eq!(g.stats.requests(slot), 0, "a reused slot starts from zero");
        // With the default grace, a slot just given up is not taken at once.
        let d = dynamic(Algorithm::RoundRobin, 0);
        d.set_discovered(Source::Dns, fleet([0]));
        let first = d.members().find(addr(0)).unwrap().slot();
        d.set_discovered(Source::Dns, fleet([1]));
        assert_ne!(d.members().find(addr(1)).unwrap().slot(), first);
    }

    #[test]
    fn each_thread_sees_every_published_snapshot() {
        let g = Arc::new(dynamic(Algorithm::RoundRobin, 0));
        g.set_discovered(Source::Dns, fleet([0]));
        assert_eq!(g.with_members(|m| m.len()), 1);
        g.set_discovered(Source::Dns, fleet([0, 1, 2]));
        assert_eq!(g.with_members(|m| m.len()), 3);
        let other = Arc::clone(&g);
        let seen = std::thread::spawn(move || other.with_members(|m| m.generation))
            .join()
            .unwrap();
        assert_eq!(seen, g.members().generation);
        // A call from inside another still answers.
        let nested = g.with_members(|outer| g.with_members(|inner| inner.len()) + outer.len());
        assert_eq!(nested, 6);
    }

    #[test]
    fn runtime_changes_and_their_errors() {
        let g = dynamic(Algorithm::RoundRobin, 2);
        let a0 = g.config.backends[0].addr;
        let a1 = g.config.backends[1].addr;
        assert_eq!(g.add(a0, 1), Err(ChangeError::Exists(a0)));
        assert_eq!(
            g.patch(addr(9), Some(State::Drain), None, false),
            Err(ChangeError::UnknownBackend(addr(9)))
        );
        g.patch(a0, Some(State::Disabled), None, false).unwrap();
        assert_eq!(
            g.patch(a1, Some(State::Drain), None, false),
            Err(ChangeError::WouldEmpty)
        );
        assert_eq!(g.delete(a1, false), Err(ChangeError::WouldEmpty));
        g.patch(a1, None, Some(7), false).unwrap();
        assert_eq!(g.members().find(a1).unwrap().backend.weight, 7);
        g.add(addr(5), 2).unwrap();
        let added = g.members();
        let m = added.find(addr(5)).unwrap();
        assert_eq!((m.source, m.backend.weight), (Source::Api, 2));
        // Deleting a static backend keeps it out; force allows emptying.
        g.delete(a1, false).unwrap();
        assert!(g.members().find(a1).is_none());
        g.delete(addr(5), true).unwrap();
        assert!(g.members().find(addr(5)).is_none());
        let (api, overrides) = g.runtime_state();
        assert!(api.is_empty());
        assert!(overrides[&a1].deleted);
        assert_eq!(overrides[&a0].state, Some(State::Disabled));
        // A new process takes the state over.
        let h = dynamic(Algorithm::RoundRobin, 2);
        h.restore(api, overrides);
        assert!(h.members().find(a1).is_none());
        let slot = h.members().find(a0).unwrap().slot();
        assert_eq!(h.stats.get(slot).unwrap().state(), State::Disabled);
    }

    #[test]
    fn a_draining_backend_takes_only_its_sticky_requests() {
        let g = dynamic(Algorithm::RoundRobin, 2);
        let a0 = g.config.backends[0].addr;
        g.patch(a0, Some(State::Drain), None, false).unwrap();
        let m = g.members();
        let slot = m.find(a0).unwrap().slot();
        for _ in 0..10 {
            let c = m.select(g.stats, Pick::default(), |_| false).unwrap();
            assert_ne!(c.index, slot);
        }
        let sticky = Pick {
            key: None,
            sticky: Some(slot),
        };
        assert_eq!(m.select(g.stats, sticky, |_| false).unwrap().index, slot);
        g.patch(a0, Some(State::Disabled), None, false).unwrap();
        assert_ne!(g.select(sticky, |_| false).unwrap().index, slot);
    }

    #[test]
    fn slow_start_share_rises_over_the_window() {
        let mut u = test_upstream(Algorithm::RoundRobin, &[1, 1]);
        u.slow_start = Some(Duration::from_millis(400));
        let g = UpstreamGroup::new(u);
        g.mark_serving();
        g.add(addr(7), 1).unwrap();
        let slot = g.members().find(addr(7)).unwrap().slot();
        let share = |n: usize| {
            (0..n)
                .filter(|_| g.select(Pick::default(), |_| false).unwrap().index == slot)
                .count() as f64
                / n as f64
        };
        let early = share(3000);
        std::thread::sleep(Duration::from_millis(450));
        let late = share(3000);
        assert!(early < 0.1, "early share {early}");
        assert!((late - 1.0 / 3.0).abs() < 0.05, "late share {late}");
    }
}
