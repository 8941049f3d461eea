//! Routing beyond host and path, through the real binary: `match:` conditions (methods,
//! headers, query), path rewrites, weighted `split`s with and without `split_key`, and split
//! weights changed through the runtime API.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use fulcrum::routing::split::{keyed_side, side_seed};
use std::collections::HashMap;
use support::*;

/// A request (method, path, headers) and the backend that must answer it.
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_headers_and_query_pick_the_most_specific_route() {
    let stable = TestBackend::start("stable").await;
    let canary = TestBackend::start("canary").await;
    let beta = TestBackend::start("beta").await;
    let reads = TestBackend::start("reads").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - path: /api
    upstream: stable
  - path: /api
    match: {{headers: {{x-canary: "true"}}}}
    upstream: canary
  - path: /api
    match: {{headers: {{x-canary: "true"}}, query: {{beta: "1"}}}}
    upstream: beta
  - path: /api
    match: {{methods: [GET, HEAD], headers: {{x-version: "~^v[0-9]+$", x-team: "*"}}}}
    upstream: reads
"#,
        ups = upstreams_of(&[&stable, &canary, &beta, &reads])
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();
    let cases: &[Case] = &[
        ("GET", "/api/x", &[], "stable"),
        ("GET", "/api/x", &[("x-canary", "true")], "canary"),
        ("GET", "/api/x", &[("x-canary", "TRUE")], "stable"),
        ("GET", "/api/x?beta=1", &[("x-canary", "true")], "beta"),
        // Query names and values are compared percent-decoded.
        ("GET", "/api/x?b%65ta=%31", &[("x-canary", "true")], "beta"),
        ("GET", "/api/x?beta=2", &[("x-canary", "true")], "canary"),
        ("GET", "/api/x?beta=1", &[], "stable"),
        // Two conditions on `reads` (methods counts one, each header one): three beat two.
        (
            "GET",
            "/api/x?beta=1",
            &[("x-canary", "true"), ("x-version", "v2"), ("x-team", "a")],
            "reads",
        ),
        (
            "GET",
            "/api/x",
            &[("x-version", "v2"), ("x-team", "")],
            "reads",
        ),
        (
            "POST",
            "/api/x",
            &[("x-version", "v2"), ("x-team", "a")],
            "stable",
        ),
        (
            "GET",
            "/api/x",
            &[("x-version", "v2x"), ("x-team", "a")],
            "stable",
        ),
        ("GET", "/api/x", &[("x-version", "v2")], "stable"),
    ];
    for (method, path, headers, want) in cases {
        let r = request(&c, method, &f.url(path), None, headers, None).await;
        assert_eq!(r.status, 200, "{method} {path} {headers:?}: {r:?}");
        assert_eq!(r.body, *want, "{method} {path} {headers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_use_capture_groups_on_the_normalized_path_and_keep_the_query() {
    let api = TestBackend::start("api").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - path: /api
    rewrite: {{regex: "^/api/v1/(.*)$", to: "/v1/$1"}}
    upstream: api
  - path: /shop
    strip_prefix: true
    rewrite: {{regex: "^/items/(?P<id>[0-9]+)$", to: "/catalog/${{id}}/view"}}
    upstream: api
  - path: /dots
    rewrite: {{regex: "^/dots/x(.)(.)y$", to: "/a/$1$2/b"}}
    upstream: api
"#,
        ups = upstreams_of(&[&api])
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();
    let cases = [
        ("/api/v1/users?page=2", "/v1/users?page=2"),
        // Normalized first: `.` segments, `//` and escaped unreserved characters.
        ("/api/./v1//us%65rs", "/v1/users"),
        ("/api/v2/users", "/api/v2/users"),
        ("/shop/items/42?x=1", "/catalog/42/view?x=1"),
        ("/shop/items/abc", "/items/abc"),
        // A rewrite that builds a `..` segment is normalized again.
        ("/dots/x..y", "/b"),
    ];
    for (sent, want) in cases {
        let r = get(&c, &f.url(sent)).await;
        assert_eq!(r.status, 200, "GET {sent}: {r:?}");
        let seen = api.last_request().expect("the backend got the request");
        assert_eq!(seen.path, want, "GET {sent}");
    }
}

/// The side the proxy chose, by the backend that answered, for each of `n` requests.
async fn sides(url: &str, headers: &[(&str, &str)], n: usize) -> HashMap<String, usize> {
    let c = client();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = request(&c, "GET", url, None, headers, None).await;
        assert_eq!(r.status, 200, "{r:?}");
        *counts.entry(r.body).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unkeyed_split_follows_its_weights_exactly() {
    let v1 = TestBackend::start("v1").await;
    let v2 = TestBackend::start("v2").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{ups}
routes:
  - path: /
    split:
      - {{upstream: v1, weight: 95}}
      - {{upstream: v2, weight: 5}}
"#,
        ups = upstreams_of(&[&v1, &v2])
    );
    let f = Fulcrum::start(&yaml, port).await;
    // 10,000 requests from 8 clients at once: the turns are shared by every worker thread.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = f.url("/");
        tasks.push(tokio::spawn(async move { sides(&url, &[], 1250).await }));
    }
    let mut total: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        for (k, v) in t.await.expect("client task") {
            *total.entry(k).or_insert(0) += v;
        }
    }
    assert_eq!(total.get("v1"), Some(&9_500), "{total:?}");
    assert_eq!(total.get("v2"), Some(&500), "{total:?}");
}

/// Keys `user-0` .. `user-{n-1}` and the side fulcrum's own rendezvous function gives each.
fn expected_sides(names: &[&str], weights: &[u32], n: usize) -> Vec<usize> {
    let seeds: Vec<u64> = names.iter().map(|n| side_seed(n)).collect();
    (0..n)
        .map(|i| keyed_side(&seeds, weights, format!("user-{i}").as_bytes()))
        .collect()
}

/// The backend that answers each key `user-i` (sent as the `user_id` cookie).
async fn answers(f: &Fulcrum, n: usize) -> Vec<String> {
    let c = client();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let cookie = format!("theme=dark; user_id=user-{i}");
        let r = request(&c, "GET", &f.url("/"), None, &[("cookie", &cookie)], None).await;
        assert_eq!(r.status, 200, "{r:?}");
        out.push(r.body);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_split_keeps_each_key_and_a_weight_change_moves_only_the_needed_share() {
    let v1 = TestBackend::start("v1").await;
    let v2 = TestBackend::start("v2").await;
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin}"
{ups}
routes:
  - path: /
    name: web
    split:
      - {{upstream: v1, weight: 90}}
      - {{upstream: v2, weight: 10}}
    split_key: cookie:user_id
"#,
        ups = upstreams_of(&[&v1, &v2])
    );
    let mut f = Fulcrum::start(&yaml, port).await;
    f.wait_listening(admin).await;
    let n = 1_000;
    let names = ["v1", "v2"];
    let want: Vec<&str> = expected_sides(&names, &[90, 10], n)
        .into_iter()
        .map(|s| names[s])
        .collect();
    let first = answers(&f, n).await;
    assert_eq!(
        first, want,
        "every key on the side the rendezvous function gives it"
    );
    let v2_share = first.iter().filter(|s| *s == "v2").count() as f64 / n as f64;
    assert!((0.07..=0.13).contains(&v2_share), "v2 share {v2_share}");
    // Asked again, every key stays.
    assert_eq!(
        answers(&f, n).await,
        first,
        "keys changed side with unchanged weights"
    );
    // Without the cookie, requests take weighted turns: exactly 9 to 1 over 100.
    let unkeyed = sides(&f.url("/"), &[], 100).await;
    assert_eq!(unkeyed.get("v2"), Some(&10), "{unkeyed:?}");

    // 90/10 -> 70/30 through the runtime API: only keys moving to v2 move, about 20 %.
    let c = client();
    let patch = r#"{"weights": {"v1": 70, "v2": 30}}"#;
    let url = format!("http://127.0.0.1:{admin}/routes/web/split");
    let r = request(&c, "PATCH", &url, None, &[], Some(patch.into())).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains(r#""weight": 30"#) || r.body.contains(r#""weight":30"#),
        "{}",
        r.body
    );
    let after = answers(&f, n).await;
    let want_after: Vec<&str> = expected_sides(&names, &[70, 30], n)
        .into_iter()
        .map(|s| names[s])
        .collect();
    assert_eq!(after, want_after);
    let mut moved = 0;
    for (i, (a, b)) in first.iter().zip(&after).enumerate() {
        if a != b {
            assert_eq!((a.as_str(), b.as_str()), ("v1", "v2"), "key user-{i}");
            moved += 1;
        }
    }
    let moved = moved as f64 / n as f64;
    assert!((0.15..=0.25).contains(&moved), "moved share {moved}");

    // Bad changes are refused and change nothing.
    for (body, status) in [
        (r#"{"weights": {"v3": 1}}"#, 400),
        (r#"{"weights": {"v1": 0, "v2": 0}}"#, 400),
        (r#"{"weights": {"v1": 10001}}"#, 400),
        (r#"{"weights": "x"}"#, 400),
    ] {
        let r = request(&c, "PATCH", &url, None, &[], Some(body.into())).await;
        assert_eq!(r.status, status, "{body}: {r:?}");
    }
    let r = request(&c, "GET", &url, None, &[], None).await;
    assert_eq!(r.status, 405, "{r:?}");
    let r = get(&c, &format!("http://127.0.0.1:{admin}/routes/nope")).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(answers(&f, n).await, after, "a refused change moved keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_sides_are_counted_under_their_own_upstream() {
    let v1 = TestBackend::start("v1").await;
    let v2 = TestBackend::start("v2").await;
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin}"
{ups}
routes:
  - path: /
    name: web
    split:
      - {{upstream: v1, weight: 3}}
      - {{upstream: v2, weight: 1}}
"#,
        ups = upstreams_of(&[&v1, &v2])
    );
    let mut f = Fulcrum::start(&yaml, port).await;
    f.wait_listening(admin).await;
    sides(&f.url("/"), &[], 40).await;
    let c = client();
    let count = |metrics: &str, upstream: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("fulcrum_upstream_requests_total{"))
            .filter(|l| l.contains(&format!("upstream=\"{upstream}\"")))
            .filter(|l| l.contains("code=\"200\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    // A request is counted in the logging hook, just after its answer went out.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = get(&c, &format!("http://127.0.0.1:{admin}/metrics"))
            .await
            .body;
        if count(&metrics, "v1") + count(&metrics, "v2") == 40 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        (count(&metrics, "v1"), count(&metrics, "v2")),
        (30, 10),
        "{metrics}"
    );
}

/// A split route `web` (v1/v2 with `weights`, keyed by the `user_id` cookie) behind an admin
/// listener whose state file is `state`.
fn split_config(
    port: u16,
    admin: u16,
    state: &std::path::Path,
    ups: &str,
    weights: (u32, u32),
) -> String {
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin}"
  state_file: "{state}"
{ups}
routes:
  - path: /
    name: web
    split:
      - {{upstream: v1, weight: {w1}}}
      - {{upstream: v2, weight: {w2}}}
    split_key: cookie:user_id
"#,
        state = state.display(),
        w1 = weights.0,
        w2 = weights.1,
    )
}

/// The weights of route `web` now, as the runtime API shows them.
async fn weights_now(admin: u16) -> Vec<u64> {
    let body = get(&client(), &format!("http://127.0.0.1:{admin}/routes/web"))
        .await
        .body;
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    v["split"]
        .as_array()
        .expect("a split")
        .iter()
        .map(|s| s["weight"].as_u64().expect("weight"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_weights_set_at_run_time_survive_a_restart_unless_the_config_changed_them() {
    let v1 = TestBackend::start("v1").await;
    let v2 = TestBackend::start("v2").await;
    let ups = upstreams_of(&[&v1, &v2]);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let (port, admin) = (free_port(), free_port());
    let mut f = Fulcrum::start(&split_config(port, admin, &state, &ups, (90, 10)), port).await;
    f.wait_listening(admin).await;
    let url = format!("http://127.0.0.1:{admin}/routes/web/split");
    let patch = r#"{"weights": {"v2": 30, "v1": 70}}"#;
    let r = request(&client(), "PATCH", &url, None, &[], Some(patch.into())).await;
    assert_eq!(r.status, 200, "{r:?}");
    let moved = answers(&f, 300).await;
    f.kill();

    // The same config: the runtime weights come back, and every key is where it was.
    let (port, admin) = (free_port(), free_port());
    let mut f = Fulcrum::start(&split_config(port, admin, &state, &ups, (90, 10)), port).await;
    f.wait_listening(admin).await;
    assert_eq!(
        weights_now(admin).await,
        [70, 30],
        "{}\n{}",
        std::fs::read_to_string(&state).unwrap_or_default(),
        f.stderr()
    );
    assert_eq!(answers(&f, 300).await, moved);
    f.kill();

    // The config's split changed since: the config is the newer decision.
    let (port, admin) = (free_port(), free_port());
    let mut f = Fulcrum::start(&split_config(port, admin, &state, &ups, (80, 20)), port).await;
    f.wait_listening(admin).await;
    assert_eq!(weights_now(admin).await, [80, 20]);
    assert!(
        f.stderr()
            .contains("route web: the config's split changed since (the config wins)"),
        "{}",
        f.stderr()
    );
}
