//! The fixtures and oauthimap's own setup, as an admin would do it (and as `crates/cli/tests/crash.rs`
//! does): an application pointing at the fake identity provider, a browser sign-in per mailbox
//! (the provider consents at once), and receivers over implicit TLS trusting the fixture's CA.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use oauthimap_app::{ApplicationInput, CallbackParams, Core, ReceiverInput};
use oauthimap_config::Settings;
use oauthimap_dovecot_fixture::Dovecot;
use oauthimap_fake_idp::{ClientConfig, FakeIdp, UserConfig};
use oauthimap_types::{AfterDelivery, Provider, Security, SinkKind, Trigger};
use secrecy::SecretString;

pub const CLIENT_ID: &str = "bench-client";
const CLIENT_SECRET: &str = "bench-secret-value";
/// Never contacted: the sign-in is finished by calling the core, not the web callback.
const EXTERNAL_BASE: &str = "http://127.0.0.1:9/";

/// The environment of an `oauthimap` process using the data folder `data`.
pub fn oauthimap_env(data: &Path) -> Vec<(String, String)> {
    vec![
        ("OAUTHIMAP_DATA_DIR".into(), data.display().to_string()),
        ("OAUTHIMAP_EXTERNAL_BASE_URL".into(), EXTERNAL_BASE.into()),
    ]
}

/// Registers the benchmark's OAuth client and its users at the fake identity provider.
pub fn register(idp: &FakeIdp, users: &[&str]) {
    idp.add_client(ClientConfig::microsoft(
        CLIENT_ID,
        CLIENT_SECRET,
        &format!("{EXTERNAL_BASE}oauth/callback"),
    ));
    for &user in users {
        idp.add_user(UserConfig::new(user, user));
    }
}

/// A receiver to create: name, mailbox, sink and (for a maildir) its folder.
#[derive(Debug, Clone)]
pub struct ReceiverSpec {
    pub name: String,
    pub user: String,
    pub sink: SinkKind,
    pub maildir: Option<PathBuf>,
}

/// Creates an oauthimap data folder with the application, one authorized account per user and
/// the given receivers (post-action: mark seen).
pub async fn data_folder(
    idp: &FakeIdp,
    dovecot: &Dovecot,
    data: &Path,
    users: &[&str],
    receivers: &[ReceiverSpec],
) -> Result<()> {
    let app = Core::open(Settings::load_from(None, oauthimap_env(data))?)
        .await
        .context("open the oauthimap data folder")?;
    add_application(&app, idp).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    for user in users {
        sign_in(&app, &http, user).await?;
    }
    for r in receivers {
        app.create_receiver(&ReceiverInput {
            name: Some(r.name.clone()),
            application: Some("Bench".into()),
            account: Some(r.user.clone()),
            host: Some("localhost".into()),
            port: Some(dovecot.imaps_port()),
            security: Some(Security::Tls),
            ca_file: Some(dovecot.ca_pem_path().display().to_string()),
            trigger: Some(Trigger::Poll),
            after_delivery: Some(AfterDelivery::MarkSeen),
            sink: Some(r.sink),
            sink_target: r.maildir.as_ref().map(|p| p.display().to_string()),
            ..Default::default()
        })
        .await
        .map(|(receiver, _)| receiver)
        .with_context(|| format!("add the receiver {}", r.name))?;
    }
    app.close().await;
    Ok(())
}

/// The application "Bench" at the fake identity provider.
pub async fn add_application(app: &Core, idp: &FakeIdp) -> Result<()> {
    app.add_application(&ApplicationInput {
        name: Some("Bench".into()),
        provider: Some(Provider::Microsoft),
        client_id: Some(CLIENT_ID.into()),
        client_secret: Some(SecretString::from(CLIENT_SECRET.to_owned())),
        tenant: Some("contoso.onmicrosoft.com".into()),
        endpoint_base: Some(idp.base_url().to_owned()),
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Our sign-in URL -> the provider (consents at once for `login_hint`) -> the callback's query.
pub async fn sign_in(app: &Core, http: &reqwest::Client, user: &str) -> Result<()> {
    let start = app.start_sign_in("Bench", None, Some(user)).await?;
    let answer = http.get(&start.url).send().await?;
    let back = answer
        .headers()
        .get("location")
        .ok_or_else(|| anyhow!("the provider did not redirect back ({})", answer.status()))?
        .to_str()?
        .to_owned();
    let query: HashMap<String, String> =
        url::Url::parse(&back)?.query_pairs().into_owned().collect();
    let account = app
        .finish_sign_in(&CallbackParams {
            code: query.get("code").cloned(),
            state: query.get("state").cloned(),
            ..Default::default()
        })
        .await
        .with_context(|| format!("authorize {user}"))?;
    let _ = account;
    Ok(())
}

/// Messages in the built-in store of a data folder.
pub async fn store_count(data: &Path) -> Result<i64> {
    let app = Core::open(Settings::load_from(None, oauthimap_env(data))?).await?;
    let n = app.message_count().await?;
    app.close().await;
    Ok(n)
}

/// Dovecot's limits raised for a thousand sessions of one user (the fixture's defaults suit tests).
pub const DOVECOT_LIMITS: &str = oauthimap_dovecot_fixture::MANY_SESSIONS_CONFIG;

/// A loopback port free now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The resident set of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")
}

/// Prints a benchmark's report and saves it to `out`.
pub fn save_report(report: &str, out: &Path) -> Result<()> {
    println!("{report}");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, report).with_context(|| format!("write {}", out.display()))?;
    eprintln!("saved to {}", out.display());
    Ok(())
}
