//! A response that a backend breaks after sending its head never reaches a client as a
//! success: HTTP/1.1 closes the connection mid-message (fewer bytes than `Content-Length`, or
//! no last chunk), HTTP/2 resets the stream, and nothing fulcrum writes itself is glued into
//! the body. The failure is counted as an error and charged to the backend.
//!
//! Each backend here is a raw TCP script on 127.0.0.1: it reads a request head, sends a
//! response head and 10 bytes of body, then stalls (past the group's 1 s read timeout) or
//! closes.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What a cut backend does after the partial response.
#[derive(Clone, Copy)]
enum Then {
    /// Send nothing more for 30 s (past any read timeout here), then close.
    Stall,
    /// Close the connection at once.
    Close,
}

const CL_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n0123456789";
const CHUNKED_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n";

/// A backend that answers every request with `partial`, then does `then`.
struct CutBackend {
    port: u16,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CutBackend {
    async fn start(partial: &'static [u8], then: Then) -> CutBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = s.write_all(partial).await;
                    let _ = s.flush().await;
                    if let Then::Stall = then {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                });
            }
        });
        CutBackend {
            port,
            requests,
            task,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for CutBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config(port: u16, h2c_port: u16, admin: u16, backend: &CutBackend) -> String {
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
  - addr: "127.0.0.1:{h2c_port}"
    h2c: true
admin:
  addr: "127.0.0.1:{admin}"
upstreams:
  cut:
    backends:
      - addr: "{b}"
    timeouts: {{read: 1s}}
    circuit_breaker: {{max_fails: 100}}
routes:
  - path: /
    upstream: cut
"#,
        b = backend.addr()
    )
}

async fn start(partial: &'static [u8], then: Then) -> (CutBackend, Fulcrum, u16, u16) {
    let backend = CutBackend::start(partial, then).await;
    let (port, h2c, admin) = (free_port(), free_port(), free_port());
    let f = Fulcrum::start(&config(port, h2c, admin, &backend), port).await;
    (backend, f, h2c, admin)
}

const GET: &[u8] = b"GET /file HTTP/1.1\r\nHost: app.test\r\n\r\n";

/// The raw bytes after the response head.
fn body_of(ex: &RawExchange) -> Vec<u8> {
    let at = ex
        .bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {}", ex.summary()));
    ex.bytes[at + 4..].to_vec()
}

/// HTTP/1.1: the head and the 10 bytes arrive, then the connection closes; exactly what the
/// backend sent, no error text, no completion.
async fn assert_cut_http1(partial: &'static [u8], then: Then, expected_body: &[u8]) {
    let (backend, mut f, _, _) = start(partial, then).await;
    let ex = raw_exchange(f.port(), GET, Duration::from_secs(4)).await;
    // (An incomplete message: read the status line itself.)
    assert_eq!(raw_status(&ex.text()), 200, "{}", ex.summary());
    assert!(
        ex.closed,
        "fulcrum must close a connection whose response the backend cut: {}",
        ex.summary()
    );
    assert_eq!(
        String::from_utf8_lossy(&body_of(&ex)),
        String::from_utf8_lossy(expected_body),
        "the client must get exactly the bytes the backend sent, nothing more"
    );
    assert_eq!(
        backend.requests.load(Ordering::SeqCst),
        1,
        "no retry after a response started"
    );
    assert!(f.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_body_cut_by_a_stall_is_not_completed() {
    assert_cut_http1(CL_HEAD, Then::Stall, b"0123456789").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_body_cut_by_a_close_is_not_completed() {
    assert_cut_http1(CL_HEAD, Then::Close, b"0123456789").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_cut_by_a_stall_gets_no_last_chunk() {
    assert_cut_http1(CHUNKED_HEAD, Then::Stall, b"A\r\n0123456789\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_cut_by_a_close_gets_no_last_chunk() {
    assert_cut_http1(CHUNKED_HEAD, Then::Close, b"A\r\n0123456789\r\n").await;
}

/// HTTP/2 (curl with prior knowledge on an h2c listener): the stream is reset, so curl fails
/// with exit code 92 ("stream not closed cleanly") instead of reporting a download.
async fn assert_cut_http2(partial: &'static [u8], then: Then) -> String {
    let (_backend, _f, h2c, _) = start(partial, then).await;
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "--max-time",
            "10",
            "-o",
            "-",
        ])
        .arg(format!("http://127.0.0.1:{h2c}/file"))
        .output()
        .await
        .expect("run curl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(92),
        "curl over HTTP/2 must see the stream reset (exit 92); stderr: {stderr}"
    );
    assert!(
        stderr.contains("INTERNAL_ERROR"),
        "the reset's reason is INTERNAL_ERROR: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_stream_is_reset_when_the_backend_stalls() {
    // The 10 bytes went out a second before the reset.
    let body = assert_cut_http2(CL_HEAD, Then::Stall).await;
    assert_eq!(body, "0123456789");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_stream_is_reset_when_the_backend_closes() {
    // The reset may overtake the queued head and data: what curl saw of them varies, but
    // never anything fulcrum wrote itself.
    let body = assert_cut_http2(CHUNKED_HEAD, Then::Close).await;
    assert!(!body.contains("Bad Gateway"), "{body:?}");
}

/// The value of the metric line that starts with `prefix` (labels included).
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lb| l.contains(lb)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The cut response counts as a 502 (not as a 200), for the client and the backend, and as
/// the backend's failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_response_is_counted_as_the_backends_failure() {
    let (backend, f, _, admin) = start(CL_HEAD, Then::Close).await;
    for _ in 0..3 {
        let ex = raw_exchange(f.port(), GET, Duration::from_secs(4)).await;
        assert!(ex.closed, "{}", ex.summary());
    }
    let c = client();
    let text = get(&c, &format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .body;
    let b = format!("backend=\"{}\"", backend.addr());
    assert_eq!(
        metric(
            &text,
            "fulcrum_upstream_requests_total",
            &[&b, "code=\"502\""]
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "fulcrum_upstream_requests_total",
            &[&b, "code=\"200\""]
        ),
        0.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "fulcrum_requests_total{", &["code=\"502\""]),
        3.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "fulcrum_backend_failures_total", &[&b]),
        3.0,
        "{text}"
    );
    let log = f.stderr();
    assert!(
        log.contains("error=\"response cut after its head was sent"),
        "the access log says the response was cut: {log}"
    );
}
