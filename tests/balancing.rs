//! Load-balancing algorithms: round_robin, weighted_round_robin (smooth), random (weighted),
//! consistent (Ketama) with the different hash keys.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::collections::{HashMap, HashSet};

use support::*;

/// Starts `n` backends named b0..b(n-1).
async fn backends(names: &[&str]) -> Vec<TestBackend> {
    let mut out = Vec::new();
    for name in names {
        out.push(TestBackend::start(name).await);
    }
    out
}

/// YAML for one upstream `app` with the given algorithm extra lines and (backend, weight) list,
/// one catch-all route.
fn config(port: u16, upstream_extra: &str, list: &[(&TestBackend, Option<u32>)]) -> String {
    let mut backends = String::new();
    for (b, w) in list {
        backends.push_str(&format!("      - addr: \"{}\"\n", b.addr()));
        if let Some(w) = w {
            backends.push_str(&format!("        weight: {w}\n"));
        }
    }
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
{upstream_extra}
    backends:
{backends}
routes:
  - upstream: app
"#
    )
}

/// Names of the backends sorted by address (port), the order pingora's RoundRobin uses.
fn names_by_port(list: &[&TestBackend]) -> Vec<String> {
    let mut v: Vec<&TestBackend> = list.to_vec();
    v.sort_by_key(|b| b.port());
    v.iter().map(|b| b.name().to_string()).collect()
}

/// Asserts `seq` is the cycle `pattern` repeated, starting at some offset into it.
fn assert_cyclic(seq: &[String], pattern: &[String], what: &str) {
    let n = pattern.len();
    let ok = (0..n).any(|offset| {
        seq.iter()
            .enumerate()
            .all(|(i, s)| *s == pattern[(offset + i) % n])
    });
    assert!(
        ok,
        "{what}: expected a rotation of {pattern:?} repeated, got {seq:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_rotates_in_address_order() {
    let bs = backends(&["x", "y", "z"]).await;
    // Config order deliberately differs from address order.
    let list = [(&bs[2], None), (&bs[0], None), (&bs[1], None)];
    let port = free_port();
    let f = Fulcrum::start(&config(port, "    algorithm: round_robin", &list), port).await;
    let c = client();

    let seq = bodies(&c, &f.url("/"), None, 12).await;
    let order = names_by_port(&[&bs[0], &bs[1], &bs[2]]);
    assert_cyclic(&seq, &order, "round_robin with equal weights");
    for b in &bs {
        assert_eq!(b.count(), 4, "backend {} request count", b.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_the_default() {
    let bs = backends(&["p", "q"]).await;
    let list = [(&bs[0], None), (&bs[1], None)];
    let port = free_port();
    let f = Fulcrum::start(&config(port, "", &list), port).await;
    let c = client();
    let seq = bodies(&c, &f.url("/"), None, 8).await;
    let order = names_by_port(&[&bs[0], &bs[1]]);
    assert_cyclic(&seq, &order, "default algorithm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_respects_weights() {
    let bs = backends(&["heavy", "light"]).await;
    let list = [(&bs[0], Some(2)), (&bs[1], Some(1))];
    let port = free_port();
    let f = Fulcrum::start(&config(port, "    algorithm: round_robin", &list), port).await;
    let c = client();
    let seq = bodies(&c, &f.url("/"), None, 30).await;
    let heavy = seq.iter().filter(|s| *s == "heavy").count();
    let light = seq.iter().filter(|s| *s == "light").count();
    assert_eq!(
        (heavy, light),
        (20, 10),
        "2:1 weights over 30 requests: {seq:?}"
    );
    // pingora's weighted RoundRobin expands weights in address order, e.g. [heavy, heavy, light].
    let mut by_port = vec![(&bs[0], 2), (&bs[1], 1)];
    by_port.sort_by_key(|(b, _)| b.port());
    let mut pattern = Vec::new();
    for (b, weight) in by_port {
        for _ in 0..weight {
            pattern.push(b.name().to_string());
        }
    }
    assert_cyclic(&seq, &pattern, "round_robin with weights 2:1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smooth_weighted_round_robin_exact_sequence() {
    let bs = backends(&["w0", "w1", "w2"]).await;
    // Config labels a, b, c are assigned so that address order differs from config order
    // (b's port is above c's): the test pins that ties are broken by config order.
    let mut ports: Vec<&TestBackend> = bs.iter().collect();
    ports.sort_by_key(|b| b.port());
    let (a, b, c) = (ports[0], ports[2], ports[1]);
    let names_cfg = [("a", a), ("b", b), ("c", c)];
    // Map each answer (the backend's own name) back to its config label.
    let label: HashMap<String, &str> = names_cfg
        .iter()
        .map(|(l, be)| (be.name().to_string(), *l))
        .collect();

    let list = [(a, Some(5)), (b, Some(1)), (c, Some(1))];
    let port = free_port();
    let f = Fulcrum::start(
        &config(port, "    algorithm: weighted_round_robin", &list),
        port,
    )
    .await;
    let cl = client();
    let seq: Vec<&str> = bodies(&cl, &f.url("/"), None, 21)
        .await
        .iter()
        .map(|s| label[s.as_str()])
        .collect();
    let cycle = ["a", "a", "b", "a", "c", "a", "a"];
    let want: Vec<&str> = cycle.iter().cycle().take(21).copied().collect();
    assert_eq!(
        seq, want,
        "smooth weighted round robin (nginx) with weights a=5,b=1,c=1 in config order a,b,c"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smooth_weighted_round_robin_equal_weights_rotates_in_config_order() {
    let bs = backends(&["r", "s", "t"]).await;
    let list = [(&bs[1], None), (&bs[2], None), (&bs[0], None)];
    let port = free_port();
    let f = Fulcrum::start(
        &config(port, "    algorithm: weighted_round_robin", &list),
        port,
    )
    .await;
    let c = client();
    let seq = bodies(&c, &f.url("/"), None, 9).await;
    let want: Vec<String> = ["s", "t", "r"]
        .iter()
        .cycle()
        .take(9)
        .map(|s| s.to_string())
        .collect();
    assert_eq!(seq, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_respects_weights() {
    let bs = backends(&["three", "one"]).await;
    let list = [(&bs[0], Some(3)), (&bs[1], Some(1))];
    let port = free_port();
    let f = Fulcrum::start(&config(port, "    algorithm: random", &list), port).await;
    let c = client();

    let n = 1200;
    let seq = bodies(&c, &f.url("/"), None, n).await;
    let three = seq.iter().filter(|s| *s == "three").count();
    let one = seq.iter().filter(|s| *s == "one").count();
    assert_eq!(three + one, n);
    let share = three as f64 * 100.0 / n as f64;
    assert!(
        (70.0..=80.0).contains(&share),
        "weights 3:1 should give ~75% to the heavy backend, got {share:.1}% ({three}/{n})"
    );
    assert_eq!(bs[0].count(), three);
    assert_eq!(bs[1].count(), one);

    // Not a rotation in disguise: a 3:1 rotation never picks the light backend twice in a
    // row; over 1200 random picks that happens with overwhelming probability.
    let longest_one_run = seq
        .split(|s| s != "one")
        .map(|run| run.len())
        .max()
        .unwrap_or(0);
    assert!(
        longest_one_run >= 2,
        "random selection should sometimes pick the light backend twice in a row"
    );
}

/// Sends `per_key` requests for each key (built into a request by `send`) and asserts that
/// every key always lands on the same backend. Returns key -> backend.
async fn stickiness<F, Fut>(keys: &[String], per_key: usize, mut send: F) -> HashMap<String, String>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    let mut map: HashMap<String, String> = HashMap::new();
    for round in 0..per_key {
        for key in keys {
            let r = send(key.clone()).await;
            assert_eq!(r.status, 200, "key {key}: {r:?}");
            match map.get(key) {
                None => {
                    map.insert(key.clone(), r.body.clone());
                }
                Some(prev) => assert_eq!(
                    prev, &r.body,
                    "key {key} moved from {prev} to {} on round {round}",
                    r.body
                ),
            }
        }
    }
    map
}

fn spread(map: &HashMap<String, String>) -> usize {
    map.values().collect::<HashSet<_>>().len()
}

async fn consistent_proxy(hash_key: Option<&str>) -> (Vec<TestBackend>, Fulcrum) {
    let bs = backends(&["k1", "k2", "k3"]).await;
    let extra = match hash_key {
        Some(k) => format!("    algorithm: consistent\n    hash_key: \"{k}\""),
        None => "    algorithm: consistent".to_string(),
    };
    let port = free_port();
    let list = [(&bs[0], None), (&bs[1], None), (&bs[2], None)];
    let f = Fulcrum::start(&config(port, &extra, &list), port).await;
    (bs, f)
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_client_ip_default_is_sticky() {
    let (bs, f) = consistent_proxy(None).await;
    let c = client();
    // Every request comes from 127.0.0.1: all on one backend, whatever the path or headers.
    let mut seen = HashSet::new();
    for i in 0..30 {
        let r = get_with(
            &c,
            &f.url(&format!("/p{i}?q={i}")),
            None,
            &[("x-user", &format!("u{i}"))],
        )
        .await;
        assert_eq!(r.status, 200);
        seen.insert(r.body);
    }
    assert_eq!(
        seen.len(),
        1,
        "client_ip hashing from one IP must stick: {seen:?}"
    );
    // Also across fresh connections.
    for _ in 0..5 {
        let r = get(&client_no_pool(), &f.url("/")).await;
        assert!(
            seen.contains(&r.body),
            "fresh connection moved to {}",
            r.body
        );
    }
    let total: usize = bs.iter().map(|b| b.count()).sum();
    assert_eq!(total, 35);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_client_ip_explicit_is_sticky() {
    let (_bs, f) = consistent_proxy(Some("client_ip")).await;
    let c = client();
    let seq = bodies(&c, &f.url("/"), None, 20).await;
    let set: HashSet<_> = seq.iter().collect();
    assert_eq!(set.len(), 1, "{seq:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_header_key_is_sticky_and_spreads() {
    let (_bs, f) = consistent_proxy(Some("header:X-User")).await;
    let c = client();
    let url = f.url("/");
    let map = stickiness(&keys("user-", 30), 3, |k| {
        let c = c.clone();
        let url = url.clone();
        async move { get_with(&c, &url, None, &[("x-user", &k)]).await }
    })
    .await;
    assert!(
        spread(&map) >= 2,
        "30 different header values should not all hash to one backend: {map:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_cookie_key_is_sticky_and_spreads() {
    let (_bs, f) = consistent_proxy(Some("cookie:session")).await;
    let c = client();
    let url = f.url("/");
    let map = stickiness(&keys("sess-", 30), 3, |k| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let cookie = format!("theme=dark; session={k}; lang=en");
            get_with(&c, &url, None, &[("cookie", &cookie)]).await
        }
    })
    .await;
    assert!(spread(&map) >= 2, "{map:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_path_key_is_sticky_and_spreads() {
    let (_bs, f) = consistent_proxy(Some("path")).await;
    let c = client();
    let base = f.url("");
    let map = stickiness(&keys("/item/", 30), 3, |k| {
        let c = c.clone();
        let url = format!("{base}{k}");
        async move { get(&c, &url).await }
    })
    .await;
    assert!(spread(&map) >= 2, "{map:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_query_key_is_sticky_and_spreads() {
    let (_bs, f) = consistent_proxy(Some("query:user")).await;
    let c = client();
    let base = f.url("/search");
    let map = stickiness(&keys("q", 30), 3, |k| {
        let c = c.clone();
        // Other parameters vary per request and must not matter.
        let url = format!("{base}?a=1&user={k}&n={}", k.len());
        async move { get(&c, &url).await }
    })
    .await;
    assert!(spread(&map) >= 2, "{map:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_missing_key_still_served() {
    let (bs, f) = consistent_proxy(Some("header:X-User")).await;
    let c = client();
    // No X-User header: the fallback (round_robin by default) picks a backend.
    let seq = bodies(&c, &f.url("/"), None, 9).await;
    assert_eq!(seq.len(), 9);
    let total: usize = bs.iter().map(|b| b.count()).sum();
    assert_eq!(total, 9);
    let set: HashSet<_> = seq.iter().collect();
    assert!(
        set.len() >= 2,
        "without the key, the round_robin fallback should spread requests: {seq:?}"
    );
}
