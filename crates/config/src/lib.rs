//! Configuration: built-in defaults, then a TOML file (`--config` or `OAUTHIMAP_CONFIG`), then
//! `OAUTHIMAP_*` environment variables (`__` separates nested keys). The secret settings
//! (`database_url`, `master_key`) can instead be read from a file: `database_url_file` in TOML,
//! `OAUTHIMAP_DATABASE_URL_FILE=/run/secrets/db` in the environment.
//!
//! Only the `app` crate reads this; every other crate gets plain values.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

const ENV_PREFIX: &str = "OAUTHIMAP_";

/// Every setting an `OAUTHIMAP_*` variable can set (lower-cased, prefix removed, `__` for a
/// section). Any other `OAUTHIMAP_*` variable is not ours to read: oauthimap itself exports
/// `OAUTHIMAP_EVENT`, `OAUTHIMAP_RECEIVER`, … to hooks and command sinks, and a hook that calls
/// `oauthimap` must work. A name one edit away from one of these gets a warning instead.
/// The `settings_list_matches_the_settings` test keeps this in step with [`Settings`].
pub const SETTINGS: &[&str] = &[
    "data_dir",
    "database_url",
    "database_url_file",
    "key_file",
    "master_key",
    "master_key_file",
    "listen",
    "external_base_url",
    "log_format",
    "log_level",
    "tokens__refresh_margin_secs",
    "tokens__jitter_secs",
    "tokens__keep_warm_days",
    "tokens__check_interval_secs",
    "tokens__http_timeout_secs",
    "notify__webhook_url",
    "notify__command",
    "web__session_idle_secs",
    "web__session_max_secs",
    "web__login_failures_before_lock",
    "web__login_failures_per_address",
    "web__setup_link_secs",
    "collector__max_concurrent_passes",
    "collector__max_connections_per_account",
    "collector__lease_ttl",
    "sink__max_outage",
    "sink__alert_after",
    "sink__retry_cap",
    "hooks__pass_env",
    "outbound__allowed_networks",
    "metrics__token_file",
    "broker__enabled",
    "broker__socket",
    "broker__group",
    "broker__allowed_uids",
    "broker__allowed_gids",
    "sinks__command_enabled",
    "sinks__command_allowed",
    "sinks__maildir_roots",
    "gateway__imap_listen",
    "gateway__imaps_listen",
    "gateway__pop3_listen",
    "gateway__pop3s_listen",
    "gateway__submission_listen",
    "gateway__submissions_listen",
    "gateway__tls_cert",
    "gateway__tls_key",
    "gateway__trusted_networks",
    "gateway__max_sessions",
    "gateway__login_timeout_secs",
    "gateway__upstream_timeout_secs",
];

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// All settings, after defaults, file and environment have been merged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Folder for the `SQLite` database, the key file and collected mail.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://...`; defaults to `sqlite://{data_dir}/oauthimap.db`.
    pub database_url: Option<SecretString>,
    /// The master key file; defaults to `{data_dir}/master.key`.
    pub key_file: Option<PathBuf>,
    /// A file holding `database_url` (for secret stores that mount files).
    #[serde(default)]
    database_url_file: Option<PathBuf>,
    /// Master keys given directly (base64, or `ID:BASE64,...`); overrides `key_file`.
    pub master_key: Option<SecretString>,
    /// A file holding `master_key`.
    #[serde(default)]
    master_key_file: Option<PathBuf>,
    /// Where the HTTP service listens.
    pub listen: SocketAddr,
    /// The URL users and providers reach the service at; the OAuth redirect URL is derived from it.
    pub external_base_url: Option<Url>,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `oauthimap=debug,info`.
    pub log_level: String,
    /// Token refresh timing.
    #[serde(default)]
    pub tokens: TokenSettings,
    /// Where to send alerts (an account needs a new sign-in).
    #[serde(default)]
    pub notify: NotifySettings,
    /// The web admin's sessions and logins.
    #[serde(default)]
    pub web: WebSettings,
    /// How receivers share the machine.
    #[serde(default)]
    pub collector: CollectorSettings,
    /// What happens while a receiver's sink is down.
    #[serde(default)]
    pub sink: SinkSettings,
    /// What `[notify]` commands and command sinks may see.
    #[serde(default)]
    pub hooks: HooksSettings,
    /// The gateway for password-only clients (off unless a listener is set).
    #[serde(default)]
    pub gateway: GatewaySettings,
    /// Where webhooks and notifications may go.
    #[serde(default)]
    pub outbound: OutboundSettings,
    /// What an admin of oauthimap may make receivers do on this host.
    #[serde(default)]
    pub sinks: SinksSettings,
    /// Who may read `/metrics`.
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// `[broker]`
    #[serde(default)]
    pub broker: BrokerSettings,
    #[serde(skip)]
    warnings: Vec<String>,
}

/// `[gateway]`: listeners that let password-only mail clients reach OAuth mailboxes with a
/// per-client gateway password. Each is off until its address is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// IMAP with STARTTLS, e.g. `127.0.0.1:143`.
    pub imap_listen: Option<SocketAddr>,
    /// IMAP over implicit TLS, e.g. `0.0.0.0:993` (needs `tls_cert` and `tls_key`).
    pub imaps_listen: Option<SocketAddr>,
    /// POP3 with STLS, e.g. `127.0.0.1:110`.
    pub pop3_listen: Option<SocketAddr>,
    /// POP3 over implicit TLS, e.g. `0.0.0.0:995` (needs `tls_cert` and `tls_key`).
    pub pop3s_listen: Option<SocketAddr>,
    /// SMTP submission with STARTTLS, e.g. `127.0.0.1:587`.
    pub submission_listen: Option<SocketAddr>,
    /// SMTP submission over implicit TLS, e.g. `0.0.0.0:465` (needs `tls_cert` and `tls_key`).
    pub submissions_listen: Option<SocketAddr>,
    /// The certificate chain (PEM), re-read when it changes.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Networks whose clients may send passwords without TLS to a non-loopback listener.
    pub trusted_networks: Vec<String>,
    /// Sessions open at once, in total.
    pub max_sessions: usize,
    /// Seconds a client may stay silent before logging in.
    pub login_timeout_secs: u64,
    /// Seconds the upstream server may take to connect and to answer each login step; a client
    /// then hears "try again later" (IMAP `NO [UNAVAILABLE]`, POP3 `-ERR [SYS/TEMP]`, SMTP 454).
    pub upstream_timeout_secs: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            imap_listen: None,
            imaps_listen: None,
            pop3_listen: None,
            pop3s_listen: None,
            submission_listen: None,
            submissions_listen: None,
            tls_cert: None,
            tls_key: None,
            trusted_networks: Vec::new(),
            max_sessions: 1000,
            login_timeout_secs: 120,
            upstream_timeout_secs: 30,
        }
    }
}

/// `[sinks]`: the operator's bounds on what an admin of oauthimap (web UI, REST, CLI) may make
/// receivers do on this host. Only the configuration file, which is root's to write, sets them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksSettings {
    /// Command sinks run a shell command as the service user: off unless enabled here.
    pub command_enabled: bool,
    /// Executables command sinks may run (absolute paths). When set, a command sink's target is
    /// split into words as a shell would (quotes, no expansion or variables), its first word
    /// must be one of these, and it runs without a shell; unset, targets run through `sh -c`.
    pub command_allowed: Vec<PathBuf>,
    /// Folders maildir targets must lie in (after `..` and symbolic links are resolved);
    /// default `{data_dir}/maildir`.
    pub maildir_roots: Vec<PathBuf>,
}

/// `[broker]`: `serve` answers `oauthimap token` over a Unix socket, so password commands get a
/// token without opening the database or the key. Root and the service's own user may always
/// ask; others only when listed here (by uid, or by a group they are in).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    /// Whether `serve` listens on the socket.
    pub enabled: bool,
    /// The socket's path; default `{data_dir}/broker.sock`. Packages use
    /// `/run/oauthimap/broker.sock`, which users outside the service's data folder can reach.
    pub socket: Option<PathBuf>,
    /// The socket's group (a name from /etc/group, or a number); the socket is made 0660, and
    /// members of this group may ask for tokens.
    pub group: Option<String>,
    /// More users (uids) that may ask for tokens.
    pub allowed_uids: Vec<u32>,
    /// More groups (gids) whose members may ask for tokens.
    pub allowed_gids: Vec<u32>,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            socket: None,
            group: None,
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
        }
    }
}

impl Settings {
    /// Where the token broker's socket is.
    pub fn broker_socket(&self) -> PathBuf {
        socket_path(&self.broker, &self.data_dir)
    }

    /// The folders maildir targets must lie in.
    pub fn maildir_roots(&self) -> Vec<PathBuf> {
        if self.sinks.maildir_roots.is_empty() {
            vec![self.data_dir.join("maildir")]
        } else {
            self.sinks.maildir_roots.clone()
        }
    }
}

/// `[outbound]`: webhooks (the webhook sink, `notify.webhook_url`) go to the internet only;
/// loopback, private, link-local and metadata addresses are refused unless listed here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSettings {
    /// Networks inside that webhooks may reach anyway (`["10.20.0.0/16"]`).
    pub allowed_networks: Vec<String>,
}

/// `[metrics]`: `/metrics` is open to whoever reaches the web port unless a token is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// A file holding the bearer token scrapers must send (`Authorization: Bearer …`); read at
    /// each scrape, so it can be rotated without a restart.
    pub token_file: Option<PathBuf>,
}

/// `[hooks]`: child processes (`notify.command`, command sinks) run with a minimal environment:
/// `PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ`, their event's own variables, and these.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksSettings {
    /// More variables to pass on (`["HTTPS_PROXY", "TZ"]`); `OAUTHIMAP_*` settings never pass.
    pub pass_env: Vec<String>,
}

/// `[collector]`: how receivers share the machine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorSettings {
    /// Passes (fetching, parsing, delivering) running at once over all receivers; receivers
    /// waiting in IDLE or for their next poll do not count. Unset, the number of CPUs (see
    /// [`CollectorSettings::passes`]: counted only by the commands that collect, not by every
    /// `oauthimap token`).
    pub max_concurrent_passes: Option<usize>,
    /// IMAP connections opened per mailbox (capped further at the provider's limit: Exchange
    /// Online about 20, Gmail 15).
    pub max_connections_per_account: usize,
    /// How long a receiver's lease lasts unrenewed: with several instances on one database,
    /// another instance takes over a dead one's receivers after this.
    #[serde(deserialize_with = "duration")]
    pub lease_ttl: Duration,
}

impl CollectorSettings {
    /// `max_concurrent_passes`, or the number of CPUs.
    pub fn passes(&self) -> usize {
        self.max_concurrent_passes.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        })
    }
}

impl Default for CollectorSettings {
    fn default() -> Self {
        Self {
            max_concurrent_passes: None,
            max_connections_per_account: 20,
            lease_ttl: Duration::from_mins(1),
        }
    }
}

/// `[sink]`: a sink that is down holds its receiver's line (in UID order) and is retried with
/// exponential back-off and jitter; durations are humantime (`90s`, `15m`, `5d`) or seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkSettings {
    /// A message held by a sink that stays down this long is set aside (with an event and a
    /// notification) and the line moves on. Like an MTA's queue lifetime.
    #[serde(deserialize_with = "duration")]
    pub max_outage: Duration,
    /// An event and `[notify]` fire once an outage lasts this long, and again when it ends.
    #[serde(deserialize_with = "duration")]
    pub alert_after: Duration,
    /// The longest wait between two retries.
    #[serde(deserialize_with = "duration")]
    pub retry_cap: Duration,
}

impl Default for SinkSettings {
    fn default() -> Self {
        Self {
            max_outage: Duration::from_hours(5 * 24),
            alert_after: Duration::from_mins(15),
            retry_cap: Duration::from_mins(15),
        }
    }
}

/// A duration as humantime text (`15m`, `5d`) or a number of seconds.
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => {
            oauthimap_types::units::parse_duration(&t).map_err(serde::de::Error::custom)
        }
    }
}

/// `[web]`: admin sessions and login protection. Durations are in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// A session ends after this long without a request.
    pub session_idle_secs: u64,
    /// A session ends this long after login, however busy.
    pub session_max_secs: u64,
    /// After this many failed logins in a row, from any addresses, an admin user is locked for
    /// a while (doubling); `oauthimap admin unlock` lifts it.
    pub login_failures_before_lock: u64,
    /// Failed logins one client address may make in 15 minutes, whatever the user names. Kept
    /// below `login_failures_before_lock`, one address alone cannot lock an admin out.
    pub login_failures_per_address: u64,
    /// How long the one-time setup link printed on first start stays valid.
    pub setup_link_secs: u64,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            session_idle_secs: 8 * 3600,
            session_max_secs: 7 * 86_400,
            login_failures_before_lock: 10,
            login_failures_per_address: 5,
            setup_link_secs: 24 * 3600,
        }
    }
}

impl WebSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let w = self;
        if w.session_idle_secs == 0 || w.session_max_secs < w.session_idle_secs {
            return Err(ConfigError::Invalid(
                "web.session_idle_secs must be above 0 and web.session_max_secs at least as long"
                    .into(),
            ));
        }
        if w.login_failures_before_lock == 0
            || w.login_failures_per_address == 0
            || w.setup_link_secs == 0
        {
            return Err(ConfigError::Invalid(
                "web.login_failures_before_lock, web.login_failures_per_address and web.setup_link_secs must be above 0".into(),
            ));
        }
        Ok(())
    }
}

/// `[tokens]`: when tokens are renewed. Durations are in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// Refresh when the access token expires within this many seconds.
    pub refresh_margin_secs: u64,
    /// Random extra margin, so accounts do not all refresh in the same second.
    pub jitter_secs: u64,
    /// Refresh at least every this many days, so refresh tokens never die unused.
    pub keep_warm_days: u64,
    /// How often the refresher looks for work.
    pub check_interval_secs: u64,
    /// Timeout of one request to the identity provider.
    pub http_timeout_secs: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            refresh_margin_secs: 600,
            jitter_secs: 60,
            keep_warm_days: 3,
            check_interval_secs: 30,
            http_timeout_secs: 30,
        }
    }
}

/// `[notify]`: who hears about accounts that need attention.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// POST a JSON notice here (https, or http to loopback).
    pub webhook_url: Option<Url>,
    /// Run this through `sh -c` with `OAUTHIMAP_EVENT`, `OAUTHIMAP_ACCOUNT_ID`, `OAUTHIMAP_MAILBOX`,
    /// `OAUTHIMAP_APPLICATION` and `OAUTHIMAP_REASON` in its environment.
    pub command: Option<String>,
}

#[derive(Serialize)]
struct Defaults {
    data_dir: PathBuf,
    listen: SocketAddr,
    log_format: LogFormat,
    log_level: String,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("oauthimap-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            log_format: LogFormat::Text,
            log_level: "info".into(),
        }
    }
}

/// A setting that could not be read; the message names the key and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The configuration file used when none is named (`--config`, `OAUTHIMAP_CONFIG`): for a user
/// other than root `$XDG_CONFIG_HOME/oauthimap/oauthimap.toml` (default
/// `~/.config/oauthimap/oauthimap.toml`), then, for everyone, `/etc/oauthimap/oauthimap.toml`;
/// the first that exists.
pub fn default_config_file() -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let user = (!root)
        .then(|| {
            std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .or_else(|| {
                    std::env::var_os("HOME")
                        .map(|h| PathBuf::from(h).join(".config"))
                        .filter(|p| p.is_absolute())
                })
                .map(|dir| dir.join("oauthimap/oauthimap.toml"))
        })
        .flatten();
    user.into_iter()
        .chain([PathBuf::from("/etc/oauthimap/oauthimap.toml")])
        .find(|p| p.is_file())
}

impl Settings {
    /// Loads settings from defaults, the optional TOML file and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let (env, warnings) = process_env();
        let mut settings = Self::load_from(file, env)?;
        settings.warnings.extend(warnings);
        Ok(settings)
    }

    /// Only where the token broker's socket is (`None` when `broker.enabled` is false), read
    /// from the same defaults, file and environment as [`Settings::load`] but without the rest:
    /// `oauthimap token`'s fast path reads this at every call. Other mistakes in the file are
    /// not reported here; every other command (and the database path) reports them.
    pub fn broker_socket_of(file: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
        /// The part of [`Settings`] the socket's path depends on; other keys are ignored.
        #[derive(Deserialize)]
        struct BrokerPart {
            data_dir: PathBuf,
            #[serde(default)]
            broker: BrokerSettings,
        }
        let (env, _) = process_env();
        let part: BrokerPart = merged(file, env)?
            .0
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(&e)))?;
        Ok(part
            .broker
            .enabled
            .then(|| socket_path(&part.broker, &part.data_dir)))
    }

    /// Like [`Settings::load`] with an explicit environment (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (figment, warnings) = merged(file, env)?;
        let mut settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(&e)))?;
        settings.warnings = warnings;
        settings.read_secret_files()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Resolves `database_url_file` and `master_key_file` into their settings.
    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        for (name, file, value) in [
            (
                "database_url",
                self.database_url_file.take(),
                &mut self.database_url,
            ),
            (
                "master_key",
                self.master_key_file.take(),
                &mut self.master_key,
            ),
        ] {
            let Some(path) = file else { continue };
            if value.is_some() {
                return Err(ConfigError::Invalid(format!(
                    "{name} and {name}_file are both set: keep one of them"
                )));
            }
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                what: "the secret file",
                path: path.clone(),
                source,
            })?;
            let text = text.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "{name}_file {}: the file is empty",
                    path.display()
                )));
            }
            *value = Some(SecretString::from(text.to_owned()));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.external_base_url {
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ConfigError::Invalid(format!(
                    "external_base_url {url}: must be an http:// or https:// URL with a host, such as https://oauthimap.example.com"
                )));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(ConfigError::Invalid(format!(
                    "external_base_url {url}: must not have a query or fragment"
                )));
            }
        }
        if let Some(db) = &self.database_url {
            let db = db.expose_secret();
            if !(db.starts_with("sqlite:")
                || db.starts_with("postgres://")
                || db.starts_with("postgresql://"))
            {
                return Err(ConfigError::Invalid(
                    "database_url: must start with sqlite:// or postgres:// (the value is not shown because it may hold a password)".into(),
                ));
            }
        }
        self.web.validate()?;
        let t = &self.tokens;
        if t.refresh_margin_secs < 60 || t.refresh_margin_secs > 3000 {
            return Err(ConfigError::Invalid(
                "tokens.refresh_margin_secs: must be between 60 and 3000 (access tokens live about an hour)".into(),
            ));
        }
        if t.keep_warm_days == 0 || t.keep_warm_days > 60 {
            return Err(ConfigError::Invalid(
                "tokens.keep_warm_days: must be between 1 and 60 (Microsoft drops refresh tokens unused for 90 days)".into(),
            ));
        }
        if t.check_interval_secs == 0 || t.http_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "tokens.check_interval_secs and tokens.http_timeout_secs: must be more than 0"
                    .into(),
            ));
        }
        let c = &self.collector;
        if c.max_concurrent_passes.is_some_and(|n| n == 0 || n > 1024) {
            return Err(ConfigError::Invalid(
                "collector.max_concurrent_passes: must be between 1 and 1024 (the default is the number of CPUs)".into(),
            ));
        }
        if c.lease_ttl < Duration::from_secs(2) || c.lease_ttl > Duration::from_mins(30) {
            return Err(ConfigError::Invalid(
                "collector.lease_ttl: must be between 2s and 30m (the default is 60s)".into(),
            ));
        }
        if c.max_connections_per_account == 0 {
            return Err(ConfigError::Invalid(
                "collector.max_connections_per_account: must be at least 1".into(),
            ));
        }
        let k = &self.sink;
        if k.retry_cap < Duration::from_secs(1) || k.retry_cap > Duration::from_hours(24) {
            return Err(ConfigError::Invalid(
                "sink.retry_cap: must be between 1s and 24h (the default is 15m)".into(),
            ));
        }
        if k.max_outage < Duration::from_mins(1) {
            return Err(ConfigError::Invalid(
                "sink.max_outage: must be at least 1m (the default is 5d): a shorter outage would set mail aside during a restart of the receiving end".into(),
            ));
        }
        if let Some(url) = &self.notify.webhook_url {
            let loopback = url.host_str().is_some_and(|h| {
                h == "localhost"
                    || h.trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            });
            if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
                return Err(ConfigError::Invalid(format!(
                    "notify.webhook_url {url}: must be https (plain http only to this machine)"
                )));
            }
        }
        if self.log_level.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "log_level: must not be empty (try `info`)".into(),
            ));
        }
        Ok(())
    }

    /// The database URL, defaulting to `SQLite` in the data folder.
    pub fn database_url(&self) -> SecretString {
        self.database_url.clone().unwrap_or_else(|| {
            SecretString::from(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("oauthimap.db").display()
            ))
        })
    }

    /// The SQLite database file, when the database is SQLite (`None` for PostgreSQL and for
    /// in-memory databases).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let url = self.database_url();
        let url = url.expose_secret();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && !path.starts_with(":memory:")).then(|| PathBuf::from(path))
    }

    /// The key file path, defaulting to `master.key` in the data folder.
    pub fn key_file(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// The base URL the service is reached at: the configured external URL, else derived from the
    /// listen address (`http://localhost:PORT` for loopback).
    pub fn external_base_url(&self) -> Url {
        if let Some(url) = &self.external_base_url {
            return url.clone();
        }
        let host = if self.listen.ip().is_loopback() || self.listen.ip().is_unspecified() {
            "localhost".to_owned()
        } else {
            self.listen.ip().to_string()
        };
        Url::parse(&format!("http://{host}:{}/", self.listen.port()))
            .expect("a host and port always make a valid URL")
    }

    /// Things worth a warning found while loading (an `OAUTHIMAP_*` variable that looks like a
    /// misspelt setting).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether the external URL was set explicitly (required when the listener is not loopback).
    pub fn has_external_base_url(&self) -> bool {
        self.external_base_url.is_some()
    }
}

/// The broker's socket: `broker.socket`, else `{data_dir}/broker.sock`.
fn socket_path(broker: &BrokerSettings, data_dir: &Path) -> PathBuf {
    broker
        .socket
        .clone()
        .unwrap_or_else(|| data_dir.join("broker.sock"))
}

/// The process environment as text; a variable of ours that is not UTF-8 is ignored with a
/// warning (`std::env::vars` would panic on it).
fn process_env() -> (Vec<(String, String)>, Vec<String>) {
    let mut warnings = Vec::new();
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
        .filter_map(|(k, v)| {
            if let Ok(v) = v.into_string() {
                return Some((k, v));
            }
            if k.starts_with(ENV_PREFIX) {
                warnings.push(format!(
                    "the environment variable {k} is not UTF-8 text and is ignored"
                ));
            }
            None
        })
        .collect();
    (env, warnings)
}

/// Defaults, then the file (unless `/dev/null`), then the environment's settings; with the
/// warnings about the environment.
fn merged(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Figment, Vec<String>), ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Defaults::default()));
    // `/dev/null` means no file at all, not even the default one (as with `ssh -F /dev/null`).
    if let Some(path) = file.filter(|p| *p != Path::new("/dev/null")) {
        if !path.is_file() {
            return Err(ConfigError::Read {
                what: "the configuration file",
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        // Unreadable (a package's file for the service's group): say so, not as a TOML error.
        if let Err(source) = std::fs::File::open(path) {
            return Err(ConfigError::Read {
                what: "the configuration file",
                path: path.to_owned(),
                source,
            });
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let (ours, warnings) = settings_in(env);
    Ok((figment.merge(EnvVars(ours)), warnings))
}

/// Formats a figment error as "key `x` (from source): problem".
fn describe(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!("key `{}`", e.path.join("."))
            };
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(src) => format!("{} {src}", m.name),
                    None => m.name.to_string(),
                })
                .unwrap_or_default();
            let mut kind = e.kind.to_string();
            if let figment::error::Kind::UnknownField(field, _) = &e.kind {
                kind = format!("unknown setting `{field}` (check its spelling; `oauthimap --help` lists where settings are documented)");
            }
            match (key.is_empty(), source.is_empty()) {
                (false, false) => format!("{key} from {source}: {kind}"),
                (false, true) => format!("{key}: {kind}"),
                (true, false) => format!("{source}: {kind}"),
                (true, true) => kind,
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `OAUTHIMAP_*` variables that are settings, and a warning for each other one that is one
/// edit away from a setting (`OAUTHIMAP_DATABSE_URL`). The rest are ignored.
fn settings_in(
    env: impl IntoIterator<Item = (String, String)>,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut ours = Vec::new();
    let mut warnings = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = rest.to_ascii_lowercase();
        let file_of_setting = key
            .strip_suffix("_file")
            .is_some_and(|stem| SETTINGS.contains(&stem));
        if SETTINGS.contains(&key.as_str()) || file_of_setting {
            // `X_FILE` of a setting that cannot come from a file is kept, to be refused with
            // a clear error rather than ignored.
            ours.push((name, value));
        } else if let Some(near) = SETTINGS.iter().find(|s| one_edit_apart(s, &key)) {
            warnings.push(format!(
                "the environment variable {name} is not a setting and is ignored; did you mean {ENV_PREFIX}{}?",
                near.to_ascii_uppercase()
            ));
        }
    }
    (ours, warnings)
}

/// Whether `a` becomes `b` by one inserted, removed or replaced character, or two neighbours
/// swapped.
fn one_edit_apart(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a == b || a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[prefix..], &b[prefix..]);
    match a.len().cmp(&b.len()) {
        std::cmp::Ordering::Less => a == &b[1..],
        std::cmp::Ordering::Greater => &a[1..] == b,
        std::cmp::Ordering::Equal => {
            a[1..] == b[1..] || (a.len() >= 2 && a[0] == b[1] && a[1] == b[0] && a[2..] == b[2..])
        }
    }
}

/// `OAUTHIMAP_*` variables as a figment provider: the prefix is dropped, names are lower-cased and
/// `__` nests (`OAUTHIMAP_TOKENS__REFRESH_MARGIN` is `tokens.refresh_margin`).
struct EnvVars(Vec<(String, String)>);

impl figment::Provider for EnvVars {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment variable")
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (name, value) in &self.0 {
            let key = name[ENV_PREFIX.len()..].to_ascii_lowercase();
            let parts: Vec<&str> = key.split("__").collect();
            let parsed: Value = value.parse().unwrap_or_else(|_| Value::from(value.clone()));
            insert_nested(&mut root, &parts, parsed);
        }
        Ok(figment::Profile::Default.collect(root))
    }
}

fn insert_nested(dict: &mut Dict, parts: &[&str], value: Value) {
    match parts {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry((*first).to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_nested(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests;
