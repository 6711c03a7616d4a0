//! Rolling a plan out over a fleet: batches (`--serial`), the failure budget, pauses; and
//! for rotation, backups, the TLS health gate, rollback and the CA rollover phases. One
//! batching loop serves every command; what differs is how a batch is applied.
//!
//! Knows TLS only through the plan (`HostPlan::tls`, certificate roles): no file, container
//! or directory name is spelled here.

mod batch;
mod gate;
mod observer;
pub mod rollover;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use virtfleet_engine::remote::After;
use virtfleet_engine::{
    Applied, ApplyOptions, Event, HostJob, HostReport, Mode, Outcome, RunOptions, Status,
    BACKUP_SUFFIX,
};
use virtfleet_ssh::{ClientOptions, SharedSessions};

pub use batch::{over_budget, Serial};
pub use observer::{Note, Observer};
pub use rollover::Phase;

/// How hosts are worked through.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts worked on at once within a batch.
    pub forks: usize,
    pub ssh: ClientOptions,
    /// Hosts per batch; None: every host in one batch.
    pub serial: Option<Serial>,
    /// Stop once more than this share of the hosts attempted failed.
    pub max_fail_percentage: u8,
    /// Wait between batches.
    pub pause: Option<Duration>,
}

impl Options {
    fn batch_size(&self, hosts: usize) -> usize {
        self.serial.map_or(hosts, |s| s.batch_size(hosts)).max(1)
    }
}

/// Every host's result, in host name order.
pub type Reports = BTreeMap<String, HostReport>;

/// A host of a rollout: planned, or failed before the rollout began (its facts could not be
/// gathered). A failed host still takes its place in its batch and counts against the
/// failure budget there, as if it had failed then.
pub enum Entry {
    /// Boxed: a plan is large, and a fleet has thousands of entries.
    Job(Box<HostJob>),
    Failed {
        host: String,
        report: HostReport,
    },
}

impl Entry {
    fn host(&self) -> &str {
        match self {
            Entry::Job(job) => &job.target.label,
            Entry::Failed { host, .. } => host,
        }
    }
}

/// One fleet-wide pass of a converge: every host, batch after batch.
pub struct ConvergePhase {
    /// Shown when it starts; None for a run in one pass.
    pub title: Option<String>,
    pub hosts: Vec<Entry>,
    /// Before the next phase starts, every host's TLS listener must let a peer in (the next
    /// host runs the playbook's `tls.connect` inside its TLS service).
    pub verify: bool,
    /// The same check before this phase starts (a run resumed after a phase that had it).
    pub verify_before: bool,
}

/// deploy / reconfigure / genconfig / check: converge every host, batch after batch, phase
/// after phase (a transition's). A phase starts only once every host finished the one
/// before: a host that failed (or was not reached) stops the run there, so no host moves
/// past a peer that may still need the old side.
pub async fn converge(
    phases: Vec<ConvergePhase>,
    mode: Mode,
    options: &Options,
    observer: &dyn Observer,
) -> Reports {
    let mut rollout = Rollout::new(options, observer);
    let mut apply = Converge {
        mode,
        reached_again: false,
    };
    let count = phases.len();
    let mut held_back = false;
    for (i, phase) in phases.iter().enumerate() {
        if phase.verify_before && !rollout.stopped && mode == Mode::Converge {
            rollout.verify_peers(&phase.hosts).await;
            if rollout.failed > 0 {
                held_back = true;
                rollout.stopped = true;
                observer.note(Note::Warning(format!(
                    "{} host(s) did not let a peer in: the phase is not started (fix them and \
                     run again)",
                    rollout.failed
                )));
            }
        }
        if let (Some(title), false) = (&phase.title, rollout.stopped) {
            observer.note(Note::Phase { title });
        }
        // A later phase reaches every host again: over the connection this one used.
        apply.reached_again = i + 1 < count;
        // The budget stops later batches of this phase; the phase boundary is checked here.
        rollout.phase(&phase.hosts, &mut apply, false).await;
        if i + 1 < count && phase.verify && !rollout.stopped && mode == Mode::Converge {
            rollout.verify_peers(&phase.hosts).await;
        }
        if i + 1 < count && rollout.failed > 0 && !held_back {
            held_back = true;
            rollout.stopped = true;
            observer.note(Note::Warning(format!(
                "{} host(s) did not finish this phase: the next phases are not started, their \
                 hosts are skipped (fix the failed hosts and run again to resume)",
                rollout.failed
            )));
        }
    }
    rollout.reports
}

/// Rotation: each batch applied with backups (live reload where the playbook allows, or a
/// restart when `force_restart`), then each changed host must pass the health gate before
/// the next batch; a host that fails it is put back on its previous files. The phases come
/// from [`rollover::phases`].
pub async fn rotate(
    phases: &[Phase],
    force_restart: bool,
    options: &Options,
    observer: &dyn Observer,
) -> Reports {
    let mut rollout = Rollout::new(options, observer);
    // The last phase holds every host's final plan.
    let Some(desired) = phases.last().map(|p| &p.jobs[..]) else {
        return rollout.reports;
    };
    for (i, phase) in phases.iter().enumerate() {
        if let (Some(title), false) = (&phase.title, rollout.stopped) {
            observer.note(Note::Phase { title });
        }
        let apply = ApplyOptions {
            force_restart,
            backup_suffix: Some(BACKUP_SUFFIX.into()),
            // A later phase reaches every host again: over the connection it has.
            reached_again: i + 1 < phases.len(),
        };
        let mut gated = Gated {
            apply: &apply,
            desired,
            rotated: Vec::new(),
        };
        let hosts: Vec<Entry> = phase
            .jobs
            .iter()
            .map(|job| Entry::Job(Box::new(job.clone())))
            .collect();
        rollout
            .phase(&hosts, &mut gated, i + 1 < phases.len())
            .await;
    }
    rollout.reports
}

/// How one batch is applied.
trait ApplyBatch {
    /// Applies `batch`; `next` is a host of a later batch of this phase (still on its old
    /// files). Returns every host's report.
    async fn apply(
        &mut self,
        ctx: &Rollout<'_>,
        batch: &[HostJob],
        next: Option<&HostJob>,
    ) -> Reports;
}

struct Rollout<'a> {
    options: &'a Options,
    observer: &'a dyn Observer,
    /// Every host's result, merged over phases.
    reports: Reports,
    attempted: usize,
    failed: usize,
    /// The failure budget is spent: no further host is touched.
    stopped: bool,
    batches_run: usize,
}

impl<'a> Rollout<'a> {
    fn new(options: &'a Options, observer: &'a dyn Observer) -> Self {
        Rollout {
            options,
            observer,
            reports: Reports::new(),
            attempted: 0,
            failed: 0,
            stopped: false,
            batches_run: 0,
        }
    }

    /// Runs `jobs` batch after batch; `more_after`: another phase follows this one.
    async fn phase(&mut self, hosts: &[Entry], apply: &mut impl ApplyBatch, more_after: bool) {
        let batches: Vec<&[Entry]> = hosts.chunks(self.options.batch_size(hosts.len())).collect();
        let of = batches.len();
        for (i, entries) in batches.iter().enumerate() {
            if self.stopped {
                for entry in *entries {
                    self.record(entry.host(), HostReport::new(Status::Skipped));
                }
                continue;
            }
            let fresh = self.batches_run == 0;
            let batch: Vec<HostJob> = entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Job(job) => Some(HostJob::clone(job)),
                    Entry::Failed { .. } => None,
                })
                .map(|mut job| {
                    // A probe read with the facts is only as fresh as that moment: later
                    // batches (after pauses, peers' restarts) probe again.
                    if !fresh {
                        job.probed = None;
                    }
                    job
                })
                .collect();
            let batch = &batch[..];
            if let (Some(pause), true) = (self.options.pause, self.batches_run > 0) {
                self.observer.note(Note::Pausing(pause));
                tokio::time::sleep(pause).await;
            }
            let hosts: Vec<String> = entries.iter().map(|e| e.host().to_string()).collect();
            self.observer.note(Note::Batch {
                number: i + 1,
                of,
                hosts: &hosts,
            });
            let next = batches.get(i + 1).and_then(|b| {
                b.iter().find_map(|e| match e {
                    Entry::Job(job) => Some(&**job),
                    Entry::Failed { .. } => None,
                })
            });
            let mut reports = match batch.is_empty() {
                true => Reports::new(),
                false => apply.apply(self, batch, next).await,
            };
            for entry in *entries {
                if let Entry::Failed { host, report } = entry {
                    self.observer.note(Note::Host {
                        host,
                        report,
                        gate: None,
                    });
                    reports.insert(host.clone(), report.clone());
                }
            }
            self.batches_run += 1;
            let failed = reports
                .values()
                .filter(|r| !matches!(r.status, Status::Ok | Status::Changed))
                .count();
            for (name, report) in reports {
                self.record(&name, report);
            }
            self.attempted += entries.len();
            self.failed += failed;
            self.observer.note(Note::BatchDone {
                number: i + 1,
                of,
                failed,
                hosts: entries.len(),
            });
            let budget = self.options.max_fail_percentage;
            if over_budget(self.failed, self.attempted, budget) && !self.stopped {
                self.stopped = true;
                if i + 1 == of && !more_after {
                    continue; // nothing left to stop
                }
                self.observer.note(Note::Stopping {
                    failed: self.failed,
                    attempted: self.attempted,
                    percent: self.options.max_fail_percentage,
                });
            }
        }
    }

    /// Every host's TLS listener, as the next host (the last: the first) reaches it with the
    /// playbook's `tls.connect`; a host that does not let its peer in fails.
    async fn verify_peers(&mut self, hosts: &[Entry]) {
        let jobs: Vec<&HostJob> = hosts
            .iter()
            .filter_map(|e| match e {
                Entry::Job(job) => Some(&**job),
                Entry::Failed { .. } => None,
            })
            .collect();
        if jobs.len() < 2 {
            return;
        }
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(self.options.forks.max(1)));
        let mut checks = tokio::task::JoinSet::new();
        for (i, host) in jobs.iter().enumerate() {
            let Some(tls) = host.plan.tls.clone() else {
                continue;
            };
            let peer = jobs[(i + 1) % jobs.len()].clone();
            let (permits, ssh) = (permits.clone(), self.options.ssh.clone());
            let name = host.target.label.clone();
            checks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                // Each peer is asked once, over the connection its next phase then takes.
                let own = SharedSessions::default();
                let result = gate::peer_connects(&peer, &tls, &ssh, &own).await;
                own.park(&ssh, |_| true);
                (name, peer.target.label, result)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = checks.join_next().await {
            match joined {
                Ok(result) => results.push(result),
                // A check that did not finish proves nothing: the run stops.
                Err(e) => {
                    self.observer
                        .note(Note::Warning(format!("a peer check did not finish: {e}")));
                    self.failed += 1;
                }
            }
        }
        results.sort_by(|a, b| a.0.cmp(&b.0));
        for (host, peer, result) in results {
            if let Err(why) = result {
                let error = format!("its TLS listener did not let {peer} in: {why}");
                self.observer
                    .note(Note::Warning(format!("{host}: {error}")));
                self.record(&host, HostReport::failed(Status::Failed, error));
                self.failed += 1;
            }
        }
    }

    /// Merges a host's result into what earlier phases recorded: its worst status, every
    /// change, the last error, the time spent.
    fn record(&mut self, host: &str, report: HostReport) {
        let Some(merged) = self.reports.get_mut(host) else {
            self.reports.insert(host.to_string(), report);
            return;
        };
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

    /// Runs the engine over `batch`, forwarding its events as they happen; with
    /// `final_results`, each host's result is its final one and is announced when done.
    async fn engine(
        &self,
        batch: &[HostJob],
        mode: Mode,
        apply: &ApplyOptions,
        final_results: bool,
    ) -> BTreeMap<String, Outcome> {
        let options = RunOptions {
            mode,
            forks: self.options.forks.min(batch.len()).max(1),
            ssh: self.options.ssh.clone(),
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        let run = virtfleet_engine::run_with(batch.to_vec(), &options, apply, sender);
        let (outcomes, ()) = tokio::join!(run, self.forward(receiver, final_results));
        outcomes
    }

    async fn forward(&self, mut events: mpsc::UnboundedReceiver<Event>, final_results: bool) {
        while let Some(event) = events.recv().await {
            self.observer.event(&event);
            if let (Event::Done { host, report }, true) = (&event, final_results) {
                self.observer.note(Note::Host {
                    host,
                    report,
                    gate: None,
                });
            }
        }
    }

    /// Puts a host back on the files it had before this rotation; says how that went.
    async fn roll_back(&self, job: &HostJob, applied: &Applied, apply: &ApplyOptions) -> String {
        let (sender, receiver) = mpsc::unbounded_channel();
        let ssh = &self.options.ssh;
        let undo = async {
            let result = virtfleet_engine::roll_back(job, applied, apply, ssh, &sender).await;
            drop(sender);
            result
        };
        let (result, ()) = tokio::join!(undo, self.forward(receiver, false));
        match result {
            Ok(done) => format!("previous files restored ({done})"),
            Err(e) => format!("restoring the previous files failed: {e}"),
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

/// Plain convergence: each host's engine result is final.
struct Converge {
    mode: Mode,
    /// A later phase follows (see [`ApplyOptions::reached_again`]).
    reached_again: bool,
}

impl ApplyBatch for Converge {
    async fn apply(
        &mut self,
        ctx: &Rollout<'_>,
        batch: &[HostJob],
        _: Option<&HostJob>,
    ) -> Reports {
        let apply = ApplyOptions {
            reached_again: self.reached_again,
            ..ApplyOptions::default()
        };
        ctx.engine(batch, self.mode, &apply, true)
            .await
            .into_iter()
            .map(|(host, outcome)| (host, outcome.report))
            .collect()
    }
}

/// A rotation batch: apply with backups, gate every changed host, roll back what fails.
struct Gated<'a> {
    apply: &'a ApplyOptions,
    /// Every host's final plan (the client pair the gate presents comes from it).
    desired: &'a [HostJob],
    /// Hosts of this phase already on its files, newest last.
    rotated: Vec<HostJob>,
}

impl ApplyBatch for Gated<'_> {
    async fn apply(
        &mut self,
        ctx: &Rollout<'_>,
        batch: &[HostJob],
        next: Option<&HostJob>,
    ) -> Reports {
        let outcomes = ctx.engine(batch, Mode::Converge, self.apply, false).await;
        let good =
            |name: &str| matches!(outcomes[name].report.status, Status::Changed | Status::Ok);
        let mut gates = tokio::task::JoinSet::new();
        // Each gate holds a TLS connection: --forks at a time. They share one connection to
        // each peer they ask.
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(ctx.options.forks.max(1)));
        let sessions = SharedSessions::default();
        // A gate that never reports (its task died) fails its host, never passes it.
        let mut gate_results: BTreeMap<String, Result<Vec<String>, String>> = BTreeMap::new();
        for job in batch {
            if outcomes[&job.target.label].report.status != Status::Changed {
                continue;
            }
            gate_results.insert(
                job.target.label.clone(),
                Err("the health gate did not finish".into()),
            );
            // The newest rotated peer; in a first batch, another host of this batch that
            // took its files.
            let rotated = self.rotated.last().cloned().or_else(|| {
                batch
                    .iter()
                    .find(|o| o.target.label != job.target.label && good(&o.target.label))
                    .cloned()
            });
            let peers = gate::Peers {
                rotated,
                pending: next.cloned(),
            };
            let desired = self
                .desired
                .iter()
                .find(|d| d.target.label == job.target.label)
                .unwrap_or(job)
                .clone();
            let (job, ssh) = (job.clone(), ctx.options.ssh.clone());
            let (permits, sessions) = (permits.clone(), sessions.clone());
            gates.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let result = gate::check(&job, &desired, &peers, &ssh, &sessions).await;
                (job.target.label, result)
            });
        }
        while let Some(joined) = gates.join_next().await {
            if let Ok((name, result)) = joined {
                gate_results.insert(name, result);
            }
        }
        // A peer's connection goes back to the pool when the peer has a step left in this run
        // (a host of this batch its backups' removal, the next batch's its converge, every
        // host a later phase); a peer already done is let go.
        let reached_again = |target: &virtfleet_ssh::Target| {
            self.apply.reached_again
                || next.is_some_and(|n| &n.target == target)
                || batch.iter().any(|job| &job.target == target)
        };
        sessions.park(&ctx.options.ssh, reached_again);

        // The backups of the hosts that passed go, --forks at a time, each over the host's
        // own connection; a later phase takes that connection over.
        let after = match self.apply.reached_again {
            true => After::Park,
            false => After::Close,
        };
        let mut removals = tokio::task::JoinSet::new();
        for job in batch {
            if let Some(Ok(_)) = gate_results.get(&job.target.label) {
                let (job, ssh, permits) = (job.clone(), ctx.options.ssh.clone(), permits.clone());
                removals.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let removed =
                        virtfleet_engine::remove_backups(&job, BACKUP_SUFFIX, &ssh, after).await;
                    (job.target.label, removed.map_err(|e| e.to_string()))
                });
            }
        }
        let mut removed = BTreeMap::new();
        while let Some(joined) = removals.join_next().await {
            if let Ok((name, result)) = joined {
                removed.insert(name, result);
            }
        }

        let mut reports = Reports::new();
        for job in batch {
            let name = &job.target.label;
            let Outcome {
                mut report,
                applied,
            } = outcomes[name].clone();
            // In a gated rollout every host's line says what the gate made of it; a host
            // already current had nothing to prove.
            let mut notes = (report.status == Status::Ok).then(Vec::new);
            match gate_results.remove(name) {
                Some(Ok(seen)) => {
                    let failed = match removed.remove(name) {
                        Some(Ok(())) => None,
                        Some(Err(e)) => Some(e),
                        None => Some("removing backups did not finish".into()),
                    };
                    if let Some(e) = failed {
                        ctx.observer.note(Note::Warning(format!("{name}: {e}")));
                    }
                    notes = Some(seen);
                }
                Some(Err(reason)) => {
                    let restored = ctx.roll_back(job, &applied, self.apply).await;
                    report.status = Status::Failed;
                    report.error = Some(format!("health gate: {reason}; {restored}"));
                }
                None if report.status == Status::Failed && !applied.pushed.is_empty() => {
                    let restored = ctx.roll_back(job, &applied, self.apply).await;
                    let error = report.error.take().unwrap_or_default();
                    report.error = Some(format!("{error}; {restored}"));
                }
                None => {}
            }
            ctx.observer.note(Note::Host {
                host: name,
                report: &report,
                gate: notes.as_deref(),
            });
            reports.insert(name.clone(), report);
        }
        for job in batch {
            if matches!(
                reports[&job.target.label].status,
                Status::Ok | Status::Changed
            ) {
                self.rotated.push(job.clone());
            }
        }
        reports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Silent;
    impl Observer for Silent {
        fn note(&self, _: Note<'_>) {}
        fn event(&self, _: &Event) {}
    }

    #[test]
    fn merged_phases_keep_the_worst_status_and_every_change() {
        let options = Options {
            forks: 1,
            ssh: ClientOptions::default(),
            serial: None,
            max_fail_percentage: 0,
            pause: None,
        };
        let mut rollout = Rollout::new(&options, &Silent);
        let mut changed = HostReport::new(Status::Changed);
        changed.changed_files = vec!["/a".into()];
        rollout.record("h", changed.clone());
        rollout.record("h", changed);
        rollout.record("h", HostReport::new(Status::Skipped));
        let merged = &rollout.reports["h"];
        assert_eq!(merged.status, Status::Skipped);
        assert_eq!(merged.changed_files, ["/a"]);
        let mut failed = HostReport::failed(Status::Failed, "gate".into());
        failed.restarted = vec!["svc".into()];
        rollout.record("h", failed);
        let merged = &rollout.reports["h"];
        assert_eq!(merged.status, Status::Failed);
        assert_eq!(merged.error.as_deref(), Some("gate"));
        assert_eq!(merged.restarted, ["svc"]);
    }

    #[test]
    fn one_batch_unless_serial_says_otherwise() {
        let mut options = Options {
            forks: 1,
            ssh: ClientOptions::default(),
            serial: None,
            max_fail_percentage: 0,
            pause: None,
        };
        assert_eq!(options.batch_size(7), 7);
        options.serial = Some(Serial::Percent(50));
        assert_eq!(options.batch_size(7), 3);
        assert_eq!(
            Options {
                serial: None,
                ..options
            }
            .batch_size(0),
            1
        );
    }
}
