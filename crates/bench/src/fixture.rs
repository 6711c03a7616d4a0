//! What one benchmark size needs besides the lab: a Kolla config dir with TLS + SASL and a CA
//! from `virtfleet certs`, a playbook variant for sleeping containers, and host resets.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use virtfleet_lab::Lab;

use crate::remote::{MANAGED, SASL_PASSWORD};

/// The e2e suite's TLS_SASL globals. They name no container engine: the lab's inventory
/// names each host's (`kolla_container_engine`), so the same globals serve `--engine docker`.
pub const GLOBALS: &str = "libvirt_tls: \"yes\"\n";

pub struct Fixture {
    pub virtfleet: PathBuf,
    pub dir: tempfile::TempDir,
    pub inventory: PathBuf,
    pub known_hosts: PathBuf,
}

impl Fixture {
    /// Writes globals, passwords and the bench playbook, then creates the CA and host pairs.
    pub fn new(lab: &Lab, virtfleet: &Path, source_playbook: &Path) -> Result<Fixture, String> {
        let dir = tempfile::Builder::new()
            .prefix("virtfleet-bench.")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let fixture = Fixture {
            virtfleet: virtfleet.to_path_buf(),
            inventory: lab.inventory(),
            known_hosts: lab.known_hosts(),
            dir,
        };
        std::fs::create_dir_all(fixture.configdir()).map_err(|e| e.to_string())?;
        write(&fixture.configdir().join("globals.yml"), GLOBALS)?;
        write(
            &fixture.configdir().join("passwords.yml"),
            &format!("libvirt_sasl_password: {SASL_PASSWORD}\n"),
        )?;
        write_bench_playbook(source_playbook, &fixture.playbook_dir())?;
        fixture.run_checked(&["certs", "init-ca"])?;
        fixture.run_checked(&["certs", "issue"])?;
        Ok(fixture)
    }

    pub fn configdir(&self) -> PathBuf {
        self.dir.path().join("configdir")
    }

    fn playbook_dir(&self) -> PathBuf {
        self.dir.path().join("playbooks")
    }

    pub fn report_path(&self) -> PathBuf {
        self.dir.path().join("report.json")
    }

    /// `virtfleet <args>` against the lab, the bench config dir and playbook, with a report.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_with(&self.inventory, args)
    }

    /// [`Fixture::command`] with another inventory of the same hosts.
    pub fn command_with(&self, inventory: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.virtfleet);
        cmd.args(args)
            .arg("-i")
            .arg(inventory)
            .arg("--configdir")
            .arg(self.configdir())
            .arg("--known-hosts")
            .arg(&self.known_hosts)
            .arg("--playbook")
            .arg(self.playbook_dir().join("kolla.yml"))
            .arg("--report")
            .arg(self.report_path());
        cmd
    }

    /// Runs an untimed setup command; fails on non-zero exit.
    pub fn run_checked(&self, args: &[&str]) -> Result<(), String> {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.virtfleet.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "virtfleet {args:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// A CA change: a new CA and new pairs for every host (what rotate-all deploys).
    pub fn change_ca(&self) -> Result<(), String> {
        self.run_checked(&["certs", "init-ca", "--force"])?;
        self.run_checked(&["certs", "issue"])
    }

    /// Reads the last run's report and checks every host against `expect`; returns the mean
    /// per-host seconds. Any failed host makes the run invalid.
    pub fn check_report(&self, hosts: usize, expect: Expect) -> Result<f64, String> {
        let path = self.report_path();
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let report: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("report: {e}"))?;
        let entries = report["hosts"]
            .as_object()
            .ok_or("report has no hosts object")?;
        if entries.len() != hosts {
            return Err(format!("report has {} hosts, lab {hosts}", entries.len()));
        }
        let mut problems = Vec::new();
        let mut seconds = 0.0;
        for (name, h) in entries {
            seconds += h["seconds"].as_f64().unwrap_or(0.0);
            let status = h["status"].as_str().unwrap_or("?");
            let files = h["changed_files"].as_array().map_or(0, Vec::len);
            let restarted: Vec<&str> = h["restarted"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            let ok = match expect {
                Expect::NoChange => status == "ok" && files == 0 && restarted.is_empty(),
                Expect::AllFilesNoRestart => {
                    status == "changed" && files == managed_file_count() && restarted.is_empty()
                }
                Expect::Converged => status == "ok" || status == "changed",
                Expect::RestartBoth => {
                    status == "changed" && restarted == ["nova_libvirt", "nova_compute"]
                }
            };
            if !ok {
                problems.push(format!(
                    "{name}: status {status}, {files} files, restarted {restarted:?}, error {}",
                    h["error"]
                ));
            }
        }
        if problems.is_empty() {
            Ok(seconds / hosts as f64)
        } else {
            Err(format!(
                "{} hosts not as expected ({expect:?}): {}",
                problems.len(),
                problems.into_iter().take(3).collect::<Vec<_>>().join("; ")
            ))
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// noop: every host ok, nothing written or restarted.
    NoChange,
    /// push: every managed file written, nothing restarted.
    AllFilesNoRestart,
    /// setup deploy: no failure.
    Converged,
    /// rotate-all: both containers restarted on every host.
    RestartBoth,
}

fn managed_file_count() -> usize {
    MANAGED.iter().map(|(_, files)| files.len()).sum()
}

/// Makes the lab's last host a bastion in front of the others: the lab's inventory loses it
/// (the floors and virtfleet's runs see the other hosts only), and a copy of that inventory
/// reaching them through it (`ansible_ssh_common_args="-o ProxyJump=root@<its address>"`, as
/// Kolla operators set it) is returned. The bastion is a host of this machine, so its link is
/// loopback: what is measured is the cost of one connection carrying every host's channel.
pub fn split_off_bastion(lab: &Lab) -> Result<PathBuf, String> {
    let bastion = lab.hosts.last().ok_or("an empty lab")?;
    let path = lab.inventory();
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let prefix = format!("{} ", bastion.name);
    let direct: String = text
        .lines()
        .filter(|line| !line.starts_with(&prefix))
        .map(|line| format!("{line}\n"))
        .collect();
    write(&path, &direct)?;
    let through = format!(
        "{direct}\n[compute:vars]\nansible_ssh_common_args=\"-o ProxyJump=root@{}\"\n",
        bastion.address
    );
    let out = lab.dir().join("inventory-through-bastion");
    write(&out, &through)?;
    Ok(out)
}

/// Deletes every file under each host's /etc/kolla/nova-*/ (managed files and applied markers)
/// from the controller side, so the next `genconfig` writes all files new.
pub fn reset_hosts(lab: &Lab) -> Result<(), String> {
    for host in &lab.hosts {
        for (dir, _) in MANAGED {
            let dir = host.kolla_path(dir);
            let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_file() {
                    std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
        }
    }
    Ok(())
}

/// The shipped playbook, changed for containers that only sleep (`Containers::Light`):
/// - the readiness check is `true` in the container (no libvirtd to answer `virsh version`);
///   it still costs the `podman exec` a real check costs;
/// - no live TLS reload (no libvirtd for `virt-admin`), so a CA change restarts both
///   containers, as the rotate-all asks.
///
/// The templates are the shipped ones (symlinked).
pub fn write_bench_playbook(source: &Path, dir: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(source).map_err(|e| format!("{}: {e}", source.display()))?;
    let ready = "exec: [virsh, version, --daemon]";
    if !text.contains(ready) {
        return Err(format!(
            "{}: readiness check `{ready}` not found",
            source.display()
        ));
    }
    let text = text.replace(ready, "exec: [\"true\"]");
    // Drop the nova_libvirt `reload:` block (up to the blank line that ends it).
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line == "    reload:" {
            skipping = true;
            continue;
        }
        if skipping {
            if line.trim().is_empty() {
                skipping = false;
            } else {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    write(&dir.join("kolla.yml"), &out)?;
    let templates = source.parent().unwrap_or(Path::new(".")).join("templates");
    let link = dir.join("templates");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&templates, &link)
        .map_err(|e| format!("{}: {e}", link.display()))?;
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_playbook_has_a_trivial_ready_check_and_no_reload() {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks/kolla.yml");
        let dir = tempfile::tempdir().unwrap();
        write_bench_playbook(&source, dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("kolla.yml")).unwrap();
        assert!(text.contains("exec: [\"true\"]"));
        assert!(!text.contains("reload:"));
        assert!(!text.contains("virt-admin"));
        assert!(text.contains("after_restart:"));
        assert!(text.contains("  nova_compute:\n"));
        assert!(dir.path().join("templates/libvirtd.conf.j2").exists());
    }
}
