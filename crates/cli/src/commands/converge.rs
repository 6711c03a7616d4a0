//! `deploy`, `reconfigure`, `genconfig` and `check`: converge every targeted host, in
//! batches when asked, and report.

use std::process::ExitCode;

use virtfleet_engine::Mode;

use crate::args::{ConvergeArgs, GlobalArgs};
use crate::inputs::{prepare, InputErrors};
use crate::output::{self, Progress};

pub async fn run(
    global: &GlobalArgs,
    command: &'static str,
    mode: Mode,
    args: &ConvergeArgs,
) -> Result<ExitCode, InputErrors> {
    let prepared = prepare(global).await?;
    let read_only = matches!(mode, Mode::Check { .. });
    // A downgrade is refused for every command that writes; `check` only shows.
    let allow_downgrade = args.allow_downgrade || read_only;
    let mut phases =
        crate::transition::phases(prepared, global, allow_downgrade, args.one_pass).await?;
    if phases.len() > 1 {
        let first = phases[0].title.clone().unwrap_or_default();
        match mode {
            Mode::Converge => {}
            // Files applied by some later restart: only the first phase is safe at any time.
            Mode::WriteOnly => {
                eprintln!(
                    "warning: {command}: writes {first} only (its later phases need restarts \
                     in between: deploy goes on from there; --one-pass writes the end state)"
                );
                phases.truncate(1);
            }
            Mode::Check { .. } => {
                println!(
                    "{command}: deploy would go in {} phases; showing {first}",
                    phases.len()
                );
                phases.truncate(1);
            }
        }
    }
    let options = global.rollout(phases[0].hosts.len(), &args.batches);
    let progress = Progress::new(command, global.verbosity(), false);
    let reports = virtfleet_rollout::converge(phases, mode, &options, &progress).await;
    if let Mode::Check { diff: true } = mode {
        for (host, report) in &reports {
            for diff in &report.diffs {
                println!("# {host}\n{}", crate::output::terminal_safe(diff));
            }
        }
    }
    Ok(output::finish(global, command, &reports))
}
