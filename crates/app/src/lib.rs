//! The application core: every use case the web UI, the REST API and the CLI offer, built from
//! the configuration. The shells translate their input into calls here and render the result;
//! no business rule lives in them.
//!
//! Policy lives here (which changes invalidate accounts, what a valid receiver is); the store
//! applies multi-row changes atomically; the OAuth and IMAP crates speak the protocols.
//!
//! This crate is the shells' only way in (`scripts/check-architecture` holds them to it): they
//! name rows through [`views`], ids and enums through `oauthimap-types`, load the configuration
//! through [`Config`], and never reach the store, the token service or the collector themselves.
//! Those accessors exist for the core's own modules; its tests (and the benchmarks) get them
//! through the `test-support` feature.

mod accounts;
mod admins;
mod api_tokens;
mod applications;
mod broker;
mod collect;
mod diagnose;
mod error;
mod gateway;
mod import;
mod keys;
pub mod limits;
mod message_view;
mod outbound;
mod overview;
mod pages;
mod receivers;
mod serve;
mod signin;
mod startup;
pub mod views;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use oauthimap_config::Settings;
use oauthimap_crypto::{CryptoError, KeyFileError, KeyRing};
use oauthimap_oauth::OAuthClient;
use oauthimap_store::{Db, Store};
use oauthimap_tokens::{Notifier, NotifySettings, TokenService, TokenSettings};
use secrecy::ExposeSecret;

pub use accounts::AccountSelector;
pub use admins::{MIN_PASSWORD_CHARS, NewSession};
pub use api_tokens::random_id;
pub use applications::{ApplicationInput, ApplicationView};
pub use broker::{Asked, Broker, TokenReply, TokenRequest, ask_broker, remote_token};
pub use collect::CollectOutcome;
pub use diagnose::{DiagnoseOptions, DiagnosticReport, Outcome, Step};
pub use error::{AppError, FieldError, Result, summarize_error};
pub use gateway::{
    GATEWAY_PROTOCOLS, GatewayBackend, GatewayEndpoint, GatewayStatus, ListenerStatus,
    UpstreamScope, UpstreamServer,
};
pub use import::{CollectorTarget, GlpiImport, ImportLine};
pub use keys::{KeyRotation, KeyStatus};
pub use message_view::{MailAddress, MailContent, MessageAttachment, MessageView, SafeHtml};
pub use oauthimap_collector::{Collector, CollectorSettings, PassSummary, ProgressEvent, SinkWait};
pub use oauthimap_gateway::{GatewayConfig, Protocol, TlsFiles};
pub use overview::{
    AccountGroup, Attention, AttentionKind, AttentionSubject, GettingStarted, HealthReport,
    Severity, WARNING_WINDOW_DAYS,
};
pub use pages::{EventPage, EventQuery, MAX_EVENTS, MessagePage};
pub use receivers::ReceiverInput;
pub use serve::ListenPlan;
pub use signin::{CallbackParams, SignInStart, SignedIn};
pub use startup::{Config, generate_master_key};

/// Whether opening may create the data folder, the database and the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenMode {
    Create,
    Existing,
}

/// The running core: settings, the store with its keys.
#[derive(Debug, Clone)]
pub struct Core {
    settings: Arc<Settings>,
    store: Store,
    tokens: Arc<TokenService>,
    collector: Arc<oauthimap_collector::Collector>,
    gateway: Arc<gateway::GatewayState>,
    outbound: outbound::Outbound,
}

impl Core {
    /// Opens the data folder, the database (migrating it) and the master keys, creating them on
    /// first run: for the commands that create things (`serve`, `app add`, `admin create`, …).
    /// On first run the folder, the SQLite database and a 0600 key file are created; a database
    /// that holds sealed data but whose key file is missing is refused, never silently given a
    /// new key, and so is a key file whose SQLite database is missing.
    pub async fn open(settings: Settings) -> Result<Core> {
        Self::open_as(settings, OpenMode::Create).await
    }

    /// Opens existing data only: when the data folder has no database (or the key is missing),
    /// nothing is created and the error says where it looked and how to point elsewhere. For
    /// every command that does not create things, so a `token` or `list` run in the wrong folder
    /// leaves no stray data behind.
    pub async fn open_existing(settings: Settings) -> Result<Core> {
        Self::open_as(settings, OpenMode::Existing).await
    }

    async fn open_as(settings: Settings, mode: OpenMode) -> Result<Core> {
        let sqlite = settings.sqlite_path();
        let key_path = settings.key_file();
        let key_given = settings.master_key.is_some();
        if let Some(db_path) = &sqlite
            && !db_path.exists()
        {
            if mode == OpenMode::Existing {
                return Err(AppError::NotFound {
                    what: "oauthimap database",
                    key: db_path.display().to_string(),
                    hint: format!(
                        " (data folder {}): run this in the folder that holds oauthimap's data, or point to it with                          --config FILE, OAUTHIMAP_DATA_DIR or OAUTHIMAP_DATABASE_URL; `oauthimap serve` or                          `oauthimap app add` set up a new one",
                        settings.data_dir.display()
                    ),
                });
            }
            if !key_given && key_path.exists() {
                return Err(AppError::Conflict(format!(
                    "the master key {} exists but its database {} does not: restore the database from its backup                      (or point database_url at it); to start afresh on purpose, move the key file away first",
                    key_path.display(),
                    db_path.display()
                )));
            }
        }
        let outbound = outbound::Outbound::new(&settings.outbound.allowed_networks)?;
        if let Some(url) = &settings.notify.webhook_url {
            outbound.check_url("notify.webhook_url", url.as_str())?;
        }
        if mode == OpenMode::Create {
            create_private_dir(&settings.data_dir)?;
        }
        let db = Db::connect(&settings.database_url()).await?;
        let keys = if let Some(value) = &settings.master_key {
            KeyRing::from_env_value(value.expose_secret())?
        } else {
            let create = mode == OpenMode::Create && !db.is_sealed().await?;
            if !create && !key_path.exists() {
                return Err(CryptoError::KeyFile(KeyFileError::Missing { path: key_path }).into());
            }
            let (ring, created) = KeyRing::from_file(&key_path, create)?;
            if created {
                tracing::info!(
                    key_file = %key_path.display(),
                    "created a new master key file; back it up together with the database"
                );
            }
            ring
        };
        let store = Store::new(db, Arc::new(keys)).await?;
        let t = &settings.tokens;
        let oauth = OAuthClient::new(Duration::from_secs(t.http_timeout_secs)).map_err(|e| {
            AppError::Io {
                action: "set up the HTTP client".into(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        // Webhooks and notifications go through the outbound policy; the identity provider's
        // endpoints do not (they may well be inside, such as a Keycloak next door).
        let hooks_http = outbound.client(Duration::from_mins(1))?;
        let notifier = Notifier::new(
            NotifySettings {
                webhook_url: settings.notify.webhook_url.clone(),
                command: settings.notify.command.clone(),
                pass_env: settings.hooks.pass_env.clone(),
            },
            hooks_http.clone(),
        );
        let token_settings = TokenSettings {
            refresh_margin: Duration::from_secs(t.refresh_margin_secs),
            jitter: Duration::from_secs(t.jitter_secs),
            keep_warm: Duration::from_secs(t.keep_warm_days * 86_400),
            check_interval: Duration::from_secs(t.check_interval_secs),
            ..TokenSettings::default()
        };
        let http = hooks_http;
        let tokens = Arc::new(TokenService::new(
            store.clone(),
            oauth,
            notifier,
            token_settings,
        ));
        let collector = Arc::new(oauthimap_collector::Collector::with_settings(
            store.clone(),
            tokens.clone(),
            http,
            settings.data_dir.clone(),
            collector_settings(&settings, &outbound),
        ));
        Ok(Core {
            settings: Arc::new(settings),
            store,
            tokens,
            collector,
            gateway: Arc::new(gateway::GatewayState::new()),
            outbound,
        })
    }

    /// The settings (the core's own modules; tests through `test-support`).
    #[cfg(any(test, feature = "test-support"))]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    #[cfg(not(any(test, feature = "test-support")))]
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The token `/metrics` asks for, when `metrics.token_file` sets one. A file that cannot be
    /// read, or holds too short a token, is a configuration mistake: `/metrics` never opens by
    /// accident.
    pub fn metrics_token(&self) -> Result<Option<secrecy::SecretString>> {
        let Some(path) = &self.settings.metrics.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            AppError::invalid(
                "metrics.token_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let token = text.trim();
        if token.chars().count() < 16 {
            return Err(AppError::invalid(
                "metrics.token_file",
                format!(
                    "{} holds {} characters; put a random token of at least 16 in it, such as the output of `openssl rand -hex 32`",
                    path.display(),
                    token.chars().count()
                ),
            ));
        }
        Ok(Some(secrecy::SecretString::from(token.to_owned())))
    }

    /// Whether a scrape that presents `bearer` may read `/metrics`: always when no token is
    /// set, else only with that token (compared as SHA-256 digests, so the time taken says
    /// nothing about it).
    pub fn metrics_allowed(&self, bearer: Option<&str>) -> Result<bool> {
        let Some(token) = self.metrics_token()? else {
            return Ok(true);
        };
        let digest = |s: &str| <sha2::Sha256 as sha2::Digest>::digest(s.as_bytes());
        Ok(bearer.is_some_and(|b| digest(b) == digest(token.expose_secret())))
    }

    /// The store (the core's own modules; tests through `test-support`).
    #[cfg(any(test, feature = "test-support"))]
    pub fn store(&self) -> &Store {
        &self.store
    }

    #[cfg(not(any(test, feature = "test-support")))]
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The collector, receivers at work (the core's own modules; tests through `test-support`).
    #[cfg(any(test, feature = "test-support"))]
    pub fn collector(&self) -> &Arc<oauthimap_collector::Collector> {
        &self.collector
    }

    #[cfg(not(any(test, feature = "test-support")))]
    pub(crate) fn collector(&self) -> &Arc<oauthimap_collector::Collector> {
        &self.collector
    }

    /// The token service, fresh tokens and the background refresher (the core's own modules;
    /// tests through `test-support`).
    #[cfg(any(test, feature = "test-support"))]
    pub fn tokens(&self) -> &Arc<TokenService> {
        &self.tokens
    }

    #[cfg(not(any(test, feature = "test-support")))]
    pub(crate) fn tokens(&self) -> &Arc<TokenService> {
        &self.tokens
    }

    /// The redirect URL to register at the provider: `{external_base_url}/oauth/callback`,
    /// always computed from configuration, never from a request.
    pub fn redirect_url(&self) -> url::Url {
        let mut url = self.settings.external_base_url();
        let path = format!("{}/oauth/callback", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url
    }

    /// Whether the database answers (for readiness probes).
    pub async fn ready(&self) -> Result<()> {
        Ok(self.store.db().ping().await?)
    }

    /// Closes the database pool.
    pub async fn close(&self) {
        self.store.db().close().await;
    }
}

/// The collector's settings from the configuration.
fn collector_settings(
    settings: &Settings,
    outbound: &outbound::Outbound,
) -> oauthimap_collector::CollectorSettings {
    oauthimap_collector::CollectorSettings {
        max_concurrent_passes: settings.collector.passes(),
        max_connections_per_account: settings.collector.max_connections_per_account,
        sink: oauthimap_collector::SinkPolicy {
            max_outage: settings.sink.max_outage,
            alert_after: settings.sink.alert_after,
            retry_cap: settings.sink.retry_cap,
            ..oauthimap_collector::SinkPolicy::default()
        },
        pass_env: settings.hooks.pass_env.clone(),
        lease_ttl: settings.collector.lease_ttl,
        allowed_networks: outbound.allowed(),
        command_enabled: settings.sinks.command_enabled,
        command_allowed: settings.sinks.command_allowed.clone(),
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    oauthimap_store::create_private_dir(dir).map_err(|e| AppError::Io {
        action: format!("create the data folder {}", dir.display()),
        source: e,
    })
}
