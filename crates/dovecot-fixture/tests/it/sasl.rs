//! Raw SASL exchanges against Dovecot's oauth2 passdb, recorded as golden transcripts in
//! `tests/transcripts/` for the project's IMAP client to be checked against.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use oauthimap_dovecot_fixture::ImapConnection;

use crate::common::{ALICE, GOOD_TOKEN, assert_golden, oauthbearer, render, setup, xoauth2};

const CHALLENGE_XOAUTH2: &str = r#"{"status":"401","schemes":"bearer","scope":"mail"}"#;
const CHALLENGE_OAUTHBEARER: &str = r#"{"status":"invalid_token"}"#;

fn decode_challenge(line: &[u8]) -> String {
    let text = std::str::from_utf8(line).expect("utf-8 challenge");
    let payload = text.strip_prefix("+ ").expect("a `+ ` continuation");
    String::from_utf8(B64.decode(payload).expect("base64 challenge")).expect("utf-8 JSON")
}

#[tokio::test]
async fn xoauth2_success_with_sasl_ir() {
    let (stub, dovecot) = setup().await;
    let (mut conn, greeting) = ImapConnection::connect(dovecot.host(), dovecot.imap_port())
        .await
        .unwrap();
    assert!(
        greeting.contains("SASL-IR") && greeting.contains("AUTH=XOAUTH2"),
        "{greeting}"
    );
    let response = conn
        .command(&format!(
            "AUTHENTICATE XOAUTH2 {}",
            xoauth2(ALICE, GOOD_TOKEN)
        ))
        .await
        .unwrap();
    assert!(response.untagged.is_empty(), "no challenge on success");
    assert!(
        response.tagged.starts_with("A1 OK [CAPABILITY IMAP4rev1 "),
        "{}",
        response.tagged
    );
    assert!(
        response.tagged.ends_with("] Logged in"),
        "{}",
        response.tagged
    );
    conn.command_ok("SELECT INBOX", "select").await.unwrap();
    conn.logout().await;
    assert_eq!(
        stub.hits(),
        vec![GOOD_TOKEN.to_owned()],
        "one introspection per login, no cache"
    );
    assert_golden(
        "xoauth2-success.txt",
        &render(
            "XOAUTH2 success (SASL-IR)",
            conn.transcript(),
            dovecot.imap_port(),
        ),
    );
}

#[tokio::test]
async fn xoauth2_success_without_sasl_ir() {
    let (_stub, dovecot) = setup().await;
    let (mut conn, _) = ImapConnection::connect(dovecot.host(), dovecot.imap_port())
        .await
        .unwrap();
    let tag = conn.tag();
    conn.write_line(format!("{tag} AUTHENTICATE XOAUTH2").as_bytes())
        .await
        .unwrap();
    assert_eq!(conn.read_line().await.unwrap(), b"+ ", "empty continuation");
    conn.write_line(xoauth2(ALICE, GOOD_TOKEN).as_bytes())
        .await
        .unwrap();
    let response = conn.read_response(&tag).await.unwrap();
    assert!(response.is_ok(), "{}", response.tagged);
    conn.logout().await;
    assert_golden(
        "xoauth2-success-no-sasl-ir.txt",
        &render(
            "XOAUTH2 success, payload after an empty `+ `",
            conn.transcript(),
            dovecot.imap_port(),
        ),
    );
}

#[tokio::test]
async fn xoauth2_bad_token_gets_a_challenge_then_no() {
    let (stub, dovecot) = setup().await;
    let (mut conn, _) = ImapConnection::connect(dovecot.host(), dovecot.imap_port())
        .await
        .unwrap();
    let tag = conn.tag();
    conn.write_line(
        format!("{tag} AUTHENTICATE XOAUTH2 {}", xoauth2(ALICE, "bad-token")).as_bytes(),
    )
    .await
    .unwrap();
    let challenge = conn.read_line().await.unwrap();
    assert_eq!(decode_challenge(&challenge), CHALLENGE_XOAUTH2);
    conn.write_line(b"").await.unwrap();
    let response = conn.read_response(&tag).await.unwrap();
    assert_eq!(
        response.tagged,
        "A1 NO [AUTHENTICATIONFAILED] Authentication failed."
    );

    // The per-IP penalty is off: a good login right after the failure is not delayed.
    let started = Instant::now();
    let response = conn
        .command(&format!(
            "AUTHENTICATE XOAUTH2 {}",
            xoauth2(ALICE, GOOD_TOKEN)
        ))
        .await
        .unwrap();
    assert!(response.is_ok(), "{}", response.tagged);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "login after a failure took {:?}",
        started.elapsed()
    );
    conn.logout().await;
    assert_eq!(
        stub.hits(),
        vec!["bad-token".to_owned(), GOOD_TOKEN.to_owned()]
    );
    assert_golden(
        "xoauth2-failure.txt",
        &render(
            "XOAUTH2 bad token: challenge, empty reply, NO; then a good token on the same connection",
            conn.transcript(),
            dovecot.imap_port(),
        ),
    );
}

#[tokio::test]
async fn xoauth2_token_of_another_user_is_refused() {
    let (_stub, dovecot) = setup().await;
    let (mut conn, _) = ImapConnection::connect(dovecot.host(), dovecot.imap_port())
        .await
        .unwrap();
    let bob = "bob@example.com";
    let tag = conn.tag();
    conn.write_line(format!("{tag} AUTHENTICATE XOAUTH2 {}", xoauth2(bob, GOOD_TOKEN)).as_bytes())
        .await
        .unwrap();
    assert_eq!(
        decode_challenge(&conn.read_line().await.unwrap()),
        CHALLENGE_XOAUTH2
    );
    conn.write_line(b"").await.unwrap();
    assert_eq!(
        conn.read_response(&tag).await.unwrap().tagged,
        "A1 NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    conn.logout().await;
    assert!(
        dovecot
            .log_tail(20)
            .contains("Username 'bob@example.com' did not match 'alice@example.com'")
    );
    assert_golden(
        "xoauth2-wrong-user.txt",
        &render(
            "XOAUTH2 valid token of alice presented for bob",
            conn.transcript(),
            dovecot.imap_port(),
        ),
    );
}

#[tokio::test]
async fn xoauth2_challenge_cancelled_with_star() {
    let (_stub, dovecot) = setup().await;
    let (mut conn, _) = ImapConnection::connect(dovecot.host(), dovecot.imap_port())
        .await
        .unwrap();
    let tag = conn.tag();
    conn.write_line(
        format!("{tag} AUTHENTICATE XOAUTH2 {}", xoauth2(ALICE, "bad-token")).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(
        decode_challenge(&conn.read_line().await.unwrap()),
        CHALLENGE_XOAUTH2
    );
    conn.write_line(b"*").await.unwrap();
    assert_eq!(
        conn.read_response(&tag).await.unwrap().tagged,
        "A1 BAD Authentication aborted by client."
    );
    conn.logout().await;
    assert_golden(
        "xoauth2-failure-cancelled.txt",
        &render(
            "XOAUTH2 bad token, challenge answered with `*` (cancel)",
            conn.transcript(),
            dovecot.imap_port(),
        ),
    );
}

#[tokio::test]
async fn oauthbearer_success() {
    let (stub, dovecot) = setup().await;
    let port = dovecot.imap_port();
    let (mut conn, greeting) = ImapConnection::connect(dovecot.host(), port).await.unwrap();
    assert!(greeting.contains("AUTH=OAUTHBEARER"), "{greeting}");
    let response = conn
        .command(&format!(
            "AUTHENTICATE OAUTHBEARER {}",
            oauthbearer(ALICE, port, GOOD_TOKEN)
        ))
        .await
        .unwrap();
    assert!(
        response.tagged.starts_with("A1 OK [CAPABILITY ") && response.tagged.ends_with("Logged in"),
        "{}",
        response.tagged
    );
    conn.logout().await;
    assert_eq!(stub.hits(), vec![GOOD_TOKEN.to_owned()]);
    assert_golden(
        "oauthbearer-success.txt",
        &render("OAUTHBEARER success (SASL-IR)", conn.transcript(), port),
    );
}

#[tokio::test]
async fn oauthbearer_bad_token_answered_with_0x01() {
    let (_stub, dovecot) = setup().await;
    let port = dovecot.imap_port();
    let (mut conn, _) = ImapConnection::connect(dovecot.host(), port).await.unwrap();
    let tag = conn.tag();
    conn.write_line(
        format!(
            "{tag} AUTHENTICATE OAUTHBEARER {}",
            oauthbearer(ALICE, port, "bad-token")
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(
        decode_challenge(&conn.read_line().await.unwrap()),
        CHALLENGE_OAUTHBEARER
    );
    conn.write_line(b"AQ==").await.unwrap();
    assert_eq!(
        conn.read_response(&tag).await.unwrap().tagged,
        "A1 NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    conn.logout().await;
    assert_golden(
        "oauthbearer-failure.txt",
        &render(
            "OAUTHBEARER bad token: challenge, reply AQ== (a single 0x01), NO",
            conn.transcript(),
            port,
        ),
    );
}

#[tokio::test]
async fn introspection_unavailable_is_a_temporary_failure_without_challenge() {
    let (stub, dovecot) = setup().await;
    stub.set_down(true);
    let port = dovecot.imap_port();
    let (mut conn, _) = ImapConnection::connect(dovecot.host(), port).await.unwrap();
    let xo = conn
        .command(&format!(
            "AUTHENTICATE XOAUTH2 {}",
            xoauth2(ALICE, GOOD_TOKEN)
        ))
        .await
        .unwrap();
    assert!(
        xo.untagged.is_empty(),
        "no `+` challenge when the validator is down"
    );
    assert!(
        xo.tagged
            .starts_with("A1 NO [UNAVAILABLE] Temporary authentication failure. ["),
        "{}",
        xo.tagged
    );
    let ob = conn
        .command(&format!(
            "AUTHENTICATE OAUTHBEARER {}",
            oauthbearer(ALICE, port, GOOD_TOKEN)
        ))
        .await
        .unwrap();
    assert!(
        ob.tagged
            .starts_with("A2 NO [UNAVAILABLE] Temporary authentication failure. ["),
        "{}",
        ob.tagged
    );
    // Back up: the same connection logs in, nothing was cached or penalised.
    stub.set_down(false);
    let ok = conn
        .command(&format!(
            "AUTHENTICATE XOAUTH2 {}",
            xoauth2(ALICE, GOOD_TOKEN)
        ))
        .await
        .unwrap();
    assert!(ok.is_ok(), "{}", ok.tagged);
    conn.logout().await;
    assert_eq!(
        stub.hits().len(),
        3,
        "Dovecot does not retry a 503: {:?}",
        stub.hits()
    );
    assert!(
        dovecot
            .log_tail(30)
            .contains("Introspection failed: 503 Service Unavailable")
    );
    assert_golden(
        "introspection-unavailable.txt",
        &render(
            "Introspection endpoint answers 503: XOAUTH2, then OAUTHBEARER, then it is back up",
            conn.transcript(),
            port,
        ),
    );
}

#[tokio::test]
async fn revoked_token_fails_at_once_because_the_auth_cache_is_off() {
    let (stub, dovecot) = setup().await;
    let (mut first, _) = ImapConnection::connect(dovecot.host(), dovecot.imap_port())
        .await
        .unwrap();
    assert!(
        first
            .command(&format!(
                "AUTHENTICATE XOAUTH2 {}",
                xoauth2(ALICE, GOOD_TOKEN)
            ))
            .await
            .unwrap()
            .is_ok()
    );
    first.logout().await;
    stub.revoke(GOOD_TOKEN);
    let (mut second, _) = ImapConnection::connect(dovecot.host(), dovecot.imap_port())
        .await
        .unwrap();
    let tag = second.tag();
    second
        .write_line(format!("{tag} AUTHENTICATE XOAUTH2 {}", xoauth2(ALICE, GOOD_TOKEN)).as_bytes())
        .await
        .unwrap();
    assert_eq!(
        decode_challenge(&second.read_line().await.unwrap()),
        CHALLENGE_XOAUTH2
    );
    second.write_line(b"").await.unwrap();
    assert!(
        second
            .read_response(&tag)
            .await
            .unwrap()
            .tagged
            .starts_with("A1 NO [AUTHENTICATIONFAILED]")
    );
    assert_eq!(stub.hits().len(), 2);
}

#[tokio::test]
async fn plain_login_is_for_the_master_user_only() {
    let (stub, dovecot) = setup().await;
    let (mut conn, _) = ImapConnection::connect(dovecot.host(), dovecot.imap_port())
        .await
        .unwrap();
    let user_login = conn
        .command(&format!("LOGIN {ALICE} {GOOD_TOKEN}"))
        .await
        .unwrap();
    assert_eq!(
        user_login.tagged,
        "A1 NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    let wrong_master = conn
        .command(&format!("LOGIN {} wrong", dovecot.master_login_for(ALICE)))
        .await
        .unwrap();
    assert_eq!(
        wrong_master.tagged,
        "A2 NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    let master = conn
        .login(&dovecot.master_login_for(ALICE), dovecot.master_password())
        .await
        .unwrap();
    assert!(master.tagged.ends_with("Logged in"), "{}", master.tagged);
    conn.logout().await;
    assert!(
        stub.hits().is_empty(),
        "PLAIN never reaches the oauth2 passdb"
    );
}

#[tokio::test]
async fn undecodable_xoauth2_payload_is_refused_without_challenge() {
    let (stub, dovecot) = setup().await;
    let (mut conn, _) = ImapConnection::connect(dovecot.host(), dovecot.imap_port())
        .await
        .unwrap();
    let response = conn
        .command(&format!("AUTHENTICATE XOAUTH2 {}", B64.encode("garbage")))
        .await
        .unwrap();
    assert!(response.untagged.is_empty());
    assert_eq!(
        response.tagged,
        "A1 NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    assert!(stub.hits().is_empty(), "rejected before introspection");
}
