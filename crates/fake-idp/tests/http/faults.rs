//! Fault injection through the Rust API.

use std::time::{Duration, Instant};

use oauthimap_fake_idp::{TokenErrorFault, TokenHttpFault};
use serde_json::Value;

use crate::common::*;

fn refresh_form(rt: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "refresh_token"),
        ("client_id", MS_ID),
        ("client_secret", MS_SECRET),
        ("refresh_token", rt),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

#[tokio::test]
async fn token_endpoint_answers_503_n_times_with_retry_after() {
    let idp = idp().await;
    let t = ms_tokens(&idp).await;
    let rt = t["refresh_token"].as_str().expect("rt").to_owned();
    idp.fail_token_requests(TokenHttpFault {
        status: 503,
        count: 2,
        retry_after: Some(7),
    });
    for _ in 0..2 {
        let resp = http()
            .post(idp.microsoft_token_url("common"))
            .form(&refresh_form(&rt))
            .send()
            .await
            .expect("token");
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "7");
        let body: Value = resp.json().await.expect("json");
        assert_ms_error(&body, "temporarily_unavailable");
    }
    let resp = http()
        .post(idp.microsoft_token_url("common"))
        .form(&refresh_form(&rt))
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200, "the refresh token survived the outage");
    let c = idp.stats().grant("refresh_token");
    assert_eq!((c.requests, c.successes, c.errors), (3, 1, 2));
}

#[tokio::test]
async fn token_endpoint_answers_429_and_500() {
    let idp = idp().await;
    idp.fail_token_requests(TokenHttpFault {
        status: 429,
        count: 1,
        retry_after: Some(3),
    });
    let resp = http()
        .post(idp.google_token_url())
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    idp.fail_token_requests(TokenHttpFault {
        status: 500,
        count: 1,
        retry_after: None,
    });
    let resp = http()
        .post(idp.google_token_url())
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 500);
    assert!(resp.headers().get("retry-after").is_none());
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "server_error");
}

#[tokio::test]
async fn queued_oauth_error_applies_to_its_grant_type_only() {
    let idp = idp().await;
    let t = ms_tokens(&idp).await;
    let rt = t["refresh_token"].as_str().expect("rt").to_owned();
    idp.fail_next_token_request(TokenErrorFault {
        error: "invalid_grant".into(),
        description: Some("The refresh token has expired due to inactivity.".into()),
        code: Some(700_082),
        status: None,
        grant_type: Some("refresh_token".into()),
        count: 1,
    });
    assert_eq!(
        ms_tokens(&idp).await["token_type"],
        "Bearer",
        "code grant unaffected"
    );
    let (status, e) = post_form(
        &idp.microsoft_token_url("common"),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", MS_ID),
            ("client_secret", MS_SECRET),
            ("refresh_token", &rt),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(assert_ms_error(&e, "invalid_grant"), 700_082);
    assert!(
        e["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with("AADSTS700082: The refresh token has expired"))
    );
}

#[tokio::test]
async fn slow_token_answers_trip_client_timeouts() {
    let idp = idp().await;
    idp.set_token_delay(Duration::from_millis(600));
    let started = Instant::now();
    let result = http()
        .post(idp.google_token_url())
        .timeout(Duration::from_millis(200))
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await;
    assert!(result.is_err_and(|e| e.is_timeout()));
    let (status, _) = post_form(&idp.google_token_url(), &[("grant_type", "refresh_token")]).await;
    assert_eq!(status, 400);
    assert!(started.elapsed() >= Duration::from_millis(600));
}

#[tokio::test]
async fn short_lifetimes_and_idle_refresh_tokens() {
    let idp = idp().await;
    idp.set_access_token_lifetime(Duration::from_secs(1));
    let t = ms_tokens(&idp).await;
    assert_eq!(t["expires_in"], 1);
    assert_eq!(t["ext_expires_in"], 1);
    let at = t["access_token"].as_str().expect("at");
    assert_eq!(
        claims(at)["exp"].as_u64(),
        claims(at)["iat"].as_u64().map(|i| i + 1)
    );
    idp.update_settings(oauthimap_fake_idp::SettingsPatch {
        refresh_token_max_idle_secs: Some(Some(0)),
        ..Default::default()
    });
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, r) = post_form(&idp.introspection_url(), &[("token", at)]).await;
    assert_eq!(r["active"], false, "expired by lifetime");
    let rt = t["refresh_token"].as_str().expect("rt");
    let (_, e) = post_form(
        &idp.microsoft_token_url("common"),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", MS_ID),
            ("client_secret", MS_SECRET),
            ("refresh_token", rt),
        ],
    )
    .await;
    assert_eq!(assert_ms_error(&e, "invalid_grant"), 700_082);
}

#[tokio::test]
async fn revoked_refresh_token_is_aadsts50173() {
    let idp = idp().await;
    let t = ms_tokens(&idp).await;
    let rt = t["refresh_token"].as_str().expect("rt");
    assert!(idp.revoke_refresh_token(rt));
    assert!(!idp.revoke_refresh_token("unknown"));
    let (_, e) = post_form(
        &idp.microsoft_token_url("common"),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", MS_ID),
            ("client_secret", MS_SECRET),
            ("refresh_token", rt),
        ],
    )
    .await;
    assert_eq!(assert_ms_error(&e, "invalid_grant"), 50173);
}
