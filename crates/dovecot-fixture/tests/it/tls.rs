//! TLS: implicit TLS on the imaps port and STARTTLS on the plain port, both verified against the
//! fixture's generated CA with rustls (ring provider), never with verification turned off.

use oauthimap_dovecot_fixture::ImapConnection;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::common::{ALICE, GOOD_TOKEN, setup, tls_connect, tls_connector, xoauth2};

#[tokio::test]
async fn imaps_login_trusting_the_generated_ca() {
    let (_stub, dovecot) = setup().await;
    for name in ["localhost", "127.0.0.1"] {
        let tls = tls_connect(&dovecot, name)
            .await
            .unwrap_or_else(|err| panic!("TLS to {name}: {err}"));
        let mut conn = ImapConnection::new(tls);
        let greeting = conn.read_greeting().await.unwrap();
        assert!(
            !greeting.contains("STARTTLS"),
            "no STARTTLS inside TLS: {greeting}"
        );
        let response = conn
            .command(&format!(
                "AUTHENTICATE XOAUTH2 {}",
                xoauth2(ALICE, GOOD_TOKEN)
            ))
            .await
            .unwrap();
        assert!(response.is_ok(), "{}", response.tagged);
        conn.logout().await;
    }
    let tls = tls_connect(&dovecot, "localhost").await.unwrap();
    let mut conn = ImapConnection::new(tls);
    conn.read_greeting().await.unwrap();
    conn.login(&dovecot.master_login_for(ALICE), dovecot.master_password())
        .await
        .unwrap();
    conn.logout().await;
}

#[tokio::test]
async fn imaps_rejects_a_name_the_certificate_does_not_cover() {
    let (_stub, dovecot) = setup().await;
    let err = tls_connect(&dovecot, "mail.example.com")
        .await
        .expect_err("wrong name must fail");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn starttls_offered_and_working_on_the_plain_port() {
    let (_stub, dovecot) = setup().await;
    let (mut conn, greeting) = ImapConnection::connect(dovecot.host(), dovecot.imap_port())
        .await
        .unwrap();
    assert!(greeting.contains(" STARTTLS "), "{greeting}");
    let response = conn.command("STARTTLS").await.unwrap();
    assert_eq!(response.tagged, "A1 OK Begin TLS negotiation now.");
    let tcp: TcpStream = conn.into_inner().unwrap();
    let tls = tls_connector(&dovecot.ca_pem_path())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut conn = ImapConnection::new(tls);
    let caps = conn.command_ok("CAPABILITY", "capability").await.unwrap();
    let caps_line = caps.untagged[0].text();
    assert!(
        caps_line.starts_with("* CAPABILITY ") && !caps_line.contains("STARTTLS"),
        "{caps_line}"
    );
    assert!(
        caps_line.contains("AUTH=XOAUTH2") && caps_line.contains("AUTH=OAUTHBEARER"),
        "{caps_line}"
    );
    let response = conn
        .command(&format!(
            "AUTHENTICATE XOAUTH2 {}",
            xoauth2(ALICE, GOOD_TOKEN)
        ))
        .await
        .unwrap();
    assert!(response.is_ok(), "{}", response.tagged);
    conn.logout().await;
}
