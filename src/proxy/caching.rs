//! The proxy's side of the response cache (see [`crate::cache`]): which requests use it,
//! their keys, which answers are stored, the `X-Cache-Status` label and the counters.

use super::context::RequestCtx;
use super::state::ProxyState;
use crate::cache::policy::{request_eligible, response_cacheable};
use crate::cache::status::{self, CacheStatus};
use crate::cache::{key, Cache};
use pingora_cache::{CacheKey, CachePhase, NoCacheReason, RespCacheable};
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// `request_cache_filter`: turn the cache on for a caching route's eligible request.
pub fn enable(state: &ProxyState, session: &mut Session, ctx: &mut RequestCtx) {
    let (Some(cache), Some(route)) = (state.cache, state.route(ctx)) else {
        return;
    };
    if route.cache.is_none() {
        return;
    }
    let upgrade = session.is_upgrade_req();
    match request_eligible(session.req_header(), upgrade) {
        Ok(()) => Cache::enable(cache, &mut session.cache),
        Err(_) => ctx.cache_bypass = true,
    }
}

/// `cache_key_callback`: the request's key (route, upstream group, the route's key parts).
pub fn key(state: &ProxyState, session: &Session, ctx: &RequestCtx) -> Result<CacheKey> {
    let (Some(route), Some(group)) = (ctx.route, state.group(ctx)) else {
        return Error::e_explain(ErrorType::InternalError, "cache key without a route");
    };
    let Some(policy) = state.routes[route].cache.as_ref() else {
        return Error::e_explain(
            ErrorType::InternalError,
            "cache key on a route without cache",
        );
    };
    let req = session.req_header();
    let name = &group.config.name;
    Ok(key::build(route, name, policy, req, super::host::raw(req)))
}

/// `response_cache_filter`: whether the backend's answer is stored, and for how long. A
/// body announced larger than `cache.max_object_size` is not.
pub fn cacheable(state: &ProxyState, resp: &ResponseHeader, ctx: &RequestCtx) -> RespCacheable {
    let (Some(cache), Some(policy)) =
        (state.cache, state.route(ctx).and_then(|r| r.cache.as_ref()))
    else {
        return RespCacheable::Uncacheable(NoCacheReason::NeverEnabled);
    };
    let announced = resp
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if announced.is_some_and(|n| n > cache.max_object_size) {
        return RespCacheable::Uncacheable(NoCacheReason::ResponseTooLarge);
    }
    response_cacheable(resp, policy)
}

/// `upstream_response_body_filter`: a body being stored that outgrows
/// `cache.max_object_size` (no `Content-Length`) stops being stored; the response goes on,
/// the requests waiting on the cache lock go to the backend, and the key is remembered as
/// uncacheable for a while.
pub fn on_fill_body(
    state: &ProxyState,
    session: &mut Session,
    body: Option<&bytes::Bytes>,
    ctx: &mut RequestCtx,
) {
    let (Some(cache), Some(chunk)) = (state.cache, body) else {
        return;
    };
    if !matches!(
        session.cache.phase(),
        CachePhase::Miss | CachePhase::Expired
    ) {
        return;
    }
    ctx.cache_fill_bytes += chunk.len();
    if ctx.cache_fill_bytes > cache.max_object_size {
        let reason = NoCacheReason::ResponseTooLarge;
        session.cache.response_became_uncacheable(reason);
        session.cache.disable(reason);
    }
}

/// `should_serve_stale`: a stale copy may answer while it is refreshed (no error), or when
/// the backend side failed (refused, reset, timed out, 5xx, no backend left), never for
/// the client's own failures. The windows themselves (`stale_while_revalidate`,
/// `stale_if_error`, the response's directives) were checked by Pingora already.
pub fn may_serve_stale(error: Option<&Error>) -> bool {
    error.is_none_or(|e| !matches!(e.esource(), ErrorSource::Downstream))
}

/// `response_filter`: note what the cache did and, unless the route opted out, say so in
/// `X-Cache-Status`.
pub fn label(
    state: &ProxyState,
    session: &Session,
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) {
    let Some(policy) = state.route(ctx).and_then(|r| r.cache.as_ref()) else {
        return;
    };
    if state.cache.is_none() {
        return;
    }
    let s = status::of(&session.cache, ctx.cache_bypass);
    ctx.cache_status = Some(s);
    if policy.status_header {
        let _ = resp.insert_header(status::HEADER, s.as_header());
    }
}

/// Count a finished request of a caching route by what the cache did (a request answered
/// by fulcrum itself, such as a 502, by the cache's state when it ended).
pub fn observe(state: &ProxyState, session: &Session, ctx: &mut RequestCtx) {
    let Some(route) = ctx.route else {
        return;
    };
    if state.cache.is_none() || state.routes[route].cache.is_none() {
        return;
    }
    let s = *ctx
        .cache_status
        .get_or_insert_with(|| status::of(&session.cache, ctx.cache_bypass));
    state.cache_counters.observe(route, s);
}

/// The access log's `cache=` value, for requests of caching routes.
pub fn log_field(ctx: &RequestCtx) -> Option<&'static str> {
    ctx.cache_status.map(CacheStatus::as_header)
}
