//! The two HTTP/1.1 test backends, thin views over the shared core in `http1.rs`:
//! [`TestBackend`] (configurable answers, requests as [`RecordedRequest`]) and
//! [`RecordingBackend`] (fixed answers, every byte and [`RawRequest`] as received).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::http1::{self, Core, Mode};
use super::ports::bind_unreserved;
use super::request::{RawRequest, RecordedRequest};
use super::server::Server;

/// How a [`TestBackend`] answers.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Wait this long before answering every request. A request header
    /// `x-test-delay-ms: N` overrides it for that request.
    pub delay: Option<Duration>,
    /// Response status (default 200). A request header `x-test-status: N` overrides it.
    pub status: u16,
    /// Response body; default: the backend's name.
    pub body: Option<String>,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            delay: None,
            status: 200,
            body: None,
            headers: Vec::new(),
        }
    }
}

/// Starts the shared server core on a fresh port.
fn start_core(name: &str, mode: Mode) -> (Server, Arc<Core>) {
    start_core_on(bind_unreserved(), name, mode)
}

/// Starts the shared server core on `listener`.
fn start_core_on(listener: TcpListener, name: &str, mode: Mode) -> (Server, Arc<Core>) {
    let core = Arc::new(Core::new(name, mode));
    let server = {
        let core = core.clone();
        Server::start_on(listener, move |stream| {
            let conn = core.open_connection();
            let core = core.clone();
            async move { http1::serve(stream, conn, &core).await }
        })
    };
    (server, core)
}

/// A tiny HTTP/1.1 server on 127.0.0.1:<random port>.
///
/// Every response has body = the name (unless overridden), header `x-backend: NAME`,
/// `content-type: text/plain` and a `content-length`. Keep-alive is supported; request bodies
/// with `content-length` or `transfer-encoding: chunked` are read and recorded.
///
/// Stopping it (with [`TestBackend::stop`] or by dropping it) closes the listener and all open
/// connections, so the port refuses connections afterwards.
pub struct TestBackend {
    server: Server,
    core: Arc<Core>,
}

impl TestBackend {
    /// Starts a backend with default options (200, body = name).
    pub async fn start(name: &str) -> TestBackend {
        TestBackend::start_with(name, BackendOptions::default()).await
    }

    /// Starts a backend that waits `delay` before every answer.
    pub async fn start_delayed(name: &str, delay: Duration) -> TestBackend {
        TestBackend::start_with(
            name,
            BackendOptions {
                delay: Some(delay),
                ..BackendOptions::default()
            },
        )
        .await
    }

    /// Starts a backend with the given options.
    pub async fn start_with(name: &str, opts: BackendOptions) -> TestBackend {
        let (server, core) = start_core(name, Mode::Normal(opts));
        TestBackend { server, core }
    }

    /// Starts a backend with default options on `addr` (say 127.0.0.3 and the port of
    /// another backend, so that DNS answers tell backends apart by address alone). `None`
    /// when `addr` cannot be bound; port 0 takes any free port.
    pub async fn start_at(name: &str, addr: SocketAddr) -> Option<TestBackend> {
        let listener = TcpListener::bind(addr).await.ok()?;
        let (server, core) = start_core_on(listener, name, Mode::Normal(BackendOptions::default()));
        Some(TestBackend { server, core })
    }

    /// The backend's name (its default body).
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Its port (on 127.0.0.1 unless started with [`TestBackend::start_at`]).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `IP:PORT` (`127.0.0.1:PORT` unless started with [`TestBackend::start_at`]), as written
    /// in configs.
    pub fn addr(&self) -> String {
        self.server.addr()
    }

    /// Number of requests received (completely) so far.
    pub fn count(&self) -> usize {
        self.core.complete()
    }

    /// Number of TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.core.connections()
    }

    /// All requests received (completely) so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.core
            .requests()
            .into_iter()
            .filter(|r| r.error.is_none())
            .map(RecordedRequest::from)
            .collect()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.requests().pop()
    }

    /// Forgets recorded requests and resets the counter.
    pub fn clear(&self) {
        self.core.clear();
    }

    /// Stops the server: closes the listener and every open connection, waits until they are
    /// gone. Afterwards connections to the port are refused.
    pub async fn stop(&self) {
        self.server.stop().await;
    }
}

/// A raw TCP HTTP/1.1 backend on 127.0.0.1:<random port> that records every byte it receives
/// (per connection) and every request it parsed from those bytes, so a test can tell exactly
/// what fulcrum sent upstream: how many requests, their request lines, and whether their
/// framing was unambiguous.
///
/// It parses like a strict origin server would (see `request.rs`), but still records what it
/// cannot parse. Each request gets `200` with the backend's name as the body,
/// `x-backend: NAME` and a `content-length`; keep-alive unless the request says
/// `Connection: close` or is HTTP/1.0. A request it cannot frame gets `400` and the connection
/// is closed.
pub struct RecordingBackend {
    server: Server,
    core: Arc<Core>,
}

impl RecordingBackend {
    /// Starts a recording backend answering with body `name`.
    pub async fn start(name: &str) -> RecordingBackend {
        let (server, core) = start_core(name, Mode::Recording);
        RecordingBackend { server, core }
    }

    /// Its name (the response body).
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `127.0.0.1:PORT`, as written in configs.
    pub fn addr(&self) -> String {
        self.server.addr()
    }

    /// Number of TCP connections accepted so far ([`clear`](Self::clear) does not reset it).
    pub fn connections(&self) -> usize {
        self.core.connections()
    }

    /// Every byte received, per connection, oldest connection first.
    pub fn raw_connections(&self) -> Vec<Vec<u8>> {
        self.core.raw_connections()
    }

    /// Every byte received on all connections, concatenated (connection order).
    pub fn raw(&self) -> Vec<u8> {
        self.core.raw_connections().concat()
    }

    /// Whether `needle` occurs anywhere in the bytes received.
    pub fn raw_contains(&self, needle: &[u8]) -> bool {
        self.core
            .raw_connections()
            .iter()
            .any(|c| !needle.is_empty() && c.windows(needle.len()).any(|w| w == needle))
    }

    /// Requests parsed so far (including incomplete or unframeable ones, see
    /// [`RawRequest::error`]), oldest first.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.core.requests()
    }

    /// The request lines of [`requests`](Self::requests), oldest first.
    pub fn request_lines(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .map(|r| r.request_line)
            .collect()
    }

    /// Number of requests parsed so far.
    pub fn count(&self) -> usize {
        self.core.recorded()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<RawRequest> {
        self.core.requests().pop()
    }

    /// Forgets recorded requests and bytes. Connection entries are emptied, not removed (open
    /// connections keep recording into theirs), so after a clear
    /// [`raw_connections`](Self::raw_connections) shows only bytes received since.
    pub fn clear(&self) {
        self.core.clear();
    }
}

/// An `upstreams:` section with one single-backend group per backend, named after it.
pub fn upstreams_of(backends: &[&TestBackend]) -> String {
    let mut s = String::from("upstreams:\n");
    for b in backends {
        s.push_str(&format!(
            "  {name}:\n    backends:\n      - addr: \"{addr}\"\n",
            name = b.name(),
            addr = b.addr()
        ));
    }
    s
}
