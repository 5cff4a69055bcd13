//! Device authorization grant (RFC 8628) for both providers.

use std::time::Duration;

use oauthimap_fake_idp::FakeIdp;
use serde_json::Value;

use crate::common::*;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn ms_start(idp: &FakeIdp) -> Value {
    let (status, d) = post_form(
        &idp.microsoft_devicecode_url("organizations"),
        &[("client_id", MS_ID), ("scope", IMAP_SCOPE)],
    )
    .await;
    assert_eq!(status, 200, "{d}");
    d
}

async fn ms_poll(idp: &FakeIdp, device_code: &str) -> (u16, Value) {
    post_form(
        &idp.microsoft_token_url("organizations"),
        &[
            ("grant_type", DEVICE_GRANT),
            ("client_id", MS_ID),
            ("device_code", device_code),
        ],
    )
    .await
}

#[tokio::test]
async fn microsoft_device_flow_pending_slow_down_then_tokens() {
    let idp = idp().await;
    idp.set_device_poll_interval(1);
    let d = ms_start(&idp).await;
    let code = d["device_code"].as_str().expect("device_code").to_owned();
    let user_code = d["user_code"].as_str().expect("user_code").to_owned();
    assert_eq!(d["interval"], 1);
    assert_eq!(d["expires_in"], 900);
    let uri = d["verification_uri"].as_str().expect("verification_uri");
    assert_eq!(uri, format!("{}/common/oauth2/deviceauth", idp.base_url()));
    assert!(
        d["message"]
            .as_str()
            .is_some_and(|m| m.contains(&user_code) && m.contains(uri))
    );

    let (status, e) = ms_poll(&idp, &code).await;
    assert_eq!(status, 400);
    assert_eq!(assert_ms_error(&e, "authorization_pending"), 70016);
    let (status, e) = ms_poll(&idp, &code).await;
    assert_eq!(status, 400);
    assert_ms_error(&e, "slow_down");

    let pending = idp.pending_device_codes();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].user_code, user_code);
    idp.approve_device(Some(&user_code), None).expect("approve");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, t) = ms_poll(&idp, &code).await;
    assert_eq!(status, 200, "{t}");
    assert!(t["refresh_token"].is_string());
    assert_eq!(
        claims(t["id_token"].as_str().expect("id"))
            .get("email")
            .and_then(Value::as_str),
        Some(USER)
    );
    let (status, e) = ms_poll(&idp, &code).await;
    assert_eq!(status, 400);
    assert_ms_error(&e, "bad_verification_code");
    let c = idp.stats().grant(DEVICE_GRANT);
    assert_eq!((c.successes, c.errors), (1, 3));
    assert_eq!(idp.stats().device_code.successes, 1);
}

#[tokio::test]
async fn declined_and_expired_device_codes() {
    let idp = idp().await;
    idp.set_device_poll_interval(0);
    let d = ms_start(&idp).await;
    idp.deny_device(None).expect("deny latest");
    let (_, e) = ms_poll(&idp, d["device_code"].as_str().expect("dc")).await;
    assert_ms_error(&e, "authorization_declined");

    idp.set_device_code_lifetime(Some(1));
    let d = ms_start(&idp).await;
    assert_eq!(d["expires_in"], 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, e) = ms_poll(&idp, d["device_code"].as_str().expect("dc")).await;
    assert_ms_error(&e, "expired_token");
    assert!(
        idp.approve_device(None, None).is_err(),
        "expired codes cannot be approved"
    );
}

#[tokio::test]
async fn google_device_flow_refuses_gmail_and_approves_through_the_page() {
    let idp = idp().await;
    let (status, e) = post_form(
        &format!("{}/device/code", idp.base_url()),
        &[
            ("client_id", G_ID),
            ("scope", "email https://mail.google.com/"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_google_error(
        &e,
        "invalid_scope",
        "Invalid device flow scope: https://mail.google.com/",
    );

    let (status, d) = post_form(
        &format!("{}/device/code", idp.base_url()),
        &[("client_id", G_ID), ("scope", "openid email")],
    )
    .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["verification_url"], format!("{}/device", idp.base_url()));
    let user_code = d["user_code"].as_str().expect("user_code");
    assert_eq!(user_code.len(), 9);
    let code = d["device_code"].as_str().expect("device_code");
    let token_url = idp.google_token_url();
    let form = [
        ("grant_type", DEVICE_GRANT),
        ("client_id", G_ID),
        ("client_secret", G_SECRET),
        ("device_code", code),
    ];
    let poll = || post_form(&token_url, &form);
    let (status, e) = poll().await;
    assert_eq!(status, 428);
    assert_google_error(&e, "authorization_pending", "Precondition Required");
    let (status, e) = poll().await;
    assert_eq!(status, 403);
    assert_eq!(e["error"], "slow_down");

    let resp = http()
        .post(format!("{}/device", idp.base_url()))
        .form(&[
            ("user_code", user_code.to_lowercase().replace('-', "")),
            ("action", "approve".into()),
        ])
        .send()
        .await
        .expect("verification page");
    assert_eq!(resp.status(), 200);
    idp.set_device_poll_interval(0);
    let (status, t) = poll().await;
    assert_eq!(status, 200, "{t}");
    assert!(
        t["refresh_token"]
            .as_str()
            .is_some_and(|r| r.starts_with("1//"))
    );
}
