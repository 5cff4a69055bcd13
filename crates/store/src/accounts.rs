//! Accounts (authorizations): one mailbox reachable through one application, with its sealed
//! access and refresh tokens and its health.

use crate::BeginWrite as _;
use oauthimap_types::{
    AccountId, AccountState, AppId, GrantKind, StateChange, TokenSet, now_millis,
};
use secrecy::SecretString;

use crate::models::Account;
use crate::{Result, Store, StoreError, on_db, parse_name};

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    application_id: i64,
    application_name: String,
    identity: String,
    mailbox: String,
    grant_kind: String,
    state: String,
    failure_count: i64,
    has_access: bool,
    access_expires_at: Option<i64>,
    has_refresh: bool,
    refresh_issued_at: Option<i64>,
    refresh_last_used_at: Option<i64>,
    scopes: String,
    last_refresh_at: Option<i64>,
    next_attempt_at: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const SELECT: &str = "SELECT c.id, c.application_id, a.name AS application_name, c.identity, c.mailbox, \
     c.grant_kind, c.state, c.failure_count, (c.access_token IS NOT NULL) AS has_access, \
     c.access_expires_at, (c.refresh_token IS NOT NULL) AS has_refresh, c.refresh_issued_at, \
     c.refresh_last_used_at, c.scopes, c.last_refresh_at, c.next_attempt_at, c.last_error, \
     c.created_at, c.updated_at FROM accounts c JOIN applications a ON a.id = c.application_id";

impl TryFrom<Row> for Account {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self> {
        Ok(Account {
            id: AccountId(r.id),
            application_id: AppId(r.application_id),
            application_name: r.application_name,
            identity: r.identity,
            mailbox: r.mailbox,
            grant_kind: parse_name(&r.grant_kind, "accounts.grant_kind")?,
            state: parse_name(&r.state, "accounts.state")?,
            failure_count: r.failure_count,
            has_access_token: r.has_access,
            access_expires_at: r.access_expires_at,
            has_refresh_token: r.has_refresh,
            refresh_issued_at: r.refresh_issued_at,
            refresh_last_used_at: r.refresh_last_used_at,
            scopes: r.scopes,
            last_refresh_at: r.last_refresh_at,
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Sealed access token, its expiry, sealed refresh token.
type SealedTokens = (Option<Vec<u8>>, Option<i64>, Option<Vec<u8>>);

/// Opened tokens of an account, for the token service only.
#[derive(Debug, Clone)]
pub struct AccountTokens {
    pub access_token: Option<SecretString>,
    pub access_expires_at: Option<i64>,
    pub refresh_token: Option<SecretString>,
}

impl Store {
    /// The state a sign-in leaves an account in, whatever its state before: what the token
    /// crate's state machine gives for `AccountEvent::Authorized` (a test there pins it).
    /// [`Store::upsert_account`] writes it; the store decides no other state.
    pub const AUTHORIZED_STATE: AccountState = AccountState::Active;

    /// The states whose accounts the background refresher renews ([`Store::accounts_due`]):
    /// those that serve tokens and are ever written.
    pub const REFRESHABLE_STATES: [AccountState; 2] = [AccountState::Active, AccountState::Failing];

    /// Creates the account for (application, identity, mailbox), or renews its grant if it exists:
    /// tokens replaced, state set to [`Store::AUTHORIZED_STATE`], errors cleared. Returns the
    /// account and whether it was created.
    pub async fn upsert_account(
        &self,
        application: AppId,
        identity: &str,
        mailbox: &str,
        grant: GrantKind,
        tokens: &TokenSet,
    ) -> Result<(Account, bool)> {
        let _change = self.token_change();
        let now = now_millis();
        let (id, created) = on_db!(self.db(), |pool| {
            let mut tx = pool
                .begin_write()
                .await
                .map_err(StoreError::db("start a transaction"))?;
            // An account imported from GLPI's plugin holds its mailbox (lower case) as the
            // identity: signing in again, whatever the case of the name, adopts it instead of
            // adding a second account.
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM accounts WHERE application_id = $1 AND mailbox = $3 \
                 AND (identity = $2 OR identity = LOWER(mailbox)) ORDER BY (identity = $2) DESC LIMIT 1",
            )
            .bind(application.0)
            .bind(identity)
            .bind(mailbox)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db("look up the account"))?;
            let (id, created) = if let Some(id) = existing {
                (id, false)
            } else {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO accounts (application_id, identity, mailbox, grant_kind, state, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $6, $5, $5) RETURNING id",
                )
                .bind(application.0)
                .bind(identity)
                .bind(mailbox)
                .bind(grant.as_str())
                .bind(now)
                .bind(Self::AUTHORIZED_STATE.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::unique("an account for", mailbox, "create the account"))?;
                (id, true)
            };
            let access = self.seal("accounts", "access_token", id, &tokens.access_token)?;
            let refresh = tokens
                .refresh_token
                .as_ref()
                .map(|t| self.seal("accounts", "refresh_token", id, t))
                .transpose()?;
            sqlx::query(
                "UPDATE accounts SET grant_kind = $1, state = $10, failure_count = 0, access_token = $2, \
                 access_expires_at = $3, refresh_token = $4, refresh_issued_at = $5, refresh_last_used_at = NULL, \
                 scopes = $6, last_refresh_at = $7, next_attempt_at = NULL, last_error = NULL, updated_at = $7, \
                 identity = $9 WHERE id = $8",
            )
            .bind(grant.as_str())
            .bind(access)
            .bind(tokens.expires_at)
            .bind(&refresh)
            .bind(refresh.as_ref().map(|_| now))
            .bind(&tokens.scopes)
            .bind(now)
            .bind(id)
            .bind(identity)
            .bind(Self::AUTHORIZED_STATE.as_str())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("store the account's tokens"))?;
            tx.commit()
                .await
                .map_err(StoreError::db("commit the account"))?;
            (id, created)
        });
        Ok((self.account(AccountId(id)).await?, created))
    }

    /// One account by id.
    pub async fn account(&self, id: AccountId) -> Result<Account> {
        let row: Option<Row> = on_db!(self.db(), |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("{SELECT} WHERE c.id = $1")
        ))
        .bind(id.0)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("read the account"))?);
        row.ok_or_else(|| StoreError::NotFound {
            what: "account",
            key: id.to_string(),
        })?
        .try_into()
    }

    /// Accounts, all or those of one application, by application then mailbox.
    pub async fn accounts(&self, application: Option<AppId>) -> Result<Vec<Account>> {
        let rows: Vec<Row> = on_db!(self.db(), |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE ($1 IS NULL OR c.application_id = $1) ORDER BY a.name, c.mailbox, c.id"
        )))
        .bind(application.map(|a| a.0))
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("list the accounts"))?
        });
        rows.into_iter().map(Account::try_from).collect()
    }

    /// Accounts whose mailbox or identity is `name` (ASCII case-insensitive), in `application`
    /// or any: the token broker's lookup, one indexed query whatever the number of accounts.
    pub async fn accounts_named(
        &self,
        application: Option<AppId>,
        name: &str,
    ) -> Result<Vec<Account>> {
        let rows: Vec<Row> = on_db!(self.db(), |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{SELECT} WHERE ($1 IS NULL OR c.application_id = $1) \
             AND (LOWER(c.mailbox) = LOWER($2) OR LOWER(c.identity) = LOWER($2)) \
             ORDER BY a.name, c.mailbox, c.id"
            )))
            .bind(application.map(|a| a.0))
            .bind(name)
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("find the account"))?
        });
        rows.into_iter().map(Account::try_from).collect()
    }

    /// The account's tokens, opened.
    pub async fn account_tokens(&self, id: AccountId) -> Result<AccountTokens> {
        let row: Option<SealedTokens> = on_db!(self.db(), |pool| {
            sqlx::query_as(
                "SELECT access_token, access_expires_at, refresh_token FROM accounts WHERE id = $1",
            )
            .bind(id.0)
            .fetch_optional(pool)
            .await
            .map_err(StoreError::db("read the account's tokens"))?
        });
        let (access, expires, refresh) = row.ok_or_else(|| StoreError::NotFound {
            what: "account",
            key: id.to_string(),
        })?;
        Ok(AccountTokens {
            access_token: access
                .map(|s| self.open("accounts", "access_token", id.0, &s))
                .transpose()?,
            access_expires_at: expires,
            refresh_token: refresh
                .map(|s| self.open("accounts", "refresh_token", id.0, &s))
                .transpose()?,
        })
    }

    /// Sets an account's state and last error (None clears it), nothing else: for tools and tests.
    /// The token service records its outcomes with the functions below.
    pub async fn set_account_state(
        &self,
        id: AccountId,
        state: AccountState,
        last_error: Option<&str>,
    ) -> Result<()> {
        let _change = self.token_change();
        let done = on_db!(self.db(), |pool| sqlx::query(
            "UPDATE accounts SET state = $1, last_error = $2, updated_at = $3 WHERE id = $4"
        )
        .bind(state.as_str())
        .bind(last_error)
        .bind(now_millis())
        .bind(id.0)
        .execute(pool)
        .await
        .map_err(StoreError::db("change the account's state"))?
        .rows_affected());
        if done == 0 {
            return Err(StoreError::NotFound {
                what: "account",
                key: id.to_string(),
            });
        }
        Ok(())
    }

    /// Deletes an account; its receivers stay, deactivated and detached, with `reason`.
    /// Returns how many receivers were deactivated.
    pub async fn delete_account(&self, id: AccountId, reason: &str) -> Result<u64> {
        let _change = self.token_change();
        let now = now_millis();
        let deactivated = on_db!(self.db(), |pool| {
            let mut tx = pool
                .begin_write()
                .await
                .map_err(StoreError::db("start a transaction"))?;
            let n = sqlx::query(
                "UPDATE receivers SET active = FALSE, paused_reason = $1, account_id = NULL, updated_at = $2 \
                 WHERE account_id = $3",
            )
            .bind(reason)
            .bind(now)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("deactivate the account's receivers"))?
            .rows_affected();
            let deleted = sqlx::query("DELETE FROM accounts WHERE id = $1")
                .bind(id.0)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("delete the account"))?
                .rows_affected();
            if deleted == 0 {
                return Err(StoreError::NotFound {
                    what: "account",
                    key: id.to_string(),
                });
            }
            tx.commit()
                .await
                .map_err(StoreError::db("commit the account removal"))?;
            n
        });
        Ok(deactivated)
    }
}

/// `state IN ($first, $first + 1, ...)`: the guard of a [`StateChange`], one parameter per state
/// it may leave from, to bind after the statement's other parameters ([`bind_from`]). `FALSE`
/// for a change that leaves from nowhere.
pub(crate) fn state_in(first: usize, change: &StateChange) -> String {
    if change.from.is_empty() {
        return "FALSE".to_owned();
    }
    let params: Vec<String> = (first..first + change.from.len())
        .map(|n| format!("${n}"))
        .collect();
    format!("state IN ({})", params.join(", "))
}

/// Binds the states of [`state_in`]'s guard, in order.
macro_rules! bind_from {
    ($query:expr, $change:expr) => {{
        let mut query = $query;
        for state in &$change.from {
            query = query.bind(state.as_str());
        }
        query
    }};
}
pub(crate) use bind_from;

impl Store {
    /// [`Store::record_refresh`] into `active` whatever the account's state: for tests and tools
    /// that plant tokens (the token service's writes are guarded).
    pub async fn store_refreshed(&self, id: AccountId, tokens: &TokenSet) -> Result<()> {
        let anywhere = StateChange {
            from: AccountState::ALL.to_vec(),
            to: AccountState::Active,
        };
        self.record_refresh(id, tokens, &anywhere).await.map(|_| ())
    }

    /// Stores a refreshed grant and the account's new state (`change`, computed by the token
    /// service's state machine) in one statement, clearing failures: the rotated refresh token
    /// (when the provider sent one; else the old one stays) is persisted together with the new
    /// access token, so a crash can never keep an access token whose refresh token was lost.
    ///
    /// Only an account still in one of `change.from` is written: `Ok(false)` when it moved on
    /// meanwhile (revoked, or marked for a new sign-in, while the refresh was under way); the
    /// tokens are then dropped, not stored.
    pub async fn record_refresh(
        &self,
        id: AccountId,
        tokens: &TokenSet,
        change: &StateChange,
    ) -> Result<bool> {
        let _change = self.token_change();
        let now = now_millis();
        let access = self.seal("accounts", "access_token", id.0, &tokens.access_token)?;
        let refresh = tokens
            .refresh_token
            .as_ref()
            .map(|t| self.seal("accounts", "refresh_token", id.0, t))
            .transpose()?;
        let sql = format!(
            "UPDATE accounts SET access_token = $1, access_expires_at = $2, \
             refresh_token = COALESCE($3, refresh_token), \
             refresh_issued_at = CASE WHEN $3 IS NULL THEN refresh_issued_at ELSE $4 END, \
             refresh_last_used_at = $4, last_refresh_at = $4, state = $6, failure_count = 0, \
             next_attempt_at = NULL, last_error = NULL, updated_at = $4 WHERE id = $5 AND {}",
            state_in(7, change)
        );
        let n = on_db!(self.db(), |pool| bind_from!(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(access)
                .bind(tokens.expires_at)
                .bind(refresh)
                .bind(now)
                .bind(id.0)
                .bind(change.to.as_str()),
            change
        )
        .execute(pool)
        .await
        .map_err(StoreError::db("store the refreshed tokens"))?
        .rows_affected());
        self.written_or_moved_on(id, n).await
    }

    /// `Ok(true)` when a guarded write changed the account's row, `Ok(false)` when the account
    /// exists but was not in a state the write leaves from, `NotFound` when it is gone.
    async fn written_or_moved_on(&self, id: AccountId, rows: u64) -> Result<bool> {
        if rows > 0 {
            return Ok(true);
        }
        self.account(id).await.map(|_| false)
    }

    /// Notes a transient refresh failure: the token is kept, the failure counted, the next
    /// attempt scheduled, the account put in `change.to` (computed by the token service's state
    /// machine). Returns the failure count, or `None` when the account was no longer in one of
    /// `change.from` (it moved on meanwhile; nothing was written).
    pub async fn record_transient_failure(
        &self,
        id: AccountId,
        change: &StateChange,
        error: &str,
        next_attempt_at: i64,
    ) -> Result<Option<i64>> {
        let _change = self.token_change();
        let sql = format!(
            "UPDATE accounts SET state = $5, failure_count = failure_count + 1, last_error = $1, \
             next_attempt_at = $2, updated_at = $3 WHERE id = $4 AND {} RETURNING failure_count",
            state_in(6, change)
        );
        let count: Option<i64> = on_db!(self.db(), |pool| {
            bind_from!(
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(error)
                    .bind(next_attempt_at)
                    .bind(now_millis())
                    .bind(id.0)
                    .bind(change.to.as_str()),
                change
            )
            .fetch_optional(pool)
            .await
            .map_err(StoreError::db("record the refresh failure"))?
        });
        if count.is_none() {
            self.account(id).await?;
        }
        Ok(count)
    }

    /// Records that an account lost its grant: puts it in `change.to` (computed by the token
    /// service's state machine: `needs_reauth`), drops its access token, notes `error` and pauses
    /// its active receivers with `reason`, in one transaction. Returns how many receivers were
    /// paused, or `None` if the account was not in one of `change.from` (already in that state,
    /// or revoked meanwhile: nothing was written, so callers notify once).
    pub async fn lose_grant(
        &self,
        id: AccountId,
        change: &StateChange,
        error: &str,
        reason: &str,
    ) -> Result<Option<u64>> {
        let _change = self.token_change();
        let now = now_millis();
        let sql = format!(
            "UPDATE accounts SET state = $4, access_token = NULL, access_expires_at = NULL, \
             last_error = $1, next_attempt_at = NULL, updated_at = $2 WHERE id = $3 AND {}",
            state_in(5, change)
        );
        Ok(on_db!(self.db(), |pool| {
            let mut tx = pool
                .begin_write()
                .await
                .map_err(StoreError::db("start a transaction"))?;
            let changed = bind_from!(
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(error)
                    .bind(now)
                    .bind(id.0)
                    .bind(change.to.as_str()),
                change
            )
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("mark the account"))?
            .rows_affected();
            if changed == 0 {
                None
            } else {
                let paused = sqlx::query(
                    "UPDATE receivers SET active = FALSE, paused_reason = $1, updated_at = $2 \
                     WHERE account_id = $3 AND active = TRUE",
                )
                .bind(reason)
                .bind(now)
                .bind(id.0)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("pause the account's receivers"))?
                .rows_affected();
                tx.commit()
                    .await
                    .map_err(StoreError::db("commit the account state"))?;
                Some(paused)
            }
        }))
    }

    /// Switches back on every receiver of the account that a rule switched off (any reason but
    /// `keep_off`, such as "the application is deactivated"); receivers a person switched off
    /// (no reason recorded) stay off.
    pub async fn resume_paused_receivers(&self, id: AccountId, keep_off: &str) -> Result<u64> {
        Ok(on_db!(self.db(), |pool| sqlx::query(
            "UPDATE receivers SET active = TRUE, paused_reason = NULL, updated_at = $1 \
             WHERE account_id = $2 AND active = FALSE AND paused_reason IS NOT NULL \
             AND paused_reason <> $3"
        )
        .bind(now_millis())
        .bind(id.0)
        .bind(keep_off)
        .execute(pool)
        .await
        .map_err(StoreError::db("resume the account's receivers"))?
        .rows_affected()))
    }

    /// Accounts in one of [`Store::REFRESHABLE_STATES`] whose tokens should be renewed now, where
    /// no back-off is pending:
    /// - the access token reaches its renewal slot. An access token issued at `I` that expires
    ///   at `E` is renewed once per period `P = E - I - margin_ms`, at the first moment after `I`
    ///   that falls on the account's own phase (an offset in `P` fixed by its id): accounts
    ///   authorized together are renewed over the whole period rather than in the same minute,
    ///   and stay apart, one renewal per period each, as before;
    /// - or it expires within `margin_ms` and half its lifetime is gone (tokens that live less
    ///   than a minute past the margin, and rows without an issue time);
    /// - or the refresh token has not been used since `warm_before` (keeps it from dying
    ///   unused). Keep-warm refreshes are spread the same way: a refresh token counts as due up
    ///   to `spread_ms` early, by an offset fixed per account.
    ///
    /// `now` is the caller's clock (the refresher passes the current time; tests walk it).
    pub async fn accounts_due(
        &self,
        now: i64,
        margin_ms: i64,
        warm_before: i64,
        spread_ms: i64,
    ) -> Result<Vec<(AccountId, AppId)>> {
        let rows: Vec<(i64, i64)> = on_db!(self.db(), |pool| {
            sqlx::query_as(
            "SELECT id, application_id FROM ( \
               SELECT id, application_id, access_expires_at, refresh_token, refresh_last_used_at, \
                      refresh_issued_at, last_refresh_at AS issued, \
                      access_expires_at - last_refresh_at - $5 AS period \
               FROM accounts WHERE state IN ($6, $7) \
               AND (next_attempt_at IS NULL OR next_attempt_at <= $1)) a \
             WHERE access_expires_at IS NULL \
               OR (period >= 60000 \
                   AND issued + 1 + ((((id * 40503) % period) - ((issued + 1) % period)) % period + period) % period <= $1) \
               OR (access_expires_at <= $2 \
                   AND (access_expires_at - $1) * 2 <= access_expires_at - COALESCE(issued, 0)) \
               OR (refresh_token IS NOT NULL \
                   AND COALESCE(refresh_last_used_at, refresh_issued_at, 0) - ((id * 2654435761) % $4) <= $3) \
             ORDER BY access_expires_at"
        )
        .bind(now)
        .bind(now + margin_ms)
        .bind(warm_before)
        .bind(spread_ms.max(1))
        .bind(margin_ms)
        .bind(Self::REFRESHABLE_STATES[0].as_str())
        .bind(Self::REFRESHABLE_STATES[1].as_str())
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("find accounts due for refresh"))?
        });
        Ok(rows
            .into_iter()
            .map(|(id, app)| (AccountId(id), AppId(app)))
            .collect())
    }
}
