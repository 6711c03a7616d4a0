//! Issue 13: a fleet mixing docker and podman hosts (each host's `kolla_container_engine` set in
//! the inventory) deploys and rotates in one run, each host restarted and reloaded with its own
//! engine; a host whose inventory names an engine it does not run fails naming that engine.
//! These tests choose their own engines: `scripts/test.sh` runs them in the podman pass only.

use virtfleet_suite::*;

const CONTAINERS: [&str; 2] = ["nova_libvirt", "nova_compute"];

fn started(fleet: &Fleet, host: &str) -> Vec<String> {
    CONTAINERS
        .iter()
        .map(|c| fleet.started_at(host, c))
        .collect()
}

#[test]
fn a_mixed_fleet_deploys_and_rotates_each_host_with_its_own_engine() {
    // compute01 and compute03 docker, compute02 podman; the globals name no engine.
    let fleet = Fleet::with(
        LabOptions::new(3).engines(&[Engine::Docker, Engine::Podman]),
        TLS_SASL,
        true,
    );
    let hosts = ["compute01", "compute02", "compute03"];
    let engines: Vec<&str> = hosts.iter().map(|h| fleet.engine(h)).collect();
    assert_eq!(engines, ["docker", "podman", "docker"]);
    let day0: Vec<Vec<String>> = hosts.iter().map(|h| started(&fleet, h)).collect();

    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    for (i, host) in hosts.iter().enumerate() {
        let r = host_report(&report, host);
        assert_eq!(r["status"], "changed", "{host}: {r}");
        assert_eq!(strings(&r["restarted"]), CONTAINERS, "{host}: {r}");
        let now = started(&fleet, host);
        for (c, (before, after)) in CONTAINERS.iter().zip(day0[i].iter().zip(&now)) {
            assert_ne!(before, after, "{host}: {c} not restarted by {}", engines[i]);
        }
    }
    // Peers across engines: docker → podman and podman → docker over TLS with SASL.
    for (from, to) in [("compute01", "compute02"), ("compute02", "compute03")] {
        let peer = fleet.peer_virsh(from, &format!("qemu+tls://{to}/system"), true);
        assert!(peer.status.success(), "{from} → {to}: {}", describe(&peer));
    }

    // One rotation: new leaves for every host, libvirt reloaded live, nova_compute restarted.
    fleet.reissue_leaves(&hosts);
    let before: Vec<Vec<String>> = hosts.iter().map(|h| started(&fleet, h)).collect();
    let (out, report) = fleet.run_report(&["rotate", "--yes"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["summary"]["changed"], 3, "{report}");
    for (i, host) in hosts.iter().enumerate() {
        let r = host_report(&report, host);
        assert_eq!(strings(&r["reloaded"]), ["nova_libvirt"], "{host}: {r}");
        assert_eq!(strings(&r["restarted"]), ["nova_compute"], "{host}: {r}");
        let now = started(&fleet, host);
        assert_eq!(before[i][0], now[0], "{host}: nova_libvirt restarted");
        assert_ne!(before[i][1], now[1], "{host}: nova_compute not restarted");
        let new = fleet.file_fingerprint(&fleet.host_cert_dir(host).join("servercert.pem"));
        assert_eq!(fleet.served_fingerprint(host), new, "{host}");
    }

    // A docker container recreated (docker rm -f + create): new ID, no SASL user. The next
    // deploy notices it from docker's store, restarts it and restores the user.
    let old_id = fleet.engine_sh("compute03", "inspect --format '{{.Id}}' nova_libvirt");
    fleet
        .host("compute03")
        .recreate_container("nova_libvirt")
        .expect("recreate");
    let new_id = fleet.engine_sh("compute03", "inspect --format '{{.Id}}' nova_libvirt");
    assert_ne!(old_id, new_id);
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    let r = host_report(&report, "compute03");
    assert_eq!(r["status"], "changed", "{r}");
    assert!(strings(&r["changed_files"]).is_empty(), "{r}");
    assert_eq!(strings(&r["restarted"]), ["nova_libvirt"], "{r}");
    for host in ["compute01", "compute02"] {
        assert_eq!(host_report(&report, host)["status"], "ok", "{report}");
    }
    let marker = fleet.sh(
        "compute03",
        "cat /etc/kolla/nova-libvirt/.virtfleet-applied",
    );
    assert!(
        marker.contains(&format!("container {}", new_id.trim())),
        "{marker}"
    );
    let back = fleet.peer_virsh("compute02", "qemu+tls://compute03/system", true);
    assert!(back.status.success(), "{}", describe(&back));
    let (_, report) = fleet.run_report(&["deploy"]);
    assert_eq!(report["summary"]["ok"], 3, "{report}");
}

/// compute02's inventory says docker, but it runs podman (no docker daemon: the socket is not
/// there); compute03's says docker and has no docker command at all. Each fails naming its
/// engine, with nothing written; compute01 converges.
#[test]
fn a_host_whose_engine_is_absent_or_unreachable_fails_naming_it() {
    let fleet = Fleet::with(LabOptions::new(3).engine(Engine::Podman), TCP_SASL, false);
    let inventory = std::fs::read_to_string(fleet.lab.inventory()).unwrap();
    let mut wrong = String::new();
    for line in inventory.lines() {
        wrong.push_str(line);
        if line.starts_with("compute02 ") || line.starts_with("compute03 ") {
            wrong.push_str(" kolla_container_engine=docker");
        }
        wrong.push('\n');
    }
    std::fs::write(fleet.lab.inventory(), wrong).unwrap();
    // Hide every docker command from compute03's logins (its own mount namespace): no
    // executable file left under that name.
    fleet
        .host("compute03")
        .sh(
            "for d in /usr/local/bin/docker /usr/bin/docker /usr/sbin/docker; do \
             if [ -e \"$d\" ]; then mount --bind /dev/null \"$d\"; fi; done",
        )
        .expect("hide docker");
    let before: Vec<String> = ["compute02", "compute03"]
        .iter()
        .map(|h| fleet.sh(h, "find /etc/kolla -type f | sort | xargs sha256sum"))
        .collect();

    let (out, report) = fleet.run_report(&["deploy"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(host_report(&report, "compute01")["status"], "changed");
    let error = |host: &str| {
        let r = host_report(&report, host);
        assert_eq!(r["status"], "failed", "{host}: {r}");
        r["error"].as_str().unwrap().to_string()
    };
    let unreachable = error("compute02");
    assert!(
        unreachable.contains("docker cannot list containers for SSH user root")
            && unreachable.contains("Cannot connect to the Docker daemon"),
        "{unreachable}"
    );
    let absent = error("compute03");
    assert!(
        absent.contains("docker is not installed on this host"),
        "{absent}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (host, error) in [("compute02", &unreachable), ("compute03", &absent)] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(host) && l.contains(error.as_str())),
            "{host}'s error not shown with its name:\n{stdout}"
        );
    }
    for (host, before) in ["compute02", "compute03"].iter().zip(&before) {
        let after = fleet.sh(host, "find /etc/kolla -type f | sort | xargs sha256sum");
        assert_eq!(&after, before, "{host}: something was written");
    }
}
