//! Vocabulary shared by every oauthimap crate: identifiers, provider kinds, account states and the
//! error taxonomy that decides what happens after a failure (retry or ask a human).
//!
//! This crate does no I/O and holds no policy: it only names things so that the store, the OAuth
//! client, the IMAP layer and the shells agree on them.

mod child;
pub mod net;
pub mod units;

use std::fmt;
use std::str::FromStr;

pub use child::child_env;

use serde::{Deserialize, Serialize};

/// Declares a string-backed enum with a stable wire/storage name per variant, `Display`,
/// `FromStr` (with an error listing the accepted names) and serde in the same spelling.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name used in storage, the CLI and the API.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.trim().to_ascii_lowercase().as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        what: $what,
                        given: s.to_owned(),
                        accepted: &[$($text),+],
                    }),
                }
            }
        }
    };
}

/// A name that is not one of an enum's accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}: use one of {}", accepted.join(", "))]
pub struct UnknownName {
    pub what: &'static str,
    pub given: String,
    pub accepted: &'static [&'static str],
}

named_enum!(
    /// Which identity provider an application is registered at.
    Provider, "provider" {
        /// Microsoft Entra ID (Azure AD), identity platform v2.0.
        Microsoft = "microsoft",
        /// Google Identity (Gmail and Google Workspace).
        Google = "google",
        /// Any other OAuth 2.0 server, with explicit endpoints.
        Generic = "generic",
    }
);

named_enum!(
    /// The Microsoft cloud an Entra application lives in (national clouds have their own hosts).
    Cloud, "cloud" {
        /// The worldwide cloud (`login.microsoftonline.com`).
        Global = "global",
        /// US Government GCC High (`login.microsoftonline.us`).
        UsGov = "usgov",
        /// US Government `DoD` (`login.microsoftonline.us`, `DoD` IMAP host).
        Dod = "dod",
        /// China, operated by 21Vianet (`login.chinacloudapi.cn`).
        China = "china",
    }
);

named_enum!(
    /// How an account's tokens were granted.
    GrantKind, "grant kind" {
        /// Browser sign-in with the authorization code flow (PKCE).
        AuthorizationCode = "authorization_code",
        /// Device code flow (RFC 8628) for headless servers.
        DeviceCode = "device_code",
        /// App-only access with the client credentials grant (no user, no refresh token).
        ClientCredentials = "client_credentials",
    }
);

named_enum!(
    /// The health of an account's grant. Only the token service changes it, and only to the
    /// state its machine gives (`oauthimap_tokens::transition`, whose module holds the full
    /// table); the store writes the state it is given, as a [`StateChange`] guarded by the
    /// states it may leave from. Accounts in `Active` and `Failing` serve and refresh tokens; the
    /// others wait for a person to sign in again.
    AccountState, "account state" {
        /// The grant works: the access token is valid or renewable. Entered by a sign-in (new
        /// or again) and by every successful refresh. Left when a refresh fails transiently
        /// (`Failing`) or for good (`NeedsReauth`), or when the application's client ID or
        /// tenant changes (`Revoked`).
        Active = "active",
        /// Recent refreshes failed transiently (network, timeout, HTTP 408/429/5xx): the
        /// current token is kept while it lasts, and refreshes are retried with back-off
        /// (`failure_count`, `next_attempt_at`). Left by a successful refresh (`Active`, event
        /// `account.recovered`), a permanent failure (`NeedsReauth`), a sign-in (`Active`) or
        /// a revocation (`Revoked`).
        Failing = "failing",
        /// The provider refused the grant for good (`invalid_grant` after one retry,
        /// `invalid_client`, ...) or a refresh cannot be attempted (no refresh token,
        /// application deactivated): the access token is dropped, the account's receivers
        /// paused, a person notified once. Serves no tokens. Left only by a sign-in (`Active`,
        /// receivers resumed) or a revocation.
        NeedsReauth = "needs_reauth",
        /// The grant was dropped because an administrator changed the application's client ID
        /// or tenant: tokens deleted, receivers switched off. Serves no tokens. Left only by a
        /// sign-in (`Active`).
        Revoked = "revoked",
    }
);

named_enum!(
    /// How a receiver secures its IMAP connection.
    Security, "security" {
        /// TLS from the first byte (port 993).
        Tls = "tls",
        /// Plain connection upgraded with STARTTLS (port 143); refused if the server does not offer it.
        StartTls = "starttls",
        /// No TLS at all: only allowed to loopback addresses.
        Plain = "plain",
    }
);

named_enum!(
    /// The SASL mechanism a receiver logs in with.
    Mechanism, "SASL mechanism" {
        /// OAUTHBEARER when offered, else XOAUTH2.
        Auto = "auto",
        /// Google's and Microsoft's XOAUTH2.
        Xoauth2 = "xoauth2",
        /// RFC 7628 OAUTHBEARER.
        Oauthbearer = "oauthbearer",
    }
);

named_enum!(
    /// What wakes a receiver up.
    Trigger, "trigger" {
        /// IMAP IDLE where offered, with polling as fallback.
        Idle = "idle",
        /// Poll at the receiver's interval.
        Poll = "poll",
    }
);

named_enum!(
    /// What a receiver does on the server with a message once the sink has it.
    AfterDelivery, "after-delivery action" {
        /// Set `\Seen`.
        MarkSeen = "mark_seen",
        /// Move to the accepted folder.
        Move = "move",
        /// Delete (and expunge).
        Delete = "delete",
    }
);

named_enum!(
    /// Where collected messages go.
    SinkKind, "sink" {
        /// The built-in store (database and data folder).
        Store = "store",
        /// An HTTPS webhook receiving the normalized JSON.
        Webhook = "webhook",
        /// A maildir folder.
        Maildir = "maildir",
        /// A command reading the raw message on stdin (like an MDA).
        Command = "command",
    }
);

named_enum!(
    /// What a receiver is doing right now, the same word everywhere (CLI, REST, web UI,
    /// `/metrics`). Written by the instance that runs it; `off` and `paused` are derived from the
    /// receiver's settings.
    ReceiverState, "receiver state" {
        /// Waiting for new mail in IMAP IDLE.
        Idle = "idle",
        /// Waiting for the next poll.
        Polling = "polling",
        /// A pass is fetching, parsing and delivering.
        Collecting = "collecting",
        /// Connecting, logging in or collecting failed; the next try is scheduled.
        BackingOff = "backing_off",
        /// The sink is down (a transient failure): the receiver's line is held at one message
        /// until the sink takes it.
        WaitingForSink = "waiting_for_sink",
        /// Every pass slot is busy (`collector.max_concurrent_passes`), or the account's
        /// connection cap is reached.
        WaitingForSlot = "waiting_for_slot",
        /// The account needs a new sign-in, or the application is off: nothing to do until then.
        Paused = "paused",
        /// Another instance holds this receiver's lease.
        Held = "held",
        /// Switched off.
        Off = "off",
        /// Active, but no instance has reported on it yet (no `serve` running).
        NotRunning = "not_running",
    }
);

impl Provider {
    /// How long the provider keeps a refresh token that goes unused before it drops it
    /// (Microsoft: 90 days of inactivity; Google: six months unused), or `None` when unknown.
    pub fn refresh_token_idle_lifetime(self) -> Option<std::time::Duration> {
        const DAY: u64 = 86_400;
        match self {
            Provider::Microsoft => Some(std::time::Duration::from_secs(90 * DAY)),
            Provider::Google => Some(std::time::Duration::from_secs(180 * DAY)),
            Provider::Generic => None,
        }
    }
}

impl AccountState {
    /// The words shown to people (the stable name stays in `--json` and REST).
    pub fn label(self) -> &'static str {
        match self {
            AccountState::Active => "Active",
            AccountState::Failing => "Refresh failing, retrying",
            AccountState::NeedsReauth => "Needs a new sign-in",
            AccountState::Revoked => "Revoked",
        }
    }
}

/// One write of an account's state, as the token service's state machine allows it
/// (`oauthimap_tokens::change_for`): the account moves to `to` only if, when the write happens,
/// it is still in one of `from`. A write whose account has moved on meanwhile (revoked while a
/// refresh was in flight, say) changes nothing, and the store reports that no row changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The states the change may leave from; never empty.
    pub from: Vec<AccountState>,
    /// The state it leads to.
    pub to: AccountState,
}

impl StateChange {
    /// Whether an account in `state` would take this change.
    pub fn applies_to(&self, state: AccountState) -> bool {
        self.from.contains(&state)
    }
}

impl GrantKind {
    /// The words shown to people.
    pub fn label(self) -> &'static str {
        match self {
            GrantKind::AuthorizationCode => "Signed-in user",
            GrantKind::DeviceCode => "Signed-in user (device code)",
            GrantKind::ClientCredentials => "App-only",
        }
    }
}

impl ReceiverState {
    /// The words shown to people.
    pub fn label(self) -> &'static str {
        match self {
            ReceiverState::Idle => "running (IDLE)",
            ReceiverState::Polling => "running (polling)",
            ReceiverState::Collecting => "collecting",
            ReceiverState::BackingOff => "failing, retrying",
            ReceiverState::WaitingForSink => "waiting for its sink",
            ReceiverState::WaitingForSlot => "waiting for a slot",
            ReceiverState::Paused => "paused",
            ReceiverState::Held => "held by another instance",
            ReceiverState::Off => "switched off",
            ReceiverState::NotRunning => "not running",
        }
    }

    /// Whether an admin should look at it.
    pub fn needs_attention(self) -> bool {
        matches!(
            self,
            ReceiverState::BackingOff | ReceiverState::WaitingForSink | ReceiverState::Paused
        )
    }
}

/// Exponential back-off with jitter, the one schedule for every retry loop: the `failures`-th
/// consecutive failure waits between half and all of `base * 2^(failures-1)`, capped at `cap`
/// (so retries of many receivers spread out instead of arriving together). `random` is any
/// uniformly random number (the caller's source, so this crate stays free of I/O).
pub fn backoff(
    failures: u32,
    base: std::time::Duration,
    cap: std::time::Duration,
    random: u64,
) -> std::time::Duration {
    let exp = failures.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exp).min(cap);
    let half = full / 2;
    let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    half + std::time::Duration::from_millis(if spread == 0 {
        0
    } else {
        random % (spread + 1)
    })
}

/// Declares an integer row id newtype.
macro_rules! id_type {
    ($($(#[$meta:meta])* $name:ident;)+) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    )+};
}

id_type! {
    /// Row id of an OAuth application.
    AppId;
    /// Row id of an account (an authorization for one mailbox).
    AccountId;
    /// Row id of a receiver (mail collector).
    ReceiverId;
    /// Row id of an event.
    EventId;
}

/// Whether a failure may heal by itself. This decides everything downstream: a transient failure
/// keeps the token and retries with backoff; a permanent one needs a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Network errors, timeouts, HTTP 408/429/5xx, a server that cannot validate tokens right now.
    Transient,
    /// Refused credentials or grants: retrying without a change will not help.
    Permanent,
}

/// What a token endpoint handed out, ready to be sealed and stored.
#[derive(Debug, Clone)]
pub struct TokenSet {
    /// The bearer token IMAP logs in with.
    pub access_token: secrecy::SecretString,
    /// When the access token stops working.
    pub expires_at: EpochMillis,
    /// The refresh token, when the grant has one; `None` keeps the stored one.
    pub refresh_token: Option<secrecy::SecretString>,
    /// The scopes granted, space-separated as the provider returned them.
    pub scopes: String,
}

/// An access token handed to a protocol client, with its expiry. `Debug` never shows the token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub secret: secrecy::SecretString,
    pub expires_at: EpochMillis,
}

/// Why no token could be had, and whether waiting may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    pub kind: FailureKind,
    pub message: String,
}

/// Where protocol clients (IMAP, SMTP, the token broker) get access tokens from. The token service
/// implements it with refresh-ahead and single flight; tests implement it with fixed tokens.
pub trait TokenSource: Send + Sync {
    /// A token valid for a while yet. With `force_refresh`, a new one even if the current token
    /// looks valid: the server just refused it.
    fn access_token(
        &self,
        force_refresh: bool,
    ) -> impl std::future::Future<Output = Result<AccessToken, TokenError>> + Send;
}

/// Milliseconds since the Unix epoch: the one timestamp representation in storage and APIs.
pub type EpochMillis = i64;

/// The current time in epoch milliseconds.
pub fn now_millis() -> EpochMillis {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The last second RFC 3339 (and humantime) can write: 9999-12-31T23:59:59Z.
const LAST_RFC3339_MILLIS: EpochMillis = 253_402_300_799_000;

/// Epoch milliseconds as RFC 3339 in UTC, to the second (`2026-11-28T10:00:00Z`), for people;
/// `None` before 1970. Times after the year 9999 (any `i64` can come from the REST API) show as
/// its last second.
pub fn rfc3339_seconds(ms: EpochMillis) -> Option<String> {
    let ms = u64::try_from(ms.min(LAST_RFC3339_MILLIS)).ok()?;
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    Some(humantime::format_rfc3339_seconds(at).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_up_to_the_year_9999() {
        assert_eq!(rfc3339_seconds(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339_seconds(1_795_860_000_999).as_deref(),
            Some("2026-11-28T10:00:00Z")
        );
        assert_eq!(rfc3339_seconds(-1), None);
        assert_eq!(rfc3339_seconds(i64::MIN), None);
        for ms in [LAST_RFC3339_MILLIS, LAST_RFC3339_MILLIS + 1_000, i64::MAX] {
            assert_eq!(
                rfc3339_seconds(ms).as_deref(),
                Some("9999-12-31T23:59:59Z"),
                "{ms}"
            );
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        use std::time::Duration;
        let (base, cap) = (Duration::from_secs(2), Duration::from_mins(15));
        for (failures, full) in [(1, 2), (2, 4), (3, 8), (9, 512), (10, 900), (100, 900)] {
            let full = Duration::from_secs(full);
            assert_eq!(
                backoff(failures, base, cap, 0),
                full / 2,
                "least wait of try {failures}"
            );
            assert_eq!(
                backoff(failures, base, cap, u64::MAX),
                full / 2
                    + Duration::from_millis(
                        u64::MAX % (u64::try_from((full / 2).as_millis()).unwrap() + 1)
                    )
            );
            for r in [1, 7, 1_000_003, u64::MAX / 3] {
                let d = backoff(failures, base, cap, r);
                assert!(
                    d >= full / 2 && d <= full,
                    "try {failures}: {d:?} within [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
        assert_eq!(
            backoff(0, base, cap, 5),
            Duration::from_secs(1) + Duration::from_millis(5)
        );
    }

    #[test]
    fn receiver_states_have_stable_names_and_labels() {
        for s in ReceiverState::ALL {
            assert_eq!(s.as_str().parse::<ReceiverState>().unwrap(), *s);
            assert!(!s.label().is_empty());
        }
        assert_eq!(ReceiverState::WaitingForSink.as_str(), "waiting_for_sink");
    }

    #[test]
    fn names_round_trip_and_errors_list_choices() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>().unwrap(), *p);
        }
        assert_eq!(
            "MICROSOFT".parse::<Provider>().unwrap(),
            Provider::Microsoft
        );
        let err = "yahoo".parse::<Provider>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown provider \"yahoo\": use one of microsoft, google, generic"
        );
        assert_eq!(
            serde_json::to_string(&AccountState::NeedsReauth).unwrap(),
            "\"needs_reauth\""
        );
    }
}
