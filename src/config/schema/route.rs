//! The `routes:` section as written in YAML.

use super::{CompressionSpec, HeaderRulesSpec, RouteCacheSpec, RouteRateLimitSpec};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;
use std::collections::BTreeMap;

/// A routing rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// A name for the route (letters, digits, `-`, `_`, `.`), unique: it labels the route's
    /// metrics and names it in the runtime API; default: host and path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Host to match (`api.example.com` or `*.example.com`); any host when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path prefix, matched on whole segments; default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Name of the upstream group that serves this route (or `split`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Conditions beyond host and path, all of which must hold.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<MatchSpec>,
    /// Rewrite the (normalized, prefix-stripped) path with a regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<RewriteSpec>,
    /// A weighted choice between upstream groups (instead of `upstream`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<SplitSideSpec>,
    /// What keeps one client on one side of `split` (`cookie:NAME`, `header:NAME`,
    /// `query:NAME`, `client_ip`); default: none, each request is chosen on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_key: Option<String>,
    /// Send a copy of a share of the requests to another group; its answers are discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorSpec>,
    /// Remove `path` from the request path before forwarding; default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strip_prefix: bool,
    /// On plain HTTP listeners, answer with a 308 redirect to HTTPS instead; default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redirect_to_https: bool,
    /// Header changes for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderRulesSpec>,
    /// Largest request body on this route (`100MiB`, `0` for no limit); default
    /// `limits.max_body_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<Value>,
    /// Largest request body read whole before a backend is chosen (`16KiB`, at most
    /// `64KiB`; `0` or `off` to stream); default `limits.request_buffering`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_buffering: Option<Value>,
    /// This route's own per-client rate limit, or `off`; default the top-level `rate_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RouteRateLimitSpec>,
    /// Store this route's responses in the shared cache (RFC 9111 rules); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<RouteCacheSpec>,
    /// Compress this route's responses for clients that accept it; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<CompressionSpec>,
}

/// `match:`: conditions on the request beyond host and path; all must hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Request methods, any of which matches (`[GET, HEAD]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Header name to value: an exact value, `~regex`, or `"*"` for present.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Query parameter name to value: an exact value, `~regex`, or `"*"` for present.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
}

/// `rewrite:`: replace the path with `to` where `regex` matches (`$1`, `${name}` for groups).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteSpec {
    /// The regular expression, matched against the path (no query).
    pub regex: String,
    /// The replacement.
    pub to: String,
}

/// One side of a `split:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSideSpec {
    /// The upstream group.
    pub upstream: String,
    /// Its share, relative to the other sides' weights (`0` for none).
    pub weight: i64,
}

/// `mirror:`: where copies of requests go.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorSpec {
    /// The upstream group that receives the copies.
    pub upstream: String,
    /// Share of the route's requests copied, in percent; default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Largest request body copied (`64KiB` by default); a request with a larger body is not
    /// mirrored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<Value>,
}
