//! Collected messages of the built-in store: a search by sender, subject and collection day with
//! cursor paging, and one message in detail (addresses, headers, text, warnings, attachments to
//! download, and its HTML body sanitized and shown in a sandboxed frame).
//!
//! Everything in a message is written by whoever sent it. Templates escape it; the HTML body is
//! sanitized by the core ([`Core::message_html`]) and served from its own route under the policy
//! the core gives with it, which forbids scripts and loading anything; attachments (checked by
//! the core against their digest) and the raw message are only ever downloaded
//! (`application/octet-stream`, `attachment`), never shown in our origin.

use std::borrow::Borrow;
use std::fmt::Write as _;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oauthimap_app::views::{MessageFilter, MessageSummary, StoredMessage};
use oauthimap_app::{AppError, Core, MailAddress, MailContent, MessageView, SafeHtml};
use serde::Deserialize;

use super::session::{Admin, FramesSelf};
use super::{Page, PageContext, error_page, parse_day};

/// Messages per page of the list.
const PAGE_SIZE: u32 = 50;
const DAY_MS: i64 = 86_400_000;

/// The search form as typed (every field may be empty).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct SearchForm {
    #[serde(default)]
    sender: String,
    #[serde(default)]
    subject: String,
    /// First collection day, `YYYY-MM-DD` (UTC).
    #[serde(default)]
    since: String,
    /// Last collection day, `YYYY-MM-DD` (UTC), included.
    #[serde(default)]
    until: String,
    /// The id below which the page starts (the "Older" link).
    #[serde(default)]
    before: String,
}

impl SearchForm {
    fn filter(&self) -> Result<MessageFilter, AppError> {
        let text = |s: &str| {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_owned())
        };
        let day = |s: &str, field| {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else {
                parse_day(s, field).map(Some)
            }
        };
        let before = match self.before.trim() {
            "" => None,
            b => Some(b.parse::<i64>().map_err(|_| AppError::Invalid {
                field: "before",
                message: format!("{b:?} is not a message id; follow the Older link instead"),
            })?),
        };
        let since = day(&self.since, "since")?;
        let until = day(&self.until, "until")?.map(|d| d + DAY_MS);
        if let (Some(s), Some(u)) = (since, until)
            && u <= s
        {
            return Err(AppError::Invalid {
                field: "until",
                message: "the last day is before the first day; swap them".into(),
            });
        }
        Ok(MessageFilter {
            sender: text(&self.sender),
            subject: text(&self.subject),
            since,
            until,
            before,
        })
    }

    /// Whether any search field is set (paging aside).
    fn is_search(&self) -> bool {
        [&self.sender, &self.subject, &self.since, &self.until]
            .iter()
            .any(|s| !s.trim().is_empty())
    }

    /// This search's URL, starting below message `before`.
    fn url(&self, before: Option<i64>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("sender", &self.sender),
            ("subject", &self.subject),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !v.trim().is_empty() {
                query.append_pair(k, v.trim());
            }
        }
        if let Some(b) = before {
            query.append_pair("before", &b.to_string());
        }
        let query = query.finish();
        if query.is_empty() {
            "/messages".into()
        } else {
            format!("/messages?{query}")
        }
    }
}

#[derive(Template)]
#[template(path = "messages.html")]
struct ListPage {
    page: Page,
    form: SearchForm,
    rows: Vec<MessageSummary>,
    /// How many messages the store holds in all.
    total: i64,
    /// The next (older) page of the same search.
    older: Option<String>,
    /// The first page of the same search, when this is not it.
    newest: Option<String>,
    error: Option<String>,
}

pub async fn list(
    State(app): State<Core>,
    admin: Admin,
    headers: HeaderMap,
    Query(form): Query<SearchForm>,
) -> Response {
    let total = match app.message_count().await {
        Ok(n) => n,
        Err(e) => return error_page(Some(&admin), &e),
    };
    let (rows, older, error) = match form.filter() {
        Ok(filter) => match app.find_messages(&filter, PAGE_SIZE).await {
            Ok(found) => {
                let older = found.older.map(|id| form.url(Some(id)));
                (found.items, older, None)
            }
            Err(e) => return error_page(Some(&admin), &e),
        },
        Err(e) => (Vec::new(), None, Some(e.to_string())),
    };
    let newest = (!form.before.trim().is_empty()).then(|| form.url(None));
    let ctx = PageContext::new(&app, &admin, &headers, "messages", "Messages");
    let page = ctx.page.clone();
    ctx.render(&ListPage {
        page,
        form,
        rows,
        total,
        older,
        newest,
        error,
    })
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    page: Page,
    message: StoredMessage,
    normalized: MailContent,
    receiver: Option<String>,
}

pub async fn show(
    State(app): State<Core>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let MessageView {
        message,
        content: normalized,
        receiver,
    } = match app.message_view(id).await {
        Ok(v) => v,
        Err(e) => return error_page(Some(&admin), &e),
    };
    let title = normalized
        .subject
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "(no subject)".into());
    let ctx = PageContext::new(&app, &admin, &headers, "messages", title);
    let page = ctx.page.clone();
    let mut response = ctx.render(&MessagePage {
        page,
        message,
        normalized,
        receiver,
    });
    response.extensions_mut().insert(FramesSelf);
    response
}

/// The HTML body, sanitized, as a document of its own for the message page's sandboxed frame.
pub async fn html(State(app): State<Core>, _admin: Admin, Path(id): Path<i64>) -> Response {
    let plain = |status: StatusCode, text: String| {
        (
            status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, SafeHtml::policy()),
                (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
            ],
            text,
        )
            .into_response()
    };
    let safe = match app.message_html(id).await {
        Ok(Some(safe)) => safe,
        Ok(None) => {
            return plain(
                StatusCode::NOT_FOUND,
                format!("message {id} has no HTML body"),
            );
        }
        Err(e @ AppError::NotFound { .. }) => return plain(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a stored message");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, safe.csp),
            (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
        ],
        safe.document,
    )
        .into_response()
}

/// One attachment, downloaded (never shown in our origin).
pub async fn attachment(
    State(app): State<Core>,
    admin: Admin,
    Path((id, index)): Path<(i64, usize)>,
) -> Response {
    match app.message_attachment(id, index).await {
        Ok(a) => download(&a.filename, a.content),
        Err(e) => error_page(Some(&admin), &e),
    }
}

/// The raw message as an `.eml` file.
pub async fn raw(State(app): State<Core>, admin: Admin, Path(id): Path<i64>) -> Response {
    match app.message(id).await {
        Ok((_, raw)) => download(&format!("message-{id}.eml"), raw),
        Err(e) => error_page(Some(&admin), &e),
    }
}

/// A file download: saved under `filename`, never rendered or sniffed by the browser.
fn download(filename: &str, content: Vec<u8>) -> Response {
    let disposition = HeaderValue::from_str(&content_disposition(filename))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; sandbox"),
            ),
        ],
        content,
    )
        .into_response()
}

/// `attachment; filename="..."; filename*=UTF-8''...` (RFC 6266): an ASCII fallback name, and
/// the real one percent-encoded.
fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(filename.len() * 3);
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            let _ = write!(encoded, "%{b:02X}");
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// Addresses for people: `Name <address>`, comma-separated.
fn addresses(list: &[MailAddress]) -> String {
    list.iter()
        .map(|a| match (&a.name, &a.address) {
            (Some(n), Some(addr)) if !n.trim().is_empty() => format!("{n} <{addr}>"),
            (_, Some(addr)) => addr.clone(),
            (Some(n), None) => n.clone(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sender of a list row for people.
fn sender(m: &MessageSummary) -> String {
    match (m.from_name.trim(), m.from_address.trim()) {
        ("", "") => "(no sender)".into(),
        ("", a) => a.into(),
        (n, "") => n.into(),
        (n, a) => format!("{n} <{a}>"),
    }
}

/// An RFC 3339 UTC date (`2024-03-01T09:30:00Z`) as `2024-03-01 09:30 UTC`.
fn mail_date(date: impl Borrow<Option<String>>) -> String {
    match date.borrow() {
        Some(d) if d.len() >= 16 && d.is_char_boundary(16) => {
            format!("{} {} UTC", &d[..10], &d[11..16])
        }
        Some(d) => d.clone(),
        None => "—".into(),
    }
}

/// A size for people: `532 B`, `14.2 KB`, `3.1 MB`.
fn size<T: Copy + TryInto<u64>>(bytes: &T) -> String {
    let n = (*bytes).try_into().unwrap_or(0);
    #[allow(clippy::cast_precision_loss)] // one decimal is all that is shown
    let f = n as f64;
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KB", f / 1024.0),
        _ => format!("{:.1} MB", f / (1024.0 * 1024.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_are_never_rendered() {
        assert_eq!(
            content_disposition("résumé 2024.pdf"),
            "attachment; filename=\"r_sum_ 2024.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202024.pdf"
        );
        let r = download("a.html", b"<script>".to_vec());
        let h = r.headers();
        assert_eq!(h[header::CONTENT_TYPE], "application/octet-stream");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(
            h[header::CONTENT_DISPOSITION]
                .to_str()
                .unwrap()
                .starts_with("attachment;")
        );
    }

    #[test]
    fn search_form_reads_days_and_pages() {
        let form = SearchForm {
            sender: " ann ".into(),
            since: "2026-11-01".into(),
            until: "2026-11-01".into(),
            before: "120".into(),
            ..SearchForm::default()
        };
        let f = form.filter().unwrap();
        assert_eq!(f.sender.as_deref(), Some("ann"));
        assert_eq!(f.subject, None);
        assert_eq!(
            f.until.unwrap() - f.since.unwrap(),
            DAY_MS,
            "the last day is included"
        );
        assert_eq!(f.before, Some(120));
        assert_eq!(
            form.url(Some(99)),
            "/messages?sender=ann&since=2026-11-01&until=2026-11-01&before=99"
        );
        let backwards = SearchForm {
            since: "2026-11-02".into(),
            until: "2026-11-01".into(),
            ..SearchForm::default()
        };
        assert!(backwards.filter().is_err());
        assert!(
            SearchForm {
                since: "yesterday".into(),
                ..SearchForm::default()
            }
            .filter()
            .is_err()
        );
        assert_eq!(SearchForm::default().url(None), "/messages");
    }

    #[test]
    fn sizes_and_dates_for_people() {
        assert_eq!(size(&512_i64), "512 B");
        assert_eq!(size(&2048_u64), "2.0 KB");
        assert_eq!(size(&(3 * 1024 * 1024_u64)), "3.0 MB");
        assert_eq!(
            mail_date(Some("2024-03-01T09:30:00Z".to_owned())),
            "2024-03-01 09:30 UTC"
        );
        assert_eq!(mail_date(None), "—");
    }
}
