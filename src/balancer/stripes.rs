//! Which stripe of a per-thread table the current thread uses.
//!
//! State that every pick writes but whose exact global order does not matter (tie-breaking
//! turns, in-flight and request counts, copies of stateless selectors) is kept in
//! [`STRIPES`] copies, one per worker thread, so that threads picking at the same time write
//! different cache lines. Threads are numbered as they first pick; beyond [`STRIPES`] threads
//! they share stripes, which stays correct (every stripe is atomic), just contended.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Stripes per table.
pub const STRIPES: usize = 8;

/// Threads that have asked for a stripe so far.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// The stripe of the current thread (below [`STRIPES`]).
#[inline]
pub fn stripe() -> usize {
    thread_local! {
        static STRIPE: usize = THREADS.fetch_add(1, Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// How many stripes any thread has used so far (at least 1, at most [`STRIPES`]): a sum
/// over the stripes of a table need only read these, every other stripe is untouched.
#[inline]
pub fn in_use() -> usize {
    THREADS.load(Relaxed).clamp(1, STRIPES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_stripe_and_is_counted_in_use() {
        let mine = stripe();
        assert_eq!(stripe(), mine);
        assert!(mine < in_use());
        let other = std::thread::spawn(stripe).join().expect("thread");
        assert!(other < in_use());
    }
}
