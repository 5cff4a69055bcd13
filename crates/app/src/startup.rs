//! The configuration as the shells see it before the core opens: loaded here (defaults, the
//! file, the environment), asked only what a shell needs first (how to log, what to warn about,
//! where the token broker answers), then turned into the core. The settings themselves stay
//! inside the core: no shell reads them, so no rule that depends on them lives in a shell.

use std::path::{Path, PathBuf};

use oauthimap_config::{LogFormat, Settings};

use crate::{Core, Result};

/// The loaded configuration, opaque to the shells.
#[derive(Debug, Clone)]
pub struct Config {
    settings: Settings,
}

impl Config {
    /// Loads `file` (when `None`, the default configuration file if there is one) with the
    /// environment over it, validated.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(oauthimap_config::default_config_file);
        Ok(Config {
            settings: Settings::load(file.as_deref())?,
        })
    }

    /// The log filter for the service (`log_level`), as written.
    pub fn log_level(&self) -> &str {
        &self.settings.log_level
    }

    /// Whether log lines are JSON objects (`log_format = "json"`) rather than text.
    pub fn log_json(&self) -> bool {
        self.settings.log_format == LogFormat::Json
    }

    /// What the configuration does that the operator may not mean (unknown or ignored values).
    pub fn warnings(&self) -> &[String] {
        self.settings.warnings()
    }

    /// Only the running service's token broker socket (when the broker is on), from `file`
    /// (when `None`, the default configuration file if there is one) and the environment,
    /// without reading or checking the other settings: `oauthimap token`'s fast path.
    pub fn broker_socket_of(file: Option<&Path>) -> Result<Option<PathBuf>> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(oauthimap_config::default_config_file);
        Ok(Settings::broker_socket_of(file.as_deref())?)
    }

    /// The running service's token broker socket, when the broker is on.
    pub fn broker_socket(&self) -> Option<PathBuf> {
        self.settings
            .broker
            .enabled
            .then(|| self.settings.broker_socket())
    }

    /// Opens the core, creating the data folder, database and key on first run
    /// ([`Core::open`]).
    pub async fn open(self) -> Result<Core> {
        Core::open(self.settings).await
    }

    /// Opens existing data only ([`Core::open_existing`]).
    pub async fn open_existing(self) -> Result<Core> {
        Core::open_existing(self.settings).await
    }
}

/// A new master key for `OAUTHIMAP_MASTER_KEY` (`oauthimap keys generate`), with key id `id`.
pub fn generate_master_key(id: u32) -> Result<secrecy::SecretString> {
    let value = oauthimap_crypto::KeyRing::generate_env_value(id)?;
    Ok(secrecy::SecretString::from(value.as_str()))
}
