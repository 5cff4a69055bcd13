//! OAuth applications: create, read, update with cascades, delete, and the sealed client secret.

use crate::BeginWrite as _;
use oauthimap_types::{AccountState, AppId, GrantKind, now_millis};
use secrecy::SecretString;

use crate::accounts::{bind_from, state_in};
use crate::models::{
    Application, ApplicationCascade, ApplicationFields, CascadeReport, Endpoints, SecretChange,
};
use crate::{Result, Store, StoreError, on_db, parse_name};

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    name: String,
    active: bool,
    provider: String,
    cloud: String,
    client_id: String,
    has_secret: bool,
    tenant: Option<String>,
    endpoint_base: Option<String>,
    authorize_url: Option<String>,
    token_url: Option<String>,
    device_url: Option<String>,
    userinfo_url: Option<String>,
    scopes: Option<String>,
    secret_expires_at: Option<i64>,
    comment: String,
    account_count: i64,
    receiver_count: i64,
    created_at: i64,
    updated_at: i64,
}

const SELECT: &str = "SELECT a.id, a.name, a.active, a.provider, a.cloud, a.client_id, \
     (a.client_secret IS NOT NULL) AS has_secret, a.tenant, a.endpoint_base, a.authorize_url, \
     a.token_url, a.device_url, a.userinfo_url, a.scopes, a.secret_expires_at, a.comment, \
     (SELECT COUNT(*) FROM accounts c WHERE c.application_id = a.id) AS account_count, \
     (SELECT COUNT(*) FROM receivers r WHERE r.application_id = a.id) AS receiver_count, \
     a.created_at, a.updated_at FROM applications a";

/// Binds the fields of an application as parameters $1 to $14, in column order.
macro_rules! bind_fields {
    ($query:expr, $f:expr) => {
        $query
            .bind(&$f.name)
            .bind($f.active)
            .bind($f.provider.as_str())
            .bind($f.cloud.as_str())
            .bind(&$f.client_id)
            .bind(&$f.tenant)
            .bind(&$f.endpoints.base)
            .bind(&$f.endpoints.authorize)
            .bind(&$f.endpoints.token)
            .bind(&$f.endpoints.device)
            .bind(&$f.endpoints.userinfo)
            .bind(&$f.scopes)
            .bind($f.secret_expires_at)
            .bind(&$f.comment)
    };
}

impl TryFrom<Row> for Application {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self> {
        Ok(Application {
            id: AppId(r.id),
            fields: ApplicationFields {
                name: r.name,
                active: r.active,
                provider: parse_name(&r.provider, "applications.provider")?,
                cloud: parse_name(&r.cloud, "applications.cloud")?,
                client_id: r.client_id,
                tenant: r.tenant,
                endpoints: Endpoints {
                    base: r.endpoint_base,
                    authorize: r.authorize_url,
                    token: r.token_url,
                    device: r.device_url,
                    userinfo: r.userinfo_url,
                },
                scopes: r.scopes,
                secret_expires_at: r.secret_expires_at,
                comment: r.comment,
            },
            has_client_secret: r.has_secret,
            account_count: r.account_count,
            receiver_count: r.receiver_count,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

impl Store {
    /// Creates an application; its secret is sealed to the new row in the same transaction.
    pub async fn insert_application(
        &self,
        f: &ApplicationFields,
        secret: Option<&SecretString>,
    ) -> Result<Application> {
        Ok(self.import_application(f, secret, &[]).await?.0)
    }

    /// One application by id.
    pub async fn application(&self, id: AppId) -> Result<Application> {
        let row: Option<Row> = on_db!(self.db(), |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("{SELECT} WHERE a.id = $1")
        ))
        .bind(id.0)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("read the application"))?);
        row.ok_or_else(|| StoreError::NotFound {
            what: "application",
            key: id.to_string(),
        })?
        .try_into()
    }

    /// One application by its unique name.
    pub async fn application_by_name(&self, name: &str) -> Result<Application> {
        let row: Option<Row> = on_db!(self.db(), |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("{SELECT} WHERE a.name = $1")
        ))
        .bind(name)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("read the application"))?);
        row.ok_or_else(|| StoreError::NotFound {
            what: "application",
            key: name.to_owned(),
        })?
        .try_into()
    }

    /// Every application, by name.
    pub async fn applications(&self) -> Result<Vec<Application>> {
        let rows: Vec<Row> = on_db!(self.db(), |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("{SELECT} ORDER BY a.name")
        ))
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("list the applications"))?);
        rows.into_iter().map(Application::try_from).collect()
    }

    /// The application's client secret, opened. Only the OAuth client should need this.
    pub async fn application_secret(&self, id: AppId) -> Result<Option<SecretString>> {
        let sealed: Option<Option<Vec<u8>>> = on_db!(self.db(), |pool| sqlx::query_scalar(
            "SELECT client_secret FROM applications WHERE id = $1"
        )
        .bind(id.0)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("read the client secret"))?);
        match sealed {
            None => Err(StoreError::NotFound {
                what: "application",
                key: id.to_string(),
            }),
            Some(None) => Ok(None),
            Some(Some(sealed)) => self
                .open("applications", "client_secret", id.0, &sealed)
                .map(Some),
        }
    }

    /// Writes the application's new fields and applies `cascade` in the same transaction.
    pub async fn update_application(
        &self,
        id: AppId,
        f: &ApplicationFields,
        secret: &SecretChange,
        cascade: &ApplicationCascade,
    ) -> Result<(Application, CascadeReport)> {
        let _change = self.token_change();
        let now = now_millis();
        let sealed = match secret {
            SecretChange::Set(value) => {
                Some(self.seal("applications", "client_secret", id.0, value)?)
            }
            SecretChange::Keep | SecretChange::Clear => None,
        };
        let mut report = CascadeReport::default();
        on_db!(self.db(), |pool| {
            let mut tx = pool
                .begin_write()
                .await
                .map_err(StoreError::db("start a transaction"))?;
            let updated = bind_fields!(sqlx::query(
                "UPDATE applications SET name = $1, active = $2, provider = $3, cloud = $4, \
                 client_id = $5, tenant = $6, endpoint_base = $7, authorize_url = $8, token_url = $9, \
                 device_url = $10, userinfo_url = $11, scopes = $12, secret_expires_at = $13, \
                 comment = $14, updated_at = $15 WHERE id = $16",
            ), f)
            .bind(now)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::unique("an application named", &f.name, "update the application"))?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::NotFound {
                    what: "application",
                    key: id.to_string(),
                });
            }
            match secret {
                SecretChange::Keep => {}
                SecretChange::Set(_) | SecretChange::Clear => {
                    sqlx::query("UPDATE applications SET client_secret = $1 WHERE id = $2")
                        .bind(&sealed)
                        .bind(id.0)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::db("store the client secret"))?;
                }
            }
            if let Some(revocation) = &cascade.revoke_accounts {
                let change = &revocation.change;
                let sql = format!(
                    "UPDATE accounts SET state = $4, access_token = NULL, access_expires_at = NULL, \
                     refresh_token = NULL, refresh_issued_at = NULL, last_error = $1, updated_at = $2 \
                     WHERE application_id = $3 AND {}",
                    state_in(5, change)
                );
                report.accounts_revoked = bind_from!(
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&revocation.reason)
                        .bind(now)
                        .bind(id.0)
                        .bind(change.to.as_str()),
                    change
                )
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("revoke the application's accounts"))?
                .rows_affected();
            }
            if let Some(reason) = &cascade.deactivate_receivers {
                report.receivers_deactivated = sqlx::query(
                    "UPDATE receivers SET active = FALSE, paused_reason = $1, updated_at = $2 \
                     WHERE application_id = $3 AND active = TRUE",
                )
                .bind(reason)
                .bind(now)
                .bind(id.0)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("deactivate the application's receivers"))?
                .rows_affected();
            }
            if let Some(reason) = &cascade.reactivate_paused_for {
                report.receivers_reactivated = sqlx::query(
                    "UPDATE receivers SET active = TRUE, paused_reason = NULL, updated_at = $1 \
                     WHERE application_id = $2 AND active = FALSE AND paused_reason = $3 AND account_id IS NOT NULL",
                )
                .bind(now)
                .bind(id.0)
                .bind(reason)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("re-activate the application's receivers"))?
                .rows_affected();
            }
            tx.commit()
                .await
                .map_err(StoreError::db("commit the application update"))?;
        });
        Ok((self.application(id).await?, report))
    }

    /// Deletes an application with its accounts and receivers (the database cascades).
    pub async fn delete_application(&self, id: AppId) -> Result<()> {
        let _change = self.token_change();
        let deleted = on_db!(self.db(), |pool| sqlx::query(
            "DELETE FROM applications WHERE id = $1"
        )
        .bind(id.0)
        .execute(pool)
        .await
        .map_err(StoreError::db("delete the application"))?
        .rows_affected());
        if deleted == 0 {
            return Err(StoreError::NotFound {
                what: "application",
                key: id.to_string(),
            });
        }
        Ok(())
    }
}

/// An account to create with an imported application (from GLPI's OAuth IMAP plugin).
#[derive(Debug, Clone)]
pub struct ImportedAccount {
    pub mailbox: String,
    /// The state it starts in: the token service's state machine gives it (a new account is in
    /// the state a sign-in leaves it in).
    pub state: AccountState,
    pub refresh_token: SecretString,
    /// The access token and its expiry, when it is still valid.
    pub access: Option<(SecretString, i64)>,
}

impl Store {
    /// Creates an application with its secret and its accounts (signed-in user grants with
    /// their tokens, as imported from GLPI's plugin; none for a new application) in one
    /// transaction: all of them, or none. Returns the application and the
    /// accounts' ids in the order given.
    pub async fn import_application(
        &self,
        f: &ApplicationFields,
        secret: Option<&SecretString>,
        accounts: &[ImportedAccount],
    ) -> Result<(Application, Vec<oauthimap_types::AccountId>)> {
        let _change = self.token_change();
        let now = now_millis();
        let (id, account_ids): (i64, Vec<i64>) = on_db!(self.db(), |pool| {
            let mut tx = pool
                .begin_write()
                .await
                .map_err(StoreError::db("start a transaction"))?;
            let id: i64 = bind_fields!(sqlx::query_scalar(
                "INSERT INTO applications (name, active, provider, cloud, client_id, tenant, \
                 endpoint_base, authorize_url, token_url, device_url, userinfo_url, scopes, \
                 secret_expires_at, comment, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) RETURNING id",
            ), f)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::unique("an application named", &f.name, "create the application"))?;
            if let Some(secret) = secret {
                sqlx::query("UPDATE applications SET client_secret = $1 WHERE id = $2")
                    .bind(self.seal("applications", "client_secret", id, secret)?)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db("store the client secret"))?;
            }
            let mut account_ids = Vec::with_capacity(accounts.len());
            for a in accounts {
                let account: i64 = sqlx::query_scalar(
                    "INSERT INTO accounts (application_id, identity, mailbox, grant_kind, state, created_at, updated_at) \
                     VALUES ($1, $2, $3, $5, $6, $4, $4) RETURNING id",
                )
                .bind(id)
                .bind(a.mailbox.to_lowercase())
                .bind(&a.mailbox)
                .bind(now)
                .bind(GrantKind::AuthorizationCode.as_str())
                .bind(a.state.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::unique("an account for", &a.mailbox, "import the account"))?;
                let refresh = self.seal("accounts", "refresh_token", account, &a.refresh_token)?;
                let access = a
                    .access
                    .as_ref()
                    .map(|(t, _)| self.seal("accounts", "access_token", account, t))
                    .transpose()?;
                sqlx::query(
                    "UPDATE accounts SET access_token = $1, access_expires_at = $2, refresh_token = $3, \
                     refresh_issued_at = $4, scopes = '', updated_at = $4 WHERE id = $5",
                )
                .bind(access)
                .bind(a.access.as_ref().map(|(_, at)| *at))
                .bind(refresh)
                .bind(now)
                .bind(account)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("store the account's tokens"))?;
                account_ids.push(account);
            }
            tx.commit()
                .await
                .map_err(StoreError::db("commit the imported application"))?;
            (id, account_ids)
        });
        Ok((
            self.application(AppId(id)).await?,
            account_ids
                .into_iter()
                .map(oauthimap_types::AccountId)
                .collect(),
        ))
    }
}
