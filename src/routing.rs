//! Route matching: host, then the longest path prefix.
//!
//! Tables are built once from the validated routes. For a request, routes for its exact host
//! are tried first, then `*.suffix` routes (longest suffix first), then catch-all routes; within
//! the first tier that has a matching prefix, the longest prefix wins (config order breaks ties,
//! which validation makes impossible for identical prefixes). Prefixes match whole path
//! segments: `/api` matches `/api`, `/api/` and `/api/users`, not `/apix`; a prefix that ends
//! in `/` matches anything below it.

use crate::config::model::{HostMatch, Route};
use std::collections::HashMap;

/// Precomputed routing tables; holds route indexes into the config's route list.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<String, Vec<(String, usize)>>,
    wildcard: Vec<(String, Vec<(String, usize)>)>,
    any: Vec<(String, usize)>,
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

fn sort_longest_first(v: &mut [(String, usize)]) {
    v.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
}

fn first_match(table: &[(String, usize)], path: &str) -> Option<usize> {
    table
        .iter()
        .find(|(prefix, _)| prefix_matches(prefix, path))
        .map(|(_, i)| *i)
}

impl Router {
    /// Build the tables for these routes.
    pub fn new(routes: &[Route]) -> Self {
        let mut r = Router::default();
        for (i, route) in routes.iter().enumerate() {
            let entry = (route.path.clone(), i);
            match &route.host {
                HostMatch::Any => r.any.push(entry),
                HostMatch::Exact(h) => r.exact.entry(h.clone()).or_default().push(entry),
                HostMatch::Suffix(s) => match r.wildcard.iter_mut().find(|(x, _)| x == s) {
                    Some((_, v)) => v.push(entry),
                    None => r.wildcard.push((s.clone(), vec![entry])),
                },
            }
        }
        r.exact.values_mut().for_each(|v| sort_longest_first(v));
        r.wildcard
            .iter_mut()
            .for_each(|(_, v)| sort_longest_first(v));
        r.wildcard
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        sort_longest_first(&mut r.any);
        r
    }

    /// The route index for a normalized host (see [`normalize_host`]) and a path (no query).
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<usize> {
        if let Some(host) = host {
            if let Some(i) = self.exact.get(host).and_then(|t| first_match(t, path)) {
                return Some(i);
            }
            for (suffix, table) in &self.wildcard {
                if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                    if let Some(i) = first_match(table, path) {
                        return Some(i);
                    }
                }
            }
        }
        first_match(&self.any, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::HeaderEdits;

    fn route(host: HostMatch, path: &str) -> Route {
        Route {
            host,
            path: path.into(),
            upstream: 0,
            strip_prefix: false,
            redirect_to_https: false,
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
            max_body_bytes: None,
            request_buffering: 0,
            rate_limit: Default::default(),
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
        assert_eq!(r.find(None, "/"), Some(0));
        assert_eq!(r.find(None, "/api"), Some(1));
        assert_eq!(r.find(None, "/api/"), Some(1));
        assert_eq!(r.find(None, "/apix"), Some(0));
        assert_eq!(r.find(None, "/api/v2/users"), Some(2));
        assert_eq!(r.find(None, "/api/v20"), Some(1));
        assert_eq!(r.find(None, "/static/a.css"), Some(3));
        assert_eq!(r.find(None, "/static"), Some(0));
    }

    #[test]
    fn host_tiers() {
        let r = Router::new(&[
            route(HostMatch::Any, "/"),
            route(HostMatch::Exact("a.example.com".into()), "/api"),
            route(HostMatch::Suffix(".example.com".into()), "/"),
        ]);
        assert_eq!(r.find(Some("a.example.com"), "/api/x"), Some(1));
        // No exact-host prefix matches: the wildcard tier answers.
        assert_eq!(r.find(Some("a.example.com"), "/other"), Some(2));
        assert_eq!(r.find(Some("b.example.com"), "/api"), Some(2));
        assert_eq!(r.find(Some("example.com"), "/api"), Some(0));
        assert_eq!(r.find(None, "/x"), Some(0));
    }

    #[test]
    fn no_match_without_catch_all() {
        let r = Router::new(&[route(HostMatch::Exact("a".into()), "/api")]);
        assert_eq!(r.find(Some("a"), "/"), None);
        assert_eq!(r.find(Some("b"), "/api"), None);
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
