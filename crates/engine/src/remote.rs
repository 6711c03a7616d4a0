//! One-off operations on one host over its own connection: read files, run a command in a
//! container, look at a TLS server from there. Libvirt-agnostic; the caller says what.

use std::collections::BTreeMap;
use std::time::Duration;

use virtfleet_ssh::{ClientOptions, Session, Target};

use crate::script::{self, Script};
use crate::{wire, EngineError};

/// Runs `script` on `target`; a non-zero exit is an error with the last lines of stderr.
pub async fn run(
    target: &Target,
    ssh: &ClientOptions,
    what: &str,
    script: &Script,
    after: After,
) -> Result<Vec<u8>, EngineError> {
    run_with_timeout(target, ssh, what, script, None, after).await
}

/// What becomes of a one-off's connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum After {
    Close,
    /// Parked in the run's pool, when the command succeeded: the host's next step in this
    /// run (its converge, a later phase's) takes it instead of logging in again.
    Park,
}

async fn run_with_timeout(
    target: &Target,
    ssh: &ClientOptions,
    what: &str,
    script: &Script,
    timeout: Option<Duration>,
    after: After,
) -> Result<Vec<u8>, EngineError> {
    let session = Session::connect(target, ssh).await?;
    let out = exec(&session, what, script, timeout).await;
    match after {
        After::Park if out.is_ok() => session.park(target, ssh),
        _ => session.close().await,
    }
    out
}

/// Runs `script` on an open session, sent on stdin (the command line is only
/// [`script::STDIN_COMMAND`]); non-zero exit → [`EngineError::Remote`].
pub(crate) async fn exec(
    session: &Session,
    what: &str,
    script: &Script,
    timeout: Option<Duration>,
) -> Result<Vec<u8>, EngineError> {
    exec_stdin(session, what, &script.for_stdin(), timeout).await
}

/// Runs [`script::STDIN_COMMAND`] with `stdin`, a whole script ([`Script::for_stdin`],
/// [`script::push`]).
pub(crate) async fn exec_stdin(
    session: &Session,
    what: &str,
    stdin: &[u8],
    timeout: Option<Duration>,
) -> Result<Vec<u8>, EngineError> {
    let command = script::STDIN_COMMAND;
    let result = match timeout {
        Some(t) => session.exec_with_timeout(command, stdin, t).await,
        None => session.exec(command, stdin).await,
    };
    let out = result.map_err(|source| EngineError::Exec {
        what: what.to_string(),
        source: Box::new(source),
    })?;
    if !out.success() {
        let stderr = out.stderr_lossy();
        let tail: Vec<&str> = stderr.trim().lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(EngineError::Remote {
            what: what.to_string(),
            status: out.status,
            stderr: tail.join(" / "),
        });
    }
    Ok(out.stdout)
}

/// Each path's contents, mode and owner, None where the file does not exist (or is a
/// symlink): one round trip. `After::Park` for a host this run converges next.
pub async fn read_files(
    target: &Target,
    ssh: &ClientOptions,
    paths: &[&str],
    after: After,
) -> Result<BTreeMap<String, Option<wire::HostFile>>, EngineError> {
    let script = script::read_files(paths);
    let out = run_with_timeout(target, ssh, "read files", &script, None, after).await?;
    wire::parse_files(&out, paths).ok_or_else(|| EngineError::Garbled("read files".into()))
}

/// [`read_files`], and from `target` whether each of `ports` on `peer` is reachable (see
/// [`wire::Reach`]), in one round trip.
pub async fn read_files_and_reach(
    target: &Target,
    ssh: &ClientOptions,
    paths: &[&str],
    peer: &str,
    ports: &[u16],
) -> Result<ReadAndReach, EngineError> {
    const SECONDS: u64 = 3;
    let what = "read files and reach a peer";
    let script = script::read_files_and_reach(paths, peer, SECONDS, ports);
    // A host's `timeout` that leaves the connections' processes behind cannot hold it open.
    let limit = Some(Duration::from_secs(SECONDS + 30));
    let out = run_with_timeout(target, ssh, what, &script, limit, After::Close).await?;
    let garbled = || EngineError::Garbled(what.into());
    let (files, rest) = wire::parse_files_then(&out, paths).ok_or_else(garbled)?;
    let reach = wire::parse_reach(rest, ports)
        .map_err(|why| EngineError::Garbled(format!("{what}: {why}")))?;
    Ok((files, reach))
}

/// What [`read_files_and_reach`] answers: the files, and each port's reach (None when the
/// host could not test).
pub type ReadAndReach = (wire::Files, Option<BTreeMap<u16, wire::Reach>>);

/// Runs `argv` where a service runs on the host of `session` (`service` names it in
/// errors), given up after `seconds`. The session may be shared by tasks asking at once.
pub async fn exec_in_service(
    session: &Session,
    place: script::Place<'_>,
    service: &str,
    seconds: u64,
    argv: &[String],
) -> Result<(), EngineError> {
    let what = format!("`{}` in {service}", argv.join(" "));
    let script = script::exec_with_timeout(place, seconds, argv);
    let limit = Duration::from_secs(seconds + 15);
    exec(session, &what, &script, Some(limit)).await.map(|_| ())
}

/// Where a TLS server is and how a client there authenticates.
pub struct TlsProbe<'a> {
    pub address: &'a str,
    pub port: u16,
    pub server_name: &'a str,
    /// Client certificate and key files on the host the probe runs on.
    pub cert: &'a str,
    pub key: &'a str,
}

/// The SHA-256 fingerprint (openssl style, `AB:CD:...`) of the certificate the TLS server
/// presents to a client on the host of `session` (openssl there).
pub async fn served_fingerprint(
    session: &Session,
    probe: &TlsProbe<'_>,
) -> Result<String, EngineError> {
    let script = script::served_certificate(
        probe.address,
        probe.port,
        probe.server_name,
        probe.cert,
        probe.key,
    );
    let what = format!(
        "read the certificate {}:{} serves",
        probe.address, probe.port
    );
    let out = exec(session, &what, &script, Some(Duration::from_secs(30))).await?;
    let out = String::from_utf8_lossy(&out);
    let hex = out.split_whitespace().next().unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(EngineError::Garbled(what));
    }
    let pairs: Vec<String> = hex
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).to_uppercase())
        .collect();
    Ok(pairs.join(":"))
}
