//! Loading and checking everything before any host is contacted: inventory, globals,
//! passwords, playbook, per-host plans and certificates. Every problem is collected and
//! reported at once; any of them means exit 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use virtfleet_engine::facts::{Gathered, Keep, Probed};
use virtfleet_engine::{EngineError, HostJob, HostReport, Status};
use virtfleet_inventory::{load_inventory, load_vars_file, merge, parse_bool, Inventory, Vars};
use virtfleet_pki::{validate_host, CertFile, Finding, HostCerts, Role, Severity};
use virtfleet_plan::{
    load_playbook, plan_host, CertRole, DesiredFile, PlanInput, Playbook, TlsPlan,
};
use virtfleet_ssh::{expand_home, HostConfig, HostSettings, SshConfig, StrictHostKeys, Target};

use crate::args::GlobalArgs;

/// Certificates expiring within this many days are warned about.
pub const DEFAULT_WARN_DAYS: u32 = 30;

/// Bad input: every message names the file (and line) or the host. Exit status 2.
#[derive(Debug)]
pub struct InputErrors(pub Vec<String>);

impl InputErrors {
    pub fn one(message: impl ToString) -> Self {
        InputErrors(vec![message.to_string()])
    }

    /// The messages to print, one per problem (see [`one_line_per_problem`]).
    pub fn lines(&self) -> Vec<String> {
        one_line_per_problem(&self.0)
    }
}

/// Messages that differ only in their `host NAME: ` prefix become one line naming the hosts
/// (a bad globals.yml on 500 hosts is one problem, not 500 lines); others stay as they are.
pub fn one_line_per_problem(messages: &[String]) -> Vec<String> {
    const NAMED: usize = 5;
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut plain = Vec::new();
    for message in messages {
        let Some((host, rest)) = message
            .strip_prefix("host ")
            .and_then(|m| m.split_once(": "))
        else {
            plain.push(message.clone());
            continue;
        };
        match groups.iter_mut().find(|(r, _)| *r == rest) {
            // The same problem twice on one host (two certificate sets sharing a file): once.
            Some((_, hosts)) if hosts.contains(&host) => {}
            Some((_, hosts)) => hosts.push(host),
            None => groups.push((rest, vec![host])),
        }
    }
    let grouped = groups.into_iter().map(|(rest, hosts)| match hosts.len() {
        1 => format!("host {}: {rest}", hosts[0]),
        n if n <= NAMED => format!("hosts {}: {rest}", hosts.join(", ")),
        n => format!(
            "hosts {} and {} more: {rest}",
            hosts[..NAMED].join(", "),
            n - NAMED
        ),
    });
    plain.into_iter().chain(grouped).collect()
}

/// Inventory groups that form one fleet with the playbook's (globals.yml).
const FLEET_GROUPS: &str = "virtfleet_fleet_groups";

/// The variable that carries [`Inputs::fleet_client_dns`] to the playbook.
const FLEET_CLIENT_DNS: &str = "virtfleet_fleet_client_dns";

/// The user to log in as when the inventory names none (as ssh does).
pub fn default_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

/// Hosts whose facts could not be gathered (unreachable, a refused host key, no `ip`): name →
/// the report saying so. They are not planned, and nothing is done on them.
pub type NotReached = BTreeMap<String, HostReport>;

/// What a run works on, in inventory order.
pub struct Prepared {
    pub inputs: Inputs,
    pub jobs: Vec<HostJob>,
    pub not_reached: NotReached,
    /// Every targeted host, in inventory order.
    pub order: Vec<String>,
    /// Which connections the facts round trip kept (and a later read keeps).
    pub keep: Keep,
}

impl Prepared {
    /// `jobs` and `not_reached` together, in `order` (for batches).
    pub fn entries_of(
        jobs: Vec<HostJob>,
        mut not_reached: NotReached,
        order: Vec<String>,
    ) -> Vec<virtfleet_rollout::Entry> {
        let mut jobs: BTreeMap<String, HostJob> = jobs
            .into_iter()
            .map(|job| (job.target.label.clone(), job))
            .collect();
        order
            .into_iter()
            .filter_map(|host| match jobs.remove(&host) {
                Some(job) => Some(virtfleet_rollout::Entry::Job(Box::new(job))),
                None => {
                    let report = not_reached.remove(&host)?;
                    Some(virtfleet_rollout::Entry::Failed { host, report })
                }
            })
            .collect()
    }
}

/// Load, gather the facts planning needs, plan and check everything; only then change hosts.
/// `keep`: which hosts' connections stay open from the facts round trip to the converge.
pub async fn prepare(global: &GlobalArgs, keep: Keep) -> Result<Prepared, InputErrors> {
    let mut inputs = Inputs::load(global)?;
    let order = inputs.hosts.clone();
    let user = default_user();
    // Without facts first: a host that plans so is done (nothing in its plan can come from
    // facts). One that fails is planned on stand-in facts: if that plans, it needs its facts;
    // if not, its error is bad input. So every input error is exit 2 before any host is
    // contacted. A plan made on stand-in facts is kept only when the real facts are exactly
    // what stood in (`stood_in_exactly`); any other host is planned again on its real ones.
    let mut jobs = Vec::new();
    let mut failed = Vec::new();
    for (host, outcome) in inputs.plan_each(&inputs.hosts, &user) {
        match outcome {
            Ok(job) => jobs.push(job),
            Err(_) => failed.push(host),
        }
    }
    inputs.provisional_facts(&failed);
    let mut needing = Vec::new();
    let mut errors = Vec::new();
    for (_, outcome) in inputs.plan_each(&failed, &user) {
        match outcome {
            Ok(job) => needing.push(Arc::new(job)),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    let not_reached = inputs
        .gather_facts_with_probe(global, needing.clone(), keep)
        .await;
    let mut replan = Vec::new();
    for job in needing {
        let host = job.target.label.clone();
        if not_reached.contains_key(&host) {
            continue;
        }
        let facts = &inputs.facts[&host];
        if !virtfleet_plan::stood_in_exactly(&host, &job.plan, facts) {
            replan.push(host);
            continue;
        }
        let mut job = Arc::unwrap_or_clone(job);
        job.probed = inputs.probed.get(&host).cloned();
        jobs.push(job);
    }
    jobs.extend(inputs.plan_hosts(&replan, &user)?);
    inputs.warn_let_through(&jobs);
    let mut errors = inputs.identity_clashes(&jobs);
    let findings = check_certs(&jobs, DEFAULT_WARN_DAYS);
    let (cert_errors, warnings): (Vec<_>, Vec<_>) =
        findings.into_iter().partition(|f| f.is_error());
    let warnings: Vec<String> = warnings.iter().map(|w| format!("host {w}")).collect();
    for warning in one_line_per_problem(&warnings) {
        eprintln!("warning: {warning}");
    }
    errors.extend(cert_errors.iter().map(|e| e.to_string()));
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    let position: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    jobs.sort_by_key(|job| position.get(job.target.label.as_str()).copied());
    Ok(Prepared {
        inputs,
        jobs,
        not_reached,
        order,
        keep,
    })
}

pub struct Inputs {
    pub configdir: PathBuf,
    /// The inventory file, for messages.
    pub inventory_path: PathBuf,
    pub inventory: Inventory,
    pub playbook: Playbook,
    /// Targeted host names, in inventory order.
    pub hosts: Vec<String>,
    /// globals.yml then passwords.yml: Kolla passes both as extra vars (highest precedence).
    pub extra_vars: Vars,
    /// The subjects of every client certificate of the playbook's group (not only the
    /// targeted hosts: peers outside `--limit` must stay allowed), as libvirt matches them;
    /// given to the playbook as `virtfleet_fleet_client_dns`.
    pub fleet_client_dns: Vec<String>,
    /// Each host's facts (`ansible_facts`), for the hosts whose variables read them.
    pub facts: BTreeMap<String, serde_json::Value>,
    /// The probes read with those facts.
    probed: BTreeMap<String, Arc<Probed>>,
    /// Per host, variables over every other (a transition's held settings and phase).
    pub overrides: BTreeMap<String, Vars>,
    /// Every host of the playbook's group, whatever `--limit` says.
    pub group: Vec<String>,
    /// Other groups whose hosts are peers of these (the run's other playbooks' groups and
    /// `virtfleet_fleet_groups`): their client certificates are let in too.
    pub other_groups: Vec<String>,
    /// How hosts are reached besides their variables.
    reach: Reach,
}

/// How hosts are reached besides their variables: the OpenSSH client configuration, and
/// which of its settings the command line fixed for every host.
#[derive(Default)]
struct Reach {
    ssh_config: Option<SshConfig>,
    known_hosts_given: bool,
    timeout_given: bool,
}

impl Reach {
    /// `-F FILE` (`none`: no file), else `~/.ssh/config` when it exists, as `ssh` reads it.
    fn load(args: &GlobalArgs) -> Result<Reach, InputErrors> {
        let path = match &args.ssh_config {
            Some(path) if path.as_os_str() == "none" => None,
            Some(path) => Some(path.clone()),
            None => account_home()
                .map(|home| home.join(".ssh/config"))
                .filter(|path| path.is_file()),
        };
        let ssh_config = path
            .map(|path| SshConfig::load(&path).map_err(InputErrors::one))
            .transpose()?;
        for skipped in ssh_config.iter().flat_map(|c| &c.skipped) {
            eprintln!("warning: {skipped}");
        }
        Ok(Reach {
            ssh_config,
            known_hosts_given: args.known_hosts.is_some(),
            timeout_given: args.connect_timeout.is_some(),
        })
    }
}

impl Inputs {
    /// [`Inputs::read`] for a command that reaches the hosts: with the open files that needs.
    pub fn load(args: &GlobalArgs) -> Result<Inputs, InputErrors> {
        let inputs = Inputs::read(args)?;
        // A connection to each targeted host may stay open from facts to converge.
        let hosts = inputs.hosts.len();
        let forks = args.forks(hosts);
        let (sockets, given) = (inputs.sockets(), args.forks.is_some());
        crate::limits::ensure_open_files(hosts, sockets, forks, given, &args.sessions)
            .map_err(InputErrors::one)?;
        Ok(inputs)
    }

    /// The inventory, variables, playbooks and certificates' places; no host is reached.
    pub fn read(args: &GlobalArgs) -> Result<Inputs, InputErrors> {
        // Absolute, so template and certificate searches do not depend on where they run.
        let configdir = std::path::absolute(&args.configdir)
            .map_err(|e| InputErrors::one(format!("{}: {e}", args.configdir.display())))?;
        let inventory = load_inventory(&args.inventory).map_err(InputErrors::one)?;
        let playbook = load_playbook(&playbook_path(args)?).map_err(InputErrors::one)?;
        let mut extra_vars = Vars::new();
        for name in ["globals.yml", "passwords.yml"] {
            let path = configdir.join(name);
            if !path.exists() {
                return Err(InputErrors::one(format!(
                    "{}: not found (set --configdir or VIRTFLEET_CONFIGDIR)",
                    path.display()
                )));
            }
            merge(
                &mut extra_vars,
                &load_vars_file(&path).map_err(InputErrors::one)?,
            );
        }
        let group = inventory.group_hosts(&playbook.hosts).map_err(|e| {
            InputErrors::one(format!(
                "{e}: playbook {} works on group {} (its `hosts:`; the shipped ones: kolla.yml \
                 on compute, libvirt-host.yml on libvirt_hosts); choose the playbook with \
                 --playbook, e.g. `--playbook libvirt-host.yml` for plain KVM hosts",
                playbook.path.display(),
                playbook.hosts
            ))
        })?;
        let hosts = match &args.limit {
            Some(pattern) => inventory
                .select(&group, pattern)
                .map_err(InputErrors::one)?,
            None => group.clone(),
        };
        if hosts.is_empty() {
            return Err(InputErrors::one(format!(
                "{}: no host of group {} matches",
                args.inventory.display(),
                playbook.hosts
            )));
        }
        let mut inputs = Inputs {
            configdir,
            inventory_path: args.inventory.clone(),
            inventory,
            playbook,
            hosts,
            extra_vars,
            fleet_client_dns: Vec::new(),
            facts: BTreeMap::new(),
            probed: BTreeMap::new(),
            overrides: BTreeMap::new(),
            group: group.clone(),
            other_groups: Vec::new(),
            reach: Reach::load(args)?,
        };
        let mut dns = inputs.client_dns(&inputs.playbook, &group)?;
        // The other plays' hosts are peers too: their client certificates are let in.
        for path in &args.fleet_playbooks {
            let other = load_playbook(&resolve_playbook(path)).map_err(InputErrors::one)?;
            if other.path == inputs.playbook.path {
                continue;
            }
            let hosts = inputs
                .inventory
                .group_hosts(&other.hosts)
                .map_err(InputErrors::one)?;
            dns.extend(inputs.client_dns(&other, &hosts)?);
            inputs.other_groups.push(other.hosts.clone());
        }
        // And the groups the operator names as one fleet, whatever this run's playbooks
        // (their certificates are where this playbook looks for its own hosts').
        for name in inputs.fleet_groups()? {
            if name == inputs.playbook.hosts || inputs.other_groups.contains(&name) {
                continue;
            }
            let hosts = inputs
                .inventory
                .group_hosts(&name)
                .map_err(InputErrors::one)?;
            dns.extend(inputs.client_dns(&inputs.playbook, &hosts)?);
            inputs.other_groups.push(name);
        }
        dns.sort();
        dns.dedup();
        inputs.fleet_client_dns = dns;
        Ok(inputs)
    }

    /// Sockets a connection to every targeted host holds at once: a host behind a jump host
    /// is a channel of the jump host's one connection. Read from the variables as written,
    /// before templates are rendered, so a host whose address or SSH arguments are
    /// templated, or whose settings do not resolve, counts as a socket of its own; each hop
    /// of a chain counts.
    fn sockets(&self) -> usize {
        const DECIDE_THE_JUMP: [&str; 4] = [
            "ansible_host",
            "ansible_ssh_host",
            "ansible_ssh_common_args",
            "ansible_ssh_extra_args",
        ];
        let user = default_user();
        let targets = crate::parallel::map(&self.hosts, |host| {
            let vars = self.vars(host);
            let templated = |name: &&str| {
                vars.get(*name)
                    .and_then(|v| v.as_str())
                    .is_some_and(virtfleet_plan::is_templated)
            };
            if DECIDE_THE_JUMP.iter().any(templated) {
                return None;
            }
            target(host, &vars, &user, &self.reach).ok()
        });
        let mut jumps = std::collections::HashSet::new();
        let mut direct = 0;
        for target in &targets {
            match target.as_ref().and_then(|t| t.jump.as_ref()) {
                Some(mut jump) => {
                    jumps.insert(jump.clone());
                    while let Some(next) = &jump.jump {
                        jumps.insert(next.clone());
                        jump = next;
                    }
                }
                None => direct += 1,
            }
        }
        direct + jumps.len()
    }

    /// [`Inputs::load`] and [`Inputs::gather_facts`], for commands that work on the
    /// workstation's files only: a host that cannot be reached is an error naming it.
    pub async fn load_with_facts(global: &GlobalArgs) -> Result<Inputs, InputErrors> {
        let mut inputs = Inputs::load(global)?;
        let unreachable = inputs.gather_needed_facts(global).await;
        if unreachable.is_empty() {
            return Ok(inputs);
        }
        Err(InputErrors(
            unreachable
                .into_iter()
                .map(|(host, report)| {
                    let why = report.error.unwrap_or_default();
                    format!(
                        "host {host}: {why} (its variables read its facts; set \
                         migration_hostname and migration_interface_address for it to work \
                         without reaching it, or leave it out with --limit)"
                    )
                })
                .collect(),
        ))
    }

    /// The variables of one host: inventory (with group/host vars), then globals, passwords,
    /// and what virtfleet knows of the whole fleet (`virtfleet_fleet_client_dns`).
    pub fn vars(&self, host: &str) -> Vars {
        let mut vars = self.vars_without_fleet(host);
        let dns = self
            .fleet_client_dns
            .iter()
            .cloned()
            .map(serde_json::Value::from);
        vars.insert(
            FLEET_CLIENT_DNS.into(),
            serde_json::Value::Array(dns.collect()),
        );
        vars
    }

    /// The subject of each host's client certificate (the first found in its certificate
    /// directories), sorted, without repeats. A subject libvirt's list cannot hold exactly is
    /// an error, unless the operator writes the list (`libvirt_tls_allowed_dn_list` in
    /// globals.yml).
    fn client_dns(
        &self,
        playbook: &Playbook,
        group: &[String],
    ) -> Result<Vec<String>, InputErrors> {
        let Some(tls) = &playbook.tls else {
            return Ok(Vec::new());
        };
        let Some(name) = tls.files.get(&CertRole::ClientCert) else {
            return Ok(Vec::new());
        };
        let explicit = self.extra_vars.contains_key("libvirt_tls_allowed_dn_list");
        let found = crate::parallel::map(group, |host| {
            let vars = self.vars_without_fleet(host);
            let input = PlanInput {
                playbook,
                ..self.plan_input(host, &vars)
            };
            let Ok(dirs) = virtfleet_plan::cert_dirs(&input) else {
                return Ok(None); // planning the host reports it
            };
            let Some(path) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) else {
                return Ok(None); // no client certificate (yet): nothing to allow
            };
            let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            virtfleet_pki::libvirt_dn(&pem).map(Some).map_err(|why| {
                format!(
                    "{}: its subject cannot be listed in libvirt's tls_allowed_dn_list ({why}); \
                     write the list yourself (libvirt_tls_allowed_dn_list in globals.yml)",
                    path.display()
                )
            })
        });
        let mut dns = std::collections::BTreeSet::new();
        let mut errors = Vec::new();
        for outcome in found {
            match outcome {
                Ok(Some(dn)) => {
                    dns.insert(dn);
                }
                Ok(None) => {}
                Err(e) if !explicit => errors.push(e),
                Err(_) => {}
            }
        }
        match errors.is_empty() {
            true => Ok(dns.into_iter().collect()),
            false => Err(InputErrors(errors)),
        }
    }

    /// `virtfleet_fleet_groups` from globals.yml: inventory groups that form one fleet with
    /// this playbook's (each host lets in every one's client certificates).
    fn fleet_groups(&self) -> Result<Vec<String>, InputErrors> {
        let Some(value) = self.extra_vars.get(FLEET_GROUPS) else {
            return Ok(Vec::new());
        };
        let names = value.as_array().and_then(|list| {
            list.iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
        });
        names.ok_or_else(|| {
            InputErrors::one(format!(
                "{}: {FLEET_GROUPS} must be a list of inventory group names",
                self.configdir.join("globals.yml").display()
            ))
        })
    }

    fn vars_without_fleet(&self, host: &str) -> Vars {
        let mut vars = self.inventory.host_vars(host);
        merge(&mut vars, &self.extra_vars);
        if let Some(overrides) = self.overrides.get(host) {
            merge(&mut vars, overrides);
        }
        vars
    }

    pub fn plan_input<'a>(&'a self, host: &'a str, vars: &'a Vars) -> PlanInput<'a> {
        PlanInput {
            playbook: &self.playbook,
            host,
            vars,
            configdir: &self.configdir,
            facts: self.facts.get(host),
        }
    }

    /// Where to reach each targeted host whose variables read its facts (`ansible_facts`)
    /// and set no value in their place. A host whose variables are broken is left out:
    /// planning reports it.
    pub fn needing_facts(&self) -> Vec<Target> {
        let user = default_user();
        let needing = crate::parallel::map(&self.hosts, |host| {
            let vars = self.vars(host);
            match virtfleet_plan::resolve_vars(&self.plan_input(host, &vars)) {
                Ok((resolved, true)) => target(host, &resolved, &user, &self.reach).ok(),
                _ => None,
            }
        });
        needing.into_iter().flatten().collect()
    }

    /// Stand-in facts for `hosts` ([`virtfleet_plan::provisional_facts`]), so that planning
    /// finds every input error before any host is contacted.
    pub fn provisional_facts(&mut self, hosts: &[String]) {
        for host in hosts {
            let facts = virtfleet_plan::provisional_facts(host);
            self.facts.insert(host.clone(), facts);
        }
    }

    /// Gathers the facts of `targets` (one read-only round trip each, `--forks` at a time;
    /// the connection stays open for the rest of the run). A host that cannot be reached
    /// is dropped from [`Inputs::hosts`] and returned.
    pub async fn gather_facts(&mut self, global: &GlobalArgs, targets: Vec<Target>) -> NotReached {
        if targets.is_empty() {
            return NotReached::new();
        }
        let forks = global.forks(targets.len());
        let asked: Vec<String> = targets.iter().map(|t| t.label.clone()).collect();
        let gathered = virtfleet_engine::facts::gather(targets, &global.ssh_options(), forks).await;
        let gathered = gathered.into_iter().map(|(host, facts)| {
            let gathered = facts.map(|facts| Gathered {
                facts,
                probed: None,
            });
            (host, gathered)
        });
        self.keep_facts(&asked, gathered)
    }

    /// [`Inputs::gather_facts`] for hosts planned on stand-in facts, each with its probe in
    /// the same round trip (kept for the converge's first batch: no second round trip).
    async fn gather_facts_with_probe(
        &mut self,
        global: &GlobalArgs,
        jobs: Vec<Arc<HostJob>>,
        keep: Keep,
    ) -> NotReached {
        if jobs.is_empty() {
            return NotReached::new();
        }
        let forks = global.forks(jobs.len());
        let ssh = global.ssh_options();
        let asked: Vec<String> = jobs.iter().map(|j| j.target.label.clone()).collect();
        let gathered = virtfleet_engine::facts::gather_with_probe(jobs, &ssh, forks, keep).await;
        self.keep_facts(&asked, gathered)
    }

    /// Records gathered facts (and probes); returns the hosts that could not be read,
    /// dropped from [`Inputs::hosts`]. A host `asked` that has no answer at all (its task
    /// died) is one of them: its stand-in facts must never be planned on.
    fn keep_facts(
        &mut self,
        asked: &[String],
        gathered: impl IntoIterator<Item = (String, Result<Gathered, EngineError>)>,
    ) -> NotReached {
        let mut unreachable = NotReached::new();
        let gathered: BTreeMap<String, _> = gathered.into_iter().collect();
        for host in asked.iter().filter(|h| !gathered.contains_key(*h)) {
            self.facts.remove(host);
            let report = HostReport::failed(Status::Failed, "gathering facts failed".into());
            unreachable.insert(host.clone(), report);
        }
        for (host, gathered) in gathered {
            match gathered {
                Ok(Gathered { facts, probed }) => {
                    self.facts.insert(host.clone(), facts);
                    if let Some(probed) = probed {
                        self.probed.insert(host, probed);
                    }
                }
                Err(e) => {
                    self.facts.remove(&host);
                    let status = match e.is_unreachable() {
                        true => Status::Unreachable,
                        false => Status::Failed,
                    };
                    let report = HostReport::failed(status, e.to_string());
                    unreachable.insert(host, report);
                }
            }
        }
        self.hosts.retain(|h| !unreachable.contains_key(h));
        unreachable
    }

    /// [`Inputs::needing_facts`], then [`Inputs::gather_facts`] for them.
    pub async fn gather_needed_facts(&mut self, global: &GlobalArgs) -> NotReached {
        let targets = self.needing_facts();
        self.gather_facts(global, targets).await
    }

    /// A host's certificate directories, host first, shared last (no facts needed).
    pub fn cert_dirs(&self, host: &str) -> Result<Vec<PathBuf>, InputErrors> {
        let vars = self.vars(host);
        virtfleet_plan::cert_dirs(&self.plan_input(host, &vars)).map_err(InputErrors::one)
    }

    /// A host's certificate directories (host first, shared last) and TLS facts, without
    /// planning files (works before certificates exist).
    pub fn tls(&self, host: &str) -> Result<(Vec<PathBuf>, Option<TlsPlan>), InputErrors> {
        let vars = self.vars(host);
        virtfleet_plan::resolve_tls(&self.plan_input(host, &vars)).map_err(InputErrors::one)
    }

    /// One warning per refused configuration the operator let through (see the playbook's
    /// `refuse:`), naming the hosts and where the switch is set: never silently.
    fn warn_let_through(&self, hosts: &[HostJob]) {
        let mut seen: BTreeMap<&(String, String), Vec<&str>> = BTreeMap::new();
        for job in hosts {
            for refusal in &job.plan.let_through {
                seen.entry(refusal).or_default().push(&job.target.label);
            }
        }
        for ((var, message), names) in seen {
            let place = self
                .where_set(names[0], var)
                .map(|p| format!(" (set at {p})"))
                .unwrap_or_default();
            eprintln!(
                "warning: {message}; deployed anyway on {} host(s) ({}) because {var} is true{place}",
                names.len(),
                names.join(", ")
            );
        }
    }

    /// `file:line` where `var` is set for `host`, highest precedence first: passwords.yml,
    /// globals.yml, host_vars, the inventory file, group_vars. None for a playbook default.
    fn where_set(&self, host: &str, var: &str) -> Option<String> {
        let inventory_dir = self
            .inventory_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut files = vec![
            self.configdir.join("passwords.yml"),
            self.configdir.join("globals.yml"),
        ];
        for dir in ["host_vars", "group_vars"] {
            let dir = inventory_dir.join(dir);
            let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    dir != inventory_dir.join("host_vars")
                        || p.file_stem().is_some_and(|s| s == host)
                })
                .flat_map(|p| match std::fs::read_dir(&p) {
                    Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
                    Err(_) => vec![p],
                })
                .collect();
            found.sort();
            files.extend(found);
            if dir.ends_with("host_vars") {
                files.push(self.inventory_path.clone());
            }
        }
        files.iter().find_map(|file| {
            let text = virtfleet_inventory::read_text_file(file).ok()?;
            let line = text.lines().position(|line| {
                let line = line.trim_start();
                line.starts_with(&format!("{var}:"))
                    || line.starts_with(&format!("{var}="))
                    || line.contains(&format!(" {var}="))
            })?;
            Some(format!("{}:{}", file.display(), line + 1))
        })
    }

    /// Plans every targeted host; all errors at once.
    pub fn plan_all(&self, default_user: &str) -> Result<Vec<HostJob>, InputErrors> {
        self.plan_hosts(&self.hosts, default_user)
    }

    /// Plans these hosts; all errors at once.
    pub fn plan_hosts(
        &self,
        hosts: &[String],
        default_user: &str,
    ) -> Result<Vec<HostJob>, InputErrors> {
        let (prepared, errors): (Vec<_>, Vec<_>) = self
            .plan_each(hosts, default_user)
            .into_iter()
            .map(|(_, outcome)| outcome)
            .partition(Result::is_ok);
        if errors.is_empty() {
            Ok(prepared.into_iter().flatten().collect())
        } else {
            Err(InputErrors(
                errors.into_iter().filter_map(Result::err).collect(),
            ))
        }
    }

    /// Each host's plan, or why it cannot be planned (one line naming the host).
    pub fn plan_each(
        &self,
        hosts: &[String],
        default_user: &str,
    ) -> Vec<(String, Result<HostJob, String>)> {
        let outcomes = crate::parallel::map(hosts, |host| {
            let vars = self.vars(host);
            let plan = plan_host(&self.plan_input(host, &vars)).map_err(|e| match &e {
                // Say where the bad value comes from (never what it is).
                virtfleet_plan::PlanError::Variable { var, .. } => {
                    match self.where_set(host, var) {
                        Some(place) => format!("{e} (set at {place})"),
                        None => e.to_string(),
                    }
                }
                virtfleet_plan::PlanError::Refused { read, .. } => {
                    let places: Vec<String> = read
                        .iter()
                        .filter_map(|var| Some(format!("{var} at {}", self.where_set(host, var)?)))
                        .collect();
                    match places.is_empty() {
                        true => e.to_string(),
                        false => format!("{e} (set: {})", places.join(", ")),
                    }
                }
                _ => e.to_string(),
            })?;
            // `host NAME: `, as other per-host problems: one line for a problem many share.
            let target = target(host, &plan.vars, default_user, &self.reach)
                .map_err(|e| format!("host {e}"))?;
            // Nothing reads a host's variables after this (the plan carries what it needs),
            // and every host holding a copy of every variable costs gigabytes on a large
            // globals.yml: keep only what messages may want, the connection settings.
            let mut plan = plan;
            plan.vars.retain(|name, _| name.starts_with("ansible_"));
            let probed = self.probed.get(host).cloned();
            Ok(HostJob {
                target,
                plan: Arc::new(plan),
                probed,
            })
        });
        hosts.iter().cloned().zip(outcomes).collect()
    }

    /// Two hosts with the same migration name or address, or a host whose name or address
    /// (possibly from its own facts) is another inventory host's name or SSH address: a host
    /// must never get, or be checked against, another host's identity.
    pub fn identity_clashes(&self, jobs: &[HostJob]) -> Vec<String> {
        let identities: Vec<(&str, &TlsPlan)> = jobs
            .iter()
            .filter_map(|job| Some((job.target.label.as_str(), job.plan.tls.as_ref()?)))
            .collect();
        self.clashes(&identities)
    }

    /// [`Inputs::identity_clashes`] of hosts and their TLS identities.
    pub fn clashes(&self, identities: &[(&str, &TlsPlan)]) -> Vec<String> {
        clashes_in(&self.inventory, &[self.playbook.hosts.as_str()], identities)
    }
}

/// Hosts of several plays (each job once, by the first play that plans it): no two may
/// claim one name or address, nor one that is another host's in any of their groups (exit 2,
/// each clash a line).
pub fn clashes_across(
    inventory: &Inventory,
    groups: &[&str],
    jobs: &[&HostJob],
) -> Result<(), InputErrors> {
    let mut identities: Vec<(&str, &TlsPlan)> = Vec::new();
    for job in jobs {
        let label = job.target.label.as_str();
        if let Some(tls) = &job.plan.tls {
            if !identities.iter().any(|(host, _)| *host == label) {
                identities.push((label, tls));
            }
        }
    }
    let clashes = clashes_in(inventory, groups, &identities);
    match clashes.is_empty() {
        true => Ok(()),
        false => Err(InputErrors(clashes)),
    }
}

/// [`Inputs::identity_clashes`] against the hosts of `groups`.
fn clashes_in(
    inventory: &Inventory,
    groups: &[&str],
    identities: &[(&str, &TlsPlan)],
) -> Vec<String> {
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    let hosts = groups
        .iter()
        .flat_map(|group| inventory.group_hosts(group).unwrap_or_default());
    for host in hosts {
        let address = text_var(&inventory.host_vars(&host), "ansible_host");
        for name in std::iter::once(host.clone()).chain(address) {
            owner.entry(name).or_insert_with(|| host.clone());
        }
    }
    let mut clashes = Vec::new();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for &(host, tls) in identities {
        for (what, value) in [
            ("migration_hostname", &tls.server_name),
            ("migration_interface_address", &tls.address),
        ] {
            let other = owner
                .get(value)
                .filter(|o| o.as_str() != host)
                .or_else(|| claimed.get(value).filter(|o| o.as_str() != host));
            match other {
                Some(other) => clashes.push(format!(
                    "host {host}: its {what} {value:?} is host {other}'s; each host's name \
                         and address must be its own (a host's facts say what it reports)"
                )),
                None => {
                    claimed.insert(value.clone(), host.to_string());
                }
            }
        }
    }
    clashes
}

fn playbook_path(args: &GlobalArgs) -> Result<PathBuf, InputErrors> {
    let name = match args.playbook.first() {
        Some(path) => return Ok(resolve_playbook(path)),
        None => "kolla.yml",
    };
    shipped_playbook(name)
        .ok_or_else(|| InputErrors::one("playbook kolla.yml not found; pass --playbook"))
}

/// A playbook path as given, or, when that is no file and it is a bare name
/// (`libvirt-host.yml`), the shipped playbook of that name.
pub fn resolve_playbook(path: &Path) -> PathBuf {
    let bare = path.components().count() == 1;
    match (path.is_file(), bare, path.to_str()) {
        (false, true, Some(name)) => shipped_playbook(name).unwrap_or_else(|| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

/// A shipped playbook: ./playbooks/, then <bindir>/../share/virtfleet/playbooks/, then the
/// source tree's.
fn shipped_playbook(name: &str) -> Option<PathBuf> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let candidates = [
        Some(PathBuf::from("playbooks").join(name)),
        exe_dir.map(|d| d.join("../share/virtfleet/playbooks").join(name)),
        Some(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../playbooks")).join(name)),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

fn text_var(vars: &Vars, name: &str) -> Option<String> {
    match vars.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Where and how to reach a host: Ansible's connection variables, over the OpenSSH client
/// configuration for the name `ssh` would be given (`ansible_host`, else the inventory
/// name), as Ansible's ssh connection passes them on the command line.
fn target(host: &str, vars: &Vars, default_user: &str, reach: &Reach) -> Result<Target, String> {
    // Ansible's other transports (local, docker, winrm, ...) would reach some other place.
    if let Some(connection) = text_var(vars, "ansible_connection") {
        if !matches!(
            connection.as_str(),
            "ssh" | "smart" | "paramiko" | "paramiko_ssh"
        ) {
            return Err(format!(
                "{host}: ansible_connection={connection} is not supported; virtfleet reaches \
                 hosts over SSH only (for this machine: run sshd and set ansible_host)"
            ));
        }
    }
    let port = match connection_var(host, vars, &["ansible_port", "ansible_ssh_port"])? {
        Some(p) => Some(
            p.parse()
                .map_err(|_| format!("{host}: ansible_port {p:?} is not a port number"))?,
        ),
        None => None,
    };
    let key_names = ["ansible_ssh_private_key_file", "ansible_private_key_file"];
    let key_file = connection_var(host, vars, &key_names)?.map(|p| expand_home(&p));
    let name = connection_var(host, vars, &["ansible_host", "ansible_ssh_host"])?
        .unwrap_or_else(|| host.to_string());
    let config = ssh_config_for(reach, &name).map_err(|e| format!("{host}: {e}"))?;
    let user = connection_var(host, vars, &["ansible_user", "ansible_ssh_user"])?
        .or(config.user.clone())
        .unwrap_or_else(|| default_user.to_string());
    Ok(Target {
        label: host.to_string(),
        address: config.hostname.clone().unwrap_or(name),
        port: port.or(config.port).unwrap_or(22),
        user,
        jump: jump(host, vars, default_user, key_file.as_ref(), reach, &config)?,
        own: own_settings(reach, &config, false),
        key_file,
        become_user: become_user(host, vars)?,
    })
}

/// This account's home directory from the user database, as `ssh` finds `~/.ssh/config`
/// (not `$HOME`, which `sudo -E` would keep pointing at the invoking user's).
fn account_home() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: getpwuid returns a pointer into static storage or null; the name is copied
    // out at once, before any other call could reuse that storage (the CLI's main thread).
    unsafe {
        let entry = libc::getpwuid(libc::geteuid());
        if entry.is_null() || (*entry).pw_dir.is_null() {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr((*entry).pw_dir);
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())))
    }
}

/// What the OpenSSH configuration says for `name` (nothing without one).
fn ssh_config_for(reach: &Reach, name: &str) -> Result<HostConfig, String> {
    match &reach.ssh_config {
        Some(config) => config.host(name),
        None => Ok(HostConfig::default()),
    }
}

/// The configuration's settings that the command line did not fix for every host. A jump
/// host's `StrictHostKeyChecking yes` holds even under --accept-new-host-keys (`ssh` does not
/// pass its command line on to the jump host's connection).
fn own_settings(reach: &Reach, config: &HostConfig, jump_host: bool) -> HostSettings {
    HostSettings {
        known_hosts: config
            .known_hosts
            .clone()
            .filter(|_| !reach.known_hosts_given),
        // `no` keeps strict checking: virtfleet never takes a key it cannot check.
        accept_new_host_keys: match config.strict_host_keys {
            Some(StrictHostKeys::AcceptNew) => Some(true),
            Some(StrictHostKeys::Yes) if jump_host => Some(false),
            _ => None,
        },
        connect_timeout: config.connect_timeout.filter(|_| !reach.timeout_given),
        identity_files: (!config.identity_files.is_empty()).then(|| config.identity_files.clone()),
    }
}

/// The jump host chain (`-J`, `ProxyJump`, or an `ssh -W` `ProxyCommand`) of Ansible's ssh
/// arguments (the common ones first; the first setting wins, as in `ssh`), else the OpenSSH
/// configuration's `ProxyJump` or `ProxyCommand`; as the last hop, each hop holding the one
/// before. A hop's own name is looked up in the configuration too (its HostName, User, Port,
/// IdentityFile, and the first hop's own jump hosts). A hop logs in as its own user (else
/// the local user, as OpenSSH's ProxyJump does) with its `-i` key, else the host's key file,
/// then the default identities and the agent.
fn jump(
    host: &str,
    vars: &Vars,
    default_user: &str,
    key_file: Option<&PathBuf>,
    reach: &Reach,
    config: &HostConfig,
) -> Result<Option<Arc<Target>>, String> {
    let mut hops = None;
    for name in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
        let Some(args) = text_var(vars, name) else {
            continue;
        };
        hops =
            virtfleet_inventory::jump_hosts(&args).map_err(|e| format!("{host}: {name}: {e}"))?;
        if hops.is_some() {
            break;
        }
    }
    let hops = match hops {
        Some(hops) => Some(hops),
        None => configured_hops(config).map_err(|e| format!("{host}: {e}"))?,
    };
    let hop = HopContext {
        default_user,
        key_file,
        reach,
    };
    hop.chain(hops.unwrap_or_default(), 0)
        .map_err(|e| format!("{host}: {e}"))
}

/// The jump hosts the OpenSSH configuration gives a host (`ProxyJump`, else an `ssh -W`
/// `ProxyCommand`; any other command is refused, as in the inventory).
fn configured_hops(
    config: &HostConfig,
) -> Result<Option<Vec<virtfleet_inventory::JumpHost>>, String> {
    if let Some(list) = &config.proxy_jump {
        return virtfleet_inventory::proxy_jump(list);
    }
    match &config.proxy_command {
        Some(command) => Ok(virtfleet_inventory::proxy_command(command)?.map(|j| vec![j])),
        None => Ok(None),
    }
}

/// What every jump host of a host's chain is built from.
struct HopContext<'a> {
    default_user: &'a str,
    key_file: Option<&'a PathBuf>,
    reach: &'a Reach,
}

/// Jump hosts of jump hosts (through the configuration) deeper than this are a loop.
const MAX_JUMP_DEPTH: usize = 8;

impl HopContext<'_> {
    /// `hops` dialled in order, the first through its own configured jump hosts.
    fn chain(
        &self,
        hops: Vec<virtfleet_inventory::JumpHost>,
        depth: usize,
    ) -> Result<Option<Arc<Target>>, String> {
        if depth > MAX_JUMP_DEPTH {
            return Err(format!(
                "jump hosts nest deeper than {MAX_JUMP_DEPTH} (a ProxyJump loop in the OpenSSH \
                 configuration?)"
            ));
        }
        let mut chain: Option<Arc<Target>> = None;
        for (index, hop) in hops.into_iter().enumerate() {
            let own = ssh_config_for(self.reach, &hop.host)?;
            if index == 0 {
                if let Some(before) = configured_hops(&own)? {
                    chain = self.chain(before, depth + 1)?;
                }
            }
            let port = hop.port.or(own.port).unwrap_or(22);
            chain = Some(Arc::new(Target {
                label: format!("jump host {}:{port}", hop.host),
                address: own.hostname.clone().unwrap_or(hop.host),
                port,
                user: hop
                    .user
                    .or(own.user.clone())
                    .unwrap_or_else(|| self.default_user.to_string()),
                key_file: hop
                    .key_file
                    .map(|p| expand_home(&p))
                    .or(self.key_file.cloned()),
                become_user: None,
                own: own_settings(self.reach, &own, true),
                jump: chain,
            }));
        }
        Ok(chain)
    }
}

/// One connection setting under any of the names Ansible's ssh connection accepts for it
/// (older inventories say `ansible_ssh_user`, `ansible_ssh_host`, ...). Two names with
/// different values are refused rather than one picked silently.
fn connection_var(host: &str, vars: &Vars, names: &[&str]) -> Result<Option<String>, String> {
    let mut found: Option<(&str, String)> = None;
    for name in names {
        let Some(value) = text_var(vars, name) else {
            continue;
        };
        match &found {
            Some((first, seen)) if *seen != value => {
                return Err(format!(
                    "{host}: {first} is {seen:?} but {name} is {value:?}; set only one of them"
                ))
            }
            Some(_) => {}
            None => found = Some((name, value)),
        }
    }
    Ok(found.map(|(_, value)| value))
}

/// Ansible's privilege escalation, as far as virtfleet supports it: `sudo` without a
/// password. Anything else is refused before any host is contacted, rather than failing on
/// every host (or, for a password, rather than sending it anywhere).
fn become_user(host: &str, vars: &Vars) -> Result<Option<String>, String> {
    let enabled = match vars.get("ansible_become") {
        None => false,
        Some(value) => parse_bool(value).ok_or_else(|| {
            format!("{host}: ansible_become {value} is not a boolean (use true or false)")
        })?,
    };
    if !enabled {
        return Ok(None);
    }
    let method = text_var(vars, "ansible_become_method").unwrap_or_else(|| "sudo".into());
    if method != "sudo" {
        return Err(format!(
            "{host}: ansible_become_method {method:?} is not supported; virtfleet becomes \
             another user with sudo only"
        ));
    }
    for password in ["ansible_become_password", "ansible_become_pass"] {
        if vars.contains_key(password) {
            return Err(format!(
                "{host}: {password} is set, but virtfleet runs sudo without a password \
                 (sudo -n); give the SSH user a NOPASSWD sudo rule and remove {password}"
            ));
        }
    }
    Ok(Some(
        text_var(vars, "ansible_become_user").unwrap_or_else(|| "root".into()),
    ))
}

/// The certificate sets the TLS service of a host will receive, as the PKI checks see
/// them: the main set, then each of `tls.sets` the host holds (with the main CA; a set's
/// server certificate must name the host as the main one's does). None when the plan
/// serves no TLS (TLS off, or certificates not managed).
pub fn host_certs(job: &HostJob) -> Option<Vec<HostCerts>> {
    let tls = job.plan.tls.as_ref()?;
    let sets = std::iter::once(None).chain(tls.sets.iter().map(|s| Some(s.as_str())));
    let certs = sets.map(|set| {
        let mut certs = HostCerts::new(&job.target.label);
        certs.migration_hostname = Some(tls.server_name.clone());
        certs.migration_address = Some(tls.address.clone());
        for role in CertRole::ALL {
            if let Some(file) = job.plan.set_file(set, role) {
                certs.set_file(
                    pki_role(role),
                    CertFile::new(&file.source, file.content.clone()),
                );
            }
        }
        certs
    });
    Some(certs.collect())
}

/// What the sets of `tls.sets` (QEMU's own pairs) must not be, besides valid:
/// - a warning per file that is the main set's own file (its `fallback:`, taken when the
///   set's own was not found): QEMU holding libvirt's pair, whose client subject every peer
///   lets in, with only SASL left in the way;
/// - a warning when the client certificate differs but has the main one's subject;
/// - an error when its own client certificate's subject matches a pattern peers let in
///   (`tls.let_in`, e.g. `CN=*`): the separate pair would open their libvirtd all the same.
fn set_findings(job: &HostJob) -> Vec<Finding> {
    let Some(tls) = &job.plan.tls else {
        return Vec::new();
    };
    let finding = |severity, file: &DesiredFile, message: String| Finding {
        severity,
        host: job.target.label.clone(),
        path: file.source.clone(),
        message,
    };
    let subject = |file: &DesiredFile| virtfleet_pki::libvirt_dn(&file.content).ok();
    let main_client = job.plan.tls_file(CertRole::ClientCert);
    let mut found = Vec::new();
    for set in &tls.sets {
        let leaves = CertRole::LEAF_CERTS.into_iter().chain(CertRole::LEAF_KEYS);
        for role in leaves {
            let (Some(own), Some(main)) =
                (job.plan.set_file(Some(set), role), job.plan.tls_file(role))
            else {
                continue;
            };
            if own.content == main.content {
                found.push(finding(
                    Severity::Warning,
                    own,
                    format!(
                        "the {set} set holds this file of the main set for want of its own \
                         (`virtfleet certs issue` makes one): whoever reads it (for QEMU, a \
                         guest that takes over its QEMU) holds a pair peers let in, with \
                         only SASL in the way"
                    ),
                ));
            }
        }
        let Some(client) = job.plan.set_file(Some(set), CertRole::ClientCert) else {
            continue;
        };
        if main_client.is_some_and(|main| main.content == client.content) {
            continue;
        }
        let Some(dn) = subject(client) else {
            continue;
        };
        if main_client.and_then(subject).as_ref() == Some(&dn) {
            found.push(finding(
                Severity::Warning,
                client,
                format!(
                    "the {set} client certificate has the subject of the main one ({dn}), which \
                     peers let in; give it its own subject (`virtfleet certs issue` does)"
                ),
            ));
        } else if let Some(pattern) = tls
            .let_in
            .iter()
            .find(|p| virtfleet_pki::dn_matches(p, &dn))
        {
            found.push(finding(
                Severity::Error,
                client,
                format!(
                    "the {set} client certificate's subject {dn} matches {pattern:?} of the \
                     subjects peers let in: its key would open their libvirtd; narrow the \
                     list or give the set another subject"
                ),
            ));
        }
    }
    found
}

/// The PKI checks' name for a role.
pub fn pki_role(role: CertRole) -> Role {
    match role {
        CertRole::Ca => Role::Ca,
        CertRole::ServerCert => Role::ServerCert,
        CertRole::ServerKey => Role::ServerKey,
        CertRole::ClientCert => Role::ClientCert,
        CertRole::ClientKey => Role::ClientKey,
    }
}

/// Validates every host's certificates; errors and warnings, all hosts at once.
pub fn check_certs(hosts: &[HostJob], warn_days: u32) -> Vec<Finding> {
    let now = SystemTime::now();
    let mut findings: Vec<Finding> = crate::parallel::map(hosts, |host| {
        let sets = host_certs(host).unwrap_or_default();
        let mut found: Vec<Finding> = sets
            .iter()
            .flat_map(|certs| validate_host(certs, now, warn_days))
            .collect();
        found.extend(set_findings(host));
        found
    })
    .into_iter()
    .flatten()
    .collect();
    // The sets share their CA: its findings once.
    findings.dedup();
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hosts_of_jump_hosts_come_from_the_configuration_and_loops_are_refused() {
        let reach = |text: &str| Reach {
            ssh_config: Some(SshConfig::parse(Path::new("/cfg"), text).unwrap()),
            known_hosts_given: false,
            timeout_given: false,
        };
        let nested = reach(
            "Host c1\n  ProxyJump inner\nHost inner\n  ProxyJump outer\n\
             StrictHostKeyChecking yes\nHost outer\n  ProxyCommand ssh -W %h:%p -l ops gate\n",
        );
        let t = target("c1", &Vars::new(), "me", &nested).unwrap();
        let inner = t.jump.as_ref().unwrap();
        let outer = inner.jump.as_ref().unwrap();
        let gate = outer.jump.as_ref().unwrap();
        assert_eq!(
            [&inner.address, &outer.address, &gate.address, &gate.user],
            ["inner", "outer", "gate", "ops"]
        );
        // `yes` on a jump host holds under --accept-new-host-keys.
        assert_eq!(inner.own.accept_new_host_keys, Some(false));
        let looped = reach("Host *\n  ProxyJump hop\n");
        let err = target("c1", &Vars::new(), "me", &looped).unwrap_err();
        assert!(err.contains("nest deeper"), "{err}");
        // The documented fleet file: the bastion's `ProxyJump none` comes first, so the
        // wildcard's jump is not its own.
        let fleet = reach(
            "Host bastion\n  HostName 192.0.2.9\n  User ops\n  ProxyJump none\n\
             Host *\n  ProxyJump bastion\n",
        );
        let t = target("c1", &Vars::new(), "me", &fleet).unwrap();
        let bastion = t.jump.as_ref().unwrap();
        assert_eq!([&bastion.address, &bastion.user], ["192.0.2.9", "ops"]);
        assert!(bastion.jump.is_none());
        let other = reach("Host c1\n  ProxyCommand nc -X 5 -x proxy %h %p\n");
        let err = target("c1", &Vars::new(), "me", &other).unwrap_err();
        assert!(err.contains("ProxyCommand"), "{err}");
    }

    #[test]
    fn the_openssh_configuration_fills_what_the_inventory_leaves_unset() {
        let config = SshConfig::parse(
            Path::new("/cfg"),
            "Host 10.0.0.*\n  User kolla\n  Port 2222\n  ProxyJump ops@bastion\n\
             UserKnownHostsFile /kh\n  StrictHostKeyChecking accept-new\n\
             Host bastion\n  HostName 192.0.2.9\n  Port 2200\n\
             Host c2\n  HostName 10.0.0.7\n",
        )
        .unwrap();
        let reach = Reach {
            ssh_config: Some(config),
            known_hosts_given: false,
            timeout_given: false,
        };
        let inventory = [("ansible_host", "10.0.0.5"), ("ansible_user", "root")];
        let t = target("c1", &vars(&inventory), "me", &reach).unwrap();
        // The inventory's user wins; the port, jump and host-key settings are the file's.
        assert_eq!(
            (t.address.as_str(), t.port, t.user.as_str()),
            ("10.0.0.5", 2222, "root")
        );
        assert_eq!(t.own.known_hosts, Some(PathBuf::from("/kh")));
        assert_eq!(t.own.accept_new_host_keys, Some(true));
        let jump = t.jump.as_ref().unwrap();
        assert_eq!(
            (jump.address.as_str(), jump.port, jump.user.as_str()),
            ("192.0.2.9", 2200, "ops")
        );
        // As in ssh, blocks match the name given (c2), not the HostName it maps to.
        let t = target("c2", &Vars::new(), "me", &reach).unwrap();
        assert_eq!(
            (t.address.as_str(), t.port, t.user.as_str()),
            ("10.0.0.7", 22, "me")
        );
        assert!(t.jump.is_none());
        // The inventory's ssh arguments win over the file's ProxyJump; --known-hosts over
        // UserKnownHostsFile.
        let args = [
            ("ansible_host", "10.0.0.5"),
            ("ansible_ssh_common_args", "-J other:2201"),
        ];
        let given = Reach {
            known_hosts_given: true,
            ..reach
        };
        let t = target("c1", &vars(&args), "me", &given).unwrap();
        assert_eq!(t.jump.as_ref().unwrap().address, "other");
        assert_eq!(t.own.known_hosts, None);
    }

    #[test]
    fn the_same_error_on_many_hosts_is_one_line_naming_them() {
        let mut errors: Vec<String> = (1..=7)
            .map(|n| format!("host c{n}: variable x: not an IP address (set at g.yml:3)"))
            .collect();
        errors.insert(2, "host c9: variable y: not a port".into());
        errors.insert(0, "inventory: line 4: bad".into());
        errors.push("host c2: variable x: not an IP address (set at host_vars/c2.yml:1)".into());
        // A repeat on one host (two certificate sets sharing a file) names it once.
        errors.push("host c9: variable y: not a port".into());
        assert_eq!(
            InputErrors(errors).lines(),
            [
                "inventory: line 4: bad",
                "hosts c1, c2, c3, c4, c5 and 2 more: variable x: not an IP address (set at g.yml:3)",
                "host c9: variable y: not a port",
                "host c2: variable x: not an IP address (set at host_vars/c2.yml:1)",
            ]
        );
    }

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect()
    }

    #[test]
    fn connection_variables_become_the_ssh_target() {
        let home = std::env::var("HOME").unwrap();
        let t = target(
            "compute01",
            &vars(&[
                ("ansible_host", "10.0.0.5"),
                ("ansible_port", "2222"),
                ("ansible_user", "ops"),
                ("ansible_ssh_private_key_file", "~/.ssh/fleet"),
            ]),
            "root",
            &Reach::default(),
        )
        .unwrap();
        assert_eq!(
            (t.address.as_str(), t.port, t.user.as_str()),
            ("10.0.0.5", 2222, "ops")
        );
        assert_eq!(t.key_file, Some(PathBuf::from(home).join(".ssh/fleet")));
        let plain = target("compute02", &Vars::new(), "root", &Reach::default()).unwrap();
        assert_eq!(
            (plain.address.as_str(), plain.port, plain.user.as_str()),
            ("compute02", 22, "root")
        );
        let bad = target(
            "compute03",
            &vars(&[("ansible_port", "ssh")]),
            "root",
            &Reach::default(),
        )
        .unwrap_err();
        assert!(
            bad.contains("compute03") && bad.contains("ansible_port"),
            "{bad}"
        );
    }

    #[test]
    fn older_ssh_variable_names_work_and_conflicts_are_refused() {
        let t = target(
            "compute01",
            &vars(&[
                ("ansible_ssh_host", "10.0.0.5"),
                ("ansible_ssh_port", "2200"),
                ("ansible_ssh_user", "kolla"),
                ("ansible_private_key_file", "/keys/kolla"),
            ]),
            "root",
            &Reach::default(),
        )
        .unwrap();
        assert_eq!(
            (t.address.as_str(), t.port, t.user.as_str()),
            ("10.0.0.5", 2200, "kolla")
        );
        assert_eq!(t.key_file, Some(PathBuf::from("/keys/kolla")));
        // The same value under both names is fine; different values are not.
        let same = [("ansible_user", "kolla"), ("ansible_ssh_user", "kolla")];
        assert_eq!(
            target("compute01", &vars(&same), "root", &Reach::default())
                .unwrap()
                .user,
            "kolla"
        );
        let clash = [("ansible_user", "kolla"), ("ansible_ssh_user", "ops")];
        let err = target("compute01", &vars(&clash), "root", &Reach::default()).unwrap_err();
        assert!(
            err.contains("compute01")
                && err.contains("ansible_user")
                && err.contains("ansible_ssh_user"),
            "{err}"
        );
    }

    #[test]
    fn only_ssh_connections_are_accepted() {
        for ok in ["ssh", "smart", "paramiko"] {
            assert!(target(
                "c1",
                &vars(&[("ansible_connection", ok)]),
                "root",
                &Reach::default()
            )
            .is_ok());
        }
        let err = target(
            "c1",
            &vars(&[("ansible_connection", "local")]),
            "root",
            &Reach::default(),
        )
        .unwrap_err();
        assert!(
            err.contains("c1: ansible_connection=local is not supported"),
            "{err}"
        );
    }

    #[test]
    fn become_runs_commands_through_passwordless_sudo_only() {
        let become_of =
            |pairs: &[(&str, &str)]| target("compute01", &vars(pairs), "ops", &Reach::default());
        assert_eq!(become_of(&[]).unwrap().become_user, None);
        assert_eq!(
            become_of(&[("ansible_become", "no")]).unwrap().become_user,
            None
        );
        assert_eq!(
            become_of(&[("ansible_become", "yes")]).unwrap().become_user,
            Some("root".into())
        );
        let as_kolla = [("ansible_become", "True"), ("ansible_become_user", "kolla")];
        assert_eq!(
            become_of(&as_kolla).unwrap().become_user,
            Some("kolla".into())
        );
        let not_bool = become_of(&[("ansible_become", "maybe")]).unwrap_err();
        assert!(not_bool.contains("compute01") && not_bool.contains("ansible_become"));
        let su = become_of(&[("ansible_become", "yes"), ("ansible_become_method", "su")]);
        assert!(su.unwrap_err().contains("\"su\" is not supported"));
        for key in ["ansible_become_password", "ansible_become_pass"] {
            let err = become_of(&[("ansible_become", "yes"), (key, "Sudo-Secret-1")]).unwrap_err();
            assert!(err.contains(key) && err.contains("NOPASSWD"), "{err}");
            assert!(!err.contains("Sudo-Secret-1"), "{err}");
        }
        // A password without become is never used, so it is no error.
        let unused = [("ansible_become_password", "Sudo-Secret-1")];
        assert_eq!(become_of(&unused).unwrap().become_user, None);
    }
}
