//! Master key rotation while the service runs: a new primary key is added to the key file, every
//! sealed value is re-sealed under it in restartable batches, and the old keys are dropped once
//! nothing uses them. Running services notice the new key file within a second.

use std::collections::BTreeMap;
use std::time::Duration;

use oauthimap_store::{Level, NewEvent};
use serde::Serialize;

use crate::{Core, Result};

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct KeyRotation {
    pub new_key_id: u32,
    pub resealed: u64,
    pub retired_key_ids: Vec<u32>,
}

/// Which keys exist and how many sealed values each protects.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    pub source: String,
    pub primary_key_id: u32,
    pub key_ids: Vec<u32>,
    pub values_by_key: BTreeMap<u32, u64>,
}

/// Re-seal passes before giving up on values that other writers keep sealing with an old key.
const MAX_PASSES: usize = 10;

impl Core {
    pub async fn key_status(&self) -> Result<KeyStatus> {
        let keys = self.store().keys();
        Ok(KeyStatus {
            source: keys.source_desc(),
            primary_key_id: keys.primary_id(),
            key_ids: keys.key_ids(),
            values_by_key: self.store().key_usage().await?.by_key,
        })
    }

    /// Re-seals every value under the primary key, pass after pass until none is left under an
    /// older key (another instance may still seal with the old key for up to a second).
    pub async fn reseal(&self) -> Result<u64> {
        let primary = self.store().keys().primary_id();
        let mut total = 0;
        for pass in 0..MAX_PASSES {
            total += self.store().reseal_all().await?.resealed;
            let usage = self.store().key_usage().await?;
            if usage.by_key.keys().all(|id| *id == primary) {
                return Ok(total);
            }
            tracing::info!(
                pass,
                "values sealed with an old key appeared meanwhile; another pass"
            );
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        Ok(total)
    }

    /// Adds a new key, re-seals everything under it and retires the old keys when unused.
    pub async fn rotate_keys(&self) -> Result<KeyRotation> {
        let keys = self.store().keys().clone();
        let new_key_id = keys.rotate()?;
        // Give running instances time to notice the new file before we count stragglers.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let resealed = self.reseal().await?;
        let usage = self.store().key_usage().await?;
        let retired_key_ids = if usage.by_key.keys().all(|id| *id == new_key_id) {
            keys.retire_old_keys()?
        } else {
            Vec::new()
        };
        self.store()
            .record_event(&NewEvent {
                level: Level::Info,
                kind: "keys.rotated",
                application_id: None,
                account_id: None,
                receiver_id: None,
                message: format!(
                    "master key {new_key_id} added; {resealed} value(s) re-sealed; retired keys {retired_key_ids:?}"
                ),
            })
            .await?;
        Ok(KeyRotation {
            new_key_id,
            resealed,
            retired_key_ids,
        })
    }
}
