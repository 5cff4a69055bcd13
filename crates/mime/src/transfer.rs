//! Content-Transfer-Encoding (RFC 2045 section 6): which one a part declares, and its decoding.
//!
//! mail-parser 0.11 decodes base64 and quoted-printable a byte at a time (base64 at 200-400 MB/s
//! on the benchmark's machine), and attachments are most of a mailbox's bytes: its decoders were
//! a third of the collector's CPU time. So [`parser`] has mail-parser leave every body as it came
//! (it still finds the parts, their headers and their boundaries), and the parts module decodes
//! what it uses through [`decode`]: base64 in bulk with the `base64` crate, quoted-printable in
//! runs between `=`, CR and LF. Input that is anything but the ordinary shape (for base64: clean
//! lines of whole groups; for quoted-printable: `=` and two hex digits, or a soft line break)
//! goes to mail-parser's own decoders, so mail-parser's leniency and refusals stay the rule.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use mail_parser::parsers::MessageStream;
use mail_parser::{HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType};

/// The transfer encoding a part declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// None, or 7bit, 8bit, binary, or one mail-parser does not know: the bytes as they are.
    Identity,
    Base64,
    QuotedPrintable,
}

/// mail-parser's default header parsing, except that `Content-Transfer-Encoding` is skipped, so
/// mail-parser decodes no body. The field stays in the part's header list (with its offsets),
/// which is where [`declared`] reads it.
pub fn parser() -> MessageParser {
    let mut parser = MessageParser::new();
    for name in [
        HeaderName::Subject,
        HeaderName::Comments,
        HeaderName::ContentDescription,
        HeaderName::ContentLocation,
    ] {
        parser = parser.header_text(name);
    }
    for name in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::Cc,
        HeaderName::Bcc,
        HeaderName::ReplyTo,
        HeaderName::Sender,
        HeaderName::ResentTo,
        HeaderName::ResentFrom,
        HeaderName::ResentBcc,
        HeaderName::ResentCc,
        HeaderName::ResentSender,
        HeaderName::ListArchive,
        HeaderName::ListHelp,
        HeaderName::ListId,
        HeaderName::ListOwner,
        HeaderName::ListPost,
        HeaderName::ListSubscribe,
        HeaderName::ListUnsubscribe,
    ] {
        parser = parser.header_address(name);
    }
    for name in [
        HeaderName::MessageId,
        HeaderName::References,
        HeaderName::InReplyTo,
        HeaderName::ReturnPath,
        HeaderName::ContentId,
        HeaderName::ResentMessageId,
    ] {
        parser = parser.header_id(name);
    }
    parser
        .header_date(HeaderName::Date)
        .header_date(HeaderName::ResentDate)
        .header_comma_separated(HeaderName::Keywords)
        .header_comma_separated(HeaderName::ContentLanguage)
        .header_received(HeaderName::Received)
        .header_raw(HeaderName::MimeVersion)
        .header_content_type(HeaderName::ContentType)
        .header_content_type(HeaderName::ContentDisposition)
        .ignore_header(HeaderName::ContentTransferEncoding)
        .default_header_raw()
}

/// The part's declared transfer encoding: its last `Content-Transfer-Encoding` field, as
/// mail-parser would pick it, read from `raw` (the bytes the part's offsets point into).
pub fn declared(part: &MessagePart<'_>, raw: &[u8]) -> Declared {
    let value = part
        .headers
        .iter()
        .rev()
        .find(|h| h.name == HeaderName::ContentTransferEncoding)
        .and_then(|h| raw.get(h.offset_start as usize..h.offset_end as usize))
        .map(<[u8]>::trim_ascii);
    match value {
        Some(v) if v.eq_ignore_ascii_case(b"base64") => Declared::Base64,
        Some(v) if v.eq_ignore_ascii_case(b"quoted-printable") => Declared::QuotedPrintable,
        _ => Declared::Identity,
    }
}

/// Who decodes the bodies of a parsed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoding {
    /// This module, from the raw bytes: the message was parsed with [`parser`].
    Ours,
    /// mail-parser, with its default settings.
    Parser,
}

/// Who must decode `message` (parsed with [`parser`] from `raw`). A message/rfc822 part with a
/// transfer encoding (RFC 2046 forbids one, but forwarding clients send it) is a body only
/// mail-parser's decoding reads right: without it, mail-parser reads the encoded text as the
/// message, and that can take in the parts that follow. Such a message is parsed again with
/// mail-parser's defaults. Nested messages are searched too.
pub fn decoding(message: &Message<'_>, raw: &[u8]) -> Decoding {
    let mut stack = vec![(message, raw)];
    while let Some((message, raw)) = stack.pop() {
        // Untyped parts of a multipart/digest are messages. Each part has one parent, so this
        // is linear in the number of parts, whatever a hostile message nests.
        let mut in_digest = vec![false; message.parts.len()];
        for parent in &message.parts {
            if let PartType::Multipart(children) = &parent.body
                && parent
                    .content_type()
                    .and_then(|ct| ct.subtype())
                    .is_some_and(|s| s.eq_ignore_ascii_case("digest"))
            {
                for &child in children {
                    if let Some(flag) = in_digest.get_mut(child as usize) {
                        *flag = true;
                    }
                }
            }
        }
        for (part, in_digest) in message.parts.iter().zip(in_digest) {
            let is_message = match part.content_type() {
                Some(ct) => {
                    ct.ctype().eq_ignore_ascii_case("message")
                        && ct.subtype().is_some_and(|s| {
                            s.eq_ignore_ascii_case("rfc822") || s.eq_ignore_ascii_case("global")
                        })
                }
                None => in_digest,
            };
            if is_message && declared(part, raw) != Declared::Identity {
                return Decoding::Parser;
            }
            if let PartType::Message(nested) = &part.body {
                stack.push((nested, nested.raw_message()));
            }
        }
    }
    Decoding::Ours
}

/// `body` decoded from `encoding`, or `None` when it does not match that encoding (mail-parser
/// then keeps such a part as it came, and so do we).
pub fn decode(encoding: Declared, body: &[u8]) -> Option<Cow<'_, [u8]>> {
    match encoding {
        Declared::Identity => Some(Cow::Borrowed(body)),
        Declared::Base64 => bulk_base64(body)
            .or_else(|| by_mail_parser(MessageStream::decode_base64_mime, body))
            .map(Cow::Owned),
        Declared::QuotedPrintable => bulk_quoted_printable(body)
            .or_else(|| by_mail_parser(MessageStream::decode_quoted_printable_mime, body))
            .map(Cow::Owned),
    }
}

/// A mail-parser body decoder: the end of the body (`usize::MAX` when it does not match its
/// encoding) and the decoded bytes.
type ParserDecoder<'x> = fn(&mut MessageStream<'x>, &[u8]) -> (usize, Cow<'x, [u8]>);

/// One of mail-parser's body decoders on the whole of `body`; `None` when the body does not
/// match its encoding.
fn by_mail_parser<'x>(decoder: ParserDecoder<'x>, body: &'x [u8]) -> Option<Vec<u8>> {
    let (end, bytes) = decoder(&mut MessageStream::new(body), b"");
    (end != usize::MAX).then(|| bytes.into_owned())
}

/// Quoted-printable (RFC 2045 6.7) with mail-parser's rules, copying the runs between `=`, CR
/// and LF instead of going a byte at a time: a CR is dropped (and from the first one on, line
/// ends are written as CRLF), blanks before a line end are dropped, `=` and two hex digits is a
/// byte, `=` with blanks up to the line end is a soft line break. `None` for any other `=`: such
/// input goes to mail-parser's decoder, whose rules for it are subtler.
fn bulk_quoted_printable(body: &[u8]) -> Option<Vec<u8>> {
    let is_blank = |b: u8| matches!(b, b' ' | b'\t' | b'\x0C');
    let mut out = Vec::with_capacity(body.len());
    let mut crlf = false;
    // Blanks at the end of `out` that a line end would drop.
    let mut blanks = 0;
    let mut at = 0;
    while at < body.len() {
        let next = memchr::memchr3(b'=', b'\n', b'\r', &body[at..]).map_or(body.len(), |p| at + p);
        let run = &body[at..next];
        let trailing = run.iter().rev().take_while(|&&b| is_blank(b)).count();
        blanks = if trailing == run.len() {
            blanks + trailing
        } else {
            trailing
        };
        out.extend_from_slice(run);
        let Some(&special) = body.get(next) else {
            break;
        };
        at = next + 1;
        match special {
            b'\r' => crlf = true,
            b'\n' => {
                out.truncate(out.len() - blanks);
                out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                blanks = 0;
            }
            _ => {
                let rest = &body[at..];
                if let [high, low, ..] = rest
                    && let (Some(high), Some(low)) = (hex(*high), hex(*low))
                {
                    out.push(high << 4 | low);
                    blanks = 0;
                    at += 2;
                    continue;
                }
                let spaces = rest
                    .iter()
                    .take_while(|&&b| b == b' ' || b == b'\t')
                    .count();
                at += spaces
                    + match &rest[spaces..] {
                        [b'\n', ..] => 1,
                        [b'\r', b'\n', ..] => {
                            crlf = true;
                            2
                        }
                        _ => return None,
                    };
                blanks = 0;
            }
        }
    }
    Some(out)
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Base64 characters decoded per call: a multiple of four, large enough that the call costs
/// nothing, small enough to stay in the CPU's cache.
const STAGE: usize = 64 * 1024;

/// Base64 as lines of whole groups, the line ends (and trailing blanks) dropped and the rest
/// decoded in bulk; `None` for anything else.
fn bulk_base64(body: &[u8]) -> Option<Vec<u8>> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let mut out = Vec::with_capacity(body.len() / 4 * 3);
    let mut staged = Vec::with_capacity(STAGE + 128);
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len())) {
        staged.extend_from_slice(body[start..end].trim_ascii_end());
        start = end + 1;
        if staged.len() >= STAGE {
            let whole = staged.len() / 4 * 4;
            ENGINE.decode_vec(&staged[..whole], &mut out).ok()?;
            staged.drain(..whole);
        }
    }
    if staged.len() % 4 != 0 {
        return None;
    }
    ENGINE.decode_vec(&staged, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slow(body: &[u8]) -> Option<Vec<u8>> {
        by_mail_parser(MessageStream::decode_base64_mime, body)
    }

    fn wrapped(data: &[u8], width: usize, eol: &str) -> Vec<u8> {
        let text = base64::engine::general_purpose::STANDARD.encode(data);
        let mut out = Vec::new();
        for line in text.as_bytes().chunks(width.max(1)) {
            out.extend_from_slice(line);
            out.extend_from_slice(eol.as_bytes());
        }
        out
    }

    #[test]
    fn the_bulk_path_takes_clean_lines_and_hands_the_rest_to_mail_parser() {
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i * 7 + i / 251).to_le_bytes()[0])
            .collect();
        let clean = wrapped(&data, 76, "\r\n");
        assert_eq!(bulk_base64(&clean).as_deref(), Some(&data[..]));
        // 75 characters a line: only the whole is made of groups, which is all that counts.
        let odd = wrapped(&data, 75, "\n");
        assert_eq!(bulk_base64(&odd).as_deref(), Some(&data[..]));
        // Padding in the middle (two pieces glued together): mail-parser's rule decides.
        let glued = [&b"QQ==\r\n"[..], b"Qg==\r\n"].concat();
        assert_eq!(
            decode(Declared::Base64, &glued).as_deref(),
            slow(&glued).as_deref()
        );
        assert_eq!(slow(&glued).as_deref(), Some(&b"AB"[..]));
        // A stray character: not base64 at all, for both.
        let stray = b"QUJD\r\nQU*D\r\n";
        assert_eq!(bulk_base64(stray), None);
        assert_eq!(decode(Declared::Base64, stray), None);
        // A cut-off last group: mail-parser drops it, and so does the result.
        let cut = b"QUJDRA\r\n";
        assert_eq!(bulk_base64(cut), None);
        assert_eq!(
            decode(Declared::Base64, cut).as_deref(),
            slow(cut).as_deref()
        );
    }

    #[test]
    fn the_declared_encoding_is_the_last_field_of_the_part() {
        let raw = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\n\
Content-Transfer-Encoding:  BASE64 \r\n\r\nQUJD\r\n";
        let message = parser().parse(&raw[..]).unwrap();
        let part = &message.parts[0];
        assert_eq!(declared(part, raw), Declared::Base64);
        // mail-parser was told to leave the body alone.
        assert_eq!(part.contents(), b"QUJD\r\n");
        let qp = b"Content-Transfer-Encoding: quoted-printable\r\n\r\na=3Db\r\n";
        let message = parser().parse(&qp[..]).unwrap();
        assert_eq!(declared(&message.parts[0], qp), Declared::QuotedPrintable);
        let plain = b"Content-Transfer-Encoding: 8bit\r\n\r\nabc\r\n";
        let message = parser().parse(&plain[..]).unwrap();
        assert_eq!(declared(&message.parts[0], plain), Declared::Identity);
    }

    #[test]
    fn the_parser_reads_every_other_header_as_mail_parser_does_by_default() {
        let raw = b"From: =?utf-8?q?J=C3=B6rg?= <j@example.com>\r\n\
To: a@example.com, b@example.com\r\nCc: c@example.com\r\nReply-To: r@example.com\r\n\
Sender: s@example.com\r\nList-Id: <list.example.com>\r\nList-Post: <mailto:l@example.com>\r\n\
Date: Tue, 1 Jul 2025 10:00:00 +0200\r\nResent-Date: Tue, 1 Jul 2025 11:00:00 +0200\r\n\
Subject: =?utf-8?b?w6TDtsO8?=\r\nComments: a comment\r\nMessage-ID: <m@example.com>\r\n\
In-Reply-To: <p@example.com>\r\nReferences: <o@example.com> <p@example.com>\r\n\
Return-Path: <bounce@example.com>\r\nKeywords: one, two\r\nContent-Language: en, de\r\n\
Received: from mx.example.com by mx2.example.com; Tue, 1 Jul 2025 10:00:01 +0200\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\
X-Custom: =?utf-8?q?raw?=\r\n\r\n--b\r\nContent-Type: text/plain\r\n\
Content-Disposition: inline\r\nContent-ID: <c@example.com>\r\n\
Content-Description: d\r\nContent-Location: l\r\n\r\nhello\r\n--b--\r\n";
        let ours = parser().parse(&raw[..]).unwrap();
        let theirs = MessageParser::new().parse(&raw[..]).unwrap();
        assert_eq!(ours.parts.len(), theirs.parts.len());
        for (a, b) in ours.parts.iter().zip(&theirs.parts) {
            assert_eq!(a.headers, b.headers);
        }
    }

    fn slow_qp(body: &[u8]) -> Option<Vec<u8>> {
        by_mail_parser(MessageStream::decode_quoted_printable_mime, body)
    }

    #[test]
    fn quoted_printable_follows_mail_parsers_rules() {
        let cases: [&[u8]; 8] = [
            b"caf=C3=A9 =\r\nna=c3=afve  \r\nend",
            b"no CR first\nthen =\r\nCRLF\nlines\n",
            b"blanks kept =20\r\nbefore soft break  =  \r\nx\t\x0c\r\n",
            b"=3D=3d==",
            b"=G1 odd",
            b"=\rX",
            b"trailing =",
            b"",
        ];
        for case in cases {
            assert_eq!(
                decode(Declared::QuotedPrintable, case).as_deref(),
                slow_qp(case).as_deref(),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
        // The ordinary shapes take the fast way.
        assert!(bulk_quoted_printable(cases[0]).is_some());
        assert!(bulk_quoted_printable(cases[2]).is_some());
    }

    proptest! {
        #[test]
        fn quoted_printable_decodes_as_mail_parser_decodes(
            pieces in proptest::collection::vec(
                prop::sample::select(vec![
                    "=", "=\r\n", "=\n", "= \r\n", "=3D", "=c3", "=A9", "=G", "=4", " ", "\t",
                    "\x0c", "\r", "\n", "\r\n", "a", "Zz", "0", "f", "-", "\u{e9}",
                ]),
                0..80,
            ),
        ) {
            let body = pieces.concat();
            let reference = slow_qp(body.as_bytes());
            let ours = decode(Declared::QuotedPrintable, body.as_bytes());
            prop_assert_eq!(ours.as_deref(), reference.as_deref());
        }

        #[test]
        fn decodes_what_mail_parser_decodes(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            width in 1usize..120,
            crlf in any::<bool>(),
        ) {
            let body = wrapped(&data, width, if crlf { "\r\n" } else { "\n" });
            let decoded = decode(Declared::Base64, &body);
            prop_assert_eq!(decoded.as_deref(), Some(&data[..]));
            let reference = slow(&body);
            prop_assert_eq!(decoded.as_deref(), reference.as_deref());
        }
    }
}
