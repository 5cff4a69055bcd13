//! Collected messages of the built-in store: search, detail, attachments. (Being written.)

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oauthimap_app::App;

use super::session::Admin;

pub async fn list(State(_app): State<App>, _admin: Admin) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "not yet").into_response()
}

pub async fn show(State(_app): State<App>, _admin: Admin, Path(_id): Path<i64>) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "not yet").into_response()
}

pub async fn attachment(
    State(_app): State<App>,
    _admin: Admin,
    Path((_id, _index)): Path<(i64, usize)>,
) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "not yet").into_response()
}
