//! A throw-away test CA and a server certificate for `localhost` / `127.0.0.1` signed by it,
//! generated with rcgen at fixture start. Clients trust the CA through its PEM file; nothing is
//! ever added to a system trust store.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A freshly generated CA and server certificate, every field PEM text.
pub(crate) struct TestPki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

/// Generates the CA and a leaf certificate valid for `localhost` and `127.0.0.1`.
pub(crate) fn generate() -> Result<TestPki, rcgen::Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "oauthimap test CA (Dovecot fixture)");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca)?;

    Ok(TestPki {
        ca: ca.pem(),
        server_cert: leaf.pem(),
        server_key: leaf_key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn generates_distinct_pem_blocks() {
        let pki = super::generate().expect("generate");
        assert!(pki.ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.server_cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.server_key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_ne!(pki.ca, pki.server_cert);
    }
}
