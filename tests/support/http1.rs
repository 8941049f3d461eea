//! The one HTTP/1.1 server core behind both test backends: per connection it records every
//! byte received, frames requests with [`parse_request`], records them, and answers each one
//! in order (pipelining and keep-alive included). A request it cannot frame gets `400` and the
//! connection is closed.
//!
//! The two backends differ only in how they answer ([`Mode`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::backend::BackendOptions;
use super::request::{parse_head, parse_request, RawParse, RawRequest};

/// Largest buffered request (head plus body) the core accepts: the biggest body a test sends
/// (16 MiB) plus room for its head.
const MAX_BUFFERED: usize = 17 * 1024 * 1024;

/// The answer to an unframeable request (the connection is closed after it).
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How a backend answers the requests it framed.
pub(super) enum Mode {
    /// As configured by [`BackendOptions`], overridable per request with `x-test-status` and
    /// `x-test-delay-ms`; `100 Continue` to `Expect: 100-continue`; HTTP/1.0 keep-alive honoured.
    Normal(BackendOptions),
    /// `200` with the name as the body, whatever the request says (so a test sees exactly
    /// what fulcrum sent); HTTP/1.0 always closes.
    Recording,
}

/// What a backend shares between its connections: how it answers and what it received.
pub(super) struct Core {
    /// The backend's name: `x-backend` header and default body.
    pub(super) name: String,
    /// How it answers.
    pub(super) mode: Mode,
    /// Per accepted connection, every byte received on it, in order.
    raw: Mutex<Vec<Vec<u8>>>,
    /// Every request framed or abandoned, oldest first.
    requests: Mutex<Vec<RawRequest>>,
    /// Requests read completely (without an `error`) since the last clear.
    complete: AtomicUsize,
}

impl Core {
    /// A core that has received nothing yet.
    pub(super) fn new(name: &str, mode: Mode) -> Core {
        Core {
            name: name.to_string(),
            mode,
            raw: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            complete: AtomicUsize::new(0),
        }
    }

    /// Registers a new connection; returns its index.
    pub(super) fn open_connection(&self) -> usize {
        let mut raw = self.raw.lock().unwrap();
        raw.push(Vec::new());
        raw.len() - 1
    }

    /// Number of connections accepted.
    pub(super) fn connections(&self) -> usize {
        self.raw.lock().unwrap().len()
    }

    /// Every byte received, per connection.
    pub(super) fn raw_connections(&self) -> Vec<Vec<u8>> {
        self.raw.lock().unwrap().clone()
    }

    /// Every request recorded, oldest first (including ones with an `error`).
    pub(super) fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Number of requests recorded (including ones with an `error`).
    pub(super) fn recorded(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Number of requests read completely.
    pub(super) fn complete(&self) -> usize {
        self.complete.load(Ordering::SeqCst)
    }

    /// Forgets recorded requests and bytes. Connection entries are emptied, not removed (open
    /// connections keep recording into theirs).
    pub(super) fn clear(&self) {
        // Lock order: raw, then requests (as in `record_bytes`/`record`, which never nest).
        let mut raw = self.raw.lock().unwrap();
        let mut requests = self.requests.lock().unwrap();
        for c in raw.iter_mut() {
            c.clear();
        }
        requests.clear();
        self.complete.store(0, Ordering::SeqCst);
    }

    fn record_bytes(&self, conn: usize, bytes: &[u8]) {
        if let Some(c) = self.raw.lock().unwrap().get_mut(conn) {
            c.extend_from_slice(bytes);
        }
    }

    fn record(&self, req: RawRequest) {
        let mut requests = self.requests.lock().unwrap();
        if req.error.is_none() {
            self.complete.fetch_add(1, Ordering::SeqCst);
        }
        requests.push(req);
    }

    /// Whether this backend answers `Expect: 100-continue` with `100 Continue`.
    fn sends_continue(&self, req: &RawRequest) -> bool {
        matches!(self.mode, Mode::Normal(_))
            && req
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }

    /// The answer to `req`: how long to wait first, the bytes, and whether to close after.
    fn answer(&self, req: &RawRequest) -> (Option<Duration>, Vec<u8>, bool) {
        let connection = req.header("connection").unwrap_or_default();
        let close_token = connection
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("close"));
        let http10 = req.version.eq_ignore_ascii_case("HTTP/1.0");
        let (delay, status, body, extra): (_, _, _, &[(String, String)]) = match &self.mode {
            Mode::Recording => (None, 200, self.name.clone(), &[]),
            Mode::Normal(opts) => {
                let delay = req
                    .header("x-test-delay-ms")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_millis)
                    .or(opts.delay);
                let status = req
                    .header("x-test-status")
                    .and_then(|v| v.trim().parse::<u16>().ok())
                    .unwrap_or(opts.status);
                let body = opts.body.clone().unwrap_or_else(|| self.name.clone());
                (delay, status, body, &opts.headers)
            }
        };
        let close = match self.mode {
            Mode::Recording => close_token || http10,
            Mode::Normal(_) if http10 => !connection.to_ascii_lowercase().contains("keep-alive"),
            Mode::Normal(_) => close_token,
        };
        let no_body = status == 204 || status == 304 || (100..200).contains(&status);
        let mut head = format!("HTTP/1.1 {} {}\r\n", status, reason(status));
        head.push_str(&format!("x-backend: {}\r\n", self.name));
        if !no_body {
            head.push_str("content-type: text/plain\r\n");
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if close {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !no_body && req.method != "HEAD" {
            out.extend_from_slice(body.as_bytes());
        }
        (delay, out, close)
    }
}

/// Serves connection number `conn` until the peer closes it, a request asks to close, or a
/// request cannot be framed.
pub(super) async fn serve(mut stream: TcpStream, conn: usize, core: &Core) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // Whether `100 Continue` went out for the request at the front of `buf`.
    let mut continued = false;
    // Bounded: at most this many reads per connection.
    for _ in 0..1_000_000 {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if n == 0 {
            record_unfinished(&buf, conn, core);
            return;
        }
        core.record_bytes(conn, &chunk[..n]);
        buf.extend_from_slice(&chunk[..n]);
        // Answer every complete request in the buffer.
        for _ in 0..10_000 {
            if buf.is_empty() {
                break;
            }
            match parse_request(&buf, conn) {
                RawParse::Incomplete => {
                    if buf.len() > MAX_BUFFERED {
                        let mut req = RawRequest {
                            conn,
                            raw_head: buf[..buf.len().min(4096)].to_vec(),
                            error: Some("request too large for the test backend".into()),
                            ..RawRequest::default()
                        };
                        req.request_line = String::from_utf8_lossy(first_line(&buf))
                            .trim_end()
                            .to_string();
                        core.record(req);
                        let _ = stream.write_all(BAD_REQUEST).await;
                        return;
                    }
                    let head = parse_head(&buf, conn);
                    if !continued && head.is_some_and(|(req, _)| core.sends_continue(&req)) {
                        continued = true;
                        if stream.write_all(CONTINUE).await.is_err() {
                            return;
                        }
                    }
                    break;
                }
                RawParse::Bad(req) => {
                    core.record(req);
                    let _ = stream.write_all(BAD_REQUEST).await;
                    let _ = stream.shutdown().await;
                    return;
                }
                RawParse::Done(req, used) => {
                    buf.drain(..used);
                    let send_continue =
                        !std::mem::take(&mut continued) && core.sends_continue(&req);
                    if send_continue && stream.write_all(CONTINUE).await.is_err() {
                        return;
                    }
                    let (delay, out, close) = core.answer(&req);
                    core.record(req);
                    if let Some(delay) = delay {
                        tokio::time::sleep(delay).await;
                    }
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                    let _ = stream.flush().await;
                    if close {
                        let _ = stream.shutdown().await;
                        return;
                    }
                }
            }
        }
    }
}

/// At EOF: records what was left of an unfinished request, if anything.
fn record_unfinished(buf: &[u8], conn: usize, core: &Core) {
    if !buf.iter().any(|b| !b.is_ascii_whitespace()) {
        return;
    }
    let mut req = match parse_request(buf, conn) {
        RawParse::Bad(r) | RawParse::Done(r, _) => r,
        RawParse::Incomplete => {
            let first = first_line(buf);
            RawRequest {
                conn,
                request_line: String::from_utf8_lossy(first.strip_suffix(b"\r").unwrap_or(first))
                    .into_owned(),
                raw_head: buf.to_vec(),
                ..RawRequest::default()
            }
        }
    };
    req.error
        .get_or_insert_with(|| "connection closed mid-request".to_string());
    core.record(req);
}

/// The bytes up to the first LF.
fn first_line(buf: &[u8]) -> &[u8] {
    buf.split(|b| *b == b'\n').next().unwrap_or_default()
}

/// The reason phrase for a status code.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
