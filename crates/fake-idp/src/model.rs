//! The public configuration, fault and observation types of the fake identity provider.
//!
//! Every type here is plain data with serde derives, so the Rust API and the HTTP control API
//! (`/_control/...`) take and return the same JSON. Behaviour lives in `state.rs`, not here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which provider's wire format a client speaks; a client only works on its own provider's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// Microsoft identity platform v2.0 (`/{tenant}/oauth2/v2.0/...`).
    Microsoft,
    /// Google OAuth 2.0 (`/o/oauth2/v2/auth`, `/token`, ...).
    Google,
}

/// A registered OAuth client (an "app registration" / "OAuth client ID").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// The client id.
    pub client_id: String,
    /// The client secret; `None` registers a public client (no secret may be sent).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Redirect URIs, compared exactly (scheme, host, port, path, trailing slash).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Microsoft or Google.
    pub flavour: Flavour,
    /// Display name used in messages and in Microsoft's `app_displayname` claim.
    #[serde(default)]
    pub name: Option<String>,
    /// Application roles put in app-only (client credentials) access tokens.
    #[serde(default = "default_app_roles")]
    pub app_roles: Vec<String>,
    /// The mailbox reported as `email` by introspection for this client's app-only tokens (they carry
    /// no user, but Dovecot's oauth2 passdb matches `email` against the login name).
    #[serde(default)]
    pub app_mailbox: Option<String>,
}

fn default_app_roles() -> Vec<String> {
    vec!["IMAP.AccessAsApp".to_owned()]
}

impl ClientConfig {
    /// A confidential Microsoft client with one redirect URI.
    pub fn microsoft(client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: Some(client_secret.to_owned()),
            redirect_uris: vec![redirect_uri.to_owned()],
            flavour: Flavour::Microsoft,
            name: None,
            app_roles: default_app_roles(),
            app_mailbox: None,
        }
    }

    /// A confidential Google client with one redirect URI.
    pub fn google(client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        Self {
            flavour: Flavour::Google,
            app_roles: Vec::new(),
            ..Self::microsoft(client_id, client_secret, redirect_uri)
        }
    }

    /// Makes this a public client (no secret).
    #[must_use]
    pub fn public(mut self) -> Self {
        self.client_secret = None;
        self
    }
}

/// A user who can sign in and consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConfig {
    /// Sign-in name and mailbox address (`preferred_username`, `upn`, `email`).
    pub email: String,
    /// Display name (`name`).
    #[serde(default)]
    pub display_name: Option<String>,
    /// Microsoft tenant id (`tid`); the fixture's default tenant when absent.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Leave the `email` claim out of ID tokens (and `email` out of Google userinfo).
    #[serde(default)]
    pub omit_email_claim: bool,
    /// Leave `preferred_username` out of Microsoft ID tokens.
    #[serde(default)]
    pub omit_preferred_username: bool,
}

impl UserConfig {
    /// A user with a display name and every claim present.
    pub fn new(email: &str, display_name: &str) -> Self {
        Self {
            email: email.to_owned(),
            display_name: Some(display_name.to_owned()),
            tenant_id: None,
            omit_email_claim: false,
            omit_preferred_username: false,
        }
    }
}

/// Run-time settings; all can be changed at any time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `expires_in` of new access tokens, seconds.
    pub access_token_lifetime_secs: u64,
    /// Microsoft: a refresh token stops working once it has been used (it is always rotated).
    pub revoke_used_refresh_tokens: bool,
    /// A refresh token unused for longer than this is rejected (Microsoft `AADSTS700082`,
    /// Google "Token has been expired or revoked."). `None`: never.
    pub refresh_token_max_idle_secs: Option<u64>,
    /// Device flow polling interval announced and enforced (`slow_down`), seconds; 0 disables.
    pub device_poll_interval_secs: u64,
    /// Device code lifetime, seconds; `None` uses the provider's (Microsoft 900, Google 1800).
    pub device_code_lifetime_secs: Option<u64>,
    /// Delay before every token endpoint answer, milliseconds.
    pub token_delay_ms: u64,
    /// Introspection answers normally; `false` makes it answer HTTP 503.
    pub introspection_available: bool,
    /// The user who signs in when an authorize request has no `login_hint`.
    pub default_user: Option<String>,
    /// Tenant id used for users without one and for `common` / `organizations`.
    pub default_tenant_id: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            access_token_lifetime_secs: 3599,
            revoke_used_refresh_tokens: true,
            refresh_token_max_idle_secs: None,
            device_poll_interval_secs: 5,
            device_code_lifetime_secs: None,
            token_delay_ms: 0,
            introspection_available: true,
            default_user: None,
            default_tenant_id: "9f4d7a2e-3b1c-4e5f-8a6b-0c1d2e3f4a5b".to_owned(),
        }
    }
}

/// A partial update of [`Settings`]; absent fields keep their value. `PUT /_control/settings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[allow(
    clippy::option_option,
    reason = "null clears an optional setting, absence keeps it"
)]
pub struct SettingsPatch {
    pub access_token_lifetime_secs: Option<u64>,
    pub revoke_used_refresh_tokens: Option<bool>,
    #[serde(deserialize_with = "double_option")]
    pub refresh_token_max_idle_secs: Option<Option<u64>>,
    pub device_poll_interval_secs: Option<u64>,
    #[serde(deserialize_with = "double_option")]
    pub device_code_lifetime_secs: Option<Option<u64>>,
    pub token_delay_ms: Option<u64>,
    pub introspection_available: Option<bool>,
    #[serde(deserialize_with = "double_option")]
    pub default_user: Option<Option<String>>,
    pub default_tenant_id: Option<String>,
}

#[allow(clippy::option_option, reason = "see SettingsPatch")]
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Make the token endpoint answer `count` times with an HTTP error before working again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenHttpFault {
    /// 429, 500, 502, 503 or 504.
    pub status: u16,
    /// How many answers to spoil.
    #[serde(default = "one")]
    pub count: u32,
    /// `Retry-After` seconds (sent with 429 and 503 when set).
    #[serde(default)]
    pub retry_after: Option<u32>,
}

/// Make the next `count` token requests fail with a chosen OAuth error, in the provider's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenErrorFault {
    /// OAuth error code, e.g. `invalid_grant`.
    pub error: String,
    /// Description; Microsoft answers get the `AADSTS{code}: ` prefix and the trace lines added.
    #[serde(default)]
    pub description: Option<String>,
    /// Microsoft AADSTS number, e.g. 700082.
    #[serde(default)]
    pub code: Option<u32>,
    /// HTTP status (default 400; use 401 for `invalid_client`).
    #[serde(default)]
    pub status: Option<u16>,
    /// Restrict to one grant type (`refresh_token`, ...); any grant when absent.
    #[serde(default)]
    pub grant_type: Option<String>,
    /// How many answers to spoil.
    #[serde(default = "one")]
    pub count: u32,
}

/// Make the next authorize (or admin consent) request redirect back with an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeErrorFault {
    /// OAuth error code, e.g. `access_denied`, `consent_required`.
    pub error: String,
    /// Description; for Microsoft include the AADSTS text (e.g. `AADSTS65001: ...`).
    #[serde(default)]
    pub description: Option<String>,
}

fn one() -> u32 {
    1
}

/// A device authorization waiting for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDevice {
    /// The code the user types.
    pub user_code: String,
    /// The client that asked.
    pub client_id: String,
    /// Requested scopes, space separated.
    pub scope: String,
    /// Microsoft or Google.
    pub flavour: Flavour,
    /// Seconds until it expires (0 when expired).
    pub expires_in: u64,
}

/// Requests, successes and errors of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    pub requests: u64,
    pub successes: u64,
    pub errors: u64,
}

/// What the fake has seen since start (or the last reset). `GET /_control/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Authorize requests (both providers); errors are error pages and error redirects.
    pub authorize: Counter,
    /// Admin consent requests.
    pub admin_consent: Counter,
    /// Token requests by `grant_type` (unknown or missing grant types under `"other"`).
    pub token: BTreeMap<String, Counter>,
    /// Device authorization requests (`/devicecode`, `/device/code`).
    pub device_code: Counter,
    /// Introspection requests; successes are `active:true` answers, errors are 503s.
    pub introspection: Counter,
    /// Google userinfo requests.
    pub userinfo: Counter,
    /// Google revoke requests.
    pub revoke: Counter,
}

impl Stats {
    /// The counter of one grant type (zero when never seen).
    pub fn grant(&self, grant_type: &str) -> Counter {
        self.token.get(grant_type).copied().unwrap_or_default()
    }
}

/// Initial configuration for [`crate::FakeIdp::start_with`] and the binary's `--config` file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdpConfig {
    pub clients: Vec<ClientConfig>,
    pub users: Vec<UserConfig>,
    pub settings: Settings,
}
