//! What fulcrum knows of the client's connection: its peer address and its scheme.

use pingora_proxy::Session;
use std::net::{IpAddr, Ipv4Addr};

/// The TCP peer's IP (unspecified for a peer that is not an IP socket).
pub fn peer_ip(session: &Session) -> IpAddr {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip())
}

/// `https` when the client connection is TLS, else `http`.
pub fn scheme(session: &Session) -> &'static str {
    match session.digest().and_then(|d| d.ssl_digest.as_ref()) {
        Some(_) => "https",
        None => "http",
    }
}
