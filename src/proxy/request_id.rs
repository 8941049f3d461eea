//! Request ids: taken from a client's `X-Request-Id` when it is sane, otherwise generated;
//! forwarded upstream, returned to the client and written to the access log.

use super::hex;
use super::survey::Present;
use super::trace_context::Trace;
use crate::balancer::fast_rng;
use http::{HeaderName, HeaderValue};
use pingora_http::RequestHeader;

/// The header name.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id accepted from a client.
const MAX_LEN: usize = 128;

/// The request's id: the client's if it is 1 to 128 visible ASCII characters, else a new one.
/// `present` says whether the request may carry one (see `survey`).
pub fn of(req: &RequestHeader, present: Present) -> HeaderValue {
    from_client(req, present).unwrap_or_else(generate)
}

/// The proxy's choice: the client's id, else the trace id of a trace fulcrum starts for the
/// request (unique and random like a generated id, and it ties the request's log line to its
/// trace), else a new random id.
pub fn for_request(req: &RequestHeader, present: Present, trace: Option<&Trace>) -> HeaderValue {
    if let Some(id) = from_client(req, present) {
        return id;
    }
    match trace {
        Some(t) if t.parent_id.is_none() => hex::value(t.trace_id_hex()),
        _ => generate(),
    }
}

/// The client's id, if it sent a sane one.
fn from_client(req: &RequestHeader, present: Present) -> Option<HeaderValue> {
    if !present.has(Present::X_REQUEST_ID) {
        return None;
    }
    let v = req.headers.get(&HEADER)?;
    let b = v.as_bytes();
    let sane = !b.is_empty() && b.len() <= MAX_LEN && b.iter().all(|c| c.is_ascii_graphic());
    sane.then(|| v.clone())
}

/// 32 random hex characters.
pub fn generate() -> HeaderValue {
    let mut out = [0u8; 32];
    let n = u128::from(fast_rng::next_u64()) << 64 | u128::from(fast_rng::next_u64());
    hex::write_u128(n, &mut out);
    hex::value(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_and_replaces_others() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(of(&r, Present::ALL).len(), 32);
        r.insert_header(HEADER, "abc-123").unwrap();
        assert_eq!(of(&r, Present::ALL), "abc-123");
        r.insert_header(HEADER, "x".repeat(200)).unwrap();
        assert_eq!(of(&r, Present::ALL).len(), 32);
        r.insert_header(HEADER, "has space").unwrap();
        assert_ne!(of(&r, Present::ALL), "has space");
        assert_ne!(generate(), generate());
    }
}
