//! A Kolla inventory whose SSH user is not root (`ansible_user=kolla`, `ansible_become=true`):
//! every remote command runs through passwordless sudo, on real sshd and sudo.

use virtfleet_suite::*;

/// Points the lab's inventory at `user`, with `ansible_become` as `escalate`.
fn log_in_as(fleet: &Fleet, user: &str, escalate: bool) {
    let path = fleet.lab.inventory();
    let text = std::fs::read_to_string(&path).unwrap();
    let vars = format!("ansible_user={user}\nansible_become={escalate}\n");
    let changed = text.replacen("ansible_user=root\n", &vars, 1);
    assert_ne!(changed, text, "the lab inventory names its user");
    std::fs::write(&path, changed).unwrap();
}

#[test]
fn a_sudo_user_deploys_tls_sasl_and_a_rerun_changes_nothing() {
    let fleet = Fleet::new(2, TLS_SASL, true);
    fleet.lab.add_user("vflab-kolla", true).unwrap();
    log_in_as(&fleet, "vflab-kolla", true);

    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in ["compute01", "compute02"] {
        let r = host_report(&report, host);
        assert_eq!(r["status"], "changed", "{host}: {r}");
        assert_eq!(strings(&r["restarted"]), ["nova_libvirt", "nova_compute"]);
        // Written as root, as Kolla's become writes them.
        let owners = fleet.sh(
            host,
            "stat -c '%U %a' /etc/kolla/nova-libvirt/serverkey.pem /etc/kolla/nova-compute/nova.conf",
        );
        assert_eq!(owners, "root 600\nroot 600\n", "{host}");
    }
    // The SASL user was created through sudo too: a peer gets in with credentials only.
    let with = fleet.peer_virsh("compute02", "qemu+tls://compute01/system", true);
    assert!(with.status.success(), "{}", describe(&with));
    let without = fleet.peer_virsh("compute02", "qemu+tls://compute01/system", false);
    assert!(!without.status.success());

    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["summary"]["ok"], 2, "{report}");
    // Reading root-only files goes through sudo as well.
    let expiry = fleet.ok(&["certs", "expiry"]);
    let text = String::from_utf8_lossy(&expiry.stdout);
    for host in ["compute01", "compute02"] {
        let listed = |file: &str| {
            text.lines()
                .any(|l| l.starts_with(host) && l.contains(file))
        };
        assert!(
            listed("/etc/kolla/nova-libvirt/servercert.pem"),
            "{host}:\n{text}"
        );
    }
}

#[test]
fn without_a_sudo_rule_the_host_fails_naming_sudo_and_nothing_changes() {
    let fleet = Fleet::new(1, TCP_SASL, false);
    fleet.lab.add_user("vflab-nosudo", false).unwrap();
    log_in_as(&fleet, "vflab-nosudo", true);
    let before = fleet.sh("compute01", "sha256sum /etc/kolla/nova-libvirt/*");

    let (out, report) = fleet.run_report(&["deploy"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = host_report(&report, "compute01");
    assert_eq!(r["status"], "failed", "{r}");
    let error = r["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("sudo") && error.contains("password"),
        "{error}"
    );
    assert_eq!(
        fleet.sh("compute01", "sha256sum /etc/kolla/nova-libvirt/*"),
        before
    );
}
