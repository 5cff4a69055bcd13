//! `oauthimap-fleet-bench`: what a thousand receivers in IDLE cost one `oauthimap serve`, next to
//! one receiver, in one run against a private Dovecot and the fake identity provider.
//!
//! Figures (issue 13's targets): the serve process's resident memory with every receiver in IDLE
//! (at most 256 MB), its CPU at rest over a quiet stretch (at most 2 % of one core), and the time
//! from a message landing in a mailbox to its row in the store, over many messages to random
//! mailboxes (p99 at most 2 s); each beside the same for a single receiver. Run it through
//! `bench/fleet` (bench/README.md).

// Counts and durations shown with one decimal are far below f64's 2^52 exact range.
#![allow(clippy::cast_precision_loss)]

#[allow(dead_code)] // the collector benchmark's setup; maildirs and store counts are not used here
#[path = "setup.rs"]
mod setup;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use oauthimap_app::{Core, ReceiverInput};
use oauthimap_config::Settings;
use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions};
use oauthimap_fake_idp::FakeIdp;
use oauthimap_types::{ReceiverState, SinkKind, Trigger};

#[derive(Debug, Parser)]
#[command(name = "oauthimap-fleet-bench")]
struct Args {
    /// The `oauthimap` binary to measure (a release build).
    #[arg(long)]
    oauthimap: PathBuf,
    /// Receivers in IDLE, one mailbox each.
    #[arg(long, default_value_t = 1_000)]
    receivers: usize,
    /// Messages delivered one at a time to random mailboxes for the latency figure.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// The quiet stretch over which CPU at rest is measured, in seconds.
    #[arg(long, default_value_t = 60)]
    rest_secs: u64,
    #[arg(long, default_value = "bench/results/fleet.txt")]
    out: PathBuf,
}

/// What one run measured.
#[derive(Debug)]
struct Figures {
    receivers: usize,
    /// From serve's start until every receiver reported IDLE.
    all_idle: Duration,
    rss_kib: u64,
    cpu_percent: f64,
    /// Delivery latencies, sorted.
    latencies: Vec<Duration>,
}

impl Figures {
    /// The latency below which `per_mille` thousandths of the samples fall (nearest rank).
    fn percentile(&self, per_mille: usize) -> Duration {
        let n = self.latencies.len();
        let rank = (n * per_mille).div_ceil(1000).clamp(1, n);
        self.latencies[rank - 1]
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    ensure!(
        args.oauthimap.exists(),
        "{} does not exist",
        args.oauthimap.display()
    );
    let work = std::env::temp_dir().join(format!("oauthimap-fleet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = async {
        eprintln!("one receiver");
        let one = run(&args, &work.join("one"), 1).await?;
        eprintln!("{} receivers", args.receivers);
        let many = run(&args, &work.join("many"), args.receivers).await?;
        Ok::<_, anyhow::Error>(report(&args, &one, &many))
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    let report = result?;
    setup::save_report(&report, &args.out)
}

fn report(args: &Args, one: &Figures, many: &Figures) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "oauthimap fleet benchmark: receivers in IDLE on one `serve`, a private Dovecot 2.3, the built-in store.\n\
         Latency: {} messages delivered one at a time to random mailboxes, from the file landing in the\n\
         mailbox to its row in the store. CPU at rest over {} s with every receiver in IDLE.\n",
        args.samples, args.rest_secs
    );
    let _ = writeln!(
        r,
        "| what | 1 receiver | {} receivers | ratio | target |",
        many.receivers
    );
    let _ = writeln!(r, "|---|---|---|---|---|");
    let _ = writeln!(
        r,
        "| serve RSS, all in IDLE | {:.1} MB | {:.1} MB | {:.1}x ({:.1} KiB per added receiver) | at most 256 MB |",
        one.rss_kib as f64 / 1024.0,
        many.rss_kib as f64 / 1024.0,
        many.rss_kib as f64 / one.rss_kib.max(1) as f64,
        (many.rss_kib.saturating_sub(one.rss_kib)) as f64 / (many.receivers - 1).max(1) as f64
    );
    let _ = writeln!(
        r,
        "| CPU at rest (% of one core) | {:.2} % | {:.2} % | {:.1}x | at most 2 % |",
        one.cpu_percent,
        many.cpu_percent,
        many.cpu_percent / one.cpu_percent.max(0.01)
    );
    for (label, p) in [("p50", 500), ("p99", 990)] {
        let (a, b) = (one.percentile(p), many.percentile(p));
        let _ = writeln!(
            r,
            "| delivery latency {label} | {} ms | {} ms | {:.2}x | {} |",
            a.as_millis(),
            b.as_millis(),
            b.as_secs_f64() / a.as_secs_f64().max(0.001),
            if label == "p99" { "at most 2 s" } else { "" }
        );
    }
    let _ = writeln!(
        r,
        "| delivery latency max | {} ms | {} ms | | |",
        one.latencies.last().map_or(0, Duration::as_millis),
        many.latencies.last().map_or(0, Duration::as_millis)
    );
    let _ = writeln!(
        r,
        "| from start to all in IDLE | {:.1} s | {:.1} s | | |",
        one.all_idle.as_secs_f64(),
        many.all_idle.as_secs_f64()
    );
    r
}

#[allow(clippy::too_many_lines)] // one story: fixtures, setup, then each measurement
async fn run(args: &Args, work: &Path, n: usize) -> Result<Figures> {
    std::fs::create_dir_all(work)?;
    let idp = FakeIdp::start().await?;
    let users: Vec<String> = (0..n).map(|i| format!("fleet{i}@bench.test")).collect();
    let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
    setup::register(&idp, &user_refs);
    // No refresh during the measurement: a quiet stretch is quiet.
    idp.set_access_token_lifetime(Duration::from_hours(4));
    let mut options = DovecotOptions::new(idp.introspection_url());
    options.extra_config = setup::DOVECOT_LIMITS.into();
    let dovecot = Dovecot::start(options).await?;
    let data = work.join("data");
    let specs: Vec<setup::ReceiverSpec> = users
        .iter()
        .enumerate()
        .map(|(i, user)| setup::ReceiverSpec {
            name: format!("r{i}"),
            user: user.clone(),
            sink: SinkKind::Store,
            maildir: None,
        })
        .collect();
    eprintln!("  authorizing {n} mailboxes");
    setup::data_folder(&idp, &dovecot, &data, &user_refs, &specs).await?;
    let app = Core::open(Settings::load_from(None, setup::oauthimap_env(&data))?).await?;
    for spec in &specs {
        app.change_receiver(
            &spec.name,
            &ReceiverInput {
                trigger: Some(Trigger::Idle),
                ..Default::default()
            },
        )
        .await
        .map(|(receiver, _)| receiver)?;
    }

    let web = setup::free_port()?;
    let started = Instant::now();
    let mut serve = tokio::process::Command::new(&args.oauthimap)
        .arg("serve")
        .envs(setup::oauthimap_env(&data))
        .env("OAUTHIMAP_LISTEN", format!("127.0.0.1:{web}"))
        .env("OAUTHIMAP_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("serve.log"))?)
        .kill_on_drop(true)
        .spawn()
        .context("run oauthimap serve")?;
    let pid = serve.id().context("serve's pid")?;
    eprintln!("  waiting for {n} receivers in IDLE");
    loop {
        let receivers = app.list_receivers().await?;
        let idle = receivers
            .iter()
            .filter(|r| r.state == ReceiverState::Idle)
            .count();
        if idle == n {
            break;
        }
        if started.elapsed() > Duration::from_mins(10) {
            bail!(
                "{idle} of {n} receivers in IDLE after 10 minutes (see {})",
                work.join("serve.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let all_idle = started.elapsed();

    // A quiet stretch: every receiver in IDLE, nothing arriving.
    tokio::time::sleep(Duration::from_secs(5)).await;
    eprintln!("  {} s at rest", args.rest_secs);
    let (cpu_before, at) = (cpu_ticks(pid)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(args.rest_secs)).await;
    let cpu_secs = (cpu_ticks(pid)? - cpu_before) as f64 / clock_ticks_per_sec();
    let cpu_percent = 100.0 * cpu_secs / at.elapsed().as_secs_f64();
    let rss_kib = setup::rss_kib(pid)?;

    // Latency: one message at a time, to a random mailbox, until it is in the store.
    eprintln!("  {} messages, one at a time", args.samples);
    let mut latencies = Vec::with_capacity(args.samples);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..args.samples {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let user = &users[usize::try_from(seed % n as u64).unwrap_or(0)];
        let before = app.message_count().await?;
        let landed = Instant::now();
        dovecot.deliver(user, &message(i))?;
        loop {
            if app.message_count().await? > before {
                break;
            }
            if landed.elapsed() > Duration::from_secs(30) {
                bail!("message {i} to {user} not in the store after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(landed.elapsed());
        // Apart, so each sample is a message arriving in an idle mailbox.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    latencies.sort();
    let _ = serve.start_kill();
    let _ = serve.wait().await;
    app.close().await;
    dovecot.stop().await?;
    Ok(Figures {
        receivers: n,
        all_idle,
        rss_kib,
        cpu_percent,
        latencies,
    })
}

fn message(i: usize) -> Vec<u8> {
    format!(
        "From: Sender <sender{i}@example.com>\r\nTo: help@bench.test\r\nSubject: Fleet {i}\r\n\
         Message-ID: <fleet-bench-{i}@example.com>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\nBody {i}.\r\n"
    )
    .into_bytes()
}

/// User plus system CPU time of a process (and its waited-for children), in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; `rest` starts at field 3.
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("/proc/PID/stat is short")?
            .parse()
            .context("/proc/PID/stat")
    };
    Ok(tick(11)? + tick(12)?)
}

fn clock_ticks_per_sec() -> f64 {
    // Linux's USER_HZ, which /proc reports in, is 100 on every architecture we run on.
    100.0
}
