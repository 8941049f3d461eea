//! Random numbers for selection: fastrand's generator (wyrand) on a seed kept per thread.
//! Not for secrets.
//!
//! Why not `fastrand::usize(..n)` directly: its global generator swaps the thread's state
//! out and back through a guard on every call, and a draw in `0..n` rejects and redraws to
//! be exactly uniform. With `cargo bench --bench twins` on this project's 2-core shared
//! machine (2026-12-02, two loaded runs), a draw in `0..1000` took 3.0 and 4.5 ns here against
//! 4.6 and 4.9 ns through fastrand's global generator (and 3.3 ns in the first run with the
//! xorshift fulcrum had written by hand). `least_connections` draws 7 per pick at 1,000
//! backends.

use std::cell::Cell;

thread_local! {
    /// Seeded once per thread from fastrand's own randomly seeded generator.
    static SEED: Cell<u64> = Cell::new(fastrand::u64(..));
}

/// The next 64 random bits.
#[inline]
pub fn next_u64() -> u64 {
    SEED.with(|seed| {
        let mut rng = fastrand::Rng::with_seed(seed.get());
        let x = rng.u64(..);
        seed.set(rng.get_seed());
        x
    })
}

/// A uniform draw in `[0, 1)`.
#[inline]
pub fn unit() -> f64 {
    (next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A number in `0..n` (`n` > 0), by Lemire's multiply-shift: uniform to within `n / 2^64`.
#[inline]
pub fn below(n: usize) -> usize {
    ((next_u64() as u128 * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_in_range_and_covers_it() {
        let mut seen = [0usize; 7];
        for _ in 0..70_000 {
            seen[below(7)] += 1;
        }
        for count in seen {
            assert!((9_000..11_000).contains(&count), "{seen:?}");
        }
    }

    #[test]
    fn threads_draw_different_numbers() {
        let a: Vec<u64> = (0..4).map(|_| next_u64()).collect();
        let b: Vec<u64> = std::thread::spawn(|| (0..4).map(|_| next_u64()).collect())
            .join()
            .unwrap();
        assert_ne!(a, b);
    }
}
