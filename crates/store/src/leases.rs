//! Leases: a named lock with an expiry, shared by every instance using the same database. They
//! give single flight across instances (one refresh per account at a time) and receiver ownership.
//! A holder that dies simply lets its lease expire.

use oauthimap_types::now_millis;

use crate::{Result, Store, StoreError, on_db};

/// Proof of holding a lease: whoever acts under it carries this, and the store refuses work whose
/// fence is stale (another holder took the lease since, so its epoch moved on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub holder: String,
    pub epoch: i64,
}

impl Store {
    /// Takes `name` for `holder` for `ttl_ms` if it is free, expired, or already held by `holder`
    /// (which renews it). Returns the fence when `holder` now holds it: its epoch grows whenever
    /// the lease passes to another holder, never on a renewal. Atomic on both backends.
    pub async fn take_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<Option<Fence>> {
        let now = now_millis();
        let won: Option<(String, i64)> = on_db!(self.db(), |pool| {
            sqlx::query_as(
            "INSERT INTO leases (name, holder, expires_at, epoch) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, \
             epoch = CASE WHEN leases.holder = excluded.holder THEN leases.epoch ELSE leases.epoch + 1 END \
             WHERE leases.expires_at <= $4 OR leases.holder = excluded.holder \
             RETURNING holder, epoch"
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl_ms)
        .bind(now)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("take a lease"))?
        });
        Ok(won
            .filter(|(h, _)| h == holder)
            .map(|(holder, epoch)| Fence {
                lease: name.to_owned(),
                holder,
                epoch,
            }))
    }

    /// [`Store::take_lease`], when only winning matters (single flight of a refresh).
    pub async fn try_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        Ok(self.take_lease(name, holder, ttl_ms).await?.is_some())
    }

    /// Gives `name` up if `holder` holds it. The row stays (expired), so its epoch keeps
    /// counting when another holder takes it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        on_db!(self.db(), |pool| {
            sqlx::query("UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(pool)
                .await
                .map_err(StoreError::db("release a lease"))?;
        });
        Ok(())
    }

    /// Deletes leases named `prefix…` that expired before `before` (epoch ms): the presence rows
    /// of instances that died long ago, whose names are never taken again.
    pub async fn forget_leases(&self, prefix: &str, before: i64) -> Result<u64> {
        Ok(on_db!(self.db(), |pool| {
            sqlx::query(
                "DELETE FROM leases WHERE substr(name, 1, length($1)) = $1 AND expires_at < $2",
            )
            .bind(prefix)
            .bind(before)
            .execute(pool)
            .await
            .map_err(StoreError::db("forget old leases"))?
            .rows_affected()
        }))
    }

    /// Whether `fence` is still good: no other holder took its lease since it was given. (An
    /// expired lease nobody took is still good: nobody else acted.)
    pub async fn fence_holds(&self, fence: &Fence) -> Result<bool> {
        let epoch: Option<i64> = on_db!(self.db(), |pool| {
            sqlx::query_scalar("SELECT epoch FROM leases WHERE name = $1 AND holder = $2")
                .bind(&fence.lease)
                .bind(&fence.holder)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::db("read a lease"))?
        });
        Ok(epoch == Some(fence.epoch))
    }
}

impl Store {
    /// How many unexpired leases named `prefix…` exist (live instances: `instance:`).
    pub async fn live_leases(&self, prefix: &str) -> Result<usize> {
        let n: i64 = on_db!(self.db(), |pool| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM leases WHERE substr(name, 1, length($1)) = $1 AND expires_at > $2",
            )
            .bind(prefix)
            .bind(now_millis())
            .fetch_one(pool)
            .await
            .map_err(StoreError::db("count the leases"))?
        });
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The names of the unexpired leases named `prefix…` that `holder` holds, sorted.
    pub async fn leases_held(&self, prefix: &str, holder: &str) -> Result<Vec<String>> {
        Ok(on_db!(self.db(), |pool| {
            sqlx::query_scalar(
                "SELECT name FROM leases WHERE substr(name, 1, length($1)) = $1 AND holder = $2 \
                 AND expires_at > $3 ORDER BY name",
            )
            .bind(prefix)
            .bind(holder)
            .bind(now_millis())
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("list the leases"))?
        }))
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
