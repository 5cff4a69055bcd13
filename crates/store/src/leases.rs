//! Leases: a named lock with an expiry, shared by every instance using the same database. They
//! give single flight across instances (one refresh per account at a time) and receiver ownership.
//! A holder that dies simply lets its lease expire.

use oauthimap_types::now_millis;

use crate::{Result, Store, StoreError, on_db};

impl Store {
    /// Takes `name` for `holder` for `ttl_ms` if it is free, expired, or already held by `holder`
    /// (which renews it). Returns whether `holder` now holds it. Atomic on both backends.
    pub async fn try_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        let now = now_millis();
        let won: Option<String> = on_db!(self.db(), |pool| {
            sqlx::query_scalar(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.expires_at <= $4 OR leases.holder = excluded.holder \
             RETURNING holder"
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl_ms)
        .bind(now)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("take a lease"))?
        });
        Ok(won.as_deref() == Some(holder))
    }

    /// Gives `name` up if `holder` holds it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        on_db!(self.db(), |pool| {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(pool)
                .await
                .map_err(StoreError::db("release a lease"))?;
        });
        Ok(())
    }
}

impl Store {
    /// Who holds `name` now, if anyone holds it unexpired.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<String>> {
        Ok(on_db!(self.db(), |pool| {
            sqlx::query_scalar("SELECT holder FROM leases WHERE name = $1 AND expires_at > $2")
                .bind(name)
                .bind(now_millis())
                .fetch_optional(pool)
                .await
                .map_err(StoreError::db("read a lease"))?
        }))
    }
}
