//! Diagnosis (`--parse-only`): the CPU cost per message of what the collector does to every
//! message besides I/O, on the benchmark's corpus, without Dovecot: mail-parser normalization
//! (which includes the SHA-256 of the raw bytes) and the normalized JSON (`serde_json::to_value`,
//! then to a string as the store sink does).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Result;
use oauthimap_mime::{Limits, normalize};

use crate::corpus;

pub fn run(messages: usize) -> Result<String> {
    let limits = Limits {
        max_size: 50 * 1024 * 1024,
        ..Limits::default()
    };
    let (mut generate, mut parse, mut to_value, mut to_string) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let mut bytes = 0u64;
    for i in 0..messages {
        let t = Instant::now();
        let raw = corpus::message(i);
        generate += t.elapsed();
        bytes += raw.len() as u64;
        let t = Instant::now();
        let normalized = normalize(&raw, &limits)
            .map_err(|r| anyhow::anyhow!("message {i} refused: {}", r.detail))?;
        parse += t.elapsed();
        let t = Instant::now();
        let value = serde_json::to_value(&normalized)?;
        to_value += t.elapsed();
        let t = Instant::now();
        let text = serde_json::to_string(&value)?;
        to_string += t.elapsed();
        std::hint::black_box(text);
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / messages as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "parse-only: {messages} messages, {:.1} MB, one thread",
        bytes as f64 / 1_048_576.0
    );
    for (what, d) in [
        ("generate the corpus (not collector work)", generate),
        ("oauthimap_mime::normalize", parse),
        ("serde_json::to_value(normalized)", to_value),
        ("serde_json::to_string(value)", to_string),
    ] {
        let _ = writeln!(
            s,
            "  {what:<42} {:>7.2} s total {:>8.1} us/message",
            d.as_secs_f64(),
            per(d)
        );
    }
    Ok(s)
}
