//! Fuzzes the SASL error-challenge decoder: any server text must decode or be refused, never
//! panic; whatever decodes must summarise without panicking too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(details) = oauthimap_imap::decode_error_challenge(text)
    {
        let _ = details.summary();
    }
});
