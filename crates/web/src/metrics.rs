//! `GET /metrics` in the Prometheus text format: accounts by state and seconds until each
//! account's access token expires (read from the database at scrape time), refreshes by outcome,
//! collections, messages and delivery failures (counted where they happen), and HTTP request
//! latency (a middleware). Nothing here identifies a token or a secret.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use oauthimap_app::Core;
use oauthimap_types::now_millis;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide recorder (installed on first use; `None` if another one was installed).
fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("oauthimap_http_request_duration_seconds".into()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ],
                )
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|e| tracing::warn!(error = %e, "metrics are disabled"))
                .ok()
        })
        .as_ref()
}

/// Installs the recorder early, so counters from the first requests are kept.
pub fn init() {
    let _ = handle();
}

/// Records every request's latency by method, route and status.
pub async fn track(request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(
        "oauthimap_http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// Gauges are floats; counts here stay far below 2^52, where the conversion is exact.
#[allow(clippy::cast_precision_loss)]
pub async fn render(State(app): State<Core>, headers: axum::http::HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match app.metrics_allowed(bearer) {
        Ok(true) => {}
        Ok(false) => {
            return (
                axum::http::StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")],
                "/metrics needs the bearer token of metrics.token_file\n",
            )
                .into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot check the metrics token");
            return (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the metrics token file cannot be read; see the service log\n",
            )
                .into_response();
        }
    }
    let Some(handle) = handle() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics are disabled\n",
        )
            .into_response();
    };
    // Series per account and per receiver are written here at each scrape, not kept in the
    // recorder: one that is removed disappears from the next scrape instead of staying forever.
    let mut series = String::new();
    if let Ok(accounts) = app.list_accounts(None).await {
        let now = now_millis();
        for state in oauthimap_types::AccountState::ALL {
            let n = accounts.iter().filter(|a| a.state == *state).count();
            metrics::gauge!("oauthimap_accounts", "state" => state.as_str()).set(n as f64);
        }
        let _ = writeln!(
            series,
            "# HELP oauthimap_token_expiry_seconds Seconds until the account's access token expires.\n\
             # TYPE oauthimap_token_expiry_seconds gauge"
        );
        for a in &accounts {
            if let Some(expires) = a.access_expires_at {
                let _ = writeln!(
                    series,
                    "oauthimap_token_expiry_seconds{{account=\"{}\"}} {}",
                    a.id,
                    (expires - now) as f64 / 1000.0
                );
            }
        }
    }
    if let Ok(receivers) = app.list_receivers().await {
        let active = receivers.iter().filter(|r| r.fields.active).count();
        metrics::gauge!("oauthimap_receivers", "active" => "true").set(active as f64);
        metrics::gauge!("oauthimap_receivers", "active" => "false")
            .set((receivers.len() - active) as f64);
        for state in oauthimap_types::ReceiverState::ALL {
            let n = receivers.iter().filter(|r| r.state == *state).count();
            metrics::gauge!("oauthimap_receivers_by_state", "state" => state.as_str())
                .set(n as f64);
        }
        let now = now_millis();
        let _ = writeln!(
            series,
            "# HELP oauthimap_receiver_sink_waiting_seconds Seconds the receiver has waited for its sink (0: not waiting).\n\
             # TYPE oauthimap_receiver_sink_waiting_seconds gauge"
        );
        for r in &receivers {
            // How long each receiver has waited for its sink (0 when it is not waiting): alert
            // on this rather than on the state alone, which short restarts of the sink also show.
            let waiting = r
                .status
                .as_ref()
                .filter(|s| s.state == oauthimap_types::ReceiverState::WaitingForSink)
                .map_or(0.0, |s| (now - s.since) as f64 / 1000.0);
            let _ = writeln!(
                series,
                "oauthimap_receiver_sink_waiting_seconds{{receiver=\"{}\"}} {waiting}",
                label(&r.fields.name)
            );
        }
    }
    if let Ok(n) = app.message_count().await {
        metrics::gauge!("oauthimap_stored_messages").set(n as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render() + &series,
    )
        .into_response()
}

/// A label value in the text format: backslash, double quote and line feed escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
