//! `oauthimap`: the front door. A password command (msmtp's `passwordeval`, mutt's, getmail's,
//! fetchmail's) runs `oauthimap token MAILBOX` at every login, so that path must cost little
//! more than an exec: this small binary reads a token command's arguments itself and asks the
//! running service over the broker's socket, without loading the whole program (which is a
//! 27 MB binary whose start alone costs more than pizauth's whole answer). For anything else,
//! and when no service answers, it becomes the main program by `exec` (same process, same
//! arguments, same `argv[0]`): `oauthimap-main` next to this binary, else in
//! `/usr/lib/oauthimap/` (the Debian package).

mod broker_client;

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// The main program's file name.
const MAIN: &str = "oauthimap-main";
/// Where the Debian package installs it.
const PACKAGED_MAIN: &str = "/usr/lib/oauthimap/oauthimap-main";

fn main() -> ExitCode {
    let words: Vec<OsString> = std::env::args_os().collect();
    if let Some((config, request)) = broker_client::quick_parse(&words)
        && let Some(code) = broker_client::from_broker(config.as_deref(), &request)
    {
        return code;
    }
    let Some(program) = main_program() else {
        eprintln!(
            "error: cannot find the main program {MAIN}: it belongs next to this binary or in {PACKAGED_MAIN}; reinstall oauthimap, or in a source tree build both binaries (cargo build --release -p oauthimap)"
        );
        return ExitCode::FAILURE;
    };
    let arg0 = words
        .first()
        .cloned()
        .unwrap_or_else(|| OsString::from("oauthimap"));
    let error = std::process::Command::new(&program)
        .arg0(arg0)
        .args(words.iter().skip(1))
        .exec();
    eprintln!("error: cannot start {}: {error}", program.display());
    ExitCode::FAILURE
}

/// `oauthimap-main` beside this binary (a build folder, a tarball, the container image), else
/// the packaged one.
fn main_program() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(MAIN)));
    beside
        .filter(|p| p.is_file())
        .or_else(|| Some(PathBuf::from(PACKAGED_MAIN)).filter(|p| p.is_file()))
}
