//! A request's cache key: the route, the upstream group serving it, and the parts the route's
//! `cache.key` lists, each length-prefixed so no two different requests can frame the same
//! bytes.

use super::store::Origin;
use crate::config::model::{CacheKeyPart, RouteCache};
use crate::request_fields::cookie;
use crate::routing::normalize_host;
use pingora_cache::CacheKey;
use pingora_http::RequestHeader;

/// The key of `req` on route `route`, served by group `upstream`; `host` is the request's
/// host as sent (normalized here). The request's path is already normalized (admission does
/// it in place).
pub fn build(
    route: usize,
    upstream: &str,
    policy: &RouteCache,
    req: &RequestHeader,
    host: Option<&str>,
) -> CacheKey {
    let mut primary = Vec::with_capacity(96);
    push(&mut primary, Some(&route.to_le_bytes()));
    push(&mut primary, Some(upstream.as_bytes()));
    let path = req.uri.path();
    for part in &policy.key {
        match part {
            CacheKeyPart::Host => {
                let h = host.map(normalize_host);
                push(&mut primary, h.as_deref().map(str::as_bytes));
            }
            CacheKeyPart::Path => push(&mut primary, Some(path.as_bytes())),
            CacheKeyPart::Query => push(&mut primary, req.uri.query().map(str::as_bytes)),
            CacheKeyPart::Header(name) => {
                let mut values = req.headers.get_all(name).iter().peekable();
                if values.peek().is_none() {
                    push(&mut primary, None);
                }
                for v in values {
                    push(&mut primary, Some(v.as_bytes()));
                }
            }
            CacheKeyPart::Cookie(name) => push(&mut primary, cookie(req, name)),
        }
    }
    let mut key = CacheKey::new(primary, "");
    key.extensions.insert(Origin {
        route,
        path: path.into(),
    });
    key
}

/// Append one part: a presence byte, then its length and bytes.
fn push(buf: &mut Vec<u8>, part: Option<&[u8]>) {
    match part {
        None => buf.push(0),
        Some(bytes) => {
            buf.push(1);
            buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            buf.extend_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::key::CacheHashKey;

    fn policy(key: Vec<CacheKeyPart>) -> RouteCache {
        RouteCache {
            default_ttl: None,
            key,
            stale_while_revalidate: Default::default(),
            stale_if_error: Default::default(),
            status_header: true,
        }
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    fn hash(route: usize, p: &RouteCache, r: &RequestHeader) -> [u8; 16] {
        let host = r.headers.get("host").and_then(|h| h.to_str().ok());
        build(route, "g", p, r, host).primary_bin()
    }

    #[test]
    fn the_listed_parts_tell_requests_apart_and_the_rest_do_not() {
        use CacheKeyPart::*;
        let p = policy(vec![Host, Path, Query]);
        let a = req("/a?x=1", &[("host", "Example.com:8080")]);
        let same = req("/a?x=1", &[("host", "example.com"), ("x-tenant", "t")]);
        assert_eq!(hash(0, &p, &a), hash(0, &p, &same));
        assert_ne!(hash(0, &p, &a), hash(1, &p, &a), "routes are apart");
        assert_ne!(
            hash(0, &p, &a),
            hash(0, &p, &req("/a?x=2", &[("host", "example.com")]))
        );
        assert_ne!(
            hash(0, &p, &a),
            hash(0, &p, &req("/a", &[("host", "example.com")]))
        );
        assert_ne!(
            hash(0, &p, &req("/a", &[("host", "example.com")])),
            hash(0, &p, &req("/a?", &[("host", "example.com")])),
            "an empty query is not an absent one"
        );
        let no_query = policy(vec![Path]);
        assert_eq!(
            hash(0, &no_query, &req("/a?x=1", &[])),
            hash(0, &no_query, &req("/a?x=2", &[]))
        );
    }

    #[test]
    fn header_and_cookie_parts_split_objects() {
        use CacheKeyPart::*;
        let p = policy(vec![
            Path,
            Header(http::HeaderName::from_static("x-tenant")),
            Cookie("lang".into()),
        ]);
        let base = hash(0, &p, &req("/a", &[]));
        let t1 = hash(0, &p, &req("/a", &[("x-tenant", "one")]));
        let t2 = hash(0, &p, &req("/a", &[("x-tenant", "two")]));
        let empty = hash(0, &p, &req("/a", &[("x-tenant", "")]));
        assert!(base != t1 && t1 != t2 && base != empty && t1 != empty);
        let fr = hash(0, &p, &req("/a", &[("cookie", "a=1; lang=fr")]));
        let de = hash(0, &p, &req("/a", &[("cookie", "lang=de")]));
        let other = hash(0, &p, &req("/a", &[("cookie", "a=1")]));
        assert!(fr != de && fr != base && other == base);
    }

    #[test]
    fn parts_are_framed_so_boundaries_cannot_be_shifted() {
        use CacheKeyPart::*;
        let p = policy(vec![Path, Header(http::HeaderName::from_static("x-a"))]);
        // "/ab" + "" must differ from "/a" + "b".
        let one = hash(0, &p, &req("/ab", &[("x-a", "")]));
        let two = hash(0, &p, &req("/a", &[("x-a", "b")]));
        assert_ne!(one, two);
    }
}
