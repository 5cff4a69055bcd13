//! Local admin users of the web UI, their sessions and the one-time setup link. Passwords arrive
//! here already hashed (argon2id, by the app core); sessions and setup links are stored as
//! SHA-256 hashes of 256-bit random tokens, so a copy of the database opens no session.

use crate::BeginWrite as _;
use oauthimap_types::now_millis;
use serde::Serialize;

use crate::{Result, Store, StoreError, on_db};

/// An admin user (never the password hash).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AdminUser {
    pub id: i64,
    pub username: String,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
}

/// An admin user with the stored password hash, for checking a login.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminCredentials {
    #[sqlx(flatten)]
    pub user: AdminUser,
    pub password_hash: String,
}

/// A live session and whose it is.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminSession {
    pub session_id: i64,
    pub user_id: i64,
    pub username: String,
    pub created_at: i64,
    pub expires_at: i64,
}

macro_rules! user_columns {
    () => {
        "id, username, created_at, last_login_at, failed_logins, locked_until"
    };
}

impl Store {
    pub async fn insert_admin(&self, username: &str, password_hash: &str) -> Result<AdminUser> {
        let sql = concat!(
            "INSERT INTO admin_users (username, password_hash, created_at) VALUES ($1, $2, $3) RETURNING ",
            user_columns!()
        );
        Ok(on_db!(self.db(), |pool| sqlx::query_as(sql)
            .bind(username)
            .bind(password_hash)
            .bind(now_millis())
            .fetch_one(pool)
            .await
            .map_err(StoreError::unique(
                "an admin user named",
                username,
                "create the admin user"
            ))?))
    }

    /// Takes an unused, unexpired setup link and creates the first admin with it, in one
    /// transaction; `Ok(None)` when the link is unknown, used, expired, or an admin exists.
    pub async fn create_admin_with_setup_link(
        &self,
        link_hash: &str,
        username: &str,
        password_hash: &str,
    ) -> Result<Option<AdminUser>> {
        let now = now_millis();
        let insert = concat!(
            "INSERT INTO admin_users (username, password_hash, created_at) VALUES ($1, $2, $3) RETURNING ",
            user_columns!()
        );
        on_db!(self.db(), |pool| {
            let mut tx = pool
                .begin_write()
                .await
                .map_err(StoreError::db("start a transaction"))?;
            let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM admin_users")
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::db("count the admin users"))?;
            let taken = sqlx::query(
                "UPDATE setup_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
            )
            .bind(now)
            .bind(link_hash)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("use the setup link"))?
            .rows_affected();
            if admins > 0 || taken == 0 {
                return Ok(None);
            }
            let user: AdminUser = sqlx::query_as(insert)
                .bind(username)
                .bind(password_hash)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::db("create the admin user"))?;
            tx.commit()
                .await
                .map_err(StoreError::db("create the admin user"))?;
            Ok(Some(user))
        })
    }

    pub async fn admin_credentials(&self, username: &str) -> Result<Option<AdminCredentials>> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            ", password_hash FROM admin_users WHERE username = $1"
        );
        Ok(on_db!(self.db(), |pool| sqlx::query_as(sql)
            .bind(username)
            .fetch_optional(pool)
            .await
            .map_err(StoreError::db("look up the admin user"))?))
    }

    pub async fn admins(&self) -> Result<Vec<AdminUser>> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM admin_users ORDER BY username"
        );
        Ok(on_db!(self.db(), |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("list the admin users"))?))
    }

    pub async fn admin_count(&self) -> Result<i64> {
        Ok(on_db!(self.db(), |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM admin_users"
        )
        .fetch_one(pool)
        .await
        .map_err(StoreError::db("count the admin users"))?))
    }

    /// Sets a new password hash and ends every session of the user, in one transaction.
    pub async fn set_admin_password(&self, username: &str, password_hash: &str) -> Result<()> {
        on_db!(self.db(), |pool| {
            let mut tx = pool
                .begin_write()
                .await
                .map_err(StoreError::db("start a transaction"))?;
            let id: Option<i64> = sqlx::query_scalar(
                "UPDATE admin_users SET password_hash = $1, failed_logins = 0, locked_until = NULL \
                 WHERE username = $2 RETURNING id",
            )
            .bind(password_hash)
            .bind(username)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db("change the password"))?;
            let Some(id) = id else {
                return Err(StoreError::NotFound {
                    what: "admin user",
                    key: username.to_owned(),
                });
            };
            sqlx::query("DELETE FROM admin_sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("end the user's sessions"))?;
            tx.commit()
                .await
                .map_err(StoreError::db("change the password"))?;
            Ok(())
        })
    }

    pub async fn delete_admin(&self, username: &str) -> Result<()> {
        let n = on_db!(self.db(), |pool| sqlx::query(
            "DELETE FROM admin_users WHERE username = $1"
        )
        .bind(username)
        .execute(pool)
        .await
        .map_err(StoreError::db("delete the admin user"))?
        .rows_affected());
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "admin user",
                key: username.to_owned(),
            });
        }
        Ok(())
    }

    /// Clears a user's failed logins and lock; false when no such user exists.
    pub async fn unlock_admin(&self, username: &str) -> Result<bool> {
        let n = on_db!(self.db(), |pool| {
            sqlx::query(
                "UPDATE admin_users SET failed_logins = 0, locked_until = NULL WHERE username = $1",
            )
            .bind(username)
            .execute(pool)
            .await
            .map_err(StoreError::db("unlock the admin user"))?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Counts a failed login; `locked_until` (epoch ms) refuses further attempts until then.
    pub async fn record_login_failure(
        &self,
        user_id: i64,
        locked_until: Option<i64>,
    ) -> Result<()> {
        on_db!(self.db(), |pool| {
            sqlx::query(
            "UPDATE admin_users SET failed_logins = failed_logins + 1, locked_until = $1 WHERE id = $2"
        )
        .bind(locked_until)
        .bind(user_id)
        .execute(pool)
        .await
        .map_err(StoreError::db("record the failed login"))?
        .rows_affected()
        });
        Ok(())
    }

    /// A successful login: clears the failure count and opens a session, in one transaction.
    pub async fn open_admin_session(
        &self,
        user_id: i64,
        token_hash: &str,
        expires_at: i64,
    ) -> Result<()> {
        let now = now_millis();
        on_db!(self.db(), |pool| {
            let mut tx = pool
                .begin_write()
                .await
                .map_err(StoreError::db("start a transaction"))?;
            sqlx::query(
                "UPDATE admin_users SET failed_logins = 0, locked_until = NULL, last_login_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("record the login"))?;
            sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("remove expired sessions"))?;
            sqlx::query(
                "INSERT INTO admin_sessions (token_hash, user_id, created_at, last_seen_at, expires_at) \
                 VALUES ($1, $2, $3, $3, $4)",
            )
            .bind(token_hash)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("open the session"))?;
            tx.commit()
                .await
                .map_err(StoreError::db("open the session"))?;
            Ok(())
        })
    }

    /// The session with this hash if it is neither past `expires_at` nor idle since
    /// `idle_since` (epoch ms); marks it seen now.
    pub async fn touch_admin_session(
        &self,
        token_hash: &str,
        idle_since: i64,
    ) -> Result<Option<AdminSession>> {
        let now = now_millis();
        let session: Option<AdminSession> = on_db!(self.db(), |pool| sqlx::query_as(
            "SELECT s.id AS session_id, s.user_id, u.username, s.created_at, s.expires_at \
             FROM admin_sessions s JOIN admin_users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3"
        )
        .bind(token_hash)
        .bind(now)
        .bind(idle_since)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("look up the session"))?);
        if let Some(s) = &session {
            on_db!(self.db(), |pool| sqlx::query(
                "UPDATE admin_sessions SET last_seen_at = $1 WHERE id = $2"
            )
            .bind(now)
            .bind(s.session_id)
            .execute(pool)
            .await
            .map_err(StoreError::db("mark the session seen"))?
            .rows_affected());
        }
        Ok(session)
    }

    pub async fn delete_admin_session(&self, token_hash: &str) -> Result<()> {
        on_db!(self.db(), |pool| sqlx::query(
            "DELETE FROM admin_sessions WHERE token_hash = $1"
        )
        .bind(token_hash)
        .execute(pool)
        .await
        .map_err(StoreError::db("end the session"))?
        .rows_affected());
        Ok(())
    }

    /// Stores a new setup link, replacing any unused one.
    pub async fn insert_setup_link(&self, token_hash: &str, expires_at: i64) -> Result<()> {
        let now = now_millis();
        on_db!(self.db(), |pool| {
            let mut tx = pool
                .begin_write()
                .await
                .map_err(StoreError::db("start a transaction"))?;
            sqlx::query("DELETE FROM setup_links WHERE used_at IS NULL")
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("replace the setup link"))?;
            sqlx::query(
                "INSERT INTO setup_links (token_hash, created_at, expires_at) VALUES ($1, $2, $3)",
            )
            .bind(token_hash)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("create the setup link"))?;
            tx.commit()
                .await
                .map_err(StoreError::db("create the setup link"))?;
            Ok(())
        })
    }

    /// Whether this setup link could still be used (unused, unexpired, no admin yet).
    pub async fn setup_link_usable(&self, token_hash: &str) -> Result<bool> {
        let n: i64 = on_db!(self.db(), |pool| {
            sqlx::query_scalar(
            "SELECT COUNT(*) FROM setup_links WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
             AND NOT EXISTS (SELECT 1 FROM admin_users)"
        )
        .bind(token_hash)
        .bind(now_millis())
        .fetch_one(pool)
        .await
        .map_err(StoreError::db("check the setup link"))?
        });
        Ok(n > 0)
    }
}
