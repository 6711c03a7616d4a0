//! The local fleet lab: N real "hosts" on this machine, each a persistent mount+UTS namespace
//! with its own hostname, loopback address, OpenSSH sshd, private /etc/kolla and /root, and a
//! container engine (podman, or a dockerd of its own: [`Engine`]) holding `nova_libvirt` (a real
//! `libvirtd --listen`) and `nova_compute`.
//!
//! Used by the end-to-end tests, the benchmark and the demo. Needs root. A [`Lab`] tears itself
//! down when dropped (also while a test panics); [`down_all`] removes leftovers of killed runs.

mod docker;
mod host;
mod sys;
mod systemd;

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use host::{mkdir, write, Shared};
pub use host::{LabHost, Migration};
use sys::run;
pub use systemd::SystemdHost;

/// Namespace files and the per-lab slot markers (tmpfs).
pub const RUN_ROOT: &str = "/run/vflab";
/// Host trees: podman storage, /etc/kolla, /root, sshd keys.
pub const DATA_ROOT: &str = "/var/lib/vflab";
/// A non-recursive bind mount of `/`, the containers' image (as an overlay, so their writes
/// stay private). It must stay outside [`DATA_ROOT`]: a recursive delete that crossed it would
/// delete the real root filesystem.
pub const ROOTFS_BIND: &str = "/var/lib/vflab-root";

/// Hosts per lab: host n is at 127.<lab id>.<(n - 1) / 254>.<(n - 1) % 254 + 1>, so the
/// first 254 are 127.<lab id>.0.1 to .254.
pub const MAX_HOSTS: usize = 2032;

/// Hosts per lab with a migration network (one /24: 198.18.<lab id>.n).
pub const MAX_MIGRATION_HOSTS: usize = 254;

/// The stand-in secret in every lab host's day-0 `nova.conf` (messaging and keystone
/// passwords, as kolla-ansible writes them): tests check it survives a deploy and is never shown.
pub const LAB_NOVA_SECRET: &str = "Lab-Nova-Secret-51c2";

const SCRIPTS: [(&str, &str); 4] = [
    (
        "kolla_set_configs",
        include_str!("../assets/kolla_set_configs"),
    ),
    ("kolla_start", include_str!("../assets/kolla_start")),
    (
        "kolla_nova_libvirt_start",
        include_str!("../assets/kolla_nova_libvirt_start"),
    ),
    ("sleep_forever", include_str!("../assets/sleep_forever")),
];

/// The stand-in engine of [`Containers::StandIn`] hosts (bound over `/usr/bin/podman`).
const STANDIN_ENGINE: (&str, &str) = ("standin_engine", include_str!("../assets/standin_engine"));

/// What runs in the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Containers {
    /// nova_libvirt runs a real libvirtd (the default).
    Libvirt,
    /// Both containers only sleep: for benchmarks at sizes where 200 libvirtds cost too much.
    Light,
    /// No container runs: podman is a stand-in script that records its calls and answers for
    /// the two containers (`assets/standin_engine`), so a host is sshd and files only and
    /// 1,000 fit on one machine. Podman hosts only.
    StandIn,
}

/// What kind of host a lab host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// A Kolla compute node: nova_libvirt and nova_compute containers (the default).
    #[default]
    Kolla,
    /// A plain KVM host: libvirtd under systemd, socket activation (see `systemd.rs`).
    Systemd,
    /// Kolla with `enable_nova_libvirt_container: false`: a systemd host whose libvirtd is
    /// the host's, plus Kolla's nova_compute container (podman inside the host).
    KollaHostLibvirt,
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kolla" => Ok(Kind::Kolla),
            "systemd" => Ok(Kind::Systemd),
            "kolla-host-libvirt" => Ok(Kind::KollaHostLibvirt),
            _ => Err(format!(
                "{s}: not a host kind (kolla, systemd, kolla-host-libvirt)"
            )),
        }
    }
}

/// A lab host's container engine: what `kolla_container_engine` says for it in the lab's
/// inventory, and the command that manages its containers on the host (`podman`, `docker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// podman with the lab's containers.conf (the default).
    #[default]
    Podman,
    /// A real Docker Engine: the host's own `dockerd` (Debian's docker.io), socket at the host's
    /// `/var/run/docker.sock`, data root `/var/lib/docker`, as on a Kolla host.
    Docker,
}

impl Engine {
    /// The command name, which is also Kolla's name for the engine.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "podman" => Ok(Engine::Podman),
            "docker" => Ok(Engine::Docker),
            _ => Err(format!("{s}: not a container engine (podman or docker)")),
        }
    }
}

/// What to bring up: `LabOptions::new(3).engine(Engine::Docker).up()`. Defaults: real libvirtd
/// containers on podman, as [`Lab::up`].
#[derive(Debug, Clone)]
pub struct LabOptions {
    hosts: usize,
    containers: Containers,
    /// Each host gets a migration interface and address of its own, apart from its SSH
    /// address: libvirtd listens there and host names resolve to it.
    migration_network: bool,
    /// Engines of compute01, compute02, ..., repeated when shorter than the lab.
    engines: Vec<Engine>,
    /// Kinds of compute01, compute02, ..., repeated likewise.
    kinds: Vec<Kind>,
}

impl LabOptions {
    pub fn new(hosts: usize) -> LabOptions {
        LabOptions {
            hosts,
            containers: Containers::Libvirt,
            engines: vec![Engine::Podman],
            migration_network: false,
            kinds: vec![Kind::Kolla],
        }
    }

    /// Host n (compute0n) is of kind `kinds[(n - 1) % kinds.len()]`; empty means Kolla.
    pub fn kinds(mut self, kinds: &[Kind]) -> LabOptions {
        self.kinds = if kinds.is_empty() {
            vec![Kind::Kolla]
        } else {
            kinds.to_vec()
        };
        self
    }

    /// The kind of host `n` (1 for compute01).
    pub fn kind_of(&self, n: usize) -> Kind {
        self.kinds[(n - 1) % self.kinds.len()]
    }

    /// Hosts with a migration network apart from SSH: host n gets a bridge `vfm<lab>-<n>`
    /// holding 198.18.<lab>.<n>, libvirtd listens there, host names resolve to it, and the
    /// inventory names only the interface (`migration_interface`): its address comes from
    /// the host's facts, as in Kolla. Without it the inventory sets the SSH address as
    /// `migration_interface_address` (the lab's hosts share this machine's interfaces).
    pub fn migration_network(mut self) -> LabOptions {
        self.migration_network = true;
        self
    }

    pub fn containers(mut self, containers: Containers) -> LabOptions {
        self.containers = containers;
        self
    }

    /// One engine for every host.
    pub fn engine(self, engine: Engine) -> LabOptions {
        self.engines(&[engine])
    }

    /// A mixed lab: host n (compute0n) runs `engines[(n - 1) % engines.len()]`, so
    /// `[Docker, Podman]` alternates starting with docker. An empty list means podman.
    pub fn engines(mut self, engines: &[Engine]) -> LabOptions {
        self.engines = if engines.is_empty() {
            vec![Engine::Podman]
        } else {
            engines.to_vec()
        };
        self
    }

    /// The engine of host `n` (1 for compute01).
    pub fn engine_of(&self, n: usize) -> Engine {
        self.engines[(n - 1) % self.engines.len()]
    }

    pub fn up(&self) -> Result<Lab, LabError> {
        Lab::up_options(self)
    }

    /// Refuses combinations the lab cannot build.
    fn check(&self) -> Result<(), LabError> {
        if self.migration_network && self.hosts > MAX_MIGRATION_HOSTS {
            return Err(LabError::Options(format!(
                "a migration network holds {MAX_MIGRATION_HOSTS} hosts at most"
            )));
        }
        if self.containers == Containers::StandIn {
            let all_kolla_podman = (1..=self.hosts.min(self.engines.len() * self.kinds.len()))
                .all(|n| self.engine_of(n) == Engine::Podman && self.kind_of(n) == Kind::Kolla);
            if !all_kolla_podman {
                return Err(LabError::Options(
                    "hosts without containers are Kolla hosts on podman only".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Host n's SSH address in lab `id` (see [`MAX_HOSTS`]).
fn host_address(id: u32, n: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        id as u8,
        ((n - 1) / 254) as u8,
        ((n - 1) % 254 + 1) as u8,
    )
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab: cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("lab: `{command}` exited with {status}: {stderr}")]
    Command {
        command: String,
        status: i32,
        stderr: String,
    },
    #[error("lab: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lab: timed out waiting for {0}")]
    Timeout(String),
    #[error("lab: no free lab slot under {RUN_ROOT} (run `virtfleet-lab down`)")]
    NoFreeSlot,
    #[error("lab: refusing to delete {path}: mount points inside: {mounts:?}")]
    MountsInside { path: PathBuf, mounts: Vec<String> },
    #[error("lab: {0} hosts asked for; a lab has 1 to {MAX_HOSTS}")]
    Size(usize),
    #[error("lab: {0}")]
    Options(String),
    #[error("lab: the lab needs root")]
    NotRoot,
}

pub struct Lab {
    pub id: u32,
    pub hosts: Vec<LabHost>,
    run_dir: PathBuf,
    data_dir: PathBuf,
    /// False once torn down or handed over with [`Lab::keep`].
    owned: bool,
}

impl Lab {
    /// Brings up `count` hosts named compute01.. with real libvirtd containers.
    pub fn up(count: usize) -> Result<Lab, LabError> {
        Lab::up_with(count, Containers::Libvirt)
    }

    pub fn up_with(count: usize, containers: Containers) -> Result<Lab, LabError> {
        LabOptions::new(count).containers(containers).up()
    }

    fn up_options(options: &LabOptions) -> Result<Lab, LabError> {
        let count = options.hosts;
        if !(1..=MAX_HOSTS).contains(&count) {
            return Err(LabError::Size(count));
        }
        options.check()?;
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(LabError::NotRoot);
        }
        let id = claim_slot()?;
        let mut lab = Lab {
            id,
            hosts: Vec::new(),
            run_dir: Path::new(RUN_ROOT).join(format!("lab{id}")),
            data_dir: Path::new(DATA_ROOT).join(format!("lab{id}")),
            owned: true,
        };
        // From here on, Drop cleans up whatever part was built.
        lab.build(options)?;
        Ok(lab)
    }

    fn build(&mut self, options: &LabOptions) -> Result<(), LabError> {
        let ns_dir = self.run_dir.join("ns");
        mkdir(&ns_dir)?;
        // Namespace files can only be bind targets on a private mount.
        run(Command::new("mount")
            .arg("--bind")
            .arg(&ns_dir)
            .arg(&ns_dir))?;
        run(Command::new("mount").arg("--make-private").arg(&ns_dir))?;
        ensure_rootfs_bind()?;
        for dir in [
            "/etc/kolla",
            "/var/lib/containers",
            "/run/containers",
            "/run/libpod",
            "/etc/sudoers.d",
        ] {
            mkdir(Path::new(dir))?;
        }
        mkdir(&self.data_dir)?;
        self.hosts = (1..=options.hosts)
            .map(|n| {
                let name = format!("compute{n:02}");
                let address = host_address(self.id, n);
                let migration = options.migration_network.then(|| Migration {
                    interface: format!("{}{}-{n}", BRIDGE_PREFIX, self.id),
                    address: Ipv4Addr::new(198, 18, self.id as u8, n as u8),
                });
                let engine = options.engine_of(n);
                let kind = options.kind_of(n);
                let systemd = (kind != Kind::Kolla).then(|| {
                    let kolla = kind == Kind::KollaHostLibvirt;
                    systemd::SystemdHost::new(self.id, &name, &self.run_dir, kolla)
                });
                LabHost::new(
                    name,
                    address,
                    migration,
                    engine,
                    &self.data_dir,
                    &ns_dir,
                    systemd,
                )
            })
            .collect();
        for m in self.hosts.iter().filter_map(|h| h.migration.as_ref()) {
            let ip = |args: &[&str]| run(Command::new("ip").args(args));
            ip(&["link", "add", &m.interface, "type", "bridge"])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/32", m.address),
                "dev",
                &m.interface,
            ])?;
            ip(&["link", "set", &m.interface, "up"])?;
        }
        self.write_shared_files()?;
        let docker = if self
            .hosts
            .iter()
            .any(|h| h.engine == Engine::Docker && h.systemd.is_none())
        {
            Some(docker::LabFiles::write(&self.data_dir)?)
        } else {
            None
        };
        let client_pubkey = read(&self.data_dir.join("id_ed25519.pub"))?;
        let shared = Shared {
            client_pubkey: &client_pubkey,
            containers: options.containers,
            docker: docker.as_ref(),
            bin: &self.data_dir.join("bin"),
        };
        for_each_parallel(&self.hosts, |host| host.bring_up(&shared))?;
        self.write_known_hosts()?;
        self.write_inventory()
    }

    fn write_shared_files(&self) -> Result<(), LabError> {
        let bin = self.data_dir.join("bin");
        mkdir(&bin)?;
        for (name, text) in SCRIPTS.iter().chain([&STANDIN_ENGINE]) {
            let path = bin.join(name);
            write(&path, text)?;
            set_mode(&path, 0o755)?;
        }
        let key = self.client_key();
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "virtfleet-lab", "-f"])
            .arg(&key))?;
        let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for host in &self.hosts {
            hosts.push_str(&format!("{} {}\n", host.libvirt_address(), host.name));
        }
        write(&self.data_dir.join("hosts"), &hosts)?;
        mkdir(&self.data_dir.join("sudoers.d"))?;
        // podman on this kernel needs runc + cgroupfs and lower rlimits than its defaults.
        let etc = self.data_dir.join("etc-containers");
        mkdir(&etc)?;
        run(Command::new("cp")
            .arg("-a")
            .arg("/etc/containers/.")
            .arg(&etc))?;
        write(
            &etc.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
    }

    fn write_known_hosts(&self) -> Result<(), LabError> {
        let mut text = String::new();
        for host in &self.hosts {
            let key = host.host_public_key()?;
            text.push_str(&format!("{},{} {key}\n", host.name, host.address));
        }
        write(&self.known_hosts(), &text)
    }

    /// Kolla hosts in group compute, plain (systemd) hosts in group libvirt_hosts (the
    /// groups of playbooks/kolla.yml and libvirt-host.yml). The group's engine is the first
    /// Kolla host's; a host with another engine says so on its own line (an inventory host
    /// variable, which Kolla lets override the group's).
    fn write_inventory(&self) -> Result<(), LabError> {
        let mut text = String::from("# Written by virtfleet-lab: one line per lab host.\n");
        // A Kolla host with libvirtd on the host is in both groups (both playbooks apply).
        let kolla: Vec<&LabHost> = self
            .hosts
            .iter()
            .filter(|h| h.systemd.as_ref().is_none_or(|s| s.kolla_compute))
            .collect();
        let plain: Vec<&LabHost> = self.hosts.iter().filter(|h| h.systemd.is_some()).collect();
        let group_engine = kolla
            .iter()
            .find(|h| h.systemd.is_none())
            .map_or(Engine::Podman, |h| h.engine);
        for (group, hosts) in [("compute", &kolla), ("libvirt_hosts", &plain)] {
            if hosts.is_empty() {
                continue;
            }
            text.push_str(&format!("[{group}]\n"));
            for host in hosts.iter() {
                text.push_str(&format!("{} ansible_host={}", host.name, host.address));
                match &host.migration {
                    Some(m) => text.push_str(&format!(" migration_interface={}", m.interface)),
                    None => {
                        text.push_str(&format!(" migration_interface_address={}", host.address))
                    }
                }
                match &host.systemd {
                    Some(_) if group == "compute" => text.push_str(
                        " kolla_container_engine=podman enable_nova_libvirt_container=false",
                    ),
                    None if host.engine != group_engine => {
                        text.push_str(&format!(" kolla_container_engine={}", host.engine))
                    }
                    _ => {}
                }
                text.push('\n');
            }
            text.push('\n');
        }
        text.push_str(&format!(
            "[all:vars]\nansible_user=root\nansible_ssh_private_key_file={}\n",
            self.client_key().display()
        ));
        if !kolla.is_empty() {
            text.push_str(&format!(
                "\n[compute:vars]\nkolla_container_engine={group_engine}\n\
                 nova_compute_virt_type=qemu\nnova_compute_command=/usr/local/bin/sleep_forever\n"
            ));
        }
        write(&self.inventory(), &text)
    }

    pub fn inventory(&self) -> PathBuf {
        self.data_dir.join("inventory")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.data_dir.join("known_hosts")
    }

    pub fn client_key(&self) -> PathBuf {
        self.data_dir.join("id_ed25519")
    }

    /// The host-side directory of the lab (keys, inventory, host trees).
    pub fn dir(&self) -> &Path {
        &self.data_dir
    }

    /// Lets `user` log in to every host of this lab with the lab's client key, as an
    /// operator's non-root SSH user (Kolla's `kolla` user, say). With `sudo`, the user may run
    /// anything as anyone without a password on these hosts (a NOPASSWD rule in the lab's own
    /// sudoers.d). The account is created on the machine when missing (no password, no home),
    /// since lab hosts share its `/etc/passwd`, and stays there; its key and rule go with the lab.
    pub fn add_user(&self, user: &str, sudo: bool) -> Result<(), LabError> {
        let exists = Command::new("getent")
            .args(["passwd", user])
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            // `*`, not useradd's locked `!`: sshd refuses key logins to a locked account.
            run(Command::new("useradd")
                .args(["--system", "--no-create-home", "--home-dir", "/"])
                .args(["--shell", "/bin/sh", "--password", "*", user]))?;
        }
        let pubkey = read(&self.data_dir.join("id_ed25519.pub"))?;
        write(
            &self.data_dir.join(format!("authorized_keys.{user}")),
            &pubkey,
        )?;
        let rule = self.data_dir.join("sudoers.d").join(user);
        if sudo {
            write(&rule, &format!("{user} ALL=(ALL:ALL) NOPASSWD: ALL\n"))?;
            set_mode(&rule, 0o440)?;
            run(Command::new("visudo").arg("-cqf").arg(&rule))?;
        } else if let Err(source) = fs::remove_file(&rule) {
            if source.kind() != std::io::ErrorKind::NotFound {
                return Err(LabError::Io { path: rule, source });
            }
        }
        Ok(())
    }

    pub fn host(&self, name: &str) -> &LabHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no lab host {name}"))
    }

    /// Runs `command` on a host through the real OpenSSH client, as an operator would.
    pub fn ssh(&self, host: &LabHost, command: &str) -> Output {
        self.ssh_command(host)
            .arg(command)
            .output()
            .expect("ssh client runs")
    }

    /// An OpenSSH client command for `host` with the lab's key and strict host-key checking.
    pub fn ssh_command(&self, host: &LabHost) -> Command {
        self.ssh_command_as(host, "root")
    }

    /// `ssh` to `host` as `user` (see [`add_user`](Self::add_user)), without a command yet.
    pub fn ssh_command_as(&self, host: &LabHost, user: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=yes", "-o"])
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts().display()
            ))
            .arg("-i")
            .arg(self.client_key())
            .arg(format!("{user}@{}", host.address));
        cmd
    }

    /// Leaves the lab running after this value is dropped (for `virtfleet-lab up`).
    pub fn keep(mut self) {
        self.owned = false;
    }

    /// Tears the lab down now, reporting every error.
    pub fn down(mut self) -> Result<(), LabError> {
        self.owned = false;
        tear_down_slot(self.id)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.owned {
            if let Err(e) = tear_down_slot(self.id) {
                eprintln!("{e}");
            }
        }
    }
}

/// Tears down every lab on this machine (after a killed test run) and the shared rootfs bind.
pub fn down_all() -> Result<usize, LabError> {
    let mut ids = lab_ids(Path::new(RUN_ROOT));
    // Data dirs whose run marker vanished (a reboot clears /run) are leftovers too.
    ids.extend(lab_ids(Path::new(DATA_ROOT)));
    ids.sort_unstable();
    ids.dedup();
    let mut first_error = None;
    for id in &ids {
        if let Err(e) = tear_down_slot(*id) {
            first_error.get_or_insert(e);
        }
    }
    release_rootfs_bind_if_unused()?;
    first_error.map_or(Ok(ids.len()), Err)
}

/// Tears down one lab by id (what `virtfleet-lab up` printed as `lab<id>`).
pub fn down_one(id: u32) -> Result<(), LabError> {
    tear_down_slot(id)
}

/// Labs currently present on this machine.
pub fn list() -> Vec<u32> {
    lab_ids(Path::new(RUN_ROOT))
}

/// The ids of the `lab<id>` entries of a directory, sorted.
fn lab_ids(dir: &Path) -> Vec<u32> {
    let mut ids: Vec<u32> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("lab")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// Lab slots give each lab its own address block 127.<id>.x.y; ids start at 10, clear of the
/// 127.0.x.y addresses other software uses.
fn claim_slot() -> Result<u32, LabError> {
    mkdir(Path::new(RUN_ROOT))?;
    // Start at a varying slot so a lab just torn down is not at once replaced by another at the
    // same addresses (tests that check "nothing left" would see the newcomer).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let start = (std::process::id() ^ nanos) % 241;
    for offset in 0..241 {
        let id = 10 + (start + offset) % 241;
        match fs::create_dir(Path::new(RUN_ROOT).join(format!("lab{id}"))) {
            Ok(()) => return Ok(id),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(LabError::Io {
                    path: RUN_ROOT.into(),
                    source,
                })
            }
        }
    }
    Err(LabError::NoFreeSlot)
}

fn tear_down_slot(id: u32) -> Result<(), LabError> {
    let run_dir = Path::new(RUN_ROOT).join(format!("lab{id}"));
    let data_dir = Path::new(DATA_ROOT).join(format!("lab{id}"));
    let ns_dir = run_dir.join("ns");
    let mut errors = Vec::new();
    let names: Vec<String> = fs::read_dir(&ns_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".mnt")
                .map(str::to_string)
        })
        .collect();
    let hosts: Vec<(PathBuf, PathBuf, PathBuf)> = names
        .iter()
        .map(|n| {
            (
                ns_dir.join(format!("{n}.mnt")),
                ns_dir.join(format!("{n}.uts")),
                data_dir.join(n),
            )
        })
        .collect();
    let results = std::sync::Mutex::new(Vec::new());
    let _ = for_each_parallel(&hosts, |(mnt, uts, dir)| {
        // Not inside the lock's statement: that would tear the hosts down one at a time.
        let host_errors = LabHost::tear_down(mnt, uts, dir);
        results.lock().unwrap().extend(host_errors);
        Ok(())
    });
    errors.extend(results.into_inner().unwrap());
    errors.extend(systemd::tear_down(id, &run_dir, &data_dir));
    errors.extend(sys::check_dev_null());
    if let Err(e) = remove_bridges(id) {
        errors.push(e);
    }
    if sys::is_mount_point(&ns_dir) {
        if let Err(e) = sys::umount(&ns_dir) {
            errors.push(e);
        }
    }
    for dir in [&data_dir, &run_dir] {
        if let Err(e) = remove_tree(dir) {
            errors.push(e);
        }
    }
    release_rootfs_bind_if_unused()?;
    errors.into_iter().next().map_or(Ok(()), Err)
}

/// The migration bridges of lab `id` (see [`LabOptions::migration_network`]).
const BRIDGE_PREFIX: &str = "vfm";

fn remove_bridges(id: u32) -> Result<(), LabError> {
    let prefix = format!("{BRIDGE_PREFIX}{id}-");
    let out = run(Command::new("ip").args(["-o", "link", "show", "type", "bridge"]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        // `12: vfm10-1: <BROADCAST,...> ...`
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        if name.starts_with(&prefix) {
            run(Command::new("ip").args(["link", "del", name]))?;
        }
    }
    Ok(())
}

/// `rm -rf` that refuses to start while anything is mounted below `dir`.
fn remove_tree(dir: &Path) -> Result<(), LabError> {
    if !dir.exists() {
        return Ok(());
    }
    let mounts = sys::mounts_under(dir);
    if !mounts.is_empty() {
        return Err(LabError::MountsInside {
            path: dir.to_path_buf(),
            mounts,
        });
    }
    fs::remove_dir_all(dir).map_err(|source| LabError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn ensure_rootfs_bind() -> Result<(), LabError> {
    let _lock = RootfsLock::take()?;
    let path = Path::new(ROOTFS_BIND);
    if sys::is_mount_point(path) {
        return Ok(());
    }
    mkdir(path)?;
    run(Command::new("mount").args(["--bind", "/", ROOTFS_BIND]))?;
    Ok(())
}

fn release_rootfs_bind_if_unused() -> Result<(), LabError> {
    let _lock = RootfsLock::take()?;
    let path = Path::new(ROOTFS_BIND);
    if list().is_empty() {
        if sys::is_mount_point(path) {
            sys::umount(path)?;
            let _ = fs::remove_dir(path);
        }
        docker::remove_machine_leftovers();
    }
    Ok(())
}

/// Serialises mounting and unmounting the shared rootfs bind between concurrent labs.
struct RootfsLock {
    /// Held only for its lock.
    _file: fs::File,
}

impl RootfsLock {
    fn take() -> Result<RootfsLock, LabError> {
        use std::os::fd::AsRawFd;
        mkdir(Path::new(RUN_ROOT))?;
        let path = Path::new(RUN_ROOT).join(".rootfs.lock");
        let file = fs::File::create(&path).map_err(|source| LabError::Io { path, source })?;
        // SAFETY: flock(2) on a descriptor we own; the lock is released when the file closes.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        Ok(RootfsLock { _file: file })
    }
}

/// Runs `job` over `items` on a few threads; returns the first error after all finished.
fn for_each_parallel<T: Sync>(
    items: &[T],
    job: impl Fn(&T) -> Result<(), LabError> + Sync,
) -> Result<(), LabError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let first_error = std::sync::Mutex::new(None);
    let workers = items.len().clamp(1, 8);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                if let Err(e) = job(item) {
                    first_error.lock().unwrap().get_or_insert(e);
                }
            });
        }
    });
    first_error.into_inner().unwrap().map_or(Ok(()), Err)
}

fn read(path: &Path) -> Result<String, LabError> {
    fs::read_to_string(path).map_err(|source| LabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| LabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_repeat_host_by_host() {
        let options = LabOptions::new(5).engines(&[Engine::Docker, Engine::Podman]);
        let engines: Vec<Engine> = (1..=5).map(|n| options.engine_of(n)).collect();
        use Engine::{Docker, Podman};
        assert_eq!(engines, [Docker, Podman, Docker, Podman, Docker]);
        assert_eq!(LabOptions::new(2).engine_of(2), Podman);
        assert_eq!(LabOptions::new(2).engines(&[]).engine_of(1), Podman);
        assert_eq!("docker".parse(), Ok(Docker));
        assert!("lxc".parse::<Engine>().is_err());
        let kinds =
            LabOptions::new(4).kinds(&["kolla".parse().unwrap(), "systemd".parse().unwrap()]);
        assert_eq!(kinds.kind_of(3), Kind::Kolla);
        assert_eq!(kinds.kind_of(4), Kind::Systemd);
        assert!("lxc".parse::<Kind>().is_err());
    }

    #[test]
    fn host_addresses_skip_network_and_broadcast_and_never_repeat() {
        let at = |n| host_address(9, n).to_string();
        assert_eq!(at(1), "127.9.0.1");
        assert_eq!(at(254), "127.9.0.254");
        assert_eq!(at(255), "127.9.1.1");
        assert_eq!(at(MAX_HOSTS), "127.9.7.254");
        let all: std::collections::BTreeSet<Ipv4Addr> =
            (1..=MAX_HOSTS).map(|n| host_address(9, n)).collect();
        assert_eq!(all.len(), MAX_HOSTS);
        assert!(all.iter().all(|a| !matches!(a.octets()[3], 0 | 255)));
    }
}
