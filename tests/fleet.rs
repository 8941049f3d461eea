//! A fleet of fulcrums agrees: two fulcrum processes with the same upstream group make the
//! same choices. `consistent` and `ip_hash` map every key to the same backend on both, and a
//! `cookie` session set by one is honoured by the other when they share `sticky.secret`.
//!
//! The second instance lists the backends in the reverse order, as two replicas may get the
//! same DNS answers in different orders: the mapping depends on the set of addresses only.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use support::*;

/// Backends named n0..n3.
async fn backends() -> Vec<TestBackend> {
    let mut out = Vec::new();
    for i in 0..4 {
        out.push(TestBackend::start(&format!("n{i}")).await);
    }
    out
}

/// A config with one upstream `app` (`upstream_extra` lines, the backends in the given order),
/// a catch-all route, and `top_extra` top-level sections.
fn config(port: u16, upstream_extra: &str, list: &[&TestBackend], top_extra: &str) -> String {
    let mut backends = String::new();
    for b in list {
        backends.push_str(&format!("      - addr: \"{}\"\n", b.addr()));
    }
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
{upstream_extra}
    timeouts: {{connect: 1s, read: 2s}}
    backends:
{backends}
routes:
  - upstream: app
{top_extra}
"#
    )
}

/// Two instances of the same group: A with the backends in `bs` order, B reversed.
async fn two_instances(
    bs: &[TestBackend],
    extra_a: &str,
    extra_b: &str,
    top: &str,
) -> (Fulcrum, Fulcrum) {
    let forward: Vec<&TestBackend> = bs.iter().collect();
    let reverse: Vec<&TestBackend> = bs.iter().rev().collect();
    let pa = free_port();
    let a = Fulcrum::start(&config(pa, extra_a, &forward, top), pa).await;
    let pb = free_port();
    let b = Fulcrum::start(&config(pb, extra_b, &reverse, top), pb).await;
    (a, b)
}

/// GET `path` with `headers` through `f`, expecting 200; the answering backend's name.
async fn pick(c: &reqwest::Client, f: &Fulcrum, path: &str, headers: &[(&str, &str)]) -> String {
    let r = get_with(c, &f.url(path), None, headers).await;
    assert_eq!(r.status, 200, "GET {path} {headers:?}: {r:?}");
    r.body.trim().to_string()
}

/// Asserts every backend answered at least one key, so agreement was not trivial.
fn assert_spread(picks: &HashMap<String, usize>, bs: &[TestBackend], what: &str) {
    for b in bs {
        assert!(
            picks.get(b.name()).copied().unwrap_or(0) > 0,
            "{what}: backend {} got no key at all: {picks:?}",
            b.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_maps_every_key_to_the_same_backend_on_both_instances() {
    let bs = backends().await;
    let extra = "    algorithm: consistent\n    hash_key: header:x-shard";
    let (a, b) = two_instances(&bs, extra, extra, "").await;
    let c = client();

    let mut picks: HashMap<String, usize> = HashMap::new();
    let mut disagreements = Vec::new();
    for i in 0..200 {
        let key = format!("user-{i}");
        let on_a = pick(&c, &a, "/", &[("x-shard", &key)]).await;
        let on_b = pick(&c, &b, "/", &[("x-shard", &key)]).await;
        if on_a != on_b {
            disagreements.push(format!("{key}: A {on_a}, B {on_b}"));
        }
        *picks.entry(on_a).or_default() += 1;
    }
    assert!(
        disagreements.is_empty(),
        "consistent on header: {} of 200 keys differ: {disagreements:?}",
        disagreements.len()
    );
    assert_spread(&picks, &bs, "consistent on header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_on_the_path_agrees_too() {
    let bs = backends().await;
    let extra = "    algorithm: consistent\n    hash_key: path";
    let (a, b) = two_instances(&bs, extra, extra, "").await;
    let c = client();

    let mut picks: HashMap<String, usize> = HashMap::new();
    for i in 0..200 {
        let path = format!("/objects/{i}.jpg");
        let on_a = pick(&c, &a, &path, &[]).await;
        let on_b = pick(&c, &b, &path, &[]).await;
        assert_eq!(on_a, on_b, "consistent on path {path}: A and B differ");
        // The same key again on A: a key's backend does not move between requests.
        assert_eq!(pick(&c, &a, &path, &[]).await, on_a, "{path} again on A");
        *picks.entry(on_a).or_default() += 1;
    }
    assert_spread(&picks, &bs, "consistent on path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_maps_every_client_ip_to_the_same_backend_on_both_instances() {
    let bs = backends().await;
    let extra = "    algorithm: ip_hash";
    // Behind a trusted proxy (127.0.0.1), ip_hash hashes the forwarded client address.
    let top = "forwarding:\n  trusted_proxies: [127.0.0.1/32]";
    let (a, b) = two_instances(&bs, extra, extra, top).await;
    let c = client();

    // The loopback client itself (no forwarding header): one backend, the same on both.
    let direct_a = pick(&c, &a, "/", &[]).await;
    let direct_b = pick(&c, &b, "/", &[]).await;
    assert_eq!(direct_a, direct_b, "ip_hash of 127.0.0.1: A and B differ");
    for _ in 0..5 {
        assert_eq!(
            pick(&c, &a, "/", &[]).await,
            direct_a,
            "127.0.0.1 again on A"
        );
        assert_eq!(
            pick(&c, &b, "/", &[]).await,
            direct_a,
            "127.0.0.1 again on B"
        );
    }

    let mut picks: HashMap<String, usize> = HashMap::new();
    for i in 1..=50 {
        let ip = format!("198.51.100.{i}");
        let xff = [("x-forwarded-for", ip.as_str())];
        let on_a = pick(&c, &a, "/", &xff).await;
        let on_b = pick(&c, &b, "/", &xff).await;
        assert_eq!(
            on_a, on_b,
            "ip_hash of forwarded client {ip}: A and B differ"
        );
        *picks.entry(on_a).or_default() += 1;
    }
    assert_spread(&picks, &bs, "ip_hash over 50 forwarded clients");
}

/// The value of cookie `name` in a `Set-Cookie` header.
fn cookie_value<'a>(set_cookie: &'a str, name: &str) -> &'a str {
    let first = set_cookie.split(';').next().unwrap_or("");
    first
        .strip_prefix(&format!("{name}="))
        .unwrap_or_else(|| panic!("Set-Cookie {set_cookie:?} does not set {name}"))
}

/// Sends cookieless requests to `f` until every backend has answered once (round_robin
/// fallback: one turn each), and returns each backend's `SID` cookie value.
async fn cookies_of(c: &reqwest::Client, f: &Fulcrum, n: usize) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for i in 0..n {
        let r = get(c, &f.url("/")).await;
        assert_eq!(r.status, 200, "cookieless request #{i}: {r:?}");
        let set = r.header_all("set-cookie");
        assert_eq!(
            set.len(),
            1,
            "cookieless request #{i}: one Set-Cookie: {r:?}"
        );
        let value = cookie_value(&set[0], "SID").to_string();
        out.insert(r.body.trim().to_string(), value);
    }
    assert_eq!(
        out.len(),
        n,
        "the fallback visits every backend once: {out:?}"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_set_by_one_instance_is_honoured_by_another_with_the_same_secret() {
    let bs = backends().await;
    let extra =
        "    algorithm: cookie\n    sticky: {cookie: SID, secret: \"fleet-secret-shared-by-all\"}";
    let (a, b) = two_instances(&bs, extra, extra, "").await;
    let c = client();

    let issued_by_a = cookies_of(&c, &a, bs.len()).await;
    for backend in &bs {
        let name = backend.name();
        let cookie = format!("SID={}", issued_by_a[name]);
        for i in 0..3 {
            let r = get_with(&c, &b.url("/"), None, &[("cookie", &cookie)]).await;
            assert_eq!(r.status, 200, "{name}'s cookie from A on B: {r:?}");
            assert_eq!(
                r.body.trim(),
                name,
                "request #{i} on B with the cookie A issued for {name}"
            );
            assert!(
                r.header("set-cookie").is_none(),
                "B honours A's cookie as its own and sets no new one: {r:?}"
            );
        }
    }
    // And B issues the very same values.
    let issued_by_b = cookies_of(&c, &b, bs.len()).await;
    assert_eq!(
        issued_by_a, issued_by_b,
        "the same secret gives the same cookies"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_different_secret_another_instance_ignores_the_cookie_and_reissues() {
    let bs = backends().await;
    let extra_a =
        "    algorithm: cookie\n    sticky: {cookie: SID, secret: \"fleet-secret-of-instance-a\"}";
    let extra_b = "    algorithm: cookie\n    sticky: {cookie: SID, secret: \"another-secret-on-instance-b\"}";
    let (a, b) = two_instances(&bs, extra_a, extra_b, "").await;
    let c = client();

    let issued_by_a = cookies_of(&c, &a, bs.len()).await;
    let mut reissued: HashMap<String, String> = HashMap::new();
    for backend in &bs {
        let name = backend.name();
        let cookie = format!("SID={}", issued_by_a[name]);
        // B does not know A's value: its fallback picks, and the response pins the client to
        // the backend that answered with B's own cookie.
        let r = get_with(&c, &b.url("/"), None, &[("cookie", &cookie)]).await;
        assert_eq!(r.status, 200, "{name}'s cookie from A on B: {r:?}");
        let set = r.header_all("set-cookie");
        assert_eq!(set.len(), 1, "B re-issues the cookie: {r:?}");
        let value = cookie_value(&set[0], "SID").to_string();
        let values_of_a: HashSet<&String> = issued_by_a.values().collect();
        assert!(
            !values_of_a.contains(&value),
            "B's cookie {value:?} must not be one of A's: {issued_by_a:?}"
        );
        let answered = r.body.trim().to_string();
        if let Some(previous) = reissued.insert(answered.clone(), value.clone()) {
            assert_eq!(previous, value, "B's cookie for {answered} is stable");
        }
        // The re-issued cookie sticks on B.
        let again = get_with(
            &c,
            &b.url("/"),
            None,
            &[("cookie", &format!("SID={value}"))],
        )
        .await;
        assert_eq!(again.body.trim(), answered, "B's own cookie sticks on B");
        assert!(again.header("set-cookie").is_none(), "{again:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_health_is_unavailable_until_the_proxy_serves() {
    // The health check of `slow` takes its whole timeout (2 s): the first round, which the
    // proxy waits for, ends only then (and `fast` keeps the group available). A readiness
    // probe on /health that passed before it would send traffic to a pod whose proxy port
    // still refuses connections.
    let slow = TestBackend::start_delayed("slow", Duration::from_secs(4)).await;
    let fast = TestBackend::start("fast").await;
    let port = free_port();
    let admin = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin}"
upstreams:
  app:
    health_check: {{type: http, interval: 5s, timeout: 2s}}
    backends: [{{addr: "{}"}}, {{addr: "{}"}}]
routes:
  - upstream: app
"#,
        slow.addr(),
        fast.addr()
    );
    let starting = tokio::spawn(async move { Fulcrum::start(&yaml, port).await });
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    let health = format!("http://127.0.0.1:{admin}/health");
    let deadline = Instant::now() + START_TIMEOUT;
    let mut answers: Vec<(u16, String)> = Vec::new();
    loop {
        if let Ok(r) = c.get(&health).send().await {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            answers.push((status, body));
            if status == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "/health never answered 200; {} answers, the first {:?}, the last {:?}",
            answers.len(),
            answers.first(),
            answers.last()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The admin listener is up at once, during the 2 s round: it says it is starting.
    assert_eq!(
        answers[0],
        (
            503,
            "starting: waiting for the first health-check round\n".to_string()
        ),
        "the first /health answer, while the first health-check round runs"
    );
    // Once /health says ok, the proxy accepts (a bounded wait covers the services starting
    // one after the other; before the fix /health said ok the whole 2 s round earlier).
    assert!(
        wait_for_port(port, Duration::from_millis(500)).await,
        "/health answered 200 while the proxy port {port} did not accept yet"
    );
    let f = starting.await.expect("fulcrum start task");
    drop(f);
}
