//! `oauthimap gateway ...`: gateway passwords and upstream servers.

use oauthimap_app::{AccountSelector, AppError, Core, Protocol, UpstreamScope, UpstreamServer};
use oauthimap_types::Security;
use secrecy::ExposeSecret as _;

use crate::cli::{GatewayCommand, GatewayPasswordCommand, UpstreamCommand};
use crate::output::{Output, time};

pub async fn execute(app: &Core, out: &Output, cmd: GatewayCommand) -> Result<(), AppError> {
    match cmd {
        GatewayCommand::Status => status(app, out).await,
        GatewayCommand::Password(c) => passwords(app, out, c).await,
        GatewayCommand::Upstream(c) => upstream(app, c).await,
    }
}

async fn status(app: &Core, out: &Output) -> Result<(), AppError> {
    use std::fmt::Write as _;
    let status = app.gateway_status().await?;
    out.record(&status, || {
        let mut text = String::new();
        if status.listeners.is_empty() {
            text.push_str("The gateway is off: set [gateway] imap_listen, pop3_listen or submission_listen (see docs/gateway.md).\n");
        }
        for l in &status.listeners {
            let _ = writeln!(text, "{:<12} {:<22} {}", l.name, l.addr, l.state);
        }
        match &status.sessions {
            Some(s) if s.is_empty() => text.push_str("sessions: none open\n"),
            Some(s) => {
                let parts: Vec<String> = s.iter().map(|(p, n)| format!("{p} {n}")).collect();
                let _ = writeln!(text, "sessions: {}", parts.join(", "));
            }
            None => text.push_str("sessions: unknown (the service's /metrics cannot be reached from here)\n"),
        }
        for p in &status.passwords {
            let _ = writeln!(
                text,
                "password {:?} of {} ({}): last used {}{}",
                p.name,
                p.mailbox,
                p.protocols,
                time(p.last_used_at),
                p.last_remote.as_ref().map(|r| format!(" from {r}")).unwrap_or_default()
            );
        }
        text
    });
    Ok(())
}

/// A date (`2027-06-30`, midnight UTC) or an RFC 3339 time, as epoch milliseconds.
fn parse_expiry(text: &str) -> Result<i64, AppError> {
    let t = text.trim();
    let full = if t.len() == 10 {
        format!("{t}T00:00:00Z")
    } else {
        t.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .ok()
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| AppError::Invalid {
            field: "expires",
            message: format!(
                "{t:?} is not a date: write it like 2027-06-30 or 2027-06-30T18:00:00Z"
            ),
        })
}

async fn passwords(app: &Core, out: &Output, cmd: GatewayPasswordCommand) -> Result<(), AppError> {
    match cmd {
        GatewayPasswordCommand::Add {
            account,
            app: application,
            name,
            protocols,
            expires,
        } => {
            let expires = expires.as_deref().map(parse_expiry).transpose()?;
            let (record, password) = app
                .add_gateway_password(
                    &AccountSelector::new(account, application),
                    &name,
                    &protocols,
                    expires,
                )
                .await?;
            eprintln!(
                "Gateway password {:?} created for {} ({}). Copy it now: it is not shown again. \
                 The client logs in with the user name {} and this password.",
                record.name, record.mailbox, record.protocols, record.mailbox
            );
            println!("{}", password.expose_secret());
        }
        GatewayPasswordCommand::List {
            account,
            app: application,
        } => {
            let selector = account.map(|a| AccountSelector::new(a, application));
            let list = app.gateway_passwords(selector.as_ref()).await?;
            out.table(
                &list,
                &[
                    "ACCOUNT",
                    "NAME",
                    "PROTOCOLS",
                    "CREATED",
                    "EXPIRES",
                    "LAST USED",
                    "FROM",
                ],
                |p| {
                    vec![
                        p.mailbox.clone(),
                        p.name.clone(),
                        p.protocols.clone(),
                        time(Some(p.created_at)),
                        time(p.expires_at),
                        time(p.last_used_at),
                        p.last_remote.clone().unwrap_or_else(|| "-".into()),
                    ]
                },
            );
        }
        GatewayPasswordCommand::Remove {
            account,
            name,
            app: application,
        } => {
            let removed = app
                .remove_gateway_password(&AccountSelector::new(account, application), &name)
                .await?;
            eprintln!(
                "gateway password {:?} of {} removed",
                removed.name, removed.mailbox
            );
        }
    }
    Ok(())
}

fn protocol(name: &str) -> Protocol {
    match name {
        "pop3" => Protocol::Pop3,
        "smtp" => Protocol::Smtp,
        _ => Protocol::Imap,
    }
}

async fn upstream(app: &Core, cmd: UpstreamCommand) -> Result<(), AppError> {
    let (scope, protocol, server) = match cmd {
        UpstreamCommand::Set {
            protocol: name,
            app: application,
            account,
            host,
            port,
            security,
            ca_file,
        } => {
            let protocol = protocol(&name);
            let (default_port, default_security) = match protocol {
                Protocol::Imap => (993, Security::Tls),
                Protocol::Pop3 => (995, Security::Tls),
                Protocol::Smtp => (587, Security::StartTls),
            };
            (
                scope(application, account),
                protocol,
                Some(UpstreamServer {
                    host,
                    port: port.unwrap_or(default_port),
                    security: security.unwrap_or(default_security),
                    ca_file: ca_file.map(|p| p.display().to_string()),
                }),
            )
        }
        UpstreamCommand::Clear {
            protocol: name,
            app: application,
            account,
        } => (scope(application, account), protocol(&name), None),
    };
    app.set_upstream(&scope, protocol, server).await?;
    eprintln!("saved");
    Ok(())
}

fn scope(application: Option<String>, account: Option<String>) -> UpstreamScope {
    match (application, account) {
        (_, Some(account)) => UpstreamScope::Account(AccountSelector::new(account, None)),
        (Some(application), None) => UpstreamScope::Application(application),
        (None, None) => unreachable!("clap requires --app or --account"),
    }
}
