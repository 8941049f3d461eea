//! `/metrics` after real traffic through the fulcrum binary, parsed by Prometheus' own Python
//! parser (`prometheus_client`): counters follow the requests sent, a client that leaves early
//! is a 499 and no backend error, and every metric the Grafana dashboard queries exists.

#[allow(dead_code, unused_imports)]
mod support;

use sha2::{Digest, Sha256};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::sum_of as value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Parses exposition text with `prometheus_client.parser`, run in python3 (the scrape on
/// stdin, the samples as JSON on stdout).
fn parse(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.stderr.write("MISSING prometheus_client\n")
    sys.exit(3)
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed to parse /metrics");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the scrape to python3");
    let out = child.wait_with_output().expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("MISSING prometheus_client"),
        "the Python module prometheus_client is not installed: `pip install prometheus_client` \
         (the test parses /metrics with Prometheus' own parser)"
    );
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics: {stderr}\n{text}"
    );
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

/// Scrapes and parses `/metrics` of the admin listener on `admin`.
async fn scrape(admin: u16) -> (String, Vec<Sample>) {
    let r = get(
        &client_no_pool(),
        &format!("http://127.0.0.1:{admin}/metrics"),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let samples = parse(&r.body);
    (r.body, samples)
}

/// Scrapes until `done` holds for the samples (requests are counted just after their
/// response), at most for 10 s; returns the last scrape.
async fn scrape_until(admin: u16, done: impl Fn(&[Sample]) -> bool) -> (String, Vec<Sample>) {
    let mut last = scrape(admin).await;
    for _ in 0..200 {
        if done(&last.1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = scrape(admin).await;
    }
    last
}

/// A self-signed certificate for `metrics.test` expiring 2031-01-02, written to `dir`.
fn certificate(dir: &std::path::Path) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["metrics.test".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "metrics.test");
    params.not_after = rcgen::date_time_ymd(2031, 1, 2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let c = write_file(dir, "metrics.crt", &cert.pem());
    let k = write_file(dir, "metrics.key", &key.serialize_pem());
    (c.display().to_string(), k.display().to_string())
}

/// Everything the tests need: fulcrum with an admin listener, a plain and a TLS listener,
/// routes with limits, a caching route, a slow upstream and a queueing one.
struct Setup {
    f: Fulcrum,
    admin: u16,
    tls_port: u16,
    app: TestBackend,
    slow: TestBackend,
    queued: TestBackend,
    _certs: tempfile::TempDir,
}

async fn setup() -> Setup {
    let app = TestBackend::start("app").await;
    let slow = TestBackend::start_delayed("slow", Duration::from_secs(3)).await;
    let queued = TestBackend::start_delayed("queued", Duration::from_secs(2)).await;
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let (port, admin, tls_port) = (free_port(), free_port(), free_port());
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
  - addr: "127.0.0.1:{tls_port}"
    tls:
      certificates:
        - cert: "{cert}"
          key: "{key}"
admin:
  addr: "127.0.0.1:{admin}"
limits:
  max_header_bytes: 4KiB
upstreams:
  app:
    backends: [{{addr: "{app}"}}]
  slow:
    backends: [{{addr: "{slow}"}}]
  sluggish:
    backends: [{{addr: "{slow}"}}]
    timeouts: {{read: 300ms}}
  queued:
    backends: [{{addr: "{queued}"}}]
    max_connections: 1
    queue: {{size: 1, timeout: 300ms}}
routes:
  - {{name: app, path: /app, upstream: app}}
  - {{name: limited, path: /limited, upstream: app, rate_limit: {{requests_per_second: 0.01, burst: 1}}}}
  - {{name: small, path: /small, upstream: app, max_body_bytes: 64}}
  - {{name: slow, path: /slow, upstream: slow}}
  - {{name: sluggish, path: /sluggish, upstream: sluggish}}
  - {{name: queued, path: /queued, upstream: queued}}
  - {{name: cached, path: /cached, upstream: app, cache: {{}}}}
"#,
        app = app.addr(),
        slow = slow.addr(),
        queued = queued.addr(),
    );
    let mut f = Fulcrum::start(&yaml, port).await;
    f.wait_listening(admin).await;
    f.wait_listening(tls_port).await;
    Setup {
        f,
        admin,
        tls_port,
        app,
        slow,
        queued,
        _certs: certs,
    }
}

/// Sends `request` on a new connection and reads until the server closes it (at most 5 s).
async fn raw_once(port: u16, request: &[u8]) -> String {
    raw_http(port, request).await
}

/// A GET of `path` on a new connection whose client closes it as soon as `backend` has the
/// request, before any response.
async fn abandon(port: u16, path: &str, backend: &TestBackend) {
    let before = backend.count();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    for _ in 0..200 {
        if backend.count() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(backend.count(), before + 1, "the backend got the request");
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_the_traffic() {
    let s = setup().await;
    let port = s.f.port();
    let addr = format!("127.0.0.1:{port}");
    let c = client_no_pool();

    // Five requests with 20-byte bodies, all 200.
    let mut sent_back = 0;
    for _ in 0..5 {
        let r = request(
            &c,
            "POST",
            &s.f.url("/app"),
            None,
            &[],
            Some(vec![b'x'; 20]),
        )
        .await;
        assert_eq!(r.status, 200);
        sent_back += r.body.len();
    }
    // A route miss, a rate limit, a body limit, a head limit.
    assert_eq!(get(&c, &s.f.url("/nothing")).await.status, 404);
    assert_eq!(get(&c, &s.f.url("/limited")).await.status, 200);
    assert_eq!(get(&c, &s.f.url("/limited")).await.status, 429);
    let big = request(
        &c,
        "POST",
        &s.f.url("/small"),
        None,
        &[],
        Some(vec![b'y'; 100]),
    )
    .await;
    assert_eq!(big.status, 413);
    let huge = format!(
        "GET /app HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "z".repeat(8000)
    );
    assert_eq!(raw_status(&raw_once(port, huge.as_bytes()).await), 431);
    // A backend that times out.
    assert_eq!(get(&c, &s.f.url("/sluggish")).await.status, 504);

    let (text, m) = scrape_until(s.admin, |m| {
        value(m, "fulcrum_requests_total", &[("route", "app")]) >= 5.0
            && value(
                m,
                "fulcrum_request_duration_seconds_count",
                &[("route", "sluggish")],
            ) >= 1.0
    })
    .await;
    let app = s.app.addr();
    let check = |name: &str, labels: &[(&str, &str)], want: f64| {
        assert_eq!(value(&m, name, labels), want, "{name}{labels:?} in\n{text}");
    };
    check(
        "fulcrum_requests_total",
        &[("route", "app"), ("code", "200")],
        5.0,
    );
    check("fulcrum_requests_total", &[("route", "app")], 5.0);
    check(
        "fulcrum_upstream_requests_total",
        &[("upstream", "app"), ("backend", &app), ("code", "200")],
        6.0,
    );
    check(
        "fulcrum_request_duration_seconds_count",
        &[("route", "app")],
        5.0,
    );
    check("fulcrum_request_bytes_total", &[("route", "app")], 100.0);
    check(
        "fulcrum_response_bytes_total",
        &[("route", "app")],
        sent_back as f64,
    );
    check("fulcrum_unrouted_requests_total", &[("code", "404")], 1.0);
    check("fulcrum_unrouted_requests_total", &[("code", "431")], 1.0);
    check(
        "fulcrum_requests_total",
        &[("route", "limited"), ("code", "429")],
        1.0,
    );
    check(
        "fulcrum_requests_total",
        &[("route", "small"), ("code", "413")],
        1.0,
    );
    check(
        "fulcrum_rejected_requests_total",
        &[("reason", "rate_limited")],
        1.0,
    );
    check(
        "fulcrum_rejected_requests_total",
        &[("reason", "body_too_large")],
        1.0,
    );
    check(
        "fulcrum_rejected_requests_total",
        &[("reason", "header_too_large")],
        1.0,
    );
    check(
        "fulcrum_requests_total",
        &[("route", "sluggish"), ("code", "504")],
        1.0,
    );
    check(
        "fulcrum_upstream_timeouts_total",
        &[("upstream", "sluggish"), ("kind", "read")],
        1.0,
    );
    check(
        "fulcrum_upstream_timeouts_total",
        &[("upstream", "sluggish"), ("kind", "connect")],
        0.0,
    );
    // No "none" and no status classes anywhere.
    assert!(!text.contains("\"none\""), "{text}");
    assert!(!text.contains("class=\""), "{text}");

    // Facts about the process.
    check(
        "fulcrum_build_info",
        &[("version", env!("CARGO_PKG_VERSION")), ("pingora", "0.9.1")],
        1.0,
    );
    let conf = s.f.config_path().expect("a config file");
    let hash: String = Sha256::digest(std::fs::read(conf).unwrap())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let file = conf.display().to_string();
    check(
        "fulcrum_config_info",
        &[("hash", &hash), ("file", &file)],
        1.0,
    );
    check("fulcrum_started_by_upgrade", &[], 0.0);
    assert!(
        value(
            &m,
            "fulcrum_config_last_reload_success_timestamp_seconds",
            &[]
        ) > 1.6e9
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
    ] {
        assert!(value(&m, name, &[]) > 0.0, "{name} in\n{text}");
    }
    assert!(value(&m, "process_start_time_seconds", &[]) > 1.6e9);
    let tls = format!("127.0.0.1:{}", s.tls_port);
    check(
        "fulcrum_tls_certificate_not_after_timestamp_seconds",
        &[
            ("listener", &tls),
            ("subject", "CN=metrics.test"),
            ("names", "metrics.test"),
        ],
        1_925_078_400.0,
    );
    assert!(value(&m, "fulcrum_connections_total", &[("listener", &addr)]) >= 9.0);
}

/// A client that closes its connection while the backend works on its request: code 499,
/// nothing charged to the backend, and 499 in the access log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_early_is_499_and_no_backend_error() {
    let s = setup().await;
    for _ in 0..3 {
        abandon(s.f.port(), "/slow", &s.slow).await;
    }
    let (text, m) = scrape_until(s.admin, |m| {
        value(m, "fulcrum_requests_total", &[("route", "slow")]) >= 3.0
    })
    .await;
    let slow = s.slow.addr();
    let ub = [("upstream", "slow"), ("backend", slow.as_str())];
    let check = |name: &str, labels: &[(&str, &str)], want: f64| {
        assert_eq!(value(&m, name, labels), want, "{name}{labels:?} in\n{text}");
    };
    check(
        "fulcrum_requests_total",
        &[("route", "slow"), ("code", "499")],
        3.0,
    );
    check("fulcrum_requests_total", &[("route", "slow")], 3.0);
    check("fulcrum_backend_failures_total", &ub, 0.0);
    check("fulcrum_backend_attempts_total", &ub, 3.0);
    // The backend never answered: nothing by status for it.
    check("fulcrum_upstream_requests_total", &ub, 0.0);
    let log = s.f.stdout() + &s.f.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" access] ") && l.contains("\"GET /slow HTTP/1.1\""))
        .collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines.iter().all(|l| l.contains("\" 499 bytes=")),
        "{lines:#?}"
    );
}

/// The open-connections gauge rises with a kept-alive client and falls when it leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_follow_a_keep_alive_client() {
    let s = setup().await;
    let listener = format!("127.0.0.1:{}", s.f.port());
    let open = |m: &[Sample]| value(m, "fulcrum_open_connections", &[("listener", &listener)]);
    let accepted = |m: &[Sample]| value(m, "fulcrum_connections_total", &[("listener", &listener)]);
    // The readiness checks' bare connects are gone.
    let (_, m) = scrape_until(s.admin, |m| open(m) == 0.0).await;
    assert_eq!(open(&m), 0.0);
    let before = accepted(&m);

    let mut conn = TcpStream::connect(("127.0.0.1", s.f.port())).await.unwrap();
    conn.write_all(b"GET /app HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    let (text, m) = scrape_until(s.admin, |m| open(m) == 1.0).await;
    assert_eq!(open(&m), 1.0, "{text}");

    drop(conn);
    let (text, m) = scrape_until(s.admin, |m| open(m) == 0.0).await;
    assert_eq!(open(&m), 0.0, "{text}");
    assert_eq!(accepted(&m), before + 1.0, "{text}");
}

/// With one slot and a queue of one: the second request waits and times out, the third finds
/// the queue full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_waits_and_refusals_are_counted() {
    let s = setup().await;
    let port = s.f.port();
    let first = tokio::spawn(async move {
        raw_http(
            port,
            b"GET /queued HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
    });
    for _ in 0..200 {
        if s.queued.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.queued.count(), 1);
    let second = tokio::spawn(async move {
        raw_http(
            port,
            b"GET /queued HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
    });
    let (_, m) = scrape_until(s.admin, |m| {
        value(m, "fulcrum_backend_in_flight", &[("upstream", "queued")]) >= 1.0
    })
    .await;
    assert_eq!(
        value(&m, "fulcrum_backend_in_flight", &[("upstream", "queued")]),
        1.0
    );
    // The second is in the queue (or already out of it): a third finds no room, or times out.
    let third = raw_http(
        port,
        b"GET /queued HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&third), 503, "{third}");
    assert_eq!(raw_status(&second.await.unwrap()), 503);
    assert_eq!(raw_status(&first.await.unwrap()), 200);
    let (text, m) = scrape(s.admin).await;
    let refused = value(
        &m,
        "fulcrum_rejected_requests_total",
        &[("reason", "queue_full")],
    ) + value(
        &m,
        "fulcrum_rejected_requests_total",
        &[("reason", "queue_timeout")],
    );
    assert_eq!(refused, 2.0, "{text}");
    assert!(
        value(
            &m,
            "fulcrum_rejected_requests_total",
            &[("reason", "queue_timeout")]
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &m,
            "fulcrum_queue_wait_seconds_count",
            &[("upstream", "queued")]
        ),
        value(
            &m,
            "fulcrum_rejected_requests_total",
            &[("reason", "queue_timeout")]
        ),
        "{text}"
    );
}

/// The PromQL metric names of the Grafana dashboard, which must parse as JSON.
fn dashboard_metric_names() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/fulcrum-dashboard.json"
    );
    let text = std::fs::read_to_string(path).expect("the dashboard file");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&doc, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut names: Vec<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    names.sort();
    names.dedup();
    names
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The identifiers in a PromQL expression that name fulcrum's or the process' metrics.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("fulcrum_") || w.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_exists() {
    let names = dashboard_metric_names();
    let s = setup().await;
    let c = client_no_pool();
    for path in ["/app", "/cached", "/cached", "/nothing"] {
        get(&c, &s.f.url(path)).await;
    }
    get(&c, &s.f.url("/sluggish")).await;
    let (text, m) = scrape_until(s.admin, |m| {
        value(m, "fulcrum_cache_requests_total", &[]) >= 2.0
    })
    .await;
    let present: std::collections::BTreeSet<&str> = m.iter().map(|s| s.name.as_str()).collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !present.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "not in /metrics: {missing:?}\n{text}");
}
