//! ssh-agent authentication. Alone in its binary because it sets SSH_AUTH_SOCK for the process.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{keygen, TestSshd};
use virtfleet_ssh::{Session, SshError};

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn agent_keys_authenticate_and_refusals_are_reported() {
    let server = TestSshd::start();
    let socket = server.path("agent.sock");
    let agent = Agent(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("start ssh-agent"),
    );
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "agent socket missing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let add = |key: &std::path::Path| {
        let status = Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &socket)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "ssh-add failed");
    };
    // Only this test runs in this binary, so no other thread reads the environment meanwhile.
    std::env::set_var("SSH_AUTH_SOCK", &socket);

    let mut opts = server.options(server.trusting_known_hosts());
    opts.use_agent = true;
    let mut target = server.target();
    target.key_file = None;

    // An agent holding only a stranger's key: refused, and the message says what was tried.
    add(&keygen(server.dir.path(), "stranger", "ed25519"));
    let err = Session::connect(&target, &opts).await.unwrap_err();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("ssh-agent (1 keys)"), "{err}");

    // With the authorized key added, the second agent key gets in.
    add(&server.client_key);
    let session = Session::connect(&target, &opts)
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", server.log()));
    assert_eq!(
        session.exec("echo via-agent", b"").await.unwrap().stdout,
        b"via-agent\n"
    );
    session.close().await;

    // A rejected key file falls back to the agent.
    target.key_file = Some(keygen(server.dir.path(), "stranger2", "ed25519"));
    Session::connect(&target, &opts).await.unwrap();
    drop(agent);
}
