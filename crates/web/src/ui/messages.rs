//! Collected messages of the built-in store: a search by sender, subject and collection day with
//! cursor paging, and one message in detail (addresses, headers, text, warnings, attachments to
//! download, and its HTML body sanitized and shown in a sandboxed frame).
//!
//! Everything in a message is written by whoever sent it. Templates escape it; the HTML body goes
//! through [`sanitize_html`] and is served from its own route under a policy that forbids
//! scripts and loading anything; attachments and the raw message are only ever downloaded
//! (`application/octet-stream`, `attachment`), never shown in our origin.

use std::borrow::{Borrow, Cow};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use oauthimap_app::store::{MessageFilter, MessageSummary, StoredMessage};
use oauthimap_app::{App, AppError};
use oauthimap_mime::{Address, Limits, Normalized};
use serde::Deserialize;

use super::session::{Admin, FramesSelf};
use super::{Ctx, Page, error_page, parse_day};

/// Messages per page of the list.
const PAGE_SIZE: u32 = 50;
const DAY_MS: i64 = 86_400_000;

/// The policy of the sanitized HTML body: nothing may load but `data:` images and inline
/// styles, no script of the message runs, and only our own pages may frame it.
const HTML_BODY_CSP_BASE: &str = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; \
                                  frame-ancestors 'self'; base-uri 'none'; form-action 'none'";
/// The one script the HTML body's document runs: it tells our message page its height, so the
/// frame fits the message. The policy admits this script by its hash and no other, so nothing in
/// the message could run even if the sanitizer missed it; the frame keeps an opaque origin
/// (`sandbox allow-scripts`, never `allow-same-origin`), so the script cannot reach our pages.
const FRAME_HEIGHT_SCRIPT: &str = "(function(){function t(){var b=document.body,s=getComputedStyle(b);parent.postMessage({oauthimapFrameHeight:Math.ceil(Math.max(b.scrollHeight,b.getBoundingClientRect().height)+parseFloat(s.marginTop)+parseFloat(s.marginBottom))},'*')}addEventListener('load',t);if(window.ResizeObserver){new ResizeObserver(t).observe(document.body)}t()})()";

/// The HTML body's policy: [`HTML_BODY_CSP_BASE`], the height script by its hash, sandboxed.
fn html_body_csp() -> &'static str {
    static CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(FRAME_HEIGHT_SCRIPT.as_bytes()));
        format!("{HTML_BODY_CSP_BASE}; script-src 'sha256-{hash}'; sandbox allow-scripts")
    });
    &CSP
}
/// Image types an inline (`cid:`) image of the HTML body may have to be shown.
const SHOWN_IMAGE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
];
/// Most bytes of inline images put into one HTML body as `data:` URLs; the rest stay out.
const MAX_INLINE_IMAGE_BYTES: usize = 8 * 1024 * 1024;
/// CSS properties a `style` attribute may keep: none of them can load anything.
const SAFE_CSS_PROPERTIES: &[&str] = &[
    "color",
    "background-color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "font-variant",
    "text-align",
    "text-decoration",
    "text-indent",
    "text-transform",
    "line-height",
    "letter-spacing",
    "word-spacing",
    "white-space",
    "vertical-align",
    "direction",
    "width",
    "height",
    "max-width",
    "min-width",
    "max-height",
    "min-height",
    "margin",
    "margin-top",
    "margin-right",
    "margin-bottom",
    "margin-left",
    "padding",
    "padding-top",
    "padding-right",
    "padding-bottom",
    "padding-left",
    "border",
    "border-top",
    "border-right",
    "border-bottom",
    "border-left",
    "border-color",
    "border-style",
    "border-width",
    "border-radius",
    "border-collapse",
    "border-spacing",
    "display",
    "float",
    "clear",
    "list-style-type",
    "table-layout",
    "overflow-wrap",
    "word-break",
];

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
    State(app): State<App>,
    admin: Admin,
    headers: HeaderMap,
    Query(form): Query<SearchForm>,
) -> Response {
    let total = match app.store().message_count().await {
        Ok(n) => n,
        Err(e) => return error_page(Some(&admin), &e.into()),
    };
    let (rows, older, error) = match form.filter() {
        Ok(filter) => match app.store().find_messages(&filter, PAGE_SIZE + 1).await {
            Ok(mut rows) => {
                let more = rows.len() > PAGE_SIZE as usize;
                rows.truncate(PAGE_SIZE as usize);
                let older = more
                    .then(|| rows.last().map(|m| form.url(Some(m.id))))
                    .flatten();
                (rows, older, None)
            }
            Err(e) => return error_page(Some(&admin), &e.into()),
        },
        Err(e) => (Vec::new(), None, Some(e.to_string())),
    };
    let newest = (!form.before.trim().is_empty()).then(|| form.url(None));
    let ctx = Ctx::new(&app, &admin, &headers, "messages", "Messages");
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
    normalized: Normalized,
    receiver: Option<String>,
}

/// The normalized message stored with `m`.
fn normalized(m: &StoredMessage) -> Result<Normalized, AppError> {
    serde_json::from_str(&m.normalized).map_err(|e| {
        AppError::Conflict(format!(
            "message {} was stored in a form this version cannot read ({e}); download the raw \
             message instead",
            m.id
        ))
    })
}

/// The limits to read a stored message with: it was accepted when it was collected, so its size
/// is not checked again; depth and attachment count are the collector's, so attachments are
/// numbered as in the stored normalized message.
fn stored_limits() -> Limits {
    Limits {
        max_size: u64::MAX,
        ..Limits::default()
    }
}

pub async fn show(
    State(app): State<App>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let message = match app.store().message(id).await {
        Ok(m) => m,
        Err(e) => return error_page(Some(&admin), &e.into()),
    };
    let normalized = match normalized(&message) {
        Ok(n) => n,
        Err(e) => return error_page(Some(&admin), &e),
    };
    let receiver = match message.receiver_id {
        Some(r) => app
            .find_receiver(&r.to_string())
            .await
            .ok()
            .map(|r| r.fields.name),
        None => None,
    };
    let title = normalized
        .subject
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "(no subject)".into());
    let ctx = Ctx::new(&app, &admin, &headers, "messages", title);
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
pub async fn html(State(app): State<App>, _admin: Admin, Path(id): Path<i64>) -> Response {
    let plain = |status: StatusCode, text: String| {
        (
            status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, html_body_csp()),
                (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
            ],
            text,
        )
            .into_response()
    };
    let (message, raw) = match app.message(id).await {
        Ok(m) => m,
        Err(e) if e.is_user_error() => return plain(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a stored message");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    let n = match normalized(&message) {
        Ok(n) => n,
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let Some(body) = n.html.as_deref() else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("message {id} has no HTML body"),
        );
    };
    let images = if body.contains("cid:") {
        inline_images(&raw)
    } else {
        HashMap::new()
    };
    let document = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <style>body{{font-family:system-ui,sans-serif;margin:.6rem;overflow-wrap:anywhere}}\
         img{{max-width:100%;height:auto}}</style></head><body>{}\
         <script>{FRAME_HEIGHT_SCRIPT}</script></body></html>",
        sanitize_html(body, images)
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, html_body_csp()),
            (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
        ],
        document,
    )
        .into_response()
}

/// The inline images of a message as `data:` URLs by lowercase Content-ID, for `cid:` links in
/// its HTML body: only plain raster types, at most [`MAX_INLINE_IMAGE_BYTES`] in all.
fn inline_images(raw: &[u8]) -> HashMap<String, String> {
    let Ok((n, bytes)) = oauthimap_mime::normalize_with_bytes(raw, &stored_limits()) else {
        return HashMap::new();
    };
    let mut budget = MAX_INLINE_IMAGE_BYTES;
    let mut images = HashMap::new();
    for (attachment, content) in n.attachments.iter().zip(bytes) {
        let Some(cid) = &attachment.content_id else {
            continue;
        };
        if !SHOWN_IMAGE_TYPES.contains(&attachment.content_type.as_str()) || content.len() > budget
        {
            continue;
        }
        budget -= content.len();
        images.insert(
            cid.to_lowercase(),
            format!(
                "data:{};base64,{}",
                attachment.content_type,
                STANDARD.encode(&content)
            ),
        );
    }
    images
}

/// Whether `url` (lowercase) is a `data:` URL of an image type we show.
fn is_shown_image_data(url: &str) -> bool {
    url.strip_prefix("data:").is_some_and(|rest| {
        SHOWN_IMAGE_TYPES.iter().any(|t| {
            rest.strip_prefix(t)
                .is_some_and(|after| after.starts_with([';', ',']))
        })
    })
}

/// The HTML of a message made safe to show: no script, no event handler, no form, no frame, no
/// `<style>` sheet, no CSS property that can load anything, no relative or remote image (a
/// `cid:` image becomes the `data:` URL in `images`, by lowercase Content-ID, or goes), links
/// only to `http`, `https`, `mailto` and `tel` with `rel="noopener noreferrer"`. Formatting
/// (tables, fonts, colours) stays.
fn sanitize_html(html: &str, images: HashMap<String, String>) -> String {
    let mut b = ammonia::Builder::default();
    b.add_tags(["font"])
        .add_tag_attributes("font", ["color", "face", "size"])
        .add_tag_attributes(
            "table",
            ["width", "border", "cellpadding", "cellspacing", "bgcolor"],
        )
        .add_tag_attributes("td", ["width", "height", "valign", "bgcolor", "nowrap"])
        .add_tag_attributes("th", ["width", "height", "valign", "bgcolor", "nowrap"])
        .add_tag_attributes("tr", ["valign", "bgcolor"])
        .add_tag_attributes("p", ["align"])
        .add_tag_attributes("div", ["align"])
        .add_generic_attributes(["style", "dir"])
        .filter_style_properties(SAFE_CSS_PROPERTIES.iter().copied().collect())
        .url_schemes(HashSet::from([
            "http", "https", "mailto", "tel", "cid", "data",
        ]))
        .url_relative(ammonia::UrlRelative::Deny)
        .attribute_filter(move |element, attribute, value| {
            let lower = value.trim().to_ascii_lowercase();
            match (element, attribute) {
                ("img", "src") => {
                    if let Some(cid) = lower.strip_prefix("cid:") {
                        images.get(cid).map(|url| Cow::Owned(url.clone()))
                    } else if is_shown_image_data(&lower) {
                        Some(Cow::Borrowed(value))
                    } else {
                        None
                    }
                }
                // `cid:` and `data:` are for images only.
                _ if lower.starts_with("cid:") || lower.starts_with("data:") => None,
                _ => Some(Cow::Borrowed(value)),
            }
        });
    b.clean(html).to_string()
}

/// One attachment, downloaded (never shown in our origin).
pub async fn attachment(
    State(app): State<App>,
    admin: Admin,
    Path((id, index)): Path<(i64, usize)>,
) -> Response {
    let (message, raw) = match app.message(id).await {
        Ok(m) => m,
        Err(e) => return error_page(Some(&admin), &e),
    };
    let n = match normalized(&message) {
        Ok(n) => n,
        Err(e) => return error_page(Some(&admin), &e),
    };
    let missing = || AppError::NotFound {
        what: "attachment",
        key: index.to_string(),
        hint: format!(
            " in message {id}: it has {} attachment(s), numbered from 0",
            n.attachments.len()
        ),
    };
    let Some(listed) = n.attachments.get(index) else {
        return error_page(Some(&admin), &missing());
    };
    let content = match oauthimap_mime::attachment_bytes(&raw, &stored_limits(), index) {
        Ok(Some(c)) => c,
        Ok(None) => return error_page(Some(&admin), &missing()),
        Err(refusal) => {
            return error_page(
                Some(&admin),
                &AppError::Conflict(format!("cannot read message {id}: {}", refusal.detail)),
            );
        }
    };
    if oauthimap_mime::sha256_hex(&content) != listed.sha256 {
        return error_page(
            Some(&admin),
            &AppError::Conflict(format!(
                "attachment {index} of message {id} reads differently now than when it was \
                 collected; download the raw message and open it in a mail program"
            )),
        );
    }
    download(&listed.safe_filename, content)
}

/// The raw message as an `.eml` file.
pub async fn raw(State(app): State<App>, admin: Admin, Path(id): Path<i64>) -> Response {
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
fn addresses(list: &[Address]) -> String {
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

    fn clean(html: &str) -> String {
        sanitize_html(html, HashMap::new())
    }

    #[test]
    fn scripts_handlers_and_remote_content_go_text_stays() {
        let out = clean(
            "<p>Hello <b>Ann</b></p><script>alert(1)</script>\
             <img src=x onerror=alert(2) alt=broken>\
             <img src=\"https://tracker.example/pixel.gif\" alt=pixel>\
             <img src=\"//tracker.example/p.gif\"><img src=\"/local.png\">\
             <a href=\"javascript:alert(3)\">js</a><a href=\"https://example.com/\">site</a>\
             <iframe src=\"https://evil.example/\"></iframe><form action=/x><input name=a></form>\
             <style>body{background:url(https://evil.example/s)}</style>\
             <div style=\"color:red;background-image:url(https://evil.example/b)\">styled</div>\
             <svg><a><style><img src=x onerror=alert(4)></style></a></svg>",
        );
        for gone in [
            "script",
            "alert",
            "onerror",
            "tracker.example",
            "local.png",
            "javascript",
            "iframe",
            "evil.example",
            "<form",
            "<input",
            "<style",
            "<svg",
        ] {
            assert!(!out.contains(gone), "{gone:?} survived in {out}");
        }
        for kept in [
            "Hello <b>Ann</b>",
            "alt=\"broken\"",
            "alt=\"pixel\"",
            ">js</a>",
            "<a href=\"https://example.com/\" rel=\"noopener noreferrer\">site</a>",
            "<div style=\"color:red\">styled</div>",
        ] {
            assert!(out.contains(kept), "{kept:?} missing from {out}");
        }
    }

    #[test]
    fn cid_images_become_data_urls_and_data_stays_for_images_only() {
        let images = HashMap::from([(
            "logo@example.com".to_owned(),
            "data:image/png;base64,iVBORw0KGgo=".to_owned(),
        )]);
        let out = sanitize_html(
            "<img src=\"cid:Logo@example.com\" alt=logo><img src=\"cid:unknown@x\" alt=u>\
             <img src=\"data:image/gif;base64,R0lGOD==\" alt=g>\
             <img src=\"data:image/svg+xml;base64,PHN2Zz4=\" alt=s>\
             <a href=\"data:text/html;base64,PHNjcmlwdD4=\">d</a><a href=\"cid:x\">c</a>",
            images,
        );
        assert!(
            out.contains("<img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"logo\">"),
            "{out}"
        );
        assert!(out.contains("<img alt=\"u\">"), "{out}");
        assert!(
            out.contains("<img src=\"data:image/gif;base64,R0lGOD==\" alt=\"g\">"),
            "{out}"
        );
        assert!(out.contains("<img alt=\"s\">"), "{out}");
        assert!(!out.contains("text/html"), "{out}");
        assert!(!out.contains("cid:"), "{out}");
    }

    #[test]
    fn mail_formatting_survives() {
        let out = clean(
            "<table width=\"600\" cellpadding=\"4\" bgcolor=\"#eeeeee\"><tr><td valign=\"top\">\
             <font color=\"#333\" face=\"Arial\">Cell</font></td></tr></table>",
        );
        assert!(out.contains("width=\"600\""), "{out}");
        assert!(
            out.contains("<font color=\"#333\" face=\"Arial\">Cell</font>"),
            "{out}"
        );
        assert!(out.contains("valign=\"top\""), "{out}");
    }

    const RAW: &[u8] = b"From: Ann <ann@example.com>\r\n\
To: helpdesk@example.com\r\n\
Subject: Report\r\n\
Message-ID: <r1@example.com>\r\n\
Date: Fri, 1 Mar 2024 09:30:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/related; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>See <img src=\"cid:dot@example.com\"></p>\r\n\
--b1\r\n\
Content-Type: image/png\r\n\
Content-ID: <dot@example.com>\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
iVBORw0KGgo=\r\n\
--b1\r\n\
Content-Type: application/pdf\r\n\
Content-Disposition: attachment; filename=\"../r\xc3\xa9sum\xc3\xa9 2024.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b1--\r\n";

    #[test]
    fn attachments_are_read_back_from_the_raw_message() {
        let n = oauthimap_mime::normalize(RAW, &stored_limits()).unwrap();
        assert_eq!(n.attachments.len(), 2);
        let pdf = oauthimap_mime::attachment_bytes(RAW, &stored_limits(), 1)
            .unwrap()
            .unwrap();
        assert_eq!(pdf, b"%PDF-1.4\n");
        assert_eq!(oauthimap_mime::sha256_hex(&pdf), n.attachments[1].sha256);
        assert_eq!(n.attachments[1].safe_filename, "résumé 2024.pdf");
        assert_eq!(
            oauthimap_mime::attachment_bytes(RAW, &stored_limits(), 2).unwrap(),
            None
        );
        // The cid: image of the HTML body is there to inline.
        let images = inline_images(RAW);
        assert_eq!(
            images.get("dot@example.com").map(String::as_str),
            Some("data:image/png;base64,iVBORw0KGgo=")
        );
    }

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
