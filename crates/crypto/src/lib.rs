//! Sealing of secrets at rest: client secrets, access tokens and refresh tokens never reach the
//! database in plaintext.
//!
//! A [`KeyRing`] holds one or more master keys, each with a numeric id; the newest (primary) seals,
//! all of them open. Master keys come from a key file (created with mode 0600 on first run) or from
//! the `OAUTHIMAP_MASTER_KEY` environment variable, never from the database. Each master key is
//! stretched with HKDF-SHA256 into per-purpose subkeys.
//!
//! Envelope: `version (1) | key id (4, big endian) | nonce (24) | XChaCha20-Poly1305 ciphertext+tag`.
//! The associated data names the place the value belongs to (`table.column:row`), so a ciphertext
//! copied to another row or column does not open.
//!
//! This crate knows nothing of SQL: the store decides what to seal and with which context.

mod keyfile;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

pub use keyfile::KeyFileError;

/// Envelope format version written by this build.
const VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + 24;
const TAG_LEN: usize = 16;
/// How often a ring backed by a file looks for a rotation made by another process.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Why a value could not be sealed or opened, or a key ring not loaded.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error(
        "cannot open {context}: it was sealed with master key {key_id}, which {source_desc} does not hold; \
         use the key file this database was written with (or restore it from backup)"
    )]
    UnknownKey {
        context: String,
        key_id: u32,
        source_desc: String,
    },
    #[error(
        "cannot open {context}: master key {key_id} from {source_desc} does not match the sealed data \
         (a different key file with the same key id, or the data was altered)"
    )]
    Mismatch {
        context: String,
        key_id: u32,
        source_desc: String,
    },
    #[error("cannot open {context}: {reason}")]
    Malformed {
        context: String,
        reason: &'static str,
    },
    #[error("cannot rotate keys from {source_desc}: {reason}")]
    CannotRotate {
        source_desc: String,
        reason: &'static str,
    },
    #[error("cannot draw random bytes from the operating system: {0}")]
    Random(String),
}

/// One master key's derived sealing key.
struct SealKey(Zeroizing<[u8; 32]>);

impl SealKey {
    fn derive(master: &[u8; 32]) -> Self {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"oauthimap"), master);
        let mut out = Zeroizing::new([0u8; 32]);
        hk.expand(b"seal v1", out.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self(out)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*self.0).into())
    }
}

struct Keys {
    primary: u32,
    seal: BTreeMap<u32, SealKey>,
    /// Modification time of the key file when read (None for env keys).
    mtime: Option<SystemTime>,
}

impl Keys {
    fn from_masters(masters: &keyfile::Masters, mtime: Option<SystemTime>) -> Self {
        Self {
            primary: masters.primary(),
            seal: masters
                .iter()
                .map(|(id, key)| (id, SealKey::derive(key)))
                .collect(),
            mtime,
        }
    }
}

/// Where a ring's master keys come from.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Env,
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::File(path) => format!("key file {}", path.display()),
            Source::Env => "OAUTHIMAP_MASTER_KEY".to_owned(),
        }
    }
}

/// The master keys of one installation. Cheap to share behind an `Arc`; safe to use from many
/// tasks. A ring read from a file notices when another process (`oauthimap keys rotate`) added a
/// key, so a running service starts sealing with the new key without a restart.
pub struct KeyRing {
    source: Source,
    keys: RwLock<Keys>,
    last_check: Mutex<Instant>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("source", &self.source.describe())
            .field("primary", &self.primary_id())
            .field("key_ids", &self.key_ids())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Opens the key file at `path`, or creates it (mode 0600, one fresh key) when `create` is true
    /// and the file does not exist. Returns the ring and whether the file was created.
    pub fn from_file(path: &Path, create: bool) -> Result<(Self, bool), CryptoError> {
        let created = if create && !path.exists() {
            keyfile::create(path, &keyfile::Masters::generate(1)?)?;
            true
        } else {
            false
        };
        let (masters, mtime) = keyfile::read(path)?;
        let ring = Self {
            source: Source::File(path.to_owned()),
            keys: RwLock::new(Keys::from_masters(&masters, Some(mtime))),
            last_check: Mutex::new(Instant::now()),
        };
        Ok((ring, created))
    }

    /// Builds a ring from the value of `OAUTHIMAP_MASTER_KEY`: either one base64 key (id 1) or
    /// `ID:BASE64` entries separated by commas, the first being the primary.
    pub fn from_env_value(value: &str) -> Result<Self, CryptoError> {
        let masters = keyfile::parse_env(value)?;
        Ok(Self {
            source: Source::Env,
            keys: RwLock::new(Keys::from_masters(&masters, None)),
            last_check: Mutex::new(Instant::now()),
        })
    }

    /// A fresh random key in the `OAUTHIMAP_MASTER_KEY` format, for operators who keep keys in env.
    pub fn generate_env_value(id: u32) -> Result<Zeroizing<String>, CryptoError> {
        keyfile::Masters::generate(id).map(|m| m.to_env_value())
    }

    /// Describes where the keys come from, for messages ("key file /var/lib/oauthimap/master.key").
    pub fn source_desc(&self) -> String {
        self.source.describe()
    }

    /// The id of the key that seals new values.
    pub fn primary_id(&self) -> u32 {
        self.read_keys().primary
    }

    /// All key ids this ring can open.
    pub fn key_ids(&self) -> Vec<u32> {
        self.read_keys().seal.keys().copied().collect()
    }

    /// Seals `plaintext` with the primary key, bound to `context` (e.g. `accounts.refresh_token:7`).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.reload_if_changed();
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| CryptoError::Random(e.to_string()))?;
        self.seal_with_nonce(context, plaintext, nonce)
    }

    /// [`KeyRing::seal`] with a given nonce (the known-answer test fixes it; never reuse one).
    fn seal_with_nonce(
        &self,
        context: &str,
        plaintext: &[u8],
        nonce: [u8; 24],
    ) -> Result<Vec<u8>, CryptoError> {
        let keys = self.read_keys();
        let key = &keys.seal[&keys.primary];
        let sealed = key
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Malformed {
                context: context.to_owned(),
                reason: "the value is too large to seal",
            })?;
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&keys.primary.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens an envelope made by [`KeyRing::seal`] with the same `context`.
    pub fn open(&self, context: &str, envelope: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let malformed = |reason| CryptoError::Malformed {
            context: context.to_owned(),
            reason,
        };
        if envelope.len() < HEADER_LEN + TAG_LEN {
            return Err(malformed("the sealed value is truncated"));
        }
        if envelope[0] != VERSION {
            return Err(malformed(
                "unknown envelope version (written by a newer oauthimap?)",
            ));
        }
        let key_id = envelope_key_id(envelope).ok_or_else(|| malformed("no key id"))?;
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&envelope[5..HEADER_LEN]);
        if !self.read_keys().seal.contains_key(&key_id) {
            // Another process may have rotated the keys since we read the file.
            self.reload();
        }
        let keys = self.read_keys();
        let Some(key) = keys.seal.get(&key_id) else {
            return Err(CryptoError::UnknownKey {
                context: context.to_owned(),
                key_id,
                source_desc: self.source.describe(),
            });
        };
        key.cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &envelope[HEADER_LEN..],
                    aad: context.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Mismatch {
                context: context.to_owned(),
                key_id,
                source_desc: self.source.describe(),
            })
    }

    /// Adds a new primary key to the key file (the old keys stay, to open what they sealed) and
    /// returns its id. Rings loaded from the environment cannot rotate themselves.
    pub fn rotate(&self) -> Result<u32, CryptoError> {
        let Source::File(path) = &self.source else {
            return Err(CryptoError::CannotRotate {
                source_desc: self.source.describe(),
                reason: "generate a key with `oauthimap keys generate`, put `NEWID:KEY,` in front of \
                         OAUTHIMAP_MASTER_KEY, restart, then run `oauthimap keys reseal`",
            });
        };
        let (mut masters, _) = keyfile::read(path)?;
        let id = masters.add_new()?;
        keyfile::replace(path, &masters)?;
        self.reload();
        Ok(id)
    }

    /// Drops every key but the primary from the key file, once nothing is sealed with them.
    pub fn retire_old_keys(&self) -> Result<Vec<u32>, CryptoError> {
        let Source::File(path) = &self.source else {
            return Err(CryptoError::CannotRotate {
                source_desc: self.source.describe(),
                reason: "remove the old entries from OAUTHIMAP_MASTER_KEY yourself",
            });
        };
        let (mut masters, _) = keyfile::read(path)?;
        let removed = masters.keep_primary_only();
        if !removed.is_empty() {
            keyfile::replace(path, &masters)?;
            self.reload();
        }
        Ok(removed)
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Re-reads the key file if its modification time changed, at most once per second.
    fn reload_if_changed(&self) {
        let Source::File(path) = &self.source else {
            return;
        };
        {
            let mut last = self
                .last_check
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() < RELOAD_CHECK {
                return;
            }
            *last = Instant::now();
        }
        let current = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if current.is_some() && current != self.read_keys().mtime {
            self.reload();
        }
    }

    fn reload(&self) {
        let Source::File(path) = &self.source else {
            return;
        };
        match keyfile::read(path) {
            Ok((masters, mtime)) => {
                // The file is always replaced atomically (rename), so what we read is whole.
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Keys::from_masters(&masters, Some(mtime));
            }
            Err(error) => tracing::warn!(%error, "keeping the master keys already loaded"),
        }
    }
}

/// The key id an envelope was sealed with, if it looks like an envelope.
pub fn envelope_key_id(envelope: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = envelope.get(1..5)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests;
