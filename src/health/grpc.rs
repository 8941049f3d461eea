//! The `type: grpc` health check: one `grpc.health.v1.Health/Check` call per backend over a
//! fresh HTTP/2 connection (prior knowledge in plaintext, TLS with ALPN `h2` for TLS groups),
//! through Pingora's HTTP connector. The backend passes only when the call answers HTTP 200,
//! `grpc-status: 0` and `SERVING`.

use super::grpc_wire::{decode_response, encode_request, ServingStatus, WireError};
use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderMap;
use pingora_core::connectors::http::Connector as HttpConnector;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::HealthCheck;
use pingora_load_balancing::Backend;
use std::fmt;
use std::time::Duration;

/// The method path of the standard health check.
const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// Response bodies bigger than this fail the check (the answer is a few bytes).
const MAX_BODY: usize = 16 * 1024;

/// Longest `grpc-message` quoted in a reason.
const MAX_MESSAGE: usize = 100;

/// Why a gRPC health check failed after the backend answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcCheckError {
    /// The backend (TLS groups) did not negotiate `h2`.
    NotHttp2,
    /// The HTTP status was not 200.
    HttpStatus(u16),
    /// Neither trailers nor headers carried a `grpc-status`.
    NoGrpcStatus,
    /// `grpc-status` was not a number.
    BadGrpcStatus(String),
    /// The call failed with this `grpc-status` and `grpc-message`.
    CallFailed(u32, String),
    /// The response body was larger than a health answer can be.
    BodyTooLarge,
    /// The response body was not one `HealthCheckResponse`.
    Malformed(WireError),
    /// The backend answered a status other than `SERVING`.
    NotServing(ServingStatus),
}

impl fmt::Display for GrpcCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrpcCheckError::NotHttp2 => f.write_str("backend did not negotiate HTTP/2 (ALPN h2)"),
            GrpcCheckError::HttpStatus(s) => write!(f, "HTTP status {s}, expected 200"),
            GrpcCheckError::NoGrpcStatus => f.write_str("response carries no grpc-status"),
            GrpcCheckError::BadGrpcStatus(s) => write!(f, "grpc-status {s:?} is not a number"),
            GrpcCheckError::CallFailed(code, msg) if msg.is_empty() => {
                write!(f, "grpc-status {code}")
            }
            GrpcCheckError::CallFailed(code, msg) => write!(f, "grpc-status {code}: {msg}"),
            GrpcCheckError::BodyTooLarge => {
                write!(f, "response body exceeds {MAX_BODY} bytes")
            }
            GrpcCheckError::Malformed(e) => e.fmt(f),
            GrpcCheckError::NotServing(s) => write!(f, "serving status {s}, expected SERVING"),
        }
    }
}

impl std::error::Error for GrpcCheckError {}

impl GrpcCheckError {
    /// As a Pingora error whose context is the reason the health log prints.
    fn into_pingora(self) -> Box<Error> {
        Error::explain(
            ErrorType::Custom("grpc health check failed"),
            self.to_string(),
        )
    }
}

/// The `grpc-status` of a call: trailers first, else the headers (a trailers-only answer).
fn grpc_status(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Result<(), GrpcCheckError> {
    let source = match trailers {
        Some(t) if t.contains_key("grpc-status") => t,
        _ => headers,
    };
    let Some(value) = source.get("grpc-status") else {
        return Err(GrpcCheckError::NoGrpcStatus);
    };
    let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
    let code: u32 = text
        .trim()
        .parse()
        .map_err(|_| GrpcCheckError::BadGrpcStatus(text.clone()))?;
    if code == 0 {
        return Ok(());
    }
    let mut message = source
        .get("grpc-message")
        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
        .unwrap_or_default();
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE) {
        message.truncate(cut);
        message.push_str("...");
    }
    Err(GrpcCheckError::CallFailed(code, message))
}

/// The verdict on a finished call: status 200, `grpc-status` 0, one `SERVING` message.
pub fn verdict(
    status: u16,
    headers: &HeaderMap,
    trailers: Option<&HeaderMap>,
    body: &[u8],
) -> Result<(), GrpcCheckError> {
    if status != 200 {
        return Err(GrpcCheckError::HttpStatus(status));
    }
    grpc_status(headers, trailers)?;
    match decode_response(body).map_err(GrpcCheckError::Malformed)? {
        ServingStatus::Serving => Ok(()),
        other => Err(GrpcCheckError::NotServing(other)),
    }
}

/// A `grpc.health.v1.Health/Check` call per backend.
pub struct GrpcCheck {
    connector: HttpConnector,
    peer_template: HttpPeer,
    /// `:authority` for every backend (the TLS server name); empty for the backend address.
    authority: String,
    body: Bytes,
    timeout: Duration,
}

impl GrpcCheck {
    /// A check of `service` ("" for the whole server) with `peer` as the template for every
    /// backend (its TLS settings apply); its ALPN is set to `h2` only, `timeout` bounds the
    /// connect, each read and each write. `authority` is sent as
    /// `:authority` (empty: the backend's address).
    pub fn new(mut peer: HttpPeer, service: &str, authority: String, timeout: Duration) -> Self {
        peer.options.alpn = ALPN::H2;
        // One stream per connection: Pingora then keeps no connection in its pool, and every
        // check connects afresh, as the other check types do.
        peer.options.max_h2_streams = 1;
        peer.options.connection_timeout = Some(timeout);
        peer.options.read_timeout = Some(timeout);
        peer.options.write_timeout = Some(timeout);
        GrpcCheck {
            connector: HttpConnector::new(None),
            peer_template: peer,
            authority,
            body: Bytes::from(encode_request(service)),
            timeout,
        }
    }

    fn request(&self, target: &Backend) -> Result<RequestHeader> {
        let mut req = RequestHeader::build("POST", CHECK_PATH.as_bytes(), None)?;
        let authority = match self.authority.is_empty() {
            true => target.addr.to_string(),
            false => self.authority.clone(),
        };
        req.insert_header("host", authority)?;
        req.insert_header("content-type", "application/grpc")?;
        req.insert_header("te", "trailers")?;
        req.insert_header("user-agent", "fulcrum-health-check")?;
        Ok(req)
    }
}

#[async_trait]
impl HealthCheck for GrpcCheck {
    fn health_threshold(&self, _success: bool) -> usize {
        1
    }

    async fn check(&self, target: &Backend) -> Result<()> {
        let mut peer = self.peer_template.clone();
        peer._address = target.addr.clone();
        let (mut session, _) = self.connector.get_http_session(&peer).await?;
        session.set_read_timeout(Some(self.timeout));
        session.set_write_timeout(Some(self.timeout));
        let HttpSession::H2(h2) = &mut session else {
            return Err(GrpcCheckError::NotHttp2.into_pingora());
        };
        h2.write_request_header(Box::new(self.request(target)?), false)?;
        h2.write_request_body(self.body.clone(), true).await?;
        h2.read_response_header().await?;
        let (status, headers) = match h2.response_header() {
            Some(resp) => (resp.status.as_u16(), resp.headers.clone()),
            None => return Error::e_explain(ErrorType::InvalidHTTPHeader, "no response header"),
        };
        let mut body = Vec::new();
        while let Some(chunk) = h2.read_response_body().await? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(GrpcCheckError::BodyTooLarge.into_pingora());
            }
            body.extend_from_slice(&chunk);
        }
        let trailers = h2.read_trailers().await?;
        verdict(status, &headers, trailers.as_ref(), &body).map_err(GrpcCheckError::into_pingora)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const SERVING: &[u8] = &[0, 0, 0, 0, 2, 0x08, 0x01];

    #[test]
    fn serving_with_status_zero_in_trailers_passes() {
        let ok = headers(&[("grpc-status", "0")]);
        assert_eq!(verdict(200, &HeaderMap::new(), Some(&ok), SERVING), Ok(()));
    }

    #[test]
    fn each_failure_has_its_reason() {
        let h = HeaderMap::new();
        let ok = headers(&[("grpc-status", "0")]);
        let not_found = headers(&[("grpc-status", "5"), ("grpc-message", "unknown service")]);
        let cases = [
            (503, &h, Some(&ok), SERVING, "HTTP status 503, expected 200"),
            (200, &h, None, SERVING, "response carries no grpc-status"),
            (
                200,
                &not_found,
                None,
                &[][..],
                "grpc-status 5: unknown service",
            ),
            (
                200,
                &h,
                Some(&ok),
                &[0, 0, 0, 0, 2, 0x08, 0x02][..],
                "serving status NOT_SERVING, expected SERVING",
            ),
            (
                200,
                &h,
                Some(&ok),
                &[][..],
                "response body of 0 bytes holds no gRPC message",
            ),
        ];
        for (status, hdrs, trailers, body, want) in cases {
            let got = verdict(status, hdrs, trailers, body).unwrap_err();
            assert_eq!(got.to_string(), want);
        }
    }

    #[test]
    fn a_non_numeric_grpc_status_fails() {
        let bad = headers(&[("grpc-status", "ok")]);
        assert_eq!(
            verdict(200, &HeaderMap::new(), Some(&bad), SERVING),
            Err(GrpcCheckError::BadGrpcStatus("ok".into()))
        );
    }

    #[test]
    fn trailers_decide_over_headers_and_long_messages_are_cut() {
        let head_ok = headers(&[("grpc-status", "0")]);
        let long = "x".repeat(300);
        let mut trailers = headers(&[("grpc-status", "14")]);
        trailers.insert("grpc-message", long.parse().unwrap());
        let got = verdict(200, &head_ok, Some(&trailers), SERVING).unwrap_err();
        assert_eq!(
            got,
            GrpcCheckError::CallFailed(14, format!("{}...", "x".repeat(MAX_MESSAGE)))
        );
    }
}
