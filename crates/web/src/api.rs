//! `/api/v1`: the token broker for other mail tools, guarded by API tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oauthimap_app::{AccountSelector, AppError, Core};
use oauthimap_types::FailureKind;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

/// A JSON error with a stable code.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<SecretString> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| SecretString::from(token.trim().to_owned()))
}

/// Checks the request's API token for `scope`; the error is the response to send.
pub(crate) async fn authorize(
    app: &Core,
    headers: &HeaderMap,
    scope: &str,
) -> Result<(), Response> {
    let Some(api_token) = bearer(headers) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send an API token: Authorization: Bearer <token>",
        ));
    };
    match app.find_api_token(&api_token).await {
        Ok(Some(t)) if t.has_scope(scope) => Ok(()),
        Ok(Some(t)) => Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!(
                "the API token {:?} lacks the {scope} scope; create one with it: oauthimap api-token create --name NAME --scope {scope}",
                t.name
            ),
        )),
        Ok(None) => Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the API token is unknown or was removed",
        )),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        )),
    }
}

/// Query of `GET /api/v1/accounts/{account}/token`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    /// The application, when the mailbox is authorized in several.
    app: Option<String>,
    /// A new token even if the current one is still valid.
    #[serde(default)]
    force: bool,
    /// Also the SASL initial response: xoauth2 or oauthbearer.
    sasl: Option<oauthimap_types::Mechanism>,
    /// OAUTHBEARER only: the server it binds to.
    host: Option<String>,
    port: Option<u16>,
}

/// `GET /api/v1/accounts/{account}/token` (an id or a mailbox): a valid access token,
/// refreshed if needed, and the SASL string when asked for (`oauthimap token --server`).
pub async fn account_token(
    State(app): State<Core>,
    Path(account): Path<String>,
    query: Result<axum::extract::Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize(&app, &headers, "tokens:read").await {
        return refused;
    }
    let q = match query {
        Ok(axum::extract::Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", &e.body_text()),
    };
    let selector = AccountSelector::new(account.clone(), q.app.clone());
    let found = match app.account_token(&selector, q.force).await {
        Ok(found) => found,
        Err(e) => return token_error(&account, &e),
    };
    let (account, token) = found;
    let mut body = json!({
        "account_id": account.id,
        "mailbox": account.mailbox,
        "token_type": "Bearer",
        "access_token": token.secret.expose_secret(),
        "expires_at": token.expires_at,
    });
    if let Some(mechanism) = q.sasl {
        let server = q.host.zip(q.port);
        match app.account_sasl(&selector, mechanism, server).await {
            Ok((_, sasl)) => body["sasl"] = json!(sasl.expose_secret()),
            Err(e) => return token_error(&account.mailbox, &e),
        }
    }
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

fn token_error(account: &str, e: &AppError) -> Response {
    match e {
        AppError::NotFound { .. } => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("account {account} does not exist"),
        ),
        AppError::Token(e) if e.kind == FailureKind::Permanent => {
            error(StatusCode::CONFLICT, "needs_reauth", &e.message)
        }
        AppError::Token(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            &e.message,
        ),
        e if e.is_user_error() => error(StatusCode::BAD_REQUEST, "invalid", &e.to_string()),
        e => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    }
}

/// Options of `POST /api/v1/accounts/{id}/diagnose`; every field is optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnoseBody {
    host: Option<String>,
    port: Option<u16>,
    security: Option<oauthimap_types::Security>,
    mechanism: Option<oauthimap_types::Mechanism>,
    folder: Option<String>,
    ca_file: Option<String>,
    timeout_secs: Option<u64>,
    /// Also check the SMTP login the gateway would make.
    #[serde(default)]
    smtp: bool,
}

/// `POST /api/v1/accounts/{id}/diagnose`: the login diagnostic report (needs the admin scope).
pub async fn diagnose(
    State(app): State<Core>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Option<Json<DiagnoseBody>>,
) -> Response {
    if let Err(refused) = authorize(&app, &headers, "admin").await {
        return refused;
    }
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let options = oauthimap_app::DiagnoseOptions {
        host: b.host,
        port: b.port,
        security: b.security,
        mechanism: b.mechanism,
        folder: b.folder,
        ca_file: b.ca_file,
        timeout: b.timeout_secs.map(std::time::Duration::from_secs),
        smtp: b.smtp,
    };
    match app
        .diagnose(&AccountSelector::new(id.to_string(), None), &options)
        .await
    {
        Ok(report) => Json(report).into_response(),
        Err(AppError::NotFound { .. }) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("account {id} does not exist"),
        ),
        Err(e) if e.is_user_error() => error(StatusCode::BAD_REQUEST, "invalid", &e.to_string()),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    }
}
