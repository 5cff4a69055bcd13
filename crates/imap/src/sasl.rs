//! SASL XOAUTH2 and OAUTHBEARER (RFC 7628): the initial responses, the answers to a server's
//! error challenge, the decoding of that challenge, and the choice of mechanism from CAPABILITY.
//!
//! Pure functions only: no I/O and no token handling beyond formatting the string that goes on
//! the wire. The exchange itself lives in `login`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use oauthimap_types::Mechanism;
use serde::Serialize;

/// A concrete SASL mechanism (what `Mechanism::Auto` resolves to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SaslMechanism {
    /// Google's and Microsoft's XOAUTH2.
    Xoauth2,
    /// RFC 7628 OAUTHBEARER.
    Oauthbearer,
}

impl SaslMechanism {
    /// The IANA name used in `AUTHENTICATE` and `AUTH=`.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Xoauth2 => "XOAUTH2",
            SaslMechanism::Oauthbearer => "OAUTHBEARER",
        }
    }

    /// What the client sends after an error challenge: XOAUTH2 expects an empty line, RFC 7628
    /// section 3.2.3 a single `%x01` (base64 `AQ==`). Either way the server then answers `NO`.
    pub fn error_challenge_answer(self) -> &'static str {
        match self {
            SaslMechanism::Xoauth2 => "",
            SaslMechanism::Oauthbearer => "AQ==",
        }
    }

    /// The base64 initial response for `user` with `token`; `host` and `port` are only used by
    /// OAUTHBEARER.
    pub fn initial_response(self, user: &str, host: &str, port: u16, token: &str) -> String {
        match self {
            SaslMechanism::Xoauth2 => xoauth2_initial_response(user, token),
            SaslMechanism::Oauthbearer => oauthbearer_initial_response(user, host, port, token),
        }
    }
}

impl std::fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Picks the mechanism to use from the configured choice and the server's capabilities
/// (`AUTH=...` atoms, any case). `Auto` prefers OAUTHBEARER when both are offered. Returns
/// `None` when the configured (or any, for `Auto`) mechanism is not advertised.
pub fn choose_mechanism(configured: Mechanism, capabilities: &[String]) -> Option<SaslMechanism> {
    let offers = |m: SaslMechanism| {
        capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(&format!("AUTH={}", m.name())))
    };
    match configured {
        Mechanism::Xoauth2 => offers(SaslMechanism::Xoauth2).then_some(SaslMechanism::Xoauth2),
        Mechanism::Oauthbearer => {
            offers(SaslMechanism::Oauthbearer).then_some(SaslMechanism::Oauthbearer)
        }
        Mechanism::Auto => [SaslMechanism::Oauthbearer, SaslMechanism::Xoauth2]
            .into_iter()
            .find(|m| offers(*m)),
    }
}

/// The XOAUTH2 initial response: base64 of `user=U\x01auth=Bearer T\x01\x01`.
pub fn xoauth2_initial_response(user: &str, token: &str) -> String {
    B64.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

/// The OAUTHBEARER (RFC 7628) initial response: base64 of
/// `n,a=U,\x01host=H\x01port=P\x01auth=Bearer T\x01\x01`, with `,` and `=` in the authorization
/// identity escaped as `=2C` and `=3D` (RFC 5801 `saslname`).
pub fn oauthbearer_initial_response(user: &str, host: &str, port: u16, token: &str) -> String {
    B64.encode(format!(
        "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01",
        escape_saslname(user)
    ))
}

/// RFC 5801 `saslname` escaping: `=` becomes `=3D`, `,` becomes `=2C`.
pub fn escape_saslname(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '=' => out.push_str("=3D"),
            ',' => out.push_str("=2C"),
            c => out.push(c),
        }
    }
    out
}

/// What a server said in its error challenge (base64 JSON after `+ `). Gmail and Dovecot's
/// XOAUTH2 send `status`, `schemes`, `scope`; RFC 7628 servers at least `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SaslErrorDetails {
    /// `"401"`, `"400"` (Gmail), `"invalid_token"` (RFC 7628), ...
    pub status: Option<String>,
    /// The authentication schemes the server accepts, e.g. `"bearer"`.
    pub schemes: Option<String>,
    /// The scope a token needs, e.g. `"mail"` or `"https://mail.google.com/"`.
    pub scope: Option<String>,
    /// RFC 7628 `openid-configuration`, when given.
    pub openid_configuration: Option<String>,
}

impl SaslErrorDetails {
    /// A one-line summary such as `status 401, schemes bearer, scope mail`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [
            ("status", &self.status),
            ("schemes", &self.schemes),
            ("scope", &self.scope),
            ("openid-configuration", &self.openid_configuration),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name} {v}")))
        .collect();
        if parts.is_empty() {
            "no details".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

impl std::fmt::Display for SaslErrorDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

/// Decodes an error challenge: the text after `+ ` (a leading `+ ` is tolerated), base64 of a
/// JSON object. Returns `None` for anything else (empty, not base64, not a JSON object). String
/// or number values are accepted (some servers send `"status": 401`).
pub fn decode_error_challenge(challenge: &str) -> Option<SaslErrorDetails> {
    let text = challenge.trim();
    let text = text.strip_prefix('+').map_or(text, str::trim_start);
    if text.is_empty() {
        return None;
    }
    let bytes = B64.decode(text).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let object = value.as_object()?;
    let field = |name: &str| match object.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    Some(SaslErrorDetails {
        status: field("status"),
        schemes: field("schemes"),
        scope: field("scope"),
        openid_configuration: field("openid-configuration"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOGLE_USER: &str = "someuser@example.com";
    const GOOGLE_TOKEN: &str = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg";
    /// From Google's XOAUTH2 documentation (developers.google.com/gmail/imap/xoauth2-protocol).
    const GOOGLE_B64: &str = "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==";

    #[test]
    fn xoauth2_matches_googles_documented_example() {
        assert_eq!(
            xoauth2_initial_response(GOOGLE_USER, GOOGLE_TOKEN),
            GOOGLE_B64
        );
        assert_eq!(
            B64.decode(GOOGLE_B64).unwrap(),
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
    }

    #[test]
    fn oauthbearer_known_answer() {
        // RFC 7628 section 4.1 example (user@example.com, server.example.com:143, vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==).
        assert_eq!(
            oauthbearer_initial_response(
                "user@example.com",
                "server.example.com",
                143,
                "vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg=="
            ),
            "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2c9PQEB"
        );
    }

    #[test]
    fn oauthbearer_escapes_the_authzid() {
        let encoded = oauthbearer_initial_response("a,b=c@example.com", "h", 1, "t");
        assert_eq!(
            B64.decode(encoded).unwrap(),
            b"n,a=a=2Cb=3Dc@example.com,\x01host=h\x01port=1\x01auth=Bearer t\x01\x01"
        );
        assert_eq!(escape_saslname("=,="), "=3D=2C=3D");
    }

    #[test]
    fn decodes_dovecot_gmail_and_rfc7628_challenges() {
        let dovecot = decode_error_challenge(
            "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=",
        )
        .unwrap();
        assert_eq!(dovecot.status.as_deref(), Some("401"));
        assert_eq!(dovecot.schemes.as_deref(), Some("bearer"));
        assert_eq!(dovecot.scope.as_deref(), Some("mail"));
        assert_eq!(dovecot.summary(), "status 401, schemes bearer, scope mail");

        // Gmail's documented failure: {"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}
        let gmail = decode_error_challenge(
            "+ eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==",
        )
        .unwrap();
        assert_eq!(gmail.status.as_deref(), Some("400"));
        assert_eq!(gmail.scope.as_deref(), Some("https://mail.google.com/"));

        let rfc = decode_error_challenge("eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=").unwrap();
        assert_eq!(
            rfc,
            SaslErrorDetails {
                status: Some("invalid_token".into()),
                ..SaslErrorDetails::default()
            }
        );
        let numeric = decode_error_challenge(&B64.encode(r#"{"status":401}"#)).unwrap();
        assert_eq!(numeric.status.as_deref(), Some("401"));
    }

    #[test]
    fn rejects_what_is_not_a_json_challenge() {
        for bad in ["", "+ ", "+", "!!!", "bm90IGpzb24=", "WzEsMl0=", "bnVsbA=="] {
            assert_eq!(decode_error_challenge(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn auto_prefers_oauthbearer() {
        let caps = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let both = caps(&["IMAP4rev1", "AUTH=XOAUTH2", "auth=oauthbearer"]);
        assert_eq!(
            choose_mechanism(Mechanism::Auto, &both),
            Some(SaslMechanism::Oauthbearer)
        );
        assert_eq!(
            choose_mechanism(Mechanism::Xoauth2, &both),
            Some(SaslMechanism::Xoauth2)
        );
        let xo = caps(&["AUTH=XOAUTH2", "AUTH=PLAIN"]);
        assert_eq!(
            choose_mechanism(Mechanism::Auto, &xo),
            Some(SaslMechanism::Xoauth2)
        );
        assert_eq!(choose_mechanism(Mechanism::Oauthbearer, &xo), None);
        assert_eq!(
            choose_mechanism(Mechanism::Auto, &caps(&["AUTH=PLAIN"])),
            None
        );
    }

    #[test]
    fn error_answers_follow_the_specs() {
        assert_eq!(SaslMechanism::Xoauth2.error_challenge_answer(), "");
        assert_eq!(
            B64.decode(SaslMechanism::Oauthbearer.error_challenge_answer())
                .unwrap(),
            b"\x01"
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn unescape_saslname(s: &str) -> String {
            s.replace("=2C", ",").replace("=3D", "=")
        }

        proptest! {
            #[test]
            fn xoauth2_round_trips(user in "[^\\x01]{0,40}", token in "[!-~]{0,80}") {
                let decoded = B64.decode(xoauth2_initial_response(&user, &token)).unwrap();
                let text = String::from_utf8(decoded).unwrap();
                let rest = text.strip_prefix("user=").unwrap();
                let (u, rest) = rest.split_once('\x01').unwrap();
                prop_assert_eq!(u, user.as_str());
                prop_assert_eq!(rest, format!("auth=Bearer {token}\x01\x01"));
            }

            #[test]
            fn oauthbearer_round_trips(
                user in "[^\\x01]{0,40}",
                host in "[a-z0-9.-]{1,30}",
                port in any::<u16>(),
                token in "[!-~]{0,80}",
            ) {
                let decoded = B64.decode(oauthbearer_initial_response(&user, &host, port, &token)).unwrap();
                let text = String::from_utf8(decoded).unwrap();
                let gs2 = text.strip_prefix("n,a=").unwrap();
                let (authzid, kvs) = gs2.split_once(",\x01").unwrap();
                // The escaped authzid holds no raw ',' so the GS2 header is unambiguous.
                prop_assert!(!authzid.contains(','));
                prop_assert_eq!(unescape_saslname(authzid), user);
                let fields: Vec<&str> = kvs.strip_suffix("\x01\x01").unwrap().split('\x01').collect();
                prop_assert_eq!(fields, vec![
                    format!("host={host}"), format!("port={port}"), format!("auth=Bearer {token}"),
                ]);
            }

            #[test]
            fn challenge_round_trips(status in "[ -~]{0,20}", scope in proptest::option::of("[ -~]{0,20}")) {
                let mut json = serde_json::json!({"status": status});
                if let Some(scope) = &scope {
                    json["scope"] = serde_json::Value::String(scope.clone());
                }
                let details = decode_error_challenge(&B64.encode(json.to_string())).unwrap();
                prop_assert_eq!(details.status, Some(status));
                prop_assert_eq!(details.scope, scope);
            }

            #[test]
            fn decoder_never_panics(input in ".{0,200}") {
                let _ = decode_error_challenge(&input);
            }
        }
    }
}
