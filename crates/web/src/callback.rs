//! `GET /oauth/callback`: where the provider sends the browser back after sign-in. It never
//! redirects anywhere: it shows the outcome (the account, or the provider's error with a hint).

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use oauthimap_app::{App, CallbackParams};

use crate::escape;

pub async fn callback(State(app): State<App>, Query(params): Query<CallbackParams>) -> Response {
    let (status, title, body) = match app.finish_sign_in(&params).await {
        Ok(account) => (
            StatusCode::OK,
            "Authorization complete",
            format!(
                "<p>The mailbox <strong>{}</strong> is authorized for application <strong>{}</strong> \
                 (signed in as {}). oauthimap renews its tokens from now on.</p><p>You can close this window.</p>",
                escape(&account.mailbox),
                escape(&account.application_name),
                escape(&account.identity)
            ),
        ),
        Err(error) => {
            tracing::warn!(%error, "sign-in failed");
            let status =
                if error.is_user_error() || matches!(error, oauthimap_app::AppError::Provider(_)) {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
            (
                status,
                "Authorization failed",
                format!(
                    "<p>{}</p><p>Nothing was changed.</p>",
                    escape(&error.to_string())
                ),
            )
        }
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title} · oauthimap</title></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem\">\
         <h1>{title}</h1>{body}</body></html>"
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        page,
    )
        .into_response()
}
