//! Shared helpers for the HTTP tests: a provider with one Microsoft and one Google client, a
//! reqwest client that never follows redirects, and small decoders.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauthimap_fake_idp::{ClientConfig, FakeIdp, UserConfig};
use serde_json::Value;

pub const MS_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const MS_SECRET: &str = "ms~secret";
pub const G_ID: &str = "1234-abc.apps.googleusercontent.com";
pub const G_SECRET: &str = "GOCSPX-secret";
pub const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";
pub const USER: &str = "alice@contoso.com";
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const IMAP_SCOPE: &str =
    "offline_access openid email profile https://outlook.office.com/IMAP.AccessAsUser.All";
pub const GMAIL_SCOPE: &str = "openid email https://mail.google.com/";
/// A PKCE pair; the challenge was computed independently (Python hashlib).
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW-gFWFOEjXk";
pub const CHALLENGE: &str = "90EpwHQr_xi9uDtjYyz5mq9Z4RekugHRqg5ijpXC3FQ";

/// A provider with the two clients and a default user.
pub async fn idp() -> FakeIdp {
    let idp = FakeIdp::start().await.expect("start fake idp");
    idp.add_client(ClientConfig::microsoft(MS_ID, MS_SECRET, REDIRECT));
    idp.add_client(ClientConfig::google(G_ID, G_SECRET, REDIRECT));
    idp.add_user(UserConfig::new(USER, "Alice Example"));
    idp.set_default_user(USER);
    idp
}

/// A client that reports redirects instead of following them.
pub fn http() -> reqwest::Client {
    // reqwest may be built with `rustls-no-provider` through feature unification.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// The query parameters of a redirect `Location`.
pub fn location_query(resp: &reqwest::Response) -> HashMap<String, String> {
    let loc = resp
        .headers()
        .get("location")
        .expect("Location header")
        .to_str()
        .expect("ascii Location");
    assert!(loc.starts_with(REDIRECT), "redirects to the client: {loc}");
    let url = url::Url::parse(loc).expect("Location is a URL");
    url.query_pairs().into_owned().collect()
}

/// The claims of a compact JWS.
pub fn claims(jwt: &str) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS has three parts");
    let payload = URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url payload");
    serde_json::from_slice(&payload).expect("JSON claims")
}

/// Runs the Microsoft authorize step and returns the code.
pub async fn ms_code(idp: &FakeIdp, scope: &str) -> String {
    let resp = http()
        .get(idp.microsoft_authorize_url("common"))
        .query(&[
            ("client_id", MS_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", scope),
            ("state", "st-1"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), 302);
    location_query(&resp)["code"].clone()
}

/// Exchanges a Microsoft code (`client_secret_post`) and returns status and body.
pub async fn ms_exchange(idp: &FakeIdp, code: &str) -> (u16, Value) {
    post_form(
        &idp.microsoft_token_url("common"),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", MS_ID),
            ("client_secret", MS_SECRET),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

/// Microsoft tokens for the default user with the IMAP scope.
pub async fn ms_tokens(idp: &FakeIdp) -> Value {
    let code = ms_code(idp, IMAP_SCOPE).await;
    let (status, body) = ms_exchange(idp, &code).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// POSTs a form and returns status and JSON body.
pub async fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = http().post(url).form(form).send().await.expect("POST");
    let status = resp.status().as_u16();
    let body = resp.json().await.expect("JSON body");
    (status, body)
}

/// Checks Microsoft's error shape and returns the AADSTS number.
pub fn assert_ms_error(body: &Value, error: &str) -> u64 {
    assert_eq!(body["error"], error, "{body}");
    let desc = body["error_description"].as_str().expect("description");
    assert!(desc.starts_with("AADSTS"), "{desc}");
    assert!(desc.contains("\r\nTrace ID: "), "{desc}");
    assert!(desc.contains("\r\nCorrelation ID: "), "{desc}");
    assert!(desc.contains("\r\nTimestamp: "), "{desc}");
    let code = body["error_codes"][0].as_u64().expect("error_codes");
    assert!(desc.starts_with(&format!("AADSTS{code}: ")), "{desc}");
    assert_eq!(body["trace_id"].as_str().map(str::len), Some(36));
    assert_eq!(body["correlation_id"].as_str().map(str::len), Some(36));
    let ts = body["timestamp"].as_str().expect("timestamp");
    assert_eq!(ts.len(), 20, "YYYY-MM-DD HH:MM:SSZ: {ts}");
    assert!(ts.ends_with('Z'));
    assert_eq!(
        body["error_uri"],
        format!("https://login.microsoftonline.com/error?code={code}")
    );
    code
}

/// Checks Google's error shape (exactly `error` and `error_description`).
pub fn assert_google_error(body: &Value, error: &str, description: &str) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_description"], description, "{body}");
    assert_eq!(
        body.as_object().map(serde_json::Map::len),
        Some(2),
        "{body}"
    );
}
