//! The account state machine: which [`AccountEvent`] moves an account from which
//! [`AccountState`] to which. The one place that decides an account's next state; the store
//! writes the state it is given and the token service asks [`transition`] before every write.
//!
//! | from \ event  | `Authorized` | `Refreshed` | `RefreshFailedTransient` | `RefreshRejected` | `Revoked` |
//! |---------------|--------------|-------------|--------------------------|-------------------|-----------|
//! | `Active`      | `Active`     | `Active`    | `Failing`                | `NeedsReauth`     | `Revoked` |
//! | `Failing`     | `Active`     | `Active`    | `Failing`                | `NeedsReauth`     | `Revoked` |
//! | `NeedsReauth` | `Active`     | refused     | refused                  | refused           | `Revoked` |
//! | `Revoked`     | `Active`     | refused     | refused                  | refused           | `Revoked` |
//!
//! The state an event leads to depends on the event alone; the state it starts from only decides
//! whether it may happen. So each event is one guarded write, [`change_for`]: "to this state, if
//! still in one of these". The store applies it with `... WHERE state IN (from)`, so a result that
//! arrives after the account moved on (a refresh finishing after a revocation) changes nothing.
//!
//! This module does no I/O: it is a pure function, tested pair by pair below.

use std::fmt;

use oauthimap_types::{AccountState, StateChange};

/// Something that happened to an account's grant. Each variant names the code path that
/// produces it and the store function that records the resulting state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountEvent {
    /// A person signed in (browser authorization code or device code) and the provider gave
    /// tokens: a new account, or the same account authorized again. Legal from every state: a
    /// sign-in is the repair for whatever went wrong. Recorded by `Store::upsert_account`
    /// (whose fixed state `Store::AUTHORIZED_STATE` is what this event gives); an account
    /// imported from GLPI's plugin carries a sign-in's tokens and starts in the same state
    /// ([`new_account_state`], given to `Store::import_application`).
    Authorized,
    /// The token endpoint gave a new access token (and perhaps a rotated refresh token), and it
    /// was stored. From `Failing` this is a recovery (event `account.recovered`). Recorded by
    /// `Store::record_refresh`.
    Refreshed,
    /// A refresh failed in a way that may heal by itself (network, timeout, HTTP 408/429/5xx,
    /// `temporarily_unavailable`, a database error while storing the new tokens): the token is
    /// kept and the next attempt backs off. Recorded by `Store::record_transient_failure`.
    RefreshFailedTransient,
    /// The provider refused the grant for good (`invalid_grant` after one retry,
    /// `invalid_client`, `unauthorized_client`, ...), or the refresh cannot be attempted at all
    /// (no refresh token, application deactivated, provider settings invalid). A human must sign
    /// in again: the access token is dropped, receivers are paused, a notice goes out once.
    /// Recorded by `Store::lose_grant`.
    RefreshRejected,
    /// An administrator changed the application's client ID or tenant (and confirmed): the
    /// grants of all its accounts are dropped whatever their state. Recorded by
    /// `Store::update_application`'s cascade (`ApplicationCascade::revoke_accounts`, holding
    /// [`change_for`] this event).
    Revoked,
}

impl AccountEvent {
    /// Every event, in declaration order.
    pub const ALL: &'static [AccountEvent] = &[
        AccountEvent::Authorized,
        AccountEvent::Refreshed,
        AccountEvent::RefreshFailedTransient,
        AccountEvent::RefreshRejected,
        AccountEvent::Revoked,
    ];

    /// A stable snake-case name, for logs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountEvent::Authorized => "authorized",
            AccountEvent::Refreshed => "refreshed",
            AccountEvent::RefreshFailedTransient => "refresh_failed_transient",
            AccountEvent::RefreshRejected => "refresh_rejected",
            AccountEvent::Revoked => "revoked",
        }
    }
}

impl fmt::Display for AccountEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event that cannot happen to an account in that state (a refresh of an account that serves
/// no tokens, say). Nothing is written when a transition is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot apply {event} to an account that is {from}")]
pub struct IllegalTransition {
    pub from: AccountState,
    pub event: AccountEvent,
}

/// The state an account in `from` is in after `event`, or why that cannot happen.
pub fn transition(
    from: AccountState,
    event: AccountEvent,
) -> Result<AccountState, IllegalTransition> {
    if allowed(from, event) {
        Ok(target(event))
    } else {
        Err(IllegalTransition { from, event })
    }
}

/// The guarded write that records `event`: to the state it leads to, from every state it may
/// happen in. What the store is given, so that the check and the write are one statement.
pub fn change_for(event: AccountEvent) -> StateChange {
    StateChange {
        from: AccountState::ALL
            .iter()
            .copied()
            .filter(|s| allowed(*s, event))
            .collect(),
        to: target(event),
    }
}

/// The state a new account starts in: what a sign-in gives (an account is only ever created by
/// a sign-in, or by importing one from GLPI's plugin, which carries a sign-in's tokens).
pub fn new_account_state() -> AccountState {
    target(AccountEvent::Authorized)
}

/// Where `event` leads, from any state it may happen in.
fn target(event: AccountEvent) -> AccountState {
    match event {
        AccountEvent::Authorized | AccountEvent::Refreshed => AccountState::Active,
        AccountEvent::RefreshFailedTransient => AccountState::Failing,
        AccountEvent::RefreshRejected => AccountState::NeedsReauth,
        AccountEvent::Revoked => AccountState::Revoked,
    }
}

/// Whether `event` may happen to an account in `from`.
fn allowed(from: AccountState, event: AccountEvent) -> bool {
    use AccountEvent as E;
    use AccountState as S;
    match (from, event) {
        // A sign-in repairs anything, a revocation ends anything; an account that serves tokens
        // refreshes, succeeding or failing.
        (_, E::Authorized | E::Revoked)
        | (S::Active | S::Failing, E::Refreshed | E::RefreshFailedTransient | E::RefreshRejected) => {
            true
        }
        (
            S::NeedsReauth | S::Revoked,
            E::Refreshed | E::RefreshFailedTransient | E::RefreshRejected,
        ) => false,
    }
}

/// Whether an account in this state hands out access tokens (and refreshes them on demand).
/// Exactly the states a refresh may leave from.
pub fn serves_tokens(state: AccountState) -> bool {
    transition(state, AccountEvent::Refreshed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use AccountEvent as E;
    use AccountState as S;

    /// Every (state, event) pair and what it gives; `None` means refused.
    const TABLE: &[(S, E, Option<S>)] = &[
        (S::Active, E::Authorized, Some(S::Active)),
        (S::Active, E::Refreshed, Some(S::Active)),
        (S::Active, E::RefreshFailedTransient, Some(S::Failing)),
        (S::Active, E::RefreshRejected, Some(S::NeedsReauth)),
        (S::Active, E::Revoked, Some(S::Revoked)),
        (S::Failing, E::Authorized, Some(S::Active)),
        (S::Failing, E::Refreshed, Some(S::Active)),
        (S::Failing, E::RefreshFailedTransient, Some(S::Failing)),
        (S::Failing, E::RefreshRejected, Some(S::NeedsReauth)),
        (S::Failing, E::Revoked, Some(S::Revoked)),
        (S::NeedsReauth, E::Authorized, Some(S::Active)),
        (S::NeedsReauth, E::Refreshed, None),
        (S::NeedsReauth, E::RefreshFailedTransient, None),
        (S::NeedsReauth, E::RefreshRejected, None),
        (S::NeedsReauth, E::Revoked, Some(S::Revoked)),
        (S::Revoked, E::Authorized, Some(S::Active)),
        (S::Revoked, E::Refreshed, None),
        (S::Revoked, E::RefreshFailedTransient, None),
        (S::Revoked, E::RefreshRejected, None),
        (S::Revoked, E::Revoked, Some(S::Revoked)),
    ];

    #[test]
    fn every_state_and_event_pair_gives_the_table_s_answer() {
        // The table covers every pair exactly once.
        assert_eq!(TABLE.len(), S::ALL.len() * E::ALL.len());
        for from in S::ALL {
            for event in E::ALL {
                let rows: Vec<_> = TABLE
                    .iter()
                    .filter(|(s, e, _)| s == from && e == event)
                    .collect();
                assert_eq!(rows.len(), 1, "({from}, {event}) is in the table once");
            }
        }
        for &(from, event, expected) in TABLE {
            match (transition(from, event), expected) {
                (Ok(to), Some(want)) => assert_eq!(to, want, "({from}, {event})"),
                (Err(refused), None) => {
                    assert_eq!(refused, IllegalTransition { from, event });
                    assert_eq!(
                        refused.to_string(),
                        format!("cannot apply {event} to an account that is {from}")
                    );
                }
                (got, want) => panic!("({from}, {event}): got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_store_s_fixed_sign_in_state_is_what_authorizing_gives() {
        for from in S::ALL {
            assert_eq!(
                transition(*from, E::Authorized),
                Ok(oauthimap_store::Store::AUTHORIZED_STATE)
            );
        }
        // An imported account starts where a sign-in leaves one.
        assert_eq!(
            new_account_state(),
            oauthimap_store::Store::AUTHORIZED_STATE
        );
        // `Store::store_refreshed` (tests and tools planting tokens) writes `Active` too.
        assert_eq!(transition(S::Failing, E::Refreshed), Ok(S::Active));
    }

    #[test]
    fn each_event_is_one_guarded_write_that_agrees_with_the_table() {
        for event in E::ALL {
            let change = change_for(*event);
            assert!(!change.from.is_empty(), "{event} happens from some state");
            for from in S::ALL {
                match transition(*from, *event) {
                    Ok(to) => {
                        assert!(change.applies_to(*from), "({from}, {event})");
                        assert_eq!(to, change.to, "({from}, {event})");
                    }
                    Err(_) => assert!(!change.applies_to(*from), "({from}, {event})"),
                }
            }
        }
        // The races the guard closes: a refresh (or its failure) that ends after a revocation
        // or a lost grant does not bring the account back, and a rejection does not turn a
        // revoked account into one that needs a sign-in (nor notify twice).
        for event in [E::Refreshed, E::RefreshFailedTransient, E::RefreshRejected] {
            assert_eq!(change_for(event).from, [S::Active, S::Failing], "{event}");
        }
        assert_eq!(change_for(E::Revoked).from, S::ALL);
        assert_eq!(change_for(E::Authorized).from, S::ALL);
    }

    #[test]
    fn the_states_that_serve_tokens() {
        let serving: Vec<_> = S::ALL
            .iter()
            .copied()
            .filter(|s| serves_tokens(*s))
            .collect();
        assert_eq!(serving, [S::Active, S::Failing]);
        // The background refresher's filter (`Store::accounts_due`) is the same set.
        assert_eq!(oauthimap_store::Store::REFRESHABLE_STATES, serving[..]);
    }
}
