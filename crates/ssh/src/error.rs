use std::path::PathBuf;
use std::time::Duration;

/// Why connecting to a host or running a command failed.
///
/// `host` is always the target's inventory label; messages are meant for operators and never
/// contain key material, command input or command output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// The TCP connection could not be made (refused, no route, name lookup failed, or no
    /// answer within the connect timeout). Nothing was sent to the host.
    #[error("{host}: cannot reach {address}: {reason}")]
    Unreachable {
        host: String,
        /// `address:port` as dialled.
        address: String,
        reason: String,
    },

    /// The host's key is not in the known_hosts file.
    #[error(
        "{host}: host key {fingerprint} of {address} is not in {}; add it there \
         (e.g. `ssh-keyscan -p PORT ADDRESS >> FILE` after checking the fingerprint) \
         or pass --accept-new-host-keys",
        known_hosts.display()
    )]
    HostKeyUnknown {
        host: String,
        address: String,
        known_hosts: PathBuf,
        /// SHA256 fingerprint of the key the server presented.
        fingerprint: String,
    },

    /// The known_hosts file records a different key for this host: possibly a
    /// man-in-the-middle, or a reinstalled host. Never accepted automatically.
    #[error(
        "{host}: HOST KEY CHANGED for {address}: the server presented {fingerprint}, but {}:{line} \
         records a different key; this may be a man-in-the-middle attack. If the host was \
         reinstalled, remove that line and connect again",
        known_hosts.display()
    )]
    HostKeyChanged {
        host: String,
        address: String,
        known_hosts: PathBuf,
        /// 1-based line of the first entry recording another key for this host.
        line: usize,
        fingerprint: String,
    },

    /// The presented key is marked `@revoked` in the known_hosts file.
    #[error(
        "{host}: host key {fingerprint} of {address} is revoked at {}:{line}",
        known_hosts.display()
    )]
    HostKeyRevoked {
        host: String,
        address: String,
        known_hosts: PathBuf,
        line: usize,
        fingerprint: String,
    },

    /// The known_hosts file could not be read or appended to.
    #[error("cannot use known_hosts file {}: {reason}", path.display())]
    KnownHostsFile { path: PathBuf, reason: String },

    /// The private key file could not be read or decoded.
    #[error("cannot use private key {}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },

    /// The server accepted none of our credentials.
    #[error("{host}: authentication failed for {user}@{address} (tried: {tried})")]
    AuthFailed {
        host: String,
        user: String,
        address: String,
        /// Which credentials were offered, e.g. `key /root/.ssh/id_ed25519, ssh-agent (2 keys)`.
        tried: String,
    },

    /// An operation did not finish in time: `operation` is e.g. `SSH handshake` or `command`.
    #[error("{host}: {operation} timed out after {after:?}")]
    Timeout {
        host: String,
        operation: String,
        after: Duration,
    },

    /// The connection broke after it was established.
    #[error("{host}: connection lost: {reason}")]
    ConnectionLost { host: String, reason: String },

    /// The target cannot be used as given (e.g. a host key alias that is not a plain host
    /// name). Nothing was sent to the host.
    #[error("{host}: {reason}")]
    InvalidTarget { host: String, reason: String },

    /// A command wrote more than the configured limit (`ClientOptions::max_stdout` or
    /// `max_stderr`) to one stream; it was stopped (KILL requested, channel closed) and its
    /// output dropped instead of read further into memory.
    #[error(
        "{host}: the command wrote more than {} to {stream}, the limit for one command; it \
         was stopped and its output discarded",
        byte_size(*limit)
    )]
    OutputTooLarge {
        host: String,
        /// `stdout` or `stderr`.
        stream: &'static str,
        limit: usize,
    },

    /// The server or the SSH layer misbehaved (failed handshake, refused channel or exec, ...).
    #[error("{host}: SSH protocol error: {reason}")]
    Protocol { host: String, reason: String },
}

impl SshError {
    /// True when the host could not be reached at all (no TCP connection). Callers use this to
    /// tell "host down" apart from failures that need an operator's attention.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SshError::Unreachable { .. })
    }

    /// True for every host-key verification failure (unknown, changed or revoked key).
    pub fn is_host_key_problem(&self) -> bool {
        matches!(
            self,
            SshError::HostKeyUnknown { .. }
                | SshError::HostKeyChanged { .. }
                | SshError::HostKeyRevoked { .. }
        )
    }

    /// True for timeouts (handshake, authentication or command).
    pub fn is_timeout(&self) -> bool {
        matches!(self, SshError::Timeout { .. })
    }
}

/// `64 MiB`, `512 KiB` or `1000 bytes`: the unit the operator most likely configured.
fn byte_size(bytes: usize) -> String {
    match bytes {
        0 => "0 bytes".into(),
        b if b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}
