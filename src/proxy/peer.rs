//! Building the Pingora `HttpPeer` for each backend, once, from the group's settings.

use crate::config::model::{Backend, Upstream};
use pingora_core::upstreams::peer::HttpPeer;

/// The peer (address, TLS, timeouts) used to reach `backend`.
pub fn build(upstream: &Upstream, backend: &Backend) -> HttpPeer {
    let (tls, sni) = match &upstream.tls {
        Some(t) if t.sni.is_empty() => (true, backend.addr.ip().to_string()),
        Some(t) => (true, t.sni.clone()),
        None => (false, String::new()),
    };
    let mut peer = HttpPeer::new(backend.addr, tls, sni);
    let t = upstream.timeouts;
    peer.options.connection_timeout = Some(t.connect);
    peer.options.read_timeout = Some(t.read);
    peer.options.write_timeout = Some(t.write);
    peer.options.idle_timeout = Some(t.idle);
    if let Some(tls) = &upstream.tls {
        peer.options.verify_cert = tls.verify;
        peer.options.verify_hostname = tls.verify;
    }
    peer
}
