//! The upstream logins of the gateway's line protocols: POP3 (RFC 1939, `STLS` from RFC 2595,
//! `AUTH` from RFC 5034) and SMTP submission (RFC 6409, `STARTTLS` from RFC 3207, `AUTH` from
//! RFC 4954), both with SASL XOAUTH2 as Microsoft and Google document it. TLS is this project's
//! one TLS client setup (the OS trust store plus an optional extra CA; never a plaintext
//! fallback). A refused token is retried once with a freshly refreshed one, as for IMAP.
//!
//! The XOAUTH2 exchange is sent without an initial response (`AUTH XOAUTH2`, then the response
//! after the server's empty challenge), the form both providers document and every RFC 4954 or
//! RFC 5034 server accepts; an error challenge is answered with an empty line.

use std::path::PathBuf;
use std::time::Duration;

use oauthimap_imap::{
    RawStream, SaslErrorDetails, Target, decode_error_challenge, xoauth2_initial_response,
};
use oauthimap_types::{AccessToken, FailureKind, Security, TokenError, TokenSource};
use secrecy::ExposeSecret as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The longest reply line accepted from an upstream server.
const MAX_REPLY_LINE: usize = 64 * 1024;

/// How to reach one mailbox's POP3 or SMTP server.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    pub host: String,
    pub port: u16,
    /// Implicit TLS, STARTTLS/STLS, or plain (loopback only).
    pub security: Security,
    /// An extra CA (PEM) to trust besides the OS trust store.
    pub extra_ca: Option<PathBuf>,
    /// The mailbox address (`user=` of XOAUTH2).
    pub user: String,
    /// The name we give in `EHLO` (SMTP).
    pub helo: String,
    /// For connecting, the TLS handshake and every reply.
    pub timeout: Duration,
}

impl UpstreamTarget {
    fn target(&self) -> Target {
        Target {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
        }
    }
}

/// Why the upstream session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting, TLS, a timeout, a server that is busy or answers oddly: try again later.
    #[error("{0}")]
    Unavailable(String),
    /// The server refused the token, a freshly refreshed one too.
    #[error("{host}:{port} refused the token of {user}: {response}{}", details.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        host: String,
        port: u16,
        user: String,
        response: String,
        details: Option<SaslErrorDetails>,
    },
    /// No token could be had.
    #[error("no access token for {user}: {source}")]
    Token { user: String, source: TokenError },
}

impl UpstreamError {
    /// Whether waiting may help.
    pub fn kind(&self) -> FailureKind {
        match self {
            UpstreamError::Unavailable(_) => FailureKind::Transient,
            UpstreamError::Refused { .. } => FailureKind::Permanent,
            UpstreamError::Token { source, .. } => source.kind,
        }
    }
}

/// A logged-in upstream session: the stream, what the server sent past the login's answer, and
/// (SMTP) the extensions it announced after TLS.
#[derive(Debug)]
pub struct LineSession {
    pub stream: RawStream,
    pub pending: Vec<u8>,
    pub extensions: Vec<String>,
}

/// A buffered line conversation with a timeout on every read and write.
struct Lines {
    stream: RawStream,
    buf: Vec<u8>,
    target: UpstreamTarget,
}

impl Lines {
    async fn open(target: &UpstreamTarget) -> Result<Self, UpstreamError> {
        let t = target.target();
        let stream = RawStream::connect(&t, target.security == Security::Plain, target.timeout)
            .await
            .map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
        let mut lines = Lines {
            stream,
            buf: Vec::new(),
            target: target.clone(),
        };
        if target.security == Security::Tls {
            lines = lines.tls().await?;
        }
        Ok(lines)
    }

    /// The TLS handshake on the connection as it is (implicit TLS, or after `STLS`/`STARTTLS`).
    async fn tls(self) -> Result<Self, UpstreamError> {
        if !self.buf.is_empty() {
            return Err(self.unavailable(
                "the server sent data before the TLS handshake (possible injection); refusing",
            ));
        }
        let stream = self
            .stream
            .start_tls(
                &self.target.target(),
                self.target.extra_ca.as_deref(),
                self.target.timeout,
            )
            .await
            .map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
        Ok(Self { stream, ..self })
    }

    fn unavailable(&self, why: &str) -> UpstreamError {
        UpstreamError::Unavailable(format!(
            "{}:{} for {}: {why}",
            self.target.host, self.target.port, self.target.user
        ))
    }

    async fn send(&mut self, line: &str) -> Result<(), UpstreamError> {
        let write = async {
            self.stream.write_all(line.as_bytes()).await?;
            self.stream.write_all(b"\r\n").await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.target.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.unavailable(&format!("cannot send: {e}"))),
            Err(_) => Err(self.unavailable("no progress sending a command")),
        }
    }

    async fn line(&mut self) -> Result<String, UpstreamError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
            }
            if self.buf.len() > MAX_REPLY_LINE {
                return Err(self.unavailable("a reply line is too long"));
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(self.target.timeout, self.stream.read(&mut chunk));
            match read.await {
                Ok(Ok(0)) => return Err(self.unavailable("the server closed the connection")),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(self.unavailable(&format!("cannot read: {e}"))),
                Err(_) => {
                    return Err(self.unavailable(&format!(
                        "no answer within {} s",
                        self.target.timeout.as_secs()
                    )));
                }
            }
        }
    }

    /// An SMTP reply: its code and every line's text (RFC 5321 section 4.2).
    async fn reply(&mut self) -> Result<(u16, Vec<String>), UpstreamError> {
        let mut texts = Vec::new();
        loop {
            let line = self.line().await?;
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| self.unavailable(&format!("not an SMTP reply: {}", clip(&line))))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            texts.push(line.get(4..).unwrap_or_default().to_owned());
            if !more {
                return Ok((code, texts));
            }
        }
    }

    fn into_session(self, extensions: Vec<String>) -> LineSession {
        LineSession {
            stream: self.stream,
            pending: self.buf,
            extensions,
        }
    }
}

fn clip(text: &str) -> String {
    crate::conn::one_line(text).chars().take(200).collect()
}

/// One login attempt's outcome.
enum Attempt {
    LoggedIn(LineSession),
    Refused {
        response: String,
        details: Option<SaslErrorDetails>,
    },
}

/// Logs in to a POP3 server with XOAUTH2 and returns the session, ready to relay.
pub async fn pop3_login<T: TokenSource>(
    target: &UpstreamTarget,
    tokens: &T,
) -> Result<LineSession, UpstreamError> {
    with_retry(target, tokens, pop3_attempt).await
}

/// Logs in to an SMTP submission server with XOAUTH2 (after `EHLO` and TLS) and returns the
/// session, ready to relay, with the extensions the server announced.
pub async fn smtp_login<T: TokenSource>(
    target: &UpstreamTarget,
    tokens: &T,
) -> Result<LineSession, UpstreamError> {
    with_retry(target, tokens, smtp_attempt).await
}

async fn with_retry<T, F, Fut>(
    target: &UpstreamTarget,
    tokens: &T,
    attempt: F,
) -> Result<LineSession, UpstreamError>
where
    T: TokenSource,
    F: Fn(UpstreamTarget, AccessToken) -> Fut,
    Fut: std::future::Future<Output = Result<Attempt, UpstreamError>>,
{
    let token_error = |source| UpstreamError::Token {
        user: target.user.clone(),
        source,
    };
    let token = tokens.access_token(false).await.map_err(token_error)?;
    let first = match attempt(target.clone(), token).await? {
        Attempt::LoggedIn(session) => return Ok(session),
        Attempt::Refused { response, details } => (response, details),
    };
    tracing::info!(host = %target.host, port = target.port, user = %target.user, response = %first.0,
        "upstream login refused; retrying once with a freshly refreshed token");
    let token = tokens.access_token(true).await.map_err(token_error)?;
    match attempt(target.clone(), token).await? {
        Attempt::LoggedIn(session) => Ok(session),
        Attempt::Refused { response, details } => Err(UpstreamError::Refused {
            host: target.host.clone(),
            port: target.port,
            user: target.user.clone(),
            response,
            details: details.or(first.1),
        }),
    }
}

async fn pop3_attempt(
    target: UpstreamTarget,
    token: AccessToken,
) -> Result<Attempt, UpstreamError> {
    let mut c = Lines::open(&target).await?;
    let greeting = c.line().await?;
    if !greeting.starts_with("+OK") {
        return Err(c.unavailable(&format!("the greeting is {}", clip(&greeting))));
    }
    if target.security == Security::StartTls {
        c.send("STLS").await?;
        let answer = c.line().await?;
        if !answer.starts_with("+OK") {
            return Err(c.unavailable(&format!(
                "STLS refused ({}); we do not continue in plaintext",
                clip(&answer)
            )));
        }
        c = c.tls().await?;
    }
    c.send("AUTH XOAUTH2").await?;
    let mut sent = false;
    let mut details = None;
    for _ in 0..4 {
        let answer = c.line().await?;
        if answer.starts_with("+OK") {
            return Ok(Attempt::LoggedIn(c.into_session(Vec::new())));
        }
        if let Some(challenge) = answer.strip_prefix('+') {
            if sent {
                // An error challenge: keep its reason, answer with an empty response.
                details = details.or_else(|| decode_error_challenge(challenge));
                c.send("").await?;
            } else {
                sent = true;
                let initial = xoauth2_initial_response(&target.user, token.secret.expose_secret());
                c.send(&initial).await?;
            }
            continue;
        }
        let transient = ["[SYS/TEMP]", "[IN-USE]", "[LOGIN-DELAY]"]
            .iter()
            .any(|code| answer.to_ascii_uppercase().contains(code));
        if transient {
            return Err(c.unavailable(&clip(&answer)));
        }
        return Ok(Attempt::Refused {
            response: clip(&answer),
            details,
        });
    }
    Err(c.unavailable("the XOAUTH2 exchange does not end"))
}

fn has_extension(extensions: &[String], name: &str) -> bool {
    extensions.iter().any(|e| {
        e.split_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case(name))
    })
}

fn offers_xoauth2(extensions: &[String]) -> bool {
    extensions.iter().any(|e| {
        let mut words = e.split_whitespace();
        words.next().is_some_and(|k| k.eq_ignore_ascii_case("AUTH"))
            && words.any(|m| m.eq_ignore_ascii_case("XOAUTH2"))
    })
}

async fn ehlo(c: &mut Lines) -> Result<Vec<String>, UpstreamError> {
    let helo = c.target.helo.clone();
    c.send(&format!("EHLO {helo}")).await?;
    let (code, lines) = c.reply().await?;
    if code != 250 {
        return Err(c.unavailable(&format!("EHLO answered {code} {}", clip(&lines.join(" ")))));
    }
    Ok(lines.into_iter().skip(1).collect())
}

async fn smtp_attempt(
    target: UpstreamTarget,
    token: AccessToken,
) -> Result<Attempt, UpstreamError> {
    let mut c = Lines::open(&target).await?;
    let (code, text) = c.reply().await?;
    if code != 220 {
        return Err(c.unavailable(&format!("the greeting is {code} {}", clip(&text.join(" ")))));
    }
    let mut extensions = ehlo(&mut c).await?;
    if target.security == Security::StartTls {
        if !has_extension(&extensions, "STARTTLS") {
            return Err(c.unavailable(
                "the server does not offer STARTTLS and we refuse to continue in plaintext; check the port (587)",
            ));
        }
        c.send("STARTTLS").await?;
        let (code, text) = c.reply().await?;
        if code != 220 {
            return Err(c.unavailable(&format!(
                "STARTTLS answered {code} {}",
                clip(&text.join(" "))
            )));
        }
        c = c.tls().await?;
        // What the server said before TLS must not be trusted (RFC 3207 section 4.2).
        extensions = ehlo(&mut c).await?;
    }
    if !offers_xoauth2(&extensions) {
        return Err(UpstreamError::Refused {
            host: target.host.clone(),
            port: target.port,
            user: target.user.clone(),
            response: format!(
                "the server does not offer AUTH XOAUTH2 (it offers: {})",
                clip(&extensions.join(", "))
            ),
            details: None,
        });
    }
    c.send("AUTH XOAUTH2").await?;
    let mut sent = false;
    let mut details = None;
    for _ in 0..4 {
        let (code, text) = c.reply().await?;
        let text = text.join(" ");
        match code {
            235 => return Ok(Attempt::LoggedIn(c.into_session(extensions))),
            334 if !sent => {
                sent = true;
                let initial = xoauth2_initial_response(&target.user, token.secret.expose_secret());
                c.send(&initial).await?;
            }
            334 => {
                details = details.or_else(|| decode_error_challenge(&text));
                c.send("").await?;
            }
            400..=499 => return Err(c.unavailable(&format!("{code} {}", clip(&text)))),
            _ => {
                return Ok(Attempt::Refused {
                    response: format!("{code} {}", clip(&text)),
                    details,
                });
            }
        }
    }
    Err(c.unavailable("the XOAUTH2 exchange does not end"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_matched_by_keyword() {
        let ext = vec![
            "PIPELINING".to_owned(),
            "SIZE 35882577".to_owned(),
            "AUTH LOGIN XOAUTH2 PLAIN".to_owned(),
            "STARTTLS".to_owned(),
        ];
        assert!(has_extension(&ext, "size"));
        assert!(has_extension(&ext, "STARTTLS"));
        assert!(!has_extension(&ext, "SMTPUTF8"));
        assert!(offers_xoauth2(&ext));
        assert!(!offers_xoauth2(&["AUTH PLAIN LOGIN".to_owned()]));
        assert!(!offers_xoauth2(&["XOAUTH2".to_owned()]));
    }
}
