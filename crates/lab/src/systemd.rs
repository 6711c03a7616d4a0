//! Lab hosts whose libvirtd runs under systemd, as on a plain KVM host: a podman container
//! booting this machine's own systemd as PID 1 over an overlay of its root (a tmpfs upper
//! layer per host), with sshd and libvirt's packages, units and socket activation as the
//! distribution ships them. Day 0 as OSSN-0007 describes it: `libvirtd-tcp.socket` enabled,
//! `auth_tcp = "none"` appended to Debian's own libvirtd.conf.
//!
//! All lab hosts share this machine's network namespace, so each listener binds the host's
//! own address (sshd's `ListenAddress`, `ListenStream=` drop-ins for libvirt's sockets: the
//! TLS socket's is there from the start, as an operator binding libvirt to one network would
//! have it).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::host::{mkdir, write, LabHost};
use crate::sys::{self, run};
use crate::{LabError, ROOTFS_BIND};

/// Units of this machine that must not start in a lab host (the network is shared).
const MASKED: [&str; 19] = [
    "docker.service",
    "docker.socket",
    "containerd.service",
    "postgresql.service",
    "podman.service",
    "podman.socket",
    "podman-restart.service",
    "podman-auto-update.service",
    "podman-auto-update.timer",
    "libvirt-guests.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "logrotate.timer",
    "man-db.timer",
    "getty@tty1.service",
    "systemd-pstore.service",
];

/// The podman command for systemd hosts: this machine's podman with the lab's settings
/// (runc and cgroupfs: crun fails on this kernel).
pub(crate) fn podman(data_dir: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.env(
        "CONTAINERS_CONF",
        data_dir.join("etc-containers/containers.conf"),
    );
    cmd
}

impl LabHost {
    /// The overlay root of a systemd host, under the lab's run directory.
    fn systemd_root(&self) -> &Path {
        self.systemd
            .as_ref()
            .map(|s| s.root.as_path())
            .expect("a systemd host")
    }

    pub(crate) fn bring_up_systemd(&self, client_pubkey: &str) -> Result<(), LabError> {
        let systemd = self.systemd.as_ref().expect("a systemd host");
        mkdir(&self.dir)?;
        let key = self.generate_host_key()?;
        let root = self.systemd_root();
        mkdir(root)?;
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512m,mode=755", "vflab-systemd"])
            .arg(root))?;
        let merged = root.join("merged");
        for sub in ["upper", "work", "merged"] {
            mkdir(&root.join(sub))?;
        }
        run(Command::new("mount")
            .args(["-t", "overlay", "vflab-systemd-root", "-o"])
            .arg(format!(
                "lowerdir={ROOTFS_BIND},upperdir={},workdir={}",
                root.join("upper").display(),
                root.join("work").display()
            ))
            .arg(&merged))?;
        let etc = merged.join("etc");
        for unit in MASKED {
            let link = etc.join("systemd/system").join(unit);
            let _ = fs::remove_file(&link);
            symlink("/dev/null", &link)?;
        }
        write(&etc.join("hostname"), &format!("{}\n", self.name))?;
        for entry in read_dir(&etc.join("ssh"))? {
            if entry.starts_with("ssh_host_") {
                let _ = fs::remove_file(etc.join("ssh").join(&entry));
            }
        }
        copy(&key, &etc.join("ssh/ssh_host_ed25519_key"), 0o600)?;
        write(
            &etc.join("ssh/sshd_config.d/10-vflab.conf"),
            &format!(
                "ListenAddress {}:22\nHostKey /etc/ssh/ssh_host_ed25519_key\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n\
                 MaxStartups 500:30:1000\nUseDNS no\n",
                self.address
            ),
        )?;
        // A clean home: this machine's root .bashrc runs pyenv, which slows every session.
        for dotfile in [".bashrc", ".profile"] {
            copy(
                &Path::new("/etc/skel").join(dotfile),
                &merged.join("root").join(dotfile),
                0o644,
            )?;
        }
        let dot_ssh = merged.join("root/.ssh");
        mkdir(&dot_ssh)?;
        write(&dot_ssh.join("authorized_keys"), client_pubkey)?;
        // Day 0: the TCP socket on, no authentication; both sockets bound to this host.
        let address = self.libvirt_address();
        for (socket, port) in [
            ("libvirtd-tcp.socket", 16509),
            ("libvirtd-tls.socket", 16514),
        ] {
            let dir = etc.join(format!("systemd/system/{socket}.d"));
            mkdir(&dir)?;
            write(
                &dir.join("listen.conf"),
                &format!("[Socket]\nListenStream=\nListenStream={address}:{port}\n"),
            )?;
        }
        let wants = etc.join("systemd/system/sockets.target.wants");
        mkdir(&wants)?;
        let _ = fs::remove_file(wants.join("libvirtd-tcp.socket"));
        symlink(
            "/lib/systemd/system/libvirtd-tcp.socket",
            &wants.join("libvirtd-tcp.socket"),
        )?;
        let conf = etc.join("libvirt/libvirtd.conf");
        let mut text = fs::read_to_string(&conf).map_err(|source| LabError::Io {
            path: conf.clone(),
            source,
        })?;
        text.push_str("auth_tcp = \"none\"\n");
        // libvirt refuses to migrate between hosts with one host UUID (the machine's).
        text.push_str(&format!("host_uuid = \"{}\"\n", self.host_uuid()));
        write(&conf, &text)?;
        // What guests need in an unprivileged container (the host's business, as in the
        // Kolla hosts' start script): no mount namespace or cgroup controllers of QEMU's own,
        // no trusted xattrs, QEMU's limits as they are.
        let qemu_conf = etc.join("libvirt/qemu.conf");
        let mut text = fs::read_to_string(&qemu_conf).map_err(|source| LabError::Io {
            path: qemu_conf.clone(),
            source,
        })?;
        text.push_str(
            "namespaces = [ ]\ncgroup_controllers = [ ]\nremember_owner = 0\n\
             max_processes = 0\nmax_files = 0\n",
        );
        write(&qemu_conf, &text)?;
        if systemd.kolla_compute {
            write_nested_podman(&merged)?;
            let compute_dir = etc.join("kolla/nova-compute");
            mkdir(&compute_dir)?;
            self.write_day0_nova_compute(&compute_dir)?;
        }
        let hosts = self.dir.parent().expect("in a lab dir").join("hosts");
        let data_dir = self.dir.parent().expect("in a lab dir");
        run(podman(data_dir)
            .args(["run", "-d", "--name", &systemd.container])
            .args([
                "--systemd=always",
                "--network",
                "host",
                "--hostname",
                &self.name,
            ])
            // Its own podman must mount /proc and cgroups: only a host with nova_compute is
            // privileged (a privileged systemd shares more of this machine: /dev, /proc/sys).
            .args(systemd.kolla_compute.then_some("--privileged"))
            .args([
                "--ulimit",
                "nofile=20000:20000",
                "--ulimit",
                "nproc=32768:32768",
            ])
            .args([
                "--tmpfs",
                "/run:rw,notmpcopyup",
                "--tmpfs",
                "/tmp:rw,notmpcopyup",
            ])
            .arg("-v")
            .arg(format!("{}:/etc/hosts:ro", hosts.display()))
            .arg("--rootfs")
            .arg(&merged)
            .arg("/lib/systemd/systemd"))?;
        self.wait_for_systemd()?;
        if systemd.kolla_compute {
            self.start_nested_nova_compute(data_dir)?;
        }
        Ok(())
    }

    /// Kolla's nova_compute as in the other lab hosts (the lab's start scripts, this
    /// machine's root as the image), run by the host's own podman.
    fn start_nested_nova_compute(&self, data_dir: &Path) -> Result<(), LabError> {
        let bin = data_dir.join("bin");
        let mut script = String::from(
            "set -e\nmkdir -p /run/vfroot\nmount --bind / /run/vfroot\n\
             podman run -d --name nova_compute --network host --cgroupns=private \
             --stop-timeout 5 -v /etc/kolla/nova-compute:/var/lib/kolla/config_files:ro",
        );
        for (name, _) in crate::SCRIPTS {
            let path = bin.join(name);
            script.push_str(&format!(" -v {}:/usr/local/bin/{name}:ro", path.display()));
        }
        script.push_str(
            " --rootfs /run/vfroot:O dumb-init --single-child -- /usr/local/bin/kolla_start\n",
        );
        run(self.command("sh").args(["-c", &script])).map(drop)
    }

    /// Until sshd answers and systemd finished starting (running, or degraded by a unit this
    /// machine's root brings along).
    fn wait_for_systemd(&self) -> Result<(), LabError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let state = self.command("systemctl").arg("is-system-running").output();
            let state = state.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
            let sshd = std::net::TcpStream::connect((self.address, 22)).is_ok();
            if sshd && matches!(state.as_deref(), Ok("running" | "degraded")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(LabError::Timeout(format!(
            "systemd and sshd on {}",
            self.name
        )))
    }

    /// A command run inside a systemd host's container.
    pub(crate) fn systemd_command(&self, program: &str) -> Command {
        let systemd = self.systemd.as_ref().expect("a systemd host");
        let data_dir = self.dir.parent().expect("in a lab dir");
        let mut cmd = podman(data_dir);
        cmd.args(["exec", "-i", &systemd.container, program]);
        cmd
    }
}

/// A podman for the host itself (Kolla's nova_compute beside a host libvirtd): its own store
/// (vfs: no overlay on the host's overlay root), the machine's podman store hidden (it shows
/// through the lower layer), runc and cgroupfs as on this machine. The host is privileged:
/// its podman mounts /proc and cgroups.
fn write_nested_podman(merged: &Path) -> Result<(), LabError> {
    let store = merged.join("var/lib/containers/storage");
    // In the overlay's upper layer only: a whiteout, the machine's store stays as it is.
    if store.exists() {
        fs::remove_dir_all(&store).map_err(|source| LabError::Io {
            path: store.clone(),
            source,
        })?;
    }
    let conf = merged.join("etc/containers");
    mkdir(&conf)?;
    write(
        &conf.join("storage.conf"),
        "[storage]\ndriver = \"vfs\"\nrunroot = \"/run/containers/storage\"\n\
         graphroot = \"/var/lib/containers/storage\"\n",
    )?;
    write(
        &conf.join("containers.conf"),
        "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
         [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
    )
}

/// Removes the systemd hosts of a lab: their containers, overlays and upper layers.
pub(crate) fn tear_down(id: u32, run_dir: &Path, data_dir: &Path) -> Vec<LabError> {
    let mut errors = Vec::new();
    let dir = run_dir.join("systemd");
    for name in read_dir(&dir).unwrap_or_default() {
        let root = dir.join(&name);
        let container = container_name(id, &name);
        let mut rm = podman(data_dir);
        rm.args(["rm", "--force", "--time", "0", &container]);
        if let Err(e) = run(&mut rm) {
            if !e.to_string().contains("no such container") {
                errors.push(e);
            }
        }
        for mount in [root.join("merged"), root.clone()] {
            if sys::is_mount_point(&mount) {
                if let Err(e) = sys::umount(&mount) {
                    errors.push(e);
                }
            }
        }
    }
    errors
}

/// What a systemd host needs beyond [`LabHost`]'s fields.
#[derive(Debug, Clone)]
pub struct SystemdHost {
    /// The podman container that is the host.
    pub container: String,
    /// Its overlay root: a tmpfs with upper/, work/ and merged/.
    pub(crate) root: PathBuf,
    /// Kolla with `enable_nova_libvirt_container: false`: the host also runs Kolla's
    /// nova_compute container (podman inside the host), beside its own libvirtd.
    pub kolla_compute: bool,
}

impl SystemdHost {
    pub(crate) fn new(id: u32, name: &str, run_dir: &Path, kolla_compute: bool) -> SystemdHost {
        SystemdHost {
            container: container_name(id, name),
            root: run_dir.join("systemd").join(name),
            kolla_compute,
        }
    }
}

fn container_name(id: u32, name: &str) -> String {
    format!("vflab{id}-{name}")
}

fn read_dir(dir: &Path) -> Result<Vec<String>, LabError> {
    let entries = fs::read_dir(dir).map_err(|source| LabError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect())
}

fn symlink(target: &str, link: &Path) -> Result<(), LabError> {
    std::os::unix::fs::symlink(target, link).map_err(|source| LabError::Io {
        path: link.to_path_buf(),
        source,
    })
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    fs::copy(from, to).map_err(|source| LabError::Io {
        path: to.to_path_buf(),
        source,
    })?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode)).map_err(|source| LabError::Io {
        path: to.to_path_buf(),
        source,
    })
}
