//! The OAuth 2.0 protocol client: authorization URL with PKCE, code exchange, refresh, client
//! credentials and the device flow, over the `oauth2` crate with requests sent through our own
//! reqwest client (timeouts, no redirects, rustls with the ring provider).
//!
//! It turns provider answers into [`Grant`]s and classified [`OAuthError`]s; deciding what to do
//! next (retry, mark the account, notify) is the token service's job.

use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, EndpointNotSet, EndpointSet, ExtraTokenFields, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, StandardDeviceAuthorizationResponse,
    StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use oauthimap_types::{FailureKind, Provider, TokenSet, now_millis};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::errors::{OAuthError, classify_provider_error};
use crate::profile::Profile;

/// Extra fields of a token response we read: the ID token (who signed in).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenFields {}

type Response = StandardTokenResponse<IdTokenFields, BasicTokenType>;
type Client<Auth, Device, Token> = oauth2::Client<
    BasicErrorResponse,
    Response,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    Auth,
    Device,
    EndpointNotSet,
    EndpointNotSet,
    Token,
>;

/// The application's identity at the provider.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
}

/// Tokens from a successful grant, plus the ID token when one came.
#[derive(Debug, Clone)]
pub struct Grant {
    pub tokens: TokenSet,
    pub id_token: Option<SecretString>,
}

/// A sign-in URL to send the user to, and what the callback needs to finish it.
#[derive(Debug)]
pub struct AuthorizationStart {
    pub url: Url,
    /// The opaque `state`, single use, to match the callback.
    pub state: SecretString,
    /// The PKCE verifier, kept secret until the code exchange.
    pub pkce_verifier: SecretString,
}

/// What the user must do to finish a device-code sign-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceStart {
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub user_code: String,
    #[serde(skip)]
    pub(crate) details: Option<StandardDeviceAuthorizationResponse>,
    pub expires_in_secs: u64,
    pub interval_secs: u64,
}

/// One HTTP client for every provider call.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
}

/// A transport failure or an HTTP status that the token endpoint's JSON cannot explain.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Transport(String),
    #[error("the provider answered HTTP {status}")]
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
}

impl OAuthClient {
    /// A client with the given per-request timeout.
    pub fn new(timeout: Duration) -> Result<Self, OAuthError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("oauthimap/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OAuthError::Setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http })
    }

    /// The reqwest client, for the few calls outside the token endpoint (userinfo).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The HTTP function oauth2 calls: owns a client handle, so its futures are `'static`.
    fn sender(
        &self,
    ) -> impl Fn(
        oauth2::HttpRequest,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send>,
    > + use<> {
        let http = self.http.clone();
        move |request| Box::pin(send(http.clone(), request))
    }
    /// The device flow is a public-client flow: no secret is sent (Microsoft refuses one from an
    /// app with public client flows enabled, AADSTS700025).
    fn public(auth: &ClientAuth) -> ClientAuth {
        ClientAuth {
            client_id: auth.client_id.clone(),
            client_secret: None,
        }
    }

    fn base(
        profile: &Profile,
        auth: &ClientAuth,
    ) -> Client<EndpointNotSet, EndpointNotSet, EndpointSet> {
        let mut client = oauth2::Client::new(ClientId::new(auth.client_id.clone()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(TokenUrl::from_url(profile.token_url.clone()));
        if let Some(secret) = &auth.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()));
        }
        client
    }

    /// Builds the sign-in URL (PKCE S256, fresh `state`). Microsoft gets `prompt=select_account`;
    /// Google `access_type=offline` and `prompt=consent`, without which it sends no refresh token.
    pub fn authorization_start(
        &self,
        profile: &Profile,
        auth: &ClientAuth,
        redirect_url: &Url,
        login_hint: Option<&str>,
    ) -> AuthorizationStart {
        let client = Self::base(profile, auth)
            .set_auth_uri(AuthUrl::from_url(profile.authorize_url.clone()))
            .set_redirect_uri(RedirectUrl::from_url(redirect_url.clone()));
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge)
            .add_scopes(profile.scopes.iter().map(|s| Scope::new(s.clone())));
        request = match profile.provider {
            Provider::Microsoft => request.add_extra_param("prompt", "select_account"),
            Provider::Google => request
                .add_extra_param("access_type", "offline")
                .add_extra_param("prompt", "consent"),
            Provider::Generic => request,
        };
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint.to_owned());
        }
        let (url, state) = request.url();
        AuthorizationStart {
            url,
            state: SecretString::from(state.secret().clone()),
            pkce_verifier: SecretString::from(verifier.secret().clone()),
        }
    }

    /// Exchanges an authorization code for tokens.
    pub async fn exchange_code(
        &self,
        profile: &Profile,
        auth: &ClientAuth,
        redirect_url: &Url,
        code: &SecretString,
        pkce_verifier: &SecretString,
    ) -> Result<Grant, OAuthError> {
        let client =
            Self::base(profile, auth).set_redirect_uri(RedirectUrl::from_url(redirect_url.clone()));
        let http = self.sender();
        let response = client
            .exchange_code(AuthorizationCode::new(code.expose_secret().to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(
                pkce_verifier.expose_secret().to_owned(),
            ))
            .request_async(&http)
            .await
            .map_err(|e| OAuthError::from_request("exchange the authorization code", e))?;
        Ok(grant(&response, profile.scopes.join(" ")))
    }

    /// Renews the access token with a refresh token. A response without a refresh token leaves
    /// `refresh_token` empty: the caller keeps the old one.
    pub async fn refresh(
        &self,
        profile: &Profile,
        auth: &ClientAuth,
        refresh_token: &SecretString,
    ) -> Result<Grant, OAuthError> {
        let client = Self::base(profile, auth);
        let http = self.sender();
        let token = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let response = client
            .exchange_refresh_token(&token)
            .add_scopes(profile.scopes.iter().map(|s| Scope::new(s.clone())))
            .request_async(&http)
            .await
            .map_err(|e| OAuthError::from_request("refresh the access token", e))?;
        Ok(grant(&response, profile.scopes.join(" ")))
    }

    /// App-only access (Microsoft client credentials): a token for the application itself.
    pub async fn client_credentials(
        &self,
        profile: &Profile,
        auth: &ClientAuth,
    ) -> Result<Grant, OAuthError> {
        let scope = profile.app_only_scope.clone().ok_or_else(|| {
            OAuthError::Setup(format!(
                "{} applications have no app-only access",
                profile.provider
            ))
        })?;
        let client = Self::base(profile, auth);
        let http = self.sender();
        let response = client
            .exchange_client_credentials()
            .add_scope(Scope::new(scope.clone()))
            .request_async(&http)
            .await
            .map_err(|e| OAuthError::from_request("get an app-only token", e))?;
        Ok(grant(&response, scope))
    }

    /// Starts a device-code sign-in (RFC 8628).
    pub async fn device_start(
        &self,
        profile: &Profile,
        auth: &ClientAuth,
    ) -> Result<DeviceStart, OAuthError> {
        let device_url = profile.device_url.clone().ok_or_else(|| {
            OAuthError::Setup(format!(
                "{} offers no device-code sign-in for mail; use the browser sign-in",
                profile.provider
            ))
        })?;
        let auth = &Self::public(auth);
        let client = Self::base(profile, auth)
            .set_device_authorization_url(DeviceAuthorizationUrl::from_url(device_url));
        let http = self.sender();
        let details: StandardDeviceAuthorizationResponse = client
            .exchange_device_code()
            .add_scopes(profile.scopes.iter().map(|s| Scope::new(s.clone())))
            .request_async(&http)
            .await
            .map_err(|e| OAuthError::from_request("start the device sign-in", e))?;
        Ok(DeviceStart {
            verification_uri: details.verification_uri().to_string(),
            verification_uri_complete: details
                .verification_uri_complete()
                .map(|u| u.secret().clone()),
            user_code: details.user_code().secret().clone(),
            expires_in_secs: details.expires_in().as_secs(),
            interval_secs: details.interval().as_secs(),
            details: Some(details),
        })
    }

    /// Polls until the user finished the device sign-in, refused it, or it expired.
    pub async fn device_finish(
        &self,
        profile: &Profile,
        auth: &ClientAuth,
        start: &DeviceStart,
    ) -> Result<Grant, OAuthError> {
        let details = start.details.as_ref().ok_or_else(|| {
            OAuthError::Setup("the device sign-in was not started by this client".into())
        })?;
        let auth = &Self::public(auth);
        let client = Self::base(profile, auth);
        let http = self.sender();
        let response = client
            .exchange_device_access_token(details)
            .request_async(
                &http,
                tokio::time::sleep,
                Some(Duration::from_secs(start.expires_in_secs)),
            )
            .await
            .map_err(|e| OAuthError::from_request("finish the device sign-in", e))?;
        Ok(grant(&response, profile.scopes.join(" ")))
    }
}

/// Sends one request for oauth2; statuses the token endpoint uses for transient trouble
/// (408, 429, 5xx) become errors carrying `Retry-After`, so they are never mistaken for a
/// refused grant.
async fn send(
    http: reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let mut req = http.request(parts.method, parts.uri.to_string()).body(body);
    for (name, value) in &parts.headers {
        req = req.header(name, value);
    }
    let response = req.send().await.map_err(|e| {
        HttpError::Transport(if e.is_timeout() {
            "the provider did not answer in time".to_owned()
        } else if e.is_connect() {
            "cannot connect to the provider".to_owned()
        } else {
            format!("the request to the provider failed: {}", without_url(&e))
        })
    })?;
    let status = response.status();
    if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        return Err(HttpError::Status {
            status: status.as_u16(),
            retry_after,
        });
    }
    let mut builder = http::Response::builder().status(status);
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let bytes = response.bytes().await.map_err(|e| {
        HttpError::Transport(format!(
            "cannot read the provider's answer: {}",
            without_url(&e)
        ))
    })?;
    builder
        .body(bytes.to_vec())
        .map_err(|e| HttpError::Transport(e.to_string()))
}

fn grant(response: &Response, asked: String) -> Grant {
    let lifetime = response.expires_in().unwrap_or(Duration::from_hours(1));
    let scopes = response.scopes().map_or(asked, |s| {
        s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
    });
    Grant {
        tokens: TokenSet {
            access_token: SecretString::from(response.access_token().secret().clone()),
            expires_at: now_millis() + i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX / 2),
            refresh_token: response
                .refresh_token()
                .map(|t| SecretString::from(t.secret().clone())),
            scopes,
        },
        id_token: response
            .extra_fields()
            .id_token
            .clone()
            .map(SecretString::from),
    }
}

/// A reqwest error's text without the URL (which may carry codes or secrets in its query).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<provider endpoint>");
    }
    text
}

impl OAuthError {
    /// Classifies a failed token-endpoint request (any grant, any error type of oauth2).
    fn from_request<T>(
        action: &'static str,
        e: oauth2::RequestTokenError<HttpError, oauth2::StandardErrorResponse<T>>,
    ) -> Self
    where
        T: oauth2::ErrorResponseType + AsRef<str> + std::fmt::Display + Send + Sync + 'static,
    {
        use oauth2::RequestTokenError as R;
        match e {
            R::ServerResponse(r) => classify_provider_error(
                action,
                r.error().as_ref(),
                r.error_description().map(String::as_str),
            ),
            R::Request(HttpError::Status {
                status,
                retry_after,
            }) => OAuthError::Http {
                action,
                status,
                retry_after,
            },
            R::Request(HttpError::Transport(message)) => OAuthError::Transport { action, message },
            R::Parse(_, _) | R::Other(_) => OAuthError::BadResponse {
                action,
                kind: FailureKind::Transient,
            },
        }
    }
}
