//! Command dispatch: load settings, open the core, run one command.

mod account;
mod admin;
mod app;
mod collect;
mod diagnose;
mod gateway;
mod import;
mod keys;
mod receiver;
mod serve;
pub mod token;

use oauthimap_app::{AppError, Config};

use crate::cli::{Cli, Command, KeysCommand};
use crate::output::Output;

pub async fn execute(cli: Cli) -> Result<(), AppError> {
    // Packaging commands: no configuration, no data.
    match &cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "oauthimap",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        Command::Man { out } => return man_pages(out),
        Command::Token {
            server: Some(_), ..
        } => return token::remote(&cli.command).await,
        _ => {}
    }
    let config = Config::load(cli.config.as_deref())?;
    let serving = matches!(cli.command, Command::Serve);
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(config.log_level()) {
        return Err(AppError::Invalid {
            field: "log_level",
            message: format!(
                "{:?} is not a log filter ({e}); use a level such as info or debug, or directives such as oauthimap=debug,info",
                config.log_level()
            ),
        });
    }
    init_logging(&config, serving, cli.verbose);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let out = Output { json: cli.json };
    if let Command::Keys(KeysCommand::Generate { id }) = cli.command {
        return keys::generate(id);
    }
    let app = if creates_data(&cli.command) {
        config.open().await?
    } else {
        config.open_existing().await?
    };
    let result = match cli.command {
        Command::Serve => serve::execute(app.clone()).await,
        Command::App(c) => app::execute(&app, &out, c).await,
        Command::Account(c) => account::execute(&app, &out, c).await,
        Command::Receiver(c) => receiver::execute(&app, &out, c).await,
        Command::Keys(c) => keys::execute(&app, &out, c).await,
        Command::Events { account, limit } => account::events(&app, &out, account, limit).await,
        Command::Token { .. } => {
            let request = token::request(&cli.command).unwrap_or_default();
            token::print(&app, &request).await
        }
        Command::Admin(c) => admin::execute(&app, &out, c).await,
        Command::ApiToken(c) => token::api_tokens(&app, &out, c).await,
        Command::Gateway(c) => gateway::execute(&app, &out, c).await,
        Command::Import(c) => import::execute(&app, &out, c).await,
        Command::Completions { .. } | Command::Man { .. } => Ok(()),
        Command::Collect {
            once: _,
            receiver,
            retry_for,
        } => collect::once(&app, &out, receiver.as_deref(), retry_for).await,
        Command::Messages(c) => collect::messages(&app, &out, c).await,
        Command::Diagnose {
            account,
            app: filter,
            host,
            port,
            security,
            mechanism,
            folder,
            ca_file,
            timeout,
            transcript,
            smtp,
        } => {
            let options = oauthimap_app::DiagnoseOptions {
                host,
                port,
                security,
                mechanism,
                folder,
                ca_file,
                timeout: Some(timeout),
                smtp,
            };
            diagnose::execute(&app, &out, account, filter, &options, transcript).await
        }
    };
    app.close().await;
    result
}

/// Writes `oauthimap.1` and `oauthimap-SUBCOMMAND.1` pages into `out`.
fn man_pages(out: &std::path::Path) -> Result<(), AppError> {
    use clap::CommandFactory as _;
    let io = |source| AppError::Io {
        action: format!("write the man pages into {}", out.display()),
        source,
    };
    std::fs::create_dir_all(out).map_err(io)?;
    clap_mangen::generate_to(Cli::command(), out).map_err(io)?;
    Ok(())
}

/// The commands that may create the data folder, the database or the key on first use; every
/// other command only opens what exists.
fn creates_data(command: &Command) -> bool {
    use crate::cli::{AccountCommand, AdminCommand, AppCommand};
    matches!(
        command,
        Command::Serve
            | Command::App(AppCommand::Add(_))
            | Command::Admin(AdminCommand::Create { .. })
            | Command::Account(
                AccountCommand::Authorize { .. } | AccountCommand::AddAppOnly { .. }
            )
            | Command::Keys(_)
            | Command::Import(_)
    )
}

fn init_logging(config: &Config, serving: bool, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match (serving, verbose) {
        (true, 0) => config.log_level().to_owned(),
        (false, 0) => "warn".to_owned(),
        (_, 1) => "info".to_owned(),
        _ => "debug".to_owned(),
    };
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if config.log_json() {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
