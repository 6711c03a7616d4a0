//! Issue 3, acceptance 1: a 3-host TLS + SASL deploy from the day-0 state, proven by peers.

use virtfleet_suite::*;

#[test]
fn tls_sasl_deploy_converges_and_a_rerun_changes_nothing() {
    let fleet = Fleet::new(3, TLS_SASL, true);
    let before: Vec<String> = ["compute01", "compute02", "compute03"]
        .iter()
        .map(|h| fleet.started_at(h, "nova_compute"))
        .collect();

    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["command"], "deploy");
    assert_eq!(report["summary"]["changed"], 3);
    for (i, host) in ["compute01", "compute02", "compute03"].iter().enumerate() {
        let r = host_report(&report, host);
        assert_eq!(r["status"], "changed", "{host}: {r}");
        assert_eq!(strings(&r["restarted"]), ["nova_libvirt", "nova_compute"]);
        assert!(strings(&r["changed_files"])
            .contains(&"/etc/kolla/nova-libvirt/servercert.pem".to_string()));
        assert_ne!(
            before[i],
            fleet.started_at(host, "nova_compute"),
            "{host}: nova_compute not restarted"
        );
    }

    // A peer with the client pair and SASL credentials gets in over TLS ...
    let with = fleet.peer_virsh("compute02", "qemu+tls://compute01/system", true);
    assert!(with.status.success(), "{}", describe(&with));
    // ... without SASL credentials it does not, and plain TCP is closed.
    let without = fleet.peer_virsh("compute02", "qemu+tls://compute01/system", false);
    assert!(
        !without.status.success(),
        "TLS without SASL credentials was accepted"
    );
    let tcp = fleet.peer_virsh("compute03", "qemu+tcp://compute01/system", true);
    assert!(!tcp.status.success(), "qemu+tcp still open");
    // The files landed with mode 0600 and the server serves the pushed certificate.
    let modes = fleet.sh("compute01", "stat -c '%a %n' /etc/kolla/nova-libvirt/serverkey.pem /etc/kolla/nova-compute/clientkey.pem");
    assert!(modes.lines().all(|l| l.starts_with("600 ")), "{modes}");
    assert_eq!(
        fleet.served_fingerprint("compute01"),
        fleet.file_fingerprint(&fleet.host_cert_dir("compute01").join("servercert.pem"))
    );

    let started: Vec<String> = ["compute01", "compute02", "compute03"]
        .iter()
        .map(|h| fleet.started_at(h, "nova_libvirt"))
        .collect();
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["summary"]["ok"], 3, "{report}");
    for (i, host) in ["compute01", "compute02", "compute03"].iter().enumerate() {
        let r = host_report(&report, host);
        assert!(
            strings(&r["changed_files"]).is_empty() && strings(&r["restarted"]).is_empty(),
            "{r}"
        );
        assert_eq!(
            started[i],
            fleet.started_at(host, "nova_libvirt"),
            "{host} restarted on a no-op"
        );
    }
}

#[test]
fn tcp_with_sasl_needs_credentials() {
    let fleet = Fleet::new(2, TCP_SASL, false);
    fleet.ok(&["deploy"]);
    let with = fleet.peer_virsh("compute02", "qemu+tcp://compute01/system", true);
    assert!(with.status.success(), "{}", describe(&with));
    let without = fleet.peer_virsh("compute02", "qemu+tcp://compute01/system", false);
    assert!(
        !without.status.success(),
        "qemu+tcp without SASL credentials was accepted"
    );
}
