//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): fulcrum is one hop of a trace.
//!
//! A request with a valid `traceparent` continues its trace: the backend gets the same trace
//! id, fulcrum's own span id as the parent id, and the sampled flag as received; `tracestate`
//! goes along unchanged (cut to [`TRACESTATE_MAX_BYTES`] / [`TRACESTATE_MAX_MEMBERS`] when
//! longer, dropping whole members, as the spec allows). A request without one, or with one
//! that does not parse (several `traceparent` fields, version `ff`, upper-case hex, an
//! all-zero id, a version-00 value of the wrong length), starts a new trace: a random trace
//! id, flags `01` (sampled: fulcrum records every request in its access log), and no
//! `tracestate` (the spec forbids passing on the state of a trace that was not continued).
//!
//! Parsing reads the header bytes in place; the only allocation per request is the new
//! `traceparent` value.

use super::hex;
use super::survey::Present;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

/// The `traceparent` header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// Longest `tracestate` passed on (bytes, all fields joined); the spec asks for at least 512.
pub const TRACESTATE_MAX_BYTES: usize = 512;
/// Most `tracestate` list members passed on (the spec's maximum).
pub const TRACESTATE_MAX_MEMBERS: usize = 32;
/// Members longer than this are the first dropped when `tracestate` is cut (the spec's rule).
const LONG_MEMBER: usize = 128;
/// Length of a version-00 `traceparent`.
const TRACEPARENT_LEN: usize = 55;
/// The only flag of version 00: the caller recorded (sampled) this trace.
pub const SAMPLED: u8 = 0x01;

/// One request's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    /// The trace id (never zero).
    pub trace_id: u128,
    /// fulcrum's span id: the parent id the backend sees (never zero).
    pub span_id: u64,
    /// The caller's span id, when the trace was continued.
    pub parent_id: Option<u64>,
    /// Flags sent on: [`SAMPLED`] or 0.
    pub flags: u8,
}

/// A `traceparent` that parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// Trace id.
    pub trace_id: u128,
    /// The caller's span id.
    pub parent_id: u64,
    /// Trace flags as received.
    pub flags: u8,
}

/// Value of one lower-case hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Lower-case hex of exactly `text.len()` digits (at most 32).
fn hex(text: &[u8]) -> Option<u128> {
    text.iter()
        .try_fold(0u128, |acc, &b| Some(acc << 4 | u128::from(hex_digit(b)?)))
}

/// Parse one `traceparent` value; `None` when the spec says to ignore it.
pub fn parse_traceparent(value: &[u8]) -> Option<Parent> {
    if value.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = hex(&value[0..2])? as u8;
    // Version ff is forbidden; version 00 has exactly 55 characters; a later version may
    // append fields after a dash.
    if version == 0xff
        || (version == 0 && value.len() != TRACEPARENT_LEN)
        || (value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-')
    {
        return None;
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id = hex(&value[3..35])?;
    let parent_id = hex(&value[36..52])? as u64;
    let flags = hex(&value[53..55])? as u8;
    (trace_id != 0 && parent_id != 0).then_some(Parent {
        trace_id,
        parent_id,
        flags,
    })
}

/// The parent named by a request's headers: exactly one `traceparent` field that parses.
pub fn parent_of(headers: &HeaderMap) -> Option<Parent> {
    let mut all = headers.get_all(&TRACEPARENT).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    parse_traceparent(first.as_bytes())
}

/// A non-zero random `u64`.
fn random_u64() -> u64 {
    loop {
        let n = fastrand::u64(..);
        if n != 0 {
            return n;
        }
    }
}

/// This request's trace: continued from `parent`, or new.
pub fn trace_for(parent: Option<Parent>) -> Trace {
    let span_id = random_u64();
    match parent {
        Some(p) => Trace {
            trace_id: p.trace_id,
            span_id,
            parent_id: Some(p.parent_id),
            flags: p.flags & SAMPLED,
        },
        None => Trace {
            trace_id: u128::from(random_u64()) << 64 | u128::from(fastrand::u64(..)),
            span_id,
            parent_id: None,
            flags: SAMPLED,
        },
    }
}

/// The trace of a request with these headers (see the module doc); `present` says whether
/// they may hold a `traceparent` (see `survey`).
pub fn on_request(headers: &HeaderMap, present: Present) -> Trace {
    if !present.has(Present::TRACEPARENT) {
        return trace_for(None);
    }
    trace_for(parent_of(headers))
}

impl Trace {
    /// The `traceparent` sent to the backend: version 00, this trace, fulcrum as the parent.
    pub fn traceparent(&self) -> [u8; TRACEPARENT_LEN] {
        let mut out = [b'-'; TRACEPARENT_LEN];
        out[0] = b'0';
        out[1] = b'0';
        hex::write_u128(self.trace_id, &mut out[3..35]);
        hex::write_u128(u128::from(self.span_id), &mut out[36..52]);
        hex::write_u128(u128::from(self.flags), &mut out[53..55]);
        out
    }

    /// The trace id as 32 hex digits.
    pub fn trace_id_hex(&self) -> [u8; 32] {
        let mut out = [0; 32];
        hex::write_u128(self.trace_id, &mut out);
        out
    }

    /// The span id as 16 hex digits.
    pub fn span_id_hex(&self) -> [u8; 16] {
        let mut out = [0; 16];
        hex::write_u64(self.span_id, &mut out);
        out
    }
}

/// `tracestate` cut to the limits, or `None` when it is within them already (the common case:
/// passed on as received). Members over 128 bytes go first, then members from the end.
pub fn capped_tracestate(headers: &HeaderMap) -> Option<String> {
    let fields = headers.get_all(&TRACESTATE);
    let members = || {
        fields
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(|m| m.trim_ascii())
            .filter(|m| !m.is_empty())
    };
    // Fields joined with `,`.
    let bytes: usize = fields
        .iter()
        .map(|v| v.len() + 1)
        .sum::<usize>()
        .saturating_sub(1);
    if bytes <= TRACESTATE_MAX_BYTES && members().count() <= TRACESTATE_MAX_MEMBERS {
        return None;
    }
    let mut out = String::new();
    for (kept, m) in members().filter(|m| m.len() <= LONG_MEMBER).enumerate() {
        let extra = m.len() + usize::from(kept > 0);
        if kept == TRACESTATE_MAX_MEMBERS || out.len() + extra > TRACESTATE_MAX_BYTES {
            break;
        }
        if kept > 0 {
            out.push(',');
        }
        out.push_str(&String::from_utf8_lossy(m));
    }
    Some(out)
}

/// Set the trace headers of a request going to a backend: `traceparent` with fulcrum as the
/// parent; `tracestate` kept (capped) when the trace was continued, removed otherwise.
pub fn apply(trace: &Trace, head: &mut dyn super::head::Head, present: Present) {
    if !present.has(Present::TRACESTATE) {
        // Nothing to keep or remove.
    } else if trace.parent_id.is_none() {
        head.remove(&TRACESTATE);
    } else if let Some(cut) = capped_tracestate(head.fields()) {
        match HeaderValue::from_str(&cut) {
            Ok(v) if !cut.is_empty() => head.set(&TRACESTATE, v),
            _ => head.remove(&TRACESTATE),
        }
    }
    head.set(&TRACEPARENT, hex::value(trace.traceparent()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_parses() {
        let p = parse_traceparent(GOOD.as_bytes()).unwrap();
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.parent_id, 0x00f067aa0ba902b7);
        assert_eq!(p.flags, 1);
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-extra";
        let p = parse_traceparent(v.as_bytes()).unwrap();
        assert_eq!(p.flags, 3);
        assert_eq!(trace_for(Some(p)).flags, SAMPLED);
    }

    #[test]
    fn a_continued_trace_keeps_its_id_and_gets_a_new_parent() {
        let p = parse_traceparent(GOOD.as_bytes()).unwrap();
        let t = trace_for(Some(p));
        let sent = String::from_utf8(t.traceparent().to_vec()).unwrap();
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(sent.ends_with("-01"));
        assert_ne!(&sent[36..52], "00f067aa0ba902b7");
        assert_eq!(
            parse_traceparent(sent.as_bytes()).unwrap().parent_id,
            t.span_id
        );
    }

    #[test]
    fn an_unsampled_trace_stays_unsampled() {
        let v = GOOD.replace("-01", "-00");
        let t = trace_for(parse_traceparent(v.as_bytes()));
        assert_eq!(t.flags, 0);
        assert!(t.traceparent().ends_with(b"-00"));
    }

    #[test]
    fn a_new_trace_is_sampled_and_valid() {
        let t = trace_for(None);
        assert_eq!(t.parent_id, None);
        let p = parse_traceparent(&t.traceparent()).unwrap();
        assert_eq!(
            (p.trace_id, p.parent_id, p.flags),
            (t.trace_id, t.span_id, 1)
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn two_traceparent_fields_start_a_new_trace() {
        let h = headers(&[("traceparent", GOOD), ("traceparent", GOOD)]);
        assert_eq!(parent_of(&h), None);
        assert!(parent_of(&headers(&[("traceparent", GOOD)])).is_some());
    }

    #[test]
    fn short_tracestate_is_passed_as_is() {
        let h = headers(&[("tracestate", "a=1,b=2"), ("tracestate", "c=3")]);
        assert_eq!(capped_tracestate(&h), None);
    }

    #[test]
    fn long_tracestate_loses_long_then_last_members() {
        let long = format!("big={}", "x".repeat(200));
        let mut members: Vec<String> = (0..40).map(|i| format!("k{i}=v")).collect();
        members.insert(3, long);
        let h = headers(&[("tracestate", &members.join(","))]);
        let cut = capped_tracestate(&h).unwrap();
        let kept: Vec<&str> = cut.split(',').collect();
        assert_eq!(kept.len(), TRACESTATE_MAX_MEMBERS);
        assert_eq!(kept[3], "k3=v");
        assert_eq!(kept[31], "k31=v");

        let many: Vec<String> = (0..100)
            .map(|i| format!("key{i:03}={}", "v".repeat(20)))
            .collect();
        let h = headers(&[("tracestate", &many.join(","))]);
        let cut = capped_tracestate(&h).unwrap();
        assert!(cut.len() <= TRACESTATE_MAX_BYTES);
        assert!(cut.starts_with("key000="));
        assert!(!cut.ends_with(','));
    }
}
