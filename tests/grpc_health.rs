//! `health_check: {type: grpc}`: fulcrum calls `grpc.health.v1.Health/Check` on real gRPC
//! servers (grpcio, `tests/support/grpc_health_server.py`) over h2c and shows the verdicts in
//! the admin `/status` document: NOT_SERVING takes a backend out, SERVING brings it back, a
//! service the server does not know and a killed server are unhealthy.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// The gRPC health server script.
const SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/grpc_health_server.py"
);

/// A `grpc_health_server.py` process on 127.0.0.1:`port`, killed on drop.
struct GrpcHealthServer {
    child: Child,
    port: u16,
    control: PathBuf,
}

impl GrpcHealthServer {
    /// Starts a server whose services answer `statuses` (service name, ServingStatus number)
    /// and waits until it listens.
    async fn start(dir: &Path, statuses: &[(&str, u8)]) -> GrpcHealthServer {
        let port = free_port();
        let control = dir.join(format!("grpc-health-{port}.json"));
        write_statuses(&control, statuses);
        let child = Command::new("python3")
            .arg(SERVER)
            .arg(port.to_string())
            .arg(&control)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn python3 {SERVER}: {e}"));
        let server = GrpcHealthServer {
            child,
            port,
            control,
        };
        assert!(
            wait_for_port(port, Duration::from_secs(10)).await,
            "gRPC health server did not listen on {port}"
        );
        server
    }

    /// Replaces the served statuses (atomically: the server reads the file per call).
    fn set(&self, statuses: &[(&str, u8)]) {
        write_statuses(&self.control, statuses);
    }

    /// SIGKILLs the server and reaps it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GrpcHealthServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes the control file through a temporary file and a rename.
fn write_statuses(path: &Path, statuses: &[(&str, u8)]) {
    let map: serde_json::Map<String, serde_json::Value> = statuses
        .iter()
        .map(|(s, n)| (s.to_string(), serde_json::Value::from(*n)))
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::Value::Object(map).to_string()).expect("write control");
    std::fs::rename(&tmp, path).expect("rename control");
}

const SERVING: u8 = 1;
const NOT_SERVING: u8 = 2;

/// Fulcrum with upstream `api` of `backends` checked by `check` (a YAML flow mapping body),
/// and its admin port.
async fn fulcrum(backends: &[u16], check: &str) -> (Fulcrum, u16) {
    let port = free_port();
    let admin = free_port();
    let list: String = backends
        .iter()
        .map(|p| format!("      - addr: \"127.0.0.1:{p}\"\n"))
        .collect();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin}"
upstreams:
  api:
    backends:
{list}    health_check: {{type: grpc, interval: 100ms, timeout: 1s, rise: 1, fall: 1{check}}}
routes:
  - upstream: api
"#
    );
    let f = Fulcrum::start(&yaml, port).await;
    assert!(
        wait_for_port(admin, Duration::from_secs(5)).await,
        "admin listener"
    );
    (f, admin)
}

/// `healthy` of every backend of `api` in the admin `/status` document.
async fn healthy(c: &reqwest::Client, admin: u16) -> Vec<bool> {
    let r = get(c, &format!("http://127.0.0.1:{admin}/status")).await;
    assert_eq!(r.status, 200, "admin /status: {r:?}");
    let doc: serde_json::Value = serde_json::from_str(&r.body).expect("/status is JSON");
    doc["upstreams"]["api"]["backends"]
        .as_array()
        .unwrap_or_else(|| panic!("no upstreams.api.backends in /status: {doc}"))
        .iter()
        .map(|b| b["healthy"].as_bool().expect("backend has `healthy`"))
        .collect()
}

/// Polls `/status` every 20 ms, for at most 10 s, until the backends' `healthy` flags are
/// `want`; panics with the last flags and fulcrum's log otherwise.
async fn wait_healthy(c: &reqwest::Client, f: &Fulcrum, admin: u16, want: &[bool]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = Vec::new();
    for _ in 0..600 {
        last = healthy(c, admin).await;
        if last == want {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "backends' healthy flags stayed {last:?}, expected {want:?}\n{}",
        f.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_serving_backend_is_taken_out_and_serving_brings_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = GrpcHealthServer::start(dir.path(), &[("", SERVING)]).await;
    let b = GrpcHealthServer::start(dir.path(), &[("", NOT_SERVING)]).await;
    let (f, admin) = fulcrum(&[a.port, b.port], "").await;
    let c = client();
    wait_healthy(&c, &f, admin, &[true, false]).await;
    assert!(
        f.stderr().contains(&format!(
            "backend 127.0.0.1:{} is unhealthy (serving status NOT_SERVING, expected SERVING)",
            b.port
        )),
        "the reason is logged\n{}",
        f.describe()
    );
    b.set(&[("", SERVING)]);
    wait_healthy(&c, &f, admin, &[true, true]).await;
    a.set(&[("", NOT_SERVING)]);
    wait_healthy(&c, &f, admin, &[false, true]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_service_is_asked_about_and_an_unknown_one_is_unhealthy() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `a` serves pkg.v1.Users; `b` serves the server as a whole but does not know the service.
    let a =
        GrpcHealthServer::start(dir.path(), &[("", NOT_SERVING), ("pkg.v1.Users", SERVING)]).await;
    let b = GrpcHealthServer::start(dir.path(), &[("", SERVING)]).await;
    let (f, admin) = fulcrum(&[a.port, b.port], ", service: pkg.v1.Users").await;
    let c = client();
    wait_healthy(&c, &f, admin, &[true, false]).await;
    assert!(
        f.stderr().contains(&format!(
            "backend 127.0.0.1:{} is unhealthy (grpc-status 5: unknown service)",
            b.port
        )),
        "the gRPC status and message are logged\n{}",
        f.describe()
    );
    b.set(&[("", SERVING), ("pkg.v1.Users", SERVING)]);
    wait_healthy(&c, &f, admin, &[true, true]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_grpc_server_is_unhealthy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = GrpcHealthServer::start(dir.path(), &[("", SERVING)]).await;
    let mut b = GrpcHealthServer::start(dir.path(), &[("", SERVING)]).await;
    let (f, admin) = fulcrum(&[a.port, b.port], "").await;
    let c = client();
    wait_healthy(&c, &f, admin, &[true, true]).await;
    b.kill();
    wait_healthy(&c, &f, admin, &[true, false]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_backend_fails_a_grpc_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = GrpcHealthServer::start(dir.path(), &[("", SERVING)]).await;
    let http1 = TestBackend::start("plain").await;
    let (f, admin) = fulcrum(&[a.port, http1.port()], "").await;
    let c = client();
    wait_healthy(&c, &f, admin, &[true, false]).await;
}
