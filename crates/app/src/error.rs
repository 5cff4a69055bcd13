//! The one error type of the core. It separates the caller's mistakes (bad input, unknown names:
//! exit code 2, HTTP 4xx) from failures of the system (database, key file, I/O).

use oauthimap_crypto::CryptoError;
use oauthimap_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Input that cannot be accepted; `field` names the setting, the message says how to fix it.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{what} {key:?} does not exist{hint}")]
    NotFound {
        what: &'static str,
        key: String,
        hint: String,
    },
    /// Several fields that cannot be accepted, each with how to fix it (a form shows them all at
    /// once, next to their fields).
    #[error("{}", .0.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; "))]
    Fields(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    /// A change with consequences the caller has not confirmed yet (revoking authorizations,
    /// stopping receivers). Nothing was saved; `what` says what would happen.
    #[error(
        "{what}; nothing was saved: confirm to go ahead (--confirm on the command line, \"confirm\": true over REST)"
    )]
    NeedsConfirmation {
        what: String,
        accounts: Vec<String>,
        receivers: Vec<String>,
    },
    /// Credentials or a link that do not grant access.
    #[error("{0}")]
    Denied(String),
    /// Too many failed attempts; try again after this many seconds.
    #[error("too many failed attempts; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Config(#[from] oauthimap_config::ConfigError),
    /// The identity provider refused or failed (the message carries its code and a hint).
    #[error(transparent)]
    Provider(oauthimap_oauth::OAuthError),
    /// No token could be had for an account.
    #[error("{0}")]
    Token(oauthimap_types::TokenError),
    /// Work that ran but could not finish for a reason outside the request (a sink that is down,
    /// a server that cannot be reached): exit code 1.
    #[error("{0}")]
    Unfinished(String),
    /// A diagnostic ran and found a failing step (the report says which).
    #[error("the diagnostic found a problem")]
    DiagnosticFailed,
    /// Stored data this version cannot read back, or that no longer matches its checksum: a
    /// failure on our side (exit code 1, HTTP 500), never the caller's to fix.
    #[error("{0}")]
    Damaged(String),
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        source: std::io::Error,
    },
}

/// `r`'s value, or `None` with its error noted in `errors`: validation that checks every field
/// and reports every mistake at once (see [`AppError::all_of`]).
pub(crate) fn keep<T>(errors: &mut Vec<AppError>, r: Result<T>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

/// One field's mistake, in a [`AppError::Fields`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl AppError {
    /// The mistakes field by field: several for [`AppError::Fields`], one for
    /// [`AppError::Invalid`], none otherwise.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            AppError::Fields(all) => all.clone(),
            AppError::Invalid { field, message } => vec![FieldError {
                field,
                message: message.clone(),
            }],
            _ => Vec::new(),
        }
    }

    /// All of `errors` as one: the single error itself, or the fields of every invalid one
    /// (the first error that is not about a field wins, since it cannot be shown by a field).
    pub fn all_of(mut errors: Vec<AppError>) -> Option<AppError> {
        if errors.len() <= 1 {
            return errors.pop();
        }
        if let Some(i) = errors
            .iter()
            .position(|e| !matches!(e, AppError::Invalid { .. } | AppError::Fields(_)))
        {
            return Some(errors.swap_remove(i));
        }
        Some(AppError::Fields(
            errors.iter().flat_map(AppError::field_errors).collect(),
        ))
    }

    /// Whether the caller can fix this by changing the request (exit code 2, HTTP 4xx), rather
    /// than the system failing at work it was right to attempt (exit code 1): a database, key
    /// file, provider, server or sink that fails, or work that could not finish (a collection
    /// whose IMAP server or sink failed is [`AppError::Unfinished`]).
    ///
    /// Every variant is named, so a new one must be put on a side.
    pub fn is_user_error(&self) -> bool {
        match self {
            AppError::Invalid { .. }
            | AppError::Fields(_)
            | AppError::NotFound { .. }
            | AppError::Conflict(_)
            | AppError::NeedsConfirmation { .. }
            | AppError::Denied(_)
            | AppError::RateLimited { .. }
            // A bad setting, or a configuration file that cannot be read, is fixed by the
            // person who runs the command (docs/configuration.md: exit 2).
            | AppError::Config(_) => true,
            // Built directly rather than through `From`, a missing row or a duplicate name is
            // still the caller's.
            AppError::Store(e) => matches!(
                e,
                StoreError::NotFound { .. } | StoreError::Duplicate { .. }
            ),
            AppError::Crypto(_)
            | AppError::Provider(_)
            | AppError::Token(_)
            | AppError::Unfinished(_)
            | AppError::DiagnosticFailed
            | AppError::Damaged(_)
            | AppError::Io { .. } => false,
        }
    }

    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        AppError::Invalid {
            field,
            message: message.into(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, key } => AppError::NotFound {
                what,
                key,
                hint: String::new(),
            },
            StoreError::Duplicate { .. } => AppError::Conflict(e.to_string()),
            StoreError::Crypto(c) => AppError::Crypto(c),
            other => AppError::Store(other),
        }
    }
}

impl From<oauthimap_oauth::ProfileError> for AppError {
    fn from(e: oauthimap_oauth::ProfileError) -> Self {
        match e {
            oauthimap_oauth::ProfileError::Invalid { field, message } => {
                AppError::Invalid { field, message }
            }
        }
    }
}

pub type Result<T, E = AppError> = std::result::Result<T, E>;

/// An error text as a person reads it first: up to the end of the provider's first sentence,
/// with our hint kept, and the rest (further sentences, trace and correlation ids) apart, to be
/// shown on request. Texts of one sentence come back whole.
pub fn summarize_error(text: &str) -> (String, Option<String>) {
    let (body, hint) = match text.rfind(" (hint: ") {
        Some(i) if text.ends_with(')') => (&text[..i], Some(&text[i + 1..])),
        _ => (text, None),
    };
    let Some(end) = body.find(". ").map(|i| i + 1) else {
        return (text.to_owned(), None);
    };
    let rest = body[end..].trim();
    if rest.is_empty() {
        return (text.to_owned(), None);
    }
    let summary = match hint {
        Some(h) => format!("{} {h}", &body[..end]),
        None => body[..end].to_owned(),
    };
    (summary, Some(rest.to_owned()))
}

#[cfg(test)]
mod tests {
    use oauthimap_types::{FailureKind, TokenError};

    use super::{AppError, FieldError, StoreError, summarize_error};

    fn io() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused")
    }

    /// The CLI exits 2 for these (what to fix is in the message), the web answers 4xx.
    #[test]
    fn the_caller_s_mistakes_are_user_errors() {
        let user = [
            AppError::invalid("port", "must be between 1 and 65535"),
            AppError::Fields(vec![FieldError {
                field: "name",
                message: "is empty".into(),
            }]),
            AppError::from(StoreError::NotFound {
                what: "receiver",
                key: "Support".into(),
            }),
            AppError::from(StoreError::Duplicate {
                what: "an application named",
                key: "Helpdesk".into(),
            }),
            AppError::Store(StoreError::Duplicate {
                what: "an application named",
                key: "Helpdesk".into(),
            }),
            AppError::Conflict("Support is switched off; switch it on first".into()),
            AppError::NeedsConfirmation {
                what: "2 account(s) would be revoked".into(),
                accounts: vec!["ann@example.com".into()],
                receivers: Vec::new(),
            },
            AppError::Denied("wrong user name or password".into()),
            AppError::RateLimited {
                retry_after_secs: 30,
            },
            AppError::Config(oauthimap_config::ConfigError::Invalid(
                "unknown key `colector`".into(),
            )),
            AppError::Config(oauthimap_config::ConfigError::Read {
                what: "the configuration file",
                path: "/etc/oauthimap/oauthimap.toml".into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            }),
            AppError::from(oauthimap_oauth::ProfileError::Invalid {
                field: "tenant",
                message: "is missing".into(),
            }),
        ];
        for e in &user {
            assert!(e.is_user_error(), "{e:?}");
        }
        assert!(matches!(user[2], AppError::NotFound { .. }));
        assert!(matches!(user[3], AppError::Conflict(_)));
    }

    /// The CLI exits 1 for these: the request was fine, the system could not do it.
    #[test]
    fn failures_of_the_system_are_not_user_errors() {
        let system = [
            // `oauthimap collect --once` when an IMAP server or a sink fails.
            AppError::Unfinished(
                "some receivers could not be collected (see PROBLEM above)".into(),
            ),
            AppError::Store(StoreError::Connect {
                backend: oauthimap_store::Backend::Postgres,
                reason: "connection refused".into(),
            }),
            AppError::from(StoreError::Corrupt("accounts.state \"sleeping\"".into())),
            AppError::from(StoreError::Fenced {
                lease: "receiver:3".into(),
            }),
            AppError::from(StoreError::Crypto(oauthimap_crypto::CryptoError::Random(
                "no entropy".into(),
            ))),
            AppError::Token(TokenError {
                kind: FailureKind::Transient,
                message: "the token endpoint answered 503".into(),
            }),
            AppError::Token(TokenError {
                kind: FailureKind::Permanent,
                message: "account 3 is needs_reauth: invalid_grant; authorize it again".into(),
            }),
            AppError::DiagnosticFailed,
            // An attachment that no longer matches the digest taken when it was collected.
            AppError::Damaged("attachment 0 of message 7 reads differently now".into()),
            AppError::Io {
                action: "read stored message 7".into(),
                source: io(),
            },
        ];
        for e in &system {
            assert!(!e.is_user_error(), "{e:?}");
        }
        assert!(matches!(system[4], AppError::Crypto(_)));
        assert!(matches!(system[2], AppError::Store(StoreError::Corrupt(_))));
    }

    #[test]
    fn provider_texts_are_cut_after_their_first_sentence_keeping_the_hint() {
        let text = "cannot refresh the access token: the provider answered invalid_grant: AADSTS50173: \
                    The provided grant has expired due to it being revoked, a fresh auth token is needed. \
                    The user might have changed or reset their password. Trace ID: 1a2b Correlation ID: 3c4d \
                    (hint: the sign-in is no longer valid: authorize again)";
        let (summary, details) = summarize_error(text);
        assert_eq!(
            summary,
            "cannot refresh the access token: the provider answered invalid_grant: AADSTS50173: \
             The provided grant has expired due to it being revoked, a fresh auth token is needed. \
             (hint: the sign-in is no longer valid: authorize again)"
        );
        let details = details.unwrap();
        assert!(details.contains("Trace ID: 1a2b") && details.contains("reset their password"));
        assert!(!details.contains("hint"));
        for whole in [
            "connection refused",
            "cannot connect to outlook.office365.com:993: timed out.",
        ] {
            assert_eq!(summarize_error(whole), (whole.to_owned(), None));
        }
    }
}
