//! Telling a human that an account needs attention: a webhook (POST of a small JSON document)
//! and/or a command run with the details in its environment. Failures to notify are logged,
//! never fatal.

use std::time::Duration;

use serde::Serialize;
use url::Url;

/// Where notifications go.
#[derive(Debug, Clone, Default)]
pub struct NotifySettings {
    pub webhook_url: Option<Url>,
    /// Run through `sh -c`, with `OAUTHIMAP_EVENT`, `OAUTHIMAP_ACCOUNT_ID`, `OAUTHIMAP_MAILBOX`,
    /// `OAUTHIMAP_APPLICATION`, `OAUTHIMAP_RECEIVER` (empty for account events) and
    /// `OAUTHIMAP_REASON` set, in a minimal environment (see `oauthimap_types::child_env`).
    pub command: Option<String>,
    /// Variables the command may see besides the minimal environment (`hooks.pass_env`).
    pub pass_env: Vec<String>,
}

/// One notification.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub event: &'static str,
    pub account_id: i64,
    pub mailbox: String,
    pub application: String,
    /// The receiver concerned, for receiver events (a sink outage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    pub reason: String,
    pub at: i64,
}

#[derive(Debug, Clone)]
pub struct Notifier {
    settings: NotifySettings,
    http: reqwest::Client,
}

impl Notifier {
    pub fn new(settings: NotifySettings, http: reqwest::Client) -> Self {
        Self { settings, http }
    }

    /// Sends the notice everywhere configured; returns how many channels accepted it.
    pub async fn send(&self, notice: &Notice) -> usize {
        let mut delivered = 0;
        if let Some(url) = &self.settings.webhook_url {
            match self
                .http
                .post(url.clone())
                .timeout(Duration::from_secs(10))
                .json(notice)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => delivered += 1,
                Ok(r) => tracing::warn!(
                    status = r.status().as_u16(),
                    "the notification webhook refused the notice"
                ),
                Err(e) => {
                    tracing::warn!(error = %e.without_url(), "cannot reach the notification webhook");
                }
            }
        }
        if let Some(command) = &self.settings.command {
            let child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .env_clear()
                .envs(oauthimap_types::child_env(
                    std::env::vars_os(),
                    &self.settings.pass_env,
                ))
                .env("OAUTHIMAP_EVENT", notice.event)
                .env("OAUTHIMAP_ACCOUNT_ID", notice.account_id.to_string())
                .env("OAUTHIMAP_MAILBOX", &notice.mailbox)
                .env("OAUTHIMAP_APPLICATION", &notice.application)
                .env("OAUTHIMAP_REASON", &notice.reason)
                .env(
                    "OAUTHIMAP_RECEIVER",
                    notice.receiver.as_deref().unwrap_or_default(),
                )
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .process_group(0)
                .kill_on_drop(true)
                .spawn();
            match child {
                Ok(child) => {
                    let group = child.id();
                    match tokio::time::timeout(Duration::from_mins(1), child.wait_with_output())
                        .await
                    {
                        Ok(Ok(o)) if o.status.success() => delivered += 1,
                        Ok(Ok(o)) => tracing::warn!(status = %o.status, output = %said(&o),
                            "the notification command failed"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "the notification command failed"),
                        Err(_) => {
                            kill_group(group);
                            tracing::warn!(
                                "the notification command did not finish within 60 s and was killed"
                            );
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot run the notification command"),
            }
        }
        delivered
    }
}

/// What a command printed, its last 500 characters, for the log.
fn said(o: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(500);
    text.chars().skip(skip).collect()
}

/// Kills a command's whole process group (what it started too, not only the shell).
fn kill_group(leader: Option<u32>) {
    if let Some(pid) = leader
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}
