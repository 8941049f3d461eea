//! Routes: which requests they match, where they send them, and how.

use super::{HashKey, HeaderEdits, RouteRateLimit};
use http::{HeaderName, Method};
use regex::Regex;

/// Largest weight of one side of a split (weights 9999 and 1 send 0.01 % to a canary).
pub const MAX_SPLIT_WEIGHT: i64 = 10_000;

/// Largest request body a mirror copies by default.
pub const DEFAULT_MIRROR_BODY: u64 = 64 * 1024;

/// Which hosts a route matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// Any host (a catch-all route).
    Any,
    /// Exactly this host (lowercase, no port).
    Exact(String),
    /// Any subdomain of this suffix; holds `.example.com` for `*.example.com`.
    Suffix(String),
}

/// A routing rule.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route's name (`name:`), for metrics, logs and the runtime API.
    pub name: Option<String>,
    /// Host to match.
    pub host: HostMatch,
    /// Path prefix, starting with `/`.
    pub path: String,
    /// Conditions beyond host and path (`match:`).
    pub matchers: Matchers,
    /// Where matching requests go: one group or a weighted split.
    pub destination: Destination,
    /// Path rewrite, applied after `strip_prefix`.
    pub rewrite: Option<Rewrite>,
    /// Copies of requests to another group.
    pub mirror: Option<Mirror>,
    /// Remove `path` before forwarding.
    pub strip_prefix: bool,
    /// On plain listeners, redirect to HTTPS.
    pub redirect_to_https: bool,
    /// Changes to the upstream request.
    pub request_headers: HeaderEdits,
    /// Changes to the downstream response.
    pub response_headers: HeaderEdits,
    /// Largest request body (413 above), `None` for no limit: the route's own setting, else
    /// `limits.max_body_bytes`.
    pub max_body_bytes: Option<u64>,
    /// Largest request body read whole before a backend is chosen, `0` to stream: the
    /// route's own setting, else `limits.request_buffering`.
    pub request_buffering: u64,
    /// The route's rate limit.
    pub rate_limit: RouteRateLimit,
    /// Response caching; `None` where the route does not cache.
    pub cache: Option<super::RouteCache>,
    /// Response compression; `None` where the route does not compress.
    pub compression: Option<super::Compression>,
}

impl Route {
    /// Every upstream group the route sends requests to (not its mirror), in config order.
    pub fn upstreams(&self) -> impl Iterator<Item = usize> + '_ {
        let (one, split) = match &self.destination {
            Destination::Upstream(u) => (Some(*u), &[][..]),
            Destination::Split(s) => (None, &s.sides[..]),
        };
        one.into_iter().chain(split.iter().map(|s| s.upstream))
    }
}

/// A route's conditions beyond host and path; all must hold. Empty lists match anything.
#[derive(Debug, Clone, Default)]
pub struct Matchers {
    /// Methods, any of which matches; empty for any method.
    pub methods: Vec<Method>,
    /// Headers (lowercase names, sorted), each of which must match.
    pub headers: Vec<(HeaderName, ValueMatch)>,
    /// Query parameters (sorted by name), each of which must match.
    pub query: Vec<(String, ValueMatch)>,
}

impl Matchers {
    /// How many conditions there are: a request that meets more of them is more specific.
    pub fn count(&self) -> usize {
        usize::from(!self.methods.is_empty()) + self.headers.len() + self.query.len()
    }

    /// Whether no request can tell these conditions from `other`'s (the same methods, names
    /// and values, in any order).
    pub fn same_as(&self, other: &Matchers) -> bool {
        fn methods(m: &Matchers) -> Vec<&str> {
            let mut v: Vec<&str> = m.methods.iter().map(Method::as_str).collect();
            v.sort_unstable();
            v.dedup();
            v
        }
        let same_values = |a: &ValueMatch, b: &ValueMatch| a.text() == b.text();
        methods(self) == methods(other)
            && self.headers.len() == other.headers.len()
            && self
                .headers
                .iter()
                .zip(&other.headers)
                .all(|(a, b)| a.0 == b.0 && same_values(&a.1, &b.1))
            && self.query.len() == other.query.len()
            && self
                .query
                .iter()
                .zip(&other.query)
                .all(|(a, b)| a.0 == b.0 && same_values(&a.1, &b.1))
    }
}

/// How a header or query value is matched.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// Present, with any value (`"*"`).
    Present,
    /// Exactly this value (case-sensitive).
    Exact(String),
    /// A regular expression found anywhere in the value (`~regex`; anchor with `^`/`$`).
    Regex(Regex),
}

impl ValueMatch {
    /// The condition as written in the config.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            ValueMatch::Present => "*".into(),
            ValueMatch::Exact(v) => v.as_str().into(),
            ValueMatch::Regex(r) => format!("~{}", r.as_str()).into(),
        }
    }

    /// Whether `value` meets the condition.
    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Present => true,
            ValueMatch::Exact(v) => v.as_bytes() == value,
            ValueMatch::Regex(r) => std::str::from_utf8(value).is_ok_and(|v| r.is_match(v)),
        }
    }
}

/// A path rewrite: where `regex` matches the path, it is replaced by `to`.
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// The regular expression.
    pub regex: Regex,
    /// The replacement, with `$1` / `${name}` for capture groups.
    pub to: String,
}

/// Where a route sends the requests it matches.
#[derive(Debug, Clone)]
pub enum Destination {
    /// One group (index into `Config::upstreams`).
    Upstream(usize),
    /// A weighted choice between groups.
    Split(Split),
}

/// A weighted choice between upstream groups.
#[derive(Debug, Clone)]
pub struct Split {
    /// The sides, in config order (at least two, at least one with a weight above 0).
    pub sides: Vec<SplitSide>,
    /// What keeps one client on one side; `None` chooses each request on its own.
    pub key: Option<HashKey>,
}

/// One side of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSide {
    /// The group (index into `Config::upstreams`).
    pub upstream: usize,
    /// Its weight, relative to the others'.
    pub weight: u32,
}

/// Copies of a route's requests, sent to another group; their answers are discarded.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    /// The group (index into `Config::upstreams`).
    pub upstream: usize,
    /// Share of requests copied, in percent (above 0, at most 100).
    pub percent: f64,
    /// Largest request body copied; requests with larger bodies are not mirrored.
    pub max_body_bytes: u64,
}
