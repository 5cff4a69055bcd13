//! The benchmark's mailbox: a deterministic, realistic mix of messages, the same for every seed.
//!
//! Message `i` depends only on `i` (a `SplitMix64` seeded from it), so every user's mailbox holds
//! the same bytes and a 2,000-message mailbox is the first 2,000 of the 10,000. The mix, drawn
//! per message:
//!
//! | share | kind | size |
//! |---|---|---|
//! | 58 %   | `text/plain` (UTF-8, 8bit or quoted-printable) | 1-8 KB |
//! | 25.5 % | `multipart/alternative` text + HTML | 5-30 KB |
//! | 14 %   | `multipart/mixed` with one or two attachments (PDF, spreadsheet, inline image) | 10-120 KB each |
//! | 2 %    | one attachment | 300-900 KB |
//! | 0.5 %  | one attachment | 1-3 MB |
//!
//! Attachments are random bytes (incompressible, like PDFs and JPEGs) in base64. About half the
//! senders and a third of the subjects are non-ASCII, as RFC 2047 encoded-words (`B` and `Q`);
//! some attachment names use RFC 2231. Every message has a Message-ID, a Date, and some reply to
//! an earlier one (In-Reply-To, References).

use std::fmt::Write as _;

use base64::Engine;

/// A small, fast, deterministic generator (`SplitMix64`).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x0123_4567_89AB_CDEF)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + usize::try_from(self.next_u64() % (hi - lo) as u64).unwrap_or(0)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len())]
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

const NAMES: &[&str] = &[
    "Alice Martin",
    "Bob Smith",
    "Carol White",
    "David Brown",
    "Emma Wilson",
    "Zoë Müller",
    "José Álvarez",
    "Łukasz Żółkiewski",
    "Ørjan Søreide",
    "Renée Faÿ",
    "Иван Петров",
    "山田 太郎",
    "Ana Pérez",
    "François Lefèvre",
];

const SUBJECTS: &[&str] = &[
    "Printer on the 3rd floor is out of toner",
    "Cannot log in to the VPN since this morning",
    "Request: new laptop for the onboarding on Monday",
    "Invoice 2026-{n} attached",
    "Re: password reset link expired",
    "Outlook keeps asking for my password",
    "Réunion de suivi : accès au partage réseau",
    "Störung: Drucker im Büro druckt nur leere Seiten",
    "Problème d'accès à l'intranet — urgent",
    "Заявка: не работает почта",
    "パスワードの再設定について",
    "Solicitud de acceso a la carpeta compartida (ñ)",
];

const WORDS: &[&str] = &[
    "the",
    "ticket",
    "server",
    "please",
    "could",
    "you",
    "check",
    "printer",
    "network",
    "access",
    "since",
    "yesterday",
    "urgent",
    "meeting",
    "invoice",
    "attached",
    "thanks",
    "regards",
    "error",
    "message",
    "screen",
    "password",
    "reset",
    "account",
    "office",
    "Büro",
    "café",
    "naïve",
    "déjà",
    "über",
    "Grüße",
    "très",
    "señor",
    "mañana",
];

/// Base64 of `data` in 76-column lines, CRLF-terminated.
fn base64_lines(data: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 * 2 + 2);
    for line in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// An RFC 2047 encoded-word when `text` is not ASCII (B or Q, alternating), else `text`.
fn encoded_word(text: &str, q: bool) -> String {
    if text.is_ascii() {
        return text.to_owned();
    }
    if q {
        let mut out = String::from("=?UTF-8?Q?");
        for b in text.bytes() {
            match b {
                b' ' => out.push('_'),
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' => out.push(char::from(b)),
                _ => {
                    let _ = write!(out, "={b:02X}");
                }
            }
        }
        out + "?="
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(text);
        format!("=?UTF-8?B?{b64}?=")
    }
}

/// Quoted-printable (RFC 2045) with CRLF line ends and soft breaks before column 76.
fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 11 / 10);
    for line in text.split("\r\n") {
        let mut col = 0;
        for b in line.bytes() {
            let piece = match b {
                b'=' => "=3D".to_owned(),
                33..=126 | b' ' => char::from(b).to_string(),
                _ => format!("={b:02X}"),
            };
            if col + piece.len() > 75 {
                out.push_str("=\r\n");
                col = 0;
            }
            col += piece.len();
            out.push_str(&piece);
        }
        out.push_str("\r\n");
    }
    out
}

fn paragraphs(rng: &mut Rng, bytes: usize) -> Vec<String> {
    let mut paras = Vec::new();
    let mut total = 0;
    while total < bytes {
        let mut p = String::new();
        let mut col = 0;
        for _ in 0..rng.range(20, 90) {
            let w = rng.pick(WORDS);
            if col + w.len() > 72 {
                p.push_str("\r\n");
                col = 0;
            } else if !p.is_empty() {
                p.push(' ');
                col += 1;
            }
            p.push_str(w);
            col += w.len();
        }
        p.push('.');
        total += p.len() + 4;
        paras.push(p);
    }
    paras
}

/// A `text/plain` part (headers and body), 8bit or quoted-printable.
fn text_part(rng: &mut Rng, bytes: usize) -> String {
    let body = paragraphs(rng, bytes).join("\r\n\r\n");
    if rng.range(0, 2) == 0 {
        format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
        )
    } else {
        format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}",
            quoted_printable(&body)
        )
    }
}

fn html_part(rng: &mut Rng, bytes: usize) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\r\n<html><head><meta charset=\"utf-8\"><style>p{font-family:Calibri,sans-serif}</style></head><body>\r\n",
    );
    for p in paragraphs(rng, bytes) {
        html.push_str("<p style=\"margin:0 0 8px 0\">");
        html.push_str(&p);
        html.push_str("</p>\r\n");
    }
    html.push_str("<table><tr><td><b>Ticket</b></td><td>#4711</td></tr></table></body></html>");
    format!(
        "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}",
        quoted_printable(&html)
    )
}

fn alternative(rng: &mut Rng, i: usize, text_bytes: usize) -> (String, String) {
    let boundary = format!("alt-{i:06}-b");
    let text = text_part(rng, text_bytes);
    let html = html_part(rng, text_bytes * 2);
    let body = format!(
        "This is a multi-part message in MIME format.\r\n\r\n--{boundary}\r\n{text}\r\n--{boundary}\r\n{html}\r\n--{boundary}--\r\n"
    );
    (
        format!("multipart/alternative; boundary=\"{boundary}\""),
        body,
    )
}

fn attachment(rng: &mut Rng, i: usize, n: usize, bytes: usize) -> String {
    let mut data = vec![0u8; bytes];
    rng.fill(&mut data);
    let (ctype, name, disposition) = match rng.range(0, 4) {
        0 => (
            "application/pdf",
            format!("report-{i}-{n}.pdf"),
            "attachment",
        ),
        1 => (
            "image/jpeg",
            format!("photo-{i}-{n}.jpg"),
            "inline", // referenced by Content-ID
        ),
        2 => (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            format!("Übersicht {i}.xlsx"),
            "attachment",
        ),
        _ => ("application/zip", format!("logs-{i}-{n}.zip"), "attachment"),
    };
    let filename = if name.is_ascii() {
        format!("filename=\"{name}\"")
    } else {
        let mut enc = String::from("filename*=UTF-8''");
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
                enc.push(char::from(b));
            } else {
                let _ = write!(enc, "%{b:02X}");
            }
        }
        enc
    };
    format!(
        "Content-Type: {ctype}; name=\"{}\"\r\nContent-Disposition: {disposition}; {filename}\r\n\
         Content-ID: <att-{i}-{n}@bench.example>\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        encoded_word(&name, false),
        base64_lines(&data)
    )
}

/// An RFC 5322 date for message `i` (one message every 7 minutes back from 2026-11-28).
#[allow(clippy::many_single_char_names)] // the published algorithm's names
fn date(i: usize) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = 1_795_860_000_i64 - i64::try_from(i).unwrap_or(0) * 7 * 60;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {d} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)],
        MONTHS[usize::try_from(m - 1).unwrap_or(0)],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Message `i` of the benchmark mailbox, with CRLF line ends.
pub fn message(i: usize) -> Vec<u8> {
    let mut rng = Rng::new(i as u64);
    let name = *rng.pick(NAMES);
    let subject = rng.pick(SUBJECTS).replace("{n}", &i.to_string());
    let q = rng.range(0, 2) == 0;
    let local: String = name
        .chars()
        .filter(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_lowercase();
    let mut headers = format!(
        "Return-Path: <{local}{i}@customer.example>\r\n\
         Received: from mx.customer.example (mx.customer.example [192.0.2.{}])\r\n\tby mail.contoso.example with ESMTPS id {i:08x}; {}\r\n\
         From: {} <{local}{i}@customer.example>\r\nTo: Helpdesk <help@contoso.example>\r\n\
         Subject: {}\r\nDate: {}\r\nMessage-ID: <bench-{i}-{:x}@customer.example>\r\nMIME-Version: 1.0\r\n",
        i % 250 + 1,
        date(i),
        encoded_word(name, q),
        encoded_word(&subject, !q),
        date(i),
        rng.next_u64() & 0xffff_ffff,
    );
    if i % 5 == 4 {
        let _ = write!(
            headers,
            "In-Reply-To: <bench-{}-0@customer.example>\r\nReferences: <bench-{}-0@customer.example>\r\n",
            i - 1,
            i - 1
        );
    }
    let kind = rng.range(0, 1000);
    let (ctype, body) = if kind < 580 {
        let bytes = rng.range(1_000, 8_000);
        let part = text_part(&mut rng, bytes);
        let (head, body) = part.split_once("\r\n\r\n").unwrap_or(("", &part));
        (head.to_owned(), body.to_owned())
    } else if kind < 835 {
        let bytes = rng.range(1_500, 10_000);
        let (ctype, body) = alternative(&mut rng, i, bytes);
        (format!("Content-Type: {ctype}"), body)
    } else {
        let sizes: Vec<usize> = if kind < 975 {
            let n = if rng.range(0, 4) == 0 { 2 } else { 1 };
            (0..n).map(|_| rng.range(10_000, 120_000)).collect()
        } else if kind < 995 {
            vec![rng.range(300_000, 900_000)]
        } else {
            vec![rng.range(1_000_000, 3_000_000)]
        };
        let boundary = format!("mixed-{i:06}-b");
        let bytes = rng.range(500, 3_000);
        let first = if rng.range(0, 2) == 0 {
            text_part(&mut rng, bytes)
        } else {
            let (ctype, body) = alternative(&mut rng, i, bytes);
            format!("Content-Type: {ctype}\r\n\r\n{body}")
        };
        let mut body = format!("--{boundary}\r\n{first}\r\n");
        for (n, size) in sizes.into_iter().enumerate() {
            let _ = write!(
                body,
                "--{boundary}\r\n{}\r\n",
                attachment(&mut rng, i, n, size)
            );
        }
        let _ = write!(body, "--{boundary}--\r\n");
        (
            format!("Content-Type: multipart/mixed; boundary=\"{boundary}\""),
            body,
        )
    };
    format!("{headers}{ctype}\r\n\r\n{body}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_deterministic_and_crlf() {
        assert_eq!(message(7), message(7));
        assert_ne!(message(7), message(8));
        for i in 0..300 {
            let m = message(i);
            for (k, &b) in m.iter().enumerate() {
                if b == b'\n' {
                    assert_eq!(m[k - 1], b'\r', "bare LF in message {i}");
                }
            }
        }
    }

    #[test]
    fn dates_are_valid() {
        assert_eq!(date(0), "Sat, 28 Nov 2026 10:00:00 +0000");
    }
}
