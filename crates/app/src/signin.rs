//! Creating and renewing accounts: the browser sign-in (authorization code with PKCE and a
//! single-use `state`), the device-code sign-in for headless servers, and app-only access
//! (client credentials). Re-authorizing an account restores it and the receivers its failure
//! paused. Also the token broker's use case: a valid access token for an account.

use std::time::Duration;

use oauthimap_oauth::{ClientAuth, DeviceStart, Grant, OAuthError, Profile};
use oauthimap_store::{Account, Application, Level, NewEvent, SignInOutcome};
use oauthimap_types::{AccessToken, AccountId, GrantKind, Provider, TokenError};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::api_tokens::sha256_hex;
use crate::applications::profile_of;
use crate::{AccountSelector, AppError, Core, Result};

/// How long a sign-in link stays valid.
const SIGN_IN_TTL_MS: i64 = 15 * 60 * 1000;

/// A started browser sign-in.
#[derive(Debug, Serialize)]
pub struct SignInStart {
    /// Open this in a browser.
    pub url: String,
    /// For waiting on the outcome.
    pub id: i64,
}

/// What the provider sent back to `/oauth/callback`.
/// A finished sign-in: the account, and how many of its receivers it switched back on.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub account: Account,
    pub resumed: u64,
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

fn normalize_mailbox(mailbox: Option<&str>) -> Result<Option<String>> {
    let Some(m) = mailbox.map(str::trim).filter(|m| !m.is_empty()) else {
        return Ok(None);
    };
    let valid = m
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
        && !m.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(AppError::invalid(
            "mailbox",
            format!("{m:?} is not a mail address"),
        ));
    }
    Ok(Some(m.to_ascii_lowercase()))
}

impl Core {
    async fn client_auth(&self, app: &Application) -> Result<(Profile, ClientAuth)> {
        if !app.fields.active {
            return Err(AppError::invalid(
                "application",
                format!("{} is deactivated; activate it first", app.fields.name),
            ));
        }
        let profile = profile_of(&app.fields)?;
        let secret = self.store().application_secret(app.id).await?;
        Ok((
            profile,
            ClientAuth {
                client_id: app.fields.client_id.clone(),
                client_secret: secret,
            },
        ))
    }

    /// Starts a browser sign-in for an application; `mailbox` names a shared mailbox to log in to
    /// instead of the signed-in user's own.
    pub async fn start_sign_in(
        &self,
        application: &str,
        mailbox: Option<&str>,
        login_hint: Option<&str>,
    ) -> Result<SignInStart> {
        let app = self.find_application(application).await?;
        let mailbox = normalize_mailbox(mailbox)?;
        let (profile, auth) = self.client_auth(&app).await?;
        let redirect = self.redirect_url();
        let start = self
            .tokens()
            .oauth()
            .authorization_start(&profile, &auth, &redirect, login_hint);
        let id = self
            .store()
            .insert_sign_in(
                app.id,
                &sha256_hex(start.state.expose_secret()),
                &start.pkce_verifier,
                mailbox.as_deref(),
                redirect.as_str(),
                SIGN_IN_TTL_MS,
            )
            .await?;
        tracing::info!(application = %app.fields.name, sign_in = id, "sign-in started");
        Ok(SignInStart {
            url: start.url.to_string(),
            id,
        })
    }

    /// Finishes a browser sign-in from the provider's callback. A replayed, unknown or expired
    /// `state`, a missing code or an identity without an address is refused and writes nothing.
    pub async fn finish_sign_in(&self, params: &CallbackParams) -> Result<Account> {
        self.finish_sign_in_for(params).await.1.map(|s| s.account)
    }

    /// Like [`Core::finish_sign_in`], also naming the application the sign-in was for when the
    /// `state` was known (so a page can lead back to it, even after a failure).
    pub async fn finish_sign_in_for(
        &self,
        params: &CallbackParams,
    ) -> (Option<oauthimap_types::AppId>, Result<SignedIn>) {
        let Some(state) = params.state.as_deref().filter(|s| !s.is_empty()) else {
            return (
                None,
                Err(AppError::invalid(
                    "state",
                    "the callback carries no state; start the sign-in from oauthimap",
                )),
            );
        };
        let pending = match self.store().take_sign_in(&sha256_hex(state)).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return (
                    None,
                    Err(AppError::invalid(
                        "state",
                        "this sign-in link is unknown, expired or already used; start the authorization again",
                    )),
                );
            }
            Err(e) => return (None, Err(e.into())),
        };
        let application = pending.application_id;
        let result = self.complete_sign_in(&pending, params).await;
        let outcome = match &result {
            Ok(signed_in) => Ok(signed_in.account.id),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = self
            .store()
            .finish_sign_in(
                pending.id,
                outcome.as_ref().map(|a| *a).map_err(String::as_str),
            )
            .await
        {
            return (Some(application), Err(e.into()));
        }
        (Some(application), result)
    }

    async fn complete_sign_in(
        &self,
        pending: &oauthimap_store::PendingSignIn,
        params: &CallbackParams,
    ) -> Result<SignedIn> {
        if let Some(error) = &params.error {
            let e = oauthimap_oauth::errors::classify_provider_error(
                "sign in",
                error,
                params.error_description.as_deref(),
            );
            return Err(AppError::Provider(e));
        }
        let code = params
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                AppError::invalid(
                    "code",
                    "the provider sent no authorization code; start the authorization again",
                )
            })?;
        let app = self.store().application(pending.application_id).await?;
        let (profile, auth) = self.client_auth(&app).await?;
        let redirect = url::Url::parse(&pending.redirect_url)
            .map_err(|_| AppError::invalid("redirect_url", "the stored redirect URL is invalid"))?;
        let grant = self
            .tokens()
            .oauth()
            .exchange_code(
                &profile,
                &auth,
                &redirect,
                &SecretString::from(code.to_owned()),
                &pending.pkce_verifier,
            )
            .await
            .map_err(AppError::Provider)?;
        self.save_grant(
            &app,
            &profile,
            &grant,
            pending.mailbox.as_deref(),
            GrantKind::AuthorizationCode,
        )
        .await
    }

    /// Stores a user grant: identity from the provider, mailbox defaulting to it.
    async fn save_grant(
        &self,
        app: &Application,
        profile: &Profile,
        grant: &Grant,
        mailbox: Option<&str>,
        kind: GrantKind,
    ) -> Result<SignedIn> {
        let identity = self
            .tokens()
            .oauth()
            .identity(profile, grant)
            .await
            .map_err(AppError::Provider)?;
        if grant.tokens.refresh_token.is_none() {
            let why = if app.fields.provider == Provider::Google {
                "Google sent no refresh token; remove oauthimap's access at myaccount.google.com/permissions and authorize again"
            } else {
                "the provider sent no refresh token; make sure the offline_access scope is granted"
            };
            return Err(AppError::invalid("grant", why));
        }
        let mailbox = mailbox.map_or_else(|| identity.clone(), str::to_owned);
        self.store_account(app, &identity, &mailbox, kind, grant)
            .await
    }

    async fn store_account(
        &self,
        app: &Application,
        identity: &str,
        mailbox: &str,
        kind: GrantKind,
        grant: &Grant,
    ) -> Result<SignedIn> {
        let (account, created) = self
            .store()
            .upsert_account(app.id, identity, mailbox, kind, &grant.tokens)
            .await?;
        // Whatever paused them (a revoked grant, a changed tenant or client ID, a refresh that
        // failed for good), a new sign-in is the repair: every receiver a rule switched off
        // comes back. Only a deactivated application keeps its receivers off.
        let resumed = self
            .store()
            .resume_paused_receivers(account.id, crate::applications::PAUSED_APP_INACTIVE)
            .await?;
        if resumed > 0 {
            self.collector().wake();
        }
        let message = if created {
            format!("{mailbox} authorized by {identity} ({kind})")
        } else {
            format!("{mailbox} authorized again by {identity}; {resumed} receiver(s) resumed")
        };
        self.store()
            .record_event(&NewEvent {
                level: Level::Info,
                kind: if created {
                    "account.created"
                } else {
                    "account.reauthorized"
                },
                application_id: Some(app.id),
                account_id: Some(account.id),
                receiver_id: None,
                message,
            })
            .await?;
        Ok(SignedIn {
            account: self.store().account(account.id).await?,
            resumed,
        })
    }

    /// Where a started sign-in stands (for a CLI waiting on the service's callback).
    pub async fn sign_in_outcome(&self, id: i64) -> Result<SignInOutcome> {
        Ok(self.store().sign_in_outcome(id).await?)
    }

    /// Starts a device-code sign-in.
    pub async fn start_device_sign_in(
        &self,
        application: &str,
    ) -> Result<(Application, DeviceStart)> {
        let app = self.find_application(application).await?;
        let (profile, auth) = self.client_auth(&app).await?;
        let start = self
            .tokens()
            .oauth()
            .device_start(&profile, &auth)
            .await
            .map_err(AppError::Provider)?;
        Ok((app, start))
    }

    /// Waits for the user to finish a device-code sign-in and stores the account.
    pub async fn finish_device_sign_in(
        &self,
        app: &Application,
        start: &DeviceStart,
        mailbox: Option<&str>,
    ) -> Result<Account> {
        let mailbox = normalize_mailbox(mailbox)?;
        let (profile, auth) = self.client_auth(app).await?;
        let grant = self
            .tokens()
            .oauth()
            .device_finish(&profile, &auth, start)
            .await
            .map_err(AppError::Provider)?;
        self.save_grant(
            app,
            &profile,
            &grant,
            mailbox.as_deref(),
            GrantKind::DeviceCode,
        )
        .await
        .map(|s| s.account)
    }

    /// Creates (or renews) an app-only account: Microsoft client credentials for `mailbox`.
    pub async fn add_app_only(&self, application: &str, mailbox: &str) -> Result<Account> {
        let app = self.find_application(application).await?;
        let mailbox = normalize_mailbox(Some(mailbox))?.ok_or_else(|| {
            AppError::invalid("mailbox", "is required: the mailbox to collect from")
        })?;
        if app.fields.provider != Provider::Microsoft {
            return Err(AppError::invalid(
                "application",
                format!(
                    "app-only access exists only for Microsoft applications, not {}",
                    app.fields.provider
                ),
            ));
        }
        if matches!(
            app.fields.tenant.as_deref(),
            None | Some("common" | "organizations" | "consumers")
        ) {
            return Err(AppError::invalid(
                "tenant",
                "app-only access needs the application's specific tenant: set --tenant to the Directory (tenant) ID",
            ));
        }
        let (profile, auth) = self.client_auth(&app).await?;
        if auth.client_secret.is_none() {
            return Err(AppError::invalid(
                "client_secret",
                "app-only access needs the application's client secret",
            ));
        }
        let grant = self
            .tokens()
            .oauth()
            .client_credentials(&profile, &auth)
            .await
            .map_err(AppError::Provider)?;
        let identity = format!("app:{}", app.fields.client_id);
        self.store_account(
            &app,
            &identity,
            &mailbox,
            GrantKind::ClientCredentials,
            &grant,
        )
        .await
        .map(|s| s.account)
    }

    /// A valid access token for an account (the token broker).
    pub async fn account_token(
        &self,
        selector: &AccountSelector,
        force: bool,
    ) -> Result<(Account, AccessToken)> {
        let account = self.find_account(selector).await?;
        let token = self
            .tokens()
            .access_token(account.id, force)
            .await
            .map_err(AppError::Token)?;
        Ok((account, token))
    }

    /// The ready SASL initial response for an account: XOAUTH2, or OAUTHBEARER for `host:port`
    /// (default: the provider's IMAP server), for tools that take the SASL string itself.
    pub async fn account_sasl(
        &self,
        selector: &AccountSelector,
        mechanism: oauthimap_types::Mechanism,
        server: Option<(String, u16)>,
    ) -> Result<(Account, SecretString)> {
        let (account, token) = self.account_token(selector, false).await?;
        let sasl = self
            .sasl_response(&account, &token, mechanism, server)
            .await?;
        Ok((account, sasl))
    }

    /// The SASL initial response for `account` with a token already in hand.
    pub(crate) async fn sasl_response(
        &self,
        account: &Account,
        token: &AccessToken,
        mechanism: oauthimap_types::Mechanism,
        server: Option<(String, u16)>,
    ) -> Result<SecretString> {
        let token = token.secret.expose_secret();
        let sasl = match mechanism {
            oauthimap_types::Mechanism::Xoauth2 | oauthimap_types::Mechanism::Auto => {
                oauthimap_imap::xoauth2_initial_response(&account.mailbox, token)
            }
            oauthimap_types::Mechanism::Oauthbearer => {
                let (host, port) = if let Some(s) = server {
                    s
                } else {
                    let app = self.store().application(account.application_id).await?;
                    let profile = profile_of(&app.fields)?;
                    let host = profile.imap_host.ok_or_else(|| {
                        AppError::invalid(
                            "host",
                            "this application has no default IMAP server: give --host and --port",
                        )
                    })?;
                    (host, profile.imap_port)
                };
                oauthimap_imap::oauthbearer_initial_response(&account.mailbox, &host, port, token)
            }
        };
        Ok(SecretString::from(sasl))
    }

    /// Waits for a sign-in to end, checking every `every`.
    pub async fn wait_for_sign_in(&self, id: i64, every: Duration) -> Result<AccountId> {
        loop {
            match self.sign_in_outcome(id).await? {
                SignInOutcome::Succeeded(account) => return Ok(account),
                SignInOutcome::Failed(error) => {
                    return Err(AppError::Conflict(format!("the sign-in failed: {error}")));
                }
                SignInOutcome::Expired => {
                    return Err(AppError::Conflict(
                        "the sign-in link expired; start again".into(),
                    ));
                }
                SignInOutcome::Pending => tokio::time::sleep(every).await,
            }
        }
    }
}

impl From<TokenError> for AppError {
    fn from(e: TokenError) -> Self {
        AppError::Token(e)
    }
}

impl From<OAuthError> for AppError {
    fn from(e: OAuthError) -> Self {
        AppError::Provider(e)
    }
}
