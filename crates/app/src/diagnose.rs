//! The login diagnostic: every step from DNS to folder selection for one account, each with its
//! outcome and a hint for the failures admins meet, plus the protocol transcript with every token
//! and SASL string redacted. The token itself never appears: only its expiry and the claims that
//! explain a refusal (`aud`, `scp`/`roles`, `tid`, `upn`).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use oauthimap_imap::{ImapError, MailSession as _, SessionConfig, Transcript, connect_and_login};
use oauthimap_store::Account;
use oauthimap_types::{GrantKind, Mechanism, Provider, Security, now_millis};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::applications::profile_of;
use crate::{AccountSelector, AppError, Core, Result};

/// What to check; `None` takes the account's receiver, then the provider's defaults.
#[derive(Debug, Clone, Default)]
pub struct DiagnoseOptions {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Option<Security>,
    pub mechanism: Option<Mechanism>,
    pub folder: Option<String>,
    pub ca_file: Option<String>,
    pub timeout: Option<Duration>,
    /// Also log in to the account's SMTP server as the gateway would (done anyway when the
    /// gateway's SMTP submission is configured).
    pub smtp: bool,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Warning,
    Failed,
    Skipped,
}

/// One step of the diagnostic.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub elapsed_ms: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct DiagnosticReport {
    pub account_id: i64,
    pub mailbox: String,
    pub server: String,
    pub security: Security,
    pub ok: bool,
    pub steps: Vec<Step>,
    /// The protocol exchange, tokens and SASL strings redacted.
    pub transcript: Vec<String>,
}

struct Steps(Vec<Step>);

impl Steps {
    fn push(
        &mut self,
        name: &'static str,
        outcome: Outcome,
        detail: String,
        hint: Option<String>,
        since: Instant,
    ) {
        self.0.push(Step {
            name,
            outcome,
            detail,
            hint,
            elapsed_ms: u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }

    /// The token step looked at the token's own expiry and claims; when the server then refuses
    /// the login, that verdict counts: the step never stays "ok" for a token the server refused.
    fn server_verdict_on_token(&mut self, e: &ImapError) {
        let verdict = match e {
            ImapError::Token { .. } => (
                Outcome::Failed,
                "the server refused it, and a fresh one too: revoked at the provider, or not for this mailbox",
            ),
            ImapError::AuthenticationFailed { .. } => (
                Outcome::Warning,
                "not confirmed: the server refused the login that used it",
            ),
            _ => return,
        };
        if let Some(token) = self
            .0
            .iter_mut()
            .find(|s| s.name == "token" && s.outcome == Outcome::Ok)
        {
            token.outcome = verdict.0;
            token.detail = format!("{} (the token itself: {})", verdict.1, token.detail);
        }
    }

    /// A step whose time was measured apart from the others.
    /// Adds a hint to the step pushed last.
    fn hint_last(&mut self, hint: String) {
        if let Some(last) = self.0.last_mut() {
            last.hint = Some(hint);
        }
    }

    fn push_timed(
        &mut self,
        name: &'static str,
        outcome: Outcome,
        detail: String,
        elapsed: std::time::Duration,
    ) {
        self.0.push(Step {
            name,
            outcome,
            detail,
            hint: None,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        });
    }

    fn skip_rest(&mut self, names: &[&'static str]) {
        for name in names {
            self.0.push(Step {
                name,
                outcome: Outcome::Skipped,
                detail: "skipped after the failure above".into(),
                hint: None,
                elapsed_ms: 0,
            });
        }
    }
}

/// What the token's claims say, and what looks wrong for IMAP.
fn describe_token(
    account: &Account,
    provider: Provider,
    token: &str,
    expires_at: i64,
) -> (String, Outcome, Option<String>) {
    let minutes = (expires_at - now_millis()) / 60_000;
    let mut detail = format!("expires in {minutes} minute(s)");
    let Some(claims) = oauthimap_oauth::jwt_claims(token) else {
        detail.push_str("; an opaque token (its claims cannot be read; normal for Google)");
        return (detail, Outcome::Ok, None);
    };
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let aud = text("aud").unwrap_or_default();
    let scp = text("scp").unwrap_or_default();
    let roles: Vec<String> = claims
        .get("roles")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let upn = text("upn")
        .or_else(|| text("unique_name"))
        .or_else(|| text("preferred_username"));
    let _ = write!(detail, "; aud={aud}");
    if !scp.is_empty() {
        let _ = write!(detail, " scp=\"{scp}\"");
    }
    if !roles.is_empty() {
        let _ = write!(detail, " roles={roles:?}");
    }
    if let Some(tid) = text("tid") {
        let _ = write!(detail, " tid={tid}");
    }
    if let Some(upn) = &upn {
        let _ = write!(detail, " upn={upn}");
    }
    if provider != Provider::Microsoft {
        return (detail, Outcome::Ok, None);
    }
    let audience_ok = aud.starts_with("https://outlook.office")
        || aud.starts_with("https://outlook-dod")
        || aud.starts_with("https://partner.outlook.cn")
        || aud == "00000002-0000-0ff1-ce00-000000000000";
    if !audience_ok {
        return (
            detail,
            Outcome::Warning,
            Some(format!(
                "the token is for {aud}, not for Exchange Online: the IMAP scope must carry the Outlook prefix \
                 (https://outlook.office.com/IMAP.AccessAsUser.All), not Microsoft Graph's; never mix Graph scopes in"
            )),
        );
    }
    if account.grant_kind == GrantKind::ClientCredentials {
        if !roles.iter().any(|r| r == "IMAP.AccessAsApp") {
            return (
                detail,
                Outcome::Warning,
                Some("the app-only token has no IMAP.AccessAsApp role: add that Application permission of Office 365 Exchange Online and grant admin consent".into()),
            );
        }
    } else if !scp
        .split_whitespace()
        .any(|s| s.eq_ignore_ascii_case("IMAP.AccessAsUser.All"))
    {
        return (
            detail,
            Outcome::Warning,
            Some("the token lacks IMAP.AccessAsUser.All: add the delegated permission and authorize again".into()),
        );
    }
    if let Some(upn) = upn.filter(|u| !u.eq_ignore_ascii_case(&account.mailbox)) {
        let _ = write!(
            detail,
            "; logging in to {} as {upn} (needs FullAccess on that mailbox)",
            account.mailbox
        );
    }
    (detail, Outcome::Ok, None)
}

/// A hint for an IMAP failure, where one is known.
fn imap_hint(e: &ImapError, account: &Account) -> Option<String> {
    let text = e.to_string();
    if text.contains("User is authenticated but not connected") {
        return Some(format!(
            "the token's user has no access to {}: grant FullAccess on that mailbox (Add-MailboxPermission), or log in as the mailbox itself",
            account.mailbox
        ));
    }
    match e {
        ImapError::AuthenticationFailed { .. } if account.grant_kind == GrantKind::ClientCredentials => Some(
            "app-only logins also need the Exchange service principal and mailbox permission: run the New-ServicePrincipal and Add-MailboxPermission commands `oauthimap app show` prints, then wait up to an hour".into(),
        ),
        ImapError::AuthenticationFailed { .. } => Some(
            "check that IMAP is enabled for the mailbox (Set-CASMailbox -ImapEnabled $true; Gmail: IMAP access on) and that the account was authorized with the IMAP scope".into(),
        ),
        ImapError::Token { .. } => Some(format!(
            "the server refused the token and the provider gave no new one: authorize the account again \
             (oauthimap account authorize --app {:?})",
            account.application_name
        )),
        ImapError::AuthenticationUnavailable { .. } => Some("the server could not check the token right now: try again in a few minutes".into()),
        ImapError::UntrustedCertificate { .. } => Some(
            "if this is your own server, give its issuing CA certificate with --ca-file (the receiver's extra CA option)".into(),
        ),
        ImapError::Resolve { .. } => Some("check the host name (outlook.office365.com, imap.gmail.com)".into()),
        ImapError::Connect { .. } | ImapError::Timeout { .. } => {
            Some("check that outbound connections to this port are allowed by firewalls and proxies".into())
        }
        _ => None,
    }
}

fn step_of(e: &ImapError) -> &'static str {
    match e {
        ImapError::Resolve { .. } => "dns",
        ImapError::Connect { .. } => "tcp",
        ImapError::PlaintextRefused { .. }
        | ImapError::StartTlsNotOffered { .. }
        | ImapError::UntrustedCertificate { .. }
        | ImapError::Tls { .. }
        | ImapError::ExtraCa { .. } => "tls",
        ImapError::Token { .. }
        | ImapError::NoMechanism { .. }
        | ImapError::AuthenticationFailed { .. }
        | ImapError::AuthenticationUnavailable { .. } => "authentication",
        _ => "session",
    }
}

/// Where and how to connect, resolved from options, the account's receiver and the provider.
struct Target {
    host: String,
    port: u16,
    security: Security,
    mechanism: Mechanism,
    folder: String,
    ca_file: Option<String>,
    timeout: Duration,
}

/// One run: the steps so far and the transcript.
struct Run {
    steps: Steps,
    transcript: Transcript,
}

impl Run {
    fn report(self, account: &Account, t: &Target) -> DiagnosticReport {
        DiagnosticReport {
            account_id: account.id.0,
            mailbox: account.mailbox.clone(),
            server: format!("{}:{}", t.host, t.port),
            security: t.security,
            ok: self
                .steps
                .0
                .iter()
                .all(|s| matches!(s.outcome, Outcome::Ok | Outcome::Warning)),
            transcript: self
                .transcript
                .render()
                .lines()
                .map(str::to_owned)
                .collect(),
            steps: self.steps.0,
        }
    }

    /// DNS then TCP; false when a step failed (the rest is marked skipped).
    async fn network(&mut self, t: &Target) -> bool {
        let started = Instant::now();
        let lookup = tokio::time::timeout(
            t.timeout,
            tokio::net::lookup_host((t.host.as_str(), t.port)),
        )
        .await;
        let addresses: Vec<std::net::SocketAddr> = match lookup {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                let detail = format!("cannot resolve {}: {e}", t.host);
                self.steps.push(
                    "dns",
                    Outcome::Failed,
                    detail,
                    Some("check the host name".into()),
                    started,
                );
                self.steps
                    .skip_rest(&["tcp", "tls", "authentication", "folder"]);
                return false;
            }
            Err(_) => {
                let detail = format!("no answer for {} within {}s", t.host, t.timeout.as_secs());
                self.steps
                    .push("dns", Outcome::Failed, detail, None, started);
                self.steps
                    .skip_rest(&["tcp", "tls", "authentication", "folder"]);
                return false;
            }
        };
        let listed: Vec<String> = addresses.iter().map(|a| a.ip().to_string()).collect();
        self.steps.push(
            "dns",
            Outcome::Ok,
            format!("{} is {}", t.host, listed.join(", ")),
            None,
            started,
        );
        let started = Instant::now();
        let hint = Some(
            "check that firewalls and proxies allow outbound connections to this port".to_owned(),
        );
        match tokio::time::timeout(
            t.timeout,
            tokio::net::TcpStream::connect(addresses.as_slice()),
        )
        .await
        {
            Ok(Ok(stream)) => {
                let peer = stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                self.steps.push(
                    "tcp",
                    Outcome::Ok,
                    format!("connected to {peer}"),
                    None,
                    started,
                );
                true
            }
            Ok(Err(e)) => {
                let detail = format!("cannot connect to {}:{}: {e}", t.host, t.port);
                self.steps
                    .push("tcp", Outcome::Failed, detail, hint, started);
                self.steps.skip_rest(&["tls", "authentication", "folder"]);
                false
            }
            Err(_) => {
                let detail = format!(
                    "no connection to {}:{} within {}s",
                    t.host,
                    t.port,
                    t.timeout.as_secs()
                );
                self.steps
                    .push("tcp", Outcome::Failed, detail, hint, started);
                self.steps.skip_rest(&["tls", "authentication", "folder"]);
                false
            }
        }
    }

    /// The session could not be opened or logged in: the steps before the failure passed, the
    /// failing one says why, the rest are skipped. Each step its own time, as on success: the
    /// handshake for TLS (when one was made), the rest for the step that failed.
    fn login_failed(&mut self, e: &ImapError, account: &Account, started: Instant) {
        let order = ["tls", "authentication", "folder"];
        let position = order
            .iter()
            .position(|s| *s == step_of(e))
            .unwrap_or(1)
            .min(1);
        let handshake = self.transcript.tls_handshake().unwrap_or_default();
        let total = started.elapsed();
        for done in &order[..position] {
            self.steps
                .push_timed(done, Outcome::Ok, "passed".into(), handshake);
        }
        self.steps.server_verdict_on_token(e);
        let spent = if position > 0 {
            total.saturating_sub(handshake)
        } else {
            total
        };
        self.steps
            .push_timed(order[position], Outcome::Failed, e.to_string(), spent);
        if let Some(hint) = imap_hint(e, account) {
            self.steps.hint_last(hint);
        }
        self.steps.skip_rest(&order[position + 1..]);
    }

    /// TLS, capabilities, authentication and the folder, in one session.
    async fn session(&mut self, app: &Core, account: &Account, t: &Target) {
        let started = Instant::now();
        let mut config = SessionConfig::new(&t.host, t.port, t.security, &account.mailbox);
        config.mechanism = t.mechanism;
        config.extra_ca_pem = t.ca_file.clone().map(Into::into);
        config.connect_timeout = t.timeout;
        config.io_timeout = t.timeout;
        config.transcript = Some(self.transcript.clone());
        let source = app.tokens().source(account.id);
        let mut session = match connect_and_login(&config, &source).await {
            Ok(s) => s,
            Err(e) => {
                self.login_failed(&e, account, started);
                return;
            }
        };
        let (detail, outcome) = match (t.security, session.tls()) {
            (Security::Plain, _) => (
                "plain connection to this machine (no TLS)".to_owned(),
                Outcome::Warning,
            ),
            (_, Some(tls)) => {
                let expiry = tls.certificate_not_after.map_or_else(String::new, |secs| {
                    format!(
                        ", expires in {} day(s)",
                        (secs * 1000 - now_millis()) / 86_400_000
                    )
                });
                let detail = format!(
                    "{} {}; certificate {} issued by {}{expiry}",
                    tls.version,
                    tls.cipher_suite,
                    tls.certificate_subject.as_deref().unwrap_or("?"),
                    tls.certificate_issuer.as_deref().unwrap_or("?")
                );
                (detail, Outcome::Ok)
            }
            (_, None) => ("TLS details unavailable".to_owned(), Outcome::Warning),
        };
        // Each step its own time: the handshake for TLS, the rest of the login for authentication.
        let opened = started.elapsed();
        let handshake = session
            .tls()
            .map_or(std::time::Duration::ZERO, |tls| tls.handshake);
        self.steps.push_timed("tls", outcome, detail, handshake);
        let detail = format!(
            "logged in with {:?}; server offers {}",
            session.mechanism(),
            session.capabilities().join(" ")
        );
        self.steps.push_timed(
            "authentication",
            Outcome::Ok,
            detail,
            opened.saturating_sub(handshake),
        );
        let started = Instant::now();
        match session.select(&t.folder).await {
            Ok(mailbox) => {
                let detail = format!(
                    "{}: {} message(s), UIDVALIDITY {}, next UID {}",
                    t.folder,
                    mailbox.exists,
                    mailbox.uid_validity,
                    mailbox
                        .uid_next
                        .map_or_else(|| "?".into(), |u| u.to_string())
                );
                self.steps
                    .push("folder", Outcome::Ok, detail, None, started);
            }
            Err(e) => {
                let hint = Some(format!(
                    "check the folder name {:?} (case and hierarchy separator)",
                    t.folder
                ));
                self.steps
                    .push("folder", Outcome::Failed, e.to_string(), hint, started);
            }
        }
        let _ = session.logout().await;
    }
}

impl Run {
    /// The SMTP login the gateway's submission side would make: the provider's server (or the
    /// override), STARTTLS, XOAUTH2. A refusal names the scope or setting that is missing.
    async fn smtp(&mut self, app: &Core, account: &Account, timeout: Duration) {
        let started = Instant::now();
        let server = match app
            .upstream(account.id, oauthimap_gateway::Protocol::Smtp)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                self.steps.push(
                    "smtp",
                    Outcome::Failed,
                    e.to_string(),
                    Some(
                        "set the SMTP server with `oauthimap gateway upstream set --protocol smtp`"
                            .into(),
                    ),
                    started,
                );
                return;
            }
        };
        let target = oauthimap_gateway::upstream::UpstreamTarget {
            host: server.host.clone(),
            port: server.port,
            security: server.security,
            extra_ca: server.ca_file.clone().map(Into::into),
            user: account.mailbox.clone(),
            helo: "oauthimap-diagnose".into(),
            timeout,
        };
        let source = app.tokens().source(account.id);
        match oauthimap_gateway::upstream::smtp_login(&target, &source).await {
            Ok(session) => {
                let mut stream = session.stream;
                let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, b"QUIT\r\n").await;
                let detail = format!(
                    "logged in to {}:{} with XOAUTH2; the server offers {}",
                    server.host,
                    server.port,
                    session.extensions.join(", ")
                );
                self.steps.push("smtp", Outcome::Ok, detail, None, started);
            }
            Err(e @ oauthimap_gateway::upstream::UpstreamError::Refused { .. }) => {
                let hint = crate::gateway::smtp_refusal_hint(account);
                let hint = hint.trim_start_matches("; ").to_owned();
                self.steps
                    .push("smtp", Outcome::Failed, e.to_string(), Some(hint), started);
            }
            Err(e) => {
                self.steps
                    .push("smtp", Outcome::Failed, e.to_string(), None, started);
            }
        }
    }
}

impl Core {
    fn diagnose_target(
        profile: &oauthimap_oauth::Profile,
        r: Option<&oauthimap_store::ReceiverFields>,
        options: &DiagnoseOptions,
    ) -> Result<Target> {
        let host = options
            .host
            .clone()
            .or_else(|| r.map(|r| r.host.clone()))
            .or(profile.imap_host.clone())
            .ok_or_else(|| {
                AppError::invalid(
                    "host",
                    "give --host: this application has no default IMAP server",
                )
            })?;
        let security = options
            .security
            .or(r.map(|r| r.security))
            .unwrap_or(Security::Tls);
        let port = options
            .port
            .or(r.map(|r| r.port))
            .unwrap_or(match security {
                Security::Tls => 993,
                Security::StartTls | Security::Plain => 143,
            });
        Ok(Target {
            host,
            port,
            security,
            mechanism: options
                .mechanism
                .or(r.map(|r| r.mechanism))
                .unwrap_or(Mechanism::Auto),
            folder: options
                .folder
                .clone()
                .or_else(|| r.map(|r| r.folder.clone()))
                .unwrap_or_else(|| "INBOX".into()),
            ca_file: options
                .ca_file
                .clone()
                .or_else(|| r.and_then(|r| r.ca_file.clone())),
            timeout: options.timeout.unwrap_or(Duration::from_secs(20)),
        })
    }

    /// Runs the diagnostic for an account.
    pub async fn diagnose(
        &self,
        selector: &AccountSelector,
        options: &DiagnoseOptions,
    ) -> Result<DiagnosticReport> {
        let account = self.find_account(selector).await?;
        let app = self.store().application(account.application_id).await?;
        let profile = profile_of(&app.fields)?;
        let receiver = self
            .store()
            .receivers()
            .await?
            .into_iter()
            .find(|r| r.fields.account_id == Some(account.id));
        let target =
            Self::diagnose_target(&profile, receiver.as_ref().map(|r| &r.fields), options)?;
        let mut run = Run {
            steps: Steps(Vec::new()),
            transcript: Transcript::new(),
        };
        let started = Instant::now();
        match self.tokens().access_token(account.id, false).await {
            Ok(token) => {
                let (detail, outcome, hint) = describe_token(
                    &account,
                    app.fields.provider,
                    token.secret.expose_secret(),
                    token.expires_at,
                );
                run.steps.push("token", outcome, detail, hint, started);
            }
            Err(e) => {
                let hint = Some(
                    "authorize the account again if the provider refused the grant".to_owned(),
                );
                run.steps
                    .push("token", Outcome::Failed, e.message, hint, started);
                run.steps
                    .skip_rest(&["dns", "tcp", "tls", "authentication", "folder"]);
                return Ok(run.report(&account, &target));
            }
        }
        if run.network(&target).await {
            run.session(self, &account, &target).await;
        }
        let g = &self.settings().gateway;
        if options.smtp || g.submission_listen.is_some() || g.submissions_listen.is_some() {
            run.smtp(self, &account, target.timeout).await;
        }
        Ok(run.report(&account, &target))
    }
}
