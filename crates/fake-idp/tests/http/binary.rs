//! The `fake-idp` binary: one line on stdout, serves, stops on SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use crate::common::http;

#[tokio::test]
async fn binary_prints_its_url_serves_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-idp"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn fake-idp");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read line");
    let url = line
        .trim_end()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let resp = http()
        .get(format!("{url}/_control/stats"))
        .send()
        .await
        .expect("stats");
    assert_eq!(resp.status(), 200);
    let stats: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(stats["authorize"]["requests"], 0);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
}

#[test]
fn binary_rejects_unknown_arguments() {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-idp"))
        .arg("--bogus")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument"));
    assert!(out.stdout.is_empty());
}
