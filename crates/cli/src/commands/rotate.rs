//! `virtfleet rotate`: certificate rotation in batches, each host proven healthy before the
//! next batch (see `virtfleet_rollout::rotate`), with a CA rollover in three fleet-wide
//! phases when the CA changes.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;
use virtfleet_engine::facts::Keep;
use virtfleet_engine::Mode;
use virtfleet_engine::{HostJob, HostReport, Status};
use virtfleet_rollout::{rollover, ConvergePhase, Entry, Phase, Serial};

use crate::args::{Batches, GlobalArgs};
use crate::inputs::{clashes_across, prepare, InputErrors, Prepared};
use crate::output::{self, Progress, Summary};

#[derive(Args)]
pub struct RotateArgs {
    #[command(flatten)]
    batches: Batches,
    /// Restart the TLS service instead of reloading its certificates live.
    #[arg(long)]
    restart: bool,
    /// Rotate without asking for confirmation of the plan.
    #[arg(long)]
    yes: bool,
}

pub async fn run(global: &GlobalArgs, args: RotateArgs) -> Result<ExitCode, InputErrors> {
    if !args.yes && !std::io::stdin().is_terminal() {
        return Err(InputErrors(vec![
            "rotate: no terminal to confirm the plan on; pass --yes to rotate without asking"
                .into(),
        ]));
    }
    // Every play planned (its hosts read) before any host changes.
    let plays = global.plays();
    let several = plays.len() > 1;
    let mut planned = Vec::new();
    for play in &plays {
        match plan(play, &args, several).await? {
            Ok(phases) => planned.push((play, phases)),
            Err(code) => return Ok(code),
        }
    }
    if several {
        // Hosts of different plays must not claim one name or address either.
        let groups: Vec<&str> = planned.iter().map(|(_, p)| p.group.as_str()).collect();
        let jobs: Vec<&HostJob> = planned.iter().flat_map(|(_, p)| p.jobs()).collect();
        clashes_across(&planned[0].1.inventory, &groups, &jobs)?;
    }
    let across = |p: &Planned| (p.phases.len() > 1 || p.widened) && (several || p.spans_groups);
    if planned.iter().any(|(_, p)| across(p)) {
        return Err(InputErrors::one(
            "rotate: a CA change or new client certificate subjects over several groups \
             (several playbooks, or virtfleet_fleet_groups) is not coordinated across them yet \
             (one group's hosts would refuse the other's part-way); across groups, rotate \
             leaves under the same CA and subjects only",
        ));
    }
    // The plays that serve TLS first: a host's TLS server has its new pair before its
    // clients (a play serving none) get the matching client pair.
    planned.sort_by_key(|(_, p)| p.deploy.is_some());
    // Every play's plan, confirmed once, before any host changes.
    for (play, planned) in &planned {
        if several {
            output::play_header("rotate", play);
        }
        match &planned.deploy {
            Some(entries) => println!(
                "rotate: {} hosts serve no TLS here: their files are deployed, in batches of {}",
                entries.len(),
                planned.serial.batch_size(entries.len())
            ),
            None => {
                let size = planned.serial.batch_size(planned.phases[0].jobs.len());
                show_plan(&planned.phases, size, &args);
            }
        }
    }
    if !args.yes && !confirmed() {
        println!("rotate: not confirmed; nothing changed");
        return Ok(ExitCode::FAILURE);
    }
    let mut reports = BTreeMap::new();
    for (play, planned) in planned {
        if several {
            output::play_header("rotate", play);
        }
        let progress = Progress::new("rotate", global.verbosity(), true);
        let play_reports = match planned.deploy {
            Some(entries) => {
                let phase = ConvergePhase {
                    title: None,
                    hosts: entries,
                    verify: false,
                    verify_before: false,
                };
                let options = &planned.options;
                virtfleet_rollout::converge(vec![phase], Mode::Converge, options, &progress).await
            }
            None => {
                let options = &planned.options;
                let done =
                    virtfleet_rollout::rotate(&planned.phases, args.restart, options, &progress)
                        .await;
                show_outcome(&done);
                done
            }
        };
        let failed = !Summary::of(&play_reports).all_good();
        output::combine(&mut reports, play_reports);
        if failed && several {
            println!("rotate: a host failed; the playbooks after this one do not run");
            break;
        }
    }
    Ok(output::finish(global, "rotate", &reports))
}

/// One play's rotation, planned from what its hosts hold.
struct Planned {
    /// Set for a play of several whose hosts serve no TLS (a client beside the
    /// host's own TLS server): its files (new client certificates) are deployed instead.
    deploy: Option<Vec<Entry>>,
    phases: Vec<Phase>,
    /// Client certificate subjects change (old ones let in until the last phase).
    widened: bool,
    /// Hosts of other groups are peers of these (see `Inputs::other_groups`).
    spans_groups: bool,
    serial: Serial,
    options: virtfleet_rollout::Options,
    /// The play's inventory group, and the inventory (for checks across plays).
    group: String,
    inventory: virtfleet_inventory::Inventory,
}

impl Planned {
    /// Every host's job in the plan.
    fn jobs(&self) -> Vec<&HostJob> {
        let rotated = self.phases.first().into_iter().flat_map(|p| &p.jobs);
        let deployed = self.deploy.iter().flatten().filter_map(|e| match e {
            Entry::Job(job) => Some(job.as_ref()),
            Entry::Failed { .. } => None,
        });
        rotated.chain(deployed).collect()
    }
}

/// Plans one play's rotation; `Ok(Err(code))`: stop with that exit code (hosts unreached).
async fn plan(
    global: &GlobalArgs,
    args: &RotateArgs,
    several: bool,
) -> Result<Result<Planned, ExitCode>, InputErrors> {
    // Every host's connection: its converge probes again (for backups too).
    let prepared = prepare(global, Keep::Every).await?;
    let (mut inputs, jobs, unreachable) = (prepared.inputs, prepared.jobs, prepared.not_reached);
    if !unreachable.is_empty() {
        // Every host must take part in a rotation's phases: none is started without one.
        for (host, report) in &unreachable {
            let why = report.error.as_deref().unwrap_or_default();
            eprintln!("error: {host}: {}", output::terminal_safe(why));
        }
        println!(
            "rotate: {} host(s) could not be reached; nothing changed",
            unreachable.len()
        );
        return Ok(Err(ExitCode::FAILURE));
    }
    if several && jobs.iter().all(|j| j.plan.tls.is_none()) {
        let mut batches = args.batches.clone();
        let serial = *batches.serial.get_or_insert(Serial::Hosts(1));
        return Ok(Ok(Planned {
            deploy: Some(Prepared::entries_of(jobs, unreachable, prepared.order)),
            phases: Vec::new(),
            widened: false,
            spans_groups: false,
            serial,
            options: global.rollout(inputs.hosts.len(), &batches),
            group: inputs.playbook.hosts.clone(),
            inventory: inputs.inventory.clone(),
        }));
    }
    let without_tls: Vec<String> = jobs
        .iter()
        .filter(|j| j.plan.tls.is_none())
        .map(|j| {
            format!(
                "{}: rotate needs TLS on, with certificates managed (the playbook's tls.when)",
                j.target.label
            )
        })
        .collect();
    if !without_tls.is_empty() {
        return Err(InputErrors(without_tls));
    }
    let mut batches = args.batches.clone();
    let serial = *batches.serial.get_or_insert(Serial::Hosts(1));
    let options = global.rollout(jobs.len(), &batches);
    let progress = Progress::new("rotate", global.verbosity(), true);
    let forks = global.forks(usize::MAX);
    let reading = rollover::read(&jobs, &options.ssh, forks, &progress).await;
    for ca in rollover::partly_trusted_cas(&jobs, &reading.held) {
        eprintln!(
            "warning: a CA not in the config directory is not carried to the other hosts: {}",
            output::terminal_safe(&ca)
        );
    }
    let widened = widened(&mut inputs, &jobs, &reading)?;
    // Peers outside --limit may still present their old subjects: they stay let in.
    let left_out = inputs.group.iter().any(|h| !inputs.hosts.contains(h));
    let is_widened = widened.is_some();
    let jobs = match (&widened, left_out) {
        (Some(both), true) => {
            println!(
                "rotate: --limit leaves out hosts of group {}: the old subjects stay let in \
                 (rotate the whole group to drop them)",
                inputs.playbook.hosts
            );
            both.clone()
        }
        _ => jobs,
    };
    let phases = rollover::plan(jobs, widened, &reading, &options.ssh, forks, &progress).await;
    Ok(Ok(Planned {
        deploy: None,
        phases,
        widened: is_widened,
        spans_groups: !inputs.other_groups.is_empty(),
        group: inputs.playbook.hosts.clone(),
        inventory: inputs.inventory.clone(),
        serial,
        options,
    }))
}

fn show_plan(phases: &[Phase], size: usize, args: &RotateArgs) {
    let hosts = phases[0].jobs.len();
    let service = phases[0].jobs[0]
        .plan
        .tls
        .as_ref()
        .map_or("the TLS service", |t| t.service.as_str());
    let apply = if args.restart {
        format!("restart {service}")
    } else {
        format!("reload {service} live, restart if that fails")
    };
    println!(
        "rotate: {hosts} hosts, batches of {size}, stop when more than {}% fail; {apply}",
        args.batches.max_fail_percentage
    );
    for phase in phases {
        if let Some(title) = &phase.title {
            println!("{title}");
        }
        for (i, batch) in phase.jobs.chunks(size).enumerate() {
            println!("  batch {}: {}", i + 1, names(batch).join(", "));
        }
    }
}

fn confirmed() -> bool {
    eprint!("Proceed? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

fn names(jobs: &[HostJob]) -> Vec<String> {
    jobs.iter().map(|j| j.target.label.clone()).collect()
}

/// Which hosts ended how, and how to resume.
fn show_outcome(reports: &BTreeMap<String, HostReport>) {
    let list = |status: Status| -> Vec<&str> {
        reports
            .iter()
            .filter(|(_, r)| r.status == status)
            .map(|(h, _)| h.as_str())
            .collect()
    };
    let failed: Vec<&str> = list(Status::Failed)
        .into_iter()
        .chain(list(Status::Unreachable))
        .collect();
    // Skipped in a later phase after changes in an earlier one: not untouched.
    let (partly, untouched): (Vec<&str>, Vec<&str>) = list(Status::Skipped)
        .into_iter()
        .partition(|h| !reports[*h].changed_files.is_empty());
    for (label, hosts) in [
        ("rotated", list(Status::Changed)),
        ("already current", list(Status::Ok)),
        ("failed", failed),
        ("stopped between phases", partly),
        ("untouched", untouched),
    ] {
        if !hosts.is_empty() {
            println!("{label}: {}", hosts.join(", "));
        }
    }
    if !Summary::of(reports).all_good() {
        println!(
            "to resume, fix the failed hosts and run: {}",
            resume_command()
        );
    }
}

/// When hosts hold client certificates whose subjects the new ones do not have, the plan
/// with the fleet's subjects old and new let in (what the rotation uses until its last
/// phase, so no host refuses a peer still presenting its old certificate); None when the
/// subjects stay, or the playbook's files do not depend on them (a list set by hand).
fn widened(
    inputs: &mut crate::inputs::Inputs,
    jobs: &[HostJob],
    reading: &rollover::Reading,
) -> Result<Option<Vec<HostJob>>, InputErrors> {
    let old = rollover::old_client_subjects(jobs, reading);
    if old.is_empty() {
        return Ok(None);
    }
    let mut both: Vec<String> = inputs
        .fleet_client_dns
        .iter()
        .chain(&old)
        .cloned()
        .collect();
    both.sort();
    both.dedup();
    let desired = std::mem::replace(&mut inputs.fleet_client_dns, both);
    let hosts: Vec<String> = jobs.iter().map(|j| j.target.label.clone()).collect();
    let widened = inputs.plan_hosts(&hosts, &crate::inputs::default_user());
    inputs.fleet_client_dns = desired;
    let widened = widened?;
    let files = |js: &[HostJob]| -> Vec<Vec<(String, String)>> {
        js.iter()
            .map(|j| {
                let all = j.plan.services.iter().flat_map(|s| &s.files);
                all.map(|f| (f.path.clone(), f.sha256.clone())).collect()
            })
            .collect()
    };
    if files(&widened) == files(jobs) {
        return Ok(None);
    }
    println!(
        "rotate: client certificate subjects change; until the last phase peers also let in: {}",
        old.join("; ")
    );
    Ok(Some(widened))
}

/// This very command line: running it again converges what is left.
fn resume_command() -> String {
    std::env::args()
        .map(|a| virtfleet_engine::script::quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}
