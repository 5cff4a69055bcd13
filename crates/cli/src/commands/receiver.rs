//! `oauthimap receiver ...`: mail collectors.

use oauthimap_app::views::Receiver;
use oauthimap_app::{AppError, Core, ReceiverInput};

use crate::cli::{ReceiverArgs, ReceiverCommand};
use crate::output::{Output, fields, time};

pub async fn execute(app: &Core, out: &Output, cmd: ReceiverCommand) -> Result<(), AppError> {
    match cmd {
        ReceiverCommand::Add(args) => {
            let (r, secret) = app.create_receiver(&input(&args)?).await?;
            print_secret(secret.as_ref());
            if let Some(reason) = &r.paused_reason {
                eprintln!("receiver {} added but inactive: {reason}", r.fields.name);
            }
            show(out, &r);
        }
        ReceiverCommand::List => {
            let list = app.list_receivers().await?;
            out.table(
                &list,
                &[
                    "ID", "NAME", "ACCOUNT", "SERVER", "FOLDER", "SINK", "ACTIVE", "STATE",
                ],
                |r| {
                    vec![
                        r.id.to_string(),
                        r.fields.name.clone(),
                        r.account_mailbox.clone().unwrap_or_else(|| "-".into()),
                        format!(
                            "{}:{} ({})",
                            r.fields.host, r.fields.port, r.fields.security
                        ),
                        r.fields.folder.clone(),
                        r.fields.sink.to_string(),
                        if r.fields.active {
                            "yes".into()
                        } else {
                            format!(
                                "no: {}",
                                r.paused_reason.as_deref().unwrap_or("switched off")
                            )
                        },
                        state_line(r),
                    ]
                },
            );
        }
        ReceiverCommand::Show { receiver } => show(out, &app.find_receiver(&receiver).await?),
        ReceiverCommand::Update { receiver, args } => {
            let (r, secret) = app.change_receiver(&receiver, &input(&args)?).await?;
            print_secret(secret.as_ref());
            show(out, &r);
        }
        ReceiverCommand::Remove { receiver } => {
            let r = app.remove_receiver(&receiver).await?;
            out.record(&r, || format!("removed receiver {}\n", r.fields.name));
        }
    }
    Ok(())
}

fn show(out: &Output, r: &Receiver) {
    out.record(r, || {
        let f = &r.fields;
        fields(&[
            ("id", r.id.to_string()),
            ("name", f.name.clone()),
            (
                "active",
                if f.active {
                    "yes".into()
                } else {
                    format!(
                        "no ({})",
                        r.paused_reason.as_deref().unwrap_or("switched off")
                    )
                },
            ),
            ("state", state_line(r)),
            ("next try", time(r.status.as_ref().and_then(|s| s.next_at))),
            (
                "state reported by",
                r.status
                    .as_ref()
                    .and_then(|s| s.instance.clone())
                    .unwrap_or_else(|| "-".into()),
            ),
            ("application", r.application_name.clone()),
            (
                "account",
                r.account_mailbox.clone().unwrap_or_else(|| "-".into()),
            ),
            ("server", format!("{}:{}", f.host, f.port)),
            ("security", f.security.to_string()),
            ("mechanism", f.mechanism.to_string()),
            ("folder", f.folder.clone()),
            (
                "trigger",
                format!("{} (poll every {}s)", f.trigger, f.poll_interval_secs),
            ),
            ("after delivery", f.after_delivery.to_string()),
            (
                "accepted folder",
                f.accepted_folder.clone().unwrap_or_else(|| "-".into()),
            ),
            (
                "refused folder",
                f.refused_folder.clone().unwrap_or_else(|| "-".into()),
            ),
            ("size limit", format!("{} bytes", f.size_limit_bytes)),
            (
                "sink",
                match &f.sink_target {
                    Some(t) => format!("{} {t}", f.sink),
                    None => f.sink.to_string(),
                },
            ),
            ("extra CA", f.ca_file.clone().unwrap_or_else(|| "-".into())),
            ("created", time(Some(r.created_at))),
            ("updated", time(Some(r.updated_at))),
        ])
    });
}

/// The receiver's state for people: what, since when, and why.
fn state_line(r: &Receiver) -> String {
    use std::fmt::Write as _;
    let mut line = r.state.label().to_owned();
    if let Some(s) = &r.status
        && s.state == r.state
    {
        let _ = write!(line, " since {}", time(Some(s.since)));
        if let Some(detail) = &s.detail {
            line.push_str(": ");
            line.extend(detail.chars().filter(|c| !c.is_control()).take(200));
        }
    }
    line
}

/// Shows a generated webhook signing secret, once, on stderr (data stays on stdout).
fn print_secret(secret: Option<&secrecy::SecretString>) {
    use secrecy::ExposeSecret;
    if let Some(s) = secret {
        eprintln!(
            "Webhook signing secret (shown once; the receiving side checks X-Oauthimap-Signature: sha256=HMAC-SHA256 of \"timestamp.body\" with it):\n{}",
            s.expose_secret()
        );
    }
}

fn parse_size(text: &str) -> Result<u64, AppError> {
    oauthimap_types::units::parse_size(text).map_err(|e| AppError::Invalid {
        field: "size_limit",
        message: e.to_string(),
    })
}

fn input(a: &ReceiverArgs) -> Result<ReceiverInput, AppError> {
    let poll_interval_secs = match a.poll_interval {
        None => None,
        Some(d) => Some(u32::try_from(d.as_secs()).map_err(|_| AppError::Invalid {
            field: "poll_interval",
            message: "is too long".into(),
        })?),
    };
    Ok(ReceiverInput {
        name: a.name.clone(),
        active: a.active,
        application: a.app.clone(),
        account: a.account.clone(),
        host: a.host.clone(),
        port: a.port,
        security: a.security,
        mechanism: a.mechanism,
        folder: a.folder.clone(),
        trigger: a.trigger,
        poll_interval_secs,
        after_delivery: a.after_delivery,
        accepted_folder: a.accepted_folder.clone(),
        refused_folder: a.refused_folder.clone(),
        size_limit_bytes: a.size_limit.as_deref().map(parse_size).transpose()?,
        sink: a.sink,
        sink_target: a.sink_target.clone(),
        sink_secret: None,
        new_sink_secret: a.new_sink_secret,
        ca_file: a.ca_file.clone(),
    })
}
