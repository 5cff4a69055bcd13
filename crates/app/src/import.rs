//! Moving a GLPI site from the "OAuth IMAP" plugin to oauthimap without anyone signing in
//! again: the plugin's applications (with their secrets) and authorizations (with their refresh
//! tokens, which belong to the client ID, not to the redirect URL) become oauthimap applications
//! and accounts, each application in one transaction with its accounts; every imported account
//! is then refreshed once to prove its grant still works. Running it twice changes nothing the
//! second time. GLPI's collectors that use the plugin are listed.

use std::path::PathBuf;

use oauthimap_glpi::{
    Collector, CollectorRewrite, GlpiDatabase, GlpiKey, KeyError, PluginApplication,
};
use oauthimap_store::{ApplicationFields, Endpoints, ImportedAccount, Level, NewEvent};
use oauthimap_types::{Cloud, Provider, Security, now_millis};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::{AppError, Core, Result};

/// What to import from where.
#[derive(Debug, Clone)]
pub struct GlpiImport {
    /// `mysql://USER:PASSWORD@HOST[:PORT]/DATABASE`.
    pub database: SecretString,
    /// GLPI's `glpicrypt.key`.
    pub key_file: PathBuf,
    /// Show what would change, change nothing.
    pub dry_run: bool,
    /// Refresh each imported account once (the default).
    pub verify: bool,
    /// The identity provider's base URL for the imported applications, when it is not the
    /// public one (a national cloud's front, a test identity provider).
    pub endpoint_base: Option<String>,
    /// Hand GLPI's collectors over to the gateway (`--rewrite-collectors`).
    pub rewrite: Option<CollectorTarget>,
    /// Make switched-off oauthimap receivers from GLPI's collectors (`--as-receivers`), for
    /// sites that want oauthimap's own collector.
    pub as_receivers: bool,
}

/// Where GLPI's collectors are pointed: the gateway, and the file that gets their old rows.
#[derive(Debug, Clone)]
pub struct CollectorTarget {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// SQL that restores the rewritten rows with the `mysql` client, written before they change.
    pub backup: PathBuf,
}

/// GLPI's connect string for the gateway: `{H:P/imap/ssl|tls|notls[/novalidate-cert]}FOLDER`.
fn gateway_connect_string(target: &CollectorTarget, old: &Collector) -> String {
    let security = match target.security {
        Security::Tls => "ssl",
        Security::StartTls => "tls",
        Security::Plain => "notls",
    };
    let novalidate = if old.flags.iter().any(|f| f == "novalidate-cert") {
        "/novalidate-cert"
    } else {
        ""
    };
    format!(
        "{{{}:{}/imap/{security}{novalidate}}}{}",
        target.host, target.port, old.folder
    )
}

/// One line of the report: an application, an account or a collector, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct ImportLine {
    /// `application`, `account` or `collector`.
    pub kind: &'static str,
    pub name: String,
    /// `imported`, `would import`, `already present`, `failed` or `found`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ImportLine {
    fn new(kind: &'static str, name: &str, outcome: &'static str, detail: Option<String>) -> Self {
        Self {
            kind,
            name: name.to_owned(),
            outcome,
            detail,
        }
    }
}

/// The plugin's provider class as an oauthimap provider.
fn provider_of(class: &str) -> Option<Provider> {
    match class.trim().rsplit('\\').next()? {
        "Azure" => Some(Provider::Microsoft),
        "Google" => Some(Provider::Google),
        _ => None,
    }
}

/// A key problem ends the whole import (nothing is written): every value was sealed with the
/// same key.
fn key_error(e: &KeyError) -> AppError {
    AppError::invalid("key_file", e.to_string())
}

/// What the plugin's `token` column holds (league/oauth2-client's `AccessToken`, JSON).
#[derive(serde::Deserialize)]
struct PluginToken {
    access_token: Option<String>,
    expires: Option<i64>,
    refresh_token: Option<String>,
}

/// An application ready to import, or why not.
struct Planned {
    app: PluginApplication,
    fields: ApplicationFields,
    secret: Option<SecretString>,
    accounts: Vec<ImportedAccount>,
    lines: Vec<ImportLine>,
}

impl Core {
    /// Imports GLPI's OAuth IMAP plugin; returns one line per application, account and
    /// collector.
    pub async fn import_glpi(&self, import: &GlpiImport) -> Result<Vec<ImportLine>> {
        let key = GlpiKey::from_file(&import.key_file).map_err(|e| key_error(&e))?;
        let db = GlpiDatabase::connect(&import.database)
            .await
            .map_err(|e| AppError::invalid("database", e.to_string()))?;
        let glpi_err = |e: oauthimap_glpi::GlpiError| AppError::invalid("database", e.to_string());
        let applications = db.applications().await.map_err(glpi_err)?;
        let authorizations = db.authorizations().await.map_err(glpi_err)?;
        let collectors = db.collectors().await.map_err(glpi_err)?;
        // Open every sealed value first: a wrong key file stops here, before anything is written.
        let mut lines = Vec::new();
        let mut plans = Vec::new();
        let names: Vec<(i64, String)> = applications
            .iter()
            .map(|a| (a.id, a.name.trim().to_owned()))
            .collect();
        for app in applications {
            let mine: Vec<_> = authorizations
                .iter()
                .filter(|a| a.application_id == app.id)
                .cloned()
                .collect();
            match plan(&key, app, &mine, import.endpoint_base.as_deref())? {
                Ok(plan) => plans.push(plan),
                Err(line) => lines.push(line),
            }
        }
        // Mailboxes a dry run would import, so their collectors can be shown as rewritten.
        let planned: std::collections::HashSet<(i64, String)> = plans
            .iter()
            .flat_map(|p| {
                p.accounts
                    .iter()
                    .map(|a| (p.app.id, a.mailbox.to_lowercase()))
            })
            .collect();
        for plan in plans {
            lines.extend(self.import_planned(plan, import).await?);
        }
        let names: std::collections::HashMap<i64, String> = names.into_iter().collect();
        if import.as_receivers && !import.dry_run {
            for c in &collectors {
                lines.push(self.receiver_from(c, &names).await);
            }
        }
        lines.extend(
            self.collectors(&db, &key, &collectors, (&names, &planned), import)
                .await?,
        );
        Ok(lines)
    }

    /// A switched-off receiver with a GLPI collector's server, folder, accepted and refused
    /// folders, for the mailbox it collects.
    async fn receiver_from(
        &self,
        c: &Collector,
        names: &std::collections::HashMap<i64, String>,
    ) -> ImportLine {
        let name = format!("glpi-{}", c.name);
        if self.find_receiver(&name).await.is_ok() {
            return ImportLine::new("receiver", &name, "already present", None);
        }
        let security = if c.flags.iter().any(|f| f == "ssl") {
            Security::Tls
        } else {
            Security::StartTls
        };
        let input = crate::ReceiverInput {
            name: Some(name.clone()),
            active: Some(false),
            application: names.get(&c.application_id).cloned(),
            account: Some(c.login.clone()),
            host: Some(c.server.clone()),
            port: Some(
                c.port
                    .unwrap_or(if security == Security::Tls { 993 } else { 143 }),
            ),
            security: Some(security),
            folder: Some(c.folder.clone()),
            after_delivery: Some(if c.accepted.is_some() {
                oauthimap_types::AfterDelivery::Move
            } else {
                oauthimap_types::AfterDelivery::MarkSeen
            }),
            accepted_folder: c.accepted.clone(),
            refused_folder: c.refused.clone(),
            ..crate::ReceiverInput::default()
        };
        match self.create_receiver(&input).await {
            Ok(_) => ImportLine::new(
                "receiver",
                &name,
                "imported",
                Some("switched off: choose its sink, then switch it on".into()),
            ),
            Err(e) => ImportLine::new("receiver", &name, "failed", Some(e.to_string())),
        }
    }

    /// Lists GLPI's collectors that use the plugin, or hands them over to the gateway: a
    /// gateway password per collector, their old rows written to the backup file, then every
    /// row rewritten in one transaction.
    async fn collectors(
        &self,
        db: &GlpiDatabase,
        key: &GlpiKey,
        collectors: &[Collector],
        (names, planned): (
            &std::collections::HashMap<i64, String>,
            &std::collections::HashSet<(i64, String)>,
        ),
        import: &GlpiImport,
    ) -> Result<Vec<ImportLine>> {
        let Some(target) = &import.rewrite else {
            return Ok(collectors
                .iter()
                .map(|c| {
                    ImportLine::new(
                        "collector",
                        &c.name,
                        "found",
                        Some(format!(
                            "{} on {}:{} folder {}; GLPI keeps using the plugin for it (--rewrite-collectors hands it to the gateway)",
                            c.login,
                            c.server,
                            c.port.unwrap_or(993),
                            c.folder
                        )),
                    )
                })
                .collect());
        };
        let mut lines = Vec::new();
        let mut rewrites = Vec::new();
        let mut rewritten = Vec::new();
        for c in collectors {
            let account = match names.get(&c.application_id) {
                Some(app) => self
                    .find_account(&crate::AccountSelector::new(
                        c.login.clone(),
                        Some(app.clone()),
                    ))
                    .await
                    .ok(),
                None => None,
            };
            let host = gateway_connect_string(target, c);
            let Some(account) = account else {
                if import.dry_run && planned.contains(&(c.application_id, c.login.to_lowercase())) {
                    lines.push(ImportLine::new(
                        "collector",
                        &c.name,
                        "would rewrite",
                        Some(format!("{host} as {}", c.login)),
                    ));
                    continue;
                }
                lines.push(ImportLine::new(
                    "collector",
                    &c.name,
                    "failed",
                    Some(format!(
                        "its mailbox {} is not in oauthimap (see its account line): left as it is",
                        c.login
                    )),
                ));
                continue;
            };
            if import.dry_run {
                lines.push(ImportLine::new(
                    "collector",
                    &c.name,
                    "would rewrite",
                    Some(format!("{host} as {}", account.mailbox)),
                ));
                continue;
            }
            let selector = crate::AccountSelector::new(account.id.to_string(), None);
            let name = format!("glpi-collector-{}", c.id);
            // A run that stopped before the rewrite left this password: make a new one.
            let _ = self.remove_gateway_password(&selector, &name).await;
            let (_, password) = self
                .add_gateway_password(&selector, &name, &["imap".to_owned()], None)
                .await?;
            rewrites.push(CollectorRewrite {
                id: c.id,
                host: host.clone(),
                login: account.mailbox.clone(),
                passwd: key.seal(&password),
            });
            rewritten.push(c.clone());
            lines.push(ImportLine::new(
                "collector",
                &c.name,
                "rewritten",
                Some(format!(
                    "{host} as {} with the gateway password {name}; its old row is in {}",
                    account.mailbox,
                    target.backup.display()
                )),
            ));
        }
        if rewrites.is_empty() {
            return Ok(lines);
        }
        write_private(&target.backup, &oauthimap_glpi::restore_sql(&rewritten))?;
        db.rewrite_collectors(&rewrites)
            .await
            .map_err(|e| AppError::invalid("database", e.to_string()))?;
        Ok(lines)
    }
}

/// Writes a file only its owner can read (it holds GLPI's sealed passwords).
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|source| AppError::Io {
            action: format!("write the collectors' backup {}", path.display()),
            source,
        })
}

/// Checks one plugin application and opens its secrets; `Err` is its failure line.
fn plan(
    key: &GlpiKey,
    app: PluginApplication,
    authorizations: &[oauthimap_glpi::Authorization],
    endpoint_base: Option<&str>,
) -> Result<std::result::Result<Planned, ImportLine>> {
    let Some(provider) = provider_of(&app.provider) else {
        return Ok(Err(ImportLine::new(
            "application",
            &app.name,
            "failed",
            Some(format!(
                "unknown provider class {:?}: the plugin's Azure and Google providers can be imported",
                app.provider
            )),
        )));
    };
    let secret = key
        .open(
            app.client_secret.as_deref(),
            &format!(
                "glpi_plugin_oauthimap_applications.client_secret of row {}",
                app.id
            ),
        )
        .map_err(|e| key_error(&e))?;
    let tenant = app.tenant_id.clone().filter(|t| !t.trim().is_empty());
    let fields = ApplicationFields {
        name: app.name.trim().to_owned(),
        active: app.is_active != 0,
        provider,
        cloud: Cloud::Global,
        client_id: app.client_id.trim().to_owned(),
        tenant: if provider == Provider::Microsoft {
            Some(tenant.unwrap_or_else(|| "common".into()))
        } else {
            None
        },
        endpoints: Endpoints {
            base: endpoint_base.map(str::to_owned),
            ..Endpoints::default()
        },
        scopes: None,
        secret_expires_at: None,
        comment: app.comment.clone().unwrap_or_default(),
    };
    let mut accounts = Vec::new();
    let mut lines = Vec::new();
    for a in authorizations {
        let what = |column: &str| {
            format!(
                "glpi_plugin_oauthimap_authorizations.{column} of row {}",
                a.id
            )
        };
        let token = key
            .open(a.token.as_deref(), &what("token"))
            .map_err(|e| key_error(&e))?;
        let refresh = key
            .open(a.refresh_token.as_deref(), &what("refresh_token"))
            .map_err(|e| key_error(&e))?;
        let parsed: Option<PluginToken> = token
            .as_ref()
            .and_then(|t| serde_json::from_str(t.expose_secret()).ok());
        // Before plugin 1.3.1 the refresh token lived only inside `token`.
        let refresh = refresh.or_else(|| {
            parsed
                .as_ref()
                .and_then(|p| p.refresh_token.clone())
                .map(SecretString::from)
        });
        let Some(refresh_token) = refresh else {
            lines.push(ImportLine::new(
                "account",
                &a.email,
                "failed",
                Some(
                    "the plugin holds no refresh token for it: authorize it again in oauthimap"
                        .into(),
                ),
            ));
            continue;
        };
        let now_secs = now_millis() / 1000;
        let access = parsed.and_then(|p| match (p.access_token, p.expires) {
            (Some(t), Some(expires)) if expires > now_secs + 60 => {
                Some((SecretString::from(t), expires * 1000))
            }
            _ => None,
        });
        accounts.push(ImportedAccount {
            mailbox: a.email.trim().to_owned(),
            // The plugin's grant is a sign-in's: the account starts where a sign-in leaves one.
            state: oauthimap_tokens::new_account_state(),
            refresh_token,
            access,
        });
    }
    Ok(Ok(Planned {
        app,
        fields,
        secret,
        accounts,
        lines,
    }))
}

impl Core {
    async fn import_planned(&self, plan: Planned, import: &GlpiImport) -> Result<Vec<ImportLine>> {
        let mut lines = plan.lines;
        let name = plan.fields.name.clone();
        if let Ok(existing) = self.store().application_by_name(&name).await {
            if existing.fields.client_id != plan.fields.client_id {
                lines.insert(
                    0,
                    ImportLine::new(
                        "application",
                        &name,
                        "failed",
                        Some(format!(
                            "an application named {name:?} already exists in oauthimap with another client ID; rename one of them"
                        )),
                    ),
                );
                return Ok(lines);
            }
            lines.insert(
                0,
                ImportLine::new("application", &name, "already present", None),
            );
            let present = self.store().accounts(Some(existing.id)).await?;
            lines.extend(
                plan.accounts
                    .iter()
                    .map(|a| present_line(&present, &a.mailbox)),
            );
            return Ok(lines);
        }
        if import.dry_run {
            lines.insert(
                0,
                ImportLine::new(
                    "application",
                    &name,
                    "would import",
                    Some(format!("{} ({})", plan.fields.provider, plan.app.client_id)),
                ),
            );
            lines.extend(
                plan.accounts
                    .iter()
                    .map(|a| ImportLine::new("account", &a.mailbox, "would import", None)),
            );
            return Ok(lines);
        }
        let (app, ids) = self
            .store()
            .import_application(&plan.fields, plan.secret.as_ref(), &plan.accounts)
            .await?;
        self.import_event(
            &app,
            format!(
                "application {} imported from GLPI's OAuth IMAP plugin with {} account(s)",
                app.fields.name,
                ids.len()
            ),
        )
        .await;
        lines.insert(0, ImportLine::new("application", &name, "imported", None));
        for (a, id) in plan.accounts.iter().zip(ids) {
            let line = if import.verify {
                self.verify_imported(&a.mailbox, id).await
            } else {
                ImportLine::new("account", &a.mailbox, "imported", None)
            };
            lines.push(line);
        }
        Ok(lines)
    }

    /// Refreshes an imported account once; its report line.
    async fn verify_imported(&self, mailbox: &str, id: oauthimap_types::AccountId) -> ImportLine {
        if self.tokens().refresh_now(id).await.is_refreshed() {
            return ImportLine::new(
                "account",
                mailbox,
                "imported",
                Some("refreshed once: the grant works".into()),
            );
        }
        let why = self
            .store()
            .account(id)
            .await
            .ok()
            .and_then(|acc| acc.last_error)
            .unwrap_or_else(|| "the refresh failed".into());
        ImportLine::new(
            "account",
            mailbox,
            "failed",
            Some(format!(
                "imported, but the provider refused its refresh token: {why}"
            )),
        )
    }

    async fn import_event(&self, app: &oauthimap_store::Application, message: String) {
        let event = NewEvent {
            level: Level::Info,
            kind: "application.imported",
            application_id: Some(app.id),
            account_id: None,
            receiver_id: None,
            message,
        };
        if let Err(e) = self.store().record_event(&event).await {
            tracing::warn!(error = %e, "cannot record the event");
        }
    }
}

/// The line of an account whose application was imported before.
fn present_line(present: &[oauthimap_store::Account], mailbox: &str) -> ImportLine {
    if present
        .iter()
        .any(|p| p.mailbox.eq_ignore_ascii_case(mailbox))
    {
        ImportLine::new("account", mailbox, "already present", None)
    } else {
        ImportLine::new(
            "account",
            mailbox,
            "failed",
            Some(
                "its application was imported before without it: authorize it in oauthimap".into(),
            ),
        )
    }
}
