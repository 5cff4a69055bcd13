//! Login, logout and the first-admin setup page.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use oauthimap_app::{AppError, Core, MIN_PASSWORD_CHARS};
use secrecy::SecretString;
use serde::Deserialize;

use super::session::{self, Admin, LOGIN_CSRF_COOKIE, LoginLimiter, SESSION_COOKIE, cookie};
use super::{Page, render_with};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    page: Page,
    next: String,
    username: String,
    error: Option<String>,
    /// No admin user exists yet: the page says how to create the first one.
    no_admin: bool,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    page: Page,
    token: String,
    username: String,
    min_chars: usize,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: SecretString,
    next: Option<String>,
}

/// A local path to go to after login; anything else becomes `/`. Control characters are refused
/// too: browsers drop tabs and newlines from URLs, so `/<TAB>/evil.example` would leave the site.
fn local(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/".into(),
    }
}

/// The pre-login CSRF value: reuse the browser's, or make one (with the cookie to set).
fn login_csrf(app: &Core, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    if let Some(v) = cookie(headers, LOGIN_CSRF_COOKIE).filter(|v| v.len() >= 32) {
        return (v.to_owned(), None);
    }
    let mut buf = [0u8; 32];
    if getrandom::fill(&mut buf).is_err() {
        return (String::new(), None);
    }
    let value = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, buf);
    let set = session::set_cookie(app, LOGIN_CSRF_COOKIE, &value, Some(3600));
    (value, Some(set))
}

fn anonymous(title: &str, csrf: String) -> Page {
    Page {
        title: title.into(),
        csrf,
        ..Page::default()
    }
}

pub async fn login_page(
    State(app): State<Core>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let (csrf, set) = login_csrf(&app, &headers);
    let (flash, clear) = session::take_flash(&app, &headers).unzip();
    let mut page = anonymous("Log in", csrf);
    page.flash = flash;
    let no_admin = app.list_admins().await.is_ok_and(|a| a.is_empty());
    let mut r = render_with(
        &LoginPage {
            page,
            next: local(q.next.as_deref()),
            username: String::new(),
            error: None,
            no_admin,
        },
        StatusCode::OK,
        set,
    );
    if let Some(clear) = clear {
        r.headers_mut().append(header::SET_COOKIE, clear);
    }
    r
}

pub async fn login(
    State(app): State<Core>,
    Extension(limiter): Extension<Arc<LoginLimiter>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let ip = session::client_ip(connect.as_ref().map(|c| &c.0));
    let next = local(form.next.as_deref());
    let again = |status: StatusCode, error: String, retry: Option<u64>| {
        let (csrf, set) = login_csrf(&app, &headers);
        let mut r = render_with(
            &LoginPage {
                page: anonymous("Log in", csrf),
                next: next.clone(),
                username: form.username.clone(),
                error: Some(error),
                no_admin: false,
            },
            status,
            set,
        );
        if let Some(secs) = retry
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    };
    if let Some(wait) = limiter.wait(ip) {
        tracing::warn!(%ip, "login refused: too many failures from this address");
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many failed logins from your address; try again in {wait} s."),
            Some(wait),
        );
    }
    match app.login(&form.username, &form.password).await {
        Ok(session) => {
            limiter.succeeded(ip);
            tracing::info!(username = %session.username, "admin logged in");
            let max_age =
                u64::try_from((session.expires_at - oauthimap_types::now_millis()) / 1000)
                    .unwrap_or(0);
            let mut r = Redirect::to(&next).into_response();
            let h = r.headers_mut();
            h.append(
                header::SET_COOKIE,
                session::set_cookie(
                    &app,
                    SESSION_COOKIE,
                    secrecy::ExposeSecret::expose_secret(&session.token),
                    Some(max_age),
                ),
            );
            h.append(
                header::SET_COOKIE,
                session::set_cookie(&app, LOGIN_CSRF_COOKIE, "", Some(0)),
            );
            r
        }
        Err(AppError::Denied(why)) => {
            limiter.failed(ip);
            tracing::warn!(%ip, "failed admin login");
            again(StatusCode::UNAUTHORIZED, capitalize(&why), None)
        }
        Err(e) => again(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

pub async fn logout(State(app): State<Core>, _admin: Admin, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = app.logout(token).await
    {
        tracing::warn!(error = %e, "cannot end the session");
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(&app, SESSION_COOKIE, "", Some(0)),
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        session::flash(&app, "success", "You are logged out."),
    );
    r
}

#[derive(Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
}

#[derive(Deserialize)]
pub struct SetupForm {
    token: SecretString,
    username: String,
    password: SecretString,
    password_again: SecretString,
}

pub async fn setup_page(
    State(app): State<Core>,
    headers: HeaderMap,
    Query(q): Query<SetupQuery>,
) -> Response {
    let token = q.token.unwrap_or_default();
    let usable = !token.is_empty()
        && app
            .setup_link_usable(&SecretString::from(token.clone()))
            .await
            .unwrap_or(false);
    let (csrf, set) = login_csrf(&app, &headers);
    let (status, error) = if usable {
        (StatusCode::OK, None)
    } else {
        (
            StatusCode::NOT_FOUND,
            Some(
                "This setup link is used, expired or no longer needed. Run `oauthimap admin create NAME` on the server, \
                 or restart the service while no admin exists to get a new link."
                    .to_owned(),
            ),
        )
    };
    render_with(
        &SetupPage {
            page: anonymous("Create the first admin", csrf),
            token: if usable { token } else { String::new() },
            username: String::new(),
            min_chars: MIN_PASSWORD_CHARS,
            error,
        },
        status,
        set,
    )
}

pub async fn setup(
    State(app): State<Core>,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Response {
    use secrecy::ExposeSecret;
    let result = if form.password.expose_secret() == form.password_again.expose_secret() {
        app.create_admin_with_setup_link(&form.token, &form.username, &form.password)
            .await
    } else {
        Err(AppError::Invalid {
            field: "password",
            message: "the two entries differ".into(),
        })
    };
    match result {
        Ok(user) => {
            tracing::info!(username = %user.username, "first admin created through the setup link");
            super::redirect_with_notice(
                &app,
                "/login",
                &format!("Admin {} created. Log in now.", user.username),
            )
        }
        Err(e) => {
            let (csrf, set) = login_csrf(&app, &headers);
            let status = if e.is_user_error() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            render_with(
                &SetupPage {
                    page: anonymous("Create the first admin", csrf),
                    token: form.token.expose_secret().to_owned(),
                    username: form.username,
                    min_chars: MIN_PASSWORD_CHARS,
                    error: Some(e.to_string()),
                },
                status,
                set,
            )
        }
    }
}
