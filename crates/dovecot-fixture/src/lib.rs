//! A real, private Dovecot IMAP server for tests.
//!
//! [`Dovecot::start`] writes a config into a fresh temporary directory and runs Debian's
//! `/usr/sbin/dovecot -F -c <that file>` as a child process: its own `base_dir`, `state_dir`, log
//! file and `instance_name`, so it never touches the system instance or another fixture. It serves
//! IMAP on two free 127.0.0.1 ports: implicit TLS (a certificate signed by a CA generated at start,
//! see [`Dovecot::ca_pem_path`]) and plain with STARTTLS. OAuth 2.0 logins (XOAUTH2, OAUTHBEARER) are
//! checked by Dovecot's oauth2 passdb against the caller's RFC 7662 introspection endpoint; a
//! master user (PLAIN/LOGIN as `user*master`) seeds and inspects any mailbox. With
//! [`DovecotOptions::mail_services`] it also serves POP3 and SMTP submission, relaying submitted
//! mail to an SMTP sink (Debian's aiosmtpd) whose messages [`Dovecot::relayed`] returns.
//!
//! The fixture needs root (Dovecot drops privileges to its login/auth users and to the mail uid,
//! `nobody` by default). It never skips silently: a missing Dovecot is an error that says how to
//! install it. It must not ship in a binary: it is a dev-dependency only.

mod certs;
mod config;
mod error;
pub mod imap;
mod maildir;
mod process;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::config::Layout;
pub use crate::error::FixtureError;
pub use crate::imap::{ImapConnection, MessageInfo};
use crate::maildir::MailTree;
pub use crate::maildir::{Delivered, Flag, crlf};

/// Where Debian's `dovecot-core` installs the server.
pub const DEFAULT_DOVECOT_BINARY: &str = "/usr/sbin/dovecot";
/// Numbers instances within this process for `instance_name`.
static INSTANCE: AtomicU32 = AtomicU32::new(0);

/// Debian's `nobody` / `nogroup`: mail processes run as this uid/gid unless told otherwise.
pub const DEFAULT_MAIL_ID: u32 = 65534;

/// `extra_config` for hundreds or thousands of sessions of one user (the benchmarks, the fleet
/// test past 50 receivers); the fixture's defaults suit a few.
pub const MANY_SESSIONS_CONFIG: &str = "
default_process_limit = 1500
default_client_limit = 5000
mail_max_userip_connections = 5000
service imap {
  process_limit = 1500
}
service imap-login {
  service_count = 0
  process_min_avail = 2
  client_limit = 2500
}
";

/// How to start the instance. Only `introspection_url` has no sensible default.
#[derive(Debug, Clone)]
pub struct DovecotOptions {
    /// The RFC 7662 endpoint Dovecot POSTs `token=<bearer>` to (e.g. the fake identity provider).
    pub introspection_url: String,
    /// The Dovecot binary; default [`DEFAULT_DOVECOT_BINARY`].
    pub dovecot_binary: PathBuf,
    /// Owner of the mail files and uid of the imap processes; default 65534 (`nobody`).
    pub mail_uid: u32,
    /// Group of the mail files; default 65534 (`nogroup`).
    pub mail_gid: u32,
    /// Master user name (log in as `<user>*<master_user>`); default `master`.
    pub master_user: String,
    /// Master password; default `master-secret`.
    pub master_password: String,
    /// How long to wait for the greeting after (re)start; default 20 s.
    pub start_timeout: Duration,
    /// Settings appended to the generated `dovecot.conf` (e.g. `login_greeting = ...` or an
    /// `imap_idle_notify_interval` for a fault test); empty by default.
    pub extra_config: String,
    /// Also serve POP3 (plain with STLS, and implicit TLS) and SMTP submission (STARTTLS and
    /// implicit TLS), with submission relaying to an SMTP sink (Debian's aiosmtpd) that keeps
    /// every message it receives; see [`Dovecot::relayed`]. Off by default.
    pub mail_services: bool,
}

impl DovecotOptions {
    /// Defaults plus the introspection endpoint.
    pub fn new(introspection_url: impl Into<String>) -> Self {
        Self {
            introspection_url: introspection_url.into(),
            dovecot_binary: PathBuf::from(DEFAULT_DOVECOT_BINARY),
            mail_uid: DEFAULT_MAIL_ID,
            mail_gid: DEFAULT_MAIL_ID,
            master_user: "master".into(),
            master_password: "master-secret".into(),
            start_timeout: Duration::from_secs(20),
            extra_config: String::new(),
            mail_services: false,
        }
    }
}

/// A running private Dovecot. Dropping it stops the server and deletes its directory (mail included).
#[derive(Debug)]
pub struct Dovecot {
    layout: Layout,
    binary: PathBuf,
    start_timeout: Duration,
    mail: MailTree,
    child: Option<Child>,
    /// The SMTP sink behind submission, when mail services run.
    sink: Option<Child>,
    wants_services: bool,
    // Declared last so it is removed after the process is gone (fields drop after `Drop::drop`).
    dir: tempfile::TempDir,
}

impl Dovecot {
    /// Writes the config, certificates and mail root, starts Dovecot and waits for its greeting.
    pub async fn start(opts: DovecotOptions) -> Result<Self, FixtureError> {
        if !opts.dovecot_binary.exists() {
            return Err(FixtureError::DovecotNotFound {
                path: opts.dovecot_binary,
            });
        }
        let euid = fs::metadata("/proc/self")
            .map_err(FixtureError::io("read /proc/self"))?
            .uid();
        if euid != 0 {
            return Err(FixtureError::NotRoot {
                mail_uid: opts.mail_uid,
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("oauthimap-dovecot-")
            .tempdir()
            .map_err(FixtureError::io("create the fixture's temporary directory"))?;
        // Dovecot's unprivileged processes must traverse it to reach the mail and the sockets.
        set_mode(dir.path(), 0o755)?;

        let layout = Layout {
            root: dir.path().to_path_buf(),
            instance_name: format!(
                "oauthimap-fixture-{}-{}",
                std::process::id(),
                INSTANCE.fetch_add(1, Ordering::Relaxed)
            ),
            imap_port: 0,
            imaps_port: 0,
            mail_uid: opts.mail_uid,
            mail_gid: opts.mail_gid,
            introspection_url: opts.introspection_url,
            master_user: opts.master_user,
            master_password: opts.master_password,
            extra_config: opts.extra_config,
            mail_services: None,
        };
        write_static_files(&layout)?;
        let mail = MailTree {
            mail_root: layout.mail_root(),
            uid: layout.mail_uid,
            gid: layout.mail_gid,
        };
        let mut fixture = Self {
            layout,
            binary: opts.dovecot_binary,
            start_timeout: opts.start_timeout,
            mail,
            child: None,
            sink: None,
            wants_services: opts.mail_services,
            dir,
        };

        // Free ports are picked by binding port 0 and releasing it; another process can grab one
        // in between, so a bind failure is retried with new ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The kernel may hand the same released port out twice in a row: all distinct.
            let ports = free_ports(if fixture.wants_services { 7 } else { 2 }).await?;
            fixture.layout.imap_port = ports[0];
            fixture.layout.imaps_port = ports[1];
            if fixture.wants_services {
                fixture.layout.mail_services = Some(config::ServicePorts {
                    pop3: ports[2],
                    pop3s: ports[3],
                    submission: ports[4],
                    submissions: ports[5],
                    relay: ports[6],
                });
            }
            match fixture.launch().await {
                Ok(()) => return Ok(fixture),
                Err(err)
                    if attempt < 5
                        && (fixture.log_tail(20).contains("Address already in use")
                            || fixture.log_tail(20).contains("duplicate listener")) =>
                {
                    drop(err);
                    fs::write(fixture.layout.log_path(), b"")
                        .map_err(FixtureError::io("truncate the Dovecot log"))?;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The plain port; it offers STARTTLS (and, because 127.0.0.1 counts as secured, also accepts
    /// XOAUTH2/OAUTHBEARER/PLAIN without TLS).
    pub fn imap_port(&self) -> u16 {
        self.layout.imap_port
    }

    /// The implicit-TLS port.
    pub fn imaps_port(&self) -> u16 {
        self.layout.imaps_port
    }

    fn services(&self) -> config::ServicePorts {
        self.layout
            .mail_services
            .expect("start the fixture with DovecotOptions::mail_services = true")
    }

    /// POP3 with STLS (needs [`DovecotOptions::mail_services`]).
    pub fn pop3_port(&self) -> u16 {
        self.services().pop3
    }

    /// POP3 over implicit TLS (needs [`DovecotOptions::mail_services`]).
    pub fn pop3s_port(&self) -> u16 {
        self.services().pop3s
    }

    /// SMTP submission with STARTTLS (needs [`DovecotOptions::mail_services`]).
    pub fn submission_port(&self) -> u16 {
        self.services().submission
    }

    /// SMTP submission over implicit TLS (needs [`DovecotOptions::mail_services`]).
    pub fn submissions_port(&self) -> u16 {
        self.services().submissions
    }

    /// Every message submission relayed to the SMTP sink so far, in order.
    pub fn relayed(&self) -> Vec<Relayed> {
        let dir = self.layout.relayed_dir();
        let mut out = Vec::new();
        for n in 1.. {
            let Ok(raw) = fs::read(dir.join(format!("{n}.eml"))) else {
                break;
            };
            let envelope = fs::read_to_string(dir.join(format!("{n}.env"))).unwrap_or_default();
            let mut lines = envelope.lines().map(str::to_owned);
            out.push(Relayed {
                mail_from: lines.next().unwrap_or_default(),
                rcpt_to: lines.filter(|l| !l.is_empty()).collect(),
                raw,
            });
        }
        out
    }

    /// Waits until at least `n` messages were relayed (or `timeout` passes) and returns them.
    pub async fn wait_relayed(&self, n: usize, timeout: Duration) -> Vec<Relayed> {
        let deadline = Instant::now() + timeout;
        loop {
            let relayed = self.relayed();
            if relayed.len() >= n || Instant::now() > deadline {
                return relayed;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// PEM file of the test CA that signed the server certificate (for `localhost` and `127.0.0.1`).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.layout.ca_pem_path()
    }

    /// PEM files of the server certificate (for `localhost` and `127.0.0.1`) and its key, for
    /// tests that need a TLS server of their own trusted through [`Dovecot::ca_pem_path`].
    pub fn server_cert_paths(&self) -> (PathBuf, PathBuf) {
        (self.layout.cert_pem_path(), self.layout.key_pem_path())
    }

    /// The master user's name.
    pub fn master_user(&self) -> &str {
        &self.layout.master_user
    }

    /// The master user's password.
    pub fn master_password(&self) -> &str {
        &self.layout.master_password
    }

    /// The login name that opens `user`'s mailbox with the master password: `user*master`.
    pub fn master_login_for(&self, user: &str) -> String {
        format!("{user}*{}", self.layout.master_user)
    }

    /// The instance's directory (config, log, TLS files, mail).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated `dovecot.conf`.
    pub fn config_path(&self) -> PathBuf {
        self.layout.config_path()
    }

    /// The instance's log file (info, errors and debug all go here).
    pub fn log_path(&self) -> PathBuf {
        self.layout.log_path()
    }

    /// The master process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of the log and of Dovecot's stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for path in [
            self.layout.log_path(),
            self.layout.root.join("dovecot.stderr"),
        ] {
            let text = fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Stops and starts the server again: same ports, same config, same mail.
    pub async fn restart(&mut self) -> Result<(), FixtureError> {
        self.shutdown_async().await?;
        // A login process of the old master may hold the listening sockets for a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch().await {
                Ok(()) => return Ok(()),
                Err(_)
                    if Instant::now() < deadline
                        && self.log_tail(5).contains("Address already in use") =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Stops the server and removes its directory. Dropping does the same, but without a result.
    pub async fn stop(mut self) -> Result<(), FixtureError> {
        self.shutdown_async().await
    }

    /// Writes a message into `user`'s INBOX `new/` (unseen). See [`Dovecot::deliver_to`].
    pub fn deliver(&self, user: &str, raw: &[u8]) -> Result<Delivered, FixtureError> {
        self.mail.deliver(user, "INBOX", raw, &[])
    }

    /// Writes a message file into `folder` (`INBOX` or a Maildir++ name such as `Archive` or
    /// `Archive.2024`), creating the folder on disk if needed. Bare LF becomes CRLF. Without flags
    /// it lands in `new/`, with flags in `cur/`. The user is lowercased, as Dovecot's `%Lu` does.
    pub fn deliver_to(
        &self,
        user: &str,
        folder: &str,
        raw: &[u8],
        flags: &[Flag],
    ) -> Result<Delivered, FixtureError> {
        self.mail.deliver(user, folder, raw, flags)
    }

    /// Opens a plain-port session logged in as the master user on `user`'s mailbox.
    pub async fn master_session(
        &self,
        user: &str,
    ) -> Result<ImapConnection<TcpStream>, FixtureError> {
        let (mut conn, _greeting) = ImapConnection::connect(self.host(), self.imap_port()).await?;
        conn.login(&self.master_login_for(user), &self.layout.master_password)
            .await?;
        Ok(conn)
    }

    /// Creates a folder over IMAP as the master user (any name the server accepts).
    pub async fn create_folder(&self, user: &str, name: &str) -> Result<(), FixtureError> {
        let mut conn = self.master_session(user).await?;
        conn.command_ok(
            &format!("CREATE {}", imap::quote(name)),
            &format!("create folder {name:?} for {user}"),
        )
        .await?;
        conn.logout().await;
        Ok(())
    }

    /// APPENDs a message as the master user; returns the tagged answer (with `[APPENDUID ..]`).
    /// The message is sent as given (no CRLF conversion).
    pub async fn append(
        &self,
        user: &str,
        folder: &str,
        raw: &[u8],
        flags: &[Flag],
    ) -> Result<String, FixtureError> {
        let mut conn = self.master_session(user).await?;
        let names: Vec<&str> = flags.iter().map(|f| f.imap_name()).collect();
        let tagged = conn.append(folder, &names, raw).await?;
        conn.logout().await;
        Ok(tagged)
    }

    /// Every folder of `user` as LIST reports it.
    pub async fn list_folders(&self, user: &str) -> Result<Vec<String>, FixtureError> {
        let mut conn = self.master_session(user).await?;
        let folders = conn.list_folders().await?;
        conn.logout().await;
        Ok(folders)
    }

    /// UID, flags and size of every message in `folder`, read with EXAMINE (read-only, so
    /// inspecting does not clear `\Recent`).
    pub async fn list_messages(
        &self,
        user: &str,
        folder: &str,
    ) -> Result<Vec<MessageInfo>, FixtureError> {
        let mut conn = self.master_session(user).await?;
        conn.command_ok(
            &format!("EXAMINE {}", imap::quote(folder)),
            &format!("examine {folder:?} of {user}"),
        )
        .await?;
        let infos = conn.message_infos().await?;
        conn.logout().await;
        Ok(infos)
    }

    /// The exact `BODY[]` bytes of one message (read with `BODY.PEEK`, so `\Seen` is not set).
    pub async fn fetch_message(
        &self,
        user: &str,
        folder: &str,
        uid: u32,
    ) -> Result<Vec<u8>, FixtureError> {
        let mut conn = self.master_session(user).await?;
        conn.command_ok(
            &format!("EXAMINE {}", imap::quote(folder)),
            &format!("examine {folder:?} of {user}"),
        )
        .await?;
        let body = conn.fetch_body(uid).await?;
        conn.logout().await;
        Ok(body)
    }

    /// Spawns `dovecot -F -c <conf>` with the current ports and waits for the `* OK` greeting.
    async fn launch(&mut self) -> Result<(), FixtureError> {
        if let Some(ports) = self.layout.mail_services
            && self.sink.is_none()
        {
            self.sink = Some(start_sink(&self.layout, ports.relay).await?);
        }
        let config_path = self.layout.config_path();
        write_file(
            &config_path,
            config::dovecot_conf(&self.layout).as_bytes(),
            0o644,
        )?;
        let stderr_path = self.layout.root.join("dovecot.stderr");
        let stderr = fs::File::create(&stderr_path)
            .map_err(FixtureError::io("create the Dovecot stderr file"))?;
        let stdout = stderr
            .try_clone()
            .map_err(FixtureError::io("duplicate the Dovecot stderr file"))?;
        let child = Command::new(&self.binary)
            .arg("-F")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(FixtureError::io(format!("run {}", self.binary.display())))?;
        self.child = Some(child);
        match self.wait_ready().await {
            Ok(()) => Ok(()),
            Err(reason) => {
                let _ = self.shutdown_blocking();
                Err(FixtureError::Start {
                    imap_port: self.layout.imap_port,
                    imaps_port: self.layout.imaps_port,
                    reason,
                    log_tail: self.log_tail(30),
                })
            }
        }
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.start_timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("dovecot exited early with {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no `* OK` greeting within {:?}",
                    self.start_timeout
                ));
            }
            if greets(self.layout.imap_port).await
                && TcpStream::connect(("127.0.0.1", self.layout.imaps_port))
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM to our own master process (by its PID, never by name) after noting its
    /// children, and returns both; `None` if nothing runs. The master exits about 1 s later.
    fn request_stop(&mut self) -> Option<(Child, Vec<process::ProcId>)> {
        let mut child = self.child.take()?;
        if matches!(child.try_wait(), Ok(Some(_))) {
            return None;
        }
        let children = process::children_of(child.id());
        let pid = rustix::process::Pid::from_child(&child);
        if rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_err() {
            // Last resort: SIGKILL through the child handle.
            let _ = child.kill();
        }
        // The master is now shutting down (it no longer respawns services); ending its children
        // at once spares it waiting for them.
        process::terminate(&children);
        Some((child, children))
    }

    async fn shutdown_async(&mut self) -> Result<(), FixtureError> {
        let Some((mut child, children)) = self.request_stop() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => {
                    kill_and_reap(&mut child)?;
                    break;
                }
            }
        }
        process::end_survivors(&children, Duration::from_secs(3));
        Ok(())
    }

    fn shutdown_blocking(&mut self) -> Result<(), FixtureError> {
        let Some((mut child, children)) = self.request_stop() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    kill_and_reap(&mut child)?;
                    break;
                }
            }
        }
        process::end_survivors(&children, Duration::from_secs(3));
        Ok(())
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.shutdown_blocking();
        if let Some(mut sink) = self.sink.take() {
            let _ = kill_and_reap(&mut sink);
        }
    }
}

/// A message the SMTP sink received from Dovecot's submission service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message bytes as received (dot-unstuffed).
    pub raw: Vec<u8>,
}

/// Starts the SMTP sink (Debian's python3-aiosmtpd) and waits until it says it is ready.
async fn start_sink(layout: &Layout, port: u16) -> Result<Child, FixtureError> {
    let dir = layout.relayed_dir();
    let _ = fs::create_dir(&dir);
    let script = layout.root.join("smtp-sink.py");
    write_file(&script, config::SMTP_SINK.as_bytes(), 0o644)?;
    // Debian's interpreter, which sees Debian's python3-aiosmtpd (a pyenv or venv python on PATH
    // would not).
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let mut child = Command::new(python)
        .arg(&script)
        .arg(port.to_string())
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(
            fs::File::create(layout.root.join("smtp-sink.stderr"))
                .map_err(FixtureError::io("create the SMTP sink's stderr file"))?,
        )
        .spawn()
        .map_err(FixtureError::io(
            "run python3 (the SMTP sink; install python3-aiosmtpd)",
        ))?;
    let stdout = child.stdout.take();
    let ready = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        let mut line = String::new();
        stdout.is_some_and(|out| {
            std::io::BufReader::new(out).read_line(&mut line).is_ok() && line.starts_with("ready")
        })
    });
    let ok = matches!(
        tokio::time::timeout(Duration::from_secs(20), ready).await,
        Ok(Ok(true))
    );
    if !ok {
        let _ = kill_and_reap(&mut child);
        let stderr = fs::read_to_string(layout.root.join("smtp-sink.stderr")).unwrap_or_default();
        return Err(FixtureError::Sink {
            reason: stderr.trim().to_owned(),
        });
    }
    Ok(child)
}

fn kill_and_reap(child: &mut Child) -> Result<(), FixtureError> {
    child
        .kill()
        .map_err(FixtureError::io("kill the Dovecot master"))?;
    child
        .wait()
        .map(drop)
        .map_err(FixtureError::io("reap the Dovecot master"))
}

/// Connects to the plain port and checks for a `* OK` greeting within 2 s.
async fn greets(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(2),
        BufReader::new(stream).read_line(&mut line),
    )
    .await;
    matches!(read, Ok(Ok(n)) if n > 0) && line.starts_with("* OK")
}

/// `n` distinct free ports.
async fn free_ports(n: usize) -> Result<Vec<u16>, FixtureError> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        let port = free_port().await?;
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    Ok(ports)
}

async fn free_port() -> Result<u16, FixtureError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(FixtureError::io("find a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(FixtureError::io("find a free port"))?
        .port())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), FixtureError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(FixtureError::io(format!("chmod {}", path.display())))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FixtureError> {
    fs::write(path, bytes).map_err(FixtureError::io(format!("write {}", path.display())))?;
    set_mode(path, mode)
}

/// Everything that does not depend on the ports: TLS files, passdb files, the mail root.
fn write_static_files(layout: &Layout) -> Result<(), FixtureError> {
    let pki = certs::generate()?;
    let tls = layout.tls_dir();
    fs::create_dir(&tls).map_err(FixtureError::io(format!("create {}", tls.display())))?;
    set_mode(&tls, 0o755)?;
    write_file(&layout.ca_pem_path(), pki.ca.as_bytes(), 0o644)?;
    write_file(&layout.cert_pem_path(), pki.server_cert.as_bytes(), 0o644)?;
    // Read by Dovecot's config process, which runs as root.
    write_file(&layout.key_pem_path(), pki.server_key.as_bytes(), 0o600)?;
    // Read by the auth process (user `dovecot`).
    write_file(
        &layout.oauth2_args_path(),
        config::oauth2_args(layout).as_bytes(),
        0o644,
    )?;
    write_file(
        &layout.master_users_path(),
        config::master_users(layout).as_bytes(),
        0o644,
    )?;
    write_file(&layout.no_users_path(), b"", 0o644)?;
    let mail_root = layout.mail_root();
    fs::create_dir(&mail_root)
        .map_err(FixtureError::io(format!("create {}", mail_root.display())))?;
    set_mode(&mail_root, 0o755)?;
    chown(&mail_root, Some(layout.mail_uid), Some(layout.mail_gid))
        .map_err(FixtureError::io(format!("chown {}", mail_root.display())))
}
