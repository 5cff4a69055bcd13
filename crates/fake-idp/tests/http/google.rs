//! Google OAuth 2.0 flows over real HTTP.

use std::collections::HashMap;

use oauthimap_fake_idp::FakeIdp;
use serde_json::Value;

use crate::common::*;

async fn g_authorize(idp: &FakeIdp, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut q = vec![
        ("client_id", G_ID),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", GMAIL_SCOPE),
        ("state", "g-state"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    q.extend_from_slice(extra);
    let resp = http()
        .get(idp.google_authorize_url())
        .query(&q)
        .send()
        .await
        .expect("auth");
    assert_eq!(resp.status(), 302);
    location_query(&resp)
}

async fn g_exchange(idp: &FakeIdp, code: &str, verifier: &str) -> (u16, Value) {
    post_form(
        &idp.google_token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", G_ID),
            ("client_secret", G_SECRET),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn g_refresh(idp: &FakeIdp, rt: &str) -> (u16, Value) {
    post_form(
        &idp.google_token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", G_ID),
            ("client_secret", G_SECRET),
            ("refresh_token", rt),
        ],
    )
    .await
}

#[tokio::test]
async fn offline_consent_gives_google_tokens() {
    let idp = idp().await;
    let q = g_authorize(&idp, &[("access_type", "offline")]).await;
    assert_eq!(q["state"], "g-state");
    assert!(q["code"].starts_with("4/0A"));
    assert!(q["scope"].contains("https://www.googleapis.com/auth/userinfo.email"));
    let (status, t) = g_exchange(&idp, &q["code"], VERIFIER).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 3599);
    assert!(t["ext_expires_in"].is_null());
    assert!(
        t["access_token"]
            .as_str()
            .is_some_and(|a| a.starts_with("ya29."))
    );
    assert!(
        t["refresh_token"]
            .as_str()
            .is_some_and(|r| r.starts_with("1//"))
    );
    let scope = t["scope"].as_str().expect("scope");
    assert!(scope.contains("https://mail.google.com/"));
    assert!(scope.contains("openid"));
    let id = claims(t["id_token"].as_str().expect("id token"));
    assert_eq!(id["iss"], "https://accounts.google.com");
    assert_eq!(id["aud"], G_ID);
    assert_eq!(id["email"], USER);
    assert_eq!(id["email_verified"], true);
    assert!(
        id["sub"]
            .as_str()
            .is_some_and(|s| s.chars().all(|c| c.is_ascii_digit()))
    );
}

#[tokio::test]
async fn refresh_token_only_on_first_offline_consent_or_prompt_consent() {
    let idp = idp().await;
    let q = g_authorize(&idp, &[]).await;
    let (_, t) = g_exchange(&idp, &q["code"], VERIFIER).await;
    assert!(
        t["refresh_token"].is_null(),
        "online access: no refresh token"
    );

    let q = g_authorize(&idp, &[("access_type", "offline")]).await;
    assert_eq!(q["prompt"], "consent");
    let (_, t) = g_exchange(&idp, &q["code"], VERIFIER).await;
    assert!(t["refresh_token"].is_string());

    let q = g_authorize(&idp, &[("access_type", "offline")]).await;
    assert_eq!(q["prompt"], "none");
    let (_, t) = g_exchange(&idp, &q["code"], VERIFIER).await;
    assert!(
        t["refresh_token"].is_null(),
        "second consent: no refresh token"
    );

    let q = g_authorize(&idp, &[("access_type", "offline"), ("prompt", "consent")]).await;
    let (_, t) = g_exchange(&idp, &q["code"], VERIFIER).await;
    assert!(
        t["refresh_token"].is_string(),
        "prompt=consent: refresh token"
    );
}

#[tokio::test]
async fn refresh_keeps_the_refresh_token() {
    let idp = idp().await;
    let q = g_authorize(&idp, &[("access_type", "offline")]).await;
    let (_, t) = g_exchange(&idp, &q["code"], VERIFIER).await;
    let rt = t["refresh_token"].as_str().expect("rt").to_owned();
    for _ in 0..2 {
        let (status, r) = g_refresh(&idp, &rt).await;
        assert_eq!(status, 200, "{r}");
        assert!(r["refresh_token"].is_null());
        assert!(
            r["access_token"]
                .as_str()
                .is_some_and(|a| a.starts_with("ya29."))
        );
        assert!(r["id_token"].is_string());
    }
    let (status, e) = g_refresh(&idp, "1//nonsense").await;
    assert_eq!(status, 400);
    assert_google_error(&e, "invalid_grant", "Bad Request");

    assert!(idp.revoke_refresh_token(&rt));
    let (_, e) = g_refresh(&idp, &rt).await;
    assert_google_error(&e, "invalid_grant", "Token has been expired or revoked.");
}

#[tokio::test]
async fn google_error_pages_and_shapes() {
    let idp = idp().await;
    let resp = http()
        .get(idp.google_authorize_url())
        .query(&[
            ("client_id", "nope"),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", GMAIL_SCOPE),
        ])
        .send()
        .await
        .expect("auth");
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("location").is_none());
    assert!(resp.text().await.expect("html").contains("invalid_client"));

    let resp = http()
        .get(idp.google_authorize_url())
        .query(&[
            ("client_id", G_ID),
            ("response_type", "code"),
            ("redirect_uri", "http://127.0.0.1:9/x"),
            ("scope", GMAIL_SCOPE),
        ])
        .send()
        .await
        .expect("auth");
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .expect("html")
            .contains("redirect_uri_mismatch")
    );

    let q = g_authorize(&idp, &[]).await;
    let (status, e) = g_exchange(&idp, &q["code"], &"y".repeat(43)).await;
    assert_eq!(status, 400);
    assert_google_error(&e, "invalid_grant", "Invalid code verifier.");

    let (status, e) = post_form(
        &idp.google_token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", G_ID),
            ("client_secret", "bad"),
            ("refresh_token", "x"),
        ],
    )
    .await;
    assert_eq!(status, 401);
    assert_google_error(&e, "invalid_client", "Unauthorized");

    let (status, e) = post_form(
        &idp.google_token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", G_ID),
            ("refresh_token", "x"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_google_error(&e, "invalid_request", "client_secret is missing.");
}

#[tokio::test]
async fn userinfo_and_revoke() {
    let idp = idp().await;
    let redirect = g_authorize(&idp, &[("access_type", "offline")]).await;
    let (_, tokens) = g_exchange(&idp, &redirect["code"], VERIFIER).await;
    let at = tokens["access_token"].as_str().expect("at").to_owned();
    let resp = http()
        .get(format!("{}/v1/userinfo", idp.base_url()))
        .bearer_auth(&at)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status(), 200);
    let info: Value = resp.json().await.expect("json");
    assert_eq!(info["email"], USER);
    assert_eq!(info["email_verified"], true);
    assert!(info["sub"].is_string());

    let resp = http()
        .post(format!("{}/revoke", idp.base_url()))
        .form(&[("token", at.as_str())])
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 200);
    let resp = http()
        .get(format!("{}/v1/userinfo", idp.base_url()))
        .bearer_auth(&at)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    let rt = tokens["refresh_token"].as_str().expect("rt");
    let (_, err) = g_refresh(&idp, rt).await;
    assert_google_error(&err, "invalid_grant", "Token has been expired or revoked.");
    let counters = idp.stats();
    assert_eq!(
        (
            counters.userinfo.successes,
            counters.userinfo.errors,
            counters.revoke.successes
        ),
        (1, 1, 1)
    );
}
