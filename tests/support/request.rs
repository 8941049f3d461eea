//! What a test backend received: [`RawRequest`] (as read off the wire, with a check for
//! ambiguous framing), [`RecordedRequest`] (the convenient view), and the HTTP/1.1 request
//! parser both test backends share.
//!
//! The parser reads like a strict origin server, but still records what it cannot frame: line
//! endings may be CRLF or bare LF (kept in `raw_head`, reported by
//! [`RawRequest::ambiguities`]); the body is framed by `Transfer-Encoding` when present (its
//! final coding must be `chunked`), else by `Content-Length` (all values equal), else empty.

use std::collections::HashMap;

/// One request as the backend received it.
#[derive(Debug, Clone, Default)]
pub struct RecordedRequest {
    /// Request method, e.g. `GET`.
    pub method: String,
    /// Request target as sent: path plus query, e.g. `/users?x=1`.
    pub path: String,
    /// HTTP version token, e.g. `HTTP/1.1`.
    pub version: String,
    /// Header name (lowercase) -> values in the order received (one entry per header line).
    pub headers: HashMap<String, Vec<String>>,
    /// The body, de-chunked when it was sent chunked.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// All values of a header (one per header line), empty when absent.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// A header's values joined with `", "` (the HTTP list form), `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.header_all(name);
        if values.is_empty() {
            None
        } else {
            Some(values.join(", "))
        }
    }

    /// Body as (lossy) UTF-8.
    pub fn body_string(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
impl From<RawRequest> for RecordedRequest {
    fn from(raw: RawRequest) -> RecordedRequest {
        let mut headers: HashMap<String, Vec<String>> = HashMap::new();
        for (name, value) in raw.headers {
            headers
                .entry(name.trim().to_ascii_lowercase())
                .or_default()
                .push(value.trim().to_string());
        }
        RecordedRequest {
            method: raw.method,
            path: raw.target,
            version: if raw.version.is_empty() {
                "HTTP/1.1".to_string()
            } else {
                raw.version
            },
            headers,
            body: raw.body,
        }
    }
}

/// One request as a test backend read it off the wire.
#[derive(Debug, Clone, Default)]
pub struct RawRequest {
    /// Index of the TCP connection it arrived on (0 = the first one accepted).
    pub conn: usize,
    /// The request line as received, without its line ending (lossy UTF-8).
    pub request_line: String,
    /// Method token, e.g. `GET`.
    pub method: String,
    /// Request target as sent, e.g. `/a?b=c`.
    pub target: String,
    /// Version token, e.g. `HTTP/1.1`.
    pub version: String,
    /// Header fields in the order received: (name exactly as sent, value with surrounding
    /// whitespace removed).
    pub headers: Vec<(String, String)>,
    /// The raw head: request line through the blank line, byte for byte.
    pub raw_head: Vec<u8>,
    /// The body as framed by the request (de-chunked when chunked).
    pub body: Vec<u8>,
    /// Why the backend could not read this request completely (it then answered 400, or saw
    /// the connection close, and stopped reading the connection); `None` when it could.
    pub error: Option<String>,
}

impl RawRequest {
    /// All values of a header (case-insensitive name), one per header line.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A header's values joined with `", "`, `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.header_all(name);
        if values.is_empty() {
            None
        } else {
            Some(values.join(", "))
        }
    }

    /// Body as (lossy) UTF-8.
    pub fn body_string(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Everything in this request's head that could make two HTTP/1.1 parsers disagree about
    /// where it ends or what it says: bare CR or LF line endings, obs-fold continuation lines,
    /// whitespace or control bytes in a field name, control bytes in a value, both
    /// `Content-Length` and `Transfer-Encoding`, several or list-valued `Content-Length`, a
    /// `Transfer-Encoding` other than exactly `chunked`, a request line that is not three
    /// single-space-separated tokens, several `Host` fields. Empty when the head is clean.
    pub fn ambiguities(&self) -> Vec<String> {
        let mut out = Vec::new();
        let head = &self.raw_head;
        for (i, b) in head.iter().enumerate() {
            if *b == b'\n' && (i == 0 || head[i - 1] != b'\r') {
                out.push(format!("bare LF at byte {i}"));
            }
            if *b == b'\r' && head.get(i + 1) != Some(&b'\n') {
                out.push(format!("bare CR at byte {i}"));
            }
        }
        let parts: Vec<&str> = self.request_line.split(' ').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
            out.push(format!("request line {:?}", self.request_line));
        }
        if self
            .request_line
            .bytes()
            .any(|b| b < 0x20 || b == 0x7f || b >= 0x80)
        {
            out.push(format!(
                "control or non-ASCII byte in request line {:?}",
                self.request_line
            ));
        }
        for (name, value) in &self.headers {
            if name.is_empty()
                || name
                    .bytes()
                    .any(|b| b <= b' ' || b == 0x7f || b >= 0x80 || b == b':')
            {
                out.push(format!("bad field name {name:?}"));
            }
            if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                out.push(format!("control byte in {name}: {value:?}"));
            }
        }
        let text = String::from_utf8_lossy(head);
        if text
            .split("\r\n")
            .skip(1)
            .any(|l| l.starts_with(' ') || l.starts_with('\t'))
        {
            out.push("obs-fold continuation line".to_string());
        }
        let cl = self.header_all("content-length");
        let te = self.header_all("transfer-encoding");
        if !cl.is_empty() && !te.is_empty() {
            out.push(format!(
                "both Content-Length {cl:?} and Transfer-Encoding {te:?}"
            ));
        }
        if cl.len() > 1 || cl.iter().any(|v| v.contains(',')) {
            out.push(format!("several Content-Length values {cl:?}"));
        }
        if cl
            .iter()
            .any(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()))
        {
            out.push(format!("non-numeric Content-Length {cl:?}"));
        }
        if te.len() > 1 || te.iter().any(|v| v != "chunked") {
            out.push(format!("Transfer-Encoding not exactly `chunked`: {te:?}"));
        }
        if self.header_all("host").len() > 1 {
            out.push(format!("several Host fields {:?}", self.header_all("host")));
        }
        out
    }
}

/// The outcome of trying to parse one request off the front of a buffer.
pub(super) enum RawParse {
    /// Need more bytes.
    Incomplete,
    /// A whole request, and how many bytes it took.
    Done(RawRequest, usize),
    /// A request that cannot be framed (already has `error` set).
    Bad(RawRequest),
}

/// Finds the end of the line starting at `from` (index of its `\n`), lenient about CR.
fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .iter()
        .position(|b| *b == b'\n')
        .map(|p| p + from)
}

/// A line `buf[start..lf]` without its trailing CR.
fn line_at(buf: &[u8], start: usize, lf: usize) -> &[u8] {
    let line = &buf[start..lf];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses the head of the request at the front of `buf`: the request and where its body
/// starts, `None` until the blank line that ends the head has arrived. Stray empty lines
/// before a request are skipped (RFC 9112 section 2.2).
pub(super) fn parse_head(buf: &[u8], conn: usize) -> Option<(RawRequest, usize)> {
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") || buf[start..].starts_with(b"\n") {
        start += if buf[start] == b'\r' { 2 } else { 1 };
    }
    // Head: lines up to the first empty one.
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut pos = start;
    let head_end = loop {
        let lf = find_lf(buf, pos)?;
        let line = line_at(buf, pos, lf);
        pos = lf + 1;
        if line.is_empty() {
            break pos;
        }
        lines.push(line);
    };
    let request_line =
        String::from_utf8_lossy(lines.first().copied().unwrap_or_default()).into_owned();
    let mut parts = request_line.splitn(3, ' ');
    let mut req = RawRequest {
        conn,
        method: parts.next().unwrap_or_default().to_string(),
        target: parts.next().unwrap_or_default().to_string(),
        version: parts.next().unwrap_or_default().to_string(),
        request_line,
        raw_head: buf[start..head_end].to_vec(),
        ..RawRequest::default()
    };
    for line in lines.iter().skip(1) {
        let line = String::from_utf8_lossy(line);
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        req.headers.push((
            name.to_string(),
            value.trim_matches(|c| c == ' ' || c == '\t').to_string(),
        ));
    }
    Some((req, head_end))
}

/// Parses one whole request (head and body) off the front of `buf`, by the rules in this
/// module's doc.
pub(super) fn parse_request(buf: &[u8], conn: usize) -> RawParse {
    let Some((mut req, head_end)) = parse_head(buf, conn) else {
        return RawParse::Incomplete;
    };
    let te = req.header_all("transfer-encoding");
    if !te.is_empty() {
        let last = te.join(",");
        let final_coding = last.rsplit(',').next().unwrap_or("").trim();
        if !final_coding.eq_ignore_ascii_case("chunked") {
            req.error = Some(format!("final transfer coding is not chunked: {te:?}"));
            return RawParse::Bad(req);
        }
        return match read_chunked(buf, head_end) {
            Chunked::Incomplete => RawParse::Incomplete,
            Chunked::Bad(why) => {
                req.error = Some(why);
                RawParse::Bad(req)
            }
            Chunked::Done(body, end) => {
                req.body = body;
                RawParse::Done(req, end)
            }
        };
    }
    let cls: Vec<String> = req
        .header_all("content-length")
        .iter()
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect();
    let len = match cls.first() {
        None => 0,
        Some(first) => {
            let parsed = first.parse::<usize>().ok().filter(|_| {
                first.bytes().all(|b| b.is_ascii_digit()) && cls.iter().all(|v| v == first)
            });
            match parsed {
                Some(n) => n,
                None => {
                    req.error = Some(format!("bad or conflicting Content-Length {cls:?}"));
                    return RawParse::Bad(req);
                }
            }
        }
    };
    if buf.len() < head_end + len {
        return RawParse::Incomplete;
    }
    req.body = buf[head_end..head_end + len].to_vec();
    RawParse::Done(req, head_end + len)
}

/// The outcome of reading a chunked body.
enum Chunked {
    /// Need more bytes.
    Incomplete,
    /// The de-chunked body and where the request ends.
    Done(Vec<u8>, usize),
    /// Why the body cannot be framed.
    Bad(String),
}

/// Reads the chunked body starting at `buf[pos..]`, trailer fields included.
fn read_chunked(buf: &[u8], mut pos: usize) -> Chunked {
    let mut body = Vec::new();
    loop {
        let Some(lf) = find_lf(buf, pos) else {
            return Chunked::Incomplete;
        };
        let size_line = String::from_utf8_lossy(line_at(buf, pos, lf)).into_owned();
        let size_text = size_line.split(';').next().unwrap_or("");
        let size = match usize::from_str_radix(size_text, 16) {
            Ok(s) if !size_text.is_empty() && size_text.len() <= 8 => s,
            _ => return Chunked::Bad(format!("bad chunk size line {size_line:?}")),
        };
        pos = lf + 1;
        if size == 0 {
            // Trailer fields up to an empty line.
            loop {
                let Some(lf) = find_lf(buf, pos) else {
                    return Chunked::Incomplete;
                };
                let empty = line_at(buf, pos, lf).is_empty();
                pos = lf + 1;
                if empty {
                    return Chunked::Done(body, pos);
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Chunked::Incomplete;
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if buf[pos + size..pos + size + 2] != b"\r\n"[..] {
            return Chunked::Bad("chunk data not followed by CRLF".to_string());
        }
        pos += size + 2;
    }
}
