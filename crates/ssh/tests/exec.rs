//! exec against a real sshd: output, exit status, stdin, concurrency and timeouts.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::TestSshd;
use virtfleet_ssh::{Session, SshError};

async fn connect(server: &TestSshd) -> Session {
    let opts = server.options(server.trusting_known_hosts());
    Session::connect(&server.target(), &opts)
        .await
        .unwrap_or_else(|err| panic!("connect failed: {err}\n{}", server.log()))
}

#[tokio::test]
async fn echo_returns_stdout_and_zero_status() {
    let server = TestSshd::start();
    let session = connect(&server).await;
    let out = session.exec("echo hi", b"").await.unwrap();
    assert_eq!(out.status, 0);
    assert!(out.success());
    assert_eq!(out.stdout, b"hi\n");
    assert_eq!(out.stderr, b"");
    assert_eq!(out.signal, None);
    session.close().await;
}

#[tokio::test]
async fn nonzero_status_and_stderr_are_reported() {
    let server = TestSshd::start();
    let session = connect(&server).await;
    let out = session.exec("echo oops >&2; exit 3", b"").await.unwrap();
    assert_eq!(out.status, 3);
    assert!(!out.success());
    assert_eq!(out.stdout_lossy(), "");
    assert_eq!(out.stderr_lossy(), "oops\n");
}

#[tokio::test]
async fn death_by_signal_is_reported() {
    let server = TestSshd::start();
    let session = connect(&server).await;
    let out = session.exec("kill -TERM $$", b"").await.unwrap();
    assert_eq!(out.signal.as_deref(), Some("TERM"));
    assert_eq!(out.status, 128 + 15);
}

#[tokio::test]
async fn one_mebibyte_of_stdin_is_delivered_and_echoed() {
    let server = TestSshd::start();
    let session = connect(&server).await;
    // Non-repeating bytes, so a dropped or reordered chunk cannot go unnoticed.
    let mut state = 0x2545_f491_u32;
    let data: Vec<u8> = (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();

    let counted = session.exec("wc -c", &data).await.unwrap();
    assert_eq!(counted.stdout_lossy().trim(), "1048576");

    // cat streams the input back while we are still sending it.
    let echoed = session.exec("cat", &data).await.unwrap();
    assert_eq!(echoed.status, 0);
    assert!(echoed.stdout == data, "cat returned different bytes");
}

#[tokio::test]
async fn command_that_ignores_stdin_still_completes() {
    let server = TestSshd::start();
    let session = connect(&server).await;
    let out = session.exec("true", &vec![b'x'; 4 << 20]).await.unwrap();
    assert_eq!(out.status, 0);
}

#[tokio::test]
async fn twenty_concurrent_commands_share_one_session() {
    let server = TestSshd::start();
    let session = Arc::new(connect(&server).await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let session = Arc::clone(&session);
        tasks.spawn(async move {
            let out = session
                .exec(
                    &format!("sleep 0.2; cat; echo {i}"),
                    format!("in{i} ").as_bytes(),
                )
                .await;
            (i, out)
        });
    }
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, out) = joined.unwrap();
        let out = out.unwrap_or_else(|err| panic!("command {i}: {err}\n{}", server.log()));
        assert_eq!(out.stdout_lossy(), format!("in{i} {i}\n"));
        done += 1;
    }
    assert_eq!(done, 20);
    // All channels were closed: the session still takes new commands.
    assert_eq!(
        session.exec("echo again", b"").await.unwrap().stdout,
        b"again\n"
    );
}

#[tokio::test]
async fn command_timeout_fires_and_the_session_stays_usable() {
    let server = TestSshd::start();
    let mut opts = server.options(server.trusting_known_hosts());
    opts.command_timeout = Duration::from_secs(1);
    opts.max_concurrent_commands = 1;
    let session = Session::connect(&server.target(), &opts).await.unwrap();

    let started = Instant::now();
    let err = session.exec("sleep 10", b"").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, SshError::Timeout { .. }), "{err:?}");
    assert!(err.is_timeout());
    assert!(err.to_string().contains("testhost"), "{err}");

    // The only channel slot was given back. (A generous limit: the runner may be busy.)
    let out = session
        .exec_with_timeout("echo alive", b"", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(out.stdout, b"alive\n");

    // A per-call limit overrides the session's.
    let err = session
        .exec_with_timeout("sleep 5", b"", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Timeout { after, .. } if after == Duration::from_millis(300)));
}

#[tokio::test]
async fn more_concurrent_commands_than_max_sessions_are_retried() {
    let server = TestSshd::start();
    let mut opts = server.options(server.trusting_known_hosts());
    // sshd allows 10 sessions; the channel opens it refuses are retried until slots free up.
    opts.max_concurrent_commands = 14;
    let session = Arc::new(Session::connect(&server.target(), &opts).await.unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..14 {
        let session = Arc::clone(&session);
        tasks.spawn(async move { (i, session.exec(&format!("sleep 0.3; echo {i}"), b"").await) });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, out) = joined.unwrap();
        let out = out.unwrap_or_else(|err| panic!("command {i}: {err}"));
        assert_eq!(out.stdout_lossy(), format!("{i}\n"));
    }
}

#[tokio::test]
async fn become_runs_the_command_as_that_user_with_stdin_and_quotes_intact() {
    let server = TestSshd::start();
    let target = virtfleet_ssh::Target {
        become_user: Some("nobody".into()),
        jump: None,
        own: Default::default(),
        ..server.target()
    };
    let opts = server.options(server.trusting_known_hosts());
    let session = Session::connect(&target, &opts).await.unwrap();
    let out = session
        .exec("printf '%s:' \"$(id -un)\" \"it's\"; cat", b"on stdin")
        .await
        .unwrap();
    assert!(out.success(), "{}", out.stderr_lossy());
    assert_eq!(out.stdout_lossy(), "nobody:it's:on stdin");
    // The login user's own commands are not wrapped: root stays root without sudo.
    let as_login = virtfleet_ssh::Target {
        become_user: Some("root".into()),
        jump: None,
        own: Default::default(),
        ..server.target()
    };
    let session = Session::connect(&as_login, &opts).await.unwrap();
    let out = session
        .exec("echo \"${SUDO_USER-no sudo}\"", b"")
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy(), "no sudo\n");
}

#[tokio::test]
async fn output_beyond_the_limit_stops_the_command_with_a_clear_error() {
    let server = TestSshd::start();
    let mut opts = server.options(server.trusting_known_hosts());
    opts.max_stdout = 64 << 10;
    opts.max_stderr = 1000;
    let session = Session::connect(&server.target(), &opts).await.unwrap();

    // Up to the limit is fine.
    let out = session.exec("head -c 65536 /dev/zero", b"").await.unwrap();
    assert_eq!(out.stdout.len(), 64 << 10);

    let err = session
        .exec("head -c 65537 /dev/zero", b"")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SshError::OutputTooLarge {
                stream: "stdout",
                limit: 65536,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("testhost: ")
            && message.contains("64 KiB")
            && message.contains("stdout"),
        "{message}"
    );

    let err = session
        .exec("head -c 1001 /dev/zero >&2", b"")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1000 bytes to stderr"), "{err}");

    // Endless output: stopped at the limit, not read until the command timeout.
    let started = Instant::now();
    let err = session.exec("yes", b"").await.unwrap_err();
    assert!(matches!(err, SshError::OutputTooLarge { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // The connection stays usable.
    assert_eq!(session.exec("echo ok", b"").await.unwrap().stdout, b"ok\n");
}
