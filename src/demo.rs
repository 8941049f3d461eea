//! Demo backends: small fixed-response HTTP servers that fulcrum runs itself.
//!
//! Declared under `demo_backends:` in the config, they make the demo (and many tests) work
//! with nothing else installed. Each answers every request with its configured status, headers
//! and body (`"<name>\n"` by default), after an optional delay, plus `x-demo-backend: <name>`.

use crate::config::model::DemoBackend;
use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::services::listening::Service;
use std::collections::HashMap;
use std::net::SocketAddr;

/// The app behind every demo backend; picks the answer by the local address.
pub struct DemoApp {
    by_addr: HashMap<SocketAddr, DemoBackend>,
}

impl DemoApp {
    /// An app serving these backends.
    pub fn new(backends: &[DemoBackend]) -> Self {
        DemoApp {
            by_addr: backends.iter().map(|b| (b.addr, b.clone())).collect(),
        }
    }
}

#[async_trait]
impl ServeHttp for DemoApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // Drain the request body so the connection can be reused.
        while let Ok(Some(_)) = session.read_request_body().await {}
        let local = session.server_addr().and_then(|a| a.as_inet()).copied();
        let Some(b) = local.and_then(|a| self.by_addr.get(&a)) else {
            return Response::builder()
                .status(500)
                .body(b"unknown demo backend\n".to_vec())
                .unwrap_or_default();
        };
        if let Some(d) = b.delay {
            tokio::time::sleep(d).await;
        }
        let mut resp = Response::builder()
            .status(b.status)
            .header("content-type", "text/plain; charset=utf-8")
            .header("content-length", b.body.len())
            .header("x-demo-backend", b.name.as_str());
        for (k, v) in &b.headers {
            resp = resp.header(k, v);
        }
        resp.body(b.body.clone().into_bytes()).unwrap_or_default()
    }
}

/// A one-thread Pingora service listening on every demo backend's address.
pub fn service(backends: &[DemoBackend]) -> Service<DemoApp> {
    let mut svc = Service::new("demo backends".to_string(), DemoApp::new(backends));
    for b in backends {
        svc.add_tcp(&b.addr.to_string());
    }
    svc.threads = Some(1);
    svc
}
