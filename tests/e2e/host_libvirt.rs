//! Plain KVM hosts: libvirtd under systemd with socket activation (`virtfleet-lab up
//! --host-libvirt`), configured by playbooks/libvirt-host.yml.

use std::path::Path;

use virtfleet_suite::*;

const GLOBALS: &str = "libvirt_tls: \"yes\"\n";

/// The keys the playbook sets in libvirtd.conf: every other line is the host's.
const OWNED: [&str; 12] = [
    "listen_addr",
    "listen_tls",
    "listen_tcp",
    "tls_port",
    "key_file",
    "cert_file",
    "ca_file",
    "auth_tls",
    "auth_tcp",
    "tls_no_verify_certificate",
    "tls_allowed_dn_list",
    "sasl_allowed_username_list",
];

fn playbook() -> String {
    shipped("libvirt-host.yml")
}

fn shipped(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("playbooks")
        .join(name)
        .display()
        .to_string()
}

/// The host's file without the settings the playbook owns.
fn not_owned(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| {
            let key = line.split(['=', ' ']).next().unwrap_or_default();
            !OWNED.contains(&key)
        })
        .collect()
}

/// `virsh -c URI version` as root on `from` (its /etc/pki client pair and, unless
/// `credentials` is false, /etc/libvirt/auth.conf).
fn virsh(fleet: &Fleet, from: &str, uri: &str, credentials: bool) -> std::process::Output {
    let auth = if credentials {
        ""
    } else {
        "LIBVIRT_AUTH_FILE=/nonexistent "
    };
    let script = format!("{auth}timeout 20 virsh -c {uri} version </dev/null");
    fleet.lab.ssh(fleet.host(from), &script)
}

#[test]
fn a_plain_systemd_host_goes_from_tcp_without_auth_to_tls_and_sasl_keeping_its_own_file() {
    let fleet = Fleet::with(LabOptions::new(2).kinds(&[Kind::Systemd]), GLOBALS, false);
    let pb = playbook();
    fleet.ok(&["certs", "init-ca", "--playbook", &pb]);
    fleet.ok(&["certs", "issue", "--playbook", &pb]);
    let before = fleet.sh("compute01", "cat /etc/libvirt/libvirtd.conf");
    // Debian's own, long commented file, and day 0: anyone on the network gets in.
    assert!(before.lines().count() > 400, "{before}");
    let open = virsh(&fleet, "compute02", "qemu+tcp://compute01/system", false);
    assert!(open.status.success(), "day 0: {}", describe(&open));

    // audit reads the host's own files (libvirt's paths) and proves the open RPC live.
    let (out, report) = fleet.run_report(&["audit", "--playbook", &pb]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    for host in ["compute01", "compute02"] {
        let found = findings(&report, host);
        assert!(
            found.contains(&("LIBVIRT-RPC-OPEN".into(), "critical".into())),
            "{found:?}"
        );
    }

    let (out, report) = fleet.run_report(&["deploy", "--playbook", &pb]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in ["compute01", "compute02"] {
        let entry = host_report(&report, host);
        assert_eq!(entry["status"], "changed", "{entry}");
        assert_eq!(
            entry["restarted"],
            serde_json::json!(["libvirtd"]),
            "{entry}"
        );
    }

    for (from, to) in [("compute02", "compute01"), ("compute01", "compute02")] {
        let tls = format!("qemu+tls://{to}/system");
        let ok = virsh(&fleet, from, &tls, true);
        assert!(ok.status.success(), "{from} -> {to}: {}", describe(&ok));
        let no_sasl = virsh(&fleet, from, &tls, false);
        assert!(
            !no_sasl.status.success(),
            "{from} -> {to} without credentials got in"
        );
        let tcp = virsh(&fleet, from, &format!("qemu+tcp://{to}/system"), false);
        assert!(!tcp.status.success(), "{from} -> {to}: TCP still open");
        assert!(
            String::from_utf8_lossy(&tcp.stderr).contains("Connection refused"),
            "{}",
            describe(&tcp)
        );
    }
    // The TLS socket replaced the TCP one, as systemd units.
    let sockets = fleet.sh(
        "compute01",
        "systemctl is-enabled libvirtd-tls.socket libvirtd-tcp.socket || true",
    );
    assert_eq!(
        sockets.split_whitespace().collect::<Vec<_>>(),
        ["enabled", "disabled"]
    );

    // The host's comments and other settings, byte for byte; the owned keys set once.
    let after = fleet.sh("compute01", "cat /etc/libvirt/libvirtd.conf");
    assert_eq!(not_owned(&after), not_owned(&before));
    assert!(after.contains("\nauth_tls = \"sasl\"\n") && !after.contains("auth_tcp = \"none\""));
    let sasl = fleet.sh("compute01", "cat /etc/sasl2/libvirt.conf");
    assert!(sasl.contains("\nmech_list: SCRAM-SHA-256\n"), "{sasl}");
    let modes = fleet.sh(
        "compute01",
        "stat -c '%a %U %n' /etc/pki/libvirt/private/serverkey.pem /etc/libvirt/auth.conf",
    );
    assert_eq!(
        modes.lines().collect::<Vec<_>>(),
        [
            "600 root /etc/pki/libvirt/private/serverkey.pem",
            "600 root /etc/libvirt/auth.conf"
        ]
    );

    // Nothing high or critical left. (listen_addr is not set: under socket activation the
    // socket units decide where libvirtd listens, which the file-based finding cannot see.)
    let (out, report) = fleet.run_report(&["audit", "--playbook", &pb, "--fail-on", "high"]);
    assert!(out.status.success(), "{}", describe(&out));
    let found = findings(&report, "compute01");
    assert!(
        found.iter().all(|(_, s)| s == "low" || s == "medium"),
        "{found:?}"
    );
    // certs expiry reads libvirt's own paths on the host.
    let out = fleet.ok(&["certs", "expiry", "--playbook", &pb]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/etc/pki/libvirt/servercert.pem") && text.contains("/etc/pki/CA/cacert.pem"),
        "{text}"
    );

    // A re-run changes nothing and restarts nothing.
    let started = fleet.sh(
        "compute01",
        "systemctl show -P InvocationID libvirtd.service",
    );
    let (out, report) = fleet.run_report(&["deploy", "--playbook", &pb]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in ["compute01", "compute02"] {
        assert_eq!(host_report(&report, host)["status"], "ok", "{report}");
    }
    let again = fleet.sh(
        "compute01",
        "systemctl show -P InvocationID libvirtd.service",
    );
    assert_eq!(started, again, "libvirtd restarted by a noop");
    assert_eq!(
        fleet.sh("compute01", "cat /etc/libvirt/libvirtd.conf"),
        after
    );

    // A rotation of the leaves: libvirtd re-reads them live (virt-admin), no restart, the
    // gate sees the new certificate served and peers connecting.
    fleet.reissue_leaves_with(&["compute01", "compute02"], &["--playbook", &pb]);
    let (out, report) = fleet.run_report(&["rotate", "--serial", "1", "--yes", "--playbook", &pb]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in ["compute01", "compute02"] {
        let entry = host_report(&report, host);
        assert_eq!(
            entry["reloaded"],
            serde_json::json!(["libvirtd"]),
            "{entry}"
        );
        assert_eq!(entry["restarted"], serde_json::json!([]), "{entry}");
    }
    let rotated = fleet.sh(
        "compute01",
        "systemctl show -P InvocationID libvirtd.service",
    );
    assert_eq!(
        started, rotated,
        "libvirtd restarted by a certificate rotation"
    );
    let new_cert = fleet.file_fingerprint(&fleet.host_cert_dir("compute01").join("servercert.pem"));
    assert_eq!(fleet.served_fingerprint("compute01"), new_cert);
    let ok = virsh(&fleet, "compute02", "qemu+tls://compute01/system", true);
    assert!(ok.status.success(), "after rotation: {}", describe(&ok));

    // A CA rollover: three phases (both CAs trusted, new leaves, the old CA dropped), each
    // applied live; afterwards the hosts trust the new CA only and still let each other in.
    fleet.ok(&["certs", "init-ca", "--force", "--playbook", &pb]);
    fleet.ok(&["certs", "issue", "--playbook", &pb]);
    let (out, report) = fleet.run_report(&["rotate", "--yes", "--playbook", &pb]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("phase 3/3"), "{stdout}");
    for host in ["compute01", "compute02"] {
        assert_eq!(
            strings(&host_report(&report, host)["restarted"]),
            Vec::<String>::new()
        );
    }
    let rolled = fleet.sh(
        "compute01",
        "systemctl show -P InvocationID libvirtd.service",
    );
    assert_eq!(started, rolled, "libvirtd restarted by a CA rollover");
    let ca = std::fs::read_to_string(
        fleet
            .configdir
            .path()
            .join("config/nova/nova-libvirt/cacert.pem"),
    )
    .unwrap();
    assert_eq!(fleet.sh("compute02", "cat /etc/pki/CA/cacert.pem"), ca);
    for (from, to) in [("compute02", "compute01"), ("compute01", "compute02")] {
        let ok = virsh(&fleet, from, &format!("qemu+tls://{to}/system"), true);
        assert!(
            ok.status.success(),
            "after the CA rollover {from} -> {to}: {}",
            describe(&ok)
        );
    }
}

/// Every ordered pair of hosts connects over TLS with its client pair and SASL credentials,
/// each from where its own nova would: a Kolla host from its nova_libvirt container, a
/// plain host as root on the host.
fn all_pairs_connect(fleet: &Fleet, hosts: &[&str], plain: &[&str]) {
    for from in hosts {
        for to in hosts.iter().filter(|to| *to != from) {
            let uri = format!("qemu+tls://{to}/system");
            let out = match plain.contains(from) {
                true => virsh(fleet, from, &uri, true),
                false => fleet.peer_virsh(from, &uri, true),
            };
            assert!(out.status.success(), "{from} -> {to}: {}", describe(&out));
        }
    }
}

#[test]
fn a_fleet_of_kolla_and_plain_hosts_deploys_and_rotates_in_one_run_each() {
    // compute01 and compute03 run Kolla's containers, compute02 and compute04 are plain.
    let lab = LabOptions::new(4)
        .engine(test_engine())
        .kinds(&[Kind::Kolla, Kind::Systemd]);
    let fleet = Fleet::with(lab, GLOBALS, false);
    let (kolla, plain) = (shipped("kolla.yml"), playbook());
    let both = ["--playbook", kolla.as_str(), "--playbook", plain.as_str()];
    let run = |args: &[&str]| fleet.run_report(&[args, &both].concat());
    fleet.ok(&["certs", "init-ca"]);
    let out = fleet.ok(&[&["certs", "issue"][..], &both].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    for host in ["compute01", "compute02", "compute03", "compute04"] {
        assert!(text.contains(&format!("{host}: issued")), "{text}");
    }

    let (out, report) = run(&["deploy", "--one-pass"]);
    assert!(out.status.success(), "{}", describe(&out));
    let hosts = ["compute01", "compute02", "compute03", "compute04"];
    let plain_hosts = ["compute02", "compute04"];
    for host in hosts {
        let entry = host_report(&report, host);
        assert_eq!(entry["status"], "changed", "{entry}");
        let restarted = strings(&entry["restarted"]);
        let want: &[&str] = match plain_hosts.contains(&host) {
            true => &["libvirtd"],
            false => &["nova_libvirt", "nova_compute"],
        };
        assert_eq!(restarted, want, "{host}");
    }
    // Each host lets in every host's client certificate, whichever playbook it has.
    let dns = fleet.sh(
        "compute02",
        "grep ^tls_allowed_dn_list /etc/libvirt/libvirtd.conf",
    );
    for host in hosts {
        assert!(dns.contains(&format!("CN={host}")), "{dns}");
    }
    all_pairs_connect(&fleet, &hosts, &plain_hosts);

    // One rotation over both kinds: Kolla's nova_libvirt and the plain libvirtd reloaded.
    fleet.reissue_leaves_with(&hosts, &both);
    let (out, report) = run(&["rotate", "--yes", "--serial", "2"]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in hosts {
        let reloaded = strings(&host_report(&report, host)["reloaded"]);
        assert!(
            reloaded == ["libvirtd"] || reloaded.contains(&"nova_libvirt".to_string()),
            "{host}: {reloaded:?}"
        );
    }
    all_pairs_connect(&fleet, &hosts, &plain_hosts);
    // And a second deploy changes nothing anywhere.
    let (out, report) = run(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in hosts {
        assert_eq!(host_report(&report, host)["status"], "ok", "{report}");
    }
    // One playbook alone would let in its own group only; with the groups named as one
    // fleet it keeps the other group's subjects: nothing to change.
    fleet.write_globals(&format!(
        "{GLOBALS}virtfleet_fleet_groups: [compute, libvirt_hosts]\n"
    ));
    let (out, report) = fleet.run_report(&["check", "--playbook", &plain]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in plain_hosts {
        let entry = host_report(&report, host);
        assert_eq!(
            strings(&entry["changed_files"]),
            Vec::<String>::new(),
            "{entry}"
        );
    }
    fleet.write_globals(GLOBALS);
    let (_, report) = fleet.run_report(&["check", "--playbook", &plain]);
    let entry = host_report(&report, "compute02");
    assert_eq!(
        strings(&entry["changed_files"]),
        ["/etc/libvirt/libvirtd.conf"],
        "{entry}"
    );
}

/// `virsh -c URI version` inside `from`'s nova_compute container, as Kolla's nova would dial
/// (the container's copies of the client pair and its SASL credentials).
fn nova_compute_virsh(fleet: &Fleet, from: &str, uri: &str) -> std::process::Output {
    let script = format!(
        "podman exec nova_compute sh -c 'LIBVIRT_AUTH_FILE=/var/lib/nova/.config/libvirt/auth.conf \
         timeout 20 virsh -c {uri} version </dev/null'"
    );
    fleet.lab.ssh(fleet.host(from), &script)
}

#[test]
fn kolla_with_libvirtd_on_the_host_deploys_and_rotates_with_a_live_reload() {
    // Kolla's enable_nova_libvirt_container: false. Each host runs libvirtd under systemd
    // and Kolla's nova_compute container; it is in both groups, both playbooks apply.
    let lab = LabOptions::new(2).kinds(&[Kind::KollaHostLibvirt]);
    let fleet = Fleet::with(lab, GLOBALS, false);
    let (kolla, plain) = (shipped("kolla.yml"), playbook());
    // kolla.yml named first: the play serving TLS (the host's libvirtd) still runs first.
    let both = ["--playbook", kolla.as_str(), "--playbook", plain.as_str()];
    let run = |args: &[&str]| fleet.run_report(&[args, &both].concat());
    fleet.ok(&["certs", "init-ca"]);
    fleet.ok(&[&["certs", "issue"][..], &both].concat());
    let hosts = ["compute01", "compute02"];

    let (out, report) = run(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in hosts {
        let entry = host_report(&report, host);
        // The host's libvirtd, then Kolla's nova_compute; no nova_libvirt container at all.
        assert_eq!(
            strings(&entry["restarted"]),
            ["libvirtd", "nova_compute"],
            "{entry}"
        );
        let kolla_dir = fleet.sh(host, "ls /etc/kolla");
        assert_eq!(
            kolla_dir.split_whitespace().collect::<Vec<_>>(),
            ["nova-compute"]
        );
    }
    // nova in its container reaches the peer's host libvirtd over TLS + SASL.
    for (from, to) in [("compute01", "compute02"), ("compute02", "compute01")] {
        let out = nova_compute_virsh(&fleet, from, &format!("qemu+tls://{to}/system"));
        assert!(out.status.success(), "{from} -> {to}: {}", describe(&out));
    }

    // Only certificates change: the host's libvirtd re-reads them live (same systemd
    // invocation); Kolla's nova_compute, which has no reload, restarts with its new pair.
    let before = fleet.sh(
        "compute01",
        "systemctl show -P InvocationID libvirtd.service",
    );
    fleet.reissue_leaves_with(&hosts, &both);
    let (out, report) = run(&["rotate", "--yes"]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in hosts {
        let entry = host_report(&report, host);
        assert_eq!(strings(&entry["reloaded"]), ["libvirtd"], "{entry}");
        assert_eq!(strings(&entry["restarted"]), ["nova_compute"], "{entry}");
    }
    let after = fleet.sh(
        "compute01",
        "systemctl show -P InvocationID libvirtd.service",
    );
    assert_eq!(before, after, "libvirtd restarted for new certificates");
    let new_cert = fleet.file_fingerprint(&fleet.host_cert_dir("compute02").join("servercert.pem"));
    assert_eq!(fleet.served_fingerprint("compute02"), new_cert);
    let out = nova_compute_virsh(&fleet, "compute01", "qemu+tls://compute02/system");
    assert!(out.status.success(), "after rotation: {}", describe(&out));
}
