//! Parsing of `application/x-www-form-urlencoded` query strings and bodies, and HTTP Basic client
//! credentials, without ever failing the request: a malformed input becomes an OAuth error later.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Request parameters; a repeated name is remembered so the caller can refuse it (RFC 6749
/// section 3.1: "Request and response parameters MUST NOT be included more than once").
#[derive(Debug, Default)]
pub(crate) struct Params {
    map: HashMap<String, String>,
    pub repeated: Option<String>,
}

impl Params {
    /// Parses `a=1&b=2`.
    pub(crate) fn parse(input: &[u8]) -> Self {
        let mut out = Self::default();
        for (k, v) in url::form_urlencoded::parse(input) {
            if out.map.contains_key(k.as_ref()) {
                out.repeated.get_or_insert_with(|| k.to_string());
            } else {
                out.map.insert(k.into_owned(), v.into_owned());
            }
        }
        out
    }

    /// A parameter, `None` when absent or empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.map
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Client credentials from `Authorization: Basic` (RFC 6749 section 2.3.1: each part is
/// form-urlencoded before base64). `None` when absent or undecodable.
pub(crate) fn basic_credentials(headers: &axum::http::HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

/// A bearer token from `Authorization: Bearer ...`.
pub(crate) fn bearer_token(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_flagged() {
        let p = Params::parse(b"a=1&b=&a=2");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.repeated.as_deref(), Some("a"));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut h = axum::http::HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode("my%20id:s%3Acret"));
        h.insert(
            axum::http::header::AUTHORIZATION,
            v.parse().expect("header value"),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("my id".to_owned(), "s:cret".to_owned()))
        );
    }
}
