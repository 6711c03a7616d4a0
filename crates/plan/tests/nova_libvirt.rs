//! The shipped nova-libvirt playbook, planned against throw-away Kolla config directories.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tempfile::TempDir;
use virtfleet_inventory::Vars;
use virtfleet_plan::{
    load_playbook, plan_host, redact, CertRole, DesiredFile, HostPlan, PlanError, PlanInput,
    Playbook, ServicePlan,
};

const PASSWORD: &str = "s3cr3t-Pa55word";
const KEY_BODY: &str = "TUlJRXZnSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NCS2d3Z2dTa0FnRUFBb0lCQVFD";
const CERTS: [&str; 5] = [
    "cacert.pem",
    "servercert.pem",
    "serverkey.pem",
    "clientcert.pem",
    "clientkey.pem",
];

fn playbook() -> Playbook {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks/kolla.yml");
    load_playbook(&path).expect("shipped playbook loads")
}

/// PEM-looking content; keys get a recognisable body so tests can look for leaks.
fn pem(name: &str, tag: &str) -> String {
    if name.contains("key") {
        format!("-----BEGIN PRIVATE KEY-----\n{KEY_BODY}\n{tag}\n-----END PRIVATE KEY-----\n")
    } else {
        format!("-----BEGIN CERTIFICATE-----\nQ0VSVElGSUNBVEU=\n{tag}\n-----END CERTIFICATE-----\n")
    }
}

/// A Kolla config directory with the five shared certificates.
fn configdir() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("config/nova/nova-libvirt");
    std::fs::create_dir_all(&certs).unwrap();
    for name in CERTS {
        std::fs::write(certs.join(name), pem(name, "shared")).unwrap();
    }
    dir
}

fn write(path: PathBuf, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn vars(value: Value) -> Vars {
    let Value::Object(mut map) = value else {
        panic!("vars must be an object")
    };
    map.entry("ansible_host").or_insert(json!("10.0.0.11"));
    map.entry("libvirt_sasl_password")
        .or_insert(json!(PASSWORD));
    // What virtfleet reads from the fleet's client certificates.
    map.entry("virtfleet_fleet_client_dns")
        .or_insert(json!(["CN=compute1"]));
    map
}

/// What a host's facts say: its nodename is its inventory name, eth0 holds 10.0.0.11.
fn facts(host: &str) -> Value {
    json!({"nodename": host, "interfaces": ["lo", "eth0"],
           "lo": {"ipv4": {"address": "127.0.0.1"}},
           "eth0": {"ipv4": {"address": "10.0.0.11"}}})
}

fn try_plan(pb: &Playbook, dir: &TempDir, host: &str, vars: &Vars) -> Result<HostPlan, PlanError> {
    plan_host(&PlanInput {
        playbook: pb,
        host,
        vars,
        configdir: dir.path(),
        facts: Some(&facts(host)),
    })
}

fn plan(value: Value) -> HostPlan {
    let dir = configdir();
    try_plan(&playbook(), &dir, "compute1", &vars(value)).unwrap()
}

fn service<'a>(plan: &'a HostPlan, name: &str) -> &'a ServicePlan {
    plan.services.iter().find(|s| s.name == name).unwrap()
}

fn file<'a>(plan: &'a HostPlan, service_name: &str, name: &str) -> Option<&'a DesiredFile> {
    let svc = service(plan, service_name);
    svc.files
        .iter()
        .find(|f| f.path == format!("{}/{name}", svc.dir))
}

/// Every file of every service: path and content.
fn files_of(plan: &HostPlan) -> Vec<(String, Vec<u8>)> {
    let files = plan.services.iter().flat_map(|svc| &svc.files);
    files.map(|f| (f.path.clone(), f.content.clone())).collect()
}

fn text(plan: &HostPlan, service_name: &str, name: &str) -> String {
    let f =
        file(plan, service_name, name).unwrap_or_else(|| panic!("{service_name} has no {name}"));
    String::from_utf8(f.content.clone()).unwrap()
}

fn names(plan: &HostPlan, service_name: &str) -> Vec<String> {
    let svc = service(plan, service_name);
    svc.files
        .iter()
        .map(|f| {
            f.path
                .strip_prefix(&format!("{}/", svc.dir))
                .unwrap()
                .to_string()
        })
        .collect()
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

fn assert_has_lines(text: &str, wanted: &[&str]) {
    let have = lines(text);
    for line in wanted {
        assert!(have.contains(line), "missing line {line:?} in:\n{text}");
    }
}

fn assert_lacks(text: &str, unwanted: &[&str]) {
    for needle in unwanted {
        assert!(!text.contains(needle), "unexpected {needle:?} in:\n{text}");
    }
}

/// config.json as (source file name, dest, owner, perm) tuples.
fn config_files(
    plan: &HostPlan,
    service_name: &str,
) -> (String, Vec<(String, String, String, String)>) {
    let json: Value = serde_json::from_str(&text(plan, service_name, "config.json")).unwrap();
    let entries = json["config_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(
                e.get("optional").is_none(),
                "Kolla writes no \"optional\": {e}"
            );
            let source = e["source"].as_str().unwrap();
            (
                source
                    .strip_prefix("/var/lib/kolla/config_files/")
                    .unwrap()
                    .to_string(),
                e["dest"].as_str().unwrap().to_string(),
                e["owner"].as_str().unwrap().to_string(),
                e["perm"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (json["command"].as_str().unwrap().to_string(), entries)
}

#[test]
fn playbook_shape() {
    let pb = playbook();
    assert_eq!(pb.name, "nova-libvirt");
    assert_eq!(pb.hosts, "compute");
    let order: Vec<_> = pb.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        order,
        ["nova_libvirt", "nova_compute", "masakari_instancemonitor"],
        "restart order"
    );
    assert!(!pb.defaults.contains_key("libvirt_sasl_password"));
}

#[test]
fn tls_on_sasl_on() {
    let p = plan(json!({"libvirt_tls": true}));
    assert_has_lines(
        &text(&p, "nova_libvirt", "libvirtd.conf"),
        &[
            "listen_tls = 1",
            "listen_tcp = 0",
            "tls_port = \"16514\"",
            "auth_tls = \"sasl\"",
            "key_file = \"/etc/pki/libvirt/private/serverkey.pem\"",
            "cert_file = \"/etc/pki/libvirt/servercert.pem\"",
            "ca_file = \"/etc/pki/CA/cacert.pem\"",
            "listen_addr = \"10.0.0.11\"",
        ],
    );
    assert_lacks(
        &text(&p, "nova_libvirt", "libvirtd.conf"),
        &["auth_tcp", "tcp_port"],
    );
    assert_has_lines(
        &text(&p, "nova_compute", "nova.conf"),
        &[
            "[libvirt]",
            "connection_uri = \"qemu+tls://compute1/system\"",
            "live_migration_scheme = \"tls\"",
            "live_migration_inbound_addr = \"compute1\"",
            "virt_type = kvm",
        ],
    );
    assert_eq!(
        text(&p, "nova_libvirt", "sasl.conf")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        [
            "mech_list: SCRAM-SHA-256",
            "sasldb_path: /etc/libvirt/passwd.db"
        ]
    );
    assert_eq!(
        names(&p, "nova_libvirt"),
        [
            "libvirtd.conf",
            "qemu.conf",
            "sasl.conf",
            "auth.conf",
            "cacert.pem",
            "servercert.pem",
            "serverkey.pem",
            "clientcert.pem",
            "clientkey.pem",
            "config.json"
        ]
    );
    assert_eq!(
        names(&p, "nova_compute"),
        [
            "nova.conf",
            "auth.conf",
            "cacert.pem",
            "clientcert.pem",
            "clientkey.pem",
            "config.json"
        ]
    );
    // Kolla's modes: certificates and keys 0600, configuration files 0660.
    for f in &service(&p, "nova_libvirt").files {
        let want = if f.path.ends_with(".pem") {
            0o600
        } else {
            0o660
        };
        assert_eq!(f.mode, want, "{}", f.path);
    }

    let (command, entries) = config_files(&p, "nova_libvirt");
    assert_eq!(command, "/usr/local/bin/kolla_nova_libvirt_start");
    let dests: Vec<_> = entries
        .iter()
        .map(|e| (e.0.as_str(), e.1.as_str()))
        .collect();
    assert_eq!(
        dests,
        [
            ("libvirtd.conf", "/etc/libvirt/libvirtd.conf"),
            ("qemu.conf", "/etc/libvirt/qemu.conf"),
            ("serverkey.pem", "/etc/pki/libvirt/private/serverkey.pem"),
            ("servercert.pem", "/etc/pki/libvirt/servercert.pem"),
            ("clientkey.pem", "/etc/pki/libvirt/private/clientkey.pem"),
            ("clientcert.pem", "/etc/pki/libvirt/clientcert.pem"),
            ("cacert.pem", "/etc/pki/CA/cacert.pem"),
            ("sasl.conf", "/etc/sasl2/libvirt.conf"),
            ("auth.conf", "/root/.config/libvirt/auth.conf"),
        ]
    );
    assert!(entries.iter().all(|e| e.2 == "root" && e.3 == "0600"));

    let (command, entries) = config_files(&p, "nova_compute");
    assert_eq!(command, "nova-compute");
    assert_eq!(
        entries,
        [
            ("nova.conf", "/etc/nova/nova.conf", "nova", "0600"),
            (
                "clientkey.pem",
                "/etc/pki/libvirt/private/clientkey.pem",
                "root:nova",
                "0640"
            ),
            (
                "clientcert.pem",
                "/etc/pki/libvirt/clientcert.pem",
                "root:nova",
                "0640"
            ),
            ("cacert.pem", "/etc/pki/CA/cacert.pem", "root:nova", "0640"),
            (
                "auth.conf",
                "/var/lib/nova/.config/libvirt/auth.conf",
                "nova",
                "0600"
            ),
        ]
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
    );

    let libvirt = service(&p, "nova_libvirt");
    assert_eq!(libvirt.dir, "/etc/kolla/nova-libvirt");
    assert_eq!(
        libvirt.marker_path,
        "/etc/kolla/nova-libvirt/.virtfleet-applied"
    );
    let ready = libvirt.ready.as_ref().unwrap();
    assert_eq!(ready.exec, ["virsh", "version", "--daemon"]);
    assert_eq!((ready.retries, ready.delay_ms), (200, 250));
    assert_eq!(libvirt.after_restart.len(), 2);
    let step = &libvirt.after_restart[0];
    assert_eq!(
        step.exec,
        [
            "saslpasswd2",
            "-c",
            "-p",
            "-a",
            "libvirt",
            "-f",
            "/etc/libvirt/passwd.db",
            "nova"
        ]
    );
    assert_eq!(step.stdin.as_deref(), Some(PASSWORD.as_bytes()));
    // The check that the user is there takes the name as an argument, not as shell text.
    let check = &libvirt.after_restart[1];
    assert_eq!(check.exec[..2], ["sh", "-c"]);
    assert_eq!(check.exec[3..], ["sh", "nova"]);
    assert!(!check.exec[2].contains("nova"), "{:?}", check.exec);
    assert_eq!(check.stdin, None);
    let reload = libvirt.reload.as_ref().unwrap();
    assert_eq!(
        reload.files,
        CERTS.map(|c| format!("/etc/kolla/nova-libvirt/{c}"))
    );
    assert_eq!(
        reload.exec,
        [
            vec!["kolla_set_configs"],
            vec!["virt-admin", "server-update-tls", "libvirtd"]
        ]
    );
    let compute = service(&p, "nova_compute");
    assert_eq!(compute.dir, "/etc/kolla/nova-compute");
    assert!(compute.ready.is_none() && compute.after_restart.is_empty());
    // nova-compute reads its CA and client pair at start: a change needs a restart.
    assert!(compute.reload.is_none());
}

#[test]
fn tls_off_sasl_on() {
    let p = plan(json!({}));
    let libvirtd = text(&p, "nova_libvirt", "libvirtd.conf");
    assert_has_lines(
        &libvirtd,
        &[
            "listen_tcp = 1",
            "listen_tls = 0",
            "tcp_port = \"16509\"",
            "auth_tcp = \"sasl\"",
            "listen_addr = \"10.0.0.11\"",
        ],
    );
    assert_lacks(&libvirtd, &["auth_tls", "key_file", "tls_port"]);
    assert_has_lines(
        &text(&p, "nova_compute", "nova.conf"),
        &[
            "connection_uri = \"qemu+tcp://10.0.0.11/system\"",
            "live_migration_inbound_addr = \"10.0.0.11\"",
        ],
    );
    // Kolla writes no scheme without TLS (nova's default is tcp).
    assert_lacks(
        &text(&p, "nova_compute", "nova.conf"),
        &["live_migration_scheme"],
    );
    assert_has_lines(
        &text(&p, "nova_libvirt", "sasl.conf"),
        &["mech_list: DIGEST-MD5"],
    );
    assert_eq!(
        names(&p, "nova_libvirt"),
        [
            "libvirtd.conf",
            "qemu.conf",
            "sasl.conf",
            "auth.conf",
            "config.json"
        ]
    );
    assert_eq!(
        names(&p, "nova_compute"),
        ["nova.conf", "auth.conf", "config.json"]
    );
    assert_eq!(config_files(&p, "nova_libvirt").1.len(), 4);
    assert_eq!(config_files(&p, "nova_compute").1.len(), 2);
    assert!(
        service(&p, "nova_libvirt").reload.is_none(),
        "no certs, nothing to reload"
    );
    assert_eq!(service(&p, "nova_libvirt").after_restart.len(), 2);
}

#[test]
fn tls_on_sasl_off() {
    let mut v = vars(json!({"libvirt_tls": true, "libvirt_enable_sasl": false}));
    v.remove("libvirt_sasl_password"); // not needed without SASL
    let dir = configdir();
    let p = try_plan(&playbook(), &dir, "compute1", &v).unwrap();
    assert_has_lines(
        &text(&p, "nova_libvirt", "libvirtd.conf"),
        &["listen_tls = 1", "auth_tls = \"none\""],
    );
    assert!(file(&p, "nova_libvirt", "sasl.conf").is_none());
    assert!(file(&p, "nova_libvirt", "auth.conf").is_none());
    assert!(file(&p, "nova_compute", "auth.conf").is_none());
    assert!(file(&p, "nova_libvirt", "serverkey.pem").is_some());
    assert!(service(&p, "nova_libvirt").after_restart.is_empty());
    assert_eq!(config_files(&p, "nova_libvirt").1.len(), 7);
    assert_eq!(config_files(&p, "nova_compute").1.len(), 4);
}

#[test]
fn tls_off_sasl_off_is_refused_unless_the_operator_insists() {
    let err = plan_err(json!({"libvirt_enable_sasl": false})).to_string();
    assert!(
        err.contains("refused")
            && err.contains("auth_tcp = \"none\"")
            && err.contains("set virtfleet_allow_unauthenticated_libvirt to true"),
        "{err}"
    );
    // Neither "no" nor a typo lets it through.
    plan_err(json!({"libvirt_enable_sasl": "no",
                    "virtfleet_allow_unauthenticated_libvirt": "no"}));
    plan_err(json!({"libvirt_enable_sasl": false,
                    "virtfleet_allow_unauthenticated_libvirt": "yess"}));
    let p = plan(json!({"libvirt_enable_sasl": false,
                        "virtfleet_allow_unauthenticated_libvirt": "yes"}));
    assert_has_lines(
        &text(&p, "nova_libvirt", "libvirtd.conf"),
        &["listen_tcp = 1", "listen_tls = 0", "auth_tcp = \"none\""],
    );
    assert_eq!(
        names(&p, "nova_libvirt"),
        ["libvirtd.conf", "qemu.conf", "config.json"]
    );
    assert_eq!(names(&p, "nova_compute"), ["nova.conf", "config.json"]);
    assert!(service(&p, "nova_libvirt").after_restart.is_empty());
}

#[test]
fn ansible_style_strings_are_booleans() {
    let p = plan(json!({"libvirt_tls": "yes", "libvirt_enable_sasl": "no"}));
    assert_has_lines(
        &text(&p, "nova_libvirt", "libvirtd.conf"),
        &[
            "listen_tls = 1",
            "auth_tls = \"none\"",
            "tls_port = \"16514\"",
        ],
    );
    assert!(file(&p, "nova_libvirt", "sasl.conf").is_none());
    assert_eq!(p.vars["nova_libvirt_port"], json!(16514));

    let p = plan(json!({"libvirt_tls": "True", "libvirt_tls_manage_certs": "off"}));
    // TLS on, certificates placed by the operator: not managed, but still in config.json.
    assert!(file(&p, "nova_libvirt", "cacert.pem").is_none());
    assert!(service(&p, "nova_libvirt").reload.is_none());
    assert_eq!(config_files(&p, "nova_libvirt").1.len(), 9);

    let dir = configdir();
    let err = try_plan(
        &playbook(),
        &dir,
        "compute1",
        &vars(json!({"libvirt_tls": "ture"})),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("compute1") && err.contains("libvirt_tls: must be a boolean"),
        "{err}"
    );
}

#[test]
fn template_override_order() {
    let pb = playbook();
    let dir = configdir();
    let shared = dir.path().join("config/nova/libvirtd.conf.j2");
    let per_host = dir.path().join("config/nova/compute1/libvirtd.conf.j2");
    write(shared.clone(), "shared for {{ inventory_hostname }}\n");
    write(per_host.clone(), "only compute1\n");
    let v = vars(json!({}));

    let p1 = try_plan(&pb, &dir, "compute1", &v).unwrap();
    let f = file(&p1, "nova_libvirt", "libvirtd.conf").unwrap();
    assert_eq!(f.content, b"only compute1\n");
    assert_eq!(f.source, per_host);

    let p2 = try_plan(&pb, &dir, "compute2", &v).unwrap();
    let f = file(&p2, "nova_libvirt", "libvirtd.conf").unwrap();
    assert_eq!(f.content, b"shared for compute2\n");
    assert_eq!(f.source, shared);

    // Untouched templates still come from the playbook.
    let f = file(&p2, "nova_libvirt", "qemu.conf").unwrap();
    assert_eq!(f.source, pb.dir.join("templates/qemu.conf.j2"));
}

#[test]
fn node_custom_config_moves_the_search() {
    let dir = configdir();
    let custom = tempfile::tempdir_in(dir.path()).unwrap();
    write(custom.path().join("nova/qemu.conf.j2"), "custom\n");
    let certs = custom.path().join("nova/nova-libvirt");
    for name in CERTS {
        write(certs.join(name), &pem(name, "custom"));
    }
    let v = vars(json!({
        "libvirt_tls": true,
        "node_custom_config": custom.path().display().to_string(),
    }));
    let p = try_plan(&playbook(), &dir, "compute1", &v).unwrap();
    assert_eq!(
        file(&p, "nova_libvirt", "qemu.conf").unwrap().content,
        b"custom\n"
    );
    assert!(text(&p, "nova_libvirt", "cacert.pem").contains("custom"));
}

#[test]
fn cert_search_prefers_host_dir() {
    let pb = playbook();
    let dir = configdir();
    let host_ca = dir
        .path()
        .join("config/nova/nova-libvirt/compute1/cacert.pem");
    write(host_ca.clone(), &pem("cacert.pem", "compute1-only"));
    let v = vars(json!({"libvirt_tls": true}));

    let p1 = try_plan(&pb, &dir, "compute1", &v).unwrap();
    let ca = file(&p1, "nova_libvirt", "cacert.pem").unwrap();
    assert!(String::from_utf8_lossy(&ca.content).contains("compute1-only"));
    assert_eq!(ca.source, host_ca);
    assert!(text(&p1, "nova_libvirt", "servercert.pem").contains("shared"));

    let p2 = try_plan(&pb, &dir, "compute2", &v).unwrap();
    assert!(text(&p2, "nova_libvirt", "cacert.pem").contains("shared"));
}

#[test]
fn missing_cert_names_both_paths_and_host() {
    let dir = configdir();
    std::fs::remove_file(dir.path().join("config/nova/nova-libvirt/serverkey.pem")).unwrap();
    let v = vars(json!({"libvirt_tls": true}));
    let err = try_plan(&playbook(), &dir, "compute1", &v).unwrap_err();
    assert!(matches!(err, PlanError::CertNotFound { .. }), "{err:?}");
    let msg = err.to_string();
    let host_path = dir
        .path()
        .join("config/nova/nova-libvirt/compute1/serverkey.pem");
    let shared_path = dir.path().join("config/nova/nova-libvirt/serverkey.pem");
    assert!(msg.contains("compute1"), "{msg}");
    assert!(msg.contains(&host_path.display().to_string()), "{msg}");
    assert!(msg.contains(&shared_path.display().to_string()), "{msg}");

    // Without TLS the certificates are not needed at all.
    assert!(try_plan(&playbook(), &dir, "compute1", &vars(json!({}))).is_ok());
}

#[test]
fn missing_password_is_reported_with_host_and_hint() {
    let dir = configdir();
    let pb = playbook();
    for absent in [None, Some(json!("")), Some(json!(null))] {
        let mut v = vars(json!({"libvirt_enable_sasl": "yes"}));
        v.remove("libvirt_sasl_password");
        if let Some(value) = absent {
            v.insert("libvirt_sasl_password".into(), value);
        }
        let err = try_plan(&pb, &dir, "compute7", &v).unwrap_err();
        assert!(matches!(err, PlanError::MissingVariable { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("compute7"), "{msg}");
        assert!(msg.contains("libvirt_sasl_password"), "{msg}");
        assert!(msg.contains("passwords.yml"), "{msg}");
    }
}

/// What the applied marker records per service: each file's path and sha256.
fn hashes(service: &ServicePlan) -> Vec<(String, String)> {
    let mut h: Vec<_> = service
        .files
        .iter()
        .map(|f| (f.path.clone(), f.sha256.clone()))
        .collect();
    h.sort();
    h
}

#[test]
fn file_hashes_track_content_and_nothing_else() {
    let pb = playbook();
    let dir = configdir();
    let v = vars(json!({"libvirt_tls": true}));
    let a = try_plan(&pb, &dir, "compute1", &v).unwrap();
    let b = try_plan(&pb, &dir, "compute1", &v).unwrap();
    for (sa, sb) in a.services.iter().zip(&b.services) {
        assert_eq!(hashes(sa), hashes(sb), "same input, same files");
    }

    // A new server certificate changes nova_libvirt only.
    write(
        dir.path()
            .join("config/nova/nova-libvirt/compute1/servercert.pem"),
        &pem("servercert.pem", "rotated"),
    );
    let c = try_plan(&pb, &dir, "compute1", &v).unwrap();
    assert_ne!(hashes(&a.services[0]), hashes(&c.services[0]));
    assert_eq!(hashes(&a.services[1]), hashes(&c.services[1]));

    // A new password changes both auth.conf files.
    let mut v2 = v.clone();
    v2.insert("libvirt_sasl_password".into(), json!("another"));
    let d = try_plan(&pb, &dir, "compute1", &v2).unwrap();
    assert_ne!(hashes(&c.services[0]), hashes(&d.services[0]));
    assert_ne!(hashes(&c.services[1]), hashes(&d.services[1]));
}

#[test]
fn tls_facts_and_certificate_roles_come_from_the_playbook() {
    let p = plan(json!({"libvirt_tls": true, "migration_interface_address": "10.1.0.5"}));
    let tls = p.tls.as_ref().expect("TLS on");
    assert_eq!(tls.service, "nova_libvirt");
    assert_eq!(tls.address, "10.1.0.5");
    assert_eq!(tls.server_name, "compute1");
    assert_eq!(tls.port, 16514);
    assert_eq!(
        tls.connect,
        ["virsh", "-c", "qemu+tls://compute1/system", "version"]
    );
    let server = p.tls_file(CertRole::ServerCert).unwrap();
    assert!(
        server.path.ends_with("/nova-libvirt/servercert.pem"),
        "{}",
        server.path
    );
    // The CA goes to both containers; only the TLS service's copy is "the" CA file.
    assert_eq!(p.files_in_roles(&[CertRole::Ca]).count(), 2);
    assert_eq!(p.files_in_roles(&CertRole::LEAF_KEYS).count(), 3);
    assert_eq!(p.container_engine, "docker", "Kolla's default engine");
    // Another port reaches the URI; with TLS off there is no TLS plan and no roles.
    let odd = plan(json!({"libvirt_tls": true, "nova_libvirt_port": 16600}));
    assert_eq!(
        odd.tls.as_ref().unwrap().connect[2],
        "qemu+tls://compute1:16600/system"
    );
    let off = plan(json!({"libvirt_tls": false}));
    assert!(off.tls.is_none());
    assert_eq!(off.files_in_roles(&CertRole::ALL).count(), 0);
}

#[test]
fn secrets_are_marked_and_redacted() {
    let p = plan(json!({"libvirt_tls": true}));
    let auth = file(&p, "nova_libvirt", "auth.conf").unwrap();
    assert!(auth.secret);
    assert_eq!(
        String::from_utf8_lossy(&auth.content)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        [
            "[credentials-default]",
            "authname=nova",
            &format!("password={PASSWORD}"),
            "",
            "[auth-libvirt-default]",
            "credentials=default"
        ]
    );
    let shown = redact(auth);
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(shown.contains("password=<redacted>"), "{shown}");
    assert!(shown.contains("[credentials-default]"), "{shown}");

    for (svc, name) in [
        ("nova_libvirt", "serverkey.pem"),
        ("nova_libvirt", "clientkey.pem"),
        ("nova_compute", "clientkey.pem"),
    ] {
        let key = file(&p, svc, name).unwrap();
        assert!(key.secret, "{svc} {name}");
        let shown = redact(key);
        assert!(!shown.contains(KEY_BODY), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
    let cert = file(&p, "nova_libvirt", "servercert.pem").unwrap();
    assert!(!cert.secret);
    assert!(redact(cert).contains("Q0VSVElGSUNBVEU="));
    let conf = file(&p, "nova_libvirt", "libvirtd.conf").unwrap();
    assert_eq!(redact(conf).as_bytes(), conf.content.as_slice());
}

#[test]
fn migration_names_default_and_override() {
    let mut v = vars(json!({"libvirt_tls": true}));
    v.remove("ansible_host");
    let dir = configdir();
    let p = try_plan(&playbook(), &dir, "compute3", &v).unwrap();
    // From the facts (see `facts`): the nodename, and eth0's address.
    assert_eq!(p.vars["migration_hostname"], json!("compute3"));
    assert_eq!(p.vars["migration_interface_address"], json!("10.0.0.11"));
    assert_eq!(p.vars["inventory_hostname"], json!("compute3"));
    assert_has_lines(
        &text(&p, "nova_compute", "nova.conf"),
        &["connection_uri = \"qemu+tls://compute3/system\""],
    );

    let p = plan(json!({
        "libvirt_tls": true,
        "migration_hostname": "{{ inventory_hostname }}.mgmt.example",
        "migration_interface_address": "192.0.2.7",
    }));
    assert_eq!(p.vars["migration_hostname"], json!("compute1.mgmt.example"));
    assert_has_lines(
        &text(&p, "nova_compute", "nova.conf"),
        &[
            "connection_uri = \"qemu+tls://compute1.mgmt.example/system\"",
            "live_migration_inbound_addr = \"compute1.mgmt.example\"",
        ],
    );
    assert_has_lines(
        &text(&p, "nova_libvirt", "libvirtd.conf"),
        &["listen_addr = \"192.0.2.7\""],
    );
}

#[test]
fn odd_ports_and_ipv6_addresses_reach_the_uri() {
    let p = plan(json!({"migration_interface_address": "fd00::11", "nova_libvirt_port": 16600}));
    assert_has_lines(
        &text(&p, "nova_compute", "nova.conf"),
        &["connection_uri = \"qemu+tcp://[fd00::11]:16600/system\""],
    );
    assert_has_lines(
        &text(&p, "nova_libvirt", "libvirtd.conf"),
        &["tcp_port = \"16600\"", "listen_addr = \"fd00::11\""],
    );
}

#[test]
fn template_errors_name_file_and_line() {
    let dir = configdir();
    let bad = dir.path().join("config/nova/nova.conf.j2");
    write(bad.clone(), "[DEFAULT]\n\nhost = {{ no_such_variable }}\n");
    let err = try_plan(&playbook(), &dir, "compute1", &vars(json!({}))).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, PlanError::Template { line: Some(3), .. }),
        "{err:?}"
    );
    assert!(msg.contains(&bad.display().to_string()), "{msg}");
    assert!(
        msg.contains("line 3") && msg.contains("no_such_variable"),
        "{msg}"
    );
    assert!(msg.contains("compute1"), "{msg}");

    write(bad.clone(), "{% if %}\n");
    let msg = try_plan(&playbook(), &dir, "compute1", &vars(json!({})))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&bad.display().to_string()) && msg.contains("line 1"),
        "{msg}"
    );
}

#[test]
fn broken_variables_fail_only_when_used() {
    // Kolla globals often point at Kolla's own defaults, which this playbook never reads.
    let p = plan(json!({"nova_console": "{{ kolla_console_default }}"}));
    assert!(!p.vars.contains_key("nova_console"));

    let err =
        plan_err(json!({"migration_hostname": "{{ kolla_internal_fqdn }}", "libvirt_tls": true}));
    assert!(matches!(err, PlanError::Variable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("migration_hostname") && msg.contains("kolla_internal_fqdn"),
        "{msg}"
    );

    let msg = plan_err(json!({
        "migration_interface_address": "{{ migration_hostname }}",
        "migration_hostname": "{{ migration_interface_address }}",
    }))
    .to_string();
    assert!(msg.contains("refers to itself"), "{msg}");
}

fn plan_err(value: Value) -> PlanError {
    let dir = configdir();
    try_plan(&playbook(), &dir, "compute1", &vars(value)).unwrap_err()
}

#[test]
fn mech_list_accepts_kolla_list_or_string() {
    let p = plan(json!({"libvirt_sasl_mech_list": ["SCRAM-SHA-256", "DIGEST-MD5"]}));
    assert_has_lines(
        &text(&p, "nova_libvirt", "sasl.conf"),
        &["mech_list: SCRAM-SHA-256 DIGEST-MD5"],
    );
    let p = plan(json!({"libvirt_sasl_mech_list": "SCRAM-SHA-1"}));
    assert_has_lines(
        &text(&p, "nova_libvirt", "sasl.conf"),
        &["mech_list: SCRAM-SHA-1"],
    );
}

#[test]
fn qemu_conf_is_kollas_and_files_end_in_one_newline() {
    let p = plan(json!({}));
    assert_has_lines(
        &text(&p, "nova_libvirt", "qemu.conf"),
        &[
            "stdio_handler = \"logd\"",
            "user = \"nova\"",
            "group = \"nova\"",
            "max_files =  32768",
            "max_processes =  131072",
        ],
    );
    let p = plan(
        json!({"nova_spice_require_secure": "yes", "enable_nova_swtpm": true,
                        "kolla_base_distro": "ubuntu"}),
    );
    assert_has_lines(
        &text(&p, "nova_libvirt", "qemu.conf"),
        &[
            "spice_tls = 1",
            "swtpm_user = \"swtpm\"",
            "swtpm_group = \"swtpm\"",
        ],
    );
    // Every file ends with exactly one newline (Ansible keeps the template's last newline),
    // but qemu.conf, which ends in blank lines as Kolla's does.
    for svc in &p.services {
        for f in svc.files.iter().filter(|f| !f.path.ends_with("/qemu.conf")) {
            assert!(f.content.ends_with(b"\n"), "{}", f.path);
            assert!(!f.content.ends_with(b"\n\n"), "{}", f.path);
        }
    }
}

#[test]
fn debug_output_hides_secrets() {
    let p = plan(json!({"libvirt_tls": true}));
    let shown = format!("{p:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(
        shown.contains("libvirt_sasl_password"),
        "names stay visible"
    );
    assert!(shown.contains("bytes redacted"), "{shown}");
}

#[test]
fn secrets_cannot_be_copied_into_other_variables_and_searches_stay_in_the_config_dir() {
    for var in [
        "ansible_host",
        "nova_libvirt_log_outputs",
        "libvirt_sasl_authname",
        "migration_interface_address",
    ] {
        let err = plan_err(json!({ "libvirt_tls": true, var: "{{ libvirt_sasl_password }}" }))
            .to_string();
        assert!(
            err.contains(var) && err.contains("secret variable libvirt_sasl_password"),
            "{var}: {err}"
        );
        assert!(!err.contains(PASSWORD), "{err}");
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let err = plan_err(json!({
        "libvirt_tls": true,
        "node_custom_config": elsewhere.path().display().to_string(),
    }))
    .to_string();
    assert!(err.contains("outside the config directory"), "{err}");
    let err = plan_err(json!({"node_custom_config": "{{ node_config }}/../../tmp"})).to_string();
    assert!(err.contains("outside the config directory"), "{err}");
}

#[test]
fn values_that_would_break_out_of_config_files_are_refused_by_name() {
    let hostile = [
        (
            "migration_interface_address",
            json!("10.0.0.1\"\nunix_sock_rw_perms = \"0777"),
        ),
        ("migration_hostname", json!("c1\"\nauth_tls = \"none")),
        ("node_config_directory", json!("/x';touch /tmp/pwned;'")),
        ("nova_libvirt_port", json!("16514\nlisten_tcp = 1")),
        ("libvirt_sasl_authname", json!("nova\nmech_list: plain")),
        (
            "nova_libvirt_log_outputs",
            json!("3:stderr\"\nlisten_tcp = 1"),
        ),
        ("kolla_container_engine", json!("podman; rm -rf /")),
        ("libvirt_max_workers", json!("50\nlisten_tcp = 1")),
        ("qemu_max_files", json!("-1")),
        ("swtpm_user", json!("tss\"\nuser = \"root")),
    ];
    for (var, value) in hostile {
        let err = plan_err(json!({ "libvirt_tls": true, var: value })).to_string();
        assert!(err.contains(var) && err.contains("must be"), "{var}: {err}");
        let shown = value.as_str().unwrap();
        assert!(!err.contains(shown), "{var}: the value is shown: {err}");
    }
}

#[test]
fn a_nul_in_the_sasl_password_is_refused_before_any_host() {
    // It reaches saslpasswd2 on stdin as a shell word, which cannot hold NUL: refused at
    // planning (exit 2), never half-way through a host's change; the value is not shown.
    let err = plan_err(json!({"libvirt_sasl_password": "pass\u{0}word"})).to_string();
    assert!(err.contains("NUL") && err.contains("nova_libvirt"), "{err}");
    assert!(!err.contains("pass"), "{err}");
}

#[test]
fn libvirtd_authorizes_only_the_fleet_and_the_sasl_user() {
    let p = plan(json!({"libvirt_tls": true,
                        "virtfleet_fleet_client_dns": ["CN=compute01", "C=GB,O=Ex\\,Co,CN=c2"]}));
    let conf = text(&p, "nova_libvirt", "libvirtd.conf");
    assert!(
        conf.ends_with(
            "\n# Only the fleet's client certificates, not any certificate the CA signed.\n\
             tls_allowed_dn_list = [\"CN=compute01\", \"C=GB,O=Ex\\,Co,CN=c2\"]\n\
             sasl_allowed_username_list = [\"nova\"]\n"
        ),
        "{conf}"
    );
    // The operator's own lists win; [] leaves them out (Kolla's file).
    let p = plan(
        json!({"libvirt_tls": true, "libvirt_tls_allowed_dn_list": ["O=Ex,CN=*"],
                        "libvirt_sasl_allowed_usernames": ["nova", "admin"]}),
    );
    let conf = text(&p, "nova_libvirt", "libvirtd.conf");
    assert!(
        conf.contains("tls_allowed_dn_list = [\"O=Ex,CN=*\"]\n"),
        "{conf}"
    );
    assert!(
        conf.contains("sasl_allowed_username_list = [\"nova\", \"admin\"]\n"),
        "{conf}"
    );
    let p = plan(
        json!({"libvirt_tls": true, "virtfleet_fleet_client_dns": ["CN=a"],
                        "libvirt_tls_allowed_dn_list": [], "libvirt_sasl_allowed_usernames": []}),
    );
    let conf = text(&p, "nova_libvirt", "libvirtd.conf");
    assert!(!conf.contains("allowed"), "{conf}");
    assert!(conf.ends_with("max_client_requests = 20\n"), "{conf}");
    // Without TLS no DN list; a quote cannot be written into libvirt's config.
    let p = plan(json!({"virtfleet_fleet_client_dns": ["CN=a"]}));
    assert!(!text(&p, "nova_libvirt", "libvirtd.conf").contains("tls_allowed_dn_list"));
    let err = plan_err(json!({"libvirt_tls": true, "libvirt_tls_allowed_dn_list": ["CN=\"x\""]}));
    assert!(
        err.to_string().contains("libvirt_tls_allowed_dn_list"),
        "{err}"
    );
}

#[test]
fn migration_address_and_name_come_from_facts_unless_set() {
    let pb = playbook();
    let dir = configdir();
    let tls = vars(json!({"libvirt_tls": true}));
    fn input<'a>(
        pb: &'a Playbook,
        dir: &'a TempDir,
        vars: &'a Vars,
        facts: Option<&'a Value>,
    ) -> PlanInput<'a> {
        PlanInput {
            playbook: pb,
            host: "compute1",
            vars,
            configdir: dir.path(),
            facts,
        }
    }
    // Without facts, planning says it needs them (the CLI then gathers them).
    let err = plan_host(&input(&pb, &dir, &tls, None)).expect_err("needs facts");
    assert!(matches!(err, PlanError::NeedsFacts { .. }), "{err}");
    let (_, needs) = virtfleet_plan::resolve_vars(&input(&pb, &dir, &tls, None)).unwrap();
    assert!(needs);

    // From the facts: eth0's address, and the nodename (not the inventory name).
    let mut facts = facts("node-a.example");
    facts["br_mig"] = json!({"ipv4": {"address": "10.9.0.11"}});
    let plan = plan_host(&input(&pb, &dir, &tls, Some(&facts))).unwrap();
    assert!(plan.reads_interfaces, "the address comes from an interface");
    // An address set: only the nodename is read, so facts need no interfaces (no `ip`).
    let mut set = tls.clone();
    set.insert("migration_interface_address".into(), json!("10.0.0.99"));
    let nodename = json!({"nodename": "node-a.example"});
    let named = plan_host(&input(&pb, &dir, &set, Some(&nodename))).unwrap();
    assert!(!named.reads_interfaces);
    assert_eq!(named.tls.as_ref().unwrap().server_name, "node-a.example");
    let tls_plan = plan.tls.as_ref().unwrap();
    assert_eq!(tls_plan.address, "10.0.0.11");
    assert_eq!(tls_plan.server_name, "node-a.example");
    let libvirtd = text(&plan, "nova_libvirt", "libvirtd.conf");
    assert!(
        libvirtd.contains("listen_addr = \"10.0.0.11\""),
        "{libvirtd}"
    );

    // Stand-in facts: a documentation address for an interface, and a plan that reads one
    // never stands for the real plan.
    let stand_in = virtfleet_plan::provisional_facts("compute1");
    let provisional = plan_host(&input(&pb, &dir, &tls, Some(&stand_in))).unwrap();
    assert_eq!(provisional.tls.as_ref().unwrap().address, "192.0.2.1");
    let real = json!({"nodename": "compute1", "interfaces": []});
    assert!(!virtfleet_plan::stood_in_exactly(
        "compute1",
        &provisional,
        &real
    ));
    // Without an interface read, it stands exactly when the real facts are the stand-in's
    // (the nodename is the inventory name); then both plans are the same.
    let named = plan_host(&input(&pb, &dir, &set, Some(&stand_in))).unwrap();
    assert!(virtfleet_plan::stood_in_exactly("compute1", &named, &real));
    let from_real = plan_host(&input(&pb, &dir, &set, Some(&real))).unwrap();
    assert_eq!(files_of(&named), files_of(&from_real));
    let other_name = json!({"nodename": "compute1.example", "interfaces": []});
    assert!(!virtfleet_plan::stood_in_exactly(
        "compute1",
        &named,
        &other_name
    ));
    let with_interfaces = json!({"nodename": "compute1", "interfaces": ["eth0"],
                                 "eth0": {"ipv4": {"address": "10.0.0.11"}}});
    assert!(!virtfleet_plan::stood_in_exactly(
        "compute1",
        &named,
        &with_interfaces
    ));
    // The marker is not a fact a template can see.
    let mut dumps = set.clone();
    dumps.insert(
        "migration_hostname".into(),
        json!("{{ ansible_facts | tojson | length }}"),
    );
    let a = plan_host(&input(&pb, &dir, &dumps, Some(&stand_in))).unwrap();
    let b = plan_host(&input(&pb, &dir, &dumps, Some(&real))).unwrap();
    assert_eq!(a.tls.unwrap().server_name, b.tls.unwrap().server_name);

    // migration_interface picks another interface ('-' looked up as '_', as Ansible names it).
    let mut other = tls.clone();
    other.insert("migration_interface".into(), json!("br-mig"));
    let plan = plan_host(&input(&pb, &dir, &other, Some(&facts))).unwrap();
    assert_eq!(plan.tls.as_ref().unwrap().address, "10.9.0.11");

    // An interface the host lacks: named, before anything is rendered.
    other.insert("migration_interface".into(), json!("eth7"));
    let err = plan_host(&input(&pb, &dir, &other, Some(&facts)))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("migration_interface_address") && err.contains("\"eth7\" is not present"),
        "{err}"
    );

    // Explicit values win, and then no facts are needed at all.
    let mut set = tls.clone();
    set.insert("migration_interface_address".into(), json!("192.0.2.5"));
    set.insert("migration_hostname".into(), json!("c1.mgmt"));
    let (_, needs) = virtfleet_plan::resolve_vars(&input(&pb, &dir, &set, None)).unwrap();
    assert!(!needs);
    let plan = plan_host(&input(&pb, &dir, &set, None)).unwrap();
    assert_eq!(plan.tls.as_ref().unwrap().address, "192.0.2.5");
    assert_eq!(plan.tls.as_ref().unwrap().server_name, "c1.mgmt");
}

#[test]
fn operator_nova_conf_overrides_win_in_kollas_order() {
    let pb = playbook();
    let dir = configdir();
    let config = dir.path().join("config");
    write(config.join("global.conf"), "[DEFAULT]\ndebug = True\n");
    write(
        config.join("nova.conf"),
        "[libvirt]\nvirt_type = qemu\ncpu_mode = host-passthrough\n",
    );
    // Per host, last: wins over the global ones; a template like Kolla's overrides.
    write(
        config.join("nova/compute1/nova.conf"),
        "[libvirt]\nvirt_type = kvm\nlive_migration_inbound_addr = {{ migration_hostname }}.mig\n",
    );
    let vars = vars(json!({"libvirt_tls": true, "nova_compute_virt_type": "qemu"}));
    let plan = try_plan(&pb, &dir, "compute1", &vars).unwrap();
    let nova = text(&plan, "nova_compute", "nova.conf");
    assert!(nova.contains("virt_type = kvm"), "{nova}");
    assert!(!nova.contains("virt_type = qemu"), "{nova}");
    assert!(nova.contains("cpu_mode = host-passthrough"), "{nova}");
    assert!(nova.contains("debug = True"), "{nova}");
    assert!(
        nova.contains("live_migration_inbound_addr = compute1.mig"),
        "{nova}"
    );
    // Another host only gets the global ones.
    let plan = try_plan(&pb, &dir, "compute2", &vars).unwrap();
    let nova = text(&plan, "nova_compute", "nova.conf");
    assert!(
        nova.contains("virt_type = qemu") && !nova.contains(".mig"),
        "{nova}"
    );

    // An override that reads an unknown variable names its file.
    write(
        config.join("nova/nova-compute.conf"),
        "[DEFAULT]\nhost = {{ no_such_var }}\n",
    );
    let err = try_plan(&pb, &dir, "compute2", &vars)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("nova-compute.conf") && err.contains("no_such_var"),
        "{err}"
    );
}

#[test]
fn masakaris_instance_monitor_gets_the_sasl_credentials_only_when_enabled() {
    let off = plan(json!({"libvirt_tls": true}));
    assert!(off
        .services
        .iter()
        .all(|s| s.name != "masakari_instancemonitor"));
    let on = plan(json!({"libvirt_tls": true, "enable_masakari": "yes"}));
    let auth = text(&on, "masakari_instancemonitor", "auth.conf");
    assert_eq!(auth, text(&on, "nova_compute", "auth.conf"));
    assert!(auth.contains(PASSWORD));
    let f = file(&on, "masakari_instancemonitor", "auth.conf").unwrap();
    assert!(f.secret);
    assert_eq!(f.path, "/etc/kolla/masakari-instancemonitor/auth.conf");
    // Without SASL there are no credentials to keep in step.
    let no_sasl = plan(json!({"libvirt_tls": true, "enable_masakari": true,
                              "libvirt_enable_sasl": false}));
    assert!(no_sasl
        .services
        .iter()
        .all(|s| s.name != "masakari_instancemonitor"));
}

#[test]
fn qemu_native_tls_gives_qemu_its_pairs_or_libvirts_and_asks_nova_for_it() {
    let off = plan(json!({"libvirt_tls": true}));
    for (service_name, name) in [("nova_libvirt", "qemu.conf"), ("nova_compute", "nova.conf")] {
        let text = text(&off, service_name, name);
        assert!(
            !text.contains("tls_x509") && !text.contains("native_tls"),
            "{text}"
        );
    }
    assert!(!text(&off, "nova_libvirt", "config.json").contains("/etc/pki/qemu"));

    let on = plan(json!({"libvirt_tls": true, "libvirt_qemu_native_tls": "yes"}));
    let qemu = text(&on, "nova_libvirt", "qemu.conf");
    assert!(
        qemu.contains(
            "default_tls_x509_cert_dir = \"/etc/pki/qemu\"\ndefault_tls_x509_verify = 1\n"
        ),
        "{qemu}"
    );
    let nova = text(&on, "nova_compute", "nova.conf");
    assert!(
        nova.contains("live_migration_with_native_tls = true\nlive_migration_tunnelled = false\n"),
        "{nova}"
    );
    // QEMU's pairs, pushed beside libvirt's and copied by kolla_set_configs to QEMU's
    // directory for its group, with libvirt's CA.
    let config: Value = serde_json::from_str(&text(&on, "nova_libvirt", "config.json")).unwrap();
    let entries = config["config_files"].as_array().unwrap();
    let qemu_copies: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["dest"].as_str().unwrap().starts_with("/etc/pki/qemu/"))
        .map(|e| {
            assert_eq!(e["owner"], "root:nova");
            assert_eq!(e["perm"], "0640");
            (e["source"].as_str().unwrap(), e["dest"].as_str().unwrap())
        })
        .collect();
    let copy = |from: &'static str, to: &'static str| (from, to);
    assert_eq!(
        qemu_copies,
        [
            copy(
                "/var/lib/kolla/config_files/cacert.pem",
                "/etc/pki/qemu/ca-cert.pem"
            ),
            copy(
                "/var/lib/kolla/config_files/qemu-servercert.pem",
                "/etc/pki/qemu/server-cert.pem"
            ),
            copy(
                "/var/lib/kolla/config_files/qemu-serverkey.pem",
                "/etc/pki/qemu/server-key.pem"
            ),
            copy(
                "/var/lib/kolla/config_files/qemu-clientcert.pem",
                "/etc/pki/qemu/client-cert.pem"
            ),
            copy(
                "/var/lib/kolla/config_files/qemu-clientkey.pem",
                "/etc/pki/qemu/client-key.pem"
            ),
        ]
    );
    // libvirt's own entries are unchanged.
    let libvirt_copies = entries.iter().filter(|e| e["owner"] == "root").count();
    assert_eq!(libvirt_copies, 9, "{config:#}");
    // Without QEMU pairs of its own in the certificate directories, QEMU gets libvirt's, in
    // the set's roles (rotated and rolled over with the rest; checked as a set).
    let qemu_files = [
        (
            "qemu-servercert.pem",
            "servercert.pem",
            CertRole::ServerCert,
        ),
        ("qemu-serverkey.pem", "serverkey.pem", CertRole::ServerKey),
        (
            "qemu-clientcert.pem",
            "clientcert.pem",
            CertRole::ClientCert,
        ),
        ("qemu-clientkey.pem", "clientkey.pem", CertRole::ClientKey),
    ];
    for (name, libvirts, role) in qemu_files {
        let f = file(&on, "nova_libvirt", name).unwrap();
        assert!(f
            .source
            .ends_with(format!("config/nova/nova-libvirt/{libvirts}")));
        assert_eq!((f.role, f.cert_set.as_deref()), (Some(role), Some("qemu")));
        assert_eq!(on.set_file(Some("qemu"), role).unwrap().path, f.path);
        // The main set stays libvirt's own.
        assert!(on.tls_file(role).unwrap().path.ends_with(libvirts));
    }
    assert_eq!(on.tls.as_ref().unwrap().sets, ["qemu"]);
    assert!(off.tls.as_ref().unwrap().sets.is_empty());
    // Its own, where the operator (or `certs issue`) put them: per host first, then shared.
    let pb = playbook();
    let dir = configdir();
    let shared = dir.path().join("config/nova/nova-libvirt");
    write(
        shared.join("qemu-clientcert.pem"),
        &pem("clientcert", "qemu-shared"),
    );
    write(
        shared.join("compute1/qemu-servercert.pem"),
        &pem("servercert", "qemu-own"),
    );
    let on_vars = vars(json!({"libvirt_tls": true, "libvirt_qemu_native_tls": true}));
    let own = try_plan(&pb, &dir, "compute1", &on_vars).unwrap();
    let source = |name| file(&own, "nova_libvirt", name).unwrap().source.clone();
    assert_eq!(
        source("qemu-servercert.pem"),
        shared.join("compute1/qemu-servercert.pem")
    );
    assert_eq!(
        source("qemu-clientcert.pem"),
        shared.join("qemu-clientcert.pem")
    );
    assert_eq!(source("qemu-serverkey.pem"), shared.join("serverkey.pem"));
    let group =
        plan(json!({"libvirt_tls": true, "libvirt_qemu_native_tls": true, "qemu_group": "kvm"}));
    assert!(text(&group, "nova_libvirt", "config.json").contains("\"root:kvm\""));
    assert!(text(&group, "nova_libvirt", "qemu.conf").contains("group = \"kvm\"\n"));
}

#[test]
fn qemu_native_tls_without_libvirt_tls_or_with_tunnelling_is_refused_naming_the_file() {
    let pb = playbook();
    let dir = configdir();
    let err = try_plan(
        &pb,
        &dir,
        "compute1",
        &vars(json!({"libvirt_qemu_native_tls": true})),
    )
    .expect_err("no certificates for QEMU");
    assert!(
        matches!(err, PlanError::Refused { unless: None, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("turn on libvirt_tls"), "{err}");
    assert!(!err.to_string().contains("to deploy it anyway"), "{err}");

    let no_sasl = json!({"libvirt_tls": true, "libvirt_qemu_native_tls": true,
                         "libvirt_enable_sasl": false});
    let err = try_plan(&pb, &dir, "compute1", &vars(no_sasl)).expect_err("QEMU holds the key");
    assert!(
        err.to_string().contains("turn on libvirt_enable_sasl"),
        "{err}"
    );

    let on = vars(json!({"libvirt_tls": true, "libvirt_qemu_native_tls": true}));
    let config = dir.path().join("config");
    write(
        config.join("nova.conf"),
        "[libvirt]\nlive_migration_tunnelled = True\n",
    );
    let err = try_plan(&pb, &dir, "compute1", &on).expect_err("tunnelled and native");
    let PlanError::Conflict { file, setting, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(file, &config.join("nova.conf"));
    assert_eq!(setting, "[libvirt] live_migration_tunnelled = True");
    assert!(
        err.to_string().contains("live_migration_tunnelled"),
        "{err}"
    );
    // The last override that sets it is the one named; one setting it false wins.
    let per_host = config.join("nova/compute1/nova.conf");
    write(
        per_host.clone(),
        "[libvirt]\nlive_migration_tunnelled = yes\n",
    );
    match try_plan(&pb, &dir, "compute1", &on).expect_err("still tunnelled") {
        PlanError::Conflict { file, .. } => assert_eq!(file, per_host),
        other => panic!("{other}"),
    }
    write(per_host, "[libvirt]\nlive_migration_tunnelled = false\n");
    try_plan(&pb, &dir, "compute1", &on).expect("the per-host override turns it off");
    // Read as oslo.config reads it: quotes and the section name's case change nothing.
    write(
        config.join("nova/compute1/nova.conf"),
        "[LIBVIRT]\nlive_migration_tunnelled = \"true\"\n",
    );
    let err = try_plan(&pb, &dir, "compute1", &on).expect_err("quoted, upper-case section");
    assert!(matches!(err, PlanError::Conflict { .. }), "{err}");
    // Held back by an override (the first step on a tunnelled fleet), tunnelling may stay.
    write(
        config.join("nova/compute1/nova.conf"),
        "[libvirt]\nlive_migration_tunnelled = on\nlive_migration_with_native_tls = false\n",
    );
    try_plan(&pb, &dir, "compute1", &on).expect("native TLS held back");
    // Without native TLS, tunnelling is the operator's business.
    write(
        config.join("nova/compute1/nova.conf"),
        "[libvirt]\nlive_migration_tunnelled = on\n",
    );
    try_plan(&pb, &dir, "compute1", &vars(json!({"libvirt_tls": true}))).expect("tunnelled alone");
}

/// The shipped TCP-to-TLS transition: what a host holds decides its state, and each phase's
/// variables shape its files (the TCP listener and its SASL mechanisms kept until phase 3).
#[test]
fn tcp_to_tls_transition_reads_held_settings_and_shapes_each_phase() {
    let pb = playbook();
    let dir = configdir();
    let transition = &pb.transitions[0];
    let held_day0 = json!({"listen_tcp": 1, "listen_tls": 0, "tcp_port": 16509,
        "auth_tcp": "sasl", "sasl_mech_list": "digest-md5",
        "connection_uri": "qemu+tcp://10.0.0.11/system",
        "inbound_addr": "10.0.0.11"});
    let with = |globals: Value, held: &Value, phase: Option<usize>| {
        let mut v = vars(globals);
        v.insert("virtfleet_held".into(), held.clone());
        if let Some(i) = phase {
            v.extend(transition.phases[i].vars.clone());
        }
        v
    };
    let states = |globals: Value, held: &Value| {
        let v = with(globals, held, None);
        virtfleet_plan::host_transitions(&PlanInput {
            playbook: &pb,
            host: "compute1",
            vars: &v,
            configdir: dir.path(),
            facts: Some(&facts("compute1")),
        })
        .unwrap()
        .remove(0)
    };
    let tls = json!({"libvirt_tls": "yes"});
    let day0 = states(tls.clone(), &held_day0);
    assert!(
        day0.wanted
            && day0.pending
            && day0.done == [false, false, false]
            && day0.downgrade.is_none()
    );
    assert!(
        day0.warnings.is_empty(),
        "SASL over TCP: {:?}",
        day0.warnings
    );
    let mut open = held_day0.clone();
    open["auth_tcp"] = json!("none");
    assert!(states(tls.clone(), &open).warnings[0].contains("no authentication"));
    // Nothing held (a new host): not on the old side.
    let nothing = json!({"listen_tcp": null, "listen_tls": null, "tcp_port": null,
        "auth_tcp": null, "sasl_mech_list": null, "connection_uri": null,
        "inbound_addr": null});
    assert!(!states(tls.clone(), &nothing).pending);
    // The target is TCP: no transition; TLS-only held, going back is a downgrade.
    let tcp = json!({"libvirt_tls": "no"});
    assert!(!states(tcp.clone(), &held_day0).pending);
    let tls_only = json!({"listen_tcp": 0, "listen_tls": 1, "tcp_port": null,
        "auth_tcp": null, "sasl_mech_list": "scram-sha-256",
        "connection_uri": "qemu+tls://compute1/system", "inbound_addr": "compute1"});
    assert!(states(tcp, &tls_only).downgrade.is_some());
    assert!(!states(tls.clone(), &tls_only).pending);

    // Phases 1 and 2: the TLS listener with the TCP one as held, its mechanism kept.
    let phase1 = try_plan(
        &pb,
        &dir,
        "compute1",
        &with(tls.clone(), &held_day0, Some(0)),
    )
    .unwrap();
    let libvirtd = text(&phase1, "nova_libvirt", "libvirtd.conf");
    assert_has_lines(
        &libvirtd,
        &[
            "listen_tls = 1",
            "listen_tcp = 1",
            "tcp_port = \"16509\"",
            "auth_tcp = \"sasl\"",
            "auth_tls = \"sasl\"",
        ],
    );
    let sasl = text(&phase1, "nova_libvirt", "sasl.conf");
    assert_has_lines(&sasl, &["mech_list: DIGEST-MD5 SCRAM-SHA-256"]);
    assert_eq!(transition.phases[0].keep, ["nova_compute"]);
    // What a host holds cannot write what it likes into its files: a mechanism without its
    // own encryption is not kept, and an odd value is refused, naming the variable.
    let mut odd = held_day0.clone();
    odd["sasl_mech_list"] = json!("plain anonymous digest-md5");
    let kept = try_plan(&pb, &dir, "compute1", &with(tls.clone(), &odd, Some(0))).unwrap();
    let sasl = text(&kept, "nova_libvirt", "sasl.conf");
    assert_has_lines(&sasl, &["mech_list: DIGEST-MD5 SCRAM-SHA-256"]);
    odd["auth_tcp"] = json!("none\" tls_no_verify_certificate = 1 \"");
    let err = try_plan(&pb, &dir, "compute1", &with(tls.clone(), &odd, Some(0))).unwrap_err();
    assert!(
        err.to_string().contains("virtfleet_libvirt_auth_tcp"),
        "{err}"
    );
    odd["auth_tcp"] = json!("sasl");
    odd["tcp_port"] = json!("16509\nlisten_addr = \"0.0.0.0\"");
    let err = try_plan(&pb, &dir, "compute1", &with(tls.clone(), &odd, Some(0))).unwrap_err();
    assert!(
        err.to_string().contains("virtfleet_libvirt_tcp_port"),
        "{err}"
    );
    // Phase 2: nova still dials TCP (the kept port), but peers reach it by name.
    let phase2 = try_plan(
        &pb,
        &dir,
        "compute1",
        &with(tls.clone(), &held_day0, Some(1)),
    )
    .unwrap();
    assert_has_lines(
        &text(&phase2, "nova_compute", "nova.conf"),
        &[
            "connection_uri = \"qemu+tcp://10.0.0.11/system\"",
            "live_migration_inbound_addr = \"compute1\"",
        ],
    );
    let mut by_name = held_day0.clone();
    by_name["inbound_addr"] = json!("compute1");
    assert_eq!(
        states(json!({"libvirt_tls": "yes"}), &by_name).done,
        [false, true, false]
    );
    // The last phase is the plan itself: TCP closed, SCRAM only.
    let last = plan(tls);
    assert_has_lines(
        &text(&last, "nova_libvirt", "libvirtd.conf"),
        &["listen_tcp = 0"],
    );
    assert_has_lines(
        &text(&last, "nova_libvirt", "sasl.conf"),
        &["mech_list: SCRAM-SHA-256"],
    );
}

#[test]
fn a_transition_without_done_or_with_a_last_phase_that_sets_vars_is_refused_at_load() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks/kolla.yml");
    let text = std::fs::read_to_string(&shipped).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let load = |edited: String| {
        let path = dir.path().join("kolla.yml");
        std::fs::write(&path, edited).unwrap();
        load_playbook(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let no_done = text.replacen("        done: \"virtfleet_held.listen_tls == 1\"\n", "", 1);
    assert!(
        load(no_done).contains("phase TLS listener beside the TCP one; nova untouched: no done")
    );
    let last_sets = text.replacen(
        "      - title: TCP listener closed\n",
        "      - title: TCP listener closed\n        keep: [nova_compute]\n",
        1,
    );
    assert!(load(last_sets).contains("the last phase (TCP listener closed) is the desired plan"));
    let bad_file = text.replacen(
        "{file: libvirtd, key: listen_tcp, int: true}",
        "{file: nope, key: x}",
        1,
    );
    assert!(load(bad_file).contains("held listen_tcp: file \"nope\" is not a kind of audit: files"));
}

#[test]
fn qemu_native_tls_with_libvirtd_on_the_host_asks_nova_for_it_and_leaves_qemu_to_the_host() {
    let host_mode = plan(json!({"libvirt_tls": true, "libvirt_qemu_native_tls": true,
                                "enable_nova_libvirt_container": false}));
    assert!(host_mode.services.iter().all(|s| s.name != "nova_libvirt"));
    let nova = text(&host_mode, "nova_compute", "nova.conf");
    assert!(
        nova.contains("live_migration_with_native_tls = true\nlive_migration_tunnelled = false\n"),
        "{nova}"
    );
}
