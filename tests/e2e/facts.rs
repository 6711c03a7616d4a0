//! Issue 12, acceptance 2 and 3: the migration address and name come from the host's facts,
//! as Kolla takes them (the address of `migration_interface`, the nodename), not from
//! `ansible_host` and the inventory name.

use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use virtfleet_pki::{issue_pair, CertKind};
use virtfleet_suite::*;

const HOSTS: [&str; 2] = ["compute01", "compute02"];

fn accepts(address: Ipv4Addr, port: u16) -> bool {
    TcpStream::connect_timeout(&(address, port).into(), Duration::from_secs(2)).is_ok()
}

#[test]
fn libvirtd_binds_the_migration_interface_address_from_facts_not_ansible_host() {
    let lab = LabOptions::new(2).engine(test_engine()).migration_network();
    let fleet = Fleet::with(lab, TLS_SASL, true);
    let inventory = std::fs::read_to_string(fleet.lab.inventory()).unwrap();
    assert!(
        !inventory.contains("migration_interface_address") && !inventory.contains("198.18."),
        "the inventory names the interface only:\n{inventory}"
    );

    let out = fleet.ok(&["deploy"]);
    for name in HOSTS {
        let host = fleet.host(name);
        let migration = host.migration.as_ref().expect("a migration network");
        assert_ne!(migration.address, host.address);
        let conf = std::fs::read_to_string(host.kolla_path("nova-libvirt/libvirtd.conf")).unwrap();
        assert!(
            conf.contains(&format!("listen_addr = \"{}\"", migration.address)),
            "{name}: {conf}"
        );
        assert!(
            accepts(migration.address, 16514),
            "{name}: TLS on the migration address"
        );
        assert!(
            !accepts(host.address, 16514),
            "{name}: nothing listens on the SSH address"
        );
        let nova = std::fs::read_to_string(host.kolla_path("nova-compute/nova.conf")).unwrap();
        assert!(
            nova.contains(&format!("live_migration_inbound_addr = \"{name}\"")),
            "{name}: the nodename: {nova}"
        );
    }
    let peer = fleet.peer_virsh("compute01", "qemu+tls://compute02/system", true);
    assert!(
        peer.status.success(),
        "{}\n{}",
        describe(&out),
        describe(&peer)
    );

    // A run with nothing to do: the facts come in the probe's round trip, one remote
    // command per host in all.
    let before: Vec<usize> = HOSTS
        .iter()
        .map(|h| fleet.host(h).sessions_started())
        .collect();
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    for (name, before) in HOSTS.iter().zip(before) {
        assert_eq!(
            host_report(&report, name)["status"],
            "ok",
            "{}",
            describe(&out)
        );
        let after = fleet.host(name).sessions_started();
        assert_eq!(
            after - before,
            1,
            "{name}: remote commands in a noop deploy"
        );
    }

    // The certificates virtfleet issued carry the address the host's facts gave.
    let cert = std::fs::read(fleet.host_cert_dir("compute02").join("servercert.pem")).unwrap();
    let info = &virtfleet_pki::parse_certs(&cert).unwrap()[0];
    let migration = fleet.host("compute02").migration.as_ref().unwrap().address;
    assert!(
        info.ip_addresses.contains(&migration.into()),
        "{:?}",
        info.ip_addresses
    );
}

#[test]
fn kolla_certificates_naming_only_the_nodenames_deploy_without_migration_hostname() {
    let fleet = Fleet::new(2, TLS_SASL, false);
    // What `kolla-ansible certificates` leaves: one CA and one pair for every compute host,
    // its SAN the nodenames (DNS only), in the shared directory.
    let (ca, ca_key) = virtfleet_pki::init_ca("kolla root", 30).unwrap();
    let names: Vec<String> = HOSTS.iter().map(|h| h.to_string()).collect();
    let (server, server_key) =
        issue_pair(&ca, &ca_key, CertKind::Server, "libvirt", &names, &[], 30).unwrap();
    let (client, client_key) =
        issue_pair(&ca, &ca_key, CertKind::Client, "libvirt", &names, &[], 30).unwrap();
    let shared = fleet.configdir.path().join("config/nova/nova-libvirt");
    std::fs::create_dir_all(&shared).unwrap();
    for (file, text) in [
        ("cacert.pem", &ca),
        ("servercert.pem", &server),
        ("serverkey.pem", &server_key),
        ("clientcert.pem", &client),
        ("clientkey.pem", &client_key),
    ] {
        std::fs::write(shared.join(file), text).unwrap();
    }
    let globals = std::fs::read_to_string(fleet.configdir.path().join("globals.yml")).unwrap();
    assert!(!globals.contains("migration_hostname"));

    let out = fleet.ok(&["deploy"]);
    for from in HOSTS {
        for to in HOSTS.iter().filter(|h| **h != from) {
            let uri = format!("qemu+tls://{to}/system");
            let peer = fleet.peer_virsh(from, &uri, true);
            assert!(
                peer.status.success(),
                "{from} -> {to}: {}\n{}",
                describe(&out),
                describe(&peer)
            );
        }
    }
}

/// Issue 12, acceptance 4: an operator's `[libvirt] virt_type` in Kolla's per-host override
/// wins over virtfleet's value, through `deploy` and `reconfigure`.
#[test]
fn a_per_host_nova_conf_override_survives_deploy_and_reconfigure() {
    let fleet = Fleet::new(2, TLS_SASL, true);
    let overrides = fleet.configdir.path().join("config/nova/compute01");
    std::fs::create_dir_all(&overrides).unwrap();
    // The lab's inventory says qemu; the operator wants kvm on compute01 only.
    std::fs::write(
        overrides.join("nova.conf"),
        "[libvirt]\nvirt_type = kvm\ncpu_mode = {{ 'host-passthrough' }}\n",
    )
    .unwrap();
    let nova = |host: &str| {
        std::fs::read_to_string(fleet.host(host).kolla_path("nova-compute/nova.conf")).unwrap()
    };
    for command in ["deploy", "reconfigure"] {
        fleet.ok(&[command]);
        let ours = nova("compute01");
        assert!(ours.contains("virt_type = kvm\n"), "{command}: {ours}");
        assert!(!ours.contains("virt_type = qemu"), "{command}: {ours}");
        assert!(
            ours.contains("cpu_mode = host-passthrough\n"),
            "{command}: {ours}"
        );
        assert!(
            ours.contains("password = "),
            "Kolla's other lines stay: {ours}"
        );
        let other = nova("compute02");
        assert!(other.contains("virt_type = qemu\n"), "{command}: {other}");
    }
    // Nothing left to change: the override is applied, not fought over.
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["summary"]["changed"], 0, "{report}");
}

/// A host's facts are its own word: one that reports another host's name is refused before
/// anything changes (it would be checked against, or issued, that host's identity).
#[test]
fn a_host_reporting_another_hosts_name_is_refused() {
    let fleet = Fleet::new(2, TLS_SASL, true);
    fleet.sh("compute01", "hostname compute02");
    let out = fleet.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("host compute01: its migration_hostname \"compute02\" is host compute02's"),
        "{stderr}"
    );
    let out = fleet.run(&["certs", "issue"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let libvirtd = std::fs::read_to_string(
        fleet
            .host("compute02")
            .kolla_path("nova-libvirt/libvirtd.conf"),
    )
    .unwrap();
    assert!(
        libvirtd.contains("auth_tcp = \"none\""),
        "nothing changed: {libvirtd}"
    );
}
