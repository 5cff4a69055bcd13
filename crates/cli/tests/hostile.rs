//! Hostile input to every command of the real binary. The commands come from walking
//! `oauthimap --help` (checked against [`COMMANDS`], so a new one needs a line there) and their
//! arguments from each command's `--help`. Every argument in turn gets each hostile value (empty,
//! 100,000 characters, bytes that are not UTF-8, numbers past every range, bidi overrides, emoji
//! and combining marks, path traversal, format strings, line breaks, terminal escapes, durations,
//! sizes and dates past their limits) while the others keep values that take the command to its
//! work, against a data folder holding applications, an account signed in at the fake identity
//! provider, and receivers. Each run must end with exit 0, 1 or 2 within 20 s: never 101 (a
//! panic), never a signal, and never "panicked" on stderr.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oauthimap_app::{ApplicationInput, CallbackParams, Core, ReceiverInput};
use oauthimap_config::Settings;
use oauthimap_fake_idp::{ClientConfig, FakeIdp, UserConfig};
use oauthimap_types::{Provider, Security, Trigger};
use secrecy::SecretString;

const USER: &str = "help@contoso.com";
/// A run still going after this is killed, and the test fails naming it.
const LIMIT: Duration = Duration::from_secs(20);
const WORKERS: usize = 4;

/// Every command the binary has (besides `help`), as `--help` lists them.
const COMMANDS: &[&str] = &[
    "app add",
    "app list",
    "app show",
    "app update",
    "app remove",
    "account list",
    "account show",
    "account authorize",
    "account add-app-only",
    "account remove",
    "receiver add",
    "receiver list",
    "receiver show",
    "receiver update",
    "receiver remove",
    "keys rotate",
    "keys reseal",
    "keys status",
    "keys generate",
    "token",
    "diagnose",
    "collect",
    "messages list",
    "messages show",
    "messages ledger",
    "messages retry",
    "admin create",
    "admin passwd",
    "admin list",
    "admin unlock",
    "admin remove",
    "api-token create",
    "api-token list",
    "api-token remove",
    "import glpi",
    "gateway status",
    "gateway password add",
    "gateway password list",
    "gateway password remove",
    "gateway upstream set",
    "gateway upstream clear",
    "completions",
    "man",
    "events",
];

/// Commands left out, and why.
const SKIPPED: &[(&str, &str)] = &[("serve", "runs until it is signalled")];

/// The hostile values every argument gets.
fn hostile_values() -> Vec<OsString> {
    [
        "",
        "-1",
        "0",
        "18446744073709551616",
        "99999999999999999999999",
        "\u{202e}fdp.exe\u{202c}",
        "😀👨‍👩‍👧🏳️‍🌈 e\u{301}\u{302}\u{303}\u{304}",
        "../../../../etc/passwd",
        "%n%s%x%p{}{:?}",
        "a\nb\r\nInjected: 1\r",
        "\u{1b}[2J\u{1b}]0;pwned\u{7}",
    ]
    .into_iter()
    .map(OsString::from)
    .chain([
        OsString::from("a".repeat(100_000)),
        OsString::from_vec(b"\xff\xfe\x80ab\xc3\x28".to_vec()),
    ])
    .collect()
}

/// More hostile values for an argument of a kind, told by the value name its `--help` shows.
fn hostile_values_for(value_name: &str) -> &'static [&'static str] {
    match value_name {
        "<DURATION>" | "<TIMEOUT>" => &[
            "300000000000y",
            "18446744073709551615s 999999999ns 1ns",
            "99999999999999999999999s",
        ],
        "<SIZE>" => &["17179869184G", "18446744073709551615k", "2G"],
        "<DATE>" | "<EXPIRES>" => &["99999-12-31", "9999-12-31T23:59:60Z", "0000-00-00"],
        "<URL>" | "<SERVER>" | "<DATABASE>" | "<SINK_TARGET>" | "<ENDPOINT_BASE>" => &[
            "http://0x7f.1/",
            "file:///etc/passwd",
            "https://[::ffff:127.0.0.1]:99999/",
        ],
        "<PORT>" | "<GATEWAY_PORT>" | "<LIMIT>" | "<ID>" => {
            &["65536", "4294967296", "-9223372036854775809"]
        }
        _ => &[],
    }
}

/// A command and what its `--help` says it takes.
#[derive(Debug)]
struct Leaf {
    path: String,
    /// `--name` and value name (`<DURATION>`) of each option that takes a value (not the
    /// global `--config`).
    options: Vec<(String, String)>,
    /// Positional arguments, in order.
    positionals: usize,
}

fn help(bin: &Command, path: &str) -> String {
    let mut cmd = Command::new(bin.get_program());
    cmd.env("OAUTHIMAP_CONFIG", "/dev/null")
        .args(path.split_whitespace())
        .arg("--help");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{path} --help");
    String::from_utf8(out.stdout).unwrap()
}

/// The `Commands:` section's names (two spaces in, then the name).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

fn leaf(path: &str, help: &str) -> Leaf {
    let mut options = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        let words: Vec<&str> = line.split_whitespace().collect();
        let long = match words.as_slice() {
            [short, long, value, ..] if short.len() == 3 && short.ends_with(',') => (long, value),
            [long, value, ..] => (long, value),
            _ => continue,
        };
        if indent <= 6
            && long.0.starts_with("--")
            && long.1.starts_with('<')
            && *long.0 != "--config"
        {
            options.push(((*long.0).to_owned(), (*long.1).to_owned()));
        }
    }
    let positionals = help
        .lines()
        .skip_while(|l| !l.starts_with("Arguments:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| l.starts_with("  <") || l.starts_with("  ["))
        .count();
    Leaf {
        path: path.to_owned(),
        options,
        positionals,
    }
}

fn leaves(bin: &Command) -> Vec<Leaf> {
    let mut found = Vec::new();
    let mut todo = vec![String::new()];
    while let Some(path) = todo.pop() {
        let text = help(bin, &path);
        let subs = subcommands(&text);
        if subs.is_empty() {
            found.push(leaf(&path, &text));
        }
        for s in subs {
            todo.push(format!("{path} {s}").trim().to_owned());
        }
    }
    found
}

/// What the commands are pointed at: a file they read (a key file, a token file, a CA file...),
/// present but junk; the admin password for stdin; a TCP port that accepts and hangs up (the
/// receivers' and `diagnose`'s IMAP server).
struct Files {
    junk: String,
    password: PathBuf,
    port: u16,
}

/// Arguments that take `path` past clap to its work, when `slot` gets the hostile value
/// (`n` makes names unique): options, then positionals.
fn base(path: &str, slot: &str, n: usize, f: &Files) -> (Vec<String>, Vec<String>) {
    let o = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    let user = || vec![USER.to_owned()];
    let junk = &f.junk;
    let receiver = vec![
        "--app=Contoso".to_owned(),
        format!("--account={USER}"),
        "--host=127.0.0.1".to_owned(),
        format!("--port={}", f.port),
        "--security=plain".to_owned(),
    ];
    let mut opts = match (path, slot) {
        ("app add", "--client-secret-file") => o(&["--provider=microsoft", "--client-id=c2"]),
        ("app add", _) => o(&[
            "--provider=microsoft",
            "--client-id=c2",
            "--no-client-secret",
        ]),
        ("account authorize", "--timeout") => o(&["--app=nope"]),
        ("account authorize", _) => o(&["--app=Contoso", "--timeout=1s"]),
        ("account add-app-only", _) => o(&["--app=Contoso", "--mailbox=shared@contoso.com"]),
        ("receiver add" | "receiver update", "--sink-target") => {
            [receiver, o(&["--sink=webhook"])].concat()
        }
        ("receiver add" | "receiver update", _) => receiver,
        ("token", "--host") => o(&["--port=993"]),
        ("token", "--port") => o(&["--host=imap.example.com"]),
        ("token", "--server") => vec![format!("--api-token-file={junk}")],
        ("token", "--api-token-file") => o(&["--server=http://127.0.0.1:9/"]),
        ("diagnose", _) => vec![
            "--host=127.0.0.1".into(),
            format!("--port={}", f.port),
            "--security=plain".into(),
            "--timeout=5s".into(),
        ],
        ("collect", _) => o(&["--once", "--receiver=r1", "--retry-for=1s"]),
        ("admin create" | "admin passwd", _) => o(&["--password-stdin"]),
        ("import glpi", "--database-file") => {
            vec![format!("--key-file={junk}"), "--dry-run".into()]
        }
        ("import glpi", _) => vec![
            "--database=mysql://u:p@127.0.0.1:9/glpi".into(),
            format!("--key-file={junk}"),
            "--dry-run".into(),
        ],
        ("gateway upstream set", "--account") => o(&["--host=127.0.0.1"]),
        ("gateway upstream set", _) => o(&["--app=Contoso", "--host=127.0.0.1"]),
        ("gateway upstream clear", "--account") => Vec::new(),
        ("gateway upstream clear", _) => o(&["--app=Contoso"]),
        _ => Vec::new(),
    };
    // Names that must not collide with an earlier run's.
    match path {
        "app add" | "receiver add" => opts.push(format!("--name=hostile-{n}")),
        "api-token create" | "gateway password add" => opts.push(format!("--name=t{n}")),
        _ => {}
    }
    let positionals = match path {
        "app update" => o(&["Spare"]),
        "receiver update" => o(&["r2"]),
        "account show" | "token" | "diagnose" | "gateway password add" => user(),
        "account remove" => o(&["nobody@contoso.com"]),
        "gateway password remove" => o(&[USER, "glpi"]),
        _ => Vec::new(),
    };
    (opts, positionals)
}

/// One run: the words after `oauthimap`, and whether the password goes to stdin.
struct Run {
    args: Vec<OsString>,
    stdin: bool,
}

fn runs(leaf: &Leaf, values: &[OsString], f: &Files, n: &mut usize) -> Vec<Run> {
    let mut out = Vec::new();
    let path_words = || leaf.path.split_whitespace().map(OsString::from);
    let stdin = matches!(leaf.path.as_str(), "admin create" | "admin passwd");
    let mut build = |slot: &str, position: Option<usize>, value: Option<&OsString>| {
        *n += 1;
        let (opts, mut positionals) = base(&leaf.path, slot, *n, f);
        let mut positionals: Vec<OsString> = positionals.drain(..).map(OsString::from).collect();
        let mut args: Vec<OsString> = path_words().collect();
        let prefix = format!("{slot}=");
        args.extend(
            opts.into_iter()
                .filter(|o| position.is_some() || value.is_none() || !o.starts_with(&prefix))
                .map(OsString::from),
        );
        match (position, value) {
            (Some(i), Some(v)) if i < positionals.len() => positionals[i].clone_from(v),
            (Some(_), Some(v)) => positionals.push(v.clone()),
            (None, Some(v)) => {
                let mut word = OsString::from(&prefix);
                word.push(v);
                args.push(word);
            }
            _ => {}
        }
        if !positionals.is_empty() {
            args.push("--".into());
            args.extend(positionals);
        }
        Run { args, stdin }
    };
    if leaf.options.is_empty() && leaf.positionals == 0 {
        out.push(build("", None, None));
    }
    for v in values {
        for (slot, _) in &leaf.options {
            out.push(build(slot, None, Some(v)));
        }
        for i in 0..leaf.positionals {
            out.push(build("", Some(i), Some(v)));
        }
        if leaf.path == "app list" {
            out.push(build("--config", None, Some(v)));
        }
    }
    for (slot, value_name) in &leaf.options {
        for v in hostile_values_for(value_name) {
            out.push(build(slot, None, Some(&OsString::from(v))));
        }
    }
    out
}

/// What went wrong with one run, if anything.
fn check(cmd: &mut Command, run: &Run, scratch: &Path, f: &Files) -> Option<String> {
    let stderr_path = scratch.join("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let stdin = if run.stdin {
        Stdio::from(std::fs::File::open(&f.password).unwrap())
    } else {
        Stdio::null()
    };
    let mut child = cmd
        .args(&run.args)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Some(format!("still running after {LIMIT:?}, killed"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr = String::from_utf8_lossy(&std::fs::read(&stderr_path).unwrap()).into_owned();
    let panic = stderr
        .lines()
        .skip_while(|l| !l.contains("panicked"))
        .take(2)
        .collect::<Vec<_>>()
        .join(" / ");
    match status.code() {
        Some(0..=2) if panic.is_empty() => None,
        Some(code) => Some(format!("exit {code}: {panic}")),
        None => Some(format!("killed by a signal ({status}): {panic}")),
    }
}

/// The command line, each word cut short.
fn shown(args: &[OsString]) -> String {
    args.iter()
        .map(|a| {
            let a = a.to_string_lossy();
            let n = a.chars().count();
            if n > 40 {
                format!("{}…({n} chars)", a.chars().take(40).collect::<String>())
            } else {
                format!("{a:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn env(data: &Path) -> Vec<(String, String)> {
    vec![
        ("OAUTHIMAP_DATA_DIR".into(), data.display().to_string()),
        (
            "OAUTHIMAP_EXTERNAL_BASE_URL".into(),
            "http://127.0.0.1:9/".into(),
        ),
        ("OAUTHIMAP_LISTEN".into(), "127.0.0.1:0".into()),
    ]
}

/// A data folder with two applications (Contoso, with a signed-in account; Spare) and two
/// receivers of that account (r1 for `collect`, r2 for `receiver update`).
async fn populate(data: &Path, idp: &FakeIdp, port: u16) {
    idp.add_client(ClientConfig::microsoft(
        "hostile-client",
        "s3cret-value",
        "http://127.0.0.1:9/oauth/callback",
    ));
    idp.add_user(UserConfig::new(USER, "Help"));
    idp.set_default_user(USER);
    let app = Core::open(Settings::load_from(None, env(data)).unwrap())
        .await
        .unwrap();
    for (name, client) in [("Contoso", "hostile-client"), ("Spare", "spare-client")] {
        app.add_application(&ApplicationInput {
            name: Some(name.into()),
            provider: Some(Provider::Microsoft),
            client_id: Some(client.into()),
            client_secret: Some(SecretString::from("s3cret-value".to_owned())),
            tenant: Some("contoso.onmicrosoft.com".into()),
            endpoint_base: Some(idp.base_url().to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let start = app.start_sign_in("Contoso", None, None).await.unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = http.get(&start.url).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let query: std::collections::HashMap<String, String> = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    app.finish_sign_in(&CallbackParams {
        code: Some(query["code"].clone()),
        state: Some(query["state"].clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    for name in ["r1", "r2"] {
        app.create_receiver(&ReceiverInput {
            name: Some(name.into()),
            application: Some("Contoso".into()),
            account: Some(USER.into()),
            host: Some("127.0.0.1".into()),
            port: Some(port),
            security: Some(Security::Plain),
            trigger: Some(Trigger::Poll),
            ..Default::default()
        })
        .await
        .map(|(receiver, _)| receiver)
        .unwrap();
    }
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_panics_on_hostile_arguments() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    // Deep enough that `../../../../etc/passwd` and the like stay inside the temporary folder
    // (`man --out` writes there).
    let cwd = (0..8).fold(dir.path().to_owned(), |p, i| p.join(format!("d{i}")));
    std::fs::create_dir_all(&cwd).unwrap();
    let data = dir.path().join("data");
    let idp = FakeIdp::start().await.unwrap();
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for connection in server.incoming() {
            drop(connection);
        }
    });
    populate(&data, &idp, port).await;
    let files = Files {
        junk: dir.path().join("junk").display().to_string(),
        password: dir.path().join("password"),
        port,
    };
    std::fs::write(&files.junk, "not a key\n").unwrap();
    std::fs::write(&files.password, "Correct-Horse-Battery-9\n").unwrap();

    let started = Instant::now();
    let (count, failures) = tokio::task::spawn_blocking(move || {
        let bin = common::oauthimap(&cwd);
        let mut found = leaves(&bin);
        // The runs that mostly wait (a sign-in that never comes, for 1 s) go first, beside
        // the others.
        found.sort_by_key(|l| l.path != "account authorize");
        let names: BTreeSet<&str> = found.iter().map(|l| l.path.as_str()).collect();
        let expected: BTreeSet<&str> = COMMANDS
            .iter()
            .copied()
            .chain(SKIPPED.iter().map(|(c, _)| *c))
            .collect();
        assert_eq!(
            names, expected,
            "the commands --help lists, and those this test knows (COMMANDS, SKIPPED)"
        );
        let values = hostile_values();
        let mut n = 0;
        let all: Vec<Run> = found
            .iter()
            .filter(|l| !SKIPPED.iter().any(|(c, _)| *c == l.path))
            .flat_map(|l| runs(l, &values, &files, &mut n))
            .collect();
        let next = AtomicUsize::new(0);
        let failures = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for w in 0..WORKERS {
                let scratch = dir.path().join(format!("w{w}"));
                std::fs::create_dir_all(&scratch).unwrap();
                let (next, failures, all, files, cwd, data) =
                    (&next, &failures, &all, &files, &cwd, &data);
                s.spawn(move || {
                    while let Some(run) = all.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let mut cmd = common::oauthimap(cwd);
                        cmd.envs(env(data));
                        if let Some(why) = check(&mut cmd, run, &scratch, files) {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("oauthimap {}: {why}", shown(&run.args)));
                        }
                    }
                });
            }
        });
        (all.len(), failures.into_inner().unwrap())
    })
    .await
    .unwrap();
    println!("{count} runs in {:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {count} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
