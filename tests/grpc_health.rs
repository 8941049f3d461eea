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
        GrpcHealthServer::start_with(dir, statuses, &[]).await
    }

    /// Like [`GrpcHealthServer::start`], serving TLS with the PEM files `cert` and `key`.
    async fn start_tls(dir: &Path, statuses: &[(&str, u8)], cert: &Path, key: &Path) -> Self {
        GrpcHealthServer::start_with(dir, statuses, &[cert, key]).await
    }

    async fn start_with(dir: &Path, statuses: &[(&str, u8)], tls: &[&Path]) -> Self {
        let port = free_port();
        let control = dir.join(format!("grpc-health-{port}.json"));
        write_statuses(&control, statuses);
        let child = Command::new("python3")
            .arg(SERVER)
            .arg(port.to_string())
            .arg(&control)
            .args(tls)
            // grpc core logs every failed handshake at INFO; the untrusted-CA test makes many.
            .env("GRPC_VERBOSITY", "ERROR")
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

/// `healthy` of every backend of `group` in the admin `/status` document.
async fn healthy(c: &reqwest::Client, admin: u16, group: &str) -> Vec<bool> {
    let r = get(c, &format!("http://127.0.0.1:{admin}/status")).await;
    assert_eq!(r.status, 200, "admin /status: {r:?}");
    let doc: serde_json::Value = serde_json::from_str(&r.body).expect("/status is JSON");
    doc["upstreams"][group]["backends"]
        .as_array()
        .unwrap_or_else(|| panic!("no upstreams.{group}.backends in /status: {doc}"))
        .iter()
        .map(|b| b["healthy"].as_bool().expect("backend has `healthy`"))
        .collect()
}

/// Polls `/status` every 20 ms, for at most 10 s, until the `healthy` flags of `api`'s
/// backends are `want`; panics with the last flags and fulcrum's log otherwise.
async fn wait_healthy(c: &reqwest::Client, f: &Fulcrum, admin: u16, want: &[bool]) {
    wait_group_healthy(c, f, admin, "api", want).await
}

/// [`wait_healthy`] for the backends of `group`.
async fn wait_group_healthy(
    c: &reqwest::Client,
    f: &Fulcrum,
    admin: u16,
    group: &str,
    want: &[bool],
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = Vec::new();
    for _ in 0..600 {
        last = healthy(c, admin, group).await;
        if last == want {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{group}: backends' healthy flags stayed {last:?}, expected {want:?}\n{}",
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

/// A throwaway CA (`ca.pem`) and a leaf for `backend.test` signed by it (`leaf.crt`,
/// `leaf.key`), plus an unrelated CA (`other-ca.pem`), written to `dir`.
fn write_pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        (cert, key)
    };
    let (ca_cert, ca_key) = ca("fulcrum test CA (grpc health)");
    let (other, _) = ca("fulcrum test CA (grpc health, untrusted)");
    let mut params = CertificateParams::new(vec!["backend.test".to_string()]).expect("leaf");
    params
        .distinguished_name
        .push(DnType::CommonName, "backend.test");
    let key = KeyPair::generate().expect("leaf key");
    let leaf = params
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("sign leaf");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write ca");
    std::fs::write(dir.join("other-ca.pem"), other.pem()).expect("write other ca");
    std::fs::write(dir.join("leaf.crt"), leaf.pem()).expect("write leaf");
    std::fs::write(dir.join("leaf.key"), key.serialize_pem()).expect("write key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_groups_check_over_tls_with_alpn_h2() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pki(dir.path());
    let (cert, key) = (dir.path().join("leaf.crt"), dir.path().join("leaf.key"));
    let up = GrpcHealthServer::start_tls(dir.path(), &[("", SERVING)], &cert, &key).await;
    let down = GrpcHealthServer::start_tls(dir.path(), &[("", NOT_SERVING)], &cert, &key).await;
    let (port, admin) = (free_port(), free_port());
    let ca = dir.path().join("ca.pem");
    let other_ca = dir.path().join("other-ca.pem");
    let group = |ca: &Path| {
        format!(
            "    backends: [{{addr: \"127.0.0.1:{}\"}}, {{addr: \"127.0.0.1:{}\"}}]\n    \
             tls: {{sni: backend.test, ca_file: \"{}\"}}\n    \
             health_check: {{type: grpc, interval: 100ms, timeout: 1s, rise: 1, fall: 1}}\n",
            up.port,
            down.port,
            ca.display()
        )
    };
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin}"
upstreams:
  trusted:
{trusted}
  untrusted:
{untrusted}
routes:
  - path: /t
    upstream: trusted
  - upstream: untrusted
"#,
        trusted = group(&ca),
        untrusted = group(&other_ca),
    );
    let f = Fulcrum::start(&yaml, port).await;
    assert!(
        wait_for_port(admin, Duration::from_secs(5)).await,
        "admin listener"
    );
    let c = client();
    wait_group_healthy(&c, &f, admin, "trusted", &[true, false]).await;
    wait_group_healthy(&c, &f, admin, "untrusted", &[false, false]).await;
    // The trusted group's checks got through TLS to the gRPC answer; the untrusted one's
    // stopped at the handshake.
    let log = f.stderr();
    for line in [
        format!(
            "upstream trusted: backend 127.0.0.1:{} is unhealthy (serving status NOT_SERVING",
            down.port
        ),
        format!(
            "upstream untrusted: backend 127.0.0.1:{} is unhealthy (TLSHandshakeFailure",
            up.port
        ),
    ] {
        assert!(log.contains(&line), "{line:?} is logged\n{}", f.describe());
    }
    down.set(&[("", SERVING)]);
    wait_group_healthy(&c, &f, admin, "trusted", &[true, true]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_accepts_and_never_answers_is_unhealthy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = GrpcHealthServer::start(dir.path(), &[("", SERVING)]).await;
    let silent_port = free_port();
    let silent = tokio::net::TcpListener::bind(("127.0.0.1", silent_port))
        .await
        .expect("bind the silent backend");
    // Accepts connections and holds them open without a byte in either direction.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let (f, admin) = fulcrum(&[a.port, silent_port], "").await;
    let c = client();
    wait_healthy(&c, &f, admin, &[true, false]).await;
    holder.abort();
}
