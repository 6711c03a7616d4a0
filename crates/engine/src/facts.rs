//! Host facts, as Ansible's `setup` module names them, for the playbooks' variables: the
//! nodename and each interface's addresses. Gathered in one read-only round trip per host
//! before planning; the connection is parked for the run's later steps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;
use virtfleet_ssh::{ClientOptions, Session, Target};

use crate::converge::probe_script;
use crate::state::HostState;
use crate::{remote, script, wire::Tag, EngineError, HostJob};

/// Most bytes of facts a host may answer with (a host with 1,000 interfaces and addresses
/// answers with about 150 kB).
const MAX_FACTS_BYTES: usize = 1 << 20;

/// Keys of `ansible_facts` that are not interfaces; an interface of that name is ignored.
const RESERVED: [&str; 3] = ["nodename", "interfaces", "virtfleet_provisional"];

/// Each target's facts (`ansible_facts`), gathered at most `forks` at a time. A host that
/// cannot be reached or read fails alone. Each connection that answered is left parked in `ssh.pool`.
pub async fn gather(
    targets: Vec<Target>,
    ssh: &ClientOptions,
    forks: usize,
) -> BTreeMap<String, Result<Value, EngineError>> {
    let asks = targets.into_iter().map(Ask::Facts).collect();
    gather_all(asks, ssh, forks)
        .await
        .into_iter()
        .map(|(host, gathered)| (host, gathered.map(|g| g.facts)))
        .collect()
}

/// Which connections a round trip that probes leaves parked for the run's later steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every host's: its converge will probe again (a rotation's probe looks for backups
    /// too; later batches probe anew).
    Every,
    /// Only those of hosts the probe shows work left on: the converge of a host with nothing
    /// to do reads the kept probe and never logs in again, so a run that changes nothing
    /// holds no more connections at once than `forks`. A host whose final plan differs from
    /// the stand-in one logs in again if it needs to.
    WithWorkLeft,
}

/// [`gather`], each host's probe riding along in the same round trip: `jobs` are planned on
/// stand-in facts, whose paths, markers and containers are what the real plan has too (the
/// converge checks: its own probe script must be the same, or it probes again).
pub async fn gather_with_probe(
    jobs: Vec<Arc<HostJob>>,
    ssh: &ClientOptions,
    forks: usize,
    keep: Keep,
) -> BTreeMap<String, Result<Gathered, EngineError>> {
    let asks = jobs
        .into_iter()
        .map(|job| Ask::WithProbe(job, keep))
        .collect();
    gather_all(asks, ssh, forks).await
}

/// Each job's probe, read now (at most `forks` at once) for the run's first batch: what a
/// step before the converge needs to know of the hosts (a transition's held settings)
/// costs no round trip of its own. Each connection that answered is left parked in `ssh.pool`.
pub async fn probe_early(
    jobs: Vec<Arc<HostJob>>,
    ssh: &ClientOptions,
    forks: usize,
    keep: Keep,
) -> BTreeMap<String, Result<Arc<Probed>, EngineError>> {
    let asks = jobs.into_iter().map(|job| Ask::Probe(job, keep)).collect();
    gather_all(asks, ssh, forks)
        .await
        .into_iter()
        .map(|(host, gathered)| {
            let probed = gathered.and_then(|g| {
                g.probed
                    .ok_or_else(|| EngineError::Garbled("probe: answer too large".into()))
            });
            (host, probed)
        })
        .collect()
}

/// A host's facts, and the probe that came with them.
pub struct Gathered {
    pub facts: Value,
    pub probed: Option<Arc<Probed>>,
}

/// A probe answered in the facts round trip: for whom, the probe script as the converge
/// builds it, the host's answer and when it came. Only as fresh as that moment: the rollout
/// hands it on to the run's first batch only, and the converge uses it only while it is
/// younger than [`PROBE_FRESH`].
pub struct Probed {
    pub(crate) target: Target,
    /// The probe script's [`crate::script::Script::digest`].
    pub(crate) script: [u8; 32],
    pub(crate) output: Vec<u8>,
    pub(crate) at: Instant,
    /// The connection and the round trip it took: time spent on the host in this run.
    pub(crate) took: Duration,
}

impl Probed {
    /// The contents the probe read of each of `paths` (the plan's merged and held files);
    /// None for a path it found no regular file at, or did not read.
    pub fn contents(&self, paths: &[String]) -> BTreeMap<String, Option<Vec<u8>>> {
        let state = crate::state::HostState::parse(&String::from_utf8_lossy(&self.output));
        paths
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    state.contents.get(p).map(|t| t.as_bytes().to_vec()),
                )
            })
            .collect()
    }
}

/// How long a probe read with the facts stands for the host's state: the planning between
/// takes well under a second per host; a host that waits longer (for a fork slot behind
/// slow restarts) probes again.
pub(crate) const PROBE_FRESH: Duration = Duration::from_secs(30);

/// The largest probe answer kept for later (a bigger one is dropped, and the converge probes
/// anew), so that hosts answering with much cannot fill the workstation's memory for the
/// rest of the run.
const MAX_KEPT_PROBE: usize = 1 << 20;

enum Ask {
    Facts(Target),
    WithProbe(Arc<HostJob>, Keep),
    Probe(Arc<HostJob>, Keep),
}

impl Ask {
    fn target(&self) -> &Target {
        match self {
            Ask::Facts(target) => target,
            Ask::WithProbe(job, _) | Ask::Probe(job, _) => &job.target,
        }
    }
}

async fn gather_all(
    asks: Vec<Ask>,
    ssh: &ClientOptions,
    forks: usize,
) -> BTreeMap<String, Result<Gathered, EngineError>> {
    let permits = Arc::new(Semaphore::new(forks.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for ask in asks {
        let permits = permits.clone();
        let ssh = ssh.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let gathered = gather_one(&ask, &ssh).await;
            (ask.target().label.clone(), gathered)
        });
    }
    let mut gathered = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((host, result)) = joined {
            gathered.insert(host, result);
        }
    }
    gathered
}

async fn gather_one(ask: &Ask, ssh: &ClientOptions) -> Result<Gathered, EngineError> {
    let target = ask.target();
    let started = Instant::now();
    let session = Session::connect(target, ssh).await?;
    let script = match ask {
        Ask::Facts(_) => script::facts(),
        // The nodename alone (no `ip`) unless the stand-in plan read an interface.
        Ask::WithProbe(job, _) => match job.plan.reads_interfaces {
            true => probe_script(job, false, script::Facts::All),
            false => probe_script(job, false, script::Facts::Nodename),
        },
        Ask::Probe(job, _) => probe_script(job, false, script::Facts::None),
    };
    let what = match ask {
        Ask::Probe(..) => "probe",
        _ => "gather facts",
    };
    let out = remote::exec(&session, what, &script, None).await?;
    let text = String::from_utf8_lossy(&out);
    // A host's own answer: bounded before it is parsed and copied into every plan.
    if facts_bytes(&text) > MAX_FACTS_BYTES {
        return Err(EngineError::Garbled(format!(
            "gather facts: more than {MAX_FACTS_BYTES} bytes"
        )));
    }
    let facts = match ask {
        Ask::Probe(..) => Value::Null,
        _ => parse(&text).ok_or_else(|| EngineError::Garbled("gather facts".into()))?,
    };
    let probed = match ask {
        Ask::WithProbe(job, _) | Ask::Probe(job, _) if out.len() <= MAX_KEPT_PROBE => {
            // Kept until the host's converge, for every host: not the spare room of its growth.
            let mut out = out;
            out.shrink_to_fit();
            Some(Arc::new(Probed {
                target: job.target.clone(),
                script: probe_script(job, false, script::Facts::None).digest(),
                output: out,
                at: Instant::now(),
                took: started.elapsed(),
            }))
        }
        _ => None,
    };
    // Kept for the converge only when the host answered well (a host dropped from the run
    // takes no place among the kept connections) and has work left, when asked so.
    let done = match (ask, &probed) {
        (
            Ask::WithProbe(job, Keep::WithWorkLeft) | Ask::Probe(job, Keep::WithWorkLeft),
            Some(p),
        ) => crate::converge::nothing_to_do(
            job,
            &HostState::parse(&String::from_utf8_lossy(&p.output)),
        ),
        _ => false,
    };
    match done {
        true => session.close().await,
        false => session.park(target, ssh),
    }
    Ok(Gathered { facts, probed })
}

/// The bytes of the facts' own lines in a script's output (a probe's lines are not facts).
fn facts_bytes(out: &str) -> usize {
    out.lines()
        .filter(|line| Tag::Nodename.strip(line).is_some() || parse_address_line(line).is_some())
        .map(|line| line.len() + 1)
        .sum()
}

/// `ansible_facts` from the facts script's output: `nodename`, `interfaces` (names as the
/// host spells them) and per interface (key: the name with `-` as `_`, as Ansible does)
/// `device`, `ipv4` (the first primary address), `ipv4_secondaries` and `ipv6` (a list, with
/// each address's `scope`). None without a nodename line.
pub fn parse(out: &str) -> Option<Value> {
    let mut nodename = None;
    let mut interfaces: Vec<String> = Vec::new();
    let mut facts = Map::new();
    for line in out.lines() {
        if let Some(name) = Tag::Nodename.strip(line) {
            nodename = Some(name.trim().to_string());
            continue;
        }
        // `ip -o addr show` lines, as ip prints them: "<index>: <interface> ...".
        let Some(address) = parse_address_line(line) else {
            continue;
        };
        let key = address.device.replace('-', "_");
        if RESERVED.contains(&key.as_str()) {
            continue;
        }
        if !facts.contains_key(&key) {
            interfaces.push(address.device.clone());
        }
        let entry = facts
            .entry(key)
            .or_insert_with(|| json!({ "device": address.device }));
        let entry = entry.as_object_mut().expect("interfaces are objects");
        let fact = json!({
            "address": address.address,
            "prefix": address.prefix,
            "scope": address.scope,
        });
        match address.family {
            Family::V4 if !address.secondary && !entry.contains_key("ipv4") => {
                entry.insert("ipv4".into(), fact);
            }
            Family::V4 => push(entry, "ipv4_secondaries", fact),
            Family::V6 => push(entry, "ipv6", fact),
        }
    }
    facts.insert("nodename".into(), Value::from(nodename?));
    facts.insert("interfaces".into(), Value::from(interfaces));
    Some(Value::Object(facts))
}

fn push(entry: &mut Map<String, Value>, key: &str, fact: Value) {
    if let Value::Array(list) = entry.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
        list.push(fact);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

#[derive(Debug, PartialEq, Eq)]
struct Address {
    device: String,
    family: Family,
    address: String,
    prefix: String,
    scope: String,
    secondary: bool,
}

/// One `ip -o addr show` line: `4: eth0    inet 192.0.2.2/24 brd ... scope global eth0\ ...`.
fn parse_address_line(line: &str) -> Option<Address> {
    let mut words = line.split_whitespace();
    let index = words.next()?.strip_suffix(':')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // A VLAN or veth shows as `name@parent`. Linux names are 1 to 15 bytes, no `/` or blank;
    // anything else is not an interface this host could have.
    let device = words.next()?.split('@').next()?.to_string();
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"._:-".contains(&b);
    if device.is_empty() || device.len() > 15 || !device.bytes().all(plain) {
        return None;
    }
    let family = match words.next()? {
        "inet" => Family::V4,
        "inet6" => Family::V6,
        _ => return None,
    };
    let (address, prefix) = words.next()?.split_once('/')?;
    address.parse::<std::net::IpAddr>().ok()?;
    let mut scope = String::from("global");
    let mut secondary = false;
    let rest: Vec<&str> = words.take_while(|w| !w.starts_with('\\')).collect();
    for (i, word) in rest.iter().enumerate() {
        match *word {
            "scope" => scope = rest.get(i + 1)?.to_string(),
            "secondary" => secondary = true,
            _ => {}
        }
    }
    Some(Address {
        device,
        family,
        address: address.to_string(),
        prefix: prefix.to_string(),
        scope,
        secondary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "H compute01\n\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever\n\
4: br-mgmt    inet 192.0.2.2/24 brd 192.0.2.255 scope global br-mgmt\\       valid_lft forever\n\
4: br-mgmt    inet 192.0.2.9/24 scope global secondary br-mgmt:1\\       valid_lft forever\n\
4: br-mgmt    inet6 fe80::1/64 scope link \\       valid_lft forever preferred_lft forever\n\
4: br-mgmt    inet6 2001:db8::2/64 scope global nodad \\       valid_lft forever\n\
7: eth1.100@eth1    inet 10.0.0.5/24 scope global eth1.100\\       valid_lft forever\n";

    #[test]
    fn facts_have_ansibles_shape() {
        let facts = parse(OUTPUT).unwrap();
        assert_eq!(facts["nodename"], "compute01");
        assert_eq!(
            facts["interfaces"],
            json!(["lo", "br-mgmt", "eth1.100"]),
            "names as the host spells them"
        );
        let mgmt = &facts["br_mgmt"];
        assert_eq!(mgmt["device"], "br-mgmt");
        assert_eq!(mgmt["ipv4"]["address"], "192.0.2.2");
        assert_eq!(mgmt["ipv4_secondaries"][0]["address"], "192.0.2.9");
        assert_eq!(mgmt["ipv6"][0]["scope"], "link");
        assert_eq!(mgmt["ipv6"][1]["address"], "2001:db8::2");
        assert_eq!(mgmt["ipv6"][1]["scope"], "global");
        assert_eq!(facts["eth1.100"]["ipv4"]["address"], "10.0.0.5");
        assert_eq!(facts["lo"]["ipv4"]["scope"], "host");
    }

    #[test]
    fn output_without_a_nodename_or_with_garbage_lines() {
        assert_eq!(parse("1: lo    inet 127.0.0.1/8 scope host lo\n"), None);
        let facts =
            parse("H n1\nnonsense\n2: x inet notanip/8\nJ other\nx: y inet 1.2.3.4/8\n").unwrap();
        assert_eq!(facts["interfaces"], json!([]));
    }
}
