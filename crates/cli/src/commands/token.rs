//! `oauthimap token` (the token broker for other mail tools) and `oauthimap api-token`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use oauthimap_app::config::Settings;
use oauthimap_app::{App, AppError, Asked, TokenReply, TokenRequest};
use secrecy::{ExposeSecret, SecretString};

use crate::cli::{ApiTokenCommand, Cli, Command};
use crate::output::{Out, time};

/// How long `oauthimap token` waits for the service's answer (a refresh included).
const BROKER_TIMEOUT: Duration = Duration::from_secs(90);

/// `oauthimap token`'s request, from its arguments.
pub fn request(command: &Command) -> Option<TokenRequest> {
    let Command::Token {
        account,
        app,
        force,
        sasl,
        host,
        port,
        ..
    } = command
    else {
        return None;
    };
    Some(TokenRequest {
        account: account.clone(),
        app: app.clone(),
        force: *force,
        sasl: *sasl,
        host: host.clone(),
        port: *port,
    })
}

/// The fast path, before any runtime starts: asks the running service over its socket. `None`
/// when no service answers there (or the settings cannot be read): the caller then opens the
/// database, which reports any problem with the settings.
pub fn from_broker(cli: &Cli) -> Option<ExitCode> {
    let Command::Token { server: None, .. } = &cli.command else {
        return None;
    };
    let request = request(&cli.command)?;
    let file = cli
        .config
        .clone()
        .or_else(oauthimap_app::config::default_config_file);
    let settings = Settings::load(file.as_deref()).ok()?;
    if !settings.broker.enabled {
        return None;
    }
    let path = settings.broker_socket();
    match oauthimap_app::ask_broker(&path, &request, BROKER_TIMEOUT) {
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

/// `oauthimap token --server URL --api-token-file F`: asks a remote service.
pub async fn remote(command: &Command) -> Result<(), AppError> {
    let Command::Token {
        server: Some(server),
        api_token_file: Some(file),
        ..
    } = command
    else {
        return Ok(());
    };
    let api_token = std::fs::read_to_string(file).map_err(|e| AppError::Invalid {
        field: "api-token-file",
        message: format!("cannot read {}: {e}", file.display()),
    })?;
    let api_token = api_token.trim();
    if api_token.is_empty() {
        return Err(AppError::Invalid {
            field: "api-token-file",
            message: format!(
                "{} is empty; put an API token with the tokens:read scope in it (oauthimap api-token create --name NAME --scope tokens:read)",
                file.display()
            ),
        });
    }
    let request = request(command).unwrap_or_default();
    let value =
        oauthimap_app::remote_token(server, &SecretString::from(api_token.to_owned()), &request)
            .await?;
    println!("{}", value.expose_secret());
    Ok(())
}

/// Prints only the access token (or the SASL string), from the database: when no service
/// answers on the broker's socket.
pub async fn print(app: &App, request: &TokenRequest) -> Result<(), AppError> {
    let value = app.token_for(request).await?;
    println!("{}", value.expose_secret());
    Ok(())
}

pub async fn api_tokens(app: &App, out: &Out, cmd: ApiTokenCommand) -> Result<(), AppError> {
    match cmd {
        ApiTokenCommand::Create { name, scopes } => {
            let (record, value) = app.create_api_token(&name, &scopes).await?;
            eprintln!(
                "API token {} created with scopes {}. Copy it now: it is not shown again.",
                record.name, record.scopes
            );
            println!("{}", value.expose_secret());
        }
        ApiTokenCommand::List => {
            let list = app.list_api_tokens().await?;
            out.table(&list, &["NAME", "SCOPES", "CREATED", "LAST USED"], |t| {
                vec![
                    t.name.clone(),
                    t.scopes.clone(),
                    time(Some(t.created_at)),
                    time(t.last_used_at),
                ]
            });
        }
        ApiTokenCommand::Remove { name } => {
            app.remove_api_token(&name).await?;
            eprintln!("API token {name} removed");
        }
    }
    Ok(())
}
