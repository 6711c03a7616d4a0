//! Issue 15: a live fleet moves from libvirt over TCP (day 0, OSSN-0007) to TLS + SASL with
//! no moment where some host's nova cannot open the connection it would use to a peer. A
//! checker on the workstation asks every ordered pair, every second, the way the source's
//! nova.conf says at that moment (its scheme, its client pair and SASL credentials); the run
//! is killed in phase 2 and resumed.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use virtfleet_suite::*;

const HOSTS: [&str; 4] = ["compute01", "compute02", "compute03", "compute04"];
/// Which of them a checker watches.
type Hosts = &'static [&'static str];

/// What a source host's nova dials a peer with, read from its files on each tick.
struct Source {
    nova_dir: PathBuf,
}

/// Where a source's nova reaches a destination: the destination's own
/// `live_migration_inbound_addr` (its address, or its name), read on each tick.
struct Destination {
    nova_dir: PathBuf,
    address: String,
}

impl Destination {
    /// Whether nova dials it by address (its nova.conf says an IP address), so that its
    /// server certificate must name that address.
    fn dialled_by_address(&self) -> bool {
        let conf = std::fs::read_to_string(self.nova_dir.join("nova.conf")).unwrap_or_default();
        let inbound = conf.lines().find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "live_migration_inbound_addr").then(|| value.trim().trim_matches('"'))
        });
        inbound.is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok())
    }
}

impl Source {
    fn dials_tls(&self) -> bool {
        let conf = std::fs::read_to_string(self.nova_dir.join("nova.conf")).unwrap_or_default();
        conf.lines().any(|l| {
            let l = l.replace(' ', "");
            l.starts_with("connection_uri=\"qemu+tls://") || l == "live_migration_scheme=\"tls\""
        })
    }

    /// `virsh version` to `to` as this source's nova would connect. Always to its address
    /// (the workstation does not resolve lab names); the server certificate is verified
    /// when nova too would dial the address (a name nova dials is checked by `certs check`).
    fn connects(&self, to: &Destination) -> Result<(), Failed> {
        let address = &to.address;
        let verify = match to.dialled_by_address() {
            true => "",
            false => "&no_verify=1",
        };
        let (uri, auth) = match self.dials_tls() {
            // The server checks the client's pair and SASL credentials as always.
            true => (
                format!(
                    "qemu+tls://{address}/system?pkipath={}{verify}",
                    self.nova_dir.display()
                ),
                self.nova_dir.join("auth.conf"),
            ),
            false => (
                format!("qemu+tcp://{address}/system"),
                self.nova_dir.join("auth.conf"),
            ),
        };
        let mut virsh = Command::new("timeout");
        virsh.args(["15", "virsh", "-c", &uri, "version"]);
        if auth.exists() {
            virsh.env("LIBVIRT_AUTH_FILE", auth);
        }
        let out = virsh.stdin(Stdio::null()).output().unwrap();
        match out.status.code() {
            Some(0) => Ok(()),
            // No answer in 15 s: a loaded machine, not a refusal (a TCP/TLS mismatch is
            // refused or fails its handshake at once).
            Some(124) => Err(Failed::Slow),
            code => Err(Failed::Refused(format!(
                "{uri}: exit {code:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    }
}

/// Why a connection was not opened.
enum Failed {
    Slow,
    Refused(String),
}

/// Which of libvirt's ports accept a TCP connection: a destination restarting has none.
fn listening(address: &str) -> BTreeSet<u16> {
    [16509, 16514]
        .into_iter()
        .filter(|port| {
            let addr: SocketAddr = format!("{address}:{port}").parse().unwrap();
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
        })
        .collect()
}

struct Checker {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// (source, destination, why) of every failure that was not a restart.
    failures: Arc<Mutex<Vec<String>>>,
    /// Attempts, and those that failed while the destination restarted.
    attempts: Arc<Mutex<(usize, usize)>>,
}

impl Checker {
    fn start(fleet: &Fleet, hosts: Hosts) -> Checker {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(Mutex::new((0, 0)));
        let mut threads = Vec::new();
        for &from in hosts {
            for to in hosts.iter().filter(|h| **h != from) {
                let source = Source {
                    nova_dir: fleet.host(from).kolla_path("nova-compute"),
                };
                let destination = Destination {
                    nova_dir: fleet.host(to).kolla_path("nova-compute"),
                    address: fleet.host(to).libvirt_address().to_string(),
                };
                let pair = format!("{from} -> {to}");
                let (stop, failures, attempts) = (stop.clone(), failures.clone(), attempts.clone());
                threads.push(std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let tick = std::time::Instant::now();
                        attempts.lock().unwrap().0 += 1;
                        if source.connects(&destination).is_err() {
                            // A destination restarting (as any change of its files makes
                            // it) is down for a moment, and a loaded machine can be slow
                            // to answer: ask again, up to three times, 3 s apart. A failure
                            // is a pair that cannot connect throughout while the
                            // destination's listeners stay put (what a mismatch of TCP and
                            // TLS between the two looks like: it lasts a whole phase).
                            let mut why = None;
                            for _ in 0..3 {
                                std::thread::sleep(Duration::from_secs(3));
                                let before = listening(&destination.address);
                                let again = source.connects(&destination);
                                let after = listening(&destination.address);
                                match again {
                                    Ok(()) => {
                                        why = None;
                                        break;
                                    }
                                    Err(Failed::Refused(e))
                                        if before == after && !before.is_empty() =>
                                    {
                                        why = Some(e)
                                    }
                                    Err(_) => why = None,
                                }
                            }
                            match why {
                                Some(why) => {
                                    failures.lock().unwrap().push(format!("{pair}: {why}"))
                                }
                                None => attempts.lock().unwrap().1 += 1,
                            }
                        }
                        let rest = Duration::from_secs(1).saturating_sub(tick.elapsed());
                        std::thread::sleep(rest);
                    }
                }));
            }
        }
        Checker {
            stop,
            threads,
            failures,
            attempts,
        }
    }

    fn finish(self) -> (Vec<String>, usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let (attempts, restarting) = *self.attempts.lock().unwrap();
        let failures = self.failures.lock().unwrap().clone();
        (failures, attempts, restarting)
    }
}

fn file(fleet: &Fleet, host: &str, relative: &str) -> String {
    std::fs::read_to_string(fleet.host(host).kolla_path(relative)).unwrap()
}

#[test]
fn a_fleet_moves_from_tcp_to_tls_with_every_pair_connected_and_resumes_after_a_kill() {
    let fleet = Fleet::new(4, TLS_SASL, true);
    let checker = Checker::start(&fleet, &HOSTS);
    std::thread::sleep(Duration::from_secs(3));

    // Killed in phase 3 (nova to TLS), once its first batch is done.
    let mut child = fleet
        .command(&["deploy", "--serial", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut in_phase3 = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        in_phase3 |= line.contains("phase 3/4");
        if in_phase3 && line.starts_with("batch 2/4") {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert!(in_phase3, "no phase 3:\n{}", seen.join("\n"));
    // Where it stopped: every host listens on both; one nova dials TLS, the others TCP.
    let dialling_tls = HOSTS
        .iter()
        .filter(|h| file(&fleet, h, "nova-compute/nova.conf").contains("qemu+tls://"))
        .count();
    assert!((1..4).contains(&dialling_tls), "{dialling_tls} dial TLS");
    for host in HOSTS {
        let conf = file(&fleet, host, "nova-libvirt/libvirtd.conf");
        assert!(
            conf.contains("listen_tls = 1") && conf.contains("listen_tcp = 1"),
            "{host}:\n{conf}"
        );
    }

    // Resumed: it picks up and finishes.
    let out = fleet.ok(&["deploy", "--serial", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // (From phase 3, or earlier when the kill caught a host between its push and restart.)
    assert!(
        text.contains("phase 3/4") && text.contains("phase 4/4"),
        "{text}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let (failures, attempts, restarting) = checker.finish();
    assert!(attempts > 100, "the checker ran {attempts} attempts");
    assert!(
        failures.is_empty(),
        "{} of {attempts} connections failed ({restarting} while a peer restarted):\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("checker: {attempts} connections, {restarting} retried over a restart, 0 failed");

    // The end: TLS only, every nova dials TLS, plain TCP refused, and a re-run is a noop.
    for host in HOSTS {
        let conf = file(&fleet, host, "nova-libvirt/libvirtd.conf");
        assert!(conf.contains("listen_tcp = 0"), "{host}:\n{conf}");
        assert!(listening(&fleet.host(host).libvirt_address().to_string()) == [16514].into());
    }
    let (_, report) = fleet.run_report(&["deploy"]);
    for host in HOSTS {
        assert_eq!(host_report(&report, host)["status"], "ok", "{report:#}");
    }

    // Back to TCP: refused before any host is changed, unless asked for.
    fleet.write_globals(TCP_SASL);
    let out = fleet.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-downgrade"), "{err}");
    assert!(file(&fleet, "compute01", "nova-libvirt/libvirtd.conf").contains("listen_tls = 1"));
}

/// The control: the same switch in one pass (the shipped playbook without its transition)
/// leaves pairs that cannot connect, and the checker sees them.
#[test]
fn the_checker_sees_the_window_a_switch_in_one_pass_leaves() {
    let fleet = Fleet::new(4, TLS_SASL, true);
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(shipped.join("templates"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(shipped.join("kolla.yml")).unwrap();
    let start = text
        .find("\ntransitions:\n")
        .expect("the shipped playbook has transitions");
    let end = start + text[start..].find("\n# The container engine").unwrap();
    let one_pass = format!("{}{}", &text[..start], &text[end..]);
    let playbook = copy.path().join("kolla.yml");
    std::fs::write(&playbook, one_pass).unwrap();

    let checker = Checker::start(&fleet, &HOSTS);
    std::thread::sleep(Duration::from_secs(3));
    let playbook = playbook.to_str().unwrap();
    let out = fleet.ok(&[
        "deploy",
        "--serial",
        "1",
        "--pause",
        "5",
        "--playbook",
        playbook,
    ]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("phase"));
    let (failures, attempts, _) = checker.finish();
    assert!(
        !failures.is_empty(),
        "a switch in one pass left no pair unconnected in {attempts} attempts"
    );
}

/// Kolla's own default before TLS: SASL over TCP (DIGEST-MD5, which brings its encryption).
/// While the TCP listener stays, it keeps its mechanism beside TLS's SCRAM-SHA-256, so nova
/// still dialling TCP with SASL gets in; afterwards only SCRAM is left.
#[test]
fn a_fleet_on_sasl_over_tcp_moves_to_tls_with_every_pair_connected() {
    const THREE: Hosts = &["compute01", "compute02", "compute03"];
    let fleet = Fleet::new(3, TCP_SASL, true);
    fleet.ok(&["deploy"]);
    let conf = file(&fleet, "compute01", "nova-libvirt/libvirtd.conf");
    assert!(conf.contains("auth_tcp = \"sasl\""), "{conf}");

    fleet.write_globals(TLS_SASL);
    let checker = Checker::start(&fleet, THREE);
    std::thread::sleep(Duration::from_secs(3));
    let out = fleet.ok(&["deploy", "--serial", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("phase 1/4") && text.contains("phase 4/4"),
        "{text}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let (failures, attempts, restarting) = checker.finish();
    assert!(
        failures.is_empty(),
        "{} of {attempts} connections failed ({restarting} while a peer restarted):\n{}",
        failures.len(),
        failures.join("\n")
    );
    for host in THREE {
        let sasl = file(&fleet, host, "nova-libvirt/sasl.conf");
        assert!(
            sasl.starts_with("mech_list: SCRAM-SHA-256\n"),
            "{host}:\n{sasl}"
        );
    }
}

/// `--limit` leaving out hosts of the group: only the first phase (which changes no client)
/// runs; the rest waits for a run over the whole group, which picks up where it stands.
#[test]
fn a_limited_run_only_adds_tls_listeners() {
    let fleet = Fleet::new(2, TLS_SASL, true);
    let out = fleet.ok(&["deploy", "--limit", "compute01"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only phase 1/4 runs"), "{err}");
    let conf = file(&fleet, "compute01", "nova-libvirt/libvirtd.conf");
    assert!(
        conf.contains("listen_tls = 1") && conf.contains("listen_tcp = 1"),
        "{conf}"
    );
    assert!(file(&fleet, "compute01", "nova-compute/nova.conf").contains("qemu+tcp://"));
    assert!(file(&fleet, "compute02", "nova-libvirt/libvirtd.conf").contains("listen_tls = 0"));

    let out = fleet.ok(&["deploy"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("phase 1/4") && text.contains("phase 4/4"),
        "{text}"
    );
    for host in ["compute01", "compute02"] {
        assert!(file(&fleet, host, "nova-libvirt/libvirtd.conf").contains("listen_tcp = 0"));
        assert!(file(&fleet, host, "nova-compute/nova.conf").contains("qemu+tls://"));
    }
}

/// A peer that cannot reach a host's new TLS listener (a firewall dropping 16514): the run
/// stops after phase 1, before any nova dials TLS, naming the host; every nova still dials
/// TCP and every pair still connects.
#[test]
fn a_tls_listener_no_peer_reaches_stops_the_run_before_nova_moves() {
    let fleet = Fleet::new(2, TLS_SASL, true);
    let address = fleet.host("compute02").libvirt_address().to_string();
    let firewall = Firewall::drop(&address, &["16514"]);
    let (out, report) = fleet.run_report(&["deploy"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = host_report(&report, "compute02");
    assert_eq!(r["status"], "failed", "{r}");
    let error = r["error"].as_str().unwrap_or_default();
    assert!(error.contains("did not let compute01 in"), "{r}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("phase 2/4"), "{text}");
    for host in ["compute01", "compute02"] {
        assert!(file(&fleet, host, "nova-compute/nova.conf").contains("qemu+tcp://"));
    }
    // Run again with the firewall still there: every host listens on TLS now, so the run
    // would start past phase 1, but checks first what phase 1 would have checked after.
    let (out, report) = fleet.run_report(&["deploy"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        host_report(&report, "compute02")["status"],
        "failed",
        "{report}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the phase is not started"), "{err}");
    for host in ["compute01", "compute02"] {
        assert!(file(&fleet, host, "nova-compute/nova.conf").contains("qemu+tcp://"));
    }
    drop(firewall);
    let out = fleet.ok(&["deploy"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("phase 2/4") && text.contains("phase 4/4"),
        "{text}"
    );
}
