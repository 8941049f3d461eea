//! Request buffering (nginx's `proxy_request_buffering`): a small request body is read whole
//! before a backend is chosen, so a client that uploads slowly holds no backend slot or
//! connection meanwhile.
//!
//! The body is read into Pingora's retry buffer (a fixed 64 KiB), which Pingora sends to the
//! backend first on every attempt, then streams whatever of the body is still to come. Nothing
//! read may overflow that buffer (Pingora would drop it all), so:
//!
//! - a body whose `Content-Length` is at most the route's `request_buffering` is read whole;
//!   a larger declared length streams from the start;
//! - a chunked HTTP/1 body is read while it stays under the limit, and at most
//!   [`UNKNOWN_LENGTH_MAX`]: each read then returns at most 16 KiB (the connection's head
//!   guard makes them small), so one more read always fits. A body that ends by then is whole
//!   and goes on with a `Content-Length`; a longer one sends what was read and streams the
//!   rest;
//! - an HTTP/2 body without `content-length` streams: on HTTP/2 that is how a client streams
//!   (gRPC, a `fetch` with a stream body), often waiting for the answer to one message before
//!   it sends the next, which waiting for the end would deadlock until `body_timeout`.

use super::content_length;
use crate::limits::head_guard::SMALL_BODY_READ;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::Session;
use std::time::Duration;

/// Pingora's retry buffer, which holds what is read ahead (`BODY_BUF_LIMIT`).
pub const RETRY_BUFFER: u64 = 64 * 1024;

/// Most of a body of unknown length read ahead: one more read of at most 16 KiB still fits
/// the retry buffer.
pub const UNKNOWN_LENGTH_MAX: u64 = RETRY_BUFFER - SMALL_BODY_READ as u64;

/// How much of a request body to read before a backend is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAhead {
    /// Nothing: no body, buffering off, a protocol upgrade (whose "body" is the tunnel), or a
    /// declared length above the limit.
    Nothing,
    /// The whole body: its declared length is within the limit.
    Whole,
    /// A chunked HTTP/1 body: until it ends, or once this many bytes are read.
    UpTo(u64),
}

/// What to read ahead of a request with a body (`has_body`), under the route's `limit`
/// (`0`: never).
pub fn plan(limit: u64, req: &RequestHeader, upgrade: bool, has_body: bool) -> ReadAhead {
    if limit == 0 || upgrade || !has_body {
        return ReadAhead::Nothing;
    }
    // With a Transfer-Encoding the length does not frame the body (RFC 9112 6.3).
    let declared = match req.headers.contains_key(http::header::TRANSFER_ENCODING) {
        true => None,
        false => content_length::of(req),
    };
    match declared {
        Some(n) if n <= limit => ReadAhead::Whole,
        Some(_) => ReadAhead::Nothing,
        None if req.version == http::Version::HTTP_2 => ReadAhead::Nothing,
        None => ReadAhead::UpTo(limit.min(UNKNOWN_LENGTH_MAX)),
    }
}

/// Whether the client asked for `100 Continue` before it sends its body.
pub fn expects_continue(req: &RequestHeader) -> bool {
    req.headers
        .get_all(http::header::EXPECT)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Read ahead what `plan` says into Pingora's retry buffer, each read waiting at most
/// `each_read`. A client that asked for `100 Continue` gets it from fulcrum first, and its
/// `Expect` is dropped, so that neither the backend nor Pingora sends a second one. Errors
/// are the client's (downstream): a read timeout (`408`) or a broken connection.
///
/// A body that grows over `max_body` (the route's `max_body_bytes`) while read ahead is
/// answered `413` before any backend is contacted.
pub async fn read_ahead(
    session: &mut Session,
    plan: ReadAhead,
    each_read: Duration,
    max_body: Option<u64>,
) -> Result<()> {
    let up_to = match plan {
        ReadAhead::Nothing => return Ok(()),
        ReadAhead::Whole => u64::MAX,
        ReadAhead::UpTo(n) => n,
    };
    if expects_continue(session.req_header()) {
        session
            .as_downstream_mut()
            .write_continue_response()
            .await
            .map_err(|e| e.into_down())?;
        session
            .req_header_mut()
            .remove_header(&http::header::EXPECT);
    }
    session.as_downstream_mut().enable_retry_buffering();
    let small_reads = matches!(plan, ReadAhead::UpTo(_));
    set_small_reads(session, small_reads);
    let read = read_until(session, up_to, each_read, max_body).await;
    if small_reads {
        set_small_reads(session, false);
    }
    let read = read?;
    if small_reads && session.as_downstream_mut().is_body_done() {
        // A body of unknown length that ended while read ahead is now of known length: the
        // backend gets it with a Content-Length, as nginx sends a buffered body.
        frame_by_length(session.req_header_mut(), read);
    }
    Ok(())
}

/// Frame a request whose whole body (`length` bytes) is read by its length.
fn frame_by_length(req: &mut RequestHeader, length: u64) {
    req.remove_header(&http::header::TRANSFER_ENCODING);
    let _ = req.insert_header(http::header::CONTENT_LENGTH, length);
}

/// Read body pieces until the body ends or `up_to` bytes are read; the bytes read.
async fn read_until(
    session: &mut Session,
    up_to: u64,
    each_read: Duration,
    max_body: Option<u64>,
) -> Result<u64> {
    let mut read = 0u64;
    while read < up_to && !session.as_downstream_mut().is_body_done() {
        let next = tokio::time::timeout(each_read, session.as_downstream_mut().read_request_body());
        match next.await {
            Err(_) => {
                let mut e = Error::explain(
                    ErrorType::ReadTimedout,
                    format!("buffering request body, timeout: {each_read:?}"),
                );
                e.esource = pingora_core::ErrorSource::Downstream;
                return Err(e);
            }
            Ok(Err(e)) => return Err(e.into_down()),
            Ok(Ok(Some(piece))) => {
                read += piece.len() as u64;
                if max_body.is_some_and(|max| read > max) {
                    return Err(body_too_large());
                }
            }
            Ok(Ok(None)) => break,
        }
    }
    Ok(read)
}

/// The error for a body over `max_body_bytes`: the client's (so no backend is charged),
/// answered `413`.
pub fn body_too_large() -> Box<Error> {
    crate::metrics::rejections::rejected(crate::metrics::rejections::Reason::BodyTooLarge);
    let mut e = Error::explain(ErrorType::HTTPStatus(413), "request body too large");
    e.esource = pingora_core::ErrorSource::Downstream;
    e
}

/// Make the HTTP/1 client connection's body reads small, or normal again.
fn set_small_reads(session: &Session, on: bool) {
    if let Some(guard) = super::write_behind::guard(session) {
        guard.small_body_reads(on);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    #[test]
    fn bodies_of_known_length_up_to_the_limit_are_read_whole() {
        let len = |n: &str| post(&[("content-length", n)]);
        assert_eq!(plan(1024, &len("1"), false, true), ReadAhead::Whole);
        assert_eq!(plan(1024, &len("1024"), false, true), ReadAhead::Whole);
        assert_eq!(plan(1024, &len("1025"), false, true), ReadAhead::Nothing);
        // No body, buffering off, or an upgrade: nothing to wait for.
        assert_eq!(plan(1024, &len("0"), false, false), ReadAhead::Nothing);
        assert_eq!(plan(0, &len("10"), false, true), ReadAhead::Nothing);
        assert_eq!(plan(1024, &len("10"), true, true), ReadAhead::Nothing);
    }

    #[test]
    fn chunked_bodies_are_read_up_to_what_one_more_read_cannot_overflow() {
        let chunked = post(&[("transfer-encoding", "chunked")]);
        assert_eq!(
            plan(64 * 1024, &chunked, false, true),
            ReadAhead::UpTo(48 * 1024)
        );
        assert_eq!(
            plan(8 * 1024, &chunked, false, true),
            ReadAhead::UpTo(8 * 1024)
        );
        // The length does not frame a body sent with Transfer-Encoding.
        let both = post(&[("transfer-encoding", "chunked"), ("content-length", "5")]);
        assert_eq!(plan(1024, &both, false, true), ReadAhead::UpTo(1024));
        // HTTP/2 without content-length: a stream (gRPC), never waited for.
        let mut h2 = post(&[]);
        h2.set_version(http::Version::HTTP_2);
        assert_eq!(plan(1024, &h2, false, true), ReadAhead::Nothing);
        h2.insert_header("content-length", "10").unwrap();
        assert_eq!(plan(1024, &h2, false, true), ReadAhead::Whole);
        // One more small read after the most read ahead still fits the retry buffer.
        assert!(UNKNOWN_LENGTH_MAX + SMALL_BODY_READ as u64 <= RETRY_BUFFER);
    }

    #[test]
    fn a_body_read_whole_is_framed_by_its_length() {
        let mut req = post(&[("transfer-encoding", "chunked")]);
        frame_by_length(&mut req, 12);
        assert!(req.headers.get("transfer-encoding").is_none());
        assert_eq!(req.headers.get("content-length").unwrap(), "12");
        let mut empty = post(&[("transfer-encoding", "chunked")]);
        frame_by_length(&mut empty, 0);
        assert_eq!(empty.headers.get("content-length").unwrap(), "0");
    }

    #[test]
    fn expect_continue_is_recognized_in_any_case() {
        assert!(expects_continue(&post(&[("expect", "100-continue")])));
        assert!(expects_continue(&post(&[("Expect", "100-Continue")])));
        assert!(!expects_continue(&post(&[])));
        assert!(!expects_continue(&post(&[("expect", "something-else")])));
    }
}
