//! A fake identity provider for tests: speaks the wire formats of the Microsoft identity platform
//! v2.0 and Google OAuth 2.0 (authorize, token, device code, client credentials, admin consent,
//! userinfo, revoke) plus RFC 7662 introspection for Dovecot, with fault injection and counters.
//!
//! It is the only stand-in in the test suites, so it must stay faithful: error bodies in each
//! provider's shape, no panics on malformed input. Start it in-process with [`FakeIdp::start`] (it
//! binds `127.0.0.1:0`), or run the `fake-idp` binary and drive it over `/_control/...`.
//! Module map: `authorize` (front channel), `token` + `tokens` (grants and minting), `device`
//! (RFC 8628), `resource` (introspection, userinfo, revoke), `control` (JSON control API), `state`
//! (memory and shared operations), `model` (public data types), `errors`, `params`, `util`.

#![allow(
    clippy::result_large_err,
    reason = "helpers return the finished axum Response as their error; boxing buys nothing in a test fixture"
)]

mod authorize;
mod control;
mod device;
mod errors;
mod model;
mod params;
mod resource;
mod state;
mod token;
mod tokens;
mod util;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use model::{
    AuthorizeErrorFault, ClientConfig, Counter, Flavour, IdpConfig, PendingDevice, Settings,
    SettingsPatch, Stats, TokenErrorFault, TokenHttpFault, UserConfig,
};
pub use state::ControlError;

use state::Idp;

/// A running fake identity provider. Stops when dropped or on [`FakeIdp::shutdown`].
#[derive(Debug)]
pub struct FakeIdp {
    idp: Arc<Idp>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeIdp {
    /// Starts an empty provider on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(IdpConfig::default()).await
    }

    /// Starts a provider with clients, users and settings on `127.0.0.1:0`.
    pub async fn start_with(config: IdpConfig) -> std::io::Result<Self> {
        Self::bind(
            "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
            config,
        )
        .await
    }

    /// Starts a provider on `addr`.
    pub async fn bind(addr: SocketAddr, config: IdpConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let idp = Arc::new(Idp::new(format!("http://{addr}"), config)?);
        let app = router(Arc::clone(&idp));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                eprintln!("fake-idp: server error: {e}");
            }
        });
        Ok(Self {
            idp,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.idp.base_url
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Microsoft authorize URL for a tenant (`common`, `organizations`, a tenant id or domain).
    pub fn microsoft_authorize_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/authorize", self.base_url())
    }

    /// Microsoft token URL for a tenant.
    pub fn microsoft_token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.base_url())
    }

    /// Microsoft device code URL for a tenant.
    pub fn microsoft_devicecode_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/devicecode", self.base_url())
    }

    /// Google authorize URL.
    pub fn google_authorize_url(&self) -> String {
        format!("{}/o/oauth2/v2/auth", self.base_url())
    }

    /// Google token URL.
    pub fn google_token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// RFC 7662 introspection URL (for Dovecot's `introspection_url`).
    pub fn introspection_url(&self) -> String {
        format!("{}/introspect", self.base_url())
    }

    /// Registers (or replaces) a client.
    pub fn add_client(&self, client: ClientConfig) {
        self.idp.add_client(client);
    }

    /// Registers (or replaces) a user.
    pub fn add_user(&self, user: UserConfig) {
        self.idp.add_user(user);
    }

    /// Sets the user who signs in when no `login_hint` is given.
    pub fn set_default_user(&self, email: &str) {
        self.update_settings(SettingsPatch {
            default_user: Some(Some(email.to_owned())),
            ..SettingsPatch::default()
        });
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.idp.settings()
    }

    /// Changes some settings; returns the result.
    pub fn update_settings(&self, patch: SettingsPatch) -> Settings {
        self.idp.patch_settings(patch)
    }

    /// `expires_in` of access tokens issued from now on.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.update_settings(SettingsPatch {
            access_token_lifetime_secs: Some(lifetime.as_secs()),
            ..SettingsPatch::default()
        });
    }

    /// Microsoft: whether a used refresh token stops working (default `true`).
    pub fn set_revoke_used_refresh_tokens(&self, revoke: bool) {
        self.update_settings(SettingsPatch {
            revoke_used_refresh_tokens: Some(revoke),
            ..SettingsPatch::default()
        });
    }

    /// Delay every token endpoint answer (timeout tests).
    pub fn set_token_delay(&self, delay: Duration) {
        self.update_settings(SettingsPatch {
            token_delay_ms: Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
            ..SettingsPatch::default()
        });
    }

    /// Device flow polling interval (announced and enforced with `slow_down`); 0 disables.
    pub fn set_device_poll_interval(&self, secs: u64) {
        self.update_settings(SettingsPatch {
            device_poll_interval_secs: Some(secs),
            ..SettingsPatch::default()
        });
    }

    /// Device code lifetime (`None`: the provider's default).
    pub fn set_device_code_lifetime(&self, secs: Option<u64>) {
        self.update_settings(SettingsPatch {
            device_code_lifetime_secs: Some(secs),
            ..SettingsPatch::default()
        });
    }

    /// Make introspection answer 503 (`false`) or work again (`true`).
    pub fn set_introspection_available(&self, available: bool) {
        self.update_settings(SettingsPatch {
            introspection_available: Some(available),
            ..SettingsPatch::default()
        });
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.idp.stats()
    }

    /// Zeroes the counters.
    pub fn reset_stats(&self) {
        self.idp.reset_stats();
    }

    /// Make the token endpoint answer `fault.count` times with an HTTP error.
    pub fn fail_token_requests(&self, fault: TokenHttpFault) {
        self.idp.arm_http_fault(fault);
    }

    /// Queue an OAuth error answer for the next matching token request(s).
    pub fn fail_next_token_request(&self, fault: TokenErrorFault) {
        self.idp.push_token_error(fault);
    }

    /// Queue an error redirect for the next authorize or admin consent request.
    pub fn fail_next_authorize(&self, fault: AuthorizeErrorFault) {
        self.idp.push_authorize_error(fault);
    }

    /// Removes every armed or queued fault.
    pub fn clear_faults(&self) {
        self.idp.clear_faults();
    }

    /// Makes every live access token expired now; returns how many there were.
    pub fn expire_access_tokens(&self) -> usize {
        self.idp.expire_access_tokens()
    }

    /// Revokes one refresh token; `false` when unknown.
    pub fn revoke_refresh_token(&self, token: &str) -> bool {
        self.idp.revoke_refresh_token(token)
    }

    /// Revokes one access token; `false` when unknown.
    pub fn revoke_access_token(&self, token: &str) -> bool {
        self.idp.revoke_access_token(token)
    }

    /// Revokes every token of a user; returns how many.
    pub fn revoke_user_tokens(&self, email: &str) -> usize {
        self.idp.revoke_user(email)
    }

    /// Device authorizations waiting for a decision, oldest first.
    pub fn pending_device_codes(&self) -> Vec<PendingDevice> {
        self.idp.pending_devices()
    }

    /// Approves a pending device authorization (by user code, or the latest) as `user` (or the
    /// default user).
    pub fn approve_device(
        &self,
        user_code: Option<&str>,
        user: Option<&str>,
    ) -> Result<PendingDevice, ControlError> {
        self.idp.decide_device(user_code, user, true)
    }

    /// Declines a pending device authorization (by user code, or the latest).
    pub fn deny_device(&self, user_code: Option<&str>) -> Result<PendingDevice, ControlError> {
        self.idp.decide_device(user_code, None, false)
    }

    /// Stops serving and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// All routes of the provider.
fn router(idp: Arc<Idp>) -> Router {
    Router::new()
        // Microsoft identity platform v2.0
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(authorize::ms_authorize),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(token::ms_token))
        .route(
            "/{tenant}/oauth2/v2.0/devicecode",
            post(device::ms_devicecode),
        )
        .route(
            "/{tenant}/v2.0/adminconsent",
            get(authorize::ms_admin_consent),
        )
        .route(
            "/common/oauth2/deviceauth",
            get(device::verification_page).post(device::verification_submit),
        )
        // Google
        .route("/o/oauth2/v2/auth", get(authorize::google_auth))
        .route("/token", post(token::google_token))
        .route("/device/code", post(device::google_devicecode))
        .route(
            "/device",
            get(device::verification_page).post(device::verification_submit),
        )
        .route("/v1/userinfo", get(resource::userinfo))
        .route("/revoke", post(resource::revoke))
        // RFC 7662
        .route(
            "/introspect",
            post(resource::introspect).get(resource::introspect),
        )
        .merge(control::routes())
        .with_state(idp)
}
