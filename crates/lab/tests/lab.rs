//! Lab self-tests: the hosts are separate, reachable by real ssh, run real libvirtd, and leave
//! nothing behind. Needs root and the packages `.ci/run` installs.

use std::fs;
use std::path::Path;
use std::process::Command;

use virtfleet_lab::{Lab, LabHost};

mod common;
use common::{assert_day0_libvirtd, down_leaves_nothing, peer_virsh, stdout, wait_ready};

#[test]
fn hosts_are_separate_machines_reachable_over_ssh() {
    let lab = Lab::up(3).expect("lab up");
    for host in &lab.hosts {
        let out = stdout(&lab.ssh(host, "hostname; ls -A /etc/kolla; cat /etc/kolla/nova-libvirt/libvirtd.conf; podman ps --format '{{.Names}}' | sort"));
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some(host.name.as_str()));
        assert_eq!(lines.next(), Some("nova-compute"));
        assert_eq!(lines.next(), Some("nova-libvirt"));
        assert_day0_libvirtd(&out, host);
        assert!(out.ends_with("nova_compute\nnova_libvirt\n"), "{out}");
    }
    let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
    stdout(&lab.ssh(
        a,
        "echo only-on-a > /etc/kolla/marker && echo x > /root/marker",
    ));
    let seen_on_b = lab.ssh(b, "cat /etc/kolla/marker /root/marker");
    assert!(
        !seen_on_b.status.success(),
        "a file written on one host is visible on another"
    );
    assert!(a.kolla_path("marker").exists());
    // Names resolve to lab addresses inside the hosts, as TLS name checks need.
    let resolved = stdout(&lab.ssh(a, "getent hosts compute02"));
    assert!(resolved.starts_with(&b.address.to_string()), "{resolved}");
}

#[test]
fn libvirt_serves_tls_only_to_clients_with_a_certificate() {
    let lab = Lab::up(2).expect("lab up");
    let (server, peer) = (&lab.hosts[0], &lab.hosts[1]);
    let pki = lab.dir().join("test-pki");
    make_pki(&pki, server);
    let kolla = server.kolla_path("nova-libvirt");
    for file in ["cacert.pem", "servercert.pem", "serverkey.pem"] {
        fs::copy(pki.join(file), kolla.join(file)).unwrap();
    }
    fs::write(
        kolla.join("libvirtd.conf"),
        format!(
            "listen_tls = 1\nlisten_tcp = 0\nauth_tls = \"none\"\nlisten_addr = \"{}\"\n\
             ca_file = \"/etc/pki/CA/cacert.pem\"\n\
             cert_file = \"/etc/pki/libvirt/servercert.pem\"\n\
             key_file = \"/etc/pki/libvirt/private/serverkey.pem\"\n",
            server.address
        ),
    )
    .unwrap();
    let files = [
        ("libvirtd.conf", "/etc/libvirt/libvirtd.conf"),
        ("cacert.pem", "/etc/pki/CA/cacert.pem"),
        ("servercert.pem", "/etc/pki/libvirt/servercert.pem"),
        ("serverkey.pem", "/etc/pki/libvirt/private/serverkey.pem"),
    ];
    let config_files: Vec<_> = files
        .iter()
        .map(|(src, dest)| {
            serde_json::json!({"source": format!("/var/lib/kolla/config_files/{src}"),
                               "dest": dest, "owner": "root", "perm": "0600"})
        })
        .collect();
    let config =
        serde_json::json!({"command": "/usr/sbin/libvirtd --listen", "config_files": config_files});
    fs::write(kolla.join("config.json"), config.to_string()).unwrap();
    stdout(&lab.ssh(server, "podman restart nova_libvirt"));
    wait_ready(&lab, server);

    let client_dir = pki.join("client");
    let anonymous_dir = pki.join("anonymous");
    let uri = |dir: &Path| {
        format!(
            "qemu+tls://{}/system?pkipath={}",
            server.name,
            dir.display()
        )
    };
    let with_cert = peer_virsh(peer, &uri(&client_dir));
    assert!(
        with_cert.status.success(),
        "virsh with the client pair failed: {}",
        String::from_utf8_lossy(&with_cert.stderr)
    );
    let without = peer_virsh(peer, &uri(&anonymous_dir));
    assert!(
        !without.status.success(),
        "a client without a certificate was let in"
    );
    let tcp = peer_virsh(peer, &format!("qemu+tcp://{}/system", server.name));
    assert!(!tcp.status.success(), "plain TCP still open");
}

#[test]
fn podman_restart_survives_an_sshd_restart() {
    let lab = Lab::up(1).expect("lab up");
    let host = &lab.hosts[0];
    let before = container_id(&lab, host);
    host.stop_sshd();
    assert!(
        !lab.ssh(host, "true").status.success(),
        "sshd still answers"
    );
    host.start_sshd().expect("sshd restarts");
    let out = lab.ssh(
        host,
        "podman restart nova_libvirt nova_compute && podman ps --format '{{.Names}} {{.Status}}'",
    );
    let text = stdout(&out);
    assert!(text.contains("nova_libvirt Up"), "{text}");
    assert!(text.contains("nova_compute Up"), "{text}");
    assert_eq!(
        before,
        container_id(&lab, host),
        "restart must keep the container"
    );
}

#[test]
fn tear_down_leaves_nothing_behind() {
    let lab = Lab::up(2).expect("lab up");
    let sshd_pids: Vec<i32> = lab.hosts.iter().filter_map(LabHost::sshd_pid).collect();
    assert_eq!(sshd_pids.len(), 2);
    let container_pids: Vec<i32> = lab
        .hosts
        .iter()
        .flat_map(|h| {
            stdout(&lab.ssh(
                h,
                "podman inspect --format '{{.State.Pid}}' nova_libvirt nova_compute",
            ))
            .lines()
            .map(|l| l.parse::<i32>().unwrap())
            .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(container_pids.len(), 4);
    down_leaves_nothing(lab, sshd_pids.into_iter().chain(container_pids).collect());
}

#[test]
fn a_dropped_lab_cleans_up_even_when_a_test_panics() {
    let dir = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let lab = Lab::up(1).expect("lab up");
        *dir.lock().unwrap() = Some(lab.dir().to_path_buf());
        panic!("test failure inside a lab");
    });
    assert!(result.is_err());
    let dir = dir.into_inner().unwrap().expect("lab came up");
    assert!(!dir.exists(), "{} survived the panic", dir.display());
}

fn container_id(lab: &Lab, host: &LabHost) -> String {
    stdout(&lab.ssh(host, "podman inspect --format '{{.Id}}' nova_libvirt"))
}

/// A CA, a server pair for `server` and a client pair, with certtool (gnutls-bin).
fn make_pki(dir: &Path, server: &LabHost) {
    let client = dir.join("client");
    let anonymous = dir.join("anonymous");
    fs::create_dir_all(&client).unwrap();
    fs::create_dir_all(&anonymous).unwrap();
    let certtool = |args: &[&str]| {
        let out = Command::new("certtool")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "certtool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    fs::write(
        dir.join("ca.info"),
        "cn = lab test CA\nca\ncert_signing_key\nexpiration_days = 2\n",
    )
    .unwrap();
    certtool(&[
        "--generate-privkey",
        "--key-type",
        "rsa",
        "--bits",
        "2048",
        "--outfile",
        "cakey.pem",
    ]);
    certtool(&[
        "--generate-self-signed",
        "--load-privkey",
        "cakey.pem",
        "--template",
        "ca.info",
        "--outfile",
        "cacert.pem",
    ]);
    for kind in ["server", "client"] {
        fs::write(
            dir.join(format!("{kind}.info")),
            format!(
                "organization = lab\ncn = {name}\ndns_name = {name}\nip_address = {ip}\n\
                 tls_www_{kind}\nencryption_key\nsigning_key\nexpiration_days = 2\n",
                name = server.name,
                ip = server.address
            ),
        )
        .unwrap();
        let key = format!("{kind}key.pem");
        let cert = format!("{kind}cert.pem");
        certtool(&[
            "--generate-privkey",
            "--key-type",
            "rsa",
            "--bits",
            "2048",
            "--outfile",
            &key,
        ]);
        certtool(&[
            "--generate-certificate",
            "--load-privkey",
            &key,
            "--load-ca-certificate",
            "cacert.pem",
            "--load-ca-privkey",
            "cakey.pem",
            "--template",
            &format!("{kind}.info"),
            "--outfile",
            &cert,
        ]);
    }
    for file in ["cacert.pem", "clientcert.pem", "clientkey.pem"] {
        fs::copy(dir.join(file), client.join(file)).unwrap();
    }
    fs::copy(dir.join("cacert.pem"), anonymous.join("cacert.pem")).unwrap();
}

#[test]
fn a_non_root_user_logs_in_and_sudo_follows_its_rule() {
    let lab = Lab::up_with(2, virtfleet_lab::Containers::Light).expect("lab up");
    lab.add_user("vflab-ops", true).expect("add a sudo user");
    lab.add_user("vflab-plain", false)
        .expect("add a plain user");
    for host in &lab.hosts {
        let run = |user: &str, command: &str| {
            lab.ssh_command_as(host, user)
                .arg(command)
                .output()
                .unwrap()
        };
        let ops = stdout(&run("vflab-ops", "id -un; sudo -n id -un; hostname"));
        assert_eq!(ops, format!("vflab-ops\nroot\n{}\n", host.name));
        let plain = run("vflab-plain", "id -un; sudo -n true");
        assert!(!plain.status.success());
        assert_eq!(String::from_utf8_lossy(&plain.stdout), "vflab-plain\n");
        assert!(
            String::from_utf8_lossy(&plain.stderr).contains("password is required"),
            "{}",
            String::from_utf8_lossy(&plain.stderr)
        );
    }
    // The rule is the lab's own: outside the lab hosts, the machine grants nothing.
    assert!(!Path::new("/etc/sudoers.d/vflab-ops").exists());
    let rule = lab.dir().join("sudoers.d/vflab-ops");
    assert!(rule.exists());
    lab.down().expect("lab down");
    assert!(!rule.exists());
}

/// A lab past one /24 of addresses, without containers: podman is the stand-in, which answers
/// for the two containers as podman would and records every call, never a secret on stdin.
#[test]
fn hosts_without_containers_fit_past_254_and_record_what_the_engine_was_asked() {
    use virtfleet_lab::{Containers, Engine, LabOptions};
    let refused = LabOptions::new(2)
        .containers(Containers::StandIn)
        .engine(Engine::Docker)
        .up();
    assert!(refused.is_err(), "docker has no stand-in");
    let lab = LabOptions::new(300)
        .containers(Containers::StandIn)
        .up()
        .expect("lab up");
    let last = &lab.hosts[299];
    assert_eq!(last.name, "compute300");
    assert_eq!(last.address.to_string(), format!("127.{}.1.46", lab.id));
    let first = &lab.hosts[0];
    assert_eq!(first.address.to_string(), format!("127.{}.0.1", lab.id));
    let out = stdout(&lab.ssh(
        last,
        "hostname; podman ps -q | sort -u | wc -l; \
         podman inspect --format 'C {{.Name}} {{.Id}} {{.State.StartedAt}}' -- nova_libvirt nova_compute; \
         podman restart -- nova_compute; \
         podman inspect --format '{{.State.Running}} {{.State.StartedAt}}' -- nova_compute; \
         echo Secret-On-Stdin | podman exec -i -- nova_libvirt saslpasswd2 -c -p -a libvirt nova; \
         podman inspect -- no_such_container; echo missing=$?",
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "compute300");
    assert_eq!(lines[1], "2");
    let ids: Vec<&str> = lines[2..4]
        .iter()
        .map(|l| l.split(' ').nth(2).unwrap())
        .collect();
    assert!(lines[2].starts_with("C nova_libvirt ") && lines[3].starts_with("C nova_compute "));
    assert!(
        ids.iter().all(|id| id.len() == 64) && ids[0] != ids[1],
        "{out}"
    );
    // Started when the lab came up, then restarted: podman's format (Go's, UTC), never the
    // epoch (which no container's files could predate).
    let podman_time =
        |t: Option<&str>| t.is_some_and(|t| t.starts_with("20") && t.ends_with(" +0000 UTC"));
    assert!(
        lines[2..4]
            .iter()
            .all(|l| podman_time(l.splitn(4, ' ').nth(3))),
        "{out}"
    );
    assert!(podman_time(lines[4].strip_prefix("true ")), "{out}");
    assert_eq!(lines.last(), Some(&"missing=125"));
    let calls = last.engine_calls();
    assert!(
        calls.contains(&"restart -- nova_compute".to_string()),
        "{calls:?}"
    );
    assert!(calls
        .iter()
        .any(|c| c == "exec -i -- nova_libvirt saslpasswd2 -c -p -a libvirt nova"));
    assert!(!calls.iter().any(|c| c.contains("Secret")), "{calls:?}");
    // Each host records its own calls only.
    assert!(first.engine_calls().is_empty());
    let pids = lab.hosts.iter().filter_map(|h| h.sshd_pid()).collect();
    down_leaves_nothing(lab, pids);
}
