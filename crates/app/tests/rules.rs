//! The seed's rules and input validation at the core, on both backends.
#![allow(clippy::too_many_lines)] // each test reads best as one story

use oauthimap_app::{AccountSelector, AppError, ApplicationInput, Core, ReceiverInput};
use oauthimap_config::Settings;
use oauthimap_store::Backend;
use oauthimap_testkit::TestDb;
use oauthimap_types::{AccountState, GrantKind, Provider, TokenSet, now_millis};
use secrecy::{ExposeSecret, SecretString};

async fn open(t: &TestDb) -> Core {
    open_with(t, &[]).await
}

async fn open_with(t: &TestDb, extra: &[(&str, &str)]) -> Core {
    let mut env = vec![
        (
            "OAUTHIMAP_DATA_DIR".to_owned(),
            t.dir.path().join("data").display().to_string(),
        ),
        ("OAUTHIMAP_DATABASE_URL".to_owned(), t.url.clone()),
        (
            "OAUTHIMAP_EXTERNAL_BASE_URL".to_owned(),
            "https://oauthimap.example.com/base/".to_owned(),
        ),
    ];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let settings = Settings::load_from(None, env).unwrap();
    Core::open(settings).await.unwrap()
}

fn ms_app(name: &str) -> ApplicationInput {
    ApplicationInput {
        name: Some(name.into()),
        provider: Some(Provider::Microsoft),
        client_id: Some("client-1".into()),
        client_secret: Some(SecretString::from("first-secret".to_owned())),
        tenant: Some("contoso.onmicrosoft.com".into()),
        ..Default::default()
    }
}

/// An application with one authorized account and one active receiver using it.
async fn with_receiver(
    app: &Core,
    name: &str,
) -> (oauthimap_store::Account, oauthimap_store::Receiver) {
    let a = app.add_application(&ms_app(name)).await.unwrap();
    let tokens = TokenSet {
        access_token: SecretString::from("at".to_owned()),
        expires_at: now_millis() + 3_600_000,
        refresh_token: Some(SecretString::from("rt".to_owned())),
        scopes: String::new(),
    };
    let (account, _) = app
        .store()
        .upsert_account(
            a.application.id,
            "help@contoso.com",
            "help@contoso.com",
            GrantKind::AuthorizationCode,
            &tokens,
        )
        .await
        .unwrap();
    let receiver = app
        .create_receiver(&ReceiverInput {
            name: Some(format!("{name}-inbox")),
            application: Some(name.into()),
            account: Some("help@contoso.com".into()),
            ..Default::default()
        })
        .await
        .map(|(receiver, _)| receiver)
        .unwrap();
    assert!(receiver.fields.active);
    assert_eq!(
        receiver.fields.host, "outlook.office365.com",
        "server prefilled from the provider"
    );
    assert_eq!(receiver.fields.port, 993);
    (account, receiver)
}

async fn redirect_url_comes_from_configuration(backend: Backend) {
    let t = TestDb::new(backend).await;
    let app = open(&t).await;
    let view = app.add_application(&ms_app("A")).await.unwrap();
    assert_eq!(
        view.redirect_url,
        "https://oauthimap.example.com/base/oauth/callback"
    );
    t.cleanup().await;
}

async fn deactivating_an_application_deactivates_its_receivers(backend: Backend) {
    let t = TestDb::new(backend).await;
    let app = open(&t).await;
    let (_, receiver) = with_receiver(&app, "A").await;
    let (_, other) = with_receiver(&app, "B").await;
    let (_, report) = app
        .update_application(
            "A",
            &ApplicationInput {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(report.receivers_deactivated, 1);
    let r = app.find_receiver(&receiver.fields.name).await.unwrap();
    assert!(!r.fields.active);
    assert!(r.paused_reason.unwrap().contains("deactivated"));
    assert!(
        app.find_receiver(&other.fields.name)
            .await
            .unwrap()
            .fields
            .active,
        "other apps untouched"
    );
    // A receiver of an inactive application cannot be switched on...
    let err = app
        .change_receiver(
            &receiver.fields.name,
            &ReceiverInput {
                active: Some(true),
                ..Default::default()
            },
        )
        .await
        .map(|(receiver, _)| receiver)
        .unwrap_err();
    assert!(err.to_string().contains("deactivated"), "{err}");
    // ...and re-activating the application brings back what it paused.
    let (_, report) = app
        .update_application(
            "A",
            &ApplicationInput {
                active: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(report.receivers_reactivated, 1);
    assert!(
        app.find_receiver(&receiver.fields.name)
            .await
            .unwrap()
            .fields
            .active
    );
    t.cleanup().await;
}

async fn removing_an_account_deactivates_its_receivers(backend: Backend) {
    let t = TestDb::new(backend).await;
    let app = open(&t).await;
    let (account, receiver) = with_receiver(&app, "A").await;
    let (_, paused) = app
        .remove_account(&AccountSelector::new(account.id.to_string(), None))
        .await
        .unwrap();
    assert_eq!(paused, 1);
    let r = app.find_receiver(&receiver.fields.name).await.unwrap();
    assert!(!r.fields.active);
    assert_eq!(r.fields.account_id, None);
    assert!(r.paused_reason.unwrap().contains("account was removed"));
    let events = app.store().events(None, None, 10).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "account.removed"));
    t.cleanup().await;
}

async fn changing_grant_settings_invalidates_accounts(backend: Backend) {
    let t = TestDb::new(backend).await;
    let app = open(&t).await;
    for (i, change) in [
        ApplicationInput {
            client_id: Some("client-2".into()),
            ..Default::default()
        },
        ApplicationInput {
            tenant: Some("fabrikam.onmicrosoft.com".into()),
            ..Default::default()
        },
        ApplicationInput {
            provider: Some(Provider::Google),
            tenant: Some(String::new()),
            ..Default::default()
        },
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("app{i}");
        let (account, receiver) = with_receiver(&app, &name).await;
        // Unconfirmed, the change is refused, names what it would revoke and stop, and changes
        // nothing.
        let err = app.update_application(&name, &change).await.unwrap_err();
        let AppError::NeedsConfirmation {
            accounts,
            receivers,
            ..
        } = &err
        else {
            panic!("change {i} was not held for confirmation: {err}");
        };
        assert_eq!(accounts, &vec![account.mailbox.clone()], "change {i}");
        assert_eq!(receivers, &vec![receiver.fields.name.clone()], "change {i}");
        assert!(err.is_user_error());
        let text = err.to_string();
        assert!(
            text.contains("revokes 1 account(s)")
                && text.contains(&account.mailbox)
                && text.contains(&receiver.fields.name)
                && text.contains("--confirm"),
            "{text}"
        );
        assert_eq!(
            app.store().account(account.id).await.unwrap().state,
            AccountState::Active,
            "change {i}: nothing revoked before the confirmation"
        );
        assert!(
            app.find_receiver(&receiver.fields.name)
                .await
                .unwrap()
                .fields
                .active
        );
        let view = app.application_view(&name).await.unwrap();
        assert_eq!(view.application.fields.client_id, "client-1", "change {i}");
        let change = ApplicationInput {
            confirm: true,
            ..change
        };
        let (_, report) = app.update_application(&name, &change).await.unwrap();
        assert_eq!(
            (report.accounts_revoked, report.receivers_deactivated),
            (1, 1),
            "change {i}"
        );
        let account = app.store().account(account.id).await.unwrap();
        assert_eq!(account.state, AccountState::Revoked);
        assert!(!account.has_refresh_token);
        assert!(account.last_error.unwrap().contains("authorize again"));
        assert!(
            !app.find_receiver(&receiver.fields.name)
                .await
                .unwrap()
                .fields
                .active
        );
    }
    t.cleanup().await;
}

async fn changing_only_the_secret_keeps_accounts(backend: Backend) {
    let t = TestDb::new(backend).await;
    let app = open(&t).await;
    let (account, receiver) = with_receiver(&app, "A").await;
    let (view, report) = app
        .update_application(
            "A",
            &ApplicationInput {
                client_secret: Some(SecretString::from("rotated-secret".to_owned())),
                comment: Some("secret rotated".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (report.accounts_revoked, report.receivers_deactivated),
        (0, 0)
    );
    let secret = app
        .store()
        .application_secret(view.application.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(secret.expose_secret(), "rotated-secret");
    let account = app.store().account(account.id).await.unwrap();
    assert_eq!(account.state, AccountState::Active);
    assert!(account.has_refresh_token);
    assert!(
        app.find_receiver(&receiver.fields.name)
            .await
            .unwrap()
            .fields
            .active
    );
    t.cleanup().await;
}

async fn bad_input_is_refused_and_nothing_is_written(backend: Backend) {
    let t = TestDb::new(backend).await;
    let app = open(&t).await;
    let cases: Vec<(ApplicationInput, &str)> = vec![
        (
            ApplicationInput {
                name: Some("  ".into()),
                ..ms_app("x")
            },
            "name: must not be empty",
        ),
        (
            ApplicationInput {
                provider: Some(Provider::Google),
                ..ms_app("G")
            },
            "tenant: a tenant is only for Microsoft",
        ),
        (
            ApplicationInput {
                endpoint_base: Some("http://login.example.com".into()),
                ..ms_app("U")
            },
            "endpoint_base",
        ),
        (
            ApplicationInput {
                endpoint_base: Some("not a url".into()),
                ..ms_app("U2")
            },
            "not a valid URL",
        ),
        (
            ApplicationInput {
                client_id: Some(" ".into()),
                ..ms_app("C")
            },
            "client_id: must not be empty",
        ),
        (
            ApplicationInput {
                tenant: Some("a b".into()),
                ..ms_app("T")
            },
            "tenant",
        ),
        (
            ApplicationInput {
                provider: Some(Provider::Generic),
                tenant: None,
                ..ms_app("Gen")
            },
            "authorize_url",
        ),
    ];
    for (input, expected) in cases {
        let err = app.add_application(&input).await.unwrap_err();
        assert!(err.is_user_error(), "{err}");
        assert!(
            err.to_string().contains(expected),
            "{err} should mention {expected}"
        );
    }
    assert!(
        app.list_applications().await.unwrap().is_empty(),
        "nothing written"
    );
    app.add_application(&ms_app("A")).await.unwrap();
    let dup = app.add_application(&ms_app("A")).await.unwrap_err();
    assert!(matches!(dup, AppError::Conflict(_)), "{dup}");

    let receiver_cases: Vec<(ReceiverInput, &str)> = vec![
        (
            ReceiverInput {
                name: Some("r".into()),
                ..Default::default()
            },
            "application: is required",
        ),
        (
            ReceiverInput {
                name: Some("big".into()),
                application: Some("A".into()),
                size_limit_bytes: Some(3 * 1024 * 1024 * 1024),
                ..Default::default()
            },
            "size_limit: is 3221225472 bytes; mail servers take at most 2 GiB",
        ),
        (
            ReceiverInput {
                name: Some(" 42 ".into()),
                application: Some("A".into()),
                ..Default::default()
            },
            "name: must not be a plain number",
        ),
        (
            ReceiverInput {
                name: Some("r".into()),
                application: Some("A".into()),
                security: Some(oauthimap_types::Security::Plain),
                ..Default::default()
            },
            "plain IMAP",
        ),
        (
            ReceiverInput {
                name: Some("r".into()),
                application: Some("A".into()),
                after_delivery: Some(oauthimap_types::AfterDelivery::Move),
                ..Default::default()
            },
            "accepted_folder",
        ),
        (
            ReceiverInput {
                name: Some("r".into()),
                application: Some("A".into()),
                sink: Some(oauthimap_types::SinkKind::Webhook),
                sink_target: Some("http://hooks.example.com/x".into()),
                ..Default::default()
            },
            "https",
        ),
        (
            ReceiverInput {
                name: Some("r".into()),
                application: Some("A".into()),
                sink: Some(oauthimap_types::SinkKind::Webhook),
                sink_target: Some("helpdesk intake".into()),
                ..Default::default()
            },
            // The example is a webhook's, not a sign-in page's.
            "such as https://helpdesk.example.com/mail-intake",
        ),
        (
            ReceiverInput {
                name: Some("r".into()),
                application: Some("A".into()),
                account: Some("nobody@x".into()),
                ..Default::default()
            },
            "account \"nobody@x\" does not exist",
        ),
        (
            ReceiverInput {
                name: Some("r".into()),
                application: Some("Nope".into()),
                ..Default::default()
            },
            "application \"Nope\" does not exist",
        ),
    ];
    for (input, expected) in receiver_cases {
        let err = app
            .create_receiver(&input)
            .await
            .map(|(receiver, _)| receiver)
            .unwrap_err();
        assert!(err.is_user_error(), "{err}");
        assert!(
            err.to_string().contains(expected),
            "{err} should mention {expected}"
        );
    }
    assert!(
        app.list_receivers().await.unwrap().is_empty(),
        "nothing written"
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
    redirect_url_comes_from_configuration,
    deactivating_an_application_deactivates_its_receivers,
    removing_an_account_deactivates_its_receivers,
    changing_grant_settings_invalidates_accounts,
    changing_only_the_secret_keeps_accounts,
    bad_input_is_refused_and_nothing_is_written,
);

/// Webhooks go to the internet only: a receiver's webhook or `notify.webhook_url` inside the
/// network (in any spelling) is refused when saved, naming the address and the setting that can
/// allow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_inside_the_network_are_refused() {
    let t = TestDb::new(Backend::Sqlite).await;
    let app = open(&t).await;
    app.add_application(&ms_app("Contoso")).await.unwrap();
    for target in [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/",
        "https://[fd00::1]/",
        "https://metadata.google.internal/computeMetadata/v1/",
        "http://127.1/",
        "http://2130706433/",
        "http://localhost:22/",
    ] {
        let e = app
            .create_receiver(&ReceiverInput {
                name: Some("hook".into()),
                application: Some("Contoso".into()),
                sink: Some(oauthimap_types::SinkKind::Webhook),
                sink_target: Some(target.into()),
                ..Default::default()
            })
            .await
            .map(|(receiver, _)| receiver)
            .unwrap_err();
        assert!(
            matches!(
                &e,
                AppError::Invalid {
                    field: "sink_target",
                    ..
                }
            ),
            "{target}: {e}"
        );
        assert!(
            e.to_string().contains("outbound.allowed_networks"),
            "{target}: {e}"
        );
    }
    let settings = Settings::load_from(
        None,
        [
            (
                "OAUTHIMAP_DATA_DIR".to_owned(),
                t.dir.path().join("data").display().to_string(),
            ),
            ("OAUTHIMAP_DATABASE_URL".to_owned(), t.url.clone()),
            (
                "OAUTHIMAP_NOTIFY__WEBHOOK_URL".to_owned(),
                "https://10.1.2.3/alerts".to_owned(),
            ),
        ],
    )
    .unwrap();
    let e = Core::open(settings).await.unwrap_err().to_string();
    assert!(
        e.contains("notify.webhook_url") && e.contains("inside the network"),
        "{e}"
    );
    t.cleanup().await;
}

/// An admin's power is bounded by the operator's configuration: command sinks are off unless the
/// configuration file enables them, and maildirs lie under the configured roots (default
/// `{data_dir}/maildir`), with `..` and symbolic links resolved before the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_sinks_and_maildirs_stay_within_the_operators_bounds() {
    use oauthimap_types::SinkKind;
    let t = TestDb::new(Backend::Sqlite).await;
    let app = open(&t).await;
    app.add_application(&ms_app("Contoso")).await.unwrap();
    let add = |sink: SinkKind, target: String| {
        let app = app.clone();
        async move {
            app.create_receiver(&ReceiverInput {
                name: Some("r".into()),
                application: Some("Contoso".into()),
                sink: Some(sink),
                sink_target: Some(target),
                ..Default::default()
            })
            .await
            .map(|(receiver, _)| receiver)
        }
    };
    let e = add(SinkKind::Command, "/usr/local/bin/helpdesk-import".into())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AppError::Invalid { field: "sink", .. })
            && e.to_string().contains("command_enabled"),
        "{e}"
    );
    let root = t.dir.path().join("data").join("maildir");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
    for target in [
        "/etc/cron.d".to_owned(),
        "/root/.ssh".to_owned(),
        "/proc/self".to_owned(),
        format!("{}/../../../../../../etc", root.display()),
        format!("{}/escape/cron.d", root.display()),
    ] {
        let e = add(SinkKind::Maildir, target.clone()).await.unwrap_err();
        assert!(
            matches!(
                &e,
                AppError::Invalid {
                    field: "sink_target",
                    ..
                }
            ) && e.to_string().contains("maildir_roots"),
            "{target}: {e}"
        );
    }
    add(
        SinkKind::Maildir,
        format!("{}/helpdesk/Maildir", root.display()),
    )
    .await
    .unwrap();
    t.cleanup().await;
}

/// With `sinks.command_allowed`, a command sink names a listed executable by its full path, or
/// it is refused when saved, with the setting named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_sinks_run_only_the_operators_executables() {
    use oauthimap_types::SinkKind;
    let t = TestDb::new(Backend::Sqlite).await;
    let app = open_with(
        &t,
        &[
            ("OAUTHIMAP_SINKS__COMMAND_ENABLED", "true"),
            ("OAUTHIMAP_SINKS__COMMAND_ALLOWED", r#"["/usr/bin/cat"]"#),
        ],
    )
    .await;
    app.add_application(&ms_app("Contoso")).await.unwrap();
    let add = |name: &'static str, target: &'static str| {
        let app = app.clone();
        async move {
            app.create_receiver(&ReceiverInput {
                name: Some(name.into()),
                application: Some("Contoso".into()),
                sink: Some(SinkKind::Command),
                sink_target: Some(target.into()),
                ..Default::default()
            })
            .await
            .map(|(receiver, _)| receiver)
        }
    };
    for (target, says) in [
        ("cat -u", "full path"),
        ("/bin/sh -c 'cat > /tmp/x'", "command_allowed"),
        ("/usr/bin/cat 'unclosed", "unclosed quote"),
    ] {
        let e = add("r", target).await.unwrap_err();
        assert!(
            matches!(
                &e,
                AppError::Invalid {
                    field: "sink_target",
                    ..
                }
            ) && e.to_string().contains(says),
            "{target}: {e}"
        );
    }
    assert!(
        app.list_receivers().await.unwrap().is_empty(),
        "nothing saved"
    );
    add("ok", "/usr/bin/cat -u").await.unwrap();
    t.cleanup().await;
}

/// A receiver with several mistakes is refused with all of them at once, each naming its field,
/// so a form can show them next to their fields; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mistake_of_a_receiver_is_reported_at_once() {
    let t = TestDb::new(Backend::Sqlite).await;
    let app = open(&t).await;
    app.add_application(&ms_app("A")).await.unwrap();
    let err = app
        .create_receiver(&ReceiverInput {
            name: Some("7".into()),
            application: Some("A".into()),
            poll_interval_secs: Some(1),
            size_limit_bytes: Some(0),
            sink: Some(oauthimap_types::SinkKind::Webhook),
            sink_target: Some("http://hooks.example.com/in".into()),
            ..Default::default()
        })
        .await
        .map(|(receiver, _)| receiver)
        .unwrap_err();
    assert!(matches!(err, AppError::Fields(_)), "{err:?}");
    assert!(err.is_user_error());
    let fields: Vec<&str> = err.field_errors().iter().map(|f| f.field).collect();
    assert_eq!(
        fields,
        ["name", "poll_interval", "size_limit", "sink_target"],
        "{err}"
    );
    assert!(app.list_receivers().await.unwrap().is_empty());
    t.cleanup().await;
}
