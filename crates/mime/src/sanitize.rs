//! Making decoded, attacker-controlled text safe to pass on: header values without control
//! characters (no consumer can be tricked into writing an extra header line) and file names that
//! are one harmless path component.
//!
//! Pure string functions; they know nothing of MIME.

use std::fmt::Write as _;

/// Longest `safe_filename`, in bytes.
pub const MAX_FILENAME_BYTES: usize = 200;
/// Longest extension kept when a long file name is shortened.
const MAX_EXTENSION_BYTES: usize = 16;

/// Characters that make a header value dangerous or misleading when written out again: C0 and
/// C1 controls (CR, LF, NUL, ESC, ...), DEL, and the Unicode line and paragraph separators.
/// TAB is whitespace, not a threat, and is handled apart.
fn is_forbidden_in_value(c: char) -> bool {
    c != '\t' && (c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

/// Characters that can make a file name display as something it is not (right-to-left override
/// turning `invoice\u{202E}fdp.exe` into `invoiceexe.pdf`) or that are invisible.
fn is_format_trick(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// Characters Windows, macOS or common shells refuse or treat specially in a file name.
fn is_reserved_in_filename(c: char) -> bool {
    matches!(c, '<' | '>' | ':' | '"' | '/' | '\\' | '|' | '?' | '*')
}

/// Returns the value with every run of control characters replaced by one space, tabs turned
/// into spaces and the ends trimmed, and whether any control character was found.
pub fn clean_value(value: &str) -> (String, bool) {
    let mut out = String::with_capacity(value.len());
    let mut found = false;
    let mut in_run = false;
    for c in value.chars() {
        if is_forbidden_in_value(c) {
            found = true;
            if !in_run {
                out.push(' ');
                in_run = true;
            }
        } else {
            in_run = false;
            out.push(if c == '\t' { ' ' } else { c });
        }
    }
    let trimmed = out.trim();
    if trimmed.len() == out.len() {
        (out, found)
    } else {
        (trimmed.to_owned(), found)
    }
}

/// Lowercase hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Truncates to at most `max` bytes on a character boundary.
pub fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The usual file extension for a media type, `bin` when unknown.
pub fn extension_for(content_type: &str) -> &'static str {
    match content_type {
        "text/plain" => "txt",
        "text/html" => "html",
        "text/calendar" => "ics",
        "text/csv" => "csv",
        "image/png" => "png",
        "image/jpeg" | "image/jpg" | "image/pjpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/bmp" => "bmp",
        "image/tiff" => "tif",
        "image/svg+xml" => "svg",
        "application/pdf" => "pdf",
        "application/zip" => "zip",
        "application/json" => "json",
        "application/xml" | "text/xml" => "xml",
        "application/ms-tnef" | "application/vnd.ms-tnef" => "dat",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "application/vnd.ms-outlook" => "msg",
        "message/rfc822" | "message/global" => "eml",
        "audio/mpeg" => "mp3",
        "video/mp4" => "mp4",
        _ => "bin",
    }
}

/// Windows device names, which refuse to be files whatever their extension.
fn is_windows_device(stem: &str) -> bool {
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        _ => {
            let b = upper.as_bytes();
            b.len() == 4
                && (upper.starts_with("COM") || upper.starts_with("LPT"))
                && b[3].is_ascii_digit()
        }
    }
}

/// A file name safe to use as one path component: the last component of `sent` only, without
/// control, format-trick or reserved characters, without leading dots, at most
/// [`MAX_FILENAME_BYTES`] bytes (the extension kept when it is short), never empty:
/// `attachment-{number}.{extension for the content type}` when nothing usable is left.
pub fn safe_filename(sent: Option<&str>, number: usize, content_type: &str) -> String {
    let cleaned = sent.map(clean_filename).unwrap_or_default();
    if cleaned.is_empty() {
        format!("attachment-{number}.{}", extension_for(content_type))
    } else {
        cleaned
    }
}

fn clean_filename(sent: &str) -> String {
    // Last non-empty path component, for both separators.
    let last = sent
        .rsplit(['/', '\\'])
        .find(|part| !part.trim().is_empty())
        .unwrap_or("");
    let mut name: String = last
        .chars()
        .filter(|&c| !(c.is_control() || is_format_trick(c) || c == '\u{2028}' || c == '\u{2029}'))
        .map(|c| if is_reserved_in_filename(c) { '_' } else { c })
        .collect();
    // No hidden files, no `.` or `..`; Windows drops trailing dots and spaces by itself.
    name = name
        .trim()
        .trim_start_matches('.')
        .trim_end_matches(['.', ' '])
        .trim()
        .to_owned();
    if name.is_empty() {
        return name;
    }
    let stem = name.split('.').next().unwrap_or("");
    if is_windows_device(stem.trim()) {
        name.insert(0, '_');
    }
    shorten(&name)
}

fn shorten(name: &str) -> String {
    if name.len() <= MAX_FILENAME_BYTES {
        return name.to_owned();
    }
    if let Some((stem, ext)) = name.rsplit_once('.')
        && !stem.is_empty()
        && !ext.is_empty()
        && ext.len() <= MAX_EXTENSION_BYTES
    {
        let stem = truncate_bytes(stem, MAX_FILENAME_BYTES - 1 - ext.len());
        return format!("{}.{ext}", stem.trim_end());
    }
    truncate_bytes(name, MAX_FILENAME_BYTES)
        .trim_end()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_value_collapses_control_runs_and_reports_them() {
        assert_eq!(
            clean_value("Hello\r\nBcc: victim@example.com"),
            ("Hello Bcc: victim@example.com".to_owned(), true)
        );
        assert_eq!(clean_value("a\0b\u{2028}c"), ("a b c".to_owned(), true));
        assert_eq!(clean_value(" tab\there "), ("tab here".to_owned(), false));
        assert_eq!(clean_value("\r\n"), (String::new(), true));
    }

    #[test]
    fn path_traversal_keeps_the_last_component() {
        assert_eq!(
            safe_filename(Some("../../etc/passwd"), 1, "text/plain"),
            "passwd"
        );
        assert_eq!(safe_filename(Some("/etc/shadow"), 1, ""), "shadow");
        assert_eq!(
            safe_filename(Some("C:\\Windows\\system32\\evil.dll"), 1, ""),
            "evil.dll"
        );
        assert_eq!(safe_filename(Some("dir/"), 1, ""), "dir");
    }

    #[test]
    fn empty_or_dot_names_fall_back_with_an_extension() {
        assert_eq!(safe_filename(None, 3, "image/png"), "attachment-3.png");
        assert_eq!(
            safe_filename(Some(".."), 1, "application/pdf"),
            "attachment-1.pdf"
        );
        assert_eq!(
            safe_filename(Some("\0\r\n"), 2, "x/unknown"),
            "attachment-2.bin"
        );
        assert_eq!(
            safe_filename(Some("../"), 4, "message/rfc822"),
            "attachment-4.eml"
        );
    }

    #[test]
    fn reserved_and_trick_characters_are_removed() {
        assert_eq!(safe_filename(Some("a:b|c?.txt"), 1, ""), "a_b_c_.txt");
        assert_eq!(
            safe_filename(Some("invoice\u{202E}fdp.exe"), 1, ""),
            "invoicefdp.exe"
        );
        assert_eq!(safe_filename(Some("nul\0l.txt"), 1, ""), "null.txt");
        assert_eq!(safe_filename(Some(".bashrc"), 1, ""), "bashrc");
        assert_eq!(safe_filename(Some("CON.txt"), 1, ""), "_CON.txt");
        assert_eq!(safe_filename(Some("lpt1"), 1, ""), "_lpt1");
        assert_eq!(safe_filename(Some("report. . "), 1, ""), "report");
    }

    #[test]
    fn long_names_are_capped_keeping_the_extension() {
        let long = format!("{}.pdf", "é".repeat(300));
        let safe = safe_filename(Some(&long), 1, "");
        assert!(safe.len() <= MAX_FILENAME_BYTES, "{}", safe.len());
        assert_eq!(safe.rsplit_once('.').map(|(_, ext)| ext), Some("pdf"));
        assert!(safe.starts_with('é'));
        let no_ext = "x".repeat(500);
        assert_eq!(
            safe_filename(Some(&no_ext), 1, "").len(),
            MAX_FILENAME_BYTES
        );
    }

    #[test]
    fn hex_and_truncate() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(truncate_bytes("aé", 2), "a");
        assert_eq!(truncate_bytes("abc", 10), "abc");
    }
}
