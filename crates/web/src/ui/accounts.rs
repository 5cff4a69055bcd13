//! One authorized account: its token state, the receivers using it, recent events, and the
//! Diagnose, Re-authorize and Delete actions. Diagnose renders the same report as
//! `oauthimap diagnose` (tokens redacted).

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use oauthimap_app::views::{Account, Event, GatewayPassword, Receiver};
use oauthimap_app::{
    AccountSelector, Core, DiagnoseOptions, DiagnosticReport, EventQuery, Outcome,
};
use oauthimap_types::{AccountId, GrantKind, Security};
use serde::Deserialize;

use super::session::{Admin, FormAction};
use super::{Page, PageContext, error_page, failed, redirect_with_notice};

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    page: Page,
    account: Account,
    receivers: Vec<Receiver>,
    events: Vec<Event>,
    form: DiagnoseForm,
    report: Option<DiagnosticReport>,
    /// The account's gateway passwords, where GLPI reaches the gateway, and a password just
    /// created (shown once).
    passwords: Vec<GatewayPassword>,
    endpoints: Vec<oauthimap_app::GatewayEndpoint>,
    new_password: Option<(String, String)>,
}

impl AccountPage {
    fn is_app_only(&self) -> bool {
        self.account.grant_kind == GrantKind::ClientCredentials
    }

    /// The server the diagnostic tests when its fields are left empty: the account's first
    /// receiver's, else the provider's (named as such, since this page does not know it).
    fn diagnose_host(&self) -> String {
        self.receivers.first().map_or_else(
            || "the provider's IMAP server".to_owned(),
            |r| r.fields.host.clone(),
        )
    }

    fn diagnose_port(&self) -> String {
        self.receivers
            .first()
            .map_or_else(|| "993".to_owned(), |r| r.fields.port.to_string())
    }
}

/// Where the diagnostic connects; empty fields take the receiver's, then the provider's.
#[derive(Debug, Default, Deserialize)]
pub struct DiagnoseForm {
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    security: String,
    #[serde(default)]
    ca_file: String,
    #[serde(default)]
    folder: String,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // askama passes fields by reference
fn outcome_class(o: &Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Warning => "warn",
        Outcome::Failed => "fail",
        Outcome::Skipped => "inactive",
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // askama passes fields by reference
fn outcome_text(o: &Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Warning => "warning",
        Outcome::Failed => "failed",
        Outcome::Skipped => "skipped",
    }
}

async fn render(
    app: &Core,
    admin: &Admin,
    headers: &HeaderMap,
    id: i64,
    form: DiagnoseForm,
    report: Option<DiagnosticReport>,
) -> Response {
    render_with(app, admin, headers, id, (form, report), None).await
}

async fn render_with(
    app: &Core,
    admin: &Admin,
    headers: &HeaderMap,
    id: i64,
    (form, report): (DiagnoseForm, Option<DiagnosticReport>),
    new_password: Option<(String, String)>,
) -> Response {
    let account = match app
        .find_account(&AccountSelector::new(id.to_string(), None))
        .await
    {
        Ok(a) => a,
        Err(e) => return error_page(Some(admin), &e),
    };
    let receivers = match app.list_receivers().await {
        Ok(r) => r
            .into_iter()
            .filter(|r| r.fields.account_id == Some(AccountId(id)))
            .collect(),
        Err(e) => return error_page(Some(admin), &e),
    };
    let events = app
        .events(EventQuery {
            account: Some(AccountId(id)),
            before: None,
            limit: 10,
        })
        .await
        .map(|page| page.items)
        .unwrap_or_default();
    let origin = match app
        .application_view(&account.application_id.to_string())
        .await
    {
        Ok(v) => v.profile.authorize_url.origin().ascii_serialization(),
        Err(e) => return error_page(Some(admin), &e),
    };
    let passwords = match app
        .gateway_passwords(Some(&AccountSelector::new(id.to_string(), None)))
        .await
    {
        Ok(p) => p,
        Err(e) => return error_page(Some(admin), &e),
    };
    let shows_secret = new_password.is_some();
    let ctx = PageContext::new(app, admin, headers, "applications", account.mailbox.clone());
    let page = ctx.page.clone();
    let mut r = ctx.render(&AccountPage {
        page,
        account,
        receivers,
        events,
        form,
        report,
        passwords,
        endpoints: app.gateway_endpoints(),
        new_password,
    });
    if shows_secret {
        r.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
    }
    r.extensions_mut().insert(FormAction(origin));
    r
}

pub async fn show(
    State(app): State<Core>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    render(&app, &admin, &headers, id, DiagnoseForm::default(), None).await
}

pub async fn diagnose(
    State(app): State<Core>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<DiagnoseForm>,
) -> Response {
    let text = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    };
    let port = match form.port.trim() {
        "" => None,
        p => match p.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => {
                return failed(
                    &app,
                    &format!("/accounts/{id}"),
                    &oauthimap_app::AppError::Invalid {
                        field: "port",
                        message: format!("{p:?} is not a port number (1-65535), such as 993"),
                    },
                );
            }
        },
    };
    let security = match form.security.trim() {
        "" => None,
        s => match s.parse::<Security>() {
            Ok(s) => Some(s),
            Err(e) => {
                return failed(
                    &app,
                    &format!("/accounts/{id}"),
                    &oauthimap_app::AppError::Invalid {
                        field: "security",
                        message: e.to_string(),
                    },
                );
            }
        },
    };
    let options = DiagnoseOptions {
        host: text(&form.host),
        port,
        security,
        mechanism: None,
        folder: text(&form.folder),
        ca_file: text(&form.ca_file),
        timeout: None,
        smtp: false,
    };
    match app
        .diagnose(&AccountSelector::new(id.to_string(), None), &options)
        .await
    {
        Ok(report) => render(&app, &admin, &headers, id, form, Some(report)).await,
        Err(e) => failed(&app, &format!("/accounts/{id}"), &e),
    }
}

/// Signs in again for this account (same application, same mailbox).
pub async fn reauthorize(State(app): State<Core>, _admin: Admin, Path(id): Path<i64>) -> Response {
    let back = format!("/accounts/{id}");
    let account = match app
        .find_account(&AccountSelector::new(id.to_string(), None))
        .await
    {
        Ok(a) => a,
        Err(e) => return failed(&app, &back, &e),
    };
    if account.grant_kind == GrantKind::ClientCredentials {
        return match app
            .add_app_only(&account.application_id.to_string(), &account.mailbox)
            .await
        {
            Ok(_) => redirect_with_notice(
                &app,
                &back,
                "App-only access renewed: a new token was issued.",
            ),
            Err(e) => failed(&app, &back, &e),
        };
    }
    let shared = (!account.identity.eq_ignore_ascii_case(&account.mailbox))
        .then_some(account.mailbox.as_str());
    match app
        .start_sign_in(
            &account.application_id.to_string(),
            shared,
            Some(&account.identity),
        )
        .await
    {
        Ok(start) => Redirect::to(&start.url).into_response(),
        Err(e) => failed(&app, &back, &e),
    }
}

pub async fn delete(State(app): State<Core>, _admin: Admin, Path(id): Path<i64>) -> Response {
    match app
        .remove_account(&AccountSelector::new(id.to_string(), None))
        .await
    {
        Ok((account, receivers)) => redirect_with_notice(
            &app,
            &format!("/applications/{}/accounts", account.application_id),
            &format!(
                "Account {} deleted; {receivers} receiver(s) using it are paused.",
                account.mailbox
            ),
        ),
        Err(e) => failed(&app, &format!("/accounts/{id}"), &e),
    }
}

/// Creates a gateway password for this account and shows it once.
pub async fn add_gateway_password(
    State(app): State<Core>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let name = super::form_value(&fields, "name");
    let protocols = super::form_values(&fields, "protocol");
    let back = format!("/accounts/{id}");
    match app
        .add_gateway_password(
            &AccountSelector::new(id.to_string(), None),
            &name,
            &protocols,
            None,
        )
        .await
    {
        Ok((record, password)) => {
            use secrecy::ExposeSecret as _;
            let shown = Some((record.name, password.expose_secret().to_owned()));
            render_with(
                &app,
                &admin,
                &headers,
                id,
                (DiagnoseForm::default(), None),
                shown,
            )
            .await
        }
        Err(e) => failed(&app, &back, &e),
    }
}

/// Revokes one of this account's gateway passwords.
pub async fn remove_gateway_password(
    State(app): State<Core>,
    _admin: Admin,
    Path(id): Path<i64>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let name = super::form_value(&fields, "name");
    let back = format!("/accounts/{id}");
    match app
        .remove_gateway_password(&AccountSelector::new(id.to_string(), None), &name)
        .await
    {
        Ok(p) => redirect_with_notice(&app, &back, &format!("Gateway password {} revoked", p.name)),
        Err(e) => failed(&app, &back, &e),
    }
}
