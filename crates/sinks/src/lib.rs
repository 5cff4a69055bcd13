//! Sinks: where a collected message goes. Each takes a batch of messages, each with its
//! idempotency key, in order, and answers with a receipt per delivered message and the retryable
//! or permanent error that stopped it; deciding what happens on the server afterwards is the
//! collector's job.
//!
//! Delivery is at-least-once with an idempotency key, so every sink here makes a repeated
//! delivery harmless: the built-in store and the maildir key their writes on it, the webhook and
//! the command receive it (`Idempotency-Key` header, `OAUTHIMAP_IDEMPOTENCY_KEY`) to do the same.

mod command;
mod files;
mod maildir;
mod store;
mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use command::{CommandSink, Program};
pub use maildir::MaildirSink;
use secrecy::SecretString;
use serde::Serialize;
pub use store::{StoreSink, read_raw};
pub use webhook::{WebhookSink, signature};

/// One message for a sink. Owned, so that a whole batch can be shared with a blocking thread
/// (`Arc<[Delivery]>`) without copying the bytes.
#[derive(Clone)]
pub struct Delivery {
    /// Stable across retries and crashes: `{receiver}-{uidvalidity}-{uid}`.
    pub idempotency_key: String,
    pub receiver: oauthimap_types::ReceiverId,
    pub receiver_name: String,
    /// The message exactly as the server sent it.
    pub raw: Vec<u8>,
    /// The normalized message as JSON text (see the mime crate), encoded once by the parser
    /// and passed on as it is.
    pub normalized: Box<serde_json::value::RawValue>,
    pub summary: Summary,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("idempotency_key", &self.idempotency_key)
            .field("receiver", &self.receiver)
            .field("raw_len", &self.raw.len())
            .finish_non_exhaustive()
    }
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

/// Why a delivery failed, sorted in the one place that decides it: each sink says which kind its
/// failure is, and the collector only acts on the kind.
///
/// - **Transient** (the receiving end is down for a while; the message waits at the head of the
///   receiver's line and is retried, for up to `sink.max_outage`): a network error or timeout,
///   HTTP 408, 425, 429 and 5xx, a command's exit 75 (`EX_TEMPFAIL`) or a command killed by its
///   timeout or a signal, any file or database write failing (a full disk, a quota, a
///   permission to fix).
/// - **Permanent** (the receiving end refused this message; it is set aside at once and the
///   line moves on): any other HTTP 4xx, any other non-zero exit of a command.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    #[error("{message}")]
    Transient {
        message: String,
        /// The receiving end asked for this much patience (`Retry-After`).
        retry_after: Option<Duration>,
    },
    #[error("{0}")]
    Permanent(String),
}

impl SinkError {
    /// A transient failure with no hint of when to try again.
    pub fn transient(message: impl Into<String>) -> Self {
        SinkError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient { .. })
    }

    /// How long the receiving end asked to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SinkError::Transient { retry_after, .. } => *retry_after,
            SinkError::Permanent(_) => None,
        }
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

/// What became of `batch[start..]` handed to [`Sink::deliver_batch`]: the first
/// `delivered.len()` messages are delivered (durably, for the file and store sinks); if `failed`
/// is set, the message right after them failed with it and the ones after that were not tried.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub delivered: Vec<Receipt>,
    pub failed: Option<SinkError>,
}

impl BatchOutcome {
    /// Every message failed with `error`, the first one of them first.
    fn failed(error: SinkError) -> Self {
        Self {
            delivered: Vec::new(),
            failed: Some(error),
        }
    }
}

impl Sink {
    /// Hands over `batch[start..]`, in order, stopping at the first failure. The built-in store
    /// and the maildir make the whole batch durable together (one folder flush, one database
    /// transaction); the webhook and the command take one message at a time.
    pub async fn deliver_batch(&self, batch: &Arc<[Delivery]>, start: usize) -> BatchOutcome {
        match self {
            Sink::Store(s) => s.deliver_batch(batch, start).await,
            Sink::Maildir(s) => s.deliver_batch(batch, start).await,
            Sink::Webhook(s) => OneByOne::Webhook(s).deliver(&batch[start..]).await,
            Sink::Command(s) => OneByOne::Command(s).deliver(&batch[start..]).await,
        }
    }
}

/// The sinks that take one message at a time.
enum OneByOne<'a> {
    Webhook(&'a WebhookSink),
    Command(&'a CommandSink),
}

impl OneByOne<'_> {
    /// Delivers `batch` in order, stopping at the first failure.
    async fn deliver(self, batch: &[Delivery]) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        for d in batch {
            let result = match self {
                OneByOne::Webhook(s) => s.deliver(d).await,
                OneByOne::Command(s) => s.deliver(d).await,
            };
            match result {
                Ok(receipt) => outcome.delivered.push(receipt),
                Err(e) => {
                    outcome.failed = Some(e);
                    break;
                }
            }
        }
        outcome
    }
}

/// How to build a sink from a receiver's settings.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub kind: oauthimap_types::SinkKind,
    pub target: Option<String>,
    pub secret: Option<SecretString>,
    /// The data folder (the built-in store's files are in `messages/`).
    pub data_dir: PathBuf,
    pub timeout: Duration,
    /// Variables a command sink may see besides the minimal environment (`hooks.pass_env`).
    pub pass_env: Vec<String>,
    /// Networks inside that a webhook may reach (`outbound.allowed_networks`).
    pub allowed_networks: Vec<oauthimap_types::net::Network>,
    /// The executables a command sink may run (`sinks.command_allowed`; empty: any, by `sh -c`).
    pub command_allowed: Vec<PathBuf>,
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
                &self.allowed_networks,
            )?),
            SinkKind::Maildir => Sink::Maildir(MaildirSink::new(PathBuf::from(target()?))),
            SinkKind::Command => Sink::Command(CommandSink::new(
                &target()?,
                self.timeout,
                self.pass_env.clone(),
                &self.command_allowed,
            )?),
        })
    }
}

/// Runs blocking file work on tokio's blocking pool, as one hop for a whole batch.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(std::io::Error::other(format!(
            "file work was cancelled: {e}"
        )))
    })
}
