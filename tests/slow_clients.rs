//! Slow clients must not pin backends: `limits.send_timeout` closes a client that stops
//! reading its response and frees its backend slot; `request_buffering` reads small bodies
//! whole before a backend is chosen, so slow uploaders hold no slot; larger bodies stream;
//! `limits.response_buffering` takes a small response off a client that does not read, so
//! the backend connection goes back to the pool at once.
//!
//! Everything talks to 127.0.0.1 over real sockets, every wait is bounded, and the tests
//! assert on what clients get and what backends receive.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use support::*;

/// A listener on `port`, one upstream `app` with `backend` (plus `upstream_extra`, indented
/// under `app:`), one catch-all route (plus `route_extra`), and `top` (extra top-level
/// sections).
fn config(port: u16, backend: &str, upstream_extra: &str, route_extra: &str, top: &str) -> String {
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    backends:
      - addr: "{backend}"
{upstream_extra}
routes:
  - upstream: app
{route_extra}
{top}
"#
    )
}

/// Connects to 127.0.0.1:`port` (bounded).
async fn connect(port: u16) -> TcpStream {
    tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .expect("connect timed out")
    .expect("connect")
}

/// Connects with a small receive buffer, so that a client that does not read fills up fast.
async fn connect_small_window(port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let addr = ([127, 0, 0, 1], port).into();
    tokio::time::timeout(Duration::from_secs(5), socket.connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// Reads until the peer closes or `idle` passes without a byte (bounded by `limit`
/// overall); the bytes read.
async fn read_until_idle(stream: &mut TcpStream, idle: Duration, limit: Duration) -> Vec<u8> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < end {
        match tokio::time::timeout(idle, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// The status of the first response in `bytes` (0 if none).
fn status_of(bytes: &[u8]) -> u16 {
    raw_status(&String::from_utf8_lossy(bytes))
}

/// A POST head for `path` with `Host: app.test` and extra header lines.
fn post_head(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!("POST {path} HTTP/1.1\r\nHost: app.test\r\n");
    for (k, v) in extra {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// A response a client that does not read cannot take whole into the kernel's buffers on
/// loopback (fulcrum's socket send buffer starts near 1.4 MiB there, and a receive window of
/// a few KiB keeps it from growing), so that without the write-behind buffer its write
/// blocks; the tests that need that set `response_buffering` to [`BUFFERING`].
const RESPONSE: usize = 3 << 20;

/// `limits.response_buffering` for [`RESPONSE`].
const BUFFERING: &str = "4MiB";

/// A backend answering every request with `size` bytes.
fn response_of(size: usize) -> BackendOptions {
    BackendOptions {
        body: Some("r".repeat(size)),
        ..BackendOptions::default()
    }
}

/// A client with a small receive window that sends `GET path` and never reads.
async fn non_reader(port: u16, path: &str) -> TcpStream {
    let mut s = connect_small_window(port).await;
    let head = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// Bounded wait until `backend` has received `n` requests.
async fn wait_for_requests(backend: &TestBackend, n: usize) {
    for _ in 0..100 {
        if backend.count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the backend saw {} requests, not {n}", backend.count());
}

/// Resident memory of process `pid` in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The admin listener's `/metrics` text.
async fn metrics(admin: u16) -> String {
    get(&client(), &format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .body
}

/// The sum of the samples of `family` whose labels contain `labels`.
fn sample_sum(text: &str, family: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Two clients ask for a 3 MiB response and never read it, and two uploaders trickle small
/// bodies at 1 byte per 200 ms, all into a group with `max_connections: 2` and a short
/// queue: normal requests meanwhile are all served, and each upload reaches the backend once,
/// whole, after it finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploaders_and_non_readers_hold_no_backend_slot() {
    let backend = TestBackend::start_with("app", response_of(RESPONSE)).await;
    let port = free_port();
    let up = "    max_connections: 2\n    queue: {size: 1, timeout: 200ms}\n";
    // send_timeout far beyond the test: only the write-behind buffer frees the non-readers.
    let top = format!(
        "limits:\n  body_timeout: 2s\n  send_timeout: 30s\n  response_buffering: {BUFFERING}\n"
    );
    let f = Fulcrum::start(&config(port, &backend.addr(), up, "", &top), port).await;

    // Two clients ask for the 3 MiB response and never read it.
    let mut stuck = Vec::new();
    for i in 0..2 {
        stuck.push(non_reader(port, &format!("/stuck{i}")).await);
    }
    wait_for_requests(&backend, 2).await;

    let bodies = [b"upload-one-12".to_vec(), b"upload-two-34".to_vec()];
    let uploads: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|body| {
            tokio::spawn(async move {
                // One upload says its length; the other is chunked, a byte per chunk.
                let chunked = body.starts_with(b"upload-two");
                let mut s = connect(port).await;
                let len = body.len().to_string();
                let head = match chunked {
                    true => post_head("/up", &[("transfer-encoding", "chunked")]),
                    false => post_head("/up", &[("content-length", &len)]),
                };
                s.write_all(&head).await.unwrap();
                for b in &body {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    match chunked {
                        true => s.write_all(&[b'1', b'\r', b'\n', *b, b'\r', b'\n']).await,
                        false => s.write_all(&[*b]).await,
                    }
                    .unwrap();
                }
                if chunked {
                    s.write_all(b"0\r\n\r\n").await.unwrap();
                }
                read_until_idle(&mut s, Duration::from_secs(2), Duration::from_secs(8)).await
            })
        })
        .collect();

    // While both trickle (about 2.6 s), the group serves everyone else.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = client_no_pool();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(get(&c, &f.url("/normal")).await.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        statuses,
        vec![200; 10],
        "normal requests during slow uploads"
    );

    for u in uploads {
        let answer = u.await.unwrap();
        assert_eq!(
            status_of(&answer),
            200,
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    let received: Vec<Vec<u8>> = backend
        .requests()
        .into_iter()
        .filter(|r| r.path == "/up")
        .map(|r| r.body)
        .collect();
    let mut expected = bodies.to_vec();
    let mut got = received.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "each upload once, byte for byte");
    drop(stuck);
}

/// A body larger than `request_buffering` is not waited for: it streams, chunked or with a
/// length, and arrives byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_above_request_buffering_stream_intact() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let route = "    request_buffering: 1KiB\n";
    let f = Fulcrum::start(&config(port, &backend.addr(), "", route, ""), port).await;
    let body: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();

    // Chunked, in chunks of 7 KiB.
    let mut s = connect(f.port()).await;
    let mut wire = post_head("/chunked", &[("transfer-encoding", "chunked")]);
    for chunk in body.chunks(7 * 1024) {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&wire).await.unwrap();
    let answer = read_until_idle(&mut s, Duration::from_secs(1), Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), 200);

    // With a Content-Length above the limit.
    let mut s = connect(f.port()).await;
    let len = body.len().to_string();
    let mut wire = post_head("/sized", &[("content-length", &len)]);
    wire.extend_from_slice(&body);
    s.write_all(&wire).await.unwrap();
    let answer = read_until_idle(&mut s, Duration::from_secs(1), Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), 200);

    for path in ["/chunked", "/sized"] {
        let r = backend.requests().into_iter().find(|r| r.path == path);
        let r = r.unwrap_or_else(|| panic!("{path} never reached the backend"));
        assert!(
            r.body == body,
            "{path}: body differs ({} bytes)",
            r.body.len()
        );
    }
}

/// A chunked body longer than what is read ahead of it: the first piece arrives alone, then
/// one large chunk in a single write, which one read of Pingora's (64 KiB) would take whole
/// and overflow the 64 KiB read-ahead buffer with; the guard's small reads keep every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_longer_than_the_read_ahead_arrives_whole() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let f = Fulcrum::start(&config(port, &backend.addr(), "", "", ""), port).await;
    let body: Vec<u8> = (0..110 * 1024).map(|i| (i % 253) as u8).collect();
    let (first, rest) = body.split_at(10 * 1024);
    let (big, last) = rest.split_at(60 * 1024);
    let chunk = |data: &[u8]| {
        let mut wire = format!("{:x}\r\n", data.len()).into_bytes();
        wire.extend_from_slice(data);
        wire.extend_from_slice(b"\r\n");
        wire
    };
    let mut s = connect(f.port()).await;
    let mut wire = post_head("/chunked", &[("transfer-encoding", "chunked")]);
    wire.extend(chunk(first));
    s.write_all(&wire).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut wire = chunk(big);
    wire.extend(chunk(last));
    wire.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&wire).await.unwrap();
    let answer = read_until_idle(&mut s, Duration::from_secs(1), Duration::from_secs(5)).await;
    assert_eq!(
        status_of(&answer),
        200,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let r = backend
        .requests()
        .into_iter()
        .find(|r| r.path == "/chunked");
    let r = r.expect("the chunked body reached the backend");
    assert!(r.body == body, "body differs: {} bytes", r.body.len());
}

/// A small body with a length streams too when its route turns buffering off: a slow
/// uploader then holds the group's only slot until it finishes (the behaviour buffering
/// prevents), so a second request waits and is refused by the short queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_buffering_off_streams_and_holds_the_slot() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let up = "    max_connections: 1\n    queue: {size: 1, timeout: 200ms}\n";
    let route = "    request_buffering: off\n";
    let f = Fulcrum::start(&config(port, &backend.addr(), up, route, ""), port).await;

    let mut s = connect(port).await;
    s.write_all(&post_head("/up", &[("content-length", "4")]))
        .await
        .unwrap();
    s.write_all(b"ab").await.unwrap();
    // The upload now holds the slot (its head went to the backend); bounded wait for it.
    let c = client_no_pool();
    let mut status = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = get(&c, &f.url("/normal")).await.status;
        if status == 503 {
            break;
        }
    }
    assert_eq!(status, 503, "the streaming upload holds the only slot");
    s.write_all(b"cd").await.unwrap();
    let answer = read_until_idle(&mut s, Duration::from_secs(1), Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), 200);
    let r = backend.requests().into_iter().find(|r| r.path == "/up");
    assert_eq!(
        r.expect("upload reached the backend").body,
        b"abcd".to_vec()
    );
}

/// `Expect: 100-continue` on a buffered body: fulcrum sends the one `100 Continue` itself,
/// the backend sees no `Expect`, and the body arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_with_a_buffered_body_gets_exactly_one_100() {
    let backend = TestBackend::start("app").await;
    let port = free_port();
    let f = Fulcrum::start(&config(port, &backend.addr(), "", "", ""), port).await;

    let mut s = connect(f.port()).await;
    let head = post_head(
        "/expect",
        &[("content-length", "5"), ("expect", "100-continue")],
    );
    s.write_all(&head).await.unwrap();
    // The client waits for the 100 before it sends its body.
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let end = Instant::now() + Duration::from_secs(3);
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < end {
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    assert!(
        got.starts_with(b"HTTP/1.1 100 Continue\r\n"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(b"hello").await.unwrap();
    got.extend(read_until_idle(&mut s, Duration::from_millis(800), Duration::from_secs(5)).await);
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("HTTP/1.1 100").count(), 1, "{text}");
    assert!(text.contains("HTTP/1.1 200"), "{text}");
    let r = backend.requests().into_iter().find(|r| r.path == "/expect");
    let r = r.expect("reached the backend");
    assert_eq!(r.body, b"hello".to_vec());
    assert_eq!(r.header("expect"), None, "Expect forwarded");
}

/// A client that asks for a large response and never reads it is closed after
/// `send_timeout` without progress; the group's only slot is free again, the request counts
/// as a client that left (code 499), and the backend is not charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_after_send_timeout() {
    let big = "x".repeat(8 << 20);
    let backend = TestBackend::start_with(
        "app",
        BackendOptions {
            body: Some(big),
            ..BackendOptions::default()
        },
    )
    .await;
    let port = free_port();
    let admin = free_port();
    let up = "    max_connections: 1\n    queue: {size: 1, timeout: 200ms}\n";
    let top = format!("limits:\n  send_timeout: 1s\nadmin:\n  addr: \"127.0.0.1:{admin}\"\n");
    let f = Fulcrum::start(&config(port, &backend.addr(), up, "", &top), port).await;
    assert!(wait_for_port(admin, Duration::from_secs(5)).await);

    let started = Instant::now();
    let mut stuck = connect_small_window(port).await;
    stuck
        .write_all(b"GET /big HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    // Bounded wait until fulcrum gives up on it: the request is counted as a 499.
    let mut errors = 0.0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        errors = sample_sum(
            &metrics(admin).await,
            "fulcrum_requests_total",
            "code=\"499\"",
        );
        if errors > 0.0 {
            break;
        }
    }
    eprintln!("non-reader given up after {:?}", started.elapsed());
    assert_eq!(errors, 1.0, "the stalled request counted as one 499");
    // The slot is free: the next request is served.
    let r = get(&client_no_pool(), &f.url("/small")).await;
    assert_eq!(r.status, 200);
    let text = metrics(admin).await;
    assert_eq!(
        sample_sum(&text, "fulcrum_backend_failures_total", ""),
        0.0,
        "{text}"
    );
    assert_eq!(sample_sum(&text, "fulcrum_backend_ejected", ""), 0.0);
    // The stalled client's connection was closed: it ends short of the 8 MiB.
    let got = read_until_idle(&mut stuck, Duration::from_secs(2), Duration::from_secs(10)).await;
    assert!(got.len() < 8 << 20, "got {} bytes", got.len());
    assert_eq!(status_of(&got), 200);
}

/// Bad `request_buffering` and `send_timeout` values are refused with their key path.
#[test]
fn bad_values_are_refused_with_their_key_path() {
    let cases = [
        (
            "limits:\n  request_buffering: 65KiB\n",
            "",
            "limits.request_buffering",
        ),
        (
            "limits:\n  request_buffering: lots\n",
            "",
            "limits.request_buffering",
        ),
        ("limits:\n  send_timeout: 0s\n", "", "limits.send_timeout"),
        (
            "",
            "    request_buffering: 1MiB\n",
            "routes[0].request_buffering",
        ),
    ];
    for (top, route, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let yaml = config(free_port(), "127.0.0.1:9", "", route, top);
        let path = write_file(dir.path(), "fulcrum.yaml", &yaml);
        let out = fulcrum_cmd(&["-t", "-c", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}: accepted");
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    let top = "limits:\n  request_buffering: off\n  send_timeout: 5s\n";
    let yaml = config(
        free_port(),
        "127.0.0.1:9",
        "",
        "    request_buffering: 16KiB\n",
        top,
    );
    let path = write_file(dir.path(), "fulcrum.yaml", &yaml);
    let out = fulcrum_cmd(&["-t", "-c", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 50 clients that never read a 32 KiB response (the default `response_buffering`) do not
/// keep its backend connection: each request completes, and the next one goes out on the
/// same pooled backend connection; a `max_connections: 1` group stays available, fulcrum's
/// memory grows by no more than the bounded buffers, and a client that reads late still gets
/// its whole response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_readers_of_small_responses_release_the_backend_connection_at_once() {
    let backend = TestBackend::start_with("app", response_of(32 * 1024)).await;
    let port = free_port();
    let up = "    max_connections: 1\n    queue: {size: 1, timeout: 200ms}\n";
    let top = "limits:\n  send_timeout: 30s\n";
    let f = Fulcrum::start(&config(port, &backend.addr(), up, "", top), port).await;
    let pid = f.pid().expect("running");
    let c = client_no_pool();
    assert_eq!(get(&c, &f.url("/warm")).await.status, 200);
    let before = rss_kib(pid);

    let mut stuck = Vec::new();
    for i in 0..50 {
        stuck.push(non_reader(port, &format!("/stuck{i}")).await);
        // One at a time: each must be done with the backend before the next may start.
        wait_for_requests(&backend, i + 2).await;
    }
    assert_eq!(get(&c, &f.url("/after")).await.status, 200);
    let after = rss_kib(pid);
    eprintln!(
        "50 non-readers of 32 KiB: fulcrum RSS {before} KiB -> {after} KiB; backend \
         connections {}",
        backend.connections()
    );
    assert_eq!(
        backend.connections(),
        1,
        "every request went out on the one pooled backend connection"
    );
    // At most 64 KiB held per client by construction; generous room for allocator noise.
    assert!(
        after.saturating_sub(before) < 50 * 64 + 16 * 1024,
        "RSS {before} KiB -> {after} KiB"
    );
    // A late reader still gets its whole response.
    let mut late = stuck.pop().unwrap();
    let got = read_until_idle(&mut late, Duration::from_secs(1), Duration::from_secs(5)).await;
    assert_eq!(status_of(&got), 200);
    let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    assert_eq!(got.len() - body_at, 32 * 1024);
}

/// With `response_buffering: off`, a client that does not read keeps the backend
/// connection: the next request needs a connection of its own (the behaviour the buffer
/// prevents).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_response_buffering_a_non_reader_keeps_its_backend_connection() {
    let backend = TestBackend::start_with("app", response_of(RESPONSE)).await;
    let port = free_port();
    let top = "limits:\n  send_timeout: 30s\n  response_buffering: off\n";
    let f = Fulcrum::start(&config(port, &backend.addr(), "", "", top), port).await;
    let c = client_no_pool();
    assert_eq!(get(&c, &f.url("/warm")).await.status, 200);
    let _stuck = non_reader(port, "/stuck").await;
    wait_for_requests(&backend, 2).await;
    // Let the write to the stuck client block.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&c, &f.url("/after")).await.status, 200);
    assert_eq!(
        backend.connections(),
        2,
        "the stuck response pinned the first connection"
    );
}

/// The same 3 MiB response with `response_buffering` above it: the client that does not
/// read no longer pins the backend connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_response_buffering_a_non_reader_releases_its_backend_connection() {
    let backend = TestBackend::start_with("app", response_of(RESPONSE)).await;
    let port = free_port();
    let top = format!("limits:\n  send_timeout: 30s\n  response_buffering: {BUFFERING}\n");
    let f = Fulcrum::start(&config(port, &backend.addr(), "", "", &top), port).await;
    let c = client_no_pool();
    assert_eq!(get(&c, &f.url("/warm")).await.status, 200);
    let mut stuck = non_reader(port, "/stuck").await;
    wait_for_requests(&backend, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&c, &f.url("/after")).await.status, 200);
    assert_eq!(
        backend.connections(),
        1,
        "the pooled connection was free again"
    );
    // The stuck client, reading at last, gets all of it.
    let got = read_until_idle(&mut stuck, Duration::from_secs(1), Duration::from_secs(8)).await;
    let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    assert_eq!(got.len() - body_at, RESPONSE);
}

/// A non-reading client that asked to close after its response: fulcrum still frees the
/// backend connection at once, then delivers the held response whole and closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_non_reader_gets_its_whole_response_then_the_close() {
    let backend = TestBackend::start_with("app", response_of(RESPONSE)).await;
    let port = free_port();
    let top = format!("limits:\n  send_timeout: 30s\n  response_buffering: {BUFFERING}\n");
    let f = Fulcrum::start(&config(port, &backend.addr(), "", "", &top), port).await;
    let c = client_no_pool();
    assert_eq!(get(&c, &f.url("/warm")).await.status, 200);
    let mut stuck = connect_small_window(port).await;
    stuck
        .write_all(b"GET /close HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    wait_for_requests(&backend, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&c, &f.url("/after")).await.status, 200);
    assert_eq!(
        backend.connections(),
        1,
        "the pooled connection was free again"
    );
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), stuck.read_to_end(&mut got));
    read.await
        .expect("fulcrum closes after the response")
        .unwrap();
    let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    assert_eq!(got.len() - body_at, RESPONSE);
}
