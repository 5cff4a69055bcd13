//! Provider errors, classified: transient (retry with backoff, keep the token) or permanent (a
//! human must act), with a hint for the codes admins meet most.

use oauthimap_types::FailureKind;

/// Why an OAuth request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    /// The provider refused with an OAuth error (`invalid_grant`, `AADSTS…`).
    #[error("cannot {action}: the provider answered {error}{}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default(), hint.map(|h| format!(" (hint: {h})")).unwrap_or_default())]
    Provider {
        action: &'static str,
        error: String,
        description: Option<String>,
        /// The Microsoft error number (the digits of `AADSTS…`), when present.
        aadsts: Option<u32>,
        hint: Option<&'static str>,
        kind: FailureKind,
    },
    #[error("cannot {action}: the provider answered HTTP {status}{}", retry_after.map(|s| format!(", retry after {s}s")).unwrap_or_default())]
    Http {
        action: &'static str,
        status: u16,
        retry_after: Option<u64>,
    },
    #[error("cannot {action}: {message}")]
    Transport {
        action: &'static str,
        message: String,
    },
    #[error("cannot {action}: the provider's answer is not a valid OAuth response")]
    BadResponse {
        action: &'static str,
        kind: FailureKind,
    },
    #[error("{0}")]
    Setup(String),
    #[error("cannot read who signed in: {0}")]
    Identity(String),
}

impl OAuthError {
    /// Whether waiting and retrying may help.
    pub fn kind(&self) -> FailureKind {
        match self {
            OAuthError::Provider { kind, .. } | OAuthError::BadResponse { kind, .. } => *kind,
            OAuthError::Http { .. } | OAuthError::Transport { .. } => FailureKind::Transient,
            OAuthError::Setup(_) | OAuthError::Identity(_) => FailureKind::Permanent,
        }
    }

    /// The provider's OAuth error code (`invalid_grant`), if it sent one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            OAuthError::Provider { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Seconds the provider asked us to wait.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            OAuthError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What to do about the Microsoft errors admins meet most.
pub fn aadsts_hint(code: u32) -> Option<&'static str> {
    Some(match code {
        50011 => {
            "the redirect URL is not registered: add exactly the URL `oauthimap app show` prints, platform Web"
        }
        700_025 => {
            "the app is treated as a public client: register the redirect URL under platform Web, not Mobile and desktop"
        }
        7_000_218 => {
            "a client secret or assertion is required: for the device flow, enable Allow public client flows"
        }
        50194 => {
            "the application is single-tenant: set --tenant to its Directory (tenant) ID instead of organizations/common"
        }
        9_002_325..=9_002_327 => {
            "the redirect URL is registered as a single-page application: register it under platform Web"
        }
        65001 => {
            "the permissions were not consented: grant admin consent for the application, or sign in and accept"
        }
        7_000_215 => "the client secret is wrong: paste the secret's Value, not its Secret ID",
        7_000_222 => {
            "the client secret has expired: create a new one and update the application (accounts are kept)"
        }
        700_016 => {
            "the client ID is not known in this tenant: check the Application (client) ID and the tenant"
        }
        700_082 => {
            "the refresh token expired after 90 days without use: authorize the account again"
        }
        70043 | 50173 => {
            "the sign-in is no longer valid (conditional access or password change): authorize again"
        }
        50076 | 50079 => "multi-factor authentication is required: authorize again in a browser",
        50059 | 90002 => "the tenant is wrong or missing: use the Directory (tenant) ID",
        700_024 | 700_027 => "the client assertion is invalid: check the certificate",
        50034 => "the user does not exist in this tenant",
        53003 => "blocked by a conditional access policy: ask your Entra administrator",
        _ => return None,
    })
}

/// The digits after `AADSTS` in a description.
pub fn aadsts_code(description: &str) -> Option<u32> {
    let start = description.find("AADSTS")? + 6;
    let digits: String = description[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Classifies an OAuth error response.
pub fn classify_provider_error(
    action: &'static str,
    error: &str,
    description: Option<&str>,
) -> OAuthError {
    let aadsts = description.and_then(aadsts_code);
    let kind = match error {
        "temporarily_unavailable" | "server_error" | "slow_down" | "authorization_pending" => {
            FailureKind::Transient
        }
        _ => FailureKind::Permanent,
    };
    let hint = aadsts.and_then(aadsts_hint).or(match error {
        "invalid_client" => Some("check the client ID and secret of the application"),
        "invalid_grant" if aadsts.is_none() => {
            Some("the authorization was revoked or has expired: authorize the account again")
        }
        "redirect_uri_mismatch" => Some("register exactly the URL `oauthimap app show` prints"),
        "expired_token" => Some("the device code expired: start the sign-in again"),
        "access_denied" | "authorization_declined" => Some("the sign-in was refused or cancelled"),
        _ => None,
    });
    // Microsoft descriptions carry trace and correlation ids on later lines: keep the first line.
    let description = description.map(|d| d.lines().next().unwrap_or(d).trim().to_owned());
    OAuthError::Provider {
        action,
        error: error.to_owned(),
        description,
        aadsts,
        hint,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsoft_errors_get_codes_and_hints() {
        let e = classify_provider_error(
            "refresh the access token",
            "invalid_grant",
            Some(
                "AADSTS700082: The refresh token has expired due to inactivity.\r\nTrace ID: 1\r\nCorrelation ID: 2",
            ),
        );
        assert_eq!(e.kind(), FailureKind::Permanent);
        let text = e.to_string();
        assert!(
            text.contains("AADSTS700082: The refresh token has expired due to inactivity."),
            "{text}"
        );
        assert!(!text.contains("Trace ID"), "{text}");
        assert!(text.contains("90 days"), "{text}");
        assert!(matches!(
            e,
            OAuthError::Provider {
                aadsts: Some(700_082),
                ..
            }
        ));
        assert_eq!(
            classify_provider_error("x", "temporarily_unavailable", None).kind(),
            FailureKind::Transient
        );
        assert_eq!(aadsts_code("AADSTS50011: The redirect URI"), Some(50011));
        assert_eq!(aadsts_code("no code"), None);
    }
}
