//! Collecting warnings: deduplicated, capped, in the order they were noticed.
//!
//! A hostile message can be built to trigger thousands of warnings; the cap keeps the JSON small
//! and the detail strings never carry more than a short, cleaned excerpt of message content.

use crate::model::{Warning, WarningCode};
use crate::sanitize::{clean_value, truncate_bytes};

/// Most warnings kept for one message; one more says how many were dropped.
pub const MAX_WARNINGS: usize = 50;
/// Longest excerpt of message content quoted in a warning.
const MAX_EXCERPT_BYTES: usize = 80;

#[derive(Debug, Default)]
pub struct Warnings {
    list: Vec<Warning>,
    dropped: usize,
}

impl Warnings {
    pub fn push(&mut self, code: WarningCode, detail: impl Into<String>) {
        let detail = detail.into();
        if self
            .list
            .iter()
            .any(|w| w.code == code && w.detail == detail)
        {
            return;
        }
        if self.list.len() < MAX_WARNINGS {
            self.list.push(Warning { code, detail });
        } else {
            self.dropped += 1;
        }
    }

    pub fn finish(mut self) -> Vec<Warning> {
        if self.dropped > 0 {
            self.list.push(Warning {
                code: WarningCode::TooManyWarnings,
                detail: format!("{} more warnings were dropped", self.dropped),
            });
        }
        self.list
    }
}

/// A short, control-free excerpt of message content for a warning's detail.
pub fn excerpt(text: &str) -> String {
    let (clean, _) = clean_value(text);
    let short = truncate_bytes(&clean, MAX_EXCERPT_BYTES);
    if short.len() < clean.len() {
        format!("{short}...")
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_dropped_and_the_list_is_capped() {
        let mut w = Warnings::default();
        w.push(WarningCode::MissingDate, "no Date header");
        w.push(WarningCode::MissingDate, "no Date header");
        for i in 0..MAX_WARNINGS + 5 {
            w.push(WarningCode::MalformedHeader, format!("line {i}"));
        }
        let kept = w.finish();
        assert_eq!(kept.len(), MAX_WARNINGS + 1);
        assert_eq!(kept[0].code, WarningCode::MissingDate);
        assert_eq!(kept[1].detail, "line 0");
        let summary = kept.last().unwrap();
        assert_eq!(summary.code, WarningCode::TooManyWarnings);
        assert_eq!(summary.detail, "6 more warnings were dropped");
    }

    #[test]
    fn excerpts_are_short_and_clean() {
        assert_eq!(excerpt("a\r\nb"), "a b");
        let cut = excerpt(&"x".repeat(500));
        assert_eq!(cut.len(), MAX_EXCERPT_BYTES + 3);
    }
}
