//! A certificate's subject as libvirt matches it against `tls_allowed_dn_list`: GnuTLS's
//! `gnutls_x509_crt_get_dn` string (its compatibility form): the RDNs in certificate order,
//! `TYPE=value` joined by `,` (`+` within a multi-valued RDN), with `,+"\<>;`, a leading `#`
//! or blank and a trailing blank escaped by a backslash.

use x509_parser::oid_registry::{
    Oid, OID_DOMAIN_COMPONENT, OID_X509_COMMON_NAME, OID_X509_COUNTRY_NAME, OID_X509_LOCALITY_NAME,
    OID_X509_ORGANIZATIONAL_UNIT, OID_X509_ORGANIZATION_NAME, OID_X509_STATE_OR_PROVINCE_NAME,
};

use crate::inspect::parse_der;
use crate::pemfile;

/// The attribute types whose names GnuTLS and this module spell alike; a subject with any
/// other type is refused rather than guessed.
fn type_name(oid: &Oid) -> Option<&'static str> {
    [
        (OID_X509_COUNTRY_NAME, "C"),
        (OID_X509_STATE_OR_PROVINCE_NAME, "ST"),
        (OID_X509_LOCALITY_NAME, "L"),
        (OID_X509_ORGANIZATION_NAME, "O"),
        (OID_X509_ORGANIZATIONAL_UNIT, "OU"),
        (OID_X509_COMMON_NAME, "CN"),
        (OID_DOMAIN_COMPONENT, "DC"),
    ]
    .into_iter()
    .find(|(known, _)| known == oid)
    .map(|(_, name)| name)
}

/// The subject DN of the first certificate in `pem`, as libvirt sees it. Err says why it
/// cannot be written exactly (an attribute type or string type outside the common ones, a
/// `*` or `?`, which libvirt's list would read as a wildcard, a `"` or a control character).
pub fn libvirt_dn(pem: &[u8]) -> Result<String, String> {
    let ders = pemfile::certificate_ders(pem).map_err(|e| e.to_string())?;
    let der = ders.first().ok_or("no certificate")?;
    let cert = parse_der(der)?;
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter() {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let name = type_name(attr.attr_type()).ok_or_else(|| {
                format!(
                    "subject attribute {} is not C, ST, L, O, OU, CN or DC",
                    attr.attr_type()
                )
            })?;
            let value = attr
                .as_str()
                .map_err(|_| format!("subject {name} is not a plain string"))?;
            // '*' and '?' are wildcards in libvirt's list; its config strings cannot hold '"'.
            if value.contains(['*', '?', '"']) || value.chars().any(char::is_control) {
                return Err(format!(
                    "subject {name} holds '*', '?', '\"' or a control character"
                ));
            }
            parts.push(format!("{name}={}", escape(value)));
        }
        rdns.push(parts.join("+"));
    }
    if rdns.is_empty() {
        return Err("empty subject".into());
    }
    Ok(rdns.join(","))
}

fn escape(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether libvirt's `tls_allowed_dn_list` entry `pattern` lets the subject `dn` in: a glob
/// (GLib's simple pattern, as libvirt matches it): `*` any run of characters, commas
/// included, `?` one character, everything else itself (`[` too), case counting.
pub fn dn_matches(pattern: &str, dn: &str) -> bool {
    simple_glob(pattern, dn, true)
}

/// `*` and `?` only, as GLib's and OpenSSH's patterns: the `glob` crate's matcher with its
/// character classes escaped.
fn simple_glob(pattern: &str, text: &str, case_sensitive: bool) -> bool {
    let escaped: String = pattern
        .chars()
        .map(|c| match c {
            '[' => "[[]".to_string(),
            ']' => "[]]".to_string(),
            c => c.to_string(),
        })
        .collect();
    let Ok(pattern) = glob::Pattern::new(&escaped) else {
        return false;
    };
    let options = glob::MatchOptions {
        case_sensitive,
        require_literal_separator: false,
        require_literal_leading_dot: false,
    };
    pattern.matches_with(text, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Ca, LeafSpec};

    #[test]
    fn list_entries_match_as_libvirt_globs_commas_included() {
        let qemu = "CN=compute01,OU=qemu";
        assert!(dn_matches("CN=compute*", qemu));
        assert!(dn_matches("*", qemu) && dn_matches("CN=compute0?,OU=qemu", qemu));
        assert!(!dn_matches("CN=compute01", qemu));
        assert!(!dn_matches("cn=compute01,OU=qemu", qemu), "case counts");
        assert!(!dn_matches("CN=*,OU=kvm", qemu));
        assert!(dn_matches("CN=[a]*", "CN=[a]b") && !dn_matches("CN=[ab]", "CN=a"));
    }

    #[test]
    fn subjects_read_in_certificate_order_with_specials_escaped() {
        let ca = Ca::new("Test CA");
        let pair = ca.issue(&LeafSpec::client("compute01"));
        assert_eq!(
            libvirt_dn(pair.cert_pem.as_bytes()).unwrap(),
            "CN=compute01"
        );
        assert_eq!(
            escape("a,b+c \"d\" <e>;f\\"),
            "a\\,b\\+c \\\"d\\\" \\<e\\>\\;f\\\\"
        );
        assert_eq!(escape("#x "), "\\#x\\ ");
        assert_eq!(escape(" y"), "\\ y");
    }
}
