//! `oauthimap app ...`: OAuth applications.

use std::fmt::Write as _;

use std::io::{BufRead, IsTerminal};

use oauthimap_app::{AppError, ApplicationInput, ApplicationView, Core};
use secrecy::SecretString;

use crate::cli::{AppArgs, AppCommand};
use crate::output::{Output, fields, time};

pub async fn execute(app: &Core, out: &Output, cmd: AppCommand) -> Result<(), AppError> {
    match cmd {
        AppCommand::Add(args) => {
            let input = input(&args, true)?;
            let view = app.add_application(&input).await?;
            eprintln!(
                "Application {} added. Register this redirect URL at the provider (platform \"Web\"): {}",
                view.application.fields.name, view.redirect_url
            );
            show(out, &view);
        }
        AppCommand::List => {
            let apps = app.list_applications().await?;
            out.table(
                &apps,
                &[
                    "ID",
                    "NAME",
                    "PROVIDER",
                    "CLIENT ID",
                    "ACTIVE",
                    "ACCOUNTS",
                    "RECEIVERS",
                ],
                |a| {
                    vec![
                        a.id.to_string(),
                        a.fields.name.clone(),
                        a.fields.provider.to_string(),
                        a.fields.client_id.clone(),
                        yes_no(a.fields.active),
                        a.account_count.to_string(),
                        a.receiver_count.to_string(),
                    ]
                },
            );
        }
        AppCommand::Show { app: selector } => show(out, &app.application_view(&selector).await?),
        AppCommand::Update {
            app: selector,
            args,
            confirm,
        } => {
            let input = ApplicationInput {
                confirm,
                ..input(&args, false)?
            };
            let (view, report) = app.update_application(&selector, &input).await?;
            if report.accounts_revoked > 0 {
                eprintln!(
                    "warning: {} account(s) revoked and {} receiver(s) deactivated: authorize the accounts again",
                    report.accounts_revoked, report.receivers_deactivated
                );
            } else if report.receivers_deactivated > 0 {
                eprintln!("{} receiver(s) deactivated", report.receivers_deactivated);
            }
            if report.receivers_reactivated > 0 {
                eprintln!("{} receiver(s) re-activated", report.receivers_reactivated);
            }
            show(out, &view);
        }
        AppCommand::Remove {
            app: selector,
            cascade,
        } => {
            let removed = app.remove_application(&selector, cascade).await?;
            out.record(&removed, || {
                format!("removed application {}\n", removed.fields.name)
            });
        }
    }
    Ok(())
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn show(out: &Output, v: &ApplicationView) {
    out.record(v, || {
        let a = &v.application;
        let f = &a.fields;
        let mut pairs = vec![
            ("id", a.id.to_string()),
            ("name", f.name.clone()),
            ("active", yes_no(f.active)),
            ("provider", f.provider.to_string()),
        ];
        if f.provider == oauthimap_types::Provider::Microsoft {
            pairs.push(("cloud", f.cloud.to_string()));
            pairs.push(("tenant", f.tenant.clone().unwrap_or_else(|| "organizations (default)".into())));
        }
        pairs.extend([
            ("client id", f.client_id.clone()),
            ("client secret", if a.has_client_secret { "set (hidden)" } else { "none" }.into()),
            ("secret expires", time(f.secret_expires_at)),
            ("redirect URL", v.redirect_url.clone()),
            ("authorize URL", v.profile.authorize_url.to_string()),
            ("token URL", v.profile.token_url.to_string()),
            ("scopes", v.profile.scopes.join(" ")),
            ("IMAP server", v.profile.imap_host.clone().map_or_else(|| "-".into(), |h| format!("{h}:{}", v.profile.imap_port))),
            ("accounts", a.account_count.to_string()),
            ("receivers", a.receiver_count.to_string()),
            ("comment", f.comment.clone()),
            ("created", time(Some(a.created_at))),
            ("updated", time(Some(a.updated_at))),
        ]);
        let mut text = fields(&pairs);
        if let Some(consent) = &v.profile.admin_consent_url {
            let _ = writeln!(text, "\nAdmin consent (tenant-wide): {consent}?client_id={}", f.client_id);
        }
        for hint in &v.gateway_scope_hints {
            let _ = writeln!(text, "\n{hint}");
        }
        if !v.app_only_setup.is_empty() {
            text.push_str("\nApp-only access (client credentials) also needs, in Exchange Online PowerShell:\n");
            for line in &v.app_only_setup {
                let _ = writeln!(text, "  {line}");
            }
        }
        text
    });
}

fn input(args: &AppArgs, adding: bool) -> Result<ApplicationInput, AppError> {
    let secret = read_secret(args, adding)?;
    let secret_expires_at = match &args.secret_expires {
        None => None,
        Some(s) if s.trim().is_empty() => Some(None),
        Some(s) => Some(Some(parse_date(s)?)),
    };
    Ok(ApplicationInput {
        name: args.name.clone(),
        active: args.active,
        provider: args.provider,
        cloud: args.cloud,
        client_id: args.client_id.clone(),
        client_secret: secret,
        clear_client_secret: args.clear_client_secret,
        tenant: args.tenant.clone(),
        endpoint_base: args.endpoint_base.clone(),
        authorize_url: args.authorize_url.clone(),
        token_url: args.token_url.clone(),
        device_url: args.device_url.clone(),
        userinfo_url: args.userinfo_url.clone(),
        scopes: args.scopes.clone(),
        secret_expires_at,
        comment: args.comment.clone(),
        confirm: false,
    })
}

fn parse_date(s: &str) -> Result<i64, AppError> {
    oauthimap_types::units::parse_day(s).ok_or_else(|| AppError::Invalid {
        field: "secret_expires",
        message: format!("{s:?} is not a date; use YYYY-MM-DD, such as 2027-06-30"),
    })
}

fn read_secret(args: &AppArgs, adding: bool) -> Result<Option<SecretString>, AppError> {
    let invalid = |message: String| AppError::Invalid {
        field: "client_secret",
        message,
    };
    if args.client_secret_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| invalid(format!("cannot read it from stdin: {e}")))?;
        return Ok(Some(SecretString::from(
            line.trim_end_matches(['\r', '\n']).to_owned(),
        )));
    }
    if let Some(path) = &args.client_secret_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        return Ok(Some(SecretString::from(
            text.trim_end_matches(['\r', '\n']).to_owned(),
        )));
    }
    if !adding || args.no_client_secret {
        return Ok(None);
    }
    if std::io::stdin().is_terminal() {
        let value =
            rpassword::prompt_password("Client secret (the Value, input hidden; empty for none): ")
                .map_err(|e| invalid(format!("cannot read it from the terminal: {e}")))?;
        return Ok((!value.is_empty()).then(|| SecretString::from(value)));
    }
    Err(invalid(
        "not given: use --client-secret-stdin or --client-secret-file (or --no-client-secret for a public client)".into(),
    ))
}
