//! Named fields of a request head: a cookie, a query parameter.
//!
//! Both the balancer (a sticky cookie names a backend) and the proxy (a hash key may come from
//! a cookie or a query parameter) read them, so they live below both.

use pingora_http::RequestHeader;

/// The value of `name` in a `Cookie` header, if present.
pub fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a [u8]> {
    req.headers.get_all("cookie").iter().find_map(|v| {
        v.as_bytes().split(|b| *b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
    })
}

/// The raw (not percent-decoded) value of query parameter `name`, if present.
pub fn query_param<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a [u8]> {
    let query = req.uri.query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn cookies_and_queries() {
        let r = req("/p?a=1&user=bob&x", &[("cookie", "a=1; session=xyz ; b=2")]);
        assert_eq!(cookie(&r, "session"), Some(&b"xyz"[..]));
        assert_eq!(cookie(&r, "sess"), None);
        assert_eq!(query_param(&r, "user"), Some(&b"bob"[..]));
        assert_eq!(query_param(&r, "x"), Some(&b""[..]));
        assert_eq!(query_param(&r, "nope"), None);
    }

    #[test]
    fn a_cookie_in_a_second_header_is_found() {
        let r = req("/", &[("cookie", "a=1"), ("cookie", "sid=42")]);
        assert_eq!(cookie(&r, "sid"), Some(&b"42"[..]));
    }
}
