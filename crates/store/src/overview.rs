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

/// Which messages of the built-in store to list (see [`Store::find_messages`]). Every field is
/// optional; the text filters match anywhere in the field, ignoring case (on SQLite, only the
/// case of ASCII letters).
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Text in the sender's address or display name.
    pub sender: Option<String>,
    /// Text in the subject.
    pub subject: Option<String>,
    /// Collected at or after this instant (epoch milliseconds).
    pub since: Option<i64>,
    /// Collected before this instant (epoch milliseconds, exclusive).
    pub until: Option<i64>,
    /// Only messages with a smaller id: the cursor of the next (older) page.
    pub before: Option<i64>,
}

/// A stored message as a list shows it: without the normalized JSON and the raw bytes.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct MessageSummary {
    pub id: i64,
    pub receiver_id: Option<i64>,
    /// The receiver's name, or `None` when the message has no receiver or it was deleted.
    pub receiver_name: Option<String>,
    pub subject: String,
    pub from_address: String,
    pub from_name: String,
    /// The Date header in UTC (RFC 3339), as the sender wrote it.
    pub date: Option<String>,
    pub size: i64,
    /// When the message was collected (epoch milliseconds).
    pub created_at: i64,
}

/// `%text%` for LIKE, with the wildcards of `text` escaped (`\` is the escape character).
pub(crate) fn contains_pattern(text: Option<&str>) -> Option<String> {
    let text = text.map(str::trim).filter(|t| !t.is_empty())?;
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    Some(pattern)
}

impl Store {
    /// Messages of the built-in store matching `filter`, newest first, at most `limit`.
    pub async fn find_messages(
        &self,
        filter: &MessageFilter,
        limit: u32,
    ) -> Result<Vec<MessageSummary>> {
        let sender = contains_pattern(filter.sender.as_deref());
        let subject = contains_pattern(filter.subject.as_deref());
        Ok(on_db!(self.db(), |pool| {
            sqlx::query_as(concat!(
                "SELECT m.id, m.receiver_id, r.name AS receiver_name, m.subject, m.from_address, ",
                "m.from_name, m.date, m.size, m.created_at ",
                "FROM messages m LEFT JOIN receivers r ON r.id = m.receiver_id ",
                "WHERE ($1 IS NULL OR LOWER(m.from_address) LIKE $1 ESCAPE '\\' ",
                "OR LOWER(m.from_name) LIKE $1 ESCAPE '\\') ",
                "AND ($2 IS NULL OR LOWER(m.subject) LIKE $2 ESCAPE '\\') ",
                "AND ($3 IS NULL OR m.created_at >= $3) ",
                "AND ($4 IS NULL OR m.created_at < $4) ",
                "AND ($5 IS NULL OR m.id < $5) ",
                "ORDER BY m.id DESC LIMIT $6"
            ))
            .bind(sender.as_deref())
            .bind(subject.as_deref())
            .bind(filter.since)
            .bind(filter.until)
            .bind(filter.before)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("search the messages"))?
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern(Some(" Ann ")).as_deref(), Some("%ann%"));
        assert_eq!(
            contains_pattern(Some("50%_off\\")).as_deref(),
            Some("%50\\%\\_off\\\\%")
        );
        assert_eq!(contains_pattern(Some("  ")), None);
        assert_eq!(contains_pattern(None), None);
    }
}
