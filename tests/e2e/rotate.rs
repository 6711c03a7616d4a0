//! Issue 4: `rotate` rolls certificates out in batches behind a health gate, rolls a failing
//! host back, and rolls a CA over in three phases without cutting any pair of hosts off.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use virtfleet_suite::*;

const SERVER_CERT: &str = "/etc/kolla/nova-libvirt/servercert.pem";

fn hosts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("compute{i:02}")).collect()
}

fn deploy_ok(fleet: &Fleet) {
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        report["summary"]["failed"], 0,
        "initial deploy failed: {report}"
    );
}

fn new_server_fingerprint(fleet: &Fleet, host: &str) -> String {
    fleet.file_fingerprint(&fleet.host_cert_dir(host).join("servercert.pem"))
}

fn deployed_sha(fleet: &Fleet, host: &str, path: &str) -> String {
    fleet.sh(host, &format!("sha256sum {path}"))
}

fn backups_left(fleet: &Fleet, host: &str) -> String {
    fleet.sh(host, "find /etc/kolla -name '*.virtfleet-backup*'")
}

#[test]
fn six_hosts_rotate_in_three_batches_on_live_reloads() {
    let all = hosts(6);
    let fleet = Fleet::new(6, TLS_SASL, true);
    deploy_ok(&fleet);
    let old: Vec<String> = all.iter().map(|h| fleet.served_fingerprint(h)).collect();
    fleet.reissue_leaves(&all);
    let libvirt_started: Vec<String> = all
        .iter()
        .map(|h| fleet.started_at(h, "nova_libvirt"))
        .collect();

    let logins = || -> Vec<usize> { all.iter().map(|h| fleet.host(h).logins()).collect() };
    let before = logins();

    let (out, report) = fleet.run_report(&["rotate", "--serial", "2", "--yes", "-v"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // A batch's gates share one connection to each peer they ask, which then goes back to
    // the pool for the peer's own next step. compute01 and 02 vouch for each other in
    // batch 1 (their connections, then their backups' removal) and ask 03 (not yet rotated:
    // its connection, then its converge); batch 2 asks 02 (the last rotated, done: one more
    // login) and 05 (as 03); batch 3 asks 04 (as 02).
    let added: Vec<usize> = logins().iter().zip(&before).map(|(a, b)| a - b).collect();
    let own = added[5];
    // Its own: one login for the whole rotation (facts, the certificates it holds, the
    // converge, its backups removed after the gate).
    assert_eq!(own, 1, "{added:?}");
    assert_eq!(
        added,
        [own, own + 1, own, own + 1, own, own],
        "logins per host during the rotation"
    );
    assert_eq!(report["command"], "rotate");
    assert_eq!(report["summary"]["changed"], 6, "{report}");
    for (batch, pair) in all.chunks(2).enumerate() {
        let line = format!("batch {}/3: {}", batch + 1, pair.join(", "));
        assert!(stdout.contains(&line), "no `{line}`:\n{stdout}");
    }
    assert!(!stdout.contains("batch 4/"), "{stdout}");
    for (i, host) in all.iter().enumerate() {
        let r = host_report(&report, host);
        assert_eq!(r["status"], "changed", "{host}: {r}");
        assert_eq!(strings(&r["reloaded"]), ["nova_libvirt"], "{host}: {r}");
        assert_eq!(strings(&r["restarted"]), ["nova_compute"], "{host}: {r}");
        assert!(
            stdout.contains(&format!("{host}: rotated (")) && stdout.contains("gate passed"),
            "{stdout}"
        );
        for check in [
            "served certificate seen from the controller",
            "the server accepts its new client certificate",
        ] {
            assert!(
                stdout.contains(&format!("{host}: gate: {check}")),
                "{stdout}"
            );
        }
        // Reloaded live: the libvirt container never started again.
        assert_eq!(
            libvirt_started[i],
            fleet.started_at(host, "nova_libvirt"),
            "{host}: nova_libvirt restarted"
        );
        let new = new_server_fingerprint(&fleet, host);
        assert_ne!(old[i], new, "{host}: not re-issued");
        assert_eq!(fleet.served_fingerprint(host), new, "{host}");
        assert_eq!(backups_left(&fleet, host), "", "{host}: backups left");
    }
    // Hosts of the middle batch were vouched for by peers on both sides of the rotation.
    assert!(
        stdout.contains("compute03: gate: rotated peer compute02 connects")
            && stdout.contains("compute03: gate: not yet rotated peer compute05 connects"),
        "{stdout}"
    );

    let (out, report) = fleet.run_report(&["rotate", "--serial", "2", "--yes"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["summary"]["ok"], 6, "{report}");
}

#[test]
fn a_wrong_san_stops_rotate_before_any_host_is_contacted() {
    let fleet = Fleet::new(2, TLS_SASL, true);
    // compute01 gets compute02's server pair: it chains and matches, but names compute02.
    for name in ["servercert.pem", "serverkey.pem"] {
        std::fs::copy(
            fleet.host_cert_dir("compute02").join(name),
            fleet.host_cert_dir("compute01").join(name),
        )
        .unwrap();
    }
    let trees: Vec<String> = hosts(2)
        .iter()
        .map(|h| fleet.sh(h, "find /etc/kolla -type f | sort | xargs sha256sum"))
        .collect();
    let out = fleet.run(&["rotate", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("compute01") && stderr.contains("servercert.pem"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("batch"));
    for (host, tree) in hosts(2).iter().zip(&trees) {
        let now = fleet.sh(host, "find /etc/kolla -type f | sort | xargs sha256sum");
        assert_eq!(tree, &now, "{host}: touched");
    }

    // Without a terminal, rotate will not start unconfirmed.
    let out = fleet.run(&["rotate"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
}

/// Makes `virt-admin` in the host's libvirt container succeed without doing anything: the
/// reload "works" but libvirtd keeps serving its old certificate. A bind mount in the
/// (privileged) container, since a docker host's containers have /usr read-only; it lasts
/// until the container restarts.
fn break_reload(fleet: &Fleet, host: &str) {
    fleet.engine_sh(
        host,
        "exec nova_libvirt sh -c 'printf \"#!/bin/sh\\nexit 0\\n\" > /tmp/virt-admin && \
         chmod 755 /tmp/virt-admin && mount --bind /tmp/virt-admin /usr/bin/virt-admin'",
    );
}

fn fix_reload(fleet: &Fleet, host: &str) {
    fleet.engine_sh(host, "exec nova_libvirt umount /usr/bin/virt-admin");
}

#[test]
fn a_host_failing_its_gate_is_rolled_back_and_the_rest_untouched() {
    let all = hosts(3);
    let fleet = Fleet::new(3, TLS_SASL, true);
    deploy_ok(&fleet);
    let before: BTreeMap<&String, String> = all
        .iter()
        .map(|h| (h, deployed_sha(&fleet, h, SERVER_CERT)))
        .collect();
    let old_served = fleet.served_fingerprint("compute01");
    fleet.reissue_leaves(&all);
    break_reload(&fleet, "compute01");

    let args = [
        "rotate",
        "--serial",
        "1",
        "--max-fail-percentage",
        "0",
        "--yes",
    ];
    let (out, report) = fleet.run_report(&args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r = host_report(&report, "compute01");
    assert_eq!(r["status"], "failed", "{r}");
    let error = r["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("health gate") && error.contains("previous files restored"),
        "{error}"
    );
    for host in ["compute02", "compute03"] {
        assert_eq!(host_report(&report, host)["status"], "skipped", "{report}");
    }
    assert_eq!(report["summary"]["skipped"], 2, "{report}");
    assert!(stdout.contains("failed: compute01"), "{stdout}");
    assert!(
        stdout.contains("untouched: compute02, compute03"),
        "{stdout}"
    );
    assert!(
        stdout.contains("to resume")
            && stdout.contains("rotate --serial 1 --max-fail-percentage 0 --yes"),
        "{stdout}"
    );
    assert!(!stdout.contains("batch 2/3"), "{stdout}");
    // The failed host is back on its previous files and serves its previous certificate;
    // the others were never touched.
    for host in &all {
        assert_eq!(
            before[host],
            deployed_sha(&fleet, host, SERVER_CERT),
            "{host}: not on its previous server certificate"
        );
        assert_eq!(backups_left(&fleet, host), "", "{host}: backups left");
    }
    assert_eq!(fleet.served_fingerprint("compute01"), old_served);
    let peer = fleet.peer_virsh("compute02", "qemu+tls://compute01/system", true);
    assert!(peer.status.success(), "{}", describe(&peer));

    fix_reload(&fleet, "compute01");
    let (out, report) = fleet.run_report(&args);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["summary"]["changed"], 3, "{report}");
    for host in &all {
        assert_eq!(
            fleet.served_fingerprint(host),
            new_server_fingerprint(&fleet, host)
        );
    }
}

/// `virsh` over qemu+tls from every host to every other one, in parallel; the failures.
fn failing_pairs(fleet: &Fleet, all: &[String]) -> Vec<String> {
    let pairs: Vec<(&String, &String)> = all
        .iter()
        .flat_map(|from| all.iter().map(move |to| (from, to)))
        .filter(|(from, to)| from != to)
        .collect();
    std::thread::scope(|scope| {
        let probes: Vec<_> = pairs
            .iter()
            .map(|(from, to)| {
                scope.spawn(move || {
                    let out = fleet.peer_virsh(from, &format!("qemu+tls://{to}/system"), true);
                    (!out.status.success()).then(|| format!("{from} -> {to}: {}", describe(&out)))
                })
            })
            .collect();
        probes
            .into_iter()
            .filter_map(|p| p.join().expect("probe thread"))
            .collect()
    })
}

/// Fingerprints of every CA a host trusts: both services' cacert.pem and what libvirtd
/// loaded inside its container.
fn trusted_cas(fleet: &Fleet, host: &str) -> Vec<String> {
    let pem = fleet.sh(
        host,
        &format!(
            "cat /etc/kolla/nova-libvirt/cacert.pem /etc/kolla/nova-compute/cacert.pem; \
             {} exec nova_libvirt cat /etc/pki/CA/cacert.pem",
            fleet.engine(host)
        ),
    );
    virtfleet_pki::parse_certs(pem.as_bytes())
        .unwrap()
        .into_iter()
        .map(|c| c.fingerprint_sha256)
        .collect()
}

/// rotate's pause between batches: it prints "batch ... done" and then waits this long, and the
/// test freezes it (SIGSTOP) within that wait to probe every pair before the next batch.
const PAUSE: &str = "2";

/// Probes every pair with `rotate` (process `pid`) frozen between two batches; lets it go on
/// when `resume`, else leaves it frozen.
fn probe_between_batches(fleet: &Fleet, all: &[String], pid: u32, resume: bool, when: &str) {
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let failing = failing_pairs(fleet, all);
    if resume {
        signal("-CONT");
    }
    assert!(failing.is_empty(), "{when}:\n{}", failing.join("\n"));
}

#[test]
fn a_ca_rollover_never_cuts_any_pair_of_hosts_off() {
    let all = hosts(4);
    let fleet = Fleet::new(4, TLS_SASL, true);
    deploy_ok(&fleet);
    let ca_path = fleet
        .configdir
        .path()
        .join("config/nova/nova-libvirt/cacert.pem");
    let old_ca = fleet.file_fingerprint(&ca_path);
    fleet.ok(&["certs", "init-ca", "--force"]);
    let new_ca = fleet.file_fingerprint(&ca_path);
    let issued = String::from_utf8_lossy(&fleet.ok(&["certs", "issue"]).stdout).into_owned();
    assert!(issued.contains("4 hosts got new certificates"), "{issued}");

    // First run: probe every pair after each batch, and kill it (as an operator's ^C would)
    // after the first batch of phase 2.
    let mut child = fleet
        .command(&["rotate", "--serial", "2", "--pause", PAUSE, "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut phase = String::new();
    let mut seen = Vec::new();
    let mut interrupted = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.starts_with("phase ") {
            phase = line.split(':').next().unwrap().to_string();
        }
        if !(line.starts_with("batch ") && line.contains(" done: ")) {
            continue;
        }
        // Killed while frozen: it never starts the second batch of phase 2.
        let stop_here = phase == "phase 2/3" && line.starts_with("batch 1/2");
        let when = format!("{phase}, {line}");
        probe_between_batches(&fleet, &all, child.id(), !stop_here, &when);
        if stop_here {
            child.kill().unwrap();
            interrupted = true;
            break;
        }
    }
    let _ = child.wait();
    assert!(interrupted, "never reached phase 2:\n{}", seen.join("\n"));
    // Half-way: every host trusts both CAs.
    for host in &all {
        let cas = trusted_cas(&fleet, host);
        assert!(cas.contains(&old_ca) && cas.contains(&new_ca), "{host}");
    }

    // The rerun resumes: phase 1 has nothing left, phase 2 finishes, phase 3 drops the old CA.
    let logins = || -> Vec<usize> { all.iter().map(|h| fleet.host(h).logins()).collect() };
    let before = logins();
    let mut child = fleet
        .command(&["rotate", "--serial", "2", "--pause", PAUSE, "--yes", "-v"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut probed = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.starts_with("batch ") && line.contains(" done: ") {
            probe_between_batches(&fleet, &all, child.id(), true, &line);
            probed += 1;
        }
    }
    let status = child.wait().unwrap();
    // virtfleet's logins: less the probes' (each host asks its 3 peers per probe).
    let added: Vec<usize> = logins()
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b - 3 * probed)
        .collect();
    // compute04, in every phase's last batch, is no gate's peer (gates ask a host rotated
    // before and one not yet rotated): its count is its own. One connection carries it
    // through the phases left (each later phase takes it over instead of logging in again).
    assert_eq!(added[3], 1, "logins per host: {added:?}");
    let seen = seen.join("\n");
    fleet.assert_no_secret(seen.as_bytes(), &["rotate"]);
    assert!(status.success(), "{seen}");
    for title in ["phase 1/3", "phase 2/3", "phase 3/3"] {
        assert!(seen.contains(title), "{title}:\n{seen}");
    }
    // Phase 1 found every host trusting both; compute01/02 had their pairs already.
    for host in ["compute01", "compute02"] {
        assert!(seen.contains(&format!("{host}: already current")), "{seen}");
    }

    // The old CA is trusted nowhere; every pair still connects; each host serves its new pair.
    for host in &all {
        let cas = trusted_cas(&fleet, host);
        assert!(!cas.contains(&old_ca), "{host} still trusts the old CA");
        assert!(cas.iter().all(|ca| ca == &new_ca), "{host}: {cas:?}");
        assert_eq!(
            fleet.served_fingerprint(host),
            new_server_fingerprint(&fleet, host)
        );
    }
    let failing = failing_pairs(&fleet, &all);
    assert!(failing.is_empty(), "{}", failing.join("\n"));
    let (out, report) = fleet.run_report(&["rotate", "--yes"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["summary"]["ok"], 4, "{report}");
}

/// A rotation killed before it cleaned up leaves backups (old private keys among them); the
/// next deploy deletes them, a check only looks.
#[test]
fn backups_left_by_a_killed_rotation_are_deleted_by_the_next_deploy() {
    let fleet = Fleet::new(1, TCP_SASL, false);
    deploy_ok(&fleet);
    fleet.sh(
        "compute01",
        "cd /etc/kolla/nova-libvirt && ln auth.conf auth.conf.virtfleet-backup && \
         : > sasl.conf.virtfleet-backup.absent",
    );
    fleet.ok(&["check"]);
    assert_eq!(backups_left(&fleet, "compute01").lines().count(), 2);

    let out = fleet.ok(&["deploy", "-v"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("removed 2 backup(s) left by an interrupted rotation"),
        "{stdout}"
    );
    assert_eq!(backups_left(&fleet, "compute01"), "");
}
