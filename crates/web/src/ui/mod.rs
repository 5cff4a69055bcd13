//! The admin web UI: server-rendered pages (askama templates in `crates/web/templates`, escaped
//! by default), htmx as a static file for small in-place updates, and plain forms that work
//! without JavaScript. Handlers read input, call the app core, and render; the rules live in
//! the core.

mod accounts;
mod applications;
mod auth;
mod health;
mod messages;
mod receivers;
pub mod session;
mod tokens;

use std::borrow::Borrow;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use oauthimap_app::{AppError, Core};
use oauthimap_types::EpochMillis;

pub use session::{Admin, LoginLimiter};

/// The pages, their guards and their headers.
pub fn routes(app: &Core) -> Router<Core> {
    let devices = Arc::new(applications::DeviceFlows::default());
    Router::new()
        .route("/", get(health::page))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/setup", get(auth::setup_page).post(auth::setup))
        .route(
            "/applications",
            get(applications::list).post(applications::create),
        )
        .route("/applications/new", get(applications::new))
        .route(
            "/applications/{id}",
            get(applications::show).post(applications::update),
        )
        .route("/applications/{id}/delete", post(applications::delete))
        .route("/applications/{id}/accounts", get(applications::accounts))
        .route(
            "/applications/{id}/authorize",
            post(applications::authorize),
        )
        .route(
            "/applications/{id}/device",
            post(applications::device_start),
        )
        .route(
            "/applications/{id}/device/{flow}",
            get(applications::device_status),
        )
        .route("/applications/{id}/app-only", post(applications::app_only))
        .route("/accounts/{id}", get(accounts::show))
        .route("/accounts/{id}/diagnose", post(accounts::diagnose))
        .route("/accounts/{id}/reauthorize", post(accounts::reauthorize))
        .route("/accounts/{id}/delete", post(accounts::delete))
        .route(
            "/accounts/{id}/gateway-passwords",
            post(accounts::add_gateway_password),
        )
        .route(
            "/accounts/{id}/gateway-passwords/delete",
            post(accounts::remove_gateway_password),
        )
        .route("/receivers", get(receivers::list).post(receivers::create))
        .route("/receivers/new", get(receivers::new))
        .route(
            "/receivers/account-options",
            get(receivers::account_options),
        )
        .route(
            "/receivers/{id}",
            get(receivers::show).post(receivers::update),
        )
        .route("/receivers/{id}/delete", post(receivers::delete))
        .route("/receivers/{id}/retry", post(receivers::retry))
        .route("/receivers/{id}/collect", post(receivers::collect_now))
        .route("/messages", get(messages::list))
        .route("/messages/{id}", get(messages::show))
        .route("/messages/{id}/html", get(messages::html))
        .route("/messages/{id}/raw", get(messages::raw))
        .route(
            "/messages/{id}/attachments/{index}",
            get(messages::attachment),
        )
        .route("/api-tokens", get(tokens::list).post(tokens::create))
        .route("/api-tokens/delete", post(tokens::delete))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            session::csrf_guard,
        ))
        .layer(axum::middleware::from_fn(session::security_headers))
        .layer(axum::Extension(devices))
        .layer(axum::Extension(Arc::new(LoginLimiter::new(
            app.login_failures_per_address(),
        ))))
        .route("/static/{file}", get(static_file))
}

/// What every page's layout needs.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub title: String,
    /// The logged-in admin, if any.
    pub username: Option<String>,
    pub csrf: String,
    /// The active navigation entry.
    pub nav: &'static str,
    /// A one-shot message: (`success` or `error`, text).
    pub flash: Option<(String, String)>,
}

/// A page for a logged-in admin, with its pending flash message and the header clearing it.
pub struct PageContext {
    pub page: Page,
    clear_flash: Option<HeaderValue>,
}

impl PageContext {
    pub fn new(
        app: &Core,
        admin: &Admin,
        headers: &HeaderMap,
        nav: &'static str,
        title: impl Into<String>,
    ) -> PageContext {
        let (flash, clear_flash) = match session::take_flash(app, headers) {
            Some((f, clear)) => (Some(f), Some(clear)),
            None => (None, None),
        };
        PageContext {
            page: Page {
                title: title.into(),
                username: Some(admin.username.clone()),
                csrf: admin.csrf.clone(),
                nav,
                flash,
            },
            clear_flash,
        }
    }

    /// Renders `template` as this page.
    pub fn render(self, template: &impl Template) -> Response {
        render_with(template, StatusCode::OK, self.clear_flash)
    }

    /// Renders a form again with the error that refused it (422).
    pub fn render_refused(self, template: &impl Template) -> Response {
        render_with(template, StatusCode::UNPROCESSABLE_ENTITY, self.clear_flash)
    }
}

pub fn render_with(
    template: &impl Template,
    status: StatusCode,
    cookie: Option<HeaderValue>,
) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            if let Some(c) = cookie {
                response.headers_mut().append(header::SET_COOKIE, c);
            }
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot render a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render the page").into_response()
        }
    }
}

/// A redirect after a successful form, with a message for the next page.
/// The first value of `key` in a form that repeats keys (checkboxes), trimmed; empty if absent.
pub fn form_value(fields: &[(String, String)], key: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default()
}

/// Every value of `key` in such a form, in order.
pub fn form_values(fields: &[(String, String)], key: &str) -> Vec<String> {
    fields
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect()
}

pub fn redirect_with_notice(app: &Core, to: &str, message: &str) -> Response {
    let mut r = Redirect::to(to).into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, session::flash(app, "success", message));
    r
}

/// A redirect after a failed action, with the error for the next page.
pub fn failed(app: &Core, to: &str, error: &AppError) -> Response {
    let mut r = Redirect::to(to).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        session::flash(app, "error", &error.to_string()),
    );
    r
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    page: Page,
    message: String,
}

/// An error page in the layout (not found, or a failure of the system).
pub fn error_page(admin: Option<&Admin>, error: &AppError) -> Response {
    let status = match error {
        AppError::NotFound { .. } => StatusCode::NOT_FOUND,
        e if e.is_user_error() => StatusCode::BAD_REQUEST,
        AppError::Provider(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(%error, "a page failed");
    }
    let page = Page {
        title: if status == StatusCode::NOT_FOUND {
            "Not found".into()
        } else {
            "Something went wrong".into()
        },
        username: admin.map(|a| a.username.clone()),
        csrf: admin.map(|a| a.csrf.clone()).unwrap_or_default(),
        nav: "",
        flash: None,
    };
    render_with(
        &ErrorPage {
            page,
            message: error.to_string(),
        },
        status,
        None,
    )
}

/// Static assets, embedded in the binary.
async fn static_file(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "htmx.min.js" => (
            include_bytes!("../../static/htmx.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "app.js" => (
            include_bytes!("../../static/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "app.css" => (
            include_bytes!("../../static/app.css"),
            "text/css; charset=utf-8",
        ),
        "icon.svg" => (include_bytes!("../../static/icon.svg"), "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// A time for people: `2026-11-28 10:00 UTC`, or an em dash (times before 1970 too).
pub fn when(ms: impl Borrow<Option<EpochMillis>>) -> String {
    // `2026-11-28T10:00:00Z`, as the CLI prints it.
    let Some(t) = (*ms.borrow()).and_then(oauthimap_types::rfc3339_seconds) else {
        return "—".into();
    };
    format!("{} {} UTC", &t[..10], &t[11..16])
}

/// A time and how far it is: `2026-11-28 10:00 UTC (in 52 min)`, or `none` without one (never
/// "— (—)").
pub fn moment(ms: impl Borrow<Option<EpochMillis>>) -> String {
    let ms = *ms.borrow();
    if ms.is_none() {
        return "none".into();
    }
    format!("{} ({})", when(ms), relative(ms))
}

/// What a form's banner says and what each field says, for an error that refused the form:
/// `field_input` maps the core's field name to the form's input name and visible label. When a
/// field cannot be shown by its input, the whole error goes to the banner.
pub fn refusal(
    e: &AppError,
    field_input: fn(&str) -> Option<(&'static str, &'static str)>,
) -> (String, Vec<(&'static str, String)>) {
    let fields = e.field_errors();
    let shown: Vec<(&'static str, &'static str, String)> = fields
        .iter()
        .filter_map(|f| {
            field_input(f.field).map(|(input, label)| (input, label, f.message.clone()))
        })
        .collect();
    if shown.is_empty() || shown.len() < fields.len() {
        return (e.to_string(), Vec::new());
    }
    let banner = if shown.len() == 1 {
        format!("{}: {}", shown[0].1, shown[0].2)
    } else {
        format!(
            "{} fields need a change: {}",
            shown.len(),
            shown
                .iter()
                .map(|(_, label, _)| *label)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    (
        banner,
        shown.into_iter().map(|(input, _, m)| (input, m)).collect(),
    )
}

/// An error's first sentence (and hint), for the line people read.
pub fn error_summary(text: &str) -> String {
    oauthimap_app::summarize_error(text).0
}

/// The rest of an error (further sentences, trace ids), for a "details" fold.
pub fn error_details(text: &str) -> Option<String> {
    oauthimap_app::summarize_error(text).1
}

pub fn format_time(ms: impl Borrow<EpochMillis>) -> String {
    when(Some(*ms.borrow()))
}

/// How far `ms` is from now, such as `in 52 min` or `3 d ago`.
pub fn relative(ms: impl Borrow<Option<EpochMillis>>) -> String {
    let Some(ms) = *ms.borrow() else {
        return "—".into();
    };
    let delta = (ms - oauthimap_types::now_millis()) / 1000;
    if delta.abs() < 5 {
        return "just now".into();
    }
    let (n, unit) = match delta.unsigned_abs() {
        s if s < 120 => (s, "s"),
        s if s < 7200 => (s / 60, "min"),
        s if s < 172_800 => (s / 3600, "h"),
        s => (s / 86_400, "d"),
    };
    if delta >= 0 {
        format!("in {n} {unit}")
    } else {
        format!("{n} {unit} ago")
    }
}

/// A `YYYY-MM-DD` day (as an `<input type=date>` sends it) as epoch milliseconds at 00:00 UTC.
pub fn parse_day(text: &str, field: &'static str) -> Result<EpochMillis, AppError> {
    let bad = || AppError::Invalid {
        field,
        message: format!("{text:?} is not a date; use YYYY-MM-DD, such as 2027-06-30"),
    };
    oauthimap_types::units::parse_day(text).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_utc() {
        assert_eq!(when(Some(0)), "1970-01-01 00:00 UTC");
        assert_eq!(when(Some(1_795_860_000_000)), "2026-11-28 10:00 UTC");
        assert_eq!(when(Some(951_782_400_000)), "2000-02-29 00:00 UTC");
        assert_eq!(when(None), "—");
        // Any i64 reaches here (a gateway password's expiry from the REST API); humantime
        // formats no year past 9999, and this panicked.
        assert_eq!(when(Some(i64::MAX)), "9999-12-31 23:59 UTC");
        assert_eq!(parse_day("2026-11-28", "d").unwrap(), 1_795_824_000_000);
        assert_eq!(parse_day("2000-02-29", "d").unwrap(), 951_782_400_000);
        assert!(parse_day("2026-02-30", "d").is_err());
        assert!(parse_day("next week", "d").is_err());
    }

    #[test]
    fn a_missing_moment_reads_as_none_not_dashes() {
        assert_eq!(moment(None), "none");
        let soon = oauthimap_types::now_millis() + 3_000_000;
        let shown = moment(Some(soon));
        assert!(
            shown.contains(" UTC (in ") && shown.ends_with("min)"),
            "{shown}"
        );
    }
}
