//! Helpers shared by the lab's test files.

use std::time::{Duration, Instant};

use virtfleet_lab::{Lab, LabHost};

/// A command's stdout; panics with its stderr when it failed.
pub fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until the host's libvirtd answers, through the host's own engine.
pub fn wait_ready(lab: &Lab, host: &LabHost) {
    // libvirtd's first start probes QEMU, which can take long on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(120);
    let command = format!("{} exec nova_libvirt virsh version --daemon", host.engine);
    while Instant::now() < deadline {
        if lab.ssh(host, &command).status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("libvirtd on {} never became ready", host.name);
}

/// True while the process exists and is not a zombie.
pub fn running(pid: i32) -> bool {
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !state.is_empty() && !state.contains(") Z")
}

/// Tears the lab down and checks that none of `pids` runs any more and that no file, mount or
/// lab slot of it is left.
pub fn down_leaves_nothing(lab: Lab, pids: Vec<i32>) {
    let id = lab.id;
    let dir = lab.dir().to_path_buf();
    lab.down().expect("clean tear-down");
    for pid in pids {
        assert!(!running(pid), "process {pid} still runs");
    }
    assert!(!dir.exists(), "{} still exists", dir.display());
    let run_dir = std::path::Path::new(virtfleet_lab::RUN_ROOT).join(format!("lab{id}"));
    assert!(!run_dir.exists(), "{} still exists", run_dir.display());
    assert!(!virtfleet_lab::list().contains(&id));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&format!("lab{id}/")),
        "mounts left: {mounts}"
    );
}

/// `text` holds a day-0 libvirtd.conf for `host`: the insecure Kolla default (plain TCP, no
/// auth), bound to the host's own address.
pub fn assert_day0_libvirtd(text: &str, host: &LabHost) {
    assert!(text.contains("auth_tcp = \"none\""), "{text}");
    let listen = format!("listen_addr = \"{}\"", host.address);
    assert!(text.contains(&listen), "{text}");
}

/// virsh run on a peer host, so the server name resolves through the lab's /etc/hosts.
pub fn peer_virsh(peer: &LabHost, uri: &str) -> std::process::Output {
    peer.command("timeout")
        .args(["20", "virsh", "-c", uri, "version"])
        .output()
        .unwrap()
}
