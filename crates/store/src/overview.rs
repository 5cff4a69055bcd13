//! Read-only summaries for the admin pages and the health overview.

use oauthimap_types::ReceiverId;
use serde::Serialize;

use crate::{Result, Store, StoreError, on_db};

/// What a receiver has done, from its ledger.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReceiverActivity {
    pub delivered: i64,
    pub refused: i64,
    /// Messages whose delivery failed for good (dead letters) or is being retried.
    pub failing: i64,
    /// When the ledger last changed (the last collection that found mail).
    pub last_activity_at: Option<i64>,
}

impl Store {
    pub async fn receiver_activity(&self, receiver: ReceiverId) -> Result<ReceiverActivity> {
        let rows: Vec<(String, i64, Option<i64>)> = on_db!(self.db(), |pool| {
            sqlx::query_as(
                "SELECT status, COUNT(*), MAX(updated_at) FROM ledger WHERE receiver_id = $1 GROUP BY status",
            )
            .bind(receiver.0)
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("summarize the ledger"))?
        });
        let mut a = ReceiverActivity::default();
        for (status, count, at) in rows {
            match status.as_str() {
                "delivered" => a.delivered += count,
                "refused" => a.refused += count,
                _ => a.failing += count,
            }
            a.last_activity_at = a.last_activity_at.max(at);
        }
        Ok(a)
    }
}
