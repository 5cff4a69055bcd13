//! Hostile input: header injection, path traversal, broken charsets, malformed and abusive MIME
//! structure. Each case is accepted with the right warnings and a safe result, never a panic.

mod common;

use std::fmt::Write as _;

use oauthimap_mime::{
    Limits, MAX_FILENAME_BYTES, MAX_WARNINGS, Normalized, WarningCode, normalize,
    normalize_with_bytes,
};

fn has(n: &Normalized, code: WarningCode) -> bool {
    n.warnings.iter().any(|w| w.code == code)
}

fn crlf(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// Every decoded header value, address and file name in the message.
fn all_header_strings(n: &Normalized) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    out.extend(n.message_id.clone());
    out.extend(n.subject.clone());
    out.extend(n.date.clone());
    out.extend(n.date_raw.clone());
    out.extend(n.in_reply_to.iter().cloned());
    out.extend(n.references.iter().cloned());
    for list in [&n.from, &n.sender, &n.reply_to, &n.to, &n.cc, &n.bcc] {
        for a in list {
            out.extend(a.name.clone());
            out.extend(a.address.clone());
        }
    }
    for a in &n.attachments {
        out.extend(a.filename.clone());
        out.push(a.safe_filename.clone());
        out.push(a.content_type.clone());
        out.extend(a.content_id.clone());
    }
    for h in &n.headers {
        out.push(h.name.clone());
        out.push(h.value.clone());
    }
    out
}

#[test]
fn encoded_crlf_in_subject_and_names_cannot_inject_headers() {
    let n = common::parse("hostile_injection");
    assert_eq!(n.subject.as_deref(), Some("Hello Bcc: victim@example.com"));
    assert_eq!(
        n.from[0].name.as_deref(),
        Some("Evil Bcc: victim@example.com")
    );
    assert_eq!(n.from[0].address.as_deref(), Some("evil@example.com"));
    assert_eq!(
        n.cc[0].name.as_deref(),
        Some("Nul Name"),
        "encoded NUL removed"
    );
    assert!(n.bcc.is_empty(), "no Bcc was created");
    let raw_controls = n
        .headers
        .iter()
        .find(|h| h.name == "X-Raw-Controls")
        .unwrap();
    assert_eq!(raw_controls.value, "a b c", "raw NUL and ESC removed");
    for s in all_header_strings(&n) {
        assert!(
            !s.chars().any(char::is_control),
            "control character left in {s:?}"
        );
    }
    let details: Vec<&str> = n
        .warnings
        .iter()
        .filter(|w| w.code == WarningCode::ControlCharacters)
        .map(|w| w.detail.as_str())
        .collect();
    assert!(details.iter().any(|d| d.contains("Subject")), "{details:?}");
    assert!(details.iter().any(|d| d.contains("From")), "{details:?}");
    assert!(
        details.iter().any(|d| d.contains("X-Raw-Controls")),
        "{details:?}"
    );
}

#[test]
fn attachment_names_with_paths_nul_overrides_and_length_are_made_safe() {
    let n = common::parse("hostile_injection");
    let safe: Vec<&str> = n
        .attachments
        .iter()
        .map(|a| a.safe_filename.as_str())
        .collect();
    assert_eq!(safe[0], "passwd");
    assert_eq!(safe[1], "evil");
    assert_eq!(safe[2], "nul name.exe");
    assert_eq!(safe[3].len(), MAX_FILENAME_BYTES);
    assert!(safe[3].starts_with("AAAA"));
    assert_eq!(safe[3].rsplit_once('.').map(|(_, ext)| ext), Some("pdf"));
    assert_eq!(
        safe[4], "attachment-5.png",
        "a name of only separators falls back"
    );
    assert_eq!(safe[5], "invoicefdp.exe", "right-to-left override removed");
    // The original names stay available as evidence, minus control characters.
    assert_eq!(
        n.attachments[0].filename.as_deref(),
        Some("../../etc/passwd")
    );
    assert_eq!(
        n.attachments[5].filename.as_deref(),
        Some("invoice\u{202E}fdp.exe")
    );
    for name in safe {
        assert!(!name.is_empty() && name.len() <= MAX_FILENAME_BYTES);
        assert!(!name.contains(['/', '\\', '\0']) && !name.starts_with('.'));
    }
    let unsafe_names = n
        .warnings
        .iter()
        .filter(|w| w.code == WarningCode::UnsafeFilename)
        .count();
    assert_eq!(unsafe_names, 5);
}

#[test]
fn unknown_charsets_invalid_bytes_and_garbage_encoded_words_are_tolerated() {
    let n = common::parse("hostile_charsets");
    // Undecodable encoded-words stay as written; the good one next to them is decoded.
    assert_eq!(
        n.subject.as_deref(),
        Some("=?utf-8?b?!!!garbage!!!?= and =?utf-8?x?bad?= and oké")
    );
    assert_eq!(n.from[0].name.as_deref(), Some("Mystery Name"));
    assert_eq!(
        n.text,
        "Unknown charset body.\nInvalid utf-8: \u{FFFD}\u{FFFD} end."
    );
    assert_eq!(n.date, None);
    assert_eq!(n.date_raw.as_deref(), Some("32 Foo 2024 99:99:99 +9999"));
    assert!(has(&n, WarningCode::InvalidDate));
    let unknown = n
        .warnings
        .iter()
        .find(|w| w.code == WarningCode::UnknownCharset)
        .unwrap();
    assert!(unknown.detail.contains("x-klingon"), "{}", unknown.detail);
    assert!(has(&n, WarningCode::InvalidTextBytes));
}

#[test]
fn raw_non_utf8_header_bytes_are_replaced_with_a_warning() {
    let raw = crlf("From: a@example.com\nSubject: caf\u{e9}\n\nbody\n")
        .into_iter()
        // Turn the UTF-8 é (C3 A9) into a lone Latin-1 byte E9.
        .fold(Vec::new(), |mut v, b| {
            if v.last() == Some(&0xC3) && b == 0xA9 {
                v.pop();
                v.push(0xE9);
            } else {
                v.push(b);
            }
            v
        });
    let n = normalize(&raw, &Limits::default()).unwrap();
    assert_eq!(n.subject.as_deref(), Some("caf\u{FFFD}"));
    assert!(has(&n, WarningCode::InvalidHeaderBytes));
}

#[test]
fn unterminated_boundary_and_bad_base64_keep_what_is_there() {
    let n = common::parse("hostile_mime");
    assert_eq!(n.subject.as_deref(), Some("Unterminated boundary"));
    assert_eq!(n.text, "First part.");
    assert_eq!(n.attachments.len(), 1);
    assert!(has(&n, WarningCode::MalformedPart));
    let malformed = n
        .warnings
        .iter()
        .find(|w| w.code == WarningCode::MalformedHeader)
        .unwrap();
    assert!(malformed.detail.contains("this line is not a header"));
    // The header after the junk line was still read.
    assert!(n.headers.iter().any(|h| h.name == "Content-Type"));

    let raw = crlf(
        "From: a@example.com\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\n\
         Content-Type: text/plain\n\nnever closed\n",
    );
    let n = normalize(&raw, &Limits::default()).unwrap();
    assert_eq!(n.text.trim_end(), "never closed");
    assert!(has(&n, WarningCode::MalformedPart));
}

fn nested(depth: usize) -> Vec<u8> {
    let mut m = String::from("From: a@example.com\r\nSubject: deep\r\n");
    for i in 0..depth {
        let _ = write!(
            m,
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        );
    }
    m += "Content-Type: text/plain\r\n\r\ninnermost\r\n";
    for i in (0..depth).rev() {
        let _ = write!(m, "--b{i}--\r\n");
    }
    m.into_bytes()
}

#[test]
fn nesting_100_deep_is_capped_with_a_warning() {
    let n = normalize(&nested(100), &Limits::default()).unwrap();
    assert_eq!(n.subject.as_deref(), Some("deep"));
    assert_eq!(
        n.text, "",
        "the part below the depth limit is not extracted"
    );
    let w = n
        .warnings
        .iter()
        .find(|w| w.code == WarningCode::DepthLimit)
        .unwrap();
    assert!(
        w.detail.contains("1 parts nested more than 32 levels"),
        "{}",
        w.detail
    );

    // Within the limit the same shape is read completely.
    let n = normalize(&nested(20), &Limits::default()).unwrap();
    assert_eq!(n.text.trim_end(), "innermost");
    assert!(!has(&n, WarningCode::DepthLimit));
}

#[test]
fn many_boundaries_that_never_come_fall_back_to_headers_only() {
    // Each declaration makes mail-parser scan to the end: quadratic, minutes without the bound.
    let mut m = String::from(
        "From: a@example.com\r\nSubject: bomb\r\nContent-Type: multipart/mixed; boundary=top\r\n\r\n",
    );
    for i in 0..20_000 {
        let _ = write!(
            m,
            "--top\r\nContent-Type: multipart/mixed; boundary=\"missing{i}\"\r\n\r\nx\r\n"
        );
    }
    let n = normalize(m.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(n.subject.as_deref(), Some("bomb"));
    assert!(n.attachments.is_empty() && n.text.is_empty());
    assert!(has(&n, WarningCode::StructureLimit));
}

#[test]
fn attachment_count_is_capped() {
    let mut m =
        String::from("From: a@example.com\r\nContent-Type: multipart/mixed; boundary=top\r\n\r\n");
    for i in 0..30 {
        let _ = write!(
            m,
            "--top\r\nContent-Type: application/octet-stream; name=\"f{i}.bin\"\r\n\r\nx\r\n"
        );
    }
    m += "--top--\r\n";
    let limits = Limits {
        max_attachments: 10,
        ..Limits::default()
    };
    let (n, bytes) = normalize_with_bytes(m.as_bytes(), &limits).unwrap();
    assert_eq!(n.attachments.len(), 10);
    assert_eq!(bytes.len(), 10);
    assert_eq!(n.attachments[9].safe_filename, "f9.bin");
    let w = n
        .warnings
        .iter()
        .find(|w| w.code == WarningCode::AttachmentLimit)
        .unwrap();
    assert!(w.detail.contains("30 attachments"), "{}", w.detail);
}

#[test]
fn thousands_of_malformed_header_lines_give_a_capped_warning_list() {
    let mut m = String::from("From: a@example.com\r\n");
    for _ in 0..5000 {
        m += "junk without a colon\r\nX-Ok: 1\r\n";
    }
    m += "\r\nbody";
    let n = normalize(m.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(n.headers.len(), 5001);
    assert!(n.warnings.len() <= MAX_WARNINGS + 1);
    let more = n
        .warnings
        .iter()
        .find(|w| w.detail.starts_with("4995 more malformed"))
        .unwrap();
    assert_eq!(more.code, WarningCode::MalformedHeader);
    assert_eq!(n.text, "body");
}

#[test]
fn nul_characters_are_removed_from_bodies() {
    let raw = crlf("From: a@example.com\nContent-Type: text/plain\n\nbefore\0after\n");
    let n = normalize(&raw, &Limits::default()).unwrap();
    assert_eq!(n.text, "beforeafter\n");
    assert!(has(&n, WarningCode::ControlCharacters));
}

#[test]
fn duplicate_from_uses_the_first_and_warns() {
    let raw = crlf("From: first@example.com\nFrom: second@example.com\nSubject: x\n\nbody\n");
    let n = normalize(&raw, &Limits::default()).unwrap();
    assert_eq!(n.from.len(), 1);
    assert_eq!(n.from[0].address.as_deref(), Some("first@example.com"));
    assert!(has(&n, WarningCode::DuplicateHeader));
    // Both stay visible in the raw header list.
    assert_eq!(n.headers.iter().filter(|h| h.name == "From").count(), 2);
}

#[test]
fn huge_hostile_html_is_converted_in_linear_memory() {
    let html = "<".repeat(2_000_000) + &"&#99999999999;".repeat(50_000);
    let raw = format!("From: a@example.com\r\nContent-Type: text/html\r\n\r\n{html}");
    let n = normalize(raw.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(n.html.as_deref().map(str::len), Some(html.len()));
    assert!(n.text.len() <= html.len());
}

#[test]
fn a_message_rfc822_part_without_headers_is_still_accepted() {
    // This shape reaches a `debug_assert!` inside mail-parser 0.11: debug builds read the
    // headers only (with a warning), release builds read what mail-parser recovers.
    let raw = crlf(
        "From: a@example.com\nSubject: odd forward\nContent-Type: multipart/mixed; boundary=f\n\n\
         --f\nContent-Type: text/plain\n\nhello\n--f\nContent-Type: message/rfc822\n\n\
         no headers here\n--f\nContent-Type: message/rfc822\n\nFrom: b@example.com\n\ninner\n--f--\n",
    );
    let n = normalize(&raw, &Limits::default()).unwrap();
    assert_eq!(n.subject.as_deref(), Some("odd forward"));
    assert_eq!(n.from[0].address.as_deref(), Some("a@example.com"));
    if has(&n, WarningCode::ParserFailure) {
        assert!(n.text.is_empty() && n.attachments.is_empty());
    } else {
        assert!(n.text.starts_with("hello"));
    }
}
