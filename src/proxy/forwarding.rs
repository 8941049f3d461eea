//! Forwarding headers: X-Forwarded-For/-Proto/-Host, RFC 7239 `Forwarded`, `Via`, and the
//! client IP that hashing and logs use.
//!
//! Headers that arrive from a peer in `trusted_proxies` are believed and extended; from anyone
//! else they are replaced (or removed when fulcrum is told not to send them), so a client
//! cannot make a backend believe a forged address. `X-Real-IP`, which fulcrum does not send,
//! is removed unless it comes from a trusted proxy.
//!
//! The same names spelled with underscores (`X_Forwarded_For`, `x_real_ip`) are removed from
//! every request, trusted peer or not ([`drop_underscore_lookalikes`]): some frameworks read
//! them as the dashed names (CGI turns both into `HTTP_X_FORWARDED_FOR`), so a client could
//! forge an address past the checks above; a real proxy sends the dashed spelling. nginx
//! ignores every header with an underscore by default (`underscores_in_headers off`).

use super::head::Head;
use super::survey::Present;
use crate::config::model::{canonical_ip, Forwarding};
use http::header::{HeaderMap, HeaderName, FORWARDED, HOST, VIA as VIA_NAME};
use http::HeaderValue;
use pingora_http::RequestHeader;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

/// The pseudonym fulcrum uses in `Via`.
pub const VIA: &str = "1.1 fulcrum";

// Names looked up or removed on every request, parsed once.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The headers whose underscore spellings are removed: those fulcrum sets or vets, and
/// `X-Forwarded-Port`, which frameworks read with the others (lowercase, dashed).
const UNDERSCORE_GUARDED: [&str; 6] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "x-request-id",
];

/// Whether a (lowercase) header name has an underscore and, with each `_` read as `-`, is one
/// of [`UNDERSCORE_GUARDED`].
fn is_underscore_lookalike(name: &str) -> bool {
    name.contains('_')
        && UNDERSCORE_GUARDED.iter().any(|g| {
            g.len() == name.len()
                && g.bytes()
                    .zip(name.bytes())
                    .all(|(g, n)| g == n.to_ascii_lowercase() || (g == b'-' && n == b'_'))
        })
}

/// Remove every header that spells a forwarding header (or the request id) with underscores.
pub fn drop_underscore_lookalikes(req: &mut dyn Head) {
    // Names without an underscore, the usual case, cost one scan and no allocation.
    if !req.fields().keys().any(|k| k.as_str().contains('_')) {
        return;
    }
    let spoofs: Vec<HeaderName> = req
        .fields()
        .keys()
        .filter(|k| is_underscore_lookalike(k.as_str()))
        .cloned()
        .collect();
    for name in &spoofs {
        req.remove(name);
    }
}

/// All values of a header joined with ", " (header lines may repeat).
fn joined(fields: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in fields.get_all(name) {
        let v = v.to_str().ok()?.trim();
        if v.is_empty() {
            continue;
        }
        match &mut out {
            Some(s) => {
                s.push_str(", ");
                s.push_str(v);
            }
            None => out = Some(v.to_string()),
        }
    }
    out
}

/// The client's IP: the peer, or, when the peer is a trusted proxy, the rightmost address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(fwd: &Forwarding, req: &RequestHeader, peer: IpAddr) -> IpAddr {
    let peer = canonical_ip(peer);
    if fwd.trusted_proxies.is_empty() || !fwd.is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for value in req.headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for item in text.rsplit(',') {
            let Ok(ip) = item.trim().parse::<IpAddr>() else {
                return client;
            };
            let ip = canonical_ip(ip);
            client = ip;
            if !fwd.is_trusted(ip) {
                return ip;
            }
        }
    }
    client
}

/// An IP address as a header value. IPv4, the common case, is written without `fmt`.
fn ip_value(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static(""));
    };
    HeaderValue::from_bytes(ipv4_text(v4, &mut [0; 15])).unwrap_or(HeaderValue::from_static(""))
}

/// Dotted-decimal IPv4 into `buf`, returning the written part.
fn ipv4_text(ip: Ipv4Addr, buf: &mut [u8; 15]) -> &[u8] {
    let mut n = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    &buf[..n]
}

/// An RFC 7239 node for an IP: IPv6 quoted and bracketed.
fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// Set the forwarding headers on a request going upstream. `present` says which of the
/// fields read or removed here the request may carry (see `survey`): absent ones are neither
/// looked up nor removed.
pub fn apply(
    fwd: &Forwarding,
    req: &mut dyn Head,
    peer: IpAddr,
    host: Option<&str>,
    proto: &'static str,
    present: Present,
) {
    let peer = canonical_ip(peer);
    let trusted = !fwd.trusted_proxies.is_empty() && fwd.is_trusted(peer);
    if present.has(Present::UNDERSCORE) {
        drop_underscore_lookalikes(req);
    }
    // Remove a field the request carries.
    let drop = |req: &mut dyn Head, field: Present, name: &HeaderName| {
        if present.has(field) {
            req.remove(name);
        }
    };

    if fwd.x_forwarded_for {
        // A chain is only read from a trusted peer.
        let chain = if trusted && present.has(Present::X_FORWARDED_FOR) {
            joined(req.fields(), &X_FORWARDED_FOR)
        } else {
            None
        };
        let value = match chain {
            Some(mut chain) => {
                let _ = write!(chain, ", {peer}");
                HeaderValue::from_str(&chain).ok()
            }
            None => Some(ip_value(peer)),
        };
        match value {
            Some(v) => req.set(&X_FORWARDED_FOR, v),
            None => req.remove(&X_FORWARDED_FOR),
        }
    } else if !trusted {
        drop(req, Present::X_FORWARDED_FOR, &X_FORWARDED_FOR);
    }

    let keep = |req: &dyn Head, field: Present, name: &HeaderName| {
        trusted && present.has(field) && req.fields().contains_key(name)
    };
    if fwd.x_forwarded_proto {
        if !keep(req, Present::X_FORWARDED_PROTO, &X_FORWARDED_PROTO) {
            req.set(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        }
    } else if !trusted {
        drop(req, Present::X_FORWARDED_PROTO, &X_FORWARDED_PROTO);
    }

    if fwd.x_forwarded_host {
        if !keep(req, Present::X_FORWARDED_HOST, &X_FORWARDED_HOST) {
            // The Host header's own value is shared, not copied.
            let value = match (host, req.fields().get(HOST)) {
                (Some(h), Some(v)) if v.as_bytes() == h.as_bytes() => Some(v.clone()),
                (Some(h), _) => HeaderValue::from_str(h).ok(),
                (None, _) => None,
            };
            match value {
                Some(h) => req.set(&X_FORWARDED_HOST, h),
                None => req.remove(&X_FORWARDED_HOST),
            }
        }
    } else if !trusted {
        drop(req, Present::X_FORWARDED_HOST, &X_FORWARDED_HOST);
    }

    if fwd.forwarded {
        let mut element = format!("for={}", forwarded_node(peer));
        // A quoted-string cannot hold `"` or `\` as they are (no valid host has them).
        if let Some(h) = host.filter(|h| !h.contains(['"', '\\'])) {
            let _ = write!(element, ";host=\"{h}\"");
        }
        let _ = write!(element, ";proto={proto}");
        let chain = if trusted && present.has(Present::FORWARDED) {
            joined(req.fields(), &FORWARDED)
        } else {
            None
        };
        let value = match chain {
            Some(chain) => format!("{chain}, {element}"),
            None => element,
        };
        match HeaderValue::from_str(&value) {
            Ok(v) => req.set(&FORWARDED, v),
            Err(_) => req.remove(&FORWARDED),
        }
    } else if !trusted {
        drop(req, Present::FORWARDED, &FORWARDED);
    }

    if !trusted {
        drop(req, Present::X_REAL_IP, &X_REAL_IP);
    }

    if fwd.via {
        set_via(req, present.has(Present::VIA));
    }
}

/// Add fulcrum to a message's `Via` chain (RFC 9110 section 7.6.3); `may_have_via` false
/// when the message is known to carry none.
pub fn set_via(head: &mut dyn Head, may_have_via: bool) {
    let chain = may_have_via
        .then(|| joined(head.fields(), &VIA_NAME))
        .flatten();
    let value = match chain {
        Some(chain) => HeaderValue::from_str(&format!("{chain}, {VIA}")).ok(),
        None => Some(HeaderValue::from_static(VIA)),
    };
    match value {
        Some(v) => head.set(&VIA_NAME, v),
        None => head.remove(&VIA_NAME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underscore_lookalikes_are_recognized() {
        for n in [
            "x_forwarded_for",
            "x_forwarded-for",
            "x-forwarded_proto",
            "x_forwarded_host",
            "x_forwarded_port",
            "x_real_ip",
            "x_request_id",
        ] {
            assert!(is_underscore_lookalike(n), "{n}");
        }
        for n in [
            "x-forwarded-for",
            "x-real-ip",
            "x_custom_header",
            "x_forwarded_forx",
            "forwarded",
            "x__forwarded_for",
        ] {
            assert!(!is_underscore_lookalike(n), "{n}");
        }
    }

    #[test]
    fn underscore_lookalikes_are_dropped_from_every_peer_and_others_kept() {
        let mut r = req(&[
            ("X_Forwarded_For", "6.6.6.6"),
            ("X_Real_IP", "6.6.6.6"),
            ("x_request_id", "forged"),
            ("X_Custom", "kept"),
            ("X-Real-IP", "1.1.1.1"),
        ]);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        apply(
            &fwd(&["10.0.0.0/8"]),
            &mut r,
            peer,
            Some("h"),
            "http",
            Present::ALL,
        );
        assert!(r.headers.get("x_forwarded_for").is_none());
        assert!(r.headers.get("x_real_ip").is_none());
        assert!(r.headers.get("x_request_id").is_none());
        assert_eq!(r.headers.get("x_custom").unwrap(), "kept");
        // From a trusted peer the dashed X-Real-IP is kept.
        assert_eq!(r.headers.get("x-real-ip").unwrap(), "1.1.1.1");
        assert_eq!(r.headers.get("x-forwarded-for").unwrap(), "10.0.0.1");
    }

    fn fwd(trusted: &[&str]) -> Forwarding {
        Forwarding {
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            forwarded: true,
            ..Forwarding::default()
        }
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn get(r: &RequestHeader, name: &str) -> String {
        r.headers.get(name).unwrap().to_str().unwrap().to_string()
    }

    #[test]
    fn untrusted_peer_headers_are_replaced() {
        let f = fwd(&["10.0.0.0/8"]);
        let mut r = req(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        apply(&f, &mut r, peer, Some("example.com"), "http", Present::ALL);
        assert_eq!(get(&r, "x-forwarded-for"), "192.0.2.7");
        assert_eq!(get(&r, "x-forwarded-proto"), "http");
        assert_eq!(get(&r, "x-forwarded-host"), "example.com");
        assert_eq!(
            get(&r, "forwarded"),
            "for=192.0.2.7;host=\"example.com\";proto=http"
        );
        assert_eq!(get(&r, "via"), "1.1 fulcrum");
        assert_eq!(client_ip(&f, &r, peer), peer);
    }

    #[test]
    fn trusted_peer_headers_are_extended() {
        let f = fwd(&["10.0.0.0/8"]);
        let mut r = req(&[
            ("x-forwarded-for", "1.2.3.4, 10.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            client_ip(&f, &r, peer),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        apply(&f, &mut r, peer, Some("example.com"), "http", Present::ALL);
        assert_eq!(get(&r, "x-forwarded-for"), "1.2.3.4, 10.1.1.1, 10.0.0.2");
        assert_eq!(get(&r, "x-forwarded-proto"), "https");
    }

    #[test]
    fn ipv6_forwarded_node_is_quoted() {
        let f = fwd(&[]);
        let mut r = req(&[]);
        apply(
            &f,
            &mut r,
            "::1".parse().unwrap(),
            None,
            "http",
            Present::ALL,
        );
        assert_eq!(get(&r, "forwarded"), "for=\"[::1]\";proto=http");
    }

    #[test]
    fn hosts_that_would_break_the_quoted_string_are_left_out() {
        // Found by fuzz/ (forwarding): a Host of `\` left the quoted-string open.
        for host in ["a\\", "a\"b"] {
            let mut r = req(&[]);
            apply(
                &fwd(&[]),
                &mut r,
                "192.0.2.7".parse().unwrap(),
                Some(host),
                "http",
                Present::ALL,
            );
            assert_eq!(get(&r, "forwarded"), "for=192.0.2.7;proto=http");
        }
    }

    #[test]
    fn garbage_in_a_trusted_chain_stops_the_walk() {
        let f = fwd(&["127.0.0.1/32"]);
        let r = req(&[("x-forwarded-for", "nonsense, 5.6.7.8")]);
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(&f, &r, peer),
            "5.6.7.8".parse::<IpAddr>().unwrap()
        );
    }
}
