//! `oauthimap-bench`: how fast `oauthimap collect --once` empties a big mailbox, next to getmail6
//! and to the server's own limit (a raw `UID FETCH 1:* BODY.PEEK[]` stream).
//!
//! One run starts the fake identity provider (in this process, for Dovecot's token introspection)
//! and a private Dovecot, seeds identical mailboxes (one per measured tool, so each starts from the
//! same unread mailbox) with the mix of [`corpus`], sets up oauthimap data folders like an admin
//! would, then runs each tool as its own process under `/usr/bin/time -v`, checks that each got
//! every message, and prints the table and the ratios against the targets of issue 5.
//! Run it through `bench/run` (see bench/README.md), which installs getmail6 and builds in release.

// Byte counts and durations shown with one decimal are far below f64's 2^52 exact range.
#![allow(clippy::cast_precision_loss)]

mod corpus;
mod measure;
mod parse;
mod peers;
#[allow(dead_code)] // the gateway and fleet benchmarks use the rest of it
mod setup;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions};
use oauthimap_fake_idp::FakeIdp;
use oauthimap_types::SinkKind;

use measure::{Job, Row};
use setup::ReceiverSpec;

/// The command line (bench/run fills it in).
#[derive(Debug, Parser)]
#[command(name = "oauthimap-bench")]
#[allow(clippy::struct_excessive_bools)] // independent command-line switches
struct Args {
    /// The `oauthimap` binary to measure (a release build).
    #[arg(long)]
    oauthimap: PathBuf,
    /// getmail6's `getmail` script (from a venv).
    #[arg(long)]
    getmail: PathBuf,
    /// The Python that runs the raw client.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// The raw client (`bench/raw_fetch.py`).
    #[arg(long)]
    raw_client: PathBuf,
    /// Messages in the big mailbox.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Messages in the small mailbox (peak memory of oauthimap against mailbox size).
    #[arg(long, default_value_t = 2_000)]
    small: usize,
    /// Where the report goes (also printed); logs go to `logs/` next to it.
    #[arg(long, default_value = "bench/results/latest.txt")]
    out: PathBuf,
    /// Keep the work folder (data folders, sink maildirs) instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// Diagnosis: run the oauthimap collections under `strace -f -c` (syscall counts in
    /// `logs/<label>.strace`). Slows them down: the figures are then not comparable.
    #[arg(long)]
    strace: bool,
    /// Diagnosis: only time parsing and JSON of the corpus in this process (no Dovecot, no tools).
    #[arg(long)]
    parse_only: bool,
    /// Diagnosis: record the oauthimap collections with `perf record -g` (profiles in
    /// `logs/<label>.perf`, read with `perf report -i`). The figures are then not comparable.
    #[arg(long)]
    perf: bool,
    /// Diagnosis: run the oauthimap collections under `heaptrack` (Debian's package; heap
    /// profiles in `logs/<label>.heaptrack.zst`, read with `heaptrack_print`). The figures are
    /// then not comparable.
    #[arg(long)]
    heaptrack: bool,
    /// A quicker run without getmail6 (it takes most of a full run's time): no throughput ratio.
    #[arg(long)]
    skip_getmail: bool,
    /// How often the raw stream and the store collection (the two figures of the time ratio)
    /// are measured, each store run on a mailbox of its own; the report shows the median run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=9))]
    repeat: u32,
}

/// The collector's fetch batches (`crates/collector/src/pass.rs`): up to this many messages and
/// [`BATCH_BYTES`] (a larger message goes alone); three batches are in flight at most.
const BATCH_COUNT: usize = 250;
const BATCH_BYTES: u64 = 6 * 1024 * 1024;

/// The store runs' users: `store1@bench.test`, ... (one mailbox per repeat).
fn store_user(run: u32) -> String {
    format!("store{run}@bench.test")
}
const MAILDIR: &str = "maildir@bench.test";
const GETMAIL: &str = "getmail@bench.test";
const RAW: &str = "raw@bench.test";
/// The small store runs' users: `small1@bench.test`, ... (one mailbox per repeat).
fn small_user(run: u32) -> String {
    format!("small{run}@bench.test")
}

/// Sizes of the seeded mailboxes.
#[derive(Debug, Default)]
struct Seeded {
    big_bytes: u64,
    small_bytes: u64,
    largest: u64,
    over_1mb: usize,
    /// The largest fetch batch as the collector plans them (see [`BATCH_COUNT`]), big and small
    /// mailbox: with the number of batches in flight, what bounds its memory.
    big_batch_max: u64,
    small_batch_max: u64,
    secs: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.parse_only {
        print!("{}", parse::run(args.messages)?);
        return Ok(());
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    ensure!(
        args.small <= args.messages,
        "--small must not exceed --messages"
    );
    for tool in [&args.oauthimap, &args.getmail, &args.raw_client] {
        ensure!(tool.exists(), "{} does not exist", tool.display());
    }
    let out_dir = args
        .out
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let logs = out_dir.join("logs");
    let _ = std::fs::remove_dir_all(&logs); // no stale logs of an earlier run
    std::fs::create_dir_all(&logs)?;
    let work = std::env::temp_dir().join(format!("oauthimap-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run(&args, &work, &logs).await;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    let report = result?;
    println!("{report}");
    std::fs::write(&args.out, &report).with_context(|| format!("write {}", args.out.display()))?;
    eprintln!(
        "saved to {} (logs in {})",
        args.out.display(),
        logs.display()
    );
    Ok(())
}

#[allow(clippy::too_many_lines)] // one story: fixtures, seed, set up, measure and check each tool
async fn run(args: &Args, work: &Path, logs: &Path) -> Result<String> {
    let idp = FakeIdp::start().await?;
    let store_users: Vec<String> = (1..=args.repeat).map(store_user).collect();
    let mut users: Vec<&str> = store_users.iter().map(String::as_str).collect();
    let small_users: Vec<String> = (1..=args.repeat).map(small_user).collect();
    users.extend(small_users.iter().map(String::as_str));
    users.extend([MAILDIR, GETMAIL, RAW]);
    setup::register(&idp, &users);
    let dovecot = Dovecot::start(DovecotOptions::new(idp.introspection_url())).await?;
    eprintln!(
        "Dovecot on 127.0.0.1:{} (imaps), fake identity provider on {}",
        dovecot.imaps_port(),
        idp.base_url()
    );
    let mut big_users: Vec<&str> = store_users.iter().map(String::as_str).collect();
    big_users.extend([MAILDIR, GETMAIL, RAW]);
    let small_refs: Vec<&str> = small_users.iter().map(String::as_str).collect();
    let seeded = seed(&dovecot, &big_users, &small_refs, args.messages, args.small)?;

    // oauthimap's data folders: one per measured run, so each starts empty.
    let maildir_data = work.join("data-maildir");
    let tokens_data = work.join("data-tokens");
    let sink_maildir = work.join("sink-maildir");
    let getmail_maildir = work.join("getmail-maildir");
    let spec = |name: &str, user: &str, sink, maildir: Option<&Path>| ReceiverSpec {
        name: name.into(),
        user: user.into(),
        sink,
        maildir: maildir.map(Path::to_path_buf),
    };
    for user in store_users.iter().chain(&small_users) {
        setup::data_folder(
            &idp,
            &dovecot,
            &work.join(format!("data-{user}")),
            &[user],
            &[spec("store", user, SinkKind::Store, None)],
        )
        .await?;
    }
    setup::data_folder(
        &idp,
        &dovecot,
        &maildir_data,
        &[MAILDIR],
        &[spec(
            "maildir",
            MAILDIR,
            SinkKind::Maildir,
            Some(&sink_maildir),
        )],
    )
    .await?;
    setup::data_folder(&idp, &dovecot, &tokens_data, &[GETMAIL, RAW], &[]).await?;

    let oauthimap = std::fs::canonicalize(&args.oauthimap)?;
    let job = |label: &str, program: &Path, mut cmd_args: Vec<String>, env| {
        let mut program = program.to_path_buf();
        // A diagnosis wrapper: `TOOL BEFORE... logs/<label>.TOOL AFTER... PROGRAM ARGS...`.
        let wrapper: Option<(&str, &[&str], &[&str])> = if program != oauthimap {
            None
        } else if args.strace {
            Some(("strace", &["-f", "-c", "-o"], &[]))
        } else if args.perf {
            Some(("perf", &["record", "-g", "-o"], &["--"]))
        } else if args.heaptrack {
            Some(("heaptrack", &["-o"], &[]))
        } else {
            None
        };
        if let Some((tool, before, after)) = wrapper {
            let log = logs.join(format!("{label}.{tool}")).display().to_string();
            let head: Vec<String> = before
                .iter()
                .map(|o| (*o).to_owned())
                .chain([log])
                .chain(after.iter().map(|o| (*o).to_owned()))
                .chain([program.display().to_string()])
                .collect();
            cmd_args.splice(0..0, head);
            program = PathBuf::from(tool);
        }
        Job {
            label: label.into(),
            program,
            args: cmd_args,
            env,
            log_dir: logs.to_path_buf(),
        }
    };
    let collect_args = |receiver: &str| -> Vec<String> {
        // `-v`: the pass logs how busy each stage was (in logs/<label>.err).
        ["--json", "-v", "collect", "--once", "--receiver", receiver]
            .map(String::from)
            .to_vec()
    };
    let n = args.messages as u64;
    let mut rows = Vec::new();

    // d. The server's limit, first (it changes nothing on the server).
    let token = access_token(&oauthimap, &tokens_data, RAW).await?;
    let mut raw_runs = Vec::new();
    for run in 1..=args.repeat {
        eprintln!("measuring: raw UID FETCH stream ({run} of {})", args.repeat);
        let mut raw_env = setup::oauthimap_env(&tokens_data);
        raw_env.push(("RAW_TOKEN".into(), token.clone()));
        let ran = job(
            &format!("raw-fetch-{run}"),
            &args.python,
            vec![
                args.raw_client.display().to_string(),
                "127.0.0.1".into(),
                dovecot.imaps_port().to_string(),
                dovecot.ca_pem_path().display().to_string(),
                RAW.into(),
            ],
            raw_env,
        )
        .run()
        .await?;
        let counted: serde_json::Value = serde_json::from_str(ran.stdout.trim())
            .with_context(|| format!("the raw client's output: {:?}", ran.stdout))?;
        let (raw_msgs, raw_bytes) = (
            counted["messages"].as_u64().unwrap_or(0),
            counted["bytes"].as_u64().unwrap_or(0),
        );
        check("raw stream", raw_msgs, n)?;
        check("raw stream bytes", raw_bytes, seeded.big_bytes)?;
        raw_runs.push(Row {
            tool: "raw UID FETCH 1:* (python, TLS)".into(),
            messages: raw_msgs,
            bytes: raw_bytes,
            usage: ran.usage,
        });
    }
    let raw_walls = walls(&raw_runs);
    rows.push(median(raw_runs));

    // a. oauthimap into the built-in store; also used for the small mailbox below.
    let store_run = async |label: String, user: &str, messages: u64, bytes: u64, tool: String| {
        eprintln!("measuring: {label}");
        let data = work.join(format!("data-{user}"));
        let ran = job(
            &label,
            &oauthimap,
            collect_args("store"),
            setup::oauthimap_env(&data),
        )
        .run()
        .await?;
        check(
            &format!("{label} (delivered)"),
            delivered(&ran.stdout)?,
            messages,
        )?;
        check(
            &format!("{label} (rows)"),
            setup::store_count(&data).await? as u64,
            messages,
        )?;
        check(
            &format!("{label} (\\Seen on the server)"),
            seen(&dovecot, user).await?,
            messages,
        )?;
        anyhow::Ok(Row {
            tool,
            messages,
            bytes,
            usage: ran.usage,
        })
    };
    let mut store_runs = Vec::new();
    for (run, user) in (1..).zip(&store_users) {
        let label = format!("oauthimap-store-{run}");
        let tool = "oauthimap collect -> store".to_owned();
        store_runs.push(store_run(label, user, n, seeded.big_bytes, tool).await?);
    }
    let store_walls = walls(&store_runs);
    let store_rss = rss_list(&store_runs);
    let store_rss_median = median_rss(&store_runs);
    rows.push(median(store_runs));

    // b. oauthimap into a maildir.
    eprintln!("measuring: oauthimap collect --once into a maildir");
    let ran = job(
        "oauthimap-maildir",
        &oauthimap,
        collect_args("maildir"),
        setup::oauthimap_env(&maildir_data),
    )
    .run()
    .await?;
    check("oauthimap maildir (delivered)", delivered(&ran.stdout)?, n)?;
    let (files, bytes) = peers::maildir_contents(&sink_maildir)?;
    check("oauthimap maildir (files)", files, n)?;
    check(
        "oauthimap maildir (\\Seen on the server)",
        seen(&dovecot, MAILDIR).await?,
        n,
    )?;
    rows.push(Row {
        tool: "oauthimap collect -> maildir".into(),
        messages: files,
        bytes,
        usage: ran.usage,
    });

    // c. getmail6 into a maildir.
    if !args.skip_getmail {
        eprintln!("measuring: getmail6 into a maildir");
        let getmail_dir = work.join("getmail");
        std::fs::create_dir_all(&getmail_dir)?;
        peers::make_nobody_maildir(&getmail_maildir)?;
        let rc = getmail_dir.join("getmailrc");
        std::fs::write(
            &rc,
            peers::getmail_rc(&peers::GetmailConfig {
                port: dovecot.imaps_port(),
                user: GETMAIL,
                ca_file: &dovecot.ca_pem_path(),
                oauthimap: &oauthimap,
                maildir: &getmail_maildir,
            }),
        )?;
        std::fs::copy(&rc, logs.join("getmailrc"))?;
        let ran = job(
            "getmail6",
            &args.getmail,
            vec![
                format!("--getmaildir={}", getmail_dir.display()),
                format!("--rcfile={}", rc.display()),
            ],
            setup::oauthimap_env(&tokens_data),
        )
        .run()
        .await?;
        let (files, bytes) = peers::maildir_contents(&getmail_maildir)?;
        check("getmail6 (files)", files, n)?;
        check(
            "getmail6 (\\Seen on the server)",
            seen(&dovecot, GETMAIL).await?,
            n,
        )?;
        rows.push(Row {
            tool: "getmail6 -> maildir".into(),
            messages: files,
            bytes,
            usage: ran.usage,
        });
    }

    // a, smaller: peak memory against mailbox size.
    let mut small_runs = Vec::new();
    for (run, user) in (1..).zip(&small_users) {
        let label = format!("oauthimap-store-small-{run}");
        let tool = format!("oauthimap collect -> store ({} msgs)", args.small);
        let small = args.small as u64;
        small_runs.push(store_run(label, user, small, seeded.small_bytes, tool).await?);
    }
    // Peak memory, median of each mailbox size's runs.
    let memory = (store_rss_median, median_rss(&small_runs));
    let small_rss = rss_list(&small_runs);
    rows.push(median(small_runs));

    dovecot.stop().await?;
    idp.shutdown().await;
    let mut text = report(args, &seeded, &rows, memory);
    if args.repeat > 1 {
        let _ = writeln!(
            text,
            "  runs, wall s (the table shows the median): raw stream {raw_walls}; store {store_walls}"
        );
        let _ = writeln!(
            text,
            "  runs, peak MB (the memory ratio compares the medians): store {store_rss}; store {} msgs {small_rss}",
            args.small
        );
    }
    Ok(text)
}

/// The run with the median wall time.
fn median(mut runs: Vec<Row>) -> Row {
    runs.sort_by(|a, b| a.usage.wall_secs.total_cmp(&b.usage.wall_secs));
    runs.swap_remove(runs.len() / 2)
}

/// The median peak RSS of some runs, in MB.
fn median_rss(runs: &[Row]) -> f64 {
    let mut rss: Vec<f64> = runs.iter().map(Row::rss_mb).collect();
    rss.sort_by(f64::total_cmp);
    rss[rss.len() / 2]
}

/// The peak RSS of some runs, for the report.
fn rss_list(runs: &[Row]) -> String {
    runs.iter()
        .map(|r| format!("{:.1}", r.rss_mb()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The wall times of some runs, for the report.
fn walls(runs: &[Row]) -> String {
    runs.iter()
        .map(|r| format!("{:.2}", r.usage.wall_secs))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes the mailboxes through the fixture: message `i` to every big mailbox, and to the small
/// one while `i < small`. Then `sync`, so writeback does not run during the measurements.
fn seed(
    dovecot: &Dovecot,
    big_users: &[&str],
    small_users: &[&str],
    messages: usize,
    small: usize,
) -> Result<Seeded> {
    let started = Instant::now();
    let mut s = Seeded::default();
    // Messages and bytes of the fetch batch message `i` falls into.
    let mut batch = (0, 0);
    for i in 0..messages {
        let raw = corpus::message(i);
        let mut size = 0;
        for user in big_users {
            size = dovecot.deliver(user, &raw)?.bytes.len() as u64;
        }
        if i < small {
            for user in small_users {
                dovecot.deliver(user, &raw)?;
            }
            s.small_bytes += size;
        }
        s.big_bytes += size;
        if batch.0 == BATCH_COUNT || (batch.0 > 0 && batch.1 + size > BATCH_BYTES) {
            batch = (0, 0);
        }
        batch = (batch.0 + 1, batch.1 + size);
        s.big_batch_max = s.big_batch_max.max(batch.1);
        if i < small {
            s.small_batch_max = s.big_batch_max;
        }
        s.largest = s.largest.max(size);
        s.over_1mb += usize::from(size > 1_048_576);
        if (i + 1) % 2000 == 0 {
            eprintln!(
                "seeded {} messages ({:.0} MB each mailbox)",
                i + 1,
                s.big_bytes as f64 / 1_048_576.0
            );
        }
    }
    let status = std::process::Command::new("sync").status()?;
    ensure!(status.success(), "sync failed");
    s.secs = started.elapsed().as_secs_f64();
    Ok(s)
}

/// `oauthimap token USER`: the access token the raw client logs in with (not measured).
async fn access_token(oauthimap: &Path, data: &Path, user: &str) -> Result<String> {
    let out = tokio::process::Command::new(oauthimap)
        .args(["token", user])
        .envs(setup::oauthimap_env(data))
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "oauthimap token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// The `delivered` count of `oauthimap --json collect --once`.
fn delivered(stdout: &str) -> Result<u64> {
    // The JSON array, without what a diagnosis wrapper (heaptrack) printed around it.
    let start = if stdout.starts_with('[') {
        0
    } else {
        stdout.find("\n[").map_or(0, |i| i + 1)
    };
    let outcomes: serde_json::Value = serde_json::Deserializer::from_str(&stdout[start..])
        .into_iter()
        .next()
        .context("collect printed no JSON")?
        .with_context(|| format!("collect's JSON output: {stdout:?}"))?;
    let o = &outcomes[0];
    ensure!(
        o["error"].is_null() && o["stopped"].is_null(),
        "the collection reported a problem: {o}"
    );
    ensure!(
        o["failed"].as_u64() == Some(0) && o["refused"].as_u64() == Some(0),
        "messages failed or were refused: {o}"
    );
    Ok(o["delivered"].as_u64().unwrap_or(0))
}

/// Messages flagged `\Seen` in a user's INBOX.
async fn seen(dovecot: &Dovecot, user: &str) -> Result<u64> {
    let list = dovecot.list_messages(user, "INBOX").await?;
    Ok(list
        .iter()
        .filter(|m| m.flags.iter().any(|f| f == "\\Seen"))
        .count() as u64)
}

/// Fails loudly when a tool did not get exactly the mailbox.
fn check(what: &str, got: u64, want: u64) -> Result<()> {
    if got != want {
        bail!("COUNT MISMATCH: {what}: got {got}, expected {want}");
    }
    eprintln!("  ok: {what} = {got}");
    Ok(())
}

/// The report; `memory` is the median peak RSS (MB) of the big and the small store runs.
fn report(args: &Args, seeded: &Seeded, rows: &[Row], memory: (f64, f64)) -> String {
    let (raw, store, maildir, getmail) = match rows {
        [raw, store, maildir, getmail, _small] => (raw, store, maildir, Some(getmail)),
        [raw, store, maildir, _small] => (raw, store, maildir, None),
        _ => return measure::table(rows),
    };
    let mut s = String::new();
    let _ = writeln!(s, "oauthimap collector benchmark ({})", machine());
    let _ = writeln!(
        s,
        "mailbox: {} messages, {:.1} MB (largest {:.1} MB, {} over 1 MB); small mailbox: {} messages, {:.1} MB; seeded {} mailboxes in {:.1} s",
        args.messages,
        seeded.big_bytes as f64 / 1_048_576.0,
        seeded.largest as f64 / 1_048_576.0,
        seeded.over_1mb,
        args.small,
        seeded.small_bytes as f64 / 1_048_576.0,
        2 * args.repeat + 3,
        seeded.secs
    );
    let _ = writeln!(
        s,
        "largest fetch batch (the collector's: up to {BATCH_COUNT} messages and {} MiB, 3 in flight): {:.1} MB in the big mailbox, {:.1} MB in the small one",
        BATCH_BYTES / 1_048_576,
        seeded.big_batch_max as f64 / 1_048_576.0,
        seeded.small_batch_max as f64 / 1_048_576.0
    );
    let _ = writeln!(
        s,
        "each tool: its own process under /usr/bin/time -v, Dovecot imaps on 127.0.0.1, XOAUTH2, mailbox in the page cache\n"
    );
    s.push_str(&measure::table(rows));
    let vs_raw = store.usage.wall_secs / raw.usage.wall_secs;
    let memory = memory.0 / memory.1;
    let verdict = |ok: bool| if ok { "MET" } else { "MISSED" };
    let _ = writeln!(s, "\nratios (targets of issue 5):");
    if let Some(getmail) = getmail {
        let throughput = store.rate() / getmail.rate();
        let _ = writeln!(
            s,
            "  oauthimap store throughput / getmail6 throughput: {throughput:>6.1}x  (target >= 20x)   {}",
            verdict(throughput >= 20.0)
        );
        let _ = writeln!(
            s,
            "  oauthimap maildir throughput / getmail6:           {:>6.1}x",
            maildir.rate() / getmail.rate()
        );
    } else {
        let _ = writeln!(
            s,
            "  getmail6 skipped (--skip-getmail): no throughput ratio"
        );
    }
    let _ = writeln!(
        s,
        "  oauthimap maildir time / raw stream time:          {:>6.2}x",
        maildir.usage.wall_secs / raw.usage.wall_secs
    );
    let _ = writeln!(
        s,
        "  oauthimap store time / raw stream time:            {vs_raw:>6.2}x  (target <= 2x)    {}",
        verdict(vs_raw <= 2.0)
    );
    let _ = writeln!(
        s,
        "  oauthimap store peak RSS, {:<20} {memory:>6.2}x  (target: no growth, <= 1.25x)   {}",
        format!("{} / {} msgs:", args.messages, args.small),
        verdict(memory <= 1.25)
    );
    s
}

/// CPU count and model, for the report's header.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_default();
    format!("{cpus} CPU(s), {model}")
}

#[cfg(test)]
mod tests {
    use super::delivered;

    #[test]
    fn reads_the_summary_with_or_without_a_wrapper_around_it() {
        let json = r#"[{"receiver":"store","delivered":7,"failed":0,"refused":0,"stopped":null,"error":null}]"#;
        assert_eq!(delivered(json).unwrap(), 7);
        let wrapped = format!(
            "heaptrack output will be written to x\nstarting\n{json}\nHeaptrack finished!\n"
        );
        assert_eq!(delivered(&wrapped).unwrap(), 7);
        let failed = json.replace(r#""failed":0"#, r#""failed":1"#);
        assert!(delivered(&failed).is_err(), "a failed message is reported");
        assert!(delivered("no json here").is_err());
    }
}
