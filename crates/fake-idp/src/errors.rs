//! Error answers in each provider's real wire shape.
//!
//! Microsoft token-endpoint errors carry `error`, an `error_description` starting `AADSTSnnnn: ` and
//! ending with `\r\nTrace ID: ...\r\nCorrelation ID: ...\r\nTimestamp: ...`, `error_codes`,
//! `timestamp`, `trace_id`, `correlation_id` and `error_uri`; Google's carry only `error` and
//! `error_description`. Interactive failures that must never redirect (unknown client, redirect URI
//! mismatch) are HTML pages, as at the real providers. No provider logic decides anything here.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use crate::model::Flavour;
use crate::util::{Rng, html_escape, ms_timestamp, now_unix};

/// One OAuth error, rendered later in the flavour of the endpoint that produced it.
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub status: StatusCode,
    pub error: String,
    /// Microsoft AADSTS number (ignored for Google).
    pub code: Option<u32>,
    /// Microsoft description text (after `AADSTSnnnn: `).
    pub ms_description: String,
    /// Google description text.
    pub google_description: Option<String>,
    pub retry_after: Option<u32>,
}

impl OAuthError {
    /// A 400 error with the same meaning at both providers.
    pub(crate) fn new(error: &str, code: u32, ms: &str, google: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: error.to_owned(),
            code: Some(code),
            ms_description: ms.to_owned(),
            google_description: Some(google.to_owned()),
            retry_after: None,
        }
    }

    /// Changes the HTTP status.
    pub(crate) fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// `invalid_request` for a missing parameter.
    pub(crate) fn missing(param: &str) -> Self {
        Self::new(
            "invalid_request",
            900_144,
            &format!("The request body must contain the following parameter: '{param}'."),
            &format!("Missing required parameter: {param}"),
        )
    }

    /// Renders the error as the given provider would.
    pub(crate) fn render(&self, flavour: Flavour, rng: &Rng) -> Response {
        let body = match flavour {
            Flavour::Microsoft => {
                let trace_id = rng.guid();
                let correlation_id = rng.guid();
                let timestamp = ms_timestamp(now_unix());
                let code = self.code.unwrap_or(90_033);
                let description = format!(
                    "AADSTS{code}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
                    self.ms_description
                );
                json!({
                    "error": self.error,
                    "error_description": description,
                    "error_codes": [code],
                    "timestamp": timestamp,
                    "trace_id": trace_id,
                    "correlation_id": correlation_id,
                    "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
                })
            }
            Flavour::Google => match &self.google_description {
                Some(d) => json!({"error": self.error, "error_description": d}),
                None => json!({"error": self.error}),
            },
        };
        let mut resp = (self.status, json_no_store(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// A JSON body with `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 section 5.1).
pub(crate) fn json_no_store(body: serde_json::Value) -> Response {
    let mut resp = axum::Json(body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// The Microsoft sign-in error page, e.g. for `AADSTS700016` or `AADSTS50011`; shown in the browser,
/// never a redirect. Served with HTTP 400 so tests can tell it from a redirect at a glance.
pub(crate) fn ms_error_page(code: u32, message: &str, rng: &Rng) -> Response {
    let body = format!(
        "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>\
         <h1>Sign in</h1><div id=\"error\"><p>Sorry, but we&#39;re having trouble signing you in.</p>\
         <p id=\"message\">AADSTS{code}: {}</p>\
         <p>Request Id: {}</p><p>Correlation Id: {}</p><p>Timestamp: {}</p></div></body></html>",
        html_escape(message),
        rng.guid(),
        rng.guid(),
        ms_timestamp(now_unix()),
    );
    (StatusCode::BAD_REQUEST, Html(body)).into_response()
}

/// Google's "Access blocked" page, e.g. "Error 400: `redirect_uri_mismatch`".
pub(crate) fn google_error_page(status: StatusCode, error: &str, message: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html><html><head><title>Error {code}: {e}</title></head><body>\
         <h1>Access blocked: authorization error</h1><p>{m}</p>\
         <p id=\"error\">Error {code}: {e}</p></body></html>",
        code = status.as_u16(),
        e = html_escape(error),
        m = html_escape(message),
    );
    (status, Html(body)).into_response()
}
