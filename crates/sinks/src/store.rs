//! The built-in store: the raw bytes of a delivered batch in one file under the data folder,
//! and one database row per message (summary, normalized JSON, and where its bytes are in that
//! file). Keyed by the idempotency key: a repeated delivery finds the row and changes nothing.
//!
//! One file per batch rather than per message: creating, flushing and naming a file costs the
//! filesystem far more than the bytes in it, so ten thousand messages make about fifty files.
//! The file is complete and flushed, and its name durable in the folder, before any row points
//! at it; a crash in between leaves a file no row points at, and the repeated delivery writes
//! the bytes again.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oauthimap_store::{NewStoredMessage, Store};

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

    /// Delivers `batch[start..]`: see [`crate::Sink::deliver_batch`].
    pub async fn deliver_batch(&self, batch: &Arc<[Delivery]>, start: usize) -> BatchOutcome {
        let retry = |e: &dyn std::fmt::Display| {
            SinkError::transient(format!("cannot store the message: {e}"))
        };
        let keys: Vec<&str> = batch[start..]
            .iter()
            .map(|d| d.idempotency_key.as_str())
            .collect();
        let stored = match self.store.stored_message_keys(&keys).await {
            Ok(stored) => stored,
            Err(e) => return BatchOutcome::failed(retry(&e)),
        };
        // Where each new message's bytes go in the batch file, in batch order.
        let mut offset = 0u64;
        let ranges: Vec<Option<(u64, u64)>> = batch[start..]
            .iter()
            .map(|d| {
                (!stored.contains(&d.idempotency_key)).then(|| {
                    let range = (offset, d.raw.len() as u64);
                    offset += range.1;
                    range
                })
            })
            .collect();
        let path = if offset == 0 {
            None // nothing new (a repeated delivery): no file
        } else {
            let (dir, shared, ranges) = (self.dir.clone(), batch.clone(), ranges.clone());
            let written = crate::blocking(move || {
                let file = batch_file_name(&shared[start].idempotency_key);
                let news = shared[start..]
                    .iter()
                    .zip(&ranges)
                    .filter(|(_, r)| r.is_some())
                    .map(|(d, _)| &d.raw[..]);
                write_batch(&dir, &file, news)?;
                Ok(dir.join(file))
            })
            .await;
            match written {
                Ok(path) => Some(path.display().to_string()),
                Err(e) => return BatchOutcome::failed(retry(&e)),
            }
        };
        let rows: Vec<NewStoredMessage<'_>> = batch[start..]
            .iter()
            .zip(&ranges)
            .map(|(d, range)| {
                let s = &d.summary;
                let (raw_offset, raw_len) = range.unwrap_or((0, d.raw.len() as u64));
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
                    normalized: d.normalized.get(),
                    // A message stored before keeps its row: these values are not written.
                    raw_path: path.as_deref().unwrap_or_default(),
                    raw_offset: i64::try_from(raw_offset).unwrap_or(i64::MAX),
                    raw_len: i64::try_from(raw_len).unwrap_or(i64::MAX),
                }
            })
            .collect();
        match self.store.insert_messages(&rows).await {
            Ok(ids) => BatchOutcome {
                delivered: ids
                    .into_iter()
                    .map(|(id, _)| Receipt(format!("store:{id}")))
                    .collect(),
                failed: None,
            },
            Err(e) => BatchOutcome::failed(retry(&e)),
        }
    }
}

/// A new, unique name for a batch file: the first message's idempotency key and a random part
/// (a repeated delivery of the same batch after a crash gets a name of its own).
fn batch_file_name(first_key: &str) -> String {
    let random = getrandom::u64().unwrap_or_else(|_| u64::from(std::process::id()));
    format!("{first_key}.{random:016x}.batch")
}

/// Creates `dir/name` (owner-only, never an existing file), writes `messages` one after the
/// other, flushes the file, then the folder (so the name survives a power loss too).
fn write_batch<'a>(
    dir: &Path,
    name: &str,
    messages: impl Iterator<Item = &'a [u8]>,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    let result = (|| {
        for raw in messages {
            file.write_all(raw)?;
        }
        file.sync_data()?;
        // On disk now, and rarely read again: give the page cache back instead of letting the
        // collector's writes push out what other programs use. Only advice, so not an error.
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    result
}

/// Reads a stored message's raw bytes: `len` bytes from `offset` of the file at `path`, or the
/// whole file for a message stored before batches shared a file. Checks them against the
/// message's SHA-256, so a damaged or replaced file is reported, not served.
pub fn read_raw(path: &Path, range: Option<(u64, u64)>, sha256: &str) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let raw = match range {
        Some((offset, len)) => {
            let file = std::fs::File::open(path)?;
            let mut raw = vec![0; usize::try_from(len).map_err(std::io::Error::other)?];
            file.read_exact_at(&mut raw, offset)?;
            raw
        }
        None => std::fs::read(path)?,
    };
    if oauthimap_mime::sha256_hex(&raw) != sha256 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} does not hold the stored message (its SHA-256 differs); the file was changed or damaged",
                path.display()
            ),
        ));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_file_holds_the_messages_in_order_and_reads_back_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let messages: [&[u8]; 3] = [
            b"Subject: one\r\n\r\n1\r\n",
            b"",
            b"Subject: three\r\n\r\n3\r\n",
        ];
        write_batch(dir.path(), "a.batch", messages.iter().copied()).unwrap();
        let path = dir.path().join("a.batch");
        let first = messages[0].len() as u64;
        assert_eq!(
            read_raw(
                &path,
                Some((0, first)),
                &oauthimap_mime::sha256_hex(messages[0])
            )
            .unwrap(),
            messages[0]
        );
        assert_eq!(
            read_raw(
                &path,
                Some((first, messages[2].len() as u64)),
                &oauthimap_mime::sha256_hex(messages[2])
            )
            .unwrap(),
            messages[2]
        );
        let wrong = read_raw(
            &path,
            Some((1, first)),
            &oauthimap_mime::sha256_hex(messages[0]),
        )
        .unwrap_err();
        assert_eq!(wrong.kind(), std::io::ErrorKind::InvalidData);
        assert!(wrong.to_string().contains("SHA-256 differs"), "{wrong}");
        // A name is never reused: an existing file is an error, and is left as it was.
        assert!(write_batch(dir.path(), "a.batch", std::iter::once(&b"x"[..])).is_err());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            first + messages[2].len() as u64
        );
        // A whole-file message (stored before batches shared a file).
        std::fs::write(dir.path().join("old.eml"), messages[0]).unwrap();
        assert_eq!(
            read_raw(
                &dir.path().join("old.eml"),
                None,
                &oauthimap_mime::sha256_hex(messages[0])
            )
            .unwrap(),
            messages[0]
        );
        assert_ne!(batch_file_name("r1-7-1"), batch_file_name("r1-7-1"));
    }
}
