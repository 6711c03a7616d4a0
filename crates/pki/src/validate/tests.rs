use std::path::PathBuf;

use rcgen::{ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose};
use time::Duration;

use super::*;
use crate::finding::Severity;
use crate::testutil::{fixture, now, Ca, LeafSpec, Pair};

const HOST: &str = "compute1";
const WARN_DAYS: u32 = 30;

/// Kolla's name for each part (the tests' fixture layout; the library never spells them).
fn path(kind: Role) -> PathBuf {
    let name = match kind {
        Role::Ca => "cacert.pem",
        Role::ServerCert => "servercert.pem",
        Role::ServerKey => "serverkey.pem",
        Role::ClientCert => "clientcert.pem",
        Role::ClientKey => "clientkey.pem",
    };
    PathBuf::from(format!("/etc/kolla/config/nova/nova-libvirt/{HOST}/{name}"))
}

fn file(kind: Role, text: &str) -> Option<CertFile> {
    Some(CertFile::new(path(kind), text.as_bytes()))
}

fn host_certs(ca_pem: &str, server: &Pair, client: &Pair) -> HostCerts {
    HostCerts {
        host: HOST.into(),
        migration_hostname: Some("compute1.example.com".into()),
        migration_address: Some("10.0.0.11".into()),
        ca: file(Role::Ca, ca_pem),
        server_cert: file(Role::ServerCert, &server.cert_pem),
        server_key: file(Role::ServerKey, &server.key_pem),
        client_cert: file(Role::ClientCert, &client.cert_pem),
        client_key: file(Role::ClientKey, &client.key_pem),
    }
}

/// A correct set for HOST from `ca`, with `server` as the server certificate.
fn set_with_server(ca: &Ca, server: &LeafSpec) -> HostCerts {
    host_certs(
        &ca.cert_pem,
        &ca.issue(server),
        &ca.issue(&LeafSpec::client(HOST)),
    )
}

fn set_with_client(ca: &Ca, client: &LeafSpec) -> HostCerts {
    host_certs(
        &ca.cert_pem,
        &ca.issue(&LeafSpec::server(HOST)),
        &ca.issue(client),
    )
}

fn good_set() -> (Ca, HostCerts) {
    let ca = Ca::new("Test CA");
    let set = set_with_server(&ca, &LeafSpec::server(HOST));
    (ca, set)
}

fn run(input: &HostCerts) -> Vec<Finding> {
    validate_host(input, now(), WARN_DAYS)
}

/// Exactly one finding, with this severity, on this file, naming host, path and `reason`.
fn assert_one(findings: &[Finding], severity: Severity, kind: Role, reason: &str) {
    assert_eq!(findings.len(), 1, "expected one finding, got {findings:#?}");
    assert_finding(&findings[0], severity, kind, reason);
}

fn assert_finding(finding: &Finding, severity: Severity, kind: Role, reason: &str) {
    let line = finding.to_string();
    assert_eq!(finding.severity, severity, "{line}");
    assert_eq!(finding.path, path(kind), "{line}");
    let prefix = format!("{HOST}: {}: ", path(kind).display());
    assert!(line.starts_with(&prefix), "{line}");
    assert!(line.contains(reason), "expected {reason:?} in {line}");
    assert!(!line.contains('\n'), "{line}");
}

fn has(findings: &[Finding], severity: Severity, kind: Role, reason: &str) -> bool {
    findings
        .iter()
        .any(|f| f.severity == severity && f.path == path(kind) && f.to_string().contains(reason))
}

// ---- good sets ----

#[test]
fn good_set_has_no_findings() {
    let (_, set) = good_set();
    assert_eq!(run(&set), vec![]);
}

#[test]
fn compute_only_host_with_ca_and_client_pair_has_no_findings() {
    let (_, mut set) = good_set();
    set.server_cert = None;
    set.server_key = None;
    assert_eq!(run(&set), vec![]);
}

#[test]
fn absent_files_are_not_checked() {
    let set = HostCerts::new(HOST);
    assert_eq!(run(&set), vec![]);
}

// ---- key/cert match ----

#[test]
fn server_key_mismatch() {
    let ca = Ca::new("Test CA");
    let mut set = set_with_server(&ca, &LeafSpec::server(HOST));
    set.server_key = file(Role::ServerKey, &ca.issue(&LeafSpec::server(HOST)).key_pem);
    let findings = run(&set);
    assert_one(
        &findings,
        Severity::Error,
        Role::ServerKey,
        "does not match",
    );
    assert!(findings[0]
        .message
        .contains(&path(Role::ServerCert).display().to_string()));
}

#[test]
fn client_key_mismatch() {
    let ca = Ca::new("Test CA");
    let mut set = set_with_server(&ca, &LeafSpec::server(HOST));
    set.client_key = set
        .server_key
        .clone()
        .map(|f| CertFile::new(path(Role::ClientKey), f.bytes));
    assert_one(
        &run(&set),
        Severity::Error,
        Role::ClientKey,
        "does not match",
    );
}

#[test]
fn key_of_another_algorithm_is_named() {
    let ca = Ca::new("Test CA");
    let mut set = set_with_server(&ca, &LeafSpec::server(HOST));
    set.server_key = file(Role::ServerKey, &fixture("rsa2048-pkcs8.pem"));
    assert_one(
        &run(&set),
        Severity::Error,
        Role::ServerKey,
        "private key is RSA but the certificate's key is ECDSA P-256",
    );
}

// ---- key encodings ----

fn server_with_key(key_file: &str) -> HostCerts {
    let ca = Ca::new("Test CA");
    let spec = LeafSpec {
        key_pem: Some(fixture(key_file)),
        ..LeafSpec::server(HOST)
    };
    set_with_server(&ca, &spec)
}

#[test]
fn rsa_pkcs1_key_matches() {
    assert_eq!(run(&server_with_key("rsa2048-pkcs1.pem")), vec![]);
}

#[test]
fn rsa_pkcs8_key_matches() {
    assert_eq!(run(&server_with_key("rsa2048-pkcs8.pem")), vec![]);
}

#[test]
fn rsa_pkcs1_file_matches_certificate_made_from_pkcs8_form() {
    let mut set = server_with_key("rsa2048-pkcs8.pem");
    set.server_key = file(Role::ServerKey, &fixture("rsa2048-pkcs1.pem"));
    assert_eq!(run(&set), vec![]);
}

#[test]
fn ec_sec1_keys_match() {
    assert_eq!(run(&server_with_key("ec-p256-sec1.pem")), vec![]);
    assert_eq!(run(&server_with_key("ec-p384-sec1.pem")), vec![]);
    let mut set = server_with_key("ec-p384-pkcs8.pem");
    set.server_key = file(Role::ServerKey, &fixture("ec-p384-sec1.pem"));
    assert_eq!(run(&set), vec![]);
}

#[test]
fn ed25519_keys_match() {
    assert_eq!(run(&server_with_key("ed25519-pkcs8.pem")), vec![]);
    let ca = Ca::new("Test CA");
    let rcgen_ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let spec = LeafSpec {
        key_pem: Some(rcgen_ed.serialize_pem()),
        ..LeafSpec::client(HOST)
    };
    assert_eq!(run(&set_with_client(&ca, &spec)), vec![]);
}

#[test]
fn ca_with_rsa_and_p384_keys_verify_chains() {
    for ca_key in ["rsa2048-pkcs1.pem", "ec-p384-sec1.pem", "ed25519-pkcs8.pem"] {
        let ca = Ca::build("Other-alg CA", Some(&fixture(ca_key)), |_| {});
        let set = set_with_server(&ca, &LeafSpec::server(HOST));
        assert_eq!(run(&set), vec![], "CA key {ca_key}");
    }
}

#[test]
fn encrypted_key_is_an_error() {
    let (_, mut set) = good_set();
    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAQID\n-----END ENCRYPTED PRIVATE KEY-----\n";
    set.client_key = file(Role::ClientKey, encrypted);
    assert_one(&run(&set), Severity::Error, Role::ClientKey, "encrypted");
}

// ---- large RSA keys (openssl-made, see tests/fixtures/README.md) ----

/// A server-only set of `tests/fixtures/big-rsa` files.
fn big_rsa_set(ca: &str, cert: &str, key: &str) -> HostCerts {
    let big_rsa = |name: &str| fixture(&format!("big-rsa/{name}"));
    HostCerts {
        host: HOST.into(),
        migration_hostname: Some("compute1.example.com".into()),
        migration_address: Some("10.0.0.11".into()),
        ca: file(Role::Ca, &big_rsa(ca)),
        server_cert: file(Role::ServerCert, &big_rsa(cert)),
        server_key: file(Role::ServerKey, &big_rsa(key)),
        ..HostCerts::default()
    }
}

#[test]
fn rsa_keys_up_to_16384_bits_match_their_certificates() {
    for (cert, key) in [
        ("rsa8192-cert.pem", "rsa8192-pkcs8.pem"),
        ("rsa8192-cert.pem", "rsa8192-pkcs1.pem"),
        ("rsa16384-cert.pem", "rsa16384-pkcs8.pem"),
    ] {
        assert_eq!(run(&big_rsa_set("ca.pem", cert, key)), vec![], "{key}");
    }
    let swapped = big_rsa_set("ca.pem", "rsa16384-cert.pem", "rsa8192-pkcs8.pem");
    assert_one(
        &run(&swapped),
        Severity::Error,
        Role::ServerKey,
        "does not match",
    );
}

#[test]
fn certificates_from_large_rsa_cas() {
    let by_8192 = big_rsa_set(
        "rsa8192-ca.pem",
        "by-rsa8192-ca-cert.pem",
        "by-rsa8192-ca-key.pem",
    );
    assert_eq!(run(&by_8192), vec![]);
    // Signatures of RSA keys over 8192 bits cannot be verified here: say so, rather than
    // claim the certificate is not signed by its CA.
    let by_16384 = big_rsa_set(
        "rsa16384-ca.pem",
        "by-rsa16384-ca-cert.pem",
        "by-rsa16384-ca-key.pem",
    );
    assert_one(
        &run(&by_16384),
        Severity::Warning,
        Role::ServerCert,
        "cannot verify its signature",
    );
    assert!(run(&by_16384)[0].message.contains("16384-bit RSA"));
}

// ---- chain ----

#[test]
fn wrong_ca() {
    let ca = Ca::new("Test CA");
    let other = Ca::new("Other CA");
    let set = host_certs(
        &ca.cert_pem,
        &other.issue(&LeafSpec::server(HOST)),
        &ca.issue(&LeafSpec::client(HOST)),
    );
    let findings = run(&set);
    assert_one(
        &findings,
        Severity::Error,
        Role::ServerCert,
        "is not signed by any CA in",
    );
    let line = findings[0].to_string();
    assert!(
        line.contains(&path(Role::Ca).display().to_string()),
        "{line}"
    );
    assert!(line.contains("CN=Other CA"), "{line}");
}

#[test]
fn rekeyed_ca_with_same_name_is_explained() {
    let old = Ca::new("Test CA");
    let new = Ca::new("Test CA");
    let set = host_certs(
        &new.cert_pem,
        &new.issue(&LeafSpec::server(HOST)),
        &old.issue(&LeafSpec::client(HOST)),
    );
    assert_one(
        &run(&set),
        Severity::Error,
        Role::ClientCert,
        "signature does not verify",
    );
}

#[test]
fn bundle_with_two_cas_where_leaf_chains_to_the_second() {
    let old = Ca::new("Old CA");
    let new = Ca::new("New CA");
    let bundle = format!("{}{}", old.cert_pem, new.cert_pem);
    let set = host_certs(
        &bundle,
        &new.issue(&LeafSpec::server(HOST)),
        &new.issue(&LeafSpec::client(HOST)),
    );
    assert_eq!(run(&set), vec![]);
}

// ---- identity ----

#[test]
fn san_missing_the_host() {
    let ca = Ca::new("Test CA");
    let spec = LeafSpec {
        dns: vec!["compute2.example.com".into()],
        ips: vec!["10.0.0.12".parse().unwrap()],
        ..LeafSpec::server(HOST)
    };
    let findings = run(&set_with_server(&ca, &spec));
    assert_one(
        &findings,
        Severity::Error,
        Role::ServerCert,
        "does not cover",
    );
    let line = findings[0].to_string();
    assert!(
        line.contains("compute1.example.com") && line.contains("10.0.0.11"),
        "{line}"
    );
}

#[test]
fn ip_san_alone_matches_address_and_warns_about_name() {
    let ca = Ca::new("Test CA");
    let spec = LeafSpec {
        dns: Vec::new(),
        ..LeafSpec::server(HOST)
    };
    assert_one(
        &run(&set_with_server(&ca, &spec)),
        Severity::Warning,
        Role::ServerCert,
        "does not cover migration_hostname 'compute1.example.com'",
    );
}

#[test]
fn ip_san_matches_when_only_the_address_is_known() {
    let ca = Ca::new("Test CA");
    let spec = LeafSpec {
        dns: Vec::new(),
        ..LeafSpec::server(HOST)
    };
    let mut set = set_with_server(&ca, &spec);
    set.migration_hostname = None;
    assert_eq!(run(&set), vec![]);
}

#[test]
fn dns_san_alone_warns_about_address() {
    let ca = Ca::new("Test CA");
    let spec = LeafSpec {
        ips: Vec::new(),
        ..LeafSpec::server(HOST)
    };
    assert_one(
        &run(&set_with_server(&ca, &spec)),
        Severity::Warning,
        Role::ServerCert,
        "does not cover migration address '10.0.0.11'",
    );
}

#[test]
fn dns_san_matches_case_insensitively_and_by_wildcard() {
    let ca = Ca::new("Test CA");
    for dns in ["COMPUTE1.Example.Com", "*.example.com"] {
        let spec = LeafSpec {
            dns: vec![dns.into()],
            ..LeafSpec::server(HOST)
        };
        assert_eq!(run(&set_with_server(&ca, &spec)), vec![], "SAN {dns}");
    }
}

#[test]
fn subject_cn_is_used_when_there_is_no_san() {
    let ca = Ca::new("Test CA");
    let spec = LeafSpec {
        cn: "compute1.example.com".into(),
        dns: Vec::new(),
        ips: Vec::new(),
        ..LeafSpec::server(HOST)
    };
    let mut set = set_with_server(&ca, &spec);
    set.migration_address = None;
    assert_eq!(run(&set), vec![]);
}

#[test]
fn migration_address_that_is_not_an_ip_is_reported() {
    let (_, mut set) = good_set();
    set.migration_address = Some("compute1-mig".into());
    assert_one(
        &run(&set),
        Severity::Error,
        Role::ServerCert,
        "is not an IP address",
    );
}

// ---- purposes and constraints ----

#[test]
fn server_cert_without_server_auth() {
    let ca = Ca::new("Test CA");
    let spec = LeafSpec {
        eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
        ..LeafSpec::server(HOST)
    };
    assert_one(
        &run(&set_with_server(&ca, &spec)),
        Severity::Error,
        Role::ServerCert,
        "lacks serverAuth",
    );
}

#[test]
fn client_cert_without_client_auth() {
    let ca = Ca::new("Test CA");
    let spec = LeafSpec {
        eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
        ..LeafSpec::client(HOST)
    };
    assert_one(
        &run(&set_with_client(&ca, &spec)),
        Severity::Error,
        Role::ClientCert,
        "lacks clientAuth",
    );
}

#[test]
fn no_eku_at_all_is_fine() {
    let ca = Ca::new("Test CA");
    let spec = LeafSpec {
        eku: Vec::new(),
        ..LeafSpec::server(HOST)
    };
    assert_eq!(run(&set_with_server(&ca, &spec)), vec![]);
}

#[test]
fn critical_key_usage_without_key_encipherment() {
    let ca = Ca::new("Test CA");
    let spec = LeafSpec {
        key_usages: vec![KeyUsagePurpose::DigitalSignature],
        ..LeafSpec::client(HOST)
    };
    assert_one(
        &run(&set_with_client(&ca, &spec)),
        Severity::Error,
        Role::ClientCert,
        "keyUsage lacks keyEncipherment",
    );
}

#[test]
fn leaf_that_is_a_ca() {
    let ca = Ca::new("Test CA");
    let spec = LeafSpec {
        is_ca: IsCa::Ca(rcgen::BasicConstraints::Unconstrained),
        ..LeafSpec::server(HOST)
    };
    assert_one(
        &run(&set_with_server(&ca, &spec)),
        Severity::Error,
        Role::ServerCert,
        "is a CA certificate",
    );
}

#[test]
fn ca_without_basic_constraints() {
    let ca = Ca::build("Not A CA", None, |p| p.is_ca = IsCa::NoCa);
    let set = set_with_server(&ca, &LeafSpec::server(HOST));
    assert_one(
        &run(&set),
        Severity::Error,
        Role::Ca,
        "is not a CA: no basicConstraints",
    );
}

#[test]
fn ca_with_ca_false() {
    let ca = Ca::build("Not A CA", None, |p| p.is_ca = IsCa::ExplicitNoCa);
    let set = set_with_server(&ca, &LeafSpec::server(HOST));
    assert_one(&run(&set), Severity::Error, Role::Ca, "CA=FALSE");
}

#[test]
fn ca_key_usage_without_cert_sign() {
    let ca = Ca::build("Test CA", None, |p| {
        p.key_usages = vec![KeyUsagePurpose::CrlSign]
    });
    let set = set_with_server(&ca, &LeafSpec::server(HOST));
    assert_one(
        &run(&set),
        Severity::Error,
        Role::Ca,
        "keyUsage lacks keyCertSign",
    );
}

#[test]
fn too_many_cas_in_bundle() {
    let ca = Ca::new("Test CA");
    let bundle = ca.cert_pem.repeat(17);
    let set = host_certs(
        &bundle,
        &ca.issue(&LeafSpec::server(HOST)),
        &ca.issue(&LeafSpec::client(HOST)),
    );
    assert_one(
        &run(&set),
        Severity::Error,
        Role::Ca,
        "libvirt loads at most 16",
    );
}

// ---- validity ----

#[test]
fn expired_server_cert() {
    let ca = Ca::new("Test CA");
    let spec = LeafSpec {
        not_before: now() - Duration::days(400),
        not_after: now() - Duration::days(5),
        ..LeafSpec::server(HOST)
    };
    assert_one(
        &run(&set_with_server(&ca, &spec)),
        Severity::Error,
        Role::ServerCert,
        "expired on",
    );
}

#[test]
fn not_yet_valid_client_cert() {
    let ca = Ca::new("Test CA");
    let spec = LeafSpec {
        not_before: now() + Duration::days(2),
        ..LeafSpec::client(HOST)
    };
    assert_one(
        &run(&set_with_client(&ca, &spec)),
        Severity::Error,
        Role::ClientCert,
        "is not valid yet",
    );
}

#[test]
fn expiring_soon_is_a_warning() {
    let ca = Ca::new("Test CA");
    let spec = LeafSpec {
        not_after: now() + Duration::days(10) + Duration::hours(1),
        ..LeafSpec::server(HOST)
    };
    let set = set_with_server(&ca, &spec);
    assert_one(
        &run(&set),
        Severity::Warning,
        Role::ServerCert,
        "expires soon: in 10 days",
    );
    assert_eq!(validate_host(&set, now(), 5), vec![]);
}

#[test]
fn expired_ca() {
    let ca = Ca::build("Old CA", None, |p| {
        p.not_before = now() - Duration::days(800);
        p.not_after = now() - Duration::days(1);
    });
    let set = set_with_server(&ca, &LeafSpec::server(HOST));
    assert_one(&run(&set), Severity::Error, Role::Ca, "expired on");
}

#[test]
fn leaf_outliving_its_ca_is_a_warning_naming_both_dates() {
    // The other leaf of each set ends after 365 days, within the CA's 400.
    let ca = Ca::build("Short CA", None, |p| {
        p.not_after = now() + Duration::days(400);
    });
    let ca_end = checker::format_time(now() + Duration::days(400));
    for (kind, spec) in [
        (Role::ServerCert, LeafSpec::server(HOST)),
        (Role::ClientCert, LeafSpec::client(HOST)),
    ] {
        let spec = LeafSpec {
            not_after: now() + Duration::days(500),
            ..spec
        };
        let set = if kind == Role::ServerCert {
            set_with_server(&ca, &spec)
        } else {
            set_with_client(&ca, &spec)
        };
        let findings = run(&set);
        assert_one(&findings, Severity::Warning, kind, "outlives its CA");
        let line = findings[0].to_string();
        let leaf_end = checker::format_time(now() + Duration::days(500));
        assert!(line.contains(&leaf_end) && line.contains(&ca_end), "{line}");
        assert!(line.contains("CN=Short CA"), "{line}");
        assert!(
            line.contains(&path(Role::Ca).display().to_string()),
            "{line}"
        );
    }
}

#[test]
fn leaf_ending_with_its_ca_or_covered_by_a_renewed_ca_is_fine() {
    let ca = Ca::build("Test CA", None, |p| {
        p.not_after = now() + Duration::days(365);
    });
    assert_eq!(run(&set_with_server(&ca, &LeafSpec::server(HOST))), vec![]);

    // The same CA renewed (same name and key, later end) beside the old one in the bundle.
    let key = fixture("ec-p256-sec1.pem");
    let old = Ca::build("Test CA", Some(&key), |p| {
        p.not_after = now() + Duration::days(100);
    });
    let renewed = Ca::build("Test CA", Some(&key), |_| {});
    let set = host_certs(
        &format!("{}{}", old.cert_pem, renewed.cert_pem),
        &old.issue(&LeafSpec::server(HOST)),
        &old.issue(&LeafSpec::client(HOST)),
    );
    assert_eq!(run(&set), vec![]);
}

// ---- unreadable files and reporting everything ----

#[test]
fn garbage_and_empty_files_are_named() {
    let (_, mut set) = good_set();
    set.ca = file(Role::Ca, "");
    set.server_cert = file(Role::ServerCert, "not a certificate\n");
    set.server_key = file(
        Role::ServerKey,
        "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
    );
    set.client_cert = file(Role::ClientCert, &fixture("ec-p256-sec1.pem"));
    let findings = run(&set);
    assert_eq!(findings.len(), 4, "{findings:#?}");
    assert_finding(&findings[0], Severity::Error, Role::Ca, "file is empty");
    assert_finding(
        &findings[1],
        Severity::Error,
        Role::ServerCert,
        "no certificate found",
    );
    assert_finding(
        &findings[2],
        Severity::Error,
        Role::ServerKey,
        "invalid PEM",
    );
    assert_finding(
        &findings[3],
        Severity::Error,
        Role::ClientCert,
        "unexpected PEM block 'EC PRIVATE KEY'",
    );
}

#[test]
fn extra_certificates_in_leaf_file_are_a_warning() {
    let ca = Ca::new("Test CA");
    let mut set = set_with_server(&ca, &LeafSpec::server(HOST));
    let server = set.server_cert.take().unwrap();
    let doubled = [server.bytes.as_slice(), ca.cert_pem.as_bytes()].concat();
    set.server_cert = Some(CertFile::new(server.path, doubled));
    assert_one(
        &run(&set),
        Severity::Warning,
        Role::ServerCert,
        "holds 2 certificates",
    );
}

#[test]
fn all_problems_are_reported_not_just_the_first() {
    let ca = Ca::build("Not A CA", None, |p| p.is_ca = IsCa::NoCa);
    let other = Ca::new("Other CA");
    let server = LeafSpec {
        eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
        not_after: now() - Duration::days(1),
        not_before: now() - Duration::days(100),
        ..LeafSpec::server(HOST)
    };
    let mut set = host_certs(
        &ca.cert_pem,
        &ca.issue(&server),
        &other.issue(&LeafSpec::client(HOST)),
    );
    set.client_key = file(Role::ClientKey, &fixture("ec-p384-sec1.pem"));
    let findings = run(&set);
    assert!(
        has(&findings, Severity::Error, Role::Ca, "is not a CA"),
        "{findings:#?}"
    );
    assert!(
        has(&findings, Severity::Error, Role::ServerCert, "expired on"),
        "{findings:#?}"
    );
    assert!(
        has(
            &findings,
            Severity::Error,
            Role::ServerCert,
            "lacks serverAuth"
        ),
        "{findings:#?}"
    );
    assert!(
        has(
            &findings,
            Severity::Error,
            Role::ClientCert,
            "not signed by any CA"
        ),
        "{findings:#?}"
    );
    assert!(
        has(
            &findings,
            Severity::Error,
            Role::ClientKey,
            "private key is ECDSA P-384"
        ),
        "{findings:#?}"
    );
    assert_eq!(findings.len(), 5, "{findings:#?}");
}

#[test]
fn kolla_file_helpers() {
    let mut set = HostCerts::new(HOST);
    for kind in Role::ALL {
        set.set_file(kind, CertFile::new(path(kind), Vec::new()));
        assert_eq!(set.file(kind).unwrap().path, path(kind));
    }
    assert!(Role::ServerKey.is_private_key() && !Role::Ca.is_private_key());
}

// ---- hostile certificate text ----

/// Right-to-left override, NUL, an escape sequence and a forged second line.
const HOSTILE: &str = "evil\u{202e}gpj.exe\0\x1b[2J\nCN=forged";

/// No character that could move the cursor, hide or reorder text, or start a new line.
fn assert_terminal_safe(text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| {
            c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(bad.is_empty(), "raw {bad:?} in {text:?}");
}

#[test]
fn control_characters_from_certificates_are_escaped_in_findings() {
    let ca = Ca::new(&format!("CA {HOSTILE}"));
    let stranger = Ca::new(&format!("Other {HOSTILE}"));
    let server = LeafSpec {
        cn: HOSTILE.into(),
        dns: vec!["x\x1b[31m.example.com\n".into()],
        ips: Vec::new(),
        not_after: now() + Duration::days(5000),
        ..LeafSpec::server(HOST)
    };
    let set = host_certs(
        &ca.cert_pem,
        &ca.issue(&server),
        &stranger.issue(&LeafSpec::client(HOST)),
    );
    let findings = run(&set);
    // Server: names not covered, outlives the CA; client: signed by an unknown issuer.
    assert!(findings.len() >= 3, "{findings:#?}");
    for finding in &findings {
        assert_terminal_safe(&finding.message);
        let line = finding.to_string();
        assert_terminal_safe(&line);
        assert!(
            line.contains(r"evil\u{202e}gpj.exe\0\x1b[2J\nCN=forged"),
            "{line}"
        );
    }
}
