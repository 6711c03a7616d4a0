//! Timing one child process (wall, CPU and peak RSS from wait4's rusage) or a group of them,
//! plus the machine's busy CPU time over the same interval (everything: controller, sshd,
//! podman, containers).

use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One measured run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Wall-clock seconds.
    pub wall: f64,
    /// User + system CPU seconds of the controller process(es).
    pub cpu: f64,
    /// Peak resident set size of the controller in KiB (for a group: the largest member).
    pub max_rss_kib: u64,
    /// Busy CPU seconds of the whole machine over the run (all processes, all cores).
    pub machine_cpu: f64,
    /// Most file descriptors the controller held open at once (sampled from /proc every
    /// [`FD_SAMPLE_EVERY`]; one measured process only, absent in results from before it was recorded).
    #[serde(default)]
    pub max_fds: Option<u64>,
}

/// Exit status plus rusage of one reaped child.
pub struct Reaped {
    pub status: i32,
    pub cpu: f64,
    pub max_rss_kib: u64,
}

/// Busy CPU seconds of the whole machine since boot (from /proc/stat).
pub fn machine_busy_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
    let busy: u64 = fields
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, v)| v)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    busy as f64 / hz
}

/// Waits for any child with wait4(2) and returns its pid, status and resource usage; None
/// when there is no child left to wait for.
fn reap_any() -> Option<(u32, Reaped)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for one of our children.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = loop {
        let rc = unsafe { libc::wait4(-1, &mut status, 0, &mut usage) };
        let interrupted = std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
        if !(rc < 0 && interrupted) {
            break rc;
        }
    };
    if rc <= 0 {
        return None;
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let reaped = Reaped {
        status: code,
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
    };
    Some((rc as u32, reaped))
}

/// How often the descriptors are counted: listing /proc/PID/fd of a process holding 1,000
/// costs the machine CPU the run is measured on, so not more often than the runs' spread.
pub const FD_SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_millis(25);

/// Samples how many descriptors `pid` holds, every [`FD_SAMPLE_EVERY`] until `done`; the
/// most seen.
fn sample_fds(pid: u32, done: &std::sync::atomic::AtomicBool) -> u64 {
    let dir = format!("/proc/{pid}/fd");
    let mut most = 0;
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            most = most.max(entries.count() as u64);
        }
        std::thread::sleep(FD_SAMPLE_EVERY);
    }
    most
}

/// Runs the commands, `at_once` at a time, and waits for all; fails if any exits non-zero.
/// `log` receives each child's stdout and stderr (appended).
pub fn run_group(
    commands: Vec<Command>,
    at_once: usize,
    log: &std::path::Path,
) -> Result<Sample, String> {
    let machine_before = machine_busy_seconds();
    let started = Instant::now();
    let mut sample = Sample {
        wall: 0.0,
        cpu: 0.0,
        max_rss_kib: 0,
        machine_cpu: 0.0,
        max_fds: None,
    };
    let single = commands.len() == 1;
    let mut pending = commands.into_iter();
    let mut running = std::collections::HashMap::new();
    let mut failures = Vec::new();
    // The descriptors of a single measured process (a group is many small `ssh` clients).
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let mut sampler = None;
        loop {
            while running.len() < at_once.max(1) && failures.is_empty() {
                let Some(cmd) = pending.next() else { break };
                // A command that cannot start fails the group once the started ones are
                // reaped (none is left unwaited).
                let (pid, what) = match spawn(cmd, log) {
                    Ok(started) => started,
                    Err(e) => {
                        failures.push(e);
                        break;
                    }
                };
                if single {
                    let done = &done;
                    sampler = Some(scope.spawn(move || sample_fds(pid, done)));
                }
                running.insert(pid, what);
            }
            if running.is_empty() {
                break;
            }
            let Some((pid, r)) = reap_any() else {
                failures.extend(running.drain().map(|(_, what)| format!("{what}: lost")));
                break;
            };
            let Some(what) = running.remove(&pid) else {
                continue;
            };
            if r.status != 0 {
                failures.push(format!("{what} exited {}", r.status));
            }
            sample.cpu += r.cpu;
            sample.max_rss_kib = sample.max_rss_kib.max(r.max_rss_kib);
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        sample.max_fds = sampler.and_then(|s| s.join().ok());
        Ok::<(), String>(())
    })?;
    sample.wall = started.elapsed().as_secs_f64();
    sample.machine_cpu = machine_busy_seconds() - machine_before;
    if failures.is_empty() {
        Ok(sample)
    } else {
        Err(format!(
            "{} of the commands failed (see {}): {}",
            failures.len(),
            log.display(),
            failures.into_iter().take(3).collect::<Vec<_>>().join("; ")
        ))
    }
}

/// Starts `cmd` with its output appended to `log`; its pid and description.
fn spawn(mut cmd: Command, log: &std::path::Path) -> Result<(u32, String), String> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    // The Child is dropped without wait: we reap it ourselves with wait4.
    Ok((child.id(), format!("{cmd:?}")))
}

/// Runs one command and measures it.
pub fn run_one(cmd: Command, log: &std::path::Path) -> Result<Sample, String> {
    run_group(vec![cmd], 1, log)
}

/// Median, min and max of a list.
pub fn stats(values: &[f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_odd_and_even_lists() {
        assert_eq!(stats(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(stats(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }

    #[test]
    fn a_failing_child_is_reported_and_rusage_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut ok = Command::new("sh");
        ok.args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"]);
        let sample = run_one(ok, &log).unwrap();
        assert!(sample.wall > 0.0 && sample.max_rss_kib > 0);
        let mut bad = Command::new("sh");
        bad.args(["-c", "exit 3"]);
        let err = run_one(bad, &log).unwrap_err();
        assert!(err.contains("exited 3"), "{err}");
    }
}
