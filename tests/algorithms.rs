//! The load-aware, keyed and failover algorithms through the real binary: least_connections,
//! p2c, ip_hash, cookie (sticky sessions), first, consistent with a fallback, random; and the
//! in-flight / request / failure accounting the admin `/status` document shows.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use support::*;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// YAML for one upstream `app` (algorithm lines in `upstream_extra`, indented 4 spaces) over
/// `backends` (addresses, in config order), one catch-all route, an admin listener when
/// `admin` is set, and `top_extra` appended at top level.
fn config(
    port: u16,
    admin: Option<u16>,
    upstream_extra: &str,
    backends: &[String],
    top_extra: &str,
) -> String {
    let mut list = String::new();
    for addr in backends {
        list.push_str(&format!("      - addr: \"{addr}\"\n"));
    }
    let admin = admin
        .map(|p| format!("admin:\n  addr: \"127.0.0.1:{p}\"\n"))
        .unwrap_or_default();
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{admin}upstreams:
  app:
{upstream_extra}
    backends:
{list}
routes:
  - upstream: app
{top_extra}
"#
    )
}

fn addrs(list: &[&TestBackend]) -> Vec<String> {
    list.iter().map(|b| b.addr()).collect()
}

/// Starts backends with the given names.
async fn backends(names: &[&str]) -> Vec<TestBackend> {
    let mut out = Vec::new();
    for name in names {
        out.push(TestBackend::start(name).await);
    }
    out
}

/// Starts fulcrum with an admin listener and waits for both ports.
async fn start_with_admin(yaml: &str, port: u16, admin_port: u16) -> Fulcrum {
    let mut f = Fulcrum::start(yaml, port).await;
    f.wait_listening(admin_port).await;
    f
}

/// One backend in the admin `/status` document.
#[derive(Debug, Clone)]
struct BackendStat {
    addr: String,
    healthy: bool,
    in_flight: u64,
    requests: u64,
    failures: u64,
}

/// Reads `/status` from the admin listener.
struct Admin {
    port: u16,
    client: reqwest::Client,
}

impl Admin {
    fn new(port: u16) -> Admin {
        Admin {
            port,
            client: client(),
        }
    }

    /// The raw `/status` JSON.
    async fn status(&self) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}/status", self.port);
        let r = get(&self.client, &url).await;
        assert_eq!(r.status, 200, "GET {url}: {r:?}");
        serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("/status is not JSON ({e}): {}", r.body))
    }

    /// The backends of upstream `app`, in config order.
    async fn backends(&self) -> Vec<BackendStat> {
        let status = self.status().await;
        let list = status["upstreams"]["app"]["backends"]
            .as_array()
            .unwrap_or_else(|| panic!("no upstreams.app.backends in /status: {status}"));
        let num = |b: &serde_json::Value, key: &str| {
            b[key]
                .as_u64()
                .unwrap_or_else(|| panic!("backend without numeric `{key}` in /status: {b}"))
        };
        list.iter()
            .map(|b| BackendStat {
                addr: b["addr"].as_str().unwrap_or_default().to_string(),
                healthy: b["healthy"]
                    .as_bool()
                    .unwrap_or_else(|| panic!("backend without boolean `healthy`: {b}")),
                in_flight: num(b, "in_flight"),
                requests: num(b, "requests"),
                failures: num(b, "failures"),
            })
            .collect()
    }

    async fn in_flight(&self) -> Vec<u64> {
        self.backends().await.iter().map(|b| b.in_flight).collect()
    }

    /// Polls (every 20 ms, at most `timeout`) until no backend has a request in flight.
    /// Returns the last reading.
    async fn wait_idle(&self, timeout: Duration) -> Vec<BackendStat> {
        let deadline = Instant::now() + timeout;
        let max_iterations = (timeout.as_millis() / 20 + 2) as usize;
        let mut last = self.backends().await;
        for _ in 0..max_iterations {
            if last.iter().all(|b| b.in_flight == 0) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            last = self.backends().await;
        }
        last
    }
}

/// Polls `cond` every 5 ms for at most `timeout`; returns whether it became true.
async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let max_iterations = (timeout.as_millis() / 5 + 2) as usize;
    for _ in 0..max_iterations {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

/// A GET running in the background.
fn spawn_get(c: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> JoinHandle<Resp> {
    let c = c.clone();
    let url = url.to_string();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::spawn(async move {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        request(&c, "GET", &url, None, &h, None).await
    })
}

fn count_by_body(bodies: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for b in bodies {
        *m.entry(b.clone()).or_insert(0) += 1;
    }
    m
}

// ---------------------------------------------------------------------------------------------
// least_connections
// ---------------------------------------------------------------------------------------------

/// Builds the state "the slow backend holds 3 requests, the others none" without relying on
/// timing: least_connections only sends a request to the slow backend when it is not more
/// loaded than the others, so the others are first loaded with short-lived requests
/// (`x-test-delay-ms`) up to the slow backend's level, then plain requests are sent until one
/// lands on the slow backend (ties rotate, so one does within three). Plain requests that land
/// on a fast backend finish at once. Then, once the short-lived requests are over, 20
/// sequential requests must all avoid the slow backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_avoids_a_backend_holding_slow_requests() {
    const HELD: u64 = 3;
    let a = TestBackend::start("fast-a").await;
    let slow = TestBackend::start_delayed("slow", Duration::from_secs(3)).await;
    let b = TestBackend::start("fast-b").await;
    let (port, admin_port) = (free_port(), free_port());
    let yaml = config(
        port,
        Some(admin_port),
        "    algorithm: least_connections",
        &addrs(&[&a, &slow, &b]),
        "",
    );
    let f = start_with_admin(&yaml, port, admin_port).await;
    let admin = Admin::new(admin_port);
    let c = client();
    let url = f.url("/");
    let (ia, is, ib) = (0, 1, 2); // config indexes

    let mut held: Vec<JoinHandle<Resp>> = Vec::new();
    let mut short: Vec<JoinHandle<Resp>> = Vec::new();
    for _ in 0..60 {
        let load = admin.in_flight().await;
        if load[is] >= HELD {
            break;
        }
        if load[ia].min(load[ib]) < load[is] {
            // The slow backend is strictly more loaded than one of the fast ones: this goes
            // to a fast one and keeps it busy for a moment.
            let before = a.count() + b.count();
            short.push(spawn_get(&c, &url, &[("x-test-delay-ms", "400")]));
            assert!(
                wait_until(Duration::from_secs(5), || a.count() + b.count() > before).await,
                "a short-lived request did not reach a fast backend; slow backend has {} requests",
                slow.count()
            );
        } else {
            let before = slow.count();
            let h = spawn_get(&c, &url, &[]);
            assert!(
                wait_until(Duration::from_secs(5), || slow.count() > before
                    || h.is_finished())
                .await,
                "a plain request neither finished nor reached the slow backend"
            );
            if slow.count() > before {
                held.push(h);
            } else {
                let r = h.await.expect("request task");
                assert_eq!(r.status, 200, "{r:?}");
                assert_ne!(r.body, "slow");
            }
        }
    }
    assert_eq!(
        held.len() as u64,
        HELD,
        "could not load the slow backend with {HELD} requests; in flight: {:?}",
        admin.in_flight().await
    );
    assert_eq!(
        slow.count() as u64,
        HELD,
        "only the held requests reached the slow backend"
    );

    // Let the short-lived requests on the fast backends finish.
    for h in short {
        let r = h.await.expect("request task");
        assert_eq!(r.status, 200, "{r:?}");
        assert_ne!(
            r.body, "slow",
            "a short-lived request landed on the loaded slow backend"
        );
    }
    let load = {
        let mut load = admin.in_flight().await;
        for _ in 0..100 {
            if load[ia] == 0 && load[ib] == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            load = admin.in_flight().await;
        }
        load
    };
    assert_eq!(
        load,
        vec![0, HELD, 0],
        "/status in_flight [fast-a, slow, fast-b] while the slow backend holds {HELD} requests"
    );

    let (a0, b0) = (a.count(), b.count());
    let seq = bodies(&c, &url, None, 20).await;
    let load_after = admin.in_flight().await;
    assert!(
        held.iter().all(|h| !h.is_finished()),
        "the held requests finished early; the test ran too slowly to mean anything"
    );
    assert_eq!(
        slow.count() as u64,
        HELD,
        "least_connections sent new requests to the backend holding {HELD} slow ones: {seq:?}"
    );
    assert!(!seq.iter().any(|s| s == "slow"), "{seq:?}");
    assert_eq!(a.count() - a0 + b.count() - b0, 20);
    assert!(
        a.count() > a0 && b.count() > b0,
        "ties between the idle backends should rotate: {seq:?}"
    );
    assert_eq!(
        load_after[is], HELD,
        "/status in_flight of the slow backend after the quick requests: {load_after:?}"
    );

    for h in held {
        let r = h.await.expect("request task");
        assert_eq!((r.status, r.body.as_str()), (200, "slow"));
    }
    let end = admin.wait_idle(Duration::from_secs(5)).await;
    assert!(end.iter().all(|b| b.in_flight == 0), "{end:?}");
    assert_eq!(end[is].requests, HELD);
}

// ---------------------------------------------------------------------------------------------
// Accounting under a concurrent, messy burst
// ---------------------------------------------------------------------------------------------

/// What happened to the requests of a burst.
#[derive(Debug, Default)]
struct BurstOutcome {
    ok: usize,
    server_error: usize,
    aborted: usize,
    unexpected: Vec<String>,
}

/// 200 concurrent requests through `algorithm` over three live backends and one dead one:
/// plain requests, short delays, backend 500s, and requests whose backend answers after 2 s
/// but whose client gives up after 200 ms. Afterwards every in-flight count must return to
/// exactly 0, every received request must have been counted, and the dead backend must show
/// failures.
async fn burst_accounting(algorithm: &str) {
    const N: usize = 200;
    const SLOW_MS: u64 = 2000;
    let live = backends(&["l0", "l1", "l2"]).await;
    let dead_port = free_port();
    let dead = format!("127.0.0.1:{dead_port}");
    let (port, admin_port) = (free_port(), free_port());
    let list = vec![live[0].addr(), dead.clone(), live[1].addr(), live[2].addr()];
    let dead_index = 1;
    let yaml = config(
        port,
        Some(admin_port),
        &format!("    algorithm: {algorithm}"),
        &list,
        "",
    );
    let f = start_with_admin(&yaml, port, admin_port).await;
    let admin = Admin::new(admin_port);
    let url = f.url("/");
    let normal = client();
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("build reqwest client");

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(N);
    for i in 0..N {
        let kind = i % 10;
        let (c, headers): (reqwest::Client, Vec<(&str, String)>) = match kind {
            0 | 1 => (
                impatient.clone(),
                vec![("x-test-delay-ms", SLOW_MS.to_string())],
            ),
            2 => (normal.clone(), vec![("x-test-status", "500".to_string())]),
            3 => (normal.clone(), vec![("x-test-delay-ms", "30".to_string())]),
            _ => (normal.clone(), vec![]),
        };
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            (kind, try_request(&c, "GET", &url, None, &h, None).await)
        }));
    }
    let mut out = BurstOutcome::default();
    for t in tasks {
        let (kind, result) = t.await.expect("request task");
        match (kind, result) {
            (0 | 1, Err(e)) if e.is_timeout() => out.aborted += 1,
            (2, Ok(r)) if r.status == 500 => out.server_error += 1,
            (3..=9, Ok(r)) if r.status == 200 && r.body.starts_with('l') => out.ok += 1,
            (kind, other) => out.unexpected.push(format!("kind {kind}: {other:?}")),
        }
    }
    assert!(
        out.unexpected.is_empty(),
        "{algorithm}: unexpected outcomes: {:#?}",
        out.unexpected
    );
    assert_eq!(
        (out.ok, out.server_error, out.aborted),
        (N * 7 / 10, N / 10, N * 2 / 10),
        "{algorithm}: {out:?}"
    );

    // The abandoned requests' backends answer SLOW_MS after they got them; then nothing may
    // remain in flight.
    let wait = Duration::from_millis(SLOW_MS).saturating_sub(started.elapsed());
    tokio::time::sleep(wait).await;
    let stats = admin.wait_idle(Duration::from_secs(5)).await;
    assert!(
        stats.iter().all(|b| b.in_flight == 0),
        "{algorithm}: in_flight did not return to 0 after the burst: {stats:#?}"
    );

    let served = (out.ok + out.server_error) as u64;
    let live_requests: u64 = stats
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != dead_index)
        .map(|(_, b)| b.requests)
        .sum();
    assert!(
        live_requests >= served,
        "{algorithm}: live backends counted {live_requests} requests, {served} were served: {stats:#?}"
    );
    for (b, s) in live.iter().zip([&stats[0], &stats[2], &stats[3]]) {
        assert_eq!(s.addr, b.addr());
        assert!(
            s.requests >= b.count() as u64,
            "{algorithm}: backend {} received {} requests but /status counts {}",
            b.name(),
            b.count(),
            s.requests
        );
    }
    let d = &stats[dead_index];
    assert_eq!(d.addr, dead);
    assert!(
        d.failures > 0,
        "{algorithm}: the dead backend shows no failures: {stats:#?}"
    );
    assert_eq!(
        d.failures, d.requests,
        "{algorithm}: every attempt on the dead backend fails: {d:?}"
    );
    let received: usize = live.iter().map(|b| b.count()).sum();
    assert!(
        received as u64 >= served,
        "{algorithm}: backends received {received}, {served} were served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_burst_accounting_returns_to_zero() {
    burst_accounting("least_connections").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_burst_accounting_returns_to_zero() {
    burst_accounting("p2c").await;
}

/// A client that gives up while its backend is still working says nothing about the backend:
/// it must not count as a backend failure, and must not get a healthy backend ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_aborts_are_not_backend_failures() {
    let b = TestBackend::start("only").await;
    let (port, admin_port) = (free_port(), free_port());
    let yaml = config(port, Some(admin_port), "", &[b.addr()], "");
    let f = start_with_admin(&yaml, port, admin_port).await;
    let admin = Admin::new(admin_port);
    let url = f.url("/");
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(150))
        .build()
        .expect("build reqwest client");

    for i in 0..4 {
        let before = b.count();
        let r = try_request(
            &impatient,
            "GET",
            &url,
            None,
            &[("x-test-delay-ms", "1000")],
            None,
        )
        .await;
        match &r {
            Err(e) if e.is_timeout() => {}
            Ok(resp) => panic!(
                "request #{i} (the backend takes 1 s, the client gives up after 150 ms) was \
                 answered {} {:?} after {i} abandoned requests: client aborts must not eject a \
                 healthy backend; /status: {:?}",
                resp.status,
                resp.body,
                admin.backends().await
            ),
            Err(e) => panic!("abandoned request #{i}: expected a client timeout, got {e:?}"),
        }
        assert_eq!(
            b.count(),
            before + 1,
            "abandoned request #{i} reached the backend"
        );
    }
    let stats = admin.wait_idle(Duration::from_secs(5)).await;
    assert_eq!(stats[0].in_flight, 0, "{stats:?}");
    assert_eq!(stats[0].requests, 4, "{stats:?}");

    let r = get(&client(), &url).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "only"),
        "after 4 requests abandoned by their client, the healthy backend must still serve; \
         /status: {:?}",
        admin.backends().await
    );
    let stats = admin.backends().await;
    assert_eq!(
        (stats[0].failures, stats[0].healthy),
        (0, true),
        "client aborts counted against the backend: {stats:?}"
    );
}

/// least_connections compares the loads of the backends that can take the request: a backend
/// that cannot (connection refused, ejected, unhealthy) has no requests in flight, and must
/// not make its neighbour in config order take every request. Nine long requests, sent one at
/// a time, each counted before the next is picked, are exactly three per live backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_spreads_evenly_around_a_dead_backend() {
    let live = backends(&["n0", "n1", "n2"]).await;
    let dead = format!("127.0.0.1:{}", free_port());
    let (port, admin_port) = (free_port(), free_port());
    let list = vec![live[0].addr(), dead, live[1].addr(), live[2].addr()];
    let yaml = config(
        port,
        Some(admin_port),
        "    algorithm: least_connections",
        &list,
        "",
    );
    let f = start_with_admin(&yaml, port, admin_port).await;
    let admin = Admin::new(admin_port);
    let c = client();
    let url = f.url("/");

    let mut held = Vec::new();
    for i in 0..9 {
        let before: usize = live.iter().map(|b| b.count()).sum();
        held.push(spawn_get(&c, &url, &[("x-test-delay-ms", "1500")]));
        assert!(
            wait_until(Duration::from_secs(5), || {
                live.iter().map(|b| b.count()).sum::<usize>() > before
            })
            .await,
            "long request #{i} reached no live backend"
        );
    }
    let counts: Vec<usize> = live.iter().map(|b| b.count()).collect();
    let load = admin.in_flight().await;
    assert_eq!(
        counts,
        vec![3, 3, 3],
        "9 long requests over 3 live backends by least_connections (config order n0, dead, \
         n1, n2); /status in_flight {load:?}"
    );
    for h in held {
        let r = h.await.expect("request task");
        assert_eq!(r.status, 200, "{r:?}");
    }
    let end = admin.wait_idle(Duration::from_secs(5)).await;
    assert!(end.iter().all(|b| b.in_flight == 0), "{end:?}");
}

// ---------------------------------------------------------------------------------------------
// ip_hash
// ---------------------------------------------------------------------------------------------

fn xff_keys() -> Vec<String> {
    (0..30)
        .map(|i| format!("10.1.{}.{}", i / 7, 10 + i))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_uses_trusted_x_forwarded_for_and_sticks() {
    let bs = backends(&["h0", "h1", "h2"]).await;
    let port = free_port();
    let yaml = config(
        port,
        None,
        "    algorithm: ip_hash",
        &addrs(&[&bs[0], &bs[1], &bs[2]]),
        "forwarding:\n  trusted_proxies: [\"127.0.0.1/32\"]\n",
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();
    let url = f.url("/");

    let mut map: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for key in xff_keys() {
            let r = get_with(&c, &url, None, &[("x-forwarded-for", &key)]).await;
            assert_eq!(r.status, 200, "{r:?}");
            match map.get(&key) {
                None => {
                    map.insert(key, r.body);
                }
                Some(prev) => assert_eq!(
                    prev, &r.body,
                    "client {key} moved from {prev} to {} on round {round}",
                    r.body
                ),
            }
        }
    }
    let spread: HashSet<&String> = map.values().collect();
    assert!(
        spread.len() >= 2,
        "30 client IPs should not all hash to one backend: {map:?}"
    );

    // The client is the rightmost address that is not a trusted proxy, whichever way the
    // chain is written.
    let key = &xff_keys()[5];
    let home = &map[key];
    let variants: Vec<Vec<(&str, String)>> = vec![
        vec![("x-forwarded-for", format!("203.0.113.9, {key}"))],
        vec![("x-forwarded-for", format!("{key}, 127.0.0.1"))],
        vec![
            ("x-forwarded-for", "198.51.100.7".to_string()),
            ("x-forwarded-for", key.to_string()),
        ],
    ];
    for v in variants {
        let h: Vec<(&str, &str)> = v.iter().map(|(k, val)| (*k, val.as_str())).collect();
        let r = get_with(&c, &url, None, &h).await;
        assert_eq!(
            (&r.status, &r.body),
            (&200, home),
            "client {key} written as {v:?} should land where {key} does"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_ignores_x_forwarded_for_from_untrusted_peers() {
    let bs = backends(&["u0", "u1", "u2"]).await;
    let port = free_port();
    let yaml = config(
        port,
        None,
        "    algorithm: ip_hash",
        &addrs(&[&bs[0], &bs[1], &bs[2]]),
        "",
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();
    let url = f.url("/");
    let plain = bodies(&c, &url, None, 5).await;
    let mut seen: HashSet<String> = plain.into_iter().collect();
    for key in xff_keys() {
        let r = get_with(&c, &url, None, &[("x-forwarded-for", &key)]).await;
        assert_eq!(r.status, 200, "{r:?}");
        seen.insert(r.body);
    }
    for _ in 0..3 {
        let r = get(&client_no_pool(), &url).await;
        seen.insert(r.body);
    }
    assert_eq!(
        seen.len(),
        1,
        "without trusted_proxies every request comes from 127.0.0.1, whatever X-Forwarded-For says: {seen:?}"
    );
    let total: usize = bs.iter().map(|b| b.count()).sum();
    assert_eq!(total, 38);
}

// ---------------------------------------------------------------------------------------------
// cookie
// ---------------------------------------------------------------------------------------------

/// Splits `NAME=VALUE; attrs...` into (value, "; attrs...") after checking the name.
fn split_set_cookie<'a>(header: &'a str, name: &str) -> (&'a str, &'a str) {
    let rest = header
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix('='))
        .unwrap_or_else(|| panic!("Set-Cookie {header:?} does not set {name}"));
    match rest.find(';') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    }
}

fn assert_opaque_value(value: &str, backends: &[&TestBackend]) {
    assert!(
        value.len() == 20 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        "sticky cookie value should be 20 hex characters, got {value:?}"
    );
    for b in backends {
        assert!(
            !value.contains(&b.addr()) && value != b.port().to_string(),
            "cookie value {value:?} reveals backend {}",
            b.addr()
        );
    }
}

const SID_ATTRS: &str = "; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sticks_fails_over_and_rejects_forgeries() {
    let bs = backends(&["c0", "c1", "c2"]).await;
    let all: Vec<&TestBackend> = bs.iter().collect();
    let port = free_port();
    let extra = "    algorithm: cookie\n    sticky:\n      cookie: SID\n      max_age: 1h\n      http_only: true\n      same_site: lax\n      secret: \"a-test-secret-of-some-length\"";
    let yaml = config(port, None, extra, &addrs(&all), "");
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();
    let url = f.url("/");

    // Without a cookie the fallback (round_robin) picks, and each first response pins the
    // client to the backend that answered it.
    let mut cookie_of: HashMap<String, String> = HashMap::new();
    for i in 0..3 {
        let r = get(&c, &url).await;
        assert_eq!(r.status, 200, "{r:?}");
        let set = r.header_all("set-cookie");
        assert_eq!(
            set.len(),
            1,
            "request #{i}: one Set-Cookie expected: {set:?}"
        );
        let (value, attrs) = split_set_cookie(&set[0], "SID");
        assert_eq!(attrs, SID_ATTRS, "Set-Cookie attributes: {:?}", set[0]);
        assert_opaque_value(value, &all);
        for b in &all {
            assert!(
                !set[0].contains(&b.addr()),
                "{:?} reveals {}",
                set[0],
                b.addr()
            );
        }
        let previous = cookie_of.insert(r.body.clone(), value.to_string());
        assert!(
            previous.is_none(),
            "round_robin fallback repeated {}",
            r.body
        );
    }
    let values: HashSet<&String> = cookie_of.values().collect();
    assert_eq!(
        values.len(),
        3,
        "each backend has its own cookie: {cookie_of:?}"
    );

    // With the cookie: the same backend every time, no new cookie.
    for name in ["c0", "c1", "c2"] {
        let cookie = format!("theme=dark; SID={}; lang=en", cookie_of[name]);
        for i in 0..10 {
            let r = get_with(&c, &url, None, &[("cookie", &cookie)]).await;
            assert_eq!(
                (r.status, r.body.as_str()),
                (200, name),
                "request #{i} with {name}'s cookie"
            );
            assert!(
                r.header("set-cookie").is_none(),
                "a request that already sticks must not get a new cookie: {r:?}"
            );
        }
    }

    // Forged values are ignored: the fallback picks and the answer pins the client properly.
    let forged = [
        "SID=0123456789abcdef0123".to_string(),
        format!("SID={}", bs[0].addr()),
        format!("SID={}", bs[1].port()),
        format!("SID={}X", cookie_of["c2"]),
    ];
    for cookie in &forged {
        let r = get_with(&c, &url, None, &[("cookie", cookie)]).await;
        assert_eq!(r.status, 200, "{r:?}");
        let set = r.header_all("set-cookie");
        assert_eq!(
            set.len(),
            1,
            "forged cookie {cookie:?}: new Set-Cookie expected: {r:?}"
        );
        let (value, attrs) = split_set_cookie(&set[0], "SID");
        assert_eq!(attrs, SID_ATTRS);
        assert_eq!(
            value, cookie_of[&r.body],
            "forged cookie {cookie:?}: the new cookie must name the backend that answered"
        );
    }

    // The sticky backend dies: the request is retried elsewhere and re-pinned there.
    let victim = &bs[1];
    let victim_cookie = format!("SID={}", cookie_of["c1"]);
    victim.stop().await;
    let before = victim.count();
    let r = get_with(&c, &url, None, &[("cookie", &victim_cookie)]).await;
    assert_eq!(r.status, 200, "sticky backend down: {r:?}");
    // The retry is the fallback's: its round robin has taken 7 turns (3 requests without a
    // cookie, 4 forged), so it takes turn 7, the second backend in Pingora's order (by
    // address, here by port, which the kernel picks), or the next one when that is c1.
    let mut order: Vec<(u16, &str)> = bs.iter().map(|b| (b.port(), b.name())).collect();
    order.sort();
    let turn = 7 % order.len();
    let expected = if order[turn].1 == "c1" {
        order[(turn + 1) % order.len()].1
    } else {
        order[turn].1
    };
    assert_eq!(r.body, expected, "backends by port: {order:?}; {r:?}");
    let set = r.header_all("set-cookie");
    assert_eq!(set.len(), 1, "failover must re-pin the client: {r:?}");
    let (value, attrs) = split_set_cookie(&set[0], "SID");
    assert_eq!(attrs, SID_ATTRS);
    assert_eq!(
        value, cookie_of[&r.body],
        "the new cookie names the new backend"
    );
    assert_eq!(victim.count(), before);

    // The new cookie sticks to the new backend.
    let new_cookie = format!("SID={value}");
    for _ in 0..5 {
        let r2 = get_with(&c, &url, None, &[("cookie", &new_cookie)]).await;
        assert_eq!((r2.status, &r2.body), (200, &r.body));
        assert!(r2.header("set-cookie").is_none(), "{r2:?}");
    }
    // Clients still holding the dead backend's cookie keep being served.
    for _ in 0..5 {
        let r2 = get_with(&c, &url, None, &[("cookie", &victim_cookie)]).await;
        assert_eq!(r2.status, 200, "{r2:?}");
        assert_ne!(r2.body, "c1");
        assert!(r2.header("set-cookie").is_some(), "{r2:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_attributes_follow_config_and_keep_backend_cookies() {
    let b = TestBackend::start_with(
        "own",
        BackendOptions {
            headers: vec![("set-cookie".into(), "app=1; Path=/app".into())],
            ..BackendOptions::default()
        },
    )
    .await;
    let other = TestBackend::start("other").await;
    let port = free_port();
    let extra = "    algorithm: cookie\n    fallback: first\n    sticky:\n      secure: true\n      http_only: false\n      same_site: none";
    let yaml = config(port, None, extra, &addrs(&[&b, &other]), "");
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();
    let r = get(&c, &f.url("/")).await;
    // fallback: first picks backends[0].
    assert_eq!((r.status, r.body.as_str()), (200, "own"), "{r:?}");
    let set = r.header_all("set-cookie");
    assert_eq!(
        set.len(),
        2,
        "the backend's own cookie plus the sticky one: {set:?}"
    );
    assert!(set.contains(&"app=1; Path=/app".to_string()), "{set:?}");
    let sticky = set
        .iter()
        .find(|s| s.starts_with("fulcrum_sticky="))
        .unwrap_or_else(|| panic!("default cookie name fulcrum_sticky: {set:?}"));
    let (value, attrs) = split_set_cookie(sticky, "fulcrum_sticky");
    assert_opaque_value(value, &[&b, &other]);
    assert_eq!(attrs, "; Path=/; Secure; SameSite=None", "{sticky:?}");
}

// ---------------------------------------------------------------------------------------------
// first
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_uses_config_order_and_fails_over() {
    let mut bs = backends(&["f-a", "f-b", "f-c"]).await;
    // Config order opposite to address order, so "first" cannot mean "lowest address".
    bs.sort_by_key(|b| std::cmp::Reverse(b.port()));
    let all: Vec<&TestBackend> = bs.iter().collect();
    let (port, admin_port) = (free_port(), free_port());
    let yaml = config(
        port,
        Some(admin_port),
        "    algorithm: first",
        &addrs(&all),
        "",
    );
    let f = start_with_admin(&yaml, port, admin_port).await;
    let admin = Admin::new(admin_port);
    let c = client();
    let url = f.url("/");

    let seq = bodies(&c, &url, None, 10).await;
    assert!(
        seq.iter().all(|s| s == bs[0].name()),
        "all to backends[0] ({}): {seq:?}",
        bs[0].name()
    );
    assert_eq!((bs[1].count(), bs[2].count()), (0, 0));

    bs[0].stop().await;
    let seq = bodies(&c, &url, None, 10).await;
    assert!(
        seq.iter().all(|s| s == bs[1].name()),
        "backends[0] stopped: all to backends[1] ({}): {seq:?}",
        bs[1].name()
    );
    assert_eq!(bs[1].count(), 10);
    assert_eq!(
        bs[2].count(),
        0,
        "backends[2] is only a backup of the backup"
    );
    let stats = admin.backends().await;
    assert!(
        stats[0].failures > 0,
        "connect failures on backends[0]: {stats:?}"
    );
    assert_eq!(stats[1].failures, 0, "{stats:?}");
}

// ---------------------------------------------------------------------------------------------
// consistent with a fallback
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_header_key_with_first_fallback() {
    let mut bs = backends(&["k-a", "k-b", "k-c"]).await;
    bs.sort_by_key(|b| std::cmp::Reverse(b.port()));
    let all: Vec<&TestBackend> = bs.iter().collect();
    let port = free_port();
    let extra = "    algorithm: consistent\n    hash_key: \"header:X-Tenant\"\n    fallback: first";
    let f = Fulcrum::start(&config(port, None, extra, &addrs(&all), ""), port).await;
    let c = client();
    let url = f.url("/");

    // No key: the fallback, `first`, always takes backends[0].
    let seq = bodies(&c, &url, None, 9).await;
    assert!(seq.iter().all(|s| s == bs[0].name()), "{seq:?}");
    // An empty key counts as none.
    let r = get_with(&c, &url, None, &[("x-tenant", "")]).await;
    assert_eq!(r.body, bs[0].name());

    // With a key: sticky per key, spread over the backends.
    let mut map: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for i in 0..30 {
            let key = format!("tenant-{i}");
            let r = get_with(&c, &url, None, &[("x-tenant", &key)]).await;
            assert_eq!(r.status, 200);
            let prev = map.entry(key.clone()).or_insert_with(|| r.body.clone());
            assert_eq!(prev, &r.body, "{key} moved on round {round}");
        }
    }
    let spread: HashSet<&String> = map.values().collect();
    assert!(spread.len() >= 2, "{map:?}");
}

// ---------------------------------------------------------------------------------------------
// Shares
// ---------------------------------------------------------------------------------------------

async fn shares(algorithm: &str) -> Vec<String> {
    const N: usize = 600;
    let bs = backends(&["s0", "s1", "s2"]).await;
    let port = free_port();
    let yaml = config(
        port,
        None,
        &format!("    algorithm: {algorithm}"),
        &addrs(&[&bs[0], &bs[1], &bs[2]]),
        "",
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();
    let seq = bodies(&c, &f.url("/"), None, N).await;
    let counts = count_by_body(&seq);
    for b in &bs {
        let n = counts.get(b.name()).copied().unwrap_or(0);
        assert_eq!(
            n,
            b.count(),
            "{algorithm}: answers vs requests received by {}",
            b.name()
        );
        let share = n as f64 * 100.0 / N as f64;
        // 1/3 +- 8 points: more than 4 standard deviations at N = 600.
        assert!(
            (share - 100.0 / 3.0).abs() <= 8.0,
            "{algorithm}: backend {} got {share:.1}% ({n}/{N}); all: {counts:?}",
            b.name()
        );
    }
    seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_shares_are_even() {
    let _ = shares("p2c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_shares_are_even() {
    let seq = shares("random").await;
    // Not a rotation in disguise: random ignores load, so some backend serves two requests in
    // a row (600 picks without one: probability (2/3)^599).
    assert!(
        seq.windows(2).any(|w| w[0] == w[1]),
        "600 random picks without a single repeat looks like a rotation"
    );
}
