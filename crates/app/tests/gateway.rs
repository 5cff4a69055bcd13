//! The IMAP gateway against a real Dovecot (its oauth2 passdb checks our tokens at the fake
//! identity provider), with real clients: Python's imaplib (LOGIN, STARTTLS, IMAPS, AUTHENTICATE
//! PLAIN), curl, and raw sockets for IDLE and bad input. What a client fetches through the
//! gateway is byte for byte what Dovecot holds.
#![allow(clippy::too_many_lines)] // each test reads best as one story

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use oauthimap_app::{AccountSelector, UpstreamScope, UpstreamServer};
use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions};
use oauthimap_store::Backend;
use oauthimap_types::Security;
use secrecy::ExposeSecret;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

mod common;
use common::{Harness, RunningGateway, USER, harness, start_gateway};

fn message(i: usize) -> Vec<u8> {
    format!(
        "From: Sender {i} <sender{i}@example.com>\r\nTo: help@contoso.com\r\nSubject: Ticket {i}\r\n\
         Message-ID: <g{i}@example.com>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\nBody of message {i}.\r\n"
    )
    .into_bytes()
}

/// The gateway in front of Dovecot: a signed-in account, a gateway password, listeners for IMAP
/// (STARTTLS) and IMAPS on loopback.
struct Setup {
    h: Harness,
    dovecot: Dovecot,
    password: String,
    imap: SocketAddr,
    imaps: SocketAddr,
    gateway: RunningGateway,
}

async fn setup() -> Setup {
    setup_with(&[]).await
}

async fn setup_with(env: &[(&str, String)]) -> Setup {
    let h = harness(Backend::Sqlite, env).await;
    let dovecot = Dovecot::start(DovecotOptions::new(h.idp.introspection_url()))
        .await
        .unwrap();
    for i in 1..=5 {
        dovecot.deliver(USER, &message(i)).unwrap();
    }
    let (status, page) = h.sign_in("Contoso", None).await;
    assert_eq!(status, 200, "{page}");
    h.app
        .set_upstream(
            &UpstreamScope::Application("Contoso".into()),
            oauthimap_app::Protocol::Imap,
            Some(UpstreamServer {
                host: "localhost".into(),
                port: dovecot.imaps_port(),
                security: Security::Tls,
                ca_file: Some(dovecot.ca_pem_path().display().to_string()),
            }),
        )
        .await
        .unwrap();
    let (_, password) = h
        .app
        .add_gateway_password(&AccountSelector::new(USER, None), "glpi", &[], None)
        .await
        .unwrap();
    let (cert, key) = dovecot.server_cert_paths();
    let gateway = start_gateway(&h.app, cert, key).await;
    Setup {
        imap: gateway.imap,
        imaps: gateway.imaps,
        password: password.expose_secret().to_owned(),
        h,
        dovecot,
        gateway,
    }
}

impl Setup {
    async fn finish(self) {
        self.gateway.stop().await;
        self.dovecot.stop().await.unwrap();
        self.h.t.cleanup().await;
    }

    /// Runs a Python script with `PORT`, `TLS_PORT`, `USER`, `PASSWORD` and `CA` set; its
    /// standard output.
    async fn python(&self, script: &str) -> String {
        let out = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .env("PORT", self.imap.port().to_string())
            .env("TLS_PORT", self.imaps.port().to_string())
            .env("USER", USER)
            .env("PASSWORD", &self.password)
            .env("CA", self.dovecot.ca_pem_path())
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "python failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// Fetches every message with imaplib and prints `uid sha256` lines; `CONNECT` opens the session.
fn fetch_all_script(connect: &str) -> String {
    format!(
        r#"
import imaplib, os, ssl, hashlib
ctx = ssl.create_default_context(cafile=os.environ["CA"])
{connect}
typ, _ = m.select("INBOX")
assert typ == "OK", typ
typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
assert typ == "OK", typ
for item in data:
    if isinstance(item, tuple):
        uid = item[0].split(b"UID ")[1].split(b" ")[0].decode()
        print(uid, hashlib.sha256(item[1]).hexdigest())
m.logout()
"#
    )
}

async fn expected(s: &Setup) -> String {
    use std::fmt::Write;
    let mut lines = String::new();
    for info in s.dovecot.list_messages(USER, "INBOX").await.unwrap() {
        let raw = s
            .dovecot
            .fetch_message(USER, "INBOX", info.uid)
            .await
            .unwrap();
        let _ = writeln!(lines, "{} {}", info.uid, oauthimap_mime::sha256_hex(&raw));
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_clients_fetch_byte_identical_mail_through_the_gateway() {
    let s = setup().await;
    let want = expected(&s).await;
    assert_eq!(want.lines().count(), 5);

    // LOGIN over plain IMAP on loopback, as GLPI's collector or fetchmail on the same host.
    let got = s
        .python(&fetch_all_script(
            r#"m = imaplib.IMAP4("127.0.0.1", int(os.environ["PORT"]))
caps = m.capabilities
assert "AUTH=PLAIN" in caps and "STARTTLS" in caps, caps
typ, data = m.login(os.environ["USER"], os.environ["PASSWORD"])
assert typ == "OK", data
typ, caps = m.capability()
assert typ == "OK" and b"IDLE" in caps[0], caps"#,
        ))
        .await;
    assert_eq!(got, want, "LOGIN over IMAP");

    // STARTTLS, then AUTHENTICATE PLAIN with an initial response.
    let got = s
        .python(&fetch_all_script(
            r#"m = imaplib.IMAP4("localhost", int(os.environ["PORT"]))
m.starttls(ssl_context=ctx)
assert "STARTTLS" not in m.capabilities, m.capabilities
try:
    m._simple_command("STARTTLS")
    raise SystemExit("STARTTLS twice was accepted")
except imaplib.IMAP4.error as e:
    assert "already active" in str(e), e
m.authenticate("PLAIN", lambda _: ("\0" + os.environ["USER"] + "\0" + os.environ["PASSWORD"]).encode())"#,
        ))
        .await;
    assert_eq!(got, want, "AUTHENTICATE PLAIN after STARTTLS");

    // IMAPS (implicit TLS), with the login name in another case.
    let got = s
        .python(&fetch_all_script(
            r#"m = imaplib.IMAP4_SSL("localhost", int(os.environ["TLS_PORT"]), ssl_context=ctx)
m.login(os.environ["USER"].upper(), os.environ["PASSWORD"])"#,
        ))
        .await;
    assert_eq!(got, want, "IMAPS, login name in upper case");

    // curl's IMAP client fetches one message by UID.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--user"])
        .arg(format!("{USER}:{}", s.password))
        .arg(format!("imap://127.0.0.1:{}/INBOX;UID=3", s.imap.port()))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw3 = s.dovecot.fetch_message(USER, "INBOX", 3).await.unwrap();
    assert_eq!(out.stdout, raw3, "curl gets the exact bytes");

    // Wrong password, unknown user: the same clean refusal.
    let out = s
        .python(
            r#"
import imaplib, os
for user, password in [(os.environ["USER"], "wrong"), ("nobody@contoso.com", os.environ["PASSWORD"])]:
    m = imaplib.IMAP4("127.0.0.1", int(os.environ["PORT"]))
    try:
        m.login(user, password)
        print("LOGGED IN")
    except imaplib.IMAP4.error as e:
        text = e.args[0]
        print(text.decode() if isinstance(text, bytes) else text)
"#,
        )
        .await;
    assert_eq!(
        out,
        "[AUTHENTICATIONFAILED] Invalid credentials\n[AUTHENTICATIONFAILED] Invalid credentials\n"
    );
    // The password's last use is recorded, and no log or event holds it.
    let list = s.h.app.gateway_passwords(None).await.unwrap();
    assert!(list[0].last_used_at.is_some());
    assert_eq!(list[0].last_remote.as_deref(), Some("127.0.0.1"));
    let events = s.h.app.store().events(None, None, 100).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "gateway.login"));
    assert!(events.iter().all(|e| !e.message.contains(&s.password)));
    s.finish().await;
}

async fn read_until(
    reader: &mut BufReader<tokio::net::TcpStream>,
    what: &str,
    within: Duration,
) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + within;
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout_at(deadline.into(), reader.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("no {what:?} within {within:?}; got:\n{seen}"))
            .unwrap();
        assert!(n > 0, "closed before {what:?}; got:\n{seen}");
        seen.push_str(&line);
        if line.contains(what) {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_through_the_gateway_sees_new_mail_within_two_seconds() {
    let s = setup().await;
    let tcp = tokio::net::TcpStream::connect(s.imap).await.unwrap();
    let mut c = BufReader::new(tcp);
    read_until(&mut c, "* OK", Duration::from_secs(5)).await;
    // A synchronizing literal for the password, as c-client (php-imap) sends.
    c.get_mut()
        .write_all(format!("a1 LOGIN \"{USER}\" {{{}}}\r\n", s.password.len()).as_bytes())
        .await
        .unwrap();
    read_until(&mut c, "+ ", Duration::from_secs(5)).await;
    c.get_mut()
        .write_all(format!("{}\r\n", s.password).as_bytes())
        .await
        .unwrap();
    read_until(&mut c, "a1 OK", Duration::from_secs(10)).await;
    c.get_mut()
        .write_all(b"a2 SELECT INBOX\r\na3 IDLE\r\n")
        .await
        .unwrap();
    read_until(&mut c, "+ ", Duration::from_secs(5)).await;
    let started = Instant::now();
    s.dovecot.deliver(USER, &message(6)).unwrap();
    read_until(&mut c, "* 6 EXISTS", Duration::from_secs(2)).await;
    eprintln!("IDLE saw new mail after {:?}", started.elapsed());
    c.get_mut()
        .write_all(b"DONE\r\na4 LOGOUT\r\n")
        .await
        .unwrap();
    read_until(&mut c, "a4 OK", Duration::from_secs(5)).await;
    s.finish().await;
}

/// Sends `lines` on a fresh connection and returns everything the gateway answered until it
/// closed or `last` appeared.
async fn exchange(addr: SocketAddr, input: &[u8], last: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut c = BufReader::new(tcp);
    read_until(&mut c, "* OK", Duration::from_secs(5)).await;
    c.get_mut().write_all(input).await.unwrap();
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        match tokio::time::timeout(Duration::from_secs(10), c.read_line(&mut line)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return seen,
            Ok(Ok(_)) => {
                seen.push_str(&line);
                if line.contains(last) {
                    return seen;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_protocol_answers_and_no_panic() {
    let s = setup().await;
    let cases: &[(&[u8], &str, &str)] = &[
        (b"a1 SELECT INBOX\r\n", "a1 BAD Log in first", "a1 "),
        (b"a1 FROB\r\n", "a1 BAD Unknown command", "a1 "),
        (b"\xff\xfe garbage\r\n", "* BAD Invalid tag", "BAD"),
        (b"a1 LOGIN onlyone\r\n", "a1 BAD LOGIN takes", "a1 "),
        (
            b"a1 LOGIN \"unterminated\r\n",
            "BAD Unterminated quoted string",
            "BAD",
        ),
        (
            b"a1 AUTHENTICATE PLAIN !!notbase64\r\n",
            "a1 BAD The SASL response is not base64",
            "a1 ",
        ),
        (
            b"a1 AUTHENTICATE PLAIN\r\n*\r\n",
            "a1 BAD Authentication cancelled",
            "a1 ",
        ),
        (
            b"a1 AUTHENTICATE CRAM-MD5\r\n",
            "a1 NO Unsupported authentication mechanism",
            "a1 ",
        ),
        (b"a1 LOGIN x {99999}\r\n", "a1 BAD Literal too large", "BYE"),
        (
            b"a1 STARTTLS\r\na2 NOOP\r\n",
            "BYE data after STARTTLS",
            "BYE",
        ),
    ];
    for (input, want, last) in cases {
        let got = exchange(s.imap, input, last).await;
        assert!(
            got.contains(want),
            "{:?}: {got}",
            String::from_utf8_lossy(input)
        );
    }
    // A line over 64 KiB is refused without being buffered whole.
    let mut long = b"a1 LOGIN ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 70 * 1024));
    long.extend(b"\r\n");
    let got = exchange(s.imap, &long, "BYE").await;
    assert!(got.contains("BYE line too long"), "{got}");
    // Three failed logins end the connection.
    let got = exchange(
        s.imap,
        b"a1 LOGIN help@contoso.com x\r\na2 LOGIN help@contoso.com y\r\na3 LOGIN help@contoso.com z\r\n",
        "BYE",
    )
    .await;
    assert_eq!(got.matches("NO [AUTHENTICATIONFAILED]").count(), 3, "{got}");
    assert!(got.contains("BYE Too many failed logins"), "{got}");
    // A client that hangs up mid-command harms nothing: the next one is served.
    {
        let mut tcp = tokio::net::TcpStream::connect(s.imap).await.unwrap();
        tcp.write_all(b"a1 LOGIN \"help@cont").await.unwrap();
    }
    let got = exchange(s.imap, b"a1 CAPABILITY\r\n", "a1 OK").await;
    assert!(got.contains("AUTH=PLAIN"), "{got}");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_that_needs_a_new_sign_in_gets_a_clean_no_and_an_event() {
    let s = setup().await;
    let account = s.h.app.list_accounts(None).await.unwrap().remove(0);
    assert!(s.h.idp.revoke_user_tokens(USER) > 0);
    s.h.expire_stored_token(account.id).await;
    let login = format!("a1 LOGIN {USER} {}\r\n", s.password);
    let got = exchange(s.imap, login.as_bytes(), "a1 ").await;
    assert!(got.contains("a1 NO [AUTHORIZATIONFAILED]"), "{got}");
    assert!(got.contains("signed in again"), "{got}");
    // Now the account is known to need a new sign-in: refused before going upstream, with an
    // event.
    let got = exchange(s.imap, login.as_bytes(), "a1 ").await;
    assert!(got.contains("a1 NO [AUTHORIZATIONFAILED]"), "{got}");
    let events = s.h.app.store().events(None, None, 100).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "account.needs_reauth"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.kind == "gateway.refused"),
        "{events:?}"
    );
    // A removed password no longer works.
    s.h.app
        .remove_gateway_password(&AccountSelector::new(USER, None), "glpi")
        .await
        .unwrap();
    let got = exchange(s.imap, login.as_bytes(), "a1 ").await;
    assert!(got.contains("a1 NO [AUTHENTICATIONFAILED]"), "{got}");
    s.finish().await;
}

/// fetchmail over IMAP and a PHP script with php-imap (the c-client library GLPI's collector
/// used) doing what GLPI's collector does: LOGIN, SEARCH, FETCH, mark seen. Both get the exact
/// bytes Dovecot holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchmail_and_php_imap_collect_through_the_gateway() {
    let s = setup().await;
    let want = expected(&s).await;
    let dir = tempfile::tempdir().unwrap();

    // fetchmail, keeping the mail on the server, each message handed to an MDA that files it.
    let out_dir = dir.path().join("fetchmail");
    std::fs::create_dir_all(&out_dir).unwrap();
    let rc = dir.path().join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "poll 127.0.0.1 service {port} protocol IMAP auth password\n  user \"{USER}\" password \"{pw}\"\n  keep fetchall sslproto ''\n  mda \"sh -c 'cat > {out}/$(date +%s%N)'\"\n",
            port = s.imap.port(),
            pw = s.password,
            out = out_dir.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = tokio::process::Command::new("fetchmail")
        .args(["-f"])
        .arg(&rc)
        .args(["--nodetach", "--nosyslog", "-v"])
        .env("HOME", dir.path())
        .env("FETCHMAILHOME", dir.path())
        .output()
        .await
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "fetchmail: {log}");
    assert!(
        !log.contains(&s.password),
        "fetchmail's log shows no password"
    );
    // fetchmail adds a Received: header of its own in front; the message follows it whole.
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        5,
        "fetchmail delivered every message: {log}"
    );
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let i: usize = text
            .split("Subject: Ticket ")
            .nth(1)
            .and_then(|r| r.split(['\r', '\n']).next())
            .and_then(|n| n.parse().ok())
            .expect("a subject");
        let original = String::from_utf8(message(i)).unwrap().replace("\r\n", "\n");
        assert!(
            text.replace("\r\n", "\n").ends_with(&original),
            "message {i} arrived whole"
        );
    }

    // php-imap, as GLPI's mail collector: open, search, fetch header and body, mark seen.
    let php = r#"<?php
$m = imap_open("{127.0.0.1:" . getenv("PORT") . "/imap/notls}INBOX", getenv("USER"), getenv("PASSWORD"), 0, 1);
if ($m === false) { fwrite(STDERR, implode("; ", imap_errors() ?: [])); exit(1); }
$uids = imap_search($m, "ALL", SE_UID);
foreach ($uids as $uid) {
    $raw = imap_fetchheader($m, $uid, FT_UID | FT_PREFETCHTEXT) . imap_body($m, $uid, FT_UID | FT_PEEK);
    echo $uid, " ", hash("sha256", $raw), "\n";
    imap_setflag_full($m, (string)$uid, "\\Seen", ST_UID);
}
imap_close($m);
"#;
    let out = tokio::process::Command::new("php")
        .args(["-r", php.trim_start_matches("<?php")])
        .env("PORT", s.imap.port().to_string())
        .env("USER", USER)
        .env("PASSWORD", &s.password)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "php: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        want,
        "php-imap gets the exact bytes"
    );
    let flags = s.dovecot.list_messages(USER, "INBOX").await.unwrap();
    assert!(
        flags.iter().all(|m| m.flags.iter().any(|f| f == "\\Seen")),
        "marked seen through the gateway: {flags:?}"
    );
    s.finish().await;
}

/// Gateway sessions count against the mailbox's connection limit, shared with the receivers:
/// over it, a login gets `NO [LIMIT]`; a session that ends gives its slot back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_capped_per_mailbox() {
    let s = setup_with(&[(
        "OAUTHIMAP_COLLECTOR__MAX_CONNECTIONS_PER_ACCOUNT",
        "1".into(),
    )])
    .await;
    let login = format!("a1 LOGIN {USER} {}\r\n", s.password);
    let tcp = tokio::net::TcpStream::connect(s.imap).await.unwrap();
    let mut first = BufReader::new(tcp);
    read_until(&mut first, "* OK", Duration::from_secs(5)).await;
    first.get_mut().write_all(login.as_bytes()).await.unwrap();
    read_until(&mut first, "a1 OK", Duration::from_secs(10)).await;
    let got = exchange(s.imap, login.as_bytes(), "a1 ").await;
    assert!(got.contains("a1 NO [LIMIT]"), "{got}");
    first.get_mut().write_all(b"a2 LOGOUT\r\n").await.unwrap();
    read_until(&mut first, "a2 OK", Duration::from_secs(5)).await;
    drop(first);
    let mut ok = String::new();
    for _ in 0..20 {
        ok = exchange(s.imap, login.as_bytes(), "a1 ").await;
        if ok.contains("a1 OK") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok.contains("a1 OK"), "the slot came back: {ok}");
    s.finish().await;
}
