//! The cache's part of the admin API: see what the cache holds, and purge it.
//!
//! | Method and path                          | Answer                                   |
//! |------------------------------------------|------------------------------------------|
//! | `GET /cache`                             | 200 `{"objects", "size_bytes", "max_size_bytes", "evictions"}` |
//! | `DELETE /cache`                          | 200 `{"purged": N}`: every object        |
//! | `DELETE /cache?route=ID`                 | one route's objects                      |
//! | `DELETE /cache?route=ID&path=/p`         | that route's objects whose path is `/p` (any host, query or variant) |
//! | `DELETE /cache?route=ID&prefix=/p/`      | that route's objects whose path starts with `/p/` |
//!
//! `ID` is the route's `name`, or its index in `routes:`, as in `/routes`. `path` and
//! `prefix` are percent-decoded, then normalized like a request's path, so they name the
//! objects the requests for them filled. Errors are `{"error": "..."}`: 400 bad parameters,
//! 404 unknown route, a route that does not cache, or no cache at all, 405 wrong method.

use super::routes::route_index;
use super::upstreams::{percent_decode, ApiError};
use crate::cache::purge::{purge, Selection};
use crate::proxy::state::ProxyState;
use crate::proxy::target::normalize_path;
use http::{Method, StatusCode};
use serde_json::{json, Value};

/// Whether `path` is the cache's.
pub fn is_cache_path(path: &str) -> bool {
    path == "/cache" || path == "/cache/"
}

/// Answer a request for `/cache` with `query`.
pub fn handle(
    state: &ProxyState,
    method: &Method,
    query: Option<&str>,
) -> Result<(StatusCode, Value), ApiError> {
    let Some(cache) = state.cache else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no route caches: give a route `cache: {enabled: true}`",
        ));
    };
    match *method {
        Method::GET | Method::HEAD => {
            let (objects, bytes, evicted) = cache.usage();
            Ok((
                StatusCode::OK,
                json!({
                    "objects": objects,
                    "size_bytes": bytes,
                    "max_size_bytes": cache.max_size,
                    "evictions": evicted,
                }),
            ))
        }
        Method::DELETE => {
            let selection = selection(state, query)?;
            let purged = purge(cache, &selection);
            log::info!("cache purge {selection:?}: {purged} objects");
            Ok((StatusCode::OK, json!({ "purged": purged })))
        }
        _ => {
            let mut e = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "use GET or DELETE");
            e.allow = Some("GET, HEAD, DELETE");
            Err(e)
        }
    }
}

/// What a purge's query selects.
pub fn selection(state: &ProxyState, query: Option<&str>) -> Result<Selection, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let (mut route, mut path, mut prefix) = (None, None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(&v.replace('+', " "))
            .ok_or_else(|| bad(format!("{k}: bad percent-encoding")))?;
        let slot = match k {
            "route" => &mut route,
            "path" => &mut path,
            "prefix" => &mut prefix,
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?}: use route, path or prefix"
                )))
            }
        };
        if slot.replace(v).is_some() {
            return Err(bad(format!("{k} given twice")));
        }
    }
    let Some(route) = route else {
        if path.is_some() || prefix.is_some() {
            return Err(bad("path and prefix need route=ID".into()));
        }
        return Ok(Selection::All);
    };
    let index = route_index(state, &route).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no route named {route:?} (nor with that index)"),
        )
    })?;
    if state.routes[index].cache.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("route {route:?} does not cache"),
        ));
    }
    let normalized = |what: &str, p: String| -> Result<String, ApiError> {
        if !p.starts_with('/') {
            return Err(bad(format!(
                "{what}: expected a path starting with /, found {p:?}"
            )));
        }
        normalize_path(&p)
            .map(|n| n.into_owned())
            .map_err(|_| bad(format!("{what}: not a valid request path: {p:?}")))
    };
    match (path, prefix) {
        (Some(_), Some(_)) => Err(bad("give path or prefix, not both".into())),
        (Some(p), None) => Ok(Selection::Path(index, normalized("path", p)?)),
        (None, Some(p)) => Ok(Selection::Prefix(index, normalized("prefix", p)?)),
        (None, None) => Ok(Selection::Route(index)),
    }
}
