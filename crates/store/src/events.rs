//! The append-only event log: audit (who changed what) and health (refreshes, failures).

use oauthimap_types::{AccountId, AppId, EventId, ReceiverId, now_millis};

use crate::models::{Event, NewEvent};
use crate::{Result, Store, StoreError, on_db};

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    at: i64,
    level: String,
    kind: String,
    application_id: Option<i64>,
    account_id: Option<i64>,
    receiver_id: Option<i64>,
    message: String,
}

impl Store {
    /// Appends an event.
    pub async fn record_event(&self, e: &NewEvent) -> Result<EventId> {
        let id: i64 = on_db!(self.db(), |pool| {
            sqlx::query_scalar(
            "INSERT INTO events (at, level, kind, application_id, account_id, receiver_id, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
        )
        .bind(now_millis())
        .bind(e.level.as_str())
        .bind(e.kind)
        .bind(e.application_id.map(|a| a.0))
        .bind(e.account_id.map(|a| a.0))
        .bind(e.receiver_id.map(|r| r.0))
        .bind(&e.message)
        .fetch_one(pool)
        .await
        .map_err(StoreError::db("record the event"))?
        });
        Ok(EventId(id))
    }

    /// The newest events first, optionally only those of one account, at most `limit`, older
    /// than `before` (an event id) for paging.
    pub async fn events(
        &self,
        account: Option<AccountId>,
        before: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<Event>> {
        let rows: Vec<Row> = on_db!(self.db(), |pool| {
            sqlx::query_as(
            "SELECT id, at, level, kind, application_id, account_id, receiver_id, message FROM events \
             WHERE ($1 IS NULL OR account_id = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        )
        .bind(account.map(|a| a.0))
        .bind(before.map(|b| b.0))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("list the events"))?
        });
        Ok(rows
            .into_iter()
            .map(|r| Event {
                id: EventId(r.id),
                at: r.at,
                level: r.level,
                kind: r.kind,
                application_id: r.application_id.map(AppId),
                account_id: r.account_id.map(AccountId),
                receiver_id: r.receiver_id.map(ReceiverId),
                message: r.message,
            })
            .collect())
    }
}
