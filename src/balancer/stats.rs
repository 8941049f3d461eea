//! Per-backend counters that live outside Pingora's selectors.
//!
//! Pingora rebuilds a selector whenever the backend set changes, so anything that must survive
//! (in-flight requests above all) lives here, in one table per upstream group, shared with the
//! selectors through their `Config` and with requests through [`InFlight`] guards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counters for one backend.
#[derive(Debug, Default)]
pub struct BackendStats {
    in_flight: AtomicUsize,
}

impl BackendStats {
    /// Requests currently assigned to this backend.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
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
    stats: Arc<GroupStats>,
    index: usize,
}

impl InFlight {
    /// Count a request against the backend at `index`.
    pub fn start(stats: &Arc<GroupStats>, index: usize) -> Self {
        if let Some(b) = stats.get(index) {
            b.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        InFlight {
            stats: Arc::clone(stats),
            index,
        }
    }

    /// The backend's config index.
    pub fn index(&self) -> usize {
        self.index
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
        let stats = Arc::new(GroupStats::new(2));
        let a = InFlight::start(&stats, 0);
        let b = InFlight::start(&stats, 0);
        let c = InFlight::start(&stats, 1);
        assert_eq!((stats.in_flight(0), stats.in_flight(1)), (2, 1));
        drop(a);
        drop(c);
        assert_eq!((stats.in_flight(0), stats.in_flight(1)), (1, 0));
        drop(b);
        assert_eq!(stats.total_in_flight(), 0);
    }
}
