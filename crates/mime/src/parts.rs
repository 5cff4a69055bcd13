//! The body of a parsed message: the text and HTML bodies and the attachments, with the depth
//! and count limits applied and charset trouble reported.
//!
//! mail-parser has already sorted the top-level parts into text body, HTML body and attachments
//! (a message/rfc822 part is one attachment; its own parts stay inside it). This module walks
//! the multipart tree without recursion to find each part's depth, then reads those lists.

use std::borrow::Cow;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::html::html_to_text;
use mail_parser::parsers::MessageStream;
use mail_parser::{Encoding, Message, MessagePart, MimeHeaders, PartType};

use crate::Limits;
use crate::model::{Attachment, WarningCode};
use crate::sanitize::{clean_value, safe_filename};
use crate::warnings::{Warnings, excerpt};

/// Bodies and attachments; `bytes[i]` is the content of `attachments[i]` when asked for.
#[derive(Debug, Default)]
pub struct Body {
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    pub bytes: Vec<Vec<u8>>,
}

/// Which attachment contents to copy out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    None,
    All,
    One(usize),
}

pub fn extract(
    message: &Message<'_>,
    raw: &[u8],
    limits: &Limits,
    want: Want,
    warnings: &mut Warnings,
) -> Body {
    let allowed = allowed_parts(message, limits.max_depth, warnings);
    let is_allowed = |id: u32| allowed.get(id as usize).copied().unwrap_or(false);

    for (id, part) in message.parts.iter().enumerate() {
        if part.is_encoding_problem
            && !part.contents().is_empty()
            && allowed.get(id).copied().unwrap_or(false)
        {
            warnings.push(
                WarningCode::MalformedPart,
                format!(
                    "part {} ({}) does not match its transfer encoding or boundary; it was kept \
                     as raw text",
                    id + 1,
                    content_type(part)
                ),
            );
        }
    }

    let mut body = Body::default();
    for &id in message.text_body.iter().filter(|&&id| is_allowed(id)) {
        let Some(part) = message.parts.get(id as usize) else {
            continue;
        };
        let piece = match &part.body {
            PartType::Text(text) => Cow::Borrowed(text.as_ref()),
            PartType::Html(html) => Cow::Owned(html_to_text(html)),
            _ => continue,
        };
        check_text(part, id, warnings);
        append(&mut body.text, &piece.replace("\r\n", "\n"));
    }
    for &id in message.html_body.iter().filter(|&&id| is_allowed(id)) {
        if let Some(part) = message.parts.get(id as usize)
            && let PartType::Html(text) = &part.body
        {
            check_text(part, id, warnings);
            append(body.html.get_or_insert_default(), text);
        }
    }

    let mut listed: Vec<u32> = message
        .attachments
        .iter()
        .copied()
        .filter(|&id| is_allowed(id))
        .filter(|&id| {
            message
                .parts
                .get(id as usize)
                .is_some_and(|p| !p.is_multipart())
        })
        .collect();
    if body.text.is_empty() && body.html.is_none() {
        promote_broken_body(message, &mut listed, &mut body, warnings);
    }
    for (name, text) in [("text", Some(&mut body.text)), ("HTML", body.html.as_mut())] {
        if let Some(text) = text
            && text.contains('\0')
        {
            text.retain(|c| c != '\0');
            warnings.push(
                WarningCode::ControlCharacters,
                format!("NUL characters were removed from the {name} body"),
            );
        }
    }

    if listed.len() > limits.max_attachments {
        warnings.push(
            WarningCode::AttachmentLimit,
            format!(
                "the message has {} attachments; only the first {} were listed",
                listed.len(),
                limits.max_attachments
            ),
        );
    }
    for (index, &id) in listed.iter().take(limits.max_attachments).enumerate() {
        let Some(part) = message.parts.get(id as usize) else {
            continue;
        };
        let content = attachment_content(part, raw);
        let attachment = describe(part, index + 1, &content, warnings);
        let keep = match want {
            Want::None => false,
            Want::All => true,
            Want::One(wanted) => wanted == index,
        };
        if keep {
            body.bytes.push(content.into_owned());
        }
        body.attachments.push(attachment);
    }
    body
}

/// mail-parser files a text part whose boundary never came as an attachment. When the message
/// has no body otherwise, such an unnamed, non-attachment text part is what the sender wrote:
/// make it the body (and no longer an attachment).
fn promote_broken_body(
    message: &Message<'_>,
    listed: &mut Vec<u32>,
    body: &mut Body,
    warnings: &mut Warnings,
) {
    let candidate = listed.iter().position(|&id| {
        message.parts.get(id as usize).is_some_and(|p| {
            p.is_encoding_problem
                && p.is_text()
                && p.attachment_name().is_none()
                && p.content_disposition().is_none_or(|d| !d.is_attachment())
        })
    });
    let Some(position) = candidate else {
        return;
    };
    let id = listed.remove(position);
    let Some(part) = message.parts.get(id as usize) else {
        return;
    };
    check_text(part, id, warnings);
    match &part.body {
        PartType::Html(html) => {
            body.text = html_to_text(html).replace("\r\n", "\n");
            body.html = Some(html.to_string());
        }
        PartType::Text(text) => body.text = text.replace("\r\n", "\n"),
        _ => {}
    }
}

fn append(out: &mut String, piece: &str) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(piece);
}

/// Marks the parts at most `max_depth` multipart levels below the root; warns about the rest.
/// Iterative, and each part is visited once, so a hostile tree can neither overflow the stack
/// nor loop.
fn allowed_parts(message: &Message<'_>, max_depth: usize, warnings: &mut Warnings) -> Vec<bool> {
    let count = message.parts.len();
    // Parts the walk does not reach keep `true`: better shown than lost.
    let mut allowed = vec![true; count];
    let mut seen = vec![false; count];
    let mut too_deep = 0usize;
    let mut stack = vec![(0u32, 0usize)];
    while let Some((id, depth)) = stack.pop() {
        let Some(part) = message.parts.get(id as usize) else {
            continue;
        };
        if std::mem::replace(&mut seen[id as usize], true) {
            continue;
        }
        if depth > max_depth {
            allowed[id as usize] = false;
            if !part.is_multipart() {
                too_deep += 1;
            }
        }
        if let PartType::Multipart(children) = &part.body {
            stack.extend(children.iter().rev().map(|&child| (child, depth + 1)));
        }
    }
    if too_deep > 0 {
        warnings.push(
            WarningCode::DepthLimit,
            format!(
                "{too_deep} parts nested more than {max_depth} levels deep were not extracted; \
                 they remain in the raw message"
            ),
        );
    }
    allowed
}

/// Warns about an unknown charset or invalid bytes in a decoded text part.
fn check_text(part: &MessagePart<'_>, id: u32, warnings: &mut Warnings) {
    let charset = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .map(str::trim);
    if let Some(charset) = charset
        && !is_utf8_name(charset)
        && charset_decoder(charset.as_bytes()).is_none()
    {
        warnings.push(
            WarningCode::UnknownCharset,
            format!(
                "part {} names the unknown charset \"{}\"; it was read as UTF-8",
                id + 1,
                excerpt(charset)
            ),
        );
    }
    if part.text_contents().is_some_and(|t| t.contains('\u{FFFD}')) {
        warnings.push(
            WarningCode::InvalidTextBytes,
            format!(
                "part {} holds bytes that are invalid in its charset; they were replaced with \
                 U+FFFD",
                id + 1
            ),
        );
    }
}

fn is_utf8_name(charset: &str) -> bool {
    ["utf-8", "utf8", "unicode-1-1-utf-8", "x-unicode20utf8"]
        .iter()
        .any(|n| charset.eq_ignore_ascii_case(n))
}

/// The decoded content of an attachment. Binary parts come straight from the parser; text parts
/// are decoded again from the raw bytes (transfer encoding only), because the parser converts
/// them to UTF-8 and a stored file must keep its own charset.
fn attachment_content<'a>(part: &'a MessagePart<'a>, raw: &'a [u8]) -> Cow<'a, [u8]> {
    match &part.body {
        PartType::Text(_) | PartType::Html(_) => {
            let Some(body) = raw.get(part.offset_body as usize..part.offset_end as usize) else {
                return Cow::Borrowed(part.contents());
            };
            let decoded = match part.encoding {
                Encoding::None => return Cow::Borrowed(body),
                Encoding::Base64 => MessageStream::new(body).decode_base64_mime(b""),
                Encoding::QuotedPrintable => {
                    MessageStream::new(body).decode_quoted_printable_mime(b"")
                }
            };
            if decoded.0 == usize::MAX {
                Cow::Borrowed(part.contents())
            } else {
                Cow::Owned(decoded.1.into_owned())
            }
        }
        _ => Cow::Borrowed(part.contents()),
    }
}

/// Lowercase `type/subtype` from the Content-Type header, or the default for the part's kind.
fn content_type(part: &MessagePart<'_>) -> String {
    let default = match &part.body {
        PartType::Text(_) => "text/plain",
        PartType::Html(_) => "text/html",
        PartType::Message(_) => "message/rfc822",
        PartType::Multipart(_) => "multipart/mixed",
        PartType::Binary(_) | PartType::InlineBinary(_) => "application/octet-stream",
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match part.content_type() {
        Some(ct) if token(ct.ctype()) && ct.subtype().is_some_and(token) => format!(
            "{}/{}",
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or_default().to_ascii_lowercase()
        ),
        _ => default.to_owned(),
    }
}

fn describe(
    part: &MessagePart<'_>,
    number: usize,
    content: &[u8],
    warnings: &mut Warnings,
) -> Attachment {
    let content_type = content_type(part);
    let filename = part.attachment_name().and_then(|name| {
        let (name, had_controls) = clean_value(name);
        if had_controls {
            warnings.push(
                WarningCode::ControlCharacters,
                format!("control characters were removed from the name of attachment {number}"),
            );
        }
        (!name.is_empty()).then_some(name)
    });
    let safe = safe_filename(filename.as_deref(), number, &content_type);
    if filename.as_deref().is_some_and(|f| f != safe) {
        warnings.push(
            WarningCode::UnsafeFilename,
            format!(
                "the name of attachment {number} was changed to \"{}\" (path, reserved \
                 characters or length)",
                excerpt(&safe)
            ),
        );
    }
    let content_id = part
        .content_id()
        .map(|id| {
            let (id, had_controls) = clean_value(id.trim_start_matches('<').trim_end_matches('>'));
            if had_controls {
                warnings.push(
                    WarningCode::ControlCharacters,
                    format!(
                        "control characters were removed from the Content-ID of attachment \
                         {number}"
                    ),
                );
            }
            id
        })
        .filter(|id| !id.is_empty());
    let inline = match part.content_disposition() {
        Some(disposition) => disposition.is_inline(),
        None => content_id.is_some() || matches!(part.body, PartType::InlineBinary(_)),
    };
    Attachment {
        filename,
        safe_filename: safe,
        content_type,
        size: content.len() as u64,
        content_id,
        inline,
        sha256: crate::sha256_hex(content),
    }
}
