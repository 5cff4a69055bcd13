//! Three real `oauthimap serve` processes on one PostgreSQL database share the receivers of a
//! real Dovecot while mail keeps arriving: they spread the receivers, one is killed with SIGKILL,
//! another is frozen with SIGSTOP past its lease and thawed. At the end every message that
//! arrived is in the store exactly once, with one ledger row each.
#![allow(clippy::too_many_lines)] // the run reads best as one story

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oauthimap_app::{ApplicationInput, CallbackParams, Core, ReceiverInput};
use oauthimap_config::Settings;
use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions};
use oauthimap_fake_idp::{ClientConfig, FakeIdp, UserConfig};
use oauthimap_testkit::TestDb;
use oauthimap_types::{Provider, Security, Trigger};
use secrecy::SecretString;

mod common;
use common::oauthimap;

const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const SECRET: &str = "fleet-client-secret";
const BASE: &str = "http://127.0.0.1:9/";
/// Receivers (one mailbox each): 12 in the suite; `FLEET_RECEIVERS=300` for the run in
/// bench/README.md (Dovecot's limits are raised past 50).
fn receivers() -> usize {
    std::env::var("FLEET_RECEIVERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(12)
}

/// The receivers' lease time: a dead or frozen instance loses them after this.
const TTL_SECS: u64 = 3;

fn message(i: usize) -> Vec<u8> {
    format!(
        "From: Sender {i} <sender{i}@example.com>\r\nTo: help@example.com\r\nSubject: Fleet {i}\r\n\
         Message-ID: <fleet{i}@example.com>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\nBody {i}.\r\n"
    )
    .into_bytes()
}

/// Polls `check` every 250 ms until it holds, or fails after `within` saying what it waited for
/// and what it saw last.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(()) => {
                // The run's figures (bench/README.md quotes a 300-receiver run).
                eprintln!(
                    "fleet: {what} after {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            Err(seen) if started.elapsed() > within => {
                panic!("{what} within {within:?}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Receiver leases held now, per serve process id.
async fn held(t: &TestDb) -> BTreeMap<u32, usize> {
    let oauthimap_store::Db::Postgres(pool) = &t.db else {
        unreachable!()
    };
    let now = oauthimap_types::now_millis();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT holder, COUNT(*) FROM leases WHERE name LIKE 'receiver:%' AND expires_at > $1 GROUP BY holder",
    )
    .bind(now)
    .fetch_all(pool)
    .await
    .unwrap();
    // Instance names are HOST-PID-RANDOM.
    rows.into_iter()
        .filter_map(|(holder, n)| {
            let mut parts = holder.rsplitn(3, '-');
            let (_, pid) = (parts.next()?, parts.next()?);
            Some((pid.parse().ok()?, usize::try_from(n).ok()?))
        })
        .collect()
}

fn spread(held: &BTreeMap<u32, usize>, instances: &[u32]) -> Result<(), String> {
    let total: usize = held.values().sum();
    let n = receivers();
    let cap = n.div_ceil(instances.len()) + 1;
    if total == n
        && held.keys().all(|pid| instances.contains(pid))
        && held.values().all(|n| *n <= cap)
    {
        Ok(())
    } else {
        Err(format!(
            "{held:?} (want {n} over {instances:?}, at most {cap} each)"
        ))
    }
}

fn serve(t: &TestDb, n: usize) -> Child {
    let data = t.dir.path().join(format!("instance{n}"));
    std::fs::create_dir_all(&data).unwrap();
    let log = std::fs::File::create(t.dir.path().join(format!("instance{n}.log"))).unwrap();
    oauthimap(t.dir.path())
        .arg("serve")
        .env("OAUTHIMAP_DATA_DIR", &data)
        .env("OAUTHIMAP_DATABASE_URL", &t.url)
        .env("OAUTHIMAP_MASTER_KEY", MASTER_KEY)
        .env("OAUTHIMAP_EXTERNAL_BASE_URL", BASE)
        .env("OAUTHIMAP_LISTEN", "127.0.0.1:0")
        .env("OAUTHIMAP_COLLECTOR__LEASE_TTL", format!("{TTL_SECS}s"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The `serve` processes, ended when a failed assertion leaves any running (a process not yet
/// waited for still owns its pid, so it is safe to signal).
struct Instances(Vec<Child>);

impl std::ops::Deref for Instances {
    type Target = Vec<Child>;
    fn deref(&self) -> &Vec<Child> {
        &self.0
    }
}

impl std::ops::DerefMut for Instances {
    fn deref_mut(&mut self) -> &mut Vec<Child> {
        &mut self.0
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn signal(child: &Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_serve_processes_share_receivers_through_kill_and_freeze_losing_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let t = TestDb::new(oauthimap_store::Backend::Postgres).await;
    let idp = FakeIdp::start().await.unwrap();
    idp.add_client(ClientConfig::microsoft(
        "fleet-client",
        SECRET,
        &format!("{BASE}oauth/callback"),
    ));
    let mut options = DovecotOptions::new(idp.introspection_url());
    if receivers() > 50 {
        options.extra_config = oauthimap_dovecot_fixture::MANY_SESSIONS_CONFIG.to_owned();
    }
    let dovecot = Arc::new(Dovecot::start(options).await.unwrap());

    // The core on the same database sets up the application, the accounts and the receivers.
    let app = Core::open(
        Settings::load_from(
            None,
            [
                (
                    "OAUTHIMAP_DATA_DIR",
                    t.dir.path().join("setup").display().to_string(),
                ),
                ("OAUTHIMAP_DATABASE_URL", t.url.clone()),
                ("OAUTHIMAP_MASTER_KEY", MASTER_KEY.to_owned()),
                ("OAUTHIMAP_EXTERNAL_BASE_URL", BASE.to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    app.add_application(&ApplicationInput {
        name: Some("Contoso".into()),
        provider: Some(Provider::Microsoft),
        client_id: Some("fleet-client".into()),
        client_secret: Some(SecretString::from(SECRET.to_owned())),
        tenant: Some("contoso.onmicrosoft.com".into()),
        endpoint_base: Some(idp.base_url().to_owned()),
        ..Default::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let users: Vec<String> = (0..receivers())
        .map(|i| format!("fleet{i}@contoso.com"))
        .collect();
    for user in &users {
        idp.add_user(UserConfig::new(user, user));
        idp.set_default_user(user);
        let start = app
            .start_sign_in("Contoso", Some(user), None)
            .await
            .unwrap();
        let back = http.get(&start.url).send().await.unwrap().headers()["location"]
            .to_str()
            .unwrap()
            .to_owned();
        let back = url::Url::parse(&back).unwrap();
        let param = |k: &str| {
            back.query_pairs()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.into_owned())
        };
        app.finish_sign_in(&CallbackParams {
            code: param("code"),
            state: param("state"),
            error: None,
            error_description: None,
        })
        .await
        .unwrap();
        app.create_receiver(&ReceiverInput {
            name: Some(format!("r-{user}")),
            application: Some("Contoso".into()),
            account: Some(user.clone()),
            host: Some("localhost".into()),
            port: Some(dovecot.imaps_port()),
            security: Some(Security::Tls),
            ca_file: Some(dovecot.ca_pem_path().display().to_string()),
            trigger: Some(Trigger::Idle),
            ..Default::default()
        })
        .await
        .map(|(receiver, _)| receiver)
        .unwrap();
    }

    // Mail arrives all the time, in every mailbox in turn; `sent` is the manifest.
    let sent = Arc::new(Mutex::new(Vec::<usize>::new()));
    let (stop_mail, mut mail_stopped) = tokio::sync::watch::channel(false);
    let mail = {
        let (sent, users, dovecot_users) = (sent.clone(), users.clone(), dovecot.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !*mail_stopped.borrow() {
                dovecot_users
                    .deliver(&users[i % users.len()], &message(i))
                    .unwrap();
                sent.lock().unwrap().push(i);
                i += 1;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(150)) => {}
                    _ = mail_stopped.changed() => {}
                }
            }
        })
    };

    // Three instances spread the receivers.
    let mut instances = Instances((1..=3).map(|n| serve(&t, n)).collect());
    let pids: Vec<u32> = instances.iter().map(Child::id).collect();
    eventually(
        Duration::from_mins(1),
        "the receivers spread over three",
        || {
            let t = &t;
            let pids = pids.clone();
            async move { spread(&held(t).await, &pids) }
        },
    )
    .await;

    // SIGKILL the third: the other two take its receivers within the lease time and a look.
    signal(&instances[2], "-KILL");
    let _ = instances[2].wait();
    eventually(
        Duration::from_mins(1),
        "the killed instance's receivers taken over by the two others",
        || {
            let t = &t;
            let pids = pids[..2].to_vec();
            async move { spread(&held(t).await, &pids) }
        },
    )
    .await;

    // Freeze the second past its lease: the first takes everything; thawed, the second has
    // lost what it held (its fence is stale), then takes its share back.
    signal(&instances[1], "-STOP");
    eventually(
        Duration::from_mins(1),
        "the frozen instance's receivers taken over by the first",
        || {
            let t = &t;
            let pids = pids[..1].to_vec();
            async move { spread(&held(t).await, &pids) }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(TTL_SECS)).await;
    signal(&instances[1], "-CONT");
    eventually(
        Duration::from_mins(1),
        "the thawed instance back with its share",
        || {
            let t = &t;
            let pids = pids[..2].to_vec();
            async move {
                let h = held(t).await;
                spread(&h, &pids)?;
                if h.len() == 2 {
                    Ok(())
                } else {
                    Err(format!("{h:?}: only one instance holds receivers"))
                }
            }
        },
    )
    .await;

    // Mail stops; everything that arrived is delivered, each message once.
    stop_mail.send(true).unwrap();
    mail.await.unwrap();
    let manifest: HashSet<String> = sent
        .lock()
        .unwrap()
        .iter()
        .map(|i| format!("fleet{i}@example.com"))
        .collect();
    assert!(
        manifest.len() > 50,
        "mail kept arriving: {}",
        manifest.len()
    );
    eprintln!(
        "fleet: {} receivers, {} messages sent while instances were killed and frozen",
        receivers(),
        manifest.len()
    );
    eventually(Duration::from_mins(1), "every message delivered", || {
        let app = app.clone();
        let want = manifest.len();
        async move {
            let n = usize::try_from(app.store().message_count().await.unwrap()).unwrap();
            if n == want {
                Ok(())
            } else {
                Err(format!("{n} of {want} in the store"))
            }
        }
    })
    .await;
    let stored = app.store().messages(None, None, 10_000).await.unwrap();
    let ids: Vec<String> = stored
        .iter()
        .filter_map(|m| {
            m.message_id
                .as_deref()
                .map(|id| id.trim_matches(['<', '>']).to_owned())
        })
        .collect();
    let distinct: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), distinct.len(), "a message stored twice");
    assert_eq!(distinct, manifest, "the store holds exactly what arrived");
    let ledger = app.store().ledger(None, None, 10_000).await.unwrap();
    assert_eq!(ledger.len(), manifest.len(), "one ledger row per message");
    assert!(
        ledger
            .iter()
            .all(|e| e.status == oauthimap_store::LedgerStatus::Delivered),
        "every message delivered"
    );

    for child in &mut instances[..2] {
        signal(child, "-TERM");
        assert!(child.wait().unwrap().success(), "a clean stop");
    }
    Arc::try_unwrap(dovecot)
        .expect("the mail task is done")
        .stop()
        .await
        .unwrap();
    t.cleanup().await;
}
