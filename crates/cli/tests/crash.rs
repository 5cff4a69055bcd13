//! Crash safety of the real binary: `oauthimap collect --once` is killed with SIGKILL at many
//! random points across a run and restarted; the built-in store and a maildir end with exactly
//! the mailbox's messages, none missing, none twice.
#![allow(clippy::too_many_lines)] // one story: set up, kill many times, count

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oauthimap_app::{ApplicationInput, CallbackParams, Core, ReceiverInput};
use oauthimap_config::Settings;
use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions};
use oauthimap_fake_idp::{ClientConfig, FakeIdp, UserConfig};
use oauthimap_types::{Provider, Security, SinkKind, Trigger};
use secrecy::SecretString;

const N: usize = 300;
const USER: &str = "help@contoso.com";

fn env(dir: &Path) -> Vec<(String, String)> {
    vec![
        (
            "OAUTHIMAP_DATA_DIR".into(),
            dir.join("data").display().to_string(),
        ),
        (
            "OAUTHIMAP_EXTERNAL_BASE_URL".into(),
            "http://127.0.0.1:9/".into(),
        ),
        (
            "OAUTHIMAP_SINKS__MAILDIR_ROOTS".into(),
            format!("[{:?}]", dir.display().to_string()),
        ),
    ]
}

fn collect(dir: &Path, receiver: &str) -> std::process::Child {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("oauthimap"));
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("OAUTHIMAP_") {
            cmd.env_remove(key);
        }
    }
    // An oauthimap installed on this machine (/etc/oauthimap/oauthimap.toml) is not ours.
    cmd.env("OAUTHIMAP_CONFIG", "/dev/null");
    cmd.envs(env(dir))
        .args(["collect", "--once", "--receiver", receiver])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A tiny deterministic generator, seeded from the clock (the seed is printed to reproduce).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_duplicates_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let idp = FakeIdp::start().await.unwrap();
    idp.add_client(ClientConfig::microsoft(
        "crash-client",
        "s3cret-value",
        "http://127.0.0.1:9/oauth/callback",
    ));
    idp.add_user(UserConfig::new(USER, "Help"));
    idp.set_default_user(USER);
    let dovecot = Dovecot::start(DovecotOptions::new(idp.introspection_url()))
        .await
        .unwrap();
    for i in 0..N {
        let raw = format!(
            "From: s{i}@example.com\r\nSubject: crash {i}\r\nMessage-ID: <c{i}@example.com>\r\n\r\nbody {i}\r\n"
        );
        dovecot.deliver(USER, raw.as_bytes()).unwrap();
    }

    // Set up with the core, as the admin would with the CLI.
    let app = Core::open(Settings::load_from(None, env(d)).unwrap())
        .await
        .unwrap();
    app.add_application(&ApplicationInput {
        name: Some("Contoso".into()),
        provider: Some(Provider::Microsoft),
        client_id: Some("crash-client".into()),
        client_secret: Some(SecretString::from("s3cret-value".to_owned())),
        tenant: Some("contoso.onmicrosoft.com".into()),
        endpoint_base: Some(idp.base_url().to_owned()),
        ..Default::default()
    })
    .await
    .unwrap();
    let start = app.start_sign_in("Contoso", None, None).await.unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = http.get(&start.url).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let query: std::collections::HashMap<String, String> = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    app.finish_sign_in(&CallbackParams {
        code: Some(query["code"].clone()),
        state: Some(query["state"].clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let maildir = d.join("Maildir");
    for (name, sink, target) in [
        ("store", SinkKind::Store, None),
        (
            "maildir",
            SinkKind::Maildir,
            Some(maildir.display().to_string()),
        ),
    ] {
        app.create_receiver(&ReceiverInput {
            name: Some(name.into()),
            application: Some("Contoso".into()),
            account: Some(USER.into()),
            host: Some("localhost".into()),
            port: Some(dovecot.imaps_port()),
            security: Some(Security::Tls),
            ca_file: Some(dovecot.ca_pem_path().display().to_string()),
            trigger: Some(Trigger::Poll),
            sink: Some(sink),
            sink_target: target,
            ..Default::default()
        })
        .await
        .map(|(receiver, _)| receiver)
        .unwrap();
    }
    app.close().await;

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        & u128::from(u64::MAX);
    let seed = u64::try_from(seed).unwrap_or(1);
    println!("crash test seed {seed}");
    let mut rng = Lcg(seed);
    for receiver in ["store", "maildir"] {
        let mut kills = 0;
        let started = Instant::now();
        loop {
            let mut child = collect(d, receiver);
            if kills < 12 {
                tokio::time::sleep(Duration::from_millis(20 + rng.next(350))).await;
                if child.try_wait().unwrap().is_none() {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    kills += 1;
                    continue;
                }
            }
            let status = child.wait().unwrap();
            assert!(status.success(), "the final run of {receiver} succeeds");
            break;
        }
        assert!(started.elapsed() < Duration::from_mins(5));
        println!("{receiver}: killed {kills} time(s)");
    }

    let app = Core::open(Settings::load_from(None, env(d)).unwrap())
        .await
        .unwrap();
    let messages = app.list_messages(None, None, 1000).await.unwrap();
    let subjects: HashSet<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(messages.len(), N, "the store holds each message once");
    assert_eq!(subjects.len(), N, "and every one of them");
    let files: Vec<_> = std::fs::read_dir(maildir.join("new")).unwrap().collect();
    assert_eq!(files.len(), N, "the maildir holds each message once");
    let inbox = dovecot.list_messages(USER, "INBOX").await.unwrap();
    assert!(
        inbox.iter().all(|m| m.flags.iter().any(|f| f == "\\Seen")),
        "every post-action ran"
    );
    app.close().await;
    dovecot.stop().await.unwrap();
}
