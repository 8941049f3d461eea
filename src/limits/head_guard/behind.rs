//! The write-behind buffer of a [`super::HeadGuard`]: response bytes accepted from Pingora
//! while the client was not reading, delivered to the client later, at most a fixed number
//! at once (`limits.response_buffering`).

use std::io::IoSlice;

/// Largest allocation [`WriteBehind`] keeps once it is empty: an idle connection holds almost
/// nothing.
const BEHIND_KEEP: usize = 1024;

/// Bytes accepted for the client and not yet written: a buffer, how much of it is written,
/// and the most it may hold.
#[derive(Debug, Default)]
pub(super) struct WriteBehind {
    buf: Vec<u8>,
    written: usize,
    limit: usize,
}

impl WriteBehind {
    /// An empty buffer holding at most `limit` bytes (`0`: none, write-behind off).
    pub(super) fn new(limit: usize) -> Self {
        WriteBehind {
            limit,
            ..WriteBehind::default()
        }
    }

    /// The bytes waiting, oldest first.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf[self.written..]
    }

    /// How many bytes wait.
    pub(super) fn len(&self) -> usize {
        self.buf.len() - self.written
    }

    /// Whether nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the buffer may hold anything at all.
    pub(super) fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// Take as much of `bufs`, in order, as fits; the number of bytes taken.
    pub(super) fn accept(&mut self, bufs: &[IoSlice<'_>]) -> usize {
        let mut taken = 0;
        for b in bufs {
            let room = self.limit.saturating_sub(self.len());
            let n = b.len().min(room);
            self.buf.extend_from_slice(&b[..n]);
            taken += n;
            if n < b.len() {
                break;
            }
        }
        taken
    }

    /// The first `n` waiting bytes were written.
    pub(super) fn consume(&mut self, n: usize) {
        self.written += n;
        if self.written >= self.buf.len() {
            self.clear();
        }
    }

    /// Free the buffer's memory if nothing waits in it (a connection going idle).
    pub(super) fn release(&mut self) {
        if self.is_empty() {
            self.written = 0;
            self.buf = Vec::new();
        }
    }

    /// Forget what waits (the client is gone), and free the memory.
    pub(super) fn clear(&mut self) {
        self.written = 0;
        if self.buf.capacity() > BEHIND_KEEP {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_up_to_its_limit_in_order_and_frees_its_memory_when_written() {
        let mut b = WriteBehind::new(10);
        assert!(b.enabled() && b.is_empty());
        let taken = b.accept(&[IoSlice::new(b"abcd"), IoSlice::new(b"efghijkl")]);
        assert_eq!(taken, 10);
        assert_eq!(b.bytes(), b"abcdefghij");
        assert_eq!(b.accept(&[IoSlice::new(b"x")]), 0, "full");
        b.consume(4);
        assert_eq!(b.bytes(), b"efghij");
        // Room counts what still waits, not what was ever taken.
        assert_eq!(b.accept(&[IoSlice::new(b"klmnopq")]), 4);
        assert_eq!(b.bytes(), b"efghijklmn");
        b.consume(10);
        assert!(b.is_empty());
        assert_eq!(b.bytes(), b"");
    }

    #[test]
    fn a_large_buffer_is_released_once_empty() {
        let mut b = WriteBehind::new(64 * 1024);
        let data = vec![7u8; 64 * 1024];
        assert_eq!(b.accept(&[IoSlice::new(&data)]), data.len());
        b.consume(data.len());
        assert_eq!(b.buf.capacity(), 0);
    }

    #[test]
    fn release_frees_an_empty_buffer_and_keeps_waiting_bytes() {
        let mut b = WriteBehind::new(100);
        assert_eq!(b.accept(&[IoSlice::new(b"abc")]), 3);
        b.release();
        assert_eq!(b.bytes(), b"abc", "waiting bytes stay");
        b.consume(3);
        assert!(
            b.buf.capacity() > 0,
            "a small buffer is kept between requests"
        );
        b.release();
        assert_eq!(b.buf.capacity(), 0);
    }

    #[test]
    fn a_zero_limit_takes_nothing() {
        let mut b = WriteBehind::new(0);
        assert!(!b.enabled());
        assert_eq!(b.accept(&[IoSlice::new(b"abc")]), 0);
    }
}
