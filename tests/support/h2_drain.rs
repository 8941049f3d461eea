//! [`DrainingH2Backend`]: an h2c backend that shuts a connection down gracefully (RFC 9113
//! 6.8: GOAWAY with NO_ERROR) while a request is still in flight on it, finishes that request,
//! then closes the connection; it keeps accepting new connections meanwhile.
//!
//! A request to [`SLOW_PATH`] starts the drain of its connection: the backend sends GOAWAY at
//! once, then holds that request's response until the test calls
//! [`DrainingH2Backend::release_slow`]. Every other request is answered at once. Each answer
//! names the connection (numbered from 1 in accept order) that carried it, so a test can tell
//! which requests shared a connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

use super::server::Server;

/// The path whose request starts the graceful shutdown of the connection carrying it.
pub const SLOW_PATH: &str = "/slow";

/// How many DATA frames the held response of [`SLOW_PATH`] is sent in.
const SLOW_CHUNKS: usize = 4;

/// Bytes in each of those DATA frames.
const SLOW_CHUNK_BYTES: usize = 16 * 1024;

/// What the backend and the test share.
struct Drain {
    /// Connections accepted so far.
    opened: AtomicUsize,
    /// Connections closed so far.
    closed: watch::Sender<usize>,
    /// Set when the peer has answered a PING sent after the GOAWAY: it has read the GOAWAY.
    goaway_seen: watch::Sender<bool>,
    /// Lets the held [`SLOW_PATH`] response go.
    release: Notify,
}

/// A running draining h2c backend; stops when dropped.
pub struct DrainingH2Backend {
    server: Server,
    drain: Arc<Drain>,
}

impl DrainingH2Backend {
    /// A plaintext HTTP/2 (prior knowledge) backend answering as `name`.
    pub fn h2c(name: &'static str) -> DrainingH2Backend {
        let drain = Arc::new(Drain {
            opened: AtomicUsize::new(0),
            closed: watch::channel(0).0,
            goaway_seen: watch::channel(false).0,
            release: Notify::new(),
        });
        let shared = drain.clone();
        let server = Server::start(move |stream| {
            let conn = shared.opened.fetch_add(1, Ordering::SeqCst) + 1;
            let drain = shared.clone();
            async move {
                let _ = serve(stream, name, conn, &drain).await;
                drain.closed.send_modify(|n| *n += 1);
            }
        });
        DrainingH2Backend { server, drain }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.drain.opened.load(Ordering::SeqCst)
    }

    /// Waits (at most `limit`) until the peer has acknowledged a PING the backend sent after
    /// its GOAWAY, which proves the peer has read the GOAWAY; panics otherwise.
    pub async fn wait_goaway_seen(&self, limit: Duration) {
        let mut seen = self.drain.goaway_seen.subscribe();
        tokio::time::timeout(limit, seen.wait_for(|s| *s))
            .await
            .expect("the peer acknowledged the PING sent after GOAWAY")
            .expect("backend state");
    }

    /// Lets the held [`SLOW_PATH`] response go (now, or as soon as it is held).
    pub fn release_slow(&self) {
        self.drain.release.notify_one();
    }

    /// Waits (at most `limit`) until `n` connections have closed; panics otherwise.
    pub async fn wait_closed(&self, n: usize, limit: Duration) {
        let mut closed = self.drain.closed.subscribe();
        tokio::time::timeout(limit, closed.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} backend connection(s) closed"))
            .expect("backend state");
    }

    /// The whole body of the [`SLOW_PATH`] response served as `name` on connection `conn`.
    pub fn slow_body(name: &str, conn: usize) -> String {
        (0..SLOW_CHUNKS)
            .map(|i| slow_chunk(name, conn, i))
            .collect()
    }
}

/// DATA frame `i` of the slow response: one line, padded with `.` to [`SLOW_CHUNK_BYTES`].
fn slow_chunk(name: &str, conn: usize, i: usize) -> String {
    let head = format!("{name} conn={conn} {SLOW_PATH} part {i} ");
    format!("{head}{}\n", ".".repeat(SLOW_CHUNK_BYTES - head.len() - 1))
}

/// Serves one connection, numbered `conn`: other requests get 200 with
/// `"{name} conn={conn} {method} {path}\n"` at once; [`SLOW_PATH`] starts the graceful
/// shutdown and is answered when released. Returns once the connection is closed.
async fn serve(
    stream: TcpStream,
    name: &'static str,
    conn: usize,
    drain: &Arc<Drain>,
) -> Result<(), h2::Error> {
    let mut h2 = h2::server::handshake(stream).await?;
    let mut ping = h2.ping_pong();
    while let Some(next) = h2.accept().await {
        let (req, mut respond) = next?;
        let path = req.uri().path().to_string();
        if path != SLOW_PATH {
            let body = format!("{name} conn={conn} {} {path}\n", req.method());
            if let Ok(mut send) = respond.send_response(ok(), false) {
                let _ = send.send_data(Bytes::from(body), true);
            }
            continue;
        }
        // GOAWAY(2^31-1, NO_ERROR) and a PING now; once that PING is answered, GOAWAY with the
        // last stream accepted. The accept loop keeps driving the connection meanwhile.
        h2.graceful_shutdown();
        if let Some(mut pp) = ping.take() {
            let drain = drain.clone();
            // Frames are read in order, so the answer to this PING (written after the GOAWAY)
            // proves the peer has read the GOAWAY.
            tokio::spawn(async move {
                if pp.ping(h2::Ping::opaque()).await.is_ok() {
                    drain.goaway_seen.send_replace(true);
                }
            });
        }
        let drain = drain.clone();
        tokio::spawn(async move {
            drain.release.notified().await;
            let Ok(mut send) = respond.send_response(ok(), false) else {
                return;
            };
            for i in 0..SLOW_CHUNKS {
                let chunk = slow_chunk(name, conn, i);
                if send
                    .send_data(Bytes::from(chunk), i + 1 == SLOW_CHUNKS)
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    Ok(())
}

/// A 200 head with a plain-text body to follow.
fn ok() -> http::Response<()> {
    http::Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(())
        .expect("response head")
}
