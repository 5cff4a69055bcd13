//! GLPI's database (`MySQL` or `MariaDB`): the OAuth IMAP plugin's applications and authorizations,
//! and GLPI's mail collectors whose server type is `imap-oauth-<application id>`.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

/// Why GLPI's database cannot be read; each names what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum GlpiError {
    #[error(
        "the database URL is not a mysql://USER:PASSWORD@HOST[:PORT]/DATABASE URL (the value is not shown because it holds a password)"
    )]
    BadUrl,
    #[error("cannot reach GLPI's database {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error(
        "GLPI's database {target} has no table {table}: is the OAuth IMAP plugin installed there (and is this GLPI's database)?"
    )]
    MissingTable { target: String, table: &'static str },
    #[error("cannot read {what} from GLPI's database {target}: {reason}")]
    Query {
        target: String,
        what: &'static str,
        reason: String,
    },
}

/// A row of `glpi_plugin_oauthimap_applications`; secrets still sealed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct PluginApplication {
    pub id: i64,
    pub name: String,
    pub comment: Option<String>,
    pub is_active: i64,
    /// The plugin's provider class, such as `GlpiPlugin\Oauthimap\Provider\Azure`.
    pub provider: String,
    pub client_id: String,
    #[serde(skip)]
    pub client_secret: Option<String>,
    pub tenant_id: Option<String>,
}

/// A row of `glpi_plugin_oauthimap_authorizations`; tokens still sealed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Authorization {
    pub id: i64,
    pub application_id: i64,
    pub email: String,
    #[serde(skip)]
    pub code: Option<String>,
    #[serde(skip)]
    pub token: Option<String>,
    #[serde(skip)]
    pub refresh_token: Option<String>,
}

/// A mail collector of GLPI that uses the plugin.
#[derive(Debug, Clone, Serialize)]
pub struct Collector {
    pub id: i64,
    pub name: String,
    /// `{server:port/imap-oauth-N/ssl}FOLDER`, as GLPI stores it.
    pub host: String,
    pub login: String,
    pub is_active: bool,
    pub accepted: Option<String>,
    pub refused: Option<String>,
    /// The plugin application it uses (`N` of `imap-oauth-N`).
    pub application_id: i64,
    pub server: String,
    pub port: Option<u16>,
    pub folder: String,
    /// The connect string's other flags (`ssl`, `novalidate-cert`, …).
    pub flags: Vec<String>,
    /// The `passwd` column as it is (sealed, or empty), for the backup.
    #[serde(skip)]
    pub passwd: Option<String>,
}

/// A collector's new connection settings (`passwd` already sealed for GLPI).
#[derive(Debug, Clone)]
pub struct CollectorRewrite {
    pub id: i64,
    pub host: String,
    pub login: String,
    pub passwd: String,
}

/// A `MySQL` string literal (or NULL).
fn literal(value: Option<&str>) -> String {
    value.map_or_else(
        || "NULL".to_owned(),
        |v| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'")),
    )
}

/// SQL that puts the collectors' rows back as they are now (`mysql glpi < FILE`).
pub fn restore_sql(collectors: &[Collector]) -> String {
    use std::fmt::Write as _;
    let mut sql = String::from(
        "-- Written by oauthimap before it pointed these GLPI mail collectors at its gateway.\n\
         -- Restore them with: mysql GLPI_DATABASE < THIS_FILE\n",
    );
    for c in collectors {
        let _ = writeln!(
            sql,
            "UPDATE glpi_mailcollectors SET host = {}, login = {}, passwd = {} WHERE id = {};",
            literal(Some(&c.host)),
            literal(Some(&c.login)),
            literal(c.passwd.as_deref()),
            c.id
        );
    }
    sql
}

#[derive(sqlx::FromRow)]
struct CollectorRow {
    id: i64,
    name: String,
    host: String,
    login: String,
    passwd: Option<String>,
    is_active: i64,
    accepted: Option<String>,
    refused: Option<String>,
}

/// A collector's connect string, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectString {
    pub server: String,
    pub port: Option<u16>,
    pub application_id: i64,
    pub flags: Vec<String>,
    pub folder: String,
}

/// Parses GLPI's connect string `{server[:port]/type[/flag…]}folder`: the type is the text after
/// the first `/` inside the braces. `None` unless the type is `imap-oauth-<id>`.
pub fn parse_connect_string(host: &str) -> Option<ConnectString> {
    let rest = host.strip_prefix('{')?;
    let (inside, folder) = rest.split_once('}')?;
    let mut parts = inside.split('/');
    let address = parts.next()?;
    let kind = parts.next()?;
    let id = kind.strip_prefix("imap-oauth-")?.parse().ok()?;
    let (server, port) = match address.rsplit_once(':') {
        Some((s, p)) => (s.to_owned(), Some(p.parse().ok()?)),
        None => (address.to_owned(), None),
    };
    let folder = if folder.is_empty() { "INBOX" } else { folder };
    Some(ConnectString {
        server,
        port,
        application_id: id,
        flags: parts.map(str::to_owned).collect(),
        folder: folder.to_owned(),
    })
}

/// GLPI's database.
#[derive(Debug, Clone)]
pub struct GlpiDatabase {
    pool: MySqlPool,
    /// `host/database`, for messages (never the password).
    target: String,
}

impl GlpiDatabase {
    /// Connects (one connection is enough; the import is sequential).
    pub async fn connect(url: &SecretString) -> Result<Self, GlpiError> {
        let url = url.expose_secret().trim();
        if !(url.starts_with("mysql://") || url.starts_with("mariadb://")) {
            return Err(GlpiError::BadUrl);
        }
        let url = url.replacen("mariadb://", "mysql://", 1);
        let options: MySqlConnectOptions = url.parse().map_err(|_| GlpiError::BadUrl)?;
        let target = format!(
            "{}/{}",
            options.get_host(),
            options.get_database().unwrap_or("?")
        );
        let pool = MySqlPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| GlpiError::Unreachable {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self { pool, target })
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    fn failed(
        &self,
        what: &'static str,
        table: &'static str,
    ) -> impl FnOnce(sqlx::Error) -> GlpiError {
        let target = self.target.clone();
        move |e| {
            let missing = e
                .as_database_error()
                .and_then(sqlx::error::DatabaseError::code)
                .is_some_and(|c| c == "42S02");
            if missing {
                GlpiError::MissingTable { target, table }
            } else {
                GlpiError::Query {
                    target,
                    what,
                    reason: e.to_string(),
                }
            }
        }
    }

    pub async fn applications(&self) -> Result<Vec<PluginApplication>, GlpiError> {
        sqlx::query_as(
            "SELECT CAST(id AS SIGNED) AS id, CAST(name AS CHAR) AS name, CAST(comment AS CHAR) AS comment, \
             CAST(is_active AS SIGNED) AS is_active, CAST(provider AS CHAR) AS provider, \
             CAST(client_id AS CHAR) AS client_id, CAST(client_secret AS CHAR) AS client_secret, \
             CAST(tenant_id AS CHAR) AS tenant_id FROM glpi_plugin_oauthimap_applications ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.failed("the plugin's applications", "glpi_plugin_oauthimap_applications"))
    }

    pub async fn authorizations(&self) -> Result<Vec<Authorization>, GlpiError> {
        sqlx::query_as(
            "SELECT CAST(id AS SIGNED) AS id, CAST(plugin_oauthimap_applications_id AS SIGNED) AS application_id, \
             CAST(email AS CHAR) AS email, CAST(code AS CHAR) AS code, CAST(token AS CHAR) AS token, \
             CAST(refresh_token AS CHAR) AS refresh_token FROM glpi_plugin_oauthimap_authorizations ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.failed("the plugin's authorizations", "glpi_plugin_oauthimap_authorizations"))
    }

    /// GLPI's mail collectors that use the plugin (server type `imap-oauth-<id>`).
    pub async fn collectors(&self) -> Result<Vec<Collector>, GlpiError> {
        let rows: Vec<CollectorRow> = sqlx::query_as(
            "SELECT CAST(id AS SIGNED) AS id, CAST(name AS CHAR) AS name, CAST(host AS CHAR) AS host, \
             CAST(login AS CHAR) AS login, CAST(passwd AS CHAR) AS passwd, CAST(is_active AS SIGNED) AS is_active, \
             CAST(accepted AS CHAR) AS accepted, CAST(refused AS CHAR) AS refused \
             FROM glpi_mailcollectors ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.failed("the mail collectors", "glpi_mailcollectors"))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let ConnectString {
                    server,
                    port,
                    application_id,
                    flags,
                    folder,
                } = parse_connect_string(&r.host)?;
                Some(Collector {
                    id: r.id,
                    name: r.name,
                    host: r.host,
                    login: r.login,
                    is_active: r.is_active != 0,
                    accepted: r.accepted.filter(|a| !a.is_empty()),
                    refused: r.refused.filter(|a| !a.is_empty()),
                    application_id,
                    server,
                    port,
                    folder,
                    flags,
                    passwd: r.passwd,
                })
            })
            .collect())
    }

    /// Points collectors at new settings, all in one transaction.
    pub async fn rewrite_collectors(&self, rows: &[CollectorRewrite]) -> Result<(), GlpiError> {
        let failed = |e: sqlx::Error| GlpiError::Query {
            target: self.target.clone(),
            what: "the mail collectors (rewriting them)",
            reason: e.to_string(),
        };
        let mut tx = self.pool.begin().await.map_err(failed)?;
        for r in rows {
            sqlx::query(
                "UPDATE glpi_mailcollectors SET host = ?, login = ?, passwd = ? WHERE id = ?",
            )
            .bind(&r.host)
            .bind(&r.login)
            .bind(&r.passwd)
            .bind(r.id)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::{ConnectString, parse_connect_string};

    fn cs(server: &str, port: Option<u16>, id: i64, flags: &[&str], folder: &str) -> ConnectString {
        ConnectString {
            server: server.into(),
            port,
            application_id: id,
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            folder: folder.into(),
        }
    }

    #[test]
    fn connect_strings_name_the_plugin_application() {
        assert_eq!(
            parse_connect_string("{outlook.office365.com:993/imap-oauth-3/ssl}INBOX"),
            Some(cs("outlook.office365.com", Some(993), 3, &["ssl"], "INBOX"))
        );
        assert_eq!(
            parse_connect_string("{imap.gmail.com/imap-oauth-12/ssl/novalidate-cert}"),
            Some(cs(
                "imap.gmail.com",
                None,
                12,
                &["ssl", "novalidate-cert"],
                "INBOX"
            ))
        );
        assert_eq!(
            parse_connect_string("{mail.example.com:993/imap/ssl}INBOX"),
            None
        );
        assert_eq!(
            parse_connect_string("{mail.example.com:993/imap-oauth-x/ssl}INBOX"),
            None
        );
        assert_eq!(parse_connect_string("no braces"), None);
    }
}
