//! Editing the header fields of a request going upstream or a response going downstream.
//!
//! Pingora's [`RequestHeader`] and [`ResponseHeader`] keep a second map beside the headers:
//! the case each name was received in, so it can be written back verbatim. Every insert
//! through them parses the name again and updates both maps. fulcrum adds four to six fields
//! to every request and two to every response, so by default (`preserve_header_case: false`)
//! it drops that second map and edits the plain [`HeaderMap`] instead, as HAProxy and Envoy
//! do: names fulcrum forwards are then written in lowercase, except the few that Pingora
//! writes title-cased (`Host`, `Content-Type`, `Content-Length`, `Date`, `Server`, ...).
//! Header names are case-insensitive (RFC 9110 section 5.1); the setting keeps nginx's
//! behaviour for backends and clients that still care.
//!
//! [`Head`] is what the edits are written against, so one piece of code serves both ways.

use http::header::{HeaderMap, HeaderName};
use http::HeaderValue;
use pingora_http::{RequestHeader, ResponseHeader};

/// A set of header fields that fulcrum edits.
pub trait Head {
    /// The fields, for reading.
    fn fields(&self) -> &HeaderMap;
    /// Replace every field named `name` with one holding `value`.
    fn set(&mut self, name: &HeaderName, value: HeaderValue);
    /// Add a field, keeping those already there.
    fn add(&mut self, name: &HeaderName, value: HeaderValue);
    /// Remove every field named `name`.
    fn remove(&mut self, name: &HeaderName);
}

impl Head for HeaderMap {
    fn fields(&self) -> &HeaderMap {
        self
    }
    fn set(&mut self, name: &HeaderName, value: HeaderValue) {
        self.insert(name.clone(), value);
    }
    fn add(&mut self, name: &HeaderName, value: HeaderValue) {
        self.append(name.clone(), value);
    }
    fn remove(&mut self, name: &HeaderName) {
        HeaderMap::remove(self, name);
    }
}

/// `Head` for Pingora's request and response heads, which edit their fields the same way.
///
/// Pingora refuses an insert only for an invalid name or a map past 32,768 fields; the names
/// here are already `HeaderName`s and fulcrum caps a request at 256 fields, so the results are
/// ignored.
macro_rules! head_of_pingora {
    ($head:ty) => {
        impl Head for $head {
            fn fields(&self) -> &HeaderMap {
                &self.headers
            }
            fn set(&mut self, name: &HeaderName, value: HeaderValue) {
                let _ = self.insert_header(name, value);
            }
            fn add(&mut self, name: &HeaderName, value: HeaderValue) {
                let _ = self.append_header(name, value);
            }
            fn remove(&mut self, name: &HeaderName) {
                self.remove_header(name);
            }
        }
    };
}

head_of_pingora!(RequestHeader);
head_of_pingora!(ResponseHeader);

/// Room made up front for the fields fulcrum adds to a request by default (the three
/// `X-Forwarded-*`, `Via`, `X-Request-Id`, one more), so the map grows at most once.
const REQUEST_ROOM: usize = 6;

/// The same for a response (`X-Request-Id`, `Via`, one more).
const RESPONSE_ROOM: usize = 3;

/// Edit a request's fields, keeping the received name case when `preserve_case` is set and
/// editing the plain map otherwise (see the module docs).
///
/// The request-target, the HTTP/2 end-of-stream flag and everything else but the case map
/// are kept.
pub fn edit_request<R>(
    req: &mut RequestHeader,
    preserve_case: bool,
    edit: impl FnOnce(&mut dyn Head) -> R,
) -> R {
    if preserve_case || !req.has_case() {
        return edit(req);
    }
    // A target the URI cannot reproduce (absolute-form, CONNECT, not UTF-8) is kept as
    // bytes beside it, which the plain parts have no room for: copy it to restore it.
    let uri = &req.uri;
    let from_uri = uri
        .path_and_query()
        .map(|p| p.as_str().as_bytes())
        .or_else(|| uri.authority().map(|a| a.as_str().as_bytes()))
        .unwrap_or_default();
    let raw = req.raw_path();
    let verbatim =
        (raw.as_ptr() != from_uri.as_ptr() || raw.len() != from_uri.len()).then(|| raw.to_vec());
    let end_stream = req.send_end_stream();

    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = http::request::Parts::from(std::mem::replace(req, placeholder));
    parts.headers.reserve(REQUEST_ROOM);
    let out = edit(&mut parts.headers);
    *req = RequestHeader::from(parts);
    if let Some(raw) = verbatim {
        // The same bytes parsed before, so they parse again.
        let _ = req.set_raw_path(&raw);
    }
    if let Some(end_stream) = end_stream {
        req.set_send_end_stream(end_stream);
    }
    out
}

/// Edit a response's fields, as [`edit_request`] does a request's. The reason phrase is kept.
pub fn edit_response<R>(
    resp: &mut ResponseHeader,
    preserve_case: bool,
    edit: impl FnOnce(&mut dyn Head) -> R,
) -> R {
    if preserve_case || !resp.has_case() {
        return edit(resp);
    }
    // Only a phrase other than the status's own is kept (Pingora writes that one anyway).
    let canonical = resp.status.canonical_reason();
    let reason = resp
        .get_reason_phrase()
        .filter(|r| Some(*r) != canonical)
        .map(str::to_owned);
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = http::response::Parts::from(std::mem::replace(resp, placeholder));
    parts.headers.reserve(RESPONSE_ROOM);
    let out = edit(&mut parts.headers);
    *resp = ResponseHeader::from(parts);
    if reason.is_some() {
        let _ = resp.set_reason_phrase(reason.as_deref());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const X_ONE: HeaderName = HeaderName::from_static("x-one");

    fn wire(req: &RequestHeader) -> String {
        let mut buf = Vec::new();
        req.header_to_h1_wire(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    fn received(target: &[u8]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target, None).unwrap();
        r.append_header("Host", "example.com").unwrap();
        r.append_header("X-Mixed-Case", "1").unwrap();
        r
    }

    #[test]
    fn plain_edits_drop_case_and_keep_everything_else() {
        let mut r = received(b"/a?b=1");
        edit_request(&mut r, false, |h| {
            h.set(&X_ONE, HeaderValue::from_static("1"));
            h.add(&X_ONE, HeaderValue::from_static("2"));
            h.remove(&HeaderName::from_static("x-mixed-case"));
        });
        assert!(!r.has_case());
        assert_eq!(r.raw_path(), b"/a?b=1");
        assert_eq!(r.method, http::Method::GET);
        assert_eq!(wire(&r), "Host: example.com\r\nx-one: 1\r\nx-one: 2\r\n");
    }

    #[test]
    fn preserved_case_stays() {
        let mut r = received(b"/");
        edit_request(&mut r, true, |h| {
            h.set(&X_ONE, HeaderValue::from_static("1"))
        });
        assert!(r.has_case());
        assert_eq!(
            wire(&r),
            "Host: example.com\r\nX-Mixed-Case: 1\r\nx-one: 1\r\n"
        );
    }

    #[test]
    fn a_target_the_uri_cannot_hold_survives() {
        for target in [&b"http://example.com/p?q"[..], b"/caf\xe9"] {
            let before = received(target);
            let mut r = received(target);
            edit_request(&mut r, false, |h| {
                h.set(&X_ONE, HeaderValue::from_static("1"))
            });
            assert_eq!(r.raw_path(), before.raw_path());
            assert_eq!(r.raw_path_is_utf8(), before.raw_path_is_utf8());
            assert_eq!(r.uri, before.uri);
        }
    }

    #[test]
    fn response_reason_phrase_survives() {
        let mut r = ResponseHeader::build(299, None).unwrap();
        r.set_reason_phrase(Some("Fine Thanks")).unwrap();
        r.append_header("X-Mixed-Case", "1").unwrap();
        edit_response(&mut r, false, |h| {
            h.set(&X_ONE, HeaderValue::from_static("1"))
        });
        assert_eq!(r.get_reason_phrase(), Some("Fine Thanks"));
        assert_eq!(r.status.as_u16(), 299);
        assert_eq!(r.headers.len(), 2);
    }
}
