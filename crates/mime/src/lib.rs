//! Raw RFC 5322 message in, normalized message out: the `mime` step of the collector's
//! fetch -> parse -> deliver pipeline.
//!
//! [`normalize`] turns the bytes fetched over IMAP into a [`Normalized`] message with a stable
//! JSON shape (decoded subject and addresses, ids, date in UTC, text and HTML bodies, attachment
//! metadata, the raw header list, size, SHA-256 and warnings), or a [`Refusal`] when the bytes are
//! too large or are not a message at all. Everything in between is accepted with warnings: a
//! helpdesk would rather get a broken message than lose it.
//!
//! This crate does no I/O and holds no state. Parsing is done by mail-parser 0.11; this crate
//! adds the limits, the sanitizing (no control characters in any decoded header value, safe file
//! names) and the stable output around it. Hostile input must never panic, hang or grow memory
//! beyond a small multiple of its size; the tests and `fuzz/` hold it to that.

mod fields;
mod model;
mod parts;
mod prescan;
mod refusal;
mod sanitize;
mod transfer;
mod warnings;

use mail_parser::MessageParser;
use sha2::{Digest, Sha256};

pub use model::{Address, Attachment, HeaderField, Normalized, Warning, WarningCode};
pub use refusal::{Limits, Refusal, RefusalReason};
pub use sanitize::{MAX_FILENAME_BYTES, safe_filename};
pub use warnings::MAX_WARNINGS;

use parts::Want;

/// Parses `raw` into a [`Normalized`] message.
///
/// Refuses messages larger than `limits.max_size` before parsing, empty input, and input that
/// does not begin with a header field. The same bytes and limits always give the same result.
pub fn normalize(raw: &[u8], limits: &Limits) -> Result<Normalized, Refusal> {
    normalize_within_limits(raw, limits, Want::None).map(|(normalized, _)| normalized)
}

/// Like [`normalize`], and also returns the decoded content of every attachment:
/// `bytes[i]` belongs to `normalized.attachments[i]`. For sinks that store files.
pub fn normalize_with_bytes(
    raw: &[u8],
    limits: &Limits,
) -> Result<(Normalized, Vec<Vec<u8>>), Refusal> {
    normalize_within_limits(raw, limits, Want::All)
}

/// The decoded content of attachment `index` (as numbered in [`Normalized::attachments`] for
/// the same `limits`), or `None` when there is no such attachment. Parses the message again.
pub fn attachment_bytes(
    raw: &[u8],
    limits: &Limits,
    index: usize,
) -> Result<Option<Vec<u8>>, Refusal> {
    normalize_within_limits(raw, limits, Want::One(index)).map(|(_, mut bytes)| bytes.pop())
}

/// SHA-256 of `bytes` as lowercase hex: how [`Normalized::sha256`] and [`Attachment::sha256`]
/// are written, for whoever checks stored bytes against them. The workspace's one such helper
/// (the core also hashes tokens and links with it), so it takes text as well as bytes.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    sanitize::hex(&Sha256::digest(bytes.as_ref()))
}

impl Normalized {
    /// The message as compact JSON, fields in the documented order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Largest input the parser can address: its offsets are `u32`.
const PARSER_MAX: u64 = u32::MAX as u64;

/// Most bytes the parser's boundary search may scan (multipart declarations x message size, an
/// upper bound computed before parsing). mail-parser scans about 200 MB/s in a debug build, so
/// this is at most about ten seconds there and less in release. A 40 MB message may declare up
/// to 50 boundaries, 1 MB up to 2000; above the bound only the headers are read.
pub const MAX_BOUNDARY_WORK: u64 = 2_000_000_000;

/// The parsed message, who decodes its bodies, and whether the parser failed on the body (then
/// only the headers were read).
fn parse(
    raw: &[u8],
    headers_only: bool,
) -> Result<(mail_parser::Message<'_>, transfer::Decoding, bool), Refusal> {
    // mail-parser 0.11 has `debug_assert!`s that malformed input can reach (a message/rfc822
    // part without headers, for one), so in debug builds it can panic. Should any panic happen,
    // mail-parser's own decoding is tried (see `transfer`), then the headers alone are read, and
    // only if that fails too is the message refused: the collector records a reason instead of
    // losing a task.
    let mut parser_failed = false;
    let mut decoding = transfer::Decoding::Ours;
    let parse = |parser: MessageParser| {
        std::panic::catch_unwind(move || {
            if headers_only {
                parser.parse_headers(raw)
            } else {
                parser.parse(raw)
            }
        })
    };
    let mut parsed = parse(transfer::parser());
    if parsed.is_err() {
        decoding = transfer::Decoding::Parser;
        parsed = parse(MessageParser::new());
    }
    if parsed.is_err() {
        parser_failed = true;
        parsed = std::panic::catch_unwind(|| MessageParser::new().parse_headers(raw));
    }
    let parsed = parsed.map_err(|_| Refusal::unparsable("the parser failed on this input"))?;
    let has_headers =
        |m: &mail_parser::Message<'_>| m.parts.first().is_some_and(|p| !p.headers.is_empty());
    let Some(mut message) = parsed.filter(has_headers) else {
        return Err(Refusal::unparsable("no header field could be read"));
    };
    if decoding == transfer::Decoding::Ours
        && !headers_only
        && !parser_failed
        && transfer::decoding(&message, raw) == transfer::Decoding::Parser
    {
        decoding = transfer::Decoding::Parser;
        match parse(MessageParser::new()) {
            Ok(Some(again)) if has_headers(&again) => message = again,
            _ => parser_failed = true,
        }
    }
    Ok((message, decoding, parser_failed))
}

fn normalize_within_limits(
    raw: &[u8],
    limits: &Limits,
    want: Want,
) -> Result<(Normalized, Vec<Vec<u8>>), Refusal> {
    let size = raw.len() as u64;
    let limit = limits.max_size.min(PARSER_MAX);
    if size > limit {
        return Err(Refusal::too_large(size, limit));
    }
    if raw.is_empty() {
        return Err(Refusal::empty());
    }
    let scan = prescan::scan(raw);
    if !scan.starts_with_field {
        return Err(Refusal::no_headers());
    }
    let sha256 = sha256_hex(raw);

    // mail-parser drops the value of a last header field that has no line end; a message cut
    // off inside its headers gets one (on a copy, so the caller's bytes and hash are untouched).
    let padded;
    let raw = if !scan.has_body && !raw.ends_with(b"\n") {
        padded = [raw, b"\r\n"].concat();
        &padded[..]
    } else {
        raw
    };

    let work = prescan::boundary_work(raw);
    let headers_only = work > MAX_BOUNDARY_WORK;

    let (message, decoding, parser_failed) = parse(raw, headers_only)?;

    let mut warnings = warnings::Warnings::default();
    for (line, text) in &scan.malformed {
        warnings.push(
            WarningCode::MalformedHeader,
            format!("header line {line} is not a field and was skipped: \"{text}\""),
        );
    }
    if scan.malformed_count > scan.malformed.len() {
        warnings.push(
            WarningCode::MalformedHeader,
            format!(
                "{} more malformed header lines were skipped",
                scan.malformed_count - scan.malformed.len()
            ),
        );
    }

    let fields = fields::extract(&message, raw, &mut warnings);
    let body = if parser_failed {
        warnings.push(
            WarningCode::ParserFailure,
            "the MIME parser failed on the body; only the headers were read and the body \
             remains in the raw message",
        );
        parts::Body::default()
    } else if headers_only {
        warnings.push(
            WarningCode::StructureLimit,
            format!(
                "the MIME structure would take about {work} bytes of boundary search to read, \
                 more than the limit of {MAX_BOUNDARY_WORK}; only the headers were read and the \
                 body remains in the raw message"
            ),
        );
        parts::Body::default()
    } else {
        parts::extract(&message, raw, limits, want, decoding, &mut warnings)
    };

    let normalized = Normalized {
        message_id: fields.message_id,
        in_reply_to: fields.in_reply_to,
        references: fields.references,
        subject: fields.subject,
        from: fields.from,
        sender: fields.sender,
        reply_to: fields.reply_to,
        to: fields.to,
        cc: fields.cc,
        bcc: fields.bcc,
        date: fields.date,
        date_raw: fields.date_raw,
        text: body.text,
        html: body.html,
        attachments: body.attachments,
        headers: fields.headers,
        size,
        sha256,
        warnings: warnings.finish(),
    };
    Ok((normalized, body.bytes))
}
