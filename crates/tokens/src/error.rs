//! Why no token could be had, with the underlying error kept as the source: [`RefreshError`] for
//! one refresh, [`Error`] for a caller asking for a token. Each says whether waiting may help
//! ([`FailureKind`]); at the [`TokenSource`](oauthimap_types::TokenSource) boundary an [`Error`]
//! becomes the plain [`TokenError`] protocol clients share.
//!
//! Messages are those the service has always recorded (`last_error`, events, notices), so
//! wrapping an error changes what a program can inspect, not what a person reads.

use oauthimap_oauth::{OAuthError, ProfileError};
use oauthimap_store::StoreError;
use oauthimap_types::{AccountId, AccountState, FailureKind, TokenError};

use crate::state::{AccountEvent, IllegalTransition};

/// Why one refresh did not give new tokens.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The token endpoint refused, failed or could not be reached; its own kind decides
    /// (`invalid_grant` is permanent, HTTP 503 transient).
    #[error(transparent)]
    Provider(#[from] OAuthError),
    /// The application's provider settings give no usable profile. Permanent.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The application is switched off. Permanent.
    #[error("application {0} is deactivated")]
    ApplicationInactive(String),
    /// The account holds no refresh token (named by its mailbox). Permanent.
    #[error("account {0} has no refresh token: authorize it again")]
    NoRefreshToken(String),
    /// Reading the application, its client secret or the refresh token failed. Permanent, as it
    /// has always been: the account is marked `needs_reauth` (even for a passing database fault).
    #[error(transparent)]
    ReadSetup(StoreError),
    /// The database failed around the refresh (reading the account, taking the lease, storing
    /// the new tokens). Transient: the next attempt comes soon.
    #[error(transparent)]
    Store(StoreError),
    /// The provider answered 429 for this application a moment ago; no request was sent.
    /// Transient.
    #[error(
        "the provider asked application {application} to wait (HTTP 429); refreshes resume in {seconds} s"
    )]
    Throttled { application: String, seconds: i64 },
    /// Another instance holds the account's refresh lease. Transient.
    #[error("another instance is refreshing this account")]
    Busy,
    /// The account is in a state that is not refreshed. Permanent.
    #[error("account {id} is {state}")]
    NotRefreshable { id: AccountId, state: AccountState },
    /// The state machine refused the change the outcome called for; nothing was written.
    /// Permanent.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// The account left the states `event` may happen in while the refresh was under way
    /// (revoked, or marked for a new sign-in by another instance): the outcome was not recorded
    /// and no token comes of it. Permanent.
    #[error(
        "account {id} was revoked or marked for a new sign-in during the refresh; authorize it again"
    )]
    MovedOn { id: AccountId, event: AccountEvent },
}

impl RefreshError {
    /// Whether waiting and retrying may help.
    pub fn kind(&self) -> FailureKind {
        match self {
            RefreshError::Provider(e) => e.kind(),
            RefreshError::Store(_) | RefreshError::Throttled { .. } | RefreshError::Busy => {
                FailureKind::Transient
            }
            RefreshError::Profile(_)
            | RefreshError::ApplicationInactive(_)
            | RefreshError::NoRefreshToken(_)
            | RefreshError::ReadSetup(_)
            | RefreshError::NotRefreshable { .. }
            | RefreshError::Illegal(_)
            | RefreshError::MovedOn { .. } => FailureKind::Permanent,
        }
    }

    /// Seconds the provider asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            RefreshError::Provider(e) => e.retry_after(),
            _ => None,
        }
    }

    /// The provider's OAuth error code (`invalid_grant`), if it sent one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            RefreshError::Provider(e) => e.error_code(),
            _ => None,
        }
    }
}

/// Why [`TokenService::fresh_token`](crate::TokenService::fresh_token) gave no token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such account. Permanent.
    #[error("account {0} does not exist")]
    NoSuchAccount(AccountId),
    /// The account serves no tokens until someone signs in again. Permanent.
    #[error("account {id} ({mailbox}) is {state}: {reason}; authorize it again")]
    NotServing {
        id: AccountId,
        mailbox: String,
        state: AccountState,
        /// The account's last error, or "no token".
        reason: String,
    },
    /// The database failed while reading the account or taking the lease. Transient.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another instance held the account's refresh lease for longer than we wait. Transient.
    #[error("another instance has been refreshing the token of account {0} for too long")]
    OtherInstanceTooLong(AccountId),
    /// The refresh said it stored a token, but none was found after it. Permanent.
    #[error("the refreshed token was not stored")]
    NotStored,
    /// The refresh this call made (or waited for) failed; its kind decides.
    #[error(transparent)]
    Refresh(#[from] RefreshError),
}

impl Error {
    /// Whether waiting and retrying may help.
    pub fn kind(&self) -> FailureKind {
        match self {
            Error::Store(_) | Error::OtherInstanceTooLong(_) => FailureKind::Transient,
            Error::NoSuchAccount(_) | Error::NotServing { .. } | Error::NotStored => {
                FailureKind::Permanent
            }
            Error::Refresh(e) => e.kind(),
        }
    }
}

impl From<Error> for TokenError {
    /// The plain form protocol clients share: the kind, and the message a person reads.
    fn from(e: Error) -> Self {
        TokenError {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::AccountEvent;

    fn not_found() -> StoreError {
        StoreError::NotFound {
            what: "account",
            key: "7".into(),
        }
    }

    #[test]
    fn provider_errors_keep_their_kind_and_source() {
        let refused = oauthimap_oauth::errors::classify_provider_error(
            "refresh the access token",
            "invalid_grant",
            None,
        );
        let e = Error::from(RefreshError::from(refused.clone()));
        assert_eq!(e.kind(), FailureKind::Permanent);
        assert_eq!(e.to_string(), refused.to_string());
        assert!(matches!(
            &e,
            Error::Refresh(RefreshError::Provider(OAuthError::Provider { error, .. })) if error == "invalid_grant"
        ));

        let busy = RefreshError::from(OAuthError::Http {
            action: "refresh the access token",
            status: 503,
            retry_after: Some(7),
        });
        assert_eq!(busy.kind(), FailureKind::Transient);
        assert_eq!(busy.retry_after(), Some(7));
        assert_eq!(busy.error_code(), None);
        let plain = TokenError::from(Error::from(busy));
        assert_eq!(plain.kind, FailureKind::Transient);
        assert!(
            plain.message.contains("HTTP 503, retry after 7s"),
            "{plain}"
        );
    }

    #[test]
    fn database_faults_are_transient_around_a_refresh_and_permanent_inside_it() {
        // Reading the account or taking the lease: transient, message unchanged.
        let e = Error::from(not_found());
        assert_eq!(e.kind(), FailureKind::Transient);
        assert_eq!(e.to_string(), not_found().to_string());
        assert!(matches!(e, Error::Store(StoreError::NotFound { .. })));
        assert_eq!(
            RefreshError::Store(not_found()).kind(),
            FailureKind::Transient
        );
        // Reading what the refresh needs: permanent (the behaviour before errors had types).
        assert_eq!(
            RefreshError::ReadSetup(not_found()).kind(),
            FailureKind::Permanent
        );
    }

    #[test]
    fn refused_transitions_and_setup_problems_are_permanent() {
        let illegal = IllegalTransition {
            from: AccountState::NeedsReauth,
            event: AccountEvent::Refreshed,
        };
        let e = Error::from(RefreshError::from(illegal));
        assert_eq!(e.kind(), FailureKind::Permanent);
        assert_eq!(
            e.to_string(),
            "cannot apply refreshed to an account that is needs_reauth"
        );
        // A refresh whose account was revoked under it gives no token and no retry.
        let e = Error::from(RefreshError::MovedOn {
            id: AccountId(3),
            event: AccountEvent::Refreshed,
        });
        assert_eq!(e.kind(), FailureKind::Permanent);
        assert_eq!(
            e.to_string(),
            "account 3 was revoked or marked for a new sign-in during the refresh; authorize it again"
        );
        let e = RefreshError::NoRefreshToken("help@contoso.com".into());
        assert_eq!(e.kind(), FailureKind::Permanent);
        assert_eq!(
            e.to_string(),
            "account help@contoso.com has no refresh token: authorize it again"
        );
        let e = Error::NotServing {
            id: AccountId(3),
            mailbox: "help@contoso.com".into(),
            state: AccountState::NeedsReauth,
            reason: "invalid_grant".into(),
        };
        let plain = TokenError::from(e);
        assert_eq!(plain.kind, FailureKind::Permanent);
        assert_eq!(
            plain.message,
            "account 3 (help@contoso.com) is needs_reauth: invalid_grant; authorize it again"
        );
    }

    #[test]
    fn wrappers_keep_the_error_they_wrap() {
        let profile = ProfileError::Invalid {
            field: "tenant",
            message: "is missing".into(),
        };
        let e = Error::from(RefreshError::from(profile));
        assert_eq!(e.to_string(), "tenant: is missing");
        assert_eq!(e.kind(), FailureKind::Permanent);
        assert!(matches!(
            e,
            Error::Refresh(RefreshError::Profile(ProfileError::Invalid {
                field: "tenant",
                ..
            }))
        ));
    }
}
