//! Refusals: too large (checked before any parsing), empty, and bytes that are not a message.
//! Everything that is a message, however broken, is accepted instead (see `hostile.rs`).

use oauthimap_mime::{Limits, Refusal, RefusalReason, normalize};

fn reason(raw: &[u8], limits: &Limits) -> RefusalReason {
    normalize(raw, limits).expect_err("refused").reason
}

#[test]
fn a_50_mb_message_is_refused_by_the_default_size_limit_before_parsing() {
    // 50 MB of a message shape that would be slow to parse (a boundary declared over and over)
    // and that does not even start with a header: the size check must come first.
    let unit = b"--x\r\nContent-Type: multipart/mixed; boundary=never\r\n\r\n";
    let mut raw = Vec::with_capacity(50_000_000);
    while raw.len() + unit.len() <= 50_000_000 {
        raw.extend_from_slice(unit);
    }
    raw.resize(50_000_000, b'x');
    let refusal = normalize(&raw, &Limits::default()).unwrap_err();
    assert_eq!(
        refusal.reason,
        RefusalReason::TooLarge {
            size: 50_000_000,
            limit: Limits::DEFAULT_MAX_SIZE
        }
    );
    assert!(
        refusal.detail.contains("50000000 bytes"),
        "{}",
        refusal.detail
    );
    assert!(
        refusal
            .to_string()
            .starts_with("cannot normalize the message: ")
    );
}

#[test]
fn the_limit_is_inclusive() {
    let raw = b"Subject: x\r\n\r\nbody";
    let exact = Limits {
        max_size: raw.len() as u64,
        ..Limits::default()
    };
    assert!(normalize(raw, &exact).is_ok());
    let under = Limits {
        max_size: raw.len() as u64 - 1,
        ..Limits::default()
    };
    assert!(matches!(
        reason(raw, &under),
        RefusalReason::TooLarge { .. }
    ));
}

#[test]
fn empty_input_is_refused() {
    assert_eq!(reason(b"", &Limits::default()), RefusalReason::Empty);
}

#[test]
fn bytes_without_a_header_block_are_refused() {
    let limits = Limits::default();
    for raw in [
        &b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<</Type/Catalog>>\nendobj\n"[..],
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
        b"\0\0\0\0\0\0",
        b"Just some text that someone pasted.\nIt has no header: at all on line one.\n",
        b"\r\n\r\nbody after an empty header block",
        b"   indented: not a field\r\n",
        b"<html><body>hi</body></html>",
    ] {
        assert_eq!(reason(raw, &limits), RefusalReason::NoHeaders, "{raw:?}");
    }
}

#[test]
fn a_headers_only_message_is_accepted() {
    let n = normalize(b"Subject: only headers", &Limits::default()).unwrap();
    assert_eq!(n.subject.as_deref(), Some("only headers"));
    assert_eq!(n.text, "");
}

#[test]
fn refusals_serialize_with_a_stable_kind_tag() {
    let refusal = normalize(
        &[b'x'; 10],
        &Limits {
            max_size: 5,
            ..Limits::default()
        },
    )
    .unwrap_err();
    let json = serde_json::to_value(&refusal).unwrap();
    assert_eq!(json["reason"]["kind"], "too_large");
    assert_eq!(json["reason"]["size"], 10);
    assert_eq!(json["reason"]["limit"], 5);
    let back: Refusal = serde_json::from_value(json).unwrap();
    assert_eq!(back, refusal);
    let no_headers =
        serde_json::to_value(normalize(b"\0", &Limits::default()).unwrap_err()).unwrap();
    assert_eq!(no_headers["reason"]["kind"], "no_headers");
}
