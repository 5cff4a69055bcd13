//! A scripted IMAP server on 127.0.0.1 for behaviours Dovecot does not show: Exchange Online's
//! `NO AUTHENTICATE failed.` without a challenge and without SASL-IR, its
//! `* BYE ... AccessTokenExpired`, a server without STARTTLS, classification by response code
//! rather than text, and the COPY + EXPUNGE fallback when MOVE and UIDPLUS are missing.

use std::time::Duration;

use oauthimap_imap::{
    ImapError, MailSession as _, REDACTED, SessionConfig, Transcript, connect_and_login,
    xoauth2_initial_response,
};
use oauthimap_types::{FailureKind, Security};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::common::FixedTokens;

const USER: &str = "help@contoso.com";

/// One step of the server's script.
enum Step {
    /// Send this line (CRLF added).
    Send(&'static str),
    /// Read a line; it must start with this.
    Expect(&'static str),
}
use Step::{Expect, Send};

/// Serves one connection by the script; returns every line the client sent. A line that does not
/// match makes the server stop and report it.
async fn serve(steps: Vec<Step>) -> (u16, JoinHandle<Result<Vec<String>, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut received = Vec::new();
        for step in steps {
            match step {
                Send(line) => {
                    write
                        .write_all(format!("{line}\r\n").as_bytes())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Expect(prefix) => {
                    let mut line = String::new();
                    let n = tokio::time::timeout(Duration::from_secs(5), read.read_line(&mut line))
                        .await
                        .map_err(|_| format!("timed out waiting for {prefix:?}"))?
                        .map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Err(format!("EOF while waiting for {prefix:?}"));
                    }
                    let line = line.trim_end_matches(['\r', '\n']).to_owned();
                    if !line.starts_with(prefix) {
                        return Err(format!("expected {prefix:?}, got {line:?}"));
                    }
                    received.push(line);
                }
            }
        }
        Ok(received)
    });
    (port, handle)
}

fn config(port: u16, security: Security) -> (SessionConfig, Transcript) {
    let mut config = SessionConfig::new("127.0.0.1", port, security, USER);
    config.io_timeout = Duration::from_secs(5);
    let transcript = Transcript::new();
    config.transcript = Some(transcript.clone());
    (config, transcript)
}

#[tokio::test]
async fn exchange_refusal_without_challenge_or_sasl_ir_after_one_refresh() {
    let (port, server) = serve(vec![
        Send("* OK The Microsoft Exchange IMAP4 service is ready."),
        Expect("A1 CAPABILITY"),
        Send("* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 IDLE MOVE UIDPLUS"),
        Send("A1 OK CAPABILITY completed."),
        Expect("A2 AUTHENTICATE XOAUTH2"),
        Send("+ "),
        Expect(""),
        Send("A2 NO AUTHENTICATE failed."),
        Expect("A3 AUTHENTICATE XOAUTH2"),
        Send("+ "),
        Expect(""),
        Send("A3 NO AUTHENTICATE failed."),
    ])
    .await;
    let (config, transcript) = config(port, Security::Plain);
    let tokens = FixedTokens::new(&["first-token-aaaaaaaa", "second-token-bbbbbbbb"]);
    let err = connect_and_login(&config, &tokens).await.unwrap_err();
    let received = server.await.unwrap().unwrap();
    assert_eq!(*tokens.calls.lock().unwrap(), vec![false, true]);
    assert_eq!(
        received[1], "A2 AUTHENTICATE XOAUTH2",
        "no SASL-IR when not advertised"
    );
    assert_eq!(
        received[2],
        xoauth2_initial_response(USER, "first-token-aaaaaaaa")
    );
    assert_eq!(
        received[4],
        xoauth2_initial_response(USER, "second-token-bbbbbbbb")
    );
    let ImapError::AuthenticationFailed {
        details, response, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(details, &None);
    assert_eq!(response, "NO AUTHENTICATE failed.");
    assert_eq!(err.kind(), FailureKind::Permanent);
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{port} as {USER}")),
        "{err}"
    );
    let text = transcript.render();
    assert!(
        !text.contains("first-token") && !text.contains("second-token"),
        "{text}"
    );
    assert_eq!(
        text.matches(&format!("C: {REDACTED}\n")).count(),
        2,
        "{text}"
    );
}

#[tokio::test]
async fn unavailable_is_classified_by_code_not_text() {
    let (port, server) = serve(vec![
        Send("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] ready"),
        Expect("A1 AUTHENTICATE XOAUTH2 "),
        Send("A1 NO [UNAVAILABLE] Authentication failed."),
    ])
    .await;
    let tokens = FixedTokens::new(&["token-cccccccc"]);
    let err = connect_and_login(&config(port, Security::Plain).0, &tokens)
        .await
        .unwrap_err();
    server.await.unwrap().unwrap();
    assert!(
        matches!(err, ImapError::AuthenticationUnavailable { .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), FailureKind::Transient);
    assert_eq!(*tokens.calls.lock().unwrap(), vec![false]);
}

#[tokio::test]
async fn bye_access_token_expired_asks_for_reauthentication() {
    let (port, server) = serve(vec![
        Send("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER] ready"),
        Expect("A1 AUTHENTICATE OAUTHBEARER "),
        Send("A1 OK [CAPABILITY IMAP4rev1 IDLE] AUTHENTICATE completed."),
        Expect("A2 NOOP"),
        Send("* BYE Session invalidated - AccessTokenExpired"),
    ])
    .await;
    let tokens = FixedTokens::new(&["token-dddddddd"]);
    let mut session = connect_and_login(&config(port, Security::Plain).0, &tokens)
        .await
        .unwrap();
    let err = session.noop().await.unwrap_err();
    server.await.unwrap().unwrap();
    assert!(err.needs_reauthentication(), "{err:?}");
    assert_eq!(err.kind(), FailureKind::Transient);
    assert!(err.to_string().contains("log in again"), "{err}");
    let again = session.noop().await.unwrap_err();
    assert!(
        !again.needs_reauthentication(),
        "the session is over: {again}"
    );
}

#[tokio::test]
async fn starttls_missing_is_refused_before_anything_is_sent() {
    let (port, server) = serve(vec![Send(
        "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] plaintext only",
    )])
    .await;
    let tokens = FixedTokens::new(&["token-eeeeeeee"]);
    let err = connect_and_login(&config(port, Security::StartTls).0, &tokens)
        .await
        .unwrap_err();
    assert_eq!(server.await.unwrap().unwrap(), Vec::<String>::new());
    assert!(
        matches!(err, ImapError::StartTlsNotOffered { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "cannot start TLS with 127.0.0.1:{port} as {USER}: the server does not offer STARTTLS"
        )),
        "{err}"
    );
    assert!(tokens.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn move_falls_back_to_copy_and_expunge() {
    let (port, server) = serve(vec![
        Send("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] ready"),
        Expect("A1 AUTHENTICATE XOAUTH2 "),
        Send("A1 OK Logged in"),
        Expect("A2 CAPABILITY"),
        Send("* CAPABILITY IMAP4rev1"),
        Send("A2 OK done"),
        Expect("A3 SELECT \"INBOX\""),
        Send("* 2 EXISTS"),
        Send("* OK [UIDVALIDITY 7] UIDs valid"),
        Send("A3 OK [READ-WRITE] done"),
        Expect("A4 UID COPY 5:6 \"Archive\""),
        Send("A4 OK done"),
        Expect("A5 UID STORE 5:6 +FLAGS.SILENT (\\Deleted)"),
        Send("A5 OK done"),
        Expect("A6 EXPUNGE"),
        Send("* 1 EXPUNGE"),
        Send("* 1 EXPUNGE"),
        Send("A6 OK done"),
        Expect("A7 SELECT \"INBOX\""),
        Send("* 0 EXISTS"),
        Send("* OK [UIDVALIDITY 7] UIDs valid"),
        Send("A7 OK done"),
        Expect("A8 LOGOUT"),
        Send("* BYE logging out"),
    ])
    .await;
    let tokens = FixedTokens::new(&["token-ffffffff"]);
    let mut session = connect_and_login(&config(port, Security::Plain).0, &tokens)
        .await
        .unwrap();
    let inbox = session.select("INBOX").await.unwrap();
    assert_eq!(
        (inbox.exists, inbox.uid_validity, inbox.uid_next),
        (2, 7, None)
    );
    session.move_to(&[6, 5], "Archive").await.unwrap();
    assert_eq!(session.select("INBOX").await.unwrap().exists, 0);
    session.logout().await.unwrap();
    assert_eq!(server.await.unwrap().unwrap().len(), 8);
}
