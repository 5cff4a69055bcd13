//! The built-in store: the raw message as a file under the data folder, the normalized message
//! and its summary in the database. Keyed by the idempotency key: a repeated delivery finds the
//! row (and the same file name) and changes nothing.
//!
//! A batch is made durable together: its files are written and flushed in one blocking hop (see
//! `files`), then its rows are added in one transaction. A crash in between leaves files without
//! rows; the repeated delivery keeps the files and adds the rows.

use std::path::PathBuf;
use std::sync::Arc;

use oauthimap_store::{NewStoredMessage, Store};

use crate::files::{Item, write_durably};
use crate::{BatchOutcome, Delivery, Receipt, SinkError};

#[derive(Debug, Clone)]
pub struct StoreSink {
    store: Store,
    dir: PathBuf,
}

impl StoreSink {
    pub fn new(store: Store, dir: PathBuf) -> Self {
        Self { store, dir }
    }

    fn file_name(d: &Delivery) -> String {
        format!("{}.eml", d.idempotency_key)
    }

    /// Delivers `batch[start..]`: see [`crate::Sink::deliver_batch`].
    pub async fn deliver_batch(&self, batch: &Arc<[Delivery]>, start: usize) -> BatchOutcome {
        let retry = |e: &dyn std::fmt::Display| {
            SinkError::Retryable(format!("cannot store the message: {e}"))
        };
        let (dir, shared) = (self.dir.clone(), batch.clone());
        // The files, then the normalized JSON of every message whose file is durable.
        let written = crate::blocking(move || {
            let tmp = dir.join("tmp");
            std::fs::create_dir_all(&tmp)?;
            let batch = &shared[start..];
            let names: Vec<String> = batch.iter().map(Self::file_name).collect();
            let items: Vec<Item<'_>> = names
                .iter()
                .zip(batch)
                // Written before, by a run that crashed before recording it: the same bytes.
                .map(|(name, d)| {
                    (
                        name.as_str(),
                        (!dir.join(name).exists()).then_some(&d.raw[..]),
                    )
                })
                .collect();
            let (durable, failed) = match write_durably(&dir, &tmp, &items) {
                Ok(()) => (batch.len(), None),
                Err((index, e)) => (index, Some(e)),
            };
            let json = batch[..durable]
                .iter()
                .map(|d| serde_json::to_string(&d.normalized))
                .collect::<Result<Vec<String>, _>>()?;
            Ok((json, failed))
        })
        .await;
        let (json, failed) = match written {
            Ok(w) => w,
            Err(e) => return BatchOutcome::failed(retry(&e)),
        };
        let paths: Vec<String> = batch[start..start + json.len()]
            .iter()
            .map(|d| self.dir.join(Self::file_name(d)).display().to_string())
            .collect();
        let rows: Vec<NewStoredMessage<'_>> = batch[start..]
            .iter()
            .zip(&json)
            .zip(&paths)
            .map(|((d, normalized), path)| {
                let s = &d.summary;
                NewStoredMessage {
                    idempotency_key: &d.idempotency_key,
                    receiver: Some(d.receiver),
                    message_id: s.message_id.as_deref(),
                    subject: &s.subject,
                    from_address: &s.from_address,
                    from_name: &s.from_name,
                    date: s.date.as_deref(),
                    size: i64::try_from(d.raw.len()).unwrap_or(i64::MAX),
                    sha256: &s.sha256,
                    raw_path: path,
                    normalized,
                }
            })
            .collect();
        match self.store.insert_messages(&rows).await {
            Ok(ids) => BatchOutcome {
                delivered: ids
                    .into_iter()
                    .map(|(id, _)| Receipt(format!("store:{id}")))
                    .collect(),
                failed: failed.map(|e| retry(&e)),
            },
            Err(e) => BatchOutcome::failed(retry(&e)),
        }
    }
}
