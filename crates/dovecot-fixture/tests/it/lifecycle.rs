//! Start, restart, stop and isolation of fixture instances, and the error when Dovecot is missing.

use std::path::PathBuf;

use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions, FixtureError, ImapConnection};

use crate::common::{ALICE, GOOD_TOKEN, Introspection, setup, xoauth2};

#[tokio::test]
async fn restart_keeps_ports_and_mail() {
    let (_stub, mut dovecot) = setup().await;
    dovecot
        .deliver(ALICE, b"Subject: kept\r\n\r\nbody\r\n")
        .unwrap();
    let before = dovecot.list_messages(ALICE, "INBOX").await.unwrap();
    let (ports, pid) = ((dovecot.imap_port(), dovecot.imaps_port()), dovecot.pid());
    dovecot.restart().await.unwrap();
    assert_eq!((dovecot.imap_port(), dovecot.imaps_port()), ports);
    assert_ne!(dovecot.pid(), pid, "a new master process");
    let log = dovecot.log_tail(50);
    for bad in ["Panic", "Fatal", "Error"] {
        assert!(
            !log.contains(bad),
            "clean shutdown and start expected:\n{log}"
        );
    }
    let after = dovecot.list_messages(ALICE, "INBOX").await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].uid, after[0].size),
        (before[0].uid, before[0].size)
    );
    let (mut conn, _) = ImapConnection::connect(dovecot.host(), dovecot.imap_port())
        .await
        .unwrap();
    assert!(
        conn.command(&format!(
            "AUTHENTICATE XOAUTH2 {}",
            xoauth2(ALICE, GOOD_TOKEN)
        ))
        .await
        .unwrap()
        .is_ok()
    );
}

#[tokio::test]
async fn restart_drops_open_sessions() {
    let (_stub, mut dovecot) = setup().await;
    let mut session = dovecot.master_session(ALICE).await.unwrap();
    dovecot.restart().await.unwrap();
    let answer = session.command("NOOP").await;
    match answer {
        Err(FixtureError::Io { .. }) => {}
        Ok(response) => panic!(
            "session survived the restart: {response:?}\n{}",
            dovecot.log_tail(40)
        ),
        Err(other) => panic!("unexpected error {other}"),
    }
    let text: Vec<String> = session
        .transcript()
        .iter()
        .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
        .collect();
    assert!(
        text.iter().any(|l| l == "* BYE Server shutting down."),
        "Dovecot says BYE on shutdown: {text:?}"
    );
}

#[tokio::test]
async fn stop_frees_the_port_and_removes_the_directory() {
    let (_stub, dovecot) = setup().await;
    let (port, dir, pid) = (
        dovecot.imap_port(),
        dovecot.dir().to_path_buf(),
        dovecot.pid().unwrap(),
    );
    dovecot.stop().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "port {port} still open"
    );
    assert!(!dir.exists(), "{} not removed", dir.display());
    assert!(
        !PathBuf::from(format!("/proc/{pid}")).exists(),
        "master {pid} still running"
    );
}

#[tokio::test]
async fn parallel_instances_are_isolated() {
    let stub = Introspection::start().await;
    let (a, b) = tokio::join!(
        Dovecot::start(DovecotOptions::new(stub.url.clone())),
        Dovecot::start(DovecotOptions::new(stub.url.clone()))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.imap_port(), b.imap_port());
    assert_ne!(a.dir(), b.dir());
    a.deliver(ALICE, b"Subject: only in a\r\n\r\nx\r\n")
        .unwrap();
    assert_eq!(a.list_messages(ALICE, "INBOX").await.unwrap().len(), 1);
    assert_eq!(b.list_messages(ALICE, "INBOX").await.unwrap().len(), 0);
    let config = std::fs::read_to_string(a.config_path()).unwrap();
    assert!(config.contains(&format!("base_dir = {}/run", a.dir().display())));
    assert!(!config.contains("/run/dovecot"));
}

#[tokio::test]
async fn missing_binary_says_how_to_install_it() {
    let mut opts = DovecotOptions::new("http://127.0.0.1:9/introspect");
    opts.dovecot_binary = PathBuf::from("/nonexistent/sbin/dovecot");
    let err = Dovecot::start(opts).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Dovecot not found: install dovecot-imapd (scripts/test installs it)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_config_dovecot_refuses_fails_with_the_log_tail() {
    let mut opts = DovecotOptions::new("http://127.0.0.1:9/introspect");
    opts.extra_config = "no_such_setting = 1".into();
    let err = Dovecot::start(opts).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, FixtureError::Start { .. }), "{text}");
    assert!(text.contains("dovecot exited early"), "{text}");
    assert!(
        text.contains("Unknown setting: no_such_setting"),
        "the log tail explains why: {text}"
    );
}

#[tokio::test]
async fn extra_config_is_applied() {
    let stub = Introspection::start().await;
    let mut opts = DovecotOptions::new(stub.url.clone());
    opts.extra_config = "login_greeting = fixture ready".into();
    let dovecot = Dovecot::start(opts).await.unwrap();
    let (_conn, greeting) = ImapConnection::connect(dovecot.host(), dovecot.imap_port())
        .await
        .unwrap();
    assert!(greeting.ends_with("] fixture ready"), "{greeting}");
}
