//! The IMAP side of the gateway (RFC 3501/9051 up to the login): our own greeting and
//! capabilities, `CAPABILITY`, `NOOP`, `ID`, `LOGOUT`, `STARTTLS`, `LOGIN` and
//! `AUTHENTICATE PLAIN|LOGIN` (RFC 4616, with `SASL-IR` and `LITERAL+`). Once the backend has
//! logged in upstream with OAuth, the client's login is answered with the upstream's
//! capabilities and both directions are relayed byte for byte, so IDLE, literals, APPEND, MOVE
//! and everything else work as the server offers them.
//!
//! Lines over 64 KiB and login literals over 8 KiB are refused without buffering them, a client
//! silent before login is disconnected after `login_timeout`, and three failed logins end the
//! connection. Passwords never reach a log.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use oauthimap_imap::MailSession as _;

use crate::conn::{Client, End, MAX_FAILURES, Sasl, credentials, one_line};
use crate::{Backend, Listener, LoginRequest, Protocol, Refusal, Shared, Upstream};

/// The largest literal accepted before login (a user name or password).
const MAX_LITERAL: usize = 8 * 1024;
/// How long a logged-in client may stay silent: the RFC 3501 autologout timer is at least 30
/// minutes, and a client in IDLE renews it by re-issuing IDLE every 29 minutes (RFC 2177).
const IDLE: Duration = Duration::from_mins(30);

/// An upstream session and the connection slot it holds.
type Opened = (
    oauthimap_imap::Session,
    Option<tokio::sync::OwnedSemaphorePermit>,
);

/// One command before login: its tag, name (upper case) and arguments.
struct Command {
    tag: String,
    name: String,
    args: Vec<Vec<u8>>,
}

impl Client {
    /// Reads one command, literals included (a synchronizing literal is invited with `+`).
    async fn command(&mut self) -> Result<Result<Command, (String, &'static str)>, End> {
        let mut parts: Vec<(bool, Vec<u8>)> = Vec::new();
        loop {
            let line = self.line().await?;
            let Some((head, n, sync)) = literal_at_end(&line) else {
                parts.push((false, line));
                break;
            };
            parts.push((false, line[..head].to_vec()));
            if n > MAX_LITERAL {
                let tag = first_word(&parts);
                let _ = self
                    .write(&format!("{tag} BAD Literal too large before login\r\n"))
                    .await;
                return Err(End::Refused("literal too large"));
            }
            if sync {
                self.write("+ Ready for literal data\r\n").await?;
            }
            parts.push((true, self.exactly(n).await?));
        }
        let mut words = Vec::new();
        for (literal, part) in parts {
            if literal {
                words.push(part);
            } else if tokenize(&part, &mut words).is_err() {
                let tag = words.first().map_or_else(
                    || "*".to_owned(),
                    |w| String::from_utf8_lossy(w).into_owned(),
                );
                return Ok(Err((tag, "Unterminated quoted string")));
            }
        }
        let mut words = words.into_iter();
        let tag = words.next().unwrap_or_default();
        let Some(tag) = std::str::from_utf8(&tag)
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(is_tag_char))
        else {
            return Ok(Err(("*".into(), "Invalid tag")));
        };
        let Some(name) = words.next().and_then(|n| String::from_utf8(n).ok()) else {
            return Ok(Err((tag.to_owned(), "Missing command")));
        };
        Ok(Ok(Command {
            tag: tag.to_owned(),
            name: name.to_ascii_uppercase(),
            args: words.collect(),
        }))
    }
}

/// A tag is an atom without `+` (RFC 3501 `tag`).
fn is_tag_char(b: u8) -> bool {
    b.is_ascii_graphic()
        && !matches!(
            b,
            b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+' | b']'
        )
}

fn first_word(parts: &[(bool, Vec<u8>)]) -> String {
    parts
        .first()
        .and_then(|(_, p)| p.split(|b| *b == b' ').next())
        .map_or_else(|| "*".into(), |w| String::from_utf8_lossy(w).into_owned())
}

/// `{N}` or `{N+}` at the end of a line: where it starts, N, and whether it synchronizes.
fn literal_at_end(line: &[u8]) -> Option<(usize, usize, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let (digits, sync) = match inner[open + 1..].strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (&inner[open + 1..], true),
    };
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((open, n, sync))
}

/// Splits atoms and quoted strings (with `\"` and `\\`); parentheses are words of their own.
fn tokenize(text: &[u8], words: &mut Vec<Vec<u8>>) -> Result<(), ()> {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b' ' => i += 1,
            b'(' | b')' => {
                words.push(vec![text[i]]);
                i += 1;
            }
            b'"' => {
                let mut word = Vec::new();
                i += 1;
                loop {
                    match text.get(i) {
                        None => return Err(()),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            word.push(*text.get(i + 1).ok_or(())?);
                            i += 2;
                        }
                        Some(b) => {
                            word.push(*b);
                            i += 1;
                        }
                    }
                }
                words.push(word);
            }
            _ => {
                let start = i;
                while i < text.len() && !matches!(text[i], b' ' | b'(' | b')') {
                    i += 1;
                }
                words.push(text[start..i].to_vec());
            }
        }
    }
    Ok(())
}

/// Serves one IMAP client connection until it logs out, fails, or is handed to the relay.
pub(crate) async fn session<B: Backend>(
    mut client: Client,
    listener: &Listener,
    shared: &Shared,
    backend: &B,
    admitted: bool,
) {
    let remote = client.remote;
    match serve_client(&mut client, listener, shared, backend, admitted).await {
        Ok(Some((session, slot))) => {
            // Held until the relay ends: the session counts against the mailbox's connection limit.
            let _slot = slot;
            let Ok((upstream, pending)) = session.into_relay() else {
                return;
            };
            let (idled, mut stream) = crate::conn::relay(
                client.stream,
                client.buf,
                upstream,
                pending,
                Protocol::Imap,
                IDLE,
            )
            .await;
            if idled {
                use tokio::io::AsyncWriteExt as _;
                let _ = stream
                    .write_all(b"* BYE Autologout; idle for too long\r\n")
                    .await;
            }
        }
        Ok(None) | Err(End::Closed | End::Timeout) => {}
        Err(End::Io(e)) => tracing::debug!(%remote, error = %e, "gateway client connection failed"),
        Err(End::Refused(why)) => {
            tracing::info!(%remote, why, "gateway client refused");
            let _ = client.write(&format!("* BYE {why}\r\n")).await;
        }
    }
}

fn capabilities(client: &Client, shared: &Shared, allowed: bool) -> String {
    let mut caps = String::from("IMAP4rev1 LITERAL+ SASL-IR ID");
    if !client.tls && shared.tls.is_some() {
        caps.push_str(" STARTTLS");
    }
    caps.push_str(if allowed {
        " AUTH=PLAIN AUTH=LOGIN"
    } else {
        " LOGINDISABLED"
    });
    caps
}

/// The pre-login dialogue; `Some` when the client logged in and the upstream session is open.
async fn serve_client<B: Backend>(
    client: &mut Client,
    listener: &Listener,
    shared: &Shared,
    backend: &B,
    admitted: bool,
) -> Result<Option<Opened>, End> {
    if !admitted {
        client
            .write(
                "* BYE [UNAVAILABLE] Too many sessions through this gateway; try again later\r\n",
            )
            .await?;
        return Ok(None);
    }
    let allowed = client.login_allowed(listener, shared);
    client
        .write(&format!(
            "* OK [CAPABILITY {}] oauthimap gateway ready\r\n",
            capabilities(client, shared, allowed)
        ))
        .await?;
    let mut failures = 0;
    loop {
        let command = match client.command().await? {
            Ok(c) => c,
            Err((tag, why)) => {
                client.write(&format!("{tag} BAD {why}\r\n")).await?;
                continue;
            }
        };
        let tag = command.tag.clone();
        let allowed = client.login_allowed(listener, shared);
        let login = match command.name.as_str() {
            "LOGIN" | "AUTHENTICATE" if !allowed => {
                client
                    .write(&format!(
                        "{tag} NO [PRIVACYREQUIRED] Passwords are only accepted over TLS here; use STARTTLS or the IMAPS port\r\n"
                    ))
                    .await?;
                continue;
            }
            "LOGIN" => match command.args.as_slice() {
                [user, password] => credentials(user, password),
                _ => Err("LOGIN takes a user name and a password"),
            },
            "AUTHENTICATE" => match authenticate(client, &command).await? {
                Sasl::Credentials(user, password) => Ok((user, password)),
                Sasl::Bad(why) => Err(why),
                Sasl::No(why) => {
                    client.write(&format!("{tag} NO {why}\r\n")).await?;
                    continue;
                }
            },
            _ => {
                if other_command(client, &command, shared, allowed).await? {
                    return Ok(None);
                }
                continue;
            }
        };
        let (user, password) = match login {
            Ok(c) => c,
            Err(why) => {
                client.write(&format!("{tag} BAD {why}\r\n")).await?;
                continue;
            }
        };
        let request = LoginRequest {
            protocol: Protocol::Imap,
            user,
            password,
            remote: client.remote,
            helo: None,
            upstream_timeout: client.upstream_timeout,
        };
        if let Some(session) = answer_login(client, &tag, backend.login(request).await).await? {
            return Ok(Some(session));
        }
        failures += 1;
        if failures >= MAX_FAILURES {
            client
                .write("* BYE Too many failed logins on this connection\r\n")
                .await?;
            return Ok(None);
        }
    }
}

/// Answers a command other than a login; true when the client logged out.
async fn other_command(
    client: &mut Client,
    command: &Command,
    shared: &Shared,
    allowed: bool,
) -> Result<bool, End> {
    let tag = &command.tag;
    match command.name.as_str() {
        "CAPABILITY" => {
            let caps = capabilities(client, shared, allowed);
            client
                .write(&format!(
                    "* CAPABILITY {caps}\r\n{tag} OK CAPABILITY completed\r\n"
                ))
                .await?;
        }
        "NOOP" => {
            client
                .write(&format!("{tag} OK NOOP completed\r\n"))
                .await?;
        }
        "ID" => {
            client
                .write(&format!(
                    "* ID (\"name\" \"oauthimap gateway\")\r\n{tag} OK ID completed\r\n"
                ))
                .await?;
        }
        "LOGOUT" => {
            client
                .write(&format!(
                    "* BYE Logging out\r\n{tag} OK LOGOUT completed\r\n"
                ))
                .await?;
            return Ok(true);
        }
        "STARTTLS" => starttls(client, shared, tag).await?,
        "SELECT" | "EXAMINE" | "LIST" | "LSUB" | "STATUS" | "APPEND" | "CREATE" | "DELETE"
        | "RENAME" | "SUBSCRIBE" | "UNSUBSCRIBE" | "IDLE" | "ENABLE" | "NAMESPACE" => {
            client
                .write(&format!(
                    "{tag} BAD Log in first (LOGIN or AUTHENTICATE PLAIN)\r\n"
                ))
                .await?;
        }
        _ => {
            client
                .write(&format!("{tag} BAD Unknown command\r\n"))
                .await?;
        }
    }
    Ok(false)
}

/// Answers a login: `OK` with the upstream's capabilities (the session to relay), or the
/// refusal's `NO` with its response code (`None`).
async fn answer_login(
    client: &mut Client,
    tag: &str,
    result: Result<Upstream, Refusal>,
) -> Result<Option<Opened>, End> {
    match result {
        Ok(Upstream::Imap { session, slot }) => {
            let caps: Vec<&str> = session
                .capabilities()
                .iter()
                .map(String::as_str)
                .filter(|c| {
                    let c = c.to_ascii_uppercase();
                    !(c.starts_with("AUTH=") || c == "LOGINDISABLED" || c == "STARTTLS")
                })
                .collect();
            client
                .write(&format!(
                    "{tag} OK [CAPABILITY {}] Logged in\r\n",
                    caps.join(" ")
                ))
                .await?;
            metrics::counter!("oauthimap_gateway_logins_total", "protocol" => "imap", "result" => "ok").increment(1);
            Ok(Some((session, slot)))
        }
        Ok(Upstream::Line { .. }) => {
            client
                .write(&format!(
                    "{tag} NO [UNAVAILABLE] The gateway opened the wrong kind of session\r\n"
                ))
                .await?;
            Ok(None)
        }
        Err(refusal) => {
            let (code, result) = match &refusal {
                Refusal::BadCredentials => ("AUTHENTICATIONFAILED", "bad_credentials"),
                Refusal::NeedsReauth(_) => ("AUTHORIZATIONFAILED", "needs_reauth"),
                Refusal::Unavailable(_) | Refusal::Throttled => ("UNAVAILABLE", "unavailable"),
                Refusal::Limit(_) => ("LIMIT", "limit"),
                Refusal::Refused(_) => ("AUTHORIZATIONFAILED", "upstream_refused"),
            };
            metrics::counter!("oauthimap_gateway_logins_total", "protocol" => "imap", "result" => result).increment(1);
            let text = match &refusal {
                Refusal::BadCredentials => "Invalid credentials".to_owned(),
                other => one_line(&other.to_string()),
            };
            client
                .write(&format!("{tag} NO [{code}] {text}\r\n"))
                .await?;
            Ok(None)
        }
    }
}

/// One SASL response: the initial one or, after a `+` challenge, the next line (`*` cancels).
async fn sasl_response(
    client: &mut Client,
    initial: Option<&[u8]>,
    challenge: &str,
) -> Result<Result<Vec<u8>, Sasl>, End> {
    let text = if let Some(ir) = initial {
        ir.to_vec()
    } else {
        client.write(&format!("+ {challenge}\r\n")).await?;
        client.line().await?
    };
    if text == b"*" {
        return Ok(Err(Sasl::Bad("Authentication cancelled")));
    }
    if text == b"=" {
        return Ok(Ok(Vec::new()));
    }
    Ok(B64
        .decode(&text)
        .map_err(|_| Sasl::Bad("The SASL response is not base64")))
}

async fn authenticate(client: &mut Client, command: &Command) -> Result<Sasl, End> {
    let Some(mechanism) = command.args.first() else {
        return Ok(Sasl::Bad("AUTHENTICATE needs a mechanism"));
    };
    let initial = command.args.get(1).map(Vec::as_slice);
    match mechanism.to_ascii_uppercase().as_slice() {
        b"PLAIN" => {
            let data = match sasl_response(client, initial, "").await? {
                Ok(d) => d,
                Err(s) => return Ok(s),
            };
            Ok(match crate::conn::plain(&data) {
                Sasl::No(why) => Sasl::No(if why.starts_with("Acting") {
                    "[AUTHORIZATIONFAILED] Acting as another user is not supported"
                } else {
                    why
                }),
                other => other,
            })
        }
        b"LOGIN" => {
            let user = match sasl_response(client, initial, "VXNlcm5hbWU6").await? {
                Ok(d) => d,
                Err(s) => return Ok(s),
            };
            let password = match sasl_response(client, None, "UGFzc3dvcmQ6").await? {
                Ok(d) => d,
                Err(s) => return Ok(s),
            };
            Ok(match credentials(&user, &password) {
                Ok((u, p)) => Sasl::Credentials(u, p),
                Err(why) => Sasl::Bad(why),
            })
        }
        _ => Ok(Sasl::No(
            "Unsupported authentication mechanism; use PLAIN or LOGIN with your gateway password",
        )),
    }
}

async fn starttls(client: &mut Client, shared: &Shared, tag: &str) -> Result<(), End> {
    let Some(acceptor) = shared.tls.as_ref().map(crate::tls::Acceptor::get) else {
        return client
            .write(&format!("{tag} BAD STARTTLS is not offered here\r\n"))
            .await;
    };
    if client.tls {
        return client
            .write(&format!("{tag} BAD TLS is already active\r\n"))
            .await;
    }
    client
        .write(&format!("{tag} OK Begin TLS negotiation now\r\n"))
        .await?;
    client.start_tls(&acceptor).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_at_line_end() {
        assert_eq!(literal_at_end(b"a LOGIN {5}"), Some((8, 5, true)));
        assert_eq!(literal_at_end(b"a LOGIN joe {12+}"), Some((12, 12, false)));
        assert_eq!(literal_at_end(b"a LOGIN joe pw"), None);
        assert_eq!(literal_at_end(b"a LOGIN {}"), None);
        assert_eq!(literal_at_end(b"a LOGIN {x}"), None);
        assert_eq!(
            literal_at_end(b"a LOGIN {99999999999}"),
            None,
            "absurd lengths are not literals"
        );
    }

    #[test]
    fn words_are_atoms_quoted_strings_and_parentheses() {
        let mut w = Vec::new();
        tokenize(br#"a1 LOGIN "joe \"q\" \\ x" secret"#, &mut w).unwrap();
        assert_eq!(
            w,
            vec![
                b"a1".to_vec(),
                b"LOGIN".to_vec(),
                br#"joe "q" \ x"#.to_vec(),
                b"secret".to_vec()
            ]
        );
        let mut w = Vec::new();
        tokenize(br#"a2 ID ("name" "x")"#, &mut w).unwrap();
        assert_eq!(w.len(), 6);
        assert!(tokenize(br#"a3 LOGIN "unterminated"#, &mut Vec::new()).is_err());
    }
}
