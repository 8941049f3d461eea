//! [`CountingOrigin`]: an HTTP/1.1 origin for cache tests whose answers the test sets per path
//! while it runs ([`Reply`]: status, headers, body, delay), that answers conditional requests
//! with `304`, counts and records every request per path, and can be switched to failing
//! (a fixed status for every request) or stopped (connections refused).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::request::{parse_request, RawParse, RecordedRequest};
use super::server::Server;

/// How the origin answers requests for one path.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Response status.
    pub status: u16,
    /// Response headers besides `content-length` (e.g. `cache-control`, `etag`, `vary`).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Append `|` and the value of this request header (`-` when absent) to the body, so
    /// the variants of a `Vary` response differ.
    pub echo_header: Option<String>,
    /// Send the body with `Transfer-Encoding: chunked` (16 KiB chunks) instead of a
    /// `Content-Length`.
    pub chunked: bool,
}

impl Reply {
    /// `200` with `body` and no caching headers.
    pub fn ok(body: &str) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            delay: None,
            echo_header: None,
            chunked: false,
        }
    }

    /// `200` with `body` and `Cache-Control: CC`.
    pub fn cc(body: &str, cc: &str) -> Reply {
        Reply::ok(body).header("cache-control", cc)
    }

    /// This reply with another status.
    pub fn status(mut self, status: u16) -> Reply {
        self.status = status;
        self
    }

    /// This reply with one more response header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// This reply answering only after `delay`.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }

    /// This reply with a body of `len` bytes (see [`pattern_body`]).
    pub fn sized(mut self, len: usize) -> Reply {
        self.body = pattern_body(len);
        self
    }

    /// This reply sent chunked, without a `Content-Length`.
    pub fn chunked(mut self) -> Reply {
        self.chunked = true;
        self
    }

    /// This reply echoing request header `name` in its body.
    pub fn echo(mut self, name: &str) -> Reply {
        self.echo_header = Some(name.to_ascii_lowercase());
        self
    }

    /// The value of one of this reply's headers.
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A body of `len` bytes: the digits `0123456789` over and over, so any range of it is known.
pub fn pattern_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'0' + (i % 10) as u8).collect()
}

/// What the origin shares between its connections.
struct State {
    /// Replies by path (the request target without its query).
    replies: Mutex<HashMap<String, Reply>>,
    /// When set, every request gets this status with body `failing` and no caching headers.
    failing: Mutex<Option<u16>>,
    /// Every request received, oldest first.
    requests: Mutex<Vec<RecordedRequest>>,
}

impl State {
    /// The reply to `req` as bytes, and how long to wait before sending them.
    fn answer(&self, req: &RecordedRequest) -> (Option<Duration>, Vec<u8>) {
        let path = path_of(&req.path);
        let failing = *self.failing.lock().unwrap();
        let reply = match failing {
            Some(status) => Reply::ok("failing").status(status),
            None => self
                .replies
                .lock()
                .unwrap()
                .get(path)
                .cloned()
                .unwrap_or_else(|| Reply::ok("no reply set").status(404)),
        };
        let not_modified = failing.is_none() && is_not_modified(&reply, req);
        let status = if not_modified { 304 } else { reply.status };
        let mut body = reply.body.clone();
        if let Some(name) = &reply.echo_header {
            body.push(b'|');
            body.extend_from_slice(req.header(name).unwrap_or_else(|| "-".into()).as_bytes());
        }
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let bodiless = status == 304 || status == 204;
        if !bodiless && reply.chunked {
            head.push_str("transfer-encoding: chunked\r\n");
        } else if !bodiless {
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !bodiless && req.method != "HEAD" {
            if reply.chunked {
                for chunk in body.chunks(16 * 1024) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            } else {
                out.extend_from_slice(&body);
            }
        }
        (reply.delay, out)
    }
}

/// Whether `req` is a conditional request that `reply`'s validators satisfy:
/// `If-None-Match` listing its `ETag` (or `*`), else `If-Modified-Since` equal to its
/// `Last-Modified`. Only for `200` replies.
fn is_not_modified(reply: &Reply, req: &RecordedRequest) -> bool {
    if reply.status != 200 {
        return false;
    }
    if let Some(inm) = req.header("if-none-match") {
        let Some(etag) = reply.get("etag") else {
            return false;
        };
        return inm.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag.trim_start_matches("W/")
        });
    }
    match (req.header("if-modified-since"), reply.get("last-modified")) {
        (Some(ims), Some(lm)) => ims.trim() == lm.trim(),
        _ => false,
    }
}

/// The request target without its query.
fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

/// An HTTP/1.1 origin on 127.0.0.1:<random port> for cache tests.
///
/// A path answers as set with [`CountingOrigin::set`], `404` otherwise. `If-None-Match`
/// naming the reply's `ETag`, or `If-Modified-Since` equal to its `Last-Modified`, gets `304`
/// with the reply's headers. `HEAD` gets the head only. Keep-alive; every request is recorded
/// (before its delay), so [`CountingOrigin::count`] is the number of requests that reached it.
pub struct CountingOrigin {
    server: Server,
    state: Arc<State>,
}

impl CountingOrigin {
    /// Starts an origin with no replies set.
    pub async fn start() -> CountingOrigin {
        let state = Arc::new(State {
            replies: Mutex::new(HashMap::new()),
            failing: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
        });
        let server = {
            let state = state.clone();
            Server::start(move |stream| {
                let state = state.clone();
                async move { serve(stream, &state).await }
            })
        };
        CountingOrigin { server, state }
    }

    /// `127.0.0.1:PORT`, as written in configs.
    pub fn addr(&self) -> String {
        self.server.addr()
    }

    /// Sets how `path` (without query) answers from now on.
    pub fn set(&self, path: &str, reply: Reply) {
        self.state
            .replies
            .lock()
            .unwrap()
            .insert(path.to_string(), reply);
    }

    /// Every request from now on gets `status` (body `failing`, no caching headers).
    pub fn fail_with(&self, status: u16) {
        *self.state.failing.lock().unwrap() = Some(status);
    }

    /// Answers as set again after [`CountingOrigin::fail_with`].
    pub fn recover(&self) {
        *self.state.failing.lock().unwrap() = None;
    }

    /// Closes the listener and every connection; connections are refused afterwards.
    pub async fn stop(&self) {
        self.server.stop().await;
    }

    /// Requests received for `path` (any query), oldest first.
    pub fn requests(&self, path: &str) -> Vec<RecordedRequest> {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| path_of(&r.path) == path)
            .cloned()
            .collect()
    }

    /// Number of requests received for `path` (any query).
    pub fn count(&self, path: &str) -> usize {
        self.requests(path).len()
    }

    /// Number of requests received for every path.
    pub fn total(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }
}

/// Serves one connection until the peer closes it or sends something unframeable.
async fn serve(mut stream: TcpStream, state: &State) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // Bounded: at most this many reads per connection.
    for _ in 0..1_000_000 {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        for _ in 0..10_000 {
            match parse_request(&buf, 0) {
                RawParse::Incomplete => break,
                RawParse::Bad(_) => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                RawParse::Done(raw, used) => {
                    buf.drain(..used);
                    let req = RecordedRequest::from(raw);
                    let (delay, out) = state.answer(&req);
                    state.requests.lock().unwrap().push(req);
                    if let Some(delay) = delay {
                        tokio::time::sleep(delay).await;
                    }
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// The reason phrase for a status code.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}
