//! Known-answer tests: every fixture's full JSON is pinned in `tests/fixtures/NAME.json`.

mod common;

use oauthimap_mime::{Limits, Normalized, normalize};

#[test]
fn every_fixture_matches_its_golden_json() {
    let names = common::all_fixtures();
    assert!(names.len() >= 12, "fixtures missing: {names:?}");
    for name in names {
        let normalized = common::parse(&name);
        common::assert_golden(&name, &normalized);
        // The JSON reads back into the same value.
        let back: Normalized = serde_json::from_str(&normalized.to_json()).expect("round trip");
        assert_eq!(back, normalized, "{name}");
    }
}

#[test]
fn the_same_bytes_always_give_the_same_json() {
    for name in common::all_fixtures() {
        let raw = common::raw(&name);
        let first = normalize(&raw, &Limits::default()).unwrap().to_json();
        let second = normalize(&raw.clone(), &Limits::default())
            .unwrap()
            .to_json();
        assert_eq!(first, second, "{name}");
    }
}
