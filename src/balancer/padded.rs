//! Cache-line padding for counters that threads write on every selection.
//!
//! Two counters on one cache line make writers on different cores take turns owning the line
//! even when each writes only its own counter (false sharing). Blocks of 128 bytes, as
//! crossbeam's `CachePadded` uses on x86-64: x86 cores prefetch cache lines in adjacent
//! pairs, so 64 bytes apart is not far enough.

use std::ops::Deref;

/// Alignment, in bytes, of [`CachePadded`] and [`LineBreak`].
pub const PAD: usize = 128;

/// A value on 128-byte blocks of its own: nothing else shares its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CachePadded<T>(pub T);

impl<T> CachePadded<T> {
    /// Wrap `value`.
    pub const fn new(value: T) -> Self {
        CachePadded(value)
    }
}

impl<T> Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// A zero-sized field that, in a `#[repr(C)]` struct, starts the fields after it on a new
/// 128-byte block, keeping field access as it is (`self.counter`, not `self.hot.counter`).
#[derive(Debug, Default, Clone, Copy)]
#[repr(align(128))]
pub struct LineBreak;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn padded_values_own_their_block() {
        assert_eq!(std::mem::align_of::<CachePadded<AtomicUsize>>(), PAD);
        assert_eq!(std::mem::size_of::<CachePadded<AtomicUsize>>(), PAD);
        #[repr(C)]
        struct Two {
            a: u8,
            _break: LineBreak,
            b: u8,
        }
        assert_eq!(std::mem::offset_of!(Two, b), PAD);
        let two = Two {
            a: 1,
            _break: LineBreak,
            b: 2,
        };
        assert_eq!(two.a + two.b, 3);
    }
}
