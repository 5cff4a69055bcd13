//! The service as `oauthimap serve` runs it, in-process: the app core on a fresh SQLite database,
//! the web router on a loopback port, the collector's supervisor; beside it the fake identity
//! provider (one Microsoft client, one user) and a private Dovecot holding the seeded messages.

use std::path::PathBuf;

use anyhow::Context;
use oauthimap_app::Core;
use oauthimap_config::Settings;
use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions};
use oauthimap_fake_idp::{ClientConfig, FakeIdp, UserConfig};
use oauthimap_store::Backend;
use oauthimap_testkit::TestDb;
use secrecy::SecretString;

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "a long test passphrase 42";
pub const CLIENT_ID: &str = "ms-client";
pub const CLIENT_SECRET: &str = "Zq8Q~fake-client-secret.42";
pub const TENANT: &str = "contoso.onmicrosoft.com";
pub const MAILBOX: &str = "help@contoso.com";

/// Hostile header values: they must show as text and never run.
pub const HOSTILE_SUBJECT: &str = "<script>alert(1)</script>";
pub const HOSTILE_SENDER: &str = "<img src=x onerror=alert(2)>";
/// The seeded messages' subjects, hostile one last.
pub const SUBJECTS: [&str; 3] = [
    "Printer on floor 2 is jammed",
    "VPN access for the new hire",
    HOSTILE_SUBJECT,
];

#[derive(Debug)]
pub struct Service {
    pub app: Core,
    /// `http://127.0.0.1:PORT`, also the app's external base URL.
    pub base: String,
    pub idp: FakeIdp,
    pub dovecot: Dovecot,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _db: TestDb,
}

impl Service {
    pub async fn start() -> anyhow::Result<Service> {
        let db = TestDb::new(Backend::Sqlite).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
        let env = [
            (
                "OAUTHIMAP_DATA_DIR",
                db.dir.path().join("data").display().to_string(),
            ),
            ("OAUTHIMAP_DATABASE_URL", db.url.clone()),
            ("OAUTHIMAP_EXTERNAL_BASE_URL", base.clone()),
            ("OAUTHIMAP_TOKENS__HTTP_TIMEOUT_SECS", "5".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        let settings = Settings::load_from(None, env).context("settings")?;
        let app = Core::open(settings).await.context("open the app")?;
        app.create_admin(ADMIN, &SecretString::from(ADMIN_PASSWORD))
            .await
            .context("create the admin user")?;

        let idp = FakeIdp::start().await.context("start the fake IdP")?;
        idp.add_client(ClientConfig::microsoft(
            CLIENT_ID,
            CLIENT_SECRET,
            &format!("{base}/oauth/callback"),
        ));
        idp.add_user(UserConfig::new(MAILBOX, "Helpdesk"));
        idp.set_default_user(MAILBOX);

        let dovecot = Dovecot::start(DovecotOptions::new(idp.introspection_url()))
            .await
            .context("start Dovecot")?;
        for (i, raw) in seed_messages().iter().enumerate() {
            dovecot
                .deliver(MAILBOX, raw)
                .with_context(|| format!("deliver seed message {i}"))?;
        }

        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let router = oauthimap_web::router(app.clone());
        let mut server_stop = stop_rx.clone();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = server_stop.wait_for(|s| *s).await;
            };
            if let Err(e) = oauthimap_web::serve_on(listener, router, shutdown).await {
                eprintln!("the web server stopped: {e}");
            }
        });
        let collector = tokio::spawn(app.collector().clone().supervise(stop_rx));
        Ok(Service {
            app,
            base,
            idp,
            dovecot,
            stop,
            tasks: vec![server, collector],
            _db: db,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dovecot.ca_pem_path().clone()
    }

    /// Stops the collector and the web server, waiting for both.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        }
        self.app.close().await;
    }
}

/// Two ordinary tickets and one with a hostile subject, sender name and HTML body.
fn seed_messages() -> Vec<Vec<u8>> {
    let plain = |i: usize, subject: &str| {
        format!(
            "From: Sender {i} <sender{i}@example.com>\r\nTo: {MAILBOX}\r\nSubject: {subject}\r\n\
             Message-ID: <seed{i}@example.com>\r\nDate: Sat, 28 Nov 2026 10:0{i}:00 +0000\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nBody of message {i}.\r\n"
        )
        .into_bytes()
    };
    let hostile = format!(
        "From: \"{HOSTILE_SENDER}\" <evil@example.com>\r\nTo: {MAILBOX}\r\nSubject: {HOSTILE_SUBJECT}\r\n\
         Message-ID: <seed-hostile@example.com>\r\nDate: Sat, 28 Nov 2026 10:09:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease click.\r\n\
         --b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p>Please click.</p><script>alert(3)</script><img src=x onerror=alert(4)>\r\n--b1--\r\n"
    )
    .into_bytes();
    vec![plain(1, SUBJECTS[0]), plain(2, SUBJECTS[1]), hostile]
}
