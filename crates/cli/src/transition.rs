//! A converge's phases: when the playbook declares transitions (`transitions:`), read what
//! every host holds (one round trip each, over the connection the converge then uses),
//! decide whether one is under way and where to start, and plan each phase. Refuses a
//! downgrade the run does not allow, before any host is changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use virtfleet_engine::{facts, HostJob, HostReport, Status};
use virtfleet_plan::{HostTransition, TransitionSpec, HELD_VAR};
use virtfleet_rollout::ConvergePhase;

use crate::args::GlobalArgs;
use crate::inputs::{default_user, InputErrors, Prepared};

/// The run's phases: one (the plan itself) unless a transition is under way.
pub async fn phases(
    prepared: Prepared,
    global: &GlobalArgs,
    allow_downgrade: bool,
    one_pass_asked: bool,
) -> Result<Vec<ConvergePhase>, InputErrors> {
    let Prepared {
        mut inputs,
        jobs,
        mut not_reached,
        order,
        keep,
    } = prepared;
    let one_pass = |jobs, not_reached| {
        let hosts = Prepared::entries_of(jobs, not_reached, order.clone());
        Ok(vec![ConvergePhase {
            title: None,
            hosts,
            verify: false,
            verify_before: false,
        }])
    };
    let transitions = inputs.playbook.transitions.clone();
    // One host alone has no peer to keep connected.
    if transitions.is_empty() || inputs.group.len() < 2 {
        return one_pass(jobs, not_reached);
    }
    let mut jobs = jobs;
    let held = read_held(&mut jobs, &transitions, global, keep).await;
    let mut states: BTreeMap<String, Vec<HostTransition>> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut reached = Vec::new();
    for job in jobs {
        let host = job.target.label.clone();
        let values = match held.get(&host) {
            Some(Ok(values)) => values.clone(),
            Some(Err(e)) => {
                let report = HostReport::failed(Status::Failed, e.clone());
                not_reached.insert(host, report);
                continue;
            }
            None => {
                let why = "reading its settings failed".to_string();
                not_reached.insert(host, HostReport::failed(Status::Failed, why));
                continue;
            }
        };
        let overrides = [(HELD_VAR.to_string(), values)].into_iter().collect();
        inputs.overrides.insert(host.clone(), overrides);
        let vars = inputs.vars(&host);
        match virtfleet_plan::host_transitions(&inputs.plan_input(&host, &vars)) {
            Ok(mut found) => {
                // Files pushed but never applied (a run killed before the restart): the
                // host is past no phase, whatever its files say.
                if job.unsettled() == Some(true) {
                    for t in &mut found {
                        t.done.iter_mut().for_each(|d| *d = false);
                    }
                }
                for t in &found {
                    if let (Some(message), false) = (&t.downgrade, allow_downgrade) {
                        errors.push(format!(
                            "{host}: {message} (run with --allow-downgrade to go back anyway)"
                        ));
                    }
                }
                states.insert(host, found);
            }
            Err(e) => errors.push(e.to_string()),
        }
        reached.push(job);
    }
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    // At most one transition under way: the one to run, and where it starts.
    let mut under_way = transitions.iter().enumerate().filter_map(|(i, spec)| {
        let hosts: Vec<&HostTransition> = states.values().map(|s| &s[i]).collect();
        virtfleet_plan::start_phase(&hosts).map(|start| (spec, start))
    });
    let Some((spec, start)) = under_way.next() else {
        return one_pass(reached, not_reached);
    };
    if one_pass_asked {
        eprintln!(
            "warning: {}: in one pass (--one-pass), as hosts are reached",
            spec.name
        );
        return one_pass(reached, not_reached);
    }
    // A host not reached or not read may be on any side: from the first phase (which
    // changes no client), and the run stops there, failing that host.
    let start = match not_reached.is_empty() {
        true => start,
        false => 0,
    };
    if let Some((other, _)) = under_way.next() {
        return Err(InputErrors::one(format!(
            "{}: transitions {:?} and {:?} are both under way; one run moves one",
            inputs.playbook.path.display(),
            spec.name,
            other.name
        )));
    }
    let pending: Vec<&String> = states
        .iter()
        .filter(|(_, s)| s.iter().any(|t| t.pending))
        .map(|(h, _)| h)
        .collect();
    let left_out: Vec<&String> = inputs
        .group
        .iter()
        .filter(|h| !inputs.hosts.contains(h) && !not_reached.contains_key(*h))
        .collect();
    let count = spec.phases.len();
    let mut last = count;
    if !left_out.is_empty() {
        // Only the first phase changes no client: the others need every peer past it.
        if start > 0 {
            return Err(InputErrors::one(format!(
                "{}: is under way (phase {}/{count}) and continues only over the whole group \
                 {}: run without --limit ({} left out)",
                spec.name,
                start + 1,
                inputs.playbook.hosts,
                left_out.len()
            )));
        }
        eprintln!(
            "warning: {}: --limit leaves out {} host(s) of group {}: only phase 1/{count} runs; \
             run without --limit to finish",
            spec.name,
            left_out.len(),
            inputs.playbook.hosts
        );
        last = 1;
    }
    let warnings: Vec<String> = states
        .iter()
        .flat_map(|(host, found)| {
            let warnings = found.iter().flat_map(|t| &t.warnings);
            warnings.map(move |warning| format!("host {host}: {warning}"))
        })
        .collect();
    for warning in crate::inputs::one_line_per_problem(&warnings) {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "{}: {} host(s) still on the old side ({}); phases {}-{count} of {count}",
        spec.name,
        pending.len(),
        names(&pending),
        start + 1
    );
    let user = default_user();
    let held_only = inputs.overrides.clone();
    let hosts: Vec<String> = reached.iter().map(|j| j.target.label.clone()).collect();
    let mut phases = Vec::new();
    for (i, phase) in spec.phases.iter().enumerate().take(last).skip(start) {
        let jobs = match i + 1 == count {
            true => reached.clone(),
            false => {
                for host in &hosts {
                    let mut overrides = held_only[host].clone();
                    overrides.extend(phase.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
                    inputs.overrides.insert(host.clone(), overrides);
                }
                // A host whose held settings make its phase unplannable (a port out of
                // range) fails alone; the run stops at the end of this phase.
                let mut jobs = Vec::new();
                for (host, planned) in inputs.plan_each(&hosts, &user) {
                    match planned {
                        Ok(mut job) => {
                            std::sync::Arc::make_mut(&mut job.plan)
                                .services
                                .retain(|s| !phase.keep.contains(&s.name));
                            jobs.push(job);
                        }
                        Err(e) => {
                            let report = HostReport::failed(Status::Failed, e);
                            not_reached.insert(host, report);
                        }
                    }
                }
                jobs
            }
        };
        // Hosts not reached (or not plannable) fail the phase they are first missing from,
        // which stops the run before the next.
        let failed = std::mem::take(&mut not_reached);
        phases.push(ConvergePhase {
            title: Some(format!(
                "{}, phase {}/{count}: {}",
                spec.name,
                i + 1,
                phase.title
            )),
            hosts: Prepared::entries_of(jobs, failed, order.clone()),
            verify: phase.verify,
            // A resumed run checks first what the phase before it would have checked after.
            verify_before: phases.is_empty() && i > 0 && spec.phases[i - 1].verify,
        });
    }
    Ok(phases)
}

/// Each host's held settings ([`HELD_VAR`]), or why they could not be read: from the probe
/// its facts round trip carried, else from one probed now, which the converge then reuses
/// (one round trip per host either way).
async fn read_held(
    jobs: &mut [HostJob],
    transitions: &[TransitionSpec],
    global: &GlobalArgs,
    keep: facts::Keep,
) -> BTreeMap<String, Result<serde_json::Value, String>> {
    let unprobed: Vec<Arc<HostJob>> = jobs
        .iter()
        .filter(|j| j.held_contents().is_none())
        .map(|j| Arc::new(j.clone()))
        .collect();
    let forks = global.forks(unprobed.len().max(1));
    let mut probed = facts::probe_early(unprobed, &global.ssh_options(), forks, keep).await;
    let mut held = BTreeMap::new();
    for job in jobs {
        let host = job.target.label.clone();
        if let Some(result) = probed.remove(&host) {
            match result {
                Ok(probe) => job.probed = Some(probe),
                Err(e) => {
                    held.insert(host, Err(e.to_string()));
                    continue;
                }
            }
        }
        let (Some(audit), Some(contents)) = (&job.plan.audit, job.held_contents()) else {
            continue;
        };
        held.insert(
            host,
            virtfleet_plan::held_values(transitions, audit, &contents),
        );
    }
    held
}

fn names(hosts: &[&String]) -> String {
    const SHOWN: usize = 5;
    let mut text: Vec<&str> = hosts.iter().take(SHOWN).map(|h| h.as_str()).collect();
    let more = format!("and {} more", hosts.len().saturating_sub(SHOWN));
    if hosts.len() > SHOWN {
        text.push(&more);
    }
    text.join(", ")
}
