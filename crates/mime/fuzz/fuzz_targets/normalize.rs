//! Fuzz target: `normalize` on arbitrary bytes must not panic, must return within bounded
//! time, and every accepted message must keep the crate's promises (no control characters in
//! decoded header values, safe file names, deterministic JSON).

#![no_main]

use libfuzzer_sys::fuzz_target;
use oauthimap_mime::{Limits, MAX_FILENAME_BYTES, normalize};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_attachments: 50,
        max_depth: 8,
        ..Limits::default()
    };
    let Ok(n) = normalize(data, &limits) else {
        return;
    };
    assert_eq!(n.size, data.len() as u64);
    let no_controls = |s: &str| !s.chars().any(char::is_control);
    assert!(n.subject.as_deref().is_none_or(no_controls));
    assert!(n.message_id.as_deref().is_none_or(no_controls));
    for h in &n.headers {
        assert!(no_controls(&h.name) && no_controls(&h.value));
    }
    for list in [&n.from, &n.sender, &n.reply_to, &n.to, &n.cc, &n.bcc] {
        for a in list {
            assert!(a.name.as_deref().is_none_or(no_controls));
            assert!(a.address.as_deref().is_none_or(no_controls));
        }
    }
    for a in &n.attachments {
        let safe = &a.safe_filename;
        assert!(!safe.is_empty() && safe.len() <= MAX_FILENAME_BYTES);
        assert!(!safe.contains(['/', '\\']) && !safe.starts_with('.') && no_controls(safe));
    }
    let again = normalize(data, &limits).expect("deterministic");
    assert_eq!(again.to_json(), n.to_json());
});
