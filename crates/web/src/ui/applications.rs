//! OAuth applications: the list, the form (with the redirect URL to register and the provider's
//! setup links), and the Accounts tab where authorizations are created: browser sign-in,
//! device code (for a phone or another computer) and app-only (Microsoft client credentials).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use oauthimap_app::views::DeviceStart;
use oauthimap_app::views::{Account, Application};
use oauthimap_app::{AppError, ApplicationInput, ApplicationView, Core};
use oauthimap_types::{Cloud, Provider};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::session::{Admin, FormAction};
use super::{Page, PageContext, error_page, failed, redirect_with_notice, when};

/// A select option: value, label, selected.
pub type Choice = (String, String, bool);

fn choices<T: Copy + PartialEq>(
    all: &[T],
    current: T,
    value: impl Fn(T) -> &'static str,
    label: impl Fn(T) -> &'static str,
) -> Vec<Choice> {
    all.iter()
        .map(|v| (value(*v).to_owned(), label(*v).to_owned(), *v == current))
        .collect()
}

pub fn provider_label(p: Provider) -> &'static str {
    match p {
        Provider::Microsoft => "Microsoft Entra ID (Office 365)",
        Provider::Google => "Google (Gmail, Workspace)",
        Provider::Generic => "Other OAuth 2.0 provider",
    }
}

fn cloud_label(c: Cloud) -> &'static str {
    match c {
        Cloud::Global => "Global (login.microsoftonline.com)",
        Cloud::UsGov => "US Government GCC High (login.microsoftonline.us)",
        Cloud::Dod => "US Government DoD (login.microsoftonline.us)",
        Cloud::China => "China, operated by 21Vianet (login.partner.microsoftonline.cn)",
    }
}

/// Application form values as typed (the client secret is never sent back).
#[derive(Debug, Default, Deserialize)]
pub struct AppForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    cloud: String,
    #[serde(default)]
    client_id: String,
    /// As typed; `SecretString` so that `Debug` cannot print it.
    #[serde(default)]
    client_secret: Option<SecretString>,
    #[serde(default)]
    clear_client_secret: Option<String>,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    endpoint_base: String,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    secret_expires: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    active: Option<String>,
    /// Set by the "Revoke and save" button of the confirmation a revoking change asks for.
    #[serde(default)]
    confirm: Option<String>,
}

impl AppForm {
    /// The secret typed into the form, if any (an empty field is none).
    fn typed_secret(&self) -> Option<&SecretString> {
        self.client_secret
            .as_ref()
            .filter(|s| !s.expose_secret().is_empty())
    }

    fn from_application(a: &Application) -> AppForm {
        let f = &a.fields;
        AppForm {
            name: f.name.clone(),
            provider: f.provider.as_str().into(),
            cloud: f.cloud.as_str().into(),
            client_id: f.client_id.clone(),
            client_secret: None,
            clear_client_secret: None,
            tenant: f.tenant.clone().unwrap_or_default(),
            endpoint_base: f.endpoints.base.clone().unwrap_or_default(),
            scopes: f.scopes.clone().unwrap_or_default(),
            secret_expires: f
                .secret_expires_at
                .map(|ms| when(Some(ms))[..10].to_owned())
                .unwrap_or_default(),
            comment: f.comment.clone(),
            active: f.active.then(|| "on".into()),
            confirm: None,
        }
    }

    fn input(&self) -> Result<ApplicationInput, AppError> {
        let provider = self
            .provider
            .parse::<Provider>()
            .map_err(|e| AppError::Invalid {
                field: "provider",
                message: e.to_string(),
            })?;
        let cloud = if self.cloud.is_empty() {
            None
        } else {
            Some(self.cloud.parse::<Cloud>().map_err(|e| AppError::Invalid {
                field: "cloud",
                message: e.to_string(),
            })?)
        };
        let secret_expires_at = if self.secret_expires.trim().is_empty() {
            Some(None)
        } else {
            Some(Some(super::parse_day(
                &self.secret_expires,
                "secret_expires",
            )?))
        };
        Ok(ApplicationInput {
            name: Some(self.name.clone()),
            active: Some(self.active.is_some()),
            provider: Some(provider),
            cloud,
            client_id: Some(self.client_id.clone()),
            client_secret: self.typed_secret().cloned(),
            clear_client_secret: self.clear_client_secret.is_some()
                && self.typed_secret().is_none(),
            tenant: Some(self.tenant.clone()),
            endpoint_base: Some(self.endpoint_base.clone()),
            scopes: Some(self.scopes.clone()),
            secret_expires_at,
            comment: Some(self.comment.clone()),
            confirm: self.confirm.is_some(),
            ..ApplicationInput::default()
        })
    }
}

#[derive(Template)]
#[template(path = "applications.html")]
struct ListPage {
    page: Page,
    applications: Vec<Application>,
}

#[derive(Template)]
#[template(path = "application_form.html")]
struct FormPage {
    page: Page,
    /// `None` for a new application.
    view: Option<ApplicationView>,
    form: AppForm,
    providers: Vec<Choice>,
    clouds: Vec<Choice>,
    has_secret: bool,
    redirect_url: String,
    error: Option<String>,
    /// Each refused field's input name and what is wrong with it, shown next to it.
    field_errors: Vec<(&'static str, String)>,
    /// What a revoking change would do, to confirm before it is saved.
    confirm: Option<String>,
}

/// The form's input name and visible label of each field the core names.
fn field_input(field: &str) -> Option<(&'static str, &'static str)> {
    Some(match field {
        "name" => ("name", "Name"),
        "provider" => ("provider", "Provider"),
        "cloud" => ("cloud", "National cloud"),
        "client_id" => ("client_id", "Client ID"),
        "client_secret" => ("client_secret", "Client secret"),
        "tenant" => ("tenant", "Tenant ID"),
        "endpoint_base" => ("endpoint_base", "Endpoint base URL"),
        "scopes" => ("scopes", "Scopes"),
        "comment" => ("comment", "Comment"),
        "secret_expires" => ("secret_expires", "Client secret expires on"),
        _ => return None,
    })
}

impl FormPage {
    fn build(
        page: Page,
        view: Option<ApplicationView>,
        form: AppForm,
        redirect_url: String,
        error: Option<String>,
    ) -> FormPage {
        let provider = form.provider.parse().unwrap_or(Provider::Microsoft);
        let cloud = form.cloud.parse().unwrap_or(Cloud::Global);
        FormPage {
            providers: choices(Provider::ALL, provider, Provider::as_str, provider_label),
            clouds: choices(Cloud::ALL, cloud, Cloud::as_str, cloud_label),
            has_secret: view
                .as_ref()
                .is_some_and(|v| v.application.has_client_secret),
            page,
            view,
            form,
            redirect_url,
            error,
            field_errors: Vec::new(),
            confirm: None,
        }
    }

    fn error_for(&self, input: &str) -> Option<&str> {
        self.field_errors
            .iter()
            .find(|(i, _)| *i == input)
            .map(|(_, m)| m.as_str())
    }

    fn id(&self) -> i64 {
        self.view.as_ref().map_or(0, |v| v.application.id.0)
    }

    fn is_microsoft(&self) -> bool {
        self.form.provider == "microsoft"
    }
}

pub async fn list(State(app): State<Core>, admin: Admin, headers: HeaderMap) -> Response {
    match app.list_applications().await {
        Ok(applications) => {
            let ctx =
                PageContext::new(&app, &admin, &headers, "applications", "OAuth applications");
            let page = ctx.page.clone();
            ctx.render(&ListPage { page, applications })
        }
        Err(e) => error_page(Some(&admin), &e),
    }
}

pub async fn new(State(app): State<Core>, admin: Admin, headers: HeaderMap) -> Response {
    let form = AppForm {
        provider: "microsoft".into(),
        cloud: "global".into(),
        active: Some("on".into()),
        ..AppForm::default()
    };
    form_page(&app, &admin, &headers, None, form, None)
}

/// The application form: new (`view` is `None`) or existing, again with the error that refused
/// it (422; the typed client secret is never sent back).
fn form_page(
    app: &Core,
    admin: &Admin,
    headers: &HeaderMap,
    view: Option<ApplicationView>,
    mut form: AppForm,
    error: Option<&AppError>,
) -> Response {
    let title = view.as_ref().map_or_else(
        || "Add an OAuth application".to_owned(),
        |v| v.application.fields.name.clone(),
    );
    let redirect = view.as_ref().map_or_else(
        || app.redirect_url().to_string(),
        |v| v.redirect_url.clone(),
    );
    let typed_secret = form.typed_secret().is_some();
    form.client_secret = None;
    form.confirm = None;
    let ctx = PageContext::new(app, admin, headers, "applications", title);
    let page = ctx.page.clone();
    if let Some(AppError::NeedsConfirmation { what, .. }) = error {
        // Not a mistake: a question. The form keeps every value, and the button that answers
        // it sends them again with the confirmation.
        let mut t = FormPage::build(page, view, form, redirect, None);
        let mut chars = what.chars();
        let mut text: String = chars
            .next()
            .into_iter()
            .flat_map(char::to_uppercase)
            .collect();
        text.push_str(chars.as_str());
        text.push('.');
        if typed_secret {
            text.push_str(" Type the new client secret again before you confirm.");
        }
        t.confirm = Some(text);
        return ctx.render(&t);
    }
    let (banner, field_errors) = error.map(|e| super::refusal(e, field_input)).unzip();
    let mut t = FormPage::build(page, view, form, redirect, banner);
    t.field_errors = field_errors.unwrap_or_default();
    if typed_secret && t.error_for("client_secret").is_none() {
        // The secret is never sent back to the browser: say so, rather than empty it silently.
        t.field_errors.push((
            "client_secret",
            "not saved, and never sent back: type it again".to_owned(),
        ));
    }
    if error.is_some() {
        ctx.render_refused(&t)
    } else {
        ctx.render(&t)
    }
}

pub async fn create(
    State(app): State<Core>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<AppForm>,
) -> Response {
    let result = match form.input() {
        Ok(input) => app.add_application(&input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(view) => redirect_with_notice(
            &app,
            &format!("/applications/{}", view.application.id.0),
            &format!(
                "Application {} saved. Register the redirect URL below at the provider, then create an authorization.",
                view.application.fields.name
            ),
        ),
        Err(e) if e.is_user_error() => form_page(&app, &admin, &headers, None, form, Some(&e)),
        Err(e) => error_page(Some(&admin), &e),
    }
}

pub async fn show(
    State(app): State<Core>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    match app.application_view(&id.to_string()).await {
        Ok(view) => {
            let form = AppForm::from_application(&view.application);
            form_page(&app, &admin, &headers, Some(view), form, None)
        }
        Err(e) => error_page(Some(&admin), &e),
    }
}

pub async fn update(
    State(app): State<Core>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<AppForm>,
) -> Response {
    let result = match form.input() {
        Ok(input) => app.update_application(&id.to_string(), &input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok((view, report)) => {
            let mut message = format!("Application {} saved.", view.application.fields.name);
            if report.accounts_revoked > 0 {
                let _ = write!(
                    message,
                    " {} account(s) revoked and {} receiver(s) deactivated: create the authorizations again.",
                    report.accounts_revoked, report.receivers_deactivated
                );
            } else if report.receivers_deactivated > 0 {
                let _ = write!(
                    message,
                    " {} receiver(s) deactivated.",
                    report.receivers_deactivated
                );
            }
            if report.receivers_reactivated > 0 {
                let _ = write!(
                    message,
                    " {} receiver(s) re-activated.",
                    report.receivers_reactivated
                );
            }
            redirect_with_notice(&app, &format!("/applications/{id}"), &message)
        }
        Err(e) if e.is_user_error() => match app.application_view(&id.to_string()).await {
            Ok(view) => form_page(&app, &admin, &headers, Some(view), form, Some(&e)),
            Err(e) => error_page(Some(&admin), &e),
        },
        Err(e) => error_page(Some(&admin), &e),
    }
}

pub async fn delete(State(app): State<Core>, admin: Admin, Path(id): Path<i64>) -> Response {
    match app.remove_application(&id.to_string(), true).await {
        Ok(a) => redirect_with_notice(
            &app,
            "/applications",
            &format!(
                "Application {} deleted, with its accounts and receivers.",
                a.fields.name
            ),
        ),
        Err(e) if e.is_user_error() => failed(&app, &format!("/applications/{id}"), &e),
        Err(e) => error_page(Some(&admin), &e),
    }
}

#[derive(Template)]
#[template(path = "application_accounts.html")]
struct AccountsPage {
    page: Page,
    view: ApplicationView,
    accounts: Vec<Account>,
}

impl AccountsPage {
    fn id(&self) -> i64 {
        self.view.application.id.0
    }
    fn is_microsoft(&self) -> bool {
        self.view.application.fields.provider == Provider::Microsoft
    }
    fn has_device(&self) -> bool {
        self.view.profile.device_url.is_some()
    }
}

/// Origin of the provider's sign-in page, which the authorize form's redirect goes to.
fn sign_in_origin(view: &ApplicationView) -> String {
    view.profile.authorize_url.origin().ascii_serialization()
}

pub async fn accounts(
    State(app): State<Core>,
    admin: Admin,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let view = match app.application_view(&id.to_string()).await {
        Ok(v) => v,
        Err(e) => return error_page(Some(&admin), &e),
    };
    let accounts = match app.list_accounts(Some(&id.to_string())).await {
        Ok(a) => a,
        Err(e) => return error_page(Some(&admin), &e),
    };
    let origin = sign_in_origin(&view);
    let ctx = PageContext::new(
        &app,
        &admin,
        &headers,
        "applications",
        format!("{} · accounts", view.application.fields.name),
    );
    let page = ctx.page.clone();
    let mut r = ctx.render(&AccountsPage {
        page,
        view,
        accounts,
    });
    r.extensions_mut().insert(FormAction(origin));
    r
}

#[derive(Deserialize)]
pub struct AuthorizeForm {
    #[serde(default)]
    login_hint: String,
    #[serde(default)]
    mailbox: String,
}

fn opt(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

/// Starts a browser sign-in: off to the provider, back through `/oauth/callback`.
pub async fn authorize(
    State(app): State<Core>,
    _admin: Admin,
    Path(id): Path<i64>,
    Form(form): Form<AuthorizeForm>,
) -> Response {
    match app
        .start_sign_in(&id.to_string(), opt(&form.mailbox), opt(&form.login_hint))
        .await
    {
        Ok(start) => Redirect::to(&start.url).into_response(),
        Err(e) => failed(&app, &format!("/applications/{id}/accounts"), &e),
    }
}

pub async fn app_only(
    State(app): State<Core>,
    _admin: Admin,
    Path(id): Path<i64>,
    Form(form): Form<AuthorizeForm>,
) -> Response {
    let back = format!("/applications/{id}/accounts");
    match app.add_app_only(&id.to_string(), form.mailbox.trim()).await {
        Ok(a) => redirect_with_notice(
            &app,
            &back,
            &format!(
                "App-only access to {} works: a token was issued.",
                a.mailbox
            ),
        ),
        Err(e) => failed(&app, &back, &e),
    }
}

/// How long a device-code sign-in's page stays available (the codes live about 15 minutes).
const DEVICE_FLOW_KEPT: std::time::Duration = std::time::Duration::from_hours(1);

/// Device-code sign-ins this process is waiting for, by a random id.
#[derive(Debug, Default)]
pub struct DeviceFlows {
    flows: Mutex<HashMap<String, DeviceFlow>>,
}

#[derive(Debug, Clone)]
struct DeviceFlow {
    application_id: i64,
    /// When it started; flows older than [`DEVICE_FLOW_KEPT`] are forgotten.
    started: std::time::Instant,
    start: Arc<DeviceStart>,
    outcome: Option<Result<String, String>>,
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage {
    page: Page,
    application_id: i64,
    flow: String,
    user_code: String,
    verification_uri: String,
    outcome: Option<Result<String, String>>,
}

pub async fn device_start(
    State(app): State<Core>,
    _admin: Admin,
    Extension(flows): Extension<Arc<DeviceFlows>>,
    Path(id): Path<i64>,
    Form(form): Form<AuthorizeForm>,
) -> Response {
    let back = format!("/applications/{id}/accounts");
    let (application, start) = match app.start_device_sign_in(&id.to_string()).await {
        Ok(s) => s,
        Err(e) => return failed(&app, &back, &e),
    };
    let flow_id = match oauthimap_app::random_id() {
        Ok(f) => f,
        Err(e) => return failed(&app, &back, &e),
    };
    let start = Arc::new(start);
    {
        let mut map = flows
            .flows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, f| f.started.elapsed() < DEVICE_FLOW_KEPT);
        map.insert(
            flow_id.clone(),
            DeviceFlow {
                application_id: id,
                started: std::time::Instant::now(),
                start: start.clone(),
                outcome: None,
            },
        );
    }
    let mailbox = opt(&form.mailbox).map(str::to_owned);
    let (app2, flows2, key) = (app.clone(), flows.clone(), flow_id.clone());
    tokio::spawn(async move {
        let outcome = app2
            .finish_device_sign_in(&application, &start, mailbox.as_deref())
            .await
            .map(|a| a.mailbox)
            .map_err(|e| e.to_string());
        if let Some(f) = flows2
            .flows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(&key)
        {
            f.outcome = Some(outcome);
        }
    });
    Redirect::to(&format!("/applications/{id}/device/{flow_id}")).into_response()
}

pub async fn device_status(
    State(app): State<Core>,
    admin: Admin,
    headers: HeaderMap,
    Extension(flows): Extension<Arc<DeviceFlows>>,
    Path((id, flow)): Path<(i64, String)>,
) -> Response {
    let found = flows
        .flows
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&flow)
        .filter(|f| f.application_id == id)
        .cloned();
    let Some(found) = found else {
        return failed(
            &app,
            &format!("/applications/{id}/accounts"),
            &AppError::Conflict("that device sign-in is over or unknown; start a new one".into()),
        );
    };
    let ctx = PageContext::new(
        &app,
        &admin,
        &headers,
        "applications",
        "Sign in on another device",
    );
    let page = ctx.page.clone();
    ctx.render(&DevicePage {
        page,
        application_id: id,
        flow,
        user_code: found.start.user_code.clone(),
        verification_uri: found.start.verification_uri.clone(),
        outcome: found.outcome,
    })
}
