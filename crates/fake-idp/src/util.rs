//! Small, infallible helpers: unguessable random strings, hashing, base64url, GUIDs, clock and the
//! compact JWS encoder used for ID tokens and Microsoft-shaped access tokens.
//!
//! Randomness comes from a 32-byte seed read from the OS once at start-up; every value afterwards is
//! `SHA-256(seed || counter)`, so request handlers never deal with an OS error and never panic.
//! Nothing here knows about HTTP or about providers.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// A seeded generator for tokens, codes and ids. Unguessable as long as the seed stays secret.
#[derive(Debug)]
pub(crate) struct Rng {
    seed: [u8; 32],
    counter: AtomicU64,
}

impl Rng {
    /// Seeds from the operating system.
    pub(crate) fn from_os() -> std::io::Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self {
            seed,
            counter: AtomicU64::new(0),
        })
    }

    /// 32 fresh pseudo-random bytes.
    pub(crate) fn block(&self) -> [u8; 32] {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(n.to_be_bytes());
        h.finalize().into()
    }

    /// `len` pseudo-random bytes.
    pub(crate) fn bytes(&self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 32);
        while out.len() < len {
            out.extend_from_slice(&self.block());
        }
        out.truncate(len);
        out
    }

    /// A base64url string carrying `len` random bytes.
    pub(crate) fn token(&self, len: usize) -> String {
        b64url(&self.bytes(len))
    }

    /// A random version-4 GUID, lower case, hyphenated.
    pub(crate) fn guid(&self) -> String {
        let b = self.block();
        let mut g = [0u8; 16];
        g.copy_from_slice(&b[..16]);
        format_guid(g)
    }

    /// A random user code made of `len` characters from `alphabet`.
    pub(crate) fn code_from(&self, alphabet: &[u8], len: usize) -> String {
        self.bytes(len)
            .iter()
            .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
            .collect()
    }

    /// The HMAC key used to sign JWTs: derived from the seed, so it is as secret as the seed.
    pub(crate) fn jwt_key(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"fake-idp jwt key");
        h.update(self.seed);
        h.finalize().into()
    }
}

/// Formats 16 bytes as a version-4 GUID.
fn format_guid(mut g: [u8; 16]) -> String {
    g[6] = (g[6] & 0x0f) | 0x40;
    g[8] = (g[8] & 0x3f) | 0x80;
    let mut hex = String::with_capacity(32);
    for b in g {
        let _ = write!(hex, "{b:02x}");
    }
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A GUID derived deterministically from `input` (stable object ids for configured users).
pub(crate) fn stable_guid(input: &str) -> String {
    let d = sha256(input.as_bytes());
    let mut g = [0u8; 16];
    g.copy_from_slice(&d[..16]);
    format_guid(g)
}

/// A 21-digit decimal id derived from `input`, the shape of Google account ids (`sub`).
pub(crate) fn stable_numeric_id(input: &str) -> String {
    let d = sha256(input.as_bytes());
    let mut s = String::from("1");
    for b in &d[..20] {
        s.push(char::from(b'0' + b % 10));
    }
    s
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Unpadded base64url.
pub(crate) fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// RFC 7636 S256: `BASE64URL(SHA256(ASCII(code_verifier)))`.
pub(crate) fn pkce_s256(verifier: &str) -> String {
    b64url(&sha256(verifier.as_bytes()))
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Microsoft's timestamp format in error bodies: `2016-01-09 02:02:12Z` (UTC).
pub(crate) fn ms_timestamp(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Encodes `claims` as a compact JWS signed with HS256 under `key`.
///
/// Real providers sign with RS256 and publish keys; clients of this fixture read tokens received
/// directly from the token endpoint without verifying them, so a symmetric signature keeps the
/// fixture small while the tokens stay unforgeable from outside.
pub(crate) fn jws_hs256(key: &[u8; 32], kid: &str, claims: &serde_json::Value) -> String {
    let header = serde_json::json!({"typ": "JWT", "alg": "HS256", "kid": kid});
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        // Unreachable: HMAC accepts keys of any length.
        Err(_) => Vec::new(),
    };
    format!("{signing_input}.{}", b64url(&sig))
}

/// Percent-encodes a query component (application/x-www-form-urlencoded).
pub(crate) fn form_encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_known_answer_computed_with_python_hashlib() {
        assert_eq!(
            pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW-gFWFOEjXk"),
            "90EpwHQr_xi9uDtjYyz5mq9Z4RekugHRqg5ijpXC3FQ"
        );
    }

    #[test]
    fn ms_timestamp_formats_utc() {
        assert_eq!(ms_timestamp(1_452_304_932), "2016-01-09 02:02:12Z");
        assert_eq!(ms_timestamp(0), "1970-01-01 00:00:00Z");
    }

    #[test]
    fn guids_are_v4_shaped_and_distinct() {
        let rng = Rng::from_os().expect("seed");
        let a = rng.guid();
        let b = rng.guid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_eq!(stable_guid("x"), stable_guid("x"));
        assert_eq!(stable_numeric_id("x").len(), 21);
    }
}
