//! Response compression (a route's `compression:`): the real fulcrum binary between curl and
//! real backends on 127.0.0.1, bodies decoded by real decoders (Python's `gzip`, `brotli` and
//! `zstandard`, and curl's own `--compressed`) and compared byte for byte.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use support::*;

/// A deterministic, compressible body of `n` bytes (text with varying numbers).
fn text_body(n: usize) -> Vec<u8> {
    let mut x: u32 = 12345;
    let mut out = Vec::with_capacity(n + 64);
    let mut i = 0u32;
    while out.len() < n {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        out.extend_from_slice(
            format!(
                "{i}: lorem ipsum {} dolor {} sit amet\n",
                x % 1000,
                (x >> 8) % 97
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(n);
    out
}

/// Bytes that look like a PNG (its signature, then noise).
fn png_body() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(text_body(4000).iter().map(|b| b.wrapping_mul(31)));
    out
}

/// One response as curl saw it.
#[derive(Debug)]
struct Fetched {
    status: u16,
    /// Header fields of the final response, names lowercase, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// curl's `%{http_version}` (`1.1`, `2`).
    version: String,
}

impl Fetched {
    /// The values of `name` joined with `", "`; `None` when absent.
    fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

/// Runs curl with `args` plus the URL, the head and body going to files in `dir`.
async fn curl(dir: &Path, args: &[&str], url: &str) -> Fetched {
    let head = dir.join("head.txt");
    let body = dir.join("body.bin");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_version}"])
        .args(args)
        .arg(url);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head_text = std::fs::read_to_string(&head).expect("curl head");
    // The last response block (after any 1xx).
    let block = head_text
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or_default();
    let mut lines = block.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Fetched {
        status,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
        version: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// `data` decoded from `encoding` by Python's strict decoders (a truncated or unfinished
/// stream is an error).
fn python_decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    let script = r#"
import sys, gzip, brotli, zstandard
enc, data = sys.argv[1], sys.stdin.buffer.read()
if enc == "gzip":
    out = gzip.decompress(data)
elif enc == "br":
    out = brotli.decompress(data)
elif enc == "zstd":
    d = zstandard.ZstdDecompressor().decompressobj()
    out = d.decompress(data)
    if not d.eof:
        sys.exit("zstd frame not finished")
else:
    sys.exit("unknown encoding " + enc)
sys.stdout.buffer.write(out)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, encoding])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python could not decode {encoding} ({} bytes): {}",
        data.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A fulcrum in front of `backend` with one route named `site` compressing with
/// `compression` (a flow mapping), plus extra top-level YAML.
async fn fulcrum_for(backend: &ContentBackend, compression: &str, extra: &str) -> Fulcrum {
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
{extra}
upstreams:
  app:
    backends:
      - addr: "{addr}"
routes:
  - name: site
    upstream: app
    compression: {compression}
"#,
        addr = backend.addr()
    );
    Fulcrum::start(&yaml, port).await
}

const ALL_ON: &str = "{gzip: 6, brotli: 4, zstd: 3}";

#[tokio::test]
async fn gzip_br_and_zstd_round_trip_byte_exact() {
    let body = text_body(200_000);
    let app = ContentBackend::start(vec![(
        "/page",
        Content::new("text/html; charset=utf-8", body.clone()),
    )])
    .await;
    let f = fulcrum_for(&app, ALL_ON, "").await;
    let dir = tempfile::tempdir().unwrap();
    for enc in ["gzip", "br", "zstd"] {
        let ae = format!("Accept-Encoding: {enc}");
        let raw = curl(dir.path(), &["-H", &ae], &f.url("/page")).await;
        assert_eq!(raw.status, 200);
        assert_eq!(
            raw.header("content-encoding").as_deref(),
            Some(enc),
            "{raw:?}"
        );
        assert_eq!(raw.header("content-length"), None, "{enc}");
        assert_eq!(raw.header("vary").as_deref(), Some("Accept-Encoding"));
        assert!(
            raw.body.len() < body.len() / 3,
            "{enc}: {} bytes compressed from {}",
            raw.body.len(),
            body.len()
        );
        assert!(
            python_decode(enc, &raw.body) == body,
            "{enc}: decoded body differs"
        );

        let decoded = curl(dir.path(), &["--compressed", "-H", &ae], &f.url("/page")).await;
        assert_eq!(decoded.header("content-encoding").as_deref(), Some(enc));
        assert!(
            decoded.body == body,
            "{enc}: curl --compressed body differs"
        );
    }
    // curl's own offer (deflate, gzip, br, zstd): the server's preference, zstd.
    let offer = curl(dir.path(), &["--compressed"], &f.url("/page")).await;
    assert_eq!(offer.header("content-encoding").as_deref(), Some("zstd"));
    assert!(offer.body == body);
}

#[tokio::test]
async fn q_values_choose_the_encoding() {
    let app = ContentBackend::start(vec![(
        "/data",
        Content::new("application/json", text_body(5000)),
    )])
    .await;
    let f = fulcrum_for(&app, "{gzip: 6, brotli: 4}", "").await;
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, Option<&str>)] = &[
        ("gzip;q=1, br;q=0.5", Some("gzip")),
        ("gzip;q=0.5, br", Some("br")),
        ("br;q=0, gzip;q=0.1", Some("gzip")),
        ("br;q=0", None),
        ("*;q=0.2, br;q=0", Some("gzip")),
        ("zstd", None),
        ("br;q=7, gzip;q=0.3", Some("gzip")),
        ("identity", None),
    ];
    for (ae, want) in cases {
        let r = curl(
            dir.path(),
            &["-H", &format!("Accept-Encoding: {ae}")],
            &f.url("/data"),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-encoding").as_deref(),
            *want,
            "Accept-Encoding: {ae}"
        );
        assert_eq!(r.header("vary").as_deref(), Some("Accept-Encoding"), "{ae}");
        match want {
            Some(enc) => assert!(python_decode(enc, &r.body) == text_body(5000), "{ae}"),
            None => {
                assert!(r.body == text_body(5000), "{ae}: identity body");
                assert_eq!(r.header("content-length").as_deref(), Some("5000"), "{ae}");
            }
        }
    }
}

#[tokio::test]
async fn images_small_bodies_and_encoded_responses_pass_unchanged() {
    let png = png_body();
    let pre_gzipped = {
        let mut e = flate_by_python(&text_body(3000));
        e.shrink_to_fit();
        e
    };
    let app = ContentBackend::start(vec![
        ("/logo.png", Content::new("image/png", png.clone())),
        ("/tiny", Content::new("text/plain", text_body(100))),
        (
            "/already",
            Content::new("text/plain", pre_gzipped.clone()).with_header("content-encoding", "gzip"),
        ),
        (
            "/no-transform",
            Content::new("text/plain", text_body(3000))
                .with_header("cache-control", "no-transform"),
        ),
    ])
    .await;
    let f = fulcrum_for(&app, ALL_ON, "").await;
    let dir = tempfile::tempdir().unwrap();
    let ae = ["-H", "Accept-Encoding: gzip, br, zstd"];

    let r = curl(dir.path(), &ae, &f.url("/logo.png")).await;
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), None);
    assert_eq!(r.header("content-length"), Some(png.len().to_string()));
    assert!(r.body == png);

    let r = curl(dir.path(), &ae, &f.url("/tiny")).await;
    assert_eq!(
        r.header("content-encoding"),
        None,
        "100 bytes is under min_size"
    );
    assert_eq!(r.header("content-length").as_deref(), Some("100"));
    assert!(r.body == text_body(100));

    let r = curl(
        dir.path(),
        &["-H", "Accept-Encoding: br"],
        &f.url("/already"),
    )
    .await;
    assert_eq!(
        r.header("content-encoding").as_deref(),
        Some("gzip"),
        "never twice"
    );
    assert_eq!(
        r.header("content-length"),
        Some(pre_gzipped.len().to_string())
    );
    assert!(
        r.body == pre_gzipped,
        "the backend's gzip body passes byte for byte"
    );
    assert!(python_decode("gzip", &r.body) == text_body(3000));

    let r = curl(dir.path(), &ae, &f.url("/no-transform")).await;
    assert_eq!(
        r.header("content-encoding"),
        None,
        "Cache-Control: no-transform"
    );
    assert!(r.body == text_body(3000));
}

/// `data` gzipped by Python, as a backend that compresses its own answers would send it.
fn flate_by_python(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, gzip; sys.stdout.buffer.write(gzip.compress(sys.stdin.buffer.read()))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[tokio::test]
async fn vary_is_merged_and_strong_etags_weakened() {
    let body = text_body(8000);
    let app = ContentBackend::start(vec![(
        "/doc",
        Content::new("text/css", body.clone())
            .with_header("vary", "Origin")
            .with_header("etag", "\"v42\"")
            .with_header("accept-ranges", "bytes"),
    )])
    .await;
    let f = fulcrum_for(&app, ALL_ON, "").await;
    let dir = tempfile::tempdir().unwrap();

    let r = curl(dir.path(), &["-H", "Accept-Encoding: gzip"], &f.url("/doc")).await;
    assert_eq!(r.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(r.header("vary").as_deref(), Some("Origin, Accept-Encoding"));
    assert_eq!(r.header("etag").as_deref(), Some("W/\"v42\""));
    assert_eq!(r.header("accept-ranges"), None);
    assert!(python_decode("gzip", &r.body) == body);

    // Not compressed for this client: the same Vary, the backend's own validator and length.
    let r = curl(dir.path(), &[], &f.url("/doc")).await;
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary").as_deref(), Some("Origin, Accept-Encoding"));
    assert_eq!(r.header("etag").as_deref(), Some("\"v42\""));
    assert_eq!(r.header("accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(r.header("content-length"), Some(body.len().to_string()));
    assert!(r.body == body);
}

#[tokio::test]
async fn head_gets_the_head_get_would_get() {
    let body = text_body(8000);
    let app = ContentBackend::start(vec![(
        "/doc",
        Content::new("text/plain", body.clone()).with_header("etag", "\"h1\""),
    )])
    .await;
    let f = fulcrum_for(&app, ALL_ON, "").await;
    let dir = tempfile::tempdir().unwrap();
    let ae = ["-H", "Accept-Encoding: br"];

    let get = curl(dir.path(), &ae, &f.url("/doc")).await;
    let head = curl(dir.path(), &["-I", ae[0], ae[1]], &f.url("/doc")).await;
    assert_eq!(head.status, 200);
    // With -I curl writes the head where the body would go: nothing follows it.
    assert!(head.body.starts_with(b"HTTP/1.1 200") && head.body.ends_with(b"\r\n\r\n"));
    for name in [
        "content-encoding",
        "content-length",
        "vary",
        "etag",
        "content-type",
    ] {
        assert_eq!(head.header(name), get.header(name), "{name}");
    }
    assert_eq!(head.header("content-encoding").as_deref(), Some("br"));
    assert_eq!(
        app.requests().last().map(|r| r.method.clone()).as_deref(),
        Some("HEAD")
    );
}

#[tokio::test]
async fn a_chunked_backend_answer_is_compressed() {
    let body = text_body(150_000);
    let app = ContentBackend::start(vec![(
        "/stream.js",
        Content::new("application/javascript", body.clone()).chunked(7000),
    )])
    .await;
    let f = fulcrum_for(&app, "{gzip: 6, brotli: 4, zstd: 3, min_size: 1MiB}", "").await;
    let dir = tempfile::tempdir().unwrap();
    for enc in ["gzip", "br", "zstd"] {
        let r = curl(
            dir.path(),
            &["-H", &format!("Accept-Encoding: {enc}")],
            &f.url("/stream.js"),
        )
        .await;
        // No length to compare with min_size: compressed.
        assert_eq!(r.header("content-encoding").as_deref(), Some(enc));
        assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
        assert!(python_decode(enc, &r.body) == body, "{enc}");
    }
}

#[tokio::test]
async fn an_http10_backend_answer_goes_out_chunked_as_http11() {
    let body = text_body(20_000);
    let app = ContentBackend::start(vec![(
        "/old",
        Content::new("text/plain", body.clone()).http10(),
    )])
    .await;
    let f = fulcrum_for(&app, ALL_ON, "").await;
    let dir = tempfile::tempdir().unwrap();
    let r = curl(dir.path(), &["-H", "Accept-Encoding: gzip"], &f.url("/old")).await;
    assert_eq!(
        r.version, "1.1",
        "chunked framing needs an HTTP/1.1 status line"
    );
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(r.header("content-encoding").as_deref(), Some("gzip"));
    assert!(python_decode("gzip", &r.body) == body);
}

#[tokio::test]
async fn http2_clients_over_tls_get_compressed_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["site.test".to_string()]).unwrap();
    let cert_path = write_file(dir.path(), "site.crt", &cert.cert.pem());
    let key_path = write_file(dir.path(), "site.key", &cert.key_pair.serialize_pem());
    let body = text_body(120_000);
    let app = ContentBackend::start(vec![
        ("/app.json", Content::new("application/json", body.clone())),
        (
            "/chunked.json",
            Content::new("application/json", body.clone()).chunked(10_000),
        ),
    ])
    .await;
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
      - addr: "{addr}"
routes:
  - upstream: app
    compression: {ALL_ON}
"#,
        cert = cert_path.display(),
        key = key_path.display(),
        addr = app.addr()
    );
    let _f = Fulcrum::start(&yaml, port).await;
    let resolve = format!("site.test:{port}:127.0.0.1");
    for path in ["/app.json", "/chunked.json"] {
        let url = format!("https://site.test:{port}{path}");
        for enc in ["gzip", "br", "zstd"] {
            let ae = format!("Accept-Encoding: {enc}");
            let args = ["--http2", "-k", "--resolve", &resolve, "-H", &ae];
            let r = curl(dir.path(), &args, &url).await;
            assert_eq!(r.version, "2", "{path}: h2 through ALPN");
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-encoding").as_deref(), Some(enc), "{path}");
            assert_eq!(r.header("content-length"), None, "{path}");
            assert_eq!(r.header("transfer-encoding"), None, "{path}: not on HTTP/2");
            assert!(python_decode(enc, &r.body) == body, "{path} {enc}");
        }
    }
}

/// The value of the sample `name{labels}` in Prometheus text, 0 when absent.
fn sample(text: &str, name_and_labels: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn compressed_responses_and_bytes_are_counted() {
    let body = text_body(10_000);
    let app = ContentBackend::start(vec![("/t", Content::new("text/plain", body.clone()))]).await;
    let admin = free_port();
    let f = fulcrum_for(
        &app,
        ALL_ON,
        &format!("admin:\n  addr: \"127.0.0.1:{admin}\""),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut gzip_out = 0u64;
    for _ in 0..3 {
        let r = curl(dir.path(), &["-H", "Accept-Encoding: gzip"], &f.url("/t")).await;
        gzip_out += r.body.len() as u64;
    }
    let r = curl(dir.path(), &["-H", "Accept-Encoding: br"], &f.url("/t")).await;
    let br_out = r.body.len() as u64;
    curl(dir.path(), &[], &f.url("/t")).await;

    let m = get(&client(), &format!("http://127.0.0.1:{admin}/metrics")).await;
    assert_eq!(m.status, 200);
    let t = &m.body;
    let resp = |enc: &str| {
        sample(
            t,
            &format!("fulcrum_compression_responses_total{{encoding=\"{enc}\",route=\"site\"}}"),
        )
    };
    let bytes = |enc: &str, dir: &str| {
        sample(
            t,
            &format!(
                "fulcrum_compression_bytes_total{{direction=\"{dir}\",encoding=\"{enc}\",route=\"site\"}}"
            ),
        )
    };
    assert_eq!((resp("gzip"), resp("br"), resp("zstd")), (3, 1, 0), "{t}");
    assert_eq!(bytes("gzip", "in"), 3 * body.len() as u64);
    assert_eq!(bytes("gzip", "out"), gzip_out);
    assert_eq!(bytes("br", "in"), body.len() as u64);
    assert_eq!(bytes("br", "out"), br_out);
}

#[tokio::test]
async fn error_pages_are_compressed_and_http10_clients_are_not() {
    let body = text_body(6000);
    let mut missing = Content::new("text/html", body.clone());
    missing.status = 404;
    let app = ContentBackend::start(vec![
        ("/page", Content::new("text/html", body.clone())),
        ("/missing", missing),
    ])
    .await;
    let f = fulcrum_for(&app, ALL_ON, "").await;
    let dir = tempfile::tempdir().unwrap();

    let r = curl(
        dir.path(),
        &["-H", "Accept-Encoding: gzip"],
        &f.url("/missing"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-encoding").as_deref(), Some("gzip"));
    assert!(python_decode("gzip", &r.body) == body);

    // HTTP/1.0 has no chunked framing: the body goes as it is, with its length.
    let text = raw_http(
        f.port(),
        b"GET /page HTTP/1.0\r\nHost: a\r\nAccept-Encoding: gzip, br\r\n\r\n",
    )
    .await;
    let (head, rest) = text.split_once("\r\n\r\n").expect("a whole response");
    let head = head.to_ascii_lowercase();
    assert_eq!(raw_status(&text), 200, "{head}");
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(head.contains("vary: accept-encoding"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    assert!(rest.as_bytes() == body);
}

#[tokio::test]
async fn a_kept_alive_connection_carries_one_compressed_answer_after_another() {
    let body = text_body(50_000);
    let app = ContentBackend::start(vec![
        ("/a", Content::new("text/plain", body.clone())),
        ("/b", Content::new("text/plain", body.clone()).chunked(4096)),
    ])
    .await;
    let f = fulcrum_for(&app, ALL_ON, "").await;
    // reqwest without its decoders: the bytes arrive as fulcrum sent them.
    let c = client();
    for (i, (path, enc)) in [("/a", "br"), ("/b", "gzip"), ("/a", "zstd"), ("/b", "br")]
        .iter()
        .enumerate()
    {
        let r = c
            .get(f.url(path))
            .header("accept-encoding", *enc)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-encoding"].to_str().unwrap(),
            *enc,
            "request {i}"
        );
        let bytes = r.bytes().await.expect("body");
        assert!(
            python_decode(enc, &bytes) == body,
            "request {i} ({path}, {enc})"
        );
    }
    assert_eq!(app.requests().len(), 4);
}

#[tokio::test]
async fn a_body_that_ends_with_trailers_is_finished() {
    // An HTTP/2 backend that ends every body with trailers: the body's end reaches fulcrum as
    // trailers, not as a last piece, and the encoder must still write its last bytes.
    let backend = H2Backend::h2c("h2only");
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    backends:
      - addr: "127.0.0.1:{bp}"
    protocol: h2c
routes:
  - upstream: app
    compression: {{gzip: 6, brotli: 4, zstd: 3, min_size: 0}}
"#,
        bp = backend.port()
    );
    let f = Fulcrum::start(&yaml, port).await;
    let dir = tempfile::tempdir().unwrap();
    let expected = b"h2only GET /x HTTP/2.0 te=-\n".to_vec();
    let plain = curl(dir.path(), &[], &f.url("/x")).await;
    assert_eq!(plain.body, expected);
    for enc in ["gzip", "br", "zstd"] {
        let ae = format!("Accept-Encoding: {enc}");
        let r = curl(dir.path(), &["-H", &ae], &f.url("/x")).await;
        assert_eq!(r.header("content-encoding").as_deref(), Some(enc));
        assert_eq!(python_decode(enc, &r.body), expected, "{enc}");
    }
}
