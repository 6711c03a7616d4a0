//! Issue 5: the built-in CA's certificates work on real libvirt, and `certs expiry` reads what
//! hosts hold.

use virtfleet_suite::*;

#[test]
fn built_in_ca_certificates_pass_libvirts_own_checks() {
    let fleet = Fleet::new(3, TLS_SASL, true);
    let check = fleet.ok(&["certs", "check"]);
    let table = String::from_utf8_lossy(&check.stdout);
    assert!(table.contains("certs check: 3 hosts, 0 errors"), "{table}");
    fleet.ok(&["deploy"]);
    for host in ["compute01", "compute02", "compute03"] {
        let out = fleet.engine_sh(host, "exec nova_libvirt virt-pki-validate 2>&1");
        // libvirt's own validator finds every file where libvirtd and the client look.
        for found in [
            "Found CA certificate /etc/pki/CA/cacert.pem",
            "Found client certificate /etc/pki/libvirt/clientcert.pem",
            "Found server certificate /etc/pki/libvirt/servercert.pem",
        ] {
            assert!(out.contains(found), "{host}: {found:?} missing in:\n{out}");
        }
        assert!(!out.contains("Failed to find"), "{host}:\n{out}");
    }
    let peer = fleet.peer_virsh("compute03", "qemu+tls://compute02/system", true);
    assert!(peer.status.success(), "{}", describe(&peer));
}

#[test]
fn expiry_lists_every_hosts_deployed_certificates() {
    let fleet = Fleet::new(2, TLS_SASL, true);
    fleet.ok(&["deploy"]);
    let out = fleet.ok(&["certs", "expiry"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for host in ["compute01", "compute02"] {
        for file in [
            "/etc/kolla/nova-libvirt/cacert.pem",
            "/etc/kolla/nova-libvirt/servercert.pem",
            "/etc/kolla/nova-libvirt/clientcert.pem",
            "/etc/kolla/nova-compute/clientcert.pem",
        ] {
            let line = text
                .lines()
                .find(|l| l.starts_with(host) && l.contains(file))
                .unwrap_or_else(|| panic!("{host} {file} not listed:\n{text}"));
            // Leaf pairs are issued for 365 days, the CA for 3650.
            let days: i64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            let expected = if file.ends_with("cacert.pem") {
                3649
            } else {
                364
            };
            assert!((expected..=expected + 1).contains(&days), "{line}");
        }
    }
    assert!(text.contains("0 expired"), "{text}");
    // Sorted by expiry: the first data row is a leaf, the last a CA.
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("compute")).collect();
    assert!(
        rows.first().unwrap().contains("cert.pem") && !rows.first().unwrap().contains("cacert")
    );
    assert!(rows.last().unwrap().contains("cacert.pem"));
}

/// A host readdressed since its server certificate was issued gets a new one: `certs issue`
/// never calls a certificate up to date that peers would refuse for its name or address.
#[test]
fn issue_renews_a_server_certificate_that_no_longer_covers_the_hosts_address() {
    let lab = LabOptions::new(2).containers(Containers::StandIn);
    let fleet = Fleet::with(lab, TLS_SASL, true);
    let unchanged = fleet.ok(&["certs", "issue"]);
    let unchanged = String::from_utf8_lossy(&unchanged.stdout);
    assert!(
        unchanged.contains("0 hosts got new certificates"),
        "{unchanged}"
    );

    let host_vars = fleet.lab.dir().join("host_vars");
    std::fs::create_dir_all(&host_vars).unwrap();
    std::fs::write(
        host_vars.join("compute01.yml"),
        "migration_interface_address: 192.0.2.77\n",
    )
    .unwrap();
    let issued = fleet.ok(&["certs", "issue"]);
    let issued = String::from_utf8_lossy(&issued.stdout);
    assert!(
        issued.contains("compute01: issued 1 certificate(s)"),
        "{issued}"
    );
    assert!(!issued.contains("compute02:"), "{issued}");
    let pem = std::fs::read(fleet.host_cert_dir("compute01").join("servercert.pem")).unwrap();
    let cert = &virtfleet_pki::parse_certs(&pem).unwrap()[0];
    assert!(
        cert.ip_addresses.contains(&"192.0.2.77".parse().unwrap()),
        "{:?}",
        cert.ip_addresses
    );
}
