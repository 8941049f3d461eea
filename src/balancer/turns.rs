//! Turn counters for breaking ties, one per worker thread, so that threads picking at the same
//! time do not pass one cache line back and forth.
//!
//! A single shared counter is what strict rotation needs (`round_robin`, the smooth schedule):
//! every pick must take the next turn of one sequence. Where the turn only spreads ties
//! (`least_connections` among equally loaded backends), each thread taking turns of its own is
//! enough: ties still rotate, per thread.

use super::padded::CachePadded;
use super::stripes::{stripe, STRIPES};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Per-thread turn counters.
#[derive(Debug, Default)]
pub struct Turns {
    stripes: [CachePadded<AtomicUsize>; STRIPES],
}

impl Turns {
    /// This thread's next turn: 0, 1, 2, ... for each thread (up to [`STRIPES`] threads).
    ///
    /// A plain load and store, not an atomic increment: threads sharing a stripe may now and
    /// then take the same turn, which only lets one tie go the same way twice.
    #[inline]
    pub fn next(&self) -> usize {
        self.next_on(stripe())
    }

    /// The next turn of one stripe.
    #[inline]
    fn next_on(&self, stripe: usize) -> usize {
        let turn = &self.stripes[stripe];
        let t = turn.load(Relaxed);
        turn.store(t.wrapping_add(1), Relaxed);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stripe_counts_its_own_turns() {
        let turns = Turns::default();
        assert_eq!((turns.next_on(0), turns.next_on(0)), (0, 1));
        assert_eq!((turns.next_on(1), turns.next_on(1)), (0, 1));
        assert_eq!(turns.next_on(0), 2);
        assert_eq!(turns.next_on(STRIPES - 1), 0);
    }

    #[test]
    fn a_thread_takes_the_turns_of_its_stripe_in_order() {
        let turns = Turns::default();
        let mine = stripe();
        assert_eq!((turns.next(), turns.next(), turns.next()), (0, 1, 2));
        assert_eq!(turns.next_on(mine), 3);
    }
}
