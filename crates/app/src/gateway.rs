//! The gateway's policy: per-client gateway passwords (random, shown once, stored
//! argon2id-hashed), the upstream server of an application or account, and the login check the
//! gateway's listeners ask for: password, protocol, expiry, the account's state, failed-login
//! throttling, then an upstream session opened with the account's OAuth token.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oauthimap_gateway::upstream::{UpstreamError, UpstreamTarget};
use oauthimap_gateway::{Backend, LoginRequest, Protocol, Refusal, Upstream};
use oauthimap_imap::{SessionConfig, connect_and_login};
use oauthimap_store::{GatewayPassword, Level, NewEvent};
use oauthimap_types::{AccountId, AccountState, FailureKind, Provider, Security, now_millis};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{AccountSelector, AppError, Core, Result};

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pop3: Option<UpstreamServer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    smtp: Option<UpstreamServer>,
}

impl Upstreams {
    fn get(&self, protocol: Protocol) -> Option<&UpstreamServer> {
        match protocol {
            Protocol::Imap => self.imap.as_ref(),
            Protocol::Pop3 => self.pop3.as_ref(),
            Protocol::Smtp => self.smtp.as_ref(),
        }
    }

    fn set(&mut self, protocol: Protocol, server: Option<UpstreamServer>) {
        match protocol {
            Protocol::Imap => self.imap = server,
            Protocol::Pop3 => self.pop3 = server,
            Protocol::Smtp => self.smtp = server,
        }
    }

    /// `None` when no protocol is overridden (the column goes back to NULL).
    fn to_json(&self) -> Option<String> {
        (self.imap.is_some() || self.pop3.is_some() || self.smtp.is_some())
            .then(|| serde_json::to_string(self).unwrap_or_else(|_| "{}".into()))
    }
}

/// The provider's own server for a protocol: host, port and security.
fn provider_server(
    provider: Provider,
    protocol: Protocol,
) -> Option<(&'static str, u16, Security)> {
    Some(match (provider, protocol) {
        (Provider::Microsoft, Protocol::Imap) => ("outlook.office365.com", 993, Security::Tls),
        (Provider::Microsoft, Protocol::Pop3) => ("outlook.office365.com", 995, Security::Tls),
        (Provider::Microsoft, Protocol::Smtp) => ("smtp.office365.com", 587, Security::StartTls),
        (Provider::Google, Protocol::Imap) => ("imap.gmail.com", 993, Security::Tls),
        (Provider::Google, Protocol::Pop3) => ("pop.gmail.com", 995, Security::Tls),
        (Provider::Google, Protocol::Smtp) => ("smtp.gmail.com", 587, Security::StartTls),
        (Provider::Generic, _) => return None,
    })
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

fn check_name(name: &str) -> Result<String> {
    crate::limits::name(name)
}

impl Core {
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
            .insert_gateway_password(account.id, &name, &hash, &protocols, expires_at)
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

    /// Sets (or with `None` clears) the server the gateway uses for one protocol of an
    /// application's or an account's mailboxes instead of the provider's own; the other
    /// protocols' settings stay.
    pub async fn set_upstream(
        &self,
        scope: &UpstreamScope,
        protocol: Protocol,
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
        let parse = |json: Option<String>| -> Upstreams {
            json.and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_default()
        };
        match scope {
            UpstreamScope::Application(name) => {
                let app = self.find_application(name).await?;
                let mut upstreams = parse(self.store().application_upstreams(app.id).await?);
                upstreams.set(protocol, server);
                self.store()
                    .set_application_upstreams(app.id, upstreams.to_json().as_deref())
                    .await?;
            }
            UpstreamScope::Account(selector) => {
                let account = self.find_account(selector).await?;
                let (own, _) = self.store().upstreams(account.id).await?;
                let mut upstreams = parse(own);
                upstreams.set(protocol, server);
                self.store()
                    .set_account_upstreams(account.id, upstreams.to_json().as_deref())
                    .await?;
            }
        }
        Ok(())
    }

    /// The server for one protocol of an account: its own override, its application's, or the
    /// provider's.
    pub async fn upstream(&self, account: AccountId, protocol: Protocol) -> Result<UpstreamServer> {
        let (own, application) = self.store().upstreams(account).await?;
        for json in [own, application].into_iter().flatten() {
            if let Ok(upstreams) = serde_json::from_str::<Upstreams>(&json)
                && let Some(s) = upstreams.get(protocol)
            {
                return Ok(s.clone());
            }
        }
        let a = self.store().account(account).await?;
        let app = self.store().application(a.application_id).await?;
        let Some((host, port, security)) = provider_server(app.fields.provider, protocol) else {
            return Err(AppError::Conflict(format!(
                "the application {} uses a generic provider, so the gateway does not know its {} server; \
                 set it with `oauthimap gateway upstream set --protocol {} --app {:?} --host HOST --port PORT`",
                app.fields.name,
                protocol.as_str().to_uppercase(),
                protocol.as_str(),
                app.fields.name
            )));
        };
        Ok(UpstreamServer {
            host: host.into(),
            port,
            security,
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
        let upstream = self.open_upstream(&record, &state, &request).await?;
        Ok(upstream.with_slot(slot))
    }

    /// Connects and logs in upstream; on failure the error, whether waiting may help, and
    /// whether the server refused the token.
    async fn connect_upstream(
        &self,
        server: &UpstreamServer,
        state: &oauthimap_store::Account,
        request: &LoginRequest,
    ) -> std::result::Result<Upstream, (String, FailureKind, bool)> {
        let tokens = self.tokens().source(state.id);
        match request.protocol {
            Protocol::Imap => {
                let mut config =
                    SessionConfig::new(&server.host, server.port, server.security, &state.mailbox);
                config.extra_ca_pem = server.ca_file.clone().map(Into::into);
                config.connect_timeout = request.upstream_timeout;
                config.io_timeout = request.upstream_timeout;
                connect_and_login(&config, &tokens)
                    .await
                    .map(|session| Upstream::Imap {
                        session,
                        slot: None,
                    })
                    .map_err(|e| (e.to_string(), e.kind(), false))
            }
            Protocol::Pop3 | Protocol::Smtp => {
                let target = UpstreamTarget {
                    host: server.host.clone(),
                    port: server.port,
                    security: server.security,
                    extra_ca: server.ca_file.clone().map(Into::into),
                    user: state.mailbox.clone(),
                    helo: request
                        .helo
                        .clone()
                        .unwrap_or_else(|| "oauthimap-gateway".into()),
                    timeout: request.upstream_timeout,
                };
                let logged_in = if request.protocol == Protocol::Pop3 {
                    oauthimap_gateway::upstream::pop3_login(&target, &tokens).await
                } else {
                    oauthimap_gateway::upstream::smtp_login(&target, &tokens).await
                };
                logged_in
                    .map(|session| Upstream::Line {
                        session,
                        slot: None,
                    })
                    .map_err(|e| {
                        let refused = matches!(e, UpstreamError::Refused { .. });
                        (e.to_string(), e.kind(), refused)
                    })
            }
        }
    }

    /// Opens the account's upstream session with OAuth for a checked gateway login.
    async fn open_upstream(
        &self,
        record: &GatewayPassword,
        state: &oauthimap_store::Account,
        request: &LoginRequest,
    ) -> std::result::Result<Upstream, Refusal> {
        let account = state.id;
        let (protocol, remote) = (request.protocol, request.remote);
        let server = self
            .upstream(account, protocol)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let started = Instant::now();
        let opened = self.connect_upstream(&server, state, request).await;
        metrics::histogram!(
            "oauthimap_gateway_upstream_login_seconds",
            "protocol" => protocol.as_str(),
            "result" => if opened.is_ok() { "ok" } else { "failed" }
        )
        .record(started.elapsed().as_secs_f64());
        let protocol = protocol.as_str();
        match opened {
            Ok(upstream) => {
                // Bookkeeping after the answer: the client does not wait for two writes.
                let app = self.clone();
                let (id, name, mailbox) = (record.id, record.name.clone(), state.mailbox.clone());
                tokio::spawn(async move {
                    if let Err(e) = app
                        .store()
                        .note_gateway_password_use(id, &remote.ip().to_string())
                        .await
                    {
                        tracing::warn!(error = %e, "cannot note the gateway login");
                    }
                    app.gateway_event(
                        account,
                        Level::Info,
                        "gateway.login",
                        format!("{protocol} login of {mailbox} with {name:?} from {remote}"),
                    )
                    .await;
                });
                Ok(upstream)
            }
            Err((error, kind, refused)) => {
                let needs_reauth = kind == FailureKind::Permanent
                    && self
                        .store()
                        .account(account)
                        .await
                        .is_ok_and(|a| a.state == AccountState::NeedsReauth);
                let hint = if refused && protocol == "smtp" {
                    smtp_refusal_hint(state)
                } else {
                    String::new()
                };
                self.gateway_event(
                    account,
                    if refused { Level::Error } else { Level::Warn },
                    "gateway.refused",
                    format!("{protocol} login of {} from {remote}: the upstream server refused or failed: {error}{hint}", state.mailbox),
                )
                .await;
                if needs_reauth {
                    Err(Refusal::NeedsReauth(format!(
                        "The mailbox {} must be signed in again at the provider by an oauthimap administrator",
                        state.mailbox
                    )))
                } else if refused {
                    Err(Refusal::Refused(format!(
                        "The mail server refused the OAuth login of {} for {}; an oauthimap administrator must check the account (see its events)",
                        state.mailbox,
                        protocol.to_uppercase()
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

/// What to check when a provider refuses SMTP with a token that IMAP takes.
pub(crate) fn smtp_refusal_hint(account: &oauthimap_store::Account) -> String {
    if account.scopes.to_ascii_lowercase().contains("smtp.send")
        || account.scopes.contains("https://mail.google.com/")
    {
        "; the token carries the SMTP scope, so check that SMTP AUTH is enabled for the mailbox \
         (Microsoft 365: Set-CASMailbox -SmtpClientAuthenticationDisabled $false)"
            .to_owned()
    } else {
        format!(
            "; the token lacks the SMTP scope (granted: {}): add https://outlook.office.com/SMTP.Send to the \
             application's scopes (`oauthimap app show` says how), then sign the mailbox in again",
            if account.scopes.is_empty() {
                "none recorded"
            } else {
                &account.scopes
            }
        )
    }
}

fn throttle_keys(ip: IpAddr, user: &str) -> Vec<String> {
    vec![format!("ip:{ip}"), format!("user:{}", user.to_lowercase())]
}

/// The gateway's view of the core.
#[derive(Debug, Clone)]
pub struct GatewayBackend(pub(crate) Core);

impl Backend for GatewayBackend {
    async fn login(&self, request: LoginRequest) -> std::result::Result<Upstream, Refusal> {
        self.0.gateway_login(request).await
    }
}

impl Core {
    /// The gateway's listeners as configured (`[gateway]`), or `None` when none is.
    pub fn gateway_config(&self) -> Result<Option<oauthimap_gateway::GatewayConfig>> {
        let g = &self.settings().gateway;
        let listeners = [
            ("gateway.imap_listen", g.imap_listen, false),
            ("gateway.imaps_listen", g.imaps_listen, true),
            ("gateway.pop3_listen", g.pop3_listen, false),
            ("gateway.pop3s_listen", g.pop3s_listen, true),
            ("gateway.submission_listen", g.submission_listen, false),
            ("gateway.submissions_listen", g.submissions_listen, true),
        ];
        if listeners.iter().all(|(_, addr, _)| addr.is_none()) {
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
        if tls.is_none()
            && let Some((name, _, _)) = listeners
                .iter()
                .find(|(_, addr, implicit_tls)| addr.is_some() && *implicit_tls)
        {
            return Err(AppError::invalid(
                name,
                format!(
                    "{name} is an implicit-TLS listener and needs a certificate: set gateway.tls_cert and gateway.tls_key (PEM files)"
                ),
            ));
        }
        let mut seen = std::collections::HashMap::new();
        for (name, addr, _) in &listeners {
            if let Some(addr) = addr
                && addr.port() != 0
                && let Some(other) = seen.insert(*addr, *name)
            {
                return Err(AppError::invalid(
                    name,
                    format!("{name} and {other} are both {addr}; give each listener its own port"),
                ));
            }
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
            pop3: g.pop3_listen,
            pop3s: g.pop3s_listen,
            submission: g.submission_listen,
            submissions: g.submissions_listen,
            tls,
            trusted_networks,
            max_sessions: g.max_sessions,
            login_timeout: Duration::from_secs(g.login_timeout_secs),
            upstream_timeout: Duration::from_secs(g.upstream_timeout_secs.max(1)),
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

impl Core {
    /// The gateway's listeners as clients reach them (empty when the gateway is off). An
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
        let loopback = |addr: std::net::SocketAddr, text: &'static str| {
            if addr.ip().is_loopback() { text } else { "" }
        };
        let listeners = [
            (g.imaps_listen, "IMAP, SSL (implicit TLS)", ""),
            (
                g.imap_listen,
                "IMAP, TLS (STARTTLS)",
                "IMAP, no SSL (loopback: GLPI on this host)",
            ),
            (g.pop3s_listen, "POP3, SSL (implicit TLS)", ""),
            (
                g.pop3_listen,
                "POP3, TLS (STLS)",
                "POP3, no SSL (loopback: a client on this host)",
            ),
            (
                g.submissions_listen,
                "SMTP submission, SSL (implicit TLS)",
                "",
            ),
            (
                g.submission_listen,
                "SMTP submission, STARTTLS",
                "SMTP submission, no TLS (loopback: a client on this host)",
            ),
        ];
        let mut endpoints = Vec::new();
        for (addr, security, on_loopback) in listeners {
            let Some(addr) = addr else { continue };
            let local = loopback(addr, on_loopback);
            endpoints.push(GatewayEndpoint {
                host: host(addr),
                port: addr.port(),
                security: if local.is_empty() { security } else { local },
            });
        }
        endpoints
    }
}

/// One configured gateway listener and whether it answers now.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerStatus {
    /// `imap`, `imaps`, `pop3`, `pop3s`, `submission` or `submissions`.
    pub name: &'static str,
    pub addr: std::net::SocketAddr,
    /// `accepting`, with the greeting for the plain listeners, or why not.
    pub state: String,
}

/// What `oauthimap gateway status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayStatus {
    pub listeners: Vec<ListenerStatus>,
    /// Open sessions per protocol, as the running service reports them on `/metrics`; `None`
    /// when the service cannot be reached from here.
    pub sessions: Option<Vec<(String, u64)>>,
    pub passwords: Vec<GatewayPassword>,
}

impl Core {
    /// The configured listeners (each probed), the running service's open sessions and every
    /// gateway password with its last use.
    pub async fn gateway_status(&self) -> Result<GatewayStatus> {
        let g = &self.settings().gateway;
        let configured = [
            ("imap", g.imap_listen, false),
            ("imaps", g.imaps_listen, true),
            ("pop3", g.pop3_listen, false),
            ("pop3s", g.pop3s_listen, true),
            ("submission", g.submission_listen, false),
            ("submissions", g.submissions_listen, true),
        ];
        let mut listeners = Vec::new();
        for (name, addr, implicit_tls) in configured {
            let Some(addr) = addr else { continue };
            listeners.push(ListenerStatus {
                name,
                addr,
                state: probe(reachable(addr), implicit_tls).await,
            });
        }
        let sessions = self.service_sessions().await;
        Ok(GatewayStatus {
            listeners,
            sessions,
            passwords: self.gateway_passwords(None).await?,
        })
    }

    /// `oauthimap_gateway_sessions` from the running service's `/metrics`.
    async fn service_sessions(&self) -> Option<Vec<(String, u64)>> {
        let url = format!("http://{}/metrics", reachable(self.settings().listen));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .ok()?;
        let mut request = client.get(url);
        if let Ok(Some(token)) = self.metrics_token() {
            request = request.bearer_auth(token.expose_secret());
        }
        let text = request.send().await.ok()?.text().await.ok()?;
        let mut sessions = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("oauthimap_gateway_sessions{protocol=\"") else {
                continue;
            };
            let Some((protocol, value)) = rest.split_once("\"}") else {
                continue;
            };
            // Rendered as a float (`3` or `3.0`); a session count is whole.
            let count = value
                .trim()
                .split('.')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            sessions.push((protocol.to_owned(), count));
        }
        Some(sessions)
    }
}

/// Where to reach a listener from this host: an unspecified address through loopback.
fn reachable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, addr.port())
}

/// Connects and, on a plain listener, reads the greeting.
async fn probe(addr: std::net::SocketAddr, implicit_tls: bool) -> String {
    use tokio::io::AsyncReadExt as _;
    let connect = tokio::net::TcpStream::connect(addr);
    let mut tcp = match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return format!("not listening ({e}): is `oauthimap serve` running?"),
        Err(_) => return "no answer within 3 s".into(),
    };
    if implicit_tls {
        return "accepting (TLS)".into();
    }
    let mut buf = [0u8; 512];
    match tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => {
            let greeting = String::from_utf8_lossy(&buf[..n]);
            let first = greeting.lines().next().unwrap_or_default();
            format!("accepting: {}", first.chars().take(80).collect::<String>())
        }
        _ => "accepting, but no greeting".into(),
    }
}
