//! Transitions: moving a fleet between two settings that cannot reach each other (nova
//! dialling `qemu+tcp` while a peer's libvirtd listens on TLS only) in fleet-wide phases, so
//! that no pair of hosts loses its connection on the way. The playbook says, as data, which
//! settings a host holds now (`held`, read from the files `audit:` names), when a host is
//! still on the old side (`pending`), and per phase the variables that shape it, the
//! services it leaves alone (`keep`) and when a host is past it (`done`). The phase to start
//! at follows from what the hosts hold, so a run killed in any phase resumes.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value as Json;
use virtfleet_inventory::Vars;

use crate::conf::{settings, Repeated};
use crate::plan::{AuditPlan, HostContext, PlanInput};
use crate::PlanError;

/// The variable templates and expressions read a host's held settings from: name → value
/// (a string, or none where the host does not set it).
pub const HELD_VAR: &str = "virtfleet_held";

/// `transitions:` in the playbook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionSpec {
    /// Shown in the run's output.
    pub name: String,
    /// Expression: the variables ask for the new side (e.g. `libvirt_tls | bool`).
    #[serde(deserialize_with = "crate::playbook::de_expression")]
    pub when: String,
    /// Settings read from each host before planning: name → where.
    pub held: BTreeMap<String, HeldSpec>,
    /// Expression on `virtfleet_held`: this host is still on the old side. While any host
    /// is, the transition runs.
    #[serde(deserialize_with = "crate::playbook::de_expression")]
    pub pending: String,
    /// In order; the last is the desired plan itself (no `vars`, `keep` or `done`).
    pub phases: Vec<PhaseSpec>,
    /// The way back, refused unless the run allows a downgrade.
    #[serde(default)]
    pub downgrade: Option<Downgrade>,
    /// Said of each host they hold for while the transition runs (e.g. a listener kept open
    /// without authentication).
    #[serde(default)]
    pub warnings: Vec<Downgrade>,
}

/// A setting of a file `audit:` names (its kind: the first existing path is read). With a
/// `section`, the file is INI as oslo.config reads it (the last setting wins); without, as
/// libvirt and Cyrus SASL read theirs (the first wins).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldSpec {
    pub file: String,
    #[serde(default)]
    pub section: Option<String>,
    pub key: String,
    /// The value is an integer (as libvirt reads `listen_tcp = 1`): held as a number.
    #[serde(default)]
    pub int: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    pub title: String,
    /// Expression on `virtfleet_held`: this host is past the phase already.
    #[serde(default, deserialize_with = "crate::playbook::de_opt_expression")]
    pub done: Option<String>,
    /// Variables set for this phase over every other (templated, like any variable).
    #[serde(default)]
    pub vars: Vars,
    /// Services this phase leaves exactly as the host has them (no file, no restart).
    #[serde(default)]
    pub keep: Vec<String>,
    /// Before the next phase, every host's TLS listener must let a peer in (the playbook's
    /// `tls.connect`, run by the next host inside its TLS service).
    #[serde(default)]
    pub verify: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Downgrade {
    #[serde(deserialize_with = "crate::playbook::de_expression")]
    pub when: String,
    pub message: String,
}

/// Load-time checks: a phase before the last says when it is done, the last is the plan
/// itself, held settings come from files `audit:` names, kept services exist.
pub(crate) fn check(
    transitions: &[TransitionSpec],
    audit_kinds: &BTreeSet<&str>,
    services: &BTreeSet<&str>,
) -> Result<(), String> {
    let mut names = BTreeSet::new();
    for t in transitions {
        let at = |e: String| format!("transitions: {}: {e}", t.name);
        let Some((last, before)) = t.phases.split_last() else {
            return Err(at("no phases".into()));
        };
        if before.is_empty() {
            return Err(at("one phase is no transition: at least two".into()));
        }
        if last.done.is_some() || !last.vars.is_empty() || !last.keep.is_empty() || last.verify {
            return Err(at(format!(
                "the last phase ({}) is the desired plan itself: no done, vars, keep or verify",
                last.title
            )));
        }
        for phase in before {
            if phase.done.is_none() {
                return Err(at(format!("phase {}: no done", phase.title)));
            }
            if let Some(s) = phase.keep.iter().find(|s| !services.contains(s.as_str())) {
                return Err(at(format!("phase {}: keep: no service {s}", phase.title)));
            }
        }
        for (name, held) in &t.held {
            if !audit_kinds.contains(held.file.as_str()) {
                return Err(at(format!(
                    "held {name}: file {:?} is not a kind of audit: files",
                    held.file
                )));
            }
            if !names.insert(name.clone()) {
                return Err(at(format!("held {name}: named twice")));
            }
        }
    }
    Ok(())
}

/// The paths to read on a host for every transition's held settings (each kind's candidate
/// paths, in `audit:` order).
pub fn held_paths(transitions: &[TransitionSpec], audit: &AuditPlan) -> Vec<String> {
    let kinds: BTreeSet<&str> = transitions
        .iter()
        .flat_map(|t| t.held.values().map(|h| h.file.as_str()))
        .collect();
    let mut seen = BTreeSet::new();
    kinds
        .iter()
        .filter_map(|kind| audit.files.get(*kind))
        .flatten()
        .filter(|p| seen.insert(p.as_str()))
        .cloned()
        .collect()
}

/// Each held setting's value on the host (None where its file or key is missing), from the
/// files read at [`held_paths`]: the variable [`HELD_VAR`]. The host wrote these files, so a
/// value must be plain text (no template syntax, quotes, `;` or `#`, which could say more to
/// libvirt than to this reader) and an `int` one an integer; else the host's error, naming
/// the file and key.
pub fn held_values(
    transitions: &[TransitionSpec],
    audit: &AuditPlan,
    files: &BTreeMap<String, Option<Vec<u8>>>,
) -> Result<Json, String> {
    let text = |kind: &str| {
        let paths = audit.files.get(kind)?;
        let (path, found) = paths
            .iter()
            .find_map(|p| Some((p, files.get(p)?.as_deref()?)))?;
        Some((path, String::from_utf8_lossy(found).into_owned()))
    };
    let mut held = serde_json::Map::new();
    for (name, spec) in transitions.iter().flat_map(|t| &t.held) {
        // The audit's file kinds: nova's INI, Cyrus SASL's file, libvirt's.
        let repeated = match (&spec.section, spec.file.as_str()) {
            (Some(_), _) => Repeated::LastWins,
            (None, "sasl") => Repeated::Sasl,
            (None, _) => Repeated::FirstWins,
        };
        let Some((path, text)) = text(&spec.file) else {
            held.insert(name.clone(), Json::Null);
            continue;
        };
        let mut all = settings(&text, spec.section.as_deref(), repeated);
        let Some(setting) = all.remove(&spec.key) else {
            held.insert(name.clone(), Json::Null);
            continue;
        };
        let bad = |why: &str| format!("{path}:{}: {}: {why}", setting.line, spec.key);
        let plain = |c: char| c.is_ascii_graphic() && !"{}\"'\\;#`$".contains(c) || c == ' ';
        if !setting.value.chars().all(plain) {
            return Err(bad(
                "a value virtfleet does not take from a host (not plain text)",
            ));
        }
        let value = match spec.int {
            true => Json::from(parse_int(&setting.value).ok_or_else(|| bad("not an integer"))?),
            false => Json::from(setting.value),
        };
        held.insert(name.clone(), value);
    }
    Ok(Json::Object(held))
}

/// An integer as libvirt's parser takes one: an optional sign, then digits.
fn parse_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One transition as one host stands, from its variables and held settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTransition {
    /// The variables ask for the new side.
    pub wanted: bool,
    /// The host is still on the old side.
    pub pending: bool,
    /// Per phase but the last: the host is past it.
    pub done: Vec<bool>,
    /// The variables go back the other way: the playbook's message.
    pub downgrade: Option<String>,
    /// The playbook's warnings that hold for the host.
    pub warnings: Vec<String>,
}

/// Every transition's state on one host; `input.vars` holds [`HELD_VAR`].
pub fn host_transitions(input: &PlanInput) -> Result<Vec<HostTransition>, PlanError> {
    let ctx = HostContext::new(input)?;
    let mut out = Vec::new();
    for t in &input.playbook.transitions {
        let context = |what: &str| format!("transitions: {}: {what}", t.name);
        let wanted = ctx.eval_when(&t.when, &context("when"))?;
        let pending = wanted && ctx.eval_when(&t.pending, &context("pending"))?;
        let mut done = Vec::new();
        for phase in &t.phases[..t.phases.len() - 1] {
            let expr = phase.done.as_deref().unwrap_or("false");
            done.push(ctx.eval_when(expr, &context(&format!("{}: done", phase.title)))?);
        }
        let downgrade = match &t.downgrade {
            Some(d) if ctx.eval_when(&d.when, &context("downgrade"))? => {
                Some(d.message.trim().to_string())
            }
            _ => None,
        };
        let mut warnings = Vec::new();
        for w in &t.warnings {
            // Only while the host is still on the old side.
            if pending && ctx.eval_when(&w.when, &context("warnings"))? {
                warnings.push(w.message.trim().to_string());
            }
        }
        out.push(HostTransition {
            wanted,
            pending,
            done,
            downgrade,
            warnings,
        });
    }
    Ok(out)
}

/// The phase to start at (pure): None while no host is on the old side (one pass); else the
/// first phase some host is not past yet (the last when all are past every other).
pub fn start_phase(hosts: &[&HostTransition]) -> Option<usize> {
    if !hosts.iter().any(|h| h.pending) {
        return None;
    }
    let phases = hosts.iter().map(|h| h.done.len()).max().unwrap_or(0);
    let first_open = (0..phases).find(|&i| hosts.iter().any(|h| !h.done.get(i).unwrap_or(&false)));
    Some(first_open.unwrap_or(phases))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(pending: bool, done: &[bool]) -> HostTransition {
        HostTransition {
            wanted: true,
            pending,
            done: done.to_vec(),
            downgrade: None,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn the_phase_to_start_at_follows_from_what_hosts_hold() {
        // Nobody on the old side: no transition, whatever else holds.
        let fresh = host(false, &[false, false]);
        assert_eq!(start_phase(&[&fresh, &fresh]), None);
        // Day 0: everything left.
        let day0 = host(true, &[false, false]);
        assert_eq!(start_phase(&[&day0, &fresh]), Some(0));
        // Killed in phase 1: one host has its TLS listener, one not.
        let listening = host(true, &[true, false]);
        assert_eq!(start_phase(&[&listening, &day0]), Some(0));
        // Killed in phase 2: every host listens; one nova dials TLS.
        let dialling = host(true, &[true, true]);
        assert_eq!(start_phase(&[&listening, &dialling]), Some(1));
        // Killed in phase 3: one host closed its TCP listener (no longer pending).
        let closed = host(false, &[true, true]);
        assert_eq!(start_phase(&[&dialling, &closed]), Some(2));
    }

    #[test]
    fn held_settings_are_read_as_their_reader_reads_them() {
        let spec: Vec<TransitionSpec> = serde_yaml_ng::from_str(
            r#"
- name: t
  when: "true"
  pending: "true"
  held:
    listen_tcp: {file: libvirtd, key: listen_tcp, int: true}
    uri: {file: nova, section: libvirt, key: connection_uri}
    mech: {file: sasl, key: mech_list}
  phases: [{title: a, done: "true"}, {title: b}]
"#,
        )
        .unwrap();
        let audit = AuditPlan {
            files: [
                (
                    "libvirtd",
                    vec!["/k/libvirtd.conf", "/etc/libvirt/libvirtd.conf"],
                ),
                ("nova", vec!["/k/nova.conf"]),
                ("sasl", vec!["/k/sasl.conf"]),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
            .collect(),
            address: "a".into(),
            tcp_port: 16509,
            tls_port: 16514,
            certs: BTreeMap::new(),
            cert_sets: Vec::new(),
            server_name: None,
            migration_ports: None,
        };
        assert_eq!(
            held_paths(&spec, &audit),
            [
                "/k/libvirtd.conf",
                "/etc/libvirt/libvirtd.conf",
                "/k/nova.conf",
                "/k/sasl.conf"
            ]
        );
        let files: BTreeMap<String, Option<Vec<u8>>> = [
            ("/k/libvirtd.conf", None),
            (
                "/etc/libvirt/libvirtd.conf",
                Some("listen_tcp = 1 # on\nlisten_tcp = 0\n"),
            ),
            (
                "/k/nova.conf",
                Some("[libvirt]\nconnection_uri = a\n[LIBVIRT]\nconnection_uri = \"qemu+tcp://h/system\"\n"),
            ),
        ]
        .into_iter()
        .map(|(p, c)| (p.to_string(), c.map(|c: &str| c.as_bytes().to_vec())))
        .collect();
        let held = held_values(&spec, &audit, &files).unwrap();
        // libvirt: the first setting, the comment dropped; the Kolla path missing, the
        // host's own read; oslo.config: the last, any case of the section; no file: none.
        assert_eq!(
            held,
            serde_json::json!({"listen_tcp": 1, "uri": "qemu+tcp://h/system", "mech": null})
        );
        // What a hostile host might write: template syntax, a second libvirt statement, a
        // number that is not one. Each names the file, line and key.
        for (line, why) in [
            ("listen_tcp = 1\n", None),
            ("listen_tcp = '{{ secret }}'\n", Some("not plain text")),
            (
                "listen_tcp = '1; auth_tls = none'\n",
                Some("not plain text"),
            ),
            ("listen_tcp = yes\n", Some("not an integer")),
        ] {
            let mut files = files.clone();
            let host = Some(line.as_bytes().to_vec());
            files.insert("/etc/libvirt/libvirtd.conf".into(), host);
            let got = held_values(&spec, &audit, &files);
            match why {
                None => assert!(got.is_ok(), "{line}: {got:?}"),
                Some(why) => {
                    let e = got.unwrap_err();
                    assert!(
                        e.contains(why) && e.contains("/etc/libvirt/libvirtd.conf:1: listen_tcp"),
                        "{line}: {e}"
                    );
                }
            }
        }
    }
}
