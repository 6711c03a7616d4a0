//! `deploy --serial`: batches one after the other, and a failure budget that leaves the hosts
//! of later batches untouched (kolla-ansible's `kolla_serial`, with Ansible's
//! `max_fail_percentage`).

use virtfleet_suite::*;

fn status<'a>(report: &'a serde_json::Value, host: &str) -> &'a str {
    host_report(report, host)["status"]
        .as_str()
        .unwrap_or_default()
}

#[test]
fn batches_stop_at_the_failure_budget_and_later_hosts_stay_untouched() {
    let fleet = Fleet::new(3, TCP_SASL, false);
    let libvirtd_conf = |host: &str| {
        std::fs::read_to_string(fleet.host(host).kolla_path("nova-libvirt/libvirtd.conf")).unwrap()
    };
    let day0 = libvirtd_conf("compute03");
    fleet.host("compute02").stop_sshd();

    // Any failure stops the rollout (the default budget is 0%).
    let (out, report) = fleet.run_report(&["deploy", "--serial", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "batch 1/3: compute01",
        "batch 2/3: compute02",
        "stopping: 1 of 2",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
    assert!(!stdout.contains("batch 3/3"), "{stdout}");
    // Per-host lines reach a pipe too (no terminal here).
    assert!(stdout.contains("compute01: changed ("), "{stdout}");
    assert!(
        stdout.contains("compute02: unreachable compute02: "),
        "{stdout}"
    );
    assert_eq!(status(&report, "compute01"), "changed", "{report}");
    assert_eq!(status(&report, "compute02"), "unreachable", "{report}");
    assert_eq!(status(&report, "compute03"), "skipped", "{report}");
    assert_eq!(
        libvirtd_conf("compute03"),
        day0,
        "a skipped host was touched"
    );

    // 1 failure in 2 attempted hosts is within 50%: the rollout goes on.
    let (out, report) =
        fleet.run_report(&["deploy", "--serial", "1", "--max-fail-percentage", "50"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(status(&report, "compute01"), "ok", "{report}");
    assert_eq!(status(&report, "compute02"), "unreachable", "{report}");
    assert_eq!(status(&report, "compute03"), "changed", "{report}");

    // Back online: a percentage batch size, everything converges.
    fleet.host("compute02").start_sshd().unwrap();
    let (out, report) = fleet.run_report(&["deploy", "--serial", "67%"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("batch 1/2: compute01, compute02"));
    assert_eq!(status(&report, "compute02"), "changed", "{report}");
    assert_eq!(report["summary"]["ok"], 2, "{report}");
}
