//! Shared test helpers: a stub RFC 7662 introspection endpoint (axum), a rustls client that trusts
//! the fixture's CA, and golden-transcript rendering and comparison.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use oauthimap_dovecot_fixture::imap::{Direction, TranscriptLine};
use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub const ALICE: &str = "alice@example.com";
pub const GOOD_TOKEN: &str = "good-token";

#[derive(Debug, Default)]
struct StubInner {
    /// token -> email of its owner
    tokens: HashMap<String, String>,
    /// answer 503 to everything
    down: bool,
    /// every token Dovecot asked about, in order
    hits: Vec<String>,
}

/// A fake RFC 7662 endpoint: `{"active":true,"email":..}` for known tokens, `{"active":false}`
/// otherwise, 503 while `set_down(true)`.
#[derive(Debug, Clone)]
pub struct Introspection {
    inner: Arc<Mutex<StubInner>>,
    pub url: String,
}

impl Introspection {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(StubInner::default()));
        inner
            .lock()
            .unwrap()
            .tokens
            .insert(GOOD_TOKEN.into(), ALICE.into());
        let app = Router::new()
            .route("/introspect", post(introspect))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stub");
        let url = format!("http://{}/introspect", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve stub") });
        Self { inner, url }
    }

    pub fn set_down(&self, down: bool) {
        self.inner.lock().unwrap().down = down;
    }

    pub fn revoke(&self, token: &str) {
        self.inner.lock().unwrap().tokens.remove(token);
    }

    pub fn hits(&self) -> Vec<String> {
        self.inner.lock().unwrap().hits.clone()
    }
}

async fn introspect(
    State(inner): State<Arc<Mutex<StubInner>>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let token = form.get("token").cloned().unwrap_or_default();
    inner.hits.push(token.clone());
    if inner.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "introspection is down").into_response();
    }
    match inner.tokens.get(&token) {
        Some(email) => Json(serde_json::json!({"active": true, "email": email})).into_response(),
        None => Json(serde_json::json!({"active": false})).into_response(),
    }
}

/// A stub and a Dovecot wired to it.
pub async fn setup() -> (Introspection, Dovecot) {
    let stub = Introspection::start().await;
    let dovecot = Dovecot::start(DovecotOptions::new(stub.url.clone()))
        .await
        .expect("start dovecot");
    (stub, dovecot)
}

pub fn xoauth2(user: &str, token: &str) -> String {
    B64.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

pub fn oauthbearer(user: &str, port: u16, token: &str) -> String {
    B64.encode(format!(
        "n,a={user},\x01host=127.0.0.1\x01port={port}\x01auth=Bearer {token}\x01\x01"
    ))
}

/// A rustls client (ring provider) that trusts only the fixture's CA.
pub fn tls_connector(ca_pem: &Path) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).expect("read CA") {
        roots.add(cert.expect("parse CA")).expect("add CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

pub async fn tls_connect(
    dovecot: &Dovecot,
    server_name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect((dovecot.host(), dovecot.imaps_port())).await?;
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    tls_connector(&dovecot.ca_pem_path())
        .connect(name, tcp)
        .await
}

/// Renders a transcript as golden text. Variable parts are normalised (see the header).
pub fn render(title: &str, lines: &[TranscriptLine], port: u16) -> String {
    let mut out = format!(
        "# {title}\n\
         # Recorded from Debian's Dovecot 2.3.19.1 by crates/dovecot-fixture/tests/it/sasl.rs.\n\
         # S: server line, C: client line (CRLF stripped). A `#=` line decodes the base64 SASL payload\n\
         # of the line above it (\\x01 shown as ^A). Normalised: OAUTHBEARER `port=<n>` -> `port={{PORT}}`\n\
         # (the base64 shown is of that text), `[host:date time]` -> `[HOST:TIME]`,\n\
         # `(0.001 + 0.000 secs)` -> `(TIMING)`, `[UIDVALIDITY <n>]` -> `[UIDVALIDITY N]`.\n"
    );
    let mut after_challenge = false;
    for line in lines {
        let text = String::from_utf8_lossy(&line.bytes).into_owned();
        match line.direction {
            Direction::Server => {
                let text = normalise_server(&text);
                let _ = writeln!(out, "S: {text}");
                after_challenge = text.starts_with('+');
                if let Some(payload) = text.strip_prefix("+ ").filter(|p| !p.is_empty()) {
                    out.push_str(&decoded_comment(payload));
                }
            }
            Direction::Client => {
                let (text, payload) = normalise_client(&text, port, after_challenge);
                let _ = writeln!(out, "C: {text}");
                if let Some(payload) = payload {
                    out.push_str(&decoded_comment(&payload));
                }
                after_challenge = false;
            }
        }
    }
    out
}

fn decoded_comment(payload: &str) -> String {
    match B64.decode(payload) {
        Ok(bytes) => format!(
            "#= {}\n",
            String::from_utf8_lossy(&bytes).replace('\x01', "^A")
        ),
        Err(_) => String::new(),
    }
}

fn normalise_server(text: &str) -> String {
    let mut text = text.to_owned();
    // "Temporary authentication failure. [vm:2026-11-28 00:06:24]"
    if let Some(start) = text.rfind(" [")
        && text.ends_with(']')
        && text[start..].contains(':')
        && text.contains("Temporary")
    {
        text.replace_range(start.., " [HOST:TIME]");
    }
    // "* OK [UIDVALIDITY 1795825029] UIDs valid" (epoch seconds of the mailbox's creation)
    if let Some(rest) = text.strip_prefix("* OK [UIDVALIDITY ")
        && let Some(end) = rest.find(']')
    {
        text = format!("* OK [UIDVALIDITY N]{}", &rest[end + 1..]);
    }
    // "Logout completed (0.001 + 0.000 secs)."
    if let Some(start) = text.find(" (")
        && let Some(end) = text[start..].find(" secs)")
        && text[start + 2..].starts_with(|c: char| c.is_ascii_digit())
    {
        text.replace_range(start..start + end + " secs)".len(), " (TIMING)");
    }
    text
}

/// Returns the line to print and the base64 payload it carries (if any).
fn normalise_client(text: &str, port: u16, after_challenge: bool) -> (String, Option<String>) {
    let parts: Vec<&str> = text.splitn(4, ' ').collect();
    if parts.len() == 4 && parts[1].eq_ignore_ascii_case("AUTHENTICATE") {
        let mut payload = parts[3].to_owned();
        if parts[2].eq_ignore_ascii_case("OAUTHBEARER")
            && let Ok(decoded) = B64.decode(&payload)
        {
            let decoded = String::from_utf8_lossy(&decoded)
                .replace(&format!("port={port}\x01"), "port={PORT}\x01");
            payload = B64.encode(decoded);
        }
        return (
            format!("{} {} {} {payload}", parts[0], parts[1], parts[2]),
            Some(payload),
        );
    }
    if after_challenge && !text.is_empty() && text != "*" {
        return (text.to_owned(), Some(text.to_owned()));
    }
    (text.to_owned(), None)
}

fn transcript_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/transcripts")
        .join(name)
}

/// Compares with `tests/transcripts/<name>`; `OAUTHIMAP_BLESS=1` (re)writes it instead.
pub fn assert_golden(name: &str, rendered: &str) {
    let path = transcript_path(name);
    if std::env::var_os("OAUTHIMAP_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, rendered).expect("write golden transcript");
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "cannot read golden transcript {}: {err}; run with OAUTHIMAP_BLESS=1 to record it",
            path.display()
        )
    });
    assert_eq!(
        golden,
        rendered,
        "Dovecot's answers differ from {}; if the change is expected, re-record with OAUTHIMAP_BLESS=1",
        path.display()
    );
}

#[test]
fn normalisation_known_answers() {
    assert_eq!(
        normalise_server(
            "A1 NO [UNAVAILABLE] Temporary authentication failure. [vm:2026-11-28 00:06:24]"
        ),
        "A1 NO [UNAVAILABLE] Temporary authentication failure. [HOST:TIME]"
    );
    assert_eq!(
        normalise_server("Z OK Logout completed (0.001 + 0.000 secs)."),
        "Z OK Logout completed (TIMING)."
    );
    assert_eq!(
        normalise_server("A2 OK Logout completed."),
        "A2 OK Logout completed."
    );
    assert_eq!(
        normalise_server("* OK [UIDVALIDITY 1795825029] UIDs valid"),
        "* OK [UIDVALIDITY N] UIDs valid"
    );
    let line = format!(
        "A1 AUTHENTICATE OAUTHBEARER {}",
        oauthbearer(ALICE, 4321, "t")
    );
    let (text, payload) = normalise_client(&line, 4321, false);
    assert_eq!(
        text,
        format!("A1 AUTHENTICATE OAUTHBEARER {}", payload.clone().unwrap())
    );
    let decoded = B64.decode(payload.unwrap()).unwrap();
    assert_eq!(
        decoded,
        b"n,a=alice@example.com,\x01host=127.0.0.1\x01port={PORT}\x01auth=Bearer t\x01\x01"
    );
}
