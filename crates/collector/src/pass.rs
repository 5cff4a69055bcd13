//! One collection pass over a selected folder: the exactly-once pipeline for every message after
//! the checkpoint.

use oauthimap_imap::{MailSession, UidRange};
use oauthimap_mime::{Limits, normalize};
use oauthimap_sinks::{Delivery, Sink, SinkError, Summary};
use oauthimap_store::{Checkpoint, LedgerEntry, LedgerStatus, LedgerWrite, Receiver, Store};
use oauthimap_types::AfterDelivery;
use serde::Serialize;

use crate::CollectError;

/// Messages fetched per `UID FETCH`, and the most bytes fetched at once.
const BATCH_COUNT: usize = 50;
const BATCH_BYTES: u64 = 32 * 1024 * 1024;
/// Attempts before a message the sink keeps refusing is set aside (dead letter).
pub const MAX_ATTEMPTS: i64 = 5;
/// The flag set on refused messages when there is no refused folder.
const REFUSED_FLAG: &str = "\\Flagged";

/// What a pass did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PassSummary {
    /// Messages after the checkpoint when the pass began.
    pub available: u64,
    pub delivered: u64,
    /// In the ledger already (a crash or UIDVALIDITY change), not delivered again.
    pub already_seen: u64,
    pub refused: u64,
    pub failed: u64,
    /// Why the pass stopped early, if it did (the sink keeps failing).
    pub stopped: Option<String>,
}

/// The next fetch batch from `start`: up to `BATCH_COUNT` messages and `BATCH_BYTES`, those
/// over `limit` not fetched (they are refused by size). Returns the UIDs to fetch and where the
/// batch ends in `sizes`.
fn next_batch(
    sizes: &[oauthimap_imap::MessageSize],
    start: usize,
    limit: u64,
) -> (Vec<u32>, usize) {
    let mut batch = Vec::new();
    let mut bytes = 0u64;
    let mut index = start;
    while index < sizes.len() && batch.len() < BATCH_COUNT {
        let m = sizes[index];
        if m.size <= limit {
            if !batch.is_empty() && bytes + m.size > BATCH_BYTES {
                break;
            }
            bytes += m.size;
            batch.push(m.uid);
        }
        index += 1;
    }
    (batch, index)
}

/// Progress of a pass, for progress bars.
#[derive(Debug, Clone, Copy)]
pub enum ProgressEvent {
    Available(u64),
    Fetched(u64),
    Handled,
}

pub(crate) struct Pass<'a> {
    pub store: &'a Store,
    pub sink: &'a Sink,
    pub receiver: &'a Receiver,
    pub progress: &'a (dyn Fn(ProgressEvent) + Send + Sync),
    /// Folders known to exist on the server (created or checked once per session).
    pub folders: &'a std::sync::Mutex<std::collections::HashSet<String>>,
    /// Ledger rows whose post-action waits for the end of the batch (one IMAP command per kind).
    pub pending: std::sync::Mutex<Vec<LedgerEntry>>,
}

enum Handled {
    Delivered,
    AlreadySeen,
    Refused,
    /// Kept on the server, set aside; the pass goes on.
    DeadLetter,
    /// The sink failed; stop here so nothing after it moves on the server.
    Stop(String),
}

impl Pass<'_> {
    fn key(&self, uid_validity: u32, uid: u32) -> String {
        format!("r{}-{uid_validity}-{uid}", self.receiver.id.0)
    }

    /// Collects everything after the checkpoint from the selected folder.
    pub async fn run(
        &self,
        session: &mut impl MailSession,
        uid_validity: u32,
    ) -> Result<PassSummary, CollectError> {
        let mut summary = PassSummary::default();
        let checkpoint = self.store.checkpoint(self.receiver.id).await?;
        let (last_uid, rescan) = self.start_point(checkpoint, uid_validity);
        let sizes: Vec<_> = session
            .fetch_sizes(UidRange::from(last_uid.saturating_add(1)))
            .await?
            .into_iter()
            .filter(|m| m.uid > last_uid)
            .collect();
        summary.available = sizes.len() as u64;
        (self.progress)(ProgressEvent::Available(summary.available));
        let limit = self.receiver.fields.size_limit_bytes;
        let mut index = 0;
        // The last UID fully handled (delivered or set aside) in this batch.
        let mut done: Option<u32> = None;
        while index < sizes.len() {
            let start = index;
            let batch;
            (batch, index) = next_batch(&sizes, start, limit);
            let (first, last) = (sizes[start].uid, sizes[index - 1].uid);
            let known: std::collections::HashMap<u32, LedgerEntry> = self
                .store
                .ledger_range(self.receiver.id, uid_validity, first, last)
                .await?
                .into_iter()
                .map(|e| (e.uid, e))
                .collect();
            let mut fetched = session.fetch_messages(&batch).await?;
            fetched.sort_by_key(|m| m.uid);
            (self.progress)(ProgressEvent::Fetched(fetched.len() as u64));
            let mut bodies = fetched.into_iter().peekable();
            for m in &sizes[start..index] {
                let outcome = if m.size > limit {
                    let reason = format!(
                        "{} bytes is over the receiver's limit of {limit} bytes",
                        m.size
                    );
                    self.refuse(uid_validity, m.uid, m.size, known.get(&m.uid), &reason)
                        .await?
                } else {
                    match bodies.next_if(|b| b.uid == m.uid) {
                        Some(body) => {
                            self.handle(uid_validity, m.uid, &body.raw, rescan, known.get(&m.uid))
                                .await?
                        }
                        // Expunged by someone else meanwhile: nothing to deliver.
                        None => Handled::AlreadySeen,
                    }
                };
                (self.progress)(ProgressEvent::Handled);
                match outcome {
                    Handled::Delivered => summary.delivered += 1,
                    Handled::AlreadySeen => summary.already_seen += 1,
                    Handled::Refused => summary.refused += 1,
                    Handled::DeadLetter => summary.failed += 1,
                    Handled::Stop(why) => {
                        summary.failed += 1;
                        summary.stopped = Some(why);
                        self.flush(session, uid_validity, done).await?;
                        return Ok(summary);
                    }
                }
                done = Some(m.uid);
            }
            self.flush(session, uid_validity, done).await?;
        }
        if summary.available == 0 {
            // Record the UIDVALIDITY even for an empty folder, so a later change is noticed.
            let last = checkpoint
                .filter(|c| c.uid_validity == uid_validity)
                .map_or(0, |c| c.last_uid);
            self.store
                .set_checkpoint(
                    self.receiver.id,
                    Checkpoint {
                        uid_validity,
                        last_uid: last,
                    },
                )
                .await?;
        }
        Ok(summary)
    }

    /// Where to resume: after the checkpoint, or from the start (a re-scan) when UIDVALIDITY
    /// changed.
    fn start_point(&self, checkpoint: Option<Checkpoint>, uid_validity: u32) -> (u32, bool) {
        match checkpoint {
            Some(cp) if cp.uid_validity == uid_validity => (cp.last_uid, false),
            Some(cp) => {
                tracing::warn!(receiver = %self.receiver.fields.name, old = cp.uid_validity, new = uid_validity,
                "UIDVALIDITY changed: re-scanning the folder; delivered messages are recognised by content");
                (0, true)
            }
            None => (0, false),
        }
    }

    async fn handle(
        &self,
        uid_validity: u32,
        uid: u32,
        raw: &[u8],
        rescan: bool,
        known: Option<&LedgerEntry>,
    ) -> Result<Handled, CollectError> {
        if let Some(entry) = known {
            match entry.status {
                LedgerStatus::Delivered | LedgerStatus::Refused => {
                    if !entry.post_action_done {
                        self.queue(entry);
                    }
                    return Ok(Handled::AlreadySeen);
                }
                LedgerStatus::Dead => return Ok(Handled::DeadLetter),
                LedgerStatus::Failed => {}
            }
        }
        let limits = Limits {
            max_size: self.receiver.fields.size_limit_bytes,
            ..Limits::default()
        };
        let normalized = match normalize(raw, &limits) {
            Ok(n) => n,
            Err(refusal) => {
                return self
                    .refuse(uid_validity, uid, raw.len() as u64, known, &refusal.detail)
                    .await;
            }
        };
        let key = self.key(uid_validity, uid);
        let base = LedgerWrite {
            receiver: self.receiver.id,
            uid_validity,
            uid,
            idempotency_key: &key,
            message_id: normalized.message_id.as_deref(),
            content_hash: Some(&normalized.sha256),
            size: i64::try_from(raw.len()).unwrap_or(i64::MAX),
            status: LedgerStatus::Delivered,
            reason: None,
            receipt: None,
        };
        if rescan
            && let Some(earlier) = self
                .store
                .ledger_by_hash(self.receiver.id, &normalized.sha256)
                .await?
        {
            let reason = format!(
                "delivered before the UIDVALIDITY change as UID {}",
                earlier.uid
            );
            let entry = self
                .store
                .record_ledger(&LedgerWrite {
                    status: earlier.status,
                    reason: Some(&reason),
                    ..base
                })
                .await?;
            self.queue(&entry);
            return Ok(Handled::AlreadySeen);
        }
        self.deliver(&normalized, raw, base).await
    }

    /// Hands a parsed message to the sink and records the outcome.
    async fn deliver(
        &self,
        normalized: &oauthimap_mime::Normalized,
        raw: &[u8],
        base: LedgerWrite<'_>,
    ) -> Result<Handled, CollectError> {
        let uid = base.uid;
        let key = base.idempotency_key;
        let json = serde_json::to_value(normalized).unwrap_or_default();
        let first = normalized.from.first();
        let summary = Summary {
            message_id: normalized.message_id.clone(),
            subject: normalized.subject.clone().unwrap_or_default(),
            from_address: first.and_then(|a| a.address.clone()).unwrap_or_default(),
            from_name: first.and_then(|a| a.name.clone()).unwrap_or_default(),
            date: normalized.date.clone(),
            sha256: normalized.sha256.clone(),
        };
        let delivery = Delivery {
            idempotency_key: key,
            receiver: self.receiver.id,
            receiver_name: &self.receiver.fields.name,
            raw,
            normalized: &json,
            summary: &summary,
        };
        match self.sink.deliver(&delivery).await {
            Ok(receipt) => {
                let entry = self
                    .store
                    .record_ledger(&LedgerWrite {
                        receipt: Some(&receipt.0),
                        ..base
                    })
                    .await?;
                self.queue(&entry);
                Ok(Handled::Delivered)
            }
            Err(e) => {
                let reason = e.to_string();
                let entry = self
                    .store
                    .record_ledger(&LedgerWrite {
                        status: LedgerStatus::Failed,
                        reason: Some(&reason),
                        ..base
                    })
                    .await?;
                if matches!(e, SinkError::Permanent(_)) || entry.attempts >= MAX_ATTEMPTS {
                    let why = format!("set aside after {} attempt(s): {reason}", entry.attempts);
                    self.store
                        .set_ledger_status(entry.id, LedgerStatus::Dead, Some(&why))
                        .await?;
                    tracing::warn!(receiver = %self.receiver.fields.name, uid, %why, "message set aside (dead letter)");
                    Ok(Handled::DeadLetter)
                } else {
                    tracing::warn!(receiver = %self.receiver.fields.name, uid, error = %reason, "the sink failed; stopping until the next run");
                    Ok(Handled::Stop(format!(
                        "the sink failed for UID {uid}: {reason}"
                    )))
                }
            }
        }
    }

    async fn refuse(
        &self,
        uid_validity: u32,
        uid: u32,
        size: u64,
        known: Option<&LedgerEntry>,
        reason: &str,
    ) -> Result<Handled, CollectError> {
        if let Some(entry) = known
            && entry.status == LedgerStatus::Refused
        {
            if !entry.post_action_done {
                self.queue(entry);
            }
            return Ok(Handled::AlreadySeen);
        }
        tracing::info!(receiver = %self.receiver.fields.name, uid, %reason, "message refused");
        let key = self.key(uid_validity, uid);
        let entry = self
            .store
            .record_ledger(&LedgerWrite {
                receiver: self.receiver.id,
                uid_validity,
                uid,
                idempotency_key: &key,
                message_id: None,
                content_hash: None,
                size: i64::try_from(size).unwrap_or(i64::MAX),
                status: LedgerStatus::Refused,
                reason: Some(reason),
                receipt: None,
            })
            .await?;
        self.queue(&entry);
        Ok(Handled::Refused)
    }

    async fn ensure_folder(
        &self,
        session: &mut impl MailSession,
        folder: &str,
    ) -> Result<(), CollectError> {
        let known = self
            .folders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(folder);
        if !known {
            session.create_folder_if_missing(folder).await?;
            self.folders
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(folder.to_owned());
        }
        Ok(())
    }

    /// Queues what happens on the server once the ledger holds the outcome; [`Pass::flush`]
    /// runs it at the end of the batch.
    fn queue(&self, entry: &LedgerEntry) {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(entry.clone());
    }

    /// Runs the queued post-actions, one IMAP command per kind and folder, marks them done in the
    /// ledger, then moves the checkpoint to `done`. A crash before this leaves delivered rows
    /// without their post-action: the next pass finds them in the ledger and finishes them.
    async fn flush(
        &self,
        session: &mut impl MailSession,
        uid_validity: u32,
        done: Option<u32>,
    ) -> Result<(), CollectError> {
        let pending: Vec<LedgerEntry> = std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let f = &self.receiver.fields;
        let mut seen = Vec::new();
        let mut delete = Vec::new();
        let mut flag = Vec::new();
        let mut moves: std::collections::BTreeMap<String, Vec<u32>> =
            std::collections::BTreeMap::new();
        for entry in &pending {
            if entry.status == LedgerStatus::Refused {
                match &f.refused_folder {
                    Some(folder) => moves.entry(folder.clone()).or_default().push(entry.uid),
                    None => flag.push(entry.uid),
                }
            } else {
                match f.after_delivery {
                    AfterDelivery::MarkSeen => seen.push(entry.uid),
                    AfterDelivery::Move => moves
                        .entry(
                            f.accepted_folder
                                .clone()
                                .unwrap_or_else(|| "Processed".into()),
                        )
                        .or_default()
                        .push(entry.uid),
                    AfterDelivery::Delete => delete.push(entry.uid),
                }
            }
        }
        if !seen.is_empty() {
            session.add_flags(&seen, &["\\Seen"]).await?;
        }
        if !flag.is_empty() {
            session.add_flags(&flag, &[REFUSED_FLAG]).await?;
        }
        for (folder, uids) in &moves {
            self.ensure_folder(session, folder).await?;
            session.move_to(uids, folder).await?;
        }
        if !delete.is_empty() {
            session.delete(&delete).await?;
        }
        let ids: Vec<i64> = pending.iter().map(|e| e.id).collect();
        if !ids.is_empty() {
            self.store.ledger_post_actions_done(&ids).await?;
        }
        if let Some(last_uid) = done {
            self.store
                .set_checkpoint(
                    self.receiver.id,
                    Checkpoint {
                        uid_validity,
                        last_uid,
                    },
                )
                .await?;
        }
        Ok(())
    }
}
