//! The token service: a valid access token per account, refreshed with single flight, and the
//! account state changes that follow each refresh outcome. Every state it writes comes from
//! [`transition`]; it does not decide states itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oauthimap_oauth::{ClientAuth, Grant, OAuthClient, OAuthError, Profile};
use oauthimap_store::{Account, Application, Level, NewEvent, Store, StoreError};
use oauthimap_types::{
    AccessToken, AccountId, AccountState, FailureKind, GrantKind, StateChange, TokenError,
    TokenSource, now_millis,
};
use secrecy::ExposeSecret;

use crate::error::{Error, RefreshError};
use crate::notify::{Notice, Notifier};
use crate::state::{AccountEvent, change_for, serves_tokens, transition};

/// Why receivers were paused when their account lost its grant; re-authorization looks for it.
pub const PAUSED_NEEDS_REAUTH: &str = "its account needs to be authorized again";

/// Timing of refreshes.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// Refresh when the access token expires within this.
    pub refresh_margin: Duration,
    /// Random extra margin per refresh, so many accounts do not refresh in the same second.
    pub jitter: Duration,
    /// Refresh at least this often, to keep refresh tokens from dying unused.
    pub keep_warm: Duration,
    /// How often the background refresher looks for work.
    pub check_interval: Duration,
    /// How long one instance may hold an account's refresh lease.
    pub lease_ttl: Duration,
    /// How long a caller waits for another instance's refresh.
    pub wait_for_other: Duration,
    /// Longest back-off after transient failures.
    pub max_backoff: Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_mins(10),
            jitter: Duration::from_mins(1),
            keep_warm: Duration::from_hours(72),
            check_interval: Duration::from_secs(30),
            lease_ttl: Duration::from_mins(1),
            wait_for_other: Duration::from_secs(30),
            max_backoff: Duration::from_mins(30),
        }
    }
}

/// How one refresh ended.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// New tokens are stored; the account is `active`.
    Refreshed { expires_at: i64 },
    /// Kept the current token; the next attempt is scheduled. `error` is transient.
    Transient {
        error: RefreshError,
        next_attempt_at: i64,
    },
    /// The account needs a new sign-in (or was not in a state to refresh). `error` is permanent.
    Permanent { error: RefreshError },
}

impl RefreshOutcome {
    pub fn is_refreshed(&self) -> bool {
        matches!(self, RefreshOutcome::Refreshed { .. })
    }
}

/// Tokens for accounts. Share it behind an `Arc`.
#[derive(Debug)]
pub struct TokenService {
    store: Store,
    oauth: OAuthClient,
    notifier: Notifier,
    settings: TokenSettings,
    instance: String,
    locks: Mutex<HashMap<AccountId, Arc<tokio::sync::Mutex<()>>>>,
    /// Applications whose token endpoint answered 429, and until when (epoch ms) no account of
    /// theirs is refreshed: the provider throttles the client, not one account.
    throttled: Mutex<HashMap<oauthimap_types::AppId, i64>>,
}

/// The provider profile of an application.
pub fn profile_of(
    app: &oauthimap_store::ApplicationFields,
) -> Result<Profile, oauthimap_oauth::ProfileError> {
    oauthimap_oauth::resolve(
        app.provider,
        app.cloud,
        app.tenant.as_deref(),
        oauthimap_oauth::EndpointSettings {
            base: app.endpoints.base.as_deref(),
            authorize: app.endpoints.authorize.as_deref(),
            token: app.endpoints.token.as_deref(),
            device: app.endpoints.device.as_deref(),
            userinfo: app.endpoints.userinfo.as_deref(),
        },
        app.scopes.as_deref(),
    )
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl TokenService {
    pub fn new(
        store: Store,
        oauth: OAuthClient,
        notifier: Notifier,
        settings: TokenSettings,
    ) -> Self {
        Self {
            store,
            oauth,
            notifier,
            settings,
            instance: format!(
                "{}-{:016x}",
                std::process::id(),
                getrandom::u64().unwrap_or_default()
            ),
            locks: Mutex::new(HashMap::new()),
            throttled: Mutex::new(HashMap::new()),
        }
    }

    /// Until when (epoch ms) the provider asked this application's refreshes to wait, if it did
    /// and that time has not passed.
    pub fn throttled_until(&self, app: oauthimap_types::AppId) -> Option<i64> {
        let now = now_millis();
        let mut map = self
            .throttled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, until| *until > now);
        map.get(&app).copied()
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where notices to people go (`[notify]`).
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    pub fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    /// A [`TokenSource`] for one account.
    pub fn source(self: &Arc<Self>, account: AccountId) -> AccountTokenSource {
        AccountTokenSource {
            service: self.clone(),
            account,
        }
    }

    fn lock_for(&self, account: AccountId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(account).or_default().clone()
    }

    /// A token valid for a while yet, refreshing first when needed (or when `force`d because a
    /// server just refused the current one). The error in the plain form protocol clients share;
    /// [`TokenService::fresh_token`] keeps its source.
    pub async fn access_token(
        &self,
        account: AccountId,
        force: bool,
    ) -> Result<AccessToken, TokenError> {
        self.fresh_token(account, force)
            .await
            .map_err(TokenError::from)
    }

    /// [`TokenService::access_token`] with the error as it happened.
    pub async fn fresh_token(&self, account: AccountId, force: bool) -> Result<AccessToken, Error> {
        let before = self.current(account).await?;
        if !force && let Some(token) = self.usable(&before) {
            return Ok(token);
        }
        let seen = before.1.map(|t| t.secret.expose_secret().to_owned());
        let lock = self.lock_for(account);
        let _guard = lock.lock().await;
        let deadline = tokio::time::Instant::now() + self.settings.wait_for_other;
        loop {
            // Someone may have refreshed while we waited for the lock or the lease.
            let now = self.current(account).await?;
            let changed = now.1.as_ref().map(|t| t.secret.expose_secret().to_owned()) != seen;
            if (changed || !force)
                && let Some(token) = self.usable(&now)
            {
                return Ok(token);
            }
            let lease = format!("refresh:{}", account.0);
            let held = self
                .store
                .try_lease(&lease, &self.instance, millis(self.settings.lease_ttl))
                .await?;
            if held {
                let outcome = self.refresh_locked(&now.0).await;
                let _ = self.store.release_lease(&lease, &self.instance).await;
                return match outcome {
                    RefreshOutcome::Refreshed { .. } => {
                        let fresh = self.current(account).await?;
                        fresh.1.ok_or(Error::NotStored)
                    }
                    // Keep using the current token while it lasts.
                    RefreshOutcome::Transient { error, .. } => match self.still_valid(&now) {
                        Some(token) if !force => Ok(token),
                        _ => Err(error.into()),
                    },
                    RefreshOutcome::Permanent { error } => Err(error.into()),
                };
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::OtherInstanceTooLong(account));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The account and its current access token, refusing accounts that cannot serve tokens.
    async fn current(&self, id: AccountId) -> Result<(Account, Option<AccessToken>), Error> {
        let account = self.store.account(id).await.map_err(|e| match e {
            StoreError::NotFound { .. } => Error::NoSuchAccount(id),
            other => Error::Store(other),
        })?;
        if !serves_tokens(account.state) {
            return Err(Error::NotServing {
                id: account.id,
                reason: account.last_error.unwrap_or_else(|| "no token".to_owned()),
                mailbox: account.mailbox,
                state: account.state,
            });
        }
        let tokens = self.store.account_tokens(id).await?;
        let token = tokens
            .access_token
            .zip(tokens.access_expires_at)
            .map(|(secret, expires_at)| AccessToken { secret, expires_at });
        Ok((account, token))
    }

    /// The token if it has more than the refresh margin left. For tokens that live shorter than
    /// the margin, half their lifetime counts as the margin, so they are not refreshed on every use.
    fn usable(&self, current: &(Account, Option<AccessToken>)) -> Option<AccessToken> {
        let issued = current.0.last_refresh_at.unwrap_or(0);
        current.1.clone().filter(|t| {
            let margin = millis(self.settings.refresh_margin).min((t.expires_at - issued) / 2);
            t.expires_at > now_millis() + margin
        })
    }

    /// The token if it has not expired yet (with a minute's safety).
    fn still_valid(&self, current: &(Account, Option<AccessToken>)) -> Option<AccessToken> {
        let _ = self;
        current
            .1
            .clone()
            .filter(|t| t.expires_at > now_millis() + 60_000)
    }

    /// Refreshes an account now (the background refresher's entry point), with single flight.
    pub async fn refresh_now(&self, id: AccountId) -> RefreshOutcome {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let lease = format!("refresh:{}", id.0);
        match self
            .store
            .try_lease(&lease, &self.instance, millis(self.settings.lease_ttl))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return RefreshOutcome::Transient {
                    error: RefreshError::Busy,
                    next_attempt_at: now_millis(),
                };
            }
            Err(e) => {
                return RefreshOutcome::Transient {
                    error: RefreshError::Store(e),
                    next_attempt_at: now_millis(),
                };
            }
        }
        let outcome = match self.store.account(id).await {
            Ok(account) if Store::REFRESHABLE_STATES.contains(&account.state) => {
                self.refresh_locked(&account).await
            }
            Ok(account) => RefreshOutcome::Permanent {
                error: RefreshError::NotRefreshable {
                    id: account.id,
                    state: account.state,
                },
            },
            Err(e) => RefreshOutcome::Transient {
                error: RefreshError::Store(e),
                next_attempt_at: now_millis(),
            },
        };
        let _ = self.store.release_lease(&lease, &self.instance).await;
        outcome
    }

    /// Asks the provider for new tokens and records the outcome. The caller holds the lock and lease.
    async fn refresh_locked(&self, account: &Account) -> RefreshOutcome {
        if let Some(until) = self.throttled_until(account.application_id) {
            // The provider throttles this client: asking again now would only prolong it.
            return RefreshOutcome::Transient {
                error: RefreshError::Throttled {
                    application: account.application_name.clone(),
                    seconds: (until - now_millis()).max(0) / 1000 + 1,
                },
                next_attempt_at: until,
            };
        }
        let result = self.request_tokens(account).await;
        let outcome = match result {
            Ok(grant) => self.stored(account, &grant).await,
            Err(e) if e.kind() == FailureKind::Transient => self.transient(account, e).await,
            Err(e) => self.permanent_failure(account, e).await,
        };
        let label = match &outcome {
            RefreshOutcome::Refreshed { .. } => "refreshed",
            RefreshOutcome::Transient { .. } => "transient_error",
            RefreshOutcome::Permanent { .. } => "permanent_error",
        };
        metrics::counter!("oauthimap_token_refreshes_total", "outcome" => label).increment(1);
        outcome
    }

    async fn request_tokens(&self, account: &Account) -> Result<Grant, RefreshError> {
        let (profile, auth) = self.client_for(account).await?;
        if account.grant_kind == GrantKind::ClientCredentials {
            return Ok(self.oauth.client_credentials(&profile, &auth).await?);
        }
        let refresh = self
            .store
            .account_tokens(account.id)
            .await
            .map_err(RefreshError::ReadSetup)?
            .refresh_token
            .ok_or_else(|| RefreshError::NoRefreshToken(account.mailbox.clone()))?;
        let attempt = if account.grant_kind == GrantKind::DeviceCode {
            // A device-code grant belongs to a public client: redeem it without the secret
            // (Microsoft refuses a secret from a public client, AADSTS700025), unless the
            // provider insists on one (AADSTS7000218).
            let public = ClientAuth {
                client_id: auth.client_id.clone(),
                client_secret: None,
            };
            match self.oauth.refresh(&profile, &public, &refresh).await {
                Err(OAuthError::Provider {
                    aadsts: Some(7_000_218),
                    ..
                }) if auth.client_secret.is_some() => {
                    self.oauth.refresh(&profile, &auth, &refresh).await
                }
                other => other,
            }
        } else {
            self.oauth.refresh(&profile, &auth, &refresh).await
        };
        let grant = match attempt {
            // Microsoft rarely answers invalid_grant for a good token: one retry guards against it.
            Err(e) if e.error_code() == Some("invalid_grant") => {
                tracing::info!(
                    account = account.id.0,
                    "invalid_grant on refresh; retrying once"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.oauth.refresh(&profile, &auth, &refresh).await
            }
            other => other,
        }?;
        Ok(grant)
    }

    async fn client_for(&self, account: &Account) -> Result<(Profile, ClientAuth), RefreshError> {
        let app: Application = self
            .store
            .application(account.application_id)
            .await
            .map_err(RefreshError::ReadSetup)?;
        if !app.fields.active {
            return Err(RefreshError::ApplicationInactive(app.fields.name));
        }
        let profile = profile_of(&app.fields)?;
        let secret = self
            .store
            .application_secret(app.id)
            .await
            .map_err(RefreshError::ReadSetup)?;
        Ok((
            profile,
            ClientAuth {
                client_id: app.fields.client_id,
                client_secret: secret,
            },
        ))
    }

    /// The guarded write that records `event` for the account, or the machine's refusal
    /// (logged): then the caller writes nothing. The write itself checks the state again, as
    /// the account may move on (a revocation, another instance's verdict) before it happens.
    fn change(account: &Account, event: AccountEvent) -> Result<StateChange, RefreshError> {
        let to = transition(account.state, event).map_err(|refused| {
            tracing::error!(account = account.id.0, error = %refused, "refusing an account state change");
            RefreshError::Illegal(refused)
        })?;
        let change = change_for(event);
        debug_assert_eq!(
            change.to, to,
            "the machine's target depends on the event alone"
        );
        Ok(change)
    }

    async fn stored(&self, account: &Account, grant: &Grant) -> RefreshOutcome {
        let change = match Self::change(account, AccountEvent::Refreshed) {
            Ok(change) => change,
            Err(error) => return RefreshOutcome::Permanent { error },
        };
        match self
            .store
            .record_refresh(account.id, &grant.tokens, &change)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // Revoked or marked for a new sign-in while the provider answered: the new
                // tokens belong to a grant that is no longer ours to use.
                tracing::info!(
                    account = account.id.0,
                    "the account changed during the refresh; its new tokens are dropped"
                );
                return RefreshOutcome::Permanent {
                    error: RefreshError::MovedOn {
                        id: account.id,
                        event: AccountEvent::Refreshed,
                    },
                };
            }
            Err(e) => {
                // The provider may have rotated the refresh token; we could not keep it. Retry soon.
                tracing::error!(account = account.id.0, error = %e, "cannot store refreshed tokens");
                return RefreshOutcome::Transient {
                    error: RefreshError::Store(e),
                    next_attempt_at: now_millis() + 5_000,
                };
            }
        }
        tracing::debug!(account = account.id.0, "access token refreshed");
        if account.state == AccountState::Failing {
            self.event(
                account,
                Level::Info,
                "account.recovered",
                "token refresh works again".into(),
            )
            .await;
        }
        RefreshOutcome::Refreshed {
            expires_at: grant.tokens.expires_at,
        }
    }

    async fn transient(&self, account: &Account, e: RefreshError) -> RefreshOutcome {
        let failures = u32::try_from(account.failure_count.max(0)).unwrap_or(u32::MAX);
        let backoff = Duration::from_secs(30)
            .saturating_mul(2u32.saturating_pow(failures.min(10)))
            .min(self.settings.max_backoff);
        let jitter = getrandom::u64().unwrap_or_default() % (millis(backoff) as u64 / 4 + 1);
        let wait = e
            .retry_after()
            .map_or(millis(backoff) + jitter as i64, |s| {
                i64::try_from(s).unwrap_or(3600) * 1000
            });
        let next = now_millis() + wait;
        let message = e.to_string();
        if matches!(
            e,
            RefreshError::Provider(OAuthError::Http { status: 429, .. })
        ) {
            let first = self
                .throttled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(account.application_id, next)
                .is_none_or(|before| before <= now_millis());
            if first {
                tracing::warn!(application = %account.application_name, retry_in_ms = wait,
                    "the token endpoint answered 429: every refresh of this application waits");
            }
        }
        tracing::warn!(account = account.id.0, error = %message, retry_in_ms = wait, "token refresh failed; will retry");
        if let Ok(change) = Self::change(account, AccountEvent::RefreshFailedTransient) {
            let written = self
                .store
                .record_transient_failure(account.id, &change, &message, next)
                .await;
            match written {
                Ok(Some(_)) => {}
                Ok(None) => {
                    // Revoked or marked for a new sign-in meanwhile: no retry, no warning; the
                    // account waits for a person, and its token is not handed out any more.
                    return RefreshOutcome::Permanent {
                        error: RefreshError::MovedOn {
                            id: account.id,
                            event: AccountEvent::RefreshFailedTransient,
                        },
                    };
                }
                Err(se) => {
                    tracing::error!(account = account.id.0, error = %se, "cannot record the refresh failure");
                }
            }
            if account.state != AccountState::Failing {
                self.event(account, Level::Warn, "account.failing", message)
                    .await;
            }
        }
        RefreshOutcome::Transient {
            error: e,
            next_attempt_at: next,
        }
    }

    async fn permanent_failure(&self, account: &Account, e: RefreshError) -> RefreshOutcome {
        let message = e.to_string();
        tracing::warn!(account = account.id.0, error = %message, "token refresh refused; the account needs a new sign-in");
        let Ok(change) = Self::change(account, AccountEvent::RefreshRejected) else {
            return RefreshOutcome::Permanent { error: e };
        };
        match self
            .store
            .lose_grant(account.id, &change, &message, PAUSED_NEEDS_REAUTH)
            .await
        {
            Ok(Some(paused)) => {
                self.event(
                    account,
                    Level::Error,
                    "account.needs_reauth",
                    format!("{message}; {paused} receiver(s) paused"),
                )
                .await;
                let notice = Notice {
                    event: "account.needs_reauth",
                    account_id: account.id.0,
                    mailbox: account.mailbox.clone(),
                    application: account.application_name.clone(),
                    receiver: None,
                    reason: message,
                    at: now_millis(),
                };
                self.notifier.send(&notice).await;
            }
            // Already marked (by another instance) or revoked meanwhile: the notice went out, or
            // is not due.
            Ok(None) => {}
            Err(se) => {
                tracing::error!(account = account.id.0, error = %se, "cannot mark the account");
            }
        }
        RefreshOutcome::Permanent { error: e }
    }

    async fn event(&self, account: &Account, level: Level, kind: &'static str, message: String) {
        let event = NewEvent {
            level,
            kind,
            application_id: Some(account.application_id),
            account_id: Some(account.id),
            receiver_id: None,
            message: format!("{}: {message}", account.mailbox),
        };
        if let Err(e) = self.store.record_event(&event).await {
            tracing::error!(error = %e, "cannot record an event");
        }
    }
}

/// The token source of one account.
#[derive(Debug, Clone)]
pub struct AccountTokenSource {
    service: Arc<TokenService>,
    account: AccountId,
}

impl TokenSource for AccountTokenSource {
    async fn access_token(&self, force_refresh: bool) -> Result<AccessToken, TokenError> {
        self.service.access_token(self.account, force_refresh).await
    }
}
