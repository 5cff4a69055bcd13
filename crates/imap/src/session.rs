//! The narrow `MailSession` interface the collector uses, and `Session`, its implementation over
//! an authenticated connection. Only what collecting needs: select, fetch sizes, fetch messages
//! in bounded batches, flag, move, delete, create a folder, IDLE, NOOP, LOGOUT. What to fetch and
//! what to do after delivery is the caller's business.
//!
//! A method that is cancelled midway leaves the connection in an unknown state: drop the session
//! then. After any error with `needs_reauthentication()` (or another `SessionEnded`), open a new
//! session with `connect_and_login`.

use std::future::Future;
use std::time::Duration;

use crate::conn::{Conn, TlsInfo};
use crate::error::ImapError;
use crate::login::has;
use crate::names::{UidRange, is_flag_atom, quoted_mailbox, uid_set};
use crate::protocol::{Response, Status};
use crate::sasl::SaslMechanism;

/// A selected folder's identity and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mailbox {
    /// UIDVALIDITY: when it changes, every stored UID of this folder is void.
    pub uid_validity: u32,
    /// UIDNEXT: the UID the next message will get (if the server said).
    pub uid_next: Option<u32>,
    /// Number of messages.
    pub exists: u32,
}

/// A message's UID and size (`RFC822.SIZE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSize {
    /// The UID.
    pub uid: u32,
    /// Size in bytes.
    pub size: u64,
}

/// One fetched message.
#[derive(Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    /// The UID.
    pub uid: u32,
    /// Flags at fetch time (`BODY.PEEK` does not set `\Seen`).
    pub flags: Vec<String>,
    /// `RFC822.SIZE`.
    pub size: u64,
    /// The exact bytes of `BODY[]`.
    pub raw: Vec<u8>,
}

impl std::fmt::Debug for FetchedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedMessage")
            .field("uid", &self.uid)
            .field("flags", &self.flags)
            .field("size", &self.size)
            .field("raw_len", &self.raw.len())
            .finish()
    }
}

/// How an IDLE ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleOutcome {
    /// New messages arrived (`EXISTS` grew or `RECENT`).
    NewData,
    /// Something else changed (expunge, flags).
    Changed,
    /// Nothing happened within the timeout.
    Timeout,
}

/// What the collector needs from an IMAP session. Every method's errors name the server and
/// user; `ImapError::kind` says whether to retry.
pub trait MailSession: Send {
    /// The server's capabilities after login.
    fn capabilities(&self) -> &[String];

    /// `SELECT folder`.
    fn select(&mut self, folder: &str) -> impl Future<Output = Result<Mailbox, ImapError>> + Send;

    /// `UID FETCH range (UID RFC822.SIZE)`: UIDs and sizes without downloading anything, in UID
    /// order, so the caller can refuse oversized messages and plan batches.
    fn fetch_sizes(
        &mut self,
        range: UidRange,
    ) -> impl Future<Output = Result<Vec<MessageSize>, ImapError>> + Send;

    /// `UID FETCH uids (UID FLAGS RFC822.SIZE BODY.PEEK[])` for exactly these UIDs (memory is
    /// bounded by the caller's batch); missing (expunged) UIDs are simply absent. UID order.
    fn fetch_messages(
        &mut self,
        uids: &[u32],
    ) -> impl Future<Output = Result<Vec<FetchedMessage>, ImapError>> + Send;

    /// `UID STORE uids +FLAGS.SILENT (flags)`.
    fn add_flags(
        &mut self,
        uids: &[u32],
        flags: &[&str],
    ) -> impl Future<Output = Result<(), ImapError>> + Send;

    /// Moves messages: `UID MOVE` when offered, else `UID COPY` + `\Deleted` + `UID EXPUNGE`
    /// (UIDPLUS), else `COPY` + `\Deleted` + `EXPUNGE` (which also removes other messages
    /// already marked `\Deleted`).
    fn move_to(
        &mut self,
        uids: &[u32],
        folder: &str,
    ) -> impl Future<Output = Result<(), ImapError>> + Send;

    /// Marks `\Deleted` and expunges (`UID EXPUNGE` with UIDPLUS).
    fn delete(&mut self, uids: &[u32]) -> impl Future<Output = Result<(), ImapError>> + Send;

    /// Creates `folder` unless it exists; `true` if it was created.
    fn create_folder_if_missing(
        &mut self,
        folder: &str,
    ) -> impl Future<Output = Result<bool, ImapError>> + Send;

    /// RFC 2177 IDLE on the selected folder for at most `timeout` (keep it below the server's
    /// 29-minute limit and re-issue).
    fn idle(
        &mut self,
        timeout: Duration,
    ) -> impl Future<Output = Result<IdleOutcome, ImapError>> + Send;

    /// `NOOP` (keeps the session alive, lets the server report changes).
    fn noop(&mut self) -> impl Future<Output = Result<(), ImapError>> + Send;

    /// `LOGOUT` and close the connection.
    fn logout(self) -> impl Future<Output = Result<(), ImapError>> + Send
    where
        Self: Sized;
}

/// An authenticated IMAP session.
#[derive(Debug)]
pub struct Session {
    conn: Conn,
    capabilities: Vec<String>,
    mechanism: SaslMechanism,
    tls: Option<TlsInfo>,
    /// Message count of the selected folder, kept current from untagged responses.
    exists: Option<u32>,
}

impl Session {
    pub(crate) fn new(
        conn: Conn,
        capabilities: Vec<String>,
        mechanism: SaslMechanism,
        tls: Option<TlsInfo>,
    ) -> Self {
        Self {
            conn,
            capabilities,
            mechanism,
            tls,
            exists: None,
        }
    }

    /// Hands the authenticated connection over for relaying bytes as they are (the gateway):
    /// the stream, and bytes the server already sent that were not read yet.
    pub fn into_relay(self) -> Result<(crate::conn::RawStream, Vec<u8>), ImapError> {
        let target = self.conn.target.clone();
        self.conn.into_raw().ok_or(ImapError::Io {
            target,
            action: "hand the session over".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotConnected),
        })
    }

    /// The mechanism the session logged in with.
    pub fn mechanism(&self) -> SaslMechanism {
        self.mechanism
    }

    /// TLS version, cipher and certificate names (`None` for plain IMAP).
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    fn folder_arg(&self, folder: &str, action: &str) -> Result<String, ImapError> {
        quoted_mailbox(folder).ok_or_else(|| {
            self.invalid(action, "the folder name is empty or has control characters")
        })
    }

    fn invalid(&self, action: &str, reason: &str) -> ImapError {
        ImapError::InvalidArgument {
            target: self.conn.target.clone(),
            action: action.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn track(exists: &mut Option<u32>, response: &Response) {
        match response {
            Response::Exists(n) => *exists = Some(*n),
            Response::Expunge(_) => *exists = exists.map(|n| n.saturating_sub(1)),
            _ => {}
        }
    }

    /// `UID STORE set +FLAGS.SILENT (\Deleted)` then the best expunge the server offers.
    async fn mark_deleted_and_expunge(&mut self, set: &str, action: &str) -> Result<(), ImapError> {
        let exists = &mut self.exists;
        self.conn
            .command_ok(
                &format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"),
                action,
                |r| {
                    Self::track(exists, &r);
                },
            )
            .await?;
        let expunge = if has(&self.capabilities, "UIDPLUS") {
            format!("UID EXPUNGE {set}")
        } else {
            "EXPUNGE".to_owned()
        };
        self.conn
            .command_ok(&expunge, action, |r| Self::track(exists, &r))
            .await?;
        Ok(())
    }
}

impl MailSession for Session {
    fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    async fn select(&mut self, folder: &str) -> Result<Mailbox, ImapError> {
        let action = format!("select {folder}");
        let arg = self.folder_arg(folder, &action)?;
        let (mut uid_validity, mut uid_next, mut exists) = (None, None, 0);
        self.exists = None;
        self.conn
            .command_ok(&format!("SELECT {arg}"), &action, |r| match r {
                Response::Exists(n) => exists = n,
                Response::Status(s) if s.status == Status::Ok => match s.code_name().as_deref() {
                    Some("UIDVALIDITY") => uid_validity = s.code_args().parse().ok(),
                    Some("UIDNEXT") => uid_next = s.code_args().parse().ok(),
                    _ => {}
                },
                _ => {}
            })
            .await?;
        let uid_validity = uid_validity.ok_or_else(|| {
            self.invalid(
                &action,
                "the server sent no UIDVALIDITY, so UIDs cannot be trusted",
            )
        })?;
        self.exists = Some(exists);
        Ok(Mailbox {
            uid_validity,
            uid_next,
            exists,
        })
    }

    async fn fetch_sizes(&mut self, range: UidRange) -> Result<Vec<MessageSize>, ImapError> {
        let action = format!("fetch message sizes ({range})");
        let mut sizes = Vec::new();
        let exists = &mut self.exists;
        self.conn
            .command_ok(
                &format!("UID FETCH {range} (UID RFC822.SIZE)"),
                &action,
                |r| {
                    Self::track(exists, &r);
                    if let Response::Fetch { data, .. } = r
                        && let (Some(uid), Some(size)) = (data.uid, data.size)
                        && range.contains(uid)
                    {
                        sizes.push(MessageSize { uid, size });
                    }
                },
            )
            .await?;
        sizes.sort_by_key(|m| m.uid);
        sizes.dedup_by_key(|m| m.uid);
        Ok(sizes)
    }

    async fn fetch_messages(&mut self, uids: &[u32]) -> Result<Vec<FetchedMessage>, ImapError> {
        let Some(set) = uid_set(uids) else {
            return Ok(Vec::new());
        };
        let action = format!("fetch messages {set}");
        let mut messages = Vec::with_capacity(uids.len());
        let exists = &mut self.exists;
        self.conn
            .command_ok(
                &format!("UID FETCH {set} (UID FLAGS RFC822.SIZE BODY.PEEK[])"),
                &action,
                |r| {
                    Self::track(exists, &r);
                    if let Response::Fetch { data, .. } = r
                        && let (Some(uid), Some(raw)) = (data.uid, data.body)
                        && uids.contains(&uid)
                    {
                        messages.push(FetchedMessage {
                            uid,
                            flags: data.flags.unwrap_or_default(),
                            size: data.size.unwrap_or(raw.len() as u64),
                            raw,
                        });
                    }
                },
            )
            .await?;
        messages.sort_by_key(|m| m.uid);
        Ok(messages)
    }

    async fn add_flags(&mut self, uids: &[u32], flags: &[&str]) -> Result<(), ImapError> {
        let Some(set) = uid_set(uids) else {
            return Ok(());
        };
        let action = format!("add flags {} to {set}", flags.join(" "));
        if flags.is_empty() {
            return Ok(());
        }
        if let Some(bad) = flags.iter().find(|f| !is_flag_atom(f)) {
            return Err(self.invalid(&action, &format!("{bad:?} is not a valid flag")));
        }
        let exists = &mut self.exists;
        self.conn
            .command_ok(
                &format!("UID STORE {set} +FLAGS.SILENT ({})", flags.join(" ")),
                &action,
                |r| Self::track(exists, &r),
            )
            .await?;
        Ok(())
    }

    async fn move_to(&mut self, uids: &[u32], folder: &str) -> Result<(), ImapError> {
        let Some(set) = uid_set(uids) else {
            return Ok(());
        };
        let action = format!("move {set} to {folder}");
        let arg = self.folder_arg(folder, &action)?;
        let exists = &mut self.exists;
        if has(&self.capabilities, "MOVE") {
            self.conn
                .command_ok(&format!("UID MOVE {set} {arg}"), &action, |r| {
                    Self::track(exists, &r);
                })
                .await?;
            return Ok(());
        }
        self.conn
            .command_ok(&format!("UID COPY {set} {arg}"), &action, |r| {
                Self::track(exists, &r);
            })
            .await?;
        self.mark_deleted_and_expunge(&set, &action).await
    }

    async fn delete(&mut self, uids: &[u32]) -> Result<(), ImapError> {
        let Some(set) = uid_set(uids) else {
            return Ok(());
        };
        let action = format!("delete {set}");
        self.mark_deleted_and_expunge(&set, &action).await
    }

    async fn create_folder_if_missing(&mut self, folder: &str) -> Result<bool, ImapError> {
        let action = format!("create folder {folder}");
        let arg = self.folder_arg(folder, &action)?;
        let wanted = crate::names::encode_mailbox_name(folder);
        let mut found = false;
        self.conn
            .command_ok(&format!("LIST \"\" {arg}"), &action, |r| {
                if let Response::List(name) = r {
                    found |= name == wanted
                        || (name.eq_ignore_ascii_case("INBOX")
                            && wanted.eq_ignore_ascii_case("INBOX"));
                }
            })
            .await?;
        if found {
            return Ok(false);
        }
        let status = self
            .conn
            .command_with(&format!("CREATE {arg}"), &action, |_| {})
            .await?;
        match status.status {
            Status::Ok => Ok(true),
            _ if status.code_name().as_deref() == Some("ALREADYEXISTS") => Ok(false),
            _ => Err(self.conn.failed(&action, &status)),
        }
    }

    async fn idle(&mut self, timeout: Duration) -> Result<IdleOutcome, ImapError> {
        let action = "idle";
        if !has(&self.capabilities, "IDLE") {
            return Err(self.invalid(action, "the server does not offer IDLE; poll instead"));
        }
        let tag = self.conn.tag();
        self.conn
            .send_line(&format!("{tag} IDLE"), false, action)
            .await?;
        let mut outcome = None;
        let classify = |r: &Response, exists: &mut Option<u32>| -> Option<IdleOutcome> {
            let before = *exists;
            Self::track(exists, r);
            match r {
                Response::Exists(n) if before.is_none_or(|b| *n > b) => Some(IdleOutcome::NewData),
                Response::Recent(n) if *n > 0 => Some(IdleOutcome::NewData),
                Response::Exists(_)
                | Response::Recent(_)
                | Response::Expunge(_)
                | Response::Fetch { .. } => Some(IdleOutcome::Changed),
                _ => None,
            }
        };
        // Wait for the continuation (untagged data may come first).
        loop {
            match self.conn.read(action).await? {
                Response::Continuation(_) => break,
                Response::Tagged { tag: t, status } if t == tag => {
                    return Err(self.conn.failed(action, &status));
                }
                Response::Status(s) if s.status == Status::Bye => {
                    return Err(self.conn.bye(action, &s));
                }
                other => outcome = outcome.or(classify(&other, &mut self.exists)),
            }
        }
        let deadline = crate::conn::deadline_after(timeout);
        while outcome.is_none() {
            match self.conn.read_until(action, Some(deadline)).await? {
                None => outcome = Some(IdleOutcome::Timeout),
                Some(Response::Status(s)) if s.status == Status::Bye => {
                    return Err(self.conn.bye(action, &s));
                }
                Some(other) => outcome = classify(&other, &mut self.exists),
            }
        }
        self.conn.send_line("DONE", false, action).await?;
        loop {
            match self.conn.read(action).await? {
                Response::Tagged { tag: t, status } if t == tag => {
                    if status.status != Status::Ok {
                        return Err(self.conn.failed(action, &status));
                    }
                    break;
                }
                Response::Status(s) if s.status == Status::Bye => {
                    return Err(self.conn.bye(action, &s));
                }
                other => {
                    let _ = classify(&other, &mut self.exists);
                }
            }
        }
        Ok(outcome.unwrap_or(IdleOutcome::Timeout))
    }

    async fn noop(&mut self) -> Result<(), ImapError> {
        let exists = &mut self.exists;
        self.conn
            .command_ok("NOOP", "noop", |r| Self::track(exists, &r))
            .await?;
        Ok(())
    }

    async fn logout(mut self) -> Result<(), ImapError> {
        let tag = self.conn.tag();
        let result = async {
            self.conn
                .send_line(&format!("{tag} LOGOUT"), false, "log out")
                .await?;
            let mut bye = false;
            loop {
                match self.conn.read("log out").await {
                    Ok(Response::Tagged { tag: t, .. }) if t == tag => return Ok(()),
                    Ok(Response::Status(s)) if s.status == Status::Bye => bye = true,
                    Ok(_) => {}
                    // Some servers close right after their BYE.
                    Err(_) if bye => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        }
        .await;
        self.conn.shutdown().await;
        result
    }
}
