//! No token, secret, code or state appears in any log line of a whole OAuth flow, at any level.
//! A test binary of its own, so the log capture sees only this flow.

use oauthimap_store::Backend;
use secrecy::ExposeSecret;

mod common;
use common::{SECRET, USER, harness};

#[test]
fn no_secret_appears_in_any_log_line() {
    let capture = common::capture_all_logs();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let secrets = runtime.block_on(async {
        let h = harness(Backend::Sqlite, &[]).await;
        let start = h.app.start_sign_in("Contoso", None, None).await.unwrap();
        let back = h.http.get(&start.url).send().await.unwrap().headers()["location"]
            .to_str()
            .unwrap()
            .to_owned();
        let query: std::collections::HashMap<String, String> = url::Url::parse(&back)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(
            h.http.get(&back).send().await.unwrap().status().as_u16(),
            200
        );
        let account = h.app.list_accounts(None).await.unwrap().remove(0);
        let access = h.app.tokens().access_token(account.id, true).await.unwrap();
        let tokens = h.app.store().account_tokens(account.id).await.unwrap();
        h.idp.revoke_user_tokens(USER);
        let _ = h.app.tokens().access_token(account.id, true).await;
        let mut secrets = vec![
            SECRET.to_owned(),
            query["code"].clone(),
            query["state"].clone(),
            access.secret.expose_secret().to_owned(),
        ];
        secrets.extend(tokens.refresh_token.map(|t| t.expose_secret().to_owned()));
        h.t.cleanup().await;
        secrets
    });
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for expected in [
        "sign-in started",
        "access token refreshed",
        "needs a new sign-in",
        "/oauth/callback",
    ] {
        assert!(
            logs.contains(expected),
            "the flow was logged ({expected} missing):\n{logs}"
        );
    }
    assert_eq!(secrets.len(), 5);
    for secret in secrets {
        assert!(secret.len() > 8);
        let leaked: Vec<String> = logs
            .lines()
            .filter(|l| l.contains(&secret))
            .map(|l| l.replace(&secret, "<SECRET>"))
            .collect();
        assert!(leaked.is_empty(), "a secret reached the logs: {leaked:#?}");
    }
}
