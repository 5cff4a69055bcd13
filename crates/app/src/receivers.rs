//! Use cases for receivers (mail collectors): an application and one of its accounts instead of a
//! login and password, the server (prefilled from the provider), and what to do with the mail.

use std::path::Path;

use oauthimap_oauth::{check_https_url, is_loopback_host};
use oauthimap_store::{Level, NewEvent, Receiver, ReceiverFields, SecretChange};
use oauthimap_types::{AfterDelivery, Mechanism, ReceiverId, Security, SinkKind, Trigger};
use secrecy::SecretString;

use crate::applications::profile_of;
use crate::error::keep;
use crate::{AccountSelector, AppError, Core, Result};

/// The default size limit of a message: larger ones are refused, not fetched into memory.
pub const DEFAULT_SIZE_LIMIT: u64 = 50 * 1024 * 1024;
/// The largest size limit a receiver takes: no mail server accepts a bigger message.
pub const MAX_SIZE_LIMIT: u64 = 2 * 1024 * 1024 * 1024;
const PAUSED_NO_ACCOUNT: &str = "no account chosen yet; authorize an account and pick it";

/// Fields to set on a receiver. `None` keeps the current value (update) or takes the default
/// (add); an empty string clears an optional field.
#[derive(Debug, Default, Clone)]
pub struct ReceiverInput {
    pub name: Option<String>,
    pub active: Option<bool>,
    pub application: Option<String>,
    pub account: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Option<Security>,
    pub mechanism: Option<Mechanism>,
    pub folder: Option<String>,
    pub trigger: Option<Trigger>,
    pub poll_interval_secs: Option<u32>,
    pub after_delivery: Option<AfterDelivery>,
    pub accepted_folder: Option<String>,
    pub refused_folder: Option<String>,
    pub size_limit_bytes: Option<u64>,
    pub sink: Option<SinkKind>,
    pub sink_target: Option<String>,
    pub sink_secret: Option<SecretString>,
    /// Replace the webhook signing secret with a new random one (shown once).
    pub new_sink_secret: bool,
    pub ca_file: Option<String>,
}

/// A random webhook signing secret: 32 bytes, base64url.
fn new_sink_secret() -> Result<SecretString> {
    Ok(SecretString::from(format!(
        "whsec_{}",
        crate::api_tokens::random_token(32)?
    )))
}

/// The receiver's name, new or kept. A plain number selects by id everywhere, so a receiver
/// named `42` could never be reached by its name: refused, as for applications.
fn receiver_name(input: &ReceiverInput, b: Option<&ReceiverFields>) -> Result<String> {
    match (&input.name, b) {
        (Some(n), _) => crate::limits::name(n),
        (None, Some(b)) => Ok(b.name.clone()),
        (None, None) => Err(AppError::invalid("name", "is required")),
    }
}

fn text(field: &'static str, value: &str) -> Result<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(AppError::invalid(field, "must not be empty"));
    }
    let max = if field == "name" {
        crate::limits::NAME
    } else {
        crate::limits::URL
    };
    crate::limits::at_most(field, v, max)?;
    if v.chars().any(char::is_control) {
        return Err(AppError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(v.to_owned())
}

fn optional(new: Option<&String>, old: Option<&Option<String>>) -> Option<String> {
    match new {
        Some(v) if v.trim().is_empty() => None,
        Some(v) => Some(v.trim().to_owned()),
        None => old.cloned().flatten(),
    }
}

fn check_sink(sink: SinkKind, target: Option<&str>) -> Result<()> {
    match (sink, target) {
        (SinkKind::Store, None) | (SinkKind::Command, Some(_)) => Ok(()),
        (SinkKind::Maildir, Some(path)) if Path::new(path).is_absolute() => Ok(()),
        (SinkKind::Store, Some(_)) => Err(AppError::invalid(
            "sink_target",
            "the built-in store takes no target; remove it",
        )),
        (SinkKind::Webhook, Some(url)) => check_https_url(
            "sink_target",
            url,
            "https://helpdesk.example.com/mail-intake",
        )
        .map(|_| ())
        .map_err(Into::into),
        (SinkKind::Maildir, Some(path)) => Err(AppError::invalid(
            "sink_target",
            format!(
                "the maildir path {path:?} must be absolute, such as /var/mail/helpdesk/Maildir"
            ),
        )),
        (kind, None) => Err(AppError::invalid(
            "sink_target",
            format!(
                "a {kind} sink needs a target: {}",
                match kind {
                    SinkKind::Webhook => "the https URL to POST messages to",
                    SinkKind::Maildir => "the maildir folder",
                    _ => "the command line that reads the message on stdin",
                }
            ),
        )),
    }
}

/// Where and how to connect: host (default from the provider), security, port.
fn server(
    input: &ReceiverInput,
    b: Option<&ReceiverFields>,
    default_host: Option<String>,
) -> Result<(String, u16, Security)> {
    let security = input
        .security
        .or(b.map(|b| b.security))
        .unwrap_or(Security::Tls);
    let host = match (&input.host, b) {
        (Some(h), _) => text("host", h)?,
        (None, Some(b)) => b.host.clone(),
        (None, None) => default_host.ok_or_else(|| {
            AppError::invalid(
                "host",
                "is required for generic applications: the IMAP server's name",
            )
        })?,
    };
    if host.contains(['/', ' ', ':']) && !host.starts_with('[') {
        return Err(AppError::invalid(
            "host",
            format!("{host:?} must be a host name or address, without scheme or port"),
        ));
    }
    if security == Security::Plain && !is_loopback_host(&host) {
        return Err(AppError::invalid(
            "security",
            format!(
                "plain IMAP sends the token unencrypted and is only allowed to this machine, not {host}; use tls or starttls"
            ),
        ));
    }
    let port = input.port.or(b.map(|b| b.port)).unwrap_or(match security {
        Security::Tls => 993,
        Security::StartTls | Security::Plain => 143,
    });
    if port == 0 {
        return Err(AppError::invalid("port", "must be between 1 and 65535"));
    }
    Ok((host, port, security))
}

/// Which folder to read and what to do with a message afterwards.
struct Folders {
    folder: String,
    after_delivery: AfterDelivery,
    accepted_folder: Option<String>,
    refused_folder: Option<String>,
}

fn folders(input: &ReceiverInput, b: Option<&ReceiverFields>) -> Result<Folders> {
    let after_delivery = input
        .after_delivery
        .or(b.map(|b| b.after_delivery))
        .unwrap_or(AfterDelivery::MarkSeen);
    let accepted_folder = optional(
        input.accepted_folder.as_ref(),
        b.map(|b| &b.accepted_folder),
    );
    if after_delivery == AfterDelivery::Move && accepted_folder.is_none() {
        return Err(AppError::invalid(
            "accepted_folder",
            "is required when messages are moved after delivery (for example Processed)",
        ));
    }
    let folder = match (&input.folder, b) {
        (Some(f), _) => text("folder", f)?,
        (None, Some(b)) => b.folder.clone(),
        (None, None) => "INBOX".into(),
    };
    let refused_folder = optional(input.refused_folder.as_ref(), b.map(|b| &b.refused_folder));
    for (field, value) in [
        ("accepted_folder", &accepted_folder),
        ("refused_folder", &refused_folder),
    ] {
        if value
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case(&folder))
        {
            return Err(AppError::invalid(
                field,
                "must differ from the folder being collected",
            ));
        }
    }
    Ok(Folders {
        folder,
        after_delivery,
        accepted_folder,
        refused_folder,
    })
}

/// Polling interval, size limit, sink and extra CA, checked.
struct Limits {
    poll: u32,
    size: u64,
    sink: SinkKind,
    sink_target: Option<String>,
    ca_file: Option<String>,
}

fn limits_and_sink(input: &ReceiverInput, b: Option<&ReceiverFields>) -> Result<Limits> {
    let poll = input
        .poll_interval_secs
        .or(b.map(|b| b.poll_interval_secs))
        .unwrap_or(300);
    // Each of these is checked whatever the others say: every mistake is reported at once.
    let mut errors = Vec::new();
    if !(10..=86_400).contains(&poll) {
        errors.push(AppError::invalid(
            "poll_interval",
            "must be between 10 seconds and one day",
        ));
    }
    let size = input
        .size_limit_bytes
        .or(b.map(|b| b.size_limit_bytes))
        .unwrap_or(DEFAULT_SIZE_LIMIT);
    if size == 0 {
        errors.push(AppError::invalid("size_limit", "must be more than 0 bytes"));
    }
    if size > MAX_SIZE_LIMIT {
        errors.push(AppError::invalid(
            "size_limit",
            format!(
                "is {size} bytes; mail servers take at most 2 GiB per message (Exchange Online 150 MB, Gmail 25 MB), so use at most 2G"
            ),
        ));
    }
    let sink = input.sink.or(b.map(|b| b.sink)).unwrap_or(SinkKind::Store);
    let sink_changed = input.sink.is_some_and(|s| Some(s) != b.map(|b| b.sink));
    let sink_target = if sink_changed && input.sink_target.is_none() {
        None
    } else {
        optional(input.sink_target.as_ref(), b.map(|b| &b.sink_target))
    };
    keep(&mut errors, check_sink(sink, sink_target.as_deref()));
    let ca_file = optional(input.ca_file.as_ref(), b.map(|b| &b.ca_file));
    if let Some(ca) = &ca_file {
        let path = Path::new(ca);
        if !path.is_absolute() || !path.is_file() {
            errors.push(AppError::invalid(
                "ca_file",
                format!("{ca:?} must be the absolute path of a readable PEM certificate file"),
            ));
        }
    }
    if let Some(e) = AppError::all_of(errors) {
        return Err(e);
    }
    Ok(Limits {
        poll,
        size,
        sink,
        sink_target,
        ca_file,
    })
}

/// The path with `..` and symbolic links resolved as far as it exists (the rest appended as
/// written, minus `.`/`..`, which cannot climb out after a resolved prefix).
fn resolved(path: &Path) -> std::path::PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    for part in rest.into_iter().rev() {
        if part == ".." {
            out.pop();
        } else if part != "." {
            out.push(part);
        }
    }
    out
}

impl Core {
    /// The operator's bounds on sinks: command sinks only when enabled in the configuration
    /// file, maildirs only under the configured roots.
    pub(crate) fn check_sink_bounds(&self, sink: SinkKind, target: Option<&str>) -> Result<()> {
        match (sink, target) {
            (SinkKind::Command, _) if !self.settings().sinks.command_enabled => {
                Err(AppError::invalid(
                    "sink",
                    "command sinks are off on this host: they run a shell command as the service user, so only the \
                 operator can enable them, with `[sinks] command_enabled = true` in the configuration file",
                ))
            }
            (SinkKind::Command, Some(target)) => {
                oauthimap_sinks::Program::new(target, &self.settings().sinks.command_allowed)
                    .map(drop)
                    .map_err(|e| AppError::invalid("sink_target", e))
            }
            (SinkKind::Maildir, Some(target)) => {
                let target = resolved(Path::new(target));
                let roots = self.settings().maildir_roots();
                if roots.iter().any(|r| target.starts_with(resolved(r))) {
                    Ok(())
                } else {
                    Err(AppError::invalid(
                        "sink_target",
                        format!(
                            "{} is outside the folders maildirs may be written to ({}); the operator sets them with `[sinks] maildir_roots` in the configuration file",
                            target.display(),
                            roots
                                .iter()
                                .map(|r| r.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ))
                }
            }
            _ => Ok(()),
        }
    }

    /// The operator's bounds on the sink and, for a webhook, where it may point.
    fn check_sink_target(&self, l: &Limits) -> Result<()> {
        self.check_sink_bounds(l.sink, l.sink_target.as_deref())?;
        match (&l.sink, &l.sink_target) {
            (SinkKind::Webhook, Some(target)) => self.outbound.check_url("sink_target", target),
            _ => Ok(()),
        }
    }

    async fn merge_receiver(
        &self,
        base: Option<&Receiver>,
        input: &ReceiverInput,
    ) -> Result<ReceiverFields> {
        let b = base.map(|r| &r.fields);
        // Every field is checked, and every mistake reported at once.
        let mut errors = Vec::new();
        let name = keep(&mut errors, receiver_name(input, b));
        let application = keep(
            &mut errors,
            match (&input.application, b) {
                (Some(a), _) => self.find_application(a).await,
                (None, Some(b)) => self
                    .store()
                    .application(b.application_id)
                    .await
                    .map_err(Into::into),
                (None, None) => Err(AppError::invalid(
                    "application",
                    "is required: the OAuth application this receiver logs in with",
                )),
            },
        );
        let account_id = match (&application, &input.account, b) {
            (_, Some(a), _) if a.trim().is_empty() => None,
            (Some(app), Some(a), _) => {
                let selector = AccountSelector::new(a.clone(), Some(app.id.to_string()));
                keep(
                    &mut errors,
                    self.find_account(&selector).await.map(|a| a.id),
                )
            }
            (Some(app), None, Some(b)) if b.application_id == app.id => b.account_id,
            _ => None,
        };
        let server = match &application {
            Some(app) => keep(
                &mut errors,
                profile_of(&app.fields).and_then(|p| server(input, b, p.imap_host)),
            ),
            None => None,
        };
        let folders = keep(&mut errors, folders(input, b));
        let limits = keep(&mut errors, limits_and_sink(input, b));
        if let Some(l) = &limits {
            keep(&mut errors, self.check_sink_target(l));
        }
        let active = account_id.is_some() && input.active.or(b.map(|b| b.active)).unwrap_or(true);
        if let Some(app) = &application
            && active
            && !app.fields.active
        {
            errors.push(AppError::invalid(
                "active",
                format!(
                    "application {} is deactivated; activate it first",
                    app.fields.name
                ),
            ));
        }
        if let Some(e) = AppError::all_of(errors) {
            return Err(e);
        }
        let (
            Some(name),
            Some(application),
            Some((host, port, security)),
            Some(folders),
            Some(limits),
        ) = (name, application, server, folders, limits)
        else {
            unreachable!("every missing value recorded an error")
        };
        Ok(ReceiverFields {
            name,
            active,
            application_id: application.id,
            account_id,
            host,
            port,
            security,
            mechanism: input
                .mechanism
                .or(b.map(|b| b.mechanism))
                .unwrap_or(Mechanism::Auto),
            folder: folders.folder,
            trigger: input
                .trigger
                .or(b.map(|b| b.trigger))
                .unwrap_or(Trigger::Idle),
            poll_interval_secs: limits.poll,
            after_delivery: folders.after_delivery,
            accepted_folder: folders.accepted_folder,
            refused_folder: folders.refused_folder,
            size_limit_bytes: limits.size,
            sink: limits.sink,
            sink_target: limits.sink_target,
            ca_file: limits.ca_file,
        })
    }

    /// Creates a receiver. A webhook receiver given no signing secret gets a random one, returned
    /// here once (it is stored sealed and never shown again).
    pub async fn create_receiver(
        &self,
        input: &ReceiverInput,
    ) -> Result<(Receiver, Option<SecretString>)> {
        let fields = self.merge_receiver(None, input).await?;
        let generated = if fields.sink == SinkKind::Webhook && input.sink_secret.is_none() {
            Some(new_sink_secret()?)
        } else {
            None
        };
        let receiver = self
            .store()
            .insert_receiver(&fields, input.sink_secret.as_ref().or(generated.as_ref()))
            .await?;
        let receiver = if fields.account_id.is_none() {
            self.store()
                .pause_receiver(receiver.id, PAUSED_NO_ACCOUNT)
                .await?;
            self.store().receiver(receiver.id).await?
        } else {
            receiver
        };
        self.receiver_event(
            &receiver,
            format!("receiver {} created", receiver.fields.name),
        )
        .await?;
        Ok((receiver, generated))
    }

    pub async fn find_receiver(&self, selector: &str) -> Result<Receiver> {
        let found = match selector.trim().parse::<i64>() {
            Ok(id) => self.store().receiver(ReceiverId(id)).await,
            Err(_) => self.store().receiver_by_name(selector.trim()).await,
        };
        found.map_err(|e| match AppError::from(e) {
            AppError::NotFound { what, key, .. } => AppError::NotFound {
                what,
                key,
                hint: "; `oauthimap receiver list` shows the receivers".into(),
            },
            other => other,
        })
    }

    pub async fn list_receivers(&self) -> Result<Vec<Receiver>> {
        Ok(self.store().receivers().await?)
    }

    /// Changes a receiver; returns a newly generated webhook signing secret when one was made
    /// (switched to a webhook without a secret, or `new_sink_secret`).
    pub async fn change_receiver(
        &self,
        selector: &str,
        input: &ReceiverInput,
    ) -> Result<(Receiver, Option<SecretString>)> {
        let old = self.find_receiver(selector).await?;
        let fields = self.merge_receiver(Some(&old), input).await?;
        let mut generated = None;
        let secret = match &input.sink_secret {
            Some(s) => SecretChange::Set(s.clone()),
            None if fields.sink != SinkKind::Webhook => SecretChange::Clear,
            None if input.new_sink_secret || !old.has_sink_secret => {
                let s = new_sink_secret()?;
                generated = Some(s.clone());
                SecretChange::Set(s)
            }
            None => SecretChange::Keep,
        };
        let receiver = self
            .store()
            .update_receiver(old.id, &fields, &secret)
            .await?;
        self.receiver_event(
            &receiver,
            format!("receiver {} updated", receiver.fields.name),
        )
        .await?;
        Ok((receiver, generated))
    }

    /// Asks the running collector to try this receiver now, cutting short a back-off or a wait
    /// for its sink.
    pub async fn collect_now(&self, selector: &str) -> Result<Receiver> {
        let receiver = self.find_receiver(selector).await?;
        if !receiver.fields.active {
            return Err(AppError::Conflict(format!(
                "{} is switched off; switch it on first",
                receiver.fields.name
            )));
        }
        self.collector().wake();
        Ok(receiver)
    }

    pub async fn remove_receiver(&self, selector: &str) -> Result<Receiver> {
        let receiver = self.find_receiver(selector).await?;
        self.store().delete_receiver(receiver.id).await?;
        self.receiver_event(
            &receiver,
            format!("receiver {} removed", receiver.fields.name),
        )
        .await?;
        Ok(receiver)
    }

    /// Records a change of a receiver and wakes the collector, whichever shell made it: a new
    /// receiver starts now and a fixed one retries now, not after its back-off.
    async fn receiver_event(&self, r: &Receiver, message: String) -> Result<()> {
        self.collector().wake();
        self.store()
            .record_event(&NewEvent {
                level: Level::Info,
                kind: "receiver.changed",
                application_id: Some(r.fields.application_id),
                account_id: r.fields.account_id,
                receiver_id: Some(r.id),
                message,
            })
            .await?;
        Ok(())
    }
}
