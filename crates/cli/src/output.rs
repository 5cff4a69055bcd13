//! Rendering: JSON for scripts (`--json`), aligned text for people. Timestamps are RFC 3339 in UTC.

use std::fmt::Write as _;

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

/// How to print data on stdout.
pub struct Out {
    pub json: bool,
}

impl Out {
    /// Prints one value: as JSON, or as the text `text` builds.
    pub fn record<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).expect("records serialize to JSON")
            );
        } else {
            print!("{}", text());
        }
    }

    /// Prints a list: as a JSON array, or as a table with `headers`.
    pub fn table<T: Serialize>(
        &self,
        values: &[T],
        headers: &[&str],
        row: impl Fn(&T) -> Vec<String>,
    ) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(values).expect("records serialize to JSON")
            );
            return;
        }
        if values.is_empty() {
            println!("(none)");
            return;
        }
        let rows: Vec<Vec<String>> = values.iter().map(row).collect();
        let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            let mut text = String::new();
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    let _ = write!(text, "{cell:<w$}  ");
                }
            }
            println!("{}", text.trim_end());
        };
        line(headers.iter().map(|h| (*h).to_owned()).collect());
        for r in rows {
            line(r);
        }
    }
}

/// Formats epoch milliseconds as RFC 3339 (UTC, seconds).
pub fn time(ms: Option<i64>) -> String {
    match ms {
        Some(ms) if ms >= 0 => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms as u64))
                .to_string()
        }
        _ => "-".to_owned(),
    }
}

/// `key: value` lines, aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    pairs.iter().fold(String::new(), |mut text, (k, v)| {
        let _ = writeln!(text, "{:<width$} {v}", format!("{k}:"));
        text
    })
}
