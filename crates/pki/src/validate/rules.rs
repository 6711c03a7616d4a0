//! Per-certificate rules shared by CA and leaf checks: validity window, basicConstraints,
//! keyUsage. keyUsage follows libvirt (virNetTLSContextCheckCertKeyUsage): a missing bit is
//! fatal only when the extension is critical, otherwise libvirt just logs a warning.

use std::path::Path;

use time::Duration;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::KeyUsage;

use super::checker::{format_time, Checker};
use crate::finding::Severity;

pub(super) fn validity(c: &mut Checker, path: &Path, label: &str, cert: &X509Certificate) {
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    if c.now < not_before {
        c.error(
            path,
            format!(
                "{label} is not valid yet: notBefore is {} (clock skew or a certificate issued for the future)",
                format_time(not_before)
            ),
        );
    } else if c.now > not_after {
        c.error(
            path,
            format!(
                "{label} expired on {} ({} days ago)",
                format_time(not_after),
                (c.now - not_after).whole_days()
            ),
        );
    } else if not_after - c.now < Duration::days(i64::from(c.warn_days)) {
        c.warning(
            path,
            format!(
                "{label} expires soon: in {} days, on {} (warning threshold {} days)",
                (not_after - c.now).whole_days(),
                format_time(not_after),
                c.warn_days
            ),
        );
    }
}

/// basicConstraints CA flag: `Some(true/false)`, or `None` when the extension is absent.
pub(super) fn ca_flag(
    c: &mut Checker,
    path: &Path,
    label: &str,
    cert: &X509Certificate,
) -> Option<bool> {
    match cert.basic_constraints() {
        Ok(bc) => bc.map(|ext| ext.value.ca),
        Err(e) => {
            c.error(path, format!("{label}: unreadable basicConstraints: {e}"));
            None
        }
    }
}

/// A named keyUsage bit.
pub(super) struct Usage {
    pub name: &'static str,
    pub has: fn(&KeyUsage) -> bool,
}

pub(super) const KEY_CERT_SIGN: Usage = Usage {
    name: "keyCertSign",
    has: KeyUsage::key_cert_sign,
};
pub(super) const DIGITAL_SIGNATURE: Usage = Usage {
    name: "digitalSignature",
    has: KeyUsage::digital_signature,
};
pub(super) const KEY_ENCIPHERMENT: Usage = Usage {
    name: "keyEncipherment",
    has: KeyUsage::key_encipherment,
};

pub(super) fn key_usage(
    c: &mut Checker,
    path: &Path,
    label: &str,
    cert: &X509Certificate,
    required: &[Usage],
) {
    let ext = match cert.key_usage() {
        Ok(Some(ext)) => ext,
        Ok(None) => return,
        Err(e) => {
            c.error(path, format!("{label}: unreadable keyUsage: {e}"));
            return;
        }
    };
    let missing: Vec<&str> = required
        .iter()
        .filter(|usage| !(usage.has)(ext.value))
        .map(|usage| usage.name)
        .collect();
    if missing.is_empty() {
        return;
    }
    let (severity, consequence) = if ext.critical {
        (Severity::Error, "libvirt rejects it")
    } else {
        (Severity::Warning, "non-critical, so libvirt only warns")
    };
    c.report(
        severity,
        path,
        format!(
            "{label}: keyUsage lacks {} ({consequence})",
            missing.join(" and ")
        ),
    );
}
