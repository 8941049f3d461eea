//! Route matching: host, then the longest path prefix, then the most conditions.
//!
//! Tables are built once from the validated routes. For a request, routes for its exact host
//! are tried first, then `*.suffix` routes (longest suffix first), then catch-all routes; the
//! first tier that has a matching route answers. Within a tier the longest prefix wins; among
//! routes with the same prefix, the one with more `match:` conditions (a method list counts
//! as one, each header and query parameter as one) is tried first, then config order. A route
//! whose conditions the request does not meet is passed over for the next. Prefixes match
//! whole path segments: `/api` matches `/api`, `/api/` and `/api/users`, not `/apix`; a prefix
//! that ends in `/` matches anything below it.

pub mod conditions;
pub mod split;

use crate::config::model::{HostMatch, Matchers, Route};
use pingora_http::RequestHeader;
use std::collections::HashMap;

/// One route in a tier's table: its prefix, its index, and whether it has conditions.
#[derive(Debug, Clone)]
struct Entry {
    prefix: String,
    route: usize,
    conditions: usize,
}

/// Precomputed routing tables; holds route indexes into the config's route list.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<String, Vec<Entry>>,
    wildcard: Vec<(String, Vec<Entry>)>,
    any: Vec<Entry>,
    /// Each route's conditions, by route index.
    matchers: Vec<Matchers>,
}

/// Whether `prefix` matches `path` on segment boundaries.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/')
            || path.len() == prefix.len()
            || path.as_bytes()[prefix.len()] == b'/')
}

/// The path after removing a matched `prefix`, always starting with `/`. A prefix's trailing
/// `/` is the start of what remains, so `/api/` and `/api` strip `/api//x` alike, to `//x`.
pub fn strip_prefix<'a>(prefix: &str, path: &'a str) -> std::borrow::Cow<'a, str> {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    let rest = path.get(prefix.len()..).unwrap_or("");
    if rest.starts_with('/') {
        rest.into()
    } else {
        format!("/{rest}").into()
    }
}

/// The host of a Host header or authority: lowercase, without port, without a trailing dot.
pub fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or(rest)
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        host.to_ascii_lowercase().into()
    } else {
        host.into()
    }
}

/// Longest prefix first, then most conditions, then config order.
fn sort_most_specific_first(v: &mut [Entry]) {
    v.sort_by(|a, b| {
        b.prefix
            .len()
            .cmp(&a.prefix.len())
            .then(b.conditions.cmp(&a.conditions))
            .then(a.route.cmp(&b.route))
    });
}

impl Router {
    /// Build the tables for these routes.
    pub fn new(routes: &[Route]) -> Self {
        let mut r = Router::default();
        for (i, route) in routes.iter().enumerate() {
            let entry = Entry {
                prefix: route.path.clone(),
                route: i,
                conditions: route.matchers.count(),
            };
            match &route.host {
                HostMatch::Any => r.any.push(entry),
                HostMatch::Exact(h) => r.exact.entry(h.clone()).or_default().push(entry),
                HostMatch::Suffix(s) => match r.wildcard.iter_mut().find(|(x, _)| x == s) {
                    Some((_, v)) => v.push(entry),
                    None => r.wildcard.push((s.clone(), vec![entry])),
                },
            }
            r.matchers.push(route.matchers.clone());
        }
        r.exact
            .values_mut()
            .for_each(|v| sort_most_specific_first(v));
        r.wildcard
            .iter_mut()
            .for_each(|(_, v)| sort_most_specific_first(v));
        r.wildcard
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        sort_most_specific_first(&mut r.any);
        r
    }

    /// The route index for a request: its normalized host (see [`normalize_host`]), its path
    /// (no query) and its head, for the routes' conditions.
    pub fn find(&self, host: Option<&str>, path: &str, req: &RequestHeader) -> Option<usize> {
        if let Some(host) = host {
            if let Some(table) = self.exact.get(host) {
                if let Some(i) = self.first_match(table, path, req) {
                    return Some(i);
                }
            }
            for (suffix, table) in &self.wildcard {
                if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                    if let Some(i) = self.first_match(table, path, req) {
                        return Some(i);
                    }
                }
            }
        }
        self.first_match(&self.any, path, req)
    }

    fn first_match(&self, table: &[Entry], path: &str, req: &RequestHeader) -> Option<usize> {
        table
            .iter()
            .find(|e| {
                prefix_matches(&e.prefix, path)
                    && (e.conditions == 0 || conditions::holds(&self.matchers[e.route], req))
            })
            .map(|e| e.route)
    }

    /// Every route in the order [`find`](Self::find) tries them for `host`: the tiers that
    /// apply to the host, each most specific first. What `fulcrum route` walks to explain.
    pub fn candidates(&self, host: Option<&str>) -> Vec<usize> {
        let mut out = Vec::new();
        if let Some(host) = host {
            if let Some(table) = self.exact.get(host) {
                out.extend(table.iter().map(|e| e.route));
            }
            for (suffix, table) in &self.wildcard {
                if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                    out.extend(table.iter().map(|e| e.route));
                }
            }
        }
        out.extend(self.any.iter().map(|e| e.route));
        out
    }

    /// The tables, in the order a request meets them: exact hosts (by name), wildcard suffixes
    /// (longest first), then catch-all; each with its routes in the order they are tried.
    /// What `fulcrum -t` prints as the routing plan.
    pub fn tiers(&self) -> Vec<(Tier, Vec<usize>)> {
        let routes = |t: &[Entry]| t.iter().map(|e| e.route).collect::<Vec<_>>();
        let mut exact: Vec<_> = self.exact.iter().collect();
        exact.sort_by(|a, b| a.0.cmp(b.0));
        let mut out: Vec<(Tier, Vec<usize>)> = exact
            .into_iter()
            .map(|(h, t)| (Tier::Exact(h.clone()), routes(t)))
            .collect();
        out.extend(
            self.wildcard
                .iter()
                .map(|(s, t)| (Tier::Suffix(s.clone()), routes(t))),
        );
        if !self.any.is_empty() {
            out.push((Tier::Any, routes(&self.any)));
        }
        out
    }
}

/// One table of the router: the routes of one exact host, of one wildcard suffix, or the
/// catch-all routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tier {
    /// Routes for exactly this host.
    Exact(String),
    /// Routes for subdomains of this suffix (`.example.com` for `*.example.com`).
    Suffix(String),
    /// Routes for any host.
    Any,
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tier::Exact(h) => write!(f, "host {h}"),
            Tier::Suffix(s) => write!(f, "host *{s}"),
            Tier::Any => write!(f, "any host"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{Destination, HeaderEdits, ValueMatch};

    fn route(host: HostMatch, path: &str) -> Route {
        Route {
            name: None,
            host,
            path: path.into(),
            matchers: Matchers::default(),
            destination: Destination::Upstream(0),
            rewrite: None,
            mirror: None,
            strip_prefix: false,
            redirect_to_https: false,
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
            max_body_bytes: None,
            request_buffering: 0,
            rate_limit: Default::default(),
            cache: None,
            compression: None,
        }
    }

    #[test]
    fn segments_and_longest_prefix() {
        let r = Router::new(&[
            route(HostMatch::Any, "/"),
            route(HostMatch::Any, "/api"),
            route(HostMatch::Any, "/api/v2"),
            route(HostMatch::Any, "/static/"),
        ]);
        let find = |p: &str| r.find(None, p, &get(p));
        assert_eq!(find("/"), Some(0));
        assert_eq!(find("/api"), Some(1));
        assert_eq!(find("/api/"), Some(1));
        assert_eq!(find("/apix"), Some(0));
        assert_eq!(find("/api/v2/users"), Some(2));
        assert_eq!(find("/api/v20"), Some(1));
        assert_eq!(find("/static/a.css"), Some(3));
        assert_eq!(find("/static"), Some(0));
    }

    #[test]
    fn host_tiers() {
        let r = Router::new(&[
            route(HostMatch::Any, "/"),
            route(HostMatch::Exact("a.example.com".into()), "/api"),
            route(HostMatch::Suffix(".example.com".into()), "/"),
        ]);
        let find = |h: Option<&str>, p: &str| r.find(h, p, &get(p));
        assert_eq!(find(Some("a.example.com"), "/api/x"), Some(1));
        // No exact-host prefix matches: the wildcard tier answers.
        assert_eq!(find(Some("a.example.com"), "/other"), Some(2));
        assert_eq!(find(Some("b.example.com"), "/api"), Some(2));
        assert_eq!(find(Some("example.com"), "/api"), Some(0));
        assert_eq!(find(None, "/x"), Some(0));
    }

    #[test]
    fn no_match_without_catch_all() {
        let r = Router::new(&[route(HostMatch::Exact("a".into()), "/api")]);
        assert_eq!(r.find(Some("a"), "/", &get("/")), None);
        assert_eq!(r.find(Some("b"), "/api", &get("/api")), None);
    }

    fn get(path: &str) -> RequestHeader {
        RequestHeader::build("GET", path.as_bytes(), None).unwrap()
    }

    fn with_header(mut r: Route, name: &'static str, value: &str) -> Route {
        let name = http::HeaderName::from_static(name);
        r.matchers
            .headers
            .push((name, ValueMatch::Exact(value.into())));
        r.matchers
            .headers
            .sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        r
    }

    #[test]
    fn conditions_break_ties_within_a_prefix_then_config_order() {
        let mut post_only = route(HostMatch::Any, "/api");
        post_only.matchers.methods = vec![http::Method::POST];
        let r = Router::new(&[
            route(HostMatch::Any, "/api"),
            with_header(route(HostMatch::Any, "/api"), "x-canary", "true"),
            with_header(
                with_header(route(HostMatch::Any, "/api"), "x-canary", "true"),
                "x-beta",
                "1",
            ),
            post_only,
            with_header(route(HostMatch::Any, "/api/v1"), "x-none", "1"),
        ]);
        let mut req = get("/api/v1/x");
        assert_eq!(r.find(None, "/api/v1/x", &req), Some(0));
        req.insert_header("x-canary", "true").unwrap();
        assert_eq!(r.find(None, "/api/v1/x", &req), Some(1));
        req.insert_header("x-beta", "1").unwrap();
        assert_eq!(r.find(None, "/api/v1/x", &req), Some(2));
        // A longer prefix beats more conditions.
        req.insert_header("x-none", "1").unwrap();
        assert_eq!(r.find(None, "/api/v1/x", &req), Some(4));
        // One condition each: config order (the header route comes first).
        let mut post = RequestHeader::build("POST", b"/api", None).unwrap();
        post.insert_header("x-canary", "true").unwrap();
        assert_eq!(r.find(None, "/api", &post), Some(1));
        post.remove_header("x-canary");
        assert_eq!(r.find(None, "/api", &post), Some(3));
        assert_eq!(r.candidates(None), vec![4, 2, 1, 3, 0]);
    }

    #[test]
    fn tiers_list_exact_then_wildcard_then_any() {
        let r = Router::new(&[
            route(HostMatch::Any, "/"),
            route(HostMatch::Exact("b.example.com".into()), "/"),
            route(HostMatch::Suffix(".example.com".into()), "/"),
            route(HostMatch::Exact("a.example.com".into()), "/"),
            route(HostMatch::Exact("a.example.com".into()), "/api"),
            route(HostMatch::Suffix(".x.example.com".into()), "/"),
        ]);
        assert_eq!(
            r.tiers(),
            vec![
                (Tier::Exact("a.example.com".into()), vec![4, 3]),
                (Tier::Exact("b.example.com".into()), vec![1]),
                (Tier::Suffix(".x.example.com".into()), vec![5]),
                (Tier::Suffix(".example.com".into()), vec![2]),
                (Tier::Any, vec![0]),
            ]
        );
    }

    #[test]
    fn an_unmet_condition_falls_through_to_the_next_tier() {
        let r = Router::new(&[
            route(HostMatch::Any, "/"),
            with_header(route(HostMatch::Exact("a".into()), "/"), "x-canary", "true"),
        ]);
        assert_eq!(r.find(Some("a"), "/", &get("/")), Some(0));
    }

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:8080"), "::1");
        assert_eq!(normalize_host("localhost"), "localhost");
    }

    #[test]
    fn stripping() {
        assert_eq!(strip_prefix("/api", "/api/users"), "/users");
        assert_eq!(strip_prefix("/api", "/api"), "/");
        assert_eq!(strip_prefix("/api/", "/api/users"), "/users");
        assert_eq!(strip_prefix("/", "/x"), "/x");
        assert_eq!(strip_prefix("/api/", "/api/"), "/");
        // Found by fuzz/ (routes): the trailing `/` of a prefix took the path's own `/` with it.
        assert_eq!(strip_prefix("/api/", "/api//x"), "//x");
        assert_eq!(strip_prefix("/api", "/api//x"), "//x");
    }
}
