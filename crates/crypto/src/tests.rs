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
