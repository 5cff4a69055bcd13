//! Durable file writes for a batch of deliveries to a maildir: every new file is written to a
//! temporary folder, all of them are flushed to disk together, then renamed into place in order,
//! and the target folder is flushed once for the whole batch.
//!
//! Flushing the batch's files from a few threads at once lets the filesystem commit them in a
//! few journal transactions instead of one per file; the single folder flush at the end makes
//! every rename (and any rename an earlier, interrupted run left unflushed) durable.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;

/// Threads that flush one batch's files.
const SYNC_THREADS: usize = 8;

/// One file of a batch: its name in the target folder, and its bytes, or `None` when a file of
/// that name is already there (written by an earlier run) and is kept as it is.
pub(crate) type Item<'a> = (&'a str, Option<&'a [u8]>);

/// Writes `items` into `dir` (through `tmp_dir`, on the same filesystem), in order.
///
/// `Ok` means every item is durable. `Err((i, e))` means items before `i` are durable and
/// item `i` failed with `e`; items after `i` were not written (their temporary files are
/// removed). A failed flush of `dir` itself fails the whole batch (`i` is 0). Blocking: call it
/// from a blocking thread.
pub(crate) fn write_durably(
    dir: &Path,
    tmp_dir: &Path,
    items: &[Item<'_>],
) -> Result<(), (usize, std::io::Error)> {
    let pid = std::process::id();
    let mut failure: Option<(usize, std::io::Error)> = None;
    let mut written = Vec::new();
    for (index, (name, bytes)) in items.iter().enumerate() {
        let Some(bytes) = bytes else { continue };
        let tmp = tmp_dir.join(format!("{name}.{pid}.tmp"));
        match create_with(&tmp, bytes) {
            Ok(file) => written.push((index, tmp, file)),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                failure = Some((index, e));
                break;
            }
        }
    }
    let files: Vec<&File> = written.iter().map(|(_, _, file)| file).collect();
    if let Some((position, e)) = sync_data_all(&files)
        .into_iter()
        .enumerate()
        .find_map(|(position, r)| r.err().map(|e| (position, e)))
    {
        // Written in order, so this item comes before any write failure.
        failure = Some((written[position].0, e));
    }
    for (index, tmp, file) in written {
        drop(file);
        if failure.as_ref().is_some_and(|(failed, _)| index >= *failed) {
            let _ = std::fs::remove_file(&tmp);
            continue;
        }
        if let Err(e) = std::fs::rename(&tmp, dir.join(items[index].0)) {
            let _ = std::fs::remove_file(&tmp);
            failure = Some((index, e));
        }
    }
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        return Err((0, e));
    }
    failure.map_or(Ok(()), Err)
}

/// Creates `path` (owner-only) holding `bytes`.
fn create_with(path: &Path, bytes: &[u8]) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(file)
}

/// `fdatasync` on every file (data and what is needed to read it back, such as the size), from
/// up to [`SYNC_THREADS`] threads; one result per file, in order.
fn sync_data_all(files: &[&File]) -> Vec<std::io::Result<()>> {
    if files.len() < 2 {
        return files.iter().map(|f| f.sync_data()).collect();
    }
    let per_thread = files.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || chunk.iter().map(|f| f.sync_data()).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("fdatasync does not panic"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_new_files_and_keeps_existing_ones() {
        let root = tempfile::tempdir().unwrap();
        let (dir, tmp) = (root.path().join("new"), root.path().join("tmp"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(dir.join("b"), b"earlier").unwrap();
        let items: Vec<Item<'_>> = vec![("a", Some(b"one")), ("b", None), ("c", Some(b"three"))];
        write_durably(&dir, &tmp, &items).unwrap();
        assert_eq!(names(&dir), ["a", "b", "c"]);
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"one");
        assert_eq!(std::fs::read(dir.join("b")).unwrap(), b"earlier");
        assert!(names(&tmp).is_empty(), "no temporary file is left");
    }

    #[test]
    fn a_failed_write_keeps_what_came_before_and_nothing_after() {
        let root = tempfile::tempdir().unwrap();
        let (dir, tmp) = (root.path().join("new"), root.path().join("tmp"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        // A name the temporary folder cannot hold (a sub-folder that does not exist).
        let items: Vec<Item<'_>> = vec![
            ("a", Some(b"one")),
            ("missing/b", Some(b"two")),
            ("c", Some(b"three")),
        ];
        let (failed, _) = write_durably(&dir, &tmp, &items).unwrap_err();
        assert_eq!(failed, 1);
        assert_eq!(names(&dir), ["a"]);
        assert!(names(&tmp).is_empty());
    }

    #[test]
    fn a_missing_target_folder_fails_the_whole_batch() {
        let root = tempfile::tempdir().unwrap();
        let tmp = root.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let items: Vec<Item<'_>> = vec![("a", None)];
        let (failed, _) = write_durably(&root.path().join("gone"), &tmp, &items).unwrap_err();
        assert_eq!(failed, 0);
    }
}
