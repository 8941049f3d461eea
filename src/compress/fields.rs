//! The response header edits compression makes: `Vary`, the weakened `ETag`, and the
//! `Cache-Control: no-transform` check.

use crate::proxy::head::Head;
use http::header::{HeaderMap, CACHE_CONTROL, ETAG, VARY};
use http::HeaderValue;

/// Whether the response says `Cache-Control: no-transform` (RFC 9111 section 5.2.2.6).
pub fn no_transform(headers: &HeaderMap) -> bool {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

/// Make `Vary` list `Accept-Encoding`: added to the names already there (every `Vary` field
/// joined into one), unless it or `*` is already listed, in any case.
pub fn add_vary(h: &mut dyn Head) {
    let mut names: Vec<&str> = Vec::new();
    for value in h.fields().get_all(VARY) {
        let Ok(value) = value.to_str() else {
            // Not text: leave the field alone rather than lose it.
            return;
        };
        names.extend(value.split(',').map(str::trim).filter(|n| !n.is_empty()));
    }
    if names
        .iter()
        .any(|n| *n == "*" || n.eq_ignore_ascii_case("accept-encoding"))
    {
        return;
    }
    names.push("Accept-Encoding");
    if let Ok(value) = HeaderValue::from_str(&names.join(", ")) {
        h.set(&VARY, value);
    }
}

/// The response's body is about to change bytes: a strong `ETag` (`"x"`) becomes weak
/// (`W/"x"`), a weak one stays, and one that is neither (not a quoted tag) is removed, as
/// nginx does (RFC 9110 section 8.8.3).
pub fn weaken_etag(h: &mut dyn Head) {
    let Some(tag) = h.fields().get(ETAG).map(|v| v.as_bytes().to_vec()) else {
        return;
    };
    if tag.starts_with(b"W/") {
        return;
    }
    let weak = tag
        .starts_with(b"\"")
        .then(|| HeaderValue::from_bytes(&[b"W/", &tag[..]].concat()).ok())
        .flatten();
    match weak {
        Some(v) => h.set(&ETAG, v),
        None => h.remove(&ETAG),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vary_after(existing: &[&str]) -> Vec<String> {
        let mut h = HeaderMap::new();
        for v in existing {
            h.append(VARY, v.parse().unwrap());
        }
        add_vary(&mut h);
        h.get_all(VARY)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn vary_is_merged_never_duplicated() {
        assert_eq!(vary_after(&[]), ["Accept-Encoding"]);
        assert_eq!(vary_after(&["Origin"]), ["Origin, Accept-Encoding"]);
        assert_eq!(
            vary_after(&["Origin", "cookie, X-A"]),
            ["Origin, cookie, X-A, Accept-Encoding"]
        );
        assert_eq!(
            vary_after(&["origin, accept-encoding"]),
            ["origin, accept-encoding"]
        );
        assert_eq!(vary_after(&["ACCEPT-ENCODING"]), ["ACCEPT-ENCODING"]);
        assert_eq!(vary_after(&["*"]), ["*"]);
    }

    fn etag_after(tag: &str) -> Option<String> {
        let mut h = HeaderMap::new();
        h.insert(ETAG, tag.parse().unwrap());
        weaken_etag(&mut h);
        h.get(ETAG).map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn strong_etags_become_weak() {
        assert_eq!(etag_after("\"abc\"").as_deref(), Some("W/\"abc\""));
        assert_eq!(etag_after("W/\"abc\"").as_deref(), Some("W/\"abc\""));
        assert_eq!(etag_after("abc"), None);
        let mut none = HeaderMap::new();
        weaken_etag(&mut none);
        assert!(none.get(ETAG).is_none());
    }

    #[test]
    fn no_transform_is_found_among_directives() {
        let mut h = HeaderMap::new();
        assert!(!no_transform(&h));
        h.append(CACHE_CONTROL, "max-age=60".parse().unwrap());
        assert!(!no_transform(&h));
        h.append(CACHE_CONTROL, "public, No-Transform".parse().unwrap());
        assert!(no_transform(&h));
    }
}
