//! A 50 MB message under a 60 MB limit parses completely, with peak memory a small multiple of
//! its size. Alone in its own test binary so the process's peak memory is this test's.

mod common;

use base64::Engine as _;
use common::sha256_hex;
use oauthimap_mime::{Limits, normalize, normalize_with_bytes};

/// `VmHWM` (peak resident set) or `VmRSS` of this process in bytes, where Linux tells us.
fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn a_50_mb_message_under_a_60_mb_limit_parses_in_bounded_memory() {
    let content = pseudo_random(37_000_000);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&content);
    let mut raw = Vec::with_capacity(51_000_000);
    raw.extend_from_slice(
        b"From: big@example.com\r\nTo: help@example.org\r\nSubject: big one\r\n\
          Date: Fri, 01 Mar 2024 10:00:00 +0000\r\nMessage-ID: <big@example.com>\r\n\
          MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"big\"\r\n\r\n\
          --big\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--big\r\n\
          Content-Type: application/octet-stream; name=\"dump.bin\"\r\n\
          Content-Transfer-Encoding: base64\r\n\r\n",
    );
    for line in encoded.as_bytes().chunks(76) {
        raw.extend_from_slice(line);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"--big--\r\n");
    drop(encoded);
    assert!(
        raw.len() > 50_000_000 && raw.len() < 52_000_000,
        "{}",
        raw.len()
    );
    let expected_sha = sha256_hex(&content);

    let limits = Limits {
        max_size: 60_000_000,
        ..Limits::default()
    };
    let rss_before = proc_status_bytes("VmRSS:");
    let n = normalize(&raw, &limits).expect("accepted");
    let peak = proc_status_bytes("VmHWM:");

    assert_eq!(n.size, raw.len() as u64);
    assert_eq!(n.subject.as_deref(), Some("big one"));
    assert_eq!(n.text, "See attached.");
    assert_eq!(n.attachments.len(), 1);
    assert_eq!(n.attachments[0].size, content.len() as u64);
    assert_eq!(n.attachments[0].sha256, expected_sha);
    assert_eq!(n.attachments[0].safe_filename, "dump.bin");
    assert!(n.warnings.is_empty(), "{:?}", n.warnings);
    // Nothing of the content is in the JSON.
    assert!(n.to_json().len() < 10_000);

    if let (Some(before), Some(peak)) = (rss_before, peak) {
        let extra = peak.saturating_sub(before);
        eprintln!("raw {} bytes, extra peak memory {extra} bytes", raw.len());
        assert!(
            extra < 3 * raw.len() as u64,
            "parsing a {} byte message took {extra} extra bytes at peak",
            raw.len()
        );
    }

    // The bytes accessor returns exactly the content.
    drop(content);
    let (_, bytes) = normalize_with_bytes(&raw, &limits).unwrap();
    assert_eq!(sha256_hex(&bytes[0]), expected_sha);
}
