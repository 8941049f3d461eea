//! The `ProxyHttp` implementation: a request's life, hook by hook.
//!
//! `request_filter` routes (404 when nothing matches) -> `upstream_peer` picks a backend from
//! the route's group -> `fail_to_connect` marks it failed and asks Pingora to retry on another
//! -> `upstream_request_filter` rewrites the path and headers -> `response_filter` edits the
//! response -> `fail_to_proxy` answers 502/503/504 with a short body when something broke.

pub mod access_log;
pub mod context;
pub mod forwarding;
pub mod hash_key;
pub mod head;
pub mod header_rules;
pub mod host;
pub mod peer;
pub mod request_id;
pub mod respond;
pub mod target;

use crate::balancer::stats::{InFlight, Outcome};
use crate::balancer::{Pick, UpstreamGroup};
use crate::config::model::{Algorithm, Config, Forwarding, HashKey, Limits, Route, RouteRateLimit};
use crate::limits::rate::RateLimiter;
use crate::limits::slots::{BackendSlots, QueueError};
use crate::routing::{normalize_host, strip_prefix, Router};
use async_trait::async_trait;
use context::RequestCtx;
use http::{HeaderValue, Uri};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

/// Everything the proxy reads while serving requests; built once from the validated config.
pub struct ProxyState {
    /// Routes in config order.
    pub routes: Vec<Route>,
    /// Route lookup tables.
    pub router: Router,
    /// Upstream groups, indexed like the config's upstreams.
    pub groups: Vec<UpstreamGroup>,
    /// Forwarding-header policy.
    pub forwarding: Forwarding,
    /// Per group, per backend: the prepared peer.
    peers: Vec<Vec<HttpPeer>>,
    /// Per group, per backend: the backend's address as a header value (for `served_by`).
    served_by: Vec<Vec<HeaderValue>>,
    /// Per-request metric handles.
    metrics: crate::metrics::RequestMetrics,
    /// Limits on client requests.
    pub limits: Limits,
    /// Per route: the rate limiter it applies (the top-level one shared, or its own).
    rate_limiters: Vec<Option<Arc<RateLimiter>>>,
    /// Per group: backend slots, for groups with `max_connections`.
    slots: Vec<Option<Arc<BackendSlots>>>,
}

impl ProxyState {
    /// Build selectors, routing tables and peers.
    pub fn new(config: &Config) -> Self {
        let groups: Vec<UpstreamGroup> = config
            .upstreams
            .iter()
            .cloned()
            .map(UpstreamGroup::new)
            .collect();
        let peers = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(g, u)| u.backends.iter().map(|b| peer::build(g, u, b)).collect())
            .collect();
        let served_by = config
            .upstreams
            .iter()
            .map(|u| {
                u.backends
                    .iter()
                    .map(|b| {
                        HeaderValue::from_str(&b.addr.to_string())
                            .unwrap_or(HeaderValue::from_static(""))
                    })
                    .collect()
            })
            .collect();
        crate::metrics::register_groups(
            groups
                .iter()
                .map(|g| {
                    let addrs = g
                        .config
                        .backends
                        .iter()
                        .map(|b| b.addr.to_string())
                        .collect();
                    (g.config.name.clone(), addrs, g.stats)
                })
                .collect(),
        );
        let shared_limiter = config
            .rate_limit
            .as_ref()
            .map(|r| Arc::new(RateLimiter::new(r)));
        let rate_limiters = config
            .routes
            .iter()
            .map(|r| match &r.rate_limit {
                RouteRateLimit::Inherit => shared_limiter.clone(),
                RouteRateLimit::Off => None,
                RouteRateLimit::Own(limit) => Some(Arc::new(RateLimiter::new(limit))),
            })
            .collect();
        let slots = config
            .upstreams
            .iter()
            .map(|u| {
                u.backend_limit
                    .clone()
                    .map(|l| BackendSlots::new(l, u.backends.len()))
            })
            .collect();
        ProxyState {
            limits: config.limits.clone(),
            rate_limiters,
            slots,
            metrics: crate::metrics::RequestMetrics::new(config),
            routes: config.routes.clone(),
            router: Router::new(&config.routes),
            groups,
            forwarding: config.forwarding.clone(),
            peers,
            served_by,
        }
    }
}

/// What a proxy service knows about the listener it serves.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenerInfo {
    /// The listener serves HTTPS.
    pub tls: bool,
    /// Redirect every request to HTTPS.
    pub redirect_to_https: bool,
    /// Port of the HTTPS listener redirects go to.
    pub https_port: Option<u16>,
}

/// The proxy of one listener: a handle on shared [`ProxyState`].
pub struct Proxy {
    state: Arc<ProxyState>,
    listener: ListenerInfo,
}

impl Proxy {
    /// A proxy serving from `state` on a listener described by `listener`.
    pub fn new(state: Arc<ProxyState>, listener: ListenerInfo) -> Self {
        Proxy { state, listener }
    }

    /// Answer with a 308 to the same URL over HTTPS.
    async fn redirect_to_https(&self, session: &mut Session, ctx: &RequestCtx) {
        let req = session.req_header();
        let Some(host) = raw_host(req).map(normalize_host).filter(|h| !h.is_empty()) else {
            let id = ctx.request_id.as_ref();
            respond::send(
                session,
                400,
                "400 Bad Request: a Host header is required\n",
                id,
            )
            .await;
            return;
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.into_owned()
        };
        let port = match self.listener.https_port {
            Some(443) | None => String::new(),
            Some(p) => format!(":{p}"),
        };
        let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let location = format!("https://{host}{port}{target}");
        respond::redirect(session, &location, ctx.request_id.as_ref()).await;
    }

    fn route(&self, ctx: &RequestCtx) -> Option<&Route> {
        ctx.route.and_then(|i| self.state.routes.get(i))
    }

    /// Whether the request may still try another backend, time-wise.
    fn within_try_budget(&self, ctx: &RequestCtx, group: &UpstreamGroup) -> bool {
        match (group.config.max_try_duration, ctx.started) {
            (Some(limit), Some(t)) => t.elapsed() < limit,
            _ => true,
        }
    }

    fn write_access_log(
        &self,
        session: &Session,
        e: Option<&Error>,
        ctx: &RequestCtx,
        status: u16,
        seconds: f64,
        cut_after_head: bool,
    ) {
        let req = session.req_header();
        let client = session
            .client_addr()
            .map_or_else(|| "-".to_string(), |a| a.to_string());
        let group = self.route(ctx).map(|r| &self.state.groups[r.upstream]);
        let backend = match (group, ctx.backend) {
            (Some(g), Some(i)) => g.backend(i).map(|b| b.addr.to_string()),
            _ => None,
        };
        let version = match req.version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_09 => "HTTP/0.9",
            _ => "HTTP/1.1",
        };
        let uri = req.uri.path_and_query().map_or("/", |p| p.as_str());
        access_log::write(&access_log::Entry {
            client: &client,
            method: req.method.as_str(),
            uri,
            version,
            status,
            bytes: session.as_downstream().body_bytes_sent(),
            seconds,
            upstream: group.map_or("-", |g| g.config.name.as_str()),
            backend: backend.as_deref().unwrap_or("-"),
            tries: ctx.tries,
            request_id: ctx
                .request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-"),
            error: e.map(|e| match cut_after_head {
                true => format!("response cut after its head was sent: {e}"),
                false => e.to_string(),
            }),
        });
    }

    /// Record the current attempt's outcome for the circuit breaker (once per attempt), and
    /// log an ejection.
    fn record(&self, ctx: &mut RequestCtx, outcome: Outcome) {
        let Some(attempt) = ctx.in_flight.as_mut() else {
            return;
        };
        if let Some(cooldown) = attempt.resolve(outcome) {
            if let Some(group) = ctx
                .route
                .and_then(|r| self.state.routes.get(r))
                .map(|r| &self.state.groups[r.upstream])
            {
                if let Some(b) = group.backend(attempt.index()) {
                    log::warn!(
                        "upstream {}: backend {} ejected for {:?} after failed requests",
                        group.config.name,
                        b.addr,
                        cooldown
                    );
                }
            }
        }
    }
}

/// The Host of a request (Host header, else the URI authority), raw.
fn raw_host(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

/// Bytes of a request head as parsed: request line and header lines (for limits that must
/// also hold for HTTP/2, where there are no raw head bytes to count).
fn head_size(req: &RequestHeader) -> usize {
    let uri = req.uri.authority().map_or(0, |a| a.as_str().len())
        + req.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method.as_str().len() + uri + 12;
    req.headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
}

/// The request's Content-Length, when its values (repeated lines or a list) all agree; Pingora
/// refuses requests whose values differ.
fn content_length(req: &RequestHeader) -> Option<u64> {
    let mut out = None;
    for v in req.headers.get_all(http::header::CONTENT_LENGTH) {
        for item in v.to_str().ok()?.split(',') {
            let n: u64 = item.trim().parse().ok()?;
            if out.is_some_and(|o| o != n) {
                return None;
            }
            out = Some(n);
        }
    }
    out
}

/// Whether the request's Content-Length is written more than once (`5, 5` or two lines).
fn content_length_repeated(req: &RequestHeader) -> bool {
    let mut values = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
    match (values.next(), values.next()) {
        (Some(_), Some(_)) => true,
        (Some(v), None) => v.as_bytes().contains(&b','),
        _ => false,
    }
}

/// Why no slot could be had.
enum SlotError {
    /// No backend may serve (all unhealthy, ejected or already failed).
    NoBackend,
    /// Backends could serve but all are full, and the queue did not help.
    Queue(QueueError),
}

/// Select a backend with a free slot, waiting in the group's queue while all are full.
async fn select_with_slot(
    group: &UpstreamGroup,
    slots: &Arc<BackendSlots>,
    pick: Pick<'_>,
    failed: &[usize],
) -> std::result::Result<(crate::balancer::Chosen, crate::limits::slots::Slot), SlotError> {
    let mut ticket = None;
    loop {
        // While others wait, a newcomer queues behind them rather than taking a freed slot.
        if ticket.is_some() || slots.waiting() == 0 {
            if let Some(c) = group.select(pick, |i| failed.contains(&i) || slots.is_full(i)) {
                match slots.try_acquire(c.index) {
                    Some(slot) => return Ok((c, slot)),
                    // Lost a race for the last slot: give back what selection admitted.
                    None => drop(InFlight::start(group.stats, c.index, c.trial)),
                }
            }
        }
        // Nothing free: is anything able to serve at all?
        if !(0..group.len()).any(|i| !failed.contains(&i) && group.is_ready(i)) {
            return Err(SlotError::NoBackend);
        }
        if ticket.is_none() {
            ticket = Some(slots.enqueue().map_err(SlotError::Queue)?);
        }
        if let Some(t) = &ticket {
            t.wait_for_release().await.map_err(SlotError::Queue)?;
        }
    }
}

/// Whether a failure on a reused upstream connection is what a keep-alive connection that
/// the backend closed while it sat in the pool looks like: an end of stream or a reset on the
/// first read or write (as nginx treats an error on a cached connection). A timeout is never
/// that: the backend took the request and is stuck.
fn stale_connection(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
    )
}

/// Whether an error is a timeout (on either side).
fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout
    )
}

fn peer_ip(session: &Session) -> IpAddr {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip())
}

fn scheme(session: &Session) -> &'static str {
    match session.digest().and_then(|d| d.ssl_digest.as_ref()) {
        Some(_) => "https",
        None => "http",
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.started = Some(Instant::now());
        if crate::lifecycle::draining() {
            // This process is handing over or stopping: make the client reconnect.
            session.set_keepalive(None);
        }
        let req = session.req_header();
        ctx.request_id = Some(request_id::of(req));
        let limits = &self.state.limits;
        if req.headers.len() > limits.max_headers || head_size(req) > limits.max_header_bytes {
            let body = "431 Request Header Fields Too Large: too many or too large headers\n";
            respond::send(session, 431, body, ctx.request_id.as_ref()).await;
            return Ok(true);
        }
        // The target's form, its host and its normalized path, before anything routes on it.
        if let Err(e) = target::prepare(session.req_header_mut()) {
            let (status, body) = e.answer();
            respond::send(session, status, body, ctx.request_id.as_ref()).await;
            return Ok(true);
        }
        let req = session.req_header();
        // RFC 9112 3.2: exactly one valid Host on HTTP/1.1 (HTTP/2 may carry :authority).
        let hosts = req.headers.get_all(http::header::HOST).iter().count();
        let needs_host = req.version == http::Version::HTTP_11;
        let host = raw_host(req);
        if hosts > 1 || (needs_host && hosts == 0) || host.is_some_and(|h| !host::is_valid(h)) {
            let body = "400 Bad Request: exactly one valid Host header is required\n";
            respond::send(session, 400, body, ctx.request_id.as_ref()).await;
            return Ok(true);
        }
        let route = self
            .state
            .router
            .find(host.map(normalize_host).as_deref(), target::route_path(req));
        // Body reads wait at most body_timeout each; idle keep-alive lasts keepalive_timeout
        // (only where keep-alive is on: HTTP/1.0 without `Connection: keep-alive` stays off).
        session.set_read_timeout(Some(limits.body_timeout));
        if session.get_keepalive().is_some() && !crate::lifecycle::draining() {
            session.set_keepalive(Some(limits.keepalive_timeout_secs));
        }
        if self.listener.redirect_to_https {
            self.redirect_to_https(session, ctx).await;
            return Ok(true);
        }
        ctx.route = route;
        if ctx.route.is_none() {
            let (status, body) = respond::error_answer(&Error::new(ErrorType::HTTPStatus(404)));
            respond::send(session, status, body, ctx.request_id.as_ref()).await;
            return Ok(true);
        }
        if !self.listener.tls && self.route(ctx).is_some_and(|r| r.redirect_to_https) {
            self.redirect_to_https(session, ctx).await;
            return Ok(true);
        }
        if session.is_upgrade_req() {
            // An upgraded connection's client may stay silent for the tunnel timeout.
            let route = &self.state.routes[ctx.route.unwrap_or_default()];
            let tunnel = self.state.groups[route.upstream].config.timeouts.tunnel;
            session.set_read_timeout(Some(tunnel));
        }
        let peer = peer_ip(session);
        let client = forwarding::client_ip(&self.state.forwarding, session.req_header(), peer);
        ctx.client_ip = Some(client);
        let route_index = ctx.route.unwrap_or_default();
        if let Some(limiter) = &self.state.rate_limiters[route_index] {
            if let Err(wait) = limiter.check(client) {
                // Whole seconds, rounded up: a client that waits that long is let in.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let body = "429 Too Many Requests: slow down\n";
                let id = ctx.request_id.as_ref();
                respond::send_retry_after(session, 429, body, id, Some(secs.max(1))).await;
                return Ok(true);
            }
        }
        if let Some(max) = self.state.routes[route_index].max_body_bytes {
            if content_length(session.req_header()).is_some_and(|n| n > max) {
                let (status, body) = respond::error_answer(&Error::new(ErrorType::HTTPStatus(413)));
                respond::send(session, status, body, ctx.request_id.as_ref()).await;
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(chunk) = body else {
            return Ok(());
        };
        ctx.body_bytes += chunk.len() as u64;
        let max = self.route(ctx).and_then(|r| r.max_body_bytes);
        if max.is_some_and(|max| ctx.body_bytes > max) {
            // A streamed (chunked) body outgrew the limit: stop here, answer 413 if nothing
            // was answered yet, and close.
            let mut e = Error::explain(ErrorType::HTTPStatus(413), "request body too large");
            e.esource = pingora_core::ErrorSource::Downstream;
            return Err(e);
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let route = self
            .route(ctx)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "request has no route"))?;
        let g = route.upstream;
        let group = &self.state.groups[g];
        let req = session.req_header();
        let client = ctx.client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let key = match group.config.algorithm {
            Algorithm::Consistent => hash_key::extract(&group.config.hash_key, req, client),
            Algorithm::IpHash => hash_key::extract(&HashKey::ClientIp, req, client),
            _ => None,
        };
        if let Some(sticky) = &group.sticky {
            if ctx.tries == 0 {
                ctx.sticky = sticky.backend_for(req);
            }
        }
        let pick = Pick {
            key: key.as_ref().map(|k| k.as_bytes()),
            sticky: ctx.sticky,
        };
        let no_backend = || {
            Error::explain(
                ErrorType::HTTPStatus(503),
                format!("no healthy backend in upstream {}", group.config.name),
            )
        };
        let (chosen, slot) = match &self.state.slots[g] {
            None => {
                let failed = &ctx.failed;
                let chosen = group
                    .select(pick, |i| failed.contains(&i))
                    .ok_or_else(no_backend)?;
                (chosen, None)
            }
            Some(slots) => {
                let (chosen, slot) = select_with_slot(group, slots, pick, &ctx.failed)
                    .await
                    .map_err(|e| match e {
                        SlotError::NoBackend => no_backend(),
                        SlotError::Queue(q) => Error::explain(
                            respond::BACKENDS_BUSY,
                            format!(
                                "upstream {}: every backend is at max_connections ({})",
                                group.config.name,
                                match q {
                                    QueueError::Full => "queue full",
                                    QueueError::TimedOut => "queue timeout",
                                }
                            ),
                        ),
                    })?;
                (chosen, Some(slot))
            }
        };
        let i = chosen.index;
        ctx.backend = Some(i);
        ctx.tries += 1;
        ctx.attempt_started = Some(Instant::now());
        ctx.response_started = false;
        // Replacing a previous attempt's guard un-counts that attempt (and frees its slot).
        ctx.in_flight = Some(InFlight::start(group.stats, i, chosen.trial));
        ctx.slot = slot;
        let mut peer = Box::new(self.state.peers[g][i].clone());
        if session.is_upgrade_req() {
            peer::for_tunnel(&mut peer, &group.config.timeouts);
        }
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(i) = ctx.backend {
            ctx.failed.push(i);
        }
        self.record(ctx, Outcome::Failure);
        ctx.in_flight = None;
        ctx.slot = None;
        let Some(route) = self.route(ctx) else {
            return e;
        };
        let group = &self.state.groups[route.upstream];
        if ctx.tries < group.config.max_tries
            && self.within_try_budget(ctx, group)
            && !session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(true);
            group.stats.record_retry();
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let upstream = matches!(e.esource(), pingora_core::ErrorSource::Upstream);
        // Replaying is safe only for an idempotent request whose body still fits Pingora's
        // retry buffer, and only while the client has seen nothing of the response.
        let replayable = upstream
            && session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && !ctx.response_started
            && self
                .route(ctx)
                .is_some_and(|r| self.within_try_budget(ctx, &self.state.groups[r.upstream]));
        let max_tries = self
            .route(ctx)
            .map_or(1, |r| self.state.groups[r.upstream].config.max_tries);
        e.set_retry(false);
        if replayable && client_reused && !ctx.reuse_retried && stale_connection(&e) {
            // A pooled connection the backend had closed: says nothing about the backend.
            // Retry, on any backend, once. (A timeout is not that: the backend is stuck.)
            ctx.reuse_retried = true;
            ctx.in_flight = None;
            ctx.slot = None;
            e.set_retry(true);
        } else {
            // A connection-level failure of the backend itself (or the client went away).
            if upstream {
                if let Some(i) = ctx.backend {
                    ctx.failed.push(i);
                }
                self.record(ctx, Outcome::Failure);
            }
            // Like nginx's proxy_next_upstream error: an idempotent request that broke before
            // any response byte moves on to another backend.
            if replayable && ctx.tries < max_tries {
                ctx.in_flight = None;
                ctx.slot = None;
                e.set_retry(true);
            }
        }
        if e.retry() {
            if let Some(r) = self.route(ctx) {
                self.state.groups[r.upstream].stats.record_retry();
            }
        }
        e
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.response_started = true;
        let status = upstream_response.status.as_u16();
        if (100..200).contains(&status) && status != 101 {
            return Ok(());
        }
        let Some(route) = self.route(ctx) else {
            return Ok(());
        };
        let cb = &self.state.groups[route.upstream].config.circuit_breaker;
        let slow = match (cb.slow_response, ctx.attempt_started) {
            (Some(limit), Some(t)) => t.elapsed() > limit,
            _ => false,
        };
        if (cb.on_5xx && status >= 500) || slow {
            self.record(ctx, Outcome::Failure);
        } else if status == 101 {
            // An upgraded connection may live for hours: the backend did its part.
            self.record(ctx, Outcome::Success);
        }
        // Otherwise the outcome waits for the end of the body (the logging hook): a response
        // cut by the backend is its failure.
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(route) = self.route(ctx) else {
            return Ok(());
        };
        if route.strip_prefix && upstream_request.uri.path() != "*" {
            let path = strip_prefix(&route.path, upstream_request.uri.path());
            let new = match upstream_request.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.into_owned(),
            };
            if let Ok(uri) = new.parse::<Uri>() {
                upstream_request.set_uri(uri);
            }
        }
        // Identical repeated Content-Length values frame one body; send the value once (RFC
        // 9110 8.6), as strict backends refuse repeats.
        let single_length = content_length_repeated(upstream_request)
            .then(|| content_length(upstream_request))
            .flatten();
        let downstream = session.req_header();
        let fwd = &self.state.forwarding;
        head::edit_request(upstream_request, fwd.preserve_header_case, |h| {
            forwarding::apply(
                fwd,
                h,
                peer_ip(session),
                raw_host(downstream),
                scheme(session),
            );
            if let Some(id) = &ctx.request_id {
                h.set(&request_id::HEADER, id.clone());
            }
            if let Some(n) = single_length {
                h.set(&http::header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            header_rules::edit(&route.request_headers, h);
        });
        Ok(())
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(route), Some(i)) = (self.route(ctx), ctx.backend) {
            if let Some(b) = self.state.groups[route.upstream].stats.get(i) {
                b.record_connection(reused);
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let route = self.route(ctx);
        let fwd = &self.state.forwarding;
        head::edit_response(upstream_response, fwd.preserve_header_case, |h| {
            if let Some(id) = &ctx.request_id {
                h.set(&request_id::HEADER, id.clone());
            }
            let Some(route) = route else {
                return;
            };
            if fwd.via {
                forwarding::set_via(h);
            }
            if let (Some(name), Some(i)) = (&fwd.served_by_header, ctx.backend) {
                if let Some(v) = self.state.served_by[route.upstream].get(i) {
                    h.set(name, v.clone());
                }
            }
            let sticky = &self.state.groups[route.upstream].sticky;
            if let (Some(sticky), Some(i)) = (sticky, ctx.backend) {
                if ctx.sticky != Some(i) {
                    if let Some(v) = sticky.set_cookie(i) {
                        h.add(&http::header::SET_COOKIE, v.clone());
                    }
                }
            }
            header_rules::edit(&route.response_headers, h);
        });
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        // One clock read for the attempt's latency and the request's duration.
        let now = Instant::now();
        if let (Some(attempt), Some(t), Some(route)) =
            (&ctx.in_flight, ctx.attempt_started, self.route(ctx))
        {
            if let Some(b) = self.state.groups[route.upstream].stats.get(attempt.index()) {
                b.record_latency(now.saturating_duration_since(t));
            }
        }
        match e {
            None => self.record(ctx, Outcome::Success),
            Some(e) if matches!(e.esource(), pingora_core::ErrorSource::Upstream) => {
                self.record(ctx, Outcome::Failure)
            }
            // The client went away or sent garbage: nothing learned about the backend.
            Some(_) => {}
        }
        ctx.in_flight = None;
        ctx.slot = None;

        // A response the backend broke after its head went out was never complete: it counts
        // as an error (status 0), not as the status its head carried. An upgraded connection
        // that went quiet for the tunnel timeout ended normally.
        let cut = ctx.aborted
            && e.is_some_and(|e| {
                matches!(e.esource(), pingora_core::ErrorSource::Upstream)
                    && !(session.was_upgraded() && is_timeout(e))
            });
        let sent = session
            .as_downstream()
            .response_written()
            .map_or(0, |r| r.status.as_u16());
        let seconds = ctx
            .started
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        let counted = if cut { 0 } else { sent };
        self.state
            .metrics
            .observe(ctx.route, ctx.backend, counted, seconds);
        if access_log::enabled() {
            self.write_access_log(session, e, ctx, sent, seconds, cut);
        }
    }

    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let id = ctx.request_id.as_ref().and_then(|v| v.to_str().ok());
        format!(
            "{}, request_id: {}",
            session.as_ref().request_summary(),
            id.unwrap_or("-")
        )
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (code, body) = respond::error_answer(e);
        if session.response_written().is_some() {
            // The client already has part of a response: never complete it. HTTP/1 closes
            // the connection mid-message, HTTP/2 resets the stream.
            ctx.aborted = true;
            session.as_mut().shutdown().await;
        } else if code > 0 {
            respond::send(session, code, body, ctx.request_id.as_ref()).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_end_of_stream_or_a_reset_is_a_stale_connection() {
        use ErrorType::*;
        for t in [ConnectionClosed, ReadError, WriteError] {
            assert!(stale_connection(&Error::new(t.clone())), "{t:?}");
        }
        for t in [
            ReadTimedout,
            WriteTimedout,
            ConnectTimedout,
            InvalidHTTPHeader,
            HTTPStatus(502),
        ] {
            assert!(!stale_connection(&Error::new(t.clone())), "{t:?}");
        }
    }
}
