//! A maildir: messages are written to `tmp/`, then renamed into `new/` under a name derived from
//! the idempotency key, so a repeated delivery finds the file instead of adding a second one
//! (also when a mail reader has meanwhile moved it to `cur/`, adding `:2,` and flags).
//!
//! A batch is made durable together (see `files`). Earlier deliveries are found by the exact name
//! in `new/`, and for the rest by one listing of `cur/` per batch, taken after the `new/` checks
//! so that a file a reader moves in between is still seen.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::files::{Item, write_durably};
use crate::{BatchOutcome, Delivery, Receipt, SinkError};

#[derive(Debug, Clone)]
pub struct MaildirSink {
    root: PathBuf,
    /// This machine's name, for the file names (read once).
    host: String,
}

impl MaildirSink {
    pub fn new(root: PathBuf) -> Self {
        let host = std::fs::read_to_string("/etc/hostname")
            .unwrap_or_else(|_| "localhost".into())
            .trim()
            .chars()
            .map(|c| if c == '/' || c == ':' { '_' } else { c })
            .collect();
        Self { root, host }
    }

    /// The file name of a delivery: unique per message, stable across retries.
    fn name(&self, key: &str) -> String {
        format!("{key}.oauthimap.{}", self.host)
    }

    /// Delivers `batch[start..]`: see [`crate::Sink::deliver_batch`].
    pub async fn deliver_batch(&self, batch: &Arc<[Delivery]>, start: usize) -> BatchOutcome {
        let root = self.root.clone();
        let names: Vec<String> = batch[start..]
            .iter()
            .map(|d| self.name(&d.idempotency_key))
            .collect();
        let shared = batch.clone();
        let written = crate::blocking(move || {
            let batch = &shared[start..];
            for sub in ["tmp", "new", "cur"] {
                std::fs::create_dir_all(root.join(sub))?;
            }
            let new = root.join("new");
            let mut receipts: Vec<Option<String>> = names
                .iter()
                .map(|name| {
                    new.join(name)
                        .exists()
                        .then(|| format!("maildir:new/{name}"))
                })
                .collect();
            if receipts.iter().any(Option::is_none) {
                let missing: HashSet<&str> = names
                    .iter()
                    .zip(&receipts)
                    .filter(|(_, receipt)| receipt.is_none())
                    .map(|(name, _)| name.as_str())
                    .collect();
                let in_cur = find_in_cur(&root.join("cur"), &missing)?;
                for (receipt, name) in receipts.iter_mut().zip(&names) {
                    if let Some(file) = in_cur.get(name.as_str()) {
                        *receipt = Some(format!("maildir:cur/{file}"));
                    }
                }
            }
            let items: Vec<Item<'_>> = names
                .iter()
                .zip(&receipts)
                .zip(batch)
                .map(|((name, receipt), d)| {
                    (name.as_str(), receipt.is_none().then_some(&d.raw[..]))
                })
                .collect();
            let result = write_durably(&new, &root.join("tmp"), &items);
            let receipts: Vec<String> = receipts
                .into_iter()
                .zip(&names)
                .map(|(receipt, name)| receipt.unwrap_or_else(|| format!("maildir:new/{name}")))
                .collect();
            Ok(match result {
                Ok(()) => (receipts, None),
                Err((index, e)) => (receipts[..index].to_vec(), Some(e)),
            })
        })
        .await;
        let failed = |e: &std::io::Error| {
            SinkError::transient(format!(
                "cannot write to the maildir {}: {e}",
                self.root.display()
            ))
        };
        match written {
            Ok((receipts, error)) => BatchOutcome {
                delivered: receipts.into_iter().map(Receipt).collect(),
                failed: error.as_ref().map(failed),
            },
            Err(e) => BatchOutcome::failed(failed(&e)),
        }
    }
}

/// The files in `cur/` whose name without the `:2,flags` info part is one of `names`, by that
/// name (one listing, keeping only those).
fn find_in_cur(
    cur: &std::path::Path,
    names: &HashSet<&str>,
) -> std::io::Result<HashMap<String, String>> {
    let mut found = HashMap::new();
    for entry in std::fs::read_dir(cur)? {
        let file = entry?.file_name().to_string_lossy().into_owned();
        if let Some((base, _)) = file.split_once(':')
            && names.contains(base)
        {
            found.insert(base.to_owned(), file);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(i: u32) -> Delivery {
        Delivery {
            idempotency_key: format!("r1-7-{i}"),
            receiver: oauthimap_types::ReceiverId(1),
            receiver_name: "r".into(),
            raw: format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes(),
            normalized: serde_json::value::RawValue::NULL.to_owned(),
            summary: crate::Summary::default(),
        }
    }

    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[tokio::test]
    async fn a_repeated_batch_finds_its_files_in_new_and_in_cur() {
        let root = tempfile::tempdir().unwrap();
        let sink = MaildirSink::new(root.path().join("Maildir"));
        let batch: Arc<[Delivery]> = (1..=3).map(delivery).collect();
        let first = sink.deliver_batch(&batch, 0).await;
        assert!(first.failed.is_none());
        assert_eq!(first.delivered.len(), 3);
        let new = root.path().join("Maildir/new");
        assert_eq!(count(&new), 3);
        // A mail reader reads the second message.
        let name = sink.name("r1-7-2");
        std::fs::rename(
            new.join(&name),
            root.path().join(format!("Maildir/cur/{name}:2,S")),
        )
        .unwrap();
        // Delivered again from the second message on (a crash before the ledger commit).
        let again = sink.deliver_batch(&batch, 1).await;
        assert!(again.failed.is_none());
        assert_eq!(
            again.delivered,
            [
                Receipt(format!("maildir:cur/{name}:2,S")),
                Receipt(format!("maildir:new/{}", sink.name("r1-7-3"))),
            ]
        );
        assert_eq!(count(&new) + count(&root.path().join("Maildir/cur")), 3);
        assert_eq!(count(&root.path().join("Maildir/tmp")), 0);
    }

    #[tokio::test]
    async fn an_unwritable_maildir_fails_the_first_message() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("not-a-folder");
        std::fs::write(&file, b"").unwrap();
        let sink = MaildirSink::new(file);
        let batch: Arc<[Delivery]> = (1..=2).map(delivery).collect();
        let outcome = sink.deliver_batch(&batch, 0).await;
        assert!(outcome.delivered.is_empty());
        assert!(outcome.failed.unwrap().is_transient());
    }
}
