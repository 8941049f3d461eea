//! What may be cached (RFC 9111): which requests look in the cache, which responses are
//! stored and for how long, and which request headers a stored response varies on.

use crate::config::model::RouteCache;
use http::{header, Method, StatusCode};
use pingora_cache::cache_control::{CacheControl, InterpretCacheControl};
use pingora_cache::filters::resp_cacheable;
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheMeta, CacheMetaDefaults, NoCacheReason, RespCacheable, VarianceBuilder};
use pingora_http::{RequestHeader, ResponseHeader};
use std::time::{Duration, SystemTime};

/// Why a request on a caching route does not use the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// Only GET and HEAD are cached.
    Method,
    /// A request with credentials is answered by the backend alone (like Varnish): its
    /// answer may be for this user only.
    Authorization,
    /// Protocol upgrades (WebSocket) are never cached.
    Upgrade,
}

/// Whether `req` may be answered from (and fill) the cache; `Err` names why not.
pub fn request_eligible(req: &RequestHeader, upgrade: bool) -> Result<(), Bypass> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(Bypass::Method);
    }
    if upgrade {
        return Err(Bypass::Upgrade);
    }
    if req.headers.contains_key(header::AUTHORIZATION) {
        return Err(Bypass::Authorization);
    }
    Ok(())
}

/// Statuses a response may be stored for without explicit freshness (RFC 9110 §15.1,
/// "heuristically cacheable"), when the route has a `default_ttl`.
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// A marker freshness for heuristically cacheable statuses; replaced by the route's
/// `default_ttl` (Pingora's defaults take a plain function, which cannot carry it).
fn marker_ttl(status: StatusCode) -> Option<Duration> {
    heuristically_cacheable(status).then_some(Duration::from_secs(1))
}

/// Whether and how long `resp` may be stored, by RFC 9111: `Cache-Control` (`no-store`,
/// `private`, `no-cache`, `max-age`, `s-maxage`, `must-revalidate`), `Expires`, the route's
/// `default_ttl` when the response states no freshness. Responses that set a cookie, vary on
/// everything (`Vary: *`) or are partial are never stored. The response's own
/// `stale-while-revalidate` / `stale-if-error` win over the route's.
pub fn response_cacheable(resp: &ResponseHeader, policy: &RouteCache) -> RespCacheable {
    let never = RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    if resp.status == StatusCode::PARTIAL_CONTENT
        || resp.status == StatusCode::NOT_MODIFIED
        || resp.headers.contains_key(header::SET_COOKIE)
        || varies_on_everything(resp)
    {
        return never;
    }
    let cc = CacheControl::from_resp_headers(resp);
    let explicit = cc.as_ref().and_then(|c| c.fresh_duration()).is_some()
        || resp.headers.contains_key(header::EXPIRES);
    let default_ttl = match (explicit, policy.default_ttl) {
        (true, _) => None,
        (false, Some(ttl)) => Some(ttl),
        (false, None) => return never,
    };
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    let defaults = CacheMetaDefaults::new(
        marker_ttl,
        secs(policy.stale_while_revalidate),
        secs(policy.stale_if_error),
    );
    match resp_cacheable(cc.as_ref(), resp.clone(), false, &defaults) {
        RespCacheable::Cacheable(meta) => match default_ttl {
            None => RespCacheable::Cacheable(meta),
            Some(ttl) => RespCacheable::Cacheable(with_freshness(meta, ttl)),
        },
        other => other,
    }
}

/// `meta`, fresh for `ttl` from its creation.
fn with_freshness(meta: CacheMeta, ttl: Duration) -> CacheMeta {
    let created = meta.created();
    let fresh_until = created.checked_add(ttl).unwrap_or(SystemTime::UNIX_EPOCH);
    CacheMeta::new(
        fresh_until,
        created,
        meta.stale_while_revalidate_sec(),
        meta.stale_if_error_sec(),
        meta.response_header_copy(),
    )
}

fn varies_on_everything(resp: &ResponseHeader) -> bool {
    vary_names(resp).any(|n| n == "*")
}

/// The header names a response's `Vary` lists, trimmed (case as sent).
fn vary_names(resp: &ResponseHeader) -> impl Iterator<Item = &str> {
    resp.headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
}

/// The variance of `req` for a stored response `meta`: a hash of the values of the request
/// headers its `Vary` names (absent and empty differ); `None` when it varies on nothing.
pub fn variance(meta: &CacheMeta, req: &RequestHeader) -> Option<HashBinary> {
    let mut names: Vec<String> = vary_names(meta.response_header())
        .map(|n| n.to_ascii_lowercase())
        .collect();
    if names.is_empty() {
        return None;
    }
    names.sort();
    names.dedup();
    let mut v = VarianceBuilder::new();
    for name in names {
        let mut value = Vec::new();
        for (i, h) in req.headers.get_all(name.as_str()).iter().enumerate() {
            // Several fields of one name count as one comma-joined list (RFC 9110 §5.3).
            if i > 0 {
                value.extend_from_slice(b", ");
            }
            value.extend_from_slice(h.as_bytes());
        }
        let present = req.headers.contains_key(name.as_str());
        let mut framed = vec![u8::from(present)];
        framed.extend_from_slice(&value);
        v.add_owned_name_value(name, framed);
    }
    v.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(default_ttl: Option<u64>) -> RouteCache {
        RouteCache {
            default_ttl: default_ttl.map(Duration::from_secs),
            key: vec![],
            stale_while_revalidate: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(300),
            status_header: true,
        }
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    fn ttl(r: RespCacheable) -> Option<u64> {
        match r {
            RespCacheable::Cacheable(m) => Some(m.fresh_sec()),
            RespCacheable::Uncacheable(_) => None,
        }
    }

    #[test]
    fn explicit_freshness_rules() {
        let p = policy(None);
        assert_eq!(
            ttl(response_cacheable(
                &resp(200, &[("cache-control", "max-age=60")]),
                &p
            )),
            Some(60)
        );
        assert_eq!(
            ttl(response_cacheable(
                &resp(200, &[("cache-control", "max-age=60, s-maxage=5")]),
                &p
            )),
            Some(5),
            "s-maxage wins for a shared cache"
        );
        assert_eq!(
            ttl(response_cacheable(
                &resp(200, &[("cache-control", "no-store, max-age=60")]),
                &p
            )),
            None
        );
        assert_eq!(
            ttl(response_cacheable(
                &resp(200, &[("cache-control", "private, max-age=60")]),
                &p
            )),
            None
        );
        assert_eq!(
            ttl(response_cacheable(
                &resp(200, &[("cache-control", "no-cache")]),
                &p
            )),
            Some(0),
            "no-cache is stored but always stale"
        );
        assert_eq!(
            ttl(response_cacheable(
                &resp(
                    200,
                    &[("cache-control", "max-age=60"), ("set-cookie", "a=1")]
                ),
                &p
            )),
            None
        );
        assert_eq!(
            ttl(response_cacheable(
                &resp(
                    200,
                    &[("cache-control", "max-age=60"), ("vary", "Accept, *")]
                ),
                &p
            )),
            None
        );
        assert_eq!(
            ttl(response_cacheable(
                &resp(206, &[("cache-control", "max-age=60")]),
                &p
            )),
            None
        );
        assert_eq!(
            ttl(response_cacheable(
                &resp(200, &[("expires", "Thu, 01 Jan 1970 00:00:00 GMT")]),
                &p
            )),
            Some(0),
            "an Expires in the past is stale at once"
        );
    }

    #[test]
    fn default_ttl_applies_only_without_freshness_and_for_heuristic_statuses() {
        assert_eq!(
            ttl(response_cacheable(&resp(200, &[]), &policy(None))),
            None
        );
        assert_eq!(
            ttl(response_cacheable(&resp(200, &[]), &policy(Some(60)))),
            Some(60)
        );
        assert_eq!(
            ttl(response_cacheable(&resp(404, &[]), &policy(Some(60)))),
            Some(60)
        );
        assert_eq!(
            ttl(response_cacheable(&resp(500, &[]), &policy(Some(60)))),
            None
        );
        assert_eq!(
            ttl(response_cacheable(&resp(302, &[]), &policy(Some(60)))),
            None
        );
        assert_eq!(
            ttl(response_cacheable(
                &resp(200, &[("cache-control", "max-age=5")]),
                &policy(Some(60))
            )),
            Some(5)
        );
        assert_eq!(
            ttl(response_cacheable(
                &resp(200, &[("cache-control", "private")]),
                &policy(Some(60))
            )),
            None
        );
    }

    #[test]
    fn stale_windows_come_from_the_response_or_the_route() {
        let p = policy(None);
        let m = response_cacheable(&resp(200, &[("cache-control", "max-age=1")]), &p).unwrap_meta();
        assert_eq!(
            (m.stale_while_revalidate_sec(), m.stale_if_error_sec()),
            (10, 300)
        );
        let m = response_cacheable(
            &resp(
                200,
                &[(
                    "cache-control",
                    "max-age=1, stale-while-revalidate=3, stale-if-error=4",
                )],
            ),
            &p,
        )
        .unwrap_meta();
        assert_eq!(
            (m.stale_while_revalidate_sec(), m.stale_if_error_sec()),
            (3, 4)
        );
        let m = response_cacheable(
            &resp(200, &[("cache-control", "max-age=1, must-revalidate")]),
            &p,
        )
        .unwrap_meta();
        assert_eq!(
            (m.stale_while_revalidate_sec(), m.stale_if_error_sec()),
            (0, 0)
        );
    }

    #[test]
    fn requests_that_bypass() {
        let get = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(request_eligible(&get, false), Ok(()));
        assert_eq!(request_eligible(&get, true), Err(Bypass::Upgrade));
        let post = RequestHeader::build("POST", b"/", None).unwrap();
        assert_eq!(request_eligible(&post, false), Err(Bypass::Method));
        let mut auth = RequestHeader::build("HEAD", b"/", None).unwrap();
        auth.insert_header("authorization", "Bearer x").unwrap();
        assert_eq!(request_eligible(&auth, false), Err(Bypass::Authorization));
    }

    #[test]
    fn variance_follows_the_vary_headers() {
        let meta = |vary: &str| {
            response_cacheable(
                &resp(200, &[("cache-control", "max-age=9"), ("vary", vary)]),
                &policy(None),
            )
            .unwrap_meta()
        };
        let req = |h: &[(&str, &str)]| {
            let mut r = RequestHeader::build("GET", b"/", None).unwrap();
            for (n, v) in h {
                r.append_header(n.to_string(), *v).unwrap();
            }
            r
        };
        let m = meta("Accept-Language");
        let en = variance(&m, &req(&[("accept-language", "en")]));
        let fr = variance(&m, &req(&[("accept-language", "fr")]));
        let none = variance(&m, &req(&[]));
        let empty = variance(&m, &req(&[("accept-language", "")]));
        assert!(en.is_some() && en != fr && en != none && none != empty);
        assert_eq!(
            en,
            variance(&m, &req(&[("accept-language", "en"), ("x-other", "1")]))
        );
        assert_eq!(
            variance(
                &meta("accept-language, "),
                &req(&[("accept-language", "en")])
            ),
            en
        );
        let plain =
            response_cacheable(&resp(200, &[("cache-control", "max-age=9")]), &policy(None))
                .unwrap_meta();
        assert_eq!(variance(&plain, &req(&[("accept-language", "en")])), None);
    }
}
