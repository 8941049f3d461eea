//! Writes through a [`HeadGuard`], with a bounded write-behind buffer.
//!
//! A client that does not read its response would keep Pingora writing it, and so keep the
//! backend connection and its `max_connections` slot, until `send_timeout`. Once the proxy
//! knows the rest of the current response fits `limits.response_buffering`
//! ([`HeadGuard::rest_of_response`]: a `Content-Length` that fits, or the end of the body in
//! hand), a write the client is not ready for is accepted into the guard's buffer instead of
//! waiting, and a flush returns once only such bytes remain. Pingora then finishes the request
//! at once: the backend connection goes back to its pool and the slot is freed. Streaming
//! responses (server-sent events) are never delayed: nothing is held back before that point,
//! and bytes that can be written are written at once.
//!
//! The guard delivers what it accepted (each wait bounded by `send_timeout` without
//! progress) before the next request on the connection (the connection loop calls
//! [`HeadGuard::poll_deliver`]), when the stream is shut down, and, when Pingora drops the
//! stream with bytes still waiting, in a task of its own that keeps the connection's permit.

use super::HeadGuard;
use async_trait::async_trait;
use pingora_core::protocols::Shutdown;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use tokio::time::Instant;

impl HeadGuard {
    /// Whether writes the client is not ready for may go into the write-behind buffer.
    fn engaged(&self) -> bool {
        self.behind.enabled() && self.complete.load(Ordering::Relaxed)
    }

    /// Write waiting bytes until none wait (`Ready(Ok)`) or the client takes no more
    /// (`Pending`, woken when it does).
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.behind.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, self.behind.bytes()) {
                Poll::Ready(Ok(0)) => {
                    self.behind.clear();
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.behind.consume(n);
                    self.drain_deadline = None;
                }
                Poll::Ready(Err(e)) => {
                    self.behind.clear();
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Write `bufs` (or as much as goes), behind any waiting bytes.
    fn poll_send(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Err(e)) = self.poll_push(cx) {
            return Poll::Ready(Err(e));
        }
        if self.behind.is_empty() {
            let sent = match bufs {
                [one] => Pin::new(&mut self.inner).poll_write(cx, one),
                _ => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
            };
            if sent.is_ready() || !self.engaged() {
                return sent;
            }
        } else if !self.engaged() {
            return Poll::Pending;
        }
        // The client is not ready, and the rest of the response fits: keep it here. (When the
        // buffer is full, the client's next read wakes the task: the push above waits on it.)
        match self.behind.accept(bufs) {
            0 if bufs.iter().all(|b| b.is_empty()) => Poll::Ready(Ok(0)),
            0 => Poll::Pending,
            n => Poll::Ready(Ok(n)),
        }
    }

    /// Deliver every byte accepted for the client and flush; fails when the client took none
    /// for `send_timeout` (the bytes are dropped then) or went away.
    pub fn poll_deliver(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.poll_push(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_flush(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let wait = self.limits.send_timeout;
                let until = *self
                    .drain_deadline
                    .get_or_insert_with(|| Instant::now() + wait);
                if self.timer_fired(cx, until) {
                    self.behind.clear();
                    let e = io::Error::new(io::ErrorKind::TimedOut, "send timeout");
                    return Poll::Ready(Err(e));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for HeadGuard {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// Ready once only bytes the guard accepted remain (they follow; see the module docs).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_push(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if this.engaged() => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_deliver(cx).is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for HeadGuard {
    async fn shutdown(&mut self) {
        let _ = std::future::poll_fn(|cx| self.poll_deliver(cx)).await;
        self.inner.shutdown().await
    }
}

impl Drop for HeadGuard {
    /// Pingora drops some streams without shutting them down: bytes still waiting are
    /// delivered by a task of their own, which keeps the connection's permit until then.
    fn drop(&mut self) {
        if self.behind.is_empty() || self.detached {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let placeholder = Box::new(io::Cursor::new(Vec::<u8>::new()));
        let inner = std::mem::replace(&mut self.inner, placeholder);
        let mut rest = HeadGuard::new(inner, self.limits, Instant::now());
        rest.behind = std::mem::take(&mut self.behind);
        rest.keep = self.keep.take();
        rest.detached = true;
        runtime.spawn(async move {
            if std::future::poll_fn(|cx| rest.poll_deliver(cx))
                .await
                .is_ok()
            {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut rest.inner).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::HeadLimits;
    use super::*;
    use pingora_core::protocols::Stream;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMITS: HeadLimits = HeadLimits {
        timeout: Duration::from_secs(10),
        max_bytes: 4096,
        max_headers: 10,
        idle: Duration::from_secs(60),
        send_timeout: Duration::from_secs(5),
        response_buffering: 1000,
    };

    /// A guard over one end of an in-memory pipe that holds `window` bytes, and the client's
    /// end.
    fn pair(window: usize) -> (HeadGuard, tokio::io::DuplexStream) {
        let (server, client) = tokio::io::duplex(window);
        let stream: Stream = Box::new(server);
        (HeadGuard::new(stream, LIMITS, Instant::now()), client)
    }

    /// Poll a write once.
    fn try_write(guard: &mut HeadGuard, buf: &[u8]) -> Poll<io::Result<usize>> {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        Pin::new(guard).poll_write(&mut cx, buf)
    }

    fn try_flush(guard: &mut HeadGuard) -> Poll<io::Result<()>> {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        Pin::new(guard).poll_flush(&mut cx)
    }

    #[tokio::test]
    async fn without_a_complete_response_a_full_client_makes_writes_wait() {
        let (mut guard, _client) = pair(100);
        assert!(matches!(
            try_write(&mut guard, &[1; 300]),
            Poll::Ready(Ok(100))
        ));
        assert!(try_write(&mut guard, &[1; 10]).is_pending());
        assert!(!guard.has_unsent());
    }

    #[tokio::test]
    async fn a_complete_response_is_accepted_up_to_the_limit_and_delivered_in_order() {
        let (mut guard, mut client) = pair(100);
        guard.rest_of_response(900);
        let data: Vec<u8> = (0..1200u32).map(|i| i as u8).collect();
        let mut sent = 0;
        while let Poll::Ready(Ok(n)) = try_write(&mut guard, &data[sent..]) {
            sent += n;
        }
        // 100 bytes to the client, 1000 (the limit) behind; the rest waits.
        assert_eq!(sent, 1100);
        assert!(guard.has_unsent());
        assert!(matches!(try_flush(&mut guard), Poll::Ready(Ok(()))));
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 1100];
            client.read_exact(&mut got).await.unwrap();
            got
        });
        std::future::poll_fn(|cx| guard.poll_deliver(cx))
            .await
            .unwrap();
        assert!(!guard.has_unsent());
        assert_eq!(reader.await.unwrap(), data[..1100]);
    }

    #[tokio::test]
    async fn a_rest_above_the_limit_does_not_engage() {
        let (mut guard, _client) = pair(10);
        guard.rest_of_response(1001);
        assert!(matches!(
            try_write(&mut guard, &[1; 20]),
            Poll::Ready(Ok(10))
        ));
        assert!(try_write(&mut guard, &[1; 20]).is_pending());
        // The next request starts unknown again.
        guard.rest_of_response(0);
        assert!(matches!(
            try_write(&mut guard, &[1; 20]),
            Poll::Ready(Ok(20))
        ));
        guard.arm();
        assert!(try_write(&mut guard, &[1; 20]).is_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn delivery_gives_up_after_send_timeout_without_progress() {
        let (mut guard, _client) = pair(10);
        guard.rest_of_response(0);
        assert!(matches!(
            try_write(&mut guard, &[1; 500]),
            Poll::Ready(Ok(10))
        ));
        assert!(matches!(
            try_write(&mut guard, &[1; 500]),
            Poll::Ready(Ok(500))
        ));
        let start = Instant::now();
        let e = std::future::poll_fn(|cx| guard.poll_deliver(cx))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), LIMITS.send_timeout);
        assert!(!guard.has_unsent(), "dropped after the timeout");
    }

    #[tokio::test]
    async fn a_dropped_guard_still_delivers_what_it_accepted() {
        let (mut guard, mut client) = pair(10);
        guard.rest_of_response(0);
        let mut sent = 0;
        while let Poll::Ready(Ok(n)) = try_write(&mut guard, &[7; 300][sent..]) {
            sent += n;
            if sent == 300 {
                break;
            }
        }
        assert_eq!(sent, 300);
        drop(guard);
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got));
        read.await.unwrap().unwrap();
        assert_eq!(got, vec![7; 300]);
        // The client end still works for writing: nothing else to check.
        let _ = client.write_all(b"x").await;
    }
}
