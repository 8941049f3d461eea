//! The admin listener's status page (`GET /`) and the `/status` fields it renders: the page's
//! headers, `config`, `routes`, `listeners`, `latency_ms.p50` and `health_check`; then the
//! page in a real headless Chromium against a running fulcrum with real backends, read back
//! through its DOM hooks (`<tr data-upstream data-backend data-state>`, `body[data-loaded]`,
//! `body[data-auth]`).
//!
//! Chromium is required (CI installs Debian's `chromium`): without it the browser tests fail,
//! they do not skip.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use sha2::{Digest, Sha256};
use std::time::Duration;
use support::*;

const TOKEN: &str = "page-token-0123456789";

/// Two backends in group `app` with fast TCP health checks, two routes, an admin listener
/// (with `admin_extra` under `admin:`).
fn config(port: u16, admin_port: u16, backends: &[&TestBackend], admin_extra: &str) -> String {
    let list: String = backends
        .iter()
        .map(|b| format!("      - addr: \"{}\"\n", b.addr()))
        .collect();
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin_port}"
{admin_extra}
upstreams:
  app:
    algorithm: round_robin
    max_tries: 2
    health_check: {{type: tcp, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}}
    backends:
{list}
routes:
  - {{name: api, host: api.example.com, path: /api, upstream: app, strip_prefix: true, match: {{methods: [GET]}}}}
  - {{path: /, upstream: app}}
"#
    )
}

async fn start(yaml: &str, port: u16, admin_port: u16) -> Fulcrum {
    let mut f = Fulcrum::start(yaml, port).await;
    f.wait_listening(admin_port).await;
    f
}

async fn admin_get(admin_port: u16, path: &str, headers: &[(&str, &str)]) -> Resp {
    get_with(
        &client(),
        &format!("http://127.0.0.1:{admin_port}{path}"),
        None,
        headers,
    )
    .await
}

async fn status_doc(admin_port: u16, headers: &[(&str, &str)]) -> serde_json::Value {
    let r = admin_get(admin_port, "/status", headers).await;
    assert_eq!(r.status, 200, "/status: {r:?}");
    serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("/status is not JSON ({e}): {}", r.body))
}

/// The `health_check` of backend `addr` in `/status`, once every backend of `app` has one
/// and `addr`'s health is `healthy` (bounded wait).
async fn wait_health(admin_port: u16, addr: &str, healthy: bool) -> serde_json::Value {
    let mut doc = serde_json::Value::Null;
    for _ in 0..250 {
        doc = status_doc(admin_port, &[("authorization", &format!("Bearer {TOKEN}"))]).await;
        let backends = doc["upstreams"]["app"]["backends"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let all_checked = backends.iter().all(|b| b["health_check"].is_object());
        let this = backends.iter().find(|b| b["addr"] == addr);
        if all_checked && this.is_some_and(|b| b["healthy"] == healthy) {
            return doc;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} never became healthy={healthy}: {doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_is_served_without_the_token_with_strict_headers() {
    let b1 = TestBackend::start("b1").await;
    let (port, admin_port) = (free_port(), free_port());
    let _f = start(
        &config(port, admin_port, &[&b1], &format!("  token: \"{TOKEN}\"")),
        port,
        admin_port,
    )
    .await;
    for path in ["/", "/index.html"] {
        let r = admin_get(admin_port, path, &[]).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
        assert_eq!(
            r.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
        let csp = r.header("content-security-policy").expect("a CSP");
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(
            csp.contains("script-src 'sha256-") && csp.contains("style-src 'sha256-"),
            "{csp}"
        );
        assert!(
            csp.contains("connect-src 'self'") && csp.contains("img-src data:"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(r.body.starts_with("<!doctype html>") && r.body.contains("data-loaded=\"0\""));
        // The page carries no data.
        assert!(!r.body.contains(&b1.addr()));
    }
    // Everything else still needs the token.
    assert_eq!(admin_get(admin_port, "/status", &[]).await.status, 401);
    let r = admin_get(admin_port, "/", &[("authorization", "Bearer wrong")]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_has_config_routes_listeners_checks_and_p50() {
    let b1 = TestBackend::start("b1").await;
    let b2 = TestBackend::start("b2").await;
    let (port, admin_port) = (free_port(), free_port());
    let f = start(&config(port, admin_port, &[&b1, &b2], ""), port, admin_port).await;
    let c = client();
    for _ in 0..6 {
        assert_eq!(get(&c, &f.url("/")).await.status, 200);
    }
    let doc = wait_health(admin_port, &b1.addr(), true).await;

    let path = f.config_path().expect("a config file");
    let text = std::fs::read(path).expect("read the config");
    let hash: String = Sha256::digest(&text)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(doc["config"]["hash"], hash, "{doc}");
    assert_eq!(doc["config"]["file"], path.display().to_string());

    let routes = doc["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 2, "{doc}");
    assert_eq!(routes[0]["id"], "api");
    assert_eq!(
        routes[0]["match"]["hosts"],
        serde_json::json!(["api.example.com"])
    );
    assert_eq!(routes[0]["match"]["path"], "/api");
    assert_eq!(routes[0]["match"]["methods"], serde_json::json!(["GET"]));
    assert_eq!(routes[0]["policies"]["path_changes"], "strip_prefix /api");
    assert_eq!(routes[0]["upstreams"][0]["upstream"], "app");
    assert_eq!(routes[0]["upstreams"][0]["max_tries"], 2);
    assert_eq!(routes[0]["policies"]["cache"], false);
    assert_eq!(routes[1]["id"], "1");
    assert_eq!(routes[1]["name"], serde_json::Value::Null);

    assert_eq!(
        doc["listeners"],
        serde_json::json!([{"addr": format!("127.0.0.1:{port}"), "tls": false, "h2": false, "redirect_to_https": false}])
    );
    let backends = doc["upstreams"]["app"]["backends"]
        .as_array()
        .expect("backends");
    for b in backends {
        let check = &b["health_check"];
        assert!(
            check["last_at_unix"].as_f64().expect("a time") > 1.0e9,
            "{b}"
        );
        assert!(
            check["last_duration_ms"].as_f64().expect("a duration") >= 0.0,
            "{b}"
        );
        assert_eq!(check["last_error"], serde_json::Value::Null, "{b}");
        let latency = &b["latency_ms"];
        assert_eq!(latency["samples"], 3, "{b}");
        let (p50, p99) = (
            latency["p50"].as_f64().unwrap(),
            latency["p99"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p99, "{b}");
    }

    // A failing check says why.
    b2.stop().await;
    let doc = wait_health(admin_port, &b2.addr(), false).await;
    let b = doc["upstreams"]["app"]["backends"]
        .as_array()
        .and_then(|v| v.iter().find(|b| b["addr"] == b2.addr()).cloned())
        .expect("b2");
    let error = b["health_check"]["last_error"].as_str().expect("an error");
    assert!(error.contains("refused"), "{b}");

    // The check durations are in /metrics.
    let metrics = admin_get(admin_port, "/metrics", &[]).await.body;
    assert!(
        metrics.contains("fulcrum_health_check_duration_seconds_count{upstream=\"app\"}"),
        "{metrics}"
    );
}

/// Loads `url` in headless Chromium, lets it run its polls (virtual time), and returns the
/// DOM. Fails (never skips) without Chromium.
async fn browser_dom(url: &str) -> String {
    let profile = tempfile::tempdir().expect("tempdir");
    let run = tokio::process::Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--virtual-time-budget=4000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(Duration::from_secs(60), run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!(
            "cannot run chromium ({e}): the status page tests need Debian's chromium \
             (apt-get install chromium; CI installs it with .ci/install-deps)"
        ),
        Err(_) => panic!("chromium did not finish within 60 s loading {url}"),
    };
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 DOM")
}

/// The `data-state` of the row of `addr` in group `app`, if the DOM has that row.
fn row_state(dom: &str, addr: &str) -> Option<String> {
    let hook = format!("data-upstream=\"app\" data-backend=\"{addr}\" data-state=\"");
    let at = dom.find(&hook)? + hook.len();
    let len = dom[at..].find('"')?;
    Some(dom[at..at + len].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_shows_each_backends_state() {
    let b1 = TestBackend::start("b1").await;
    let b2 = TestBackend::start("b2").await;
    let (port, admin_port) = (free_port(), free_port());
    let _f = start(&config(port, admin_port, &[&b1, &b2], ""), port, admin_port).await;
    wait_health(admin_port, &b2.addr(), true).await;
    let page = format!("http://127.0.0.1:{admin_port}/");

    let dom = browser_dom(&page).await;
    assert!(dom.contains("data-loaded=\"1\""), "{dom}");
    assert_eq!(
        row_state(&dom, &b1.addr()).as_deref(),
        Some("healthy"),
        "{dom}"
    );
    assert_eq!(
        row_state(&dom, &b2.addr()).as_deref(),
        Some("healthy"),
        "{dom}"
    );
    // Routes and listeners are rendered too.
    assert!(dom.contains("data-route=\"api\"") && dom.contains(&format!("127.0.0.1:{port}")));

    b2.stop().await;
    wait_health(admin_port, &b2.addr(), false).await;
    let dom = browser_dom(&page).await;
    assert_eq!(
        row_state(&dom, &b1.addr()).as_deref(),
        Some("healthy"),
        "{dom}"
    );
    assert_eq!(
        row_state(&dom, &b2.addr()).as_deref(),
        Some("unhealthy"),
        "{dom}"
    );
    assert!(dom.contains("Connection refused"), "{dom}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_asks_for_the_token_and_uses_it() {
    let b1 = TestBackend::start("b1").await;
    let b2 = TestBackend::start("b2").await;
    let (port, admin_port) = (free_port(), free_port());
    let _f = start(
        &config(
            port,
            admin_port,
            &[&b1, &b2],
            &format!("  token: \"{TOKEN}\""),
        ),
        port,
        admin_port,
    )
    .await;
    wait_health(admin_port, &b2.addr(), true).await;

    let dom = browser_dom(&format!("http://127.0.0.1:{admin_port}/")).await;
    assert!(dom.contains("data-auth=\"required\""), "{dom}");
    assert!(dom.contains("data-loaded=\"0\""), "{dom}");
    assert!(row_state(&dom, &b1.addr()).is_none(), "{dom}");
    assert!(dom.contains("id=\"token\""), "{dom}");

    let dom = browser_dom(&format!("http://127.0.0.1:{admin_port}/#token={TOKEN}")).await;
    assert!(dom.contains("data-auth=\"ok\""), "{dom}");
    assert_eq!(
        row_state(&dom, &b1.addr()).as_deref(),
        Some("healthy"),
        "{dom}"
    );
    assert_eq!(
        row_state(&dom, &b2.addr()).as_deref(),
        Some("healthy"),
        "{dom}"
    );

    let dom = browser_dom(&format!("http://127.0.0.1:{admin_port}/#token=wrong")).await;
    assert!(dom.contains("data-auth=\"required\""), "{dom}");
    assert!(dom.contains("That token was refused."), "{dom}");
}
