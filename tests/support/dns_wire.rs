//! DNS messages as [`TestDns`] reads and writes them (RFC 1035 section 4): the question of a
//! query, and a response with answer and additional sections, truncated (TC=1) when it does
//! not fit the transport's limit.
//!
//! [`TestDns`]: super::TestDns

use std::net::{Ipv4Addr, Ipv6Addr};

/// Length of the fixed header (RFC 1035 4.1.1).
const HEADER_LEN: usize = 12;
/// Largest UDP message without EDNS0 (RFC 1035 4.2.1); [`TestDns`] does not speak EDNS0.
///
/// [`TestDns`]: super::TestDns
pub(super) const UDP_LIMIT: usize = 512;
/// Largest message over TCP (the 2-byte length prefix, RFC 1035 4.2.2).
pub(super) const TCP_LIMIT: usize = 65_535;
/// Class IN.
pub(super) const CLASS_IN: u16 = 1;

/// Response codes (RFC 1035 4.1.1).
pub(super) const NOERROR: u8 = 0;
pub(super) const FORMERR: u8 = 1;
pub(super) const SERVFAIL: u8 = 2;
pub(super) const NXDOMAIN: u8 = 3;
pub(super) const NOTIMP: u8 = 4;
pub(super) const REFUSED: u8 = 5;

/// Header flag bits.
const QR: u16 = 0x8000;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;

/// The one question of a well-formed query.
pub(super) struct Query {
    /// Message ID, echoed in the response.
    pub(super) id: u16,
    /// Whether the query had RD set (copied into the response).
    pub(super) rd: bool,
    /// QNAME in lowercase, labels joined by dots, no trailing dot (the root is "").
    pub(super) name: String,
    /// QTYPE.
    pub(super) qtype: u16,
    /// QCLASS.
    pub(super) qclass: u16,
    /// The question section as received (case preserved), echoed in the response.
    question: Vec<u8>,
}

/// What a received message is.
pub(super) enum Parsed {
    /// A well-formed standard query with one question.
    Query(Query),
    /// A query that gets an error without a question section (FORMERR, NOTIMP).
    Error(Vec<u8>),
    /// Not worth an answer: shorter than a header, or a response.
    Ignore,
}

/// Record data of one resource record.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum RData {
    /// TYPE A.
    A(Ipv4Addr),
    /// TYPE AAAA (RFC 3596).
    Aaaa(Ipv6Addr),
    /// TYPE SRV (RFC 2782).
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
}

/// A response's content before encoding.
pub(super) struct Answer {
    /// RCODE.
    pub(super) rcode: u8,
    /// Answer records; their owner is the question's name.
    pub(super) answers: Vec<RData>,
    /// Additional records with their owner names.
    pub(super) additional: Vec<(String, RData)>,
}

impl Answer {
    /// An answer with only an RCODE.
    pub(super) fn empty(rcode: u8) -> Answer {
        Answer {
            rcode,
            answers: Vec::new(),
            additional: Vec::new(),
        }
    }
}

/// Reads a query. Never panics, whatever the bytes.
pub(super) fn parse_query(msg: &[u8]) -> Parsed {
    if msg.len() < HEADER_LEN {
        return Parsed::Ignore;
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    if flags & QR != 0 {
        return Parsed::Ignore;
    }
    let rd = flags & RD != 0;
    let opcode = (flags >> 11) & 0xF;
    if opcode != 0 {
        return Parsed::Error(header(id, rd, NOTIMP, false, [0, 0, 0, 0]));
    }
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if qdcount != 1 {
        return Parsed::Error(header(id, rd, FORMERR, false, [0, 0, 0, 0]));
    }
    let formerr = || Parsed::Error(header(id, rd, FORMERR, false, [0, 0, 0, 0]));
    let Some((name, end)) = read_name(msg, HEADER_LEN) else {
        return formerr();
    };
    let Some(fixed) = msg.get(end..end + 4) else {
        return formerr();
    };
    Parsed::Query(Query {
        id,
        rd,
        name,
        qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
        question: msg[HEADER_LEN..end + 4].to_vec(),
    })
}

/// Reads an uncompressed name at `start`: the lowercase dotted name and the offset after it.
/// `None` for compression pointers, reserved label types, names over 255 bytes, or a short
/// message.
fn read_name(msg: &[u8], start: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut pos = start;
    // At most 128 labels fit the 255-byte limit, so the loop ends.
    for _ in 0..128 {
        let len = *msg.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            return Some((labels.join("."), pos));
        }
        if len & 0xC0 != 0 || pos - start + len > 255 {
            return None;
        }
        let label = msg.get(pos..pos + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += len;
    }
    None
}

/// Encodes the response to `query`: the question as received, then `answer`'s records with
/// `ttl`. When the whole message exceeds `limit`, sends the header with TC=1 and the question
/// only (RFC 1035 4.2.1), so the client retries over TCP.
pub(super) fn encode(query: &Query, answer: &Answer, ttl: u32, limit: usize) -> Vec<u8> {
    let counts = [
        1,
        answer.answers.len() as u16,
        0,
        answer.additional.len() as u16,
    ];
    let mut msg = header(query.id, query.rd, answer.rcode, false, counts);
    msg.extend_from_slice(&query.question);
    for data in &answer.answers {
        // The owner is the question's name: a compression pointer to offset 12.
        msg.extend_from_slice(&[0xC0, HEADER_LEN as u8]);
        put_record(&mut msg, data, ttl);
    }
    for (owner, data) in &answer.additional {
        put_name(&mut msg, owner);
        put_record(&mut msg, data, ttl);
    }
    if msg.len() <= limit {
        return msg;
    }
    let mut truncated = header(query.id, query.rd, answer.rcode, true, [1, 0, 0, 0]);
    truncated.extend_from_slice(&query.question);
    truncated
}

/// The answer to a query of a class the server does not serve: REFUSED with the question.
pub(super) fn refused(query: &Query) -> Vec<u8> {
    encode(query, &Answer::empty(REFUSED), 0, TCP_LIMIT)
}

/// A response header: QR=1, AA=1, RD as given, RA=0, opcode 0, the four section counts.
fn header(id: u16, rd: bool, rcode: u8, tc: bool, counts: [u16; 4]) -> Vec<u8> {
    let mut flags = QR | AA | u16::from(rcode & 0xF);
    if rd {
        flags |= RD;
    }
    if tc {
        flags |= TC;
    }
    let mut msg = Vec::with_capacity(UDP_LIMIT);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&flags.to_be_bytes());
    for count in counts {
        msg.extend_from_slice(&count.to_be_bytes());
    }
    msg
}

/// TYPE, CLASS IN, TTL, RDLENGTH and RDATA of one record (its owner name is already written).
fn put_record(msg: &mut Vec<u8>, data: &RData, ttl: u32) {
    let (rtype, rdata): (u16, Vec<u8>) = match data {
        RData::A(ip) => (1, ip.octets().to_vec()),
        RData::Aaaa(ip) => (28, ip.octets().to_vec()),
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => {
            let mut rdata = Vec::new();
            rdata.extend_from_slice(&priority.to_be_bytes());
            rdata.extend_from_slice(&weight.to_be_bytes());
            rdata.extend_from_slice(&port.to_be_bytes());
            // RFC 2782: the target is not compressed.
            put_name(&mut rdata, target);
            (33, rdata)
        }
    };
    msg.extend_from_slice(&rtype.to_be_bytes());
    msg.extend_from_slice(&CLASS_IN.to_be_bytes());
    msg.extend_from_slice(&ttl.to_be_bytes());
    msg.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    msg.extend_from_slice(&rdata);
}

/// An uncompressed name: length-prefixed labels and the root label. Names were checked by
/// [`check_name`] when the test set them.
fn put_name(msg: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
}

/// Panics (a bug in the test) when `name` cannot be a DNS name: an empty label inside it, a
/// label over 63 bytes, or more than 255 bytes on the wire.
pub(super) fn check_name(name: &str) {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return;
    }
    let mut wire_len = 1;
    for label in trimmed.split('.') {
        assert!(
            !label.is_empty() && label.len() <= 63,
            "TestDns: bad label {label:?} in name {name:?}"
        );
        wire_len += 1 + label.len();
    }
    assert!(wire_len <= 255, "TestDns: name {name:?} is too long");
}
