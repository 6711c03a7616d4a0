//! Issue 16: QEMU-native TLS, proven by real live migrations of a guest between two lab
//! hosts' nova_libvirt containers, with the migration port captured on the wire.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use virtfleet_suite::*;

const NATIVE_TLS: &str = "libvirt_tls: \"yes\"\nlibvirt_qemu_native_tls: \"yes\"\n";
/// Lands in the guest's RAM: the firmware copies the SMBIOS tables, OEM strings included.
const MARKER: &str = "VFMARKER-5d1c0e7a-guest-memory";
const GUEST: &str = "vfguest";

/// A diskless TCG guest (no /dev/kvm needed) idling in its firmware.
fn guest_xml() -> String {
    format!(
        "<domain type='qemu'><name>{GUEST}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>\
         <sysinfo type='smbios'><oemStrings><entry>{MARKER}</entry></oemStrings></sysinfo>\
         <os><type arch='x86_64' machine='pc'>hvm</type><smbios mode='sysinfo'/></os>\
         <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>"
    )
}

/// Runs `script` in `host`'s nova_libvirt container (stdin from `input`), unchecked.
fn in_libvirt(fleet: &Fleet, host: &str, script: &str, input: &str) -> Output {
    let engine = fleet.engine(host);
    let command = format!("{engine} exec -i nova_libvirt sh -c {}", quote(script));
    let mut ssh = fleet.lab.ssh_command(fleet.host(host));
    let mut child = ssh
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh client runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// `virsh migrate` of the guest as nova does it (peer to peer over libvirt's TLS, the
/// migration stream to the destination's name), with QEMU's TLS or without.
fn migrate(fleet: &Fleet, from: &str, to: &str, tls: bool) -> Output {
    let tls = if tls { "--tls " } else { "" };
    let script = format!(
        "timeout 120 virsh migrate --live --p2p {tls}{GUEST} qemu+tls://{to}/system \
         --migrateuri tcp://{to} </dev/null"
    );
    in_libvirt(fleet, from, &script, "")
}

fn guest_state(fleet: &Fleet, host: &str) -> String {
    let out = in_libvirt(fleet, host, &format!("virsh domstate {GUEST}"), "");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// tcpdump on the loopback the lab hosts share, for one host's QEMU migration ports.
struct Capture {
    tcpdump: Child,
    file: PathBuf,
}

impl Capture {
    fn start(dir: &Path, name: &str, address: std::net::Ipv4Addr) -> Capture {
        let file = dir.join(format!("{name}.pcap"));
        let filter = format!("host {address} and portrange 49152-49215");
        let mut tcpdump = Command::new("tcpdump")
            .args(["-i", "lo", "-U", "-n", "-w"])
            .arg(&file)
            .arg(filter)
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump (scripts/setup.sh installs it)");
        // It says so once it captures.
        let mut line = String::new();
        BufReader::new(tcpdump.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "tcpdump: {line}");
        Capture { tcpdump, file }
    }

    /// The TCP payloads captured, in order.
    fn stop(mut self) -> Vec<Vec<u8>> {
        std::thread::sleep(std::time::Duration::from_millis(300));
        // SIGINT: tcpdump flushes and closes the file.
        let pid = self.tcpdump.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        self.tcpdump.wait().unwrap();
        tcp_payloads(&std::fs::read(&self.file).unwrap())
    }
}

/// TCP payloads of a pcap file (microsecond, little-endian; Ethernet framing as on `lo`).
fn tcp_payloads(pcap: &[u8]) -> Vec<Vec<u8>> {
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "pcap magic");
    assert_eq!(
        u32::from_le_bytes(pcap[20..24].try_into().unwrap()),
        1,
        "Ethernet"
    );
    let mut payloads = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &pcap[at + 16..(at + 16 + len).min(pcap.len())];
        at += 16 + len;
        let Some(ip) = frame.get(14..) else { continue };
        if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
            continue;
        }
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        let tcp = &ip[((ip[0] & 0xf) as usize * 4)..total.min(ip.len())];
        let data_at = (tcp[12] >> 4) as usize * 4;
        if tcp.len() > data_at {
            payloads.push(tcp[data_at..].to_vec());
        }
    }
    payloads
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A server pair from a CA that is not the fleet's (self-signed), for `name`.
fn foreign_pair(dir: &Path, name: &str) -> (String, String) {
    let (key, cert) = (dir.join("foreign.key"), dir.join("foreign.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
        .args(["-addext", &format!("subjectAltName=DNS:{name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    (read(&cert), read(&key))
}

fn sha256_in_libvirt(fleet: &Fleet, host: &str, path: &str) -> String {
    let out = in_libvirt(fleet, host, &format!("sha256sum {path}"), "");
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

#[test]
fn a_live_migration_goes_over_qemus_tls_and_survives_a_rotation_without_restarts() {
    let fleet = Fleet::new(2, NATIVE_TLS, true);
    let (a, b) = ("compute01", "compute02");
    let scratch = tempfile::tempdir().unwrap();

    // Tunnelling with native TLS: exit 2 naming the override, before any host is contacted.
    let override_file = fleet.configdir.path().join("config/nova.conf");
    std::fs::write(
        &override_file,
        "[libvirt]\nlive_migration_tunnelled = True\n",
    )
    .unwrap();
    let sessions = |h: &str| fleet.host(h).sessions_started();
    let before = (sessions(a), sessions(b));
    let out = fleet.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&override_file.display().to_string())
            && stderr.contains("live_migration_tunnelled"),
        "{stderr}"
    );
    assert_eq!((sessions(a), sessions(b)), before, "a host was contacted");
    std::fs::remove_file(&override_file).unwrap();

    let (out, report) = fleet.run_report(&["deploy"]);
    assert!(out.status.success(), "{}\n{report}", describe(&out));
    for host in [a, b] {
        let listing = in_libvirt(&fleet, host, "ls -ln /etc/pki/qemu", "");
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert_eq!(
            listing.matches("-rw-r----- 1 0 42436 ").count(),
            5,
            "{listing}"
        );
    }

    let created = in_libvirt(
        &fleet,
        a,
        "cat > /tmp/g.xml && virsh create /tmp/g.xml",
        &guest_xml(),
    );
    assert!(created.status.success(), "{}", describe(&created));

    // A -> B over QEMU's TLS: a handshake on the migration port, and the guest's RAM (the
    // marker) nowhere on the wire.
    let wire = Capture::start(scratch.path(), "tls", fleet.host(b).libvirt_address());
    let out = migrate(&fleet, a, b, true);
    let payloads = wire.stop();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(guest_state(&fleet, b), "running");
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    assert!(
        bytes > 100_000,
        "the guest's RAM did not cross: {bytes} bytes"
    );
    let hello = payloads.iter().find(|p| !p.is_empty()).expect("a payload");
    assert_eq!(&hello[..2], &[0x16, 0x03], "not a TLS handshake record");
    assert!(!payloads.iter().any(|p| contains(p, MARKER.as_bytes())));

    // The control: B -> A without QEMU's TLS shows the marker in clear, so its absence above
    // means encryption, not a capture that missed the RAM.
    let wire = Capture::start(scratch.path(), "clear", fleet.host(a).libvirt_address());
    let out = migrate(&fleet, b, a, false);
    let payloads = wire.stop();
    assert!(out.status.success(), "{}", describe(&out));
    let all: Vec<u8> = payloads.concat();
    assert!(
        contains(&all, MARKER.as_bytes()),
        "the marker is not in the guest's RAM"
    );

    // B's QEMU presenting a certificate from another CA: the migration fails in TLS, and
    // the guest stays on A.
    let (cert, key) = foreign_pair(scratch.path(), b);
    let planted = in_libvirt(&fleet, b, "cat > /etc/pki/qemu/server-cert.pem", &cert);
    assert!(planted.status.success(), "{}", describe(&planted));
    let planted = in_libvirt(&fleet, b, "cat > /etc/pki/qemu/server-key.pem", &key);
    assert!(planted.status.success(), "{}", describe(&planted));
    let out = migrate(&fleet, a, b, true);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("tls") || err.contains("certificate"),
        "{}",
        describe(&out)
    );
    assert_eq!(guest_state(&fleet, a), "running");
    // A destination whose QEMU has no certificates yet (a fleet half way through turning
    // native TLS on): the migration fails at its start, the guest stays on the source.
    let removed = in_libvirt(&fleet, b, "rm -f /etc/pki/qemu/*.pem", "");
    assert!(removed.status.success(), "{}", describe(&removed));
    let out = migrate(&fleet, a, b, true);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(guest_state(&fleet, a), "running");
    let restored = in_libvirt(&fleet, b, "kolla_set_configs", "");
    assert!(restored.status.success(), "{}", describe(&restored));

    // Rotation: new pairs reach QEMU's copies by the live reload; nova_libvirt keeps running
    // (QEMU reads its certificates per migration) and the next migration uses them.
    let started: Vec<String> = [a, b]
        .iter()
        .map(|h| fleet.started_at(h, "nova_libvirt"))
        .collect();
    fleet.reissue_leaves(&[a, b]);
    let (out, report) = fleet.run_report(&["rotate", "--yes"]);
    assert!(out.status.success(), "{}\n{report}", describe(&out));
    for (host, started) in [a, b].iter().zip(&started) {
        let r = host_report(&report, host);
        assert_eq!(strings(&r["reloaded"]), ["nova_libvirt"], "{host}: {r}");
        assert_eq!(&fleet.started_at(host, "nova_libvirt"), started, "{host}");
        let issued = sha256_file(&fleet.host_cert_dir(host).join("servercert.pem"));
        let qemu_copy = sha256_in_libvirt(&fleet, host, "/etc/pki/qemu/server-cert.pem");
        assert_eq!(qemu_copy, issued, "{host}");
    }
    let wire = Capture::start(scratch.path(), "rotated", fleet.host(b).libvirt_address());
    let out = migrate(&fleet, a, b, true);
    let payloads = wire.stop();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(guest_state(&fleet, b), "running");
    assert!(!payloads.iter().any(|p| contains(p, MARKER.as_bytes())));

    // The audit: clean with native TLS on everywhere; told on every host once one host's
    // nova stops asking for it (edited by hand, as drift would).
    let (out, report) = fleet.run_report(&["audit", "--fail-on", "medium"]);
    assert!(out.status.success(), "{}\n{report}", describe(&out));
    fleet.sh(
        b,
        "sed -i 's/^live_migration_with_native_tls = true/live_migration_with_native_tls = false/' \
         /etc/kolla/nova-compute/nova.conf",
    );
    let (out, report) = fleet.run_report(&["audit", "--fail-on", "medium"]);
    assert_eq!(out.status.code(), Some(1), "{}\n{report}", describe(&out));
    for host in [a, b] {
        let ids: Vec<&str> = report["hosts"][host]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["NOVA-NATIVE-TLS-MIXED"], "{host}: {report}");
    }
}
