//! A protocol transcript for diagnostics: every line sent and received, in order, with secrets
//! removed before they are stored. AUTHENTICATE payloads are replaced by `[redacted]` where they
//! are sent; as a second line of defence every stored line is scrubbed of the registered
//! secrets (the token and its SASL encodings) and of anything that looks like a bearer token or
//! a long base64 string. A server's SASL error challenge is kept when it decodes as one (it
//! carries the server's reason, never a secret). Literal contents (message bodies) are not
//! stored, only their size. Bounded: at most `MAX_LINES` lines of at most `MAX_LINE` characters.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::sasl::decode_error_challenge;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";
const MAX_LINES: usize = 5000;
const MAX_LINE: usize = 2000;
/// Base64-looking words at least this long are redacted from client lines.
const LONG_BASE64: usize = 32;

/// Who wrote a transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Sent by us.
    Client,
    /// Received from the server.
    Server,
    /// A remark of ours (TLS established, reconnecting, ...).
    Note,
}

/// One transcript line (CRLF removed, already redacted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TranscriptLine {
    /// Who wrote it.
    pub direction: Direction,
    /// The redacted text.
    pub text: String,
}

#[derive(Default)]
struct Inner {
    lines: Vec<TranscriptLine>,
    secrets: Vec<String>,
    dropped: usize,
    /// The first TLS handshake's duration, so a report can time each step on its own even
    /// when the login then fails.
    tls_handshake: Option<std::time::Duration>,
}

/// A shared, clonable transcript; give a clone to `SessionConfig::transcript` and read it after.
#[derive(Clone, Default)]
pub struct Transcript {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcript")
            .field("lines", &self.lock().lines.len())
            .finish_non_exhaustive()
    }
}

impl Transcript {
    /// An empty transcript.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<TranscriptLine> {
        self.lock().lines.clone()
    }

    /// The transcript as text: `C: ` / `S: ` / `# ` per line.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        for line in &inner.lines {
            let prefix = match line.direction {
                Direction::Client => "C: ",
                Direction::Server => "S: ",
                Direction::Note => "# ",
            };
            let _ = writeln!(out, "{prefix}{}", line.text);
        }
        if inner.dropped > 0 {
            let _ = writeln!(out, "# ... {} more lines not kept", inner.dropped);
        }
        out
    }

    /// Registers a secret (and is given its SASL encodings too) so that it never appears.
    pub(crate) fn add_secret(&self, secret: &str) {
        if secret.len() >= 8 {
            let mut inner = self.lock();
            if !inner.secrets.iter().any(|s| s == secret) {
                inner.secrets.push(secret.to_owned());
            }
        }
    }

    /// Records a line we sent. `sensitive` lines carry a SASL payload: `TAG AUTHENTICATE MECH
    /// <payload>` keeps its first three words, anything else becomes `[redacted]`.
    pub(crate) fn client(&self, text: &str, sensitive: bool) {
        let text = if sensitive {
            redact_sasl_line(text)
        } else {
            text.to_owned()
        };
        self.push(Direction::Client, &text, true);
    }

    /// Records a line the server sent.
    pub(crate) fn server(&self, text: &str) {
        self.push(Direction::Server, text, false);
    }

    /// Records a remark.
    pub fn note(&self, text: &str) {
        self.push(Direction::Note, text, false);
    }

    /// Records how long the TLS handshake took (the first one counts).
    pub(crate) fn tls_done(&self, handshake: std::time::Duration) {
        self.lock().tls_handshake.get_or_insert(handshake);
    }

    /// How long the first TLS handshake took, if one was made.
    pub fn tls_handshake(&self) -> Option<std::time::Duration> {
        self.lock().tls_handshake
    }

    fn push(&self, direction: Direction, text: &str, from_client: bool) {
        let mut inner = self.lock();
        if inner.lines.len() >= MAX_LINES {
            inner.dropped += 1;
            return;
        }
        let mut text = scrub(text, &inner.secrets, from_client);
        if text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" [...]");
        }
        inner.lines.push(TranscriptLine { direction, text });
    }
}

/// `A1 AUTHENTICATE XOAUTH2 <payload>` -> `A1 AUTHENTICATE XOAUTH2 [redacted]`; a bare SASL
/// response -> `[redacted]`.
fn redact_sasl_line(text: &str) -> String {
    let words: Vec<&str> = text.splitn(4, ' ').collect();
    if words.len() >= 3 && words[1].eq_ignore_ascii_case("AUTHENTICATE") {
        if words.len() == 4 {
            format!("{} {} {} {REDACTED}", words[0], words[1], words[2])
        } else {
            text.to_owned()
        }
    } else if text.is_empty() {
        String::new()
    } else {
        REDACTED.to_owned()
    }
}

/// Removes registered secrets and token-looking words from a line.
pub fn scrub(text: &str, secrets: &[String], from_client: bool) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), REDACTED);
        }
    }
    // A server's SASL error challenge is kept: it is the server's reason, not a secret.
    if !from_client
        && let Some(payload) = text.strip_prefix("+ ")
        && decode_error_challenge(payload).is_some()
    {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if looks_like_token(word, from_client) {
            out.push_str(REDACTED);
        } else {
            out.push_str(word);
        }
    }
    out
}

/// Bearer tokens (JWTs, Google `ya29.` / `1//`), and on client lines long base64 runs (SASL).
fn looks_like_token(word: &str, from_client: bool) -> bool {
    let word = word.trim_matches(|c: char| matches!(c, '"' | '(' | ')' | '[' | ']'));
    if word.len() < 16 {
        return false;
    }
    let jwt = word.starts_with("eyJ") && word.matches('.').count() >= 2;
    let google = word.starts_with("ya29.") || word.starts_with("1//");
    let base64ish = word.len() >= LONG_BASE64
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_' | b'.')
        });
    jwt || google || (from_client && base64ish)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::xoauth2_initial_response;

    #[test]
    fn authenticate_payloads_are_redacted_where_sent() {
        let t = Transcript::new();
        t.client("A1 AUTHENTICATE XOAUTH2 dXNlcj1h", true);
        t.client("A1 AUTHENTICATE XOAUTH2", true);
        t.client("dXNlcj1h", true);
        t.client("", false);
        t.client("AQ==", false);
        assert_eq!(
            t.render(),
            "C: A1 AUTHENTICATE XOAUTH2 [redacted]\nC: A1 AUTHENTICATE XOAUTH2\nC: [redacted]\nC: \nC: AQ==\n"
        );
    }

    #[test]
    fn registered_secrets_and_token_shapes_never_survive() {
        let token = "ya29.a0AfH6SMBx-very-secret-token-value";
        let t = Transcript::new();
        t.add_secret(token);
        t.add_secret(&xoauth2_initial_response("a@b.c", token));
        // A careless line that was not marked sensitive still loses the token.
        t.client(&format!("A9 X {token}"), false);
        t.client(
            &format!("A9 X {}", xoauth2_initial_response("a@b.c", token)),
            false,
        );
        t.server(&format!("* OK echo {token}"));
        t.server("* OK eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVl");
        t.client("A3 X 1//0gSecretRefreshTokenValue", false);
        let text = t.render();
        assert!(!text.contains("secret-token"), "{text}");
        assert!(!text.contains("eyJhbGci"), "{text}");
        assert!(!text.contains("1//0g"), "{text}");
        assert_eq!(text.matches(REDACTED).count(), 5, "{text}");
    }

    #[test]
    fn error_challenges_and_ordinary_lines_are_kept() {
        let t = Transcript::new();
        let challenge = "+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=";
        t.server(challenge);
        t.server("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] Dovecot (Debian) ready.");
        t.server("* 1 FETCH (UID 5 RFC822.SIZE 120 BODY[] {120}");
        t.note("TLS established");
        assert_eq!(
            t.render(),
            format!(
                "S: {challenge}\nS: * OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] Dovecot (Debian) ready.\n\
                 S: * 1 FETCH (UID 5 RFC822.SIZE 120 BODY[] {{120}}\n# TLS established\n"
            )
        );
        // Server lines lose only registered secrets and bearer-token shapes.
        assert_eq!(
            scrub(
                "+ dXNlcj1hbGljZUBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB0",
                &[],
                false
            ),
            "+ dXNlcj1hbGljZUBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB0",
            "server lines keep plain base64 unless it is a registered secret"
        );
    }

    #[test]
    fn bounded() {
        let t = Transcript::new();
        for i in 0..MAX_LINES + 3 {
            t.server(&format!("* {i} EXISTS"));
        }
        t.server(&"x ".repeat(MAX_LINE));
        assert_eq!(t.lines().len(), MAX_LINES);
        assert!(t.render().ends_with("# ... 4 more lines not kept\n"));
        let long = Transcript::new();
        long.server(&"y ".repeat(MAX_LINE));
        assert!(long.lines()[0].text.len() <= MAX_LINE + 6);
    }
}
