//! Converges hosts to their plans over SSH: probe, diff, push, restart or reload, mark.
//!
//! One SSH connection per host, a bounded number of hosts at once, and a stream of events for
//! progress output. Knows nothing about libvirt: services, readiness checks, post-restart
//! steps and live reloads all come from the plan.

mod converge;
pub mod script;
pub mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};
use virtfleet_plan::HostPlan;
use virtfleet_ssh::{ClientOptions, Target};

/// One host's job: where to reach it and what it should hold.
#[derive(Clone)]
pub struct HostJob {
    pub target: Target,
    pub plan: HostPlan,
    /// `docker` or `podman` (same verbs).
    pub container_engine: String,
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
    pub error: Option<String>,
    pub seconds: f64,
    /// Unified diffs of changed files, secrets redacted (check --diff only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<String>,
}

impl HostReport {
    pub fn new(status: Status) -> Self {
        HostReport {
            status,
            changed_files: Vec::new(),
            restarted: Vec::new(),
            reloaded: Vec::new(),
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
}

/// Runs every job, at most `forks` hosts at once. A host's failure never stops the others.
pub async fn run(
    jobs: Vec<HostJob>,
    options: &RunOptions,
    events: mpsc::UnboundedSender<Event>,
) -> BTreeMap<String, HostReport> {
    run_with(jobs, options, &ApplyOptions::default(), events).await
}

/// [`run`] with backups and restart choices.
pub async fn run_with(
    jobs: Vec<HostJob>,
    options: &RunOptions,
    apply: &ApplyOptions,
    events: mpsc::UnboundedSender<Event>,
) -> BTreeMap<String, HostReport> {
    let apply = Arc::new(apply.clone());
    let permits = Arc::new(Semaphore::new(options.forks.max(1)));
    let ssh = Arc::new(options.ssh.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for job in jobs {
        let permits = permits.clone();
        let ssh = ssh.clone();
        let events = events.clone();
        let mode = options.mode;
        let apply = apply.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            let started = Instant::now();
            let name = job.target.label.clone();
            let mut report = converge::host(&job, mode, &apply, &ssh, &events).await;
            report.seconds = started.elapsed().as_secs_f64();
            let _ = events.send(Event::Done {
                host: name.clone(),
                report: report.clone(),
            });
            (name, report)
        });
    }
    let mut reports = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (name, report) = joined.expect("host task panicked");
        reports.insert(name, report);
    }
    reports
}

/// Undoes what a run with [`ApplyOptions::backup_suffix`] did on one host: puts back the
/// previous files and applied markers kept in that run, applies them again the way the run
/// applied the new ones (reload, else restart), and deletes the backups. `applied` is the
/// host's report from that run. Returns a line saying what was re-applied.
pub async fn roll_back(
    job: &HostJob,
    applied: &HostReport,
    apply: &ApplyOptions,
    ssh: &ClientOptions,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<String, String> {
    let suffix = apply
        .backup_suffix
        .as_deref()
        .ok_or("roll back needs a run with backups")?;
    converge::roll_back(job, applied, suffix, apply.force_restart, ssh, events).await
}

/// Deletes the backups a run with [`ApplyOptions::backup_suffix`] left on one host.
pub async fn remove_backups(
    job: &HostJob,
    suffix: &str,
    ssh: &ClientOptions,
) -> Result<(), String> {
    let paths = converge::backed_up_paths(job);
    let session = virtfleet_ssh::Session::connect(&job.target, ssh)
        .await
        .map_err(|e| e.to_string())?;
    let out = session
        .exec(&script::remove_backups(&paths, suffix), b"")
        .await;
    session.close().await;
    match out {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => Err(format!("remove backups: {}", out.stderr_lossy().trim())),
        Err(e) => Err(format!("remove backups: {e}")),
    }
}
