//! Finding the end of a request head in the bytes as they arrive.

/// Where the end-of-head scanner is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Line {
    /// Inside a line that has text (or before any line).
    #[default]
    Text,
    /// At the start of a line: nothing but carriage returns since the last line feed.
    Start,
}

/// Finds the end of a request head in the bytes read so far, and counts them.
#[derive(Debug, Default)]
pub(super) struct HeadScan {
    line: Line,
    /// A non-empty line was seen (empty lines before the request line are skipped).
    seen_text: bool,
    /// Bytes of the head so far (up to and including its end once found).
    pub(super) bytes: usize,
    /// Lines of the head ended so far (the request line and header lines).
    pub(super) lines: usize,
}

impl HeadScan {
    /// Scan the next bytes; true when the head ended within them.
    ///
    /// A line with nothing but carriage returns is empty; the first empty line after some
    /// text ends the head. Only line feeds are searched for, and each line's text is noticed
    /// at its first byte, so a head costs about one `memchr` step per line.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut from = 0;
        for nl in memchr::memchr_iter(b'\n', bytes) {
            self.note_text(&bytes[from..nl]);
            // Before any text (leading empty lines) a line feed only starts a line.
            if self.seen_text {
                if self.line == Line::Start {
                    self.bytes += nl + 1;
                    return true;
                }
                self.lines += 1;
            }
            self.line = Line::Start;
            from = nl + 1;
        }
        self.note_text(&bytes[from..]);
        self.bytes += bytes.len();
        false
    }

    /// Part of a line (no line feed in it): any byte but a carriage return is text.
    fn note_text(&mut self, part: &[u8]) {
        if part.iter().any(|&b| b != b'\r') {
            self.line = Line::Text;
            self.seen_text = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `parts` as successive reads; the byte count at which the head ended.
    fn end_of(parts: &[&[u8]]) -> Option<usize> {
        let mut scan = HeadScan::default();
        parts
            .iter()
            .find_map(|p| scan.feed(p).then_some(scan.bytes))
    }

    #[test]
    fn finds_the_empty_line_that_ends_a_head() {
        let crlf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(end_of(&[&[&crlf[..], b"body"].concat()]), Some(crlf.len()));
        let lf = b"GET / HTTP/1.1\nHost: a\n\n";
        assert_eq!(end_of(&[lf]), Some(lf.len()));
        // Split anywhere, one byte at a time.
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let bytes: Vec<&[u8]> = head.chunks(1).collect();
        assert_eq!(end_of(&bytes), Some(head.len()));
        assert_eq!(end_of(&[b"GET / HTTP/1.1\r\n", b"\r", b"\n"]), Some(18));
    }

    #[test]
    fn counts_lines() {
        let mut scan = HeadScan::default();
        assert!(!scan.feed(b"\r\nGET / HTTP/1.1\r\nA: 1\nB: 2\r\n"));
        assert_eq!(scan.lines, 3);
        assert!(scan.feed(b"\r\n"));
        assert_eq!(scan.lines, 3);
    }

    /// The byte-at-a-time state machine the scanner replaced, as the reference.
    fn reference(parts: &[&[u8]]) -> (Option<usize>, usize) {
        let (mut start, mut seen, mut bytes, mut lines) = (false, false, 0, 0);
        for b in parts.concat() {
            bytes += 1;
            match b {
                b'\n' if start && seen => return (Some(bytes), lines),
                b'\n' => {
                    lines += usize::from(seen && !start);
                    start = true;
                }
                b'\r' => {}
                _ => {
                    seen = true;
                    start = false;
                }
            }
        }
        (None, lines)
    }

    #[test]
    fn agrees_with_a_byte_at_a_time_scan() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n) as usize
        };
        for _ in 0..20_000 {
            let len = next(24);
            let input: Vec<u8> = (0..len).map(|_| b"a\r\n\n "[next(5)]).collect();
            let cut = next(len as u64 + 1);
            let parts = [&input[..cut], &input[cut..]];
            let mut scan = HeadScan::default();
            let ended = parts
                .iter()
                .find_map(|p| scan.feed(p).then_some(scan.bytes));
            assert_eq!(
                (ended, scan.lines),
                reference(&parts),
                "{input:?} cut at {cut}"
            );
        }
    }

    #[test]
    fn leading_empty_lines_do_not_end_a_head() {
        assert_eq!(end_of(&[b"\r\n\r\n\n\n"]), None);
        assert_eq!(end_of(&[b"\n\n", b"GET / HTTP/1.1\r\n\r\n"]), Some(2 + 18));
        assert_eq!(end_of(&[b"GET / HTTP/1.1\r\nX: \r\r\n"]), None);
    }
}
