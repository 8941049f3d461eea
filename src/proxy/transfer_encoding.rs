//! The one `Transfer-Encoding` a request may carry: a single `chunked`.
//!
//! fulcrum decodes a chunked request body and forwards the bytes; it implements no other
//! transfer coding, so a request that declares one (`gzip, chunked`) cannot be forwarded
//! faithfully: 501 Not Implemented, as nginx answers. A repeated `chunked` (two header lines,
//! or twice in one list) is a framing two parsers may read differently: 400. HTTP/1.0 has no
//! transfer codings (RFC 9112 6.1: faulty framing): 400. Both answers close the connection,
//! since where the body ends is then unknown.
//!
//! Pingora's parser answers some of these itself, with 400, before fulcrum sees the request:
//! a final coding other than `chunked` (`gzip`, `identity`, `chunked, identity`) and HTTP/1.0
//! with any `Transfer-Encoding`.

use http::header::TRANSFER_ENCODING;
use pingora_http::RequestHeader;

/// Why a request's `Transfer-Encoding` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncodingError {
    /// More than one `Transfer-Encoding` line, or `chunked` more than once: 400.
    Repeated,
    /// HTTP/1.0 with a `Transfer-Encoding`: 400.
    Http10,
    /// A coding other than `chunked`: 501.
    Unsupported,
}

impl TransferEncodingError {
    /// The status and body to answer with.
    pub fn answer(self) -> (u16, &'static str) {
        match self {
            TransferEncodingError::Repeated => (
                400,
                "400 Bad Request: Transfer-Encoding must be a single \"chunked\"\n",
            ),
            TransferEncodingError::Http10 => {
                (400, "400 Bad Request: HTTP/1.0 has no Transfer-Encoding\n")
            }
            TransferEncodingError::Unsupported => (
                501,
                "501 Not Implemented: the only Transfer-Encoding accepted is \"chunked\"\n",
            ),
        }
    }
}

/// Check a request head's `Transfer-Encoding`: none, or exactly one line whose value is
/// `chunked` (any case, surrounding whitespace and empty list elements ignored).
pub fn check(req: &RequestHeader) -> Result<(), TransferEncodingError> {
    let mut lines = req.headers.get_all(TRANSFER_ENCODING).iter();
    let Some(first) = lines.next() else {
        return Ok(());
    };
    if req.version == http::Version::HTTP_10 {
        return Err(TransferEncodingError::Http10);
    }
    if lines.next().is_some() {
        return Err(TransferEncodingError::Repeated);
    }
    check_value(first.as_bytes())
}

/// The rule for one `Transfer-Encoding` value.
fn check_value(value: &[u8]) -> Result<(), TransferEncodingError> {
    let mut chunked = 0usize;
    let mut other = false;
    for coding in value.split(|b| *b == b',').map(|c| c.trim_ascii()) {
        if coding.is_empty() {
            continue;
        }
        if coding.eq_ignore_ascii_case(b"chunked") {
            chunked += 1;
        } else {
            other = true;
        }
    }
    match (chunked, other) {
        (1, false) => Ok(()),
        (c, _) if c > 1 => Err(TransferEncodingError::Repeated),
        _ => Err(TransferEncodingError::Unsupported),
    }
}

#[cfg(test)]
mod tests {
    use super::TransferEncodingError::*;
    use super::*;

    fn head(version: http::Version, te: &[&str]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        req.set_version(version);
        for v in te {
            req.append_header("transfer-encoding", *v).unwrap();
        }
        req
    }

    fn check11(te: &[&str]) -> Result<(), TransferEncodingError> {
        check(&head(http::Version::HTTP_11, te))
    }

    #[test]
    fn one_chunked_is_accepted() {
        assert_eq!(check11(&[]), Ok(()));
        for v in [
            "chunked",
            "CHUNKED",
            "Chunked",
            " chunked ",
            "\tchunked",
            "chunked,",
            ", chunked",
        ] {
            assert_eq!(check11(&[v]), Ok(()), "{v:?}");
        }
    }

    #[test]
    fn repeated_chunked_is_400() {
        assert_eq!(check11(&["chunked", "chunked"]), Err(Repeated));
        assert_eq!(check11(&["chunked, chunked"]), Err(Repeated));
        assert_eq!(check11(&["gzip", "chunked"]), Err(Repeated));
        assert_eq!(check11(&["gzip, chunked, chunked"]), Err(Repeated));
    }

    #[test]
    fn other_codings_are_501() {
        for v in [
            "gzip, chunked",
            "identity",
            "gzip",
            "xchunked",
            "chunked, identity",
            "chunked;q=1",
            "",
        ] {
            assert_eq!(check11(&[v]), Err(Unsupported), "{v:?}");
        }
    }

    #[test]
    fn http_1_0_with_transfer_encoding_is_400() {
        assert_eq!(
            check(&head(http::Version::HTTP_10, &["chunked"])),
            Err(Http10)
        );
        assert_eq!(check(&head(http::Version::HTTP_10, &[])), Ok(()));
    }

    #[test]
    fn answers() {
        assert_eq!(Repeated.answer().0, 400);
        assert_eq!(Http10.answer().0, 400);
        assert_eq!(Unsupported.answer().0, 501);
    }
}
