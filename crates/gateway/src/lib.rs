//! The gateway: password-only mail clients (GLPI's own mail collector, fetchmail, old PHP apps)
//! log in with a per-client gateway password, and oauthimap opens the mailbox at the provider
//! with OAuth2 for them, then relays the session's bytes untouched.
//!
//! This crate speaks the client side of IMAP, POP3 and SMTP submission up to the login
//! (greeting, capabilities, STARTTLS, the password logins) and relays afterwards; it also opens
//! the POP3 and SMTP upstream sessions with XOAUTH2 ([`upstream`]); who may log in and how
//! the upstream session is opened is the [`Backend`]'s business (the app core: passwords,
//! accounts, tokens, limits). Listeners default to loopback; on any other address a password is
//! only accepted over TLS, unless the client's address is in a trusted network.

mod conn;
mod imap;
mod pop3;
mod smtp;
mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

pub use oauthimap_types::net::{Network, NetworkParseError};
pub use tls::TlsFiles;

/// The protocols a gateway password may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Pop3,
    Smtp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
            Protocol::Smtp => "smtp",
        }
    }
}

/// A client's login, for the [`Backend`] to check.
#[derive(Debug)]
pub struct LoginRequest {
    pub protocol: Protocol,
    /// The login name: the mailbox address.
    pub user: String,
    pub password: SecretString,
    pub remote: SocketAddr,
    /// SMTP: the client's `EHLO` name, to pass on upstream when it is a plain domain.
    pub helo: Option<String>,
    /// How long the upstream server may take to connect and to answer each step of the login.
    pub upstream_timeout: Duration,
}

/// An opened upstream session, ready to be relayed, with the connection slot it holds at the
/// provider for as long as it lasts.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per login, moved once into the relay"
)]
pub enum Upstream {
    Imap {
        session: oauthimap_imap::Session,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    /// POP3 or SMTP, logged in upstream.
    Line {
        session: upstream::LineSession,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    },
}

impl Upstream {
    /// The same session holding `slot`.
    #[must_use]
    pub fn with_slot(self, slot: tokio::sync::OwnedSemaphorePermit) -> Self {
        match self {
            Upstream::Imap { session, .. } => Upstream::Imap {
                session,
                slot: Some(slot),
            },
            Upstream::Line { session, .. } => Upstream::Line {
                session,
                slot: Some(slot),
            },
        }
    }
}

/// Why a login was refused; each maps to the protocol's own answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Unknown user, wrong, expired or removed password, or a password not for this protocol.
    #[error("invalid credentials")]
    BadCredentials,
    /// The account needs a new sign-in at the provider (an admin's job, not the client's).
    #[error("{0}")]
    NeedsReauth(String),
    /// The upstream server or the identity provider cannot be reached right now.
    #[error("{0}")]
    Unavailable(String),
    /// A cap on sessions (per account or in total) is reached.
    #[error("{0}")]
    Limit(String),
    /// The upstream server refused the account's token, a fresh one too (a missing scope, a
    /// protocol turned off for the mailbox): an admin's job.
    #[error("{0}")]
    Refused(String),
    /// Too many failed logins from this address or for this name; try again later.
    #[error("too many failed logins; try again later")]
    Throttled,
}

/// Checks logins and opens upstream sessions: the policy behind the gateway.
pub trait Backend: Send + Sync + 'static {
    fn login(
        &self,
        request: LoginRequest,
    ) -> impl std::future::Future<Output = Result<Upstream, Refusal>> + Send;
}

/// Where the gateway listens and how.
#[derive(Debug, Clone, Default)]
pub struct GatewayConfig {
    /// IMAP with STARTTLS (usually port 143).
    pub imap: Option<SocketAddr>,
    /// IMAP over implicit TLS (usually port 993).
    pub imaps: Option<SocketAddr>,
    /// POP3 with STLS (usually port 110).
    pub pop3: Option<SocketAddr>,
    /// POP3 over implicit TLS (usually port 995).
    pub pop3s: Option<SocketAddr>,
    /// SMTP submission with STARTTLS (usually port 587).
    pub submission: Option<SocketAddr>,
    /// SMTP submission over implicit TLS (usually port 465).
    pub submissions: Option<SocketAddr>,
    /// Certificate and key (PEM), re-read when the files change.
    pub tls: Option<TlsFiles>,
    /// Client addresses that may log in without TLS on a non-loopback listener.
    pub trusted_networks: Vec<Network>,
    /// Sessions open at once, in total.
    pub max_sessions: usize,
    /// How long a client may stay silent before logging in.
    pub login_timeout: Duration,
    /// How long the upstream server may take to connect and to answer each login step before
    /// the client is told to try again later.
    pub upstream_timeout: Duration,
}

/// What one listener serves.
#[derive(Debug, Clone)]
struct Listener {
    protocol: Protocol,
    addr: SocketAddr,
    implicit_tls: bool,
}

/// Binds every configured listener, then serves until `stop` turns true. Returns the bound
/// addresses through `bound` before serving (port 0 picks a free port).
pub async fn serve<B: Backend>(
    config: GatewayConfig,
    backend: Arc<B>,
    bound: impl FnOnce(&[(String, SocketAddr)]),
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), GatewayError> {
    let tls = config.tls.clone().map(tls::Acceptor::new).transpose()?;
    let mut listeners = Vec::new();
    let wanted = [
        (config.imap, false, "imap", Protocol::Imap),
        (config.imaps, true, "imaps", Protocol::Imap),
        (config.pop3, false, "pop3", Protocol::Pop3),
        (config.pop3s, true, "pop3s", Protocol::Pop3),
        (config.submission, false, "submission", Protocol::Smtp),
        (config.submissions, true, "submissions", Protocol::Smtp),
    ];
    for (addr, implicit_tls, name, protocol) in wanted {
        let Some(addr) = addr else { continue };
        if implicit_tls && tls.is_none() {
            return Err(GatewayError::Config(format!(
                "gateway.{name}_listen needs gateway.tls_cert and gateway.tls_key"
            )));
        }
        let socket = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let local = socket
            .local_addr()
            .map_err(|source| GatewayError::Bind { addr, source })?;
        listeners.push((
            name.to_owned(),
            Listener {
                protocol,
                addr: local,
                implicit_tls,
            },
            socket,
        ));
    }
    let names: Vec<(String, SocketAddr)> = listeners
        .iter()
        .map(|(n, l, _)| (n.clone(), l.addr))
        .collect();
    bound(&names);
    if !config.trusted_networks.is_empty() {
        tracing::warn!(networks = ?config.trusted_networks.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "the gateway accepts passwords without TLS from these networks (gateway.trusted_networks)");
    }
    let shared = Arc::new(Shared {
        config,
        tls,
        sessions: Arc::new(tokio::sync::Semaphore::new(0)),
    });
    shared
        .sessions
        .add_permits(shared.config.max_sessions.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for (_, listener, socket) in listeners {
        let (shared, backend, stop) = (shared.clone(), backend.clone(), stop.clone());
        tasks.spawn(accept_loop(listener, socket, shared, backend, stop));
    }
    let _ = stop.wait_for(|s| *s).await;
    tasks.shutdown().await;
    Ok(())
}

/// What every connection shares.
struct Shared {
    config: GatewayConfig,
    tls: Option<tls::Acceptor>,
    sessions: Arc<tokio::sync::Semaphore>,
}

async fn accept_loop<B: Backend>(
    listener: Listener,
    socket: tokio::net::TcpListener,
    shared: Arc<Shared>,
    backend: Arc<B>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = socket.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, listener = %listener.addr, "cannot accept a gateway connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (listener, shared, backend) = (listener.clone(), shared.clone(), backend.clone());
        connections.spawn(async move {
            let permit = shared.sessions.clone().try_acquire_owned().ok();
            let Some(client) = conn::Client::accept(tcp, remote, &listener, &shared).await else {
                return;
            };
            let protocol = listener.protocol.as_str();
            metrics::gauge!("oauthimap_gateway_sessions", "protocol" => protocol).increment(1.0);
            let admitted = permit.is_some();
            match listener.protocol {
                Protocol::Imap => {
                    imap::session(client, &listener, &shared, &*backend, admitted).await;
                }
                Protocol::Pop3 => {
                    pop3::session(client, &listener, &shared, &*backend, admitted).await;
                }
                Protocol::Smtp => {
                    smtp::session(client, &listener, &shared, &*backend, admitted).await;
                }
            }
            metrics::gauge!("oauthimap_gateway_sessions", "protocol" => protocol).decrement(1.0);
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid gateway configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the gateway's TLS {what} {path}: {reason}")]
    Tls {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    //! The pre-login dialogues over an in-memory connection: what a client on another host sees
    //! on a non-loopback listener without TLS (no password is taken), and what a trusted network
    //! may do.
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Refuses every login, counting them.
    struct Refuser(std::sync::atomic::AtomicUsize);

    impl Backend for Refuser {
        async fn login(&self, _: LoginRequest) -> Result<Upstream, Refusal> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(Refusal::BadCredentials)
        }
    }

    /// Runs one session on a listener at `listener` for a client at 198.51.100.7, sending
    /// `input` and then closing; returns what the gateway wrote and how many logins reached the
    /// backend.
    async fn dialogue(
        protocol: Protocol,
        listener: &str,
        trusted: &[&str],
        input: &[u8],
    ) -> (String, usize) {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let shared = Shared {
            config: GatewayConfig {
                trusted_networks: trusted.iter().map(|n| n.parse().unwrap()).collect(),
                max_sessions: 10,
                login_timeout: Duration::from_secs(5),
                upstream_timeout: Duration::from_secs(5),
                ..GatewayConfig::default()
            },
            tls: None,
            sessions: Arc::new(tokio::sync::Semaphore::new(10)),
        };
        let listener = Listener {
            protocol,
            addr: listener.parse().unwrap(),
            implicit_tls: false,
        };
        let client = conn::Client {
            stream: Box::new(ours),
            buf: Vec::new(),
            tls: false,
            timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(5),
            remote: "198.51.100.7:40000".parse().unwrap(),
        };
        let backend = Refuser(std::sync::atomic::AtomicUsize::new(0));
        let (mut read, mut write) = tokio::io::split(theirs);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            write.write_all(&input).await.unwrap();
            // Keep the connection open until the gateway answered everything.
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(write);
        });
        let served = async {
            match protocol {
                Protocol::Imap => imap::session(client, &listener, &shared, &backend, true).await,
                Protocol::Pop3 => pop3::session(client, &listener, &shared, &backend, true).await,
                Protocol::Smtp => smtp::session(client, &listener, &shared, &backend, true).await,
            }
        };
        let mut out = Vec::new();
        let ((), _) = tokio::join!(served, read.read_to_end(&mut out));
        writer.await.unwrap();
        (
            String::from_utf8_lossy(&out).into_owned(),
            backend.0.load(std::sync::atomic::Ordering::SeqCst),
        )
    }

    #[tokio::test]
    async fn no_password_is_taken_without_tls_on_a_listener_other_hosts_reach() {
        let (out, logins) = dialogue(
            Protocol::Imap,
            "192.0.2.1:143",
            &[],
            b"a1 CAPABILITY\r\na2 LOGIN help@contoso.com secret\r\na3 AUTHENTICATE PLAIN AGhlbHAAeA==\r\na4 LOGOUT\r\n",
        )
        .await;
        assert!(
            out.contains("LOGINDISABLED") && !out.contains("AUTH=PLAIN"),
            "{out}"
        );
        assert!(out.contains("a2 NO [PRIVACYREQUIRED]"), "{out}");
        assert!(out.contains("a3 NO [PRIVACYREQUIRED]"), "{out}");
        assert_eq!(logins, 0, "no password reached the backend");

        let (out, logins) = dialogue(
            Protocol::Pop3,
            "192.0.2.1:110",
            &[],
            b"CAPA\r\nUSER help@contoso.com\r\nPASS secret\r\nAUTH PLAIN AGhlbHAAeA==\r\nQUIT\r\n",
        )
        .await;
        let capa = out.split(".\r\n").next().unwrap();
        assert!(!capa.contains("USER") && !capa.contains("SASL"), "{out}");
        assert_eq!(
            out.matches("-ERR [AUTH] Passwords are only accepted over TLS")
                .count(),
            3,
            "{out}"
        );
        assert_eq!(logins, 0);

        let (out, logins) = dialogue(
            Protocol::Smtp,
            "192.0.2.1:587",
            &[],
            b"EHLO x\r\nAUTH PLAIN AGhlbHAAeA==\r\nAUTH LOGIN\r\nQUIT\r\n",
        )
        .await;
        assert!(
            !out.contains("AUTH PLAIN LOGIN"),
            "EHLO offers no AUTH: {out}"
        );
        assert_eq!(
            out.matches("530 5.7.0 Must issue a STARTTLS command first")
                .count(),
            2,
            "{out}"
        );
        assert_eq!(logins, 0);
    }

    #[tokio::test]
    async fn a_trusted_network_may_log_in_without_tls() {
        for (protocol, input) in [
            (
                Protocol::Imap,
                &b"a1 LOGIN help@contoso.com secret\r\na2 LOGOUT\r\n"[..],
            ),
            (
                Protocol::Pop3,
                b"USER help@contoso.com\r\nPASS secret\r\nQUIT\r\n",
            ),
            (
                Protocol::Smtp,
                b"EHLO x\r\nAUTH PLAIN AGhlbHBAY29udG9zby5jb20Ac2VjcmV0\r\nQUIT\r\n",
            ),
        ] {
            let (out, logins) =
                dialogue(protocol, "192.0.2.1:1000", &["198.51.100.0/24"], input).await;
            assert_eq!(logins, 1, "{protocol:?}: {out}");
        }
    }

    #[tokio::test]
    async fn a_loopback_listener_takes_passwords_without_tls() {
        let (out, logins) = dialogue(
            Protocol::Smtp,
            "127.0.0.1:587",
            &[],
            b"EHLO x\r\nAUTH PLAIN AGhlbHBAY29udG9zby5jb20Ac2VjcmV0\r\nQUIT\r\n",
        )
        .await;
        assert!(out.contains("250 AUTH PLAIN LOGIN"), "{out}");
        assert!(out.contains("535 5.7.8"), "{out}");
        assert_eq!(logins, 1);
    }

    #[tokio::test]
    async fn a_relayed_session_ends_when_the_client_stays_silent() {
        use tokio::io::AsyncBufReadExt as _;
        let idle = Duration::from_millis(300);
        // A client that talks every 100 ms for 900 ms is not cut off; then it falls silent.
        let (client, mut client_far) = tokio::io::duplex(4096);
        let (server, server_far) = tokio::io::duplex(4096);
        let relay = tokio::spawn(conn::relay(
            Box::new(client),
            b"a1 NOOP\r\n".to_vec(),
            server,
            b"* OK hello\r\n".to_vec(),
            Protocol::Imap,
            idle,
        ));
        let mut server_lines = tokio::io::BufReader::new(server_far);
        let mut line = String::new();
        server_lines.read_line(&mut line).await.unwrap();
        assert_eq!(line, "a1 NOOP\r\n", "what came with the login goes first");
        for i in 0..9 {
            client_far
                .write_all(format!("a{i} NOOP\r\n").as_bytes())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!relay.is_finished(), "a talking client is not cut off");
        let (idled, _) = tokio::time::timeout(Duration::from_secs(5), relay)
            .await
            .expect("the relay ends")
            .unwrap();
        assert!(idled, "the idle time ended it");
        let mut greeting = [0u8; 12];
        client_far.read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting, b"* OK hello\r\n");
    }
}
