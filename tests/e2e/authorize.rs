//! OSSN-0007's fourth step, authorize: a certificate from the fleet's CA or a SASL password is
//! not enough. libvirtd accepts only the fleet's client certificate subjects
//! (`tls_allowed_dn_list`) and the configured SASL user (`sasl_allowed_username_list`).

use std::path::Path;
use std::process::Command;

use virtfleet_suite::*;

/// `virsh version` from the workstation to `host`'s TLS port, presenting the pair in `pki`
/// (libvirt's pkipath layout) and the SASL credentials `user` / `password`.
fn connect(fleet: &Fleet, host: &str, pki: &Path, user: &str, password: &str) -> bool {
    let auth = pki.join("auth.conf");
    std::fs::write(
        &auth,
        format!(
            "[credentials-t]\nauthname={user}\npassword={password}\n\n\
             [auth-libvirt-default]\ncredentials=t\n"
        ),
    )
    .unwrap();
    // The server's certificate is not what is tested here (no_verify: the workstation does
    // not resolve lab names); the server checks the client's as always.
    let uri = format!(
        "qemu+tls://{}/system?pkipath={}&no_verify=1",
        fleet.host(host).address,
        pki.display()
    );
    Command::new("timeout")
        .args(["20", "virsh", "-c", &uri, "version"])
        .env("LIBVIRT_AUTH_FILE", &auth)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .status
        .success()
}

/// A pkipath directory holding the fleet's CA and the client pair `(cert, key)`.
fn pki_dir(fleet: &Fleet, cert: &str, key: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shared = fleet.configdir.path().join("config/nova/nova-libvirt");
    std::fs::copy(shared.join("cacert.pem"), dir.path().join("cacert.pem")).unwrap();
    std::fs::write(dir.path().join("clientcert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("clientkey.pem"), key).unwrap();
    dir
}

#[test]
fn only_fleet_certificates_and_the_configured_sasl_user_get_in() {
    let fleet = Fleet::new(2, TLS_SASL, true);
    fleet.ok(&["deploy"]);
    let shared = fleet.configdir.path().join("config/nova/nova-libvirt");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();

    // Every host lists both members' subjects.
    for host in ["compute01", "compute02"] {
        let conf = read(&fleet.host(host).kolla_path("nova-libvirt/libvirtd.conf"));
        assert!(
            conf.contains("tls_allowed_dn_list = [\"CN=compute01\", \"CN=compute02\"]")
                && conf.contains("sasl_allowed_username_list = [\"nova\"]"),
            "{host}:\n{conf}"
        );
    }

    // A fleet member's pair with the SASL password: in.
    let member = fleet.host_cert_dir("compute02");
    let member = pki_dir(
        &fleet,
        &read(&member.join("clientcert.pem")),
        &read(&member.join("clientkey.pem")),
    );
    let member_in =
        |user: &str, password: &str| connect(&fleet, "compute01", member.path(), user, password);
    assert!(member_in("nova", SASL_PASSWORD));

    // A pair from the same CA for a name outside the fleet, with the right password: out.
    let (intruder_cert, intruder_key) = virtfleet_pki::issue_pair(
        &read(&shared.join("cacert.pem")),
        &read(&shared.join("cakey.pem")),
        virtfleet_pki::CertKind::Client,
        "intruder",
        &["intruder".to_string()],
        &[],
        30,
    )
    .unwrap();
    let intruder = pki_dir(&fleet, &intruder_cert, &intruder_key);
    for host in ["compute01", "compute02"] {
        assert!(
            !connect(&fleet, host, intruder.path(), "nova", SASL_PASSWORD),
            "{host} let a non-member certificate in"
        );
    }

    // A second SASL user that exists in libvirtd's database, with a member's pair: out.
    let engine = fleet.engine("compute01");
    fleet.sh(
        "compute01",
        &format!(
            "printf 'Other-Pass-1' | {engine} exec -i nova_libvirt \
             saslpasswd2 -p -a libvirt other"
        ),
    );
    assert!(!member_in("other", "Other-Pass-1"));
    assert!(member_in("nova", SASL_PASSWORD));
}

/// Client certificates with new subjects: the rotation lets the old and the new in until its
/// last phase (the gate proves, host by host, that peers on both sides still connect), and
/// ends with only the new subjects listed.
#[test]
fn a_rotation_to_new_client_subjects_keeps_every_peer_let_in() {
    let hosts = ["compute01", "compute02", "compute03"];
    let fleet = Fleet::new(3, TLS_SASL, true);
    fleet.ok(&["deploy"]);
    let shared = fleet.configdir.path().join("config/nova/nova-libvirt");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let (ca, ca_key) = (
        read(&shared.join("cacert.pem")),
        read(&shared.join("cakey.pem")),
    );
    for host in hosts {
        let (cert, key) = virtfleet_pki::issue_pair(
            &ca,
            &ca_key,
            virtfleet_pki::CertKind::Client,
            &format!("{host}-2027"),
            &[host.to_string()],
            &[],
            30,
        )
        .unwrap();
        let dir = fleet.host_cert_dir(host);
        std::fs::write(dir.join("clientcert.pem"), cert).unwrap();
        std::fs::write(dir.join("clientkey.pem"), key).unwrap();
    }
    let out = fleet.ok(&["rotate", "--yes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for phase in [
        "phase 1/3: let the new client certificate subjects in beside the old",
        "phase 2/3: rotate leaf certificates",
        "phase 3/3: only the new subjects are let in",
    ] {
        assert!(text.contains(phase), "{phase}: {text}");
    }
    for host in hosts {
        let conf = read(&fleet.host(host).kolla_path("nova-libvirt/libvirtd.conf"));
        assert!(
            conf.contains(
                "tls_allowed_dn_list = [\"CN=compute01-2027\", \"CN=compute02-2027\", \"CN=compute03-2027\"]"
            ),
            "{host}: {conf}"
        );
    }
    let peer = fleet.peer_virsh("compute03", "qemu+tls://compute01/system", true);
    assert!(peer.status.success(), "{}", describe(&peer));
}
