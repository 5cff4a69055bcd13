//! The overview: every account and receiver with its state, upcoming expiries, recent events.
//! (Being written.)

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oauthimap_app::App;

use super::session::Admin;

pub async fn page(State(_app): State<App>, _admin: Admin) -> Response {
    (StatusCode::OK, "health").into_response()
}
