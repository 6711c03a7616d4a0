//! `virtfleet rotate`: certificate rotation in batches. Each batch is pushed and applied (live
//! reload where the playbook allows), then every changed host must pass the health gate before
//! the next batch starts; a host that fails it is put back on its previous files. A new CA is
//! rolled over in three fleet-wide phases (see `rollover`).

mod gate;
mod rollover;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use virtfleet_engine::{
    ApplyOptions, Event, HostJob, HostReport, Mode, RunOptions, Status, BACKUP_SUFFIX,
};
use virtfleet_ssh::ClientOptions;

use crate::inputs::{self, InputErrors, PreparedHost};
use crate::output::{self, Summary, Verbosity};
use crate::serial::Serial;
use crate::GlobalArgs;
use gate::{Endpoint, Expected, Peers};
use rollover::Phase;

#[derive(Args)]
pub struct RotateArgs {
    /// Hosts per batch: a number, or a percentage of the targeted hosts (at least 1).
    #[arg(long, default_value = "1", value_parser = Serial::parse)]
    serial: Serial,
    /// Stop once more than this percentage of the hosts attempted so far failed.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    max_fail_percentage: u8,
    /// Wait this long between batches.
    #[arg(long, value_name = "SECONDS")]
    pause: Option<u64>,
    /// Restart nova_libvirt instead of reloading its certificates live.
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
    let hosts = crate::prepare(global)?;
    let without_certs: Vec<String> = hosts
        .iter()
        .filter(|h| inputs::host_certs(h).is_none())
        .map(|h| {
            format!(
                "{}: rotate needs libvirt_tls on, with certificates managed",
                h.name
            )
        })
        .collect();
    if !without_certs.is_empty() {
        return Err(InputErrors(without_certs));
    }
    let jobs: Vec<HostJob> = hosts.into_iter().map(PreparedHost::into_job).collect();
    let ssh = global.ssh_options();
    let phases = rollover::phases(jobs, &ssh, global.forks(usize::MAX)).await;
    let size = args.serial.batch_size(phases[0].jobs.len());
    show_plan(&phases, size, &args);
    if !args.yes && !confirmed() {
        println!("rotate: not confirmed; nothing changed");
        return Ok(ExitCode::FAILURE);
    }
    let mut rotation = Rotation {
        global,
        args: &args,
        ssh,
        apply: ApplyOptions {
            force_restart: args.restart,
            backup_suffix: Some(BACKUP_SUFFIX.into()),
        },
        reports: BTreeMap::new(),
        attempted: 0,
        failed: 0,
        stopped: false,
        batches_run: 0,
    };
    // The last phase holds every host's final plan.
    let desired = &phases.last().expect("at least one phase").jobs;
    for phase in &phases {
        rotation
            .run_phase(phase, desired, size, phases.len() > 1)
            .await;
    }
    Ok(rotation.finish())
}

fn show_plan(phases: &[Phase], size: usize, args: &RotateArgs) {
    let hosts = phases[0].jobs.len();
    let apply = if args.restart {
        "restart nova_libvirt"
    } else {
        "reload nova_libvirt live, restart if that fails"
    };
    println!(
        "rotate: {hosts} hosts, batches of {size}, stop when more than {}% fail; {apply}",
        args.max_fail_percentage
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

struct Rotation<'a> {
    global: &'a GlobalArgs,
    args: &'a RotateArgs,
    ssh: ClientOptions,
    apply: ApplyOptions,
    /// Every host's result, merged over the phases.
    reports: BTreeMap<String, HostReport>,
    attempted: usize,
    failed: usize,
    /// The failure budget is spent: no further host is touched.
    stopped: bool,
    batches_run: usize,
}

impl Rotation<'_> {
    fn say(&self, line: String) {
        if self.global.verbosity() > Verbosity::Quiet {
            println!("{line}");
        }
    }

    async fn run_phase(&mut self, phase: &Phase, desired: &[HostJob], size: usize, announce: bool) {
        let batches: Vec<&[HostJob]> = phase.jobs.chunks(size).collect();
        if announce && !self.stopped {
            self.say(phase.title.clone().unwrap_or_default());
        }
        let endpoints: Vec<Vec<Endpoint>> = batches
            .iter()
            .map(|b| b.iter().map(Endpoint::of).collect())
            .collect();
        // Hosts of this phase already on its files, newest last: the "rotated" peers.
        let mut rotated: Vec<Endpoint> = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            if self.stopped {
                for job in *batch {
                    self.record(&job.target.label, HostReport::new(Status::Skipped));
                }
                continue;
            }
            if let (Some(seconds), true) = (self.args.pause, self.batches_run > 0) {
                self.say(format!("pausing {seconds} s"));
                tokio::time::sleep(Duration::from_secs(seconds)).await;
            }
            self.say(format!(
                "batch {}/{}: {}",
                i + 1,
                batches.len(),
                names(batch).join(", ")
            ));
            let pending = endpoints[i + 1..].iter().flatten().next();
            let reports = self.run_batch(batch, desired, &rotated, pending).await;
            self.batches_run += 1;
            let mut batch_failed = 0;
            for (job, endpoint) in batch.iter().zip(&endpoints[i]) {
                let report = &reports[&job.target.label];
                match report.status {
                    Status::Ok | Status::Changed => rotated.push(endpoint.clone()),
                    _ => batch_failed += 1,
                }
            }
            for (name, report) in reports {
                self.record(&name, report);
            }
            self.attempted += batch.len();
            self.failed += batch_failed;
            self.say(format!(
                "batch {}/{} done: {} of {} hosts failed",
                i + 1,
                batches.len(),
                batch_failed,
                batch.len()
            ));
            if crate::serial::over_budget(
                self.failed,
                self.attempted,
                self.args.max_fail_percentage,
            ) {
                self.stopped = true;
                println!(
                    "rotate: stopping: {} of {} hosts attempted failed (more than {}%); no further host is touched",
                    self.failed, self.attempted, self.args.max_fail_percentage
                );
            }
        }
    }

    /// Apply one batch, then gate each changed host; put failed hosts back on their old files.
    async fn run_batch(
        &self,
        batch: &[HostJob],
        desired: &[HostJob],
        rotated: &[Endpoint],
        pending: Option<&Endpoint>,
    ) -> BTreeMap<String, HostReport> {
        let verbosity = self.global.verbosity();
        let options = RunOptions {
            mode: Mode::Converge,
            forks: self.global.forks(batch.len()),
            ssh: self.ssh.clone(),
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        let progress = tokio::spawn(show_events(receiver, batch.len(), verbosity));
        let mut reports =
            virtfleet_engine::run_with(batch.to_vec(), &options, &self.apply, sender).await;
        progress.await.expect("progress task");

        let endpoints: Vec<Endpoint> = batch.iter().map(Endpoint::of).collect();
        let mut gates = tokio::task::JoinSet::new();
        for (job, endpoint) in batch.iter().zip(&endpoints) {
            if reports[&job.target.label].status != Status::Changed {
                continue;
            }
            // The newest rotated peer; in a first batch, another host of this batch that
            // took its files.
            let rotated_peer = rotated.last().cloned().or_else(|| {
                endpoints
                    .iter()
                    .find(|e| {
                        e.name != endpoint.name
                            && matches!(reports[&e.name].status, Status::Changed | Status::Ok)
                    })
                    .cloned()
            });
            let pending_peer = pending.cloned();
            let endpoint = endpoint.clone();
            let final_plan = desired
                .iter()
                .find(|d| d.target.label == job.target.label)
                .unwrap_or(job);
            let expected = Expected::of(job, final_plan);
            let ssh = self.ssh.clone();
            gates.spawn(async move {
                let peers = Peers {
                    rotated: rotated_peer.as_ref(),
                    pending: pending_peer.as_ref(),
                };
                let result = match expected {
                    Some(expected) => gate::check(&endpoint, &expected, &peers, &ssh).await,
                    None => Err("the plan pushes no libvirt server certificate".into()),
                };
                (endpoint.name, result)
            });
        }
        let mut gate_results = BTreeMap::new();
        while let Some(joined) = gates.join_next().await {
            let (name, result) = joined.expect("gate task");
            gate_results.insert(name, result);
        }

        for job in batch {
            let name = &job.target.label;
            let report = reports.get_mut(name).expect("a report per host");
            match gate_results.remove(name) {
                Some(Ok(notes)) => {
                    if verbosity == Verbosity::Verbose {
                        for note in notes {
                            println!("{name}: gate: {note}");
                        }
                    }
                    if let Err(e) =
                        virtfleet_engine::remove_backups(job, BACKUP_SUFFIX, &self.ssh).await
                    {
                        eprintln!("warning: {name}: {e}");
                    }
                    self.say(format!(
                        "{name}: rotated ({}); gate passed",
                        what_changed(report)
                    ));
                }
                Some(Err(reason)) => {
                    let restored = self.roll_back(job, report).await;
                    report.status = Status::Failed;
                    report.error = Some(format!("health gate: {reason}; {restored}"));
                }
                None if report.status == Status::Failed && !report.changed_files.is_empty() => {
                    let restored = self.roll_back(job, report).await;
                    let error = report.error.take().unwrap_or_default();
                    report.error = Some(format!("{error}; {restored}"));
                }
                None if report.status == Status::Ok && verbosity == Verbosity::Verbose => {
                    println!("{name}: already current");
                }
                None => {}
            }
            if matches!(report.status, Status::Failed | Status::Unreachable) {
                println!(
                    "{name}: {} {}",
                    output::status_name(report.status),
                    report.error.as_deref().unwrap_or("")
                );
            }
        }
        reports
    }

    /// Restores the host's previous files and applies them; says how that went.
    async fn roll_back(&self, job: &HostJob, report: &HostReport) -> String {
        let (sender, receiver) = mpsc::unbounded_channel();
        let progress = tokio::spawn(show_events(receiver, 0, self.global.verbosity()));
        let result =
            virtfleet_engine::roll_back(job, report, &self.apply, &self.ssh, &sender).await;
        drop(sender);
        progress.await.expect("progress task");
        match result {
            Ok(done) => format!("previous files restored ({done})"),
            Err(e) => format!("restoring the previous files failed: {e}"),
        }
    }

    fn record(&mut self, host: &str, report: HostReport) {
        match self.reports.get_mut(host) {
            None => {
                self.reports.insert(host.to_string(), report);
            }
            Some(merged) => {
                if severity(report.status) > severity(merged.status) {
                    merged.status = report.status;
                }
                for (into, from) in [
                    (&mut merged.changed_files, report.changed_files),
                    (&mut merged.restarted, report.restarted),
                    (&mut merged.reloaded, report.reloaded),
                ] {
                    for item in from {
                        if !into.contains(&item) {
                            into.push(item);
                        }
                    }
                }
                if report.error.is_some() {
                    merged.error = report.error;
                }
                merged.seconds += report.seconds;
            }
        }
    }

    fn finish(self) -> ExitCode {
        let list = |status: Status| -> Vec<&str> {
            self.reports
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
            .partition(|h| !self.reports[*h].changed_files.is_empty());
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
        let summary = Summary::of(&self.reports);
        if !summary.all_good() {
            println!(
                "to resume, fix the failed hosts and run: {}",
                resume_command()
            );
        }
        println!("rotate: {}", summary.line());
        if let Some(path) = &self.global.report {
            if let Err(e) = output::write_report(path, "rotate", &self.reports) {
                eprintln!("error: cannot write report {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        if summary.all_good() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// Orders statuses for merging phases: a host's worst result is its result.
fn severity(status: Status) -> u8 {
    match status {
        Status::Ok => 0,
        Status::Changed => 1,
        Status::Skipped => 2,
        Status::Unreachable => 3,
        Status::Failed => 4,
    }
}

fn what_changed(report: &HostReport) -> String {
    let mut parts = vec![format!("{} files", report.changed_files.len())];
    if !report.reloaded.is_empty() {
        parts.push(format!("reloaded {}", report.reloaded.join(", ")));
    }
    if !report.restarted.is_empty() {
        parts.push(format!("restarted {}", report.restarted.join(", ")));
    }
    parts.join("; ")
}

/// This very command line: running it again converges what is left.
fn resume_command() -> String {
    std::env::args()
        .map(|a| virtfleet_engine::script::quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A progress bar on a terminal; `-v` details as lines.
async fn show_events(
    mut events: mpsc::UnboundedReceiver<Event>,
    hosts: usize,
    verbosity: Verbosity,
) {
    let bar = if verbosity == Verbosity::Quiet || hosts == 0 || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(hosts as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} hosts  {elapsed}  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    while let Some(event) = events.recv().await {
        match event {
            Event::Phase { host, phase } => bar.set_message(format!("{host}: {}", phase.name())),
            Event::Detail { host, detail } if verbosity == Verbosity::Verbose => {
                bar.suspend(|| println!("{host}: {detail}"));
            }
            Event::Detail { .. } => {}
            Event::Done { .. } => bar.inc(1),
        }
    }
    bar.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_phases_keep_the_worst_status_and_every_change() {
        let cli =
            <crate::Cli as clap::Parser>::parse_from(["virtfleet", "rotate", "--serial", "2"]);
        let crate::Command::Rotate(args) = cli.command else {
            panic!("not rotate")
        };
        let global = cli.global;
        let mut rotation = Rotation {
            global: &global,
            args: &args,
            ssh: ClientOptions::default(),
            apply: ApplyOptions::default(),
            reports: BTreeMap::new(),
            attempted: 0,
            failed: 0,
            stopped: false,
            batches_run: 0,
        };
        let mut changed = HostReport::new(Status::Changed);
        changed.changed_files = vec!["/a".into()];
        rotation.record("h", changed.clone());
        rotation.record("h", changed);
        rotation.record("h", HostReport::new(Status::Skipped));
        let merged = &rotation.reports["h"];
        assert_eq!(merged.status, Status::Skipped);
        assert_eq!(merged.changed_files, ["/a"]);
    }
}
