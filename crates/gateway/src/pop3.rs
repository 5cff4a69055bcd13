//! The POP3 side of the gateway (RFC 1939 up to the login): our own greeting and `CAPA`
//! (RFC 2449), `STLS` (RFC 2595), `USER`/`PASS`, `AUTH PLAIN` (RFC 5034, with or without an
//! initial response), `NOOP`-free AUTHORIZATION state and `QUIT`. Once the backend has logged in
//! upstream with OAuth, the client's login is answered `+OK` and both directions are relayed
//! byte for byte (`STAT`, `UIDL`, `RETR`, `DELE` are the server's).
//!
//! Refusals carry RFC 2449/3206 response codes: `[AUTH]` for credentials and sign-in trouble,
//! `[SYS/TEMP]` for what may pass. Passwords never reach a log.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::SecretString;

use crate::conn::{Client, End, MAX_FAILURES, Sasl, credentials, one_line, plain};
use crate::{Backend, Listener, LoginRequest, Protocol, Refusal, Shared, Upstream};

/// How long a logged-in client may stay silent (RFC 1939 section 3: at least 10 minutes).
const IDLE: std::time::Duration = std::time::Duration::from_mins(10);

fn capa(client: &Client, shared: &Shared, allowed: bool) -> String {
    let mut lines = String::from(
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n",
    );
    if allowed {
        lines.push_str("USER\r\nSASL PLAIN\r\n");
    }
    if !client.tls && shared.tls.is_some() {
        lines.push_str("STLS\r\n");
    }
    lines.push_str("IMPLEMENTATION oauthimap-gateway\r\n.\r\n");
    lines
}

/// Serves one POP3 client connection until it quits, fails, or is handed to the relay.
pub(crate) async fn session<B: Backend>(
    mut client: Client,
    listener: &Listener,
    shared: &Shared,
    backend: &B,
    admitted: bool,
) {
    let remote = client.remote;
    match serve_client(&mut client, listener, shared, backend, admitted).await {
        Ok(Some(Upstream::Line { session, slot })) => {
            let _slot = slot;
            let (idled, mut stream) = crate::conn::relay(
                client.stream,
                client.buf,
                session.stream,
                session.pending,
                Protocol::Pop3,
                IDLE,
            )
            .await;
            if idled {
                use tokio::io::AsyncWriteExt as _;
                let _ = stream
                    .write_all(b"-ERR Autologout; idle for too long\r\n")
                    .await;
            }
        }
        Ok(_) | Err(End::Closed | End::Timeout) => {}
        Err(End::Io(e)) => tracing::debug!(%remote, error = %e, "gateway client connection failed"),
        Err(End::Refused(why)) => {
            tracing::info!(%remote, why, "gateway client refused");
            let _ = client.write(&format!("-ERR {why}\r\n")).await;
        }
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one state machine: each arm is one POP3 command"
)]
async fn serve_client<B: Backend>(
    client: &mut Client,
    listener: &Listener,
    shared: &Shared,
    backend: &B,
    admitted: bool,
) -> Result<Option<Upstream>, End> {
    if !admitted {
        client
            .write("-ERR [SYS/TEMP] Too many sessions through this gateway; try again later\r\n")
            .await?;
        return Ok(None);
    }
    client.write("+OK oauthimap gateway ready\r\n").await?;
    let mut user: Option<String> = None;
    let mut failures = 0;
    loop {
        let line = client.line().await?;
        let Ok(text) = std::str::from_utf8(&line) else {
            client.write("-ERR The command is not UTF-8\r\n").await?;
            continue;
        };
        let (name, arg) = match text.split_once(' ') {
            Some((n, a)) => (n.to_ascii_uppercase(), a),
            None => (text.to_ascii_uppercase(), ""),
        };
        let allowed = client.login_allowed(listener, shared);
        let login = match name.as_str() {
            "CAPA" => {
                let reply = capa(client, shared, allowed);
                client.write(&reply).await?;
                continue;
            }
            "QUIT" => {
                client.write("+OK Bye\r\n").await?;
                return Ok(None);
            }
            "STLS" => {
                let Some(acceptor) = shared.tls.as_ref().map(crate::tls::Acceptor::get) else {
                    client.write("-ERR STLS is not offered here\r\n").await?;
                    continue;
                };
                if client.tls {
                    client.write("-ERR TLS is already active\r\n").await?;
                    continue;
                }
                client.write("+OK Begin TLS negotiation\r\n").await?;
                client.start_tls(&acceptor).await?;
                user = None;
                continue;
            }
            "USER" | "PASS" | "AUTH" if !allowed => {
                client
                    .write("-ERR [AUTH] Passwords are only accepted over TLS here; use STLS or the POP3S port\r\n")
                    .await?;
                continue;
            }
            "USER" => {
                if arg.trim().is_empty() {
                    client
                        .write("-ERR USER needs the mailbox address\r\n")
                        .await?;
                } else {
                    user = Some(arg.trim().to_owned());
                    client
                        .write("+OK Send your gateway password with PASS\r\n")
                        .await?;
                }
                continue;
            }
            "PASS" => {
                let Some(name) = user.take() else {
                    client.write("-ERR Send USER first\r\n").await?;
                    continue;
                };
                credentials(name.as_bytes(), arg.as_bytes())
            }
            "AUTH" => match auth(client, arg).await? {
                Some(Sasl::Credentials(u, p)) => Ok((u, p)),
                Some(Sasl::Bad(why) | Sasl::No(why)) => Err(why),
                None => continue,
            },
            "STAT" | "LIST" | "RETR" | "DELE" | "UIDL" | "TOP" | "RSET" | "NOOP" | "LAST" => {
                client
                    .write("-ERR Log in first (USER and PASS, or AUTH PLAIN)\r\n")
                    .await?;
                continue;
            }
            _ => {
                client.write("-ERR Unknown command\r\n").await?;
                continue;
            }
        };
        let (name, password): (String, SecretString) = match login {
            Ok(c) => c,
            Err(why) => {
                client.write(&format!("-ERR {why}\r\n")).await?;
                continue;
            }
        };
        let request = LoginRequest {
            protocol: Protocol::Pop3,
            user: name,
            password,
            remote: client.remote,
            helo: None,
            upstream_timeout: client.upstream_timeout,
        };
        if let Some(upstream) = answer_login(client, backend.login(request).await).await? {
            return Ok(Some(upstream));
        }
        failures += 1;
        if failures >= MAX_FAILURES {
            return Err(End::Refused("Too many failed logins on this connection"));
        }
    }
}

/// Answers a login: `+OK` (the session to relay) or the refusal's `-ERR` with its code.
async fn answer_login(
    client: &mut Client,
    result: Result<Upstream, Refusal>,
) -> Result<Option<Upstream>, End> {
    match result {
        Ok(upstream) => {
            metrics::counter!("oauthimap_gateway_logins_total", "protocol" => "pop3", "result" => "ok").increment(1);
            client.write("+OK Logged in\r\n").await?;
            Ok(Some(upstream))
        }
        Err(refusal) => {
            let (code, result) = match &refusal {
                Refusal::BadCredentials => ("AUTH", "bad_credentials"),
                Refusal::NeedsReauth(_) => ("AUTH", "needs_reauth"),
                Refusal::Refused(_) => ("AUTH", "upstream_refused"),
                Refusal::Unavailable(_) | Refusal::Throttled => ("SYS/TEMP", "unavailable"),
                Refusal::Limit(_) => ("SYS/TEMP", "limit"),
            };
            metrics::counter!("oauthimap_gateway_logins_total", "protocol" => "pop3", "result" => result).increment(1);
            let text = match &refusal {
                Refusal::BadCredentials => "Invalid credentials".to_owned(),
                other => one_line(&other.to_string()),
            };
            client.write(&format!("-ERR [{code}] {text}\r\n")).await?;
            Ok(None)
        }
    }
}

/// `AUTH` (RFC 5034): without a mechanism, the list; `PLAIN` with or without an initial
/// response. `None` when answered already (a cancel, a listing, an unknown mechanism).
async fn auth(client: &mut Client, arg: &str) -> Result<Option<Sasl>, End> {
    let mut words = arg.split_whitespace();
    let Some(mechanism) = words.next() else {
        client.write("+OK\r\nPLAIN\r\n.\r\n").await?;
        return Ok(None);
    };
    if !mechanism.eq_ignore_ascii_case("PLAIN") {
        client
            .write("-ERR Unsupported mechanism; use PLAIN (or USER/PASS) with your gateway password\r\n")
            .await?;
        return Ok(None);
    }
    let response = if let Some(initial) = words.next() {
        initial.as_bytes().to_vec()
    } else {
        client.write("+ \r\n").await?;
        client.line().await?
    };
    if response == b"*" {
        client.write("-ERR Authentication cancelled\r\n").await?;
        return Ok(None);
    }
    let data = if response == b"=" {
        Vec::new()
    } else {
        match B64.decode(&response) {
            Ok(d) => d,
            Err(_) => return Ok(Some(Sasl::Bad("The SASL response is not base64"))),
        }
    };
    Ok(Some(plain(&data)))
}
