//! Request mirroring (`mirror:` on a route): copies reach the mirror group with the request
//! as the primary got it, only the configured share is copied, large bodies are not, and
//! nothing the mirror does (slow, refusing, failing) changes or delays the client's answer.
//! `fulcrum_mirror_requests_total` counts every copy by result.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// An upstream group named `name` with one backend at `addr`.
fn group(name: &str, addr: &str) -> String {
    format!("  {name}:\n    backends:\n      - addr: \"{addr}\"\n")
}

/// A config with a listener on `port`, the admin listener on `admin`, these groups and these
/// routes (YAML list items).
fn config(port: u16, admin: u16, groups: &[String], routes: &str) -> String {
    format!(
        "listeners:\n  - addr: \"127.0.0.1:{port}\"\nadmin:\n  addr: \"127.0.0.1:{admin}\"\n\
         upstreams:\n{}routes:\n{routes}",
        groups.concat()
    )
}

/// Start fulcrum on `yaml` and wait for its admin listener too.
async fn start(yaml: &str, port: u16, admin: u16) -> Fulcrum {
    let f = Fulcrum::start(yaml, port).await;
    assert!(
        wait_for_port(admin, Duration::from_secs(10)).await,
        "admin listener: {}",
        f.describe()
    );
    f
}

/// The sum of the samples of `name` whose labels include every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lb| l.contains(lb)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `fulcrum_mirror_requests_total` of route `route` with result `result`.
async fn mirrored(c: &reqwest::Client, admin: u16, route: &str, result: &str) -> f64 {
    let text = get(c, &format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .body;
    let (r, res) = (format!("route=\"{route}\""), format!("result=\"{result}\""));
    metric(&text, "fulcrum_mirror_requests_total", &[&r, &res])
}

/// Poll (at most 10 s) until `route`'s copies with `result` reach `n`; the last value read.
async fn wait_mirrored(c: &reqwest::Client, admin: u16, route: &str, result: &str, n: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = mirrored(c, admin, route, result).await;
        if v >= n || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Poll (at most 10 s) until `backend` has recorded `n` requests; the last count.
async fn wait_count(backend: &TestBackend, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend.count() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    backend.count()
}

/// The 99th percentile of `samples`.
fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let i = (samples.len() * 99).div_ceil(100).saturating_sub(1);
    samples[i]
}

/// Fields a copy carries exactly as the primary got them.
const SAME_FIELDS: [&str; 9] = [
    "host",
    "x-client",
    "x-rule",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "content-length",
    "content-type",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_has_the_method_rewritten_target_headers_and_body_the_primary_got() {
    let primary = TestBackend::start("primary").await;
    let shadow = TestBackend::start("shadow").await;
    let (port, admin) = (free_port(), free_port());
    let routes = r#"  - name: mirrored
    path: /api
    upstream: primary
    strip_prefix: true
    rewrite: {regex: "^/v1/(.*)$", to: "/v2/$1"}
    headers: {request: {add: {x-rule: added}}}
    mirror: {upstream: shadow}
"#;
    let groups = [
        group("primary", &primary.addr()),
        group("shadow", &shadow.addr()),
    ];
    let f = start(&config(port, admin, &groups, routes), port, admin).await;
    let c = client();

    let url = f.url("/api/v1/users?x=1&y=two");
    let hdr = [("x-client", "c1"), ("content-type", "text/plain")];
    let get = request(&c, "GET", &url, None, &hdr, None).await;
    assert_eq!((get.status, get.body.as_str()), (200, "primary"));
    assert_eq!(wait_count(&shadow, 1).await, 1);
    let body = b"the body of a post".to_vec();
    let post = request(&c, "POST", &url, None, &hdr, Some(body.clone())).await;
    assert_eq!((post.status, post.body.as_str()), (200, "primary"));
    assert_eq!(wait_count(&shadow, 2).await, 2);

    let (sent, copies) = (primary.requests(), shadow.requests());
    assert_eq!(sent.len(), 2);
    for (p, m) in sent.iter().zip(&copies) {
        assert_eq!(m.method, p.method);
        assert_eq!(m.path, "/v2/users?x=1&y=two");
        assert_eq!(m.path, p.path);
        assert_eq!(m.body, p.body);
        assert_eq!(m.header("x-rule").as_deref(), Some("added"));
        assert_eq!(m.header("x-client").as_deref(), Some("c1"));
        assert!(m.header("x-request-id").is_some());
        for name in SAME_FIELDS {
            assert_eq!(m.header_all(name), p.header_all(name), "{name}");
        }
    }
    assert_eq!(copies[0].method, "GET");
    assert_eq!(copies[1].method, "POST");
    assert_eq!(copies[1].body, body);
    // Counted once the mirror's answer is read, which may be a moment after it recorded.
    assert_eq!(wait_mirrored(&c, admin, "mirrored", "ok", 2.0).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_mirror_bound_is_not_copied_but_still_reaches_the_primary() {
    let primary = TestBackend::start("primary").await;
    let shadow = TestBackend::start("shadow").await;
    let (port, admin) = (free_port(), free_port());
    // `streamed` reads nothing ahead: its chunked body is found too large while it streams.
    let routes = r#"  - name: buffered
    path: /buffered
    upstream: primary
    mirror: {upstream: shadow, max_body_bytes: 1KiB}
  - name: streamed
    path: /streamed
    upstream: primary
    request_buffering: 0
    mirror: {upstream: shadow, max_body_bytes: 1KiB}
"#;
    let groups = [
        group("primary", &primary.addr()),
        group("shadow", &shadow.addr()),
    ];
    let f = start(&config(port, admin, &groups, routes), port, admin).await;
    let c = client();

    // By Content-Length.
    let big = vec![b'a'; 2048];
    let r = request(
        &c,
        "POST",
        &f.url("/buffered"),
        None,
        &[],
        Some(big.clone()),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "primary"));
    assert_eq!(primary.last_request().unwrap().body, big);
    assert_eq!(
        wait_mirrored(&c, admin, "buffered", "too_large", 1.0).await,
        1.0
    );

    // Found while streaming: 3 chunks of 600 bytes, no length declared.
    let piece = "b".repeat(600);
    let chunked = format!(
        "POST /streamed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n258\r\n{piece}\r\n258\r\n{piece}\r\n258\r\n{piece}\r\n0\r\n\r\n"
    );
    let answer = raw_http(port, chunked.as_bytes()).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(primary.last_request().unwrap().body.len(), 1800);
    assert_eq!(
        wait_mirrored(&c, admin, "streamed", "too_large", 1.0).await,
        1.0
    );

    // A body within the bound is copied, on both routes: the only copies the mirror sees.
    let small = b"small".to_vec();
    for path in ["/buffered", "/streamed"] {
        let r = request(&c, "POST", &f.url(path), None, &[], Some(small.clone())).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(wait_count(&shadow, 2).await, 2);
    for copy in shadow.requests() {
        assert_eq!(copy.body, small);
    }
    assert_eq!(wait_mirrored(&c, admin, "buffered", "ok", 1.0).await, 1.0);
    assert_eq!(wait_mirrored(&c, admin, "streamed", "ok", 1.0).await, 1.0);
    assert_eq!(mirrored(&c, admin, "buffered", "too_large").await, 1.0);
    assert_eq!(mirrored(&c, admin, "streamed", "too_large").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_copies_exactly_one_request_in_ten() {
    let primary = TestBackend::start("primary").await;
    let shadow = TestBackend::start("shadow").await;
    let (port, admin) = (free_port(), free_port());
    let routes = r#"  - name: sampled
    path: /
    upstream: primary
    mirror: {upstream: shadow, percent: 10}
"#;
    let groups = [
        group("primary", &primary.addr()),
        group("shadow", &shadow.addr()),
    ];
    let f = start(&config(port, admin, &groups, routes), port, admin).await;
    let c = client();
    for i in 0..200 {
        let r = get(&c, &f.url(&format!("/n/{i}"))).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(primary.count(), 200);
    assert_eq!(wait_mirrored(&c, admin, "sampled", "ok", 20.0).await, 20.0);
    assert_eq!(shadow.count(), 20);
    // Requests 9, 19, 29, ... (counted from 0) are the copied ones.
    let paths: Vec<String> = shadow.requests().into_iter().map(|r| r.path).collect();
    let expected: Vec<String> = (0..20).map(|k| format!("/n/{}", k * 10 + 9)).collect();
    let mut sorted = paths.clone();
    sorted.sort_by_key(|p| p[3..].parse::<u32>().unwrap());
    assert_eq!(sorted, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_mirror_does_not_delay_the_client() {
    let primary = TestBackend::start("primary").await;
    let slow = TestBackend::start_delayed("slow", Duration::from_secs(2)).await;
    let (port, admin) = (free_port(), free_port());
    let routes = r#"  - name: with
    path: /with
    upstream: primary
    mirror: {upstream: slow}
  - name: without
    path: /without
    upstream: primary
"#;
    let groups = [
        group("primary", &primary.addr()),
        group("slow", &slow.addr()),
    ];
    let f = start(&config(port, admin, &groups, routes), port, admin).await;
    let c = client();
    // Warm the connections of both routes first.
    for path in ["/with", "/without"] {
        assert_eq!(get(&c, &f.url(path)).await.status, 200);
    }
    let n = 100;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    // Interleaved, so both routes see the same machine load.
    for _ in 0..n {
        for (path, samples) in [("/with", &mut with), ("/without", &mut without)] {
            let t = Instant::now();
            let r = get(&c, &f.url(path)).await;
            samples.push(t.elapsed());
            assert_eq!((r.status, r.body.as_str()), (200, "primary"));
        }
    }
    let (p_with, p_without) = (p99(with), p99(without));
    // Generous: a loaded 2-core machine has hiccups; a client that waited for the mirror
    // would wait 2 s.
    assert!(
        p_with < p_without * 3 + Duration::from_millis(250),
        "p99 with the slow mirror {p_with:?}, without {p_without:?}"
    );
    // Far below the 2 s each copy takes.
    assert!(p_with < Duration::from_millis(1000), "{p_with:?}");
    // Every copy still got its (slow) answer.
    let copies = n as f64 + 1.0;
    assert_eq!(wait_mirrored(&c, admin, "with", "ok", copies).await, copies);
    assert_eq!(mirrored(&c, admin, "with", "error").await, 0.0);
    assert_eq!(mirrored(&c, admin, "with", "dropped").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_or_failing_mirror_leaves_the_client_answers_unchanged() {
    let primary = TestBackend::start("primary").await;
    let failing = TestBackend::start_with(
        "failing",
        BackendOptions {
            status: 500,
            ..BackendOptions::default()
        },
    )
    .await;
    let closed = format!("127.0.0.1:{}", free_port());
    let (port, admin) = (free_port(), free_port());
    let routes = r#"  - name: refused
    path: /refused
    upstream: primary
    mirror: {upstream: closed}
  - name: failing
    path: /failing
    upstream: primary
    mirror: {upstream: failing}
"#;
    let groups = [
        group("primary", &primary.addr()),
        group("closed", &closed),
        group("failing", &failing.addr()),
    ];
    let f = start(&config(port, admin, &groups, routes), port, admin).await;
    let c = client();
    let n = 20;
    for i in 0..n {
        for path in ["/refused", "/failing"] {
            let body = format!("request {i}").into_bytes();
            let r = request(&c, "POST", &f.url(path), None, &[], Some(body.clone())).await;
            assert_eq!((r.status, r.body.as_str()), (200, "primary"), "{path}");
            assert_eq!(r.header("x-backend").as_deref(), Some("primary"));
            assert_eq!(primary.last_request().unwrap().body, body);
        }
    }
    let n = n as f64;
    assert_eq!(wait_mirrored(&c, admin, "refused", "error", n).await, n);
    assert_eq!(wait_mirrored(&c, admin, "failing", "ok", n).await, n);
    assert_eq!(mirrored(&c, admin, "refused", "ok").await, 0.0);
    assert_eq!(mirrored(&c, admin, "failing", "error").await, 0.0);
    assert_eq!(failing.count(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_reach_http2_mirrors_in_plain_text_and_over_tls() {
    let primary = TestBackend::start("primary").await;
    let h2c = H2Backend::h2c("h2c-mirror");
    let tls = H2Backend::tls("tls-mirror");
    let (port, admin) = (free_port(), free_port());
    let routes = r#"  - name: to-h2c
    path: /h2c
    upstream: primary
    mirror: {upstream: h2c}
  - name: to-tls
    path: /tls
    upstream: primary
    mirror: {upstream: tls}
"#;
    let groups = [
        group("primary", &primary.addr()),
        format!(
            "  h2c:\n    protocol: h2c\n    backends:\n      - addr: \"127.0.0.1:{}\"\n",
            h2c.port()
        ),
        format!(
            "  tls:\n    protocol: h2\n    tls: {{sni: localhost, insecure_skip_verify: true}}\n    \
             backends:\n      - addr: \"127.0.0.1:{}\"\n",
            tls.port()
        ),
    ];
    let f = start(&config(port, admin, &groups, routes), port, admin).await;
    let c = client();
    for path in ["/h2c/a?q=1", "/tls/b"] {
        for _ in 0..3 {
            let r = get(&c, &f.url(path)).await;
            assert_eq!((r.status, r.body.as_str()), (200, "primary"));
        }
    }
    // These backends speak only HTTP/2: an answer (`ok`) means the copy went out as HTTP/2.
    for route in ["to-h2c", "to-tls"] {
        assert_eq!(
            wait_mirrored(&c, admin, route, "ok", 3.0).await,
            3.0,
            "{route}"
        );
        assert_eq!(mirrored(&c, admin, route, "error").await, 0.0, "{route}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_slower_than_its_timeouts_counts_timeout() {
    let primary = TestBackend::start("primary").await;
    let slow = TestBackend::start_delayed("slow", Duration::from_secs(3)).await;
    let (port, admin) = (free_port(), free_port());
    let routes = "  - {name: timed, path: /, upstream: primary, mirror: {upstream: slow}}\n";
    let groups = [
        group("primary", &primary.addr()),
        format!(
            "  slow:\n    timeouts: {{connect: 1s, read: 300ms}}\n    backends:\n      - addr: \"{}\"\n",
            slow.addr()
        ),
    ];
    let f = start(&config(port, admin, &groups, routes), port, admin).await;
    let c = client();
    for _ in 0..3 {
        let r = get(&c, &f.url("/t")).await;
        assert_eq!((r.status, r.body.as_str()), (200, "primary"));
    }
    assert_eq!(wait_mirrored(&c, admin, "timed", "timeout", 3.0).await, 3.0);
    assert_eq!(mirrored(&c, admin, "timed", "ok").await, 0.0);
}

/// Copies still in flight fill the process-wide bound (256); the copies beyond it are not
/// sent. The mirror holds every copy for 60 s, past the 30 s a copy may take at most, so no
/// place is given back while the 300 requests run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_beyond_the_in_flight_bound_are_dropped() {
    let primary = TestBackend::start("primary").await;
    let stuck = TestBackend::start_delayed("stuck", Duration::from_secs(60)).await;
    let (port, admin) = (free_port(), free_port());
    let routes = "  - {name: bounded, path: /, upstream: primary, mirror: {upstream: stuck}}\n";
    let groups = [
        group("primary", &primary.addr()),
        group("stuck", &stuck.addr()),
    ];
    let f = start(&config(port, admin, &groups, routes), port, admin).await;
    let c = client();
    let n = 300;
    for i in 0..n {
        let r = get(&c, &f.url(&format!("/b/{i}"))).await;
        assert_eq!((r.status, r.body.as_str()), (200, "primary"));
    }
    let dropped = (n - 256) as f64;
    assert_eq!(
        wait_mirrored(&c, admin, "bounded", "dropped", dropped).await,
        dropped
    );
    assert_eq!(wait_count(&stuck, 256).await, 256);
}

/// A backend that reads a request's head and body (up to `marker`), then closes without an
/// answer; counts the requests it read.
async fn closing_backend(marker: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(marker.len()).any(|w| w == marker) {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen)
}

/// A request retried on another backend after its body was complete is copied once (the
/// copy went out when the body was complete; the retry sends no second one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_is_copied_once_with_its_body_once() {
    let (closer, closed) = closing_backend(b"payload-end").await;
    let good = TestBackend::start("good").await;
    let shadow = TestBackend::start("shadow").await;
    let (port, admin) = (free_port(), free_port());
    let routes = "  - {name: retried, path: /, upstream: primary, mirror: {upstream: shadow}}\n";
    let groups = [
        format!(
            "  primary:\n    circuit_breaker: {{max_fails: 0}}\n    backends:\n      \
             - addr: \"{closer}\"\n      - addr: \"{}\"\n",
            good.addr()
        ),
        group("shadow", &shadow.addr()),
    ];
    let f = start(&config(port, admin, &groups, routes), port, admin).await;
    let c = client();
    let body = b"the payload-end".to_vec();
    let n = 4;
    for _ in 0..n {
        let r = request(&c, "PUT", &f.url("/r"), None, &[], Some(body.clone())).await;
        assert_eq!((r.status, r.body.as_str()), (200, "good"));
    }
    assert!(closed.load(Ordering::SeqCst) >= 1, "no request was retried");
    assert_eq!(wait_count(&shadow, n).await, n);
    for copy in shadow.requests() {
        assert_eq!(copy.method, "PUT");
        assert_eq!(copy.body, body);
    }
    let n = n as f64;
    assert_eq!(wait_mirrored(&c, admin, "retried", "ok", n).await, n);
}

/// A streamed body whose first backend breaks mid-body: the retry sends Pingora's buffered
/// part again and streams the rest; the copy has each byte once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_retried_mid_stream_is_copied_once() {
    let (closer, closed) = closing_backend(b"first-part").await;
    let good = TestBackend::start("good").await;
    let shadow = TestBackend::start("shadow").await;
    let (port, admin) = (free_port(), free_port());
    let routes = "  - {name: midway, path: /, upstream: primary, request_buffering: 0, \
                  mirror: {upstream: shadow}}\n";
    let groups = [
        format!(
            "  primary:\n    algorithm: first\n    circuit_breaker: {{max_fails: 0}}\n    \
             backends:\n      - addr: \"{closer}\"\n      - addr: \"{}\"\n",
            good.addr()
        ),
        group("shadow", &shadow.addr()),
    ];
    let f = start(&config(port, admin, &groups, routes), port, admin).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", f.port()))
        .await
        .expect("connect");
    use tokio::io::AsyncWriteExt;
    let head = "PUT /m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                Transfer-Encoding: chunked\r\n\r\na\r\nfirst-part\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    // The first backend reads the first part and closes; wait until it has.
    let deadline = Instant::now() + Duration::from_secs(10);
    while closed.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(closed.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(b"b\r\nsecond-part\r\n0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert!(answer.ends_with("good"), "{answer}");
    assert_eq!(
        good.last_request().unwrap().body_string(),
        "first-partsecond-part"
    );
    assert_eq!(wait_count(&shadow, 1).await, 1);
    assert_eq!(shadow.requests()[0].body_string(), "first-partsecond-part");
}
