//! Short plain-text answers that fulcrum writes itself (no route, no backend, errors); a gRPC
//! call gets the same answer as a gRPC status instead ([`super::grpc`]).

use bytes::Bytes;
use http::HeaderValue;
use pingora_core::protocols::http::HttpTask;
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Seconds a client is told to wait (`Retry-After`) when no backend is available.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The error type of a request that found every backend at `max_connections` and could not
/// wait in the queue (full, or the wait ran out).
pub const BACKENDS_BUSY: ErrorType = ErrorType::Custom("every backend is at max_connections");

/// A short answer fulcrum writes itself instead of a backend's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Plain-text body, one line.
    pub body: &'static str,
    /// Seconds for a `Retry-After` header, if any.
    pub retry_after: Option<u64>,
}

impl Answer {
    /// `status` with `body`; a 503 also says when to come back ([`RETRY_AFTER_SECS`]), as
    /// [`send`] does.
    pub fn new(status: u16, body: &'static str) -> Self {
        Answer {
            status,
            body,
            retry_after: (status == 503).then_some(RETRY_AFTER_SECS),
        }
    }
}

/// The body fulcrum writes with a status it answers itself (empty for the ones it has no
/// words for).
pub fn status_answer(code: u16) -> (u16, &'static str) {
    match code {
        404 => (404, "404 Not Found: no route matches this host and path\n"),
        503 => (503, "503 Service Unavailable: no healthy backend\n"),
        413 => (
            413,
            "413 Content Too Large: the request body is larger than allowed\n",
        ),
        code => (code, ""),
    }
}

/// The status and body for an error that ended a request; status 0 means the client is gone.
pub fn error_answer(e: &Error) -> (u16, &'static str) {
    use ErrorType::*;
    match e.etype() {
        Custom(_) if *e.etype() == BACKENDS_BUSY => (
            503,
            "503 Service Unavailable: every backend is busy, retry soon\n",
        ),
        HTTPStatus(code) => status_answer(*code),
        _ => match e.esource() {
            ErrorSource::Upstream => match e.etype() {
                ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => (
                    504,
                    "504 Gateway Timeout: the backend did not answer in time\n",
                ),
                _ => (
                    502,
                    "502 Bad Gateway: the backend refused or broke the connection\n",
                ),
            },
            ErrorSource::Downstream => match e.etype() {
                // A client that went away or stopped reading cannot be answered.
                WriteError | WriteTimedout | ReadError | ConnectionClosed => (0, ""),
                ReadTimedout => (408, "408 Request Timeout\n"),
                _ => (400, "400 Bad Request\n"),
            },
            ErrorSource::Internal | ErrorSource::Unset => (500, "500 Internal Server Error\n"),
        },
    }
}

/// Write a complete short response and close the connection after it (the request may have
/// a body nobody read). Errors mean the client went away; they are ignored.
pub async fn send(
    session: &mut Session,
    status: u16,
    body: &'static str,
    request_id: Option<&HeaderValue>,
) {
    let retry_after = (status == 503).then_some(RETRY_AFTER_SECS);
    send_retry_after(session, status, body, request_id, retry_after).await
}

/// Write `answer` like [`send`], with its own `Retry-After`.
pub async fn send_answer(session: &mut Session, answer: Answer, request_id: Option<&HeaderValue>) {
    let Answer {
        status,
        body,
        retry_after,
    } = answer;
    send_retry_after(session, status, body, request_id, retry_after).await
}

/// Like [`send`], with a `Retry-After` header (in seconds) when `retry_after` is set.
pub async fn send_retry_after(
    session: &mut Session,
    status: u16,
    body: &'static str,
    request_id: Option<&HeaderValue>,
    retry_after: Option<u64>,
) {
    if session.response_written().is_some() {
        // Part of another response is out already: an answer now would be glued into it.
        return;
    }
    session.set_keepalive(None);
    if super::grpc::is_grpc(session.req_header()) {
        send_grpc(session, status, body, request_id).await;
        return;
    }
    let Ok(mut resp) = ResponseHeader::build(status, Some(5)) else {
        return;
    };
    if let Some(id) = request_id {
        let _ = resp.insert_header(super::request_id::HEADER, id.clone());
    }
    let _ = resp.insert_header("content-type", "text/plain; charset=utf-8");
    let _ = resp.insert_header("content-length", body.len());
    if let Some(secs) = retry_after {
        let _ = resp.insert_header("retry-after", secs);
    }
    if session
        .write_response_header(Box::new(resp), body.is_empty())
        .await
        .is_err()
    {
        return;
    }
    if !body.is_empty() {
        let _ = session
            .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
            .await;
    }
}

/// Answer a gRPC call that fulcrum fails with `status` in the trailers-only form its client
/// understands ([`super::grpc::error_head`]); `body` becomes the `grpc-message`.
async fn send_grpc(
    session: &mut Session,
    status: u16,
    body: &'static str,
    request_id: Option<&HeaderValue>,
) {
    let Some(mut resp) = super::grpc::error_head(status, body) else {
        return;
    };
    if let Some(id) = request_id {
        let _ = resp.insert_header(super::request_id::HEADER, id.clone());
    }
    if session.req_header().version < http::Version::HTTP_2 {
        let _ = resp.insert_header("content-length", 0);
    }
    // Straight to the client connection, as one task that ends the stream: over HTTP/2 the
    // head goes out as a single HEADERS frame with END_STREAM, which is what gRPC clients
    // read as "trailers only" (a separate empty DATA frame would leave them without a status).
    let task = HttpTask::Header(Box::new(resp), true);
    let _ = session
        .as_downstream_mut()
        .response_duplex_vec(vec![task])
        .await;
}

/// Write a `308 Permanent Redirect` to `location` (method and body are kept by clients).
pub async fn redirect(session: &mut Session, location: &str, request_id: Option<&HeaderValue>) {
    let Ok(mut resp) = ResponseHeader::build(308, Some(4)) else {
        return;
    };
    if resp.insert_header("location", location).is_err() {
        send(session, 400, "400 Bad Request: bad host\n", request_id).await;
        return;
    }
    if let Some(id) = request_id {
        let _ = resp.insert_header(super::request_id::HEADER, id.clone());
    }
    let _ = resp.insert_header("content-length", 0);
    session.set_keepalive(None);
    let _ = session.write_response_header(Box::new(resp), true).await;
}
