//! `MailSession` against real Dovecot: select, sizes, fetch (exact bytes, `\Seen` untouched),
//! flags, folders (including a non-ASCII name), move, delete and IDLE.

use std::time::{Duration, Instant};

use oauthimap_dovecot_fixture::Flag;
use oauthimap_imap::{IdleOutcome, MailSession as _, Session, UidRange, connect_and_login};
use oauthimap_types::Security;

use crate::common::{ALICE, Env, Plan, env};

fn message(n: u32) -> Vec<u8> {
    format!("From: bob@example.com\nTo: {ALICE}\nSubject: test {n}\nMessage-ID: <{n}@example.com>\n\nbody {n}\n{}\n", "x".repeat(n as usize * 100)).into_bytes()
}

async fn login(env: &Env) -> Session {
    connect_and_login(&env.config(Security::Tls), &env.tokens(Plan::Good))
        .await
        .expect("login")
}

#[tokio::test]
async fn select_sizes_and_fetch_exact_bytes_without_marking_seen() {
    let env = env().await;
    for n in 1..=3 {
        env.dovecot.deliver(ALICE, &message(n)).unwrap();
    }
    let mut session = login(&env).await;
    let inbox = session.select("INBOX").await.unwrap();
    assert_eq!(inbox.exists, 3);
    assert_eq!(inbox.uid_next, Some(4));
    assert!(inbox.uid_validity > 0);

    let sizes = session.fetch_sizes(UidRange::from(1)).await.unwrap();
    let stored = env.dovecot.list_messages(ALICE, "INBOX").await.unwrap();
    assert_eq!(
        sizes.iter().map(|m| (m.uid, m.size)).collect::<Vec<_>>(),
        stored.iter().map(|m| (m.uid, m.size)).collect::<Vec<_>>()
    );
    // `4:*` on a folder whose highest UID is 3 returns message 3 on the wire; it is filtered.
    assert!(
        session
            .fetch_sizes(UidRange::from(4))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        session
            .fetch_sizes(UidRange::between(2, 3))
            .await
            .unwrap()
            .len(),
        2
    );

    let batch = session.fetch_messages(&[3, 1, 99]).await.unwrap();
    assert_eq!(batch.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 3]);
    for m in &batch {
        let exact = env
            .dovecot
            .fetch_message(ALICE, "INBOX", m.uid)
            .await
            .unwrap();
        assert_eq!(m.raw, exact);
        assert_eq!(m.size, exact.len() as u64);
        assert!(!m.flags.iter().any(|f| f == "\\Seen"), "{:?}", m.flags);
    }
    session.logout().await.unwrap();
    let after = env.dovecot.list_messages(ALICE, "INBOX").await.unwrap();
    assert!(after.iter().all(|m| !m.flags.iter().any(|f| f == "\\Seen")));
}

#[tokio::test]
async fn flag_move_delete_and_folders() {
    let env = env().await;
    for n in 1..=4 {
        env.dovecot.deliver(ALICE, &message(n)).unwrap();
    }
    let mut session = login(&env).await;
    session.select("INBOX").await.unwrap();

    session
        .add_flags(&[1, 2], &["\\Seen", "$Collected"])
        .await
        .unwrap();
    let infos = env.dovecot.list_messages(ALICE, "INBOX").await.unwrap();
    for info in &infos {
        let seen = info.flags.iter().any(|f| f == "\\Seen");
        let kw = info.flags.iter().any(|f| f == "$Collected");
        assert_eq!((seen, kw), (info.uid <= 2, info.uid <= 2), "{info:?}");
    }
    let err = session.add_flags(&[1], &["bad flag"]).await.unwrap_err();
    assert!(err.to_string().contains("not a valid flag"), "{err}");

    assert!(session.create_folder_if_missing("Archive").await.unwrap());
    assert!(!session.create_folder_if_missing("Archive").await.unwrap());
    assert!(
        session
            .create_folder_if_missing("Entwürfe & Co")
            .await
            .unwrap()
    );
    assert!(
        !session
            .create_folder_if_missing("Entwürfe & Co")
            .await
            .unwrap()
    );
    assert!(!session.create_folder_if_missing("INBOX").await.unwrap());
    let folders = env.dovecot.list_folders(ALICE).await.unwrap();
    assert!(
        folders.iter().any(|f| f == "Entw&APw-rfe &- Co"),
        "{folders:?}"
    );

    let moved_body = env.dovecot.fetch_message(ALICE, "INBOX", 1).await.unwrap();
    session.move_to(&[1], "Archive").await.unwrap();
    session.move_to(&[3], "Entwürfe & Co").await.unwrap();
    let archive = env.dovecot.list_messages(ALICE, "Archive").await.unwrap();
    assert_eq!(archive.len(), 1);
    assert!(
        archive[0].flags.iter().any(|f| f == "\\Seen"),
        "flags travel with the message"
    );
    assert_eq!(
        env.dovecot
            .fetch_message(ALICE, "Archive", archive[0].uid)
            .await
            .unwrap(),
        moved_body
    );
    assert_eq!(
        env.dovecot
            .list_messages(ALICE, "Entw&APw-rfe &- Co")
            .await
            .unwrap()
            .len(),
        1
    );

    session.delete(&[2]).await.unwrap();
    let inbox: Vec<u32> = env
        .dovecot
        .list_messages(ALICE, "INBOX")
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(inbox, vec![4]);
    assert_eq!(session.select("INBOX").await.unwrap().exists, 1);

    let err = session.select("No Such Folder").await.unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot select No Such Folder on 127.0.0.1:{} as {ALICE}: the server answered NO Mailbox doesn't exist: No Such Folder",
            env.dovecot.imaps_port()
        )),
        "{err}"
    );
    assert_eq!(err.kind(), oauthimap_types::FailureKind::Permanent);
    session.noop().await.unwrap();
    session.logout().await.unwrap();
}

#[tokio::test]
async fn idle_sees_a_delivery_within_two_seconds_and_times_out_otherwise() {
    let env = env().await;
    env.dovecot
        .deliver_to(ALICE, "INBOX", &message(1), &[Flag::Seen])
        .unwrap();
    let mut session = login(&env).await;
    assert_eq!(session.select("INBOX").await.unwrap().exists, 1);

    let started = Instant::now();
    assert_eq!(
        session.idle(Duration::from_millis(300)).await.unwrap(),
        IdleOutcome::Timeout
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    let delivered = std::sync::Arc::new(std::sync::Mutex::new(None));
    let started = Instant::now();
    let (outcome, ()) = tokio::join!(session.idle(Duration::from_secs(20)), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        env.dovecot.deliver(ALICE, &message(2)).unwrap();
        *delivered.lock().unwrap() = Some(Instant::now());
    });
    assert_eq!(outcome.unwrap(), IdleOutcome::NewData);
    let seen_after = delivered.lock().unwrap().expect("delivered").elapsed();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        seen_after < Duration::from_secs(2),
        "IDLE reported after {seen_after:?}"
    );

    // The session is usable after IDLE, and the new message is there.
    let sizes = session.fetch_sizes(UidRange::from(2)).await.unwrap();
    assert_eq!(sizes.len(), 1);
    session.logout().await.unwrap();
}
