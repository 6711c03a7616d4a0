//! Certificate findings: what a host holds for libvirt's TLS, checked as `certs check` checks
//! the files before a deploy (validity, SAN, chain, key match), plus what only the host can
//! say: who may read its private keys, and whether its CA is the fleet's.

use std::collections::BTreeMap;

use std::time::SystemTime;
use virtfleet_pki::{parse_certs, validate_host, CertFile, HostCerts, Role};

use crate::Severity;

/// One certificate or key file as found on the host.
pub struct SeenFile {
    pub path: String,
    pub content: Vec<u8>,
    /// Permission bits.
    pub permissions: u32,
    pub group: String,
}

/// The host's TLS files (the first existing of each role's paths) and what to check them
/// against.
pub struct CertsSeen<'a> {
    pub host: &'a str,
    pub files: BTreeMap<Role, SeenFile>,
    /// The name peers dial (`migration_hostname`) and the address they reach.
    pub server_name: Option<&'a str>,
    pub address: Option<&'a str>,
    /// The CA certificate the operator's config directory holds, if any.
    pub fleet_ca: Option<&'a [u8]>,
    pub now: SystemTime,
    /// Expiring within this many days is a finding.
    pub warn_days: u32,
    /// A group meant to read the keys besides root (QEMU's, for its own pairs).
    pub key_group: Option<&'a str>,
}

pub(crate) fn findings(seen: &CertsSeen, add: &mut dyn FnMut(&'static str, Severity, String)) {
    if seen.files.is_empty() {
        return;
    }
    for file in seen.files.values() {
        // Whoever may write a CA file trusts a CA of their own everywhere it is read; a leaf
        // or key, they replace.
        let mode = file.permissions;
        if mode & 0o022 != 0 {
            add(
                "CERT-FILE-WRITABLE",
                Severity::High,
                format!(
                    "{}: mode {mode:04o}: writable by group or others",
                    file.path
                ),
            );
        }
    }
    for (role, file) in &seen.files {
        if !role.is_private_key() {
            continue;
        }
        let mode = file.permissions;
        if mode & 0o004 != 0 {
            add(
                "KEY-READABLE",
                Severity::High,
                format!("{}: mode {mode:04o}: readable by every user", file.path),
            );
        } else if mode & 0o040 != 0
            && file.group != "root"
            && Some(file.group.as_str()) != seen.key_group
        {
            add(
                "KEY-READABLE",
                Severity::Medium,
                format!(
                    "{}: mode {mode:04o}: readable by group {}",
                    file.path, file.group
                ),
            );
        }
    }
    let mut host = HostCerts::new(seen.host);
    host.migration_hostname = seen.server_name.map(str::to_string);
    host.migration_address = seen.address.map(str::to_string);
    for (role, file) in &seen.files {
        host.set_file(*role, CertFile::new(&file.path, file.content.clone()));
    }
    for f in validate_host(&host, seen.now, seen.warn_days) {
        let (id, severity) = if f.is_error() {
            ("CERT-INVALID", Severity::High)
        } else {
            ("CERT-WARNING", Severity::Medium)
        };
        add(id, severity, format!("{}: {}", f.path.display(), f.message));
    }
    if let (Some(fleet), Some(bundle)) = (seen.fleet_ca, seen.files.get(&Role::Ca)) {
        let fingerprints = |pem: &[u8]| -> Vec<String> {
            parse_certs(pem)
                .map(|certs| certs.into_iter().map(|c| c.fingerprint_sha256).collect())
                .unwrap_or_default()
        };
        let held = fingerprints(&bundle.content);
        let ours = fingerprints(fleet);
        if !ours.is_empty() && !held.is_empty() && !ours.iter().any(|f| held.contains(f)) {
            add(
                "CERT-CA-FOREIGN",
                Severity::High,
                format!(
                    "{}: does not hold the config directory's CA ({})",
                    bundle.path, ours[0]
                ),
            );
        }
    }
}

/// A set (QEMU's own pairs) whose client certificate has the subject of the main set's, the
/// libvirt client every peer lets in: whoever may read the set's key (QEMU's group, so a
/// guest that takes over its QEMU) reaches the peers' libvirtd with only SASL in the way.
pub(crate) fn shared_subject(
    name: &str,
    main: &CertsSeen,
    set: &CertsSeen,
    add: &mut dyn FnMut(&'static str, Severity, String),
) {
    let subject = |file: &SeenFile| virtfleet_pki::libvirt_dn(&file.content).ok();
    let (Some(main_file), Some(file)) = (
        main.files.get(&Role::ClientCert),
        set.files.get(&Role::ClientCert),
    ) else {
        return;
    };
    let (Some(main_dn), Some(set_dn)) = (subject(main_file), subject(file)) else {
        return;
    };
    if main_dn == set_dn {
        add(
            "CERT-SET-SUBJECT-SHARED",
            Severity::Medium,
            format!(
                "{}: the {name} client certificate has the subject of libvirt's ({set_dn}), \
                 which peers let in; give {name} a pair of its own (`virtfleet certs issue`)",
                file.path
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtfleet_pki::{init_ca, issue_pair, CertKind};

    /// A host's five files from `ca`, valid `days`, server SAN `name`; keys 0600 root.
    fn files(ca: &(String, String), name: &str, days: u32) -> BTreeMap<Role, SeenFile> {
        let seen = |path: &str, pem: &str, permissions| SeenFile {
            path: path.into(),
            content: pem.as_bytes().to_vec(),
            permissions,
            group: "root".into(),
        };
        let pair =
            |kind| issue_pair(&ca.0, &ca.1, kind, name, &[name.to_string()], &[], days).unwrap();
        let (server, client) = (pair(CertKind::Server), pair(CertKind::Client));
        BTreeMap::from([
            (Role::Ca, seen("/k/cacert.pem", &ca.0, 0o600)),
            (
                Role::ServerCert,
                seen("/k/servercert.pem", &server.0, 0o600),
            ),
            (Role::ServerKey, seen("/k/serverkey.pem", &server.1, 0o600)),
            (
                Role::ClientCert,
                seen("/k/clientcert.pem", &client.0, 0o600),
            ),
            (Role::ClientKey, seen("/k/clientkey.pem", &client.1, 0o600)),
        ])
    }

    fn ids(
        files: BTreeMap<Role, SeenFile>,
        fleet_ca: Option<&str>,
    ) -> Vec<(&'static str, Severity, String)> {
        let seen = CertsSeen {
            host: "compute01",
            files,
            server_name: Some("compute01"),
            address: None,
            fleet_ca: fleet_ca.map(str::as_bytes),
            now: SystemTime::now(),
            warn_days: 30,
            key_group: None,
        };
        let mut found = Vec::new();
        findings(&seen, &mut |id, severity, evidence| {
            found.push((id, severity, evidence))
        });
        found
    }

    #[test]
    fn a_set_for_qemu_is_checked_its_group_may_read_its_keys_and_libvirts_subject_is_told() {
        let ca = init_ca("fleet", 3650).unwrap();
        let seen = |files, key_group| CertsSeen {
            host: "compute01",
            files,
            server_name: Some("compute01"),
            address: None,
            fleet_ca: Some(ca.0.as_bytes()),
            now: SystemTime::now(),
            warn_days: 30,
            key_group,
        };
        let main = seen(files(&ca, "compute01", 365), None);
        let audit = |set: BTreeMap<Role, SeenFile>, key_group| {
            let files = BTreeMap::new();
            let sets = [("qemu", seen(set, key_group))];
            crate::audit(&crate::Observed {
                files: &files,
                certs: Some(&main),
                cert_sets: &sets,
                tcp_probe: None,
            })
            .into_iter()
            .map(|f| (f.id, f.severity))
            .filter(|(id, _)| *id != "LIBVIRT-CONF-MISSING")
            .collect::<Vec<_>>()
        };
        // QEMU's own pair (another subject), keys 0640 for QEMU's group: nothing to say.
        let own = || {
            let mut set = BTreeMap::new();
            let dns = ["compute01".to_string()];
            for (kind, cert, key) in [
                (CertKind::Server, Role::ServerCert, Role::ServerKey),
                (CertKind::Client, Role::ClientCert, Role::ClientKey),
            ] {
                let request = virtfleet_pki::LeafRequest {
                    kind,
                    host: "compute01",
                    unit: Some("qemu"),
                    dns_names: &dns,
                    ips: &[],
                    days: 365,
                };
                let (c, k) = virtfleet_pki::issue_leaf(&ca.0, &ca.1, &request).unwrap();
                let file = |path: &str, pem: String| SeenFile {
                    path: path.into(),
                    content: pem.into_bytes(),
                    permissions: 0o640,
                    group: "libvirt-qemu".into(),
                };
                set.insert(cert, file(&format!("/etc/pki/qemu/{cert:?}.pem"), c));
                set.insert(key, file(&format!("/etc/pki/qemu/{key:?}.pem"), k));
            }
            set
        };
        assert_eq!(audit(own(), Some("libvirt-qemu")), []);
        // Anyone but root writing one is told.
        let mut writable = own();
        writable.get_mut(&Role::ClientCert).unwrap().permissions = 0o660;
        assert_eq!(
            audit(writable, Some("libvirt-qemu")),
            [("CERT-FILE-WRITABLE", Severity::High)]
        );
        // Another group reading them is told, as for libvirt's keys.
        assert_eq!(
            audit(own(), Some("kvm")),
            [
                ("KEY-READABLE", Severity::Medium),
                ("KEY-READABLE", Severity::Medium)
            ]
        );
        // libvirt's own pairs given to QEMU: the client subject every peer lets in.
        assert_eq!(
            audit(files(&ca, "compute01", 365), None),
            [("CERT-SET-SUBJECT-SHARED", Severity::Medium)]
        );
        // A pair of another host's names: checked as the main set is.
        let mut other = own();
        other.extend(
            files(&ca, "compute09", 365)
                .into_iter()
                .filter(|(r, _)| *r == Role::ServerCert || *r == Role::ServerKey),
        );
        assert!(audit(other, Some("libvirt-qemu")).contains(&("CERT-INVALID", Severity::High)));
    }

    #[test]
    fn a_sound_set_from_the_fleet_ca_has_no_finding() {
        let ca = init_ca("fleet", 3650).unwrap();
        assert_eq!(ids(files(&ca, "compute01", 365), Some(&ca.0)), []);
        assert_eq!(
            ids(BTreeMap::new(), Some(&ca.0)),
            [],
            "no TLS files: nothing to say"
        );
    }

    #[test]
    fn readable_keys_foreign_cas_wrong_names_and_expiry_are_found() {
        let ca = init_ca("fleet", 3650).unwrap();
        let mut set = files(&ca, "compute01", 365);
        set.get_mut(&Role::ServerKey).unwrap().permissions = 0o644;
        let client_key = set.get_mut(&Role::ClientKey).unwrap();
        client_key.permissions = 0o640;
        client_key.group = "nova".into();
        let found = ids(set, Some(&ca.0));
        assert!(
            found.contains(&(
                "KEY-READABLE",
                Severity::High,
                "/k/serverkey.pem: mode 0644: readable by every user".into()
            )),
            "{found:?}"
        );
        assert!(
            found.contains(&(
                "KEY-READABLE",
                Severity::Medium,
                "/k/clientkey.pem: mode 0640: readable by group nova".into()
            )),
            "{found:?}"
        );

        let other = init_ca("someone else", 3650).unwrap();
        let found = ids(files(&other, "compute01", 365), Some(&ca.0));
        let foreign: Vec<_> = found.iter().filter(|f| f.0 == "CERT-CA-FOREIGN").collect();
        assert_eq!(foreign.len(), 1, "{found:?}");
        assert!(
            foreign[0].2.starts_with("/k/cacert.pem: does not hold"),
            "{found:?}"
        );

        let found = ids(files(&ca, "elsewhere", 365), None);
        assert!(
            found
                .iter()
                .any(|f| f.0 == "CERT-INVALID" && f.2.contains("/k/servercert.pem")),
            "{found:?}"
        );

        let found = ids(files(&ca, "compute01", 10), None);
        assert!(
            found
                .iter()
                .any(|f| f.0 == "CERT-WARNING" && f.1 == Severity::Medium),
            "{found:?}"
        );
    }
}
