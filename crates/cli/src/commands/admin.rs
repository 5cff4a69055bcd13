//! `oauthimap admin`: the web UI's admin users.

use std::io::{BufRead, IsTerminal};

use oauthimap_app::{AppError, Core, MIN_PASSWORD_CHARS};
use secrecy::SecretString;

use crate::cli::AdminCommand;
use crate::output::{Output, time};

pub async fn execute(app: &Core, out: &Output, cmd: AdminCommand) -> Result<(), AppError> {
    match cmd {
        AdminCommand::Create {
            username,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            let user = app.create_admin(&username, &password).await?;
            eprintln!(
                "admin user {} created; log in at {}",
                user.username,
                app.external_base_url()
            );
        }
        AdminCommand::Passwd {
            username,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            app.set_admin_password(&username, &password).await?;
            eprintln!("password of {username} changed; their sessions are ended");
        }
        AdminCommand::List => {
            let users = app.list_admins().await?;
            out.table(
                &users,
                &[
                    "USERNAME",
                    "CREATED",
                    "LAST LOGIN",
                    "FAILED LOGINS",
                    "LOCKED UNTIL",
                ],
                |u| {
                    vec![
                        u.username.clone(),
                        time(Some(u.created_at)),
                        time(u.last_login_at),
                        u.failed_logins.to_string(),
                        time(
                            u.locked_until
                                .filter(|t| *t > oauthimap_types::now_millis()),
                        ),
                    ]
                },
            );
        }
        AdminCommand::Unlock { username } => {
            app.unlock_admin(&username).await?;
            eprintln!("admin user {username} unlocked: they can log in again");
        }
        AdminCommand::Remove { username } => {
            app.remove_admin(&username).await?;
            eprintln!("admin user {username} removed");
        }
    }
    Ok(())
}

fn read_password(from_stdin: bool) -> Result<SecretString, AppError> {
    let invalid = |message: String| AppError::Invalid {
        field: "password",
        message,
    };
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| invalid(format!("cannot read it from stdin: {e}")))?;
        return Ok(SecretString::from(
            line.trim_end_matches(['\r', '\n']).to_owned(),
        ));
    }
    if !std::io::stdin().is_terminal() {
        return Err(invalid(
            "not given: use --password-stdin, or run on a terminal to be asked".into(),
        ));
    }
    let prompt = format!("Password (at least {MIN_PASSWORD_CHARS} characters, input hidden): ");
    let first = rpassword::prompt_password(prompt)
        .map_err(|e| invalid(format!("cannot read it from the terminal: {e}")))?;
    let again = rpassword::prompt_password("Again: ")
        .map_err(|e| invalid(format!("cannot read it from the terminal: {e}")))?;
    if first != again {
        return Err(invalid(
            "the two entries differ; nothing was changed".into(),
        ));
    }
    Ok(SecretString::from(first))
}
