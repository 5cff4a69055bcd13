//! Passes against an in-memory IMAP server (a fake `MailSession`) and real sinks and database:
//! batches deliver every message once and act per batch, a crash between a batch's files and
//! its ledger commit delivers each message once, a failing sink stops the pass exactly at the
//! failed message, and a re-scan recognises repeated content within one batch.
#![allow(clippy::too_many_lines)] // each test reads best as one story

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oauthimap_imap::{
    FetchedMessage, IdleOutcome, ImapError, MailSession, Mailbox, MessageSize, UidRange,
};
use oauthimap_sinks::{Sink, SinkConfig};
use oauthimap_store::{Backend, Checkpoint, Db, LedgerStatus, Receiver, ReceiverFields, Store};
use oauthimap_testkit::TestDb;
use oauthimap_types::{SinkKind, Trigger};

use crate::pass::{Pass, PassSummary, SinkPolicy};

fn message(i: usize) -> Vec<u8> {
    format!(
        "From: Sender {i} <sender{i}@example.com>\r\nSubject: Ticket {i}\r\nMessage-ID: <m{i}@example.com>\r\n\
         Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\nBody of message {i}.\r\n"
    )
    .into_bytes()
}

#[derive(Debug, Clone)]
struct Stored {
    uid: u32,
    raw: Vec<u8>,
    flags: Vec<String>,
}

/// The server side: one folder, what was moved away, and the commands that changed something.
#[derive(Debug, Default)]
struct Server {
    uid_validity: u32,
    inbox: Vec<Stored>,
    moved: BTreeMap<String, Vec<Stored>>,
    fetches: usize,
    stores: usize,
}

impl Server {
    fn with(count: usize) -> Arc<Mutex<Server>> {
        let mut server = Server {
            uid_validity: 1_700_000_000,
            ..Server::default()
        };
        for i in 1..=count {
            server.add(message(i));
        }
        Arc::new(Mutex::new(server))
    }

    fn add(&mut self, raw: Vec<u8>) {
        let uid = self.inbox.last().map_or(1, |m| m.uid + 1);
        self.inbox.push(Stored {
            uid,
            raw,
            flags: Vec::new(),
        });
    }

    fn seen(&self) -> Vec<u32> {
        self.inbox
            .iter()
            .filter(|m| m.flags.iter().any(|f| f == "\\Seen"))
            .map(|m| m.uid)
            .collect()
    }
}

/// A `MailSession` on a [`Server`].
struct FakeSession {
    server: Arc<Mutex<Server>>,
    capabilities: Vec<String>,
}

impl FakeSession {
    fn new(server: &Arc<Mutex<Server>>) -> Self {
        Self {
            server: server.clone(),
            capabilities: vec!["IMAP4rev1".into(), "MOVE".into(), "UIDPLUS".into()],
        }
    }

    fn server(&self) -> std::sync::MutexGuard<'_, Server> {
        self.server.lock().unwrap()
    }
}

impl MailSession for FakeSession {
    fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    async fn select(&mut self, _folder: &str) -> Result<Mailbox, ImapError> {
        let s = self.server();
        Ok(Mailbox {
            uid_validity: s.uid_validity,
            uid_next: s.inbox.last().map(|m| m.uid + 1),
            exists: u32::try_from(s.inbox.len()).unwrap(),
        })
    }

    async fn fetch_sizes(&mut self, range: UidRange) -> Result<Vec<MessageSize>, ImapError> {
        Ok(self
            .server()
            .inbox
            .iter()
            .filter(|m| range.contains(m.uid))
            .map(|m| MessageSize {
                uid: m.uid,
                size: m.raw.len() as u64,
            })
            .collect())
    }

    async fn fetch_messages(&mut self, uids: &[u32]) -> Result<Vec<FetchedMessage>, ImapError> {
        let mut s = self.server();
        s.fetches += 1;
        Ok(s.inbox
            .iter()
            .filter(|m| uids.contains(&m.uid))
            .map(|m| FetchedMessage {
                uid: m.uid,
                flags: m.flags.clone(),
                size: m.raw.len() as u64,
                raw: m.raw.clone(),
            })
            .collect())
    }

    async fn add_flags(&mut self, uids: &[u32], flags: &[&str]) -> Result<(), ImapError> {
        let mut s = self.server();
        s.stores += 1;
        for m in s.inbox.iter_mut().filter(|m| uids.contains(&m.uid)) {
            m.flags.extend(flags.iter().map(|f| (*f).to_owned()));
        }
        Ok(())
    }

    async fn move_to(&mut self, uids: &[u32], folder: &str) -> Result<(), ImapError> {
        let mut s = self.server();
        let (gone, kept) = s.inbox.drain(..).partition(|m| uids.contains(&m.uid));
        s.inbox = kept;
        s.moved.entry(folder.to_owned()).or_default().extend(gone);
        Ok(())
    }

    async fn delete(&mut self, uids: &[u32]) -> Result<(), ImapError> {
        self.server().inbox.retain(|m| !uids.contains(&m.uid));
        Ok(())
    }

    async fn create_folder_if_missing(&mut self, _folder: &str) -> Result<bool, ImapError> {
        Ok(false)
    }

    async fn idle(&mut self, _timeout: Duration) -> Result<IdleOutcome, ImapError> {
        Ok(IdleOutcome::Timeout)
    }

    async fn noop(&mut self) -> Result<(), ImapError> {
        Ok(())
    }

    async fn logout(self) -> Result<(), ImapError> {
        Ok(())
    }
}

/// A database with one receiver using `sink` (and `target`), and the folder for its files.
struct Setup {
    t: TestDb,
    store: Store,
    receiver: Receiver,
    sink: Sink,
    policy: SinkPolicy,
}

async fn setup(sink: SinkKind, target: Option<String>) -> Setup {
    let t = TestDb::new(Backend::Sqlite).await;
    let store = t.store().await;
    let app = store
        .insert_application(
            &oauthimap_testkit::fixtures::application_fields("Contoso"),
            None,
        )
        .await
        .unwrap();
    let receiver = store
        .insert_receiver(
            &ReceiverFields {
                host: "imap.example.com".into(),
                trigger: Trigger::Poll,
                sink,
                sink_target: target.clone(),
                ..oauthimap_testkit::fixtures::receiver_fields("r", app.id, None)
            },
            None,
        )
        .await
        .unwrap();
    let sink = SinkConfig {
        kind: sink,
        target,
        secret: None,
        data_dir: t.dir.path().to_owned(),
        timeout: Duration::from_secs(30),
        pass_env: Vec::new(),
        allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        command_allowed: Vec::new(),
    }
    .build(store.clone(), {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    })
    .unwrap();
    Setup {
        t,
        store,
        receiver,
        sink,
        policy: SinkPolicy::default(),
    }
}

impl Setup {
    async fn pass(&self, server: &Arc<Mutex<Server>>) -> PassSummary {
        self.pass_under(server, None).await.unwrap()
    }

    /// A pass run under a receiver lease (`serve`), or without one (`collect --once`).
    async fn pass_under(
        &self,
        server: &Arc<Mutex<Server>>,
        fence: Option<&oauthimap_store::Fence>,
    ) -> Result<PassSummary, crate::CollectError> {
        let folders = Mutex::new(HashSet::new());
        let pass = Pass {
            store: &self.store,
            sink: &self.sink,
            receiver: &self.receiver,
            progress: &|_| {},
            folders: &folders,
            policy: &self.policy,
            fence,
        };
        let mut session = FakeSession::new(server);
        let uid_validity = session.select("INBOX").await.unwrap().uid_validity;
        pass.run(&mut session, uid_validity).await
    }

    async fn checkpoint(&self) -> Option<u32> {
        self.store
            .checkpoint(self.receiver.id)
            .await
            .unwrap()
            .map(|c| c.last_uid)
    }

    /// Runs SQL on the test database (to put it into the state a crash leaves).
    async fn sql(&self, sql: &'static str) {
        let Db::Sqlite(pool) = &self.t.db else {
            unreachable!("the tests run on SQLite")
        };
        sqlx::query(sql).execute(pool).await.unwrap();
    }
}

/// The names of the files (not folders) in `dir`, sorted.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap())
                .filter(|e| e.file_type().unwrap().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_deliver_every_message_once_and_act_in_few_commands() {
    const N: usize = 600;
    let s = setup(SinkKind::Store, None).await;
    let server = Server::with(N);
    let summary = s.pass(&server).await;
    assert_eq!(
        (
            summary.available,
            summary.delivered,
            summary.failed,
            summary.stopped
        ),
        (N as u64, N as u64, 0, None)
    );
    assert_eq!(s.store.message_count().await.unwrap(), N as i64);
    let batches = files(&s.t.dir.path().join("messages"));
    assert_eq!(batches.len(), 3, "one file per batch: {batches:?}");
    for m in s.store.messages(None, None, 1000).await.unwrap() {
        let range = m
            .raw_offset
            .zip(m.raw_len)
            .map(|(o, l)| (o as u64, l as u64));
        let raw = oauthimap_sinks::read_raw(Path::new(&m.raw_path), range, &m.sha256).unwrap();
        assert_eq!(
            raw.len() as i64,
            m.size,
            "each row points at its message's bytes"
        );
    }
    let ledger = s
        .store
        .ledger(Some(s.receiver.id), None, 1000)
        .await
        .unwrap();
    assert_eq!(ledger.len(), N);
    assert!(
        ledger
            .iter()
            .all(|e| e.status == LedgerStatus::Delivered && e.post_action_done && e.attempts == 1)
    );
    assert_eq!(s.checkpoint().await, Some(u32::try_from(N).unwrap()));
    {
        let server = server.lock().unwrap();
        assert_eq!(server.seen().len(), N, "every message marked seen");
        // 250 per batch: three fetches; the post-actions wait for the end of the pass (fewer
        // than `ACT_AFTER` messages), so one flag command.
        assert_eq!((server.fetches, server.stores), (3, 1));
    }
    let again = s.pass(&server).await;
    assert_eq!((again.available, again.delivered), (0, 0));
    assert_eq!(s.store.message_count().await.unwrap(), N as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_pass_acts_once_enough_messages_wait_not_only_at_its_end() {
    let n = 2 * crate::pass::ACT_AFTER + 300;
    let s = setup(SinkKind::Store, None).await;
    let server = Server::with(n);
    let summary = s.pass(&server).await;
    assert_eq!((summary.delivered, summary.failed), (n as u64, 0));
    {
        let server = server.lock().unwrap();
        assert_eq!(server.seen().len(), n, "every message marked seen");
        // Flags are set when `ACT_AFTER` messages wait (checked between fetches, so a little
        // later at times), twice in this pass, and the rest at its end: never once per batch.
        assert!(
            (2..=3).contains(&server.stores),
            "{} flag commands for {} fetches",
            server.stores,
            server.fetches
        );
        assert!(server.fetches > 10);
    }
    assert_eq!(s.checkpoint().await, Some(u32::try_from(n).unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_a_batchs_delivery_and_its_ledger_commit_delivers_each_once() {
    const N: usize = 600;
    // The built-in store: the rows were committed, the ledger commit of the batches after the
    // first never happened; for some messages even the rows are missing (the crash came before
    // the store's commit).
    let s = setup(SinkKind::Store, None).await;
    let server = Server::with(N);
    s.pass(&server).await;
    s.sql("DELETE FROM ledger WHERE uid > 250").await;
    s.sql("UPDATE checkpoints SET last_uid = 250").await;
    s.sql("DELETE FROM messages WHERE idempotency_key LIKE '%-5__'")
        .await;
    for m in &mut server.lock().unwrap().inbox {
        if m.uid > 250 {
            m.flags.clear();
        }
    }
    assert!(s.store.message_count().await.unwrap() < N as i64);
    let summary = s.pass(&server).await;
    assert_eq!(
        (summary.available, summary.delivered, summary.already_seen),
        ((N - 250) as u64, (N - 250) as u64, 0)
    );
    assert_eq!(s.store.message_count().await.unwrap(), N as i64);
    assert_eq!(server.lock().unwrap().seen().len(), N);
    assert_eq!(s.checkpoint().await, Some(u32::try_from(N).unwrap()));

    // A maildir: the same, and a mail reader has meanwhile moved some messages to cur/.
    let out = tempfile::tempdir().unwrap();
    let maildir = out.path().join("Maildir");
    let s = setup(SinkKind::Maildir, Some(maildir.display().to_string())).await;
    let server = Server::with(N);
    s.pass(&server).await;
    s.sql("DELETE FROM ledger WHERE uid > 250").await;
    s.sql("UPDATE checkpoints SET last_uid = 250").await;
    for m in &mut server.lock().unwrap().inbox {
        if m.uid > 250 {
            m.flags.clear();
        }
    }
    for name in files(&maildir.join("new")).iter().step_by(3) {
        std::fs::rename(
            maildir.join("new").join(name),
            maildir.join("cur").join(format!("{name}:2,S")),
        )
        .unwrap();
    }
    let summary = s.pass(&server).await;
    assert_eq!(summary.delivered, (N - 250) as u64);
    let (new, cur) = (files(&maildir.join("new")), files(&maildir.join("cur")));
    assert_eq!(
        new.len() + cur.len(),
        N,
        "each message once: {new:?} {cur:?}"
    );
    assert!(files(&maildir.join("tmp")).is_empty());
    let receipts: Vec<_> = s
        .store
        .ledger(Some(s.receiver.id), Some(LedgerStatus::Delivered), 1000)
        .await
        .unwrap();
    assert_eq!(receipts.len(), N);
    assert_eq!(server.lock().unwrap().seen().len(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_stops_the_pass_exactly_at_the_failed_message() {
    const N: usize = 20;
    let out = tempfile::tempdir().unwrap();
    let code = out.path().join("code");
    let command = format!(
        "case \"$OAUTHIMAP_IDEMPOTENCY_KEY\" in *-7) exit $(cat {code});; esac; cat > {dir}/\"$OAUTHIMAP_IDEMPOTENCY_KEY\"",
        code = code.display(),
        dir = out.path().display()
    );
    let s = setup(SinkKind::Command, Some(command)).await;
    let server = Server::with(N);

    // Exit 75: worth retrying. The pass stops at UID 7; nothing after it moves.
    std::fs::write(&code, "75").unwrap();
    let summary = s.pass(&server).await;
    assert_eq!((summary.delivered, summary.failed), (6, 1));
    assert!(
        summary
            .stopped
            .as_deref()
            .unwrap()
            .contains("the sink failed for UID 7"),
        "{summary:?}"
    );
    assert_eq!(server.lock().unwrap().seen(), (1..=6).collect::<Vec<_>>());
    assert_eq!(s.checkpoint().await, Some(6));
    let failed = s
        .store
        .ledger_entry(s.receiver.id, 1_700_000_000, 7)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((failed.status, failed.attempts), (LedgerStatus::Failed, 1));
    let wait = summary
        .waiting
        .clone()
        .expect("the held message is reported");
    assert_eq!((wait.uid, wait.attempts), (7, 1));
    assert_eq!(Some(wait.since), failed.failing_since);
    assert!(wait.error.contains("exit 75"), "{wait:?}");

    // Still down, many times over: the message keeps holding the line, nothing is set aside
    // however often it is tried, and the outage is measured from the first failure.
    for attempt in 2..=8 {
        let summary = s.pass(&server).await;
        assert_eq!((summary.delivered, summary.failed), (0, 1), "try {attempt}");
        let wait = summary.waiting.unwrap();
        assert_eq!(
            (wait.uid, wait.attempts, Some(wait.since)),
            (7, attempt, failed.failing_since)
        );
    }
    assert_eq!(server.lock().unwrap().seen(), (1..=6).collect::<Vec<_>>());
    assert_eq!(s.checkpoint().await, Some(6));

    // Exit 1: refused for good. UID 7 is set aside and the pass goes on past it.
    std::fs::write(&code, "1").unwrap();
    let summary = s.pass(&server).await;
    assert_eq!(
        (summary.delivered, summary.failed, summary.stopped),
        (13, 1, None)
    );
    let seen = server.lock().unwrap().seen();
    assert_eq!(seen.len(), N - 1);
    assert!(
        !seen.contains(&7),
        "the dead letter stays unread on the server"
    );
    assert_eq!(s.checkpoint().await, Some(u32::try_from(N).unwrap()));
    let dead = s
        .store
        .ledger_entry(s.receiver.id, 1_700_000_000, 7)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((dead.status, dead.attempts), (LedgerStatus::Dead, 9));
    assert!(
        dead.reason
            .as_deref()
            .unwrap()
            .starts_with("refused by the sink"),
        "{dead:?}"
    );
    assert_eq!(
        files(out.path()).len(),
        N,
        "the code file and every message but UID 7"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_recognises_content_delivered_before_and_within_the_batch() {
    let s = setup(SinkKind::Store, None).await;
    let server = Server::with(5);
    assert_eq!(s.pass(&server).await.delivered, 5);
    {
        // The server renumbers the folder under a new UIDVALIDITY and a new message arrives
        // twice with the same content.
        let mut server = server.lock().unwrap();
        server.uid_validity += 1;
        let old: Vec<Vec<u8>> = server.inbox.drain(..).map(|m| m.raw).collect();
        for raw in old {
            server.add(raw);
        }
        server.add(message(6));
        server.add(message(6));
    }
    let summary = s.pass(&server).await;
    assert_eq!(
        (summary.available, summary.delivered, summary.already_seen),
        (7, 1, 6)
    );
    assert_eq!(s.store.message_count().await.unwrap(), 6);
    assert_eq!(
        s.store.checkpoint(s.receiver.id).await.unwrap(),
        Some(Checkpoint {
            uid_validity: 1_700_000_001,
            last_uid: 7
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_past_the_outage_limit_sets_the_message_aside_and_the_line_moves_on() {
    let out = tempfile::tempdir().unwrap();
    let code = out.path().join("code");
    let command = format!(
        "case \"$OAUTHIMAP_IDEMPOTENCY_KEY\" in *-2) exit $(cat {code});; esac; cat > {dir}/\"$OAUTHIMAP_IDEMPOTENCY_KEY\"",
        code = code.display(),
        dir = out.path().display()
    );
    let mut s = setup(SinkKind::Command, Some(command)).await;
    s.policy.max_outage = Duration::from_millis(600);
    let server = Server::with(4);
    std::fs::write(&code, "75").unwrap();
    let summary = s.pass(&server).await;
    assert_eq!(summary.waiting.as_ref().map(|w| w.uid), Some(2));
    assert!(summary.set_aside_after_outage.is_empty());
    // Within the limit: still held.
    let summary = s.pass(&server).await;
    assert_eq!(summary.waiting.as_ref().map(|w| w.uid), Some(2));
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Past it: set aside with the reason and an event; the rest go through in order.
    let summary = s.pass(&server).await;
    assert_eq!(
        (summary.delivered, summary.failed, summary.waiting.is_none()),
        (2, 1, true)
    );
    assert_eq!(summary.set_aside_after_outage.len(), 1, "{summary:?}");
    assert_eq!(server.lock().unwrap().seen(), vec![1, 3, 4]);
    let dead = s
        .store
        .ledger_entry(s.receiver.id, 1_700_000_000, 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.status, LedgerStatus::Dead);
    assert!(
        dead.reason
            .as_deref()
            .unwrap()
            .contains("set aside after the sink failed for"),
        "{dead:?}"
    );
    let events = s.store.events(None, None, 10).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "message.set_aside" && e.message.contains("UID 2")),
        "{events:?}"
    );
}

/// A command sink sees a minimal environment: none of the service's variables (`OAUTHIMAP_*`
/// settings such as the master key, the test runner's own), only `PATH`, `HOME`, `LANG`, … and
/// the message's `OAUTHIMAP_IDEMPOTENCY_KEY`, `OAUTHIMAP_RECEIVER`, `OAUTHIMAP_MESSAGE_ID`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sink_gets_no_variable_of_the_service() {
    let out = tempfile::tempdir().unwrap();
    let command = format!(
        "env > {dir}/\"$OAUTHIMAP_IDEMPOTENCY_KEY\"",
        dir = out.path().display()
    );
    let s = setup(SinkKind::Command, Some(command)).await;
    let server = Server::with(1);
    assert_eq!(s.pass(&server).await.delivered, 1);
    let file = files(out.path()).pop().expect("the command ran");
    let env = std::fs::read_to_string(out.path().join(&file)).unwrap();
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    let allowed = [
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TZ",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "_",
        "OAUTHIMAP_IDEMPOTENCY_KEY",
        "OAUTHIMAP_RECEIVER",
        "OAUTHIMAP_MESSAGE_ID",
    ];
    for name in &names {
        assert!(allowed.contains(name), "{name} reached the command:\n{env}");
    }
    assert!(env.contains("OAUTHIMAP_RECEIVER=r\n"), "{env}");
    // The runner's environment is richer than that, so the check above compared something.
    let parent = std::env::vars_os()
        .filter(|(k, _)| k.to_str().is_some_and(|k| !allowed.contains(&k)))
        .count();
    assert!(parent > 0, "the test process has variables of its own");
}

/// Fencing: an instance that stalled past its receiver lease while another took over records
/// nothing and touches nothing on the server, and the new holder collects every message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_under_a_lost_lease_records_and_acts_on_nothing() {
    let s = setup(SinkKind::Store, None).await;
    let server = Server::with(5);
    let lease = format!("receiver:{}", s.receiver.id.0);
    let a = s.store.take_lease(&lease, "a", 1).await.unwrap().unwrap();
    let first = s.pass_under(&server, Some(&a)).await.unwrap();
    assert_eq!(first.delivered, 5);
    // A stalls past its lease; B takes the receiver over; new mail comes in.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b = s
        .store
        .take_lease(&lease, "b", 60_000)
        .await
        .unwrap()
        .unwrap();
    for i in 6..=8 {
        server.lock().unwrap().add(message(i));
    }
    let stale = s.pass_under(&server, Some(&a)).await.unwrap_err();
    assert!(
        matches!(
            stale,
            crate::CollectError::Store(oauthimap_store::StoreError::Fenced { .. })
        ),
        "{stale}"
    );
    let ledger = s
        .store
        .ledger(Some(s.receiver.id), None, 100)
        .await
        .unwrap();
    assert_eq!(ledger.len(), 5, "A recorded nothing of the new mail");
    assert_eq!(
        server.lock().unwrap().seen().len(),
        5,
        "A marked nothing new as seen on the server"
    );
    let second = s.pass_under(&server, Some(&b)).await.unwrap();
    assert_eq!(second.delivered, 3, "B collects the new mail");
    assert_eq!(
        s.store.message_count().await.unwrap(),
        8,
        "each message once"
    );
    assert_eq!(server.lock().unwrap().seen().len(), 8);
}

#[test]
fn a_retry_time_past_what_an_instant_holds_means_no_deadline() {
    let now = tokio::time::Instant::now();
    assert_eq!(
        crate::run::retry_deadline(now, Duration::from_secs(30)),
        Some(now + Duration::from_secs(30))
    );
    // `collect --once --retry-for 300000000000y` panicked ("overflow when adding duration to
    // instant").
    for long in [Duration::from_hours(8_766 * 300_000_000_000), Duration::MAX] {
        assert_eq!(crate::run::retry_deadline(now, long), None);
    }
}
