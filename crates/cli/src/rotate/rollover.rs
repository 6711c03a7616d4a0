//! CA rollover without a flag day. When the desired `cacert.pem` holds a CA some host does not
//! trust yet, or hosts still trust a CA that is no longer desired, the rotation runs in three
//! fleet-wide phases so that every pair of hosts can authenticate each other throughout:
//!
//! 1. every host trusts old and new CAs (`cacert.pem` = old CAs + desired bundle), leaf pairs
//!    as the host has them now;
//! 2. leaf pairs rotated to the desired ones, `cacert.pem` still the combined bundle;
//! 3. `cacert.pem` = the desired bundle: the old CA is trusted nowhere.
//!
//! The phase to resume at follows from what the hosts hold: while any host's leaf pairs are
//! not the desired ones, phases 1 and 2 still apply (hosts already done come out `ok`); once
//! all are, only phase 3 is left.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};
use virtfleet_engine::script::quote;
use virtfleet_engine::HostJob;
use virtfleet_plan::DesiredFile;
use virtfleet_ssh::{ClientOptions, Session};

/// One pass over the fleet, in batches.
pub struct Phase {
    /// Printed when it starts, e.g. "phase 1/3: ...". None for a rotation in one pass.
    pub title: Option<String>,
    pub jobs: Vec<HostJob>,
}

const CA_FILE: &str = "cacert.pem";
const LEAF_CERTS: [&str; 2] = ["servercert.pem", "clientcert.pem"];
const LEAF_KEYS: [&str; 2] = ["serverkey.pem", "clientkey.pem"];

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The plan's files named one of `names`.
fn files<'a>(job: &'a HostJob, names: &[&str]) -> Vec<&'a DesiredFile> {
    job.plan
        .services
        .iter()
        .flat_map(|s| &s.files)
        .filter(|f| names.contains(&file_name(&f.path)))
        .collect()
}

/// What the hosts hold now, by host then path; None for a missing file. A host that could not
/// be read is left out (the rotation itself will report it).
type Holdings = BTreeMap<String, BTreeMap<String, Option<Vec<u8>>>>;

/// Decides the phases from what the hosts trust and hold now (reading certificates only; keys
/// are read back only from hosts that keep their current pairs through phase 1).
pub async fn phases(jobs: Vec<HostJob>, ssh: &ClientOptions, forks: usize) -> Vec<Phase> {
    let mut names = vec![CA_FILE];
    names.extend(LEAF_CERTS);
    let held = read_all(&jobs, &names, ssh, forks).await;

    let desired_cas: BTreeSet<String> = jobs
        .iter()
        .flat_map(|j| files(j, &[CA_FILE]))
        .flat_map(|f| pem_blocks(&f.content))
        .map(|(fingerprint, _)| fingerprint)
        .collect();
    // CAs trusted somewhere that are no longer desired, by fingerprint: a stable order.
    let mut old_cas: BTreeMap<String, String> = BTreeMap::new();
    let mut new_ca_missing = false;
    let mut leaves_pending = false;
    for job in &jobs {
        let Some(host) = held.get(&job.target.label) else {
            continue;
        };
        for file in files(job, &[CA_FILE]) {
            let trusted = pem_blocks(
                host.get(&file.path)
                    .and_then(|c| c.as_deref())
                    .unwrap_or(&[]),
            );
            let trusted_fps: BTreeSet<&String> = trusted.iter().map(|(fp, _)| fp).collect();
            new_ca_missing |= pem_blocks(&file.content)
                .iter()
                .any(|(fp, _)| !trusted_fps.contains(fp));
            for (fp, pem) in trusted.iter().filter(|(fp, _)| !desired_cas.contains(fp)) {
                old_cas.insert(fp.clone(), pem.clone());
            }
        }
        leaves_pending |= files(job, &LEAF_CERTS)
            .iter()
            .any(|f| host.get(&f.path).and_then(|c| c.as_deref()) != Some(&f.content[..]));
    }

    let rollover = !old_cas.is_empty() || new_ca_missing;
    if !rollover {
        return vec![Phase { title: None, jobs }];
    }
    let old: String = old_cas.into_values().collect();
    let phase3 = Phase {
        title: Some("phase 3/3: drop the old CA: cacert.pem becomes the new CA bundle".into()),
        jobs: jobs.clone(),
    };
    if !leaves_pending {
        return vec![phase3];
    }
    let trust_both: Vec<HostJob> = jobs.iter().map(|j| with_bundle(j, &old)).collect();
    // Hosts whose pairs are not the desired ones keep what they have through phase 1.
    let keeping: Vec<HostJob> = trust_both
        .iter()
        .filter(|j| {
            held.get(&j.target.label).is_some_and(|host| {
                files(j, &LEAF_CERTS)
                    .iter()
                    .any(|f| host.get(&f.path).is_some_and(|c| c.is_some()))
            })
        })
        .cloned()
        .collect();
    let mut all_leaves = LEAF_CERTS.to_vec();
    all_leaves.extend(LEAF_KEYS);
    let current = read_all(&keeping, &all_leaves, ssh, forks).await;
    let phase1: Vec<HostJob> = trust_both
        .iter()
        .map(|j| match current.get(&j.target.label) {
            Some(host) => keep_leaves(j, host),
            None => j.clone(),
        })
        .collect();
    vec![
        Phase {
            title: Some(
                "phase 1/3: trust old and new CA: cacert.pem becomes old CA + new CA bundle".into(),
            ),
            jobs: phase1,
        },
        Phase {
            title: Some("phase 2/3: rotate leaf certificates (trusting both CAs)".into()),
            jobs: trust_both,
        },
        phase3,
    ]
}

/// The job with every `cacert.pem` replaced by the old CAs followed by the desired bundle.
fn with_bundle(job: &HostJob, old: &str) -> HostJob {
    let mut job = job.clone();
    for file in job
        .plan
        .services
        .iter_mut()
        .flat_map(|s| s.files.iter_mut())
        .filter(|f| file_name(&f.path) == CA_FILE)
    {
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
    for file in job
        .plan
        .services
        .iter_mut()
        .flat_map(|s| s.files.iter_mut())
        .filter(|f| {
            LEAF_CERTS.contains(&file_name(&f.path)) || LEAF_KEYS.contains(&file_name(&f.path))
        })
    {
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

/// Reads the plan's files named `names` from every host, at most `forks` hosts at once.
async fn read_all(jobs: &[HostJob], names: &[&str], ssh: &ClientOptions, forks: usize) -> Holdings {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(forks.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for job in jobs {
        let paths: Vec<String> = files(job, names).iter().map(|f| f.path.clone()).collect();
        let target = job.target.clone();
        let ssh = ssh.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            let result = read_files(&target, &paths, &ssh).await;
            (target.label, result)
        });
    }
    let mut held = Holdings::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("read task") {
            (host, Ok(files)) => {
                held.insert(host, files);
            }
            (host, Err(e)) => eprintln!("warning: {host}: cannot read its certificates: {e}"),
        }
    }
    held
}

/// One round trip: each file framed as `F <size> <path>` + contents, or `A <path>` if absent.
async fn read_files(
    target: &virtfleet_ssh::Target,
    paths: &[String],
    ssh: &ClientOptions,
) -> Result<BTreeMap<String, Option<Vec<u8>>>, String> {
    let script = read_script(paths);
    let session = Session::connect(target, ssh)
        .await
        .map_err(|e| e.to_string())?;
    let out = session.exec(&script, b"").await;
    session.close().await;
    let out = out.map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(out.stderr_lossy().trim().to_string());
    }
    parse_framed(&out.stdout).ok_or_else(|| "unreadable answer".to_string())
}

fn read_script(paths: &[String]) -> String {
    let mut script = String::new();
    for path in paths {
        let p = quote(path);
        script.push_str(&format!(
            "if [ -f {p} ]; then echo \"F $(stat -c %s {p}) \"{p}; cat {p}; echo; else echo A {p}; fi\n"
        ));
    }
    script
}

fn parse_framed(mut out: &[u8]) -> Option<BTreeMap<String, Option<Vec<u8>>>> {
    let mut files = BTreeMap::new();
    while !out.is_empty() {
        let eol = out.iter().position(|&b| b == b'\n')?;
        let header = std::str::from_utf8(&out[..eol]).ok()?;
        out = &out[eol + 1..];
        if let Some(path) = header.strip_prefix("A ") {
            files.insert(path.to_string(), None);
        } else {
            let (size, path) = header.strip_prefix("F ")?.split_once(' ')?;
            let size: usize = size.trim().parse().ok()?;
            let content = out.get(..size)?.to_vec();
            out = out.get(size + 1..)?;
            files.insert(path.to_string(), Some(content));
        }
    }
    Some(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_files_parse_byte_exact() {
        let out = b"F 5 /a b\nx\ny\nz\nA /missing\nF 0 /empty\n\n";
        let files = parse_framed(out).unwrap();
        assert_eq!(files["/a b"].as_deref(), Some(&b"x\ny\nz"[..]));
        assert_eq!(files["/missing"], None);
        assert_eq!(files["/empty"].as_deref(), Some(&b""[..]));
        assert!(parse_framed(b"F 99 /short\nabc\n").is_none());
    }

    #[test]
    fn the_read_script_round_trips_through_sh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no newline at end.pem");
        std::fs::write(&path, "line\nlast").unwrap();
        let p = path.to_str().unwrap().to_string();
        let script = read_script(&[p.clone(), "/nope".into()]);
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let files = parse_framed(&out.stdout).unwrap();
        assert_eq!(files[&p].as_deref(), Some(&b"line\nlast"[..]));
        assert_eq!(files["/nope"], None);
    }

    #[test]
    fn bundles_split_into_certificates() {
        let (a, _) = virtfleet_pki::init_ca("a", 1).unwrap();
        let (b, _) = virtfleet_pki::init_ca("b", 1).unwrap();
        let blocks = pem_blocks(format!("junk\n{a}{b}").as_bytes());
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].1.trim(), a.trim());
        assert_ne!(blocks[0].0, blocks[1].0);
    }
}
