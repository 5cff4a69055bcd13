//! Persistence: the one place that speaks SQL.
//!
//! [`Db`] is either an embedded SQLite file (the default) or PostgreSQL (several instances sharing
//! one database). Both run the same portable SQL (`$1` placeholders, `ON CONFLICT`, `RETURNING`)
//! through the [`on_db!`] dispatch, and each has its own migration folder with the same numbering.
//! Secrets are sealed with the [`KeyRing`] before they are written and opened after they are read,
//! bound to their table, column and row. Multi-row rules (deactivate an application and its
//! receivers) run in one transaction here; deciding *when* they apply is the `app` crate's job.
//!
//! This crate knows nothing of HTTP or IMAP.

mod accounts;
mod admins;
mod api_tokens;
mod applications;
mod changes;
mod collection;
mod events;
mod gateway;
mod keys;
mod leases;
mod models;
mod oauth_states;
mod overview;
mod receivers;
mod status;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use oauthimap_crypto::{CryptoError, KeyRing};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use accounts::AccountTokens;
pub use admins::{AdminCredentials, AdminSession, AdminUser};
pub use api_tokens::ApiToken;
pub use applications::ImportedAccount;
pub use changes::ChangeMarker;
pub use collection::{
    Checkpoint, LedgerEntry, LedgerStatus, LedgerWrite, NewStoredMessage, StoredMessage,
};
pub use gateway::GatewayPassword;
pub use keys::{KeyUsage, ResealReport};
pub use leases::Fence;
pub use models::*;
pub use oauth_states::{PendingSignIn, SignInOutcome};
pub use overview::{MessageFilter, MessageSummary, ReceiverActivity};
pub use status::{ReceiverStatus, StatusReport};

/// Runs `$body` once for whichever pool `$db` holds, with `$pool` bound to it. The body is
/// compiled for both backends, so the SQL in it must be portable.
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::Db::Sqlite($pool) => $body,
            $crate::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`: a deferred transaction that
/// reads, then writes, cannot wait for another writer (SQLite answers "database is locked" at
/// once, whatever the busy timeout), and concurrent sign-ins failed that way. Immediate ones
/// take the write lock first and wait their turn.
pub(crate) trait BeginWrite {
    type Database: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl Future<
        Output = std::result::Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>,
    > + Send;
}

impl BeginWrite for SqlitePool {
    type Database = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl Future<
        Output = std::result::Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>,
    > + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for PgPool {
    type Database = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl Future<
        Output = std::result::Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>,
    > + Send {
        self.begin()
    }
}

/// The database behind a [`Store`].
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Which kind of database a [`Db`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action}: {source}")]
    Database {
        action: &'static str,
        source: sqlx::Error,
    },
    #[error("cannot connect to the {backend} database: {reason}")]
    Connect { backend: Backend, reason: String },
    #[error("cannot update the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{what} {key:?} does not exist")]
    NotFound { what: &'static str, key: String },
    #[error("{what} {key:?} already exists; choose another name or update the existing one")]
    Duplicate { what: &'static str, key: String },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(
        "the master keys in {source_desc} do not fit this database; use the key file (or OAUTHIMAP_MASTER_KEY) \
         the database was written with ({detail})"
    )]
    KeysDoNotFit { source_desc: String, detail: String },
    #[error("the database holds a value this version cannot read: {0}")]
    Corrupt(String),
    /// The lease this work ran under was taken by another instance (this one stalled past it):
    /// nothing was written, and the work must stop.
    #[error(
        "lease {lease} was taken over by another instance; this one records and does nothing more under it"
    )]
    Fenced { lease: String },
}

impl StoreError {
    /// Wraps a sqlx error with what was being done, turning unique violations into `Duplicate`.
    pub(crate) fn db(action: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Database { action, source }
    }

    pub(crate) fn unique(
        what: &'static str,
        key: &str,
        action: &'static str,
    ) -> impl FnOnce(sqlx::Error) -> StoreError {
        let key = key.to_owned();
        move |source| {
            if source
                .as_database_error()
                .is_some_and(sqlx::error::DatabaseError::is_unique_violation)
            {
                StoreError::Duplicate { what, key }
            } else {
                StoreError::Database { action, source }
            }
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The plaintext sealed under `meta.key_check`: opening it proves the key ring fits the database.
const KEY_CHECK: &[u8] = b"oauthimap key check";
const KEY_CHECK_CONTEXT: &str = "meta.key_check:0";

/// SQLite's page cache per connection, in KiB when negative: 512 KiB instead of the default
/// 2 MiB. Each of the pool's connections fills its own cache as the database grows, so the
/// default made a long collection's memory grow with the mailbox, by up to 16 MB; the queries
/// are index lookups and appends, and the file's pages stay in the system's page cache anyway.
const SQLITE_CACHE_SIZE: &str = "-512";

impl Db {
    /// Connects to `url` (`sqlite://PATH...` or `postgres://...`) and applies pending migrations.
    /// A SQLite file and its folder are created if missing.
    pub async fn connect(url: &SecretString) -> Result<Db> {
        let url = url.expose_secret();
        let db = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| connect_error(Backend::Sqlite, &e))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .pragma("cache_size", SQLITE_CACHE_SIZE);
            let file = options.get_filename().to_owned();
            if let Some(parent) = file.parent() {
                create_private_dir(parent).map_err(|e| StoreError::Connect {
                    backend: Backend::Sqlite,
                    reason: format!("cannot create the folder {}: {e}", parent.display()),
                })?;
            }
            create_private_file(&file).map_err(|e| StoreError::Connect {
                backend: Backend::Sqlite,
                reason: format!("cannot create {}: {e}", file.display()),
            })?;
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(options)
                .await
                .map_err(|e| connect_error(Backend::Sqlite, &e))?;
            SQLITE_MIGRATIONS.run(&pool).await?;
            Db::Sqlite(pool)
        } else {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| connect_error(Backend::Postgres, &e))?;
            Self::connect_postgres(options).await?
        };
        Ok(db)
    }

    /// Connects to PostgreSQL with explicit options (tests use a private schema) and migrates.
    pub async fn connect_postgres(options: PgConnectOptions) -> Result<Db> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| connect_error(Backend::Postgres, &e))?;
        POSTGRES_MIGRATIONS.run(&pool).await?;
        Ok(Db::Postgres(pool))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Whether secrets were ever sealed into this database (then its key file must exist).
    pub async fn is_sealed(&self) -> Result<bool> {
        let found: Option<i64> = on_db!(self, |pool| sqlx::query_scalar(
            "SELECT CAST(1 AS BIGINT) FROM meta WHERE key = 'key_check'"
        )
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("read the key check"))?);
        Ok(found.is_some())
    }

    /// A cheap round trip, for readiness probes.
    pub async fn ping(&self) -> Result<()> {
        let _: i64 = on_db!(self, |pool| sqlx::query_scalar("SELECT CAST(1 AS BIGINT)")
            .fetch_one(pool)
            .await
            .map_err(StoreError::db("reach the database"))?);
        Ok(())
    }

    pub async fn close(&self) {
        on_db!(self, |pool| pool.close().await);
    }
}

fn connect_error(backend: Backend, error: &sqlx::Error) -> StoreError {
    // sqlx's messages do not include the URL, so no password leaks through here.
    StoreError::Connect {
        backend,
        reason: error.to_string(),
    }
}

/// Creates a folder (and its parents) readable by its owner only; an existing one is left as is.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates an empty file readable by its owner only; SQLite gives its WAL and shared-memory files
/// the same permissions.
fn create_private_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.as_os_str().is_empty() || path.exists() || path.to_str() == Some(":memory:") {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

/// The database plus the keys that open its secrets: what every use case works with.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    keys: Arc<KeyRing>,
}

impl Store {
    /// Pairs a database with its key ring, proving they belong together: on first use the key
    /// check is written, afterwards it must open.
    pub async fn new(db: Db, keys: Arc<KeyRing>) -> Result<Store> {
        let store = Store { db, keys };
        let existing: Option<Vec<u8>> = on_db!(&store.db, |pool| sqlx::query_scalar(
            "SELECT value FROM meta WHERE key = 'key_check'"
        )
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("read the key check"))?);
        let Some(sealed) = existing else {
            let sealed = store.keys.seal(KEY_CHECK_CONTEXT, KEY_CHECK)?;
            on_db!(&store.db, |pool| {
                sqlx::query(
                    "INSERT INTO meta (key, value) VALUES ('key_check', $1) ON CONFLICT (key) DO NOTHING",
                )
                .bind(sealed)
                .execute(pool)
                .await
                .map_err(StoreError::db("write the key check"))?;
            });
            return Ok(store);
        };
        let opened =
            store
                .keys
                .open(KEY_CHECK_CONTEXT, &sealed)
                .map_err(|e| StoreError::KeysDoNotFit {
                    source_desc: store.keys.source_desc(),
                    detail: e.to_string(),
                })?;
        if opened.as_slice() != KEY_CHECK {
            return Err(StoreError::Corrupt(
                "the key check holds an unexpected value".into(),
            ));
        }
        Ok(store)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    pub(crate) fn seal(
        &self,
        table: &str,
        column: &str,
        id: i64,
        value: &SecretString,
    ) -> Result<Vec<u8>> {
        Ok(self.keys.seal(
            &format!("{table}.{column}:{id}"),
            value.expose_secret().as_bytes(),
        )?)
    }

    pub(crate) fn open(
        &self,
        table: &str,
        column: &str,
        id: i64,
        sealed: &[u8],
    ) -> Result<SecretString> {
        let bytes = self.keys.open(&format!("{table}.{column}:{id}"), sealed)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            StoreError::Corrupt(format!("{table}.{column} of row {id} is not text"))
        })?;
        Ok(SecretString::from(text.to_owned()))
    }
}

/// Parses a stored enum name, reporting a corrupt row instead of panicking.
pub(crate) fn parse_name<T: FromStr>(value: &str, column: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("{column} holds unknown value {value:?}")))
}
