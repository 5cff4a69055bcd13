//! Running one measured tool as its own process under GNU `/usr/bin/time -v`, and the table.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};

/// What `/usr/bin/time -v` reported for one process (and its children).
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub wall_secs: f64,
    pub user_secs: f64,
    pub system_secs: f64,
    pub max_rss_kb: u64,
}

/// A command to measure: program, arguments, extra environment, and where its output goes.
#[derive(Debug)]
pub struct Job {
    pub label: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `stdout`, `stderr` and `time` files are written here as `<label>.{out,err,time}`.
    pub log_dir: PathBuf,
}

/// The outcome of a measured job: its usage and captured stdout (stderr stays in its log file).
#[derive(Debug)]
pub struct Ran {
    pub usage: Usage,
    pub stdout: String,
}

impl Job {
    /// Runs the command after a `sync`, so that the writeback of what an earlier measured run
    /// wrote does not land in this one's time.
    pub async fn run(&self) -> Result<Ran> {
        let synced = tokio::process::Command::new("sync").status().await?;
        if !synced.success() {
            bail!("sync failed before {}", self.label);
        }
        let file = |ext: &str| self.log_dir.join(format!("{}.{ext}", self.label));
        let (out, err, time) = (file("out"), file("err"), file("time"));
        let mut cmd = tokio::process::Command::new("/usr/bin/time");
        cmd.arg("-v").arg("-o").arg(&time).arg(&self.program);
        cmd.args(&self.args);
        for (key, _) in std::env::vars() {
            if key.starts_with("OAUTHIMAP_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&err)?);
        let status = cmd
            .status()
            .await
            .with_context(|| format!("run {} under /usr/bin/time", self.program.display()))?;
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        if !status.success() {
            bail!(
                "{} failed ({status}); its stderr is in {}:\n{}",
                self.label,
                err.display(),
                tail(&err, 30)
            );
        }
        let usage = parse_time(&std::fs::read_to_string(&time)?)
            .with_context(|| format!("read {}", time.display()))?;
        Ok(Ran { usage, stdout })
    }
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Parses GNU time's `-v` report.
pub fn parse_time(report: &str) -> Result<Usage> {
    let mut u = Usage::default();
    for line in report.lines() {
        let Some((key, value)) = line.trim().rsplit_once(": ") else {
            continue;
        };
        match key {
            "User time (seconds)" => u.user_secs = value.parse()?,
            "System time (seconds)" => u.system_secs = value.parse()?,
            "Maximum resident set size (kbytes)" => u.max_rss_kb = value.parse()?,
            k if k.starts_with("Elapsed (wall clock) time") => {
                // h:mm:ss or m:ss.ss
                u.wall_secs = value
                    .split(':')
                    .try_fold(0.0, |acc, part| part.parse::<f64>().map(|v| acc * 60.0 + v))?;
            }
            _ => {}
        }
    }
    if u.wall_secs <= 0.0 || u.max_rss_kb == 0 {
        bail!("no wall time or maximum RSS in /usr/bin/time's report:\n{report}");
    }
    Ok(u)
}

/// One line of the results table.
#[derive(Debug)]
pub struct Row {
    pub tool: String,
    pub messages: u64,
    pub bytes: u64,
    pub usage: Usage,
}

impl Row {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.usage.wall_secs
    }

    pub fn rss_mb(&self) -> f64 {
        self.usage.max_rss_kb as f64 / 1024.0
    }
}

pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<38} {:>8} {:>10} {:>8} {:>9} {:>8} {:>9}",
        "tool", "messages", "MB", "wall s", "msg/s", "CPU s", "peak MB"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<38} {:>8} {:>10.1} {:>8.2} {:>9.0} {:>8.2} {:>9.1}",
            r.tool,
            r.messages,
            r.bytes as f64 / 1_048_576.0,
            r.usage.wall_secs,
            r.rate(),
            r.usage.user_secs + r.usage.system_secs,
            r.rss_mb()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gnu_time() {
        let report = "\tCommand being timed: \"x\"\n\tUser time (seconds): 1.50\n\
            \tSystem time (seconds): 0.25\n\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02.50\n\
            \tMaximum resident set size (kbytes): 20480\n";
        let u = parse_time(report).unwrap();
        assert!((u.wall_secs - 62.5).abs() < 1e-9);
        assert_eq!(u.max_rss_kb, 20480);
        assert!((u.user_secs - 1.5).abs() < 1e-9);
    }
}
