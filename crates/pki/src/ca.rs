//! A minimal built-in CA for operators without their own PKI. Keys are ECDSA P-256
//! (accepted by gnutls/libvirt, cheap to generate); output is PEM, keys in PKCS#8.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};

use crate::error::PkiError;
use crate::inspect::parse_der;
use crate::key;
use crate::pemfile;

/// Which half of the libvirt pair a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertKind {
    Server,
    Client,
}

/// Certificates start this much in the past so hosts with a slightly late clock accept them.
const BACKDATE: Duration = Duration::hours(1);

/// Creates a self-signed CA valid for `days`. Returns `(cert_pem, key_pem)`.
pub fn init_ca(common_name: &str, days: u32) -> Result<(String, String), PkiError> {
    init_ca_at(common_name, days, OffsetDateTime::now_utc())
}

/// `name` with today's date (UTC), e.g. `virtfleet CA 2026-12-02`: a CA made to replace
/// another can be told from it by its subject.
pub fn dated_name(name: &str) -> String {
    format!("{name} {}", OffsetDateTime::now_utc().date())
}

/// Issues a server or client certificate for `host` (the CN), signed by the CA.
///
/// `ca_cert_pem` may be a bundle: the certificate whose public key matches `ca_key_pem` is
/// used (the key may be PKCS#8, PKCS#1 or SEC1). The result carries the given DNS/IP SANs,
/// extendedKeyUsage serverAuth or clientAuth, keyUsage digitalSignature+keyEncipherment
/// (libvirt checks both), and is valid for `days` but never beyond the CA's own notAfter.
/// Returns `(cert_pem, key_pem)`.
pub fn issue_pair(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    kind: CertKind,
    host: &str,
    dns_names: &[String],
    ips: &[IpAddr],
    days: u32,
) -> Result<(String, String), PkiError> {
    let request = LeafRequest {
        kind,
        host,
        unit: None,
        dns_names,
        ips,
        days,
    };
    issue_leaf(ca_cert_pem, ca_key_pem, &request)
}

/// [`issue_pair`] with every detail of the leaf in one request.
pub fn issue_leaf(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    request: &LeafRequest,
) -> Result<(String, String), PkiError> {
    issue_pair_at(ca_cert_pem, ca_key_pem, request, OffsetDateTime::now_utc())
}

/// A leaf certificate to issue: subject `CN=<host>` (with `OU=<unit>` when given), SANs.
pub struct LeafRequest<'a> {
    pub kind: CertKind,
    pub host: &'a str,
    /// An organizational unit in the subject: a second pair of the same host whose subject
    /// no list naming the first pair's matches (QEMU's own, beside libvirt's).
    pub unit: Option<&'a str>,
    pub dns_names: &'a [String],
    pub ips: &'a [IpAddr],
    pub days: u32,
}

pub(crate) fn init_ca_at(
    common_name: &str,
    days: u32,
    now: OffsetDateTime,
) -> Result<(String, String), PkiError> {
    require_non_empty("CA common name", common_name)?;
    require_days(days)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_only(common_name);
    // Path length 0: this CA signs host certificates only, never other CAs.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(days));
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

pub(crate) fn issue_pair_at(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    request: &LeafRequest,
    now: OffsetDateTime,
) -> Result<(String, String), PkiError> {
    require_non_empty("host name", request.host)?;
    require_days(request.days)?;
    let ca_key = key::parse_private_key_pem(ca_key_pem.as_bytes())
        .map_err(|e| PkiError::Key(format!("CA key: {e}")))?;
    let ca_ders = pemfile::certificate_ders(ca_cert_pem.as_bytes())?;
    let (ca_der, ca_not_after) = find_ca_for_key(&ca_ders, &ca_key.public)?;
    let signing_key = KeyPair::try_from(ca_key.pkcs8.as_slice())?;
    let issuer = Issuer::from_ca_cert_der(&ca_der.as_slice().into(), signing_key)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_only(request.host);
    if let Some(unit) = request.unit {
        require_non_empty("organizational unit", unit)?;
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, unit);
    }
    params.subject_alt_names = subject_alt_names(request.dns_names, request.ips)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![match request.kind {
        CertKind::Server => ExtendedKeyUsagePurpose::ServerAuth,
        CertKind::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = (now + Duration::days(i64::from(request.days))).min(ca_not_after);
    params.serial_number = Some(random_serial()?);

    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&leaf_key, &issuer)?;
    Ok((cert.pem(), leaf_key.serialize_pem()))
}

/// The CA certificate in the bundle that belongs to the key, with its notAfter.
fn find_ca_for_key<'d>(
    ders: &'d [Vec<u8>],
    ca_key: &key::PublicKey,
) -> Result<(&'d Vec<u8>, OffsetDateTime), PkiError> {
    for (i, der) in ders.iter().enumerate() {
        let cert = parse_der(der).map_err(|reason| PkiError::Certificate {
            index: i + 1,
            reason,
        })?;
        let matches = key::certificate_public_key(cert.public_key())
            .is_ok_and(|public| key::check_match(ca_key, &public).is_ok());
        if matches {
            if !cert.is_ca() {
                return Err(PkiError::InvalidParameter(format!(
                    "certificate '{}' matches the CA key but is not a CA (basicConstraints CA=TRUE missing)",
                    cert.subject()
                )));
            }
            return Ok((der, cert.validity().not_after.to_datetime()));
        }
    }
    Err(PkiError::CaKeyMismatch)
}

fn subject_alt_names(dns_names: &[String], ips: &[IpAddr]) -> Result<Vec<SanType>, PkiError> {
    let mut sans = Vec::with_capacity(dns_names.len() + ips.len());
    for name in dns_names {
        let ia5 = name
            .clone()
            .try_into()
            .map_err(|_| PkiError::InvalidParameter(format!("DNS name {name:?} is not ASCII")))?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(ips.iter().copied().map(SanType::IpAddress));
    Ok(sans)
}

fn common_name_only(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// 128 random bits, positive and without a leading zero byte (RFC 5280: at most 20 octets).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::InvalidParameter("system random generator failed".into()))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn require_non_empty(what: &str, value: &str) -> Result<(), PkiError> {
    if value.trim().is_empty() {
        return Err(PkiError::InvalidParameter(format!("{what} is empty")));
    }
    Ok(())
}

fn require_days(days: u32) -> Result<(), PkiError> {
    if days == 0 {
        return Err(PkiError::InvalidParameter(
            "validity must be at least 1 day".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::parse_certs;
    use crate::testutil::{fixture, Ca};
    use crate::validate::{validate_host, CertFile, HostCerts};

    fn issue(ca: &(String, String), kind: CertKind, days: u32) -> (String, String) {
        let dns = vec!["compute1.example.com".to_string()];
        let ips = vec!["10.0.0.11".parse().unwrap()];
        issue_pair(&ca.0, &ca.1, kind, "compute1", &dns, &ips, days).unwrap()
    }

    #[test]
    fn a_unit_gives_the_same_host_a_subject_no_list_of_its_plain_pair_matches() {
        let ca = init_ca("virtfleet CA", 3650).unwrap();
        let plain = issue(&ca, CertKind::Client, 30).0;
        let dns = vec!["compute1".to_string()];
        let request = LeafRequest {
            kind: CertKind::Client,
            host: "compute1",
            unit: Some("qemu"),
            dns_names: &dns,
            ips: &[],
            days: 30,
        };
        let (qemu, _) = issue_leaf(&ca.0, &ca.1, &request).unwrap();
        assert_eq!(crate::libvirt_dn(plain.as_bytes()).unwrap(), "CN=compute1");
        assert_eq!(
            crate::libvirt_dn(qemu.as_bytes()).unwrap(),
            "CN=compute1,OU=qemu"
        );
        let empty = LeafRequest {
            unit: Some(""),
            ..request
        };
        assert!(issue_leaf(&ca.0, &ca.1, &empty).is_err());
    }

    #[test]
    fn built_in_ca_output_validates_cleanly() {
        let ca = init_ca("virtfleet CA", 3650).unwrap();
        let server = issue(&ca, CertKind::Server, 365);
        let client = issue(&ca, CertKind::Client, 365);
        let set = HostCerts {
            host: "compute1".into(),
            migration_hostname: Some("compute1.example.com".into()),
            migration_address: Some("10.0.0.11".into()),
            ca: Some(CertFile::new("cacert.pem", ca.0.as_bytes())),
            server_cert: Some(CertFile::new("servercert.pem", server.0.as_bytes())),
            server_key: Some(CertFile::new("serverkey.pem", server.1.as_bytes())),
            client_cert: Some(CertFile::new("clientcert.pem", client.0.as_bytes())),
            client_key: Some(CertFile::new("clientkey.pem", client.1.as_bytes())),
        };
        // `SystemTime` is accepted as well as `OffsetDateTime`.
        assert_eq!(
            validate_host(&set, std::time::SystemTime::now(), 30),
            vec![]
        );
    }

    #[test]
    fn issued_certificate_fields() {
        let ca = init_ca("virtfleet CA", 3650).unwrap();
        let (cert_pem, key_pem) = issue(&ca, CertKind::Server, 365);
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let info = &parse_certs(cert_pem.as_bytes()).unwrap()[0];
        assert_eq!(info.subject, "CN=compute1");
        assert_eq!(info.issuer, "CN=virtfleet CA");
        assert!(!info.is_ca);
        assert_eq!(info.dns_names, vec!["compute1.example.com".to_string()]);
        assert_eq!(info.key_algorithm, Some(crate::KeyAlgorithm::EcdsaP256));
        assert_eq!(info.days_left(OffsetDateTime::now_utc()), 364);

        let der = &info.der;
        let cert = parse_der(der).unwrap();
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let ca_info = &parse_certs(ca.0.as_bytes()).unwrap()[0];
        assert!(ca_info.is_ca);
        assert_ne!(info.serial, ca_info.serial);
    }

    #[test]
    fn leaf_never_outlives_its_ca() {
        let ca = init_ca("short CA", 10).unwrap();
        let (cert_pem, _) = issue(&ca, CertKind::Client, 365);
        let leaf = &parse_certs(cert_pem.as_bytes()).unwrap()[0];
        let ca_info = &parse_certs(ca.0.as_bytes()).unwrap()[0];
        assert_eq!(leaf.not_after, ca_info.not_after);
    }

    #[test]
    fn picks_the_ca_matching_the_key_from_a_bundle() {
        let old = init_ca("Old CA", 100).unwrap();
        let new = init_ca("New CA", 100).unwrap();
        let bundle = format!("{}{}", old.0, new.0);
        let (cert_pem, _) = issue(&(bundle, new.1), CertKind::Server, 30);
        assert_eq!(
            parse_certs(cert_pem.as_bytes()).unwrap()[0].issuer,
            "CN=New CA"
        );
    }

    #[test]
    fn accepts_operator_ca_keys_in_sec1_and_pkcs1() {
        for key in ["ec-p256-sec1.pem", "rsa2048-pkcs1.pem"] {
            let ca = Ca::build("Operator CA", Some(&fixture(key)), |_| {});
            let (cert_pem, _) = issue(&(ca.cert_pem, ca.key_pem), CertKind::Client, 30);
            let info = &parse_certs(cert_pem.as_bytes()).unwrap()[0];
            assert_eq!(info.issuer, "CN=Operator CA", "{key}");
        }
    }

    #[test]
    fn rejects_bad_requests() {
        let ca = init_ca("virtfleet CA", 100).unwrap();
        let other = init_ca("Other CA", 100).unwrap();
        let err = issue_pair(&ca.0, &other.1, CertKind::Server, "h", &[], &[], 1).unwrap_err();
        assert!(matches!(err, PkiError::CaKeyMismatch), "{err}");
        let err = issue_pair(&ca.0, &ca.1, CertKind::Server, " ", &[], &[], 1).unwrap_err();
        assert!(err.to_string().contains("host name is empty"), "{err}");
        let err = issue_pair(&ca.0, &ca.1, CertKind::Server, "h", &[], &[], 0).unwrap_err();
        assert!(err.to_string().contains("at least 1 day"), "{err}");
        let bad_dns = vec!["bücher.example".to_string()];
        let err = issue_pair(&ca.0, &ca.1, CertKind::Server, "h", &bad_dns, &[], 1).unwrap_err();
        assert!(err.to_string().contains("not ASCII"), "{err}");
        assert!(init_ca("", 10).is_err());
    }

    #[test]
    fn refuses_a_non_ca_certificate_as_issuer() {
        let ca = init_ca("virtfleet CA", 100).unwrap();
        let (leaf_cert, leaf_key) = issue(&ca, CertKind::Server, 30);
        let err =
            issue_pair(&leaf_cert, &leaf_key, CertKind::Server, "h", &[], &[], 1).unwrap_err();
        assert!(err.to_string().contains("is not a CA"), "{err}");
    }
}
