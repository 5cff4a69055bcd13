//! Rendering: JSON for scripts (`--json`), aligned text for people. Timestamps are RFC 3339 in UTC.

use std::fmt::Write as _;

use serde::Serialize;

/// The longest cell a text table shows; longer ones end in `…` (`--json` has them whole).
const MAX_CELL: usize = 300;

fn cut(cell: String) -> String {
    if cell.chars().count() <= MAX_CELL {
        return cell;
    }
    let mut short: String = cell.chars().take(MAX_CELL - 1).collect();
    short.push('…');
    short
}

/// Prints a line on stdout; a closed stdout (`| head`) ends nothing with a panic.
fn say(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// How to print data on stdout.
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints one value: as JSON, or as the text `text` builds.
    pub fn record<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        if self.json {
            say(&serde_json::to_string_pretty(value)
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
        } else {
            use std::io::Write as _;
            let _ = write!(std::io::stdout().lock(), "{}", text());
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
            say(&serde_json::to_string_pretty(values)
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
            return;
        }
        if values.is_empty() {
            say("(none)");
            return;
        }
        let rows: Vec<Vec<String>> = values
            .iter()
            .map(|v| row(v).into_iter().map(cut).collect())
            .collect();
        let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            let mut text = String::new();
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                text.push_str(cell);
                if i + 1 < cells.len() {
                    // Padded by hand: a width in a format string panics past 65,535.
                    let pad = w.saturating_sub(cell.chars().count()) + 2;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            say(text.trim_end());
        };
        line(headers.iter().map(|h| (*h).to_owned()).collect());
        for r in rows {
            line(r);
        }
    }
}

/// Formats epoch milliseconds as RFC 3339 (UTC, seconds).
pub fn time(ms: Option<i64>) -> String {
    ms.and_then(oauthimap_types::rfc3339_seconds)
        .unwrap_or_else(|| "-".to_owned())
}

/// `key: value` lines, aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    pairs.iter().fold(String::new(), |mut text, (k, v)| {
        let _ = writeln!(text, "{:<width$} {v}", format!("{k}:"));
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_past_year_9999_print_without_a_panic() {
        // A gateway password's expiry comes from the REST API as any i64; humantime formats
        // no year past 9999 and `to_string` panicked on its error.
        assert_eq!(time(Some(0)), "1970-01-01T00:00:00Z");
        assert_eq!(time(Some(-1)), "-");
        assert_eq!(time(None), "-");
        for ms in [253_402_300_800_000, i64::MAX] {
            assert_eq!(time(Some(ms)), "9999-12-31T23:59:59Z", "{ms}");
        }
    }
}
