//! The long-running service's use cases: what `serve` listens on (and the rules that must hold
//! before it starts), the token broker it opens, and the background work it keeps running (the
//! token refresher, the receivers). The shell binds the ports, waits for signals and logs.

use std::net::SocketAddr;

use tokio::sync::watch;

use crate::{AppError, Broker, Core, Result};

/// What `serve` listens on and announces, once the rules for starting hold.
#[derive(Debug, Clone)]
pub struct ListenPlan {
    /// The web service's address (`listen`).
    pub listen: SocketAddr,
    /// The OAuth redirect URL users' browsers come back to.
    pub redirect_url: url::Url,
    /// The database kind, for the start-up line ("SQLite", "PostgreSQL").
    pub backend: String,
    /// The data folder, for the start-up line.
    pub data_dir: String,
}

impl Core {
    /// The web service's plan, or why it must not start:
    /// - a `/metrics` token file that cannot be read (or is too short) stops it, so `/metrics`
    ///   never opens by accident;
    /// - a listen address other than loopback means users come through some other URL, so
    ///   `external_base_url` must say which (else the OAuth redirect URL would be wrong).
    pub fn listen_plan(&self) -> Result<ListenPlan> {
        self.metrics_token()?;
        let settings = self.settings();
        let listen = settings.listen;
        if !listen.ip().is_loopback() && !settings.has_external_base_url() {
            return Err(AppError::Invalid {
                field: "external_base_url",
                message: format!(
                    "the service listens on {listen}, so users reach it through some other URL; set external_base_url \
                     (OAUTHIMAP_EXTERNAL_BASE_URL) to it, such as https://oauthimap.example.com, so the OAuth redirect URL is right"
                ),
            });
        }
        Ok(ListenPlan {
            listen,
            redirect_url: self.redirect_url(),
            backend: self.store().backend().to_string(),
            data_dir: settings.data_dir.display().to_string(),
        })
    }

    /// Where the OAuth callback is expected (`listen`): a CLI sign-in opens a temporary
    /// listener there when no service runs.
    pub fn callback_address(&self) -> SocketAddr {
        self.settings().listen
    }

    /// The service's public URL (`external_base_url`, or the one derived from `listen`).
    pub fn external_base_url(&self) -> url::Url {
        self.settings().external_base_url()
    }

    /// Whether cookies must be `Secure`: the service is reached over https.
    pub fn serves_https(&self) -> bool {
        self.external_base_url().scheme() == "https"
    }

    /// How many failed logins one address may make before it waits
    /// (`web.login_failures_per_address`).
    pub fn login_failures_per_address(&self) -> u64 {
        self.settings().web.login_failures_per_address
    }

    /// The token broker for `serve`. A socket that was asked for (`broker.socket`) must open;
    /// the default one may fail (a data folder whose path is too long for a socket) without
    /// stopping the service: callers then open the database, and the log says why.
    pub fn serve_broker(&self) -> Result<Option<Broker>> {
        match self.bind_broker() {
            Err(e) if self.settings().broker.socket.is_none() => {
                tracing::warn!(error = %e, "the token broker is off: `oauthimap token` will open the database; set broker.socket to a shorter path");
                Ok(None)
            }
            bound => bound,
        }
    }

    /// Keeps every account's token fresh (refresh ahead, keep-warm, back-off) until `stop`.
    pub async fn run_token_refresher(&self, stop: impl Future<Output = ()>) {
        self.tokens().clone().run_refresher(stop).await;
    }

    /// Keeps the receivers running (IDLE or poll, back-off, leases shared with other instances)
    /// until `stop` turns true.
    pub async fn run_receivers(&self, stop: watch::Receiver<bool>) {
        self.collector().clone().supervise(stop).await;
    }
}
