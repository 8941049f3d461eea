//! Request buffering (nginx's `proxy_request_buffering`): a small request body is read whole
//! before a backend is chosen, so a client that uploads slowly holds no backend slot or
//! connection meanwhile.
//!
//! The body is read into Pingora's retry buffer (a fixed 64 KiB), which Pingora sends to the
//! backend first on every attempt; the rest of a body (none, here) would follow as it comes.
//! Only bodies whose `Content-Length` is at most the route's `request_buffering` are read
//! ahead: such a body cannot outgrow the retry buffer, so nothing read is ever lost. Bodies
//! without a length (chunked HTTP/1, HTTP/2 without `content-length`) and larger ones stream
//! as before.

use super::content_length;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::Session;
use std::time::Duration;

/// Whether to read a request's body whole before choosing a backend: it has a body of known
/// length, at most `limit` (`0`: never), and is not a protocol upgrade (whose "body" is the
/// tunnel).
pub fn should_read_ahead(limit: u64, req: &RequestHeader, upgrade: bool) -> bool {
    // With a Transfer-Encoding the length does not frame the body (RFC 9112 6.3).
    if limit == 0 || upgrade || req.headers.contains_key(http::header::TRANSFER_ENCODING) {
        return false;
    }
    content_length::of(req).is_some_and(|n| n > 0 && n <= limit)
}

/// Whether the client asked for `100 Continue` before it sends its body.
pub fn expects_continue(req: &RequestHeader) -> bool {
    req.headers
        .get_all(http::header::EXPECT)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Read the whole body of the request into Pingora's retry buffer, each read waiting at most
/// `each_read`. A client that asked for `100 Continue` gets it from fulcrum first, and its
/// `Expect` is dropped, so that neither the backend nor Pingora sends a second one. Errors
/// are the client's (downstream): a read timeout (`408`) or a broken connection.
pub async fn read_ahead(session: &mut Session, each_read: Duration) -> Result<()> {
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
    loop {
        let read = tokio::time::timeout(each_read, session.as_downstream_mut().read_request_body());
        match read.await {
            Err(_) => {
                let mut e = Error::explain(
                    ErrorType::ReadTimedout,
                    format!("buffering request body, timeout: {each_read:?}"),
                );
                e.esource = pingora_core::ErrorSource::Downstream;
                return Err(e);
            }
            Ok(Err(e)) => return Err(e.into_down()),
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => return Ok(()),
        }
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
    fn bodies_of_known_length_up_to_the_limit_are_read_ahead() {
        let len = |n: &str| post(&[("content-length", n)]);
        assert!(should_read_ahead(1024, &len("1"), false));
        assert!(should_read_ahead(1024, &len("1024"), false));
        assert!(!should_read_ahead(1024, &len("1025"), false));
        // No body, buffering off, or an upgrade: nothing to wait for.
        assert!(!should_read_ahead(1024, &len("0"), false));
        assert!(!should_read_ahead(1024, &post(&[]), false));
        assert!(!should_read_ahead(0, &len("10"), false));
        assert!(!should_read_ahead(1024, &len("10"), true));
    }

    #[test]
    fn bodies_without_a_length_stream() {
        let chunked = post(&[("transfer-encoding", "chunked")]);
        assert!(!should_read_ahead(64 * 1024, &chunked, false));
        let both = post(&[("transfer-encoding", "chunked"), ("content-length", "5")]);
        assert!(!should_read_ahead(64 * 1024, &both, false));
    }

    #[test]
    fn expect_continue_is_recognized_in_any_case() {
        assert!(expects_continue(&post(&[("expect", "100-continue")])));
        assert!(expects_continue(&post(&[("Expect", "100-Continue")])));
        assert!(!expects_continue(&post(&[])));
        assert!(!expects_continue(&post(&[("expect", "something-else")])));
    }
}
