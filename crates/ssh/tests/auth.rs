//! Client authentication with key files, against a real sshd.

mod support;

use support::{keygen, TestSshd};
use virtfleet_ssh::{Session, SshError};

#[tokio::test]
async fn ed25519_ecdsa_and_rsa_key_files_authenticate() {
    let server = TestSshd::start_with_authorized(&["ecdsa", "rsa"]);
    let opts = server.options(server.trusting_known_hosts());
    for name in ["client_ed25519", "client_ecdsa", "client_rsa"] {
        let mut target = server.target();
        target.key_file = Some(server.path(name));
        let session = Session::connect(&target, &opts)
            .await
            .unwrap_or_else(|err| panic!("{name}: {err}\n{}", server.log()));
        let out = session.exec("id -un", b"").await.unwrap();
        assert_eq!(out.stdout, b"root\n", "{name}");
        session.close().await;
    }
}

#[tokio::test]
async fn unauthorized_key_fails_naming_user_and_host() {
    let server = TestSshd::start();
    let mut target = server.target();
    target.key_file = Some(keygen(server.dir.path(), "stranger", "ed25519"));
    let err = Session::connect(&target, &server.options(server.trusting_known_hosts()))
        .await
        .unwrap_err();
    let SshError::AuthFailed { host, user, .. } = &err else {
        panic!("expected AuthFailed, got {err:?}");
    };
    assert_eq!((host.as_str(), user.as_str()), ("testhost", "root"));
    let message = err.to_string();
    assert!(
        message.contains(&format!("root@{}:{}", server.address, server.port)),
        "{message}"
    );
    assert!(message.contains("stranger"), "{message}");
}

#[tokio::test]
async fn no_credentials_at_all_is_an_auth_failure() {
    let server = TestSshd::start();
    let mut target = server.target();
    target.key_file = None;
    let err = Session::connect(&target, &server.options(server.trusting_known_hosts()))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err:?}");
}

#[tokio::test]
async fn without_a_key_file_the_default_identities_are_tried_as_openssh_does() {
    let server = TestSshd::start();
    let mut opts = server.options(server.trusting_known_hosts());
    let mut target = server.target();
    let authorized = target.key_file.take().unwrap();
    let encrypted = server.path("id_encrypted");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "pass", "-f"])
        .arg(&encrypted)
        .status()
        .unwrap();
    assert!(status.success());
    let stranger = keygen(server.dir.path(), "id_stranger", "ed25519");
    // Missing, encrypted and unauthorized ones are passed over; the authorized one is used.
    opts.identity_files = vec![
        server.path("id_missing"),
        encrypted.clone(),
        stranger.clone(),
        authorized,
    ];
    let session = Session::connect(&target, &opts)
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", server.log()));
    session.close().await;

    // None usable: the failure says what was tried and why the encrypted one was not.
    opts.identity_files = vec![encrypted, stranger.clone()];
    let message = Session::connect(&target, &opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&format!("key {}", stranger.display())) && message.contains("passphrase"),
        "{message}"
    );
    // A target's own key file replaces the defaults (as IdentityFile does in OpenSSH).
    target.key_file = Some(stranger);
    opts.identity_files = vec![server.path("client_ed25519")];
    let err = Session::connect(&target, &opts).await.unwrap_err();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err:?}");
}

#[tokio::test]
async fn unreadable_or_encrypted_key_file_is_reported_without_its_content() {
    let server = TestSshd::start();
    let opts = server.options(server.trusting_known_hosts());

    let mut target = server.target();
    target.key_file = Some(server.path("does-not-exist"));
    let err = Session::connect(&target, &opts).await.unwrap_err();
    assert!(matches!(err, SshError::KeyFile { .. }), "{err:?}");

    let encrypted = server.path("encrypted");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "sekrit-passphrase", "-f"])
        .arg(&encrypted)
        .status()
        .unwrap();
    assert!(status.success());
    target.key_file = Some(encrypted);
    let err = Session::connect(&target, &opts).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, SshError::KeyFile { .. }), "{err:?}");
    assert!(message.contains("passphrase"), "{message}");
    assert!(!message.contains("sekrit"), "{message}");
}

#[tokio::test]
async fn key_file_others_may_read_or_write_is_refused_like_ssh_does() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestSshd::start();
    let opts = server.options(server.trusting_known_hosts());
    let target = server.target();
    let key = target.key_file.clone().unwrap();
    let chmod = |mode: u32| std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode));

    // Used while private (also read-only), and parsed into the per-process cache.
    for mode in [0o600, 0o400] {
        chmod(mode).unwrap();
        Session::connect(&target, &opts)
            .await
            .unwrap()
            .close()
            .await;
    }
    // chmod changes neither size nor mtime: the cache must not hide it.
    for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
        chmod(mode).unwrap();
        let err = Session::connect(&target, &opts).await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, SshError::KeyFile { .. }), "{mode:o}: {err:?}");
        assert!(
            message.contains("UNPROTECTED PRIVATE KEY FILE"),
            "{message}"
        );
        assert!(
            message.contains(&format!(
                "permissions 0{mode:o} for '{}' are too open",
                key.display()
            )),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_key_path_that_is_not_a_small_regular_file_is_refused_before_reading() {
    let server = TestSshd::start();
    let opts = server.options(server.trusting_known_hosts());
    let mut target = server.target();
    // /proc/self/pagemap (0400, endless to read) and a 1 MiB file: refused at once.
    let big = server.path("big_key");
    std::fs::write(&big, vec![b'A'; 1 << 20]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o600)).unwrap();
    for path in [std::path::PathBuf::from("/proc/self/pagemap"), big] {
        target.key_file = Some(path.clone());
        let started = std::time::Instant::now();
        let err = Session::connect(&target, &opts).await.unwrap_err();
        assert!(matches!(err, SshError::KeyFile { .. }), "{path:?}: {err:?}");
        assert!(err.to_string().contains("not a private key file"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
