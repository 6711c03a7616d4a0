//! `virtfleet certs`: validate certificate sets, report live expiry, run a small CA.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Subcommand;
use serde::Serialize;
use virtfleet_pki::{issue_pair, parse_certs, write_atomic, CertKind, Severity};
use virtfleet_ssh::Session;

use crate::inputs::{self, InputErrors, Inputs};
use crate::GlobalArgs;

pub const DEFAULT_WARN_DAYS: u32 = 30;

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Validate every host's certificate set (no SSH): parse, key match, chain, SAN, usage, dates.
    Check {
        /// Warn about certificates expiring within this many days.
        #[arg(long, default_value_t = DEFAULT_WARN_DAYS)]
        warn_days: u32,
    },
    /// Ask every host what its deployed certificates hold now, sorted by expiry.
    Expiry {
        #[arg(long, default_value_t = DEFAULT_WARN_DAYS)]
        warn_days: u32,
    },
    /// Create a CA under <configdir>/config/nova/nova-libvirt/ (cacert.pem, cakey.pem 0600).
    InitCa {
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Replace an existing CA (hosts then need new pairs and a rotation).
        #[arg(long)]
        force: bool,
    },
    /// Issue server and client pairs per host into <configdir>/config/nova/nova-libvirt/<host>/.
    Issue {
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Re-issue pairs expiring within this many days (or issued by another CA).
        #[arg(long, default_value_t = DEFAULT_WARN_DAYS)]
        renew_days: u32,
    },
}

pub async fn run(global: &GlobalArgs, command: CertsCommand) -> Result<ExitCode, InputErrors> {
    match command {
        CertsCommand::Check { warn_days } => check(global, warn_days),
        CertsCommand::Expiry { warn_days } => expiry(global, warn_days).await,
        CertsCommand::InitCa { days, force } => init_ca(global, days, force),
        CertsCommand::Issue { days, renew_days } => issue(global, days, renew_days),
    }
}

fn check(global: &GlobalArgs, warn_days: u32) -> Result<ExitCode, InputErrors> {
    let inputs = Inputs::load(global)?;
    let hosts = inputs.plan_all(&crate::default_user())?;
    let findings = inputs::check_certs(&hosts, warn_days);
    let now = SystemTime::now();
    let mut rows = Vec::new();
    for host in &hosts {
        let Some(certs) = inputs::host_certs(host) else {
            println!(
                "{}: no certificates managed (libvirt_tls off or not managed)",
                host.name
            );
            continue;
        };
        for kind in virtfleet_pki::KollaFile::ALL {
            let Some(file) = certs.file(kind) else {
                continue;
            };
            if kind.is_private_key() {
                continue;
            }
            for info in parse_certs(&file.bytes).unwrap_or_default() {
                rows.push(CertRow {
                    host: host.name.clone(),
                    path: file.path.display().to_string(),
                    subject: info.subject.clone(),
                    not_after: info.not_after.to_string(),
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
    println!(
        "{:<12} {:>9}  {:<26} {:<40} SUBJECT",
        "HOST", "DAYS LEFT", "NOT AFTER", "FILE"
    );
    for r in rows {
        println!(
            "{:<12} {:>9}  {:<26} {:<40} {}",
            r.host, r.days_left, r.not_after, r.path, r.subject
        );
    }
}

/// Certificates (never keys) a host's containers were given.
const DEPLOYED_CERTS: [&str; 5] = [
    "/etc/kolla/nova-libvirt/cacert.pem",
    "/etc/kolla/nova-libvirt/servercert.pem",
    "/etc/kolla/nova-libvirt/clientcert.pem",
    "/etc/kolla/nova-compute/cacert.pem",
    "/etc/kolla/nova-compute/clientcert.pem",
];

async fn expiry(global: &GlobalArgs, warn_days: u32) -> Result<ExitCode, InputErrors> {
    let inputs = Inputs::load(global)?;
    let hosts = inputs.plan_all(&crate::default_user())?;
    let options = global.ssh_options();
    let now = SystemTime::now();
    let mut tasks = tokio::task::JoinSet::new();
    for host in hosts {
        let options = options.clone();
        tasks.spawn(async move {
            let result = async {
                let session = Session::connect(&host.target, &options)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut files = Vec::new();
                for path in DEPLOYED_CERTS {
                    let out = session
                        .exec(&format!("cat {path} 2>/dev/null; true"), b"")
                        .await
                        .map_err(|e| e.to_string())?;
                    if !out.stdout.is_empty() {
                        files.push((path.to_string(), out.stdout));
                    }
                }
                session.close().await;
                Ok::<_, String>(files)
            }
            .await;
            (host.name, result)
        });
    }
    let mut rows = Vec::new();
    let mut unreachable = 0;
    while let Some(joined) = tasks.join_next().await {
        let (host, result) = joined.expect("task");
        match result {
            Ok(files) => {
                for (path, pem) in files {
                    match parse_certs(&pem) {
                        Ok(infos) => rows.extend(infos.into_iter().map(|info| CertRow {
                            host: host.clone(),
                            path: path.clone(),
                            days_left: info.days_left(now),
                            not_after: info.not_after.to_string(),
                            subject: info.subject,
                            fingerprint: info.fingerprint_sha256,
                        })),
                        Err(e) => eprintln!("error: {host}: {path}: {e}"),
                    }
                }
            }
            Err(e) => {
                unreachable += 1;
                eprintln!("error: {host}: {e}");
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

fn ca_dir(global: &GlobalArgs) -> PathBuf {
    global.configdir.join("config/nova/nova-libvirt")
}

fn init_ca(global: &GlobalArgs, days: u32, force: bool) -> Result<ExitCode, InputErrors> {
    let dir = ca_dir(global);
    let (cert_path, key_path) = (dir.join("cacert.pem"), dir.join("cakey.pem"));
    if cert_path.exists() && !force {
        return Err(InputErrors(vec![format!(
            "{}: a CA already exists (pass --force to replace it)",
            cert_path.display()
        )]));
    }
    let io_err = |p: &Path, e: std::io::Error| InputErrors(vec![format!("{}: {e}", p.display())]);
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let (cert, key) = virtfleet_pki::init_ca("virtfleet libvirt CA", days)
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

fn issue(global: &GlobalArgs, days: u32, renew_days: u32) -> Result<ExitCode, InputErrors> {
    let inputs = Inputs::load(global)?;
    let dir = ca_dir(global);
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| {
            InputErrors(vec![format!(
                "{}: {e} (run `virtfleet certs init-ca` first)",
                p.display()
            )])
        })
    };
    let ca_cert = read(&dir.join("cacert.pem"))?;
    let ca_key = read(&dir.join("cakey.pem"))?;
    parse_certs(ca_cert.as_bytes())
        .map_err(|e| InputErrors(vec![format!("{}: {e}", dir.join("cacert.pem").display())]))?;
    let now = SystemTime::now();
    let mut issued = BTreeMap::new();
    let mut errors = Vec::new();
    for host in &inputs.hosts {
        let vars = inputs.resolved_vars(host)?;
        let text = |name: &str| vars.get(name).and_then(|v| v.as_str()).map(str::to_string);
        let hostname = text("migration_hostname").unwrap_or_else(|| host.clone());
        let address = text("migration_interface_address").unwrap_or_else(|| host.clone());
        let host_dir = dir.join(host);
        let mut dns = vec![hostname.clone()];
        if &hostname != host {
            dns.push(host.clone());
        }
        let ips: Vec<IpAddr> = address.parse().into_iter().collect();
        for (kind, name) in [(CertKind::Server, "server"), (CertKind::Client, "client")] {
            let cert_path = host_dir.join(format!("{name}cert.pem"));
            let key_path = host_dir.join(format!("{name}key.pem"));
            if !needs_issue(&cert_path, &ca_cert, renew_days, now) {
                continue;
            }
            match issue_pair(&ca_cert, &ca_key, kind, &hostname, &dns, &ips, days) {
                Ok((cert, key)) => {
                    let written = std::fs::create_dir_all(&host_dir)
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

/// A pair needs issuing when missing, unreadable, expiring soon, or not signed by the
/// current CA (checked by signature: a re-created CA keeps its name, not its key).
fn needs_issue(cert_path: &Path, ca_pem: &str, renew_days: u32, now: SystemTime) -> bool {
    let Ok(pem) = std::fs::read(cert_path) else {
        return true;
    };
    let Some(leaf) = parse_certs(&pem).ok().and_then(|c| c.into_iter().next()) else {
        return true;
    };
    leaf.days_left(now) <= i64::from(renew_days)
        || !virtfleet_pki::signed_by_any(&pem, ca_pem.as_bytes()).unwrap_or(false)
}

fn write_json(path: &Path, value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("json") + "\n";
    if let Err(e) = write_atomic(path, text.as_bytes(), 0o644) {
        eprintln!("error: cannot write report {}: {e}", path.display());
    }
}
