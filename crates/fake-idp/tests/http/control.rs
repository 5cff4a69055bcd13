//! The `/_control` JSON API, as a test in another process would use it.

use serde_json::{Value, json};

use crate::common::*;

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("control call");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn configure_drive_and_observe_over_http() {
    let idp = oauthimap_fake_idp::FakeIdp::start().await.expect("start");
    let base = idp.base_url().to_owned();
    let post =
        |path: &str, body: Value| call(reqwest::Method::POST, format!("{base}{path}"), Some(body));

    let (s, _) = post(
        "/_control/clients",
        json!({
            "client_id": MS_ID, "client_secret": MS_SECRET,
            "redirect_uris": [REDIRECT], "flavour": "microsoft"
        }),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = post(
        "/_control/users",
        json!({"email": USER, "display_name": "Alice"}),
    )
    .await;
    assert_eq!(s, 201);
    let (s, settings) = call(
        reqwest::Method::PUT,
        format!("{base}/_control/settings"),
        Some(json!({"default_user": USER, "access_token_lifetime_secs": 120, "device_poll_interval_secs": 0})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(settings["access_token_lifetime_secs"], 120);
    assert_eq!(settings["default_user"], USER);

    let t = ms_tokens(&idp).await;
    assert_eq!(t["expires_in"], 120);

    let (s, _) = post(
        "/_control/faults/token-http",
        json!({"status": 503, "count": 1, "retry_after": 2}),
    )
    .await;
    assert_eq!(s, 200);
    let rt = t["refresh_token"].as_str().expect("rt");
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", MS_ID),
        ("client_secret", MS_SECRET),
        ("refresh_token", rt),
    ];
    assert_eq!(
        post_form(&idp.microsoft_token_url("common"), &form).await.0,
        503
    );
    let (s, r) = post("/_control/tokens/revoke", json!({"refresh_token": rt})).await;
    assert_eq!((s, r["revoked"].clone()), (200, json!(1)));
    assert_eq!(
        post_form(&idp.microsoft_token_url("common"), &form).await.0,
        400
    );

    let (s, r) = post("/_control/tokens/expire-access", json!({})).await;
    assert_eq!((s, r["expired"].clone()), (200, json!(1)));

    // Device approval from outside.
    let (_, d) = post_form(
        &idp.microsoft_devicecode_url("common"),
        &[("client_id", MS_ID), ("scope", IMAP_SCOPE)],
    )
    .await;
    let (_, pending) = call(
        reqwest::Method::GET,
        format!("{base}/_control/device"),
        None,
    )
    .await;
    assert_eq!(pending[0]["user_code"], d["user_code"]);
    let (s, _) = post(
        "/_control/device/approve",
        json!({"user_code": d["user_code"]}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = post("/_control/device/approve", json!({})).await;
    assert_eq!(s, 404, "nothing left to approve");
    let (status, _) = post_form(
        &idp.microsoft_token_url("common"),
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", MS_ID),
            ("device_code", d["device_code"].as_str().expect("dc")),
        ],
    )
    .await;
    assert_eq!(status, 200);

    let (s, counters) = call(reqwest::Method::GET, format!("{base}/_control/stats"), None).await;
    assert_eq!(s, 200);
    assert_eq!(counters["authorize"]["successes"], 1);
    assert_eq!(counters["token"]["authorization_code"]["successes"], 1);
    assert_eq!(counters["token"]["refresh_token"]["errors"], 2);
    assert_eq!(
        counters["token"]["urn:ietf:params:oauth:grant-type:device_code"]["successes"],
        1
    );
    assert_eq!(counters["device_code"]["requests"], 1);

    let (s, _) = post("/_control/stats/reset", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(idp.stats(), oauthimap_fake_idp::Stats::default());
}

#[tokio::test]
async fn malformed_control_requests_are_400() {
    let idp = idp().await;
    let resp = http()
        .post(format!("{}/_control/clients", idp.base_url()))
        .body("{not json")
        .send()
        .await
        .expect("control");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert!(body["error"].is_string());
    let (s, _) = call(
        reqwest::Method::POST,
        format!("{}/_control/faults/token-http", idp.base_url()),
        Some(json!({"status": 404})),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = call(
        reqwest::Method::POST,
        format!("{}/_control/tokens/revoke", idp.base_url()),
        Some(json!({"user": USER, "refresh_token": "x"})),
    )
    .await;
    assert_eq!(s, 400);
}
