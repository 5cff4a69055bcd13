//! The token endpoints: Microsoft `POST /{tenant}/oauth2/v2.0/token`, Google `POST /token`.
//!
//! Order of work for every request: count it by `grant_type`, apply the configured delay, apply an
//! armed HTTP fault (429/5xx) or queued OAuth error fault, authenticate the client
//! (`client_secret_post` or HTTP Basic), then run the grant: `authorization_code` (single use,
//! redirect URI and PKCE S256 checks), `refresh_token` (Microsoft rotates, Google does not),
//! device code (see `device.rs`) and Microsoft `client_credentials`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::device;
use crate::errors::{OAuthError, json_no_store};
use crate::model::{ClientConfig, Flavour, TokenErrorFault, TokenHttpFault};
use crate::params::{Params, basic_credentials};
use crate::state::{Idp, State as Memory, is_specific_tenant};
use crate::tokens::{Issue, has_scope, issue, split_scopes};
use crate::util::{ms_timestamp, now_unix, pkce_s256};

/// The device code grant type (RFC 8628).
pub(crate) const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// `POST /{tenant}/oauth2/v2.0/token`
pub(crate) async fn ms_token(
    State(idp): State<Arc<Idp>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(&idp, Flavour::Microsoft, &tenant, &headers, &body).await
}

/// `POST /token`
pub(crate) async fn google_token(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(&idp, Flavour::Google, "", &headers, &body).await
}

async fn token(
    idp: &Idp,
    flavour: Flavour,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let p = Params::parse(body);
    let grant_type = p.get("grant_type").unwrap_or_default().to_owned();
    let delay = idp.lock().settings.token_delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut st = idp.lock();
    let result = if let Some(f) = st.take_http_fault() {
        Err(http_fault_error(&f))
    } else if let Some(f) = st.take_token_error(&grant_type) {
        Err(error_fault(f))
    } else {
        run_grant(idp, &mut st, flavour, tenant, headers, &p, &grant_type)
    };
    st.count_token(&grant_type, result.is_ok());
    drop(st);
    match result {
        Ok(body) => json_no_store(body),
        Err(e) => e.render(flavour, &idp.rng),
    }
}

fn http_fault_error(f: &TokenHttpFault) -> OAuthError {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut e = match status.as_u16() {
        429 => OAuthError::new(
            "temporarily_unavailable",
            50_196,
            "The server terminated an operation because it encountered a client request loop. Please contact your app vendor.",
            "Rate Limit Exceeded",
        ),
        500 => OAuthError::new(
            "server_error",
            90_033,
            "A transient error has occurred. Please try again.",
            "Backend Error",
        ),
        _ => OAuthError::new(
            "temporarily_unavailable",
            90_033,
            "A transient error has occurred. Please try again.",
            "Service Unavailable",
        ),
    };
    e.status = status;
    e.retry_after = f.retry_after;
    e
}

fn error_fault(f: TokenErrorFault) -> OAuthError {
    let description = f.description.unwrap_or_else(|| f.error.clone());
    OAuthError {
        status: f
            .status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::BAD_REQUEST),
        error: f.error,
        code: f.code,
        ms_description: description.clone(),
        google_description: Some(description),
        retry_after: None,
    }
}

fn run_grant(
    idp: &Idp,
    st: &mut Memory,
    flavour: Flavour,
    tenant: &str,
    headers: &HeaderMap,
    p: &Params,
    grant_type: &str,
) -> Result<Value, OAuthError> {
    if p.repeated.is_some() {
        return Err(OAuthError::new(
            "invalid_request",
            9_002_313,
            "Invalid request. Request is malformed or invalid.",
            "Bad Request",
        ));
    }
    if grant_type.is_empty() {
        return Err(OAuthError::missing("grant_type"));
    }
    // Microsoft's device flow is a public client flow: a confidential client may poll without secret.
    let secret_optional = flavour == Flavour::Microsoft && grant_type == DEVICE_GRANT;
    let client = authenticate(st, flavour, tenant, headers, p, secret_optional)?;
    match grant_type {
        "authorization_code" => authorization_code(idp, st, flavour, &client, p),
        "refresh_token" => refresh(idp, st, flavour, &client, p),
        DEVICE_GRANT => device::poll(idp, st, flavour, &client, p),
        "client_credentials" if flavour == Flavour::Microsoft => {
            client_credentials(idp, st, tenant, &client, p)
        }
        other => Err(OAuthError::new(
            "unsupported_grant_type",
            70_003,
            &format!("The app requested an unsupported grant type '{other}'."),
            &format!("Invalid grant_type: {other}"),
        )),
    }
}

/// Client authentication by `client_secret_post` or HTTP Basic.
pub(crate) fn authenticate(
    st: &Memory,
    flavour: Flavour,
    tenant: &str,
    headers: &HeaderMap,
    p: &Params,
    secret_optional: bool,
) -> Result<ClientConfig, OAuthError> {
    let (client_id, secret) = if let Some((id, secret)) = basic_credentials(headers) {
        if p.get("client_id").is_some_and(|c| c != id) {
            return Err(invalid_client_mismatch());
        }
        (id, Some(secret))
    } else {
        let Some(id) = p.get("client_id") else {
            let mut e = OAuthError::missing("client_id");
            e.google_description = Some("Could not determine client ID from request.".into());
            return Err(e);
        };
        (id.to_owned(), p.get("client_secret").map(str::to_owned))
    };
    let Some(client) = st
        .clients
        .get(&client_id)
        .filter(|c| c.flavour == flavour)
        .cloned()
    else {
        return Err(unknown_client(&client_id, tenant));
    };
    match (&client.client_secret, secret) {
        (Some(expected), Some(given)) if *expected == given => Ok(client),
        (Some(_), Some(_)) => Err(OAuthError::new(
            "invalid_client",
            7_000_215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
            "Unauthorized",
        )
        .status(StatusCode::UNAUTHORIZED)),
        (Some(_), None) if secret_optional => Ok(client),
        (Some(_), None) => Err(match flavour {
            Flavour::Microsoft => OAuthError::new(
                "invalid_client",
                7_000_218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                "",
            )
            .status(StatusCode::UNAUTHORIZED),
            Flavour::Google => OAuthError::new(
                "invalid_request",
                900_144,
                "",
                "client_secret is missing.",
            ),
        }),
        (None, Some(_)) => Err(OAuthError::new(
            "invalid_client",
            700_025,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
            "Unauthorized",
        )
        .status(StatusCode::UNAUTHORIZED)),
        (None, None) => Ok(client),
    }
}

fn invalid_client_mismatch() -> OAuthError {
    OAuthError::new(
        "invalid_request",
        9_002_313,
        "Invalid request. Request is malformed or invalid. The client_id in the body differs from the one in the Authorization header.",
        "client_id mismatch",
    )
}

/// Microsoft `unauthorized_client` / `AADSTS700016`; Google `invalid_client` (401).
pub(crate) fn unknown_client(client_id: &str, tenant: &str) -> OAuthError {
    let mut e = OAuthError::new(
        "unauthorized_client",
        700_016,
        &format!(
            "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        ),
        "The OAuth client was not found.",
    );
    if tenant.is_empty() {
        e.error = "invalid_client".into();
        e.status = StatusCode::UNAUTHORIZED;
    }
    e
}

/// `invalid_grant` with Microsoft and Google texts.
fn invalid_grant(code: u32, ms: &str, google: &str) -> OAuthError {
    OAuthError::new("invalid_grant", code, ms, google)
}

fn authorization_code(
    idp: &Idp,
    st: &mut Memory,
    flavour: Flavour,
    client: &ClientConfig,
    p: &Params,
) -> Result<Value, OAuthError> {
    let Some(code) = p.get("code") else {
        return Err(OAuthError::missing("code"));
    };
    if st.redeemed_codes.contains(code) {
        return Err(invalid_grant(
            54_005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
            "Bad Request",
        ));
    }
    let Some(rec) = st.codes.get(code) else {
        return Err(invalid_grant(
            9_002_313,
            "Invalid request. Request is malformed or invalid.",
            "Malformed auth code.",
        ));
    };
    if rec.client_id != client.client_id || rec.flavour != flavour {
        return Err(invalid_grant(
            70_000,
            "Provided grant is invalid or malformed.",
            "Bad Request",
        ));
    }
    let Some(rec) = st.codes.remove(code) else {
        return Err(OAuthError::missing("code"));
    };
    st.redeemed_codes.insert(code.to_owned());
    if rec.expires_at <= now_unix() {
        return Err(invalid_grant(
            70_008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
            "Bad Request",
        ));
    }
    let given_redirect = p.get("redirect_uri").unwrap_or_default();
    if given_redirect != rec.redirect_uri {
        let mut e = invalid_grant(
            500_112,
            &format!(
                "The reply address '{given_redirect}' does not match the reply address '{}' provided when requesting Authorization code.",
                rec.redirect_uri
            ),
            "Bad Request",
        );
        if flavour == Flavour::Google {
            e.error = "redirect_uri_mismatch".into();
        }
        return Err(e);
    }
    if let Some(challenge) = &rec.challenge {
        match p.get("code_verifier") {
            None => {
                return Err(invalid_grant(
                    50_148,
                    "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
                    "Missing code verifier.",
                ));
            }
            Some(v) if !valid_verifier(v) || pkce_s256(v) != *challenge => {
                return Err(invalid_grant(
                    501_481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                    "Invalid code verifier.",
                ));
            }
            Some(_) => {}
        }
    }
    let Some(user) = st.user(&rec.user_email).cloned() else {
        return Err(revoked_grant());
    };
    issue(
        idp,
        st,
        &Issue {
            flavour,
            client,
            user: Some(&user),
            scopes: &rec.scopes,
            tenant_id: &rec.tenant_id,
            with_refresh: rec.with_refresh,
            nonce: rec.nonce.as_deref(),
            grant_id: None,
        },
    )
}

/// RFC 7636 section 4.1: 43 to 128 characters from the unreserved set.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn revoked_grant() -> OAuthError {
    invalid_grant(
        50_173,
        "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
        "Token has been expired or revoked.",
    )
}

fn refresh(
    idp: &Idp,
    st: &mut Memory,
    flavour: Flavour,
    client: &ClientConfig,
    p: &Params,
) -> Result<Value, OAuthError> {
    let Some(token) = p.get("refresh_token") else {
        return Err(OAuthError::missing("refresh_token"));
    };
    let now = now_unix();
    let revoke_used = st.settings.revoke_used_refresh_tokens;
    let max_idle = st.settings.refresh_token_max_idle_secs;
    let Some(rec) = st.refresh.get(token).cloned() else {
        return Err(invalid_grant(
            9_002_313,
            "Invalid request. Request is malformed or invalid.",
            "Bad Request",
        ));
    };
    if rec.client_id != client.client_id || rec.flavour != flavour {
        let mut e = invalid_grant(
            70_000,
            "Provided grant is invalid or malformed.",
            "Unauthorized",
        );
        if flavour == Flavour::Google {
            e.error = "unauthorized_client".into();
        }
        return Err(e);
    }
    if rec.revoked {
        return Err(revoked_grant());
    }
    if rec.used && revoke_used {
        return Err(invalid_grant(
            70_000,
            "Provided grant is invalid or malformed. The refresh token was already used to obtain a new one.",
            "Token has been expired or revoked.",
        ));
    }
    if let Some(idle) = max_idle
        && now.saturating_sub(rec.last_used) > idle
    {
        {
            return Err(invalid_grant(
                700_082,
                &format!(
                    "The refresh token has expired due to inactivity. The token was issued on {} and was inactive for {} seconds.",
                    ms_timestamp(rec.last_used),
                    now.saturating_sub(rec.last_used)
                ),
                "Token has been expired or revoked.",
            ));
        }
    }
    let Some(user) = st.user(&rec.user_email).cloned() else {
        return Err(revoked_grant());
    };
    let scopes = match (flavour, p.get("scope")) {
        (Flavour::Microsoft, Some(s)) => split_scopes(s),
        _ => rec.scopes.clone(),
    };
    if let Some(r) = st.refresh.get_mut(token) {
        r.last_used = now;
        if flavour == Flavour::Microsoft {
            r.used = true;
        }
    }
    let with_refresh = flavour == Flavour::Microsoft && has_scope(&rec.scopes, "offline_access");
    issue(
        idp,
        st,
        &Issue {
            flavour,
            client,
            user: Some(&user),
            scopes: &scopes,
            tenant_id: &rec.tenant_id,
            with_refresh,
            nonce: None,
            grant_id: Some(rec.grant_id),
        },
    )
}

fn client_credentials(
    idp: &Idp,
    st: &mut Memory,
    tenant: &str,
    client: &ClientConfig,
    p: &Params,
) -> Result<Value, OAuthError> {
    if !is_specific_tenant(tenant) {
        return Err(OAuthError::new(
            "invalid_request",
            50_059,
            "No tenant-identifying information found in either the request or implied by any provided credentials.",
            "",
        ));
    }
    if client.client_secret.is_none() {
        return Err(OAuthError::new(
            "invalid_client",
            7_000_218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            "",
        )
        .status(StatusCode::UNAUTHORIZED));
    }
    let Some(scope) = p.get("scope") else {
        return Err(OAuthError::missing("scope"));
    };
    let scopes = split_scopes(scope);
    if scopes.len() != 1 || !scopes[0].ends_with("/.default") {
        return Err(OAuthError::new(
            "invalid_scope",
            1_002_012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
            "",
        ));
    }
    let tid = Idp::tenant_id(st, tenant, None);
    issue(
        idp,
        st,
        &Issue {
            flavour: Flavour::Microsoft,
            client,
            user: None,
            scopes: &scopes,
            tenant_id: &tid,
            with_refresh: false,
            nonce: None,
            grant_id: None,
        },
    )
}
