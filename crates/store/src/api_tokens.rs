//! API tokens for the REST API and the HTTP token broker. Only a SHA-256 hash of each token is
//! stored: the tokens are 256-bit random values, so a fast hash is as safe as a slow one.

use oauthimap_types::now_millis;
use serde::Serialize;

use crate::{Result, Store, StoreError, on_db};

/// An API token's record (never the token).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    /// Space-separated scopes such as `tokens:read admin`.
    pub scopes: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl ApiToken {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes
            .split_whitespace()
            .any(|s| s == scope || s == "admin")
    }
}

impl Store {
    pub async fn insert_api_token(
        &self,
        name: &str,
        token_hash: &str,
        scopes: &str,
    ) -> Result<ApiToken> {
        let row: ApiToken = on_db!(self.db(), |pool| {
            sqlx::query_as(
            "INSERT INTO api_tokens (name, token_hash, scopes, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, name, scopes, created_at, last_used_at"
        )
        .bind(name)
        .bind(token_hash)
        .bind(scopes)
        .bind(now_millis())
        .fetch_one(pool)
        .await
        .map_err(StoreError::unique("an API token named", name, "create the API token"))?
        });
        Ok(row)
    }

    /// The token with this hash, noting its use.
    pub async fn use_api_token(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        Ok(on_db!(self.db(), |pool| sqlx::query_as(
            "UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2 \
             RETURNING id, name, scopes, created_at, last_used_at"
        )
        .bind(now_millis())
        .bind(token_hash)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("check the API token"))?))
    }

    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        Ok(on_db!(self.db(), |pool| sqlx::query_as(
            "SELECT id, name, scopes, created_at, last_used_at FROM api_tokens ORDER BY name"
        )
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("list the API tokens"))?))
    }

    pub async fn delete_api_token(&self, name: &str) -> Result<()> {
        let n = on_db!(self.db(), |pool| sqlx::query(
            "DELETE FROM api_tokens WHERE name = $1"
        )
        .bind(name)
        .execute(pool)
        .await
        .map_err(StoreError::db("delete the API token"))?
        .rows_affected());
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "API token",
                key: name.to_owned(),
            });
        }
        Ok(())
    }
}
