//! Sizes (`25M`, `512k`, `1048576`) and durations (`90s`, `15m`, `5d`) as people write them, the one
//! reading of each for every shell: the CLI's `--size-limit`, the configuration file's durations.
//!
//! Pure text to number: no I/O, no range policy (a receiver's size limit is bounded by the core,
//! a setting's duration by the configuration check).

use std::time::Duration;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Text that is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a size; use bytes or a suffix, such as 25M")]
pub struct SizeParseError(pub String);

/// A `YYYY-MM-DD` day (as an `<input type=date>` sends it, and as the CLI takes it) as epoch
/// milliseconds at 00:00 UTC; `None` for anything else. The one reading for every shell.
pub fn parse_day(text: &str) -> Option<i64> {
    let day = text.trim();
    if day.len() != 10 {
        return None;
    }
    humantime::parse_rfc3339(&format!("{day}T00:00:00Z"))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
}

/// Reads a size in bytes: a whole number, optionally followed by `k`, `M` or `G` (binary
/// multiples: 1024, 1024², 1024³; either case), with spaces allowed around the number. Refuses
/// anything else, and sizes beyond `u64`.
pub fn parse_size(text: &str) -> Result<u64, SizeParseError> {
    let t = text.trim();
    let (digits, factor) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], KIB),
        Some((i, 'm' | 'M')) => (&t[..i], MIB),
        Some((i, 'g' | 'G')) => (&t[..i], GIB),
        _ => (t, 1),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| SizeParseError(text.to_owned()))
}

/// The shortest spelling of `bytes` that [`parse_size`] reads back exactly: `25M`, `1536k`,
/// `1000` (a suffix only where it divides evenly).
pub fn format_size(bytes: u64) -> String {
    match bytes {
        0 => "0".to_owned(),
        b if b % GIB == 0 => format!("{}G", b / GIB),
        b if b % MIB == 0 => format!("{}M", b / MIB),
        b if b % KIB == 0 => format!("{}k", b / KIB),
        b => b.to_string(),
    }
}

/// Text that is not a duration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{text:?} is not a duration ({reason}); write it like 90s, 15m, 12h or 5d")]
pub struct DurationParseError {
    /// What was given, as given.
    pub text: String,
    /// What the parser found wrong.
    pub reason: humantime::DurationError,
}

/// Reads a duration in humantime's spelling (`90s`, `15m`, `1h 30m`, `5d`, `2weeks`), spaces
/// around it ignored. Text whose numbers could add up to `u64::MAX` seconds (some 584 billion
/// years) is refused as too large before humantime sees it: humantime 2.4 panics on some of it
/// (chronotope/humantime#66).
pub fn parse_duration(text: &str) -> Result<Duration, DurationParseError> {
    let refused = |reason| DurationParseError {
        text: text.to_owned(),
        reason,
    };
    if seconds_bound(text) >= u128::from(u64::MAX) {
        return Err(refused(humantime::DurationError::NumberOverflow));
    }
    humantime::parse_duration(text.trim()).map_err(refused)
}

/// More seconds than humantime can add up while reading `text`: every number taken in years
/// (its largest unit), digits split only by spaces read as one number (as humantime reads them),
/// and a fraction as one whole unit.
fn seconds_bound(text: &str) -> u128 {
    const YEAR: u128 = 31_557_600;
    let (mut total, mut number, mut in_number, mut fraction) = (0u128, 0u128, false, false);
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            number = number.saturating_mul(10).saturating_add(u128::from(digit));
            in_number = true;
        } else if !c.is_whitespace() {
            if in_number {
                total = total.saturating_add(if fraction { 1 } else { number });
            }
            (number, in_number, fraction) = (0, false, c == '.');
        }
    }
    if in_number {
        total = total.saturating_add(if fraction { 1 } else { number });
    }
    total.saturating_add(1).saturating_mul(YEAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_bytes_and_binary_suffixes() {
        for (text, bytes) in [
            ("0", 0),
            ("1000", 1000),
            (" 25M ", 25 * MIB),
            ("25 m", 25 * MIB),
            ("512k", 512 * KIB),
            ("512K", 512 * KIB),
            ("2G", 2 * GIB),
            ("2g", 2 * GIB),
            ("18446744073709551615", u64::MAX),
            ("17179869183G", 17_179_869_183 * GIB),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text:?}");
        }
        for text in [
            "",
            " ",
            "M",
            "k",
            "-1",
            "1.5M",
            "25MB",
            "25 MiB",
            "0x10",
            "18446744073709551616",
            "17179869184G",
            "99999999999999999999999",
            "2T",
            "1é",
            "é",
            "２５M",
        ] {
            let e = parse_size(text).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("{text:?} is not a size; use bytes or a suffix, such as 25M")
            );
        }
    }

    #[test]
    fn formatted_sizes_read_back() {
        for bytes in [
            0,
            1,
            1023,
            KIB,
            1536,
            MIB,
            25 * MIB,
            GIB,
            3 * GIB + KIB,
            u64::MAX,
            u64::MAX - u64::MAX % GIB,
        ] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes), "{bytes}");
        }
        assert_eq!(format_size(25 * MIB), "25M");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(1536 * KIB), "1536k");
    }

    #[test]
    fn durations_that_add_up_to_the_largest_are_refused_not_a_panic() {
        // humantime 2.4 builds `Duration::new(u64::MAX, 1_000_000_000)` here, which panics.
        for text in [
            "18446744073709551615s 500ms 500ms",
            "18446744073709551615s 999999999ns 1ns",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn durations_read_humantime() {
        assert_eq!(parse_duration(" 90s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5d"), Ok(Duration::from_hours(5 * 24)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_mins(90)));
        let e = parse_duration("soon").unwrap_err().to_string();
        assert!(
            e.starts_with("\"soon\" is not a duration (")
                && e.ends_with("write it like 90s, 15m, 12h or 5d"),
            "{e}"
        );
        for text in ["", "90", "-1s", "99999999999999999999999s", "1 fortnight"] {
            assert!(parse_duration(text).is_err(), "{text:?}");
        }
    }
}
