//! A Kolla inventory whose SSH user is not root (`ansible_user=kolla`, `ansible_become=true`):
//! every remote command runs through passwordless sudo, on real sshd and sudo.

use virtfleet_suite::*;

/// Points the lab's inventory at `user`, with `ansible_become` set as given (or left to the
/// playbook's default).
fn log_in_as(fleet: &Fleet, user: &str, escalate: Option<bool>) {
    let path = fleet.lab.inventory();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut vars = format!("[compute:vars]\nansible_user={user}\n");
    if let Some(escalate) = escalate {
        vars.push_str(&format!("ansible_become={escalate}\n"));
    }
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("ansible_user=") && !l.starts_with("ansible_become="))
        .collect();
    let changed = (kept.join("\n") + "\n").replacen("[compute:vars]\n", &vars, 1);
    assert!(
        changed.contains(&vars),
        "the lab inventory has [compute:vars]"
    );
    std::fs::write(&path, changed).unwrap();
}

#[test]
fn a_sudo_user_deploys_tls_sasl_and_a_rerun_changes_nothing() {
    let fleet = Fleet::new(2, TLS_SASL, true);
    fleet.lab.add_user("vflab-kolla", true).unwrap();
    // sudo logs every command line it runs (whole: loglinelen=0) to a file of the lab's.
    let sudo_log = fleet.lab.dir().join("sudo.log");
    let rule = fleet.lab.dir().join("sudoers.d/vflab-log");
    std::fs::write(
        &rule,
        format!(
            "Defaults:vflab-kolla logfile={}, loglinelen=0\n",
            sudo_log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rule, std::os::unix::fs::PermissionsExt::from_mode(0o440)).unwrap();
    // As in a Kolla inventory: the user alone; the playbook escalates like Kolla's roles.
    log_in_as(&fleet, "vflab-kolla", None);

    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in ["compute01", "compute02"] {
        let r = host_report(&report, host);
        assert_eq!(r["status"], "changed", "{host}: {r}");
        assert_eq!(strings(&r["restarted"]), ["nova_libvirt", "nova_compute"]);
        // Written as root, as Kolla's become writes them, with Kolla's modes.
        let owners = fleet.sh(
            host,
            "stat -c '%U %a' /etc/kolla/nova-libvirt/serverkey.pem /etc/kolla/nova-compute/nova.conf",
        );
        assert_eq!(owners, "root 600\nroot 660\n", "{host}");
    }
    // The SASL user was created through sudo too: a peer gets in with credentials only.
    let with = fleet.peer_virsh("compute02", "qemu+tls://compute01/system", true);
    assert!(with.status.success(), "{}", describe(&with));
    let without = fleet.peer_virsh("compute02", "qemu+tls://compute01/system", false);
    assert!(!without.status.success());

    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["summary"]["ok"], 2, "{report}");
    // A rolling rotation through sudo: new server pairs, each host's gate passes (the reload
    // and the peer checks run through sudo too), and no backup of an old key is left.
    for host in ["compute01", "compute02"] {
        for name in [
            "servercert.pem",
            "serverkey.pem",
            "clientcert.pem",
            "clientkey.pem",
        ] {
            std::fs::remove_file(fleet.host_cert_dir(host).join(name)).unwrap();
        }
    }
    fleet.ok(&["certs", "issue"]);
    let (out, report) = fleet.run_report(&["rotate", "--serial", "1", "--yes"]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in ["compute01", "compute02"] {
        assert_eq!(host_report(&report, host)["status"], "changed", "{report}");
        let pushed = fleet.file_fingerprint(&fleet.host_cert_dir(host).join("servercert.pem"));
        assert_eq!(fleet.served_fingerprint(host), pushed, "{host}");
        let left = fleet.sh(host, "find /etc/kolla -name '*.virtfleet-backup*'");
        assert_eq!(left, "", "{host}");
    }

    // No script, path, hash or secret on any command line a local user could read in
    // /proc/<pid>/cmdline: every command virtfleet ran was `sh -s`, the script on stdin.
    let log = std::fs::read_to_string(&sudo_log).unwrap();
    let commands: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("COMMAND=").map(|(_, c)| c))
        .collect();
    assert!(commands.len() >= 8, "{log}");
    for command in &commands {
        assert!(command.ends_with(" -c 'sh -s'"), "{command}");
    }

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
    log_in_as(&fleet, "vflab-nosudo", Some(true));
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

    // ansible_become=false: the user's own rights do not reach /etc/kolla, and the host
    // fails saying so (not with every file "changed" and every container "missing").
    log_in_as(&fleet, "vflab-nosudo", Some(false));
    let (out, report) = fleet.run_report(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = host_report(&report, "compute01");
    let error = r["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("/etc/kolla/nova-libvirt")
            && error.contains("not writable for SSH user vflab-nosudo")
            && error.contains("ansible_become"),
        "{r}"
    );
}
