//! Routing: Host (exact / wildcard / catch-all), whole-segment path prefixes, longest prefix,
//! host routes before catch-all routes, strip_prefix, 404 on no match.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_prefix_matches_whole_segments_and_longest_wins() {
    let api = TestBackend::start("api").await;
    let v2 = TestBackend::start("v2").await;
    let root = TestBackend::start("root").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - path: /api
    upstream: api
  - path: /api/v2
    upstream: v2
  - path: /
    upstream: root
"#,
        ups = upstreams_of(&[&api, &v2, &root])
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();

    let cases = [
        ("/api", "api"),
        ("/api/", "api"),
        ("/api/x", "api"),
        ("/api/x/y", "api"),
        ("/api?q=1", "api"),
        ("/apix", "root"),
        ("/api-x", "root"),
        ("/api/v2", "v2"),
        ("/api/v2/", "v2"),
        ("/api/v2/users", "v2"),
        ("/api/v2?x=1", "v2"),
        ("/api/v20", "api"),
        ("/", "root"),
        ("/other", "root"),
        ("/other/api", "root"),
    ];
    for (path, want) in cases {
        let r = get(&c, &f.url(path)).await;
        assert_eq!(r.status, 200, "GET {path}: {r:?}");
        assert_eq!(r.body, want, "GET {path} went to the wrong upstream");
        assert_eq!(r.header("x-backend").as_deref(), Some(want), "GET {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_and_query_forwarded_unchanged_without_strip_prefix() {
    let api = TestBackend::start("api").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - path: /api
    upstream: api
"#,
        ups = upstreams_of(&[&api])
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();

    for path in ["/api/users?x=1", "/api", "/api?q=a%20b&r=2", "/api/a/b/c"] {
        let r = get(&c, &f.url(path)).await;
        assert_eq!(r.status, 200, "GET {path}: {r:?}");
        let got = api.last_request().expect("backend saw a request");
        assert_eq!(got.path, path, "backend should see the unmodified path");
        assert_eq!(got.method, "GET");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_removes_the_route_prefix() {
    let api = TestBackend::start("api").await;
    let keep = TestBackend::start("keep").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - path: /api
    upstream: api
    strip_prefix: true
  - path: /
    upstream: keep
    strip_prefix: true
"#,
        ups = upstreams_of(&[&api, &keep])
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();

    let cases = [
        ("/api/users?x=1", "/users?x=1"),
        ("/api/users", "/users"),
        ("/api/a/b", "/a/b"),
        ("/api", "/"),
        ("/api/", "/"),
    ];
    for (sent, want) in cases {
        let r = get(&c, &f.url(sent)).await;
        assert_eq!(r.status, 200, "GET {sent}: {r:?}");
        assert_eq!(r.body, "api", "GET {sent}");
        let got = api.last_request().expect("backend saw a request");
        assert_eq!(
            got.path, want,
            "GET {sent}: path forwarded after strip_prefix"
        );
    }

    // Stripping `/` changes nothing.
    let r = get(&c, &f.url("/other/x?y=1")).await;
    assert_eq!(r.body, "keep");
    assert_eq!(keep.last_request().unwrap().path, "/other/x?y=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routes_exact_wildcard_and_catch_all() {
    let app = TestBackend::start("app").await;
    let wild = TestBackend::start("wild").await;
    let any = TestBackend::start("any").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - host: app.test
    upstream: app
  - host: "*.example.com"
    upstream: wild
  - upstream: any
"#,
        ups = upstreams_of(&[&app, &wild, &any])
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();

    let cases = [
        ("app.test", "app"),
        ("foo.example.com", "wild"),
        ("bar.example.com", "wild"),
        ("example.com", "any"),
        ("other.test", "any"),
        ("notapp.test", "any"),
        ("app.test.evil", "any"),
    ];
    for (host, want) in cases {
        let r = get_host(&c, &f.url("/some/path"), host).await;
        assert_eq!(r.status, 200, "Host {host}: {r:?}");
        assert_eq!(r.body, want, "Host {host} went to the wrong upstream");
    }

    // No Host override: reqwest sends 127.0.0.1:PORT, which only the catch-all matches.
    let r = get(&c, &f.url("/")).await;
    assert_eq!(r.body, "any");
}

/// Assumption: the port in the Host header is ignored for matching, and host matching is
/// case-insensitive (hosts are DNS names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_match_ignores_port_and_case() {
    let app = TestBackend::start("app").await;
    let any = TestBackend::start("any").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - host: app.test
    upstream: app
  - upstream: any
"#,
        ups = upstreams_of(&[&app, &any])
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();

    let with_port = format!("app.test:{port}");
    for host in [with_port.as_str(), "APP.test", "App.Test:8080"] {
        let r = get_host(&c, &f.url("/"), host).await;
        assert_eq!(r.body, "app", "Host {host}");
    }
}

/// Assumption: an exact host route beats a wildcard route that also matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_host_beats_wildcard() {
    let exact = TestBackend::start("exact").await;
    let wild = TestBackend::start("wild").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - host: "*.example.com"
    upstream: wild
  - host: api.example.com
    upstream: exact
"#,
        ups = upstreams_of(&[&exact, &wild])
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();
    assert_eq!(
        get_host(&c, &f.url("/"), "api.example.com").await.body,
        "exact"
    );
    assert_eq!(
        get_host(&c, &f.url("/"), "www.example.com").await.body,
        "wild"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routes_preferred_then_fall_back_to_catch_all() {
    let host_api = TestBackend::start("hostapi").await;
    let any_root = TestBackend::start("anyroot").await;
    let any_long = TestBackend::start("anylong").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - path: /
    upstream: anyroot
  - path: /api/v2
    upstream: anylong
  - host: app.test
    path: /api
    upstream: hostapi
"#,
        ups = upstreams_of(&[&host_api, &any_root, &any_long])
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();

    let cases = [
        // The host route wins even though a catch-all route has a longer prefix.
        ("app.test", "/api/v2/x", "hostapi"),
        ("app.test", "/api", "hostapi"),
        // No host route's prefix matches: fall back to the catch-all routes.
        ("app.test", "/other", "anyroot"),
        ("app.test", "/apix", "anyroot"),
        // Other hosts only see catch-all routes.
        ("other.test", "/api/v2/x", "anylong"),
        ("other.test", "/api", "anyroot"),
    ];
    for (host, path, want) in cases {
        let r = get_host(&c, &f.url(path), host).await;
        assert_eq!(r.status, 200, "Host {host} {path}: {r:?}");
        assert_eq!(r.body, want, "Host {host} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_matching_route_is_404_with_short_body() {
    let app = TestBackend::start("app").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - host: app.test
    path: /api
    upstream: app
"#,
        ups = upstreams_of(&[&app])
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();

    for (host, path) in [
        ("app.test", "/"),
        ("app.test", "/apix"),
        ("other.test", "/api"),
        ("other.test", "/"),
    ] {
        let r = get_host(&c, &f.url(path), host).await;
        assert_eq!(r.status, 404, "Host {host} {path}: {r:?}");
        assert_short_body(&r, &format!("404 for Host {host} {path}"));
    }
    assert_eq!(app.count(), 0, "unrouted requests must not reach a backend");

    // The proxy still routes after 404s.
    let r = get_host(&c, &f.url("/api/ok"), "app.test").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_and_methods_are_forwarded() {
    let app = TestBackend::start("app").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - upstream: app
"#,
        ups = upstreams_of(&[&app])
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();

    // Content-Length body.
    let body = b"{\"hello\":\"world\"}".to_vec();
    let r = request(
        &c,
        "POST",
        &f.url("/submit?id=7"),
        None,
        &[("content-type", "application/json")],
        Some(body.clone()),
    )
    .await;
    assert_eq!(r.status, 200);
    let got = app.last_request().unwrap();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/submit?id=7");
    assert_eq!(got.body, body);
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("application/json")
    );

    // A larger body.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let r = request(&c, "PUT", &f.url("/big"), None, &[], Some(big.clone())).await;
    assert_eq!(r.status, 200);
    let got = app.last_request().unwrap();
    assert_eq!(got.method, "PUT");
    assert_eq!(got.body.len(), big.len());
    assert!(got.body == big, "large body corrupted in transit");

    // Chunked request body, sent raw.
    let raw = format!(
        "POST /chunked HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    );
    let resp = raw_http(port, raw.as_bytes()).await;
    assert_eq!(raw_status(&resp), 200, "raw chunked POST: {resp}");
    let got = app.last_request().unwrap();
    assert_eq!(got.path, "/chunked");
    assert_eq!(got.body_string(), "hello world");

    // DELETE without a body.
    let r = request(&c, "DELETE", &f.url("/thing/1"), None, &[], None).await;
    assert_eq!(r.status, 200);
    let got = app.last_request().unwrap();
    assert_eq!(got.method, "DELETE");
    assert_eq!(got.path, "/thing/1");
}

/// Sends `target` raw (no client normalizes it) and returns (status, body).
async fn raw_get(port: u16, target: &str, host: Option<&str>, version: &str) -> (u16, String) {
    let host = host.map_or(String::new(), |h| format!("Host: {h}\r\n"));
    let req = format!("GET {target} {version}\r\n{host}Connection: close\r\n\r\n");
    let ex = raw_exchange(port, req.as_bytes(), std::time::Duration::from_secs(3)).await;
    let r = ex
        .responses()
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no response to {target}: {}", ex.summary()));
    (r.status, r.body_string())
}

/// Routes and every route policy see the normalized path (RFC 3986 6.2.2: escaped unreserved
/// characters decoded, dot segments removed, slashes merged), and the backend receives it;
/// a path that climbs above `/` and a malformed escape are 400s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalized_before_routing_and_forwarded_normalized() {
    let public = TestBackend::start("public").await;
    let admin = TestBackend::start("admin").await;
    let v1 = TestBackend::start("v1").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - path: /public
    upstream: public
  - path: /admin
    upstream: admin
  - path: /v1
    upstream: v1
    strip_prefix: true
"#,
        ups = upstreams_of(&[&public, &admin, &v1])
    );
    let f = Fulcrum::start(&yaml, port).await;
    let cases: [(&str, &TestBackend, &str); 11] = [
        ("/public/../admin", &admin, "/admin"),
        ("/public/%2e%2e/admin", &admin, "/admin"),
        ("/public/.%2E/admin", &admin, "/admin"),
        ("/%70ublic/x", &public, "/public/x"),
        ("/x/../public/y", &public, "/public/y"),
        ("/./public", &public, "/public"),
        ("//public///a/./b/", &public, "/public/a/b/"),
        (
            "/public/a%2fb?q=/../%2e",
            &public,
            "/public/a%2Fb?q=/../%2e",
        ),
        ("/v1/../admin", &admin, "/admin"),
        ("/v1//x", &v1, "/x"),
        ("/v1/a/..", &v1, "/"),
    ];
    for (target, backend, seen) in cases {
        let (status, body) = raw_get(port, target, Some("app.test"), "HTTP/1.1").await;
        assert_eq!((status, body.as_str()), (200, backend.name()), "{target}");
        let got = backend.last_request().expect("the backend got it").path;
        assert_eq!(
            got,
            seen,
            "{target} must reach {} as {seen}",
            backend.name()
        );
    }
    // An encoded slash is data, not a separator: this is one segment, which no route has.
    let (status, _) = raw_get(port, "/public%2F..%2Fadmin", Some("app.test"), "HTTP/1.1").await;
    assert_eq!(status, 404);
    for bad in [
        "/../admin",
        "/public/../../admin",
        "/%2e%2e/admin",
        "/public/a%zz",
        "/a%4",
    ] {
        let (status, body) = raw_get(port, bad, Some("app.test"), "HTTP/1.1").await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let total = public.count() + admin.count() + v1.count();
    assert_eq!(total, 11, "nothing refused reached a backend");
    drop(f);
}

/// A route's rate limit cannot be dodged by spelling its path differently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_path_is_limited_in_every_spelling() {
    let app = TestBackend::start("app").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - path: /login
    upstream: app
    rate_limit: {{requests_per_second: 0.01, burst: 1}}
  - path: /
    upstream: app
    rate_limit: off
"#,
        ups = upstreams_of(&[&app])
    );
    let _f = Fulcrum::start(&yaml, port).await;
    assert_eq!(raw_get(port, "/login", Some("a"), "HTTP/1.1").await.0, 200);
    for spelling in [
        "/login",
        "/%6cogin",
        "/./login",
        "/x/../login",
        "//login",
        "/%6C%6F%67%69%6E",
    ] {
        assert_eq!(
            raw_get(port, spelling, Some("a"), "HTTP/1.1").await.0,
            429,
            "{spelling} is /login"
        );
    }
    assert_eq!(raw_get(port, "/other", Some("a"), "HTTP/1.1").await.0, 200);
    assert_eq!(app.count(), 2);
}

/// Request targets (RFC 9112 3.2): a target that is neither a path nor an http(s) URL is a
/// 400; `*` only for OPTIONS; CONNECT is refused; an absolute-form target names the host that
/// both routing and the backend use, also without a Host header (HTTP/1.0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_targets_are_checked_and_absolute_form_routes_by_its_host() {
    let secret = TestBackend::start("secret").await;
    let open = TestBackend::start("open").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - host: secret.test
    path: /
    upstream: secret
  - path: /
    upstream: open
"#,
        ups = upstreams_of(&[&secret, &open])
    );
    let _f = Fulcrum::start(&yaml, port).await;
    for bad in [
        "public",
        "x:/admin",
        "secret.test:80",
        "*",
        "ftp://secret.test/",
    ] {
        let (status, body) = raw_get(port, bad, Some("secret.test"), "HTTP/1.1").await;
        assert_eq!(status, 400, "GET {bad}: {body}");
    }
    assert_eq!(secret.count() + open.count(), 0);

    let (status, body) = raw_get(port, "http://secret.test/x/../y", None, "HTTP/1.0").await;
    assert_eq!((status, body.as_str()), (200, "secret"));
    let r = secret.last_request().unwrap();
    assert_eq!(r.path, "/y", "forwarded in origin-form, normalized");
    assert_eq!(r.header("host").as_deref(), Some("secret.test"));

    let (status, body) = raw_get(port, "HTTP://secret.test", Some("secret.test"), "HTTP/1.1").await;
    assert_eq!((status, body.as_str()), (200, "secret"));
    assert_eq!(secret.last_request().unwrap().path, "/");

    let ex = raw_exchange(
        port,
        b"OPTIONS * HTTP/1.1\r\nHost: secret.test\r\nConnection: close\r\n\r\n",
        std::time::Duration::from_secs(3),
    )
    .await;
    assert_eq!(ex.statuses(), vec![200], "{}", ex.summary());
    let r = secret.last_request().unwrap();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("OPTIONS", "*"));

    let ex = raw_exchange(
        port,
        b"CONNECT secret.test:443 HTTP/1.1\r\nHost: secret.test:443\r\n\r\n",
        std::time::Duration::from_secs(3),
    )
    .await;
    assert_eq!(ex.statuses(), vec![405], "{}", ex.summary());
    assert_eq!(secret.count(), 3, "CONNECT reached no backend");
}

/// HTTP/2 requests are normalized the same way (curl with prior knowledge on an h2c
/// listener, `--path-as-is` so that curl sends the path untouched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_paths_are_normalized_too() {
    let public = TestBackend::start("public").await;
    let admin = TestBackend::start("admin").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
    h2c: true
{ups}
routes:
  - path: /public
    upstream: public
  - path: /admin
    upstream: admin
"#,
        ups = upstreams_of(&[&public, &admin])
    );
    let _f = Fulcrum::start(&yaml, port).await;
    for (path, want) in [
        ("/public/../admin", "200 admin"),
        ("/%70ublic/x", "200 public"),
        (
            "/public/%2e%2e/%2e%2e/admin",
            "400 400 Bad Request: the path climbs above /\n",
        ),
    ] {
        let out = tokio::process::Command::new("curl")
            .args([
                "-s",
                "--http2-prior-knowledge",
                "--path-as-is",
                "--max-time",
                "5",
            ])
            .args(["-w", "%{http_code} ", "-o", "/dev/stderr"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .await
            .expect("run curl");
        let got = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(got, want, "{path}");
    }
    assert_eq!(admin.last_request().unwrap().path, "/admin");
    assert_eq!(public.last_request().unwrap().path, "/public/x");
}
