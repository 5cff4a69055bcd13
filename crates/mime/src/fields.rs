//! The top-level header fields of a parsed message: ids, subject, addresses, date and the raw
//! header list, each decoded to UTF-8 and stripped of control characters.
//!
//! Reads what mail-parser decoded (RFC 2047 encoded-words, RFC 6532 UTF-8) and the raw bytes
//! behind it (for names as written and unfolded values); never fails, only warns.

use mail_parser::{Address as MpAddress, DateTime, Header, HeaderName, HeaderValue, Message};

use crate::model::{Address, HeaderField, WarningCode};
use crate::sanitize::clean_value;
use crate::warnings::{Warnings, excerpt};

/// The envelope-like fields of [`crate::Normalized`].
#[derive(Debug, Default)]
pub struct Fields {
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub subject: Option<String>,
    pub from: Vec<Address>,
    pub sender: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub date: Option<String>,
    pub date_raw: Option<String>,
    pub headers: Vec<HeaderField>,
}

pub fn extract(message: &Message<'_>, raw: &[u8], warnings: &mut Warnings) -> Fields {
    let headers = message.parts.first().map_or(&[][..], |p| &p.headers[..]);
    let mut fields = Fields {
        headers: header_list(headers, raw, warnings),
        ..Fields::default()
    };

    for name in [
        HeaderName::Subject,
        HeaderName::From,
        HeaderName::Sender,
        HeaderName::Date,
        HeaderName::MessageId,
        HeaderName::InReplyTo,
        HeaderName::References,
    ] {
        let count = headers.iter().filter(|h| h.name == name).count();
        if count > 1 {
            warnings.push(
                WarningCode::DuplicateHeader,
                format!(
                    "the {} header appears {count} times; the first one was used",
                    name.as_str()
                ),
            );
        }
    }

    let first = |name: HeaderName<'static>| headers.iter().find(|h| h.name == name);

    fields.message_id = first(HeaderName::MessageId)
        .and_then(|h| ids(&h.value, "Message-ID", warnings).into_iter().next());
    if fields.message_id.is_none() {
        warnings.push(
            WarningCode::MissingMessageId,
            "the message has no Message-ID",
        );
    }
    fields.in_reply_to = first(HeaderName::InReplyTo)
        .map(|h| ids(&h.value, "In-Reply-To", warnings))
        .unwrap_or_default();
    fields.references = first(HeaderName::References)
        .map(|h| ids(&h.value, "References", warnings))
        .unwrap_or_default();

    fields.subject = first(HeaderName::Subject).map(|h| match &h.value {
        HeaderValue::Text(text) => clean(text, "Subject", warnings),
        HeaderValue::TextList(list) => clean(&list.join(" "), "Subject", warnings),
        _ => String::new(),
    });

    fields.from = first(HeaderName::From)
        .map(|h| addresses([&h.value], "From", warnings))
        .unwrap_or_default();
    fields.sender = first(HeaderName::Sender)
        .map(|h| addresses([&h.value], "Sender", warnings))
        .unwrap_or_default();
    // Several To/Cc/Bcc/Reply-To fields are obsolete but legal (RFC 5322 4.5.3): keep them all.
    let all = |name: HeaderName<'static>| {
        headers
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| &h.value)
    };
    fields.reply_to = addresses(all(HeaderName::ReplyTo), "Reply-To", warnings);
    fields.to = addresses(all(HeaderName::To), "To", warnings);
    fields.cc = addresses(all(HeaderName::Cc), "Cc", warnings);
    fields.bcc = addresses(all(HeaderName::Bcc), "Bcc", warnings);

    match first(HeaderName::Date) {
        None => warnings.push(WarningCode::MissingDate, "the message has no Date header"),
        Some(h) => {
            let raw_value = raw_value(raw, h);
            let (date_raw, _) = clean_value(&raw_value);
            fields.date = match &h.value {
                HeaderValue::DateTime(dt) if dt.is_valid() => Some(utc_rfc3339(dt)),
                _ => {
                    warnings.push(
                        WarningCode::InvalidDate,
                        format!("the Date header \"{}\" cannot be read", excerpt(&date_raw)),
                    );
                    None
                }
            };
            fields.date_raw = Some(date_raw);
        }
    }
    fields
}

/// The instant in UTC, `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_rfc3339(dt: &DateTime) -> String {
    DateTime::from_timestamp(dt.to_timestamp()).to_rfc3339()
}

/// Cleans one decoded value, warning when control characters had to go.
fn clean(value: &str, header: &str, warnings: &mut Warnings) -> String {
    let (value, had_controls) = clean_value(value);
    if had_controls {
        warnings.push(
            WarningCode::ControlCharacters,
            format!("control characters were removed from the {header} header"),
        );
    }
    value
}

fn ids(value: &HeaderValue<'_>, header: &str, warnings: &mut Warnings) -> Vec<String> {
    let raw: Vec<&str> = match value {
        HeaderValue::Text(id) => vec![id.as_ref()],
        HeaderValue::TextList(list) => list.iter().map(AsRef::as_ref).collect(),
        _ => Vec::new(),
    };
    raw.into_iter()
        .map(|id| {
            clean(
                id.trim_start_matches('<').trim_end_matches('>'),
                header,
                warnings,
            )
        })
        .filter(|id| !id.is_empty())
        .collect()
}

fn addresses<'a, 'x: 'a>(
    values: impl IntoIterator<Item = &'a HeaderValue<'x>>,
    header: &str,
    warnings: &mut Warnings,
) -> Vec<Address> {
    let mut out = Vec::new();
    for value in values {
        let HeaderValue::Address(address) = value else {
            continue;
        };
        let addrs: Vec<_> = match address {
            MpAddress::List(list) => list.iter().collect(),
            MpAddress::Group(groups) => groups.iter().flat_map(|g| g.addresses.iter()).collect(),
        };
        for addr in addrs {
            let name = addr
                .name
                .as_deref()
                .map(|n| clean(n, header, warnings))
                .filter(|n| !n.is_empty());
            let address = addr
                .address
                .as_deref()
                .map(|a| clean(a, header, warnings))
                .filter(|a| !a.is_empty());
            if name.is_some() || address.is_some() {
                out.push(Address { name, address });
            }
        }
    }
    out
}

/// The value bytes of a header as written, unfolded, as UTF-8 (invalid bytes replaced).
fn raw_value(raw: &[u8], header: &Header<'_>) -> String {
    let bytes = raw
        .get(header.offset_start as usize..header.offset_end as usize)
        .unwrap_or_default();
    unfold(&String::from_utf8_lossy(bytes))
}

/// Removes the line breaks of folding (a CRLF or LF followed by white space); a line break
/// anywhere else stays, for [`clean_value`] to find and report.
fn unfold(value: &str) -> String {
    let value = value.trim_end_matches(['\r', '\n']);
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('\n') {
        let (before, after) = rest.split_at(pos);
        let after = &after[1..];
        let before_clean = before.strip_suffix('\r').unwrap_or(before);
        if after.starts_with([' ', '\t']) {
            out.push_str(before_clean);
        } else {
            out.push_str(before);
            out.push('\n');
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

fn header_list(headers: &[Header<'_>], raw: &[u8], warnings: &mut Warnings) -> Vec<HeaderField> {
    headers
        .iter()
        .filter_map(|h| {
            let name_bytes = raw
                .get(h.offset_field as usize..h.offset_start as usize)
                .unwrap_or_default();
            let name = String::from_utf8_lossy(name_bytes);
            let (name, had_controls) = clean_value(name.trim_end().trim_end_matches(':'));
            if had_controls {
                warnings.push(
                    WarningCode::ControlCharacters,
                    "control characters were removed from a header name",
                );
            }
            if name.is_empty() {
                warnings.push(
                    WarningCode::MalformedHeader,
                    "a header field without a usable name was skipped",
                );
                return None;
            }
            let value_bytes = raw
                .get(h.offset_start as usize..h.offset_end as usize)
                .unwrap_or_default();
            if std::str::from_utf8(value_bytes).is_err() {
                warnings.push(
                    WarningCode::InvalidHeaderBytes,
                    format!(
                        "the {} header holds bytes that are not UTF-8; they were replaced",
                        excerpt(&name)
                    ),
                );
            }
            let value = clean(&raw_value(raw, h), &excerpt(&name), warnings);
            Some(HeaderField { name, value })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfold_keeps_stray_line_breaks_for_the_cleaner() {
        assert_eq!(unfold(" a\r\n b\r\n"), " a b");
        assert_eq!(unfold(" a\n\tb"), " a\tb");
        assert_eq!(unfold(" a\r\nb"), " a\r\nb");
    }

    #[test]
    fn dates_are_converted_to_utc() {
        let dt = DateTime::parse_rfc822("Fri, 1 Mar 2024 10:30:00 +0100").unwrap();
        assert_eq!(utc_rfc3339(&dt), "2024-03-01T09:30:00Z");
        let dt = DateTime::parse_rfc822("Thu, 29 Feb 2024 22:00:00 -0330").unwrap();
        assert_eq!(utc_rfc3339(&dt), "2024-03-01T01:30:00Z");
    }
}
