//! `fake-idp`: runs the fake identity provider as its own process for black-box tests.
//!
//! `fake-idp [--listen 127.0.0.1:0] [--config FILE.json]` prints exactly one line,
//! `listening on http://127.0.0.1:PORT`, to stdout, then serves until SIGTERM or ctrl-c. The config
//! file is an `IdpConfig` (`{"clients":[...],"users":[...],"settings":{...}}`); everything can also
//! be configured later through `/_control/...`. Diagnostics go to stderr.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use oauthimap_fake_idp::{FakeIdp, IdpConfig};

const USAGE: &str = "usage: fake-idp [--listen ADDR] [--config FILE.json]";

fn parse_args() -> Result<(SocketAddr, IdpConfig), String> {
    let mut listen: SocketAddr = "127.0.0.1:0"
        .parse()
        .map_err(|e| format!("cannot parse default address: {e}"))?;
    let mut config = IdpConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let v = args.next().ok_or("--listen needs an address")?;
                listen = v
                    .parse()
                    .map_err(|e| format!("cannot parse --listen {v}: {e}"))?;
            }
            "--config" => {
                let path = args.next().ok_or("--config needs a file")?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read config {path}: {e}"))?;
                config = serde_json::from_str(&text)
                    .map_err(|e| format!("cannot parse config {path}: {e}"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok((listen, config))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (listen, config) = match parse_args() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let idp = match FakeIdp::bind(listen, config).await {
        Ok(i) => i,
        Err(e) => {
            eprintln!("fake-idp: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    if writeln!(out, "listening on {}", idp.base_url())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    wait_for_signal().await;
    idp.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
