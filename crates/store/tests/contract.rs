//! The store contract: every test runs once on SQLite and once on PostgreSQL (see the `sqlite::`
//! and `postgres::` prefixes in the test output), against real databases.
#![allow(clippy::too_many_lines)] // a contract test reads best as one story
use std::sync::Arc;

use oauthimap_crypto::KeyRing;
use oauthimap_store::{
    ApplicationCascade, Backend, Level, NewEvent, Revocation, SecretChange, Store, StoreError,
};
use oauthimap_testkit::TestDb;
use oauthimap_testkit::fixtures::{application_fields as app_fields, receiver_fields};
use oauthimap_types::{
    AccountState, AfterDelivery, GrantKind, Provider, StateChange, TokenSet, now_millis,
};
use secrecy::{ExposeSecret, SecretString};

const CLIENT_SECRET: &str = "Zq8Q~client-secret-VALUE-4711";
const ACCESS: &str = "eyJ0eXAiOiJKV1Qi.access-TOKEN-0815";
const REFRESH: &str = "M.C533_BAY.refresh-TOKEN-42";
const SINK_SECRET: &str = "whsec_sink-SECRET-99";

fn tokens(access: &str, refresh: Option<&str>) -> TokenSet {
    TokenSet {
        access_token: SecretString::from(access.to_owned()),
        expires_at: now_millis() + 3_600_000,
        refresh_token: refresh.map(|r| SecretString::from(r.to_owned())),
        scopes: "https://outlook.office.com/IMAP.AccessAsUser.All offline_access".into(),
    }
}

/// The guarded writes the token service's state machine gives (`oauthimap_tokens::change_for`;
/// spelled out here, as the store's contract is to write what it is given): a refresh and its
/// failures leave only from the states that serve tokens, a revocation from anywhere.
fn serving_to(to: AccountState) -> StateChange {
    StateChange {
        from: vec![AccountState::Active, AccountState::Failing],
        to,
    }
}

fn revoked_from_anywhere() -> StateChange {
    StateChange {
        from: AccountState::ALL.to_vec(),
        to: AccountState::Revoked,
    }
}

async fn setup(backend: Backend) -> (TestDb, Store) {
    let t = TestDb::new(backend).await;
    let store = t.store().await;
    (t, store)
}

async fn applications_crud(backend: Backend) {
    let (t, store) = setup(backend).await;
    let secret = SecretString::from(CLIENT_SECRET.to_owned());
    let app = store
        .insert_application(&app_fields("Contoso"), Some(&secret))
        .await
        .unwrap();
    assert!(app.has_client_secret);
    assert_eq!(app.fields.provider, Provider::Microsoft);
    assert_eq!(
        store
            .application_secret(app.id)
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        CLIENT_SECRET
    );
    assert_eq!(
        store.application_by_name("Contoso").await.unwrap().id,
        app.id
    );

    let dup = store
        .insert_application(&app_fields("Contoso"), None)
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Duplicate { .. }), "{dup}");
    assert!(dup.to_string().contains("Contoso"));

    let mut f = app.fields.clone();
    f.comment = "helpdesk".into();
    let (updated, report) = store
        .update_application(
            app.id,
            &f,
            &SecretChange::Keep,
            &ApplicationCascade::default(),
        )
        .await
        .unwrap();
    assert_eq!(updated.fields.comment, "helpdesk");
    assert!(updated.has_client_secret, "Keep keeps the secret");
    assert_eq!(report.accounts_revoked + report.receivers_deactivated, 0);
    let (cleared, _) = store
        .update_application(
            app.id,
            &f,
            &SecretChange::Clear,
            &ApplicationCascade::default(),
        )
        .await
        .unwrap();
    assert!(!cleared.has_client_secret);

    store
        .insert_application(&app_fields("Another"), None)
        .await
        .unwrap();
    let names: Vec<String> = store
        .applications()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.fields.name)
        .collect();
    assert_eq!(names, ["Another", "Contoso"]);
    store.delete_application(app.id).await.unwrap();
    assert!(matches!(
        store.application(app.id).await,
        Err(StoreError::NotFound { .. })
    ));
    t.cleanup().await;
}

async fn accounts_and_receivers(backend: Backend) {
    let (t, store) = setup(backend).await;
    let app = store
        .insert_application(&app_fields("A"), None)
        .await
        .unwrap();
    let (acc, created) = store
        .upsert_account(
            app.id,
            "help@contoso.com",
            "help@contoso.com",
            GrantKind::AuthorizationCode,
            &tokens(ACCESS, Some(REFRESH)),
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(acc.state, AccountState::Active);
    assert!(acc.has_access_token && acc.has_refresh_token);
    let opened = store.account_tokens(acc.id).await.unwrap();
    assert_eq!(opened.access_token.unwrap().expose_secret(), ACCESS);
    assert_eq!(opened.refresh_token.unwrap().expose_secret(), REFRESH);

    // Re-authorizing the same identity renews the same account and restores its state.
    store
        .set_account_state(acc.id, AccountState::NeedsReauth, Some("invalid_grant"))
        .await
        .unwrap();
    let (again, created) = store
        .upsert_account(
            app.id,
            "help@contoso.com",
            "help@contoso.com",
            GrantKind::AuthorizationCode,
            &tokens("new-access", None),
        )
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, acc.id);
    assert_eq!(again.state, AccountState::Active);
    assert_eq!(again.last_error, None);
    assert!(
        !again.has_refresh_token,
        "a grant without refresh token stores none"
    );

    let shared = store
        .upsert_account(
            app.id,
            "help@contoso.com",
            "shared@contoso.com",
            GrantKind::AuthorizationCode,
            &tokens(ACCESS, Some(REFRESH)),
        )
        .await
        .unwrap()
        .0;
    assert_ne!(shared.id, acc.id, "a shared mailbox is its own account");
    assert_eq!(store.accounts(Some(app.id)).await.unwrap().len(), 2);

    let secret = SecretString::from(SINK_SECRET.to_owned());
    let r = store
        .insert_receiver(
            &receiver_fields("inbox", app.id, Some(acc.id)),
            Some(&secret),
        )
        .await
        .unwrap();
    assert_eq!(r.account_mailbox.as_deref(), Some("help@contoso.com"));
    assert!(r.has_sink_secret);
    assert_eq!(
        store
            .receiver_sink_secret(r.id)
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        SINK_SECRET
    );
    let dup = store
        .insert_receiver(&receiver_fields("inbox", app.id, None), None)
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Duplicate { .. }));

    let mut f = r.fields.clone();
    f.folder = "Helpdesk".into();
    f.after_delivery = AfterDelivery::Move;
    f.accepted_folder = Some("Done".into());
    let r2 = store
        .update_receiver(r.id, &f, &SecretChange::Keep)
        .await
        .unwrap();
    assert_eq!(r2.fields, f);
    assert!(r2.has_sink_secret);

    // Removing the account keeps the receiver, deactivated and detached, with a reason.
    assert_eq!(
        store
            .delete_account(acc.id, "account removed")
            .await
            .unwrap(),
        1
    );
    let r3 = store.receiver(r.id).await.unwrap();
    assert!(!r3.fields.active);
    assert_eq!(r3.fields.account_id, None);
    assert_eq!(r3.paused_reason.as_deref(), Some("account removed"));
    // Re-activating clears the reason.
    let mut f = r3.fields.clone();
    f.active = true;
    f.account_id = Some(shared.id);
    assert_eq!(
        store
            .update_receiver(r.id, &f, &SecretChange::Keep)
            .await
            .unwrap()
            .paused_reason,
        None
    );
    t.cleanup().await;
}

async fn application_cascades(backend: Backend) {
    let (t, store) = setup(backend).await;
    let app = store
        .insert_application(&app_fields("A"), None)
        .await
        .unwrap();
    let other = store
        .insert_application(&app_fields("B"), None)
        .await
        .unwrap();
    let acc = store
        .upsert_account(
            app.id,
            "u@x",
            "u@x",
            GrantKind::AuthorizationCode,
            &tokens(ACCESS, Some(REFRESH)),
        )
        .await
        .unwrap()
        .0;
    let other_acc = store
        .upsert_account(
            other.id,
            "u@x",
            "u@x",
            GrantKind::AuthorizationCode,
            &tokens(ACCESS, Some(REFRESH)),
        )
        .await
        .unwrap()
        .0;
    let r = store
        .insert_receiver(&receiver_fields("r1", app.id, Some(acc.id)), None)
        .await
        .unwrap();
    let r_other = store
        .insert_receiver(&receiver_fields("r2", other.id, Some(other_acc.id)), None)
        .await
        .unwrap();

    let mut f = app.fields.clone();
    f.client_id = "new-client".into();
    let cascade = ApplicationCascade {
        deactivate_receivers: Some("client ID changed".into()),
        revoke_accounts: Some(Revocation {
            change: revoked_from_anywhere(),
            reason: "client ID changed: authorize again".into(),
        }),
        reactivate_paused_for: None,
    };
    let (_, report) = store
        .update_application(app.id, &f, &SecretChange::Keep, &cascade)
        .await
        .unwrap();
    assert_eq!(
        (report.accounts_revoked, report.receivers_deactivated),
        (1, 1)
    );
    let acc = store.account(acc.id).await.unwrap();
    assert_eq!(acc.state, AccountState::Revoked);
    assert!(
        !acc.has_access_token && !acc.has_refresh_token,
        "tokens of a revoked grant are dropped"
    );
    assert!(!store.receiver(r.id).await.unwrap().fields.active);
    // The other application's rows are untouched.
    assert_eq!(
        store.account(other_acc.id).await.unwrap().state,
        AccountState::Active
    );
    assert!(store.receiver(r_other.id).await.unwrap().fields.active);
    t.cleanup().await;
}

/// Reads every byte the database holds and looks for each secret, in plain and hex form.
/// The store writes the account state it is given (the token service computes it), binding it
/// as a parameter: a transient failure, a refresh, a lost grant (once: the second call reports
/// nothing to do, so the service notifies once), and the refresher's filter.
async fn account_states_are_written_as_given(backend: Backend) {
    let (t, store) = setup(backend).await;
    let app = store
        .insert_application(&app_fields("A"), None)
        .await
        .unwrap();
    let (acc, _) = store
        .upsert_account(
            app.id,
            "u@x",
            "u@x",
            GrantKind::AuthorizationCode,
            &tokens(ACCESS, Some(REFRESH)),
        )
        .await
        .unwrap();
    assert_eq!(acc.state, Store::AUTHORIZED_STATE);
    let r = store
        .insert_receiver(&receiver_fields("r1", app.id, Some(acc.id)), None)
        .await
        .unwrap();

    let next = now_millis() + 60_000;
    for n in 1..=2 {
        let count = store
            .record_transient_failure(acc.id, &serving_to(AccountState::Failing), "HTTP 503", next)
            .await
            .unwrap();
        assert_eq!(count, Some(n));
    }
    let a = store.account(acc.id).await.unwrap();
    assert_eq!(a.state, AccountState::Failing);
    assert_eq!(
        (a.failure_count, a.next_attempt_at, a.last_error.as_deref()),
        (2, Some(next), Some("HTTP 503"))
    );
    assert!(a.has_access_token, "a transient failure keeps the token");
    // Backing off: not due until the next attempt.
    let due = store
        .accounts_due(now_millis(), 0, i64::MAX, 1)
        .await
        .unwrap();
    assert!(due.is_empty(), "{due:?}");

    let written = store
        .record_refresh(
            acc.id,
            &tokens("fresh", None),
            &serving_to(AccountState::Active),
        )
        .await
        .unwrap();
    assert!(written);
    let a = store.account(acc.id).await.unwrap();
    assert_eq!(
        (a.state, a.failure_count, a.next_attempt_at, a.last_error),
        (AccountState::Active, 0, None, None)
    );
    assert!(
        a.has_refresh_token,
        "a refresh without rotation keeps the refresh token"
    );
    let due = store
        .accounts_due(now_millis(), 0, i64::MAX, 1)
        .await
        .unwrap();
    assert_eq!(due, [(acc.id, app.id)], "an active account is refreshed");

    let paused = store
        .lose_grant(
            acc.id,
            &serving_to(AccountState::NeedsReauth),
            "invalid_grant",
            "reauth",
        )
        .await
        .unwrap();
    assert_eq!(paused, Some(1));
    let again = store
        .lose_grant(
            acc.id,
            &serving_to(AccountState::NeedsReauth),
            "invalid_grant",
            "reauth",
        )
        .await
        .unwrap();
    assert_eq!(
        again, None,
        "no longer in a state it leaves from: nothing to do, nobody to notify"
    );
    let a = store.account(acc.id).await.unwrap();
    assert_eq!(a.state, AccountState::NeedsReauth);
    assert_eq!(a.last_error.as_deref(), Some("invalid_grant"));
    assert!(!a.has_access_token, "a lost grant drops the access token");
    let r = store.receiver(r.id).await.unwrap();
    assert!(!r.fields.active);
    assert_eq!(r.paused_reason.as_deref(), Some("reauth"));
    let due = store
        .accounts_due(now_millis(), 0, i64::MAX, 1)
        .await
        .unwrap();
    assert!(
        due.is_empty(),
        "an account that lost its grant is not refreshed"
    );
    t.cleanup().await;
}

/// A refresh that ends after the account was revoked (an administrator changed the client ID
/// while the provider answered) does not bring it back: the guarded write changes no row, says
/// so, and stores none of the late tokens; neither does a late transient failure nor a late
/// rejection (which would otherwise turn `revoked` into `needs_reauth` and pause receivers).
/// A sign-in still repairs it.
async fn late_refresh_results_do_not_revive_a_revoked_account(backend: Backend) {
    let (t, store) = setup(backend).await;
    let app = store
        .insert_application(&app_fields("A"), None)
        .await
        .unwrap();
    let (acc, _) = store
        .upsert_account(
            app.id,
            "u@x",
            "u@x",
            GrantKind::AuthorizationCode,
            &tokens(ACCESS, Some(REFRESH)),
        )
        .await
        .unwrap();
    let r = store
        .insert_receiver(&receiver_fields("r1", app.id, Some(acc.id)), None)
        .await
        .unwrap();
    // The refresh starts from `active`; meanwhile the application's client ID changes.
    let mut f = app.fields.clone();
    f.client_id = "new-client".into();
    let cascade = ApplicationCascade {
        revoke_accounts: Some(Revocation {
            change: revoked_from_anywhere(),
            reason: "client ID changed: authorize again".into(),
        }),
        ..ApplicationCascade::default()
    };
    let (_, report) = store
        .update_application(app.id, &f, &SecretChange::Keep, &cascade)
        .await
        .unwrap();
    assert_eq!(report.accounts_revoked, 1);

    let written = store
        .record_refresh(
            acc.id,
            &tokens("late-access", Some("late-refresh")),
            &serving_to(AccountState::Active),
        )
        .await
        .unwrap();
    assert!(!written, "the late refresh reports that nothing changed");
    let a = store.account(acc.id).await.unwrap();
    assert_eq!(a.state, AccountState::Revoked);
    assert_eq!(
        a.last_error.as_deref(),
        Some("client ID changed: authorize again")
    );
    assert!(
        !a.has_access_token && !a.has_refresh_token,
        "the late tokens are not stored"
    );

    let failed = store
        .record_transient_failure(
            acc.id,
            &serving_to(AccountState::Failing),
            "HTTP 503",
            now_millis() + 60_000,
        )
        .await
        .unwrap();
    assert_eq!(failed, None, "a late transient failure changes nothing");
    let lost = store
        .lose_grant(
            acc.id,
            &serving_to(AccountState::NeedsReauth),
            "invalid_grant",
            "reauth",
        )
        .await
        .unwrap();
    assert_eq!(lost, None, "a late rejection changes nothing");
    let a = store.account(acc.id).await.unwrap();
    assert_eq!((a.state, a.failure_count), (AccountState::Revoked, 0));
    let r = store.receiver(r.id).await.unwrap();
    assert!(
        r.fields.active && r.paused_reason.is_none(),
        "the late rejection paused no receiver (this cascade left them on)"
    );
    let due = store
        .accounts_due(now_millis(), 0, i64::MAX, 1)
        .await
        .unwrap();
    assert!(
        due.is_empty(),
        "a revoked account is not refreshed: {due:?}"
    );

    // A guarded write on an account that does not exist is still an error.
    let gone = oauthimap_types::AccountId(acc.id.0 + 1000);
    assert!(matches!(
        store
            .record_refresh(gone, &tokens("x", None), &serving_to(AccountState::Active))
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // Signing in again is the repair.
    let (again, created) = store
        .upsert_account(
            app.id,
            "u@x",
            "u@x",
            GrantKind::AuthorizationCode,
            &tokens("new-access", Some("new-refresh")),
        )
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.state, AccountState::Active);
    t.cleanup().await;
}

async fn raw_bytes(t: &TestDb) -> Vec<u8> {
    match t.db.backend() {
        Backend::Sqlite => {
            let mut all = Vec::new();
            for entry in std::fs::read_dir(t.dir.path()).unwrap() {
                let path = entry.unwrap().path();
                if path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("test.db")
                {
                    all.extend(std::fs::read(&path).unwrap());
                }
            }
            assert!(all.len() > 4096, "read the SQLite file and its WAL");
            all
        }
        Backend::Postgres => {
            let oauthimap_store::Db::Postgres(pool) = &t.db else {
                unreachable!()
            };
            let mut all = Vec::new();
            for table in [
                "meta",
                "applications",
                "accounts",
                "receivers",
                "events",
                "leases",
            ] {
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT t::text FROM {table} t"
                )))
                .fetch_all(pool)
                .await
                .unwrap();
                for row in rows {
                    all.extend(row.into_bytes());
                }
            }
            assert!(!all.is_empty());
            all
        }
    }
}

async fn no_plaintext_secret_in_raw_bytes(backend: Backend) {
    let (t, store) = setup(backend).await;
    let app = store
        .insert_application(
            &app_fields("A"),
            Some(&SecretString::from(CLIENT_SECRET.to_owned())),
        )
        .await
        .unwrap();
    let acc = store
        .upsert_account(
            app.id,
            "u@x",
            "u@x",
            GrantKind::AuthorizationCode,
            &tokens(ACCESS, Some(REFRESH)),
        )
        .await
        .unwrap()
        .0;
    store
        .insert_receiver(
            &receiver_fields("r", app.id, Some(acc.id)),
            Some(&SecretString::from(SINK_SECRET.to_owned())),
        )
        .await
        .unwrap();
    let bytes = raw_bytes(&t).await;
    // The non-secret fields are there in clear: proof that the scan sees the data at all.
    assert!(
        bytes.windows(14).any(|w| w == b"11111111-2222-"),
        "client id visible"
    );
    for secret in [CLIENT_SECRET, ACCESS, REFRESH, SINK_SECRET] {
        let hex: String = secret.bytes().fold(String::new(), |mut s, b| {
            use std::fmt::Write;
            let _ = write!(s, "{b:02x}");
            s
        });
        for needle in [secret.as_bytes(), hex.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{backend}: a secret appears in plaintext in the database"
            );
        }
    }
    t.cleanup().await;
}

async fn wrong_key_file_is_refused(backend: Backend) {
    let (t, store) = setup(backend).await;
    store
        .insert_application(
            &app_fields("A"),
            Some(&SecretString::from(CLIENT_SECRET.to_owned())),
        )
        .await
        .unwrap();
    assert!(t.db.is_sealed().await.unwrap());
    let other = tempfile::tempdir().unwrap();
    let other_path = other.path().join("other.key");
    let (keys, _) = KeyRing::from_file(&other_path, true).unwrap();
    let err = Store::new(t.db.clone(), Arc::new(keys))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&other_path.display().to_string()), "{err}");
    assert!(err.contains("does not match"), "{err}");
    t.cleanup().await;
}

/// Fencing: the epoch moves on only when another holder takes a lease (a release keeps the
/// count), and a ledger write under a stale fence records nothing.
async fn a_stale_fence_records_nothing(backend: Backend) {
    use oauthimap_store::{LedgerStatus, LedgerWrite, StoreError};
    let (t, store) = setup(backend).await;
    let app = store
        .insert_application(&app_fields("A"), None)
        .await
        .unwrap();
    let r = store
        .insert_receiver(&receiver_fields("r", app.id, None), None)
        .await
        .unwrap();
    let lease = format!("receiver:{}", r.id.0);
    // A takes the lease, then stalls past it.
    let a = store.take_lease(&lease, "a", 1).await.unwrap().unwrap();
    let renewed = store.take_lease(&lease, "a", 1).await.unwrap().unwrap();
    assert_eq!(renewed.epoch, a.epoch, "a renewal keeps the epoch");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // B takes over, releases, and A's own renewal afterwards is a new epoch too.
    let b = store
        .take_lease(&lease, "b", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert!(b.epoch > a.epoch, "{b:?} after {a:?}");
    assert!(!store.fence_holds(&a).await.unwrap());
    assert!(store.fence_holds(&b).await.unwrap());
    let write = LedgerWrite {
        receiver: r.id,
        uid_validity: 1,
        uid: 1,
        idempotency_key: "r-1-1",
        message_id: None,
        content_hash: None,
        size: 10,
        status: LedgerStatus::Delivered,
        reason: None,
        receipt: Some("ok"),
    };
    let err = store.record_ledger(&write, Some(&a)).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert!(err.to_string().contains("taken over"), "{err}");
    assert!(
        store.ledger_entry(r.id, 1, 1).await.unwrap().is_none(),
        "nothing recorded"
    );
    store.record_ledger(&write, Some(&b)).await.unwrap();
    store.release_lease(&lease, "b").await.unwrap();
    let again = store
        .take_lease(&lease, "a", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert!(
        again.epoch > b.epoch,
        "a release keeps the count: {again:?} after {b:?}"
    );
    assert!(!store.fence_holds(&b).await.unwrap());
    let err = store
        .record_ledger(
            &LedgerWrite {
                uid: 2,
                ..write.clone()
            },
            Some(&b),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    store
        .record_ledger(&LedgerWrite { uid: 2, ..write }, Some(&again))
        .await
        .unwrap();
    // Presence rows: counted while unexpired; forgotten once expired (a stopped or long-dead
    // instance), never a live one, and receiver leases are untouched.
    store
        .take_lease("instance:x-1-aa", "x-1-aa", 60_000)
        .await
        .unwrap();
    store
        .take_lease("instance:y-2-bb", "y-2-bb", 1)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(store.live_leases("instance:").await.unwrap(), 1);
    assert_eq!(
        store
            .forget_leases("instance:", oauthimap_types::now_millis())
            .await
            .unwrap(),
        1,
        "only the expired presence row goes"
    );
    assert_eq!(store.live_leases("instance:").await.unwrap(), 1);
    assert!(store.fence_holds(&again).await.unwrap());
    t.cleanup().await;
}

/// Keep-warm refreshes of accounts authorized together fall due spread evenly over the spread
/// window, by an offset fixed per account: no tenth of the window holds more than twice its even
/// share, and the accounts of other states are never due.
async fn keep_warm_refreshes_are_spread(backend: Backend) {
    use oauthimap_types::{GrantKind, TokenSet};
    const N: i64 = 400;
    let (t, store) = setup(backend).await;
    let app = store
        .insert_application(&app_fields("A"), None)
        .await
        .unwrap();
    let issued = oauthimap_types::now_millis();
    for i in 0..N {
        store
            .upsert_account(
                app.id,
                &format!("u{i}@contoso.com"),
                &format!("u{i}@contoso.com"),
                GrantKind::AuthorizationCode,
                &TokenSet {
                    access_token: SecretString::from("at".to_owned()),
                    // The access token is fresh: only keep-warm can make an account due.
                    expires_at: issued + 3_600_000,
                    refresh_token: Some(SecretString::from(format!("rt{i}"))),
                    scopes: String::new(),
                },
            )
            .await
            .unwrap();
    }
    let spread: i64 = 36 * 3_600_000;
    // `warm_before` is "now minus the keep-warm time": walk it over the spread window.
    let due_at = |x: i64| {
        let store = store.clone();
        async move {
            store
                .accounts_due(issued, 0, issued - spread + x, spread)
                .await
                .unwrap()
                .len() as i64
        }
    };
    assert_eq!(due_at(-60_000).await, 0, "none before the window opens");
    let mut before = 0;
    for tenth in 1..=10 {
        let due = due_at(spread * tenth / 10).await;
        let burst = due - before;
        assert!(
            burst <= 2 * N / 10,
            "tenth {tenth} of the window: {burst} accounts fall due (even share {})",
            N / 10
        );
        before = due;
    }
    assert_eq!(before, N, "all due by the end of the window");
    t.cleanup().await;
}

/// Access tokens issued together are renewed over one whole renewal period (lifetime minus the
/// margin), each at an offset fixed per account, not all in the minute before they expire: no
/// tenth of the period holds more than twice its even share, none is due at issue, all are due
/// by the end of the period.
async fn access_renewals_are_spread_over_the_period(backend: Backend) {
    use oauthimap_types::{GrantKind, TokenSet};
    const N: i64 = 400;
    const LIFETIME: i64 = 3_600_000;
    const MARGIN: i64 = 600_000;
    let (t, store) = setup(backend).await;
    let app = store
        .insert_application(&app_fields("A"), None)
        .await
        .unwrap();
    let issued = oauthimap_types::now_millis();
    for i in 0..N {
        store
            .upsert_account(
                app.id,
                &format!("u{i}@contoso.com"),
                &format!("u{i}@contoso.com"),
                GrantKind::AuthorizationCode,
                &TokenSet {
                    access_token: SecretString::from("at".to_owned()),
                    expires_at: issued + LIFETIME,
                    refresh_token: Some(SecretString::from(format!("rt{i}"))),
                    scopes: String::new(),
                },
            )
            .await
            .unwrap();
    }
    // Keep-warm is far away (warm_before in the past): only the access token can be due.
    let due_at = |now: i64| {
        let store = store.clone();
        async move { store.accounts_due(now, MARGIN, 0, 1).await.unwrap().len() as i64 }
    };
    let period = LIFETIME - MARGIN;
    assert_eq!(due_at(issued).await, 0, "none is due when issued");
    let mut before = 0;
    for tenth in 1..=10 {
        let due = due_at(issued + period * tenth / 10).await;
        let burst = due - before;
        assert!(
            burst <= 2 * N / 10,
            "tenth {tenth} of the period: {burst} accounts fall due (even share {})",
            N / 10
        );
        before = due;
    }
    assert_eq!(
        due_at(issued + period + 5_000).await,
        N,
        "all due within one period"
    );
    t.cleanup().await;
}

async fn leases_give_single_ownership(backend: Backend) {
    let (t, store) = setup(backend).await;
    assert!(
        store
            .try_lease("refresh:1", "instance-a", 60_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_lease("refresh:1", "instance-b", 60_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lease("refresh:1", "instance-a", 60_000)
            .await
            .unwrap(),
        "the holder renews"
    );
    store
        .release_lease("refresh:1", "instance-b")
        .await
        .unwrap();
    assert!(
        !store
            .try_lease("refresh:1", "instance-b", 60_000)
            .await
            .unwrap(),
        "only the holder releases"
    );
    store
        .release_lease("refresh:1", "instance-a")
        .await
        .unwrap();
    assert!(store.try_lease("refresh:1", "instance-b", 1).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(
        store
            .try_lease("refresh:1", "instance-a", 60_000)
            .await
            .unwrap(),
        "an expired lease is taken over"
    );

    // Many contenders at once: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .try_lease("race", &format!("h{i}"), 60_000)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
    t.cleanup().await;
}

async fn events_page_newest_first(backend: Backend) {
    let (t, store) = setup(backend).await;
    for i in 0..5 {
        store
            .record_event(&NewEvent {
                level: Level::Info,
                kind: "test.event",
                application_id: None,
                account_id: None,
                receiver_id: None,
                message: format!("event {i}"),
            })
            .await
            .unwrap();
    }
    let page = store.events(None, None, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["event 4", "event 3", "event 2"]
    );
    let next = store.events(None, Some(page[2].id), 3).await.unwrap();
    assert_eq!(
        next.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["event 1", "event 0"]
    );
    t.cleanup().await;
}

async fn rotation_while_reads_continue(backend: Backend) {
    let (t, store) = setup(backend).await;
    let mut accounts = Vec::new();
    for i in 0..30 {
        let secret = SecretString::from(format!("secret-{i}"));
        let app = store
            .insert_application(&app_fields(&format!("app{i}")), Some(&secret))
            .await
            .unwrap();
        let acc = store
            .upsert_account(
                app.id,
                "u@x",
                "u@x",
                GrantKind::AuthorizationCode,
                &tokens(&format!("access-{i}"), Some(&format!("refresh-{i}"))),
            )
            .await
            .unwrap()
            .0;
        accounts.push((app.id, acc.id, i));
    }
    assert_eq!(
        store.key_usage().await.unwrap().by_key.get(&1),
        Some(&91),
        "30 secrets + 60 tokens + key check"
    );

    // Readers keep opening every secret while the keys rotate underneath them.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (store, stop, accounts) = (store.clone(), stop.clone(), accounts.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                for (app, acc, i) in &accounts {
                    let s = store.application_secret(*app).await.unwrap().unwrap();
                    assert_eq!(s.expose_secret(), format!("secret-{i}"));
                    let tk = store.account_tokens(*acc).await.unwrap();
                    assert_eq!(
                        tk.refresh_token.unwrap().expose_secret(),
                        format!("refresh-{i}")
                    );
                    reads += 1;
                }
            }
            reads
        }));
    }
    let new_id = store.keys().rotate().unwrap();
    assert_eq!(new_id, 2);
    let report = store.reseal_all().await.unwrap();
    assert_eq!(report.resealed, 90);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
    let usage = store.key_usage().await.unwrap();
    assert_eq!(
        usage.by_key.keys().copied().collect::<Vec<_>>(),
        [2],
        "everything is under the new key"
    );
    // A second pass has nothing to do: the re-seal is restartable.
    assert_eq!(store.reseal_all().await.unwrap().resealed, 0);
    // With the old key retired, every secret still opens.
    assert_eq!(store.keys().retire_old_keys().unwrap(), vec![1]);
    let (app, acc, i) = accounts[7];
    assert_eq!(
        store
            .application_secret(app)
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        format!("secret-{i}")
    );
    assert!(
        store
            .account_tokens(acc)
            .await
            .unwrap()
            .access_token
            .is_some()
    );
    // And a fresh process with the rotated key file opens the database.
    let (keys, _) = KeyRing::from_file(&t.dir.path().join("master.key"), false).unwrap();
    Store::new(t.db.clone(), Arc::new(keys)).await.unwrap();
    t.cleanup().await;
}

async fn checkpoints_ledger_and_messages(backend: Backend) {
    use oauthimap_store::{Checkpoint, LedgerStatus, LedgerWrite, NewStoredMessage};
    let (t, store) = setup(backend).await;
    let app = store
        .insert_application(&app_fields("A"), None)
        .await
        .unwrap();
    let r = store
        .insert_receiver(&receiver_fields("r", app.id, None), None)
        .await
        .unwrap();
    assert_eq!(store.checkpoint(r.id).await.unwrap(), None);
    let cp = Checkpoint {
        uid_validity: 1_700_000_000,
        last_uid: 42,
    };
    store.set_checkpoint(r.id, cp).await.unwrap();
    store
        .set_checkpoint(r.id, Checkpoint { last_uid: 43, ..cp })
        .await
        .unwrap();
    assert_eq!(store.checkpoint(r.id).await.unwrap().unwrap().last_uid, 43);

    let write = LedgerWrite {
        receiver: r.id,
        uid_validity: cp.uid_validity,
        uid: 7,
        idempotency_key: "r1-1700000000-7",
        message_id: Some("m7@example.com"),
        content_hash: Some("abc"),
        size: 1234,
        status: LedgerStatus::Failed,
        reason: Some("webhook answered 500"),
        receipt: None,
    };
    let first = store.record_ledger(&write, None).await.unwrap();
    assert_eq!((first.status, first.attempts), (LedgerStatus::Failed, 1));
    let second = store
        .record_ledger(
            &LedgerWrite {
                status: LedgerStatus::Delivered,
                reason: None,
                receipt: Some("200"),
                ..write.clone()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        second.id, first.id,
        "one row per (receiver, UIDVALIDITY, UID)"
    );
    assert_eq!(
        (second.status, second.attempts),
        (LedgerStatus::Delivered, 2)
    );
    assert!(!second.post_action_done);
    store.ledger_post_action_done(second.id).await.unwrap();
    let again = store
        .ledger_entry(r.id, cp.uid_validity, 7)
        .await
        .unwrap()
        .unwrap();
    assert!(again.post_action_done);
    assert_eq!(
        store
            .ledger_by_hash(r.id, "abc")
            .await
            .unwrap()
            .unwrap()
            .uid,
        7,
        "found after a UIDVALIDITY change"
    );
    assert!(store.ledger_by_hash(r.id, "other").await.unwrap().is_none());
    store
        .set_ledger_status(again.id, LedgerStatus::Dead, Some("gave up"))
        .await
        .unwrap();
    assert_eq!(
        store
            .ledger(Some(r.id), Some(LedgerStatus::Dead), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.ledger_counts(r.id).await.unwrap(),
        vec![("dead".to_owned(), 1)]
    );

    let message = NewStoredMessage {
        idempotency_key: "r1-1700000000-7",
        receiver: Some(r.id),
        message_id: Some("m7@example.com"),
        subject: "Printer on fire",
        from_address: "ann@example.com",
        from_name: "Ann",
        date: Some("2026-11-28T00:00:00Z"),
        size: 1234,
        sha256: "abc",
        normalized: "{}",
        raw_path: "messages/batch-1.raw",
        raw_offset: 0,
        raw_len: 1234,
    };
    let (id, new) = store.insert_message(&message).await.unwrap();
    assert!(new);
    let (same, new) = store.insert_message(&message).await.unwrap();
    assert_eq!(
        (same, new),
        (id, false),
        "the same idempotency key stores once"
    );
    assert_eq!(store.message_count().await.unwrap(), 1);
    let stored = store.message(id).await.unwrap();
    assert_eq!(
        (stored.raw_path.as_str(), stored.raw_offset, stored.raw_len),
        ("messages/batch-1.raw", Some(0), Some(1234))
    );
    assert_eq!(
        store
            .messages(Some("PRINTER"), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.messages(Some("ann@"), None, 10).await.unwrap().len(),
        1
    );
    assert!(
        store
            .messages(Some("nothing"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // `%` and `_` are letters to search for, not wildcards.
    for wildcard in ["%", "_", "printer_on", "printer%fire"] {
        assert!(
            store
                .messages(Some(wildcard), None, 10)
                .await
                .unwrap()
                .is_empty(),
            "{wildcard:?} matched as a wildcard"
        );
    }
    assert_eq!(store.message(id).await.unwrap().subject, "Printer on fire");

    // Batches: one multi-row statement each; answers come back in the order asked, whatever
    // order the database returns the rows in.
    let keys: Vec<String> = (100..400)
        .map(|uid| format!("r1-1700000000-{uid}"))
        .collect();
    let mut batch: Vec<NewStoredMessage<'_>> = keys
        .iter()
        .zip(0..)
        .map(|(key, i)| NewStoredMessage {
            idempotency_key: key,
            raw_offset: i * 1234,
            ..message.clone()
        })
        .collect();
    batch.insert(150, message.clone()); // stored above already
    batch.push(batch[0].clone()); // the same key twice in one batch
    let ids = store.insert_messages(&batch).await.unwrap();
    assert_eq!(ids.len(), batch.len());
    assert_eq!(
        ids[150],
        (id, false),
        "an earlier message is found, not stored"
    );
    assert_eq!(ids[301], (ids[0].0, false), "a repeated key stores once");
    assert!(ids[..150].iter().chain(&ids[151..301]).all(|(_, new)| *new));
    for (m, (row, _)) in batch.iter().zip(&ids) {
        assert_eq!(
            store.message(*row).await.unwrap().idempotency_key,
            m.idempotency_key
        );
        assert_eq!(
            store.message(*row).await.unwrap().raw_offset,
            Some(m.raw_offset)
        );
    }
    let probe: Vec<&str> = keys[..3]
        .iter()
        .map(String::as_str)
        .chain(["r1-never"])
        .collect();
    assert_eq!(
        store.stored_message_keys(&probe).await.unwrap(),
        keys[..3].iter().cloned().collect(),
        "the keys stored already, and no other"
    );
    assert_eq!(store.message_count().await.unwrap(), 301);
    assert_eq!(
        store.insert_messages(&batch[..10]).await.unwrap(),
        ids[..10]
            .iter()
            .map(|(i, _)| (*i, false))
            .collect::<Vec<_>>(),
        "a repeated batch changes nothing"
    );

    let writes: Vec<LedgerWrite<'_>> = (0..600u32)
        .rev() // not in UID order
        .map(|i| LedgerWrite {
            uid: 1000 + i,
            status: if i % 3 == 0 {
                LedgerStatus::Refused
            } else {
                LedgerStatus::Delivered
            },
            ..write.clone()
        })
        .chain(std::iter::once(LedgerWrite {
            status: LedgerStatus::Delivered,
            ..write.clone() // UID 7, recorded twice above
        }))
        .collect();
    let rows = store.record_ledger_batch(&writes, None).await.unwrap();
    assert_eq!(rows.len(), writes.len());
    for (w, row) in writes.iter().zip(&rows) {
        assert_eq!((row.uid, row.status), (w.uid, w.status));
    }
    assert_eq!(rows[600].id, first.id);
    assert_eq!(
        rows[600].attempts, 3,
        "an existing row counts one more attempt"
    );
    assert!(
        rows[..600]
            .iter()
            .all(|r| r.attempts == 1 && !r.post_action_done)
    );
    let done: Vec<i64> = rows[..550].iter().map(|r| r.id).collect();
    let moved = Checkpoint {
        last_uid: 1549,
        ..cp
    };
    store
        .ledger_post_actions_done(&done, Some((r.id, moved)))
        .await
        .unwrap();
    let after = store
        .ledger_range(r.id, cp.uid_validity, 1000, 1599)
        .await
        .unwrap();
    assert_eq!(after.len(), 600);
    assert_eq!(
        after.iter().filter(|e| e.post_action_done).count(),
        550,
        "exactly the given rows are marked"
    );
    assert!(
        after
            .iter()
            .filter(|e| e.uid >= 1050)
            .all(|e| e.post_action_done)
    );
    assert_eq!(store.checkpoint(r.id).await.unwrap(), Some(moved));
    t.cleanup().await;
}

async fn message_search_filters_and_pages(backend: Backend) {
    use oauthimap_store::{MessageFilter, NewStoredMessage};
    let (t, store) = setup(backend).await;
    let app = store
        .insert_application(&app_fields("A"), None)
        .await
        .unwrap();
    let r = store
        .insert_receiver(&receiver_fields("helpdesk", app.id, None), None)
        .await
        .unwrap();
    let before_insert = now_millis();
    let mail = [
        ("k1", "Ann@Example.com", "Ann Smith", "Printer on fire"),
        ("k2", "bob@example.com", "Bob", "50% off_today"),
        ("k3", "carol@example.org", "Carol", "Re: printer"),
    ];
    let mut ids = Vec::new();
    for (key, from, name, subject) in mail {
        let (id, _) = store
            .insert_message(&NewStoredMessage {
                idempotency_key: key,
                receiver: Some(r.id),
                message_id: None,
                subject,
                from_address: from,
                from_name: name,
                date: None,
                size: 10,
                sha256: "abc",
                normalized: "{}",
                raw_path: "x.eml",
                raw_offset: 0,
                raw_len: 10,
            })
            .await
            .unwrap();
        ids.push(id);
    }
    let find = |filter: MessageFilter, limit: u32| {
        let store = store.clone();
        async move {
            store
                .find_messages(&filter, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.id)
                .collect::<Vec<_>>()
        }
    };
    let text = |s: &str| Some(s.to_owned());
    // Newest first, with the receiver's name.
    let all = store
        .find_messages(&MessageFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1], ids[0]]
    );
    assert_eq!(all[0].receiver_name.as_deref(), Some("helpdesk"));
    // Sender: address or display name, any case.
    let by_sender = |s: &str| MessageFilter {
        sender: text(s),
        ..MessageFilter::default()
    };
    assert_eq!(find(by_sender("ann@example"), 10).await, vec![ids[0]]);
    assert_eq!(find(by_sender("BOB"), 10).await, vec![ids[1]]);
    assert_eq!(find(by_sender("example.org"), 10).await, vec![ids[2]]);
    // Subject; LIKE wildcards in the search text are plain characters.
    let by_subject = |s: &str| MessageFilter {
        subject: text(s),
        ..MessageFilter::default()
    };
    assert_eq!(find(by_subject("PRINTER"), 10).await, vec![ids[2], ids[0]]);
    assert_eq!(find(by_subject("50% off_"), 10).await, vec![ids[1]]);
    assert_eq!(find(by_subject("%"), 10).await, vec![ids[1]]);
    assert!(find(by_subject("on_fire"), 10).await.is_empty());
    // Both text filters at once.
    let both = MessageFilter {
        sender: text("carol"),
        subject: text("printer"),
        ..MessageFilter::default()
    };
    assert_eq!(find(both, 10).await, vec![ids[2]]);
    // Collection time range: [since, until).
    let hour = 3_600_000;
    let range = |since: i64, until: i64| MessageFilter {
        since: Some(since),
        until: Some(until),
        ..MessageFilter::default()
    };
    assert_eq!(
        find(range(before_insert - hour, now_millis() + hour), 10)
            .await
            .len(),
        3
    );
    assert!(
        find(range(now_millis() + hour, now_millis() + 2 * hour), 10)
            .await
            .is_empty()
    );
    assert!(
        find(range(before_insert - 2 * hour, before_insert - hour), 10)
            .await
            .is_empty()
    );
    // Cursor paging: the next page starts below the last id of the previous one.
    let first = find(MessageFilter::default(), 2).await;
    assert_eq!(first, vec![ids[2], ids[1]]);
    let next = MessageFilter {
        before: first.last().copied(),
        ..MessageFilter::default()
    };
    assert_eq!(find(next, 2).await, vec![ids[0]]);
    let printer_page = MessageFilter {
        subject: text("printer"),
        before: Some(ids[2]),
        ..MessageFilter::default()
    };
    assert_eq!(find(printer_page, 2).await, vec![ids[0]]);
    t.cleanup().await;
}

async fn receiver_states_keep_their_start_and_sink_outages_their_first_failure(backend: Backend) {
    use oauthimap_store::{LedgerStatus, LedgerWrite, StatusReport};
    use oauthimap_types::ReceiverState;
    let (t, store) = setup(backend).await;
    let app = store
        .insert_application(&app_fields("A"), None)
        .await
        .unwrap();
    let r = store
        .insert_receiver(&receiver_fields("r", app.id, None), None)
        .await
        .unwrap();
    assert_eq!(store.receiver_status(r.id).await.unwrap(), None);
    let report = |state, detail: Option<&'static str>, since| StatusReport {
        state,
        detail,
        next_at: Some(99),
        instance: "node-a",
        since,
    };
    store
        .report_receiver_status(
            r.id,
            &report(ReceiverState::WaitingForSink, Some("HTTP 503"), Some(1_000)),
        )
        .await
        .unwrap();
    store.mark_receiver_status_alerted(r.id).await.unwrap();
    // The same state again: its start and its alert stay, the detail is the latest.
    store
        .report_receiver_status(
            r.id,
            &report(ReceiverState::WaitingForSink, Some("refused"), None),
        )
        .await
        .unwrap();
    let s = store.receiver_status(r.id).await.unwrap().unwrap();
    assert_eq!(
        (
            s.state,
            s.since,
            s.detail.as_deref(),
            s.next_at,
            s.instance.as_deref()
        ),
        (
            ReceiverState::WaitingForSink,
            1_000,
            Some("refused"),
            Some(99),
            Some("node-a")
        )
    );
    assert!(s.alerted_at.is_some());
    // A new state starts now, unalerted.
    store
        .report_receiver_status(r.id, &report(ReceiverState::Idle, None, None))
        .await
        .unwrap();
    let s = store.receiver_status(r.id).await.unwrap().unwrap();
    assert_eq!(s.state, ReceiverState::Idle);
    assert!(s.since > 1_000 && s.alerted_at.is_none(), "{s:?}");
    assert_eq!(
        store.receiver(r.id).await.unwrap().status.map(|s| s.state),
        Some(ReceiverState::Idle),
        "the receiver row carries its state"
    );
    // Only the instance that reported it clears it.
    store.clear_receiver_status(r.id, "node-b").await.unwrap();
    assert!(store.receiver_status(r.id).await.unwrap().is_some());
    store.clear_receiver_status(r.id, "node-a").await.unwrap();
    assert!(store.receiver_status(r.id).await.unwrap().is_none());

    // A failing message keeps the time of its first failure until it is delivered.
    let write = |status| LedgerWrite {
        receiver: r.id,
        uid_validity: 1,
        uid: 5,
        idempotency_key: "k5",
        message_id: None,
        content_hash: None,
        size: 10,
        status,
        reason: None,
        receipt: None,
    };
    assert_eq!(
        store.ledger_entry(r.id, 1, 5).await.unwrap().map(|e| e.uid),
        None
    );
    let first = store
        .record_ledger(&write(LedgerStatus::Failed), None)
        .await
        .unwrap();
    let since = first.failing_since.expect("set on the first failure");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let again = store
        .record_ledger(&write(LedgerStatus::Failed), None)
        .await
        .unwrap();
    assert_eq!((again.failing_since, again.attempts), (Some(since), 2));
    assert_eq!(
        store
            .ledger_entry(r.id, 1, 5)
            .await
            .unwrap()
            .unwrap()
            .failing_since,
        Some(since)
    );
    // Put back in line by an admin: a new run of failures.
    store
        .set_ledger_status(again.id, LedgerStatus::Failed, Some("retry requested"))
        .await
        .unwrap();
    let reset = store.ledger_entry(r.id, 1, 5).await.unwrap().unwrap();
    assert_eq!(reset.failing_since, None);
    let delivered = store
        .record_ledger(&write(LedgerStatus::Delivered), None)
        .await
        .unwrap();
    assert_eq!(delivered.failing_since, None);
    assert_eq!(
        store
            .ledger_entry(r.id, 1, 5)
            .await
            .unwrap()
            .unwrap()
            .failing_since,
        None
    );
    t.cleanup().await;
}

macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Sqlite).await })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Postgres).await })+
        }
    };
}

on_both_backends!(
    applications_crud,
    accounts_and_receivers,
    application_cascades,
    account_states_are_written_as_given,
    late_refresh_results_do_not_revive_a_revoked_account,
    no_plaintext_secret_in_raw_bytes,
    wrong_key_file_is_refused,
    leases_give_single_ownership,
    a_stale_fence_records_nothing,
    keep_warm_refreshes_are_spread,
    access_renewals_are_spread_over_the_period,
    events_page_newest_first,
    rotation_while_reads_continue,
    checkpoints_ledger_and_messages,
    message_search_filters_and_pages,
    receiver_states_keep_their_start_and_sink_outages_their_first_failure,
);

/// Every pooled SQLite connection keeps a small page cache: with the default, each of them
/// filled 2 MiB as the database grew, and a long collection's memory grew with the mailbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_connections_keep_a_small_page_cache() {
    let t = TestDb::new(Backend::Sqlite).await;
    let oauthimap_store::Db::Sqlite(pool) = &t.db else {
        unreachable!()
    };
    // Two connections at once, so the second one is opened with the same options.
    let mut first = pool.acquire().await.unwrap();
    let mut second = pool.acquire().await.unwrap();
    for conn in [&mut first, &mut second] {
        let size: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(size, -512, "KiB of page cache per connection");
    }
    drop((first, second));
    t.cleanup().await;
}

/// An older binary on a database a newer one migrated refuses to open it, naming the migration,
/// rather than running on a schema it does not know (docs/operations.md, "Rolling back").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_by_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url =
        secrecy::SecretString::from(format!("sqlite://{}", dir.path().join("o.db").display()));
    let oauthimap_store::Db::Sqlite(pool) = oauthimap_store::Db::connect(&url).await.unwrap()
    else {
        unreachable!()
    };
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let err = oauthimap_store::Db::connect(&url)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("99990101000000") && err.contains("previously applied"),
        "{err}"
    );
}
