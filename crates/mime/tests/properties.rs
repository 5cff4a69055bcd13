//! Property tests: `normalize` never panics and keeps its promises on arbitrary bytes, on
//! MIME-shaped token soup and on mutated fixtures. `fuzz/` runs the same idea for longer.

mod common;

use std::sync::OnceLock;

use oauthimap_mime::{
    Limits, MAX_FILENAME_BYTES, MAX_WARNINGS, Normalized, RefusalReason, normalize,
};
use proptest::prelude::*;

/// What must hold for every accepted message.
fn check_invariants(raw: &[u8], limits: &Limits, n: &Normalized) {
    assert_eq!(n.size, raw.len() as u64);
    assert_eq!(n.sha256.len(), 64);
    let mut strings: Vec<&str> = Vec::new();
    strings.extend(n.message_id.as_deref());
    strings.extend(n.subject.as_deref());
    strings.extend(n.date_raw.as_deref());
    strings.extend(n.in_reply_to.iter().map(String::as_str));
    strings.extend(n.references.iter().map(String::as_str));
    for list in [&n.from, &n.sender, &n.reply_to, &n.to, &n.cc, &n.bcc] {
        for a in list {
            strings.extend(a.name.as_deref());
            strings.extend(a.address.as_deref());
        }
    }
    for h in &n.headers {
        strings.push(&h.name);
        strings.push(&h.value);
    }
    for a in &n.attachments {
        strings.extend(a.filename.as_deref());
        strings.extend(a.content_id.as_deref());
        strings.push(&a.content_type);
        let safe = &a.safe_filename;
        assert!(
            !safe.is_empty() && safe.len() <= MAX_FILENAME_BYTES,
            "{safe:?}"
        );
        assert!(
            !safe.contains(['/', '\\']) && !safe.starts_with('.'),
            "{safe:?}"
        );
        assert!(!safe.chars().any(char::is_control), "{safe:?}");
    }
    for s in strings {
        assert!(
            !s.chars()
                .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
            "control character in {s:?}"
        );
    }
    assert!(!n.text.contains('\0'));
    assert!(!n.html.as_deref().unwrap_or_default().contains('\0'));
    assert!(n.attachments.len() <= limits.max_attachments);
    assert!(n.warnings.len() <= MAX_WARNINGS + 1);
    let json = n.to_json();
    let back: Normalized = serde_json::from_str(&json).expect("JSON reads back");
    assert_eq!(&back, n);
    let again = normalize(raw, limits).expect("same input, same answer");
    assert_eq!(again.to_json(), json, "not deterministic");
}

fn run(raw: &[u8]) -> Result<Normalized, RefusalReason> {
    let limits = Limits {
        max_attachments: 50,
        max_depth: 8,
        ..Limits::default()
    };
    match normalize(raw, &limits) {
        Ok(n) => {
            check_invariants(raw, &limits, &n);
            Ok(n)
        }
        Err(refusal) => Err(refusal.reason),
    }
}

fn fixtures() -> &'static [Vec<u8>] {
    static FIXTURES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        common::all_fixtures()
            .iter()
            .map(|n| common::raw(n))
            .collect()
    })
}

/// Pieces that steer a fuzzer into MIME's corners.
const TOKENS: &[&str] = &[
    "\r\n",
    "\n",
    "\r",
    "\r\n\r\n",
    " ",
    "\t",
    "--b",
    "--b--",
    "--c",
    "Content-Type: multipart/mixed; boundary=b\r\n",
    "Content-Type: multipart/alternative; boundary=\"c\"\r\n",
    "Content-Type: multipart/digest; boundary=b\r\n",
    "Content-Type: message/rfc822\r\n",
    "Content-Type: text/html; charset=x-unknown\r\n",
    "Content-Type: text/plain; charset=iso-2022-jp\r\n",
    "Content-Type: image/png; name=\"../a.png\"\r\n",
    "Content-Transfer-Encoding: base64\r\n",
    "Content-Transfer-Encoding: quoted-printable\r\n",
    "Content-Disposition: attachment; filename*=utf-8''%2E%2E%2F%00x\r\n",
    "Content-ID: <a@b>\r\n",
    "Subject: ",
    "From: ",
    "Date: ",
    "To: a <b@c>, \"q\\\"\" <d@e>, g: h@i;",
    "=?utf-8?b?",
    "=?iso-8859-1?q?",
    "=?",
    "?=",
    "=0D=0A",
    "=00",
    "SGVsbG8NCkJjYzog",
    "<html><p>",
    "&amp;",
    "(",
    ")",
    "\"",
    ":",
    "\0",
    "\u{202E}",
    "é",
];

fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(TOKENS).prop_map(|t| t.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..8),
        ],
        0..120,
    )
    .prop_map(|pieces| {
        let mut raw = b"From: a@example.com\r\n".to_vec();
        raw.extend(pieces.concat());
        raw
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, &'static str),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Flip(at, b)),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(at, t)| Mutation::Insert(at, t)),
        (any::<usize>(), 0usize..64).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<usize>(), 0usize..256).prop_map(|(at, len)| Mutation::Duplicate(at, len)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut raw: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = raw.len().max(1);
        match *m {
            Mutation::Flip(at, b) => {
                if let Some(x) = raw.get_mut(at % len) {
                    *x = b;
                }
            }
            Mutation::Insert(at, t) => {
                let at = (at % len).min(raw.len());
                raw.splice(at..at, t.bytes());
            }
            Mutation::Delete(at, n) => {
                let at = (at % len).min(raw.len());
                let end = (at + n).min(raw.len());
                raw.drain(at..end);
            }
            Mutation::Duplicate(at, n) => {
                let at = (at % len).min(raw.len());
                let end = (at + n).min(raw.len());
                let piece = raw[at..end].to_vec();
                raw.splice(end..end, piece);
            }
            Mutation::Truncate(at) => raw.truncate(at % len),
        }
    }
    raw
}

proptest! {
    // 256 cases by default; `PROPTEST_CASES=20000` for a longer run.
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = run(&raw);
    }

    #[test]
    fn anything_that_starts_with_a_header_is_accepted(raw in token_soup()) {
        prop_assert!(run(&raw).is_ok(), "refused: {:?}", run(&raw));
    }

    #[test]
    fn mutated_fixtures_never_panic_and_are_accepted_while_they_start_with_a_field(
        index in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..12),
    ) {
        let fixtures = fixtures();
        let original = &fixtures[index.index(fixtures.len())];
        let raw = mutate(original.clone(), &mutations);
        let first_line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
        let first_line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
        let starts_with_field = first_line
            .iter()
            .position(|&b| b == b':')
            .is_some_and(|c| {
                // RFC 5322: ftext, then optional WSP (space or tab only) before the colon.
                let name = &first_line[..c];
                let end = name.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(0, |p| p + 1);
                end > 0 && name[..end].iter().all(|&b| (33..=126).contains(&b))
            });
        match run(&raw) {
            Ok(_) => prop_assert!(starts_with_field),
            Err(reason) => {
                prop_assert!(!starts_with_field, "refused {reason:?}");
                prop_assert!(
                    matches!(reason, RefusalReason::NoHeaders | RefusalReason::Empty),
                    "{reason:?}"
                );
            }
        }
    }
}
