//! The JSON control API under `/_control/...`, so a test in another process can configure the fake,
//! inject faults and read counters. Each handler is a thin translation onto the same `Idp`
//! operations the Rust API calls; malformed JSON gets a 400 with `{"error": "..."}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::model::{
    AuthorizeErrorFault, ClientConfig, SettingsPatch, TokenErrorFault, TokenHttpFault, UserConfig,
};
use crate::state::{ControlError, Idp};

/// The `/_control` routes.
pub(crate) fn routes() -> Router<Arc<Idp>> {
    Router::new()
        .route("/_control/stats", get(stats))
        .route("/_control/stats/reset", post(reset_stats))
        .route("/_control/clients", post(add_client))
        .route("/_control/users", post(add_user))
        .route("/_control/settings", get(get_settings).put(put_settings))
        .route("/_control/faults/token-http", post(token_http))
        .route("/_control/faults/token-error", post(token_error))
        .route("/_control/faults/authorize-error", post(authorize_error))
        .route("/_control/faults/clear", post(clear_faults))
        .route("/_control/tokens/expire-access", post(expire_access))
        .route("/_control/tokens/revoke", post(revoke))
        .route("/_control/device", get(devices))
        .route("/_control/device/approve", post(approve))
        .route("/_control/device/deny", post(deny))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| bad_request(&e.to_string()))
}

fn bad_request(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response()
}

fn ok() -> Response {
    Json(json!({"ok": true})).into_response()
}

async fn stats(State(idp): State<Arc<Idp>>) -> Response {
    Json(idp.stats()).into_response()
}

async fn reset_stats(State(idp): State<Arc<Idp>>) -> Response {
    idp.reset_stats();
    ok()
}

async fn add_client(State(idp): State<Arc<Idp>>, body: Bytes) -> Response {
    match parse::<ClientConfig>(&body) {
        Ok(c) => {
            idp.add_client(c);
            (StatusCode::CREATED, Json(json!({"ok": true}))).into_response()
        }
        Err(r) => r,
    }
}

async fn add_user(State(idp): State<Arc<Idp>>, body: Bytes) -> Response {
    match parse::<UserConfig>(&body) {
        Ok(u) => {
            idp.add_user(u);
            (StatusCode::CREATED, Json(json!({"ok": true}))).into_response()
        }
        Err(r) => r,
    }
}

async fn get_settings(State(idp): State<Arc<Idp>>) -> Response {
    Json(idp.settings()).into_response()
}

async fn put_settings(State(idp): State<Arc<Idp>>, body: Bytes) -> Response {
    match parse::<SettingsPatch>(&body) {
        Ok(p) => Json(idp.patch_settings(p)).into_response(),
        Err(r) => r,
    }
}

async fn token_http(State(idp): State<Arc<Idp>>, body: Bytes) -> Response {
    match parse::<TokenHttpFault>(&body) {
        Ok(f) if f.status == 429 || (500..=599).contains(&f.status) => {
            idp.arm_http_fault(f);
            ok()
        }
        Ok(f) => bad_request(&format!("status {} is not 429 or 5xx", f.status)),
        Err(r) => r,
    }
}

async fn token_error(State(idp): State<Arc<Idp>>, body: Bytes) -> Response {
    match parse::<TokenErrorFault>(&body) {
        Ok(f) => {
            idp.push_token_error(f);
            ok()
        }
        Err(r) => r,
    }
}

async fn authorize_error(State(idp): State<Arc<Idp>>, body: Bytes) -> Response {
    match parse::<AuthorizeErrorFault>(&body) {
        Ok(f) => {
            idp.push_authorize_error(f);
            ok()
        }
        Err(r) => r,
    }
}

async fn clear_faults(State(idp): State<Arc<Idp>>) -> Response {
    idp.clear_faults();
    ok()
}

async fn expire_access(State(idp): State<Arc<Idp>>) -> Response {
    Json(json!({"expired": idp.expire_access_tokens()})).into_response()
}

/// Body of `POST /_control/tokens/revoke`: exactly one field.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RevokeRequest {
    refresh_token: Option<String>,
    access_token: Option<String>,
    user: Option<String>,
}

async fn revoke(State(idp): State<Arc<Idp>>, body: Bytes) -> Response {
    let req = match parse::<RevokeRequest>(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let revoked = match (req.refresh_token, req.access_token, req.user) {
        (Some(t), None, None) => usize::from(idp.revoke_refresh_token(&t)),
        (None, Some(t), None) => usize::from(idp.revoke_access_token(&t)),
        (None, None, Some(u)) => idp.revoke_user(&u),
        _ => return bad_request("give exactly one of refresh_token, access_token, user"),
    };
    Json(json!({"revoked": revoked})).into_response()
}

async fn devices(State(idp): State<Arc<Idp>>) -> Response {
    Json(idp.pending_devices()).into_response()
}

/// Body of the device approve/deny calls; both fields optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DecideRequest {
    user_code: Option<String>,
    user: Option<String>,
}

async fn approve(State(idp): State<Arc<Idp>>, body: Bytes) -> Response {
    decide(&idp, &body, true)
}

async fn deny(State(idp): State<Arc<Idp>>, body: Bytes) -> Response {
    decide(&idp, &body, false)
}

fn decide(idp: &Idp, body: &[u8], approve: bool) -> Response {
    let req = match parse::<DecideRequest>(body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match idp.decide_device(req.user_code.as_deref(), req.user.as_deref(), approve) {
        Ok(d) => Json(d).into_response(),
        Err(e @ ControlError::NoPendingDevice) => {
            (StatusCode::NOT_FOUND, Json(json!({"error": e.to_string()}))).into_response()
        }
        Err(e) => bad_request(&e.to_string()),
    }
}
