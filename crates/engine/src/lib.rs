//! Converges hosts to their plans over SSH: probe, diff, push, restart or reload, mark.
//!
//! One SSH connection per host, a bounded number of hosts at once, and a stream of events for
//! progress output. Knows nothing about libvirt: services, readiness checks, post-restart
//! steps and live reloads all come from the plan. Only `script` writes shell.

mod clock;
mod converge;
mod error;
pub mod facts;
pub mod remote;
pub mod script;
pub mod state;
#[cfg(test)]
mod testutil;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};
use virtfleet_plan::{HostPlan, Runs, ServicePlan};
use virtfleet_ssh::{ClientOptions, Target};

pub use error::EngineError;

/// One host's job: where to reach it and what it should hold.
#[derive(Clone)]
pub struct HostJob {
    pub target: Target,
    /// Shared: batches and phases pass jobs around, and a plan is large on a large fleet
    /// (its files; libvirtd.conf lists every host's client subject).
    pub plan: Arc<HostPlan>,
    /// The host's probe, read in its facts round trip ([`facts::gather_with_probe`]); used
    /// instead of probing again when the plan's probe is the same script.
    pub probed: Option<Arc<facts::Probed>>,
}

/// Where `service`'s commands run on a host planned as `plan`.
pub fn place<'a>(plan: &'a HostPlan, service: &'a ServicePlan) -> script::Place<'a> {
    match &service.runs {
        Runs::Container => script::Place::Container {
            engine: &plan.container_engine,
            name: &service.name,
        },
        Runs::Host { restart } => script::Place::Host { restart },
    }
}

impl HostJob {
    /// Where `service`'s commands run on this host.
    pub fn place<'a>(&'a self, service: &'a ServicePlan) -> script::Place<'a> {
        place(&self.plan, service)
    }

    /// What the host holds at the plan's held paths (see `HostPlan::held_paths`), from a
    /// probe read for exactly this plan (in the facts round trip or by
    /// [`facts::probe_early`]); None without one.
    pub fn held_contents(&self) -> Option<BTreeMap<String, Option<Vec<u8>>>> {
        Some(self.probe_of_this_plan()?.contents(&self.plan.held_paths))
    }

    /// The kept probe, when it was read from this target with this plan's probe script:
    /// one read for another plan (a rollover's changed bundle) says nothing of this one.
    fn probe_of_this_plan(&self) -> Option<&facts::Probed> {
        let probed = self.probed.as_deref()?;
        let script = converge::probe_script(self, false, script::Facts::None);
        (probed.target == self.target && probed.script == script.digest()).then_some(probed)
    }

    /// Whether some file of the plan differs on the host from what its service was last
    /// applied with (a run killed between its push and the restart): what the host's files
    /// say then is not yet what runs. From the same probe as [`HostJob::held_contents`];
    /// false for services never applied by virtfleet.
    pub fn unsettled(&self) -> Option<bool> {
        let probed = self.probe_of_this_plan()?;
        let state = state::HostState::parse(&String::from_utf8_lossy(&probed.output));
        Some(self.plan.services.iter().any(|service| {
            let Some(marker) = state.markers.get(&service.marker_path) else {
                return false;
            };
            service.files.iter().any(|f| {
                let applied = marker.files.get(&f.path).map(|(sha, _)| sha.as_str());
                let held = state.files.get(&f.path).and_then(|s| s.sha256.as_deref());
                // A file applied before and changed since (merged files included: the
                // marker holds what was written).
                applied.is_some() && applied != held
            })
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Push what differs and restart or reload what must take it (deploy, reconfigure).
    Converge,
    /// Push what differs; never restart (a later converge restarts what is stale).
    WriteOnly,
    /// Change nothing; report what a converge would do.
    Check { diff: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Changed,
    Failed,
    Unreachable,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub status: Status,
    pub changed_files: Vec<String>,
    pub restarted: Vec<String>,
    /// Services whose changed files were applied live, without a restart.
    pub reloaded: Vec<String>,
    /// Services kolla-ansible (or anyone) had applied, taken over without a restart
    /// ([`state::Action::Adopt`]); with `check`, those that would be.
    pub adopted: Vec<String>,
    pub error: Option<String>,
    pub seconds: f64,
    /// Unified diffs of changed files, secrets redacted (check --diff only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<String>,
}

impl HostReport {
    /// One host's result over several playbooks applied in turn: the worst status (a failure
    /// or an unreached host over a change over nothing; skipped only when every one was),
    /// everything each changed, restarted and said.
    pub fn combine(mut self, other: HostReport) -> HostReport {
        let rank = |s: Status| match s {
            Status::Skipped => 0,
            Status::Ok => 1,
            Status::Changed => 2,
            Status::Unreachable => 3,
            Status::Failed => 4,
        };
        if rank(other.status) > rank(self.status) {
            self.status = other.status;
        }
        self.changed_files.extend(other.changed_files);
        self.restarted.extend(other.restarted);
        self.reloaded.extend(other.reloaded);
        self.adopted.extend(other.adopted);
        self.error = match (self.error.take(), other.error) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        self.seconds += other.seconds;
        self.diffs.extend(other.diffs);
        self
    }

    pub fn new(status: Status) -> Self {
        HostReport {
            status,
            changed_files: Vec::new(),
            restarted: Vec::new(),
            reloaded: Vec::new(),
            adopted: Vec::new(),
            error: None,
            seconds: 0.0,
            diffs: Vec::new(),
        }
    }

    pub fn failed(status: Status, error: String) -> Self {
        HostReport {
            error: Some(error),
            ..HostReport::new(status)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Probe,
    Push,
    Restart,
    Reload,
    Mark,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Probe => "probe",
            Phase::Push => "push",
            Phase::Restart => "restart",
            Phase::Reload => "reload",
            Phase::Mark => "mark",
        }
    }
}

#[derive(Debug)]
pub enum Event {
    Phase {
        host: String,
        phase: Phase,
    },
    /// `detail` is a line for verbose output (what changed and why).
    Detail {
        host: String,
        detail: String,
    },
    Done {
        host: String,
        report: HostReport,
    },
}

pub struct RunOptions {
    pub mode: Mode,
    pub forks: usize,
    pub ssh: ClientOptions,
}

/// The suffix of the previous versions a rotation keeps beside replaced files until its gate
/// passes. Any other run that finds such backups (left by a rotation that was killed) deletes
/// them: they hold old private keys.
pub const BACKUP_SUFFIX: &str = ".virtfleet-backup";

/// Per-run choices beyond [`RunOptions`]; the defaults are deploy's behaviour.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Restart services even where the playbook's live reload would apply the change.
    pub force_restart: bool,
    /// Before replacing files, keep the previous ones (and the applied markers) beside them as
    /// `<path><suffix>` (hard links: content, mode and owner exactly as they were), for [`roll_back`]; [`remove_backups`] deletes them.
    pub backup_suffix: Option<String>,
    /// The run reaches every host again after this (a rotation's later phase): each
    /// connection is parked rather than closed.
    pub reached_again: bool,
}

/// What one apply changed on a host: handed back by [`run_with`] and consumed by
/// [`roll_back`], so a rollback restores exactly what this run replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Paths whose files were replaced.
    pub pushed: Vec<String>,
    pub restarted: Vec<String>,
    pub reloaded: Vec<String>,
    /// The apply failed after its push: a service may be stopped or half-applied.
    pub interrupted: bool,
}

/// One host's result: the report for the operator and what was applied, for a rollback.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: HostReport,
    pub applied: Applied,
}

/// Runs every job, at most `forks` hosts at once. A host's failure never stops the others.
pub async fn run(
    jobs: Vec<HostJob>,
    options: &RunOptions,
    events: mpsc::UnboundedSender<Event>,
) -> BTreeMap<String, HostReport> {
    run_with(jobs, options, &ApplyOptions::default(), events)
        .await
        .into_iter()
        .map(|(host, outcome)| (host, outcome.report))
        .collect()
}

/// [`run`] with backups and restart choices; each host's [`Applied`] comes back too. A host
/// whose task panics fails alone, with the panic as its error.
pub async fn run_with(
    jobs: Vec<HostJob>,
    options: &RunOptions,
    apply: &ApplyOptions,
    events: mpsc::UnboundedSender<Event>,
) -> BTreeMap<String, Outcome> {
    let apply = Arc::new(apply.clone());
    let permits = Arc::new(Semaphore::new(options.forks.max(1)));
    let ssh = Arc::new(options.ssh.clone());
    let mut tasks = tokio::task::JoinSet::new();
    let mut names = BTreeMap::new();
    for job in jobs {
        let permits = permits.clone();
        let ssh = ssh.clone();
        let events = events.clone();
        let mode = options.mode;
        let apply = apply.clone();
        let name = job.target.label.clone();
        let handle = tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let started = Instant::now();
            let mut outcome = converge::host(&job, mode, &apply, &ssh, &events).await;
            // With the facts round trip that probed the host, when there was one.
            let probed = job.probed.as_ref().map(|p| p.took).unwrap_or_default();
            outcome.report.seconds = (started.elapsed() + probed).as_secs_f64();
            (job.target.label, outcome)
        });
        names.insert(handle.id(), name);
    }
    let mut outcomes = BTreeMap::new();
    while let Some(joined) = tasks.join_next_with_id().await {
        let (name, outcome) = match joined {
            Ok((_, result)) => result,
            Err(e) => {
                let name = names.get(&e.id()).cloned().unwrap_or_default();
                let error = EngineError::Panicked(panic_message(e));
                let outcome = Outcome {
                    report: HostReport::failed(Status::Failed, error.to_string()),
                    // Unknown how far it got: a rollback re-applies what it can.
                    applied: Applied {
                        interrupted: true,
                        ..Applied::default()
                    },
                };
                (name, outcome)
            }
        };
        let _ = events.send(Event::Done {
            host: name.clone(),
            report: outcome.report.clone(),
        });
        outcomes.insert(name, outcome);
    }
    outcomes
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into()),
        Err(e) => e.to_string(),
    }
}

/// Undoes what a run with [`ApplyOptions::backup_suffix`] did on one host: puts back the
/// previous files and applied markers kept in that run, applies them again the way the run
/// applied the new ones (reload, else restart), and deletes the backups. `applied` is what
/// that run returned for the host. Returns a line saying what was re-applied.
pub async fn roll_back(
    job: &HostJob,
    applied: &Applied,
    apply: &ApplyOptions,
    ssh: &ClientOptions,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<String, EngineError> {
    let suffix = apply
        .backup_suffix
        .as_deref()
        .ok_or(EngineError::NoBackups)?;
    converge::roll_back(job, applied, suffix, apply.force_restart, ssh, events).await
}

/// Deletes the backups a run with [`ApplyOptions::backup_suffix`] left on one host.
pub async fn remove_backups(
    job: &HostJob,
    suffix: &str,
    ssh: &ClientOptions,
    after: remote::After,
) -> Result<(), EngineError> {
    let paths = converge::backed_up_paths(job);
    let script = script::remove_backups(&paths, suffix);
    remote::run(&job.target, ssh, "remove backups", &script, after)
        .await
        .map(|_| ())
}
