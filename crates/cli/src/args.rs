//! Options every command shares, and the rollout options they turn into.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use virtfleet_rollout::Serial;
use virtfleet_ssh::ClientOptions;

use crate::output::Verbosity;

/// Options valid before or after the subcommand.
#[derive(Args, Clone)]
pub struct GlobalArgs {
    /// Ansible inventory (INI or YAML); group_vars/ and host_vars/ beside it are read.
    #[arg(short = 'i', long, global = true, default_value = "multinode")]
    pub inventory: PathBuf,
    /// Kolla config directory: globals.yml, passwords.yml, config/nova/...
    #[arg(
        long,
        global = true,
        env = "VIRTFLEET_CONFIGDIR",
        default_value = "/etc/kolla"
    )]
    pub configdir: PathBuf,
    /// Playbook to apply (default: the shipped playbooks/kolla.yml). Repeat it to apply
    /// several in turn, each to its own `hosts:` group (a fleet mixing Kolla's containers and
    /// plain libvirt hosts): all are checked before any host changes.
    #[arg(long, global = true)]
    pub playbook: Vec<PathBuf>,
    /// Only these hosts: names, groups, globs; comma-separated; `!x` excludes, `&x` intersects.
    #[arg(short = 'l', long, global = true)]
    pub limit: Option<String>,
    /// Hosts worked on at once (default: all, up to 100).
    #[arg(short = 'f', long, global = true, value_parser = at_least_one)]
    pub forks: Option<usize>,
    /// known_hosts file checked strictly against each host's key.
    #[arg(long, global = true)]
    pub known_hosts: Option<PathBuf>,
    /// Add unknown host keys to known_hosts instead of failing (changed keys still fail).
    #[arg(long, global = true)]
    pub accept_new_host_keys: bool,
    /// SSH connect timeout in seconds (TCP, handshake and login) [default: the OpenSSH
    /// configuration's ConnectTimeout for the host, else 15].
    #[arg(long, global = true)]
    pub connect_timeout: Option<u64>,
    /// OpenSSH client configuration to read (`ssh -F`): HostName, User, Port, IdentityFile,
    /// ProxyJump, StrictHostKeyChecking, UserKnownHostsFile, ConnectTimeout per `Host`,
    /// and its Include files (Match blocks are not read); inventory variables win over it,
    /// as with Ansible [default: ~/.ssh/config if it exists; `none` reads none].
    #[arg(short = 'F', long, global = true, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Write a JSON report of every host's result to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Say what changed and why on every host.
    #[arg(short = 'v', long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print only failures and the summary.
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
    /// Connections opened to gather facts, left open for the rest of the run.
    #[arg(skip)]
    pub sessions: virtfleet_ssh::SessionPool,
    /// Every playbook of the run, when this is one play of several (see [`GlobalArgs::plays`]):
    /// each host lets in the client certificates of all their groups.
    #[arg(skip)]
    pub fleet_playbooks: Vec<PathBuf>,
}

impl GlobalArgs {
    /// The run as plays: one per `--playbook`, in order (itself with none or one).
    pub fn plays(&self) -> Vec<GlobalArgs> {
        if self.playbook.len() <= 1 {
            return vec![self.clone()];
        }
        self.playbook
            .iter()
            .map(|path| GlobalArgs {
                playbook: vec![path.clone()],
                fleet_playbooks: self.playbook.clone(),
                ..self.clone()
            })
            .collect()
    }

    pub fn verbosity(&self) -> Verbosity {
        if self.quiet {
            Verbosity::Quiet
        } else if self.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        }
    }

    pub fn ssh_options(&self) -> ClientOptions {
        let mut options = ClientOptions::default();
        if let Some(path) = &self.known_hosts {
            options.known_hosts = path.clone();
        }
        options.accept_new_host_keys = self.accept_new_host_keys;
        options.connect_timeout = Duration::from_secs(self.connect_timeout.unwrap_or(15));
        options.pool = self.sessions.clone();
        options
    }

    /// Hosts worked on at once out of `hosts`.
    pub fn forks(&self, hosts: usize) -> usize {
        self.forks.unwrap_or(hosts.min(100)).max(1)
    }

    /// How a rollout over `hosts` works through them.
    pub fn rollout(&self, hosts: usize, batches: &Batches) -> virtfleet_rollout::Options {
        virtfleet_rollout::Options {
            forks: self.forks(hosts),
            ssh: self.ssh_options(),
            serial: batches.serial,
            max_fail_percentage: batches.max_fail_percentage,
            pause: batches.pause.map(Duration::from_secs),
        }
    }
}

/// deploy and reconfigure: batches, and the way back from a transition.
#[derive(Args, Debug, Clone, Default)]
pub struct ConvergeArgs {
    #[command(flatten)]
    pub batches: Batches,
    /// Let a run go back across a transition the playbook guards (e.g. libvirt from TLS to
    /// TCP), in one pass.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Go to the end state in one pass even while a transition is under way (a maintenance
    /// window with no migrations: hosts switch as they are reached).
    #[arg(long)]
    pub one_pass: bool,
}

/// Batched rollout (kolla-ansible's `kolla_serial`), for every command that changes hosts.
#[derive(Args, Debug, Clone, Default)]
pub struct Batches {
    /// Hosts per batch, a number or a percentage of the targeted hosts; each batch finishes
    /// before the next starts. Default: every host at once (bounded by --forks); rotate: 1.
    #[arg(long, value_parser = Serial::parse)]
    pub serial: Option<Serial>,
    /// Stop once more than this percentage of the hosts attempted so far failed; the hosts
    /// of later batches are skipped, untouched.
    #[arg(long, default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_fail_percentage: u8,
    /// Wait this long between batches.
    #[arg(long, value_name = "SECONDS")]
    pub pause: Option<u64>,
}

/// A count that must be 1 or more (`--forks 0` would work on no host).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
