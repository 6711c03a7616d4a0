//! `virtfleet certs`: validate certificate sets, report live expiry, run a small CA.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Subcommand;
use serde::Serialize;
use virtfleet_pki::{issue_leaf, parse_certs, write_atomic, CertKind, LeafRequest, Severity};
use virtfleet_plan::{CertRole, TlsPlan, TlsSpec};

use crate::args::GlobalArgs;
use crate::inputs::{self, default_user, InputErrors, Inputs, DEFAULT_WARN_DAYS};

/// The roles whose files hold certificates (never keys).
const CERTIFICATES: [CertRole; 3] = [CertRole::Ca, CertRole::ServerCert, CertRole::ClientCert];

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Validate every host's certificate set (no SSH, unless names come from facts): parse, key match, chain, SAN, usage, dates.
    Check {
        /// Warn about certificates expiring within this many days.
        #[arg(long, default_value_t = DEFAULT_WARN_DAYS)]
        warn_days: u32,
    },
    /// Ask every host what its deployed certificates hold now, sorted by expiry.
    Expiry {
        /// Warn about certificates expiring within this many days.
        #[arg(long, default_value_t = DEFAULT_WARN_DAYS)]
        warn_days: u32,
    },
    /// Create a CA in the shared certificate directory (the playbook's last cert_search
    /// entry; key mode 0600).
    InitCa {
        /// Days the CA is valid.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Replace an existing CA (hosts then need new pairs and a rotation).
        #[arg(long)]
        force: bool,
    },
    /// Issue server and client pairs per host into its own certificate directory (the
    /// playbook's first cert_search entry), and QEMU's where QEMU-native TLS is on.
    Issue {
        /// Days each new pair is valid (never beyond the CA).
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Re-issue pairs expiring within this many days (or issued by another CA).
        #[arg(long, default_value_t = DEFAULT_WARN_DAYS)]
        renew_days: u32,
    },
}

pub async fn run(global: &GlobalArgs, command: CertsCommand) -> Result<ExitCode, InputErrors> {
    if let CertsCommand::InitCa { days, force } = command {
        // One CA for the fleet, wherever the first playbook keeps it.
        return init_ca(global, days, force);
    }
    // With several playbooks, each play's hosts in turn; the first failure's exit code.
    let plays = global.plays();
    if plays.len() > 1 && global.report.is_some() {
        return Err(InputErrors::one(
            "certs: --report with several playbooks would keep one play's certificates only; \
             write one report per playbook (one --playbook per run)",
        ));
    }
    let mut outcome = ExitCode::SUCCESS;
    for play in plays {
        let code = match command {
            CertsCommand::Check { warn_days } => check(&play, warn_days).await?,
            CertsCommand::Expiry { warn_days } => expiry(&play, warn_days).await?,
            CertsCommand::Issue { days, renew_days } => issue(&play, days, renew_days).await?,
            CertsCommand::InitCa { .. } => unreachable!("handled above"),
        };
        if outcome == ExitCode::SUCCESS {
            outcome = code;
        }
    }
    Ok(outcome)
}

async fn check(global: &GlobalArgs, warn_days: u32) -> Result<ExitCode, InputErrors> {
    let inputs = Inputs::load_with_facts(global).await?;
    let hosts = inputs.plan_all(&default_user())?;
    let findings = inputs::check_certs(&hosts, warn_days);
    let now = SystemTime::now();
    let mut rows = Vec::new();
    for host in &hosts {
        if host.plan.tls.is_none() {
            println!(
                "{}: no certificates of a TLS server here (TLS off, certificates not managed, or \
                 served by another playbook's service, e.g. the host's libvirtd)",
                host.target.label
            );
            continue;
        }
        let sets = host.plan.tls.iter().flat_map(|tls| &tls.sets);
        let files = std::iter::once(None)
            .chain(sets.map(|set| Some(set.as_str())))
            .flat_map(|set| {
                // A set's CA is the main one's: listed once.
                CERTIFICATES
                    .into_iter()
                    .filter(move |role| set.is_none() || *role != CertRole::Ca)
                    .filter_map(move |role| host.plan.set_file(set, role))
            });
        for file in files {
            for info in parse_certs(&file.content).unwrap_or_default() {
                rows.push(CertRow {
                    host: host.target.label.clone(),
                    path: file.source.display().to_string(),
                    subject: info.subject.clone(),
                    not_after: info.not_after_utc(),
                    days_left: info.days_left(now),
                    fingerprint: info.fingerprint_sha256.clone(),
                });
            }
        }
    }
    print_table(&rows);
    for f in &findings {
        let label = if f.severity == Severity::Error {
            "error"
        } else {
            "warning"
        };
        eprintln!("{label}: {f}");
    }
    if let Some(path) = &global.report {
        write_json(
            path,
            &serde_json::json!({
                "command": "certs check",
                "certificates": rows,
                "findings": findings.iter().map(|f| serde_json::json!({
                    "severity": if f.is_error() { "error" } else { "warning" },
                    "host": f.host, "path": f.path, "message": f.message,
                })).collect::<Vec<_>>(),
            }),
        );
    }
    let errors = findings.iter().filter(|f| f.is_error()).count();
    println!(
        "certs check: {} hosts, {} errors, {} warnings",
        hosts.len(),
        errors,
        findings.len() - errors
    );
    Ok(if errors > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Serialize)]
struct CertRow {
    host: String,
    path: String,
    subject: String,
    not_after: String,
    days_left: i64,
    fingerprint: String,
}

fn print_table(rows: &[CertRow]) {
    let mut rows: Vec<&CertRow> = rows.iter().collect();
    rows.sort_by_key(|r| (r.days_left, r.host.clone(), r.path.clone()));
    // Columns as wide as their longest value, so paths of any length line up.
    let width = |head: &str, of: &dyn Fn(&CertRow) -> usize| {
        rows.iter()
            .map(|r| of(r))
            .max()
            .unwrap_or(0)
            .max(head.len())
    };
    let host = width("HOST", &|r| r.host.len());
    let path = width("FILE", &|r| r.path.len());
    println!(
        "{:<host$} {:>9}  {:<23}  {:<path$}  SUBJECT",
        "HOST", "DAYS LEFT", "NOT AFTER", "FILE"
    );
    for r in rows {
        println!(
            "{:<host$} {:>9}  {:<23}  {:<path$}  {}",
            r.host, r.days_left, r.not_after, r.path, r.subject
        );
    }
}

async fn expiry(global: &GlobalArgs, warn_days: u32) -> Result<ExitCode, InputErrors> {
    let mut inputs = Inputs::load(global)?;
    let gathering_failed = inputs.gather_needed_facts(global).await;
    let hosts = inputs.plan_all(&default_user())?;
    let options = global.ssh_options();
    let now = SystemTime::now();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(global.forks(hosts.len())));
    let mut tasks = tokio::task::JoinSet::new();
    for host in hosts {
        let options = options.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            // Certificates (never keys) the host's services were given, in one round trip.
            let paths: Vec<&str> = host
                .plan
                .files_in_roles(&CERTIFICATES)
                .map(|f| f.path.as_str())
                .collect();
            let result = virtfleet_engine::remote::read_files(
                &host.target,
                &options,
                &paths,
                virtfleet_engine::remote::After::Close,
            )
            .await
            .map(|files| {
                files
                    .into_iter()
                    .filter_map(|(path, file)| Some((path, file?.content)))
                    .collect::<Vec<_>>()
            });
            (host.target.label, result)
        });
    }
    let mut rows = Vec::new();
    let mut unreachable = gathering_failed.len();
    for (host, report) in &gathering_failed {
        let e = report.error.as_deref().unwrap_or_default();
        eprintln!("error: {host}: {}", crate::output::terminal_safe(e));
    }
    while let Some(joined) = tasks.join_next().await {
        let Ok((host, result)) = joined else {
            unreachable += 1;
            continue;
        };
        match result {
            Ok(files) => {
                for (path, pem) in files {
                    match parse_certs(&pem) {
                        Ok(infos) => rows.extend(infos.into_iter().map(|info| CertRow {
                            host: host.clone(),
                            path: path.clone(),
                            days_left: info.days_left(now),
                            not_after: info.not_after_utc(),
                            subject: info.subject,
                            fingerprint: info.fingerprint_sha256,
                        })),
                        Err(e) => {
                            let e = crate::output::terminal_safe(&e.to_string());
                            eprintln!("error: {host}: {path}: {e}");
                        }
                    }
                }
            }
            Err(e) => {
                unreachable += 1;
                eprintln!(
                    "error: {host}: {}",
                    crate::output::terminal_safe(&e.to_string())
                );
            }
        }
    }
    print_table(&rows);
    let expired = rows.iter().filter(|r| r.days_left < 0).count();
    let soon = rows
        .iter()
        .filter(|r| r.days_left >= 0 && r.days_left <= i64::from(warn_days))
        .count();
    for r in rows.iter().filter(|r| r.days_left <= i64::from(warn_days)) {
        let label = if r.days_left < 0 {
            "error: expired"
        } else {
            "warning: expires soon"
        };
        eprintln!("{label}: {}: {} ({} days)", r.host, r.path, r.days_left);
    }
    if let Some(path) = &global.report {
        write_json(
            path,
            &serde_json::json!({"command": "certs expiry", "certificates": rows}),
        );
    }
    println!(
        "certs expiry: {} certificates, {expired} expired, {soon} expiring within {warn_days} days",
        rows.len()
    );
    Ok(if expired > 0 || unreachable > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The playbook's certificate roles, for `certs init-ca` and `certs issue`.
fn tls_spec(inputs: &Inputs) -> Result<&TlsSpec, InputErrors> {
    inputs.playbook.tls.as_ref().ok_or_else(|| {
        InputErrors(vec![format!(
            "{}: the playbook has no tls: section (no certificates to manage)",
            inputs.playbook.path.display()
        )])
    })
}

/// The shared certificate directory: the last of a host's cert_search directories.
fn ca_dir(inputs: &Inputs) -> Result<PathBuf, InputErrors> {
    let dirs = inputs.cert_dirs(&inputs.hosts[0])?;
    dirs.last().cloned().ok_or_else(|| {
        InputErrors(vec![format!(
            "{}: cert_search is empty",
            inputs.playbook.path.display()
        )])
    })
}

fn init_ca(global: &GlobalArgs, days: u32, force: bool) -> Result<ExitCode, InputErrors> {
    // No host is reached: no open files to reserve for them.
    let inputs = Inputs::read(global)?;
    let spec = tls_spec(&inputs)?;
    let dir = ca_dir(&inputs)?;
    let (cert_path, key_path) = (
        dir.join(spec.file_name(CertRole::Ca)),
        dir.join(&spec.ca_key),
    );
    if cert_path.exists() && !force {
        return Err(InputErrors(vec![format!(
            "{}: a CA already exists (pass --force to replace it)",
            cert_path.display()
        )]));
    }
    let io_err = |p: &Path, e: std::io::Error| InputErrors(vec![format!("{}: {e}", p.display())]);
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let (cert, key) = virtfleet_pki::init_ca(&virtfleet_pki::dated_name("virtfleet CA"), days)
        .map_err(|e| InputErrors(vec![e.to_string()]))?;
    write_atomic(&key_path, key.as_bytes(), virtfleet_pki::KEY_MODE)
        .map_err(|e| io_err(&key_path, e))?;
    write_atomic(&cert_path, cert.as_bytes(), virtfleet_pki::CERT_MODE)
        .map_err(|e| io_err(&cert_path, e))?;
    println!(
        "CA written: {} (key {}, mode 0600)",
        cert_path.display(),
        key_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn issue(global: &GlobalArgs, days: u32, renew_days: u32) -> Result<ExitCode, InputErrors> {
    let inputs = Inputs::load_with_facts(global).await?;
    let spec = tls_spec(&inputs)?;
    let dir = ca_dir(&inputs)?;
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| {
            InputErrors(vec![format!(
                "{}: {e} (run `virtfleet certs init-ca` first)",
                p.display()
            )])
        })
    };
    let ca_path = dir.join(spec.file_name(CertRole::Ca));
    let ca_cert = read(&ca_path)?;
    let ca_key = read(&dir.join(&spec.ca_key))?;
    parse_certs(ca_cert.as_bytes())
        .map_err(|e| InputErrors(vec![format!("{}: {e}", ca_path.display())]))?;
    // Each host's directories and TLS identity, resolved once: checked together first, never
    // signing one host's name or address for another (a host's facts are its own word).
    let resolved = inputs
        .hosts
        .iter()
        .map(|host| Ok((host, inputs.tls(host)?)))
        .collect::<Result<Vec<_>, InputErrors>>()?;
    let identities: Vec<(&str, &TlsPlan)> = resolved
        .iter()
        .filter_map(|(host, (_, tls))| Some((host.as_str(), tls.as_ref()?)))
        .collect();
    let clashes = inputs.clashes(&identities);
    if !clashes.is_empty() {
        return Err(InputErrors(clashes));
    }
    let now = SystemTime::now();
    let mut issued = BTreeMap::new();
    let mut errors = Vec::new();
    for (host, (dirs, tls)) in resolved {
        let (Some(host_dir), Some(tls)) = (dirs.first(), tls) else {
            errors.push(format!(
                "{host}: TLS is off for this host; nothing to issue"
            ));
            continue;
        };
        let hostname = tls.server_name.clone();
        let mut dns = vec![hostname.clone()];
        if &hostname != host {
            dns.push(host.clone());
        }
        let ips: Vec<IpAddr> = tls.address.parse().into_iter().collect();
        // The main set, then the host's other sets (their subjects with the set's unit).
        let sets = std::iter::once((&spec.files, None)).chain(
            spec.sets
                .iter()
                .filter(|set| tls.sets.contains(&set.name))
                .map(|set| (&set.files, Some(set.unit.as_str()))),
        );
        let pairs = sets.flat_map(|(files, unit)| {
            [
                (CertKind::Server, CertRole::ServerCert, CertRole::ServerKey),
                (CertKind::Client, CertRole::ClientCert, CertRole::ClientKey),
            ]
            .map(|(kind, cert, key)| (kind, &files[&cert], &files[&key], unit))
        });
        for (kind, cert_name, key_name, unit) in pairs {
            let cert_path = host_dir.join(cert_name);
            let key_path = host_dir.join(key_name);
            // A server certificate must name the host as its peers reach it today.
            let reached_as = (kind == CertKind::Server).then_some((hostname.as_str(), &ips[..]));
            if !needs_issue(&cert_path, &ca_cert, renew_days, now, reached_as) {
                continue;
            }
            let request = LeafRequest {
                kind,
                host: &hostname,
                unit,
                dns_names: &dns,
                ips: &ips,
                days,
            };
            match issue_leaf(&ca_cert, &ca_key, &request) {
                Ok((cert, key)) => {
                    let written = std::fs::create_dir_all(host_dir)
                        .and_then(|_| {
                            write_atomic(&key_path, key.as_bytes(), virtfleet_pki::KEY_MODE)
                        })
                        .and_then(|_| {
                            write_atomic(&cert_path, cert.as_bytes(), virtfleet_pki::CERT_MODE)
                        });
                    match written {
                        Ok(()) => *issued.entry(host.clone()).or_insert(0) += 1,
                        Err(e) => errors.push(format!("{}: {e}", cert_path.display())),
                    }
                }
                Err(e) => errors.push(format!("{host}: {e}")),
            }
        }
    }
    for (host, n) in &issued {
        println!("{host}: issued {n} certificate(s)");
    }
    println!(
        "certs issue: {} hosts got new certificates, {} up to date",
        issued.len(),
        inputs.hosts.len() - issued.len()
    );
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(InputErrors(errors))
    }
}

/// A pair needs issuing when missing, unreadable, expiring soon, not signed by the current
/// CA (checked by signature: a re-created CA keeps its name, not its key), or, for a server
/// certificate (`reached_as`: the name and addresses peers use), when its SAN leaves out
/// that name or an address (the host was renamed or readdressed).
fn needs_issue(
    cert_path: &Path,
    ca_pem: &str,
    renew_days: u32,
    now: SystemTime,
    reached_as: Option<(&str, &[IpAddr])>,
) -> bool {
    let Ok(pem) = std::fs::read(cert_path) else {
        return true;
    };
    let Some(leaf) = parse_certs(&pem).ok().and_then(|c| c.into_iter().next()) else {
        return true;
    };
    let uncovered = reached_as.is_some_and(|(name, ips)| {
        !leaf.dns_names.iter().any(|n| n.eq_ignore_ascii_case(name))
            || ips.iter().any(|ip| !leaf.ip_addresses.contains(ip))
    });
    uncovered
        || leaf.days_left(now) <= i64::from(renew_days)
        || !virtfleet_pki::signed_by_any(&pem, ca_pem.as_bytes()).unwrap_or(false)
}

fn write_json(path: &Path, value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("json") + "\n";
    if let Err(e) = write_atomic(path, text.as_bytes(), 0o644) {
        eprintln!("error: cannot write report {}: {e}", path.display());
    }
}
