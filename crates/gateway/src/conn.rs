//! What the gateway's three protocols share on the client side: the buffered connection (line
//! reads with a length cap and a silence timeout, the TLS upgrade), the SASL PLAIN decoding and
//! credential checks, whether a password may be sent on this connection, and the relay that
//! copies both directions untouched once the upstream session is open, ending it after the
//! protocol's idle time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::{Listener, Protocol, Shared};

/// The longest command line accepted before login.
pub(crate) const MAX_LINE: usize = 64 * 1024;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Failed logins before the connection is closed.
pub(crate) const MAX_FAILURES: u32 = 3;

pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Why a client connection ends before the relay.
#[derive(Debug)]
pub(crate) enum End {
    Closed,
    Io(std::io::Error),
    Timeout,
    /// Refused with the protocol's error, then closed (a flood or an injection attempt).
    Refused(&'static str),
}

impl From<std::io::Error> for End {
    fn from(e: std::io::Error) -> Self {
        End::Io(e)
    }
}

/// One client connection before login.
pub(crate) struct Client {
    pub(crate) stream: Box<dyn Stream>,
    /// Read and not consumed yet.
    pub(crate) buf: Vec<u8>,
    pub(crate) tls: bool,
    pub(crate) timeout: Duration,
    pub(crate) upstream_timeout: Duration,
    pub(crate) remote: SocketAddr,
}

impl Client {
    /// A new connection; on an implicit-TLS listener the handshake is done first (`None` when
    /// it fails).
    pub(crate) async fn accept(
        tcp: tokio::net::TcpStream,
        remote: SocketAddr,
        listener: &Listener,
        shared: &Shared,
    ) -> Option<Self> {
        let mut client = Client {
            stream: Box::new(tcp),
            buf: Vec::new(),
            tls: false,
            timeout: shared.config.login_timeout,
            upstream_timeout: shared.config.upstream_timeout,
            remote,
        };
        if listener.implicit_tls {
            let acceptor = shared.tls.as_ref().map(crate::tls::Acceptor::get)?;
            if let Err(e) = client.upgrade(&acceptor).await {
                tracing::debug!(%remote, error = ?e, "gateway TLS handshake failed");
                return None;
            }
        }
        Some(client)
    }

    pub(crate) async fn write(&mut self, text: &str) -> Result<(), End> {
        self.stream.write_all(text.as_bytes()).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// The TLS handshake, on the connection as it is (implicit TLS, or after `STARTTLS`/`STLS`).
    pub(crate) async fn upgrade(
        &mut self,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> Result<(), End> {
        let stream = std::mem::replace(
            &mut self.stream,
            Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink())),
        );
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                self.stream = Box::new(tls);
                self.tls = true;
                Ok(())
            }
            Ok(Err(e)) => Err(End::Io(e)),
            Err(_) => Err(End::Timeout),
        }
    }

    /// The STARTTLS step once the protocol's "go ahead" is written: refuses bytes the client
    /// sent before the handshake (they could be injected plaintext), then upgrades.
    pub(crate) async fn start_tls(
        &mut self,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> Result<(), End> {
        if !self.buf.is_empty() {
            return Err(End::Refused("data after STARTTLS before the TLS handshake"));
        }
        self.upgrade(acceptor).await
    }

    async fn fill(&mut self) -> Result<(), End> {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
            .await
            .map_err(|_| End::Timeout)??;
        if n == 0 {
            return Err(End::Closed);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The next line without its line end; a line over [`MAX_LINE`] ends the connection
    /// without being buffered further.
    pub(crate) async fn line(&mut self) -> Result<Vec<u8>, End> {
        let mut searched = 0;
        loop {
            if let Some(pos) = self.buf[searched..].iter().position(|b| *b == b'\n') {
                let end = searched + pos;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            searched = self.buf.len();
            if self.buf.len() > MAX_LINE {
                return Err(End::Refused("line too long"));
            }
            self.fill().await?;
        }
    }

    pub(crate) async fn exactly(&mut self, n: usize) -> Result<Vec<u8>, End> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Whether passwords may be sent on this connection now: over TLS, on a loopback listener,
    /// or from a trusted network.
    pub(crate) fn login_allowed(&self, listener: &Listener, shared: &Shared) -> bool {
        self.tls
            || listener.addr.ip().is_loopback()
            || shared
                .config
                .trusted_networks
                .iter()
                .any(|n| n.contains(self.remote.ip()))
    }
}

/// Text safe for one protocol line.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(400)
        .collect()
}

/// A user name and password from the wire.
pub(crate) fn credentials(
    user: &[u8],
    password: &[u8],
) -> Result<(String, SecretString), &'static str> {
    let user = std::str::from_utf8(user).map_err(|_| "The user name is not UTF-8")?;
    let password = std::str::from_utf8(password).map_err(|_| "The password is not UTF-8")?;
    if user.trim().is_empty() {
        return Err("The user name is empty");
    }
    Ok((
        user.trim().to_owned(),
        SecretString::from(password.to_owned()),
    ))
}

/// What a SASL exchange gave.
pub(crate) enum Sasl {
    Credentials(String, SecretString),
    /// A protocol error (IMAP `BAD`, SMTP `501`).
    Bad(&'static str),
    /// A refusal (IMAP `NO`).
    No(&'static str),
}

/// A decoded SASL PLAIN message (RFC 4616): `authzid NUL authcid NUL password`; acting as
/// another user is refused.
pub(crate) fn plain(data: &[u8]) -> Sasl {
    let mut fields = data.split(|b| *b == 0);
    let (Some(authz), Some(user), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Sasl::Bad("A PLAIN response is authzid NUL authcid NUL password");
    };
    if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
        return Sasl::No("Acting as another user is not supported");
    }
    match credentials(user, password) {
        Ok((u, p)) => Sasl::Credentials(u, p),
        Err(why) => Sasl::Bad(why),
    }
}

/// Bytes read at once while a session is quiet; a read that fills it switches to
/// [`BURST_BUFFER`] until a short read shows the burst is over. A thousand idle sessions then
/// hold two small buffers each, not two large ones.
const QUIET_BUFFER: usize = 1024;
const BURST_BUFFER: usize = 32 * 1024;

/// Copies `from` to `to` until `from` ends or either fails; calls `heard` after each read.
/// Returns the bytes copied.
async fn pump<R, W>(mut from: R, mut to: W, heard: impl Fn()) -> u64
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut quiet = [0u8; QUIET_BUFFER];
    let mut burst: Option<Vec<u8>> = None;
    let mut total = 0u64;
    loop {
        let read = match burst.as_mut() {
            Some(buf) => from.read(buf).await,
            None => from.read(&mut quiet).await,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        heard();
        let chunk = match burst.as_ref() {
            Some(buf) => &buf[..n],
            None => &quiet[..n],
        };
        if to.write_all(chunk).await.is_err() {
            break;
        }
        total += n as u64;
        if burst.is_none() && n == QUIET_BUFFER {
            burst = Some(vec![0u8; BURST_BUFFER]);
        } else if burst.is_some() && n < QUIET_BUFFER {
            burst = None;
        }
    }
    let _ = to.shutdown().await;
    total
}

/// Relays both directions untouched until either side closes, or until the client has sent
/// nothing for `idle`. Returns true when the idle time ended it (the caller then tells the
/// client, as its protocol says).
pub(crate) async fn relay<U: Stream>(
    mut client: Box<dyn Stream>,
    pending_to_server: Vec<u8>,
    mut upstream: U,
    pending_to_client: Vec<u8>,
    protocol: Protocol,
    idle: Duration,
) -> (bool, Box<dyn Stream>) {
    let name = protocol.as_str();
    // What either side sent along with its last pre-relay line goes first; the buffers are
    // freed before the relay settles in.
    if (!pending_to_client.is_empty() && client.write_all(&pending_to_client).await.is_err())
        || (!pending_to_server.is_empty() && upstream.write_all(&pending_to_server).await.is_err())
    {
        return (false, client);
    }
    drop((pending_to_client, pending_to_server));
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(upstream);
    let started = tokio::time::Instant::now();
    // Milliseconds since `started` of the client's last bytes.
    let last_heard = Arc::new(AtomicU64::new(0));
    let heard = || {
        last_heard.store(
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    };
    let mut client_read = client_read;
    let mut client_write = client_write;
    let to_server = pump(&mut client_read, server_write, heard);
    let to_client = pump(server_read, &mut client_write, || {});
    let watch = async {
        loop {
            let heard = Duration::from_millis(last_heard.load(Ordering::Relaxed));
            let deadline = started + heard + idle;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    let idled = tokio::select! {
        (up, down) = async { tokio::join!(to_server, to_client) } => {
            metrics::counter!("oauthimap_gateway_bytes_total", "protocol" => name, "direction" => "to_server").increment(up);
            metrics::counter!("oauthimap_gateway_bytes_total", "protocol" => name, "direction" => "to_client").increment(down);
            false
        }
        () = watch => true,
    };
    (idled, client_read.unsplit(client_write))
}
