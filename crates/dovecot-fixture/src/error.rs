//! The one error type of the fixture: every message says what could not be done and, where it
//! helps, how to fix it or what Dovecot logged.

use std::io;
use std::path::PathBuf;

/// Why the fixture could not start, stop, seed or inspect its Dovecot.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The Dovecot binary is not installed.
    #[error("Dovecot not found: install dovecot-imapd (scripts/test installs it); looked for {}", path.display())]
    DovecotNotFound {
        /// Where the fixture looked.
        path: PathBuf,
    },

    /// Dovecot must start as root so that it can drop to the login, auth and mail users.
    #[error(
        "cannot start Dovecot: the fixture must run as root (Dovecot switches to the mail user uid {mail_uid})"
    )]
    NotRoot {
        /// The uid mail processes would run as.
        mail_uid: u32,
    },

    /// A file-system or process operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done, e.g. "write the Dovecot config /tmp/x/dovecot.conf".
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The test CA or server certificate could not be generated.
    #[error("cannot generate the test certificate: {0}")]
    Certificate(#[from] rcgen::Error),

    /// Dovecot exited or never greeted on its ports.
    #[error(
        "cannot start Dovecot on 127.0.0.1 ports {imap_port}/{imaps_port}: {reason}\n--- Dovecot log tail ---\n{log_tail}"
    )]
    Start {
        /// Plain (STARTTLS) port.
        imap_port: u16,
        /// Implicit-TLS port.
        imaps_port: u16,
        /// What went wrong.
        reason: String,
        /// The last lines of the instance's log.
        log_tail: String,
    },

    /// The SMTP sink behind submission did not start.
    #[error(
        "cannot start the SMTP sink (python3 with aiosmtpd; scripts/test installs python3-aiosmtpd): {reason}"
    )]
    Sink {
        /// Its stderr.
        reason: String,
    },

    /// The IMAP server answered something the fixture's small client did not expect.
    #[error("cannot {what}: the server answered {answer:?}")]
    Imap {
        /// The IMAP operation, e.g. "select \"Archive\" as alice@example.com".
        what: String,
        /// The offending line (tagged status or unexpected data).
        answer: String,
    },

    /// A caller-supplied value cannot be used (e.g. a folder name the maildir writer does not support).
    #[error("cannot use {what}: {why}")]
    Invalid {
        /// The value.
        what: String,
        /// Why it is refused.
        why: String,
    },
}

impl FixtureError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
