//! `deploy`, `reconfigure`, `genconfig` and `check`: converge every targeted host, in
//! batches when asked, and report.

use std::process::ExitCode;

use virtfleet_engine::Mode;
use virtfleet_rollout::ConvergePhase;

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
    // Only a run that restarts can move a fleet in phases; the others see the plan itself.
    let phases = match mode {
        Mode::Converge => crate::transition::phases(prepared, global, args.allow_downgrade).await?,
        _ => vec![ConvergePhase {
            title: None,
            hosts: prepared.entries(),
        }],
    };
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
