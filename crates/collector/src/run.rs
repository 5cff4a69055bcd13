//! Running receivers: one pass on demand (`collect --once`), one receiver kept going (IDLE or
//! polling, reconnects with back-off), and the supervisor that runs every active receiver.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oauthimap_imap::{IdleOutcome, MailSession as _, Session, SessionConfig, connect_and_login};
use oauthimap_sinks::{Sink, SinkConfig};
use oauthimap_store::{Level, NewEvent, Receiver, Store};
use oauthimap_tokens::TokenService;
use oauthimap_types::{FailureKind, ReceiverId, Trigger, now_millis};

use crate::CollectError;
use crate::pass::{Pass, PassSummary, ProgressEvent};

/// IDLE is re-issued before the 29 minutes RFC 2177 allows.
const IDLE_SLICE: Duration = Duration::from_mins(20);
/// A session is renewed when the access token has less than this left (Exchange ends sessions
/// whose token expired).
const TOKEN_RENEW_BEFORE: i64 = 5 * 60 * 1000;
const MAX_BACKOFF: Duration = Duration::from_mins(5);
const LEASE_TTL_MS: i64 = 120_000;

/// Runs receivers.
#[derive(Debug, Clone)]
pub struct Collector {
    store: Store,
    tokens: Arc<TokenService>,
    http: reqwest::Client,
    data_dir: PathBuf,
    instance: String,
    /// Wakes the supervisor early: a receiver was added or changed.
    changed: Arc<tokio::sync::Notify>,
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

impl Collector {
    pub fn new(
        store: Store,
        tokens: Arc<TokenService>,
        http: reqwest::Client,
        data_dir: PathBuf,
    ) -> Self {
        Self {
            store,
            tokens,
            http,
            data_dir,
            instance: format!(
                "collector-{}-{:08x}",
                std::process::id(),
                random_u64() & 0xffff_ffff
            ),
            changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Tells the supervisor that receivers changed, so new ones start now rather than at its
    /// next periodic look.
    pub fn wake(&self) {
        self.changed.notify_one();
    }

    async fn sink(&self, r: &Receiver) -> Result<Sink, CollectError> {
        let secret = self.store.receiver_sink_secret(r.id).await?;
        Ok(SinkConfig {
            kind: r.fields.sink,
            target: r.fields.sink_target.clone(),
            secret,
            data_dir: self.data_dir.clone(),
            timeout: Duration::from_mins(1),
        }
        .build(self.store.clone(), self.http.clone())?)
    }

    async fn connect(
        &self,
        r: &Receiver,
    ) -> Result<(Session, oauthimap_types::AccountId), CollectError> {
        let account = r.fields.account_id.ok_or_else(|| {
            CollectError::Receiver(r.fields.name.clone(), "has no account".into())
        })?;
        let mailbox = r.account_mailbox.clone().ok_or_else(|| {
            CollectError::Receiver(r.fields.name.clone(), "has no account".into())
        })?;
        let mut config =
            SessionConfig::new(&r.fields.host, r.fields.port, r.fields.security, &mailbox);
        config.mechanism = r.fields.mechanism;
        config.extra_ca_pem = r.fields.ca_file.clone().map(Into::into);
        config.max_message_bytes =
            usize::try_from(r.fields.size_limit_bytes.saturating_add(1024 * 1024))
                .unwrap_or(usize::MAX);
        Ok((
            connect_and_login(&config, &self.tokens.source(account)).await?,
            account,
        ))
    }

    /// One pass for a receiver: connect, select, collect everything new, log out.
    pub async fn collect_once(
        &self,
        receiver: ReceiverId,
        progress: &(dyn Fn(ProgressEvent) + Send + Sync),
    ) -> Result<PassSummary, CollectError> {
        let r = self.store.receiver(receiver).await?;
        let sink = self.sink(&r).await?;
        let (mut session, _) = self.connect(&r).await?;
        let mailbox = session.select(&r.fields.folder).await?;
        let folders = Mutex::new(HashSet::new());
        let pass = Pass {
            store: &self.store,
            sink: &sink,
            receiver: &r,
            progress,
            folders: &folders,
        };
        let summary = pass.run(&mut session, mailbox.uid_validity).await;
        let _ = session.logout().await;
        let summary = summary?;
        self.record_pass(&r, &summary).await;
        Ok(summary)
    }

    async fn record_pass(&self, r: &Receiver, s: &PassSummary) {
        let name = r.fields.name.clone();
        metrics::counter!("oauthimap_collections_total", "receiver" => name.clone()).increment(1);
        for (outcome, n) in [
            ("delivered", s.delivered),
            ("refused", s.refused),
            ("failed", s.failed),
            ("already_seen", s.already_seen),
        ] {
            if n > 0 {
                metrics::counter!("oauthimap_messages_total", "receiver" => name.clone(), "outcome" => outcome).increment(n);
            }
        }
        if s.stopped.is_some() {
            metrics::counter!("oauthimap_delivery_failures_total", "receiver" => name).increment(1);
        }
        if s.delivered + s.refused + s.failed == 0 && s.stopped.is_none() {
            return;
        }
        let (level, kind) = if s.stopped.is_some() {
            (Level::Error, "receiver.stalled")
        } else {
            (Level::Info, "receiver.collected")
        };
        let mut message = format!(
            "{}: {} delivered, {} refused, {} failed, {} already seen",
            r.fields.name, s.delivered, s.refused, s.failed, s.already_seen
        );
        if let Some(why) = &s.stopped {
            message = format!("{message}; stopped: {why}");
        }
        let _ = self
            .store
            .record_event(&NewEvent {
                level,
                kind,
                application_id: Some(r.fields.application_id),
                account_id: r.fields.account_id,
                receiver_id: Some(r.id),
                message,
            })
            .await;
    }

    /// Keeps one receiver collecting until `stop` turns true or the receiver is switched off.
    pub async fn run_receiver(
        &self,
        receiver: ReceiverId,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut failures: u32 = 0;
        let lease = format!("receiver:{}", receiver.0);
        while !*stop.borrow() {
            match self
                .store
                .try_lease(&lease, &self.instance, LEASE_TTL_MS)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    // Another instance collects this folder.
                    if sleep_or_stop(&mut stop, Duration::from_secs(30)).await {
                        break;
                    }
                    continue;
                }
                Err(e) => tracing::warn!(error = %e, "cannot take the receiver lease"),
            }
            let r = match self.store.receiver(receiver).await {
                Ok(r) if r.fields.active => r,
                _ => break,
            };
            match self.session_loop(&r, &lease, &mut stop).await {
                Ok(()) => failures = 0,
                Err(CollectError::Imap(e)) if e.needs_reauthentication() => {
                    // Exchange ends sessions whose token expired (`* BYE ... AccessTokenExpired`):
                    // log in again with a fresh token at once; this is not a failure.
                    tracing::info!(receiver = %r.fields.name, "session ended for an expired token; logging in again");
                }
                Err(e) => {
                    failures += 1;
                    let wait = Duration::from_secs(5)
                        .saturating_mul(2u32.saturating_pow(failures.min(6)))
                        .min(MAX_BACKOFF);
                    tracing::warn!(receiver = %r.fields.name, error = %e, retry_in_s = wait.as_secs(), "collection failed; reconnecting later");
                    if failures == 1 || e.kind() == FailureKind::Permanent {
                        let _ = self
                            .store
                            .record_event(&NewEvent {
                                level: Level::Warn,
                                kind: "receiver.error",
                                application_id: Some(r.fields.application_id),
                                account_id: r.fields.account_id,
                                receiver_id: Some(r.id),
                                message: format!("{}: {e}", r.fields.name),
                            })
                            .await;
                    }
                    if sleep_or_stop(&mut stop, wait).await {
                        break;
                    }
                }
            }
        }
        let _ = self.store.release_lease(&lease, &self.instance).await;
    }

    /// One connection: passes, then IDLE (or a poll wait) until something arrives, the token
    /// nears expiry (then a fresh session), or `stop`.
    async fn session_loop(
        &self,
        r: &Receiver,
        lease: &str,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), CollectError> {
        let sink = self.sink(r).await?;
        let (mut session, account) = self.connect(r).await?;
        let folders = Mutex::new(HashSet::new());
        let idle = r.fields.trigger == Trigger::Idle
            && session
                .capabilities()
                .iter()
                .any(|c| c.eq_ignore_ascii_case("IDLE"));
        loop {
            let mailbox = session.select(&r.fields.folder).await?;
            let pass = Pass {
                store: &self.store,
                sink: &sink,
                receiver: r,
                progress: &|_| {},
                folders: &folders,
            };
            let summary = pass.run(&mut session, mailbox.uid_validity).await?;
            self.record_pass(r, &summary).await;
            if let Some(why) = summary.stopped {
                let _ = session.logout().await;
                return Err(CollectError::Receiver(r.fields.name.clone(), why));
            }
            let _ = self
                .store
                .try_lease(lease, &self.instance, LEASE_TTL_MS)
                .await;
            let expires = self
                .tokens
                .store()
                .account_tokens(account)
                .await
                .ok()
                .and_then(|t| t.access_expires_at)
                .unwrap_or(i64::MAX);
            // Renew 5 minutes before expiry, or at half the time left for short-lived tokens.
            let remaining = expires - now_millis();
            let left = remaining - TOKEN_RENEW_BEFORE.min(remaining / 2);
            if left <= 0 {
                let _ = session.logout().await;
                return Ok(());
            }
            let wait = Duration::from_millis(u64::try_from(left).unwrap_or(0)).min(IDLE_SLICE);
            if idle {
                let outcome = tokio::select! {
                    o = session.idle(wait) => o?,
                    _ = stop.changed() => { return Ok(()); }
                };
                match outcome {
                    IdleOutcome::NewData | IdleOutcome::Changed => {}
                    IdleOutcome::Timeout => {
                        let _ = self
                            .store
                            .try_lease(lease, &self.instance, LEASE_TTL_MS)
                            .await;
                        if wait < IDLE_SLICE {
                            // The token is about to expire: a fresh session with a fresh token.
                            let _ = session.logout().await;
                            return Ok(());
                        }
                    }
                }
            } else {
                let poll = Duration::from_secs(u64::from(r.fields.poll_interval_secs)).min(wait);
                if sleep_or_stop(stop, poll).await {
                    let _ = session.logout().await;
                    return Ok(());
                }
                session.noop().await?;
            }
            if *stop.borrow() {
                let _ = session.logout().await;
                return Ok(());
            }
        }
    }

    /// Runs every active receiver (at most `limit` at once) until `stop` turns true, picking up
    /// receivers that are added, switched on or off.
    pub async fn supervise(
        self: Arc<Self>,
        limit: usize,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut running: HashMap<ReceiverId, tokio::task::JoinHandle<()>> = HashMap::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
        loop {
            running.retain(|_, task| !task.is_finished());
            match self.store.receivers().await {
                Ok(receivers) => {
                    for r in receivers
                        .into_iter()
                        .filter(|r| r.fields.active && r.fields.account_id.is_some())
                    {
                        if running.contains_key(&r.id) {
                            continue;
                        }
                        let (this, stop_rx, permits) =
                            (self.clone(), stop.clone(), permits.clone());
                        running.insert(
                            r.id,
                            tokio::spawn(async move {
                                let Ok(_permit) = permits.acquire_owned().await else {
                                    return;
                                };
                                this.run_receiver(r.id, stop_rx).await;
                            }),
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list the receivers"),
            }
            let stopped = tokio::select! {
                s = sleep_or_stop(&mut stop, Duration::from_secs(15)) => s,
                () = self.changed.notified() => false,
            };
            if stopped {
                break;
            }
        }
        for (_, task) in running {
            let _ = task.await;
        }
    }
}

/// Sleeps, or returns true early when `stop` turns true.
async fn sleep_or_stop(stop: &mut tokio::sync::watch::Receiver<bool>, wait: Duration) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(wait) => false,
        r = stop.wait_for(|s| *s) => r.is_ok(),
    };
    stopped || *stop.borrow()
}
