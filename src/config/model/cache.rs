//! The validated cache and compression settings.

use http::HeaderName;
use std::time::Duration;

/// Default `cache.max_size`.
pub const DEFAULT_CACHE_SIZE: u64 = 256 << 20;
/// Default `cache.max_object_size`.
pub const DEFAULT_CACHE_OBJECT_SIZE: u64 = 8 << 20;
/// Default `cache.lock_timeout`.
pub const DEFAULT_CACHE_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `compression.min_size`.
pub const DEFAULT_COMPRESSION_MIN_SIZE: u64 = 1024;

/// The shared in-memory store (`cache:` at the top level).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheStore {
    /// Most bytes held before the least recently used objects are evicted.
    pub max_size: u64,
    /// Largest body stored.
    pub max_object_size: u64,
    /// Longest wait for another request's fetch of the same object.
    pub lock_timeout: Duration,
}

impl Default for CacheStore {
    fn default() -> Self {
        CacheStore {
            max_size: DEFAULT_CACHE_SIZE,
            max_object_size: DEFAULT_CACHE_OBJECT_SIZE,
            lock_timeout: DEFAULT_CACHE_LOCK_TIMEOUT,
        }
    }
}

/// A route's cache policy (present only where caching is enabled).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteCache {
    /// Freshness of a cacheable response that states none; `None`: such responses are not
    /// stored.
    pub default_ttl: Option<Duration>,
    /// What tells objects apart, in order.
    pub key: Vec<CacheKeyPart>,
    /// How long past expiry a stale object may be served while it is refreshed.
    pub stale_while_revalidate: Duration,
    /// How long past expiry a stale object may be served when the backend fails.
    pub stale_if_error: Duration,
    /// Add `X-Cache-Status` to responses.
    pub status_header: bool,
}

/// One part of a route's cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheKeyPart {
    /// The request's host (lowercase, without port).
    Host,
    /// The normalized request path.
    Path,
    /// The query string as sent.
    Query,
    /// A request header's value (absent and empty are different).
    Header(HeaderName),
    /// A request cookie's value.
    Cookie(String),
}

impl CacheKeyPart {
    /// The part as written in the config (`host`, `header:x-tenant`, ...).
    pub fn spelling(&self) -> String {
        match self {
            CacheKeyPart::Host => "host".into(),
            CacheKeyPart::Path => "path".into(),
            CacheKeyPart::Query => "query".into(),
            CacheKeyPart::Header(h) => format!("header:{h}"),
            CacheKeyPart::Cookie(c) => format!("cookie:{c}"),
        }
    }
}

/// A route's response compression (present only where some encoding is on).
#[derive(Debug, Clone, PartialEq)]
pub struct Compression {
    /// gzip level, `0` for off.
    pub gzip: u32,
    /// Brotli level, `0` for off.
    pub brotli: u32,
    /// zstd level, `0` for off.
    pub zstd: u32,
    /// Smallest body compressed, by `Content-Length`.
    pub min_size: u64,
    /// Media types compressed, lowercase; `text/*` style wildcards end in `/*`. Empty: the
    /// built-in list.
    pub types: Vec<String>,
}
