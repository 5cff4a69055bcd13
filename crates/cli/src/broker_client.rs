//! The fast path of `oauthimap token`: read its arguments without building the whole command
//! line's parser, and ask the running service over the broker's socket. Shared by the front
//! binary (`oauthimap`, src/front.rs), which tries it before starting the main program, and the
//! main program, which asks the socket itself for a token command only the full parser reads.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use oauthimap_app::{Asked, TokenReply, TokenRequest};

/// How long `oauthimap token` waits for the service's answer (a refresh included).
const BROKER_TIMEOUT: Duration = Duration::from_secs(90);

/// `oauthimap [--config F] token ACCOUNT [--app A] [--force] [--sasl M] [--host H --port P]`
/// read straight from the arguments, without building the whole command line's parser (a
/// password command runs at every login: this path must cost little more than an exec).
/// `None` for anything else, `--help` and mistakes included: clap then reads the arguments.
pub fn quick_parse(args: &[OsString]) -> Option<(Option<PathBuf>, TokenRequest)> {
    let mut config = None;
    let mut request = TokenRequest::default();
    let mut account = None;
    let mut port = None;
    let mut words = args.iter().skip(1).map(|a| a.to_str());
    let mut in_token = false;
    while let Some(word) = words.next() {
        let word = word?;
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (word, None),
        };
        let mut value = || -> Option<String> {
            match &inline {
                Some(v) => Some(v.clone()),
                None => words.next()?.map(str::to_owned),
            }
        };
        match flag {
            "token" if !in_token => in_token = true,
            "--config" => config = Some(PathBuf::from(value()?)),
            "--app" if in_token => request.app = Some(value()?),
            "--force" if in_token && inline.is_none() => request.force = true,
            "--sasl" if in_token => request.sasl = Some(value()?.parse().ok()?),
            "--host" if in_token => request.host = Some(value()?),
            "--port" if in_token => port = Some(value()?.parse().ok()?),
            w if in_token && account.is_none() && !w.starts_with('-') => {
                account = Some(w.to_owned());
            }
            _ => return None,
        }
    }
    if !in_token || request.host.is_some() != port.is_some() {
        return None;
    }
    request.account = account?;
    request.port = port;
    let config = config.or_else(|| {
        std::env::var_os("OAUTHIMAP_CONFIG")
            .filter(|c| !c.is_empty())
            .map(PathBuf::from)
    });
    Some((config, request))
}

/// The fast path, before any runtime starts: asks the running service over its socket. `None`
/// when no service answers there (or the broker's settings cannot be read): the caller then opens the
/// database, which reports any problem with the settings.
pub fn from_broker(config: Option<&Path>, request: &TokenRequest) -> Option<ExitCode> {
    let path = oauthimap_app::Config::broker_socket_of(config).ok()??;
    match oauthimap_app::ask_broker(&path, request, BROKER_TIMEOUT) {
        Ok(Asked::NoService) => None,
        Ok(Asked::Answered(TokenReply::Token(value))) => {
            println!("{value}");
            Some(ExitCode::SUCCESS)
        }
        Ok(Asked::Answered(TokenReply::Refused {
            message,
            user_error,
            ..
        })) => {
            eprintln!("error: {message}");
            Some(if user_error {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => Some(unreachable_broker(&path, &e)),
    }
}

fn unreachable_broker(path: &Path, e: &std::io::Error) -> ExitCode {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        eprintln!(
            "error: cannot open the token broker's socket {}: permission denied; ask for membership of its group (broker.group), or run as the service's user",
            path.display()
        );
        return ExitCode::from(2);
    }
    eprintln!(
        "error: the token broker at {} did not answer: {e}",
        path.display()
    );
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Option<(Option<PathBuf>, TokenRequest)> {
        let args: Vec<OsString> = line.split(' ').map(OsString::from).collect();
        quick_parse(&args)
    }

    #[test]
    fn the_token_command_is_read_without_clap_and_anything_else_is_left_to_it() {
        let (config, r) =
            parse("oauthimap --config /etc/o.toml token a@b.c --app Contoso --sasl xoauth2")
                .unwrap();
        assert_eq!(config, Some(PathBuf::from("/etc/o.toml")));
        assert_eq!(r.account, "a@b.c");
        assert_eq!(r.app.as_deref(), Some("Contoso"));
        assert_eq!(r.sasl, Some(oauthimap_types::Mechanism::Xoauth2));
        let (_, r) =
            parse("oauthimap token 7 --force --sasl=oauthbearer --host h --port 993").unwrap();
        assert!(r.force);
        assert_eq!((r.host.as_deref(), r.port), (Some("h"), Some(993)));
        for other in [
            "oauthimap token",
            "oauthimap token --help",
            "oauthimap token a b",
            "oauthimap token a --sasl nonsense",
            "oauthimap token a --host h",
            "oauthimap token a --port 99999",
            "oauthimap token a --server https://x --api-token-file f",
            "oauthimap -v token a",
            "oauthimap --json token a",
            "oauthimap app list",
            "oauthimap token a --force=yes",
        ] {
            assert!(parse(other).is_none(), "{other}");
        }
    }
}
