//! `fulcrum route` (explain one request) and the routing plan of `fulcrum -t`, run as the real
//! binary on a real config file; the split side it names is checked against the running proxy.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::*;

/// A self-signed certificate for the HTTPS listener; returns (cert path, key path).
fn certificate(dir: &Path) -> (String, String) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let cert = write_file(dir, "cert.pem", &cert.pem());
    let key = write_file(dir, "key.pem", &key_pair.serialize_pem());
    (cert.display().to_string(), key.display().to_string())
}

/// The config both the explanation and the proxy run on. Upstream addresses come from the
/// backends (or unused ports when only explaining).
struct Setup {
    yaml: String,
    plain: u16,
    https: u16,
}

fn config(dir: &Path, web: &str, v1: &str, v2: &str) -> Setup {
    let (cert, key) = certificate(dir);
    let (plain, https) = (free_port(), free_port());
    let yaml = format!(
        r#"listeners:
  - addr: "127.0.0.1:{plain}"
  - addr: "127.0.0.1:{https}"
    tls:
      certificates:
        - cert: "{cert}"
          key: "{key}"
upstreams:
  web:
    backends:
      - addr: "{web}"
  api-v1:
    backends:
      - addr: "{v1}"
  api-v2:
    backends:
      - addr: "{v2}"
routes:
  - {{path: /web, upstream: web}}
  - name: api
    host: api.example.com
    path: /api
    strip_prefix: true
    rewrite: {{regex: '^/v1/(.*)$', to: '/legacy/$1'}}
    split: [{{upstream: api-v1, weight: 50}}, {{upstream: api-v2, weight: 50}}]
    split_key: "cookie:user"
    headers:
      request: {{set: {{x-env: prod}}}}
  - name: canary
    host: api.example.com
    path: /api
    match:
      methods: [GET, HEAD]
      headers: {{x-canary: "true", x-v: "~^v[0-9]+$", x-trace: "*"}}
      query: {{beta: "*"}}
    upstream: api-v2
  - name: shop
    host: "*.example.com"
    path: /shop
    upstream: web
    rate_limit: {{requests_per_second: 5, burst: 10}}
  - {{name: secure, host: secure.example.com, path: /, upstream: web, redirect_to_https: true}}
  - {{name: admin, host: admin.example.com, path: /, upstream: web}}
"#
    );
    Setup { yaml, plain, https }
}

/// Writes the config (with the test `pingora:` section) and returns its path.
fn config_file(dir: &Path, setup: &Setup) -> PathBuf {
    write_file(dir, "fulcrum.yaml", &with_pingora_section(&setup.yaml, dir))
}

fn route(file: &Path, request: &str, headers: &[&str]) -> Output {
    let file = file.to_str().expect("utf-8 path");
    let mut args = vec!["route", "-c", file, request];
    for h in headers {
        args.push("-H");
        args.push(h);
    }
    fulcrum_cmd(&args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The verdict line of route `name` in the "routes tried" table.
fn verdict_line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| {
            let mut words = l.split_whitespace();
            words.next().is_some_and(|n| n.ends_with('.')) && words.next() == Some(name)
        })
        .unwrap_or_else(|| panic!("no row for route {name}:\n{text}"))
}

fn unused_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[test]
fn route_explains_each_verdict_the_rewrite_and_the_policies() {
    let dir = tempfile::tempdir().unwrap();
    let setup = config(dir.path(), &unused_addr(), &unused_addr(), &unused_addr());
    let file = config_file(dir.path(), &setup);

    // The canary wants GET: the split route serves, with its strip + rewrite.
    let out = route(
        &file,
        "POST http://api.example.com/api/v1/users?beta=1",
        &["x-canary: true"],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        verdict_line(&text, "canary").ends_with("method POST not in [GET, HEAD]"),
        "{text}"
    );
    assert!(verdict_line(&text, "api").ends_with("  matched"), "{text}");
    assert!(
        verdict_line(&text, "shop").ends_with("not tried: api matched first"),
        "{text}"
    );
    assert!(text.contains("matched route: api\n"), "{text}");
    assert!(
        text.contains("/legacy/users?beta=1 (strip_prefix /api, rewrite"),
        "{text}"
    );
    assert!(
        text.contains("  POST /legacy/users?beta=1 HTTP/1.1\n"),
        "{text}"
    );
    assert!(text.contains("  x-env: prod\n"), "{text}");
    assert!(
        text.contains("weighted turn (the request has no cookie:user): 50% api-v1, 50% api-v2"),
        "{text}"
    );
    // Routes of other hosts are listed as such.
    let admin = text
        .lines()
        .find(|l| l.trim_start().starts_with("admin "))
        .unwrap_or_else(|| panic!("admin not listed:\n{text}"));
    assert!(admin.ends_with("host does not apply"), "{text}");

    // Each condition of the canary, in turn.
    let cases: &[(&[&str], &str)] = &[
        (
            &["x-canary: false"],
            "header x-canary: value \"false\" does not match \"true\"",
        ),
        // Headers are checked in name order: x-canary, x-trace, x-v.
        (&["x-canary: true", "x-v: v2"], "header x-trace: missing"),
        (
            &["x-canary: true", "x-trace: 1", "x-v: beta"],
            "header x-v: value \"beta\" does not match regex ^v[0-9]+$",
        ),
    ];
    for (headers, why) in cases {
        let out = route(&file, "GET http://api.example.com/api/x", headers);
        let text = stdout(&out);
        assert!(
            verdict_line(&text, "canary").ends_with(why),
            "{why}:\n{text}"
        );
    }
    let all = ["x-canary: true", "x-v: v2", "x-trace: 1"];
    let text = stdout(&route(&file, "GET http://api.example.com/api/x?b=1", &all));
    assert!(
        verdict_line(&text, "canary").ends_with("query beta: missing"),
        "{text}"
    );
    let out = route(&file, "GET http://api.example.com/api/x?beta", &all);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        verdict_line(&text, "canary").ends_with("  matched"),
        "{text}"
    );
    assert!(
        text.contains("result             proxied to api-v2 as /api/x?beta"),
        "{text}"
    );

    // Wildcard host, its own rate limit; the path is normalized first.
    let out = route(&file, "GET http://x.example.com/a/../shop//b", &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("/shop/b (normalized from /a/../shop//b)"),
        "{text}"
    );
    assert!(verdict_line(&text, "shop").ends_with("  matched"), "{text}");
    assert!(
        text.contains("5 rps, burst 10 per client IP (the route's own"),
        "{text}"
    );

    // Answers fulcrum gives itself: exit 3.
    let out = route(&file, "GET http://secure.example.com/x?y=1", &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    let location = format!("Location: https://secure.example.com:{}/x?y=1", setup.https);
    assert!(text.contains(&location), "{text}");
    // Over HTTPS the same route proxies.
    let https = format!("GET https://secure.example.com:{}/x", setup.https);
    let out = route(&file, &https, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("127.0.0.1:{} (https)", setup.https)));

    let out = route(&file, "GET /../x", &["host: api.example.com"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("fulcrum answers 400 itself: 400 Bad Request: the path climbs above /"),
        "{text}"
    );

    let out = route(&file, "GET http://nothing.test/other", &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        verdict_line(&text, "/web").ends_with("path prefix /web does not match"),
        "{text}"
    );
    assert!(text.contains("fulcrum answers 404 itself"), "{text}");

    // A bad command line: 1, like a bad config (with the key path).
    let out = route(&file, "GET /", &["no colon"]);
    assert_eq!(out.status.code(), Some(1));
    let bad = write_file(
        dir.path(),
        "bad.yaml",
        &setup.yaml.replace(
            "{path: /web, upstream: web}",
            "{path: /web, upstream: nope}",
        ),
    );
    let out = route(&bad, "GET /", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("routes[0].upstream: no upstream named \"nope\""),
        "{err}"
    );
}

#[test]
fn check_prints_the_routing_plan_after_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let setup = config(dir.path(), &unused_addr(), &unused_addr(), &unused_addr());
    let file = config_file(dir.path(), &setup);
    let out = fulcrum_cmd(&["-t", "-c", file.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    assert_eq!(lines[0], format!("fulcrum: {} is valid", file.display()));
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} missing:\n{text}"))
    };
    // Tables in router order: exact hosts by name, wildcards, then any host.
    let (admin, api, secure, wild, any) = (
        at("  host admin.example.com"),
        at("  host api.example.com"),
        at("  host secure.example.com"),
        at("  host *.example.com"),
        at("  any host"),
    );
    assert!(
        admin < api && api < secure && secure < wild && wild < any,
        "{text}"
    );
    assert!(
        lines[api + 1]
            .contains("1. canary  /api  if methods [GET, HEAD], header x-canary: \"true\""),
        "{text}"
    );
    assert!(lines[api + 1].ends_with("-> api-v2"), "{text}");
    assert!(lines[api + 2].contains("2. api     /api  -> split 50% api-v1, 50% api-v2 by cookie:user  [strip_prefix /api, rewrite ^/v1/(.*)$ -> /legacy/$1]"), "{text}");
    assert!(
        lines[secure + 1].ends_with("-> web  (plain HTTP: 308 to HTTPS)"),
        "{text}"
    );
    assert!(lines[any + 1].contains("1. /web  /web  -> web"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_split_side_named_is_the_side_the_proxy_uses() {
    let web = TestBackend::start("web").await;
    let v1 = TestBackend::start("api-v1").await;
    let v2 = TestBackend::start("api-v2").await;
    let dir = tempfile::tempdir().unwrap();
    let setup = config(dir.path(), &web.addr(), &v1.addr(), &v2.addr());
    let file = config_file(dir.path(), &setup);
    let proxy = Fulcrum::start(&setup.yaml, setup.plain).await;
    let client = client();
    let mut sides = Vec::new();
    for user in [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ] {
        let cookie = format!("cookie: user={user}");
        let file = file.clone();
        let out = tokio::task::spawn_blocking(move || {
            let file = file.to_str().unwrap().to_string();
            fulcrum_cmd(&[
                "route",
                "-c",
                &file,
                "GET http://api.example.com/api/v1/orders?n=1",
                "-H",
                &cookie,
                "--json",
            ])
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let named = json["outcome"]["upstream"]
            .as_str()
            .expect("upstream")
            .to_string();
        assert_eq!(json["outcome"]["path"], "/legacy/orders?n=1");

        let url = proxy.url("/api/v1/orders?n=1");
        let resp = get_with(
            &client,
            &url,
            Some("api.example.com"),
            &[("cookie", &format!("user={user}"))],
        )
        .await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.body, named, "user {user}: fulcrum route named {named}");
        let backend = if named == "api-v1" { &v1 } else { &v2 };
        let seen = backend.last_request().expect("a request");
        assert_eq!(seen.path, "/legacy/orders?n=1");
        assert_eq!(seen.header_all("x-env"), vec!["prod".to_string()]);
        sides.push(named);
    }
    // The users fall on both sides (a fixed set of keys, so a fixed split).
    assert!(
        sides.iter().any(|s| s == "api-v1") && sides.iter().any(|s| s == "api-v2"),
        "{sides:?}"
    );
    assert_eq!(web.count(), 0);
}
