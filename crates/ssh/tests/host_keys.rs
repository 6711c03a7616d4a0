//! Host-key checking against known_hosts, with a real sshd.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{keygen, public_key_fields, read_public, TestSshd};
use virtfleet_ssh::{Session, SshError};

/// A valid ed25519 key that is not the server's.
fn some_other_key(server: &TestSshd) -> String {
    public_key_fields(&read_public(&keygen(server.dir.path(), "other", "ed25519")))
}

/// Why connecting to `server` with a known_hosts file holding `text` fails.
async fn refusal(server: &TestSshd, text: &str) -> SshError {
    let known_hosts = server.write_file("known_hosts", text);
    Session::connect(&server.target(), &server.options(known_hosts))
        .await
        .expect_err("the host key should be refused")
}

#[tokio::test]
async fn unknown_host_key_is_refused_with_advice() {
    let server = TestSshd::start();
    let known_hosts = server.write_file("known_hosts", "# nothing yet\n");
    let err = Session::connect(&server.target(), &server.options(known_hosts.clone()))
        .await
        .unwrap_err();
    let SshError::HostKeyUnknown {
        host,
        known_hosts: named,
        fingerprint,
        ..
    } = &err
    else {
        panic!("expected HostKeyUnknown, got {err:?}");
    };
    assert_eq!(host, "testhost");
    assert_eq!(named, &known_hosts);
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    let message = err.to_string();
    assert!(message.contains("--accept-new-host-keys"), "{message}");
    assert!(
        message.contains(&known_hosts.display().to_string()),
        "{message}"
    );
    assert!(err.is_host_key_problem() && !err.is_unreachable());
}

#[tokio::test]
async fn missing_known_hosts_file_means_unknown() {
    let server = TestSshd::start();
    let err = Session::connect(&server.target(), &server.options(server.path("absent")))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{err:?}");
    assert!(!server.path("absent").exists());
}

#[tokio::test]
async fn changed_host_key_names_file_and_line() {
    let server = TestSshd::start();
    let other = some_other_key(&server);
    let contents = format!(
        "# fleet hosts\n\nunrelated.example {}\n{} {other}\n",
        server.host_key,
        server.known_hosts_name()
    );
    let known_hosts = server.write_file("known_hosts", &contents);
    let err = Session::connect(&server.target(), &server.options(known_hosts.clone()))
        .await
        .unwrap_err();
    match &err {
        SshError::HostKeyChanged {
            line,
            known_hosts: named,
            ..
        } => {
            assert_eq!(*line, 4);
            assert_eq!(named, &known_hosts);
        }
        other => panic!("expected HostKeyChanged, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!("{}:4", known_hosts.display())),
        "{message}"
    );

    // accept-new never overrides a changed key, and leaves the file alone.
    let mut opts = server.options(known_hosts.clone());
    opts.accept_new_host_keys = true;
    let err = Session::connect(&server.target(), &opts).await.unwrap_err();
    assert!(
        matches!(err, SshError::HostKeyChanged { line: 4, .. }),
        "{err:?}"
    );
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), contents);
}

#[tokio::test]
async fn accept_new_appends_the_key_once() {
    let server = TestSshd::start();
    let known_hosts = server.path("fresh/known_hosts");
    let mut opts = server.options(known_hosts.clone());
    opts.accept_new_host_keys = true;
    let session = Session::connect(&server.target(), &opts).await.unwrap();
    assert_eq!(session.exec("echo ok", b"").await.unwrap().stdout, b"ok\n");
    session.close().await;

    let expected = format!("{} {}\n", server.known_hosts_name(), server.host_key);
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), expected);

    // Now known: strict checking passes, and accept-new does not append again.
    Session::connect(&server.target(), &server.options(known_hosts.clone()))
        .await
        .unwrap();
    Session::connect(&server.target(), &opts).await.unwrap();
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), expected);
}

#[tokio::test]
async fn hashed_entries_are_trusted() {
    let server = TestSshd::start();
    // Hashed with ssh-keygen -H, the way OpenSSH's HashKnownHosts writes them.
    let known_hosts = server.trusting_known_hosts();
    let status = Command::new("ssh-keygen")
        .arg("-q")
        .arg("-H")
        .arg("-f")
        .arg(&known_hosts)
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    let hashed = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(hashed.starts_with("|1|"), "{hashed}");
    Session::connect(&server.target(), &server.options(known_hosts))
        .await
        .unwrap();
}

// OpenSSH looks a host up under the name it dials (`[address]:port`) and nothing else; the
// inventory name is only a label. Trusting entries under the label would let a line written
// for another machine vouch for this address.

#[tokio::test]
async fn entries_under_the_inventory_name_are_not_trusted_for_the_address() {
    let server = TestSshd::start();
    let by_label = format!("elsewhere,[testhost]:{} {}\n", server.port, server.host_key);
    let err = refusal(&server, &by_label).await;
    assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{err:?}");
}

#[tokio::test]
async fn changed_key_under_the_address_is_not_masked_by_an_inventory_name_entry() {
    let server = TestSshd::start();
    let other = some_other_key(&server);
    let text = format!(
        "{} {other}\n[testhost]:{} {}\n",
        server.known_hosts_name(),
        server.port,
        server.host_key
    );
    let err = refusal(&server, &text).await;
    assert!(
        matches!(err, SshError::HostKeyChanged { line: 1, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn negated_address_is_not_trusted_through_another_name() {
    let server = TestSshd::start();
    let text = format!("*,!{} {}\n", server.known_hosts_name(), server.host_key);
    let err = refusal(&server, &text).await;
    assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{err:?}");
}

#[tokio::test]
async fn accept_new_appends_under_the_dialled_name_only() {
    let server = TestSshd::start();
    let other = some_other_key(&server);
    let before = format!("[testhost]:{} {other}\n", server.port);
    let known_hosts = server.write_file("known_hosts", &before);
    let mut opts = server.options(known_hosts.clone());
    opts.accept_new_host_keys = true;
    Session::connect(&server.target(), &opts).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&known_hosts).unwrap(),
        format!(
            "{before}{} {}\n",
            server.known_hosts_name(),
            server.host_key
        )
    );
}

#[tokio::test]
async fn revoked_key_is_refused() {
    let server = TestSshd::start();
    let text = format!(
        "{name} {key}\n@revoked * {key}\n",
        name = server.known_hosts_name(),
        key = server.host_key
    );
    let err = refusal(&server, &text).await;
    assert!(
        matches!(err, SshError::HostKeyRevoked { line: 2, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn nothing_listening_is_unreachable_quickly() {
    let (address, port) = support::free_loopback_port();
    let dir = tempfile::tempdir().unwrap();
    let target = virtfleet_ssh::Target {
        label: "ghost".into(),
        address,
        port,
        user: "root".into(),
        key_file: None,
        become_user: None,
        jump: None,
        own: Default::default(),
    };
    let opts = virtfleet_ssh::ClientOptions {
        known_hosts: dir.path().join("known_hosts"),
        use_agent: false,
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let started = Instant::now();
    let err = Session::connect(&target, &opts).await.unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().starts_with("ghost: "), "{err}");
}

#[tokio::test]
async fn silent_server_times_out_in_the_handshake() {
    let (address, port) = support::free_loopback_port();
    // Accepts TCP connections (via the backlog) but never speaks SSH.
    let _listener = std::net::TcpListener::bind((address.as_str(), port)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = virtfleet_ssh::Target {
        port,
        ..virtfleet_ssh::Target::new("mute", address, "root")
    };
    let opts = virtfleet_ssh::ClientOptions {
        known_hosts: dir.path().join("known_hosts"),
        use_agent: false,
        connect_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let started = Instant::now();
    let err = Session::connect(&target, &opts).await.unwrap_err();
    assert!(
        matches!(&err, SshError::Timeout { operation, .. } if operation == "SSH handshake"),
        "{err:?}"
    );
    assert!(!err.is_unreachable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn host_key_alias_is_looked_up_and_learned_instead_of_the_address() {
    let server = TestSshd::start();
    let by_alias = server.write_file(
        "known_hosts",
        &format!("compute01.fleet {}\n", server.host_key),
    );
    let mut opts = server.options(by_alias);
    opts.host_key_aliases
        .insert("testhost".into(), "Compute01.fleet".into());
    Session::connect(&server.target(), &opts).await.unwrap();

    // Like OpenSSH's HostKeyAlias: the address is no longer consulted at all.
    let by_address = server.trusting_known_hosts();
    opts.known_hosts = by_address;
    let err = Session::connect(&server.target(), &opts).await.unwrap_err();
    assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{err:?}");

    // An alias is given per inventory name: other hosts are unaffected.
    let mut other = server.target();
    other.label = "otherhost".into();
    Session::connect(&other, &opts).await.unwrap();

    // accept-new records the alias, as `ssh -o HostKeyAlias=...` does.
    let fresh = server.path("fresh_known_hosts");
    opts.known_hosts = fresh.clone();
    opts.accept_new_host_keys = true;
    Session::connect(&server.target(), &opts).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&fresh).unwrap(),
        format!("compute01.fleet {}\n", server.host_key)
    );

    // An alias that would be a pattern or a second line is refused before dialling.
    opts.host_key_aliases
        .insert("testhost".into(), "x\n* ssh-ed25519 AAAA".into());
    let err = Session::connect(&server.target(), &opts).await.unwrap_err();
    assert!(matches!(err, SshError::InvalidTarget { .. }), "{err:?}");
    assert!(err.to_string().contains("host key alias"), "{err}");
}
