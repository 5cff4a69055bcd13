//! Why a message was refused rather than normalized, and the limits that decide it.
//!
//! A refusal is rare on purpose: only bytes that are too large or that are not a message at all
//! are refused. Everything else is accepted with warnings, because a helpdesk would rather get a
//! broken message than lose it.

use serde::{Deserialize, Serialize};

/// Limits applied while normalizing. `Default` gives values fit for a helpdesk mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest raw message accepted, in bytes; larger ones are refused before parsing. Values
    /// above 4 GiB - 1 act as 4 GiB - 1 (the parser's offsets are 32-bit).
    pub max_size: u64,
    /// Deepest MIME nesting (multipart in multipart ...) whose parts are extracted.
    pub max_depth: usize,
    /// Most attachments listed for one message.
    pub max_attachments: usize,
}

impl Limits {
    /// 40 MiB: above what Microsoft 365 and Gmail deliver by default (about 35 MB once a 25 MB
    /// attachment is base64 encoded).
    pub const DEFAULT_MAX_SIZE: u64 = 40 * 1024 * 1024;
    /// Real mail rarely nests more than 5 levels; 32 leaves room for forwarded chains.
    pub const DEFAULT_MAX_DEPTH: usize = 32;
    /// More than this is abuse, not correspondence.
    pub const DEFAULT_MAX_ATTACHMENTS: usize = 1000;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_size: Self::DEFAULT_MAX_SIZE,
            max_depth: Self::DEFAULT_MAX_DEPTH,
            max_attachments: Self::DEFAULT_MAX_ATTACHMENTS,
        }
    }
}

/// A message that could not be normalized, with the reason and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("cannot normalize the message: {detail}")]
pub struct Refusal {
    /// The reason, for programs (the collector records it and moves the message aside).
    pub reason: RefusalReason,
    /// What was wrong and what to do, for people.
    pub detail: String,
}

/// Why a message was refused. Serialized as `{"kind": "too_large", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalReason {
    /// The raw message is larger than the receiver's size limit.
    TooLarge {
        /// Length of the raw message in bytes.
        size: u64,
        /// The limit it exceeded.
        limit: u64,
    },
    /// Zero bytes.
    Empty,
    /// The bytes do not begin with a header field, so they are not an RFC 5322 message.
    NoHeaders,
    /// The MIME parser could not make a message of the bytes.
    Unparsable,
}

impl Refusal {
    pub(crate) fn too_large(size: u64, limit: u64) -> Self {
        Self {
            reason: RefusalReason::TooLarge { size, limit },
            detail: format!(
                "the message is {size} bytes, over the size limit of {limit} bytes; raise the \
                 receiver's size limit to accept it"
            ),
        }
    }

    pub(crate) fn empty() -> Self {
        Self {
            reason: RefusalReason::Empty,
            detail: "the message is empty (0 bytes)".to_owned(),
        }
    }

    pub(crate) fn no_headers() -> Self {
        Self {
            reason: RefusalReason::NoHeaders,
            detail: "the bytes do not begin with a header field (`Name: value`), so they are not \
                     an RFC 5322 message"
                .to_owned(),
        }
    }

    pub(crate) fn unparsable(why: &str) -> Self {
        Self {
            reason: RefusalReason::Unparsable,
            detail: format!("the MIME parser could not read the message: {why}"),
        }
    }
}
