//! Per-backend counters that live outside Pingora's selectors.
//!
//! Pingora rebuilds a selector whenever the backend set changes, so anything that must survive
//! (in-flight requests above all) lives here, in one table per upstream group, shared with the
//! selectors through their `Config` and with requests through [`InFlight`] guards.
//!
//! A group's table lives as long as the process (a config is loaded once; a reload is a new
//! process), so it is allocated once with [`GroupStats::leak`] and shared as `&'static`: no
//! reference count for two worker threads to fight over on every request.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Counters and state for one backend.
#[derive(Debug)]
pub struct BackendStats {
    in_flight: AtomicUsize,
    requests: AtomicU64,
    failures: AtomicU64,
    healthy: AtomicBool,
}

impl Default for BackendStats {
    fn default() -> Self {
        BackendStats {
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        }
    }
}

impl BackendStats {
    /// Whether the backend may take traffic now.
    pub fn is_ready(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether active health checks consider the backend healthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Record the active health-check verdict.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Requests currently assigned to this backend.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Attempts ever sent to this backend (a retried request counts once per backend tried).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Attempts that failed: connect errors, or errors while proxying.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Count a failed attempt.
    pub fn record_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters for every backend of a group, in config order.
#[derive(Debug)]
pub struct GroupStats {
    backends: Box<[BackendStats]>,
}

impl GroupStats {
    /// Zeroed counters for `n` backends.
    pub fn new(n: usize) -> Self {
        GroupStats {
            backends: (0..n).map(|_| BackendStats::default()).collect(),
        }
    }

    /// Zeroed counters for `n` backends that live for the rest of the process.
    pub fn leak(n: usize) -> &'static GroupStats {
        Box::leak(Box::new(Self::new(n)))
    }

    /// The counters of the backend at a config index.
    pub fn get(&self, index: usize) -> Option<&BackendStats> {
        self.backends.get(index)
    }

    /// In-flight requests of the backend at a config index (0 when out of range).
    pub fn in_flight(&self, index: usize) -> usize {
        self.get(index).map_or(0, BackendStats::in_flight)
    }

    /// Sum of in-flight requests over the group.
    pub fn total_in_flight(&self) -> usize {
        self.backends.iter().map(BackendStats::in_flight).sum()
    }
}

/// One request counted against one backend. Dropping it (when the request ends, moves to
/// another backend, or is abandoned) un-counts it exactly once.
#[derive(Debug)]
pub struct InFlight {
    stats: &'static GroupStats,
    index: usize,
}

impl InFlight {
    /// Count a request against the backend at `index`.
    pub fn start(stats: &'static GroupStats, index: usize) -> Self {
        if let Some(b) = stats.get(index) {
            b.in_flight.fetch_add(1, Ordering::Relaxed);
            b.requests.fetch_add(1, Ordering::Relaxed);
        }
        InFlight { stats, index }
    }

    /// The backend's config index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Count this attempt as failed.
    pub fn fail(&self) {
        if let Some(b) = self.stats.get(self.index) {
            b.record_failure();
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(b) = self.stats.get(self.index) {
            b.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_exactly_once() {
        let stats = GroupStats::leak(2);
        let a = InFlight::start(stats, 0);
        let b = InFlight::start(stats, 0);
        let c = InFlight::start(stats, 1);
        assert_eq!((stats.in_flight(0), stats.in_flight(1)), (2, 1));
        drop(a);
        drop(c);
        assert_eq!((stats.in_flight(0), stats.in_flight(1)), (1, 0));
        drop(b);
        assert_eq!(stats.total_in_flight(), 0);
    }
}
