//! Telling the client connection's [`HeadGuard`] when the rest of a response is known to fit
//! its write-behind buffer (`limits.response_buffering`), so that a client that does not read
//! a small response does not keep the backend connection (see `limits::head_guard`). HTTP/2
//! clients have no guard: their streams have HTTP/2's own flow control and send buffers.

use crate::limits::head_guard::HeadGuard;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// The client connection's guard (HTTP/1 only).
pub(super) fn guard(session: &Session) -> Option<&HeadGuard> {
    let stream = session.as_downstream().stream()?;
    (**stream).as_any().downcast_ref::<HeadGuard>()
}

/// A response head is about to go out: a body of known length, or none, is the whole rest.
pub fn on_response_head(session: &Session, resp: &ResponseHeader) {
    if resp.status.as_u16() == 101 {
        return;
    }
    let length = resp
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let (Some(n), Some(g)) = (length, guard(session)) {
        g.rest_of_response(n);
    }
}

/// A piece of response body is about to go out; at its end, nothing more follows it.
pub fn on_response_body(session: &Session, end_of_stream: bool) {
    if end_of_stream {
        if let Some(g) = guard(session) {
            g.rest_of_response(0);
        }
    }
}
