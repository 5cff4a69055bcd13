//! Logins against real Dovecot with real tokens from the fake identity provider: both mechanisms over implicit
//! TLS and STARTTLS, refusal after exactly one forced refresh, `NO [UNAVAILABLE]` as transient,
//! certificate and plaintext refusals, and golden transcripts of the SASL exchanges.

use oauthimap_imap::{
    ImapError, MailSession as _, REDACTED, SaslMechanism, connect_and_login,
    oauthbearer_initial_response, xoauth2_initial_response,
};
use oauthimap_types::{FailureKind, Mechanism, Security};

use crate::common::{ALICE, Plan, assert_golden, env, normalise};

#[tokio::test]
async fn both_mechanisms_log_in_over_tls_and_starttls() {
    let env = env().await;
    for security in [Security::Tls, Security::StartTls] {
        for mechanism in [Mechanism::Xoauth2, Mechanism::Oauthbearer] {
            let mut config = env.config(security);
            config.mechanism = mechanism;
            let tokens = env.tokens(Plan::Good);
            let mut session = connect_and_login(&config, &tokens)
                .await
                .unwrap_or_else(|e| panic!("{security} {mechanism}: {e}"));
            assert_eq!(
                session.mechanism().name(),
                mechanism.as_str().to_uppercase()
            );
            let tls = session.tls().expect("TLS info");
            assert!(tls.version.starts_with("TLSv1_"), "{tls:?}");
            assert_eq!(tls.certificate_subject.as_deref(), Some("CN=localhost"));
            assert!(session.capabilities().iter().any(|c| c == "IDLE"));
            let inbox = session.select("INBOX").await.unwrap();
            assert_eq!(inbox.exists, 0);
            session.logout().await.unwrap();
            assert_eq!(tokens.calls(), vec![false], "no refresh needed");
        }
    }
}

#[tokio::test]
async fn auto_prefers_oauthbearer_and_plain_works_on_loopback() {
    let env = env().await;
    let tokens = env.tokens(Plan::Good);
    let session = connect_and_login(&env.config(Security::Plain), &tokens)
        .await
        .unwrap();
    assert_eq!(session.mechanism(), SaslMechanism::Oauthbearer);
    assert!(session.tls().is_none());
    session.logout().await.unwrap();
}

#[tokio::test]
async fn xoauth2_over_tls_golden_transcript_without_the_token() {
    let env = env().await;
    let (mut config, transcript) = env.config_with_transcript(Security::Tls);
    config.mechanism = Mechanism::Xoauth2;
    let tokens = env.tokens(Plan::Good);
    let mut session = connect_and_login(&config, &tokens).await.unwrap();
    session.select("INBOX").await.unwrap();
    session.logout().await.unwrap();
    let text = transcript.render();
    let token = tokens.issued()[0].clone();
    assert!(!text.contains(&token), "token leaked:\n{text}");
    assert!(!text.contains(&xoauth2_initial_response(ALICE, &token)));
    assert!(
        text.contains(&format!("A1 AUTHENTICATE XOAUTH2 {REDACTED}")),
        "{text}"
    );
    assert_golden(
        "xoauth2-tls-success.txt",
        "XOAUTH2 over implicit TLS with SASL-IR, SELECT, LOGOUT",
        &normalise(&text, &[config.port]),
    );
}

#[tokio::test]
async fn oauthbearer_over_starttls_golden_transcript() {
    let env = env().await;
    let (mut config, transcript) = env.config_with_transcript(Security::StartTls);
    config.mechanism = Mechanism::Oauthbearer;
    let tokens = env.tokens(Plan::Good);
    let session = connect_and_login(&config, &tokens).await.unwrap();
    session.logout().await.unwrap();
    let text = transcript.render();
    let token = tokens.issued()[0].clone();
    assert!(!text.contains(&token));
    assert!(!text.contains(&oauthbearer_initial_response(
        ALICE,
        &config.host,
        config.port,
        &token
    )));
    assert_golden(
        "oauthbearer-starttls-success.txt",
        "OAUTHBEARER after STARTTLS (capabilities asked again after TLS)",
        &normalise(&text, &[config.port]),
    );
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_then_reported_with_the_decoded_reason() {
    let env = env().await;
    for (mechanism, plan, status, golden) in [
        (
            Mechanism::Xoauth2,
            Plan::AlwaysRevoked,
            "401",
            "xoauth2-refused-after-refresh.txt",
        ),
        (
            Mechanism::Oauthbearer,
            Plan::AlwaysExpired,
            "invalid_token",
            "oauthbearer-refused-after-refresh.txt",
        ),
    ] {
        let (mut config, transcript) = env.config_with_transcript(Security::Tls);
        config.mechanism = mechanism;
        let tokens = env.tokens(plan);
        let err = connect_and_login(&config, &tokens).await.unwrap_err();
        assert_eq!(
            tokens.calls(),
            vec![false, true],
            "exactly one forced refresh"
        );
        assert_eq!(err.kind(), FailureKind::Permanent);
        let ImapError::AuthenticationFailed {
            details,
            refreshed,
            response,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert!(refreshed);
        assert_eq!(response, "NO [AUTHENTICATIONFAILED] Authentication failed.");
        assert_eq!(
            details.as_ref().and_then(|d| d.status.as_deref()),
            Some(status)
        );
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "cannot authenticate to 127.0.0.1:{} as {ALICE} with {}: the server refused the access token even after a forced refresh",
                config.port,
                mechanism.as_str().to_uppercase()
            )),
            "{message}"
        );
        assert!(message.contains(&format!("status {status}")), "{message}");
        assert!(
            message.contains("IMAP scope") && message.contains("IMAP is disabled"),
            "{message}"
        );
        let text = transcript.render();
        for token in tokens.issued() {
            assert!(!text.contains(&token) && !message.contains(&token));
            assert!(!format!("{err:?}").contains(&token));
        }
        let answer = if mechanism == Mechanism::Xoauth2 {
            "C: \n"
        } else {
            "C: AQ==\n"
        };
        assert_eq!(text.matches(answer).count(), 2, "{text}");
        assert_golden(
            golden,
            "refused token: challenge, spec answer, NO; forced refresh; same again",
            &normalise(&text, &[config.port]),
        );
    }
}

#[tokio::test]
async fn a_first_refusal_heals_with_the_refreshed_token() {
    let env = env().await;
    let tokens = env.tokens(Plan::FirstRevoked);
    let session = connect_and_login(&env.config(Security::Tls), &tokens)
        .await
        .unwrap();
    assert_eq!(tokens.calls(), vec![false, true]);
    session.logout().await.unwrap();
}

#[tokio::test]
async fn introspection_down_is_transient_and_keeps_the_token() {
    let env = env().await;
    env.idp.set_introspection_available(false);
    let (config, transcript) = env.config_with_transcript(Security::Tls);
    let tokens = env.tokens(Plan::Good);
    let err = connect_and_login(&config, &tokens).await.unwrap_err();
    assert!(
        matches!(err, ImapError::AuthenticationUnavailable { .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), FailureKind::Transient);
    assert_eq!(
        tokens.calls(),
        vec![false],
        "no forced refresh for a server-side outage"
    );
    assert!(err.to_string().contains("temporary"), "{err}");
    assert_golden(
        "unavailable.txt",
        "token validator down: NO [UNAVAILABLE] (transient, no refresh)",
        &normalise(&transcript.render(), &[config.port]),
    );
    env.idp.set_introspection_available(true);
    let session = connect_and_login(&config, &tokens).await.unwrap();
    session.logout().await.unwrap();
}

#[tokio::test]
async fn an_untrusted_certificate_names_the_certificate_and_the_fix() {
    let env = env().await;
    for security in [Security::Tls, Security::StartTls] {
        let mut config = env.config(security);
        config.extra_ca_pem = None;
        let tokens = env.tokens(Plan::Good);
        let err = connect_and_login(&config, &tokens).await.unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, ImapError::UntrustedCertificate { .. }),
            "{err:?}"
        );
        assert_eq!(err.kind(), FailureKind::Permanent);
        assert!(
            message.starts_with(&format!(
                "cannot verify the TLS certificate of 127.0.0.1:{} as {ALICE} (certificate subject CN=localhost, issued by CN=oauthimap test CA (Dovecot fixture))",
                config.port
            )),
            "{message}"
        );
        assert!(
            message.contains("UnknownIssuer") && message.contains("extra-CA option"),
            "{message}"
        );
        assert!(
            tokens.calls().is_empty(),
            "no token is fetched before TLS is trusted"
        );
    }
}

#[tokio::test]
async fn plain_imap_is_refused_off_loopback_and_host_names_verify() {
    let env = env().await;
    let mut config = env.config(Security::Plain);
    config.host = "192.0.2.1".into(); // TEST-NET-1: refused before any packet is sent
    let err = connect_and_login(&config, &env.tokens(Plan::Good))
        .await
        .unwrap_err();
    assert!(matches!(err, ImapError::PlaintextRefused { .. }), "{err:?}");
    assert!(err.to_string().contains("only allowed to loopback"));

    // A DNS name the certificate covers verifies too (and `localhost` may resolve to ::1 first,
    // where nothing listens: the next address is tried).
    let mut config = env.config(Security::Tls);
    config.host = "localhost".into();
    let session = connect_and_login(&config, &env.tokens(Plan::Good))
        .await
        .unwrap();
    assert_eq!(
        session.tls().unwrap().certificate_subject.as_deref(),
        Some("CN=localhost")
    );
    session.logout().await.unwrap();
}

#[tokio::test]
async fn a_bad_extra_ca_file_is_reported_before_connecting_further() {
    let env = env().await;
    let mut config = env.config(Security::Tls);
    config.extra_ca_pem = Some("/nonexistent/oauthimap-ca.pem".into());
    let err = connect_and_login(&config, &env.tokens(Plan::Good))
        .await
        .unwrap_err();
    assert!(matches!(err, ImapError::ExtraCa { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/oauthimap-ca.pem"));
}

/// The usual misconfigurations are named with their fix: TLS spoken to a plain IMAP port, and a
/// port where nothing listens.
#[tokio::test]
async fn tls_to_a_plain_port_and_a_closed_port_get_hints() {
    let env = env().await;
    let mut config = env.config(Security::Tls);
    config.port = env.dovecot.imap_port();
    let tokens = env.tokens(Plan::Good);
    let err = connect_and_login(&config, &tokens).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ImapError::Tls { .. }), "{err:?}");
    assert!(
        message.contains("does not speak TLS from the first byte")
            && message.contains("STARTTLS")
            && message.contains("993"),
        "{message}"
    );
    assert!(tokens.calls().is_empty(), "no token before TLS");

    // A port nothing listens on (taken, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = env.config(Security::Tls);
    config.port = port;
    let err = connect_and_login(&config, &env.tokens(Plan::Good))
        .await
        .unwrap_err();
    assert!(matches!(err, ImapError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("IMAP servers listen on 993 for TLS and 143 for STARTTLS"),
        "{err}"
    );
}
