//! RFC 7662 introspection as Dovecot's oauth2 passdb uses it.

use oauthimap_fake_idp::ClientConfig;
use serde_json::Value;

use crate::common::*;

async fn introspect(url: &str, token: &str) -> (u16, Value) {
    post_form(url, &[("token", token)]).await
}

#[tokio::test]
async fn live_tokens_are_active_and_dead_ones_are_not() {
    let idp = idp().await;
    let url = idp.introspection_url();
    let t = ms_tokens(&idp).await;
    let at = t["access_token"].as_str().expect("at").to_owned();
    let (status, r) = introspect(&url, &at).await;
    assert_eq!(status, 200);
    assert_eq!(r["active"], true);
    assert_eq!(r["email"], USER);
    assert_eq!(r["client_id"], MS_ID);
    assert!(
        r["scope"]
            .as_str()
            .is_some_and(|s| s.contains("IMAP.AccessAsUser.All"))
    );
    assert!(r["exp"].as_u64().is_some_and(|e| e > 0));

    // GET ?token= and Authorization: Bearer work too (Dovecot's other introspection modes).
    let r: Value = http()
        .get(&url)
        .query(&[("token", at.as_str())])
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(r["active"], true);
    let r: Value = http()
        .post(&url)
        .bearer_auth(&at)
        .send()
        .await
        .expect("auth")
        .json()
        .await
        .expect("json");
    assert_eq!(r["active"], true);

    let (_, r) = introspect(&url, "unknown").await;
    assert_eq!(r, serde_json::json!({"active": false}));

    assert_eq!(idp.expire_access_tokens(), 1);
    let (_, r) = introspect(&url, &at).await;
    assert_eq!(r["active"], false);

    let t2 = ms_tokens(&idp).await;
    let at2 = t2["access_token"].as_str().expect("at2");
    assert_eq!(introspect(&url, at2).await.1["active"], true);
    assert_eq!(
        idp.revoke_user_tokens(USER),
        4,
        "two access + two refresh tokens"
    );
    assert_eq!(introspect(&url, at2).await.1["active"], false);
    let c = idp.stats().introspection;
    assert_eq!((c.requests, c.successes), (7, 4));
}

#[tokio::test]
async fn unavailable_introspection_answers_503() {
    let idp = idp().await;
    let t = ms_tokens(&idp).await;
    idp.set_introspection_available(false);
    let resp = http()
        .post(idp.introspection_url())
        .form(&[("token", t["access_token"].as_str().expect("at"))])
        .send()
        .await
        .expect("introspect");
    assert_eq!(resp.status(), 503);
    assert_eq!(idp.stats().introspection.errors, 1);
    idp.set_introspection_available(true);
    let (status, r) = introspect(
        &idp.introspection_url(),
        t["access_token"].as_str().expect("at"),
    )
    .await;
    assert_eq!((status, r["active"].clone()), (200, Value::Bool(true)));
}

#[tokio::test]
async fn app_only_tokens_report_the_configured_mailbox() {
    let idp = idp().await;
    idp.add_client(ClientConfig {
        app_mailbox: Some("shared@contoso.com".into()),
        ..ClientConfig::microsoft(MS_ID, MS_SECRET, REDIRECT)
    });
    let (_, t) = post_form(
        &idp.microsoft_token_url(TENANT),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", MS_ID),
            ("client_secret", MS_SECRET),
            ("scope", "https://outlook.office365.com/.default"),
        ],
    )
    .await;
    let (_, r) = introspect(
        &idp.introspection_url(),
        t["access_token"].as_str().expect("at"),
    )
    .await;
    assert_eq!(r["active"], true);
    assert_eq!(r["email"], "shared@contoso.com");
    assert_eq!(r["client_id"], MS_ID);
}
