//! gRPC calls: recognising them, and answering one that fulcrum itself fails the way a gRPC
//! client understands (HTTP 200, `content-type: application/grpc`, a `grpc-status` and a
//! `grpc-message` in a trailers-only response), as Envoy does.

use http::{HeaderMap, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};

/// gRPC status codes fulcrum answers with (from the gRPC spec's `Code` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcStatus {
    /// 4: the backend did not answer in time.
    DeadlineExceeded = 4,
    /// 7: the client may not call this.
    PermissionDenied = 7,
    /// 8: a rate or size limit refused the call.
    ResourceExhausted = 8,
    /// 12: the call is not served here (e.g. a method fulcrum refuses).
    Unimplemented = 12,
    /// 13: something broke inside fulcrum.
    Internal = 13,
    /// 14: no backend could take the call; the client may retry.
    Unavailable = 14,
    /// 16: the client must authenticate first.
    Unauthenticated = 16,
}

/// Whether a request is a gRPC call: it came over HTTP/2 (gRPC runs on nothing else) and its
/// `content-type` is `application/grpc`, alone or with a `+format` suffix or parameters. An
/// HTTP/1.1 request that claims the type is a plain request: it gets plain timeouts and plain
/// error statuses, never a `200` carrying an error in a header.
pub fn is_grpc(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_2
        && req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                // Compared in place: no lowercase copy of the header per request.
                const TYPE: &str = "application/grpc";
                let ct = ct.trim_start();
                ct.get(..TYPE.len())
                    .is_some_and(|t| t.eq_ignore_ascii_case(TYPE))
                    && ct[TYPE.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| c == '+' || c == ';')
            })
}

/// The `grpc-status` a header block (a trailers-only head, or trailers) carries, if any.
pub fn status_in(headers: &HeaderMap) -> Option<u16> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
}

/// The gRPC status standing for an HTTP status fulcrum would have answered: the gRPC spec's
/// HTTP mapping, except that a timeout is DEADLINE_EXCEEDED and a refused size or rate
/// RESOURCE_EXHAUSTED (as Envoy's local replies say).
pub fn status_for(http_status: u16) -> GrpcStatus {
    match http_status {
        401 => GrpcStatus::Unauthenticated,
        403 => GrpcStatus::PermissionDenied,
        404 | 405 | 501 => GrpcStatus::Unimplemented,
        408 | 504 => GrpcStatus::DeadlineExceeded,
        413 | 429 => GrpcStatus::ResourceExhausted,
        502..=503 => GrpcStatus::Unavailable,
        _ => GrpcStatus::Internal,
    }
}

/// The trailers-only response for a gRPC call fulcrum fails with `http_status`: status 200,
/// `grpc-status`, and `message` (one line of printable ASCII, which needs no
/// percent-encoding once `%` is encoded) as `grpc-message`.
pub fn error_head(http_status: u16, message: &str) -> Option<ResponseHeader> {
    let mut resp = ResponseHeader::build(200, Some(4)).ok()?;
    resp.insert_header("content-type", "application/grpc")
        .ok()?;
    let code = status_for(http_status) as u8;
    resp.insert_header("grpc-status", code.to_string()).ok()?;
    let text = grpc_message(message);
    if !text.is_empty() {
        resp.insert_header("grpc-message", text).ok()?;
    }
    Some(resp)
}

/// `text` as a `grpc-message` value: trimmed, with `%` and anything outside printable ASCII
/// percent-encoded (the gRPC spec's encoding).
fn grpc_message(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len());
    for b in text.trim().bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ct: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/pkg.Svc/Call", None).unwrap();
        r.set_version(http::Version::HTTP_2);
        if let Some(ct) = ct {
            r.insert_header("content-type", ct).unwrap();
        }
        r
    }

    #[test]
    fn grpc_is_known_by_its_content_type() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC; x=y",
        ] {
            assert!(is_grpc(&req(Some(ct))), "{ct}");
        }
        for ct in [None, Some("application/json"), Some("application/grpc-web")] {
            assert!(!is_grpc(&req(ct)), "{ct:?}");
        }
        let mut http1 = req(Some("application/grpc"));
        http1.set_version(http::Version::HTTP_11);
        assert!(!is_grpc(&http1), "gRPC needs HTTP/2");
    }

    #[test]
    fn statuses_follow_envoys_mapping() {
        let cases = [
            (502, GrpcStatus::Unavailable),
            (503, GrpcStatus::Unavailable),
            (504, GrpcStatus::DeadlineExceeded),
            (429, GrpcStatus::ResourceExhausted),
            (413, GrpcStatus::ResourceExhausted),
            (404, GrpcStatus::Unimplemented),
            (400, GrpcStatus::Internal),
            (500, GrpcStatus::Internal),
        ];
        for (http, grpc) in cases {
            assert_eq!(status_for(http), grpc, "{http}");
        }
    }

    #[test]
    fn the_status_is_read_from_trailers() {
        let mut t = HeaderMap::new();
        assert_eq!(status_in(&t), None);
        t.insert("grpc-status", HeaderValue::from_static("14"));
        assert_eq!(status_in(&t), Some(14));
        t.insert("grpc-status", HeaderValue::from_static("x"));
        assert_eq!(status_in(&t), None);
    }

    #[test]
    fn the_error_head_is_trailers_only_grpc() {
        let head = error_head(503, "503 Service Unavailable: 100% busy\n").unwrap();
        assert_eq!(head.status.as_u16(), 200);
        let h = |n: &str| head.headers.get(n).unwrap().to_str().unwrap().to_string();
        assert_eq!(h("content-type"), "application/grpc");
        assert_eq!(h("grpc-status"), "14");
        assert_eq!(h("grpc-message"), "503 Service Unavailable: 100%25 busy");
    }
}
