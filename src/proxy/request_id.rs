//! Request ids: taken from a client's `X-Request-Id` when it is sane, otherwise generated;
//! forwarded upstream, returned to the client and written to the access log.

use crate::balancer::fast_rng;
use http::{HeaderName, HeaderValue};
use pingora_http::RequestHeader;

/// The header name.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id accepted from a client.
const MAX_LEN: usize = 128;

/// The request's id: the client's if it is 1 to 128 visible ASCII characters, else a new one.
pub fn of(req: &RequestHeader) -> HeaderValue {
    if let Some(v) = req.headers.get(&HEADER) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= MAX_LEN && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    generate()
}

/// 32 random hex characters.
pub fn generate() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (half, chunk) in out.chunks_mut(16).enumerate() {
        let mut x = fast_rng::next_u64() ^ (half as u64).rotate_left(32);
        for c in chunk.iter_mut() {
            *c = HEX[(x & 15) as usize];
            x >>= 4;
        }
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_and_replaces_others() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(of(&r).len(), 32);
        r.insert_header(HEADER, "abc-123").unwrap();
        assert_eq!(of(&r), "abc-123");
        r.insert_header(HEADER, "x".repeat(200)).unwrap();
        assert_eq!(of(&r).len(), 32);
        r.insert_header(HEADER, "has space").unwrap();
        assert_ne!(of(&r), "has space");
        assert_ne!(generate(), generate());
    }
}
