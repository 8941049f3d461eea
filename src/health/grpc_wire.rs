//! The bytes of the standard gRPC health protocol (`grpc.health.v1.Health/Check`), without a
//! socket: the length-prefixed gRPC message framing and the two small protobuf messages,
//! encoded and decoded by hand (no protoc, no generated code).
//!
//! ```text
//! message HealthCheckRequest  { string service = 1; }
//! message HealthCheckResponse { enum ServingStatus { UNKNOWN = 0; SERVING = 1;
//!                               NOT_SERVING = 2; SERVICE_UNKNOWN = 3; } ServingStatus status = 1; }
//! ```

use std::fmt;

/// Length of the gRPC message prefix: a compressed flag byte and a u32 big-endian length.
const PREFIX: usize = 5;

/// Protobuf wire types this decoder knows how to skip or read.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LENGTH_DELIMITED: u64 = 2;
const FIXED32: u64 = 5;

/// The `status` of a `HealthCheckResponse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServingStatus {
    /// `UNKNOWN` (0), also what a response without the field means.
    Unknown,
    /// `SERVING` (1): the only status that passes a check.
    Serving,
    /// `NOT_SERVING` (2).
    NotServing,
    /// `SERVICE_UNKNOWN` (3): the server does not know the service that was asked about.
    ServiceUnknown,
    /// A value the protocol does not define.
    Other(u64),
}

impl From<u64> for ServingStatus {
    fn from(v: u64) -> Self {
        match v {
            0 => ServingStatus::Unknown,
            1 => ServingStatus::Serving,
            2 => ServingStatus::NotServing,
            3 => ServingStatus::ServiceUnknown,
            n => ServingStatus::Other(n),
        }
    }
}

impl fmt::Display for ServingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServingStatus::Unknown => f.write_str("UNKNOWN"),
            ServingStatus::Serving => f.write_str("SERVING"),
            ServingStatus::NotServing => f.write_str("NOT_SERVING"),
            ServingStatus::ServiceUnknown => f.write_str("SERVICE_UNKNOWN"),
            ServingStatus::Other(n) => write!(f, "undefined status {n}"),
        }
    }
}

/// Why a response body is not one well-formed `HealthCheckResponse` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The body ends inside the 5-byte message prefix (an empty body included).
    ShortPrefix(usize),
    /// The message is compressed, although the check asked for no compression.
    Compressed,
    /// The compressed flag is neither 0 nor 1.
    BadFlag(u8),
    /// The prefix announces a length the body does not hold exactly.
    LengthMismatch {
        /// Length in the prefix.
        announced: usize,
        /// Bytes after the prefix.
        present: usize,
    },
    /// A varint runs past the end of the message or past 10 bytes.
    BadVarint,
    /// A field's bytes run past the end of the message.
    Truncated,
    /// A wire type protobuf does not define (or a deprecated group).
    BadWireType(u64),
    /// `status` is not sent as a varint.
    StatusNotVarint(u64),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::ShortPrefix(n) => {
                write!(f, "response body of {n} bytes holds no gRPC message")
            }
            WireError::Compressed => f.write_str("response message is compressed"),
            WireError::BadFlag(b) => write!(f, "response message has compressed flag {b}"),
            WireError::LengthMismatch { announced, present } => write!(
                f,
                "response message announces {announced} bytes but {present} follow"
            ),
            WireError::BadVarint => f.write_str("response message has a malformed varint"),
            WireError::Truncated => f.write_str("response message is truncated"),
            WireError::BadWireType(t) => write!(f, "response message has wire type {t}"),
            WireError::StatusNotVarint(t) => {
                write!(f, "response status has wire type {t}, expected a varint")
            }
        }
    }
}

impl std::error::Error for WireError {}

/// Appends `v` as a protobuf varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint at `*pos`, advancing it.
fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(*pos).ok_or(WireError::BadVarint)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(WireError::BadVarint)
}

/// The request body: one uncompressed gRPC message holding `HealthCheckRequest{service}`.
/// An empty `service` (the server as a whole) is the empty message, as proto3 omits defaults.
pub fn encode_request(service: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(service.len() + 11);
    if !service.is_empty() {
        msg.push(0x0a); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut out = Vec::with_capacity(PREFIX + msg.len());
    out.push(0); // not compressed
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(&msg);
    out
}

/// The `status` of the one `HealthCheckResponse` message a response body must hold.
pub fn decode_response(body: &[u8]) -> Result<ServingStatus, WireError> {
    let Some((prefix, msg)) = body.split_first_chunk::<PREFIX>() else {
        return Err(WireError::ShortPrefix(body.len()));
    };
    match prefix[0] {
        0 => {}
        1 => return Err(WireError::Compressed),
        b => return Err(WireError::BadFlag(b)),
    }
    let announced = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if announced != msg.len() {
        return Err(WireError::LengthMismatch {
            announced,
            present: msg.len(),
        });
    }
    let mut status = 0;
    let mut pos = 0;
    while pos < msg.len() {
        let key = get_varint(msg, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        match (field, wire) {
            (1, VARINT) => status = get_varint(msg, &mut pos)?,
            (1, other) => return Err(WireError::StatusNotVarint(other)),
            (_, VARINT) => {
                get_varint(msg, &mut pos)?;
            }
            (_, FIXED64 | FIXED32 | LENGTH_DELIMITED) => {
                let len = match wire {
                    FIXED64 => 8,
                    FIXED32 => 4,
                    _ => usize::try_from(get_varint(msg, &mut pos)?)
                        .map_err(|_| WireError::Truncated)?,
                };
                pos = pos
                    .checked_add(len)
                    .filter(|end| *end <= msg.len())
                    .ok_or(WireError::Truncated)?;
            }
            (_, other) => return Err(WireError::BadWireType(other)),
        }
    }
    Ok(ServingStatus::from(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A framed message around `msg`.
    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        out.extend_from_slice(msg);
        out
    }

    #[test]
    fn the_whole_server_is_asked_about_with_an_empty_message() {
        assert_eq!(encode_request(""), vec![0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_service_name_is_field_one() {
        assert_eq!(
            encode_request("api.v1.Users"),
            framed(b"\x0a\x0capi.v1.Users")
        );
    }

    #[test]
    fn a_long_service_name_has_a_multi_byte_length() {
        let name = "s".repeat(300);
        let body = encode_request(&name);
        assert_eq!(&body[..5], &[0, 0, 0, 1, 47]); // 1 tag + 2 length + 300
        assert_eq!(&body[5..8], &[0x0a, 0xac, 0x02]); // 300 = 0b10_0101100
        assert_eq!(&body[8..], name.as_bytes());
    }

    #[test]
    fn each_defined_status_decodes() {
        let cases = [
            (framed(&[0x08, 0x01]), ServingStatus::Serving),
            (framed(&[0x08, 0x02]), ServingStatus::NotServing),
            (framed(&[0x08, 0x03]), ServingStatus::ServiceUnknown),
            (framed(&[0x08, 0x00]), ServingStatus::Unknown),
            (framed(&[]), ServingStatus::Unknown),
            (framed(&[0x08, 0x96, 0x01]), ServingStatus::Other(150)),
        ];
        for (body, want) in cases {
            assert_eq!(decode_response(&body), Ok(want), "{body:?}");
        }
    }

    #[test]
    fn unknown_fields_are_skipped_and_the_last_status_wins() {
        // field 2 varint, field 3 bytes "xy", field 4 fixed32, field 5 fixed64, then status
        let mut msg = vec![0x10, 0x05, 0x1a, 0x02, b'x', b'y', 0x25, 1, 2, 3, 4, 0x29];
        msg.extend_from_slice(&[0; 8]);
        msg.extend_from_slice(&[0x08, 0x02, 0x08, 0x01]);
        assert_eq!(decode_response(&framed(&msg)), Ok(ServingStatus::Serving));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let mut long = framed(&[0x08, 0x01]);
        long.push(0);
        let cases = [
            (vec![], WireError::ShortPrefix(0)),
            (vec![0, 0, 0], WireError::ShortPrefix(3)),
            (vec![1, 0, 0, 0, 0], WireError::Compressed),
            (vec![7, 0, 0, 0, 0], WireError::BadFlag(7)),
            (
                vec![0, 0, 0, 0, 2, 0x08],
                WireError::LengthMismatch {
                    announced: 2,
                    present: 1,
                },
            ),
            (
                long,
                WireError::LengthMismatch {
                    announced: 2,
                    present: 3,
                },
            ),
            (framed(&[0x08]), WireError::BadVarint),
            (framed(&[0x08, 0x80]), WireError::BadVarint),
            (
                framed(&[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                ]),
                WireError::BadVarint,
            ),
            (framed(&[0x1a, 0x05, b'x']), WireError::Truncated),
            (framed(&[0x25, 1, 2]), WireError::Truncated),
            (framed(&[0x13]), WireError::BadWireType(3)),
            (framed(&[0x0a, 0x00]), WireError::StatusNotVarint(2)),
            (b"<html>502</html>".to_vec(), WireError::BadFlag(b'<')),
        ];
        for (body, want) in cases {
            assert_eq!(decode_response(&body), Err(want), "{body:?}");
        }
    }

    #[test]
    fn errors_read_as_reasons() {
        assert_eq!(
            WireError::LengthMismatch {
                announced: 2,
                present: 1
            }
            .to_string(),
            "response message announces 2 bytes but 1 follow"
        );
        assert_eq!(ServingStatus::NotServing.to_string(), "NOT_SERVING");
    }
}
