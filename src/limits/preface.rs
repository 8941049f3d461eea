//! Telling a prior-knowledge HTTP/2 client from an HTTP/1 one on an `h2c: true` listener.
//!
//! An h2c client starts with the 24-byte HTTP/2 connection preface; an HTTP/1 request differs
//! from it within its first bytes (`GET` is not `PRI`), but may be shorter than 24 bytes in
//! all (`GET / HTTP/1.0\r\n\r\n` is 18). Pingora's own check reads exactly 24 bytes, so such
//! a request waits for bytes that never come. [`sniff`] decides on the first byte that
//! differs from the preface, or on the whole preface, and puts the bytes it read back in
//! front of the stream for whichever protocol reads next.

use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use std::fmt;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

/// The HTTP/2 connection preface, which prior-knowledge h2c clients send first.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a plain-text client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// It sent the HTTP/2 preface.
    Http2,
    /// Its first bytes are not the HTTP/2 preface.
    Http1,
}

/// The protocol of a connection whose first bytes are `seen`; `None` while they are a proper
/// prefix of the preface (more bytes decide).
pub fn classify(seen: &[u8]) -> Option<Protocol> {
    let n = seen.len().min(H2_PREFACE.len());
    if seen[..n] != H2_PREFACE[..n] {
        Some(Protocol::Http1)
    } else if n == H2_PREFACE.len() {
        Some(Protocol::Http2)
    } else {
        None
    }
}

/// Why a connection ended before its protocol was known.
#[derive(Debug)]
pub enum SniffError {
    /// The stream is not the TCP stream of Pingora's plain listener.
    NotTcp,
    /// The client closed the connection first.
    Closed,
    /// Reading failed.
    Io(std::io::Error),
    /// The deadline passed first.
    Late,
}

impl fmt::Display for SniffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SniffError::NotTcp => write!(f, "the connection is not a TCP stream"),
            SniffError::Closed => write!(f, "the client closed before its first request"),
            SniffError::Io(e) => write!(f, "reading the first bytes failed: {e}"),
            SniffError::Late => write!(f, "no request before the head deadline"),
        }
    }
}

impl std::error::Error for SniffError {}

/// Read the first bytes of `stream` (a plain TCP stream from Pingora's listener) until
/// [`classify`] decides, at the latest by `deadline`; returns the stream with those bytes
/// put back in front (the next read returns them) and the protocol.
pub async fn sniff(stream: Stream, deadline: Instant) -> Result<(Stream, Protocol), SniffError> {
    let Ok(mut tcp) = stream.into_any().downcast::<L4Stream>() else {
        return Err(SniffError::NotTcp);
    };
    let mut seen = [0u8; H2_PREFACE.len()];
    let mut n = 0;
    let protocol = loop {
        let read = tokio::time::timeout_at(deadline, tcp.read(&mut seen[n..]));
        match read.await {
            Ok(Ok(0)) => return Err(SniffError::Closed),
            Ok(Ok(k)) => n += k,
            Ok(Err(e)) => return Err(SniffError::Io(e)),
            Err(_) => return Err(SniffError::Late),
        }
        if let Some(protocol) = classify(&seen[..n]) {
            break protocol;
        }
    };
    tcp.rewind(&seen[..n]);
    let stream: Stream = tcp;
    Ok((stream, protocol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_differing_byte_decides() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"G"), Some(Protocol::Http1));
        assert_eq!(classify(b"GET / HTTP/1.0\r\n\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"PRI"), None);
        assert_eq!(classify(b"PRI * HTTP/1.1"), Some(Protocol::Http1));
        assert_eq!(classify(b"POST / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(&H2_PREFACE[..23]), None);
        assert_eq!(classify(H2_PREFACE), Some(Protocol::Http2));
    }

    #[tokio::test]
    async fn sniffed_bytes_are_read_again() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            c
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let _client = client.await.unwrap();
        let stream: Stream = Box::new(L4Stream::from(tcp));
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let (mut stream, protocol) = sniff(stream, deadline).await.unwrap();
        assert_eq!(protocol, Protocol::Http1);
        let mut head = [0u8; 18];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"GET / HTTP/1.0\r\n\r\n");
    }
}
