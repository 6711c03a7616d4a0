//! `virtfleet`: converge libvirt TLS + SASL on Kolla compute hosts over SSH. This crate is
//! the command line only: clap, loading the inputs, and output; the rollout itself lives in
//! `virtfleet-rollout`.

mod args;
mod commands;
mod inputs;
mod limits;
mod manpage;
mod output;
mod parallel;
mod transition;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use virtfleet_engine::Mode;

use args::{ConvergeArgs, GlobalArgs};
use commands::{audit, certs, converge, rotate};

/// Exit status for invalid input, before any host is contacted.
const EXIT_INPUT: u8 = 2;

#[derive(Parser)]
#[command(
    name = "virtfleet",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("VIRTFLEET_REVISION"), ")"),
    about = "Roll out and rotate libvirt TLS + SASL on Kolla compute hosts over SSH",
    long_about = "Roll out and rotate libvirt TLS + SASL on Kolla compute hosts over SSH.\n\n\
        virtfleet reads what a kolla-ansible operator already has: the Ansible inventory (-i), \
        the config directory (--configdir, default /etc/kolla: globals.yml, passwords.yml and \
        the certificates under config/nova/nova-libvirt/<host>/, then \
        config/nova/nova-libvirt/), and the OpenSSH client configuration (-F, default \
        ~/.ssh/config). It renders each host's files, pushes them over SSH (one login per \
        host and run while the open-files limit allows), every host's change staged and \
        swapped in whole, and restarts or reloads \
        nova_libvirt and nova_compute only where their files changed. Host keys are checked \
        against known_hosts; secrets travel on stdin, never on a command line.",
    after_long_help = manpage::after_help()
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Converge configuration, certificates and SASL; restart or reload what changed.
    Deploy(ConvergeArgs),
    /// Same as deploy: re-render after a globals change and apply what changed.
    Reconfigure(ConvergeArgs),
    /// Write the files to the hosts but never restart (a later deploy restarts what is stale).
    Genconfig(ConvergeArgs),
    /// Contact the hosts, change nothing, report what would change and restart.
    Check {
        /// Show unified diffs of changed files (secrets redacted).
        #[arg(long)]
        diff: bool,
    },
    /// Read-only OSSN-0007 audit: what each host's libvirtd allows, with a live probe.
    Audit(audit::AuditArgs),
    /// Rotate certificates in batches, each host proven healthy before the next batch.
    Rotate(rotate::RotateArgs),
    /// Certificates: validate, report expiry, run a CA, issue host pairs.
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell) for this command line.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), made from this command line's own definition.
    Manpage {
        /// Write virtfleet.1 and a page for every subcommand (virtfleet-deploy.1, ...) into
        /// this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    // Output piped into `head` and closed early ends the run quietly, as for any Unix tool,
    // instead of a panic on the next print (Rust ignores SIGPIPE by default).
    // SAFETY: signal(2) with SIG_DFL, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // Made from the definition above, so they never disagree with the binary.
    match &cli.command {
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "virtfleet", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Manpage { dir } => {
            let command = <Cli as clap::CommandFactory>::command();
            let written = match dir {
                Some(dir) => {
                    manpage::write_all(command, dir).map_err(|e| format!("{}: {e}", dir.display()))
                }
                None => manpage::print(command).map_err(|e| e.to_string()),
            };
            return match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let global = &cli.global;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Deploy(a) => converge::run(global, "deploy", Mode::Converge, &a).await,
            Command::Reconfigure(a) => {
                converge::run(global, "reconfigure", Mode::Converge, &a).await
            }
            Command::Genconfig(a) => converge::run(global, "genconfig", Mode::WriteOnly, &a).await,
            Command::Check { diff } => {
                let args = ConvergeArgs::default();
                converge::run(global, "check", Mode::Check { diff }, &args).await
            }
            Command::Certs { command } => certs::run(global, command).await,
            Command::Rotate(args) => rotate::run(global, args).await,
            Command::Audit(args) => audit::run(global, args).await,
            // Answered above, before any runtime.
            Command::Completions { .. } | Command::Manpage { .. } => Ok(ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(errors) => {
            for line in errors.lines() {
                // Some carry a host's own words (its facts' errors): never raw to the terminal.
                eprintln!("error: {}", output::terminal_safe(&line));
            }
            ExitCode::from(EXIT_INPUT)
        }
    }
}
