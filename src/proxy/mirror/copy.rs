//! The head of a mirrored copy: the request exactly as it went to the primary backend (method,
//! rewritten path and query, forwarding headers, request id, the route's header rules),
//! made independent of how the primary and the mirror speak HTTP.
//!
//! [`head`] takes the copy in HTTP/1.1 origin form (`Host` header, path and query as
//! target) without the fields that belong to one connection or framing; [`frame`] sets the
//! framing of the body actually sent and adapts the head to the mirror connection's
//! protocol once it is known.

use http::header::{self, HeaderName};
use http::{HeaderValue, Uri, Version};
use pingora_http::RequestHeader;

/// Fields that describe one connection or one framing of the body, never copied: the copy
/// is sent on its own connection, with its whole body and a `Content-Length`.
const NOT_COPIED: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::EXPECT,
    header::CONTENT_LENGTH,
];

/// `Keep-Alive` and `Proxy-Connection`, hop-by-hop fields without an `http` constant.
const NOT_COPIED_NAMED: [&str; 2] = ["keep-alive", "proxy-connection"];

/// The copy's head, from the request as it goes upstream. A request that had a body (a
/// `Content-Length` or `Transfer-Encoding`) keeps a `Content-Length` placeholder, set to the
/// length of the copied body by [`frame`].
pub fn head(upstream_request: &RequestHeader) -> Box<RequestHeader> {
    let mut copy = Box::new(upstream_request.clone());
    let framed = copy.headers.contains_key(header::CONTENT_LENGTH)
        || copy.headers.contains_key(header::TRANSFER_ENCODING);
    for name in &NOT_COPIED {
        copy.remove_header(name);
    }
    for name in NOT_COPIED_NAMED {
        copy.remove_header(name);
    }
    // An HTTP/2 request carries its host in the target (`:authority`).
    let authority = copy.uri.authority().map(|a| a.as_str().to_string());
    if let (false, Some(a)) = (copy.headers.contains_key(header::HOST), authority) {
        if let Ok(v) = HeaderValue::from_str(&a) {
            let _ = copy.insert_header(header::HOST, v);
        }
    }
    let target = copy
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    if let Ok(uri) = target.parse::<Uri>() {
        copy.set_uri(uri);
    }
    copy.set_version(Version::HTTP_11);
    if framed {
        let _ = copy.insert_header(header::CONTENT_LENGTH, 0);
    }
    copy
}

/// Frame the copy for sending: a `Content-Length` of the body sent (for a request that had a
/// body, or when there is one), and for an HTTP/2 connection (`h2`) version 2 with the host
/// as `:authority` (scheme `https` when `tls`) instead of a `Host` field.
pub fn frame(copy: &mut RequestHeader, body_len: usize, h2: bool, tls: bool) {
    if body_len > 0 || copy.headers.contains_key(header::CONTENT_LENGTH) {
        let _ = copy.insert_header(header::CONTENT_LENGTH, body_len);
    }
    if !h2 {
        return;
    }
    copy.set_version(Version::HTTP_2);
    let Some(host) = copy.remove_header(&header::HOST) else {
        return;
    };
    let target = copy.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(host.as_bytes())
        .path_and_query(target)
        .build();
    if let Ok(uri) = uri {
        copy.set_uri(uri);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str, fields: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, target.as_bytes(), None).unwrap();
        for (n, v) in fields {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn the_copy_keeps_method_target_and_fields_but_not_the_framing() {
        let r = request(
            "POST",
            "/v2/users?x=1",
            &[
                ("host", "api.example"),
                ("x-request-id", "abc"),
                ("transfer-encoding", "chunked"),
                ("connection", "keep-alive"),
                ("expect", "100-continue"),
                ("x-extra", "1"),
                ("x-extra", "2"),
            ],
        );
        let mut c = head(&r);
        assert_eq!(c.method, "POST");
        assert_eq!(c.uri, "/v2/users?x=1");
        assert_eq!(c.headers["host"], "api.example");
        assert_eq!(c.headers["x-request-id"], "abc");
        assert_eq!(c.headers.get_all("x-extra").iter().count(), 2);
        for gone in ["transfer-encoding", "connection", "expect"] {
            assert!(!c.headers.contains_key(gone), "{gone}");
        }
        frame(&mut c, 11, false, false);
        assert_eq!(c.headers["content-length"], "11");
        assert_eq!(c.version, Version::HTTP_11);
    }

    #[test]
    fn a_request_without_a_body_gets_no_length() {
        let r = request("GET", "/x", &[("host", "h")]);
        let mut c = head(&r);
        frame(&mut c, 0, false, false);
        assert!(!c.headers.contains_key("content-length"));

        let r = request("POST", "/x", &[("host", "h"), ("content-length", "0")]);
        let mut c = head(&r);
        frame(&mut c, 0, false, false);
        assert_eq!(c.headers["content-length"], "0");
    }

    #[test]
    fn an_http2_request_gets_a_host_and_an_http2_copy_an_authority() {
        let mut r = request("GET", "/p?q=1", &[]);
        r.set_uri("https://api.example:8443/p?q=1".parse().unwrap());
        r.set_version(Version::HTTP_2);
        let mut c = head(&r);
        assert_eq!(c.uri, "/p?q=1");
        assert_eq!(c.headers["host"], "api.example:8443");
        assert_eq!(c.version, Version::HTTP_11);

        frame(&mut c, 0, true, false);
        assert_eq!(c.version, Version::HTTP_2);
        assert_eq!(c.uri, "http://api.example:8443/p?q=1");
        assert!(!c.headers.contains_key("host"));
    }
}
