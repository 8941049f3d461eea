//! What fulcrum refuses or removes in a request head before a backend sees it: forwarding
//! headers spelled with underscores, and every `Transfer-Encoding` but one `chunked`, plus
//! what happens to an empty chunk-size line. Raw bytes through the real binary to a
//! [`RecordingBackend`] that records exactly what arrives.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::time::Duration;

use support::*;

/// How long a raw exchange waits for more bytes after the last one received.
const IDLE: Duration = Duration::from_millis(800);

/// A request an attacker tries to slip past fulcrum; it must never reach the backend.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";

/// A recording backend and a fulcrum in front of it, trusting `trusted` (YAML list).
async fn start(trusted: &str) -> (Fulcrum, RecordingBackend) {
    let backend = RecordingBackend::start("app").await;
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - addr: \"127.0.0.1:{port}\"\n\
         forwarding:\n  trusted_proxies: {trusted}\n\
         upstreams:\n  app:\n    backends: [{{addr: \"{}\"}}]\n\
         routes:\n  - upstream: app\n",
        backend.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    (f, backend)
}

/// Sends `request` on a fresh connection, waits a moment for anything fulcrum still sends
/// upstream, and returns the exchange.
async fn send(f: &Fulcrum, request: &[u8]) -> RawExchange {
    let ex = raw_exchange(f.port(), request, IDLE).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    ex
}

/// Underscore spellings of the forwarding headers and of `X-Request-Id` never reach the
/// backend, from an untrusted client or a trusted proxy; other underscore headers pass, and
/// the dashed names are handled as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_forwarding_headers_are_dropped() {
    for trusted in ["[]", "[\"127.0.0.1/32\"]"] {
        let (f, backend) = start(trusted).await;
        let ex = send(
            &f,
            b"GET /u HTTP/1.1\r\nHost: app.test\r\n\
              X_Forwarded_For: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\nx_forwarded-proto: gopher\r\n\
              X_Forwarded_Host: evil.test\r\nX_Forwarded_Port: 1\r\nX_Request_Id: forged\r\n\
              X_Custom_Thing: kept\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(ex.statuses(), vec![200], "{trusted}: {}", ex.summary());
        let reqs = backend.requests();
        assert_eq!(reqs.len(), 1, "{trusted}: {reqs:?}");
        let r = &reqs[0];
        let underscored: Vec<&(String, String)> =
            r.headers.iter().filter(|(k, _)| k.contains('_')).collect();
        assert_eq!(
            underscored,
            vec![&("x_custom_thing".to_string(), "kept".to_string())],
            "{trusted}: {:?}",
            r.headers
        );
        assert_eq!(r.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
        assert_eq!(r.header("x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(r.header("x-forwarded-host").as_deref(), Some("app.test"));
        assert_eq!(r.header("x-real-ip"), None);
        let id = r.header("x-request-id").expect("a request id");
        assert_ne!(id, "forged");
    }
}

/// The Transfer-Encoding rules, case by case: the exact answer, a close, and nothing reaching
/// the backend for a refused request; a single `chunked` (any case, with whitespace) is
/// forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_rules() {
    let (f, backend) = start("[]").await;
    let body = format!("5\r\nhello\r\n0\r\n\r\n{SMUGGLED}");
    // (Transfer-Encoding lines, version, expected status; who answers)
    let refused = [
        // fulcrum's admission
        ("Transfer-Encoding: gzip, chunked\r\n", "1.1", 501),
        ("Transfer-Encoding: deflate,chunked\r\n", "1.1", 501),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "1.1",
            400,
        ),
        ("Transfer-Encoding: chunked, chunked\r\n", "1.1", 400),
        (
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            "1.1",
            400,
        ),
        // Pingora's parser: the final coding is not chunked, or HTTP/1.0
        ("Transfer-Encoding: gzip\r\n", "1.1", 400),
        ("Transfer-Encoding: identity\r\n", "1.1", 400),
        ("Transfer-Encoding: chunked, gzip\r\n", "1.1", 400),
        ("Transfer-Encoding: chunked\r\n", "1.0", 400),
    ];
    for (te, version, status) in refused {
        backend.clear();
        let req = format!("POST /te HTTP/{version}\r\nHost: app.test\r\n{te}\r\n{body}");
        let ex = send(&f, req.as_bytes()).await;
        assert_eq!(
            ex.statuses(),
            vec![status],
            "{te:?} {version}: {}",
            ex.summary()
        );
        assert!(ex.closed, "{te:?} {version}: {}", ex.summary());
        assert_eq!(
            backend.raw(),
            Vec::<u8>::new(),
            "{te:?}: reached the backend"
        );
    }
    for te in [
        "Transfer-Encoding: chunked\r\n",
        "transfer-encoding: CHUNKED\r\n",
        "Transfer-Encoding:  Chunked  \r\n",
    ] {
        backend.clear();
        let req = format!(
            "POST /te HTTP/1.1\r\nHost: app.test\r\n{te}Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let ex = send(&f, req.as_bytes()).await;
        assert_eq!(ex.statuses(), vec![200], "{te:?}: {}", ex.summary());
        let reqs = backend.requests();
        assert_eq!(reqs.len(), 1, "{te:?}: {reqs:?}");
        assert_eq!(reqs[0].body_string(), "hello");
    }
}

/// An empty chunk-size line: Pingora (through httparse) reads it as size 0, the last chunk, and
/// the lines up to the next empty line as trailers. The backend gets a well-framed empty body
/// (`0\r\n\r\n`); the bytes after are not answered nor forwarded as a request: fulcrum
/// answers the one request and closes, exactly as it does when a well-formed request is
/// followed by the same bytes (the control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_chunk_size_line_ends_the_body_and_smuggles_nothing() {
    let (f, backend) = start("[]").await;
    let cases = [
        // empty size line, a "trailer" X, a line 0, end of trailers, then SMUGGLED
        (
            "/empty-size",
            "Transfer-Encoding: chunked\r\n\r\n\r\nX\r\n0\r\n\r\n",
        ),
        // empty size line, end of trailers, then SMUGGLED
        (
            "/empty-size-crlf",
            "Transfer-Encoding: chunked\r\n\r\n\r\n\r\n",
        ),
        // control: a well-formed empty chunked body, then SMUGGLED
        ("/control", "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ];
    for (path, rest) in cases {
        backend.clear();
        let req = format!("POST {path} HTTP/1.1\r\nHost: app.test\r\n{rest}{SMUGGLED}");
        let ex = send(&f, req.as_bytes()).await;
        assert_eq!(ex.statuses(), vec![200], "{path}: {}", ex.summary());
        assert!(ex.closed, "{path}: {}", ex.summary());
        let reqs = backend.requests();
        let lines: Vec<&str> = reqs.iter().map(|r| r.request_line.as_str()).collect();
        assert_eq!(lines, vec![format!("POST {path} HTTP/1.1")], "{path}");
        assert_eq!(reqs[0].body, b"", "{path}");
        // The body was read ahead whole (request buffering), so it goes on framed by its
        // length, and nothing follows it.
        let raw = String::from_utf8_lossy(&backend.raw()).to_lowercase();
        assert!(raw.contains("\r\ncontent-length: 0\r\n"), "{path}: {raw:?}");
        assert_eq!(raw.find("\r\n\r\n"), Some(raw.len() - 4), "{path}: {raw:?}");
        assert!(!raw.contains("transfer-encoding"), "{path}: {raw:?}");
    }
}
