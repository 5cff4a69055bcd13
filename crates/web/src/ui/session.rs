//! What keeps the admin pages safe: the session cookie and the [`Admin`] extractor, CSRF checks
//! on every state-changing request, the security headers (a strict Content-Security-Policy), the
//! per-address login limiter, and one-shot flash messages.
//!
//! CSRF: a form carries `csrf`, which must equal a value derived from the session cookie
//! (SHA-256 of a label and the cookie, so it reveals nothing about the cookie). Forms used before
//! login (login, first-admin setup) use a double-submit cookie instead. Every unsafe request must
//! also come from our own origin when the browser says where it comes from (`Origin`, else
//! `Referer`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauthimap_app::Core;
use sha2::{Digest, Sha256};

pub const SESSION_COOKIE: &str = "oauthimap_session";
pub const LOGIN_CSRF_COOKIE: &str = "oauthimap_login_csrf";
const FLASH_COOKIE: &str = "oauthimap_flash";
/// Largest form body the CSRF check reads.
const FORM_LIMIT: usize = 256 * 1024;

/// The logged-in admin of a request.
#[derive(Debug, Clone)]
pub struct Admin {
    pub username: String,
    /// The value every form of this session must carry.
    pub csrf: String,
}

/// The CSRF value of a session.
pub fn csrf_for(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"oauthimap csrf v1\0");
    h.update(session_token.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// A cookie's value from the request headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `HttpOnly`, SameSite=Lax, Path=/, Secure when served over https.
pub fn set_cookie(app: &Core, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let secure = if app.serves_https() { "; Secure" } else { "" };
    let age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}{age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Where an unauthenticated request is sent: the login page, remembering a local path.
fn to_login(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map_or("/", axum::http::uri::PathAndQuery::as_str);
    if parts.method == Method::GET && next.starts_with('/') && !next.starts_with("//") {
        let encoded: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        Redirect::to(&format!("/login?next={encoded}")).into_response()
    } else {
        Redirect::to("/login").into_response()
    }
}

impl FromRequestParts<Core> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Core) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned) else {
            return Err(to_login(parts));
        };
        match app.admin_session(&token).await {
            Ok(Some(session)) => Ok(Admin {
                username: session.username,
                csrf: csrf_for(&token),
            }),
            Ok(None) => Err(to_login(parts)),
            Err(e) => {
                tracing::error!(error = %e, "cannot check the session");
                Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot check the session",
                )
                    .into_response())
            }
        }
    }
}

/// Checks every unsafe request to the admin pages: same origin, and the CSRF value of its session
/// (or of the login form). A refused request changes nothing.
pub async fn csrf_guard(State(app): State<Core>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    if !same_origin(&app, &parts.headers) {
        return refuse("the request comes from another site");
    }
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response();
    };
    let sent = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
        .or_else(|| {
            parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    let expected = if matches!(parts.uri.path(), "/login" | "/setup") {
        cookie(&parts.headers, LOGIN_CSRF_COOKIE).map(str::to_owned)
    } else {
        cookie(&parts.headers, SESSION_COOKIE).map(csrf_for)
    };
    match (sent, expected) {
        (Some(sent), Some(expected))
            if !expected.is_empty() && constant_eq(sent.as_bytes(), expected.as_bytes()) =>
        {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        _ => refuse("the form's security token is missing or stale; reload the page and try again"),
    }
}

fn refuse(why: &str) -> Response {
    tracing::warn!(reason = why, "refused a cross-site or stale form");
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("Refused: {why}.\n"),
    )
        .into_response()
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `Origin` (else `Referer`) names our external origin or the `Host` the request went
/// to. Requests without either header (non-browser clients) pass on to the token check.
fn same_origin(app: &Core, headers: &HeaderMap) -> bool {
    let claimed = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    // Absent (non-browser clients) or `null` (privacy modes, sandboxes): the CSRF value decides.
    let Some(claimed) = claimed.filter(|c| *c != "null") else {
        return true;
    };
    let Ok(claimed) = url::Url::parse(claimed) else {
        return false;
    };
    let ours = app.external_base_url();
    if claimed.origin() == ours.origin() {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (claimed.host_str(), claimed.port_or_known_default(), host) {
        (Some(h), Some(p), Some(host)) => {
            host == format!("{h}:{p}") || (host == h && Some(p) == claimed.port_or_known_default())
        }
        _ => false,
    }
}

/// The Content-Security-Policy of every admin page; `form_action` adds an origin forms may be
/// sent to (the provider's sign-in page, for pages whose form redirects there).
pub fn csp(form_action: Option<&str>) -> String {
    let extra = form_action.map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'{extra}; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// A page response's extra allowed form target (see [`csp`]).
#[derive(Debug, Clone)]
pub struct FormAction(pub String);

/// Marks a page response that frames one of our own pages (a message's sanitized HTML body):
/// its policy gets `frame-src 'self'`.
#[derive(Debug, Clone, Copy)]
pub struct FramesSelf;

/// Adds the security headers to every admin page (unless the handler set its own policy or
/// framing rule).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let extra = response
        .extensions()
        .get::<FormAction>()
        .map(|f| f.0.clone());
    let mut policy = csp(extra.as_deref());
    if response.extensions().get::<FramesSelf>().is_some() {
        policy.push_str("; frame-src 'self'");
    }
    let h = response.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY)
        && let Ok(v) = HeaderValue::from_str(&policy)
    {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    if !h.contains_key(header::X_FRAME_OPTIONS) {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: browsers then send `Origin: null` with our own forms.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Failed logins per client address: at most `web.login_failures_per_address` in
/// [`LoginLimiter::WINDOW`], whatever the user names. It comes first: an address that guesses is
/// stopped before it can lock a user in the database (which takes more failures and holds across
/// instances), so one attacker cannot lock the admin out.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginLimiter {
    pub const WINDOW: Duration = Duration::from_mins(15);

    pub fn new(max_failures: u64) -> Self {
        Self {
            max_failures: u32::try_from(max_failures).unwrap_or(u32::MAX).max(1),
            failures: Mutex::default(),
        }
    }

    /// Seconds to wait before this address may try again, if it must.
    pub fn wait(&self, ip: IpAddr) -> Option<u64> {
        let map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (count, since) = map.get(&ip)?;
        let elapsed = since.elapsed();
        (*count >= self.max_failures && elapsed < Self::WINDOW)
            .then(|| Self::WINDOW.saturating_sub(elapsed).as_secs() + 1)
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, (_, since)| since.elapsed() < Self::WINDOW);
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        entry.0 += 1;
    }

    pub fn succeeded(&self, ip: IpAddr) {
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(&ip);
    }
}

/// The client's address (loopback when unknown, such as in router tests without a listener).
pub fn client_ip(connect: Option<&ConnectInfo<SocketAddr>>) -> IpAddr {
    connect.map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip())
}

/// Sets a one-shot message shown by the next page (`kind` is `success` or `error`).
pub fn flash(app: &Core, kind: &str, text: &str) -> HeaderValue {
    let value = URL_SAFE_NO_PAD.encode(format!("{kind}:{text}"));
    set_cookie(app, FLASH_COOKIE, &value, Some(120))
}

/// The pending flash message (kind, text), and the header that clears it.
pub fn take_flash(app: &Core, headers: &HeaderMap) -> Option<((String, String), HeaderValue)> {
    let raw = cookie(headers, FLASH_COOKIE)?;
    let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let (kind, text) = decoded.split_once(':')?;
    let kind = if kind == "success" {
        "success"
    } else {
        "error"
    };
    Some((
        (kind.to_owned(), text.to_owned()),
        set_cookie(app, FLASH_COOKIE, "", Some(0)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; oauthimap_session_x=no; oauthimap_session=yes"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("yes"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn csrf_value_is_stable_per_session_and_reveals_nothing() {
        let a = csrf_for("session-token-a");
        assert_eq!(a, csrf_for("session-token-a"));
        assert_ne!(a, csrf_for("session-token-b"));
        assert!(!a.contains("session-token"));
        assert_eq!(a.len(), 43);
        assert!(constant_eq(a.as_bytes(), a.as_bytes()));
        assert!(!constant_eq(a.as_bytes(), &a.as_bytes()[1..]));
    }

    #[test]
    fn policy_is_strict_and_adds_only_the_given_form_target() {
        let p = csp(None);
        assert!(p.contains("script-src 'self';"));
        assert!(!p.contains("unsafe"));
        assert!(p.contains("form-action 'self';"));
        assert!(p.contains("frame-ancestors 'none'"));
        let p = csp(Some("https://login.microsoftonline.com"));
        assert!(p.contains("form-action 'self' https://login.microsoftonline.com;"));
    }

    #[test]
    fn limiter_blocks_an_address_after_too_many_failures() {
        let l = LoginLimiter::new(5);
        let ip = IpAddr::from([192, 0, 2, 7]);
        for _ in 0..4 {
            l.failed(ip);
        }
        assert_eq!(l.wait(ip), None);
        l.failed(ip);
        let wait = l.wait(ip).expect("blocked");
        assert!(wait > 0 && wait <= LoginLimiter::WINDOW.as_secs() + 1);
        assert_eq!(l.wait(IpAddr::from([192, 0, 2, 8])), None);
        l.succeeded(ip);
        assert_eq!(l.wait(ip), None);
    }
}
