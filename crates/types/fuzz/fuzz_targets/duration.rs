//! Fuzzes the duration reader (`90s`, `5d`: the configuration file and the CLI): any text is read
//! or refused, never a panic (humantime 2.4 alone panics on some, chronotope/humantime#66); what
//! it reads is what humantime reads, it refuses more only as too large, and what it reads (any
//! duration below 10^18 s) formats and reads back the same.
#![no_main]

use std::time::Duration;

use humantime::DurationError;
use libfuzzer_sys::fuzz_target;
use oauthimap_types::units::parse_duration;

/// A duration shorter than this (some 31 billion years) always reads back.
const ROUND_TRIP_BELOW: u64 = 1_000_000_000_000_000_000;

fn round_trip(d: Duration) {
    let text = humantime::format_duration(d).to_string();
    match parse_duration(&text) {
        Ok(back) => assert_eq!(back, d, "{text:?}"),
        Err(e) => assert!(
            e.reason == DurationError::NumberOverflow && d.as_secs() >= ROUND_TRIP_BELOW,
            "{d:?} formatted as {text:?} is refused: {e}"
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    if let (Some(secs), Some(nanos)) = (data.first_chunk::<8>(), data.get(8..12)) {
        let nanos = u32::from_le_bytes(nanos.try_into().unwrap()) % 1_000_000_000;
        round_trip(Duration::new(u64::from_le_bytes(*secs), nanos));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_duration(text) {
        Ok(d) => {
            assert_eq!(humantime::parse_duration(text.trim()), Ok(d), "{text:?}");
            round_trip(d);
        }
        // Refused as too large: humantime may panic on it, so it is not asked.
        Err(e) if e.reason == DurationError::NumberOverflow => assert_eq!(e.text, text),
        Err(e) => {
            assert_eq!(e.text, text);
            assert_eq!(humantime::parse_duration(text.trim()), Err(e.reason));
        }
    }
});
