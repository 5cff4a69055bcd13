//! Endpoints that consume issued tokens: RFC 7662 introspection (for Dovecot's oauth2 passdb),
//! Google's `GET /v1/userinfo` and Google's `POST /revoke`.
//!
//! Introspection accepts the token the three ways Dovecot can send it (`introspection_mode = post`:
//! form `token=`; `get`: query `?token=`; `auth`: `Authorization: Bearer`) and answers
//! `{"active":false}` for anything unknown, expired or revoked.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::errors::json_no_store;
use crate::model::Flavour;
use crate::params::{Params, bearer_token};
use crate::state::{Idp, bump};
use crate::tokens::{display_name, google_has, google_sub};
use crate::util::now_unix;

/// `POST /introspect` (also `GET`).
pub(crate) async fn introspect(
    State(idp): State<Arc<Idp>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Params::parse(&body);
    let query = Params::parse(query.unwrap_or_default().as_bytes());
    let token = form
        .get("token")
        .or_else(|| query.get("token"))
        .map(str::to_owned)
        .or_else(|| bearer_token(&headers));
    let mut st = idp.lock();
    if !st.settings.introspection_available {
        bump(&mut st.stats.introspection, false);
        let mut resp = (
            StatusCode::SERVICE_UNAVAILABLE,
            json_no_store(json!({"error": "temporarily_unavailable"})),
        )
            .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    }
    let now = now_unix();
    let live = token
        .as_deref()
        .and_then(|t| st.access.get(t))
        .filter(|r| !r.revoked && r.exp > now)
        .cloned();
    let Some(rec) = live else {
        st.stats.introspection.requests += 1;
        return json_no_store(json!({"active": false}));
    };
    bump(&mut st.stats.introspection, true);
    let email = match &rec.user_email {
        Some(e) => Some(e.clone()),
        None => st
            .clients
            .get(&rec.client_id)
            .and_then(|c| c.app_mailbox.clone()),
    };
    let mut body = json!({
        "active": true,
        "scope": rec.scope,
        "client_id": rec.client_id,
        "token_type": "Bearer",
        "exp": rec.exp,
        "iat": rec.iat,
        "sub": rec.sub,
        "aud": rec.aud,
        "iss": match rec.flavour {
            Flavour::Microsoft => "https://login.microsoftonline.com",
            Flavour::Google => "https://accounts.google.com",
        },
    });
    if let Some(e) = email {
        body["email"] = json!(e);
        body["username"] = json!(e);
    }
    json_no_store(body)
}

/// `GET /v1/userinfo` (Google's `OpenID Connect` userinfo).
pub(crate) async fn userinfo(State(idp): State<Arc<Idp>>, headers: HeaderMap) -> Response {
    let token = bearer_token(&headers);
    let mut st = idp.lock();
    let now = now_unix();
    let found = token
        .as_deref()
        .and_then(|t| st.access.get(t))
        .filter(|r| !r.revoked && r.exp > now && r.flavour == Flavour::Google)
        .cloned()
        .and_then(|r| {
            let user = st.user(r.user_email.as_deref()?)?.clone();
            Some((r, user))
        });
    let Some((rec, user)) = found else {
        bump(&mut st.stats.userinfo, false);
        let mut resp = (
            StatusCode::UNAUTHORIZED,
            json_no_store(json!({
                "error": "invalid_request",
                "error_description": "Invalid Credentials",
            })),
        )
            .into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
            ),
        );
        return resp;
    };
    bump(&mut st.stats.userinfo, true);
    let mut body = json!({"sub": google_sub(&user)});
    if google_has(&rec.scope, "profile") {
        let name = display_name(&user);
        let mut parts = name.splitn(2, ' ');
        body["name"] = json!(name);
        body["given_name"] = json!(parts.next().unwrap_or_default());
        if let Some(family) = parts.next() {
            body["family_name"] = json!(family);
        }
    }
    if google_has(&rec.scope, "email") && !user.omit_email_claim {
        body["email"] = json!(user.email);
        body["email_verified"] = json!(true);
    }
    axum::Json(body).into_response()
}

/// `POST /revoke` (Google): form or query `token=`, an access or refresh token; revokes the grant.
pub(crate) async fn revoke(
    State(idp): State<Arc<Idp>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let form = Params::parse(&body);
    let query = Params::parse(query.unwrap_or_default().as_bytes());
    let token = form.get("token").or_else(|| query.get("token"));
    let mut st = idp.lock();
    let grant = token.and_then(|t| {
        st.refresh
            .get(t)
            .filter(|r| r.flavour == Flavour::Google && !r.revoked)
            .map(|r| (r.grant_id, r.client_id.clone(), Some(r.user_email.clone())))
            .or_else(|| {
                st.access
                    .get(t)
                    .filter(|r| r.flavour == Flavour::Google && !r.revoked)
                    .map(|r| (r.grant_id, r.client_id.clone(), r.user_email.clone()))
            })
    });
    let Some((grant_id, client_id, email)) = grant else {
        bump(&mut st.stats.revoke, false);
        return (
            StatusCode::BAD_REQUEST,
            json_no_store(json!({
                "error": "invalid_token",
                "error_description": "Token expired or revoked",
            })),
        )
            .into_response();
    };
    // The next offline consent yields a refresh token again.
    if let Some(email) = email {
        st.google_consents
            .remove(&(client_id, email.to_ascii_lowercase()));
    }
    Idp::revoke_grant(&mut st, grant_id);
    bump(&mut st.stats.revoke, true);
    StatusCode::OK.into_response()
}
