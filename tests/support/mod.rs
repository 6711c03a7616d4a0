//! End-to-end fixture: a lab fleet plus a Kolla config dir, and the `virtfleet` binary run
//! against them as an operator would. Needs root and the lab packages (scripts/setup.sh).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use virtfleet_lab::{Containers, Engine, Kind, Lab, LabHost, LabOptions, LAB_NOVA_SECRET};

pub struct Fleet {
    pub lab: Lab,
    pub configdir: tempfile::TempDir,
}

pub const SASL_PASSWORD: &str = "Sasl-Secret-7f3a";

/// The container engine of the suite's lab hosts: `VIRTFLEET_TEST_ENGINE` (`podman`, the
/// default, or `docker`). `scripts/test.sh` runs the suite once per engine.
pub fn test_engine() -> Engine {
    match std::env::var("VIRTFLEET_TEST_ENGINE") {
        Ok(name) if !name.is_empty() => name
            .parse()
            .unwrap_or_else(|e| panic!("VIRTFLEET_TEST_ENGINE: {e}")),
        _ => Engine::Podman,
    }
}

/// The `virtfleet` binary of this workspace (built by `cargo build --workspace`).
pub fn virtfleet_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let target_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = target_dir.join("virtfleet");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --workspace` first",
        bin.display()
    );
    bin
}

impl Fleet {
    /// A lab of `hosts` at day 0 on the suite's engine ([`test_engine`]), a config dir with
    /// `globals` and the SASL password, and, when `certs`, a CA and per-host pairs issued by
    /// `virtfleet certs`.
    pub fn new(hosts: usize, globals: &str, certs: bool) -> Fleet {
        Fleet::with(LabOptions::new(hosts).engine(test_engine()), globals, certs)
    }

    /// [`Fleet::new`] with a lab of these options (e.g. a mixed fleet).
    pub fn with(lab: LabOptions, globals: &str, certs: bool) -> Fleet {
        let lab = lab.up().expect("lab up");
        let configdir = tempfile::tempdir().expect("tempdir");
        let fleet = Fleet { lab, configdir };
        fleet.write_globals(globals);
        std::fs::write(
            fleet.configdir.path().join("passwords.yml"),
            format!("libvirt_sasl_password: {SASL_PASSWORD}\n"),
        )
        .unwrap();
        if certs {
            fleet.ok(&["certs", "init-ca"]);
            fleet.ok(&["certs", "issue"]);
        }
        fleet
    }

    pub fn write_globals(&self, globals: &str) {
        std::fs::write(self.configdir.path().join("globals.yml"), globals).unwrap();
    }

    /// Directory of a host's own certificates in the config dir.
    pub fn host_cert_dir(&self, host: &str) -> PathBuf {
        self.configdir
            .path()
            .join("config/nova/nova-libvirt")
            .join(host)
    }

    /// `virtfleet <args>` with this fleet's inventory, config dir and known_hosts.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(virtfleet_bin());
        cmd.args(args)
            .arg("-i")
            .arg(self.lab.inventory())
            .arg("--configdir")
            .arg(self.configdir.path())
            .arg("--known-hosts")
            .arg(self.lab.known_hosts());
        cmd
    }

    /// Runs `virtfleet <args>`; asserts no secret reached its stdout or stderr.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("virtfleet runs");
        self.assert_no_secret(&out.stdout, args);
        self.assert_no_secret(&out.stderr, args);
        out
    }

    /// The secrets a run could leak: the SASL password, Kolla's stand-in secret in the lab's
    /// nova.conf, and the base64 lines of every private key in the config dir.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![SASL_PASSWORD.to_string(), LAB_NOVA_SECRET.to_string()];
        let mut dirs = vec![self.configdir.path().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if let Ok(text) = std::fs::read_to_string(&path) {
                    if text.contains("PRIVATE KEY-----") {
                        secrets.extend(
                            text.lines()
                                .filter(|l| l.len() >= 40 && !l.starts_with("-----"))
                                .map(str::to_string),
                        );
                    }
                }
            }
        }
        secrets
    }

    /// Fails the test when `output` holds any of [`Fleet::secrets`].
    pub fn assert_no_secret(&self, output: &[u8], args: &[&str]) {
        let text = String::from_utf8_lossy(output);
        for secret in self.secrets() {
            assert!(
                !text.contains(&secret),
                "virtfleet {args:?} printed a secret ({}...):\n{text}",
                &secret[..4]
            );
        }
    }

    /// Runs and asserts exit status 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "virtfleet {args:?} failed:\n{}",
            describe(&out)
        );
        out
    }

    /// Runs with `--report` and returns (output, parsed report).
    pub fn run_report(&self, args: &[&str]) -> (Output, serde_json::Value) {
        let report = self.configdir.path().join("report.json");
        let _ = std::fs::remove_file(&report);
        let mut cmd = self.command(args);
        let out = cmd
            .arg("--report")
            .arg(&report)
            .output()
            .expect("virtfleet runs");
        let text = std::fs::read_to_string(&report)
            .unwrap_or_else(|_| panic!("no report written:\n{}", describe(&out)));
        for output in [&out.stdout, &out.stderr, text.as_bytes()] {
            self.assert_no_secret(output, args);
        }
        (out, serde_json::from_str(&text).expect("report is JSON"))
    }

    pub fn host(&self, name: &str) -> &LabHost {
        self.lab.host(name)
    }

    /// The container engine command of a host (`podman`, `docker`).
    pub fn engine(&self, host: &str) -> &'static str {
        self.host(host).engine.as_str()
    }

    /// Runs `<host's engine> <args>` on a host (e.g. `exec nova_libvirt virsh version`);
    /// asserts success, returns stdout.
    pub fn engine_sh(&self, host: &str, args: &str) -> String {
        self.sh(host, &format!("{} {args}", self.engine(host)))
    }

    /// Runs a shell command on a host through OpenSSH; asserts success, returns stdout.
    pub fn sh(&self, host: &str, command: &str) -> String {
        let out = self.lab.ssh(self.host(host), command);
        assert!(
            out.status.success(),
            "{host}: `{command}` failed:\n{}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// When the container last started: changes on every restart, not on a reload.
    pub fn started_at(&self, host: &str, container: &str) -> String {
        self.engine_sh(
            host,
            &format!("inspect --format '{{{{.State.StartedAt}}}}' {container}"),
        )
    }

    /// `virsh -c URI version` inside `from`'s nova_libvirt container, with its deployed client
    /// pair and auth.conf (`credentials`), or with no SASL credentials at all.
    pub fn peer_virsh(&self, from: &str, uri: &str, credentials: bool) -> Output {
        let auth = if credentials {
            ""
        } else {
            "LIBVIRT_AUTH_FILE=/nonexistent "
        };
        let script = format!(
            "{} exec nova_libvirt sh -c '{auth}timeout 20 virsh -c {uri} version </dev/null'",
            self.engine(from)
        );
        self.lab.ssh(self.host(from), &script)
    }

    /// SHA-256 fingerprint of the certificate a host's libvirtd serves on its TLS port, as a
    /// peer sees it in the handshake (gnutls-cli, presenting the host's own client pair).
    pub fn served_fingerprint(&self, host: &str) -> String {
        let target = self.host(host);
        let dir = self.host_cert_dir(host);
        let out = Command::new("timeout")
            .args([
                "10",
                "gnutls-cli",
                "--insecure",
                "--print-cert",
                "-p",
                "16514",
            ])
            .arg("--x509certfile")
            .arg(dir.join("clientcert.pem"))
            .arg("--x509keyfile")
            .arg(dir.join("clientkey.pem"))
            .arg(target.address.to_string())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let begin = text
            .find("-----BEGIN CERTIFICATE-----")
            .expect("a served certificate");
        let end = text[begin..]
            .find("-----END CERTIFICATE-----")
            .expect("PEM end")
            + begin
            + 25;
        let certs = virtfleet_pki::parse_certs(text[begin..end].as_bytes()).expect("parses");
        certs[0].fingerprint_sha256.clone()
    }

    /// New server and client pairs for `hosts` from the same CA (and QEMU's, where they have
    /// them): their pairs deleted from the config dir, then `virtfleet certs issue`.
    pub fn reissue_leaves<H: AsRef<str>>(&self, hosts: &[H]) {
        self.reissue_leaves_with(hosts, &[]);
    }

    /// [`Fleet::reissue_leaves`] with more `certs issue` arguments (e.g. its playbooks).
    pub fn reissue_leaves_with<H: AsRef<str>>(&self, hosts: &[H], args: &[&str]) {
        for host in hosts {
            let dir = self.host_cert_dir(host.as_ref());
            for name in [
                "servercert.pem",
                "serverkey.pem",
                "clientcert.pem",
                "clientkey.pem",
            ] {
                std::fs::remove_file(dir.join(name)).unwrap();
                let _ = std::fs::remove_file(dir.join(format!("qemu-{name}")));
            }
        }
        let command: Vec<&str> = ["certs", "issue"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        let out = self.ok(&command);
        let out = String::from_utf8_lossy(&out.stdout);
        for host in hosts {
            assert!(
                out.contains(&format!("{}: issued ", host.as_ref())),
                "{out}"
            );
        }
    }

    /// Fingerprint of a certificate file in the config dir.
    pub fn file_fingerprint(&self, path: &Path) -> String {
        let pem = std::fs::read(path).unwrap();
        virtfleet_pki::parse_certs(&pem).unwrap()[0]
            .fingerprint_sha256
            .clone()
    }
}

pub fn describe(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A host's audit findings in a report: (id, severity).
pub fn findings(report: &serde_json::Value, host: &str) -> Vec<(String, String)> {
    report["hosts"][host]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("{host}: {report}"))
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The report entry of one host.
pub fn host_report<'a>(report: &'a serde_json::Value, host: &str) -> &'a serde_json::Value {
    &report["hosts"][host]
}

pub fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Globals for TLS + SASL, and for plain TCP + SASL. Neither names the container engine: the
/// lab's inventory does, for each host (`kolla_container_engine`), so the same globals serve
/// podman, docker and mixed fleets (globals.yml would override the inventory: Kolla passes it
/// as extra vars).
pub const TLS_SASL: &str = "libvirt_tls: \"yes\"\n";
pub const TCP_SASL: &str = "libvirt_tls: \"no\"\n";

/// Drops TCP to `address:ports` (iptables, INPUT: the lab's hosts share the machine's
/// network) until dropped itself.
pub struct Firewall {
    rules: Vec<Vec<String>>,
}

impl Firewall {
    pub fn drop(address: &str, ports: &[&str]) -> Firewall {
        let rules: Vec<Vec<String>> = ports
            .iter()
            .map(|p| {
                [
                    "INPUT", "-p", "tcp", "-d", address, "--dport", p, "-j", "DROP",
                ]
                .map(String::from)
                .to_vec()
            })
            .collect();
        Firewall::rules(rules)
    }

    /// These iptables rules (each a chain and its match), inserted first, until dropped.
    pub fn rules(rules: Vec<Vec<String>>) -> Firewall {
        for rule in &rules {
            let status = std::process::Command::new("iptables")
                .arg("-I")
                .args(rule)
                .status()
                .unwrap();
            assert!(status.success(), "iptables -I {rule:?}");
        }
        Firewall { rules }
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        for rule in &self.rules {
            let _ = std::process::Command::new("iptables")
                .arg("-D")
                .args(rule)
                .status();
        }
    }
}

/// `known_hosts` with the key of the one entry naming `name` replaced by a fresh key (as a
/// host whose key changed would present).
pub fn with_changed_host_key(known_hosts: &str, name: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("changed");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", describe(&keygen));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    let mut replaced = 0;
    let changed = known_hosts
        .lines()
        .map(|line| {
            let names = line.split_whitespace().next().unwrap_or_default();
            if names.split(',').any(|n| n == name) {
                replaced += 1;
                format!("{names} {}\n", public.join(" "))
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert_eq!(replaced, 1, "{name} in {known_hosts}");
    changed
}
