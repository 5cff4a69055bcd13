//! Fuzzes the REST API's JSON request bodies (`/api/v1`): the first byte picks the body
//! (application, receiver, gateway password, diagnose), the rest is read as the handlers read it
//! (axum's `Json`), never a panic. Then, without a database:
//! - axum and serde_json accept exactly the same bodies;
//! - an application body becomes the core's input and neither prints its client secret; its
//!   endpoint URLs go through the core's endpoint check;
//! - a webhook receiver's target goes through the core's HTTPS check and the outbound policy,
//!   which read the same URL, and a target let through is not an internal address; a size limit
//!   reads back from its CLI spelling;
//! - a gateway password's expiry prints as a time.
#![no_main]

use axum::Json;
use libfuzzer_sys::fuzz_target;
use oauthimap_app::{ApplicationInput, ReceiverInput};
use oauthimap_oauth::{check_endpoint_url, check_https_url};
use oauthimap_types::net::{check_outbound_url, host_address, is_internal};
use oauthimap_types::units::{format_size, parse_size};
use oauthimap_types::{SinkKind, rfc3339_seconds};
use oauthimap_web::bodies::{ApplicationBody, DiagnoseBody, GatewayPasswordBody, ReceiverBody};
use secrecy::ExposeSecret;

/// Reads `data` as a handler does; serde_json alone must agree.
fn read<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
    let parsed = Json::<T>::from_bytes(data);
    assert_eq!(parsed.is_ok(), serde_json::from_slice::<T>(data).is_ok());
    match parsed {
        Ok(Json(body)) => Some(body),
        Err(rejection) => {
            let _ = (rejection.status(), rejection.body_text());
            None
        }
    }
}

/// How often `secret` shows in `debug` beyond its showings in the other fields.
fn shown(secret: &str, debug: &str, others: &[&Option<String>]) -> usize {
    let elsewhere: usize = others
        .iter()
        .map(|f| format!("{f:?}").matches(secret).count())
        .sum();
    debug.matches(secret).count().saturating_sub(elsewhere)
}

fn application(data: &[u8]) {
    let Some(body) = read::<ApplicationBody>(data) else {
        return;
    };
    let body_debug = format!("{body:?}");
    let input = ApplicationInput::from(body);
    let input_debug = format!("{input:?}");
    let others = [
        &input.name,
        &input.client_id,
        &input.tenant,
        &input.endpoint_base,
        &input.authorize_url,
        &input.token_url,
        &input.device_url,
        &input.userinfo_url,
        &input.scopes,
        &input.comment,
    ];
    if let Some(secret) = &input.client_secret {
        let s = secret.expose_secret();
        // Letters and digits only: printed as is, and never a word of the Debug layout.
        if s.len() >= 12
            && s.bytes().all(|b| b.is_ascii_alphanumeric())
            && s.bytes().any(|b| b.is_ascii_digit())
        {
            assert_eq!(
                shown(s, &body_debug, &others),
                0,
                "the body prints its secret"
            );
            assert_eq!(
                shown(s, &input_debug, &others),
                0,
                "the input prints its secret"
            );
        }
    }
    for (field, value) in [
        ("endpoint_base", &input.endpoint_base),
        ("authorize_url", &input.authorize_url),
        ("token_url", &input.token_url),
        ("device_url", &input.device_url),
        ("userinfo_url", &input.userinfo_url),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
            let _ = check_endpoint_url(field, v);
        }
    }
}

fn receiver(data: &[u8]) {
    let Some(body) = read::<ReceiverBody>(data) else {
        return;
    };
    let input = ReceiverInput::from(body);
    if let Some(n) = input.size_limit_bytes {
        assert_eq!(parse_size(&format_size(n)), Ok(n));
    }
    if input.sink == Some(SinkKind::Webhook)
        && let Some(target) = &input.sink_target
    {
        let https = check_https_url("sink_target", target, "https://example.com/hook");
        let policy = check_outbound_url(target, &[]);
        if let Ok(url) = &policy
            && let Some(ip) = host_address(url)
        {
            assert!(!is_internal(ip), "{url} let through");
        }
        if let (Ok(a), Ok(b)) = (&https, &policy) {
            assert_eq!(a, b, "{target:?} read two ways");
        }
    }
}

fn gateway_password(data: &[u8]) {
    if let Some(ms) = read::<GatewayPasswordBody>(data).and_then(|b| b.expires_at) {
        assert_eq!(rfc3339_seconds(ms).is_some(), ms >= 0, "{ms}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((kind, json)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => application(json),
        1 => receiver(json),
        2 => gateway_password(json),
        _ => drop(read::<DiagnoseBody>(json)),
    }
});
