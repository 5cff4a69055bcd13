//! `oauthimap-gateway-bench`: what the gateway costs a client, next to the same work done
//! directly at the server and through email-oauth2-proxy (`PyPI` `emailproxy`, the tool people run
//! for this today), in one run against one private Dovecot and the fake identity provider.
//!
//! Figures (issue 15's targets): the time to fetch the 2,000-message bench corpus with Python's
//! imaplib through the gateway against directly with XOAUTH2 (at most 1.10x) and through
//! emailproxy (the gateway at least 20x faster per message); the login latency with a warm token
//! (at most 5 ms over the upstream login alone); the gateway's resident memory per idle IMAP
//! session with 1,000 open (at most 64 KiB); 1,000 messages of 50 KB submitted through the
//! gateway against directly (at most 1.10x). Run it through `bench/gateway` (bench/README.md).

// Byte counts and durations shown with one decimal are far below f64's 2^52 exact range.
#![allow(clippy::cast_precision_loss)]

#[allow(dead_code)] // the collector benchmark's corpus; only `message` is used here
#[path = "corpus.rs"]
mod corpus;
#[allow(dead_code)] // the collector benchmark's setup; receivers and the store are not used here
#[path = "setup.rs"]
mod setup;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions};
use oauthimap_fake_idp::FakeIdp;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

const USER: &str = "help@bench.test";
/// The password clients give emailproxy (it derives its token encryption key from it).
const PROXY_PASSWORD: &str = "proxy-password-for-the-bench";

#[derive(Debug, Parser)]
#[command(name = "oauthimap-gateway-bench")]
struct Args {
    /// The `oauthimap` binary to measure (a release build).
    #[arg(long)]
    oauthimap: PathBuf,
    /// The Python of the venv that holds emailproxy (and runs the clients).
    #[arg(long)]
    python: PathBuf,
    /// `bench/gateway_client.py`.
    #[arg(long)]
    client: PathBuf,
    /// emailproxy's `emailproxy.py` in that venv.
    #[arg(long)]
    emailproxy: PathBuf,
    /// Messages in the mailbox.
    #[arg(long, default_value_t = 2_000)]
    messages: usize,
    /// Idle IMAP sessions held open at once through the gateway.
    #[arg(long, default_value_t = 1_000)]
    sessions: usize,
    /// Messages submitted over SMTP, and their size in KB.
    #[arg(long, default_value_t = 1_000)]
    smtp_messages: usize,
    #[arg(long, default_value_t = 50)]
    smtp_kb: usize,
    /// How often each fetch is measured (the median counts).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    #[arg(long, default_value = "bench/results/gateway.txt")]
    out: PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    for tool in [
        &args.oauthimap,
        &args.python,
        &args.client,
        &args.emailproxy,
    ] {
        ensure!(tool.exists(), "{} does not exist", tool.display());
    }
    let work = std::env::temp_dir().join(format!("oauthimap-gateway-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run(&args, &work).await;
    let _ = std::fs::remove_dir_all(&work);
    let report = result?;
    setup::save_report(&report, &args.out)
}

/// Runs `oauthimap` with the data folder's environment; its stdout.
async fn oauthimap(args: &Args, data: &Path, cli: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(&args.oauthimap)
        .args(cli)
        .envs(setup::oauthimap_env(data))
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "oauthimap {}: {}",
        cli.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Runs the Python client; its JSON line.
async fn client(args: &Args, env: &[(&str, String)], cli: &[String]) -> Result<serde_json::Value> {
    let out = tokio::process::Command::new(&args.python)
        .arg(&args.client)
        .args(cli)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "gateway_client.py {}: {}{}",
        cli.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn wait_for_port(port: u16, what: &str) -> Result<()> {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what} does not listen on 127.0.0.1:{port}")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A child process killed (by its PID, which we started) when dropped.
struct Running(tokio::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Writes emailproxy's configuration with the account's token already in its cache, encrypted
/// as emailproxy does (Fernet, key from PBKDF2 of the client's password), so no browser is needed.
async fn emailproxy_config(
    args: &Args,
    work: &Path,
    idp: &FakeIdp,
    dovecot: &Dovecot,
    port: u16,
    token: &str,
) -> Result<PathBuf> {
    let config = work.join("emailproxy.config");
    let seed = r#"
import base64, configparser, os, sys, time
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
path, port, server_port, token_url, user, password, token = sys.argv[1:8]
salt = os.urandom(16)
iterations = 1_200_000
key = base64.urlsafe_b64encode(PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt,
                                          iterations=iterations).derive(password.encode()))
fernet = Fernet(key)
c = configparser.ConfigParser()
c["IMAP-%s" % port] = {"server_address": "localhost", "server_port": server_port,
                       "local_address": "127.0.0.1"}
c[user] = {
    "permission_url": token_url.replace("/token", "/authorize"),
    "token_url": token_url,
    "oauth2_scope": "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
    "redirect_uri": "http://localhost",
    "client_id": "bench-client",
    "client_secret": "bench-secret-value",
    "token_salt": base64.b64encode(salt).decode(),
    "token_iterations": str(iterations),
    "access_token": fernet.encrypt(token.encode()).decode(),
    "access_token_expiry": str(int(time.time()) + 3 * 3600),
    "refresh_token": fernet.encrypt(b"unused-refresh-token").decode(),
    "last_activity": str(int(time.time())),
}
with open(path, "w") as f:
    c.write(f)
"#;
    let out = tokio::process::Command::new(&args.python)
        .arg("-c")
        .arg(seed)
        .arg(&config)
        .arg(port.to_string())
        .arg(dovecot.imaps_port().to_string())
        .arg(idp.microsoft_token_url("contoso.onmicrosoft.com"))
        .arg(USER)
        .arg(PROXY_PASSWORD)
        .arg(token)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "seed emailproxy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(config)
}

/// Idle sessions per mailbox: Exchange Online's limit, which oauthimap enforces for a Microsoft
/// application (a thousand sessions are fifty mailboxes' worth).
const SESSIONS_PER_MAILBOX: usize = 20;

fn idle_user(i: usize) -> String {
    format!("idle{i}@bench.test")
}

/// Opens `n` IMAP sessions through the gateway, spread over the `logins` (20 logins at a time),
/// and keeps them.
async fn open_sessions(
    port: u16,
    logins: &[(String, String)],
    n: usize,
) -> Result<Vec<tokio::net::TcpStream>> {
    let mut open = Vec::with_capacity(n);
    let mut pending = tokio::task::JoinSet::new();
    let mut started = 0;
    while open.len() < n {
        while started < n && pending.len() < 20 {
            let (user, password) = logins[started % logins.len()].clone();
            pending.spawn(async move {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                let mut c = BufReader::new(tcp);
                let mut line = String::new();
                c.read_line(&mut line).await?;
                c.get_mut()
                    .write_all(format!("a LOGIN {user} {password}\r\n").as_bytes())
                    .await?;
                loop {
                    line.clear();
                    if c.read_line(&mut line).await? == 0 {
                        bail!("the gateway closed the session");
                    }
                    if line.starts_with("a OK") {
                        return Ok(c.into_inner());
                    }
                    if line.starts_with("a ") {
                        bail!("login refused: {line}");
                    }
                }
            });
            started += 1;
        }
        match pending.join_next().await {
            Some(done) => open.push(done??),
            None => break,
        }
    }
    Ok(open)
}

#[allow(clippy::too_many_lines)] // one story: fixtures, setup, then each measurement
async fn run(args: &Args, work: &Path) -> Result<String> {
    let idp = FakeIdp::start().await?;
    let idle_users: Vec<String> = (0..args.sessions.div_ceil(SESSIONS_PER_MAILBOX))
        .map(idle_user)
        .collect();
    let mut users = vec![USER];
    users.extend(idle_users.iter().map(String::as_str));
    setup::register(&idp, &users);
    idp.set_access_token_lifetime(Duration::from_hours(4));
    let mut options = DovecotOptions::new(idp.introspection_url());
    options.mail_services = true;
    options.extra_config = setup::DOVECOT_LIMITS.into();
    let dovecot = Dovecot::start(options).await?;
    eprintln!("seeding {} messages", args.messages);
    let mut bytes = 0u64;
    for i in 0..args.messages {
        let raw = corpus::message(i);
        bytes += raw.len() as u64;
        dovecot.deliver(USER, &raw)?;
    }
    let data = work.join("data");
    setup::data_folder(&idp, &dovecot, &data, &users, &[]).await?;
    let mut idle_logins = Vec::new();
    for user in &idle_users {
        let password = oauthimap(
            args,
            &data,
            &["gateway", "password", "add", user, "--name", "idle"],
        )
        .await?;
        idle_logins.push((user.clone(), password));
    }
    let password = oauthimap(
        args,
        &data,
        &["gateway", "password", "add", USER, "--name", "bench"],
    )
    .await?;
    let ca = dovecot.ca_pem_path().display().to_string();
    let imaps = dovecot.imaps_port().to_string();
    let submission = dovecot.submission_port().to_string();
    oauthimap(
        args,
        &data,
        &[
            "gateway",
            "upstream",
            "set",
            "--app",
            "Bench",
            "--host",
            "localhost",
            "--port",
            &imaps,
            "--ca-file",
            &ca,
        ],
    )
    .await?;
    oauthimap(
        args,
        &data,
        &[
            "gateway",
            "upstream",
            "set",
            "--protocol",
            "smtp",
            "--app",
            "Bench",
            "--host",
            "localhost",
            "--port",
            &submission,
            "--security",
            "starttls",
            "--ca-file",
            &ca,
        ],
    )
    .await?;
    let token = oauthimap(args, &data, &["token", USER]).await?;

    let (web, gw_imap, gw_smtp, proxy_port) = (
        setup::free_port()?,
        setup::free_port()?,
        setup::free_port()?,
        setup::free_port()?,
    );
    let serve_log = work.join("serve.log");
    let serve = Running(
        tokio::process::Command::new(&args.oauthimap)
            .arg("serve")
            .envs(setup::oauthimap_env(&data))
            .env("OAUTHIMAP_LISTEN", format!("127.0.0.1:{web}"))
            .env(
                "OAUTHIMAP_GATEWAY__IMAP_LISTEN",
                format!("127.0.0.1:{gw_imap}"),
            )
            .env(
                "OAUTHIMAP_GATEWAY__SUBMISSION_LISTEN",
                format!("127.0.0.1:{gw_smtp}"),
            )
            .env(
                "OAUTHIMAP_GATEWAY__MAX_SESSIONS",
                (args.sessions + 100).to_string(),
            )
            .env("OAUTHIMAP_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&serve_log)?)
            .spawn()
            .context("run oauthimap serve")?,
    );
    wait_for_port(gw_imap, "the gateway").await?;
    let serve_pid = serve.0.id().context("serve's pid")?;

    let config = emailproxy_config(args, work, &idp, &dovecot, proxy_port, &token).await?;
    let proxy = Running(
        tokio::process::Command::new(&args.python)
            .arg(&args.emailproxy)
            .args(["--no-gui", "--config-file"])
            .arg(&config)
            .arg("--cache-store")
            .arg(&config)
            .env("SSL_CERT_FILE", &ca)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("emailproxy.log"))?)
            .spawn()
            .context("run emailproxy")?,
    );
    wait_for_port(proxy_port, "emailproxy").await?;

    let env = [
        ("PASSWORD", password.clone()),
        ("TOKEN", token.clone()),
        ("CA", ca.clone()),
    ];
    let direct = [
        "localhost".to_owned(),
        imaps.clone(),
        "xoauth2".into(),
        USER.into(),
    ];
    let through = |port: u16| {
        [
            "127.0.0.1".to_owned(),
            port.to_string(),
            "login".into(),
            USER.into(),
        ]
    };
    let proxy_env = [("PASSWORD", PROXY_PASSWORD.to_owned()), ("CA", ca.clone())];

    // Warm-up: the gateway's first login verifies the argon2id hash (then cached), the proxy's
    // derives its key, Dovecot's caches fill.
    client(
        args,
        &env,
        &[
            &["logins".to_owned()][..],
            &through(gw_imap),
            &["1".to_owned()],
        ]
        .concat(),
    )
    .await?;
    client(
        args,
        &proxy_env,
        &[
            &["logins".to_owned()][..],
            &through(proxy_port),
            &["1".to_owned()],
        ]
        .concat(),
    )
    .await?;

    // 1. Fetch the whole mailbox.
    let (mut t_direct, mut t_gateway, mut t_proxy) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.repeat {
        eprintln!("fetch round {round} of {}", args.repeat);
        for (times, cli, env) in [
            (&mut t_direct, direct.to_vec(), &env[..]),
            (&mut t_gateway, through(gw_imap).to_vec(), &env[..]),
            (&mut t_proxy, through(proxy_port).to_vec(), &proxy_env[..]),
        ] {
            let v = client(args, env, &[&["fetch".to_owned()][..], &cli].concat()).await?;
            ensure!(
                v["messages"].as_u64() == Some(args.messages as u64),
                "a fetch got {} of {} messages",
                v["messages"],
                args.messages
            );
            times.push(v["secs"].as_f64().unwrap_or_default());
        }
    }
    let (fd, fg, fp) = (
        median(&mut t_direct),
        median(&mut t_gateway),
        median(&mut t_proxy),
    );
    let per_message = |t: f64| (t - fd) * 1000.0 / args.messages as f64;

    // 2. Login latency with a warm token and a verified password.
    eprintln!("logins");
    let n = "30".to_owned();
    let ld = client(
        args,
        &env,
        &[
            &["logins".to_owned()][..],
            &direct,
            std::slice::from_ref(&n),
        ]
        .concat(),
    )
    .await?;
    let lg = client(
        args,
        &env,
        &[&["logins".to_owned()][..], &through(gw_imap), &[n]].concat(),
    )
    .await?;
    let (ld, lg) = (
        ld["median_ms"].as_f64().unwrap_or_default(),
        lg["median_ms"].as_f64().unwrap_or_default(),
    );

    // 3. SMTP submission.
    eprintln!(
        "smtp: {} messages of {} KB, directly then through the gateway",
        args.smtp_messages, args.smtp_kb
    );
    let (count, kb) = (args.smtp_messages.to_string(), args.smtp_kb.to_string());
    // Direct and through the gateway in turns, `repeat` times each: the median of each counts,
    // and neither always runs on a warmer or a fuller server.
    let (mut direct_secs, mut gateway_secs) = (Vec::new(), Vec::new());
    for _ in 0..args.repeat {
        let sd = client(
            args,
            &env,
            &[
                "smtp".to_owned(),
                "localhost".into(),
                submission.clone(),
                "xoauth2".into(),
                USER.into(),
                count.clone(),
                kb.clone(),
            ],
        )
        .await?;
        direct_secs.push(sd["secs"].as_f64().unwrap_or_default());
        let sg = client(
            args,
            &env,
            &[
                "smtp".to_owned(),
                "127.0.0.1".into(),
                gw_smtp.to_string(),
                "login".into(),
                USER.into(),
                count.clone(),
                kb.clone(),
            ],
        )
        .await?;
        gateway_secs.push(sg["secs"].as_f64().unwrap_or_default());
    }
    let sent = 2 * args.repeat * args.smtp_messages;
    let relayed = dovecot
        .wait_relayed(sent, Duration::from_mins(2))
        .await
        .len();
    ensure!(
        relayed == sent,
        "the SMTP sink got {relayed} of {sent} messages"
    );
    let (sd, sg) = (median(&mut direct_secs), median(&mut gateway_secs));

    // 4. Idle sessions: the gateway's resident memory with them open, against before.
    eprintln!(
        "opening {} idle sessions through the gateway",
        args.sessions
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = setup::rss_kib(serve_pid)?;
    let sessions = open_sessions(gw_imap, &idle_logins, args.sessions).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = setup::rss_kib(serve_pid)?;
    let per_session = after.saturating_sub(before) as f64 / sessions.len() as f64;
    drop(sessions);
    drop(proxy);
    drop(serve);

    let mut r = String::new();
    let _ = writeln!(
        r,
        "oauthimap gateway benchmark: {} messages ({:.1} MB) in one mailbox of a private Dovecot 2.3",
        args.messages,
        bytes as f64 / 1e6
    );
    let _ = writeln!(
        r,
        "Python imaplib UID FETCH 1:* BODY.PEEK[], median of {} runs; emailproxy {} from PyPI.\n",
        args.repeat,
        emailproxy_version(args).await
    );
    let _ = writeln!(r, "| what | figure | target |");
    let _ = writeln!(r, "|---|---|---|");
    let _ = writeln!(r, "| fetch directly (XOAUTH2, TLS) | {fd:.2} s | |");
    let _ = writeln!(
        r,
        "| fetch through the gateway | {fg:.2} s = {:.3}x direct ({:+.3} ms per message) | at most 1.10x |",
        fg / fd,
        per_message(fg)
    );
    let _ = writeln!(
        r,
        "| fetch through email-oauth2-proxy | {fp:.2} s = {:.3}x direct ({:+.3} ms per message) | |",
        fp / fd,
        per_message(fp)
    );
    let _ = writeln!(
        r,
        "| gateway against email-oauth2-proxy | {:.1}x faster in total, {} per message added | at least 20x per message |",
        fp / fg,
        if per_message(fg) > 0.0 {
            format!("{:.1}x less time", per_message(fp) / per_message(fg))
        } else {
            "no measurable time".into()
        }
    );
    let _ = writeln!(
        r,
        "| login directly (TLS + XOAUTH2), median of 30 | {ld:.2} ms | |"
    );
    let _ = writeln!(
        r,
        "| login through the gateway (LOGIN, warm token) | {lg:.2} ms = {:+.2} ms | at most +5 ms |",
        lg - ld
    );
    let _ = writeln!(
        r,
        "| SMTP {} x {} KB directly (STARTTLS + XOAUTH2), median of {} | {sd:.2} s | |",
        args.smtp_messages, args.smtp_kb, args.repeat
    );
    let _ = writeln!(
        r,
        "| SMTP through the gateway | {sg:.2} s = {:.3}x direct | at most 1.10x |",
        sg / sd
    );
    let _ = writeln!(
        r,
        "| {} idle IMAP sessions through the gateway | {:.1} KiB each (RSS {} -> {} KiB) | at most 64 KiB each |",
        args.sessions, per_session, before, after
    );
    Ok(r)
}

async fn emailproxy_version(args: &Args) -> String {
    let out = tokio::process::Command::new(&args.python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('emailproxy'))",
        ])
        .output()
        .await;
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
