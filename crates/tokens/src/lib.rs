//! Tokens that never die silently. [`TokenService`] hands out a valid access token for an
//! account, refreshing it when it is close to expiry; however many callers ask at once, in one
//! process or in several instances sharing a database, the provider sees one refresh (an
//! in-process lock per account, then a database lease). A background refresher renews tokens
//! ahead of expiry and keeps refresh tokens warm so Microsoft's 90-day inactivity limit never
//! bites.
//!
//! Outcomes decide everything: a transient failure (network, 408, 429, 5xx) keeps the token and
//! backs off; a permanent one (`invalid_grant` after one retry, `invalid_client`,
//! `unauthorized_client`) marks the account `needs_reauth`, pauses its receivers, records an
//! event and notifies once. Re-authorizing restores the account and its receivers.
//!
//! Every account state it writes comes from one pure function, [`transition`] (the table is in
//! the `state` module); errors keep their source ([`Error`], [`RefreshError`]) until the
//! [`TokenSource`] boundary flattens them into a [`TokenError`](oauthimap_types::TokenError).
//!
//! This crate speaks neither IMAP nor HTTP to users: protocol clients get tokens through the
//! [`TokenSource`] trait.

mod error;
mod notify;
mod refresher;
mod service;
mod state;

pub use error::{Error, RefreshError};
pub use notify::{Notice, Notifier, NotifySettings};
pub use oauthimap_types::TokenSource;
pub use service::{
    AccountTokenSource, PAUSED_NEEDS_REAUTH, RefreshOutcome, TokenService, TokenSettings,
    profile_of,
};
pub use state::{
    AccountEvent, IllegalTransition, change_for, new_account_state, serves_tokens, transition,
};
