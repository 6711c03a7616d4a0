//! `deploy`, `reconfigure`, `genconfig` and `check`: converge every targeted host, in
//! batches when asked, and report.

use std::process::ExitCode;

use virtfleet_engine::Mode;

use crate::args::{Batches, GlobalArgs};
use crate::inputs::{prepare, InputErrors};
use crate::output::{self, Progress};

pub async fn run(
    global: &GlobalArgs,
    command: &'static str,
    mode: Mode,
    batches: &Batches,
) -> Result<ExitCode, InputErrors> {
    let hosts = prepare(global).await?.entries();
    let options = global.rollout(hosts.len(), batches);
    let progress = Progress::new(command, global.verbosity(), false);
    let reports = virtfleet_rollout::converge(hosts, mode, &options, &progress).await;
    if let Mode::Check { diff: true } = mode {
        for (host, report) in &reports {
            for diff in &report.diffs {
                println!("# {host}\n{}", crate::output::terminal_safe(diff));
            }
        }
    }
    Ok(output::finish(global, command, &reports))
}
