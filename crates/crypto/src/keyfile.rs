//! The key file and the `OAUTHIMAP_MASTER_KEY` value: parsing, creation with safe permissions,
//! atomic replacement.
//!
//! Format: comment lines start with `#`; every other line is `ID BASE64KEY` (32 random bytes).
//! The first key line is the primary (it seals); the others only open older values.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::CryptoError;

const HEADER: &str = "\
# oauthimap master keys. Keep this file secret (mode 0600) and back it up with the database:
# without it, the sealed client secrets and tokens in the database cannot be read.
# The first key seals new values; the others only open values sealed before a rotation.
";

/// A problem with the key file or the key variable itself.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "the key file {path} is missing: the database was sealed with it, so restore it from backup \
         (or point `key_file` / OAUTHIMAP_KEY_FILE at it)"
    )]
    Missing { path: PathBuf },
    #[error("cannot read the key file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the key file {path}: {source}")]
    Unwritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the key file {path} can be read by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("the key file {path} is malformed at line {line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "OAUTHIMAP_MASTER_KEY is malformed: {0} (expected base64 of 32 bytes, or ID:BASE64,ID:BASE64,...)"
    )]
    BadEnv(String),
}

/// Master keys by id; the first entry is the primary.
pub(crate) struct Masters(Vec<(u32, Zeroizing<[u8; 32]>)>);

impl Masters {
    pub(crate) fn generate(id: u32) -> Result<Self, CryptoError> {
        Ok(Self(vec![(id, random_key()?)]))
    }

    pub(crate) fn primary(&self) -> u32 {
        self.0[0].0
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &[u8; 32])> {
        self.0.iter().map(|(id, key)| (*id, &**key))
    }

    /// Puts a fresh key in front and returns its id.
    pub(crate) fn add_new(&mut self) -> Result<u32, CryptoError> {
        let id = self.0.iter().map(|(id, _)| *id).max().unwrap_or(0) + 1;
        self.0.insert(0, (id, random_key()?));
        Ok(id)
    }

    /// Keeps only the primary; returns the ids removed.
    pub(crate) fn keep_primary_only(&mut self) -> Vec<u32> {
        self.0.drain(1..).map(|(id, _)| id).collect()
    }

    pub(crate) fn to_env_value(&self) -> Zeroizing<String> {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(id, key)| format!("{id}:{}", STANDARD.encode(**key)))
            .collect();
        Zeroizing::new(parts.join(","))
    }

    fn to_file_text(&self) -> Zeroizing<String> {
        use std::fmt::Write;
        let mut text = String::from(HEADER);
        for (id, key) in &self.0 {
            let _ = writeln!(text, "{id} {}", STANDARD.encode(**key));
        }
        Zeroizing::new(text)
    }
}

fn random_key() -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut_slice()).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(key)
}

fn decode_key(text: &str) -> Result<Zeroizing<[u8; 32]>, String> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text.trim())
            .map_err(|e| format!("the key is not base64 ({e})"))?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(format!(
            "a key must be 32 bytes, this one has {}",
            bytes.len()
        ));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

fn parse_file(path: &Path, text: &str) -> Result<Masters, KeyFileError> {
    let malformed = |line, reason: String| KeyFileError::Malformed {
        path: path.to_owned(),
        line,
        reason,
    };
    let mut keys: Vec<(u32, Zeroizing<[u8; 32]>)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (id, key) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| malformed(index + 1, "expected `ID BASE64KEY`".into()))?;
        let id: u32 = id
            .parse()
            .map_err(|_| malformed(index + 1, format!("key id {id:?} is not a number")))?;
        if keys.iter().any(|(seen, _)| *seen == id) {
            return Err(malformed(index + 1, format!("key id {id} appears twice")));
        }
        let key = decode_key(key).map_err(|reason| malformed(index + 1, reason))?;
        keys.push((id, key));
    }
    if keys.is_empty() {
        return Err(malformed(0, "the file holds no key".into()));
    }
    Ok(Masters(keys))
}

pub(crate) fn parse_env(value: &str) -> Result<Masters, KeyFileError> {
    let value = value.trim();
    if !value.contains(':') {
        return Ok(Masters(vec![(
            1,
            decode_key(value).map_err(KeyFileError::BadEnv)?,
        )]));
    }
    let mut keys = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, key) = part.split_once(':').ok_or_else(|| {
            KeyFileError::BadEnv(format!("entry {} has no `ID:`", keys.len() + 1))
        })?;
        let id: u32 = id
            .parse()
            .map_err(|_| KeyFileError::BadEnv(format!("key id {id:?} is not a number")))?;
        keys.push((id, decode_key(key).map_err(KeyFileError::BadEnv)?));
    }
    if keys.is_empty() {
        return Err(KeyFileError::BadEnv("no key given".into()));
    }
    Ok(Masters(keys))
}

/// Reads and checks a key file; returns its keys and modification time.
pub(crate) fn read(path: &Path) -> Result<(Masters, SystemTime), KeyFileError> {
    let meta = fs::metadata(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            KeyFileError::Missing {
                path: path.to_owned(),
            }
        } else {
            KeyFileError::Unreadable {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let text =
        Zeroizing::new(
            fs::read_to_string(path).map_err(|source| KeyFileError::Unreadable {
                path: path.to_owned(),
                source,
            })?,
        );
    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    Ok((parse_file(path, &text)?, mtime))
}

fn write_new(path: &Path, masters: &Masters) -> Result<(), KeyFileError> {
    let unwritable = |source| KeyFileError::Unwritable {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(unwritable)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(unwritable)?;
    file.write_all(masters.to_file_text().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(unwritable)
}

/// Creates a new key file; fails if one exists.
pub(crate) fn create(path: &Path, masters: &Masters) -> Result<(), KeyFileError> {
    write_new(path, masters)
}

/// Replaces a key file atomically: a reader sees the old file or the new one, never half of one.
pub(crate) fn replace(path: &Path, masters: &Masters) -> Result<(), KeyFileError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, masters)?;
    fs::rename(&tmp, path).map_err(|source| KeyFileError::Unwritable {
        path: path.to_owned(),
        source,
    })
}
