//! Helpers shared by the integration tests: fixture loading and golden JSON comparison.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::PathBuf;

use std::fmt::Write as _;

use oauthimap_mime::{Limits, Normalized, normalize};
use sha2::{Digest, Sha256};

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// The raw bytes of `tests/fixtures/{name}.eml`.
pub fn raw(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(&format!("{name}.eml"))).expect("fixture exists")
}

/// Every `.eml` fixture, by name, sorted.
pub fn all_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_path(""))
        .expect("fixtures folder")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".eml").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// Normalizes a fixture with the default limits; panics on refusal.
pub fn parse(name: &str) -> Normalized {
    normalize(&raw(name), &Limits::default())
        .unwrap_or_else(|r| panic!("fixture {name} refused: {r}"))
}

/// Compares the pretty JSON of `normalized` with `tests/fixtures/{name}.json`; with
/// `MIME_UPDATE_GOLDEN=1` in the environment, writes it instead.
pub fn assert_golden(name: &str, normalized: &Normalized) {
    let json = serde_json::to_string_pretty(normalized).expect("serializes") + "\n";
    let path = fixture_path(&format!("{name}.json"));
    if std::env::var_os("MIME_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &json).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}; run with MIME_UPDATE_GOLDEN=1", path.display()));
    assert_eq!(json, expected, "golden JSON of {name} changed");
}

/// Lowercase hex SHA-256, to check the crate's hashes independently.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}
