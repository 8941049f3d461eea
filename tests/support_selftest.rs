//! Checks the test support library itself (no fulcrum involved): the test backend's HTTP
//! handling, recording, stopping, and the WebSocket echo server.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_answers_records_and_keeps_alive() {
    let b = TestBackend::start("one").await;
    let c = client();
    let url = format!("http://{}/p?q=1", b.addr());
    for _ in 0..3 {
        let r = get_with(
            &c,
            &url,
            Some("h.test"),
            &[("x-multi", "a"), ("x-multi", "b")],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "one");
        assert_eq!(r.header("x-backend").as_deref(), Some("one"));
    }
    assert_eq!(b.count(), 3);
    // (Keep-alive is checked with a raw socket below; reqwest may open a second
    // connection when the first is not back in its pool yet.)
    assert!(b.connections() >= 1);
    let req = b.last_request().unwrap();
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/p?q=1");
    assert_eq!(req.header("host").as_deref(), Some("h.test"));
    assert_eq!(req.header_all("x-multi"), vec!["a", "b"]);
    assert_eq!(req.header("x-multi").as_deref(), Some("a, b"));

    let r = request(&c, "POST", &url, None, &[], Some(b"body!".to_vec())).await;
    assert_eq!(r.status, 200);
    assert_eq!(b.last_request().unwrap().body, b"body!");

    b.clear();
    assert_eq!(b.count(), 0);
    assert!(b.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_chunked_body_and_raw_keepalive() {
    let b = TestBackend::start("raw").await;
    let raw = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
               5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n\
               GET /second HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
    let resp = raw_http(b.port(), raw.as_bytes()).await;
    assert_eq!(resp.matches("HTTP/1.1 200 OK").count(), 2, "{resp}");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body_string(), "hello world");
    assert_eq!(reqs[1].path, "/second");
    assert_eq!(reqs[1].body_string(), "abc");
    assert_eq!(raw_status(&resp), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_options_and_overrides() {
    let b = TestBackend::start_with(
        "opt",
        BackendOptions {
            delay: Some(Duration::from_millis(200)),
            status: 201,
            body: Some("custom".into()),
            headers: vec![("x-extra".into(), "1".into())],
        },
    )
    .await;
    let c = client();
    let url = format!("http://{}/", b.addr());
    let start = Instant::now();
    let r = get(&c, &url).await;
    assert!(start.elapsed() >= Duration::from_millis(190));
    assert_eq!(r.status, 201);
    assert_eq!(r.body, "custom");
    assert_eq!(r.header("x-extra").as_deref(), Some("1"));

    let start = Instant::now();
    let r = get_with(
        &c,
        &url,
        None,
        &[("x-test-delay-ms", "0"), ("x-test-status", "418")],
    )
    .await;
    assert!(start.elapsed() < Duration::from_millis(150));
    assert_eq!(r.status, 418);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_sends_100_continue_before_the_body() {
    let b = TestBackend::start("cont").await;
    let head = b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", b.port()))
        .await
        .unwrap();
    s.write_all(head).await.unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut interim))
        .await
        .expect("100 Continue before the body")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"abc").await.unwrap();
    let mut answer = [0u8; 15];
    s.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200 OK");
    assert_eq!(b.last_request().unwrap().body, b"abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_backend_records_bytes_and_refuses_unframeable_requests() {
    let b = RecordingBackend::start("rec").await;
    // Pipelined: a clean request, then one with two different Content-Length values.
    let sent = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
                 POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
    let ex = raw_exchange(b.port(), sent, Duration::from_millis(300)).await;
    assert_eq!(ex.statuses(), vec![200, 400], "{}", ex.summary());
    assert!(ex.closed, "{}", ex.summary());
    assert_eq!(b.raw(), sent.to_vec());
    assert_eq!(b.connections(), 1);
    let reqs = b.requests();
    assert_eq!(
        b.request_lines(),
        vec!["GET /a HTTP/1.1", "POST /b HTTP/1.1"]
    );
    assert!(reqs[0].error.is_none() && reqs[0].ambiguities().is_empty());
    assert!(reqs[1].error.is_some(), "{:?}", reqs[1]);
    assert!(!reqs[1].ambiguities().is_empty());

    // A bare LF head is framed and answered, and reported as ambiguous.
    b.clear();
    let ex = raw_exchange(
        b.port(),
        b"GET /lf HTTP/1.1\nHost: x\n\n",
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(ex.statuses(), vec![200], "{}", ex.summary());
    let r = b.last_request().unwrap();
    assert!(r.error.is_none());
    assert!(
        r.ambiguities().iter().any(|a| a.contains("bare LF")),
        "{:?}",
        r.ambiguities()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_backend_refuses_connections() {
    let b = TestBackend::start("stop").await;
    let c = client();
    let url = format!("http://{}/", b.addr());
    assert_eq!(get(&c, &url).await.status, 200);
    b.stop().await;
    assert!(!port_is_listening(b.port()));
    assert!(try_request(&client_no_pool(), "GET", &url, None, &[], None)
        .await
        .is_err());

    let port = {
        let d = TestBackend::start("drop").await;
        d.port()
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!port_is_listening(port), "dropped backend still listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_echo_backend_echoes() {
    let ws = WsEchoBackend::start().await;
    let (stream, _) = tokio_tungstenite::connect_async(format!("ws://{}/e?x=1", ws.addr()))
        .await
        .unwrap();
    let (mut tx, mut rx) = stream.split();
    tx.send(Message::Text("hi".into())).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::Text("hi".into()));
    assert_eq!(ws.accepted(), 1);
    assert_eq!(ws.paths(), vec!["/e?x=1".to_string()]);
}

#[test]
fn free_ports_are_distinct_and_free() {
    let ports: Vec<u16> = (0..20).map(|_| free_port()).collect();
    let set: std::collections::HashSet<_> = ports.iter().collect();
    assert_eq!(set.len(), ports.len());
    assert!(ports.iter().all(|&p| port_is_free(p)));
}

#[test]
fn pingora_section_is_added_once() {
    let dir = std::path::Path::new("/tmp/x");
    let y = with_pingora_section("listeners: []\n", dir);
    assert!(y.starts_with("pingora:\n  threads: 1\n"));
    assert!(y.contains("/tmp/x/fulcrum.pid"));
    let y2 = with_pingora_section("pingora:\n  threads: 2\nfile: $TMPDIR/a\n", dir);
    assert_eq!(y2, "pingora:\n  threads: 2\nfile: /tmp/x/a\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_socket_ownership() {
    let b = TestBackend::start("own").await;
    let me = std::process::id();
    if let Some(owned) = pid_listens_on(me, b.port()) {
        assert!(owned, "this process listens on the backend port");
        assert_eq!(pid_listens_on(me, free_port()), Some(false));
    }
}
