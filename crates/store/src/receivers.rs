//! Receivers (mail collectors): where to connect, as which account, and where mail goes.

use crate::BeginWrite as _;
use oauthimap_types::{AccountId, AppId, ReceiverId, ReceiverState, now_millis};
use secrecy::SecretString;

use crate::models::{Receiver, ReceiverFields, SecretChange};
use crate::status::ReceiverStatus;
use crate::{Result, Store, StoreError, on_db, parse_name};

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    name: String,
    active: bool,
    paused_reason: Option<String>,
    application_id: i64,
    application_name: String,
    account_id: Option<i64>,
    account_mailbox: Option<String>,
    host: String,
    port: i64,
    security: String,
    mechanism: String,
    folder: String,
    trigger_kind: String,
    poll_interval_secs: i64,
    after_delivery: String,
    accepted_folder: Option<String>,
    refused_folder: Option<String>,
    size_limit_bytes: i64,
    sink_kind: String,
    sink_target: Option<String>,
    has_sink_secret: bool,
    ca_file: Option<String>,
    created_at: i64,
    updated_at: i64,
    status_state: Option<String>,
    status_since: Option<i64>,
    status_detail: Option<String>,
    status_next_at: Option<i64>,
    status_instance: Option<String>,
    status_alerted_at: Option<i64>,
    status_updated_at: Option<i64>,
}

const SELECT: &str = "SELECT r.id, r.name, r.active, r.paused_reason, r.application_id, \
     a.name AS application_name, r.account_id, c.mailbox AS account_mailbox, r.host, r.port, \
     r.security, r.mechanism, r.folder, r.trigger_kind, r.poll_interval_secs, r.after_delivery, \
     r.accepted_folder, r.refused_folder, r.size_limit_bytes, r.sink_kind, r.sink_target, \
     (r.sink_secret IS NOT NULL) AS has_sink_secret, r.ca_file, r.created_at, r.updated_at, \
     s.state AS status_state, s.since AS status_since, s.detail AS status_detail, \
     s.next_at AS status_next_at, s.instance AS status_instance, s.alerted_at AS status_alerted_at, \
     s.updated_at AS status_updated_at \
     FROM receivers r JOIN applications a ON a.id = r.application_id \
     LEFT JOIN accounts c ON c.id = r.account_id \
     LEFT JOIN receiver_status s ON s.receiver_id = r.id";

/// Binds the fields of a receiver as parameters $1 to $18, in column order.
macro_rules! bind_fields {
    ($query:expr, $f:expr) => {
        $query
            .bind(&$f.name)
            .bind($f.active)
            .bind($f.application_id.0)
            .bind($f.account_id.map(|a| a.0))
            .bind(&$f.host)
            .bind(i64::from($f.port))
            .bind($f.security.as_str())
            .bind($f.mechanism.as_str())
            .bind(&$f.folder)
            .bind($f.trigger.as_str())
            .bind(i64::from($f.poll_interval_secs))
            .bind($f.after_delivery.as_str())
            .bind(&$f.accepted_folder)
            .bind(&$f.refused_folder)
            .bind($f.size_limit_bytes as i64)
            .bind($f.sink.as_str())
            .bind(&$f.sink_target)
            .bind(&$f.ca_file)
    };
}

impl TryFrom<Row> for Receiver {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self> {
        let corrupt =
            |c: &str| StoreError::Corrupt(format!("receivers.{c} of row {} is out of range", r.id));
        let status = match (&r.status_state, r.status_since, r.status_updated_at) {
            (Some(state), Some(since), Some(updated_at)) => Some(ReceiverStatus {
                state: parse_name(state, "receiver_status.state")?,
                since,
                detail: r.status_detail.clone(),
                next_at: r.status_next_at,
                instance: r.status_instance.clone(),
                alerted_at: r.status_alerted_at,
                updated_at,
            }),
            _ => None,
        };
        let state = match &status {
            _ if !r.active && r.paused_reason.is_some() => ReceiverState::Paused,
            _ if !r.active => ReceiverState::Off,
            Some(s) => s.state,
            None => ReceiverState::NotRunning,
        };
        Ok(Receiver {
            state,
            status,
            id: ReceiverId(r.id),
            fields: ReceiverFields {
                name: r.name.clone(),
                active: r.active,
                application_id: AppId(r.application_id),
                account_id: r.account_id.map(AccountId),
                host: r.host.clone(),
                port: u16::try_from(r.port).map_err(|_| corrupt("port"))?,
                security: parse_name(&r.security, "receivers.security")?,
                mechanism: parse_name(&r.mechanism, "receivers.mechanism")?,
                folder: r.folder.clone(),
                trigger: parse_name(&r.trigger_kind, "receivers.trigger_kind")?,
                poll_interval_secs: u32::try_from(r.poll_interval_secs)
                    .map_err(|_| corrupt("poll_interval_secs"))?,
                after_delivery: parse_name(&r.after_delivery, "receivers.after_delivery")?,
                accepted_folder: r.accepted_folder.clone(),
                refused_folder: r.refused_folder.clone(),
                size_limit_bytes: u64::try_from(r.size_limit_bytes)
                    .map_err(|_| corrupt("size_limit_bytes"))?,
                sink: parse_name(&r.sink_kind, "receivers.sink_kind")?,
                sink_target: r.sink_target.clone(),
                ca_file: r.ca_file.clone(),
            },
            paused_reason: r.paused_reason,
            has_sink_secret: r.has_sink_secret,
            application_name: r.application_name,
            account_mailbox: r.account_mailbox,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

impl Store {
    /// Creates a receiver; a sink secret (webhook signing key) is sealed to the new row.
    pub async fn insert_receiver(
        &self,
        f: &ReceiverFields,
        sink_secret: Option<&SecretString>,
    ) -> Result<Receiver> {
        let now = now_millis();
        let id: i64 = on_db!(self.db(), |pool| {
            let mut tx = pool
                .begin_write()
                .await
                .map_err(StoreError::db("start a transaction"))?;
            let id: i64 = bind_fields!(sqlx::query_scalar(
                "INSERT INTO receivers (name, active, application_id, account_id, host, port, security, \
                 mechanism, folder, trigger_kind, poll_interval_secs, after_delivery, accepted_folder, \
                 refused_folder, size_limit_bytes, sink_kind, sink_target, ca_file, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $19) \
                 RETURNING id",
            ), f)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::unique("a receiver named", &f.name, "create the receiver"))?;
            if let Some(secret) = sink_secret {
                sqlx::query("UPDATE receivers SET sink_secret = $1 WHERE id = $2")
                    .bind(self.seal("receivers", "sink_secret", id, secret)?)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db("store the sink secret"))?;
            }
            tx.commit()
                .await
                .map_err(StoreError::db("commit the new receiver"))?;
            id
        });
        self.receiver(ReceiverId(id)).await
    }

    /// Rewrites a receiver. Re-activating clears the paused reason.
    pub async fn update_receiver(
        &self,
        id: ReceiverId,
        f: &ReceiverFields,
        sink_secret: &SecretChange,
    ) -> Result<Receiver> {
        let now = now_millis();
        let sealed = match sink_secret {
            SecretChange::Set(s) => Some(self.seal("receivers", "sink_secret", id.0, s)?),
            SecretChange::Keep | SecretChange::Clear => None,
        };
        on_db!(self.db(), |pool| {
            let mut tx = pool
                .begin_write()
                .await
                .map_err(StoreError::db("start a transaction"))?;
            let n = bind_fields!(sqlx::query(
                "UPDATE receivers SET name = $1, active = $2, application_id = $3, account_id = $4, host = $5, \
                 port = $6, security = $7, mechanism = $8, folder = $9, trigger_kind = $10, \
                 poll_interval_secs = $11, after_delivery = $12, accepted_folder = $13, refused_folder = $14, \
                 size_limit_bytes = $15, sink_kind = $16, sink_target = $17, ca_file = $18, updated_at = $19, \
                 paused_reason = CASE WHEN $2 THEN NULL ELSE paused_reason END WHERE id = $20",
            ), f)
            .bind(now)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::unique("a receiver named", &f.name, "update the receiver"))?
            .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "receiver",
                    key: id.to_string(),
                });
            }
            if !matches!(sink_secret, SecretChange::Keep) {
                sqlx::query("UPDATE receivers SET sink_secret = $1 WHERE id = $2")
                    .bind(&sealed)
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db("store the sink secret"))?;
            }
            tx.commit()
                .await
                .map_err(StoreError::db("commit the receiver update"))?;
        });
        self.receiver(id).await
    }

    /// One receiver by id.
    pub async fn receiver(&self, id: ReceiverId) -> Result<Receiver> {
        let row: Option<Row> = on_db!(self.db(), |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("{SELECT} WHERE r.id = $1")
        ))
        .bind(id.0)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("read the receiver"))?);
        row.ok_or_else(|| StoreError::NotFound {
            what: "receiver",
            key: id.to_string(),
        })?
        .try_into()
    }

    /// One receiver by its unique name.
    pub async fn receiver_by_name(&self, name: &str) -> Result<Receiver> {
        let row: Option<Row> = on_db!(self.db(), |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("{SELECT} WHERE r.name = $1")
        ))
        .bind(name)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("read the receiver"))?);
        row.ok_or_else(|| StoreError::NotFound {
            what: "receiver",
            key: name.to_owned(),
        })?
        .try_into()
    }

    /// Every receiver, by name.
    pub async fn receivers(&self) -> Result<Vec<Receiver>> {
        let rows: Vec<Row> = on_db!(self.db(), |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("{SELECT} ORDER BY r.name")
        ))
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("list the receivers"))?);
        rows.into_iter().map(Receiver::try_from).collect()
    }

    /// The receiver's sink secret, opened.
    pub async fn receiver_sink_secret(&self, id: ReceiverId) -> Result<Option<SecretString>> {
        let sealed: Option<Option<Vec<u8>>> = on_db!(self.db(), |pool| sqlx::query_scalar(
            "SELECT sink_secret FROM receivers WHERE id = $1"
        )
        .bind(id.0)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::db("read the sink secret"))?);
        match sealed {
            None => Err(StoreError::NotFound {
                what: "receiver",
                key: id.to_string(),
            }),
            Some(None) => Ok(None),
            Some(Some(s)) => self.open("receivers", "sink_secret", id.0, &s).map(Some),
        }
    }

    /// Switches a receiver off with a reason shown to the admin.
    pub async fn pause_receiver(&self, id: ReceiverId, reason: &str) -> Result<()> {
        on_db!(self.db(), |pool| {
            sqlx::query("UPDATE receivers SET active = FALSE, paused_reason = $1, updated_at = $2 WHERE id = $3")
                .bind(reason)
                .bind(now_millis())
                .bind(id.0)
                .execute(pool)
                .await
                .map_err(StoreError::db("pause the receiver"))?;
        });
        Ok(())
    }

    pub async fn delete_receiver(&self, id: ReceiverId) -> Result<()> {
        let n = on_db!(self.db(), |pool| sqlx::query(
            "DELETE FROM receivers WHERE id = $1"
        )
        .bind(id.0)
        .execute(pool)
        .await
        .map_err(StoreError::db("delete the receiver"))?
        .rows_affected());
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "receiver",
                key: id.to_string(),
            });
        }
        Ok(())
    }
}
