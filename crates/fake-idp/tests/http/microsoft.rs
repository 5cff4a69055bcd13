//! Microsoft identity platform v2.0 flows over real HTTP.

use oauthimap_fake_idp::{AuthorizeErrorFault, UserConfig};

use crate::common::*;

#[tokio::test]
async fn authorize_redirects_with_code_state_and_session_state() {
    let idp = idp().await;
    let resp = http()
        .get(idp.microsoft_authorize_url("organizations"))
        .query(&[
            ("client_id", MS_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", IMAP_SCOPE),
            ("state", "abc 123"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), 302);
    let q = location_query(&resp);
    assert!(q["code"].len() > 40, "code is long and random");
    assert_eq!(q["state"], "abc 123");
    assert_eq!(q["session_state"].len(), 36);
    assert_eq!(idp.stats().authorize.successes, 1);
}

#[tokio::test]
async fn unknown_client_is_an_aadsts700016_page_not_a_redirect() {
    let idp = idp().await;
    let resp = http()
        .get(idp.microsoft_authorize_url("common"))
        .query(&[
            ("client_id", "nope"),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", IMAP_SCOPE),
        ])
        .send()
        .await
        .expect("authorize");
    assert!(resp.headers().get("location").is_none());
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.expect("html");
    assert!(body.contains("AADSTS700016"), "{body}");
    assert_eq!(idp.stats().authorize.errors, 1);
}

#[tokio::test]
async fn redirect_uri_mismatch_is_an_aadsts50011_page() {
    let idp = idp().await;
    let resp = http()
        .get(idp.microsoft_authorize_url("common"))
        .query(&[
            ("client_id", MS_ID),
            ("response_type", "code"),
            ("redirect_uri", "http://127.0.0.1:9/evil"),
            ("scope", IMAP_SCOPE),
        ])
        .send()
        .await
        .expect("authorize");
    assert!(resp.headers().get("location").is_none());
    let body = resp.text().await.expect("html");
    assert!(body.contains("AADSTS50011"), "{body}");
    assert!(body.contains("http://127.0.0.1:9/evil"));
}

#[tokio::test]
async fn plain_pkce_is_refused_with_an_error_redirect() {
    let idp = idp().await;
    let resp = http()
        .get(idp.microsoft_authorize_url("common"))
        .query(&[
            ("client_id", MS_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", IMAP_SCOPE),
            ("state", "s"),
            ("code_challenge", VERIFIER),
            ("code_challenge_method", "plain"),
        ])
        .send()
        .await
        .expect("authorize");
    let q = location_query(&resp);
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].starts_with("AADSTS"));
    assert_eq!(q["state"], "s");
    assert!(!q.contains_key("code"));
}

#[tokio::test]
async fn code_exchange_with_pkce_returns_microsoft_tokens() {
    let idp = idp().await;
    let code = ms_code(&idp, IMAP_SCOPE).await;
    let resp = http()
        .post(idp.microsoft_token_url("common"))
        .basic_auth(MS_ID, Some(MS_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let t: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 3599);
    assert_eq!(t["ext_expires_in"], 3599);
    let scope = t["scope"].as_str().expect("scope");
    assert!(scope.contains("https://outlook.office.com/IMAP.AccessAsUser.All"));
    assert!(!scope.contains("offline_access"));
    assert!(t["refresh_token"].as_str().is_some_and(|r| r.len() > 100));

    let at = claims(t["access_token"].as_str().expect("access token"));
    assert_eq!(at["aud"], "https://outlook.office.com");
    assert_eq!(at["scp"], "IMAP.AccessAsUser.All");
    assert_eq!(at["upn"], USER);
    assert_eq!(at["unique_name"], USER);
    assert_eq!(at["appid"], MS_ID);
    assert!(at["exp"].as_u64().is_some());
    let tid = at["tid"].as_str().expect("tid").to_owned();

    let id = claims(t["id_token"].as_str().expect("id token"));
    assert_eq!(id["aud"], MS_ID);
    assert_eq!(
        id["iss"],
        format!("https://login.microsoftonline.com/{tid}/v2.0")
    );
    assert_eq!(id["tid"], tid);
    assert_eq!(id["ver"], "2.0");
    assert_eq!(id["email"], USER);
    assert_eq!(id["preferred_username"], USER);
    assert_eq!(id["name"], "Alice Example");
    assert_eq!(id["oid"], at["oid"]);
    assert!(id["sub"].as_str().is_some_and(|s| !s.is_empty()));
    for c in ["iat", "nbf", "exp"] {
        assert!(id[c].as_u64().is_some(), "{c}");
    }
    assert_eq!(idp.stats().grant("authorization_code").successes, 1);
}

#[tokio::test]
async fn a_code_works_once() {
    let idp = idp().await;
    let code = ms_code(&idp, IMAP_SCOPE).await;
    assert_eq!(ms_exchange(&idp, &code).await.0, 200);
    let (status, body) = ms_exchange(&idp, &code).await;
    assert_eq!(status, 400);
    assert_eq!(assert_ms_error(&body, "invalid_grant"), 54005);
    let c = idp.stats().grant("authorization_code");
    assert_eq!((c.requests, c.successes, c.errors), (2, 1, 1));
}

#[tokio::test]
async fn pkce_verifier_is_checked() {
    let idp = idp().await;
    let code = ms_code(&idp, IMAP_SCOPE).await;
    let (status, body) = post_form(
        &idp.microsoft_token_url("common"),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", MS_ID),
            ("client_secret", MS_SECRET),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", "x".repeat(50).as_str()),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(assert_ms_error(&body, "invalid_grant"), 501_481);

    let code = ms_code(&idp, IMAP_SCOPE).await;
    let (_, body) = post_form(
        &idp.microsoft_token_url("common"),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", MS_ID),
            ("client_secret", MS_SECRET),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(assert_ms_error(&body, "invalid_grant"), 50148);
}

#[tokio::test]
async fn token_redirect_uri_must_match_the_authorize_one() {
    let idp = idp().await;
    let code = ms_code(&idp, IMAP_SCOPE).await;
    let (status, body) = post_form(
        &idp.microsoft_token_url("common"),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", MS_ID),
            ("client_secret", MS_SECRET),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_ms_error(&body, "invalid_grant");
}

#[tokio::test]
async fn client_authentication_errors_are_401_invalid_client() {
    let idp = idp().await;
    let code = ms_code(&idp, IMAP_SCOPE).await;
    let form = |secret: Option<&'static str>| {
        let mut f = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", MS_ID.to_owned()),
            ("code", code.clone()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", VERIFIER.to_owned()),
        ];
        if let Some(s) = secret {
            f.push(("client_secret", s.to_owned()));
        }
        f
    };
    let resp = http()
        .post(idp.microsoft_token_url("common"))
        .form(&form(Some("wrong")))
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(assert_ms_error(&body, "invalid_client"), 7_000_215);

    let resp = http()
        .post(idp.microsoft_token_url("common"))
        .form(&form(None))
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(assert_ms_error(&body, "invalid_client"), 7_000_218);

    // The code survived the failed client authentications.
    assert_eq!(ms_exchange(&idp, &code).await.0, 200);
}

#[tokio::test]
async fn refresh_rotates_and_the_old_token_dies() {
    let idp = idp().await;
    let t = ms_tokens(&idp).await;
    let rt1 = t["refresh_token"].as_str().expect("rt").to_owned();
    let refresh = |rt: String| {
        let url = idp.microsoft_token_url("common");
        async move {
            post_form(
                &url,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", MS_ID),
                    ("client_secret", MS_SECRET),
                    ("refresh_token", &rt),
                    ("scope", IMAP_SCOPE),
                ],
            )
            .await
        }
    };
    let (status, t2) = refresh(rt1.clone()).await;
    assert_eq!(status, 200, "{t2}");
    let rt2 = t2["refresh_token"].as_str().expect("new rt").to_owned();
    assert_ne!(rt1, rt2);
    assert_ne!(t["access_token"], t2["access_token"]);
    assert!(t2["id_token"].is_string());
    let (status, err) = refresh(rt1.clone()).await;
    assert_eq!(status, 400);
    assert_ms_error(&err, "invalid_grant");
    assert_eq!(refresh(rt2.clone()).await.0, 200);

    idp.set_revoke_used_refresh_tokens(false);
    let (_, t3) = refresh(rt2.clone()).await;
    let rt3 = t3["refresh_token"].as_str().expect("rt3").to_owned();
    assert_eq!(refresh(rt3.clone()).await.0, 200);
    assert_eq!(refresh(rt3).await.0, 200, "reuse allowed when configured");
    let c = idp.stats().grant("refresh_token");
    assert_eq!((c.successes, c.errors), (5, 1));
}

#[tokio::test]
async fn scopes_decide_refresh_token_id_token_and_email_claim() {
    let idp = idp().await;
    let code = ms_code(&idp, "https://outlook.office.com/IMAP.AccessAsUser.All").await;
    let (_, t) = ms_exchange(&idp, &code).await;
    assert!(t["refresh_token"].is_null());
    assert!(t["id_token"].is_null());

    let code = ms_code(
        &idp,
        "openid profile https://outlook.office.com/IMAP.AccessAsUser.All",
    )
    .await;
    let (_, t) = ms_exchange(&idp, &code).await;
    let id = claims(t["id_token"].as_str().expect("id token"));
    assert!(id["email"].is_null(), "no email scope, no email claim");
    assert_eq!(id["preferred_username"], USER);
}

#[tokio::test]
async fn users_can_lack_email_and_preferred_username() {
    let idp = idp().await;
    idp.add_user(UserConfig {
        omit_email_claim: true,
        omit_preferred_username: true,
        ..UserConfig::new(USER, "Alice Example")
    });
    let t = ms_tokens(&idp).await;
    let id = claims(t["id_token"].as_str().expect("id token"));
    assert!(id["email"].is_null());
    assert!(id["preferred_username"].is_null());
    assert_eq!(id["name"], "Alice Example");
    assert_eq!(claims(t["access_token"].as_str().expect("at"))["upn"], USER);
}

#[tokio::test]
async fn client_credentials_gives_an_app_only_token() {
    let idp = idp().await;
    let (status, t) = post_form(
        &idp.microsoft_token_url(TENANT),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", MS_ID),
            ("client_secret", MS_SECRET),
            ("scope", "https://outlook.office365.com/.default"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert!(t["expires_in"].is_u64());
    assert!(t["refresh_token"].is_null());
    assert!(t["id_token"].is_null());
    let at = claims(t["access_token"].as_str().expect("at"));
    assert_eq!(at["roles"], serde_json::json!(["IMAP.AccessAsApp"]));
    assert_eq!(at["aud"], "https://outlook.office365.com");
    assert_eq!(at["tid"], TENANT);
    assert!(at["scp"].is_null());
    assert!(at["upn"].is_null());

    let (status, e) = post_form(
        &idp.microsoft_token_url("common"),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", MS_ID),
            ("client_secret", MS_SECRET),
            ("scope", "https://outlook.office365.com/.default"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(assert_ms_error(&e, "invalid_request"), 50059);

    let (_, e) = post_form(
        &idp.microsoft_token_url(TENANT),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", MS_ID),
            ("client_secret", MS_SECRET),
            ("scope", "https://outlook.office365.com/IMAP.AccessAsApp"),
        ],
    )
    .await;
    assert_eq!(assert_ms_error(&e, "invalid_scope"), 1_002_012);
}

#[tokio::test]
async fn next_authorize_error_redirects_in_microsoft_format_once() {
    let idp = idp().await;
    idp.fail_next_authorize(AuthorizeErrorFault {
        error: "consent_required".into(),
        description: Some(
            "AADSTS65001: The user or administrator has not consented to use the application."
                .into(),
        ),
    });
    let resp = http()
        .get(idp.microsoft_authorize_url("common"))
        .query(&[
            ("client_id", MS_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", IMAP_SCOPE),
            ("state", "xyz"),
        ])
        .send()
        .await
        .expect("authorize");
    let q = location_query(&resp);
    assert_eq!(q["error"], "consent_required");
    assert!(q["error_description"].starts_with("AADSTS65001: "));
    assert!(q["error_description"].contains("Trace ID"));
    assert_eq!(q["state"], "xyz");
    assert!(!ms_code(&idp, IMAP_SCOPE).await.is_empty(), "only once");
}

#[tokio::test]
async fn form_post_response_mode_renders_an_autosubmit_form() {
    let idp = idp().await;
    let resp = http()
        .get(idp.microsoft_authorize_url("common"))
        .query(&[
            ("client_id", MS_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", IMAP_SCOPE),
            ("response_mode", "form_post"),
            ("state", "fp"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.expect("html");
    assert!(html.contains(&format!("action=\"{REDIRECT}\"")));
    assert!(html.contains("name=\"code\""));
    assert!(html.contains("value=\"fp\""));
}

#[tokio::test]
async fn admin_consent_redirects_with_tenant() {
    let idp = idp().await;
    let resp = http()
        .get(format!("{}/{TENANT}/v2.0/adminconsent", idp.base_url()))
        .query(&[
            ("client_id", MS_ID),
            ("redirect_uri", REDIRECT),
            ("state", "ac"),
            ("scope", "https://outlook.office365.com/.default"),
        ])
        .send()
        .await
        .expect("adminconsent");
    let q = location_query(&resp);
    assert_eq!(q["admin_consent"], "True");
    assert_eq!(q["tenant"], TENANT);
    assert_eq!(q["state"], "ac");
    assert_eq!(idp.stats().admin_consent.successes, 1);
}

#[tokio::test]
async fn malformed_token_requests_get_microsoft_errors() {
    let idp = idp().await;
    let resp = http()
        .post(idp.microsoft_token_url("common"))
        .header("content-type", "application/json")
        .body("{\"grant_type\":\"refresh_token\"")
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(assert_ms_error(&body, "invalid_request"), 900_144);

    let (_, body) = post_form(
        &idp.microsoft_token_url("common"),
        &[
            ("grant_type", "password"),
            ("client_id", MS_ID),
            ("client_secret", MS_SECRET),
        ],
    )
    .await;
    assert_eq!(assert_ms_error(&body, "unsupported_grant_type"), 70003);

    let (_, body) = post_form(
        &idp.microsoft_token_url("common"),
        &[("grant_type", "refresh_token"), ("client_id", "unknown")],
    )
    .await;
    assert_eq!(assert_ms_error(&body, "unauthorized_client"), 700_016);
    assert_eq!(idp.stats().grant("other").errors, 2);
}

#[tokio::test]
async fn mixing_resources_is_invalid_scope() {
    let idp = idp().await;
    let code = ms_code(
        &idp,
        "openid https://outlook.office.com/IMAP.AccessAsUser.All https://graph.microsoft.com/Mail.Read",
    )
    .await;
    let (status, body) = ms_exchange(&idp, &code).await;
    assert_eq!(status, 400);
    assert_eq!(assert_ms_error(&body, "invalid_scope"), 28000);
}
