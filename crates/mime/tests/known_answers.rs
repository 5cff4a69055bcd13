//! Known-answer tests on the fixtures in `tests/fixtures/`: what each field must hold.
//! (`golden.rs` pins the full JSON; this file says which parts of it matter and why.)

mod common;

use common::parse;
use common::sha256_hex;
use oauthimap_mime::{Limits, WarningCode, attachment_bytes, normalize_with_bytes};

fn codes(n: &oauthimap_mime::Normalized) -> Vec<WarningCode> {
    n.warnings.iter().map(|w| w.code).collect()
}

#[test]
fn plain_ascii_message() {
    let raw = common::raw("plain");
    let n = parse("plain");
    assert_eq!(
        n.message_id.as_deref(),
        Some("20240301093000.1234@example.com")
    );
    assert_eq!(n.subject.as_deref(), Some("Printer on floor 2 is jammed"));
    assert_eq!(n.from.len(), 1);
    assert_eq!(n.from[0].name.as_deref(), Some("Alice Example"));
    assert_eq!(n.from[0].address.as_deref(), Some("alice@example.com"));
    assert_eq!(n.to[0].address.as_deref(), Some("help@example.org"));
    assert_eq!(n.date.as_deref(), Some("2024-03-01T09:30:00Z"));
    assert_eq!(
        n.date_raw.as_deref(),
        Some("Fri, 01 Mar 2024 10:30:00 +0100")
    );
    assert_eq!(
        n.text,
        "Hello,\n\nthe printer on floor 2 is jammed again.\n\nAlice\n"
    );
    assert_eq!(n.html, None);
    assert!(n.attachments.is_empty());
    assert_eq!(n.size, raw.len() as u64);
    assert_eq!(n.sha256, sha256_hex(&raw));
    assert!(n.warnings.is_empty(), "{:?}", n.warnings);
    // Headers in message order, names as written, folded Received unfolded.
    let names: Vec<&str> = n.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names[..3], ["Return-Path", "Received", "From"]);
    assert!(
        n.headers[1]
            .value
            .starts_with("from mail.example.com (mail.example.com [192.0.2.1]) by mx.example.org")
    );
    assert!(!n.headers[1].value.contains(['\r', '\n', '\t']));
}

#[test]
fn multipart_alternative_gives_text_and_html_and_thread_ids() {
    let n = parse("alternative");
    assert_eq!(n.text, "Café is closed – please reply before noon.");
    assert_eq!(
        n.html.as_deref(),
        Some("<html><body><p>Café is <b>closed</b> – please reply before noon.</p></body></html>")
    );
    assert_eq!(n.in_reply_to, ["ticket-42@example.org"]);
    assert_eq!(
        n.references,
        ["ticket-40@example.org", "ticket-42@example.org"]
    );
    assert_eq!(n.from[0].name.as_deref(), Some("Bob B."));
    let to: Vec<_> =
        n.to.iter()
            .map(|a| (a.name.as_deref(), a.address.as_deref()))
            .collect();
    assert_eq!(
        to,
        [
            (None, Some("help@example.org")),
            (Some("Carol"), Some("carol@example.org"))
        ]
    );
    assert_eq!(n.cc[0].address.as_deref(), Some("dave@example.org"));
    assert_eq!(
        n.reply_to[0].address.as_deref(),
        Some("support-replies@example.net")
    );
    assert_eq!(n.date.as_deref(), Some("2024-03-04T13:00:00Z"));
    assert!(n.attachments.is_empty());
}

#[test]
fn attachments_with_an_inline_image_and_exact_bytes() {
    let raw = common::raw("attachments");
    let (n, bytes) = normalize_with_bytes(&raw, &Limits::default()).unwrap();
    assert_eq!(n.text, "See the screenshot:\n", "HTML converted to text");
    assert!(n.html.as_deref().unwrap().contains("cid:shot1@example.com"));
    assert_eq!(n.attachments.len(), 3);
    assert_eq!(bytes.len(), 3);

    let image = &n.attachments[0];
    assert_eq!(image.content_type, "image/png");
    assert_eq!(image.content_id.as_deref(), Some("shot1@example.com"));
    assert!(image.inline);
    assert_eq!(image.filename.as_deref(), Some("shot.png"));
    assert!(bytes[0].starts_with(b"\x89PNG\r\n\x1a\n"));

    let pdf = &n.attachments[1];
    assert_eq!(pdf.filename.as_deref(), Some("invoice 2024-03.pdf"));
    assert_eq!(pdf.safe_filename, "invoice 2024-03.pdf");
    assert!(!pdf.inline);
    assert!(bytes[1].starts_with(b"%PDF-1.4\n"));

    // A text attachment keeps its own charset: these are ISO-8859-1 bytes, not UTF-8.
    let notes = &n.attachments[2];
    assert_eq!(notes.content_type, "text/plain");
    assert_eq!(bytes[2], b"Preis: 10 EUR / Gr\xfc\xdfe");

    for (attachment, content) in n.attachments.iter().zip(&bytes) {
        assert_eq!(attachment.size, content.len() as u64);
        assert_eq!(attachment.sha256, sha256_hex(content));
    }
    // The single-attachment accessor agrees with the bulk one.
    assert_eq!(
        attachment_bytes(&raw, &Limits::default(), 1)
            .unwrap()
            .as_deref(),
        Some(&bytes[1][..])
    );
    assert_eq!(attachment_bytes(&raw, &Limits::default(), 3).unwrap(), None);
}

#[test]
fn rfc2047_subjects_and_names_in_utf8_and_latin1_q_and_b() {
    let n = parse("encoded_words");
    // B (UTF-8) + Q (UTF-8) + Q (ISO-8859-1) words, whitespace between words dropped.
    assert_eq!(n.subject.as_deref(), Some("Überprüfung: Grüße aus Köln"));
    assert_eq!(n.from[0].name.as_deref(), Some("Jürgen Müller"));
    assert_eq!(n.to[0].name.as_deref(), Some("François Trésor"));
    assert_eq!(n.to[1].name.as_deref(), Some("Zoë"));
    // The 8bit ISO-8859-1 body is decoded.
    assert_eq!(n.text, "Grüße\n");
    // The raw header list keeps the encoded-words.
    let subject = n.headers.iter().find(|h| h.name == "Subject").unwrap();
    assert!(subject.value.starts_with("=?UTF-8?B?"));
    assert!(n.warnings.is_empty(), "{:?}", n.warnings);
}

#[test]
fn raw_utf8_headers_rfc6532() {
    let n = parse("utf8_headers");
    assert_eq!(n.subject.as_deref(), Some("Réunion – 会議の件"));
    assert_eq!(n.from[0].name.as_deref(), Some("Jürgen Müller"));
    assert_eq!(n.from[0].address.as_deref(), Some("jürgen@bücher.example"));
    assert_eq!(n.to[0].name.as_deref(), Some("山田太郎"));
    assert_eq!(n.date.as_deref(), Some("2024-03-07T09:45:00Z"));
    assert_eq!(n.text, "こんにちは\n");
    assert!(n.warnings.is_empty(), "{:?}", n.warnings);
}

#[test]
fn missing_date_and_message_id_are_null_with_warnings() {
    let n = parse("no_date");
    assert_eq!(n.date, None);
    assert_eq!(n.date_raw, None);
    assert_eq!(n.message_id, None);
    assert_eq!(
        codes(&n),
        [WarningCode::MissingMessageId, WarningCode::MissingDate]
    );
    assert_eq!(n.text, "Body without Date or Message-ID.\n");
}

#[test]
fn winmail_dat_is_kept_as_an_attachment() {
    let raw = common::raw("winmail");
    let (n, bytes) = normalize_with_bytes(&raw, &Limits::default()).unwrap();
    assert_eq!(n.text, "Notes attached.\n");
    assert_eq!(n.attachments.len(), 1);
    let tnef = &n.attachments[0];
    assert_eq!(tnef.content_type, "application/ms-tnef");
    assert_eq!(tnef.filename.as_deref(), Some("winmail.dat"));
    assert_eq!(tnef.safe_filename, "winmail.dat");
    assert!(!tnef.inline);
    // TNEF signature 0x223E9F78, little endian.
    assert!(bytes[0].starts_with(&[0x78, 0x9f, 0x3e, 0x22]));
    assert_eq!(tnef.size, 36);
}

#[test]
fn message_rfc822_is_one_attachment_holding_the_whole_message() {
    let raw = common::raw("forwarded");
    let (n, bytes) = normalize_with_bytes(&raw, &Limits::default()).unwrap();
    assert_eq!(n.subject.as_deref(), Some("Fwd: Original problem"));
    assert_eq!(
        n.text, "See the forwarded message.",
        "the inner body is not mixed in"
    );
    assert_eq!(n.attachments.len(), 1);
    let inner = &n.attachments[0];
    assert_eq!(inner.content_type, "message/rfc822");
    assert_eq!(inner.safe_filename, "attachment-1.eml");
    let inner_raw = String::from_utf8(bytes[0].clone()).unwrap();
    assert!(inner_raw.starts_with("From: Heidi <heidi@example.net>\r\n"));
    assert!(inner_raw.ends_with("The VPN drops every hour."));
    // And the attachment is itself a message this crate can read.
    let nested = oauthimap_mime::normalize(&bytes[0], &Limits::default()).unwrap();
    assert_eq!(nested.message_id.as_deref(), Some("orig-1@example.net"));
    assert_eq!(nested.text, "The VPN drops every hour.");
}

#[test]
fn html_only_message_gets_a_text_rendering_without_style_or_script() {
    let n = parse("html_only");
    // &nbsp; becomes U+00A0; style and script contents are dropped.
    assert_eq!(n.text, "First\u{a0}line\nSecond link\n");
    let html = n.html.as_deref().unwrap();
    assert!(
        html.contains("<script>alert(1)</script>"),
        "HTML is passed on as sent"
    );
}

#[test]
fn base64_text_attachment_keeps_its_charset_bytes() {
    // "Grüße\n" in ISO-8859-1; the parser turns text into UTF-8, the file must not change.
    let latin1 = b"Gr\xfc\xdfe\n";
    let encoded = base64_encode(latin1);
    let raw = format!(
        "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n\
         Content-Type: text/plain\r\n\r\nbody\r\n--m\r\n\
         Content-Type: text/csv; charset=iso-8859-1; name=\"data.csv\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--m--\r\n"
    );
    let (n, bytes) = normalize_with_bytes(raw.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(n.text, "body");
    assert_eq!(n.attachments[0].content_type, "text/csv");
    assert_eq!(n.attachments[0].safe_filename, "data.csv");
    assert_eq!(bytes[0], latin1);
}

#[test]
fn an_encoded_forwarded_message_and_the_parts_after_it_are_all_read() {
    // RFC 2046 forbids a transfer encoding on message/rfc822; Outlook and others send one anyway.
    let inner = b"From: b@example.com\r\nSubject: inner\r\n\r\nforwarded body\r\n";
    let pdf = b"%PDF-1.4 not really\n";
    let raw = format!(
        "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         caf=C3=A9\r\n--m\r\nContent-Type: message/rfc822\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--m\r\n\
         Content-Type: application/pdf; name=\"a.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--m--\r\n",
        base64_encode(inner),
        base64_encode(pdf),
    );
    let (n, bytes) = normalize_with_bytes(raw.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(n.text, "café");
    assert_eq!(n.attachments.len(), 2, "{:?}", n.attachments);
    assert_eq!(n.attachments[0].content_type, "message/rfc822");
    assert_eq!(bytes[0], inner);
    assert_eq!(n.attachments[1].safe_filename, "a.pdf");
    assert_eq!(bytes[1], pdf);
    assert_eq!(n.attachments[1].size, pdf.len() as u64);
    assert!(
        !n.warnings
            .iter()
            .any(|w| w.code == oauthimap_mime::WarningCode::MalformedPart),
        "{:?}",
        n.warnings
    );
}

#[test]
fn an_encoded_untyped_part_of_a_digest_is_read_as_the_message_it_is() {
    // In a multipart/digest, a part without Content-Type is a message/rfc822 (RFC 2046 5.1.5).
    let inner = b"From: c@example.com\r\nSubject: digest entry\r\n\r\nentry body\r\n";
    let raw = format!(
        "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n\
         Content-Type: text/plain\r\n\r\nintro\r\n--m\r\n\
         Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--d--\r\n--m\r\n\
         Content-Type: application/pdf; name=\"b.pdf\"\r\n\r\n%PDF\r\n--m--\r\n",
        base64_encode(inner),
    );
    let (n, bytes) = normalize_with_bytes(raw.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(n.text, "intro");
    let entry = n
        .attachments
        .iter()
        .position(|a| a.content_type == "message/rfc822")
        .expect("the digest entry is listed");
    assert_eq!(bytes[entry], inner);
    assert!(
        n.attachments.iter().any(|a| a.safe_filename == "b.pdf"),
        "{:?}",
        n.attachments
    );
}

#[test]
fn broken_base64_in_an_attachment_is_kept_as_it_came_with_a_warning() {
    let raw = "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n\
         Content-Type: text/plain\r\n\r\nbody\r\n--m\r\n\
         Content-Type: application/octet-stream; name=\"x.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nQUJD\r\nnot*base64!\r\n--m--\r\n";
    let (n, bytes) = normalize_with_bytes(raw.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(n.text, "body");
    assert_eq!(n.attachments.len(), 1);
    assert_eq!(bytes[0], b"QUJD\r\nnot*base64!");
    assert!(
        n.warnings
            .iter()
            .any(|w| w.code == oauthimap_mime::WarningCode::MalformedPart),
        "{:?}",
        n.warnings
    );
}

#[test]
fn a_text_attachment_with_broken_base64_is_reported_once() {
    let raw = "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n\
         Content-Type: text/plain\r\n\r\nbody\r\n--m\r\n\
         Content-Type: text/csv; name=\"t.csv\"\r\nContent-Disposition: attachment\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nYSxi\r\n*broken*\r\n--m--\r\n";
    let (n, bytes) = normalize_with_bytes(raw.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(n.text, "body");
    assert_eq!(n.attachments.len(), 1);
    assert_eq!(bytes[0], b"YSxi\r\n*broken*");
    let malformed = n
        .warnings
        .iter()
        .filter(|w| w.code == oauthimap_mime::WarningCode::MalformedPart)
        .count();
    assert_eq!(malformed, 1, "{:?}", n.warnings);
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
