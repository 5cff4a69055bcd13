//! The device authorization grant (RFC 8628): Microsoft `POST /{tenant}/oauth2/v2.0/devicecode`,
//! Google `POST /device/code`, polling through the token endpoint, and the verification pages
//! (`/common/oauth2/deviceauth` for Microsoft, `/device` for Google) where a browser approves.
//!
//! Polling answers `authorization_pending` until a decision, `slow_down` when polled faster than the
//! interval, `expired_token` after expiry, and a decline as Microsoft `authorization_declined` or
//! Google `access_denied`. Google refuses Gmail scopes here with `invalid_scope`, as it really does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};

use crate::errors::{OAuthError, json_no_store};
use crate::model::{ClientConfig, Flavour};
use crate::params::Params;
use crate::state::{Decision, DeviceRecord, Idp, State as Memory, bump};
use crate::token::unknown_client;
use crate::tokens::{Issue, has_scope, issue, split_scopes};
use crate::util::{html_escape, now_unix};

/// `POST /{tenant}/oauth2/v2.0/devicecode`
pub(crate) async fn ms_devicecode(
    State(idp): State<Arc<Idp>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    start(&idp, Flavour::Microsoft, &tenant, &body)
}

/// `POST /device/code`
pub(crate) async fn google_devicecode(State(idp): State<Arc<Idp>>, body: Bytes) -> Response {
    start(&idp, Flavour::Google, "", &body)
}

fn start(idp: &Idp, flavour: Flavour, tenant: &str, body: &[u8]) -> Response {
    let p = Params::parse(body);
    let mut st = idp.lock();
    let result = start_inner(idp, &mut st, flavour, tenant, &p);
    bump(&mut st.stats.device_code, result.is_ok());
    drop(st);
    match result {
        Ok(v) => json_no_store(v),
        Err(e) => e.render(flavour, &idp.rng),
    }
}

fn start_inner(
    idp: &Idp,
    st: &mut Memory,
    flavour: Flavour,
    tenant: &str,
    p: &Params,
) -> Result<Value, OAuthError> {
    let Some(client_id) = p.get("client_id") else {
        return Err(OAuthError::missing("client_id"));
    };
    let Some(client) = st
        .clients
        .get(client_id)
        .filter(|c| c.flavour == flavour)
        .cloned()
    else {
        return Err(unknown_client(client_id, tenant));
    };
    let Some(scope) = p.get("scope") else {
        return Err(OAuthError::missing("scope"));
    };
    let scopes = split_scopes(scope);
    if let Some(bad) = scopes
        .iter()
        .find(|s| flavour == Flavour::Google && is_gmail_scope(s))
    {
        return Err(OAuthError::new(
            "invalid_scope",
            70_011,
            "",
            &format!("Invalid device flow scope: {bad}"),
        ));
    }
    let now = now_unix();
    let lifetime = st
        .settings
        .device_code_lifetime_secs
        .unwrap_or(match flavour {
            Flavour::Microsoft => 900,
            Flavour::Google => 1800,
        });
    let interval = st.settings.device_poll_interval_secs;
    let (device_code, user_code) = match flavour {
        Flavour::Microsoft => (
            format!("DAQABAAEAAA{}", idp.rng.token(96)),
            idp.rng.code_from(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789", 9),
        ),
        Flavour::Google => {
            let c = idp.rng.code_from(b"BCDFGHJKLMNPQRSTVWXZ", 8);
            (
                format!("AH-1Ng{}", idp.rng.token(60)),
                format!("{}-{}", &c[..4], &c[4..]),
            )
        }
    };
    let tenant_id = Idp::tenant_id(st, tenant, None);
    st.devices.insert(
        device_code.clone(),
        DeviceRecord {
            flavour,
            user_code: user_code.clone(),
            client_id: client.client_id.clone(),
            scopes,
            tenant_id,
            created: now,
            expires_at: now + lifetime,
            last_poll: None,
            decision: Decision::Pending,
        },
    );
    Ok(match flavour {
        Flavour::Microsoft => {
            let uri = format!("{}/common/oauth2/deviceauth", idp.base_url);
            json!({
                "user_code": user_code,
                "device_code": device_code,
                "verification_uri": uri,
                "expires_in": lifetime,
                "interval": interval,
                "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
            })
        }
        Flavour::Google => json!({
            "device_code": device_code,
            "user_code": user_code,
            "expires_in": lifetime,
            "interval": interval,
            "verification_url": format!("{}/device", idp.base_url),
        }),
    })
}

/// Gmail scopes are not on Google's list of scopes allowed for the device flow.
fn is_gmail_scope(s: &str) -> bool {
    s == "https://mail.google.com/" || s.starts_with("https://www.googleapis.com/auth/gmail.")
}

/// The device code grant at the token endpoint (client already authenticated).
pub(crate) fn poll(
    idp: &Idp,
    st: &mut Memory,
    flavour: Flavour,
    client: &ClientConfig,
    p: &Params,
) -> Result<Value, OAuthError> {
    let Some(code) = p.get("device_code") else {
        return Err(OAuthError::missing("device_code"));
    };
    let now = now_unix();
    let interval = st.settings.device_poll_interval_secs;
    let Some(dev) = st
        .devices
        .get_mut(code)
        .filter(|d| d.client_id == client.client_id && d.flavour == flavour)
    else {
        let mut e = OAuthError::new(
            "invalid_grant",
            70_000,
            "Provided grant is invalid or malformed.",
            "Malformed auth code.",
        );
        if flavour == Flavour::Microsoft {
            e.error = "bad_verification_code".into();
        }
        return Err(e);
    };
    if dev.expires_at <= now {
        return Err(OAuthError::new(
            "expired_token",
            70_019,
            "Verification code expired.",
            "Bad Request",
        ));
    }
    let previous = dev.last_poll.replace(Instant::now());
    match dev.decision.clone() {
        Decision::Denied => {
            let mut e = OAuthError::new(
                "access_denied",
                65_004,
                "User declined to consent to access the app.",
                "Forbidden",
            );
            match flavour {
                Flavour::Microsoft => e.error = "authorization_declined".into(),
                Flavour::Google => e.status = StatusCode::FORBIDDEN,
            }
            Err(e)
        }
        Decision::Pending => {
            let too_fast = interval > 0
                && previous.is_some_and(|t| t.elapsed() < Duration::from_secs(interval));
            Err(pending_error(flavour, too_fast))
        }
        Decision::Approved(email) => {
            let Some(dev) = st.devices.remove(code) else {
                return Err(OAuthError::missing("device_code"));
            };
            let Some(user) = st.user(&email).cloned() else {
                return Err(OAuthError::new(
                    "invalid_grant",
                    50_034,
                    "The user account does not exist in the directory.",
                    "Bad Request",
                ));
            };
            let tenant_id = user.tenant_id.clone().unwrap_or(dev.tenant_id);
            let with_refresh =
                flavour == Flavour::Google || has_scope(&dev.scopes, "offline_access");
            issue(
                idp,
                st,
                &Issue {
                    flavour,
                    client,
                    user: Some(&user),
                    scopes: &dev.scopes,
                    tenant_id: &tenant_id,
                    with_refresh,
                    nonce: None,
                    grant_id: None,
                },
            )
        }
    }
}

/// `slow_down` (polled faster than the interval) or `authorization_pending`; Google answers these
/// with HTTP 403 and 428, Microsoft with 400.
fn pending_error(flavour: Flavour, too_fast: bool) -> OAuthError {
    let mut e = if too_fast {
        OAuthError::new(
            "slow_down",
            70_016,
            "OAuth 2.0 device flow error. Polling too frequently; increase the interval by 5 seconds.",
            "Forbidden",
        )
        .status(StatusCode::FORBIDDEN)
    } else {
        OAuthError::new(
            "authorization_pending",
            70_016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            "Precondition Required",
        )
        .status(StatusCode::PRECONDITION_REQUIRED)
    };
    if flavour == Flavour::Microsoft {
        e.status = StatusCode::BAD_REQUEST;
    }
    e
}

/// `GET /common/oauth2/deviceauth` and `GET /device`: the code entry form.
pub(crate) async fn verification_page() -> Html<&'static str> {
    Html(
        "<!DOCTYPE html><html><head><title>Enter code</title></head><body><h1>Enter code</h1>\
         <p>Enter the code displayed on your app or device.</p>\
         <form method=\"POST\"><input type=\"text\" name=\"user_code\" autofocus/>\
         <input type=\"text\" name=\"login\" placeholder=\"user (optional)\"/>\
         <button type=\"submit\" name=\"action\" value=\"approve\">Next</button>\
         <button type=\"submit\" name=\"action\" value=\"deny\">Cancel</button></form></body></html>",
    )
}

/// `POST /common/oauth2/deviceauth` and `POST /device`: form `user_code`, optional `login` (the
/// user; default user otherwise) and `action` (`approve`, the default, or `deny`).
pub(crate) async fn verification_submit(
    State(idp): State<Arc<Idp>>,
    _headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = Params::parse(&body);
    let Some(code) = p.get("user_code") else {
        return (StatusCode::BAD_REQUEST, Html("<p>Enter a code.</p>")).into_response();
    };
    let approve = p.get("action") != Some("deny");
    match idp.decide_device(Some(code), p.get("login"), approve) {
        Ok(d) if approve => Html(format!(
            "<!DOCTYPE html><html><body><h1>You're all set</h1><p>You have signed in to the {} application on your device. You may now close this window.</p></body></html>",
            html_escape(&d.client_id)
        ))
        .into_response(),
        Ok(_) => Html("<!DOCTYPE html><html><body><h1>Sign-in cancelled</h1></body></html>")
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Html(format!(
                "<!DOCTYPE html><html><body><h1>That code didn't work</h1><p id=\"error\">{}</p></body></html>",
                html_escape(&e.to_string())
            )),
        )
            .into_response(),
    }
}
