//! The background refresher: renews access tokens ahead of expiry and keeps refresh tokens warm,
//! until told to stop.

use std::sync::Arc;
use std::time::Duration;

use oauthimap_types::now_millis;

use crate::service::{RefreshOutcome, TokenService};

/// How many refreshes the background refresher runs at once.
const CONCURRENT_REFRESHES: usize = 8;

impl TokenService {
    /// One pass: refreshes every account that is due. Returns how many were refreshed.
    pub async fn refresh_due(self: &Arc<Self>) -> usize {
        let s = self.settings();
        let margin =
            i64::try_from((s.refresh_margin + s.jitter).as_millis()).unwrap_or(i64::MAX / 4);
        let warm_before =
            now_millis() - i64::try_from(s.keep_warm.as_millis()).unwrap_or(i64::MAX / 4);
        // Keep-warm refreshes fall due over the second half of the keep-warm time, at an offset
        // fixed per account: accounts authorized together are not refreshed together.
        let spread = i64::try_from(s.keep_warm.as_millis() / 2).unwrap_or(i64::MAX / 4);
        let due = match self
            .store()
            .accounts_due(now_millis(), margin, warm_before, spread)
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "cannot look for accounts to refresh");
                return 0;
            }
        };
        // A few at a time: a provider answers in a few hundred milliseconds, and one by one
        // 10,000 accounts would need more than their renewal period.
        let mut running = tokio::task::JoinSet::new();
        let mut refreshed = 0;
        for (id, app) in due {
            if self.throttled_until(app).is_some() {
                continue;
            }
            if running.len() >= CONCURRENT_REFRESHES
                && let Some(Ok(true)) = running.join_next().await
            {
                refreshed += 1;
            }
            let service = Arc::clone(self);
            running.spawn(async move {
                matches!(
                    service.refresh_now(id).await,
                    RefreshOutcome::Refreshed { .. }
                )
            });
        }
        while let Some(done) = running.join_next().await {
            refreshed += usize::from(done.unwrap_or(false));
        }
        refreshed
    }

    /// Runs passes every `check_interval` until `stop` resolves.
    pub async fn run_refresher(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let interval = self
            .settings()
            .check_interval
            .max(Duration::from_millis(100));
        tokio::pin!(stop);
        loop {
            self.refresh_due().await;
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}
