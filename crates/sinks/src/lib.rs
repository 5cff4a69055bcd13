//! Sinks: where a collected message goes. Each takes one message with its idempotency key and
//! answers with a receipt, a retryable error or a permanent one; deciding what happens on the
//! server afterwards is the collector's job.
//!
//! Delivery is at-least-once with an idempotency key, so every sink here makes a repeated
//! delivery harmless: the built-in store and the maildir key their writes on it, the webhook and
//! the command receive it (`Idempotency-Key` header, `OAUTHIMAP_IDEMPOTENCY_KEY`) to do the same.

mod command;
mod maildir;
mod store;
mod webhook;

use std::path::PathBuf;
use std::time::Duration;

pub use command::CommandSink;
pub use maildir::MaildirSink;
use secrecy::SecretString;
use serde::Serialize;
pub use store::StoreSink;
pub use webhook::{WebhookSink, signature};

/// What the collector hands a sink.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// Stable across retries and crashes: `{receiver}-{uidvalidity}-{uid}`.
    pub idempotency_key: &'a str,
    pub receiver: oauthimap_types::ReceiverId,
    pub receiver_name: &'a str,
    /// The message exactly as the server sent it.
    pub raw: &'a [u8],
    /// The normalized message as JSON (see the mime crate).
    pub normalized: &'a serde_json::Value,
    pub summary: &'a Summary,
}

/// The few fields sinks index or show.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub message_id: Option<String>,
    pub subject: String,
    pub from_address: String,
    pub from_name: String,
    pub date: Option<String>,
    pub sha256: String,
}

/// Proof of delivery, kept in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt(pub String);

/// Why a delivery failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// May work later (network, 5xx, 429, a full disk, a command's temporary failure).
    #[error("{0}")]
    Retryable(String),
    /// Will not work without a change (4xx, a command that refuses the message).
    #[error("{0}")]
    Permanent(String),
}

impl SinkError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Retryable(_))
    }
}

/// A configured sink.
#[derive(Debug, Clone)]
pub enum Sink {
    Store(StoreSink),
    Webhook(WebhookSink),
    Maildir(MaildirSink),
    Command(CommandSink),
}

impl Sink {
    /// Hands one message over.
    pub async fn deliver(&self, d: &Delivery<'_>) -> Result<Receipt, SinkError> {
        match self {
            Sink::Store(s) => s.deliver(d).await,
            Sink::Webhook(s) => s.deliver(d).await,
            Sink::Maildir(s) => s.deliver(d).await,
            Sink::Command(s) => s.deliver(d).await,
        }
    }
}

/// How to build a sink from a receiver's settings.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub kind: oauthimap_types::SinkKind,
    pub target: Option<String>,
    pub secret: Option<SecretString>,
    pub data_dir: PathBuf,
    pub timeout: Duration,
}

impl SinkConfig {
    pub fn build(
        self,
        store: oauthimap_store::Store,
        http: reqwest::Client,
    ) -> Result<Sink, SinkError> {
        use oauthimap_types::SinkKind;
        let target = || {
            self.target.clone().ok_or_else(|| {
                SinkError::Permanent(format!("the {} sink has no target", self.kind))
            })
        };
        Ok(match self.kind {
            SinkKind::Store => Sink::Store(StoreSink::new(store, self.data_dir.join("messages"))),
            SinkKind::Webhook => Sink::Webhook(WebhookSink::new(
                http,
                &target()?,
                self.secret.clone(),
                self.timeout,
            )?),
            SinkKind::Maildir => Sink::Maildir(MaildirSink::new(PathBuf::from(target()?))),
            SinkKind::Command => Sink::Command(CommandSink::new(&target()?, self.timeout)),
        })
    }
}

/// Writes `bytes` to `dir/name` atomically: a temporary file in `tmp_dir`, fsync, rename, fsync
/// the folder. Blocking: call it from `spawn_blocking`.
pub(crate) fn write_atomically(
    dir: &std::path::Path,
    tmp_dir: &std::path::Path,
    name: &str,
    bytes: &[u8],
) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = tmp_dir.join(format!("{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    let path = dir.join(name);
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

/// Runs blocking file work on tokio's blocking pool, as one hop for the whole sequence.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(std::io::Error::other(format!(
            "file work was cancelled: {e}"
        )))
    })
}
