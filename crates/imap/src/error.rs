//! The one error type of this crate: every message says what could not be done, to which server
//! (host:port) and as which user, and, for the failures admins meet, the likely fix. Each error
//! is transient or permanent (`ImapError::kind`); `needs_reauthentication` marks a session that
//! ended because its token expired.

use std::path::PathBuf;
use std::time::Duration;

use oauthimap_types::{FailureKind, Mechanism, TokenError};

use crate::protocol::ProtocolError;
use crate::sasl::{SaslErrorDetails, SaslMechanism};

/// The server and mailbox a session is for; shown in every error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Mailbox address (`user=` of the SASL exchange).
    pub user: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} as {}", self.host, self.port, self.user)
    }
}

/// Response codes (RFC 5530) after which trying again later may work.
const TRANSIENT_CODES: &[&str] = &["UNAVAILABLE", "INUSE", "LIMIT", "SERVERBUG", "OVERQUOTA"];

/// Everything that can go wrong with an IMAP session.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// DNS gave no usable address.
    #[error("cannot resolve {target}: {reason}")]
    Resolve { target: Target, reason: String },
    /// TCP connect failed.
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: Target, reason: String },
    /// The server did not answer in time.
    #[error("cannot {action} on {target}: no answer within {} s", after.as_secs_f32())]
    Timeout {
        target: Target,
        action: String,
        after: Duration,
    },
    /// `security = plain` to a non-loopback address.
    #[error(
        "cannot connect to {target} without TLS: plain IMAP is only allowed to loopback addresses; \
         use security tls (port 993) or starttls (port 143)"
    )]
    PlaintextRefused { target: Target },
    /// `security = starttls` but the server does not offer it.
    #[error(
        "cannot start TLS with {target}: the server does not offer STARTTLS and we refuse to continue \
         in plaintext; use security tls (usually port 993) or check the port"
    )]
    StartTlsNotOffered { target: Target },
    /// The server's certificate did not verify.
    #[error(
        "cannot verify the TLS certificate of {target}{}: {reason}; {hint}",
        describe_cert(subject.as_deref(), issuer.as_deref())
    )]
    UntrustedCertificate {
        target: Target,
        subject: Option<String>,
        issuer: Option<String>,
        reason: String,
        hint: String,
    },
    /// Any other TLS failure (protocol version, handshake, configuration).
    #[error("cannot establish TLS with {target}: {reason}")]
    Tls { target: Target, reason: String },
    /// The extra CA file is missing or holds no certificate.
    #[error("cannot read the extra CA file {} for {target}: {reason}", path.display())]
    ExtraCa {
        target: Target,
        path: PathBuf,
        reason: String,
    },
    /// The token source had no token.
    #[error("cannot get an access token to log in to {target}: {source}")]
    Token {
        target: Target,
        #[source]
        source: TokenError,
    },
    /// The server offers none of the mechanisms we may use.
    #[error(
        "cannot authenticate to {target}: the server does not offer SASL {wanted} (it offers: {})",
        if offered.is_empty() { "none".to_owned() } else { offered.join(" ") }
    )]
    NoMechanism {
        target: Target,
        wanted: Mechanism,
        offered: Vec<String>,
    },
    /// The server refused the token (after one forced refresh).
    #[error(
        "cannot authenticate to {target} with {mechanism}: the server refused the access token{} \
         ({response}{}); likely causes: the token lacks the IMAP scope (Microsoft: \
         https://outlook.office.com/IMAP.AccessAsUser.All, or IMAP.AccessAsApp for app-only; Google: \
         https://mail.google.com/), IMAP is disabled for the mailbox, or {} is not the token's user \
         and the token has no permission on that mailbox",
        if *refreshed { " even after a forced refresh" } else { "" },
        details.as_ref().map(|d| format!("; server said: {d}")).unwrap_or_default(),
        target.user
    )]
    AuthenticationFailed {
        target: Target,
        mechanism: SaslMechanism,
        response: String,
        details: Option<SaslErrorDetails>,
        refreshed: bool,
    },
    /// `NO [UNAVAILABLE]`: the server cannot validate tokens right now.
    #[error(
        "cannot authenticate to {target}: the server cannot check tokens right now ({response}); \
         this is temporary and says nothing against the token"
    )]
    AuthenticationUnavailable { target: Target, response: String },
    /// A command got NO or BAD.
    #[error("cannot {action} on {target}: the server answered {response}{hint}")]
    CommandFailed {
        target: Target,
        action: String,
        response: String,
        code: Option<String>,
        hint: String,
    },
    /// `* BYE` in the middle of a session.
    #[error(
        "cannot {action} on {target}: the server ended the session ({reason}){}",
        if *token_expired { "; the access token expired: log in again with a fresh token" } else { "" }
    )]
    SessionEnded {
        target: Target,
        action: String,
        reason: String,
        token_expired: bool,
    },
    /// Network I/O failed.
    #[error("cannot {action} on {target}: {source}")]
    Io {
        target: Target,
        action: String,
        #[source]
        source: std::io::Error,
    },
    /// The server sent something we cannot read.
    #[error("cannot {action} on {target}: {source}")]
    Protocol {
        target: Target,
        action: String,
        #[source]
        source: ProtocolError,
    },
    /// A caller's argument cannot be sent (e.g. a folder name with a line break).
    #[error("cannot {action} on {target}: {reason}")]
    InvalidArgument {
        target: Target,
        action: String,
        reason: String,
    },
}

fn describe_cert(subject: Option<&str>, issuer: Option<&str>) -> String {
    match (subject, issuer) {
        (Some(s), Some(i)) => format!(" (certificate subject {s}, issued by {i})"),
        (Some(s), None) => format!(" (certificate subject {s})"),
        (None, Some(i)) => format!(" (certificate issued by {i})"),
        (None, None) => String::new(),
    }
}

impl ImapError {
    /// Whether waiting (and retrying with the same token and settings) may help.
    pub fn kind(&self) -> FailureKind {
        match self {
            ImapError::Resolve { .. }
            | ImapError::Connect { .. }
            | ImapError::Timeout { .. }
            | ImapError::AuthenticationUnavailable { .. }
            | ImapError::SessionEnded { .. }
            | ImapError::Io { .. }
            | ImapError::Protocol { .. } => FailureKind::Transient,
            ImapError::Token { source, .. } => source.kind,
            ImapError::CommandFailed { code, .. } => {
                let name = code
                    .as_deref()
                    .and_then(|c| c.split_ascii_whitespace().next())
                    .map(str::to_ascii_uppercase);
                if name.is_some_and(|n| TRANSIENT_CODES.contains(&n.as_str())) {
                    FailureKind::Transient
                } else {
                    FailureKind::Permanent
                }
            }
            ImapError::PlaintextRefused { .. }
            | ImapError::StartTlsNotOffered { .. }
            | ImapError::UntrustedCertificate { .. }
            | ImapError::Tls { .. }
            | ImapError::ExtraCa { .. }
            | ImapError::NoMechanism { .. }
            | ImapError::AuthenticationFailed { .. }
            | ImapError::InvalidArgument { .. } => FailureKind::Permanent,
        }
    }

    /// True when the server ended the session because the access token expired (Exchange's
    /// `* BYE ... AccessTokenExpired`): the caller should log in again, not report a failure.
    pub fn needs_reauthentication(&self) -> bool {
        matches!(
            self,
            ImapError::SessionEnded {
                token_expired: true,
                ..
            }
        )
    }

    /// The server and user the error is about.
    pub fn target(&self) -> Option<&Target> {
        match self {
            ImapError::Resolve { target, .. }
            | ImapError::Connect { target, .. }
            | ImapError::Timeout { target, .. }
            | ImapError::PlaintextRefused { target }
            | ImapError::StartTlsNotOffered { target }
            | ImapError::UntrustedCertificate { target, .. }
            | ImapError::Tls { target, .. }
            | ImapError::ExtraCa { target, .. }
            | ImapError::Token { target, .. }
            | ImapError::NoMechanism { target, .. }
            | ImapError::AuthenticationFailed { target, .. }
            | ImapError::AuthenticationUnavailable { target, .. }
            | ImapError::CommandFailed { target, .. }
            | ImapError::SessionEnded { target, .. }
            | ImapError::Io { target, .. }
            | ImapError::Protocol { target, .. }
            | ImapError::InvalidArgument { target, .. } => Some(target),
        }
    }
}

/// Whether a `BYE` text says the access token expired (Exchange Online:
/// `Session invalidated - AccessTokenExpired`).
pub(crate) fn bye_means_token_expired(text: &str) -> bool {
    text.to_ascii_lowercase().contains("accesstokenexpired")
}

/// A hint for well-known command failures, appended to `CommandFailed` messages.
pub(crate) fn command_hint(response: &str) -> String {
    if response.contains("User is authenticated but not connected") {
        "; the token's user has no access to this mailbox: check user= and the mailbox permission \
         (Add-MailboxPermission ... FullAccess for app-only access)"
            .to_owned()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            host: "outlook.office365.com".into(),
            port: 993,
            user: "help@contoso.com".into(),
        }
    }

    #[test]
    fn messages_name_server_user_and_fix() {
        let err = ImapError::AuthenticationFailed {
            target: target(),
            mechanism: SaslMechanism::Xoauth2,
            response: "NO AUTHENTICATE failed.".into(),
            details: None,
            refreshed: true,
        };
        let text = err.to_string();
        assert!(text.starts_with("cannot authenticate to outlook.office365.com:993 as help@contoso.com with XOAUTH2: the server refused the access token even after a forced refresh (NO AUTHENTICATE failed.)"), "{text}");
        assert!(text.contains("IMAP.AccessAsUser.All") && text.contains("IMAP is disabled"));
        assert_eq!(err.kind(), FailureKind::Permanent);

        let err = ImapError::UntrustedCertificate {
            target: target(),
            subject: Some("CN=localhost".into()),
            issuer: Some("CN=Private CA".into()),
            reason: "invalid peer certificate: UnknownIssuer".into(),
            hint: "add the issuing CA with the receiver's extra-CA option".into(),
        };
        assert_eq!(
            err.to_string(),
            "cannot verify the TLS certificate of outlook.office365.com:993 as help@contoso.com \
             (certificate subject CN=localhost, issued by CN=Private CA): invalid peer certificate: \
             UnknownIssuer; add the issuing CA with the receiver's extra-CA option"
        );
    }

    #[test]
    fn classification() {
        let unavailable = ImapError::AuthenticationUnavailable {
            target: target(),
            response: "NO [UNAVAILABLE] Temporary authentication failure.".into(),
        };
        assert_eq!(unavailable.kind(), FailureKind::Transient);
        let failed = |code: Option<&str>| ImapError::CommandFailed {
            target: target(),
            action: "select INBOX".into(),
            response: "NO".into(),
            code: code.map(str::to_owned),
            hint: String::new(),
        };
        assert_eq!(failed(Some("INUSE")).kind(), FailureKind::Transient);
        assert_eq!(failed(Some("NONEXISTENT")).kind(), FailureKind::Permanent);
        assert_eq!(failed(None).kind(), FailureKind::Permanent);
        let bye = ImapError::SessionEnded {
            target: target(),
            action: "idle".into(),
            reason: "Session invalidated - AccessTokenExpired".into(),
            token_expired: bye_means_token_expired("Session invalidated - AccessTokenExpired"),
        };
        assert!(bye.needs_reauthentication());
        assert_eq!(bye.kind(), FailureKind::Transient);
        assert!(bye.to_string().contains("log in again"));
        assert!(!bye_means_token_expired("Server shutting down."));
        assert!(command_hint("BAD User is authenticated but not connected.").contains("user="));
    }
}
