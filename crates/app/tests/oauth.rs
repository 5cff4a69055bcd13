//! Every OAuth flow end to end over real HTTP against the fake identity provider: browser sign-in
//! (the provider's redirect followed by an HTTP client), device code, client credentials, refresh
//! with rotation, single flight (one process and two instances on PostgreSQL), faults, the
//! needs-reauth path with its notification, and no secret in any log line.
#![allow(clippy::too_many_lines)] // each test reads best as one story

use std::time::Duration;

use oauthimap_app::{ApplicationInput, CallbackParams, Core, ReceiverInput};
use oauthimap_config::Settings;
use oauthimap_fake_idp::{TokenHttpFault, UserConfig};
use oauthimap_store::Backend;
use oauthimap_types::{AccountState, GrantKind, Provider, now_millis};

use secrecy::{ExposeSecret, SecretString};

mod common;
use common::{SECRET, USER, harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_flow_then_refresh_with_rotation() {
    let h = harness(Backend::Sqlite, &[]).await;
    let (status, page) = h.sign_in("Contoso", None).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("help@contoso.com") && page.contains("Authorization complete"),
        "{page}"
    );
    let accounts = h.app.list_accounts(Some("Contoso")).await.unwrap();
    assert_eq!(accounts.len(), 1);
    let account = &accounts[0];
    assert_eq!(
        (account.identity.as_str(), account.mailbox.as_str()),
        (USER, USER)
    );
    assert_eq!(account.grant_kind, GrantKind::AuthorizationCode);
    assert_eq!(account.state, AccountState::Active);
    assert!(
        account.scopes.contains("IMAP.AccessAsUser.All"),
        "{}",
        account.scopes
    );
    assert_eq!(h.idp.stats().grant("authorization_code").successes, 1);

    // Forced refresh: the provider rotates the refresh token; the new one is stored and used.
    let before = h.app.store().account_tokens(account.id).await.unwrap();
    let token = h.app.tokens().access_token(account.id, true).await.unwrap();
    let after = h.app.store().account_tokens(account.id).await.unwrap();
    assert_ne!(
        before.access_token.unwrap().expose_secret(),
        token.secret.expose_secret()
    );
    assert_ne!(
        before.refresh_token.unwrap().expose_secret(),
        after.refresh_token.as_ref().unwrap().expose_secret(),
        "the rotated refresh token replaced the old one"
    );
    // The old refresh token is dead at the provider; the stored one still works.
    h.app.tokens().access_token(account.id, true).await.unwrap();
    assert_eq!(h.idp.stats().grant("refresh_token").successes, 2);
    assert_eq!(h.idp.stats().grant("refresh_token").errors, 0);

    // A valid token is served without asking the provider.
    h.app
        .tokens()
        .access_token(account.id, false)
        .await
        .unwrap();
    assert_eq!(h.idp.stats().grant("refresh_token").requests, 2);

    // A shared mailbox through the same user's grant is its own account.
    let (status, _) = h.sign_in("Contoso", Some("Shared@Contoso.com")).await;
    assert_eq!(status, 200);
    let shared = h
        .app
        .find_account(&oauthimap_app::AccountSelector::new(
            "shared@contoso.com",
            None,
        ))
        .await
        .unwrap();
    assert_eq!(shared.identity, USER);
    h.t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_replays_unknown_states_and_provider_errors() {
    let h = harness(Backend::Sqlite, &[]).await;
    let start = h.app.start_sign_in("Contoso", None, None).await.unwrap();
    let back = h.http.get(&start.url).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        h.http.get(&back).send().await.unwrap().status().as_u16(),
        200
    );
    // The same callback again: the state was single use.
    let replay = h.http.get(&back).send().await.unwrap();
    assert_eq!(replay.status().as_u16(), 400);
    assert!(
        replay
            .text()
            .await
            .unwrap()
            .contains("unknown, expired or already used")
    );
    // An invented state writes nothing.
    let err = h
        .app
        .finish_sign_in(&CallbackParams {
            code: Some("x".into()),
            state: Some("forged".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown, expired or already used"),
        "{err}"
    );
    // The provider's own error, with its AADSTS code and a hint, escaped in the page.
    h.idp
        .fail_next_authorize(oauthimap_fake_idp::AuthorizeErrorFault {
            error: "consent_required".into(),
            description: Some(
                "AADSTS65001: The user or administrator has not consented <script>".into(),
            ),
        });
    let (status, page) = h.sign_in("Contoso", None).await;
    assert_eq!(status, 400);
    assert!(
        page.contains("AADSTS65001") && page.contains("grant admin consent"),
        "{page}"
    );
    assert!(
        !page.contains("<script>") && page.contains("&lt;script&gt;"),
        "{page}"
    );
    assert_eq!(
        h.app.list_accounts(None).await.unwrap().len(),
        1,
        "only the first sign-in made an account"
    );
    h.t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_sign_in_reads_userinfo_and_keeps_the_refresh_token() {
    let h = harness(Backend::Sqlite, &[]).await;
    let g = ApplicationInput {
        name: Some("Gmail".into()),
        provider: Some(Provider::Google),
        client_id: Some("g-client.apps.googleusercontent.com".into()),
        client_secret: Some(SecretString::from(SECRET.to_owned())),
        endpoint_base: Some(h.idp.base_url().to_owned()),
        ..Default::default()
    };
    h.app.add_application(&g).await.unwrap();
    h.idp.set_default_user("ann@gmail.com");
    let (status, page) = h.sign_in("Gmail", None).await;
    assert_eq!(status, 200, "{page}");
    let account = h.app.list_accounts(Some("Gmail")).await.unwrap().remove(0);
    assert_eq!(account.mailbox, "ann@gmail.com");
    let refresh_before = h
        .app
        .store()
        .account_tokens(account.id)
        .await
        .unwrap()
        .refresh_token
        .unwrap();
    h.app.tokens().access_token(account.id, true).await.unwrap();
    let refresh_after = h
        .app
        .store()
        .account_tokens(account.id)
        .await
        .unwrap()
        .refresh_token
        .unwrap();
    assert_eq!(
        refresh_before.expose_secret(),
        refresh_after.expose_secret(),
        "Google sends no new refresh token: the old one is kept"
    );
    h.t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_code_and_client_credentials() {
    let h = harness(Backend::Sqlite, &[]).await;
    h.idp.set_device_poll_interval(1);
    let (application, start) = h.app.start_device_sign_in("Contoso").await.unwrap();
    assert!(!start.user_code.is_empty());
    let finish = {
        let app = h.app.clone();
        tokio::spawn(async move { app.finish_device_sign_in(&application, &start, None).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !finish.is_finished(),
        "waits while the user has not signed in"
    );
    h.idp.approve_device(None, Some(USER)).unwrap();
    let account = finish.await.unwrap().unwrap();
    assert_eq!(account.grant_kind, GrantKind::DeviceCode);
    assert_eq!(account.mailbox, USER);
    assert!(
        h.idp
            .stats()
            .grant("urn:ietf:params:oauth:grant-type:device_code")
            .requests
            >= 2
    );
    // Its refresh goes without the client secret (a public-client flow).
    h.app.tokens().access_token(account.id, true).await.unwrap();

    let daemon = ApplicationInput {
        name: Some("Daemon".into()),
        provider: Some(Provider::Microsoft),
        client_id: Some("ms-daemon".into()),
        client_secret: Some(SecretString::from(SECRET.to_owned())),
        tenant: Some("contoso.onmicrosoft.com".into()),
        endpoint_base: Some(h.idp.base_url().to_owned()),
        ..Default::default()
    };
    h.app.add_application(&daemon.clone()).await.unwrap();
    let app_only = h
        .app
        .add_app_only("Daemon", "shared@contoso.com")
        .await
        .unwrap();
    assert_eq!(app_only.grant_kind, GrantKind::ClientCredentials);
    assert_eq!(app_only.identity, "app:ms-daemon");
    assert!(!app_only.has_refresh_token);
    let claims = oauthimap_oauth::jwt_claims(
        h.app
            .tokens()
            .access_token(app_only.id, false)
            .await
            .unwrap()
            .secret
            .expose_secret(),
    )
    .unwrap();
    assert_eq!(claims["roles"], serde_json::json!(["IMAP.AccessAsApp"]));
    // Re-acquired before expiry: there is no refresh token, so a new client-credentials grant.
    h.app
        .tokens()
        .access_token(app_only.id, true)
        .await
        .unwrap();
    assert_eq!(h.idp.stats().grant("client_credentials").successes, 2);
    // An application without a specific tenant is refused with the fix, and nothing is written.
    let multi = ApplicationInput {
        name: Some("Multi".into()),
        tenant: Some("organizations".into()),
        client_id: Some("ms-daemon".into()),
        ..daemon
    };
    h.app.add_application(&multi).await.unwrap();
    let err = h
        .app
        .add_app_only("Multi", "x@contoso.com")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("specific tenant"), "{err}");
    assert!(h.app.list_accounts(Some("Multi")).await.unwrap().is_empty());
    h.t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_callers_cause_one_refresh() {
    let h = harness(Backend::Sqlite, &[]).await;
    h.sign_in("Contoso", None).await;
    let account = h.app.list_accounts(None).await.unwrap().remove(0);
    h.expire_stored_token(account.id).await;
    h.idp.reset_stats();
    h.idp.set_token_delay(Duration::from_millis(200));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let tokens = h.app.tokens().clone();
        tasks.push(tokio::spawn(async move {
            tokens.access_token(account.id, false).await
        }));
    }
    let mut distinct = std::collections::HashSet::new();
    for t in tasks {
        distinct.insert(t.await.unwrap().unwrap().secret.expose_secret().to_owned());
    }
    assert_eq!(distinct.len(), 1, "every caller got the same fresh token");
    assert_eq!(h.idp.stats().grant("refresh_token").requests, 1);
    h.t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgresql_cause_one_refresh() {
    let h = harness(Backend::Postgres, &[]).await;
    h.sign_in("Contoso", None).await;
    let account = h.app.list_accounts(None).await.unwrap().remove(0);
    // A second instance: its own process state, the same database and keys.
    let env = vec![
        (
            "OAUTHIMAP_DATA_DIR".to_owned(),
            h.t.dir.path().join("data").display().to_string(),
        ),
        ("OAUTHIMAP_DATABASE_URL".to_owned(), h.t.url.clone()),
        (
            "OAUTHIMAP_EXTERNAL_BASE_URL".to_owned(),
            h.app.settings().external_base_url().to_string(),
        ),
    ];
    let other = Core::open(Settings::load_from(None, env).unwrap())
        .await
        .unwrap();
    h.expire_stored_token(account.id).await;
    h.idp.reset_stats();
    h.idp.set_token_delay(Duration::from_millis(300));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let tokens = if i % 2 == 0 {
            h.app.tokens().clone()
        } else {
            other.tokens().clone()
        };
        tasks.push(tokio::spawn(async move {
            tokens.access_token(account.id, false).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(h.idp.stats().grant("refresh_token").requests, 1);
    other.close().await;
    h.t.cleanup().await;
}

/// A 429 from the token endpoint throttles the client, not one account: every account of that
/// application waits out `Retry-After` (on demand and in the background refresher) without
/// asking the provider again, and accounts of other applications go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_every_refresh_of_that_application() {
    let h = harness(Backend::Sqlite, &[]).await;
    for user in ["one@contoso.com", "two@contoso.com"] {
        h.idp.add_user(UserConfig::new(user, user));
        h.idp.set_default_user(user);
        h.sign_in("Contoso", None).await;
    }
    let accounts = h.app.list_accounts(None).await.unwrap();
    assert_eq!(accounts.len(), 2);
    let requests = || h.idp.stats().grant("refresh_token").requests;
    h.idp.fail_token_requests(TokenHttpFault {
        status: 429,
        count: 1,
        retry_after: Some(30),
    });
    let before = requests();
    let err = h
        .app
        .tokens()
        .access_token(accounts[0].id, true)
        .await
        .unwrap_err();
    assert!(err.message.contains("429"), "{}", err.message);
    assert_eq!(requests(), before + 1);
    // The other account of the same application is not refreshed either: no request is sent.
    let err = h
        .app
        .tokens()
        .access_token(accounts[1].id, true)
        .await
        .unwrap_err();
    assert!(
        err.message.contains("asked application Contoso to wait"),
        "{}",
        err.message
    );
    assert_eq!(requests(), before + 1, "no request during the pause");
    let until = h
        .app
        .tokens()
        .throttled_until(accounts[1].application_id)
        .expect("the application is paused");
    assert!(
        until >= now_millis() + 28_000 && until <= now_millis() + 31_000,
        "Retry-After: 30 is honoured"
    );
    // The background refresher skips the application's accounts too, while it lasts.
    h.expire_stored_token(accounts[1].id).await;
    h.app.tokens().refresh_due().await;
    assert_eq!(requests(), before + 1, "the refresher waited as well");
    h.t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_keep_the_account_and_its_token() {
    let h = harness(Backend::Sqlite, &[]).await;
    h.sign_in("Contoso", None).await;
    let account = h.app.list_accounts(None).await.unwrap().remove(0);
    let refresh_before = h
        .app
        .store()
        .account_tokens(account.id)
        .await
        .unwrap()
        .refresh_token
        .unwrap();

    h.idp.fail_token_requests(TokenHttpFault {
        status: 503,
        count: 1,
        retry_after: Some(7),
    });
    let err = h
        .app
        .tokens()
        .access_token(account.id, true)
        .await
        .unwrap_err();
    assert_eq!(err.kind, oauthimap_types::FailureKind::Transient, "{err}");
    assert!(
        err.message.contains("503") && err.message.contains("retry after 7s"),
        "{}",
        err.message
    );
    let a = h.app.store().account(account.id).await.unwrap();
    assert_eq!(a.state, AccountState::Failing);
    assert!(
        a.next_attempt_at.unwrap() >= now_millis() + 6000,
        "Retry-After is honoured"
    );
    let kept = h.app.store().account_tokens(account.id).await.unwrap();
    assert_eq!(
        kept.refresh_token.unwrap().expose_secret(),
        refresh_before.expose_secret()
    );
    assert!(
        kept.access_token.is_some(),
        "the access token is kept while it lasts"
    );

    // A provider slower than our timeout is transient too.
    h.idp.set_token_delay(Duration::from_secs(4));
    let err = h
        .app
        .tokens()
        .access_token(account.id, true)
        .await
        .unwrap_err();
    assert_eq!(err.kind, oauthimap_types::FailureKind::Transient);
    assert!(err.message.contains("in time"), "{}", err.message);
    h.idp.set_token_delay(Duration::ZERO);

    // Once the provider is back, the account recovers.
    h.app.tokens().access_token(account.id, true).await.unwrap();
    let a = h.app.store().account(account.id).await.unwrap();
    assert_eq!((a.state, a.failure_count), (AccountState::Active, 0));
    let events = h
        .app
        .store()
        .events(Some(account.id), None, 10)
        .await
        .unwrap();
    assert!(events.iter().any(|e| e.kind == "account.recovered"));
    h.t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_grant_needs_reauth_pauses_receivers_notifies_once_and_reauth_restores() {
    let dir = tempfile::tempdir().unwrap();
    let notices = dir.path().join("notices.log");
    let env_file = dir.path().join("env");
    let command = format!(
        "echo \"$OAUTHIMAP_EVENT $OAUTHIMAP_MAILBOX\" >> {}; env > {}",
        notices.display(),
        env_file.display()
    );
    let h = harness(Backend::Sqlite, &[("OAUTHIMAP_NOTIFY__COMMAND", command)]).await;
    h.sign_in("Contoso", None).await;
    let account = h.app.list_accounts(None).await.unwrap().remove(0);
    let receiver = h
        .app
        .create_receiver(&ReceiverInput {
            name: Some("helpdesk".into()),
            application: Some("Contoso".into()),
            account: Some(USER.into()),
            ..Default::default()
        })
        .await
        .map(|(receiver, _)| receiver)
        .unwrap();
    assert!(receiver.fields.active);

    assert!(h.idp.revoke_user_tokens(USER) > 0);
    h.expire_stored_token(account.id).await;
    let err = h
        .app
        .tokens()
        .access_token(account.id, false)
        .await
        .unwrap_err();
    assert_eq!(err.kind, oauthimap_types::FailureKind::Permanent);
    assert!(err.message.contains("invalid_grant"), "{}", err.message);
    assert_eq!(
        h.idp.stats().grant("refresh_token").requests,
        2,
        "invalid_grant is retried once"
    );
    let a = h.app.store().account(account.id).await.unwrap();
    assert_eq!(a.state, AccountState::NeedsReauth);
    let r = h.app.find_receiver("helpdesk").await.unwrap();
    assert!(!r.fields.active, "receivers are paused, not deleted");
    // Asking again does not ask the provider or notify again.
    assert!(
        h.app
            .tokens()
            .access_token(account.id, false)
            .await
            .is_err()
    );
    assert!(!h.app.tokens().refresh_now(account.id).await.is_refreshed());
    assert_eq!(h.idp.stats().grant("refresh_token").requests, 2);
    // The hook sees a minimal environment: the notice's variables and PATH, HOME, LANG, …,
    // nothing else of the service's (no OAUTHIMAP_* setting, none of the test runner's).
    let env = std::fs::read_to_string(&env_file).unwrap();
    for line in env.lines() {
        let name = line.split_once('=').map_or(line, |(k, _)| k);
        assert!(
            [
                "PATH",
                "HOME",
                "LANG",
                "LC_ALL",
                "TZ",
                "PWD",
                "OLDPWD",
                "SHLVL",
                "_",
                "OAUTHIMAP_EVENT",
                "OAUTHIMAP_ACCOUNT_ID",
                "OAUTHIMAP_MAILBOX",
                "OAUTHIMAP_APPLICATION",
                "OAUTHIMAP_RECEIVER",
                "OAUTHIMAP_REASON",
            ]
            .contains(&name),
            "{name} reached the hook:\n{env}"
        );
    }
    let log = std::fs::read_to_string(&notices).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [format!("account.needs_reauth {USER}")]
    );

    // Signing in again restores the account and resumes its receivers.
    let (status, _) = h.sign_in("Contoso", None).await;
    assert_eq!(status, 200);
    let a = h.app.store().account(account.id).await.unwrap();
    assert_eq!(a.state, AccountState::Active);
    assert!(h.app.find_receiver("helpdesk").await.unwrap().fields.active);
    h.app.tokens().access_token(account.id, true).await.unwrap();

    // Whatever paused them: a changed tenant (confirmed) revokes the account and switches its
    // receivers off; signing in again brings them back and says how many. A receiver a person
    // switched off stays off.
    h.app
        .create_receiver(&ReceiverInput {
            name: Some("archive".into()),
            application: Some("Contoso".into()),
            account: Some(USER.into()),
            active: Some(false),
            ..Default::default()
        })
        .await
        .map(|(receiver, _)| receiver)
        .unwrap();
    h.app
        .update_application(
            "Contoso",
            &ApplicationInput {
                tenant: Some("fabrikam.onmicrosoft.com".into()),
                confirm: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!h.app.find_receiver("helpdesk").await.unwrap().fields.active);
    let (status, page) = h.sign_in("Contoso", None).await;
    assert_eq!(status, 200, "{page}");
    assert!(h.app.find_receiver("helpdesk").await.unwrap().fields.active);
    assert!(
        !h.app.find_receiver("archive").await.unwrap().fields.active,
        "switched off by a person: stays off"
    );
    let events = h
        .app
        .store()
        .events(Some(account.id), None, 5)
        .await
        .unwrap();
    assert!(
        events.iter().any(
            |e| e.kind == "account.reauthorized" && e.message.contains("1 receiver(s) resumed")
        ),
        "{:?}",
        events.iter().map(|e| &e.message).collect::<Vec<_>>()
    );
    h.t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_refresher_renews_ahead_of_expiry() {
    let h = harness(Backend::Sqlite, &[]).await;
    h.idp.set_access_token_lifetime(Duration::from_secs(4));
    h.sign_in("Contoso", None).await;
    let account = h.app.list_accounts(None).await.unwrap().remove(0);
    let first = h
        .app
        .store()
        .account(account.id)
        .await
        .unwrap()
        .access_expires_at
        .unwrap();
    assert_eq!(
        h.app.tokens().refresh_due().await,
        0,
        "nothing due right after sign-in"
    );
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(
        h.app.tokens().refresh_due().await,
        1,
        "due at half its short lifetime"
    );
    let second = h
        .app
        .store()
        .account(account.id)
        .await
        .unwrap()
        .access_expires_at
        .unwrap();
    assert!(second > first);
    h.t.cleanup().await;
}
