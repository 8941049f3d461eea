//! TLS: HTTPS listeners (certificate chosen by SNI, h2 through ALPN), redirects to HTTPS,
//! forwarded-proto headers, HTTPS backends (verification, per-group pools, health checks), and
//! `fulcrum -t` on bad certificate configs.
//!
//! Every certificate is generated at run time with rcgen from a throwaway CA, written as PEM
//! files in a temp dir; everything talks to 127.0.0.1 only. HTTPS backends are a second fulcrum
//! process with a TLS listener in front of a [`TestBackend`].

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use support::*;
use x509_parser::extensions::GeneralName;

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// A throwaway certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate and its key, as PEM text.
struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(common_name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        Ca { cert, key }
    }

    /// An intermediate CA signed by this one.
    fn intermediate(&self, common_name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("intermediate key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign intermediate");
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for `names` (DNS names, wildcards allowed), valid from 1975 to 4096.
    fn issue(&self, names: &[&str]) -> Leaf {
        self.issue_with(names, |_| {})
    }

    /// A leaf for `names` with its parameters adjusted by `adjust` before signing.
    fn issue_with(&self, names: &[&str], adjust: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        adjust(&mut params);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A temp dir of PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `contents` to `name`, returns the absolute path as a string for configs.
    fn write(&self, name: &str, contents: &str) -> String {
        write_file(self.dir.path(), name, contents)
            .display()
            .to_string()
    }

    /// Writes a leaf as `NAME.crt` + `NAME.key`; returns (cert path, key path).
    fn write_leaf(&self, name: &str, leaf: &Leaf) -> (String, String) {
        (
            self.write(&format!("{name}.crt"), &leaf.cert_pem),
            self.write(&format!("{name}.key"), &leaf.key_pem),
        )
    }

    fn write_ca(&self, name: &str, ca: &Ca) -> String {
        self.write(&format!("{name}.pem"), &ca.pem())
    }
}

/// The DNS names (SAN) of a DER certificate.
fn dns_names(der: &[u8]) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("served certificate parses");
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .expect("SAN extension parses")
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// How an HTTPS test client treats the server's certificate.
enum Trust<'a> {
    /// Only this CA (PEM) is trusted; the built-in roots are off.
    Ca(&'a str),
    /// Anything is accepted (to see what a server sends for names it has no certificate for).
    Anything,
}

/// An HTTPS client: no proxy, no redirects, `tls_info` on, and each of `names` resolving to
/// 127.0.0.1 (the URL's port is used). `http1_only` turns off h2 in ALPN.
fn https_client(trust: Trust<'_>, names: &[&str], http1_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .tls_built_in_root_certs(false);
    b = match trust {
        Trust::Ca(pem) => b.add_root_certificate(
            reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA PEM for the client"),
        ),
        Trust::Anything => b.danger_accept_invalid_certs(true),
    };
    for name in names {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        b = b.resolve(name, loopback);
    }
    if http1_only {
        b = b.http1_only();
    }
    b.build().expect("build HTTPS client")
}

/// What one HTTPS exchange showed.
#[derive(Debug)]
struct TlsResp {
    status: u16,
    version: reqwest::Version,
    /// DNS names of the certificate the server presented.
    cert_names: Vec<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn https_get(c: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> TlsResp {
    let mut req = c.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url} failed: {e:?}"));
    let status = resp.status().as_u16();
    let version = resp.version();
    let cert_names = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(dns_names)
        .unwrap_or_else(|| panic!("GET {url}: no peer certificate in the TLS info"));
    let headers = resp.headers().clone();
    let body = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: reading the body failed: {e:?}"));
    TlsResp {
        status,
        version,
        cert_names,
        headers,
        body,
    }
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// HTTPS backends
// ---------------------------------------------------------------------------------------------

/// A second fulcrum serving HTTPS on its own port with a `backend.test` certificate issued by
/// `ca`, in front of `origin`. Returns the process (its `port()` is the HTTPS port).
async fn https_backend(pki: &Pki, ca: &Ca, origin: &TestBackend) -> Fulcrum {
    let leaf = ca.issue(&["backend.test"]);
    let (cert, key) = pki.write_leaf("backend", &leaf);
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
    tls:
      certificates:
        - cert: "{cert}"
          key: "{key}"
upstreams:
  origin:
    backends:
      - addr: "{origin}"
routes:
  - upstream: origin
"#,
        origin = origin.addr()
    );
    Fulcrum::start(&yaml, port).await
}

/// The admin `/status` document, retried briefly while the admin listener comes up.
async fn status_json(admin_port: u16) -> serde_json::Value {
    let c = client();
    let url = format!("http://127.0.0.1:{admin_port}/status");
    let deadline = Instant::now() + Duration::from_secs(10);
    for _ in 0..200 {
        if let Ok(r) = try_request(&c, "GET", &url, None, &[], None).await {
            if r.status == 200 {
                return serde_json::from_str(&r.body)
                    .unwrap_or_else(|e| panic!("admin /status is not JSON ({e}): {}", r.body));
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("admin /status on port {admin_port} did not answer 200 in time");
}

fn healthy_flag(doc: &serde_json::Value, group: &str) -> Option<bool> {
    doc["upstreams"][group]["backends"][0]["healthy"].as_bool()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate() {
    let ca = Ca::new("fulcrum test CA (sni)");
    let pki = Pki::new();
    let (a_cert, a_key) = pki.write_leaf("a", &ca.issue(&["a.example.test", "*.a.example.test"]));
    let (b_cert, b_key) = pki.write_leaf("b", &ca.issue(&["b.example.test"]));
    // `names:` overrides the names found in the certificate.
    let (c_cert, c_key) = pki.write_leaf("c", &ca.issue(&["c.example.test"]));
    let app = TestBackend::start("app").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
    tls:
      certificates:
        - cert: "{a_cert}"
          key: "{a_key}"
        - cert: "{b_cert}"
          key: "{b_key}"
        - cert: "{c_cert}"
          key: "{c_key}"
          names: ["alias.example.test"]
upstreams:
  app:
    backends:
      - addr: "{app}"
routes:
  - upstream: app
"#,
        app = app.addr()
    );
    let _f = Fulcrum::start(&yaml, port).await;
    let ca_pem = ca.pem();
    let a_names = sorted(&["a.example.test", "*.a.example.test"]);
    let b_names = sorted(&["b.example.test"]);
    let c_names = sorted(&["c.example.test"]);

    // Verified clients: the served certificate must also pass name verification.
    let c = https_client(
        Trust::Ca(&ca_pem),
        &["a.example.test", "b.example.test", "x.a.example.test"],
        false,
    );
    let r = https_get(&c, &format!("https://b.example.test:{port}/"), &[]).await;
    assert_eq!(r.status, 200, "SNI b.example.test: {r:?}");
    assert_eq!(r.body, "app");
    assert_eq!(
        r.cert_names, b_names,
        "SNI b.example.test gets the b certificate"
    );

    let r = https_get(&c, &format!("https://a.example.test:{port}/"), &[]).await;
    assert_eq!(r.status, 200, "SNI a.example.test: {r:?}");
    assert_eq!(
        r.cert_names, a_names,
        "SNI a.example.test gets the a certificate"
    );

    let r = https_get(&c, &format!("https://x.a.example.test:{port}/"), &[]).await;
    assert_eq!(r.status, 200, "SNI x.a.example.test: {r:?}");
    assert_eq!(
        r.cert_names, a_names,
        "SNI x.a.example.test matches the wildcard of the a certificate"
    );

    // Names fulcrum has no certificate for: the first certificate is served (seen with a
    // client that accepts anything, since it cannot match).
    let any = https_client(
        Trust::Anything,
        &[
            "unknown.test",
            "y.x.a.example.test",
            "alias.example.test",
            "c.example.test",
        ],
        false,
    );
    let r = https_get(&any, &format!("https://unknown.test:{port}/"), &[]).await;
    assert_eq!(r.status, 200, "SNI unknown.test: {r:?}");
    assert_eq!(
        r.cert_names, a_names,
        "an unknown SNI gets the first certificate"
    );

    let r = https_get(&any, &format!("https://y.x.a.example.test:{port}/"), &[]).await;
    assert_eq!(
        r.cert_names, a_names,
        "a wildcard covers one label only; two labels fall back to the first certificate"
    );
    let r = https_get(&any, &format!("https://c.example.test:{port}/"), &[]).await;
    assert_eq!(
        r.cert_names, a_names,
        "with `names:` given, the certificate's own names are not used for SNI"
    );
    let r = https_get(&any, &format!("https://alias.example.test:{port}/"), &[]).await;
    assert_eq!(
        r.cert_names, c_names,
        "SNI alias.example.test gets the certificate that lists it in `names:`"
    );

    // Connecting by IP: rustls clients send no SNI for an IP, so the default is served.
    let r = https_get(&any, &format!("https://127.0.0.1:{port}/"), &[]).await;
    assert_eq!(r.status, 200, "no SNI: {r:?}");
    assert_eq!(r.cert_names, a_names, "no SNI gets the first certificate");

    // SNI is case-insensitive.
    let upper = https_client(Trust::Ca(&ca_pem), &["B.EXAMPLE.TEST"], false);
    let r = https_get(&upper, &format!("https://B.EXAMPLE.TEST:{port}/"), &[]).await;
    assert_eq!(r.cert_names, b_names, "SNI matching ignores case");
}

/// A certificate file holding leaf + intermediate is served whole: a client that trusts only
/// the root verifies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_chain_is_served() {
    let root = Ca::new("fulcrum test root CA (chain)");
    let intermediate = root.intermediate("fulcrum test intermediate CA (chain)");
    let leaf = intermediate.issue(&["chain.test"]);
    let pki = Pki::new();
    let chain = format!("{}{}", leaf.cert_pem, intermediate.pem());
    let cert = pki.write("chain.crt", &chain);
    let key = pki.write("chain.key", &leaf.key_pem);
    let app = TestBackend::start("app").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
    tls:
      certificates:
        - cert: "{cert}"
          key: "{key}"
upstreams:
  app:
    backends:
      - addr: "{app}"
routes:
  - upstream: app
"#,
        app = app.addr()
    );
    let _f = Fulcrum::start(&yaml, port).await;
    let root_pem = root.pem();
    let c = https_client(Trust::Ca(&root_pem), &["chain.test"], false);
    let r = https_get(&c, &format!("https://chain.test:{port}/"), &[]).await;
    assert_eq!(
        r.status, 200,
        "leaf + intermediate verified against the root: {r:?}"
    );
    assert_eq!(r.body, "app");
    assert_eq!(r.cert_names, sorted(&["chain.test"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_via_alpn_and_http1_fallback() {
    let ca = Ca::new("fulcrum test CA (alpn)");
    let pki = Pki::new();
    let (cert, key) = pki.write_leaf("site", &ca.issue(&["site.test"]));
    let app = TestBackend::start("app").await;
    let (h2_port, h1_port) = (free_port(), free_port());
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{h2_port}"
    tls:
      certificates:
        - cert: "{cert}"
          key: "{key}"
  - addr: "127.0.0.1:{h1_port}"
    tls:
      h2: false
      certificates:
        - cert: "{cert}"
          key: "{key}"
upstreams:
  app:
    backends:
      - addr: "{app}"
routes:
  - upstream: app
"#,
        app = app.addr()
    );
    let mut f = Fulcrum::start(&yaml, h2_port).await;
    f.wait_listening(h1_port).await;
    let ca_pem = ca.pem();

    let h2_capable = https_client(Trust::Ca(&ca_pem), &["site.test"], false);
    for i in 0..3 {
        let r = https_get(
            &h2_capable,
            &format!("https://site.test:{h2_port}/h2/{i}"),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "h2 listener: {r:?}");
        assert_eq!(r.body, "app");
        assert_eq!(
            r.headers.get("x-backend").and_then(|v| v.to_str().ok()),
            Some("app"),
            "backend headers come through over h2"
        );
        assert_eq!(
            r.version,
            reqwest::Version::HTTP_2,
            "an h2-capable client negotiates h2 through ALPN"
        );
    }
    let last = app.last_request().expect("backend saw the h2 requests");
    assert_eq!(last.path, "/h2/2");
    assert_eq!(
        last.version, "HTTP/1.1",
        "backends are spoken to in HTTP/1.1"
    );

    let r = https_get(&h2_capable, &format!("https://site.test:{h1_port}/h1"), &[]).await;
    assert_eq!(r.status, 200, "h2: false listener: {r:?}");
    assert_eq!(r.body, "app");
    assert_eq!(
        r.version,
        reqwest::Version::HTTP_11,
        "with tls.h2: false the listener does not offer h2"
    );

    let h1_only = https_client(Trust::Ca(&ca_pem), &["site.test"], true);
    let r = https_get(
        &h1_only,
        &format!("https://site.test:{h2_port}/h1-client"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "http1-only client on the h2 listener: {r:?}");
    assert_eq!(r.body, "app");
    assert_eq!(r.version, reqwest::Version::HTTP_11);
}

/// A TLS client that trusts only `ca_pem`, offers http/1.1 and keeps the sessions (TLS 1.3
/// tickets) it is given in memory, as a browser does, for the next connection.
fn resuming_client(ca_pem: &str) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM"))
        .expect("CA into the root store");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 with ring")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    std::sync::Arc::new(config)
}

/// One `GET /resume` over a new TLS connection to 127.0.0.1:`port` as `name`, with `config`
/// (whose session store carries over between calls); the response read to the end, so that the
/// server's session tickets are taken in. Returns how the handshake went and the status line.
fn tls_get_once(
    config: &std::sync::Arc<rustls::ClientConfig>,
    port: u16,
    name: &str,
) -> (rustls::HandshakeKind, String) {
    use std::io::{Read, Write};
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
    let conn = rustls::ClientConnection::new(std::sync::Arc::clone(config), server_name)
        .expect("client connection");
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(
        format!("GET /resume HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("send the request");
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            // The server may close without close_notify once the response is complete.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("reading the response from port {port}: {e}"),
        }
    }
    let kind = tls.conn.handshake_kind().expect("handshake finished");
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().unwrap_or_default().to_string();
    (kind, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_sessions_resume_with_tickets_unless_turned_off() {
    let ca = Ca::new("fulcrum test CA (resumption)");
    let pki = Pki::new();
    let (cert, key) = pki.write_leaf("site", &ca.issue(&["site.test"]));
    let app = TestBackend::start("app").await;
    let (on_port, off_port) = (free_port(), free_port());
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{on_port}"
    tls:
      certificates:
        - cert: "{cert}"
          key: "{key}"
  - addr: "127.0.0.1:{off_port}"
    tls:
      session_tickets: false
      certificates:
        - cert: "{cert}"
          key: "{key}"
upstreams:
  app:
    backends:
      - addr: "{app}"
routes:
  - upstream: app
"#,
        app = app.addr()
    );
    let mut f = Fulcrum::start(&yaml, on_port).await;
    f.wait_listening(off_port).await;
    let ca_pem = ca.pem();

    let (kinds, many) = tokio::task::spawn_blocking(move || {
        let mut kinds = Vec::new();
        for port in [on_port, off_port] {
            // A client of its own per listener: no session carried from one to the other.
            let config = resuming_client(&ca_pem);
            for _ in 0..3 {
                kinds.push((port, tls_get_once(&config, port, "site.test")));
            }
        }
        // More clients than rustls' default server-side session cache holds (256 sessions):
        // each makes a full handshake, then all come back. Stateless tickets keep no state in
        // the server, so every one of them resumes.
        let clients: Vec<_> = (0..MANY_CLIENTS)
            .map(|_| resuming_client(&ca_pem))
            .collect();
        let first: Vec<_> = clients
            .iter()
            .map(|c| tls_get_once(c, on_port, "site.test"))
            .collect();
        let second: Vec<_> = clients
            .iter()
            .map(|c| tls_get_once(c, on_port, "site.test"))
            .collect();
        (kinds, (first, second))
    })
    .await
    .expect("client thread");

    use rustls::HandshakeKind::{Full, Resumed};
    let expected = [
        (on_port, Full),
        (on_port, Resumed),
        (on_port, Resumed),
        (off_port, Full),
        (off_port, Full),
        (off_port, Full),
    ];
    for ((port, (kind, status)), (want_port, want_kind)) in kinds.iter().zip(expected) {
        assert_eq!(*port, want_port);
        assert_eq!(status, "HTTP/1.1 200 OK", "port {port}");
        assert_eq!(
            *kind,
            want_kind,
            "port {port} (session_tickets {}): all handshakes {kinds:?}",
            if *port == on_port { "default" } else { "false" }
        );
    }
    let (first, second) = many;
    let count = |v: &[(rustls::HandshakeKind, String)], k: rustls::HandshakeKind| {
        v.iter()
            .filter(|(kind, status)| *kind == k && status == "HTTP/1.1 200 OK")
            .count()
    };
    assert_eq!(
        count(&first, Full),
        MANY_CLIENTS,
        "first connections of {MANY_CLIENTS} new clients: full handshakes answered 200"
    );
    assert_eq!(
        count(&second, Resumed),
        MANY_CLIENTS,
        "every one of {MANY_CLIENTS} clients resumes its session: {:?}",
        second.iter().map(|(k, _)| *k).collect::<Vec<_>>()
    );
}

/// More clients than rustls' default server-side session cache (256 sessions) holds.
const MANY_CLIENTS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_listener_redirects_to_https() {
    let ca = Ca::new("fulcrum test CA (redirect)");
    let pki = Pki::new();
    let (cert, key) = pki.write_leaf("site", &ca.issue(&["site.test", "secure.test"]));
    let app = TestBackend::start("app").await;
    let (redirect_port, https_port, plain_port) = (free_port(), free_port(), free_port());
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{redirect_port}"
    redirect_to_https: true
  - addr: "127.0.0.1:{https_port}"
    tls:
      certificates:
        - cert: "{cert}"
          key: "{key}"
  - addr: "127.0.0.1:{plain_port}"
upstreams:
  app:
    backends:
      - addr: "{app}"
routes:
  - host: secure.test
    upstream: app
    redirect_to_https: true
  - upstream: app
"#,
        app = app.addr()
    );
    let mut f = Fulcrum::start(&yaml, redirect_port).await;
    f.wait_listening(https_port).await;
    f.wait_listening(plain_port).await;
    let c = client();

    // The redirecting listener: every request, whatever its route, gets a 308.
    let r = get_host(
        &c,
        &format!("http://127.0.0.1:{redirect_port}/a/b?x=1"),
        &format!("site.test:{redirect_port}"),
    )
    .await;
    assert_eq!(r.status, 308, "redirecting listener: {r:?}");
    assert_eq!(
        r.header("location").as_deref(),
        Some(format!("https://site.test:{https_port}/a/b?x=1").as_str()),
        "the Location keeps host, path and query and points at the HTTPS listener's port"
    );
    let r = request(
        &c,
        "POST",
        &format!("http://127.0.0.1:{redirect_port}/form"),
        Some("site.test"),
        &[],
        Some(b"x=1".to_vec()),
    )
    .await;
    assert_eq!(r.status, 308, "POST is redirected with 308 too: {r:?}");
    assert_eq!(
        r.header("location").as_deref(),
        Some(format!("https://site.test:{https_port}/form").as_str())
    );
    assert_eq!(
        app.count(),
        0,
        "redirected requests never reach the backend"
    );

    // A plain listener without the flag: only the route with `redirect_to_https` redirects.
    let r = get_host(
        &c,
        &format!("http://127.0.0.1:{plain_port}/p?q=2"),
        &format!("secure.test:{plain_port}"),
    )
    .await;
    assert_eq!(r.status, 308, "route redirect on a plain listener: {r:?}");
    assert_eq!(
        r.header("location").as_deref(),
        Some(format!("https://secure.test:{https_port}/p?q=2").as_str())
    );
    assert_eq!(app.count(), 0);
    let r = get_host(
        &c,
        &format!("http://127.0.0.1:{plain_port}/p"),
        "other.test",
    )
    .await;
    assert_eq!(
        r.status, 200,
        "other routes on the plain listener proxy: {r:?}"
    );
    assert_eq!(r.body, "app");
    assert_eq!(app.count(), 1);

    // The same route over HTTPS proxies normally, and so does the redirect target URL.
    let ca_pem = ca.pem();
    let tls = https_client(Trust::Ca(&ca_pem), &["secure.test", "site.test"], false);
    let r = https_get(
        &tls,
        &format!("https://secure.test:{https_port}/p?q=2"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "redirecting route over HTTPS: {r:?}");
    assert_eq!(r.body, "app");
    assert_eq!(app.count(), 2);
    assert_eq!(app.last_request().unwrap().path, "/p?q=2");
    let r = https_get(
        &tls,
        &format!("https://site.test:{https_port}/a/b?x=1"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "the redirect target: {r:?}");
    assert_eq!(app.last_request().unwrap().path, "/a/b?x=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_proto_https_on_tls_listeners() {
    let ca = Ca::new("fulcrum test CA (forwarded)");
    let pki = Pki::new();
    let (cert, key) = pki.write_leaf("fwd", &ca.issue(&["fwd.test"]));
    let app = TestBackend::start("app").await;
    let (plain_port, https_port) = (free_port(), free_port());
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{plain_port}"
  - addr: "127.0.0.1:{https_port}"
    tls:
      certificates:
        - cert: "{cert}"
          key: "{key}"
upstreams:
  app:
    backends:
      - addr: "{app}"
routes:
  - upstream: app
forwarding:
  forwarded: true
"#,
        app = app.addr()
    );
    let mut f = Fulcrum::start(&yaml, plain_port).await;
    f.wait_listening(https_port).await;
    let ca_pem = ca.pem();

    let proto_of = |value: &str| -> Option<String> {
        value
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case("proto"))
            .map(|(_, v)| v.trim_matches('"').to_string())
    };

    // HTTPS over h2 and over HTTP/1.1; a client's own X-Forwarded-Proto is replaced.
    for http1_only in [false, true] {
        let c = https_client(Trust::Ca(&ca_pem), &["fwd.test"], http1_only);
        let r = https_get(
            &c,
            &format!("https://fwd.test:{https_port}/tls"),
            &[("x-forwarded-proto", "http"), ("forwarded", "proto=http")],
        )
        .await;
        assert_eq!(r.status, 200, "HTTPS (http1_only {http1_only}): {r:?}");
        let req = app.last_request().expect("backend saw the HTTPS request");
        assert_eq!(
            req.header_all("x-forwarded-proto"),
            vec!["https".to_string()],
            "X-Forwarded-Proto over TLS (http1_only {http1_only}): {req:?}"
        );
        let fwd = req.header("forwarded").expect("Forwarded header sent");
        assert!(
            !fwd.contains(','),
            "the client's Forwarded is replaced, not extended: {fwd:?}"
        );
        assert_eq!(
            proto_of(&fwd).as_deref(),
            Some("https"),
            "Forwarded proto over TLS: {fwd:?}"
        );
        assert!(
            fwd.contains("for=127.0.0.1"),
            "Forwarded names the client: {fwd:?}"
        );
        assert_eq!(
            req.header("x-forwarded-host").as_deref(),
            Some(format!("fwd.test:{https_port}").as_str())
        );
    }

    // Plain HTTP; a client's claim of https is replaced with http.
    let c = client();
    let r = get_with(
        &c,
        &format!("http://127.0.0.1:{plain_port}/plain"),
        Some("fwd.test"),
        &[("x-forwarded-proto", "https")],
    )
    .await;
    assert_eq!(r.status, 200, "plain: {r:?}");
    let req = app.last_request().unwrap();
    assert_eq!(req.path, "/plain");
    assert_eq!(
        req.header_all("x-forwarded-proto"),
        vec!["http".to_string()]
    );
    let fwd = req.header("forwarded").expect("Forwarded header sent");
    assert_eq!(
        proto_of(&fwd).as_deref(),
        Some("http"),
        "Forwarded: {fwd:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_verification() {
    let ca = Ca::new("fulcrum test CA (upstream)");
    let other_ca = Ca::new("fulcrum test CA (someone else's)");
    let pki = Pki::new();
    let ca_file = pki.write_ca("ca", &ca);
    let other_ca_file = pki.write_ca("other-ca", &other_ca);
    let origin = TestBackend::start("origin").await;
    let backend = https_backend(&pki, &ca, &origin).await;
    let bp = backend.port();

    // One upstream per case, all pointing at the same HTTPS backend; the circuit breaker is
    // off so repeated failures stay 502 (not 503 for an ejected backend).
    let group = |tls: &str| {
        format!(
            "    backends:\n      - addr: \"127.0.0.1:{bp}\"\n    circuit_breaker:\n      max_fails: 0\n    tls: {tls}\n"
        )
    };
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  trusted:
{trusted}
  system_roots:
{system_roots}
  wrong_name:
{wrong_name}
  other_ca:
{other}
  insecure:
{insecure}
  plain:
    backends:
      - addr: "127.0.0.1:{bp}"
    circuit_breaker:
      max_fails: 0
routes:
  - path: /trusted
    upstream: trusted
  - path: /system-roots
    upstream: system_roots
  - path: /wrong-name
    upstream: wrong_name
  - path: /other-ca
    upstream: other_ca
  - path: /insecure
    upstream: insecure
  - path: /plain
    upstream: plain
"#,
        trusted = group(&format!("{{sni: backend.test, ca_file: \"{ca_file}\"}}")),
        system_roots = group("{sni: backend.test}"),
        wrong_name = group(&format!("{{sni: wrong.test, ca_file: \"{ca_file}\"}}")),
        other = group(&format!(
            "{{sni: backend.test, ca_file: \"{other_ca_file}\"}}"
        )),
        insecure = group("{insecure_skip_verify: true}"),
    );
    let proxy = Fulcrum::start(&yaml, port).await;
    let c = client();
    let url = |path: &str| proxy.url(path);
    let mut ok = 0;

    // Trusted first, so a verified connection sits in the pool before the others try.
    for i in 0..2 {
        let r = get(&c, &url(&format!("/trusted/{i}"))).await;
        assert_eq!(r.status, 200, "trusted CA + matching SNI: {r:?}");
        assert_eq!(r.body, "origin");
        ok += 1;
    }
    let seen = origin.last_request().expect("origin saw the request");
    assert_eq!(seen.path, "/trusted/1");
    assert_eq!(
        seen.header("x-forwarded-proto").as_deref(),
        Some("https"),
        "the HTTPS backend saw a TLS connection from the proxy: {seen:?}"
    );

    for round in 0..2 {
        for (path, why) in [
            (
                "/other-ca/x",
                "certificate from a CA the group does not trust",
            ),
            (
                "/system-roots/x",
                "system roots only; the test CA is not among them",
            ),
            (
                "/wrong-name/x",
                "certificate is for backend.test, SNI is wrong.test",
            ),
            ("/plain/x", "plain HTTP to an HTTPS port"),
        ] {
            let r = get(&c, &url(path)).await;
            assert_eq!(
                r.status, 502,
                "{path} (round {round}, after trusted requests pooled a connection): {why}: {r:?}"
            );
            assert_short_body(&r, path);
        }
        let r = get(&c, &url("/insecure/x")).await;
        assert_eq!(r.status, 200, "insecure_skip_verify: {r:?}");
        assert_eq!(r.body, "origin");
        ok += 1;
        let r = get(&c, &url("/trusted/again")).await;
        assert_eq!(r.status, 200, "trusted still works: {r:?}");
        ok += 1;
    }
    assert_eq!(
        origin.count(),
        ok,
        "only the verified (or explicitly insecure) requests reached the origin"
    );
    assert!(
        proxy.stderr().contains("insecure_skip_verify"),
        "insecure_skip_verify is logged as a warning:\n{}",
        proxy.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_use_upstream_tls() {
    let ca = Ca::new("fulcrum test CA (health)");
    let other_ca = Ca::new("fulcrum test CA (health, untrusted)");
    let pki = Pki::new();
    let ca_file = pki.write_ca("ca", &ca);
    let other_ca_file = pki.write_ca("other-ca", &other_ca);
    let origin = TestBackend::start("origin").await;
    let backend = https_backend(&pki, &ca, &origin).await;
    let bp = backend.port();

    let group = |tls: &str, kind: &str| {
        let path = if kind == "http" {
            ", path: /health-check"
        } else {
            ""
        };
        format!(
            "    backends:\n      - addr: \"127.0.0.1:{bp}\"\n    tls: {tls}\n    health_check: {{type: {kind}, interval: 100ms, timeout: 1s{path}}}\n"
        )
    };
    let trusted = format!("{{sni: backend.test, ca_file: \"{ca_file}\"}}");
    let untrusted = format!("{{sni: backend.test, ca_file: \"{other_ca_file}\"}}");
    let (port, admin_port) = (free_port(), free_port());
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin_port}"
upstreams:
  good:
{good}
  bad:
{bad}
  good_tcp:
{good_tcp}
  bad_tcp:
{bad_tcp}
routes:
  - path: /good-tcp
    upstream: good_tcp
  - path: /bad-tcp
    upstream: bad_tcp
  - path: /good
    upstream: good
  - path: /bad
    upstream: bad
"#,
        good = group(&trusted, "http"),
        bad = group(&untrusted, "http"),
        good_tcp = group(&trusted, "tcp"),
        bad_tcp = group(&untrusted, "tcp"),
    );
    let proxy = Fulcrum::start(&yaml, port).await;
    let c = client();

    // The first round of checks runs before the proxy serves; give a few more rounds time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut doc = status_json(admin_port).await;
    for _ in 0..100 {
        let settled = healthy_flag(&doc, "good") == Some(true)
            && healthy_flag(&doc, "good_tcp") == Some(true)
            && healthy_flag(&doc, "bad") == Some(false)
            && healthy_flag(&doc, "bad_tcp") == Some(false);
        if settled || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        doc = status_json(admin_port).await;
    }
    for (group, expect) in [
        ("good", true),
        ("good_tcp", true),
        ("bad", false),
        ("bad_tcp", false),
    ] {
        assert_eq!(
            healthy_flag(&doc, group),
            Some(expect),
            "upstream {group}: healthy should be {expect}; /status: {doc:#}\n{}",
            proxy.stderr()
        );
    }

    // The HTTP checks went through TLS to the origin.
    let checks = origin
        .requests()
        .iter()
        .filter(|r| r.path == "/health-check")
        .count();
    assert!(
        checks >= 2,
        "the HTTPS health checks of `good` reached the origin (saw {checks})"
    );

    for path in ["/good/x", "/good-tcp/x"] {
        let r = get(&c, &proxy.url(path)).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.body, "origin");
    }
    for path in ["/bad/x", "/bad-tcp/x"] {
        let r = get(&c, &proxy.url(path)).await;
        assert_eq!(
            r.status, 503,
            "{path}: the only backend failed its TLS health checks: {r:?}"
        );
    }

    // Still the same a little later (checks keep running every 100 ms).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let doc = status_json(admin_port).await;
    assert_eq!(healthy_flag(&doc, "good"), Some(true), "{doc:#}");
    assert_eq!(healthy_flag(&doc, "bad"), Some(false), "{doc:#}");
    let stderr = proxy.stderr();
    assert!(
        stderr.contains("upstream bad:") && stderr.contains("unhealthy"),
        "the failing check is logged:\n{stderr}"
    );
}

/// `fulcrum -t -c FILE` on a config with `listener_certs` (YAML list items) on an HTTPS
/// listener and `upstream_tls` (a YAML flow map or empty) on the `api` upstream.
fn check_config(
    dir: &Path,
    name: &str,
    listener_certs: &str,
    upstream_tls: &str,
) -> (bool, String, String) {
    let port = free_port();
    let tls_line = if upstream_tls.is_empty() {
        String::new()
    } else {
        format!("    tls: {upstream_tls}\n")
    };
    let yaml = format!(
        r#"listeners:
  - addr: "127.0.0.1:{port}"
    tls:
      certificates:
{listener_certs}
upstreams:
  api:
    backends:
      - addr: "127.0.0.1:9"
{tls_line}routes:
  - upstream: api
"#
    );
    let config = write_file(dir, &format!("{name}.yaml"), &yaml);
    let out = fulcrum_cmd(&["-t", "-c", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), stderr, config.display().to_string())
}

fn cert_item(cert: &str, key: &str) -> String {
    format!("        - cert: \"{cert}\"\n          key: \"{key}\"\n")
}

#[test]
fn bad_certificate_configs_fail_check_naming_the_file() {
    let ca = Ca::new("fulcrum test CA (check)");
    let pki = Pki::new();
    let (good_cert, good_key) = pki.write_leaf("good", &ca.issue(&["good.test"]));
    let (_, other_key) = pki.write_leaf("other", &ca.issue(&["other.test"]));
    let (expired_cert, expired_key) = pki.write_leaf(
        "expired",
        &ca.issue_with(&["expired.test"], |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }),
    );
    let (future_cert, future_key) = pki.write_leaf(
        "future",
        &ca.issue_with(&["future.test"], |p| {
            p.not_before = rcgen::date_time_ymd(2200, 1, 1);
            p.not_after = rcgen::date_time_ymd(2201, 1, 1);
        }),
    );
    let garbage = pki.write(
        "garbage.pem",
        "this is not PEM at all\n-----BEGIN NOTHING-----\nabc\n-----END NOTHING-----\n",
    );
    let key_as_cert = good_key.clone(); // a PEM file, but with no certificate in it
    let missing_cert = pki.path("missing.crt").display().to_string();
    let missing_key = pki.path("missing.key").display().to_string();
    let missing_ca = pki.path("missing-ca.pem").display().to_string();
    let ca_file = pki.write_ca("ca", &ca);
    let configs = tempfile::tempdir().unwrap();
    let dir = configs.path();

    // The control: the good pair passes, with and without an upstream CA file.
    let (ok, stderr, _) = check_config(dir, "good", &cert_item(&good_cert, &good_key), "");
    assert!(ok, "a good certificate passes -t; stderr:\n{stderr}");
    let (ok, stderr, _) = check_config(
        dir,
        "good-ca",
        &cert_item(&good_cert, &good_key),
        &format!("{{sni: good.test, ca_file: \"{ca_file}\"}}"),
    );
    assert!(ok, "a good upstream ca_file passes -t; stderr:\n{stderr}");

    struct Case<'a> {
        name: &'a str,
        certs: String,
        upstream_tls: String,
        key_path: &'a str,
        /// Every one must appear in stderr (file names, and a word saying what is wrong).
        mentions: Vec<&'a str>,
    }
    let listener0 = "listeners[0].tls.certificates[0]";
    let cases = vec![
        Case {
            name: "missing cert file",
            certs: cert_item(&missing_cert, &good_key),
            upstream_tls: String::new(),
            key_path: listener0,
            mentions: vec![&missing_cert],
        },
        Case {
            name: "missing key file",
            certs: cert_item(&good_cert, &missing_key),
            upstream_tls: String::new(),
            key_path: listener0,
            mentions: vec![&missing_key],
        },
        Case {
            name: "key does not match the certificate",
            certs: cert_item(&good_cert, &other_key),
            upstream_tls: String::new(),
            key_path: listener0,
            mentions: vec![&other_key, &good_cert, "match"],
        },
        Case {
            name: "expired certificate",
            certs: cert_item(&expired_cert, &expired_key),
            upstream_tls: String::new(),
            key_path: listener0,
            mentions: vec![&expired_cert, "expired"],
        },
        Case {
            name: "not yet valid certificate",
            certs: cert_item(&future_cert, &future_key),
            upstream_tls: String::new(),
            key_path: listener0,
            mentions: vec![&future_cert, "not valid before"],
        },
        Case {
            name: "garbage instead of a certificate",
            certs: cert_item(&garbage, &good_key),
            upstream_tls: String::new(),
            key_path: listener0,
            mentions: vec![&garbage],
        },
        Case {
            name: "a key file given as the certificate",
            certs: cert_item(&key_as_cert, &good_key),
            upstream_tls: String::new(),
            key_path: listener0,
            mentions: vec![&key_as_cert, "certificate"],
        },
        Case {
            name: "garbage instead of a key",
            certs: cert_item(&good_cert, &garbage),
            upstream_tls: String::new(),
            key_path: listener0,
            mentions: vec![&garbage, "key"],
        },
        Case {
            name: "a bad second certificate",
            certs: format!(
                "{}{}",
                cert_item(&good_cert, &good_key),
                cert_item(&expired_cert, &expired_key)
            ),
            upstream_tls: String::new(),
            key_path: "listeners[0].tls.certificates[1]",
            mentions: vec![&expired_cert],
        },
        Case {
            name: "missing upstream ca_file",
            certs: cert_item(&good_cert, &good_key),
            upstream_tls: format!("{{sni: good.test, ca_file: \"{missing_ca}\"}}"),
            key_path: "upstreams.api.tls.ca_file",
            mentions: vec![&missing_ca],
        },
        Case {
            name: "upstream ca_file without certificates",
            certs: cert_item(&good_cert, &good_key),
            upstream_tls: format!("{{sni: good.test, ca_file: \"{garbage}\"}}"),
            key_path: "upstreams.api.tls.ca_file",
            mentions: vec![&garbage],
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let (ok, stderr, config) =
            check_config(dir, &format!("case{i}"), &case.certs, &case.upstream_tls);
        assert!(
            !ok,
            "{}: `fulcrum -t` should fail; stderr:\n{stderr}",
            case.name
        );
        assert!(
            stderr.contains(case.key_path),
            "{}: stderr should name the key path {}:\n{stderr}",
            case.name,
            case.key_path
        );
        assert!(
            stderr.contains(&config),
            "{}: stderr should name the config file {config}:\n{stderr}",
            case.name
        );
        for m in &case.mentions {
            assert!(
                stderr.contains(m),
                "{}: stderr should mention {m:?}:\n{stderr}",
                case.name
            );
        }
        assert!(
            !stderr.contains("panicked"),
            "{}: fulcrum panicked:\n{stderr}",
            case.name
        );
    }
}
