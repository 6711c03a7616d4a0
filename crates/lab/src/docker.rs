//! Docker lab hosts: each runs its own `dockerd` (Debian's docker.io) inside its mount namespace,
//! with every path at its production default, backed by the host's private directories:
//! `/var/lib/docker` (data root), `/etc/docker` (`daemon.json`), and a private `/run` holding
//! `/var/run/docker.sock`, the pidfile `/var/run/docker.pid`, the exec root `/var/run/docker`
//! and the containerd dockerd starts for itself. No registry is reachable: each daemon imports
//! a small image built once per lab (empty dirs, merged-/usr symlinks, a copy of the machine's
//! `/etc`), and the containers get the machine's `/usr` read-only.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::host::{mkdir, write, LabHost};
use crate::sys::{self, run};
use crate::LabError;

/// The image `docker import` makes of the lab's root tarball, in every docker host.
pub(crate) const IMAGE: &str = "vflab/root:latest";

/// A docker host's private trees (under its host dir) bound over the machine's paths.
pub(crate) const DIRS: [(&str, &str); 2] =
    [("docker", "/var/lib/docker"), ("etc-docker", "/etc/docker")];

/// The host dir's tree bound over `/run`: the socket, pidfile and exec root are at their
/// defaults, private to the host (the machine's `/run` is shared by every podman host).
pub(crate) const RUN_DIR: &str = "run";

/// No bridge, no iptables rules, no sysctl changes: lab hosts share the machine's network
/// namespace (and Kolla's containers use the host network anyway). No data-root: the default.
const DAEMON_JSON: &str = r#"{
  "bridge": "none",
  "iptables": false,
  "ip-masq": false,
  "ip-forward": false,
  "storage-driver": "overlay2"
}
"#;

const RUNC_WRAPPER: &str = include_str!("../assets/runc");

/// Capability names by number (capability.h), for the ones this machine lacks.
const CAPS: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// What the docker hosts of one lab share: the image tarball and dockerd's `PATH`.
pub(crate) struct LabFiles {
    image: PathBuf,
    path: String,
}

impl LabFiles {
    /// Builds the image tarball and, when this machine needs it, the runc wrapper; makes the
    /// machine's mount points.
    pub(crate) fn write(data_dir: &Path) -> Result<LabFiles, LabError> {
        for (_, target) in DIRS {
            mkdir(Path::new(target))?;
        }
        let image = data_dir.join("docker-image.tar");
        build_image(&data_dir.join("docker-image"), &image)?;
        let mut path = String::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        let missing = missing_capabilities();
        if !missing.is_empty() {
            let bin = data_dir.join("docker-bin");
            mkdir(&bin)?;
            let names: Vec<String> = missing.iter().map(|c| format!("\"CAP_{c}\"")).collect();
            let script = RUNC_WRAPPER.replace("@DROP@", &format!("[{}]", names.join(",")));
            let wrapper = bin.join("runc");
            write(&wrapper, &script)?;
            crate::set_mode(&wrapper, 0o755)?;
            path = format!("{}:{path}", bin.display());
        }
        Ok(LabFiles { image, path })
    }
}

/// A root for `docker import`: the directories a Debian 12 root has, `bin lib lib64 sbin` as
/// merged-/usr symlinks (the containers get the machine's `/usr`), and a copy of the machine's
/// `/etc`, so that the containers see the same configuration as podman's (whose image is the
/// machine's root): libvirt's defaults, the dynamic linker's cache, users, alternatives.
fn build_image(stage: &Path, tarball: &Path) -> Result<(), LabError> {
    use std::os::unix::fs::symlink;
    for dir in [
        "usr",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "root",
        "home",
        "opt",
        "srv",
        "mnt",
        "var/lib",
        "var/log",
        "var/cache",
        "var/spool",
        "var/tmp",
    ] {
        mkdir(&stage.join(dir))?;
    }
    for dir in ["tmp", "var/tmp"] {
        crate::set_mode(&stage.join(dir), 0o1777)?;
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("sbin", "usr/sbin"),
        ("var/run", "../run"),
        ("var/lock", "../run/lock"),
    ] {
        let path = stage.join(link);
        symlink(target, &path).map_err(|source| LabError::Io { path, source })?;
    }
    run(Command::new("tar")
        .args(["--numeric-owner", "-cf"])
        .arg(tarball)
        .arg("-C")
        .arg(stage)
        .args([".", "-C", "/", "etc"]))?;
    fs::remove_dir_all(stage).map_err(|source| LabError::Io {
        path: stage.to_path_buf(),
        source,
    })
}

/// Capabilities the kernel knows but this process's bounding set lacks (here: SYS_RESOURCE).
fn missing_capabilities() -> Vec<&'static str> {
    let bounding = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .unwrap_or(u64::MAX);
    let last = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(CAPS.len() - 1)
        .min(CAPS.len() - 1);
    (0..=last)
        .filter(|bit| bounding & (1 << bit) == 0)
        .map(|bit| CAPS[bit])
        .collect()
}

pub(crate) fn write_host_files(dir: &Path) -> Result<(), LabError> {
    for (sub, _) in DIRS {
        mkdir(&dir.join(sub))?;
    }
    mkdir(&dir.join(RUN_DIR))?;
    write(&dir.join("etc-docker/daemon.json"), DAEMON_JSON)
}

/// The namespace set-up of a docker host, run before the common private binds: a private `/run`
/// (with the dirs the common binds and sshd need) and the docker trees.
pub(crate) fn namespace_script(dir: &Path) -> String {
    let mut script = format!(
        "mount --bind {} /run\nmkdir -p /run/sshd /run/lock /run/containers /run/libpod\n",
        dir.join(RUN_DIR).display()
    );
    for (sub, target) in DIRS {
        script.push_str(&format!(
            "mount --bind {} {target}\n",
            dir.join(sub).display()
        ));
    }
    script
}

/// The host's dockerd pid, from its pidfile at the host's `/var/run/docker.pid`, while that
/// process is a dockerd (the pidfile is on disk: after a reboot its pid may be anything's).
fn daemon_pid(dir: &Path) -> Option<i32> {
    let pid = fs::read_to_string(dir.join(RUN_DIR).join("docker.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dockerd").then_some(pid)
}

/// `GET /_ping` over the host's socket: true once the daemon serves its API.
fn ping(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = String::new();
    stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .and_then(|()| stream.read_to_string(&mut reply))
        .is_ok()
        && reply.split(' ').nth(1) == Some("200")
}

/// Starts the host's dockerd in its namespace (detached, log in the host dir) and waits until
/// it answers, then imports the lab image. A daemon that makes no progress (seen once in CI, on
/// a loaded machine: nothing logged after "Starting up" for a minute) is killed and started
/// again once; the error names where it was stuck.
pub(crate) fn start(host: &LabHost, files: &LabFiles) -> Result<(), LabError> {
    let mut stalled = None;
    for _attempt in 0..2 {
        match launch(host, files)? {
            Started::Ready => {
                run(host
                    .command("docker")
                    .arg("import")
                    .arg(&files.image)
                    .arg(IMAGE))?;
                return Ok(());
            }
            Started::Exited(why) => return Err(LabError::Timeout(why)),
            Started::Stalled(why) => {
                eprintln!("virtfleet-lab: restarting a stalled {why}");
                for pid in dockerd_pids(host) {
                    sys::terminate(pid);
                }
                stalled = Some(why);
            }
        }
    }
    Err(LabError::Timeout(stalled.unwrap_or_default()))
}

enum Started {
    Ready,
    /// The daemon exited: the log's last lines.
    Exited(String),
    /// Still running, not answering: the log's last lines and where its threads wait.
    Stalled(String),
}

fn launch(host: &LabHost, files: &LabFiles) -> Result<Started, LabError> {
    let log_path = host.dir.join("dockerd.log");
    let log = File::create(&log_path).map_err(|source| LabError::Io {
        path: log_path.clone(),
        source,
    })?;
    let log_err = log.try_clone().map_err(|source| LabError::Io {
        path: log_path.clone(),
        source,
    })?;
    let mut cmd = host.command("setsid");
    cmd.args(["-f", "/usr/sbin/dockerd"])
        .env_clear()
        .env("PATH", &files.path)
        .env("HOME", "/root")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let status = cmd.status().map_err(|source| LabError::Spawn {
        command: sys::describe(&cmd),
        source,
    })?;
    if !status.success() {
        return Err(LabError::Command {
            command: sys::describe(&cmd),
            status: status.code().unwrap_or(-1),
            stderr: String::new(),
        });
    }
    let socket = host.dir.join(RUN_DIR).join("docker.sock");
    let started = Instant::now();
    let log_tail = || {
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        format!("dockerd on {}: {}", host.name, tail.join(" / "))
    };
    loop {
        if ping(&socket) {
            return Ok(Started::Ready);
        }
        let pids = dockerd_pids(host);
        // setsid forks: the daemon shows up in the namespace a moment after setsid returns.
        if pids.is_empty() && started.elapsed() > Duration::from_secs(5) {
            return Ok(Started::Exited(log_tail()));
        }
        if started.elapsed() > Duration::from_secs(60) {
            let waits: Vec<String> = pids.iter().map(|pid| thread_waits(*pid)).collect();
            let why = format!("{} (waiting in: {})", log_tail(), waits.join("; "));
            return Ok(Started::Stalled(why));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The dockerd processes in the host's mount namespace.
fn dockerd_pids(host: &LabHost) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(&host.ns_mnt)
        .map(|meta| sys::members_named(meta.ino(), "dockerd"))
        .unwrap_or_default()
}

/// Where a process's threads sleep (their kernel wait channels, counted), for a stall report.
fn thread_waits(pid: i32) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let wchan = fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
        *counts.entry(wchan).or_default() += 1;
    }
    let list: Vec<String> = counts.iter().map(|(w, n)| format!("{w}x{n}")).collect();
    format!("pid {pid}: {}", list.join(" "))
}

/// `docker run` arguments for a lab container, equivalent to podman's: the machine's `/usr`
/// read-only (the image holds none) with the lab's scripts as `/usr/local/bin`.
pub(crate) fn run_args(cmd: &mut Command, bin_dir: &Path) {
    cmd.args(["-v", "/usr:/usr:ro", "-v"])
        .arg(format!("{}:/usr/local/bin:ro", bin_dir.display()))
        .arg(IMAGE);
}

/// Removes the containers and stops the daemon (SIGTERM; it stops its containerd). Called while
/// the namespace is still there; what is left is killed with the namespace's other members.
pub(crate) fn stop(ns_mnt: &Path, ns_uts: &Path, dir: &Path, errors: &mut Vec<LabError>) {
    let Some(pid) = daemon_pid(dir).filter(|pid| sys::alive(*pid)) else {
        return;
    };
    if sys::is_mount_point(ns_mnt) {
        let mut rm = sys::nsenter(ns_mnt, ns_uts, "sh");
        rm.args([
            "-c",
            "ids=$(docker ps --all --quiet) && { [ -z \"$ids\" ] || docker rm --force $ids >/dev/null; }",
        ]);
        if let Err(e) = run(&mut rm) {
            errors.push(e);
        }
    }
    sys::terminate(pid);
}

/// Unmounts what dockerd and containerd leave mounted inside the host's namespace (the exec
/// root's `netns/default`, container overlays and shm): deepest first.
pub(crate) fn unmount_leftovers(ns_mnt: &Path, ns_uts: &Path, errors: &mut Vec<LabError>) {
    let table = sys::nsenter(ns_mnt, ns_uts, "cat")
        .arg("/proc/self/mountinfo")
        .output();
    let Ok(table) = table else { return };
    let text = String::from_utf8_lossy(&table.stdout);
    let mut points: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|p| p.starts_with("/var/lib/docker/") || p.starts_with("/run/docker/"))
        .collect();
    if points.is_empty() {
        return;
    }
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    if let Err(e) = run(sys::nsenter(ns_mnt, ns_uts, "umount").args(&points)) {
        errors.push(e);
    }
}

/// Once no lab is left: the cgroups dockerd made under `/docker` in every hierarchy (empty by
/// then; a real dockerd with running containers keeps its own, rmdir fails on them) and the
/// machine's `/var/lib/docker` mount point when empty.
pub(crate) fn remove_machine_leftovers() {
    for entry in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = fs::remove_dir(entry.path().join("docker"));
    }
    let _ = fs::remove_dir("/sys/fs/cgroup/docker");
    let _ = fs::remove_dir(DIRS[0].1);
}

/// True for a docker host's dir (it has a private data root).
pub(crate) fn is_docker_host(dir: &Path) -> bool {
    dir.join(DIRS[0].0).is_dir()
}
