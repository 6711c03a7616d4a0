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

#[test]
fn a_recreated_container_is_restarted_and_gets_its_sasl_user_back() {
    let fleet = Fleet::new(2, TLS_SASL, true);
    fleet.ok(&["deploy"]);
    // Recreated with the same files: only its new ID tells, and its SASL database is gone.
    fleet
        .host("compute02")
        .recreate_container("nova_libvirt")
        .expect("recreate");
    let mut lost = fleet.peer_virsh("compute01", "qemu+tls://compute02/system", true);
    for _ in 0..40 {
        // Until the new libvirtd listens, the refusal is a connection error; wait for the
        // authentication failure that shows the SASL user is missing.
        if String::from_utf8_lossy(&lost.stderr).contains("authentication") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        lost = fleet.peer_virsh("compute01", "qemu+tls://compute02/system", true);
    }
    assert!(
        !lost.status.success(),
        "the recreated container still knew the SASL user"
    );

    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    let r = host_report(&report, "compute02");
    assert_eq!(r["status"], "changed", "{r}");
    assert!(strings(&r["changed_files"]).is_empty(), "{r}");
    assert_eq!(strings(&r["restarted"]), ["nova_libvirt"], "{r}");
    assert_eq!(host_report(&report, "compute01")["status"], "ok");
    let back = fleet.peer_virsh("compute01", "qemu+tls://compute02/system", true);
    assert!(back.status.success(), "{}", describe(&back));
}

/// nova.conf and config.json are kolla-ansible's files too: a deploy sets virtfleet's keys and
/// entries in them and keeps everything else; their secrets never show in a diff.
#[test]
fn kollas_own_settings_survive_and_their_secrets_stay_hidden() {
    let fleet = Fleet::new(1, TLS_SASL, true);
    let nova_conf = fleet.host("compute01").kolla_path("nova-compute/nova.conf");
    let compute_json = fleet
        .host("compute01")
        .kolla_path("nova-compute/config.json");
    let day0 = std::fs::read_to_string(&nova_conf).unwrap();
    assert!(day0.contains(LAB_NOVA_SECRET));

    // The first diff adds settings next to transport_url: its password is masked.
    let (out, report) = fleet.run_report(&["check", "--diff"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(" transport_url = rabbit://openstack:<redacted>@10.255.0.1:5672//\n"),
        "{stdout}"
    );
    // check changes nothing and says so: what a deploy would do.
    assert!(
        stdout.contains("compute01: would change (") && stdout.contains("would restart"),
        "{stdout}"
    );
    assert!(!stdout.contains("compute01: changed"), "{stdout}");
    for text in [
        &*stdout,
        &String::from_utf8_lossy(&out.stderr),
        &report.to_string(),
    ] {
        assert!(
            !text.contains(LAB_NOVA_SECRET),
            "a Kolla secret is shown:\n{text}"
        );
    }

    fleet.ok(&["deploy"]);
    let merged = std::fs::read_to_string(&nova_conf).unwrap();
    for kept in [
        "debug = False\n",
        &format!("transport_url = rabbit://openstack:{LAB_NOVA_SECRET}@10.255.0.1:5672//\n"),
        &format!("[keystone_authtoken]\nauth_url = http://10.255.0.1:5000\npassword = {LAB_NOVA_SECRET}\n"),
    ] {
        assert!(merged.contains(kept), "{kept:?} lost:\n{merged}");
    }
    assert!(
        merged.contains("connection_uri = \"qemu+tls://compute01/system\"\n"),
        "{merged}"
    );
    assert!(!merged.contains("qemu+tcp"), "{merged}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&compute_json).unwrap()).unwrap();
    assert_eq!(json["command"], "/usr/local/bin/sleep_forever");
    assert_eq!(json["permissions"][0]["path"], "/var/log/kolla/nova");
    let dests: Vec<&str> = json["config_files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["dest"].as_str())
        .collect();
    for dest in [
        "/etc/nova/nova.conf",
        "/etc/ceph/ceph.conf",
        "/etc/pki/CA/cacert.pem",
    ] {
        assert!(dests.contains(&dest), "{dest} missing: {dests:?}");
    }

    // Merging is stable: the next run changes nothing.
    let (_, report) = fleet.run_report(&["deploy"]);
    assert_eq!(report["summary"]["ok"], 1, "{report}");

    // kolla-ansible renders nova.conf again (its own template, without virtfleet's keys): the
    // next deploy puts the keys back and restarts only nova_compute.
    std::fs::write(&nova_conf, &day0).unwrap();
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    let r = host_report(&report, "compute01");
    assert_eq!(
        strings(&r["changed_files"]),
        ["/etc/kolla/nova-compute/nova.conf"],
        "{r}"
    );
    assert_eq!(strings(&r["restarted"]), ["nova_compute"], "{r}");
    assert_eq!(std::fs::read_to_string(&nova_conf).unwrap(), merged);
}

/// A hard open-files limit too low to keep every host's connection from facts to converge:
/// the run keeps what fits and the other hosts log in a second time, and it succeeds. A limit
/// that cannot even hold `--forks` connections is refused before any host is reached.
#[test]
fn under_a_low_open_files_limit_hosts_with_changes_past_it_log_in_twice_and_the_run_succeeds() {
    const HOSTS: [&str; 3] = ["compute01", "compute02", "compute03"];
    let lab = LabOptions::new(3).containers(Containers::StandIn);
    let fleet = Fleet::with(lab, TLS_SASL, true);
    let logins = || -> usize { HOSTS.iter().map(|h| fleet.host(h).logins()).sum() };
    let limited_to = |soft: u64, hard: u64, args: &[&str]| {
        let cmd = fleet.command(args);
        let out = std::process::Command::new("prlimit")
            .arg(format!("--nofile={soft}:{hard}"))
            .arg("--")
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .output()
            .expect("prlimit (util-linux)");
        fleet.assert_no_secret(&out.stderr, args);
        out
    };
    let limited = |limit: u64, args: &[&str]| limited_to(limit, limit, args);
    // What a run holds besides its connections (virtfleet_ssh::FDS_BESIDE_CONNECTIONS).
    const BESIDE: u64 = 64;

    // From day 0 to TLS is a transition in four phases, checks between them; each host's
    // connection is carried from phase to phase, and a check asks a host over it too: one
    // login per host for all of it (it was one per phase and check: 7).
    let before = logins();
    let out = fleet.ok(&["deploy"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("phase 4/4"), "not a transition:\n{stdout}");
    assert_eq!(logins() - before, 3, "{stdout}");
    // Then a rerun: one login per host, kept from facts to converge.
    let before = logins();
    fleet.ok(&["deploy", "--forks", "1"]);
    assert_eq!(logins() - before, 3, "one login per host without a limit");

    // Just enough (a connection per host): nothing said, one login per host. A low soft
    // limit under an ample hard one is raised, silently too.
    for (soft, hard) in [(BESIDE + 3, BESIDE + 3), (20, 4096)] {
        let before = logins();
        let out = limited_to(soft, hard, &["deploy", "--forks", "1"]);
        assert!(out.status.success(), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("warning"), "{soft}:{hard}: {stderr}");
        assert_eq!(logins() - before, 3, "{soft}:{hard}: {stderr}");
    }

    // Room for one working connection and one kept. With nothing to change, no host needs
    // its connection after the facts: one login each.
    let room_for_one = || {
        let before = logins();
        let out = limited(BESIDE + 2, &["deploy", "--forks", "1"]);
        assert!(out.status.success(), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let kept = "at most 1 kept; a host whose connection was not kept logs in a second time";
        assert!(stderr.contains(kept), "{stderr}");
        (logins() - before, stderr)
    };
    let (noop, stderr) = room_for_one();
    assert_eq!(noop, 3, "{stderr}");
    // A file changed behind virtfleet's back on every host: each has work left, and two log
    // in again to converge.
    for host in HOSTS {
        let conf = fleet.host(host).kolla_path("nova-libvirt/libvirtd.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str("# changed by hand\n");
        std::fs::write(&conf, text).unwrap();
    }
    let (changed, stderr) = room_for_one();
    assert_eq!(changed, 5, "{stderr}");

    let before = logins();
    let out = limited(BESIDE + 1, &["deploy", "--forks", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--forks 2 needs about 66 open files"),
        "{stderr}"
    );
    // Without --forks, the message says what the default came to.
    let out = limited(BESIDE + 1, &["deploy"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("3 hosts at once (--forks, default: the hosts, at most 100) needs"),
        "{stderr}"
    );
    assert_eq!(logins(), before, "no host reached");
}
