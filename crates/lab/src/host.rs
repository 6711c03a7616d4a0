//! One lab host: a persistent mount+UTS namespace with private /etc/kolla, /root, podman
//! storage and /etc/hosts, its own sshd on its own loopback address, and two containers (podman's,
//! or those of its own dockerd: see `docker`).

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::docker;
use crate::sys::{self, run};
use crate::{Containers, Engine, LabError, ROOTFS_BIND};

/// Directories of the real root that every lab host covers with a private bind mount.
const PRIVATE_DIRS: [(&str, &str); 8] = [
    ("kolla", "/etc/kolla"),
    ("storage", "/var/lib/containers"),
    ("run-containers", "/run/containers"),
    ("run-libpod", "/run/libpod"),
    ("root", "/root"),
    ("../etc-containers", "/etc/containers"),
    ("../hosts", "/etc/hosts"),
    // The lab's sudo rules (see `Lab::add_user`), never the machine's.
    ("../sudoers.d", "/etc/sudoers.d"),
];

/// A host's migration network, apart from its SSH address (see `LabOptions::migration_network`).
#[derive(Debug, Clone)]
pub struct Migration {
    /// A bridge of its own on this machine (the lab's hosts share its network stack).
    pub interface: String,
    pub address: Ipv4Addr,
}

#[derive(Debug, Clone)]
pub struct LabHost {
    pub name: String,
    /// Where its sshd listens (`ansible_host`).
    pub address: Ipv4Addr,
    /// Its migration interface and address, when not the SSH address.
    pub migration: Option<Migration>,
    /// The engine that runs this host's containers (`format!("{} ps", host.engine)`).
    pub engine: Engine,
    /// Host-side directory holding this host's private trees and sshd files.
    pub dir: PathBuf,
    pub(crate) ns_mnt: PathBuf,
    pub(crate) ns_uts: PathBuf,
    /// Set for a host whose libvirtd runs under systemd (see `systemd`): no namespace, no
    /// Kolla containers; the host is a container booting systemd.
    pub systemd: Option<crate::systemd::SystemdHost>,
}

/// What every host of one lab shares.
pub(crate) struct Shared<'a> {
    pub client_pubkey: &'a str,
    pub containers: Containers,
    /// Present when the lab has docker hosts.
    pub docker: Option<&'a docker::LabFiles>,
    /// The lab's scripts (`<lab>/bin`).
    pub bin: &'a Path,
}

impl LabHost {
    pub(crate) fn new(
        name: String,
        address: Ipv4Addr,
        migration: Option<Migration>,
        engine: Engine,
        data_dir: &Path,
        ns_dir: &Path,
        systemd: Option<crate::systemd::SystemdHost>,
    ) -> Self {
        LabHost {
            systemd,
            migration,
            engine,
            dir: data_dir.join(&name),
            ns_mnt: ns_dir.join(format!("{name}.mnt")),
            ns_uts: ns_dir.join(format!("{name}.uts")),
            name,
            address,
        }
    }

    /// Where its libvirtd listens and its name resolves: the migration address if it has one.
    pub fn libvirt_address(&self) -> Ipv4Addr {
        self.migration.as_ref().map_or(self.address, |m| m.address)
    }

    /// A UUID of this host's own (from its address, unique in the lab), for libvirtd's
    /// `host_uuid`.
    pub fn host_uuid(&self) -> String {
        let [a, b, c, d] = self.address.octets();
        format!("7666666c-6162-4000-8000-0000{a:02x}{b:02x}{c:02x}{d:02x}")
    }

    /// Host-side path of a file under this host's `/etc/kolla`.
    pub fn kolla_path(&self, relative: &str) -> PathBuf {
        self.dir.join("kolla").join(relative)
    }

    /// A command run inside this host's namespaces (as sshd would run it).
    pub fn command(&self, program: &str) -> Command {
        if self.systemd.is_some() {
            return self.systemd_command(program);
        }
        sys::nsenter(&self.ns_mnt, &self.ns_uts, program)
    }

    /// Runs `sh -c script` inside the host and returns its output, failing on non-zero exit.
    pub fn sh(&self, script: &str) -> Result<Output, LabError> {
        run(self.command("sh").args(["-c", script]))
    }

    pub(crate) fn bring_up(&self, shared: &Shared) -> Result<(), LabError> {
        if self.systemd.is_some() {
            return self.bring_up_systemd(shared.client_pubkey);
        }
        self.write_files(shared)?;
        self.create_namespace(shared)?;
        self.start_sshd()?;
        if let (Engine::Docker, Some(files)) = (self.engine, shared.docker) {
            docker::start(self, files)?;
        }
        if shared.containers == Containers::StandIn {
            return Ok(());
        }
        self.start_containers()
    }

    /// What the stand-in engine of a `Containers::StandIn` host was asked, one call per line
    /// (`restart -- nova_libvirt`, ...); empty for other hosts.
    pub fn engine_calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("storage/standin/calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The stand-in engine's state: a store listing both containers (what virtfleet reads
    /// first) and an empty call log.
    fn write_standin_state(&self) -> Result<(), LabError> {
        let store = self.dir.join("storage/storage/overlay-containers");
        mkdir(&store)?;
        let [_, b, c, d] = self.address.octets();
        let mut text = String::from("[\n");
        for (i, name) in ["nova_libvirt", "nova_compute"].iter().enumerate() {
            let id = format!("{:0<64}", format!("5a{b:02x}{c:02x}{d:02x}{i:02x}"));
            let comma = if i == 0 { "," } else { "" };
            text.push_str(&format!(
                "{{\"id\":\"{id}\",\"names\":[\"{name}\"]}}{comma}\n"
            ));
        }
        text.push_str("]\n");
        write(&store.join("containers.json"), &text)?;
        mkdir(&self.dir.join("storage/standin"))?;
        write(&self.dir.join("storage/standin/calls"), "")
    }

    fn write_files(&self, shared: &Shared) -> Result<(), LabError> {
        for (sub, _) in PRIVATE_DIRS
            .iter()
            .filter(|(sub, _)| !sub.starts_with(".."))
        {
            mkdir(&self.dir.join(sub))?;
        }
        if self.engine == Engine::Docker {
            docker::write_host_files(&self.dir)?;
        }
        mkdir(&self.dir.join("root/.ssh"))?;
        write(
            &self.dir.join("root/.ssh/authorized_keys"),
            shared.client_pubkey,
        )?;
        self.write_day0_kolla(shared.containers)?;
        if shared.containers == Containers::StandIn {
            self.write_standin_state()?;
        }
        self.generate_host_key()?;
        write(&self.dir.join("sshd_config"), &self.sshd_config())
    }

    /// A new sshd host key in the host's directory; its path.
    pub(crate) fn generate_host_key(&self) -> Result<PathBuf, LabError> {
        let key = self.dir.join("ssh_host_ed25519_key");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(&self.name)
            .arg("-f")
            .arg(&key))?;
        Ok(key)
    }

    /// The state of a Kolla compute node before hardening: libvirt on plain TCP, no auth
    /// (OSSN-0007), and nova-compute pointed at it.
    fn write_day0_kolla(&self, containers: Containers) -> Result<(), LabError> {
        let libvirt_dir = self.dir.join("kolla/nova-libvirt");
        let compute_dir = self.dir.join("kolla/nova-compute");
        mkdir(&libvirt_dir)?;
        mkdir(&compute_dir)?;
        let libvirtd_conf = format!(
            "listen_tcp = 1\nlisten_tls = 0\nauth_tcp = \"none\"\ntcp_port = \"16509\"\n\
             listen_addr = \"{}\"\nlog_outputs = \"3:stderr\"\n",
            self.libvirt_address()
        );
        write(&libvirt_dir.join("libvirtd.conf"), &libvirtd_conf)?;
        let libvirt_command = match containers {
            // As Kolla's image: virtlogd, then libvirtd (the lab's stand-in script).
            Containers::Libvirt => "/usr/local/bin/kolla_nova_libvirt_start",
            Containers::Light | Containers::StandIn => "/usr/local/bin/sleep_forever",
        };
        let libvirt_json = serde_json::json!({
            "command": libvirt_command,
            "config_files": [{
                "source": "/var/lib/kolla/config_files/libvirtd.conf",
                "dest": "/etc/libvirt/libvirtd.conf",
                "owner": "root",
                "perm": "0600"
            }]
        });
        write(
            &libvirt_dir.join("config.json"),
            &format!("{libvirt_json:#}\n"),
        )?;
        self.write_day0_nova_compute(&compute_dir)
    }

    /// Kolla's nova_compute files before hardening: nova.conf pointed at libvirt over TCP.
    pub(crate) fn write_day0_nova_compute(&self, compute_dir: &Path) -> Result<(), LabError> {
        // As kolla-ansible writes it: much more than the libvirt settings (a deploy must keep
        // all of it; the password is a stand-in a diff must never show).
        let nova_conf = format!(
            "[DEFAULT]\ndebug = False\n\
             transport_url = rabbit://openstack:{secret}@10.255.0.1:5672//\n\n\
             [libvirt]\nconnection_uri = qemu+tcp://{}/system\nvirt_type = qemu\n\n\
             [keystone_authtoken]\nauth_url = http://10.255.0.1:5000\n\
             password = {secret}\n",
            self.libvirt_address(),
            secret = crate::LAB_NOVA_SECRET,
        );
        write(&compute_dir.join("nova.conf"), &nova_conf)?;
        let compute_json = serde_json::json!({
            "command": "/usr/local/bin/sleep_forever",
            "config_files": [{
                "source": "/var/lib/kolla/config_files/nova.conf",
                "dest": "/etc/nova/nova.conf",
                "owner": "nova",
                "perm": "0600"
            }, {
                "source": "/var/lib/kolla/config_files/ceph.conf",
                "dest": "/etc/ceph/ceph.conf",
                "owner": "nova",
                "perm": "0600",
                "optional": true
            }],
            "permissions": [{"path": "/var/log/kolla/nova", "owner": "nova:nova"}]
        });
        write(
            &compute_dir.join("config.json"),
            &format!("{compute_json:#}\n"),
        )
    }

    fn sshd_config(&self) -> String {
        let dir = self.dir.display();
        format!(
            "ListenAddress {addr}:22\n\
             HostKey {dir}/ssh_host_ed25519_key\n\
             PidFile {dir}/sshd.pid\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             StrictModes no\n\
             AuthorizedKeysFile .ssh/authorized_keys {dir}/../authorized_keys.%u\n\
             UseDNS no\n\
             PrintMotd no\n\
             MaxStartups 500:30:1000\n\
             LogLevel VERBOSE\n\
             Subsystem sftp /usr/lib/openssh/sftp-server\n",
            addr = self.address
        )
    }

    fn create_namespace(&self, shared: &Shared) -> Result<(), LabError> {
        write(&self.ns_mnt, "")?;
        write(&self.ns_uts, "")?;
        let mut script = format!("set -e\nhostname {}\n", self.name);
        if self.engine == Engine::Docker {
            script.push_str(&docker::namespace_script(&self.dir));
        }
        for (sub, target) in PRIVATE_DIRS {
            let source = self.dir.join(sub);
            script.push_str(&format!("mount --bind {} {target}\n", source.display()));
        }
        if shared.containers == Containers::StandIn {
            let standin = shared.bin.join(crate::STANDIN_ENGINE.0);
            script.push_str(&format!(
                "mount --bind {} /usr/bin/podman\n",
                standin.display()
            ));
        }
        // podman's lock segment lives in /dev/shm; hosts must not share it.
        script.push_str("mount -t tmpfs -o size=16m,mode=1777 tmpfs /dev/shm\n");
        run(Command::new("unshare")
            .arg(format!("--mount={}", self.ns_mnt.display()))
            .arg(format!("--uts={}", self.ns_uts.display()))
            .args(["--propagation", "private", "sh", "-c", &script]))?;
        Ok(())
    }

    /// This host's sshd log (LogLevel VERBOSE: every accepted login).
    pub fn sshd_log(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }

    /// How many sessions (exec channels: one per remote command) sshd has started on this
    /// host, from its log: tests count round trips with it.
    pub fn sessions_started(&self) -> usize {
        self.sshd_log_lines_with("Starting session:")
    }

    /// How many logins sshd has accepted on this host, from its log: one per connection.
    pub fn logins(&self) -> usize {
        self.sshd_log_lines_with("Accepted publickey for ")
    }

    fn sshd_log_lines_with(&self, text: &str) -> usize {
        fs::read_to_string(self.sshd_log())
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(text))
            .count()
    }

    pub fn sshd_pid(&self) -> Option<i32> {
        fs::read_to_string(self.dir.join("sshd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Starts sshd inside the persistent namespace (so restarting it never disturbs podman).
    pub fn start_sshd(&self) -> Result<(), LabError> {
        if self.systemd.is_some() {
            return run(self.command("systemctl").args(["start", "ssh.service"])).map(drop);
        }
        let _ = fs::remove_file(self.dir.join("sshd.pid"));
        run(self
            .command("/usr/sbin/sshd")
            .arg("-f")
            .arg(self.dir.join("sshd_config"))
            .arg("-E")
            .arg(self.sshd_log()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.sshd_pid().is_some_and(sys::alive) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(LabError::Timeout(format!("sshd on {}", self.name)))
    }

    pub fn stop_sshd(&self) {
        if self.systemd.is_some() {
            let _ = run(self.command("systemctl").args(["stop", "ssh.service"]));
            return;
        }
        if let Some(pid) = self.sshd_pid() {
            sys::terminate(pid);
        }
        let _ = fs::remove_file(self.dir.join("sshd.pid"));
    }

    /// The public half of this host's ssh key, as `type base64`.
    pub fn host_public_key(&self) -> Result<String, LabError> {
        let path = self.dir.join("ssh_host_ed25519_key.pub");
        let text = fs::read_to_string(&path).map_err(|source| LabError::Io { path, source })?;
        Ok(text
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "))
    }

    fn start_containers(&self) -> Result<(), LabError> {
        for container in ["nova_libvirt", "nova_compute"] {
            self.run_container(container)?;
        }
        Ok(())
    }

    /// Removes a container and creates it again, as an operator or Kolla's deploy would: a
    /// new container ID, and nothing of the old one's writable layer (e.g. its SASL users).
    pub fn recreate_container(&self, container: &str) -> Result<(), LabError> {
        let mut rm = self.command(self.engine.as_str());
        rm.args(["rm", "--force"]);
        if self.engine == Engine::Podman {
            rm.args(["--time", "0"]);
        }
        run(rm.arg(container))?;
        self.run_container(container)
    }

    fn run_container(&self, container: &str) -> Result<(), LabError> {
        let kolla_dir = format!("/etc/kolla/{}", container.replace('_', "-"));
        let bin_dir = self
            .dir
            .parent()
            .expect("host dir in a lab dir")
            .join("bin");
        let mut cmd = self.command(self.engine.as_str());
        cmd.args(["run", "-d", "--name", container, "--network", "host"])
            .args(["--stop-timeout", "5", "-v"])
            .arg(format!("{kolla_dir}:/var/lib/kolla/config_files:ro"));
        if container == "nova_libvirt" {
            cmd.arg("--privileged");
        }
        if self.engine == Engine::Docker {
            docker::run_args(&mut cmd, &bin_dir);
        } else {
            podman_run_args(&mut cmd, &bin_dir);
        }
        // dumb-init as PID 1, as in Kolla's images: it reaps the daemonized qemu processes
        // libvirtd spawns to probe capabilities (libvirtd as PID 1 leaves them zombies and
        // then waits 40 s per probe for them to die) and forwards SIGTERM.
        cmd.args([
            "dumb-init",
            "--single-child",
            "--",
            "/usr/local/bin/kolla_start",
        ]);
        run(&mut cmd)?;
        Ok(())
    }

    /// Removes the containers, stops sshd, kills anything else left in the namespace and
    /// releases the namespace. Best effort: every step runs even when one fails.
    pub(crate) fn tear_down(ns_mnt: &Path, ns_uts: &Path, dir: &Path) -> Vec<LabError> {
        let mut errors = Vec::new();
        let mounted = sys::is_mount_point(ns_mnt);
        let docker_host = docker::is_docker_host(dir);
        if docker_host {
            docker::stop(ns_mnt, ns_uts, dir, &mut errors);
        } else if mounted {
            let mut rm = sys::nsenter(ns_mnt, ns_uts, "podman");
            rm.args(["rm", "--all", "--force", "--time", "0"]);
            if let Err(e) = run(&mut rm) {
                errors.push(e);
            }
        }
        if let Some(pid) = fs::read_to_string(dir.join("sshd.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            sys::terminate(pid);
        }
        if mounted {
            if let Ok(meta) = fs::metadata(ns_mnt) {
                sys::kill_namespace_members(meta.ino());
            }
            if docker_host {
                docker::unmount_leftovers(ns_mnt, ns_uts, &mut errors);
            }
        }
        for ns in [ns_mnt, ns_uts] {
            if sys::is_mount_point(ns) {
                if let Err(e) = sys::umount(ns) {
                    errors.push(e);
                }
            }
        }
        errors
    }
}

/// `podman run` arguments: the image is the machine's root through an overlay, the lab's scripts
/// bound over it.
fn podman_run_args(cmd: &mut Command, bin_dir: &Path) {
    for (script, _) in crate::SCRIPTS {
        cmd.arg("-v").arg(format!(
            "{}:/usr/local/bin/{script}:ro",
            bin_dir.join(script).display()
        ));
    }
    cmd.args(["--rootfs", &format!("{ROOTFS_BIND}:O")]);
}

pub(crate) fn mkdir(path: &Path) -> Result<(), LabError> {
    fs::create_dir_all(path).map_err(|source| LabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn write(path: &Path, text: &str) -> Result<(), LabError> {
    fs::write(path, text).map_err(|source| LabError::Io {
        path: path.to_path_buf(),
        source,
    })
}
