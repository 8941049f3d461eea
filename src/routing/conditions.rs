//! A route's `match:` conditions, checked against a request head.
//!
//! Methods: any listed method. Headers: every listed header must have a field line that meets
//! its condition (each line of a repeated header is tried on its own). Query: every listed
//! parameter must occur with a value that meets its condition (each occurrence is tried);
//! names and values are compared percent-decoded (`%31` is `1`; `+` stays `+`), so one
//! parameter has one spelling, as the path has.

use crate::config::model::{Matchers, ValueMatch};
use pingora_http::RequestHeader;
use std::borrow::Cow;

/// Why a request does not meet a route's conditions (the first unmet one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    /// The method is not listed.
    Method,
    /// The header (by name) is missing or no field line meets its condition.
    Header(String),
    /// The query parameter (by name) is missing or no occurrence meets its condition.
    Query(String),
}

impl std::fmt::Display for Unmet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unmet::Method => write!(f, "method not listed"),
            Unmet::Header(h) => write!(f, "header {h} does not match"),
            Unmet::Query(q) => write!(f, "query parameter {q} does not match"),
        }
    }
}

/// Whether `req` meets every condition of `m`.
pub fn holds(m: &Matchers, req: &RequestHeader) -> bool {
    first_unmet(m, req).is_none()
}

/// The first condition of `m` that `req` does not meet, if any.
pub fn first_unmet(m: &Matchers, req: &RequestHeader) -> Option<Unmet> {
    if !m.methods.is_empty() && !m.methods.contains(&req.method) {
        return Some(Unmet::Method);
    }
    for (name, condition) in &m.headers {
        let met = req
            .headers
            .get_all(name)
            .iter()
            .any(|v| condition.matches(v.as_bytes()));
        if !met {
            return Some(Unmet::Header(name.to_string()));
        }
    }
    if !m.query.is_empty() {
        let query = req.uri.query().unwrap_or("");
        for (name, condition) in &m.query {
            if !query_meets(query, name, condition) {
                return Some(Unmet::Query(name.clone()));
            }
        }
    }
    None
}

fn query_meets(query: &str, name: &str, condition: &ValueMatch) -> bool {
    query.split('&').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        !k.is_empty() && decode(k) == name.as_bytes() && condition.matches(&decode(v))
    })
}

/// `text` with its `%XX` escapes decoded (a malformed escape stays as written).
pub fn decode(text: &str) -> Cow<'_, [u8]> {
    let bytes = text.as_bytes();
    if !bytes.contains(&b'%') {
        return Cow::Borrowed(bytes);
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::ValueMatch;
    use http::{HeaderName, Method};

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn re(s: &str) -> ValueMatch {
        ValueMatch::Regex(regex::Regex::new(s).unwrap())
    }

    #[test]
    fn methods_headers_and_query() {
        let m = Matchers {
            methods: vec![Method::GET, Method::HEAD],
            headers: vec![(HeaderName::from_static("x-canary"), ValueMatch::Exact("true".into()))],
            query: vec![("beta".into(), ValueMatch::Exact("1".into()))],
        };
        let ok = req("GET", "/a?x=2&beta=1", &[("X-Canary", "true")]);
        assert_eq!(first_unmet(&m, &ok), None);
        let post = req("POST", "/a?beta=1", &[("x-canary", "true")]);
        assert_eq!(first_unmet(&m, &post), Some(Unmet::Method));
        let wrong = req("HEAD", "/a?beta=1", &[("x-canary", "True")]);
        assert_eq!(first_unmet(&m, &wrong), Some(Unmet::Header("x-canary".into())));
        let no_query = req("GET", "/a", &[("x-canary", "true")]);
        assert_eq!(first_unmet(&m, &no_query), Some(Unmet::Query("beta".into())));
        // Percent-encoded names and values are the same parameter.
        let encoded = req("GET", "/a?b%65ta=%31", &[("x-canary", "true")]);
        assert_eq!(first_unmet(&m, &encoded), None);
    }

    #[test]
    fn any_field_line_or_occurrence_may_match() {
        let m = Matchers {
            headers: vec![(HeaderName::from_static("x-v"), re("^v[0-9]+$"))],
            query: vec![("t".into(), ValueMatch::Present)],
            ..Matchers::default()
        };
        assert!(holds(&m, &req("GET", "/?t", &[("x-v", "beta"), ("x-v", "v2")])));
        assert!(!holds(&m, &req("GET", "/?t", &[("x-v", "v2x")])));
        assert!(holds(&m, &req("GET", "/?a=1&t=", &[("x-v", "v10")])));
        assert!(!holds(&m, &req("GET", "/?tt=1", &[("x-v", "v10")])));
    }

    #[test]
    fn malformed_escapes_stay() {
        assert_eq!(&*decode("a%zz%4"), b"a%zz%4");
        assert_eq!(&*decode("%41%2f"), b"A/");
        assert_eq!(&*decode("%4"), b"%4");
    }
}
