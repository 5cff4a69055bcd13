//! What each receiver is doing now (`receiver_status`): written by the instance that runs it,
//! read by every shell, so `receiver list` in another process, REST, the web UI and `/metrics`
//! agree. A row's `since` stays while its state does; a new state starts a new `since`.

use oauthimap_types::{ReceiverId, ReceiverState, now_millis};
use serde::Serialize;

use crate::{Result, Store, StoreError, on_db, parse_name};

/// A receiver's reported state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiverStatus {
    pub state: ReceiverState,
    /// When the receiver entered this state (epoch ms).
    pub since: i64,
    /// Why (the last error, what it waits for), for people.
    pub detail: Option<String>,
    /// When the next try is due, when one is scheduled (epoch ms).
    pub next_at: Option<i64>,
    /// The instance that reported it (or holds the receiver).
    pub instance: Option<String>,
    /// When an alert about this state went out (a sink outage past `sink.alert_after`).
    pub alerted_at: Option<i64>,
    /// When the instance last wrote it.
    pub updated_at: i64,
}

/// A state to report; `since` is kept when the state is unchanged.
#[derive(Debug, Clone)]
pub struct StatusReport<'a> {
    pub state: ReceiverState,
    pub detail: Option<&'a str>,
    pub next_at: Option<i64>,
    pub instance: &'a str,
    /// The state started earlier than now (an outage measured from the held message's first
    /// failure); `None` means now, for a new state.
    pub since: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Row {
    receiver_id: i64,
    state: String,
    since: i64,
    detail: Option<String>,
    next_at: Option<i64>,
    instance: Option<String>,
    alerted_at: Option<i64>,
    updated_at: i64,
}

const COLUMNS: &str =
    "receiver_id, state, since, detail, next_at, instance, alerted_at, updated_at";

impl TryFrom<Row> for (ReceiverId, ReceiverStatus) {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self> {
        Ok((
            ReceiverId(r.receiver_id),
            ReceiverStatus {
                state: parse_name(&r.state, "receiver_status.state")?,
                since: r.since,
                detail: r.detail,
                next_at: r.next_at,
                instance: r.instance,
                alerted_at: r.alerted_at,
                updated_at: r.updated_at,
            },
        ))
    }
}

impl Store {
    /// Records what a receiver is doing. Keeps `since` (and the alert mark) while the state
    /// stays the same; a new state starts at `report.since` or now, with no alert.
    pub async fn report_receiver_status(
        &self,
        receiver: ReceiverId,
        report: &StatusReport<'_>,
    ) -> Result<()> {
        let now = now_millis();
        let since = report.since.unwrap_or(now).min(now);
        on_db!(self.db(), |pool| {
            sqlx::query(
                "INSERT INTO receiver_status (receiver_id, state, since, detail, next_at, instance, \
                 alerted_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7) \
                 ON CONFLICT (receiver_id) DO UPDATE SET \
                 since = CASE WHEN receiver_status.state <> excluded.state THEN excluded.since \
                   WHEN excluded.since < receiver_status.since THEN excluded.since \
                   ELSE receiver_status.since END, \
                 alerted_at = CASE WHEN receiver_status.state = excluded.state \
                   THEN receiver_status.alerted_at ELSE NULL END, \
                 state = excluded.state, detail = excluded.detail, next_at = excluded.next_at, \
                 instance = excluded.instance, updated_at = excluded.updated_at",
            )
            .bind(receiver.0)
            .bind(report.state.as_str())
            .bind(since)
            .bind(report.detail)
            .bind(report.next_at)
            .bind(report.instance)
            .bind(now)
            .execute(pool)
            .await
            .map_err(StoreError::db("record the receiver's state"))?;
        });
        Ok(())
    }

    /// Marks the receiver's current state as alerted about (once per state).
    pub async fn mark_receiver_status_alerted(&self, receiver: ReceiverId) -> Result<()> {
        on_db!(self.db(), |pool| {
            sqlx::query("UPDATE receiver_status SET alerted_at = $1 WHERE receiver_id = $2")
                .bind(now_millis())
                .bind(receiver.0)
                .execute(pool)
                .await
                .map_err(StoreError::db("record the receiver's state"))?;
        });
        Ok(())
    }

    /// The reported state of one receiver, if any instance reported one.
    pub async fn receiver_status(&self, receiver: ReceiverId) -> Result<Option<ReceiverStatus>> {
        let row: Option<Row> = on_db!(self.db(), |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM receiver_status WHERE receiver_id = $1"
            )))
            .bind(receiver.0)
            .fetch_optional(pool)
            .await
            .map_err(StoreError::db("read the receiver's state"))?
        });
        Ok(row
            .map(<(ReceiverId, ReceiverStatus)>::try_from)
            .transpose()?
            .map(|(_, s)| s))
    }

    /// Forgets a receiver's reported state (it stopped running here).
    pub async fn clear_receiver_status(&self, receiver: ReceiverId, instance: &str) -> Result<()> {
        on_db!(self.db(), |pool| {
            sqlx::query("DELETE FROM receiver_status WHERE receiver_id = $1 AND instance = $2")
                .bind(receiver.0)
                .bind(instance)
                .execute(pool)
                .await
                .map_err(StoreError::db("record the receiver's state"))?;
        });
        Ok(())
    }
}
