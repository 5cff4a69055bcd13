//! Black-box tests of `oauthimap admin` (the web UI's admin users) on the real binary: create
//! with `--password-stdin`, list without any password hash, bad input and duplicates as exit 2,
//! `passwd` and `remove` (checked through the app core on the same data folder), and `serve`
//! printing the one-time setup link while no admin exists (and not once one does).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use oauthimap_app::Core;
use oauthimap_config::Settings;
use oauthimap_testkit::http_get;
use secrecy::SecretString;

mod common;
use common::{oauthimap, run, text};

const PASSWORD: &str = "correct horse battery staple";

fn admin(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    run(oauthimap(dir).arg("admin").args(args), stdin)
}

/// The app core on the CLI's data folder, to check what the commands stored.
async fn open(dir: &Path) -> Core {
    let env = [(
        "OAUTHIMAP_DATA_DIR".to_owned(),
        dir.join("oauthimap-data").display().to_string(),
    )];
    Core::open(Settings::load_from(None, env).unwrap())
        .await
        .unwrap()
}

async fn can_log_in(dir: &Path, user: &str, password: &str) -> bool {
    let app = open(dir).await;
    let ok = app
        .login(user, &SecretString::from(password.to_owned()))
        .await
        .is_ok();
    app.store().db().close().await;
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_list_passwd_remove() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let out = admin(
        d,
        &["create", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("admin user alice created; log in at http://localhost:8080/"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(PASSWORD));

    // Bad input: exit 2, a message naming the problem, nothing written.
    let out = admin(
        d,
        &["create", "bob", "--password-stdin"],
        Some("short pw\n"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("password"), "{}", text(&out));
    assert!(text(&out).contains("at least 12"), "{}", text(&out));
    let out = admin(
        d,
        &["create", "alice", "--password-stdin"],
        Some("another long passphrase\n"),
    );
    assert_eq!(out.status.code(), Some(2), "a duplicate: {}", text(&out));
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    let out = admin(
        d,
        &["create", "two words", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("username"), "{}", text(&out));
    let out = admin(d, &["create", "carol"], None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no terminal, no --password-stdin"
    );
    assert!(text(&out).contains("--password-stdin"), "{}", text(&out));

    // The list shows the one admin, and no hash in either format.
    let list = admin(d, &["list"], None);
    assert!(list.status.success(), "{}", text(&list));
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert!(stdout.contains("USERNAME"), "{stdout}");
    assert!(stdout.contains("alice"), "{stdout}");
    assert!(!stdout.contains("bob") && !stdout.contains("carol"));
    let json = run(oauthimap(d).args(["--json", "admin", "list"]), None);
    let users: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert_eq!(users[0]["username"], "alice");
    for o in [&list, &json] {
        let t = text(o);
        assert!(!t.contains("$argon2"), "{t}");
        assert!(!t.contains("password_hash"), "{t}");
        assert!(!t.contains(PASSWORD), "{t}");
    }
    assert!(can_log_in(d, "alice", PASSWORD).await);

    // passwd: the new password works, the old one not; a short one changes nothing.
    let out = admin(d, &["passwd", "alice", "--password-stdin"], Some("tiny\n"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("password"));
    assert!(can_log_in(d, "alice", PASSWORD).await);
    let out = admin(
        d,
        &["passwd", "alice", "--password-stdin"],
        Some("a second long passphrase\r\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("sessions are ended"), "{}", text(&out));
    assert!(!can_log_in(d, "alice", PASSWORD).await);
    assert!(can_log_in(d, "alice", "a second long passphrase").await);

    let out = admin(
        d,
        &["passwd", "nobody", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("nobody"), "{}", text(&out));

    // remove: gone, and its sessions with it.
    let app = open(d).await;
    let session = app
        .login(
            "alice",
            &SecretString::from("a second long passphrase".to_owned()),
        )
        .await
        .unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&session.token).to_owned();
    assert!(app.admin_session(&token).await.unwrap().is_some());
    let out = admin(d, &["remove", "alice"], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(app.admin_session(&token).await.unwrap().is_none());
    app.store().db().close().await;
    let out = admin(d, &["remove", "alice"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let list = admin(d, &["list"], None);
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "(none)");
}

/// A running `oauthimap serve`, killed if a test fails before stopping it.
struct Service {
    child: Child,
    stopped: bool,
}

impl Drop for Service {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `serve` on a free loopback port; returns it, its log lines so far (up to the
/// "listening" line) and the bound address.
fn serve(dir: &Path) -> (Service, Vec<String>, SocketAddr) {
    let mut service = Service {
        child: oauthimap(dir)
            .arg("serve")
            .env("OAUTHIMAP_LISTEN", "127.0.0.1:0")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        stopped: false,
    };
    let child = &mut service.child;
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            // Keep draining after the test stops listening: a closed pipe would fail the
            // service's own logging.
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let started = Instant::now();
    let mut lines = Vec::new();
    loop {
        let left = Duration::from_secs(30).saturating_sub(started.elapsed());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("serve did not start: {lines:#?}"));
        let bound = line.split("bound=").nth(1).map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap()
                .parse::<SocketAddr>()
                .unwrap()
        });
        lines.push(line);
        if let Some(addr) = bound {
            return (service, lines, addr);
        }
    }
}

/// SIGTERM by PID, then a graceful exit.
fn stop(mut service: Service) {
    let status = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = service.child.wait().unwrap();
    service.stopped = true;
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_a_setup_link_while_no_admin_exists() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (service, lines, addr) = serve(d);
    let logged = lines
        .iter()
        .find(|l| l.contains("setup_link="))
        .unwrap_or_else(|| panic!("no setup link logged: {lines:#?}"));
    let link = logged
        .split("setup_link=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"');
    assert!(
        link.starts_with("http://") && link.contains("/setup?token="),
        "{logged}"
    );
    assert!(logged.contains("oauthimap admin create"), "{logged}");
    // The link opens the setup form on the running service.
    let path = &link[link.find("/setup?").unwrap()..];
    let (status, body) = http_get(addr, path).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("setup-form"), "{body}");
    let (status, _) = http_get(addr, "/setup?token=guess").await.unwrap();
    assert_eq!(status, 404);
    stop(service);

    // Once an admin exists, no link is printed, and the old one is dead.
    let out = admin(
        d,
        &["create", "root", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(out.status.success(), "{}", text(&out));
    let (service, lines, addr) = serve(d);
    assert!(
        !lines.iter().any(|l| l.contains("setup_link")),
        "{lines:#?}"
    );
    let (status, body) = http_get(addr, path).await.unwrap();
    assert_eq!(status, 404);
    assert!(!body.contains("setup-form"));
    stop(service);
}

/// Ten failures in a row lock a user (the right password then gets "wrong" too); `admin list`
/// shows the lock and `admin unlock` lifts it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_admin_is_unlocked_from_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = admin(
        d,
        &["create", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(out.status.success(), "{}", text(&out));
    for _ in 0..10 {
        assert!(!can_log_in(d, "alice", "a wrong long passphrase").await);
    }
    assert!(!can_log_in(d, "alice", PASSWORD).await);
    let json = run(oauthimap(d).args(["--json", "admin", "list"]), None);
    let users: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(users[0]["locked_until"].is_i64(), "{users}");
    let out = admin(d, &["unlock", "nobody"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
    let out = admin(d, &["unlock", "alice"], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("alice unlocked"), "{}", text(&out));
    assert!(can_log_in(d, "alice", PASSWORD).await);
}
