//! `oauthimap serve`: the long-running service.

use oauthimap_app::{App, AppError};

pub async fn run(app: App) -> Result<(), AppError> {
    let settings = app.settings();
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
    let redirect = app.redirect_url();
    if let Some(link) = app.new_setup_link().await? {
        // Single use, short-lived, and useless once an admin exists: the one secret a log may
        // carry, because on a fresh install the log is the only channel to the admin.
        tracing::warn!(
            setup_link = %link,
            "no admin user exists: open this one-time link to create the first one, or run `oauthimap admin create NAME`"
        );
    }
    let data_dir = settings.data_dir.display().to_string();
    let backend = app.store().backend();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let refresher = tokio::spawn(app.tokens().clone().run_refresher(stopped(stop_rx.clone())));
    let collector = tokio::spawn(app.collector().clone().supervise(stop_rx.clone()));
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let served = oauthimap_web::serve(
        app.clone(),
        listen,
        |bound| {
            tracing::info!(%bound, %redirect, %backend, %data_dir, "oauthimap is listening");
        },
        stopped(stop_rx),
    )
    .await;
    let _ = refresher.await;
    let _ = collector.await;
    served.map_err(|e| AppError::Io {
        action: format!("serve HTTP on {listen}"),
        source: e,
    })?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
