//! Certificate facts for inspection commands (`virtfleet certs show` and friends).

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::error::PkiError;
use crate::finding::display_safe;
use crate::hostname::Presented;
use crate::key::{self, KeyAlgorithm};
use crate::pemfile;

/// What an operator wants to know about one certificate. Its text fields are meant for
/// printing: characters that could act on a terminal are escaped ([`crate::display_safe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// RFC 4514-style distinguished name, e.g. `CN=compute1, O=Example`.
    pub subject: String,
    pub issuer: String,
    /// Serial number as uppercase hex without separators (like `openssl x509 -serial`).
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// basicConstraints CA=TRUE.
    pub is_ca: bool,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// `None` when the key type is outside [`KeyAlgorithm`].
    pub key_algorithm: Option<KeyAlgorithm>,
    /// See [`fingerprint_sha256`].
    pub fingerprint_sha256: String,
    pub der: Vec<u8>,
}

impl CertInfo {
    /// `not_after` in UTC, e.g. `2027-12-03 04:51:05 UTC` (as findings write times).
    pub fn not_after_utc(&self) -> String {
        crate::validate::checker::format_time(self.not_after)
    }

    /// Whole days until `not_after` (truncated toward zero); negative once expired.
    pub fn days_left(&self, now: impl Into<OffsetDateTime>) -> i64 {
        (self.not_after - now.into()).whole_days()
    }
}

/// SHA-256 of the DER encoding as uppercase hex pairs joined by `:`, e.g. `AB:CD:…` —
/// the format of `openssl x509 -noout -fingerprint -sha256`, so operators can compare.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Every certificate in a PEM file, in file order. Any non-certificate block is an error.
pub fn parse_certs(pem: &[u8]) -> Result<Vec<CertInfo>, PkiError> {
    pemfile::certificate_ders(pem)?
        .into_iter()
        .enumerate()
        .map(|(i, der)| cert_info(der).map_err(|reason| cert_error(i, reason)))
        .collect()
}

/// Whether the first certificate in `leaf_pem` is signed by one of the CAs in `ca_pem` (a
/// bundle). Names are not enough: a re-created CA usually keeps its name but not its key.
pub fn signed_by_any(leaf_pem: &[u8], ca_pem: &[u8]) -> Result<bool, PkiError> {
    let leaf_der = pemfile::certificate_ders(leaf_pem)?
        .into_iter()
        .next()
        .ok_or(PkiError::NoCertificate)?;
    let (_, leaf) =
        X509Certificate::from_der(&leaf_der).map_err(|e| cert_error(0, e.to_string()))?;
    for (i, ca_der) in pemfile::certificate_ders(ca_pem)?.iter().enumerate() {
        let (_, ca) =
            X509Certificate::from_der(ca_der).map_err(|e| cert_error(i, e.to_string()))?;
        if leaf.verify_signature(Some(ca.public_key())).is_ok() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether the private key in `key_pem` belongs to the first certificate in `cert_pem`.
pub fn key_matches_certificate(cert_pem: &[u8], key_pem: &[u8]) -> Result<bool, PkiError> {
    let ders = pemfile::certificate_ders(cert_pem)?;
    let cert = parse_der(&ders[0]).map_err(|reason| cert_error(0, reason))?;
    let cert_key =
        key::certificate_public_key(cert.public_key()).map_err(|e| cert_error(0, e.to_string()))?;
    let private = key::parse_private_key_pem(key_pem).map_err(|e| PkiError::Key(e.to_string()))?;
    Ok(key::check_match(&private.public, &cert_key).is_ok())
}

fn cert_error(index: usize, reason: String) -> PkiError {
    PkiError::Certificate {
        index: index + 1,
        reason,
    }
}

fn cert_info(der: Vec<u8>) -> Result<CertInfo, String> {
    let cert = parse_der(&der)?;
    let names = presented_names(&cert)?;
    let info = CertInfo {
        subject: display_safe(&cert.subject().to_string()).into_owned(),
        issuer: display_safe(&cert.issuer().to_string()).into_owned(),
        serial: serial_hex(cert.raw_serial()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        is_ca: cert.is_ca(),
        dns_names: names
            .dns
            .iter()
            .map(|name| display_safe(name).into_owned())
            .collect(),
        ip_addresses: names.ips,
        key_algorithm: key::certificate_public_key(cert.public_key())
            .ok()
            .map(|k| k.algorithm),
        fingerprint_sha256: fingerprint_sha256(&der),
        der: Vec::new(),
    };
    Ok(CertInfo { der, ..info })
}

/// Parses one DER certificate; trailing bytes are rejected.
pub(crate) fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing data after the certificate".into()),
        Err(e) => Err(format!("not a valid X.509 certificate: {e}")),
    }
}

/// Names the certificate presents as a TLS server identity.
pub(crate) fn presented_names(cert: &X509Certificate<'_>) -> Result<Presented, String> {
    let mut names = Presented::default();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("unreadable subjectAltName: {e}"))?;
    for name in san.iter().flat_map(|ext| &ext.value.general_names) {
        match name {
            GeneralName::DNSName(dns) => names.dns.push((*dns).to_string()),
            GeneralName::IPAddress(bytes) => {
                if let Some(ip) = ip_from_bytes(bytes) {
                    names.ips.push(ip);
                }
            }
            _ => {}
        }
    }
    names.common_names = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    Ok(names)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn serial_hex(raw: &[u8]) -> String {
    // DER INTEGERs carry a leading zero byte to stay positive; openssl does not print it.
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode_upper(&raw[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Ca, LeafSpec};
    use time::Duration;

    #[test]
    fn parse_certs_reports_fields_of_each_certificate() {
        let ca = Ca::new("Test CA");
        let leaf = ca.issue(&LeafSpec::server("compute1"));
        let bundle = format!("{}{}", leaf.cert_pem, ca.cert_pem);
        let infos = parse_certs(bundle.as_bytes()).unwrap();
        assert_eq!(infos.len(), 2);
        let (leaf_info, ca_info) = (&infos[0], &infos[1]);
        assert_eq!(leaf_info.subject, "CN=compute1");
        assert_eq!(leaf_info.issuer, "CN=Test CA");
        assert!(!leaf_info.is_ca && ca_info.is_ca);
        assert_eq!(
            leaf_info.dns_names,
            vec!["compute1.example.com".to_string()]
        );
        assert_eq!(
            leaf_info.ip_addresses,
            vec!["10.0.0.11".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(leaf_info.key_algorithm, Some(KeyAlgorithm::EcdsaP256));
        assert!(!leaf_info.serial.is_empty());
        assert_eq!(
            leaf_info.fingerprint_sha256,
            fingerprint_sha256(&leaf_info.der)
        );
    }

    #[test]
    fn days_left_counts_whole_days() {
        let ca = Ca::new("Test CA");
        let info = &parse_certs(ca.cert_pem.as_bytes()).unwrap()[0];
        let now = info.not_after - Duration::hours(36);
        assert_eq!(info.days_left(now), 1);
        assert_eq!(info.days_left(info.not_after + Duration::days(3)), -3);
    }

    #[test]
    fn not_after_is_in_utc_with_padded_fields() {
        let ca = Ca::new("Test CA");
        let mut info = parse_certs(ca.cert_pem.as_bytes()).unwrap().remove(0);
        info.not_after = time::macros::datetime!(2027-03-04 05:06:07 +02:00);
        assert_eq!(info.not_after_utc(), "2027-03-04 03:06:07 UTC");
    }

    #[test]
    fn fingerprint_format_is_openssl_style() {
        let fp = fingerprint_sha256(b"abc");
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.starts_with("BA:78:16:BF:"), "{fp}");
    }

    #[test]
    fn serial_drops_sign_padding() {
        assert_eq!(serial_hex(&[0x00, 0x9a, 0x01]), "9A01");
        assert_eq!(serial_hex(&[0x00]), "00");
    }

    #[test]
    fn garbage_certificate_is_an_error() {
        let pem = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";
        let err = parse_certs(pem.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("certificate #1"), "{err}");
    }

    #[test]
    fn key_match_helper() {
        let ca = Ca::new("Test CA");
        let leaf = ca.issue(&LeafSpec::server("compute1"));
        let other = ca.issue(&LeafSpec::server("compute2"));
        let cert = leaf.cert_pem.as_bytes();
        assert!(key_matches_certificate(cert, leaf.key_pem.as_bytes()).unwrap());
        assert!(!key_matches_certificate(cert, other.key_pem.as_bytes()).unwrap());
    }

    #[test]
    fn large_rsa_keys_are_described_and_matched() {
        use crate::testutil::fixture;
        let cert = fixture("big-rsa/rsa16384-cert.pem");
        let info = &parse_certs(cert.as_bytes()).unwrap()[0];
        assert_eq!(info.key_algorithm, Some(KeyAlgorithm::Rsa));
        let key = |name: &str| fixture(&format!("big-rsa/{name}"));
        let cert = cert.as_bytes();
        assert!(key_matches_certificate(cert, key("rsa16384-pkcs8.pem").as_bytes()).unwrap());
        assert!(!key_matches_certificate(cert, key("rsa8192-pkcs1.pem").as_bytes()).unwrap());
    }

    #[test]
    fn signed_by_any_checks_keys_not_names() {
        let (ca, ca_key) = crate::init_ca("same name", 30).unwrap();
        let (other_ca, _) = crate::init_ca("same name", 30).unwrap();
        let (leaf, _) = crate::issue_pair(
            &ca,
            &ca_key,
            crate::CertKind::Server,
            "h",
            &["h".to_string()],
            &[],
            10,
        )
        .unwrap();
        assert!(signed_by_any(leaf.as_bytes(), ca.as_bytes()).unwrap());
        assert!(!signed_by_any(leaf.as_bytes(), other_ca.as_bytes()).unwrap());
        let bundle = format!("{other_ca}{ca}");
        assert!(signed_by_any(leaf.as_bytes(), bundle.as_bytes()).unwrap());
    }
}

#[cfg(test)]
mod hostile_text_tests {
    use super::*;
    use crate::testutil::{Ca, LeafSpec};

    #[test]
    fn certificate_text_is_escaped_for_terminals() {
        let hostile = "evil\u{202e}gpj.exe\0\x1b[2J\nCN=forged";
        let ca = Ca::new(&format!("CA {hostile}"));
        let leaf = ca.issue(&LeafSpec {
            cn: hostile.into(),
            dns: vec!["a\x1b]0;title\x07.example.com".into()],
            ..LeafSpec::server("compute1")
        });
        let info = &parse_certs(leaf.cert_pem.as_bytes()).unwrap()[0];
        let escaped = r"evil\u{202e}gpj.exe\0\x1b[2J\nCN=forged";
        assert!(info.subject.contains(escaped), "{:?}", info.subject);
        assert!(info.issuer.contains(escaped), "{:?}", info.issuer);
        assert_eq!(info.dns_names, vec![r"a\x1b]0;title\x07.example.com"]);
        for text in [&info.subject, &info.issuer, &info.dns_names[0]] {
            assert!(
                !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{text:?}"
            );
        }
    }
}
