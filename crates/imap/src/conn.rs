//! One IMAP connection: TCP (connect timeout, loopback check for plain IMAP), the STARTTLS or
//! implicit-TLS upgrade, buffered reading of framed responses with a timeout on every read,
//! tagged commands, and the transcript hook. It knows the wire, not what commands mean.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BufMut as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{ImapError, Target, bye_means_token_expired, command_hint};
use crate::protocol::{
    self, FrameLimits, Framer, Progress, RawResponse, Response, Segment, Status, StatusResponse,
};
use crate::tls::{SeenCert, handshake_error};
use crate::transcript::Transcript;

const READ_CHUNK: usize = 16 * 1024;

enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An authenticated connection's byte stream, handed over for relaying (the gateway): plain TCP
/// or TLS, as the session was opened.
#[derive(Debug)]
pub struct RawStream(Transport);

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Plain(_) => "Plain",
            Transport::Tls(_) => "Tls",
        })
    }
}

impl tokio::io::AsyncRead for RawStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.get_mut().0 {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for RawStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match &mut self.get_mut().0 {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.get_mut().0 {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.get_mut().0 {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl RawStream {
    /// Connects TCP for a line protocol that shares this crate's TLS rules (the gateway's POP3
    /// and SMTP upstreams): only to loopback addresses when `loopback_only`.
    pub async fn connect(
        target: &Target,
        loopback_only: bool,
        timeout: Duration,
    ) -> Result<Self, ImapError> {
        let conn = Conn::open(
            target.clone(),
            loopback_only,
            timeout,
            timeout,
            FrameLimits::default(),
            None,
        )
        .await?;
        let (stream, _) = conn.into_raw().ok_or_else(|| ImapError::Connect {
            target: target.clone(),
            reason: "the connection closed at once".into(),
        })?;
        Ok(stream)
    }

    /// Whether the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.0, Transport::Tls(_))
    }

    /// The TLS handshake on a plain stream (implicit TLS at once, or after the protocol's
    /// STARTTLS answer), verified as every session here is: the OS trust store plus `extra_ca`.
    pub async fn start_tls(
        self,
        target: &Target,
        extra_ca: Option<&std::path::Path>,
        timeout: Duration,
    ) -> Result<Self, ImapError> {
        let Transport::Plain(tcp) = self.0 else {
            return Err(ImapError::Tls {
                target: target.clone(),
                reason: "the connection is already encrypted".into(),
            });
        };
        let (connector, seen) = crate::tls::connector(target, extra_ca)?;
        let name = crate::tls::server_name(target)?;
        match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => Ok(Self(Transport::Tls(Box::new(tls)))),
            Ok(Err(e)) => Err(handshake_error(target, &seen, e)),
            Err(_) => Err(ImapError::Timeout {
                target: target.clone(),
                action: "complete the TLS handshake".into(),
                after: timeout,
            }),
        }
    }
}

/// Negotiated TLS parameters, for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1_3` or `TLSv1_2`.
    pub version: String,
    /// The cipher suite.
    pub cipher_suite: String,
    /// The server certificate's subject, when it could be read.
    pub certificate_subject: Option<String>,
    /// The server certificate's issuer, when it could be read.
    pub certificate_issuer: Option<String>,
    /// When the server certificate expires (seconds since the Unix epoch), when it could be read.
    pub certificate_not_after: Option<i64>,
    /// How long the TLS handshake took.
    pub handshake: Duration,
}

pub(crate) struct Conn {
    transport: Option<Transport>,
    /// Bytes read and not framed yet: lines, and the start of a literal (the rest of a literal
    /// is read straight into the framer's buffer for it).
    buf: Vec<u8>,
    io_timeout: Duration,
    framer: Framer,
    transcript: Option<Transcript>,
    next_tag: u32,
    pub(crate) target: Target,
    /// Set once the server said BYE or the connection failed: no further command may be sent.
    pub(crate) closed: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("target", &self.target)
            .field("tls", &matches!(self.transport, Some(Transport::Tls(_))))
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// `timeout` from now. A timeout past what an `Instant` holds (`--timeout 300000000000y`) waits
/// a century instead of panicking.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_hours(100 * 365 * 24))
}

impl Conn {
    /// Resolves and connects (only to loopback addresses when `loopback_only`).
    pub(crate) async fn open(
        target: Target,
        loopback_only: bool,
        connect_timeout: Duration,
        io_timeout: Duration,
        limits: FrameLimits,
        transcript: Option<Transcript>,
    ) -> Result<Self, ImapError> {
        let deadline = deadline_after(connect_timeout);
        let host = target.host.clone();
        let lookup = tokio::net::lookup_host((host.as_str(), target.port));
        let resolved = tokio::time::timeout_at(deadline, lookup).await;
        let addrs: Vec<SocketAddr> = match resolved {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => {
                return Err(ImapError::Resolve {
                    target,
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(ImapError::Timeout {
                    target,
                    action: "resolve the server name".into(),
                    after: connect_timeout,
                });
            }
        };
        let addrs: Vec<SocketAddr> = if loopback_only {
            let loopback: Vec<_> = addrs.into_iter().filter(|a| a.ip().is_loopback()).collect();
            if loopback.is_empty() {
                return Err(ImapError::PlaintextRefused { target });
            }
            loopback
        } else {
            addrs
        };
        if addrs.is_empty() {
            return Err(ImapError::Resolve {
                target,
                reason: "no addresses".into(),
            });
        }
        let mut failures = Vec::new();
        for addr in addrs {
            match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => {
                    let _ = tcp.set_nodelay(true);
                    if let Some(t) = &transcript {
                        t.note(&format!(
                            "connected to {}:{} (TCP)",
                            target.host, target.port
                        ));
                    }
                    return Ok(Self {
                        transport: Some(Transport::Plain(tcp)),
                        buf: Vec::with_capacity(2 * READ_CHUNK),
                        io_timeout,
                        framer: Framer::new(limits),
                        transcript,
                        next_tag: 0,
                        target,
                        closed: false,
                    });
                }
                Ok(Err(e)) => failures.push(format!("{addr}: {e}")),
                Err(_) => {
                    return Err(ImapError::Timeout {
                        target,
                        action: "connect".into(),
                        after: connect_timeout,
                    });
                }
            }
        }
        let mut reason = failures.join("; ");
        if reason.contains("refused") && !matches!(target.port, 143 | 993) {
            let _ = std::fmt::Write::write_fmt(
                &mut reason,
                format_args!(
                    " (nothing listens on port {}: IMAP servers listen on 993 for TLS and 143 for STARTTLS)",
                    target.port
                ),
            );
        }
        Err(ImapError::Connect { target, reason })
    }

    /// The byte stream and what was read from it but not consumed yet; `None` once closed.
    pub(crate) fn into_raw(mut self) -> Option<(RawStream, Vec<u8>)> {
        if self.closed {
            return None;
        }
        let transport = self.transport.take()?;
        Some((RawStream(transport), std::mem::take(&mut self.buf)))
    }

    pub(crate) fn transcript(&self) -> Option<&Transcript> {
        self.transcript.as_ref()
    }

    fn note(&self, text: &str) {
        if let Some(t) = &self.transcript {
            t.note(text);
        }
    }

    /// Upgrades to TLS (implicit TLS at once, or after STARTTLS's OK). Refuses if the server
    /// already sent bytes past the STARTTLS answer (they could be injected plaintext).
    pub(crate) async fn upgrade_tls(
        &mut self,
        connector: &TlsConnector,
        seen: &SeenCert,
        timeout: Duration,
    ) -> Result<TlsInfo, ImapError> {
        if !self.buf.is_empty() {
            return Err(ImapError::Tls {
                target: self.target.clone(),
                reason:
                    "the server sent data before the TLS handshake (possible injection); refusing"
                        .into(),
            });
        }
        let Some(Transport::Plain(tcp)) = self.transport.take() else {
            return Err(ImapError::Tls {
                target: self.target.clone(),
                reason: "the connection is already encrypted".into(),
            });
        };
        self.closed = true;
        let name = crate::tls::server_name(&self.target)?;
        let handshake_started = Instant::now();
        let tls = match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return Err(handshake_error(&self.target, seen, e)),
            Err(_) => {
                return Err(ImapError::Timeout {
                    target: self.target.clone(),
                    action: "complete the TLS handshake".into(),
                    after: timeout,
                });
            }
        };
        let (_, session) = tls.get_ref();
        let names = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let info = TlsInfo {
            version: session
                .protocol_version()
                .map_or_else(|| "unknown".into(), |v| format!("{v:?}")),
            cipher_suite: session
                .negotiated_cipher_suite()
                .map_or_else(|| "unknown".into(), |s| format!("{:?}", s.suite())),
            certificate_subject: names.as_ref().map(|n| n.subject.clone()),
            certificate_issuer: names.as_ref().map(|n| n.issuer.clone()),
            certificate_not_after: names.map(|n| n.not_after),
            handshake: handshake_started.elapsed(),
        };
        if let Some(t) = &self.transcript {
            t.tls_done(info.handshake);
        }
        self.note(&format!(
            "TLS established: {} {}, certificate subject {}",
            info.version,
            info.cipher_suite,
            info.certificate_subject.as_deref().unwrap_or("unknown")
        ));
        self.transport = Some(Transport::Tls(Box::new(tls)));
        self.closed = false;
        Ok(info)
    }

    /// The next command tag (`A1`, `A2`, ...).
    pub(crate) fn tag(&mut self) -> String {
        self.next_tag += 1;
        format!("A{}", self.next_tag)
    }

    fn io_error(&mut self, action: &str, source: std::io::Error) -> ImapError {
        self.closed = true;
        ImapError::Io {
            target: self.target.clone(),
            action: action.to_owned(),
            source,
        }
    }

    fn timeout_error(&mut self, action: &str) -> ImapError {
        self.closed = true;
        ImapError::Timeout {
            target: self.target.clone(),
            action: action.to_owned(),
            after: self.io_timeout,
        }
    }

    /// Sends one line (CRLF added). `sensitive` lines are redacted in the transcript.
    pub(crate) async fn send_line(
        &mut self,
        line: &str,
        sensitive: bool,
        action: &str,
    ) -> Result<(), ImapError> {
        if let Some(t) = &self.transcript {
            t.client(line, sensitive);
        }
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let write = async {
            match self.transport.as_mut() {
                Some(Transport::Plain(s)) => {
                    s.write_all(&bytes).await?;
                    s.flush().await
                }
                Some(Transport::Tls(s)) => {
                    s.write_all(&bytes).await?;
                    s.flush().await
                }
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "the connection is closed",
                )),
            }
        };
        match tokio::time::timeout(self.io_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.io_error(action, e)),
            Err(_) => Err(self.timeout_error(action)),
        }
    }

    /// Reads more bytes; `deadline` replaces the per-read timeout (IDLE). `Ok(false)` when the
    /// deadline passed. With `literal` (the bytes the literal being framed still misses), they
    /// go straight into the literal's own buffer, at most that many; otherwise into the buffer's
    /// spare room. Either way without zeroing or an extra copy.
    async fn fill(
        &mut self,
        action: &str,
        deadline: Option<Instant>,
        literal: Option<usize>,
    ) -> Result<bool, ImapError> {
        if literal.is_none() && self.buf.capacity() - self.buf.len() < READ_CHUNK {
            self.buf.reserve(READ_CHUNK);
        }
        let (transport, buf, framer) = (&mut self.transport, &mut self.buf, &mut self.framer);
        let read = async move {
            let room = literal.and_then(|missing| Some((framer.literal_room()?, missing)));
            match (transport.as_mut(), room) {
                (Some(Transport::Plain(s)), Some((room, missing))) => {
                    s.read_buf(&mut room.limit(missing)).await
                }
                (Some(Transport::Tls(s)), Some((room, missing))) => {
                    s.read_buf(&mut room.limit(missing)).await
                }
                (Some(Transport::Plain(s)), None) => s.read_buf(buf).await,
                (Some(Transport::Tls(s)), None) => s.read_buf(buf).await,
                (None, _) => Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "the connection is closed",
                )),
            }
        };
        let result = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                Ok(r) => r,
                Err(_) => return Ok(false),
            },
            None => match tokio::time::timeout(self.io_timeout, read).await {
                Ok(r) => r,
                Err(_) => return Err(self.timeout_error(action)),
            },
        };
        match result {
            Ok(0) => Err(self.io_error(
                action,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ),
            )),
            Ok(_) => Ok(true),
            Err(e) => Err(self.io_error(action, e)),
        }
    }

    /// Reads one response; `None` only when `deadline` passed first (what was read of the
    /// response so far is kept for the next call).
    pub(crate) async fn read_until(
        &mut self,
        action: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<Response>, ImapError> {
        loop {
            let literal = match self.framer.advance(&mut self.buf) {
                Ok(Progress::Complete(raw)) => {
                    self.record(&raw);
                    return match protocol::parse(raw) {
                        Ok(response) => Ok(Some(response)),
                        Err(source) => {
                            self.closed = true;
                            Err(ImapError::Protocol {
                                target: self.target.clone(),
                                action: action.to_owned(),
                                source,
                            })
                        }
                    };
                }
                Ok(Progress::Bytes) => None,
                Ok(Progress::Literal(missing)) => Some(missing),
                Err(source) => {
                    self.closed = true;
                    return Err(ImapError::Protocol {
                        target: self.target.clone(),
                        action: action.to_owned(),
                        source,
                    });
                }
            };
            if !self.fill(action, deadline, literal).await? {
                return Ok(None);
            }
        }
    }

    /// Reads one response with the usual per-read timeout.
    pub(crate) async fn read(&mut self, action: &str) -> Result<Response, ImapError> {
        match self.read_until(action, None).await? {
            Some(r) => Ok(r),
            None => Err(self.timeout_error(action)),
        }
    }

    fn record(&self, raw: &RawResponse) {
        let Some(t) = &self.transcript else { return };
        let mut segments = raw.segments.iter().peekable();
        while let Some(segment) = segments.next() {
            match segment {
                Segment::Text(text) => {
                    let mut line = String::from_utf8_lossy(text).into_owned();
                    if let Some(Segment::Literal(l)) = segments.peek() {
                        let _ = write!(line, "{{{}}}", l.len());
                    }
                    t.server(&line);
                }
                Segment::Literal(l) => t.server(&format!("[{} bytes]", l.len())),
            }
        }
    }

    /// The error for a `BYE` received while doing `action`.
    pub(crate) fn bye(&mut self, action: &str, bye: &StatusResponse) -> ImapError {
        self.closed = true;
        ImapError::SessionEnded {
            target: self.target.clone(),
            action: action.to_owned(),
            reason: bye.to_string(),
            token_expired: bye_means_token_expired(&bye.text),
        }
    }

    /// Sends `TAG command` and hands every untagged response to `each` until the tagged answer,
    /// which is returned whatever its status. An untagged BYE ends the session with an error.
    pub(crate) async fn command_with(
        &mut self,
        command: &str,
        action: &str,
        mut each: impl FnMut(Response) + Send,
    ) -> Result<StatusResponse, ImapError> {
        if self.closed {
            return Err(self.io_error(
                action,
                std::io::Error::new(std::io::ErrorKind::NotConnected, "the session has ended"),
            ));
        }
        let tag = self.tag();
        self.send_line(&format!("{tag} {command}"), false, action)
            .await?;
        loop {
            match self.read(action).await? {
                Response::Tagged { tag: t, status } if t == tag => return Ok(status),
                Response::Status(s) if s.status == Status::Bye => return Err(self.bye(action, &s)),
                other => each(other),
            }
        }
    }

    /// Like `command_with`, but NO and BAD become `CommandFailed`.
    pub(crate) async fn command_ok(
        &mut self,
        command: &str,
        action: &str,
        each: impl FnMut(Response) + Send,
    ) -> Result<StatusResponse, ImapError> {
        let status = self.command_with(command, action, each).await?;
        if status.status == Status::Ok {
            Ok(status)
        } else {
            Err(self.failed(action, &status))
        }
    }

    /// The error for a NO or BAD answer.
    pub(crate) fn failed(&self, action: &str, status: &StatusResponse) -> ImapError {
        let response = status.to_string();
        ImapError::CommandFailed {
            target: self.target.clone(),
            action: action.to_owned(),
            hint: command_hint(&response),
            response,
            code: status.code.clone(),
        }
    }

    /// Closes the transport (TLS `close_notify` where possible).
    pub(crate) async fn shutdown(&mut self) {
        self.closed = true;
        let close = async {
            match self.transport.as_mut() {
                Some(Transport::Plain(s)) => s.shutdown().await,
                Some(Transport::Tls(s)) => s.shutdown().await,
                None => Ok(()),
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
        self.transport = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_timeout_past_what_an_instant_holds_connects_without_a_panic() {
        // `oauthimap diagnose --timeout 300000000000y` panicked here ("overflow when adding
        // duration to instant").
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Target {
            host: "127.0.0.1".into(),
            port,
            user: "help@contoso.com".into(),
        };
        let conn = Conn::open(
            target,
            true,
            Duration::MAX,
            Duration::MAX,
            FrameLimits::default(),
            None,
        )
        .await;
        assert!(conn.is_ok(), "connected: {:?}", conn.err());
        drop(listener);
    }
}
