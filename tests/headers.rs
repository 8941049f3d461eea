//! Forwarding headers (X-Forwarded-*, Forwarded, Via, served-by) and per-route header rules.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use support::*;

fn config(port: u16, backend: &TestBackend, forwarding: &str) -> String {
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    backends:
      - addr: "{addr}"
routes:
  - upstream: app
{forwarding}
"#,
        addr = backend.addr()
    )
}

/// Parses an RFC 7239 `Forwarded` value into elements of (lowercase name, unquoted value)
/// pairs, so `host=app.test` and `host="app.test"` (both valid) compare equal.
fn forwarded(value: Option<String>) -> Vec<Vec<(String, String)>> {
    let value = value.expect("Forwarded header present");
    value
        .split(',')
        .map(|element| {
            element
                .split(';')
                .filter(|pair| !pair.trim().is_empty())
                .map(|pair| {
                    let (k, v) = pair.trim().split_once('=').unwrap_or((pair.trim(), ""));
                    let v = v.trim();
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(v)
                        .replace("\\\"", "\"");
                    (k.trim().to_ascii_lowercase(), v)
                })
                .collect()
        })
        .collect()
}

/// Builds the expected parse of a `Forwarded` value from `a=b;c=d, e=f` text (unquoted).
fn fwd(expected: &str) -> Vec<Vec<(String, String)>> {
    forwarded(Some(expected.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_without_forwarding_section() {
    let app = TestBackend::start("app").await;
    let port = free_port();
    let f = Fulcrum::start(&config(port, &app, ""), port).await;
    let c = client();

    // The client claims to be forwarding for someone; 127.0.0.1 is not trusted by default.
    let r = get_with(
        &c,
        &f.url("/"),
        Some("app.test"),
        &[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "spoofed.test"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let got = app.last_request().unwrap();
    assert_eq!(got.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(got.header("x-forwarded-host").as_deref(), Some("app.test"));
    assert_eq!(got.header("forwarded"), None, "Forwarded is off by default");
    assert_eq!(got.header("via").as_deref(), Some("1.1 fulcrum"));

    assert_eq!(r.header("via").as_deref(), Some("1.1 fulcrum"));
    assert_eq!(
        r.header("x-served-by"),
        None,
        "served-by header is off by default"
    );
    assert_eq!(r.header("x-backend").as_deref(), Some("app"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peer_headers_are_replaced() {
    let app = TestBackend::start("app").await;
    let port = free_port();
    let forwarding = r#"
forwarding:
  trusted_proxies: ["10.0.0.0/8", "192.168.1.1"]
  forwarded: true
"#;
    let f = Fulcrum::start(&config(port, &app, forwarding), port).await;
    let c = client();

    // Without any incoming forwarding headers.
    let r = get_host(&c, &f.url("/x"), "app.test").await;
    assert_eq!(r.status, 200);
    let got = app.last_request().unwrap();
    assert_eq!(got.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(got.header("x-forwarded-host").as_deref(), Some("app.test"));
    assert_eq!(
        forwarded(got.header("forwarded")),
        fwd("for=127.0.0.1;host=app.test;proto=http")
    );

    // With spoofed incoming ones: all replaced.
    let r = get_with(
        &c,
        &f.url("/x"),
        Some("app.test"),
        &[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "spoofed.test"),
            ("forwarded", "for=1.2.3.4;proto=https"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let got = app.last_request().unwrap();
    assert_eq!(got.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(got.header("x-forwarded-host").as_deref(), Some("app.test"));
    assert_eq!(
        forwarded(got.header("forwarded")),
        fwd("for=127.0.0.1;host=app.test;proto=http")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_peer_headers_are_kept_and_appended() {
    let app = TestBackend::start("app").await;
    let port = free_port();
    let forwarding = r#"
forwarding:
  trusted_proxies: ["127.0.0.0/8"]
  forwarded: true
"#;
    let f = Fulcrum::start(&config(port, &app, forwarding), port).await;
    let c = client();

    let r = get_with(
        &c,
        &f.url("/x"),
        Some("app.test"),
        &[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "orig.test"),
            ("forwarded", "for=1.2.3.4;proto=https"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let got = app.last_request().unwrap();
    assert_eq!(
        got.header("x-forwarded-for").as_deref(),
        Some("1.2.3.4, 127.0.0.1")
    );
    assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(got.header("x-forwarded-host").as_deref(), Some("orig.test"));
    assert_eq!(
        forwarded(got.header("forwarded")),
        fwd("for=1.2.3.4;proto=https, for=127.0.0.1;host=app.test;proto=http")
    );

    // A trusted peer that sends nothing still gets the headers set.
    let r = get_host(&c, &f.url("/y"), "app.test").await;
    assert_eq!(r.status, 200);
    let got = app.last_request().unwrap();
    assert_eq!(got.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(got.header("x-forwarded-host").as_deref(), Some("app.test"));
    assert_eq!(
        forwarded(got.header("forwarded")),
        fwd("for=127.0.0.1;host=app.test;proto=http")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_as_bare_ip() {
    let app = TestBackend::start("app").await;
    let port = free_port();
    let forwarding = r#"
forwarding:
  trusted_proxies: ["127.0.0.1"]
"#;
    let f = Fulcrum::start(&config(port, &app, forwarding), port).await;
    let c = client();
    let r = get_with(&c, &f.url("/"), None, &[("x-forwarded-for", "9.9.9.9")]).await;
    assert_eq!(r.status, 200);
    let got = app.last_request().unwrap();
    assert_eq!(
        got.header("x-forwarded-for").as_deref(),
        Some("9.9.9.9, 127.0.0.1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_can_be_disabled() {
    let app = TestBackend::start("app").await;
    let port = free_port();
    let forwarding = r#"
forwarding:
  x_forwarded_for: false
  x_forwarded_proto: false
  x_forwarded_host: false
  forwarded: false
  via: false
"#;
    let f = Fulcrum::start(&config(port, &app, forwarding), port).await;
    let c = client();
    let r = get_host(&c, &f.url("/"), "app.test").await;
    assert_eq!(r.status, 200);
    let got = app.last_request().unwrap();
    for h in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "via",
    ] {
        assert_eq!(got.header(h), None, "{h} should not be sent when disabled");
    }
    assert_eq!(
        r.header("via"),
        None,
        "no Via on the response when disabled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_by_header_names_the_backend() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    algorithm: round_robin
    backends:
      - addr: "{a}"
      - addr: "{b}"
routes:
  - upstream: app
forwarding:
  served_by_header: X-Served-By
"#,
        a = a.addr(),
        b = b.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        let r = get(&c, &f.url("/")).await;
        assert_eq!(r.status, 200);
        let served_by = r.header("x-served-by").expect("X-Served-By on response");
        let want = if r.body == "a" { a.addr() } else { b.addr() };
        assert_eq!(
            served_by, want,
            "X-Served-By must name the backend that answered"
        );
        seen.insert(served_by);
    }
    assert_eq!(
        seen.len(),
        2,
        "both backends should have answered: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_is_appended_to_existing_via() {
    let app = TestBackend::start_with(
        "app",
        BackendOptions {
            headers: vec![("via".into(), "1.0 upstream-cache".into())],
            ..BackendOptions::default()
        },
    )
    .await;
    let port = free_port();
    let f = Fulcrum::start(&config(port, &app, ""), port).await;
    let c = client();
    let r = get_with(&c, &f.url("/"), None, &[("via", "1.1 client-proxy")]).await;
    assert_eq!(r.status, 200);
    let got = app.last_request().unwrap();
    let req_via = got.header("via").unwrap_or_default();
    assert!(
        req_via.contains("1.1 client-proxy") && req_via.ends_with("1.1 fulcrum"),
        "request Via should keep the client's entry and append ours: {req_via:?}"
    );
    let resp_via = r.header("via").unwrap_or_default();
    assert!(
        resp_via.contains("1.0 upstream-cache") && resp_via.ends_with("1.1 fulcrum"),
        "response Via should keep the backend's entry and append ours: {resp_via:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_header_rules_edit_request_and_response() {
    let app = TestBackend::start_with(
        "app",
        BackendOptions {
            headers: vec![
                ("x-internal".into(), "secret".into()),
                ("x-powered-by".into(), "backend".into()),
                ("x-resp-add".into(), "from-backend".into()),
            ],
            ..BackendOptions::default()
        },
    )
    .await;
    let plain = TestBackend::start_with(
        "plain",
        BackendOptions {
            headers: vec![("x-internal".into(), "secret".into())],
            ..BackendOptions::default()
        },
    )
    .await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    backends:
      - addr: "{app}"
  plain:
    backends:
      - addr: "{plain}"
routes:
  - path: /edited
    upstream: app
    headers:
      request:
        add:
          x-req-add: added
        set:
          x-req-set: new
          x-req-new: fresh
        remove: [x-secret, X-Other-Secret]
      response:
        add:
          x-resp-add: from-proxy
        set:
          x-powered-by: fulcrum-test
          x-frame-options: DENY
        remove: [x-internal]
  - path: /
    upstream: plain
"#,
        app = app.addr(),
        plain = plain.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();

    let sent = [
        ("x-req-add", "original"),
        ("x-req-set", "old"),
        ("x-secret", "s3cr3t"),
        ("x-other-secret", "s3cr3t"),
        ("x-untouched", "same"),
    ];
    let r = get_with(&c, &f.url("/edited/x"), None, &sent).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "app");

    // Request side.
    let got = app.last_request().unwrap();
    let mut adds = got.header_all("x-req-add");
    adds.sort();
    let adds_joined = adds
        .iter()
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect::<Vec<_>>();
    assert!(
        adds_joined.contains(&"original".to_string()) && adds_joined.contains(&"added".to_string()),
        "add keeps the existing value and appends: {adds:?}"
    );
    assert_eq!(
        got.header_all("x-req-set"),
        vec!["new".to_string()],
        "set replaces"
    );
    assert_eq!(
        got.header("x-req-new").as_deref(),
        Some("fresh"),
        "set creates"
    );
    assert_eq!(got.header("x-secret"), None, "remove drops the header");
    assert_eq!(
        got.header("x-other-secret"),
        None,
        "remove is case-insensitive"
    );
    assert_eq!(got.header("x-untouched").as_deref(), Some("same"));

    // Response side.
    assert_eq!(r.header("x-internal"), None, "response remove");
    assert_eq!(
        r.header_all("x-powered-by"),
        vec!["fulcrum-test".to_string()],
        "response set replaces"
    );
    assert_eq!(
        r.header("x-frame-options").as_deref(),
        Some("DENY"),
        "response set creates"
    );
    let resp_adds: Vec<String> = r
        .header_all("x-resp-add")
        .iter()
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect();
    assert!(
        resp_adds.contains(&"from-backend".to_string())
            && resp_adds.contains(&"from-proxy".to_string()),
        "response add keeps the backend's value and appends: {resp_adds:?}"
    );

    // Rules are per route: the other route is untouched.
    let r = get_with(&c, &f.url("/plain"), None, &sent).await;
    assert_eq!(r.body, "plain");
    assert_eq!(r.header("x-internal").as_deref(), Some("secret"));
    assert_eq!(r.header("x-frame-options"), None);
    let got = plain.last_request().unwrap();
    assert_eq!(got.header("x-secret").as_deref(), Some("s3cr3t"));
    assert_eq!(got.header("x-req-set").as_deref(), Some("old"));
    assert_eq!(got.header("x-req-new"), None);
}

/// By default fulcrum writes forwarded header names in lowercase (as HAProxy and Envoy do;
/// Pingora title-cases a few standard ones such as `Host`), in both directions;
/// `forwarding.preserve_header_case: true` keeps the case the client and the backend used, as
/// nginx does. Either way the fields and values are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_name_case_is_lowercase_unless_preserved() {
    for preserve in [false, true] {
        let recorder = RecordingBackend::start("rec").await;
        let answerer = TestBackend::start_with(
            "ans",
            BackendOptions {
                headers: vec![("X-Mixed-Case".into(), "1".into())],
                ..BackendOptions::default()
            },
        )
        .await;
        let port = free_port();
        let yaml = format!(
            r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  rec:
    backends:
      - addr: "{rec}"
  ans:
    backends:
      - addr: "{ans}"
routes:
  - path: /rec
    upstream: rec
  - upstream: ans
forwarding:
  preserve_header_case: {preserve}
"#,
            rec = recorder.addr(),
            ans = answerer.addr()
        );
        let f = Fulcrum::start(&yaml, port).await;

        let request = b"GET /rec HTTP/1.1\r\nHost: app.test\r\nX-Custom-Thing: 1\r\nConnection: close\r\n\r\n";
        let answer = raw_http(port, request).await;
        assert_eq!(raw_status(&answer), 200, "{answer}");
        let sent = String::from_utf8_lossy(&recorder.raw()).into_owned();
        let custom = if preserve {
            "\r\nX-Custom-Thing: 1\r\n"
        } else {
            "\r\nx-custom-thing: 1\r\n"
        };
        assert!(
            sent.contains(custom),
            "preserve={preserve}, backend got:\n{sent}"
        );
        assert!(sent.contains("\r\nHost: app.test\r\n"), "{sent}");
        assert!(
            sent.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
            "{sent}"
        );
        assert!(sent.contains("\r\nvia: 1.1 fulcrum\r\n"), "{sent}");

        let request = b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
        let answer = raw_http(port, request).await;
        assert_eq!(raw_status(&answer), 200, "{answer}");
        let mixed = if preserve {
            "\r\nX-Mixed-Case: 1\r\n"
        } else {
            "\r\nx-mixed-case: 1\r\n"
        };
        assert!(
            answer.contains(mixed),
            "preserve={preserve}, client got:\n{answer}"
        );
        assert!(answer.contains("\r\nvia: 1.1 fulcrum\r\n"), "{answer}");
        assert!(answer.contains("\r\nx-request-id: "), "{answer}");
        drop(f);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_host_reaches_the_backend_with_one() {
    // HTTP/1.0 allows a request without Host; fulcrum forwards as HTTP/1.1, which requires
    // one (RFC 9112 section 3.2), so the backend's address is sent, as nginx sends
    // `$proxy_host` by default. A request with a Host keeps it.
    let recorder = RecordingBackend::start("rec").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  rec:
    backends:
      - addr: "{rec}"
routes:
  - upstream: rec
"#,
        rec = recorder.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    let answer = raw_http(port, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let sent = String::from_utf8_lossy(&recorder.raw()).into_owned();
    assert!(sent.starts_with("GET /old HTTP/1.1\r\n"), "{sent}");
    let host = format!("\r\nHost: {}\r\n", recorder.addr());
    assert!(sent.contains(&host), "backend got:\n{sent}");

    let answer = raw_http(port, b"GET /new HTTP/1.0\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let sent = String::from_utf8_lossy(&recorder.raw()).into_owned();
    assert!(
        sent.contains("\r\nHost: app.test\r\n"),
        "backend got:\n{sent}"
    );
    drop(f);
}
