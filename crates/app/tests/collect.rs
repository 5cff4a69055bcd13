//! The collector against a real Dovecot (tokens checked through the fake identity provider):
//! every sink gets every message exactly once, post-actions land on the server, IDLE delivers
//! within seconds, faults (Dovecot restart, short-lived tokens, a failing webhook) heal, and
//! hostile messages are refused or stored safely.
#![allow(clippy::too_many_lines)] // each test reads best as one story

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oauthimap_app::store::{Backend, LedgerStatus};
use oauthimap_app::types::{AfterDelivery, Security, SinkKind, Trigger};
use oauthimap_app::{App, ReceiverInput};
use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions};
use oauthimap_fake_idp::UserConfig;

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
        .add_receiver(&ReceiverInput {
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
        .unwrap();
    name
}

async fn once(app: &App, name: &str) -> oauthimap_app::CollectOutcome {
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
        .update_receiver(
            &name,
            &ReceiverInput {
                trigger: Some(Trigger::Idle),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let receiver = h.app.find_receiver(&name).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let collector = h.app.collector().clone();
    let task = tokio::spawn(async move { collector.run_receiver(receiver.id, stop_rx).await });
    let count = |app: App| async move { app.store().message_count().await.unwrap() };

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
