//! TLS client setup: rustls with the ring provider, TLS 1.2 and 1.3 only, certificates and host
//! names verified against the OS trust store (rustls-platform-verifier) plus an optional extra CA
//! file. There is deliberately no way to switch verification off.
//!
//! The verifier is wrapped only to remember the names of the certificate the server presented,
//! so that a failed handshake can say which certificate was refused; verification itself is
//! entirely the platform verifier's.
//!
//! One platform verifier (with the trust store it loads) and one TLS session cache serve every
//! connection with the same extra CA file, as long as that file is unchanged: a thousand
//! gateway sessions share one trust store instead of holding a copy each, and reconnects resume
//! their TLS sessions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use crate::cert::{CertNames, cert_names};
use crate::error::{ImapError, Target};

/// The names of the last end-entity certificate a server presented.
pub(crate) type SeenCert = Arc<Mutex<Option<CertNames>>>;

/// What connections with the same trust share: the verifier and the TLS session cache. A
/// session cache is never shared across different trust, since a resumed session is not
/// verified again.
#[derive(Clone)]
struct Trust {
    verifier: Arc<rustls_platform_verifier::Verifier>,
    resumption: Arc<rustls::client::ClientSessionMemoryCache>,
}

/// The extra CA file as it is now (path, modification time, length), or none.
type TrustKey = Option<(PathBuf, Option<SystemTime>, u64)>;

static TRUST: LazyLock<Mutex<HashMap<TrustKey, Trust>>> = LazyLock::new(Mutex::default);

/// Resumable TLS sessions kept per trust (each is a few hundred bytes).
const SESSION_CACHE: usize = 256;

fn trust(target: &Target, extra_ca: Option<&Path>) -> Result<Trust, ImapError> {
    let key: TrustKey = match extra_ca {
        Some(path) => {
            let meta = std::fs::metadata(path).ok();
            Some((
                path.to_owned(),
                meta.as_ref().and_then(|m| m.modified().ok()),
                meta.map_or(0, |m| m.len()),
            ))
        }
        None => None,
    };
    if let Some(found) = TRUST
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Ok(found.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match extra_ca {
        Some(path) => {
            let roots = read_ca_file(target, path)?;
            rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider)
        }
        None => rustls_platform_verifier::Verifier::new(provider),
    }
    .map_err(|e| ImapError::Tls {
        target: target.clone(),
        reason: format!("cannot load the trust store: {e}"),
    })?;
    let made = Trust {
        verifier: Arc::new(verifier),
        resumption: Arc::new(rustls::client::ClientSessionMemoryCache::new(SESSION_CACHE)),
    };
    let mut all = TRUST.lock().unwrap_or_else(PoisonError::into_inner);
    // A changed file replaces what its old contents made.
    if let Some((path, ..)) = &key {
        all.retain(|k, _| k.as_ref().is_none_or(|(p, ..)| p != path));
    }
    Ok(all.entry(key).or_insert(made).clone())
}

/// A connector for one session, and where it notes the server's certificate.
pub(crate) fn connector(
    target: &Target,
    extra_ca: Option<&Path>,
) -> Result<(TlsConnector, SeenCert), ImapError> {
    let trust = trust(target, extra_ca)?;
    let seen = SeenCert::default();
    let verifier = RecordingVerifier {
        inner: trust.verifier,
        seen: seen.clone(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ImapError::Tls {
            target: target.clone(),
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::store(trust.resumption);
    Ok((TlsConnector::from(Arc::new(config)), seen))
}

/// The server name to verify: a DNS name or an IP address.
pub(crate) fn server_name(target: &Target) -> Result<ServerName<'static>, ImapError> {
    ServerName::try_from(target.host.clone()).map_err(|e| ImapError::Tls {
        target: target.clone(),
        reason: format!("{:?} is not a valid server name: {e}", target.host),
    })
}

fn read_ca_file(target: &Target, path: &Path) -> Result<Vec<CertificateDer<'static>>, ImapError> {
    let fail = |reason: String| ImapError::ExtraCa {
        target: target.clone(),
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("the file holds no PEM certificate".to_owned()));
    }
    Ok(certs)
}

/// Turns a failed handshake into the error an admin can act on.
pub(crate) fn handshake_error(target: &Target, seen: &SeenCert, err: std::io::Error) -> ImapError {
    let rustls_error = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(cert_error)) => {
            let names = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
            ImapError::UntrustedCertificate {
                target: target.clone(),
                subject: names.as_ref().map(|n| n.subject.clone()),
                issuer: names.map(|n| n.issuer),
                reason: format!("{cert_error:?}"),
                hint: certificate_hint(target, cert_error),
            }
        }
        // Bytes that are not TLS at all: a plain IMAP greeting on a STARTTLS port.
        Some(other @ rustls::Error::InvalidMessage(_)) => ImapError::Tls {
            target: target.clone(),
            reason: format!(
                "{other}: the server does not speak TLS from the first byte on port {}; it probably \
                 expects plain IMAP and STARTTLS (usually port 143): choose security STARTTLS there, \
                 or TLS on port 993",
                target.port
            ),
        },
        Some(other) => ImapError::Tls {
            target: target.clone(),
            reason: other.to_string(),
        },
        None => ImapError::Io {
            target: target.clone(),
            action: "complete the TLS handshake".to_owned(),
            source: err,
        },
    }
}

fn certificate_hint(target: &Target, error: &CertificateError) -> String {
    match error {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "the certificate does not cover the host name {:?}: connect with a name the certificate covers",
                target.host
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the certificate has expired: the server's administrator must renew it".to_owned()
        }
        _ => "the certificate is not issued by a CA this system trusts; if the server uses a \
              private or on-premises CA, add the issuing CA certificate (PEM file) with the \
              receiver's extra-CA option"
            .to_owned(),
    }
}

/// Delegates every decision to the platform verifier and remembers the names of the presented
/// end-entity certificate.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<rustls_platform_verifier::Verifier>,
    seen: SeenCert,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = cert_names(end_entity);
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            host: "127.0.0.1".into(),
            port: 993,
            user: "a@example.com".into(),
        }
    }

    #[test]
    fn missing_or_empty_ca_files_are_named() {
        let Err(err) = connector(&target(), Some(Path::new("/nonexistent/ca.pem"))) else {
            panic!("a missing file must fail")
        };
        assert!(
            err.to_string()
                .starts_with("cannot read the extra CA file /nonexistent/ca.pem for 127.0.0.1:993 as a@example.com: "),
            "{err}"
        );
        let dir =
            std::env::temp_dir().join(format!("oauthimap-imap-empty-{}.pem", std::process::id()));
        std::fs::write(&dir, "not a certificate\n").unwrap();
        let Err(err) = connector(&target(), Some(&dir)) else {
            panic!("an empty file must fail")
        };
        std::fs::remove_file(&dir).unwrap();
        assert!(
            err.to_string()
                .ends_with("the file holds no PEM certificate"),
            "{err}"
        );
    }

    #[test]
    fn hints_depend_on_the_failure() {
        assert!(certificate_hint(&target(), &CertificateError::UnknownIssuer).contains("extra-CA"));
        assert!(
            certificate_hint(&target(), &CertificateError::NotValidForName).contains("host name")
        );
        assert!(certificate_hint(&target(), &CertificateError::Expired).contains("renew"));
    }
}
