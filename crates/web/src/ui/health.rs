//! The overview (`/`): counts by state, what needs attention soon (client secrets near their
//! expiry, refresh tokens about to die from disuse, accounts that need a human, receivers that
//! are paused or cannot deliver), every account by application and every receiver with its
//! state, and the latest events. An empty install gets the three steps to start instead.

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use oauthimap_app::App;
use oauthimap_app::store::{Account, Application, Event, Receiver, ReceiverActivity};
use oauthimap_app::types::{AccountState, EpochMillis, GrantKind, Provider, now_millis};

use super::session::Admin;
use super::{Ctx, Page, at, error_page, relative};

const DAY_MS: i64 = 86_400_000;
/// Client secrets expiring within this many days are listed.
const SECRET_WARNING_DAYS: i64 = 30;
/// Events shown at the bottom.
const RECENT_EVENTS: u32 = 20;

/// The provider's name, after how many days without use its refresh tokens die, and after how
/// many we warn (Microsoft: 90 days of inactivity; Google: six months unused).
fn refresh_lifetime(provider: Provider) -> Option<(&'static str, i64, i64)> {
    match provider {
        Provider::Microsoft => Some(("Microsoft", 90, 60)),
        Provider::Google => Some(("Google", 180, 150)),
        Provider::Generic => None,
    }
}

/// Something an admin should look at, most urgent first.
#[derive(Debug)]
struct Attention {
    /// `error` (broken now) or `warn` (breaks soon).
    level: &'static str,
    /// What it is about, such as `Account ann@example.com`.
    subject: String,
    href: String,
    detail: String,
    /// An account that needs a new sign-in: the entry carries the "Sign in again" button.
    reauthorize: Option<i64>,
}

impl Attention {
    fn new(level: &'static str, subject: String, href: String, detail: String) -> Self {
        Self {
            level,
            subject,
            href,
            detail,
            reauthorize: None,
        }
    }
}

/// Accounts of one application.
struct Group {
    application: Application,
    accounts: Vec<Account>,
}

#[derive(Template)]
#[template(path = "health.html")]
struct HealthPage {
    page: Page,
    /// Accounts per state, only states that occur: (state, count).
    account_states: Vec<(&'static str, &'static str, usize)>,
    /// (state, label, how many receivers are in it), the non-empty ones.
    receiver_states: Vec<(&'static str, &'static str, usize)>,
    /// Messages that failed to reach their sink (retried or dead letters), over all receivers.
    undelivered: i64,
    messages: i64,
    attention: Vec<Attention>,
    groups: Vec<Group>,
    receivers: Vec<(Receiver, ReceiverActivity)>,
    events: Vec<Event>,
    /// Getting started, until a mailbox is authorized: which steps are done (application,
    /// account, receiver).
    steps: Option<(bool, bool, bool)>,
}

pub async fn page(State(app): State<App>, admin: Admin, headers: HeaderMap) -> Response {
    let applications = match app.list_applications().await {
        Ok(a) => a,
        Err(e) => return error_page(Some(&admin), &e),
    };
    let accounts = match app.list_accounts(None).await {
        Ok(a) => a,
        Err(e) => return error_page(Some(&admin), &e),
    };
    let receivers = match app.list_receivers().await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&admin), &e),
    };
    // A database that fails here shows as an error, never as zeros and empty lists that say
    // all is well.
    let mut rows = Vec::with_capacity(receivers.len());
    for r in receivers {
        match app.store().receiver_activity(r.id).await {
            Ok(activity) => rows.push((r, activity)),
            Err(e) => return error_page(Some(&admin), &e.into()),
        }
    }
    let events = match app.store().events(None, None, RECENT_EVENTS).await {
        Ok(e) => e,
        Err(e) => return error_page(Some(&admin), &e.into()),
    };
    let messages = match app.store().message_count().await {
        Ok(n) => n,
        Err(e) => return error_page(Some(&admin), &e.into()),
    };

    let now = now_millis();
    let attention = attention(now, &applications, &accounts, &rows);
    let account_states = AccountState::ALL
        .iter()
        .map(|s| {
            (
                s.as_str(),
                s.label(),
                accounts.iter().filter(|a| a.state == *s).count(),
            )
        })
        .filter(|(_, _, n)| *n > 0)
        .collect();
    let receiver_states = oauthimap_app::types::ReceiverState::ALL
        .iter()
        .map(|s| {
            (
                s.as_str(),
                s.label(),
                rows.iter().filter(|(r, _)| r.state == *s).count(),
            )
        })
        .filter(|(_, _, n)| *n > 0)
        .collect();
    let undelivered = rows.iter().map(|(_, a)| a.failing).sum();
    // Until a mailbox is authorized (a receiver is optional: the token broker needs none).
    let steps = (applications.is_empty() || accounts.is_empty()).then_some((
        !applications.is_empty(),
        !accounts.is_empty(),
        !rows.is_empty(),
    ));
    let mut accounts = accounts;
    let groups: Vec<Group> = applications
        .into_iter()
        .map(|application| {
            let (mine, rest) = accounts
                .drain(..)
                .partition(|a| a.application_id == application.id);
            accounts = rest;
            Group {
                application,
                accounts: mine,
            }
        })
        .collect();

    let origins = sign_in_origins(&app, &groups).await;
    let ctx = Ctx::new(&app, &admin, &headers, "health", "Health");
    let page = ctx.page.clone();
    let mut r = ctx.render(&HealthPage {
        page,
        account_states,
        receiver_states,
        undelivered,
        messages,
        attention,
        groups,
        receivers: rows,
        events,
        steps,
    });
    if !origins.is_empty() {
        r.extensions_mut()
            .insert(super::session::FormAction(origins.join(" ")));
    }
    r
}

/// "Sign in again" posts to us and is redirected to the provider: the page's form-action must
/// allow the sign-in origin of each application with an account that needs it.
async fn sign_in_origins(app: &App, groups: &[Group]) -> Vec<String> {
    let mut origins: Vec<String> = Vec::new();
    for g in groups {
        if g.accounts
            .iter()
            .any(|a| matches!(a.state, AccountState::NeedsReauth | AccountState::Revoked))
            && let Ok(view) = app.application_view(&g.application.id.to_string()).await
        {
            let origin = view.profile.authorize_url.origin().ascii_serialization();
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
    }
    origins
}

/// What needs attention, errors first.
fn attention(
    now: EpochMillis,
    applications: &[Application],
    accounts: &[Account],
    receivers: &[(Receiver, ReceiverActivity)],
) -> Vec<Attention> {
    let mut items = Vec::new();
    for a in applications {
        if let Some(expires) = a.fields.secret_expires_at
            && expires - now <= SECRET_WARNING_DAYS * DAY_MS
        {
            let expired = expires <= now;
            items.push(Attention {
                level: if expired { "error" } else { "warn" },
                reauthorize: None,
                subject: format!("Application {}", a.fields.name),
                href: format!("/applications/{}", a.id),
                detail: format!(
                    "The client secret {} ({}). Create a new secret at the provider and enter it \
                     in the application's settings{}.",
                    if expired { "expired" } else { "expires" },
                    relative(Some(expires)),
                    if expired {
                        ": token renewals fail until then"
                    } else {
                        " before then"
                    },
                ),
            });
        }
    }
    for a in accounts {
        let provider = applications
            .iter()
            .find(|app| app.id == a.application_id)
            .map(|app| app.fields.provider);
        let subject = format!("Account {}", a.mailbox);
        let href = format!("/accounts/{}", a.id);
        let error = a
            .last_error
            .as_deref()
            .map(|e| format!(" Last error: {e}"))
            .unwrap_or_default();
        let item = match a.state {
            AccountState::NeedsReauth => Some((
                "error",
                format!("The provider no longer accepts its refresh token: sign in again.{error}"),
            )),
            AccountState::Revoked => Some((
                "error",
                format!("Its authorization was revoked: sign in again.{error}"),
            )),
            AccountState::Failing => Some((
                "warn",
                format!("Token renewals fail; they are retried automatically.{error}"),
            )),
            AccountState::Active | AccountState::Refreshing => {
                stale_refresh_token(now, a, provider).map(|detail| ("warn", detail))
            }
            AccountState::Disabled => None,
        };
        if let Some((level, detail)) = item {
            items.push(Attention {
                level,
                subject,
                href,
                detail,
                reauthorize: matches!(a.state, AccountState::NeedsReauth | AccountState::Revoked)
                    .then_some(a.id.0),
            });
        }
    }
    for (r, activity) in receivers {
        let subject = format!("Receiver {}", r.fields.name);
        let href = format!("/receivers/{}", r.id);
        if r.fields.active
            && let Some(reason) = &r.paused_reason
        {
            items.push(Attention::new(
                "warn",
                subject.clone(),
                href.clone(),
                format!("Paused: {reason}"),
            ));
        }
        items.extend(
            failing(r).map(|detail| Attention::new("error", subject.clone(), href.clone(), detail)),
        );
        if activity.failing > 0 {
            items.push(Attention {
                level: "warn",
                subject,
                href,
                reauthorize: None,
                detail: format!(
                    "{} message(s) did not reach the sink; they are retried, or can be sent \
                     again from the receiver's page.",
                    activity.failing
                ),
            });
        }
    }
    items.sort_by_key(|i| i.level != "error");
    items
}

/// What a receiver that keeps failing (backing off, or waiting for its sink) tells the admin:
/// since when, why, and the next try.
fn failing(r: &Receiver) -> Option<String> {
    use std::fmt::Write as _;
    let status = r.status.as_ref().filter(|s| {
        s.state == r.state
            && matches!(
                r.state,
                oauthimap_app::types::ReceiverState::BackingOff
                    | oauthimap_app::types::ReceiverState::WaitingForSink
            )
    })?;
    let label = r.state.label();
    let mut detail = label[..1].to_uppercase() + &label[1..];
    let _ = write!(detail, " since {}", crate::ui::relative(Some(status.since)));
    if let Some(why) = &status.detail {
        let _ = write!(detail, ": {why}");
    }
    if let Some(next) = status.next_at {
        let _ = write!(detail, " (next try {})", crate::ui::relative(Some(next)));
    }
    Some(detail)
}

/// A warning when an account's refresh token has gone unused for long enough that the provider
/// will soon drop it.
fn stale_refresh_token(
    now: EpochMillis,
    account: &Account,
    provider: Option<Provider>,
) -> Option<String> {
    if account.grant_kind == GrantKind::ClientCredentials || !account.has_refresh_token {
        return None;
    }
    let (name, dies, warn) = refresh_lifetime(provider?)?;
    let last = account.refresh_last_used_at.or(account.refresh_issued_at)?;
    let days = (now - last) / DAY_MS;
    (days >= warn).then(|| {
        format!(
            "Its refresh token has not been used for {days} days (since {}); {name} drops \
             refresh tokens unused for {dies} days. Let a receiver collect with it, or \
             re-authorize.",
            at(last),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauthimap_app::store::ApplicationFields;
    use oauthimap_app::types::{AccountId, AppId, Cloud};

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
                endpoints: oauthimap_app::store::Endpoints::default(),
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
    fn expiring_secrets_and_idle_refresh_tokens_are_flagged() {
        let now = 1_000 * DAY_MS;
        let soon = application(Provider::Microsoft, Some(now + 10 * DAY_MS));
        let items = attention(now, &[soon], &[], &[]);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].level, "warn");
        assert!(items[0].detail.contains("expires"), "{}", items[0].detail);

        let later = application(Provider::Microsoft, Some(now + 90 * DAY_MS));
        assert!(attention(now, &[later], &[], &[]).is_empty());

        let past = application(Provider::Microsoft, Some(now - DAY_MS));
        assert_eq!(attention(now, &[past], &[], &[])[0].level, "error");

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
        assert!(items[0].detail.contains("70 days"), "{}", items[0].detail);
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
        let very_idle = account(AccountState::Active, Some(now - 160 * DAY_MS));
        assert_eq!(attention(now, &[google], &[very_idle], &[]).len(), 1);
        let fresh = account(AccountState::Active, Some(now - DAY_MS));
        assert!(attention(now, std::slice::from_ref(&ms), &[fresh], &[]).is_empty());

        // Accounts that need a human come first, with their last error.
        let broken = account(AccountState::NeedsReauth, Some(now));
        let items = attention(
            now,
            &[application(Provider::Microsoft, Some(now + DAY_MS))],
            &[broken],
            &[],
        );
        assert_eq!(items[0].level, "error");
        assert!(items[0].detail.contains("invalid_grant"));
        assert_eq!(items[1].level, "warn");
    }
}
