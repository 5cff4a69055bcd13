//! Shared test setup: the fake identity provider issuing real (app-only, client-credentials)
//! tokens for alice's mailbox, a Dovecot validating them through the identity provider's introspection, a
//! counting `TokenSource`, and golden-transcript comparison.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use oauthimap_dovecot_fixture::{Dovecot, DovecotOptions};
use oauthimap_fake_idp::{ClientConfig, FakeIdp};
use oauthimap_imap::{SessionConfig, Transcript};
use oauthimap_types::{AccessToken, FailureKind, Security, TokenError, TokenSource};
use secrecy::SecretString;

pub const ALICE: &str = "alice@example.com";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT_SECRET: &str = "imap~test~secret";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// A fake identity provider and a Dovecot that asks it about tokens.
pub struct Env {
    pub idp: FakeIdp,
    pub dovecot: Dovecot,
}

pub async fn env() -> Env {
    let idp = FakeIdp::start().await.expect("start fake idp");
    let mut client = ClientConfig::microsoft(CLIENT_ID, CLIENT_SECRET, "http://127.0.0.1:9/cb");
    client.app_mailbox = Some(ALICE.to_owned());
    idp.add_client(client);
    let dovecot = Dovecot::start(DovecotOptions::new(idp.introspection_url()))
        .await
        .expect("start dovecot");
    Env { idp, dovecot }
}

impl Env {
    /// A session configuration for alice that trusts the fixture's CA.
    pub fn config(&self, security: Security) -> SessionConfig {
        let port = match security {
            Security::Tls => self.dovecot.imaps_port(),
            Security::StartTls | Security::Plain => self.dovecot.imap_port(),
        };
        let mut config = SessionConfig::new(self.dovecot.host(), port, security, ALICE);
        config.extra_ca_pem = Some(self.dovecot.ca_pem_path());
        config.connect_timeout = Duration::from_secs(10);
        config.io_timeout = Duration::from_secs(10);
        config
    }

    /// The same with a fresh transcript attached.
    pub fn config_with_transcript(&self, security: Security) -> (SessionConfig, Transcript) {
        let mut config = self.config(security);
        let transcript = Transcript::new();
        config.transcript = Some(transcript.clone());
        (config, transcript)
    }

    pub fn tokens(&self, plan: Plan) -> IdpTokens {
        IdpTokens {
            base_url: self.idp.base_url().to_owned(),
            token_url: self.idp.microsoft_token_url(TENANT),
            plan,
            calls: Mutex::new(Vec::new()),
            issued: Mutex::new(Vec::new()),
            cached: Mutex::new(None),
        }
    }
}

pub fn http() -> reqwest::Client {
    // reqwest is built with `rustls-no-provider`: install ring once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// What the token source does with the tokens it gets from the identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Hands out live tokens (cached until a forced refresh).
    Good,
    /// The first token is revoked at the identity provider before it is handed out; later ones are live.
    FirstRevoked,
    /// Every token is revoked at the identity provider before it is handed out.
    AlwaysRevoked,
    /// Every token is expired at the identity provider before it is handed out.
    AlwaysExpired,
}

/// A `TokenSource` over the fake identity provider's client-credentials grant that counts its calls.
pub struct IdpTokens {
    base_url: String,
    token_url: String,
    plan: Plan,
    /// `force_refresh` of every call, in order.
    pub calls: Mutex<Vec<bool>>,
    /// Every token handed out.
    pub issued: Mutex<Vec<String>>,
    cached: Mutex<Option<String>>,
}

impl IdpTokens {
    pub fn calls(&self) -> Vec<bool> {
        self.calls.lock().unwrap().clone()
    }

    pub fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }

    async fn fresh(&self) -> Result<String, String> {
        let http = http();
        let answer: serde_json::Value = http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("scope", "https://outlook.office365.com/.default"),
            ])
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let token = answer["access_token"]
            .as_str()
            .ok_or_else(|| format!("no access token: {answer}"))?
            .to_owned();
        let first = self.issued.lock().unwrap().is_empty();
        let control = |path: &str| format!("{}/_control/tokens/{path}", self.base_url);
        match self.plan {
            Plan::Good => {}
            Plan::FirstRevoked if !first => {}
            Plan::FirstRevoked | Plan::AlwaysRevoked => {
                let r = http
                    .post(control("revoke"))
                    .json(&serde_json::json!({ "access_token": token }))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                assert!(r.status().is_success(), "revoke: {}", r.status());
            }
            Plan::AlwaysExpired => {
                let r = http
                    .post(control("expire-access"))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                assert!(r.status().is_success(), "expire: {}", r.status());
            }
        }
        Ok(token)
    }
}

impl TokenSource for IdpTokens {
    async fn access_token(&self, force_refresh: bool) -> Result<AccessToken, TokenError> {
        self.calls.lock().unwrap().push(force_refresh);
        let cached = self.cached.lock().unwrap().clone();
        let token = match cached {
            Some(token) if !force_refresh => token,
            _ => {
                let token = self.fresh().await.map_err(|message| TokenError {
                    kind: FailureKind::Transient,
                    message,
                })?;
                self.issued.lock().unwrap().push(token.clone());
                *self.cached.lock().unwrap() = Some(token.clone());
                token
            }
        };
        Ok(AccessToken {
            secret: SecretString::from(token),
            expires_at: oauthimap_types::now_millis() + 3_600_000,
        })
    }
}

/// A token source with fixed tokens, for scripted servers.
pub struct FixedTokens {
    pub tokens: Vec<&'static str>,
    pub calls: Mutex<Vec<bool>>,
}

impl FixedTokens {
    pub fn new(tokens: &[&'static str]) -> Self {
        Self {
            tokens: tokens.to_vec(),
            calls: Mutex::new(Vec::new()),
        }
    }
}

impl TokenSource for FixedTokens {
    async fn access_token(&self, force_refresh: bool) -> Result<AccessToken, TokenError> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(force_refresh);
        let token = self.tokens[(calls.len() - 1).min(self.tokens.len() - 1)];
        Ok(AccessToken {
            secret: SecretString::from(token),
            expires_at: oauthimap_types::now_millis() + 3_600_000,
        })
    }
}

/// Replaces run-specific parts of a rendered transcript.
pub fn normalise(text: &str, ports: &[u16]) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut line = line.to_owned();
        for port in ports {
            line = line.replace(&format!(":{port} "), ":{PORT} ");
            line = line.replace(&format!(":{port}\n"), ":{PORT}\n");
            if line.ends_with(&format!(":{port}")) {
                line = format!(
                    "{}:{{PORT}}",
                    &line[..line.len() - port.to_string().len() - 1]
                );
            }
        }
        if let Some(start) = line.find("[UIDVALIDITY ")
            && let Some(end) = line[start..].find(']')
        {
            line.replace_range(start..=start + end, "[UIDVALIDITY N]");
        }
        if line.contains("Temporary authentication failure.")
            && let Some(start) = line.rfind(" [")
        {
            line.replace_range(start.., " [HOST:TIME]");
        }
        if let Some(start) = line.find(" (0.")
            && let Some(end) = line[start..].find(" secs)")
        {
            line.replace_range(start..start + end + " secs)".len(), " (TIMING)");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/transcripts")
        .join(name)
}

/// Compares with `tests/transcripts/<name>`; `OAUTHIMAP_BLESS=1` (re)writes it instead.
pub fn assert_golden(name: &str, title: &str, rendered: &str) {
    let text = format!(
        "# {title}\n# Recorded by crates/imap/tests/it against Debian's Dovecot; C: client, S: server, # note.\n\
         # Normalised: ports -> {{PORT}}, [UIDVALIDITY N], [HOST:TIME], (TIMING).\n{rendered}"
    );
    let path = golden_path(name);
    if std::env::var_os("OAUTHIMAP_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &text).expect("write golden transcript");
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run with OAUTHIMAP_BLESS=1 to record it",
            path.display()
        )
    });
    assert_eq!(
        golden,
        text,
        "transcript differs from {}; if expected, re-record with OAUTHIMAP_BLESS=1",
        path.display()
    );
}
