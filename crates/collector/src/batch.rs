//! One fetch batch through the exactly-once steps, as policy: sort its messages by what the
//! ledger already knows, parse the rest on blocking threads ([`prepare`]), hand everything
//! deliverable to the sink as one batch, and record every outcome in one durable ledger
//! transaction ([`Pass::deliver`]). What must then happen on the server is returned as a [`Done`]
//! for the pass to run between fetches.
//!
//! The order per message is the same as one message at a time: the sink has the message durably
//! before its ledger row is committed, and the post-action runs only after that commit. A crash
//! anywhere in a batch leaves some messages delivered without a ledger row; the next pass
//! delivers them again with the same idempotency key, which the sinks recognise.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oauthimap_imap::{FetchedMessage, MessageSize};
use oauthimap_mime::{Limits, normalize};
use oauthimap_sinks::{Delivery, Receipt, SinkError, Summary};
use oauthimap_store::{LedgerEntry, LedgerStatus, LedgerWrite, Level, NewEvent};
use oauthimap_types::{ReceiverId, now_millis};

use crate::CollectError;
use crate::pass::{Pass, PassSummary, ProgressEvent, SinkWait};

/// One message of a batch after the ledger and the parser had their say.
pub(crate) enum Item {
    /// In the ledger as delivered or refused: at most its post-action is missing.
    Known(LedgerEntry),
    /// Set aside earlier (dead letter): left alone.
    Dead,
    /// Expunged by someone else since the sizes were fetched: nothing to deliver.
    Gone,
    /// Too large, or not a message the parser accepts: refused for this reason.
    Refuse { size: u64, reason: String },
    /// Parsed, for the sink.
    Ready(Box<Delivery>),
}

/// What the pass must do on the server after a batch, and how far the checkpoint may move.
#[derive(Debug, Default)]
pub(crate) struct Done {
    /// Ledger rows whose post-action has not run yet.
    pub post: Vec<LedgerEntry>,
    /// The last UID fully handled (delivered, refused, known, set aside or gone).
    pub last: Option<u32>,
    /// Why the pass stops after this batch (the sink keeps failing).
    pub stopped: Option<String>,
}

impl Done {
    /// Adds a later batch's outcome to this one.
    pub fn absorb(&mut self, later: Done) {
        self.post.extend(later.post);
        self.last = later.last.or(self.last);
        self.stopped = later.stopped.or(self.stopped.take());
    }
}

/// What [`prepare`] needs to know, owned so it can go to blocking threads.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub receiver: ReceiverId,
    pub receiver_name: String,
    pub uid_validity: u32,
    pub limits: Limits,
}

impl Context {
    /// The idempotency key of a message: stable across retries, crashes and batch boundaries.
    pub fn key(&self, uid: u32) -> String {
        format!("r{}-{}-{uid}", self.receiver.0, self.uid_validity)
    }
}

/// A message before parsing: decided already, or raw bytes to parse.
enum Step {
    Decided(Item),
    Parse(Vec<u8>),
}

/// Sorts a fetched batch (`sizes`: every message of the batch in UID order, `fetched`: the
/// bodies of those not over the size limit) into [`Item`]s in UID order, parsing on up to
/// `workers` blocking threads, each given a run of messages of about equal bytes.
pub(crate) async fn prepare(
    context: &Arc<Context>,
    sizes: &[MessageSize],
    fetched: Vec<FetchedMessage>,
    known: HashMap<u32, LedgerEntry>,
    workers: usize,
) -> Result<Vec<(u32, Item)>, CollectError> {
    let mut known = known;
    let mut bodies: HashMap<u32, Vec<u8>> = fetched.into_iter().map(|m| (m.uid, m.raw)).collect();
    let limit = context.limits.max_size;
    let steps: Vec<(u32, Step)> = sizes
        .iter()
        .map(|m| {
            let step = match known.remove(&m.uid) {
                Some(entry)
                    if matches!(
                        entry.status,
                        LedgerStatus::Delivered | LedgerStatus::Refused
                    ) =>
                {
                    Step::Decided(Item::Known(entry))
                }
                Some(entry) if entry.status == LedgerStatus::Dead => Step::Decided(Item::Dead),
                // Never tried, or failed before: (re)deliver.
                _ if m.size > limit => Step::Decided(Item::Refuse {
                    size: m.size,
                    reason: format!(
                        "{} bytes is over the receiver's limit of {limit} bytes",
                        m.size
                    ),
                }),
                _ => bodies
                    .remove(&m.uid)
                    .map_or(Step::Decided(Item::Gone), Step::Parse),
            };
            (m.uid, step)
        })
        .collect();
    let total: usize = steps.iter().map(|(_, s)| parse_bytes(s)).sum();
    let share = total.div_ceil(workers.max(1)).max(1);
    let (mut runs, mut run, mut bytes) = (Vec::new(), Vec::new(), 0);
    for step in steps {
        bytes += parse_bytes(&step.1);
        run.push(step);
        if bytes >= share {
            runs.push(std::mem::take(&mut run));
            bytes = 0;
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    let handles: Vec<_> = runs
        .into_iter()
        .map(|run| {
            let context = context.clone();
            tokio::task::spawn_blocking(move || {
                run.into_iter()
                    .map(|(uid, step)| (uid, parse(&context, uid, step)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut items = Vec::with_capacity(sizes.len());
    for handle in handles {
        match handle.await {
            Ok(run) => items.extend(run),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                return Err(CollectError::Receiver(
                    context.receiver_name.clone(),
                    format!("parsing was cancelled: {e}"),
                ));
            }
        }
    }
    Ok(items)
}

fn parse_bytes(step: &Step) -> usize {
    match step {
        Step::Parse(raw) => raw.len(),
        Step::Decided(_) => 0,
    }
}

/// Parses one message into what the sink gets, or a refusal.
fn parse(context: &Context, uid: u32, step: Step) -> Item {
    let raw = match step {
        Step::Decided(item) => return item,
        Step::Parse(raw) => raw,
    };
    let normalized = match normalize(&raw, &context.limits) {
        Ok(n) => n,
        Err(refusal) => {
            return Item::Refuse {
                size: raw.len() as u64,
                reason: refusal.detail,
            };
        }
    };
    let first = normalized.from.first();
    let summary = Summary {
        message_id: normalized.message_id.clone(),
        subject: normalized.subject.clone().unwrap_or_default(),
        from_address: first.and_then(|a| a.address.clone()).unwrap_or_default(),
        from_name: first.and_then(|a| a.name.clone()).unwrap_or_default(),
        date: normalized.date.clone(),
        sha256: normalized.sha256.clone(),
    };
    Item::Ready(Box::new(Delivery {
        idempotency_key: context.key(uid),
        receiver: context.receiver,
        receiver_name: context.receiver_name.clone(),
        normalized: serde_json::value::to_raw_value(&normalized)
            .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned()),
        raw,
        summary,
    }))
}

/// A ledger row to write, owned until the batch's transaction.
struct Record {
    uid: u32,
    key: String,
    message_id: Option<String>,
    content_hash: Option<String>,
    size: u64,
    status: LedgerStatus,
    reason: Option<String>,
    receipt: Option<String>,
}

impl Record {
    fn of(d: &Delivery, uid: u32, status: LedgerStatus) -> Self {
        Record {
            uid,
            key: d.idempotency_key.clone(),
            message_id: d.summary.message_id.clone(),
            content_hash: Some(d.summary.sha256.clone()),
            size: d.raw.len() as u64,
            status,
            reason: None,
            receipt: None,
        }
    }

    fn write(&self, receiver: ReceiverId, uid_validity: u32) -> LedgerWrite<'_> {
        LedgerWrite {
            receiver,
            uid_validity,
            uid: self.uid,
            idempotency_key: &self.key,
            message_id: self.message_id.as_deref(),
            content_hash: self.content_hash.as_deref(),
            size: i64::try_from(self.size).unwrap_or(i64::MAX),
            status: self.status,
            reason: self.reason.as_deref(),
            receipt: self.receipt.as_deref(),
        }
    }
}

/// A message of a group, once the re-scan lookup is done.
enum Slot {
    Known(LedgerEntry),
    Dead,
    Gone,
    Refuse {
        size: u64,
        reason: String,
    },
    /// Delivered under the earlier UIDVALIDITY (found by content): recorded, not delivered.
    Earlier(LedgerEntry, Box<Delivery>),
    /// For the sink: its position in the group's deliveries.
    Send(usize),
}

/// What the sink did with one message.
enum Sent {
    Delivered(Receipt),
    /// Refused for good, or down for longer than `sink.max_outage`: set aside, the batch goes
    /// on.
    DeadLetter,
    /// Down for a while: the message holds the line, the pass stops here.
    Stop(SinkWait),
}

impl Pass<'_> {
    /// Delivers a prepared batch and records it; counts into `summary`.
    pub(crate) async fn deliver(
        &self,
        context: &Context,
        rescan: bool,
        items: Vec<(u32, Item)>,
        summary: &mut PassSummary,
    ) -> Result<Done, CollectError> {
        let mut done = Done::default();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            // In a re-scan each message for the sink goes alone, so that the content lookup of
            // the next one sees it (the same message may be in the folder twice).
            let mut group = Vec::new();
            for (uid, item) in items.by_ref() {
                let ready = matches!(item, Item::Ready(_));
                group.push((uid, item));
                if rescan && ready {
                    break;
                }
            }
            self.deliver_group(context, rescan, group, summary, &mut done)
                .await?;
            if done.stopped.is_some() {
                break;
            }
        }
        Ok(done)
    }

    async fn deliver_group(
        &self,
        context: &Context,
        rescan: bool,
        group: Vec<(u32, Item)>,
        summary: &mut PassSummary,
        done: &mut Done,
    ) -> Result<(), CollectError> {
        let (slots, deliveries, uids) = self.sort_group(rescan, group).await?;
        let deliveries: Arc<[Delivery]> = deliveries.into();
        let mut sent = self
            .send(context, &deliveries, &uids, summary)
            .await?
            .into_iter();

        let mut records = Vec::new();
        for (uid, slot) in slots {
            let outcome = match slot {
                Slot::Known(entry) => {
                    if !entry.post_action_done {
                        done.post.push(entry);
                    }
                    Counted::AlreadySeen
                }
                Slot::Dead => Counted::Failed,
                Slot::Gone => Counted::AlreadySeen,
                Slot::Refuse { size, reason } => {
                    tracing::info!(receiver = %self.receiver.fields.name, uid, %reason, "message refused");
                    records.push(Record {
                        uid,
                        key: context.key(uid),
                        message_id: None,
                        content_hash: None,
                        size,
                        status: LedgerStatus::Refused,
                        reason: Some(reason),
                        receipt: None,
                    });
                    Counted::Refused
                }
                Slot::Earlier(entry, d) => {
                    records.push(Record {
                        reason: Some(format!(
                            "delivered before the UIDVALIDITY change as UID {}",
                            entry.uid
                        )),
                        ..Record::of(&d, uid, entry.status)
                    });
                    Counted::AlreadySeen
                }
                Slot::Send(index) => match sent.next() {
                    Some(Sent::Delivered(receipt)) => {
                        records.push(Record {
                            receipt: Some(receipt.0),
                            ..Record::of(&deliveries[index], uid, LedgerStatus::Delivered)
                        });
                        Counted::Delivered
                    }
                    Some(Sent::DeadLetter) => Counted::Failed,
                    stop => {
                        // `send` tries nothing after a transient failure; should a message have
                        // no answer all the same, stop before it too, so that no checkpoint
                        // passes it.
                        let why = match stop {
                            Some(Sent::Stop(wait)) => {
                                let why = format!("the sink failed for UID {uid}: {}", wait.error);
                                summary.waiting = Some(wait);
                                why
                            }
                            _ => format!("the sink gave no answer for UID {uid}"),
                        };
                        summary.failed += 1;
                        summary.stopped = Some(why.clone());
                        done.stopped = Some(why);
                        break;
                    }
                },
            };
            match outcome {
                Counted::Delivered => summary.delivered += 1,
                Counted::AlreadySeen => summary.already_seen += 1,
                Counted::Refused => summary.refused += 1,
                Counted::Failed => summary.failed += 1,
            }
            (self.progress)(ProgressEvent::Handled);
            done.last = Some(uid);
        }
        let writes: Vec<LedgerWrite<'_>> = records
            .iter()
            .map(|r| r.write(self.receiver.id, context.uid_validity))
            .collect();
        done.post
            .extend(self.store.record_ledger_batch(&writes, self.fence).await?);
        Ok(())
    }

    /// Sorts a group into slots, moving what goes to the sink into a list of its own (with the
    /// UIDs). In a re-scan, a message delivered before the UIDVALIDITY change is recognised by
    /// its content and not sent again.
    async fn sort_group(
        &self,
        rescan: bool,
        group: Vec<(u32, Item)>,
    ) -> Result<(Vec<(u32, Slot)>, Vec<Delivery>, Vec<u32>), CollectError> {
        let mut slots = Vec::with_capacity(group.len());
        let (mut deliveries, mut uids) = (Vec::new(), Vec::new());
        for (uid, item) in group {
            let slot = match item {
                Item::Ready(d) => {
                    let earlier = if rescan {
                        self.store
                            .ledger_by_hash(self.receiver.id, &d.summary.sha256)
                            .await?
                    } else {
                        None
                    };
                    if let Some(entry) = earlier {
                        Slot::Earlier(entry, d)
                    } else {
                        deliveries.push(*d);
                        uids.push(uid);
                        Slot::Send(deliveries.len() - 1)
                    }
                }
                Item::Known(entry) => Slot::Known(entry),
                Item::Dead => Slot::Dead,
                Item::Gone => Slot::Gone,
                Item::Refuse { size, reason } => Slot::Refuse { size, reason },
            };
            slots.push((uid, slot));
        }
        Ok((slots, deliveries, uids))
    }

    /// Hands `deliveries` (of `uids`) to the sink, going on after a message is set aside, and
    /// stopping at a transient failure. One answer per message tried, in order.
    async fn send(
        &self,
        context: &Context,
        deliveries: &Arc<[Delivery]>,
        uids: &[u32],
        summary: &mut PassSummary,
    ) -> Result<Vec<Sent>, CollectError> {
        let mut sent = Vec::with_capacity(deliveries.len());
        let mut start = 0;
        while start < deliveries.len() {
            let outcome = self.sink.deliver_batch(deliveries, start).await;
            start += outcome.delivered.len();
            sent.extend(outcome.delivered.into_iter().map(Sent::Delivered));
            let error = match outcome.failed {
                Some(error) => error,
                None if start >= deliveries.len() => break,
                None => SinkError::transient("the sink stopped without saying why"),
            };
            let answer = self
                .failed(context, uids[start], &deliveries[start], error, summary)
                .await?;
            let stop = matches!(answer, Sent::Stop(_));
            sent.push(answer);
            if stop {
                break;
            }
            start += 1;
        }
        Ok(sent)
    }

    /// Records a failed delivery. A permanent refusal sets the message aside at once; a
    /// transient failure holds the line (the pass stops before the message), unless the message
    /// has been failing for longer than `sink.max_outage`, when it is set aside too.
    async fn failed(
        &self,
        context: &Context,
        uid: u32,
        d: &Delivery,
        error: SinkError,
        summary: &mut PassSummary,
    ) -> Result<Sent, CollectError> {
        let reason = error.to_string();
        let record = Record {
            reason: Some(reason.clone()),
            ..Record::of(d, uid, LedgerStatus::Failed)
        };
        let entry = self
            .store
            .record_ledger(
                &record.write(self.receiver.id, context.uid_validity),
                self.fence,
            )
            .await?;
        let now = now_millis();
        let since = entry.failing_since.unwrap_or(now);
        let outage = Duration::from_millis(u64::try_from(now - since).unwrap_or(0));
        let why = match &error {
            SinkError::Permanent(_) => format!("refused by the sink: {reason}"),
            SinkError::Transient { .. } if outage >= self.policy.max_outage => format!(
                "set aside after the sink failed for {} ({} attempt(s)): {reason}",
                humanize(outage),
                entry.attempts
            ),
            SinkError::Transient { retry_after, .. } => {
                tracing::warn!(receiver = %self.receiver.fields.name, uid, error = %reason,
                    "the sink is down; the message holds the line until it takes it");
                return Ok(Sent::Stop(SinkWait {
                    uid,
                    since,
                    attempts: entry.attempts,
                    error: reason,
                    retry_after_secs: retry_after.map(|d| d.as_secs()),
                }));
            }
        };
        self.store
            .set_ledger_status(entry.id, LedgerStatus::Dead, Some(&why))
            .await?;
        tracing::warn!(receiver = %self.receiver.fields.name, uid, %why, "message set aside (dead letter)");
        let event = NewEvent {
            level: Level::Warn,
            kind: "message.set_aside",
            application_id: Some(self.receiver.fields.application_id),
            account_id: self.receiver.fields.account_id,
            receiver_id: Some(self.receiver.id),
            message: format!(
                "{}: UID {uid} ({}) {why}; `oauthimap messages retry {}` sends it again",
                self.receiver.fields.name,
                d.summary.message_id.as_deref().unwrap_or("no Message-ID"),
                self.receiver.fields.name
            ),
        };
        if let Err(e) = self.store.record_event(&event).await {
            tracing::warn!(error = %e, event = %event.message, "cannot record the event");
        }
        if error.is_transient() {
            summary.set_aside_after_outage.push(event.message);
        }
        Ok(Sent::DeadLetter)
    }
}

/// A duration in whole days, hours, minutes or seconds, for messages.
fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// How a handled message counts in the pass summary.
enum Counted {
    Delivered,
    AlreadySeen,
    Refused,
    Failed,
}
