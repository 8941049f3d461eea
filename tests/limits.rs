//! Limits against the real fulcrum binary: request head size and header count (431), body
//! size (413), the request-head deadline (408, slowloris), the body read timeout, the
//! keep-alive idle timeout, the client connection cap (503), per-client-IP rate limiting
//! (429 + `Retry-After`), per-backend `max_connections` with its bounded queue (503), and
//! config errors for bad limit values.
//!
//! Everything talks to 127.0.0.1 over real sockets; every read has a timeout and every loop is
//! bounded. Tests assert on what clients get (statuses, headers, closed connections) and on
//! what backends receive, never on log text. Where a test measures time, it is to tell which
//! limit acted (a deadline for the whole head rather than per read, an idle timeout rather
//! than an absolute one), with bounds far from the configured values; the numbers are printed
//! (`--nocapture`) for the record.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use support::*;

/// How long a raw exchange waits for more bytes after the last one received.
const IDLE: Duration = Duration::from_millis(800);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A listener on `port`, one upstream `app` with `backend` (plus `upstream_extra`, indented
/// under `app:`), `routes` (a YAML list body) and `top` (extra top-level sections).
fn config(port: u16, backend: &str, upstream_extra: &str, routes: &str, top: &str) -> String {
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    backends:
      - addr: "{backend}"
{upstream_extra}
routes:
{routes}
{top}
"#
    )
}

/// The catch-all route list.
const CATCH_ALL: &str = "  - upstream: app";

/// Connects to 127.0.0.1:`port` (bounded), with `TCP_NODELAY`.
async fn connect(port: u16) -> TcpStream {
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .unwrap_or_else(|_| panic!("connect to 127.0.0.1:{port} timed out"))
    .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    let _ = stream.set_nodelay(true);
    stream
}

/// A GET request head for `path` with `Host: app.test` and extra header lines.
fn get_head(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n");
    for (k, v) in extra {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// How a watched connection ended.
#[derive(Debug, Clone)]
struct Ended {
    /// When the close was seen, measured from the instant the caller passed.
    after: Duration,
    /// Everything the server sent before closing.
    bytes: Vec<u8>,
    /// Closed by a reset (read or write error) rather than a clean EOF.
    reset: bool,
}

impl Ended {
    fn statuses(&self) -> Vec<u16> {
        RawExchange {
            bytes: self.bytes.clone(),
            closed: true,
            ..RawExchange::default()
        }
        .statuses()
    }
}

/// Reads (without writing) until the server closes `stream`, at most until `deadline`.
/// `Some` with what arrived when it closed, `None` when it was still open at the deadline.
async fn wait_closed(stream: &mut TcpStream, since: Instant, deadline: Instant) -> Option<Ended> {
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    for _ in 0..100_000 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0)) => {
                return Some(Ended {
                    after: since.elapsed(),
                    bytes,
                    reset: false,
                })
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => {
                return Some(Ended {
                    after: since.elapsed(),
                    bytes,
                    reset: true,
                })
            }
        }
    }
    None
}

/// Reads one complete response off a keep-alive connection (at most `wait`). `Err` says what
/// happened instead (closed, timed out).
async fn read_response(stream: &mut TcpStream, wait: Duration) -> Result<RawResponse, String> {
    let deadline = Instant::now() + wait;
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    for _ in 0..100_000 {
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, stream.read(&mut chunk)).await;
        let (n, closed) = match read {
            Err(_) => {
                return Err(format!(
                    "no complete response within {wait:?} (got {:?})",
                    String::from_utf8_lossy(&bytes)
                ))
            }
            Ok(Ok(0)) => (0, true),
            Ok(Ok(n)) => (n, false),
            Ok(Err(e)) => return Err(format!("read error {e} after {} bytes", bytes.len())),
        };
        bytes.extend_from_slice(&chunk[..n]);
        let ex = RawExchange {
            bytes: bytes.clone(),
            closed,
            ..RawExchange::default()
        };
        if let Some(r) = ex.responses().into_iter().next() {
            return Ok(r);
        }
        if closed {
            return Err(format!(
                "closed after {} bytes without a complete response: {:?}",
                bytes.len(),
                String::from_utf8_lossy(&bytes)
            ));
        }
    }
    Err("too many reads".to_string())
}

/// fulcrum is running, has not panicked, and answers a normal GET `path` with 200 on a fresh
/// connection.
async fn assert_serves(f: &mut Fulcrum, path: &str, after: &str) {
    assert!(
        f.is_running(),
        "fulcrum died after {after}\n{}",
        f.describe()
    );
    let stderr = f.stderr();
    assert!(
        !stderr.contains("panicked"),
        "fulcrum panicked after {after}:\n{stderr}"
    );
    let r = get_host(&client_no_pool(), &f.url(path), "app.test").await;
    assert_eq!(
        r.status, 200,
        "a normal request after {after} should be served: {r:?}"
    );
}

/// The body bytes of a chunked body as received so far (it may be cut anywhere).
fn chunked_payload_len(mut b: &[u8]) -> usize {
    let mut total = 0;
    for _ in 0..1_000_000 {
        let Some(lf) = b.windows(2).position(|w| w == b"\r\n") else {
            return total;
        };
        let text = String::from_utf8_lossy(&b[..lf]).into_owned();
        let Ok(size) = usize::from_str_radix(text.split(';').next().unwrap_or("").trim(), 16)
        else {
            return total;
        };
        if size == 0 {
            return total;
        }
        b = &b[lf + 2..];
        total += size.min(b.len());
        if b.len() < size + 2 {
            return total;
        }
        b = &b[size + 2..];
    }
    total
}

/// Body bytes (payload, de-chunked) that reached a recording backend on all its connections.
fn body_bytes_received(backend: &RecordingBackend) -> usize {
    backend
        .raw_connections()
        .iter()
        .map(|raw| {
            let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return 0;
            };
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let body = &raw[end + 4..];
            if head.contains("transfer-encoding: chunked") {
                chunked_payload_len(body)
            } else {
                body.len()
            }
        })
        .sum()
}

/// A POST head with a Content-Length.
fn post_head(path: &str, len: usize) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: app.test\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// A POST with a Content-Length and a body of that many bytes.
fn post(path: &str, len: usize) -> Vec<u8> {
    let mut req = post_head(path, len);
    req.extend(std::iter::repeat_n(b'b', len));
    req
}

// ---------------------------------------------------------------------------------------------
// A backend that measures how many requests it serves at once
// ---------------------------------------------------------------------------------------------

/// A raw HTTP/1.1 backend that answers every request (GET, no body) after `delay`, and counts
/// the requests it holds at once. A request is "in flight" from the end of its head to just
/// before its answer is written, so the count never exceeds what fulcrum has in flight.
struct SlowBackend {
    port: u16,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl SlowBackend {
    async fn start(delay: Duration) -> SlowBackend {
        // free_port() reserves the port within this test binary, so no fulcrum listener is
        // handed the same one.
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("slow backend: bind 127.0.0.1:{port}: {e}"));
        let b = SlowBackend {
            port,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: Arc::new(AtomicUsize::new(0)),
            received: Arc::new(AtomicUsize::new(0)),
            answered: Arc::new(AtomicUsize::new(0)),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        let (in_flight, max, received, answered, tasks) = (
            b.in_flight.clone(),
            b.max_in_flight.clone(),
            b.received.clone(),
            b.answered.clone(),
            b.tasks.clone(),
        );
        let accept = tokio::spawn(async move {
            for _ in 0..100_000 {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let conn = tokio::spawn(serve_slow(
                    stream,
                    delay,
                    in_flight.clone(),
                    max.clone(),
                    received.clone(),
                    answered.clone(),
                ));
                let mut t = tasks.lock().unwrap();
                t.retain(|h| !h.is_finished());
                t.push(conn);
            }
        });
        b.tasks.lock().unwrap().push(accept);
        b
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for SlowBackend {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// Read from `stream` into `buf` until it holds a whole request head; the offset of the
/// head's final CRLF CRLF, or `None` when the connection ends, stalls for 30 s or sends more
/// than 64 KiB without finishing a head.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, chunk: &mut [u8]) -> Option<usize> {
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(p);
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        match tokio::time::timeout(Duration::from_secs(30), stream.read(chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

async fn serve_slow(
    mut stream: TcpStream,
    delay: Duration,
    in_flight: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    for _ in 0..10_000 {
        // One request head (fulcrum only sends GETs here: no body).
        let Some(end) = read_head(&mut stream, &mut buf, &mut chunk).await else {
            return;
        };
        buf.drain(..end + 4);
        received.fetch_add(1, Ordering::SeqCst);
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        in_flight.fetch_sub(1, Ordering::SeqCst);
        answered.fetch_add(1, Ordering::SeqCst);
        let out = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n\r\nslow";
        if stream.write_all(out).await.is_err() {
            return;
        }
    }
}

/// One client request's outcome, with when it finished and what the backend had answered by
/// then.
#[derive(Debug, Clone)]
struct Outcome {
    status: u16,
    took: Duration,
    backend_answered_by_then: usize,
}

/// Sends `n` GETs at once (each on its own connection) and returns their outcomes.
async fn concurrent_gets(f: &Fulcrum, backend: &SlowBackend, n: usize) -> Vec<Outcome> {
    let c = client_no_pool();
    let answered = backend.answered.clone();
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let c = c.clone();
            let url = f.url(&format!("/req{i}"));
            let answered = answered.clone();
            tokio::spawn(async move {
                let r = get(&c, &url).await;
                Outcome {
                    status: r.status,
                    took: start.elapsed(),
                    backend_answered_by_then: answered.load(Ordering::SeqCst),
                }
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 1. Request head size and header count: 431
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_too_many_headers_get_431() {
    let backend = RecordingBackend::start("app").await;
    let port = free_port();
    let top = "limits:\n  max_header_bytes: 4KiB\n  max_headers: 10\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", CATCH_ALL, top), port).await;

    let big = "a".repeat(5000);
    let twenty: Vec<(String, String)> = (0..19)
        .map(|i| (format!("X-H{i}"), "v".to_string()))
        .collect();
    let eleven: Vec<(String, String)> = (0..10)
        .map(|i| (format!("X-H{i}"), "v".to_string()))
        .collect();
    let as_refs = |v: &[(String, String)]| -> Vec<u8> {
        let refs: Vec<(&str, &str)> = v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        get_head("/many", &refs)
    };
    // A head that never ends, larger than the limit: refused while it is being read.
    let mut endless = b"GET /endless HTTP/1.1\r\nHost: app.test\r\nX-Endless: ".to_vec();
    endless.extend(std::iter::repeat_n(b'e', 8000));

    let refused: Vec<(&str, Vec<u8>)> = vec![
        (
            "5000-byte header value",
            get_head("/big", &[("X-Big", &big)]),
        ),
        ("unterminated 8000-byte head", endless),
        ("20 header lines (Host + 19)", as_refs(&twenty)),
        ("11 header lines (Host + 10)", as_refs(&eleven)),
    ];
    for (what, request) in &refused {
        backend.clear();
        let ex = raw_exchange(port, request, IDLE).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            ex.statuses(),
            vec![431],
            "{what}: expected one 431, got {}: {:?}",
            ex.summary(),
            ex.text()
        );
        assert!(ex.closed, "{what}: connection should be closed after 431");
        assert!(
            backend.raw().is_empty() && backend.count() == 0,
            "{what}: the backend must receive nothing, got {:?}",
            String::from_utf8_lossy(&backend.raw())
        );
    }

    // Just under the limits: served, and the backend gets everything.
    backend.clear();
    let prefix = "GET /under HTTP/1.1\r\nHost: app.test\r\nX-Big: ";
    let pad = 4000 - prefix.len() - "\r\n\r\n".len();
    let under = format!("{prefix}{}\r\n\r\n", "u".repeat(pad));
    assert_eq!(under.len(), 4000);
    let ex = raw_exchange(port, under.as_bytes(), IDLE).await;
    assert_eq!(ex.statuses(), vec![200], "4000-byte head: {}", ex.summary());
    let got = backend
        .last_request()
        .expect("backend got the 4000-byte head");
    assert_eq!(got.target, "/under");
    assert_eq!(got.header("x-big").map(|v| v.len()), Some(pad));

    backend.clear();
    let ten: Vec<(String, String)> = (0..9)
        .map(|i| (format!("X-H{i}"), "v".to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = ten.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let ex = raw_exchange(port, &get_head("/ten", &refs), IDLE).await;
    assert_eq!(
        ex.statuses(),
        vec![200],
        "10 header lines: {}",
        ex.summary()
    );
    let got = backend
        .last_request()
        .expect("backend got the 10-header request");
    assert_eq!(got.target, "/ten");
    for i in 0..9 {
        assert_eq!(got.header(&format!("x-h{i}")).as_deref(), Some("v"));
    }

    // A head just under the limit followed, in the same write, by a body larger than the
    // limit: the body is not counted as part of the head.
    backend.clear();
    let prefix = "POST /with-body HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5000\r\nX-Pad: ";
    let pad = 3000 - prefix.len() - "\r\n\r\n".len();
    let mut req = format!("{prefix}{}\r\n\r\n", "p".repeat(pad)).into_bytes();
    req.extend(std::iter::repeat_n(b'b', 5000));
    let ex = raw_exchange(port, &req, IDLE).await;
    assert_eq!(
        ex.statuses(),
        vec![200],
        "3000-byte head + 5000-byte body in one write: {}",
        ex.summary()
    );
    assert_eq!(backend.last_request().map(|r| r.body.len()), Some(5000));

    // Pipelined behind a normal request, in the same write: the second head never reaches the
    // backend. A second head too large for the first read makes Pingora refuse the bytes
    // pipelined behind the bodyless first request ("Sent data after end of body"): 400 and a
    // close. A small one arrives in the same read: the first request is answered, and the
    // connection closed without reading the second.
    let mut many = get_head("/p1", &[]);
    many.extend(as_refs(&twenty));
    let mut big_second = get_head("/p1", &[]);
    big_second.extend(get_head("/p2", &[("X-Big", &big)]));
    for (what, request, want) in [
        ("pipelined 5000-byte second head", big_second, 400),
        ("pipelined 20-header second head", many, 200),
    ] {
        backend.clear();
        let ex = raw_exchange(port, &request, IDLE).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let statuses = ex.statuses();
        eprintln!("{what}: {}", ex.summary());
        assert!(
            ex.closed && statuses == vec![want],
            "{what}: expected one {want} and a close, got {}: {:?}",
            ex.summary(),
            ex.text()
        );
        assert!(
            backend
                .request_lines()
                .iter()
                .all(|l| l == "GET /p1 HTTP/1.1"),
            "{what}: only the first request may reach the backend, saw {:?}",
            backend.request_lines()
        );
    }

    // Endless empty lines before any request line: they count against the head limit, so 431,
    // and nothing forwarded.
    backend.clear();
    let ex = raw_exchange(port, &b"\r\n".repeat(4000), IDLE).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let statuses = ex.statuses();
    assert!(
        ex.closed && statuses == vec![431],
        "8000 bytes of empty lines: expected one 431 and a close, got {}",
        ex.summary()
    );
    assert!(backend.raw().is_empty());

    assert_serves(&mut f, "/after-431", "431 answers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_head_limits_answer_431() {
    let backend = RecordingBackend::start("app").await;
    let port = free_port();
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", CATCH_ALL, ""), port).await;

    let headers = |n: usize| -> Vec<u8> {
        let owned: Vec<(String, String)> = (0..n)
            .map(|i| (format!("X-H{i}"), "v".to_string()))
            .collect();
        let refs: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        get_head("/h", &refs)
    };
    let sized = |total: usize| -> Vec<u8> {
        let prefix = "GET /s HTTP/1.1\r\nHost: app.test\r\nX-Big: ";
        let pad = total - prefix.len() - 4;
        format!("{prefix}{}\r\n\r\n", "s".repeat(pad)).into_bytes()
    };
    // Default: 100 headers (Host included), 64 KiB heads. 300 headers is past Pingora's own
    // 256, which it would answer with a plain 400: fulcrum's 431 comes first.
    for (what, request, want) in [
        ("100 header lines", headers(99), 200),
        ("101 header lines", headers(100), 431),
        ("300 header lines", headers(299), 431),
        ("a 60 KiB head", sized(60 * 1024), 200),
        ("a 70 KiB head", sized(70 * 1024), 431),
    ] {
        backend.clear();
        let ex = raw_exchange(port, &request, IDLE).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            ex.statuses(),
            vec![want],
            "{what} with the default limits: {}",
            ex.summary()
        );
        if want == 431 {
            assert!(ex.closed, "{what}: closed after 431");
            assert!(backend.raw().is_empty(), "{what}: nothing forwarded");
        } else {
            assert_eq!(backend.count(), 1, "{what}: forwarded");
        }
    }
    assert_serves(&mut f, "/after", "default head limits").await;
}

// ---------------------------------------------------------------------------------------------
// 2. Body size: 413
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_and_never_reach_the_backend() {
    let backend = RecordingBackend::start("app").await;
    let port = free_port();
    let routes = "  - path: /big\n    upstream: app\n    max_body_bytes: 64KiB\n  \
                  - path: /nolimit\n    upstream: app\n    max_body_bytes: 0\n  \
                  - path: /\n    upstream: app\n";
    let top = "limits:\n  max_body_bytes: 2KiB\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", routes, top), port).await;

    // Content-Length over the limit, with the body, and with only the head: 413 without the
    // backend seeing a byte (the head-only case shows the answer does not wait for the body).
    for (what, request) in [
        ("Content-Length 4096 with body", post("/cl", 4096)),
        ("Content-Length 2049 with body", post("/cl", 2049)),
        ("Content-Length 4096, head only", post_head("/cl", 4096)),
        ("Content-Length 1 GiB, head only", post_head("/cl", 1 << 30)),
        ("/big route, Content-Length 65537", post_head("/big", 65537)),
    ] {
        backend.clear();
        let ex = raw_exchange(port, &request, IDLE).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            ex.statuses(),
            vec![413],
            "{what}: expected one 413, got {}: {:?}",
            ex.summary(),
            ex.text()
        );
        assert!(ex.closed, "{what}: connection should close after 413");
        assert!(
            backend.raw().is_empty(),
            "{what}: the backend must receive nothing, got {:?}",
            String::from_utf8_lossy(&backend.raw())
        );
    }

    // At the limit: served, body intact.
    backend.clear();
    let ex = raw_exchange(port, &post("/cl", 2048), IDLE).await;
    assert_eq!(ex.statuses(), vec![200], "2048-byte body: {}", ex.summary());
    assert_eq!(backend.last_request().map(|r| r.body.len()), Some(2048));

    // A route with its own, larger limit accepts what the default refuses.
    backend.clear();
    let ex = raw_exchange(port, &post("/big/x", 4096), IDLE).await;
    assert_eq!(
        ex.statuses(),
        vec![200],
        "/big 4096 bytes: {}",
        ex.summary()
    );
    assert_eq!(backend.last_request().map(|r| r.body.len()), Some(4096));

    // A route with `max_body_bytes: 0` has no limit.
    backend.clear();
    let mib = 1 << 20;
    let r = request(
        &client_no_pool(),
        "POST",
        &f.url("/nolimit/x"),
        Some("app.test"),
        &[],
        Some(vec![b'n'; mib]),
    )
    .await;
    assert_eq!(r.status, 200, "/nolimit 1 MiB: {r:?}");
    assert_eq!(backend.last_request().map(|r| r.body.len()), Some(mib));

    // A chunked body that grows over the limit, 512 bytes at a time.
    backend.clear();
    let chunk_size = 512;
    let mut s = connect(port).await;
    let start = Instant::now();
    s.write_all(b"POST /chunked HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .expect("write head");
    let chunk = format!("{chunk_size:x}\r\n{}\r\n", "c".repeat(chunk_size));
    let mut sent = 0;
    let mut answer = Vec::new();
    let mut ended: Option<Ended> = None;
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..32 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        sent += chunk_size;
        // Pace the chunks (one per read on fulcrum's side), watching for an answer.
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) => {
                ended = Some(Ended {
                    after: start.elapsed(),
                    bytes: answer.clone(),
                    reset: false,
                });
                break;
            }
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Ok(Err(_)) => {
                ended = Some(Ended {
                    after: start.elapsed(),
                    bytes: answer.clone(),
                    reset: true,
                });
                break;
            }
        }
    }
    let ended = match ended {
        Some(e) => e,
        None => {
            let mut e = wait_closed(&mut s, start, Instant::now() + Duration::from_secs(5))
                .await
                .unwrap_or_else(|| {
                    panic!(
                        "chunked body over the limit: connection still open 5 s after {sent} \
                         body bytes (answer so far {:?})",
                        String::from_utf8_lossy(&answer)
                    )
                });
            answer.extend_from_slice(&e.bytes);
            e.bytes = answer.clone();
            e
        }
    };
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let statuses = ended.statuses();
    let received = body_bytes_received(&backend);
    eprintln!(
        "chunked over a 2 KiB limit: client sent {sent} body bytes, got {statuses:?} and a close \
         ({}) after {:?}; backend received {received} body bytes",
        if ended.reset { "reset" } else { "EOF" },
        ended.after
    );
    // Not exact: the client is still sending the body when fulcrum answers and closes, so the
    // kernel may reset the connection and discard the 413 before the client reads it.
    assert!(
        statuses.is_empty() || statuses == vec![413],
        "chunked over the limit: expected 413 or a bare close, got {statuses:?}: {:?}",
        String::from_utf8_lossy(&ended.bytes)
    );
    assert!(
        sent < 32 * chunk_size,
        "fulcrum kept reading the whole {sent}-byte body"
    );
    assert!(
        received <= 2048 + chunk_size,
        "the backend received {received} body bytes, more than the limit (2048) + one chunk"
    );
    for r in backend.requests() {
        assert!(
            r.error.is_some(),
            "the backend must not get a complete request from an over-limit chunked body: {} \
             with {} body bytes",
            r.request_line,
            r.body.len()
        );
    }

    assert_serves(&mut f, "/after-413", "413 answers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_body_bytes_zero_means_no_limit() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let top = "limits:\n  max_body_bytes: 0\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", CATCH_ALL, top), port).await;
    // 11 MiB: more than the 10 MiB default.
    let size = 11 << 20;
    let r = request(
        &client_no_pool(),
        "POST",
        &f.url("/upload"),
        Some("app.test"),
        &[],
        Some(vec![b'z'; size]),
    )
    .await;
    assert_eq!(r.status, 200, "11 MiB with max_body_bytes: 0: {r:?}");
    assert_eq!(backend.last_request().map(|r| r.body.len()), Some(size));
    assert_serves(&mut f, "/after", "an 11 MiB body").await;

    // The default (10 MiB) refuses it.
    let other = TestBackend::start("other").await;
    let port2 = free_port();
    let mut f2 = Fulcrum::start(&config(port2, &other.addr(), "", CATCH_ALL, ""), port2).await;
    let ex = raw_exchange(port2, &post_head("/upload", size), IDLE).await;
    assert_eq!(
        ex.statuses(),
        vec![413],
        "11 MiB with the default: {}",
        ex.summary()
    );
    let ex = raw_exchange(port2, &post("/upload", 4096), IDLE).await;
    assert_eq!(ex.statuses(), vec![200], "4 KiB with the default");
    assert_eq!(
        other.count(),
        1,
        "only the 4 KiB request reached the backend"
    );
    assert_serves(&mut f2, "/after", "413 with the default limit").await;
}

// ---------------------------------------------------------------------------------------------
// 3. Slowloris
// ---------------------------------------------------------------------------------------------

/// What happened to a connection that sent its head one byte at a time, never finishing.
#[derive(Debug, Clone)]
struct SlowResult {
    /// Bytes written before the server closed (or the client gave up).
    sent: usize,
    /// When the close was seen, from the connect; `None` if still open after `give_up`.
    closed_after: Option<Duration>,
    /// What the server sent.
    answer: Vec<u8>,
}

/// Connects and sends a request head one byte every `interval` (never ending it) until the
/// server closes the connection or `give_up` passes.
async fn slow_head_client(port: u16, interval: Duration, give_up: Duration) -> SlowResult {
    let mut s = connect(port).await;
    let t0 = Instant::now();
    let pattern = b"GET /slow HTTP/1.1\r\nHost: app.test\r\nX-Slow: ";
    let mut sent = 0;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    for i in 0..100_000 {
        if t0.elapsed() > give_up {
            break;
        }
        if answer.is_empty() {
            let byte = pattern.get(i).copied().unwrap_or(b'a');
            if s.write_all(&[byte]).await.is_err() {
                return SlowResult {
                    sent,
                    closed_after: Some(t0.elapsed()),
                    answer,
                };
            }
            sent += 1;
        }
        // Wait one interval, watching for an answer or a close.
        let until = Instant::now() + interval;
        for _ in 0..1000 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, s.read(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return SlowResult {
                        sent,
                        closed_after: Some(t0.elapsed()),
                        answer,
                    }
                }
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            }
        }
    }
    SlowResult {
        sent,
        closed_after: None,
        answer,
    }
}

fn statuses_of(bytes: &[u8]) -> Vec<u16> {
    RawExchange {
        bytes: bytes.to_vec(),
        closed: true,
        ..RawExchange::default()
    }
    .statuses()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_cut_and_normal_clients_are_served() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let top = "limits:\n  header_timeout: 1s\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", CATCH_ALL, top), port).await;

    const SLOW: usize = 50;
    let attack_start = Instant::now();
    let slow: Vec<JoinHandle<SlowResult>> = (0..SLOW)
        .map(|_| {
            tokio::spawn(slow_head_client(
                port,
                Duration::from_millis(200),
                Duration::from_secs(8),
            ))
        })
        .collect();

    // A normal client, one request per fresh connection, for as long as the attack lasts.
    let stop = Arc::new(AtomicBool::new(false));
    let normal = {
        let stop = stop.clone();
        let url = f.url("/normal");
        tokio::spawn(async move {
            let c = client_no_pool();
            let (mut ok, mut total) = (0usize, 0usize);
            let mut failures = Vec::new();
            let started = Instant::now();
            for _ in 0..2000 {
                if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(15) {
                    break;
                }
                total += 1;
                match try_request(&c, "GET", &url, Some("app.test"), &[], None).await {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failures.push(format!("status {}: {:?}", r.status, r.body)),
                    Err(e) => failures.push(format!("{e:?}")),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ok, total, failures)
        })
    };

    let mut results = Vec::new();
    for t in slow {
        results.push(t.await.expect("slow client task"));
    }
    // Keep the normal client going a little past the last close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, total, failures) = normal.await.expect("normal client task");
    let attack_took = attack_start.elapsed();

    let mut closes: Vec<Duration> = results.iter().filter_map(|r| r.closed_after).collect();
    closes.sort();
    let answered_408 = results
        .iter()
        .filter(|r| statuses_of(&r.answer) == vec![408])
        .count();
    let rate = 100.0 * ok as f64 / total.max(1) as f64;
    eprintln!(
        "slowloris: {SLOW} connections sending 1 byte / 200 ms, header_timeout 1s: {} closed, \
         after min {:?} / median {:?} / max {:?}; {answered_408} got a 408 answer, the rest a \
         bare close; bytes sent per connection: {:?}..{:?}. Normal client during the attack \
         ({attack_took:?}): {ok}/{total} served = {rate:.1}%",
        closes.len(),
        closes.first().copied().unwrap_or_default(),
        closes.get(closes.len() / 2).copied().unwrap_or_default(),
        closes.last().copied().unwrap_or_default(),
        results.iter().map(|r| r.sent).min().unwrap_or_default(),
        results.iter().map(|r| r.sent).max().unwrap_or_default(),
    );

    for (i, r) in results.iter().enumerate() {
        let after = r.closed_after.unwrap_or_else(|| {
            panic!(
                "slow connection #{i} was still open after 8 s ({} bytes sent)",
                r.sent
            )
        });
        assert!(
            after < Duration::from_secs(4),
            "slow connection #{i} was closed only after {after:?} (header_timeout 1s)"
        );
        assert!(
            after >= Duration::from_millis(900),
            "slow connection #{i} was closed after {after:?}, before the 1 s header timeout"
        );
        let statuses = statuses_of(&r.answer);
        // Not exact: the client is still sending when fulcrum answers and closes, so a byte
        // arriving after fulcrum's last read makes the kernel reset the connection, which can
        // discard the 408 before the client reads it.
        assert!(
            statuses.is_empty() || statuses == vec![408],
            "slow connection #{i}: expected 408 or a bare close, got {:?}",
            String::from_utf8_lossy(&r.answer)
        );
    }
    assert!(
        total >= 10,
        "the normal client made only {total} requests during the attack"
    );
    assert!(
        ok * 100 >= total * 99,
        "normal client success rate during the attack {rate:.1}% ({ok}/{total}); failures: \
         {failures:?}"
    );
    assert_eq!(
        backend
            .requests()
            .iter()
            .filter(|r| r.path == "/slow")
            .count(),
        0,
        "no slow head may reach the backend"
    );
    assert_serves(&mut f, "/after", "the slowloris attack").await;
}

// ---------------------------------------------------------------------------------------------
// 4. The head deadline covers the whole head, not each read
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_deadline_covers_the_whole_head_not_each_read() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let top = "limits:\n  header_timeout: 1s\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", CATCH_ALL, top), port).await;

    // One byte every 300 ms: no single read waits anywhere near 1 s.
    let r = slow_head_client(port, Duration::from_millis(300), Duration::from_secs(6)).await;
    eprintln!(
        "1 byte / 300 ms with header_timeout 1s: closed after {:?} having sent {} bytes, \
         answer {:?}",
        r.closed_after,
        r.sent,
        String::from_utf8_lossy(&r.answer)
    );
    let after = r
        .closed_after
        .expect("a head trickling in 1 byte / 300 ms must be cut, but was open after 6 s");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(2500),
        "expected a cut at about 1 s, got {after:?}"
    );
    assert!(
        r.sent >= 3,
        "the client kept sending ({} bytes) up to the cut",
        r.sent
    );
    let statuses = statuses_of(&r.answer);
    // Not exact: the client is still sending when fulcrum answers and closes, so a byte
    // arriving after fulcrum's last read makes the kernel reset the connection, which can
    // discard the 408 before the client reads it.
    assert!(
        statuses.is_empty() || statuses == vec![408],
        "expected 408 or a bare close, got {:?}",
        String::from_utf8_lossy(&r.answer)
    );

    // A head sent slowly but within the deadline (6 pieces over 500 ms) is served.
    let head = get_head("/slow-but-fine", &[("X-A", "1"), ("X-B", "2")]);
    let mut s = connect(port).await;
    let pieces: Vec<&[u8]> = head.chunks(head.len().div_ceil(6)).collect();
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s.write_all(p).await.expect("write a piece of the head");
    }
    let resp = read_response(&mut s, Duration::from_secs(5))
        .await
        .expect("a head sent over 500 ms is served");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body_string(), "app");

    // On a keep-alive connection, the next head's deadline starts at its first byte, not at
    // the end of the previous response: idle 1.5 s, then another slow head, served.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let head = get_head("/second", &[]);
    let pieces: Vec<&[u8]> = head.chunks(head.len().div_ceil(5)).collect();
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s.write_all(p)
            .await
            .expect("write a piece of the second head");
    }
    let resp = read_response(&mut s, Duration::from_secs(5))
        .await
        .expect("a second slow head after 1.5 s idle is served");
    assert_eq!(resp.status, 200);
    assert_eq!(
        backend.last_request().map(|r| r.path),
        Some("/second".into())
    );

    // And a head trickled on the same keep-alive connection is cut about 1 s after its first
    // byte, with a 408 or a bare close.
    let pattern = b"GET /third HTTP/1.1\r\nHost: app.test\r\n";
    let first_byte = Instant::now();
    let mut ended = None;
    let mut buf = [0u8; 4096];
    for i in 0..30 {
        if s.write_all(&[pattern[i % pattern.len()]]).await.is_err() {
            ended = Some((first_byte.elapsed(), Vec::new()));
            break;
        }
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => {
                ended = Some((first_byte.elapsed(), Vec::new()));
                break;
            }
            Ok(Ok(n)) => {
                let mut bytes = buf[..n].to_vec();
                let t = Instant::now();
                if let Some(e) = wait_closed(&mut s, t, t + Duration::from_secs(3)).await {
                    bytes.extend_from_slice(&e.bytes);
                }
                ended = Some((first_byte.elapsed(), bytes));
                break;
            }
        }
    }
    let (after, answer) = ended.expect("a trickled keep-alive head must be cut within 9 s");
    eprintln!(
        "keep-alive, third head 1 byte / 300 ms: cut {after:?} after its first byte, answer {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(2500),
        "expected a cut about 1 s after the head's first byte, got {after:?}"
    );
    let statuses = statuses_of(&answer);
    // Not exact: the client is still sending when fulcrum answers and closes, so a byte
    // arriving after fulcrum's last read makes the kernel reset the connection, which can
    // discard the 408 before the client reads it.
    assert!(statuses.is_empty() || statuses == vec![408], "{statuses:?}");

    assert_serves(&mut f, "/after", "a trickled head").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_cut_at_the_header_timeout() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let top = "limits:\n  header_timeout: 1s\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", CATCH_ALL, top), port).await;

    let mut s = connect(port).await;
    let t = Instant::now();
    let ended = wait_closed(&mut s, t, t + Duration::from_secs(6))
        .await
        .expect("a silent connection must be closed (still open after 6 s)");
    eprintln!(
        "silent connection with header_timeout 1s: closed after {:?}, answer {:?}",
        ended.after,
        String::from_utf8_lossy(&ended.bytes)
    );
    assert!(
        ended.after >= Duration::from_millis(900) && ended.after < Duration::from_millis(2500),
        "expected a close at about 1 s, got {:?}",
        ended.after
    );
    let statuses = ended.statuses();
    assert!(
        statuses == vec![408],
        "expected one 408: {:?}",
        String::from_utf8_lossy(&ended.bytes)
    );
    assert_serves(&mut f, "/after", "a silent connection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_deadline_on_an_h2c_listener_counts_from_accept() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
    h2c: true
limits:
  header_timeout: 1s
upstreams:
  app:
    backends:
      - addr: "{b}"
routes:
  - upstream: app
"#,
        b = backend.addr()
    );
    let mut f = Fulcrum::start(&yaml, port).await;

    // One byte every 35 ms: the first byte already tells the request from HTTP/2's preface,
    // and the time spent on that counts towards the head's deadline; the head never ends.
    let r = slow_head_client(port, Duration::from_millis(35), Duration::from_secs(6)).await;
    eprintln!(
        "h2c listener, 1 byte / 35 ms, header_timeout 1s: closed after {:?} having sent {} \
         bytes, answer {:?}",
        r.closed_after,
        r.sent,
        String::from_utf8_lossy(&r.answer)
    );
    let after = r
        .closed_after
        .expect("the trickled head must be cut, but was open after 6 s");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(1500),
        "expected a cut about 1 s after accepting the connection, got {after:?}"
    );
    // HTTP/1 on the h2c listener is served.
    let ex = raw_exchange(port, &get_head("/h1", &[]), IDLE).await;
    assert_eq!(ex.statuses(), vec![200], "HTTP/1 on h2c: {}", ex.summary());
    assert_serves(&mut f, "/after", "a trickled head on h2c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_body_is_cut_after_body_timeout() {
    let backend = RecordingBackend::start("app").await;
    let port = free_port();
    let top = "limits:\n  body_timeout: 1s\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", CATCH_ALL, top), port).await;

    // Announce 100 bytes, send 10, then stall.
    let mut s = connect(port).await;
    let start = Instant::now();
    s.write_all(
        b"POST /stalled HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .expect("write");
    let ended = wait_closed(&mut s, start, start + Duration::from_secs(8))
        .await
        .expect("a stalled body must be cut (still open after 8 s with body_timeout 1s)");
    eprintln!(
        "stalled body with body_timeout 1s: closed after {:?} ({}), answer {:?}",
        ended.after,
        if ended.reset { "reset" } else { "EOF" },
        String::from_utf8_lossy(&ended.bytes)
    );
    assert!(
        ended.after >= Duration::from_millis(900) && ended.after < Duration::from_secs(4),
        "expected a cut about 1 s after the last body byte, got {:?}",
        ended.after
    );
    let statuses = ended.statuses();
    assert!(
        statuses == vec![408],
        "expected one 408, got {:?}",
        String::from_utf8_lossy(&ended.bytes)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    for r in backend.requests() {
        assert!(
            r.error.is_some(),
            "the backend must not get the stalled request as complete: {r:?}"
        );
    }
    assert_serves(&mut f, "/after", "a stalled body").await;
}

// ---------------------------------------------------------------------------------------------
// 5. Keep-alive idle timeout
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_connections_are_closed() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let top = "limits:\n  keepalive_timeout: 1s\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", CATCH_ALL, top), port).await;

    // Used once, then idle: closed by fulcrum.
    let mut idle = connect(port).await;
    idle.write_all(&get_head("/once", &[]))
        .await
        .expect("write");
    let resp = read_response(&mut idle, Duration::from_secs(5))
        .await
        .expect("first response");
    assert_eq!(resp.status, 200);
    let idle_since = Instant::now();

    // Used every 500 ms: stays open, for longer than the timeout in total.
    let busy_task = tokio::spawn(async move {
        let mut busy = connect(port).await;
        let start = Instant::now();
        for i in 0..5 {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            busy.write_all(&get_head(&format!("/busy{i}"), &[]))
                .await
                .unwrap_or_else(|e| panic!("busy connection, request #{i}: write failed: {e}"));
            let r = read_response(&mut busy, Duration::from_secs(5))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "busy connection, request #{i} after {:?}: {e}",
                        start.elapsed()
                    )
                });
            assert_eq!(r.status, 200, "busy connection, request #{i}");
        }
        start.elapsed()
    });

    let ended = wait_closed(&mut idle, idle_since, idle_since + Duration::from_secs(6))
        .await
        .expect("an idle keep-alive connection must be closed (still open after 6 s)");
    let busy_for = busy_task.await.expect("busy connection task");
    eprintln!(
        "keepalive_timeout 1s: idle connection closed after {:?} ({}); a connection used every \
         500 ms stayed usable for {busy_for:?} (5 requests)",
        ended.after,
        if ended.reset { "reset" } else { "EOF" }
    );
    assert!(
        ended.bytes.is_empty(),
        "nothing should be sent on an idle connection: {:?}",
        String::from_utf8_lossy(&ended.bytes)
    );
    assert!(
        ended.after >= Duration::from_millis(800) && ended.after < Duration::from_millis(3500),
        "expected the idle connection closed after about 1-2 s, got {:?}",
        ended.after
    );
    assert!(busy_for >= Duration::from_secs(2));
    assert_serves(&mut f, "/after", "keep-alive timeouts").await;
}

// ---------------------------------------------------------------------------------------------
// 6. Client connection cap
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_get_503_and_close() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let top = "limits:\n  max_connections: 5\n  header_timeout: 30s\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", CATCH_ALL, top), port).await;
    assert_serves(&mut f, "/before", "start").await;
    // Let fulcrum notice that the readiness probe and that request's connection are gone.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(connect(port).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // All five are held open, unanswered.
    for (i, s) in idle.iter_mut().enumerate() {
        let mut b = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut b)).await {
            Err(_) => {}
            Ok(r) => panic!(
                "idle connection #{i} (of 5 allowed) got {r:?}: {:?}",
                r.as_ref().map(|n| String::from_utf8_lossy(&b[..*n]))
            ),
        }
    }

    // The sixth: answered 503 before it sends anything, and closed.
    let before = backend.count();
    let mut sixth = connect(port).await;
    let t = Instant::now();
    let ended = wait_closed(&mut sixth, t, t + Duration::from_secs(5))
        .await
        .expect("the 6th connection must be answered and closed");
    let resp = RawExchange {
        bytes: ended.bytes.clone(),
        closed: true,
        ..RawExchange::default()
    }
    .responses();
    assert_eq!(
        resp.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503],
        "6th connection: {:?}",
        String::from_utf8_lossy(&ended.bytes)
    );
    assert_eq!(
        resp[0].header("connection").map(|v| v.to_ascii_lowercase()),
        Some("close".to_string())
    );
    // A 7th that sends a request right away: also refused, never forwarded.
    let ex = raw_exchange(port, &get_head("/seventh", &[]), IDLE).await;
    assert_eq!(ex.statuses(), vec![503], "7th connection: {}", ex.summary());
    assert!(ex.closed, "7th connection should be closed");
    assert_eq!(
        backend.count(),
        before,
        "refused connections reach no backend"
    );

    // Close two: new connections are served again.
    idle.truncate(3);
    let t = Instant::now();
    let mut served_after = None;
    for _ in 0..30 {
        let ex = raw_exchange(port, &get_head("/again", &[("Connection", "close")]), IDLE).await;
        if ex.statuses() == vec![200] {
            served_after = Some(t.elapsed());
            break;
        }
        assert_eq!(ex.statuses(), vec![503], "unexpected: {}", ex.summary());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served_after =
        served_after.expect("after closing 2 of 5 connections, a new one must be served");
    eprintln!("max_connections 5: served again {served_after:?} after closing 2 connections");

    // Closed and refused connections gave their places back: with everything closed, ten
    // connections one after another are all served.
    drop(idle);
    drop(sixth);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..10 {
        let ex = raw_exchange(port, &get_head("/seq", &[("Connection", "close")]), IDLE).await;
        assert_eq!(ex.statuses(), vec![200], "sequential connection #{i}");
    }
    assert_serves(&mut f, "/after", "refusing connections").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_counts_all_listeners_together() {
    let backend = TestBackend::start("app").await;
    let (a, b) = (free_port(), free_port());
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{a}"
  - addr: "127.0.0.1:{b}"
limits:
  max_connections: 2
  header_timeout: 30s
upstreams:
  app:
    backends:
      - addr: "{backend}"
routes:
  - upstream: app
"#,
        backend = backend.addr()
    );
    let mut f = Fulcrum::start(&yaml, a).await;
    f.wait_listening(b).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let idle_a = connect(a).await;
    let idle_b = connect(b).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (name, port) in [("first", a), ("second", b)] {
        let mut third = connect(port).await;
        let t = Instant::now();
        let ended = wait_closed(&mut third, t, t + Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("a 3rd connection on the {name} listener must be refused"));
        assert_eq!(
            ended.statuses(),
            vec![503],
            "3rd connection (on the {name} listener) with 1 open on each: {:?}",
            String::from_utf8_lossy(&ended.bytes)
        );
    }
    drop(idle_a);
    drop(idle_b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for port in [a, b] {
        let ex = raw_exchange(port, &get_head("/x", &[("Connection", "close")]), IDLE).await;
        assert_eq!(ex.statuses(), vec![200], "port {port}: {}", ex.summary());
    }
    assert_serves(&mut f, "/after", "refusing connections").await;
}

// ---------------------------------------------------------------------------------------------
// 7. Rate limiting
// ---------------------------------------------------------------------------------------------

fn retry_after(r: &Resp) -> u64 {
    let v = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {r:?}"));
    v.trim()
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("Retry-After is not an integer: {v:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_allows_the_burst_then_429_with_retry_after() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let top = "rate_limit:\n  requests_per_second: 2\n  burst: 3\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", CATCH_ALL, top), port).await;
    let c = client();

    // A burst, as fast as possible, until the first 429. At 2/s a token comes back every
    // 500 ms, so exactly 3 pass unless the burst itself took that long.
    let start = Instant::now();
    let mut passed = 0;
    let mut limited = None;
    for _ in 0..10 {
        let r = get_host(&c, &f.url("/burst"), "app.test").await;
        match r.status {
            200 => passed += 1,
            429 => {
                limited = Some(r);
                break;
            }
            s => panic!("unexpected status {s}: {r:?}"),
        }
    }
    let took = start.elapsed();
    let limited = limited.expect("no 429 within 10 requests at 2/s, burst 3");
    let refills = (took.as_secs_f64() * 2.0).ceil() as usize;
    eprintln!(
        "rate limit 2/s burst 3: {passed} passed in {took:?}, then 429 with Retry-After {:?}",
        limited.header("retry-after")
    );
    assert!(
        passed >= 3 && passed <= 3 + refills,
        "{passed} requests passed in {took:?} (burst 3 at 2/s)"
    );
    assert_short_body(&limited, "429");
    let wait = retry_after(&limited);
    assert!(
        (1..=2).contains(&wait),
        "Retry-After {wait} (2/s: next token within 1 s)"
    );
    assert_eq!(
        backend.count(),
        passed,
        "the limited request did not reach the backend"
    );

    // After Retry-After seconds, served again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let r = get_host(&c, &f.url("/after-wait"), "app.test").await;
    assert_eq!(r.status, 200, "after waiting Retry-After ({wait} s): {r:?}");
    assert!(f.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_ignores_spoofed_forwarding_headers_and_routes_can_opt_out() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    // 0.1/s: no token comes back during the test, so counts are exact.
    let routes = "  - path: /free\n    upstream: app\n    rate_limit: off\n  \
                  - path: /own\n    upstream: app\n    rate_limit:\n      requests_per_second: 0.1\n      burst: 2\n  \
                  - path: /\n    upstream: app\n";
    let top = "rate_limit:\n  requests_per_second: 0.1\n  burst: 3\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", routes, top), port).await;
    let c = client();
    let url = f.url("/x");

    // Three requests, each claiming another client: they all count against 127.0.0.1.
    for i in 1..=3 {
        let xff = format!("203.0.113.{i}");
        let r = get_with(&c, &url, Some("app.test"), &[("x-forwarded-for", &xff)]).await;
        assert_eq!(r.status, 200, "request #{i} of the burst: {r:?}");
    }
    let spoofs: [&[(&str, &str)]; 6] = [
        &[("x-forwarded-for", "203.0.113.99")],
        &[("x-forwarded-for", "198.51.100.7, 203.0.113.5")],
        &[("x-real-ip", "192.0.2.44")],
        &[("forwarded", "for=192.0.2.45")],
        &[
            ("x-forwarded-for", "192.0.2.46"),
            ("x-real-ip", "192.0.2.46"),
        ],
        &[],
    ];
    for headers in spoofs {
        let r = get_with(&c, &url, Some("app.test"), headers).await;
        assert_eq!(
            r.status, 429,
            "a spoofed client address from an untrusted peer must not escape the limit: \
             {headers:?} -> {r:?}"
        );
        assert!(retry_after(&r) >= 1);
    }
    assert_eq!(backend.count(), 3);

    // A route with its own limit has its own buckets: the exhausted default does not apply.
    for i in 1..=2 {
        let r = get_host(&c, &f.url("/own/x"), "app.test").await;
        assert_eq!(r.status, 200, "/own request #{i}: {r:?}");
    }
    let r = get_host(&c, &f.url("/own/x"), "app.test").await;
    assert_eq!(r.status, 429, "/own over its own burst of 2: {r:?}");
    assert!(retry_after(&r) >= 1);
    // And using it did not give the default bucket anything back.
    let r = get_host(&c, &url, "app.test").await;
    assert_eq!(r.status, 429, "default route still limited: {r:?}");

    // `rate_limit: off` exempts a route.
    for i in 0..10 {
        let r = get_host(&c, &f.url("/free/x"), "app.test").await;
        assert_eq!(r.status, 200, "/free request #{i}: {r:?}");
    }
    assert_eq!(backend.count(), 3 + 2 + 10);
    assert_serves(&mut f, "/free/after", "rate limiting").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_buckets_follow_x_forwarded_for_from_trusted_proxies() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let top = "rate_limit:\n  requests_per_second: 0.1\n  burst: 1\n\
               forwarding:\n  trusted_proxies: [127.0.0.1/32]\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", CATCH_ALL, top), port).await;
    let c = client();
    let url = f.url("/x");
    let with_xff = |xff: &'static str| {
        let c = c.clone();
        let url = url.clone();
        async move {
            get_with(&c, &url, Some("app.test"), &[("x-forwarded-for", xff)])
                .await
                .status
        }
    };

    assert_eq!(with_xff("10.0.0.1").await, 200, "10.0.0.1, first");
    assert_eq!(with_xff("10.0.0.1").await, 429, "10.0.0.1, second");
    assert_eq!(
        with_xff("10.0.0.2").await,
        200,
        "10.0.0.2 has its own bucket"
    );
    assert_eq!(
        with_xff("10.0.0.3").await,
        200,
        "10.0.0.3 has its own bucket"
    );
    assert_eq!(with_xff("10.0.0.2").await, 429, "10.0.0.2, second");
    // The client is the rightmost untrusted address: 10.0.0.1 again, through a trusted hop.
    assert_eq!(
        with_xff("10.0.0.1, 127.0.0.1").await,
        429,
        "10.0.0.1 via a hop"
    );
    // The left of the first untrusted address is the client's to forge: not believed.
    assert_eq!(with_xff("10.9.9.9, 10.0.0.1").await, 429, "forged prefix");
    // Without the header, the client is the proxy itself.
    let plain = get_host(&c, &url, "app.test").await;
    assert_eq!(plain.status, 200, "127.0.0.1 itself: {plain:?}");
    let plain = get_host(&c, &url, "app.test").await;
    assert_eq!(plain.status, 429, "127.0.0.1 itself, second: {plain:?}");
    assert_eq!(backend.count(), 4);

    // Still serving: a client not seen yet.
    assert_eq!(with_xff("10.0.0.4").await, 200);
    assert!(f.is_running());
    let stderr = f.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// 8. Per-backend max_connections and the queue
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_max_connections_queues_requests() {
    let delay = Duration::from_millis(500);
    let backend = SlowBackend::start(delay).await;
    let port = free_port();
    let up = "    max_connections: 2\n    queue: {size: 100, timeout: 5s}\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), up, CATCH_ALL, ""), port).await;

    let out = concurrent_gets(&f, &backend, 6).await;
    let total = out.iter().map(|o| o.took).max().unwrap_or_default();
    eprintln!(
        "max_connections 2, queue 100, backend delay {delay:?}: statuses {:?}, finished after \
         {:?}; at most {} at once at the backend",
        out.iter().map(|o| o.status).collect::<Vec<_>>(),
        out.iter().map(|o| o.took).collect::<Vec<_>>(),
        backend.max_in_flight()
    );
    assert!(
        out.iter().all(|o| o.status == 200),
        "all 6 should be served: {out:?}"
    );
    assert_eq!(backend.received(), 6);
    assert_eq!(
        backend.max_in_flight(),
        2,
        "the backend must never hold more than 2 requests at once (and 2 did run together)"
    );
    assert!(
        total >= delay * 3 - Duration::from_millis(20),
        "6 requests, 2 at a time, {delay:?} each cannot finish in {total:?}"
    );
    assert_serves(&mut f, "/after", "queueing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_max_connections_applies_per_backend() {
    let delay = Duration::from_millis(500);
    let one = SlowBackend::start(delay).await;
    let two = SlowBackend::start(delay).await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    backends:
      - addr: "{one}"
      - addr: "{two}"
    max_connections: 1
    queue: {{size: 100, timeout: 5s}}
routes:
  - upstream: app
"#,
        one = one.addr(),
        two = two.addr()
    );
    let mut f = Fulcrum::start(&yaml, port).await;

    let out = concurrent_gets(&f, &one, 6).await;
    eprintln!(
        "2 backends, max_connections 1 each, 6 requests: {:?}; received {} + {}, at most {} / {} \
         at once",
        out.iter().map(|o| (o.status, o.took)).collect::<Vec<_>>(),
        one.received(),
        two.received(),
        one.max_in_flight(),
        two.max_in_flight()
    );
    assert!(out.iter().all(|o| o.status == 200), "{out:?}");
    assert_eq!(one.received() + two.received(), 6);
    assert_eq!(
        one.max_in_flight(),
        1,
        "backend one held more than 1 at once"
    );
    assert_eq!(
        two.max_in_flight(),
        1,
        "backend two held more than 1 at once"
    );
    // A full backend is skipped, not waited for: both served while requests were waiting.
    assert!(
        one.received() >= 2 && two.received() >= 2,
        "both backends should serve: {} / {}",
        one.received(),
        two.received()
    );
    assert_serves(&mut f, "/after", "per-backend limits").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_queue_full_answers_503() {
    let delay = Duration::from_secs(1);
    let backend = SlowBackend::start(delay).await;
    let port = free_port();
    let up = "    max_connections: 2\n    queue: {size: 1, timeout: 5s}\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), up, CATCH_ALL, ""), port).await;

    let out = concurrent_gets(&f, &backend, 5).await;
    eprintln!("max_connections 2, queue size 1, delay {delay:?}: {out:?}");
    let ok: Vec<&Outcome> = out.iter().filter(|o| o.status == 200).collect();
    let busy: Vec<&Outcome> = out.iter().filter(|o| o.status == 503).collect();
    assert_eq!(
        (ok.len(), busy.len()),
        (3, 2),
        "2 served, 1 queued then served, 2 refused: {out:?}"
    );
    // The refused ones were answered at once, not after waiting for the backend.
    for o in &busy {
        assert_eq!(
            o.backend_answered_by_then, 0,
            "a 503 for a full queue came only after the backend answered: {o:?}"
        );
    }
    // The queued one could only start when a slot freed: it took two backend delays.
    let slowest = ok.iter().map(|o| o.took).max().unwrap_or_default();
    assert!(
        slowest >= delay * 2 - Duration::from_millis(20),
        "the queued request finished after {slowest:?}, before two backend delays"
    );
    assert_eq!(
        backend.received(),
        3,
        "refused requests never reach the backend"
    );
    assert!(backend.max_in_flight() <= 2);
    assert_serves(&mut f, "/after", "a full queue").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_queue_timeout_answers_503() {
    let delay = Duration::from_secs(2);
    let backend = SlowBackend::start(delay).await;
    let port = free_port();
    let up = "    max_connections: 2\n    queue: {size: 10, timeout: 200ms}\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), up, CATCH_ALL, ""), port).await;

    let out = concurrent_gets(&f, &backend, 4).await;
    eprintln!("max_connections 2, queue timeout 200ms, delay {delay:?}: {out:?}");
    let ok = out.iter().filter(|o| o.status == 200).count();
    let timed_out: Vec<&Outcome> = out.iter().filter(|o| o.status == 503).collect();
    assert_eq!(
        (ok, timed_out.len()),
        (2, 2),
        "2 served, 2 timed out in the queue: {out:?}"
    );
    for o in &timed_out {
        // They waited the queue timeout (a full queue would answer at once; size is 10)...
        assert!(
            o.took >= Duration::from_millis(190),
            "503 after {:?}: did not wait in the queue",
            o.took
        );
        // ...and no longer than that: nothing had come back from the backend yet.
        assert_eq!(
            o.backend_answered_by_then, 0,
            "503 only after the backend answered: {o:?}"
        );
    }
    assert_eq!(backend.received(), 2);
    assert!(backend.max_in_flight() <= 2);
    assert_serves(&mut f, "/after", "queue timeouts").await;
}

// ---------------------------------------------------------------------------------------------
// 9. Config errors
// ---------------------------------------------------------------------------------------------

/// A config for `-t`: one upstream `app` (with `upstream_extra`), one route (with
/// `route_extra`), and `top` appended.
fn check_yaml(upstream_extra: &str, route_extra: &str, top: &str) -> String {
    format!(
        r#"listeners:
  - addr: "127.0.0.1:{}"
upstreams:
  app:
    backends:
      - addr: "127.0.0.1:{}"
{upstream_extra}
routes:
  - upstream: app
{route_extra}
{top}
"#,
        free_port(),
        free_port()
    )
}

#[test]
fn bad_limit_values_are_config_errors_naming_the_key() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "limits.max_headers",
            check_yaml("", "", "limits:\n  max_headers: 0"),
            "1 to 256",
        ),
        (
            "limits.max_headers",
            check_yaml("", "", "limits:\n  max_headers: 300"),
            "300",
        ),
        (
            "limits.keepalive_timeout",
            check_yaml("", "", "limits:\n  keepalive_timeout: 1500ms"),
            "whole seconds",
        ),
        (
            "limits.max_body_bytes",
            check_yaml("", "", "limits:\n  max_body_bytes: 10 parsecs"),
            "parsecs",
        ),
        (
            "limits.max_header_bytes",
            check_yaml("", "", "limits:\n  max_header_bytes: 512"),
            "1KiB",
        ),
        (
            "limits.header_timeout",
            check_yaml("", "", "limits:\n  header_timeout: 0s"),
            "above zero",
        ),
        (
            "limits.body_timeout",
            check_yaml("", "", "limits:\n  body_timeout: soon"),
            "soon",
        ),
        (
            "limits.max_connections",
            check_yaml("", "", "limits:\n  max_connections: 0"),
            "0",
        ),
        (
            "limits.max_header",
            check_yaml("", "", "limits:\n  max_header: 10"),
            "max_header",
        ),
        (
            "rate_limit.requests_per_second",
            check_yaml("", "", "rate_limit:\n  requests_per_second: 0"),
            "above 0",
        ),
        (
            "rate_limit.burst",
            check_yaml("", "", "rate_limit:\n  requests_per_second: 5\n  burst: 0"),
            "burst",
        ),
        (
            "routes[0].rate_limit",
            check_yaml("", "    rate_limit: sometimes", ""),
            "sometimes",
        ),
        (
            "routes[0].rate_limit.requests_per_second",
            check_yaml("", "    rate_limit: {requests_per_second: -1}", ""),
            "-1",
        ),
        (
            "routes[0].max_body_bytes",
            check_yaml("", "    max_body_bytes: lots", ""),
            "lots",
        ),
        (
            "upstreams.app.queue",
            check_yaml("    queue: {size: 10, timeout: 1s}", "", ""),
            "max_connections",
        ),
        (
            "upstreams.app.max_connections",
            check_yaml("    max_connections: 0", "", ""),
            "0",
        ),
        (
            "upstreams.app.queue.size",
            check_yaml("    max_connections: 2\n    queue: {size: -1}", "", ""),
            "-1",
        ),
        (
            "upstreams.app.queue.timeout",
            check_yaml("    max_connections: 2\n    queue: {timeout: 0s}", "", ""),
            "above zero",
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, (key, yaml, says)) in cases.iter().enumerate() {
        let path = write_file(dir.path(), &format!("bad{i}.yaml"), yaml);
        let out = fulcrum_cmd(&["-t", "-c", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{key}: config should be rejected, but -t succeeded\n{yaml}"
        );
        let want = format!("{}: {key}", path.display());
        assert!(
            stderr.contains(&want),
            "{key}: stderr should contain `{want}: ...`\nconfig:\n{yaml}\nstderr:\n{stderr}"
        );
        let line = stderr
            .lines()
            .find(|l| l.contains(&want))
            .unwrap_or_default();
        assert!(
            line.contains(says),
            "{key}: the error should say {says:?}: {line}"
        );
    }

    // Running (not just checking) a bad config fails too, before serving.
    let path = write_file(
        dir.path(),
        "run.yaml",
        &check_yaml("", "", "limits:\n  keepalive_timeout: 1500ms"),
    );
    let out = fulcrum_cmd(&["-c", path.to_str().unwrap()]);
    assert!(!out.status.success(), "fulcrum ran with a bad config");
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.keepalive_timeout"));
}

#[test]
fn every_limit_key_passes_the_check() {
    let yaml = check_yaml(
        "    max_connections: 4\n    queue: {size: 0, timeout: 250ms}",
        "    max_body_bytes: 1MiB\n    rate_limit: {requests_per_second: 0.5, burst: 2, max_clients: 10}\n  \
         - path: /free\n    upstream: app\n    rate_limit: off\n    max_body_bytes: 0",
        "limits:\n  max_header_bytes: 8KiB\n  max_headers: 256\n  max_body_bytes: 10MiB\n  \
         header_timeout: 500ms\n  body_timeout: 2m\n  keepalive_timeout: 75s\n  \
         max_connections: 100\nrate_limit:\n  requests_per_second: 100\n",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(dir.path(), "ok.yaml", &yaml);
    let out = fulcrum_cmd(&["-t", "-c", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "valid limits rejected:\n{yaml}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Request bodies that continue after the response started
// ---------------------------------------------------------------------------------------------

/// A raw HTTP/1.1 backend that answers each request as soon as its head arrives (before its
/// body), then reads the body (by Content-Length) and counts the bytes.
struct EarlyBackend {
    port: u16,
    body_bytes: Arc<AtomicUsize>,
    complete_bodies: Arc<AtomicUsize>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl EarlyBackend {
    async fn start() -> EarlyBackend {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("early backend: bind 127.0.0.1:{port}: {e}"));
        let b = EarlyBackend {
            port,
            body_bytes: Arc::new(AtomicUsize::new(0)),
            complete_bodies: Arc::new(AtomicUsize::new(0)),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        let (bytes, complete, tasks) = (
            b.body_bytes.clone(),
            b.complete_bodies.clone(),
            b.tasks.clone(),
        );
        let accept = tokio::spawn(async move {
            for _ in 0..100_000 {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let conn = tokio::spawn(serve_early(stream, bytes.clone(), complete.clone()));
                let mut t = tasks.lock().unwrap();
                t.retain(|h| !h.is_finished());
                t.push(conn);
            }
        });
        b.tasks.lock().unwrap().push(accept);
        b
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for EarlyBackend {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

async fn serve_early(
    mut stream: TcpStream,
    body_bytes: Arc<AtomicUsize>,
    complete: Arc<AtomicUsize>,
) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    for _ in 0..10_000 {
        let Some(end) = read_head(&mut stream, &mut buf, &mut chunk).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end + 4);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let out = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nearly";
        if stream.write_all(out).await.is_err() {
            return;
        }
        let mut got = 0;
        while got < len {
            if buf.is_empty() {
                match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
            let take = buf.len().min(len - got);
            buf.drain(..take);
            got += take;
            body_bytes.fetch_add(take, Ordering::SeqCst);
        }
        complete.fetch_add(1, Ordering::SeqCst);
    }
}

/// Sends a POST head announcing `len` body bytes, reads the backend's early answer, then sends
/// the body in `piece`-byte writes `pause` apart. Returns the early answer and what fulcrum
/// sent afterwards (within `IDLE` of the last write, or until it closed).
async fn post_after_early_answer(
    port: u16,
    len: usize,
    piece: usize,
    pause: Duration,
) -> (RawResponse, Vec<u8>, bool) {
    let mut s = connect(port).await;
    s.write_all(
        format!("POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: {len}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("write head");
    let early = read_response(&mut s, Duration::from_secs(5))
        .await
        .expect("the backend's early answer");
    let mut sent = 0;
    let mut after = Vec::new();
    let mut closed = false;
    let mut buf = vec![0u8; 16 * 1024];
    while sent < len && !closed {
        let n = piece.min(len - sent);
        if s.write_all(&vec![b'x'; n]).await.is_err() {
            closed = true;
            break;
        }
        sent += n;
        match tokio::time::timeout(pause, s.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => closed = true,
            Ok(Ok(n)) => after.extend_from_slice(&buf[..n]),
        }
    }
    if !closed {
        let t = Instant::now();
        if let Some(e) = wait_closed(&mut s, t, t + IDLE).await {
            after.extend_from_slice(&e.bytes);
            closed = true;
        }
    }
    (early, after, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_body_after_an_early_response_is_not_taken_for_a_request_head() {
    let backend = EarlyBackend::start().await;
    let port = free_port();
    // Streamed bodies (request buffering would read the body before the backend answers).
    let top = "limits:\n  max_header_bytes: 4KiB\n  request_buffering: off\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", CATCH_ALL, top), port).await;

    // 64 KiB of body (well under max_body_bytes, over max_header_bytes) after the answer.
    let (early, after, closed) =
        post_after_early_answer(port, 64 * 1024, 8 * 1024, Duration::from_millis(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = backend.body_bytes.load(Ordering::SeqCst);
    eprintln!(
        "64 KiB body after an early answer (max_header_bytes 4KiB): early {} {:?}; then {:?} \
         (closed: {closed}); backend got {got} body bytes",
        early.status,
        early.body_string(),
        String::from_utf8_lossy(&after),
    );
    assert_eq!(early.status, 200);
    assert!(
        after.is_empty(),
        "fulcrum sent something after the complete response, while the body was still \
         arriving: {:?}",
        String::from_utf8_lossy(&after)
    );
    assert_eq!(got, 64 * 1024, "the whole body should reach the backend");
    assert_serves(&mut f, "/after", "a body after an early answer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_body_after_an_early_response_is_not_cut_by_header_timeout() {
    let backend = EarlyBackend::start().await;
    let port = free_port();
    // Streamed bodies (request buffering would read the body before the backend answers).
    let top = "limits:\n  header_timeout: 1s\n  request_buffering: off\n";
    let mut f = Fulcrum::start(&config(port, &backend.addr(), "", CATCH_ALL, top), port).await;

    // A body trickling in after the answer (1 byte / 200 ms, 3 s in all) is governed by
    // body_timeout (60 s), not header_timeout (1 s).
    let (early, after, closed) =
        post_after_early_answer(port, 15, 1, Duration::from_millis(200)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = backend.body_bytes.load(Ordering::SeqCst);
    eprintln!(
        "15-byte body over 3 s after an early answer (header_timeout 1s): early {}; then {:?} \
         (closed: {closed}); backend got {got} body bytes",
        early.status,
        String::from_utf8_lossy(&after),
    );
    assert_eq!(early.status, 200);
    assert!(
        after.is_empty(),
        "fulcrum sent something after the complete response: {:?}",
        String::from_utf8_lossy(&after)
    );
    assert_eq!(got, 15, "the whole slow body should reach the backend");
    assert_serves(&mut f, "/after", "a slow body after an early answer").await;
}
