//! `virtfleet audit` (OSSN-0007): the day-0 lab is critical with the live proof; after a TLS
//! deploy nothing of severity medium or more is left (certificates included); weakenings
//! planted by hand (a setting, a readable key, a foreign CA) are found.

use virtfleet_suite::*;

#[test]
fn audit_finds_day_zero_critical_and_a_tls_deploy_clean() {
    let fleet = Fleet::new(2, TCP_SASL, true);
    // Day 0 as kolla-ansible leaves it: TCP, no authentication. libvirtd answers once it
    // has started (probing QEMU can take a while on a busy machine).
    for host in ["compute01", "compute02"] {
        let engine = fleet.host(host).engine.to_string();
        fleet.sh(
            host,
            &format!(
                "timeout 120 sh -c 'until {engine} exec nova_libvirt virsh -c qemu:///system \
                 version >/dev/null 2>&1; do sleep 1; done'"
            ),
        );
    }
    let (out, report) = fleet.run_report(&["audit"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    for host in ["compute01", "compute02"] {
        let found = findings(&report, host);
        for id in ["LIBVIRT-RPC-OPEN", "LIBVIRT-TCP-NOAUTH"] {
            assert!(
                found.contains(&(id.to_string(), "critical".to_string())),
                "{host}: {found:?}"
            );
        }
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("REMOTE_PROC_AUTH_LIST with \"none\""),
        "{stdout}"
    );

    // After deploying TLS + SASL: nothing of medium severity or more.
    fleet.write_globals(TLS_SASL);
    fleet.ok(&["deploy"]);
    let (out, report) = fleet.run_report(&["audit", "--fail-on", "medium"]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in ["compute01", "compute02"] {
        let found = findings(&report, host);
        assert!(found.iter().all(|(_, s)| s == "low"), "{host}: {found:?}");
    }

    // Weakenings planted by hand on one host are found, with their file (and line): a
    // setting, a private key every user can read, and a CA that is not the fleet's.
    fleet.sh(
        "compute02",
        "echo 'tls_no_verify_certificate = 1' >> /etc/kolla/nova-libvirt/libvirtd.conf && \
         chmod 0644 /etc/kolla/nova-libvirt/serverkey.pem",
    );
    let (foreign_ca, _) = virtfleet_pki::init_ca("not the fleet's", 30).unwrap();
    std::fs::write(
        fleet
            .host("compute02")
            .kolla_path("nova-libvirt/cacert.pem"),
        foreign_ca,
    )
    .unwrap();
    let (out, report) = fleet.run_report(&["audit"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let found = findings(&report, "compute02");
    for id in ["LIBVIRT-TLS-NOVERIFY", "KEY-READABLE", "CERT-CA-FOREIGN"] {
        assert!(
            found.contains(&(id.to_string(), "high".to_string())),
            "{id}: {found:?}"
        );
    }
    assert!(findings(&report, "compute01")
        .iter()
        .all(|(_, s)| s == "low"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("/etc/kolla/nova-libvirt/libvirtd.conf:")
            && stdout.contains("tls_no_verify_certificate")
            && stdout.contains("/etc/kolla/nova-libvirt/serverkey.pem: mode 0644"),
        "{stdout}"
    );
}

#[test]
fn ports_a_peer_cannot_or_should_not_reach_are_found() {
    let fleet = Fleet::new(2, TLS_SASL, true);
    fleet.ok(&["deploy"]);
    let address = fleet.host("compute02").libvirt_address().to_string();
    // A firewall dropping libvirt's TLS port and some of QEMU's migration ports, and
    // something answering on libvirt's TCP port although TLS is on.
    let _firewall = Firewall::drop(&address, &["16514", "49152:49155"]);
    let _listener = std::net::TcpListener::bind((address.as_str(), 16509)).unwrap();
    let (out, report) = fleet.run_report(&["audit"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let found = findings(&report, "compute02");
    for (id, severity) in [
        ("PORT-TLS-UNREACHABLE", "high"),
        ("PORT-MIGRATION-BLOCKED", "medium"),
        ("PORT-TCP-REACHABLE", "high"),
    ] {
        assert!(
            found.contains(&(id.to_string(), severity.to_string())),
            "{id}: {found:?}"
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("compute01 gets no answer from (a firewall drops it) libvirt's TLS port")
            && stdout.contains("4 of QEMU's migration ports 49152-49215 (49152-49155)"),
        "{stdout}"
    );
    // The other host, asked by compute02, is clean.
    assert!(
        findings(&report, "compute01")
            .iter()
            .all(|(id, _)| !id.starts_with("PORT-")),
        "{report}"
    );
}
