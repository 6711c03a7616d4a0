//! The shipped libvirt-host playbook (libvirtd under the host's systemd), planned against a
//! throw-away config directory.

use std::path::Path;

use serde_json::{json, Value};
use virtfleet_inventory::Vars;
use virtfleet_plan::{load_playbook, merge, plan_host, HostPlan, Merge, PlanInput, Runs};

fn plan(extra: Value) -> HostPlan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks/libvirt-host.yml");
    let playbook = load_playbook(&path).expect("shipped playbook loads");
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("config/nova/nova-libvirt");
    std::fs::create_dir_all(&certs).unwrap();
    for name in [
        "cacert.pem",
        "servercert.pem",
        "serverkey.pem",
        "clientcert.pem",
        "clientkey.pem",
    ] {
        std::fs::write(
            certs.join(name),
            format!("-----BEGIN CERTIFICATE-----\n{name}\n-----END CERTIFICATE-----\n"),
        )
        .unwrap();
    }
    let Value::Object(mut vars) = extra else {
        panic!("an object")
    };
    vars.entry("libvirt_sasl_password").or_insert(json!("pw"));
    // What virtfleet reads from the fleet's client certificates.
    vars.entry("virtfleet_fleet_client_dns")
        .or_insert(json!(["CN=kvm1"]));
    vars.entry("migration_interface_address")
        .or_insert(json!("10.0.0.11"));
    let vars: Vars = vars;
    let facts = json!({"nodename": "kvm1"});
    plan_host(&PlanInput {
        playbook: &playbook,
        host: "kvm1",
        vars: &vars,
        configdir: dir.path(),
        facts: Some(&facts),
    })
    .unwrap()
}

fn restart_commands(plan: &HostPlan) -> Vec<String> {
    let Runs::Host { restart } = &plan.services[0].runs else {
        panic!("libvirtd runs on the host")
    };
    // The first step refuses modular daemons (a shell test); the rest are systemctl.
    assert!(restart[0].exec.join(" ").contains("virtqemud.socket"));
    restart[1..].iter().map(|s| s.exec.join(" ")).collect()
}

#[test]
fn tls_goes_to_libvirts_own_paths_and_the_tls_socket_replaces_the_tcp_one() {
    let plan = plan(json!({"libvirt_tls": "yes"}));
    let libvirtd = &plan.services[0];
    let paths: Vec<(&str, u32)> = libvirtd
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.mode))
        .collect();
    assert_eq!(
        paths,
        [
            ("/etc/libvirt/libvirtd.conf", 0o644),
            ("/etc/sasl2/libvirt.conf", 0o644),
            ("/etc/libvirt/auth.conf", 0o600),
            ("/etc/pki/CA/cacert.pem", 0o644),
            ("/etc/pki/libvirt/servercert.pem", 0o644),
            ("/etc/pki/libvirt/private/serverkey.pem", 0o600),
            ("/etc/pki/libvirt/clientcert.pem", 0o644),
            ("/etc/pki/libvirt/private/clientkey.pem", 0o600),
            (
                "/etc/systemd/system/libvirtd-tls.socket.d/virtfleet.conf",
                0o644
            ),
        ]
    );
    let socket = &libvirtd.files[8];
    assert_eq!(
        String::from_utf8_lossy(&socket.content),
        "[Socket]\nListenStream=\nListenStream=10.0.0.11:16514\n"
    );
    assert_eq!(
        restart_commands(&plan),
        [
            "systemctl daemon-reload",
            "systemctl stop libvirtd.service libvirtd.socket libvirtd-ro.socket \
             libvirtd-admin.socket libvirtd-tcp.socket libvirtd-tls.socket",
            "systemctl enable libvirtd-tls.socket",
            "systemctl disable libvirtd-tcp.socket",
            "systemctl start libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket",
            "systemctl start libvirtd-tls.socket",
            "systemctl start libvirtd.service",
        ]
    );
    assert_eq!(libvirtd.reload.as_ref().unwrap().files.len(), 5);
    assert!(plan.container_engine.is_empty());
    // Merged into a distribution's file: its comments and other settings stay.
    let conf = libvirtd
        .files
        .iter()
        .find(|f| f.path.ends_with("libvirtd.conf"))
        .unwrap();
    assert_eq!(conf.merge, Some(Merge::Conf));
    let host = "# Debian's file\n#listen_tls = 0\nauth_tcp = \"none\"\nmax_clients = 5000\n";
    let merged =
        String::from_utf8(merge(Merge::Conf, Some(host.as_bytes()), &conf.content).unwrap())
            .unwrap();
    assert!(
        merged.starts_with(
            "# Debian's file\n#listen_tls = 0\nauth_tcp = \"sasl\"\nmax_clients = 5000\n"
        ),
        "{merged}"
    );
    assert!(
        merged.contains("auth_tls = \"sasl\"\n")
            && merged.contains("tls_no_verify_certificate = 0\n"),
        "{merged}"
    );
}

#[test]
fn without_tls_the_tcp_socket_stays_and_asks_for_sasl() {
    let plan = plan(json!({}));
    assert_eq!(
        restart_commands(&plan),
        [
            "systemctl daemon-reload",
            "systemctl stop libvirtd.service libvirtd.socket libvirtd-ro.socket \
             libvirtd-admin.socket libvirtd-tcp.socket libvirtd-tls.socket",
            "systemctl enable libvirtd-tcp.socket",
            "systemctl disable libvirtd-tls.socket",
            "systemctl start libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket",
            "systemctl start libvirtd-tcp.socket",
            "systemctl start libvirtd.service",
        ]
    );
    let plan = plan_without_sockets();
    let Runs::Host { restart } = &plan.services[0].runs else {
        panic!("libvirtd runs on the host")
    };
    let restart: Vec<String> = restart.iter().map(|s| s.exec.join(" ")).collect();
    assert_eq!(restart, ["systemctl restart libvirtd.service"]);
    let conf = String::from_utf8(plan.services[0].files[0].content.clone()).unwrap();
    assert!(
        conf.contains("auth_tcp = \"sasl\"") && conf.contains("listen_tcp = 1"),
        "{conf}"
    );
}

fn plan_without_sockets() -> HostPlan {
    plan(json!({"libvirt_socket_activation": "no"}))
}

#[test]
fn qemu_native_tls_puts_qemus_pairs_in_its_directory_for_its_group_and_merges_qemu_conf() {
    let off = plan(json!({"libvirt_tls": "yes"}));
    assert!(off.services[0]
        .files
        .iter()
        .all(|f| !f.path.contains("qemu")));
    let on = plan(json!({"libvirt_tls": "yes", "libvirt_qemu_native_tls": "yes"}));
    let libvirtd = &on.services[0];
    let qemu: Vec<(&str, u32, Option<&str>, bool)> = libvirtd
        .files
        .iter()
        .filter(|f| f.path.contains("qemu"))
        .map(|f| (f.path.as_str(), f.mode, f.owner.as_deref(), f.secret))
        .collect();
    let owner = Some("root:libvirt-qemu");
    assert_eq!(
        qemu,
        [
            ("/etc/libvirt/qemu.conf", 0o600, None, false),
            ("/etc/pki/qemu/ca-cert.pem", 0o640, owner, false),
            ("/etc/pki/qemu/server-cert.pem", 0o640, owner, false),
            ("/etc/pki/qemu/server-key.pem", 0o640, owner, true),
            ("/etc/pki/qemu/client-cert.pem", 0o640, owner, false),
            ("/etc/pki/qemu/client-key.pem", 0o640, owner, true),
        ]
    );
    let conf = libvirtd
        .files
        .iter()
        .find(|f| f.path == "/etc/libvirt/qemu.conf")
        .unwrap();
    assert_eq!(conf.merge, Some(Merge::Conf));
    // A host's own migrate_ keys (which would win for migrations) are replaced in place.
    let merged = merge(
        Merge::Conf,
        Some(b"# Debian's\n#default_tls_x509_verify = 1\nmigrate_tls_x509_verify = 0\n"),
        &conf.content,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(merged).unwrap(),
        "# Debian's\n#default_tls_x509_verify = 1\nmigrate_tls_x509_verify = 1\n\
         default_tls_x509_cert_dir = \"/etc/pki/qemu\"\ndefault_tls_x509_verify = 1\n\
         migrate_tls_x509_cert_dir = \"/etc/pki/qemu\"\n"
    );
    // The CA and QEMU's pairs (libvirt's here: the directory has no qemu-*.pem) change
    // live: QEMU reads them when a migration starts. qemu.conf restarts libvirtd.
    let reload = libvirtd.reload.as_ref().unwrap();
    for f in libvirtd
        .files
        .iter()
        .filter(|f| f.path.starts_with("/etc/pki/qemu/"))
    {
        assert!(reload.files.contains(&f.path), "{}", f.path);
        assert_eq!(
            f.cert_set.is_some(),
            f.role != Some(virtfleet_plan::CertRole::Ca)
        );
    }
    assert!(!reload.files.iter().any(|p| p.ends_with("qemu.conf")));
    assert_eq!(on.tls.as_ref().unwrap().sets, ["qemu"]);
    let rhel = plan(
        json!({"libvirt_tls": "yes", "libvirt_qemu_native_tls": "yes",
                           "qemu_group": "qemu"}),
    );
    assert!(rhel.services[0]
        .files
        .iter()
        .any(|f| f.owner.as_deref() == Some("root:qemu")));
}
