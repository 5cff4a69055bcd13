//! The shared harness of the OAuth tests: our service's routes on a loopback port, the fake
//! identity provider with Microsoft and Google clients, and a Microsoft application.
#![allow(dead_code)] // each test binary uses a different part

use oauthimap_app::{ApplicationInput, Core};
use oauthimap_config::Settings;
use oauthimap_fake_idp::{ClientConfig, FakeIdp, UserConfig};
use oauthimap_store::Backend;
use oauthimap_testkit::TestDb;
use oauthimap_types::{Provider, TokenSet, now_millis};
use secrecy::SecretString;

pub const SECRET: &str = "Zq8Q~fake-client-secret.42";
pub const USER: &str = "help@contoso.com";

/// Our service (callback route) on a loopback port, the fake provider, and an application.
pub struct Harness {
    pub app: Core,
    pub idp: FakeIdp,
    pub t: TestDb,
    _server: tokio::task::JoinHandle<()>,
    pub http: reqwest::Client,
}

pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn harness(backend: Backend, extra_env: &[(&str, String)]) -> Harness {
    let t = TestDb::new(backend).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let mut env = vec![
        (
            "OAUTHIMAP_DATA_DIR".to_owned(),
            t.dir.path().join("data").display().to_string(),
        ),
        ("OAUTHIMAP_DATABASE_URL".to_owned(), t.url.clone()),
        ("OAUTHIMAP_EXTERNAL_BASE_URL".to_owned(), base.clone()),
        (
            "OAUTHIMAP_TOKENS__HTTP_TIMEOUT_SECS".to_owned(),
            "2".to_owned(),
        ),
        // The tests' webhook receivers listen on loopback.
        (
            "OAUTHIMAP_OUTBOUND__ALLOWED_NETWORKS".to_owned(),
            r#"["127.0.0.0/8", "::1"]"#.to_owned(),
        ),
        // Their command sinks and maildirs are the operator's choice on a test host.
        (
            "OAUTHIMAP_SINKS__COMMAND_ENABLED".to_owned(),
            "true".to_owned(),
        ),
        (
            "OAUTHIMAP_SINKS__MAILDIR_ROOTS".to_owned(),
            format!("[{:?}]", std::env::temp_dir().display().to_string()),
        ),
    ];
    env.extend(extra_env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let app = Core::open(Settings::load_from(None, env).unwrap())
        .await
        .unwrap();
    let router = oauthimap_web::router(app.clone());
    let server = tokio::spawn(async move {
        let _ = oauthimap_web::serve_on(listener, router, std::future::pending()).await;
    });
    let idp = FakeIdp::start().await.unwrap();
    let redirect = format!("{base}/oauth/callback");
    idp.add_client(ClientConfig::microsoft("ms-client", SECRET, &redirect));
    idp.add_client(ClientConfig::google(
        "g-client.apps.googleusercontent.com",
        SECRET,
        &redirect,
    ));
    let mut app_only = ClientConfig::microsoft("ms-daemon", SECRET, &redirect);
    app_only.app_mailbox = Some("shared@contoso.com".into());
    idp.add_client(app_only);
    idp.add_user(UserConfig::new(USER, "Helpdesk"));
    idp.add_user(UserConfig::new("ann@gmail.com", "Ann"));
    idp.set_default_user(USER);
    let ms = ApplicationInput {
        name: Some("Contoso".into()),
        provider: Some(Provider::Microsoft),
        client_id: Some("ms-client".into()),
        client_secret: Some(SecretString::from(SECRET.to_owned())),
        tenant: Some("contoso.onmicrosoft.com".into()),
        endpoint_base: Some(idp.base_url().to_owned()),
        ..Default::default()
    };
    app.add_application(&ms).await.unwrap();
    Harness {
        app,
        idp,
        t,
        _server: server,
        http: http(),
    }
}

impl Harness {
    /// Runs a browser sign-in: our URL -> provider (auto-consent) -> 302 to our callback -> page.
    pub async fn sign_in(&self, application: &str, mailbox: Option<&str>) -> (u16, String) {
        let start = self
            .app
            .start_sign_in(application, mailbox, None)
            .await
            .unwrap();
        let to_provider = self.http.get(&start.url).send().await.unwrap();
        assert_eq!(
            to_provider.status().as_u16(),
            302,
            "the provider redirects back"
        );
        let back = to_provider.headers()["location"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(back.starts_with(self.app.redirect_url().as_str()), "{back}");
        let page = self.http.get(&back).send().await.unwrap();
        (page.status().as_u16(), page.text().await.unwrap())
    }

    pub async fn expire_stored_token(&self, account: oauthimap_types::AccountId) {
        self.app
            .store()
            .store_refreshed(
                account,
                &TokenSet {
                    access_token: SecretString::from("stale".to_owned()),
                    expires_at: now_millis() - 1000,
                    refresh_token: None,
                    scopes: String::new(),
                },
            )
            .await
            .unwrap();
    }
}

/// The gateway's listeners (IMAP, POP3 and SMTP submission, each with STARTTLS and with
/// implicit TLS) on loopback ports, serving `app`.
pub struct RunningGateway {
    pub imap: std::net::SocketAddr,
    pub imaps: std::net::SocketAddr,
    pub pop3: std::net::SocketAddr,
    pub pop3s: std::net::SocketAddr,
    pub submission: std::net::SocketAddr,
    pub submissions: std::net::SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts the gateway with this certificate and key (PEM files).
pub async fn start_gateway(
    app: &Core,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
) -> RunningGateway {
    let config = oauthimap_app::GatewayConfig {
        imap: Some("127.0.0.1:0".parse().unwrap()),
        imaps: Some("127.0.0.1:0".parse().unwrap()),
        pop3: Some("127.0.0.1:0".parse().unwrap()),
        pop3s: Some("127.0.0.1:0".parse().unwrap()),
        submission: Some("127.0.0.1:0".parse().unwrap()),
        submissions: Some("127.0.0.1:0".parse().unwrap()),
        tls: Some(oauthimap_app::TlsFiles { cert, key }),
        trusted_networks: Vec::new(),
        max_sessions: 100,
        login_timeout: std::time::Duration::from_secs(30),
        upstream_timeout: std::time::Duration::from_secs(3),
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let app = app.clone();
    let task = tokio::spawn(async move {
        app.serve_gateway(
            config,
            |bound| {
                let _ = bound_tx.send(bound.to_vec());
            },
            stop_rx,
        )
        .await
        .unwrap();
    });
    let bound = bound_rx.await.unwrap();
    let addr = |name: &str| bound.iter().find(|(n, _)| n == name).unwrap().1;
    RunningGateway {
        imap: addr("imap"),
        imaps: addr("imaps"),
        pop3: addr("pop3"),
        pop3s: addr("pop3s"),
        submission: addr("submission"),
        submissions: addr("submissions"),
        stop,
        task,
    }
}

impl RunningGateway {
    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Every log line of this test process, at every level (nextest runs each test in a process of
/// its own, so one capture sees one test).
#[derive(Clone, Default)]
pub struct Capture(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Installs a TRACE-level subscriber writing into the returned capture.
pub fn capture_all_logs() -> Capture {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    capture
}
