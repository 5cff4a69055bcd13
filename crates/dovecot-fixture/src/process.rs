//! The instance's process tree, read from `/proc`: Dovecot 2.3.19's imap, log and stats processes
//! outlive a SIGTERM to the master (open IMAP sessions even keep working), so stopping the fixture
//! records the master's children first and ends the survivors by PID afterwards. A PID is only
//! signalled while its start time still matches, so a recycled PID is never hit.

use std::fs;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// A process identified by PID and start time (clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcId {
    pid: u32,
    start: u64,
}

/// `(state, ppid, starttime)` from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u32, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<(char, u32, u64)> {
    // "pid (comm) state ppid pgrp ... starttime": comm may hold spaces and parentheses.
    let after = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, ppid, start))
}

/// Direct children of `parent` (all Dovecot services are children of the master).
pub(crate) fn children_of(parent: u32) -> Vec<ProcId> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| match stat(pid) {
            Some((_, ppid, start)) if ppid == parent => Some(ProcId { pid, start }),
            _ => None,
        })
        .collect()
}

impl ProcId {
    /// Still running (not gone, not a zombie) and still the same process.
    pub(crate) fn is_alive(self) -> bool {
        matches!(stat(self.pid), Some((state, _, start)) if start == self.start && state != 'Z' && state != 'X')
    }

    fn signal(self, signal: Signal) {
        if self.is_alive()
            && let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw)
        {
            let _ = kill_process(pid, signal);
        }
    }
}

/// SIGTERM to each process that is still alive.
pub(crate) fn terminate(procs: &[ProcId]) {
    for p in procs {
        p.signal(Signal::TERM);
    }
}

/// SIGTERM to every survivor, then SIGKILL to whoever is left after `grace`. Returns how many
/// processes had to be ended.
pub(crate) fn end_survivors(procs: &[ProcId], grace: Duration) -> usize {
    let survivors: Vec<ProcId> = procs.iter().copied().filter(|p| p.is_alive()).collect();
    for p in &survivors {
        p.signal(Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    while survivors.iter().any(|p| p.is_alive()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in &survivors {
        p.signal(Signal::KILL);
    }
    survivors.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "4242 (dovecot-x (imap)) S 4000 4000 4000 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3";
        assert_eq!(parse_stat(line), Some(('S', 4000, 987_654)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn finds_own_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let children = children_of(std::process::id());
        let found = children
            .iter()
            .find(|p| p.pid == child.id())
            .copied()
            .expect("child listed");
        assert!(found.is_alive());
        assert_eq!(end_survivors(&[found], Duration::from_secs(2)), 1);
        child.wait().expect("reap");
        assert!(!found.is_alive());
    }
}
