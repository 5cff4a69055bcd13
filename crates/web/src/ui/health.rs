//! The overview (`/`): counts by state, what needs attention soon (client secrets near their
//! expiry, refresh tokens about to die from disuse, accounts that need a human, receivers that
//! are paused or cannot deliver), every account by application and every receiver with its
//! state, and the latest events. An empty install gets the three steps to start instead.
//!
//! The rules (what needs attention, how urgent) are the core's ([`Core::overview`]); this module
//! puts them into words and the page.

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use oauthimap_app::views::{Event, Receiver, ReceiverActivity};
use oauthimap_app::{
    AccountGroup, Attention, AttentionKind, AttentionSubject, Core, GettingStarted, HealthReport,
};
use oauthimap_types::Provider;

use super::session::Admin;
use super::{Page, PageContext, error_page, format_time, relative};

/// Something an admin should look at, in words, most urgent first.
#[derive(Debug)]
struct Item {
    /// `error` (broken now) or `warn` (breaks soon).
    level: &'static str,
    /// What it is about, such as `Account ann@example.com`.
    subject: String,
    href: String,
    detail: String,
    /// An account that needs a new sign-in: the entry carries the "Sign in again" button.
    reauthorize: Option<i64>,
}

#[derive(Template)]
#[template(path = "health.html")]
struct HealthPage {
    page: Page,
    /// Accounts per state, only states that occur: (state, label, count).
    account_states: Vec<(&'static str, &'static str, usize)>,
    /// (state, label, how many receivers are in it), the non-empty ones.
    receiver_states: Vec<(&'static str, &'static str, usize)>,
    /// Messages that failed to reach their sink (retried or dead letters), over all receivers.
    undelivered: i64,
    messages: i64,
    attention: Vec<Item>,
    groups: Vec<AccountGroup>,
    receivers: Vec<(Receiver, ReceiverActivity)>,
    events: Vec<Event>,
    /// Getting started, until a mailbox is authorized: which steps are done (application,
    /// account, receiver).
    steps: Option<(bool, bool, bool)>,
}

pub async fn page(State(app): State<Core>, admin: Admin, headers: HeaderMap) -> Response {
    // A database that fails here shows as an error, never as zeros and empty lists that say
    // all is well.
    let report: HealthReport = match app.overview().await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&admin), &e),
    };
    let account_states = report
        .account_states
        .iter()
        .map(|(s, n)| (s.as_str(), s.label(), *n))
        .collect();
    let receiver_states = report
        .receiver_states
        .iter()
        .map(|(s, n)| (s.as_str(), s.label(), *n))
        .collect();
    let steps = report.getting_started.map(
        |GettingStarted {
             application,
             account,
             receiver,
         }| (application, account, receiver),
    );
    let ctx = PageContext::new(&app, &admin, &headers, "health", "Health");
    let page = ctx.page.clone();
    let mut r = ctx.render(&HealthPage {
        page,
        account_states,
        receiver_states,
        undelivered: report.undelivered,
        messages: report.messages,
        attention: report.attention.iter().map(item).collect(),
        groups: report.groups,
        receivers: report.receivers,
        events: report.events,
        steps,
    });
    // "Sign in again" posts to us and is redirected to the provider: the page's form-action
    // must allow those sign-in origins.
    if !report.sign_in_origins.is_empty() {
        r.extensions_mut()
            .insert(super::session::FormAction(report.sign_in_origins.join(" ")));
    }
    r
}

/// An attention entry in words, with its link.
fn item(a: &Attention) -> Item {
    let (subject, href) = match &a.subject {
        AttentionSubject::Application { id, name } => {
            (format!("Application {name}"), format!("/applications/{id}"))
        }
        AttentionSubject::Account { id, mailbox } => {
            (format!("Account {mailbox}"), format!("/accounts/{id}"))
        }
        AttentionSubject::Receiver { id, name } => {
            (format!("Receiver {name}"), format!("/receivers/{id}"))
        }
    };
    Item {
        level: a.severity.as_str(),
        subject,
        href,
        detail: detail(&a.kind),
        reauthorize: a.reauthorize().map(|id| id.0),
    }
}

/// What to tell the admin, and what to do about it.
fn detail(kind: &AttentionKind) -> String {
    use std::fmt::Write as _;
    let last = |e: &Option<String>| {
        e.as_deref()
            .map(|e| format!(" Last error: {e}"))
            .unwrap_or_default()
    };
    match kind {
        AttentionKind::SecretExpires { at } => format!(
            "The client secret expires ({}). Create a new secret at the provider and enter it \
             in the application's settings before then.",
            relative(Some(*at)),
        ),
        AttentionKind::SecretExpired { at } => format!(
            "The client secret expired ({}). Create a new secret at the provider and enter it \
             in the application's settings: token renewals fail until then.",
            relative(Some(*at)),
        ),
        AttentionKind::NeedsReauth { last_error } => format!(
            "The provider no longer accepts its refresh token: sign in again.{}",
            last(last_error)
        ),
        AttentionKind::Revoked { last_error } => format!(
            "Its authorization was revoked: sign in again.{}",
            last(last_error)
        ),
        AttentionKind::RenewalsFail { last_error } => format!(
            "Token renewals fail; they are retried automatically.{}",
            last(last_error)
        ),
        AttentionKind::IdleRefreshToken {
            provider,
            idle_days,
            since,
            lifetime_days,
        } => format!(
            "Its refresh token has not been used for {idle_days} days (since {}); {} drops \
             refresh tokens unused for {lifetime_days} days. Let a receiver collect with it, or \
             re-authorize.",
            format_time(*since),
            provider_name(*provider),
        ),
        AttentionKind::ReceiverPaused { reason } => format!("Paused: {reason}"),
        AttentionKind::ReceiverFailing {
            state,
            since,
            detail,
            next_at,
        } => {
            let label = state.label();
            let mut text = label[..1].to_uppercase() + &label[1..];
            let _ = write!(text, " since {}", relative(Some(*since)));
            if let Some(why) = detail {
                let _ = write!(text, ": {why}");
            }
            if let Some(next) = next_at {
                let _ = write!(text, " (next try {})", relative(Some(*next)));
            }
            text
        }
        AttentionKind::Undelivered { count } => format!(
            "{count} message(s) did not reach the sink; they are retried, or can be sent again \
             from the receiver's page."
        ),
    }
}

/// A provider's name in a sentence.
fn provider_name(provider: Provider) -> &'static str {
    match provider {
        Provider::Microsoft => "Microsoft",
        Provider::Google => "Google",
        Provider::Generic => "the provider",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauthimap_app::Severity;
    use oauthimap_types::{AccountId, AppId};

    #[test]
    fn attention_reads_as_before() {
        let now = oauthimap_types::now_millis();
        let secret = item(&Attention {
            severity: Severity::Warning,
            subject: AttentionSubject::Application {
                id: AppId(1),
                name: "Helpdesk".into(),
            },
            kind: AttentionKind::SecretExpires {
                at: now + 10 * 86_400_000 + 60_000,
            },
        });
        assert_eq!(secret.level, "warn");
        assert_eq!(secret.subject, "Application Helpdesk");
        assert_eq!(secret.href, "/applications/1");
        assert_eq!(
            secret.detail,
            "The client secret expires (in 10 d). Create a new secret at the provider and enter \
             it in the application's settings before then."
        );
        let idle = item(&Attention {
            severity: Severity::Warning,
            subject: AttentionSubject::Account {
                id: AccountId(7),
                mailbox: "ann@example.com".into(),
            },
            kind: AttentionKind::IdleRefreshToken {
                provider: Provider::Microsoft,
                idle_days: 70,
                since: 0,
                lifetime_days: 90,
            },
        });
        assert_eq!(idle.href, "/accounts/7");
        assert_eq!(idle.reauthorize, None);
        assert!(
            idle.detail.starts_with(
                "Its refresh token has not been used for 70 days (since 1970-01-01 00:00 UTC); \
                 Microsoft drops refresh tokens unused for 90 days."
            ),
            "{}",
            idle.detail
        );
        let broken = item(&Attention {
            severity: Severity::Error,
            subject: AttentionSubject::Account {
                id: AccountId(7),
                mailbox: "ann@example.com".into(),
            },
            kind: AttentionKind::NeedsReauth {
                last_error: Some("invalid_grant".into()),
            },
        });
        assert_eq!(broken.level, "error");
        assert_eq!(broken.reauthorize, Some(7));
        assert!(broken.detail.ends_with("Last error: invalid_grant"));
    }
}
