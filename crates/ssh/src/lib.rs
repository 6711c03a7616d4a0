//! Async SSH client for virtfleet: one authenticated connection per host, strict host-key
//! checking against an OpenSSH known_hosts file, key-file and ssh-agent authentication, and
//! `exec` of commands with stdin, captured stdout/stderr and exit status.
//!
//! ```no_run
//! # async fn demo() -> Result<(), virtfleet_ssh::SshError> {
//! use virtfleet_ssh::{ClientOptions, Session, Target};
//! let target = Target::new("compute1", "10.0.0.11", "root");
//! let session = Session::connect(&target, &ClientOptions::default()).await?;
//! let out = session.exec("sha256sum", b"data on stdin").await?;
//! assert_eq!(out.status, 0);
//! session.close().await;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod file_cache;
mod known_hosts;
mod limits;
mod pool;
mod session;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use config::{expand_home, HostConfig, SshConfig, StrictHostKeys};
pub use error::SshError;
pub use limits::{raise_open_files_limit, OpenFilesShort, FDS_BESIDE_CONNECTIONS};
pub use pool::{SessionPool, SharedSessions};
pub use session::{ExecOutput, Session};

/// One host to connect to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Inventory name: used in messages only (never looked up in known_hosts; see
    /// [`ClientOptions::host_key_aliases`]).
    pub label: String,
    /// IP address or DNS name to dial; the host is looked up in known_hosts under this name
    /// (`[address]:port` off port 22), as `ssh` does.
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Unencrypted OpenSSH private key (ed25519, ecdsa or rsa). Tried before the agent.
    /// Refused, as `ssh` does, when group or others may read or write it.
    pub key_file: Option<PathBuf>,
    /// Run every command as this user through `sudo -n` (Ansible's `become` with the sudo
    /// method; it needs a NOPASSWD rule). `None` runs commands as `user`.
    pub become_user: Option<String>,
    /// OpenSSH's `ProxyJump`: the host reached first, whose sshd opens the TCP connection to
    /// this one (a `direct-tcpip` channel). Its own host key and this one's are each checked
    /// against known_hosts; one connection to a jump host carries every target behind it.
    /// A jump host may have a jump host of its own (`ProxyJump a,b`).
    pub jump: Option<std::sync::Arc<Target>>,
    /// This host's own settings over the run's [`ClientOptions`] (from the OpenSSH client
    /// configuration).
    pub own: HostSettings,
}

/// Settings of one host that replace the run's [`ClientOptions`] ones where set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HostSettings {
    pub known_hosts: Option<PathBuf>,
    pub accept_new_host_keys: Option<bool>,
    pub connect_timeout: Option<Duration>,
    /// Key files tried (after the agent) when the target has no key file of its own.
    pub identity_files: Option<Vec<PathBuf>>,
}

/// `word` as one POSIX shell word: as it is when it holds only characters no shell treats
/// specially, else single-quoted.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:@%+,".contains(&b))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

impl Target {
    /// The user commands run as through sudo: `become_user`, unless it is the login user.
    pub fn sudo_user(&self) -> Option<&str> {
        self.become_user
            .as_deref()
            .filter(|user| *user != self.user)
    }

    /// A target on port 22 with no key file.
    pub fn new(
        label: impl Into<String>,
        address: impl Into<String>,
        user: impl Into<String>,
    ) -> Self {
        Target {
            label: label.into(),
            address: address.into(),
            port: 22,
            user: user.into(),
            key_file: None,
            become_user: None,
            jump: None,
            own: HostSettings::default(),
        }
    }
}

/// Settings shared by every connection of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// OpenSSH-format known_hosts file; host keys are checked strictly against it.
    pub known_hosts: PathBuf,
    /// Append unknown host keys to `known_hosts` instead of refusing them (a changed key is
    /// still refused). A key is recorded under the name it is looked up under, nothing else.
    pub accept_new_host_keys: bool,
    /// OpenSSH's `HostKeyAlias`, per target: a target whose [`Target::label`] is a key here is
    /// looked up in (and, with `accept_new_host_keys`, recorded into) known_hosts under the
    /// alias instead of its dialled `[address]:port`. Empty by default: no aliases. An alias
    /// must be a plain host name (letters, digits, `-._:[]%`).
    pub host_key_aliases: BTreeMap<String, String>,
    /// Also try the keys of the ssh-agent at `$SSH_AUTH_SOCK`.
    pub use_agent: bool,
    /// Key files tried, after the agent, for a target without a key file of its own, as
    /// OpenSSH tries its default identities: those that exist and load (not encrypted, not
    /// readable by others). Default: `~/.ssh/id_rsa`, `id_ecdsa`, `id_ed25519`.
    pub identity_files: Vec<PathBuf>,
    /// Budget for TCP connect + SSH handshake + authentication together.
    pub connect_timeout: Duration,
    /// Budget for one `exec`, from opening the channel to the exit status.
    pub command_timeout: Duration,
    /// Interval of SSH keepalives while the server is silent (zero disables them); three
    /// unanswered keepalives close the connection.
    pub keepalive: Duration,
    /// Commands running at once on one connection; more wait for a free slot. sshd's
    /// `MaxSessions` (default 10) caps the channels a connection may have open.
    pub max_concurrent_commands: usize,
    /// Most bytes of stdout one command may produce; beyond it the command is stopped and
    /// fails with [`SshError::OutputTooLarge`]. Default [`DEFAULT_MAX_STDOUT`].
    pub max_stdout: usize,
    /// Most bytes of stderr one command may produce. Default [`DEFAULT_MAX_STDERR`].
    pub max_stderr: usize,
    /// Connections left open by an earlier step of the same run (see [`Session::park`]):
    /// [`Session::connect`] takes one for its target instead of dialling, so a run that reads
    /// a host before planning still uses one connection per host. Shared by clones.
    pub pool: SessionPool,
}

/// Default [`ClientOptions::max_stdout`]: 64 MiB.
pub const DEFAULT_MAX_STDOUT: usize = 64 << 20;
/// Default [`ClientOptions::max_stderr`]: 1 MiB.
pub const DEFAULT_MAX_STDERR: usize = 1 << 20;

impl Default for ClientOptions {
    fn default() -> Self {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
        ClientOptions {
            known_hosts: home.join(".ssh").join("known_hosts"),
            accept_new_host_keys: false,
            use_agent: true,
            identity_files: ["id_rsa", "id_ecdsa", "id_ed25519"]
                .iter()
                .map(|name| home.join(".ssh").join(name))
                .collect(),
            connect_timeout: Duration::from_secs(15),
            command_timeout: Duration::from_secs(300),
            keepalive: Duration::from_secs(15),
            max_concurrent_commands: 8,
            host_key_aliases: BTreeMap::new(),
            max_stdout: DEFAULT_MAX_STDOUT,
            max_stderr: DEFAULT_MAX_STDERR,
            pool: SessionPool::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn a_quoted_word_is_one_word_and_never_an_assignment() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        let c = canary.display();
        for word in [
            "plain".to_string(),
            "FOO=x".to_string(),
            format!("X=1 touch {c}"),
            format!("it's $(touch {c}) `touch {c}`"),
            "-rf".to_string(),
            "two\nlines".to_string(),
            String::new(),
        ] {
            // In command position `FOO=x` unquoted would be an assignment (exit 0); quoted,
            // it is a command that does not exist (127).
            let out = std::process::Command::new("sh")
                .args(["-c", &format!(": ; {} 2>/dev/null", shell_quote(&word))])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(127), "{word:?}");
            let echoed = std::process::Command::new("sh")
                .args(["-c", &format!("printf '%s' {}", shell_quote(&word))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(echoed.stdout).unwrap(), word);
        }
        assert!(!canary.exists());
    }
}
