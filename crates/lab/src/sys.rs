//! Running the system tools the lab is built from (unshare, nsenter, sshd, podman, docker, mount).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::LabError;

/// Runs a command to completion; a non-zero exit is an error carrying its stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<Output, LabError> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: describe(cmd),
            source,
        })?;
    if !output.status.success() {
        return Err(LabError::Command {
            command: describe(cmd),
            status: output.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output)
}

/// A command that runs inside a lab host's mount and UTS namespaces.
pub(crate) fn nsenter(ns_mnt: &Path, ns_uts: &Path, program: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--mount={}", ns_mnt.display()))
        .arg(format!("--uts={}", ns_uts.display()))
        .arg("--")
        .arg(program);
    cmd
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Mount points currently under `dir` (as seen from this mount namespace).
pub(crate) fn mounts_under(dir: &Path) -> Vec<String> {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let prefix = dir.to_string_lossy().trim_end_matches('/').to_string();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| *point == prefix || point.starts_with(&format!("{prefix}/")))
        .map(str::to_string)
        .collect()
}

pub(crate) fn is_mount_point(path: &Path) -> bool {
    let wanted = path.to_string_lossy();
    mounts_under(path).iter().any(|p| *p == wanted)
}

pub(crate) fn umount(path: &Path) -> Result<(), LabError> {
    run(Command::new("umount").arg(path)).map(|_| ())
}

/// Sends SIGKILL to every process whose mount namespace is `ns_inode`, and to their descendants
/// (a container's processes live in namespaces of their own under conmon or containerd's shim).
pub(crate) fn kill_namespace_members(ns_inode: u64) {
    let processes = processes(ns_inode);
    let mut doomed: std::collections::HashSet<i32> = processes
        .iter()
        .filter(|(_, _, member)| *member)
        .map(|(pid, _, _)| *pid)
        .collect();
    loop {
        let before = doomed.len();
        for (pid, ppid, _) in &processes {
            if doomed.contains(ppid) {
                doomed.insert(*pid);
            }
        }
        if doomed.len() == before {
            break;
        }
    }
    for pid in doomed {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// The processes in mount namespace `ns_inode` whose command name is `comm`.
pub(crate) fn members_named(ns_inode: u64, comm: &str) -> Vec<i32> {
    processes(ns_inode)
        .into_iter()
        .filter(|(pid, _, member)| {
            *member
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == comm)
        })
        .map(|(pid, _, _)| pid)
        .collect()
}

/// (pid, parent pid, in mount namespace `ns_inode`?) of every process.
fn processes(ns_inode: u64) -> Vec<(i32, i32, bool)> {
    let wanted = format!("mnt:[{ns_inode}]");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut processes: Vec<(i32, i32, bool)> = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command name in parentheses: state, then the parent pid.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        else {
            continue;
        };
        let member = std::fs::read_link(entry.path().join("ns/mnt"))
            .is_ok_and(|link| link.to_string_lossy() == wanted);
        processes.push((pid, ppid, member));
    }
    processes
}

/// Sends SIGTERM, waits up to two seconds, then SIGKILL.
pub(crate) fn terminate(pid: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in 0..40 {
        if !alive(pid) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// True while the process exists and is not a zombie (orphaned daemons are reaped by init).
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Whether this machine's /dev/null is still the null device. Seen once after a session of
/// privileged lab containers: replaced by a regular file, which breaks every sshd (`daemon()
/// failed: No such device`). Put back, and reported so the lab that did it is known.
pub(crate) fn check_dev_null() -> Option<LabError> {
    use std::os::unix::fs::FileTypeExt;
    let path = std::path::Path::new("/dev/null");
    let fine = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device());
    if fine {
        return None;
    }
    let _ = std::fs::remove_file(path);
    let restored = run(Command::new("mknod").args(["-m", "666", "/dev/null", "c", "1", "3"]));
    Some(LabError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(format!(
            "was no longer the null device (put back: {})",
            if restored.is_ok() { "yes" } else { "no" }
        )),
    })
}
