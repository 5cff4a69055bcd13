//! Security tests of the admin web UI and the REST API over real HTTP (issue 6): the session
//! cookie's attributes and the login redirect (`next` never leaves the site), CSRF refusal on
//! every kind of state-changing form (session forms, login, setup, logout), HTML escaping of
//! hostile values from admins, providers and mail, the Content-Security-Policy and the other
//! security headers, idle and absolute session expiry, logout and password changes ending
//! sessions, login rate limiting (per user and per address), the one-time setup link, the OAuth
//! callback's redirects, API token scopes, and that no page or API response carries a client
//! secret, an OAuth token, a webhook secret, an API token, a session cookie or the master key.
//!
//! Each test starts the app core on a fresh database, the router on a loopback port and the fake
//! identity provider, and talks to it with reqwest without following redirects; cookies are kept
//! by a small jar here so that each test sees exactly what the server sets.
#![allow(clippy::too_many_lines)] // each test reads best as one story

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oauthimap_app::{AccountSelector, ApplicationInput, Core};
use oauthimap_config::Settings;
use oauthimap_fake_idp::{ClientConfig, FakeIdp, UserConfig};
use oauthimap_store::{Backend, NewStoredMessage};
use oauthimap_testkit::TestDb;
use oauthimap_types::Provider;
use reqwest::header::{self, HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

const ADMIN: &str = "admin";
const PASSWORD: &str = "correct horse battery staple";
const CLIENT_ID: &str = "ms-client";
const SECRET: &str = "Zq8Q~fake-client-secret.42";
const MAILBOX: &str = "help@contoso.com";
/// Base64 of 32 bytes: the master key of every test app, so it can be looked for in responses.
const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const HOSTILE_SUBJECT: &str = "<script>alert(1)</script>";
const HOSTILE_SENDER: &str = "<img src=x onerror=alert(2)>";

// --- Harness -------------------------------------------------------------------------------

/// The service on a loopback port, the fake provider with one Microsoft client and one user, and
/// an application "Contoso" for that client.
struct Svc {
    app: Core,
    base: String,
    idp: FakeIdp,
    t: TestDb,
    application: i64,
    server: tokio::task::JoinHandle<()>,
}

async fn start(backend: Backend, env: &[(&str, &str)]) -> Svc {
    start_with(backend, env, true).await
}

async fn start_with(backend: Backend, extra_env: &[(&str, &str)], with_admin: bool) -> Svc {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let t = TestDb::new(backend).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let mut env: Vec<(String, String)> = vec![
        (
            "OAUTHIMAP_DATA_DIR".into(),
            t.dir.path().join("data").display().to_string(),
        ),
        ("OAUTHIMAP_DATABASE_URL".into(), t.url.clone()),
        ("OAUTHIMAP_EXTERNAL_BASE_URL".into(), base.clone()),
        ("OAUTHIMAP_MASTER_KEY".into(), MASTER_KEY.into()),
        ("OAUTHIMAP_TOKENS__HTTP_TIMEOUT_SECS".into(), "2".into()),
        // The tests' webhook receivers listen on loopback.
        (
            "OAUTHIMAP_OUTBOUND__ALLOWED_NETWORKS".into(),
            r#"["127.0.0.0/8", "::1"]"#.into(),
        ),
    ];
    for (k, v) in extra_env {
        env.retain(|(key, _)| key.as_str() != *k);
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    let app = Core::open(Settings::load_from(None, env).unwrap())
        .await
        .unwrap();
    let router = oauthimap_web::router(app.clone());
    let server = tokio::spawn(async move {
        let _ = oauthimap_web::serve_on(listener, router, std::future::pending()).await;
    });
    let idp = FakeIdp::start().await.unwrap();
    let redirect = app.redirect_url().to_string();
    idp.add_client(ClientConfig::microsoft(CLIENT_ID, SECRET, &redirect));
    idp.add_user(UserConfig::new(MAILBOX, "Helpdesk"));
    idp.set_default_user(MAILBOX);
    let view = app
        .add_application(&ApplicationInput {
            name: Some("Contoso".into()),
            provider: Some(Provider::Microsoft),
            client_id: Some(CLIENT_ID.into()),
            client_secret: Some(SecretString::from(SECRET.to_owned())),
            tenant: Some("contoso.onmicrosoft.com".into()),
            endpoint_base: Some(idp.base_url().to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    if with_admin {
        app.create_admin(ADMIN, &SecretString::from(PASSWORD.to_owned()))
            .await
            .unwrap();
    }
    Svc {
        app,
        base,
        idp,
        t,
        application: view.application.id.0,
        server,
    }
}

impl Svc {
    fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }

    /// Authorizes the mailbox through the provider without the UI (the CLI's way): our sign-in
    /// URL, the provider's redirect back, the callback page.
    async fn sign_in(&self) -> oauthimap_store::Account {
        let http = client();
        let start = self.app.start_sign_in("Contoso", None, None).await.unwrap();
        let to_provider = http.get(&start.url).send().await.unwrap();
        assert_eq!(to_provider.status().as_u16(), 302);
        let back = to_provider.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned();
        let page = http.get(&back).send().await.unwrap();
        assert_eq!(
            page.status().as_u16(),
            200,
            "{}",
            page.text().await.unwrap()
        );
        self.app.list_accounts(None).await.unwrap().remove(0)
    }

    /// A stored message with a hostile subject, sender name and HTML body, as the store sink
    /// writes it (the raw file under the data folder, the normalized JSON in the database).
    async fn hostile_message(&self) -> i64 {
        let raw = format!(
            "From: \"{HOSTILE_SENDER}\" <evil@example.com>\r\n\
             To: {MAILBOX}\r\n\
             Subject: {HOSTILE_SUBJECT}\r\n\
             Message-ID: <hostile-1@example.com>\r\n\
             Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
             \r\n\
             --b1\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             \r\n\
             Plain <script>alert(4)</script> text\r\n\
             --b1\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             \r\n\
             <p>Hello</p><script>alert(3)</script><img src=x onerror=alert(5)>\r\n\
             --b1--\r\n"
        );
        let normalized =
            oauthimap_mime::normalize(raw.as_bytes(), &oauthimap_mime::Limits::default()).unwrap();
        assert_eq!(normalized.subject.as_deref(), Some(HOSTILE_SUBJECT));
        let dir = self.app.settings().data_dir.join("messages");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hostile-1.eml");
        std::fs::write(&path, raw.as_bytes()).unwrap();
        let (id, inserted) = self
            .app
            .store()
            .insert_message(&NewStoredMessage {
                idempotency_key: "hostile-1",
                receiver: None,
                message_id: normalized.message_id.as_deref(),
                subject: HOSTILE_SUBJECT,
                from_address: "evil@example.com",
                from_name: HOSTILE_SENDER,
                date: normalized.date.as_deref(),
                size: raw.len() as i64,
                sha256: &normalized.sha256,
                normalized: &normalized.to_json(),
                raw_path: &path.display().to_string(),
                raw_offset: 0,
                raw_len: raw.len() as i64,
            })
            .await
            .unwrap();
        assert!(inserted);
        id
    }

    async fn stop(self) {
        self.server.abort();
        self.idp.shutdown().await;
        self.t.cleanup().await;
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // Generous: argon2id in a debug build takes seconds when tests share two cores.
        .timeout(Duration::from_mins(1))
        .build()
        .unwrap()
}

/// A response read whole.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn location(&self) -> &str {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location in a {} response", self.status))
    }

    /// The `Set-Cookie` header of cookie `name`, if the response sets it.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// The value of the hidden `csrf` field of the page.
    fn csrf(&self) -> String {
        field_value(&self.body, "name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body))
    }

    /// Everything a client sees: status line aside, every header and the body.
    fn everything(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.headers {
            s.push_str(k.as_str());
            s.push_str(": ");
            s.push_str(&String::from_utf8_lossy(v.as_bytes()));
            s.push('\n');
        }
        s.push_str(&self.body);
        s
    }
}

/// The text after `marker` up to the next double quote.
fn field_value(body: &str, marker: &str) -> Option<String> {
    let start = body.find(marker)? + marker.len();
    let len = body[start..].find('"')?;
    Some(body[start..start + len].to_owned())
}

/// A browser without JavaScript: a cookie jar for our origin and no redirect following.
#[derive(Clone)]
struct Browser {
    http: reqwest::Client,
    base: String,
    jar: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            http: client(),
            base: base.to_owned(),
            jar: Arc::default(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().unwrap().get(name).cloned()
    }

    fn set(&self, name: &str, value: &str) {
        self.jar
            .lock()
            .unwrap()
            .insert(name.to_owned(), value.to_owned());
    }

    fn forget(&self, name: &str) {
        self.jar.lock().unwrap().remove(name);
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Resp {
        let cookies = self
            .jar
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if cookies.is_empty() {
            request
        } else {
            request.header(header::COOKIE, cookies)
        };
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap();
        for set in headers.get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.forget(name);
            } else {
                self.set(name, value);
            }
        }
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Resp {
        self.send(self.http.post(self.url(path)).form(form)).await
    }

    /// The login form: GET (for its CSRF cookie and field), then POST.
    async fn login_with(&self, username: &str, password: &str, next: &str) -> Resp {
        let page = self.get(&format!("/login?next={}", enc(next))).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = page.csrf();
        self.post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", username),
                ("password", password),
                ("next", next),
            ],
        )
        .await
    }

    async fn login(&self) -> Resp {
        let r = self.login_with(ADMIN, PASSWORD, "/applications").await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(r.location(), "/applications");
        r
    }

    /// The session's CSRF value, from a page's forms.
    async fn csrf(&self) -> String {
        let page = self.get("/applications").await;
        assert_eq!(page.status, 200, "{}", page.body);
        page.csrf()
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn assert_to_login(r: &Resp) {
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        r.location().starts_with("/login"),
        "redirected to {}",
        r.location()
    );
}

async fn application_names(app: &Core) -> Vec<String> {
    app.list_applications()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.fields.name)
        .collect()
}

// --- 1. Login, the session cookie, and where login leads -----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sets_a_hardened_session_cookie_and_stays_on_site() {
    let s = start(Backend::Sqlite, &[]).await;
    let b = s.browser();

    // Pages need a session; the login page remembers where the admin was going.
    let r = b.get("/applications?x=1").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/login?next=%2Fapplications%3Fx%3D1");
    assert_to_login(&b.get(&format!("/applications/{}", s.application)).await);
    assert!(
        b.get("/login")
            .await
            .set_cookie("oauthimap_session")
            .is_none()
    );

    // A wrong password: 401, the form again, no session.
    let r = b.login_with(ADMIN, "wrong password here", "/").await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Wrong username or password"), "{}", r.body);
    assert!(r.set_cookie("oauthimap_session").is_none());
    assert!(b.cookie("oauthimap_session").is_none());
    let r = b.login_with("nobody", PASSWORD, "/").await;
    assert_eq!(r.status, 401, "an unknown name gets the same answer");
    assert!(r.body.contains("Wrong username or password"));

    // The right one: 303 with an HttpOnly, SameSite=Lax cookie, not Secure over http.
    let r = b.login_with(ADMIN, PASSWORD, "/applications?x=1").await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        r.location(),
        "/applications?x=1",
        "back where the admin was"
    );
    let cookie = r.set_cookie("oauthimap_session").expect("a session cookie");
    let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(attrs[0].len() > "oauthimap_session=".len() + 30, "{cookie}");
    assert!(attrs.contains(&"HttpOnly"), "{cookie}");
    assert!(attrs.contains(&"SameSite=Lax"), "{cookie}");
    assert!(attrs.contains(&"Path=/"), "{cookie}");
    assert!(!attrs.contains(&"Secure"), "not over plain http: {cookie}");
    assert_eq!(b.get("/applications").await.status, 200);

    // Off-site `next` values are never followed: the admin lands on `/`.
    for next in [
        "//evil.example",
        "//evil.example/applications",
        "https://evil.example",
        "https://evil.example/login",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        " //evil.example",
        "javascript:alert(1)",
    ] {
        let page = s.browser().get(&format!("/login?next={}", enc(next))).await;
        assert_eq!(
            field_value(&page.body, "name=\"next\" value=\"").as_deref(),
            Some("/"),
            "the form does not carry {next:?}"
        );
    }
    // A forged form with such a `next` (each login costs an argon2id check: a few of them).
    for next in [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "/\t/evil.example",
    ] {
        let r = s.browser().login_with(ADMIN, PASSWORD, next).await;
        assert_eq!(r.status, 303, "{next:?}: {}", r.body);
        assert_eq!(r.location(), "/", "{next:?} must not be followed");
    }

    // Over https, the cookies are Secure.
    let secure = start(
        Backend::Sqlite,
        &[(
            "OAUTHIMAP_EXTERNAL_BASE_URL",
            "https://oauthimap.example.com",
        )],
    )
    .await;
    let sb = secure.browser();
    let page = sb.get("/login").await;
    let login_csrf = page
        .set_cookie("oauthimap_login_csrf")
        .expect("a login CSRF cookie");
    assert!(login_csrf.contains("; Secure"), "{login_csrf}");
    assert!(login_csrf.contains("; HttpOnly"), "{login_csrf}");
    let r = sb
        .post(
            "/login",
            &[
                ("csrf", &page.csrf()),
                ("username", ADMIN),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.set_cookie("oauthimap_session").unwrap();
    let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
    for a in ["HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(attrs.contains(&a), "{a} missing: {cookie}");
    }
    secure.stop().await;
    s.stop().await;
}

// --- 2. CSRF ---------------------------------------------------------------------------------

async fn csrf_story(backend: Backend) {
    let s = start(backend, &[]).await;
    let b = s.browser();
    b.login().await;
    let csrf = b.csrf().await;
    let create = |token: Option<&str>| {
        let mut form = vec![
            ("name", "Fabrikam"),
            ("provider", "google"),
            ("client_id", "fab.apps.googleusercontent.com"),
            ("active", "on"),
        ];
        if let Some(t) = token {
            form.push(("csrf", t));
        }
        form.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<Vec<_>>()
    };
    let post = |form: Vec<(String, String)>, extra: Option<(&'static str, &'static str)>| {
        let mut req = b.http.post(b.url("/applications")).form(&form);
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        b.send(req)
    };

    // No token, a wrong one, a token of another session, or a foreign origin: 403, nothing written.
    let r = post(create(None), None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("security token"), "{}", r.body);
    let r = post(create(Some("not-the-token")), None).await;
    assert_eq!(r.status, 403);
    let r = post(create(Some("")), None).await;
    assert_eq!(r.status, 403);
    let other = s.browser();
    other.login().await;
    let r = post(create(Some(&other.csrf().await)), None).await;
    assert_eq!(r.status, 403, "another session's token");
    let r = post(
        create(Some(&csrf)),
        Some(("origin", "https://evil.example")),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("another site"), "{}", r.body);
    let r = post(create(Some("not-the-token")), Some(("origin", "null"))).await;
    assert_eq!(r.status, 403, "an opaque origin leaves it to the token");
    let r = post(
        create(Some(&csrf)),
        Some(("referer", "https://evil.example/page")),
    )
    .await;
    assert_eq!(r.status, 403, "a foreign Referer without Origin");
    // The token in the header (htmx) must match too.
    let r = b
        .send(
            b.http
                .post(b.url("/applications"))
                .header("x-csrf-token", "forged")
                .form(&create(None)),
        )
        .await;
    assert_eq!(r.status, 403);
    // A session cookie alone, sent by another site's form, changes nothing either.
    assert_eq!(application_names(&s.app).await, ["Contoso"]);

    // Deleting and logging out are guarded the same way.
    let r = b
        .post(&format!("/applications/{}/delete", s.application), &[])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(application_names(&s.app).await, ["Contoso"]);
    let r = b.post("/logout", &[("csrf", "wrong")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        b.get("/applications").await.status,
        200,
        "the session survives a forged logout"
    );
    let r = b.post("/api-tokens", &[("name", "forged")]).await;
    assert_eq!(r.status, 403);
    assert!(s.app.list_api_tokens().await.unwrap().is_empty());

    let r = post(create(Some(&csrf)), Some(("origin", "not a url"))).await;
    assert_eq!(r.status, 403, "a malformed Origin");
    assert_eq!(application_names(&s.app).await, ["Contoso"]);

    // The right token, from our own origin: the application is created.
    let mut req = b
        .http
        .post(b.url("/applications"))
        .form(&create(Some(&csrf)));
    req = req.header("origin", s.base.as_str());
    let r = b.send(req).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with("/applications/"));
    assert_eq!(application_names(&s.app).await, ["Contoso", "Fabrikam"]);
    let r = b
        .send(
            b.http
                .post(b.url(&format!("/applications/{}/delete", s.application)))
                .header("x-csrf-token", csrf.as_str())
                .form(&[("confirm", "yes")]),
        )
        .await;
    assert_eq!(r.status, 303, "the header form of the token works");
    assert_eq!(application_names(&s.app).await, ["Fabrikam"]);
    let r = b
        .post(
            "/api-tokens",
            &[("csrf", &csrf), ("name", "ops"), ("scope", "tokens:read")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.app.list_api_tokens().await.unwrap().len(), 1);

    // Login: without the pre-login cookie, without the field, or with mismatched values: 403.
    let fresh = s.browser();
    let page = fresh.get("/login").await;
    let login_csrf = page.csrf();
    let creds = |csrf: Option<&str>| {
        let mut f = vec![("username", ADMIN), ("password", PASSWORD)];
        if let Some(c) = csrf {
            f.push(("csrf", c));
        }
        f.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<Vec<_>>()
    };
    let r = fresh
        .send(fresh.http.post(fresh.url("/login")).form(&creds(None)))
        .await;
    assert_eq!(r.status, 403);
    let saved = fresh.cookie("oauthimap_login_csrf").unwrap();
    fresh.forget("oauthimap_login_csrf");
    let r = fresh
        .send(
            fresh
                .http
                .post(fresh.url("/login"))
                .form(&creds(Some(&login_csrf))),
        )
        .await;
    assert_eq!(r.status, 403, "no login CSRF cookie");
    fresh.set("oauthimap_login_csrf", &format!("{saved}x"));
    let r = fresh
        .send(
            fresh
                .http
                .post(fresh.url("/login"))
                .form(&creds(Some(&login_csrf))),
        )
        .await;
    assert_eq!(r.status, 403, "cookie and field differ");
    assert!(r.set_cookie("oauthimap_session").is_none());
    fresh.set("oauthimap_login_csrf", &saved);
    let r = fresh
        .send(
            fresh
                .http
                .post(fresh.url("/login"))
                .header("origin", "https://evil.example")
                .form(&creds(Some(&login_csrf))),
        )
        .await;
    assert_eq!(r.status, 403, "login from another site");
    let r = fresh
        .send(
            fresh
                .http
                .post(fresh.url("/login"))
                .form(&creds(Some(&login_csrf))),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.set_cookie("oauthimap_session").is_some());

    // The right token logs out, and the old token dies with the session.
    let csrf = b.csrf().await;
    let r = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/login");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_is_required_for_every_state_change_sqlite() {
    csrf_story(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_is_required_for_every_state_change_postgres() {
    csrf_story(Backend::Postgres).await;
}

// --- 3. Escaping -----------------------------------------------------------------------------

/// Whether `body` shows `text` as text: HTML-escaped, with named (`&lt;`) or numeric (`&#60;`)
/// references.
fn shows(body: &str, text: &str) -> bool {
    let named = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    let numeric = text
        .replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;");
    body.contains(&named) || body.contains(&numeric)
}

/// Neither hostile markup in raw form, nor anything that would run.
fn assert_inert(what: &str, body: &str) {
    for raw in [
        "<script>alert",
        "<img src=x onerror",
        "onerror=alert(3)>",
        "<svg",
    ] {
        assert!(!body.contains(raw), "{what} contains raw {raw:?}:\n{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_errors_render_as_text() {
    let s = start(Backend::Sqlite, &[]).await;
    let b = s.browser();

    // The login form echoes the username: escaped.
    let r = b
        .login_with("\"><img src=x onerror=alert(3)>", "wrong password 1", "/")
        .await;
    assert_eq!(r.status, 401);
    assert_inert("the login page", &r.body);
    assert!(
        shows(&r.body, "\"><img src=x onerror=alert(3)>"),
        "{}",
        r.body
    );

    // An application named like a script, created through the form: the flash, the list, the
    // form and the Accounts tab show it as text.
    b.login().await;
    let csrf = b.csrf().await;
    let r = b
        .post(
            "/applications",
            &[
                ("csrf", &csrf),
                ("name", HOSTILE_SUBJECT),
                ("provider", "microsoft"),
                ("client_id", "x\"><svg/onload=alert(3)>"),
                ("tenant", "contoso.onmicrosoft.com"),
                ("comment", HOSTILE_SENDER),
                ("active", "on"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let show = r.location().to_owned();
    let id: i64 = show.rsplit('/').next().unwrap().parse().unwrap();
    let page = b.get(&show).await;
    assert_eq!(page.status, 200);
    assert!(
        shows(&page.body, &format!("Application {HOSTILE_SUBJECT} saved")),
        "the flash, escaped: {}",
        page.body
    );
    assert!(shows(&page.body, HOSTILE_SENDER), "the comment, escaped");
    assert_inert("the application form", &page.body);
    for path in [
        "/applications".to_owned(),
        format!("/applications/{id}/accounts"),
        "/receivers/new".to_owned(),
        format!("/receivers/account-options?application={id}"),
    ] {
        let page = b.get(&path).await;
        assert_eq!(page.status, 200, "{path}");
        assert_inert(&path, &page.body);
        if path != format!("/receivers/account-options?application={id}") {
            assert!(shows(&page.body, HOSTILE_SUBJECT), "{path}: {}", page.body);
        }
    }

    // A receiver named like a script, over an authorized account.
    let account = s.sign_in().await;
    let form_page = b.get("/receivers/new").await;
    let r = b
        .post(
            "/receivers",
            &[
                ("csrf", &form_page.csrf()),
                ("name", HOSTILE_SENDER),
                ("application", &s.application.to_string()),
                ("account", &account.id.to_string()),
                ("host", "outlook.office365.com"),
                ("port", "993"),
                ("folder", HOSTILE_SUBJECT),
                ("sink", "store"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let receiver = r.location().to_owned();
    for path in [
        receiver.as_str(),
        "/receivers",
        &format!("/accounts/{}", account.id),
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        assert_inert(path, &page.body);
        assert!(shows(&page.body, HOSTILE_SENDER), "{path}: {}", page.body);
    }

    // The callback page shows the provider's error text: escaped, and it runs no script.
    let r = b
        .http
        .get(b.url(&format!(
            "/oauth/callback?error={}&error_description={}&state=x",
            enc(HOSTILE_SUBJECT),
            enc(HOSTILE_SENDER)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body = r.text().await.unwrap();
    assert_inert("the callback page", &body);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_message_headers_render_as_text() {
    let s = start(Backend::Sqlite, &[]).await;
    let id = s.hostile_message().await;
    let b = s.browser();
    b.login().await;
    for path in [
        "/messages".to_owned(),
        format!(
            "/messages?subject={}&sender={}",
            enc(HOSTILE_SUBJECT),
            enc("\"><svg/onload=alert(3)>")
        ),
        format!("/messages/{id}"),
    ] {
        let page = b.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert_inert(&path, &page.body);
        assert!(!page.body.contains("<script>alert(3)"), "{path}");
        if path.contains('?') {
            assert!(
                shows(&page.body, "\"><svg/onload=alert(3)>"),
                "the search is shown back, escaped: {}",
                page.body
            );
        } else {
            assert!(shows(&page.body, HOSTILE_SUBJECT), "{path}: {}", page.body);
            assert!(shows(&page.body, HOSTILE_SENDER), "{path}: {}", page.body);
        }
    }

    // The HTML body, the one route meant to be framed (by our own message page only): sanitized,
    // and sandboxed by its policy so that nothing of the message could run anyway. One script
    // runs there, ours (it reports the height), admitted by its hash alone; the frame keeps an
    // opaque origin (no allow-same-origin).
    let r = b.get(&format!("/messages/{id}/html")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Hello"), "{}", r.body);
    for bad in ["alert(3)", "onerror", "alert(5)"] {
        assert!(
            !r.body.contains(bad),
            "the HTML body keeps {bad:?}: {}",
            r.body
        );
    }
    assert_eq!(r.body.matches("<script").count(), 1, "{}", r.body);
    let ours = r.body.split("<script>").nth(1).unwrap();
    let ours = ours.split("</script>").next().unwrap();
    assert!(ours.contains("oauthimapFrameHeight"), "{ours}");
    let csp = r.header("content-security-policy").unwrap();
    assert_eq!(
        directive(csp, "default-src"),
        Some("default-src 'none'"),
        "{csp}"
    );
    {
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash =
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(ours.as_bytes()));
        assert_eq!(
            directive(csp, "script-src"),
            Some(format!("script-src 'sha256-{hash}'").as_str()),
            "only our own script, by its hash: {csp}"
        );
    }
    assert_eq!(
        directive(csp, "sandbox"),
        Some("sandbox allow-scripts"),
        "{csp}"
    );
    assert_eq!(
        directive(csp, "frame-ancestors"),
        Some("frame-ancestors 'self'"),
        "{csp}"
    );
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let page = b.get(&format!("/messages/{id}")).await;
    let frame_src = directive(page.header("content-security-policy").unwrap(), "frame-src");
    assert_eq!(frame_src, Some("frame-src 'self'"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    s.stop().await;
}

// --- 4. Security headers ---------------------------------------------------------------------

/// The directive `name` of a Content-Security-Policy.
fn directive<'a>(csp: &'a str, name: &str) -> Option<&'a str> {
    csp.split(';')
        .map(str::trim)
        .find(|d| d.split_whitespace().next() == Some(name))
}

fn assert_page_headers(what: &str, r: &Resp) {
    let csp = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    let script = directive(csp, "script-src")
        .or_else(|| directive(csp, "default-src"))
        .unwrap_or_else(|| panic!("{what}: no script-src: {csp}"));
    assert!(
        script == "script-src 'self'" || script == "default-src 'none'",
        "{what}: scripts only from us: {csp}"
    );
    assert!(!csp.contains("unsafe-eval"), "{what}: {csp}");
    assert_eq!(
        directive(csp, "default-src"),
        Some("default-src 'none'"),
        "{what}: {csp}"
    );
    assert_eq!(
        directive(csp, "frame-ancestors"),
        Some("frame-ancestors 'none'"),
        "{what}: {csp}"
    );
    assert_eq!(
        directive(csp, "base-uri"),
        Some("base-uri 'none'"),
        "{what}: {csp}"
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    // `same-origin` rather than `no-referrer` (with which browsers send `Origin: null` on our own
    // forms); nothing reaches another site.
    assert_eq!(r.header("referrer-policy"), Some("same-origin"), "{what}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_sends_a_strict_csp_and_the_security_headers() {
    let s = start(Backend::Sqlite, &[]).await;
    let account = s.sign_in().await;
    let receiver = s
        .app
        .create_receiver(&oauthimap_app::ReceiverInput {
            name: Some("helpdesk".into()),
            application: Some("Contoso".into()),
            account: Some(account.id.to_string()),
            ..Default::default()
        })
        .await
        .unwrap()
        .0;
    let message = s.hostile_message().await;
    let a = s.application;
    let pages = [
        "/".to_owned(),
        "/applications".to_owned(),
        "/applications/new".to_owned(),
        format!("/applications/{a}"),
        format!("/applications/{a}/accounts"),
        format!("/accounts/{}", account.id),
        "/receivers".to_owned(),
        "/receivers/new".to_owned(),
        format!("/receivers/{}", receiver.id),
        format!("/receivers/account-options?application={a}"),
        "/messages".to_owned(),
        format!("/messages/{message}"),
        "/api-tokens".to_owned(),
        "/applications/424242".to_owned(),
    ];
    let b = s.browser();

    // Before login: the login and setup pages, redirects, refusals.
    let mut seen = vec![
        ("GET /login", b.get("/login").await),
        ("GET /setup", b.get("/setup?token=nope").await),
        (
            "GET /applications (no session)",
            b.get("/applications").await,
        ),
        ("POST /login (no csrf)", b.post("/login", &[]).await),
    ];
    assert_eq!(seen[1].1.status, 404);
    assert_eq!(seen[2].1.status, 303);
    assert_eq!(seen[3].1.status, 403);
    let failed = b.login_with(ADMIN, "wrong password 12", "/").await;
    assert_eq!(failed.status, 401);
    seen.push(("POST /login (401)", failed));
    let ok = b.login().await;
    seen.push(("POST /login (303)", ok));

    for path in &pages {
        let r = b.get(path).await;
        if path == "/applications/424242" {
            assert_eq!(r.status, 404);
            assert!(r.header("content-type").unwrap().starts_with("text/html"));
        }
        seen.push((path.as_str(), r));
    }
    let csrf = b.csrf().await;
    seen.push((
        "POST /applications (csrf refused)",
        b.post("/applications", &[("csrf", "x")]).await,
    ));
    seen.push((
        "POST /applications (invalid form)",
        b.post("/applications", &[("csrf", &csrf), ("name", "")])
            .await,
    ));
    for (what, r) in &seen {
        assert_page_headers(what, r);
    }

    // The Accounts tab may send its sign-in form to the provider, and nowhere else.
    let tab = &seen
        .iter()
        .find(|(w, _)| *w == format!("/applications/{a}/accounts"))
        .unwrap()
        .1;
    let csp = tab.header("content-security-policy").unwrap();
    let idp_origin = url::Url::parse(s.idp.base_url())
        .unwrap()
        .origin()
        .ascii_serialization();
    assert_eq!(
        directive(csp, "form-action"),
        Some(format!("form-action 'self' {idp_origin}").as_str())
    );
    let list = &seen.iter().find(|(w, _)| *w == "/applications").unwrap().1;
    assert_eq!(
        directive(
            list.header("content-security-policy").unwrap(),
            "form-action"
        ),
        Some("form-action 'self'")
    );

    // No inline script or handler in the pages themselves (the CSP would block them).
    for (what, r) in &seen {
        if r.header("content-type")
            .is_some_and(|c| c.starts_with("text/html"))
        {
            for bad in [
                "<script>",
                "onclick=",
                "onload=",
                "onsubmit=",
                "javascript:",
            ] {
                assert!(!r.body.contains(bad), "{what} has inline {bad:?}");
            }
            let mut rest = r.body.as_str();
            while let Some(i) = rest.find("<script") {
                let tag = &rest[i..i + rest[i..].find('>').unwrap()];
                assert!(tag.contains("src=\"/static/"), "{what}: {tag}");
                rest = &rest[i + 7..];
            }
        }
    }

    // Static files: the right type and nosniff.
    let js = b.get("/static/app.js").await;
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(js.header("x-content-type-options"), Some("nosniff"));
    s.stop().await;
}

/// The callback page shown when no admin session exists (the CLI's sign-in): it is not meant to
/// be framed and must not be cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_page_sends_the_security_headers() {
    let s = start(Backend::Sqlite, &[]).await;
    let r = s.browser().get("/oauth/callback?state=bogus&code=x").await;
    assert_eq!(r.status, 400);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let csp = r.header("content-security-policy").unwrap();
    let script = directive(csp, "script-src")
        .or_else(|| directive(csp, "default-src"))
        .unwrap();
    assert!(
        script == "script-src 'self'" || script == "default-src 'none'",
        "{csp}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(
        r.header("x-frame-options") == Some("DENY")
            || directive(csp, "frame-ancestors") == Some("frame-ancestors 'none'"),
        "the callback page may not be framed: {:?}",
        r.headers
    );
    s.stop().await;
}

// --- 5. Session lifetime ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_when_idle_and_at_their_maximum() {
    let s = start(
        Backend::Sqlite,
        &[
            ("OAUTHIMAP_WEB__SESSION_IDLE_SECS", "1"),
            ("OAUTHIMAP_WEB__SESSION_MAX_SECS", "3"),
        ],
    )
    .await;

    // Idle: a request within the second keeps it; a pause of over a second ends it.
    let b = s.browser();
    b.login().await;
    assert_eq!(b.get("/applications").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = b.get("/applications").await;
    assert_to_login(&r);
    assert_eq!(r.location(), "/login?next=%2Fapplications");

    // Absolute: a busy session still ends after its maximum.
    let b = s.browser();
    let r = b.login().await;
    let logged_in = Instant::now();
    let cookie = r.set_cookie("oauthimap_session").unwrap();
    let max_age: u64 = cookie
        .split("Max-Age=")
        .nth(1)
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("the cookie lives as long as the session: {cookie}"));
    assert!((1..=3).contains(&max_age), "{cookie}");
    let ended = loop {
        let r = b.get("/applications").await;
        if r.status != 200 {
            assert_to_login(&r);
            break logged_in.elapsed();
        }
        assert!(
            logged_in.elapsed() < Duration::from_secs(6),
            "the session outlived its maximum"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        ended >= Duration::from_secs(2),
        "activity kept it past the idle limit, until the maximum: ended after {ended:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_password_change_and_removal_end_sessions() {
    let s = start(Backend::Sqlite, &[]).await;

    // Logout ends the session on the server: replaying the cookie leads to the login page.
    let b = s.browser();
    b.login().await;
    let token = b.cookie("oauthimap_session").unwrap();
    let csrf = b.csrf().await;
    let r = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/login");
    let cleared = r.set_cookie("oauthimap_session").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The login page says so, and no longer tells how to create a first admin: one exists.
    let page = b.get("/login").await;
    assert!(page.body.contains("You are logged out."), "{}", page.body);
    assert!(!page.body.contains("No admin yet"), "{}", page.body);
    assert!(s.app.admin_session(&token).await.unwrap().is_none());
    b.set("oauthimap_session", &token);
    assert_to_login(&b.get("/applications").await);
    let r = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_to_login(&r);

    // A new password ends every session of the user; the old password no longer works.
    let (one, two) = (s.browser(), s.browser());
    one.login().await;
    two.login().await;
    s.app
        .set_admin_password(
            ADMIN,
            &SecretString::from("a brand new passphrase".to_owned()),
        )
        .await
        .unwrap();
    assert_to_login(&one.get("/applications").await);
    assert_to_login(&two.get("/applications").await);
    assert_eq!(
        one.login_with(ADMIN, PASSWORD, "/").await.status,
        401,
        "the old password"
    );
    let r = one
        .login_with(ADMIN, "a brand new passphrase", "/applications")
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(one.get("/applications").await.status, 200);

    // Removing the user ends its sessions too.
    s.app.remove_admin(ADMIN).await.unwrap();
    assert_to_login(&one.get("/applications").await);
    s.stop().await;
}

// --- 6. Login rate limiting ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_user_gets_the_same_answer_as_a_wrong_password_or_an_unknown_name() {
    let s = start(Backend::Sqlite, &[]).await;
    // Ten failures in a row, from other addresses than the browser's (the core has no
    // address): the user is locked in the database.
    for attempt in 1..=10 {
        let r = s
            .app
            .login(
                ADMIN,
                &SecretString::from(format!("wrong password {attempt}")),
            )
            .await;
        assert!(
            matches!(r, Err(oauthimap_app::AppError::Denied(_))),
            "{r:?}"
        );
    }
    let user = s.app.list_admins().await.unwrap().remove(0);
    assert!(user.locked_until.is_some());
    assert_eq!(user.failed_logins, 10);
    let events = s.app.store().events(None, None, 20).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "admin.locked" && e.message.contains("oauthimap admin unlock")),
        "the lock event says how to lift it"
    );
    // The right password of the locked user, a wrong one, and a name that does not exist get
    // the same status and the same words; none says "locked" or when to come back.
    let answers = [
        s.browser().login_with(ADMIN, PASSWORD, "/").await,
        s.browser().login_with(ADMIN, "not the password", "/").await,
        s.browser().login_with("nobody-here", PASSWORD, "/").await,
    ];
    for r in &answers {
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.body.contains("Wrong username or password"), "{}", r.body);
        assert!(!r.body.to_lowercase().contains("lock"), "{}", r.body);
        assert!(r.header("retry-after").is_none());
        assert!(r.set_cookie("oauthimap_session").is_none());
    }
    let flash = |body: &str| {
        body.split("role=\"alert\"")
            .nth(1)
            .and_then(|rest| rest.split("</div>").next())
            .map(str::to_owned)
    };
    assert!(flash(&answers[0].body).is_some(), "{}", answers[0].body);
    assert_eq!(flash(&answers[0].body), flash(&answers[1].body));
    assert_eq!(flash(&answers[0].body), flash(&answers[2].body));
    // The console lifts the lock at once.
    let err = s.app.unlock_admin("nobody-here").await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    s.app.unlock_admin(ADMIN).await.unwrap();
    let user = s.app.list_admins().await.unwrap().remove(0);
    assert!(user.locked_until.is_none() && user.failed_logins == 0);
    s.browser().login().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_stopped_before_it_can_lock_the_admin() {
    let s = start(Backend::Sqlite, &[]).await;
    let b = s.browser();
    // Five failures from one address (the default web.login_failures_per_address), for the
    // admin and for names that do not exist alike.
    for attempt in 1..=5 {
        let user = if attempt % 2 == 0 { "guess" } else { ADMIN };
        let r = b
            .login_with(user, &format!("wrong password {attempt}"), "/")
            .await;
        assert_eq!(r.status, 401, "attempt {attempt}: {}", r.body);
    }
    // The sixth, even the right password, waits, and says it is about the address.
    let r = b.login_with(ADMIN, PASSWORD, "/").await;
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 60 && retry <= 15 * 60 + 1, "{retry}");
    assert!(r.body.contains("from your address"), "{}", r.body);
    assert!(r.set_cookie("oauthimap_session").is_none());
    // The user is not locked: the admin, from anywhere else, still gets in.
    let user = s.app.list_admins().await.unwrap().remove(0);
    assert!(
        user.locked_until.is_none(),
        "the address is limited, not the user"
    );
    assert!(
        s.app
            .login(ADMIN, &SecretString::from(PASSWORD.to_owned()))
            .await
            .is_ok()
    );
    s.stop().await;
}

// --- 7. The one-time setup link --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_link_creates_the_first_admin_once() {
    let s = start_with(Backend::Sqlite, &[], false).await;
    // With no admin, the login page tells how to create the first one.
    let page = s.browser().get("/login").await;
    assert!(page.body.contains("No admin yet"), "{}", page.body);
    let link = s.app.new_setup_link().await.unwrap().expect("no admin yet");
    assert!(
        link.as_str()
            .starts_with(&format!("{}/setup?token=", s.base)),
        "{link}"
    );
    let token = link
        .query_pairs()
        .find(|(k, _)| k == "token")
        .unwrap()
        .1
        .into_owned();
    assert!(token.len() >= 40, "{token}");
    let path = &link.as_str()[s.base.len()..];
    let b = s.browser();

    // Unknown tokens get no form.
    for bad in ["/setup", "/setup?token=", "/setup?token=guess"] {
        let r = b.get(bad).await;
        assert_eq!(r.status, 404, "{bad}");
        assert!(!r.body.contains("setup-form"), "{bad}");
    }
    let page = b.get(path).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"setup-form\""));
    let csrf = page.csrf();
    let setup = |username: &'static str, password: &'static str, again: &'static str| {
        let (b, csrf, token) = (b.clone(), csrf.clone(), token.clone());
        async move {
            b.post(
                "/setup",
                &[
                    ("csrf", csrf.as_str()),
                    ("token", token.as_str()),
                    ("username", username),
                    ("password", password),
                    ("password_again", again),
                ],
            )
            .await
        }
    };

    // CSRF, a short password and differing entries are refused; nothing is created and the link
    // stays good.
    let r = b
        .post(
            "/setup",
            &[
                ("token", token.as_str()),
                ("username", "root"),
                ("password", PASSWORD),
                ("password_again", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = setup("root", "short", "short").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("at least 12"), "{}", r.body);
    let r = setup("root", PASSWORD, "another passphrase").await;
    assert_eq!(r.status, 400);
    assert!(s.app.list_admins().await.unwrap().is_empty());
    assert!(
        s.app
            .setup_link_usable(&SecretString::from(token.clone()))
            .await
            .unwrap()
    );

    // The right form: the admin exists and can log in.
    let r = setup("root", PASSWORD, PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), "/login");
    let admins = s.app.list_admins().await.unwrap();
    assert_eq!(admins.len(), 1);
    assert_eq!(admins[0].username, "root");
    let r = b.login_with("root", PASSWORD, "/applications").await;
    assert_eq!(r.status, 303);

    // Used: neither the form nor a second POST (from a fresh browser) works, and no new link is
    // made.
    let again = s.browser();
    let csrf = again.get("/login").await.csrf();
    let r = again
        .post(
            "/setup",
            &[
                ("csrf", csrf.as_str()),
                ("token", token.as_str()),
                ("username", "intruder"),
                ("password", PASSWORD),
                ("password_again", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("setup link is used"), "{}", r.body);
    let names: Vec<String> = s
        .app
        .list_admins()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.username)
        .collect();
    assert_eq!(names, ["root"]);
    let r = b.get(path).await;
    assert_eq!(r.status, 404);
    assert!(!r.body.contains("setup-form"));
    assert!(s.app.new_setup_link().await.unwrap().is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_setup_link_replaces_the_old_one() {
    let s = start_with(Backend::Sqlite, &[], false).await;
    let token = |u: &url::Url| {
        u.query_pairs()
            .find(|(k, _)| k == "token")
            .unwrap()
            .1
            .into_owned()
    };
    let first = token(&s.app.new_setup_link().await.unwrap().unwrap());
    let second = token(&s.app.new_setup_link().await.unwrap().unwrap());
    assert_ne!(first, second);
    assert!(
        !s.app
            .setup_link_usable(&SecretString::from(first.clone()))
            .await
            .unwrap()
    );
    assert!(
        s.app
            .setup_link_usable(&SecretString::from(second))
            .await
            .unwrap()
    );
    assert!(
        s.app
            .create_admin_with_setup_link(
                &SecretString::from(first),
                "root",
                &SecretString::from(PASSWORD.to_owned())
            )
            .await
            .is_err()
    );
    assert!(s.app.list_admins().await.unwrap().is_empty());
    s.stop().await;
}

// --- 8. The OAuth callback -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_redirects_only_to_paths_it_builds() {
    let s = start(Backend::Sqlite, &[]).await;
    let anonymous = s.browser();
    let r = anonymous
        .get("/oauth/callback?state=bogus&code=x&next=https://evil.example")
        .await;
    assert_eq!(r.status, 400);
    assert!(r.header("location").is_none());
    assert!(r.body.contains("Authorization failed"), "{}", r.body);

    let b = s.browser();
    b.login().await;
    for query in [
        "state=bogus&code=x",
        "state=bogus&code=x&next=https://evil.example&redirect_uri=https://evil.example/cb",
        "code=x",
        "error=access_denied&state=bogus",
    ] {
        let r = b.get(&format!("/oauth/callback?{query}")).await;
        assert_eq!(r.status, 303, "{query}");
        let to = r.location();
        assert!(
            to.starts_with('/') && !to.starts_with("//"),
            "{query}: {to}"
        );
        assert_eq!(to, "/applications", "{query}");
        let flash = b.get(to).await;
        assert!(
            flash.body.contains("flash error"),
            "{query}: {}",
            flash.body
        );
    }

    // A whole sign-in started from the UI: our form -> provider -> callback -> Accounts tab.
    let a = s.application;
    let tab = b.get(&format!("/applications/{a}/accounts")).await;
    assert!(tab.body.contains("No authorized mailbox yet"));
    let r = b
        .post(
            &format!("/applications/{a}/authorize"),
            &[("csrf", &tab.csrf()), ("login_hint", MAILBOX)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let to_provider = r.location().to_owned();
    assert!(
        to_provider.starts_with(s.idp.base_url()),
        "to the provider: {to_provider}"
    );
    let back = client().get(&to_provider).send().await.unwrap();
    assert_eq!(back.status().as_u16(), 302);
    let back = back.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        back.starts_with(&format!("{}/oauth/callback?", s.base)),
        "{back}"
    );
    let r = b.get(&back).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), format!("/applications/{a}/accounts"));
    let tab = b.get(r.location()).await;
    assert_eq!(tab.status, 200);
    assert!(
        tab.body.contains("is authorized"),
        "the flash: {}",
        tab.body
    );
    assert!(
        tab.body.contains(&format!("data-mailbox=\"{MAILBOX}\"")),
        "{}",
        tab.body
    );
    assert!(
        tab.body
            .contains("<span class=\"badge active\" data-state=\"active\">Active</span>"),
        "{}",
        tab.body
    );
    // The state is spent: replaying the callback changes nothing and stays on site.
    let r = b.get(&back).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/applications");
    assert_eq!(s.app.list_accounts(None).await.unwrap().len(), 1);
    s.stop().await;
}

// --- 9. API token scopes ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_open_only_their_scopes() {
    let s = start(Backend::Sqlite, &[]).await;
    let account = s.sign_in().await;
    let (_, reader) = s
        .app
        .create_api_token("msmtp", &["tokens:read".into()])
        .await
        .unwrap();
    let (_, admin) = s
        .app
        .create_api_token("ops", &["admin".into()])
        .await
        .unwrap();
    let http = client();
    let url = |p: &str| format!("{}{p}", s.base);
    let get = |path: String, token: Option<String>, cookie: Option<String>| {
        let mut req = http.get(url(&path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let json: Value = r.json().await.unwrap_or(Value::Null);
            (status, json)
        }
    };
    let reader = reader.expose_secret().to_owned();
    let admin = admin.expose_secret().to_owned();
    let token_path = format!("/api/v1/accounts/{}/token", account.id);
    let admin_paths = [
        "/api/v1/applications".to_owned(),
        format!("/api/v1/applications/{}", s.application),
        "/api/v1/accounts".to_owned(),
        format!("/api/v1/accounts/{}", account.id),
        "/api/v1/receivers".to_owned(),
        "/api/v1/messages".to_owned(),
        "/api/v1/events".to_owned(),
    ];

    // No token, a bad one, a token for another scope, or a session cookie: 401 with a code.
    let b = s.browser();
    b.login().await;
    let session = format!(
        "oauthimap_session={}",
        b.cookie("oauthimap_session").unwrap()
    );
    for path in admin_paths.iter().chain([&token_path]) {
        for (what, token, cookie) in [
            ("no token", None, None),
            ("a made-up token", Some("oit_madeup".to_owned()), None),
            ("a session cookie", None, Some(session.clone())),
        ] {
            let (status, json) = get(path.clone(), token, cookie).await;
            assert_eq!(status, 401, "{what} on {path}");
            assert_eq!(json["error"]["code"], "unauthorized", "{what} on {path}");
            assert!(json["error"]["message"].is_string());
        }
    }
    for path in &admin_paths {
        // A known token without the scope: 403, not 401 (it is valid; it is not enough).
        let (status, json) = get(path.clone(), Some(reader.clone()), None).await;
        assert_eq!(status, 403, "tokens:read on {path}");
        assert_eq!(json["error"]["code"], "forbidden");
        let (status, _) = get(path.clone(), Some(admin.clone()), None).await;
        assert_eq!(status, 200, "admin on {path}");
    }
    // Writes need the admin scope as well.
    let r = http
        .post(url("/api/v1/applications"))
        .bearer_auth(&reader)
        .json(&serde_json::json!({ "name": "Sneaky", "provider": "google", "client_id": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = http
        .delete(url(&format!("/api/v1/accounts/{}", account.id)))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(application_names(&s.app).await, ["Contoso"]);
    assert_eq!(s.app.list_accounts(None).await.unwrap().len(), 1);

    // The token broker: tokens:read and admin both get the access token.
    let expected = s
        .app
        .account_token(&AccountSelector::new(account.id.to_string(), None), false)
        .await
        .unwrap()
        .1;
    for token in [&reader, &admin] {
        let (status, json) = get(token_path.clone(), Some(token.clone()), None).await;
        assert_eq!(status, 200);
        assert_eq!(json["access_token"], expected.secret.expose_secret());
        assert_eq!(json["mailbox"], MAILBOX);
    }
    let r = http
        .get(url(&token_path))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");

    // A removed token stops working at once.
    s.app.remove_api_token("msmtp").await.unwrap();
    assert_eq!(get(token_path.clone(), Some(reader), None).await.0, 401);
    s.stop().await;
}

// --- 10. No secret in any response -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_or_api_response_carries_a_secret() {
    let s = start(Backend::Sqlite, &[]).await;
    let account = s.sign_in().await;
    let message = s.hostile_message().await;
    let stored = s.app.store().account_tokens(account.id).await.unwrap();
    let access = stored.access_token.unwrap().expose_secret().to_owned();
    let refresh = stored.refresh_token.unwrap().expose_secret().to_owned();
    let b = s.browser();
    let login = b.login().await;
    let session = b.cookie("oauthimap_session").unwrap();
    assert!(
        login.everything().contains(&session),
        "the login response sets it"
    );

    // A webhook receiver made in the UI: its signing secret is on that one response.
    let form = b.get("/receivers/new").await;
    let created = b
        .post(
            "/receivers",
            &[
                ("csrf", &form.csrf()),
                ("name", "hook"),
                ("application", &s.application.to_string()),
                ("account", &account.id.to_string()),
                ("host", "outlook.office365.com"),
                ("port", "993"),
                ("folder", "INBOX"),
                ("sink", "webhook"),
                ("sink_target", "https://hooks.example.com/in"),
                ("active", "on"),
            ],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let webhook = field_value(&created.body, "id=\"webhook-secret\" readonly value=\"")
        .expect("the new secret is shown once");
    assert!(webhook.starts_with("whsec_"), "{webhook}");
    let receiver = s.app.find_receiver("hook").await.unwrap().id;

    // An API token made in the UI: its value is on that one response too.
    let tokens = b.get("/api-tokens").await;
    let created_token = b
        .post(
            "/api-tokens",
            &[
                ("csrf", &tokens.csrf()),
                ("name", "ops"),
                ("scope", "admin"),
            ],
        )
        .await;
    assert_eq!(created_token.status, 200, "{}", created_token.body);
    let api = field_value(&created_token.body, "id=\"new-token\" readonly value=\"")
        .expect("the new token is shown once");
    assert!(
        s.app
            .check_api_token(&SecretString::from(api.clone()), "admin")
            .await
            .unwrap()
            .is_some()
    );

    let secrets = [
        ("the client secret", SECRET.to_owned()),
        ("the access token", access),
        ("the refresh token", refresh),
        ("the webhook secret", webhook),
        ("the API token", api.clone()),
        ("the session cookie", session),
        ("the master key", MASTER_KEY.to_owned()),
    ];
    let check = |what: &str, r: &Resp| {
        let all = r.everything();
        for (name, secret) in &secrets {
            assert!(!all.contains(secret.as_str()), "{name} appears in {what}");
        }
    };

    // Every page.
    let a = s.application;
    let pages = [
        "/".to_owned(),
        "/login".to_owned(),
        "/applications".to_owned(),
        "/applications/new".to_owned(),
        format!("/applications/{a}"),
        format!("/applications/{a}/accounts"),
        format!("/accounts/{}", account.id),
        "/receivers".to_owned(),
        "/receivers/new".to_owned(),
        format!("/receivers/{receiver}"),
        format!("/receivers/account-options?application={a}"),
        "/messages".to_owned(),
        format!("/messages/{message}"),
        "/api-tokens".to_owned(),
    ];
    let mut ok = 0;
    for path in &pages {
        let r = b.get(path).await;
        check(path, &r);
        ok += usize::from(r.status == 200);
    }
    // Saving forms again (the secret fields come back empty) shows nothing either.
    let csrf = b.csrf().await;
    let r = b
        .post(
            &format!("/applications/{a}"),
            &[
                ("csrf", &csrf),
                ("name", "Contoso"),
                ("active", "on"),
                ("provider", "microsoft"),
                ("client_id", CLIENT_ID),
                ("tenant", "contoso.onmicrosoft.com"),
                ("endpoint_base", s.idp.base_url()),
                ("secret_expires", "not a date"),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "the form again, with the error: {}", r.body);
    assert!(r.body.contains("not a date"), "{}", r.body);
    check("an application form with an error", &r);
    let kept = s
        .app
        .store()
        .application_secret(oauthimap_types::AppId(a))
        .await
        .unwrap()
        .map(|x| x.expose_secret().to_owned());
    assert_eq!(
        kept.as_deref(),
        Some(SECRET),
        "a failed save keeps the secret"
    );
    let r = b
        .post(
            &format!("/receivers/{receiver}"),
            &[
                ("csrf", &csrf),
                ("name", "hook"),
                ("application", &a.to_string()),
                ("account", &account.id.to_string()),
                ("host", "outlook.office365.com"),
                ("port", "993"),
                ("folder", "INBOX"),
                ("sink", "webhook"),
                ("sink_target", "https://hooks.example.com/in2"),
                ("active", "on"),
            ],
        )
        .await;
    check("a saved receiver", &r);
    if r.status == 303 {
        let r = b.get(r.location()).await;
        check("the saved receiver", &r);
    }

    // Every API GET route but the token broker (whose job is to hand out the access token).
    let http = client();
    let mut walked = 0;
    for (method, template) in oauthimap_web::API_ROUTES {
        if *method != "get" || template.ends_with("/token") {
            continue;
        }
        let id = if template.starts_with("/api/v1/applications/") {
            a
        } else if template.starts_with("/api/v1/accounts/") {
            account.id.0
        } else if template.starts_with("/api/v1/receivers/") {
            receiver.0
        } else if template.starts_with("/api/v1/messages/") {
            message
        } else {
            0
        };
        let path = template.replace("{id}", &id.to_string());
        let r = http
            .get(format!("{}{path}", s.base))
            .bearer_auth(&api)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        check(
            &path,
            &Resp {
                status,
                headers,
                body,
            },
        );
        walked += 1;
    }
    assert!(walked >= 10, "walked {walked} API routes");
    assert!(ok >= 10, "{ok} pages answered 200");
    s.stop().await;
}

// --- 11. Device code and app-only from the Accounts tab ---------------------------------------

/// The Accounts tab's other two ways in: a device code shown on a page that finishes by itself
/// once the user approves at the provider, and app-only access for a mailbox. Neither page ever
/// shows a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_code_and_app_only_from_the_accounts_tab() {
    let svc = start(Backend::Sqlite, &[]).await;
    svc.idp.set_device_poll_interval(1);
    let b = svc.browser();
    b.login().await;
    let tab = b
        .get(&format!("/applications/{}/accounts", svc.application))
        .await;
    assert_eq!(tab.status, 200, "{}", tab.body);
    assert!(tab.body.contains("id=\"device-form\""), "device form shown");
    assert!(
        tab.body.contains("id=\"app-only-form\""),
        "app-only form shown"
    );
    let csrf = tab.csrf();

    let started = b
        .post(
            &format!("/applications/{}/device", svc.application),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(started.status, 303, "{}", started.body);
    let waiting_url = started.location().to_owned();
    assert!(waiting_url.starts_with(&format!("/applications/{}/device/", svc.application)));
    let waiting = b.get(&waiting_url).await;
    assert_eq!(waiting.status, 200, "{}", waiting.body);
    let marker = "id=\"user-code\">";
    let code = waiting
        .body
        .find(marker)
        .and_then(|at| waiting.body[at + marker.len()..].split('<').next())
        .map(str::to_owned)
        .expect("the page shows the user code");
    assert!(!code.is_empty());
    assert!(waiting.body.contains("id=\"verification-uri\""));
    assert!(
        svc.app.list_accounts(None).await.unwrap().is_empty(),
        "nothing is stored before the user approves"
    );

    svc.idp.approve_device(Some(&code), Some(MAILBOX)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let done = loop {
        let page = b.get(&waiting_url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        if page.body.contains("is authorized") {
            break page;
        }
        assert!(
            !page.body.contains("flash error"),
            "the device sign-in failed: {}",
            page.body
        );
        assert!(
            Instant::now() < deadline,
            "the device sign-in never finished"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(done.body.contains(MAILBOX));
    let accounts = svc.app.list_accounts(None).await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].grant_kind.as_str(), "device_code");

    // App-only: a second client allowed to open one mailbox.
    let redirect = svc.app.redirect_url().to_string();
    let mut daemon = ClientConfig::microsoft("ms-daemon", SECRET, &redirect);
    daemon.app_mailbox = Some("shared@contoso.com".into());
    svc.idp.add_client(daemon);
    let view = svc
        .app
        .add_application(&ApplicationInput {
            name: Some("Daemon".into()),
            provider: Some(Provider::Microsoft),
            client_id: Some("ms-daemon".into()),
            client_secret: Some(SecretString::from(SECRET.to_owned())),
            tenant: Some("contoso.onmicrosoft.com".into()),
            endpoint_base: Some(svc.idp.base_url().to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    let id = view.application.id.0;
    let added = b
        .post(
            &format!("/applications/{id}/app-only"),
            &[("csrf", &csrf), ("mailbox", "shared@contoso.com")],
        )
        .await;
    assert_eq!(added.status, 303, "{}", added.body);
    let tab = b.get(added.location()).await;
    assert!(
        tab.body.contains("flash success") && tab.body.contains("shared@contoso.com"),
        "{}",
        tab.body
    );
    assert!(
        tab.body.contains("App-only"),
        "grants in words: {}",
        tab.body
    );
    // No mailbox: refused with the field named, nothing stored.
    let refused = b
        .post(
            &format!("/applications/{id}/app-only"),
            &[("csrf", &csrf), ("mailbox", "")],
        )
        .await;
    assert_eq!(refused.status, 303);
    let tab = b.get(refused.location()).await;
    assert!(
        tab.body.contains("flash error") && tab.body.contains("mailbox"),
        "{}",
        tab.body
    );
    let accounts = svc.app.list_accounts(Some("Daemon")).await.unwrap();
    assert_eq!(accounts.len(), 1);
    svc.stop().await;
}

/// The application form shows every mistake at once, each next to its field, with the visible
/// labels in the banner, and saves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_form_shows_every_mistake_next_to_its_field() {
    let s = start(Backend::Sqlite, &[]).await;
    let b = s.browser();
    b.login().await;
    let csrf = b.csrf().await;
    let before = application_names(&s.app).await;
    let r = b
        .post(
            "/applications",
            &[
                ("csrf", &csrf),
                ("provider", "microsoft"),
                ("name", "99"),
                ("client_id", " "),
                ("tenant", "not a tenant"),
                ("client_secret", "typed-secret-value"),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    // The typed secret is not sent back, and the form says to type it again.
    assert!(!r.body.contains("typed-secret-value"));
    assert!(
        r.body.contains("data-field=\"client_secret\"") && r.body.contains("type it again"),
        "{}",
        r.body
    );
    for field in ["name", "client_id", "tenant"] {
        assert!(
            r.body
                .contains(&format!("class=\"field-error\" data-field=\"{field}\"")),
            "no error next to {field}: {}",
            r.body
        );
    }
    assert!(
        r.body
            .contains("3 fields need a change: Name, Client ID, Tenant ID"),
        "{}",
        r.body
    );
    assert_eq!(application_names(&s.app).await, before, "nothing saved");
    s.stop().await;
}
