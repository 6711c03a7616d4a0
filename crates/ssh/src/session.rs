use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use russh::client::{self, Handle, Msg};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{
    Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate,
};
use russh::{ChannelMsg, ChannelOpenFailure, ChannelReadHalf, ChannelWriteHalf, Disconnect, Sig};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{timeout, timeout_at, Instant};

use crate::file_cache::FileCache;
use crate::known_hosts::{self, KnownHosts, Verdict};
use crate::{shell_quote, ClientOptions, SshError, Target};

/// What one command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status; `128 + signal number` when the command was killed by a signal.
    pub status: u32,
    /// Name of the signal that killed the command (e.g. `KILL`), if any.
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == 0 && self.signal.is_none()
    }

    /// stdout as text, with invalid UTF-8 replaced.
    pub fn stdout_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// stderr as text, with invalid UTF-8 replaced.
    pub fn stderr_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

/// A byte stream an SSH connection runs over: a TCP connection, or a channel of a jump
/// host's connection.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Stream for S {}

async fn tcp_connect(
    target: &Target,
    opts: &ClientOptions,
    deadline: Instant,
) -> Result<TcpStream, SshError> {
    let unreachable = |reason: String| SshError::Unreachable {
        host: target.label.clone(),
        address: format!("{}:{}", target.address, target.port),
        reason,
    };
    let stream = match timeout_at(
        deadline,
        TcpStream::connect((target.address.as_str(), target.port)),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => return Err(unreachable(err.to_string())),
        Err(_) => {
            return Err(unreachable(format!(
                "no answer within {:?}",
                connect_timeout(target, opts)
            )))
        }
    };
    // Commands are small request/response exchanges: do not let Nagle delay them.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A connection to `target` opened by `jump`'s sshd (`ProxyJump`): the run's one connection
/// to the jump host (opened by the first target behind it), then a `direct-tcpip` channel
/// on it to the target's address and port.
async fn through_jump(
    target: &Target,
    jump: &Target,
    opts: &ClientOptions,
    deadline: Instant,
) -> Result<russh::ChannelStream<Msg>, SshError> {
    let unreachable = |reason: String| SshError::Unreachable {
        host: target.label.clone(),
        address: format!("{}:{} through {}", target.address, target.port, jump.label),
        reason,
    };
    let cell = opts.pool.jumps.cell(jump);
    let opened = cell.get_or_try_init(|| async { dial_boxed(jump, opts).await.map(Arc::new) });
    let session = match timeout_at(deadline, opened).await {
        Ok(Ok(session)) => session.clone(),
        // The jump host's own error, which names it: a changed key stays a host-key problem.
        Ok(Err(err)) => return Err(err),
        Err(_) => {
            return Err(unreachable(format!(
                "jump host {} not connected within {:?}",
                jump.label,
                connect_timeout(target, opts)
            )))
        }
    };
    let channel = session.handle.channel_open_direct_tcpip(
        target.address.clone(),
        u32::from(target.port),
        "127.0.0.1",
        0,
    );
    match timeout_at(deadline, channel).await {
        Ok(Ok(channel)) => Ok(channel.into_stream()),
        Ok(Err(err)) => Err(unreachable(format!(
            "the jump host did not connect to it: {err}"
        ))),
        Err(_) => Err(unreachable(format!(
            "no answer within {:?}",
            connect_timeout(target, opts)
        ))),
    }
}

/// The target's own connect timeout, else the run's.
fn connect_timeout(target: &Target, opts: &ClientOptions) -> Duration {
    target.own.connect_timeout.unwrap_or(opts.connect_timeout)
}

/// [`Session::dial`] behind a box: a jump host is dialled the same way, its own jump host
/// too.
fn dial_boxed<'a>(
    target: &'a Target,
    opts: &'a ClientOptions,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Session, SshError>> + Send + 'a>> {
    Box::pin(Session::dial(target, opts))
}

/// One authenticated SSH connection. All methods take `&self`, so one session can be shared
/// (e.g. in an `Arc`) by tasks running commands concurrently.
pub struct Session {
    handle: Handle<HostKeyCheck>,
    /// Bounds the open channels below sshd's `MaxSessions`.
    channel_slots: Semaphore,
    label: String,
    command_timeout: Duration,
    limits: OutputLimits,
    /// `sudo -n -u <user> -- sh -c` when commands run as another user (see `Target`).
    become_prefix: Option<String>,
}

/// Most bytes one command may write to stdout and to stderr.
#[derive(Debug, Clone, Copy)]
struct OutputLimits {
    stdout: usize,
    stderr: usize,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.label)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects, verifies the host key against `opts.known_hosts` and authenticates, all within
    /// `opts.connect_timeout` (or the target's own, [`Target::own`]); or takes the session an earlier step parked for this target in
    /// `opts.pool` (still open, already verified and authenticated).
    pub async fn connect(target: &Target, opts: &ClientOptions) -> Result<Session, SshError> {
        if let Some(session) = opts.pool.take(target) {
            return Ok(session);
        }
        Session::dial(target, opts).await
    }

    /// Leaves this session open in `opts.pool` for the next [`Session::connect`] to `target`
    /// in this run.
    pub fn park(self, target: &Target, opts: &ClientOptions) {
        opts.pool.put(target.clone(), self);
    }

    /// The connection is gone (closed by either side).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    async fn dial(target: &Target, opts: &ClientOptions) -> Result<Session, SshError> {
        let connect_timeout = connect_timeout(target, opts);
        let deadline = Instant::now() + connect_timeout;
        let known_hosts_path = (target.own.known_hosts.as_ref()).unwrap_or(&opts.known_hosts);
        let host = target.label.clone();
        let dialled = format!("{}:{}", target.address, target.port);

        let alias = opts.host_key_aliases.get(&target.label).map(String::as_str);
        if let Some(alias) = alias.filter(|a| !known_hosts::is_plain_entry_name(a)) {
            return Err(SshError::InvalidTarget {
                host,
                reason: format!(
                    "host key alias {alias:?} is not a plain host name (letters, digits, -._:[]%)"
                ),
            });
        }
        let name = known_hosts::lookup_name(&target.address, target.port, alias);
        let known = {
            let path = known_hosts_path.clone();
            blocking(move || KNOWN_HOSTS.get(&path, KnownHosts::load))
                .await
                .map_err(|err| SshError::KnownHostsFile {
                    path: known_hosts_path.clone(),
                    reason: err.to_string(),
                })?
        };
        // A bad key path is the operator's mistake, not the host's: report it before dialling.
        let key = match &target.key_file {
            Some(path) => Some((path.clone(), load_private_key(path).await?)),
            None => None,
        };
        // Without a key file of its own, OpenSSH's default identities that exist (a file
        // that is missing, encrypted or unprotected is skipped, named among what was tried).
        let mut identities = Vec::new();
        let mut skipped = Vec::new();
        if target.key_file.is_none() {
            let files = target.own.identity_files.as_ref();
            for path in files.unwrap_or(&opts.identity_files) {
                if !path.exists() {
                    continue;
                }
                match load_private_key(path).await {
                    Ok(loaded) => identities.push((path.clone(), loaded)),
                    Err(err) => skipped.push(err.to_string()),
                }
            }
        }

        let stream: Box<dyn Stream> = match &target.jump {
            Some(jump) => Box::new(through_jump(target, jump, opts, deadline).await?),
            None => Box::new(tcp_connect(target, opts, deadline).await?),
        };

        let config = Arc::new(client_config(opts, &known.recorded_algorithms(&name)));
        let check = HostKeyCheck {
            host: host.clone(),
            address: dialled.clone(),
            known_hosts_path: known_hosts_path.clone(),
            known,
            name,
            accept_new: (target.own.accept_new_host_keys).unwrap_or(opts.accept_new_host_keys),
        };
        let mut handle =
            match timeout_at(deadline, client::connect_stream(config, stream, check)).await {
                Ok(Ok(handle)) => handle,
                Ok(Err(CheckError::Rejected(err))) => return Err(err),
                Ok(Err(CheckError::Ssh(err))) => {
                    return Err(SshError::Protocol {
                        host,
                        reason: format!("handshake with {dialled} failed: {err}"),
                    })
                }
                Err(_) => {
                    return Err(SshError::Timeout {
                        host,
                        operation: "SSH handshake".into(),
                        after: connect_timeout,
                    })
                }
            };

        let keys = Keys {
            own: key,
            identities,
            skipped,
        };
        match timeout_at(deadline, authenticate(&mut handle, target, opts, keys)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err),
            Err(_) => {
                return Err(SshError::Timeout {
                    host,
                    operation: "authentication".into(),
                    after: connect_timeout,
                })
            }
        }

        Ok(Session {
            handle,
            channel_slots: Semaphore::new(opts.max_concurrent_commands.max(1)),
            label: host,
            command_timeout: opts.command_timeout,
            limits: OutputLimits {
                stdout: opts.max_stdout,
                stderr: opts.max_stderr,
            },
            become_prefix: target
                .sudo_user()
                .map(|user| format!("sudo -n -u {} -- sh -c ", shell_quote(user))),
        })
    }

    /// The target's inventory label.
    pub fn host(&self) -> &str {
        &self.label
    }

    /// Runs `command` through the remote user's shell (under `sudo -n` as the target's
    /// `become_user`, when it has one) on a new channel, writes `stdin` to it
    /// followed by EOF, and collects stdout, stderr and the exit status, within the session's
    /// command timeout. A non-zero status is not an error; output beyond the
    /// `max_stdout` / `max_stderr` limits is ([`SshError::OutputTooLarge`]).
    ///
    /// The channel is always closed afterwards. On timeout or too much output a KILL signal
    /// is requested too, but
    /// sshd ignores signal requests in root sessions (they run without privilege separation),
    /// so there the remote command runs on until it ends by itself.
    pub async fn exec(&self, command: &str, stdin: &[u8]) -> Result<ExecOutput, SshError> {
        self.exec_with_timeout(command, stdin, self.command_timeout)
            .await
    }

    /// [`exec`](Self::exec) with its own time limit instead of the session's command timeout.
    /// Waiting for a free channel slot (see `max_concurrent_commands`) does not count.
    pub async fn exec_with_timeout(
        &self,
        command: &str,
        stdin: &[u8],
        limit: Duration,
    ) -> Result<ExecOutput, SshError> {
        let _slot = self
            .channel_slots
            .acquire()
            .await
            .expect("the semaphore is never closed");

        let started = Instant::now();
        let channel = match timeout(limit, self.open_channel()).await {
            Ok(channel) => channel?,
            Err(_) => return Err(self.command_timed_out(limit)),
        };
        let (mut reader, writer) = channel.split();
        let remaining = limit.saturating_sub(started.elapsed());
        // Under become, the command is one argument of sudo; stdin passes through to it.
        let command = match &self.become_prefix {
            Some(prefix) => Cow::Owned(format!("{prefix}{}", shell_quote(command))),
            None => Cow::Borrowed(command),
        };
        match timeout(
            remaining,
            run_on_channel(&mut reader, &writer, &command, stdin, self.limits),
        )
        .await
        {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(reason)) => {
                if matches!(reason, ChannelFailure::TooMuchOutput { .. }) {
                    let _ = writer.signal(Sig::KILL).await;
                }
                let _ = writer.close().await;
                Err(self.channel_error(reason))
            }
            Err(_) => {
                let _ = writer.signal(Sig::KILL).await;
                let _ = writer.close().await;
                Err(self.command_timed_out(limit))
            }
        }
    }

    /// Says goodbye to the server and waits (a moment at most) until the connection is gone,
    /// so that its descriptor is free when this returns: a run's open files then follow
    /// `--forks`, not the pace at which closed sessions wind down. Dropping a session also
    /// ends the connection, less politely and in the background.
    pub async fn close(self) {
        const WIND_DOWN: Duration = Duration::from_secs(1);
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
        let _ = tokio::time::timeout(WIND_DOWN, self.handle).await;
    }

    async fn open_channel(&self) -> Result<russh::Channel<Msg>, SshError> {
        // sshd refuses sessions beyond its MaxSessions, counting a session until its command
        // has exited (also after we closed the channel), so a refusal is retried for a while.
        const RETRY_FOR: Duration = Duration::from_secs(5);
        let started = Instant::now();
        let mut delay = Duration::from_millis(10);
        loop {
            match self.handle.channel_open_session().await {
                Ok(channel) => return Ok(channel),
                Err(russh::Error::ChannelOpenFailure(
                    ChannelOpenFailure::AdministrativelyProhibited
                    | ChannelOpenFailure::ResourceShortage
                    | ChannelOpenFailure::ConnectFailed,
                )) if started.elapsed() < RETRY_FOR => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(250));
                }
                Err(err) => return Err(self.ssh_error("cannot open a channel", err)),
            }
        }
    }

    fn command_timed_out(&self, after: Duration) -> SshError {
        SshError::Timeout {
            host: self.label.clone(),
            operation: "command".into(),
            after,
        }
    }

    fn channel_error(&self, failure: ChannelFailure) -> SshError {
        match failure {
            ChannelFailure::Ssh(context, err) => self.ssh_error(context, err),
            // The channel also ends without an exit status when the connection drops.
            ChannelFailure::Protocol(reason) if self.handle.is_closed() => {
                SshError::ConnectionLost {
                    host: self.label.clone(),
                    reason: reason.into(),
                }
            }
            ChannelFailure::Protocol(reason) => SshError::Protocol {
                host: self.label.clone(),
                reason: reason.into(),
            },
            ChannelFailure::TooMuchOutput { stream, limit } => SshError::OutputTooLarge {
                host: self.label.clone(),
                stream,
                limit,
            },
        }
    }

    fn ssh_error(&self, context: &str, err: russh::Error) -> SshError {
        if self.handle.is_closed() {
            SshError::ConnectionLost {
                host: self.label.clone(),
                reason: format!("{context}: {err}"),
            }
        } else {
            SshError::Protocol {
                host: self.label.clone(),
                reason: format!("{context}: {err}"),
            }
        }
    }
}

enum ChannelFailure {
    Ssh(&'static str, russh::Error),
    Protocol(&'static str),
    TooMuchOutput { stream: &'static str, limit: usize },
}

/// Appends `data` to `buffer`, unless that would take it beyond `limit` bytes.
fn collect(
    buffer: &mut Vec<u8>,
    data: &[u8],
    stream: &'static str,
    limit: usize,
) -> Result<(), ChannelFailure> {
    if data.len() > limit.saturating_sub(buffer.len()) {
        return Err(ChannelFailure::TooMuchOutput { stream, limit });
    }
    buffer.extend_from_slice(data);
    Ok(())
}

/// Drives one exec channel to its end. stdin is written while output is read, so a command
/// that streams its input back (`cat`) cannot stall on full flow-control windows. Output is
/// kept up to `limits`; the first byte beyond them ends the read.
async fn run_on_channel(
    reader: &mut ChannelReadHalf,
    writer: &ChannelWriteHalf<Msg>,
    command: &str,
    stdin: &[u8],
    limits: OutputLimits,
) -> Result<ExecOutput, ChannelFailure> {
    writer
        .exec(true, command)
        .await
        .map_err(|err| ChannelFailure::Ssh("cannot start the command", err))?;

    let feed = async {
        if !stdin.is_empty() {
            writer.data_bytes(stdin.to_vec()).await?;
        }
        writer.eof().await
    };
    tokio::pin!(feed);
    let mut feeding = true;

    let mut output = ExecOutput::default();
    let mut status = None;
    loop {
        tokio::select! {
            // A command may exit without reading its stdin; what counts then is its exit
            // status, so a failed write is not an error by itself.
            _ = &mut feed, if feeding => feeding = false,
            message = reader.wait() => match message {
                Some(ChannelMsg::Data { data }) => {
                    collect(&mut output.stdout, &data, "stdout", limits.stdout)?
                }
                // Extended data type 1 is stderr (RFC 4254 §5.2).
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    collect(&mut output.stderr, &data, "stderr", limits.stderr)?
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    let (name, number) = signal_name_and_number(&signal_name);
                    status = Some(128 + number);
                    output.signal = Some(name);
                }
                Some(ChannelMsg::Failure) => {
                    return Err(ChannelFailure::Protocol("the server refused to run the command"))
                }
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
        }
    }
    match status {
        Some(status) => {
            output.status = status;
            Ok(output)
        }
        None => Err(ChannelFailure::Protocol(
            "the channel closed without an exit status",
        )),
    }
}

fn signal_name_and_number(signal: &Sig) -> (String, u32) {
    let (name, number) = match signal {
        Sig::HUP => ("HUP", 1),
        Sig::INT => ("INT", 2),
        Sig::QUIT => ("QUIT", 3),
        Sig::ILL => ("ILL", 4),
        Sig::ABRT => ("ABRT", 6),
        Sig::FPE => ("FPE", 8),
        Sig::KILL => ("KILL", 9),
        Sig::USR1 => ("USR1", 10),
        Sig::SEGV => ("SEGV", 11),
        Sig::PIPE => ("PIPE", 13),
        Sig::ALRM => ("ALRM", 14),
        Sig::TERM => ("TERM", 15),
        Sig::Custom(name) => return (name.clone(), 127),
    };
    (name.to_string(), number)
}

fn client_config(opts: &ClientOptions, recorded: &[Algorithm]) -> client::Config {
    let preferred = russh::Preferred {
        kex: Cow::Owned(vec![
            russh::kex::CURVE25519,
            russh::kex::CURVE25519_PRE_RFC_8731,
            russh::kex::MLKEM768X25519_SHA256,
            russh::kex::DH_GEX_SHA256,
            russh::kex::DH_G16_SHA512,
            russh::kex::DH_G14_SHA256,
            // Needed for server-sig-algs (RSA keys) and strict kex (CVE-2023-48795).
            russh::kex::EXTENSION_SUPPORT_AS_CLIENT,
            russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
        ]),
        key: Cow::Owned(host_key_preference(recorded)),
        ..russh::Preferred::default()
    };
    let keepalive = (!opts.keepalive.is_zero()).then_some(opts.keepalive);
    client::Config {
        preferred,
        keepalive_interval: keepalive,
        keepalive_max: 3,
        inactivity_timeout: None,
        nodelay: true,
        ..client::Config::default()
    }
}

/// ed25519 first, but key types already recorded for the host go ahead of the rest, so a host
/// known by its ecdsa or rsa key presents that key rather than one we would have to refuse.
fn host_key_preference(recorded: &[Algorithm]) -> Vec<Algorithm> {
    let is_rsa = |a: &Algorithm| matches!(a, Algorithm::Rsa { .. });
    let same_family = |a: &Algorithm, b: &Algorithm| a == b || (is_rsa(a) && is_rsa(b));
    let (known, others): (Vec<Algorithm>, Vec<Algorithm>) = russh::Preferred::DEFAULT
        .key
        .iter()
        .cloned()
        .partition(|algorithm| recorded.iter().any(|r| same_family(r, algorithm)));
    known.into_iter().chain(others).collect()
}

/// The russh handler: verifies the server's host key during the handshake.
struct HostKeyCheck {
    host: String,
    address: String,
    known_hosts_path: PathBuf,
    known: Arc<KnownHosts>,
    /// What the host is looked up under (see `known_hosts::lookup_name`).
    name: String,
    accept_new: bool,
}

#[derive(Debug)]
enum CheckError {
    Ssh(russh::Error),
    Rejected(SshError),
}

impl From<russh::Error> for CheckError {
    fn from(err: russh::Error) -> Self {
        CheckError::Ssh(err)
    }
}

impl client::Handler for HostKeyCheck {
    type Error = CheckError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_key else {
            // We never advertise certificate host-key algorithms.
            return Err(CheckError::Rejected(SshError::Protocol {
                host: self.host.clone(),
                reason: "the server presented a host certificate; only plain host keys are \
                         supported"
                    .into(),
            }));
        };
        let mut verdict = self.known.check(&self.name, key);
        if verdict == Verdict::Unknown && self.accept_new {
            let (path, name, key) = (
                self.known_hosts_path.clone(),
                self.name.clone(),
                key.clone(),
            );
            verdict = match blocking(move || known_hosts::learn(&path, &name, &key)).await {
                // `Unknown` here means the key has just been appended.
                Ok(Verdict::Unknown) => Verdict::Trusted,
                Ok(other) => other,
                Err(err) => {
                    return Err(CheckError::Rejected(SshError::KnownHostsFile {
                        path: self.known_hosts_path.clone(),
                        reason: err.to_string(),
                    }))
                }
            };
        }
        match verdict {
            Verdict::Trusted => Ok(true),
            Verdict::Unknown => Err(CheckError::Rejected(SshError::HostKeyUnknown {
                host: self.host.clone(),
                address: self.address.clone(),
                known_hosts: self.known_hosts_path.clone(),
                fingerprint: fingerprint(key),
            })),
            Verdict::Changed { line } => Err(CheckError::Rejected(SshError::HostKeyChanged {
                host: self.host.clone(),
                address: self.address.clone(),
                known_hosts: self.known_hosts_path.clone(),
                line,
                fingerprint: fingerprint(key),
            })),
            Verdict::Revoked { line } => Err(CheckError::Rejected(SshError::HostKeyRevoked {
                host: self.host.clone(),
                address: self.address.clone(),
                known_hosts: self.known_hosts_path.clone(),
                line,
                fingerprint: fingerprint(key),
            })),
        }
    }
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Parsed once per process: every connection of a run reads the same few files.
static KNOWN_HOSTS: LazyLock<FileCache<KnownHosts>> = LazyLock::new(FileCache::new);
static PRIVATE_KEYS: LazyLock<FileCache<PrivateKey>> = LazyLock::new(FileCache::new);

async fn load_private_key(path: &Path) -> Result<Arc<PrivateKey>, SshError> {
    let owned = path.to_path_buf();
    blocking(move || {
        // Checked on every use: a chmod changes neither the size nor the mtime the cache
        // goes by.
        if let Some(reason) = unprotected_key_file(&owned) {
            return Err(reason);
        }
        // A key file is a few KiB: anything else (a device, an empty or /proc file, a
        // huge file) is refused, and no more than the limit is ever read.
        let too_big = || {
            format!(
                "not a private key file (a regular file of at most {} KiB)",
                MAX_KEY_FILE_BYTES >> 10
            )
        };
        let meta = std::fs::metadata(&owned).map_err(|e| e.to_string())?;
        if !meta.is_file() || meta.len() == 0 || meta.len() > MAX_KEY_FILE_BYTES {
            return Err(too_big());
        }
        PRIVATE_KEYS
            .get(&owned, |p| {
                use std::io::Read;
                let mut text = String::new();
                std::fs::File::open(p)
                    .and_then(|f| f.take(MAX_KEY_FILE_BYTES + 1).read_to_string(&mut text))
                    .map_err(russh::keys::Error::from)?;
                if text.len() as u64 > MAX_KEY_FILE_BYTES {
                    return Err(russh::keys::Error::CouldNotReadKey);
                }
                russh::keys::decode_secret_key(&text, None)
            })
            .map_err(|err| match err {
                russh::keys::Error::KeyIsEncrypted => {
                    "the key is passphrase-protected; load it into ssh-agent instead".into()
                }
                // russh's key errors describe the problem, never the key material.
                other => other.to_string(),
            })
    })
    .await
    .map_err(|reason| SshError::KeyFile {
        path: path.to_path_buf(),
        reason,
    })
}

/// Largest private key file read (a 16384-bit RSA key in PEM is about 12 KiB).
const MAX_KEY_FILE_BYTES: u64 = 64 << 10;

/// OpenSSH's `sshkey_perm_ok`: a private key group or others may read or write is refused
/// (ssh ignores it with this message), whoever owns it. `None` when the mode is fine or
/// the file cannot be stat'ed (reading it will say why).
fn unprotected_key_file(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "UNPROTECTED PRIVATE KEY FILE: permissions {mode:04o} for '{}' are too open; \
             private key files must not be accessible by others, so this key is ignored \
             (chmod 600 it)",
            path.display()
        )
    })
}

/// The keys a connection may offer.
struct Keys {
    /// The target's own key file (`ansible_ssh_private_key_file`).
    own: Option<(PathBuf, Arc<PrivateKey>)>,
    /// Default identities, when the target has no key file.
    identities: Vec<(PathBuf, Arc<PrivateKey>)>,
    /// Default identities that exist but could not be used, and why.
    skipped: Vec<String>,
}

/// Tries the target's key file, then (if enabled) every key of the ssh-agent, then the
/// default identities.
async fn authenticate(
    handle: &mut Handle<HostKeyCheck>,
    target: &Target,
    opts: &ClientOptions,
    keys: Keys,
) -> Result<(), SshError> {
    let mut tried = Vec::new();
    if let Some((path, key)) = keys.own {
        if offer_key(handle, &target.user, &path, key, &mut tried).await {
            return Ok(());
        }
    }
    if opts.use_agent && !handle.is_closed() {
        match authenticate_with_agent(handle, &target.user).await {
            Ok(AgentOutcome::Accepted) => return Ok(()),
            Ok(AgentOutcome::Refused { offered }) => {
                tried.push(format!("ssh-agent ({offered} keys)"))
            }
            Err(reason) => tried.push(format!("ssh-agent ({reason})")),
        }
    }
    for (path, key) in keys.identities {
        if handle.is_closed() {
            break;
        }
        if offer_key(handle, &target.user, &path, key, &mut tried).await {
            return Ok(());
        }
    }
    tried.extend(keys.skipped);
    let tried = if tried.is_empty() {
        "nothing: no key file given, none of the default identities found and ssh-agent \
         disabled"
            .to_string()
    } else {
        tried.join(", ")
    };
    Err(SshError::AuthFailed {
        host: target.label.clone(),
        user: target.user.clone(),
        address: format!("{}:{}", target.address, target.port),
        tried,
    })
}

/// Offers one key; true when the server accepts it. Notes the attempt in `tried`.
async fn offer_key(
    handle: &mut Handle<HostKeyCheck>,
    user: &str,
    path: &Path,
    key: Arc<PrivateKey>,
    tried: &mut Vec<String>,
) -> bool {
    let hash = rsa_hash(handle, key.algorithm()).await;
    let key = PrivateKeyWithHashAlg::new(key, hash);
    tried.push(format!("key {}", path.display()));
    match handle.authenticate_publickey(user, key).await {
        Ok(result) => result.success(),
        Err(err) => {
            tried.push(format!("(connection ended: {err})"));
            false
        }
    }
}

enum AgentOutcome {
    Accepted,
    Refused { offered: usize },
}

async fn authenticate_with_agent(
    handle: &mut Handle<HostKeyCheck>,
    user: &str,
) -> Result<AgentOutcome, String> {
    if std::env::var_os("SSH_AUTH_SOCK").is_none() {
        return Err("SSH_AUTH_SOCK not set".into());
    }
    let mut agent = AgentClient::connect_env()
        .await
        .map_err(|err| format!("cannot connect: {err}"))?;
    // OpenSSH agents only use destination-constrained keys after a session bind; agents
    // without the extension refuse it, which is harmless.
    if let Some(binding) = handle.agent_session_binding() {
        let _ = agent.bind_session(binding, false).await;
    }
    let identities = agent
        .request_identities()
        .await
        .map_err(|err| format!("cannot list keys: {err}"))?;
    let mut offered = 0;
    for identity in identities {
        // Certificates would need `authenticate_certificate_with`; plain keys are the norm.
        let AgentIdentity::PublicKey { key, .. } = identity else {
            continue;
        };
        if handle.is_closed() {
            break;
        }
        offered += 1;
        let hash = rsa_hash(handle, key.algorithm()).await;
        match handle
            .authenticate_publickey_with(user, key, hash, &mut agent)
            .await
        {
            Ok(result) if result.success() => return Ok(AgentOutcome::Accepted),
            // A refusal or an agent that cannot sign with this key: try the next one.
            Ok(_) | Err(_) => {}
        }
    }
    Ok(AgentOutcome::Refused { offered })
}

/// The signature hash to use with an RSA key (SHA-2 when the server supports it).
async fn rsa_hash(handle: &Handle<HostKeyCheck>, algorithm: Algorithm) -> Option<HashAlg> {
    if !algorithm.is_rsa() {
        return None;
    }
    match handle.best_supported_rsa_hash().await {
        Ok(Some(advertised)) => advertised,
        // No server-sig-algs: every OpenSSH since 7.2 accepts SHA-256.
        _ => Some(HashAlg::Sha256),
    }
}

/// Runs blocking file I/O off the async worker threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking file task panicked")
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::EcdsaCurve;

    #[test]
    fn host_key_preference_puts_recorded_types_first() {
        let default = host_key_preference(&[]);
        assert_eq!(default[0], Algorithm::Ed25519);

        let ecdsa = Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        };
        let order = host_key_preference(std::slice::from_ref(&ecdsa));
        assert_eq!(order[0], ecdsa);
        assert_eq!(order[1], Algorithm::Ed25519);
        assert_eq!(order.len(), default.len());

        let order = host_key_preference(&[Algorithm::Rsa { hash: None }]);
        assert!(order[..3]
            .iter()
            .all(|a| matches!(a, Algorithm::Rsa { .. })));
    }

    #[test]
    fn signals_map_to_shell_style_status() {
        assert_eq!(signal_name_and_number(&Sig::KILL), ("KILL".to_string(), 9));
        assert_eq!(signal_name_and_number(&Sig::TERM).1, 15);
    }
}
