//! Cache-line padding for counters that threads write on every selection.
//!
//! Two counters on one cache line make writers on different cores take turns owning the line
//! even when each writes only its own counter (false sharing). crossbeam's [`CachePadded`]
//! puts a value on blocks of its own (128 bytes on x86-64, whose cores prefetch cache lines in
//! adjacent pairs); [`LineBreak`] does the same for the fields of a struct that follow it.

pub use crossbeam_utils::CachePadded;

/// Alignment, in bytes, of [`CachePadded`], and of [`LineBreak`] on x86-64 and aarch64.
pub const PAD: usize = std::mem::align_of::<CachePadded<u8>>();

/// A zero-sized field that, in a `#[repr(C)]` struct, starts the fields after it on a new
/// 128-byte block, keeping field access as it is (`self.counter`, not `self.hot.counter`).
/// (`CachePadded<()>` would take a whole block of its own.)
#[derive(Debug, Default, Clone, Copy)]
#[repr(align(128))]
pub struct LineBreak;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn padded_values_own_their_block() {
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        assert_eq!(std::mem::align_of::<LineBreak>(), PAD);
        assert_eq!(std::mem::align_of::<CachePadded<AtomicUsize>>(), PAD);
        assert_eq!(std::mem::size_of::<CachePadded<AtomicUsize>>(), PAD);
        #[repr(C)]
        struct Two {
            a: u8,
            _break: LineBreak,
            b: u8,
        }
        assert_eq!(std::mem::offset_of!(Two, b), 128);
        let two = Two {
            a: 1,
            _break: LineBreak,
            b: 2,
        };
        assert_eq!(two.a + two.b, 3);
    }
}
