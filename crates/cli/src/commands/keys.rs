//! `oauthimap keys ...`: master key rotation and status.

use std::fmt::Write as _;

use oauthimap_app::{AppError, Core};
use secrecy::ExposeSecret as _;

use crate::cli::KeysCommand;
use crate::output::Output;

pub fn generate(id: u32) -> Result<(), AppError> {
    let value = oauthimap_app::generate_master_key(id)?;
    println!("{}", value.expose_secret());
    Ok(())
}

pub async fn execute(app: &Core, out: &Output, cmd: KeysCommand) -> Result<(), AppError> {
    match cmd {
        KeysCommand::Rotate => {
            let r = app.rotate_keys().await?;
            out.record(&r, || {
                format!(
                    "new master key {}; {} secret(s) re-sealed; retired key(s): {}\n",
                    r.new_key_id,
                    r.resealed,
                    if r.retired_key_ids.is_empty() {
                        "none (some values still use them: run `oauthimap keys reseal`)".into()
                    } else {
                        format!("{:?}", r.retired_key_ids)
                    }
                )
            });
        }
        KeysCommand::Reseal => {
            let n = app.reseal().await?;
            out.record(&serde_json::json!({ "resealed": n }), || {
                format!("{n} secret(s) re-sealed\n")
            });
        }
        KeysCommand::Status => {
            let s = app.key_status().await?;
            out.record(&s, || {
                let mut text = format!("source: {}\nprimary key: {}\n", s.source, s.primary_key_id);
                for id in &s.key_ids {
                    let _ = writeln!(
                        text,
                        "key {id}: seals {} value(s)",
                        s.values_by_key.get(id).copied().unwrap_or(0)
                    );
                }
                text
            });
        }
        KeysCommand::Generate { id } => generate(id)?,
    }
    Ok(())
}
