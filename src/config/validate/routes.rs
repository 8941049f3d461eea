//! The `routes:` section: which requests go to which upstream, and how they are rewritten.

use super::limits::rate_limit;
use super::values::{body_limit, header_name, header_pairs, host_match, request_buffering};
use super::Result;
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::schema::*;
use std::collections::HashMap;

pub(super) fn routes(
    specs: &[RouteSpec],
    names: &HashMap<String, usize>,
    limits: &Limits,
) -> Result<Vec<Route>> {
    if specs.is_empty() {
        return Err(ConfigError::invalid(
            "routes",
            "at least one route is required, e.g. `routes: [{path: /, upstream: NAME}]`",
        ));
    }
    let mut seen: HashMap<(HostMatch, String), usize> = HashMap::new();
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let base = format!("routes[{i}]");
        let host = host_match(&format!("{base}.host"), spec.host.as_deref())?;
        let path = spec.path.clone().unwrap_or_else(|| "/".to_string());
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(ConfigError::invalid(
                format!("{base}.path"),
                format!("expected a path prefix starting with / (no query), found {path:?}"),
            ));
        }
        let upstream = *names.get(&spec.upstream).ok_or_else(|| {
            let mut known: Vec<_> = names.keys().map(String::as_str).collect();
            known.sort_unstable();
            ConfigError::invalid(
                format!("{base}.upstream"),
                format!(
                    "no upstream named {:?} (defined: {})",
                    spec.upstream,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })?;
        if let Some(first) = seen.insert((host.clone(), path.clone()), i) {
            return Err(ConfigError::invalid(
                base,
                format!("same host and path as routes[{first}]"),
            ));
        }
        let (request_headers, response_headers) = match &spec.headers {
            Some(h) => (
                header_edits(&format!("{base}.headers.request"), h.request.as_ref())?,
                header_edits(&format!("{base}.headers.response"), h.response.as_ref())?,
            ),
            None => Default::default(),
        };
        let max_body_bytes = match &spec.max_body_bytes {
            Some(v) => body_limit(&format!("{base}.max_body_bytes"), v)?,
            None => limits.max_body_bytes,
        };
        let request_buffering = match &spec.request_buffering {
            Some(v) => request_buffering(&format!("{base}.request_buffering"), v)?,
            None => limits.request_buffering,
        };
        let rate_limit = match &spec.rate_limit {
            None => RouteRateLimit::Inherit,
            Some(RouteRateLimitSpec::Switch(s)) if s == "off" => RouteRateLimit::Off,
            Some(RouteRateLimitSpec::Switch(s)) => {
                return Err(ConfigError::invalid(
                    format!("{base}.rate_limit"),
                    format!("expected `off` or a map with requests_per_second, found {s:?}"),
                ))
            }
            Some(RouteRateLimitSpec::Limit(r)) => {
                RouteRateLimit::Own(rate_limit(&format!("{base}.rate_limit"), r)?)
            }
        };
        out.push(Route {
            host,
            path,
            upstream,
            strip_prefix: spec.strip_prefix,
            redirect_to_https: spec.redirect_to_https,
            request_headers,
            response_headers,
            max_body_bytes,
            request_buffering,
            rate_limit,
        });
    }
    Ok(out)
}

fn header_edits(base: &str, spec: Option<&HeaderEditsSpec>) -> Result<HeaderEdits> {
    let Some(spec) = spec else {
        return Ok(HeaderEdits::default());
    };
    let remove = spec
        .remove
        .iter()
        .enumerate()
        .map(|(i, n)| header_name(&format!("{base}.remove[{i}]"), n))
        .collect::<Result<_>>()?;
    Ok(HeaderEdits {
        remove,
        set: header_pairs(&format!("{base}.set"), &spec.set)?,
        add: header_pairs(&format!("{base}.add"), &spec.add)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testing::rejects;

    #[test]
    fn rules() {
        rejects(&[
            (
                "routes: []",
                "routes",
                "at least one route is required, e.g. `routes: [{path: /, upstream: NAME}]`",
            ),
            (
                "routes: [{upstream: web}]",
                "routes[0].upstream",
                "no upstream named \"web\" (defined: api)",
            ),
            (
                "routes: [{path: api, upstream: api}]",
                "routes[0].path",
                "expected a path prefix starting with / (no query), found \"api\"",
            ),
            (
                "routes: [{path: '/a?b', upstream: api}]",
                "routes[0].path",
                "expected a path prefix starting with / (no query), found \"/a?b\"",
            ),
            (
                "routes: [{host: API.test, upstream: api}, {host: api.test, path: /, upstream: api}]",
                "routes[1]",
                "same host and path as routes[0]",
            ),
            (
                "routes: [{host: 'a b', upstream: api}]",
                "routes[0].host",
                "expected a host name like api.example.com or *.example.com, found \"a b\"",
            ),
            (
                "routes: [{upstream: api, headers: {request: {set: {'x y': v}}}}]",
                "routes[0].headers.request.set.x y",
                "\"x y\" is not a valid header name",
            ),
            (
                "routes: [{upstream: api, headers: {response: {remove: [ok, 'n o']}}}]",
                "routes[0].headers.response.remove[1]",
                "\"n o\" is not a valid header name",
            ),
            (
                "routes: [{upstream: api, headers: {response: {add: {x-a: \"\\x01\"}}}}]",
                "routes[0].headers.response.add.x-a",
                "\"\\u{1}\" is not a valid header value",
            ),
            (
                "routes: [{upstream: api, rate_limit: on}]",
                "routes[0].rate_limit",
                "expected `off` or a map with requests_per_second, found \"on\"",
            ),
            (
                "routes: [{upstream: api, rate_limit: {requests_per_second: -1}}]",
                "routes[0].rate_limit.requests_per_second",
                "expected a number above 0 (e.g. 10 or 0.5), found -1",
            ),
            (
                "routes: [{upstream: api, redirect_to_https: true}]",
                "routes[0].redirect_to_https",
                "there is no HTTPS listener (with `tls:`) to redirect to",
            ),
        ]);
    }
}
