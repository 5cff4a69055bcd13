//! Fuzzes response framing and parsing (lines, literals, status codes, FETCH, LIST) with small
//! limits, so size checks are exercised too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oauthimap_imap::protocol::{FrameLimits, parse_all};

fuzz_target!(|data: &[u8]| {
    let limits = FrameLimits {
        max_line: 512,
        max_literal: 4096,
    };
    let _ = parse_all(data, limits);
});
