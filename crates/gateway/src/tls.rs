//! The gateway's TLS server side: a certificate chain and key from PEM files, re-read when either
//! file changes (a renewed certificate takes effect for the next connection, with no restart; a
//! broken renewal keeps the last good pair and logs why).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::GatewayError;

/// The PEM files of the gateway's certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Hands out a TLS acceptor for the current files.
pub(crate) struct Acceptor {
    files: TlsFiles,
    current: Mutex<(
        Option<SystemTime>,
        Option<SystemTime>,
        tokio_rustls::TlsAcceptor,
    )>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, GatewayError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(Iterator::collect)
        .map_err(|e| GatewayError::Tls {
            what: "certificate",
            path: files.cert.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(GatewayError::Tls {
            what: "certificate",
            path: files.cert.clone(),
            reason: "no PEM certificate in it".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| GatewayError::Tls {
        what: "key",
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| GatewayError::Tls {
            what: "certificate and key",
            path: files.cert.clone(),
            reason: e.to_string(),
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

impl Acceptor {
    pub(crate) fn new(files: TlsFiles) -> Result<Self, GatewayError> {
        let stamps = (modified(&files.cert), modified(&files.key));
        let acceptor = load(&files)?;
        Ok(Self {
            files,
            current: Mutex::new((stamps.0, stamps.1, acceptor)),
        })
    }

    /// The acceptor for the files as they are now.
    pub(crate) fn get(&self) -> tokio_rustls::TlsAcceptor {
        let stamps = (modified(&self.files.cert), modified(&self.files.key));
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if (current.0, current.1) != stamps {
            match load(&self.files) {
                Ok(acceptor) => {
                    tracing::info!(cert = %self.files.cert.display(), "the gateway's TLS certificate changed; using the new one");
                    *current = (stamps.0, stamps.1, acceptor);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the gateway's TLS files changed but cannot be used; keeping the previous certificate");
                    current.0 = stamps.0;
                    current.1 = stamps.1;
                }
            }
        }
        current.2.clone()
    }
}
