//! DNS messages on the wire (RFC 1035 section 4): the query a stub resolver sends, and the
//! parts of a response it reads (header, question, answer and additional records, with
//! compressed names). A and CNAME per RFC 1035, AAAA per RFC 3596, SRV per RFC 2782.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Length of the fixed header (RFC 1035 4.1.1).
pub const HEADER_LEN: usize = 12;
/// RR type A: an IPv4 address.
pub const TYPE_A: u16 = 1;
/// RR type CNAME: the canonical name of an alias.
pub const TYPE_CNAME: u16 = 5;
/// RR type AAAA: an IPv6 address (RFC 3596).
pub const TYPE_AAAA: u16 = 28;
/// RR type SRV: a service's target, port, priority and weight (RFC 2782).
pub const TYPE_SRV: u16 = 33;
/// Class IN.
pub const CLASS_IN: u16 = 1;

/// RCODE: no error.
pub const RCODE_NOERROR: u8 = 0;
/// RCODE: the server failed.
pub const RCODE_SERVFAIL: u8 = 2;
/// RCODE: the name does not exist.
pub const RCODE_NXDOMAIN: u8 = 3;
/// RCODE: the server refuses to answer.
pub const RCODE_REFUSED: u8 = 5;

/// Header flag QR (a response).
const FLAG_QR: u16 = 0x8000;
/// Header flag TC (truncated).
const FLAG_TC: u16 = 0x0200;
/// Header flag RD (recursion desired).
const FLAG_RD: u16 = 0x0100;

/// Longest name in presentation form, without the trailing dot (RFC 1035 2.3.4: 255 octets
/// on the wire).
const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 2.3.4).
const MAX_LABEL_LEN: usize = 63;
/// Most compression pointers followed while reading one name: more means a loop.
const MAX_POINTERS: usize = 64;
/// Most records read from one section; a reply claiming more is malformed for a stub.
const MAX_RECORDS: usize = 4096;

/// A malformed name or message, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

fn err<T>(what: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(what.into()))
}

/// One question (RFC 1035 4.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// QNAME, labels joined by dots, no trailing dot (the root is ".").
    pub name: String,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
}

/// The data of one resource record, for the types the resolver uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// The canonical name the owner is an alias of.
    Cname(String),
    /// A service location.
    Srv {
        /// Lower is preferred.
        priority: u16,
        /// Relative share among records of the same priority.
        weight: u16,
        /// The service's port on the target.
        port: u16,
        /// The target host ("." means the service is not available).
        target: String,
    },
    /// Any other type (kept only to be skipped).
    Other,
}

/// One resource record (RFC 1035 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name, no trailing dot.
    pub name: String,
    /// TYPE.
    pub rtype: u16,
    /// CLASS.
    pub class: u16,
    /// TTL in seconds (a value with the top bit set is read as 0, RFC 2181 8).
    pub ttl: u32,
    /// The data.
    pub data: RData,
}

/// A response as the resolver reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Message ID.
    pub id: u16,
    /// QR: this is a response.
    pub response: bool,
    /// TC: the message was truncated.
    pub truncated: bool,
    /// RCODE.
    pub rcode: u8,
    /// The question section.
    pub questions: Vec<Question>,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The additional section (the authority section is read past and dropped).
    pub additional: Vec<Record>,
}

/// Whether two names are the same (ASCII case-insensitive, trailing dot ignored).
pub fn same_name(a: &str, b: &str) -> bool {
    let trim = |n: &str| -> String {
        if n == "." {
            return ".".into();
        }
        n.strip_suffix('.').unwrap_or(n).to_string()
    };
    trim(a).eq_ignore_ascii_case(&trim(b))
}

/// Appends `name` (dots between labels, trailing dot optional) in wire form, uncompressed.
pub fn put_name(out: &mut Vec<u8>, name: &str) -> Result<(), WireError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > MAX_NAME_LEN {
        return err(format!("name {name:?} is longer than {MAX_NAME_LEN} bytes"));
    }
    if !name.is_empty() {
        for label in name.split('.') {
            if label.is_empty() {
                return err(format!("name {name:?} has an empty label"));
            }
            if label.len() > MAX_LABEL_LEN {
                return err(format!(
                    "name {name:?} has a label longer than {MAX_LABEL_LEN} bytes"
                ));
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    Ok(())
}

/// A standard query (opcode 0, RD=1) with one question of class IN.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, WireError> {
    let mut msg = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&FLAG_RD.to_be_bytes());
    for count in [1u16, 0, 0, 0] {
        msg.extend_from_slice(&count.to_be_bytes());
    }
    put_name(&mut msg, name)?;
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(msg)
}

/// Reads big-endian integers and names from a message, with bounds checks.
struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.msg.len());
        let Some(end) = end else {
            return err(format!("message ends inside a field at byte {}", self.pos));
        };
        let out = &self.msg[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&mut self) -> Result<String, WireError> {
        let (name, next) = read_name(self.msg, self.pos)?;
        self.pos = next;
        Ok(name)
    }
}

/// Reads the (possibly compressed, RFC 1035 4.1.4) name at `start`: the name in presentation
/// form without the trailing dot ("." for the root; bytes other than letters, digits, '-'
/// and '_' escaped as `\DDD`), and the offset just past it where it starts. Pointer loops,
/// too many pointers and over-long names are errors.
pub fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), WireError> {
    let mut out = String::new();
    let mut wire_len = 0usize;
    let mut pos = start;
    let mut after: Option<usize> = None;
    let mut pointers = 0usize;
    // Where the piece of the name being read began: `start`, then each pointer's target.
    let mut segment = start;
    loop {
        let Some(&len) = msg.get(pos) else {
            return err(format!("name at byte {start} runs past the message"));
        };
        match len & 0xC0 {
            0x00 => {
                if len == 0 {
                    let next = after.unwrap_or(pos + 1);
                    if out.is_empty() {
                        out.push('.');
                    }
                    return Ok((out, next));
                }
                let len = len as usize;
                let Some(label) = msg.get(pos + 1..pos + 1 + len) else {
                    return err(format!("name at byte {start} runs past the message"));
                };
                wire_len += len + 1;
                if wire_len > MAX_NAME_LEN + 1 {
                    return err(format!("name at byte {start} is longer than 255 bytes"));
                }
                if !out.is_empty() {
                    out.push('.');
                }
                for &b in label {
                    if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                        out.push(b as char);
                    } else {
                        out.push_str(&format!("\\{b:03}"));
                    }
                }
                pos += 1 + len;
            }
            0xC0 => {
                let Some(&low) = msg.get(pos + 1) else {
                    return err(format!("name at byte {start} runs past the message"));
                };
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return err(format!("name at byte {start} has a compression loop"));
                }
                let target = (((len & 0x3F) as usize) << 8) | low as usize;
                // A pointer points to a prior occurrence (RFC 1035 4.1.4): before the piece
                // being read. Each jump then lands strictly earlier, so no loop is possible.
                if target >= segment {
                    return err(format!(
                        "name at byte {start} has a compression pointer that does not point back (to {target})"
                    ));
                }
                after.get_or_insert(pos + 2);
                pos = target;
                segment = target;
            }
            _ => return err(format!("name at byte {start} has an unknown label type")),
        }
    }
}

fn read_question(r: &mut Reader<'_>) -> Result<Question, WireError> {
    Ok(Question {
        name: r.name()?,
        qtype: r.u16()?,
        qclass: r.u16()?,
    })
}

fn read_record(r: &mut Reader<'_>) -> Result<Record, WireError> {
    let name = r.name()?;
    let rtype = r.u16()?;
    let class = r.u16()?;
    let ttl = r.u32()?;
    let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
    let rdlen = r.u16()? as usize;
    let start = r.pos;
    let rdata = r.bytes(rdlen)?;
    let end = r.pos;
    let data = match rtype {
        TYPE_A => {
            let b: [u8; 4] = rdata
                .try_into()
                .map_err(|_| WireError(format!("A record of {name} has {rdlen} bytes")))?;
            RData::A(Ipv4Addr::from(b))
        }
        TYPE_AAAA => {
            let b: [u8; 16] = rdata
                .try_into()
                .map_err(|_| WireError(format!("AAAA record of {name} has {rdlen} bytes")))?;
            RData::Aaaa(Ipv6Addr::from(b))
        }
        TYPE_CNAME => {
            let (target, next) = read_name(r.msg, start)?;
            if next != end {
                return err(format!("CNAME record of {name} has a bad length"));
            }
            RData::Cname(target)
        }
        TYPE_SRV => {
            let mut d = Reader {
                msg: r.msg,
                pos: start,
            };
            let priority = d.u16()?;
            let weight = d.u16()?;
            let port = d.u16()?;
            let target = d.name()?;
            if d.pos != end {
                return err(format!("SRV record of {name} has a bad length"));
            }
            RData::Srv {
                priority,
                weight,
                port,
                target,
            }
        }
        _ => RData::Other,
    };
    Ok(Record {
        name,
        rtype,
        class,
        ttl,
        data,
    })
}

fn read_records(r: &mut Reader<'_>, count: u16) -> Result<Vec<Record>, WireError> {
    if count as usize > MAX_RECORDS {
        return err(format!("a section claims {count} records"));
    }
    (0..count).map(|_| read_record(r)).collect()
}

/// Decodes a response. A truncated message (TC=1) is decoded only as far as its header and
/// question: its record sections are empty.
pub fn decode(msg: &[u8]) -> Result<Message, WireError> {
    let mut r = Reader { msg, pos: 0 };
    if msg.len() < HEADER_LEN {
        return err(format!(
            "message of {} bytes is shorter than a header",
            msg.len()
        ));
    }
    let id = r.u16()?;
    let flags = r.u16()?;
    let counts = [r.u16()?, r.u16()?, r.u16()?, r.u16()?];
    let mut out = Message {
        id,
        response: flags & FLAG_QR != 0,
        truncated: flags & FLAG_TC != 0,
        rcode: (flags & 0x000F) as u8,
        questions: Vec::new(),
        answers: Vec::new(),
        additional: Vec::new(),
    };
    if counts[0] > 1 {
        return err(format!("{} questions in one message", counts[0]));
    }
    for _ in 0..counts[0] {
        out.questions.push(read_question(&mut r)?);
    }
    if out.truncated {
        return Ok(out);
    }
    out.answers = read_records(&mut r, counts[1])?;
    read_records(&mut r, counts[2])?;
    out.additional = read_records(&mut r, counts[3])?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response header with the given flags and counts.
    fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&flags.to_be_bytes());
        for c in counts {
            m.extend_from_slice(&c.to_be_bytes());
        }
        m
    }

    fn rr(m: &mut Vec<u8>, name: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) {
        m.extend_from_slice(name);
        m.extend_from_slice(&rtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(rdata);
    }

    #[test]
    fn query_is_encoded_per_rfc1035() {
        let q = encode_query(0xBEEF, "api.Example.com.", TYPE_AAAA).unwrap();
        let mut want = vec![0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(b"\x03api\x07Example\x03com\x00");
        want.extend_from_slice(&[0, 28, 0, 1]);
        assert_eq!(q, want);
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(encode_query(1, "a..b", TYPE_A).is_err());
        assert!(encode_query(1, &"x".repeat(64), TYPE_A).is_err());
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(encode_query(1, &long, TYPE_A).is_err());
        assert!(encode_query(1, &"x".repeat(63), TYPE_A).is_ok());
    }

    #[test]
    fn response_with_compressed_names_decodes() {
        let mut m = header(7, 0x8180, [1, 2, 0, 1]);
        // Question at byte 12: www.example.com
        m.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        // CNAME: www (pointer to 12) -> web + pointer to "example.com" at 16.
        rr(&mut m, &[0xC0, 12], TYPE_CNAME, 300, b"\x03web\xC0\x10");
        let web_at = m.len() - 6;
        rr(&mut m, &[0xC0, web_at as u8], TYPE_A, 60, &[10, 0, 0, 1]);
        rr(
            &mut m,
            &[0xC0, web_at as u8],
            TYPE_AAAA,
            (1u32 << 31) + 5,
            &Ipv6Addr::LOCALHOST.octets(),
        );
        let msg = decode(&m).unwrap();
        assert_eq!(msg.id, 7);
        assert!(msg.response);
        assert!(!msg.truncated);
        assert_eq!(msg.rcode, RCODE_NOERROR);
        assert_eq!(msg.questions[0].name, "www.example.com");
        assert_eq!(msg.answers[0].data, RData::Cname("web.example.com".into()));
        assert_eq!(msg.answers[1].name, "web.example.com");
        assert_eq!(msg.answers[1].data, RData::A(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(msg.answers[1].ttl, 60);
        assert_eq!(msg.additional[0].data, RData::Aaaa(Ipv6Addr::LOCALHOST));
        assert_eq!(msg.additional[0].ttl, 0);
    }

    #[test]
    fn srv_record_decodes_with_compressed_target() {
        let mut m = header(9, 0x8180, [1, 1, 0, 0]);
        m.extend_from_slice(b"\x05_http\x04_tcp\x03svc\x00\x00\x21\x00\x01");
        // target "b.svc": label b + pointer to "svc" at byte 12 + 6 + 5 = 23.
        let rdata = [0, 10, 0, 5, 0x1F, 0x90, 1, b'b', 0xC0, 23];
        rr(&mut m, &[0xC0, 12], TYPE_SRV, 30, &rdata);
        let msg = decode(&m).unwrap();
        assert_eq!(
            msg.answers[0].data,
            RData::Srv {
                priority: 10,
                weight: 5,
                port: 8080,
                target: "b.svc".into()
            }
        );
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_errors() {
        let mut m = header(1, 0x8180, [1, 0, 0, 0]);
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]); // points at itself
        assert!(decode(&m).unwrap_err().0.contains("point back"));
        let mut m = header(1, 0x8180, [1, 0, 0, 0]);
        m.extend_from_slice(&[0xC0, 14, 0, 0, 1, 0, 1]); // points past itself
        assert!(decode(&m).is_err());
        // "a" then a pointer back to the "a": earlier than the pointer, but a loop.
        let mut m = header(1, 0x8180, [0, 0, 0, 0]);
        m.extend_from_slice(&[1, b'a', 0xC0, 12]);
        assert!(read_name(&m, 12).is_err());
        let mut m = header(1, 0x8180, [1, 0, 0, 0]);
        m.extend_from_slice(&[1, b'a']); // runs past the end
        assert!(decode(&m).is_err());
        let mut m = header(1, 0x8180, [1, 0, 0, 0]);
        m.extend_from_slice(&[0x80, 1, 0, 0, 1, 0, 1]); // reserved label type
        assert!(decode(&m).unwrap_err().0.contains("label type"));
    }

    #[test]
    fn long_name_via_pointers_is_an_error() {
        // A chain of 63-byte labels, each pointing at the previous one: over 255 bytes.
        let mut m = header(1, 0x8180, [1, 0, 0, 0]);
        m.extend_from_slice(&[0, 0, 1, 0, 1]); // question: root
        let mut prev = 12u16;
        for _ in 0..5 {
            let here = m.len() as u16;
            m.push(63);
            m.extend_from_slice(&[b'a'; 63]);
            m.extend_from_slice(&(0xC000 | prev).to_be_bytes());
            prev = here;
        }
        let err = read_name(&m, prev as usize).unwrap_err();
        assert!(err.0.contains("longer than 255"), "{err}");
    }

    #[test]
    fn odd_bytes_in_labels_are_escaped() {
        let m = b"\x03a.b\x00";
        assert_eq!(read_name(m, 0).unwrap(), ("a\\046b".to_string(), 5));
    }

    #[test]
    fn truncated_response_keeps_header_and_question() {
        let mut m = header(3, 0x8380, [1, 5, 0, 0]);
        m.extend_from_slice(b"\x01x\x00\x00\x01\x00\x01");
        let msg = decode(&m).unwrap();
        assert!(msg.truncated);
        assert!(msg.answers.is_empty());
        assert_eq!(msg.questions[0].name, "x");
    }

    #[test]
    fn bad_rdata_lengths_are_errors() {
        let mut m = header(1, 0x8180, [0, 1, 0, 0]);
        rr(&mut m, &[0], TYPE_A, 1, &[1, 2, 3]);
        assert!(decode(&m).is_err());
        let mut m = header(1, 0x8180, [0, 1, 0, 0]);
        rr(&mut m, &[0], TYPE_CNAME, 1, &[1, b'a', 0, 9]);
        assert!(decode(&m).is_err());
    }

    #[test]
    fn names_compare_without_case_or_trailing_dot() {
        assert!(same_name("API.example.com.", "api.example.com"));
        assert!(!same_name("api.example.com", "api.example.co"));
        assert!(same_name(".", "."));
    }
}
