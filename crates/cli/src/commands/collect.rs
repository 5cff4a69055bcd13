//! `oauthimap collect --once` and `oauthimap messages ...`.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use oauthimap_app::views::{LedgerStatus, Receiver};
use oauthimap_app::{AppError, Core, ProgressEvent};

use crate::cli::MessagesCommand;
use crate::output::{Output, fields, time};

pub async fn once(
    app: &Core,
    out: &Output,
    receiver: Option<&str>,
    retry_for: std::time::Duration,
) -> Result<(), AppError> {
    let tty = std::io::stderr().is_terminal();
    let bar: Mutex<Option<ProgressBar>> = Mutex::new(None);
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} messages, {per_sec} ({eta} left)",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let progress = |r: &Receiver, event: ProgressEvent| {
        let mut bar = bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            ProgressEvent::Available(n) => {
                if tty {
                    let b = ProgressBar::new(n)
                        .with_style(style.clone())
                        .with_prefix(r.fields.name.clone());
                    *bar = Some(b);
                } else {
                    eprintln!("{}: {n} new message(s)", r.fields.name);
                }
            }
            ProgressEvent::Handled => {
                if let Some(b) = bar.as_ref() {
                    b.inc(1);
                }
            }
            ProgressEvent::Fetched(_) => {}
        }
    };
    let outcomes = app.collect_once(receiver, retry_for, &progress).await?;
    if let Some(b) = bar
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        b.finish_and_clear();
    }
    let failed = outcomes
        .iter()
        .any(|o| o.error.is_some() || o.summary.stopped.is_some());
    out.table(
        &outcomes,
        &[
            "RECEIVER",
            "AVAILABLE",
            "DELIVERED",
            "ALREADY SEEN",
            "REFUSED",
            "FAILED",
            "PROBLEM",
        ],
        |o| {
            vec![
                o.receiver.clone(),
                o.summary.available.to_string(),
                o.summary.delivered.to_string(),
                o.summary.already_seen.to_string(),
                o.summary.refused.to_string(),
                o.summary.failed.to_string(),
                o.error
                    .clone()
                    .or_else(|| {
                        o.summary.waiting.as_ref().map(|w| {
                            format!(
                                "waiting for its sink since {} (UID {} and the mail after it stay on the server; the next run carries on): {}",
                                time(Some(w.since)),
                                w.uid,
                                w.error
                            )
                        })
                    })
                    .or_else(|| o.summary.stopped.clone())
                    .unwrap_or_else(|| "-".into()),
            ]
        },
    );
    if failed {
        return Err(AppError::Unfinished(
            "some receivers could not be collected (see PROBLEM above)".into(),
        ));
    }
    Ok(())
}

pub async fn messages(app: &Core, out: &Output, cmd: MessagesCommand) -> Result<(), AppError> {
    match cmd {
        MessagesCommand::List { search, limit } => {
            let list = app.list_messages(search.as_deref(), None, limit).await?;
            out.table(&list, &["ID", "DATE", "FROM", "SUBJECT", "SIZE"], |m| {
                vec![
                    m.id.to_string(),
                    m.date.clone().unwrap_or_else(|| time(Some(m.created_at))),
                    if m.from_name.is_empty() {
                        m.from_address.clone()
                    } else {
                        format!("{} <{}>", m.from_name, m.from_address)
                    },
                    m.subject
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(80)
                        .collect(),
                    m.size.to_string(),
                ]
            });
        }
        MessagesCommand::Show { id, raw } => show(app, out, id, raw).await?,
        MessagesCommand::Ledger {
            receiver,
            status,
            limit,
        } => {
            let status = match status.as_deref() {
                None => None,
                Some("delivered") => Some(LedgerStatus::Delivered),
                Some("refused") => Some(LedgerStatus::Refused),
                Some("failed") => Some(LedgerStatus::Failed),
                Some("dead") => Some(LedgerStatus::Dead),
                Some(other) => {
                    return Err(AppError::Invalid {
                        field: "status",
                        message: format!(
                            "{other:?} is not a status: use delivered, refused, failed or dead"
                        ),
                    });
                }
            };
            let entries = app.ledger(receiver.as_deref(), status, limit).await?;
            out.table(
                &entries,
                &["UID", "STATUS", "ATTEMPTS", "MESSAGE ID", "REASON"],
                |e| {
                    vec![
                        format!("{}/{}", e.uid_validity, e.uid),
                        e.status.as_str().to_owned(),
                        e.attempts.to_string(),
                        e.message_id.clone().unwrap_or_default(),
                        e.reason.clone().unwrap_or_default(),
                    ]
                },
            );
        }
        MessagesCommand::Retry { receiver } => {
            let n = app.retry_dead(&receiver).await?;
            eprintln!("{n} message(s) will be tried again on the next pass");
        }
    }
    Ok(())
}

async fn show(app: &Core, out: &Output, id: i64, raw: bool) -> Result<(), AppError> {
    let (m, bytes) = app.message(id).await?;
    if raw {
        use std::io::Write;
        let _ = std::io::stdout().write_all(&bytes);
        return Ok(());
    }
    let normalized: serde_json::Value = serde_json::from_str(&m.normalized).unwrap_or_default();
    out.record(&normalized, || {
        let attachments = normalized["attachments"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        format!(
                            "{} ({}, {} bytes)",
                            x["safe_filename"].as_str().unwrap_or("?"),
                            x["content_type"].as_str().unwrap_or("?"),
                            x["size"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let mut text = fields(&[
            ("id", m.id.to_string()),
            ("message id", m.message_id.clone().unwrap_or_default()),
            ("date", m.date.clone().unwrap_or_default()),
            ("from", format!("{} <{}>", m.from_name, m.from_address)),
            ("subject", m.subject.clone()),
            ("attachments", attachments),
        ]);
        text.push('\n');
        text.push_str(normalized["text"].as_str().unwrap_or(""));
        text.push('\n');
        text
    });
    Ok(())
}
