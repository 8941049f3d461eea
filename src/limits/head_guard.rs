//! A client stream wrapper that bounds how long and how large an HTTP/1 request head may be.
//!
//! Pingora reads request heads itself, before any `ProxyHttp` hook runs, with a timeout per
//! read (so a client sending one byte just before each timeout is never cut) and a 1 MiB size
//! cap. [`HeadGuard`] sits under Pingora's HTTP/1 parser and enforces, like nginx's
//! `client_header_timeout` and `large_client_header_buffers`:
//!
//! - a deadline for the whole head: from accepting the connection for the first request, and
//!   from the first byte of each later request on a keep-alive connection (the idle time before
//!   it is Pingora's keep-alive timeout); a client that misses it gets `408` and is closed;
//! - a size limit on the head; a client that exceeds it gets `431` and is closed, after at
//!   most one read buffer more than the limit.
//!
//! It finds the end of each head in the bytes themselves: the first empty line (CRLF CRLF,
//! or LF LF, which Pingora's parser also accepts; empty lines before the request line do not
//! count). After that, nothing is checked (the body has its own timeout, and an upgraded
//! connection carries no heads) until [`NextHead::arm`] says the next request on the
//! connection begins: the first byte read after that starts a new head. fulcrum's connection
//! loop ([`super::connection::Guarded`]) arms it between requests, so a body that is still
//! arriving after an early response is never taken for a head. HTTP/2 connections are not
//! wrapped.

use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The limits a [`HeadGuard`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Time to receive a whole request head.
    pub timeout: Duration,
    /// Largest request head in bytes.
    pub max_bytes: usize,
    /// Most header lines in a head (Pingora's parser refuses more than 256 with a plain 400).
    pub max_headers: usize,
}

/// Where the connection is in its request/response cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head; the deadline runs.
    Head,
    /// The head is complete; the body (if any), the response, or an upgraded connection's
    /// bytes follow.
    Body,
}

/// Where the end-of-head scanner is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Line {
    /// Inside a line that has text (or before any line).
    #[default]
    Text,
    /// At the start of a line: nothing but carriage returns since the last line feed.
    Start,
}

static TIMEOUT_408: LazyLock<Vec<u8>> = LazyLock::new(|| {
    super::raw_answer(
        "408 Request Timeout",
        "",
        "408 Request Timeout: the request head did not arrive in time\n",
    )
});

static TOO_LARGE_431: LazyLock<Vec<u8>> = LazyLock::new(|| {
    super::raw_answer(
        "431 Request Header Fields Too Large",
        "",
        "431 Request Header Fields Too Large: the request head is too large\n",
    )
});

/// The signal, shared between a [`HeadGuard`] and the loop that serves its connection, that
/// the next request on the connection begins.
#[derive(Debug, Default)]
pub struct NextHead(AtomicBool);

impl NextHead {
    /// The previous request is done: the next byte read starts a new head.
    pub fn arm(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

/// Finds the end of a request head in the bytes read so far, and counts them.
#[derive(Debug, Default)]
struct HeadScan {
    line: Line,
    /// A non-empty line was seen (empty lines before the request line are skipped).
    seen_text: bool,
    /// Bytes of the head so far (up to and including its end once found).
    bytes: usize,
    /// Lines of the head ended so far (the request line and header lines).
    lines: usize,
}

impl HeadScan {
    /// Scan the next bytes; true when the head ended within them.
    ///
    /// A line with nothing but carriage returns is empty; the first empty line after some
    /// text ends the head. Only line feeds are searched for, and each line's text is noticed
    /// at its first byte, so a head costs about one `memchr` step per line.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut from = 0;
        for nl in memchr::memchr_iter(b'\n', bytes) {
            self.note_text(&bytes[from..nl]);
            // Before any text (leading empty lines) a line feed only starts a line.
            if self.seen_text {
                if self.line == Line::Start {
                    self.bytes += nl + 1;
                    return true;
                }
                self.lines += 1;
            }
            self.line = Line::Start;
            from = nl + 1;
        }
        self.note_text(&bytes[from..]);
        self.bytes += bytes.len();
        false
    }

    /// Part of a line (no line feed in it): any byte but a carriage return is text.
    fn note_text(&mut self, part: &[u8]) {
        if part.iter().any(|&b| b != b'\r') {
            self.line = Line::Text;
            self.seen_text = true;
        }
    }
}

/// A client stream with request-head limits; see the module docs.
pub struct HeadGuard {
    inner: Stream,
    limits: HeadLimits,
    phase: Phase,
    head: HeadScan,
    /// When the current head must be complete.
    deadline: Instant,
    /// The timer, set to `deadline` only when a read in the head phase has to wait (most
    /// heads arrive in one read, and then no timer is touched at all).
    timer: Pin<Box<Sleep>>,
    timer_at: Instant,
    /// Set between requests by the connection loop.
    next: Arc<NextHead>,
    /// The guard answered and failed the stream; every later read fails too.
    failed: bool,
}

impl HeadGuard {
    /// Wrap a stream accepted at `accepted`: the first head's deadline counts from then.
    /// `next` is how the connection loop says that the next request begins.
    pub fn new(inner: Stream, limits: HeadLimits, accepted: Instant, next: Arc<NextHead>) -> Self {
        let deadline = accepted + limits.timeout;
        HeadGuard {
            inner,
            limits,
            phase: Phase::Head,
            head: HeadScan::default(),
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            timer_at: deadline,
            next,
            failed: false,
        }
    }

    fn start_head(&mut self) {
        self.phase = Phase::Head;
        self.head = HeadScan::default();
        self.deadline = Instant::now() + self.limits.timeout;
    }

    /// Best effort: send `answer` (one try, no waiting) and fail the stream.
    fn refuse(&mut self, cx: &mut Context<'_>, answer: &[u8], kind: io::ErrorKind) -> io::Error {
        self.failed = true;
        let _ = Pin::new(&mut self.inner).poll_write(cx, answer);
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        io::Error::new(kind, "request head limit")
    }
}

impl fmt::Debug for HeadGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadGuard")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

impl AsyncRead for HeadGuard {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                if this.next.take() {
                    this.start_head();
                }
                if this.phase == Phase::Head {
                    if this.head.feed(new) {
                        this.phase = Phase::Body;
                    }
                    // The request line is one of the lines.
                    let too_many = this.head.lines > this.limits.max_headers + 1;
                    if this.head.bytes > this.limits.max_bytes || too_many {
                        let e = this.refuse(cx, &TOO_LARGE_431, io::ErrorKind::InvalidData);
                        return Poll::Ready(Err(e));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.phase != Phase::Head {
                    return Poll::Pending;
                }
                if this.timer_at != this.deadline {
                    this.timer_at = this.deadline;
                    this.timer.as_mut().reset(this.deadline);
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    let e = this.refuse(cx, &TIMEOUT_408, io::ErrorKind::TimedOut);
                    return Poll::Ready(Err(e));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for HeadGuard {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for HeadGuard {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadGuard {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadGuard {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora_core::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadGuard {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadGuard {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeadGuard {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeadGuard {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `parts` as successive reads; the byte count at which the head ended.
    fn end_of(parts: &[&[u8]]) -> Option<usize> {
        let mut scan = HeadScan::default();
        parts
            .iter()
            .find_map(|p| scan.feed(p).then_some(scan.bytes))
    }

    #[test]
    fn finds_the_empty_line_that_ends_a_head() {
        let crlf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(end_of(&[&[&crlf[..], b"body"].concat()]), Some(crlf.len()));
        let lf = b"GET / HTTP/1.1\nHost: a\n\n";
        assert_eq!(end_of(&[lf]), Some(lf.len()));
        // Split anywhere, one byte at a time.
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let bytes: Vec<&[u8]> = head.chunks(1).collect();
        assert_eq!(end_of(&bytes), Some(head.len()));
        assert_eq!(end_of(&[b"GET / HTTP/1.1\r\n", b"\r", b"\n"]), Some(18));
    }

    #[test]
    fn counts_lines() {
        let mut scan = HeadScan::default();
        assert!(!scan.feed(b"\r\nGET / HTTP/1.1\r\nA: 1\nB: 2\r\n"));
        assert_eq!(scan.lines, 3);
        assert!(scan.feed(b"\r\n"));
        assert_eq!(scan.lines, 3);
    }

    /// The byte-at-a-time state machine the scanner replaced, as the reference.
    fn reference(parts: &[&[u8]]) -> (Option<usize>, usize) {
        let (mut start, mut seen, mut bytes, mut lines) = (false, false, 0, 0);
        for b in parts.concat() {
            bytes += 1;
            match b {
                b'\n' if start && seen => return (Some(bytes), lines),
                b'\n' => {
                    lines += usize::from(seen && !start);
                    start = true;
                }
                b'\r' => {}
                _ => {
                    seen = true;
                    start = false;
                }
            }
        }
        (None, lines)
    }

    #[test]
    fn agrees_with_a_byte_at_a_time_scan() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n) as usize
        };
        for _ in 0..20_000 {
            let len = next(24);
            let input: Vec<u8> = (0..len).map(|_| b"a\r\n\n "[next(5)]).collect();
            let cut = next(len as u64 + 1);
            let parts = [&input[..cut], &input[cut..]];
            let mut scan = HeadScan::default();
            let ended = parts
                .iter()
                .find_map(|p| scan.feed(p).then_some(scan.bytes));
            assert_eq!(
                (ended, scan.lines),
                reference(&parts),
                "{input:?} cut at {cut}"
            );
        }
    }

    #[test]
    fn leading_empty_lines_do_not_end_a_head() {
        assert_eq!(end_of(&[b"\r\n\r\n\n\n"]), None);
        assert_eq!(end_of(&[b"\n\n", b"GET / HTTP/1.1\r\n\r\n"]), Some(2 + 18));
        assert_eq!(end_of(&[b"GET / HTTP/1.1\r\nX: \r\r\n"]), None);
    }
}
