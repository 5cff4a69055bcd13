//! A maildir: the message is written to `tmp/`, then renamed into `new/` under a name derived
//! from the idempotency key, so a repeated delivery overwrites the same file instead of adding
//! a second one (and one already moved to `cur/` by a mail reader is recognised).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Delivery, Receipt, SinkError, write_atomically};

#[derive(Debug, Clone)]
pub struct MaildirSink {
    root: PathBuf,
    /// This machine's name, for the file names (read once).
    host: String,
    /// Whether `tmp/`, `new/` and `cur/` are known to exist (checked once per sink).
    prepared: Arc<AtomicBool>,
}

impl MaildirSink {
    pub fn new(root: PathBuf) -> Self {
        let host = std::fs::read_to_string("/etc/hostname")
            .unwrap_or_else(|_| "localhost".into())
            .trim()
            .chars()
            .map(|c| if c == '/' || c == ':' { '_' } else { c })
            .collect();
        Self {
            root,
            host,
            prepared: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The file name of a delivery: unique per message, stable across retries.
    fn name(&self, key: &str) -> String {
        format!("{key}.oauthimap.{}", self.host)
    }

    pub async fn deliver(&self, d: &Delivery<'_>) -> Result<Receipt, SinkError> {
        let root = self.root.clone();
        let name = self.name(d.idempotency_key);
        let raw = d.raw.to_vec();
        let prepared = self.prepared.clone();
        crate::blocking(move || {
            if !prepared.load(Ordering::Relaxed) {
                for sub in ["tmp", "new", "cur"] {
                    std::fs::create_dir_all(root.join(sub))?;
                }
                prepared.store(true, Ordering::Relaxed);
            }
            // Already there: still new, or read by a mail client (moved to cur/ with a `:2,` suffix).
            if root.join("new").join(&name).exists() {
                return Ok(format!("maildir:new/{name}"));
            }
            let prefix = format!("{name}:");
            for entry in std::fs::read_dir(root.join("cur"))? {
                let entry = entry?;
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    return Ok(format!(
                        "maildir:cur/{}",
                        entry.file_name().to_string_lossy()
                    ));
                }
            }
            write_atomically(&root.join("new"), &root.join("tmp"), &name, &raw)?;
            Ok(format!("maildir:new/{name}"))
        })
        .await
        .map(Receipt)
        .map_err(|e| {
            SinkError::Retryable(format!(
                "cannot write to the maildir {}: {e}",
                self.root.display()
            ))
        })
    }
}
