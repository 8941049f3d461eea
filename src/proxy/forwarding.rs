//! Forwarding headers: X-Forwarded-For/-Proto/-Host, RFC 7239 `Forwarded`, `Via`, and the
//! client IP that hashing and logs use.
//!
//! Headers that arrive from a peer in `trusted_proxies` are believed and extended; from anyone
//! else they are replaced (or removed when fulcrum is told not to send them), so a client
//! cannot make a backend believe a forged address. `X-Real-IP`, which fulcrum does not send,
//! is removed unless it comes from a trusted proxy.

use crate::config::model::{canonical_ip, Forwarding};
use http::header::{HeaderName, FORWARDED, VIA as VIA_NAME};
use http::HeaderValue;
use pingora_http::RequestHeader;
use std::fmt::Write;
use std::net::IpAddr;

/// The pseudonym fulcrum uses in `Via`.
pub const VIA: &str = "1.1 fulcrum";

// Names looked up or removed on every request, parsed once.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// All values of a header joined with ", " (header lines may repeat).
fn joined(req: &RequestHeader, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in req.headers.get_all(name) {
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
    for value in req.headers.get_all("x-forwarded-for").iter().rev() {
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

/// An RFC 7239 node for an IP: IPv6 quoted and bracketed.
fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// Set the forwarding headers on a request going upstream.
pub fn apply(
    fwd: &Forwarding,
    req: &mut RequestHeader,
    peer: IpAddr,
    host: Option<&str>,
    proto: &'static str,
) {
    let peer = canonical_ip(peer);
    let trusted = !fwd.trusted_proxies.is_empty() && fwd.is_trusted(peer);

    if fwd.x_forwarded_for {
        // A chain is only read from a trusted peer.
        let chain = if trusted {
            joined(req, &X_FORWARDED_FOR)
        } else {
            None
        };
        let value = match chain {
            Some(mut chain) => {
                let _ = write!(chain, ", {peer}");
                chain
            }
            None => peer.to_string(),
        };
        let _ = req.insert_header("x-forwarded-for", value);
    } else if !trusted {
        req.remove_header(&X_FORWARDED_FOR);
    }

    let keep = |req: &RequestHeader, name: &HeaderName| trusted && req.headers.contains_key(name);
    if fwd.x_forwarded_proto {
        if !keep(req, &X_FORWARDED_PROTO) {
            let _ = req.insert_header("x-forwarded-proto", HeaderValue::from_static(proto));
        }
    } else if !trusted {
        req.remove_header(&X_FORWARDED_PROTO);
    }

    if fwd.x_forwarded_host {
        if !keep(req, &X_FORWARDED_HOST) {
            // The Host header's own value is shared, not copied.
            let value = match (host, req.headers.get(http::header::HOST)) {
                (Some(h), Some(v)) if v.as_bytes() == h.as_bytes() => Some(v.clone()),
                (Some(h), _) => HeaderValue::from_str(h).ok(),
                (None, _) => None,
            };
            match value {
                Some(h) => {
                    let _ = req.insert_header("x-forwarded-host", h);
                }
                None => {
                    req.remove_header(&X_FORWARDED_HOST);
                }
            }
        }
    } else if !trusted {
        req.remove_header(&X_FORWARDED_HOST);
    }

    if fwd.forwarded {
        let mut element = format!("for={}", forwarded_node(peer));
        // A quoted-string cannot hold `"` or `\` as they are (no valid host has them).
        if let Some(h) = host.filter(|h| !h.contains(['"', '\\'])) {
            let _ = write!(element, ";host=\"{h}\"");
        }
        let _ = write!(element, ";proto={proto}");
        let chain = if trusted {
            joined(req, &FORWARDED)
        } else {
            None
        };
        let value = match chain {
            Some(chain) => format!("{chain}, {element}"),
            None => element,
        };
        let _ = req.insert_header("forwarded", value);
    } else if !trusted {
        req.remove_header(&FORWARDED);
    }

    if !trusted {
        req.remove_header(&X_REAL_IP);
    }

    if fwd.via {
        let _ = match joined(req, &VIA_NAME) {
            Some(chain) => req.insert_header("via", format!("{chain}, {VIA}")),
            None => req.insert_header("via", HeaderValue::from_static(VIA)),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        apply(&f, &mut r, peer, Some("example.com"), "http");
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
        apply(&f, &mut r, peer, Some("example.com"), "http");
        assert_eq!(get(&r, "x-forwarded-for"), "1.2.3.4, 10.1.1.1, 10.0.0.2");
        assert_eq!(get(&r, "x-forwarded-proto"), "https");
    }

    #[test]
    fn ipv6_forwarded_node_is_quoted() {
        let f = fwd(&[]);
        let mut r = req(&[]);
        apply(&f, &mut r, "::1".parse().unwrap(), None, "http");
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
