//! Framing: cuts one server response (a line, plus any `{n}` literals and the lines that continue
//! it) out of a byte buffer, within size limits. Pure: the connection feeds it bytes.

use super::ProtocolError;

/// A piece of one response: text (CRLF and the `{n}` marker removed) or the bytes of a literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text between literals; the first one starts with the tag, `*` or `+`.
    Text(Vec<u8>),
    /// The exact bytes of a `{n}` (or `~{n}`) literal.
    Literal(Vec<u8>),
}

/// One complete server response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawResponse {
    /// Text and literals in wire order; never empty for a framed response, and it always starts
    /// and ends with text.
    pub segments: Vec<Segment>,
}

impl RawResponse {
    /// The first line as text (lossy UTF-8), without literals.
    pub fn first_line(&self) -> String {
        match self.segments.first() {
            Some(Segment::Text(t)) => String::from_utf8_lossy(t).into_owned(),
            _ => String::new(),
        }
    }

    /// Bytes in literals (for accounting).
    pub fn literal_bytes(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.len(),
                Segment::Text(_) => 0,
            })
            .sum()
    }
}

/// Limits that keep memory bounded whatever a server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Longest line (between literals) accepted.
    pub max_line: usize,
    /// Largest single literal accepted.
    pub max_literal: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_line: 256 * 1024,
            max_literal: 100 * 1024 * 1024,
        }
    }
}

/// The outcome of framing a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete response and how many bytes of the buffer it used.
    Complete(RawResponse, usize),
    /// More bytes are needed: the buffer must hold at least this many before trying again.
    Need(usize),
}

/// Cuts the first complete response out of `buf`.
pub fn frame(buf: &[u8], limits: FrameLimits) -> Result<Frame, ProtocolError> {
    let mut segments = Vec::new();
    let mut pos = 0;
    loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() - pos > limits.max_line {
                return Err(ProtocolError::LineTooLong(limits.max_line));
            }
            return Ok(Frame::Need(buf.len() + 1));
        };
        if nl > limits.max_line {
            return Err(ProtocolError::LineTooLong(limits.max_line));
        }
        let end = pos + nl;
        let line = &buf[pos..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some((text_len, size)) = literal_marker(line) else {
            segments.push(Segment::Text(line.to_vec()));
            return Ok(Frame::Complete(RawResponse { segments }, end + 1));
        };
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= limits.max_literal)
            .ok_or(ProtocolError::LiteralTooLarge(size))?;
        let start = end + 1;
        let needed = start + size;
        if buf.len() < needed {
            return Ok(Frame::Need(needed));
        }
        segments.push(Segment::Text(line[..text_len].to_vec()));
        segments.push(Segment::Literal(buf[start..needed].to_vec()));
        pos = needed;
    }
}

/// If `line` ends with `{n}` or `~{n}`, the length of the text before the marker and `n`.
fn literal_marker(line: &[u8]) -> Option<(usize, u64)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let text_len = if open > 0 && line[open - 1] == b'~' {
        open - 1
    } else {
        open
    };
    Some((text_len, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (RawResponse, usize) {
        match frame(buf, FrameLimits::default()).unwrap() {
            Frame::Complete(r, used) => (r, used),
            Frame::Need(n) => panic!("needs {n}"),
        }
    }

    #[test]
    fn frames_a_line_and_leaves_the_rest() {
        let (r, used) = complete(b"* OK hi\r\nA1 OK done\r\n");
        assert_eq!(used, 9);
        assert_eq!(r.segments, vec![Segment::Text(b"* OK hi".to_vec())]);
        assert_eq!(r.first_line(), "* OK hi");
    }

    #[test]
    fn frames_literals_and_continuation_lines() {
        let buf = b"* 1 FETCH (UID 7 BODY[] {5}\r\nab\r\nc FLAGS ())\r\nrest";
        let (r, used) = complete(buf);
        assert_eq!(used, buf.len() - 4);
        assert_eq!(
            r.segments,
            vec![
                Segment::Text(b"* 1 FETCH (UID 7 BODY[] ".to_vec()),
                Segment::Literal(b"ab\r\nc".to_vec()),
                Segment::Text(b" FLAGS ())".to_vec()),
            ]
        );
        assert_eq!(r.literal_bytes(), 5);
    }

    #[test]
    fn asks_for_more_until_the_literal_is_there() {
        assert_eq!(
            frame(b"* 1 FETCH (BODY[] {10}\r\nabc", FrameLimits::default()).unwrap(),
            Frame::Need(24 + 10)
        );
        assert_eq!(
            frame(b"* OK no newline", FrameLimits::default()).unwrap(),
            Frame::Need(16)
        );
        assert_eq!(frame(b"", FrameLimits::default()).unwrap(), Frame::Need(1));
    }

    #[test]
    fn enforces_limits() {
        let limits = FrameLimits {
            max_line: 8,
            max_literal: 4,
        };
        assert_eq!(
            frame(b"0123456789", limits),
            Err(ProtocolError::LineTooLong(8))
        );
        assert_eq!(
            frame(b"* {5}\r\nabcde\r\n", limits),
            Err(ProtocolError::LiteralTooLarge(5))
        );
        assert_eq!(
            frame(b"* {99999999999999999999}\r\n", FrameLimits::default()).unwrap(),
            Frame::Complete(
                RawResponse {
                    segments: vec![Segment::Text(b"* {99999999999999999999}".to_vec())]
                },
                26
            ),
            "an absurd marker is text, not a literal"
        );
    }

    #[test]
    fn binary_literal_marker() {
        let (r, _) = complete(b"* 1 FETCH (BINARY[] ~{2}\r\n\x00\x01)\r\n");
        assert_eq!(r.segments[1], Segment::Literal(vec![0, 1]));
        assert_eq!(
            r.segments[0],
            Segment::Text(b"* 1 FETCH (BINARY[] ".to_vec())
        );
    }
}
