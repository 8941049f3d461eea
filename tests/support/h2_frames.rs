//! Raw HTTP/2 frames for tests that speak h2c by hand (a client preface, frames written and
//! read as bytes, a GET as a literal HPACK block), to see exactly what fulcrum sends.

use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame type DATA.
pub const DATA: u8 = 0x0;
/// Frame type HEADERS.
pub const HEADERS: u8 = 0x1;
/// Frame type SETTINGS.
pub const SETTINGS: u8 = 0x4;
/// Frame type WINDOW_UPDATE.
pub const WINDOW_UPDATE: u8 = 0x8;
/// Flag END_STREAM (DATA, HEADERS).
pub const END_STREAM: u8 = 0x1;
/// Flag END_HEADERS (HEADERS).
pub const END_HEADERS: u8 = 0x4;
/// Flag ACK (SETTINGS, PING).
pub const ACK: u8 = 0x1;

/// One HTTP/2 frame: type, flags, stream id, payload.
pub struct H2Frame {
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream id (the reserved bit cleared).
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

/// The bytes of one frame.
pub fn frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The next frame from `s`; `None` when none comes whole within `limit` or the stream ends.
pub async fn read_frame(s: &mut TcpStream, limit: Duration) -> Option<H2Frame> {
    let mut head = [0u8; 9];
    tokio::time::timeout(limit, s.read_exact(&mut head))
        .await
        .ok()?
        .ok()?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    tokio::time::timeout(limit, s.read_exact(&mut payload))
        .await
        .ok()?
        .ok()?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some(H2Frame {
        kind: head[3],
        flags: head[4],
        stream,
        payload,
    })
}

/// A GET of `path` for `app.test` over http, as an HPACK block of literals without Huffman
/// coding or indexing.
pub fn get_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86]; // :method GET, :scheme http
    b.push(0x04); // :path, literal value
    b.push(path.len() as u8);
    b.extend_from_slice(path.as_bytes());
    b.push(0x01); // :authority, literal value
    b.push(8);
    b.extend_from_slice(b"app.test");
    b
}
