//! The login diagnostic against a real Dovecot whose oauth2 passdb checks tokens with the fake
//! identity provider: every step passes for a good account, a revoked grant and an untrusted
//! certificate fail at the right step with a hint, and no token appears anywhere in the report.
#![allow(clippy::too_many_lines)] // one story against one server
use oauthimap_app::{AccountSelector, DiagnoseOptions, Outcome};
use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions};
use oauthimap_store::Backend;
use oauthimap_types::Security;
use secrecy::ExposeSecret;

mod common;
use common::{USER, harness};

fn outcomes(report: &oauthimap_app::DiagnosticReport) -> Vec<(&'static str, Outcome)> {
    report.steps.iter().map(|s| (s.name, s.outcome)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_against_real_dovecot() {
    let h = harness(Backend::Sqlite, &[]).await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    dovecot
        .deliver(USER, b"From: a@example.com\r\nSubject: one\r\n\r\nbody\r\n")
        .unwrap();
    dovecot
        .deliver(USER, b"From: b@example.com\r\nSubject: two\r\n\r\nbody\r\n")
        .unwrap();
    let (status, _) = h.sign_in("Contoso", None).await;
    assert_eq!(status, 200);
    let account = AccountSelector::new(USER, None);
    let ca = dovecot.ca_pem_path().display().to_string();
    let tls = DiagnoseOptions {
        host: Some("localhost".into()),
        port: Some(dovecot.imaps_port()),
        security: Some(Security::Tls),
        ca_file: Some(ca.clone()),
        ..Default::default()
    };
    let report = h.app.diagnose(&account, &tls).await.unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(
        outcomes(&report),
        [
            ("token", Outcome::Ok),
            ("dns", Outcome::Ok),
            ("tcp", Outcome::Ok),
            ("tls", Outcome::Ok),
            ("authentication", Outcome::Ok),
            ("folder", Outcome::Ok)
        ]
    );
    let detail = |name: &str| {
        report
            .steps
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .detail
            .clone()
    };
    assert!(
        detail("token").contains("aud=https://outlook.office.com")
            && detail("token").contains("IMAP.AccessAsUser.All"),
        "{}",
        detail("token")
    );
    assert!(
        detail("tls").contains("TLSv1_3")
            && detail("tls").contains("CN=localhost")
            && detail("tls").contains("expires in"),
        "{}",
        detail("tls")
    );
    assert!(
        detail("authentication").contains("OAUTHBEARER")
            || detail("authentication").contains("Oauthbearer"),
        "{}",
        detail("authentication")
    );
    assert!(
        detail("folder").starts_with("INBOX: 2 message(s)"),
        "{}",
        detail("folder")
    );
    assert!(
        report.transcript.iter().any(|l| l.contains("AUTHENTICATE")),
        "{:?}",
        report.transcript
    );

    // The token appears nowhere: not in the report, not in its transcript.
    let account_id = report.account_id;
    let token = h
        .app
        .store()
        .account_tokens(oauthimap_types::AccountId(account_id))
        .await
        .unwrap();
    let json = serde_json::to_string(&report).unwrap();
    for secret in [token.access_token.unwrap(), token.refresh_token.unwrap()] {
        assert!(
            !json.contains(secret.expose_secret()),
            "a token leaked into the report"
        );
    }

    // STARTTLS on the plain port.
    let starttls = DiagnoseOptions {
        port: Some(dovecot.imap_port()),
        security: Some(Security::StartTls),
        ..tls.clone()
    };
    assert!(h.app.diagnose(&account, &starttls).await.unwrap().ok);

    // Without the extra CA: TLS fails, naming the certificate and the fix.
    let untrusted = DiagnoseOptions {
        ca_file: None,
        ..tls.clone()
    };
    let report = h.app.diagnose(&account, &untrusted).await.unwrap();
    assert!(!report.ok);
    let tls_step = report.steps.iter().find(|s| s.name == "tls").unwrap();
    assert_eq!(tls_step.outcome, Outcome::Failed);
    assert!(
        tls_step.detail.contains("CN=localhost"),
        "{}",
        tls_step.detail
    );
    assert!(
        tls_step
            .hint
            .as_deref()
            .unwrap_or_default()
            .contains("--ca-file"),
        "{tls_step:?}"
    );
    assert_eq!(report.steps.last().unwrap().outcome, Outcome::Skipped);

    // A token the server refuses: authentication fails with the decoded reason after one refresh.
    let before = h.idp.stats().grant("refresh_token").requests;
    h.idp.expire_access_tokens();
    h.idp
        .set_access_token_lifetime(std::time::Duration::from_hours(1));
    let report = h.app.diagnose(&account, &tls).await.unwrap();
    // The refused token is replaced once, and the fresh one logs in.
    assert!(report.ok, "{report:#?}");
    assert_eq!(
        h.idp.stats().grant("refresh_token").requests,
        before + 1,
        "exactly one forced refresh"
    );

    // After a revocation at the provider the token step never says the token is fine, however
    // long it still has by its own expiry; authentication fails with the fix.
    h.idp.revoke_user_tokens(USER);
    let report = h.app.diagnose(&account, &tls).await.unwrap();
    assert!(!report.ok);
    let step = |name: &str| report.steps.iter().find(|s| s.name == name).unwrap();
    assert_ne!(step("token").outcome, Outcome::Ok, "{report:#?}");
    assert!(
        step("token").outcome == Outcome::Failed
            && (step("token").detail.contains("revoked")
                || step("token").detail.contains("refused")),
        "{report:#?}"
    );
    if step("authentication").outcome == Outcome::Failed {
        assert!(step("authentication").hint.is_some(), "{report:#?}");
    }
    // Each step its own time on the failure path too: the TLS step is the handshake, not the
    // handshake plus the refused login and its retry with a refresh.
    assert_eq!(step("tls").outcome, Outcome::Ok, "{report:#?}");
    assert!(
        step("tls").elapsed_ms < step("authentication").elapsed_ms
            || step("authentication").elapsed_ms == 0,
        "{report:#?}"
    );
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}
