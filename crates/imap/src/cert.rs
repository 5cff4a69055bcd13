//! Naming a server certificate in messages and diagnostics: subject, issuer and validity of an
//! X.509 certificate, read with x509-parser. It verifies nothing (rustls does that) and returns
//! `None` for anything that is not a certificate.

use x509_parser::prelude::{FromDer, X509Certificate};

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertNames {
    /// The subject distinguished name, `CN=..., O=...`.
    pub subject: String,
    /// The issuer distinguished name.
    pub issuer: String,
    /// The end of the validity period, seconds since the Unix epoch.
    pub not_after: i64,
}

/// Reads subject, issuer and expiry from a DER certificate.
pub fn cert_names(der: &[u8]) -> Option<CertNames> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(CertNames {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn reads_subject_issuer_and_expiry() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        params.not_after = rcgen::date_time_ymd(2031, 1, 2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let names = cert_names(cert.der()).unwrap();
        assert_eq!(names.subject, "CN=localhost, O=Example");
        assert_eq!(names.issuer, names.subject, "self-signed");
        assert_eq!(names.not_after, 1_925_078_400, "2031-01-02T00:00:00Z");
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(cert_names(&[]), None);
        assert_eq!(cert_names(&[0x30, 0x05, 0x00]), None);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = cert_names(&bytes);
        }
    }
}
