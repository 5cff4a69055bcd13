//! The normalized message: the stable, documented JSON shape that sinks store or send.
//!
//! Everything here is plain data with serde derives. Field order in the structs is the field
//! order in the JSON and must not change without a version note in the README; lists keep the
//! order in which things appear in the message. No bytes of attachments live here (see
//! [`crate::normalize_with_bytes`]).

use serde::{Deserialize, Serialize};

/// A message parsed from raw RFC 5322 bytes, with every header value decoded to UTF-8 and
/// stripped of control characters.
///
/// The HTML body is passed on **as sent**: it is not sanitized here. Whoever renders it (the web
/// UI, a helpdesk) must sanitize it first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Normalized {
    /// The Message-ID without angle brackets, or null when the header is missing or empty.
    pub message_id: Option<String>,
    /// The message ids of In-Reply-To, without angle brackets, in header order.
    pub in_reply_to: Vec<String>,
    /// The message ids of References, without angle brackets, in header order.
    pub references: Vec<String>,
    /// The Subject with RFC 2047 encoded-words decoded, or null when there is none.
    pub subject: Option<String>,
    /// The From addresses (usually one).
    pub from: Vec<Address>,
    /// The Sender addresses (usually none).
    pub sender: Vec<Address>,
    /// The Reply-To addresses.
    pub reply_to: Vec<Address>,
    /// The To addresses; members of groups are listed, group names are dropped.
    pub to: Vec<Address>,
    /// The Cc addresses.
    pub cc: Vec<Address>,
    /// The Bcc addresses (present only when the copy we read still carries the header).
    pub bcc: Vec<Address>,
    /// The Date header as an RFC 3339 timestamp in UTC (`2024-03-01T09:30:00Z`), or null when
    /// the header is missing or cannot be parsed.
    pub date: Option<String>,
    /// The Date header as written (unfolded, control characters removed), or null when missing.
    pub date_raw: Option<String>,
    /// The text body: the text/plain body parts, or the HTML body converted to text when the
    /// message has no plain part. Empty when the message has neither. Line ends are `\n`;
    /// several body parts are joined with a newline; NUL characters are removed.
    pub text: String,
    /// The HTML body exactly as sent (charset decoded to UTF-8), or null when there is no
    /// text/html body part (NUL characters removed). **Not sanitized**: scripts, remote images
    /// and `cid:` links are all still there, and the renderer must sanitize it.
    pub html: Option<String>,
    /// The attachments, inline parts (images referenced by `cid:`) included, in message order.
    pub attachments: Vec<Attachment>,
    /// The top-level header fields in message order: name as written, value unfolded, decoded
    /// to UTF-8 lossily and stripped of control characters. RFC 2047 encoded-words are left as
    /// they are here; the decoded forms are in the fields above.
    pub headers: Vec<HeaderField>,
    /// Length of the raw message in bytes.
    pub size: u64,
    /// SHA-256 of the raw message, lowercase hex.
    pub sha256: String,
    /// What was wrong with the message but tolerated, in the order it was noticed.
    pub warnings: Vec<Warning>,
}

/// One mailbox from an address header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// The display name, RFC 2047 decoded, or null when there is none.
    pub name: Option<String>,
    /// The address (`local@domain`), or null when the header held only a name.
    pub address: Option<String>,
}

/// One attachment or inline part. The bytes are not here; see [`crate::normalize_with_bytes`]
/// and [`crate::attachment_bytes`], which use the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The file name as sent (RFC 2231/2047 decoded, control characters removed), or null.
    /// Evidence only: it may hold a path or a right-to-left override that makes `x\u{202E}fdp.exe`
    /// look like `xexe.pdf`. Store and show `safe_filename` instead.
    pub filename: Option<String>,
    /// A name that is safe to use as a single path component on any common file system: last
    /// path component only, no control, bidirectional-override or reserved characters, at most
    /// 200 bytes, never empty (`attachment-N.ext` when nothing usable was sent).
    pub safe_filename: String,
    /// The media type, lowercase `type/subtype` without parameters.
    pub content_type: String,
    /// Size of the decoded content in bytes.
    pub size: u64,
    /// The Content-ID without angle brackets (what `cid:` URLs in the HTML refer to), or null.
    pub content_id: Option<String>,
    /// Whether the part is meant to be shown inside the message (Content-Disposition inline,
    /// or no disposition and a Content-ID or an image/audio/video type) rather than as a file.
    pub inline: bool,
    /// SHA-256 of the decoded content, lowercase hex.
    pub sha256: String,
}

/// One top-level header field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderField {
    /// The field name as written in the message.
    pub name: String,
    /// The value, unfolded, UTF-8 (invalid bytes replaced), control characters removed.
    pub value: String,
}

/// Something that was off in the message but did not stop it from being accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// What kind of problem it was; stable, for programs.
    pub code: WarningCode,
    /// What exactly, for people.
    pub detail: String,
}

/// The kinds of tolerated problems. Serialized in `snake_case`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WarningCode {
    /// A line in the header block that is neither a field nor a continuation; it was skipped.
    MalformedHeader,
    /// Control characters (CR, LF, NUL, ...) were removed from a decoded header value,
    /// address or file name: a header injection attempt or a broken sender.
    ControlCharacters,
    /// A header held bytes that are not UTF-8; they were replaced with U+FFFD.
    InvalidHeaderBytes,
    /// A header that should appear once appeared several times; the first one was used.
    DuplicateHeader,
    /// The message has no Message-ID.
    MissingMessageId,
    /// The message has no Date.
    MissingDate,
    /// The Date header could not be parsed or is out of range.
    InvalidDate,
    /// A text part named a charset we do not know; it was decoded as UTF-8 lossily.
    UnknownCharset,
    /// A text part held bytes that are invalid in its charset; they were replaced with U+FFFD.
    InvalidTextBytes,
    /// A part's body did not match its transfer encoding or its multipart boundary never
    /// came; what was there was kept as raw text.
    MalformedPart,
    /// Parts nested deeper than the depth limit were not extracted (they stay in the raw
    /// message).
    DepthLimit,
    /// The multipart structure was too costly to parse safely (many boundaries in a large
    /// message, a known denial-of-service shape); only the headers were read.
    StructureLimit,
    /// The MIME parser failed on the body (a bug it has, reached by malformed input); only the
    /// headers were read.
    ParserFailure,
    /// Attachments beyond the count limit were not listed (they stay in the raw message).
    AttachmentLimit,
    /// An attachment's file name had to be changed to be safe (path, reserved characters,
    /// length).
    UnsafeFilename,
    /// More warnings than the cap; the rest were dropped.
    TooManyWarnings,
}
