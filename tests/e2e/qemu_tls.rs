//! Issue 16: QEMU-native TLS, proven by real live migrations of a guest between two lab
//! hosts (Kolla's nova_libvirt containers, and plain hosts whose libvirtd runs under
//! systemd), with the migration port captured on the wire.

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
    ssh_with_input(fleet, host, &command, input)
}

/// Runs `script` on a plain `host` as root (stdin from `input`), unchecked.
fn on_host(fleet: &Fleet, host: &str, script: &str, input: &str) -> Output {
    ssh_with_input(fleet, host, &format!("sh -c {}", quote(script)), input)
}

fn ssh_with_input(fleet: &Fleet, host: &str, command: &str, input: &str) -> Output {
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
    in_libvirt(fleet, from, &migrate_script(fleet, to, tls), "")
}

/// The destination QEMU listens on its host's address only: lab hosts share this machine's
/// network stack, and a wildcard listener would take another test's port probes (the audit
/// tests') as its migration stream.
fn migrate_script(fleet: &Fleet, to: &str, tls: bool) -> String {
    let tls = if tls { "--tls " } else { "" };
    let listen = fleet.host(to).libvirt_address();
    format!(
        "timeout 120 virsh migrate --live --p2p {tls}{GUEST} qemu+tls://{to}/system \
         --migrateuri tcp://{to} --listen-address {listen} </dev/null"
    )
}

fn guest_state(fleet: &Fleet, host: &str) -> String {
    let out = in_libvirt(fleet, host, &format!("virsh domstate {GUEST}"), "");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn guest_state_on_host(fleet: &Fleet, host: &str) -> String {
    let out = on_host(fleet, host, &format!("virsh domstate {GUEST}"), "");
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

/// A migration stream that crossed (the guest's RAM), opened by a TLS handshake record, with
/// the marker in the guest's RAM nowhere in clear.
fn assert_tls_only(payloads: &[Vec<u8>]) {
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    assert!(
        bytes > 100_000,
        "the guest's RAM did not cross: {bytes} bytes"
    );
    let hello = payloads.iter().find(|p| !p.is_empty()).expect("a payload");
    assert_eq!(&hello[..2], &[0x16, 0x03], "not a TLS handshake record");
    assert!(!payloads.iter().any(|p| contains(p, MARKER.as_bytes())));
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
    assert_tls_only(&payloads);

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
        // QEMU's own pair (`certs issue` made it), renewed and copied in by the reload.
        let issued = sha256_file(&fleet.host_cert_dir(host).join("qemu-servercert.pem"));
        let qemu_copy = sha256_in_libvirt(&fleet, host, "/etc/pki/qemu/server-cert.pem");
        assert_eq!(qemu_copy, issued, "{host}");
    }
    let wire = Capture::start(scratch.path(), "rotated", fleet.host(b).libvirt_address());
    let out = migrate(&fleet, a, b, true);
    let payloads = wire.stop();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(guest_state(&fleet, b), "running");
    assert_tls_only(&payloads);

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

/// Plain KVM hosts (libvirt-host.yml): QEMU gets pairs of its own (`certs issue`, OU=qemu) in
/// /etc/pki/qemu for its group; a peer's libvirtd refuses QEMU's client pair; a live
/// migration goes over QEMU's TLS, before and after a CA rollover that restarts nothing.
#[test]
fn a_plain_host_migrates_over_qemus_own_pairs_through_a_ca_rollover() {
    let lab = LabOptions::new(2).kinds(&[Kind::Systemd]);
    let fleet = Fleet::with(lab, NATIVE_TLS, false);
    let (a, b) = ("compute01", "compute02");
    let scratch = tempfile::tempdir().unwrap();
    let pb = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("playbooks/libvirt-host.yml")
        .display()
        .to_string();
    let with_pb = |args: &[&'static str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--playbook".to_string(), pb.clone()]);
        all
    };
    fleet.ok(&strs(&with_pb(&["certs", "init-ca"])));
    fleet.ok(&strs(&with_pb(&["certs", "issue"])));
    // QEMU's own pairs beside libvirt's: the same name, another subject.
    let dir = fleet.host_cert_dir(a);
    let subject =
        |name: &str| virtfleet_pki::libvirt_dn(&std::fs::read(dir.join(name)).unwrap()).unwrap();
    assert_eq!(subject("clientcert.pem"), format!("CN={a}"));
    assert_eq!(subject("qemu-clientcert.pem"), format!("CN={a},OU=qemu"));
    let out = fleet.ok(&strs(&with_pb(&["certs", "check"])));
    let text = describe(&out);
    assert!(
        text.contains("qemu-servercert.pem") && text.contains(" 0 warnings"),
        "{text}"
    );
    // QEMU's pairs are checked as libvirt's: compute01's server pair on compute02 names the
    // wrong host (exit 2 naming the file, no host touched); without its own client pair
    // QEMU gets libvirt's, with a warning.
    let dir_b = fleet.host_cert_dir(b);
    let keep: Vec<(PathBuf, Vec<u8>)> = ["qemu-servercert.pem", "qemu-serverkey.pem"]
        .iter()
        .map(|n| (dir_b.join(n), std::fs::read(dir_b.join(n)).unwrap()))
        .collect();
    for name in ["qemu-servercert.pem", "qemu-serverkey.pem"] {
        std::fs::copy(dir.join(name), dir_b.join(name)).unwrap();
    }
    let out = fleet.run(&strs(&with_pb(&["check"])));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let text = describe(&out);
    assert!(
        text.contains(&format!("{}", dir_b.join("qemu-servercert.pem").display())),
        "{text}"
    );
    for (path, content) in keep {
        std::fs::write(path, content).unwrap();
    }
    let held_aside = scratch.path().join("held-aside");
    std::fs::create_dir(&held_aside).unwrap();
    for name in ["qemu-clientcert.pem", "qemu-clientkey.pem"] {
        std::fs::rename(dir_b.join(name), held_aside.join(name)).unwrap();
    }
    let out = fleet.ok(&strs(&with_pb(&["certs", "check"])));
    let text = describe(&out);
    assert!(
        text.contains("warning:") && text.contains("holds this file of the main set"),
        "{text}"
    );
    for name in ["qemu-clientcert.pem", "qemu-clientkey.pem"] {
        std::fs::rename(held_aside.join(name), dir_b.join(name)).unwrap();
    }

    // A list of subjects that would let QEMU's own in (a wildcard), or none at all: exit 2.
    for list in ["[\"CN=compute*\"]", "[]"] {
        fleet.write_globals(&format!(
            "{NATIVE_TLS}libvirt_tls_allowed_dn_list: {list}\n"
        ));
        let out = fleet.run(&strs(&with_pb(&["check"])));
        assert_eq!(out.status.code(), Some(2), "{list}: {}", describe(&out));
        let text = describe(&out);
        let why = match list {
            "[]" => "empty libvirt_tls_allowed_dn_list",
            _ => "qemu-clientcert.pem: the qemu client certificate's subject",
        };
        assert!(text.contains(why), "{list}: {text}");
    }
    fleet.write_globals(NATIVE_TLS);
    let qemu_conf_before = fleet.sh(a, "cat /etc/libvirt/qemu.conf");
    let (out, report) = fleet.run_report(&strs(&with_pb(&["deploy"])));
    assert!(out.status.success(), "{}\n{report}", describe(&out));
    let listing = fleet.sh(a, "stat -c '%a %U %G %n' /etc/pki/qemu /etc/pki/qemu/*");
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        [
            "755 root root /etc/pki/qemu",
            "640 root libvirt-qemu /etc/pki/qemu/ca-cert.pem",
            "640 root libvirt-qemu /etc/pki/qemu/client-cert.pem",
            "640 root libvirt-qemu /etc/pki/qemu/client-key.pem",
            "640 root libvirt-qemu /etc/pki/qemu/server-cert.pem",
            "640 root libvirt-qemu /etc/pki/qemu/server-key.pem",
        ]
    );
    assert_eq!(
        fleet.sh(a, "sha256sum < /etc/pki/qemu/client-cert.pem")[..64],
        sha256_file(&dir.join("qemu-clientcert.pem"))
    );
    // qemu.conf: the two keys, every other line the host's.
    let qemu_conf = fleet.sh(a, "cat /etc/libvirt/qemu.conf");
    let ours =
        |l: &&str| !l.starts_with("default_tls_x509_") && !l.starts_with("migrate_tls_x509_");
    assert_eq!(
        qemu_conf.lines().filter(ours).collect::<Vec<_>>(),
        qemu_conf_before.lines().filter(ours).collect::<Vec<_>>()
    );
    assert!(qemu_conf.contains(
        "\ndefault_tls_x509_cert_dir = \"/etc/pki/qemu\"\ndefault_tls_x509_verify = 1\n"
    ));
    // A second run changes nothing (owner root:libvirt-qemu read back as such).
    let (out, report) = fleet.run_report(&strs(&with_pb(&["deploy"])));
    assert!(out.status.success(), "{}", describe(&out));
    for host in [a, b] {
        assert_eq!(host_report(&report, host)["status"], "ok", "{report}");
    }

    // audit reads QEMU's directory too: its group reading the keys is as meant; every user
    // reading one is not.
    let qemu_findings = |report: &serde_json::Value| -> Vec<String> {
        report["hosts"][a]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["evidence"].as_str().unwrap().contains("/etc/pki/qemu"))
            .map(|f| format!("{} {}", f["id"], f["severity"]))
            .collect()
    };
    let (_, report) = fleet.run_report(&strs(&with_pb(&["audit"])));
    assert_eq!(qemu_findings(&report), Vec::<String>::new(), "{report}");
    fleet.sh(a, "chmod 0644 /etc/pki/qemu/client-key.pem");
    let (_, report) = fleet.run_report(&strs(&with_pb(&["audit"])));
    assert_eq!(
        qemu_findings(&report),
        ["\"KEY-READABLE\" \"high\""],
        "{report}"
    );
    fleet.sh(a, "chmod 0640 /etc/pki/qemu/client-key.pem");

    // QEMU's client pair is no libvirt client: the peer's libvirtd refuses its subject,
    // SASL credentials or not, while libvirt's own pair from the same place gets in.
    let client_with = |cert: &str, key: &str| {
        format!(
            "d=$(mktemp -d) && cp /etc/pki/qemu/ca-cert.pem $d/cacert.pem && \
             cp {cert} $d/clientcert.pem && cp {key} $d/clientkey.pem && \
             timeout 20 virsh -c 'qemu+tls://{b}/system?pkipath='$d version </dev/null"
        )
    };
    let qemus = on_host(
        &fleet,
        a,
        &client_with(
            "/etc/pki/qemu/client-cert.pem",
            "/etc/pki/qemu/client-key.pem",
        ),
        "",
    );
    assert!(
        !qemus.status.success(),
        "QEMU's pair got into {b}'s libvirtd"
    );
    let libvirts = on_host(
        &fleet,
        a,
        &client_with(
            "/etc/pki/libvirt/clientcert.pem",
            "/etc/pki/libvirt/private/clientkey.pem",
        ),
        "",
    );
    assert!(libvirts.status.success(), "{}", describe(&libvirts));

    // A -> B over QEMU's TLS with QEMU's own pairs: a handshake, no guest RAM in clear.
    let created = on_host(
        &fleet,
        a,
        "cat > /tmp/g.xml && virsh create /tmp/g.xml",
        &guest_xml(),
    );
    assert!(created.status.success(), "{}", describe(&created));
    let wire = Capture::start(scratch.path(), "host-tls", fleet.host(b).libvirt_address());
    let out = on_host(&fleet, a, &migrate_script(&fleet, b, true), "");
    let payloads = wire.stop();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(guest_state_on_host(&fleet, b), "running");
    assert_tls_only(&payloads);

    // A CA rollover: three phases, each live (libvirtd keeps its invocation); QEMU's
    // directory ends with the new CA only and pairs the new CA signed, and the guest
    // migrates back over TLS with them.
    let invocation = |h: &str| fleet.sh(h, "systemctl show -P InvocationID libvirtd.service");
    let started = (invocation(a), invocation(b));
    fleet.ok(&strs(&with_pb(&["certs", "init-ca", "--force"])));
    fleet.ok(&strs(&with_pb(&["certs", "issue"])));
    let (out, report) = fleet.run_report(&strs(&with_pb(&["rotate", "--yes"])));
    assert!(out.status.success(), "{}\n{report}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("phase 3/3"));
    assert_eq!(
        (invocation(a), invocation(b)),
        started,
        "libvirtd restarted"
    );
    let ca = fleet
        .configdir
        .path()
        .join("config/nova/nova-libvirt/cacert.pem");
    for host in [a, b] {
        let held = |path: &str| fleet.sh(host, &format!("sha256sum < {path}"))[..64].to_string();
        assert_eq!(
            held("/etc/pki/qemu/ca-cert.pem"),
            sha256_file(&ca),
            "{host}"
        );
        let issued = fleet.host_cert_dir(host).join("qemu-servercert.pem");
        assert_eq!(
            held("/etc/pki/qemu/server-cert.pem"),
            sha256_file(&issued),
            "{host}"
        );
    }
    let wire = Capture::start(
        scratch.path(),
        "host-rolled",
        fleet.host(a).libvirt_address(),
    );
    let out = on_host(&fleet, b, &migrate_script(&fleet, a, true), "");
    let payloads = wire.stop();
    assert!(
        out.status.success(),
        "after the CA rollover: {}",
        describe(&out)
    );
    assert_eq!(guest_state_on_host(&fleet, a), "running");
    assert_tls_only(&payloads);
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
