//! The records the store reads and writes. Secrets never appear here in plaintext: a record says
//! whether a secret is set, and dedicated calls open it for the one caller that needs it.

use oauthimap_types::{
    AccountId, AccountState, AfterDelivery, AppId, Cloud, EpochMillis, EventId, GrantKind,
    Mechanism, Provider, ReceiverId, Security, SinkKind, Trigger,
};
use secrecy::SecretString;
use serde::Serialize;

/// Endpoint overrides of an application. For Microsoft and Google, `base` replaces the provider's
/// sign-in host (national clouds, testing); for generic OAuth2, the explicit URLs are required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    pub base: Option<String>,
    pub authorize: Option<String>,
    pub token: Option<String>,
    pub device: Option<String>,
    pub userinfo: Option<String>,
}

/// The non-secret fields of an application, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplicationFields {
    pub name: String,
    pub active: bool,
    pub provider: Provider,
    pub cloud: Cloud,
    pub client_id: String,
    pub tenant: Option<String>,
    pub endpoints: Endpoints,
    /// Space-separated scopes; `None` means the provider profile's defaults.
    pub scopes: Option<String>,
    /// When the client secret expires, if the admin told us (for early warnings).
    pub secret_expires_at: Option<EpochMillis>,
    pub comment: String,
}

/// An OAuth application as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Application {
    pub id: AppId,
    #[serde(flatten)]
    pub fields: ApplicationFields,
    /// Whether a client secret is stored (its value is never returned).
    pub has_client_secret: bool,
    pub account_count: i64,
    pub receiver_count: i64,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
}

/// What else must change, in the same transaction, when an application is updated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplicationCascade {
    /// Deactivate every receiver of the application, with this reason.
    pub deactivate_receivers: Option<String>,
    /// Drop every account's tokens and move it to the revoked state, with a reason.
    pub revoke_accounts: Option<Revocation>,
    /// Re-activate the receivers that were paused with exactly this reason and still have an
    /// account.
    pub reactivate_paused_for: Option<String>,
}

/// The accounts of an application lose their grants: each one still in one of `change.from`
/// moves to `change.to` (the token service's state machine gives both) with `reason` as its last
/// error, and its tokens are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub change: oauthimap_types::StateChange,
    pub reason: String,
}

/// What an application update did beyond the application row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CascadeReport {
    pub receivers_deactivated: u64,
    pub receivers_reactivated: u64,
    pub accounts_revoked: u64,
}

/// How to treat the client secret in an update.
#[derive(Debug, Clone)]
pub enum SecretChange {
    Keep,
    Set(SecretString),
    Clear,
}

/// An account: one mailbox reachable through one application.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub id: AccountId,
    pub application_id: AppId,
    pub application_name: String,
    /// Who signed in and consented (or the application, for app-only access).
    pub identity: String,
    /// The mailbox logged in to (the SASL `user=`); differs from `identity` for shared mailboxes.
    pub mailbox: String,
    pub grant_kind: GrantKind,
    pub state: AccountState,
    pub failure_count: i64,
    pub has_access_token: bool,
    pub access_expires_at: Option<EpochMillis>,
    pub has_refresh_token: bool,
    pub refresh_issued_at: Option<EpochMillis>,
    pub refresh_last_used_at: Option<EpochMillis>,
    pub scopes: String,
    pub last_refresh_at: Option<EpochMillis>,
    pub next_attempt_at: Option<EpochMillis>,
    pub last_error: Option<String>,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
}

/// The non-secret fields of a receiver, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiverFields {
    pub name: String,
    pub active: bool,
    pub application_id: AppId,
    pub account_id: Option<AccountId>,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub mechanism: Mechanism,
    pub folder: String,
    pub trigger: Trigger,
    pub poll_interval_secs: u32,
    pub after_delivery: AfterDelivery,
    pub accepted_folder: Option<String>,
    pub refused_folder: Option<String>,
    pub size_limit_bytes: u64,
    pub sink: SinkKind,
    /// Webhook URL, maildir path or command line, depending on `sink`.
    pub sink_target: Option<String>,
    /// An extra CA certificate file to trust for this server (on-premises servers).
    pub ca_file: Option<String>,
}

/// A receiver as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Receiver {
    pub id: ReceiverId,
    #[serde(flatten)]
    pub fields: ReceiverFields,
    /// Why the receiver was switched off automatically (application deactivated, account removed…).
    pub paused_reason: Option<String>,
    /// What it is doing now: switched off or paused (from its settings), else what the
    /// instance running it last reported (`not_running` when none did).
    pub state: oauthimap_types::ReceiverState,
    /// The running instance's report: since when, why, the next try.
    pub status: Option<crate::ReceiverStatus>,
    pub has_sink_secret: bool,
    pub application_name: String,
    pub account_mailbox: Option<String>,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
}

/// Severity of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// A new audit or health record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub level: Level,
    /// A stable dotted name such as `application.updated` or `account.revoked`.
    pub kind: &'static str,
    pub application_id: Option<AppId>,
    pub account_id: Option<AccountId>,
    pub receiver_id: Option<ReceiverId>,
    pub message: String,
}

/// An event as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: EventId,
    pub at: EpochMillis,
    pub level: String,
    pub kind: String,
    pub application_id: Option<AppId>,
    pub account_id: Option<AccountId>,
    pub receiver_id: Option<ReceiverId>,
    pub message: String,
}
