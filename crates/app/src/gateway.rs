//! The gateway's policy: per-client gateway passwords (random, shown once, stored
//! argon2id-hashed), the upstream server of an application or account, and the login check the
//! gateway's listeners ask for: password, protocol, expiry, the account's state, failed-login
//! throttling, then an upstream session opened with the account's OAuth token.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oauthimap_gateway::{Backend, LoginRequest, Refusal, Upstream};
use oauthimap_imap::{SessionConfig, connect_and_login};
use oauthimap_store::{GatewayPassword, Level, NewEvent};
use oauthimap_types::{AccountId, AccountState, FailureKind, Provider, Security, now_millis};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{AccountSelector, App, AppError, Result};

/// The protocols a gateway password may be for.
pub const GATEWAY_PROTOCOLS: &[&str] = &["imap", "pop3", "smtp"];
/// Failed logins from one address or for one name before further tries wait.
const THROTTLE_AFTER: u32 = 10;
/// How long failures are remembered.
const THROTTLE_WINDOW: Duration = Duration::from_mins(15);
/// How long a verified password is remembered (so a client logging in every minute does not pay
/// an argon2id verification each time).
const VERIFIED_FOR: Duration = Duration::from_mins(10);

/// A server the gateway (and diagnostics) connect to instead of the provider's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamServer {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// An extra CA (PEM file) to trust for this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// Overrides per protocol.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Upstreams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    imap: Option<UpstreamServer>,
}

/// Where an upstream override applies.
#[derive(Debug, Clone)]
pub enum UpstreamScope {
    Application(String),
    Account(AccountSelector),
}

/// What the gateway remembers between logins: failures, and passwords verified lately.
#[derive(Debug, Default)]
pub(crate) struct GatewayState {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    /// SHA-256 of (this process's random pepper, password id, password) → when verified.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    pepper: [u8; 32],
}

impl GatewayState {
    pub(crate) fn new() -> Self {
        let mut pepper = [0u8; 32];
        let _ = getrandom::fill(&mut pepper);
        Self {
            pepper,
            ..Self::default()
        }
    }

    fn throttled(&self, keys: &[String]) -> bool {
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.iter().any(|k| {
            failures
                .get(k)
                .is_some_and(|(n, at)| *n >= THROTTLE_AFTER && at.elapsed() < THROTTLE_WINDOW)
        })
    }

    fn failed(&self, keys: &[String]) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        failures.retain(|_, (_, at)| at.elapsed() < THROTTLE_WINDOW);
        for k in keys {
            let entry = failures.entry(k.clone()).or_insert((0, Instant::now()));
            entry.0 += 1;
            entry.1 = Instant::now();
        }
    }

    fn succeeded(&self, keys: &[String]) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for k in keys {
            failures.remove(k);
        }
    }

    fn fingerprint(&self, id: i64, password: &SecretString) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.pepper);
        h.update(id.to_le_bytes());
        h.update(password.expose_secret().as_bytes());
        h.finalize().into()
    }

    fn recently_verified(&self, fingerprint: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(fingerprint)
            .is_some_and(|at| at.elapsed() < VERIFIED_FOR)
    }

    fn remember(&self, fingerprint: [u8; 32]) {
        let mut verified = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        verified.retain(|_, at| at.elapsed() < VERIFIED_FOR);
        verified.insert(fingerprint, Instant::now());
    }
}

fn parse_protocols(protocols: &[String]) -> Result<String> {
    if protocols.is_empty() {
        return Ok(GATEWAY_PROTOCOLS.join(" "));
    }
    let mut chosen = Vec::new();
    for p in protocols {
        let p = p.trim().to_ascii_lowercase();
        if !GATEWAY_PROTOCOLS.contains(&p.as_str()) {
            return Err(AppError::invalid(
                "protocols",
                format!("{p:?} is not a gateway protocol: use imap, pop3 or smtp"),
            ));
        }
        if !chosen.contains(&p) {
            chosen.push(p);
        }
    }
    Ok(chosen.join(" "))
}

fn check_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::invalid(
            "name",
            "must be 1 to 100 characters, such as glpi or scanner-2nd-floor",
        ));
    }
    if name.parse::<i64>().is_ok() || name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name",
            "must not be a number or hold control characters",
        ));
    }
    Ok(name)
}

impl App {
    /// Creates a gateway password for an account; the password is returned once and only its
    /// argon2id hash is kept.
    pub async fn add_gateway_password(
        &self,
        account: &AccountSelector,
        name: &str,
        protocols: &[String],
        expires_at: Option<i64>,
    ) -> Result<(GatewayPassword, SecretString)> {
        let name = check_name(name)?;
        let protocols = parse_protocols(protocols)?;
        if expires_at.is_some_and(|e| e <= now_millis()) {
            return Err(AppError::invalid("expires", "lies in the past"));
        }
        let account = self.find_account(account).await?;
        let password = SecretString::from(crate::api_tokens::random_token(24)?);
        let hash = crate::admins::hash_password(&password).await?;
        let record = self
            .store()
            .insert_gateway_password(account.id, name, &hash, &protocols, expires_at)
            .await?;
        self.gateway_event(
            account.id,
            Level::Info,
            "gateway.password_added",
            format!(
                "gateway password {name:?} added for {} ({protocols})",
                account.mailbox
            ),
        )
        .await;
        Ok((record, password))
    }

    /// Gateway passwords, of one account or all.
    pub async fn gateway_passwords(
        &self,
        account: Option<&AccountSelector>,
    ) -> Result<Vec<GatewayPassword>> {
        let id = match account {
            Some(a) => Some(self.find_account(a).await?.id),
            None => None,
        };
        Ok(self.store().gateway_passwords(id).await?)
    }

    /// Revokes a gateway password: the next login with it fails.
    pub async fn remove_gateway_password(
        &self,
        account: &AccountSelector,
        name: &str,
    ) -> Result<GatewayPassword> {
        let account = self.find_account(account).await?;
        let found = self
            .store()
            .gateway_passwords(Some(account.id))
            .await?
            .into_iter()
            .find(|p| p.name == name.trim())
            .ok_or_else(|| AppError::NotFound {
                what: "gateway password",
                key: name.to_owned(),
                hint: format!(
                    " for {}; `oauthimap gateway password list` shows them",
                    account.mailbox
                ),
            })?;
        self.store().delete_gateway_password(found.id).await?;
        self.gateway_event(
            account.id,
            Level::Info,
            "gateway.password_removed",
            format!(
                "gateway password {:?} of {} removed",
                found.name, account.mailbox
            ),
        )
        .await;
        Ok(found)
    }

    /// Sets (or with `None` clears) the IMAP server the gateway uses for an application or an
    /// account instead of the provider's own.
    pub async fn set_imap_upstream(
        &self,
        scope: &UpstreamScope,
        server: Option<UpstreamServer>,
    ) -> Result<()> {
        if let Some(s) = &server {
            if s.host.trim().is_empty() || s.port == 0 {
                return Err(AppError::invalid("host", "needs a host name and a port"));
            }
            if let Some(ca) = &s.ca_file
                && !std::path::Path::new(ca).is_file()
            {
                return Err(AppError::invalid(
                    "ca_file",
                    format!("{ca} is not a readable file"),
                ));
            }
        }
        let json = server.map(|imap| {
            serde_json::to_string(&Upstreams { imap: Some(imap) }).unwrap_or_else(|_| "{}".into())
        });
        match scope {
            UpstreamScope::Application(name) => {
                let app = self.find_application(name).await?;
                self.store()
                    .set_application_upstreams(app.id, json.as_deref())
                    .await?;
            }
            UpstreamScope::Account(selector) => {
                let account = self.find_account(selector).await?;
                self.store()
                    .set_account_upstreams(account.id, json.as_deref())
                    .await?;
            }
        }
        Ok(())
    }

    /// The IMAP server for an account: its own override, its application's, or the provider's.
    pub async fn imap_upstream(&self, account: AccountId) -> Result<UpstreamServer> {
        let (own, application) = self.store().upstreams(account).await?;
        for json in [own, application].into_iter().flatten() {
            if let Ok(Upstreams { imap: Some(s) }) = serde_json::from_str(&json) {
                return Ok(s);
            }
        }
        let a = self.store().account(account).await?;
        let app = self.store().application(a.application_id).await?;
        let host = match app.fields.provider {
            Provider::Microsoft => "outlook.office365.com",
            Provider::Google => "imap.gmail.com",
            Provider::Generic => {
                return Err(AppError::Conflict(format!(
                    "the application {} uses a generic provider, so the gateway does not know its IMAP server; \
                     set it with `oauthimap gateway upstream set --app {:?} --host HOST --port 993`",
                    app.fields.name, app.fields.name
                )));
            }
        };
        Ok(UpstreamServer {
            host: host.into(),
            port: 993,
            security: Security::Tls,
            ca_file: None,
        })
    }

    async fn gateway_event(
        &self,
        account: AccountId,
        level: Level,
        kind: &'static str,
        message: String,
    ) {
        let application_id = self
            .store()
            .account(account)
            .await
            .ok()
            .map(|a| a.application_id);
        let event = NewEvent {
            level,
            kind,
            application_id,
            account_id: Some(account),
            receiver_id: None,
            message,
        };
        if let Err(e) = self.store().record_event(&event).await {
            tracing::warn!(error = %e, kind, "cannot record the event");
        }
    }

    /// The gateway password `password` is, among the logins of `user`, if any. Takes as long
    /// for an unknown user as for a known one (a dummy hash is verified).
    async fn match_gateway_password(
        &self,
        user: &str,
        password: &SecretString,
    ) -> Result<Option<GatewayPassword>> {
        let candidates = self.store().gateway_login_candidates(user).await?;
        if candidates.is_empty() {
            crate::admins::verify_dummy(password).await;
            return Ok(None);
        }
        for (record, hash) in candidates {
            let fingerprint = self.gateway.fingerprint(record.id, password);
            if self.gateway.recently_verified(&fingerprint)
                || crate::admins::verify_password(password, hash).await
            {
                self.gateway.remember(fingerprint);
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// Checks a gateway login and opens the upstream session.
    async fn gateway_login(&self, request: LoginRequest) -> std::result::Result<Upstream, Refusal> {
        let protocol = request.protocol.as_str();
        let remote = request.remote;
        let keys = throttle_keys(remote.ip(), &request.user);
        if self.gateway.throttled(&keys) {
            return Err(Refusal::Throttled);
        }
        let found = self
            .match_gateway_password(&request.user, &request.password)
            .await
            .map_err(|e| Refusal::Unavailable(format!("cannot check the login: {e}")))?;
        let now = now_millis();
        let Some(record) =
            found.filter(|r| r.allows(protocol) && r.expires_at.is_none_or(|e| e > now))
        else {
            self.gateway.failed(&keys);
            tracing::info!(%remote, protocol, user = %request.user, "gateway login refused");
            return Err(Refusal::BadCredentials);
        };
        self.gateway.succeeded(&keys);
        let account = AccountId(record.account_id);
        let state = self
            .store()
            .account(account)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        if state.state == AccountState::NeedsReauth {
            let message = format!(
                "The mailbox {} must be signed in again at the provider by an oauthimap administrator",
                state.mailbox
            );
            self.gateway_event(
                account,
                Level::Error,
                "gateway.refused",
                format!(
                    "{protocol} login of {:?} from {remote} refused: {} needs a new sign-in",
                    record.name, state.mailbox
                ),
            )
            .await;
            return Err(Refusal::NeedsReauth(message));
        }
        let Some(slot) = self
            .collector()
            .try_connection_slot(state.application_id, account)
            .await
        else {
            self.gateway_event(
                account,
                Level::Warn,
                "gateway.refused",
                format!("{protocol} login of {} from {remote}: every connection the provider allows for this mailbox is in use", state.mailbox),
            )
            .await;
            return Err(Refusal::Limit(format!(
                "Every connection the provider allows for {} is in use (receivers and gateway sessions together); try again later",
                state.mailbox
            )));
        };
        let upstream = self
            .open_upstream(&record, &state, (protocol, remote))
            .await?;
        match upstream {
            Upstream::Imap { session, .. } => Ok(Upstream::Imap {
                session,
                slot: Some(slot),
            }),
        }
    }

    /// Opens the account's upstream session with OAuth for a checked gateway login.
    async fn open_upstream(
        &self,
        record: &GatewayPassword,
        state: &oauthimap_store::Account,
        (protocol, remote): (&str, std::net::SocketAddr),
    ) -> std::result::Result<Upstream, Refusal> {
        let account = state.id;
        let server = self
            .imap_upstream(account)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let mut config =
            SessionConfig::new(&server.host, server.port, server.security, &state.mailbox);
        config.extra_ca_pem = server.ca_file.clone().map(Into::into);
        match connect_and_login(&config, &self.tokens().source(account)).await {
            Ok(session) => {
                if let Err(e) = self
                    .store()
                    .note_gateway_password_use(record.id, &remote.ip().to_string())
                    .await
                {
                    tracing::warn!(error = %e, "cannot note the gateway login");
                }
                self.gateway_event(
                    account,
                    Level::Info,
                    "gateway.login",
                    format!(
                        "{protocol} login of {} with {:?} from {remote}",
                        state.mailbox, record.name
                    ),
                )
                .await;
                Ok(Upstream::Imap {
                    session,
                    slot: None,
                })
            }
            Err(e) => {
                self.gateway_event(
                    account,
                    Level::Warn,
                    "gateway.refused",
                    format!("{protocol} login of {} from {remote}: the upstream server refused or failed: {e}", state.mailbox),
                )
                .await;
                let needs_reauth = e.kind() == FailureKind::Permanent
                    && self
                        .store()
                        .account(account)
                        .await
                        .is_ok_and(|a| a.state == AccountState::NeedsReauth);
                if needs_reauth {
                    Err(Refusal::NeedsReauth(format!(
                        "The mailbox {} must be signed in again at the provider by an oauthimap administrator",
                        state.mailbox
                    )))
                } else {
                    Err(Refusal::Unavailable(
                        "The mail server cannot be reached or refused the session right now; try again later".into(),
                    ))
                }
            }
        }
    }
}

fn throttle_keys(ip: IpAddr, user: &str) -> Vec<String> {
    vec![format!("ip:{ip}"), format!("user:{}", user.to_lowercase())]
}

/// The gateway's view of the core.
#[derive(Debug, Clone)]
pub struct GatewayBackend(pub(crate) App);

impl Backend for GatewayBackend {
    async fn login(&self, request: LoginRequest) -> std::result::Result<Upstream, Refusal> {
        self.0.gateway_login(request).await
    }
}

impl App {
    /// The gateway's listeners as configured (`[gateway]`), or `None` when none is.
    pub fn gateway_config(&self) -> Result<Option<oauthimap_gateway::GatewayConfig>> {
        let g = &self.settings().gateway;
        if g.imap_listen.is_none() && g.imaps_listen.is_none() {
            return Ok(None);
        }
        let tls = match (&g.tls_cert, &g.tls_key) {
            (Some(cert), Some(key)) => Some(oauthimap_gateway::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err(AppError::invalid(
                    "gateway.tls_cert",
                    "gateway.tls_cert and gateway.tls_key go together",
                ));
            }
        };
        if g.imaps_listen.is_some() && tls.is_none() {
            return Err(AppError::invalid(
                "gateway.imaps_listen",
                "IMAPS needs a certificate: set gateway.tls_cert and gateway.tls_key (PEM files)",
            ));
        }
        let trusted_networks = g
            .trusted_networks
            .iter()
            .map(|n| n.parse::<oauthimap_gateway::Network>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| AppError::invalid("gateway.trusted_networks", e.to_string()))?;
        Ok(Some(oauthimap_gateway::GatewayConfig {
            imap: g.imap_listen,
            imaps: g.imaps_listen,
            tls,
            trusted_networks,
            max_sessions: g.max_sessions,
            login_timeout: Duration::from_secs(g.login_timeout_secs),
        }))
    }

    /// Runs the gateway's listeners until `stop` turns true (`serve` does this when
    /// `[gateway]` configures any).
    pub async fn serve_gateway(
        &self,
        config: oauthimap_gateway::GatewayConfig,
        bound: impl FnOnce(&[(String, std::net::SocketAddr)]),
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<()> {
        oauthimap_gateway::serve(config, Arc::new(GatewayBackend(self.clone())), bound, stop)
            .await
            .map_err(|e| AppError::Io {
                action: "run the gateway".into(),
                source: std::io::Error::other(e.to_string()),
            })
    }
}

/// Where a client reaches the gateway, as a GLPI admin types it into a mail receiver.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayEndpoint {
    pub host: String,
    pub port: u16,
    /// How GLPI's "Connection options" say it: `IMAP, SSL` or `IMAP, no SSL`.
    pub security: &'static str,
}

impl App {
    /// The gateway's IMAP listeners as clients reach them (empty when the gateway is off). An
    /// unspecified listen address is shown as the host of `external_base_url`.
    pub fn gateway_endpoints(&self) -> Vec<GatewayEndpoint> {
        let g = &self.settings().gateway;
        let public = self
            .settings()
            .external_base_url()
            .host_str()
            .unwrap_or("localhost")
            .to_owned();
        let host = |addr: std::net::SocketAddr| {
            if addr.ip().is_unspecified() {
                public.clone()
            } else {
                addr.ip().to_string()
            }
        };
        let mut endpoints = Vec::new();
        if let Some(addr) = g.imaps_listen {
            endpoints.push(GatewayEndpoint {
                host: host(addr),
                port: addr.port(),
                security: "IMAP, SSL (implicit TLS)",
            });
        }
        if let Some(addr) = g.imap_listen {
            endpoints.push(GatewayEndpoint {
                host: host(addr),
                port: addr.port(),
                security: if addr.ip().is_loopback() {
                    "IMAP, no SSL (loopback: GLPI on this host)"
                } else {
                    "IMAP, TLS (STARTTLS)"
                },
            });
        }
        endpoints
    }
}
