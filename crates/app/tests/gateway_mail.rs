//! The gateway's POP3 and SMTP submission sides against a real Dovecot (POP3 and submission with
//! its oauth2 passdb checking our tokens at the fake identity provider; submission relays to
//! Debian's aiosmtpd, which keeps each message's bytes). Real clients: Python's poplib and
//! smtplib, curl `pop3://` and `smtp://`, fetchmail over POP3, swaks and msmtp. What a client
//! fetches is byte for byte what Dovecot holds; what it submits is byte for byte what the SMTP
//! sink receives.
#![allow(clippy::too_many_lines)] // each test reads best as one story

use std::net::SocketAddr;
use std::time::Duration;

use oauthimap_app::{AccountSelector, Protocol, UpstreamScope, UpstreamServer};
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
         Message-ID: <p{i}@example.com>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\nBody of message {i}.\r\n\
         .A line that starts with a dot.\r\n.\r\n..\r\nEnd.\r\n"
    )
    .into_bytes()
}

struct Setup {
    h: Harness,
    dovecot: Dovecot,
    password: String,
    gateway: RunningGateway,
}

async fn setup() -> Setup {
    let h = harness(Backend::Sqlite, &[]).await;
    let mut options = DovecotOptions::new(h.idp.introspection_url());
    options.mail_services = true;
    let dovecot = Dovecot::start(options).await.unwrap();
    for i in 1..=4 {
        dovecot.deliver(USER, &message(i)).unwrap();
    }
    let (status, page) = h.sign_in("Contoso", None).await;
    assert_eq!(status, 200, "{page}");
    let ca = Some(dovecot.ca_pem_path().display().to_string());
    // POP3 over implicit TLS and submission with STARTTLS, as at the providers.
    for (protocol, port, security) in [
        (Protocol::Pop3, dovecot.pop3s_port(), Security::Tls),
        (
            Protocol::Smtp,
            dovecot.submission_port(),
            Security::StartTls,
        ),
    ] {
        h.app
            .set_upstream(
                &UpstreamScope::Application("Contoso".into()),
                protocol,
                Some(UpstreamServer {
                    host: "localhost".into(),
                    port,
                    security,
                    ca_file: ca.clone(),
                }),
            )
            .await
            .unwrap();
    }
    let (_, password) = h
        .app
        .add_gateway_password(&AccountSelector::new(USER, None), "scanner", &[], None)
        .await
        .unwrap();
    let (cert, key) = dovecot.server_cert_paths();
    let gateway = start_gateway(&h.app, cert, key).await;
    Setup {
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

    /// Runs a Python script with the gateway's ports, `USER`, `PASSWORD` and `CA` set; its
    /// standard output.
    async fn python(&self, script: &str) -> String {
        let out = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .env("POP3", self.gateway.pop3.port().to_string())
            .env("POP3S", self.gateway.pop3s.port().to_string())
            .env("SUBMISSION", self.gateway.submission.port().to_string())
            .env("SUBMISSIONS", self.gateway.submissions.port().to_string())
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

    /// `sha256` of each message Dovecot holds, in order, one per line.
    async fn expected(&self) -> String {
        use std::fmt::Write;
        let mut lines = String::new();
        for info in self.dovecot.list_messages(USER, "INBOX").await.unwrap() {
            let raw = self
                .dovecot
                .fetch_message(USER, "INBOX", info.uid)
                .await
                .unwrap();
            let _ = writeln!(lines, "{}", oauthimap_mime::sha256_hex(&raw));
        }
        lines
    }
}

/// Asserts that no log line of this test holds the gateway password, the account's access token
/// or a SASL string built from either.
async fn assert_logs_hold_no_secret(s: &Setup, logs: &common::Capture) {
    use base64::Engine as _;
    let account = s.h.app.list_accounts(None).await.unwrap().remove(0);
    let mut secrets = vec![
        s.password.clone(),
        base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{}", s.password)),
        base64::engine::general_purpose::STANDARD.encode(&s.password),
    ];
    if let Ok(token) = s.h.app.tokens().access_token(account.id, false).await {
        let token = token.secret.expose_secret().to_owned();
        secrets.push(oauthimap_imap::xoauth2_initial_response(USER, &token));
        secrets.push(token);
    }
    let text = logs.text();
    assert!(
        text.contains("oauthimap"),
        "the capture saw the service's logs"
    );
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a log line holds a secret");
    }
}

/// Reads lines until one contains `last` (or 10 s pass, or the connection closes).
async fn exchange(addr: SocketAddr, greeting: &str, input: &[u8], last: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut c = BufReader::new(tcp);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert!(line.starts_with(greeting), "{line}");
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

/// poplib (USER/PASS on the loopback port, STLS, POP3S, AUTH PLAIN), curl `pop3://` and
/// fetchmail over POP3 all get the exact bytes Dovecot holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_clients_fetch_byte_identical_mail_through_the_gateway() {
    let s = setup().await;
    let want = s.expected().await;
    let script = |connect: &str| {
        format!(
            r#"
import poplib, os, ssl, hashlib, base64
ctx = ssl.create_default_context(cafile=os.environ["CA"])
{connect}
count, _ = p.stat()
for i in range(1, count + 1):
    _, lines, _ = p.retr(i)
    print(hashlib.sha256(b"\r\n".join(lines) + b"\r\n").hexdigest())
p.quit()
"#
        )
    };
    let connects = [
        // Plain on loopback, USER/PASS: what an old client on the same host does.
        r#"p = poplib.POP3("127.0.0.1", int(os.environ["POP3"]))
p.user(os.environ["USER"]); p.pass_(os.environ["PASSWORD"])"#,
        r#"p = poplib.POP3("127.0.0.1", int(os.environ["POP3"]))
assert "STLS" in p.capa()
p.stls(context=ctx)
p.user(os.environ["USER"]); p.pass_(os.environ["PASSWORD"])"#,
        r#"p = poplib.POP3_SSL("localhost", int(os.environ["POP3S"]), context=ctx)
p.user(os.environ["USER"]); p.pass_(os.environ["PASSWORD"])"#,
        r#"p = poplib.POP3("127.0.0.1", int(os.environ["POP3"]))
ir = base64.b64encode(b"\0" + os.environ["USER"].encode() + b"\0" + os.environ["PASSWORD"].encode()).decode()
r = p._shortcmd("AUTH PLAIN " + ir)
assert r.startswith(b"+OK"), r"#,
    ];
    for connect in connects {
        assert_eq!(s.python(&script(connect)).await, want, "{connect}");
    }

    // curl pop3:// lists, then retrieves message 2.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--fail"])
        .arg(format!("pop3://127.0.0.1:{}/2", s.gateway.pop3.port()))
        .arg("-u")
        .arg(format!("{USER}:{}", s.password))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = want.lines().nth(1).unwrap();
    assert_eq!(oauthimap_mime::sha256_hex(&out.stdout), second, "curl");

    // fetchmail over POP3, keeping the mail, each message handed to an MDA that files it.
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("fetchmail");
    std::fs::create_dir_all(&out_dir).unwrap();
    let rc = dir.path().join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "poll 127.0.0.1 service {port} protocol POP3 auth password\n  user \"{USER}\" password \"{pw}\"\n  keep fetchall sslproto ''\n  mda \"sh -c 'cat > {out}/$(date +%s%N)'\"\n",
            port = s.gateway.pop3.port(),
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
    let files: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert_eq!(files.len(), 4, "fetchmail delivered every message: {log}");
    for entry in files {
        // fetchmail puts a Received: header of its own in front; the message follows whole.
        let text = String::from_utf8(std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        let i: usize = text
            .split("Subject: Ticket ")
            .nth(1)
            .and_then(|r| r.split(['\r', '\n']).next())
            .and_then(|n| n.parse().ok())
            .expect("a subject");
        let original = String::from_utf8(message(i)).unwrap().replace("\r\n", "\n");
        assert!(
            text.replace("\r\n", "\n").ends_with(&original),
            "message {i} arrived whole: {text}"
        );
    }
    // A session opened after a token refresh uses the new token: the old one no longer works
    // at the server, and the login still does.
    let account = s.h.app.list_accounts(None).await.unwrap().remove(0);
    let old =
        s.h.app
            .tokens()
            .access_token(account.id, false)
            .await
            .unwrap();
    let new =
        s.h.app
            .tokens()
            .access_token(account.id, true)
            .await
            .unwrap();
    assert_ne!(old.secret.expose_secret(), new.secret.expose_secret());
    assert!(s.h.idp.revoke_access_token(old.secret.expose_secret()));
    let login = format!("USER {USER}\r\nPASS {}\r\nSTAT\r\nQUIT\r\n", s.password);
    let got = exchange(s.gateway.pop3, "+OK", login.as_bytes(), "+OK Logging out").await;
    assert!(
        got.contains("+OK Logged in") && got.contains("+OK 4 "),
        "{got}"
    );
    // The messages were kept (fetchmail's `keep`), and the logins are events.
    assert_eq!(
        s.dovecot.list_messages(USER, "INBOX").await.unwrap().len(),
        4
    );
    let events = s.h.app.store().events(None, None, 200).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "gateway.login" && e.message.starts_with("pop3 login")),
        "{events:?}"
    );
    s.finish().await;
}

/// What the SMTP sink received, with any `Received:` trace header Dovecot's submission service
/// put in front taken off.
fn without_trace(raw: &[u8]) -> Vec<u8> {
    let mut rest = raw;
    while rest.starts_with(b"Received:") {
        // A header field ends at a CRLF not followed by folding white space.
        let mut end = 0;
        loop {
            let Some(pos) = rest[end..].windows(2).position(|w| w == b"\r\n") else {
                return rest.to_vec();
            };
            end += pos + 2;
            if !matches!(rest.get(end), Some(b' ' | b'\t')) {
                break;
            }
        }
        rest = &rest[end..];
    }
    rest.to_vec()
}

fn outgoing(i: usize, client: &str) -> Vec<u8> {
    format!(
        "From: help@contoso.com\r\nTo: someone@example.org\r\nSubject: Scan {i} from {client}\r\n\
         Message-ID: <s{i}@contoso.com>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Grüße from the {client} scanner.\r\n.leading dot\r\n.\r\nlast line\r\n"
    )
    .into_bytes()
}

/// smtplib (STARTTLS, implicit TLS, plain on loopback, 8BITMIME), curl `smtp://`, swaks and
/// msmtp submit through the gateway; the SMTP sink behind Dovecot's submission service receives
/// exactly the bytes each client sent, with the envelope it gave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_clients_submit_byte_identical_mail_through_the_gateway() {
    let logs = common::capture_all_logs();
    let s = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sent: Vec<(String, Vec<u8>)> = Vec::new();

    // Python smtplib, three ways in.
    let connects = [
        (
            "smtplib-starttls",
            r#"c = smtplib.SMTP("localhost", int(os.environ["SUBMISSION"]))
c.ehlo("scanner.contoso.com"); c.starttls(context=ctx); c.ehlo("scanner.contoso.com")"#,
        ),
        (
            "smtplib-tls",
            r#"c = smtplib.SMTP_SSL("localhost", int(os.environ["SUBMISSIONS"]), context=ctx)"#,
        ),
        (
            "smtplib-plain",
            r#"c = smtplib.SMTP("127.0.0.1", int(os.environ["SUBMISSION"]))"#,
        ),
    ];
    for (i, (name, connect)) in connects.iter().enumerate() {
        let raw = outgoing(i, name);
        let file = dir.path().join(format!("{name}.eml"));
        std::fs::write(&file, &raw).unwrap();
        let script = format!(
            r#"
import smtplib, os, ssl
ctx = ssl.create_default_context(cafile=os.environ["CA"])
{connect}
c.login(os.environ["USER"], os.environ["PASSWORD"])
assert c.has_extn("8bitmime")
refused = c.sendmail("help@contoso.com", ["someone@example.org"], open("{file}", "rb").read(), mail_options=["BODY=8BITMIME"])
assert not refused, refused
c.quit()
print("sent")
"#,
            file = file.display()
        );
        assert_eq!(s.python(&script).await.trim(), "sent", "{name}");
        sent.push(((*name).to_owned(), raw));
    }

    // curl smtp:// with AUTH and an upload.
    let raw = outgoing(10, "curl");
    let file = dir.path().join("curl.eml");
    std::fs::write(&file, &raw).unwrap();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--fail"])
        .arg(format!("smtp://127.0.0.1:{}", s.gateway.submission.port()))
        .args([
            "--mail-from",
            "help@contoso.com",
            "--mail-rcpt",
            "someone@example.org",
        ])
        .arg("-u")
        .arg(format!("{USER}:{}", s.password))
        .arg("-T")
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sent.push(("curl".into(), raw));

    // swaks: STARTTLS, AUTH LOGIN, the message from a file.
    let raw = outgoing(11, "swaks");
    let file = dir.path().join("swaks.eml");
    // swaks ends the data with a CRLF of its own before the final dot: the file leaves it out.
    std::fs::write(&file, raw.strip_suffix(b"\r\n").unwrap()).unwrap();
    let out = tokio::process::Command::new("swaks")
        .args(["--server", "127.0.0.1"])
        .args(["--port", &s.gateway.submission.port().to_string()])
        .args(["--from", "help@contoso.com", "--to", "someone@example.org"])
        .args([
            "--auth",
            "LOGIN",
            "--auth-user",
            USER,
            "--auth-password",
            &s.password,
        ])
        .args(["--tls", "--tls-verify", "--tls-ca-path"])
        .arg(s.dovecot.ca_pem_path())
        .args(["--tls-sni", "localhost", "--ehlo", "printer.contoso.com"])
        .arg("--data")
        .arg(format!("@{}", file.display()))
        .output()
        .await
        .unwrap();
    let swaks_log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "swaks: {swaks_log}");
    sent.push(("swaks".into(), raw));

    // msmtp: the sendmail replacement old PHP apps and cron jobs call, over implicit TLS.
    let raw = outgoing(12, "msmtp");
    let config = dir.path().join("msmtprc");
    std::fs::write(
        &config,
        format!(
            "account gw\nhost localhost\nport {port}\nauth plain\nuser {USER}\npassword {pw}\ntls on\ntls_starttls off\ntls_trust_file {ca}\nfrom help@contoso.com\naccount default : gw\n",
            port = s.gateway.submissions.port(),
            pw = s.password,
            ca = s.dovecot.ca_pem_path().display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut child = tokio::process::Command::new("msmtp")
        .arg("-C")
        .arg(&config)
        .arg("someone@example.org")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&raw).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "msmtp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sent.push(("msmtp".into(), raw));

    let relayed = s
        .dovecot
        .wait_relayed(sent.len(), Duration::from_secs(10))
        .await;
    assert_eq!(relayed.len(), sent.len(), "every message was relayed");
    for ((client, raw), got) in sent.iter().zip(&relayed) {
        assert_eq!(got.mail_from, "help@contoso.com", "{client}");
        assert_eq!(
            got.rcpt_to,
            vec!["someone@example.org".to_owned()],
            "{client}"
        );
        assert_eq!(
            String::from_utf8_lossy(&without_trace(&got.raw)),
            String::from_utf8_lossy(raw),
            "{client}: the sink received the exact bytes"
        );
    }
    let events = s.h.app.store().events(None, None, 200).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "gateway.login" && e.message.starts_with("smtp login")),
        "{events:?}"
    );
    assert_logs_hold_no_secret(&s, &logs).await;
    s.finish().await;
}

/// Bad input on the POP3 and SMTP sides gets the protocol's own error, never a panic; a wrong
/// or removed password is refused; an account that needs a new sign-in gets a clean refusal and
/// an event; nothing logs a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_and_smtp_refuse_bad_input_with_protocol_answers() {
    let logs = common::capture_all_logs();
    let s = setup().await;
    let pop3 = s.gateway.pop3;
    let smtp = s.gateway.submission;
    let pop3_cases: &[(&[u8], &str, &str)] = &[
        (b"STAT\r\n", "-ERR Log in first", "-ERR"),
        (b"FROB\r\n", "-ERR Unknown command", "-ERR"),
        (b"\xff\xfe\r\n", "-ERR The command is not UTF-8", "-ERR"),
        (b"PASS secret\r\n", "-ERR Send USER first", "-ERR"),
        (
            b"AUTH PLAIN !!notbase64\r\n",
            "-ERR The SASL response is not base64",
            "-ERR",
        ),
        (
            b"AUTH PLAIN\r\n*\r\n",
            "-ERR Authentication cancelled",
            "-ERR",
        ),
        (b"AUTH CRAM-MD5\r\n", "-ERR Unsupported mechanism", "-ERR"),
        (b"STLS\r\nNOOP\r\n", "-ERR data after STARTTLS", "-ERR data"),
        (b"CAPA\r\n", "SASL PLAIN", ".\r\n"),
        (
            b"USER help@contoso.com\r\nPASS wrong\r\n",
            "-ERR [AUTH] Invalid credentials",
            "-ERR",
        ),
        (b"QUIT\r\n", "+OK Bye", "+OK Bye"),
    ];
    for (input, want, last) in pop3_cases {
        let got = exchange(pop3, "+OK", input, last).await;
        assert!(
            got.contains(want),
            "POP3 {:?}: {got}",
            String::from_utf8_lossy(input)
        );
    }
    let smtp_cases: &[(&[u8], &str, &str)] = &[
        (
            b"MAIL FROM:<a@b>\r\n",
            "530 5.7.0 Authentication required",
            "530",
        ),
        (b"FROB\r\n", "500 5.5.2", "500"),
        (b"EHLO\r\n", "501 5.5.4", "501"),
        (
            b"AUTH PLAIN AGhlbHAAeA==\r\n",
            "503 5.5.1 Send EHLO first",
            "503",
        ),
        (
            b"EHLO x\r\nAUTH PLAIN !!notbase64\r\n",
            "501 5.5.2 The SASL response is not base64",
            "501",
        ),
        (
            b"EHLO x\r\nAUTH PLAIN\r\n*\r\n",
            "501 5.5.2 Authentication cancelled",
            "501",
        ),
        (b"EHLO x\r\nAUTH CRAM-MD5\r\n", "504 5.5.4", "504"),
        (
            b"EHLO x\r\nAUTH LOGIN\r\naGVscEBjb250b3NvLmNvbQ==\r\nd3Jvbmc=\r\n",
            "535 5.7.8 Authentication credentials invalid",
            "535",
        ),
        (
            b"STARTTLS\r\nEHLO x\r\n",
            "421 4.7.0 data after STARTTLS",
            "421",
        ),
        (b"EHLO x\r\n", "250 AUTH PLAIN LOGIN", "250 "),
        (b"QUIT\r\n", "221 2.0.0", "221"),
    ];
    for (input, want, last) in smtp_cases {
        let got = exchange(smtp, "220 ", input, last).await;
        assert!(
            got.contains(want),
            "SMTP {:?}: {got}",
            String::from_utf8_lossy(input)
        );
    }
    // Overlong lines are refused without being buffered whole.
    let mut long = b"USER ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 70 * 1024));
    long.extend(b"\r\n");
    let got = exchange(pop3, "+OK", &long, "-ERR").await;
    assert!(got.contains("-ERR line too long"), "{got}");
    long.splice(..5, b"EHLO ".iter().copied());
    let got = exchange(smtp, "220 ", &long, "421").await;
    assert!(got.contains("421 4.7.0 line too long"), "{got}");
    // Three failed logins end the connection.
    let got = exchange(
        smtp,
        "220 ",
        b"EHLO x\r\nAUTH PLAIN AGhlbHBAY29udG9zby5jb20AeA==\r\nAUTH PLAIN AGhlbHBAY29udG9zby5jb20AeQ==\r\nAUTH PLAIN AGhlbHBAY29udG9zby5jb20Aeg==\r\n",
        "421",
    )
    .await;
    assert_eq!(got.matches("535 5.7.8").count(), 3, "{got}");
    assert!(got.contains("421 4.7.0 Too many failed logins"), "{got}");

    // A client that hangs up mid-command harms nothing: the next one is served.
    {
        let mut tcp = tokio::net::TcpStream::connect(smtp).await.unwrap();
        tcp.write_all(b"EHLO half").await.unwrap();
    }
    let got = exchange(smtp, "220 ", b"NOOP\r\n", "250").await;
    assert!(got.contains("250 2.0.0 OK"), "{got}");

    // An account that needs a new sign-in: a clean refusal on both protocols, and events.
    let account = s.h.app.list_accounts(None).await.unwrap().remove(0);
    assert!(s.h.idp.revoke_user_tokens(USER) > 0);
    s.h.expire_stored_token(account.id).await;
    let login = format!("USER {USER}\r\nPASS {}\r\n", s.password);
    let got = exchange(pop3, "+OK", login.as_bytes(), "-ERR").await;
    assert!(
        got.contains("-ERR [AUTH]") && got.contains("signed in again"),
        "{got}"
    );
    let plain = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{}", s.password))
    };
    let got = exchange(
        smtp,
        "220 ",
        format!("EHLO x\r\nAUTH PLAIN {plain}\r\n").as_bytes(),
        "535",
    )
    .await;
    assert!(
        got.contains("535 5.7.8") && got.contains("signed in again"),
        "{got}"
    );
    let events = s.h.app.store().events(None, None, 200).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "gateway.refused" && e.message.contains("smtp login")),
        "{events:?}"
    );
    // A removed password no longer works.
    s.h.app
        .remove_gateway_password(&AccountSelector::new(USER, None), "scanner")
        .await
        .unwrap();
    let got = exchange(
        smtp,
        "220 ",
        format!("EHLO x\r\nAUTH PLAIN {plain}\r\n").as_bytes(),
        "535",
    )
    .await;
    assert!(
        got.contains("535 5.7.8 Authentication credentials invalid"),
        "{got}"
    );
    // No event or error carries the password.
    let events = s.h.app.store().events(None, None, 500).await.unwrap();
    assert!(
        events.iter().all(|e| !e.message.contains(&s.password)),
        "an event shows the password"
    );
    assert_logs_hold_no_secret(&s, &logs).await;
    s.finish().await;
}

/// A mail server that refuses the token for SMTP while it takes it for IMAP (the missing
/// SMTP.Send scope at Microsoft) gets a clear refusal, and an event that names the scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_refuses_the_token_is_named_with_the_scope_to_add() {
    let s = setup().await;
    // Point SMTP at a server that refuses every XOAUTH2 login: a tiny SMTP server of our own.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut c = BufReader::new(tcp);
                c.get_mut()
                    .write_all(b"220 refuser ESMTP\r\n")
                    .await
                    .unwrap();
                loop {
                    let mut line = String::new();
                    if c.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let reply: &[u8] = if line.starts_with("EHLO") {
                        b"250-refuser\r\n250-8BITMIME\r\n250 AUTH XOAUTH2 PLAIN\r\n"
                    } else if line.starts_with("AUTH XOAUTH2") {
                        b"334 \r\n"
                    } else if line.starts_with("QUIT") {
                        b"221 bye\r\n"
                    } else {
                        b"535 5.7.3 Authentication unsuccessful\r\n"
                    };
                    c.get_mut().write_all(reply).await.unwrap();
                }
            });
        }
    });
    s.h.app
        .set_upstream(
            &UpstreamScope::Account(AccountSelector::new(USER, None)),
            Protocol::Smtp,
            Some(UpstreamServer {
                host: "127.0.0.1".into(),
                port,
                security: Security::Plain,
                ca_file: None,
            }),
        )
        .await
        .unwrap();
    let plain = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{}", s.password))
    };
    let got = exchange(
        s.gateway.submission,
        "220 ",
        format!("EHLO x\r\nAUTH PLAIN {plain}\r\n").as_bytes(),
        "535",
    )
    .await;
    assert!(
        got.contains("535 5.7.8 The mail server refused the OAuth login"),
        "{got}"
    );
    let events = s.h.app.store().events(None, None, 100).await.unwrap();
    let refused = events
        .iter()
        .find(|e| e.kind == "gateway.refused")
        .expect("an event");
    assert!(refused.message.contains("535 5.7.3"), "{}", refused.message);
    assert!(
        refused.message.contains("SMTP.Send") || refused.message.contains("SMTP AUTH"),
        "{}",
        refused.message
    );
    // `diagnose --smtp` makes the same login and names what to fix.
    let options = oauthimap_app::DiagnoseOptions {
        host: Some("localhost".into()),
        port: Some(s.dovecot.imaps_port()),
        ca_file: Some(s.dovecot.ca_pem_path().display().to_string()),
        smtp: true,
        ..Default::default()
    };
    let report =
        s.h.app
            .diagnose(&AccountSelector::new(USER, None), &options)
            .await
            .unwrap();
    let smtp_step = report
        .steps
        .iter()
        .find(|st| st.name == "smtp")
        .expect("an smtp step");
    assert_eq!(
        smtp_step.outcome,
        oauthimap_app::Outcome::Failed,
        "{smtp_step:?}"
    );
    assert!(smtp_step.detail.contains("535 5.7.3"), "{smtp_step:?}");
    assert!(
        smtp_step
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("SMTP.Send") || h.contains("SMTP AUTH")),
        "{smtp_step:?}"
    );
    assert!(!report.ok);
    // The account's IMAP and POP3 are untouched by an SMTP refusal.
    let account = s.h.app.list_accounts(None).await.unwrap().remove(0);
    assert_ne!(account.state, oauthimap_types::AccountState::NeedsReauth);
    // Clearing the account's SMTP override goes back to the application's.
    s.h.app
        .set_upstream(
            &UpstreamScope::Account(AccountSelector::new(USER, None)),
            Protocol::Smtp,
            None,
        )
        .await
        .unwrap();
    let got = exchange(
        s.gateway.submission,
        "220 ",
        format!("EHLO x\r\nAUTH PLAIN {plain}\r\n").as_bytes(),
        "235",
    )
    .await;
    assert!(got.contains("235 2.7.0"), "{got}");
    let report =
        s.h.app
            .diagnose(&AccountSelector::new(USER, None), &options)
            .await
            .unwrap();
    assert!(report.ok, "{:?}", report.steps);
    let smtp_step = report.steps.iter().find(|st| st.name == "smtp").unwrap();
    assert!(
        smtp_step.detail.contains("logged in to localhost"),
        "{smtp_step:?}"
    );
    // An upstream that closes mid-login: the client gets 454 (try later), not a hang.
    let closer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closer_port = closer.local_addr().unwrap().port();
    let closing = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = closer.accept().await {
            let _ = tcp.write_all(b"220 closer ESMTP\r\n").await;
            drop(tcp);
        }
    });
    s.h.app
        .set_upstream(
            &UpstreamScope::Account(AccountSelector::new(USER, None)),
            Protocol::Smtp,
            Some(UpstreamServer {
                host: "127.0.0.1".into(),
                port: closer_port,
                security: Security::Plain,
                ca_file: None,
            }),
        )
        .await
        .unwrap();
    let got = exchange(
        s.gateway.submission,
        "220 ",
        format!("EHLO x\r\nAUTH PLAIN {plain}\r\n").as_bytes(),
        "454",
    )
    .await;
    assert!(got.contains("454 4.7.0"), "{got}");
    closing.abort();
    // An upstream that accepts and then says nothing (IMAP, POP3 and SMTP alike): after the
    // gateway's upstream timeout (3 s here) the client hears "try again later", and the gateway
    // keeps serving.
    let hanger = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanger_port = hanger.local_addr().unwrap().port();
    let hanging = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = hanger.accept().await {
            held.push(tcp);
        }
    });
    for protocol in [Protocol::Imap, Protocol::Pop3, Protocol::Smtp] {
        s.h.app
            .set_upstream(
                &UpstreamScope::Account(AccountSelector::new(USER, None)),
                protocol,
                Some(UpstreamServer {
                    host: "127.0.0.1".into(),
                    port: hanger_port,
                    security: Security::Plain,
                    ca_file: None,
                }),
            )
            .await
            .unwrap();
    }
    // `exchange` waits 10 s for each line: the answer comes from the timeout, not a hang.
    let got = exchange(
        s.gateway.submission,
        "220 ",
        format!("EHLO x\r\nAUTH PLAIN {plain}\r\n").as_bytes(),
        "454",
    )
    .await;
    assert!(got.contains("454 4.7.0"), "{got}");
    let login = format!("USER {USER}\r\nPASS {}\r\n", s.password);
    let got = exchange(s.gateway.pop3, "+OK", login.as_bytes(), "-ERR").await;
    assert!(got.contains("-ERR [SYS/TEMP]"), "{got}");
    let login = format!("a1 LOGIN {USER} \"{}\"\r\n", s.password);
    let got = exchange(s.gateway.imap, "* OK", login.as_bytes(), "a1 ").await;
    assert!(got.contains("a1 NO [UNAVAILABLE]"), "{got}");
    let events = s.h.app.store().events(None, None, 200).await.unwrap();
    assert!(
        ["imap login", "pop3 login", "smtp login"]
            .iter()
            .all(|p| events.iter().any(|e| e.kind == "gateway.refused"
                && e.message.starts_with(p)
                && e.message.contains("no answer within 3 s"))),
        "each protocol's login failure says the upstream did not answer: {:?}",
        events.iter().map(|e| &e.message).collect::<Vec<_>>()
    );
    hanging.abort();
    server.abort();
    s.finish().await;
}
