//! One pass over a request's header fields, before anything else reads them: the size of the
//! head's field lines, and which of the fields fulcrum reads, replaces or removes are there at
//! all.
//!
//! Looking a name up in a header map hashes it and probes the table, and removing a name
//! that is not there costs as much as removing one that is. Most requests carry none of the
//! forwarding, tracing and request-id fields, so fulcrum notes once, in a walk over the
//! names (compared by length first), which of them a request has, and later steps skip the
//! lookups and removals of fields that are absent. A request's fields do not change between
//! the survey and those steps, except by fulcrum itself (a `Host` made from an absolute-form
//! target, which is not surveyed).

use http::HeaderMap;

/// A set of surveyed fields, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Present(u16);

impl Present {
    /// `X-Request-Id`.
    pub const X_REQUEST_ID: Present = Present(1);
    /// `traceparent`.
    pub const TRACEPARENT: Present = Present(1 << 1);
    /// `tracestate`.
    pub const TRACESTATE: Present = Present(1 << 2);
    /// `X-Forwarded-For`.
    pub const X_FORWARDED_FOR: Present = Present(1 << 3);
    /// `X-Forwarded-Proto`.
    pub const X_FORWARDED_PROTO: Present = Present(1 << 4);
    /// `X-Forwarded-Host`.
    pub const X_FORWARDED_HOST: Present = Present(1 << 5);
    /// `Forwarded`.
    pub const FORWARDED: Present = Present(1 << 6);
    /// `X-Real-IP`.
    pub const X_REAL_IP: Present = Present(1 << 7);
    /// `Via`.
    pub const VIA: Present = Present(1 << 8);
    /// `Transfer-Encoding`.
    pub const TRANSFER_ENCODING: Present = Present(1 << 9);
    /// `Content-Length`.
    pub const CONTENT_LENGTH: Present = Present(1 << 11);
    /// Any name with an underscore (see `forwarding::drop_underscore_lookalikes`).
    pub const UNDERSCORE: Present = Present(1 << 10);
    /// Every field: what code that surveyed nothing assumes, so that it looks everything up.
    pub const ALL: Present = Present(u16::MAX);

    /// Whether every field of `other` is in the set.
    pub fn has(self, other: Present) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Present {
    type Output = Present;
    fn bitor(self, rhs: Present) -> Present {
        Present(self.0 | rhs.0)
    }
}

/// What one walk over a request's fields found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Survey {
    /// Bytes of the field lines as parsed: name, `": "`, value and CRLF for each field line.
    pub field_bytes: usize,
    /// The surveyed fields the request has.
    pub present: Present,
}

/// The surveyed field a (lowercase) name is, if any.
fn field_of(name: &str) -> Present {
    match name {
        "x-request-id" => Present::X_REQUEST_ID,
        "traceparent" => Present::TRACEPARENT,
        "tracestate" => Present::TRACESTATE,
        "x-forwarded-for" => Present::X_FORWARDED_FOR,
        "x-forwarded-proto" => Present::X_FORWARDED_PROTO,
        "x-forwarded-host" => Present::X_FORWARDED_HOST,
        "forwarded" => Present::FORWARDED,
        "x-real-ip" => Present::X_REAL_IP,
        "via" => Present::VIA,
        "transfer-encoding" => Present::TRANSFER_ENCODING,
        "content-length" => Present::CONTENT_LENGTH,
        _ if name.contains('_') => Present::UNDERSCORE,
        _ => Present::default(),
    }
}

/// Survey `fields`.
pub fn of(fields: &HeaderMap) -> Survey {
    let mut survey = Survey::default();
    for (name, value) in fields {
        let name = name.as_str();
        survey.field_bytes += name.len() + value.len() + 4;
        survey.present = survey.present | field_of(name);
    }
    survey
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn finds_each_surveyed_field_and_nothing_else() {
        let mut fields = HeaderMap::new();
        fields.insert("host", HeaderValue::from_static("a.example"));
        fields.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        fields.append("via", HeaderValue::from_static("1.1 a"));
        fields.append("via", HeaderValue::from_static("1.1 b"));
        let s = of(&fields);
        assert!(s.present.has(Present::X_FORWARDED_PROTO | Present::VIA));
        for absent in [
            Present::X_REQUEST_ID,
            Present::TRACEPARENT,
            Present::TRACESTATE,
            Present::X_FORWARDED_FOR,
            Present::X_FORWARDED_HOST,
            Present::FORWARDED,
            Present::X_REAL_IP,
            Present::TRANSFER_ENCODING,
            Present::CONTENT_LENGTH,
            Present::UNDERSCORE,
        ] {
            assert!(!s.present.has(absent), "{absent:?}");
        }
        // host: a.example / x-forwarded-proto: https / via: 1.1 a / via: 1.1 b
        assert_eq!(s.field_bytes, (4 + 9 + 4) + (17 + 5 + 4) + 2 * (3 + 5 + 4));
    }

    #[test]
    fn notes_underscores_and_the_rest() {
        let mut fields = HeaderMap::new();
        for name in [
            "x_forwarded_for",
            "x-request-id",
            "traceparent",
            "tracestate",
            "x-forwarded-for",
            "x-forwarded-host",
            "forwarded",
            "x-real-ip",
            "transfer-encoding",
            "content-length",
        ] {
            fields.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        let s = of(&fields);
        assert_eq!(s.present, Present(0b1110_1110_1111));
        assert!(!s.present.has(Present::VIA) && !s.present.has(Present::X_FORWARDED_PROTO));
        assert!(Present::ALL.has(Present::VIA | Present::UNDERSCORE));
    }
}
