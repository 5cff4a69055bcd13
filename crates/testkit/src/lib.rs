//! Test harness shared by the crates' test suites (never shipped in the binary): databases on
//! both backends, each test in its own private SQLite file or PostgreSQL schema, and key rings.
//!
//! PostgreSQL is reached at `OAUTHIMAP_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`, what `scripts/test` starts). If it cannot be
//! reached the test fails and says so: suites are never skipped silently.

pub mod fixtures;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use oauthimap_crypto::KeyRing;
use oauthimap_store::{Backend, Db, Store};
use sqlx::postgres::PgConnectOptions;

/// The default PostgreSQL URL for tests.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL URL tests use.
pub fn pg_url() -> String {
    std::env::var("OAUTHIMAP_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// Both backends, for contract tests that must hold on each.
pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A private database for one test. Keep it alive for the test's duration; a PostgreSQL schema is
/// dropped by [`TestDb::cleanup`] (and stale ones from crashed runs are dropped on the next run).
#[derive(Debug)]
pub struct TestDb {
    pub db: Db,
    pub dir: tempfile::TempDir,
    /// `sqlite://...` or `postgres://...` URL with the schema in `options`, usable by a child process.
    pub url: String,
    schema: Option<String>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_suffix() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}_{}_{}",
        now.as_secs(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestDb {
    /// A fresh, migrated database on `backend`.
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("a temporary folder");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                let db = Db::connect(&url.clone().into())
                    .await
                    .expect("a SQLite database in a temporary folder");
                TestDb {
                    db,
                    dir,
                    url,
                    schema: None,
                }
            }
            Backend::Postgres => {
                let base = pg_url();
                let admin = sqlx::PgPool::connect(&base).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is not reachable at {base}: {e}. Run scripts/test (it installs and starts \
                         PostgreSQL) or set OAUTHIMAP_TEST_PG_URL."
                    )
                });
                drop_stale_schemas(&admin).await;
                let schema = format!("oit_{}", unique_suffix());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&admin)
                    .await
                    .expect("create a test schema");
                admin.close().await;
                let options = PgConnectOptions::from_str(&base)
                    .expect("a valid OAUTHIMAP_TEST_PG_URL")
                    .options([("search_path", schema.as_str())]);
                let db = Db::connect_postgres(options)
                    .await
                    .expect("connect to the test schema");
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                TestDb {
                    db,
                    dir,
                    url,
                    schema: Some(schema),
                }
            }
        }
    }

    /// A store over this database with a fresh key file in the test's folder.
    pub async fn store(&self) -> Store {
        let (keys, _) =
            KeyRing::from_file(&self.dir.path().join("master.key"), true).expect("a key file");
        Store::new(self.db.clone(), Arc::new(keys))
            .await
            .expect("a store")
    }

    /// Drops the PostgreSQL schema (SQLite files go with the temporary folder).
    pub async fn cleanup(self) {
        self.db.close().await;
        if let Some(schema) = &self.schema
            && let Ok(admin) = sqlx::PgPool::connect(&pg_url()).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE"
            )))
            .execute(&admin)
            .await;
            admin.close().await;
        }
    }
}

/// Drops test schemas left by runs that crashed more than an hour ago.
async fn drop_stale_schemas(admin: &sqlx::PgPool) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'oit\\_%'",
    )
    .fetch_all(admin)
    .await
    else {
        return;
    };
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .saturating_sub(3600);
    for name in names {
        let stamp = name
            .split('_')
            .nth(1)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        if stamp < hour_ago {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE"
            )))
            .execute(admin)
            .await;
        }
    }
}

/// A plain HTTP/1.1 GET to a loopback address: status code and body. Enough for probes in tests
/// without pulling an HTTP client with TLS into every test binary.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
