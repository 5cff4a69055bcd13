//! Minting tokens and building successful token responses, per provider.
//!
//! Microsoft: JWT-shaped v1.0 access tokens for the resource named by the scopes (`aud`, `scp` or
//! `roles`, `tid`, `upn`, `oid`, `appid`), v2.0 ID tokens, opaque rotating refresh tokens,
//! `ext_expires_in`. Google: opaque `ya29.` access tokens, `1//` refresh tokens, ID tokens with
//! `iss` `https://accounts.google.com`, canonical scope names in the answer. Validation of the
//! request happens before this module is called.

use serde_json::{Map, Value, json};

use crate::errors::OAuthError;
use crate::model::{ClientConfig, Flavour, UserConfig};
use crate::state::{AccessRecord, Idp, RefreshRecord, State};
use crate::util::{b64url, jws_hs256, now_unix, sha256, stable_guid, stable_numeric_id};

/// Scopes that are about the sign-in, not about a resource.
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];
/// Microsoft Graph's application id, the audience of tokens for scopes without a resource URI.
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Splits a space-separated scope parameter.
pub(crate) fn split_scopes(scope: &str) -> Vec<String> {
    scope.split_whitespace().map(str::to_owned).collect()
}

/// Whether `scopes` asks for `name`.
pub(crate) fn has_scope(scopes: &[String], name: &str) -> bool {
    scopes.iter().any(|s| s == name)
}

/// Microsoft: the resource (audience URI) and short permission name of one resource scope.
fn ms_resource_of(scope: &str) -> (String, String) {
    if scope.contains("://")
        && let Some((res, perm)) = scope.rsplit_once('/')
        && !res.ends_with(':')
        && !res.ends_with('/')
    {
        return (res.to_owned(), perm.to_owned());
    }
    ("https://graph.microsoft.com".to_owned(), scope.to_owned())
}

/// Microsoft's resource of a scope list: one resource only (`AADSTS28000` otherwise).
fn ms_single_resource(scopes: &[String]) -> Result<Option<(String, Vec<String>)>, OAuthError> {
    let mut resource: Option<String> = None;
    let mut perms = Vec::new();
    for s in scopes.iter().filter(|s| !OIDC_SCOPES.contains(&s.as_str())) {
        let (res, perm) = ms_resource_of(s);
        match &resource {
            Some(r) if !r.eq_ignore_ascii_case(&res) => {
                return Err(OAuthError::new(
                    "invalid_scope",
                    28_000,
                    &format!(
                        "Provided value for the input parameter scope is not valid because it contains more than one resource. Scope {} is not valid.",
                        scopes.join(" ")
                    ),
                    "Invalid scope",
                ));
            }
            _ => resource = Some(res),
        }
        perms.push(perm);
    }
    Ok(resource.map(|r| (r, perms)))
}

/// What a successful grant hands out.
#[derive(Debug)]
pub(crate) struct Issue<'a> {
    pub flavour: Flavour,
    pub client: &'a ClientConfig,
    /// `None`: app-only (client credentials).
    pub user: Option<&'a UserConfig>,
    pub scopes: &'a [String],
    pub tenant_id: &'a str,
    /// Issue a new refresh token.
    pub with_refresh: bool,
    pub nonce: Option<&'a str>,
    /// Grant family to join; a new one when `None`.
    pub grant_id: Option<u64>,
}

/// Mints the tokens, records them, and returns the JSON body of the success answer.
pub(crate) fn issue(idp: &Idp, st: &mut State, req: &Issue<'_>) -> Result<Value, OAuthError> {
    let now = now_unix();
    let lifetime = st.settings.access_token_lifetime_secs;
    let exp = now + lifetime;
    let grant_id = match req.grant_id {
        Some(g) => g,
        None => st.new_grant_id(),
    };
    let mut body = Map::new();
    body.insert("token_type".into(), json!("Bearer"));
    let (access_token, scope_out, aud, sub) = match req.flavour {
        Flavour::Microsoft => ms_access_token(idp, req, now, exp)?,
        Flavour::Google => google_access_token(idp, req),
    };
    if req.flavour == Flavour::Microsoft && req.user.is_none() {
        // Client credentials answers carry no scope (Microsoft's documented response).
    } else {
        body.insert("scope".into(), json!(scope_out));
    }
    body.insert("expires_in".into(), json!(lifetime));
    if req.flavour == Flavour::Microsoft {
        body.insert("ext_expires_in".into(), json!(lifetime));
    }
    body.insert("access_token".into(), json!(access_token));
    st.access.insert(
        access_token.clone(),
        AccessRecord {
            flavour: req.flavour,
            client_id: req.client.client_id.clone(),
            user_email: req.user.map(|u| u.email.clone()),
            scope: scope_out,
            aud,
            sub,
            iat: now,
            exp,
            revoked: false,
            grant_id,
        },
    );
    if let (true, Some(user)) = (req.with_refresh, req.user) {
        let rt = match req.flavour {
            Flavour::Microsoft => format!("1.A{}", idp.rng.token(160)),
            Flavour::Google => format!("1//0{}", idp.rng.token(72)),
        };
        st.refresh.insert(
            rt.clone(),
            RefreshRecord {
                flavour: req.flavour,
                client_id: req.client.client_id.clone(),
                user_email: user.email.clone(),
                scopes: req.scopes.to_vec(),
                tenant_id: req.tenant_id.to_owned(),
                grant_id,
                used: false,
                revoked: false,
                last_used: now,
            },
        );
        body.insert("refresh_token".into(), json!(rt));
    }
    if let (true, Some(user)) = (has_scope(req.scopes, "openid"), req.user) {
        let id_token = match req.flavour {
            Flavour::Microsoft => ms_id_token(idp, req, user, now),
            Flavour::Google => google_id_token(idp, req, user, now, &access_token),
        };
        body.insert("id_token".into(), json!(id_token));
    }
    Ok(Value::Object(body))
}

/// Microsoft access token: (token, scope answer, aud, sub).
fn ms_access_token(
    idp: &Idp,
    req: &Issue<'_>,
    now: u64,
    exp: u64,
) -> Result<(String, String, String, String), OAuthError> {
    let tid = req.tenant_id;
    let resource = ms_single_resource(req.scopes)?;
    let (aud, perms) =
        resource.unwrap_or_else(|| (GRAPH_APP_ID.to_owned(), vec!["User.Read".to_owned()]));
    let mut claims = json!({
        "aud": aud,
        "iss": format!("https://sts.windows.net/{tid}/"),
        "iat": now,
        "nbf": now,
        "exp": exp,
        "appid": req.client.client_id,
        "appidacr": "1",
        "tid": tid,
        "uti": idp.rng.token(16),
        "ver": "1.0",
    });
    let app_name = req
        .client
        .name
        .clone()
        .unwrap_or_else(|| req.client.client_id.clone());
    let sub;
    let scope_out;
    if let Some(user) = req.user {
        let oid = user_oid(user);
        sub = b64url(&sha256(
            format!("{}:{oid}", req.client.client_id).as_bytes(),
        ));
        let perms: Vec<&str> = perms
            .iter()
            .map(|p| {
                if p == ".default" {
                    "IMAP.AccessAsUser.All"
                } else {
                    p.as_str()
                }
            })
            .collect();
        claims["scp"] = json!(perms.join(" "));
        claims["oid"] = json!(oid);
        claims["sub"] = json!(sub);
        claims["upn"] = json!(user.email);
        claims["unique_name"] = json!(user.email);
        claims["name"] = json!(display_name(user));
        claims["app_displayname"] = json!(app_name);
        claims["amr"] = json!(["pwd"]);
        claims["acr"] = json!("1");
        let mut out: Vec<String> = req
            .scopes
            .iter()
            .filter(|s| !OIDC_SCOPES.contains(&s.as_str()))
            .cloned()
            .collect();
        if out.is_empty() {
            out.push("User.Read".to_owned());
        }
        out.extend(
            ["openid", "profile", "email"]
                .iter()
                .filter(|o| has_scope(req.scopes, o))
                .map(|o| (*o).to_owned()),
        );
        scope_out = out.join(" ");
    } else {
        let oid = stable_guid(&format!("sp:{}", req.client.client_id));
        sub = oid.clone();
        claims["roles"] = json!(req.client.app_roles);
        claims["oid"] = json!(oid);
        claims["sub"] = json!(oid);
        claims["idp"] = json!(format!("https://sts.windows.net/{tid}/"));
        claims["app_displayname"] = json!(app_name);
        scope_out = req.scopes.join(" ");
    }
    let token = jws_hs256(&idp.jwt_key, "fake-idp-access", &claims);
    Ok((token, scope_out, aud, sub))
}

/// Google access token: (token, scope answer, aud, sub).
fn google_access_token(idp: &Idp, req: &Issue<'_>) -> (String, String, String, String) {
    let token = format!("ya29.a0{}", idp.rng.token(120));
    let scope_out = req
        .scopes
        .iter()
        .map(|s| google_canonical_scope(s).to_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let sub = req.user.map(google_sub).unwrap_or_default();
    (token, scope_out, req.client.client_id.clone(), sub)
}

/// Google answers with the long names of the sign-in scopes.
pub(crate) fn google_canonical_scope(s: &str) -> &str {
    match s {
        "email" => "https://www.googleapis.com/auth/userinfo.email",
        "profile" => "https://www.googleapis.com/auth/userinfo.profile",
        other => other,
    }
}

/// Whether Google scopes (short or long names) include one.
pub(crate) fn google_has(scope: &str, short: &str) -> bool {
    let long = google_canonical_scope(short);
    scope.split_whitespace().any(|s| s == short || s == long)
}

fn ms_id_token(idp: &Idp, req: &Issue<'_>, user: &UserConfig, now: u64) -> String {
    let tid = req.tenant_id;
    let oid = user_oid(user);
    let mut claims = json!({
        "aud": req.client.client_id,
        "iss": format!("https://login.microsoftonline.com/{tid}/v2.0"),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "sub": b64url(&sha256(format!("{}:{oid}", req.client.client_id).as_bytes())),
        "tid": tid,
        "uti": idp.rng.token(16),
        "ver": "2.0",
    });
    if has_scope(req.scopes, "profile") {
        claims["name"] = json!(display_name(user));
        claims["oid"] = json!(oid);
        if !user.omit_preferred_username {
            claims["preferred_username"] = json!(user.email);
        }
    }
    if !user.omit_email_claim && has_scope(req.scopes, "email") {
        claims["email"] = json!(user.email);
    }
    if let Some(n) = req.nonce {
        claims["nonce"] = json!(n);
    }
    jws_hs256(&idp.jwt_key, "fake-idp-id", &claims)
}

fn google_id_token(
    idp: &Idp,
    req: &Issue<'_>,
    user: &UserConfig,
    now: u64,
    access_token: &str,
) -> String {
    let digest = sha256(access_token.as_bytes());
    let mut claims = json!({
        "iss": "https://accounts.google.com",
        "azp": req.client.client_id,
        "aud": req.client.client_id,
        "sub": google_sub(user),
        "at_hash": b64url(&digest[..16]),
        "iat": now,
        "exp": now + 3600,
    });
    if !user.omit_email_claim && has_scope(req.scopes, "email") {
        claims["email"] = json!(user.email);
        claims["email_verified"] = json!(true);
    }
    if has_scope(req.scopes, "profile") {
        claims["name"] = json!(display_name(user));
    }
    if let Some(n) = req.nonce {
        claims["nonce"] = json!(n);
    }
    jws_hs256(&idp.jwt_key, "fake-idp-id", &claims)
}

/// The stable Microsoft object id of a user.
pub(crate) fn user_oid(user: &UserConfig) -> String {
    stable_guid(&format!("oid:{}", user.email.to_ascii_lowercase()))
}

/// The stable Google account id of a user.
pub(crate) fn google_sub(user: &UserConfig) -> String {
    stable_numeric_id(&format!("google:{}", user.email.to_ascii_lowercase()))
}

/// The display name, falling back to the email's local part.
pub(crate) fn display_name(user: &UserConfig) -> String {
    user.display_name.clone().unwrap_or_else(|| {
        user.email
            .split('@')
            .next()
            .unwrap_or(&user.email)
            .to_owned()
    })
}
