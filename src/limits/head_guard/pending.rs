//! The bytes a [`super::HeadGuard`] read from the client and has not handed up yet.

/// Largest allocation [`Pending`] keeps once it is empty: enough for most request heads, so a
/// busy connection does not allocate for each one, and little for an idle connection to hold.
pub(super) const PENDING_KEEP: usize = 1024;

/// Bytes read from the client and not yet handed up: a buffer and how much of it is taken.
#[derive(Debug, Default)]
pub(super) struct Pending {
    buf: Vec<u8>,
    taken: usize,
}

impl Pending {
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf[self.taken..]
    }

    pub(super) fn len(&self) -> usize {
        self.buf.len() - self.taken
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Free the buffer's memory if nothing waits in it (a connection going idle).
    pub(super) fn release(&mut self) {
        if self.is_empty() {
            *self = Pending::default();
        }
    }

    /// The first `n` bytes were handed up.
    pub(super) fn consume(&mut self, n: usize) {
        self.taken += n;
        if self.taken == self.buf.len() {
            self.taken = 0;
            if self.buf.capacity() > PENDING_KEEP {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_frees_an_empty_buffer_and_keeps_waiting_bytes() {
        let mut p = Pending::default();
        p.extend(b"GET / HTTP/1.1\r\n");
        p.consume(4);
        p.release();
        assert_eq!(p.bytes(), b"/ HTTP/1.1\r\n", "waiting bytes stay");
        p.consume(p.len());
        assert!(
            p.buf.capacity() > 0,
            "a small buffer is kept between requests"
        );
        p.release();
        assert_eq!(p.buf.capacity(), 0);
        assert!(p.is_empty());
    }
}
