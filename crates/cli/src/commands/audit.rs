//! `virtfleet audit`: read-only OSSN-0007 audit. Per host one round trip reads its libvirtd,
//! SASL and nova settings (the playbook's `audit:` paths, first existing of each kind), and
//! the workstation tries an unauthenticated libvirt RPC call on its unencrypted port.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use virtfleet_audit::reach::{self, Reach};
use virtfleet_audit::{Answer, CertsSeen, Finding, Observed, SeenFile, Severity};
use virtfleet_engine::{remote, wire, HostJob};

use crate::args::GlobalArgs;
use crate::inputs::{default_user, pki_role, InputErrors, Inputs, DEFAULT_WARN_DAYS};
use virtfleet_plan::CertRole;

#[derive(Args)]
pub struct AuditArgs {
    /// Exit 1 when any finding is at least this severe: low, medium, high, critical.
    #[arg(long, default_value = "high", value_parser = parse_severity)]
    fail_on: Severity,
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    Severity::parse(text).ok_or_else(|| format!("{text:?}: one of low, medium, high, critical"))
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Serialize)]
struct HostAudit {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    findings: Vec<Finding>,
}

pub async fn run(global: &GlobalArgs, args: AuditArgs) -> Result<ExitCode, InputErrors> {
    // Every play's hosts, each audited once (by the first playbook that names it), and all
    // in one ring of port tests.
    let mut jobs: Vec<HostJob> = Vec::new();
    let mut gathering_failed = BTreeMap::new();
    for play in global.plays() {
        let mut inputs = Inputs::load(&play)?;
        gathering_failed.extend(inputs.gather_needed_facts(&play).await);
        // Certificates are not checked: an audit must work on a fleet that has none yet.
        let planned = inputs.plan_all(&default_user())?;
        if let Some(job) = planned.iter().find(|j| j.plan.audit.is_none()) {
            return Err(InputErrors(vec![format!(
                "{}: the playbook has no audit: section; nothing to audit ({})",
                job.target.label,
                inputs.playbook.path.display()
            )]));
        }
        for job in planned {
            if !jobs.iter().any(|j| j.target.label == job.target.label) {
                jobs.push(job);
            }
        }
    }
    let options = global.ssh_options();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(global.forks(jobs.len())));
    let mut tasks = tokio::task::JoinSet::new();
    // Each host, in its own round trip, asks the next one's ports (the last asks the first).
    let peers: Vec<Option<Peer>> = (0..jobs.len())
        .map(|i| Peer::of(&jobs[(i + 1) % jobs.len()]).filter(|_| jobs.len() > 1))
        .collect();
    let mut ports_of = BTreeMap::new();
    for (job, peer) in jobs.into_iter().zip(peers) {
        if let Some(peer) = &peer {
            ports_of.insert(peer.name.clone(), peer.ports.clone());
        }
        let (options, permits) = (options.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = audit_host(&job, peer.as_ref(), &options).await;
            (job.target.label, result)
        });
    }
    let mut hosts = BTreeMap::new();
    for (name, report) in gathering_failed {
        let failed = HostAudit {
            status: "unreachable",
            error: report.error,
            findings: Vec::new(),
        };
        hosts.insert(name, failed);
    }
    let mut native_tls = BTreeMap::new();
    let mut results = Vec::new();
    // Destination → (asked from, its ports as that host reached them).
    let mut reached: BTreeMap<String, (String, BTreeMap<u16, Reach>)> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok((name, result)) = joined else { continue };
        if let Ok(seen) = &result {
            if let Some(on) = seen.native_tls {
                native_tls.insert(name.clone(), on);
            }
            if let Some((peer, ports)) = &seen.reach {
                reached.insert(peer.clone(), (name.clone(), ports.clone()));
            }
        }
        results.push((name, result));
    }
    let mut fleet_findings = virtfleet_audit::fleet_findings(&native_tls);
    for (name, result) in results {
        let result = result.map(|seen| {
            let mut findings = seen.findings;
            findings.extend(fleet_findings.remove(&name));
            match (reached.get(&name), ports_of.get(&name)) {
                (Some((from, reach)), Some(ports)) => {
                    let observed = Observed {
                        files: &seen.files,
                        certs: None,
                        cert_sets: &[],
                        tcp_probe: None,
                    };
                    findings.extend(reach::findings(&observed, ports, from, reach));
                }
                (None, Some(_)) if seen.files.contains_key("libvirtd") => findings.push(Finding {
                    id: "PORT-UNTESTED",
                    severity: Severity::Low,
                    evidence: "no peer could test its ports (unreachable, or no bash there)".into(),
                }),
                _ => {}
            }
            virtfleet_audit::sort_findings(&mut findings);
            findings
        });
        let entry = match result {
            Ok(findings) => HostAudit {
                status: if findings.is_empty() {
                    "ok"
                } else {
                    "findings"
                },
                error: None,
                findings,
            },
            Err(e) => HostAudit {
                status: "unreachable",
                error: Some(e),
                findings: Vec::new(),
            },
        };
        hosts.insert(name, entry);
    }
    print_table(&hosts);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for finding in hosts.values().flat_map(|h| &h.findings) {
        *counts.entry(finding.severity.name()).or_default() += 1;
    }
    let unreachable = hosts.values().filter(|h| h.error.is_some()).count();
    let failing = hosts
        .values()
        .flat_map(|h| &h.findings)
        .any(|f| f.severity >= args.fail_on);
    println!(
        "audit: {} hosts, {} critical, {} high, {} medium, {} low, {unreachable} unreachable",
        hosts.len(),
        counts.get("critical").unwrap_or(&0),
        counts.get("high").unwrap_or(&0),
        counts.get("medium").unwrap_or(&0),
        counts.get("low").unwrap_or(&0),
    );
    if let Some(path) = &global.report {
        let report = serde_json::json!({
            "command": "audit",
            "hosts": hosts,
            "summary": {"hosts": hosts.len(), "unreachable": unreachable, "findings": counts},
        });
        let text = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
        if let Err(e) = virtfleet_pki::write_atomic(path, text.as_bytes(), 0o644) {
            eprintln!("error: cannot write report {}: {e}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(if failing || unreachable > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A host whose ports another asks about: its name, address and ports.
struct Peer {
    name: String,
    address: String,
    ports: reach::Ports,
}

impl Peer {
    fn of(job: &HostJob) -> Option<Peer> {
        let audit = job.plan.audit.as_ref()?;
        let ports = reach::Ports {
            tcp: audit.tcp_port,
            tls: audit.tls_port,
            migration: audit.migration_ports.clone()?,
        };
        Some(Peer {
            name: job.target.label.clone(),
            address: audit.address.clone(),
            ports,
        })
    }
}

/// What one host's round trip showed.
struct Seen {
    findings: Vec<Finding>,
    /// Whether its nova asks for QEMU-native TLS (for the fleet's findings).
    native_tls: Option<bool>,
    /// Its libvirtd, SASL and nova files: kind → (path, text).
    files: BTreeMap<String, (String, String)>,
    /// The peer it asked, and how it reached each of the peer's ports.
    reach: Option<(String, BTreeMap<u16, Reach>)>,
}

/// One round trip for the files (and the next host's ports as this one reaches them), and
/// the live probe of the unencrypted port, side by side.
async fn audit_host(
    job: &HostJob,
    peer: Option<&Peer>,
    ssh: &virtfleet_ssh::ClientOptions,
) -> Result<Seen, String> {
    let Some(plan) = &job.plan.audit else {
        return Ok(Seen {
            findings: Vec::new(),
            native_tls: None,
            files: BTreeMap::new(),
            reach: None,
        });
    };
    let paths: Vec<&str> = plan
        .files
        .values()
        .chain(plan.certs.values())
        .chain(plan.cert_sets.iter().flat_map(|set| set.files.values()))
        .flatten()
        .map(String::as_str)
        .collect();
    let read = async {
        match peer {
            Some(peer) => {
                let ports = peer.ports.all();
                remote::read_files_and_reach(&job.target, ssh, &paths, &peer.address, &ports)
                    .await
                    .map(|(files, reach)| (files, reach.map(|r| (peer.name.clone(), r))))
            }
            None => remote::read_files(&job.target, ssh, &paths, remote::After::Close)
                .await
                .map(|files| (files, None)),
        }
    };
    let probe = virtfleet_audit::rpc::probe(&plan.address, plan.tcp_port, PROBE_TIMEOUT);
    let (read, answer) = tokio::join!(read, probe);
    let (held, reach) = read.map_err(|e| e.to_string())?;
    // None: the host could not test (no bash); said on the peer's behalf.
    let reach = reach.map(|(peer, ports)| {
        let ports = ports
            .into_iter()
            .map(|(port, state)| {
                let state = match state {
                    wire::Reach::Open => Reach::Open,
                    wire::Reach::Closed => Reach::Closed,
                    wire::Reach::Filtered => Reach::Filtered,
                };
                (port, state)
            })
            .collect();
        (peer, ports)
    });
    let mut files = BTreeMap::new();
    for (kind, candidates) in &plan.files {
        let found = candidates
            .iter()
            .find_map(|p| Some((p.clone(), held.get(p)?.clone()?)));
        if let Some((path, bytes)) = found {
            files.insert(
                kind.clone(),
                (path, String::from_utf8_lossy(&bytes.content).into_owned()),
            );
        }
    }
    // Each role's first path the host holds.
    let seen_files = |roles: &BTreeMap<CertRole, Vec<String>>| {
        let mut seen = BTreeMap::new();
        for (role, candidates) in roles {
            let found = candidates
                .iter()
                .find_map(|p| Some((p, held.get(p)?.as_ref()?)));
            if let Some((path, file)) = found {
                let file = SeenFile {
                    path: path.clone(),
                    content: file.content.clone(),
                    permissions: file.permissions(),
                    group: file.group.clone(),
                };
                seen.insert(pki_role(*role), file);
            }
        }
        seen
    };
    // The CA this run would push, when the config directory has one: the fleet's.
    let fleet_ca = job
        .plan
        .tls_file(CertRole::Ca)
        .map(|f| f.content.as_slice());
    let certs_seen = |files, key_group| CertsSeen {
        host: &job.target.label,
        files,
        server_name: plan.server_name.as_deref(),
        address: Some(plan.address.as_str()),
        fleet_ca,
        now: std::time::SystemTime::now(),
        warn_days: DEFAULT_WARN_DAYS,
        key_group,
    };
    let certs = certs_seen(seen_files(&plan.certs), None);
    // A set the host holds none of is not there to check (QEMU-native TLS off).
    let cert_sets: Vec<(&str, CertsSeen)> = plan
        .cert_sets
        .iter()
        .map(|set| {
            let seen = certs_seen(seen_files(&set.files), set.key_group.as_deref());
            (set.name.as_str(), seen)
        })
        .filter(|(_, seen)| {
            seen.files
                .keys()
                .any(|role| *role != virtfleet_pki::Role::Ca)
        })
        .collect();
    let answer: Answer = answer;
    let observed = Observed {
        files: &files,
        certs: Some(&certs),
        cert_sets: &cert_sets,
        tcp_probe: Some(&answer),
    };
    let native_tls = virtfleet_audit::native_tls(&observed);
    let findings = virtfleet_audit::audit(&observed);
    Ok(Seen {
        findings,
        native_tls,
        files,
        reach,
    })
}

fn print_table(hosts: &BTreeMap<String, HostAudit>) {
    println!(
        "{:<12} {:<9} {:<30} EVIDENCE",
        "HOST", "SEVERITY", "FINDING"
    );
    for (host, audit) in hosts {
        if let Some(error) = &audit.error {
            let error = crate::output::terminal_safe(error);
            println!("{host:<12} {:<9} {:<30} {error}", "-", "UNREACHABLE");
        }
        for f in &audit.findings {
            println!(
                "{host:<12} {:<9} {:<30} {}",
                f.severity.name(),
                f.id,
                virtfleet_pki::display_safe(&f.evidence)
            );
        }
    }
}
