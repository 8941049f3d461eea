//! [`WsEchoBackend`]: a WebSocket echo server behind the shared accept loop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use super::server::Server;

/// A WebSocket echo server on 127.0.0.1:<random port>: echoes text and binary messages.
/// Records the request target of every upgrade it accepted.
pub struct WsEchoBackend {
    server: Server,
    accepted: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl WsEchoBackend {
    /// Starts an echo server.
    pub async fn start() -> WsEchoBackend {
        let accepted = Arc::new(AtomicUsize::new(0));
        let paths: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let server = {
            let accepted = accepted.clone();
            let paths = paths.clone();
            Server::start(move |stream| echo(stream, accepted.clone(), paths.clone()))
        };
        WsEchoBackend {
            server,
            accepted,
            paths,
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.server.addr()
    }

    /// Number of completed WebSocket handshakes.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Request targets (path + query) of the upgrade requests seen.
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

/// Serves one connection: the handshake (recording its target), then echoes until a close.
// The handshake callback's error type (a whole HTTP response) is fixed by tungstenite.
#[allow(clippy::result_large_err)]
async fn echo(stream: TcpStream, accepted: Arc<AtomicUsize>, paths: Arc<Mutex<Vec<String>>>) {
    let callback = move |req: &Request, resp: Response| {
        let target = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| req.uri().to_string());
        paths.lock().unwrap().push(target);
        Ok(resp)
    };
    let ws = match tokio_tungstenite::accept_hdr_async(stream, callback).await {
        Ok(ws) => ws,
        Err(_) => return,
    };
    accepted.fetch_add(1, Ordering::SeqCst);
    let (mut tx, mut rx) = ws.split();
    for _ in 0..1_000_000 {
        let msg = match rx.next().await {
            Some(Ok(m)) => m,
            _ => break,
        };
        if msg.is_text() || msg.is_binary() {
            if tx.send(msg).await.is_err() {
                break;
            }
        } else if msg.is_close() {
            let _ = tx.close().await;
            break;
        }
    }
}
