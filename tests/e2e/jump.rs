//! Issue 17: hosts behind a bastion, reached with OpenSSH's ProxyJump as Kolla operators set
//! it in the inventory (`ansible_ssh_common_args`).

use std::process::Command;

use virtfleet_suite::*;

/// The jump user's logins on the bastion (sshd's log: one line per accepted connection).
fn jump_logins(fleet: &Fleet, bastion: &str, user: &str) -> usize {
    let log = std::fs::read_to_string(fleet.host(bastion).sshd_log()).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(&format!("Accepted publickey for {user} ")))
        .count()
}

#[test]
fn hosts_behind_a_bastion_are_deployed_through_one_connection_and_keep_their_own_host_keys() {
    let fleet = Fleet::new(3, TLS_SASL, true);
    let (a, b, bastion) = ("compute01", "compute02", "compute03");
    // The bastion lets a plain user in; only that user's processes (its sshd session, which
    // opens the forwarded connections) may reach the other hosts' sshd.
    let jumper = "vflabjump";
    fleet.lab.add_user(jumper, false).expect("jump user");
    let uid = String::from_utf8(
        Command::new("id")
            .args(["-u", jumper])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let rules = [a, b]
        .iter()
        .map(|h| {
            let address = fleet.host(h).address.to_string();
            [
                "OUTPUT", "-o", "lo", "-p", "tcp", "-d", &address, "--dport", "22",
            ]
            .into_iter()
            .chain(["-m", "owner", "!", "--uid-owner", &uid])
            .chain(["-j", "REJECT", "--reject-with", "tcp-reset"])
            .map(String::from)
            .collect()
        })
        .collect();
    let _firewall = Firewall::rules(rules);
    for host in [a, b] {
        let direct = fleet.lab.ssh(fleet.host(host), "true");
        assert!(
            !direct.status.success(),
            "{host} reachable without the bastion"
        );
        assert!(
            String::from_utf8_lossy(&direct.stderr).contains("Connection refused"),
            "{}",
            describe(&direct)
        );
    }

    // As Kolla operators write it: the jump in the inventory's ssh arguments.
    let host_vars = fleet.lab.dir().join("host_vars");
    std::fs::create_dir_all(&host_vars).unwrap();
    let jump = format!(
        "ansible_ssh_common_args: \"-o ProxyJump={jumper}@{}\"\n",
        fleet.host(bastion).address
    );
    for host in [a, b] {
        std::fs::write(host_vars.join(format!("{host}.yml")), &jump).unwrap();
    }
    let limit = ["--limit", "compute01,compute02"];
    let before = jump_logins(&fleet, bastion, jumper);
    let (out, report) = fleet.run_report(&[&["deploy", "--one-pass"][..], &limit].concat());
    assert!(out.status.success(), "{}\n{report}", describe(&out));
    for host in [a, b] {
        assert_eq!(host_report(&report, host)["status"], "changed", "{report}");
    }
    // One connection to the bastion carried both hosts (facts, probe and push included).
    assert_eq!(jump_logins(&fleet, bastion, jumper), before + 1);
    let (out, report) = fleet.run_report(&[&["check"][..], &limit].concat());
    assert!(out.status.success(), "{}", describe(&out));
    for host in [a, b] {
        assert_eq!(host_report(&report, host)["status"], "ok", "{report}");
    }
    // Behind the bastion, hosts are channels of its one connection: the open files of one
    // socket (and virtfleet's own 64) hold both hosts' connections from facts to converge,
    // one worked on at a time (each a host of its own would want 66 and keep one).
    let cmd = fleet.command(&[&["check", "--forks", "1"][..], &limit].concat());
    let out = Command::new("prlimit")
        .arg("--nofile=65:65")
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("open files"), "{stderr}");

    // A changed host key behind the bastion fails that host only: each target's key is
    // checked against known_hosts, as if it were dialled directly.
    let known = std::fs::read_to_string(fleet.lab.known_hosts()).unwrap();
    let tampered = with_changed_host_key(&known, &fleet.host(b).address.to_string());
    std::fs::write(fleet.lab.known_hosts(), &tampered).unwrap();
    let (out, report) = fleet.run_report(&[&["check"][..], &limit].concat());
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let failed = host_report(&report, b);
    assert_eq!(failed["status"], "failed", "{report}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("host key changed"),
        "{failed}"
    );
    assert_eq!(host_report(&report, a)["status"], "ok", "{report}");
    std::fs::write(fleet.lab.known_hosts(), &known).unwrap();

    // The same from the OpenSSH client configuration (`-F`), with its known_hosts file: no
    // jump in the inventory, no --known-hosts. The bastion's name is only in a file the
    // configuration includes.
    for host in [a, b] {
        std::fs::remove_file(host_vars.join(format!("{host}.yml"))).unwrap();
    }
    let ssh_config = fleet.lab.dir().join("ssh_config");
    let included = fleet.lab.dir().join("ssh_config.d");
    std::fs::create_dir_all(&included).unwrap();
    std::fs::write(
        included.join("bastion.conf"),
        format!(
            "Host bastion\n    HostName {}\n",
            fleet.host(bastion).address
        ),
    )
    .unwrap();
    std::fs::write(
        &ssh_config,
        format!(
            "Include {}/*.conf\n\
             Host {} {}\n    ProxyJump {jumper}@bastion\n\
             Host *\n    UserKnownHostsFile {}\n",
            included.display(),
            fleet.host(a).address,
            fleet.host(b).address,
            fleet.lab.known_hosts().display(),
        ),
    )
    .unwrap();
    let before = jump_logins(&fleet, bastion, jumper);
    let out = Command::new(virtfleet_bin())
        .args(["check", "-i"])
        .arg(fleet.lab.inventory())
        .arg("--configdir")
        .arg(fleet.configdir.path())
        .arg("-F")
        .arg(&ssh_config)
        .args(limit)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(jump_logins(&fleet, bastion, jumper), before + 1);
    let unreachable = Command::new(virtfleet_bin())
        .args(["check", "-i"])
        .arg(fleet.lab.inventory())
        .arg("--configdir")
        .arg(fleet.configdir.path())
        .args(["--known-hosts"])
        .arg(fleet.lab.known_hosts())
        .args(["-F", "none"])
        .args(limit)
        .output()
        .unwrap();
    assert!(!unreachable.status.success(), "reached without the bastion");
    std::fs::write(host_vars.join(format!("{a}.yml")), &jump).unwrap();

    // A jump host that refuses the login names it, for every host behind it.
    let wrong = format!(
        "ansible_ssh_common_args: \"-o ProxyJump=nobody@{}\"\n",
        fleet.host(bastion).address
    );
    std::fs::write(host_vars.join(format!("{a}.yml")), wrong).unwrap();
    let (out, report) = fleet.run_report(&[&["check"][..], &limit].concat());
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    let failed = host_report(&report, a);
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("jump host"), "{failed}");
}
