//! API tokens for the REST API and the HTTP token broker: created once (the value is shown only
//! then), stored as a SHA-256 hash, checked per request with their scopes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauthimap_store::{ApiToken, Level, NewEvent};
use secrecy::{ExposeSecret, SecretString};

use crate::{AppError, Core, Result};

/// Scopes an API token may carry.
pub const SCOPES: &[&str] = &["tokens:read", "admin"];
const PREFIX: &str = "oimp_";

/// SHA-256 as lowercase hex, how token, session and link hashes are stored: the MIME crate's
/// (one helper for the workspace).
pub(crate) use oauthimap_mime::sha256_hex;

pub(crate) fn random_token(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| AppError::Io {
        action: "draw random bytes".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// A random identifier (128 bits, base64url) for short-lived things such as a pending sign-in.
pub fn random_id() -> Result<String> {
    random_token(16)
}

impl Core {
    /// Creates an API token; the returned value is shown once and never stored.
    pub async fn create_api_token(
        &self,
        name: &str,
        scopes: &[String],
    ) -> Result<(ApiToken, SecretString)> {
        let name = name.trim();
        if name.is_empty() {
            return Err(AppError::invalid("name", "must not be empty"));
        }
        if scopes.is_empty() {
            return Err(AppError::invalid(
                "scopes",
                format!("give at least one of {}", SCOPES.join(", ")),
            ));
        }
        if let Some(bad) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
            return Err(AppError::invalid(
                "scopes",
                format!("unknown scope {bad:?}; use {}", SCOPES.join(", ")),
            ));
        }
        let value = format!("{PREFIX}{}", random_token(32)?);
        let record = self
            .store()
            .insert_api_token(name, &sha256_hex(&value), &scopes.join(" "))
            .await?;
        self.store()
            .record_event(&NewEvent {
                level: Level::Info,
                kind: "api_token.created",
                application_id: None,
                account_id: None,
                receiver_id: None,
                message: format!("API token {name} created with scopes {}", record.scopes),
            })
            .await?;
        Ok((record, SecretString::from(value)))
    }

    /// The API token with this value, if it exists and carries `scope`.
    pub async fn check_api_token(
        &self,
        value: &SecretString,
        scope: &str,
    ) -> Result<Option<ApiToken>> {
        Ok(self
            .find_api_token(value)
            .await?
            .filter(|t| t.has_scope(scope)))
    }

    /// The API token `value` is, if it is one (counted as used), whatever its scopes: so a
    /// caller can tell an unknown token (401) from a known one that lacks a scope (403).
    pub async fn find_api_token(&self, value: &SecretString) -> Result<Option<ApiToken>> {
        let value = value.expose_secret();
        if !value.starts_with(PREFIX) {
            return Ok(None);
        }
        Ok(self.store().use_api_token(&sha256_hex(value)).await?)
    }

    pub async fn list_api_tokens(&self) -> Result<Vec<ApiToken>> {
        Ok(self.store().api_tokens().await?)
    }

    pub async fn remove_api_token(&self, name: &str) -> Result<()> {
        Ok(self.store().delete_api_token(name).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::sha256_hex;

    #[test]
    fn hashes_are_lowercase_hex_sha256_whatever_the_input_type() {
        // FIPS 180-2's "abc": stored token, session and link hashes keep this form, so existing
        // rows still match after the helper moved.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex("abc"), abc);
        assert_eq!(sha256_hex(String::from("abc")), abc);
        assert_eq!(sha256_hex(b"abc"), abc);
        assert_eq!(sha256_hex(&b"abc"[..]), abc);
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
