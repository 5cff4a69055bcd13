//! A command that reads the raw message on stdin, like a mail delivery agent: exit 0 means
//! delivered, 75 (`EX_TEMPFAIL`) means try again later, anything else refuses the message. It runs
//! with a minimal environment (`PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ`, `hooks.pass_env`; never an
//! `OAUTHIMAP_*` setting) plus `OAUTHIMAP_IDEMPOTENCY_KEY`, `OAUTHIMAP_RECEIVER` and
//! `OAUTHIMAP_MESSAGE_ID`, so it can skip a message it already has, in a process group of its own
//! that is killed whole when it outlives its timeout.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::{Delivery, Receipt, SinkError};

#[derive(Debug, Clone)]
pub struct CommandSink {
    command: String,
    timeout: Duration,
    pass_env: Vec<String>,
}

impl CommandSink {
    pub fn new(command: &str, timeout: Duration, pass_env: Vec<String>) -> Self {
        Self {
            command: command.to_owned(),
            timeout,
            pass_env,
        }
    }

    pub async fn deliver(&self, d: &Delivery) -> Result<Receipt, SinkError> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.command)
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
