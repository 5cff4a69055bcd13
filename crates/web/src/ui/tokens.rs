//! API tokens: create (the value is shown once), list, delete. (Being written.)

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oauthimap_app::App;

use super::session::Admin;

pub async fn list(State(_app): State<App>, _admin: Admin) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "not yet").into_response()
}

pub async fn create(State(_app): State<App>, _admin: Admin) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "not yet").into_response()
}

pub async fn delete(State(_app): State<App>, _admin: Admin) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "not yet").into_response()
}
