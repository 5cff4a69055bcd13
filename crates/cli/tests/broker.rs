//! `oauthimap token` through the running service's socket, the fallback to the database when no
//! service answers, `--server` over REST, and who may ask: the real binary, the fake identity
//! provider, and users other than root.
#![allow(clippy::too_many_lines)] // one story each: a service, then its callers

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use oauthimap_fake_idp::{ClientConfig, FakeIdp, UserConfig};

const SECRET: &str = "broker-secret-value~42";
const MAILBOX: &str = "desk@contoso.com";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A data folder, a socket folder others may enter, and the web port.
struct Site {
    _dir: tempfile::TempDir,
    data: PathBuf,
    socket: PathBuf,
    port: u16,
}

impl Site {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self {
            data: dir.path().join("data"),
            socket: run.join("broker.sock"),
            port: free_port(),
            _dir: dir,
        }
    }

    /// The binary with this site's settings, from a folder of its own (so nothing can rely on
    /// the working directory) and with no other `OAUTHIMAP_*` variable.
    fn oauthimap(&self) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("oauthimap"));
        cmd.current_dir("/");
        for (key, _) in std::env::vars() {
            if key.starts_with("OAUTHIMAP_") {
                cmd.env_remove(key);
            }
        }
        // An oauthimap installed on this machine (/etc/oauthimap/oauthimap.toml) is not ours.
        cmd.env("OAUTHIMAP_CONFIG", "/dev/null");
        cmd.env("OAUTHIMAP_DATA_DIR", &self.data)
            .env("OAUTHIMAP_BROKER__SOCKET", &self.socket)
            .env("OAUTHIMAP_LISTEN", format!("127.0.0.1:{}", self.port))
            .env(
                "OAUTHIMAP_EXTERNAL_BASE_URL",
                format!("http://127.0.0.1:{}", self.port),
            );
        cmd
    }

    /// `oauthimap token …` as the same user, or as `uid`/`gid`.
    fn token(&self, args: &[&str], as_user: Option<(u32, u32)>) -> Output {
        self.token_with(args, as_user, &[])
    }

    /// [`Site::token`] with more settings in the environment.
    fn token_with(
        &self,
        args: &[&str],
        as_user: Option<(u32, u32)>,
        env: &[(&str, &str)],
    ) -> Output {
        let mut cmd = self.oauthimap();
        cmd.envs(env.iter().copied()).arg("token").args(args);
        if let Some((uid, gid)) = as_user {
            cmd.uid(uid).gid(gid);
            cmd.env("HOME", "/nonexistent");
        }
        cmd.output().unwrap()
    }

    fn serve(&self, extra_env: &[(&str, &str)]) -> Serve {
        let mut cmd = self.oauthimap();
        cmd.arg("serve").envs(extra_env.iter().copied());
        self.start(cmd)
    }

    /// Starts `cmd` (`serve`, perhaps wrapped in another program) and waits for its socket.
    fn start(&self, mut cmd: Command) -> Serve {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let mut serve = Serve(Some(cmd.spawn().unwrap()));
        for _ in 0..200 {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return serve;
            }
            if let Some(status) = serve.0.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "{} ended ({status}) before it opened its socket",
                    cmd.get_program().display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve did not open its socket at {}", self.socket.display());
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `serve`, killed if a failing assertion leaves it running.
struct Serve(Option<Child>);

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn stop(mut serve: Serve, signal: &str) {
    let mut child = serve.0.take().unwrap();
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

/// An application and one authorized account (device-code flow) at the fake provider.
async fn authorized(site: &Site, idp: &FakeIdp) {
    idp.add_client(ClientConfig::microsoft(
        "broker-client",
        SECRET,
        &format!("http://127.0.0.1:{}/oauth/callback", site.port),
    ));
    idp.add_user(UserConfig::new(MAILBOX, "Desk"));
    idp.set_default_user(MAILBOX);
    let mut add = site.oauthimap();
    add.args(["app", "add", "--name", "Contoso", "--provider", "microsoft"])
        .args([
            "--client-id",
            "broker-client",
            "--tenant",
            "contoso.onmicrosoft.com",
        ])
        .args(["--endpoint-base", idp.base_url(), "--client-secret-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = add.spawn().unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        format!("{SECRET}\n").as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let authorize = site
        .oauthimap()
        .args(["account", "authorize", "--app", "Contoso", "--device"])
        .args(["--timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut approved = false;
    for _ in 0..100 {
        if idp.approve_device(None, Some(MAILBOX)).is_ok() {
            approved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(approved, "the device code was requested");
    let out = authorize.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn refreshes(idp: &FakeIdp) -> u64 {
    idp.stats()
        .token
        .get("refresh_token")
        .map_or(0, |c| c.successes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_comes_from_the_service_over_its_socket_and_from_the_database_without_it() {
    let site = Site::new();
    let idp = FakeIdp::start().await.unwrap();
    authorized(&site, &idp).await;
    let serve = site.serve(&[]);
    let mode = std::fs::metadata(&site.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o660,
        "the socket is for the owner and its group"
    );

    let out = site.token(&[MAILBOX], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    // Proof that the socket answered: with a data folder that does not exist, only the service
    // can know the token (the database path would exit 2 saying where it looked).
    let out = site.token_with(
        &[MAILBOX],
        None,
        &[("OAUTHIMAP_DATA_DIR", "/nonexistent/oauthimap")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), token);
    assert!(
        !Path::new("/nonexistent/oauthimap").exists(),
        "nothing was created"
    );

    // --sasl over the socket: the ready strings for the same token.
    let out = site.token(&[MAILBOX, "--sasl", "xoauth2"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        oauthimap_imap::xoauth2_initial_response(MAILBOX, &token)
    );
    let out = site.token(
        &[
            MAILBOX,
            "--sasl",
            "oauthbearer",
            "--host",
            "imap.example.com",
            "--port",
            "993",
        ],
        None,
    );
    assert_eq!(
        text(&out.stdout).trim(),
        oauthimap_imap::oauthbearer_initial_response(MAILBOX, "imap.example.com", 993, &token)
    );

    // A mistake is the caller's (exit 2), named, and says nothing secret.
    let out = site.token(&["nobody@contoso.com"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nobody@contoso.com") && out.stdout.is_empty(),
        "{}",
        text(&out.stderr)
    );

    // A SIGKILLed service leaves its socket file behind: the caller falls back to the database,
    // and the next service replaces the stale file.
    stop(serve, "-KILL");
    assert!(site.socket.exists());
    let out = site.token(&[MAILBOX], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        token,
        "still valid: the same token"
    );
    let serve = site.serve(&[]);
    let out = site.token(&[MAILBOX], None);
    assert_eq!(text(&out.stdout).trim(), token);
    // A clean stop removes the socket; the database path still answers.
    stop(serve, "-TERM");
    assert!(!site.socket.exists(), "a clean stop removes the socket");
    let out = site.token(&[MAILBOX], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_users_get_tokens_from_the_socket() {
    let site = Site::new();
    let idp = FakeIdp::start().await.unwrap();
    authorized(&site, &idp).await;
    // Members of the socket's group may ask: nogroup (65534) here.
    let serve = site.serve(&[("OAUTHIMAP_BROKER__GROUP", "nogroup")]);
    let meta = std::fs::metadata(&site.socket).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 65534);

    let member = site.token(&[MAILBOX], Some((65534, 65534)));
    assert!(member.status.success(), "{}", text(&member.stderr));
    assert_eq!(text(&member.stdout).trim().split('.').count(), 3);

    // Anyone else cannot open the socket (mode 0660)…
    let stranger = site.token(&[MAILBOX], Some((4242, 4242)));
    assert_eq!(stranger.status.code(), Some(2));
    assert!(
        text(&stranger.stderr).contains("permission denied")
            && text(&stranger.stderr).contains("broker.group")
            && stranger.stdout.is_empty(),
        "{}",
        text(&stranger.stderr)
    );
    // …and where the file's mode would let them, the service checks who is asking.
    std::fs::set_permissions(&site.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let stranger = site.token(&[MAILBOX], Some((4242, 4242)));
    assert_eq!(stranger.status.code(), Some(2));
    assert!(
        text(&stranger.stderr).contains("user 4242 may not ask")
            && text(&stranger.stderr).contains("broker.allowed_uids")
            && stranger.stdout.is_empty(),
        "{}",
        text(&stranger.stderr)
    );
    stop(serve, "-TERM");

    // broker.allowed_uids admits one user by uid.
    let serve = site.serve(&[("OAUTHIMAP_BROKER__ALLOWED_UIDS", "[4242]")]);
    std::fs::set_permissions(&site.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let listed = site.token(&[MAILBOX], Some((4242, 4242)));
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    stop(serve, "-TERM");
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_callers_of_an_expired_token_cause_one_refresh() {
    let site = Site::new();
    let idp = FakeIdp::start().await.unwrap();
    // Tokens issued at sign-in live 2 s: by the time the callers come, it has expired.
    idp.set_access_token_lifetime(Duration::from_secs(2));
    authorized(&site, &idp).await;
    let old = text(&site.token(&[MAILBOX], None).stdout).trim().to_owned();
    idp.set_access_token_lifetime(Duration::from_hours(1));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = refreshes(&idp);
    let serve = site.serve(&[("OAUTHIMAP_TOKENS__CHECK_INTERVAL_SECS", "3600")]);
    let callers: Vec<Child> = (0..50)
        .map(|_| {
            site.oauthimap()
                .args(["token", MAILBOX])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let tokens: Vec<String> = callers
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            text(&out.stdout).trim().to_owned()
        })
        .collect();
    assert_eq!(refreshes(&idp) - before, 1, "one refresh for 50 callers");
    assert!(
        tokens.iter().all(|t| *t == tokens[0] && *t != old),
        "all 50 got the one new token"
    );
    stop(serve, "-TERM");
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_server_asks_a_remote_service_over_rest() {
    let site = Site::new();
    let idp = FakeIdp::start().await.unwrap();
    authorized(&site, &idp).await;
    let out = site
        .oauthimap()
        .args([
            "api-token",
            "create",
            "--name",
            "laptop",
            "--scope",
            "tokens:read",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, &out.stdout).unwrap();
    let serve = site.serve(&[]);
    let local = text(&site.token(&[MAILBOX], None).stdout).trim().to_owned();
    let server = format!("http://127.0.0.1:{}", site.port);

    // The remote caller has no data folder, no key and no socket: only the URL and the token.
    let remote = |args: &[&str]| {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("oauthimap"));
        cmd.current_dir(dir.path())
            .env("OAUTHIMAP_CONFIG", "/dev/null")
            .env("OAUTHIMAP_DATA_DIR", "/nonexistent/remote")
            .args(["token", "--server", &server, "--api-token-file"])
            .arg(&token_file)
            .args(args)
            .output()
            .unwrap()
    };
    let out = remote(&[MAILBOX]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), local);
    let out = remote(&[MAILBOX, "--sasl", "xoauth2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        oauthimap_imap::xoauth2_initial_response(MAILBOX, &local)
    );
    let out = remote(&["nobody@contoso.com"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
    assert!(!Path::new("/nonexistent/remote").exists());

    // A wrong API token is refused and named; plain http to another host is refused before
    // anything is sent.
    std::fs::write(&token_file, "oimp_wrong").unwrap();
    let out = remote(&[MAILBOX]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(assert_cmd::cargo::cargo_bin!("oauthimap"))
        .args(["token", "--server", "http://oauthimap.example.com"])
        .arg("--api-token-file")
        .arg(&token_file)
        .arg(MAILBOX)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("https://"),
        "{}",
        text(&out.stderr)
    );
    stop(serve, "-TERM");
    idp.shutdown().await;
}

/// The service answers a repeated question from memory, but never past a change to the
/// database: a forced renewal, and an account removed by another process (the command line,
/// while the service runs), are seen by the very next call.
/// `oauthimap_broker_answers_total{from}` from the service's /metrics: (memory, database).
async fn answered(site: &Site) -> (u64, u64) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", site.port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |from: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "oauthimap_broker_answers_total{{from=\"{from}\"}} "
                ))
            })
            .map_or(0, |n| n.trim().parse().unwrap())
    };
    (count("memory"), count("database"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_from_memory_end_with_any_token_write_and_survive_other_commits() {
    let site = Site::new();
    let idp = FakeIdp::start().await.unwrap();
    authorized(&site, &idp).await;
    let serve = site.serve(&[]);
    let first = site.token(&[MAILBOX], None);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let first = text(&first.stdout).trim().to_owned();
    for _ in 0..3 {
        let again = site.token(&[MAILBOX], None);
        assert_eq!(
            text(&again.stdout).trim(),
            first,
            "still valid: the same token"
        );
    }
    assert_eq!(answered(&site).await, (3, 1), "one read, then memory");

    // A commit that writes no token (as the service's own lease renewals do every few seconds,
    // and collected mail does): the memory stays.
    let wal = site.data.join("oauthimap.db-wal");
    let wal_before = std::fs::metadata(&wal).map_or(0, |m| m.len());
    {
        use sqlx::Connection as _;
        let mut db = sqlx::SqliteConnection::connect(&format!(
            "sqlite://{}",
            site.data.join("oauthimap.db").display()
        ))
        .await
        .unwrap();
        sqlx::query("CREATE TABLE scratch (x INTEGER)")
            .execute(&mut db)
            .await
            .unwrap();
        sqlx::query("INSERT INTO scratch VALUES (1)")
            .execute(&mut db)
            .await
            .unwrap();
        db.close().await.unwrap();
    }
    assert_ne!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
        wal_before,
        "the commits reached the database's log"
    );
    let again = site.token(&[MAILBOX], None);
    assert_eq!(text(&again.stdout).trim(), first);
    assert_eq!(answered(&site).await, (4, 1), "still from memory");

    let before = refreshes(&idp);
    let forced = site.token(&[MAILBOX, "--force"], None);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let forced = text(&forced.stdout).trim().to_owned();
    assert_ne!(forced, first, "--force renews");
    assert_eq!(refreshes(&idp), before + 1);
    let after = site.token(&[MAILBOX], None);
    assert_eq!(
        text(&after.stdout).trim(),
        forced,
        "the renewed token, not the one answered before"
    );
    let (memory, database) = answered(&site).await;
    assert_eq!(
        (memory, database),
        (4, 3),
        "--force and the call after it read the database"
    );
    let again = site.token(&[MAILBOX], None);
    assert_eq!(text(&again.stdout).trim(), forced);
    assert_eq!(answered(&site).await, (5, 3), "then memory again");

    let removed = site
        .oauthimap()
        .args(["account", "remove", MAILBOX])
        .output()
        .unwrap();
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    let gone = site.token(&[MAILBOX], None);
    assert_eq!(
        gone.status.code(),
        Some(2),
        "the removal made by another process is seen at once: {}",
        text(&gone.stderr)
    );
    assert!(gone.stdout.is_empty(), "no token for a removed account");
    stop(serve, "-TERM");
    idp.shutdown().await;
}

/// One raw exchange on the socket: `parts` written with `pause` between them, the reply line
/// read back (the connection is closed after it).
fn exchange(socket: &Path, parts: &[&str], pause: Duration) -> serde_json::Value {
    use std::io::{Read as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        stream.write_all(part.as_bytes()).unwrap();
    }
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.ends_with('\n'), "one line: {reply:?}");
    serde_json::from_str(&reply).unwrap()
}

/// The accepting thread answers what it can at once and leaves the rest to tasks: a request
/// that arrives in pieces, slowly, is still answered (from the bytes read so far onwards); a
/// malformed one is refused with the reason; a peer that says nothing holds up no one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_split_malformed_and_silent_peers_on_the_socket() {
    let site = Site::new();
    let idp = FakeIdp::start().await.unwrap();
    authorized(&site, &idp).await;
    let serve = site.serve(&[]);
    let first = site.token(&[MAILBOX], None);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let token = text(&first.stdout).trim().to_owned();

    // In memory now; the request comes in three pieces, well after the thread stopped waiting.
    let request = format!("{{\"account\":\"{MAILBOX}\"}}\n");
    let (a, rest) = request.split_at(5);
    let (b, c) = rest.split_at(7);
    let reply = exchange(&site.socket, &[a, b, c], Duration::from_millis(300));
    assert_eq!(reply["token"].as_str(), Some(token.as_str()), "{reply}");
    // At once and whole: the same answer (from memory).
    let reply = exchange(&site.socket, &[&request], Duration::ZERO);
    assert_eq!(reply["token"].as_str(), Some(token.as_str()), "{reply}");

    let reply = exchange(&site.socket, &["{\"acount\":1}\n"], Duration::ZERO);
    assert_eq!(reply["refused"]["code"], "bad_request", "{reply}");
    assert!(
        reply["refused"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("acount")),
        "{reply}"
    );

    // Two peers that connect and say nothing: the next caller still gets its token, while
    // they wait for their own request timeout.
    let silent: Vec<_> = (0..2)
        .map(|_| std::os::unix::net::UnixStream::connect(&site.socket).unwrap())
        .collect();
    let out = site.token(&[MAILBOX], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), token);
    for mut peer in silent {
        use std::io::Read as _;
        peer.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            peer.read(&mut byte).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "no answer yet to a peer that asked nothing"
        );
    }
    stop(serve, "-TERM");
    assert!(!site.socket.exists(), "a clean stop removes the socket");
    idp.shutdown().await;
}

/// A service in a pid namespace of its own, as in a container, and its callers outside (a
/// host's msmtp through a bind-mounted socket): the kernel gives the service pid 0 for them,
/// and their uid and primary group still decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_in_its_own_pid_namespace_answers_callers_outside_it() {
    let site = Site::new();
    let idp = FakeIdp::start().await.unwrap();
    authorized(&site, &idp).await;
    let inner = {
        let mut cmd = site.oauthimap();
        cmd.env("OAUTHIMAP_BROKER__ALLOWED_GIDS", "[4343]");
        cmd
    };
    // unshare (util-linux) needs root, as this whole file does.
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(inner.get_program())
        .arg("serve")
        .current_dir("/");
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let serve = site.start(cmd);
    std::fs::set_permissions(&site.socket, std::fs::Permissions::from_mode(0o666)).unwrap();

    // Only the service can answer: the callers' own settings point at no data folder.
    let ask = |as_user| {
        site.token_with(
            &[MAILBOX],
            as_user,
            &[("OAUTHIMAP_DATA_DIR", "/nonexistent/oauthimap")],
        )
    };
    let root = ask(None);
    assert!(root.status.success(), "{}", text(&root.stderr));
    let token = text(&root.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let again = ask(None);
    assert_eq!(
        text(&again.stdout).trim(),
        token,
        "from memory: the same token"
    );
    // A member of an allowed group by its primary group.
    let member = ask(Some((4242, 4343)));
    assert!(member.status.success(), "{}", text(&member.stderr));
    assert_eq!(text(&member.stdout).trim(), token);
    // Anyone else is refused, with the reason.
    let stranger = ask(Some((4242, 4242)));
    assert_eq!(
        stranger.status.code(),
        Some(2),
        "{}",
        text(&stranger.stderr)
    );
    assert!(
        text(&stranger.stderr).contains("user 4242 may not ask") && stranger.stdout.is_empty(),
        "{}",
        text(&stranger.stderr)
    );
    drop(serve);
    idp.shutdown().await;
}
