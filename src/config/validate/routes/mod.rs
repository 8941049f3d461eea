//! The `routes:` section: which requests go to which upstream, and how they are rewritten.

use super::cache::{compression, route_cache};
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
            cache: route_cache(&format!("{base}.cache"), spec.cache.as_ref())?,
            compression: compression(&format!("{base}.compression"), spec.compression.as_ref())?,
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
    use crate::config::validate::testing::{accepts, rejects};

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

    const TWO: &str = "upstreams: {api: {backends: [{addr: '127.0.0.1:3001'}]}, \
                       v2: {backends: [{addr: '127.0.0.1:3002'}]}}\n";

    #[test]
    fn match_rewrite_split_and_mirror_rules() {
        let cases: Vec<(String, &str, &str)> = vec![
            (
                "routes: [{upstream: api, match: {methods: [get]}}]".into(),
                "routes[0].match.methods[0]",
                "methods are case-sensitive: write GET, found \"get\"",
            ),
            (
                "routes: [{upstream: api, match: {methods: [GET, GET]}}]".into(),
                "routes[0].match.methods[1]",
                "GET is listed twice",
            ),
            (
                "routes: [{upstream: api, match: {methods: ['G T']}}]".into(),
                "routes[0].match.methods[0]",
                "\"G T\" is not a valid method name",
            ),
            (
                "routes: [{upstream: api, match: {headers: {'x y': '1'}}}]".into(),
                "routes[0].match.headers.x y",
                "\"x y\" is not a valid header name",
            ),
            (
                "routes: [{upstream: api, match: {headers: {x-v: '~a('}}}]".into(),
                "routes[0].match.headers.x-v",
                "bad regular expression \"a(\": error: unclosed group",
            ),
            (
                "routes: [{upstream: api, match: {headers: {X-A: '1', x-a: '2'}}}]".into(),
                "routes[0].match.headers",
                "header x-a is listed twice (names are case-insensitive)",
            ),
            (
                "routes: [{upstream: api, match: {query: {'a&b': '1'}}}]".into(),
                "routes[0].match.query.a&b",
                "\"a&b\" is not a query parameter name",
            ),
            (
                "routes: [{upstream: api, match: {query: {a: '~['}}}]".into(),
                "routes[0].match.query.a",
                "bad regular expression \"[\": error: unclosed character class",
            ),
            (
                "routes: [{upstream: api, match: {headers: {x-a: '1'}}}, \
                 {upstream: api, match: {headers: {X-A: '1'}}}]"
                    .into(),
                "routes[1]",
                "same host, path and match conditions as routes[0]: no request can tell them \
                 apart, so this route would never be chosen",
            ),
            (
                "routes: [{upstream: api, rewrite: {regex: '^/(', to: '/x'}}]".into(),
                "routes[0].rewrite.regex",
                "bad regular expression \"^/(\": error: unclosed group",
            ),
            (
                "routes: [{upstream: api, rewrite: {regex: '^/a/(.*)', to: 'v1/$1'}}]".into(),
                "routes[0].rewrite.to",
                "expected a path starting with / (e.g. \"/v1/$1\"), found \"v1/$1\"",
            ),
            (
                "routes: [{upstream: api, rewrite: {regex: '^/a/(.*)', to: '/v1/$2'}}]".into(),
                "routes[0].rewrite.to",
                "$2 names no group of the regex (it has 1 numbered groups); write ${1}x to \
                 follow a group with a letter or digit",
            ),
            (
                "routes: [{upstream: api, rewrite: {regex: '^/a/(.*)', to: '/v1/$1x'}}]".into(),
                "routes[0].rewrite.to",
                "$1x names no group of the regex (it has 1 numbered groups); write ${1}x to \
                 follow a group with a letter or digit",
            ),
            (
                "routes: [{upstream: api, rewrite: {regex: '^/a', to: '/b?c=1'}}]".into(),
                "routes[0].rewrite.to",
                "'?' cannot appear in a path (the query is kept as it was), in \"/b?c=1\"",
            ),
            (
                format!(
                    "{TWO}routes: [{{upstream: api, split: [{{upstream: api, weight: 1}}, \
                         {{upstream: v2, weight: 1}}]}}]"
                ),
                "routes[0]",
                "give either `upstream` or `split`, not both",
            ),
            (
                "routes: [{path: /}]".into(),
                "routes[0].upstream",
                "a route needs an `upstream` (or a `split` between several)",
            ),
            (
                "routes: [{split: [{upstream: api, weight: 1}]}]".into(),
                "routes[0].split",
                "a split needs at least two sides (for one group, write `upstream:`)",
            ),
            (
                format!(
                    "{TWO}routes: [{{split: [{{upstream: api, weight: 1}}, \
                         {{upstream: v3, weight: 1}}]}}]"
                ),
                "routes[0].split[1].upstream",
                "no upstream named \"v3\" (defined: api, v2)",
            ),
            (
                format!(
                    "{TWO}routes: [{{split: [{{upstream: api, weight: 1}}, \
                         {{upstream: api, weight: 1}}]}}]"
                ),
                "routes[0].split[1].upstream",
                "\"api\" is already split[0]",
            ),
            (
                format!(
                    "{TWO}routes: [{{split: [{{upstream: api, weight: 1}}, \
                         {{upstream: v2, weight: 10001}}]}}]"
                ),
                "routes[0].split[1].weight",
                "expected an integer from 0 to 10000, found 10001",
            ),
            (
                format!(
                    "{TWO}routes: [{{split: [{{upstream: api, weight: 0}}, \
                         {{upstream: v2, weight: 0}}]}}]"
                ),
                "routes[0].split",
                "every weight is 0: at least one side must take traffic",
            ),
            (
                format!(
                    "{TWO}routes: [{{split: [{{upstream: api, weight: 1}}, \
                         {{upstream: v2, weight: 1}}], split_key: 'cookie:'}}]"
                ),
                "routes[0].split_key",
                "expected client_ip, path, header:NAME, cookie:NAME or query:NAME, found \
                 \"cookie:\"",
            ),
            (
                "routes: [{upstream: api, split_key: client_ip}]".into(),
                "routes[0].split_key",
                "split_key needs a `split` to choose a side of",
            ),
            (
                "routes: [{upstream: api, mirror: {upstream: shadow}}]".into(),
                "routes[0].mirror.upstream",
                "no upstream named \"shadow\" (defined: api)",
            ),
            (
                "routes: [{upstream: api, mirror: {upstream: api, percent: 0}}]".into(),
                "routes[0].mirror.percent",
                "expected a share above 0 and at most 100 (e.g. 10 or 0.5), found 0",
            ),
            (
                "routes: [{upstream: api, mirror: {upstream: api, percent: 101}}]".into(),
                "routes[0].mirror.percent",
                "expected a share above 0 and at most 100 (e.g. 10 or 0.5), found 101",
            ),
            (
                "routes: [{upstream: api, mirror: {upstream: api, max_body_bytes: 2MiB}}]".into(),
                "routes[0].mirror.max_body_bytes",
                "expected a size up to 1MiB (copies are held in memory until sent), found \
                 2097152 bytes",
            ),
            (
                "routes: [{upstream: api, name: 'a b'}]".into(),
                "routes[0].name",
                "expected letters, digits, '-', '_' or '.', found \"a b\"",
            ),
            (
                "routes: [{upstream: api, name: a}, {upstream: api, path: /x, name: a}]".into(),
                "routes[1].name",
                "\"a\" is already the name of routes[0]",
            ),
        ];
        let cases: Vec<(&str, &str, &str)> =
            cases.iter().map(|(s, p, m)| (s.as_str(), *p, *m)).collect();
        rejects(&cases);
    }

    #[test]
    fn routes_told_apart_by_conditions_are_accepted() {
        let config = accepts(&format!(
            "{TWO}routes: [{{path: /api, upstream: api}}, \
             {{path: /api, upstream: v2, match: {{headers: {{x-canary: 'true'}}, methods: [GET]}}}}, \
             {{path: /api, upstream: v2, match: {{methods: [GET], headers: {{x-canary: '~^t'}}}}}}, \
             {{path: /b, split: [{{upstream: api, weight: 95}}, {{upstream: v2, weight: 5}}], \
               split_key: 'cookie:user_id', mirror: {{upstream: v2, percent: 10}}, \
               rewrite: {{regex: '^/b/(?P<rest>.*)$', to: '/v1/${{rest}}'}}}}]"
        ));
        assert_eq!(config.routes.len(), 4);
        assert_eq!(config.routes[1].matchers.count(), 2);
    }
}
