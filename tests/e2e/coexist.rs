//! Issue 12, acceptance 5: beside kolla-ansible. A host that holds what Kolla renders for the
//! same inputs and whose containers Kolla restarted on them is adopted: no byte written,
//! nothing restarted; afterwards Kolla's rendering still equals what the host holds. A host
//! where Kolla's run died before its handlers restarted anything is restarted.
//!
//! The files virtfleet owns whole are kolla-ansible's own rendering (23.0.0, through
//! `scripts/kolla-reference.sh`, as the parity test renders them) where a Python >= 3.12 is
//! available; elsewhere (said on stderr) `genconfig`'s, equal by the parity test.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use virtfleet_suite::*;

const HOSTS: [&str; 2] = ["compute01", "compute02"];
const CONTAINERS: [&str; 2] = ["nova_libvirt", "nova_compute"];
/// Kolla's libvirtd.conf has no authorization lists; with these the files are Kolla's.
const KOLLA_SAME_INPUTS: &str = "libvirt_tls: \"yes\"\n\
     libvirt_tls_allowed_dn_list: []\n\
     libvirt_sasl_allowed_usernames: []\n";

/// Every file of both services on `host`, by path.
fn files(fleet: &Fleet, host: &str) -> String {
    fleet.sh(
        host,
        "cd /etc/kolla && for f in nova-libvirt/* nova-compute/*; do \
           printf '%s %s ' \"$(stat -c %a \"$f\")\" \"$f\"; sha256sum < \"$f\"; done",
    )
}

/// The files virtfleet owns whole, as Kolla's `template` tasks write them (mode 0660).
const KOLLA_WHOLE: [&str; 5] = [
    "nova-libvirt/libvirtd.conf",
    "nova-libvirt/qemu.conf",
    "nova-libvirt/sasl.conf",
    "nova-libvirt/auth.conf",
    "nova-compute/auth.conf",
];

/// kolla-ansible's rendering for each lab host with the fleet's inputs (globals above, the
/// lab inventory's variables, passwords.yml), or None without a Python >= 3.12.
fn kolla_rendering(fleet: &Fleet, out: &Path) -> Option<PathBuf> {
    let cases: BTreeMap<&str, serde_json::Value> = HOSTS
        .iter()
        .map(|&host| {
            let vars = serde_json::json!({
                "libvirt_tls": "yes",
                "libvirt_tls_allowed_dn_list": [],
                "libvirt_sasl_allowed_usernames": [],
                "libvirt_sasl_password": SASL_PASSWORD,
                "migration_interface_address": fleet.host(host).address.to_string(),
                "migration_hostname": host,
                "nova_compute_virt_type": "qemu",
            });
            (host, vars)
        })
        .collect();
    let file = out.join("cases.json");
    std::fs::write(&file, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kolla-reference.sh");
    let rendered = out.join("kolla");
    let status = std::process::Command::new(script)
        .arg("render")
        .arg(&file)
        .arg(&rendered)
        .status()
        .expect("kolla-reference.sh runs");
    if status.code() == Some(3) {
        eprintln!("SKIP kolla's own rendering: no Python >= 3.12; genconfig's files stand in");
        return None;
    }
    assert!(status.success(), "kolla-reference.sh render failed");
    Some(rendered)
}

/// As a `kolla-ansible deploy` leaves a host: Kolla's files in place, no marker (`genconfig`
/// writes the certificates and the merged files; Kolla's own rendering, where there is one,
/// then replaces the files virtfleet owns whole), then, when its handlers ran, both
/// containers restarted on them.
fn seed_as_kolla(fleet: &Fleet, kolla: Option<&Path>, handlers_ran: bool) {
    fleet.ok(&["genconfig", "--one-pass"]);
    for host in HOSTS {
        let markers = fleet.sh(
            host,
            "ls /etc/kolla/*/.virtfleet-applied 2>/dev/null || true",
        );
        assert!(markers.trim().is_empty(), "{host}: {markers}");
        for (name, rendered) in kolla.map(|k| kolla_files(k, host)).into_iter().flatten() {
            let path = fleet.host(host).kolla_path(name);
            std::fs::write(&path, rendered).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
        }
    }
    if handlers_ran {
        // File times are whole seconds: a restart in the same second is not known to be later.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        for host in HOSTS {
            for container in CONTAINERS {
                fleet.engine_sh(host, &format!("restart {container}"));
            }
        }
    }
}

/// Kolla's rendering of the files virtfleet owns whole for `host`: (path under /etc/kolla,
/// bytes).
fn kolla_files(rendered: &Path, host: &str) -> Vec<(&'static str, Vec<u8>)> {
    KOLLA_WHOLE
        .iter()
        .map(|name| {
            let path = rendered.join(host).join(name);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (*name, bytes)
        })
        .collect()
}

#[test]
fn a_host_kolla_deployed_is_adopted_without_a_byte_or_a_restart() {
    let fleet = Fleet::new(2, KOLLA_SAME_INPUTS, true);
    let tmp = tempfile::tempdir().unwrap();
    let kolla = kolla_rendering(&fleet, tmp.path());
    seed_as_kolla(&fleet, kolla.as_deref(), true);
    let before: Vec<(String, Vec<String>)> = HOSTS
        .iter()
        .map(|h| {
            let started = CONTAINERS.iter().map(|c| fleet.started_at(h, c)).collect();
            (files(&fleet, h), started)
        })
        .collect();

    // `check` says so beforehand, and changes nothing.
    let (out, report) = fleet.run_report(&["check"]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in HOSTS {
        let r = host_report(&report, host);
        assert_eq!(strings(&r["adopted"]), CONTAINERS, "{host}: {r}");
        assert!(strings(&r["restarted"]).is_empty(), "{host}: {r}");
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("would adopt nova_libvirt, nova_compute"));

    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    for (host, (files_before, started_before)) in HOSTS.iter().zip(&before) {
        let r = host_report(&report, host);
        assert_eq!(r["status"], "ok", "{host}: {r}\n{}", describe(&out));
        assert_eq!(strings(&r["adopted"]), CONTAINERS, "{host}: {r}");
        assert!(strings(&r["changed_files"]).is_empty(), "{host}: {r}");
        assert!(strings(&r["restarted"]).is_empty(), "{host}: {r}");
        assert_eq!(
            &files(&fleet, host),
            files_before,
            "{host}: a byte or mode changed"
        );
        let started: Vec<String> = CONTAINERS
            .iter()
            .map(|c| fleet.started_at(host, c))
            .collect();
        assert_eq!(&started, started_before, "{host}: a container restarted");
        let markers = fleet.sh(host, "ls /etc/kolla/*/.virtfleet-applied");
        assert_eq!(markers.lines().count(), 2, "{host}: adopted: {markers}");
    }
    // What a later `kolla-ansible reconfigure` would render is what the hosts hold.
    for (host, (name, rendered)) in HOSTS.iter().flat_map(|h| {
        kolla
            .iter()
            .flat_map(|k| kolla_files(k, h))
            .map(move |f| (h, f))
    }) {
        let held = std::fs::read(fleet.host(host).kolla_path(name)).unwrap();
        assert!(held == rendered, "{host}: {name} is not Kolla's rendering");
    }
    // Adoption set the SASL user (the post-restart steps ran): migrations work.
    let peer = fleet.peer_virsh("compute01", "qemu+tls://compute02/system", true);
    assert!(peer.status.success(), "{}", describe(&peer));

    // From now on virtfleet's own bookkeeping: a second run has nothing to do.
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in HOSTS {
        let r = host_report(&report, host);
        assert_eq!(r["status"], "ok", "{host}");
        assert!(strings(&r["adopted"]).is_empty(), "{host}: {r}");
    }
}

#[test]
fn a_stopped_container_is_started_not_adopted() {
    let fleet = Fleet::new(2, KOLLA_SAME_INPUTS, true);
    seed_as_kolla(&fleet, None, true);
    fleet.engine_sh("compute01", "stop nova_compute");
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    let r = host_report(&report, "compute01");
    assert_eq!(strings(&r["adopted"]), ["nova_libvirt"], "{r}");
    assert_eq!(strings(&r["restarted"]), ["nova_compute"], "{r}");
    let running = fleet.engine_sh(
        "compute01",
        "inspect --format '{{.State.Running}}' nova_compute",
    );
    assert_eq!(running.trim(), "true");
}

#[test]
fn a_kolla_run_that_died_before_its_handlers_is_restarted() {
    let fleet = Fleet::new(2, KOLLA_SAME_INPUTS, true);
    // The files are new, the containers still run what they started with (day 0's TCP).
    seed_as_kolla(&fleet, None, false);
    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    for host in HOSTS {
        let r = host_report(&report, host);
        assert!(strings(&r["changed_files"]).is_empty(), "{host}: {r}");
        assert_eq!(strings(&r["restarted"]), CONTAINERS, "{host}: {r}");
    }
    let peer = fleet.peer_virsh("compute01", "qemu+tls://compute02/system", true);
    assert!(peer.status.success(), "{}", describe(&peer));
}
