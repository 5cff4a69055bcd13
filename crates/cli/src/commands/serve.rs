//! `oauthimap serve`: the long-running service.

use oauthimap_app::{AppError, Core, ListenPlan};

pub async fn execute(app: Core) -> Result<(), AppError> {
    // The handlers are in place before anything starts, so a SIGTERM that arrives while the
    // gateway or the web port is still being set up is a graceful stop, not the default death.
    let signals = Signals::install()?;
    // The rules for starting (an unreadable metrics token file, a public address without
    // external_base_url) stop serve here (exit 2).
    let plan = app.listen_plan()?;
    let listen = plan.listen;
    if let Some(link) = app.new_setup_link().await? {
        // Single use, short-lived, and useless once an admin exists: the one secret a log may
        // carry, because on a fresh install the log is the only channel to the admin.
        tracing::warn!(
            setup_link = %link,
            "no admin user exists: open this one-time link to create the first one, or run `oauthimap admin create NAME`"
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let gateway = match app.gateway_config()? {
        Some(config) => Some(start_gateway(&app, config, stop_rx.clone()).await?),
        None => None,
    };
    let broker = app.serve_broker()?.map(|broker| {
        tracing::info!(socket = %broker.path().display(), "the token broker is listening");
        tokio::spawn(broker.answer(stop_rx.clone()))
    });
    let refresher = tokio::spawn({
        let (app, stop) = (app.clone(), stopped(stop_rx.clone()));
        async move { app.run_token_refresher(stop).await }
    });
    let collector = tokio::spawn({
        let (app, stop) = (app.clone(), stop_rx.clone());
        async move { app.run_receivers(stop).await }
    });
    let stop_tx = std::sync::Arc::new(stop_tx);
    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            signals.wait().await;
            let _ = stop_tx.send(true);
        }
    });
    let served = oauthimap_web::serve(
        app.clone(),
        listen,
        |bound| {
            let ListenPlan {
                redirect_url: redirect,
                backend,
                data_dir,
                ..
            } = &plan;
            tracing::info!(%bound, %redirect, %backend, %data_dir, "oauthimap is listening");
        },
        stopped(stop_rx),
    )
    .await;
    // However the web service ended (a signal, or a port it could not bind), stop the rest.
    let _ = stop_tx.send(true);
    let _ = refresher.await;
    let _ = collector.await;
    if let Some(gateway) = gateway {
        let _ = gateway.await;
    }
    if let Some(broker) = broker {
        let _ = broker.await;
    }
    served.map_err(|e| AppError::Io {
        action: format!("serve HTTP on {listen}"),
        source: e,
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// Starts the gateway's listeners; returns once they are bound (or with the reason they could
/// not be), so a taken port stops `serve` at once.
async fn start_gateway(
    app: &Core,
    config: oauthimap_app::GatewayConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, AppError> {
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let app = app.clone();
    let mut task = tokio::spawn(async move {
        let served = app
            .serve_gateway(
                config,
                |bound| {
                    for (name, addr) in bound {
                        tracing::info!(listener = %name, %addr, "the gateway is listening");
                    }
                    let _ = bound_tx.send(());
                },
                stop,
            )
            .await;
        if let Err(e) = &served {
            tracing::error!(error = %e, "the gateway stopped");
        }
        served
    });
    tokio::select! {
        Ok(()) = bound_rx => Ok(tokio::spawn(async move { let _ = task.await; })),
        r = &mut task => match r {
            Ok(Err(e)) => Err(e),
            _ => Err(AppError::Io { action: "start the gateway".into(), source: std::io::Error::other("it stopped at once") }),
        },
    }
}

/// SIGTERM and SIGINT, registered with the kernel when installed (not when first awaited).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, AppError> {
        use tokio::signal::unix::{SignalKind, signal};
        let io = |e| AppError::Io {
            action: "install the signal handlers".into(),
            source: e,
        };
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(io)?,
            int: signal(SignalKind::interrupt()).map_err(io)?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
        tracing::info!("shutting down: finishing requests in flight");
    }
}
