//! The HTTP shell: health and readiness probes, `/metrics`, the OAuth callback, the REST API
//! (`/api/v1`, API tokens) and the admin pages (sessions of admin users). Handlers translate
//! requests into calls on the app core and render results; they hold no business rules.

mod api;
mod callback;
mod metrics;
mod rest;
mod ui;

pub use rest::OPENAPI;

/// The REST API's JSON request bodies, as its handlers read them: for the fuzz target in
/// `crates/web/fuzz-rest`, not an interface.
#[doc(hidden)]
pub mod bodies {
    pub use crate::api::DiagnoseBody;
    pub use crate::rest::{ApplicationBody, GatewayPasswordBody, ReceiverBody};
}

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oauthimap_app::Core;
use tower_http::trace::TraceLayer;

/// The service's routes.
pub fn router(app: Core) -> Router {
    metrics::init();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .route("/oauth/callback", get(callback::callback))
        .route("/api/v1/accounts/{id}/token", get(api::account_token))
        .route(
            "/api/v1/accounts/{id}/diagnose",
            axum::routing::post(api::diagnose),
        )
        .route("/api/v1/openapi.json", get(rest::openapi))
        .route(
            "/api/v1/applications",
            get(rest::list_applications).post(rest::create_application),
        )
        .route(
            "/api/v1/applications/{id}",
            get(rest::get_application)
                .patch(rest::update_application)
                .delete(rest::delete_application),
        )
        .route("/api/v1/accounts", get(rest::list_accounts))
        .route(
            "/api/v1/accounts/{id}",
            get(rest::get_account).delete(rest::delete_account),
        )
        .route(
            "/api/v1/receivers",
            get(rest::list_receivers).post(rest::create_receiver),
        )
        .route(
            "/api/v1/receivers/{id}",
            get(rest::get_receiver)
                .patch(rest::update_receiver)
                .delete(rest::delete_receiver),
        )
        .route("/api/v1/messages", get(rest::list_messages))
        .route("/api/v1/messages/{id}", get(rest::get_message))
        .route("/api/v1/events", get(rest::list_events))
        .route(
            "/api/v1/gateway-passwords",
            get(rest::list_gateway_passwords),
        )
        .route(
            "/api/v1/accounts/{id}/gateway-passwords",
            axum::routing::post(rest::create_gateway_password),
        )
        .route(
            "/api/v1/accounts/{id}/gateway-passwords/{name}",
            axum::routing::delete(rest::delete_gateway_password),
        )
        .merge(ui::routes(&app))
        .route_layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            transport_headers,
        ))
        .layer(trace_layer())
        .with_state(app)
}

/// Request logging that records the method and path only: query strings carry authorization
/// codes and states (the OAuth callback), which must never reach a log.
fn trace_layer() -> TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    impl Fn(&axum::http::Request<axum::body::Body>) -> tracing::Span + Clone,
> {
    TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<axum::body::Body>| {
        tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
    })
}

/// Every API route as (method, path template), in the order of the `OpenAPI` document.
pub const API_ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/applications"),
    ("post", "/api/v1/applications"),
    ("get", "/api/v1/applications/{id}"),
    ("patch", "/api/v1/applications/{id}"),
    ("delete", "/api/v1/applications/{id}"),
    ("get", "/api/v1/accounts"),
    ("get", "/api/v1/accounts/{id}"),
    ("delete", "/api/v1/accounts/{id}"),
    ("get", "/api/v1/accounts/{id}/token"),
    ("post", "/api/v1/accounts/{id}/diagnose"),
    ("get", "/api/v1/receivers"),
    ("post", "/api/v1/receivers"),
    ("get", "/api/v1/receivers/{id}"),
    ("patch", "/api/v1/receivers/{id}"),
    ("delete", "/api/v1/receivers/{id}"),
    ("get", "/api/v1/messages"),
    ("get", "/api/v1/messages/{id}"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/gateway-passwords"),
    ("post", "/api/v1/accounts/{id}/gateway-passwords"),
    ("delete", "/api/v1/accounts/{id}/gateway-passwords/{name}"),
];

/// Only the OAuth callback: what `oauthimap account authorize` serves on a temporary listener
/// when no service runs.
pub fn callback_router(app: Core) -> Router {
    Router::new()
        .route("/oauth/callback", get(callback::callback))
        .layer(trace_layer())
        .with_state(app)
}

/// On every response: `nosniff`, and HSTS when the service is reached over https.
async fn transport_headers(
    State(app): State<Core>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::{HeaderValue, header};
    let https = app.redirect_url().scheme() == "https";
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    if https {
        h.entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(HeaderValue::from_static("max-age=31536000"));
    }
    response
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers.
async fn readyz(State(app): State<Core>) -> Response {
    match app.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Binds `addr` and serves the whole service until `shutdown` resolves.
/// Reports the bound address through `on_bound` (useful with port 0).
pub async fn serve(
    app: Core,
    addr: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    on_bound(listener.local_addr()?);
    serve_on(listener, router(app), shutdown).await
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
