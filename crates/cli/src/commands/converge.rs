//! `deploy`, `reconfigure`, `genconfig` and `check`: converge every targeted host, in
//! batches when asked, and report. With several playbooks, each is a play over its own group,
//! run in order once every play has been checked and planned.

use std::collections::BTreeMap;
use std::process::ExitCode;

use virtfleet_engine::facts::Keep;
use virtfleet_engine::{HostJob, HostReport, Mode, Status};
use virtfleet_rollout::ConvergePhase;

use crate::args::{ConvergeArgs, GlobalArgs};
use crate::inputs::{clashes_across, prepare, InputErrors, Prepared};
use crate::output::{self, Progress};

pub async fn run(
    global: &GlobalArgs,
    command: &'static str,
    mode: Mode,
    args: &ConvergeArgs,
) -> Result<ExitCode, InputErrors> {
    let read_only = matches!(mode, Mode::Check { .. });
    // A downgrade is refused for every command that writes; `check` only shows.
    let allow_downgrade = args.allow_downgrade || read_only;
    // Bad input in any play is exit 2 before any host changes.
    // One play in one batch: a host the facts round trip finds nothing to do on is not
    // reached again while that probe is fresh, so its connection is not kept. Later batches
    // probe anew, and a later play's hosts wait for the plays before it (their probes go
    // stale): those keep every connection.
    let plays = global.plays();
    let keep = match (args.batches.serial, plays.len()) {
        (None, 1) => Keep::WithWorkLeft,
        _ => Keep::Every,
    };
    let mut prepared = Vec::new();
    for play in plays {
        let ready = prepare(&play, keep).await?;
        prepared.push((play, ready));
    }
    check_identities(&prepared)?;
    // The plays that serve TLS first (a host's TLS server before the services that only dial
    // it, whatever the command line's order); otherwise in the order given.
    prepared.sort_by_key(|(_, p)| p.jobs.iter().all(|j| j.plan.tls.is_none()));
    let mut plays = Vec::new();
    for (play, ready) in prepared {
        let phases =
            crate::transition::phases(ready, &play, allow_downgrade, args.one_pass).await?;
        plays.push((play, phases));
    }
    let several = plays.len() > 1;
    let mut reports: BTreeMap<String, HostReport> = BTreeMap::new();
    for (play, phases) in plays {
        if several {
            output::play_header(command, &play);
        }
        let phases = first_phase_only(command, mode, phases);
        let options = play.rollout(phases[0].hosts.len(), &args.batches);
        let progress = Progress::new(command, global.verbosity(), false);
        let play_reports = virtfleet_rollout::converge(phases, mode, &options, &progress).await;
        let failed = play_reports
            .values()
            .any(|r| matches!(r.status, Status::Failed | Status::Unreachable));
        output::combine(&mut reports, play_reports);
        // A later play may build on this one (a host's TLS server before what dials it).
        if failed && several && !read_only {
            println!("{command}: a host failed; the playbooks after this one do not run");
            break;
        }
    }
    if let Mode::Check { diff: true } = mode {
        for (host, report) in &reports {
            for diff in &report.diffs {
                println!("# {host}\n{}", crate::output::terminal_safe(diff));
            }
        }
    }
    Ok(output::finish(global, command, &reports))
}

/// Hosts of different plays must not claim one name or address (each play checks its own).
fn check_identities(plays: &[(GlobalArgs, Prepared)]) -> Result<(), InputErrors> {
    let Some((_, first)) = plays.first().filter(|_| plays.len() > 1) else {
        return Ok(());
    };
    let groups: Vec<&str> = plays
        .iter()
        .map(|(_, p)| p.inputs.playbook.hosts.as_str())
        .collect();
    let jobs: Vec<&HostJob> = plays.iter().flat_map(|(_, p)| &p.jobs).collect();
    clashes_across(&first.inputs.inventory, &groups, &jobs)
}

/// A transition's phases as `mode` may run them: genconfig writes the first only (its later
/// phases need restarts in between), check shows the first.
fn first_phase_only(
    command: &str,
    mode: Mode,
    mut phases: Vec<ConvergePhase>,
) -> Vec<ConvergePhase> {
    if phases.len() > 1 {
        let first = phases[0].title.clone().unwrap_or_default();
        match mode {
            Mode::Converge => {}
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
    phases
}
