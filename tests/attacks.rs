//! Hostile input against the real fulcrum binary (issue 8, "Hardening"): request smuggling,
//! malformed request lines and headers, garbage bytes, spoofed forwarding headers, hop-by-hop
//! headers, and reaching the admin listener through the proxy.
//!
//! Every attack is sent as raw bytes on a fresh TCP connection to 127.0.0.1 (see
//! [`raw_exchange`]: every read has a timeout) to a fulcrum whose only backend is a
//! [`RecordingBackend`], which records every byte fulcrum sends upstream. Each test then checks
//! what fulcrum answered, what reached the backend (above all: never a second, smuggled
//! request, and never a head whose framing two parsers could read differently), and that
//! fulcrum is still running, has not panicked, and serves a normal request.
//!
//! Tests marked `#[ignore = "Pingora limitation: ..."]` assert the behaviour we would want but
//! cannot get without changing Pingora's HTTP/1 parser (documented in docs/hardening.md's attack
//! table).

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::*;

/// How long a raw exchange waits for more bytes after the last one received.
const IDLE: Duration = Duration::from_millis(800);

/// The request an attacker tries to slip past fulcrum. It must never reach the backend as a
/// request of its own.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";

/// A listener, one upstream `app` holding `backend`, a catch-all route, and `extra` appended.
fn config(port: u16, backend: &str, extra: &str) -> String {
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    backends:
      - addr: "{backend}"
routes:
  - upstream: app
{extra}
"#
    )
}

/// A recording backend named `app` and a fulcrum in front of it.
struct Env {
    f: Fulcrum,
    backend: RecordingBackend,
}

impl Env {
    async fn start() -> Env {
        Env::start_with("").await
    }

    async fn start_with(extra: &str) -> Env {
        let backend = RecordingBackend::start("app").await;
        let port = free_port();
        let f = Fulcrum::start(&config(port, &backend.addr(), extra), port).await;
        Env { f, backend }
    }

    /// Sends raw bytes on a fresh connection and reads the answer (bounded).
    async fn send(&self, request: &[u8]) -> RawExchange {
        let ex = raw_exchange(self.f.port(), request, IDLE).await;
        // Let anything fulcrum was still sending upstream arrive before tests look.
        tokio::time::sleep(Duration::from_millis(150)).await;
        ex
    }
}

/// fulcrum is still running, has not panicked, and answers a normal request through the
/// backend (a fresh connection each time).
async fn assert_still_serving(env: &mut Env, after: &str) {
    assert!(
        env.f.is_running(),
        "fulcrum died after {after}\n{}",
        env.f.describe()
    );
    let stderr = env.f.stderr();
    assert!(
        !stderr.contains("panicked"),
        "fulcrum panicked after {after}:\n{stderr}"
    );
    let r = get_host(&client_no_pool(), &env.f.url("/after-attack"), "app.test").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "app"),
        "a normal request after {after} should be served: {r:?}"
    );
    let last = env.backend.last_request().expect("backend got the request");
    assert_eq!(last.request_line, "GET /after-attack HTTP/1.1");
    assert!(
        env.f.is_running(),
        "fulcrum died after {after}\n{}",
        env.f.describe()
    );
}

/// What an attack must produce. Each expectation is exact: fulcrum's answer to a given input
/// is deterministic, so a test states the one outcome it gives.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exactly one answer with this 4xx status, then the connection closes; nothing at all
    /// reaches the backend.
    Reject(u16),
    /// Rejected with one `400` and a close while the body was being read. The request head
    /// may already have been forwarded (fulcrum streams bodies), so the backend may have seen
    /// these request lines, cut short, but no other request. "May": whether the backend reads
    /// those bytes before fulcrum drops the upstream connection is a race between two
    /// processes, the one outcome here that cannot be exact.
    RejectMidBody(&'static [&'static str]),
    /// Answered `200` for exactly these requests, which reached the backend complete and with
    /// unambiguous framing (valid HTTP, or input fulcrum normalizes).
    Forward(&'static [&'static str]),
}

/// Printable form of the bytes sent, shortened.
fn shown(bytes: &[u8]) -> String {
    let s = bytes.escape_ascii().to_string();
    if s.len() > 300 {
        format!("{}... ({} bytes)", &s[..300], bytes.len())
    } else {
        s
    }
}

/// Sends `request` to a fresh fulcrum and checks `expect`, the backend, and that fulcrum
/// keeps serving.
async fn attack(name: &str, request: &[u8], expect: Expect) {
    let mut env = Env::start().await;
    let ex = env.send(request).await;
    check(name, &env, request, &ex, expect);
    assert_still_serving(&mut env, name).await;
}

fn check(name: &str, env: &Env, request: &[u8], ex: &RawExchange, expect: Expect) {
    let statuses = ex.statuses();
    let got = env.backend.requests();
    let lines: Vec<&str> = got.iter().map(|r| r.request_line.as_str()).collect();
    let context = format!(
        "{name}: sent {}\nfulcrum answered: {} ({:?})\nbackend received request lines {lines:?}, raw {:?}",
        shown(request),
        ex.summary(),
        String::from_utf8_lossy(&ex.bytes[..ex.bytes.len().min(400)]),
        shown(&env.backend.raw()),
    );
    eprintln!(
        "ATTACK-TABLE | `{name}` | {} | backend saw {lines:?}",
        ex.summary()
    );

    assert!(
        !ex.timed_out,
        "fulcrum neither answered nor closed within 5 s\n{context}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("/smuggled")),
        "a smuggled request reached the backend\n{context}"
    );
    for r in &got {
        let problems = r.ambiguities();
        assert!(
            problems.is_empty(),
            "fulcrum forwarded an ambiguous head {:?}: {problems:?}\n{context}",
            String::from_utf8_lossy(&r.raw_head)
        );
    }
    let nothing_forwarded = env.backend.raw().is_empty();
    match expect {
        Expect::Reject(status) => {
            assert!(
                statuses == [status] && ex.closed,
                "expected one {status} and a close\n{context}"
            );
            assert!(
                nothing_forwarded,
                "nothing should reach the backend\n{context}"
            );
        }
        Expect::RejectMidBody(allowed) => {
            assert!(
                statuses == [400] && ex.closed,
                "expected one 400 and a close\n{context}"
            );
            assert!(
                lines.len() <= allowed.len() && lines.iter().zip(allowed).all(|(l, a)| l == a),
                "only {allowed:?} may reach the backend\n{context}"
            );
            assert!(
                got.iter().all(|r| r.error.is_some()),
                "a request with a broken body must not reach the backend complete\n{context}"
            );
        }
        Expect::Forward(want) => {
            assert_eq!(
                statuses,
                vec![200; want.len()],
                "expected {} answer(s) 200\n{context}",
                want.len()
            );
            assert_eq!(lines, want, "backend request lines\n{context}");
            for r in &got {
                assert!(
                    r.error.is_none(),
                    "request reached the backend incomplete: {:?}\n{context}",
                    r.error
                );
            }
        }
    }
}

/// Defines a test that sends one attack.
macro_rules! attack_test {
    ($(#[$meta:meta])* $name:ident, $request:expr, $expect:expr) => {
        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let request: Vec<u8> = $request;
            attack(stringify!($name), &request, $expect).await;
        }
    };
}

/// `head` (with `{len}` replaced by the body's length) followed by `body`.
fn with_body(head: &str, body: &str) -> Vec<u8> {
    format!("{}{body}", head.replace("{len}", &body.len().to_string())).into_bytes()
}

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// A `POST /` with `headers` (CRLF-terminated lines), whose body is a terminating zero chunk
/// followed by [`SMUGGLED`], with `Content-Length` covering all of it: a proxy that frames by
/// `Content-Length` forwards it all as one body; one that frames by `Transfer-Encoding` ends
/// the body after the zero chunk, and must then not treat the rest as a new request.
fn cl_te(te_headers: &str) -> Vec<u8> {
    with_body(
        &format!(
            "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: {{len}}\r\n{te_headers}\r\n"
        ),
        &format!("0\r\n\r\n{SMUGGLED}"),
    )
}

/// A chunked `POST /` whose first chunk-size line is `size_line`, followed by a one-byte chunk,
/// the last chunk and [`SMUGGLED`]: a parser that accepts `size_line` as some small size would
/// then read [`SMUGGLED`] as the next request.
fn bad_chunk(size_line: &str) -> Vec<u8> {
    bytes(&format!(
        "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n{size_line}\r\nX\r\n0\r\n\r\n{SMUGGLED}"
    ))
}

// ---------------------------------------------------------------------------------------------
// Controls: the harness does see a second request when one is really sent
// ---------------------------------------------------------------------------------------------

/// Reads from `stream` until `n` complete responses have arrived (each read bounded).
async fn read_responses(stream: &mut tokio::net::TcpStream, n: usize) -> RawExchange {
    use tokio::io::AsyncReadExt;
    let mut ex = RawExchange::default();
    let mut chunk = vec![0u8; 16 * 1024];
    for _ in 0..1000 {
        if ex.responses().len() >= n {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                ex.closed = true;
                break;
            }
            Ok(Ok(k)) => ex.bytes.extend_from_slice(&chunk[..k]),
            Err(_) => {
                ex.timed_out = true;
                break;
            }
        }
    }
    ex
}

/// Control: two requests one after the other on one keep-alive connection both reach the
/// backend, so the request counting the attacks rely on sees a second request when there is
/// one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_keep_alive_requests_both_reach_the_backend() {
    use tokio::io::AsyncWriteExt;
    let mut env = Env::start().await;
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(("127.0.0.1", env.f.port())),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    stream
        .write_all(b"GET /first HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let first = read_responses(&mut stream, 1).await;
    assert_eq!(first.statuses(), vec![200], "{}", first.summary());
    stream
        .write_all(b"GET /second HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let second = read_responses(&mut stream, 1).await;
    assert_eq!(second.statuses(), vec![200], "{}", second.summary());
    assert_eq!(
        env.backend.request_lines(),
        vec!["GET /first HTTP/1.1", "GET /second HTTP/1.1"]
    );
    assert_still_serving(&mut env, "two keep-alive requests").await;
}

/// Control: the recording backend itself, sent a CL.TE smuggle directly, frames by
/// Transfer-Encoding and sees the smuggled request, and flags the head as ambiguous; so the
/// checks in the attacks below would catch fulcrum passing one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_recording_backend_detects_a_smuggled_request() {
    let backend = RecordingBackend::start("app").await;
    let ex = raw_exchange(
        backend.port(),
        &cl_te("Transfer-Encoding: chunked\r\n"),
        IDLE,
    )
    .await;
    assert_eq!(ex.statuses(), vec![200, 200], "{}", ex.summary());
    let got = backend.requests();
    assert_eq!(
        got.iter()
            .map(|r| r.request_line.as_str())
            .collect::<Vec<_>>(),
        vec!["POST / HTTP/1.1", "GET /smuggled HTTP/1.1"]
    );
    assert!(
        got[0]
            .ambiguities()
            .iter()
            .any(|p| p.contains("both Content-Length")),
        "{:?}",
        got[0].ambiguities()
    );
}

/// Pipelined requests (sent before the first answer) are answered in order, or the
/// connection is closed after an answer; never answered out of order, never merged, and a
/// request fulcrum drops never reaches the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_or_dropped() {
    let mut env = Env::start().await;
    let request = b"GET /first HTTP/1.1\r\nHost: app.test\r\n\r\nGET /second HTTP/1.1\r\nHost: app.test\r\n\r\n";
    let ex = env.send(request).await;
    let lines = env.backend.request_lines();
    eprintln!(
        "ATTACK-TABLE | `pipelined_requests_are_answered_in_order_or_dropped` | {} | backend saw {lines:?}",
        ex.summary()
    );
    let statuses = ex.statuses();
    if statuses == [200, 200] {
        assert_eq!(lines, vec!["GET /first HTTP/1.1", "GET /second HTTP/1.1"]);
    } else {
        assert_eq!(statuses, vec![200], "{}", ex.summary());
        assert!(
            ex.closed,
            "a dropped pipelined request must close the connection"
        );
        assert_eq!(lines, vec!["GET /first HTTP/1.1"]);
    }
    assert_still_serving(&mut env, "pipelined requests").await;
}

attack_test!(
    control_chunked_post_is_forwarded,
    bytes("POST /c HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    Expect::Forward(&["POST /c HTTP/1.1"])
);

// ---------------------------------------------------------------------------------------------
// Smuggling: Content-Length and Transfer-Encoding together
// ---------------------------------------------------------------------------------------------

attack_test!(
    smuggle_cl_te,
    cl_te("Transfer-Encoding: chunked\r\n"),
    Expect::Forward(&["POST / HTTP/1.1"])
);

attack_test!(
    smuggle_te_cl,
    // Transfer-Encoding first, and a Content-Length that ends the body inside the chunk data:
    // a proxy framing by Content-Length would forward 4 bytes and read the rest as requests.
    {
        let inner = SMUGGLED.to_string();
        bytes(&format!(
            "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n",
            inner.len()
        ))
    },
    Expect::Forward(&["POST / HTTP/1.1"])
);

attack_test!(
    smuggle_cl_te_with_te_uppercase,
    cl_te("TRANSFER-ENCODING: CHUNKED\r\n"),
    Expect::Forward(&["POST / HTTP/1.1"])
);

/// TE.CL in full: when normalized, the backend must get the chunk data as the body, framed
/// by its real length (the body is read whole ahead of the backend: request buffering),
/// never by the client's `Content-Length: 3`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggle_te_cl_body_is_forwarded_as_one_body() {
    let mut env = Env::start().await;
    let inner = SMUGGLED.to_string();
    let request = format!(
        "POST /te-cl HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n",
        inner.len()
    );
    let ex = env.send(request.as_bytes()).await;
    check(
        "smuggle_te_cl_body_is_forwarded_as_one_body",
        &env,
        request.as_bytes(),
        &ex,
        Expect::Forward(&["POST /te-cl HTTP/1.1"]),
    );
    if let Some(r) = env.backend.requests().first() {
        assert_eq!(r.body_string(), inner, "the chunk data is the whole body");
        let length = inner.len().to_string();
        assert_eq!(r.header("content-length"), Some(length), "{r:?}");
        assert_eq!(r.header("transfer-encoding"), None, "{r:?}");
    }
    assert!(
        ex.closed,
        "a request with both Content-Length and Transfer-Encoding must close the connection (RFC 9112 6.1): {}",
        ex.summary()
    );
    assert_still_serving(&mut env, "TE.CL").await;
}

// ---------------------------------------------------------------------------------------------
// Smuggling: duplicate and malformed Content-Length
// ---------------------------------------------------------------------------------------------

attack_test!(
    smuggle_conflicting_content_lengths,
    with_body(
        &format!(
            "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n",
            SMUGGLED.len()
        ),
        SMUGGLED
    ),
    Expect::Reject(400)
);

attack_test!(
    smuggle_conflicting_content_lengths_reversed,
    with_body(
        &format!(
            "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\nContent-Length: 0\r\n\r\n",
            SMUGGLED.len()
        ),
        SMUGGLED
    ),
    Expect::Reject(400)
);

attack_test!(
    smuggle_content_length_list,
    with_body(
        &format!(
            "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0, {}\r\n\r\n",
            SMUGGLED.len()
        ),
        SMUGGLED
    ),
    Expect::Reject(400)
);

attack_test!(
    content_length_negative,
    bytes("POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: -1\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    content_length_plus_sign,
    bytes("POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: +5\r\n\r\nhello"),
    Expect::Reject(400)
);

attack_test!(
    content_length_hex,
    bytes("POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0x5\r\n\r\nhello"),
    Expect::Reject(400)
);

attack_test!(
    content_length_overflow,
    bytes("POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 18446744073709551621\r\n\r\nhello"),
    Expect::Reject(400)
);

/// Identical duplicates are allowed (RFC 9110 8.6): whatever fulcrum does with them, the
/// body is framed once and nothing else reaches the backend.
async fn identical_content_lengths(name: &str, cl_lines: &str) -> Env {
    let env = Env::start().await;
    let request = format!("POST /dup HTTP/1.1\r\nHost: app.test\r\n{cl_lines}\r\nhello{SMUGGLED}");
    let ex = env.send(request.as_bytes()).await;
    let got = env.backend.requests();
    eprintln!(
        "ATTACK-TABLE | `{name}` | {} | backend saw {:?} with Content-Length {:?}",
        ex.summary(),
        env.backend.request_lines(),
        got.iter()
            .map(|r| r.header_all("content-length"))
            .collect::<Vec<_>>()
    );
    assert!(!ex.timed_out, "{}", ex.summary());
    if ex.statuses() == [400] {
        assert!(env.backend.raw().is_empty());
    } else {
        assert_eq!(ex.statuses()[..1], [200], "{}", ex.summary());
        assert_eq!(got[0].request_line, "POST /dup HTTP/1.1");
        assert_eq!(got[0].body_string(), "hello");
        assert!(
            got.iter().all(|r| !r.request_line.contains("/smuggled")),
            "{:?}",
            env.backend.request_lines()
        );
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_content_lengths_frame_one_body() {
    let mut env = identical_content_lengths(
        "identical_content_lengths_frame_one_body",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
    )
    .await;
    assert_still_serving(&mut env, "identical duplicate Content-Length").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_content_length_list_frames_one_body() {
    let mut env = identical_content_lengths(
        "identical_content_length_list_frames_one_body",
        "Content-Length: 5, 5\r\n",
    )
    .await;
    assert_still_serving(&mut env, "Content-Length: 5, 5").await;
}

/// When fulcrum accepts identical duplicates it must forward one `Content-Length` (RFC 9110
/// 8.6 lets a recipient replace them with a single value); passing the duplicates on makes
/// strict backends (Node.js, for one) reject the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_content_lengths_are_collapsed() {
    for (name, lines) in [
        ("two fields", "Content-Length: 5\r\nContent-Length: 5\r\n"),
        ("list", "Content-Length: 5, 5\r\n"),
    ] {
        let env = identical_content_lengths(name, lines).await;
        for r in env.backend.requests() {
            assert_eq!(
                r.header_all("content-length"),
                vec!["5"],
                "{name}: the backend must get exactly one Content-Length: 5"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Smuggling: obfuscated Transfer-Encoding
// ---------------------------------------------------------------------------------------------

attack_test!(
    smuggle_te_xchunked,
    cl_te("Transfer-Encoding: xchunked\r\n"),
    Expect::Reject(400)
);

attack_test!(
    smuggle_te_xchunked_without_content_length,
    bytes(&format!(
        "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    )),
    Expect::Reject(400)
);

attack_test!(
    smuggle_te_chunked_then_identity,
    cl_te("Transfer-Encoding: chunked, identity\r\n"),
    Expect::Reject(400)
);

attack_test!(
    smuggle_te_two_fields_last_not_chunked,
    cl_te("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"),
    Expect::Reject(400)
);

attack_test!(
    smuggle_te_tab_before_value,
    cl_te("Transfer-Encoding:\tchunked\r\n"),
    Expect::Forward(&["POST / HTTP/1.1"])
);

attack_test!(
    smuggle_te_extra_spaces,
    cl_te("Transfer-Encoding:   chunked   \r\n"),
    Expect::Forward(&["POST / HTTP/1.1"])
);

attack_test!(
    smuggle_te_vertical_tab,
    cl_te("Transfer-Encoding: \x0bchunked\r\n"),
    Expect::Reject(400)
);

attack_test!(
    smuggle_te_space_before_colon,
    cl_te("Transfer-Encoding : chunked\r\n"),
    Expect::Reject(400)
);

attack_test!(
    smuggle_te_tab_before_colon,
    cl_te("Transfer-Encoding\t: chunked\r\n"),
    Expect::Reject(400)
);

attack_test!(
    smuggle_te_obs_fold,
    cl_te("Transfer-Encoding:\r\n chunked\r\n"),
    Expect::Reject(400)
);

attack_test!(
    smuggle_te_leading_space_line,
    cl_te(" Transfer-Encoding: chunked\r\n"),
    Expect::Reject(400)
);

attack_test!(
    smuggle_te_on_http_1_0,
    bytes(&format!(
        "POST / HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    )),
    Expect::Reject(400)
);

// ---------------------------------------------------------------------------------------------
// Smuggling: bare LF and bare CR
// ---------------------------------------------------------------------------------------------

attack_test!(
    bare_lf_request,
    bytes("GET /lf HTTP/1.1\nHost: app.test\n\n"),
    Expect::Forward(&["GET /lf HTTP/1.1"])
);

attack_test!(
    smuggle_te_behind_bare_lf,
    // A parser that only splits on CRLF sees one header `X-Foo: bar\nTransfer-Encoding: ...`.
    cl_te("X-Foo: bar\nTransfer-Encoding: chunked\r\n"),
    Expect::Forward(&["POST / HTTP/1.1"])
);

attack_test!(
    smuggle_te_behind_bare_cr,
    cl_te("X-Foo: bar\rTransfer-Encoding: chunked\r\n"),
    Expect::Reject(400)
);

attack_test!(
    smuggle_bare_lf_chunk_lines,
    bytes(&format!(
        "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n1\nX\n0\n\n{SMUGGLED}"
    )),
    Expect::RejectMidBody(&["POST / HTTP/1.1"])
);

// ---------------------------------------------------------------------------------------------
// Smuggling: invalid chunk sizes
// ---------------------------------------------------------------------------------------------

attack_test!(
    chunk_size_negative,
    bad_chunk("-1"),
    Expect::RejectMidBody(&["POST / HTTP/1.1"])
);

attack_test!(
    chunk_size_hex_overflow,
    // 2^64 + 1: wraps to 1 in a parser that ignores overflow.
    bad_chunk("10000000000000001"),
    Expect::RejectMidBody(&["POST / HTTP/1.1"])
);

attack_test!(
    chunk_size_long_hex_overflow,
    bad_chunk("ffffffffffffffffffffffffffffffff1"),
    Expect::RejectMidBody(&["POST / HTTP/1.1"])
);

attack_test!(
    chunk_size_non_hex,
    bad_chunk("zz"),
    Expect::RejectMidBody(&["POST / HTTP/1.1"])
);

attack_test!(
    chunk_size_0x_prefix,
    bad_chunk("0x1"),
    Expect::RejectMidBody(&["POST / HTTP/1.1"])
);

attack_test!(
    chunk_data_without_crlf,
    // One byte of data, then `XX` where CRLF belongs: a parser that skips two bytes blindly
    // then reads the last chunk and takes the rest for a new request.
    bytes(&format!(
        "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nAXX0\r\n\r\n{SMUGGLED}"
    )),
    Expect::RejectMidBody(&["POST / HTTP/1.1"])
);

// ---------------------------------------------------------------------------------------------
// Request line: methods, targets, versions
// ---------------------------------------------------------------------------------------------

attack_test!(
    invalid_method,
    bytes("G@T / HTTP/1.1\r\nHost: app.test\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    empty_request_target,
    bytes("GET  HTTP/1.1\r\nHost: app.test\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    #[ignore = "Pingora limitation: its HTTP/1 parser percent-encodes a space in the request target before fulcrum sees it (forwarded as %20, never raw)"]
    space_in_request_target,
    bytes("GET /a b HTTP/1.1\r\nHost: app.test\r\n\r\n"),
    Expect::Reject(400)
);

/// Whatever fulcrum does today with a space or control byte in the target, the backend
/// never gets it raw: no request line with more than three parts or with control bytes, and
/// the answer is a 400 or the backend's 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_bytes_in_request_target_never_reach_the_backend_raw() {
    let mut env = Env::start().await;
    for byte in [" ", "\x01", "\x7f", "\0", "\x1b", "\x0b"] {
        env.backend.clear();
        let request =
            format!("GET /a{byte}b HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
        let ex = env.send(request.as_bytes()).await;
        eprintln!(
            "ATTACK-TABLE | `odd_bytes_in_request_target_never_reach_the_backend_raw` {:?} | {} | backend saw {:?}",
            byte,
            ex.summary(),
            env.backend.request_lines()
        );
        assert!(!ex.timed_out, "{byte:?}: {}", ex.summary());
        assert!(
            ex.statuses() == [400] || ex.statuses() == [200],
            "{byte:?}: {}",
            ex.summary()
        );
        for r in env.backend.requests() {
            assert!(
                r.ambiguities().is_empty(),
                "{byte:?}: {:?}: {:?}",
                r.request_line,
                r.ambiguities()
            );
        }
    }
    assert_still_serving(&mut env, "odd bytes in the target").await;
}

attack_test!(
    #[ignore = "Pingora limitation: its HTTP/1 parser percent-encodes control bytes in the request target before fulcrum sees it (forwarded escaped, never raw)"]
    control_byte_in_target,
    bytes("GET /a\x01b HTTP/1.1\r\nHost: app.test\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    #[ignore = "Pingora limitation: its HTTP/1 parser percent-encodes control bytes in the request target before fulcrum sees it (forwarded escaped, never raw)"]
    del_byte_in_target,
    bytes("GET /a\x7fb HTTP/1.1\r\nHost: app.test\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    #[ignore = "Pingora limitation: its HTTP/1 parser percent-encodes control bytes in the request target before fulcrum sees it (forwarded escaped, never raw)"]
    nul_in_target,
    bytes("GET /a\0b HTTP/1.1\r\nHost: app.test\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    absolute_form_with_userinfo,
    bytes("GET http://evil.test@app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    absolute_form_host_differs_from_host_header,
    bytes("GET http://other.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    // Syntactically a valid URI (port = *DIGIT), but no port: the target's host is invalid.
    absolute_form_with_out_of_range_port,
    bytes("GET http://app.test:99999/ HTTP/1.1\r\nHost: app.test:99999\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    absolute_form_with_broken_ipv6,
    bytes("GET http://[::1/ HTTP/1.1\r\nHost: [::1\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    absolute_form_with_empty_host,
    bytes("GET http:///x HTTP/1.1\r\nHost: app.test\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    duplicate_host_headers,
    bytes("GET / HTTP/1.1\r\nHost: app.test\r\nHost: admin.test\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    missing_host_on_http_1_1,
    bytes("GET / HTTP/1.1\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    invalid_host_value,
    bytes("GET / HTTP/1.1\r\nHost: app test\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(http_0_9_request, bytes("GET /\r\n"), Expect::Reject(400));

attack_test!(
    http_0_9_request_with_blank_line,
    bytes("GET /\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    unknown_http_version,
    bytes("GET / HTTP/9.9\r\nHost: app.test\r\n\r\n"),
    Expect::Reject(400)
);

// ---------------------------------------------------------------------------------------------
// Header fields: NUL and other control bytes
// ---------------------------------------------------------------------------------------------

attack_test!(
    nul_in_header_value,
    bytes("GET / HTTP/1.1\r\nHost: app.test\r\nX-Foo: a\0b\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    nul_in_header_name,
    bytes("GET / HTTP/1.1\r\nHost: app.test\r\nX-F\0oo: a\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    header_without_colon,
    bytes("GET / HTTP/1.1\r\nHost: app.test\r\nX-Foo\r\n\r\n"),
    Expect::Reject(400)
);

attack_test!(
    empty_header_name,
    bytes("GET / HTTP/1.1\r\nHost: app.test\r\n: value\r\n\r\n"),
    Expect::Reject(400)
);

// ---------------------------------------------------------------------------------------------
// Garbage bytes
// ---------------------------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// A TLS 1.2/1.3 ClientHello record with SNI `app.test`, as a browser would send to
/// `https://` on the plain listener.
fn tls_client_hello() -> Vec<u8> {
    let sni = b"app.test";
    let mut ext = Vec::new();
    // server_name
    let mut sn = Vec::new();
    sn.extend_from_slice(&((sni.len() + 3) as u16).to_be_bytes());
    sn.push(0);
    sn.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    sn.extend_from_slice(sni);
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&(sn.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sn);
    // supported_versions: TLS 1.3, 1.2
    ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&random_bytes(32, 7)); // random
    body.push(32);
    body.extend_from_slice(&random_bytes(32, 9)); // session id
    body.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f]); // cipher suites
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

attack_test!(
    tls_client_hello_on_plain_listener,
    tls_client_hello(),
    Expect::Reject(400)
);

attack_test!(
    random_binary,
    random_bytes(4096, 0x9e37_79b9_7f4a_7c15),
    Expect::Reject(400)
);

attack_test!(
    random_binary_after_a_request_line,
    {
        let mut b = bytes("GET / HTTP/1.1\r\nHost: app.test\r\n");
        b.extend_from_slice(&random_bytes(2048, 42));
        b.extend_from_slice(b"\r\n\r\n");
        b
    },
    Expect::Reject(400)
);

attack_test!(
    many_empty_lines_before_a_request,
    bytes(&format!(
        "{}GET /after-crlfs HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "\r\n".repeat(2000)
    )),
    Expect::Forward(&["GET /after-crlfs HTTP/1.1"])
);

attack_test!(
    http2_preface_on_http1_listener,
    bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"),
    Expect::Reject(400)
);

attack_test!(
    connect_method_is_refused,
    bytes("CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\nSSH-2.0-x\r\n"),
    Expect::Reject(405)
);

/// Many kinds of garbage, one after another, on one fulcrum: it keeps serving between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_a_row_does_not_wear_fulcrum_down() {
    let mut env = Env::start().await;
    for seed in 1..=20u64 {
        let len = 1 + (seed as usize * 397) % 5000;
        let ex = env.send(&random_bytes(len, seed)).await;
        assert!(!ex.timed_out, "seed {seed}: {}", ex.summary());
        assert!(
            ex.statuses().iter().all(|s| (400..500).contains(s)),
            "seed {seed}: {}",
            ex.summary()
        );
    }
    for _ in 0..3 {
        let ex = env.send(&tls_client_hello()).await;
        assert!(!ex.timed_out, "{}", ex.summary());
    }
    assert_eq!(
        env.backend.request_lines(),
        Vec::<String>::new(),
        "garbage must not reach the backend"
    );
    assert_still_serving(&mut env, "a series of garbage connections").await;
}

// ---------------------------------------------------------------------------------------------
// Oversized headers
// ---------------------------------------------------------------------------------------------

fn one_big_header(kib: usize) -> Vec<u8> {
    bytes(&format!(
        "GET /big HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(kib * 1024)
    ))
}

fn many_headers(n: usize) -> Vec<u8> {
    let mut s = "GET /many HTTP/1.1\r\nHost: app.test\r\n".to_string();
    for i in 0..n {
        s.push_str(&format!("X-H{i}: v{i}\r\n"));
    }
    s.push_str("\r\n");
    bytes(&s)
}

/// Oversized heads get exactly `431 Request Header Fields Too Large`, nothing reaches the
/// backend, and fulcrum keeps serving.
async fn expect_431(name: &str, request: &[u8]) {
    let mut env = Env::start().await;
    let ex = env.send(request).await;
    assert_eq!(
        ex.statuses(),
        vec![431],
        "{name}: expected 431 Request Header Fields Too Large, got {}",
        ex.summary()
    );
    assert!(
        env.backend.raw().is_empty(),
        "{name}: nothing should reach the backend"
    );
    assert_still_serving(&mut env, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_of_100_kib_is_431() {
    expect_431("100 KiB header", &one_big_header(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_headers_is_431() {
    expect_431("500 headers", &many_headers(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_section_of_2_mib_is_431() {
    expect_431("2 MiB header", &one_big_header(2048)).await;
}

/// Oversized heads: exactly a 431 and a close, nothing forwarded, no panic, no hang, and
/// fulcrum keeps serving afterwards.
async fn survives(name: &str, request: &[u8]) -> RawExchange {
    let mut env = Env::start().await;
    let ex = env.send(request).await;
    eprintln!(
        "ATTACK-TABLE | `{name}` | {} | backend saw {:?}",
        ex.summary(),
        env.backend.request_lines()
    );
    assert!(!ex.timed_out, "{name}: {}", ex.summary());
    assert_eq!(ex.statuses(), vec![431], "{name}: {}", ex.summary());
    assert!(
        ex.closed,
        "{name}: the connection must close: {}",
        ex.summary()
    );
    assert_eq!(env.backend.count(), 0, "{name}: nothing is forwarded");
    assert_still_serving(&mut env, name).await;
    ex
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_headers_are_rejected() {
    survives("five_hundred_headers_are_rejected", &many_headers(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_section_of_2_mib_is_rejected() {
    survives("header_section_of_2_mib_is_rejected", &one_big_header(2048)).await;
}

// ---------------------------------------------------------------------------------------------
// Spoofed client addresses
// ---------------------------------------------------------------------------------------------

/// The spoofing headers a client might send, one set per request.
fn spoof_sets() -> Vec<Vec<(String, String)>> {
    let mut sets = Vec::new();
    for i in 0..12u32 {
        let ip = format!("203.0.113.{}", 10 + i * 7);
        sets.push(vec![("X-Forwarded-For".to_string(), ip.clone())]);
        sets.push(vec![
            ("X-Forwarded-For".to_string(), format!("{ip}, 10.0.0.{i}")),
            ("X-Forwarded-For".to_string(), format!("198.51.100.{i}")),
        ]);
        sets.push(vec![("X-Real-IP".to_string(), ip.clone())]);
        sets.push(vec![(
            "Forwarded".to_string(),
            format!("for={ip};proto=https"),
        )]);
        sets.push(vec![("x-FORWARDED-for".to_string(), format!("10.1.2.{i}"))]);
    }
    sets
}

fn head_with(path: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut s = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    bytes(&s)
}

/// ip_hash over four backends; `trusted` goes to `forwarding.trusted_proxies`.
async fn ip_hash_env(trusted: &str) -> (Fulcrum, Vec<RecordingBackend>) {
    let mut bs = Vec::new();
    for name in ["h0", "h1", "h2", "h3"] {
        bs.push(RecordingBackend::start(name).await);
    }
    let port = free_port();
    let backends: String = bs
        .iter()
        .map(|b| format!("      - addr: \"{}\"\n", b.addr()))
        .collect();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    algorithm: ip_hash
    backends:
{backends}routes:
  - upstream: app
forwarding:
  trusted_proxies: [{trusted}]
"#
    );
    (Fulcrum::start(&yaml, port).await, bs)
}

/// The backends that answered each spoofing set.
async fn ip_hash_answers(port: u16) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (i, set) in spoof_sets().iter().enumerate() {
        let ex = raw_exchange(port, &head_with(&format!("/spoof/{i}"), set), IDLE).await;
        let resps = ex.responses();
        assert_eq!(
            resps.iter().map(|r| r.status).collect::<Vec<_>>(),
            vec![200],
            "set {set:?}: {}",
            ex.summary()
        );
        seen.insert(resps[0].body_string());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarding_headers_do_not_move_ip_hash() {
    // 127.0.0.1 is not a trusted proxy: whatever it claims, it is one client.
    let (mut f, _bs) = ip_hash_env("\"10.0.0.0/8\", \"192.168.0.1\"").await;
    let seen = ip_hash_answers(f.port()).await;
    eprintln!("ATTACK-TABLE | `spoofed_forwarding_headers_do_not_move_ip_hash` | all 200 | answered by {seen:?}");
    assert_eq!(
        seen.len(),
        1,
        "an untrusted client moved between backends by spoofing forwarding headers: {seen:?}"
    );
    assert!(f.is_running() && !f.stderr().contains("panicked"));

    // Control: were loopback trusted, the same requests would spread, so the check above
    // can fail.
    let (f2, _bs2) = ip_hash_env("\"127.0.0.0/8\"").await;
    let spread = ip_hash_answers(f2.port()).await;
    assert!(
        spread.len() >= 2,
        "control: trusted X-Forwarded-For values should spread over the backends: {spread:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarding_headers_are_replaced_not_passed_through() {
    let mut env =
        Env::start_with("forwarding:\n  trusted_proxies: [\"10.0.0.0/8\"]\n  forwarded: true\n")
            .await;
    let spoof: Vec<(String, String)> = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-For", "7.7.7.7, 10.0.0.1"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.test"),
        ("Forwarded", "for=6.6.6.6;proto=https;host=evil.test"),
        ("Forwarded", "for=\"[2001:db8::1]\""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let request = head_with("/spoof", &spoof);
    let ex = env.send(&request).await;
    assert_eq!(ex.statuses(), vec![200], "{}", ex.summary());
    let got = env.backend.last_request().expect("forwarded");
    eprintln!(
        "ATTACK-TABLE | `spoofed_forwarding_headers_are_replaced_not_passed_through` | {} | backend saw XFF {:?}, Forwarded {:?}",
        ex.summary(),
        got.header_all("x-forwarded-for"),
        got.header_all("forwarded")
    );
    assert_eq!(
        got.header_all("x-forwarded-for"),
        vec!["127.0.0.1"],
        "{got:?}"
    );
    assert_eq!(got.header_all("x-forwarded-proto"), vec!["http"], "{got:?}");
    assert_eq!(
        got.header_all("x-forwarded-host"),
        vec!["app.test"],
        "{got:?}"
    );
    assert_eq!(
        got.header_all("forwarded"),
        vec!["for=127.0.0.1;host=\"app.test\";proto=http"],
        "{got:?}"
    );
    let raw = String::from_utf8_lossy(&env.backend.raw()).into_owned();
    for forged in ["6.6.6.6", "7.7.7.7", "evil.test", "2001:db8::1"] {
        assert!(
            !raw.contains(forged),
            "forged value {forged} reached the backend:\n{raw}"
        );
    }
    assert_still_serving(&mut env, "spoofed forwarding headers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_x_real_ip_is_not_passed_through() {
    let mut env = Env::start_with("forwarding:\n  trusted_proxies: [\"10.0.0.0/8\"]\n").await;
    let request = head_with(
        "/real-ip",
        &[("X-Real-IP".to_string(), "6.6.6.6".to_string())],
    );
    let ex = env.send(&request).await;
    assert_eq!(ex.statuses(), vec![200], "{}", ex.summary());
    let got = env.backend.last_request().expect("forwarded");
    let real = got.header_all("x-real-ip");
    assert!(
        real.is_empty(),
        "an untrusted client's X-Real-IP must be removed (fulcrum does not send one), backend got {real:?}"
    );
    assert_still_serving(&mut env, "spoofed X-Real-IP").await;
}

/// A client cannot use `Connection` to make fulcrum drop the forwarding headers it sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cannot_nominate_forwarding_headers() {
    let mut env = Env::start_with("forwarding:\n  forwarded: true\n").await;
    let request = bytes(
        "GET /nominate HTTP/1.1\r\nHost: app.test\r\nConnection: close, X-Forwarded-For, Forwarded, X-Forwarded-Host, Via\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
    );
    let ex = env.send(&request).await;
    let statuses = ex.statuses();
    eprintln!(
        "ATTACK-TABLE | `connection_cannot_nominate_forwarding_headers` | {} | backend saw {:?}",
        ex.summary(),
        env.backend.request_lines()
    );
    // Such a `Connection` header is refused as a bad request before anything is forwarded.
    assert_eq!(statuses, [400], "{}", ex.summary());
    assert!(ex.closed, "{}", ex.summary());
    assert!(env.backend.raw().is_empty());
    assert_still_serving(&mut env, "Connection nominating forwarding headers").await;
}

// ---------------------------------------------------------------------------------------------
// Hop-by-hop headers
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded() {
    let mut env = Env::start().await;
    let request = bytes(concat!(
        "GET /hop HTTP/1.1\r\n",
        "Host: app.test\r\n",
        "Connection: keep-alive, X-Hop-A, Upgrade\r\n",
        "Connection:  x-HOP-b ,X-Hop-C\r\n",
        "X-Hop-A: secret-a\r\n",
        "X-Hop-B: secret-b\r\n",
        "X-Hop-C: secret-c\r\n",
        "Keep-Alive: timeout=100, max=5\r\n",
        "TE: trailers, deflate\r\n",
        "Trailer: X-Checksum\r\n",
        "Proxy-Connection: keep-alive\r\n",
        "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n",
        "Upgrade: h2c\r\n",
        "HTTP2-Settings: AAMAAABkAAQAAP__\r\n",
        "X-End-To-End: kept\r\n",
        "\r\n",
    ));
    let ex = env.send(&request).await;
    assert_eq!(ex.statuses(), vec![200], "{}", ex.summary());
    let got = env.backend.last_request().expect("forwarded");
    eprintln!(
        "ATTACK-TABLE | `hop_by_hop_headers_are_not_forwarded` | {} | backend headers {:?}",
        ex.summary(),
        got.headers
    );
    assert_eq!(got.request_line, "GET /hop HTTP/1.1");
    for name in [
        "x-hop-a",
        "x-hop-b",
        "x-hop-c",
        "keep-alive",
        "te",
        "trailer",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
        "http2-settings",
    ] {
        assert_eq!(
            got.header(name),
            None,
            "hop-by-hop header {name} reached the backend: {:?}",
            got.headers
        );
    }
    let connection = got
        .header("connection")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for token in ["x-hop", "upgrade"] {
        assert!(
            !connection.contains(token),
            "Connection forwarded with {token}: {connection:?}"
        );
    }
    assert_eq!(got.header("x-end-to-end").as_deref(), Some("kept"));
    let raw = String::from_utf8_lossy(&env.backend.raw()).to_ascii_lowercase();
    assert!(
        !raw.contains("secret-"),
        "hop-by-hop values reached the backend:\n{raw}"
    );
    assert_still_serving(&mut env, "hop-by-hop headers").await;
}

// ---------------------------------------------------------------------------------------------
// The admin listener
// ---------------------------------------------------------------------------------------------

const ADMIN_TOKEN: &str = "attack-test-token-0123456789abcdef";

/// Admin content that must never come out of the proxy listener.
fn looks_like_admin(body: &str) -> bool {
    body.contains("uptime_seconds")
        || body.contains("fulcrum_requests_total")
        || body.contains("fulcrum_backend")
        || body.contains("try /status")
        || body.contains("bearer token required")
        || body.trim() == "ok"
}

async fn admin_env(routes: &str, token: Option<&str>) -> (Env, u16) {
    let backend = RecordingBackend::start("app").await;
    let (port, admin_port) = (free_port(), free_port());
    let token = token
        .map(|t| format!("  token: \"{t}\"\n"))
        .unwrap_or_default();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin_port}"
{token}upstreams:
  app:
    backends:
      - addr: "{backend}"
routes:
{routes}
"#,
        backend = backend.addr()
    );
    let mut f = Fulcrum::start(&yaml, port).await;
    f.wait_listening(admin_port).await;
    (Env { f, backend }, admin_port)
}

/// Requests to the proxy listener aimed at the admin service, every which way.
fn admin_probes(admin_port: u16) -> Vec<(String, Vec<u8>)> {
    let admin = format!("127.0.0.1:{admin_port}");
    let mut probes = Vec::new();
    for path in ["/status", "/metrics", "/health"] {
        probes.push((
            format!("GET {path} with Host: {admin}"),
            bytes(&format!(
                "GET {path} HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\n\r\n"
            )),
        ));
        probes.push((
            format!("GET http://{admin}{path} (absolute form)"),
            bytes(&format!(
                "GET http://{admin}{path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
            )),
        ));
        probes.push((
            format!("GET {path} with Host: localhost:{admin_port}"),
            bytes(&format!(
                "GET {path} HTTP/1.1\r\nHost: localhost:{admin_port}\r\nConnection: close\r\n\r\n"
            )),
        ));
    }
    probes.push((
        format!("CONNECT {admin}"),
        bytes(&format!(
            "CONNECT {admin} HTTP/1.1\r\nHost: {admin}\r\n\r\nGET /status HTTP/1.1\r\nHost: {admin}\r\n\r\n"
        )),
    ));
    probes
}

/// Sends every probe; none may come back with admin content. Returns (probe, summary,
/// statuses).
async fn probe_admin(env: &Env, admin_port: u16) -> Vec<(String, String, Vec<u16>)> {
    let mut out = Vec::new();
    for (what, request) in admin_probes(admin_port) {
        let ex = env.send(&request).await;
        assert!(!ex.timed_out, "{what}: {}", ex.summary());
        for r in ex.responses() {
            assert!(
                !looks_like_admin(&r.body_string()),
                "{what} through the proxy listener reached the admin service: {:?}",
                r.body_string()
            );
            assert!(
                r.header("www-authenticate").is_none(),
                "{what}: admin's 401 came out of the proxy listener"
            );
        }
        out.push((what, ex.summary(), ex.statuses()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_routes_never_reach_the_admin_listener() {
    let (mut env, admin_port) = admin_env("  - upstream: app\n", None).await;
    // The admin listener itself works, so "not reached" means something.
    let status = get(&client(), &format!("http://127.0.0.1:{admin_port}/status")).await;
    assert_eq!(status.status, 200);
    assert!(looks_like_admin(&status.body), "{status:?}");

    let results = probe_admin(&env, admin_port).await;
    for (what, summary, statuses) in &results {
        eprintln!("ATTACK-TABLE | admin probe via catch-all route: {what} | {summary} |");
        if what.starts_with("GET") {
            assert_eq!(
                statuses,
                &[200],
                "{what} should go to the backend: {summary}"
            );
        } else {
            assert!(
                statuses.iter().all(|s| !(200..300).contains(s)),
                "{what} must not open a tunnel: {summary}"
            );
        }
    }
    // The backend got the GETs (9 of them), nothing else.
    let lines = env.backend.request_lines();
    assert_eq!(lines.len(), 9, "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("GET ")), "{lines:?}");
    assert_still_serving(&mut env, "admin probes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_without_matching_route_answers_404_not_admin() {
    let (mut env, admin_port) = admin_env(
        "  - path: /api\n    upstream: app\n  - path: /after-attack\n    upstream: app\n",
        Some(ADMIN_TOKEN),
    )
    .await;
    let results = probe_admin(&env, admin_port).await;
    for (what, summary, statuses) in &results {
        eprintln!("ATTACK-TABLE | admin probe, no matching route: {what} | {summary} |");
        if what.starts_with("GET") {
            assert_eq!(statuses, &[404], "{what}: {summary}");
        } else {
            assert!(
                statuses.iter().all(|s| !(200..300).contains(s)),
                "{what} must not open a tunnel: {summary}"
            );
        }
    }
    assert_eq!(env.backend.request_lines(), Vec::<String>::new());
    assert_still_serving(&mut env, "admin probes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_requires_its_token() {
    let (mut env, admin_port) = admin_env("  - upstream: app\n", Some(ADMIN_TOKEN)).await;
    let c = client_no_pool();
    let url = |path: &str| format!("http://127.0.0.1:{admin_port}{path}");
    let bad_auth: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("Bearer".to_string()),
        Some("Bearer ".to_string()),
        Some("Bearer wrong".to_string()),
        Some(format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1])),
        Some(format!("Bearer {ADMIN_TOKEN}x")),
        Some(format!("Bearer{ADMIN_TOKEN}")),
        Some(format!("Basic {ADMIN_TOKEN}")),
        Some(ADMIN_TOKEN.to_string()),
    ];
    for path in ["/status", "/metrics", "/health", "/nope"] {
        for auth in &bad_auth {
            let headers: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| vec![("authorization", a)])
                .unwrap_or_default();
            let r = request(&c, "GET", &url(path), None, &headers, None).await;
            assert_eq!(r.status, 401, "{path} with authorization {auth:?}: {r:?}");
            assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
            assert!(
                !r.body.contains("uptime_seconds") && !r.body.contains("fulcrum_"),
                "{path}: 401 leaked admin content: {:?}",
                r.body
            );
        }
    }
    // A NUL byte after the token is refused (by the parser, before the comparison).
    let ex = raw_exchange(
        admin_port,
        format!("GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\0\r\nConnection: close\r\n\r\n").as_bytes(),
        IDLE,
    )
    .await;
    assert!(
        ex.statuses().iter().all(|s| (400..500).contains(s)),
        "NUL in the token: {}",
        ex.summary()
    );

    let good = format!("Bearer {ADMIN_TOKEN}");
    let auth = [("authorization", good.as_str())];
    let r = request(&c, "GET", &url("/status"), None, &auth, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("uptime_seconds"), "{r:?}");
    let r = request(&c, "GET", &url("/metrics"), None, &auth, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = request(&c, "GET", &url("/health"), None, &auth, None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "{r:?}");
    eprintln!("ATTACK-TABLE | `admin_listener_requires_its_token` | 401 + WWW-Authenticate: Bearer without/with a wrong token; 200 with it |");
    assert!(env.f.is_running());
    assert_still_serving(&mut env, "admin token probes").await;
}
