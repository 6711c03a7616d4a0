//! Issue 3, acceptance 4 and 5 and the exit-status contract: a run killed between push and
//! restart, `genconfig`, an unreachable host, a changed host key, and bad input (exit 2 before
//! any host is contacted).

use virtfleet_suite::*;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The playbook's services in restart order, with their directory under /etc/kolla.
const SERVICES: [(&str, &str); 2] = [
    ("nova_libvirt", "nova-libvirt"),
    ("nova_compute", "nova-compute"),
];

/// Globals that change both services: `nova_libvirt_log_outputs` is only used by
/// libvirtd.conf, `nova_compute_virt_type` only by nova.conf (globals override the lab
/// inventory's `nova_compute_virt_type=qemu`: Kolla passes globals as extra vars).
fn globals_changing_both() -> String {
    format!("{TLS_SASL}nova_libvirt_log_outputs: \"2:stderr\"\nnova_compute_virt_type: kvm\n")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A service's applied marker as the host holds it ("" when there is none).
fn marker_text(fleet: &Fleet, host: &str, dir: &str) -> String {
    fleet.sh(
        host,
        &format!("cat /etc/kolla/{dir}/.virtfleet-applied 2>/dev/null; true"),
    )
}

/// True when `marker` (an applied marker's text, `virtfleet-applied v1` / `container ID` /
/// `sha256 mode path` lines) records exactly what the host holds now: the running container's
/// ID and every file's hash and mode. Called once the host holds the desired files, it says
/// whether that service had nothing pending when the marker was read. The file set itself
/// cannot differ here: no test changes which files the plan holds.
fn marker_matches_host(fleet: &Fleet, host: &str, container: &str, marker: &str) -> bool {
    let mut lines = marker.lines();
    if lines.next() != Some("virtfleet-applied v1") {
        return false;
    }
    let Some(id) = lines.next().and_then(|l| l.strip_prefix("container ")) else {
        return false;
    };
    let running = fleet.engine_sh(host, &format!("inspect --format '{{{{.Id}}}}' {container}"));
    if id != running.trim() {
        return false;
    }
    let recorded: Vec<&str> = lines.collect();
    if recorded.is_empty() {
        return false;
    }
    let paths: Vec<&str> = recorded
        .iter()
        .filter_map(|l| l.splitn(3, ' ').nth(2))
        .collect();
    let script = format!(
        "for p in {}; do printf '%s %s %s\\n' \"$(sha256sum < $p | cut -d' ' -f1)\" \"$(stat -c %a $p)\" \"$p\"; done",
        paths.join(" ")
    );
    let held = fleet.sh(host, &script);
    held.lines().collect::<Vec<_>>() == recorded
}

/// Waits until libvirtd in the host's nova_libvirt answers (after a restart that a killed run
/// left going on the host).
fn wait_libvirt_ready(fleet: &Fleet, host: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = fleet.lab.ssh(
            fleet.host(host),
            &format!(
                "{} exec nova_libvirt virsh version --daemon",
                fleet.engine(host)
            ),
        );
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host}: libvirtd not ready:\n{}",
            describe(&out)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn assert_all_ok(report: &serde_json::Value, hosts: &[&str]) {
    assert_eq!(report["summary"]["ok"], hosts.len(), "{report}");
    for host in hosts {
        let r = host_report(report, host);
        assert_eq!(r["status"], "ok", "{host}: {r}");
        assert!(strings(&r["changed_files"]).is_empty(), "{host}: {r}");
        assert!(strings(&r["restarted"]).is_empty(), "{host}: {r}");
    }
}

#[test]
fn killed_between_push_and_restart_the_next_deploy_restarts_exactly_the_stale_containers() {
    let fleet = Fleet::new(2, TLS_SASL, true);
    fleet.ok(&["deploy"]);
    let hosts = ["compute01", "compute02"];
    let nova_conf = fleet.host("compute01").kolla_path("nova-compute/nova.conf");
    let libvirtd_conf = fleet
        .host("compute01")
        .kolla_path("nova-libvirt/libvirtd.conf");
    let (nova_before, libvirtd_before) = (read(&nova_conf), read(&libvirtd_conf));

    fleet.write_globals(&globals_changing_both());
    let mut child = fleet
        .command(&["deploy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("virtfleet starts");
    // All changed files of a host are renamed into place by one push script, before any
    // restart, one directory after the other (nova-compute's first); once the renames have
    // begun, the script finishes them even when its connection is gone.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if std::fs::read_to_string(&nova_conf).is_ok_and(|now| now != nova_before) {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("deploy ended ({status}) before compute01's nova.conf changed");
        }
        assert!(
            Instant::now() < deadline,
            "compute01's nova.conf never changed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "deploy finished before it could be killed: {status}"
    );
    let nova_pushed = read(&nova_conf);
    assert!(nova_pushed.contains("virt_type = kvm"), "{nova_pushed}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while read(&libvirtd_conf) == libvirtd_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let libvirtd_pushed = read(&libvirtd_conf);
    assert_ne!(
        libvirtd_pushed, libvirtd_before,
        "libvirtd.conf not pushed with nova.conf"
    );
    assert!(
        libvirtd_pushed.contains("log_outputs = \"2:stderr\""),
        "{libvirtd_pushed}"
    );

    // The kill leaves whatever restart the host had begun to finish on its own: let it.
    std::thread::sleep(Duration::from_secs(1));
    for host in hosts {
        wait_libvirt_ready(&fleet, host);
    }
    // Which services were applied before the kill? A marker is written only after a service's
    // restart (and, for nova_libvirt, its SASL step) succeeded. Read them now; once the rerun
    // has pushed every desired file, a marker that matches what the host holds (same container,
    // same hashes and modes) had nothing pending, and every other one was stale. On compute01
    // the kill came within a few ms of the push, so nova_compute (restarted after nova_libvirt
    // was ready) cannot have been applied; nova_libvirt almost certainly was not either, but
    // the rule below holds whichever way that went, also for compute02 (wherever the kill hit).
    let markers: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            SERVICES
                .iter()
                .map(|(_, dir)| marker_text(&fleet, h, dir))
                .collect()
        })
        .collect();

    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    let r = host_report(&report, "compute01");
    assert_eq!(r["status"], "changed", "{r}");
    assert!(
        strings(&r["changed_files"]).is_empty(),
        "compute01 files were pushed already: {r}"
    );
    for (h, host) in hosts.iter().enumerate() {
        let r = host_report(&report, host);
        let stale: Vec<String> = SERVICES
            .iter()
            .zip(&markers[h])
            .filter(|((name, _), marker)| !marker_matches_host(&fleet, host, name, marker))
            .map(|((name, _), _)| name.to_string())
            .collect();
        assert_eq!(
            strings(&r["restarted"]),
            stale,
            "{host}: markers before {:?}: {r}",
            markers[h]
        );
    }
    let restarted = strings(&host_report(&report, "compute01")["restarted"]);
    assert!(
        restarted.contains(&"nova_compute".to_string()),
        "{restarted:?}"
    );
    assert_eq!(read(&nova_conf), nova_pushed, "rerun rewrote nova.conf");
    // The restarted nova_libvirt got its SASL user back: a peer still gets in.
    let peer = fleet.peer_virsh("compute02", "qemu+tls://compute01/system", true);
    assert!(peer.status.success(), "{}", describe(&peer));

    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_all_ok(&report, &hosts);
    // Converged, every marker matches what the host holds (the check above can say yes).
    for host in hosts {
        for (name, dir) in SERVICES {
            let marker = marker_text(&fleet, host, dir);
            assert!(
                marker_matches_host(&fleet, host, name, &marker),
                "{host} {name}: {marker}"
            );
        }
    }
}

#[test]
fn genconfig_writes_files_without_restarting_and_deploy_restarts_what_they_changed() {
    let fleet = Fleet::new(1, TCP_SASL, false);
    fleet.ok(&["deploy"]);
    let host = "compute01";
    let libvirt_started = fleet.started_at(host, "nova_libvirt");
    let compute_started = fleet.started_at(host, "nova_compute");

    // Only nova.conf uses nova_compute_virt_type.
    fleet.write_globals(&format!("{TCP_SASL}nova_compute_virt_type: kvm\n"));
    let (out, report) = fleet.run_report(&["genconfig"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["command"], "genconfig");
    let r = host_report(&report, host);
    assert_eq!(r["status"], "changed", "{r}");
    assert_eq!(
        strings(&r["changed_files"]),
        ["/etc/kolla/nova-compute/nova.conf"],
        "{r}"
    );
    assert!(
        strings(&r["restarted"]).is_empty(),
        "genconfig restarted: {r}"
    );
    assert!(
        strings(&r["reloaded"]).is_empty(),
        "genconfig reloaded: {r}"
    );
    assert_eq!(libvirt_started, fleet.started_at(host, "nova_libvirt"));
    assert_eq!(
        compute_started,
        fleet.started_at(host, "nova_compute"),
        "genconfig restarted nova_compute"
    );
    let nova_conf = read(&fleet.host(host).kolla_path("nova-compute/nova.conf"));
    assert!(nova_conf.contains("virt_type = kvm"), "{nova_conf}");

    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    let r = host_report(&report, host);
    assert_eq!(r["status"], "changed", "{r}");
    assert!(
        strings(&r["changed_files"]).is_empty(),
        "genconfig already pushed: {r}"
    );
    assert_eq!(strings(&r["restarted"]), ["nova_compute"], "{r}");
    assert_eq!(
        libvirt_started,
        fleet.started_at(host, "nova_libvirt"),
        "nova_libvirt restarted"
    );
    assert_ne!(
        compute_started,
        fleet.started_at(host, "nova_compute"),
        "nova_compute not restarted"
    );

    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_all_ok(&report, &[host]);
}

#[test]
fn an_unreachable_host_stops_a_transition_at_the_end_of_its_phase_and_it_finishes_once_back() {
    // Day 0 to TLS is a fleet-wide transition (docs/ossn-0007.md): the others do phase 1
    // (the TLS listener beside TCP, changing no client) and the run stops there, so no nova
    // dials TLS while a peer may have no TLS listener.
    let fleet = Fleet::new(3, TLS_SASL, true);
    fleet.host("compute02").stop_sshd();
    let day0 = read(
        &fleet
            .host("compute02")
            .kolla_path("nova-libvirt/libvirtd.conf"),
    );

    let (out, report) = fleet.run_report(&["deploy"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = host_report(&report, "compute02");
    assert_eq!(r["status"], "unreachable", "{r}");
    let error = r["error"].as_str().unwrap_or_default();
    assert!(error.contains("compute02"), "{r}");
    assert!(
        strings(&r["changed_files"]).is_empty() && strings(&r["restarted"]).is_empty(),
        "{r}"
    );
    assert_eq!(report["summary"]["unreachable"], 1, "{report}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the next phases are not started"), "{err}");
    for host in ["compute01", "compute03"] {
        let r = host_report(&report, host);
        assert_eq!(r["status"], "skipped", "{host}: {r}");
        assert_eq!(strings(&r["restarted"]), ["nova_libvirt"], "{host}: {r}");
        let libvirtd = read(&fleet.host(host).kolla_path("nova-libvirt/libvirtd.conf"));
        assert!(
            libvirtd.contains("listen_tls = 1") && libvirtd.contains("listen_tcp = 1"),
            "{host}: {libvirtd}"
        );
        let nova = read(&fleet.host(host).kolla_path("nova-compute/nova.conf"));
        assert!(nova.contains("qemu+tcp://"), "{host}: {nova}");
    }
    let peer = fleet.peer_virsh("compute03", "qemu+tls://compute01/system", true);
    assert!(peer.status.success(), "{}", describe(&peer));
    assert_eq!(
        read(
            &fleet
                .host("compute02")
                .kolla_path("nova-libvirt/libvirtd.conf")
        ),
        day0
    );

    fleet.host("compute02").start_sshd().expect("sshd starts");
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    let r = host_report(&report, "compute02");
    assert_eq!(r["status"], "changed", "{r}");
    assert_eq!(
        strings(&r["restarted"]),
        ["nova_libvirt", "nova_compute"],
        "{r}"
    );
    let peer = fleet.peer_virsh("compute01", "qemu+tls://compute02/system", true);
    assert!(peer.status.success(), "{}", describe(&peer));
}

#[test]
fn a_changed_host_key_fails_that_host_and_nothing_is_written_to_it() {
    let fleet = Fleet::new(3, TLS_SASL, true);
    let tmp = tempfile::tempdir().unwrap();
    let original = read(&fleet.lab.known_hosts());
    let tampered = with_changed_host_key(&original, "compute03");
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::write(&known_hosts, &tampered).unwrap();
    let kolla = |rel: &str| fleet.host("compute03").kolla_path(rel);
    let nova_day0 = read(&kolla("nova-compute/nova.conf"));

    let report_path = tmp.path().join("report.json");
    let out = Command::new(virtfleet_bin())
        .arg("deploy")
        .arg("-i")
        .arg(fleet.lab.inventory())
        .arg("--configdir")
        .arg(fleet.configdir.path())
        .arg("--known-hosts")
        .arg(&known_hosts)
        .arg("--report")
        .arg(&report_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    for output in [&out.stdout, &out.stderr, read(&report_path).as_bytes()] {
        fleet.assert_no_secret(output, &["deploy"]);
    }
    let report: serde_json::Value = serde_json::from_str(&read(&report_path)).unwrap();
    let r = host_report(&report, "compute03");
    assert_eq!(r["status"], "failed", "{r}");
    let error = r["error"].as_str().unwrap_or_default();
    assert!(error.to_lowercase().contains("host key changed"), "{r}");
    assert!(
        error.contains(&format!("{}:3", known_hosts.display())),
        "names the known_hosts line: {r}"
    );
    assert!(
        strings(&r["changed_files"]).is_empty() && strings(&r["restarted"]).is_empty(),
        "{r}"
    );
    // The others did the transition's first phase; the failed host stopped it there.
    for host in ["compute01", "compute02"] {
        let r = host_report(&report, host);
        assert_eq!(r["status"], "skipped", "{host}: {report}");
        assert_eq!(strings(&r["restarted"]), ["nova_libvirt"], "{host}: {r}");
    }
    assert_eq!(report["summary"]["failed"], 1, "{report}");
    // Never accepted: the file still records the other key.
    assert_eq!(read(&known_hosts), tampered, "known_hosts was modified");

    // Nothing reached compute03: day-0 files, no markers, no staged temp files.
    let libvirtd = read(&kolla("nova-libvirt/libvirtd.conf"));
    assert!(libvirtd.contains("auth_tcp = \"none\""), "{libvirtd}");
    assert_eq!(read(&kolla("nova-compute/nova.conf")), nova_day0);
    for (_, dir) in SERVICES {
        let listing: Vec<String> = std::fs::read_dir(kolla(dir))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !listing.iter().any(|n| n.starts_with(".virtfleet")),
            "{dir}: {listing:?}"
        );
        assert!(
            !listing.iter().any(|n| n.ends_with(".pem")),
            "{dir}: {listing:?}"
        );
    }
}

/// A config dir and a two-host inventory whose hosts are TCP listeners on this machine that
/// nobody answers: any connection attempt shows up as a pending connection.
struct BadInput {
    dir: tempfile::TempDir,
    listeners: Vec<TcpListener>,
}

impl BadInput {
    fn new(globals: &str) -> BadInput {
        let dir = tempfile::tempdir().unwrap();
        let listeners: Vec<TcpListener> = ["127.0.0.2:0", "127.0.0.3:0"]
            .iter()
            .map(|a| {
                let l = TcpListener::bind(a).expect("bind a loopback listener");
                l.set_nonblocking(true).unwrap();
                l
            })
            .collect();
        let input = BadInput { dir, listeners };
        let mut inventory = String::from("[compute]\n");
        for (name, l) in ["node-a", "node-b"].iter().zip(&input.listeners) {
            let addr = l.local_addr().unwrap();
            // Set here, these need no facts (see `facts_needed` for the other case).
            inventory.push_str(&format!(
                "{name} ansible_host={0} ansible_port={1} migration_interface_address={0} \
                 migration_hostname={name}\n",
                addr.ip(),
                addr.port()
            ));
        }
        inventory.push_str("\n[compute:vars]\nansible_user=root\n");
        std::fs::write(input.inventory(), inventory).unwrap();
        std::fs::create_dir(input.configdir()).unwrap();
        input.write("globals.yml", globals);
        input.write(
            "passwords.yml",
            &format!("libvirt_sasl_password: {SASL_PASSWORD}\n"),
        );
        input
    }

    fn inventory(&self) -> PathBuf {
        self.dir.path().join("multinode")
    }

    /// The inventory without the migration address and name: they come from the hosts' facts.
    fn facts_needed(self) -> BadInput {
        let inventory = read(&self.inventory());
        let lines: Vec<String> = inventory
            .lines()
            .map(|l| {
                l.split(' ')
                    .filter(|w| !w.starts_with("migration_"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        std::fs::write(self.inventory(), lines.join("\n") + "\n").unwrap();
        self
    }

    fn configdir(&self) -> PathBuf {
        self.dir.path().join("kolla")
    }

    fn cert_dir(&self) -> PathBuf {
        self.configdir().join("config/nova/nova-libvirt")
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.configdir().join(name), text).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(virtfleet_bin());
        cmd.args(args)
            .arg("-i")
            .arg(self.inventory())
            .arg("--configdir")
            .arg(self.configdir())
            .arg("--known-hosts")
            .arg(self.dir.path().join("known_hosts"));
        cmd
    }

    fn ok(&self, args: &[&str]) {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "virtfleet {args:?}:\n{}",
            describe(&out)
        );
    }

    /// Runs `deploy --report` and asserts the bad-input contract: exit 2, quickly, no report,
    /// no host contacted. Returns stderr.
    fn rejected(&self, extra: &[&str]) -> String {
        let report = self.dir.path().join("report.json");
        let started = Instant::now();
        let out: Output = self
            .command(&["deploy"])
            .args(extra)
            .arg("--report")
            .arg(&report)
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(
            elapsed < Duration::from_secs(5),
            "took {elapsed:?} to reject bad input"
        );
        assert!(!report.exists(), "a report was written for bad input");
        for l in &self.listeners {
            match l.accept() {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                other => panic!("host {:?} was contacted: {other:?}", l.local_addr()),
            }
        }
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

#[test]
fn bad_input_unknown_group_in_limit() {
    let input = BadInput::new(TCP_SASL);
    let stderr = input.rejected(&["--limit", "no_such_group"]);
    assert!(stderr.contains("no_such_group"), "{stderr}");
}

#[test]
fn bad_input_missing_certificate_names_both_searched_paths() {
    let input = BadInput::new(TLS_SASL);
    let stderr = input.rejected(&[]);
    for path in [
        input.cert_dir().join("node-a/cacert.pem"),
        input.cert_dir().join("cacert.pem"),
    ] {
        assert!(
            stderr.contains(&path.display().to_string()),
            "{path:?} not named:\n{stderr}"
        );
    }
}

/// Hosts whose address and name come from their facts are checked with stand-ins first: a
/// missing certificate or a bad value is still exit 2 before any host is contacted.
#[test]
fn bad_input_is_found_before_facts_are_gathered() {
    let input = BadInput::new(TLS_SASL).facts_needed();
    assert!(!read(&input.inventory()).contains("migration_"));
    let stderr = input.rejected(&[]);
    assert!(stderr.contains("cacert.pem"), "{stderr}");
    input.write("passwords.yml", "nova_database_password: x\n");
    let stderr = input.rejected(&[]);
    assert!(stderr.contains("libvirt_sasl_password"), "{stderr}");
}

#[test]
fn bad_input_two_hosts_with_one_identity() {
    let input = BadInput::new(TLS_SASL);
    input.ok(&["certs", "init-ca"]);
    input.ok(&["certs", "issue"]);
    let inventory = read(&input.inventory());
    let clash = inventory.replacen("migration_hostname=node-a", "migration_hostname=node-b", 1);
    assert_ne!(clash, inventory);
    std::fs::write(input.inventory(), clash).unwrap();
    let out = input.command(&["certs", "issue"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let expected = "host node-a: its migration_hostname \"node-b\" is host node-b's";
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(expected),
        "{}",
        describe(&out)
    );
    let stderr = input.rejected(&[]);
    assert!(stderr.contains(expected), "{stderr}");
}

#[test]
fn bad_input_sasl_without_password() {
    let input = BadInput::new(TCP_SASL);
    input.write("passwords.yml", "nova_database_password: x\n");
    let stderr = input.rejected(&[]);
    let line = stderr
        .lines()
        .find(|l| l.contains("node-a"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("libvirt_sasl_password"), "{stderr}");
}

#[test]
fn bad_input_unparsable_globals_names_file_and_line() {
    let input = BadInput::new(TCP_SASL);
    input.write(
        "globals.yml",
        "libvirt_tls: \"no\"\nkolla_container_engine: podman\n  broken: : yaml\n",
    );
    let stderr = input.rejected(&[]);
    let globals = input.configdir().join("globals.yml");
    let named = format!("{}:", globals.display());
    let at = stderr
        .find(&named)
        .unwrap_or_else(|| panic!("{globals:?} not named:\n{stderr}"));
    assert!(
        stderr[at + named.len()..].starts_with(|c: char| c.is_ascii_digit()),
        "no line number:\n{stderr}"
    );
}

#[test]
fn bad_input_broken_ini_host_line_names_file_and_line() {
    let input = BadInput::new(TCP_SASL);
    let inventory = read(&input.inventory());
    let broken = inventory.replacen("node-b ansible_host=", "node-b \"ansible_host=", 1);
    assert_ne!(broken, inventory);
    std::fs::write(input.inventory(), broken).unwrap();
    let stderr = input.rejected(&[]);
    let named = format!("{}:3:", input.inventory().display());
    assert!(stderr.contains(&named), "{named} not named:\n{stderr}");
}

#[test]
fn bad_input_an_ssh_config_error_every_host_shares_is_one_line() {
    let input = BadInput::new(TCP_SASL);
    let config = input.dir.path().join("ssh_config");
    std::fs::write(&config, "Host *\n  Port nope\n").unwrap();
    let stderr = input.rejected(&["-F", config.to_str().unwrap()]);
    let problem = format!("{}:2: Port \"nope\"", config.display());
    assert_eq!(stderr.matches(&problem).count(), 1, "{stderr}");
    assert!(stderr.contains("hosts node-a, node-b"), "{stderr}");
}

#[test]
fn bad_input_become_with_a_sudo_password_is_refused_without_showing_it() {
    let input = BadInput::new(TCP_SASL);
    let mut inventory = read(&input.inventory());
    inventory.push_str("ansible_become=true\nansible_become_password=Sudo-Secret-9\n");
    std::fs::write(input.inventory(), inventory).unwrap();
    let stderr = input.rejected(&[]);
    assert!(
        stderr.contains("node-a") && stderr.contains("ansible_become_password"),
        "{stderr}"
    );
    assert!(!stderr.contains("Sudo-Secret-9"), "{stderr}");
}

#[test]
fn bad_input_server_cert_not_covering_the_host() {
    let input = BadInput::new(TLS_SASL);
    input.ok(&["certs", "init-ca"]);
    input.ok(&["certs", "issue"]);
    // node-a gets node-b's server pair: a valid pair from the right CA, for the wrong host.
    for file in ["servercert.pem", "serverkey.pem"] {
        std::fs::copy(
            input.cert_dir().join("node-b").join(file),
            input.cert_dir().join("node-a").join(file),
        )
        .unwrap();
    }
    let stderr = input.rejected(&[]);
    let servercert = input.cert_dir().join("node-a/servercert.pem");
    let line = stderr
        .lines()
        .find(|l| l.contains(&servercert.display().to_string()))
        .unwrap_or_else(|| panic!("{servercert:?} not named:\n{stderr}"));
    assert!(line.contains("node-a"), "{stderr}");
    assert!(
        !stderr.contains("node-b/"),
        "node-b's own pair is fine:\n{stderr}"
    );
}

#[test]
fn bad_input_a_value_that_would_inject_config_is_refused_with_where_it_is_set() {
    let input = BadInput::new(TCP_SASL);
    input.write(
        "globals.yml",
        "libvirt_tls: \"no\"\nkolla_container_engine: podman\n\
         migration_interface_address: \"10.0.0.1\\\"\\nunix_sock_rw_perms = \\\"0777\"\n",
    );
    let stderr = input.rejected(&[]);
    let globals = input.configdir().join("globals.yml");
    assert!(
        stderr.contains("migration_interface_address")
            && stderr.contains(&format!("{}:3", globals.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("0777"), "the value is shown: {stderr}");
}

/// A service directory another user could write to (or a symlink standing in for one) fails
/// that host before anything is written; the other hosts converge.
#[test]
fn an_unsafe_service_directory_fails_its_host_and_nothing_is_written() {
    let fleet = Fleet::new(3, TCP_SASL, false);
    fleet.sh("compute01", "chmod 0777 /etc/kolla/nova-libvirt");
    // Any directory above the service directories counts, however far up.
    fleet.sh(
        "compute03",
        "mkdir -p /etc/kolla/deep/x && chmod 0777 /etc/kolla/deep",
    );
    let host_vars = fleet.lab.dir().join("host_vars");
    std::fs::create_dir_all(&host_vars).unwrap();
    std::fs::write(
        host_vars.join("compute03.yml"),
        "node_config_directory: /etc/kolla/deep/x\n",
    )
    .unwrap();
    fleet.sh(
        "compute02",
        "mv /etc/kolla/nova-compute /etc/kolla/nova-compute.real && \
         ln -s /etc/kolla/nova-compute.real /etc/kolla/nova-compute",
    );
    let before: Vec<String> = ["compute01", "compute02"]
        .iter()
        .map(|h| fleet.sh(h, "ls -la /etc/kolla/*/ | sha256sum"))
        .collect();
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let one = host_report(&report, "compute01");
    assert_eq!(one["status"], "failed", "{one}");
    let error = one["error"].as_str().unwrap();
    assert!(
        error.contains("/etc/kolla/nova-libvirt is writable by every user"),
        "{error}"
    );
    let two = host_report(&report, "compute02");
    assert!(
        two["error"]
            .as_str()
            .unwrap()
            .contains("/etc/kolla/nova-compute is a symlink"),
        "{two}"
    );
    let three = host_report(&report, "compute03");
    assert!(
        three["error"]
            .as_str()
            .unwrap()
            .contains("/etc/kolla/deep is writable by every user"),
        "{three}"
    );
    assert_eq!(
        fleet.sh("compute03", "find /etc/kolla/deep"),
        "/etc/kolla/deep\n/etc/kolla/deep/x\n"
    );
    for (host, before) in ["compute01", "compute02"].iter().zip(&before) {
        let after = fleet.sh(host, "ls -la /etc/kolla/*/ | sha256sum");
        assert_eq!(&after, before, "{host}: something was written");
    }
}
