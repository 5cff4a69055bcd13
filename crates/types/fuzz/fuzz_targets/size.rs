//! Fuzzes the size reader (`--size-limit 25M`): any text is read or refused, never a panic; a
//! size read is spelled back by `format_size` no longer than it was given and reads back the
//! same; every `u64` survives format-then-parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oauthimap_types::units::{SizeParseError, format_size, parse_size};

fuzz_target!(|data: &[u8]| {
    if let Some(bytes) = data.first_chunk::<8>() {
        let n = u64::from_le_bytes(*bytes);
        assert_eq!(parse_size(&format_size(n)), Ok(n), "{n} formatted");
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_size(text) {
        Ok(n) => {
            assert!(
                text.bytes().any(|b| b.is_ascii_digit()),
                "{text:?} has no digit"
            );
            let again = format_size(n);
            assert_eq!(parse_size(&again), Ok(n), "{text:?} as {again:?}");
            assert!(
                again.len() <= text.trim().len(),
                "{again:?} is longer than {text:?}"
            );
        }
        Err(SizeParseError(given)) => assert_eq!(given, text),
    }
});
