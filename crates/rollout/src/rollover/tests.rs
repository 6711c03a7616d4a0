//! Phase planning for every state a fleet can be found in, without SSH.

use std::collections::BTreeMap;

use virtfleet_engine::HostJob;
use virtfleet_pki::CertKind;
use virtfleet_plan::{CertRole, DesiredFile, HostPlan, ServicePlan};
use virtfleet_ssh::Target;

use super::*;

/// A CA and, per host, a server and client pair it issued.
struct Authority {
    cert: String,
    key: String,
    pairs: BTreeMap<(String, CertRole), String>,
}

impl Authority {
    fn new(name: &str, hosts: &[&str]) -> Authority {
        let (cert, key) = virtfleet_pki::init_ca(name, 30).unwrap();
        let mut pairs = BTreeMap::new();
        for host in hosts {
            for (kind, c, k) in [
                (CertKind::Server, CertRole::ServerCert, CertRole::ServerKey),
                (CertKind::Client, CertRole::ClientCert, CertRole::ClientKey),
            ] {
                let names = [host.to_string()];
                let (pc, pk) =
                    virtfleet_pki::issue_pair(&cert, &key, kind, host, &names, &[], 10).unwrap();
                pairs.insert((host.to_string(), c), pc);
                pairs.insert((host.to_string(), k), pk);
            }
        }
        Authority { cert, key, pairs }
    }

    fn leaf(&self, host: &str, role: CertRole) -> &str {
        &self.pairs[&(host.to_string(), role)]
    }
}

fn file(path: &str, role: CertRole, content: &str) -> DesiredFile {
    DesiredFile {
        path: path.into(),
        content: content.as_bytes().to_vec(),
        mode: 0o600,
        owner: None,
        secret: role.is_private_key(),
        sha256: hex::encode(Sha256::digest(content.as_bytes())),
        source: Default::default(),
        merge: None,
        role: Some(role),
        cert_set: None,
    }
}

fn service(name: &str, files: Vec<DesiredFile>) -> ServicePlan {
    ServicePlan {
        runs: virtfleet_plan::Runs::Container,
        name: name.into(),
        dir: format!("/d/{name}"),
        marker_path: format!("/d/{name}/.marker"),
        files,
        ready: None,
        after_restart: Vec::new(),
        reload: None,
    }
}

/// A host's plan with `ca` as its CA bundle and `leaves` issuing its pairs: the TLS service
/// holds all five files, a second service the CA and the client pair.
fn job(host: &str, ca: &str, leaves: &Authority) -> HostJob {
    let leaf = |dir: &str, role| {
        let name = format!("{role:?}").to_lowercase();
        file(&format!("/d/{dir}/{name}"), role, leaves.leaf(host, role))
    };
    let tls = vec![
        file("/d/tls/ca", CertRole::Ca, ca),
        leaf("tls", CertRole::ServerCert),
        leaf("tls", CertRole::ServerKey),
        leaf("tls", CertRole::ClientCert),
        leaf("tls", CertRole::ClientKey),
    ];
    let other = vec![
        file("/d/other/ca", CertRole::Ca, ca),
        leaf("other", CertRole::ClientCert),
        leaf("other", CertRole::ClientKey),
    ];
    HostJob {
        probed: None,
        target: Target::new(host, "127.0.0.1", "root"),
        plan: std::sync::Arc::new(HostPlan {
            host: host.into(),
            vars: Default::default(),
            services: vec![service("tls", tls), service("other", other)],
            container_engine: "podman".into(),
            tls: None,
            cert_dirs: Vec::new(),
            audit: None,
            let_through: Vec::new(),
            reads_interfaces: false,
            held_paths: Vec::new(),
        }),
    }
}

/// What `job`'s host holds: every planned file, as planned (roles `with` only).
fn holding(job: &HostJob, roles: &[CertRole]) -> BTreeMap<String, Option<Vec<u8>>> {
    job.plan
        .files_in_roles(roles)
        .map(|f| (f.path.clone(), Some(f.content.clone())))
        .collect()
}

const CERTS: [CertRole; 3] = [CertRole::Ca, CertRole::ServerCert, CertRole::ClientCert];
const HOSTS: [&str; 2] = ["h1", "h2"];

struct Fleet {
    old: Authority,
    new: Authority,
    /// Every host's desired plan: the new CA and pairs.
    desired: Vec<HostJob>,
}

impl Fleet {
    fn new() -> Fleet {
        let old = Authority::new("old", &HOSTS);
        let new = Authority::new("new", &HOSTS);
        let desired = HOSTS.iter().map(|h| job(h, &new.cert, &new)).collect();
        Fleet { old, new, desired }
    }

    /// Holdings where each host holds CA bundle `ca(host)` and the pairs of `leaves(host)`.
    fn holdings<'a>(
        &self,
        ca: impl Fn(&str) -> String,
        leaves: impl Fn(&str) -> &'a Authority,
        roles: &[CertRole],
    ) -> Holdings {
        HOSTS
            .iter()
            .map(|h| (h.to_string(), holding(&job(h, &ca(h), leaves(h)), roles)))
            .collect()
    }

    fn both(&self) -> String {
        format!("{}{}", self.old.cert, self.new.cert)
    }
}

fn ca_of(job: &HostJob) -> Vec<&[u8]> {
    job.plan
        .files_in_roles(&[CertRole::Ca])
        .map(|f| &f.content[..])
        .collect()
}

fn leaf_of(job: &HostJob, role: CertRole) -> &[u8] {
    &job.plan.tls_file_in("tls", role).content
}

trait InService {
    fn tls_file_in(&self, service: &str, role: CertRole) -> &DesiredFile;
}

impl InService for HostPlan {
    fn tls_file_in(&self, service: &str, role: CertRole) -> &DesiredFile {
        self.services
            .iter()
            .find(|s| s.name == service)
            .and_then(|s| s.files.iter().find(|f| f.role == Some(role)))
            .unwrap()
    }
}

#[test]
fn old_ca_only_rolls_over_in_three_phases() {
    let f = Fleet::new();
    let held = f.holdings(|_| f.old.cert.clone(), |_| &f.old, &CERTS);
    let start = start(&f.desired, &held);
    assert_eq!(
        start,
        Start::Rollover {
            old_cas: f.old.cert.clone()
        }
    );
    assert_eq!(keeping_leaves(&f.desired, &held).len(), 2);
    let current = f.holdings(|_| f.old.cert.clone(), |_| &f.old, &LEAVES);
    let phases = phases(f.desired.clone(), None, &start, &current);
    assert_eq!(phases.len(), 3);
    let both = f.both();
    for (host, name) in HOSTS.iter().copied().enumerate() {
        // Phase 1: both CAs in every CA file, the old pairs kept.
        let p1 = &phases[0].jobs[host];
        assert!(ca_of(p1).iter().all(|c| *c == both.as_bytes()), "{name}");
        assert_eq!(
            leaf_of(p1, CertRole::ServerKey),
            f.old.leaf(name, CertRole::ServerKey).as_bytes()
        );
        let kept = &p1.plan.tls_file_in("tls", CertRole::ClientCert);
        assert_eq!(kept.sha256, hex::encode(Sha256::digest(&kept.content)));
        // Phase 2: both CAs, the new pairs.
        let p2 = &phases[1].jobs[host];
        assert!(ca_of(p2).iter().all(|c| *c == both.as_bytes()));
        assert_eq!(
            leaf_of(p2, CertRole::ServerCert),
            f.new.leaf(name, CertRole::ServerCert).as_bytes()
        );
        // Phase 3: exactly the desired plan.
        let p3 = &phases[2].jobs[host];
        assert!(ca_of(p3).iter().all(|c| *c == f.new.cert.as_bytes()));
        assert_eq!(
            leaf_of(p3, CertRole::ClientKey),
            f.new.leaf(name, CertRole::ClientKey).as_bytes()
        );
    }
    assert!(phases[0].title.as_deref().unwrap().starts_with("phase 1/3"));
}

#[test]
fn both_cas_with_old_pairs_resumes_at_phase_one() {
    // Interrupted during or after phase 1: every host trusts both, pairs still old.
    let f = Fleet::new();
    let held = f.holdings(|_| f.both(), |_| &f.old, &CERTS);
    let start = start(&f.desired, &held);
    assert!(matches!(&start, Start::Rollover { old_cas } if *old_cas == f.old.cert));
    assert_eq!(
        phases(f.desired.clone(), None, &start, &Holdings::new()).len(),
        3
    );
}

#[test]
fn both_cas_with_new_pairs_only_drops_the_old_ca() {
    // Interrupted after phase 2 (or during phase 3): pairs new everywhere.
    let f = Fleet::new();
    let held = f.holdings(|_| f.both(), |_| &f.new, &CERTS);
    assert_eq!(start(&f.desired, &held), Start::DropOldCa);
    let phases = phases(f.desired.clone(), None, &Start::DropOldCa, &Holdings::new());
    assert_eq!(phases.len(), 1);
    assert!(phases[0].title.as_deref().unwrap().starts_with("phase 3/3"));
    assert!(ca_of(&phases[0].jobs[0])
        .iter()
        .all(|c| *c == f.new.cert.as_bytes()));
}

#[test]
fn interrupted_in_phase_three_still_drops_the_old_ca() {
    // h1 already dropped the old CA, h2 not yet.
    let f = Fleet::new();
    let held = f.holdings(
        |h| {
            if h == "h1" {
                f.new.cert.clone()
            } else {
                f.both()
            }
        },
        |_| &f.new,
        &CERTS,
    );
    assert_eq!(start(&f.desired, &held), Start::DropOldCa);
}

#[test]
fn new_ca_only_is_one_pass_whatever_the_pairs() {
    let f = Fleet::new();
    let current = f.holdings(|_| f.new.cert.clone(), |_| &f.new, &CERTS);
    assert_eq!(start(&f.desired, &current), Start::OnePass);
    // Pairs from the same CA being renewed: still one pass, no CA change.
    let renewed = Authority {
        cert: f.new.cert.clone(),
        key: f.new.key.clone(),
        pairs: f.old.pairs.clone(),
    };
    let held = f.holdings(|_| f.new.cert.clone(), |_| &renewed, &CERTS);
    assert_eq!(start(&f.desired, &held), Start::OnePass);
    let phases = phases(f.desired.clone(), None, &Start::OnePass, &Holdings::new());
    assert_eq!(phases.len(), 1);
    assert!(phases[0].title.is_none());
}

#[test]
fn mixed_fleet_rolls_over_for_the_hosts_behind() {
    // Interrupted in phase 2: h1 trusts both with new pairs, h2 trusts both with old pairs.
    let f = Fleet::new();
    let held = f.holdings(
        |_| f.both(),
        |h| if h == "h1" { &f.new } else { &f.old },
        &CERTS,
    );
    let start = start(&f.desired, &held);
    assert!(matches!(start, Start::Rollover { .. }));
    let current = f.holdings(
        |_| f.both(),
        |h| if h == "h1" { &f.new } else { &f.old },
        &LEAVES,
    );
    let phases = phases(f.desired.clone(), None, &start, &current);
    // h1 keeps its (already new) pairs in phase 1: nothing moves backwards.
    assert_eq!(
        leaf_of(&phases[0].jobs[0], CertRole::ServerCert),
        f.new.leaf("h1", CertRole::ServerCert).as_bytes()
    );
    assert_eq!(
        leaf_of(&phases[0].jobs[1], CertRole::ServerCert),
        f.old.leaf("h2", CertRole::ServerCert).as_bytes()
    );

    // One host on the old CA only, one already trusting only the new one: the new CA is
    // missing somewhere and the old one trusted somewhere, but not everywhere: it is not
    // carried to the other host (a CA one host holds alone could be of its own making).
    let held = f.holdings(
        |h| {
            if h == "h1" {
                f.old.cert.clone()
            } else {
                f.new.cert.clone()
            }
        },
        |h| if h == "h1" { &f.old } else { &f.new },
        &CERTS,
    );
    let behind = super::start(&f.desired, &held);
    assert!(matches!(&behind, Start::Rollover { old_cas } if old_cas.is_empty()));
    assert_eq!(partly_trusted_cas(&f.desired, &held).len(), 1);
}

#[test]
fn fresh_hosts_and_unread_hosts() {
    let f = Fleet::new();
    // Nothing on the hosts yet: the new CA is missing, no pairs to keep.
    let empty: Holdings = HOSTS
        .iter()
        .map(|h| (h.to_string(), BTreeMap::new()))
        .collect();
    let start = start(&f.desired, &empty);
    assert_eq!(
        start,
        Start::Rollover {
            old_cas: String::new()
        }
    );
    assert!(keeping_leaves(&f.desired, &empty).is_empty());
    let phases = phases(f.desired.clone(), None, &start, &Holdings::new());
    // With no old CA, phase 1 and 2 already carry just the new bundle.
    assert!(ca_of(&phases[0].jobs[0])
        .iter()
        .all(|c| *c == f.new.cert.as_bytes()));
    // A host that could not be read does not decide anything.
    assert_eq!(super::start(&f.desired, &Holdings::new()), Start::OnePass);
}

#[test]
fn new_client_subjects_are_let_in_beside_the_old_until_the_last_phase() {
    let f = Fleet::new();
    // The same subjects from another CA: nothing to widen.
    let reading = |held: Holdings| Reading {
        start: start(&f.desired, &held),
        held,
    };
    let held_old = f.holdings(|_| f.old.cert.clone(), |_| &f.old, &CERTS);
    assert!(old_client_subjects(&f.desired, &reading(held_old)).is_empty());
    // Pairs whose subjects are new (CN=h1-2 ...): the old ones stay let in until phase 3.
    let renamed = {
        let mut pairs = BTreeMap::new();
        for host in HOSTS {
            let names = [host.to_string()];
            for (kind, c, k) in [
                (CertKind::Server, CertRole::ServerCert, CertRole::ServerKey),
                (CertKind::Client, CertRole::ClientCert, CertRole::ClientKey),
            ] {
                let (pc, pk) = virtfleet_pki::issue_pair(
                    &f.new.cert,
                    &f.new.key,
                    kind,
                    &format!("{host}-2"),
                    &names,
                    &[],
                    10,
                )
                .unwrap();
                pairs.insert((host.to_string(), c), pc);
                pairs.insert((host.to_string(), k), pk);
            }
        }
        Authority {
            cert: f.new.cert.clone(),
            key: f.new.key.clone(),
            pairs,
        }
    };
    let desired: Vec<HostJob> = HOSTS
        .iter()
        .map(|h| job(h, &f.new.cert, &renamed))
        .collect();
    let held = f.holdings(|_| f.new.cert.clone(), |_| &f.new, &CERTS);
    assert_eq!(start(&desired, &held), Start::OnePass);
    let read = Reading {
        start: Start::OnePass,
        held: held.clone(),
    };
    assert_eq!(old_client_subjects(&desired, &read), ["CN=h1", "CN=h2"]);
    // A certificate no fleet CA signed (a host's own making) lets nothing in.
    let stranger = Authority::new("stranger", &HOSTS);
    let read = Reading {
        start: Start::OnePass,
        held: f.holdings(|_| f.new.cert.clone(), |_| &stranger, &CERTS),
    };
    assert!(old_client_subjects(&desired, &read).is_empty());
    let current = f.holdings(|_| f.new.cert.clone(), |_| &f.new, &LEAVES);
    let phases = phases(
        desired.clone(),
        Some(desired.clone()),
        &Start::OnePass,
        &current,
    );
    assert_eq!(phases.len(), 3);
    // Phase 1 keeps the pairs hosts hold; phase 2 rotates them; phase 3 is the plan.
    let client = |job: &HostJob| leaf_of(job, CertRole::ClientCert).to_vec();
    assert_eq!(
        client(&phases[0].jobs[0]),
        f.new.leaf("h1", CertRole::ClientCert).as_bytes()
    );
    assert_eq!(
        client(&phases[1].jobs[0]),
        renamed.leaf("h1", CertRole::ClientCert).as_bytes()
    );
    assert_eq!(client(&phases[2].jobs[0]), client(&desired[0]));
}

#[test]
fn a_ca_only_one_host_trusts_is_not_carried_to_the_others() {
    let f = Fleet::new();
    let stranger = Authority::new("stranger", &HOSTS);
    // h1 trusts the old CA and one of its own making; h2 the old CA only.
    let ca = |h: &str| match h {
        "h1" => format!("{}{}", f.old.cert, stranger.cert),
        _ => f.old.cert.clone(),
    };
    let held = f.holdings(ca, |_| &f.old, &CERTS);
    let Start::Rollover { old_cas } = start(&f.desired, &held) else {
        panic!("a rollover");
    };
    let carried: Vec<String> = pem_blocks(old_cas.as_bytes())
        .into_iter()
        .map(|(fp, _)| fp)
        .collect();
    let old: Vec<String> = pem_blocks(f.old.cert.as_bytes())
        .into_iter()
        .map(|(fp, _)| fp)
        .collect();
    assert_eq!(carried, old);

    // The old CA missing on one host (rebuilt with the new CA only) but signing the other
    // hosts' certificates: still the fleet's old CA, carried.
    let three = ["h1", "h2", "h3"];
    let old3 = Authority::new("old", &three);
    let new3 = Authority::new("new", &three);
    let desired: Vec<HostJob> = three.iter().map(|h| job(h, &new3.cert, &new3)).collect();
    let held: Holdings = three
        .iter()
        .map(|h| {
            let (ca, leaves) = match *h {
                "h3" => (new3.cert.clone(), &new3),
                _ => (old3.cert.clone(), &old3),
            };
            (h.to_string(), holding(&job(h, &ca, leaves), &CERTS))
        })
        .collect();
    let Start::Rollover { old_cas } = start(&desired, &held) else {
        panic!("a rollover");
    };
    assert!(!old_cas.is_empty());
    assert!(partly_trusted_cas(&desired, &held).is_empty());
}
