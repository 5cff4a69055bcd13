//! A command that reads the raw message on stdin, like a mail delivery agent: exit 0 means
//! delivered, 75 (`EX_TEMPFAIL`) means try again later, anything else refuses the message. It runs
//! with a minimal environment (`PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ`, `hooks.pass_env`; never an
//! `OAUTHIMAP_*` setting) plus `OAUTHIMAP_IDEMPOTENCY_KEY`, `OAUTHIMAP_RECEIVER` and
//! `OAUTHIMAP_MESSAGE_ID`, so it can skip a message it already has, in a process group of its own
//! that is killed whole when it outlives its timeout.
//!
//! With an allow-list (`sinks.command_allowed`) the command is split into words as a shell would
//! and run without a shell, and only when its first word is a listed executable.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::{Delivery, Receipt, SinkError};

/// How a command sink's target runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// Through `sh -c` (no allow-list: the operator trusts the admins with a shell).
    Shell(String),
    /// An allowed executable and its arguments, without a shell.
    Exec(Vec<String>),
}

impl Program {
    /// How `command` may run under the allow-list `allowed` (empty: any, through the shell);
    /// the error says what is wrong and how to fix it.
    pub fn new(command: &str, allowed: &[PathBuf]) -> Result<Program, String> {
        if allowed.is_empty() {
            return Ok(Program::Shell(command.to_owned()));
        }
        let listed = || {
            allowed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let words = shlex::split(command).ok_or_else(|| {
            "cannot be split into words (an unclosed quote?): quote as a shell would".to_owned()
        })?;
        let Some(first) = words.first() else {
            return Err(format!(
                "is empty; name one of the allowed executables: {}",
                listed()
            ));
        };
        let program = Path::new(first);
        if !program.is_absolute() {
            return Err(format!(
                "must start with the full path of an allowed executable ({}), not {first:?}; it runs without a shell",
                listed()
            ));
        }
        let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        let resolved = real(program);
        if !allowed.iter().any(|a| real(a) == resolved) {
            return Err(format!(
                "runs {first}, which is not among the executables the operator allows (`[sinks] command_allowed`: {})",
                listed()
            ));
        }
        Ok(Program::Exec(words))
    }
}

#[derive(Debug, Clone)]
pub struct CommandSink {
    program: Program,
    timeout: Duration,
    pass_env: Vec<String>,
}

impl CommandSink {
    /// Refuses (permanently) a command the allow-list does not cover.
    pub fn new(
        command: &str,
        timeout: Duration,
        pass_env: Vec<String>,
        allowed: &[PathBuf],
    ) -> Result<Self, SinkError> {
        let program = Program::new(command, allowed)
            .map_err(|e| SinkError::Permanent(format!("the delivery command {e}")))?;
        Ok(Self {
            program,
            timeout,
            pass_env,
        })
    }

    pub async fn deliver(&self, d: &Delivery) -> Result<Receipt, SinkError> {
        let mut command = match &self.program {
            Program::Shell(line) => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c").arg(line);
                c
            }
            Program::Exec(words) => {
                let mut c = tokio::process::Command::new(&words[0]);
                c.args(&words[1..]);
                c
            }
        };
        let mut child = command
            .env_clear()
            .envs(oauthimap_types::child_env(
                std::env::vars_os(),
                &self.pass_env,
            ))
            .env("OAUTHIMAP_IDEMPOTENCY_KEY", &d.idempotency_key)
            .env("OAUTHIMAP_RECEIVER", &d.receiver_name)
            .env(
                "OAUTHIMAP_MESSAGE_ID",
                d.summary.message_id.as_deref().unwrap_or(""),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(|e| SinkError::transient(format!("cannot run the delivery command: {e}")))?;
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let raw = d.raw.clone();
        let writer = tokio::spawn(async move {
            // A command may exit without reading everything; that is its answer, not our error.
            let _ = stdin.write_all(&raw).await;
        });
        let group = child.id();
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                kill_group(group);
                SinkError::transient(format!(
                    "the delivery command did not finish within {}s",
                    self.timeout.as_secs()
                ))
            })?
            .map_err(|e| SinkError::transient(format!("the delivery command failed: {e}")))?;
        let _ = writer.await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = stderr
            .lines()
            .last()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect::<String>();
        match output.status.code() {
            Some(0) => Ok(Receipt("command:0".into())),
            Some(75) => Err(SinkError::transient(format!(
                "the delivery command asked to retry later (exit 75): {said}"
            ))),
            Some(code) => Err(SinkError::Permanent(format!(
                "the delivery command refused the message (exit {code}): {said}"
            ))),
            None => Err(SinkError::transient(
                "the delivery command was killed by a signal",
            )),
        }
    }
}

/// Kills a command's whole process group (what it started too, not only the shell).
pub(crate) fn kill_group(leader: Option<u32>) {
    if let Some(pid) = leader
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        Delivery {
            idempotency_key: "r1-7-1".into(),
            receiver: oauthimap_types::ReceiverId(1),
            receiver_name: "r".into(),
            raw: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
            normalized: serde_json::value::RawValue::NULL.to_owned(),
            summary: crate::Summary::default(),
        }
    }

    #[test]
    fn without_an_allow_list_the_shell_runs_the_line() {
        assert_eq!(
            Program::new("cat > /tmp/x", &[]),
            Ok(Program::Shell("cat > /tmp/x".into()))
        );
    }

    #[test]
    fn an_allow_list_takes_listed_executables_by_full_path_only() {
        let allowed = [PathBuf::from("/usr/bin/cat")];
        // Quotes split as a shell would; /bin/cat is /usr/bin/cat once links are resolved
        // (on systems where /bin is a link to /usr/bin).
        assert_eq!(
            Program::new("/usr/bin/cat '-u' \"a b\"", &allowed),
            Ok(Program::Exec(vec![
                "/usr/bin/cat".into(),
                "-u".into(),
                "a b".into()
            ]))
        );
        if std::fs::canonicalize("/bin/cat").ok() == std::fs::canonicalize("/usr/bin/cat").ok() {
            assert!(Program::new("/bin/cat", &allowed).is_ok());
        }
        let refused = |command: &str| Program::new(command, &allowed).unwrap_err();
        assert!(
            refused("cat -u").contains("full path"),
            "{}",
            refused("cat -u")
        );
        assert!(refused("/bin/sh -c 'cat'").contains("not among"));
        assert!(refused("/usr/bin/cat 'unclosed").contains("unclosed quote"));
        assert!(refused("").contains("is empty"));
    }

    #[tokio::test]
    async fn an_allowed_executable_gets_its_words_literally_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("deliver");
        let out = dir.path().join("args");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\ncat > /dev/null\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let pwned = dir.path().join("pwned");
        let command = format!(
            "{} 'a; touch {}' '$HOME' '$(id)'",
            script.display(),
            pwned.display()
        );
        let sink = CommandSink::new(
            &command,
            Duration::from_secs(10),
            Vec::new(),
            std::slice::from_ref(&script),
        )
        .unwrap();
        sink.deliver(&delivery()).await.unwrap();
        let args = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            args,
            format!("a; touch {}\n$HOME\n$(id)\n", pwned.display()),
            "each word arrives as typed: no shell expanded or split it"
        );
        assert!(!pwned.exists(), "nothing ran the text after the semicolon");
        // Outside the list, the sink is refused for good, naming the setting.
        let Err(SinkError::Permanent(why)) = CommandSink::new(
            "/bin/sh -c 'id'",
            Duration::from_secs(10),
            Vec::new(),
            std::slice::from_ref(&script),
        ) else {
            panic!("an executable outside the list was accepted")
        };
        assert!(why.contains("command_allowed"), "{why}");
    }
}
