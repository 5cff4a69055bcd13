//! `oauthimap account ...` and `oauthimap events`.

use oauthimap_app::store::Account;
use oauthimap_app::{AccountSelector, App, AppError};

use crate::cli::AccountCommand;
use crate::output::{Out, fields, time};

pub async fn run(app: &App, out: &Out, cmd: AccountCommand) -> Result<(), AppError> {
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

fn show(out: &Out, a: &Account) {
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
    app: &App,
    out: &Out,
    account: Option<String>,
    limit: u32,
) -> Result<(), AppError> {
    let account = match account {
        Some(a) => Some(app.find_account(&AccountSelector::new(a, None)).await?.id),
        None => None,
    };
    let events = app
        .store()
        .events(account, None, limit.clamp(1, 10_000))
        .await?;
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
