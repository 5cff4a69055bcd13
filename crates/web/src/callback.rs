//! `GET /oauth/callback`: where the provider sends the browser back after sign-in. When an admin
//! is logged in (the sign-in started in the web UI), it redirects to the application's Accounts
//! tab with the outcome; otherwise (the CLI's sign-in) it shows the outcome on a page of its own.
//! It only ever redirects to a path it builds from the stored sign-in, never to one from the
//! request.

use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oauthimap_app::{CallbackParams, Core};

use crate::escape;
use crate::ui::session::{SESSION_COOKIE, cookie};

pub async fn callback(
    State(app): State<Core>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    let (application, result) = app.finish_sign_in_for(&params).await;
    let admin = match cookie(&headers, SESSION_COOKIE) {
        Some(token) => app.admin_session(token).await.ok().flatten(),
        None => None,
    };
    if admin.is_some() {
        let to = application.map_or_else(
            || "/applications".to_owned(),
            |id| format!("/applications/{id}/accounts"),
        );
        return match &result {
            Ok(signed_in) => {
                let account = &signed_in.account;
                let mut message = format!(
                    "The mailbox {} is authorized (signed in as {}). oauthimap renews its tokens from now on.",
                    account.mailbox, account.identity
                );
                if signed_in.resumed > 0 {
                    let _ = write!(message, " {} receiver(s) resumed.", signed_in.resumed);
                }
                crate::ui::redirect_with_notice(&app, &to, &message)
            }
            Err(error) => {
                tracing::warn!(%error, "sign-in failed");
                crate::ui::failed(&app, &to, error)
            }
        };
    }
    let (status, title, body) = match result.map(|s| s.account) {
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
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        page,
    )
        .into_response()
}
