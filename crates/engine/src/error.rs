//! What can go wrong converging a host. Messages name what failed; none holds a secret
//! (stdin is never echoed, and remote stderr is cut to its last lines).

use virtfleet_ssh::SshError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Boxed: an SSH error is large, and every result of the engine carries this type.
    #[error(transparent)]
    Ssh(Box<SshError>),
    #[error("{what}: {source}")]
    Exec {
        what: String,
        #[source]
        source: Box<SshError>,
    },
    /// A remote script exited non-zero; `stderr` holds its last lines.
    #[error("{what} failed (exit {status}): {stderr}")]
    Remote {
        what: String,
        status: u32,
        stderr: String,
    },
    /// A script's output does not have the shape its parser expects (cut short, garbled).
    #[error("{0}: unreadable answer")]
    Garbled(String),
    #[error("{0}: the script did not run to its end")]
    Incomplete(String),
    #[error("{engine} has no container {container} on this host")]
    MissingContainer { engine: String, container: String },
    #[error(
        "{engine} is not installed on this host (kolla_container_engine: {engine}); install \
         it, or set the host's kolla_container_engine to the engine it runs"
    )]
    NoEngine { engine: String },
    #[error("{engine} cannot list containers for {who}: {detail}")]
    EngineUnusable {
        engine: String,
        who: String,
        detail: String,
    },
    #[error(
        "{dirs} not writable for {who}: log in as root, or set ansible_become with a \
         passwordless sudo rule"
    )]
    Unwritable { dirs: String, who: String },
    #[error(
        "{dir} {problem}: another user could swap files under virtfleet; make it a \
         directory owned by root and writable only by root, then run again (nothing was written)"
    )]
    UnsafeDir { dir: String, problem: String },
    #[error("{0}")]
    Merge(String),
    #[error("roll back needs a run with backups")]
    NoBackups,
    #[error("internal error (host task panicked): {0}")]
    Panicked(String),
}

impl From<SshError> for EngineError {
    fn from(error: SshError) -> Self {
        EngineError::Ssh(Box::new(error))
    }
}

impl EngineError {
    /// The host could not be reached at all (as opposed to failing once reached).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, EngineError::Ssh(e) if e.is_unreachable())
    }
}
