//! Issue 3, acceptance 2, 3 and 6: what a deploy does after one input changes, and that
//! `check --diff` changes nothing and shows no secret.

use virtfleet_suite::*;

const HOSTS3: [&str; 3] = ["compute01", "compute02", "compute03"];
const HOSTS2: [&str; 2] = ["compute01", "compute02"];
const CONTAINERS: [&str; 2] = ["nova_libvirt", "nova_compute"];

/// StartedAt of both containers on each host, in `hosts` × `CONTAINERS` order.
fn started(fleet: &Fleet, hosts: &[&str]) -> Vec<(String, &'static str, String)> {
    hosts
        .iter()
        .flat_map(|h| CONTAINERS.iter().map(move |c| (h.to_string(), *c)))
        .map(|(h, c)| {
            let at = fleet.started_at(&h, c);
            (h, c, at)
        })
        .collect()
}

/// Asserts nothing in `before` restarted since.
fn assert_not_restarted(fleet: &Fleet, before: &[(String, &'static str, String)], why: &str) {
    for (host, container, at) in before {
        assert_eq!(
            at,
            &fleet.started_at(host, container),
            "{host}: {container} restarted ({why})"
        );
    }
}

/// Content hashes of every file under a host's /etc/kolla (config files and applied markers).
fn kolla_tree(fleet: &Fleet, host: &str) -> String {
    fleet.sh(
        host,
        "find /etc/kolla -type f -print0 | sort -z | xargs -0 sha256sum; \
         find /etc/kolla -printf '%m %p\\n' | sort",
    )
}

fn deploy_ok(fleet: &Fleet) {
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    let hosts = report["hosts"].as_object().expect("hosts");
    assert!(
        hosts.values().all(|r| r["status"] == "changed"),
        "initial deploy: {report}"
    );
}

#[test]
fn replacing_one_hosts_server_pair_reloads_only_its_libvirt() {
    let fleet = Fleet::new(3, TLS_SASL, true);
    deploy_ok(&fleet);

    let dir = fleet.host_cert_dir("compute02");
    let old_fingerprint = fleet.file_fingerprint(&dir.join("servercert.pem"));
    let old_client = std::fs::read(dir.join("clientcert.pem")).unwrap();
    assert_eq!(fleet.served_fingerprint("compute02"), old_fingerprint);
    std::fs::remove_file(dir.join("servercert.pem")).unwrap();
    std::fs::remove_file(dir.join("serverkey.pem")).unwrap();
    let issued = fleet.ok(&["certs", "issue"]);
    let issued = String::from_utf8_lossy(&issued.stdout);
    assert!(
        issued.contains("compute02: issued 1 certificate(s)"),
        "{issued}"
    );
    assert!(
        !issued.contains("compute01:") && !issued.contains("compute03:"),
        "{issued}"
    );
    let new_fingerprint = fleet.file_fingerprint(&dir.join("servercert.pem"));
    assert_ne!(
        old_fingerprint, new_fingerprint,
        "certs issue did not re-issue"
    );
    assert_eq!(
        old_client,
        std::fs::read(dir.join("clientcert.pem")).unwrap()
    );

    let before = started(&fleet, &HOSTS3);
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["summary"]["changed"], 1, "{report}");
    assert_eq!(report["summary"]["ok"], 2, "{report}");
    for host in ["compute01", "compute03"] {
        let r = host_report(&report, host);
        assert_eq!(r["status"], "ok", "{host}: {r}");
        assert!(strings(&r["changed_files"]).is_empty(), "{host}: {r}");
        assert!(strings(&r["restarted"]).is_empty(), "{host}: {r}");
        assert!(strings(&r["reloaded"]).is_empty(), "{host}: {r}");
    }
    let r = host_report(&report, "compute02");
    assert_eq!(r["status"], "changed", "{r}");
    assert_eq!(
        strings(&r["changed_files"]),
        [
            "/etc/kolla/nova-libvirt/servercert.pem",
            "/etc/kolla/nova-libvirt/serverkey.pem"
        ],
        "{r}"
    );
    assert_eq!(strings(&r["reloaded"]), ["nova_libvirt"], "{r}");
    assert!(strings(&r["restarted"]).is_empty(), "{r}");
    // A reload, not a restart: no container on any host started again.
    assert_not_restarted(&fleet, &before, "a reload was enough");

    // The reloaded libvirtd serves the new certificate, and peers still get in with it.
    assert_eq!(fleet.served_fingerprint("compute02"), new_fingerprint);
    let with = fleet.peer_virsh("compute01", "qemu+tls://compute02/system", true);
    assert!(with.status.success(), "{}", describe(&with));

    // And it is converged: a rerun does nothing.
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["summary"]["ok"], 3, "{report}");
}

#[test]
fn a_new_ca_reaches_both_services_on_every_host() {
    let fleet = Fleet::new(3, TLS_SASL, true);
    deploy_ok(&fleet);

    let ca = fleet
        .configdir
        .path()
        .join("config/nova/nova-libvirt/cacert.pem");
    let old_ca = fleet.file_fingerprint(&ca);
    let old_servers: Vec<String> = HOSTS3
        .iter()
        .map(|h| fleet.file_fingerprint(&fleet.host_cert_dir(h).join("servercert.pem")))
        .collect();
    fleet.ok(&["certs", "init-ca", "--force"]);
    assert_ne!(
        old_ca,
        fleet.file_fingerprint(&ca),
        "init-ca --force kept the CA"
    );
    let issued = fleet.ok(&["certs", "issue"]);
    let issued = String::from_utf8_lossy(&issued.stdout);
    for host in HOSTS3 {
        assert!(
            issued.contains(&format!("{host}: issued 2 certificate(s)")),
            "{issued}"
        );
    }

    let before = started(&fleet, &HOSTS3);
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["summary"]["changed"], 3, "{report}");
    for (i, host) in HOSTS3.iter().enumerate() {
        let r = host_report(&report, host);
        assert_eq!(r["status"], "changed", "{host}: {r}");
        let mut changed = strings(&r["changed_files"]);
        changed.sort();
        assert_eq!(
            changed,
            [
                "/etc/kolla/nova-compute/cacert.pem",
                "/etc/kolla/nova-compute/clientcert.pem",
                "/etc/kolla/nova-compute/clientkey.pem",
                "/etc/kolla/nova-libvirt/cacert.pem",
                "/etc/kolla/nova-libvirt/clientcert.pem",
                "/etc/kolla/nova-libvirt/clientkey.pem",
                "/etc/kolla/nova-libvirt/servercert.pem",
                "/etc/kolla/nova-libvirt/serverkey.pem",
            ],
            "{host}: {r}"
        );
        let restarted = strings(&r["restarted"]);
        let reloaded = strings(&r["reloaded"]);
        assert!(
            restarted.contains(&"nova_compute".to_string()),
            "{host}: {r}"
        );
        assert!(
            !reloaded.contains(&"nova_compute".to_string()),
            "{host}: {r}"
        );
        let libvirt = "nova_libvirt".to_string();
        assert!(
            restarted.contains(&libvirt) != reloaded.contains(&libvirt),
            "{host}: nova_libvirt must be restarted or reloaded (once): {r}"
        );
        let compute_at = &before[2 * i + 1];
        assert_eq!(compute_at.1, "nova_compute");
        assert_ne!(
            compute_at.2,
            fleet.started_at(host, "nova_compute"),
            "{host}: nova_compute reported restarted but its StartedAt did not move"
        );
        if reloaded.contains(&libvirt) {
            assert_eq!(
                before[2 * i].2,
                fleet.started_at(host, "nova_libvirt"),
                "{host}"
            );
        }

        // Each libvirtd serves its new certificate, issued by the new CA.
        let new_server = fleet.file_fingerprint(&fleet.host_cert_dir(host).join("servercert.pem"));
        assert_ne!(
            old_servers[i], new_server,
            "{host}: server pair not re-issued"
        );
        assert_eq!(fleet.served_fingerprint(host), new_server, "{host}");
    }

    // Peers trust each other through the new CA, with the new client pairs.
    for (from, to) in [("compute01", "compute02"), ("compute03", "compute01")] {
        let uri = format!("qemu+tls://{to}/system");
        let with = fleet.peer_virsh(from, &uri, true);
        assert!(with.status.success(), "{from} -> {to}: {}", describe(&with));
    }
    // The nova_compute side holds the new CA too.
    let deployed = fleet
        .host("compute02")
        .kolla_path("nova-compute/cacert.pem");
    assert_eq!(
        fleet.file_fingerprint(&deployed),
        fleet.file_fingerprint(&ca)
    );
}

#[test]
fn a_globals_change_for_nova_conf_restarts_only_nova_compute() {
    let fleet = Fleet::new(2, TLS_SASL, true);
    deploy_ok(&fleet);
    let nova_conf = |host: &str| {
        std::fs::read_to_string(fleet.host(host).kolla_path("nova-compute/nova.conf")).unwrap()
    };
    for host in HOSTS2 {
        // The lab inventory sets qemu at group level.
        assert!(nova_conf(host).contains("\nvirt_type = qemu\n"), "{host}");
    }

    let before = started(&fleet, &HOSTS2);
    fleet.write_globals(&format!("{TLS_SASL}nova_compute_virt_type: kvm\n"));
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["summary"]["changed"], 2, "{report}");
    for (i, host) in HOSTS2.iter().enumerate() {
        let r = host_report(&report, host);
        assert_eq!(r["status"], "changed", "{host}: {r}");
        assert_eq!(
            strings(&r["changed_files"]),
            ["/etc/kolla/nova-compute/nova.conf"],
            "{host}: {r}"
        );
        assert_eq!(strings(&r["restarted"]), ["nova_compute"], "{host}: {r}");
        assert!(strings(&r["reloaded"]).is_empty(), "{host}: {r}");
        // globals.yml beats the inventory's group vars.
        assert!(nova_conf(host).contains("\nvirt_type = kvm\n"), "{host}");
        let (libvirt, compute) = (&before[2 * i], &before[2 * i + 1]);
        assert_eq!(
            libvirt.2,
            fleet.started_at(host, "nova_libvirt"),
            "{host}: nova_libvirt restarted"
        );
        assert_ne!(
            compute.2,
            fleet.started_at(host, "nova_compute"),
            "{host}: nova_compute not restarted"
        );
    }
}

#[test]
fn check_diff_changes_nothing_and_shows_no_secret() {
    const NEW_PASSWORD: &str = "Rotated-Pass-91c4e";
    let fleet = Fleet::new(2, TLS_SASL, true);
    deploy_ok(&fleet);

    let nova_conf_path = fleet.host("compute01").kolla_path("nova-compute/nova.conf");
    let nova_conf = std::fs::read(&nova_conf_path).unwrap();
    let trees: Vec<String> = HOSTS2.iter().map(|h| kolla_tree(&fleet, h)).collect();
    let before = started(&fleet, &HOSTS2);

    fleet.write_globals(&format!("{TLS_SASL}nova_compute_virt_type: kvm\n"));
    std::fs::write(
        fleet.configdir.path().join("passwords.yml"),
        format!("libvirt_sasl_password: {NEW_PASSWORD}\n"),
    )
    .unwrap();

    let (out, report) = fleet.run_report(&["check", "--diff"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report_text = report.to_string();
    assert_eq!(report["command"], "check");

    // A unified diff of nova.conf, per host.
    for host in HOSTS2 {
        assert!(stdout.contains(&format!("# {host}\n")), "{stdout}");
    }
    assert!(
        stdout.contains("--- /etc/kolla/nova-compute/nova.conf")
            && stdout.contains("+++ /etc/kolla/nova-compute/nova.conf"),
        "{stdout}"
    );
    assert!(stdout.contains("\n-virt_type = qemu\n"), "{stdout}");
    assert!(stdout.contains("\n+virt_type = kvm\n"), "{stdout}");
    assert!(stdout.contains("@@ "), "no hunk header: {stdout}");
    // auth.conf is named as changed, its contents are not shown.
    for path in [
        "/etc/kolla/nova-libvirt/auth.conf",
        "/etc/kolla/nova-compute/auth.conf",
    ] {
        assert!(stdout.contains(path), "{path} not mentioned:\n{stdout}");
    }
    // No secret anywhere: neither password, nor any private key.
    for (what, text) in [
        ("stdout", &*stdout),
        ("stderr", &*stderr),
        ("report", &report_text),
    ] {
        for secret in [SASL_PASSWORD, NEW_PASSWORD, "PRIVATE KEY", LAB_NOVA_SECRET] {
            assert!(!text.contains(secret), "{what} shows {secret:?}:\n{text}");
        }
    }

    // What a deploy would do.
    assert_eq!(report["summary"]["changed"], 2, "{report}");
    for host in HOSTS2 {
        let r = host_report(&report, host);
        assert_eq!(r["status"], "changed", "{host}: {r}");
        let mut changed = strings(&r["changed_files"]);
        changed.sort();
        assert_eq!(
            changed,
            [
                "/etc/kolla/nova-compute/auth.conf",
                "/etc/kolla/nova-compute/nova.conf",
                "/etc/kolla/nova-libvirt/auth.conf",
            ],
            "{host}: {r}"
        );
        assert_eq!(
            strings(&r["restarted"]),
            ["nova_libvirt", "nova_compute"],
            "{host}: {r}"
        );
        assert!(strings(&r["reloaded"]).is_empty(), "{host}: {r}");
    }

    // Nothing changed on the hosts.
    assert_eq!(
        nova_conf,
        std::fs::read(&nova_conf_path).unwrap(),
        "nova.conf was written"
    );
    for (host, tree) in HOSTS2.iter().zip(&trees) {
        assert_eq!(
            tree,
            &kolla_tree(&fleet, host),
            "{host}: /etc/kolla changed"
        );
    }
    assert_not_restarted(&fleet, &before, "check must not restart");
    // The old password still works: the SASL user was not touched either.
    let with = fleet.peer_virsh("compute02", "qemu+tls://compute01/system", true);
    assert!(with.status.success(), "{}", describe(&with));
}
