//! `oauthimap`: the command-line shell and composition root.
//!
//! Architecture: `oauthimap-config` reads settings; `oauthimap-app` opens the store (SQLite or
//! PostgreSQL, secrets sealed by `oauthimap-crypto`) and offers every use case; this binary and
//! `oauthimap-web` only translate input into those calls and render the results. Data goes to
//! stdout (text, or JSON with `--json`), logs to stderr. Exit codes: 0 success, 1 failure of the
//! system, 2 bad input (what to fix is in the message).

mod allocator;
mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `oauthimap token` asks the running service before anything else starts: a password
    // command is run for every login, and this path takes about a millisecond.
    let words: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let quick = commands::token::quick_parse(&words);
    if let Some((config, request)) = &quick
        && let Some(code) = commands::token::from_broker(config.as_deref(), request)
    {
        return code;
    }
    allocator::tune();
    let parsed = cli::Cli::parse_from(words);
    // The socket was asked already when the quick reading understood the arguments.
    if quick.is_none()
        && let cli::Command::Token { server: None, .. } = &parsed.command
        && let Some(request) = commands::token::request(&parsed.command)
        && let Some(code) = commands::token::from_broker(parsed.config.as_deref(), &request)
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
