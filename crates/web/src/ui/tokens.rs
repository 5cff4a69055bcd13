//! API tokens for the REST API and the token broker: the list (name, scopes, when created and
//! last used; never a value), the form that creates one and shows its value once, on the
//! response page itself (no flash cookie, no redirect URL carries it), and delete.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use oauthimap_app::Core;
use oauthimap_app::views::ApiToken;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::session::Admin;
use super::{Page, PageContext, error_page, failed, redirect_with_notice};

/// The scopes a token may carry, with what each allows.
const SCOPES: &[(&str, &str)] = &[
    (
        "tokens:read",
        "Fetch access tokens of accounts from the token broker (GET /api/v1/accounts/{id}/token)",
    ),
    (
        "admin",
        "The whole REST API: applications, accounts, receivers, messages, events, diagnostics, and tokens",
    ),
];

#[derive(Template)]
#[template(path = "api_tokens.html")]
struct TokensPage {
    page: Page,
    tokens: Vec<ApiToken>,
    /// The form: name as typed.
    name: String,
    /// The scope checkboxes: (scope, description, checked).
    scopes: Vec<(&'static str, &'static str, bool)>,
    error: Option<String>,
    /// The token just created: (name, value), shown this once.
    created: Option<(String, String)>,
}

async fn render(
    app: &Core,
    admin: &Admin,
    headers: &HeaderMap,
    name: String,
    checked: &[String],
    error: Option<String>,
    created: Option<(String, String)>,
) -> Response {
    let tokens = match app.list_api_tokens().await {
        Ok(t) => t,
        Err(e) => return error_page(Some(admin), &e),
    };
    let refused = error.is_some();
    let ctx = PageContext::new(app, admin, headers, "api-tokens", "API tokens");
    let page = ctx.page.clone();
    let t = TokensPage {
        page,
        tokens,
        name,
        scopes: SCOPES
            .iter()
            .map(|(s, d)| (*s, *d, checked.iter().any(|c| c == s)))
            .collect(),
        error,
        created,
    };
    if refused {
        ctx.render_refused(&t)
    } else {
        ctx.render(&t)
    }
}

pub async fn list(State(app): State<Core>, admin: Admin, headers: HeaderMap) -> Response {
    let checked = ["tokens:read".to_owned()];
    render(&app, &admin, &headers, String::new(), &checked, None, None).await
}

/// Creates a token from the form (`name`, and one `scope` per ticked box).
pub async fn create(
    State(app): State<Core>,
    admin: Admin,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let name = super::form_value(&fields, "name");
    let scopes = super::form_values(&fields, "scope");
    match app.create_api_token(&name, &scopes).await {
        Ok((token, value)) => {
            let created = Some((token.name, value.expose_secret().to_owned()));
            let checked = ["tokens:read".to_owned()];
            render(
                &app,
                &admin,
                &headers,
                String::new(),
                &checked,
                None,
                created,
            )
            .await
        }
        Err(e) if e.is_user_error() => {
            render(
                &app,
                &admin,
                &headers,
                name,
                &scopes,
                Some(e.to_string()),
                None,
            )
            .await
        }
        Err(e) => error_page(Some(&admin), &e),
    }
}

#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    name: String,
}

pub async fn delete(
    State(app): State<Core>,
    _admin: Admin,
    Form(form): Form<DeleteForm>,
) -> Response {
    match app.remove_api_token(&form.name).await {
        Ok(()) => redirect_with_notice(
            &app,
            "/api-tokens",
            &format!(
                "API token {} deleted; requests that use it are refused from now on.",
                form.name
            ),
        ),
        Err(e) => failed(&app, "/api-tokens", &e),
    }
}
