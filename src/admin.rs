//! The admin listener: `/status` (JSON), `/health`, `/metrics` (Prometheus), on its own
//! address (loopback by default).
//!
//! It is a separate Pingora service, so no proxy route can reach it. With `admin.token` set,
//! every request must carry `Authorization: Bearer <token>`.

use crate::config::model::Admin;
use crate::proxy::ProxyState;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::services::listening::Service;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The `/status` document.
#[derive(Debug, Serialize)]
pub struct Status {
    /// fulcrum's version.
    pub version: &'static str,
    /// Seconds since this process started serving.
    pub uptime_seconds: f64,
    /// Upstream groups by name.
    pub upstreams: BTreeMap<String, UpstreamStatus>,
}

/// One upstream group in `/status`.
#[derive(Debug, Serialize)]
pub struct UpstreamStatus {
    /// The selection algorithm.
    pub algorithm: &'static str,
    /// Backends in config order.
    pub backends: Vec<BackendStatus>,
}

/// One backend in `/status`.
#[derive(Debug, Serialize)]
pub struct BackendStatus {
    /// Address.
    pub addr: String,
    /// Weight.
    pub weight: u32,
    /// The active health check passes (always true without health checks).
    pub healthy: bool,
    /// The circuit breaker has ejected it (open, or half-open awaiting its trial).
    pub ejected: bool,
    /// May take traffic now: healthy and not ejected.
    pub available: bool,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Attempts sent since start.
    pub requests: u64,
    /// Failed attempts since start.
    pub failures: u64,
    /// Times the circuit breaker ejected it.
    pub ejections: u64,
    /// Latency over the most recent requests (see `latency_window`).
    pub latency_ms: LatencyStatus,
}

/// Latency figures in `/status`.
#[derive(Debug, Serialize)]
pub struct LatencyStatus {
    /// Requests the figures cover (the most recent, up to 512).
    pub samples: usize,
    /// Mean, milliseconds.
    pub mean: f64,
    /// 99th percentile, milliseconds.
    pub p99: f64,
}

/// Build the status document.
pub fn status(state: &ProxyState, started: Instant) -> Status {
    let upstreams = state
        .groups
        .iter()
        .map(|g| {
            let backends = g
                .config
                .backends
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    let s = g.stats.get(i)?;
                    let latency = s.latency();
                    Some(BackendStatus {
                        addr: b.addr.to_string(),
                        weight: b.weight,
                        healthy: s.is_healthy(),
                        ejected: s.is_ejected(),
                        available: s.is_ready(),
                        in_flight: g.stats.in_flight(i),
                        requests: g.stats.requests(i),
                        failures: s.failures(),
                        ejections: s.ejections(),
                        latency_ms: LatencyStatus {
                            samples: latency.samples,
                            mean: latency.mean_ms,
                            p99: latency.p99_ms,
                        },
                    })
                })
                .collect();
            (
                g.config.name.clone(),
                UpstreamStatus {
                    algorithm: g.config.algorithm.name(),
                    backends,
                },
            )
        })
        .collect();
    Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: started.elapsed().as_secs_f64(),
        upstreams,
    }
}

/// The admin app.
pub struct AdminApp {
    state: Arc<ProxyState>,
    token: Option<String>,
    started: Instant,
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Vec<u8>> {
    let body = body.into().into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

/// Compare without leaking where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AdminApp {
    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .is_some_and(|given| same_secret(given, token.as_bytes()))
    }

    fn health(&self) -> Response<Vec<u8>> {
        let down: Vec<&str> = self
            .state
            .groups
            .iter()
            .filter(|g| !(0..g.len()).any(|i| g.is_ready(i)))
            .map(|g| g.config.name.as_str())
            .collect();
        if down.is_empty() {
            text(StatusCode::OK, "ok\n")
        } else {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no healthy backend in: {}\n", down.join(", ")),
            )
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        while let Ok(Some(_)) = session.read_request_body().await {}
        if !self.authorized(session) {
            let mut r = text(
                StatusCode::UNAUTHORIZED,
                "401 Unauthorized: bearer token required\n",
            );
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
        let req = session.req_header();
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
        }
        match req.uri.path() {
            "/status" => {
                let body = serde_json::to_vec_pretty(&status(&self.state, self.started))
                    .unwrap_or_default();
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .header("content-length", body.len())
                    .body(body)
                    .unwrap_or_default()
            }
            "/health" => self.health(),
            "/metrics" => {
                let (content_type, body) = crate::metrics::render();
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", content_type)
                    .header("content-length", body.len())
                    .body(body)
                    .unwrap_or_default()
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "404 Not Found: try /status, /health or /metrics\n",
            ),
        }
    }
}

/// A one-thread Pingora service for the admin listener.
pub fn service(admin: &Admin, state: Arc<ProxyState>) -> Service<AdminApp> {
    let app = AdminApp {
        state,
        token: admin.token.clone(),
        started: Instant::now(),
    };
    let mut svc = Service::new("fulcrum admin".to_string(), app);
    svc.add_tcp(&admin.addr.to_string());
    svc.threads = Some(1);
    svc
}
