//! Collection state: per-receiver checkpoints, the delivery ledger keyed by (receiver,
//! UIDVALIDITY, UID) that makes delivery exactly-once across crashes, and the built-in store's
//! messages (a row with the normalized message; the raw bytes are in a file in the data folder,
//! which the row points at).

use crate::BeginWrite as _;
use std::collections::{HashMap, HashSet};

use oauthimap_types::{ReceiverId, now_millis};
use serde::Serialize;

use crate::{Result, Store, StoreError, on_db};

/// Where a receiver's collection stands in its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    pub uid_validity: u32,
    pub last_uid: u32,
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerStatus {
    /// The sink has it.
    Delivered,
    /// Not delivered on purpose (too large, not a message); moved or flagged on the server.
    Refused,
    /// The sink failed; retried on the next run.
    Failed,
    /// The sink failed too often; kept aside until an admin retries it.
    Dead,
}

impl LedgerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerStatus::Delivered => "delivered",
            LedgerStatus::Refused => "refused",
            LedgerStatus::Failed => "failed",
            LedgerStatus::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "delivered" => LedgerStatus::Delivered,
            "refused" => LedgerStatus::Refused,
            "failed" => LedgerStatus::Failed,
            "dead" => LedgerStatus::Dead,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "ledger.status holds {other:?}"
                )));
            }
        })
    }
}

/// One ledger row.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerEntry {
    pub id: i64,
    pub receiver_id: ReceiverId,
    pub uid_validity: u32,
    pub uid: u32,
    pub idempotency_key: String,
    pub message_id: Option<String>,
    pub content_hash: Option<String>,
    pub size: i64,
    pub status: LedgerStatus,
    pub reason: Option<String>,
    pub attempts: i64,
    pub post_action_done: bool,
    pub updated_at: i64,
    /// While the row is `failed`: when its first failure of this run of failures happened (the
    /// start of the sink's outage, as far as this message knows).
    pub failing_since: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct LedgerRow {
    id: i64,
    receiver_id: i64,
    uid_validity: i64,
    uid: i64,
    idempotency_key: String,
    message_id: Option<String>,
    content_hash: Option<String>,
    size: i64,
    status: String,
    reason: Option<String>,
    attempts: i64,
    post_action_done: bool,
    updated_at: i64,
    failing_since: Option<i64>,
}

const LEDGER_COLUMNS: &str = "id, receiver_id, uid_validity, uid, idempotency_key, message_id, content_hash, \
     size, status, reason, attempts, post_action_done, updated_at, failing_since";

impl TryFrom<LedgerRow> for LedgerEntry {
    type Error = StoreError;
    fn try_from(r: LedgerRow) -> Result<Self> {
        let u32_of = |v: i64, c: &str| {
            u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("ledger.{c} out of range")))
        };
        Ok(LedgerEntry {
            id: r.id,
            receiver_id: ReceiverId(r.receiver_id),
            uid_validity: u32_of(r.uid_validity, "uid_validity")?,
            uid: u32_of(r.uid, "uid")?,
            idempotency_key: r.idempotency_key,
            message_id: r.message_id,
            content_hash: r.content_hash,
            size: r.size,
            status: LedgerStatus::parse(&r.status)?,
            reason: r.reason,
            attempts: r.attempts,
            post_action_done: r.post_action_done,
            updated_at: r.updated_at,
            failing_since: r.failing_since,
        })
    }
}

/// A message to record in the ledger.
#[derive(Debug, Clone)]
pub struct LedgerWrite<'a> {
    pub receiver: ReceiverId,
    pub uid_validity: u32,
    pub uid: u32,
    pub idempotency_key: &'a str,
    pub message_id: Option<&'a str>,
    pub content_hash: Option<&'a str>,
    pub size: i64,
    pub status: LedgerStatus,
    pub reason: Option<&'a str>,
    pub receipt: Option<&'a str>,
}

/// A message kept by the built-in store.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StoredMessage {
    pub id: i64,
    pub idempotency_key: String,
    pub receiver_id: Option<i64>,
    pub message_id: Option<String>,
    pub subject: String,
    pub from_address: String,
    pub from_name: String,
    pub date: Option<String>,
    pub size: i64,
    pub sha256: String,
    /// The file that holds the raw bytes: from `raw_offset`, `raw_len` bytes; or, for a message
    /// stored before batches shared a file (both `None`), the whole file.
    #[serde(skip)]
    pub raw_path: String,
    #[serde(skip)]
    pub raw_offset: Option<i64>,
    #[serde(skip)]
    pub raw_len: Option<i64>,
    pub normalized: String,
    pub created_at: i64,
}

/// A new message for the built-in store.
#[derive(Debug, Clone)]
pub struct NewStoredMessage<'a> {
    pub idempotency_key: &'a str,
    pub receiver: Option<ReceiverId>,
    pub message_id: Option<&'a str>,
    pub subject: &'a str,
    pub from_address: &'a str,
    pub from_name: &'a str,
    pub date: Option<&'a str>,
    pub size: i64,
    pub sha256: &'a str,
    pub normalized: &'a str,
    /// The file that holds the raw bytes, and where in it they are.
    pub raw_path: &'a str,
    pub raw_offset: i64,
    pub raw_len: i64,
}

/// Most rows one multi-row statement writes: a fetch batch (250 messages) in one, and at most
/// 13 x 500 bound values, well under SQLite's limit of 32,766 and PostgreSQL's of 65,535.
/// These statements are not kept prepared (`persistent(false)`): their text changes with the
/// number of rows, and a cache of every size seen would grow with the mailbox.
const ROWS_PER_STATEMENT: usize = 500;

/// Whether `writes` name each (receiver, UIDVALIDITY, UID) once, as one multi-row upsert needs.
fn one_write_per_message(writes: &[LedgerWrite<'_>]) -> bool {
    let mut keys: Vec<_> = writes
        .iter()
        .map(|w| (w.receiver, w.uid_validity, w.uid))
        .collect();
    keys.sort_unstable();
    keys.windows(2).all(|p| p[0] != p[1])
}

/// The ledger rows a statement returned (RETURNING gives them in no particular order), in the
/// order of `writes`.
fn in_order_of(writes: &[LedgerWrite<'_>], rows: Vec<LedgerRow>) -> Result<Vec<LedgerEntry>> {
    let mut by_key: HashMap<(i64, i64, i64), LedgerRow> = rows
        .into_iter()
        .map(|r| ((r.receiver_id, r.uid_validity, r.uid), r))
        .collect();
    writes
        .iter()
        .map(|w| {
            by_key
                .remove(&(w.receiver.0, i64::from(w.uid_validity), i64::from(w.uid)))
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "the ledger write of UID {} returned no row",
                        w.uid
                    ))
                })
                .and_then(LedgerEntry::try_from)
        })
        .collect()
}

/// Writes a receiver's checkpoint: `$1` receiver, `$2` UIDVALIDITY, `$3` last UID, `$4` time.
const CHECKPOINT_UPSERT: &str = "INSERT INTO checkpoints (receiver_id, uid_validity, last_uid, updated_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (receiver_id) DO UPDATE SET uid_validity = excluded.uid_validity, \
     last_uid = excluded.last_uid, updated_at = excluded.updated_at";

impl Store {
    pub async fn checkpoint(&self, receiver: ReceiverId) -> Result<Option<Checkpoint>> {
        let row: Option<(i64, i64)> = on_db!(self.db(), |pool| sqlx::query_as(
            "SELECT uid_validity, last_uid FROM checkpoints WHERE receiver_id = $1"
        )
        .bind(receiver.0)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("read the checkpoint"))?);
        row.map(|(v, u)| {
            Ok(Checkpoint {
                uid_validity: u32::try_from(v)
                    .map_err(|_| StoreError::Corrupt("checkpoint uid_validity".into()))?,
                last_uid: u32::try_from(u)
                    .map_err(|_| StoreError::Corrupt("checkpoint last_uid".into()))?,
            })
        })
        .transpose()
    }

    pub async fn set_checkpoint(&self, receiver: ReceiverId, cp: Checkpoint) -> Result<()> {
        on_db!(self.db(), |pool| {
            sqlx::query(CHECKPOINT_UPSERT)
                .bind(receiver.0)
                .bind(i64::from(cp.uid_validity))
                .bind(i64::from(cp.last_uid))
                .bind(now_millis())
                .execute(pool)
                .await
                .map_err(StoreError::db("write the checkpoint"))?;
        });
        Ok(())
    }

    /// The ledger row of one message, if any.
    pub async fn ledger_entry(
        &self,
        receiver: ReceiverId,
        uid_validity: u32,
        uid: u32,
    ) -> Result<Option<LedgerEntry>> {
        let row: Option<LedgerRow> = on_db!(self.db(), |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {LEDGER_COLUMNS} FROM ledger WHERE receiver_id = $1 AND uid_validity = $2 AND uid = $3"
        )))
        .bind(receiver.0)
        .bind(i64::from(uid_validity))
        .bind(i64::from(uid))
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("read the ledger"))?
        });
        row.map(LedgerEntry::try_from).transpose()
    }

    /// The ledger rows of UIDs `first..=last` (one query for a whole fetch batch).
    pub async fn ledger_range(
        &self,
        receiver: ReceiverId,
        uid_validity: u32,
        first: u32,
        last: u32,
    ) -> Result<Vec<LedgerEntry>> {
        let rows: Vec<LedgerRow> = on_db!(self.db(), |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {LEDGER_COLUMNS} FROM ledger WHERE receiver_id = $1 AND uid_validity = $2 \
                 AND uid >= $3 AND uid <= $4"
            )))
            .bind(receiver.0)
            .bind(i64::from(uid_validity))
            .bind(i64::from(first))
            .bind(i64::from(last))
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("read the ledger"))?
        });
        rows.into_iter().map(LedgerEntry::try_from).collect()
    }

    /// A message this receiver already delivered under an earlier UIDVALIDITY, by content hash.
    pub async fn ledger_by_hash(
        &self,
        receiver: ReceiverId,
        content_hash: &str,
    ) -> Result<Option<LedgerEntry>> {
        let row: Option<LedgerRow> = on_db!(self.db(), |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {LEDGER_COLUMNS} FROM ledger WHERE receiver_id = $1 AND content_hash = $2 \
             AND status IN ('delivered', 'refused') ORDER BY id LIMIT 1"
            )))
            .bind(receiver.0)
            .bind(content_hash)
            .fetch_optional(pool)
            .await
            .map_err(StoreError::db("read the ledger"))?
        });
        row.map(LedgerEntry::try_from).transpose()
    }

    /// Records (or updates) a message's ledger row; counts an attempt. Durable when it returns,
    /// like [`Store::record_ledger_batch`].
    pub async fn record_ledger(
        &self,
        w: &LedgerWrite<'_>,
        fence: Option<&crate::Fence>,
    ) -> Result<LedgerEntry> {
        let mut rows = self
            .record_ledger_batch(std::slice::from_ref(w), fence)
            .await?;
        rows.pop()
            .ok_or_else(|| StoreError::Corrupt("the ledger write returned no row".into()))
    }

    /// Records (or updates) the ledger rows of a fetch batch in one transaction, counting an
    /// attempt for each; returns them in the same order.
    ///
    /// The commit is durable when this returns, also on SQLite, whose connections otherwise run
    /// with `synchronous = NORMAL` (in WAL mode that survives a crash of the process but may lose
    /// the last commits on power loss): the collector acts on the server (marks seen, moves,
    /// deletes) right after this, so the rows must survive a power loss. Syncing the WAL here also
    /// makes every earlier commit durable, such as the built-in store's message rows.
    ///
    /// With a `fence`, the transaction first checks (and on PostgreSQL locks until the commit)
    /// the lease it was given: when another instance took the lease since, nothing is written
    /// and the answer is [`StoreError::Fenced`].
    pub async fn record_ledger_batch(
        &self,
        writes: &[LedgerWrite<'_>],
        fence: Option<&crate::Fence>,
    ) -> Result<Vec<LedgerEntry>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        debug_assert!(
            one_write_per_message(writes),
            "one write per message and batch"
        );
        let now = now_millis();
        let synced = self.backend() == crate::Backend::Sqlite;
        let (begin, fence_sql) = ledger_batch_sql(synced);
        let rows: Option<Vec<LedgerRow>> = on_db!(self.db(), |pool| {
            let mut conn = pool
                .acquire()
                .await
                .map_err(StoreError::db("record the deliveries"))?;
            if synced {
                sqlx::query("PRAGMA synchronous = FULL")
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::db("record the deliveries"))?;
            }
            let rows = async {
                let mut tx = sqlx::Connection::begin_with(&mut *conn, begin).await?;
                if let Some(f) = fence {
                    let epoch: Option<i64> = sqlx::query_scalar(fence_sql)
                        .bind(&f.lease)
                        .bind(&f.holder)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if epoch != Some(f.epoch) {
                        return Ok(None);
                    }
                }
                let mut rows = Vec::with_capacity(writes.len());
                for chunk in writes.chunks(ROWS_PER_STATEMENT) {
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO ledger (receiver_id, uid_validity, uid, idempotency_key, \
                         message_id, content_hash, size, status, reason, attempts, receipt, \
                         created_at, updated_at, failing_since) ",
                    );
                    q.push_values(chunk, |mut row, w| {
                        row.push_bind(w.receiver.0)
                            .push_bind(i64::from(w.uid_validity))
                            .push_bind(i64::from(w.uid))
                            .push_bind(w.idempotency_key.to_owned())
                            .push_bind(w.message_id.map(str::to_owned))
                            .push_bind(w.content_hash.map(str::to_owned))
                            .push_bind(w.size)
                            .push_bind(w.status.as_str())
                            .push_bind(w.reason.map(str::to_owned))
                            .push("1")
                            .push_bind(w.receipt.map(str::to_owned))
                            .push_bind(now)
                            .push_bind(now)
                            .push_bind((w.status == LedgerStatus::Failed).then_some(now));
                    });
                    q.push(format_args!(
                        " ON CONFLICT (receiver_id, uid_validity, uid) DO UPDATE SET \
                         status = excluded.status, reason = excluded.reason, \
                         receipt = COALESCE(excluded.receipt, ledger.receipt), \
                         message_id = COALESCE(excluded.message_id, ledger.message_id), \
                         content_hash = COALESCE(excluded.content_hash, ledger.content_hash), \
                         attempts = ledger.attempts + 1, updated_at = excluded.updated_at, \
                         failing_since = CASE WHEN excluded.status = 'failed' \
                           THEN COALESCE(ledger.failing_since, excluded.failing_since) ELSE NULL END \
                         RETURNING {LEDGER_COLUMNS}"
                    ));
                    rows.extend(
                        q.build_query_as::<LedgerRow>()
                            .persistent(false)
                            .fetch_all(&mut *tx)
                            .await?,
                    );
                }
                tx.commit().await?;
                Ok(Some(rows))
            }
            .await;
            if synced
                && sqlx::query("PRAGMA synchronous = NORMAL")
                    .execute(&mut *conn)
                    .await
                    .is_err()
            {
                // Do not hand a connection with the slower setting back to the pool.
                conn.close_on_drop();
            }
            rows.map_err(StoreError::db("record the deliveries"))?
        });
        let Some(rows) = rows else {
            return Err(StoreError::Fenced {
                lease: fence.map(|f| f.lease.clone()).unwrap_or_default(),
            });
        };
        in_order_of(writes, rows)
    }

    /// Marks a ledger row's status (dead-lettering, retrying) without counting an attempt; a
    /// row put back in line (`failed`) starts a new run of failures.
    pub async fn set_ledger_status(
        &self,
        id: i64,
        status: LedgerStatus,
        reason: Option<&str>,
    ) -> Result<()> {
        on_db!(self.db(), |pool| {
            sqlx::query(
                "UPDATE ledger SET status = $1, reason = $2, updated_at = $3, failing_since = NULL WHERE id = $4",
            )
            .bind(status.as_str())
            .bind(reason)
            .bind(now_millis())
            .bind(id)
            .execute(pool)
            .await
            .map_err(StoreError::db("update the ledger"))?;
        });
        Ok(())
    }

    /// Notes that the post-delivery action ran on the server.
    pub async fn ledger_post_action_done(&self, id: i64) -> Result<()> {
        self.ledger_post_actions_done(&[id], None).await
    }

    /// Notes that the post-delivery actions of these rows ran on the server and moves the
    /// receiver's checkpoint, if given, in one transaction.
    pub async fn ledger_post_actions_done(
        &self,
        ids: &[i64],
        checkpoint: Option<(ReceiverId, Checkpoint)>,
    ) -> Result<()> {
        let now = now_millis();
        on_db!(self.db(), |pool| {
            let mut tx = pool
                .begin_write()
                .await
                .map_err(StoreError::db("start a transaction"))?;
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new(
                    "UPDATE ledger SET post_action_done = TRUE, updated_at = ",
                );
                q.push_bind(now).push(" WHERE id IN ");
                q.push_tuples(chunk, |mut row, id| {
                    row.push_bind(*id);
                });
                q.build()
                    .persistent(false)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db("update the ledger"))?;
            }
            if let Some((receiver, cp)) = checkpoint {
                sqlx::query(CHECKPOINT_UPSERT)
                    .bind(receiver.0)
                    .bind(i64::from(cp.uid_validity))
                    .bind(i64::from(cp.last_uid))
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db("write the checkpoint"))?;
            }
            tx.commit()
                .await
                .map_err(StoreError::db("commit the ledger update"))?;
        });
        Ok(())
    }

    /// Ledger rows, newest first, optionally of one receiver and status.
    pub async fn ledger(
        &self,
        receiver: Option<ReceiverId>,
        status: Option<LedgerStatus>,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>> {
        let rows: Vec<LedgerRow> = on_db!(self.db(), |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!(
                "SELECT {LEDGER_COLUMNS} FROM ledger WHERE ($1 IS NULL OR receiver_id = $1) \
             AND ($2 IS NULL OR status = $2) ORDER BY id DESC LIMIT $3"
            )
        ))
        .bind(receiver.map(|r| r.0))
        .bind(status.map(LedgerStatus::as_str))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("list the ledger"))?);
        rows.into_iter().map(LedgerEntry::try_from).collect()
    }

    /// Counts of ledger rows per status for a receiver.
    pub async fn ledger_counts(&self, receiver: ReceiverId) -> Result<Vec<(String, i64)>> {
        Ok(on_db!(self.db(), |pool| {
            sqlx::query_as(
            "SELECT status, COUNT(*) FROM ledger WHERE receiver_id = $1 GROUP BY status ORDER BY status"
        )
        .bind(receiver.0)
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("count the ledger"))?
        }))
    }

    /// Adds a message to the built-in store; a second write with the same idempotency key is a
    /// no-op. Returns the message's id and whether it was new.
    pub async fn insert_message(&self, m: &NewStoredMessage<'_>) -> Result<(i64, bool)> {
        let mut ids = self.insert_messages(std::slice::from_ref(m)).await?;
        ids.pop()
            .ok_or_else(|| StoreError::Corrupt("the message insert returned no row".into()))
    }

    /// Adds a batch of messages to the built-in store in one transaction, each as
    /// [`Store::insert_message`] does; returns their ids and whether each was new, in order.
    pub async fn insert_messages(
        &self,
        messages: &[NewStoredMessage<'_>],
    ) -> Result<Vec<(i64, bool)>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_millis();
        Ok(on_db!(self.db(), |pool| {
            let mut tx = pool
                .begin_write()
                .await
                .map_err(StoreError::db("start a transaction"))?;
            let mut ids = Vec::with_capacity(messages.len());
            for chunk in messages.chunks(ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO messages (idempotency_key, receiver_id, message_id, subject, \
                     from_address, from_name, date, size, sha256, raw_path, raw_offset, raw_len, \
                     normalized, created_at) ",
                );
                q.push_values(chunk, |mut row, m| {
                    row.push_bind(m.idempotency_key.to_owned())
                        .push_bind(m.receiver.map(|r| r.0))
                        .push_bind(m.message_id.map(str::to_owned))
                        .push_bind(m.subject.to_owned())
                        .push_bind(m.from_address.to_owned())
                        .push_bind(m.from_name.to_owned())
                        .push_bind(m.date.map(str::to_owned))
                        .push_bind(m.size)
                        .push_bind(m.sha256.to_owned())
                        .push_bind(m.raw_path.to_owned())
                        .push_bind(m.raw_offset)
                        .push_bind(m.raw_len)
                        .push_bind(m.normalized.to_owned())
                        .push_bind(now);
                });
                q.push(" ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, idempotency_key");
                let mut new: HashMap<String, i64> = q
                    .build_query_as::<(i64, String)>()
                    .persistent(false)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(StoreError::db("store the messages"))?
                    .into_iter()
                    .map(|(id, key)| (key, id))
                    .collect();
                // Stored before (a repeated delivery): look their ids up.
                let earlier: Vec<&str> = chunk
                    .iter()
                    .map(|m| m.idempotency_key)
                    .filter(|k| !new.contains_key(*k))
                    .collect();
                let mut old: HashMap<String, i64> = HashMap::new();
                if !earlier.is_empty() {
                    let mut q = sqlx::QueryBuilder::new(
                        "SELECT id, idempotency_key FROM messages WHERE idempotency_key IN ",
                    );
                    q.push_tuples(&earlier, |mut row, key| {
                        row.push_bind((*key).to_owned());
                    });
                    old = q
                        .build_query_as::<(i64, String)>()
                        .persistent(false)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(StoreError::db("read the messages"))?
                        .into_iter()
                        .map(|(id, key)| (key, id))
                        .collect();
                }
                for m in chunk {
                    let id = match new.remove(m.idempotency_key) {
                        Some(id) => {
                            // The same key again in this batch finds this row.
                            old.insert(m.idempotency_key.to_owned(), id);
                            (id, true)
                        }
                        None => (
                            *old.get(m.idempotency_key).ok_or_else(|| {
                                StoreError::Corrupt(format!(
                                    "message {} was neither stored nor found",
                                    m.idempotency_key
                                ))
                            })?,
                            false,
                        ),
                    };
                    ids.push(id);
                }
            }
            tx.commit()
                .await
                .map_err(StoreError::db("commit the messages"))?;
            ids
        }))
    }

    /// Messages of the built-in store, newest first, optionally filtered by a text found in the
    /// sender or subject, older than `before` (an id) for paging.
    pub async fn messages(
        &self,
        search: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredMessage>> {
        // `%`, `_` and `\` are searched for as typed.
        let pattern = crate::overview::contains_pattern(search);
        Ok(on_db!(self.db(), |pool| {
            sqlx::query_as(
            "SELECT id, idempotency_key, receiver_id, message_id, subject, from_address, from_name, date, size, \
             sha256, raw_path, raw_offset, raw_len, normalized, created_at FROM messages \
             WHERE ($1 IS NULL OR LOWER(subject) LIKE $1 ESCAPE '\\' OR LOWER(from_address) LIKE $1 ESCAPE '\\' \
                    OR LOWER(from_name) LIKE $1 ESCAPE '\\') \
             AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        )
        .bind(pattern)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("list the messages"))?
        }))
    }

    pub async fn message(&self, id: i64) -> Result<StoredMessage> {
        let row: Option<StoredMessage> = on_db!(self.db(), |pool| {
            sqlx::query_as(
            "SELECT id, idempotency_key, receiver_id, message_id, subject, from_address, from_name, date, size, \
             sha256, raw_path, raw_offset, raw_len, normalized, created_at FROM messages WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("read the message"))?
        });
        row.ok_or_else(|| StoreError::NotFound {
            what: "message",
            key: id.to_string(),
        })
    }

    /// Which of these idempotency keys the built-in store holds already.
    pub async fn stored_message_keys(&self, keys: &[&str]) -> Result<HashSet<String>> {
        let mut found = HashSet::new();
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let rows: Vec<String> = on_db!(self.db(), |pool| {
                let mut q = sqlx::QueryBuilder::new(
                    "SELECT idempotency_key FROM messages WHERE idempotency_key IN ",
                );
                q.push_tuples(chunk, |mut row, key| {
                    row.push_bind((*key).to_owned());
                });
                q.build_query_scalar()
                    .persistent(false)
                    .fetch_all(pool)
                    .await
                    .map_err(StoreError::db("read the messages"))?
            });
            found.extend(rows);
        }
        Ok(found)
    }

    /// How many messages the built-in store holds.
    pub async fn message_count(&self) -> Result<i64> {
        Ok(on_db!(self.db(), |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages"
        )
        .fetch_one(pool)
        .await
        .map_err(StoreError::db("count the messages"))?))
    }
}

/// How a ledger batch starts its transaction and checks its fence, on SQLite (`synced`) or
/// PostgreSQL.
///
/// SQLite runs one writer at a time and takes the write lock first (see `BeginWrite`): a deferred
/// transaction that reads the lease and then writes fails at once with "database is locked" when
/// another connection committed in between, whatever the busy timeout. PostgreSQL locks the lease
/// row until the commit, so a takeover waits for this transaction or this transaction sees the
/// takeover.
fn ledger_batch_sql(synced: bool) -> (&'static str, &'static str) {
    if synced {
        (
            "BEGIN IMMEDIATE",
            "SELECT epoch FROM leases WHERE name = $1 AND holder = $2",
        )
    } else {
        (
            "BEGIN",
            "SELECT epoch FROM leases WHERE name = $1 AND holder = $2 FOR UPDATE",
        )
    }
}
