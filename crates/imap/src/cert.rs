//! Just enough DER reading to name a certificate in an error message: the subject and issuer
//! (CN, O, OU, C) of an X.509 certificate. It verifies nothing (rustls does that) and returns
//! `None` for anything it does not understand.

/// The names of a certificate, as `CN=..., O=...` strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertNames {
    /// The subject distinguished name.
    pub subject: String,
    /// The issuer distinguished name.
    pub issuer: String,
}

/// Reads subject and issuer from a DER certificate.
pub fn cert_names(der: &[u8]) -> Option<CertNames> {
    let (tag, cert, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let mut fields = Vec::new();
    while !tbs.is_empty() {
        let (tag, content, rest) = tlv(tbs)?;
        fields.push((tag, content));
        tbs = rest;
    }
    // [0] version is optional; then serial, signature algorithm, issuer, validity, subject.
    let skip = usize::from(fields.first()?.0 == 0xA0);
    let issuer = fields.get(skip + 2).filter(|f| f.0 == 0x30)?;
    let subject = fields.get(skip + 4).filter(|f| f.0 == 0x30)?;
    Some(CertNames {
        subject: name_to_string(subject.1)?,
        issuer: name_to_string(issuer.1)?,
    })
}

/// Splits one DER TLV off `input`: (tag, content, rest). Lengths up to 4 bytes.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..count] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[count..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// `Name ::= SEQUENCE OF SET OF AttributeTypeAndValue` to `CN=a, O=b`.
fn name_to_string(mut name: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    while !name.is_empty() {
        let (_, mut set, rest) = tlv(name)?;
        name = rest;
        while !set.is_empty() {
            let (_, atv, rest) = tlv(set)?;
            set = rest;
            let (oid_tag, oid, value) = tlv(atv)?;
            let (value_tag, value, _) = tlv(value)?;
            if oid_tag != 0x06 {
                return None;
            }
            let label = match oid {
                [0x55, 0x04, 0x03] => "CN",
                [0x55, 0x04, 0x0A] => "O",
                [0x55, 0x04, 0x0B] => "OU",
                [0x55, 0x04, 0x06] => "C",
                _ => continue,
            };
            // UTF8String, PrintableString, T61String, IA5String
            if matches!(value_tag, 0x0C | 0x13 | 0x14 | 0x16) {
                parts.push(format!("{label}={}", String::from_utf8_lossy(value)));
            }
        }
    }
    Some(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A hand-built minimal certificate: version, serial, alg, issuer, validity, subject.
    fn der(issuer_cn: &str, subject_cn: &str) -> Vec<u8> {
        fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            if content.len() < 0x80 {
                out.push(u8::try_from(content.len()).unwrap());
            } else {
                out.push(0x82);
                out.extend_from_slice(&u16::try_from(content.len()).unwrap().to_be_bytes());
            }
            out.extend_from_slice(content);
            out
        }
        let name = |cn: &str| {
            let mut atv = wrap(0x06, &[0x55, 0x04, 0x03]);
            atv.extend(wrap(0x0C, cn.as_bytes()));
            let mut org = wrap(0x06, &[0x55, 0x04, 0x0A]);
            org.extend(wrap(0x13, b"Example"));
            let mut seq = wrap(0x31, &wrap(0x30, &atv));
            seq.extend(wrap(0x31, &wrap(0x30, &org)));
            wrap(0x30, &seq)
        };
        let mut tbs = wrap(0xA0, &wrap(0x02, &[2]));
        tbs.extend(wrap(0x02, &[1]));
        tbs.extend(wrap(0x30, &wrap(0x06, &[0x2A, 0x86, 0x48])));
        tbs.extend(name(issuer_cn));
        tbs.extend(wrap(0x30, &[]));
        tbs.extend(name(subject_cn));
        let mut cert = wrap(0x30, &tbs);
        cert.extend(wrap(0x30, &[]));
        wrap(0x30, &cert)
    }

    #[test]
    fn reads_subject_and_issuer() {
        assert_eq!(
            cert_names(&der("Test CA", "localhost")),
            Some(CertNames {
                subject: "CN=localhost, O=Example".into(),
                issuer: "CN=Test CA, O=Example".into(),
            })
        );
        let long = "x".repeat(300);
        assert_eq!(
            cert_names(&der("CA", &long)).unwrap().subject,
            format!("CN={long}, O=Example")
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(cert_names(&[]), None);
        assert_eq!(cert_names(&[0x30, 0x05, 0x00]), None);
        let mut truncated = der("a", "b");
        truncated.truncate(truncated.len() - 3);
        assert_eq!(cert_names(&truncated), None);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = cert_names(&bytes);
        }
    }
}
