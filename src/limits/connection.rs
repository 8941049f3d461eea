//! The outermost layer of a proxy listener: a cap on open client connections, and the
//! request-head guard on every HTTP/1 connection.
//!
//! [`Guarded`] wraps Pingora's HTTP proxy application. Pingora's listener accepts and spawns
//! a task per connection with no limit of its own; `Guarded` counts connections over all
//! listeners ([`ConnectionCount`]) and answers one over the cap with a 503 before reading
//! anything (HAProxy stops accepting at `maxconn`; nginx closes past `worker_connections`).
//!
//! On an HTTPS listener the TLS handshake runs here too, after the permit is taken
//! ([`TlsHandshake`]): a handshake counts as a connection and has a deadline from accept. A
//! TLS connection over the cap is closed without an answer (a plain-text 503 means nothing to
//! a TLS client). On an `h2c` listener the first bytes decide between HTTP/2 and HTTP/1
//! ([`preface::sniff`]).
//!
//! For HTTP/1 it runs the keep-alive loop itself (the same steps as Pingora's own
//! `ServerApp` for HTTP apps: one `ServerSession` per request, with the persistent settings of
//! the previous one), so that it can tell the connection's [`HeadGuard`] when the next request
//! begins. HTTP/2 connections go to Pingora's own loop unchanged.
//!
//! After accept, TLS and protocol detection, the connection is served in a task of its own
//! ([`serve`]) and Pingora's per-connection task ends: an idle connection then holds a
//! future of about 500 bytes rather than Pingora's and this layer's accept-time futures
//! (about 20 KiB).

use super::handshake::TlsHandshake;
use super::head_guard::{HeadGuard, HeadLimits};
use super::preface::{self, Protocol};
use crate::metrics::listeners::ListenerMetrics;
use crate::metrics::rejections::{rejected, Reason};
use async_trait::async_trait;
use futures::FutureExt;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::Poll;
use tokio::io::AsyncWriteExt;

static BUSY_503: LazyLock<Vec<u8>> = LazyLock::new(|| {
    super::raw_answer(
        "503 Service Unavailable",
        "Retry-After: 1\r\n",
        "503 Service Unavailable: too many connections, retry soon\n",
    )
});

/// Open client connections, shared by every listener of the process.
#[derive(Debug)]
pub struct ConnectionCount {
    open: AtomicUsize,
    max: usize,
}

/// One counted connection; uncounted when dropped.
#[derive(Debug)]
pub struct ConnectionPermit(Arc<ConnectionCount>);

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionCount {
    /// A counter allowing `max` connections at once.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(ConnectionCount {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// Count one more connection, unless `max` are open.
    pub fn try_open(self: &Arc<Self>) -> Option<ConnectionPermit> {
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionPermit(Arc::clone(self)))
    }
}

/// An HTTP server application behind the connection cap and the request-head guard.
pub struct Guarded<A> {
    inner: Arc<A>,
    connections: Arc<ConnectionCount>,
    head: HeadLimits,
    h2c: bool,
    tls: Option<TlsHandshake>,
    metrics: Option<ListenerMetrics>,
}

impl<A> Guarded<A> {
    /// Guard `inner`; `h2c` says whether plain-text connections may speak HTTP/2, whose
    /// connections are not wrapped (HTTP/2 has no request heads in the HTTP/1 sense).
    pub fn new(inner: A, connections: Arc<ConnectionCount>, head: HeadLimits, h2c: bool) -> Self {
        Guarded {
            inner: Arc::new(inner),
            connections,
            head,
            h2c,
            tls: None,
            metrics: None,
        }
    }

    /// Count this listener's connections in `metrics`.
    pub fn with_metrics(mut self, metrics: ListenerMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Make this an HTTPS listener's application: each connection's TLS handshake runs under
    /// the connection cap, with `tls`'s deadline.
    pub fn with_tls(mut self, tls: TlsHandshake) -> Self {
        self.tls = Some(tls);
        self
    }
}

impl<A: HttpServerApp> Guarded<A> {
    /// A connection's first session: the configured keep-alive timeout (none once the server
    /// is shutting down), so that an answer written before the proxy's `request_filter` (a 400
    /// from Pingora's parser) keeps the connection as long as any other would, and Pingora's
    /// request limit.
    fn first_request(&self, session: &mut ServerSession, shutdown: &ShutdownWatch) {
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else {
            // `head.idle` is `limits.keepalive_timeout`, in whole seconds (at least 1).
            session.set_keepalive(Some(self.head.idle.as_secs()));
        }
        let limit = self
            .inner
            .server_options()
            .and_then(|o| o.keepalive_request_limit);
        session.set_keepalive_reuses_remaining(limit);
    }

    /// One request on an HTTP/1 connection: its session, with the previous request's
    /// `settings` (or the first request's), handed to Pingora. The session is built here,
    /// outside the keep-alive loop's future, and lives in the boxed future Pingora returns,
    /// so that an idle connection's task holds no room for one.
    fn request<'a>(
        &'a self,
        guard: Box<HeadGuard>,
        settings: Option<HttpPersistentSettings>,
        shutdown: &'a ShutdownWatch,
    ) -> Pin<Box<dyn Future<Output = Option<ReusedHttpStream>> + Send + 'a>> {
        let mut session = ServerSession::new_http1(guard);
        match settings {
            Some(settings) => settings.apply_to_session(&mut session),
            None => self.first_request(&mut session, shutdown),
        }
        self.inner.process_new_http(session, shutdown)
    }
}

/// Wait for the first byte of the connection's next request ([`HeadGuard::poll_arrival`]);
/// false when the connection should close instead: the client went away, its first head is
/// late (answered 408), a keep-alive connection stayed idle past its timeout, or the server is
/// shutting down while a keep-alive connection waits for its next request (idle connections
/// are closed then, as Pingora and nginx close them, so clients reconnect to the process that
/// takes over).
///
/// A connection's `first` request is always waited for, shutdown or not, within the head
/// deadline: a connection this process accepted, even in the last moment before it stopped
/// accepting, was taken out of the listen queue that the next process now serves, and no one
/// else will ever answer it (it is then answered with `Connection: close`).
///
/// `stopping` is the connection's one wait for the server to stop ([`stopping`]), kept
/// across requests, so a wait that has to watch for it does not register with the shutdown
/// watch anew each time.
async fn next_request<S>(guard: &mut HeadGuard, stopping: Pin<&mut S>, first: bool) -> bool
where
    S: Future<Output = bool>,
{
    let mut idle_until = None;
    // Under load the request is usually there already: no shutdown watch, no timer.
    let ready = std::future::poll_fn(|cx| guard.poll_arrival(cx, &mut idle_until));
    if let Poll::Ready(arrived) = futures::poll!(ready) {
        return arrived.is_ok();
    }
    // The connection is idle: it holds no buffers while it waits.
    guard.release_buffers();
    let mut arrival = std::future::poll_fn(|cx| guard.poll_arrival(cx, &mut idle_until));
    if first {
        return arrival.await.is_ok();
    }
    tokio::select! {
        biased;
        arrived = &mut arrival => arrived.is_ok(),
        stopping = stopping => {
            // Not stopping: no one can shut this server down any more; wait for the request.
            !stopping && arrival.await.is_ok()
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let accepted = tokio::time::Instant::now();
        if let Some(m) = &self.metrics {
            m.accepted();
        }
        let Some(permit) = self.connections.try_open() else {
            rejected(Reason::TooManyConnections);
            if self.tls.is_none() {
                let _ = stream.write_all(&BUSY_503).await;
                let _ = stream.flush().await;
            }
            return None;
        };
        // Counted open until the permit goes.
        let permit = (permit, self.metrics.as_ref().map(ListenerMetrics::open));
        if let Some(tls) = &self.tls {
            // A late or failed handshake is the client's doing: no error-level log.
            stream = match tls.accept(stream, accepted).await {
                Ok(tls_stream) => tls_stream,
                Err(e) => {
                    log::debug!("{e}");
                    return None;
                }
            };
        }
        let h2 = match stream.selected_alpn_proto() {
            Some(ALPN::H2) => true,
            _ if self.h2c && stream.get_ssl_digest().is_none() => {
                // A client that sends nothing is cut at the head timeout here too.
                match preface::sniff(stream, accepted + self.head.timeout).await {
                    Ok((sniffed, protocol)) => {
                        stream = sniffed;
                        protocol == Protocol::Http2
                    }
                    Err(e) => {
                        log::debug!("h2c listener: {e}");
                        return None;
                    }
                }
            }
            _ => false,
        };
        let connection = if h2 {
            Connection::H2(if stream.get_ssl_digest().is_some() {
                // Pingora's HTTP/2 handshake waits for the client's preface without a limit;
                // the guard gives it the first head's deadline (the preface ends in an empty
                // line, like a head), then passes everything through.
                Box::new(HeadGuard::new(stream, self.head, accepted))
            } else {
                stream
            })
        } else {
            Connection::Http1(Box::new(HeadGuard::new(stream, self.head, accepted)))
        };
        // The rest of the connection's life runs in a task of its own, on this thread's
        // runtime, and Pingora's task for the connection ends here: its future (Pingora's
        // accept-side handshake, this function's TLS handshake and preface sniffing) is
        // several KiB that an idle keep-alive connection would otherwise hold until it
        // closes. A server that stops drops this task with the runtime, as it drops
        // Pingora's own connection tasks.
        tokio::spawn(serve(
            Arc::clone(self),
            connection,
            Box::new(permit),
            shutdown.clone(),
        ));
        None
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await
    }
}

/// A connection past the cap, TLS and protocol detection, ready to be served.
enum Connection {
    /// An HTTP/1 connection, in its head guard.
    Http1(Box<HeadGuard>),
    /// An HTTP/2 connection (over TLS in a head guard for the preface's deadline).
    H2(Stream),
}

/// Serve `connection` until it closes, holding `permit` (its place under the connection cap
/// and in the listener's open-connections gauge) until then.
async fn serve<A: HttpServerApp + Send + Sync + 'static>(
    app: Arc<Guarded<A>>,
    connection: Connection,
    permit: Box<dyn Any + Send + Sync>,
    shutdown: ShutdownWatch,
) {
    match connection {
        Connection::H2(stream) => {
            let _permit = permit;
            // Pingora's HTTP/2 loop, boxed by `async_trait`: this task holds only the box.
            let _ = app.inner.process_new(stream, &shutdown).await;
        }
        Connection::Http1(mut guard) => {
            // The connection counts until it is closed, also while the guard delivers the
            // last response it accepted after Pingora let go of the stream.
            guard.hold_until_closed(permit);
            keep_alive(&app, guard, shutdown).await;
        }
    }
}

/// Whether the server is stopping: true once it is, false if no one can stop it any more (its
/// shutdown watch is gone). Fused by the caller, it then never completes again.
async fn stopping(mut shutdown: ShutdownWatch) -> bool {
    shutdown.wait_for(|stopping| *stopping).await.is_ok()
}

/// Pingora's HTTP/1 keep-alive loop (pingora-core's `impl ServerApp for HttpServerApp`), with
/// the head guard re-armed before each next request, and each request awaited here first: an
/// idle connection then holds only this loop and its stream, not Pingora's per-request state
/// (tens of KiB), and Pingora's read of the head finds it waiting.
async fn keep_alive<A: HttpServerApp + Send + Sync + 'static>(
    app: &Guarded<A>,
    mut guard: Box<HeadGuard>,
    shutdown: ShutdownWatch,
) {
    let stop = stopping(shutdown.clone()).fuse();
    let mut stop = std::pin::pin!(stop);
    // The previous request's persistent settings (keep-alive, reuses left); Pingora always
    // hands them back with a reusable connection.
    let mut settings: Option<HttpPersistentSettings> = None;
    let mut first = true;
    loop {
        if !next_request(&mut guard, stop.as_mut(), first).await {
            return;
        }
        first = false;
        let Some(done) = app.request(guard, settings.take(), &shutdown).await else {
            return;
        };
        let (stream, kept) = done.consume();
        // Pingora hands back the stream it was given: the guard.
        let Ok(next) = stream.into_any().downcast::<HeadGuard>() else {
            return;
        };
        guard = next;
        // A response the guard accepted for a client that was not reading goes out before
        // the next request is read.
        if guard.has_unsent()
            && std::future::poll_fn(|cx| guard.poll_deliver(cx))
                .await
                .is_err()
        {
            return;
        }
        guard.arm();
        settings = kept;
    }
}
