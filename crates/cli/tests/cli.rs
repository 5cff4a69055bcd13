//! Black-box tests of the real `oauthimap` binary: first run, serving, the CLI's commands,
//! exit codes, and that secrets never reach its output.
#![allow(clippy::too_many_lines)] // each test reads best as one story

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use oauthimap_testkit::{TestDb, http_get};

mod common;
use common::{oauthimap, run, text};

const SECRET: &str = "Xy7~very-secret-client-value.123";

fn add_app(dir: &Path, extra: &[&str]) -> Output {
    run(
        oauthimap(dir)
            .args([
                "app",
                "add",
                "--name",
                "Contoso",
                "--provider",
                "microsoft",
                "--client-id",
                "cid-1",
            ])
            .args([
                "--tenant",
                "contoso.onmicrosoft.com",
                "--client-secret-stdin",
            ])
            .args(extra),
        Some(&format!("{SECRET}\n")),
    )
}

#[tokio::test]
async fn first_run_creates_the_data_folder_and_serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = oauthimap(dir.path())
        .arg("serve")
        .env("OAUTHIMAP_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = Instant::now();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("serve printed its address before exiting")
            .unwrap();
        if let Some(rest) = line.split("bound=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not start"
        );
    };
    assert_eq!(
        http_get(addr, "/healthz").await.unwrap(),
        (200, "ok\n".into())
    );
    assert_eq!(http_get(addr, "/readyz").await.unwrap().0, 200);
    assert_eq!(http_get(addr, "/nope").await.unwrap().0, 404);

    let data = dir.path().join("oauthimap-data");
    assert!(data.join("oauthimap.db").is_file());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("master.key")), 0o600);
    assert_eq!(mode(&data.join("oauthimap.db")), 0o600);
    assert_eq!(mode(&data), 0o700);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("shutting down")), "{rest:?}");
}

#[test]
fn application_commands_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = add_app(d, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("http://localhost:8080/oauth/callback"),
        "the redirect URL is shown"
    );

    // Bad input: exit 2, a message naming the problem, nothing written.
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "app",
                "add",
                "--name",
                "G",
                "--provider",
                "google",
                "--client-id",
                "x",
                "--tenant",
                "t",
                "--no-client-secret",
            ],
            "tenant",
        ),
        (
            &[
                "app",
                "add",
                "--name",
                "Y",
                "--provider",
                "yahoo",
                "--client-id",
                "x",
            ],
            "unknown provider \"yahoo\"",
        ),
        (
            &[
                "app",
                "add",
                "--name",
                "",
                "--provider",
                "google",
                "--client-id",
                "x",
                "--no-client-secret",
            ],
            "name: must not be empty",
        ),
        (
            &[
                "app",
                "add",
                "--name",
                "Contoso",
                "--provider",
                "google",
                "--client-id",
                "x",
                "--no-client-secret",
            ],
            "already exists",
        ),
        (
            &[
                "app",
                "add",
                "--name",
                "U",
                "--provider",
                "microsoft",
                "--client-id",
                "x",
                "--endpoint-base",
                "http://evil.example",
                "--no-client-secret",
            ],
            "https",
        ),
        (
            &[
                "app",
                "add",
                "--name",
                "N",
                "--provider",
                "google",
                "--client-id",
                "x",
            ],
            "--client-secret-stdin",
        ),
        (
            &["app", "show", "Nope"],
            "application \"Nope\" does not exist",
        ),
        (
            &[
                "receiver",
                "add",
                "--name",
                "r",
                "--app",
                "Contoso",
                "--security",
                "plain",
            ],
            "plain IMAP",
        ),
    ];
    for (args, expected) in cases {
        let out = run(oauthimap(d).args(*args), None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(expected), "{args:?}: {}", text(&out));
    }
    let list = run(oauthimap(d).args(["--json", "app", "list"]), None);
    let apps: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(
        apps.as_array().unwrap().len(),
        1,
        "failed commands wrote nothing"
    );
    assert_eq!(apps[0]["name"], "Contoso");
    assert_eq!(apps[0]["has_client_secret"], true);

    // The secret from a file replaces the old one; it never appears in any output.
    std::fs::write(d.join("secret.txt"), "rotated-secret-value\n").unwrap();
    let out = run(
        oauthimap(d).args([
            "app",
            "update",
            "Contoso",
            "--client-secret-file",
            "secret.txt",
            "--comment",
            "rotated",
        ]),
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let show = run(
        oauthimap(d).args(["--json", "app", "show", "Contoso"]),
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["comment"], "rotated");
    assert_eq!(v["redirect_url"], "http://localhost:8080/oauth/callback");
    assert_eq!(v["profile"]["imap_host"], "outlook.office365.com");
    // The default Microsoft scopes cover IMAP only: show says what the gateway's SMTP and POP3
    // need, and how to add it.
    let hints = v["gateway_scope_hints"].as_array().unwrap();
    assert!(
        hints.iter().any(|h| h
            .as_str()
            .unwrap()
            .contains("https://outlook.office.com/SMTP.Send")),
        "{hints:?}"
    );
    let text_show = run(oauthimap(d).args(["app", "show", "Contoso"]), None);
    assert!(
        text(&text_show).contains("app update \"Contoso\" --scopes"),
        "{}",
        text(&text_show)
    );
    let scopes = v["profile"]["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let updated = run(
        oauthimap(d).args(["app", "update", "Contoso", "--scopes"]).arg(format!(
            "{scopes} https://outlook.office.com/SMTP.Send https://outlook.office.com/POP.AccessAsUser.All"
        )),
        None,
    );
    assert!(updated.status.success(), "{}", text(&updated));
    let again = run(
        oauthimap(d).args(["--json", "app", "show", "Contoso"]),
        None,
    );
    let v2: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        v2["gateway_scope_hints"].as_array().unwrap().len(),
        0,
        "{v2}"
    );
    for o in [&out, &show, &list] {
        assert!(!text(o).contains(SECRET) && !text(o).contains("rotated-secret-value"));
    }
    // Nor in the database file, in plaintext.
    let raw = std::fs::read(d.join("oauthimap-data/oauthimap.db")).unwrap_or_default();
    let wal = std::fs::read(d.join("oauthimap-data/oauthimap.db-wal")).unwrap_or_default();
    for bytes in [raw, wal] {
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    }
}

#[test]
fn receivers_follow_their_application() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(add_app(d, &[]).status.success());
    let out = run(
        oauthimap(d).args([
            "--json", "receiver", "add", "--name", "helpdesk", "--app", "Contoso", "--folder",
            "Support",
        ]),
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["host"], "outlook.office365.com");
    assert_eq!(r["port"], 993);
    assert_eq!(r["security"], "tls");
    assert_eq!(r["active"], false, "no account chosen yet");
    assert!(text(&out).contains("no account chosen"));

    let out = run(
        oauthimap(d).args(["receiver", "update", "helpdesk", "--after", "move"]),
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("accepted_folder"));
    let out = run(
        oauthimap(d).args([
            "receiver",
            "update",
            "helpdesk",
            "--after",
            "move",
            "--accepted-folder",
            "Done",
            "--poll-interval",
            "2m",
            "--size-limit",
            "10M",
        ]),
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let show = run(
        oauthimap(d).args(["--json", "receiver", "show", "helpdesk"]),
        None,
    );
    let r: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(r["poll_interval_secs"], 120);
    assert_eq!(r["size_limit_bytes"], 10 * 1024 * 1024);
    assert_eq!(r["accepted_folder"], "Done");

    let out = run(oauthimap(d).args(["app", "remove", "Contoso"]), None);
    assert_eq!(out.status.code(), Some(2), "refuses while receivers exist");
    assert!(text(&out).contains("--cascade"));
    let out = run(
        oauthimap(d).args(["app", "remove", "Contoso", "--cascade"]),
        None,
    );
    assert!(out.status.success());
    let list = run(oauthimap(d).args(["--json", "receiver", "list"]), None);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&list.stdout).unwrap(),
        serde_json::json!([])
    );
    let events = run(oauthimap(d).args(["events"]), None);
    assert!(String::from_utf8_lossy(&events.stdout).contains("application Contoso removed"));
}

#[test]
fn missing_key_file_and_bad_configuration_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(add_app(d, &[]).status.success());
    std::fs::rename(d.join("oauthimap-data/master.key"), d.join("saved.key")).unwrap();
    let out = run(oauthimap(d).args(["app", "list"]), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("oauthimap-data/master.key is missing"),
        "{}",
        text(&out)
    );
    assert!(
        !d.join("oauthimap-data/master.key").exists(),
        "no new key was made for sealed data"
    );
    let out = run(
        oauthimap(d)
            .args(["app", "list"])
            .env("OAUTHIMAP_KEY_FILE", d.join("saved.key")),
        None,
    );
    assert!(out.status.success(), "{}", text(&out));

    std::fs::write(d.join("c.toml"), "listen = \"not-an-address\"\n").unwrap();
    let out = run(
        oauthimap(d).args(["--config", "c.toml", "app", "list"]),
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("key `listen` from TOML file"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn the_cli_runs_on_postgresql_too() {
    let t = TestDb::new(oauthimap_store::Backend::Postgres).await;
    let d = t.dir.path();
    let out = run(
        oauthimap(d)
            .args([
                "app",
                "add",
                "--name",
                "PG",
                "--provider",
                "google",
                "--client-id",
                "g-1",
                "--client-secret-stdin",
            ])
            .env("OAUTHIMAP_DATABASE_URL", &t.url),
        Some("pg-secret\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let oauthimap_store::Db::Postgres(pool) = &t.db else {
        unreachable!()
    };
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM applications")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(names, ["PG"], "written to the test schema");
    let row: String = sqlx::query_scalar("SELECT t::text FROM applications t")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(!row.contains("pg-secret"));
    t.cleanup().await;
}

/// Read-only commands in a folder with no data create nothing there (no data folder, no key),
/// exit 2 and say where they looked; a key whose database is gone is not silently given a new
/// empty database.
#[test]
fn read_only_commands_in_an_empty_folder_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for args in [
        &["token", "foo@bar.example"][..],
        &["app", "list"],
        &["account", "list"],
        &["receiver", "list"],
        &["messages", "list"],
        &["events"],
        &["collect", "--once"],
    ] {
        let out = run(oauthimap(d).args(args), None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let t = text(&out);
        assert!(
            t.contains("oauthimap-data/oauthimap.db") && t.contains("OAUTHIMAP_DATA_DIR"),
            "{args:?} says where it looked and how to point elsewhere: {t}"
        );
        let left: Vec<_> = std::fs::read_dir(d).unwrap().collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
    // A command that creates things sets the folder up; read-only ones work from then on.
    assert!(add_app(d, &[]).status.success());
    let out = run(oauthimap(d).args(["app", "list"]), None);
    assert!(out.status.success(), "{}", text(&out));
    // The database gone, the key still there: refused, never recreated empty.
    std::fs::rename(d.join("oauthimap-data/oauthimap.db"), d.join("saved.db")).unwrap();
    let out = run(
        oauthimap(d).args([
            "app",
            "add",
            "--name",
            "X",
            "--provider",
            "google",
            "--client-id",
            "x",
            "--no-client-secret",
        ]),
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("exists but its database"),
        "{}",
        text(&out)
    );
    assert!(
        !d.join("oauthimap-data/oauthimap.db").exists(),
        "no empty database made"
    );
}

/// Hooks and command sinks run with `OAUTHIMAP_EVENT`, `OAUTHIMAP_RECEIVER`, … set, and a hook
/// that calls oauthimap must work; a misspelt setting gets a warning naming the right one.
#[test]
fn variables_that_are_not_settings_do_not_stop_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(add_app(d, &[]).status.success());
    let out = run(
        oauthimap(d)
            .args(["app", "list"])
            .env("OAUTHIMAP_EVENT", "account.needs_reauth")
            .env("OAUTHIMAP_MAILBOX", "help@contoso.com")
            .env("OAUTHIMAP_RECEIVER", "helpdesk")
            .env("OAUTHIMAP_API_TOKEN", "oit_x"),
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Contoso"),
        "{}",
        text(&out)
    );
    // A variable holding bytes that are not UTF-8 (anyone's, or ours) stops nothing.
    {
        use std::os::unix::ffi::OsStrExt;
        let bytes = std::ffi::OsStr::from_bytes(b"caf\xe9");
        let out = run(
            oauthimap(d)
                .args(["app", "list"])
                .env("FOO", bytes)
                .env("OAUTHIMAP_LOG_LEVEL", bytes),
            None,
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("OAUTHIMAP_LOG_LEVEL is not UTF-8 text and is ignored"),
            "{}",
            text(&out)
        );
    }
    let out = run(
        oauthimap(d)
            .args(["app", "list"])
            .env("OAUTHIMAP_DATABSE_URL", "postgres://u@127.0.0.1/x"),
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("OAUTHIMAP_DATABSE_URL is not a setting and is ignored; did you mean OAUTHIMAP_DATABASE_URL?"),
        "{}",
        text(&out)
    );
}

/// `import glpi` names a missing key file before touching any database, and exits 2.
#[test]
fn import_glpi_names_a_missing_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(add_app(d, &[]).status.success());
    let out = run(
        oauthimap(d).args([
            "import",
            "glpi",
            "--database",
            "mysql://glpi:secret-pw@127.0.0.1:1/glpi",
            "--key-file",
            "/nonexistent/glpicrypt.key",
        ]),
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("cannot read GLPI's key file /nonexistent/glpicrypt.key"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("secret-pw"), "{}", text(&out));
}

/// Values far over the limits are refused with exit 2 and the limit, never stored; a table of
/// long values prints without a panic, also into a closed pipe.
#[test]
fn overlong_values_are_refused_and_tables_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let huge = "x".repeat(70_000);
    let out = run(
        oauthimap(d).args([
            "app",
            "add",
            "--name",
            "Huge",
            "--provider",
            "google",
            "--client-id",
            &huge,
            "--no-client-secret",
        ]),
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("client_id: is 70000 characters long; at most 255"),
        "{}",
        text(&out)
    );
    let long_name = "n".repeat(101);
    let out = run(
        oauthimap(d).args([
            "app",
            "add",
            "--name",
            &long_name,
            "--provider",
            "google",
            "--client-id",
            "x",
            "--no-client-secret",
        ]),
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // At the limits: stored, and listed as a table.
    let id = "i".repeat(255);
    let out = run(
        oauthimap(d).args([
            "app",
            "add",
            "--name",
            "Long",
            "--provider",
            "google",
            "--client-id",
            &id,
            "--no-client-secret",
            "--comment",
            &"c".repeat(2048),
        ]),
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = run(oauthimap(d).args(["app", "list"]), None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Long"));
    // stdout closed before anything is printed: no panic (exit 101).
    let mut child = oauthimap(d)
        .args(["app", "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(101), "no panic on a closed stdout");
}

/// An invalid log filter stops the program with exit 2 instead of falling back silently.
#[test]
fn an_invalid_log_level_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(add_app(d, &[]).status.success());
    let out = run(
        oauthimap(d)
            .args(["app", "list"])
            .env("OAUTHIMAP_LOG_LEVEL", "oauthimap=loud"),
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("log_level"), "{}", text(&out));
}

/// Completions load in bash, and the man pages are written; neither needs a data folder.
#[test]
fn completions_load_in_bash_and_man_pages_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run(oauthimap(d).args(["completions", "bash"]), None);
    assert!(out.status.success(), "{}", text(&out));
    let script = d.join("oauthimap.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p oauthimap",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("oauthimap"));
    let man = d.join("man");
    let out = run(oauthimap(d).args(["man", "--out"]).arg(&man), None);
    assert!(out.status.success(), "{}", text(&out));
    let page = std::fs::read_to_string(man.join("oauthimap.1")).unwrap();
    assert!(
        page.contains(".TH oauthimap") && page.contains("gateway"),
        "{page}"
    );
    assert!(man.join("oauthimap-gateway.1").exists());
    let left: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "no data folder made: {left:?}");
}

/// `serve` starts the gateway's IMAP listener beside the web service, greets clients on it, and
/// stops both on SIGTERM; a gateway that cannot be set up stops `serve` at once with exit 2.
#[tokio::test]
async fn serve_runs_the_gateway_and_refuses_a_broken_gateway_configuration() {
    use std::io::{BufRead as _, Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    // Fixed free ports, so that `gateway status` (another process) finds the listeners.
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (web, imap, smtp) = (free(), free(), free());
    let env = [
        ("OAUTHIMAP_LISTEN", format!("127.0.0.1:{web}")),
        (
            "OAUTHIMAP_GATEWAY__IMAP_LISTEN",
            format!("127.0.0.1:{imap}"),
        ),
        (
            "OAUTHIMAP_GATEWAY__SUBMISSION_LISTEN",
            format!("127.0.0.1:{smtp}"),
        ),
    ];
    let mut child = oauthimap(dir.path())
        .arg("serve")
        .envs(env.clone())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let started = Instant::now();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("serve logged the gateway").unwrap();
        if line.contains("the gateway is listening")
            && let Some(rest) = line.split("addr=").nth(1)
        {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no gateway");
    };
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = [0u8; 256];
    let n = tcp.read(&mut greeting).unwrap();
    assert!(
        String::from_utf8_lossy(&greeting[..n]).starts_with("* OK [CAPABILITY IMAP4rev1"),
        "{}",
        String::from_utf8_lossy(&greeting[..n])
    );
    tcp.write_all(b"a1 LOGOUT\r\n").unwrap();
    drop(tcp);
    // `gateway status` probes each listener and reads the open sessions from the service.
    let mut status = None;
    for _ in 0..50 {
        let out = run(
            oauthimap(dir.path())
                .args(["gateway", "status"])
                .envs(env.clone()),
            None,
        );
        assert!(out.status.success(), "{}", text(&out));
        let t = text(&out);
        if t.contains("sessions: ") && !t.contains("sessions: unknown") {
            status = Some(t);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = status.expect("gateway status reached the service");
    assert!(
        status.contains(&format!("127.0.0.1:{imap}")) && status.contains("accepting: * OK"),
        "{status}"
    );
    assert!(
        status.contains("submission") && status.contains("accepting: 220 "),
        "{status}"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "graceful shutdown");

    let started = Instant::now();
    let out = run(
        oauthimap(dir.path())
            .arg("serve")
            .env("OAUTHIMAP_LISTEN", "127.0.0.1:0")
            .env("OAUTHIMAP_GATEWAY__IMAPS_LISTEN", "127.0.0.1:0"),
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("gateway.tls_cert"), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it stops at once"
    );
    assert!(
        !text(&out).contains("closed pool"),
        "nothing keeps running after the error: {}",
        text(&out)
    );
}
