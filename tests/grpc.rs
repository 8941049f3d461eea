//! HTTP/2 and gRPC to backends: `protocol: h2c | h2 | auto` reaching HTTP/2-only backends,
//! gRPC's four call kinds through fulcrum with their trailers (h2c on both sides, and TLS with
//! ALPN h2 on both sides), a backend dying mid-stream, a backend's graceful GOAWAY draining
//! its connection, the gRPC statuses fulcrum answers when it fails a call itself, and
//! `timeouts.stream_idle` for streams.
//!
//! The gRPC peers are real: `tests/support/grpc_peer.py` (Python grpcio, installed by
//! `.ci/install-deps`) as server and client. Everything runs on 127.0.0.1.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/grpc_peer.py");

/// How long any one step may take before the test gives up (never reached when it works).
const STEP: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// gRPC peers
// ---------------------------------------------------------------------------------------------

/// A Python gRPC server (`grpc_peer.py server`); killed when dropped.
struct GrpcServer {
    child: Child,
    port: u16,
}

impl GrpcServer {
    /// A plaintext (h2c) server answering as `name`.
    async fn h2c(name: &str) -> GrpcServer {
        GrpcServer::spawn(&[name]).await
    }

    /// A TLS server (ALPN h2) answering as `name` with `cert`.
    async fn tls(name: &str, cert: &Cert) -> GrpcServer {
        let (c, k) = (
            cert.cert.display().to_string(),
            cert.key.display().to_string(),
        );
        GrpcServer::spawn(&[name, &c, &k]).await
    }

    async fn spawn(args: &[&str]) -> GrpcServer {
        let mut child = Command::new("python3")
            .arg(PEER)
            .arg("server")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 grpc_peer.py server (is grpcio installed? see .ci/install-deps)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(STEP, lines.next_line())
            .await
            .expect("gRPC server starts")
            .expect("read gRPC server output")
            .expect("gRPC server prints its port");
        let port = line
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("gRPC server said {line:?}"));
        GrpcServer { child, port }
    }

    /// Kill the server process at once (no graceful shutdown).
    async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// What a gRPC client saw of one call.
#[derive(Debug)]
struct Outcome {
    /// Response messages, in order.
    messages: Vec<String>,
    /// The status code name (`OK`, `UNAVAILABLE`, ...).
    code: String,
    /// The status message.
    details: String,
    /// Trailing metadata.
    trailing: BTreeMap<String, String>,
}

/// A gRPC client call (`grpc_peer.py client`) running in the background.
struct Call {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    messages: Vec<String>,
}

impl Call {
    /// Start a call of `kind` (`unary`, `server`, `client`, `bidi`) to `target` with
    /// `requests` (which may include `--method /pkg.Service/Method`); over TLS trusting `ca`
    /// when given.
    fn start(target: &str, kind: &str, requests: &[&str], ca: Option<&Path>) -> Call {
        let mut cmd = Command::new("python3");
        cmd.arg(PEER).args(["client", target, kind]).args(requests);
        if let Some(ca) = ca {
            cmd.arg("--ca").arg(ca);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 grpc_peer.py client");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Call {
            _child: child,
            lines,
            messages: Vec::new(),
        }
    }

    /// The next response message; panics if the call ends first.
    async fn next_message(&mut self) -> String {
        let line = self.line().await;
        let msg = line
            .strip_prefix("msg ")
            .unwrap_or_else(|| panic!("expected a message, got {line:?}"))
            .to_string();
        self.messages.push(msg.clone());
        msg
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(STEP, self.lines.next_line())
            .await
            .expect("the gRPC client neither answered nor ended")
            .expect("read the gRPC client's output")
            .expect("the gRPC client ended without a result")
    }

    /// Wait for the call to end.
    async fn finish(mut self) -> Outcome {
        loop {
            let line = self.line().await;
            if let Some(msg) = line.strip_prefix("msg ") {
                self.messages.push(msg.to_string());
                continue;
            }
            let json = line
                .strip_prefix("end ")
                .unwrap_or_else(|| panic!("unexpected client output {line:?}"));
            let v: serde_json::Value = serde_json::from_str(json).expect("client JSON");
            let trailing = v["trailing"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            return Outcome {
                messages: self.messages,
                code: v["code"].as_str().unwrap().to_string(),
                details: v["details"].as_str().unwrap().to_string(),
                trailing,
            };
        }
    }
}

/// One whole call.
async fn call(target: &str, kind: &str, requests: &[&str], ca: Option<&Path>) -> Outcome {
    Call::start(target, kind, requests, ca).finish().await
}

// ---------------------------------------------------------------------------------------------
// Certificates and fulcrum
// ---------------------------------------------------------------------------------------------

/// A self-signed certificate for `localhost`, as PEM files.
struct Cert {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Cert {
    fn localhost() -> Cert {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert = write_file(dir.path(), "cert.pem", &c.cert.pem());
        let key = write_file(dir.path(), "key.pem", &c.key_pair.serialize_pem());
        Cert {
            _dir: dir,
            cert,
            key,
        }
    }
}

/// A fulcrum whose listener is h2c (or TLS with `cert`) and whose `upstreams:` and `routes:`
/// sections are `rest`.
async fn fulcrum(port: u16, cert: Option<&Cert>, rest: &str) -> Fulcrum {
    let listener = match cert {
        None => format!("  - addr: \"127.0.0.1:{port}\"\n    h2c: true\n"),
        Some(c) => format!(
            "  - addr: \"127.0.0.1:{port}\"\n    tls:\n      certificates:\n        - cert: \"{}\"\n          key: \"{}\"\n",
            c.cert.display(),
            c.key.display()
        ),
    };
    Fulcrum::start(&format!("listeners:\n{listener}{rest}"), port).await
}

/// One upstream `api` (with `fields`, YAML flow-map entries) on `backend`, one route to it.
fn one_group(backend: u16, fields: &str) -> String {
    format!(
        "upstreams:\n  api: {{backends: [{{addr: \"127.0.0.1:{backend}\"}}], {fields}}}\nroutes:\n  - upstream: api\n"
    )
}

// ---------------------------------------------------------------------------------------------
// protocol: h2c | h2 | auto with HTTP
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn h2c_reaches_an_h2_only_backend_that_h1_cannot() {
    let backend = H2Backend::h2c("h2only");
    let bp = backend.port();
    let port = free_port();
    let rest = format!(
        "upstreams:\n  h2c: {{backends: [{{addr: \"127.0.0.1:{bp}\"}}], protocol: h2c, circuit_breaker: {{max_fails: 0}}}}\n  h1: {{backends: [{{addr: \"127.0.0.1:{bp}\"}}], circuit_breaker: {{max_fails: 0}}}}\nroutes:\n  - {{path: /h2c, upstream: h2c}}\n  - {{path: /h1, upstream: h1}}\n"
    );
    let f = fulcrum(port, None, &rest).await;
    let c = client();
    let r = get(&c, &f.url("/h2c/a")).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "h2only GET /h2c/a HTTP/2.0 te=-\n")
    );
    let r = get(&c, &f.url("/h1/a")).await;
    assert_eq!(r.status, 502, "{}", r.body);
}

#[tokio::test]
async fn h2_and_auto_negotiate_h2_over_tls_with_alpn() {
    let backend = H2Backend::tls("tls-h2");
    let bp = backend.port();
    let port = free_port();
    let group = |protocol: &str| {
        format!("{{backends: [{{addr: \"127.0.0.1:{bp}\"}}], protocol: {protocol}, tls: {{sni: localhost, insecure_skip_verify: true}}}}")
    };
    let rest = format!(
        "upstreams:\n  h2: {}\n  auto: {}\nroutes:\n  - {{path: /h2, upstream: h2}}\n  - {{path: /auto, upstream: auto}}\n",
        group("h2"),
        group("auto")
    );
    let f = fulcrum(port, None, &rest).await;
    let c = client();
    for path in ["/h2/x", "/auto/x"] {
        let r = get(&c, &f.url(path)).await;
        let want = format!("tls-h2 GET {path} HTTP/2.0 te=-\n");
        assert_eq!((r.status, r.body.as_str()), (200, want.as_str()), "{path}");
    }
}

#[tokio::test]
async fn te_trailers_from_an_h2_client_reaches_an_h2_backend() {
    let backend = H2Backend::h2c("te");
    let port = free_port();
    let f = fulcrum(port, None, &one_group(backend.port(), "protocol: h2c")).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap();
    let r = h2
        .get(f.url("/t"))
        .header("te", "trailers")
        .send()
        .await
        .expect("h2c request through fulcrum");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().await.unwrap(), "te GET /t HTTP/2.0 te=trailers\n");
    // An HTTP/1.1 client's TE is hop-by-hop: Pingora drops it on the way to an HTTP/2
    // backend, whatever it says (HTTP/2 allows only `trailers`).
    let req = "GET /t HTTP/1.1\r\nHost: x\r\nTE: gzip, trailers\r\nConnection: close, TE\r\n\r\n";
    let resp = raw_http(f.port(), req.as_bytes()).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(resp.contains("HTTP/2.0 te=-\n"), "{resp}");
}

#[tokio::test]
async fn http_health_checks_of_an_h2c_group_speak_http2() {
    // The backend is down at first (its checks fail), then an HTTP/2-only server comes up
    // on its port: only a check that speaks HTTP/2 with prior knowledge can pass.
    let bp = free_port();
    let port = free_port();
    let fields = "protocol: h2c, health_check: {type: http, path: /health, expect_body: 'GET /health HTTP/2.0', interval: 100ms, timeout: 1s, rise: 1, fall: 1}";
    let f = fulcrum(port, None, &one_group(bp, fields)).await;
    let backend = format!("backend 127.0.0.1:{bp}");
    wait_for_log_line(&f, &["upstream api:", &backend, "is unhealthy"]).await;
    let _up = H2Backend::h2c_on(bp, "late").await;
    wait_for_log_line(
        &f,
        &[
            "upstream api:",
            &backend,
            "is healthy (health check passed)",
        ],
    )
    .await;
    let r = get(&client(), &f.url("/x")).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "late GET /x HTTP/2.0 te=-\n")
    );
}

#[tokio::test]
async fn a_post_refused_unprocessed_by_an_h2_backend_goes_to_another() {
    let refusing = H2Backend::refusing();
    let good = H2Backend::h2c("good");
    let (rp, gp) = (refusing.port(), good.port());
    let port = free_port();
    let rest = format!(
        "upstreams:\n  api: {{backends: [{{addr: \"127.0.0.1:{rp}\"}}, {{addr: \"127.0.0.1:{gp}\"}}], protocol: h2c, max_tries: 2}}\nroutes:\n  - upstream: api\n"
    );
    let f = fulcrum(port, None, &rest).await;
    let c = client();
    // Round robin sends every other request to the refusing backend first.
    for i in 0..4 {
        let r = c
            .post(f.url("/p"))
            .body("payload")
            .send()
            .await
            .expect("POST through fulcrum");
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, "good POST /p HTTP/2.0 te=-\n"),
            "request {i}"
        );
    }
}

#[tokio::test]
async fn a_goaway_from_an_h2_backend_drains_its_connection_without_failing_streams() {
    let backend = DrainingH2Backend::h2c("drain");
    let port = free_port();
    // One try: a failed stream would show as an error, not be hidden by a retry.
    let fields = "protocol: h2c, max_tries: 1";
    let f = fulcrum(port, None, &one_group(backend.port(), fields)).await;
    let c = client();
    let r = get(&c, &f.url("/warm")).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "drain conn=1 GET /warm\n")
    );

    // The slow request reuses connection 1; the backend answers it with GOAWAY and holds it.
    let slow = {
        let (c, url) = (c.clone(), f.url(SLOW_PATH));
        tokio::spawn(async move { get(&c, &url).await })
    };
    backend.wait_goaway_seen(STEP).await;

    // fulcrum has read the GOAWAY: new requests go to a new connection and succeed while
    // the slow one is still in flight on the old one.
    for path in ["/after-1", "/after-2"] {
        let r = get(&c, &f.url(path)).await;
        let want = format!("drain conn=2 GET {path}\n");
        assert_eq!((r.status, r.body.as_str()), (200, want.as_str()), "{path}");
    }
    assert!(
        !slow.is_finished(),
        "the slow request is held by the backend"
    );

    // The in-flight stream completes, whole, on the connection that sent GOAWAY; then that
    // connection closes.
    backend.release_slow();
    let r = tokio::time::timeout(STEP, slow)
        .await
        .expect("the slow request completes")
        .expect("the slow request's task");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, DrainingH2Backend::slow_body("drain", 1));
    backend.wait_closed(1, STEP).await;

    let r = get(&c, &f.url("/after-3")).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "drain conn=2 GET /after-3\n")
    );
    assert_eq!(backend.connections(), 2);
    // Nothing failed on fulcrum's side either: no error in its log.
    let log = f.stderr();
    assert!(!log.contains(" ERROR "), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_a_few_h2_connections_to_a_backend() {
    let backend = DrainingH2Backend::h2c("shared");
    let port = free_port();
    let f = fulcrum(port, None, &one_group(backend.port(), "protocol: h2c")).await;
    let c = client();
    let r = get(&c, &f.url("/warm")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // 64 requests at once, over as many client connections to fulcrum: over HTTP/1.1 to the
    // backend they would need up to 64 connections; over HTTP/2 they share streams of the
    // pooled one (a request that finds it between two owners may open another).
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let (c, url) = (c.clone(), f.url(&format!("/c-{i}")));
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    for call in calls {
        let r = call.await.expect("the request's task");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let opened = backend.connections();
    assert!(
        opened <= 4,
        "64 concurrent requests opened {opened} HTTP/2 connections"
    );
}

// ---------------------------------------------------------------------------------------------
// gRPC through fulcrum
// ---------------------------------------------------------------------------------------------

/// The four call kinds to `target` (fulcrum in front of the backend named `b1`), with their
/// messages, statuses and trailing metadata.
async fn check_four_kinds(target: &str, ca: Option<&Path>) {
    let o = call(target, "unary", &["hi"], ca).await;
    assert_eq!(
        (o.code.as_str(), o.messages.as_slice()),
        ("OK", &["b1:hi".to_string()][..])
    );
    assert_eq!(
        o.trailing.get("x-served-by").map(String::as_str),
        Some("b1"),
        "{o:?}"
    );

    let o = call(target, "unary", &["fail"], ca).await;
    assert_eq!(
        (o.code.as_str(), o.details.as_str()),
        ("NOT_FOUND", "no such thing"),
        "{o:?}"
    );
    assert_eq!(
        o.trailing.get("x-served-by").map(String::as_str),
        Some("b1"),
        "{o:?}"
    );

    let o = call(target, "server", &["3,0"], ca).await;
    assert_eq!(o.code, "OK", "{o:?}");
    assert_eq!(o.messages, ["b1:0", "b1:1", "b1:2"]);
    assert_eq!(
        o.trailing.get("x-served-by").map(String::as_str),
        Some("b1"),
        "{o:?}"
    );

    let o = call(target, "client", &["a", "b", "c"], ca).await;
    assert_eq!(
        (o.code.as_str(), o.messages.as_slice()),
        ("OK", &["b1:a+b+c".to_string()][..])
    );

    let o = call(target, "bidi", &["x", "y", "z"], ca).await;
    assert_eq!(o.code, "OK", "{o:?}");
    assert_eq!(o.messages, ["b1:x", "b1:y", "b1:z"]);
}

#[tokio::test]
async fn grpc_calls_of_every_kind_pass_through_h2c() {
    let backend = GrpcServer::h2c("b1").await;
    let port = free_port();
    let _f = fulcrum(port, None, &one_group(backend.port, "protocol: h2c")).await;
    check_four_kinds(&format!("127.0.0.1:{port}"), None).await;
}

#[tokio::test]
async fn grpc_calls_of_every_kind_pass_through_tls_with_alpn_h2() {
    let (front, back) = (Cert::localhost(), Cert::localhost());
    let backend = GrpcServer::tls("b1", &back).await;
    let port = free_port();
    let fields = format!(
        "protocol: h2, tls: {{sni: localhost, ca_file: \"{}\"}}",
        back.cert.display()
    );
    let _f = fulcrum(port, Some(&front), &one_group(backend.port, &fields)).await;
    check_four_kinds(&format!("127.0.0.1:{port}"), Some(&front.cert)).await;
}

#[tokio::test]
async fn a_backend_killed_mid_stream_fails_the_call() {
    let mut backend = GrpcServer::h2c("b1").await;
    let port = free_port();
    let _f = fulcrum(port, None, &one_group(backend.port, "protocol: h2c")).await;
    let mut c = Call::start(&format!("127.0.0.1:{port}"), "server", &["hang"], None);
    assert_eq!(c.next_message().await, "b1:0");
    backend.kill().await;
    let o = c.finish().await;
    assert_eq!(o.code, "INTERNAL", "{o:?}");
}

// ---------------------------------------------------------------------------------------------
// Calls fulcrum fails itself: a gRPC status, not an HTTP error page
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_backend_that_refuses_connections_is_unavailable() {
    let port = free_port();
    let _f = fulcrum(port, None, &one_group(free_port(), "protocol: h2c")).await;
    let o = call(&format!("127.0.0.1:{port}"), "unary", &["hi"], None).await;
    assert_eq!(o.code, "UNAVAILABLE", "{o:?}");
    assert!(o.details.starts_with("502 Bad Gateway"), "{o:?}");
}

#[tokio::test]
async fn an_http1_request_claiming_grpc_gets_a_plain_502_not_a_200() {
    // gRPC runs only on HTTP/2: an HTTP/1.1 client that sends the gRPC content type must not
    // be told "200" about a failure (a monitor would count it a success).
    let port = free_port();
    let f = fulcrum(port, None, &one_group(free_port(), "protocol: h2c")).await;
    let headers = [("content-type", "application/grpc")];
    let url = f.url("/pkg.Svc/Call");
    let r = request(&client(), "POST", &url, None, &headers, Some(vec![0; 5])).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.starts_with("502 Bad Gateway"), "{}", r.body);
}

#[tokio::test]
async fn a_backend_slower_than_stream_idle_is_deadline_exceeded() {
    let backend = GrpcServer::h2c("b1").await;
    let port = free_port();
    let fields = "protocol: h2c, timeouts: {stream_idle: 200ms}, max_tries: 1";
    let _f = fulcrum(port, None, &one_group(backend.port, fields)).await;
    let o = call(&format!("127.0.0.1:{port}"), "unary", &["sleep:3000"], None).await;
    assert_eq!(o.code, "DEADLINE_EXCEEDED", "{o:?}");
    assert!(o.details.starts_with("504 Gateway Timeout"), "{o:?}");
}

#[tokio::test]
async fn rate_and_size_limits_are_resource_exhausted() {
    let backend = GrpcServer::h2c("b1").await;
    let bp = backend.port;
    let port = free_port();
    let rest = format!(
        "upstreams:\n  api: {{backends: [{{addr: \"127.0.0.1:{bp}\"}}], protocol: h2c}}\nroutes:\n  - {{path: /fulcrum.test.Echo/Unary, upstream: api, rate_limit: {{requests_per_second: 0.01, burst: 1}}}}\n  - {{path: /fulcrum.test.Echo/ClientStream, upstream: api, max_body_bytes: 64}}\n"
    );
    let _f = fulcrum(port, None, &rest).await;
    let target = format!("127.0.0.1:{port}");
    let o = call(&target, "unary", &["one"], None).await;
    assert_eq!(o.code, "OK", "{o:?}");
    let o = call(&target, "unary", &["two"], None).await;
    assert_eq!(o.code, "RESOURCE_EXHAUSTED", "{o:?}");
    assert!(o.details.starts_with("429"), "{o:?}");

    let big = "x".repeat(100);
    let o = call(&target, "client", &[&big], None).await;
    assert_eq!(o.code, "RESOURCE_EXHAUSTED", "{o:?}");
    assert!(o.details.starts_with("413"), "{o:?}");
}

#[tokio::test]
async fn every_backend_busy_is_unavailable_and_no_route_is_unimplemented() {
    let backend = GrpcServer::h2c("b1").await;
    let bp = backend.port;
    let port = free_port();
    let rest = format!(
        "upstreams:\n  api: {{backends: [{{addr: \"127.0.0.1:{bp}\"}}], protocol: h2c, max_connections: 1, queue: {{size: 0}}}}\nroutes:\n  - {{path: /fulcrum.test.Echo, upstream: api}}\n"
    );
    let _f = fulcrum(port, None, &rest).await;
    let target = format!("127.0.0.1:{port}");
    let mut holder = Call::start(&target, "server", &["hang"], None);
    assert_eq!(holder.next_message().await, "b1:0");
    let o = call(&target, "unary", &["hi"], None).await;
    assert_eq!(o.code, "UNAVAILABLE", "{o:?}");
    assert!(o.details.starts_with("503 Service Unavailable"), "{o:?}");

    let o = call(
        &target,
        "unary",
        &["--method", "/other.Service/Call", "hi"],
        None,
    )
    .await;
    assert_eq!(o.code, "UNIMPLEMENTED", "{o:?}");
    assert!(o.details.starts_with("404 Not Found"), "{o:?}");
}

// ---------------------------------------------------------------------------------------------
// Streams and timeouts
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stream_gaps_longer_than_read_but_within_stream_idle_complete() {
    let backend = GrpcServer::h2c("b1").await;
    let port = free_port();
    let fields = "protocol: h2c, timeouts: {read: 200ms, stream_idle: 20s}";
    let _f = fulcrum(port, None, &one_group(backend.port, fields)).await;
    // Each gap (and the wait for the first message's head) is 4 times `read`.
    let o = call(&format!("127.0.0.1:{port}"), "server", &["3,800"], None).await;
    assert_eq!(o.code, "OK", "{o:?}");
    assert_eq!(o.messages, ["b1:0", "b1:1", "b1:2"]);
    let o = call(&format!("127.0.0.1:{port}"), "unary", &["sleep:800"], None).await;
    assert_eq!(
        (o.code.as_str(), o.messages.as_slice()),
        ("OK", &["b1:sleep:800".to_string()][..])
    );
}

#[tokio::test]
async fn client_stream_gaps_longer_than_body_timeout_but_within_stream_idle_complete() {
    let backend = GrpcServer::h2c("b1").await;
    let port = free_port();
    let rest = format!(
        "limits: {{body_timeout: 200ms}}\n{}",
        one_group(
            backend.port,
            "protocol: h2c, timeouts: {read: 200ms, stream_idle: 20s}"
        )
    );
    let _f = fulcrum(port, None, &rest).await;
    let target = format!("127.0.0.1:{port}");
    let o = call(
        &target,
        "client",
        &["a", "pause:800", "b", "pause:800", "c"],
        None,
    )
    .await;
    assert_eq!(
        (o.code.as_str(), o.messages.as_slice()),
        ("OK", &["b1:a+b+c".to_string()][..])
    );
    let o = call(&target, "bidi", &["x", "pause:800", "y"], None).await;
    assert_eq!(o.code, "OK", "{o:?}");
    assert_eq!(o.messages, ["b1:x", "b1:y"]);
}

// ---------------------------------------------------------------------------------------------
// Access log
// ---------------------------------------------------------------------------------------------

/// Wait (at most 10 s, polling) until fulcrum's log has a line containing every one of
/// `parts`; panics with the log otherwise.
async fn wait_for_log_line(f: &Fulcrum, parts: &[&str]) {
    for _ in 0..500 {
        let log = f.stderr();
        if log.lines().any(|l| parts.iter().all(|p| l.contains(p))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no log line with {parts:?} in:\n{}", f.stderr());
}

#[tokio::test]
async fn the_access_log_carries_the_grpc_status_next_to_the_http_one() {
    let backend = GrpcServer::h2c("b1").await;
    let port = free_port();
    let f = fulcrum(port, None, &one_group(backend.port, "protocol: h2c")).await;
    let target = format!("127.0.0.1:{port}");
    // From the trailers: OK, then NOT_FOUND.
    assert_eq!(call(&target, "unary", &["hi"], None).await.code, "OK");
    wait_for_log_line(
        &f,
        &["\"POST /fulcrum.test.Echo/Unary HTTP/2\" 200 grpc_status=0 "],
    )
    .await;
    assert_eq!(
        call(&target, "unary", &["fail"], None).await.code,
        "NOT_FOUND"
    );
    wait_for_log_line(
        &f,
        &["\"POST /fulcrum.test.Echo/Unary HTTP/2\" 200 grpc_status=5 "],
    )
    .await;
    // From a trailers-only head: the backend knows no such method.
    let o = call(
        &target,
        "unary",
        &["--method", "/other.Service/Call", "x"],
        None,
    )
    .await;
    assert_eq!(o.code, "UNIMPLEMENTED");
    wait_for_log_line(
        &f,
        &["\"POST /other.Service/Call HTTP/2\" 200 grpc_status=12 "],
    )
    .await;
}
