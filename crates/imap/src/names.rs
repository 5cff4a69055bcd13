//! Command arguments: mailbox names in modified UTF-7 (RFC 3501 section 5.1.3) as quoted
//! strings, UID sets (`1:3,7`), UID ranges, and flag atoms, each checked so that no caller input
//! can break a command line.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::alphabet::IMAP_MUTF7;
use base64::engine::GeneralPurpose;
use base64::engine::general_purpose::NO_PAD;

const MUTF7: GeneralPurpose = GeneralPurpose::new(&IMAP_MUTF7, NO_PAD);

/// A range of UIDs, `first:last` or `first:*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    /// The first UID (at least 1).
    pub first: u32,
    /// The last UID, or `None` for "up to the highest".
    pub last: Option<u32>,
}

impl UidRange {
    /// Every UID from `first` on.
    pub fn from(first: u32) -> Self {
        Self {
            first: first.max(1),
            last: None,
        }
    }

    /// `first:last` (inclusive).
    pub fn between(first: u32, last: u32) -> Self {
        Self {
            first: first.max(1),
            last: Some(last.max(1)),
        }
    }

    /// Whether `uid` lies in the range (servers answer `n:*` with the last message even when its
    /// UID is below `n`, so results are filtered with this).
    pub fn contains(&self, uid: u32) -> bool {
        uid >= self.first && self.last.is_none_or(|last| uid <= last)
    }
}

impl std::fmt::Display for UidRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.last {
            Some(last) => write!(f, "{}:{last}", self.first),
            None => write!(f, "{}:*", self.first),
        }
    }
}

/// A compact UID set: sorted, duplicates removed, runs joined (`1:3,7,9:10`). `None` when empty
/// or when it contains 0 (not a valid UID).
pub fn uid_set(uids: &[u32]) -> Option<String> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.first().is_none_or(|&first| first == 0) {
        return None;
    }
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}:{end}");
        }
        i += 1;
    }
    Some(out)
}

/// Encodes a mailbox name in modified UTF-7: printable ASCII stays (`&` becomes `&-`), anything
/// else becomes `&` + modified base64 of UTF-16BE + `-`.
pub fn encode_mailbox_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if !pending.is_empty() {
            let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&MUTF7.encode(bytes));
            out.push('-');
            pending.clear();
        }
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Decodes a modified UTF-7 mailbox name; `None` if it is not valid.
pub fn decode_mailbox_name(encoded: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = encoded;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let dash = after.find('-')?;
        if dash == 0 {
            out.push('&');
        } else {
            let bytes = MUTF7.decode(&after[..dash]).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[dash + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// A mailbox name as a quoted IMAP string (encoded first). `None` for names with control
/// characters, which cannot be sent.
pub fn quoted_mailbox(name: &str) -> Option<String> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return None;
    }
    let encoded = encode_mailbox_name(name);
    Some(format!(
        "\"{}\"",
        encoded.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// Whether `flag` can be sent as a flag atom (`\Seen`, `$Forwarded`, `Junk`).
pub fn is_flag_atom(flag: &str) -> bool {
    let body = flag.strip_prefix('\\').unwrap_or(flag);
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uid_sets() {
        assert_eq!(
            uid_set(&[3, 1, 2, 7, 9, 10, 10]).as_deref(),
            Some("1:3,7,9:10")
        );
        assert_eq!(uid_set(&[5]).as_deref(), Some("5"));
        assert_eq!(uid_set(&[]), None);
        assert_eq!(uid_set(&[0, 1]), None);
        assert_eq!(UidRange::from(5).to_string(), "5:*");
        assert_eq!(UidRange::between(2, 9).to_string(), "2:9");
        assert!(!UidRange::from(5).contains(4));
        assert!(UidRange::from(5).contains(u32::MAX));
    }

    #[test]
    fn modified_utf7_known_answers() {
        // RFC 3501 section 5.1.3 example.
        assert_eq!(
            encode_mailbox_name("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(encode_mailbox_name("Sent Items"), "Sent Items");
        assert_eq!(encode_mailbox_name("A&B"), "A&-B");
        assert_eq!(encode_mailbox_name("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(
            decode_mailbox_name("Entw&APw-rfe").as_deref(),
            Some("Entwürfe")
        );
        assert_eq!(decode_mailbox_name("&U,BTFw-").as_deref(), Some("台北"));
        assert_eq!(decode_mailbox_name("&Jjo"), None);
        assert_eq!(
            quoted_mailbox("a\"b\\c").as_deref(),
            Some("\"a\\\"b\\\\c\"")
        );
        assert_eq!(quoted_mailbox("bad\r\nname"), None);
        assert_eq!(quoted_mailbox(""), None);
    }

    #[test]
    fn flag_atoms() {
        for ok in ["\\Seen", "\\Deleted", "$Forwarded", "Junk"] {
            assert!(is_flag_atom(ok), "{ok}");
        }
        for bad in ["", "\\", "a b", "x)", "\\Seen\r\n", "\"q\""] {
            assert!(!is_flag_atom(bad), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn mailbox_names_round_trip(name in "\\PC{1,30}") {
            let encoded = encode_mailbox_name(&name);
            prop_assert!(encoded.bytes().all(|b| (b' '..=b'~').contains(&b)));
            prop_assert_eq!(decode_mailbox_name(&encoded), Some(name));
        }

        #[test]
        fn uid_sets_cover_exactly_the_input(uids in proptest::collection::vec(1u32..200, 1..50)) {
            let set = uid_set(&uids).unwrap();
            let mut covered = Vec::new();
            for part in set.split(',') {
                match part.split_once(':') {
                    Some((a, b)) => covered.extend(a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap()),
                    None => covered.push(part.parse().unwrap()),
                }
            }
            let mut expected = uids.clone();
            expected.sort_unstable();
            expected.dedup();
            prop_assert_eq!(covered, expected);
        }
    }
}
