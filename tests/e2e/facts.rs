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
