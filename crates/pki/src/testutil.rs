//! Test fixtures built with rcgen, with every knob the validation tests need to turn.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

use crate::key::parse_private_key_pem;

/// The fixed "now" of validation tests (2030-03-17), so results do not depend on the clock.
pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()
}

/// A key file from `tests/fixtures` (openssl-generated; see the README there).
pub(crate) fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads a key of any supported encoding as an rcgen key (rcgen itself wants PKCS#8).
pub(crate) fn rcgen_key(pem: &str) -> KeyPair {
    let parsed = parse_private_key_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    KeyPair::try_from(parsed.pkcs8.as_slice()).unwrap()
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// A test CA; `cert_pem`/`key_pem` are what would sit in the CA bundle and the CA key file.
pub(crate) struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A proper CA valid from 30 days before [`now`] for ten years.
    pub fn new(cn: &str) -> Self {
        Self::build(cn, None, |_| {})
    }

    /// A CA whose parameters `tweak` may break, optionally with a given key.
    pub fn build(
        cn: &str,
        key_pem: Option<&str>,
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> Self {
        let key = match key_pem {
            Some(pem) => rcgen_key(pem),
            None => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now() - Duration::days(30);
        params.not_after = now() + Duration::days(3650);
        tweak(&mut params);
        let cert = params.self_signed(&key).unwrap();
        let key_pem = key_pem.map_or_else(|| key.serialize_pem(), str::to_string);
        Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        }
    }

    pub fn issue(&self, spec: &LeafSpec) -> Pair {
        let key_pem = spec.key_pem.clone().unwrap_or_else(|| {
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
                .unwrap()
                .serialize_pem()
        });
        let key = rcgen_key(&key_pem);
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(&spec.cn);
        params.subject_alt_names = spec
            .dns
            .iter()
            .map(|d| SanType::DnsName(d.clone().try_into().unwrap()))
            .chain(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)))
            .collect();
        params.extended_key_usages = spec.eku.clone();
        params.key_usages = spec.key_usages.clone();
        params.is_ca = spec.is_ca;
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert_pem: cert.pem(),
            key_pem,
        }
    }
}

/// A certificate and its key, as PEM.
#[derive(Clone)]
pub(crate) struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Everything about a leaf certificate a test may want to get wrong.
#[derive(Clone)]
pub(crate) struct LeafSpec {
    pub cn: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub is_ca: IsCa,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Subject key (any supported encoding); a fresh P-256 key when `None`.
    pub key_pem: Option<String>,
}

impl LeafSpec {
    /// A correct server certificate for `host`: SANs `<host>.example.com` and 10.0.0.11.
    pub fn server(host: &str) -> Self {
        Self {
            cn: host.to_string(),
            dns: vec![format!("{host}.example.com")],
            ips: vec!["10.0.0.11".parse().unwrap()],
            eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
            key_usages: vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            is_ca: IsCa::ExplicitNoCa,
            not_before: now() - Duration::days(1),
            not_after: now() + Duration::days(365),
            key_pem: None,
        }
    }

    /// A correct client certificate for `host`.
    pub fn client(host: &str) -> Self {
        Self {
            dns: Vec::new(),
            ips: Vec::new(),
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
            ..Self::server(host)
        }
    }
}
