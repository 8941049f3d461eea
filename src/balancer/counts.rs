//! In-flight and attempt counts of every backend of a group, striped per worker thread, and
//! each thread's slightly late view of the other threads' in-flight counts.
//!
//! Every request writes two counts when it picks a backend and one when it ends. With one
//! counter per backend, two threads choosing among the same few backends write the same
//! cache lines on every pick, and each write waits for the line to come over from the other
//! core. So each worker thread counts into a stripe of its own
//! ([`stripes`](super::stripes)), where its counts for neighbouring backends share cache
//! lines no other thread writes; an exact count is the sum over the stripes in use (the
//! status page and metrics read those).
//!
//! Load-aware selection (`least_connections`, `p2c`) reads in-flight counts on every pick.
//! Reading another thread's stripe exactly each time would bring its line over on every pick,
//! and hand the line back on that thread's next write. Instead a [`LoadView`] sees the
//! calling thread's own requests exactly and the other threads' as they were at most
//! [`MAX_AGE_TICKS`] ago (at most about 2 ms), re-reading a backend's remote
//! counts when its copy is older. So each thread balances its own requests exactly, as
//! nginx's workers do, and sees the other threads' load as of moments ago; requests that
//! hold a backend longer than that (the slow ones least-connections exists to avoid) count
//! for every thread.

use super::padded::{CachePadded, PAD};
use super::stripes::{self, stripe, STRIPES};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One thread's counts for one backend.
#[derive(Debug, Default)]
struct Counts {
    /// Attempts counted into this stripe minus those ended (each ends in the stripe it was
    /// counted into, whichever thread ends it).
    in_flight: AtomicU64,
    /// Attempts counted into this stripe.
    requests: AtomicU64,
    /// This stripe's copy of the other stripes' in-flight sum for the backend: the sum in the
    /// high 32 bits, the [`ticks`] it was read at in the low 32 (0: never). Kept beside the
    /// counts, so that a pick reads one cache line per candidate.
    view: AtomicU64,
    /// Pads to 32 bytes: four backends to a block.
    _pad: u64,
}

/// Backends whose counts share one 128-byte block of a stripe.
const COUNTS_PER_BLOCK: usize = PAD / std::mem::size_of::<Counts>();

/// How old, in [`ticks`], a thread's copy of other threads' counts may be: 2,048 ticks of
/// 1,024 CPU cycles on x86-64 (0.7 to 2.1 ms at 3 to 1 GHz), 2,048 µs elsewhere.
pub const MAX_AGE_TICKS: u32 = 2048;

/// A cheap monotonic clock for [`MAX_AGE_TICKS`], wrapping at 32 bits.
#[cfg(target_arch = "x86_64")]
#[inline]
fn ticks() -> u32 {
    // SAFETY: RDTSC is present on every x86-64 CPU; it only reads the time-stamp counter.
    let cycles = unsafe { core::arch::x86_64::_rdtsc() };
    (cycles >> 10) as u32
}

/// A cheap monotonic clock for [`MAX_AGE_TICKS`], wrapping at 32 bits.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn ticks() -> u32 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u32
}

/// Counts for every backend of a group, one stripe per worker thread.
#[derive(Debug)]
pub struct StripedCounts {
    len: usize,
    /// Stripe `s`, backend `i`: slot `i % COUNTS_PER_BLOCK` of block
    /// `s * count_blocks + i / COUNTS_PER_BLOCK`.
    counts: Box<[CachePadded<[Counts; COUNTS_PER_BLOCK]>]>,
    count_blocks: usize,
}

impl StripedCounts {
    /// Zero counts for `len` backends.
    pub fn new(len: usize) -> Self {
        let count_blocks = len.div_ceil(COUNTS_PER_BLOCK);
        StripedCounts {
            len,
            counts: (0..STRIPES * count_blocks)
                .map(|_| Default::default())
                .collect(),
            count_blocks,
        }
    }

    /// Stripe `s`'s counts for backend `index` (in range).
    #[inline]
    fn counts(&self, s: usize, index: usize) -> &Counts {
        &self.counts[s * self.count_blocks + index / COUNTS_PER_BLOCK][index % COUNTS_PER_BLOCK]
    }

    /// Count an attempt on the backend at `index` into the calling thread's stripe, which is
    /// returned for [`end`](Self::end). Out-of-range indexes count nothing.
    #[inline]
    pub fn start(&self, index: usize) -> usize {
        let s = stripe();
        if index < self.len {
            let c = self.counts(s, index);
            c.in_flight.fetch_add(1, Relaxed);
            c.requests.fetch_add(1, Relaxed);
        }
        s
    }

    /// Zero the attempt counts of the backend at `index` (its slot goes to a new backend;
    /// nothing is in flight on it).
    pub fn reset(&self, index: usize) {
        if index < self.len {
            for s in 0..STRIPES {
                let c = self.counts(s, index);
                c.requests.store(0, Relaxed);
                c.view.store(0, Relaxed);
            }
        }
    }

    /// End an attempt that [`start`](Self::start) counted into stripe `s`.
    #[inline]
    pub fn end(&self, s: usize, index: usize) {
        if index < self.len {
            self.counts(s, index).in_flight.fetch_sub(1, Relaxed);
        }
    }

    /// Sum of one count of the backend at `index` over the stripes in use, skipping `skip`.
    fn sum(&self, index: usize, skip: Option<usize>, count: impl Fn(&Counts) -> &AtomicU64) -> u64 {
        (0..stripes::in_use())
            .filter(|&s| Some(s) != skip)
            .map(|s| count(self.counts(s, index)).load(Relaxed))
            .sum()
    }

    /// Requests in flight to the backend at `index`, exactly (0 when out of range).
    pub fn in_flight(&self, index: usize) -> u64 {
        if index >= self.len {
            return 0;
        }
        self.sum(index, None, |c| &c.in_flight)
    }

    /// Attempts ever counted on the backend at `index` (0 when out of range).
    pub fn requests(&self, index: usize) -> u64 {
        if index >= self.len {
            return 0;
        }
        self.sum(index, None, |c| &c.requests)
    }

    /// In-flight counts as the calling thread's selection sees them now.
    #[inline]
    pub fn view(&self) -> LoadView<'_> {
        // The stripe first: a thread's first call counts it in use.
        let stripe = stripe();
        let others = stripes::in_use() > 1;
        LoadView {
            counts: self,
            stripe,
            others,
            now: if others { ticks() } else { 0 },
        }
    }
}

/// In-flight counts for one pick: the calling thread's stripe exactly, the others' as copied
/// at most [`MAX_AGE_TICKS`] ago.
#[derive(Debug)]
pub struct LoadView<'a> {
    counts: &'a StripedCounts,
    stripe: usize,
    /// Other stripes are in use.
    others: bool,
    now: u32,
}

impl LoadView<'_> {
    /// Requests in flight to the backend at `index` (in range).
    #[inline]
    pub fn in_flight(&self, index: usize) -> u64 {
        let c = self.counts;
        let mine = c.counts(self.stripe, index);
        let own = mine.in_flight.load(Relaxed);
        if !self.others {
            return own;
        }
        let copy = mine.view.load(Relaxed);
        if self.now.wrapping_sub(copy as u32) <= MAX_AGE_TICKS && copy != 0 {
            return own + (copy >> 32);
        }
        let remote = c.sum(index, Some(self.stripe), |c| &c.in_flight);
        // A stamp of 0 reads as "never copied"; 1 tick later is as good.
        let stamp = self.now.max(1);
        mine.view
            .store((remote.min(u32::MAX as u64) << 32) | stamp as u64, Relaxed);
        own + remote
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn blocks_are_one_padded_line_pair() {
        assert_eq!(
            std::mem::size_of::<CachePadded<[Counts; COUNTS_PER_BLOCK]>>(),
            PAD
        );
        assert_eq!(COUNTS_PER_BLOCK, 4);
    }

    #[test]
    fn counts_are_exact_across_threads_and_stripes() {
        let c: &'static StripedCounts = Box::leak(Box::new(StripedCounts::new(20)));
        let here = c.start(17);
        let there = std::thread::spawn(move || (c.start(17), c.start(3)))
            .join()
            .expect("thread");
        assert_eq!((c.in_flight(17), c.in_flight(3), c.requests(17)), (2, 1, 2));
        // An attempt may end on another thread than the one that started it.
        c.end(there.0, 17);
        std::thread::spawn(move || c.end(here, 17))
            .join()
            .expect("thread");
        c.end(there.1, 3);
        assert_eq!((c.in_flight(17), c.in_flight(3), c.requests(17)), (0, 0, 2));
        assert_eq!((c.in_flight(20), c.requests(99)), (0, 0));
    }

    #[test]
    fn a_view_sees_its_own_thread_at_once_and_others_within_the_max_age() {
        let c: &'static StripedCounts = Box::leak(Box::new(StripedCounts::new(3)));
        // Another thread holds two requests to backend 1 for a while.
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            let s = (c.start(1), c.start(1));
            held_tx.send(()).expect("send");
            let _ = release_rx.recv();
            c.end(s.0, 1);
            c.end(s.1, 1);
        });
        held_rx.recv().expect("held");
        assert_eq!(c.view().in_flight(1), 2);
        let mine = c.start(0);
        assert_eq!(c.view().in_flight(0), 1, "own requests count at once");
        release_tx.send(()).expect("release");
        other.join().expect("thread");
        // 2,048 ticks are at most 2.1 ms at 1 GHz.
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(c.view().in_flight(1), 0);
        c.end(mine, 0);
        assert_eq!(c.view().in_flight(0), 0);
    }
}
