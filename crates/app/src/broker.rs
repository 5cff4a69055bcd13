//! The token broker's doors besides the REST API: a Unix socket `serve` listens on, so that
//! `oauthimap token` (a password command for msmtp, mutt, getmail…) gets its answer from the
//! running service in about a millisecond without opening the database or the key; and the
//! client of `oauthimap token --server`, which asks a remote service's REST API.
//!
//! The socket speaks one JSON line each way ([`TokenRequest`], [`TokenReply`]). The peer's
//! credentials (uid, primary and supplementary groups) are checked against `[broker]` before its
//! answer is made: root and the service's own user always, others only when listed.
//!
//! One thread accepts the connections and answers those it can from memory at once (the
//! everyday case: a password command asking for a token it asked for a minute ago), as pizauth
//! does: no task to wake, no hop between threads. Anything else (a refresh to make, a peer to
//! refuse, a request that is slow to come or malformed) goes to a task on the service's runtime.

use std::io::{BufRead as _, Read as _, Write as _};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::io::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{Shutdown, getsockopt, sockopt::PeerCredentials};
use oauthimap_types::Mechanism;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

use oauthimap_store::ChangeMarker;

use crate::{AccountSelector, AppError, Core, Result};

/// The longest request line the socket reads.
const MAX_REQUEST: u64 = 8 * 1024;
/// How long a peer may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the accepting thread waits for a request before it hands the connection to a task
/// (`oauthimap token` writes its request as soon as it is connected): the longest a slow peer
/// can hold up the peers behind it.
const QUICK_READ: Duration = Duration::from_millis(50);

/// One question to the broker: `oauthimap token`'s arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Account id or mailbox.
    pub account: String,
    /// The application, when the mailbox is authorized in several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// A new token even if the current one is still valid.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// The SASL initial response instead of the bare token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<Mechanism>,
    /// OAUTHBEARER only: the server it binds to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// The broker's answer: the value to print, or why not.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenReply {
    /// The access token, or the SASL string when one was asked for.
    Token(String),
    /// No token; `user_error` tells the caller's mistakes (exit 2) from failures (exit 1).
    Refused {
        code: String,
        message: String,
        user_error: bool,
    },
}

impl std::fmt::Debug for TokenReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenReply::Token(_) => f.write_str("Token([redacted])"),
            TokenReply::Refused { code, message, .. } => {
                write!(f, "Refused({code}: {message})")
            }
        }
    }
}

impl TokenReply {
    fn refused(code: &str, message: impl Into<String>, user_error: bool) -> Self {
        TokenReply::Refused {
            code: code.to_owned(),
            message: message.into(),
            user_error,
        }
    }

    fn from_error(e: &AppError) -> Self {
        let code = match e {
            AppError::NotFound { .. } => "not_found",
            AppError::Token(t) if t.kind == oauthimap_types::FailureKind::Permanent => {
                "needs_reauth"
            }
            AppError::Token(_) => "temporarily_unavailable",
            e if e.is_user_error() => "invalid",
            _ => "internal",
        };
        Self::refused(code, e.to_string(), e.is_user_error())
    }
}

impl Core {
    /// What `oauthimap token` prints: a valid access token (refreshed when due, or when
    /// `force`d; one refresh however many ask at once), or the SASL initial response.
    pub async fn token_for(&self, request: &TokenRequest) -> Result<SecretString> {
        Ok(self.token_answer(request).await?.0)
    }

    /// [`Core::token_for`] with the access token's expiry (epoch ms).
    async fn token_answer(&self, request: &TokenRequest) -> Result<(SecretString, i64)> {
        let selector = AccountSelector::new(request.account.clone(), request.app.clone());
        let (account, token) = self.account_token(&selector, request.force).await?;
        if let Some(mechanism) = request.sasl {
            let server = request.host.clone().zip(request.port);
            let sasl = self
                .sasl_response(&account, &token, mechanism, server)
                .await?;
            return Ok((sasl, token.expires_at));
        }
        Ok((token.secret, token.expires_at))
    }

    /// The answer in the broker's memory, when the same question was answered since the last
    /// commit to the database (see [`Memory`]); never for `--force`.
    fn recalled_token(&self, memory: &Memory, request: &TokenRequest) -> Option<SecretString> {
        if request.force {
            return None;
        }
        memory.recall(request, self.store().change_marker())
    }

    /// The broker's answer: from its memory when the same question was answered since the last
    /// commit to the database (see [`Memory`]), else from the database.
    async fn remembered_token(
        &self,
        memory: &Memory,
        request: &TokenRequest,
    ) -> Result<SecretString> {
        let margin_ms = i64::try_from(self.settings().tokens.refresh_margin_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        // Taken before the database is read: a commit while this answer is made changes the
        // marker, so the answer is not used again.
        let marker = self.store().change_marker();
        if !request.force
            && let Some(value) = memory.recall(request, marker)
        {
            count_answer("memory");
            return Ok(value);
        }
        count_answer("database");
        let (value, expires_at) = self.token_answer(request).await?;
        if let Some(marker) = marker {
            memory.keep(
                request,
                &value,
                expires_at.saturating_sub(margin_ms),
                marker,
            );
        }
        Ok(value)
    }

    /// Binds the broker's socket (`broker.socket`, mode 0660, group `broker.group`), or `None`
    /// when `broker.enabled` is false. A stale socket file is replaced; one another running
    /// service answers on is not.
    pub fn bind_broker(&self) -> Result<Option<Broker>> {
        let settings = &self.settings().broker;
        if !settings.enabled {
            return Ok(None);
        }
        let path = self.settings().broker_socket();
        let group = settings.group.as_deref().map(group_id).transpose()?;
        let mut gids = settings.allowed_gids.clone();
        gids.extend(group);
        clear_stale(&path)?;
        let io = |action: &str, source| AppError::Io {
            action: format!(
                "{action} the token broker socket {} (broker.socket)",
                path.display()
            ),
            source,
        };
        let listener =
            std::os::unix::net::UnixListener::bind(&path).map_err(|e| io("listen on", e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| io("set the mode of", e))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(&path, None, Some(gid))
                .map_err(|e| io("give broker.group to", e))?;
        }
        Ok(Some(Broker {
            listener,
            path,
            app: self.clone(),
            allowed: Allowed {
                own_uid: rustix::process::geteuid().as_raw(),
                uids: settings.allowed_uids.clone(),
                gids,
            },
            memory: Memory::default(),
        }))
    }
}

/// A bound broker socket; [`Broker::answer`] answers on it until told to stop.
#[derive(Debug)]
pub struct Broker {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    app: Core,
    allowed: Allowed,
    memory: Memory,
}

impl Broker {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers until `stop`, then removes the socket file: the accepting thread answers what it
    /// can from memory, tasks on the current runtime the rest.
    pub async fn answer(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Broker {
            listener,
            path,
            app,
            allowed,
            memory,
        } = self;
        let door = Door {
            app,
            allowed,
            memory,
            runtime: tokio::runtime::Handle::current(),
        };
        let stopping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = listener.try_clone().and_then(|waker| {
            let acceptor = std::thread::Builder::new()
                .name("token-broker".to_owned())
                .spawn({
                    let stopping = stopping.clone();
                    move || door.accept(&listener, &stopping)
                })?;
            Ok((waker, acceptor))
        });
        match started {
            Ok((waker, acceptor)) => {
                let _ = stop.wait_for(|s| *s).await;
                stopping.store(true, std::sync::atomic::Ordering::SeqCst);
                // A listening socket shut down makes the blocked accept() return (EINVAL).
                let _ = nix::sys::socket::shutdown(waker.as_raw_fd(), Shutdown::Both);
                let _ = tokio::task::spawn_blocking(move || acceptor.join()).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "the token broker cannot start its thread: `oauthimap token` will open the database");
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// What the accepting thread needs to answer, or to hand a connection to a task.
struct Door {
    app: Core,
    allowed: Allowed,
    memory: Memory,
    runtime: tokio::runtime::Handle,
}

/// What the accepting thread did with a connection.
enum Quick {
    Answered,
    /// Left to a task, with the bytes already read from it.
    Pass(Vec<u8>),
}

impl Door {
    fn accept(
        &self,
        listener: &std::os::unix::net::UnixListener,
        stopping: &std::sync::atomic::AtomicBool,
    ) {
        loop {
            let accepted = listener.accept();
            if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            match accepted {
                Ok((stream, _)) => self.take(stream),
                Err(e) => {
                    tracing::warn!(error = %e, "the token broker could not accept a connection");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn take(&self, stream: std::os::unix::net::UnixStream) {
        let admitted = getsockopt(&stream, PeerCredentials)
            .is_ok_and(|c| self.allowed.admits(c.uid(), c.gid(), Some(c.pid())));
        let quick = if admitted {
            self.quick(&stream)
        } else {
            Ok(Quick::Pass(Vec::new()))
        };
        let handed = quick.and_then(|quick| {
            let Quick::Pass(read) = quick else {
                return Ok(());
            };
            let _entered = self.runtime.enter();
            stream.set_read_timeout(None)?;
            stream.set_nonblocking(true)?;
            let stream = tokio::net::UnixStream::from_std(stream)?;
            let (app, allowed, memory) =
                (self.app.clone(), self.allowed.clone(), self.memory.clone());
            self.runtime.spawn(async move {
                answer(&app, &allowed, &memory, stream, read).await;
            });
            Ok(())
        });
        if let Err(e) = handed {
            tracing::warn!(error = %e, "the token broker could not take a connection");
        }
    }

    /// Answers, on this thread, an admitted peer whose request comes at once and whose answer
    /// is in memory; anything else is passed on with what was read of it.
    fn quick(&self, mut stream: &std::os::unix::net::UnixStream) -> std::io::Result<Quick> {
        stream.set_read_timeout(Some(QUICK_READ))?;
        let mut read = Vec::new();
        let mut chunk = [0; 1024];
        let line_end = loop {
            if let Some(end) = read.iter().position(|b| *b == b'\n') {
                break Some(end);
            }
            if read.len() as u64 >= MAX_REQUEST {
                break None;
            }
            match stream.read(&mut chunk) {
                Ok(0) => break None,
                Ok(n) => read.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break None,
            }
        };
        let recalled = line_end.and_then(|end| {
            let request = serde_json::from_slice::<TokenRequest>(&read[..end]).ok()?;
            self.app.recalled_token(&self.memory, &request)
        });
        let Some(value) = recalled else {
            return Ok(Quick::Pass(read));
        };
        count_answer("memory");
        let mut line = serde_json::to_vec(&TokenReply::Token(value.expose_secret().to_owned()))
            .unwrap_or_default();
        line.push(b'\n');
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        stream.write_all(&line)?;
        let _ = stream.shutdown(std::net::Shutdown::Write);
        Ok(Quick::Answered)
    }
}

/// `oauthimap_broker_answers_total{from="memory"|"database"}`: how often the memory served.
fn count_answer(from: &'static str) {
    metrics::counter!("oauthimap_broker_answers_total", "from" => from).increment(1);
}

/// The answers the broker gave, kept until an account or application is written (pizauth
/// answers from memory too). An answer is reused only while the database's [`ChangeMarker`] is
/// the one taken before it was read (no token write since, from this process or any other: a
/// refresh, a sign-in, a removal, a state change, an application changed) and its access token
/// is outside the refresh margin; `--force` never reuses one. Other commits (leases, collected
/// mail, events) leave it in place. On PostgreSQL there is no marker and every answer comes from
/// the database.
#[derive(Debug, Clone, Default)]
struct Memory {
    answers: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<TokenRequest, Kept>>>,
}

#[derive(Debug)]
struct Kept {
    value: SecretString,
    /// Until when the token may be handed out (epoch ms): its expiry minus the refresh margin.
    until: i64,
    marker: ChangeMarker,
}

/// At most this many answers are kept (one per account and form is the usual case).
const MEMORY_ANSWERS: usize = 1024;

impl Memory {
    fn recall(&self, request: &TokenRequest, now: Option<ChangeMarker>) -> Option<SecretString> {
        let now = now?;
        let answers = self.answers.lock().ok()?;
        let kept = answers.get(request)?;
        (kept.marker == now && kept.until > oauthimap_types::now_millis())
            .then(|| kept.value.clone())
    }

    fn keep(&self, request: &TokenRequest, value: &SecretString, until: i64, marker: ChangeMarker) {
        let Ok(mut answers) = self.answers.lock() else {
            return;
        };
        // Answers made before the last commit are of no use any more.
        answers.retain(|_, kept| kept.marker == marker);
        if answers.len() >= MEMORY_ANSWERS || until <= oauthimap_types::now_millis() {
            return;
        }
        let key = TokenRequest {
            force: false,
            ..request.clone()
        };
        answers.insert(
            key,
            Kept {
                value: value.clone(),
                until,
                marker,
            },
        );
    }
}

/// Who may ask: root, the service's own user, and the listed users and groups.
#[derive(Debug, Clone)]
struct Allowed {
    own_uid: u32,
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl Allowed {
    /// `pid` reads the supplementary groups. The kernel gives 0 for a peer outside the
    /// service's pid namespace (a host's client of a service in a container): its uid and
    /// primary group alone count then.
    fn admits(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        if uid == 0 || uid == self.own_uid || self.uids.contains(&uid) {
            return true;
        }
        if self.gids.is_empty() {
            return false;
        }
        self.gids.contains(&gid)
            || pid
                .filter(|p| *p > 0)
                .is_some_and(|p| groups_of(p).iter().any(|g| self.gids.contains(g)))
    }
}

/// The supplementary groups of a process, from `/proc/PID/status` (none if it cannot be read).
fn groups_of(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix("Groups:").map(|g| {
                    g.split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect()
                })
            })
        })
        .unwrap_or_default()
}

/// A group's id: a number, or a name looked up in `/etc/group`.
fn group_id(name: &str) -> Result<u32> {
    if let Ok(gid) = name.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .find_map(|line| {
            let mut parts = line.split(':');
            (parts.next() == Some(name))
                .then(|| parts.nth(1).and_then(|gid| gid.parse().ok()))
                .flatten()
        })
        .ok_or_else(|| {
            AppError::invalid(
                "broker.group",
                format!("there is no group named {name:?} in /etc/group; create it (groupadd {name}) or give its number"),
            )
        })
}

/// Removes a socket file no service answers on; refuses to replace anything else.
fn clear_stale(path: &Path) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(AppError::invalid(
            "broker.socket",
            format!(
                "{} exists and is not a socket; move it away or choose another path",
                path.display()
            ),
        ));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(AppError::invalid(
            "broker.socket",
            format!(
                "another oauthimap service answers on {}; give this one its own broker.socket, or set broker.enabled = false",
                path.display()
            ),
        ));
    }
    std::fs::remove_file(path).map_err(|e| AppError::Io {
        action: format!("remove the stale socket {}", path.display()),
        source: e,
    })
}

/// One connection: read its request line (after the bytes `read` already), check the peer,
/// write the reply line. The request is read even from a peer that is refused: closing on
/// unread bytes would reset the connection, and the caller would see a broken pipe instead of
/// the reason.
async fn answer(
    app: &Core,
    allowed: &Allowed,
    memory: &Memory,
    mut stream: tokio::net::UnixStream,
    read: Vec<u8>,
) {
    let request = read_request(&mut stream, &read).await;
    let reply = match (stream.peer_cred(), request) {
        (Ok(cred), _) if !allowed.admits(cred.uid(), cred.gid(), cred.pid()) => {
            tracing::warn!(
                uid = cred.uid(),
                gid = cred.gid(),
                "the token broker refused a user that may not ask"
            );
            TokenReply::refused(
                "forbidden",
                format!(
                    "user {} may not ask this service for tokens; add the uid to broker.allowed_uids, or the user to the group in broker.group",
                    cred.uid()
                ),
                true,
            )
        }
        (Ok(_), Ok(request)) => match app.remembered_token(memory, &request).await {
            Ok(value) => TokenReply::Token(value.expose_secret().to_owned()),
            Err(e) => TokenReply::from_error(&e),
        },
        (Ok(_), Err(refused)) => refused,
        (Err(e), _) => TokenReply::refused(
            "internal",
            format!("cannot read the caller's credentials: {e}"),
            false,
        ),
    };
    let mut line = serde_json::to_vec(&reply).unwrap_or_default();
    line.push(b'\n');
    let _ = stream.write_all(&line).await;
    let _ = stream.shutdown().await;
}

async fn read_request(
    stream: &mut tokio::net::UnixStream,
    read: &[u8],
) -> std::result::Result<TokenRequest, TokenReply> {
    let mut line = String::new();
    let mut reader =
        tokio::io::BufReader::new(tokio::io::AsyncReadExt::chain(read, stream)).take(MAX_REQUEST);
    match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(Ok(_)) if line.ends_with('\n') => serde_json::from_str(&line).map_err(|e| {
            TokenReply::refused(
                "bad_request",
                format!("the request is not one the broker knows: {e}"),
                true,
            )
        }),
        Ok(Ok(_)) => Err(TokenReply::refused(
            "bad_request",
            "the request must be one JSON line of at most 8 KiB",
            true,
        )),
        Ok(Err(e)) => Err(TokenReply::refused(
            "bad_request",
            format!("cannot read the request: {e}"),
            true,
        )),
        Err(_) => Err(TokenReply::refused(
            "bad_request",
            "no request within 10 s",
            true,
        )),
    }
}

/// What asking the local broker gave.
#[derive(Debug)]
pub enum Asked {
    Answered(TokenReply),
    /// No service listens there (no socket, or a stale one): open the database instead.
    NoService,
}

/// Asks the broker at `path` (blocking: `oauthimap token` asks before it starts a runtime).
pub fn ask_broker(
    path: &Path,
    request: &TokenRequest,
    timeout: Duration,
) -> std::io::Result<Asked> {
    use std::io::ErrorKind;
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(Asked::NoService);
        }
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    std::io::BufReader::new(stream).read_line(&mut answer)?;
    serde_json::from_str(&answer)
        .map(Asked::Answered)
        .map_err(|e| std::io::Error::other(format!("the broker's answer is not understood: {e}")))
}

/// `oauthimap token --server URL`: asks a remote service's REST token endpoint
/// (`GET /api/v1/accounts/{account}/token`, API token with the `tokens:read` scope).
pub async fn remote_token(
    server: &url::Url,
    api_token: &SecretString,
    request: &TokenRequest,
) -> Result<SecretString> {
    let host_is_loopback = match server.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if server.scheme() != "https" && !(server.scheme() == "http" && host_is_loopback) {
        return Err(AppError::invalid(
            "server",
            format!(
                "{server} would carry tokens unencrypted; use https:// (http:// only for a service on this machine)"
            ),
        ));
    }
    let mut url = server.clone();
    url.path_segments_mut()
        .map_err(|()| AppError::invalid("server", format!("{server} cannot take a path; give the service's base URL, such as https://oauthimap.example.com")))?
        .pop_if_empty()
        .extend(["api", "v1", "accounts", &request.account, "token"]);
    {
        let mut query = url.query_pairs_mut();
        if let Some(app) = &request.app {
            query.append_pair("app", app);
        }
        if request.force {
            query.append_pair("force", "true");
        }
        if let Some(m) = request.sasl {
            query.append_pair("sasl", m.as_str());
        }
        if let Some((host, port)) = request.host.as_ref().zip(request.port) {
            query
                .append_pair("host", host)
                .append_pair("port", &port.to_string());
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    let client =
        oauthimap_oauth::OAuthClient::new(Duration::from_mins(1)).map_err(AppError::Provider)?;
    let fail = |e: reqwest::Error| AppError::Unfinished(format!("cannot reach {server}: {e}"));
    let response = client
        .http()
        .get(url)
        .bearer_auth(api_token.expose_secret())
        .send()
        .await
        .map_err(fail)?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(fail)?;
    if status.is_success() {
        let field = if request.sasl.is_some() {
            "sasl"
        } else {
            "access_token"
        };
        return body[field]
            .as_str()
            .map(|v| SecretString::from(v.to_owned()))
            .ok_or_else(|| {
                AppError::Unfinished(format!(
                    "{server} answered without {field}: is it an oauthimap service?"
                ))
            });
    }
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or("no message")
        .to_owned();
    let said = format!("{server} refused: {message}");
    Err(match status.as_u16() {
        401 | 403 => AppError::Denied(said),
        404 => AppError::NotFound {
            what: "account",
            key: request.account.clone(),
            hint: format!(" at {server}"),
        },
        409 | 400 | 422 => AppError::invalid("account", said),
        _ => AppError::Unfinished(said),
    })
}
