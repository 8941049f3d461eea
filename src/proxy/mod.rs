//! The `ProxyHttp` implementation: a request's life, hook by hook. Each hook is a short call
//! into the module that owns its step:
//!
//! `request_filter` admits, answers or redirects (`admission`), and reads a small body whole
//! before any backend is involved (`prebuffer`) -> `upstream_peer` picks a
//! backend of the route's group (`selection`) -> `fail_to_connect` / `error_while_proxy`
//! decide whether to try another (`retry`) -> `upstream_request_filter` and `response_filter`
//! edit the heads (`rewrite`; `response_filter` also decides a route's response compression,
//! `crate::compress`, whose downstream module encodes the body; `response_filter` and
//! `response_body_filter` also tell the client connection when the rest of a response is
//! known, `write_behind`) ->
//! `upstream_request_filter` and `request_body_filter` also copy the request for a route's
//! `mirror:` and send the copy once the client's body is complete (`mirror`) ->
//! `upstream_response_filter` judges the answer (`outcome`) ->
//! `upstream_response_trailer_filter` notes a gRPC call's status (`grpc`) ->
//! `fail_to_proxy` answers 502/503/504 with a short body when something broke, or a gRPC
//! status to a gRPC call (`respond`, `grpc`) ->
//! `logging` counts and logs every request (`report`).

pub mod access_log;
pub mod admission;
pub mod caching;
pub mod client;
pub mod client_gone;
pub mod content_length;
pub mod context;
pub mod forwarding;
pub mod grpc;
pub mod hash_key;
pub mod head;
pub mod header_rules;
pub mod hex;
pub mod host;
pub mod mirror;
pub mod outcome;
pub mod prebuffer;
pub mod report;
pub mod request_id;
pub mod respond;
pub mod retry;
pub mod rewrite;
pub mod selection;
pub mod state;
pub mod survey;
pub mod target;
pub mod trace_context;
pub mod transfer_encoding;
pub mod unprocessed;
pub mod write_behind;

pub use state::{ListenerInfo, ProxyState};

use admission::Admission;
use async_trait::async_trait;
use context::RequestCtx;
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheKey, CacheMeta, ForcedFreshness, RespCacheable};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::time::Instant;

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

    /// Set the timeouts of an admitted request's client connection: body reads wait at most
    /// `body_timeout` each (an upgraded connection's client may stay silent for the tunnel
    /// timeout), response body writes at most `send_timeout` each, and idle keep-alive lasts
    /// `keepalive_timeout` (only where keep-alive is on: HTTP/1.0 without
    /// `Connection: keep-alive` stays off). A gRPC call's client may pause between messages
    /// for the group's `stream_idle`.
    fn set_client_timeouts(&self, session: &mut Session, upstream: usize, grpc: bool) {
        let limits = &self.state.limits;
        let timeouts = &self.state.groups[upstream].config.timeouts;
        let read = match (session.is_upgrade_req(), grpc) {
            (true, _) => timeouts.tunnel,
            (false, true) => timeouts.stream_idle,
            (false, false) => limits.body_timeout,
        };
        session.set_read_timeout(Some(read));
        session.set_write_timeout(Some(limits.send_timeout));
        if session.get_keepalive().is_some() && !crate::lifecycle::draining() {
            session.set_keepalive(Some(limits.keepalive_timeout_secs));
        }
    }
}

impl Proxy {
    /// How much of an admitted request's body to read before choosing a backend.
    fn read_ahead_plan(&self, session: &mut Session, route: usize) -> prebuffer::ReadAhead {
        let limit = self.state.routes[route].request_buffering;
        let upgrade = session.is_upgrade_req();
        let has_body = !session.as_downstream_mut().is_body_empty();
        prebuffer::plan(limit, session.req_header(), upgrade, has_body)
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    fn init_downstream_modules(&self, modules: &mut pingora_core::modules::http::HttpModules) {
        // Pingora's own compression module, off, as the default keeps it; and the encoder of
        // a route's `compression:` (see `crate::compress`).
        modules.add_module(
            pingora_core::modules::http::compression::ResponseCompressionBuilder::enable(0),
        );
        modules.add_module(Box::new(crate::compress::module::BodyEncoderBuilder));
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.started = Some(Instant::now());
        if crate::lifecycle::draining() {
            // This process is handing over or stopping: make the client reconnect.
            session.set_keepalive(None);
        }
        let req = session.req_header();
        let survey = survey::of(&req.headers);
        ctx.survey = Some(survey);
        if self.state.forwarding.trace_context {
            ctx.trace = Some(trace_context::on_request(&req.headers, survey.present));
        }
        let id = request_id::for_request(req, survey.present, ctx.trace.as_ref());
        ctx.request_id = Some(id);
        ctx.grpc = grpc::is_grpc(req);
        let peer = client::peer_ip(session);
        let req = session.req_header_mut();
        let admission = admission::admit(&self.state, &self.listener, req, peer, &survey);
        let id = ctx.request_id.as_ref();
        match admission {
            Admission::Proceed {
                route,
                upstream,
                client,
                path,
            } => {
                ctx.route = Some(route);
                ctx.upstream = Some(upstream);
                ctx.upstream_path = path;
                ctx.client_ip = Some(client);
                self.set_client_timeouts(session, upstream, ctx.grpc);
                // Before a backend is chosen: a slow upload holds no slot.
                let plan = self.read_ahead_plan(session, route);
                let max = self.state.routes[route].max_body_bytes;
                let each_read = self.state.limits.body_timeout;
                prebuffer::read_ahead(session, plan, each_read, max).await?;
                return Ok(false);
            }
            Admission::Answer { route, answer } => {
                ctx.route = route;
                if let Some(reason) = crate::metrics::rejections::Reason::of_status(answer.status) {
                    crate::metrics::rejections::rejected(reason);
                }
                respond::send_answer(session, answer, id).await;
            }
            Admission::Redirect { route, location } => {
                ctx.route = route;
                respond::redirect(session, &location, id).await;
            }
        }
        Ok(true)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.body_bytes += chunk.len() as u64;
            let max = self.state.route(ctx).and_then(|r| r.max_body_bytes);
            if max.is_some_and(|max| ctx.body_bytes > max) {
                // A streamed (chunked) body outgrew the limit: stop here, answer 413 if nothing
                // was answered yet, and close.
                return Err(prebuffer::body_too_large());
            }
        }
        mirror::on_body(&self.state, ctx, body.as_ref(), end_of_stream);
        Ok(())
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        caching::enable(&self.state, session, ctx);
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        caching::key(&self.state, session, ctx)
    }

    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        meta: &CacheMeta,
        _hit_handler: &mut pingora_cache::storage::HitHandler,
        _is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        Ok(caching::on_hit(session, meta, ctx))
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        Ok(caching::cacheable(&self.state, session, resp, ctx))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        crate::cache::policy::variance(meta, req)
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        caching::may_serve_stale(error)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let upgrade = session.is_upgrade_req();
        selection::next_attempt(&self.state, session.req_header(), upgrade, ctx).await
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        retry::on_connect_failure(&self.state, session, ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        retry::on_proxy_error(&self.state, peer, session, ctx, e, client_reused)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.response_started = true;
        ctx.upstream_status = Some(upstream_response.status.as_u16());
        outcome::judge_response(&self.state, ctx, upstream_response.status.as_u16());
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        rewrite::upstream_request(&self.state, session, upstream_request, ctx);
        mirror::on_upstream_request(&self.state, session, upstream_request, ctx);
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
        if let (Some(group), Some(i)) = (self.state.group(ctx), ctx.backend) {
            if let Some(b) = group.stats.get(i) {
                b.record_connection(reused);
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        rewrite::response(&self.state, upstream_response, ctx);
        caching::label(&self.state, session, upstream_response, ctx);
        crate::compress::on_response_head(&self.state, session, upstream_response, ctx);
        write_behind::on_response_head(session, upstream_response);
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        caching::on_fill_body(&self.state, session, body.as_ref(), ctx);
        Ok(None)
    }

    fn upstream_response_trailer_filter(
        &self,
        _session: &mut Session,
        upstream_trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.grpc_status = grpc::status_in(upstream_trailers);
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        _ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        write_behind::on_response_body(session, end_of_stream);
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        report::request_done(&self.state, session, e, ctx);
        if let Some(e) = e.filter(|e| client_gone::is_client_gone(e)) {
            client_gone::log(session, e);
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        // Logged at INFO by `logging` instead.
        client_gone::is_client_gone(error)
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
