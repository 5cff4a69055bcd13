//! What oauthimap reads of a GLPI site that uses the "OAuth IMAP" plugin: GLPI's sealing of
//! secrets ([`GlpiKey`]) and the plugin's applications, authorizations and the mail
//! collectors that use them ([`GlpiDatabase`]). Policy (what to create, what already exists) is
//! the app core's; this crate only reads, and writes back only the collectors' rows it is given.

mod db;
mod key;

pub use db::{
    Authorization, Collector, CollectorRewrite, ConnectString, GlpiDatabase, GlpiError,
    PluginApplication, parse_connect_string, restore_sql,
};
pub use key::{GlpiKey, KeyError};
