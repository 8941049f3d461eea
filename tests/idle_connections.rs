//! Client connections served in fulcrum's own per-connection task (src/limits/connection.rs):
//! an HTTP/1 keep-alive connection carries several requests and leaves the open-connections
//! gauge when it closes, an h2c connection does the same with several streams, and a SIGTERM
//! lets a request in flight on a kept-alive connection finish.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::Duration;
use support::h2_frames::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A fulcrum with a plain and an h2c listener in front of `backend` (and `slow` at `/slow`),
/// an admin listener, and `grace` seconds of grace period; its ports: (plain, h2c, admin).
async fn start(backend: &TestBackend, slow: &TestBackend, grace: u64) -> (Fulcrum, u16, u16) {
    let (port, h2c, admin) = (free_port(), free_port(), free_port());
    let yaml = format!(
        r#"pingora:
  threads: 1
  grace_period_seconds: {grace}
  graceful_shutdown_timeout_seconds: 1
  pid_file: "$TMPDIR/fulcrum.pid"
  upgrade_sock: "$TMPDIR/upgrade.sock"
listeners:
  - addr: "127.0.0.1:{port}"
  - addr: "127.0.0.1:{h2c}"
    h2c: true
admin:
  addr: "127.0.0.1:{admin}"
upstreams:
  app:
    backends: [{{addr: "{app}"}}]
  slow:
    backends: [{{addr: "{slow}"}}]
routes:
  - {{path: /slow, upstream: slow}}
  - {{path: /, upstream: app}}
"#,
        app = backend.addr(),
        slow = slow.addr(),
    );
    let mut f = Fulcrum::start(&yaml, port).await;
    f.wait_listening(h2c).await;
    f.wait_listening(admin).await;
    (f, h2c, admin)
}

/// `fulcrum_open_connections` of the listener on `port`, from the admin's `/metrics`.
async fn open_connections(admin: u16, port: u16) -> f64 {
    let r = get(
        &client_no_pool(),
        &format!("http://127.0.0.1:{admin}/metrics"),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let prefix = format!("fulcrum_open_connections{{listener=\"127.0.0.1:{port}\"}} ");
    r.body
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {prefix} in {}", r.body))
        .trim()
        .parse()
        .unwrap()
}

/// Polls the gauge of the listener on `port` until it is `want` (at most 10 s); its last value.
async fn open_connections_until(admin: u16, port: u16, want: f64) -> f64 {
    let mut now = open_connections(admin, port).await;
    for _ in 0..200 {
        if now == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        now = open_connections(admin, port).await;
    }
    now
}

/// Reads one HTTP/1 response with a `Content-Length` from `conn`: its head and body.
async fn read_response(conn: &mut TcpStream) -> (String, String) {
    let read = async {
        let mut bytes = Vec::new();
        let mut byte = [0u8; 1];
        while !bytes.ends_with(b"\r\n\r\n") {
            assert_eq!(conn.read(&mut byte).await.unwrap(), 1, "closed in a head");
            bytes.push(byte[0]);
        }
        let head = String::from_utf8(bytes).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no Content-Length: {head}"));
        let mut body = vec![0u8; length];
        conn.read_exact(&mut body).await.unwrap();
        (head, String::from_utf8(body).unwrap())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("no response within 10 s")
}

/// Reads frames from `conn` until stream `id` ends (acknowledging the server's SETTINGS);
/// the first byte of its response header block and its body.
async fn h2_response(conn: &mut TcpStream, id: u32) -> (u8, Vec<u8>) {
    let read = async {
        let (mut status, mut body) = (None, Vec::new());
        loop {
            let f = read_frame(conn, Duration::from_secs(10))
                .await
                .expect("a frame");
            if f.kind == SETTINGS && f.flags & ACK == 0 {
                conn.write_all(&frame_bytes(SETTINGS, ACK, 0, &[]))
                    .await
                    .unwrap();
            }
            if f.stream != id {
                continue;
            }
            match f.kind {
                HEADERS => status = status.or(f.payload.first().copied()),
                DATA => body.extend_from_slice(&f.payload),
                _ => {}
            }
            if (f.kind == HEADERS || f.kind == DATA) && f.flags & END_STREAM != 0 {
                return (status.expect("no HEADERS"), body);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("no response within 10 s")
}

/// An HTTP/1 keep-alive connection carries three requests one after another, is counted open
/// while it lives, and is no longer counted once the client closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_carries_requests_and_is_uncounted_when_closed() {
    let (app, slow) = (
        TestBackend::start("app").await,
        TestBackend::start("slow").await,
    );
    let (f, _, admin) = start(&app, &slow, 0).await;
    assert_eq!(open_connections_until(admin, f.port(), 0.0).await, 0.0);

    let mut conn = TcpStream::connect(("127.0.0.1", f.port())).await.unwrap();
    for i in 0..3 {
        let req = format!("GET /r{i} HTTP/1.1\r\nHost: x\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let (head, body) = read_response(&mut conn).await;
        assert!(head.starts_with("HTTP/1.1 200"), "request {i}: {head}");
        assert_eq!(body, "app", "request {i}");
    }
    assert_eq!(app.count(), 3);
    assert_eq!(app.connections(), 1, "the backend connection is reused too");
    assert_eq!(open_connections_until(admin, f.port(), 1.0).await, 1.0);

    drop(conn);
    assert_eq!(open_connections_until(admin, f.port(), 0.0).await, 0.0);
}

/// An h2c connection carries three streams one after another, is counted open while it lives,
/// and is no longer counted once the client closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_connection_carries_streams_and_is_uncounted_when_closed() {
    let (app, slow) = (
        TestBackend::start("app").await,
        TestBackend::start("slow").await,
    );
    let (_f, h2c, admin) = start(&app, &slow, 0).await;
    assert_eq!(open_connections_until(admin, h2c, 0.0).await, 0.0);

    let mut conn = TcpStream::connect(("127.0.0.1", h2c)).await.unwrap();
    conn.write_all(PREFACE).await.unwrap();
    conn.write_all(&frame_bytes(SETTINGS, 0, 0, &[]))
        .await
        .unwrap();
    for id in [1u32, 3, 5] {
        let block = get_block(&format!("/s{id}"));
        conn.write_all(&frame_bytes(HEADERS, END_HEADERS | END_STREAM, id, &block))
            .await
            .unwrap();
        let (status, body) = h2_response(&mut conn, id).await;
        // :status 200, indexed (static table entry 8).
        assert_eq!(status, 0x88, "stream {id}");
        assert_eq!(body, b"app", "stream {id}");
    }
    assert_eq!(app.count(), 3);
    assert_eq!(open_connections_until(admin, h2c, 1.0).await, 1.0);

    drop(conn);
    assert_eq!(open_connections_until(admin, h2c, 0.0).await, 0.0);
}

/// SIGTERM while the second request of a keep-alive connection waits for a slow backend: the
/// request is answered in full, and the connection is then closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_kept_alive_connections_request_finish() {
    let app = TestBackend::start("app").await;
    let slow = TestBackend::start_delayed("slow", Duration::from_millis(1500)).await;
    let (f, _, _) = start(&app, &slow, 3).await;
    let pid = std::fs::read_to_string(f.dir().join("fulcrum.pid")).unwrap();
    let pid: i32 = pid.trim().parse().unwrap();

    let mut conn = TcpStream::connect(("127.0.0.1", f.port())).await.unwrap();
    conn.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    conn.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..200 {
        if slow.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(slow.count(), 1, "the slow backend got the request");
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();

    let (head, body) = read_response(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "slow");
    // The server is stopping: the connection is not kept for another request.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "after the last response: {closed:?}"
    );
}
