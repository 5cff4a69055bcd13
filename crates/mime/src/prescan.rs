//! A look at the raw bytes before the MIME parser runs.
//!
//! - Does the input begin with a header field at all? Else it is not a message and is refused.
//! - Which lines of the header block are neither fields nor continuations? The parser skips
//!   those silently; we warn.
//! - How much work could the parser's boundary search do? mail-parser 0.11 looks for each
//!   declared multipart boundary from the declaration onwards, to the end of the input when it
//!   never comes, so a message declaring many boundaries that never appear costs
//!   declarations x size steps: minutes for one megabyte. [`boundary_work`] bounds that number
//!   so the caller can fall back to reading the headers only.
//!
//! Linear passes over bytes; never allocates more than the excerpts.

/// What the scan found.
#[derive(Debug, Default)]
pub struct HeaderScan {
    /// The first line is a syntactically valid `name: value` field.
    pub starts_with_field: bool,
    /// 1-based line numbers and excerpts of the first malformed lines.
    pub malformed: Vec<(usize, String)>,
    /// How many malformed lines there were in all.
    pub malformed_count: usize,
    /// An empty line ends the header block (else the input is all headers).
    pub has_body: bool,
}

/// How many malformed lines are quoted; the rest are only counted.
const QUOTED_MALFORMED: usize = 5;

/// RFC 5322 `ftext`: printable US-ASCII except the colon.
fn is_ftext(b: u8) -> bool {
    (33..=126).contains(&b) && b != b':'
}

/// `name WSP* ":"` at the start of the line, with `name` made of `ftext` only.
fn is_field_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = &line[..colon];
    let trimmed_len = name
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |p| p + 1);
    trimmed_len > 0 && name[..trimmed_len].iter().all(|&b| is_ftext(b))
}

/// A line the parser cannot take as a field: no colon, or nothing before it.
fn is_malformed_line(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        None => true,
        Some(colon) => line[..colon].iter().all(u8::is_ascii_whitespace),
    }
}

pub fn scan(raw: &[u8]) -> HeaderScan {
    let mut scan = HeaderScan::default();
    for (index, line) in raw.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if index == 0 {
            scan.starts_with_field = is_field_line(line);
            if !scan.starts_with_field {
                return scan;
            }
            continue;
        }
        if line.is_empty() {
            scan.has_body = true;
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        if is_malformed_line(line) {
            scan.malformed_count += 1;
            if scan.malformed.len() < QUOTED_MALFORMED {
                let text = String::from_utf8_lossy(&line[..line.len().min(200)]);
                scan.malformed
                    .push((index + 1, crate::warnings::excerpt(&text)));
            }
        }
    }
    scan
}

/// An upper bound on the parser's boundary-search work, in bytes scanned: a multipart
/// declaration needs both a `Content-Type` field and a `boundary` parameter, so either count
/// (case-insensitive, anywhere in the input: mail-parser also finds a boundary, and the headers
/// after it, in the middle of a line) bounds the declarations, and each declaration scans at
/// most the whole input. `Content-Type` is counted first, cheaply (see [`count_content_type`]);
/// `boundary` only when that bound is over [`crate::MAX_BOUNDARY_WORK`], to tighten it.
pub fn boundary_work(raw: &[u8]) -> u64 {
    let size = raw.len() as u64;
    let mut declarations = count_content_type(raw) as u64;
    if declarations * size > crate::MAX_BOUNDARY_WORK {
        declarations = declarations.min(count_ascii_ci(raw, b"boundary") as u64);
    }
    declarations * size
}

/// Occurrences of `content-type` in `hay`, ignoring ASCII case. Found from the hyphen, with SIMD
/// (`memchr`): this runs over every collected message, attachments included, and base64 (most
/// of the bytes of large messages) has no hyphen at all.
fn count_content_type(hay: &[u8]) -> usize {
    const NEEDLE: &[u8] = b"content-type";
    const HYPHEN: usize = 7;
    memchr::memchr_iter(b'-', hay)
        .filter(|&i| {
            i >= HYPHEN
                && hay
                    .get(i - HYPHEN..i - HYPHEN + NEEDLE.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(NEEDLE))
        })
        .count()
}

/// Occurrences of `needle` (lowercase ASCII letter first) in `hay`, ignoring ASCII case,
/// without overlaps. The first byte is found with SIMD (`memchr2`, both cases).
fn count_ascii_ci(hay: &[u8], needle: &[u8]) -> usize {
    let first = needle[0];
    let mut count = 0;
    let mut next_free = 0;
    for i in memchr::memchr2_iter(first, first.to_ascii_uppercase(), hay) {
        if i >= next_free
            && hay
                .get(i..i + needle.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(needle))
        {
            count += 1;
            next_free = i + needle.len();
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_work_counts_declarations_times_size() {
        let raw =
            b"Content-Type: multipart/mixed; BOUNDARY=x\r\n\r\n--x\r\nCONTENT-TYPE: text/plain\r\n";
        assert_eq!(boundary_work(raw), 2 * raw.len() as u64);
        assert_eq!(
            count_content_type(b"Content-Type: a\nx--bCONTENT-TYPE: b; content-type"),
            3,
            "anywhere, in any case"
        );
        assert_eq!(
            count_content_type(b"-type content- Content-Typ ontent-type"),
            0
        );
        assert_eq!(count_content_type(b""), 0);
        assert_eq!(count_ascii_ci(b"aaaa", b"aa"), 2);
        assert_eq!(count_ascii_ci(b"aaa", b"aa"), 1);
        assert_eq!(count_ascii_ci(b"xBoUnDaRyboundarYBOUNDAR", b"boundary"), 2);
        assert_eq!(boundary_work(b"Subject: no body parts\r\n"), 0);
        // Over the limit, the boundary parameters tighten the bound: here there are none.
        let text = "Content-Type mentioned in text\r\n".repeat(70_000);
        let raw = format!("Subject: a lot of text\r\n\r\n{text}");
        assert_eq!(boundary_work(raw.as_bytes()), 0);
    }

    #[test]
    fn a_message_starts_with_a_field() {
        assert!(scan(b"Subject: hi\r\n\r\nbody").starts_with_field);
        assert!(scan(b"X-Weird-Name!  : v\r\n").starts_with_field);
        assert!(!scan(b"hello world\r\nSubject: x\r\n").starts_with_field);
        assert!(!scan(b"\r\nSubject: x\r\n").starts_with_field);
        assert!(!scan(b" Subject: x\r\n").starts_with_field);
        assert!(!scan(b"Sub ject: x\r\n").starts_with_field);
        assert!(!scan(b": x\r\n").starts_with_field);
        assert!(!scan(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n").starts_with_field);
        assert!(!scan(b"").starts_with_field);
    }

    #[test]
    fn malformed_lines_in_the_header_block_are_counted_not_in_the_body() {
        let s = scan(b"From: a@b\r\nthis is junk\r\n  folded: fine\r\n: empty\r\nTo: c@d\r\n\r\nbody junk\r\n");
        assert_eq!(s.malformed_count, 2);
        assert_eq!(s.malformed[0], (2, "this is junk".to_owned()));
        assert_eq!(s.malformed[1].0, 4);
    }
}
