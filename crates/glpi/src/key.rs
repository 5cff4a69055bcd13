//! `GLPIKey`: GLPI seals secrets (`glpicrypt.key`, 32 raw bytes) with libsodium's
//! `crypto_aead_xchacha20poly1305_ietf` and stores `base64(nonce(24) ‖ ciphertext ‖ tag(16))`,
//! with the nonce itself as the additional data. Empty or NULL columns hold no value.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

const NONCE: usize = 24;
const TAG: usize = 16;

/// Why a key file or a sealed value cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read GLPI's key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "GLPI's key file {path} holds {len} bytes, not the 32 of a GLPIKey (glpicrypt.key from GLPI's config folder, e.g. /etc/glpi)"
    )]
    Size { path: PathBuf, len: usize },
    #[error("{what} is not base64, so it is not a value sealed by GLPI")]
    NotBase64 { what: String },
    #[error("{what} is too short to be a value sealed by GLPI")]
    TooShort { what: String },
    #[error(
        "{what} does not open with the key file {path} (authentication failed): it is not the glpicrypt.key this GLPI uses"
    )]
    WrongKey { what: String, path: PathBuf },
    #[error("{what} is not UTF-8 text once opened")]
    NotText { what: String },
}

/// GLPI's key, read from `glpicrypt.key`.
pub struct GlpiKey {
    key: Zeroizing<[u8; 32]>,
    path: PathBuf,
}

impl std::fmt::Debug for GlpiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlpiKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl GlpiKey {
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?);
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Size {
            path: path.to_owned(),
            len: bytes.len(),
        })?;
        Ok(Self {
            key: Zeroizing::new(key),
            path: path.to_owned(),
        })
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*self.key).into())
    }

    /// Opens a sealed column; `what` names it in errors (`glpi_plugin_oauthimap_applications.client_secret of row 3`).
    /// `None` for an empty or NULL column.
    pub fn open(&self, sealed: Option<&str>, what: &str) -> Result<Option<SecretString>, KeyError> {
        let Some(sealed) = sealed.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let raw = Zeroizing::new(B64.decode(sealed).map_err(|_| KeyError::NotBase64 {
            what: what.to_owned(),
        })?);
        if raw.len() < NONCE + TAG {
            return Err(KeyError::TooShort {
                what: what.to_owned(),
            });
        }
        let (nonce, ciphertext) = raw.split_at(NONCE);
        let nonce_array: [u8; NONCE] = nonce.try_into().unwrap_or([0; NONCE]);
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    &XNonce::from(nonce_array),
                    Payload {
                        msg: ciphertext,
                        aad: nonce,
                    },
                )
                .map_err(|_| KeyError::WrongKey {
                    what: what.to_owned(),
                    path: self.path.clone(),
                })?,
        );
        let text = String::from_utf8(plain.to_vec()).map_err(|_| KeyError::NotText {
            what: what.to_owned(),
        })?;
        Ok(Some(SecretString::from(text)))
    }

    /// Seals a value as GLPI does, so GLPI can open it (a collector's password).
    pub fn seal(&self, value: &SecretString) -> String {
        let mut nonce = [0u8; NONCE];
        let _ = getrandom::fill(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: value.expose_secret().as_bytes(),
                    aad: &nonce,
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(ciphertext);
        B64.encode(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &Path, bytes: &[u8]) -> PathBuf {
        let p = dir.join("glpicrypt.key");
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn seals_and_opens_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let k = GlpiKey::from_file(&key(dir.path(), &[7u8; 32])).unwrap();
        let sealed = k.seal(&SecretString::from("s3cret".to_owned()));
        let opened = k.open(Some(&sealed), "x").unwrap().unwrap();
        assert_eq!(opened.expose_secret(), "s3cret");
        assert!(k.open(None, "x").unwrap().is_none());
        assert!(k.open(Some(""), "x").unwrap().is_none());
        let other = GlpiKey::from_file(&key(dir.path(), &[8u8; 32])).unwrap();
        let e = other
            .open(Some(&sealed), "the secret of row 3")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the secret of row 3") && e.contains("glpicrypt.key"),
            "{e}"
        );
        assert!(matches!(
            k.open(Some("not base64!"), "x"),
            Err(KeyError::NotBase64 { .. })
        ));
        assert!(matches!(
            k.open(Some("AAAA"), "x"),
            Err(KeyError::TooShort { .. })
        ));
        let e = GlpiKey::from_file(&key(dir.path(), &[1u8; 31]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("31 bytes") && e.contains("32"), "{e}");
    }
}
