//! `virtfleet`: converge libvirt TLS + SASL on Kolla compute hosts over SSH.

mod certs;
mod inputs;
mod output;
mod parallel;
mod rotate;
mod serial;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use virtfleet_engine::{HostJob, HostReport, Mode, RunOptions, Status};
use virtfleet_ssh::ClientOptions;

use inputs::{InputErrors, Inputs, PreparedHost};
use output::{Summary, Verbosity};

/// Exit status for invalid input, before any host is contacted.
const EXIT_INPUT: u8 = 2;

#[derive(Parser)]
#[command(
    name = "virtfleet",
    version,
    about = "Roll out and rotate libvirt TLS + SASL on Kolla compute hosts over SSH"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

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
    /// Playbook to apply (default: the shipped nova-libvirt playbook).
    #[arg(long, global = true)]
    pub playbook: Option<PathBuf>,
    /// Only these hosts: names, groups, globs; comma-separated; `!x` excludes, `&x` intersects.
    #[arg(short = 'l', long, global = true)]
    pub limit: Option<String>,
    /// Hosts worked on at once (default: all, up to 100).
    #[arg(short = 'f', long, global = true)]
    pub forks: Option<usize>,
    /// known_hosts file checked strictly against each host's key.
    #[arg(long, global = true)]
    pub known_hosts: Option<PathBuf>,
    /// Add unknown host keys to known_hosts instead of failing (changed keys still fail).
    #[arg(long, global = true)]
    pub accept_new_host_keys: bool,
    /// SSH connect timeout in seconds (TCP, handshake and login).
    #[arg(long, global = true, default_value_t = 15)]
    pub connect_timeout: u64,
    /// Write a JSON report of every host's result to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Say what changed and why on every host.
    #[arg(short = 'v', long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print only failures and the summary.
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Converge configuration, certificates and SASL; restart or reload what changed.
    Deploy(serial::RolloutArgs),
    /// Same as deploy: re-render after a globals change and apply what changed.
    Reconfigure(serial::RolloutArgs),
    /// Write the files to the hosts but never restart (a later deploy restarts what is stale).
    Genconfig(serial::RolloutArgs),
    /// Contact the hosts, change nothing, report what would change and restart.
    Check {
        /// Show unified diffs of changed files (secrets redacted).
        #[arg(long)]
        diff: bool,
    },
    /// Rotate certificates in batches, each host proven healthy before the next batch.
    Rotate(rotate::RotateArgs),
    /// Certificates: validate, report expiry, run a CA, issue host pairs.
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match cli.command {
        Command::Deploy(rollout) => {
            runtime.block_on(converge(&cli.global, "deploy", Mode::Converge, rollout))
        }
        Command::Reconfigure(rollout) => runtime.block_on(converge(
            &cli.global,
            "reconfigure",
            Mode::Converge,
            rollout,
        )),
        Command::Genconfig(rollout) => {
            runtime.block_on(converge(&cli.global, "genconfig", Mode::WriteOnly, rollout))
        }
        Command::Check { diff } => runtime.block_on(converge(
            &cli.global,
            "check",
            Mode::Check { diff },
            serial::RolloutArgs::default(),
        )),
        Command::Certs { command } => runtime.block_on(certs::run(&cli.global, command)),
        Command::Rotate(args) => runtime.block_on(rotate::run(&cli.global, args)),
    };
    match result {
        Ok(code) => code,
        Err(InputErrors(errors)) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            ExitCode::from(EXIT_INPUT)
        }
    }
}

impl GlobalArgs {
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
        options.connect_timeout = Duration::from_secs(self.connect_timeout);
        options
    }

    pub fn forks(&self, hosts: usize) -> usize {
        self.forks.unwrap_or(hosts.min(100)).max(1)
    }
}

/// The user to log in as when the inventory names none (as ssh does).
pub fn default_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

/// Load, plan and check everything; only then contact the hosts.
pub fn prepare(global: &GlobalArgs) -> Result<Vec<PreparedHost>, InputErrors> {
    let inputs = Inputs::load(global)?;
    let hosts = inputs.plan_all(&default_user())?;
    let findings = inputs::check_certs(&hosts, certs::DEFAULT_WARN_DAYS);
    let (errors, warnings): (Vec<_>, Vec<_>) = findings.into_iter().partition(|f| f.is_error());
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if !errors.is_empty() {
        return Err(InputErrors(errors.iter().map(|e| e.to_string()).collect()));
    }
    Ok(hosts)
}

async fn converge(
    global: &GlobalArgs,
    command: &str,
    mode: Mode,
    rollout: serial::RolloutArgs,
) -> Result<ExitCode, InputErrors> {
    let hosts = prepare(global)?;
    let mut pending: Vec<HostJob> = hosts.into_iter().map(PreparedHost::into_job).collect();
    let total = pending.len();
    let size = rollout.serial.map_or(total, |s| s.batch_size(total)).max(1);
    let batches = total.div_ceil(size);
    let (mut attempted, mut failed) = (0, 0);
    let mut reports = std::collections::BTreeMap::new();
    for number in 1..=batches {
        let rest = pending.split_off(size.min(pending.len()));
        let batch = std::mem::replace(&mut pending, rest);
        if rollout.over_budget(failed, attempted) {
            for job in batch {
                reports.insert(job.target.label, HostReport::new(Status::Skipped));
            }
            continue;
        }
        let names: Vec<&str> = batch.iter().map(|j| j.target.label.as_str()).collect();
        if batches > 1 && global.verbosity() > Verbosity::Quiet {
            println!("batch {number}/{batches}: {}", names.join(", "));
        }
        let options = RunOptions {
            mode,
            forks: global.forks(batch.len()),
            ssh: global.ssh_options(),
        };
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let progress = tokio::spawn(output::show_progress(
            receiver,
            batch.len(),
            global.verbosity(),
        ));
        let batch_reports = virtfleet_engine::run(batch, &options, sender).await;
        progress.await.expect("progress task");
        attempted += batch_reports.len();
        failed += batch_reports
            .values()
            .filter(|r| !matches!(r.status, Status::Ok | Status::Changed))
            .count();
        reports.extend(batch_reports);
        if number < batches && rollout.over_budget(failed, attempted) {
            println!(
                "{command}: stopping: {failed} of {attempted} hosts attempted failed (more than \
                 {}%); the remaining hosts are skipped, untouched",
                rollout.max_fail_percentage
            );
        }
    }
    if let Mode::Check { diff: true } = mode {
        for (host, report) in &reports {
            for diff in &report.diffs {
                println!("# {host}\n{diff}");
            }
        }
    }
    let summary = Summary::of(&reports);
    println!("{command}: {}", summary.line());
    if let Some(path) = &global.report {
        if let Err(e) = output::write_report(path, command, &reports) {
            eprintln!("error: cannot write report {}: {e}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(if summary.all_good() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
