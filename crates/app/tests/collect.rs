//! The collector against a real Dovecot (tokens checked through the fake identity provider):
//! every sink gets every message exactly once, post-actions land on the server, IDLE delivers
//! within seconds, faults (Dovecot restart, short-lived tokens, a failing webhook) heal, and
//! hostile messages are refused or stored safely.
#![allow(clippy::too_many_lines)] // each test reads best as one story

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oauthimap_app::{Core, ReceiverInput};
use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions};
use oauthimap_fake_idp::UserConfig;
use oauthimap_store::{Backend, LedgerStatus};
use oauthimap_types::{AfterDelivery, Security, SinkKind, Trigger};

mod common;
use common::{Harness, harness};

fn message(i: usize) -> Vec<u8> {
    format!(
        "From: Sender {i} <sender{i}@example.com>\r\nTo: help@example.com\r\nSubject: Ticket {i}\r\n\
         Message-ID: <m{i}@example.com>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\nBody of message {i}.\r\n"
    )
    .into_bytes()
}

/// A user at the provider and in Dovecot, authorized, with a receiver over implicit TLS.
async fn receiver_for(h: &Harness, dovecot: &Dovecot, user: &str, input: ReceiverInput) -> String {
    h.idp.add_user(UserConfig::new(user, user));
    h.idp.set_default_user(user);
    let (status, page) = h.sign_in("Contoso", None).await;
    assert_eq!(status, 200, "{page}");
    let name = input.name.clone().unwrap_or_else(|| format!("r-{user}"));
    h.app
        .create_receiver(&ReceiverInput {
            name: Some(name.clone()),
            application: Some("Contoso".into()),
            account: Some(user.into()),
            host: Some("localhost".into()),
            port: Some(dovecot.imaps_port()),
            security: Some(Security::Tls),
            ca_file: Some(dovecot.ca_pem_path().display().to_string()),
            trigger: Some(Trigger::Poll),
            ..input
        })
        .await
        .map(|(receiver, _)| receiver)
        .unwrap();
    name
}

async fn once(app: &Core, name: &str) -> oauthimap_app::CollectOutcome {
    let mut outcomes = app
        .collect_once(Some(name), Duration::ZERO, &|_, _| {})
        .await
        .unwrap();
    outcomes.remove(0)
}

/// One webhook request: timestamp and signature headers, body.
type Hook = (String, String, Vec<u8>);

/// A webhook receiver that records idempotency keys and can fail its first answers.
async fn webhook(fail_first: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    let (url, seen, _) = signed_webhook(fail_first).await;
    (url, seen)
}

/// The same, also keeping every request's signature headers and body.
async fn signed_webhook(
    fail_first: usize,
) -> (String, Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<Hook>>>) {
    use axum::routing::post;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(fail_first));
    let (s, f, r) = (seen.clone(), failures.clone(), requests.clone());
    let handler = move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
        let (s, f, r) = (s.clone(), f.clone(), r.clone());
        async move {
            if f.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                f.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
            }
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let key = headers["idempotency-key"].to_str().unwrap().to_owned();
            assert_eq!(v["idempotency_key"], key.as_str());
            let header = |n: &str| {
                headers
                    .get(n)
                    .map(|h| h.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            r.lock().unwrap().push((
                header("x-oauthimap-timestamp"),
                header("x-oauthimap-signature"),
                body.to_vec(),
            ));
            s.lock().unwrap().push(key);
            axum::http::StatusCode::OK
        }
    };
    let router = axum::Router::new().route("/hook", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, seen, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_into_every_sink_exactly_once() {
    const N: usize = 1000;
    let h = harness(Backend::Sqlite, &[]).await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    let users = [
        "store@contoso.com",
        "maildir@contoso.com",
        "hook@contoso.com",
        "cmd@contoso.com",
    ];
    for user in users {
        for i in 0..N {
            dovecot.deliver(user, &message(i)).unwrap();
        }
    }
    let out = tempfile::tempdir().unwrap();
    let maildir = out.path().join("Maildir");
    let cmd_dir = out.path().join("cmd");
    std::fs::create_dir_all(&cmd_dir).unwrap();
    let (hook_url, hook_seen) = webhook(0).await;

    let store = receiver_for(
        &h,
        &dovecot,
        users[0],
        ReceiverInput {
            name: Some("store".into()),
            ..Default::default()
        },
    )
    .await;
    let maildir_r = receiver_for(
        &h,
        &dovecot,
        users[1],
        ReceiverInput {
            name: Some("maildir".into()),
            sink: Some(SinkKind::Maildir),
            sink_target: Some(maildir.display().to_string()),
            after_delivery: Some(AfterDelivery::Move),
            accepted_folder: Some("Processed".into()),
            ..Default::default()
        },
    )
    .await;
    let hook = receiver_for(
        &h,
        &dovecot,
        users[2],
        ReceiverInput {
            name: Some("hook".into()),
            sink: Some(SinkKind::Webhook),
            sink_target: Some(hook_url),
            after_delivery: Some(AfterDelivery::Delete),
            ..Default::default()
        },
    )
    .await;
    let cmd = receiver_for(
        &h,
        &dovecot,
        users[3],
        ReceiverInput {
            name: Some("cmd".into()),
            sink: Some(SinkKind::Command),
            sink_target: Some(format!(
                "cat > {}/\"$OAUTHIMAP_IDEMPOTENCY_KEY\".eml",
                cmd_dir.display()
            )),
            ..Default::default()
        },
    )
    .await;

    for name in [&store, &maildir_r, &hook, &cmd] {
        let o = once(&h.app, name).await;
        assert_eq!(o.error, None, "{name}");
        assert_eq!(
            (o.summary.available, o.summary.delivered, o.summary.failed),
            (N as u64, N as u64, 0),
            "{name}: {o:?}"
        );
        // A second pass finds nothing new.
        let again = once(&h.app, name).await;
        assert_eq!(
            (again.summary.available, again.summary.delivered),
            (0, 0),
            "{name}"
        );
    }

    // The built-in store: every message once, all marked seen on the server.
    assert_eq!(h.app.store().message_count().await.unwrap(), N as i64);
    let subjects: HashSet<String> = h
        .app
        .list_messages(None, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(subjects.len(), N);
    let inbox = dovecot.list_messages(users[0], "INBOX").await.unwrap();
    assert_eq!(inbox.len(), N);
    assert!(inbox.iter().all(|m| m.flags.iter().any(|f| f == "\\Seen")));
    let (m, raw) = h
        .app
        .message(
            h.app
                .list_messages(Some("sender7@"), None, 1)
                .await
                .unwrap()[0]
                .id,
        )
        .await
        .unwrap();
    assert_eq!(raw, message(7), "the raw message is kept byte for byte");
    assert_eq!(m.from_address, "sender7@example.com");

    // The maildir: N files in new/, the server's INBOX empty and Processed full.
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), N);
    assert!(
        dovecot
            .list_messages(users[1], "INBOX")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        dovecot
            .list_messages(users[1], "Processed")
            .await
            .unwrap()
            .len(),
        N
    );

    // The webhook: N distinct keys, the messages deleted on the server.
    let keys = hook_seen.lock().unwrap().clone();
    assert_eq!(keys.len(), N);
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), N);
    assert!(
        dovecot
            .list_messages(users[2], "INBOX")
            .await
            .unwrap()
            .is_empty()
    );

    // The command: N files, one per idempotency key.
    assert_eq!(std::fs::read_dir(&cmd_dir).unwrap().count(), N);
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_restarted_mid_fetch_loses_and_duplicates_nothing() {
    const N: usize = 1500;
    let h = harness(Backend::Sqlite, &[]).await;
    let mut dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    let user = "help@contoso.com";
    for i in 0..N {
        dovecot.deliver(user, &message(i)).unwrap();
    }
    let name = receiver_for(
        &h,
        &dovecot,
        user,
        ReceiverInput {
            name: Some("r".into()),
            ..Default::default()
        },
    )
    .await;
    let app = h.app.clone();
    let first = tokio::spawn({
        let name = name.clone();
        async move { once(&app, &name).await }
    });
    // Restart the server while the pass is fetching.
    let started = Instant::now();
    while h.app.store().message_count().await.unwrap() < 100 {
        assert!(started.elapsed() < Duration::from_mins(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dovecot.restart().await.unwrap();
    let interrupted = first.await.unwrap();
    let delivered_first = interrupted.summary.delivered;
    assert!(
        interrupted.error.is_some(),
        "the pass was cut off: {interrupted:?}"
    );
    assert!(delivered_first < N as u64);
    let rest = once(&h.app, &name).await;
    assert_eq!(rest.error, None, "{rest:?}");
    assert_eq!(
        h.app.store().message_count().await.unwrap(),
        N as i64,
        "every message once"
    );
    let inbox = dovecot.list_messages(user, "INBOX").await.unwrap();
    assert!(inbox.iter().all(|m| m.flags.iter().any(|f| f == "\\Seen")));
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}

/// Files whose name starts with `prefix` anywhere under `dir`.
fn find(dir: &std::path::Path, prefix: &str, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            find(&path, prefix, out);
        } else if entry.file_name().to_string_lossy().starts_with(prefix) {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uidvalidity_change_rescans_without_delivering_twice() {
    let h = harness(Backend::Sqlite, &[]).await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    let user = "help@contoso.com";
    for i in 0..5 {
        dovecot.deliver(user, &message(i)).unwrap();
    }
    let name = receiver_for(
        &h,
        &dovecot,
        user,
        ReceiverInput {
            name: Some("r".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(once(&h.app, &name).await.summary.delivered, 5);
    let receiver = h.app.find_receiver(&name).await.unwrap();
    let before = h
        .app
        .store()
        .checkpoint(receiver.id)
        .await
        .unwrap()
        .unwrap();

    // Make Dovecot forget its UIDs (no session is open): it renumbers the folder under a new
    // UIDVALIDITY.
    let mut files = Vec::new();
    find(dovecot.dir(), "dovecot-uidlist", &mut files);
    find(dovecot.dir(), "dovecot.index", &mut files);
    assert!(!files.is_empty(), "found Dovecot's UID list");
    for f in files {
        std::fs::remove_file(f).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1100)); // UIDVALIDITY is a timestamp
    for i in 5..7 {
        dovecot.deliver(user, &message(i)).unwrap();
    }
    let o = once(&h.app, &name).await;
    let after = h
        .app
        .store()
        .checkpoint(receiver.id)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        after.uid_validity, before.uid_validity,
        "the server changed UIDVALIDITY"
    );
    assert_eq!(
        (
            o.summary.available,
            o.summary.delivered,
            o.summary.already_seen
        ),
        (7, 2, 5),
        "{o:?}"
    );
    assert_eq!(
        h.app.store().message_count().await.unwrap(),
        7,
        "nothing delivered twice"
    );
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_webhook_stops_moving_mail_then_heals() {
    let h = harness(Backend::Sqlite, &[]).await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    let user = "help@contoso.com";
    for i in 0..5 {
        dovecot.deliver(user, &message(i)).unwrap();
    }
    let (url, seen, requests) = signed_webhook(2).await;
    let name = receiver_for(
        &h,
        &dovecot,
        user,
        ReceiverInput {
            name: Some("hook".into()),
            sink: Some(SinkKind::Webhook),
            sink_target: Some(url),
            after_delivery: Some(AfterDelivery::Delete),
            ..Default::default()
        },
    )
    .await;
    // The receiver was given a signing secret; rotate it to learn a value (shown once).
    let (_, secret) = h
        .app
        .change_receiver(
            &name,
            &ReceiverInput {
                new_sink_secret: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let secret = secret.expect("a new signing secret");
    // 500: the pass stops at the first message and nothing moves on the server.
    let o = once(&h.app, &name).await;
    assert_eq!((o.summary.delivered, o.summary.failed), (0, 1));
    assert!(
        o.summary.stopped.as_deref().unwrap().contains("HTTP 500"),
        "{o:?}"
    );
    assert_eq!(dovecot.list_messages(user, "INBOX").await.unwrap().len(), 5);
    let o = once(&h.app, &name).await;
    assert_eq!(o.summary.failed, 1, "still 500");
    // Then 200: everything goes, once.
    let o = once(&h.app, &name).await;
    assert_eq!(
        (o.summary.delivered, o.summary.failed, o.summary.stopped),
        (5, 0, None)
    );
    assert_eq!(seen.lock().unwrap().len(), 5);
    // Every delivery is signed: HMAC-SHA256 of "timestamp.body" with the receiver's secret.
    {
        use secrecy::ExposeSecret;
        let requests = requests.lock().unwrap();
        assert_eq!(requests.len(), 5);
        for (timestamp, signature, body) in requests.iter() {
            let expected = oauthimap_sinks::signature(
                secret.expose_secret(),
                timestamp.parse().unwrap(),
                body,
            );
            assert_eq!(signature, &format!("sha256={expected}"));
        }
    }
    assert!(
        dovecot
            .list_messages(user, "INBOX")
            .await
            .unwrap()
            .is_empty()
    );
    let ledger = h
        .app
        .ledger(Some(&name), Some(LedgerStatus::Delivered), 10)
        .await
        .unwrap();
    assert_eq!(
        ledger.iter().find(|e| e.uid == 1).unwrap().attempts,
        3,
        "two failures, then the delivery"
    );
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_oversized_messages_are_refused_or_stored_safely() {
    let h = harness(Backend::Sqlite, &[]).await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    let user = "help@contoso.com";
    let mut big = b"From: big@example.com\r\nSubject: huge\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 50 * 1024 * 1024));
    big.extend_from_slice(b"\r\n");
    dovecot.deliver(user, &big).unwrap();
    dovecot
        .deliver(user, b"Subject: =?utf-8?b?SGVsbG8NCkJjYzogdmljdGltQGV4YW1wbGUuY29t?=\r\nFrom: x@example.com\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=x-unknown-charset\r\n\r\n\xff\xfe broken\r\n--b\r\nContent-Type: application/octet-stream; name=\"../../etc/passwd\"\r\nContent-Disposition: attachment; filename=\"../../etc/passwd\"\r\n\r\nroot\r\n")
        .unwrap();
    dovecot
        .deliver(user, b"\x00\x01 not a message at all")
        .unwrap();
    dovecot.deliver(user, &message(1)).unwrap();
    let name = receiver_for(
        &h,
        &dovecot,
        user,
        ReceiverInput {
            name: Some("r".into()),
            size_limit_bytes: Some(10 * 1024 * 1024),
            refused_folder: Some("Refused".into()),
            ..Default::default()
        },
    )
    .await;
    let o = once(&h.app, &name).await;
    assert_eq!(o.error, None);
    assert_eq!(
        (o.summary.available, o.summary.delivered, o.summary.refused),
        (4, 2, 2),
        "{o:?}"
    );
    let refused = dovecot.list_messages(user, "Refused").await.unwrap();
    assert_eq!(
        refused.len(),
        2,
        "the 50 MB message and the non-message are moved aside"
    );
    let ledger = h
        .app
        .ledger(Some(&name), Some(LedgerStatus::Refused), 10)
        .await
        .unwrap();
    assert!(
        ledger.iter().any(|e| e
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("over the receiver's limit")),
        "{ledger:?}"
    );
    let stored = h.app.list_messages(None, None, 10).await.unwrap();
    let hostile = stored
        .iter()
        .find(|m| m.subject.starts_with("Hello"))
        .unwrap();
    assert!(
        !hostile.subject.contains('\r') && !hostile.subject.contains('\n'),
        "{:?}",
        hostile.subject
    );
    let json: serde_json::Value = serde_json::from_str(&hostile.normalized).unwrap();
    assert_eq!(json["attachments"][0]["safe_filename"], "passwd");
    assert!(!json["warnings"].as_array().unwrap().is_empty());
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_delivers_within_two_seconds_and_survives_short_tokens_and_restarts() {
    let h = harness(Backend::Sqlite, &[]).await;
    let mut dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    let user = "help@contoso.com";
    h.idp.set_access_token_lifetime(Duration::from_secs(8));
    let name = receiver_for(
        &h,
        &dovecot,
        user,
        ReceiverInput {
            name: Some("idle".into()),
            trigger: Some(Trigger::Idle),
            ..Default::default()
        },
    )
    .await;
    h.app
        .change_receiver(
            &name,
            &ReceiverInput {
                trigger: Some(Trigger::Idle),
                ..Default::default()
            },
        )
        .await
        .map(|(receiver, _)| receiver)
        .unwrap();
    let receiver = h.app.find_receiver(&name).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let collector = h.app.collector().clone();
    let task = tokio::spawn(async move { collector.run_receiver(receiver.id, stop_rx).await });
    let count = |app: Core| async move { app.store().message_count().await.unwrap() };

    tokio::time::sleep(Duration::from_millis(800)).await;
    let started = Instant::now();
    dovecot.deliver(user, &message(1)).unwrap();
    while count(h.app.clone()).await < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "IDLE delivered within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The access token lives 8 s: after it expired, new mail still arrives (fresh session).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let started = Instant::now();
    dovecot.deliver(user, &message(2)).unwrap();
    while count(h.app.clone()).await < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "delivered after the token expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Dovecot restarts: the receiver reconnects and goes on.
    dovecot.restart().await.unwrap();
    dovecot.deliver(user, &message(3)).unwrap();
    let started = Instant::now();
    while count(h.app.clone()).await < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "delivered after the server restarted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count(h.app.clone()).await, 3, "each message once");
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}

/// The UIDs in the idempotency keys the sink saw, in the order it saw them.
fn uids_of(keys: &[String]) -> Vec<u32> {
    keys.iter()
        .map(|k| k.rsplit('-').next().unwrap().parse().unwrap())
        .collect()
}

/// Runs a receiver as `serve` does, until the returned sender says stop.
fn run(
    h: &Harness,
    id: oauthimap_types::ReceiverId,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let collector = h.app.collector().clone();
    let task = tokio::spawn(async move { collector.run_receiver(id, stop_rx).await });
    (stop_tx, task)
}

async fn stop(stop_tx: tokio::sync::watch::Sender<bool>, task: tokio::task::JoinHandle<()>) {
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the receiver stops")
        .unwrap();
}

/// Polls `check` every 200 ms until it holds, or fails after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The issue's outage, at its real length: a webhook that refuses connections for 60 s, then
/// answers 503 with `Retry-After: 5` for 20 s, then 200, while the receiver runs as in `serve`.
/// Mail keeps arriving meanwhile. Everything arrives once and in UID order, nothing is set
/// aside, the receiver says it waits for its sink while it does, and the server keeps every
/// undelivered message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_down_for_eighty_seconds_costs_no_message_and_no_order() {
    use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
    use oauthimap_types::ReceiverState;
    let h = harness(
        Backend::Sqlite,
        &[("OAUTHIMAP_SINK__RETRY_CAP", "5s".into())],
    )
    .await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    let user = "hook@contoso.com";
    for i in 1..=10 {
        dovecot.deliver(user, &message(i)).unwrap();
    }
    // A port nobody listens on yet: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let name = receiver_for(
        &h,
        &dovecot,
        user,
        ReceiverInput {
            name: Some("outage".into()),
            sink: Some(SinkKind::Webhook),
            sink_target: Some(format!("http://127.0.0.1:{port}/hook")),
            after_delivery: Some(AfterDelivery::Delete),
            ..Default::default()
        },
    )
    .await;
    let id = h.app.find_receiver(&name).await.unwrap().id;
    let started = Instant::now();
    let (stop_tx, task) = run(&h, id);

    let state = |app: Core| async move { app.find_receiver("outage").await.unwrap() };
    eventually(
        Duration::from_secs(20),
        "the receiver says it waits for its sink",
        || {
            let app = h.app.clone();
            async move { state(app).await.state == ReceiverState::WaitingForSink }
        },
    )
    .await;
    let r = state(h.app.clone()).await;
    let status = r.status.unwrap();
    assert!(
        status
            .detail
            .as_deref()
            .unwrap()
            .contains("cannot reach the webhook"),
        "{status:?}"
    );
    assert!(status.next_at.is_some(), "the next try is shown");
    // New mail during the outage waits behind the held message.
    for i in 11..=15 {
        dovecot.deliver(user, &message(i)).unwrap();
    }
    tokio::time::sleep(Duration::from_mins(1).saturating_sub(started.elapsed())).await;
    assert_eq!(
        dovecot.list_messages(user, "INBOX").await.unwrap().len(),
        15,
        "nothing is deleted on the server while the sink is down"
    );

    // 503 with Retry-After: 5 for 20 s, then 200.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let answered_503 = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let phase_start = Instant::now();
    let (s, n) = (seen.clone(), answered_503.clone());
    let handler = move |headers: axum::http::HeaderMap| {
        let (s, n) = (s.clone(), n.clone());
        async move {
            if phase_start.elapsed() < Duration::from_secs(20) {
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut r =
                    axum::response::IntoResponse::into_response(StatusCode::SERVICE_UNAVAILABLE);
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("5"));
                return r;
            }
            s.lock()
                .unwrap()
                .push(headers["idempotency-key"].to_str().unwrap().to_owned());
            axum::response::IntoResponse::into_response(StatusCode::OK)
        }
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let router = axum::Router::new().route("/hook", axum::routing::post(handler));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // On a timeout, say how far it got and what the receiver reports (a first-try failure in CI
    // left only "not within 45s" to go on).
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let delivered = seen.lock().unwrap().len();
        if delivered >= 15 {
            break;
        }
        if Instant::now() > deadline {
            let r = state(h.app.clone()).await;
            panic!(
                "all 15 messages delivered within 45s: {delivered} were, {} answered 503; the receiver is {:?}: {:?}",
                answered_503.load(std::sync::atomic::Ordering::SeqCst),
                r.state,
                r.status
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let tries_503 = answered_503.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=5).contains(&tries_503),
        "Retry-After: 5 spaces the tries over 20 s: {tries_503}"
    );
    eventually(
        Duration::from_secs(20),
        "the receiver is back to waiting for mail",
        || {
            let app = h.app.clone();
            async move { state(app).await.state == ReceiverState::Polling }
        },
    )
    .await;
    stop(stop_tx, task).await;
    assert_eq!(
        uids_of(&seen.lock().unwrap()),
        (1..=15).collect::<Vec<_>>(),
        "once each, in order"
    );
    assert!(
        h.app
            .ledger(Some(&name), Some(LedgerStatus::Dead), 10)
            .await
            .unwrap()
            .is_empty(),
        "none set aside"
    );
    assert!(
        dovecot
            .list_messages(user, "INBOX")
            .await
            .unwrap()
            .is_empty()
    );
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}

/// A webhook that refuses one message with 400: that message alone is set aside after one
/// attempt, the rest arrive in order, and the refused one stays on the server untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_refusing_one_message_sets_only_that_one_aside() {
    use axum::http::StatusCode;
    let h = harness(Backend::Sqlite, &[]).await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    let user = "hook@contoso.com";
    for i in 1..=6 {
        dovecot.deliver(user, &message(i)).unwrap();
    }
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    let handler = move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
        let s = s.clone();
        async move {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if v["message"]["subject"] == "Ticket 3" {
                return StatusCode::BAD_REQUEST;
            }
            s.lock()
                .unwrap()
                .push(headers["idempotency-key"].to_str().unwrap().to_owned());
            StatusCode::OK
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    let router = axum::Router::new().route("/hook", axum::routing::post(handler));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let name = receiver_for(
        &h,
        &dovecot,
        user,
        ReceiverInput {
            name: Some("refusing".into()),
            sink: Some(SinkKind::Webhook),
            sink_target: Some(url),
            after_delivery: Some(AfterDelivery::Delete),
            ..Default::default()
        },
    )
    .await;
    let o = once(&h.app, &name).await;
    assert_eq!(
        (
            o.summary.delivered,
            o.summary.failed,
            o.summary.waiting.clone()
        ),
        (5, 1, None),
        "{o:?}"
    );
    assert_eq!(uids_of(&seen.lock().unwrap()), vec![1, 2, 4, 5, 6]);
    let dead = h
        .app
        .ledger(Some(&name), Some(LedgerStatus::Dead), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].uid, dead[0].attempts),
        (3, 1),
        "set aside after one attempt"
    );
    assert!(
        dead[0].reason.as_deref().unwrap().contains("HTTP 400"),
        "{dead:?}"
    );
    let left = dovecot.list_messages(user, "INBOX").await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].uid, 3);
    assert!(
        !left[0]
            .flags
            .iter()
            .any(|f| f == "\\Seen" || f == "\\Deleted"),
        "untouched: {left:?}"
    );
    // A second run sends nothing again: refused is not lost.
    let o = once(&h.app, &name).await;
    assert_eq!((o.summary.delivered, o.summary.failed), (0, 0), "{o:?}");
    assert_eq!(seen.lock().unwrap().len(), 5);
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}

/// A command sink that exits 75 (`EX_TEMPFAIL`) twice, then 0: `collect --once` waits it out
/// within its retry window and delivers everything in order, with nothing set aside; when the
/// window is shorter than the outage, it reports the wait and the next run carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sink_asking_to_retry_twice_delivers_in_order() {
    let out = tempfile::tempdir().unwrap();
    let notices = out.path().join("notices");
    let h = harness(
        Backend::Sqlite,
        &[
            ("OAUTHIMAP_SINK__ALERT_AFTER", "1s".into()),
            (
                "OAUTHIMAP_NOTIFY__COMMAND",
                format!(
                    "echo \"$OAUTHIMAP_EVENT $OAUTHIMAP_RECEIVER\" >> {}",
                    notices.display()
                ),
            ),
        ],
    )
    .await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    let user = "cmd@contoso.com";
    for i in 1..=5 {
        dovecot.deliver(user, &message(i)).unwrap();
    }
    let (count, order) = (out.path().join("count"), out.path().join("order"));
    std::fs::write(&count, "0").unwrap();
    let command = format!(
        "n=$(cat {c}); echo $((n+1)) > {c}; [ \"$n\" -lt 2 ] && exit 75; cat > /dev/null; echo \"$OAUTHIMAP_IDEMPOTENCY_KEY\" >> {o}",
        c = count.display(),
        o = order.display()
    );
    let name = receiver_for(
        &h,
        &dovecot,
        user,
        ReceiverInput {
            name: Some("tempfail".into()),
            sink: Some(SinkKind::Command),
            sink_target: Some(command),
            after_delivery: Some(AfterDelivery::Delete),
            ..Default::default()
        },
    )
    .await;
    // A window of zero: the first 75 ends the run, reported as waiting, nothing moves.
    let o = once(&h.app, &name).await;
    let wait = o.summary.waiting.clone().expect("waiting for the sink");
    assert_eq!((wait.uid, o.summary.delivered), (1, 0), "{o:?}");
    assert_eq!(
        h.app.find_receiver(&name).await.unwrap().state,
        oauthimap_types::ReceiverState::WaitingForSink
    );
    assert_eq!(dovecot.list_messages(user, "INBOX").await.unwrap().len(), 5);
    assert!(!notices.exists(), "no alert before sink.alert_after");
    // The next run, past sink.alert_after, with a window: one more 75 (the outage is now
    // alerted), then everything, in order, and the all-clear.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let mut outcomes = h
        .app
        .collect_once(Some(&name), Duration::from_secs(30), &|_, _| {})
        .await
        .unwrap();
    let o = outcomes.remove(0);
    assert_eq!(
        (o.summary.delivered, o.summary.waiting.clone()),
        (5, None),
        "{o:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "retried within seconds"
    );
    let lines: Vec<String> = std::fs::read_to_string(&order)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(uids_of(&lines), vec![1, 2, 3, 4, 5]);
    assert!(
        h.app
            .ledger(Some(&name), Some(LedgerStatus::Dead), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        dovecot
            .list_messages(user, "INBOX")
            .await
            .unwrap()
            .is_empty()
    );
    assert_ne!(
        h.app.find_receiver(&name).await.unwrap().state,
        oauthimap_types::ReceiverState::WaitingForSink,
        "the wait is over"
    );
    assert_eq!(
        std::fs::read_to_string(&notices).unwrap(),
        "sink.outage tempfail\nsink.recovered tempfail\n",
        "[notify] hears of the outage once, and of its end"
    );
    let kinds: Vec<String> = h
        .app
        .store()
        .events(None, None, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| k.starts_with("sink."))
        .collect();
    assert_eq!(kinds, vec!["sink.recovered", "sink.outage"], "newest first");
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}

/// A maildir on a full filesystem (a 512 KiB tmpfs): the receiver waits, the server keeps the
/// mail, and once space returns everything is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maildir_on_a_full_filesystem_waits_then_delivers() {
    use oauthimap_types::ReceiverState;
    // The test suite runs as root (scripts/test checks); a run as another user cannot mount.
    let out = tempfile::tempdir().unwrap();
    let mount = out.path().join("small");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(&mount)
        .status()
        .unwrap();
    if !mounted.success() {
        assert!(
            !is_root(),
            "root could not mount a tmpfs for the full-disk test"
        );
        eprintln!("SKIPPED: not root, cannot mount a small filesystem");
        return;
    }
    let _unmount = Unmount(mount.clone());
    let h = harness(
        Backend::Sqlite,
        &[("OAUTHIMAP_SINK__RETRY_CAP", "2s".into())],
    )
    .await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    let user = "maildir@contoso.com";
    // Five messages of 64 KiB: more than the space left.
    for i in 1..=5 {
        let mut m = message(i);
        m.extend(std::iter::repeat_n(b'x', 64 * 1024));
        m.extend(b"\r\n");
        dovecot.deliver(user, &m).unwrap();
    }
    let maildir = mount.join("Maildir");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    let filler = mount.join("filler");
    std::fs::write(&filler, vec![0u8; 480 * 1024]).unwrap();
    let name = receiver_for(
        &h,
        &dovecot,
        user,
        ReceiverInput {
            name: Some("full".into()),
            sink: Some(SinkKind::Maildir),
            sink_target: Some(maildir.display().to_string()),
            after_delivery: Some(AfterDelivery::Delete),
            ..Default::default()
        },
    )
    .await;
    let id = h.app.find_receiver(&name).await.unwrap().id;
    let (stop_tx, task) = run(&h, id);
    eventually(
        Duration::from_secs(20),
        "the receiver waits for its sink",
        || {
            let app = h.app.clone();
            async move {
                app.find_receiver("full").await.unwrap().state == ReceiverState::WaitingForSink
            }
        },
    )
    .await;
    let r = h.app.find_receiver(&name).await.unwrap();
    assert!(
        r.status.unwrap().detail.unwrap().contains("No space left"),
        "the reason names the full disk"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        dovecot.list_messages(user, "INBOX").await.unwrap().len(),
        5,
        "the server keeps the mail"
    );
    std::fs::remove_file(&filler).unwrap();
    eventually(
        Duration::from_secs(20),
        "delivered once space returned",
        || {
            let maildir = maildir.clone();
            async move { std::fs::read_dir(maildir.join("new")).unwrap().count() == 5 }
        },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the server copies are deleted",
        || {
            let d = &dovecot;
            async move { d.list_messages(user, "INBOX").await.unwrap().is_empty() }
        },
    )
    .await;
    stop(stop_tx, task).await;
    assert_eq!(
        std::fs::read_dir(maildir.join("tmp")).unwrap().count(),
        0,
        "no half-written file left"
    );
    assert!(
        h.app
            .ledger(Some(&name), Some(LedgerStatus::Dead), 10)
            .await
            .unwrap()
            .is_empty()
    );
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}

/// Unmounts a test filesystem when dropped.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    })
}

/// The regression of the 16-receiver ceiling: 40 receivers in IDLE on one node all collect
/// within 30 s of the supervisor starting (with 2 pass slots), each shows its state, and new
/// mail in the last one still arrives while the other 39 sit in IDLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_receivers_all_collect_and_show_their_state() {
    use oauthimap_types::ReceiverState;
    const N: usize = 40;
    let h = harness(
        Backend::Sqlite,
        &[("OAUTHIMAP_COLLECTOR__MAX_CONCURRENT_PASSES", "2".into())],
    )
    .await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    for n in 0..N {
        let user = format!("box{n}@contoso.com");
        dovecot.deliver(&user, &message(2 * n)).unwrap();
        dovecot.deliver(&user, &message(2 * n + 1)).unwrap();
        let name = receiver_for(
            &h,
            &dovecot,
            &user,
            ReceiverInput {
                name: Some(format!("box{n}")),
                ..Default::default()
            },
        )
        .await;
        h.app
            .change_receiver(
                &name,
                &ReceiverInput {
                    trigger: Some(Trigger::Idle),
                    ..Default::default()
                },
            )
            .await
            .map(|(receiver, _)| receiver)
            .unwrap();
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let supervisor = tokio::spawn(h.app.collector().clone().supervise(stop_rx));
    let started = Instant::now();
    eventually(Duration::from_secs(30), "every receiver collected", || {
        let app = h.app.clone();
        async move { app.store().message_count().await.unwrap() == 2 * N as i64 }
    })
    .await;
    eprintln!(
        "{N} receivers collected {} messages in {:?}",
        2 * N,
        started.elapsed()
    );
    eventually(Duration::from_secs(15), "every receiver in IDLE", || {
        let app = h.app.clone();
        async move {
            let receivers = app.list_receivers().await.unwrap();
            let waiting: Vec<_> = receivers
                .iter()
                .filter(|r| r.state != ReceiverState::Idle)
                .map(|r| {
                    let detail = r.status.as_ref().and_then(|s| s.detail.clone());
                    format!(
                        "{} {:?} {}",
                        r.fields.name,
                        r.state,
                        detail.unwrap_or_default()
                    )
                })
                .collect();
            if !waiting.is_empty() {
                eprintln!("not in IDLE yet: {waiting:#?}");
            }
            waiting.is_empty()
        }
    })
    .await;
    let started = Instant::now();
    dovecot
        .deliver("box39@contoso.com", &message(1000))
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "new mail in the 40th mailbox",
        || {
            let app = h.app.clone();
            async move { app.store().message_count().await.unwrap() == 2 * N as i64 + 1 }
        },
    )
    .await;
    eprintln!("new mail delivered in {:?}", started.elapsed());
    // Each receiver got through the first time: a failed pass (a login refused, a ledger write
    // that could not wait for SQLite's lock) records `receiver.error` and backs off for seconds.
    let errors: Vec<String> = h
        .app
        .store()
        .events(None, None, 500)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "receiver.error")
        .map(|e| e.message)
        .collect();
    assert!(errors.is_empty(), "passes failed: {errors:#?}");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(20), supervisor)
        .await
        .unwrap()
        .unwrap();
    assert!(
        h.app
            .list_receivers()
            .await
            .unwrap()
            .iter()
            .all(|r| r.state == ReceiverState::NotRunning),
        "a stopped instance takes its states with it"
    );
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}

/// Two instances on one database: the one that holds a receiver keeps it through IDLE (its
/// lease is renewed meanwhile, not only between passes), the other stays out; when the holder
/// stops, the other takes the receiver over within the lease time and goes on, each message
/// delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_in_idle_stays_with_its_instance_and_moves_when_it_stops() {
    use oauthimap_app::CollectorSettings;
    let h = harness(
        Backend::Sqlite,
        &[("OAUTHIMAP_COLLECTOR__LEASE_TTL", "2s".into())],
    )
    .await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    let user = "shared@contoso.com";
    let name = receiver_for(
        &h,
        &dovecot,
        user,
        ReceiverInput {
            name: Some("shared".into()),
            ..Default::default()
        },
    )
    .await;
    h.app
        .change_receiver(
            &name,
            &ReceiverInput {
                trigger: Some(Trigger::Idle),
                ..Default::default()
            },
        )
        .await
        .map(|(receiver, _)| receiver)
        .unwrap();
    let id = h.app.find_receiver(&name).await.unwrap().id;
    let lease = format!("receiver:{}", id.0);
    let a = h.app.collector().clone();
    let b = Arc::new(oauthimap_app::Collector::with_settings(
        h.app.store().clone(),
        h.app.tokens().clone(),
        reqwest::Client::new(),
        h.app.settings().data_dir.clone(),
        CollectorSettings {
            lease_ttl: Duration::from_secs(2),
            ..CollectorSettings::default()
        },
    ));
    let (stop_a, rx) = tokio::sync::watch::channel(false);
    let task_a = tokio::spawn({
        let a = a.clone();
        async move { a.run_receiver(id, rx).await }
    });
    eventually(Duration::from_secs(10), "A in IDLE", || {
        let app = h.app.clone();
        async move {
            app.find_receiver("shared").await.unwrap().state == oauthimap_types::ReceiverState::Idle
        }
    })
    .await;
    let (stop_b, rx) = tokio::sync::watch::channel(false);
    let task_b = tokio::spawn({
        let b = b.clone();
        async move { b.run_receiver(id, rx).await }
    });
    // Three lease lifetimes in IDLE: A still holds it, and B never collected.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        h.app.store().lease_holder(&lease).await.unwrap().as_deref(),
        Some(a.instance())
    );
    dovecot.deliver(user, &message(1)).unwrap();
    eventually(Duration::from_secs(5), "A delivered", || {
        let app = h.app.clone();
        async move { app.store().message_count().await.unwrap() == 1 }
    })
    .await;
    // A stops (as on SIGTERM, releasing the lease): B takes over and collects.
    stop(stop_a, task_a).await;
    dovecot.deliver(user, &message(2)).unwrap();
    eventually(Duration::from_secs(10), "B took over and delivered", || {
        let app = h.app.clone();
        async move { app.store().message_count().await.unwrap() == 2 }
    })
    .await;
    assert_eq!(
        h.app.store().lease_holder(&lease).await.unwrap().as_deref(),
        Some(b.instance())
    );
    stop(stop_b, task_b).await;
    assert_eq!(h.app.store().message_count().await.unwrap(), 2, "each once");
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}

/// "Collect now" makes a polling receiver collect at once instead of at its next poll; a
/// switched-off receiver is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_now_cuts_the_poll_wait_short() {
    use oauthimap_types::ReceiverState;
    let h = harness(Backend::Sqlite, &[]).await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    let user = "poll@contoso.com";
    let name = receiver_for(
        &h,
        &dovecot,
        user,
        ReceiverInput {
            name: Some("poller".into()),
            poll_interval_secs: Some(3600),
            ..Default::default()
        },
    )
    .await;
    let id = h.app.find_receiver(&name).await.unwrap().id;
    let (stop_tx, task) = run(&h, id);
    eventually(Duration::from_secs(10), "polling", || {
        let app = h.app.clone();
        async move { app.find_receiver("poller").await.unwrap().state == ReceiverState::Polling }
    })
    .await;
    dovecot.deliver(user, &message(1)).unwrap();
    h.app.collect_now(&name).await.unwrap();
    eventually(Duration::from_secs(5), "collected at once", || {
        let app = h.app.clone();
        async move { app.store().message_count().await.unwrap() == 1 }
    })
    .await;
    stop(stop_tx, task).await;
    h.app
        .change_receiver(
            &name,
            &ReceiverInput {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .map(|(receiver, _)| receiver)
        .unwrap();
    let e = h.app.collect_now(&name).await.unwrap_err().to_string();
    assert!(e.contains("switched off"), "{e}");
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}

/// Three instances on PostgreSQL share nine receivers: the first holds them all while alone; when
/// two more join, it hands over what is beyond its share and no instance holds more than
/// ⌈9 / 3⌉ + 1; when one stops, the other two take its receivers. Mail that arrives meanwhile
/// is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_spread_over_instances_and_move_when_one_stops() {
    use oauthimap_app::CollectorSettings;
    const N: usize = 9;
    let h = harness(
        Backend::Postgres,
        &[("OAUTHIMAP_COLLECTOR__LEASE_TTL", "2s".into())],
    )
    .await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    let users: Vec<String> = (0..N).map(|i| format!("spread{i}@contoso.com")).collect();
    for user in &users {
        let name = receiver_for(&h, &dovecot, user, ReceiverInput::default()).await;
        h.app
            .change_receiver(
                &name,
                &ReceiverInput {
                    trigger: Some(Trigger::Idle),
                    ..Default::default()
                },
            )
            .await
            .map(|(receiver, _)| receiver)
            .unwrap();
    }
    let instance = || {
        Arc::new(oauthimap_app::Collector::with_settings(
            h.app.store().clone(),
            h.app.tokens().clone(),
            reqwest::Client::new(),
            h.app.settings().data_dir.clone(),
            CollectorSettings {
                lease_ttl: Duration::from_secs(2),
                ..CollectorSettings::default()
            },
        ))
    };
    let start = |c: Arc<oauthimap_app::Collector>| {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, tokio::spawn(async move { c.supervise(rx).await }))
    };
    let held = |c: &Arc<oauthimap_app::Collector>| {
        let (store, me) = (h.app.store().clone(), c.instance().to_owned());
        async move { store.leases_held("receiver:", &me).await.unwrap().len() }
    };
    let (a, b, c) = (instance(), instance(), instance());
    let (stop_a, task_a) = start(a.clone());
    eventually(Duration::from_secs(20), "A alone holds all nine", || {
        let held = held(&a);
        async move { held.await == N }
    })
    .await;
    let (stop_b, task_b) = start(b.clone());
    let (stop_c, task_c) = start(c.clone());
    eventually(
        Duration::from_secs(30),
        "the nine spread over three",
        || {
            let (ha, hb, hc) = (held(&a), held(&b), held(&c));
            async move {
                let counts = [ha.await, hb.await, hc.await];
                counts.iter().sum::<usize>() == N && counts.iter().all(|n| *n <= N.div_ceil(3) + 1)
            }
        },
    )
    .await;
    for user in &users {
        dovecot.deliver(user, &message(1)).unwrap();
    }
    eventually(Duration::from_secs(20), "the first round delivered", || {
        let app = h.app.clone();
        async move { app.store().message_count().await.unwrap() == N as i64 }
    })
    .await;
    // C stops (SIGTERM: it releases its leases); A and B take its receivers.
    stop(stop_c, task_c).await;
    eventually(Duration::from_secs(30), "the nine spread over two", || {
        let (ha, hb) = (held(&a), held(&b));
        async move {
            let counts = [ha.await, hb.await];
            counts.iter().sum::<usize>() == N && counts.iter().all(|n| *n <= N.div_ceil(2) + 1)
        }
    })
    .await;
    for user in &users {
        dovecot.deliver(user, &message(2)).unwrap();
    }
    eventually(
        Duration::from_secs(20),
        "the second round delivered",
        || {
            let app = h.app.clone();
            async move { app.store().message_count().await.unwrap() == 2 * N as i64 }
        },
    )
    .await;
    stop(stop_a, task_a).await;
    stop(stop_b, task_b).await;
    for r in h.app.list_receivers().await.unwrap() {
        let ledger = h.app.store().ledger(Some(r.id), None, 10).await.unwrap();
        assert_eq!(ledger.len(), 2, "{}: each message once", r.fields.name);
    }
    assert_eq!(h.app.store().message_count().await.unwrap(), 2 * N as i64);
    dovecot.stop().await.unwrap();
    h.t.cleanup().await;
}
