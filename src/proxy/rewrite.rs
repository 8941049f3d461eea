//! Rewriting heads on their way through: the request going upstream (path prefix, forwarding
//! headers, request id, Content-Length, the route's rules) and the response going back
//! (request id, `Via`, `served_by`, the sticky cookie, the route's rules).

use super::client::{peer_ip, scheme};
use super::context::RequestCtx;
use super::state::ProxyState;
use super::survey::Present;
use super::target::{normalize_path, TargetError};
use super::{content_length, forwarding, head, header_rules, host, request_id};
use crate::config::model::Route;
use crate::routing::strip_prefix;
use http::{HeaderValue, Uri};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

/// The path `route` sends upstream for the (normalized) request path `path`: the prefix
/// stripped (`strip_prefix`), then `rewrite` applied, and the result normalized again (a
/// rewrite that makes the path climb above `/` is an error); `None` when the route changes
/// neither (nor for `*`).
pub fn upstream_path(route: &Route, path: &str) -> Result<Option<String>, TargetError> {
    if path == "*" || !(route.strip_prefix || route.rewrite.is_some()) {
        return Ok(None);
    }
    let stripped = if route.strip_prefix {
        strip_prefix(&route.path, path)
    } else {
        path.into()
    };
    let Some(rewrite) = &route.rewrite else {
        return Ok(Some(stripped.into_owned()));
    };
    let rewritten = rewrite.regex.replace(&stripped, rewrite.to.as_str());
    Ok(Some(normalize_path(&rewritten)?.into_owned()))
}

/// Rewrite `upstream_request`, the copy of the client's request head that goes to the backend,
/// in a fixed order: the path, then the forwarding headers, then the request id, then the
/// route's own rules.
pub fn upstream_request(
    state: &ProxyState,
    session: &Session,
    upstream_request: &mut RequestHeader,
    ctx: &RequestCtx,
) {
    let Some(route) = state.route(ctx) else {
        return;
    };
    if let Some(path) = &ctx.upstream_path {
        let new = match upstream_request.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        if let Ok(uri) = new.parse::<Uri>() {
            upstream_request.set_uri(uri);
        }
    }
    // Identical repeated Content-Length values frame one body; send the value once (RFC
    // 9110 8.6), as strict backends refuse repeats.
    let present = ctx.present();
    let single_length = (present.has(Present::CONTENT_LENGTH)
        && content_length::repeated(upstream_request))
    .then(|| content_length::of(upstream_request))
    .flatten();
    let downstream = session.req_header();
    let hostless = host_for_hostless(upstream_request, ctx);
    let fwd = &state.forwarding;
    head::edit_request(upstream_request, fwd.preserve_header_case, |h| {
        forwarding::apply(
            fwd,
            h,
            peer_ip(session),
            host::raw(downstream),
            scheme(session),
            present,
        );
        if let Some(id) = &ctx.request_id {
            h.set(&request_id::HEADER, id.clone());
        }
        if let Some(trace) = &ctx.trace {
            super::trace_context::apply(trace, h, present);
        }
        if let Some(n) = single_length {
            h.set(&http::header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        if let Some(host) = &hostless {
            h.set(&http::header::HOST, host.clone());
        }
        header_rules::edit(&route.request_headers, h);
    });
}

/// The `Host` for a request that names no host at all, neither a `Host` field nor an authority
/// (HTTP/1.0 allows that, and fulcrum forwards as HTTP/1.1, which requires one, RFC 9112
/// section 3.2): the backend's address, as nginx's default `proxy_set_header Host $proxy_host`
/// sends. `None` for every other request (Pingora makes the `Host` of one with an authority).
fn host_for_hostless(req: &RequestHeader, ctx: &RequestCtx) -> Option<HeaderValue> {
    if req.uri.authority().is_some() || req.headers.contains_key(http::header::HOST) {
        return None;
    }
    let (_, addr) = ctx.chosen()?;
    HeaderValue::from_str(&addr.to_string()).ok()
}

/// Rewrite the response head on its way to the client.
pub fn response(state: &ProxyState, response: &mut ResponseHeader, ctx: &RequestCtx) {
    let route = state.route(ctx);
    let fwd = &state.forwarding;
    head::edit_response(response, fwd.preserve_header_case, |h| {
        if let Some(id) = &ctx.request_id {
            h.set(&request_id::HEADER, id.clone());
        }
        let Some(route) = route else {
            return;
        };
        if fwd.via {
            forwarding::set_via(h, true);
        }
        if let (Some(name), Some(value)) = (&fwd.served_by_header, served_by(state, ctx)) {
            h.set(name, value);
        }
        if let Some(cookie) = sticky_cookie(state, ctx) {
            h.add(&http::header::SET_COOKIE, cookie);
        }
        header_rules::edit(&route.response_headers, h);
    });
}

/// The `served_by` header value: the current attempt's backend address.
fn served_by(state: &ProxyState, ctx: &RequestCtx) -> Option<HeaderValue> {
    let (slot, addr) = ctx.chosen()?;
    let group = state.group(ctx)?;
    group
        .with_members(|m| {
            m.get(slot)
                .filter(|b| b.backend.addr == addr)
                .map(|b| b.served_by.clone())
        })
        // The backend left the group during the request.
        .or_else(|| HeaderValue::from_str(&addr.to_string()).ok())
}

/// For `cookie` groups, the `Set-Cookie` that pins the client to the backend that answered,
/// unless its cookie already named that backend (or the backend left the group meanwhile).
fn sticky_cookie(state: &ProxyState, ctx: &RequestCtx) -> Option<HeaderValue> {
    let (slot, addr) = ctx.chosen()?;
    if ctx.sticky == Some(slot) {
        return None;
    }
    let group = state.group(ctx)?;
    group.config.sticky.as_ref()?;
    group.with_members(|m| {
        m.get(slot).filter(|b| b.backend.addr == addr)?;
        m.sticky()?.set_cookie(slot).cloned()
    })
}
