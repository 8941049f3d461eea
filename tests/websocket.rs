//! WebSocket upgrades pass through fulcrum to the backend.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use support::*;

fn ws_config(ws: &WsEchoBackend, http: &TestBackend, port: u16) -> String {
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  ws:
    backends:
      - addr: "{ws}"
  http:
    backends:
      - addr: "{http}"
routes:
  - path: /ws
    upstream: ws
  - path: /
    upstream: http
"#,
        ws = ws.addr(),
        http = http.addr()
    )
}

async fn next_message<S>(rx: &mut S) -> Message
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    // Skip control frames; bounded.
    for _ in 0..10 {
        let msg = tokio::time::timeout(Duration::from_secs(5), rx.next())
            .await
            .expect("timed out waiting for a WebSocket message")
            .expect("WebSocket stream ended")
            .expect("WebSocket error");
        if msg.is_ping() || msg.is_pong() {
            continue;
        }
        return msg;
    }
    panic!("only control frames received");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_proxy() {
    let ws = WsEchoBackend::start().await;
    let http = TestBackend::start("http").await;
    let port = free_port();
    let f = Fulcrum::start(&ws_config(&ws, &http, port), port).await;

    let (stream, resp) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(f.ws_url("/ws/chat?room=1")),
    )
    .await
    .expect("WebSocket handshake through fulcrum timed out")
    .expect("WebSocket handshake through fulcrum failed");
    assert_eq!(resp.status().as_u16(), 101);
    let (mut tx, mut rx) = stream.split();

    for i in 0..5 {
        let text = format!("hello {i}");
        tx.send(Message::Text(text.clone())).await.unwrap();
        let got = next_message(&mut rx).await;
        assert_eq!(got, Message::Text(text));
    }

    // Binary, larger than one TCP segment.
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    tx.send(Message::Binary(blob.clone())).await.unwrap();
    let got = next_message(&mut rx).await;
    assert_eq!(got, Message::Binary(blob));

    tx.send(Message::Close(None)).await.unwrap();
    // The close handshake completes (or the stream ends) without hanging.
    for _ in 0..10 {
        match tokio::time::timeout(Duration::from_secs(5), rx.next()).await {
            Ok(Some(Ok(m))) if m.is_close() => break,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => panic!("WebSocket close did not complete"),
        }
    }

    assert_eq!(ws.accepted(), 1);
    assert_eq!(ws.paths(), vec!["/ws/chat?room=1".to_string()]);

    // Plain HTTP still works alongside.
    let r = get(&client(), &f.url("/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_websockets_at_once() {
    let ws = WsEchoBackend::start().await;
    let http = TestBackend::start("http").await;
    let port = free_port();
    let f = Fulcrum::start(&ws_config(&ws, &http, port), port).await;

    let mut tasks = Vec::new();
    for n in 0..4 {
        let url = f.ws_url(&format!("/ws/{n}"));
        tasks.push(tokio::spawn(async move {
            let (stream, _) = tokio::time::timeout(
                Duration::from_secs(10),
                tokio_tungstenite::connect_async(url),
            )
            .await
            .expect("handshake timed out")
            .expect("handshake failed");
            let (mut tx, mut rx) = stream.split();
            for i in 0..20 {
                let text = format!("conn {n} msg {i}");
                tx.send(Message::Text(text.clone())).await.unwrap();
                assert_eq!(next_message(&mut rx).await, Message::Text(text));
            }
            let _ = tx.send(Message::Close(None)).await;
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("WebSocket task hung")
            .expect("WebSocket task failed");
    }
    assert_eq!(ws.accepted(), 4);
}

/// An upgraded connection is timed by `timeouts.tunnel`, not by `timeouts.read`: quiet for
/// longer than `read` it keeps working; quiet for longer than `tunnel` it is closed, with
/// nothing of fulcrum's written into the WebSocket stream (no HTTP error text, which a
/// client would read as a frame with an invalid opcode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_lives_for_the_tunnel_timeout_then_closes_cleanly() {
    let ws = WsEchoBackend::start().await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  ws:
    backends:
      - addr: "{ws}"
    timeouts: {{read: 500ms, tunnel: 2s}}
routes:
  - path: /
    upstream: ws
"#,
        ws = ws.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    let (stream, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(f.ws_url("/ws")),
    )
    .await
    .expect("handshake timed out")
    .expect("handshake failed");
    let (mut tx, mut rx) = stream.split();

    // Quiet for more than twice `read`: still open.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    tx.send(Message::Text("still there".into())).await.unwrap();
    assert_eq!(
        next_message(&mut rx).await,
        Message::Text("still there".into())
    );

    // Quiet past `tunnel`: the connection ends, without a close frame and without garbage.
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), rx.next())
        .await
        .expect("the tunnel timeout must close an idle upgraded connection");
    match end {
        Some(Err(tokio_tungstenite::tungstenite::Error::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ))) => {}
        other => panic!("expected the connection to end (EOF) and nothing else, got {other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "closed after {:?}, before the 2 s tunnel timeout",
        started.elapsed()
    );
}
