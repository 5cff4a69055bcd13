//! `oauthimap account ...` and `oauthimap events`.

use std::time::Duration;

use oauthimap_app::views::Account;
use oauthimap_app::{AccountSelector, AppError, Core};

use crate::cli::AccountCommand;
use crate::output::{Output, fields, time};

pub async fn execute(app: &Core, out: &Output, cmd: AccountCommand) -> Result<(), AppError> {
    match cmd {
        AccountCommand::List { app: filter } => {
            let accounts = app.list_accounts(filter.as_deref()).await?;
            out.table(
                &accounts,
                &[
                    "ID",
                    "APPLICATION",
                    "MAILBOX",
                    "IDENTITY",
                    "GRANT",
                    "STATE",
                    "TOKEN EXPIRES",
                ],
                |a| {
                    vec![
                        a.id.to_string(),
                        a.application_name.clone(),
                        a.mailbox.clone(),
                        a.identity.clone(),
                        a.grant_kind.to_string(),
                        a.state.to_string(),
                        time(a.access_expires_at),
                    ]
                },
            );
        }
        AccountCommand::Show {
            account,
            app: filter,
        } => {
            let a = app
                .find_account(&AccountSelector::new(account, filter))
                .await?;
            show(out, &a);
        }
        AccountCommand::Authorize {
            app: application,
            mailbox,
            device,
            login_hint,
            timeout,
        } => {
            let account = if device {
                authorize_device(app, &application, mailbox.as_deref(), timeout).await?
            } else {
                authorize_browser(
                    app,
                    &application,
                    mailbox.as_deref(),
                    login_hint.as_deref(),
                    timeout,
                )
                .await?
            };
            eprintln!("Authorized {} ({}).", account.mailbox, account.identity);
            show(out, &account);
        }
        AccountCommand::AddAppOnly {
            app: application,
            mailbox,
        } => {
            let account = app.add_app_only(&application, &mailbox).await?;
            eprintln!(
                "App-only access for {} works: a token was issued.",
                account.mailbox
            );
            show(out, &account);
        }
        AccountCommand::Remove {
            account,
            app: filter,
        } => {
            let (a, paused) = app
                .remove_account(&AccountSelector::new(account, filter))
                .await?;
            if paused > 0 {
                eprintln!("{paused} receiver(s) that used it are kept but deactivated");
            }
            out.record(&a, || format!("removed account {} ({})\n", a.mailbox, a.id));
        }
    }
    Ok(())
}

/// Browser sign-in: print the URL, then wait for the callback. When no service listens on the
/// configured address, a temporary listener there takes the callback.
async fn authorize_browser(
    app: &Core,
    application: &str,
    mailbox: Option<&str>,
    login_hint: Option<&str>,
    timeout: Duration,
) -> Result<Account, AppError> {
    let start = app.start_sign_in(application, mailbox, login_hint).await?;
    eprintln!(
        "Open this URL in a browser and sign in{}:",
        match mailbox {
            Some(m) => format!(" as a user with access to {m}"),
            None => " as the mailbox's user".into(),
        }
    );
    println!("{}", start.url);
    let listen = app.callback_address();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = if let Ok(listener) = tokio::net::TcpListener::bind(listen).await {
        eprintln!(
            "Waiting for the sign-in on {} (a temporary listener)...",
            app.redirect_url()
        );
        let router = oauthimap_web::callback_router(app.clone());
        Some(tokio::spawn(oauthimap_web::serve_on(
            listener,
            router,
            async {
                let _ = stop_rx.await;
            },
        )))
    } else {
        eprintln!(
            "Waiting for the sign-in on the running service at {}...",
            app.redirect_url()
        );
        None
    };
    let waited = tokio::time::timeout(
        timeout,
        app.wait_for_sign_in(start.id, Duration::from_millis(500)),
    )
    .await;
    let _ = stop_tx.send(());
    if let Some(server) = server {
        let _ = server.await;
    }
    let id = waited.map_err(|_| {
        AppError::Conflict(format!(
            "no sign-in arrived within {}; run the command again",
            humantime::format_duration(timeout)
        ))
    })??;
    app.account(id).await
}

async fn authorize_device(
    app: &Core,
    application: &str,
    mailbox: Option<&str>,
    timeout: Duration,
) -> Result<Account, AppError> {
    let (application, start) = app.start_device_sign_in(application).await?;
    eprintln!(
        "On any device, open {} and enter the code {} (valid for {} minutes).",
        start.verification_uri,
        start.user_code,
        start.expires_in_secs / 60
    );
    println!("{} {}", start.verification_uri, start.user_code);
    tokio::time::timeout(
        timeout,
        app.finish_device_sign_in(&application, &start, mailbox),
    )
    .await
    .map_err(|_| {
        AppError::Conflict(
            "the device sign-in did not finish in time; run the command again".into(),
        )
    })?
}

fn show(out: &Output, a: &Account) {
    out.record(a, || {
        fields(&[
            ("id", a.id.to_string()),
            ("application", a.application_name.clone()),
            ("mailbox", a.mailbox.clone()),
            ("identity", a.identity.clone()),
            ("grant", a.grant_kind.to_string()),
            ("state", a.state.to_string()),
            ("failures", a.failure_count.to_string()),
            (
                "access token",
                if a.has_access_token {
                    "held (hidden)"
                } else {
                    "none"
                }
                .into(),
            ),
            ("token expires", time(a.access_expires_at)),
            (
                "refresh token",
                if a.has_refresh_token {
                    "held (hidden)"
                } else {
                    "none"
                }
                .into(),
            ),
            ("refresh issued", time(a.refresh_issued_at)),
            ("last refresh", time(a.last_refresh_at)),
            ("scopes", a.scopes.clone()),
            (
                "last error",
                a.last_error.clone().unwrap_or_else(|| "-".into()),
            ),
            ("created", time(Some(a.created_at))),
        ])
    });
}

pub async fn events(
    app: &Core,
    out: &Output,
    account: Option<String>,
    limit: u32,
) -> Result<(), AppError> {
    let account = match account {
        Some(a) => Some(app.find_account(&AccountSelector::new(a, None)).await?.id),
        None => None,
    };
    let events = app
        .events(oauthimap_app::EventQuery {
            account,
            before: None,
            limit,
        })
        .await?
        .items;
    out.table(&events, &["TIME", "LEVEL", "KIND", "MESSAGE"], |e| {
        vec![
            time(Some(e.at)),
            e.level.clone(),
            e.kind.clone(),
            e.message.clone(),
        ]
    });
    Ok(())
}
