//! The longest value each text field takes, checked in one place for every shell (CLI, REST,
//! web): long enough for any real value, short enough that no page, table or log line is swamped
//! by one.

use crate::{AppError, Result};

/// Names of applications, receivers, gateway passwords.
pub const NAME: usize = 100;
/// Client IDs, tenants, host names.
pub const IDENTIFIER: usize = 255;
/// Client secrets and other secrets typed in.
pub const SECRET: usize = 4096;
/// Comments.
pub const COMMENT: usize = 2048;
/// URLs, folder names, file paths, commands.
pub const URL: usize = 2048;

/// Refuses `value` when it is longer than `max` characters.
pub(crate) fn at_most(field: &'static str, value: &str, max: usize) -> Result<()> {
    let n = value.chars().count();
    if n > max {
        return Err(AppError::invalid(
            field,
            format!("is {n} characters long; at most {max} are accepted"),
        ));
    }
    Ok(())
}

/// The one rule for the names of applications, receivers and gateway passwords: trimmed, not
/// empty, at most [`NAME`] characters, no control characters, and not a plain number (a number
/// selects by id everywhere, so an object named `42` could never be reached by its name).
pub(crate) fn name(value: &str) -> Result<String> {
    let name = value.trim();
    if name.is_empty() {
        return Err(AppError::invalid("name", "must not be empty"));
    }
    at_most("name", name, NAME)?;
    if name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    if name.parse::<i64>().is_ok() {
        return Err(AppError::invalid(
            "name",
            "must not be a plain number (numbers select by id)",
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_follow_one_rule() {
        assert_eq!(super::name("  desk ").unwrap(), "desk");
        for bad in ["", "   ", "42", "-7", "a\u{7}b", &"x".repeat(101)] {
            assert!(super::name(bad).is_err(), "{bad:?}");
        }
        assert!(super::name("42a").is_ok() && super::name(&"x".repeat(100)).is_ok());
    }
}
