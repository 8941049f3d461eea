//! The top-level `cache:` section and a route's `cache:` and `compression:`.

use super::values::{header_name, int_in};
use super::Result;
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::schema::*;
use crate::config::units::{parse_duration, parse_positive_duration, parse_size};

/// Smallest `cache.max_size` accepted: room for a few objects and their heads.
const MIN_CACHE_SIZE: u64 = 64 << 10;

pub(super) fn cache_store(spec: Option<&CacheSpec>) -> Result<CacheStore> {
    let mut store = CacheStore::default();
    let Some(spec) = spec else {
        return Ok(store);
    };
    if let Some(v) = &spec.max_size {
        store.max_size = parse_size("cache.max_size", v)?;
        if store.max_size < MIN_CACHE_SIZE {
            return Err(ConfigError::invalid(
                "cache.max_size",
                format!("expected at least 64KiB, found {} bytes", store.max_size),
            ));
        }
    }
    if let Some(v) = &spec.max_object_size {
        store.max_object_size = parse_size("cache.max_object_size", v)?;
        if store.max_object_size == 0 {
            return Err(ConfigError::invalid(
                "cache.max_object_size",
                "expected a size above zero",
            ));
        }
    }
    if spec.max_object_size.is_none() {
        // The default object size never exceeds a small store.
        store.max_object_size = store.max_object_size.min(store.max_size);
    }
    if store.max_object_size > store.max_size {
        return Err(ConfigError::invalid(
            "cache.max_object_size",
            format!(
                "{} bytes is larger than cache.max_size ({} bytes): no such object could be kept",
                store.max_object_size, store.max_size
            ),
        ));
    }
    if let Some(t) = &spec.lock_timeout {
        store.lock_timeout = parse_positive_duration("cache.lock_timeout", t)?;
    }
    Ok(store)
}

/// A route's cache policy; `None` when the route does not cache.
pub(super) fn route_cache(base: &str, spec: Option<&RouteCacheSpec>) -> Result<Option<RouteCache>> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    if spec.enabled == Some(false) {
        return Ok(None);
    }
    let default_ttl = match &spec.default_ttl {
        Some(t) => Some(parse_positive_duration(&format!("{base}.default_ttl"), t)?),
        None => None,
    };
    let key = match &spec.key {
        Some(parts) => cache_key(&format!("{base}.key"), parts)?,
        None => vec![CacheKeyPart::Host, CacheKeyPart::Path, CacheKeyPart::Query],
    };
    let grace = |name: &str, v: &Option<String>| match v {
        Some(t) => parse_duration(&format!("{base}.{name}"), t),
        None => Ok(std::time::Duration::ZERO),
    };
    Ok(Some(RouteCache {
        default_ttl,
        key,
        stale_while_revalidate: grace("stale_while_revalidate", &spec.stale_while_revalidate)?,
        stale_if_error: grace("stale_if_error", &spec.stale_if_error)?,
        status_header: spec.status_header.unwrap_or(true),
    }))
}

fn cache_key(path: &str, parts: &[String]) -> Result<Vec<CacheKeyPart>> {
    let mut out: Vec<CacheKeyPart> = Vec::with_capacity(parts.len());
    for (i, text) in parts.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let part = match text.split_once(':') {
            None => match text.as_str() {
                "host" => CacheKeyPart::Host,
                "path" => CacheKeyPart::Path,
                "query" => CacheKeyPart::Query,
                _ => return Err(bad_key_part(&at, text)),
            },
            Some(("header", name)) => CacheKeyPart::Header(header_name(&at, name)?),
            Some(("cookie", name)) if is_token(name) => CacheKeyPart::Cookie(name.to_string()),
            Some(("cookie", name)) => {
                return Err(ConfigError::invalid(
                    at,
                    format!(
                        "expected a cookie name (letters, digits, !#$%&'*+-.^_`|~), found {name:?}"
                    ),
                ))
            }
            Some(_) => return Err(bad_key_part(&at, text)),
        };
        if out.contains(&part) {
            return Err(ConfigError::invalid(
                at,
                format!("{text:?} is listed twice"),
            ));
        }
        out.push(part);
    }
    if !out.contains(&CacheKeyPart::Path) {
        return Err(ConfigError::invalid(
            path,
            "the key must include `path`: without it every path of the route would share one \
             cached object",
        ));
    }
    Ok(out)
}

fn bad_key_part(at: &str, text: &str) -> ConfigError {
    ConfigError::invalid(
        at,
        format!("expected host, path, query, header:NAME or cookie:NAME, found {text:?}"),
    )
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A route's compression; `None` when the route does not compress.
pub(super) fn compression(
    base: &str,
    spec: Option<&CompressionSpec>,
) -> Result<Option<Compression>> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let level = |name: &str, v: Option<i64>, max: i64| -> Result<u32> {
        match v {
            Some(v) => Ok(int_in(&format!("{base}.{name}"), v, 0..=max)? as u32),
            None => Ok(0),
        }
    };
    let gzip = level("gzip", spec.gzip, 9)?;
    let brotli = level("brotli", spec.brotli, 11)?;
    let zstd = level("zstd", spec.zstd, 19)?;
    if gzip == 0 && brotli == 0 && zstd == 0 {
        return Err(ConfigError::invalid(
            base,
            "no encoding is on: give gzip, brotli or zstd a level, e.g. `{gzip: 6}`",
        ));
    }
    let min_size = match &spec.min_size {
        Some(v) => parse_size(&format!("{base}.min_size"), v)?,
        None => DEFAULT_COMPRESSION_MIN_SIZE,
    };
    let mut types = Vec::with_capacity(spec.types.len());
    for (i, t) in spec.types.iter().enumerate() {
        let lower = t.trim().to_ascii_lowercase();
        let valid = lower
            .split_once('/')
            .is_some_and(|(a, b)| is_token(a) && (b == "*" || is_token(b)));
        if !valid {
            return Err(ConfigError::invalid(
                format!("{base}.types[{i}]"),
                format!("expected a media type like text/html or text/*, found {t:?}"),
            ));
        }
        types.push(lower);
    }
    Ok(Some(Compression {
        gzip,
        brotli,
        zstd,
        min_size,
        types,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(yaml: &str) -> Result<Option<RouteCache>> {
        let spec: RouteCacheSpec = serde_yaml::from_str(yaml).unwrap();
        route_cache("routes[0].cache", Some(&spec))
    }

    fn comp(yaml: &str) -> Result<Option<Compression>> {
        let spec: CompressionSpec = serde_yaml::from_str(yaml).unwrap();
        compression("routes[0].compression", Some(&spec))
    }

    fn store(yaml: &str) -> Result<CacheStore> {
        let spec: CacheSpec = serde_yaml::from_str(yaml).unwrap();
        cache_store(Some(&spec))
    }

    #[test]
    fn defaults_apply_when_keys_are_absent() {
        let c = route("{}").unwrap().unwrap();
        assert_eq!(c.default_ttl, None);
        assert_eq!(
            c.key,
            vec![CacheKeyPart::Host, CacheKeyPart::Path, CacheKeyPart::Query]
        );
        assert!(c.status_header);
        assert!(route("{enabled: false, default_ttl: 60s}")
            .unwrap()
            .is_none());
        assert_eq!(store("{}").unwrap(), CacheStore::default());
        assert_eq!(store("{max_size: 1MiB}").unwrap().max_object_size, 1 << 20);
    }

    #[test]
    fn a_full_route_cache_is_read() {
        let c = route(
            "{default_ttl: 60s, key: [host, path, query, 'header:X-Tenant', 'cookie:lang'], \
             stale_while_revalidate: 10s, stale_if_error: 5m, status_header: false}",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.default_ttl, Some(std::time::Duration::from_secs(60)));
        assert_eq!(c.key[3].spelling(), "header:x-tenant");
        assert_eq!(c.key[4], CacheKeyPart::Cookie("lang".into()));
        assert_eq!(c.stale_if_error, std::time::Duration::from_secs(300));
        assert!(!c.status_header);
    }

    #[test]
    fn bad_values_name_their_key_path() {
        let cases: &[(&str, &str)] = &[
            ("{key: [host, query]}", "routes[0].cache.key"),
            ("{key: [path, path]}", "routes[0].cache.key[1]"),
            ("{key: [path, 'cookie:a b']}", "routes[0].cache.key[1]"),
            ("{key: [path, 'header:']}", "routes[0].cache.key[1]"),
            ("{key: [path, method]}", "routes[0].cache.key[1]"),
            ("{default_ttl: 0s}", "routes[0].cache.default_ttl"),
            ("{stale_if_error: soon}", "routes[0].cache.stale_if_error"),
        ];
        for (yaml, at) in cases {
            let e = route(yaml).unwrap_err();
            assert_eq!(e.path, *at, "{yaml}: {e}");
        }
        let cases: &[(&str, &str)] = &[
            ("{gzip: 10}", "routes[0].compression.gzip"),
            ("{brotli: 12}", "routes[0].compression.brotli"),
            ("{zstd: 20}", "routes[0].compression.zstd"),
            ("{gzip: 0}", "routes[0].compression"),
            ("{min_size: 1KiB}", "routes[0].compression"),
            (
                "{gzip: 6, min_size: lots}",
                "routes[0].compression.min_size",
            ),
            ("{gzip: 6, types: [html]}", "routes[0].compression.types[0]"),
        ];
        for (yaml, at) in cases {
            let e = comp(yaml).unwrap_err();
            assert_eq!(e.path, *at, "{yaml}: {e}");
        }
        let cases: &[(&str, &str)] = &[
            ("{max_size: 1KiB}", "cache.max_size"),
            (
                "{max_size: 1MiB, max_object_size: 2MiB}",
                "cache.max_object_size",
            ),
            ("{max_object_size: 0}", "cache.max_object_size"),
            ("{lock_timeout: 0s}", "cache.lock_timeout"),
        ];
        for (yaml, at) in cases {
            let e = store(yaml).unwrap_err();
            assert_eq!(e.path, *at, "{yaml}: {e}");
        }
    }

    #[test]
    fn compression_levels_and_types_are_read() {
        let c = comp(
            "{gzip: 6, brotli: 4, zstd: 3, min_size: 2KiB, types: [Text/*, application/json]}",
        )
        .unwrap()
        .unwrap();
        assert_eq!((c.gzip, c.brotli, c.zstd, c.min_size), (6, 4, 3, 2048));
        assert_eq!(c.types, vec!["text/*", "application/json"]);
        assert_eq!(comp("{zstd: 3}").unwrap().unwrap().min_size, 1024);
    }
}
