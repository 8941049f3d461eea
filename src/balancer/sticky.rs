//! Cookie-sticky sessions: which backend a cookie names, and the cookie that names one.
//!
//! A cookie value is a truncated HMAC-SHA256 of the backend's address under the group's
//! secret, so it identifies a backend without revealing where it is, and cannot be forged to
//! reach another. Values and `Set-Cookie` headers are computed once, at start-up.

use crate::config::model::{Backend, SameSite, StickyCookie};
use crate::request_fields::cookie;
use hmac::{Hmac, Mac};
use http::HeaderValue;
use pingora_http::RequestHeader;
use sha2::Sha256;
use std::collections::HashMap;
use std::fmt::Write;

/// Hex characters kept from the HMAC (80 bits).
const VALUE_LEN: usize = 20;

/// A group's sticky cookie, precomputed per backend.
#[derive(Debug)]
pub struct StickyCookies {
    name: String,
    by_value: HashMap<String, usize>,
    set_cookie: Vec<HeaderValue>,
}

/// The cookie value for a backend address under `secret`.
pub fn cookie_value(secret: &[u8], backend: &Backend) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => return String::new(),
    };
    mac.update(backend.addr.to_string().as_bytes());
    let mut hex = String::with_capacity(64);
    for b in mac.finalize().into_bytes() {
        let _ = write!(hex, "{b:02x}");
    }
    hex.truncate(VALUE_LEN);
    hex
}

impl StickyCookies {
    /// Precompute the cookie for each backend, by slot (`None`: a free slot).
    pub fn new(spec: &StickyCookie, backends: &[Option<&Backend>]) -> Self {
        let values: Vec<String> = backends
            .iter()
            .map(|b| b.map(|b| cookie_value(&spec.secret, b)).unwrap_or_default())
            .collect();
        let set_cookie = values
            .iter()
            .map(|v| {
                let mut c = format!("{}={v}; Path={}", spec.name, spec.path);
                if let Some(age) = spec.max_age {
                    let _ = write!(c, "; Max-Age={}", age.as_secs());
                }
                if spec.http_only {
                    c.push_str("; HttpOnly");
                }
                if spec.secure {
                    c.push_str("; Secure");
                }
                match spec.same_site {
                    Some(SameSite::Strict) => c.push_str("; SameSite=Strict"),
                    Some(SameSite::Lax) => c.push_str("; SameSite=Lax"),
                    Some(SameSite::None) => c.push_str("; SameSite=None"),
                    None => {}
                }
                HeaderValue::from_str(&c).unwrap_or(HeaderValue::from_static(""))
            })
            .collect();
        StickyCookies {
            name: spec.name.clone(),
            by_value: values
                .into_iter()
                .enumerate()
                .filter(|(_, v)| !v.is_empty())
                .map(|(i, v)| (v, i))
                .collect(),
            set_cookie,
        }
    }

    /// The backend (slot) the request's cookie names, if it names one of ours.
    pub fn backend_for(&self, req: &RequestHeader) -> Option<usize> {
        let value = cookie(req, &self.name)?;
        let value = std::str::from_utf8(value).ok()?;
        self.by_value.get(value).copied()
    }

    /// The `Set-Cookie` header value that pins a client to the backend at `index`.
    pub fn set_cookie(&self, index: usize) -> Option<&HeaderValue> {
        self.set_cookie.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> StickyCookie {
        StickyCookie {
            name: "sid".into(),
            path: "/".into(),
            max_age: Some(std::time::Duration::from_secs(3600)),
            http_only: true,
            secure: true,
            same_site: Some(SameSite::Strict),
            secret: b"0123456789abcdef".to_vec(),
        }
    }

    fn backends() -> Vec<Backend> {
        ["10.0.0.1:80", "10.0.0.2:80"]
            .iter()
            .map(|a| Backend {
                addr: a.parse().unwrap(),
                host: None,
                weight: 1,
            })
            .collect()
    }

    #[test]
    fn cookie_round_trip_without_revealing_the_address() {
        let b = backends();
        let s = StickyCookies::new(&spec(), &b.iter().map(Some).collect::<Vec<_>>());
        let header = s.set_cookie(1).unwrap().to_str().unwrap().to_string();
        assert!(!header.contains("10.0.0"), "{header}");
        assert!(header.ends_with("; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Strict"));
        let value = header.split(';').next().unwrap();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("cookie", format!("a=b; {value}"))
            .unwrap();
        assert_eq!(s.backend_for(&req), Some(1));
    }

    #[test]
    fn forged_or_foreign_values_name_nothing() {
        let b = backends();
        let s = StickyCookies::new(&spec(), &b.iter().map(Some).collect::<Vec<_>>());
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("cookie", "sid=10.0.0.1:80").unwrap();
        assert_eq!(s.backend_for(&req), None);
        let mut other = spec();
        other.secret = b"another secret, longer".to_vec();
        let foreign = cookie_value(&other.secret, &backends()[0]);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("cookie", format!("sid={foreign}"))
            .unwrap();
        assert_eq!(s.backend_for(&req), None);
    }
}
