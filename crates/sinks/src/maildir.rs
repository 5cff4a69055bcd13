//! A maildir: the message is written to `tmp/`, then renamed into `new/` under a name derived
//! from the idempotency key, so a repeated delivery overwrites the same file instead of adding
//! a second one (and one already moved to `cur/` by a mail reader is recognised).

use std::path::PathBuf;

use crate::{Delivery, Receipt, SinkError, write_atomically};

#[derive(Debug, Clone)]
pub struct MaildirSink {
    root: PathBuf,
}

impl MaildirSink {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The file name of a delivery: unique per message, stable across retries.
    fn name(key: &str) -> String {
        let host: String = std::fs::read_to_string("/etc/hostname")
            .unwrap_or_else(|_| "localhost".into())
            .trim()
            .chars()
            .map(|c| if c == '/' || c == ':' { '_' } else { c })
            .collect();
        format!("{key}.oauthimap.{host}")
    }

    pub async fn deliver(&self, d: &Delivery<'_>) -> Result<Receipt, SinkError> {
        let retry = |e: std::io::Error| {
            SinkError::Retryable(format!(
                "cannot write to the maildir {}: {e}",
                self.root.display()
            ))
        };
        for sub in ["tmp", "new", "cur"] {
            tokio::fs::create_dir_all(self.root.join(sub))
                .await
                .map_err(retry)?;
        }
        let name = Self::name(d.idempotency_key);
        // Already there, perhaps already read (then in cur/ with a `:2,` suffix).
        let mut cur = tokio::fs::read_dir(self.root.join("cur"))
            .await
            .map_err(retry)?;
        while let Some(entry) = cur.next_entry().await.map_err(retry)? {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}:"))
            {
                return Ok(Receipt(format!(
                    "maildir:cur/{}",
                    entry.file_name().to_string_lossy()
                )));
            }
        }
        let new = self.root.join("new");
        write_atomically(&new, &self.root.join("tmp"), &name, d.raw)
            .await
            .map_err(retry)?;
        Ok(Receipt(format!("maildir:new/{name}")))
    }
}
