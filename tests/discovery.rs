//! Dynamic upstreams end to end: the real `fulcrum` binary, a real DNS server ([`TestDns`]) and
//! real backends, all on loopback.
//!
//! DNS-discovered backends listen on 127.0.0.N with one port for all of them, so that A records
//! tell them apart by address alone. Tests that need traffic run a bounded load (a few client
//! loops with keep-alive, all through fulcrum) and compare shares of requests, not times.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;
use tokio::task::JoinHandle;

/// `discovery.interval` of every group here.
const INTERVAL: Duration = Duration::from_secs(1);
/// How long a DNS or file change may take to show in the traffic: one interval and a second.
const SETTLE: Duration = Duration::from_secs(INTERVAL.as_secs() + 1);
/// The discovered name of the `dns:` groups.
const NAME: &str = "api.test";

/// 127.0.0.`n`.
fn lo(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// Backends named `bN` on 127.0.0.N, one port for all (found by trying a few).
async fn same_port_backends(ns: &[u8]) -> (Vec<TestBackend>, u16) {
    for _ in 0..50 {
        let first = SocketAddr::new(lo(ns[0]).into(), 0);
        let Some(b) = TestBackend::start_at(&format!("b{}", ns[0]), first).await else {
            continue;
        };
        let port = b.port();
        let mut all = vec![b];
        for &n in &ns[1..] {
            let at = SocketAddr::new(lo(n).into(), port);
            match TestBackend::start_at(&format!("b{n}"), at).await {
                Some(b) => all.push(b),
                None => break,
            }
        }
        if all.len() == ns.len() {
            return (all, port);
        }
    }
    panic!("could not bind 127.0.0.{ns:?} on one port");
}

/// A config with one upstream `api` (`discovery` and `extra` lines under it), a catch-all
/// route, an admin listener and, when `dns` is given, a resolver asking it.
fn config(port: u16, admin: u16, dns: Option<&TestDns>, discovery: &str, extra: &str) -> String {
    let resolver = dns
        .map(|d| {
            format!(
                "resolver:\n  nameservers: [\"{}\"]\n  timeout: 300ms\n",
                d.addr()
            )
        })
        .unwrap_or_default();
    format!(
        r#"{resolver}
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin}"
upstreams:
  api:
    algorithm: round_robin
    timeouts: {{connect: 1s, read: 3s}}
    discovery: {discovery}
{extra}
routes:
  - upstream: api
"#
    )
}

/// `{dns: "api.test:PORT", interval: 1s, ...}`.
fn dns_discovery(backend_port: u16, more: &str) -> String {
    format!("{{dns: \"{NAME}:{backend_port}\", interval: 1s{more}}}")
}

async fn start(yaml: &str, port: u16, admin: u16) -> Fulcrum {
    let mut f = Fulcrum::start(yaml, port).await;
    f.wait_listening(admin).await;
    f
}

/// A bounded load through fulcrum: `loops` client loops, each with its own keep-alive
/// client, sending GETs one after another until stopped (at most 60 s or 200 000 requests
/// each). Every answer is logged with its time and body; anything but a 200 is a failure.
struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

/// What a [`Load`] saw.
struct LoadResult {
    log: Vec<(Instant, String)>,
    failures: Vec<String>,
}

impl Load {
    fn start(url: String, loops: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..loops)
            .map(|_| {
                let (stop, log, failures, url) =
                    (stop.clone(), log.clone(), failures.clone(), url.clone());
                tokio::spawn(async move {
                    let c = client();
                    let end = Instant::now() + Duration::from_secs(60);
                    for _ in 0..200_000 {
                        if stop.load(Ordering::Relaxed) || Instant::now() >= end {
                            break;
                        }
                        match try_request(&c, "GET", &url, None, &[], None).await {
                            Ok(r) if r.status == 200 => {
                                log.lock().unwrap().push((Instant::now(), r.body))
                            }
                            Ok(r) => failures
                                .lock()
                                .unwrap()
                                .push(format!("status {}: {:?}", r.status, r.body)),
                            Err(e) => failures.lock().unwrap().push(format!("{e:?}")),
                        }
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            log,
            failures,
            tasks,
        }
    }

    /// Requests answered 200 so far.
    fn answered(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    async fn finish(self) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
        let log = std::mem::take(&mut *self.log.lock().unwrap());
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        LoadResult { log, failures }
    }
}

/// Answers per body among those logged in `[from, to)`.
fn counts_between(
    log: &[(Instant, String)],
    from: Instant,
    to: Instant,
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (at, body) in log {
        if *at >= from && *at < to {
            *out.entry(body.clone()).or_insert(0) += 1;
        }
    }
    out
}

/// `who`'s share of `counts`.
fn share(counts: &BTreeMap<String, usize>, who: &str) -> f64 {
    let total: usize = counts.values().sum();
    assert!(total > 0, "no requests answered in the window");
    *counts.get(who).unwrap_or(&0) as f64 / total as f64
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    for _ in 0..(limit.as_millis() / 20 + 2) {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// The admin `/status` document.
async fn status(admin: u16) -> serde_json::Value {
    let r = get(&client(), &format!("http://127.0.0.1:{admin}/status")).await;
    assert_eq!(r.status, 200, "/status: {r:?}");
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("/status not JSON ({e}): {}", r.body))
}

/// The backends of `api` in `/status`, by address.
async fn status_backends(admin: u16) -> BTreeMap<String, serde_json::Value> {
    let doc = status(admin).await;
    doc["upstreams"]["api"]["backends"]
        .as_array()
        .unwrap_or_else(|| panic!("no upstreams.api.backends in /status: {doc}"))
        .iter()
        .map(|b| (b["addr"].as_str().unwrap().to_string(), b.clone()))
        .collect()
}

/// `fulcrum_discovery_failures_total{upstream="api"}` on `/metrics` (0 when not shown yet).
async fn discovery_failures(admin: u16) -> u64 {
    let r = get(&client(), &format!("http://127.0.0.1:{admin}/metrics")).await;
    assert_eq!(r.status, 200, "/metrics: {r:?}");
    r.body
        .lines()
        .find(|l| {
            l.starts_with("fulcrum_discovery_failures_total{") && l.contains("upstream=\"api\"")
        })
        .map(|l| {
            let v = l.rsplit(' ').next().unwrap();
            v.parse::<f64>()
                .unwrap_or_else(|_| panic!("bad metric line {l:?}")) as u64
        })
        .unwrap_or(0)
}

/// Waits (at most 5 s) until [`TestDns`] has received `n` A queries for [`NAME`].
async fn wait_a_queries(dns: &TestDns, n: usize) {
    let seen = wait_until(Duration::from_secs(5), || dns.queries_for(NAME, DNS_A) >= n).await;
    assert!(
        seen,
        "fulcrum did not ask for {NAME} again ({} A queries, waited for {n})",
        dns.queries_for(NAME, DNS_A)
    );
}

/// Add, remove and fail (SERVFAIL, NODATA, NXDOMAIN) the name of a `dns:` group under load:
/// a backend that joins gets traffic within interval + 1 s, one that leaves gets none after
/// interval + 1 s, every failure keeps the set, and no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_changes_under_load() {
    let dns = TestDns::start().await;
    let (bs, bport) = same_port_backends(&[2, 3, 4]).await;
    let (b2, b3, b4) = (&bs[0], &bs[1], &bs[2]);
    dns.set_a(NAME, &[lo(2), lo(3)]);
    let (port, admin) = (free_port(), free_port());
    let yaml = config(port, admin, Some(&dns), &dns_discovery(bport, ""), "");
    let f = start(&yaml, port, admin).await;
    let load = Load::start(f.url("/"), 3, Duration::from_millis(2));
    assert!(
        wait_until(SETTLE, || b2.count() > 0 && b3.count() > 0).await,
        "the first set (b2, b3) does not get traffic"
    );
    assert_eq!(b4.count(), 0);

    // A backend joins.
    dns.set_a(NAME, &[lo(2), lo(3), lo(4)]);
    assert!(
        wait_until(SETTLE, || b4.count() > 0).await,
        "b4 got no request within {SETTLE:?} of joining the DNS answer"
    );

    // A backend leaves: after interval + 1 s it gets nothing more; the others keep serving.
    dns.set_a(NAME, &[lo(2), lo(4)]);
    tokio::time::sleep(SETTLE).await;
    let (c2, c3, c4) = (b2.count(), b3.count(), b4.count());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        b3.count(),
        c3,
        "b3 got requests after leaving the DNS answer"
    );
    assert!(b2.count() > c2 && b4.count() > c4);
    let kept: BTreeSet<String> = [b2.addr(), b4.addr()].into();

    // Failures keep the last good set: {b2, b4}.
    let failures_before = discovery_failures(admin).await;
    let phases: [(&str, &dyn Fn()); 3] = [
        ("SERVFAIL", &|| {
            dns.set_failure(NAME, Some(Failure::ServFail))
        }),
        ("NODATA", &|| dns.clear(NAME)),
        ("NXDOMAIN", &|| dns.remove(NAME)),
    ];
    for (what, fail) in phases {
        let metric0 = discovery_failures(admin).await;
        fail();
        let q0 = dns.queries_for(NAME, DNS_A);
        // The look that asked q0+1 started after the change; once q0+2 is asked it is over.
        wait_a_queries(&dns, q0 + 2).await;
        let (c2, c3, c4) = (b2.count(), b3.count(), b4.count());
        // One more whole look under the failure.
        wait_a_queries(&dns, q0 + 3).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            b2.count() > c2 && b4.count() > c4,
            "{what}: the kept backends stopped getting traffic"
        );
        assert_eq!(b3.count(), c3, "{what}: b3 came back");
        let listed: BTreeSet<String> = status_backends(admin).await.into_keys().collect();
        assert_eq!(listed, kept, "{what}: /status shows another set");
        let metric1 = discovery_failures(admin).await;
        assert!(
            metric1 >= metric0 + 2,
            "{what}: fulcrum_discovery_failures_total went from {metric0} to {metric1} over two \
             failed looks"
        );
    }
    assert!(discovery_failures(admin).await >= failures_before + 6);

    let result = load.finish().await;
    assert_eq!(result.failures, Vec::<String>::new(), "failed requests");
    println!(
        "dns_changes_under_load: {} requests, b2 {} b3 {} b4 {}",
        result.log.len(),
        b2.count(),
        b3.count(),
        b4.count()
    );
}

/// `dns_srv`: only the lowest priority is used, weights split the traffic 3:1, and each
/// backend is reached on the port of its SRV record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_srv_weights_priority_and_ports() {
    const N: usize = 2000;
    let dns = TestDns::start().await;
    let heavy = TestBackend::start("heavy").await;
    let light = TestBackend::start("light").await;
    let backup = TestBackend::start("backup").await;
    for target in ["heavy.test", "light.test", "backup.test"] {
        dns.set_a(target, &[lo(1)]);
    }
    let srv = "_http._tcp.api.test";
    dns.set_srv(
        srv,
        &[
            (10, 3, heavy.port(), "heavy.test"),
            (10, 1, light.port(), "light.test"),
            (20, 100, backup.port(), "backup.test"),
        ],
    );
    let (port, admin) = (free_port(), free_port());
    let discovery = format!("{{dns_srv: {srv}, interval: 1s}}");
    let f = start(
        &config(port, admin, Some(&dns), &discovery, ""),
        port,
        admin,
    )
    .await;

    let listed = status_backends(admin).await;
    let want: BTreeSet<String> = [heavy.addr(), light.addr()].into();
    assert_eq!(listed.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert_eq!(listed[&heavy.addr()]["weight"], 3);
    assert_eq!(listed[&light.addr()]["weight"], 1);
    assert!(listed.values().all(|b| b["source"] == "dns"));

    let mut loops = Vec::new();
    for _ in 0..4 {
        let url = f.url("/");
        loops.push(tokio::spawn(async move {
            bodies(&client(), &url, None, N / 4).await
        }));
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for l in loops {
        for body in l.await.unwrap() {
            *counts.entry(body).or_insert(0) += 1;
        }
    }
    let heavy_share = share(&counts, "heavy");
    println!("dns_srv: {counts:?}, heavy share {heavy_share:.3}");
    assert_eq!(
        counts.get("backup"),
        None,
        "a priority-20 record got traffic"
    );
    assert_eq!(counts.values().sum::<usize>(), N);
    assert!(
        (0.70..=0.80).contains(&heavy_share),
        "weights 3:1 should give heavy 75% ± 5%, got {heavy_share:.3} ({counts:?})"
    );
    assert_eq!(backup.count(), 0);
}

/// Runs fulcrum on `yaml` until it exits (at most 10 s), polling every 5 ms whether it listens
/// on any of `ports`. Returns the exit status, stderr, and whether it ever listened.
fn run_to_exit(yaml: &str, ports: &[u16]) -> (std::process::ExitStatus, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        dir.path(),
        "f.yaml",
        &with_pingora_section(yaml, dir.path()),
    );
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(FULCRUM_BIN)
        .arg("-c")
        .arg(&config)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let end = Instant::now() + Duration::from_secs(10);
    let mut listened = false;
    let mut status = None;
    for _ in 0..2100 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        listened |= ports
            .iter()
            .any(|&p| pid_listens_on(pid, p) == Some(true) || port_is_listening(p));
        if Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("fulcrum did not exit within 10 s on a required name that does not resolve");
    };
    (
        status,
        std::fs::read_to_string(stderr_path).unwrap(),
        listened,
    )
}

/// A required name that does not resolve (NXDOMAIN, or no answer at all) stops fulcrum before
/// it binds anything, with an error naming `upstreams.api.discovery`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_required_name_must_resolve() {
    let dns = TestDns::start().await;
    for (what, failure) in [("NXDOMAIN", None), ("no answer", Some(Failure::Timeout))] {
        dns.remove(NAME);
        if let Some(failure) = failure {
            dns.set_a(NAME, &[lo(2)]);
            dns.set_failure(NAME, Some(failure));
        }
        let q0 = dns.queries_for(NAME, DNS_A);
        let (port, admin) = (free_port(), free_port());
        let yaml = config(
            port,
            admin,
            Some(&dns),
            &dns_discovery(8080, ", required: true"),
            "",
        );
        let (status, stderr, listened) =
            tokio::task::spawn_blocking(move || run_to_exit(&yaml, &[port, admin]))
                .await
                .unwrap();
        assert!(
            !status.success(),
            "{what}: fulcrum exited {status}\n{stderr}"
        );
        assert!(
            stderr.contains("upstreams.api.discovery"),
            "{what}: stderr does not name upstreams.api.discovery:\n{stderr}"
        );
        assert!(
            !listened,
            "{what}: fulcrum listened before failing\n{stderr}"
        );
        assert!(
            dns.queries_for(NAME, DNS_A) > q0,
            "{what}: fulcrum never asked for {NAME}"
        );
    }
}

/// `required: false`: the group starts empty and answers 503 until the name resolves, then
/// the backend answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_optional_name_answers_503_until_it_resolves() {
    let dns = TestDns::start().await;
    let (bs, bport) = same_port_backends(&[2]).await;
    let (port, admin) = (free_port(), free_port());
    let discovery = dns_discovery(bport, ", required: false");
    let f = start(
        &config(port, admin, Some(&dns), &discovery, ""),
        port,
        admin,
    )
    .await;
    let c = client();
    let r = get(&c, &f.url("/")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "503 Service Unavailable: no healthy backend\n");
    assert!(status_backends(admin).await.is_empty());

    dns.set_a(NAME, &[lo(2)]);
    let mut before = Vec::new();
    let end = Instant::now() + SETTLE + Duration::from_secs(1);
    let mut served = None;
    for _ in 0..200 {
        let r = get(&c, &f.url("/")).await;
        if r.status == 200 {
            served = Some(r);
            break;
        }
        before.push((r.status, r.body));
        if Instant::now() >= end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let served = served.expect("still no backend after the name resolved");
    assert_eq!(served.body, "b2");
    assert!(
        before
            .iter()
            .all(|(s, b)| *s == 503 && b == "503 Service Unavailable: no healthy backend\n"),
        "answers before the name resolved: {before:?}"
    );
    assert_eq!(bs[0].count(), 1);
}

/// `slow_start: 4s`: a backend that joins a serving group takes a clearly smaller share in its
/// first second than in the last second of the window, and about half once the window is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_ramps_a_joining_backend() {
    const WINDOW: f64 = 4.0;
    let dns = TestDns::start().await;
    let (_bs, bport) = same_port_backends(&[2, 3]).await;
    dns.set_a(NAME, &[lo(2)]);
    let (port, admin) = (free_port(), free_port());
    let yaml = config(
        port,
        admin,
        Some(&dns),
        &dns_discovery(bport, ""),
        "    slow_start: 4s",
    );
    let f = start(&yaml, port, admin).await;
    let load = Load::start(f.url("/"), 3, Duration::ZERO);
    assert!(wait_until(SETTLE, || load.answered() > 50).await);

    dns.set_a(NAME, &[lo(2), lo(3)]);
    let new_addr = format!("127.0.0.3:{bport}");
    let mut joined = None;
    for _ in 0..100 {
        let backends = status_backends(admin).await;
        let seen = Instant::now();
        if let Some(b) = backends.get(&new_addr) {
            let ramp = b["slow_start"]
                .as_f64()
                .unwrap_or_else(|| panic!("a joining backend shows no slow_start: {b}"));
            assert_eq!(b["source"], "dns");
            joined = Some(seen - Duration::from_secs_f64(ramp * WINDOW));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let joined = joined.expect("127.0.0.3 never joined");
    let after = joined + Duration::from_millis(5600);
    assert!(
        wait_until(Duration::from_secs(8), || Instant::now() >= after).await,
        "the load did not run through the window"
    );
    let ramped = status_backends(admin).await[&new_addr].clone();
    assert!(
        ramped.get("slow_start").is_none(),
        "still ramping: {ramped}"
    );
    let result = load.finish().await;
    assert_eq!(result.failures, Vec::<String>::new(), "failed requests");

    let at = |s: f64| joined + Duration::from_secs_f64(s);
    let first = counts_between(&result.log, at(0.0), at(1.0));
    let last = counts_between(&result.log, at(3.0), at(4.0));
    let past = counts_between(&result.log, at(4.5), at(5.5));
    let (s_first, s_last, s_past) = (share(&first, "b3"), share(&last, "b3"), share(&past, "b3"));
    println!(
        "slow start: b3 share first second {s_first:.3} ({first:?}), last second {s_last:.3} \
         ({last:?}), after the window {s_past:.3} ({past:?})"
    );
    assert!(
        s_first * 2.0 < s_last,
        "first-second share {s_first:.3} is not clearly below last-second share {s_last:.3}"
    );
    assert!(
        (0.40..=0.60).contains(&s_past),
        "after the window b3 should take about half, got {s_past:.3}"
    );
}

/// With health checks, a backend that joins with its port closed never gets a request and
/// shows unhealthy in `/status`, while one that joins with it open gets traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_keep_a_dead_joiner_out() {
    let dns = TestDns::start().await;
    let (bs, bport) = same_port_backends(&[2, 3]).await;
    let (b2, b3) = (&bs[0], &bs[1]);
    dns.set_a(NAME, &[lo(2)]);
    let (port, admin) = (free_port(), free_port());
    let yaml = config(
        port,
        admin,
        Some(&dns),
        &dns_discovery(bport, ""),
        "    health_check: {type: tcp, interval: 100ms, timeout: 200ms}",
    );
    let f = start(&yaml, port, admin).await;
    let load = Load::start(f.url("/"), 2, Duration::from_millis(2));
    assert!(wait_until(SETTLE, || b2.count() > 0).await);

    // 127.0.0.9: nothing listens there.
    dns.set_a(NAME, &[lo(2), lo(3), lo(9)]);
    let dead = format!("127.0.0.9:{bport}");
    assert!(
        wait_until(SETTLE, || b3.count() > 0).await,
        "the live joiner got no traffic"
    );
    // Several health-check rounds and a discovery look later.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let backends = status_backends(admin).await;
    let d = backends
        .get(&dead)
        .unwrap_or_else(|| panic!("{dead} not in /status: {backends:?}"));
    assert_eq!(d["source"], "dns");
    assert_eq!(d["healthy"], false, "{d}");
    assert_eq!(d["available"], false, "{d}");
    assert_eq!(d["requests"], 0, "{d}");
    assert_eq!(d["failures"], 0, "{d}");
    assert_eq!(backends[&b3.addr()]["healthy"], true);
    let result = load.finish().await;
    assert_eq!(result.failures, Vec::<String>::new(), "failed requests");
    let by_body: BTreeSet<&str> = result.log.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(by_body, BTreeSet::from(["b2", "b3"]));
}

/// Replaces `path` with `text` atomically (write aside, rename over).
fn replace_file(path: &Path, text: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// `file:`: the listed backends serve; a rewrite with one fewer removes it; a zero-byte file is
/// a failed look (counted in `fulcrum_discovery_failures_total`) that keeps the set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_changes_and_empty_file() {
    let x = TestBackend::start("x").await;
    let y = TestBackend::start("y").await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("backends.yaml");
    replace_file(
        &list,
        &format!("- addr: \"{}\"\n- addr: \"{}\"\n", x.addr(), y.addr()),
    );
    let (port, admin) = (free_port(), free_port());
    let discovery = format!("{{file: \"{}\", interval: 1s}}", list.display());
    let f = start(&config(port, admin, None, &discovery, ""), port, admin).await;
    let load = Load::start(f.url("/"), 2, Duration::from_millis(2));
    assert!(wait_until(SETTLE, || x.count() > 0 && y.count() > 0).await);
    let listed = status_backends(admin).await;
    assert!(listed.values().all(|b| b["source"] == "file"), "{listed:?}");

    replace_file(&list, &format!("- addr: \"{}\"\n", x.addr()));
    tokio::time::sleep(SETTLE).await;
    let (cx, cy) = (x.count(), y.count());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(y.count(), cy, "y got requests after leaving the file");
    assert!(x.count() > cx);

    let m0 = discovery_failures(admin).await;
    std::fs::write(&list, "").unwrap();
    let mut m1 = m0;
    for _ in 0..40 {
        m1 = discovery_failures(admin).await;
        if m1 > m0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(m1 > m0, "a zero-byte file was not counted as a failed look");
    let cx = x.count();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        x.count() > cx,
        "x stopped getting traffic after the zero-byte file"
    );
    let listed: BTreeSet<String> = status_backends(admin).await.into_keys().collect();
    assert_eq!(listed, BTreeSet::from([x.addr()]));
    assert!(
        discovery_failures(admin).await > m1,
        "later looks at the empty file not counted"
    );
    let result = load.finish().await;
    assert_eq!(result.failures, Vec::<String>::new(), "failed requests");
}
