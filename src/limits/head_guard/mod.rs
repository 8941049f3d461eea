//! A client stream wrapper that bounds how long and how large an HTTP/1 request head may be.
//!
//! Pingora reads request heads itself, before any `ProxyHttp` hook runs, with a timeout per
//! read (so a client sending one byte just before each timeout is never cut) and a 1 MiB size
//! cap. [`HeadGuard`] sits under Pingora's HTTP/1 parser and enforces, like nginx's
//! `client_header_timeout` and `large_client_header_buffers`:
//!
//! - a deadline for the whole head: from accepting the connection for the first request, and
//!   from the first byte of each later request on a keep-alive connection (the idle time before
//!   it is the keep-alive timeout); a client that misses it gets `408` and is closed;
//! - a size limit on the head; a client that exceeds it gets `431` and is closed, after at
//!   most one read buffer more than the limit.
//!
//! It finds the end of each head in the bytes themselves: the first empty line (CRLF CRLF,
//! or LF LF, which Pingora's parser also accepts; empty lines before the request line do not
//! count). After that, nothing is checked (the body has its own timeout, and an upgraded
//! connection carries no heads) until [`HeadGuard::arm`] says the next request on the
//! connection begins: the first byte read after that starts a new head. fulcrum's connection
//! loop ([`super::connection::Guarded`]) arms it between requests, so a body that is still
//! arriving after an early response is never taken for a head. HTTP/2 connections are not
//! wrapped.
//!
//! On the write side it keeps a bounded write-behind buffer (`limits.response_buffering`), so
//! that a client that does not read a small response does not keep its backend connection;
//! see the `write` module.
//!
//! Heads are read through a small buffer on the stack, and what is not handed up at once waits
//! in the guard; bodies are read straight into the reader's buffer. The connection loop waits
//! for each request's first byte with [`HeadGuard::poll_arrival`], before Pingora sets up
//! anything for the request, so an idle keep-alive connection holds neither a read buffer nor Pingora's
//! per-request state, and the keep-alive timeout is one timer per connection, moved, rather
//! than one registered per request.

mod behind;
mod delegate;
mod pending;
mod scan;
mod write;

use crate::metrics::rejections::Reason;
use async_trait::async_trait;
use behind::WriteBehind;
use pending::Pending;
use pingora_core::protocols::{Peek, Stream};
use scan::HeadScan;
use std::any::Any;
use std::fmt;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};
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
    /// How long a keep-alive connection may wait for its next request.
    pub idle: Duration,
    /// Longest wait for the client to take more response bytes while the guard delivers
    /// bytes it accepted for it (`limits.send_timeout`).
    pub send_timeout: Duration,
    /// Most response bytes the guard accepts for a client that is not reading
    /// (`limits.response_buffering`; `0`: none).
    pub response_buffering: usize,
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

/// Count a head refused here, before the proxy sees it, as a rejection and as a request
/// answered with `code` before routing.
fn counted(code: u16, reason: Reason) {
    crate::metrics::rejections::rejected(reason);
    crate::metrics::requests::unrouted(code);
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

/// Most bytes read from the client at once while a head is awaited: heads go through a buffer
/// on the stack, so that only the head itself is handed to Pingora's parser, and the bytes
/// after it (a body, a pipelined request) wait in [`HeadGuard`] until they are asked for.
const HEAD_READ: usize = 4096;

/// Most body bytes one read returns while [`HeadGuard::small_body_reads`] is on.
pub const SMALL_BODY_READ: usize = 16 * 1024;

/// A client stream with request-head limits; see the module docs.
pub struct HeadGuard {
    inner: Stream,
    limits: HeadLimits,
    phase: Phase,
    head: HeadScan,
    /// When the current head must be complete.
    deadline: Instant,
    /// The connection's one timer, made the first time a wait needs it (most heads arrive in
    /// one read, and then no timer is touched at all); see [`HeadGuard::timer_fired`].
    timer: Option<Pin<Box<Sleep>>>,
    /// When `timer` goes off.
    timer_at: Instant,
    /// The waker `timer` was last polled with, while it is set and waiting: it wakes that
    /// task when it goes off, so a wait from the same task that does not move it need not
    /// poll it again (see [`HeadGuard::timer_fired`]).
    timer_waker: Option<Waker>,
    /// The connection loop said the next request begins: the next byte handed up starts a
    /// new head.
    armed: bool,
    /// Bytes read from the client and not yet handed up.
    pending: Pending,
    /// The guard answered and failed the stream; every later read fails too.
    failed: bool,
    /// Response bytes accepted while the client was not reading, not yet written.
    behind: WriteBehind,
    /// The proxy knows the rest of the current response fits the write-behind buffer: writes
    /// that would wait may be accepted into it. Cleared by [`HeadGuard::arm`].
    complete: AtomicBool,
    /// While delivering accepted bytes: when to give up if the client takes none.
    drain_deadline: Option<Instant>,
    /// Held while the connection lives, also while a dropped guard still delivers its bytes
    /// (the connection's place under `limits.max_connections`).
    keep: Option<Box<dyn Any + Send + Sync>>,
    /// This guard is the delivery task of a dropped one: dropped itself, it just closes.
    detached: bool,
    /// Body reads return at most [`SMALL_BODY_READ`] bytes (see
    /// [`HeadGuard::small_body_reads`]).
    small_reads: AtomicBool,
}

impl HeadGuard {
    /// Wrap a stream accepted at `accepted`: the first head's deadline counts from then.
    pub fn new(inner: Stream, limits: HeadLimits, accepted: Instant) -> Self {
        let deadline = accepted + limits.timeout;
        HeadGuard {
            inner,
            limits,
            phase: Phase::Head,
            head: HeadScan::default(),
            deadline,
            timer: None,
            timer_at: deadline,
            timer_waker: None,
            armed: false,
            pending: Pending::default(),
            failed: false,
            behind: WriteBehind::new(limits.response_buffering),
            complete: AtomicBool::new(false),
            drain_deadline: None,
            keep: None,
            detached: false,
            small_reads: AtomicBool::new(false),
        }
    }

    /// While `on`, a body read returns at most [`SMALL_BODY_READ`] bytes, however large the
    /// reader's buffer: request buffering reads a body of unknown length into a buffer of
    /// fixed size, and stops early enough that one more read cannot overflow it.
    pub fn small_body_reads(&self, on: bool) {
        self.small_reads.store(on, Ordering::Relaxed);
    }

    /// The previous request is done: the next byte read starts a new head (and its response
    /// is not known to be complete).
    pub fn arm(&mut self) {
        self.armed = true;
        self.complete.store(false, Ordering::Relaxed);
    }

    /// Keep `token` (the connection's permit) until the connection is closed, including
    /// while a dropped guard still delivers the bytes it accepted.
    pub fn hold_until_closed(&mut self, token: Box<dyn Any + Send + Sync>) {
        self.keep = Some(token);
    }

    /// The proxy knows the current response has at most `rest` more bytes to write (`0`:
    /// it has all of it): when that fits the write-behind buffer, writes the client is not
    /// ready for are accepted into it, so the response completes without waiting for the
    /// client (see the module docs of `write`).
    pub fn rest_of_response(&self, rest: u64) {
        if self.behind.enabled() && rest <= self.limits.response_buffering as u64 {
            self.complete.store(true, Ordering::Relaxed);
        }
    }

    /// Whether response bytes accepted for the client still wait to be written.
    pub fn has_unsent(&self) -> bool {
        !self.behind.is_empty()
    }

    /// The connection waits for its next request, which has not begun to arrive: free the
    /// memory of the buffers kept between requests (up to about 1 KiB each for the last head
    /// and the last response accepted for a slow client), so that an idle keep-alive
    /// connection holds none. A busy connection, whose next request is already there, keeps
    /// them and allocates nothing per request.
    pub fn release_buffers(&mut self) {
        self.pending.release();
        self.behind.release();
    }

    /// Wait until the client has sent at least one more byte (kept for the reads that follow);
    /// see the [`Peek`] implementation for the deadlines that apply. `idle_until` is this
    /// wait's own: `None` at its start.
    pub fn poll_arrival(
        &mut self,
        cx: &mut Context<'_>,
        idle_until: &mut Option<Instant>,
    ) -> Poll<io::Result<()>> {
        self.poll_peek(cx, 1, idle_until)
    }

    fn start_head(&mut self) {
        self.phase = Phase::Head;
        self.head = HeadScan::default();
        self.deadline = Instant::now() + self.limits.timeout;
    }

    /// Whether the bytes read next belong to a request head (the current one, or the next
    /// request's once the connection loop has called [`HeadGuard::arm`]).
    fn expecting_head(&self) -> bool {
        self.phase == Phase::Head || self.armed
    }

    /// Best effort: send `answer` (one try, no waiting) and fail the stream.
    /// An HTTP/2 connection (whose preface the guard bounds, see [`super::connection`]) gets no
    /// HTTP/1 answer, only the close.
    fn refuse(&mut self, cx: &mut Context<'_>, answer: &[u8], kind: io::ErrorKind) -> io::Error {
        self.failed = true;
        if self.inner.selected_alpn_proto() != Some(pingora_core::protocols::ALPN::H2) {
            let _ = Pin::new(&mut self.inner).poll_write(cx, answer);
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
        io::Error::new(kind, "request head limit")
    }

    /// Whether `deadline` has passed, waking the task when it does.
    ///
    /// The timer is moved earlier when a wait needs it earlier, but not later: a timer that
    /// goes off before the deadline of the wait at hand is moved on then. So a busy keep-alive
    /// connection, whose idle deadline moves with every request, touches the timer wheel about
    /// once per keep-alive timeout rather than once per request.
    ///
    /// Polling the timer only renews the waker it holds: while it waits, is not moved, and
    /// the waker it holds wakes this same task, it is not polled again (a busy connection
    /// waits for each next request and would otherwise poll it once per request).
    fn timer_fired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        let timer = match &mut self.timer {
            None => {
                self.timer_at = deadline;
                self.timer_waker = None;
                self.timer
                    .insert(Box::pin(tokio::time::sleep_until(deadline)))
            }
            Some(timer) => {
                if self.timer_at > deadline {
                    self.timer_at = deadline;
                    self.timer_waker = None;
                    timer.as_mut().reset(deadline);
                }
                timer
            }
        };
        let waiting = self
            .timer_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if waiting && !timer.is_elapsed() {
            return false;
        }
        if timer.as_mut().poll(cx).is_pending() {
            self.timer_waker = Some(cx.waker().clone());
            return false;
        }
        self.timer_waker = None;
        if self.timer_at >= deadline {
            return true;
        }
        // It went off for an earlier deadline: move it to this one.
        self.timer_at = deadline;
        timer.as_mut().reset(deadline);
        let fired = timer.as_mut().poll(cx).is_ready();
        if !fired {
            self.timer_waker = Some(cx.waker().clone());
        }
        fired
    }

    /// A read of the current head had to wait: past its deadline, answer 408.
    fn poll_head_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.phase == Phase::Head && self.timer_fired(cx, self.deadline) {
            counted(408, Reason::HeaderTimeout);
            return Poll::Ready(self.refuse(cx, &TIMEOUT_408, io::ErrorKind::TimedOut));
        }
        Poll::Pending
    }

    /// Read what the client sent next (at most [`HEAD_READ`] bytes) into `pending`; the
    /// number of bytes, 0 at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut space = [MaybeUninit::<u8>::uninit(); HEAD_READ];
        let mut read = ReadBuf::uninit(&mut space);
        match Pin::new(&mut self.inner).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => {
                self.pending.extend(read.filled());
                Poll::Ready(Ok(read.filled().len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Hand pending bytes to `buf`, as many as fit, checking the limits of a head among them.
    ///
    /// Bytes after the end of a head go up with it, as they would from a plain read: Pingora
    /// takes bytes it finds after a request (pipelined, or beyond its body) as overread and
    /// does not reuse the connection, where bytes arriving later while it proxies would be
    /// refused with a 400.
    fn deliver(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> io::Result<()> {
        if self.armed {
            self.armed = false;
            self.start_head();
        }
        let n = self.pending.len().min(buf.remaining());
        if self.phase == Phase::Head {
            if self.head.feed(&self.pending.bytes()[..n]) {
                self.phase = Phase::Body;
            }
            // The request line is one of the lines.
            let too_many = self.head.lines > self.limits.max_headers + 1;
            if self.head.bytes > self.limits.max_bytes || too_many {
                counted(431, Reason::HeaderTooLarge);
                return Err(self.refuse(cx, &TOO_LARGE_431, io::ErrorKind::InvalidData));
            }
        }
        buf.put_slice(&self.pending.bytes()[..n]);
        self.pending.consume(n);
        Ok(())
    }

    /// Wait until `want` bytes have arrived (keeping them for the reads that follow); see the
    /// [`Peek`] implementation. `idle_until` is the keep-alive deadline of this wait, set when
    /// it first has to wait.
    fn poll_peek(
        &mut self,
        cx: &mut Context<'_>,
        want: usize,
        idle_until: &mut Option<Instant>,
    ) -> Poll<io::Result<()>> {
        if self.failed {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        while self.pending.len() < want {
            match self.poll_fill(cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if self.phase == Phase::Head && !self.armed => {
                    // The connection's first head: its deadline counts from accept.
                    return self.poll_head_deadline(cx).map(Err);
                }
                Poll::Pending => {
                    // Between requests: the keep-alive timeout.
                    let idle = self.limits.idle;
                    let until = *idle_until.get_or_insert_with(|| Instant::now() + idle);
                    if self.timer_fired(cx, until) {
                        let e = io::Error::new(io::ErrorKind::TimedOut, "keep-alive timeout");
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl fmt::Debug for HeadGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadGuard")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .field("pending", &self.pending.len())
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
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.pending.is_empty() {
                return Poll::Ready(this.deliver(cx, buf));
            }
            if !this.expecting_head() {
                // A body, a response's aftermath or an upgraded connection: straight through.
                if buf.remaining() > SMALL_BODY_READ && this.small_reads.load(Ordering::Relaxed) {
                    return this.poll_small_read(cx, buf);
                }
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            match this.poll_fill(cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return this.poll_head_deadline(cx).map(Err),
            }
        }
    }
}

impl HeadGuard {
    /// One read of at most [`SMALL_BODY_READ`] bytes into `buf`, through a buffer on the
    /// stack (only while request buffering reads a body of unknown length).
    fn poll_small_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut stack = [0u8; SMALL_BODY_READ];
        let mut small = ReadBuf::new(&mut stack);
        let read = Pin::new(&mut self.inner).poll_read(cx, &mut small);
        if let Poll::Ready(Ok(())) = read {
            buf.put_slice(small.filled());
        }
        read
    }
}

/// Waits until `buf.len()` bytes have arrived and copies them into `buf`, without consuming
/// them: the reads that follow return them first (so a peek through the guard sees what its
/// reads will, not only what is still in the socket). It waits as
/// [`HeadGuard::poll_arrival`] does: under the first head's deadline (a `408`), and between
/// requests under the keep-alive timeout (an error, after which the connection is closed
/// without an answer, as Pingora closes idle connections).
#[async_trait]
impl Peek for HeadGuard {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let mut idle_until = None;
        std::future::poll_fn(|cx| self.poll_peek(cx, buf.len(), &mut idle_until)).await?;
        buf.copy_from_slice(&self.pending.bytes()[..buf.len()]);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guard over one end of a loopback connection, and the client's end.
    async fn pair(limits: HeadLimits) -> (HeadGuard, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora_core::protocols::l4::stream::Stream::from(server));
        (HeadGuard::new(stream, limits, Instant::now()), client)
    }

    const LIMITS: HeadLimits = HeadLimits {
        timeout: Duration::from_secs(10),
        max_bytes: 200,
        max_headers: 10,
        idle: Duration::from_secs(60),
        send_timeout: Duration::from_secs(5),
        response_buffering: 1024,
    };

    async fn arrival(guard: &mut HeadGuard) -> io::Result<()> {
        let mut idle_until = None;
        std::future::poll_fn(|cx| guard.poll_arrival(cx, &mut idle_until)).await
    }

    /// Read what the guard hands up, `chunk` bytes at a time, until `want` bytes came.
    async fn read_n(guard: &mut HeadGuard, want: usize, chunk: usize) -> io::Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        while out.len() < want {
            let n = guard.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(out)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_first_request_gets_408_at_the_head_deadline() {
        use tokio::io::AsyncReadExt;
        let start = Instant::now();
        let (mut guard, mut client) = pair(LIMITS).await;
        let e = arrival(&mut guard).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed().as_secs(), 10);
        let mut answer = Vec::new();
        drop(guard);
        client.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_timeout_counts_from_the_start_of_each_wait() {
        use tokio::io::AsyncWriteExt;
        let (mut guard, mut client) = pair(LIMITS).await;
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for _ in 0..3 {
            client.write_all(head).await.unwrap();
            arrival(&mut guard).await.unwrap();
            assert_eq!(read_n(&mut guard, head.len(), 64).await.unwrap(), head);
            guard.arm();
            // Busy for 50 s (virtual time) before the next wait: each wait still gets 60 s.
            tokio::time::sleep(Duration::from_secs(50)).await;
        }
        let waiting = Instant::now();
        let e = arrival(&mut guard).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(waiting.elapsed().as_secs(), 60);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_bytes_come_out_in_order_and_heads_are_still_limited() {
        use tokio::io::AsyncWriteExt;
        let (mut guard, mut client) = pair(LIMITS).await;
        // Two pipelined requests in one write, read back through a small buffer.
        let two = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
        client.write_all(two).await.unwrap();
        arrival(&mut guard).await.unwrap();
        let first = two.len() / 2;
        assert_eq!(read_n(&mut guard, first, 7).await.unwrap(), &two[..first]);
        guard.arm();
        arrival(&mut guard).await.unwrap();
        assert_eq!(read_n(&mut guard, first, 7).await.unwrap(), &two[first..]);
        // A third head over max_bytes (200) is refused once it is handed up.
        guard.arm();
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "x".repeat(300));
        client.write_all(big.as_bytes()).await.unwrap();
        arrival(&mut guard).await.unwrap();
        let e = read_n(&mut guard, big.len(), 4096).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
