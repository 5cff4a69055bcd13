//! `oauthimap token` (the token broker for other mail tools) and `oauthimap api-token`.

use oauthimap_app::types::Mechanism;
use oauthimap_app::{AccountSelector, App, AppError};
use secrecy::ExposeSecret;

use crate::cli::ApiTokenCommand;
use crate::output::{Out, time};

/// Prints only the access token (or the SASL string), so it can be used as a password command.
pub async fn print(
    app: &App,
    account: String,
    filter: Option<String>,
    force: bool,
    sasl: Option<Mechanism>,
    server: Option<(String, u16)>,
) -> Result<(), AppError> {
    let selector = AccountSelector::new(account, filter);
    if let Some(mechanism) = sasl {
        if force {
            app.account_token(&selector, true).await?;
        }
        let (_, sasl) = app.account_sasl(&selector, mechanism, server).await?;
        println!("{}", sasl.expose_secret());
        return Ok(());
    }
    let (_, token) = app.account_token(&selector, force).await?;
    println!("{}", token.secret.expose_secret());
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
