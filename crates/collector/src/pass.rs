//! One collection pass over a selected folder: the exactly-once pipeline for every message after
//! the checkpoint, in fetch batches that move through three stages at once, so that the network,
//! the parser and the disk work side by side:
//!
//! 1. **fetch** (the only user of the IMAP session): plans the batches (up to [`BATCH_COUNT`]
//!    messages and [`BATCH_BYTES`]), fetches each with one `UID FETCH`, and between fetches runs
//!    the post-actions of the batches the last stage finished, once [`ACT_AFTER`] messages wait
//!    for them (and at the end of the pass), then moves the checkpoint past them;
//! 2. **parse**: looks the batch up in the ledger and parses what must be delivered, on one
//!    blocking thread per CPU (`batch::prepare`);
//! 3. **deliver**: hands the batch to the sink, which has it durably when it answers, records
//!    every outcome in one durable ledger transaction, and sends the batch's post-actions back to
//!    the fetch stage (`Pass::deliver`).
//!
//! At most [`IN_FLIGHT_BYTES`] of fetched messages exist at once (a batch holds its share from
//! its fetch until it is recorded), so memory does not grow with the folder. Batches are
//! recorded, acted on and checkpointed in UID order. Each pass logs (at info) how long each
//! stage was busy: the one busy for most of the pass is the one that limits it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oauthimap_imap::{FetchedMessage, MailSession, MessageSize, UidRange};
use oauthimap_mime::Limits;
use oauthimap_sinks::Sink;
use oauthimap_store::{Checkpoint, LedgerEntry, LedgerStatus, Receiver, Store};
use oauthimap_types::AfterDelivery;
use serde::Serialize;
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};

use crate::CollectError;
use crate::batch::{Context, Done, Item, prepare};

/// Most messages fetched per `UID FETCH`.
const BATCH_COUNT: usize = 250;
/// Most bytes fetched per `UID FETCH` (a larger message goes alone).
const BATCH_BYTES: u64 = 6 * 1024 * 1024;
/// Most bytes of fetched messages held at once: one batch per stage.
const IN_FLIGHT_BYTES: u64 = 3 * BATCH_BYTES;
/// Post-actions wait until this many messages need them (or the pass ends), so that a long pass
/// sends a few large `UID STORE` / `UID MOVE` commands instead of one per batch: every command
/// costs the server a sync of the whole folder (on Dovecot's maildir, about 25 ms at 10,000
/// messages), which would hold up the next fetch. Safe to delay: the ledger has every delivered
/// message, and a crash before the post-actions leaves them to the next pass.
pub(crate) const ACT_AFTER: usize = 2000;
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
    /// The message at the head of the line while the sink is down: the pass stopped before it
    /// and nothing after it was delivered or acted on.
    pub waiting: Option<SinkWait>,
    /// Messages set aside because the sink stayed down past `sink.max_outage` (their reasons).
    pub set_aside_after_outage: Vec<String>,
}

impl PassSummary {
    /// Adds a later pass of the same run (`collect --once` retrying) to this one.
    pub fn absorb(&mut self, later: PassSummary) {
        if self.available == 0 {
            self.available = later.available;
        }
        self.delivered += later.delivered;
        self.already_seen += later.already_seen;
        self.refused += later.refused;
        self.failed += later.failed;
        self.stopped = later.stopped;
        self.waiting = later.waiting;
        self.set_aside_after_outage
            .extend(later.set_aside_after_outage);
    }
}

/// A message held at the head of a receiver's line by a sink that is down.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SinkWait {
    pub uid: u32,
    /// When its first failure happened: the outage's start (epoch ms).
    pub since: i64,
    pub attempts: i64,
    /// The sink's last error.
    pub error: String,
    /// How long the receiving end asked to wait (`Retry-After`), in seconds.
    pub retry_after_secs: Option<u64>,
}

/// How a receiver treats a sink that is down (`[sink]` settings).
#[derive(Debug, Clone)]
pub struct SinkPolicy {
    /// A held message is set aside once it has failed for this long.
    pub max_outage: Duration,
    /// An event and a notification go out once an outage lasts this long (and when it ends).
    pub alert_after: Duration,
    /// The first retry waits about this long; each next one twice as long, with jitter.
    pub retry_base: Duration,
    /// The longest wait between two retries.
    pub retry_cap: Duration,
}

impl Default for SinkPolicy {
    fn default() -> Self {
        Self {
            max_outage: Duration::from_hours(5 * 24),
            alert_after: Duration::from_mins(15),
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_mins(15),
        }
    }
}

/// The next fetch batch from `start`: up to `BATCH_COUNT` messages and `BATCH_BYTES`, those
/// over `limit` not fetched (they are refused by size). Returns the UIDs to fetch, their bytes
/// and where the batch ends in `sizes`.
fn next_batch(sizes: &[MessageSize], start: usize, limit: u64) -> (Vec<u32>, u64, usize) {
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
    (batch, bytes, index)
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
    pub policy: &'a SinkPolicy,
    /// The receiver's lease, when it runs under one (`serve`): the ledger refuses writes and the
    /// server is not touched once another instance took it over.
    pub fence: Option<&'a oauthimap_store::Fence>,
}

/// A fetched batch on its way to the parse stage.
struct Fetched<'b> {
    /// Every message of the batch in UID order, those not fetched (too large) included.
    sizes: Vec<MessageSize>,
    messages: Vec<FetchedMessage>,
    /// The batch's share of [`IN_FLIGHT_BYTES`], returned once it is recorded.
    share: SemaphorePermit<'b>,
}

/// A parsed batch on its way to the deliver stage.
struct Parsed<'b> {
    items: Vec<(u32, Item)>,
    share: SemaphorePermit<'b>,
}

/// Semaphore permits are KiB of fetched messages (`u32` counts them).
fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.min(IN_FLIGHT_BYTES).div_ceil(1024)).unwrap_or(u32::MAX)
}

impl Pass<'_> {
    /// Collects everything after the checkpoint from the selected folder.
    pub async fn run(
        &self,
        session: &mut impl MailSession,
        uid_validity: u32,
    ) -> Result<PassSummary, CollectError> {
        let checkpoint = self.store.checkpoint(self.receiver.id).await?;
        let (last_uid, rescan) = self.start_point(checkpoint, uid_validity);
        let sizes: Vec<_> = session
            .fetch_sizes(UidRange::from(last_uid.saturating_add(1)))
            .await?
            .into_iter()
            .filter(|m| m.uid > last_uid)
            .collect();
        let available = sizes.len() as u64;
        (self.progress)(ProgressEvent::Available(available));
        if sizes.is_empty() {
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
            return Ok(PassSummary::default());
        }
        let context = Arc::new(Context {
            receiver: self.receiver.id,
            receiver_name: self.receiver.fields.name.clone(),
            uid_validity,
            limits: Limits {
                max_size: self.receiver.fields.size_limit_bytes,
                ..Limits::default()
            },
        });
        let started = Instant::now();
        let budget = Semaphore::new(kib(IN_FLIGHT_BYTES) as usize);
        let (fetched_tx, fetched_rx) = mpsc::channel(1);
        let (parsed_tx, parsed_rx) = mpsc::channel(1);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (fetching, parsing, delivering) = tokio::join!(
            self.fetch_stage(session, uid_validity, &sizes, &budget, fetched_tx, done_rx),
            self.parse_stage(&context, fetched_rx, parsed_tx),
            self.deliver_stage(&context, rescan, parsed_rx, done_tx),
        );
        let (fetch_busy, act_busy) = fetching?;
        let parse_busy = parsing?;
        let (summary, deliver_busy) = delivering?;
        // Which stage limits a pass: the one busy for most of its time.
        tracing::info!(
            receiver = %self.receiver.fields.name,
            available,
            delivered = summary.delivered,
            secs = format_args!("{:.2}", started.elapsed().as_secs_f64()),
            fetch_busy = format_args!("{:.2}", fetch_busy.as_secs_f64()),
            act_busy = format_args!("{:.2}", act_busy.as_secs_f64()),
            parse_busy = format_args!("{:.2}", parse_busy.as_secs_f64()),
            deliver_busy = format_args!("{:.2}", deliver_busy.as_secs_f64()),
            "pass finished"
        );
        Ok(PassSummary {
            available,
            ..summary
        })
    }

    /// Stage 1: fetches the batches; between fetches, runs the post-actions of recorded ones
    /// once [`ACT_AFTER`] messages wait for them, and the rest at the end.
    async fn fetch_stage<'b>(
        &self,
        session: &mut impl MailSession,
        uid_validity: u32,
        sizes: &[MessageSize],
        budget: &'b Semaphore,
        batches: mpsc::Sender<Fetched<'b>>,
        mut recorded: mpsc::UnboundedReceiver<Done>,
    ) -> Result<(Duration, Duration), CollectError> {
        let limit = self.receiver.fields.size_limit_bytes;
        // Time spent fetching, and acting on the server after delivery.
        let (mut fetching, mut acting) = (Duration::ZERO, Duration::ZERO);
        let mut index = 0;
        // Recorded batches whose post-actions have not run yet, merged.
        let mut waiting = Done::default();
        while index < sizes.len() {
            let start = index;
            let (uids, bytes);
            (uids, bytes, index) = next_batch(sizes, start, limit);
            let Ok(share) = budget.acquire_many(kib(bytes)).await else {
                break;
            };
            let working = Instant::now();
            let mut stopped = false;
            while let Ok(done) = recorded.try_recv() {
                stopped |= done.stopped.is_some();
                waiting.absorb(done);
            }
            if stopped || waiting.post.len() >= ACT_AFTER {
                self.flush(session, uid_validity, std::mem::take(&mut waiting))
                    .await?;
            }
            acting += working.elapsed();
            if stopped {
                break;
            }
            let working = Instant::now();
            let messages = session.fetch_messages(&uids).await?;
            fetching += working.elapsed();
            (self.progress)(ProgressEvent::Fetched(messages.len() as u64));
            let batch = Fetched {
                sizes: sizes[start..index].to_vec(),
                messages,
                share,
            };
            if batches.send(batch).await.is_err() {
                break; // a later stage ended (it stopped or failed)
            }
        }
        drop(batches);
        while let Some(done) = recorded.recv().await {
            waiting.absorb(done);
        }
        let working = Instant::now();
        self.flush(session, uid_validity, waiting).await?;
        acting += working.elapsed();
        Ok((fetching, acting))
    }

    /// Stage 2: sorts each batch by the ledger and parses it.
    async fn parse_stage<'b>(
        &self,
        context: &Arc<Context>,
        mut batches: mpsc::Receiver<Fetched<'b>>,
        parsed: mpsc::Sender<Parsed<'b>>,
    ) -> Result<Duration, CollectError> {
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let mut busy = Duration::ZERO;
        while let Some(batch) = batches.recv().await {
            let working = Instant::now();
            let (Some(first), Some(last)) = (batch.sizes.first(), batch.sizes.last()) else {
                continue;
            };
            let known: HashMap<u32, LedgerEntry> = self
                .store
                .ledger_range(self.receiver.id, context.uid_validity, first.uid, last.uid)
                .await?
                .into_iter()
                .map(|e| (e.uid, e))
                .collect();
            let items = prepare(context, &batch.sizes, batch.messages, known, workers).await?;
            busy += working.elapsed();
            let next = Parsed {
                items,
                share: batch.share,
            };
            if parsed.send(next).await.is_err() {
                break;
            }
        }
        Ok(busy)
    }

    /// Stage 3: delivers and records each batch, and hands its post-actions to stage 1.
    async fn deliver_stage(
        &self,
        context: &Context,
        rescan: bool,
        mut batches: mpsc::Receiver<Parsed<'_>>,
        recorded: mpsc::UnboundedSender<Done>,
    ) -> Result<(PassSummary, Duration), CollectError> {
        let mut summary = PassSummary::default();
        let mut busy = Duration::ZERO;
        while let Some(batch) = batches.recv().await {
            let working = Instant::now();
            let done = self
                .deliver(context, rescan, batch.items, &mut summary)
                .await?;
            busy += working.elapsed();
            drop(batch.share);
            let stopped = done.stopped.is_some();
            // Stage 1 is gone only after an error of its own, which ends the pass anyway; the
            // next pass finds these rows in the ledger and runs their post-actions then.
            let _ = recorded.send(done);
            if stopped {
                break;
            }
        }
        Ok((summary, busy))
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

    /// Runs recorded batches' post-actions, one IMAP command per kind and folder, then marks
    /// them done in the ledger and moves the checkpoint to the last handled UID, in one
    /// transaction. A crash before that leaves delivered rows without their post-action: the
    /// next pass finds them in the ledger and finishes them.
    async fn flush(
        &self,
        session: &mut impl MailSession,
        uid_validity: u32,
        done: Done,
    ) -> Result<(), CollectError> {
        let pending = done.post;
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
        // Mail is moved or deleted on the server only while this instance still holds the
        // receiver: after a takeover, the new holder acts on what it records itself.
        if let Some(fence) = self.fence
            && !self.store.fence_holds(fence).await?
        {
            return Err(oauthimap_store::StoreError::Fenced {
                lease: fence.lease.clone(),
            }
            .into());
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
        let checkpoint = done.last.map(|last_uid| {
            (
                self.receiver.id,
                Checkpoint {
                    uid_validity,
                    last_uid,
                },
            )
        });
        if !ids.is_empty() || checkpoint.is_some() {
            self.store
                .ledger_post_actions_done(&ids, checkpoint)
                .await?;
        }
        Ok(())
    }
}
