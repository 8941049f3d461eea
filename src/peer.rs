//! Building the Pingora `HttpPeer` for each backend, once, from the group's settings.

use crate::config::model::{Backend, Timeouts, Upstream, UpstreamTls};
use crate::config::protocol::{Protocol, UpstreamProtocol};
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::{HttpPeer, PeerOptions};

/// The TLS server name for a backend: the group's `sni`, else the host name the backend was
/// written with, else its IP.
pub fn server_name(tls: &UpstreamTls, backend: &Backend) -> String {
    if !tls.sni.is_empty() {
        return tls.sni.clone();
    }
    backend
        .host
        .clone()
        .unwrap_or_else(|| backend.addr.ip().to_string())
}

/// Apply a group's verification settings to a peer's options (proxying and health checks).
pub fn apply_tls(options: &mut PeerOptions, tls: &UpstreamTls) {
    if tls.insecure_skip_verify {
        options.verify_cert = false;
        options.verify_hostname = false;
        // Pingora's rustls connector honours "no verification" only on its per-peer path,
        // which a per-peer CA list selects.
        options.ca = tls.ca.clone().or_else(crate::tls::placeholder_ca);
    } else {
        options.verify_cert = true;
        options.verify_hostname = true;
        options.ca = tls.ca.clone();
    }
}

/// The peer (address, TLS, timeouts) used to reach `backend` of the group whose pool key is
/// `group`.
///
/// Each group gets its own connection pool (`group_key`): Pingora's pool key covers the
/// address, SNI and verification flags but not the CA list, so without it a connection
/// verified for one group could be reused by another that trusts different CAs.
pub fn build(group: u64, upstream: &Upstream, backend: &Backend) -> HttpPeer {
    let (tls, sni) = match &upstream.tls {
        Some(t) => (true, server_name(t, backend)),
        None => (false, String::new()),
    };
    let mut peer = HttpPeer::new(backend.addr, tls, sni);
    peer.group_key = group;
    let t = upstream.timeouts;
    peer.options.connection_timeout = Some(t.connect);
    peer.options.read_timeout = Some(t.read);
    peer.options.write_timeout = Some(t.write);
    peer.options.idle_timeout = Some(t.idle);
    if let Some(tls) = &upstream.tls {
        apply_tls(&mut peer.options, tls);
    }
    apply_protocol(&mut peer.options, &upstream.protocol);
    peer
}

/// The ALPN a protocol offers. On a plaintext peer Pingora reads `ALPN::H2` as "HTTP/2 with
/// prior knowledge" (h2c): there is no negotiation, the connection starts with the preface.
pub fn alpn(protocol: Protocol) -> ALPN {
    match protocol {
        Protocol::H1 => ALPN::H1,
        Protocol::H2c | Protocol::H2 => ALPN::H2,
        Protocol::Auto => ALPN::H2H1,
    }
}

/// Apply a group's protocol to a peer's options (proxying and HTTP health checks): the ALPN
/// offered and how many streams one HTTP/2 connection carries.
pub fn apply_protocol(options: &mut PeerOptions, protocol: &UpstreamProtocol) {
    options.alpn = alpn(protocol.protocol);
    if protocol.protocol.may_use_h2() {
        options.max_h2_streams = protocol.max_h2_streams;
    }
}

/// Adapt a peer for an upgrade request (WebSocket): the 101 and then each direction of the
/// upgraded connection may stay silent for `timeouts.tunnel` instead of `timeouts.read`.
///
/// An upgrade needs HTTP/1.1: a group with `protocol: auto` offers only `http/1.1` for it.
pub fn for_tunnel(peer: &mut HttpPeer, timeouts: &Timeouts) {
    peer.options.read_timeout = Some(timeouts.tunnel);
    if peer.options.alpn == ALPN::H2H1 {
        peer.options.alpn = ALPN::H1;
    }
}

/// Adapt a peer for a gRPC call: the response head and each later read (a message, the
/// trailers) may wait `timeouts.stream_idle` instead of `timeouts.read`.
pub fn for_stream(peer: &mut HttpPeer, timeouts: &Timeouts) {
    peer.options.read_timeout = Some(timeouts.stream_idle);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::protocol::DEFAULT_MAX_H2_STREAMS;
    use std::time::Duration;

    fn group(protocol: Protocol, streams: usize) -> Upstream {
        let mut u =
            crate::balancer::test_upstream(crate::config::model::Algorithm::RoundRobin, &[1]);
        u.protocol = UpstreamProtocol {
            protocol,
            max_h2_streams: streams,
        };
        u
    }

    #[test]
    fn the_protocol_sets_alpn_and_h2_streams() {
        let cases = [
            (Protocol::H1, ALPN::H1, 1),
            (Protocol::H2c, ALPN::H2, 7),
            (Protocol::H2, ALPN::H2, 7),
            (Protocol::Auto, ALPN::H2H1, 7),
        ];
        for (protocol, alpn, streams) in cases {
            let u = group(protocol, 7);
            let peer = build(1, &u, &u.backends[0]);
            assert_eq!(peer.options.alpn, alpn, "{protocol:?}");
            // Pingora's default (1) stays for HTTP/1.1, where it means nothing.
            assert_eq!(peer.options.max_h2_streams, streams, "{protocol:?}");
        }
        assert_eq!(
            UpstreamProtocol::default().max_h2_streams,
            DEFAULT_MAX_H2_STREAMS
        );
    }

    #[test]
    fn an_upgrade_offers_only_http1_and_a_grpc_call_waits_stream_idle() {
        let u = group(Protocol::Auto, 100);
        let mut peer = build(1, &u, &u.backends[0]);
        for_tunnel(&mut peer, &u.timeouts);
        assert_eq!(peer.options.alpn, ALPN::H1);
        assert_eq!(peer.options.read_timeout, Some(u.timeouts.tunnel));

        let mut timeouts = u.timeouts;
        timeouts.stream_idle = Duration::from_secs(42);
        let mut peer = build(1, &u, &u.backends[0]);
        for_stream(&mut peer, &timeouts);
        assert_eq!(peer.options.read_timeout, Some(Duration::from_secs(42)));
        assert_eq!(peer.options.alpn, ALPN::H2H1);
    }
}
