//! `oauthimap-refresher-bench`: how the background refresher spreads the renewals of 10,000
//! accounts authorized together, and how a provider's 429 pauses an application's refreshes.
//!
//! One run: the fake identity provider (in this process) issues access tokens that live
//! `--lifetime` seconds (shortened from an hour so that several renewal periods fit in minutes);
//! `--accounts` mailboxes sign in as fast as the core takes them; then the real refresher
//! (`TokenService::run_refresher`, as `serve` runs it) renews them against the provider for
//! `--periods` renewal periods while the provider's count of refresh-token requests is sampled
//! every 100 ms. Figures (issue 13's targets): the largest number of refreshes in any window of
//! a thirtieth of the period, next to the even rate (accounts / period), at most 2x; refreshes
//! per account per period (1 means no renewal is wasted); and, after one 429 with
//! `Retry-After: 30`, how long no refresh of that application reaches the provider (30 s).
//! Run it through `bench/refresher` (bench/README.md).

// Counts and durations shown with one decimal are far below f64's 2^52 exact range.
#![allow(clippy::cast_precision_loss)]

#[allow(dead_code)] // the collector benchmark's setup; only the application and sign-in are used
#[path = "setup.rs"]
mod setup;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use oauthimap_app::Core;
use oauthimap_config::Settings;
use oauthimap_fake_idp::{FakeIdp, TokenHttpFault};

#[derive(Debug, Parser)]
#[command(name = "oauthimap-refresher-bench")]
struct Args {
    /// Accounts, all authorized at the start.
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// Access-token lifetime the provider grants, in seconds (real ones live about an hour).
    #[arg(long, default_value_t = 240)]
    lifetime: u64,
    /// Renewal periods to watch.
    #[arg(long, default_value_t = 3)]
    periods: u64,
    /// Sign-ins at once while authorizing.
    #[arg(long, default_value_t = 16)]
    sign_ins: usize,
    #[arg(long, default_value = "bench/results/refresher.txt")]
    out: PathBuf,
}

/// `tokens.refresh_margin_secs` for the run: the smallest the settings take.
const MARGIN_SECS: u64 = 60;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    ensure!(
        args.lifetime > MARGIN_SECS * 2,
        "--lifetime must be more than {} s (the refresh margin is {MARGIN_SECS} s)",
        MARGIN_SECS * 2
    );
    let work =
        std::env::temp_dir().join(format!("oauthimap-refresher-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run(&args, &work).await;
    let _ = std::fs::remove_dir_all(&work);
    setup::save_report(&result?, &args.out)
}

async fn run(args: &Args, work: &std::path::Path) -> Result<String> {
    let idp = Arc::new(FakeIdp::start().await?);
    let users: Vec<String> = (0..args.accounts)
        .map(|i| format!("user{i}@contoso.com"))
        .collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    setup::register(&idp, &names);
    idp.set_access_token_lifetime(Duration::from_secs(args.lifetime));
    let mut env = setup::oauthimap_env(&work.join("data"));
    env.extend([
        (
            "OAUTHIMAP_TOKENS__REFRESH_MARGIN_SECS".into(),
            MARGIN_SECS.to_string(),
        ),
        ("OAUTHIMAP_TOKENS__JITTER_SECS".into(), "0".into()),
        ("OAUTHIMAP_TOKENS__CHECK_INTERVAL_SECS".into(), "1".into()),
    ]);
    let app = Core::open(Settings::load_from(None, env)?).await?;
    setup::add_application(&app, &idp).await?;

    // The refresher runs from the start, as in `serve`: accounts signed in while it runs fall
    // due as their slots come, not in a heap when it starts.
    let period = Duration::from_secs(args.lifetime - MARGIN_SECS);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let refresher = tokio::spawn({
        let app = app.clone();
        async move {
            app.run_token_refresher(async {
                let _ = stop_rx.await;
            })
            .await;
        }
    });
    let start = Instant::now();
    let watcher = {
        let idp = Arc::clone(&idp);
        let watch = period * u32::try_from(args.periods)?;
        tokio::spawn(async move {
            let mut samples = vec![(Duration::ZERO, refreshes(&idp))];
            while start.elapsed() < watch {
                tokio::time::sleep(Duration::from_millis(100)).await;
                samples.push((start.elapsed(), refreshes(&idp)));
            }
            samples
        })
    };
    let signed_in = authorize_all(&app, &users, args.sign_ins).await?;
    eprintln!(
        "{} accounts authorized in {:.1} s; watching the refresher for {} periods of {} s",
        users.len(),
        signed_in.as_secs_f64(),
        args.periods,
        period.as_secs()
    );
    let samples = watcher.await?;
    let pause = pause_after_429(&idp).await?;
    let _ = stop_tx.send(());
    let _ = refresher.await;
    app.close().await;
    drop(idp);
    Ok(report(args, signed_in, period, &samples, pause))
}

/// Signs every user in, `at_once` at a time; returns how long it took.
async fn authorize_all(app: &Core, users: &[String], at_once: usize) -> Result<Duration> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for user in users {
        if running.len() >= at_once {
            running.join_next().await.context("a sign-in task")???;
        }
        let (app, http, user) = (app.clone(), http.clone(), user.clone());
        running.spawn(async move { setup::sign_in(&app, &http, &user).await });
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// Refresh-token requests the provider has seen.
fn refreshes(idp: &FakeIdp) -> u64 {
    idp.stats()
        .token
        .get("refresh_token")
        .map_or(0, |c| c.requests)
}

/// Spoils the next token answer with a 429 and `Retry-After: 30`, then measures how long no
/// refresh reaches the provider after it (the requests already in flight when it was answered,
/// a second's worth, are not counted).
async fn pause_after_429(idp: &FakeIdp) -> Result<Duration> {
    let errors = |idp: &FakeIdp| {
        idp.stats()
            .token
            .get("refresh_token")
            .map_or(0, |c| c.errors)
    };
    let before = errors(idp);
    idp.fail_token_requests(TokenHttpFault {
        status: 429,
        count: 1,
        retry_after: Some(30),
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while errors(idp) == before {
        ensure!(
            Instant::now() < deadline,
            "no refresh reached the provider in 30 s: nothing to pause"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = refreshes(idp);
    let deadline = refused_at + Duration::from_mins(2);
    while refreshes(idp) == settled {
        ensure!(
            Instant::now() < deadline,
            "refreshes did not resume within 120 s of the 429"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(refused_at.elapsed())
}

/// The largest count of refreshes in any window of `width` (between samples).
fn largest_burst(samples: &[(Duration, u64)], width: Duration) -> u64 {
    let mut best = 0;
    let mut j = 0;
    for i in 0..samples.len() {
        while j < samples.len() && samples[j].0 < samples[i].0 + width {
            j += 1;
        }
        best = best.max(samples[j - 1].1 - samples[i].1);
    }
    best
}

fn report(
    args: &Args,
    signed_in: Duration,
    period: Duration,
    samples: &[(Duration, u64)],
    pause: Duration,
) -> String {
    let n = args.accounts as f64;
    let window = period / 30;
    let even = n / period.as_secs_f64() * window.as_secs_f64();
    let burst = largest_burst(samples, window);
    let ratio = burst as f64 / even;
    let total = samples.last().map_or(0, |s| s.1);
    let per_period = total as f64 / n / args.periods as f64;
    let verdict = |met: bool| if met { "MET" } else { "MISSED" };
    let mut r = String::new();
    let _ = writeln!(
        r,
        "oauthimap refresher: {} accounts authorized together (in {:.1} s), access tokens living {} s,\n\
         refresh margin {MARGIN_SECS} s, so one renewal per account every {} s; watched for {} periods.\n",
        args.accounts,
        signed_in.as_secs_f64(),
        args.lifetime,
        period.as_secs(),
        args.periods
    );
    let _ = writeln!(
        r,
        "  largest burst: {burst} refreshes in {:.1} s; the even rate gives {even:.0}: {ratio:.2}x (<= 2x {})",
        window.as_secs_f64(),
        verdict(ratio <= 2.0)
    );
    let _ = writeln!(
        r,
        "  refreshes per account per period: {per_period:.2} ({total} in all)"
    );
    let _ = writeln!(
        r,
        "  after one 429 with Retry-After: 30, no refresh of the application for {:.1} s (>= 30 s {})",
        pause.as_secs_f64(),
        verdict(pause >= Duration::from_secs(30))
    );
    let _ = writeln!(
        r,
        "\n  refreshes per window of {:.1} s:",
        window.as_secs_f64()
    );
    let mut line = String::from("   ");
    let mut next = window;
    let mut last = 0;
    for &(t, count) in samples {
        if t >= next {
            let _ = write!(line, " {}", count - last);
            last = count;
            next += window;
        }
    }
    let _ = writeln!(r, "{line}");
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_burst_finds_the_busiest_window() {
        let s = |t: u64, c: u64| (Duration::from_secs(t), c);
        let samples = [s(0, 0), s(1, 5), s(2, 6), s(3, 30), s(4, 31), s(5, 31)];
        assert_eq!(largest_burst(&samples, Duration::from_secs(2)), 24);
        assert_eq!(largest_burst(&samples, Duration::from_secs(10)), 31);
    }
}
