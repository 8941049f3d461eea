//! Per-backend counters and state that live outside the selectors.
//!
//! One table per upstream group, in config order: the load-aware selectors read its in-flight
//! counts, requests write them through [`InFlight`] guards, and health checks, the circuit
//! breaker, `/status` and the metrics share it.
//!
//! The two counts every request writes, in-flight and attempts, are striped per worker thread
//! ([`counts`](super::counts)).
//!
//! A group's table lives as long as the process (a config is loaded once; a reload is a new
//! process), so it is allocated once with [`GroupStats::leak`] and shared as `&'static`: no
//! reference count for two worker threads to fight over on every request.
//!
//! Whether a backend may take traffic combines two verdicts: the active health check's
//! (`healthy`) and the passive circuit breaker's. The breaker opens after `max_fails`
//! consecutive failed requests and ejects the backend for a cooldown; after it, exactly one
//! trial request is admitted (half-open): success closes the breaker, failure re-opens it with
//! a doubled cooldown, capped at `max_cooldown`.

use super::check_record::{CheckRecord, LastCheck};
use super::counts::{LoadView, StripedCounts};
use super::latency::LatencyWindow;
pub use super::latency::{Latency, LATENCY_WINDOW};
use super::padded::{CachePadded, LineBreak};
pub use super::state::State;
use crate::config::model::CircuitBreaker;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Milliseconds since the first call in this process (a monotonic clock).
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // +1 so that 0 can mean "not ejected".
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Counters and state for one backend.
///
/// Laid out for selection under contention: each backend's fields start on a 128-byte block
/// of their own (two backends never share a cache line), and within it the fields selection
/// reads on every pick but that change only with health or failures come first, then, on a
/// block of their own, those a finished request writes. So a pick's reads of readiness stay
/// cache hits while another core records a request to the same backend. In-flight and attempt
/// counts are not here but striped per thread in [`GroupStats`].
#[derive(Debug)]
#[repr(C, align(128))]
pub struct BackendStats {
    // Read on every pick; written on health and breaker changes and on failures.
    healthy: AtomicBool,
    /// A half-open trial request is in flight.
    trial: AtomicBool,
    consecutive_failures: AtomicU32,
    /// `now_ms()` deadline of the current ejection; 0 when the breaker is closed.
    ejected_until: AtomicU64,
    /// Length of the current (or last) ejection, in ms.
    cooldown_ms: AtomicU64,
    failures: AtomicU64,
    ejections: AtomicU64,
    /// [`State`] as set by the runtime API or by removal from the group.
    state: AtomicU8,
    /// `now_ms()` when a slow start began; 0 when the backend takes its full share.
    ramp_since: AtomicU64,
    /// Slow-start window in ms (0: none).
    ramp_ms: AtomicU64,
    _per_request: LineBreak,
    // Written by every request.
    connects_new: AtomicU64,
    connects_reused: AtomicU64,
    latency: LatencyWindow,
    /// The last active health check (written once per check).
    last_check: CheckRecord,
}

impl Default for BackendStats {
    fn default() -> Self {
        BackendStats {
            healthy: AtomicBool::new(true),
            trial: AtomicBool::new(false),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            cooldown_ms: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            state: AtomicU8::new(State::Enabled as u8),
            ramp_since: AtomicU64::new(0),
            ramp_ms: AtomicU64::new(0),
            _per_request: LineBreak,
            connects_new: AtomicU64::new(0),
            connects_reused: AtomicU64::new(0),
            latency: LatencyWindow::new(),
            last_check: CheckRecord::default(),
        }
    }
}

/// Whether selection may use a backend, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Not now: unhealthy, ejected, or its half-open trial is taken.
    Refused,
    /// Normal traffic.
    Normal,
    /// The single trial request of a half-open breaker.
    Trial,
}

impl BackendStats {
    /// Attempts that failed: connect errors, errors while proxying, and (when configured) 5xx
    /// or slow responses.
    pub fn failures(&self) -> u64 {
        self.failures.load(Relaxed)
    }

    /// Times the circuit breaker ejected this backend.
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Relaxed)
    }

    /// Record how long a request to this backend took (lock-free: one atomic increment and
    /// one atomic store).
    pub fn record_latency(&self, took: Duration) {
        self.latency.record(took);
    }

    /// Mean and p99 over the last [`LATENCY_WINDOW`] requests, exact to the microsecond.
    pub fn latency(&self) -> Latency {
        self.latency.summary()
    }

    /// Record the last active health check.
    pub fn record_check(&self, check: LastCheck) {
        self.last_check.set(check);
    }

    /// The last active health check, if one ran since this backend took its slot.
    pub fn last_check(&self) -> Option<LastCheck> {
        self.last_check.get()
    }

    /// Upstream connections used: (newly connected, reused from the pool).
    pub fn connections(&self) -> (u64, u64) {
        (
            self.connects_new.load(Relaxed),
            self.connects_reused.load(Relaxed),
        )
    }

    /// Count an upstream connection, new or reused.
    pub fn record_connection(&self, reused: bool) {
        if reused {
            self.connects_reused.fetch_add(1, Relaxed);
        } else {
            self.connects_new.fetch_add(1, Relaxed);
        }
    }

    /// The administrative state.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Relaxed))
    }

    /// Set the administrative state.
    pub fn set_state(&self, state: State) {
        self.state.store(state as u8, Relaxed);
    }

    /// Start a slow start of `window`: the backend's share ramps up from about 0.
    pub fn start_ramp(&self, window: Duration) {
        let ms = window.as_millis() as u64;
        if ms > 0 {
            self.ramp_ms.store(ms, Relaxed);
            self.ramp_since.store(now_ms(), Relaxed);
        }
    }

    /// How far a slow start has come: `None` when the backend takes its full share, else
    /// the fraction of the window elapsed, in `[0, 1)`.
    #[inline]
    pub fn ramp(&self) -> Option<f64> {
        let since = self.ramp_since.load(Relaxed);
        if since == 0 {
            return None;
        }
        let window = self.ramp_ms.load(Relaxed).max(1);
        let elapsed = now_ms().saturating_sub(since);
        if elapsed >= window {
            self.ramp_since.store(0, Relaxed);
            return None;
        }
        Some(elapsed as f64 / window as f64)
    }

    /// Back to a fresh backend's state, for a slot taken by a new backend.
    pub fn reset(&self, healthy: bool) {
        self.healthy.store(healthy, Relaxed);
        self.trial.store(false, Relaxed);
        self.reset_breaker();
        self.failures.store(0, Relaxed);
        self.ejections.store(0, Relaxed);
        self.state.store(State::Enabled as u8, Relaxed);
        self.ramp_since.store(0, Relaxed);
        self.connects_new.store(0, Relaxed);
        self.connects_reused.store(0, Relaxed);
        self.latency.clear();
        self.last_check.clear();
    }

    /// Whether active health checks consider the backend healthy.
    #[inline]
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    /// Record the active health-check verdict.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Relaxed);
    }

    /// Whether the circuit breaker is open or half-open.
    pub fn is_ejected(&self) -> bool {
        self.ejected_until.load(Relaxed) != 0
    }

    /// Whether the backend could take a request now (read-only; selection uses [`admit`]).
    ///
    /// [`admit`]: Self::admit
    #[inline]
    pub fn is_ready(&self) -> bool {
        if !self.is_healthy() || self.state.load(Relaxed) != State::Enabled as u8 {
            return false;
        }
        match self.ejected_until.load(Relaxed) {
            0 => true,
            until => now_ms() >= until && !self.trial.load(Relaxed),
        }
    }

    /// Admit a request: normal traffic, the one half-open trial, or nothing.
    #[inline]
    pub fn admit(&self) -> Admission {
        if self.state.load(Relaxed) != State::Enabled as u8 {
            return Admission::Refused;
        }
        self.admit_any_state()
    }

    /// [`admit`](Self::admit) for a request whose sticky cookie names this backend: a
    /// draining backend still takes it.
    #[inline]
    pub fn admit_sticky(&self) -> Admission {
        match self.state() {
            State::Enabled | State::Drain => self.admit_any_state(),
            _ => Admission::Refused,
        }
    }

    #[inline]
    fn admit_any_state(&self) -> Admission {
        if !self.is_healthy() {
            return Admission::Refused;
        }
        match self.ejected_until.load(Relaxed) {
            0 => Admission::Normal,
            until if now_ms() < until => Admission::Refused,
            _ => match self.trial.compare_exchange(false, true, Relaxed, Relaxed) {
                Ok(_) => Admission::Trial,
                Err(_) => Admission::Refused,
            },
        }
    }

    /// Close the circuit breaker: the active health check has just seen the backend come
    /// back, which is better evidence than waiting out a cooldown.
    pub fn reset_breaker(&self) {
        self.consecutive_failures.store(0, Relaxed);
        self.cooldown_ms.store(0, Relaxed);
        self.ejected_until.store(0, Relaxed);
    }

    /// A request to this backend succeeded.
    fn record_success(&self, trial: bool) {
        if self.consecutive_failures.load(Relaxed) != 0 {
            self.consecutive_failures.store(0, Relaxed);
        }
        if trial {
            self.ejected_until.store(0, Relaxed);
            self.cooldown_ms.store(0, Relaxed);
            self.trial.store(false, Relaxed);
        }
    }

    /// A request to this backend failed; returns the ejection length when it ejects.
    fn record_failure(&self, cb: &CircuitBreaker, trial: bool) -> Option<Duration> {
        self.failures.fetch_add(1, Relaxed);
        if cb.max_fails == 0 {
            return None;
        }
        let base = cb.cooldown.as_millis() as u64;
        let cap = cb.max_cooldown.as_millis() as u64;
        if trial {
            let next = (self.cooldown_ms.load(Relaxed).max(base) * 2).min(cap);
            self.cooldown_ms.store(next, Relaxed);
            self.ejected_until.store(now_ms() + next, Relaxed);
            self.trial.store(false, Relaxed);
            self.ejections.fetch_add(1, Relaxed);
            return Some(Duration::from_millis(next));
        }
        let n = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
        if n >= cb.max_fails
            && self
                .ejected_until
                .compare_exchange(0, now_ms() + base, Relaxed, Relaxed)
                .is_ok()
        {
            self.cooldown_ms.store(base, Relaxed);
            self.consecutive_failures.store(0, Relaxed);
            self.ejections.fetch_add(1, Relaxed);
            return Some(cb.cooldown);
        }
        None
    }
}

/// Counters for every backend of a group, in config order, and the group's breaker policy.
#[derive(Debug)]
pub struct GroupStats {
    backends: Box<[BackendStats]>,
    counts: StripedCounts,
    breaker: CircuitBreaker,
    /// Written on retries only, but kept off the line selection reads `backends` from.
    retries: CachePadded<AtomicU64>,
}

impl GroupStats {
    /// Fresh counters for `n` backends.
    pub fn new(n: usize, breaker: CircuitBreaker) -> Self {
        GroupStats {
            backends: (0..n).map(|_| BackendStats::default()).collect(),
            counts: StripedCounts::new(n),
            breaker,
            retries: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// Fresh counters for `n` backends that live for the rest of the process.
    pub fn leak(n: usize, breaker: CircuitBreaker) -> &'static GroupStats {
        Box::leak(Box::new(Self::new(n, breaker)))
    }

    /// The counters of the backend at a config index.
    #[inline]
    pub fn get(&self, index: usize) -> Option<&BackendStats> {
        self.backends.get(index)
    }

    /// In-flight requests of the backend at a config index (0 when out of range).
    pub fn in_flight(&self, index: usize) -> usize {
        self.counts.in_flight(index) as usize
    }

    /// In-flight counts as the calling thread's selection sees them: its own requests
    /// exactly, other threads' as of at most about 2 ms ago ([`LoadView`]).
    #[inline]
    pub fn loads(&self) -> LoadView<'_> {
        self.counts.view()
    }

    /// Attempts ever sent to the backend at a config index (a retried request counts once per
    /// backend tried).
    pub fn requests(&self, index: usize) -> u64 {
        self.counts.requests(index)
    }

    /// Sum of in-flight requests over the group.
    pub fn total_in_flight(&self) -> usize {
        (0..self.backends.len()).map(|i| self.in_flight(i)).sum()
    }

    /// Count a retry (a request moving on to another attempt).
    pub fn record_retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    /// Retries since start.
    pub fn retries(&self) -> u64 {
        self.retries.load(Relaxed)
    }

    /// Every slot's counters, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &BackendStats> {
        self.backends.iter()
    }

    /// Slots in the table: the most backends the group can hold.
    pub fn capacity(&self) -> usize {
        self.backends.len()
    }

    /// Give the slot at `index` to a new backend: fresh counters and state.
    pub fn reset(&self, index: usize, healthy: bool) {
        if let Some(b) = self.backends.get(index) {
            b.reset(healthy);
            self.counts.reset(index);
        }
    }

    /// The group's circuit-breaker policy.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

/// How an attempt ended, for the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered acceptably.
    Success,
    /// Connecting or proxying failed, or the answer counts as a failure.
    Failure,
}

/// One request attempt counted against one backend. Dropping it (when the request ends, moves
/// to another backend, or is abandoned) un-counts it exactly once; an attempt whose outcome
/// was never recorded gives back a half-open trial it held, changing nothing else.
#[derive(Debug)]
pub struct InFlight {
    stats: &'static GroupStats,
    index: usize,
    /// The stripe counted into, un-counted from the same one whichever thread drops it.
    stripe: usize,
    trial: bool,
    resolved: bool,
}

impl InFlight {
    /// Count an attempt against the backend at `index`; `trial` when it was admitted as the
    /// half-open trial.
    #[inline]
    pub fn start(stats: &'static GroupStats, index: usize, trial: bool) -> Self {
        let stripe = stats.counts.start(index);
        InFlight {
            stats,
            index,
            stripe,
            trial,
            resolved: false,
        }
    }

    /// The backend's config index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Record the outcome (once; later calls are ignored). Returns the ejection length when
    /// this failure ejected the backend.
    pub fn resolve(&mut self, outcome: Outcome) -> Option<Duration> {
        if self.resolved {
            return None;
        }
        self.resolved = true;
        let b = self.stats.get(self.index)?;
        match outcome {
            Outcome::Success => {
                b.record_success(self.trial);
                None
            }
            Outcome::Failure => b.record_failure(&self.stats.breaker, self.trial),
        }
    }
}

impl Drop for InFlight {
    #[inline]
    fn drop(&mut self) {
        if let Some(b) = self.stats.get(self.index) {
            self.stats.counts.end(self.stripe, self.index);
            if self.trial && !self.resolved {
                b.trial.store(false, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_never_share_a_cache_line_and_hot_counters_have_their_own() {
        use crate::balancer::padded::PAD;
        assert_eq!(std::mem::align_of::<BackendStats>(), PAD);
        assert_eq!(std::mem::size_of::<BackendStats>(), 2 * PAD);
        assert_eq!(std::mem::offset_of!(BackendStats, connects_new), PAD);
        assert!(std::mem::offset_of!(BackendStats, ejected_until) < PAD);
    }

    fn breaker(max_fails: u32, cooldown_ms: u64) -> CircuitBreaker {
        CircuitBreaker {
            max_fails,
            cooldown: Duration::from_millis(cooldown_ms),
            max_cooldown: Duration::from_millis(cooldown_ms * 3),
            ..CircuitBreaker::default()
        }
    }

    #[test]
    fn guards_count_exactly_once() {
        let stats = GroupStats::leak(2, CircuitBreaker::default());
        let a = InFlight::start(stats, 0, false);
        let b = InFlight::start(stats, 0, false);
        let c = InFlight::start(stats, 1, false);
        assert_eq!((stats.in_flight(0), stats.in_flight(1)), (2, 1));
        drop(a);
        drop(c);
        assert_eq!((stats.in_flight(0), stats.in_flight(1)), (1, 0));
        drop(b);
        assert_eq!(stats.total_in_flight(), 0);
    }

    fn fail(stats: &'static GroupStats, trial: bool) -> Option<Duration> {
        InFlight::start(stats, 0, trial).resolve(Outcome::Failure)
    }

    #[test]
    fn breaker_ejects_then_admits_one_trial() {
        let stats = GroupStats::leak(1, breaker(2, 50));
        let b = stats.get(0).unwrap();
        assert_eq!(fail(stats, false), None);
        // A success resets the count.
        InFlight::start(stats, 0, false).resolve(Outcome::Success);
        assert_eq!(fail(stats, false), None);
        assert_eq!(fail(stats, false), Some(Duration::from_millis(50)));
        assert_eq!(b.admit(), Admission::Refused);
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.is_ready());
        assert_eq!(b.admit(), Admission::Trial);
        assert_eq!(b.admit(), Admission::Refused, "only one trial at a time");
        // The trial fails: re-opened with a doubled cooldown.
        assert_eq!(fail(stats, true), Some(Duration::from_millis(100)));
        std::thread::sleep(Duration::from_millis(110));
        assert_eq!(b.admit(), Admission::Trial);
        // Capped at max_cooldown (150 ms).
        assert_eq!(fail(stats, true), Some(Duration::from_millis(150)));
        std::thread::sleep(Duration::from_millis(160));
        assert_eq!(b.admit(), Admission::Trial);
        InFlight::start(stats, 0, true).resolve(Outcome::Success);
        assert!(!b.is_ejected());
        assert_eq!(b.admit(), Admission::Normal);
        assert_eq!(b.ejections(), 3);
    }

    #[test]
    fn an_abandoned_trial_frees_the_slot() {
        let stats = GroupStats::leak(1, breaker(1, 10));
        let b = stats.get(0).unwrap();
        fail(stats, false);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(b.admit(), Admission::Trial);
        drop(InFlight::start(stats, 0, true));
        assert_eq!(b.admit(), Admission::Trial);
    }

    #[test]
    fn unhealthy_is_never_admitted_and_zero_max_fails_never_ejects() {
        let stats = GroupStats::leak(1, breaker(0, 10));
        for _ in 0..10 {
            assert_eq!(fail(stats, false), None);
        }
        let b = stats.get(0).unwrap();
        assert_eq!(b.admit(), Admission::Normal);
        b.set_healthy(false);
        assert_eq!(b.admit(), Admission::Refused);
        assert!(!b.is_ready());
    }
}
