//! The `routes:` section: which requests go to which upstream, and how they are rewritten.

use super::limits::rate_limit;
use super::values::{body_limit, header_name, header_pairs, host_match, request_buffering};
use super::Result;
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::schema::*;
use std::collections::HashMap;

mod destination;
mod matchers;


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
        let name = route_name(&base, spec.name.as_deref(), &out)?;
        let destination = destination::destination(&base, spec, names)?;
        let matchers = matchers::matchers(&format!("{base}.match"), spec.matches.as_ref())?;
        // Routes with the same host, path and conditions: the later one can never be chosen.
        let twin = out.iter().position(|r: &Route| {
            r.host == host && r.path == path && r.matchers.same_as(&matchers)
        });
        if let Some(first) = twin {
            return Err(ConfigError::invalid(
                base,
                format!(
                    "same host, path and match conditions as routes[{first}]: no request can \
                     tell them apart, so this route would never be chosen"
                ),
            ));
        }
        let rewrite = match &spec.rewrite {
            Some(r) => Some(matchers::rewrite(&format!("{base}.rewrite"), r)?),
            None => None,
        };
        let mirror = match &spec.mirror {
            Some(m) => Some(destination::mirror(&format!("{base}.mirror"), m, names)?),
            None => None,
        };
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
            name,
            host,
            path,
            matchers,
            destination,
            rewrite,
            mirror,
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

fn route_name(base: &str, name: Option<&str>, before: &[Route]) -> Result<Option<String>> {
    let Some(name) = name else {
        return Ok(None);
    };
    let path = format!("{base}.name");
    let valid = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if name.is_empty() || !name.chars().all(valid) {
        return Err(ConfigError::invalid(
            path,
            format!("expected letters, digits, '-', '_' or '.', found {name:?}"),
        ));
    }
    if let Some(first) = before.iter().position(|r| r.name.as_deref() == Some(name)) {
        return Err(ConfigError::invalid(
            path,
            format!("{name:?} is already the name of routes[{first}]"),
        ));
    }
    Ok(Some(name.to_string()))
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
                "same host, path and match conditions as routes[0]: no request can tell them \
                 apart, so this route would never be chosen",
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
