//! Limits around the start of a connection: TLS handshakes count against
//! `limits.max_connections` and end within `limits.handshake_timeout` / `header_timeout` of
//! accept; an `h2c` listener decides between HTTP/1 and HTTP/2 on the first bytes that differ;
//! the open-files limit is raised for `max_connections` at start.
//!
//! Certificates are generated at run time with rcgen; everything talks to 127.0.0.1 only.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A throwaway CA's PEM and a `site.test` leaf it signed, written to `dir` as (cert, key)
/// paths.
fn site_certificate(dir: &Path) -> (String, String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(DnType::CommonName, "fulcrum test CA (handshakes)");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = params.self_signed(&ca_key).expect("self-sign CA");
    let mut leaf = CertificateParams::new(vec!["site.test".to_string()]).expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "site.test");
    let key = KeyPair::generate().expect("leaf key");
    let cert = leaf.signed_by(&key, &ca, &ca_key).expect("sign leaf");
    let cert_path = write_file(dir, "site.crt", &cert.pem());
    let key_path = write_file(dir, "site.key", &key.serialize_pem());
    (
        ca.pem(),
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

/// An HTTPS client trusting only `ca_pem`, `site.test` resolving to 127.0.0.1, no pooling.
fn https_client(ca_pem: &str) -> reqwest::Client {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM"))
        .resolve("site.test", loopback)
        .pool_max_idle_per_host(0)
        .build()
        .expect("HTTPS client")
}

/// A listener pair config: an HTTPS listener on `tls_port` and a plain one on `plain_port`
/// in front of `backend`, with the `limits:` lines given.
fn tls_config(
    tls_port: u16,
    plain_port: u16,
    cert: &str,
    key: &str,
    backend: &str,
    limits: &str,
) -> String {
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{tls_port}"
    tls:
      certificates:
        - cert: "{cert}"
          key: "{key}"
  - addr: "127.0.0.1:{plain_port}"
limits:
{limits}
upstreams:
  app:
    backends:
      - addr: "{backend}"
routes:
  - upstream: app
"#
    )
}

/// The start of a TLS ClientHello whose record announces 200 bytes, of which only these 16
/// are ever sent.
const HALF_CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x00, 0xc8, // handshake record, 200 bytes
    0x01, 0x00, 0x00, 0xc4, // ClientHello, 196 bytes
    0x03, 0x03, // TLS 1.2
    0x5a, 0x5a, 0x5a, 0x5a, 0x5a, // the first bytes of the random
];

/// How a connection the test only reads from ended.
#[derive(Debug)]
struct Ended {
    /// Time from connecting to the end.
    after: Duration,
    /// Bytes the server sent.
    bytes: usize,
}

/// Reads from `stream` until the server closes it (EOF or reset), at most until `deadline`;
/// `None` when it is still open then.
async fn wait_closed(stream: &mut TcpStream, since: Instant, deadline: Instant) -> Option<Ended> {
    let mut bytes = 0;
    let mut chunk = [0u8; 4096];
    for _ in 0..10_000 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(n)) if n > 0 => bytes += n,
            Ok(_) => {
                return Some(Ended {
                    after: since.elapsed(),
                    bytes,
                })
            }
        }
    }
    None
}

/// Statuses answered to a plain `GET /` with `Connection: close` on `port` (a refused
/// connection is answered 503 and closed with the request unread, which may end in a reset
/// after the answer; the answer is still read).
async fn plain_statuses(port: u16) -> Vec<u16> {
    let get = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    raw_exchange(port, get, Duration::from_secs(2))
        .await
        .statuses()
}

// ---------------------------------------------------------------------------------------------
// 1. TLS handshakes inside the connection limits
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_handshakes_count_and_are_cut_at_the_header_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_pem, cert, key) = site_certificate(dir.path());
    let backend = TestBackend::start("app").await;
    let (tls_port, plain_port) = (free_port(), free_port());
    // header_timeout leaves the test room to see the cap full on a loaded machine (the
    // flood's connections are accepted by the server's own thread, some time after connect).
    let limits = "  max_connections: 20\n  header_timeout: 4s";
    let yaml = tls_config(tls_port, plain_port, &cert, &key, &backend.addr(), limits);
    let mut f = Fulcrum::start(&yaml, tls_port).await;
    f.wait_listening(plain_port).await;
    let https = https_client(&ca_pem);
    let url = format!("https://site.test:{tls_port}/");
    let before = https
        .get(&url)
        .send()
        .await
        .expect("HTTPS before the flood");
    assert_eq!(before.status(), 200);

    // 25 connections that never finish a handshake: 15 silent, 10 with half a ClientHello.
    let mut flood = Vec::new();
    for i in 0..25 {
        let mut c = TcpStream::connect(("127.0.0.1", tls_port))
            .await
            .expect("connect flood");
        if i % 5 < 2 {
            c.write_all(HALF_CLIENT_HELLO).await.expect("half hello");
        }
        flood.push((Instant::now(), c));
    }
    // The plain listener shares the cap: it answers 503 once the flood holds every slot.
    let full_by = Instant::now() + Duration::from_millis(3000);
    let mut statuses = plain_statuses(plain_port).await;
    while statuses != [503] && Instant::now() < full_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
        statuses = plain_statuses(plain_port).await;
    }
    assert_eq!(
        statuses,
        [503],
        "the plain listener while the flood holds every slot"
    );
    // A real HTTPS client over the cap is closed before any handshake.
    let refused = https.get(&url).send().await;
    assert!(
        refused.is_err(),
        "HTTPS over the cap must be refused, got {refused:?}"
    );
    let mut probe = TcpStream::connect(("127.0.0.1", tls_port))
        .await
        .expect("probe");
    probe
        .write_all(HALF_CLIENT_HELLO)
        .await
        .expect("probe hello");
    let t = Instant::now();
    let ended = wait_closed(&mut probe, t, t + Duration::from_secs(5)).await;
    let ended = ended.expect("the server must close a TLS connection over the cap");
    assert_eq!(ended.bytes, 0, "no plain-text answer to a TLS client");

    // Every flood connection is closed by the server within header_timeout (+ margin) of
    // connecting, without a byte.
    for (i, (since, c)) in flood.iter_mut().enumerate() {
        let ended = wait_closed(c, *since, *since + Duration::from_millis(5500)).await;
        let ended = ended.unwrap_or_else(|| {
            panic!("flood connection {i} still open 5.5 s after connecting (header_timeout 4s)")
        });
        assert_eq!(ended.bytes, 0, "flood connection {i}: {ended:?}");
    }
    eprintln!("25 silent handshakes, max_connections 20, header_timeout 4s: all closed");

    // Normal clients are served again.
    for i in 0..3 {
        let r = https.get(format!("{url}after/{i}")).send().await;
        let r = r.unwrap_or_else(|e| panic!("HTTPS after the flood: {e:?}"));
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.expect("body"), "app");
    }
    assert_eq!(plain_statuses(plain_port).await, [200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout_shorter_than_header_timeout_cuts_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_pem, cert, key) = site_certificate(dir.path());
    let backend = TestBackend::start("app").await;
    let (tls_port, plain_port) = (free_port(), free_port());
    let limits = "  header_timeout: 10s\n  handshake_timeout: 1s";
    let yaml = tls_config(tls_port, plain_port, &cert, &key, &backend.addr(), limits);
    let _f = Fulcrum::start(&yaml, tls_port).await;

    let since = Instant::now();
    let mut silent = TcpStream::connect(("127.0.0.1", tls_port))
        .await
        .expect("connect");
    let mut half = TcpStream::connect(("127.0.0.1", tls_port))
        .await
        .expect("connect");
    half.write_all(HALF_CLIENT_HELLO).await.expect("half hello");
    let deadline = since + Duration::from_secs(5);
    for (what, c) in [("silent", &mut silent), ("half a ClientHello", &mut half)] {
        let ended = wait_closed(c, since, deadline).await;
        let ended = ended.unwrap_or_else(|| panic!("{what}: still open after 5 s"));
        eprintln!("handshake_timeout 1s, header_timeout 10s, {what}: closed after {ended:?}");
        assert!(
            ended.after >= Duration::from_millis(900),
            "{what}: closed at {:?}, before handshake_timeout",
            ended.after
        );
        assert_eq!(ended.bytes, 0);
    }
    let r = https_client(&ca_pem)
        .get(format!("https://site.test:{tls_port}/"))
        .send()
        .await
        .expect("a normal HTTPS request");
    assert_eq!(r.status(), 200);
}

/// A blocking rustls client connection to 127.0.0.1:`port` as `site.test`, trusting only
/// `ca_pem`, offering only `h2` in ALPN, with its handshake done.
fn h2_tls_client(
    ca_pem: &str,
    port: u16,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA");
    roots.add(ca).expect("add CA");
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("site.test").expect("name");
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("conn");
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(8)))
        .expect("read timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]), "ALPN h2");
    tls
}

/// Reads from `stream` until the server closes it; how long that took from `since`, and the
/// bytes read (a timeout of the stream's read counts as "still open": panics).
fn read_until_closed(stream: &mut impl std::io::Read, since: Instant) -> (Duration, usize) {
    let mut bytes = 0;
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return (since.elapsed(), bytes),
            Ok(n) => bytes += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("still open after {:?}", since.elapsed())
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("still open after {:?}", since.elapsed())
            }
            // A reset or a TLS close without close_notify: closed.
            Err(_) => return (since.elapsed(), bytes),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_must_send_its_preface_within_the_header_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_pem, cert, key) = site_certificate(dir.path());
    let backend = TestBackend::start("app").await;
    let (tls_port, plain_port) = (free_port(), free_port());
    // HTTPS listeners offer h2 by default.
    let limits = "  header_timeout: 2s";
    let yaml = tls_config(tls_port, plain_port, &cert, &key, &backend.addr(), limits);
    let _f = Fulcrum::start(&yaml, tls_port).await;
    // The handshake ends (ALPN h2), then the client sends nothing: no preface.
    let (after, bytes) = tokio::task::spawn_blocking(move || {
        let since = Instant::now();
        let mut tls = h2_tls_client(&ca_pem, tls_port);
        read_until_closed(&mut tls, since)
    })
    .await
    .expect("client thread");
    eprintln!("silent HTTP/2 client after ALPN: closed after {after:?}, {bytes} bytes");
    assert!(
        after >= Duration::from_millis(1900),
        "closed at {after:?}, before the header timeout"
    );
    assert!(after < Duration::from_secs(6), "closed only at {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2c_connection_is_closed_after_the_keepalive_timeout() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - addr: \"127.0.0.1:{port}\"\n    h2c: true\n\
         limits:\n  keepalive_timeout: 1s\n  header_timeout: 10s\n\
         upstreams:\n  app:\n    backends:\n      - addr: \"{}\"\n\
         routes:\n  - upstream: app\n",
        backend.addr()
    );
    let _f = Fulcrum::start(&yaml, port).await;
    let since = Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // The preface and an empty SETTINGS frame, then no stream at all.
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("preface");
    let ended = wait_closed(&mut c, since, since + Duration::from_secs(6)).await;
    let ended = ended.expect("an idle HTTP/2 connection must be closed");
    eprintln!("idle h2c connection, keepalive_timeout 1s: closed after {ended:?}");
    assert!(
        ended.after >= Duration::from_millis(900),
        "closed at {:?}, before the keep-alive timeout",
        ended.after
    );
}

#[test]
fn handshake_timeout_must_be_a_positive_duration() {
    for (value, message) in [
        ("0s", "expected a duration above zero"),
        ("soon", "expected a duration"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = format!(
            "listeners:\n  - addr: \"127.0.0.1:8080\"\nlimits:\n  handshake_timeout: {value}\n\
             upstreams:\n  app:\n    backends:\n      - addr: \"127.0.0.1:9\"\n\
             routes:\n  - upstream: app\n"
        );
        let path = write_file(dir.path(), "fulcrum.yaml", &yaml);
        let out = fulcrum_cmd(&["-t", "-c", path.to_str().expect("utf-8 path")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "handshake_timeout: {value} was accepted"
        );
        let want = format!("{}: limits.handshake_timeout: {message}", path.display());
        assert!(stderr.contains(&want), "want `{want}` in:\n{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. h2c listeners decide on the first bytes that differ
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_listener_answers_a_short_http1_request_and_prior_knowledge_h2() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
    h2c: true
limits:
  header_timeout: 10s
upstreams:
  app:
    backends:
      - addr: "{b}"
routes:
  - upstream: app
"#,
        b = backend.addr()
    );
    let _f = Fulcrum::start(&yaml, port).await;

    // 18 bytes, shorter than the 24-byte HTTP/2 preface: answered (raw_exchange waits 5 s for
    // a first byte, half the head timeout), then closed (HTTP/1.0).
    let ex = raw_exchange(port, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(10)).await;
    let responses = ex.responses();
    assert_eq!(responses.len(), 1, "one answer: {ex:?}");
    assert_eq!(responses[0].status, 200);
    assert_eq!(responses[0].body_string(), "app");
    assert!(
        ex.closed,
        "HTTP/1.0 without keep-alive: closed after the answer"
    );

    let h2 = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .http2_prior_knowledge()
        .build()
        .expect("h2c client");
    let r = h2
        .get(format!("http://127.0.0.1:{port}/h2c"))
        .send()
        .await
        .expect("prior-knowledge h2c");
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().await.expect("body"), "app");

    // The preface in two pieces is still HTTP/2: the server answers with its SETTINGS frame.
    let mut c = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    c.write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("first half");
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.write_all(b"\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("second half and an empty SETTINGS frame");
    let mut frame = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut frame))
        .await
        .expect("a frame within 5 s")
        .expect("read a frame header");
    assert_eq!(
        frame[3], 0x04,
        "the server's first frame is SETTINGS: {frame:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. The open-files limit
// ---------------------------------------------------------------------------------------------

/// A fulcrum started through `bash` with open-files limits `soft`:`hard`; killed on drop.
struct Limited {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Limited {
    /// Starts fulcrum with `max_connections` under `ulimit -Sn soft -Hn hard` and waits for
    /// its listener.
    async fn start(soft: u32, hard: u32, max_connections: u32) -> Limited {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        // A pool of 100 idle backend connections and one backend: the need is
        // 2 x max_connections + 100 + 1 + 256.
        let yaml = format!(
            "pingora:\n  threads: 1\n  grace_period_seconds: 0\n  \
             graceful_shutdown_timeout_seconds: 1\n  upstream_keepalive_pool_size: 100\n  \
             pid_file: \"$TMPDIR/fulcrum.pid\"\n  upgrade_sock: \"$TMPDIR/upgrade.sock\"\n\
             listeners:\n  - addr: \"127.0.0.1:{port}\"\nlimits:\n  max_connections: \
             {max_connections}\nupstreams:\n  app:\n    backends:\n      - addr: \"127.0.0.1:9\"\n\
             routes:\n  - upstream: app\n"
        );
        let config = write_file(
            dir.path(),
            "f.yaml",
            &with_pingora_section(&yaml, dir.path()),
        );
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let child = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" -c \"$1\""
            ))
            .arg(FULCRUM_BIN)
            .arg(&config)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn bash");
        let mut limited = Limited { child, dir };
        let up = wait_for_port(port, Duration::from_secs(15)).await;
        if !up || limited.child.try_wait().expect("try_wait").is_some() {
            panic!("fulcrum did not start:\n{}", limited.stderr());
        }
        limited
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// (soft, hard) from /proc/PID/limits.
    fn open_files(&self) -> (String, String) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id()))
            .expect("read /proc/PID/limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("a Max open files line");
        let mut fields = line["Max open files".len()..].split_whitespace();
        let soft = fields.next().expect("soft").to_string();
        let hard = fields.next().expect("hard").to_string();
        (soft, hard)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_files_soft_limit_is_raised_for_max_connections() {
    let f = Limited::start(256, 4096, 1000).await;
    let need = 2 * 1000 + 100 + 1 + 256;
    assert_eq!(
        f.open_files(),
        (need.to_string(), "4096".to_string()),
        "stderr:\n{}",
        f.stderr()
    );
    assert!(!f.stderr().contains("WARN"), "no warning: {}", f.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_limit_below_the_need_is_used_with_a_warning() {
    let f = Limited::start(256, 512, 1000).await;
    assert_eq!(f.open_files(), ("512".to_string(), "512".to_string()));
    let stderr = f.stderr();
    assert!(
        stderr.contains("limits.max_connections 1000 needs 2357 open files")
            && stderr.contains("the hard limit is 512"),
        "the warning names the numbers:\n{stderr}"
    );
}
