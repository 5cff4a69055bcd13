//! Who signed in: the `email`, `preferred_username` or `upn` claim of the ID token (received
//! directly from the token endpoint over TLS, so read without checking its signature, as OpenID
//! Connect allows), or Google's userinfo endpoint.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::client::{Grant, OAuthClient};
use crate::errors::OAuthError;
use crate::profile::Profile;

/// The claims of a JWT's payload, without verifying it. `None` if it is not a JWT.
pub fn jwt_claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn email_from_claims(claims: &serde_json::Map<String, Value>) -> Option<String> {
    ["email", "preferred_username", "upn"]
        .iter()
        .filter_map(|k| claims.get(*k).and_then(Value::as_str))
        .map(str::trim)
        .find(|v| v.contains('@'))
        .map(str::to_ascii_lowercase)
}

impl OAuthClient {
    /// The signed-in user's address, from the ID token or the userinfo endpoint.
    pub async fn identity(&self, profile: &Profile, grant: &Grant) -> Result<String, OAuthError> {
        if let Some(email) = grant
            .id_token
            .as_ref()
            .and_then(|t| jwt_claims(t.expose_secret()))
            .as_ref()
            .and_then(email_from_claims)
        {
            return Ok(email);
        }
        if let Some(userinfo) = &profile.userinfo_url {
            return self
                .userinfo_email(userinfo, &grant.tokens.access_token)
                .await;
        }
        Err(OAuthError::Identity(
            "the provider sent no ID token with an email, preferred_username or upn claim; \
             make sure the application requests the openid and email scopes"
                .into(),
        ))
    }

    async fn userinfo_email(
        &self,
        url: &url::Url,
        token: &SecretString,
    ) -> Result<String, OAuthError> {
        let response = self
            .http()
            .get(url.clone())
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(|e| {
                OAuthError::Identity(format!(
                    "the userinfo endpoint did not answer: {}",
                    e.without_url()
                ))
            })?;
        if !response.status().is_success() {
            return Err(OAuthError::Identity(format!(
                "the userinfo endpoint answered HTTP {}",
                response.status().as_u16()
            )));
        }
        let claims: serde_json::Map<String, Value> = response
            .json()
            .await
            .map_err(|_| OAuthError::Identity("the userinfo answer is not JSON".into()))?;
        email_from_claims(&claims).ok_or_else(|| {
            OAuthError::Identity("the userinfo answer has no email; add the email scope".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_and_email_preference() {
        let payload = URL_SAFE_NO_PAD
            .encode(br#"{"preferred_username":"Help@Contoso.com","upn":"x@y","name":"Help"}"#);
        let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig");
        let claims = jwt_claims(&token).unwrap();
        assert_eq!(
            email_from_claims(&claims).as_deref(),
            Some("help@contoso.com")
        );
        assert!(jwt_claims("opaque-token").is_none());
        let no_mail =
            URL_SAFE_NO_PAD.encode(br#"{"name":"n","preferred_username":"not-an-address"}"#);
        assert_eq!(
            email_from_claims(&jwt_claims(&format!("a.{no_mail}.b")).unwrap()),
            None
        );
    }
}
