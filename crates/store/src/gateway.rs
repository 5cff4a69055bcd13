//! The gateway's records: per-client passwords of an account (only an argon2id hash is kept,
//! made by the app core) and the upstream servers an application or account overrides.

use oauthimap_types::{AccountId, AppId, now_millis};
use serde::Serialize;

use crate::{Result, Store, StoreError, on_db};

/// A gateway password's record (never the password).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct GatewayPassword {
    pub id: i64,
    pub account_id: i64,
    /// The account's mailbox: the login name clients use.
    pub mailbox: String,
    pub application_name: String,
    /// Which client it is for (`glpi`, `scanner-2nd-floor`).
    pub name: String,
    /// Space-separated protocols it may be used for: `imap pop3 smtp`.
    pub protocols: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// The client address of its last use.
    pub last_remote: Option<String>,
}

impl GatewayPassword {
    pub fn allows(&self, protocol: &str) -> bool {
        self.protocols.split_whitespace().any(|p| p == protocol)
    }
}

const SELECT: &str = "SELECT g.id, g.account_id, c.mailbox, a.name AS application_name, g.name, \
     g.protocols, g.expires_at, g.created_at, g.last_used_at, g.last_remote \
     FROM gateway_passwords g JOIN accounts c ON c.id = g.account_id \
     JOIN applications a ON a.id = c.application_id";

#[derive(sqlx::FromRow)]
struct WithHash {
    #[sqlx(flatten)]
    password: GatewayPassword,
    password_hash: String,
}

impl Store {
    pub async fn insert_gateway_password(
        &self,
        account: AccountId,
        name: &str,
        password_hash: &str,
        protocols: &str,
        expires_at: Option<i64>,
    ) -> Result<GatewayPassword> {
        let id: i64 = on_db!(self.db(), |pool| {
            sqlx::query_scalar(
                "INSERT INTO gateway_passwords (account_id, name, password_hash, protocols, \
                 expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(account.0)
            .bind(name)
            .bind(password_hash)
            .bind(protocols)
            .bind(expires_at)
            .bind(now_millis())
            .fetch_one(pool)
            .await
            .map_err(StoreError::unique(
                "a gateway password of this account named",
                name,
                "create the gateway password",
            ))?
        });
        self.gateway_password(id).await
    }

    pub async fn gateway_password(&self, id: i64) -> Result<GatewayPassword> {
        let row: Option<GatewayPassword> = on_db!(self.db(), |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE g.id = $1")))
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::db("read the gateway password"))?
        });
        row.ok_or_else(|| StoreError::NotFound {
            what: "gateway password",
            key: id.to_string(),
        })
    }

    /// Gateway passwords, of one account or all, by mailbox and name.
    pub async fn gateway_passwords(
        &self,
        account: Option<AccountId>,
    ) -> Result<Vec<GatewayPassword>> {
        Ok(on_db!(self.db(), |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{SELECT} WHERE ($1 IS NULL OR g.account_id = $1) ORDER BY c.mailbox, g.name"
            )))
            .bind(account.map(|a| a.0))
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("list the gateway passwords"))?
        }))
    }

    /// The passwords (with their hashes) a client logging in as `mailbox` may mean: those of
    /// every account of that mailbox, ignoring case.
    pub async fn gateway_login_candidates(
        &self,
        mailbox: &str,
    ) -> Result<Vec<(GatewayPassword, String)>> {
        let rows: Vec<WithHash> = on_db!(self.db(), |pool| {
            sqlx::query_as(
                "SELECT g.id, g.account_id, c.mailbox, a.name AS application_name, g.name, \
                 g.protocols, g.expires_at, g.created_at, g.last_used_at, g.last_remote, \
                 g.password_hash FROM gateway_passwords g JOIN accounts c ON c.id = g.account_id \
                 JOIN applications a ON a.id = c.application_id WHERE LOWER(c.mailbox) = $1 \
                 ORDER BY g.id",
            )
            .bind(mailbox.to_lowercase())
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("look up the gateway login"))?
        });
        Ok(rows
            .into_iter()
            .map(|r| (r.password, r.password_hash))
            .collect())
    }

    /// Notes a successful login with a gateway password.
    pub async fn note_gateway_password_use(&self, id: i64, remote: &str) -> Result<()> {
        on_db!(self.db(), |pool| {
            sqlx::query(
                "UPDATE gateway_passwords SET last_used_at = $1, last_remote = $2 WHERE id = $3",
            )
            .bind(now_millis())
            .bind(remote)
            .bind(id)
            .execute(pool)
            .await
            .map_err(StoreError::db("note the gateway login"))?;
        });
        Ok(())
    }

    pub async fn delete_gateway_password(&self, id: i64) -> Result<()> {
        on_db!(self.db(), |pool| {
            sqlx::query("DELETE FROM gateway_passwords WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map_err(StoreError::db("remove the gateway password"))?;
        });
        Ok(())
    }

    /// The upstream overrides (JSON) of an account and of its application.
    pub async fn upstreams(&self, account: AccountId) -> Result<(Option<String>, Option<String>)> {
        let row: Option<(Option<String>, Option<String>)> = on_db!(self.db(), |pool| {
            sqlx::query_as(
                "SELECT c.upstreams, a.upstreams FROM accounts c \
                 JOIN applications a ON a.id = c.application_id WHERE c.id = $1",
            )
            .bind(account.0)
            .fetch_optional(pool)
            .await
            .map_err(StoreError::db("read the upstream servers"))?
        });
        row.ok_or_else(|| StoreError::NotFound {
            what: "account",
            key: account.0.to_string(),
        })
    }

    /// The upstream overrides (JSON) of an application.
    pub async fn application_upstreams(&self, app: AppId) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> = on_db!(self.db(), |pool| {
            sqlx::query_as("SELECT upstreams FROM applications WHERE id = $1")
                .bind(app.0)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::db("read the upstream servers"))?
        });
        row.map(|(json,)| json).ok_or_else(|| StoreError::NotFound {
            what: "application",
            key: app.0.to_string(),
        })
    }

    pub async fn set_account_upstreams(
        &self,
        account: AccountId,
        json: Option<&str>,
    ) -> Result<()> {
        let _change = self.token_change();
        on_db!(self.db(), |pool| {
            sqlx::query("UPDATE accounts SET upstreams = $1 WHERE id = $2")
                .bind(json)
                .bind(account.0)
                .execute(pool)
                .await
                .map_err(StoreError::db("set the upstream servers"))?;
        });
        Ok(())
    }

    pub async fn set_application_upstreams(&self, app: AppId, json: Option<&str>) -> Result<()> {
        let _change = self.token_change();
        on_db!(self.db(), |pool| {
            sqlx::query("UPDATE applications SET upstreams = $1 WHERE id = $2")
                .bind(json)
                .bind(app.0)
                .execute(pool)
                .await
                .map_err(StoreError::db("set the upstream servers"))?;
        });
        Ok(())
    }
}
