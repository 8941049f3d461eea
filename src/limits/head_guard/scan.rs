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
