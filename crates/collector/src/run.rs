//! Running receivers: one pass on demand (`collect --once`), one receiver kept going (IDLE or
//! polling, reconnects with back-off, a sink outage waited out in order), and the supervisor
//! that runs every active receiver.
//!
//! A receiver's life costs one task and, while connected, one IMAP session; what is limited is
//! the work: at most `max_concurrent_passes` passes (fetch, parse, deliver) run at once, handed
//! out first come, first served, and at most a provider's connection limit of sessions run per
//! account. Every receiver reports what it is doing ([`ReceiverState`]) to the store, so each
//! shell shows the same state.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oauthimap_imap::{IdleOutcome, MailSession as _, Session, SessionConfig, connect_and_login};
use oauthimap_sinks::{Sink, SinkConfig};
use oauthimap_store::{Fence, Level, NewEvent, Receiver, StatusReport, Store};
use oauthimap_tokens::{Notice, TokenService};
use oauthimap_types::{
    AccountId, FailureKind, Provider, ReceiverId, ReceiverState, Trigger, backoff, now_millis,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::CollectError;
use crate::pass::{Pass, PassSummary, ProgressEvent, SinkPolicy, SinkWait};

/// IDLE is re-issued before the 29 minutes RFC 2177 allows.
const IDLE_SLICE: Duration = Duration::from_mins(20);
/// A session is renewed when the access token has less than this left (Exchange ends sessions
/// whose token expired).
const TOKEN_RENEW_BEFORE: i64 = 5 * 60 * 1000;
const MAX_BACKOFF: Duration = Duration::from_mins(5);

/// How the collector shares the machine and treats failing sinks.
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    /// Passes (fetch, parse, deliver) running at once, over all receivers.
    pub max_concurrent_passes: usize,
    /// IMAP sessions per upstream account, when the provider's own limit is not known.
    pub max_connections_per_account: usize,
    pub sink: SinkPolicy,
    /// Variables a command sink may see besides the minimal environment (`hooks.pass_env`).
    pub pass_env: Vec<String>,
    /// How long a receiver's lease lasts without renewal: another instance takes over a dead
    /// instance's receivers after this. Renewed every quarter of it while the receiver runs,
    /// IDLE included.
    pub lease_ttl: Duration,
    /// Networks inside that webhook sinks may reach (`outbound.allowed_networks`).
    pub allowed_networks: Vec<oauthimap_types::net::Network>,
    /// Whether command sinks may run (`sinks.command_enabled`).
    pub command_enabled: bool,
    /// The executables they may run (`sinks.command_allowed`; empty: any, through `sh -c`).
    pub command_allowed: Vec<std::path::PathBuf>,
}

impl Default for CollectorSettings {
    fn default() -> Self {
        Self {
            max_concurrent_passes: std::thread::available_parallelism()
                .map_or(2, std::num::NonZero::get),
            max_connections_per_account: 20,
            sink: SinkPolicy::default(),
            pass_env: Vec::new(),
            lease_ttl: Duration::from_mins(1),
            allowed_networks: Vec::new(),
            command_enabled: false,
            command_allowed: Vec::new(),
        }
    }
}

/// IMAP sessions one mailbox may hold at the provider: Exchange Online allows about 20, Gmail 15.
fn provider_connection_limit(provider: Provider, configured: usize) -> usize {
    match provider {
        Provider::Microsoft => configured.min(20),
        Provider::Google => configured.min(15),
        Provider::Generic => configured,
    }
}

/// Runs receivers.
#[derive(Debug, Clone)]
pub struct Collector {
    store: Store,
    tokens: Arc<TokenService>,
    http: reqwest::Client,
    data_dir: PathBuf,
    instance: String,
    settings: CollectorSettings,
    /// One permit per pass running.
    passes: Arc<Semaphore>,
    /// Per account: one permit per open IMAP session.
    connections: Arc<Mutex<HashMap<AccountId, Arc<Semaphore>>>>,
    /// Wakes the supervisor early: a receiver was added or changed.
    changed: Arc<tokio::sync::Notify>,
    /// Cuts every receiver's current back-off short (a saved fix, "collect now").
    nudge: Arc<tokio::sync::Notify>,
    /// Receivers this instance holds now (between taking a lease and giving it up).
    held: Arc<AtomicUsize>,
    /// The most receivers this instance should hold: ⌈active receivers / live instances⌉, set by
    /// the supervisor (no bound without one, as for `collect --once` and tests).
    share: Arc<AtomicUsize>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Writes a receiver's state when it changes (not on every loop).
struct Reporter<'a> {
    store: &'a Store,
    receiver: ReceiverId,
    instance: &'a str,
    last: Option<(ReceiverState, Option<String>, Option<i64>)>,
}

impl Reporter<'_> {
    async fn report(
        &mut self,
        state: ReceiverState,
        detail: Option<String>,
        next_at: Option<i64>,
        since: Option<i64>,
    ) {
        let now = (state, detail, next_at);
        if self.last.as_ref() == Some(&now) {
            return;
        }
        let report = StatusReport {
            state,
            detail: now.1.as_deref(),
            next_at,
            instance: self.instance,
            since,
        };
        if let Err(e) = self
            .store
            .report_receiver_status(self.receiver, &report)
            .await
        {
            tracing::warn!(error = %e, state = %state, "cannot record the receiver's state");
        }
        self.last = Some(now);
    }
}

/// How a session ended.
enum SessionEnd {
    /// Routine: stop asked, a fresh token is due, the server ended the session for an expired
    /// token.
    Renew,
    /// The sink is down: wait, then go on with the held message.
    SinkDown(SinkWait),
}

impl Collector {
    pub fn new(
        store: Store,
        tokens: Arc<TokenService>,
        http: reqwest::Client,
        data_dir: PathBuf,
    ) -> Self {
        Self::with_settings(store, tokens, http, data_dir, CollectorSettings::default())
    }

    pub fn with_settings(
        store: Store,
        tokens: Arc<TokenService>,
        http: reqwest::Client,
        data_dir: PathBuf,
        settings: CollectorSettings,
    ) -> Self {
        Self {
            store,
            tokens,
            http,
            data_dir,
            instance: format!(
                "{}-{}-{:08x}",
                hostname(),
                std::process::id(),
                getrandom::u64().unwrap_or_default() & 0xffff_ffff
            ),
            passes: Arc::new(Semaphore::new(settings.max_concurrent_passes.max(1))),
            settings,
            connections: Arc::default(),
            changed: Arc::new(tokio::sync::Notify::new()),
            nudge: Arc::new(tokio::sync::Notify::new()),
            held: Arc::default(),
            share: Arc::new(AtomicUsize::new(usize::MAX)),
        }
    }

    /// This instance's name in leases and receiver states.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn settings(&self) -> &CollectorSettings {
        &self.settings
    }

    /// Tells the supervisor that receivers changed, so new ones start now rather than at its
    /// next periodic look.
    pub fn wake(&self) {
        self.changed.notify_one();
        self.nudge.notify_waiters();
    }

    async fn sink(&self, r: &Receiver) -> Result<Sink, CollectError> {
        if r.fields.sink == oauthimap_types::SinkKind::Command && !self.settings.command_enabled {
            return Err(CollectError::Sink(oauthimap_sinks::SinkError::Permanent(
                "command sinks are off on this host (`[sinks] command_enabled` in the configuration file)".into(),
            )));
        }
        let secret = self.store.receiver_sink_secret(r.id).await?;
        Ok(SinkConfig {
            kind: r.fields.sink,
            target: r.fields.sink_target.clone(),
            secret,
            data_dir: self.data_dir.clone(),
            timeout: Duration::from_mins(1),
            pass_env: self.settings.pass_env.clone(),
            allowed_networks: self.settings.allowed_networks.clone(),
            command_allowed: self.settings.command_allowed.clone(),
        }
        .build(self.store.clone(), self.http.clone())?)
    }

    async fn connect(&self, r: &Receiver) -> Result<(Session, AccountId), CollectError> {
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

    /// One of the account's connection slots for a session opened elsewhere (the gateway), if
    /// one is free: receivers and gateway sessions share the provider's per-mailbox limit.
    pub async fn try_connection_slot(
        &self,
        application: oauthimap_types::AppId,
        account: AccountId,
    ) -> Option<OwnedSemaphorePermit> {
        self.connection_slots(application, account)
            .await
            .try_acquire_owned()
            .ok()
    }

    /// The account's connection slots (created with the provider's limit).
    async fn connection_slots(
        &self,
        application: oauthimap_types::AppId,
        account: AccountId,
    ) -> Arc<Semaphore> {
        if let Some(slots) = self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&account)
        {
            return slots.clone();
        }
        let provider = self
            .store
            .application(application)
            .await
            .map_or(Provider::Generic, |a| a.fields.provider);
        let limit =
            provider_connection_limit(provider, self.settings.max_connections_per_account).max(1);
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(account)
            .or_insert_with(|| Arc::new(Semaphore::new(limit)))
            .clone()
    }

    fn lease_ttl_ms(&self) -> i64 {
        millis(self.settings.lease_ttl)
    }

    /// Renews a receiver's lease every quarter of its lifetime until aborted; says so on `lost`
    /// when another instance holds it, or held it in between (this one stalled past the lease,
    /// and must stop acting: its fence is stale, so the ledger would refuse it anyway).
    fn keep_lease(&self, fence: &Fence) -> (tokio::task::JoinHandle<()>, watch::Receiver<bool>) {
        let (lost_tx, lost_rx) = watch::channel(false);
        let (store, fence, ttl) = (self.store.clone(), fence.clone(), self.settings.lease_ttl);
        let task = tokio::spawn(async move {
            let lease = &fence.lease;
            let mut tick = tokio::time::interval(ttl / 4);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.take_lease(lease, &fence.holder, millis(ttl)).await {
                    Ok(Some(now)) if now.epoch == fence.epoch => {}
                    Ok(_) => {
                        tracing::warn!(%lease, "the receiver's lease was taken over by another instance; stopping here");
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew the receiver lease"),
                }
            }
        });
        (task, lost_rx)
    }

    /// How long to wait before the `failures`-th retry of a sink that is down.
    fn sink_delay(&self, failures: u32, wait: &SinkWait) -> Duration {
        let p = &self.settings.sink;
        let delay = backoff(
            failures,
            p.retry_base,
            p.retry_cap,
            getrandom::u64().unwrap_or_default(),
        );
        delay.max(Duration::from_secs(wait.retry_after_secs.unwrap_or(0)))
    }

    /// One pass for a receiver: connect, select, collect everything new, log out. When the sink
    /// is down, passes are tried again (with the same back-off as `serve`) for up to
    /// `retry_for`; a message still held then is reported in the summary (`waiting`), and the
    /// next run carries on from it.
    pub async fn collect_once(
        &self,
        receiver: ReceiverId,
        retry_for: Duration,
        progress: &(dyn Fn(ProgressEvent) + Send + Sync),
    ) -> Result<PassSummary, CollectError> {
        let r = self.store.receiver(receiver).await?;
        let deadline = retry_deadline(tokio::time::Instant::now(), retry_for);
        let mut total = PassSummary::default();
        let mut failures = 0;
        let mut outage = Outage::load(&self.store, r.id).await;
        loop {
            let summary = self.one_pass(&r, progress).await?;
            self.record_pass(&r, &summary).await;
            let waiting = summary.waiting.clone();
            total.absorb(summary);
            self.track_outage(&r, &mut outage, waiting.as_ref(), &total)
                .await;
            total.set_aside_after_outage.clear();
            let Some(wait) = waiting else {
                if let Err(e) = self
                    .store
                    .clear_receiver_status(r.id, "collect --once")
                    .await
                {
                    tracing::warn!(error = %e, "cannot record the receiver's state");
                }
                return Ok(total);
            };
            failures += 1;
            let delay = self.sink_delay(failures, &wait);
            let mut reporter = Reporter {
                store: &self.store,
                receiver: r.id,
                instance: "collect --once",
                last: None,
            };
            let give_up = deadline.is_some_and(|d| tokio::time::Instant::now() + delay > d);
            self.report_waiting(
                &mut reporter,
                &mut outage,
                &wait,
                (!give_up).then(|| now_millis() + millis(delay)),
            )
            .await;
            if give_up {
                return Ok(total);
            }
            tracing::info!(receiver = %r.fields.name, retry_in_ms = delay.as_millis(), "the sink is down; trying again");
            tokio::time::sleep(delay).await;
        }
    }

    async fn one_pass(
        &self,
        r: &Receiver,
        progress: &(dyn Fn(ProgressEvent) + Send + Sync),
    ) -> Result<PassSummary, CollectError> {
        let sink = self.sink(r).await?;
        let (mut session, _) = self.connect(r).await?;
        let mailbox = session.select(&r.fields.folder).await?;
        let folders = Mutex::new(HashSet::new());
        let pass = Pass {
            store: &self.store,
            sink: &sink,
            receiver: r,
            progress,
            folders: &folders,
            policy: &self.settings.sink,
            fence: None,
        };
        let summary = pass.run(&mut session, mailbox.uid_validity).await;
        let _ = session.logout().await;
        summary
    }

    /// Records an event, logging (never dropping silently) one that cannot be recorded.
    async fn event(&self, r: &Receiver, level: Level, kind: &'static str, message: String) {
        let event = NewEvent {
            level,
            kind,
            application_id: Some(r.fields.application_id),
            account_id: r.fields.account_id,
            receiver_id: Some(r.id),
            message,
        };
        if let Err(e) = self.store.record_event(&event).await {
            tracing::warn!(error = %e, kind, message = %event.message, "cannot record the event");
        }
    }

    /// Tells people about a receiver through `[notify]`.
    async fn notify(&self, r: &Receiver, event: &'static str, reason: String) {
        let notice = Notice {
            event,
            account_id: r.fields.account_id.map_or(0, |a| a.0),
            mailbox: r.account_mailbox.clone().unwrap_or_default(),
            application: r.application_name.clone(),
            receiver: Some(r.fields.name.clone()),
            reason,
            at: now_millis(),
        };
        self.tokens.notifier().send(&notice).await;
    }

    /// Reports that the receiver waits for its sink (since the held message's first failure),
    /// and marks the state alerted once its alert went out.
    async fn report_waiting(
        &self,
        reporter: &mut Reporter<'_>,
        outage: &mut Outage,
        wait: &SinkWait,
        next_at: Option<i64>,
    ) {
        reporter
            .report(
                ReceiverState::WaitingForSink,
                Some(wait.error.clone()),
                next_at,
                Some(wait.since),
            )
            .await;
        if outage.alert_pending_mark {
            outage.alert_pending_mark = false;
            if let Err(e) = self
                .store
                .mark_receiver_status_alerted(reporter.receiver)
                .await
            {
                tracing::warn!(error = %e, "cannot record the receiver's state");
            }
        }
    }

    /// Alerts once an outage passes `sink.alert_after`, and when it ends; notifies about
    /// messages set aside after `sink.max_outage`.
    async fn track_outage(
        &self,
        r: &Receiver,
        outage: &mut Outage,
        waiting: Option<&SinkWait>,
        summary: &PassSummary,
    ) {
        for why in &summary.set_aside_after_outage {
            self.notify(r, "message.set_aside", why.clone()).await;
        }
        match waiting {
            Some(wait) => {
                outage.since = Some(wait.since);
                let lasted = now_millis() - wait.since;
                if !outage.alerted && lasted >= millis(self.settings.sink.alert_after) {
                    let message = format!(
                        "{}: the sink has been failing for {} min; mail waits, in order, from UID {} ({})",
                        r.fields.name,
                        lasted / 60_000,
                        wait.uid,
                        wait.error
                    );
                    self.event(r, Level::Error, "sink.outage", message.clone())
                        .await;
                    self.notify(r, "sink.outage", message).await;
                    outage.alerted = true;
                    outage.alert_pending_mark = true;
                }
            }
            None => {
                if let Some(since) = outage.since.take() {
                    if outage.alerted {
                        let message = format!(
                            "{}: the sink takes mail again after {} min; the held messages were delivered in order",
                            r.fields.name,
                            (now_millis() - since) / 60_000
                        );
                        self.event(r, Level::Info, "sink.recovered", message.clone())
                            .await;
                        self.notify(r, "sink.recovered", message).await;
                    }
                    outage.alerted = false;
                }
            }
        }
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
        // A sink that stays down is retried for days: one event when the wait begins (and the
        // outage's own alert and all-clear), not one per retry.
        if s.delivered + s.refused == 0 && s.waiting.as_ref().is_some_and(|w| w.attempts > 1) {
            return;
        }
        let (level, kind) = if s.stopped.is_some() {
            (Level::Warn, "receiver.waiting")
        } else {
            (Level::Info, "receiver.collected")
        };
        let mut message = format!(
            "{}: {} delivered, {} refused, {} failed, {} already seen",
            r.fields.name, s.delivered, s.refused, s.failed, s.already_seen
        );
        if let Some(why) = &s.stopped {
            message = format!("{message}; waiting: {why}");
        }
        self.event(r, level, kind, message).await;
    }

    /// Takes (or renews) a receiver's lease, counting what this instance holds: `mine` says
    /// whether it held the lease already. An instance with its share of the receivers takes no
    /// more (`Ok(None)`): the others take them, so the receivers spread over the instances.
    async fn take_receiver_lease(
        &self,
        lease: &str,
        mine: &mut bool,
    ) -> oauthimap_store::Result<Option<Fence>> {
        let full =
            !*mine && self.held.load(Ordering::Relaxed) >= self.share.load(Ordering::Relaxed);
        let taken = if full {
            Ok(None)
        } else {
            self.store
                .take_lease(lease, &self.instance, self.lease_ttl_ms())
                .await
        };
        match &taken {
            Ok(Some(_)) if !*mine => {
                *mine = true;
                self.held.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) if *mine => {
                *mine = false;
                self.held.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        taken
    }

    /// Keeps one receiver collecting until `stop` turns true or the receiver is switched off.
    pub async fn run_receiver(&self, receiver: ReceiverId, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        let mut sink_failures: u32 = 0;
        let lease = format!("receiver:{}", receiver.0);
        let mut reporter = Reporter {
            store: &self.store,
            receiver,
            instance: &self.instance,
            last: None,
        };
        let mut outage = Outage::load(&self.store, receiver).await;
        // Whether this instance holds the lease (kept between sessions, given up at the end).
        let mut mine = false;
        while !*stop.borrow() {
            let fence = match self.take_receiver_lease(&lease, &mut mine).await {
                Ok(Some(fence)) => fence,
                Ok(None) => {
                    // Another instance collects this folder (or will: this one has its share).
                    self.report_held(receiver, &lease).await;
                    reporter.last = None;
                    let wait = (self.settings.lease_ttl / 2).min(Duration::from_secs(30));
                    if sleep_or_stop(&mut stop, wait).await {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    // Without the lease nothing may be collected: another instance may hold it.
                    tracing::warn!(error = %e, "cannot take the receiver lease");
                    if sleep_or_stop(&mut stop, Duration::from_secs(5)).await {
                        break;
                    }
                    continue;
                }
            };
            let r = match self.store.receiver(receiver).await {
                Ok(r) if r.fields.active => r,
                _ => break,
            };
            let (keeper, mut lost) = self.keep_lease(&fence);
            let ended = self
                .session_loop(&r, &fence, &mut stop, &mut lost, &mut reporter, &mut outage)
                .await;
            keeper.abort();
            match ended {
                Ok(SessionEnd::Renew) => {
                    failures = 0;
                    sink_failures = 0;
                }
                Ok(SessionEnd::SinkDown(wait)) => {
                    failures = 0;
                    sink_failures += 1;
                    let delay = self.sink_delay(sink_failures, &wait);
                    tracing::warn!(receiver = %r.fields.name, uid = wait.uid, error = %wait.error,
                        retry_in_ms = delay.as_millis(), "the sink is down; mail waits in order");
                    self.report_waiting(
                        &mut reporter,
                        &mut outage,
                        &wait,
                        Some(now_millis() + millis(delay)),
                    )
                    .await;
                    if self.sleep_or_wake(&mut stop, delay).await {
                        break;
                    }
                }
                Err(CollectError::Store(oauthimap_store::StoreError::Fenced { .. })) => {
                    // Stalled past the lease while another instance took over: what this one
                    // had fetched is left to it, unrecorded and untouched on the server.
                    tracing::warn!(receiver = %r.fields.name, "the receiver's lease was taken over during a pass; nothing of it was recorded here");
                }
                Err(CollectError::Imap(e)) if e.needs_reauthentication() => {
                    // Exchange ends sessions whose token expired (`* BYE ... AccessTokenExpired`):
                    // log in again with a fresh token at once; this is not a failure.
                    tracing::info!(receiver = %r.fields.name, "session ended for an expired token; logging in again");
                }
                Err(e) => {
                    failures += 1;
                    let wait = self.failed(&r, &e, failures, &mut reporter).await;
                    if sleep_or_stop(&mut stop, wait).await {
                        break;
                    }
                }
            }
        }
        if mine {
            self.held.fetch_sub(1, Ordering::Relaxed);
        }
        if let Err(e) = self.store.release_lease(&lease, &self.instance).await {
            tracing::warn!(error = %e, "cannot release the receiver lease");
        }
        if let Err(e) = self
            .store
            .clear_receiver_status(receiver, &self.instance)
            .await
        {
            tracing::warn!(error = %e, "cannot record the receiver's state");
        }
    }

    /// Reports a failed session (backing off, or paused when the account needs a new sign-in)
    /// and returns how long to wait before the next try.
    async fn failed(
        &self,
        r: &Receiver,
        e: &CollectError,
        failures: u32,
        reporter: &mut Reporter<'_>,
    ) -> Duration {
        let wait = backoff(
            failures,
            Duration::from_secs(10),
            MAX_BACKOFF,
            getrandom::u64().unwrap_or_default(),
        );
        tracing::warn!(receiver = %r.fields.name, error = %e, retry_in_s = wait.as_secs(), "collection failed; reconnecting later");
        let paused = matches!(e, CollectError::Imap(i) if i.kind() == FailureKind::Permanent)
            && self.account_needs_reauth(r).await;
        let state = if paused {
            ReceiverState::Paused
        } else {
            ReceiverState::BackingOff
        };
        reporter
            .report(
                state,
                Some(e.to_string()),
                Some(now_millis() + millis(wait)),
                None,
            )
            .await;
        if failures == 1 || e.kind() == FailureKind::Permanent {
            self.event(
                r,
                Level::Warn,
                "receiver.error",
                format!("{}: {e}", r.fields.name),
            )
            .await;
        }
        wait
    }

    async fn account_needs_reauth(&self, r: &Receiver) -> bool {
        let Some(account) = r.fields.account_id else {
            return true;
        };
        self.store
            .account(account)
            .await
            .is_ok_and(|a| a.state == oauthimap_types::AccountState::NeedsReauth)
    }

    /// Sleeps like [`sleep_or_stop`], but a change of receivers (a saved fix, "collect now")
    /// ends the wait early.
    async fn sleep_or_wake(&self, stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
        tokio::select! {
            s = sleep_or_stop(stop, wait) => s,
            () = self.nudge.notified() => *stop.borrow(),
        }
    }

    /// How long a session may go on before it logs in again with a fresh token: until 5
    /// minutes before the access token expires, or half the time left for short-lived tokens.
    async fn session_time_left(&self, account: AccountId) -> i64 {
        let expires = self
            .tokens
            .store()
            .account_tokens(account)
            .await
            .ok()
            .and_then(|t| t.access_expires_at)
            .unwrap_or(i64::MAX);
        let remaining = expires - now_millis();
        remaining - TOKEN_RENEW_BEFORE.min(remaining / 2)
    }

    /// Says which instance holds a receiver, until that instance reports on it itself.
    async fn report_held(&self, receiver: ReceiverId, lease: &str) {
        let holder = self.store.lease_holder(lease).await.ok().flatten();
        tracing::debug!(receiver = receiver.0, holder = ?holder, "held by another instance");
        let reported_by_holder = match self.store.receiver_status(receiver).await {
            Ok(Some(s)) => s.instance.is_some() && s.instance == holder,
            _ => false,
        };
        let Some(holder) = holder.filter(|_| !reported_by_holder) else {
            return;
        };
        let detail = format!("collected by {holder}");
        let report = StatusReport {
            state: ReceiverState::Held,
            detail: Some(&detail),
            next_at: None,
            instance: &holder,
            since: None,
        };
        if let Err(e) = self.store.report_receiver_status(receiver, &report).await {
            tracing::warn!(error = %e, "cannot record the receiver's state");
        }
    }

    /// Waits for one of the account's connection slots, saying so while it waits; `None` when
    /// asked to stop meanwhile.
    async fn connection_slot(
        &self,
        r: &Receiver,
        account: AccountId,
        reporter: &mut Reporter<'_>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<OwnedSemaphorePermit>, CollectError> {
        let slots = self
            .connection_slots(r.fields.application_id, account)
            .await;
        if let Ok(p) = slots.clone().try_acquire_owned() {
            return Ok(Some(p));
        }
        reporter
            .report(
                ReceiverState::WaitingForSlot,
                Some(format!(
                    "the mailbox {} has every IMAP connection it may open in use",
                    r.account_mailbox.as_deref().unwrap_or("?"),
                )),
                None,
                None,
            )
            .await;
        tokio::select! {
            p = slots.acquire_owned() => Ok(p.ok()),
            _ = stop.wait_for(|s| *s) => Ok(None),
        }
    }

    /// Waits for a pass slot, saying so while it waits.
    async fn pass_slot(
        &self,
        reporter: &mut Reporter<'_>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.passes.clone().try_acquire_owned() {
            return Some(permit);
        }
        reporter
            .report(
                ReceiverState::WaitingForSlot,
                Some(format!(
                    "all {} pass slots are busy (collector.max_concurrent_passes)",
                    self.settings.max_concurrent_passes
                )),
                None,
                None,
            )
            .await;
        tokio::select! {
            p = self.passes.clone().acquire_owned() => p.ok(),
            _ = stop.wait_for(|s| *s) => None,
        }
    }

    /// One connection: passes, then IDLE (or a poll wait) until something arrives, the token
    /// nears expiry (then a fresh session), the sink goes down, or `stop`.
    async fn session_loop(
        &self,
        r: &Receiver,
        fence: &Fence,
        stop: &mut watch::Receiver<bool>,
        lost: &mut watch::Receiver<bool>,
        reporter: &mut Reporter<'_>,
        outage: &mut Outage,
    ) -> Result<SessionEnd, CollectError> {
        let sink = self.sink(r).await?;
        let account = r.fields.account_id.ok_or_else(|| {
            CollectError::Receiver(r.fields.name.clone(), "has no account".into())
        })?;
        let Some(_connection) = self.connection_slot(r, account, reporter, stop).await? else {
            return Ok(SessionEnd::Renew);
        };
        let (mut session, account) = self.connect(r).await?;
        let folders = Mutex::new(HashSet::new());
        let idle = r.fields.trigger == Trigger::Idle
            && session
                .capabilities()
                .iter()
                .any(|c| c.eq_ignore_ascii_case("IDLE"));
        loop {
            if *lost.borrow() {
                // Another instance holds the receiver now: act no further on this folder.
                let _ = session.logout().await;
                return Ok(SessionEnd::Renew);
            }
            let Some(permit) = self.pass_slot(reporter, stop).await else {
                let _ = session.logout().await;
                return Ok(SessionEnd::Renew);
            };
            reporter
                .report(ReceiverState::Collecting, None, None, None)
                .await;
            let mailbox = session.select(&r.fields.folder).await?;
            let pass = Pass {
                store: &self.store,
                sink: &sink,
                receiver: r,
                progress: &|_| {},
                folders: &folders,
                policy: &self.settings.sink,
                fence: Some(fence),
            };
            let summary = pass.run(&mut session, mailbox.uid_validity).await?;
            drop(permit);
            self.record_pass(r, &summary).await;
            let waiting = summary.waiting.clone();
            self.track_outage(r, outage, waiting.as_ref(), &summary)
                .await;
            if let Some(wait) = waiting {
                let _ = session.logout().await;
                return Ok(SessionEnd::SinkDown(wait));
            }
            if let Some(why) = summary.stopped {
                let _ = session.logout().await;
                return Err(CollectError::Receiver(r.fields.name.clone(), why));
            }
            let left = self.session_time_left(account).await;
            if left <= 0 {
                let _ = session.logout().await;
                return Ok(SessionEnd::Renew);
            }
            let wait = Duration::from_millis(u64::try_from(left).unwrap_or(0)).min(IDLE_SLICE);
            if idle {
                reporter.report(ReceiverState::Idle, None, None, None).await;
                let outcome = tokio::select! {
                    o = session.idle(wait) => o?,
                    _ = stop.changed() => { return Ok(SessionEnd::Renew); }
                    _ = lost.wait_for(|l| *l) => { return Ok(SessionEnd::Renew); }
                };
                match outcome {
                    IdleOutcome::NewData | IdleOutcome::Changed => {}
                    IdleOutcome::Timeout => {
                        if wait < IDLE_SLICE {
                            // The token is about to expire: a fresh session with a fresh token.
                            let _ = session.logout().await;
                            return Ok(SessionEnd::Renew);
                        }
                    }
                }
            } else {
                let poll = Duration::from_secs(u64::from(r.fields.poll_interval_secs)).min(wait);
                reporter
                    .report(
                        ReceiverState::Polling,
                        None,
                        Some(now_millis() + millis(poll)),
                        None,
                    )
                    .await;
                let lease_lost = tokio::select! {
                    s = sleep_or_stop(stop, poll) => s,
                    _ = lost.wait_for(|l| *l) => true,
                    // "Collect now" (or a saved change): poll at once.
                    () = self.nudge.notified() => false,
                };
                if lease_lost {
                    let _ = session.logout().await;
                    return Ok(SessionEnd::Renew);
                }
                session.noop().await?;
            }
            if *stop.borrow() {
                let _ = session.logout().await;
                return Ok(SessionEnd::Renew);
            }
        }
    }

    /// Runs every active receiver until `stop` turns true, picking up receivers that are added,
    /// switched on or off. Each receiver has its own task for as long as it is active; the
    /// passes they run share `max_concurrent_passes` slots.
    ///
    /// Instances on one database spread the receivers: each says it is alive with an
    /// `instance:` lease, holds at most ⌈active receivers / live instances⌉, and hands the
    /// ones over it holds beyond that (a new instance joined), which the others then take.
    pub async fn supervise(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // Per receiver: its task, and the switch that stops it (a stop, or a hand-over).
        let mut running: HashMap<ReceiverId, (tokio::task::JoinHandle<()>, watch::Sender<bool>)> =
            HashMap::new();
        let presence = format!("instance:{}", self.instance);
        // Often enough that the presence lease never lapses while this instance runs.
        let look = (self.settings.lease_ttl / 3)
            .clamp(Duration::from_millis(200), Duration::from_secs(15));
        // Every start is a new instance name: the presence rows of instances that stopped
        // without a word (killed) a day ago and more go, so the table does not grow forever.
        if let Err(e) = self
            .store
            .forget_leases("instance:", now_millis() - 86_400_000)
            .await
        {
            tracing::warn!(error = %e, "cannot forget old instance leases");
        }
        loop {
            running.retain(|_, (task, _)| !task.is_finished());
            if let Err(e) = self
                .store
                .take_lease(&presence, &self.instance, self.lease_ttl_ms())
                .await
            {
                tracing::warn!(error = %e, "cannot renew this instance's presence");
            }
            match self.store.receivers().await {
                Ok(receivers) => {
                    let active: Vec<_> = receivers
                        .into_iter()
                        .filter(|r| r.fields.active && r.fields.account_id.is_some())
                        .collect();
                    self.spread(active.len()).await;
                    for r in active {
                        if running.contains_key(&r.id) {
                            continue;
                        }
                        let (tx, rx) = watch::channel(false);
                        let this = self.clone();
                        running.insert(
                            r.id,
                            (
                                tokio::spawn(async move { this.run_receiver(r.id, rx).await }),
                                tx,
                            ),
                        );
                    }
                    self.hand_over_beyond_share(&running).await;
                }
                Err(e) => tracing::warn!(error = %e, "cannot list the receivers"),
            }
            metrics::gauge!("oauthimap_receivers_running").set(f64::from(
                u32::try_from(self.held.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
            ));
            let stopped = tokio::select! {
                s = sleep_or_stop(&mut stop, look) => s,
                () = self.changed.notified() => false,
            };
            if stopped {
                break;
            }
        }
        for (_, switch) in running.values() {
            let _ = switch.send(true);
        }
        for (_, (task, _)) in running {
            let _ = task.await;
        }
        // This name is never used again, so the row goes (a receiver's lease row stays, for its
        // epoch); anything before now expired is gone with it.
        let released = self.store.release_lease(&presence, &self.instance).await;
        if let Err(e) = match released {
            Ok(()) => self
                .store
                .forget_leases(&presence, now_millis() + 1)
                .await
                .map(drop),
            Err(e) => Err(e),
        } {
            tracing::warn!(error = %e, "cannot release this instance's presence");
        }
    }

    /// Sets this instance's share of `active` receivers from the live instances.
    async fn spread(&self, active: usize) {
        match self.store.live_leases("instance:").await {
            Ok(instances) => {
                let share = active.div_ceil(instances.max(1)).max(1);
                self.share.store(share, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "cannot count the live instances"),
        }
    }

    /// Stops the receivers this instance holds beyond its share; they release their leases, and
    /// their new tasks wait while this instance is full, so the other instances take them.
    async fn hand_over_beyond_share(
        &self,
        running: &HashMap<ReceiverId, (tokio::task::JoinHandle<()>, watch::Sender<bool>)>,
    ) {
        let share = self.share.load(Ordering::Relaxed);
        let held = match self.store.leases_held("receiver:", &self.instance).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the receivers this instance holds");
                return;
            }
        };
        for lease in held.iter().skip(share) {
            let Some(id) = lease
                .strip_prefix("receiver:")
                .and_then(|id| id.parse().ok())
                .map(ReceiverId)
            else {
                continue;
            };
            if let Some((_, switch)) = running.get(&id) {
                tracing::info!(
                    receiver = id.0,
                    share,
                    "handing the receiver over to another instance"
                );
                let _ = switch.send(true);
            }
        }
    }
}

/// What a receiver knows of its sink's outage (for the alert and the all-clear).
#[derive(Debug, Default)]
struct Outage {
    since: Option<i64>,
    alerted: bool,
    /// The alert went out; the reported state is to be marked once it is written.
    alert_pending_mark: bool,
}

impl Outage {
    /// Picks up an outage an earlier run (or another process) was already waiting out.
    async fn load(store: &Store, receiver: ReceiverId) -> Outage {
        match store.receiver_status(receiver).await {
            Ok(Some(s)) if s.state == ReceiverState::WaitingForSink => Outage {
                since: Some(s.since),
                alerted: s.alerted_at.is_some(),
                alert_pending_mark: false,
            },
            _ => Outage::default(),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "collector".into())
}

/// Sleeps, or returns true early when `stop` turns true or its sender is gone (whoever could
/// have said stop has ended: going on would only spin).
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(wait) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

/// When `collect --once` stops retrying a sink that is down: `retry_for` after `now`, or never
/// when that lies past what an `Instant` holds (`--retry-for 300000000000y` panicked here).
pub(crate) fn retry_deadline(
    now: tokio::time::Instant,
    retry_for: Duration,
) -> Option<tokio::time::Instant> {
    now.checked_add(retry_for)
}
