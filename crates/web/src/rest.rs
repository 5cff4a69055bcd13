//! `/api/v1`: applications, accounts, receivers, messages and events as JSON, guarded by API
//! tokens with the `admin` scope. Handlers only translate between JSON and the app core. Errors
//! are `{"error": {"code": "...", "message": "..."}}` with a stable code; lists that can grow
//! (messages, events) page with `limit` and `cursor` (the `next_cursor` of the previous page).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use oauthimap_app::{AccountSelector, AppError, ApplicationInput, Core, EventQuery, ReceiverInput};
use oauthimap_types::{AfterDelivery, Cloud, Mechanism, Provider, Security, SinkKind, Trigger};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::api::{authorize, error};

/// Maps a core error to its status and stable code.
pub(crate) fn app_error(e: &AppError) -> Response {
    if let AppError::NeedsConfirmation {
        accounts,
        receivers,
        ..
    } = e
    {
        let body = json!({ "error": {
            "code": "confirmation_required",
            "message": e.to_string(),
            "accounts": accounts,
            "receivers": receivers,
        } });
        return (StatusCode::CONFLICT, Json(body)).into_response();
    }
    if let AppError::Fields(fields) = e {
        let body = json!({ "error": {
            "code": "invalid",
            "message": e.to_string(),
            "fields": fields,
        } });
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
    }
    let (status, code) = match e {
        AppError::Invalid { .. } | AppError::Config(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
        }
        AppError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
        AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        AppError::Provider(_) => (StatusCode::BAD_GATEWAY, "provider_error"),
        AppError::Token(_) => (StatusCode::CONFLICT, "token_unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    error(status, code, &e.to_string())
}

fn ok<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    (status, Json(value)).into_response()
}

/// Runs `body` when the request carries an `admin` API token.
macro_rules! admin {
    ($app:expr, $headers:expr, $body:expr) => {{
        if let Err(refused) = authorize(&$app, &$headers, "admin").await {
            return refused;
        }
        match $body {
            Ok(response) => response,
            Err(e) => app_error(&e),
        }
    }};
}

/// Writable application fields; the client secret is write-only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationBody {
    name: Option<String>,
    active: Option<bool>,
    provider: Option<Provider>,
    cloud: Option<Cloud>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    #[serde(default)]
    clear_client_secret: bool,
    tenant: Option<String>,
    endpoint_base: Option<String>,
    authorize_url: Option<String>,
    token_url: Option<String>,
    device_url: Option<String>,
    userinfo_url: Option<String>,
    scopes: Option<String>,
    comment: Option<String>,
    /// Go ahead with a change that revokes the application's accounts (409
    /// `confirmation_required` without it, naming them).
    #[serde(default)]
    confirm: bool,
}

impl From<ApplicationBody> for ApplicationInput {
    fn from(b: ApplicationBody) -> Self {
        ApplicationInput {
            name: b.name,
            active: b.active,
            provider: b.provider,
            cloud: b.cloud,
            client_id: b.client_id,
            client_secret: b.client_secret,
            clear_client_secret: b.clear_client_secret,
            tenant: b.tenant,
            endpoint_base: b.endpoint_base,
            authorize_url: b.authorize_url,
            token_url: b.token_url,
            device_url: b.device_url,
            userinfo_url: b.userinfo_url,
            scopes: b.scopes,
            secret_expires_at: None,
            comment: b.comment,
            confirm: b.confirm,
        }
    }
}

/// Writable receiver fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverBody {
    name: Option<String>,
    active: Option<bool>,
    application: Option<String>,
    account: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    security: Option<Security>,
    mechanism: Option<Mechanism>,
    folder: Option<String>,
    trigger: Option<Trigger>,
    poll_interval_secs: Option<u32>,
    after_delivery: Option<AfterDelivery>,
    accepted_folder: Option<String>,
    refused_folder: Option<String>,
    size_limit_bytes: Option<u64>,
    sink: Option<SinkKind>,
    sink_target: Option<String>,
    #[serde(default)]
    new_sink_secret: bool,
    ca_file: Option<String>,
}

impl From<ReceiverBody> for ReceiverInput {
    fn from(b: ReceiverBody) -> Self {
        ReceiverInput {
            name: b.name,
            active: b.active,
            application: b.application,
            account: b.account,
            host: b.host,
            port: b.port,
            security: b.security,
            mechanism: b.mechanism,
            folder: b.folder,
            trigger: b.trigger,
            poll_interval_secs: b.poll_interval_secs,
            after_delivery: b.after_delivery,
            accepted_folder: b.accepted_folder,
            refused_folder: b.refused_folder,
            size_limit_bytes: b.size_limit_bytes,
            sink: b.sink,
            sink_target: b.sink_target,
            sink_secret: None,
            new_sink_secret: b.new_sink_secret,
            ca_file: b.ca_file,
        }
    }
}

/// A body that failed to parse is a 422 with serde's message (which names the field).
#[allow(clippy::result_large_err)] // the error is the HTTP response itself, built once
fn body<T>(
    parsed: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, Response> {
    parsed.map(|Json(b)| b).map_err(|e| {
        // Too large (413) and not JSON (415) keep their status; a body that does not fit the
        // fields is 422, like every other invalid input.
        let status = match e.status() {
            s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => s,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "invalid",
        };
        error(status, code, &e.body_text())
    })
}

pub async fn list_applications(State(app): State<Core>, headers: HeaderMap) -> Response {
    admin!(
        app,
        headers,
        app.list_applications().await.map(|items| ok(
            StatusCode::OK,
            &json!({ "items": items, "next_cursor": null })
        ))
    )
}

pub async fn create_application(
    State(app): State<Core>,
    headers: HeaderMap,
    parsed: Result<Json<ApplicationBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let input = match body(parsed) {
        Ok(b) => ApplicationInput::from(b),
        Err(r) => return r,
    };
    admin!(
        app,
        headers,
        app.add_application(&input)
            .await
            .map(|v| ok(StatusCode::CREATED, &v))
    )
}

pub async fn get_application(
    State(app): State<Core>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    admin!(
        app,
        headers,
        app.application_view(&id.to_string())
            .await
            .map(|v| ok(StatusCode::OK, &v))
    )
}

pub async fn update_application(
    State(app): State<Core>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    parsed: Result<Json<ApplicationBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let input = match body(parsed) {
        Ok(b) => ApplicationInput::from(b),
        Err(r) => return r,
    };
    admin!(
        app,
        headers,
        app.update_application(&id.to_string(), &input)
            .await
            .map(|(v, report)| ok(
                StatusCode::OK,
                &json!({ "application": v, "cascade": report })
            ))
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct RemoveQuery {
    #[serde(default)]
    cascade: bool,
}

pub async fn delete_application(
    State(app): State<Core>,
    Path(id): Path<i64>,
    Query(q): Query<RemoveQuery>,
    headers: HeaderMap,
) -> Response {
    admin!(
        app,
        headers,
        app.remove_application(&id.to_string(), q.cascade)
            .await
            .map(|_| StatusCode::NO_CONTENT.into_response())
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct AccountsQuery {
    application: Option<String>,
}

pub async fn list_accounts(
    State(app): State<Core>,
    Query(q): Query<AccountsQuery>,
    headers: HeaderMap,
) -> Response {
    admin!(
        app,
        headers,
        app.list_accounts(q.application.as_deref())
            .await
            .map(|items| ok(
                StatusCode::OK,
                &json!({ "items": items, "next_cursor": null })
            ))
    )
}

pub async fn get_account(
    State(app): State<Core>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    admin!(
        app,
        headers,
        app.find_account(&AccountSelector::new(id.to_string(), None))
            .await
            .map(|a| ok(StatusCode::OK, &a))
    )
}

pub async fn delete_account(
    State(app): State<Core>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    admin!(
        app,
        headers,
        app.remove_account(&AccountSelector::new(id.to_string(), None))
            .await
            .map(|_| StatusCode::NO_CONTENT.into_response())
    )
}

pub async fn list_receivers(State(app): State<Core>, headers: HeaderMap) -> Response {
    admin!(
        app,
        headers,
        app.list_receivers().await.map(|items| ok(
            StatusCode::OK,
            &json!({ "items": items, "next_cursor": null })
        ))
    )
}

pub async fn create_receiver(
    State(app): State<Core>,
    headers: HeaderMap,
    parsed: Result<Json<ReceiverBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let input = match body(parsed) {
        Ok(b) => ReceiverInput::from(b),
        Err(r) => return r,
    };
    admin!(
        app,
        headers,
        app.create_receiver(&input).await.map(|(r, secret)| {
            ok(StatusCode::CREATED, &json!({ "receiver": r, "sink_secret": secret.as_ref().map(ExposeSecret::expose_secret) }))
        })
    )
}

pub async fn get_receiver(
    State(app): State<Core>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    admin!(
        app,
        headers,
        app.find_receiver(&id.to_string())
            .await
            .map(|r| ok(StatusCode::OK, &r))
    )
}

pub async fn update_receiver(
    State(app): State<Core>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    parsed: Result<Json<ReceiverBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let input = match body(parsed) {
        Ok(b) => ReceiverInput::from(b),
        Err(r) => return r,
    };
    admin!(
        app,
        headers,
        app.change_receiver(&id.to_string(), &input).await.map(|(r, secret)| {
            ok(StatusCode::OK, &json!({ "receiver": r, "sink_secret": secret.as_ref().map(ExposeSecret::expose_secret) }))
        })
    )
}

pub async fn delete_receiver(
    State(app): State<Core>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    admin!(
        app,
        headers,
        app.remove_receiver(&id.to_string())
            .await
            .map(|_| StatusCode::NO_CONTENT.into_response())
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    search: Option<String>,
    account: Option<i64>,
    limit: Option<u32>,
    cursor: Option<i64>,
}

pub async fn list_messages(
    State(app): State<Core>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    admin!(
        app,
        headers,
        app.list_messages(q.search.as_deref(), q.cursor, limit).await.map(|items| {
            let next = (items.len() == limit as usize).then(|| items.last().map(|m| m.id)).flatten();
            let items: Vec<serde_json::Value> = items
                .into_iter()
                .map(|m| {
                    json!({ "id": m.id, "message_id": m.message_id, "subject": m.subject, "from_address": m.from_address,
                            "from_name": m.from_name, "date": m.date, "size": m.size, "receiver_id": m.receiver_id,
                            "created_at": m.created_at })
                })
                .collect();
            ok(StatusCode::OK, &json!({ "items": items, "next_cursor": next }))
        })
    )
}

pub async fn get_message(
    State(app): State<Core>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    admin!(
        app,
        headers,
        app.stored_message(id).await.map(|m| {
            let normalized: serde_json::Value = serde_json::from_str(&m.normalized).unwrap_or_default();
            ok(StatusCode::OK, &json!({ "id": m.id, "receiver_id": m.receiver_id, "created_at": m.created_at, "message": normalized }))
        })
    )
}

pub async fn list_events(
    State(app): State<Core>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    admin!(
        app,
        headers,
        app.events(EventQuery {
            account: q.account.map(oauthimap_types::AccountId),
            before: q.cursor.map(oauthimap_types::EventId),
            limit
        })
        .await
        .map(|page| {
            let next = page.next_cursor.map(|e| e.0);
            ok(
                StatusCode::OK,
                &json!({ "items": page.items, "next_cursor": next }),
            )
        })
    )
}

/// The `OpenAPI` document of this API (kept in step with the routes by a test).
pub const OPENAPI: &str = include_str!("../openapi.json");

pub async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// A new gateway password for an account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayPasswordBody {
    /// Which client it is for.
    pub name: String,
    /// imap, pop3, smtp (default all).
    #[serde(default)]
    pub protocols: Vec<String>,
    /// Epoch milliseconds.
    pub expires_at: Option<i64>,
}

pub async fn list_gateway_passwords(State(app): State<Core>, headers: HeaderMap) -> Response {
    admin!(
        app,
        headers,
        app.gateway_passwords(None).await.map(|items| ok(
            StatusCode::OK,
            &json!({ "items": items, "next_cursor": null })
        ))
    )
}

pub async fn create_gateway_password(
    State(app): State<Core>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    parsed: Result<Json<GatewayPasswordBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let b = match body(parsed) {
        Ok(b) => b,
        Err(r) => return r,
    };
    admin!(
        app,
        headers,
        app.add_gateway_password(
            &AccountSelector::new(id.to_string(), None),
            &b.name,
            &b.protocols,
            b.expires_at
        )
        .await
        .map(|(record, password)| {
            let mut r = ok(
                StatusCode::CREATED,
                &json!({ "gateway_password": record, "password": password.expose_secret() }),
            );
            r.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            r
        })
    )
}

pub async fn delete_gateway_password(
    State(app): State<Core>,
    Path((id, name)): Path<(i64, String)>,
    headers: HeaderMap,
) -> Response {
    admin!(
        app,
        headers,
        app.remove_gateway_password(&AccountSelector::new(id.to_string(), None), &name)
            .await
            .map(|_| StatusCode::NO_CONTENT.into_response())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_application_body_never_prints_its_client_secret() {
        // Found by fuzz-rest/fuzz_targets/rest_bodies.rs: the body's `Debug` showed the secret.
        let body: ApplicationBody =
            serde_json::from_str(r#"{"name":"Contoso","client_secret":"Xy7verysecret123"}"#)
                .unwrap();
        assert!(!format!("{body:?}").contains("Xy7verysecret123"));
        let input = ApplicationInput::from(body);
        assert_eq!(
            input
                .client_secret
                .as_ref()
                .map(ExposeSecret::expose_secret),
            Some("Xy7verysecret123")
        );
    }
}
