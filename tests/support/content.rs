//! [`ContentBackend`]: an HTTP/1.1 server that answers each path with a fixed response (status,
//! headers, body bytes), framed by `Content-Length` or chunked, for tests that need a given
//! content type, body or set of headers (compression, caching).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::request::{parse_head, RawRequest};
use super::server::Server;

/// One path's answer.
#[derive(Debug, Clone)]
pub struct Content {
    /// Response status.
    pub status: u16,
    /// Response headers, written as given (no `content-type` unless listed here).
    pub headers: Vec<(String, String)>,
    /// Response body (not sent for `HEAD`).
    pub body: Vec<u8>,
    /// `Some(n)`: chunked, in pieces of `n` bytes, without `Content-Length`; `None`:
    /// `Content-Length`.
    pub chunked: Option<usize>,
    /// Answer with an `HTTP/1.0` status line (use with `Content-Length` framing).
    pub http10: bool,
}

impl Content {
    /// A 200 with `content-type: content_type` and `body`, framed by `Content-Length`.
    pub fn new(content_type: &str, body: impl Into<Vec<u8>>) -> Content {
        Content {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
            chunked: None,
            http10: false,
        }
    }

    /// The same with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Content {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The same with an `HTTP/1.0` status line.
    pub fn http10(mut self) -> Content {
        self.http10 = true;
        self
    }

    /// The same sent chunked, in pieces of `piece` bytes.
    pub fn chunked(mut self, piece: usize) -> Content {
        self.chunked = Some(piece.max(1));
        self
    }
}

/// A backend answering each path with its [`Content`] (404 for others), keep-alive, request
/// bodies not expected. Stops on drop.
pub struct ContentBackend {
    server: Server,
    requests: Arc<Mutex<Vec<RawRequest>>>,
}

impl ContentBackend {
    /// Starts serving `contents` (path -> answer).
    pub async fn start(contents: Vec<(&str, Content)>) -> ContentBackend {
        let map: Arc<HashMap<String, Content>> = Arc::new(
            contents
                .into_iter()
                .map(|(p, c)| (p.to_string(), c))
                .collect(),
        );
        let requests: Arc<Mutex<Vec<RawRequest>>> = Arc::default();
        let server = {
            let requests = requests.clone();
            Server::start(move |stream| serve(stream, map.clone(), requests.clone()))
        };
        ContentBackend { server, requests }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.server.addr()
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().unwrap().clone()
    }
}

/// The bytes answering `req`.
fn answer(req: &RawRequest, contents: &HashMap<String, Content>) -> Vec<u8> {
    let path = req.target.split('?').next().unwrap_or_default();
    let not_found = Content {
        status: 404,
        headers: Vec::new(),
        body: Vec::new(),
        chunked: None,
        http10: false,
    };
    let c = contents.get(path).unwrap_or(&not_found);
    let version = if c.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
    let mut head = format!("{version} {} X\r\n", c.status);
    for (k, v) in &c.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match c.chunked {
        Some(_) => head.push_str("transfer-encoding: chunked\r\n"),
        None => head.push_str(&format!("content-length: {}\r\n", c.body.len())),
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if req.method == "HEAD" {
        return out;
    }
    match c.chunked {
        None => out.extend_from_slice(&c.body),
        Some(n) => {
            for piece in c.body.chunks(n) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
    out
}

/// Serves one connection until the peer closes it (bounded in requests).
async fn serve(
    mut stream: TcpStream,
    contents: Arc<HashMap<String, Content>>,
    requests: Arc<Mutex<Vec<RawRequest>>>,
) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    for _ in 0..10_000 {
        while let Some((req, end)) = parse_head(&buf, 0) {
            buf.drain(..end);
            let out = answer(&req, &contents);
            requests.lock().unwrap().push(req);
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
