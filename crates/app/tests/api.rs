//! The REST API over real HTTP: the `OpenAPI` document matches the routes, CRUD with API tokens
//! and scopes, JSON errors with stable codes, pagination, and no secret in any response.
#![allow(clippy::too_many_lines)] // one story per test

use std::collections::BTreeSet;

use oauthimap_store::Backend;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

mod common;
use common::{SECRET, harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_routes() {
    let h = harness(Backend::Sqlite, &[]).await;
    let spec: Value = serde_json::from_str(oauthimap_web::OPENAPI).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                documented.insert((method.to_owned(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = oauthimap_web::API_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        documented, routed,
        "every route documented, nothing documented that is not routed"
    );

    // And every listed route really exists on the router (not 404/405 for lack of a route).
    let (_, token) = h
        .app
        .create_api_token("probe", &["admin".into(), "tokens:read".into()])
        .await
        .unwrap();
    let base = h.app.settings().external_base_url();
    for (method, path) in oauthimap_web::API_ROUTES {
        let url = base.join(&path.replace("{id}", "999999")).unwrap();
        let request = match *method {
            "get" => h.http.get(url),
            "post" => h.http.post(url).json(&json!({})),
            "patch" => h.http.patch(url).json(&json!({})),
            "delete" => h.http.delete(url),
            other => panic!("{other}"),
        };
        let response = request
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if status == StatusCode::NOT_FOUND {
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                body["error"]["code"], "not_found",
                "{method} {path}: a handler answered, not the router"
            );
        }
    }
    h.t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_scopes_errors_pagination_and_no_secrets() {
    let h = harness(Backend::Sqlite, &[]).await;
    let base = h.app.settings().external_base_url();
    let url = |p: &str| base.join(p).unwrap();
    let (_, admin) = h
        .app
        .create_api_token("admin", &["admin".into()])
        .await
        .unwrap();
    let (_, reader) = h
        .app
        .create_api_token("msmtp", &["tokens:read".into()])
        .await
        .unwrap();
    let admin = admin.expose_secret().to_owned();
    let mut bodies = String::new();

    // Without a token: 401; with a known token lacking the admin scope: 403; both with a stable
    // code.
    let r = h
        .http
        .get(url("/api/v1/applications"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    let r = h
        .http
        .get(url("/api/v1/applications"))
        .bearer_auth(reader.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "tokens:read cannot administer"
    );
    let denied: Value = r.json().await.unwrap();
    assert_eq!(denied["error"]["code"], "forbidden");
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lacks the admin scope"),
        "{denied}"
    );
    // An oversized body is 413, not a validation error. The server may answer before the body
    // is all sent and close: the body is written on its own task (its broken pipe ignored) while
    // the answer is read.
    let answer = {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let addr = format!(
            "{}:{}",
            base.host_str().unwrap(),
            base.port_or_known_default().unwrap()
        );
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (mut read, mut write) = tcp.into_split();
        let body = format!("{{\"name\": \"{}\"}}", "x".repeat(4 * 1024 * 1024));
        let head = format!(
            "POST /api/v1/applications HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {admin}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let writer = tokio::spawn(async move {
            let _ = write.write_all(head.as_bytes()).await;
            let _ = write.write_all(body.as_bytes()).await;
        });
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            read.read_to_end(&mut answer),
        )
        .await;
        writer.abort();
        String::from_utf8_lossy(&answer).into_owned()
    };
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"too_large\""), "{answer}");

    // Create: the secret goes in and never comes back.
    let r = h
        .http
        .post(url("/api/v1/applications"))
        .bearer_auth(&admin)
        .json(&json!({ "name": "Fabrikam", "provider": "google", "client_id": "fab.apps.googleusercontent.com", "client_secret": "api-secret-123456" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["has_client_secret"], true);
    assert!(
        created["redirect_url"]
            .as_str()
            .unwrap()
            .ends_with("/oauth/callback")
    );
    let id = created["id"].as_i64().unwrap();

    // Bad input: 422 naming the field; duplicate: 409; unknown id: 404.
    let r = h
        .http
        .post(url("/api/v1/applications"))
        .bearer_auth(&admin)
        .json(&json!({ "name": "X", "provider": "google", "client_id": "c", "tenantt": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("tenantt"));
    let r = h
        .http
        .post(url("/api/v1/applications"))
        .bearer_auth(&admin)
        .json(&json!({ "name": "Y", "provider": "google", "client_id": "c", "tenant": "t" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("tenant:")
    );
    let r = h
        .http
        .post(url("/api/v1/applications"))
        .bearer_auth(&admin)
        .json(&json!({ "name": "Fabrikam", "provider": "google", "client_id": "c" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = h
        .http
        .get(url("/api/v1/applications/424242"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Update, read back, list.
    let r = h
        .http
        .patch(url(&format!("/api/v1/applications/{id}")))
        .bearer_auth(&admin)
        .json(&json!({ "comment": "via API" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = h
        .http
        .get(url(&format!("/api/v1/applications/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("via API"));
    bodies.push_str(&text);
    let list = h
        .http
        .get(url("/api/v1/applications"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&list).unwrap()["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    bodies.push_str(&list);

    // An authorized account (through the real sign-in), then a webhook receiver: its signing
    // secret is returned once, at creation.
    h.sign_in("Contoso", None).await;
    let accounts = h
        .http
        .get(url("/api/v1/accounts"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    bodies.push_str(&accounts);
    let account_id = serde_json::from_str::<Value>(&accounts).unwrap()["items"][0]["id"]
        .as_i64()
        .unwrap();
    bodies.push_str(
        &h.http
            .get(url(&format!("/api/v1/accounts/{account_id}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let r = h
        .http
        .post(url("/api/v1/receivers"))
        .bearer_auth(&admin)
        .json(&json!({ "name": "hook", "application": "Contoso", "account": "help@contoso.com", "sink": "webhook", "sink_target": "https://hooks.example.com/in" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let sink_secret = created["sink_secret"].as_str().unwrap().to_owned();
    assert!(sink_secret.starts_with("whsec_"));
    let receiver_id = created["receiver"]["id"].as_i64().unwrap();
    let receiver = h
        .http
        .get(url(&format!("/api/v1/receivers/{receiver_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(receiver.contains("\"has_sink_secret\":true"));
    bodies.push_str(&receiver);
    bodies.push_str(
        &h.http
            .get(url("/api/v1/receivers"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let r = h
        .http
        .patch(url(&format!("/api/v1/receivers/{receiver_id}")))
        .bearer_auth(&admin)
        .json(&json!({ "folder": "Support" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let patched = r.text().await.unwrap();
    assert!(
        patched.contains("\"sink_secret\":null"),
        "an unchanged secret is not shown again: {patched}"
    );
    bodies.push_str(&patched);

    // Events page with a cursor.
    let first: Value = h
        .http
        .get(url("/api/v1/events?limit=2"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_i64().expect("more pages");
    let second: Value = h
        .http
        .get(url(&format!("/api/v1/events?limit=2&cursor={cursor}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(second["items"][0]["id"].as_i64().unwrap() < cursor);
    bodies.push_str(&first.to_string());
    bodies.push_str(&second.to_string());
    bodies.push_str(
        &h.http
            .get(url("/api/v1/messages"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );

    // No response carries a client secret, an access or refresh token, or the sink secret.
    let tokens = h
        .app
        .store()
        .account_tokens(oauthimap_types::AccountId(account_id))
        .await
        .unwrap();
    for secret in [
        SECRET.to_owned(),
        "api-secret-123456".to_owned(),
        sink_secret,
        tokens.access_token.unwrap().expose_secret().to_owned(),
        tokens.refresh_token.unwrap().expose_secret().to_owned(),
    ] {
        assert!(
            !bodies.contains(&secret),
            "a secret appeared in an API response"
        );
    }

    // A change that revokes the accounts is held for confirmation (409, naming the account and
    // the receiver, nothing changed), then made with "confirm": true.
    let contoso = h.app.find_application("Contoso").await.unwrap().id.0;
    let r = h
        .http
        .patch(url(&format!("/api/v1/applications/{contoso}")))
        .bearer_auth(&admin)
        .json(&json!({ "tenant": "fabrikam.onmicrosoft.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let held: Value = r.json().await.unwrap();
    assert_eq!(held["error"]["code"], "confirmation_required", "{held}");
    assert_eq!(
        held["error"]["accounts"],
        json!(["help@contoso.com"]),
        "{held}"
    );
    assert_eq!(held["error"]["receivers"], json!(["hook"]), "{held}");
    assert!(
        held["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"confirm\": true"),
        "{held}"
    );
    let still = h
        .app
        .store()
        .account(oauthimap_types::AccountId(account_id))
        .await
        .unwrap();
    assert_eq!(still.state, oauthimap_types::AccountState::Active);
    let r = h
        .http
        .patch(url(&format!("/api/v1/applications/{contoso}")))
        .bearer_auth(&admin)
        .json(&json!({ "tenant": "fabrikam.onmicrosoft.com", "confirm": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["cascade"]["accounts_revoked"], 1, "{done}");
    assert_eq!(
        done["application"]["tenant"], "fabrikam.onmicrosoft.com",
        "{done}"
    );

    // Delete.
    let r = h
        .http
        .delete(url(&format!("/api/v1/receivers/{receiver_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = h
        .http
        .delete(url(&format!("/api/v1/applications/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    h.t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_in_prometheus_format() {
    let h = harness(Backend::Sqlite, &[]).await;
    h.sign_in("Contoso", None).await;
    let account = h.app.list_accounts(None).await.unwrap().remove(0);
    let token = h.app.tokens().access_token(account.id, true).await.unwrap();
    let base = h.app.settings().external_base_url();
    let r = h
        .http
        .get(base.join("/metrics").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains("oauthimap_accounts{state=\"active\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("oauthimap_accounts{state=\"needs_reauth\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("oauthimap_token_refreshes_total{outcome=\"refreshed\"}"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "oauthimap_token_expiry_seconds{{account=\"{}\"}}",
            account.id
        )),
        "{text}"
    );
    assert!(
        text.contains("oauthimap_http_request_duration_seconds_bucket")
            && text.contains("route=\"/oauth/callback\""),
        "{text}"
    );
    assert!(!text.contains(token.secret.expose_secret()) && !text.contains(SECRET));
    // A removed account's series is gone from the next scrape (it was kept forever).
    h.app
        .remove_account(&oauthimap_app::AccountSelector::new(
            account.id.to_string(),
            None,
        ))
        .await
        .unwrap();
    let text = h
        .http
        .get(base.join("/metrics").unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !text.contains(&format!("account=\"{}\"", account.id)),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "# TYPE oauthimap_token_expiry_seconds gauge"),
        "{text}"
    );
    h.t.cleanup().await;
}

/// With `metrics.token_file`, `/metrics` answers only a scraper that sends that token; the file
/// is read at each scrape (rotation needs no restart), and one that cannot be read or holds too
/// short a token is a clear error, never an open door.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_behind_a_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.token");
    std::fs::write(&file, "first-scrape-token-0123456789\n").unwrap();
    let h = harness(
        Backend::Sqlite,
        &[("OAUTHIMAP_METRICS__TOKEN_FILE", file.display().to_string())],
    )
    .await;
    let url = h
        .app
        .settings()
        .external_base_url()
        .join("/metrics")
        .unwrap();
    let get = |token: Option<&'static str>| {
        let mut r = h.http.get(url.clone());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap() }
    };
    let r = get(None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert!(!r.text().await.unwrap().contains("oauthimap_"));
    assert_eq!(
        get(Some("wrong-token-0123456789")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = get(Some("first-scrape-token-0123456789")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("oauthimap_accounts"));
    // Rotated: the old token is refused at once, the new one works.
    std::fs::write(&file, "second-scrape-token-987654321").unwrap();
    assert_eq!(
        get(Some("first-scrape-token-0123456789")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(Some("second-scrape-token-987654321")).await.status(),
        StatusCode::OK
    );
    // Too short, or gone: the scrape fails closed and the reason names the setting.
    std::fs::write(&file, "short").unwrap();
    let err = h.app.metrics_token().unwrap_err();
    assert!(
        err.to_string().contains("metrics.token_file") && err.to_string().contains("at least 16"),
        "{err}"
    );
    assert_eq!(
        get(Some("short")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    std::fs::remove_file(&file).unwrap();
    assert!(
        h.app
            .metrics_token()
            .unwrap_err()
            .to_string()
            .contains("cannot read")
    );
    assert_eq!(get(None).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    h.t.cleanup().await;
}

/// Gateway passwords over REST: created (shown once, not cached), listed without any secret,
/// revoked; only an admin token may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_passwords_over_rest() {
    let h = harness(Backend::Sqlite, &[]).await;
    let (status, page) = h.sign_in("Contoso", None).await;
    assert_eq!(status, 200, "{page}");
    let account = h.app.list_accounts(None).await.unwrap().remove(0);
    let (_, admin) = h
        .app
        .create_api_token("admin", &["admin".into()])
        .await
        .unwrap();
    let (_, reader) = h
        .app
        .create_api_token("reader", &["tokens:read".into()])
        .await
        .unwrap();
    let base = h.app.settings().external_base_url();
    let url = |p: &str| base.join(p).unwrap();
    let create = url(&format!(
        "/api/v1/accounts/{}/gateway-passwords",
        account.id.0
    ));
    let r = h
        .http
        .post(create.clone())
        .bearer_auth(admin.expose_secret())
        .json(&json!({ "name": "glpi", "protocols": ["imap"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(
        r.headers()["x-content-type-options"],
        "nosniff",
        "every response"
    );
    let body: Value = r.json().await.unwrap();
    let password = body["password"].as_str().unwrap().to_owned();
    assert!(password.len() >= 24, "{body}");
    assert_eq!(body["gateway_password"]["protocols"], "imap");
    assert_eq!(
        body["gateway_password"]["mailbox"],
        account.mailbox.as_str()
    );
    // A bad protocol is refused with the documented error shape.
    let r = h
        .http
        .post(create.clone())
        .bearer_auth(admin.expose_secret())
        .json(&json!({ "name": "x", "protocols": ["ftp"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("ftp")
            || e.to_string().contains("ftp"),
        "{e}"
    );
    // Listed, never with the password or its hash.
    let list = h
        .http
        .get(url("/api/v1/gateway-passwords"))
        .bearer_auth(admin.expose_secret())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("\"glpi\"") && !list.contains(&password) && !list.contains("argon2"),
        "{list}"
    );
    // Only admin tokens.
    let r = h
        .http
        .get(url("/api/v1/gateway-passwords"))
        .bearer_auth(reader.expose_secret())
        .send()
        .await
        .unwrap();
    assert!(matches!(r.status().as_u16(), 401 | 403), "{}", r.status());
    // Revoked.
    let r = h
        .http
        .delete(url(&format!(
            "/api/v1/accounts/{}/gateway-passwords/glpi",
            account.id.0
        )))
        .bearer_auth(admin.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(h.app.gateway_passwords(None).await.unwrap().is_empty());
    h.t.cleanup().await;
}

/// A receiver created over REST starts at once: the core's receiver use cases wake the collector
/// whichever shell made the change, so its first message lands within seconds, not at the
/// supervisor's next periodic look (15 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_created_over_rest_collects_at_once() {
    use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions};
    use std::time::{Duration, Instant};
    const USER: &str = "intake@contoso.com";
    let h = harness(Backend::Sqlite, &[]).await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    h.idp
        .add_user(oauthimap_fake_idp::UserConfig::new(USER, "Intake"));
    h.idp.set_default_user(USER);
    let (status, page) = h.sign_in("Contoso", None).await;
    assert_eq!(status, 200, "{page}");
    dovecot
        .deliver(
            USER,
            b"From: Ann <ann@example.com>\r\nTo: intake@contoso.com\r\nSubject: Printer\r\n\
              Message-ID: <rest-1@example.com>\r\n\r\nThe printer is out of toner.\r\n",
        )
        .unwrap();
    let (_, admin) = h
        .app
        .create_api_token("admin", &["admin".into()])
        .await
        .unwrap();
    // The collector runs as in `serve`, and has taken its first look (no receivers yet): the
    // next periodic one is 15 s away.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let supervisor = tokio::spawn({
        let app = h.app.clone();
        async move { app.run_receivers(stop_rx).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let base = h.app.external_base_url();
    let r = h
        .http
        .post(base.join("/api/v1/receivers").unwrap())
        .bearer_auth(admin.expose_secret())
        .json(&json!({
            "name": "intake",
            "application": "Contoso",
            "account": USER,
            "host": "localhost",
            "port": dovecot.imaps_port(),
            "security": "tls",
            "ca_file": dovecot.ca_pem_path().display().to_string(),
            "trigger": "idle",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let created = Instant::now();
    while h.app.message_count().await.unwrap() == 0 {
        assert!(
            created.elapsed() < Duration::from_secs(5),
            "the receiver created over REST collected nothing within 5 s: the collector was not woken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "first message collected {:?} after the REST call",
        created.elapsed()
    );
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(20), supervisor)
        .await
        .unwrap()
        .unwrap();
    h.t.cleanup().await;
}
