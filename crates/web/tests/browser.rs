//! End-to-end test of the admin web UI in real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven through chromedriver), against the fake identity provider and a real
//! private Dovecot. It walks the seed's journey as an administrator would: log in, add a Microsoft
//! application (pointed at the fake provider), read and copy its redirect URL, authorize a mailbox
//! through the provider redirect, see the account active, run Diagnose, add a receiver choosing the
//! account from the list, and see the collected messages appear, including one whose subject,
//! sender name and HTML body are hostile markup that must show as text and never run; then change
//! the tenant, which asks before it revokes the account and stops the receiver, and sign in again
//! from the overview, which brings the receiver back.
//!
//! Every page is saved as `NN-step.png` under `$OAUTHIMAP_E2E_ARTIFACTS/browser` (default
//! `target/e2e-artifacts/browser`), with `failure.png`, `failure.html` and the browser console
//! when a step fails. A missing Chromium or chromedriver fails the test; it is never skipped.
#![allow(clippy::too_many_lines)] // the journey reads best as one story

#[path = "browser/chrome.rs"]
mod chrome;
#[path = "browser/service.rs"]
mod service;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrome::{ChromeDriver, Screenshots, wait_for};
use service::{
    ADMIN, ADMIN_PASSWORD, CLIENT_ID, CLIENT_SECRET, HOSTILE_SENDER, HOSTILE_SUBJECT, MAILBOX,
    SUBJECTS, Service, TENANT,
};
use thirtyfour::components::SelectElement;
use thirtyfour::error::WebDriverErrorInner;
use thirtyfour::prelude::*;

/// How long a page may take to show what a step waits for.
const PAGE: Duration = Duration::from_secs(10);
/// How long the collector may take to bring the seeded messages in after the receiver is saved.
const COLLECT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_journey_in_headless_chromium() {
    let started = Instant::now();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();

    let shots = Screenshots::new().expect("the artifacts folder");
    let dir = shots.dir.clone();
    let mut chromedriver = ChromeDriver::start(&dir.join("chromedriver.log"))
        .await
        .expect("chromedriver");
    let service = Arc::new(Service::start().await.expect("the service"));
    let profile = tempfile::tempdir().expect("a Chromium profile folder");
    let driver = chromedriver
        .session(profile.path())
        .await
        .expect("a Chromium session");

    // The journey runs in its own task so that a failed assertion (a panic) still lets us save
    // the failing page, quit the browser and end chromedriver before the test reports it.
    let outcome = tokio::spawn(journey(driver.clone(), service.clone(), shots)).await;
    let failed = !matches!(outcome, Ok(Ok(())));
    if failed {
        save_failure(&driver, &dir).await;
    }
    save_console(&driver, &dir).await;
    let _ = driver.quit().await;
    chromedriver.stop();
    drop(profile);
    if let Ok(service) = Arc::try_unwrap(service) {
        service.stop().await;
    }
    println!(
        "browser journey {} in {:.1} s; screenshots in {}",
        if failed { "FAILED" } else { "passed" },
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e:?}\n(screenshots in {})", dir.display()),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The seed's journey, one page after another.
async fn journey(d: WebDriver, s: Arc<Service>, shots: Screenshots) -> anyhow::Result<()> {
    let mut ui = Ui { d, s, shots };

    // The service answers, and Chromium reaches it.
    ui.goto("/healthz").await?;
    let body = ui.d.find(By::Tag("body")).await?.text().await?;
    ensure!(body.trim() == "ok", "/healthz answered {body:?}");

    // 1. Log in. The overview is behind the login page.
    ui.goto("/").await?;
    ui.wait_path("the login page", |p| p == "/login").await?;
    ui.shot("login").await?;
    ui.fill("#login-form", "username", ADMIN).await?;
    ui.fill("#login-form", "password", ADMIN_PASSWORD).await?;
    ui.click("#login-form button[type=submit]").await?;
    ui.wait_path("the health overview after login", |p| p == "/")
        .await?;
    ui.shot("health").await?;

    // 2. Add a Microsoft application, pointed at the fake provider (advanced: endpoint base URL).
    ui.click("header nav a[href=\"/applications\"]").await?;
    ui.wait_path("the applications page", |p| p == "/applications")
        .await?;
    ui.shot("applications").await?;
    ui.click("a#new-application").await?;
    ui.wait_path("the new application form", |p| p == "/applications/new")
        .await?;
    // The provider's hints follow the provider chosen, without a reload.
    ui.select("#application-form", "provider", "google").await?;
    let google_hint = ui.d.find(By::Css("#redirect-hint-google")).await?;
    let microsoft_hint = ui.d.find(By::Css("#redirect-hint-microsoft")).await?;
    let endpoint = ui
        .field("#application-form", "endpoint_base")
        .await?
        .attr("placeholder")
        .await?;
    ensure!(
        google_hint.is_displayed().await? && !microsoft_hint.is_displayed().await?,
        "with Google chosen, the redirect hint still talks about Entra"
    );
    ensure!(
        endpoint.as_deref() == Some("https://accounts.google.com"),
        "with Google chosen, the endpoint placeholder is {endpoint:?}"
    );
    ui.shot("new-application-google").await?;
    ui.select("#application-form", "provider", "microsoft")
        .await?;
    ensure!(
        microsoft_hint.is_displayed().await? && !google_hint.is_displayed().await?,
        "with Microsoft chosen again, the Entra hint is hidden"
    );
    ui.fill("#application-form", "name", "Contoso").await?;
    ui.fill("#application-form", "client_id", CLIENT_ID).await?;
    let secret = ui
        .field("#application-form", "client_secret")
        .await?
        .attr("type")
        .await?;
    ensure!(
        secret.as_deref() == Some("password"),
        "the client secret input is type={secret:?}, not a password field"
    );
    ui.fill("#application-form", "client_secret", CLIENT_SECRET)
        .await?;
    ui.fill("#application-form", "tenant", TENANT).await?;
    // The provider on another site (localhost, not 127.0.0.1), as a real one is: the way back
    // to the callback is then a cross-site navigation, which the session cookie must survive.
    let endpoint_base = ui.s.idp.base_url().replace("127.0.0.1", "localhost");
    ui.fill("#application-form", "endpoint_base", &endpoint_base)
        .await?;
    ui.shot("new-application").await?;
    ui.click("#application-form button#save").await?;
    let app_path = ui
        .wait_path("the application's page", |p| {
            numbered(p, "/applications/").is_some()
        })
        .await?;
    let app_id = numbered(&app_path, "/applications/").unwrap_or_default();
    ui.shot("application").await?;

    // 3. The redirect URL to register at the provider, and its copy button.
    let redirect = ui.s.url("/oauth/callback");
    let shown = ui.d.find(By::Css("#redirect-url")).await?;
    let shown_value = shown.value().await?.unwrap_or_default();
    ensure!(
        shown_value == redirect,
        "#redirect-url shows {shown_value:?}, expected {redirect:?}"
    );
    ensure!(
        shown.attr("readonly").await?.is_some(),
        "#redirect-url is not readonly"
    );
    let copied = ui.copy_redirect_url().await?;
    ensure!(
        copied == redirect,
        "the copy button put {copied:?} on the clipboard, expected {redirect:?}"
    );

    // 4. Authorize the mailbox: to the provider (which signs in at once) and back.
    ui.click("a#tab-accounts").await?;
    let accounts_path = format!("/applications/{app_id}/accounts");
    ui.wait_path("the application's accounts tab", |p| p == accounts_path)
        .await?;
    ui.shot("accounts").await?;
    let authorize_before = ui.s.idp.stats().authorize.successes;
    ui.fill("#authorize-form", "login_hint", MAILBOX).await?;
    ui.click("#authorize-form button#authorize").await?;
    ui.wait_for_css("a success message after the sign-in", ".flash.success")
        .await?;
    let path = ui.path().await?;
    ensure!(
        path == accounts_path,
        "after the sign-in the browser is on {path}, expected {accounts_path}"
    );
    let stats = ui.s.idp.stats();
    ensure!(
        stats.authorize.successes == authorize_before + 1
            && stats.grant("authorization_code").successes >= 1,
        "the sign-in did not go through the provider: {stats:?}"
    );
    let row_css = format!("table#accounts tr[data-mailbox=\"{MAILBOX}\"]");
    let row =
        ui.d.find(By::Css(&row_css))
            .await
            .context(row_css.clone())?;
    let badge = row.find(By::Css(".badge")).await?.text().await?;
    ensure!(
        badge.trim().eq_ignore_ascii_case("active"),
        "the account's badge says {badge:?}, expected active"
    );
    ui.shot("account-authorized").await?;
    row.find(By::Css("a.account-link")).await?.click().await?;
    ui.wait_path("the account's page", |p| {
        numbered(p, "/accounts/").is_some()
    })
    .await?;
    ui.shot("account").await?;

    // 5. Diagnose the account against Dovecot: every step passes.
    let imaps_port = ui.s.dovecot.imaps_port().to_string();
    let ca_file = ui.s.ca_file().display().to_string();
    ui.fill("#diagnose-form", "host", "localhost").await?;
    ui.fill("#diagnose-form", "port", &imaps_port).await?;
    ui.select("#diagnose-form", "security", "tls").await?;
    ui.fill("#diagnose-form", "ca_file", &ca_file).await?;
    ui.click("#diagnose-form button#diagnose").await?;
    let report = ui
        .wait_for_css("the diagnose report", "#diagnose-report")
        .await?;
    ui.shot("diagnose").await?;
    let outcome = report.attr("data-outcome").await?;
    if outcome.as_deref() != Some("ok") {
        bail!(
            "diagnose outcome {outcome:?}, expected \"ok\"; the report says:\n{}",
            report.text().await?
        );
    }

    // 6. Add a receiver, choosing the application, then the account from the list.
    ui.click("header nav a[href=\"/receivers\"]").await?;
    ui.wait_path("the receivers page", |p| p == "/receivers")
        .await?;
    ui.shot("receivers").await?;
    ui.click("a#new-receiver").await?;
    ui.wait_path("the new receiver form", |p| p == "/receivers/new")
        .await?;
    ui.select("#receiver-form", "application", &app_id).await?;
    // Choosing the application reloads the account choices (with JS); the button is the
    // no-JS way and is hidden when JS does it.
    let choose = ui.d.find_all(By::Css("button#choose-application")).await?;
    if let Some(button) = choose.first()
        && button.is_displayed().await?
    {
        button.click().await?;
    }
    let account_select = "#receiver-form select[name=account]".to_owned();
    let account_id = wait_for(PAGE, "the mailbox among the account choices", || {
        let d = ui.d.clone();
        let css = account_select.clone();
        async move {
            let select = d.find(By::Css(&css)).await?;
            for option in select.find_all(By::Css("option")).await? {
                if option.text().await?.trim() == MAILBOX {
                    return Ok(option.value().await?);
                }
            }
            Ok(None)
        }
    })
    .await?;
    ui.select("#receiver-form", "account", &account_id).await?;
    ui.fill("#receiver-form", "name", "helpdesk").await?;
    ui.fill("#receiver-form", "host", "localhost").await?;
    ui.fill("#receiver-form", "port", &imaps_port).await?;
    ui.select("#receiver-form", "security", "tls").await?;
    ui.fill("#receiver-form", "ca_file", &ca_file).await?;
    ui.fill("#receiver-form", "folder", "INBOX").await?;
    ui.select("#receiver-form", "trigger", "idle").await?;
    ui.select("#receiver-form", "sink", "store").await?;
    // The built-in store needs no target: the field for the other sinks is hidden.
    let target = ui.field("#receiver-form", "sink_target").await?;
    ensure!(
        !target.is_displayed().await?,
        "the sink target field is shown although the sink is the built-in store"
    );
    // Three mistakes at once (a name that is a number, a webhook over http, a size no server
    // takes): one submit shows all three, each next to its field, and keeps what was typed.
    ui.fill("#receiver-form", "name", "42").await?;
    ui.fill("#receiver-form", "size_limit_mb", "3000").await?;
    ui.select("#receiver-form", "sink", "webhook").await?;
    ui.fill(
        "#receiver-form",
        "sink_target",
        "http://hooks.example.com/in",
    )
    .await?;
    ui.click("#receiver-form button#save").await?;
    ui.wait_for_css("the errors next to their fields", ".field-error")
        .await?;
    ui.shot("receiver-three-errors").await?;
    let mut flagged = Vec::new();
    for e in
        ui.d.find_all(By::Css("#receiver-form .field-error"))
            .await?
    {
        flagged.push((
            e.attr("data-field").await?.unwrap_or_default(),
            e.text().await?,
        ));
    }
    flagged.sort();
    let fields: Vec<&str> = flagged.iter().map(|(f, _)| f.as_str()).collect();
    ensure!(
        fields == ["name", "sink_target", "size_limit_mb"],
        "one submit flagged {flagged:?}"
    );
    let banner = ui.d.find(By::Css(".flash.error")).await?.text().await?;
    ensure!(
        banner.contains("3 fields need a change")
            && banner.contains("Size limit (MB)")
            && !banner.contains("size_limit"),
        "the banner says {banner:?}"
    );
    let kept = ui.field("#receiver-form", "host").await?.value().await?;
    ensure!(
        kept.as_deref() == Some("localhost"),
        "the form lost the server: {kept:?}"
    );
    ui.fill("#receiver-form", "name", "helpdesk").await?;
    ui.fill("#receiver-form", "size_limit_mb", "25").await?;
    ui.fill("#receiver-form", "sink_target", "").await?;
    ui.select("#receiver-form", "sink", "store").await?;
    ui.shot("new-receiver").await?;
    ui.click("#receiver-form button#save").await?;
    ui.wait_path("the receiver's page", |p| {
        numbered(p, "/receivers/").is_some()
    })
    .await?;
    ui.shot("receiver").await?;

    // 6b. A receiver pointed at a port where nothing listens: within one retry it shows as
    // failing, with its error, on the list, its page and the overview's Needs attention, and
    // REST says backing_off.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let broken =
        ui.s.app
            .create_receiver(&oauthimap_app::ReceiverInput {
                name: Some("wrong-port".into()),
                application: Some("Contoso".into()),
                account: Some(MAILBOX.into()),
                host: Some("127.0.0.1".into()),
                port: Some(closed_port),
                security: Some(oauthimap_types::Security::Tls),
                ..Default::default()
            })
            .await
            .map(|(receiver, _)| receiver)?;
    wait_for(COLLECT, "the wrong-port receiver failing", || {
        let app = ui.s.app.clone();
        async move {
            let r = app.find_receiver("wrong-port").await?;
            Ok((r.state == oauthimap_types::ReceiverState::BackingOff).then_some(()))
        }
    })
    .await?;
    ui.goto("/receivers").await?;
    let row =
        ui.d.find(By::Css("tr[data-name=\"wrong-port\"] .badge"))
            .await?;
    let listed = row.attr("data-state").await?;
    ensure!(
        listed.as_deref() == Some("backing_off"),
        "the receivers list shows the wrong-port receiver as {listed:?}"
    );
    ui.goto(&format!("/receivers/{}", broken.id.0)).await?;
    let detail = ui.d.find(By::Css("#state")).await?.text().await?;
    ui.shot("receiver-failing").await?;
    ensure!(
        detail.contains("failing") && detail.contains("connect"),
        "the receiver's page says {detail:?}"
    );
    // Its Diagnose button tests this receiver's own server, and says where it fails.
    ui.click("#receiver-diagnose button").await?;
    let report = ui
        .wait_for_css(
            "the diagnose report for the receiver's server",
            "#diagnose-report",
        )
        .await?;
    let outcome = report.attr("data-outcome").await?;
    let text = report.text().await?;
    ensure!(
        outcome.as_deref() != Some("ok") && text.contains(&closed_port.to_string()),
        "diagnosing the wrong-port receiver gave {outcome:?}: {text}"
    );
    ui.goto("/").await?;
    let attention = ui.d.find(By::Css("#attention")).await?.text().await?;
    ensure!(
        attention.contains("wrong-port"),
        "Needs attention does not list the failing receiver: {attention:?}"
    );
    let token =
        ui.s.app
            .create_api_token("journey", &["admin".into()])
            .await?
            .1;
    let listed: serde_json::Value = reqwest::Client::new()
        .get(ui.s.url(&format!("/api/v1/receivers/{}", broken.id.0)))
        .bearer_auth(secrecy::ExposeSecret::expose_secret(&token))
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        listed["state"] == "backing_off",
        "REST shows the wrong-port receiver as {}",
        listed["state"]
    );
    ui.s.app.remove_receiver("wrong-port").await?;

    // 7. The collected messages appear, the hostile ones as plain text.
    ui.click("header nav a[href=\"/messages\"]").await?;
    ui.wait_path("the messages page", |p| p == "/messages")
        .await?;
    let rows = wait_for(
        COLLECT,
        "the three seeded messages in table#messages",
        || {
            let d = ui.d.clone();
            async move {
                let rows = d.find_all(By::Css("table#messages tr.message")).await?;
                if rows.len() >= SUBJECTS.len() {
                    return Ok(Some(rows));
                }
                d.refresh().await?;
                Ok(None)
            }
        },
    )
    .await?;
    ui.wait_loaded().await?;
    ui.shot("messages").await?;
    ensure!(
        rows.len() == SUBJECTS.len(),
        "{} message rows, expected {}",
        rows.len(),
        SUBJECTS.len()
    );
    let table = ui.d.find(By::Css("table#messages")).await?;
    let table_text = table.text().await?;
    for subject in SUBJECTS {
        ensure!(
            table_text.contains(subject),
            "the subject {subject:?} is not shown as text in table#messages:\n{table_text}"
        );
    }
    let injected = table.find_all(By::Css("script, img")).await?.len();
    ensure!(
        injected == 0,
        "table#messages holds {injected} script/img elements: the hostile markup was rendered"
    );
    ui.assert_no_alert().await?;
    let mut hostile_link = None;
    for row in &rows {
        let text = row.text().await?;
        if text.contains(HOSTILE_SUBJECT) {
            ensure!(
                text.contains(HOSTILE_SENDER),
                "the hostile message's row does not show the sender name {HOSTILE_SENDER:?} as text: {text:?}"
            );
            hostile_link = Some(row.find(By::Css("a.message-link")).await?);
        }
    }
    let Some(hostile_link) = hostile_link else {
        bail!("no row of table#messages shows {HOSTILE_SUBJECT:?}");
    };
    hostile_link.click().await?;
    ui.wait_path("the message's page", |p| {
        numbered(p, "/messages/").is_some()
    })
    .await?;
    ui.wait_loaded().await?;
    ui.shot("message").await?;
    let subject = ui.d.find(By::Css("#subject")).await?.text().await?;
    ensure!(
        subject.trim() == HOSTILE_SUBJECT,
        "#subject shows {subject:?}, expected the literal text {HOSTILE_SUBJECT:?}"
    );
    let from = ui.d.find(By::Css("#from")).await?.text().await?;
    ensure!(
        from.contains(HOSTILE_SENDER),
        "#from shows {from:?}, not the sender name {HOSTILE_SENDER:?} as text"
    );
    let live: bool =
        ui.d.execute(
            "return [...document.scripts].some(s => s.textContent.includes('alert(')) \
             || document.querySelectorAll('img[onerror]').length > 0",
            vec![],
        )
        .await?
        .convert()?;
    ensure!(
        !live,
        "the message page holds the message's script or onerror markup as live elements"
    );
    // The HTML body shows in a sandboxed frame (an opaque origin: scripts, but never our
    // origin), sanitized: its text, none of its active markup, and the frame as tall as the
    // message.
    let frame = ui.d.find(By::Css("iframe#html-body")).await?;
    let sandbox = frame.attr("sandbox").await?;
    ensure!(
        sandbox.as_deref() == Some("allow-scripts"),
        "the HTML body's frame must be sandboxed with scripts only (no same origin): sandbox={sandbox:?}"
    );
    frame.enter_frame().await?;
    let inside = wait_for(PAGE, "the HTML body in its frame", || async {
        let text = ui.d.find(By::Tag("body")).await?.text().await?;
        Ok(text.contains("Please click.").then_some(()))
    })
    .await;
    let active =
        ui.d.find_all(By::Css(
            "script:not(:last-child), img[onerror], [onload], [onclick]",
        ))
        .await;
    let content: Result<f64, _> =
        ui.d.execute(
            "const b = document.body, s = getComputedStyle(b); \
             return Math.ceil(b.getBoundingClientRect().height \
               + parseFloat(s.marginTop) + parseFloat(s.marginBottom));",
            vec![],
        )
        .await
        .and_then(|v| v.convert());
    ui.d.enter_default_frame().await?;
    inside?;
    let active = active?.len();
    ensure!(
        active == 0,
        "the sanitized HTML body still holds {active} script or event-handler element(s)"
    );
    let content = content?;
    wait_for(PAGE, "the frame sized to the message", || async {
        let shown: f64 =
            ui.d.execute(
                "return document.getElementById('html-body').getBoundingClientRect().height;",
                vec![],
            )
            .await?
            .convert()?;
        // The frame's own border adds a pixel or two.
        Ok((shown >= content && shown <= content + 12.0).then_some(()))
    })
    .await?;
    ui.assert_no_alert().await?;

    // 8. Back on the overview, everything is in place.
    ui.click("header nav a[href=\"/\"]").await?;
    ui.wait_path("the health overview", |p| p == "/").await?;
    ui.shot("health-after").await?;
    let account =
        ui.d.find(By::Css(format!(
            ".health-accounts tr[data-mailbox=\"{MAILBOX}\"] .badge"
        )))
        .await?
        .text()
        .await?;
    ensure!(
        account.trim().eq_ignore_ascii_case("active"),
        "the overview shows the account as {account:?}"
    );
    let receiver =
        ui.d.find(By::Css("#health-receivers tr[data-name=\"helpdesk\"]"))
            .await?;
    let receiver_state = receiver.find(By::Css(".badge")).await?.text().await?;
    ensure!(
        receiver_state.trim().starts_with("running ("),
        "the overview shows the receiver as {receiver_state:?}"
    );
    let delivered = receiver
        .find(By::Css("td:nth-child(5)"))
        .await?
        .text()
        .await?;
    ensure!(
        delivered.trim() == SUBJECTS.len().to_string(),
        "the overview shows {delivered:?} messages delivered by the receiver, expected {}",
        SUBJECTS.len()
    );
    ui.assert_no_alert().await?;

    // 9. Changing the tenant would revoke the account and stop the receiver: the page asks
    // first, naming both, and saves nothing until "Revoke and save".
    ui.goto(&format!("/applications/{app_id}")).await?;
    ui.fill("#application-form", "tenant", "fabrikam.onmicrosoft.com")
        .await?;
    ui.click("#application-form button#save").await?;
    let question = ui
        .wait_for_css(
            "the confirmation a revoking change asks for",
            "#confirm-revoke",
        )
        .await?
        .text()
        .await?;
    ui.shot("confirm-revoke").await?;
    ensure!(
        question.contains("revokes 1 account(s)")
            && question.contains(MAILBOX)
            && question.contains("helpdesk"),
        "the confirmation does not name the account and the receiver: {question:?}"
    );
    let kept = ui
        .field("#application-form", "tenant")
        .await?
        .value()
        .await?;
    ensure!(
        kept.as_deref() == Some("fabrikam.onmicrosoft.com"),
        "the form lost the typed tenant: {kept:?}"
    );
    let accounts = ui.s.app.list_accounts(None).await?;
    ensure!(
        accounts
            .iter()
            .all(|a| a.state == oauthimap_types::AccountState::Active),
        "an account was revoked before the confirmation: {accounts:?}"
    );
    ui.click("#application-form button#confirm-save").await?;
    let flash = ui
        .wait_for_css("the message after the confirmed change", ".flash.success")
        .await?
        .text()
        .await?;
    ui.shot("revoked").await?;
    ensure!(
        flash.contains("1 account(s) revoked"),
        "after confirming, the page says {flash:?}"
    );
    let account = ui.s.app.list_accounts(None).await?.remove(0);
    ensure!(
        account.state == oauthimap_types::AccountState::Revoked,
        "the confirmed change left the account {:?}",
        account.state
    );
    let receiver = ui.s.app.find_receiver("helpdesk").await?;
    ensure!(
        !receiver.fields.active,
        "the confirmed change left the receiver switched on"
    );

    // 10. The overview says the account needs a new sign-in, with the button on the entry;
    // signing in again goes through the provider and brings the receiver back.
    ui.click("header nav a[href=\"/\"]").await?;
    ui.wait_path("the health overview", |p| p == "/").await?;
    let button = format!("#attention button[data-reauthorize=\"{}\"]", account.id.0);
    ui.wait_for_css("the Sign in again button in Needs attention", &button)
        .await?;
    ui.shot("needs-sign-in").await?;
    ui.click(&button).await?;
    ui.wait_for_css("a success message after signing in again", ".flash.success")
        .await?;
    let flash = ui.d.find(By::Css(".flash.success")).await?.text().await?;
    ui.shot("signed-in-again").await?;
    ensure!(
        flash.contains("1 receiver(s) resumed"),
        "after signing in again the page says {flash:?}"
    );
    let receiver = ui.s.app.find_receiver("helpdesk").await?;
    ensure!(
        receiver.fields.active,
        "signing in again did not resume the receiver its tenant change had stopped"
    );

    // 11. The receiver's page leads to GLPI: one button makes a gateway password for it, shown
    // once on the account's page with the settings to type in.
    ui.goto(&format!("/receivers/{}", receiver.id.0)).await?;
    ui.wait_for_css("the GLPI section on the receiver's page", "#glpi")
        .await?;
    ui.click("#receiver-gateway-password button").await?;
    let shown = ui
        .wait_for_css("the new gateway password", "#new-gateway-password")
        .await?
        .text()
        .await?;
    ui.shot("gateway-password").await?;
    ensure!(
        shown.contains("glpi") && shown.contains("not shown again"),
        "the account page shows {shown:?}"
    );
    // On the account's page, the diagnostic's empty server fields name the receiver's server.
    let placeholder = ui
        .field("#diagnose-form", "host")
        .await?
        .attr("placeholder")
        .await?;
    ensure!(
        placeholder.as_deref() == Some("localhost"),
        "the diagnose form's server placeholder is {placeholder:?}, not the receiver's server"
    );
    let passwords = ui.s.app.gateway_passwords(None).await?;
    ensure!(
        passwords.iter().any(|p| p.name == "glpi"),
        "no gateway password named glpi was stored"
    );

    // 12. The provider revokes the grant (an admin in Entra, a password change): the stored
    // access token has not expired, but Diagnose must not call it fine.
    ensure!(
        ui.s.idp.revoke_user_tokens(MAILBOX) > 0,
        "the provider had no token of {MAILBOX} to revoke"
    );
    ui.fill("#diagnose-form", "host", "localhost").await?;
    ui.fill("#diagnose-form", "port", &imaps_port).await?;
    ui.select("#diagnose-form", "security", "tls").await?;
    ui.fill("#diagnose-form", "ca_file", &ca_file).await?;
    ui.click("#diagnose-form button#diagnose").await?;
    let report = ui
        .wait_for_css(
            "the diagnose report after the revocation",
            "#diagnose-report",
        )
        .await?;
    ui.shot("diagnose-after-revocation").await?;
    let text = report.text().await?;
    ensure!(
        report.attr("data-outcome").await?.as_deref() == Some("failed"),
        "diagnose after the provider revoked the grant says the login works:\n{text}"
    );
    let token = report
        .find(By::Css("tr[data-step=\"token\"]"))
        .await?
        .attr("data-outcome")
        .await?;
    ensure!(
        token.as_deref() != Some("ok"),
        "diagnose's token step says ok for a revoked token:\n{text}"
    );
    ui.assert_no_alert().await?;
    Ok(())
}

/// The browser, the service under test and the screenshots, with the steps' small verbs.
struct Ui {
    d: WebDriver,
    s: Arc<Service>,
    shots: Screenshots,
}

impl Ui {
    async fn goto(&self, path: &str) -> anyhow::Result<()> {
        self.d.goto(self.s.url(path)).await?;
        self.wait_loaded().await
    }

    async fn path(&self) -> anyhow::Result<String> {
        Ok(self.d.current_url().await?.path().to_owned())
    }

    /// Waits until the current path satisfies `ok` and the page has loaded; returns the path.
    async fn wait_path(&self, what: &str, ok: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let ok = &ok;
        let path = wait_for(PAGE, what, || async move {
            let path = self.path().await?;
            Ok(ok(&path).then_some(path))
        })
        .await;
        let path = match path {
            Ok(path) => path,
            Err(e) => return Err(e.context(format!("the browser is on {}", self.here().await))),
        };
        self.wait_loaded().await?;
        Ok(path)
    }

    /// The current URL, for error messages.
    async fn here(&self) -> String {
        self.d
            .current_url()
            .await
            .map_or_else(|e| format!("? ({e})"), |u| u.to_string())
    }

    async fn wait_loaded(&self) -> anyhow::Result<()> {
        wait_for(PAGE, "the page to finish loading", || async {
            let state: String = self
                .d
                .execute("return document.readyState", vec![])
                .await?
                .convert()?;
            Ok((state == "complete").then_some(()))
        })
        .await
    }

    async fn wait_for_css(&self, what: &str, css: &str) -> anyhow::Result<WebElement> {
        let element = wait_for(PAGE, what, || async {
            Ok(self.d.find_all(By::Css(css)).await?.into_iter().next())
        })
        .await?;
        self.wait_loaded().await?;
        Ok(element)
    }

    async fn field(&self, form: &str, name: &str) -> anyhow::Result<WebElement> {
        let css = format!("{form} [name=\"{name}\"]");
        match self.d.find(By::Css(&css)).await {
            Ok(e) => Ok(e),
            Err(e) => {
                Err(anyhow::Error::from(e).context(format!("no {css} on {}", self.here().await)))
            }
        }
    }

    /// Types `value` into a form field, opening the `<details>` it may be folded into.
    async fn fill(&self, form: &str, name: &str, value: &str) -> anyhow::Result<()> {
        let input = self.field(form, name).await?;
        if !input.is_displayed().await? {
            self.d
                .execute(
                    "const d = arguments[0].closest('details'); if (d && !d.open) { d.querySelector('summary').click(); }",
                    vec![input.to_json()?],
                )
                .await?;
        }
        input.clear().await?;
        input
            .send_keys(value)
            .await
            .with_context(|| format!("type into {form} [name={name}]"))?;
        Ok(())
    }

    async fn select(&self, form: &str, name: &str, value: &str) -> anyhow::Result<()> {
        let select = self.field(form, name).await?;
        SelectElement::new(&select)
            .await?
            .select_by_value(value)
            .await
            .with_context(|| format!("choose {value:?} in {form} select[name={name}]"))?;
        Ok(())
    }

    async fn click(&self, css: &str) -> anyhow::Result<()> {
        let element = match self.d.find(By::Css(css)).await {
            Ok(e) => e,
            Err(e) => {
                return Err(
                    anyhow::Error::from(e).context(format!("no {css} on {}", self.here().await))
                );
            }
        };
        element.click().await?;
        Ok(())
    }

    async fn shot(&mut self, step: &str) -> anyhow::Result<()> {
        self.assert_no_alert().await?;
        self.shots.take(&self.d, step).await?;
        Ok(())
    }

    /// Fails if a JavaScript dialog is open (the session leaves them open for this).
    async fn assert_no_alert(&self) -> anyhow::Result<()> {
        match self.d.get_alert_text().await {
            Ok(text) => bail!(
                "a JavaScript dialog is open on {}: {text:?}",
                self.here().await
            ),
            Err(e) if matches!(&*e, WebDriverErrorInner::NoSuchAlert(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Clicks `#copy-redirect-url` and reads the clipboard back (the clipboard permission is
    /// granted over CDP, as a user would grant it).
    async fn copy_redirect_url(&self) -> anyhow::Result<String> {
        self.d
            .cdp()
            .send_raw(
                "Browser.grantPermissions",
                serde_json::json!({
                    "origin": self.s.base,
                    "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
                }),
            )
            .await
            .context("grant clipboard permissions")?;
        self.click("button#copy-redirect-url").await?;
        wait_for(PAGE, "the copy button to say Copied", || async {
            let text = self
                .d
                .find(By::Css("button#copy-redirect-url"))
                .await?
                .text()
                .await?;
            Ok((text.trim() == "Copied").then_some(()))
        })
        .await?;
        let read = || async {
            let got = self
                .d
                .execute_async(
                    "const done = arguments[arguments.length - 1];\
                     navigator.clipboard.readText().then(t => done({text: t}), e => done({error: String(e)}));",
                    vec![],
                )
                .await?;
            let v = got.json();
            if let Some(error) = v["error"].as_str() {
                bail!("the clipboard cannot be read: {error}");
            }
            let text = v["text"].as_str().unwrap_or_default().to_owned();
            Ok((!text.is_empty()).then_some(text))
        };
        wait_for(PAGE, "the redirect URL on the clipboard", read).await
    }
}

/// `/prefix/123` -> `Some("123")`.
fn numbered(path: &str, prefix: &str) -> Option<String> {
    let rest = path.strip_prefix(prefix)?;
    (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())).then(|| rest.to_owned())
}

/// The failing page: screenshot and HTML.
async fn save_failure(driver: &WebDriver, dir: &Path) {
    if let Ok(png) = driver.screenshot_as_png().await {
        let _ = std::fs::write(dir.join("failure.png"), png);
    }
    if let Ok(url) = driver.current_url().await {
        eprintln!("the browser was on {url} when the journey failed");
    }
    if let Ok(html) = driver.source().await {
        let _ = std::fs::write(dir.join("failure.html"), html);
    }
}

/// The browser console (errors, CSP reports) for the artifacts.
async fn save_console(driver: &WebDriver, dir: &Path) {
    if let Ok(entries) = driver.browser_log().await {
        let lines: Vec<String> = entries
            .iter()
            .map(|e| format!("{} {}", e.level, e.message))
            .collect();
        let _ = std::fs::write(dir.join("browser-console.log"), lines.join("\n"));
    }
}
