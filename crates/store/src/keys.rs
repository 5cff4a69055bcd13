//! Key rotation support: which master keys the sealed values use, and re-sealing them under the
//! primary key in small batches. A batch is one transaction and skips values already under the
//! primary, so a re-seal interrupted at any point is simply run again.

use crate::BeginWrite as _;
use std::collections::BTreeMap;

use oauthimap_crypto::envelope_key_id;
use serde::Serialize;

use crate::{Result, Store, StoreError, on_db};

/// Every sealed column: (table, column). Rows are keyed by `id`, except `meta` (by `key`).
const SEALED: &[(&str, &str)] = &[
    ("applications", "client_secret"),
    ("accounts", "access_token"),
    ("accounts", "refresh_token"),
    ("receivers", "sink_secret"),
    ("oauth_states", "pkce_verifier"),
];

const BATCH: i64 = 200;

/// How many sealed values each master key protects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyUsage {
    pub by_key: BTreeMap<u32, u64>,
}

/// What a re-seal did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResealReport {
    pub resealed: u64,
    pub already_current: u64,
    /// Values changed by someone else while we worked; a later pass picks them up.
    pub raced: u64,
}

impl Store {
    /// Counts the sealed values per master key id.
    pub async fn key_usage(&self) -> Result<KeyUsage> {
        let mut usage = KeyUsage::default();
        let mut count = |sealed: &[u8]| {
            if let Some(id) = envelope_key_id(sealed) {
                *usage.by_key.entry(id).or_default() += 1;
            }
        };
        let check: Option<Vec<u8>> = on_db!(self.db(), |pool| sqlx::query_scalar(
            "SELECT value FROM meta WHERE key = 'key_check'"
        )
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("read the key check"))?);
        if let Some(c) = check {
            count(&c);
        }
        for (table, column) in SEALED {
            let mut after = 0i64;
            loop {
                let rows = self.sealed_batch(table, column, after).await?;
                for (_, sealed) in &rows {
                    count(sealed);
                }
                match rows.last() {
                    Some((id, _)) => after = *id,
                    None => break,
                }
            }
        }
        Ok(usage)
    }

    /// Re-seals every value not under the primary key. Safe to run while the service works.
    pub async fn reseal_all(&self) -> Result<ResealReport> {
        let _change = self.token_change();
        let mut report = ResealReport::default();
        let primary = self.keys().primary_id();
        // The key check first: it is what proves the key file fits.
        let check: Option<Vec<u8>> = on_db!(self.db(), |pool| sqlx::query_scalar(
            "SELECT value FROM meta WHERE key = 'key_check'"
        )
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("read the key check"))?);
        if let Some(old) = check.filter(|c| envelope_key_id(c) != Some(primary)) {
            let plain = self.keys().open(crate::KEY_CHECK_CONTEXT, &old)?;
            let new = self.keys().seal(crate::KEY_CHECK_CONTEXT, &plain)?;
            on_db!(self.db(), |pool| {
                sqlx::query("UPDATE meta SET value = $1 WHERE key = 'key_check' AND value = $2")
                    .bind(new)
                    .bind(old)
                    .execute(pool)
                    .await
                    .map_err(StoreError::db("re-seal the key check"))?;
            });
        }
        for (table, column) in SEALED {
            let mut after = 0i64;
            loop {
                let rows = self.sealed_batch(table, column, after).await?;
                let Some((last, _)) = rows.last() else { break };
                after = *last;
                let mut changes = Vec::new();
                for (id, old) in rows {
                    if envelope_key_id(&old) == Some(primary) {
                        report.already_current += 1;
                        continue;
                    }
                    let context = format!("{table}.{column}:{id}");
                    let plain = self.keys().open(&context, &old)?;
                    changes.push((id, old, self.keys().seal(&context, &plain)?));
                }
                let sql =
                    format!("UPDATE {table} SET {column} = $1 WHERE id = $2 AND {column} = $3");
                on_db!(self.db(), |pool| {
                    let mut tx = pool
                        .begin_write()
                        .await
                        .map_err(StoreError::db("start a transaction"))?;
                    for (id, old, new) in &changes {
                        let n = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                            .bind(new)
                            .bind(id)
                            .bind(old)
                            .execute(&mut *tx)
                            .await
                            .map_err(StoreError::db("re-seal a value"))?
                            .rows_affected();
                        if n == 1 {
                            report.resealed += 1;
                        } else {
                            report.raced += 1;
                        }
                    }
                    tx.commit()
                        .await
                        .map_err(StoreError::db("commit a re-seal batch"))?;
                });
            }
        }
        Ok(report)
    }

    async fn sealed_batch(
        &self,
        table: &str,
        column: &str,
        after: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>> {
        let sql = format!(
            "SELECT id, {column} FROM {table} WHERE id > $1 AND {column} IS NOT NULL ORDER BY id LIMIT $2"
        );
        Ok(on_db!(self.db(), |pool| sqlx::query_as(
            sqlx::AssertSqlSafe(sql)
        )
        .bind(after)
        .bind(BATCH)
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("read sealed values"))?))
    }
}
