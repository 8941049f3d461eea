//! The runtime API on the admin listener, through the real binary: adding, changing and
//! deleting backends of an upstream group, the errors each bad request gets, draining (an
//! in-flight request finishes, no new one comes), changes seen in `/status`, the state file
//! that carries them across `fulcrum --reload` and restarts, and no failed request while
//! backends are drained and deleted under load.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use support::*;

const TOKEN: &str = "runtime-api-token-0123456789";

/// A fulcrum in front of `backends` (group `app`, round robin) with a token-protected admin
/// listener; `admin_extra` holds extra indented lines of the `admin:` section.
async fn start(backends: &[&TestBackend], admin_extra: &str) -> (Fulcrum, Api) {
    let (port, admin) = (free_port(), free_port());
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{addr: \"{}\"}}", b.addr()))
        .collect();
    let yaml = format!(
        "listeners:\n  - addr: \"127.0.0.1:{port}\"\n\
         admin:\n  addr: \"127.0.0.1:{admin}\"\n  token: \"{TOKEN}\"\n{admin_extra}\
         upstreams:\n  app:\n    backends: [{}]\n  other:\n    backends: [{}]\n\
         routes:\n  - upstream: app\n",
        list.join(", "),
        list[0]
    );
    let mut f = Fulcrum::start(&yaml, port).await;
    f.wait_listening(admin).await;
    (f, Api::new(admin))
}

/// A client of the admin listener.
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn new(port: u16) -> Api {
        Api {
            client: client(),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// `method path` with the token and `body`.
    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        let auth = format!("Bearer {TOKEN}");
        request(
            &self.client,
            method,
            &format!("{}{path}", self.base),
            None,
            &[("authorization", &auth)],
            body.map(|b| b.as_bytes().to_vec()),
        )
        .await
    }

    /// Like [`Api::call`], checking the status and that the answer is JSON.
    async fn expect(&self, method: &str, path: &str, body: Option<&str>, status: u16) -> Value {
        let r = self.call(method, path, body).await;
        assert_eq!(
            r.status, status,
            "{method} {path} {body:?}: {} {}",
            r.status, r.body
        );
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json"),
            "{method} {path}"
        );
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", r.body))
    }

    /// The backends of `app` by address.
    async fn backends(&self) -> Vec<Value> {
        let v = self.expect("GET", "/upstreams/app", None, 200).await;
        v["backends"].as_array().cloned().unwrap_or_default()
    }

    async fn backend(&self, addr: &str) -> Option<Value> {
        self.backends()
            .await
            .into_iter()
            .find(|b| b["addr"] == addr)
    }
}

/// The error text of an answer.
fn error(v: &Value) -> &str {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {v}"))
}

#[tokio::test]
async fn add_patch_delete_and_every_error_status() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let (f, api) = start(&[&a], "").await;

    // Token required, on reads and changes alike.
    let url = format!("{}/upstreams/app", api.base);
    let r = request(&api.client, "GET", &url, None, &[], None).await;
    assert_eq!(r.status, 401);
    let r = request(
        &api.client,
        "POST",
        &format!("{url}/backends"),
        None,
        &[],
        Some(format!(r#"{{"addr": "{}"}}"#, b.addr()).into_bytes()),
    )
    .await;
    assert_eq!(r.status, 401);

    let list = api.expect("GET", "/upstreams", None, 200).await;
    assert_eq!(list["upstreams"], serde_json::json!(["app", "other"]));
    let g = api.expect("GET", "/upstreams/app", None, 200).await;
    assert_eq!(g["name"], "app");
    assert_eq!(g["algorithm"], "round_robin");
    assert_eq!(g["backends"].as_array().unwrap().len(), 1);
    assert_eq!(g["backends"][0]["source"], "static");
    assert_eq!(g["backends"][0]["state"], "enabled");

    // Add b.
    let added = api
        .expect(
            "POST",
            "/upstreams/app/backends",
            Some(&format!(r#"{{"addr": "{}", "weight": 2}}"#, b.addr())),
            201,
        )
        .await;
    assert_eq!(added["addr"], b.addr());
    assert_eq!(added["weight"], 2);
    assert_eq!(added["source"], "api");
    assert_eq!(added["state"], "enabled");
    assert_eq!(added["healthy"], true);
    assert_eq!(added["in_flight"], 0);
    // b serves.
    let c = client();
    let mut names = Vec::new();
    for _ in 0..6 {
        names.push(get(&c, &f.url("/")).await.body);
    }
    assert!(names.iter().any(|n| n == "b"), "{names:?}");
    // Again: 409.
    let v = api
        .expect(
            "POST",
            "/upstreams/app/backends",
            Some(&format!(r#"{{"addr": "{}"}}"#, b.addr())),
            409,
        )
        .await;
    assert!(error(&v).contains("already"), "{v}");

    // Bad bodies: 400 each.
    for bad in [
        "",
        "{",
        "[]",
        r#"{"weight": 1}"#,
        r#"{"addr": "localhost:80"}"#,
        r#"{"addr": "10.0.0.9"}"#,
        r#"{"addr": "10.0.0.9:80", "weight": 0}"#,
        r#"{"addr": "10.0.0.9:80", "weight": 1001}"#,
        r#"{"addr": "10.0.0.9:80", "color": "red"}"#,
    ] {
        api.expect("POST", "/upstreams/app/backends", Some(bad), 400)
            .await;
    }
    let path_b = format!("/upstreams/app/backends/{}", b.addr());
    for bad in [
        "{}",
        r#"{"state": "removed"}"#,
        r#"{"state": "up"}"#,
        r#"{"weight": -3}"#,
        r#"{"state": "drain", "note": "x"}"#,
        "not json",
    ] {
        api.expect("PATCH", &path_b, Some(bad), 400).await;
    }
    // A body above 4 KiB: 413.
    let big = format!(
        r#"{{"addr": "{}", "pad": "{}"}}"#,
        b.addr(),
        "x".repeat(5000)
    );
    let r = api
        .call("POST", "/upstreams/app/backends", Some(&big))
        .await;
    assert_eq!(r.status, 413);

    // 404s: group, backend, resource; bad address in the path: 400.
    api.expect("GET", "/upstreams/nope", None, 404).await;
    api.expect(
        "POST",
        "/upstreams/nope/backends",
        Some(r#"{"addr": "10.0.0.9:80"}"#),
        404,
    )
    .await;
    api.expect(
        "PATCH",
        "/upstreams/app/backends/10.0.0.9:80",
        Some(r#"{"weight": 3}"#),
        404,
    )
    .await;
    api.expect("DELETE", "/upstreams/app/backends/10.0.0.9:80", None, 404)
        .await;
    api.expect("GET", "/upstreams/app/elsewhere", None, 404)
        .await;
    api.expect("DELETE", "/upstreams/app/backends/nohost:80", None, 400)
        .await;
    // Other paths keep their answers.
    assert_eq!(api.call("GET", "/nothing", None).await.status, 404);
    assert_eq!(api.call("GET", "/status", None).await.status, 200);

    // 405 with Allow.
    let r = api.call("DELETE", "/upstreams/app", None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD"));
    let r = api.call("GET", "/upstreams/app/backends", None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("POST"));
    let r = api.call("POST", &path_b, Some("{}")).await;
    assert_eq!(r.status, 405);
    assert_eq!(
        r.header("allow").as_deref(),
        Some("GET, HEAD, PATCH, DELETE")
    );

    // Patch weight and state; percent-encoded address.
    let encoded = format!("/upstreams/app/backends/{}", b.addr().replace(':', "%3A"));
    let v = api
        .expect("PATCH", &encoded, Some(r#"{"weight": 5}"#), 200)
        .await;
    assert_eq!(v["weight"], 5);
    let v = api
        .expect("PATCH", &path_b, Some(r#"{"state": "disabled"}"#), 200)
        .await;
    assert_eq!(v["state"], "disabled");
    assert_eq!(v["weight"], 5, "the weight override stays");
    assert_eq!(v["available"], false);

    // The change is in /status.
    let status: Value = serde_json::from_str(&api.call("GET", "/status", None).await.body).unwrap();
    let in_status = status["upstreams"]["app"]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["addr"] == b.addr())
        .cloned()
        .expect("b in /status");
    assert_eq!(in_status["state"], "disabled");
    assert_eq!(in_status["weight"], 5);
    assert_eq!(in_status["source"], "api");

    // a is the only enabled backend: draining or deleting it needs force.
    let path_a = format!("/upstreams/app/backends/{}", a.addr());
    let v = api
        .expect("PATCH", &path_a, Some(r#"{"state": "drain"}"#), 409)
        .await;
    assert!(error(&v).contains("force=true"), "{v}");
    api.expect("DELETE", &path_a, None, 409).await;
    api.expect("DELETE", &format!("{path_a}?force=maybe"), None, 400)
        .await;
    let v = api
        .expect(
            "PATCH",
            &format!("{path_a}?force=true"),
            Some(r#"{"state": "drain"}"#),
            200,
        )
        .await;
    assert_eq!(v["state"], "drain");
    api.expect(
        "PATCH",
        &path_a,
        Some(r#"{"state": "enabled", "weight": 1}"#),
        200,
    )
    .await;

    // Delete b (a enabled: no force needed), then it is gone.
    let v = api.expect("DELETE", &path_b, None, 200).await;
    assert_eq!(v["deleted"], b.addr());
    assert!(api.backend(&b.addr()).await.is_none());
    api.expect("GET", &path_b, None, 404).await;
    b.clear();
    for _ in 0..4 {
        assert_eq!(get(&c, &f.url("/")).await.body, "a");
    }
    assert_eq!(b.count(), 0);
    // Deleting the last one with force; the static backend can come back through the API.
    api.expect("DELETE", &format!("{path_a}?force=true"), None, 200)
        .await;
    assert!(api.backends().await.is_empty());
    api.expect(
        "POST",
        "/upstreams/app/backends",
        Some(&format!(r#"{{"addr": "{}"}}"#, a.addr())),
        201,
    )
    .await;
    assert_eq!(get(&c, &f.url("/")).await.body, "a");
    drop(f);
}

/// Waits (at most 5 s) until `addr` has `n` requests in flight.
async fn wait_in_flight(api: &Api, addr: &str, n: u64) {
    for _ in 0..250 {
        if api.backend(addr).await.is_some_and(|b| b["in_flight"] == n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} never had {n} requests in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_then_deleted_backend_finishes_its_request_and_gets_no_new_one() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let (f, api) = start(&[&a], "").await;

    // A slow request on a (the only backend).
    let url = f.url("/slow");
    let slow = tokio::spawn(async move {
        request(
            &client(),
            "GET",
            &url,
            None,
            &[("x-test-delay-ms", "1500")],
            None,
        )
        .await
    });
    wait_in_flight(&api, &a.addr(), 1).await;

    api.expect(
        "POST",
        "/upstreams/app/backends",
        Some(&format!(r#"{{"addr": "{}"}}"#, b.addr())),
        201,
    )
    .await;
    let path_a = format!("/upstreams/app/backends/{}", a.addr());
    let v = api
        .expect("PATCH", &path_a, Some(r#"{"state": "drain"}"#), 200)
        .await;
    assert_eq!(v["state"], "drain");
    assert_eq!(v["in_flight"], 1);

    let c = client();
    for _ in 0..8 {
        assert_eq!(get(&c, &f.url("/new")).await.body, "b");
    }
    // Deleted while its request is still in flight.
    api.expect("DELETE", &path_a, None, 200).await;
    for _ in 0..4 {
        assert_eq!(get(&c, &f.url("/newer")).await.body, "b");
    }
    let r = slow.await.expect("slow request task");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "a");
    let paths: Vec<String> = a.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        vec!["/slow".to_string()],
        "a got only the slow request"
    );
}

/// SIGKILLs on drop the fulcrum named by a pid file: the process `--reload` started, which is
/// not this test's child.
struct ReloadedProcess(PathBuf);

impl Drop for ReloadedProcess {
    fn drop(&mut self) {
        let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            return;
        };
        let ours = std::fs::canonicalize(FULCRUM_BIN).unwrap_or_else(|_| FULCRUM_BIN.into());
        let is_fulcrum = std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| {
            e.to_string_lossy()
                .starts_with(ours.to_string_lossy().as_ref())
        });
        if pid > 1 && pid != std::process::id() as i32 && is_fulcrum {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Runs `fulcrum --reload -c config` to completion (at most 40 s), reaping `old` when it exits.
async fn reload(config: &Path, old: &mut Fulcrum) {
    let out = old.dir().join("reload.stdout");
    let err = old.dir().join("reload.stderr");
    let mut child = Command::new(FULCRUM_BIN)
        .arg("--reload")
        .arg("-c")
        .arg(config)
        .current_dir(old.dir())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .expect("spawn fulcrum --reload");
    for _ in 0..4000 {
        let _ = old.try_wait();
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "--reload failed: {status}\n{}\n{}",
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.kill();
    panic!("--reload did not finish in 40 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_survive_reload_and_restart_through_the_state_file() {
    use std::os::unix::fs::PermissionsExt;
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let (mut f, api) = start(&[&a], "").await;
    let config = f.config_path().unwrap().to_path_buf();
    let pid_file = f.dir().join("fulcrum.pid");
    let state_file = f.dir().join("fulcrum.state.json");
    let _guard = ReloadedProcess(pid_file.clone());
    assert!(!state_file.exists(), "no change yet, no state file");

    api.expect(
        "POST",
        "/upstreams/app/backends",
        Some(&format!(r#"{{"addr": "{}", "weight": 4}}"#, b.addr())),
        201,
    )
    .await;
    let path_a = format!("/upstreams/app/backends/{}", a.addr());
    api.expect(
        "PATCH",
        &path_a,
        Some(r#"{"state": "drain", "weight": 3}"#),
        200,
    )
    .await;
    let mode = std::fs::metadata(&state_file)
        .expect("state file written next to the pid file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    reload(&config, &mut f).await;
    let expected = |bs: Vec<Value>| {
        let a_now = bs.iter().find(|x| x["addr"] == a.addr()).expect("a");
        let b_now = bs.iter().find(|x| x["addr"] == b.addr()).expect("b");
        assert_eq!(a_now["state"], "drain");
        assert_eq!(a_now["weight"], 3);
        assert_eq!(a_now["source"], "static");
        assert_eq!(b_now["state"], "enabled");
        assert_eq!(b_now["weight"], 4);
        assert_eq!(b_now["source"], "api");
    };
    expected(api.backends().await);
    b.clear();
    let c = client();
    for _ in 0..4 {
        assert_eq!(get(&c, &f.url("/")).await.body, "b");
    }

    // A corrupt state file is ignored with a warning: the next start serves the config.
    std::fs::write(&state_file, b"{ corrupt").unwrap();
    reload(&config, &mut f).await;
    let bs = api.backends().await;
    assert_eq!(bs.len(), 1, "{bs:?}");
    assert_eq!(bs[0]["state"], "enabled");
    let log = std::fs::read_to_string(f.dir().join("reload.stderr")).unwrap_or_default();
    assert!(log.contains("runtime API state file ignored"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draining_and_deleting_under_load_fails_no_request() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let c = TestBackend::start("c").await;
    let (f, api) = start(&[&a, &b], "").await;
    api.expect(
        "POST",
        "/upstreams/app/backends",
        Some(&format!(r#"{{"addr": "{}"}}"#, c.addr())),
        201,
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), f.url("/"));
        tasks.push(tokio::spawn(async move {
            let c = client();
            // Bounded: at most 100 000 requests per loop.
            for _ in 0..100_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match try_request(&c, "GET", &url, None, &[], None).await {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => failed
                        .lock()
                        .unwrap()
                        .push(format!("{} {}", r.status, r.body)),
                    Err(e) => failed.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    let pause = Duration::from_millis(400);
    tokio::time::sleep(pause).await;
    let path = |x: &TestBackend| format!("/upstreams/app/backends/{}", x.addr());
    api.expect("PATCH", &path(&a), Some(r#"{"state": "drain"}"#), 200)
        .await;
    tokio::time::sleep(pause).await;
    api.expect("DELETE", &path(&a), None, 200).await;
    tokio::time::sleep(pause).await;
    api.expect("DELETE", &path(&c), None, 200).await;
    tokio::time::sleep(pause).await;
    api.expect("PATCH", &path(&b), Some(r#"{"weight": 7}"#), 200)
        .await;
    tokio::time::sleep(pause).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(15), t)
            .await
            .expect("load loop stopped")
            .expect("load loop");
    }
    let failed = failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok.load(Ordering::SeqCst) > 100, "too little load");
    let left: Vec<Value> = api.backends().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["addr"], b.addr());
    assert_eq!(left[0]["weight"], 7);
}

#[tokio::test]
async fn a_plain_start_restores_the_state_file_named_by_admin_state_file() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("kept.json");
    std::fs::write(
        &state_file,
        format!(
            r#"{{"version": 1, "upstreams": {{
                "app": {{"added": [{{"addr": "{}", "weight": 3}}],
                         "overrides": [{{"addr": "{}", "state": "disabled"}}]}},
                "gone": {{"added": [{{"addr": "10.0.0.1:80", "weight": 1}}]}}}}}}"#,
            b.addr(),
            a.addr()
        ),
    )
    .unwrap();
    let extra = format!("  state_file: \"{}\"\n", state_file.display());
    let (f, api) = start(&[&a], &extra).await;
    let bs = api.backends().await;
    let a_now = bs.iter().find(|x| x["addr"] == a.addr()).expect("a");
    let b_now = bs.iter().find(|x| x["addr"] == b.addr()).expect("b");
    assert_eq!(a_now["state"], "disabled");
    assert_eq!(
        (b_now["weight"].clone(), b_now["source"].clone()),
        (3.into(), "api".into())
    );
    assert_eq!(get(&client(), &f.url("/")).await.body, "b");
    assert!(
        f.stderr()
            .contains("upstream gone is no longer in the config"),
        "{}",
        f.stderr()
    );
    // The next change rewrites the file, without the group that is gone.
    api.expect(
        "PATCH",
        &format!("/upstreams/app/backends/{}", a.addr()),
        Some(r#"{"state": "enabled"}"#),
        200,
    )
    .await;
    let saved: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert!(saved["upstreams"].get("gone").is_none(), "{saved}");
    assert_eq!(saved["upstreams"]["app"]["added"][0]["addr"], b.addr());
}
