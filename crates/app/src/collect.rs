//! Use cases of collection: run receivers once, keep them running, and the built-in store's
//! messages and the delivery ledger.

use oauthimap_collector::{PassSummary, ProgressEvent};
use oauthimap_store::{LedgerEntry, LedgerStatus, Receiver, StoredMessage};
use serde::Serialize;

use crate::{AppError, Core, Result};

/// The outcome of `collect --once` for one receiver.
#[derive(Debug, Clone, Serialize)]
pub struct CollectOutcome {
    pub receiver: String,
    #[serde(flatten)]
    pub summary: PassSummary,
    /// Set when the receiver could not be collected at all.
    pub error: Option<String>,
}

impl Core {
    /// One pass over each selected receiver (all active ones when `name` is `None`). While a
    /// receiver's sink is down, its pass is tried again for up to `retry_for`.
    pub async fn collect_once(
        &self,
        name: Option<&str>,
        retry_for: std::time::Duration,
        progress: &(dyn Fn(&Receiver, ProgressEvent) + Send + Sync),
    ) -> Result<Vec<CollectOutcome>> {
        let receivers: Vec<Receiver> = match name {
            Some(n) => vec![self.find_receiver(n).await?],
            None => self
                .list_receivers()
                .await?
                .into_iter()
                .filter(|r| r.fields.active)
                .collect(),
        };
        let mut outcomes = Vec::new();
        for r in receivers {
            if !r.fields.active {
                return Err(AppError::invalid(
                    "receiver",
                    format!(
                        "{} is inactive ({}); switch it on first",
                        r.fields.name,
                        r.paused_reason.as_deref().unwrap_or("switched off")
                    ),
                ));
            }
            let report = |e: ProgressEvent| progress(&r, e);
            let outcome = match self
                .collector()
                .collect_once(r.id, retry_for, &report)
                .await
            {
                Ok(summary) => CollectOutcome {
                    receiver: r.fields.name.clone(),
                    summary,
                    error: None,
                },
                Err(e) => CollectOutcome {
                    receiver: r.fields.name.clone(),
                    summary: PassSummary::default(),
                    error: Some(e.to_string()),
                },
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Messages of the built-in store, newest first.
    pub async fn list_messages(
        &self,
        search: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredMessage>> {
        Ok(self
            .store()
            .messages(search, before, limit.clamp(1, 1000))
            .await?)
    }

    /// One stored message and its raw bytes.
    pub async fn message(&self, id: i64) -> Result<(StoredMessage, Vec<u8>)> {
        let m = self.store().message(id).await?;
        let range = m.raw_offset.zip(m.raw_len).and_then(|(offset, len)| {
            Some((u64::try_from(offset).ok()?, u64::try_from(len).ok()?))
        });
        let (path, sha256) = (m.raw_path.clone(), m.sha256.clone());
        let raw = tokio::task::spawn_blocking(move || {
            oauthimap_sinks::read_raw(std::path::Path::new(&path), range, &sha256)
        })
        .await
        .map_err(|e| AppError::Io {
            action: format!("read stored message {id}"),
            source: std::io::Error::other(e),
        })?
        .map_err(|e| AppError::Io {
            action: format!("read stored message {id} from {}", m.raw_path),
            source: e,
        })?;
        Ok((m, raw))
    }

    /// The delivery ledger, newest first.
    pub async fn ledger(
        &self,
        receiver: Option<&str>,
        status: Option<LedgerStatus>,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>> {
        let id = match receiver {
            Some(r) => Some(self.find_receiver(r).await?.id),
            None => None,
        };
        Ok(self
            .store()
            .ledger(id, status, limit.clamp(1, 10_000))
            .await?)
    }

    /// Puts dead-lettered messages back in line: the next pass tries them again.
    pub async fn retry_dead(&self, receiver: &str) -> Result<u64> {
        let r = self.find_receiver(receiver).await?;
        let dead = self
            .store()
            .ledger(Some(r.id), Some(LedgerStatus::Dead), 10_000)
            .await?;
        let mut reset = 0;
        let mut lowest: Option<u32> = None;
        for entry in &dead {
            self.store()
                .set_ledger_status(entry.id, LedgerStatus::Failed, Some("retry requested"))
                .await?;
            lowest = Some(lowest.map_or(entry.uid, |l| l.min(entry.uid)));
            reset += 1;
        }
        self.collector().wake();
        // Move the checkpoint back so the next pass fetches them again.
        if let (Some(uid), Some(cp)) = (lowest, self.store().checkpoint(r.id).await?)
            && cp.last_uid >= uid
        {
            self.store()
                .set_checkpoint(
                    r.id,
                    oauthimap_store::Checkpoint {
                        last_uid: uid - 1,
                        ..cp
                    },
                )
                .await?;
        }
        Ok(reset)
    }
}
