//! `oauthimap import glpi`: takes over GLPI's OAuth IMAP plugin.

use oauthimap_app::{AppError, Core};

use crate::output::Output;

/// `oauthimap import glpi`.
pub async fn execute(
    app: &Core,
    out: &Output,
    cmd: crate::cli::ImportCommand,
) -> Result<(), AppError> {
    let crate::cli::ImportCommand::Glpi {
        database,
        database_file,
        key_file,
        dry_run,
        no_verify,
        endpoint_base,
        rewrite_collectors,
        gateway_host,
        gateway_port,
        gateway_security,
        backup,
        as_receivers,
    } = cmd;
    let rewrite = match (rewrite_collectors, gateway_host) {
        (true, Some(host)) => Some(oauthimap_app::CollectorTarget {
            host,
            port: gateway_port.unwrap_or(if gateway_security == oauthimap_types::Security::Tls {
                993
            } else {
                143
            }),
            security: gateway_security,
            backup,
        }),
        _ => None,
    };
    let database = match (database, database_file) {
        (Some(url), _) => url,
        (None, Some(file)) => std::fs::read_to_string(&file)
            .map_err(|e| AppError::Invalid {
                field: "database_file",
                message: format!("cannot read {}: {e}", file.display()),
            })?
            .trim()
            .to_owned(),
        (None, None) => unreachable!("clap requires --database or --database-file"),
    };
    let lines = app
        .import_glpi(&oauthimap_app::GlpiImport {
            database: secrecy::SecretString::from(database),
            key_file,
            dry_run,
            verify: !no_verify,
            endpoint_base,
            rewrite,
            as_receivers,
        })
        .await?;
    out.table(&lines, &["KIND", "NAME", "OUTCOME", "DETAIL"], |l| {
        vec![
            l.kind.to_owned(),
            l.name.clone(),
            l.outcome.to_owned(),
            l.detail.clone().unwrap_or_else(|| "-".into()),
        ]
    });
    if lines.iter().any(|l| l.outcome == "failed") {
        return Err(AppError::Unfinished(
            "some rows could not be imported (see above); the others were".into(),
        ));
    }
    Ok(())
}
