//! Framing: cuts server responses (a line, plus any `{n}` literals and the lines that continue
//! it) out of a byte stream, within size limits. Pure: the connection feeds it bytes.

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

/// What [`Framer::advance`] needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A complete response.
    Complete(RawResponse),
    /// More bytes in the buffer (the rest of a line).
    Bytes,
    /// This many more bytes of the literal being read: they may go straight into
    /// [`Framer::literal_room`] instead of the buffer.
    Literal(usize),
}

/// A literal being read: its bytes so far and its announced size.
#[derive(Debug)]
struct Partial {
    bytes: Vec<u8>,
    size: usize,
}

/// The largest buffer reserved for a literal before its bytes arrive, so that a server
/// announcing a huge literal and sending little costs little.
const LITERAL_RESERVE: usize = 256 * 1024;

/// Cuts server responses out of a byte stream, one at a time. Each literal (a message body) is
/// read into an exactly sized buffer of its own, which the response then holds without a copy:
/// at most what was already buffered is copied, the rest can be read straight into it. So the
/// connection's buffer stays small whatever the message sizes.
#[derive(Debug)]
pub struct Framer {
    limits: FrameLimits,
    /// The segments of the response being framed.
    segments: Vec<Segment>,
    literal: Option<Partial>,
}

impl Framer {
    pub fn new(limits: FrameLimits) -> Self {
        Self {
            limits,
            segments: Vec::new(),
            literal: None,
        }
    }

    /// Takes what it can from the front of `buf` (removing it) towards the next response.
    pub fn advance(&mut self, buf: &mut Vec<u8>) -> Result<Progress, ProtocolError> {
        loop {
            if let Some(partial) = &mut self.literal {
                let missing = partial.size - partial.bytes.len();
                let take = missing.min(buf.len());
                if partial.bytes.capacity() - partial.bytes.len() < take {
                    partial.bytes.reserve_exact(missing);
                }
                partial.bytes.extend_from_slice(&buf[..take]);
                buf.drain(..take);
                let missing = partial.size - partial.bytes.len();
                if missing > 0 {
                    return Ok(Progress::Literal(missing));
                }
                if let Some(done) = self.literal.take() {
                    self.segments.push(Segment::Literal(done.bytes));
                }
                continue;
            }
            let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                if buf.len() > self.limits.max_line {
                    return Err(ProtocolError::LineTooLong(self.limits.max_line));
                }
                return Ok(Progress::Bytes);
            };
            if nl > self.limits.max_line {
                return Err(ProtocolError::LineTooLong(self.limits.max_line));
            }
            let line = &buf[..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some((text_len, size)) = literal_marker(line) else {
                self.segments.push(Segment::Text(line.to_vec()));
                buf.drain(..=nl);
                let segments = std::mem::take(&mut self.segments);
                return Ok(Progress::Complete(RawResponse { segments }));
            };
            let size = usize::try_from(size)
                .ok()
                .filter(|s| *s <= self.limits.max_literal)
                .ok_or(ProtocolError::LiteralTooLarge(size))?;
            self.segments.push(Segment::Text(line[..text_len].to_vec()));
            buf.drain(..=nl);
            self.literal = Some(Partial {
                bytes: Vec::with_capacity(size.min(LITERAL_RESERVE)),
                size,
            });
        }
    }

    /// The buffer of the literal being read, with spare room for at least one more byte, for
    /// reading straight into it (at most what the literal still misses, which
    /// [`Progress::Literal`] says); `None` when no literal is being read.
    pub fn literal_room(&mut self) -> Option<&mut Vec<u8>> {
        let partial = self.literal.as_mut()?;
        if partial.bytes.len() == partial.bytes.capacity() {
            partial
                .bytes
                .reserve_exact(partial.size - partial.bytes.len());
        }
        Some(&mut partial.bytes)
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
    use std::io::Write as _;

    use super::*;

    /// Frames the first response of `bytes`; returns it and what is left of the buffer.
    fn complete(bytes: &[u8]) -> (RawResponse, Vec<u8>) {
        let mut buf = bytes.to_vec();
        match Framer::new(FrameLimits::default())
            .advance(&mut buf)
            .unwrap()
        {
            Progress::Complete(r) => (r, buf),
            other => panic!("needs more: {other:?}"),
        }
    }

    #[test]
    fn frames_a_line_and_leaves_the_rest() {
        let (r, rest) = complete(b"* OK hi\r\nA1 OK done\r\n");
        assert_eq!(rest, b"A1 OK done\r\n");
        assert_eq!(r.segments, vec![Segment::Text(b"* OK hi".to_vec())]);
        assert_eq!(r.first_line(), "* OK hi");
    }

    #[test]
    fn frames_literals_and_continuation_lines() {
        let (r, rest) = complete(b"* 1 FETCH (UID 7 BODY[] {5}\r\nab\r\nc FLAGS ())\r\nrest");
        assert_eq!(rest, b"rest");
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
    fn asks_for_more_and_reads_literals_straight_into_their_buffer() {
        let mut framer = Framer::new(FrameLimits::default());
        let mut buf = b"* OK no newline".to_vec();
        assert_eq!(framer.advance(&mut buf).unwrap(), Progress::Bytes);
        assert_eq!(
            buf, b"* OK no newline",
            "an unfinished line stays in the buffer"
        );
        assert!(framer.literal_room().is_none());

        let mut framer = Framer::new(FrameLimits::default());
        let mut buf = b"* 1 FETCH (BODY[] {10}\r\nabc".to_vec();
        assert_eq!(framer.advance(&mut buf).unwrap(), Progress::Literal(7));
        assert!(
            buf.is_empty(),
            "what arrived of the literal moved into its own buffer"
        );
        // A read straight into the literal, as the connection does.
        let room = framer.literal_room().unwrap();
        assert!(room.capacity() >= 10);
        room.extend_from_slice(b"defg");
        assert_eq!(framer.advance(&mut buf).unwrap(), Progress::Literal(3));
        buf.extend_from_slice(b"hij)\r\nA1 OK");
        let Progress::Complete(r) = framer.advance(&mut buf).unwrap() else {
            panic!("not complete");
        };
        assert_eq!(r.segments[1], Segment::Literal(b"abcdefghij".to_vec()));
        assert_eq!(r.segments[2], Segment::Text(b")".to_vec()));
        assert_eq!(buf, b"A1 OK");
        assert_eq!(framer.advance(&mut buf).unwrap(), Progress::Bytes);
    }

    #[test]
    fn a_huge_announced_literal_reserves_little_until_its_bytes_arrive() {
        let mut framer = Framer::new(FrameLimits::default());
        let mut buf = b"* 1 FETCH (BODY[] {90000000}\r\n".to_vec();
        assert_eq!(
            framer.advance(&mut buf).unwrap(),
            Progress::Literal(90_000_000)
        );
        let room = framer.literal_room().unwrap();
        assert!(room.capacity() <= LITERAL_RESERVE);
        room.resize(room.capacity(), b'x');
        assert!(framer.literal_room().unwrap().capacity() >= 90_000_000);
    }

    #[test]
    fn literals_get_exactly_sized_buffers_of_their_own() {
        let mut framer = Framer::new(FrameLimits::default());
        let mut buf = Vec::new();
        for (n, size) in [(1, 1000), (2, 300_000)] {
            write!(buf, "* {n} FETCH (BODY[] {{{size}}}\r\n").unwrap();
            buf.resize(buf.len() + size, b'a' + n);
            buf.extend_from_slice(b")\r\n");
        }
        let mut bodies = Vec::new();
        while let Progress::Complete(mut r) = framer.advance(&mut buf).unwrap() {
            let Segment::Literal(body) = r.segments.remove(1) else {
                panic!("no literal");
            };
            bodies.push(body);
        }
        assert_eq!(bodies.len(), 2);
        assert!(bodies[0].iter().all(|&b| b == b'b') && bodies[0].len() == 1000);
        assert!(bodies[1].iter().all(|&b| b == b'c') && bodies[1].len() == 300_000);
        assert_eq!(
            (bodies[0].capacity(), bodies[1].capacity()),
            (1000, 300_000)
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn enforces_limits() {
        let limits = FrameLimits {
            max_line: 8,
            max_literal: 4,
        };
        assert_eq!(
            Framer::new(limits).advance(&mut b"0123456789".to_vec()),
            Err(ProtocolError::LineTooLong(8))
        );
        assert_eq!(
            Framer::new(limits).advance(&mut b"* {5}\r\nabcde\r\n".to_vec()),
            Err(ProtocolError::LiteralTooLarge(5))
        );
        let (r, rest) = complete(b"* {99999999999999999999}\r\n");
        assert_eq!(
            r.segments,
            vec![Segment::Text(b"* {99999999999999999999}".to_vec())],
            "an absurd marker is text, not a literal"
        );
        assert!(rest.is_empty());
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
