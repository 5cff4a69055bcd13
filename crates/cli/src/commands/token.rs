//! `oauthimap token` (the token broker for other mail tools) and `oauthimap api-token`.

use oauthimap_app::{AppError, Core, TokenRequest};
use secrecy::{ExposeSecret, SecretString};

use crate::cli::{ApiTokenCommand, Command};
use crate::output::{Output, time};

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
pub async fn print(app: &Core, request: &TokenRequest) -> Result<(), AppError> {
    let value = app.token_for(request).await?;
    println!("{}", value.expose_secret());
    Ok(())
}

pub async fn api_tokens(app: &Core, out: &Output, cmd: ApiTokenCommand) -> Result<(), AppError> {
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
