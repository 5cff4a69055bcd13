//! Read use cases for the lists the shells show: the event log a page at a time, the built-in
//! store's messages by search, receivers with their delivery counts, one account or message.
//! Limits are clamped here, so every shell pages the same way.

use oauthimap_store::{
    Account, Event, MessageFilter, MessageSummary, Receiver, ReceiverActivity, StoredMessage,
};
use oauthimap_types::{AccountId, EventId, ReceiverId};

use crate::{Core, Result};

/// The most events one page holds.
pub const MAX_EVENTS: u32 = 10_000;

/// Which events to read: newest first, optionally one account's, below a cursor.
#[derive(Debug, Clone, Copy)]
pub struct EventQuery {
    /// Only this account's events.
    pub account: Option<AccountId>,
    /// Only events older than this one (the previous page's `next_cursor`).
    pub before: Option<EventId>,
    /// At most this many (1 to [`MAX_EVENTS`]).
    pub limit: u32,
}

/// A page of events, newest first.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub items: Vec<Event>,
    /// The cursor of the next (older) page: the last event's id when the page is full.
    pub next_cursor: Option<EventId>,
}

/// A page of the built-in store's messages, newest first.
#[derive(Debug, Clone)]
pub struct MessagePage {
    pub items: Vec<MessageSummary>,
    /// The id to continue below (`MessageFilter::before`) when older messages match.
    pub older: Option<i64>,
}

impl Core {
    /// A page of the event log, newest first.
    pub async fn events(&self, query: EventQuery) -> Result<EventPage> {
        let limit = query.limit.clamp(1, MAX_EVENTS);
        let items = self
            .store()
            .events(query.account, query.before, limit)
            .await?;
        let next_cursor = (items.len() == limit as usize)
            .then(|| items.last().map(|e| e.id))
            .flatten();
        Ok(EventPage { items, next_cursor })
    }

    /// How many messages the built-in store holds.
    pub async fn message_count(&self) -> Result<i64> {
        Ok(self.store().message_count().await?)
    }

    /// Up to `limit` messages matching `filter`, newest first, and whether older ones match.
    pub async fn find_messages(&self, filter: &MessageFilter, limit: u32) -> Result<MessagePage> {
        let limit = limit.clamp(1, 1000);
        let mut items = self.store().find_messages(filter, limit + 1).await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let older = more.then(|| items.last().map(|m| m.id)).flatten();
        Ok(MessagePage { items, older })
    }

    /// One stored message's record (its normalized form, not the raw bytes).
    pub async fn stored_message(&self, id: i64) -> Result<StoredMessage> {
        Ok(self.store().message(id).await?)
    }

    /// A receiver's delivered, refused and failing counts.
    pub async fn receiver_activity(&self, receiver: ReceiverId) -> Result<ReceiverActivity> {
        Ok(self.store().receiver_activity(receiver).await?)
    }

    /// Every receiver with its delivery counts (counts that cannot be read show as none).
    pub async fn receivers_with_activity(&self) -> Result<Vec<(Receiver, ReceiverActivity)>> {
        let receivers = self.list_receivers().await?;
        let mut rows = Vec::with_capacity(receivers.len());
        for r in receivers {
            let activity = self.receiver_activity(r.id).await.unwrap_or_default();
            rows.push((r, activity));
        }
        Ok(rows)
    }

    /// One account by id.
    pub async fn account(&self, id: AccountId) -> Result<Account> {
        Ok(self.store().account(id).await?)
    }
}
