//! Opening a session: connect, TLS (implicit or STARTTLS, never a silent plaintext fallback),
//! capability probe, and the SASL exchange with a token from a `TokenSource`, including the
//! error-challenge answers and one forced token refresh before a refusal is reported.

use std::path::PathBuf;
use std::time::Duration;

use oauthimap_types::{AccessToken, Mechanism, Security, TokenSource};
use secrecy::ExposeSecret as _;

use crate::conn::{Conn, TlsInfo};
use crate::error::{ImapError, Target};
use crate::protocol::{FrameLimits, Response, Status, StatusResponse};
use crate::sasl::{SaslErrorDetails, SaslMechanism, choose_mechanism, decode_error_challenge};
use crate::session::Session;
use crate::transcript::Transcript;

/// How to reach and log in to one mailbox.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Server host name (verified against the certificate) or address.
    pub host: String,
    /// Server port (993 for TLS, 143 for STARTTLS).
    pub port: u16,
    /// Implicit TLS, STARTTLS, or plain (loopback only).
    pub security: Security,
    /// SASL mechanism; `Auto` prefers OAUTHBEARER when both are offered.
    pub mechanism: Mechanism,
    /// The mailbox address (`user=` / `a=`).
    pub user: String,
    /// Extra CA certificates (PEM) trusted besides the OS trust store.
    pub extra_ca_pem: Option<PathBuf>,
    /// Limit for DNS + TCP connect, and for the TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for every read and write after that (IDLE has its own).
    pub io_timeout: Duration,
    /// The largest message (literal) accepted; larger ones fail the fetch.
    pub max_message_bytes: usize,
    /// Where to record the protocol exchange, if anywhere.
    pub transcript: Option<Transcript>,
}

impl SessionConfig {
    /// A configuration with defaults: `Auto` mechanism, no extra CA, 30 s connect, 120 s I/O,
    /// 100 MiB message limit, no transcript.
    pub fn new(host: &str, port: u16, security: Security, user: &str) -> Self {
        Self {
            host: host.to_owned(),
            port,
            security,
            mechanism: Mechanism::Auto,
            user: user.to_owned(),
            extra_ca_pem: None,
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_mins(2),
            max_message_bytes: FrameLimits::default().max_literal,
            transcript: None,
        }
    }

    pub(crate) fn target(&self) -> Target {
        Target {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
        }
    }
}

/// A connection that is ready to authenticate.
struct Opened {
    conn: Conn,
    capabilities: Vec<String>,
    tls: Option<TlsInfo>,
}

/// Connects, secures the connection, logs in with a token from `tokens`, and returns the
/// authenticated session.
///
/// If the server refuses the token, one fresh token is requested with
/// `access_token(true)` and the login is tried once more (on the same connection when the server
/// kept it open); only then is `AuthenticationFailed` reported. `NO [UNAVAILABLE]` is reported at
/// once as `AuthenticationUnavailable` (transient) without touching the token.
pub async fn connect_and_login<T: TokenSource>(
    config: &SessionConfig,
    tokens: &T,
) -> Result<Session, ImapError> {
    let target = config.target();
    let mut opened = open(config).await?;
    let mechanism = choose_mechanism(config.mechanism, &opened.capabilities).ok_or_else(|| {
        ImapError::NoMechanism {
            target: target.clone(),
            wanted: config.mechanism,
            offered: opened
                .capabilities
                .iter()
                .filter(|c| c.to_ascii_uppercase().starts_with("AUTH="))
                .cloned()
                .collect(),
        }
    })?;
    let token_error = |source| ImapError::Token {
        target: config.target(),
        source,
    };
    let token = tokens.access_token(false).await.map_err(token_error)?;
    let first = authenticate(&mut opened, config, mechanism, &token).await?;
    let (response, details) = match first {
        Attempt::LoggedIn(ok) => return finish(opened, mechanism, &ok).await,
        Attempt::Refused { response, details } => (response, details),
        Attempt::Unavailable(response) => {
            return Err(ImapError::AuthenticationUnavailable { target, response });
        }
    };
    tracing::info!(
        host = %config.host, port = config.port, user = %config.user, %response,
        challenge = %details.as_ref().map(SaslErrorDetails::summary).unwrap_or_default(),
        "IMAP login refused; retrying once with a freshly refreshed token"
    );
    let token = tokens.access_token(true).await.map_err(token_error)?;
    if opened.conn.closed {
        if let Some(t) = &config.transcript {
            t.note("the server closed the connection; reconnecting for the retry");
        }
        opened = open(config).await?;
    }
    match authenticate(&mut opened, config, mechanism, &token).await? {
        Attempt::LoggedIn(ok) => finish(opened, mechanism, &ok).await,
        Attempt::Refused {
            response,
            details: second,
        } => Err(ImapError::AuthenticationFailed {
            target,
            mechanism,
            response,
            details: second.or(details),
            refreshed: true,
        }),
        Attempt::Unavailable(response) => {
            Err(ImapError::AuthenticationUnavailable { target, response })
        }
    }
}

/// Connect, greeting, TLS, capabilities.
async fn open(config: &SessionConfig) -> Result<Opened, ImapError> {
    let target = config.target();
    let limits = FrameLimits {
        max_literal: config.max_message_bytes,
        ..FrameLimits::default()
    };
    let mut conn = Conn::open(
        target.clone(),
        config.security == Security::Plain,
        config.connect_timeout,
        config.io_timeout,
        limits,
        config.transcript.clone(),
    )
    .await?;
    let mut tls = None;
    if config.security == Security::Tls {
        let (connector, seen) = crate::tls::connector(&target, config.extra_ca_pem.as_deref())?;
        tls = Some(
            conn.upgrade_tls(&connector, &seen, config.connect_timeout)
                .await?,
        );
    }
    let greeting = match read_greeting(&mut conn).await {
        // A TLS port waits for the client's TLS hello and says nothing: the greeting never comes.
        Err(e) if config.security != Security::Tls && config.port == 993 => {
            return Err(ImapError::Tls {
                target,
                reason: format!(
                    "{e}; port 993 is IMAP over TLS, which waits for TLS before it says anything: choose security TLS"
                ),
            });
        }
        other => other?,
    };
    let mut capabilities = match greeting.capabilities() {
        Some(caps) => caps,
        None => capability(&mut conn).await?,
    };
    if config.security == Security::StartTls {
        if !has(&capabilities, "STARTTLS") {
            return Err(ImapError::StartTlsNotOffered { target });
        }
        // Build the TLS setup first so a bad CA file is reported before anything is sent.
        let (connector, seen) = crate::tls::connector(&target, config.extra_ca_pem.as_deref())?;
        conn.command_ok("STARTTLS", "start TLS", |_| {}).await?;
        tls = Some(
            conn.upgrade_tls(&connector, &seen, config.connect_timeout)
                .await?,
        );
        // Capabilities from before TLS must not be trusted (RFC 3501 section 6.2.1).
        capabilities = capability(&mut conn).await?;
    }
    Ok(Opened {
        conn,
        capabilities,
        tls,
    })
}

async fn read_greeting(conn: &mut Conn) -> Result<StatusResponse, ImapError> {
    loop {
        match conn.read("read the greeting").await? {
            Response::Status(s) if s.status == Status::Ok => return Ok(s),
            Response::Status(s) if s.status == Status::Bye => {
                return Err(conn.bye("read the greeting", &s));
            }
            Response::Status(s) if s.status == Status::Preauth => {
                // Pre-authenticated connections would skip our token entirely: refuse.
                return Err(conn.failed("log in (the server pre-authenticated the connection)", &s));
            }
            _ => {}
        }
    }
}

async fn capability(conn: &mut Conn) -> Result<Vec<String>, ImapError> {
    let mut caps = Vec::new();
    let status = conn
        .command_ok("CAPABILITY", "list capabilities", |r| {
            if let Response::Capability(c) = r {
                caps = c;
            }
        })
        .await?;
    Ok(if caps.is_empty() {
        status.capabilities().unwrap_or_default()
    } else {
        caps
    })
}

pub(crate) fn has(capabilities: &[String], name: &str) -> bool {
    capabilities.iter().any(|c| c.eq_ignore_ascii_case(name))
}

enum Attempt {
    LoggedIn(StatusResponse),
    Refused {
        response: String,
        details: Option<SaslErrorDetails>,
    },
    Unavailable(String),
}

/// Continuations we answer before cancelling an exchange that does not end.
const MAX_CONTINUATIONS: usize = 3;

/// One AUTHENTICATE exchange.
async fn authenticate(
    opened: &mut Opened,
    config: &SessionConfig,
    mechanism: SaslMechanism,
    token: &AccessToken,
) -> Result<Attempt, ImapError> {
    let conn = &mut opened.conn;
    let action = format!("authenticate with {mechanism}");
    let secret = token.secret.expose_secret();
    let initial = mechanism.initial_response(&config.user, &config.host, config.port, secret);
    if let Some(t) = conn.transcript() {
        t.add_secret(secret);
        t.add_secret(&initial);
    }
    let tag = conn.tag();
    let sasl_ir = has(&opened.capabilities, "SASL-IR");
    if sasl_ir {
        let line = format!("{tag} AUTHENTICATE {} {initial}", mechanism.name());
        conn.send_line(&line, true, &action).await?;
    } else {
        let line = format!("{tag} AUTHENTICATE {}", mechanism.name());
        conn.send_line(&line, false, &action).await?;
    }
    let mut sent_initial = sasl_ir;
    let mut details = None;
    let mut continuations = 0;
    loop {
        match conn.read(&action).await? {
            Response::Continuation(text) => {
                continuations += 1;
                if !sent_initial {
                    sent_initial = true;
                    conn.send_line(&initial, true, &action).await?;
                } else if continuations > MAX_CONTINUATIONS {
                    conn.send_line("*", false, &action).await?;
                } else {
                    // An error challenge: keep its reason, answer as the mechanism's spec says.
                    details = details.or_else(|| decode_error_challenge(&text));
                    conn.send_line(mechanism.error_challenge_answer(), false, &action)
                        .await?;
                }
            }
            Response::Tagged { tag: t, status } if t == tag => {
                return Ok(match status.status {
                    Status::Ok => Attempt::LoggedIn(status),
                    _ if status.code_name().as_deref() == Some("UNAVAILABLE") => {
                        Attempt::Unavailable(status.to_string())
                    }
                    Status::No => Attempt::Refused {
                        response: status.to_string(),
                        details,
                    },
                    _ => return Err(conn.failed(&action, &status)),
                });
            }
            Response::Status(s) if s.status == Status::Bye => return Err(conn.bye(&action, &s)),
            _ => {}
        }
    }
}

/// Capabilities after login (they may change), then the session.
async fn finish(
    mut opened: Opened,
    mechanism: SaslMechanism,
    ok: &StatusResponse,
) -> Result<Session, ImapError> {
    let capabilities = match ok.capabilities() {
        Some(caps) => caps,
        None => capability(&mut opened.conn).await?,
    };
    Ok(Session::new(
        opened.conn,
        capabilities,
        mechanism,
        opened.tls,
    ))
}
