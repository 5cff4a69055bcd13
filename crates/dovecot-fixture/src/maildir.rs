//! Seeds mail by writing Maildir++ files directly, the way a local delivery agent would: CRLF line
//! ends (so `BODY[]` returns exactly the stored bytes), unique names, written in `tmp/` then renamed
//! into `new/` (unseen, `\Recent`) or `cur/` (with flags), owned by the mail uid/gid.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::FixtureError;

/// A system flag that can be stored in a maildir file name (`:2,<letters>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flag {
    /// `\Draft` (maildir `D`).
    Draft,
    /// `\Flagged` (maildir `F`).
    Flagged,
    /// `\Answered` (maildir `R`).
    Answered,
    /// `\Seen` (maildir `S`).
    Seen,
    /// `\Deleted` (maildir `T`).
    Deleted,
}

impl Flag {
    /// The maildir info letter.
    pub fn maildir_letter(self) -> char {
        match self {
            Flag::Draft => 'D',
            Flag::Flagged => 'F',
            Flag::Answered => 'R',
            Flag::Seen => 'S',
            Flag::Deleted => 'T',
        }
    }

    /// The IMAP system flag, e.g. `\Seen`.
    pub fn imap_name(self) -> &'static str {
        match self {
            Flag::Draft => r"\Draft",
            Flag::Flagged => r"\Flagged",
            Flag::Answered => r"\Answered",
            Flag::Seen => r"\Seen",
            Flag::Deleted => r"\Deleted",
        }
    }
}

/// Where a seeded message was written and its size as the server will report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The maildir file.
    pub path: PathBuf,
    /// The stored (CRLF-normalised) bytes, identical to what `BODY[]` returns.
    pub bytes: Vec<u8>,
}

/// Turns every bare LF into CRLF; existing CRLF pairs are kept.
pub fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// Ownership and location of the mail tree of one instance.
#[derive(Debug, Clone)]
pub(crate) struct MailTree {
    pub mail_root: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

impl MailTree {
    /// Dovecot's `%u` after `auth_username_format = %Lu`: the user lowercased.
    fn home(&self, user: &str) -> Result<PathBuf, FixtureError> {
        if user.is_empty() || user.contains('/') || user.starts_with('.') {
            return Err(FixtureError::Invalid {
                what: format!("user {user:?}"),
                why: "not a plain mailbox name".into(),
            });
        }
        Ok(self.mail_root.join(user.to_lowercase()))
    }

    /// The maildir of `folder` ("INBOX" is the root; others are Maildir++ `.Name` directories).
    fn folder_dir(&self, user: &str, folder: &str) -> Result<PathBuf, FixtureError> {
        let maildir = self.home(user)?.join("Maildir");
        if folder.eq_ignore_ascii_case("INBOX") {
            return Ok(maildir);
        }
        let valid = !folder.is_empty()
            && folder.chars().all(|c| c.is_ascii_graphic() || c == ' ')
            && !folder.contains(['/', '&', '*', '%'])
            && !folder.starts_with('.')
            && !folder.ends_with('.')
            && !folder.contains("..");
        if !valid {
            return Err(FixtureError::Invalid {
                what: format!("folder {folder:?}"),
                why: "the maildir writer takes printable ASCII names without / & * % (use '.' between levels, \
                      or create_folder over IMAP)"
                    .into(),
            });
        }
        Ok(maildir.join(format!(".{folder}")))
    }

    fn make_dir(&self, dir: &Path) -> Result<(), FixtureError> {
        if !dir.exists() {
            fs::create_dir(dir).map_err(FixtureError::io(format!("create {}", dir.display())))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(FixtureError::io(format!("chmod {}", dir.display())))?;
            chown(dir, Some(self.uid), Some(self.gid))
                .map_err(FixtureError::io(format!("chown {}", dir.display())))?;
        }
        Ok(())
    }

    /// Creates home, `Maildir` and the folder's `cur/new/tmp`, all owned by the mail user.
    fn ensure_folder(&self, user: &str, folder: &str) -> Result<PathBuf, FixtureError> {
        let home = self.home(user)?;
        let maildir = home.join("Maildir");
        let dir = self.folder_dir(user, folder)?;
        self.make_dir(&home)?;
        self.make_dir(&maildir)?;
        for sub in ["cur", "new", "tmp"] {
            self.make_dir(&maildir.join(sub))?;
        }
        if dir != maildir {
            self.make_dir(&dir)?;
            for sub in ["cur", "new", "tmp"] {
                self.make_dir(&dir.join(sub))?;
            }
            let marker = dir.join("maildirfolder");
            if !marker.exists() {
                self.write_owned(&marker, b"")?;
            }
        }
        Ok(dir)
    }

    fn write_owned(&self, path: &Path, bytes: &[u8]) -> Result<(), FixtureError> {
        fs::write(path, bytes).map_err(FixtureError::io(format!("write {}", path.display())))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(FixtureError::io(format!("chmod {}", path.display())))?;
        chown(path, Some(self.uid), Some(self.gid))
            .map_err(FixtureError::io(format!("chown {}", path.display())))
    }

    /// Writes one message. No flags: into `new/` (the server shows it `\Recent`, unseen). With
    /// flags: into `cur/` with a `:2,<letters>` suffix.
    pub fn deliver(
        &self,
        user: &str,
        folder: &str,
        raw: &[u8],
        flags: &[Flag],
    ) -> Result<Delivered, FixtureError> {
        let dir = self.ensure_folder(user, folder)?;
        let bytes = crlf(raw);
        let base = unique_name(bytes.len());
        let tmp = dir.join("tmp").join(&base);
        self.write_owned(&tmp, &bytes)?;
        let path = if flags.is_empty() {
            dir.join("new").join(&base)
        } else {
            let mut letters: Vec<char> = flags.iter().map(|f| f.maildir_letter()).collect();
            letters.sort_unstable();
            letters.dedup();
            dir.join("cur").join(format!(
                "{base}:2,{}",
                letters.into_iter().collect::<String>()
            ))
        };
        fs::rename(&tmp, &path).map_err(FixtureError::io(format!(
            "move {} into place",
            tmp.display()
        )))?;
        Ok(Delivered { path, bytes })
    }
}

/// `<secs>.M<micros>P<pid>Q<n>.oauthimap-fixture,S=<size>,W=<size>`: unique within a host (per
/// process counter + pid + time). `S=` (bytes on disk) and `W=` (RFC822.SIZE, with CRLF line
/// ends) are what Dovecot's own delivery writes, so that it answers sizes without reading the
/// files; the bytes are CRLF already, so both are the same.
fn unique_name(size: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.M{}P{}Q{n}.oauthimap-fixture,S={size},W={size}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_known_answers() {
        assert_eq!(crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n".to_vec());
        assert_eq!(crlf(b"\r\n\n"), b"\r\n\r\n".to_vec());
        assert_eq!(crlf(b"no newline"), b"no newline".to_vec());
        let once = crlf(b"x\ny\n");
        assert_eq!(crlf(&once), once, "idempotent");
    }

    #[test]
    fn unique_names_differ_and_carry_the_size() {
        let a = unique_name(10);
        let b = unique_name(10);
        assert_ne!(a, b);
        assert!(a.ends_with(",S=10,W=10"));
    }

    #[test]
    fn folder_names_map_to_maildir_plus_plus() {
        let tree = MailTree {
            mail_root: PathBuf::from("/m"),
            uid: 1,
            gid: 1,
        };
        assert_eq!(
            tree.folder_dir("Alice@Example.com", "INBOX")
                .expect("inbox"),
            PathBuf::from("/m/alice@example.com/Maildir")
        );
        assert_eq!(
            tree.folder_dir("a@b", "Archive.2024").expect("nested"),
            PathBuf::from("/m/a@b/Maildir/.Archive.2024")
        );
        assert!(tree.folder_dir("a@b", "../x").is_err());
        assert!(tree.folder_dir("a@b", "A/B").is_err());
        assert!(tree.folder_dir("../a", "INBOX").is_err());
    }

    #[test]
    fn flags_sort_into_maildir_order() {
        let mut flags = [Flag::Seen, Flag::Draft, Flag::Answered];
        flags.sort_unstable();
        let letters: String = flags.iter().map(|f| f.maildir_letter()).collect();
        assert_eq!(letters, "DRS");
    }
}
