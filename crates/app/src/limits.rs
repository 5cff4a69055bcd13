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
