//! Whether the tokens an answer was made from may have changed since a moment: a cheap test (a
//! `stat` and a 16-byte read, no query) for answers kept in memory, such as the token broker's.
//!
//! Every store function that writes accounts or applications (a refresh, a sign-in, a state
//! change, a removal, an application's change, a re-seal), in any process, writes 16 new random
//! bytes to the database's `-tokens` file beside it once its transaction is over (a [`TokenChange`]
//! guard, so early returns count too). The marker is that file's content and the database file's
//! device and inode (a database restored over it is another file): equal markers mean no such
//! write in between (the file is owned like the database, and one that cannot be read gives no
//! marker, so nothing comes from memory). Other commits (leases renewed every few seconds, mail collected, events)
//! leave it alone, so a busy service still answers from memory. A change made to the database by
//! other means (sqlite3 by hand) is seen when the token is next renewed or the service restarts.
//! PostgreSQL gets no marker: answers come from the database each time.
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::{Db, Store};

/// The state of a SQLite database's token writes; see the module header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeMarker {
    /// The database file's device and inode.
    database: (u64, u64),
    /// The `-tokens` file's content; `None` before the first token write.
    tokens: Option<[u8; TOKENS_MARK]>,
}

/// The length of the `-tokens` file's content.
const TOKENS_MARK: usize = 16;

impl Store {
    /// The database's [`ChangeMarker`] now: `None` on PostgreSQL, or when the database file
    /// cannot be read (then nothing may be taken from memory).
    pub fn change_marker(&self) -> Option<ChangeMarker> {
        marker_of(&self.sqlite_file()?)
    }

    /// A guard that marks a token write when dropped: taken at the start of every function that
    /// writes accounts or applications.
    pub(crate) fn token_change(&self) -> TokenChange {
        TokenChange(self.sqlite_file())
    }

    fn sqlite_file(&self) -> Option<PathBuf> {
        let Db::Sqlite(pool) = self.db() else {
            return None;
        };
        Some(pool.connect_options().get_filename().to_owned())
    }
}

/// Marks a token write when dropped (after the function's transaction is over, whatever its
/// outcome: a mark too many costs one answer from the database, a mark too few a stale one).
pub(crate) struct TokenChange(Option<PathBuf>);

impl Drop for TokenChange {
    fn drop(&mut self) {
        if let Some(main) = &self.0 {
            mark_tokens_changed(main);
        }
    }
}

fn tokens_file(main: &Path) -> PathBuf {
    let mut path = PathBuf::from(main.as_os_str());
    path.as_mut_os_string().push("-tokens");
    path
}

fn mark_tokens_changed(main: &Path) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut mark = [0u8; TOKENS_MARK];
    if getrandom::fill(&mut mark).is_err() {
        // Without randomness, a different value still: the time in nanoseconds.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        mark = now.to_le_bytes();
    }
    let path = tokens_file(main);
    let database = std::fs::metadata(main).ok();
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| {
            // Owned like the database whoever writes first: root running a CLI command on the
            // service's folder must not leave a mark the service cannot read or rewrite.
            if let Some(db) = &database {
                let meta = file.metadata()?;
                if (meta.uid(), meta.gid()) != (db.uid(), db.gid()) {
                    std::os::unix::fs::fchown(&file, Some(db.uid()), Some(db.gid()))?;
                }
            }
            file.write_all(&mark)
        });
    if let Err(e) = written {
        // The broker then keeps answering what it remembers until the token is renewed: say so.
        tracing::warn!(error = %e, file = %path.display(), "cannot mark a token change; the token broker may answer from memory until the token is next renewed");
    }
}

fn marker_of(main: &Path) -> Option<ChangeMarker> {
    use std::os::unix::fs::FileExt as _;
    let meta = std::fs::metadata(main).ok()?;
    let mut mark = [0u8; TOKENS_MARK];
    // No mark yet is a state of its own; a mark that cannot be read gives no marker at all (a
    // write could not be told), so nothing is taken from memory.
    let tokens = match std::fs::File::open(tokens_file(main)) {
        Ok(file) => {
            file.read_exact_at(&mut mark, 0).ok()?;
            Some(mark)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => return None,
    };
    Some(ChangeMarker {
        database: (meta.dev(), meta.ino()),
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_changes_with_every_token_write_and_a_new_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("db.sqlite");
        assert_eq!(marker_of(&main), None, "no database file, no marker");
        std::fs::write(&main, b"main").unwrap();
        let before = marker_of(&main).unwrap();
        assert_eq!(
            marker_of(&main),
            Some(before),
            "nothing written, same marker"
        );
        // Other commits (the file grows, the log grows) change nothing.
        std::fs::write(&main, b"main, longer").unwrap();
        std::fs::write(dir.path().join("db.sqlite-wal"), [0u8; 32]).unwrap();
        assert_eq!(marker_of(&main), Some(before));
        let mut seen = vec![before];
        for _ in 0..3 {
            mark_tokens_changed(&main);
            let now = marker_of(&main).unwrap();
            assert!(!seen.contains(&now), "each token write gives a new marker");
            seen.push(now);
        }
        // A database restored over the old one is another file.
        let last = marker_of(&main).unwrap();
        let restored = dir.path().join("restored");
        std::fs::write(&restored, b"main").unwrap();
        std::fs::rename(&restored, &main).unwrap();
        assert_ne!(marker_of(&main).unwrap(), last);
    }

    #[test]
    fn a_mark_that_cannot_be_read_gives_no_marker() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("db.sqlite");
        std::fs::write(&main, b"main").unwrap();
        std::fs::create_dir(tokens_file(&main)).unwrap();
        assert_eq!(marker_of(&main), None);
    }

    /// Root writing first (a CLI command run with sudo) leaves a mark the database's owner, the
    /// service's user, can read and rewrite.
    #[test]
    fn the_mark_is_owned_like_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("db.sqlite");
        std::fs::write(&main, b"main").unwrap();
        let owner = if std::os::unix::fs::chown(&main, Some(4242), Some(4243)).is_ok() {
            (4242, 4243)
        } else {
            // Not root: the database is ours, and so is the mark.
            let meta = std::fs::metadata(&main).unwrap();
            (meta.uid(), meta.gid())
        };
        mark_tokens_changed(&main);
        let mark = std::fs::metadata(tokens_file(&main)).unwrap();
        assert_eq!((mark.uid(), mark.gid()), owner);
        assert!(marker_of(&main).unwrap().tokens.is_some());
    }
}
