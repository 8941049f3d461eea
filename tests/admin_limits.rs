//! The admin listener's own limits: a connection cap counted apart from the proxy's, a head
//! timeout, a keep-alive idle timeout, a bounded request body, and the Bearer token check
//! (scheme case-insensitive, token compared whole), all through the real binary.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

const TOKEN: &str = "admin-limits-token-0123456789";

/// How long a raw exchange waits for more bytes after the last one received.
const IDLE: Duration = Duration::from_millis(800);

/// A fulcrum with a proxy listener in front of `backend` and an admin listener whose section
/// holds `admin_extra` (indented YAML lines). Returns it and the admin port.
async fn start(backend: &TestBackend, admin_extra: &str) -> (Fulcrum, u16) {
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "listeners:\n  - addr: \"127.0.0.1:{port}\"\n\
         admin:\n  addr: \"127.0.0.1:{admin}\"\n{admin_extra}\
         upstreams:\n  app:\n    backends: [{{addr: \"{}\"}}]\n\
         routes:\n  - upstream: app\n",
        backend.addr()
    );
    let mut f = Fulcrum::start(&yaml, port).await;
    f.wait_listening(admin).await;
    (f, admin)
}

/// Reads until the server closes the connection, at most `within`: the bytes, and whether it
/// closed (EOF or reset) in time.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    for _ in 0..10_000 {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
    (out, false)
}

/// Reads one response with a `Content-Length` body (at most 5 s) and returns its text.
async fn read_one_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for _ in 0..10_000 {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            other => panic!("no whole response: {other:?} after {text:?}"),
        }
    }
    panic!("response never ended")
}

/// Over `admin.max_connections`, a new admin connection is answered 503 and closed at once,
/// while the proxy listener keeps serving; once the held connections go, admin serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_over_the_cap_get_503_and_the_proxy_is_unaffected() {
    let backend = TestBackend::start("b1").await;
    let (f, admin) = start(&backend, "  max_connections: 2\n  header_timeout: 5s\n").await;
    // Two connections that send nothing hold both places.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(("127.0.0.1", admin)).await.unwrap());
    }
    // The readiness probe's connection may still be counted for a moment: wait until the cap
    // answers, bounded.
    let mut refused = None;
    for _ in 0..50 {
        let ex = raw_exchange(
            admin,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            IDLE,
        )
        .await;
        if ex.statuses() == vec![503] {
            refused = Some(ex);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ex = refused.expect("a third admin connection was never refused");
    assert!(ex.closed, "503 without closing: {}", ex.summary());
    // The proxy's own cap is apart: it serves.
    let r = get(&client_no_pool(), &f.url("/")).await;
    assert_eq!((r.status, r.body.as_str()), (200, "b1"), "{r:?}");
    drop(held);
    let mut served = false;
    for _ in 0..100 {
        let ex = raw_exchange(
            admin,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            IDLE,
        )
        .await;
        if ex.statuses() == vec![200] {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        served,
        "admin did not serve again after the held connections closed"
    );
}

/// An admin connection that sends nothing is answered 408 and closed at
/// `admin.header_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_admin_connection_is_closed_at_the_header_timeout() {
    let backend = TestBackend::start("b1").await;
    let (_f, admin) = start(&backend, "  header_timeout: 1s\n").await;
    let mut s = TcpStream::connect(("127.0.0.1", admin)).await.unwrap();
    let (bytes, closed) = read_until_closed(&mut s, Duration::from_secs(4)).await;
    assert!(closed, "still open after 4 s with header_timeout 1s");
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text:?}");
}

/// A keep-alive admin connection is closed once it has been idle for `admin.idle_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_admin_connection_is_closed_at_the_idle_timeout() {
    let backend = TestBackend::start("b1").await;
    let (_f, admin) = start(&backend, "  idle_timeout: 1s\n").await;
    let mut s = TcpStream::connect(("127.0.0.1", admin)).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let first = read_one_response(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200 "), "{first:?}");
    let (bytes, closed) = read_until_closed(&mut s, Duration::from_secs(4)).await;
    assert!(closed, "still open after 4 s with idle_timeout 1s");
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        "",
        "bytes after the answer"
    );
}

/// `Bearer` in any case, with one or more spaces or tabs, carries the token; a wrong token, a
/// prefix of it, and other schemes get 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_scheme_is_case_insensitive_and_the_token_compared_whole() {
    let backend = TestBackend::start("b1").await;
    let (_f, admin) = start(&backend, &format!("  token: \"{TOKEN}\"\n")).await;
    let status_with = |auth: String| async move {
        let ex = raw_exchange(
            admin,
            format!("GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            IDLE,
        )
        .await;
        ex.statuses()
    };
    for auth in [
        format!("Bearer {TOKEN}"),
        format!("bearer {TOKEN}"),
        format!("BEARER {TOKEN}"),
        format!("Bearer   {TOKEN}"),
        format!("bearer\t{TOKEN}"),
    ] {
        assert_eq!(status_with(auth.clone()).await, vec![200], "{auth:?}");
    }
    for auth in [
        "Bearer wrong-token-0123456789abcd".to_string(),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        format!("Bearer {}", &TOKEN[..4]),
        format!("Bearer {TOKEN}0"),
        format!("Bearer{TOKEN}"),
        format!("Basic {TOKEN}"),
        format!("bearers {TOKEN}"),
    ] {
        assert_eq!(status_with(auth.clone()).await, vec![401], "{auth:?}");
    }
}

/// A body above the admin cap is answered 413 and the connection closed; a small one is read
/// and ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bodies_are_bounded() {
    let backend = TestBackend::start("b1").await;
    let (_f, admin) = start(&backend, "").await;
    let big = "x".repeat(64 * 1024);
    let ex = raw_exchange(
        admin,
        format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{big}",
            big.len()
        )
        .as_bytes(),
        IDLE,
    )
    .await;
    assert_eq!(ex.statuses(), vec![413], "{}", ex.summary());
    assert!(ex.closed, "{}", ex.summary());
    let ex = raw_exchange(
        admin,
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        IDLE,
    )
    .await;
    assert_eq!(ex.statuses(), vec![200], "{}", ex.summary());
}

/// Bad values of the new keys are refused by `fulcrum -t`, naming the key.
#[test]
fn bad_admin_limits_are_refused_by_the_config_check() {
    let dir = tempfile::tempdir().unwrap();
    for (line, key) in [
        ("  max_connections: 0\n", "admin.max_connections"),
        ("  header_timeout: 0s\n", "admin.header_timeout"),
        ("  idle_timeout: 1500ms\n", "admin.idle_timeout"),
    ] {
        let yaml = format!(
            "listeners:\n  - addr: \"127.0.0.1:1\"\nadmin:\n  addr: \"127.0.0.1:2\"\n{line}\
             upstreams:\n  app:\n    backends: [{{addr: \"127.0.0.1:3\"}}]\nroutes:\n  - upstream: app\n"
        );
        let path = write_file(dir.path(), "c.yaml", &yaml);
        let out = fulcrum_cmd(&["-t", "-c", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{line}: accepted");
        assert!(stderr.contains(key), "{line}: {stderr}");
    }
}

/// Measurement, run by hand: `cargo test --release --test admin_limits -- --ignored
/// --nocapture`. 2,000 connections to the admin port that send nothing: how many stay open,
/// and fulcrum's RSS growth, with the defaults (64 connections, 5 s head timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, prints numbers"]
async fn measure_idle_admin_connections() {
    let backend = TestBackend::start("b1").await;
    let (f, admin) = start(&backend, "").await;
    let pid = std::fs::read_to_string(f.dir().join("fulcrum.pid")).unwrap();
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .map(|v| v.trim().to_string())
            .unwrap()
    };
    let before = rss();
    let mut conns = Vec::new();
    for _ in 0..2000 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", admin)).await {
            conns.push(s);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = rss();
    let mut open = 0;
    for s in &mut conns {
        let mut b = [0u8; 256];
        // No answer and no close within 2 ms: still held open.
        if tokio::time::timeout(Duration::from_millis(2), s.read(&mut b))
            .await
            .is_err()
        {
            open += 1;
        }
    }
    println!("2000 idle admin connections: RSS {before} -> {during}; still open after 1 s: {open}");
}
