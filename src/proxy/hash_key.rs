//! Extracting the hash key of a `consistent` upstream from a request.

use crate::config::model::HashKey;
/// Re-exported where hash keys have always found them.
pub use crate::request_fields::{cookie, query_param};
use pingora_http::RequestHeader;
use std::net::IpAddr;

/// Bytes to hash, borrowed from the request where possible.
pub enum KeyBytes<'a> {
    /// Borrowed from the request.
    Borrowed(&'a [u8]),
    /// An IP address in network order.
    Ip([u8; 16], usize),
}

impl KeyBytes<'_> {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            KeyBytes::Borrowed(b) => b,
            KeyBytes::Ip(buf, len) => &buf[..*len],
        }
    }
}

/// The key for `key` in this request; `None` when the request does not carry it.
pub fn extract<'a>(key: &HashKey, req: &'a RequestHeader, client: IpAddr) -> Option<KeyBytes<'a>> {
    let bytes = match key {
        HashKey::ClientIp => {
            let mut buf = [0u8; 16];
            let len = match client {
                IpAddr::V4(v4) => {
                    buf[..4].copy_from_slice(&v4.octets());
                    4
                }
                IpAddr::V6(v6) => {
                    buf.copy_from_slice(&v6.octets());
                    16
                }
            };
            return Some(KeyBytes::Ip(buf, len));
        }
        HashKey::Path => req.uri.path().as_bytes(),
        HashKey::Header(name) => req.headers.get(name)?.as_bytes(),
        HashKey::Cookie(name) => cookie(req, name)?,
        HashKey::Query(name) => query_param(req, name)?,
    };
    (!bytes.is_empty()).then_some(KeyBytes::Borrowed(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn empty_values_count_as_absent() {
        let r = req("/p?user=", &[]);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(extract(&HashKey::Query("user".into()), &r, ip).is_none());
        let k = extract(&HashKey::ClientIp, &r, ip).unwrap();
        assert_eq!(k.as_bytes(), &[127, 0, 0, 1]);
    }
}
