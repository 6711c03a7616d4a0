//! Server and client certificates with their keys.

use std::net::IpAddr;
use std::path::Path;

use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;

use super::checker::{format_time, Checker};
use super::rules;
use super::CertFile;
use crate::ca::CertKind;
use crate::inspect::{parse_der, presented_names};
use crate::key::{self, KeyError, PublicKey};

/// The parsed CA bundle leaves are checked against.
pub(super) struct Trust<'a, 'd> {
    pub path: &'a Path,
    pub cas: &'a [X509Certificate<'d>],
}

/// What peers will call the server.
pub(super) struct Identity<'a> {
    pub dns_name: Option<&'a str>,
    pub address: Option<&'a str>,
}

/// One certificate/key pair of a host; either half may be absent.
pub(super) struct Leaf<'a> {
    pub kind: CertKind,
    pub cert: Option<&'a CertFile>,
    pub key: Option<&'a CertFile>,
}

impl Leaf<'_> {
    pub fn check(&self, c: &mut Checker, trust: Option<&Trust>, identity: &Identity) {
        let ders = self.cert.and_then(|file| c.load_certs(file));
        let cert_key = match (self.cert, &ders) {
            (Some(file), Some(ders)) => self.check_cert(c, file, ders, trust, identity),
            _ => None,
        };
        if let Some(key_file) = self.key {
            self.check_key(c, key_file, cert_key);
        }
    }

    /// Runs the certificate checks; returns its public key for the key match.
    fn check_cert(
        &self,
        c: &mut Checker,
        file: &CertFile,
        ders: &[Vec<u8>],
        trust: Option<&Trust>,
        identity: &Identity,
    ) -> Option<Result<PublicKey, KeyError>> {
        let path = file.path.as_path();
        let role = self.kind.role();
        if ders.len() > 1 {
            c.warning(
                path,
                format!(
                    "holds {} certificates; libvirt checks only the first against the CA bundle, so intermediates belong in the CA bundle",
                    ders.len()
                ),
            );
        }
        let cert = match parse_der(&ders[0]) {
            Ok(cert) => cert,
            Err(reason) => {
                c.error(path, format!("{role} certificate: {reason}"));
                return None;
            }
        };
        let label = format!("{role} certificate '{}'", cert.subject());
        rules::validity(c, path, &label, &cert);
        if rules::ca_flag(c, path, &label, &cert) == Some(true) {
            c.error(
                path,
                format!("{label} is a CA certificate (basicConstraints CA=TRUE); libvirt refuses it as a {role} certificate"),
            );
        }
        rules::key_usage(
            c,
            path,
            &label,
            &cert,
            &[rules::DIGITAL_SIGNATURE, rules::KEY_ENCIPHERMENT],
        );
        self.check_purpose(c, path, &label, &cert);
        if let Some(trust) = trust {
            check_chain(c, path, &label, &cert, trust);
        }
        if self.kind == CertKind::Server {
            check_identity(c, path, &label, &cert, identity);
        }
        Some(key::certificate_public_key(cert.public_key()))
    }

    fn check_purpose(&self, c: &mut Checker, path: &Path, label: &str, cert: &X509Certificate) {
        let eku = match cert.extended_key_usage() {
            Ok(Some(ext)) => ext.value,
            Ok(None) => return,
            Err(e) => {
                c.error(path, format!("{label}: unreadable extendedKeyUsage: {e}"));
                return;
            }
        };
        let (allowed, needed) = match self.kind {
            CertKind::Server => (
                eku.server_auth,
                "serverAuth (TLS Web Server Authentication)",
            ),
            CertKind::Client => (
                eku.client_auth,
                "clientAuth (TLS Web Client Authentication)",
            ),
        };
        if !allowed {
            c.error(
                path,
                format!(
                    "{label}: extendedKeyUsage lacks {needed}; the TLS handshake will reject it as a {} certificate",
                    self.kind.role()
                ),
            );
        }
    }

    fn check_key(
        &self,
        c: &mut Checker,
        key_file: &CertFile,
        cert_key: Option<Result<PublicKey, KeyError>>,
    ) {
        let path = key_file.path.as_path();
        let role = self.kind.role();
        let private = match key::parse_private_key_pem(&key_file.bytes) {
            Ok(private) => private,
            Err(KeyError::Unsupported(reason)) => {
                c.warning(path, format!("cannot check the {role} key: {reason}"));
                return;
            }
            Err(KeyError::Invalid(reason))
                if key_file.bytes.iter().all(u8::is_ascii_whitespace) =>
            {
                c.error(path, format!("file is empty ({reason})"));
                return;
            }
            Err(KeyError::Invalid(reason)) => {
                c.error(path, format!("{role} key: {reason}"));
                return;
            }
        };
        let cert_path = self.cert.map(|f| f.path.display().to_string());
        match (cert_key, cert_path) {
            (Some(Ok(cert_key)), Some(cert_path)) => {
                if let Err(reason) = key::check_match(&private.public, &cert_key) {
                    c.error(path, format!("{reason} in {cert_path}"));
                }
            }
            (Some(Err(reason)), Some(cert_path)) => c.warning(
                path,
                format!("cannot check that the key matches {cert_path}: certificate has {reason}"),
            ),
            _ => {}
        }
    }
}

impl CertKind {
    fn role(self) -> &'static str {
        match self {
            CertKind::Server => "server",
            CertKind::Client => "client",
        }
    }
}

/// Largest RSA key whose signatures the chain check can verify (ring's limit).
const MAX_VERIFIABLE_RSA_BITS: usize = 8192;

/// libvirt verifies the certificate against the CA bundle alone (virNetTLSContextCheckCertPair),
/// so the direct issuer must be in the bundle.
fn check_chain(c: &mut Checker, path: &Path, label: &str, cert: &X509Certificate, trust: &Trust) {
    if trust.cas.is_empty() {
        return; // the bundle's own findings explain why
    }
    // Why some CA's signature could not be checked, if one could not.
    let mut unsupported = None;
    let mut signers = Vec::new();
    for ca in trust.cas {
        // ring (behind x509-parser) verifies RSA signatures of keys up to 8192 bits only.
        if let Some(bits) = key::rsa_bits(ca.public_key()).filter(|&b| b > MAX_VERIFIABLE_RSA_BITS)
        {
            unsupported = Some(format!(
                "CA '{}' has a {bits}-bit RSA key, beyond the {MAX_VERIFIABLE_RSA_BITS} bits this check verifies",
                ca.subject()
            ));
            continue;
        }
        match cert.verify_signature(Some(ca.public_key())) {
            Ok(()) => signers.push(ca),
            Err(X509Error::SignatureUnsupportedAlgorithm) => {
                unsupported = Some("unsupported signature algorithm".into())
            }
            Err(_) => {}
        }
    }
    let bundle = trust.path.display();
    // A CA renewed with the same key may sit in the bundle beside the old one: the one that
    // lasts longest is the one peers can rely on.
    if let Some(ca) = signers.iter().max_by_key(|ca| ca.validity().not_after) {
        let ca_end = ca.validity().not_after.to_datetime();
        let leaf_end = cert.validity().not_after.to_datetime();
        // An expired CA is an error of its own; this is about the one still valid today.
        if leaf_end > ca_end && c.now <= ca_end {
            c.warning(
                path,
                format!(
                    "{label} outlives its CA: it is valid until {} but CA '{}' in {bundle} expires on {}, after which peers reject it; renew the CA (same key) or reissue this certificate before then",
                    format_time(leaf_end),
                    ca.subject(),
                    format_time(ca_end)
                ),
            );
        }
        return;
    }
    let issuer = cert.issuer();
    if let Some(reason) = unsupported {
        c.warning(
            path,
            format!("{label}: cannot verify its signature against {bundle}: {reason}"),
        );
    } else if trust
        .cas
        .iter()
        .any(|ca| ca.subject().as_raw() == issuer.as_raw())
    {
        c.error(
            path,
            format!(
                "{label} is not signed by any CA in {bundle}: a CA named '{issuer}' is there but the signature does not verify with its key (CA re-issued with a new key?)"
            ),
        );
    } else {
        c.error(
            path,
            format!("{label} is not signed by any CA in {bundle} (its issuer is '{issuer}')"),
        );
    }
}

/// Both names matter with Kolla: `connection_uri` uses the host name, live migration uses
/// the migration address. Matching neither breaks TLS; matching one is a warning.
fn check_identity(
    c: &mut Checker,
    path: &Path,
    label: &str,
    cert: &X509Certificate,
    identity: &Identity,
) {
    let names = match presented_names(cert) {
        Ok(names) => names,
        Err(reason) => {
            c.error(path, format!("{label}: {reason}"));
            return;
        }
    };
    let dns_name = identity.dns_name.filter(|s| !s.is_empty());
    let address = match identity.address.filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match text.parse::<IpAddr>() {
            Ok(ip) => Some((text, ip)),
            Err(_) => {
                c.error(
                    path,
                    format!("migration address '{text}' is not an IP address; cannot check the certificate against it"),
                );
                None
            }
        },
    };
    let dns_ok = dns_name.map(|name| match name.parse::<IpAddr>() {
        Ok(ip) => names.matches_ip(ip),
        Err(_) => names.matches_dns(name),
    });
    let ip_ok = address.map(|(_, ip)| names.matches_ip(ip));
    let presented = names.describe();
    let missing_name = || format!("migration_hostname '{}'", dns_name.unwrap_or_default());
    let missing_ip = || {
        format!(
            "migration address '{}'",
            address.map(|a| a.0).unwrap_or_default()
        )
    };
    match (dns_ok, ip_ok) {
        (Some(false), Some(false)) => c.error(
            path,
            format!(
                "{label} does not cover {} nor {} ({presented}); peers will fail the TLS hostname check",
                missing_name(),
                missing_ip()
            ),
        ),
        (Some(false), None) => c.error(
            path,
            format!("{label} does not cover {} ({presented}); peers will fail the TLS hostname check", missing_name()),
        ),
        (None, Some(false)) => c.error(
            path,
            format!("{label} does not cover {} ({presented}); peers will fail the TLS hostname check", missing_ip()),
        ),
        (Some(true), Some(false)) => c.warning(
            path,
            format!(
                "{label} does not cover {} ({presented}); connections by address (live migration) will fail the TLS hostname check",
                missing_ip()
            ),
        ),
        (Some(false), Some(true)) => c.warning(
            path,
            format!(
                "{label} does not cover {} ({presented}); connections by name (nova connection_uri) will fail the TLS hostname check",
                missing_name()
            ),
        ),
        _ => {}
    }
}
