use super::*;

fn ring(dir: &tempfile::TempDir) -> KeyRing {
    KeyRing::from_file(&dir.path().join("master.key"), true)
        .unwrap()
        .0
}

#[test]
fn seal_open_round_trip_and_context_binding() {
    let dir = tempfile::tempdir().unwrap();
    let ring = ring(&dir);
    let sealed = ring
        .seal("accounts.refresh_token:7", b"M.C123-secret")
        .unwrap();
    assert_eq!(sealed.len(), HEADER_LEN + 13 + TAG_LEN);
    assert!(!sealed.windows(13).any(|w| w == b"M.C123-secret"));
    assert_eq!(
        &*ring.open("accounts.refresh_token:7", &sealed).unwrap(),
        b"M.C123-secret"
    );
    // Moved to another row: refuses.
    let err = ring.open("accounts.refresh_token:8", &sealed).unwrap_err();
    assert!(
        matches!(err, CryptoError::Mismatch { key_id: 1, .. }),
        "{err}"
    );
    // Two seals of the same value differ (fresh nonce).
    assert_ne!(
        sealed,
        ring.seal("accounts.refresh_token:7", b"M.C123-secret")
            .unwrap()
    );
}

#[test]
fn tampering_and_truncation_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let ring = ring(&dir);
    let mut sealed = ring.seal("c", b"value").unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    assert!(matches!(
        ring.open("c", &sealed),
        Err(CryptoError::Mismatch { .. })
    ));
    assert!(matches!(
        ring.open("c", &sealed[..10]),
        Err(CryptoError::Malformed { .. })
    ));
    let mut versioned = ring.seal("c", b"value").unwrap();
    versioned[0] = 9;
    let err = ring.open("c", &versioned).unwrap_err().to_string();
    assert!(err.contains("unknown envelope version"), "{err}");
}

#[test]
fn key_file_is_created_0600_and_reloaded() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/master.key");
    let (ring, created) = KeyRing::from_file(&path, true).unwrap();
    assert!(created);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let sealed = ring.seal("c", b"x").unwrap();
    let (again, created) = KeyRing::from_file(&path, true).unwrap();
    assert!(!created);
    assert_eq!(&*again.open("c", &sealed).unwrap(), b"x");
}

#[test]
fn wrong_or_missing_key_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let sealed = ring(&dir)
        .seal("applications.client_secret:1", b"s")
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let other_ring = ring(&other);
    let err = other_ring
        .open("applications.client_secret:1", &sealed)
        .unwrap_err()
        .to_string();
    assert!(err.contains("applications.client_secret:1"), "{err}");
    assert!(
        err.contains(&other.path().join("master.key").display().to_string()),
        "{err}"
    );

    let missing = dir.path().join("nope.key");
    let err = KeyRing::from_file(&missing, false).unwrap_err().to_string();
    assert!(err.contains("nope.key") && err.contains("missing"), "{err}");
}

#[test]
fn too_open_or_malformed_key_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    std::fs::write(&path, "1 bm90IDMyIGJ5dGVz\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = KeyRing::from_file(&path, false).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = KeyRing::from_file(&path, false).unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("32 bytes"), "{err}");
}

#[test]
fn rotation_keeps_old_values_readable_and_seals_with_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let (ring, _) = KeyRing::from_file(&path, true).unwrap();
    let old = ring.seal("c", b"old").unwrap();
    // A second ring on the same file plays the running service.
    let (service, _) = KeyRing::from_file(&path, false).unwrap();
    assert_eq!(ring.rotate().unwrap(), 2);
    assert_eq!(ring.primary_id(), 2);
    let new = ring.seal("c", b"new").unwrap();
    assert_eq!(envelope_key_id(&new), Some(2));
    // The service meets key 2 for the first time and reloads the file to open it.
    assert_eq!(&*service.open("c", &new).unwrap(), b"new");
    assert_eq!(service.primary_id(), 2);
    assert_eq!(&*ring.open("c", &old).unwrap(), b"old");
    assert_eq!(ring.retire_old_keys().unwrap(), vec![1]);
    assert!(matches!(
        ring.open("c", &old),
        Err(CryptoError::UnknownKey { key_id: 1, .. })
    ));
}

#[test]
fn env_keys() {
    let one = KeyRing::generate_env_value(1).unwrap();
    let ring = KeyRing::from_env_value(&one).unwrap();
    assert_eq!(ring.primary_id(), 1);
    let sealed = ring.seal("c", b"v").unwrap();
    let two = KeyRing::generate_env_value(2).unwrap();
    let both = KeyRing::from_env_value(&format!("{},{}", *two, *one)).unwrap();
    assert_eq!(both.primary_id(), 2);
    assert_eq!(&*both.open("c", &sealed).unwrap(), b"v");
    let err = KeyRing::from_env_value("abc").unwrap_err().to_string();
    assert!(err.contains("OAUTHIMAP_MASTER_KEY"), "{err}");
    assert!(ring.rotate().is_err());
    // A plain base64 key is id 1.
    let plain = one.split_once(':').unwrap().1;
    assert_eq!(KeyRing::from_env_value(plain).unwrap().key_ids(), vec![1]);
}

/// The envelope's format, pinned by a vector made with an independent implementation (PHP's
/// libsodium and `hash_hkdf`): version 1, the key id (big-endian), the 24-byte nonce, then
/// XChaCha20-Poly1305 under HKDF-SHA256(salt "oauthimap", info "seal v1") of the master key,
/// with the context as additional data. A change of any part fails here before it can make
/// stored secrets unreadable.
///
/// ```php
/// $key = hash_hkdf('sha256', str_repeat("\x42", 32), 32, 'seal v1', 'oauthimap');
/// $nonce = hex2bin("000102030405060708090a0b0c0d0e0f1011121314151617");
/// $ct = sodium_crypto_aead_xchacha20poly1305_ietf_encrypt("M.C123-refresh-token",
///     "accounts.refresh_token:7", $nonce, $key);
/// echo bin2hex(chr(1) . pack("N", 1) . $nonce . $ct);
/// ```
#[test]
fn the_envelope_matches_a_known_answer() {
    const ENVELOPE: &str = "0100000001000102030405060708090a0b0c0d0e0f1011121314151617\
                            b1903ba9fe5c1b2c4d6eef0613bd4113d01af10bdcf101df73589765aa17ef75d95c79c3";
    let ring = KeyRing::from_env_value("QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=").unwrap();
    let nonce: [u8; 24] = std::array::from_fn(|i| u8::try_from(i).unwrap());
    let sealed = ring
        .seal_with_nonce("accounts.refresh_token:7", b"M.C123-refresh-token", nonce)
        .unwrap();
    let hex = sealed.iter().fold(String::new(), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    });
    assert_eq!(hex, ENVELOPE);
    let bytes: Vec<u8> = (0..ENVELOPE.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&ENVELOPE[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(
        &*ring.open("accounts.refresh_token:7", &bytes).unwrap(),
        b"M.C123-refresh-token"
    );
}
