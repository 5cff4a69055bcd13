//! A webhook: an HTTPS POST of `{"idempotency_key", "receiver", "message": <normalized>,
//! "raw_base64"}` with `Idempotency-Key`, `X-Oauthimap-Timestamp` and
//! `X-Oauthimap-Signature: sha256=<hex>` (HMAC-SHA256 of `{timestamp}.{body}` with the receiver's
//! secret) headers. 2xx delivers; network errors, timeouts, 408, 425, 429 and 5xx are transient
//! (retried, honouring `Retry-After` in seconds or as an HTTP date); any other status refuses the
//! message (redirects are not followed: the URL is the one the admin configured).

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::{Delivery, Receipt, SinkError};

/// The JSON document the webhook receives.
#[derive(serde::Serialize)]
struct Body<'a> {
    idempotency_key: &'a str,
    receiver: &'a str,
    /// The normalized message, as the parser encoded it.
    message: &'a serde_json::value::RawValue,
    raw_base64: String,
}

#[derive(Debug, Clone)]
pub struct WebhookSink {
    http: reqwest::Client,
    url: reqwest::Url,
    secret: Option<SecretString>,
    timeout: Duration,
}

/// The signature of a body sent at `timestamp`: hex HMAC-SHA256 of `{timestamp}.{body}`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            use std::fmt::Write;
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl WebhookSink {
    pub fn new(
        http: reqwest::Client,
        url: &str,
        secret: Option<SecretString>,
        timeout: Duration,
        allowed: &[oauthimap_types::net::Network],
    ) -> Result<Self, SinkError> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| SinkError::Permanent(format!("the webhook URL is invalid: {e}")))?;
        // A name is checked when it is resolved (the HTTP client's resolver); an address, and
        // the names that stand for one, here: the same rule as when the target was saved.
        if let Some(ip) = oauthimap_types::net::host_address(&url)
            && !oauthimap_types::net::allows(allowed, ip)
        {
            return Err(SinkError::Permanent(format!(
                "the webhook {} points inside the network ({ip}); outbound.allowed_networks can allow it",
                url.as_str()
            )));
        }
        Ok(Self {
            http,
            url,
            secret,
            timeout,
        })
    }

    pub async fn deliver(&self, d: &Delivery) -> Result<Receipt, SinkError> {
        let body = serde_json::to_vec(&Body {
            idempotency_key: &d.idempotency_key,
            receiver: &d.receiver_name,
            message: &d.normalized,
            raw_base64: base64::engine::general_purpose::STANDARD.encode(&d.raw),
        })
        .map_err(|e| SinkError::Permanent(format!("cannot encode the message: {e}")))?;
        let timestamp = oauthimap_types::now_millis() / 1000;
        let mut request = self
            .http
            .post(self.url.clone())
            .timeout(self.timeout)
            .header("content-type", "application/json")
            .header("idempotency-key", &d.idempotency_key)
            .header("x-oauthimap-timestamp", timestamp.to_string());
        if let Some(secret) = &self.secret {
            request = request.header(
                "x-oauthimap-signature",
                format!(
                    "sha256={}",
                    signature(secret.expose_secret(), timestamp, &body)
                ),
            );
        }
        let host = self.url.host_str().unwrap_or("?").to_owned();
        let response = request.body(body).send().await.map_err(|e| {
            SinkError::transient(format!(
                "cannot reach the webhook at {host}: {}",
                e.without_url()
            ))
        })?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(Receipt(format!("webhook:{status}"))),
            408 | 425 | 429 | 500..=599 => {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, std::time::SystemTime::now()));
                let hint = retry_after
                    .map(|d| format!(" (Retry-After: {} s)", d.as_secs()))
                    .unwrap_or_default();
                Err(SinkError::Transient {
                    message: format!("the webhook at {host} answered HTTP {status}{hint}"),
                    retry_after,
                })
            }
            _ => Err(SinkError::Permanent(format!(
                "the webhook at {host} refused the message with HTTP {status}"
            ))),
        }
    }
}

/// Most patience a `Retry-After` can ask for; a longer one is read as this (the outage clock and
/// its alerts keep running meanwhile).
const RETRY_AFTER_CAP: Duration = Duration::from_hours(1);

/// Reads a `Retry-After` value (RFC 9110 10.2.3): delay-seconds, or an HTTP date, relative to
/// `now`. Anything else is ignored.
fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    };
    Some(wait.min(RETRY_AFTER_CAP))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::retry_after;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = UNIX_EPOCH + Duration::from_mins(24_090_208); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after("5", now), Some(Duration::from_secs(5)));
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_mins(2)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            retry_after("999999999", now),
            Some(Duration::from_hours(1)),
            "capped"
        );
        for junk in ["", "soon", "-5", "5.5", "Wed, 32 Oct 2015"] {
            assert_eq!(retry_after(junk, SystemTime::now()), None, "{junk:?}");
        }
    }
}
