//! The TLS handshake of an HTTPS listener, inside the connection limits.
//!
//! Pingora can run a listener's TLS handshake in its accept loop, before the application sees
//! the connection: uncounted, and with a fixed 60 s timeout, so a flood of clients that open a
//! connection and send nothing (or half a ClientHello) holds sockets and tasks no limit sees.
//! fulcrum's HTTPS listeners therefore listen on plain TCP, and
//! [`Guarded`](super::connection::Guarded) runs [`TlsHandshake::accept`] once the connection
//! holds its permit under `limits.max_connections`.
//!
//! The handshake must end within its window ([`handshake_window`]) of accepting the connection:
//! `limits.handshake_timeout` (nginx's `ssl_handshake_timeout`, HAProxy's
//! `timeout client-hs`), never more than `limits.header_timeout`, whose deadline also counts
//! from accept and covers the handshake and the first request head together.

use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, Stream};
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// How long a handshake may take from accept: `handshake_timeout`, capped by `header_timeout`
/// (which runs from accept too, so a handshake longer than it leaves no time for a head).
pub fn handshake_window(handshake_timeout: Duration, header_timeout: Duration) -> Duration {
    handshake_timeout.min(header_timeout)
}

/// Why a client connection did not become a TLS connection.
#[derive(Debug)]
pub enum HandshakeError {
    /// The stream is not the TCP stream of Pingora's plain listener, which a listener given
    /// no TLS settings always hands over; the connection is closed.
    NotTcp,
    /// The handshake did not end within the window (the duration) from accept.
    Late(Duration),
    /// The handshake failed: not TLS, no common protocol or cipher, the client went away.
    Failed(Box<pingora_core::Error>),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::NotTcp => write!(f, "the connection is not a TCP stream"),
            HandshakeError::Late(window) => {
                write!(
                    f,
                    "the TLS handshake did not end within {window:?} of accept"
                )
            }
            HandshakeError::Failed(e) => write!(f, "the TLS handshake failed: {e}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// An HTTPS listener's TLS acceptor and its handshake window.
pub struct TlsHandshake {
    acceptor: Acceptor,
    window: Duration,
}

impl TlsHandshake {
    /// Handshakes with `acceptor` (a listener's certificates and ALPN), each within `window`
    /// of accept (see [`handshake_window`]).
    pub fn new(acceptor: Acceptor, window: Duration) -> Self {
        TlsHandshake { acceptor, window }
    }

    /// The TLS connection over `stream` (the plain TCP stream Pingora accepted at
    /// `accepted`), once the handshake ends within the window. ALPN and the TLS digest of
    /// the result are what Pingora's own TLS listener would give.
    pub async fn accept(&self, stream: Stream, accepted: Instant) -> Result<Stream, TlsFailure> {
        let tcp = match stream.into_any().downcast::<L4Stream>() {
            Ok(tcp) => tcp,
            Err(_) => return Err(TlsFailure::new(None, HandshakeError::NotTcp)),
        };
        let socket = tcp.get_socket_digest();
        let handshake = self.acceptor.tls_handshake(*tcp);
        let error = match tokio::time::timeout_at(accepted + self.window, handshake).await {
            Ok(Ok(tls)) => return Ok(Box::new(tls)),
            Ok(Err(e)) => HandshakeError::Failed(e),
            Err(_) => HandshakeError::Late(self.window),
        };
        let peer = socket.and_then(|s| s.peer_addr().cloned());
        Err(TlsFailure::new(peer, error))
    }
}

/// A failed handshake and the client it was with, for the log.
#[derive(Debug)]
pub struct TlsFailure {
    /// The client's address, when known.
    pub peer: Option<SocketAddr>,
    /// What went wrong.
    pub error: HandshakeError,
}

impl TlsFailure {
    fn new(peer: Option<SocketAddr>, error: HandshakeError) -> Self {
        TlsFailure { peer, error }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.peer {
            Some(peer) => write!(f, "client {peer}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for TlsFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_the_shorter_timeout() {
        let s = Duration::from_secs;
        assert_eq!(handshake_window(s(10), s(2)), s(2));
        assert_eq!(handshake_window(s(1), s(5)), s(1));
        assert_eq!(handshake_window(s(3), s(3)), s(3));
    }

    #[test]
    fn failures_name_the_client_and_the_window() {
        let peer = SocketAddr::Inet("192.0.2.7:4433".parse().unwrap());
        let late = TlsFailure::new(Some(peer), HandshakeError::Late(Duration::from_secs(2)));
        assert_eq!(
            late.to_string(),
            "client 192.0.2.7:4433: the TLS handshake did not end within 2s of accept"
        );
        let odd = TlsFailure::new(None, HandshakeError::NotTcp);
        assert_eq!(odd.to_string(), "the connection is not a TCP stream");
    }
}
