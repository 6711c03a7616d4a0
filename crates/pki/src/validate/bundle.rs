//! The CA bundle: one CA certificate, or several during a CA rollover.

use x509_parser::certificate::X509Certificate;

use super::checker::Checker;
use super::rules;
use super::CertFile;
use crate::inspect::parse_der;

/// libvirt imports at most this many CA certificates (MAX_CERTS in virnettlscontext.c) and
/// refuses to start with more.
const MAX_CA_CERTS: usize = 16;

/// Checks every CA in the bundle and returns those that parsed, for chain checks.
pub(super) fn check<'d>(
    c: &mut Checker,
    file: &CertFile,
    ders: &'d [Vec<u8>],
) -> Vec<X509Certificate<'d>> {
    let path = file.path.as_path();
    if ders.len() > MAX_CA_CERTS {
        c.error(
            path,
            format!(
                "holds {} certificates; libvirt loads at most {MAX_CA_CERTS}",
                ders.len()
            ),
        );
    }
    let mut cas = Vec::new();
    for (i, der) in ders.iter().enumerate() {
        let position = if ders.len() == 1 {
            "CA certificate".to_string()
        } else {
            format!("CA certificate #{} of {}", i + 1, ders.len())
        };
        let cert = match parse_der(der) {
            Ok(cert) => cert,
            Err(reason) => {
                c.error(path, format!("{position}: {reason}"));
                continue;
            }
        };
        let label = format!("{position} '{}'", cert.subject());
        match rules::ca_flag(c, path, &label, &cert) {
            Some(true) => {}
            Some(false) => c.error(
                path,
                format!("{label} is not a CA: basicConstraints has CA=FALSE; libvirt refuses it as a CA"),
            ),
            None => c.error(
                path,
                format!("{label} is not a CA: no basicConstraints CA=TRUE extension; libvirt refuses it as a CA"),
            ),
        }
        rules::key_usage(c, path, &label, &cert, &[rules::KEY_CERT_SIGN]);
        rules::validity(c, path, &label, &cert);
        cas.push(cert);
    }
    cas
}
