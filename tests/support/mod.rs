//! Shared helpers for fulcrum's integration tests.
//!
//! Used from each test file with `mod support;`. Everything here talks only to 127.0.0.1, and
//! every wait or retry loop is bounded both in iterations and in time.
//!
//! * [`free_port`]: a port nobody listens on (yet).
//! * [`TestBackend`]: a small HTTP/1.1 server that answers with its name and records requests.
//! * [`RecordingBackend`]: a raw HTTP/1.1 backend that records every byte and request it gets.
//! * [`WsEchoBackend`]: a WebSocket echo server.
//! * [`Fulcrum`]: runs the `fulcrum` binary on a YAML config (or quick-mode flags), kills it on
//!   drop.
//! * [`fulcrum_cmd`]: runs `fulcrum` to completion (for `-t` and `--print-config`).
//! * [`client`], [`get`], [`get_host`], [`request`], [`raw_http`], [`raw_exchange`]: client side.

#![allow(dead_code)]
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Path of the binary under test.
pub const FULCRUM_BIN: &str = env!("CARGO_BIN_EXE_fulcrum");

/// How long [`Fulcrum::start`] waits for the listener to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long [`fulcrum_cmd`] lets a one-shot invocation run before killing it.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// Ports handed out by [`free_port`] or taken by test servers in this test binary.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A free TCP port on 127.0.0.1: binds port 0, reads the port, drops the socket.
///
/// Never returns the same port twice within one test binary (tests in a binary run in
/// parallel), and test servers ([`TestBackend`], [`WsEchoBackend`]) never bind a port handed
/// out here, which removes the most likely source of collisions.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let port = StdTcpListener::bind("127.0.0.1:0")
            .expect("bind 127.0.0.1:0")
            .local_addr()
            .expect("local_addr")
            .port();
        if handed_out().lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("could not find a free port that was not handed out already");
}

/// Binds a tokio listener on 127.0.0.1 to a port that [`free_port`] has not handed out (the
/// kernel may otherwise give a test server a port a test reserved for fulcrum).
fn bind_unreserved() -> TcpListener {
    let mut skipped = Vec::new(); // held until we are done so the kernel does not repeat them
    for _ in 0..100 {
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if handed_out().lock().unwrap().insert(port) {
            listener.set_nonblocking(true).expect("set_nonblocking");
            return TcpListener::from_std(listener).expect("tokio listener from std");
        }
        skipped.push(listener);
    }
    panic!("could not bind a port that was not handed out already");
}

/// True when something accepts TCP connections on 127.0.0.1:`port` right now.
pub fn port_is_listening(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// True when 127.0.0.1:`port` can be bound (nobody is listening on it).
pub fn port_is_free(port: u16) -> bool {
    StdTcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Waits (polling every 20 ms, at most `timeout`) until 127.0.0.1:`port` accepts a TCP
/// connection. Returns whether it did.
pub async fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let max_iterations = (timeout.as_millis() / 20 + 2) as usize;
    for _ in 0..max_iterations {
        let attempt = tokio::time::timeout(
            Duration::from_millis(200),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await;
        if let Ok(Ok(_)) = attempt {
            return true;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Linux: inodes of the sockets listening on TCP `port` (any local address), from
/// /proc/net/tcp and /proc/net/tcp6. `None` when neither can be read.
fn listening_inodes(port: u16) -> Option<HashSet<u64>> {
    let mut found = HashSet::new();
    let mut any_read = false;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        any_read = true;
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ... uid timeout inode
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let Some((_, port_hex)) = cols[1].rsplit_once(':') else {
                continue;
            };
            if u16::from_str_radix(port_hex, 16).ok() != Some(port) {
                continue;
            }
            if let Ok(inode) = cols[9].parse::<u64>() {
                found.insert(inode);
            }
        }
    }
    any_read.then_some(found)
}

/// Linux: whether process `pid` holds a socket listening on TCP `port`. `None` when this
/// cannot be determined (no /proc).
pub fn pid_listens_on(pid: u32, port: u16) -> Option<bool> {
    let inodes = listening_inodes(port)?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for fd in fds.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        let inode = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|i| i.parse::<u64>().ok());
        if let Some(inode) = inode {
            if inodes.contains(&inode) {
                return Some(true);
            }
        }
    }
    Some(false)
}

// ---------------------------------------------------------------------------------------------
// Test HTTP backend
// ---------------------------------------------------------------------------------------------

/// One request as the backend received it.
#[derive(Debug, Clone, Default)]
pub struct RecordedRequest {
    /// Request method, e.g. `GET`.
    pub method: String,
    /// Request target as sent: path plus query, e.g. `/users?x=1`.
    pub path: String,
    /// HTTP version token, e.g. `HTTP/1.1`.
    pub version: String,
    /// Header name (lowercase) -> values in the order received (one entry per header line).
    pub headers: HashMap<String, Vec<String>>,
    /// The body, de-chunked when it was sent chunked.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// All values of a header (one per header line), empty when absent.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// A header's values joined with `", "` (the HTTP list form), `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.header_all(name);
        if values.is_empty() {
            None
        } else {
            Some(values.join(", "))
        }
    }

    /// Body as (lossy) UTF-8.
    pub fn body_string(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

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

struct BackendState {
    name: String,
    opts: BackendOptions,
    count: AtomicUsize,
    requests: Mutex<Vec<RecordedRequest>>,
    connections: AtomicUsize,
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
    addr: SocketAddr,
    state: Arc<BackendState>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
    conn_tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
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
        let listener = bind_unreserved();
        let addr = listener.local_addr().expect("test backend: local_addr");
        let state = Arc::new(BackendState {
            name: name.to_string(),
            opts,
            count: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
        });
        let conn_tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let accept_task = {
            let state = state.clone();
            let conn_tasks = conn_tasks.clone();
            tokio::spawn(async move {
                loop {
                    let (stream, _) = match listener.accept().await {
                        Ok(s) => s,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    state.connections.fetch_add(1, Ordering::SeqCst);
                    let handle = tokio::spawn(serve_http_conn(stream, state.clone()));
                    let mut tasks = conn_tasks.lock().unwrap();
                    tasks.retain(|t| !t.is_finished());
                    tasks.push(handle);
                }
            })
        };
        TestBackend {
            addr,
            state,
            accept_task: Mutex::new(Some(accept_task)),
            conn_tasks,
        }
    }

    /// The backend's name (its default body).
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`, as written in configs.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// Number of requests received so far.
    pub fn count(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// Number of TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// All requests received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.state.requests.lock().unwrap().last().cloned()
    }

    /// Forgets recorded requests and resets the counter.
    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
        self.state.count.store(0, Ordering::SeqCst);
    }

    /// Stops the server: closes the listener and every open connection, waits until they are
    /// gone. Afterwards connections to the port are refused.
    pub async fn stop(&self) {
        let accept = self.accept_task.lock().unwrap().take();
        if let Some(task) = accept {
            task.abort();
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let conns: Vec<JoinHandle<()>> = self.conn_tasks.lock().unwrap().drain(..).collect();
        for task in &conns {
            task.abort();
        }
        for task in conns {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        if let Some(task) = self.accept_task.lock().unwrap().take() {
            task.abort();
        }
        for task in self.conn_tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// Max size of a request head the test backend accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Max size of a request body the test backend accepts.
const MAX_BODY: usize = 16 * 1024 * 1024;

async fn serve_http_conn(mut stream: TcpStream, state: Arc<BackendState>) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    // Bounded: a connection serves at most this many requests.
    for _ in 0..100_000 {
        let req = match read_request(&mut stream, &mut buf).await {
            Ok(Some(req)) => req,
            Ok(None) | Err(_) => return,
        };
        state.count.fetch_add(1, Ordering::SeqCst);
        state.requests.lock().unwrap().push(req.clone());

        let delay = req
            .header("x-test-delay-ms")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
            .or(state.opts.delay);
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let status = req
            .header("x-test-status")
            .and_then(|v| v.trim().parse::<u16>().ok())
            .unwrap_or(state.opts.status);
        let body = state
            .opts
            .body
            .clone()
            .unwrap_or_else(|| state.name.clone());

        let close = wants_close(&req);
        let no_body = status == 204 || status == 304 || (100..200).contains(&status);
        let mut head = format!("HTTP/1.1 {} {}\r\n", status, reason(status));
        head.push_str(&format!("x-backend: {}\r\n", state.name));
        if !no_body {
            head.push_str("content-type: text/plain\r\n");
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        for (k, v) in &state.opts.headers {
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

fn wants_close(req: &RecordedRequest) -> bool {
    let conn = req
        .header("connection")
        .unwrap_or_default()
        .to_ascii_lowercase();
    if req.version.eq_ignore_ascii_case("HTTP/1.0") {
        !conn.contains("keep-alive")
    } else {
        conn.split(',').any(|t| t.trim() == "close")
    }
}

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

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    if buf.len() < 2 {
        return None;
    }
    (from..buf.len() - 1).find(|&i| buf[i] == b'\r' && buf[i + 1] == b'\n')
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Reads more bytes into `buf`; `Ok(false)` on EOF.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Ok(false);
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(true)
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

/// Makes sure `buf` holds at least `n` bytes.
async fn fill_to(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> std::io::Result<()> {
    while buf.len() < n {
        if !read_more(stream, buf).await? {
            return Err(bad("eof in body"));
        }
    }
    Ok(())
}

/// Takes one CRLF-terminated line off the front of `buf` (reading as needed).
async fn take_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<String> {
    loop {
        if let Some(pos) = find_crlf(buf, 0) {
            let line = String::from_utf8_lossy(&buf[..pos]).into_owned();
            buf.drain(..pos + 2);
            return Ok(line);
        }
        if buf.len() > MAX_HEAD {
            return Err(bad("line too long"));
        }
        if !read_more(stream, buf).await? {
            return Err(bad("eof in chunked body"));
        }
    }
}

/// Reads one request. `Ok(None)` on a clean EOF before any byte of a new request.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<RecordedRequest>> {
    // Head.
    let head_end = loop {
        // Tolerate stray CRLFs between requests.
        while buf.starts_with(b"\r\n") {
            buf.drain(..2);
        }
        if let Some(pos) = find_head_end(buf) {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(bad("request head too large"));
        }
        if !read_more(stream, buf).await? {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(bad("eof in request head"))
            };
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);

    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let version = parts.next().unwrap_or("HTTP/1.1").to_string();
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers
                .entry(name.trim().to_ascii_lowercase())
                .or_default()
                .push(value.trim().to_string());
        }
    }
    let mut req = RecordedRequest {
        method,
        path,
        version,
        headers,
        body: Vec::new(),
    };

    if req
        .header("expect")
        .map(|v| v.eq_ignore_ascii_case("100-continue"))
        .unwrap_or(false)
    {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }

    // Body.
    let chunked = req
        .header("transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    if chunked {
        let mut body = Vec::new();
        for _ in 0..1_000_000 {
            let size_line = take_line(stream, buf).await?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                // Trailers until an empty line.
                for _ in 0..1000 {
                    if take_line(stream, buf).await?.is_empty() {
                        break;
                    }
                }
                break;
            }
            if body.len() + size > MAX_BODY {
                return Err(bad("body too large"));
            }
            fill_to(stream, buf, size + 2).await?;
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
        req.body = body;
    } else if let Some(len) = req
        .header_all("content-length")
        .first()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        if len > MAX_BODY {
            return Err(bad("body too large"));
        }
        fill_to(stream, buf, len).await?;
        req.body = buf[..len].to_vec();
        buf.drain(..len);
    }
    Ok(Some(req))
}

// ---------------------------------------------------------------------------------------------
// Recording backend: every byte received, parsed strictly
// ---------------------------------------------------------------------------------------------

/// One request as a [`RecordingBackend`] read it off the wire.
#[derive(Debug, Clone, Default)]
pub struct RawRequest {
    /// Index of the TCP connection it arrived on (0 = the first one accepted).
    pub conn: usize,
    /// The request line as received, without its line ending (lossy UTF-8).
    pub request_line: String,
    /// Method token, e.g. `GET`.
    pub method: String,
    /// Request target as sent, e.g. `/a?b=c`.
    pub target: String,
    /// Version token, e.g. `HTTP/1.1`.
    pub version: String,
    /// Header fields in the order received: (name exactly as sent, value with surrounding
    /// whitespace removed).
    pub headers: Vec<(String, String)>,
    /// The raw head: request line through the blank line, byte for byte.
    pub raw_head: Vec<u8>,
    /// The body as framed by the request (de-chunked when chunked).
    pub body: Vec<u8>,
    /// Why the backend could not read this request completely (it then answered 400, or saw
    /// the connection close, and stopped reading the connection); `None` when it could.
    pub error: Option<String>,
}

impl RawRequest {
    /// All values of a header (case-insensitive name), one per header line.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A header's values joined with `", "`, `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.header_all(name);
        if values.is_empty() {
            None
        } else {
            Some(values.join(", "))
        }
    }

    /// Body as (lossy) UTF-8.
    pub fn body_string(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Everything in this request's head that could make two HTTP/1.1 parsers disagree about
    /// where it ends or what it says: bare CR or LF line endings, obs-fold continuation lines,
    /// whitespace or control bytes in a field name, control bytes in a value, both
    /// `Content-Length` and `Transfer-Encoding`, several or list-valued `Content-Length`, a
    /// `Transfer-Encoding` other than exactly `chunked`, a request line that is not three
    /// single-space-separated tokens, several `Host` fields. Empty when the head is clean.
    pub fn ambiguities(&self) -> Vec<String> {
        let mut out = Vec::new();
        let head = &self.raw_head;
        for (i, b) in head.iter().enumerate() {
            if *b == b'\n' && (i == 0 || head[i - 1] != b'\r') {
                out.push(format!("bare LF at byte {i}"));
            }
            if *b == b'\r' && head.get(i + 1) != Some(&b'\n') {
                out.push(format!("bare CR at byte {i}"));
            }
        }
        let parts: Vec<&str> = self.request_line.split(' ').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
            out.push(format!("request line {:?}", self.request_line));
        }
        if self
            .request_line
            .bytes()
            .any(|b| b < 0x20 || b == 0x7f || b >= 0x80)
        {
            out.push(format!(
                "control or non-ASCII byte in request line {:?}",
                self.request_line
            ));
        }
        for (name, value) in &self.headers {
            if name.is_empty()
                || name
                    .bytes()
                    .any(|b| b <= b' ' || b == 0x7f || b >= 0x80 || b == b':')
            {
                out.push(format!("bad field name {name:?}"));
            }
            if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                out.push(format!("control byte in {name}: {value:?}"));
            }
        }
        let text = String::from_utf8_lossy(head);
        if text
            .split("\r\n")
            .skip(1)
            .any(|l| l.starts_with(' ') || l.starts_with('\t'))
        {
            out.push("obs-fold continuation line".to_string());
        }
        let cl = self.header_all("content-length");
        let te = self.header_all("transfer-encoding");
        if !cl.is_empty() && !te.is_empty() {
            out.push(format!(
                "both Content-Length {cl:?} and Transfer-Encoding {te:?}"
            ));
        }
        if cl.len() > 1 || cl.iter().any(|v| v.contains(',')) {
            out.push(format!("several Content-Length values {cl:?}"));
        }
        if cl
            .iter()
            .any(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()))
        {
            out.push(format!("non-numeric Content-Length {cl:?}"));
        }
        if te.len() > 1 || te.iter().any(|v| v != "chunked") {
            out.push(format!("Transfer-Encoding not exactly `chunked`: {te:?}"));
        }
        if self.header_all("host").len() > 1 {
            out.push(format!("several Host fields {:?}", self.header_all("host")));
        }
        out
    }
}

struct RecordingState {
    name: String,
    /// Per accepted connection, every byte received on it, in order.
    raw: Mutex<Vec<Vec<u8>>>,
    requests: Mutex<Vec<RawRequest>>,
}

/// A raw TCP HTTP/1.1 backend on 127.0.0.1:<random port> that records every byte it receives
/// (per connection) and every request it parsed from those bytes, so a test can tell exactly
/// what fulcrum sent upstream: how many requests, their request lines, and whether their
/// framing was unambiguous.
///
/// It parses like a strict origin server would, but still records what it cannot parse:
/// line endings may be CRLF or bare LF (recorded in `raw_head`, reported by
/// [`RawRequest::ambiguities`]); the body is framed by `Transfer-Encoding` when present (its
/// final coding must be `chunked`, else 400), else by `Content-Length` (all values equal,
/// else 400), else empty. Each request gets `200` with the backend's name as the body,
/// `x-backend: NAME` and a `content-length`; keep-alive unless the request says
/// `Connection: close`. A request it cannot frame gets `400` and the connection is closed.
pub struct RecordingBackend {
    addr: SocketAddr,
    state: Arc<RecordingState>,
    accept_task: JoinHandle<()>,
    conn_tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Largest buffered request (head plus body) a [`RecordingBackend`] accepts.
const RECORDING_MAX: usize = 8 * 1024 * 1024;

impl RecordingBackend {
    /// Starts a recording backend answering with body `name`.
    pub async fn start(name: &str) -> RecordingBackend {
        let listener = bind_unreserved();
        let addr = listener
            .local_addr()
            .expect("recording backend: local_addr");
        let state = Arc::new(RecordingState {
            name: name.to_string(),
            raw: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
        });
        let conn_tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let accept_task = {
            let state = state.clone();
            let conn_tasks = conn_tasks.clone();
            tokio::spawn(async move {
                loop {
                    let (stream, _) = match listener.accept().await {
                        Ok(s) => s,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let conn = {
                        let mut raw = state.raw.lock().unwrap();
                        raw.push(Vec::new());
                        raw.len() - 1
                    };
                    let handle = tokio::spawn(serve_recording_conn(stream, conn, state.clone()));
                    let mut tasks = conn_tasks.lock().unwrap();
                    tasks.retain(|t| !t.is_finished());
                    tasks.push(handle);
                }
            })
        };
        RecordingBackend {
            addr,
            state,
            accept_task,
            conn_tasks,
        }
    }

    /// Its name (the response body).
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`, as written in configs.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// Number of TCP connections accepted so far (since the last [`clear`](Self::clear)).
    pub fn connections(&self) -> usize {
        self.state.raw.lock().unwrap().len()
    }

    /// Every byte received, per connection, oldest connection first.
    pub fn raw_connections(&self) -> Vec<Vec<u8>> {
        self.state.raw.lock().unwrap().clone()
    }

    /// Every byte received on all connections, concatenated (connection order).
    pub fn raw(&self) -> Vec<u8> {
        self.state.raw.lock().unwrap().concat()
    }

    /// Whether `needle` occurs anywhere in the bytes received.
    pub fn raw_contains(&self, needle: &[u8]) -> bool {
        self.state
            .raw
            .lock()
            .unwrap()
            .iter()
            .any(|c| !needle.is_empty() && c.windows(needle.len()).any(|w| w == needle))
    }

    /// Requests parsed so far (including incomplete or unframeable ones, see
    /// [`RawRequest::error`]), oldest first.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.state.requests.lock().unwrap().clone()
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
        self.state.requests.lock().unwrap().len()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<RawRequest> {
        self.state.requests.lock().unwrap().last().cloned()
    }

    /// Forgets recorded requests and bytes. Connection entries are emptied, not removed (open
    /// connections keep recording into theirs), so after a clear
    /// [`raw_connections`](Self::raw_connections) shows only bytes received since.
    pub fn clear(&self) {
        // Lock order: raw, then requests (as in the connection tasks).
        let mut raw = self.state.raw.lock().unwrap();
        let mut requests = self.state.requests.lock().unwrap();
        for c in raw.iter_mut() {
            c.clear();
        }
        requests.clear();
    }
}

impl Drop for RecordingBackend {
    fn drop(&mut self) {
        self.accept_task.abort();
        for task in self.conn_tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// The outcome of trying to parse one request off the front of a buffer.
enum RawParse {
    /// Need more bytes.
    Incomplete,
    /// A whole request, and how many bytes it took.
    Done(RawRequest, usize),
    /// A request that cannot be framed (already has `error` set).
    Bad(RawRequest),
}

/// Finds the end of the line starting at `from` (index of its `\n`), lenient about CR.
fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .iter()
        .position(|b| *b == b'\n')
        .map(|p| p + from)
}

/// A line `buf[start..lf]` without its trailing CR.
fn line_at(buf: &[u8], start: usize, lf: usize) -> &[u8] {
    let line = &buf[start..lf];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses one request off the front of `buf` (see [`RecordingBackend`] for the rules).
fn parse_raw_request(buf: &[u8], conn: usize) -> RawParse {
    // Stray empty lines before a request are tolerated (RFC 9112 section 2.2).
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") || buf[start..].starts_with(b"\n") {
        start += if buf[start] == b'\r' { 2 } else { 1 };
    }
    // Head: lines up to the first empty one.
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut pos = start;
    let head_end = loop {
        let Some(lf) = find_lf(buf, pos) else {
            return RawParse::Incomplete;
        };
        let line = line_at(buf, pos, lf);
        pos = lf + 1;
        if line.is_empty() {
            break pos;
        }
        lines.push(line);
    };
    let request_line =
        String::from_utf8_lossy(lines.first().copied().unwrap_or_default()).into_owned();
    let mut parts = request_line.splitn(3, ' ');
    let mut req = RawRequest {
        conn,
        method: parts.next().unwrap_or_default().to_string(),
        target: parts.next().unwrap_or_default().to_string(),
        version: parts.next().unwrap_or_default().to_string(),
        request_line,
        raw_head: buf[start..head_end].to_vec(),
        ..RawRequest::default()
    };
    for line in lines.iter().skip(1) {
        let line = String::from_utf8_lossy(line);
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        req.headers.push((
            name.to_string(),
            value.trim_matches(|c| c == ' ' || c == '\t').to_string(),
        ));
    }
    // Body framing.
    let te = req.header_all("transfer-encoding");
    if !te.is_empty() {
        let last = te.join(",");
        let final_coding = last.rsplit(',').next().unwrap_or("").trim();
        if !final_coding.eq_ignore_ascii_case("chunked") {
            req.error = Some(format!("final transfer coding is not chunked: {te:?}"));
            return RawParse::Bad(req);
        }
        let mut pos = head_end;
        let mut body = Vec::new();
        loop {
            let Some(lf) = find_lf(buf, pos) else {
                return RawParse::Incomplete;
            };
            let size_line = String::from_utf8_lossy(line_at(buf, pos, lf)).into_owned();
            let size_text = size_line.split(';').next().unwrap_or("");
            let size = match usize::from_str_radix(size_text, 16) {
                Ok(s) if !size_text.is_empty() && size_text.len() <= 8 => s,
                _ => {
                    req.error = Some(format!("bad chunk size line {size_line:?}"));
                    return RawParse::Bad(req);
                }
            };
            pos = lf + 1;
            if size == 0 {
                // Trailer fields up to an empty line.
                loop {
                    let Some(lf) = find_lf(buf, pos) else {
                        return RawParse::Incomplete;
                    };
                    let empty = line_at(buf, pos, lf).is_empty();
                    pos = lf + 1;
                    if empty {
                        break;
                    }
                }
                req.body = body;
                return RawParse::Done(req, pos);
            }
            if buf.len() < pos + size + 2 {
                return RawParse::Incomplete;
            }
            body.extend_from_slice(&buf[pos..pos + size]);
            if buf[pos + size..pos + size + 2] != b"\r\n"[..] {
                req.error = Some("chunk data not followed by CRLF".to_string());
                return RawParse::Bad(req);
            }
            pos += size + 2;
        }
    }
    let cls: Vec<String> = req
        .header_all("content-length")
        .iter()
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect();
    let len = match cls.first() {
        None => 0,
        Some(first) => {
            let parsed = first.parse::<usize>().ok().filter(|_| {
                first.bytes().all(|b| b.is_ascii_digit()) && cls.iter().all(|v| v == first)
            });
            match parsed {
                Some(n) => n,
                None => {
                    req.error = Some(format!("bad or conflicting Content-Length {cls:?}"));
                    return RawParse::Bad(req);
                }
            }
        }
    };
    if buf.len() < head_end + len {
        return RawParse::Incomplete;
    }
    req.body = buf[head_end..head_end + len].to_vec();
    RawParse::Done(req, head_end + len)
}

async fn serve_recording_conn(mut stream: TcpStream, conn: usize, state: Arc<RecordingState>) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // Bounded: at most this many reads per connection.
    for _ in 0..1_000_000 {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if n == 0 {
            // EOF: record what was left unfinished, if anything.
            if buf.iter().any(|b| !b.is_ascii_whitespace()) {
                let mut req = match parse_raw_request(&buf, conn) {
                    RawParse::Bad(r) | RawParse::Done(r, _) => r,
                    RawParse::Incomplete => {
                        let first = buf.split(|b| *b == b'\n').next().unwrap_or_default();
                        let first = first.strip_suffix(b"\r").unwrap_or(first);
                        RawRequest {
                            conn,
                            request_line: String::from_utf8_lossy(first).into_owned(),
                            raw_head: buf.clone(),
                            ..RawRequest::default()
                        }
                    }
                };
                req.error
                    .get_or_insert_with(|| "connection closed mid-request".to_string());
                state.requests.lock().unwrap().push(req);
            }
            return;
        }
        {
            let mut raw = state.raw.lock().unwrap();
            if let Some(c) = raw.get_mut(conn) {
                c.extend_from_slice(&chunk[..n]);
            }
        }
        buf.extend_from_slice(&chunk[..n]);
        // Answer every complete request in the buffer.
        for _ in 0..10_000 {
            if buf.is_empty() {
                break;
            }
            match parse_raw_request(&buf, conn) {
                RawParse::Incomplete => {
                    if buf.len() > RECORDING_MAX {
                        let mut req = RawRequest {
                            conn,
                            raw_head: buf[..buf.len().min(4096)].to_vec(),
                            error: Some("request too large for the recording backend".into()),
                            ..RawRequest::default()
                        };
                        req.request_line = String::from_utf8_lossy(
                            buf.split(|b| *b == b'\n').next().unwrap_or_default(),
                        )
                        .trim_end()
                        .to_string();
                        state.requests.lock().unwrap().push(req);
                        let _ = stream
                            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                    break;
                }
                RawParse::Bad(req) => {
                    state.requests.lock().unwrap().push(req);
                    let _ = stream
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    let _ = stream.shutdown().await;
                    return;
                }
                RawParse::Done(req, used) => {
                    buf.drain(..used);
                    let close = req.header("connection").is_some_and(|v| {
                        v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
                    }) || req.version.eq_ignore_ascii_case("HTTP/1.0");
                    let head_only = req.method == "HEAD";
                    state.requests.lock().unwrap().push(req);
                    let body = state.name.as_bytes();
                    let mut out = format!(
                        "HTTP/1.1 200 OK\r\nx-backend: {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n",
                        state.name,
                        body.len(),
                        if close { "connection: close\r\n" } else { "" }
                    )
                    .into_bytes();
                    if !head_only {
                        out.extend_from_slice(body);
                    }
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                    if close {
                        let _ = stream.shutdown().await;
                        return;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket echo backend
// ---------------------------------------------------------------------------------------------

/// A WebSocket echo server on 127.0.0.1:<random port>: echoes text and binary messages.
/// Records the request target of every upgrade it accepted.
pub struct WsEchoBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
    accept_task: JoinHandle<()>,
    conn_tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl WsEchoBackend {
    pub async fn start() -> WsEchoBackend {
        let listener = bind_unreserved();
        let addr = listener.local_addr().expect("ws backend: local_addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let paths: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let conn_tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let accept_task = {
            let accepted = accepted.clone();
            let paths = paths.clone();
            let conn_tasks = conn_tasks.clone();
            tokio::spawn(async move {
                loop {
                    let (stream, _) = match listener.accept().await {
                        Ok(s) => s,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let accepted = accepted.clone();
                    let paths = paths.clone();
                    let handle = tokio::spawn(async move {
                        let paths_cb = paths.clone();
                        let callback = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                                             resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                            let target = req
                                .uri()
                                .path_and_query()
                                .map(|pq| pq.as_str().to_string())
                                .unwrap_or_else(|| req.uri().to_string());
                            paths_cb.lock().unwrap().push(target);
                            Ok(resp)
                        };
                        let ws = match tokio_tungstenite::accept_hdr_async(stream, callback).await {
                            Ok(ws) => ws,
                            Err(_) => return,
                        };
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let (mut tx, mut rx) = ws.split();
                        for _ in 0..1_000_000 {
                            let msg = match rx.next().await {
                                Some(Ok(m)) => m,
                                _ => break,
                            };
                            if msg.is_text() || msg.is_binary() {
                                if tx.send(msg).await.is_err() {
                                    break;
                                }
                            } else if msg.is_close() {
                                let _ = tx.close().await;
                                break;
                            }
                        }
                    });
                    let mut tasks = conn_tasks.lock().unwrap();
                    tasks.retain(|t| !t.is_finished());
                    tasks.push(handle);
                }
            })
        };
        WsEchoBackend {
            addr,
            accepted,
            paths,
            accept_task,
            conn_tasks,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// Number of completed WebSocket handshakes.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Request targets (path + query) of the upgrade requests seen.
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

impl Drop for WsEchoBackend {
    fn drop(&mut self) {
        self.accept_task.abort();
        for task in self.conn_tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fulcrum process
// ---------------------------------------------------------------------------------------------

/// The `pingora:` section every test config gets: one worker thread, no grace periods, and a
/// pid file and upgrade socket inside `dir` so tests running in parallel do not collide.
pub fn pingora_section(dir: &Path) -> String {
    format!(
        "pingora:\n  threads: 1\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n  pid_file: \"{}\"\n  upgrade_sock: \"{}\"\n",
        dir.join("fulcrum.pid").display(),
        dir.join("upgrade.sock").display()
    )
}

/// Prepends [`pingora_section`] unless the YAML already has a top-level `pingora:` key, and
/// replaces every `$TMPDIR` with `dir`.
pub fn with_pingora_section(yaml: &str, dir: &Path) -> String {
    let yaml = yaml.replace("$TMPDIR", &dir.display().to_string());
    let has_pingora = yaml.lines().any(|l| l.starts_with("pingora:"));
    if has_pingora {
        yaml
    } else {
        format!("{}{}", pingora_section(dir), yaml)
    }
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// A running `fulcrum` process. Killed (SIGKILL) and reaped on drop. When the test is
/// panicking, its output is printed to the test's stderr on drop.
pub struct Fulcrum {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    config: Option<PathBuf>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Fulcrum {
    /// Writes `yaml` (plus the test `pingora:` section, see [`with_pingora_section`]) to a temp
    /// file, runs `fulcrum -c FILE`, and waits until 127.0.0.1:`listen_port` accepts TCP
    /// connections (bounded by [`START_TIMEOUT`]). Panics with fulcrum's output if it exits or
    /// never listens.
    ///
    /// Readiness is a bare TCP connect (no HTTP request), so no request is routed and
    /// balancer state (round-robin counters) is untouched when the test starts.
    pub async fn start(yaml: &str, listen_port: u16) -> Fulcrum {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_file(
            dir.path(),
            "fulcrum.yaml",
            &with_pingora_section(yaml, dir.path()),
        );
        let args = vec!["-c".to_string(), config.display().to_string()];
        Fulcrum::spawn(dir, Some(config), &args, listen_port).await
    }

    /// Runs `fulcrum ARGS...` (e.g. quick mode flags) and waits for `listen_port` like
    /// [`Fulcrum::start`].
    pub async fn start_args(args: &[&str], listen_port: u16) -> Fulcrum {
        let dir = tempfile::tempdir().expect("tempdir");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Fulcrum::spawn(dir, None, &args, listen_port).await
    }

    async fn spawn(
        dir: tempfile::TempDir,
        config: Option<PathBuf>,
        args: &[String],
        port: u16,
    ) -> Fulcrum {
        let stdout_path = dir.path().join("stdout.log");
        let stderr_path = dir.path().join("stderr.log");
        let stdout = File::create(&stdout_path).expect("create stdout log");
        let stderr = File::create(&stderr_path).expect("create stderr log");
        let mut cmd = Command::new(FULCRUM_BIN);
        cmd.args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {FULCRUM_BIN}: {e}"));
        let mut f = Fulcrum {
            child: Some(child),
            dir,
            port,
            config,
            stdout_path,
            stderr_path,
        };
        f.wait_ready().await;
        f
    }

    async fn wait_ready(&mut self) {
        let port = self.port;
        self.wait_listening(port).await;
    }

    /// Waits (polling every 20 ms, at most [`START_TIMEOUT`]) until this fulcrum process
    /// listens on 127.0.0.1:`port` (the main listener, or a demo backend). Panics with
    /// fulcrum's output if the process exits or the port never comes up.
    ///
    /// On Linux the listening socket must belong to the child process (checked through
    /// /proc), so a port that some other process grabbed in the meantime is not mistaken for
    /// fulcrum; where that cannot be checked, a TCP connect that keeps succeeding for 3 s
    /// while fulcrum stays up also counts.
    pub async fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + START_TIMEOUT;
        let max_iterations = (START_TIMEOUT.as_millis() / 20 + 2) as usize;
        let mut connect_ok_since: Option<Instant> = None;
        for _ in 0..max_iterations {
            if let Some(status) = self.try_wait() {
                panic!(
                    "fulcrum exited while waiting for port {port}: {status}\n{}",
                    self.describe()
                );
            }
            let attempt = tokio::time::timeout(
                Duration::from_millis(200),
                TcpStream::connect(("127.0.0.1", port)),
            )
            .await;
            if let Ok(Ok(_)) = attempt {
                let pid = self.child.as_ref().map(|c| c.id()).unwrap_or(0);
                match pid_listens_on(pid, port) {
                    Some(true) | None => return,
                    Some(false) => {
                        let since = *connect_ok_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= Duration::from_secs(3) {
                            return;
                        }
                    }
                }
            } else {
                connect_ok_since = None;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        panic!(
            "fulcrum did not listen on 127.0.0.1:{port} within {:?}\n{}",
            START_TIMEOUT,
            self.describe()
        );
    }

    /// The listener port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// `ws://127.0.0.1:PORT{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    /// The temp dir holding the config, logs, pid file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file path (None in quick mode).
    pub fn config_path(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// Everything fulcrum wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Everything fulcrum wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Config, stdout and stderr, for failure messages.
    pub fn describe(&self) -> String {
        let config = self
            .config
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_else(|| "(quick mode, no config file)".to_string());
        format!(
            "--- fulcrum config ---\n{}\n--- fulcrum stdout ---\n{}\n--- fulcrum stderr ---\n{}\n---",
            config,
            tail(&self.stdout(), 8000),
            tail(&self.stderr(), 16000)
        )
    }

    /// `Some(status)` if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Fulcrum {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.describe());
        }
    }
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

/// Runs `fulcrum ARGS...` to completion (at most [`CMD_TIMEOUT`], then it is killed and the
/// test panics) and returns its exit status and output. For `-t` and `--print-config`.
pub fn fulcrum_cmd(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(FULCRUM_BIN)
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("create stdout file"))
        .stderr(File::create(&stderr_path).expect("create stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {FULCRUM_BIN}: {e}"));
    let deadline = Instant::now() + CMD_TIMEOUT;
    let max_iterations = (CMD_TIMEOUT.as_millis() / 10 + 2) as usize;
    let mut status = None;
    for _ in 0..max_iterations {
        if let Some(s) = child.try_wait().expect("try_wait") {
            status = Some(s);
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`fulcrum {}` did not exit within {:?}\nstdout:\n{}\nstderr:\n{}",
                args.join(" "),
                CMD_TIMEOUT,
                std::fs::read_to_string(&stdout_path).unwrap_or_default(),
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
    };
    Output {
        status,
        stdout: std::fs::read(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read(&stderr_path).unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------

/// A reqwest client: no proxy from the environment, 10 s timeout, HTTP/1.1.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("build reqwest client")
}

/// Like [`client`] but never reuses a connection (a new TCP connection per request).
pub fn client_no_pool() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .expect("build reqwest client")
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Resp {
    /// All values of a response header, empty when absent.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// A response header's values joined with `", "`, `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.header_all(name);
        if values.is_empty() {
            None
        } else {
            Some(values.join(", "))
        }
    }
}

/// Sends a request and reads the whole response. Panics (naming the URL) on transport errors.
pub async fn request(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Resp {
    match try_request(client, method, url, host, headers, body).await {
        Ok(resp) => resp,
        Err(e) => panic!("{method} {url} (host {host:?}) failed: {e:?}"),
    }
}

/// Like [`request`] but returns transport errors.
pub async fn try_request(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Resp, reqwest::Error> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
    let mut builder = client.request(method, url);
    if let Some(host) = host {
        builder = builder.header(reqwest::header::HOST, host);
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    if let Some(body) = body {
        builder = builder.body(body);
    }
    let resp = builder.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// GET `url`.
pub async fn get(client: &reqwest::Client, url: &str) -> Resp {
    request(client, "GET", url, None, &[], None).await
}

/// GET `url` with the given `Host` header.
pub async fn get_host(client: &reqwest::Client, url: &str, host: &str) -> Resp {
    request(client, "GET", url, Some(host), &[], None).await
}

/// GET `url` with extra headers (and optionally a Host header).
pub async fn get_with(
    client: &reqwest::Client,
    url: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    request(client, "GET", url, host, headers, None).await
}

/// Sends raw bytes to 127.0.0.1:`port` and reads until the server closes the connection (send
/// `Connection: close`), at most 10 s. Returns the raw response text.
pub async fn raw_http(port: u16, request: &[u8]) -> String {
    let fut = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(request).await?;
        stream.flush().await?;
        let mut out = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        for _ in 0..100_000 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(out)
    };
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(Err(e)) => panic!("raw request to port {port} failed: {e}"),
        Err(_) => panic!("raw request to port {port} timed out"),
    }
}

/// The status code of a raw HTTP response text (`HTTP/1.1 200 OK...` -> 200).
pub fn raw_status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in raw response: {response:?}"))
}

/// Sends `n` GETs to `url` (optionally with a Host header) one after another and returns the
/// response bodies, panicking on any non-200 status.
pub async fn bodies(
    client: &reqwest::Client,
    url: &str,
    host: Option<&str>,
    n: usize,
) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let resp = request(client, "GET", url, host, &[], None).await;
        assert_eq!(
            resp.status, 200,
            "request #{i} to {url}: expected 200, got {} with body {:?}",
            resp.status, resp.body
        );
        out.push(resp.body);
    }
    out
}

/// Asserts a body is a short plain message (non-empty, under 512 bytes, not an HTML page).
pub fn assert_short_body(resp: &Resp, what: &str) {
    assert!(
        !resp.body.trim().is_empty(),
        "{what}: expected a short non-empty body, got an empty one (status {})",
        resp.status
    );
    assert!(
        resp.body.len() < 512,
        "{what}: expected a short body, got {} bytes: {:?}",
        resp.body.len(),
        resp.body
    );
    assert!(
        !resp.body.to_ascii_lowercase().contains("<html"),
        "{what}: expected a plain body, got HTML: {:?}",
        resp.body
    );
}

/// One HTTP response parsed out of raw bytes by [`RawExchange::responses`].
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header fields: (lowercase name, value).
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked; up to EOF when the response has no length).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A header's values joined with `", "`, `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    /// Body as (lossy) UTF-8.
    pub fn body_string(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What came back on one TCP connection after [`raw_exchange`] wrote raw bytes to it.
#[derive(Debug, Clone, Default)]
pub struct RawExchange {
    /// Every byte the server sent.
    pub bytes: Vec<u8>,
    /// The server closed the connection (EOF or reset) before the client stopped waiting.
    pub closed: bool,
    /// Writing the request failed part-way (the server closed or reset early).
    pub write_error: Option<String>,
    /// Reading failed (typically a reset after the server's answer).
    pub read_error: Option<String>,
    /// The client stopped waiting: nothing arrived within the first-byte timeout.
    pub timed_out: bool,
}

impl RawExchange {
    /// The bytes as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The responses in [`bytes`](Self::bytes), in order; an incomplete trailing one is
    /// dropped. Interim (1xx) responses are included.
    pub fn responses(&self) -> Vec<RawResponse> {
        parse_raw_responses(&self.bytes, self.closed)
    }

    /// The status codes of [`responses`](Self::responses).
    pub fn statuses(&self) -> Vec<u16> {
        self.responses().iter().map(|r| r.status).collect()
    }

    /// A one-line summary for messages and tables: `400, closed` / `200 200` / `closed, no
    /// response` / `no answer within the timeout`.
    pub fn summary(&self) -> String {
        let statuses: Vec<String> = self.statuses().iter().map(|s| s.to_string()).collect();
        let mut out = if statuses.is_empty() {
            if self.bytes.is_empty() {
                "no response".to_string()
            } else {
                format!("{} unparseable bytes", self.bytes.len())
            }
        } else {
            statuses.join(" ")
        };
        if self.closed {
            out.push_str(", closed");
        } else if self.timed_out {
            out.push_str(", no answer within the timeout (connection left open)");
        } else {
            out.push_str(", kept open");
        }
        out
    }
}

fn parse_raw_responses(bytes: &[u8], closed: bool) -> Vec<RawResponse> {
    let mut out = Vec::new();
    let mut pos = 0;
    // Bounded: each iteration consumes at least the head of one response.
    for _ in 0..10_000 {
        let Some(rel) = bytes[pos..].windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&bytes[pos..pos + rel]).into_owned();
        let body_start = pos + rel + 4;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let Some(status) = status_line
            .strip_prefix("HTTP/1.")
            .and_then(|s| s.get(2..5))
            .and_then(|s| s.parse::<u16>().ok())
        else {
            break;
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let no_body = (100..200).contains(&status) || status == 204 || status == 304;
        let (body, next) = if no_body {
            (Vec::new(), body_start)
        } else if get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            let mut body = Vec::new();
            let mut p = body_start;
            let mut complete = false;
            for _ in 0..1_000_000 {
                let Some(lf) = bytes[p..].windows(2).position(|w| w == b"\r\n") else {
                    break;
                };
                let size_text = String::from_utf8_lossy(&bytes[p..p + lf]).into_owned();
                let Ok(size) =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                else {
                    break;
                };
                p += lf + 2;
                if size == 0 {
                    // Skip trailers up to the empty line.
                    match bytes[p..].windows(2).position(|w| w == b"\r\n") {
                        Some(0) => {
                            p += 2;
                            complete = true;
                        }
                        Some(_) => {
                            if let Some(e) = bytes[p..].windows(4).position(|w| w == b"\r\n\r\n") {
                                p += e + 4;
                                complete = true;
                            }
                        }
                        None => {}
                    }
                    break;
                }
                if bytes.len() < p + size + 2 {
                    break;
                }
                body.extend_from_slice(&bytes[p..p + size]);
                p += size + 2;
            }
            if !complete {
                break;
            }
            (body, p)
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            if bytes.len() < body_start + len {
                break;
            }
            (
                bytes[body_start..body_start + len].to_vec(),
                body_start + len,
            )
        } else {
            if !closed {
                break;
            }
            (bytes[body_start..].to_vec(), bytes.len())
        };
        out.push(RawResponse {
            status,
            headers,
            body,
        });
        pos = next;
        if pos >= bytes.len() {
            break;
        }
    }
    out
}

/// Connects to 127.0.0.1:`port`, writes `request` (all at once), and reads what comes back:
/// until the server closes the connection, or nothing arrives for `idle` after the last byte
/// received, or nothing at all arrives within 5 s (then `timed_out`). The whole exchange is
/// bounded by 15 s. Write errors (a server that answers and closes before the request is fully
/// written) are recorded, not fatal: the answer is still read.
pub async fn raw_exchange(port: u16, request: &[u8], idle: Duration) -> RawExchange {
    let first_byte = Duration::from_secs(5);
    let fut = async {
        let mut ex = RawExchange::default();
        let mut stream = match tokio::time::timeout(
            Duration::from_secs(5),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => panic!("connect to 127.0.0.1:{port}: {e}"),
            Err(_) => panic!("connect to 127.0.0.1:{port} timed out"),
        };
        let _ = stream.set_nodelay(true);
        if let Err(e) = stream.write_all(request).await {
            ex.write_error = Some(e.to_string());
        } else {
            let _ = stream.flush().await;
        }
        let mut chunk = vec![0u8; 64 * 1024];
        for _ in 0..100_000 {
            let wait = if ex.bytes.is_empty() {
                first_byte
            } else {
                idle
            };
            match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
                Ok(Ok(0)) => {
                    ex.closed = true;
                    break;
                }
                Ok(Ok(n)) => ex.bytes.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => {
                    ex.read_error = Some(e.to_string());
                    ex.closed = true;
                    break;
                }
                Err(_) => {
                    ex.timed_out = ex.bytes.is_empty();
                    break;
                }
            }
        }
        ex
    };
    match tokio::time::timeout(Duration::from_secs(15), fut).await {
        Ok(ex) => ex,
        Err(_) => panic!("raw exchange with port {port} did not finish within 15 s"),
    }
}
