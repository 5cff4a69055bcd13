//! The SMTP submission side of the gateway (RFC 6409 up to the login): our own greeting and
//! `EHLO`, `STARTTLS` (RFC 3207), `AUTH PLAIN|LOGIN` (RFC 4954, with or without an initial
//! response), `NOOP`, `RSET`, `QUIT`. Once the backend has logged in upstream with OAuth (after
//! the upstream's own `EHLO` and TLS), the client's `AUTH` is answered `235` and both directions
//! are relayed byte for byte: `MAIL`, `RCPT`, `DATA` and the message are the server's business.
//!
//! Before the login the client cannot know whose server it will reach, so `EHLO` announces the
//! extensions the big providers and Dovecot all offer (`PIPELINING`, `8BITMIME`,
//! `ENHANCEDSTATUSCODES`, `SIZE` without a fixed limit); a parameter the upstream does not take
//! gets the upstream's own error. A client that sends `EHLO` again after `AUTH` (allowed by
//! RFC 4954) reaches the upstream and learns its exact list.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::conn::{Client, End, MAX_FAILURES, Sasl, credentials, one_line, plain};
use crate::{Backend, Listener, LoginRequest, Protocol, Refusal, Shared, Upstream};

/// How long a logged-in client may stay silent (RFC 5321 section 4.5.3.2.7: 5 minutes).
const IDLE: std::time::Duration = std::time::Duration::from_mins(5);

/// The name we greet with: the listener's address as an address literal (RFC 5321 section 4.1.3).
fn domain(listener: &Listener) -> String {
    match listener.addr.ip() {
        std::net::IpAddr::V4(ip) => format!("[{ip}]"),
        std::net::IpAddr::V6(ip) => format!("[IPv6:{ip}]"),
    }
}

/// A client's `EHLO` name we may pass on upstream: a domain or an address literal.
fn plausible_helo(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':' | b'_')
        });
    ok.then(|| name.to_owned())
}

fn ehlo_reply(client: &Client, listener: &Listener, shared: &Shared, name: &str) -> String {
    let allowed = client.login_allowed(listener, shared);
    let mut lines = vec![
        format!("{} greets {}", domain(listener), one_line(name)),
        "PIPELINING".to_owned(),
        "8BITMIME".to_owned(),
        "ENHANCEDSTATUSCODES".to_owned(),
        "SIZE".to_owned(),
    ];
    if !client.tls && shared.tls.is_some() {
        lines.push("STARTTLS".to_owned());
    }
    if allowed {
        lines.push("AUTH PLAIN LOGIN".to_owned());
    }
    let last = lines.len() - 1;
    let mut reply = String::new();
    for (i, l) in lines.iter().enumerate() {
        reply.push_str(if i == last { "250 " } else { "250-" });
        reply.push_str(l);
        reply.push_str("\r\n");
    }
    reply
}

/// Serves one SMTP client connection until it quits, fails, or is handed to the relay.
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
                Protocol::Smtp,
                IDLE,
            )
            .await;
            if idled {
                use tokio::io::AsyncWriteExt as _;
                let _ = stream
                    .write_all(b"421 4.4.2 Idle for too long; closing the connection\r\n")
                    .await;
            }
        }
        Ok(_) | Err(End::Closed) => {}
        Err(End::Timeout) => {
            let _ = client
                .write("421 4.4.2 Idle for too long; closing the connection\r\n")
                .await;
        }
        Err(End::Io(e)) => tracing::debug!(%remote, error = %e, "gateway client connection failed"),
        Err(End::Refused(why)) => {
            tracing::info!(%remote, why, "gateway client refused");
            let _ = client
                .write(&format!("421 4.7.0 {why}; closing the connection\r\n"))
                .await;
        }
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one state machine: each arm is one SMTP command"
)]
async fn serve_client<B: Backend>(
    client: &mut Client,
    listener: &Listener,
    shared: &Shared,
    backend: &B,
    admitted: bool,
) -> Result<Option<Upstream>, End> {
    let me = domain(listener);
    if !admitted {
        client
            .write(&format!(
                "421 4.7.0 {me} Too many sessions through this gateway; try again later\r\n"
            ))
            .await?;
        return Ok(None);
    }
    client
        .write(&format!("220 {me} ESMTP oauthimap gateway ready\r\n"))
        .await?;
    let mut helo: Option<String> = None;
    let mut failures = 0;
    loop {
        let line = client.line().await?;
        let Ok(text) = std::str::from_utf8(&line) else {
            client
                .write("500 5.5.2 The command is not UTF-8\r\n")
                .await?;
            continue;
        };
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
            None => (text.to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" | "HELO" => {
                if arg.is_empty() {
                    client
                        .write(&format!("501 5.5.4 {verb} needs your host name\r\n"))
                        .await?;
                    continue;
                }
                helo = Some(arg.to_owned());
                let reply = if verb == "EHLO" {
                    ehlo_reply(client, listener, shared, arg)
                } else {
                    format!("250 {me}\r\n")
                };
                client.write(&reply).await?;
            }
            "STARTTLS" => {
                let Some(acceptor) = shared.tls.as_ref().map(crate::tls::Acceptor::get) else {
                    client
                        .write("502 5.5.1 STARTTLS is not offered here\r\n")
                        .await?;
                    continue;
                };
                if client.tls {
                    client.write("503 5.5.1 TLS is already active\r\n").await?;
                    continue;
                }
                client.write("220 2.0.0 Ready to start TLS\r\n").await?;
                client.start_tls(&acceptor).await?;
                // Everything before TLS is forgotten (RFC 3207 section 4.2).
                helo = None;
            }
            "AUTH" => {
                if !client.login_allowed(listener, shared) {
                    client
                        .write("530 5.7.0 Must issue a STARTTLS command first; passwords are only accepted over TLS here\r\n")
                        .await?;
                    continue;
                }
                let Some(name) = helo.clone() else {
                    client.write("503 5.5.1 Send EHLO first\r\n").await?;
                    continue;
                };
                let (user, password) = match auth(client, arg).await? {
                    Some(Sasl::Credentials(u, p)) => (u, p),
                    Some(Sasl::Bad(why)) => {
                        client.write(&format!("501 5.5.2 {why}\r\n")).await?;
                        continue;
                    }
                    Some(Sasl::No(why)) => {
                        client.write(&format!("535 5.7.8 {why}\r\n")).await?;
                        continue;
                    }
                    None => continue,
                };
                let request = LoginRequest {
                    protocol: Protocol::Smtp,
                    user,
                    password,
                    remote: client.remote,
                    helo: plausible_helo(&name),
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
            "NOOP" | "RSET" => client.write("250 2.0.0 OK\r\n").await?,
            "QUIT" => {
                client.write(&format!("221 2.0.0 {me} Bye\r\n")).await?;
                return Ok(None);
            }
            "HELP" => {
                client
                    .write("214 2.0.0 Log in with AUTH PLAIN or LOGIN: the mailbox address and your gateway password\r\n")
                    .await?;
            }
            "MAIL" | "RCPT" | "DATA" | "BDAT" | "VRFY" | "EXPN" | "ETRN" => {
                client
                    .write("530 5.7.0 Authentication required\r\n")
                    .await?;
            }
            _ => client.write("500 5.5.2 Command not recognized\r\n").await?,
        }
    }
}

/// Answers `AUTH`: `235` (the session to relay) or the refusal's reply.
async fn answer_login(
    client: &mut Client,
    result: Result<Upstream, Refusal>,
) -> Result<Option<Upstream>, End> {
    match result {
        Ok(upstream) => {
            metrics::counter!("oauthimap_gateway_logins_total", "protocol" => "smtp", "result" => "ok").increment(1);
            client
                .write("235 2.7.0 Authentication successful\r\n")
                .await?;
            Ok(Some(upstream))
        }
        Err(refusal) => {
            let (code, result) = match &refusal {
                Refusal::BadCredentials => ("535 5.7.8", "bad_credentials"),
                Refusal::NeedsReauth(_) => ("535 5.7.8", "needs_reauth"),
                Refusal::Refused(_) => ("535 5.7.8", "upstream_refused"),
                Refusal::Unavailable(_) | Refusal::Throttled => ("454 4.7.0", "unavailable"),
                Refusal::Limit(_) => ("454 4.7.0", "limit"),
            };
            metrics::counter!("oauthimap_gateway_logins_total", "protocol" => "smtp", "result" => result).increment(1);
            let text = match &refusal {
                Refusal::BadCredentials => "Authentication credentials invalid".to_owned(),
                other => one_line(&other.to_string()),
            };
            client.write(&format!("{code} {text}\r\n")).await?;
            Ok(None)
        }
    }
}

/// One SASL response line after a `334` challenge; `*` cancels (RFC 4954 section 4).
async fn response(client: &mut Client, challenge: &str) -> Result<Result<Vec<u8>, Sasl>, End> {
    client.write(&format!("334 {challenge}\r\n")).await?;
    let line = client.line().await?;
    Ok(decode(&line))
}

fn decode(text: &[u8]) -> Result<Vec<u8>, Sasl> {
    if text == b"*" {
        return Err(Sasl::Bad("Authentication cancelled"));
    }
    if text == b"=" {
        return Ok(Vec::new());
    }
    B64.decode(text)
        .map_err(|_| Sasl::Bad("The SASL response is not base64"))
}

/// `AUTH PLAIN|LOGIN [initial-response]`; `None` when answered already.
async fn auth(client: &mut Client, arg: &str) -> Result<Option<Sasl>, End> {
    let mut words = arg.split_whitespace();
    let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
    let initial = words.next().map(|w| w.as_bytes().to_vec());
    match mechanism.as_str() {
        "PLAIN" => {
            let data = match initial {
                Some(ir) => decode(&ir),
                None => response(client, "").await?,
            };
            Ok(Some(match data {
                Ok(d) => plain(&d),
                Err(s) => s,
            }))
        }
        "LOGIN" => {
            let user = match initial {
                Some(ir) => decode(&ir),
                None => response(client, "VXNlcm5hbWU6").await?,
            };
            let user = match user {
                Ok(u) => u,
                Err(s) => return Ok(Some(s)),
            };
            let password = match response(client, "UGFzc3dvcmQ6").await? {
                Ok(p) => p,
                Err(s) => return Ok(Some(s)),
            };
            Ok(Some(match credentials(&user, &password) {
                Ok((u, p)) => Sasl::Credentials(u, p),
                Err(why) => Sasl::Bad(why),
            }))
        }
        "" => {
            client
                .write("501 5.5.4 AUTH needs a mechanism: PLAIN or LOGIN\r\n")
                .await?;
            Ok(None)
        }
        _ => {
            client
                .write("504 5.5.4 Unsupported mechanism; use PLAIN or LOGIN with your gateway password\r\n")
                .await?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helo_names_passed_upstream_are_plain_domains_or_literals() {
        assert_eq!(
            plausible_helo("scanner.example.org").as_deref(),
            Some("scanner.example.org")
        );
        assert_eq!(
            plausible_helo("[192.0.2.1]").as_deref(),
            Some("[192.0.2.1]")
        );
        assert_eq!(plausible_helo("a b"), None);
        assert_eq!(plausible_helo("x\r\nMAIL FROM:<a>"), None);
        assert_eq!(plausible_helo(""), None);
    }
}
