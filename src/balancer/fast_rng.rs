//! A per-thread xorshift generator for selection: a few cycles per draw, where `rand`'s
//! cryptographic thread RNG costs more than the rest of a pick. Not for secrets.

use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = Cell::new(rand::random::<u64>() | 1);
}

/// The next 64 random bits (xorshift64*).
#[inline]
pub fn next_u64() -> u64 {
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A uniformly distributed number in `0..n` (`n` > 0), by Lemire's multiply-shift.
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
}
