//! The tools oauthimap is compared with: getmail6 and the raw `UID FETCH` stream, plus counting
//! what a maildir received.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

/// Where getmail6 should log in and deliver.
#[derive(Debug)]
pub struct GetmailConfig<'a> {
    pub port: u16,
    pub user: &'a str,
    pub ca_file: &'a Path,
    pub oauthimap: &'a Path,
    pub maildir: &'a Path,
}

/// A getmail6 rc file using its documented OAuth2 options: `use_xoauth2 = True` and a
/// `password_command` that prints the access token (`oauthimap token USER`).
///
/// `SimpleIMAPSSLRetriever` over implicit TLS, trusting the fixture's CA through `ca_certs`
/// (getmail6 verifies the chain; like `ssl.wrap_socket` it does not check the host name).
/// `read_all = false` remembers what it fetched (a first run fetches every message once). To do
/// the same server-side work as oauthimap's mark-seen post-action, `delete = true` with
/// `imap_on_delete = (\Seen)`: getmail6's documented way to flag instead of delete (its
/// "delete" is then one `UID STORE n FLAGS (\Seen)` per message and nothing is expunged; with
/// `delete = false` it opens the folder read-only and cannot mark anything). `verbose = 0`: no line per message. getmail6 refuses to
/// deliver as root, so the maildir belongs to `nobody` and the destination says `user = nobody`
/// (getmail forks a delivery child per message either way).
pub fn getmail_rc(c: &GetmailConfig<'_>) -> String {
    let mut rc = String::new();
    let _ = write!(
        rc,
        "[retriever]\n\
         type = SimpleIMAPSSLRetriever\n\
         server = 127.0.0.1\n\
         port = {}\n\
         username = {}\n\
         use_xoauth2 = True\n\
         password_command = (\"{}\", \"token\", \"{}\")\n\
         ca_certs = {}\n\
         mailboxes = (\"INBOX\",)\n\
         imap_on_delete = (\\Seen)\n\
         \n\
         [destination]\n\
         type = Maildir\n\
         path = {}/\n\
         user = nobody\n\
         \n\
         [options]\n\
         verbose = 0\n\
         read_all = false\n\
         delete = true\n",
        c.port,
        c.user,
        c.oauthimap.display(),
        c.user,
        c.ca_file.display(),
        c.maildir.display(),
    );
    rc
}

/// Creates an empty maildir (`tmp`, `new`, `cur`) owned by `nobody` (65534).
pub fn make_nobody_maildir(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root)?;
    std::os::unix::fs::chown(root, Some(65534), Some(65534))?;
    for sub in ["tmp", "new", "cur"] {
        let dir = root.join(sub);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534))?;
    }
    Ok(())
}

/// Files and bytes in a maildir's `new/` and `cur/`.
pub fn maildir_contents(root: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for sub in ["new", "cur"] {
        let dir = root.join(sub);
        if !dir.exists() {
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            let meta = entry?.metadata()?;
            if meta.is_file() {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rc_names_the_oauth_options() {
        let rc = getmail_rc(&GetmailConfig {
            port: 993,
            user: "u@example.com",
            ca_file: Path::new("/ca.pem"),
            oauthimap: Path::new("/bin/oauthimap"),
            maildir: Path::new("/m"),
        });
        assert!(rc.contains("use_xoauth2 = True"));
        assert!(
            rc.contains("password_command = (\"/bin/oauthimap\", \"token\", \"u@example.com\")")
        );
        assert!(rc.contains("path = /m/\n"));
    }
}
