//! CA rollover without a flag day. When the desired CA bundle holds a CA some host does not
//! trust yet, or hosts still trust a CA that is no longer desired, the rotation runs in three
//! fleet-wide phases so that every pair of hosts can authenticate each other throughout:
//!
//! 1. every host trusts old and new CAs (its CA files = old CAs + desired bundle), leaf pairs
//!    as the host has them now;
//! 2. leaf pairs rotated to the desired ones, CA files still the combined bundle;
//! 3. CA files = the desired bundle: the old CA is trusted nowhere.
//!
//! The phase to resume at follows from what the hosts hold: while any host's leaf pairs are
//! not the desired ones, phases 1 and 2 still apply (hosts already done come out `ok`); once
//! all are, only phase 3 is left. Deciding is pure ([`start`], [`phases`]); [`plan`] reads
//! what it needs from the hosts. Files are found by their role, never by name.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};
use virtfleet_engine::{remote, HostJob};
use virtfleet_plan::{CertRole, DesiredFile};
use virtfleet_ssh::ClientOptions;

use crate::{Note, Observer};

/// One pass over the fleet, in batches.
#[derive(Clone)]
pub struct Phase {
    /// Shown when it starts, e.g. "phase 1/3: ...". None for a rotation in one pass.
    pub title: Option<String>,
    pub jobs: Vec<HostJob>,
}

/// What hosts hold now, by host then path; None for a missing file. A host that could not
/// be read is absent.
pub type Holdings = BTreeMap<String, BTreeMap<String, Option<Vec<u8>>>>;

/// Where a rotation starts, decided from the CA and leaf certificates the hosts hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// No CA changes: one pass.
    OnePass,
    /// Every host has its desired leaf pairs: only phase 3 (drop the old CAs) is left.
    DropOldCa,
    /// All three phases; `old_cas` is the PEM of the CAs trusted somewhere that are no
    /// longer desired (trusted beside the new ones until phase 3).
    Rollover { old_cas: String },
}

const LEAVES: [CertRole; 4] = [
    CertRole::ServerCert,
    CertRole::ClientCert,
    CertRole::ServerKey,
    CertRole::ClientKey,
];

/// Decides where the rotation starts (pure). `held` holds each host's CA and leaf
/// certificate files (not keys).
pub fn start(jobs: &[HostJob], held: &Holdings) -> Start {
    let desired_cas: BTreeSet<String> = jobs
        .iter()
        .flat_map(|j| j.plan.files_in_roles(&[CertRole::Ca]))
        .flat_map(|f| pem_blocks(&f.content))
        .map(|(fingerprint, _)| fingerprint)
        .collect();
    // CAs trusted somewhere that are no longer desired, by fingerprint (a stable order), with
    // the hosts trusting each.
    let mut old_cas: BTreeMap<String, (String, BTreeSet<&str>)> = BTreeMap::new();
    let mut read = 0;
    let mut new_ca_missing = false;
    let mut leaves_pending = false;
    for job in jobs {
        let Some(host) = held.get(&job.target.label) else {
            continue;
        };
        read += 1;
        for file in job.plan.files_in_roles(&[CertRole::Ca]) {
            let trusted = pem_blocks(held_content(host, file).unwrap_or(&[]));
            let trusted_fps: BTreeSet<&String> = trusted.iter().map(|(fp, _)| fp).collect();
            new_ca_missing |= pem_blocks(&file.content)
                .iter()
                .any(|(fp, _)| !trusted_fps.contains(fp));
            for (fp, pem) in trusted.iter().filter(|(fp, _)| !desired_cas.contains(fp)) {
                let entry = old_cas
                    .entry(fp.clone())
                    .or_insert((pem.clone(), BTreeSet::new()));
                entry.1.insert(&job.target.label);
            }
        }
        leaves_pending |= job
            .plan
            .files_in_roles(&CertRole::LEAF_CERTS)
            .any(|f| held_content(host, f) != Some(&f.content[..]));
    }
    if old_cas.is_empty() && !new_ca_missing {
        Start::OnePass
    } else if !leaves_pending {
        Start::DropOldCa
    } else {
        // The fleet's old CA is one every host trusts, or one that signed the certificates
        // of two hosts or more: a CA one host put in its own bundle (for certificates of its
        // own making) is not carried to the others.
        let shared = old_cas
            .into_values()
            .filter(|(pem, hosts)| hosts.len() == read || signed_hosts(jobs, held, pem) >= 2);
        Start::Rollover {
            old_cas: shared.map(|(pem, _)| pem).collect(),
        }
    }
}

/// How many hosts hold a leaf certificate `ca_pem` signed.
fn signed_hosts(jobs: &[HostJob], held: &Holdings, ca_pem: &str) -> usize {
    let signed =
        |leaf: &[u8]| virtfleet_pki::signed_by_any(leaf, ca_pem.as_bytes()).unwrap_or(false);
    jobs.iter()
        .filter(|j| {
            held.get(&j.target.label).is_some_and(|host| {
                j.plan
                    .files_in_roles(&CertRole::LEAF_CERTS)
                    .filter_map(|f| held_content(host, f))
                    .any(signed)
            })
        })
        .count()
}

/// CAs that are no longer desired and that some read hosts trust but not all, and that did
/// not sign two hosts' certificates: not carried to the others by a rollover. One line each:
/// the certificate's subject and who trusts it.
pub fn partly_trusted_cas(jobs: &[HostJob], held: &Holdings) -> Vec<String> {
    let desired: BTreeSet<String> = jobs
        .iter()
        .flat_map(|j| j.plan.files_in_roles(&[CertRole::Ca]))
        .flat_map(|f| pem_blocks(&f.content))
        .map(|(fingerprint, _)| fingerprint)
        .collect();
    let mut holders: BTreeMap<String, (String, BTreeSet<&str>)> = BTreeMap::new();
    let mut read = 0;
    for job in jobs {
        let Some(host) = held.get(&job.target.label) else {
            continue;
        };
        read += 1;
        for file in job.plan.files_in_roles(&[CertRole::Ca]) {
            for (fp, pem) in pem_blocks(held_content(host, file).unwrap_or(&[])) {
                if desired.contains(&fp) {
                    continue;
                }
                let entry = holders.entry(fp).or_insert((pem, BTreeSet::new()));
                entry.1.insert(&job.target.label);
            }
        }
    }
    holders
        .into_values()
        .filter(|(pem, hosts)| hosts.len() < read && signed_hosts(jobs, held, pem) < 2)
        .map(|(pem, hosts)| {
            let subject = virtfleet_pki::parse_certs(pem.as_bytes())
                .ok()
                .and_then(|c| c.into_iter().next())
                .map_or_else(|| "?".to_string(), |c| c.subject);
            let hosts: Vec<&str> = hosts.into_iter().collect();
            format!("{subject} (trusted by {} only)", hosts.join(", "))
        })
        .collect()
}

/// The hosts that keep their current leaf pairs through phase 1 (those holding any leaf
/// certificate): [`phases`] needs their current pairs, keys included.
pub fn keeping_leaves<'a>(jobs: &'a [HostJob], held: &Holdings) -> Vec<&'a HostJob> {
    jobs.iter()
        .filter(|j| {
            held.get(&j.target.label).is_some_and(|host| {
                j.plan
                    .files_in_roles(&CertRole::LEAF_CERTS)
                    .any(|f| held_content(host, f).is_some())
            })
        })
        .collect()
}

/// The phases from `start` (pure). `current` holds the leaf pairs (certificates and keys)
/// of the hosts that keep theirs through phase 1. `widened`, when the client certificates'
/// subjects change, is the same plan with every file but the certificates letting the old
/// subjects in beside the new (e.g. libvirtd's `tls_allowed_dn_list`): it stands in for the
/// plan until the last phase, which then drops the old subjects.
pub fn phases(
    jobs: Vec<HostJob>,
    widened: Option<Vec<HostJob>>,
    start: &Start,
    current: &Holdings,
) -> Vec<Phase> {
    let keeping = |jobs: &[HostJob]| -> Vec<HostJob> {
        jobs.iter()
            .map(|j| match current.get(&j.target.label) {
                Some(host) => keep_leaves(j, host),
                None => j.clone(),
            })
            .collect()
    };
    let phase3 = |jobs: Vec<HostJob>| Phase {
        title: Some("phase 3/3: drop the old CA: the CA files become the new CA bundle".into()),
        jobs,
    };
    let (old_cas, widened) = match (start, widened) {
        (Start::OnePass, None) => return vec![Phase { title: None, jobs }],
        (Start::DropOldCa, _) => return vec![phase3(jobs)],
        (Start::OnePass, Some(widened)) => {
            return vec![
                Phase {
                    title: Some(
                        "phase 1/3: let the new client certificate subjects in beside the old"
                            .into(),
                    ),
                    jobs: keeping(&widened),
                },
                Phase {
                    title: Some(
                        "phase 2/3: rotate leaf certificates (both subjects let in)".into(),
                    ),
                    jobs: widened,
                },
                Phase {
                    title: Some("phase 3/3: only the new subjects are let in".into()),
                    jobs,
                },
            ]
        }
        (Start::Rollover { old_cas }, widened) => {
            (old_cas, widened.unwrap_or_else(|| jobs.clone()))
        }
    };
    let trust_both: Vec<HostJob> = widened.iter().map(|j| with_bundle(j, old_cas)).collect();
    vec![
        Phase {
            title: Some(
                "phase 1/3: trust old and new CA: the CA files become old CA + new CA bundle"
                    .into(),
            ),
            jobs: keeping(&trust_both),
        },
        Phase {
            title: Some("phase 2/3: rotate leaf certificates (trusting both CAs)".into()),
            jobs: trust_both,
        },
        phase3(jobs),
    ]
}

/// The subjects (as libvirt matches them) of the client certificates hosts hold now that no
/// desired client certificate has: those a rotation must keep letting in until its end. Only
/// certificates the fleet's CAs signed count (the desired bundle, or during a rollover the
/// old CAs it trusts anyway): a host cannot get a subject of its choosing let in elsewhere.
pub fn old_client_subjects(jobs: &[HostJob], reading: &Reading) -> Vec<String> {
    let subject = |pem: &[u8]| virtfleet_pki::libvirt_dn(pem).ok();
    // The main set's only: a set's subjects (QEMU's) are on no list.
    let main = |f: &&DesiredFile| f.cert_set.is_none();
    let desired: BTreeSet<String> = jobs
        .iter()
        .flat_map(|j| j.plan.files_in_roles(&[CertRole::ClientCert]))
        .filter(main)
        .filter_map(|f| subject(&f.content))
        .collect();
    let mut trusted: Vec<u8> = match &reading.start {
        Start::Rollover { old_cas } => old_cas.as_bytes().to_vec(),
        _ => Vec::new(),
    };
    let bundles: BTreeSet<&[u8]> = jobs
        .iter()
        .flat_map(|j| j.plan.files_in_roles(&[CertRole::Ca]))
        .map(|f| f.content.as_slice())
        .collect();
    for bundle in bundles {
        trusted.extend_from_slice(bundle);
    }
    let signed = |pem: &[u8]| virtfleet_pki::signed_by_any(pem, &trusted).unwrap_or(false);
    let old: BTreeSet<String> = jobs
        .iter()
        .filter_map(|j| reading.held.get(&j.target.label).map(|host| (j, host)))
        .flat_map(|(j, host)| {
            j.plan
                .files_in_roles(&[CertRole::ClientCert])
                .filter(main)
                .filter_map(|f| held_content(host, f))
                .filter(|pem| signed(pem))
                .filter_map(subject)
                .collect::<Vec<_>>()
        })
        .filter(|dn| !desired.contains(dn))
        .collect();
    old.into_iter().collect()
}

/// What the hosts hold of their CA and leaf certificates, and where the rotation starts.
pub struct Reading {
    pub held: Holdings,
    pub start: Start,
}

/// Reads the CA and leaf certificates every host holds (not keys), and decides the start.
pub async fn read(
    jobs: &[HostJob],
    ssh: &ClientOptions,
    forks: usize,
    observer: &dyn Observer,
) -> Reading {
    let mut roles = vec![CertRole::Ca];
    roles.extend(CertRole::LEAF_CERTS);
    let held = read_all(jobs, &roles, ssh, forks, observer).await;
    let start = start(jobs, &held);
    Reading { held, start }
}

/// The phases from what [`read`] found: the current leaf pairs, keys included, are read
/// from the hosts that keep theirs through phase 1 (only when there is such a phase).
pub async fn plan(
    jobs: Vec<HostJob>,
    widened: Option<Vec<HostJob>>,
    reading: &Reading,
    ssh: &ClientOptions,
    forks: usize,
    observer: &dyn Observer,
) -> Vec<Phase> {
    let phased = matches!(reading.start, Start::Rollover { .. })
        || (reading.start == Start::OnePass && widened.is_some());
    let current = match phased {
        true => {
            let keeping: Vec<HostJob> = keeping_leaves(&jobs, &reading.held)
                .into_iter()
                .cloned()
                .collect();
            read_all(&keeping, &LEAVES, ssh, forks, observer).await
        }
        false => Holdings::new(),
    };
    phases(jobs, widened, &reading.start, &current)
}

fn held_content<'a>(
    host: &'a BTreeMap<String, Option<Vec<u8>>>,
    file: &DesiredFile,
) -> Option<&'a [u8]> {
    host.get(&file.path).and_then(|c| c.as_deref())
}

/// The job with every CA file replaced by the old CAs followed by the desired bundle.
fn with_bundle(job: &HostJob, old: &str) -> HostJob {
    let mut job = job.clone();
    for file in std::sync::Arc::make_mut(&mut job.plan).files_in_roles_mut(&[CertRole::Ca]) {
        let mut bundle = old.as_bytes().to_vec();
        bundle.extend_from_slice(&file.content);
        set_content(file, bundle);
        file.source = format!("{} with the old CA prepended", file.source.display()).into();
    }
    job
}

/// The job with the leaf pairs the host holds now instead of the desired ones.
fn keep_leaves(job: &HostJob, held: &BTreeMap<String, Option<Vec<u8>>>) -> HostJob {
    let mut job = job.clone();
    let host = job.target.label.clone();
    for file in std::sync::Arc::make_mut(&mut job.plan).files_in_roles_mut(&LEAVES) {
        if let Some(Some(content)) = held.get(&file.path) {
            set_content(file, content.clone());
            file.source = format!("{host}:{} (kept until phase 2)", file.path).into();
        }
    }
    job
}

fn set_content(file: &mut DesiredFile, content: Vec<u8>) {
    file.sha256 = hex::encode(Sha256::digest(&content));
    file.content = content;
}

/// Each certificate of a PEM bundle as (fingerprint, its PEM block); unparsable blocks skipped.
fn pem_blocks(pem: &[u8]) -> Vec<(String, String)> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut blocks = Vec::new();
    let mut rest = &*text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let block = format!("{}\n", &rest[start..start + len + END.len()]);
        rest = &rest[start + len + END.len()..];
        if let Some(cert) = virtfleet_pki::parse_certs(block.as_bytes())
            .ok()
            .and_then(|c| c.into_iter().next())
        {
            blocks.push((cert.fingerprint_sha256, block));
        }
    }
    blocks
}

/// Reads the plan's files in `roles` from every host, at most `forks` hosts at once.
async fn read_all(
    jobs: &[HostJob],
    roles: &[CertRole],
    ssh: &ClientOptions,
    forks: usize,
    observer: &dyn Observer,
) -> Holdings {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(forks.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for job in jobs {
        let paths: Vec<String> = job
            .plan
            .files_in_roles(roles)
            .map(|f| f.path.clone())
            .collect();
        let target = job.target.clone();
        let ssh = ssh.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            // Each host read is converged later in this run: its connection is kept for that.
            let result = remote::read_files(&target, &ssh, &paths, remote::After::Park).await;
            (target.label, result)
        });
    }
    let mut held = Holdings::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((host, Ok(files))) => {
                let contents = files
                    .into_iter()
                    .map(|(path, file)| (path, file.map(|f| f.content)))
                    .collect();
                held.insert(host, contents);
            }
            Ok((host, Err(e))) => observer.note(Note::Warning(format!(
                "{host}: cannot read its certificates: {e}"
            ))),
            Err(e) => observer.note(Note::Warning(format!("reading certificates: {e}"))),
        }
    }
    held
}

#[cfg(test)]
mod tests;
