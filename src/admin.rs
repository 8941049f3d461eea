//! The admin listener: the status page (`/`, [`page`]), `/status` (JSON), `/health`,
//! `/metrics` (Prometheus), on its own address (loopback by default).
//!
//! It is a separate Pingora service, so no proxy route can reach it. With `admin.token` set,
//! every request but the status page's must carry `Authorization: Bearer <token>`
//! ([`bearer`]); the page itself holds no data and asks for the token.
//!
//! Its connections go through the same guard as the proxy's ([`Guarded`]), with limits of
//! their own: `admin.max_connections` (503 above), `admin.header_timeout` (408) and
//! `admin.idle_timeout` between keep-alive requests. Request bodies are read up to
//! [`MAX_BODY`] bytes only (the runtime API's JSON bodies are small); a larger one is
//! answered 413 and the connection closed.
//!
//! The runtime API ([`upstreams`]) lives under `/upstreams`; each change it makes is saved to
//! `admin.state_file` ([`state_file`]) and restored at the next start or reload.

mod bearer;
pub mod cache;
pub mod overview;
pub mod page;
mod readiness;
pub mod routes;
pub mod state_file;
pub mod status;
pub mod upstreams;

pub use bearer::{bearer_credentials, BearerToken};
pub use readiness::{health_answer, MarkServing, Serving};
pub use status::{status, BackendStatus, LatencyStatus, Status, UpstreamStatus};

use crate::config::model::Admin;
use crate::limits::connection::{ConnectionCount, Guarded};
use crate::limits::head_guard::HeadLimits;
use crate::proxy::ProxyState;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::services::listening::Service;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request body the admin listener reads (the runtime API's bodies are small JSON).
pub const MAX_BODY: usize = 4096;

/// Largest admin request head (its requests are a line and a few headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most header lines in an admin request head.
const MAX_HEADERS: usize = 64;

/// The admin app.
pub struct AdminApp {
    state: Arc<ProxyState>,
    token: Option<BearerToken>,
    /// Set once the proxy serves: `/health` is `503` until then.
    serving: Serving,
    started: Instant,
    /// How long a body may take to arrive (the head timeout).
    body_timeout: Duration,
    /// Saves the runtime API's changes.
    state_file: state_file::StateWriter,
    /// The routes and listeners, for `/status`.
    overview: overview::Overview,
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Vec<u8>> {
    let mut body = serde_json::to_vec_pretty(body).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

fn api_error(e: &upstreams::ApiError) -> Response<Vec<u8>> {
    let mut r = json(e.status, &serde_json::json!({ "error": e.message }));
    if let Some(allow) = e.allow {
        r.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    }
    r
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

impl AdminApp {
    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .is_some_and(|v| token.accepts(v.as_bytes()))
    }

    /// Read a request body of at most [`MAX_BODY`] bytes, arriving within the body timeout;
    /// otherwise the answer to give (and the connection is to close).
    async fn read_body(&self, session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
        let mut body = Vec::new();
        let deadline = tokio::time::Instant::now() + self.body_timeout;
        // Bounded: each turn reads at least one byte, and at most MAX_BODY + 1 are read.
        for _ in 0..=MAX_BODY {
            match tokio::time::timeout_at(deadline, session.read_request_body()).await {
                Ok(Ok(Some(chunk))) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(text(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("413 Payload Too Large: admin request bodies are at most {MAX_BODY} bytes\n"),
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(Ok(None)) => return Ok(body),
                Ok(Err(_)) => {
                    return Err(text(
                        StatusCode::BAD_REQUEST,
                        "400 Bad Request: unreadable body\n",
                    ))
                }
                Err(_) => {
                    return Err(text(
                        StatusCode::REQUEST_TIMEOUT,
                        "408 Request Timeout: body too slow\n",
                    ))
                }
            }
        }
        Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("413 Payload Too Large: admin request bodies are at most {MAX_BODY} bytes\n"),
        ))
    }

    /// A runtime API request; after a change, the state file is saved (a failure to save is
    /// logged: the change itself stands).
    fn runtime_api(
        &self,
        req: &pingora_http::RequestHeader,
        target: upstreams::Target,
        body: &[u8],
    ) -> Response<Vec<u8>> {
        let force = match upstreams::parse_force(req.uri.query()) {
            Ok(f) => f,
            Err(e) => return api_error(&e),
        };
        let call = upstreams::Call {
            method: &req.method,
            target,
            force,
        };
        match upstreams::handle(&self.state.groups, &call, body) {
            Ok(answer) => {
                if answer.changed {
                    log::info!(
                        "runtime API: {} {} -> {}",
                        req.method,
                        req.uri.path(),
                        answer.status.as_u16()
                    );
                    if let Err(e) = self.state_file.save(&self.state) {
                        log::warn!("runtime API: state file not saved: {e}");
                    }
                }
                json(answer.status, &answer.body)
            }
            Err(e) => api_error(&e),
        }
    }

    /// A runtime API request under `/routes`; a change of split weights is saved to the state
    /// file.
    fn routes_api(
        &self,
        req: &pingora_http::RequestHeader,
        target: &routes::Target,
        body: &[u8],
    ) -> Response<Vec<u8>> {
        match routes::handle(&self.state, &req.method, target, body) {
            Ok((status, answer, changed)) => {
                if changed {
                    log::info!(
                        "runtime API: {} {} -> {}",
                        req.method,
                        req.uri.path(),
                        status
                    );
                    if let Err(e) = self.state_file.save(&self.state) {
                        log::warn!("runtime API: state file not saved: {e}");
                    }
                }
                json(status, &answer)
            }
            Err(e) => api_error(&e),
        }
    }

    /// A request for `/cache`: its usage, or a purge.
    fn cache_api(&self, req: &pingora_http::RequestHeader) -> Response<Vec<u8>> {
        match cache::handle(&self.state, &req.method, req.uri.query()) {
            Ok((status, answer)) => json(status, &answer),
            Err(e) => api_error(&e),
        }
    }

    fn health(&self) -> Response<Vec<u8>> {
        let down: Vec<&str> = self
            .state
            .groups
            .iter()
            .filter(|g| !g.members().iter().any(|m| g.is_ready(m.slot())))
            .map(|g| g.config.name.as_str())
            .collect();
        let (status, body) = health_answer(self.serving.is_set(), &down);
        text(status, body)
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = match self.read_body(session).await {
            Ok(body) => body,
            Err(answer) => {
                session.set_keepalive(None);
                return answer;
            }
        };
        // The status page is static (no data, the same for everyone): served without the
        // token, it asks for one when `/status` answers 401.
        if page::is_page_path(session.req_header().uri.path()) {
            let method = &session.req_header().method;
            if method == http::Method::GET || method == http::Method::HEAD {
                return page::response();
            }
        }
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
        if cache::is_cache_path(req.uri.path()) {
            return self.cache_api(req);
        }
        match routes::parse_path(req.uri.path()) {
            Ok(Some(target)) => return self.routes_api(req, &target, &body),
            Ok(None) => {}
            Err(e) => return api_error(&e),
        }
        match upstreams::parse_path(req.uri.path()) {
            Ok(Some(target)) => return self.runtime_api(req, target, &body),
            Ok(None) => {}
            Err(e) => return api_error(&e),
        }
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
        }
        match req.uri.path() {
            "/status" => {
                let doc = status(&self.state, self.started, &self.overview);
                let body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
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
                "404 Not Found: try /status, /health, /metrics, /upstreams, /routes or /cache (the status page is /)\n",
            ),
        }
    }
}

/// A one-thread Pingora service for the admin listener, behind its own connection cap and
/// head guard; `overview` is the config's routes and listeners for `/status`.
pub fn service(
    admin: &Admin,
    state: Arc<ProxyState>,
    serving: Serving,
    overview: overview::Overview,
) -> Service<Guarded<AdminApp>> {
    let app = AdminApp {
        state,
        serving,
        token: admin.token.as_deref().map(BearerToken::new),
        started: Instant::now(),
        body_timeout: admin.header_timeout,
        state_file: state_file::StateWriter::new(admin.state_file.clone()),
        overview,
    };
    let head = HeadLimits {
        timeout: admin.header_timeout,
        max_bytes: MAX_HEAD_BYTES,
        max_headers: MAX_HEADERS,
        idle: admin.idle_timeout,
        // Admin answers are made here, not fetched from a backend: nothing to release early.
        send_timeout: admin.idle_timeout,
        response_buffering: 0,
    };
    let guarded = Guarded::new(
        app,
        ConnectionCount::new(admin.max_connections),
        head,
        false,
    );
    let mut svc = Service::new("fulcrum admin".to_string(), guarded);
    svc.add_tcp(&admin.addr.to_string());
    svc.threads = Some(1);
    svc
}
