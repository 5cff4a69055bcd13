//! The interactive front channel: Microsoft `/{tenant}/oauth2/v2.0/authorize` and
//! `/{tenant}/v2.0/adminconsent`, Google `/o/oauth2/v2/auth`.
//!
//! There is no login form: the user named by `login_hint` (or the default user) signs in and
//! consents at once. An unknown client or a redirect URI mismatch is an HTML error page, never a
//! redirect (as at the real providers); every later problem redirects back with `error=...`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::errors::{google_error_page, ms_error_page};
use crate::model::{ClientConfig, Flavour, UserConfig};
use crate::params::Params;
use crate::state::{AuthCode, Idp, State as Memory, bump};
use crate::tokens::{google_canonical_scope, has_scope, split_scopes};
use crate::util::{form_encode, html_escape, now_unix};

/// Lifetime of authorization codes, seconds (both providers: about ten minutes).
const CODE_LIFETIME: u64 = 600;

/// Where and how to send the answer back.
struct Back<'a> {
    redirect_uri: &'a str,
    response_mode: &'a str,
    state: Option<&'a str>,
}

impl Back<'_> {
    /// Sends `pairs` (plus `state`) back as a 302 redirect, fragment, or auto-submitting form.
    fn send(&self, mut pairs: Vec<(&str, String)>) -> Response {
        if let Some(s) = self.state {
            pairs.push(("state", s.to_owned()));
        }
        if self.response_mode == "form_post" {
            let mut inputs = String::new();
            for (k, v) in &pairs {
                let _ = write!(
                    inputs,
                    "<input type=\"hidden\" name=\"{}\" value=\"{}\"/>",
                    html_escape(k),
                    html_escape(v)
                );
            }
            return Html(format!(
                "<html><head><title>Working...</title></head><body onload=\"document.forms[0].submit()\">\
                 <form method=\"POST\" name=\"hiddenform\" action=\"{}\">{inputs}\
                 <noscript><input type=\"submit\" value=\"Continue\"/></noscript></form></body></html>",
                html_escape(self.redirect_uri)
            ))
            .into_response();
        }
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let encoded = form_encode(&refs);
        let sep = if self.response_mode == "fragment" {
            '#'
        } else if self.redirect_uri.contains('?') {
            '&'
        } else {
            '?'
        };
        redirect(&format!("{}{sep}{encoded}", self.redirect_uri))
    }
}

fn redirect(location: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Checks client and redirect URI; `Err` is the error page to show.
fn ms_client_and_redirect(
    idp: &Idp,
    st: &Memory,
    p: &Params,
    tenant: &str,
) -> Result<(ClientConfig, String), Response> {
    if p.repeated.is_some() {
        return Err(ms_error_page(
            9_002_313,
            "Invalid request. Request is malformed or invalid.",
            &idp.rng,
        ));
    }
    let Some(client_id) = p.get("client_id") else {
        return Err(ms_error_page(
            900_144,
            "The request body must contain the following parameter: 'client_id'.",
            &idp.rng,
        ));
    };
    let Some(client) = st
        .clients
        .get(client_id)
        .filter(|c| c.flavour == Flavour::Microsoft)
    else {
        return Err(ms_error_page(
            700_016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
            &idp.rng,
        ));
    };
    let redirect_uri = match p.get("redirect_uri") {
        Some(r) => r.to_owned(),
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return Err(ms_error_page(
                900_971,
                "No reply address provided.",
                &idp.rng,
            ));
        }
    };
    if !client.redirect_uris.contains(&redirect_uri) {
        return Err(ms_error_page(
            50_011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this."
            ),
            &idp.rng,
        ));
    }
    Ok((client.clone(), redirect_uri))
}

/// Microsoft error redirect parameters: `error`, `error_description` with the AADSTS text.
fn ms_error_pairs(idp: &Idp, error: &str, description: &str) -> Vec<(&'static str, String)> {
    let description = format!(
        "{description}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
        idp.rng.guid(),
        idp.rng.guid(),
        crate::util::ms_timestamp(now_unix())
    );
    vec![
        ("error", error.to_owned()),
        ("error_description", description),
    ]
}

/// Checks the PKCE parameters: only S256 with a 43-character challenge is accepted.
fn pkce_challenge(p: &Params) -> Result<Option<String>, &'static str> {
    match (p.get("code_challenge"), p.get("code_challenge_method")) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err("code_challenge_method without code_challenge"),
        (Some(c), Some("S256")) if c.len() == 43 => Ok(Some(c.to_owned())),
        (Some(_), Some("S256")) => Err("Invalid size of Code_Challenge parameter."),
        (Some(_), _) => Err("code_challenge_method must be S256 at this identity provider."),
    }
}

/// Picks the signing-in user: `login_hint`, else the default user.
fn pick_user(st: &Memory, p: &Params) -> Result<UserConfig, String> {
    let name = p
        .get("login_hint")
        .map(str::to_owned)
        .or_else(|| st.settings.default_user.clone())
        .ok_or_else(|| "no login_hint and no default user configured".to_owned())?;
    st.user(&name)
        .cloned()
        .ok_or_else(|| format!("The user account {name} does not exist"))
}

/// `GET /{tenant}/oauth2/v2.0/authorize`
pub(crate) async fn ms_authorize(
    State(idp): State<Arc<Idp>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let p = Params::parse(query.unwrap_or_default().as_bytes());
    let mut st = idp.lock();
    let (resp, ok) = ms_authorize_inner(&idp, &mut st, &p, &tenant);
    bump(&mut st.stats.authorize, ok);
    resp
}

fn ms_authorize_inner(idp: &Idp, st: &mut Memory, p: &Params, tenant: &str) -> (Response, bool) {
    let (client, redirect_uri) = match ms_client_and_redirect(idp, st, p, tenant) {
        Ok(v) => v,
        Err(page) => return (page, false),
    };
    let back = Back {
        redirect_uri: &redirect_uri,
        response_mode: p.get("response_mode").unwrap_or("query"),
        state: p.get("state"),
    };
    let fail = |error: &str, desc: String| (back.send(ms_error_pairs(idp, error, &desc)), false);
    match p.get("response_type") {
        None => {
            return fail(
                "invalid_request",
                "AADSTS900144: The request body must contain the following parameter: 'response_type'.".to_owned(),
            );
        }
        Some("code") => {}
        Some(other) => {
            return fail(
                "unsupported_response_type",
                format!(
                    "AADSTS700054: response_type '{other}' is not enabled for the application."
                ),
            );
        }
    }
    let Some(scope) = p.get("scope") else {
        return fail(
            "invalid_request",
            "AADSTS900144: The request body must contain the following parameter: 'scope'."
                .to_owned(),
        );
    };
    let challenge = match pkce_challenge(p) {
        Ok(c) => c,
        Err(m) => return fail("invalid_request", format!("AADSTS501491: {m}")),
    };
    if let Some(f) = st.authorize_errors.pop_front() {
        let desc = f.description.unwrap_or_else(|| {
            "AADSTS65004: User declined to consent to access the app.".to_owned()
        });
        return fail(&f.error, desc);
    }
    let user = match pick_user(st, p) {
        Ok(u) => u,
        Err(m) => return (ms_error_page(50_034, &m, &idp.rng), false),
    };
    let scopes = split_scopes(scope);
    let code = format!("1.A{}", idp.rng.token(96));
    st.codes.insert(
        code.clone(),
        AuthCode {
            flavour: Flavour::Microsoft,
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            user_email: user.email.clone(),
            with_refresh: has_scope(&scopes, "offline_access"),
            tenant_id: Idp::tenant_id(st, tenant, Some(&user)),
            scopes,
            challenge,
            nonce: p.get("nonce").map(str::to_owned),
            expires_at: now_unix() + CODE_LIFETIME,
        },
    );
    let resp = back.send(vec![("code", code), ("session_state", idp.rng.guid())]);
    (resp, true)
}

/// `GET /{tenant}/v2.0/adminconsent`
pub(crate) async fn ms_admin_consent(
    State(idp): State<Arc<Idp>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let p = Params::parse(query.unwrap_or_default().as_bytes());
    let mut st = idp.lock();
    let (resp, ok) = match ms_client_and_redirect(&idp, &st, &p, &tenant) {
        Err(page) => (page, false),
        Ok((client, redirect_uri)) => {
            let back = Back {
                redirect_uri: &redirect_uri,
                response_mode: "query",
                state: p.get("state"),
            };
            if let Some(f) = st.authorize_errors.pop_front() {
                let desc = f.description.unwrap_or_else(|| {
                    "AADSTS65004: User declined to consent to access the app.".to_owned()
                });
                (back.send(ms_error_pairs(&idp, &f.error, &desc)), false)
            } else {
                let tid = Idp::tenant_id(&st, &tenant, None);
                st.admin_consents
                    .insert((client.client_id.clone(), tid.clone()));
                let mut pairs = vec![("admin_consent", "True".to_owned()), ("tenant", tid)];
                if let Some(s) = p.get("scope") {
                    pairs.push(("scope", s.to_owned()));
                }
                (back.send(pairs), true)
            }
        }
    };
    bump(&mut st.stats.admin_consent, ok);
    resp
}

/// `GET /o/oauth2/v2/auth`
pub(crate) async fn google_auth(
    State(idp): State<Arc<Idp>>,
    RawQuery(query): RawQuery,
) -> Response {
    let p = Params::parse(query.unwrap_or_default().as_bytes());
    let mut st = idp.lock();
    let (resp, ok) = google_auth_inner(&idp, &mut st, &p);
    bump(&mut st.stats.authorize, ok);
    resp
}

/// What a valid Google authorize request asked for.
struct GoogleRequest {
    client: ClientConfig,
    redirect_uri: String,
    scope: String,
    challenge: Option<String>,
}

/// Validates a Google authorize request; `Err` is the error page (Google never redirects these).
fn google_validate(st: &Memory, p: &Params) -> Result<GoogleRequest, Response> {
    let bad = |status: StatusCode, error: &str, msg: &str| google_error_page(status, error, msg);
    if let Some(r) = &p.repeated {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("Parameter included more than once: {r}"),
        ));
    }
    let Some(client_id) = p.get("client_id") else {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: client_id",
        ));
    };
    let Some(client) = st
        .clients
        .get(client_id)
        .filter(|c| c.flavour == Flavour::Google)
        .cloned()
    else {
        return Err(bad(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        ));
    };
    let Some(redirect_uri) = p.get("redirect_uri") else {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: redirect_uri",
        ));
    };
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "redirect_uri_mismatch",
            &format!(
                "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy. Request details: redirect_uri={redirect_uri}"
            ),
        ));
    }
    match p.get("response_type") {
        None => {
            return Err(bad(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Required parameter is missing: response_type",
            ));
        }
        Some("code") => {}
        Some(other) => {
            return Err(bad(
                StatusCode::BAD_REQUEST,
                "unsupported_response_type",
                &format!("Invalid response_type: {other}"),
            ));
        }
    }
    let Some(scope) = p.get("scope") else {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: scope",
        ));
    };
    let challenge =
        pkce_challenge(p).map_err(|m| bad(StatusCode::BAD_REQUEST, "invalid_request", m))?;
    Ok(GoogleRequest {
        redirect_uri: redirect_uri.to_owned(),
        scope: scope.to_owned(),
        client,
        challenge,
    })
}

fn google_auth_inner(idp: &Idp, st: &mut Memory, p: &Params) -> (Response, bool) {
    let GoogleRequest {
        client,
        redirect_uri,
        scope,
        challenge,
    } = match google_validate(st, p) {
        Ok(r) => r,
        Err(page) => return (page, false),
    };
    let back = Back {
        redirect_uri: &redirect_uri,
        response_mode: "query",
        state: p.get("state"),
    };
    if let Some(f) = st.authorize_errors.pop_front() {
        let mut pairs = vec![("error", f.error)];
        if let Some(d) = f.description {
            pairs.push(("error_description", d));
        }
        return (back.send(pairs), false);
    }
    let user = match pick_user(st, p) {
        Ok(u) => u,
        Err(m) => {
            let page = google_error_page(StatusCode::BAD_REQUEST, "invalid_request", &m);
            return (page, false);
        }
    };
    let offline = p.get("access_type") == Some("offline");
    let force_consent = p
        .get("prompt")
        .is_some_and(|pr| pr.split_whitespace().any(|x| x == "consent"));
    let key = (client.client_id.clone(), user.email.to_ascii_lowercase());
    let first_consent = !st.google_consents.contains(&key);
    let with_refresh = offline && (first_consent || force_consent);
    if offline {
        st.google_consents.insert(key);
    }
    let scopes = split_scopes(&scope);
    let scope_out = scopes
        .iter()
        .map(|s| google_canonical_scope(s))
        .collect::<Vec<_>>()
        .join(" ");
    let code = format!("4/0A{}", idp.rng.token(64));
    st.codes.insert(
        code.clone(),
        AuthCode {
            flavour: Flavour::Google,
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            user_email: user.email.clone(),
            scopes,
            challenge,
            nonce: p.get("nonce").map(str::to_owned),
            tenant_id: String::new(),
            with_refresh,
            expires_at: now_unix() + CODE_LIFETIME,
        },
    );
    let prompt = if first_consent || force_consent {
        "consent"
    } else {
        "none"
    };
    let resp = back.send(vec![
        ("code", code),
        ("scope", scope_out),
        ("authuser", "0".to_owned()),
        ("prompt", prompt.to_owned()),
    ]);
    (resp, true)
}
