//! Traces and logs through the real binary: W3C trace context forwarded to a backend, the
//! access log as text and JSON, in a file reopened on SIGUSR1 and flushed on SIGTERM, a file
//! that cannot be opened, the default log level, clients that leave mid-response (plain, TLS
//! without close_notify, a cache hit), and `--help`.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::*;

/// How long a test waits for a line to appear.
const WAIT: Duration = Duration::from_secs(15);

/// A valid incoming `traceparent`.
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Polls `check` every 20 ms until it returns `Some`, at most [`WAIT`].
async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    let max = (WAIT.as_millis() / 20 + 2) as usize;
    for _ in 0..max {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The lines of a file (none when it does not exist).
fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until `path` has exactly `n` lines, and returns them.
async fn wait_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    wait_for(&format!("{n} lines in {}", path.display()), || {
        let l = lines(path);
        (l.len() >= n).then_some(l)
    })
    .await
}

/// fulcrum in front of `backend` with `extra` top-level YAML.
async fn proxy(backend: &str, extra: &str) -> Fulcrum {
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - addr: \"127.0.0.1:{port}\"\n\
         upstreams:\n  app:\n    backends: [{{addr: \"{backend}\"}}]\n\
         routes:\n  - upstream: app\n{extra}"
    );
    Fulcrum::start(&yaml, port).await
}

/// GET `path` with extra headers; returns the status.
async fn get_with(f: &Fulcrum, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut r = client().get(f.url(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.expect("request").status().as_u16()
}

/// The one `traceparent` the backend got on its last request, split at `-`.
fn sent_traceparent(b: &TestBackend) -> Vec<String> {
    let req = b.last_request().expect("a request reached the backend");
    let all = req.header_all("traceparent");
    assert_eq!(all.len(), 1, "one traceparent: {all:?}");
    all[0].split('-').map(str::to_string).collect()
}

#[tokio::test]
async fn traceparent_is_forwarded_with_the_same_trace_and_a_new_parent() {
    let b = TestBackend::start("b").await;
    let f = proxy(&b.addr(), "").await;
    let headers = [
        ("traceparent", PARENT),
        ("tracestate", "vendor=abc,other=1"),
    ];
    assert_eq!(get_with(&f, "/t", &headers).await, 200);
    let tp = sent_traceparent(&b);
    assert_eq!(tp[0], "00");
    assert_eq!(tp[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(tp[2].len(), 16);
    assert_ne!(tp[2], "00f067aa0ba902b7");
    assert_ne!(tp[2], "0000000000000000");
    assert_eq!(tp[3], "01");
    let req = b.last_request().unwrap();
    assert_eq!(req.header_all("tracestate"), ["vendor=abc,other=1"]);
    // The access log names the trace and fulcrum's span.
    let needle = format!(
        "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id={}",
        tp[2]
    );
    wait_for("the access line with the trace", || {
        f.stderr().contains(&needle).then_some(())
    })
    .await;

    // Not sampled upstream: stays not sampled.
    let unsampled = PARENT.replace("-01", "-00");
    get_with(&f, "/t", &[("traceparent", &unsampled)]).await;
    assert_eq!(sent_traceparent(&b)[3], "00");
}

#[tokio::test]
async fn a_trace_is_started_when_absent_or_invalid_and_tracestate_dropped() {
    let b = TestBackend::start("b").await;
    let f = proxy(&b.addr(), "").await;
    get_with(&f, "/new", &[]).await;
    let started = sent_traceparent(&b);
    assert_eq!((started[0].as_str(), started[3].as_str()), ("00", "01"));
    assert_eq!(started[1].len(), 32);
    assert_ne!(started[1], "0".repeat(32));

    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ] {
        get_with(&f, "/bad", &[("traceparent", bad), ("tracestate", "v=1")]).await;
        let tp = sent_traceparent(&b);
        assert_ne!(tp[1], "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
        assert_ne!(tp[1], started[1], "a new trace for {bad}");
        assert_eq!(tp[3], "01");
        let req = b.last_request().unwrap();
        assert!(
            req.header_all("tracestate").is_empty(),
            "{bad}: tracestate dropped"
        );
    }
}

#[tokio::test]
async fn trace_context_off_leaves_the_headers_alone() {
    let b = TestBackend::start("b").await;
    let f = proxy(&b.addr(), "forwarding: {trace_context: false}\n").await;
    get_with(
        &f,
        "/",
        &[("traceparent", "garbage"), ("tracestate", "v=1")],
    )
    .await;
    let req = b.last_request().unwrap();
    assert_eq!(req.header_all("traceparent"), ["garbage"]);
    assert_eq!(req.header_all("tracestate"), ["v=1"]);
}

#[tokio::test]
async fn json_access_log_lines_parse_with_every_field() {
    let b = TestBackend::start("b").await;
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - addr: \"127.0.0.1:{port}\"\n\
         upstreams:\n  app:\n    backends: [{{addr: \"{}\"}}]\n\
         routes:\n  - upstream: app\n\
         access_log: {{format: json, path: \"$TMPDIR/access.json\"}}\n",
        b.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    let path = f.dir().join("access.json");
    get_with(&f, "/a?q=\"x\"", &[("traceparent", PARENT)]).await;
    get_with(&f, "/b", &[("x-request-id", "req-7")]).await;
    let lines = wait_lines(&path, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON line");
    for key in [
        "time",
        "client",
        "method",
        "uri",
        "version",
        "status",
        "bytes",
        "duration_ms",
        "upstream",
        "backend",
        "tries",
        "request_id",
        "trace_id",
        "span_id",
        "grpc_status",
        "cache",
        "error",
    ] {
        assert!(first.get(key).is_some(), "{key} in {first}");
    }
    assert_eq!(first["method"], "GET");
    assert_eq!(first["uri"], "/a?q=%22x%22");
    assert_eq!(first["status"], 200);
    assert_eq!(first["upstream"], "app");
    assert_eq!(first["backend"], b.addr());
    assert_eq!(first["tries"], 1);
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(first["span_id"].as_str().map(str::len), Some(16));
    assert_eq!(first["error"], serde_json::Value::Null);
    assert_eq!(first["grpc_status"], serde_json::Value::Null);
    let time = first["time"].as_str().unwrap();
    assert_eq!(
        (time.len(), &time[10..11], &time[23..]),
        (24, "T", "Z"),
        "{time}"
    );
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["request_id"], "req-7");
    assert_eq!(second["uri"], "/b");
    assert!(!f.stderr().contains("access]"), "no access line on stderr");
}

#[tokio::test]
async fn text_access_log_file_has_time_and_trace_id_and_follows_logrotate() {
    let b = TestBackend::start("b").await;
    let f = proxy(&b.addr(), "access_log: {path: \"$TMPDIR/access.log\"}\n").await;
    let path = f.dir().join("access.log");
    for i in 0..3 {
        get_with(&f, &format!("/before/{i}"), &[("traceparent", PARENT)]).await;
    }
    let before = wait_lines(&path, 3).await;
    assert_eq!(before.len(), 3);
    assert!(
        before[0].contains("\"GET /before/0 HTTP/1.1\" 200"),
        "{}",
        before[0]
    );
    assert!(before[0].contains(" trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id="));
    assert_eq!(
        &before[0][23..25],
        "Z ",
        "an RFC 3339 time first: {}",
        before[0]
    );

    // logrotate: rename, then SIGUSR1.
    let rotated = f.dir().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    let pid = Pid::from_raw(f.pid().unwrap() as i32);
    kill(pid, Signal::SIGUSR1).unwrap();
    wait_for("the reopen notice", || {
        f.stderr().contains("access log: reopened").then_some(())
    })
    .await;
    for i in 0..2 {
        get_with(&f, &format!("/after/{i}"), &[]).await;
    }
    let after = wait_lines(&path, 2).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after[0].contains("/after/0"));
    let old = lines(&rotated);
    assert_eq!(old.len(), 3, "{old:?}");
    assert!(old.iter().all(|l| l.contains("/before/")));
    assert!(!f.stderr().contains("ERROR"), "{}", f.stderr());
}

#[tokio::test]
async fn no_access_line_is_lost_on_sigterm() {
    let b = TestBackend::start("b").await;
    let mut f = proxy(
        &b.addr(),
        "access_log: {format: json, path: \"$TMPDIR/a.log\"}\n",
    )
    .await;
    let path = f.dir().join("a.log");
    const N: usize = 300;
    let http = client();
    for i in 0..N {
        let r = http
            .get(f.url(&format!("/{i}")))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
    }
    kill(Pid::from_raw(f.pid().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = wait_for("fulcrum to exit", || f.try_wait()).await;
    assert!(status.success(), "{status}");
    let l = lines(&path);
    assert_eq!(l.len(), N);
    for (i, line) in l.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(v["uri"], format!("/{i}"));
    }
}

#[tokio::test]
async fn an_unwritable_access_log_path_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - addr: \"127.0.0.1:{port}\"\n\
         upstreams:\n  app:\n    backends: [{{addr: \"127.0.0.1:9\"}}]\n\
         routes:\n  - upstream: app\n\
         access_log: {{path: \"$TMPDIR/no/such/dir/access.log\"}}\n"
    );
    let conf = write_file(
        dir.path(),
        "f.yaml",
        &with_pingora_section(&yaml, dir.path()),
    );
    let out = fulcrum_cmd(&["-c", conf.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("access_log.path: cannot open"), "{stderr}");
    assert!(stderr.contains("no/such/dir/access.log"), "{stderr}");
    assert!(port_is_free(port), "nothing was bound");
}

#[tokio::test]
async fn pingora_start_up_chatter_is_hidden_at_the_default_level() {
    let b = TestBackend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - addr: \"127.0.0.1:{port}\"\n\
         upstreams:\n  app:\n    backends: [{{addr: \"{}\"}}]\n\
         routes:\n  - upstream: app\n",
        b.addr()
    );
    let conf = write_file(
        dir.path(),
        "f.yaml",
        &with_pingora_section(&yaml, dir.path()),
    );
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(FULCRUM_BIN)
        .args(["-c", conf.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let up = wait_for_port(port, WAIT).await;
    let status = if up {
        get(&client(), &format!("http://127.0.0.1:{port}/x"))
            .await
            .status
    } else {
        0
    };
    let stderr = wait_for("the access line", || {
        let s = std::fs::read_to_string(&err_path).unwrap_or_default();
        s.contains("\"GET /x HTTP/1.1\" 200").then_some(s)
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
    assert!(
        !stderr.contains("pingora"),
        "no Pingora INFO lines:\n{stderr}"
    );
    assert!(stderr.contains("INFO  access]"), "{stderr}");
}

/// Sends `GET path` with `Host: host` over `stream`, reads at least 256 KiB of the answer,
/// then returns (the caller drops the stream: the client leaves mid-body). Blocking: call it
/// off the runtime the test backends run on.
fn read_some(stream: &mut impl ReadWrite, host: &str, path: &str) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < 256 * 1024 {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "the response ended early");
        got += n;
    }
}

/// A readable and writable stream.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A 32 MiB body the origin sends; more than the socket buffers hold.
fn big_body() -> Content {
    Content::new("application/octet-stream", vec![b'x'; 32 << 20])
        .with_header("cache-control", "max-age=300")
}

/// Waits for fulcrum's INFO line about `path` and checks no ERROR was logged.
async fn assert_logged_as_gone(f: &Fulcrum, path: &str) {
    let needle = format!("closed the connection before the response was complete: GET {path}");
    let stderr = wait_for("the client-gone line", || {
        let s = f.stderr();
        s.contains(&needle).then_some(s)
    })
    .await;
    let line = stderr.lines().find(|l| l.contains(&needle)).unwrap();
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("client 127.0.0.1:"), "{line}");
    assert!(!stderr.contains("ERROR"), "no ERROR line:\n{stderr}");
}

#[tokio::test]
async fn a_client_leaving_mid_response_is_info_not_error() {
    let origin = ContentBackend::start(vec![("/big", big_body())]).await;
    let f = proxy(&origin.addr(), "").await;
    leave_mid_body(f.port()).await;
    assert_logged_as_gone(&f, "/big").await;
}

/// A plain client on `port` that leaves after part of `/big` (its Host as reqwest sends it,
/// so a cache hit has the same key).
async fn leave_mid_body(port: u16) {
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        read_some(&mut s, &format!("127.0.0.1:{port}"), "/big");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_cache_hit_client_leaving_mid_response_is_info_not_error() {
    let origin = ContentBackend::start(vec![("/big", big_body())]).await;
    let extra = "cache: {max_size: 256MiB, max_object_size: 64MiB}\n";
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - addr: \"127.0.0.1:{port}\"\n\
         upstreams:\n  app:\n    backends: [{{addr: \"{}\"}}]\n\
         routes:\n  - upstream: app\n    cache: {{}}\n{extra}",
        origin.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    let r = get(&client(), &f.url("/big")).await;
    assert_eq!((r.status, r.body.len()), (200, 32 << 20));
    leave_mid_body(f.port()).await;
    assert_logged_as_gone(&f, "/big").await;
    wait_for("the HIT access line", || {
        f.stderr().contains(" cache=HIT ").then_some(())
    })
    .await;
}

/// A CA and a `site.test` certificate signed by it: (CA PEM, cert path, key path).
fn site_cert(dir: &std::path::Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "fulcrum test CA (logging)");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let leaf = CertificateParams::new(vec!["site.test".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let cert_path = write_file(dir, "site.crt", &cert.pem());
    let key_path = write_file(dir, "site.key", &key.serialize_pem());
    (
        ca.pem(),
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

#[tokio::test]
async fn a_tls_client_leaving_without_close_notify_is_info_not_error() {
    use rustls::pki_types::pem::PemObject;
    let origin = ContentBackend::start(vec![("/big", big_body())]).await;
    let certs = tempfile::tempdir().unwrap();
    let (ca_pem, cert, key) = site_cert(certs.path());
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - addr: \"127.0.0.1:{port}\"\n    tls:\n      certificates:\n        - {{cert: \"{cert}\", key: \"{key}\"}}\n\
         upstreams:\n  app:\n    backends: [{{addr: \"{}\"}}]\n\
         routes:\n  - upstream: app\n",
        origin.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("site.test").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    tokio::task::spawn_blocking(move || {
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        read_some(&mut tls, "site.test", "/big");
        // Dropped without close_notify.
    })
    .await
    .unwrap();
    assert_logged_as_gone(&f, "/big").await;
}

#[test]
fn help_lists_every_algorithm() {
    let out = fulcrum_cmd(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (name, _) in fulcrum::config::algorithm::Algorithm::ALL {
        assert!(help.contains(name), "{name} in:\n{help}");
    }
}
