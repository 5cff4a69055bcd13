//! The HTTP shell: health and readiness probes now; the admin UI, the REST API and the OAuth
//! callback grow here. Handlers translate requests into calls on the app core and render results;
//! they hold no business rules.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oauthimap_app::App;
use tower_http::trace::TraceLayer;

/// The service's routes.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers.
async fn readyz(State(app): State<App>) -> Response {
    match app.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

/// Binds `addr` and serves until `shutdown` resolves, then finishes in-flight requests.
/// Returns the bound address through `on_bound` (useful with port 0).
pub async fn serve(
    app: App,
    addr: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    on_bound(listener.local_addr()?);
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}
