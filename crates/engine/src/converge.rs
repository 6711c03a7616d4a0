//! Converging one host over one SSH connection.

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::OnceCell;
use virtfleet_plan::{redact, DesiredFile, Runs, ServicePlan};
use virtfleet_ssh::{ClientOptions, Session};

use crate::script::{self, MarkerWrite, Readiness, Script};
use crate::state::{
    decide, needs_start_times, Action, Decision, EngineProblem, FileKind, HostState, Marker,
};
use crate::{
    remote, Applied, ApplyOptions, EngineError, Event, HostJob, HostReport, Mode, Outcome, Phase,
    Status, BACKUP_SUFFIX,
};

pub(crate) async fn host(
    job: &HostJob,
    mode: Mode,
    apply: &ApplyOptions,
    ssh: &ClientOptions,
    events: &UnboundedSender<Event>,
) -> Outcome {
    let converger = Converger::new(job, ssh, apply, events);
    let outcome = converger.run(mode).await;
    // Never connected: the probe kept from the facts round trip said all it needed. A
    // connection an earlier step kept for this converge is not needed either.
    let Some(session) = converger.session.into_inner() else {
        if !apply.reached_again {
            ssh.pool.release(&job.target);
        }
        return outcome;
    };
    // With backups (a gated rotation), a host whose files were pushed is reached again right
    // after its gate, to remove its backups or restore them: over this connection. So is
    // every host when a later phase follows.
    let pushed = outcome.report.status == Status::Changed || !outcome.applied.pushed.is_empty();
    let followed = apply.reached_again || (apply.backup_suffix.is_some() && pushed);
    if followed {
        session.park(&job.target, ssh);
    } else {
        session.close().await;
    }
    outcome
}

struct Progress<'a> {
    host: &'a str,
    events: &'a UnboundedSender<Event>,
}

impl Progress<'_> {
    fn phase(&self, phase: Phase) {
        let _ = self.events.send(Event::Phase {
            host: self.host.to_string(),
            phase,
        });
    }

    fn detail(&self, detail: String) {
        let _ = self.events.send(Event::Detail {
            host: self.host.to_string(),
            detail,
        });
    }
}

struct Converger<'a> {
    job: &'a HostJob,
    /// Opened on first use: a host whose kept probe shows nothing to do is not logged in to
    /// again (its facts round trip did not keep its connection, see `nothing_to_do`).
    session: OnceCell<Session>,
    ssh: &'a ClientOptions,
    progress: Progress<'a>,
    apply: &'a ApplyOptions,
}

impl<'a> Converger<'a> {
    fn new(
        job: &'a HostJob,
        ssh: &'a ClientOptions,
        apply: &'a ApplyOptions,
        events: &'a UnboundedSender<Event>,
    ) -> Self {
        Converger {
            job,
            session: OnceCell::new(),
            ssh,
            progress: Progress {
                host: &job.target.label,
                events,
            },
            apply,
        }
    }

    /// The host's connection: the one an earlier step parked, or a new one.
    async fn session(&self) -> Result<&Session, EngineError> {
        self.session
            .get_or_try_init(|| async {
                self.progress.phase(Phase::Connect);
                Ok(Session::connect(&self.job.target, self.ssh).await?)
            })
            .await
    }
    async fn run(&self, mode: Mode) -> Outcome {
        let mut report = HostReport::new(Status::Ok);
        let mut applied = Applied::default();
        match self.converge(mode, &mut report, &mut applied).await {
            Ok(()) => {
                let touched = !report.changed_files.is_empty()
                    || !report.restarted.is_empty()
                    || !report.reloaded.is_empty();
                report.status = if touched { Status::Changed } else { Status::Ok };
            }
            Err(e) => {
                report.status = match e.is_unreachable() {
                    true => Status::Unreachable,
                    false => Status::Failed,
                };
                report.error = Some(e.to_string());
                applied.interrupted = !applied.pushed.is_empty();
            }
        }
        if !matches!(mode, Mode::Check { .. }) {
            applied.restarted.clone_from(&report.restarted);
            applied.reloaded.clone_from(&report.reloaded);
        }
        Outcome { report, applied }
    }

    async fn converge(
        &self,
        mode: Mode,
        report: &mut HostReport,
        applied: &mut Applied,
    ) -> Result<(), EngineError> {
        let mut state = self.probe().await?;
        let target = &self.job.target;
        let who = || match target.sudo_user() {
            Some(user) => format!("{user} (via sudo)"),
            None => format!("SSH user {}", target.user),
        };
        if !state.unwritable_dirs.is_empty() {
            return Err(EngineError::Unwritable {
                dirs: state.unwritable_dirs.join(", "),
                who: who(),
            });
        }
        let engine = &self.job.plan.container_engine;
        match &state.engine_problem {
            Some(EngineProblem::Missing) => {
                return Err(EngineError::NoEngine {
                    engine: engine.clone(),
                })
            }
            Some(EngineProblem::Unusable(words)) => {
                return Err(EngineError::EngineUnusable {
                    engine: engine.clone(),
                    who: who(),
                    detail: last_lines(words),
                })
            }
            None => {}
        }
        self.check_dirs(&state)?;
        let services = &merged_services(&self.job.plan.services, &state)?;
        // The probe looks for a killed rotation's backups only when this run keeps none.
        let stale = state.files.keys().filter(|p| is_backup(p)).count();
        if stale > 0 && !matches!(mode, Mode::Check { .. }) {
            let paths = backed_up_paths(self.job);
            self.exec(
                "remove stale backups",
                &script::remove_backups(&paths, BACKUP_SUFFIX),
            )
            .await?;
            self.progress.detail(format!(
                "removed {stale} backup(s) left by an interrupted rotation"
            ));
        }
        // Services kolla-ansible applied (no marker, the desired content on the host): did
        // their containers start after those files were written? One more round trip, once.
        let unknown: Vec<&ServicePlan> = services
            .iter()
            .filter(|s| needs_start_times(s, &state))
            .collect();
        if !unknown.is_empty() {
            let containers: Vec<&str> = unknown.iter().map(|s| s.name.as_str()).collect();
            let files: Vec<&str> = unknown
                .iter()
                .flat_map(|s| s.files.iter().map(|f| f.path.as_str()))
                .collect();
            let script = script::start_times(engine, &containers, &files);
            let out = self.exec("read start times", &script).await?;
            state.add_start_times(&String::from_utf8_lossy(&out));
        }
        let decisions: Vec<Decision> = services
            .iter()
            .map(|s| {
                decide(s, &state).map_err(|_| EngineError::MissingContainer {
                    engine: engine.clone(),
                    container: s.name.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        let to_push: Vec<&DesiredFile> = services
            .iter()
            .zip(&decisions)
            .flat_map(|(s, d)| s.files.iter().filter(|f| d.push.contains(&f.path)))
            .collect();
        report.changed_files = to_push.iter().map(|f| f.path.clone()).collect();
        for d in decisions.iter().filter(|d| d.action != Action::Nothing) {
            self.progress.detail(format!("{}: {}", d.service, d.reason));
        }

        if let Mode::Check { diff } = mode {
            for d in &decisions {
                match d.action {
                    Action::Restart => report.restarted.push(d.service.clone()),
                    Action::Reload => report.reloaded.push(d.service.clone()),
                    Action::Adopt => report.adopted.push(d.service.clone()),
                    Action::Nothing => {}
                }
            }
            if diff {
                report.diffs = self.diffs(&to_push).await?;
            }
            return Ok(());
        }

        // Work to do: connect now, so that a failed connection fails the host here rather
        // than inside a step that falls back on failure (a reload would turn into a restart).
        let acts = decisions.iter().any(|d| d.action != Action::Nothing);
        if !to_push.is_empty() || (acts && mode == Mode::Converge) {
            self.session().await?;
        }
        if !to_push.is_empty() {
            self.progress.phase(Phase::Push);
            let backup = self
                .apply
                .backup_suffix
                .as_deref()
                .map(|suffix| script::Backup {
                    suffix,
                    // The markers too: a rollback must leave them describing the restored files.
                    paths: to_push
                        .iter()
                        .map(|f| f.path.as_str())
                        .chain(services.iter().map(|s| s.marker_path.as_str()))
                        .collect(),
                });
            let stdin = script::push(&to_push, backup.as_ref());
            let out = remote::exec_stdin(self.session().await?, "push files", &stdin, None).await?;
            applied.pushed = report.changed_files.clone();
            if !String::from_utf8_lossy(&out).contains(script::PUSH_DONE) {
                return Err(EngineError::Incomplete("push files".into()));
            }
        }
        if mode == Mode::WriteOnly {
            return Ok(());
        }
        for (service, decision) in services.iter().zip(&decisions) {
            let identity = state.identity(service).expect("decided: it exists");
            let text = Marker::for_service(service, identity).render();
            let marker = MarkerWrite {
                path: &service.marker_path,
                text: &text,
            };
            if decision.action == Action::Reload && self.apply.force_restart {
                self.progress
                    .detail(format!("{}: restarting (restart requested)", service.name));
            } else if decision.action == Action::Reload {
                self.progress.phase(Phase::Reload);
                if self.reload(service, Some(&marker)).await {
                    report.reloaded.push(service.name.clone());
                    continue;
                }
            } else if decision.action == Action::Adopt {
                self.progress.phase(Phase::Mark);
                self.after_restart(service, Some(&marker), true).await?;
                report.adopted.push(service.name.clone());
                continue;
            } else if decision.action == Action::Nothing {
                continue;
            }
            self.restart(service, Some(&marker)).await?;
            report.restarted.push(service.name.clone());
        }
        Ok(())
    }

    /// Applies a service's changed files live (the playbook's reload commands); false when
    /// that failed and a restart must do it.
    async fn reload(&self, service: &ServicePlan, marker: Option<&MarkerWrite<'_>>) -> bool {
        let Some(reload) = &service.reload else {
            return false;
        };
        let commands = script::exec_in(self.job.place(service), &reload.exec, marker);
        match self.exec("reload", &commands).await {
            Ok(_) => true,
            Err(e) => {
                self.progress
                    .detail(format!("{}: {e}; restarting instead", service.name));
                false
            }
        }
    }

    /// Restart, wait until ready, run the post-restart steps, then record the applied state.
    async fn restart(
        &self,
        service: &ServicePlan,
        marker: Option<&MarkerWrite<'_>>,
    ) -> Result<(), EngineError> {
        self.progress.phase(Phase::Restart);
        let ready = service.ready.as_ref().map(|r| Readiness {
            argv: &r.exec,
            retries: r.retries,
            delay_ms: r.delay_ms,
        });
        let last_step = service.after_restart.len();
        let restart = script::restart(
            self.job.place(service),
            ready,
            marker.filter(|_| last_step == 0),
        );
        self.exec(&format!("restart {}", service.name), &restart)
            .await?;
        self.after_restart(service, marker, false).await
    }

    /// The playbook's post-restart steps (e.g. the SASL user), the marker written with the
    /// last; `mark_alone`: write the marker even when there are no steps.
    async fn after_restart(
        &self,
        service: &ServicePlan,
        marker: Option<&MarkerWrite<'_>>,
        mark_alone: bool,
    ) -> Result<(), EngineError> {
        let place = self.job.place(service);
        let last_step = service.after_restart.len();
        if last_step == 0 && mark_alone {
            let command = script::exec_in(place, &[], marker);
            return self
                .exec("write the applied marker", &command)
                .await
                .map(drop);
        }
        for (i, step) in service.after_restart.iter().enumerate() {
            let last = i + 1 == last_step;
            if last && marker.is_some() {
                self.progress.phase(Phase::Mark);
            }
            let input = step.stdin.as_deref().unwrap_or_default();
            let marker = marker.filter(|_| last);
            let command = script::exec_with_input(place, &step.exec, input, marker);
            let what = format!("{} after restart: {}", service.name, step.exec.join(" "));
            self.exec(&what, &command).await?;
        }
        Ok(())
    }

    /// Re-applies restored files: reload where the run reloaded (restart if that fails),
    /// restart where it restarted or failed half-way. The restored markers already describe
    /// the restored files, so none is written.
    async fn reapply(&self, applied: &Applied, force_restart: bool) -> Result<String, EngineError> {
        let mut done = Vec::new();
        for service in &self.job.plan.services {
            let touched = service
                .files
                .iter()
                .any(|f| applied.pushed.contains(&f.path));
            let reloaded = applied.reloaded.contains(&service.name);
            let restarted = applied.restarted.contains(&service.name);
            // A failed run may have stopped a service before it could report it.
            let interrupted = applied.interrupted && touched;
            if !(reloaded || restarted || interrupted) {
                continue;
            }
            if !force_restart && !restarted && service.reload.is_some() {
                self.progress.phase(Phase::Reload);
                if self.reload(service, None).await {
                    done.push(format!("reloaded {}", service.name));
                    continue;
                }
            }
            self.restart(service, None).await?;
            done.push(format!("restarted {}", service.name));
        }
        Ok(if done.is_empty() {
            "nothing to re-apply".into()
        } else {
            done.join(", ")
        })
    }

    async fn probe(&self) -> Result<HostState, EngineError> {
        let probe = probe_script(
            self.job,
            self.apply.backup_suffix.is_some(),
            script::Facts::None,
        );
        // The facts round trip may have carried this very probe moments ago.
        if let Some(probed) = self.job.probed.as_deref() {
            let fresh = probed.at.elapsed() < crate::facts::PROBE_FRESH;
            if fresh && probed.target == self.job.target && probed.script == probe.digest() {
                self.progress.phase(Phase::Probe);
                return Ok(HostState::parse(&String::from_utf8_lossy(&probed.output)));
            }
        }
        self.session().await?;
        self.progress.phase(Phase::Probe);
        let out = self.exec("probe", &probe).await?;
        Ok(HostState::parse(&String::from_utf8_lossy(&out)))
    }

    /// Every service directory, and every directory above it, must be a real directory that
    /// only root (or the user virtfleet acts as) can change: otherwise another user could
    /// swap files or plant symlinks under virtfleet. Group write is accepted for group root
    /// (Kolla makes its config directories 0770 root:root).
    fn check_dirs(&self, state: &HostState) -> Result<(), EngineError> {
        let target = &self.job.target;
        let acting = target.sudo_user().unwrap_or(&target.user);
        for dir in guarded_dirs(&self.job.plan.services) {
            let Some(have) = state.files.get(dir) else {
                continue; // absent: the push creates it, 0700
            };
            let problem = match (have.kind, have.mode) {
                (Some(FileKind::Symlink), _) => "is a symlink".to_string(),
                (Some(FileKind::Directory), _)
                    if !have
                        .owner
                        .as_deref()
                        .is_some_and(|o| o == "root" || o == acting) =>
                {
                    format!(
                        "is owned by {}, not root",
                        have.owner.as_deref().unwrap_or("?")
                    )
                }
                (Some(FileKind::Directory), Some(mode)) if mode & 0o002 != 0 => {
                    "is writable by every user".to_string()
                }
                (Some(FileKind::Directory), Some(mode))
                    if mode & 0o020 != 0 && have.group.as_deref() != Some("root") =>
                {
                    format!(
                        "is writable by group {}",
                        have.group.as_deref().unwrap_or("?")
                    )
                }
                (Some(FileKind::Directory), Some(_)) => continue,
                _ => "is not a directory".to_string(),
            };
            return Err(EngineError::UnsafeDir {
                dir: dir.to_string(),
                problem,
            });
        }
        Ok(())
    }

    /// Unified diffs of what would change, with secrets redacted on both sides.
    async fn diffs(&self, files: &[&DesiredFile]) -> Result<Vec<String>, EngineError> {
        let mut diffs = Vec::new();
        for file in files {
            if file.secret {
                diffs.push(format!(
                    "--- {path}\n+++ {path}\n(secret file changed; contents not shown)\n",
                    path = file.path
                ));
                continue;
            }
            let old = DesiredFile {
                content: self.exec("read file", &script::cat(&file.path)).await?,
                ..(*file).clone()
            };
            let (old, new) = (redact(&old), redact(file));
            let diff = similar::TextDiff::from_lines(&old, &new);
            diffs.push(
                diff.unified_diff()
                    .context_radius(3)
                    .header(&file.path, &file.path)
                    .to_string(),
            );
        }
        Ok(diffs)
    }

    /// Runs a script; a non-zero exit becomes an error naming what failed and its stderr.
    async fn exec(&self, what: &str, script: &Script) -> Result<Vec<u8>, EngineError> {
        remote::exec(self.session().await?, what, script, None).await
    }
}

/// The probe of `job`'s plan (see [`script::probe`]); `backing_up`: the run keeps backups
/// (then stale backup names are not looked for); `facts`: what to gather in the same trip.
pub(crate) fn probe_script(job: &HostJob, backing_up: bool, facts: script::Facts) -> Script {
    let services = &job.plan.services;
    let backups = match backing_up {
        true => Vec::new(),
        false => backup_names(&backed_up_paths(job)),
    };
    let dirs = guarded_dirs(services);
    let paths: Vec<&str> = services
        .iter()
        .flat_map(|s| s.files.iter().map(|f| f.path.as_str()))
        .chain(backups.iter().map(String::as_str))
        .chain(dirs.iter().copied())
        .collect();
    // Merged files' contents, and those whose settings decide a transition (once each).
    let mut merged: Vec<&str> = services
        .iter()
        .flat_map(|s| s.files.iter().filter(|f| f.merge.is_some()))
        .map(|f| f.path.as_str())
        .collect();
    for path in &job.plan.held_paths {
        if !merged.contains(&path.as_str()) {
            merged.push(path);
        }
    }
    let markers: Vec<&str> = services.iter().map(|s| s.marker_path.as_str()).collect();
    let containers: Vec<&str> = services
        .iter()
        .filter(|s| s.runs == Runs::Container)
        .map(|s| s.name.as_str())
        .collect();
    let engine = &job.plan.container_engine;
    script::probe(&paths, &merged, &markers, engine, &containers, facts)
}

/// Whether converging `job` on a host in `state` would neither write nor run anything there
/// (every file as desired, every service applied with it in its current container, no
/// leftover backups): a converge that finds this from the probe kept with the facts needs
/// no connection.
pub(crate) fn nothing_to_do(job: &HostJob, state: &HostState) -> bool {
    let clean = state.unwritable_dirs.is_empty()
        && state.engine_problem.is_none()
        && !state.files.keys().any(|p| is_backup(p));
    let Ok(services) = merged_services(&job.plan.services, state) else {
        return false;
    };
    // (A service without a marker, whose start times would be read, is never Nothing.)
    clean
        && services.iter().all(|service| {
            decide(service, state).is_ok_and(|d| d.action == Action::Nothing && d.push.is_empty())
        })
}

/// The services with every merged file resolved against the host's current version, so
/// that everything after the probe compares, pushes and marks the exact bytes to be written.
fn merged_services(
    services: &[ServicePlan],
    state: &HostState,
) -> Result<Vec<ServicePlan>, EngineError> {
    services
        .iter()
        .map(|service| {
            let files = service
                .files
                .iter()
                .map(|f| f.merged_into(state.contents.get(&f.path).map(|t| t.as_bytes())))
                .collect::<Result<_, _>>()
                .map_err(EngineError::Merge)?;
            Ok(ServicePlan {
                files,
                ..service.clone()
            })
        })
        .collect()
}

/// The last lines of a remote program's message, on one line (as remote stderr is shown).
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.trim().lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
}

/// The service directories (and those of their files) and every directory above them up to
/// `/`: whoever can write any of them can swap the service directory for one of their own
/// (OpenSSH checks the path to authorized_keys the same way).
fn guarded_dirs(services: &[ServicePlan]) -> Vec<&str> {
    let mut dirs: Vec<&str> = Vec::new();
    // A file may live outside its service directory (an absolute `dest`).
    let file_dirs = services
        .iter()
        .flat_map(|s| s.files.iter())
        .filter_map(|f| f.path.rsplit_once('/').map(|(parent, _)| parent));
    for start in services.iter().map(|s| s.dir.as_str()).chain(file_dirs) {
        let mut dir = start.trim_end_matches('/');
        while !dir.is_empty() {
            dirs.push(dir);
            dir = dir.rsplit_once('/').map_or("", |(parent, _)| parent);
        }
        dirs.push("/");
    }
    dirs.sort_unstable();
    dirs.dedup();
    dirs
}

/// Whether `path` is one of the names [`backup_names`] gives.
fn is_backup(path: &str) -> bool {
    path.ends_with(BACKUP_SUFFIX) || path.ends_with(&format!("{BACKUP_SUFFIX}.absent"))
}

/// The names a rotation's backups of `paths` take on the host.
fn backup_names(paths: &[&str]) -> Vec<String> {
    paths
        .iter()
        .flat_map(|p| {
            [
                format!("{p}{BACKUP_SUFFIX}"),
                format!("{p}{BACKUP_SUFFIX}.absent"),
            ]
        })
        .collect()
}

/// Every path a backed-up run may have kept a copy of: the plan's files and the markers.
pub(crate) fn backed_up_paths(job: &HostJob) -> Vec<&str> {
    job.plan
        .services
        .iter()
        .flat_map(|s| {
            s.files
                .iter()
                .map(|f| f.path.as_str())
                .chain([s.marker_path.as_str()])
        })
        .collect()
}

pub(crate) async fn roll_back(
    job: &HostJob,
    applied: &Applied,
    suffix: &str,
    force_restart: bool,
    ssh: &ClientOptions,
    events: &UnboundedSender<Event>,
) -> Result<String, EngineError> {
    let apply = ApplyOptions::default();
    let converger = Converger::new(job, ssh, &apply, events);
    converger.session().await?;
    let paths = backed_up_paths(job);
    // Only what this run replaced: a backup left by an earlier, killed run is not restored.
    let replaced: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| {
            let marker = job.plan.services.iter().any(|s| s.marker_path == *p);
            // Markers are backed up with the files they describe, so only when files were.
            applied.pushed.iter().any(|c| c == p) || (marker && !applied.pushed.is_empty())
        })
        .collect();
    let result = async {
        converger.progress.phase(Phase::Push);
        converger
            .exec("restore backups", &script::restore(&replaced, suffix))
            .await?;
        converger.reapply(applied, force_restart).await
    }
    .await;
    // Whatever happened, leave no copies of old keys behind.
    let _ = converger
        .exec("remove backups", &script::remove_backups(&paths, suffix))
        .await;
    if let Some(session) = converger.session.into_inner() {
        session.close().await;
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use virtfleet_plan::HostPlan;
    use virtfleet_ssh::Target;

    use super::*;
    use crate::state::FileState;
    use crate::testutil::{file, service};

    fn job() -> HostJob {
        let files = vec![file("/k/svc/a.conf", "aa"), file("/k/svc/b.pem", "bb")];
        let service = service(files, &[]);
        HostJob {
            target: Target::new("h", "127.0.0.1", "root"),
            plan: Arc::new(HostPlan {
                host: "h".into(),
                vars: Default::default(),
                services: vec![service],
                container_engine: "podman".into(),
                tls: None,
                cert_dirs: Vec::new(),
                audit: None,
                let_through: Vec::new(),
                reads_interfaces: false,
                held_paths: Vec::new(),
            }),
            probed: None,
        }
    }

    /// A host holding every file of `job` as planned, applied in container `c1`, which runs.
    fn applied(job: &HostJob) -> HostState {
        let service = &job.plan.services[0];
        let mut state = HostState::default();
        for f in &service.files {
            let held = FileState {
                mode: Some(f.mode),
                owner: Some("root".into()),
                group: Some("root".into()),
                kind: Some(FileKind::File),
                sha256: Some(f.sha256.clone()),
            };
            state.files.insert(f.path.clone(), held);
        }
        let marker = Marker::for_service(service, "c1");
        state.markers.insert(service.marker_path.clone(), marker);
        state.containers.insert("svc".into(), "c1".into());
        state
    }

    #[test]
    fn only_a_host_holding_and_running_everything_as_planned_has_nothing_to_do() {
        let job = job();
        assert!(nothing_to_do(&job, &applied(&job)));

        let mut changed = applied(&job);
        changed.files.get_mut("/k/svc/a.conf").unwrap().sha256 = Some("xx".into());
        assert!(!nothing_to_do(&job, &changed), "a file to push");

        let mut recreated = applied(&job);
        recreated.containers.insert("svc".into(), "c2".into());
        assert!(!nothing_to_do(&job, &recreated), "a restart");

        let mut kolla_applied = applied(&job);
        kolla_applied.markers.clear();
        assert!(!nothing_to_do(&job, &kolla_applied), "adopt or restart");

        let mut backups = applied(&job);
        let backup = format!("/k/svc/a.conf{BACKUP_SUFFIX}");
        let held = backups.files["/k/svc/a.conf"].clone();
        backups.files.insert(backup, held);
        assert!(!nothing_to_do(&job, &backups), "backups to remove");

        let mut unwritable = applied(&job);
        unwritable.unwritable_dirs.push("/k/svc".into());
        assert!(!nothing_to_do(&job, &unwritable), "an error to report");
    }
}
