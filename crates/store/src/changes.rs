//! Whether anything was committed to the database since a moment: a cheap test (two `stat`s, no
//! query) for answers kept in memory, such as the token broker's.
//!
//! A SQLite database in WAL mode (ours always is) appends every commit, from any connection or
//! process, to its `-wal` file, so the log grows. When the log restarts from its beginning after
//! a checkpoint, its header gets new salts (and the checkpoint wrote the main file); when it is
//! truncated or replaced, its size or inode changes. The marker holds the sizes, modification
//! times and inodes of both files and the log header's checkpoint number and salts: equal markers
//! mean no commit in between. PostgreSQL has no such files here, so it gets no marker, and
//! answers must come from the database each time.
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::{Db, Store};

/// The state of a SQLite database's files; see the module header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeMarker {
    main: FileStamp,
    wal: Option<(FileStamp, [u8; WAL_HEADER_SALTS])>,
}

/// The WAL header's checkpoint sequence number and its two salts (bytes 12 to 24).
const WAL_HEADER_SALTS: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

impl Store {
    /// The database's [`ChangeMarker`] now: `None` on PostgreSQL, or when the files cannot be
    /// read (then nothing may be taken from memory).
    pub fn change_marker(&self) -> Option<ChangeMarker> {
        let Db::Sqlite(pool) = self.db() else {
            return None;
        };
        let main = pool.connect_options().get_filename().to_owned();
        marker_of(&main)
    }
}

fn marker_of(main: &Path) -> Option<ChangeMarker> {
    let mut wal = PathBuf::from(main.as_os_str());
    wal.as_mut_os_string().push("-wal");
    // The log first: a checkpoint that runs between the two reads changes the main file after
    // the log was read, so the pair still differs from the one taken before the checkpoint.
    let wal = FileStamp::of(&wal).map(|stamp| (stamp, wal_salts(&wal)));
    Some(ChangeMarker {
        main: FileStamp::of(main)?,
        wal,
    })
}

/// The log header's checkpoint number and salts; zeros for a log too short to have a header.
fn wal_salts(wal: &Path) -> [u8; WAL_HEADER_SALTS] {
    use std::os::unix::fs::FileExt as _;
    let mut salts = [0; WAL_HEADER_SALTS];
    if let Ok(file) = std::fs::File::open(wal) {
        let _ = file.read_exact_at(&mut salts, 12);
    }
    salts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_changes_with_every_write_to_either_file() {
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
        let wal = dir.path().join("db.sqlite-wal");
        std::fs::write(&wal, [0u8; 32]).unwrap();
        let with_log = marker_of(&main).unwrap();
        assert_ne!(with_log, before);
        // A log restarted from its beginning: same size, new salts.
        let mut header = [0u8; 32];
        header[16] = 7;
        std::fs::write(&wal, header).unwrap();
        assert_ne!(marker_of(&main).unwrap(), with_log);
    }
}
