//! What the CLI's black-box tests share: the real `oauthimap` binary with a clean environment,
//! run with a given stdin, and its whole output as text.
#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary, run in `dir`, with no `OAUTHIMAP_*` variable inherited from the test runner.
pub fn oauthimap(dir: &Path) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("oauthimap"));
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("OAUTHIMAP_") {
            cmd.env_remove(key);
        }
    }
    // An oauthimap installed on this machine (/etc/oauthimap/oauthimap.toml) is not ours.
    cmd.env("OAUTHIMAP_CONFIG", "/dev/null");
    cmd
}

/// Runs `cmd` to the end with `stdin` (or nothing) as its input.
pub fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// Standard output then standard error.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
