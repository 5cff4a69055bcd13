//! The overview (the web UI's start page): counts by state, what needs attention and why, every
//! account by application, every receiver with its activity, and the latest events.
//!
//! The rules of "needs attention" live here: a client secret within [`WARNING_WINDOW_DAYS`] of
//! its expiry or past it; accounts that need a new sign-in or whose renewals fail; refresh tokens
//! that come within the window of the provider's idle lifetime
//! ([`Provider::refresh_token_idle_lifetime`]); receivers that are paused, keep failing or hold
//! undelivered messages. This module says what and how urgent, as data; the shells choose the
//! words and the layout. A store that fails makes the whole overview fail, never zeros or empty
//! lists that say all is well.

use oauthimap_store::{Account, Application, Event, Receiver, ReceiverActivity};
use oauthimap_types::{
    AccountId, AccountState, AppId, EpochMillis, GrantKind, Provider, ReceiverId, ReceiverState,
    now_millis,
};

use crate::{Core, Result};

const DAY_MS: i64 = 86_400_000;
/// Client secrets that expire within this many days are listed, and so are refresh tokens this
/// many days before the provider drops them for disuse.
pub const WARNING_WINDOW_DAYS: i64 = 30;
/// Events in the overview.
const RECENT_EVENTS: u32 = 20;

/// Everything the overview shows.
#[derive(Debug, Clone)]
pub struct HealthReport {
    /// Accounts per state, only the states that occur, in [`AccountState::ALL`] order.
    pub account_states: Vec<(AccountState, usize)>,
    /// Receivers per state, only the states that occur, in [`ReceiverState::ALL`] order.
    pub receiver_states: Vec<(ReceiverState, usize)>,
    /// Messages in the built-in store.
    pub messages: i64,
    /// Messages that failed to reach their sink (retried or dead letters), over all receivers.
    pub undelivered: i64,
    /// What needs attention, errors first.
    pub attention: Vec<Attention>,
    /// Every application with its accounts.
    pub groups: Vec<AccountGroup>,
    /// Every receiver with what its ledger says.
    pub receivers: Vec<(Receiver, ReceiverActivity)>,
    /// The latest events, newest first.
    pub events: Vec<Event>,
    /// The steps to start, until a mailbox is authorized (a receiver is optional: the token
    /// broker needs none).
    pub getting_started: Option<GettingStarted>,
    /// The sign-in origins of the applications with an account that needs a new sign-in
    /// ("Sign in again" is redirected there).
    pub sign_in_origins: Vec<String>,
}

/// The accounts of one application.
#[derive(Debug, Clone)]
pub struct AccountGroup {
    pub application: Application,
    pub accounts: Vec<Account>,
}

/// Which of the first steps are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GettingStarted {
    pub application: bool,
    pub account: bool,
    pub receiver: bool,
}

/// How urgent an [`Attention`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Broken now.
    Error,
    /// Breaks soon, or works with trouble.
    Warning,
}

impl Severity {
    /// The stable name: `error` or `warn` (as events spell it).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warn",
        }
    }
}

/// What an [`Attention`] is about (and where to look).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttentionSubject {
    Application { id: AppId, name: String },
    Account { id: AccountId, mailbox: String },
    Receiver { id: ReceiverId, name: String },
}

/// Why something needs attention, with the facts to say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttentionKind {
    /// The application's client secret expires within the window.
    SecretExpires { at: EpochMillis },
    /// The application's client secret has expired: token renewals fail.
    SecretExpired { at: EpochMillis },
    /// The provider no longer accepts the account's refresh token.
    NeedsReauth { last_error: Option<String> },
    /// The account's authorization was revoked.
    Revoked { last_error: Option<String> },
    /// The account's token renewals fail; they are retried.
    RenewalsFail { last_error: Option<String> },
    /// The account's refresh token has gone unused for `idle_days` (since `since`); the
    /// provider drops it after `lifetime_days`.
    IdleRefreshToken {
        provider: Provider,
        idle_days: i64,
        since: EpochMillis,
        lifetime_days: i64,
    },
    /// The receiver is switched on but paused.
    ReceiverPaused { reason: String },
    /// The receiver keeps failing (backing off, or waiting for its sink).
    ReceiverFailing {
        state: ReceiverState,
        since: EpochMillis,
        detail: Option<String>,
        next_at: Option<EpochMillis>,
    },
    /// Messages of the receiver did not reach the sink.
    Undelivered { count: i64 },
}

/// Something an admin should look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attention {
    pub severity: Severity,
    pub subject: AttentionSubject,
    pub kind: AttentionKind,
}

impl Attention {
    /// The account to sign in again, when that is the fix.
    pub fn reauthorize(&self) -> Option<AccountId> {
        match (&self.subject, &self.kind) {
            (
                AttentionSubject::Account { id, .. },
                AttentionKind::NeedsReauth { .. } | AttentionKind::Revoked { .. },
            ) => Some(*id),
            _ => None,
        }
    }
}

impl Core {
    /// The overview: what is there, what needs attention, what happened last.
    pub async fn overview(&self) -> Result<HealthReport> {
        let applications = self.list_applications().await?;
        let accounts = self.list_accounts(None).await?;
        let receivers = self.list_receivers().await?;
        let mut rows = Vec::with_capacity(receivers.len());
        for r in receivers {
            let activity = self.store().receiver_activity(r.id).await?;
            rows.push((r, activity));
        }
        let events = self.store().events(None, None, RECENT_EVENTS).await?;
        let messages = self.store().message_count().await?;

        let attention = attention(now_millis(), &applications, &accounts, &rows);
        let account_states = counts(
            AccountState::ALL,
            &accounts.iter().map(|a| a.state).collect::<Vec<_>>(),
        );
        let receiver_states = counts(
            ReceiverState::ALL,
            &rows.iter().map(|(r, _)| r.state).collect::<Vec<_>>(),
        );
        let undelivered = rows.iter().map(|(_, a)| a.failing).sum();
        let getting_started =
            (applications.is_empty() || accounts.is_empty()).then_some(GettingStarted {
                application: !applications.is_empty(),
                account: !accounts.is_empty(),
                receiver: !rows.is_empty(),
            });
        let mut accounts = accounts;
        let groups: Vec<AccountGroup> = applications
            .into_iter()
            .map(|application| {
                let (mine, rest) = accounts
                    .drain(..)
                    .partition(|a| a.application_id == application.id);
                accounts = rest;
                AccountGroup {
                    application,
                    accounts: mine,
                }
            })
            .collect();
        let sign_in_origins = self.sign_in_origins(&groups).await;
        Ok(HealthReport {
            account_states,
            receiver_states,
            messages,
            undelivered,
            attention,
            groups,
            receivers: rows,
            events,
            getting_started,
            sign_in_origins,
        })
    }

    /// The sign-in origin of each application with an account that needs a new sign-in (an
    /// application whose profile cannot be built has none to offer, and is left out).
    async fn sign_in_origins(&self, groups: &[AccountGroup]) -> Vec<String> {
        let mut origins: Vec<String> = Vec::new();
        for g in groups {
            if g.accounts
                .iter()
                .any(|a| matches!(a.state, AccountState::NeedsReauth | AccountState::Revoked))
                && let Ok(view) = self.application_view(&g.application.id.to_string()).await
            {
                let origin = view.profile.authorize_url.origin().ascii_serialization();
                if !origins.contains(&origin) {
                    origins.push(origin);
                }
            }
        }
        origins
    }
}

/// How many of `items` are in each of `all`, the ones that occur.
fn counts<S: Copy + PartialEq>(all: &[S], items: &[S]) -> Vec<(S, usize)> {
    all.iter()
        .map(|s| (*s, items.iter().filter(|i| *i == s).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// What needs attention at `now`, errors first (otherwise in the order of applications,
/// accounts, receivers).
fn attention(
    now: EpochMillis,
    applications: &[Application],
    accounts: &[Account],
    receivers: &[(Receiver, ReceiverActivity)],
) -> Vec<Attention> {
    let mut items = Vec::new();
    for a in applications {
        if let Some(at) = a.fields.secret_expires_at
            && at - now <= WARNING_WINDOW_DAYS * DAY_MS
        {
            let (severity, kind) = if at <= now {
                (Severity::Error, AttentionKind::SecretExpired { at })
            } else {
                (Severity::Warning, AttentionKind::SecretExpires { at })
            };
            items.push(Attention {
                severity,
                subject: AttentionSubject::Application {
                    id: a.id,
                    name: a.fields.name.clone(),
                },
                kind,
            });
        }
    }
    for a in accounts {
        let provider = applications
            .iter()
            .find(|app| app.id == a.application_id)
            .map(|app| app.fields.provider);
        if let Some((severity, kind)) = account_attention(now, a, provider) {
            items.push(Attention {
                severity,
                subject: AttentionSubject::Account {
                    id: a.id,
                    mailbox: a.mailbox.clone(),
                },
                kind,
            });
        }
    }
    for (r, activity) in receivers {
        let subject = AttentionSubject::Receiver {
            id: r.id,
            name: r.fields.name.clone(),
        };
        let mut add = |severity, kind| {
            items.push(Attention {
                severity,
                subject: subject.clone(),
                kind,
            });
        };
        if r.fields.active
            && let Some(reason) = &r.paused_reason
        {
            add(
                Severity::Warning,
                AttentionKind::ReceiverPaused {
                    reason: reason.clone(),
                },
            );
        }
        if let Some(kind) = failing(r) {
            add(Severity::Error, kind);
        }
        if activity.failing > 0 {
            add(
                Severity::Warning,
                AttentionKind::Undelivered {
                    count: activity.failing,
                },
            );
        }
    }
    items.sort_by_key(|i| i.severity != Severity::Error);
    items
}

/// What is wrong with an account, if anything.
fn account_attention(
    now: EpochMillis,
    a: &Account,
    provider: Option<Provider>,
) -> Option<(Severity, AttentionKind)> {
    let last_error = a.last_error.clone();
    match a.state {
        AccountState::NeedsReauth => {
            Some((Severity::Error, AttentionKind::NeedsReauth { last_error }))
        }
        AccountState::Revoked => Some((Severity::Error, AttentionKind::Revoked { last_error })),
        AccountState::Failing => Some((
            Severity::Warning,
            AttentionKind::RenewalsFail { last_error },
        )),
        AccountState::Active => {
            idle_refresh_token(now, a, provider).map(|kind| (Severity::Warning, kind))
        }
    }
}

/// A receiver that keeps failing (backing off, or waiting for its sink), as its running
/// instance reported it.
fn failing(r: &Receiver) -> Option<AttentionKind> {
    let status = r.status.as_ref().filter(|s| {
        s.state == r.state
            && matches!(
                r.state,
                ReceiverState::BackingOff | ReceiverState::WaitingForSink
            )
    })?;
    Some(AttentionKind::ReceiverFailing {
        state: r.state,
        since: status.since,
        detail: status.detail.clone(),
        next_at: status.next_at,
    })
}

/// An account whose refresh token has gone unused long enough that the provider will soon
/// drop it: within [`WARNING_WINDOW_DAYS`] of the provider's idle lifetime.
fn idle_refresh_token(
    now: EpochMillis,
    account: &Account,
    provider: Option<Provider>,
) -> Option<AttentionKind> {
    if account.grant_kind == GrantKind::ClientCredentials || !account.has_refresh_token {
        return None;
    }
    let provider = provider?;
    let lifetime_days = i64::try_from(provider.refresh_token_idle_lifetime()?.as_secs() / 86_400)
        .unwrap_or(i64::MAX);
    let since = account.refresh_last_used_at.or(account.refresh_issued_at)?;
    let idle_days = (now - since) / DAY_MS;
    (idle_days >= lifetime_days - WARNING_WINDOW_DAYS).then_some(AttentionKind::IdleRefreshToken {
        provider,
        idle_days,
        since,
        lifetime_days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauthimap_store::{ApplicationFields, Endpoints, ReceiverFields, ReceiverStatus};
    use oauthimap_types::{AfterDelivery, Cloud, Mechanism, Security, SinkKind, Trigger};

    fn application(provider: Provider, secret_expires_at: Option<i64>) -> Application {
        Application {
            id: AppId(1),
            fields: ApplicationFields {
                name: "Helpdesk".into(),
                active: true,
                provider,
                cloud: Cloud::Global,
                client_id: "c".into(),
                tenant: None,
                endpoints: Endpoints::default(),
                scopes: None,
                secret_expires_at,
                comment: String::new(),
            },
            has_client_secret: true,
            account_count: 1,
            receiver_count: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn account(state: AccountState, refresh_used: Option<i64>) -> Account {
        Account {
            id: AccountId(7),
            application_id: AppId(1),
            application_name: "Helpdesk".into(),
            identity: "ann@example.com".into(),
            mailbox: "ann@example.com".into(),
            grant_kind: GrantKind::AuthorizationCode,
            state,
            failure_count: 0,
            has_access_token: true,
            access_expires_at: None,
            has_refresh_token: true,
            refresh_issued_at: Some(0),
            refresh_last_used_at: refresh_used,
            scopes: String::new(),
            last_refresh_at: None,
            next_attempt_at: None,
            last_error: Some("invalid_grant".into()),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn refresh_token_lifetimes_are_the_providers() {
        let days = |p: Provider| {
            p.refresh_token_idle_lifetime()
                .map(|d| d.as_secs() / 86_400)
        };
        assert_eq!(days(Provider::Microsoft), Some(90));
        assert_eq!(days(Provider::Google), Some(180));
        assert_eq!(days(Provider::Generic), None);
    }

    #[test]
    fn expiring_secrets_and_idle_refresh_tokens_are_flagged() {
        let now = 1_000 * DAY_MS;
        let soon = application(Provider::Microsoft, Some(now + 10 * DAY_MS));
        let items = attention(now, &[soon], &[], &[]);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].severity, Severity::Warning);
        assert_eq!(
            items[0].kind,
            AttentionKind::SecretExpires {
                at: now + 10 * DAY_MS
            }
        );
        assert_eq!(
            items[0].subject,
            AttentionSubject::Application {
                id: AppId(1),
                name: "Helpdesk".into()
            }
        );

        let later = application(Provider::Microsoft, Some(now + 90 * DAY_MS));
        assert!(attention(now, &[later], &[], &[]).is_empty());

        let past = application(Provider::Microsoft, Some(now - DAY_MS));
        let items = attention(now, &[past], &[], &[]);
        assert_eq!(items[0].severity, Severity::Error);
        assert!(matches!(items[0].kind, AttentionKind::SecretExpired { .. }));

        // Microsoft: warned after 60 days unused, Google only after 150.
        let idle = account(AccountState::Active, Some(now - 70 * DAY_MS));
        let ms = application(Provider::Microsoft, None);
        let items = attention(
            now,
            std::slice::from_ref(&ms),
            std::slice::from_ref(&idle),
            &[],
        );
        assert_eq!(items.len(), 1);
        assert_eq!(
            items[0].kind,
            AttentionKind::IdleRefreshToken {
                provider: Provider::Microsoft,
                idle_days: 70,
                since: now - 70 * DAY_MS,
                lifetime_days: 90,
            }
        );
        assert_eq!(items[0].reauthorize(), None);
        let ms_edge = account(AccountState::Active, Some(now - 60 * DAY_MS));
        let ms_before = account(AccountState::Active, Some(now - 59 * DAY_MS));
        assert_eq!(
            attention(now, std::slice::from_ref(&ms), &[ms_edge], &[]).len(),
            1
        );
        assert!(attention(now, std::slice::from_ref(&ms), &[ms_before], &[]).is_empty());
        let google = application(Provider::Google, None);
        assert!(
            attention(
                now,
                std::slice::from_ref(&google),
                std::slice::from_ref(&idle),
                &[]
            )
            .is_empty()
        );
        let google_edge = account(AccountState::Active, Some(now - 150 * DAY_MS));
        assert_eq!(
            attention(now, std::slice::from_ref(&google), &[google_edge], &[]).len(),
            1
        );
        let generic = application(Provider::Generic, None);
        let ancient = account(AccountState::Active, Some(now - 900 * DAY_MS));
        assert!(attention(now, &[generic], &[ancient], &[]).is_empty());
        let fresh = account(AccountState::Active, Some(now - DAY_MS));
        assert!(attention(now, std::slice::from_ref(&ms), &[fresh], &[]).is_empty());
        let mut app_only = account(AccountState::Active, Some(now - 89 * DAY_MS));
        app_only.grant_kind = GrantKind::ClientCredentials;
        assert!(attention(now, std::slice::from_ref(&ms), &[app_only], &[]).is_empty());

        // Accounts that need a human come first, with their last error.
        let broken = account(AccountState::NeedsReauth, Some(now));
        let items = attention(
            now,
            &[application(Provider::Microsoft, Some(now + DAY_MS))],
            &[broken],
            &[],
        );
        assert_eq!(items[0].severity, Severity::Error);
        assert_eq!(
            items[0].kind,
            AttentionKind::NeedsReauth {
                last_error: Some("invalid_grant".into())
            }
        );
        assert_eq!(items[0].reauthorize(), Some(AccountId(7)));
        assert_eq!(items[1].severity, Severity::Warning);
        let items = attention(now, &[], &[account(AccountState::Revoked, None)], &[]);
        assert_eq!(items[0].severity, Severity::Error);
        assert_eq!(
            items[0].kind,
            AttentionKind::Revoked {
                last_error: Some("invalid_grant".into())
            }
        );
        // An active account of an unknown provider needs nobody.
        let items = attention(now, &[], &[account(AccountState::Active, None)], &[]);
        assert!(items.is_empty());
    }

    fn receiver(
        state: ReceiverState,
        paused: Option<&str>,
        failing: i64,
    ) -> (Receiver, ReceiverActivity) {
        let r = Receiver {
            id: ReceiverId(3),
            fields: ReceiverFields {
                name: "Support".into(),
                active: true,
                application_id: AppId(1),
                account_id: Some(AccountId(7)),
                host: "imap.example.com".into(),
                port: 993,
                security: Security::Tls,
                mechanism: Mechanism::Auto,
                folder: "INBOX".into(),
                trigger: Trigger::Idle,
                poll_interval_secs: 60,
                after_delivery: AfterDelivery::MarkSeen,
                accepted_folder: None,
                refused_folder: None,
                size_limit_bytes: 1 << 20,
                sink: SinkKind::Store,
                sink_target: None,
                ca_file: None,
            },
            paused_reason: paused.map(str::to_owned),
            state,
            status: Some(ReceiverStatus {
                state,
                since: 5,
                detail: Some("connection refused".into()),
                next_at: Some(9),
                instance: None,
                alerted_at: None,
                updated_at: 5,
            }),
            has_sink_secret: false,
            application_name: "Helpdesk".into(),
            account_mailbox: None,
            created_at: 0,
            updated_at: 0,
        };
        let activity = ReceiverActivity {
            failing,
            ..ReceiverActivity::default()
        };
        (r, activity)
    }

    #[test]
    fn paused_failing_and_undelivering_receivers_are_flagged() {
        let now = 1_000 * DAY_MS;
        let subject = AttentionSubject::Receiver {
            id: ReceiverId(3),
            name: "Support".into(),
        };
        assert!(attention(now, &[], &[], &[receiver(ReceiverState::Idle, None, 0)]).is_empty());

        let items = attention(
            now,
            &[],
            &[],
            &[receiver(ReceiverState::Paused, Some("no account"), 2)],
        );
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].subject, subject);
        assert_eq!(
            items[0].kind,
            AttentionKind::ReceiverPaused {
                reason: "no account".into()
            }
        );
        assert_eq!(items[1].kind, AttentionKind::Undelivered { count: 2 });
        assert!(items.iter().all(|i| i.severity == Severity::Warning));

        // Failing comes first (an error), with what its instance reported.
        let items = attention(
            now,
            &[],
            &[],
            &[receiver(ReceiverState::BackingOff, None, 1)],
        );
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].severity, Severity::Error);
        assert_eq!(
            items[0].kind,
            AttentionKind::ReceiverFailing {
                state: ReceiverState::BackingOff,
                since: 5,
                detail: Some("connection refused".into()),
                next_at: Some(9),
            }
        );
        // A report of another state than the receiver's is old news.
        let (mut stale, activity) = receiver(ReceiverState::BackingOff, None, 0);
        stale.state = ReceiverState::Idle;
        assert!(attention(now, &[], &[], &[(stale, activity)]).is_empty());
    }

    #[test]
    fn states_are_counted_in_order_only_when_they_occur() {
        let states = [
            AccountState::Failing,
            AccountState::Active,
            AccountState::Active,
        ];
        assert_eq!(
            counts(AccountState::ALL, &states),
            vec![(AccountState::Active, 2), (AccountState::Failing, 1)]
        );
    }
}
