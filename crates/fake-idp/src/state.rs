//! The provider's memory: registered clients and users, issued codes and tokens, pending device
//! authorizations, queued faults and counters, behind one mutex.
//!
//! Also the operations that the Rust API and the control endpoints share (revoke, expire, approve,
//! settings), so both drive exactly the same code. Nothing here renders HTTP.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::model::{
    AuthorizeErrorFault, ClientConfig, Counter, Flavour, IdpConfig, PendingDevice, Settings,
    SettingsPatch, Stats, TokenErrorFault, TokenHttpFault, UserConfig,
};
use crate::util::{Rng, now_unix};

/// An authorization code waiting to be redeemed.
#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub flavour: Flavour,
    pub client_id: String,
    pub redirect_uri: String,
    pub user_email: String,
    pub scopes: Vec<String>,
    /// S256 code challenge, when PKCE was used.
    pub challenge: Option<String>,
    pub nonce: Option<String>,
    pub tenant_id: String,
    /// Whether redeeming it yields a refresh token.
    pub with_refresh: bool,
    pub expires_at: u64,
}

/// An issued access token.
#[derive(Debug, Clone)]
pub(crate) struct AccessRecord {
    pub flavour: Flavour,
    pub client_id: String,
    /// `None` for app-only tokens.
    pub user_email: Option<String>,
    pub scope: String,
    pub aud: String,
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    pub revoked: bool,
    pub grant_id: u64,
}

/// An issued refresh token.
#[derive(Debug, Clone)]
pub(crate) struct RefreshRecord {
    pub flavour: Flavour,
    pub client_id: String,
    pub user_email: String,
    pub scopes: Vec<String>,
    pub tenant_id: String,
    pub grant_id: u64,
    /// Microsoft: it has been exchanged for a successor.
    pub used: bool,
    pub revoked: bool,
    pub last_used: u64,
}

/// The user's answer to a device authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Pending,
    Approved(String),
    Denied,
}

/// A device authorization (RFC 8628).
#[derive(Debug, Clone)]
pub(crate) struct DeviceRecord {
    pub flavour: Flavour,
    pub user_code: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub tenant_id: String,
    pub created: u64,
    pub expires_at: u64,
    pub last_poll: Option<Instant>,
    pub decision: Decision,
}

/// Everything mutable.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub settings: Settings,
    pub clients: HashMap<String, ClientConfig>,
    pub users: Vec<UserConfig>,
    pub codes: HashMap<String, AuthCode>,
    pub redeemed_codes: HashSet<String>,
    pub access: HashMap<String, AccessRecord>,
    pub refresh: HashMap<String, RefreshRecord>,
    /// Keyed by device code.
    pub devices: HashMap<String, DeviceRecord>,
    /// Google (client id, user) pairs that already consented to offline access.
    pub google_consents: HashSet<(String, String)>,
    pub admin_consents: HashSet<(String, String)>,
    pub http_fault: Option<TokenHttpFault>,
    pub token_errors: VecDeque<TokenErrorFault>,
    pub authorize_errors: VecDeque<AuthorizeErrorFault>,
    pub stats: Stats,
    pub next_grant_id: u64,
}

impl State {
    /// The user with this email (case-insensitive).
    pub(crate) fn user(&self, email: &str) -> Option<&UserConfig> {
        self.users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
    }

    /// A new grant family id (all tokens descending from one consent share it).
    pub(crate) fn new_grant_id(&mut self) -> u64 {
        self.next_grant_id += 1;
        self.next_grant_id
    }

    /// Counts a token request of `grant_type`.
    pub(crate) fn count_token(&mut self, grant_type: &str, ok: bool) {
        let key = match grant_type {
            "authorization_code"
            | "refresh_token"
            | "client_credentials"
            | "urn:ietf:params:oauth:grant-type:device_code" => grant_type,
            _ => "other",
        };
        bump(self.stats.token.entry(key.to_owned()).or_default(), ok);
    }

    /// Takes the next queued token error fault that applies to `grant_type`.
    pub(crate) fn take_token_error(&mut self, grant_type: &str) -> Option<TokenErrorFault> {
        let idx = self
            .token_errors
            .iter()
            .position(|f| f.grant_type.as_deref().is_none_or(|g| g == grant_type))?;
        let fault = self.token_errors.get_mut(idx)?;
        fault.count = fault.count.saturating_sub(1);
        let out = fault.clone();
        if fault.count == 0 {
            self.token_errors.remove(idx);
        }
        Some(out)
    }

    /// Takes one use of the token HTTP fault, if any is armed.
    pub(crate) fn take_http_fault(&mut self) -> Option<TokenHttpFault> {
        let fault = self.http_fault.as_mut()?;
        fault.count = fault.count.saturating_sub(1);
        let out = fault.clone();
        if fault.count == 0 {
            self.http_fault = None;
        }
        Some(out)
    }
}

/// Adds one request to `c`, as a success or an error.
pub(crate) fn bump(c: &mut Counter, ok: bool) {
    c.requests += 1;
    if ok {
        c.successes += 1;
    } else {
        c.errors += 1;
    }
}

/// Why a control operation could not be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// No pending device authorization matches.
    NoPendingDevice,
    /// The named user is not registered.
    UnknownUser(String),
    /// No user named and no default user configured.
    NoUser,
    /// The request was not valid for this operation.
    Invalid(String),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoPendingDevice => write!(f, "no pending device authorization matches"),
            Self::UnknownUser(u) => write!(f, "cannot approve as {u}: no such user registered"),
            Self::NoUser => write!(f, "cannot approve: no user given and no default user set"),
            Self::Invalid(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ControlError {}

/// The shared provider: configuration, memory and randomness.
#[derive(Debug)]
pub(crate) struct Idp {
    pub rng: Rng,
    pub jwt_key: [u8; 32],
    pub base_url: String,
    state: Mutex<State>,
}

impl Idp {
    pub(crate) fn new(base_url: String, config: IdpConfig) -> std::io::Result<Self> {
        let rng = Rng::from_os()?;
        let jwt_key = rng.jwt_key();
        let mut state = State {
            settings: config.settings,
            ..State::default()
        };
        for c in config.clients {
            state.clients.insert(c.client_id.clone(), c);
        }
        state.users = config.users;
        Ok(Self {
            rng,
            jwt_key,
            base_url,
            state: Mutex::new(state),
        })
    }

    /// Locks the state; a panic elsewhere never makes the fixture unusable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn add_client(&self, client: ClientConfig) {
        self.lock().clients.insert(client.client_id.clone(), client);
    }

    pub(crate) fn add_user(&self, user: UserConfig) {
        let mut st = self.lock();
        st.users
            .retain(|u| !u.email.eq_ignore_ascii_case(&user.email));
        st.users.push(user);
    }

    pub(crate) fn patch_settings(&self, p: SettingsPatch) -> Settings {
        let mut st = self.lock();
        let s = &mut st.settings;
        if let Some(v) = p.access_token_lifetime_secs {
            s.access_token_lifetime_secs = v;
        }
        if let Some(v) = p.revoke_used_refresh_tokens {
            s.revoke_used_refresh_tokens = v;
        }
        if let Some(v) = p.refresh_token_max_idle_secs {
            s.refresh_token_max_idle_secs = v;
        }
        if let Some(v) = p.device_poll_interval_secs {
            s.device_poll_interval_secs = v;
        }
        if let Some(v) = p.device_code_lifetime_secs {
            s.device_code_lifetime_secs = v;
        }
        if let Some(v) = p.token_delay_ms {
            s.token_delay_ms = v;
        }
        if let Some(v) = p.introspection_available {
            s.introspection_available = v;
        }
        if let Some(v) = p.default_user {
            s.default_user = v;
        }
        if let Some(v) = p.default_tenant_id {
            s.default_tenant_id = v;
        }
        s.clone()
    }

    pub(crate) fn settings(&self) -> Settings {
        self.lock().settings.clone()
    }

    pub(crate) fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    pub(crate) fn reset_stats(&self) {
        self.lock().stats = Stats::default();
    }

    pub(crate) fn arm_http_fault(&self, fault: TokenHttpFault) {
        self.lock().http_fault = (fault.count > 0).then_some(fault);
    }

    pub(crate) fn push_token_error(&self, fault: TokenErrorFault) {
        if fault.count > 0 {
            self.lock().token_errors.push_back(fault);
        }
    }

    pub(crate) fn push_authorize_error(&self, fault: AuthorizeErrorFault) {
        self.lock().authorize_errors.push_back(fault);
    }

    pub(crate) fn clear_faults(&self) {
        let mut st = self.lock();
        st.http_fault = None;
        st.token_errors.clear();
        st.authorize_errors.clear();
    }

    /// Makes every live access token expired now; returns how many were live.
    pub(crate) fn expire_access_tokens(&self) -> usize {
        let now = now_unix();
        let mut st = self.lock();
        let mut n = 0;
        for rec in st.access.values_mut() {
            if rec.exp > now {
                rec.exp = now.saturating_sub(1);
                n += 1;
            }
        }
        n
    }

    /// Revokes one refresh token; returns whether it was known.
    pub(crate) fn revoke_refresh_token(&self, token: &str) -> bool {
        match self.lock().refresh.get_mut(token) {
            Some(rec) => {
                rec.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Revokes one access token; returns whether it was known.
    pub(crate) fn revoke_access_token(&self, token: &str) -> bool {
        match self.lock().access.get_mut(token) {
            Some(rec) => {
                rec.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Revokes every access and refresh token of a user; returns how many tokens were revoked.
    pub(crate) fn revoke_user(&self, email: &str) -> usize {
        let mut st = self.lock();
        let mut n = 0;
        for rec in st.access.values_mut() {
            if rec
                .user_email
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(email))
                && !rec.revoked
            {
                rec.revoked = true;
                n += 1;
            }
        }
        for rec in st.refresh.values_mut() {
            if rec.user_email.eq_ignore_ascii_case(email) && !rec.revoked {
                rec.revoked = true;
                n += 1;
            }
        }
        st.google_consents
            .retain(|(_, u)| !u.eq_ignore_ascii_case(email));
        n
    }

    /// Revokes a whole grant family (Google's `/revoke`): every token sharing `grant_id`.
    pub(crate) fn revoke_grant(st: &mut State, grant_id: u64) {
        for rec in st.access.values_mut() {
            if rec.grant_id == grant_id {
                rec.revoked = true;
            }
        }
        for rec in st.refresh.values_mut() {
            if rec.grant_id == grant_id {
                rec.revoked = true;
            }
        }
    }

    pub(crate) fn pending_devices(&self) -> Vec<PendingDevice> {
        let now = now_unix();
        let st = self.lock();
        let mut out: Vec<(u64, PendingDevice)> = st
            .devices
            .values()
            .filter(|d| d.decision == Decision::Pending)
            .map(|d| {
                (
                    d.created,
                    PendingDevice {
                        user_code: d.user_code.clone(),
                        client_id: d.client_id.clone(),
                        scope: d.scopes.join(" "),
                        flavour: d.flavour,
                        expires_in: d.expires_at.saturating_sub(now),
                    },
                )
            })
            .collect();
        out.sort_by_key(|(created, _)| *created);
        out.into_iter().map(|(_, d)| d).collect()
    }

    /// Approves (`approve = true`) or denies a pending device authorization, chosen by user code
    /// (case and hyphen insensitive) or, without one, the most recent pending one.
    pub(crate) fn decide_device(
        &self,
        user_code: Option<&str>,
        user: Option<&str>,
        approve: bool,
    ) -> Result<PendingDevice, ControlError> {
        let now = now_unix();
        let mut st = self.lock();
        let email = if approve {
            let name = user
                .map(str::to_owned)
                .or_else(|| st.settings.default_user.clone())
                .ok_or(ControlError::NoUser)?;
            let u = st
                .user(&name)
                .ok_or_else(|| ControlError::UnknownUser(name.clone()))?;
            Some(u.email.clone())
        } else {
            None
        };
        let wanted = user_code.map(normalize_user_code);
        let key = st
            .devices
            .iter()
            .filter(|(_, d)| d.decision == Decision::Pending && d.expires_at > now)
            .filter(|(_, d)| {
                wanted
                    .as_deref()
                    .is_none_or(|w| normalize_user_code(&d.user_code) == w)
            })
            .max_by_key(|(_, d)| d.created)
            .map(|(k, _)| k.clone())
            .ok_or(ControlError::NoPendingDevice)?;
        let dev = st
            .devices
            .get_mut(&key)
            .ok_or(ControlError::NoPendingDevice)?;
        dev.decision = match email {
            Some(e) => Decision::Approved(e),
            None => Decision::Denied,
        };
        Ok(PendingDevice {
            user_code: dev.user_code.clone(),
            client_id: dev.client_id.clone(),
            scope: dev.scopes.join(" "),
            flavour: dev.flavour,
            expires_in: dev.expires_at.saturating_sub(now),
        })
    }

    /// Resolves the tenant in a Microsoft path to a tenant id (`tid`).
    pub(crate) fn tenant_id(st: &State, path_tenant: &str, user: Option<&UserConfig>) -> String {
        if let Some(t) = user.and_then(|u| u.tenant_id.clone()) {
            return t;
        }
        match path_tenant.to_ascii_lowercase().as_str() {
            "common" | "organizations" => st.settings.default_tenant_id.clone(),
            // The tenant of personal Microsoft accounts.
            "consumers" => "9188040d-6c67-4c5b-b112-36a304b66dad".to_owned(),
            t if is_guid(t) => t.to_owned(),
            t => crate::util::stable_guid(&format!("tenant:{t}")),
        }
    }
}

/// Whether a Microsoft tenant path segment names one tenant (not common/organizations/consumers).
pub(crate) fn is_specific_tenant(t: &str) -> bool {
    !matches!(
        t.to_ascii_lowercase().as_str(),
        "common" | "organizations" | "consumers"
    )
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// User codes compare without case and separators (`ABCD-EFGH` == `abcdefgh`).
pub(crate) fn normalize_user_code(c: &str) -> String {
    c.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}
