//! Headless Chromium behind a chromedriver that the test starts on a free loopback port and ends
//! by PID (with the browser processes it started), plus screenshots and small waiting helpers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use thirtyfour::prelude::*;

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
];

/// A chromedriver process of ours. Dropping it ends it and every process below it.
#[derive(Debug)]
pub struct ChromeDriver {
    child: Child,
    pub url: String,
}

impl ChromeDriver {
    /// Starts `/usr/bin/chromedriver --port=N` on a free port and waits until it is ready.
    /// Fails (never skips) when Chromium or its driver is not installed.
    pub async fn start(log: &Path) -> anyhow::Result<ChromeDriver> {
        for bin in [CHROMEDRIVER, CHROMIUM] {
            if !Path::new(bin).exists() {
                bail!(
                    "{bin} not found: the browser test needs Debian's chromium and chromium-driver; \
                     install them with `apt-get install chromium chromium-driver` (scripts/test does it)"
                );
            }
        }
        let http = reqwest::Client::new();
        let mut last_error = String::new();
        // A port picked by binding port 0 can be taken before chromedriver binds it: retry.
        for _ in 0..3 {
            let port = free_port()?;
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("start {CHROMEDRIVER}"))?;
            let mut driver = ChromeDriver {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Some(status) = driver.child.try_wait()? {
                    last_error = format!("chromedriver exited with {status}");
                    break;
                }
                let ready = http
                    .get(format!("{}/status", driver.url))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                if let Ok(response) = ready
                    && let Ok(body) = response.json::<serde_json::Value>().await
                    && body["value"]["ready"] == true
                {
                    return Ok(driver);
                }
                if Instant::now() > deadline {
                    last_error = "chromedriver did not answer /status within 15 s".into();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            driver.stop();
        }
        bail!("{last_error} (log: {})", log.display())
    }

    /// A new headless Chromium session with a fresh profile in `profile`.
    pub async fn session(&self, profile: &Path) -> anyhow::Result<WebDriver> {
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(CHROMIUM)?;
        for arg in CHROMIUM_ARGS {
            caps.add_arg(arg)?;
        }
        caps.add_arg(&format!("--user-data-dir={}", profile.display()))?;
        // An alert stays open instead of being dismissed, so `assert_no_alert` sees it.
        caps.set("unhandledPromptBehavior", "ignore")?;
        caps.set_browser_log_level(thirtyfour::LoggingPrefsLogLevel::All)?;
        WebDriver::new(&self.url, caps)
            .await
            .context("open a Chromium session through chromedriver")
    }

    /// Ends chromedriver and whatever it started (Chromium after a failed quit), by PID.
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let mut tree = descendants(self.child.id());
        tree.reverse();
        for pid in tree {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Every process below `pid`, parents before children, from `/proc`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            if let Some(parent) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parents.push((child, parent));
            }
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for &(child, parent) in &parents {
            if parent == p && !out.contains(&child) {
                out.push(child);
                queue.push(child);
            }
        }
    }
    out
}

/// Numbered full-page screenshots in one folder.
#[derive(Debug)]
pub struct Screenshots {
    pub dir: PathBuf,
    next: u32,
}

impl Screenshots {
    /// `$OAUTHIMAP_E2E_ARTIFACTS/browser`, else `<workspace>/target/e2e-artifacts/browser`; emptied.
    pub fn new() -> anyhow::Result<Screenshots> {
        let root = std::env::var_os("OAUTHIMAP_E2E_ARTIFACTS").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e-artifacts"),
            PathBuf::from,
        );
        let dir = root.join("browser");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("empty {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        Ok(Screenshots { dir, next: 1 })
    }

    /// Saves the whole page (beyond the window) as `NN-step.png`.
    pub async fn take(&mut self, driver: &WebDriver, step: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(format!("{:02}-{step}.png", self.next));
        self.next += 1;
        let shot = driver
            .cdp()
            .send_raw(
                "Page.captureScreenshot",
                serde_json::json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = match shot {
            Ok(v) => base64::engine::general_purpose::STANDARD
                .decode(v["data"].as_str().unwrap_or_default())
                .context("decode the screenshot")?,
            // The window only, when the DevTools command is not available.
            Err(_) => driver.screenshot_as_png().await?,
        };
        std::fs::write(&path, png).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `timeout` naming `what`.
/// An open JavaScript dialog fails it at once: it blocks the page, so waiting cannot help.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = check().await;
        match last {
            Ok(Some(v)) => return Ok(v),
            Err(e) if dialog_open(&e) => {
                return Err(e.context(format!(
                    "a JavaScript dialog is open while waiting for {what}"
                )));
            }
            Ok(None) | Err(_) if Instant::now() < deadline => {}
            Ok(None) => bail!("timed out after {timeout:?} waiting for {what}"),
            Err(e) => {
                return Err(e.context(format!("timed out after {timeout:?} waiting for {what}")));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn dialog_open(error: &anyhow::Error) -> bool {
    error.downcast_ref::<WebDriverError>().is_some_and(|e| {
        matches!(
            &**e,
            thirtyfour::error::WebDriverErrorInner::UnexpectedAlertOpen(_)
        )
    })
}
