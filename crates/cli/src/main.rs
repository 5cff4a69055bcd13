//! `oauthimap-main`: the command-line shell and composition root, started by the front binary
//! `oauthimap` (src/front.rs) for every command it does not answer itself.
//!
//! Architecture: `oauthimap-config` reads settings; `oauthimap-app` opens the store (SQLite or
//! PostgreSQL, secrets sealed by `oauthimap-crypto`) and offers every use case; this binary and
//! `oauthimap-web` only translate input into those calls and render the results. Data goes to
//! stdout (text, or JSON with `--json`), logs to stderr. Exit codes: 0 success, 1 failure of the
//! system, 2 bad input (what to fix is in the message).

mod allocator;
mod broker_client;
mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let words: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The front binary (`oauthimap`, src/front.rs) asked the service's socket already for a
    // token command it could read, and found no service: go to the database.
    let asked = broker_client::quick_parse(&words).is_some();
    allocator::tune();
    let parsed = cli::Cli::parse_from(words);
    if !asked
        && let cli::Command::Token { server: None, .. } = &parsed.command
        && let Some(request) = commands::token::request(&parsed.command)
        && let Some(code) = broker_client::from_broker(parsed.config.as_deref(), &request)
    {
        return code;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::execute(parsed)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            if error.is_user_error() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
