//! Receivers at work: fetch every message of a folder exactly once and hand it to the
//! receiver's sink, then act on the server.
//!
//! For each message, in UID order: fetch, parse (mime), deliver to the sink with an idempotency
//! key, record the outcome in the ledger keyed by (receiver, UIDVALIDITY, UID), then the
//! post-action (mark seen, move, delete), then advance the checkpoint. Messages go through these
//! steps in fetch batches: a batch is delivered as one (the file and store sinks make it durable
//! together), recorded in one durable transaction, acted on with one command per kind, and the
//! next batches are fetched and parsed meanwhile. A crash between any two of these steps is
//! repaired on the next run: a delivery without a ledger row is repeated with the same key (the
//! sinks make that harmless), a ledger row without its post-action gets it.
//! A UIDVALIDITY change re-scans the folder without re-delivering what the ledger already holds
//! (matched by content hash). Oversized and unparsable messages are refused, recorded with the
//! reason and moved to the refused folder (or flagged), never dropped.
//!
//! [`Collector::run_receiver`] keeps one receiver going: IDLE where offered (re-issued before the
//! server's limit, the session renewed before the access token expires) or polling, reconnecting
//! with back-off after errors. [`Collector::supervise`] runs every active receiver with a
//! concurrency limit and a lease per receiver, so several instances never collect the same
//! folder at once.

mod batch;
mod pass;
mod run;
#[cfg(test)]
mod tests;

pub use pass::{PassSummary, ProgressEvent, SinkPolicy, SinkWait};
pub use run::{Collector, CollectorSettings};

/// Why a collection run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Imap(#[from] oauthimap_imap::ImapError),
    #[error(transparent)]
    Store(#[from] oauthimap_store::StoreError),
    #[error("cannot set up the sink: {0}")]
    Sink(#[from] oauthimap_sinks::SinkError),
    #[error("receiver {0}: {1}")]
    Receiver(String, String),
}

impl CollectError {
    /// Whether waiting may help.
    pub fn kind(&self) -> oauthimap_types::FailureKind {
        use oauthimap_types::FailureKind;
        match self {
            CollectError::Imap(e) => e.kind(),
            CollectError::Store(_) => FailureKind::Transient,
            CollectError::Sink(e) if e.is_transient() => FailureKind::Transient,
            CollectError::Sink(_) | CollectError::Receiver(..) => FailureKind::Permanent,
        }
    }
}
