//! Pending sign-ins: the single-use `state` of an authorization-code flow (stored as a hash),
//! its sealed PKCE verifier, and how it ended, so a CLI waiting on another process's callback can
//! learn the outcome.

use crate::BeginWrite as _;
use oauthimap_types::{AccountId, AppId, now_millis};
use secrecy::SecretString;

use crate::{Result, Store, StoreError, on_db};

/// A pending sign-in taken by its callback.
#[derive(Debug)]
pub struct PendingSignIn {
    pub id: i64,
    pub application_id: AppId,
    pub mailbox: Option<String>,
    pub pkce_verifier: SecretString,
    pub redirect_url: String,
}

/// How a sign-in ended, for whoever waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInOutcome {
    Pending,
    Expired,
    Succeeded(AccountId),
    Failed(String),
}

/// Expiry, consumption time, account made, error.
type OutcomeRow = (i64, Option<i64>, Option<i64>, Option<String>);

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    application_id: i64,
    mailbox: Option<String>,
    pkce_verifier: Option<Vec<u8>>,
    redirect_url: String,
}

impl Store {
    /// Records a new pending sign-in; returns its id.
    pub async fn insert_sign_in(
        &self,
        application: AppId,
        state_hash: &str,
        pkce_verifier: &SecretString,
        mailbox: Option<&str>,
        redirect_url: &str,
        ttl_ms: i64,
    ) -> Result<i64> {
        let now = now_millis();
        let id = on_db!(self.db(), |pool| {
            let mut tx = pool
                .begin_write()
                .await
                .map_err(StoreError::db("start a transaction"))?;
            // Old, finished or expired sign-ins are of no use to anyone.
            sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1")
                .bind(now - 86_400_000)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("prune old sign-ins"))?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO oauth_states (state_hash, application_id, mailbox, redirect_url, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(state_hash)
            .bind(application.0)
            .bind(mailbox)
            .bind(redirect_url)
            .bind(now)
            .bind(now + ttl_ms)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db("record the sign-in"))?;
            sqlx::query("UPDATE oauth_states SET pkce_verifier = $1 WHERE id = $2")
                .bind(self.seal("oauth_states", "pkce_verifier", id, pkce_verifier)?)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("record the sign-in"))?;
            tx.commit()
                .await
                .map_err(StoreError::db("commit the sign-in"))?;
            id
        });
        Ok(id)
    }

    /// Takes the pending sign-in with this state hash, once: a replayed, unknown or expired state
    /// gives `None`. The verifier is wiped from the row as it is taken.
    pub async fn take_sign_in(&self, state_hash: &str) -> Result<Option<PendingSignIn>> {
        let now = now_millis();
        let row: Option<Row> = on_db!(self.db(), |pool| sqlx::query_as(
            "UPDATE oauth_states SET consumed_at = $1 \
             WHERE state_hash = $2 AND consumed_at IS NULL AND expires_at > $1 \
             RETURNING id, application_id, mailbox, pkce_verifier, redirect_url"
        )
        .bind(now)
        .bind(state_hash)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("take the sign-in"))?);
        let Some(row) = row else { return Ok(None) };
        let sealed = row
            .pkce_verifier
            .ok_or_else(|| StoreError::Corrupt("a pending sign-in has no PKCE verifier".into()))?;
        let verifier = self.open("oauth_states", "pkce_verifier", row.id, &sealed)?;
        on_db!(self.db(), |pool| {
            sqlx::query("UPDATE oauth_states SET pkce_verifier = NULL WHERE id = $1")
                .bind(row.id)
                .execute(pool)
                .await
                .map_err(StoreError::db("wipe the PKCE verifier"))?;
        });
        Ok(Some(PendingSignIn {
            id: row.id,
            application_id: AppId(row.application_id),
            mailbox: row.mailbox,
            pkce_verifier: verifier,
            redirect_url: row.redirect_url,
        }))
    }

    /// Records how a taken sign-in ended.
    pub async fn finish_sign_in(
        &self,
        id: i64,
        outcome: std::result::Result<AccountId, &str>,
    ) -> Result<()> {
        let (account, error) = match outcome {
            Ok(a) => (Some(a.0), None),
            Err(e) => (None, Some(e)),
        };
        on_db!(self.db(), |pool| {
            sqlx::query("UPDATE oauth_states SET account_id = $1, error = $2 WHERE id = $3")
                .bind(account)
                .bind(error)
                .bind(id)
                .execute(pool)
                .await
                .map_err(StoreError::db("record the sign-in outcome"))?;
        });
        Ok(())
    }

    /// Where a sign-in stands.
    pub async fn sign_in_outcome(&self, id: i64) -> Result<SignInOutcome> {
        let row: Option<OutcomeRow> = on_db!(self.db(), |pool| {
            sqlx::query_as(
                "SELECT expires_at, consumed_at, account_id, error FROM oauth_states WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(StoreError::db("read the sign-in"))?
        });
        Ok(match row {
            None => SignInOutcome::Expired,
            Some((_, _, Some(account), _)) => SignInOutcome::Succeeded(AccountId(account)),
            Some((_, _, None, Some(error))) => SignInOutcome::Failed(error),
            Some((expires, None, None, None)) if expires <= now_millis() => SignInOutcome::Expired,
            Some(_) => SignInOutcome::Pending,
        })
    }
}
