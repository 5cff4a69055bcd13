//! The built-in store: the raw message as a file under the data folder, the normalized message
//! and its summary in the database. Keyed by the idempotency key: a repeated delivery finds the
//! row (and the same file name) and changes nothing.

use std::path::PathBuf;

use oauthimap_store::{NewStoredMessage, Store};

use crate::{Delivery, Receipt, SinkError, write_atomically};

#[derive(Debug, Clone)]
pub struct StoreSink {
    store: Store,
    dir: PathBuf,
}

impl StoreSink {
    pub fn new(store: Store, dir: PathBuf) -> Self {
        Self { store, dir }
    }

    pub async fn deliver(&self, d: &Delivery<'_>) -> Result<Receipt, SinkError> {
        let retry = |e: &dyn std::fmt::Display| {
            SinkError::Retryable(format!("cannot store the message: {e}"))
        };
        let name = format!("{}.eml", d.idempotency_key);
        let path = self.dir.join(&name);
        let (dir, raw, target) = (self.dir.clone(), d.raw.to_vec(), path.clone());
        crate::blocking(move || {
            let tmp = dir.join("tmp");
            std::fs::create_dir_all(&tmp)?;
            // Written before, by a run that crashed before recording it: the same bytes.
            if !target.exists() {
                write_atomically(&dir, &tmp, &name, &raw)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| retry(&e))?;
        let normalized = serde_json::to_string(d.normalized).map_err(|e| retry(&e))?;
        let s = d.summary;
        let (id, _) = self
            .store
            .insert_message(&NewStoredMessage {
                idempotency_key: d.idempotency_key,
                receiver: Some(d.receiver),
                message_id: s.message_id.as_deref(),
                subject: &s.subject,
                from_address: &s.from_address,
                from_name: &s.from_name,
                date: s.date.as_deref(),
                size: i64::try_from(d.raw.len()).unwrap_or(i64::MAX),
                sha256: &s.sha256,
                raw_path: &path.display().to_string(),
                normalized: &normalized,
            })
            .await
            .map_err(|e| retry(&e))?;
        Ok(Receipt(format!("store:{id}")))
    }
}
