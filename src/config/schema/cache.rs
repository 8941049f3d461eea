//! The top-level `cache:` section and a route's `cache:` and `compression:` as written in YAML.

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

/// `cache:` (top level): the in-memory store every route with `cache:` shares.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// Most bytes held, bodies and heads together (`256MiB` by default); least recently used
    /// objects are evicted past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Value>,
    /// Largest response body stored (`8MiB` by default); a larger one is passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_object_size: Option<Value>,
    /// Longest a request waits for another request's fetch of the same object (`5s` by
    /// default) before going to the backend itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_timeout: Option<String>,
}

/// A route's `cache:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCacheSpec {
    /// Cache this route's responses; default true when `cache:` is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How long a response of a cacheable status stays fresh when it says nothing itself
    /// (no `Cache-Control: max-age`, `s-maxage` or `Expires`); default: such responses are
    /// not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_ttl: Option<String>,
    /// What tells objects apart: `host`, `path`, `query`, `header:NAME`, `cookie:NAME`;
    /// default `[host, path, query]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<String>>,
    /// How long past expiry a stale object is served while one request refreshes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_while_revalidate: Option<String>,
    /// How long past expiry a stale object is served when the backend fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_if_error: Option<String>,
    /// Add `X-Cache-Status` to this route's responses; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_header: Option<bool>,
}

/// A route's `compression:`; each encoding is off unless given a level.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionSpec {
    /// gzip level, 1 to 9 (`0` for off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzip: Option<i64>,
    /// Brotli level, 1 to 11 (`0` for off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brotli: Option<i64>,
    /// zstd level, 1 to 19 (`0` for off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zstd: Option<i64>,
    /// Smallest body compressed (by `Content-Length`); default `1KiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<Value>,
    /// Media types compressed (`text/*` matches every text type); default: text, JSON,
    /// JavaScript, XML, SVG, WebAssembly and other known compressible types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
}
