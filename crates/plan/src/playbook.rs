//! The playbook file: parsing and load-time validation (pure data, no host vars yet).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use virtfleet_inventory::Vars;

use crate::error::PlanError;

/// A parsed playbook. String fields documented as "templated" are rendered per host.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub name: String,
    /// Inventory group the playbook targets.
    pub hosts: String,
    /// Lowest-precedence variables; inventory, globals and passwords override them.
    pub defaults: Vars,
    /// Variables that must be set (when their condition holds) before anything is planned.
    pub requires: Vec<Requirement>,
    /// Configurations refused unless the operator says otherwise (see [`Refusal`]).
    pub refuses: Vec<Refusal>,
    /// Settings a rendered file must not hold while a condition holds (see [`Conflict`]).
    pub conflicts: Vec<Conflict>,
    /// The type each listed variable must have (checked per host before rendering).
    pub validate: std::collections::BTreeMap<String, crate::VarType>,
    /// Directories searched in order for each template name (templated).
    pub template_search: Vec<String>,
    /// Directories searched in order for each certificate file (templated).
    pub cert_search: Vec<String>,
    /// Services in restart order.
    pub services: Vec<ServiceSpec>,
    /// The container engine's command on the hosts, e.g. `docker` or `podman` (templated).
    pub container_engine: String,
    /// Which service serves TLS and which certificate file plays which role: what rotation,
    /// its health gate and `certs` need. None for a playbook without TLS.
    pub tls: Option<TlsSpec>,
    /// Where `virtfleet audit` looks on a host (templated), if the playbook says.
    pub audit: Option<AuditSpec>,
    /// Fleet-wide moves in phases (see [`crate::transition`]).
    pub transitions: Vec<crate::TransitionSpec>,
    /// The directory holding the playbook; relative search paths start here.
    pub dir: PathBuf,
    /// The playbook file itself, for messages.
    pub path: PathBuf,
    /// Its templates, compiled once for all hosts.
    pub(crate) templates: crate::render::CompiledTemplates,
}

/// The part a certificate file plays. Code asks for a role; only the playbook names files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertRole {
    /// The CA bundle peers are checked against.
    Ca,
    ServerCert,
    ServerKey,
    ClientCert,
    ClientKey,
}

impl CertRole {
    pub const ALL: [CertRole; 5] = [
        CertRole::Ca,
        CertRole::ServerCert,
        CertRole::ServerKey,
        CertRole::ClientCert,
        CertRole::ClientKey,
    ];
    /// The leaf certificates (not the CA, not keys).
    pub const LEAF_CERTS: [CertRole; 2] = [CertRole::ServerCert, CertRole::ClientCert];
    /// The private keys of the leaf certificates.
    pub const LEAF_KEYS: [CertRole; 2] = [CertRole::ServerKey, CertRole::ClientKey];

    pub fn is_private_key(self) -> bool {
        matches!(self, CertRole::ServerKey | CertRole::ClientKey)
    }
}

/// `tls:`: the facts about TLS that code must not hard-code.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// Expression; TLS (and so rotation) applies to a host only when it is true.
    #[serde(default, deserialize_with = "de_opt_expression")]
    pub when: Option<String>,
    /// The service (container) that serves TLS; peers run `connect` inside theirs.
    pub service: String,
    /// The address the TLS port listens on (templated).
    #[serde(deserialize_with = "de_template")]
    pub address: String,
    /// The name peers check the server certificate against (templated).
    #[serde(deserialize_with = "de_template")]
    pub server_name: String,
    /// The TLS port (templated).
    #[serde(deserialize_with = "de_template")]
    pub port: String,
    /// argv a peer runs inside its own TLS service to prove it can connect to this host,
    /// templated with this host's variables.
    #[serde(deserialize_with = "de_argv")]
    pub connect: Vec<String>,
    /// Certificate file name (as in `cert:`) per role.
    pub files: std::collections::BTreeMap<CertRole, String>,
    /// The built-in CA's private key, kept beside the CA in the last `cert_search` directory
    /// and never pushed.
    pub ca_key: String,
    /// Other pairs the TLS service's hosts hold from the same CA (QEMU's own, for its
    /// migration streams): checked like the main set, rotated and rolled over with it, and
    /// never on a peer's list of allowed subjects.
    #[serde(default)]
    pub sets: Vec<CertSetSpec>,
    /// The variable holding the subject patterns peers let in (libvirt's allowed list):
    /// no set's client certificate may match one of them.
    #[serde(default)]
    pub let_in: Option<String>,
}

/// One of [`TlsSpec::sets`]: leaf pairs beside the main set, trusting its CA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertSetSpec {
    /// A short name for messages (e.g. `qemu`).
    pub name: String,
    /// Expression; a host holds the set only when it is true.
    #[serde(default, deserialize_with = "de_opt_expression")]
    pub when: Option<String>,
    /// The organizational unit `certs issue` puts in the set's subjects, so that no subject
    /// list of the main set matches them.
    pub unit: String,
    /// Certificate file name (as in `cert:`) per leaf role (no CA: the set uses the main one).
    pub files: std::collections::BTreeMap<CertRole, String>,
}

impl TlsSpec {
    /// The certificate file name that plays `role`.
    pub fn file_name(&self, role: CertRole) -> &str {
        &self.files[&role]
    }

    /// The role of the certificate file `name`, if it has one, and the set it belongs to
    /// (None: the main set).
    pub fn role_of(&self, name: &str) -> Option<(CertRole, Option<&str>)> {
        let in_files = |files: &std::collections::BTreeMap<CertRole, String>| {
            files
                .iter()
                .find(|(_, file)| file.as_str() == name)
                .map(|(role, _)| *role)
        };
        if let Some(role) = in_files(&self.files) {
            return Some((role, None));
        }
        self.sets
            .iter()
            .find_map(|set| Some((in_files(&set.files)?, Some(set.name.as_str()))))
    }
}

/// `audit:`: what `virtfleet audit` reads on a host and where it probes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    /// Per kind of file (`libvirtd`, `sasl`, `nova`), the paths to try in order (templated);
    /// the first that exists on the host is read.
    pub files: std::collections::BTreeMap<String, Vec<String>>,
    /// The address the migration network reaches the host on (templated).
    #[serde(deserialize_with = "de_template")]
    pub address: String,
    /// The unencrypted and the TLS listener's ports (templated).
    #[serde(deserialize_with = "de_template")]
    pub tcp_port: String,
    #[serde(deserialize_with = "de_template")]
    pub tls_port: String,
    /// Per certificate role, the host paths to try in order (templated): the files libvirt
    /// serves TLS with, checked as `certs check` checks them, plus their permissions.
    #[serde(default)]
    pub certs: std::collections::BTreeMap<CertRole, Vec<String>>,
    /// The name peers dial, which the server certificate must cover (templated).
    #[serde(default)]
    pub server_name: Option<String>,
    /// QEMU's live migration ports, `first-last` (templated), which a peer must reach.
    #[serde(default)]
    pub migration_ports: Option<String>,
    /// More certificate sets the host may hold (QEMU's own), by name: checked as `certs`
    /// are, where they exist.
    #[serde(default)]
    pub cert_sets: std::collections::BTreeMap<String, AuditCertSet>,
}

/// One of [`AuditSpec::cert_sets`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditCertSet {
    /// The group meant to read the set's keys besides root (templated), e.g. QEMU's.
    #[serde(default)]
    pub key_group: Option<String>,
    /// Per certificate role, the host paths to try in order (templated).
    pub files: std::collections::BTreeMap<CertRole, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub var: String,
    /// Expression; the variable is required only when it is true.
    #[serde(default, deserialize_with = "de_opt_expression")]
    pub when: Option<String>,
    /// Appended to the error, e.g. where the variable belongs.
    #[serde(default)]
    pub hint: Option<String>,
}

/// A configuration the playbook will not push (its condition holds) unless the operator
/// sets the boolean variable `unless`: e.g. libvirtd open to the network without
/// authentication, OSSN-0007's vulnerability itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// Expression; true describes the refused configuration.
    #[serde(deserialize_with = "de_expression")]
    pub when: String,
    /// A boolean variable that, true, lets the configuration through; without one, nothing
    /// does (a configuration that cannot work).
    #[serde(default)]
    pub unless: Option<String>,
    /// What is wrong with it, for the error.
    pub message: String,
}

/// Settings an INI file of a service must not hold all at once (each true, as oslo.config
/// reads booleans) while `when` holds: e.g. nova's `live_migration_tunnelled` together with
/// `live_migration_with_native_tls`, which nova refuses to start with. Checked on the
/// rendered file, the operator's overrides merged, and reported naming the file that sets
/// the first key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conflict {
    /// Expression; while true, the setting is refused.
    #[serde(deserialize_with = "de_expression")]
    pub when: String,
    /// The service and the `dest` of its file.
    pub service: String,
    pub file: String,
    pub section: String,
    /// The keys that conflict when every one of them is true; the first is the one named.
    pub keys: Vec<String>,
    /// What is wrong with it, for the error.
    pub message: String,
}

/// One service (a container, or a daemon of the host's own service manager) and the files
/// it is configured from.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Container name (for a host service, a label: its commands name the units).
    pub name: String,
    /// Host directory holding the service's files (templated).
    pub dir: String,
    /// Expression; the service (its files, restarts) is managed only where it is true.
    pub when: Option<String>,
    pub files: Vec<FileSpec>,
    pub ready: Option<ReadySpec>,
    pub after_restart: Vec<StepSpec>,
    pub reload: Option<ReloadSpec>,
    /// Set for a service the host's own service manager runs (no container): how to
    /// restart it. Its readiness check, post-restart steps and reloads then run on the host.
    pub host: Option<HostServiceSpec>,
}

/// A service of the host's own service manager (systemd, OpenRC, ...): the manager is data,
/// the commands that restart the service, in order, each with an optional `when`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostServiceSpec {
    pub restart: Vec<StepSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// A template name, looked up along `template_search`.
    Template(String),
    /// A certificate file name, looked up along `cert_search` and copied verbatim.
    Cert(String),
}

#[derive(Debug, Clone)]
pub struct FileSpec {
    pub source: FileSource,
    /// For a certificate: the file taken instead when no certificate directory holds
    /// `source`'s (QEMU's own pair, else libvirt's).
    pub fallback: Option<String>,
    /// File name inside the service directory, or an absolute path (a service whose files
    /// live in several directories, as libvirt's PKI does on a plain host).
    pub dest: String,
    pub mode: u32,
    /// Owner on the host (templated); `None` leaves the engine's default.
    pub owner: Option<String>,
    /// Marks the content as sensitive: never shown in diffs or logs.
    pub secret: bool,
    /// Expression; the file is managed only when it is true.
    pub when: Option<String>,
    /// The template renders only virtfleet's part; the rest comes from the host's file.
    pub merge: Option<crate::Merge>,
    /// Operator override files (templated paths under the config directory), merged over the
    /// rendered template in order, each a template itself, as Kolla's `merge_configs` does:
    /// their keys win. Those that do not exist are skipped. `merge: ini` files only.
    pub overrides: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadySpec {
    /// argv run inside the container until it succeeds (templated).
    #[serde(deserialize_with = "de_argv")]
    pub exec: Vec<String>,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_delay_ms")]
    pub delay_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// argv run inside the container (templated).
    #[serde(deserialize_with = "de_argv")]
    pub exec: Vec<String>,
    /// Fed to the command's stdin (templated); the place for secrets.
    #[serde(default, deserialize_with = "de_opt_template")]
    pub stdin: Option<String>,
    #[serde(default, deserialize_with = "de_opt_expression")]
    pub when: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadSpec {
    /// File names (as in `dest`) whose change can be applied without a restart.
    pub files: Vec<String>,
    /// Commands, run in order inside the container, that apply them (templated).
    #[serde(deserialize_with = "de_argv_list")]
    pub exec: Vec<Vec<String>>,
}

fn default_retries() -> u32 {
    30
}

fn default_delay_ms() -> u64 {
    500
}

/// Reads and validates a playbook. Errors carry the file and, for YAML problems, line and column.
pub fn load_playbook(path: &Path) -> Result<Playbook, PlanError> {
    // Absolute, so `{{ playbook_dir }}` means the same whatever directory templates use it from.
    let path = &std::path::absolute(path).map_err(|source| PlanError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = std::fs::read_to_string(path).map_err(|source| PlanError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let raw: PlaybookYaml = serde_yaml_ng::from_str(&text).map_err(|source| PlanError::Yaml {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| PlanError::Playbook {
        path: path.to_path_buf(),
        message,
    };
    if raw.services.0.is_empty() {
        return Err(invalid("no services".into()));
    }
    if let Some(service) = raw.services.0.iter().find(|s| s.host.is_none()) {
        if raw.container_engine.is_empty() {
            return Err(invalid(format!(
                "service {} runs in a container (it has no `host:`), so the playbook needs \
                 container_engine",
                service.name
            )));
        }
    }
    for req in &raw.require {
        if req.var.is_empty() {
            return Err(invalid("require: empty variable name".into()));
        }
    }
    for refusal in &raw.refuse {
        let Some(name) = &refusal.unless else {
            continue;
        };
        let identifier = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            return Err(invalid(format!(
                "refuse: unless {name:?}: not a variable name"
            )));
        }
    }
    for conflict in &raw.conflicts {
        let file = raw
            .services
            .0
            .iter()
            .find(|s| s.name == conflict.service)
            .and_then(|s| {
                s.files
                    .iter()
                    .find(|f| f.dest == conflict.file && f.merge != Some(crate::Merge::KollaConfig))
            });
        if file.is_none() {
            return Err(invalid(format!(
                "conflicts: service {:?} has no INI file {:?}",
                conflict.service, conflict.file
            )));
        }
        if conflict.keys.is_empty() {
            return Err(invalid("conflicts: keys: at least one".into()));
        }
    }
    if let Some(tls) = &raw.tls {
        check_tls(tls, &raw.services.0).map_err(|e| invalid(format!("tls: {e}")))?;
    }
    let audit_kinds = raw
        .audit
        .iter()
        .flat_map(|a| a.files.keys().map(String::as_str))
        .collect();
    let services = raw.services.0.iter().map(|s| s.name.as_str()).collect();
    crate::transition::check(&raw.transitions, &audit_kinds, &services).map_err(invalid)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(Playbook {
        name: raw.name,
        hosts: raw.hosts,
        defaults: raw.defaults,
        requires: raw.require,
        refuses: raw.refuse,
        conflicts: raw.conflicts,
        validate: raw.validate,
        template_search: raw.template_search,
        cert_search: raw.cert_search,
        services: raw.services.0,
        container_engine: raw.container_engine,
        tls: raw.tls,
        audit: raw.audit,
        transitions: raw.transitions,
        dir,
        path: path.to_path_buf(),
        templates: Default::default(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaybookYaml {
    name: String,
    hosts: String,
    #[serde(default)]
    defaults: Vars,
    #[serde(default)]
    require: Vec<Requirement>,
    #[serde(default)]
    refuse: Vec<Refusal>,
    #[serde(default)]
    conflicts: Vec<Conflict>,
    #[serde(default)]
    validate: std::collections::BTreeMap<String, crate::VarType>,
    #[serde(deserialize_with = "de_template_list")]
    template_search: Vec<String>,
    #[serde(deserialize_with = "de_template_list")]
    cert_search: Vec<String>,
    /// Absent for a playbook whose services all run under the host's service manager.
    #[serde(default, deserialize_with = "de_template")]
    container_engine: String,
    #[serde(default)]
    tls: Option<TlsSpec>,
    #[serde(default)]
    audit: Option<AuditSpec>,
    #[serde(default)]
    transitions: Vec<crate::TransitionSpec>,
    services: Services,
}

/// Every role named once, by a file the TLS service really has, so a lookup can never miss.
fn check_tls(tls: &TlsSpec, services: &[ServiceSpec]) -> Result<(), String> {
    let Some(service) = services.iter().find(|s| s.name == tls.service) else {
        return Err(format!(
            "service {} is not a service of this playbook",
            tls.service
        ));
    };
    check_name(&tls.ca_key, "ca_key")?;
    for role in CertRole::ALL {
        let Some(name) = tls.files.get(&role) else {
            return Err(format!("files: no file for role {role:?}"));
        };
        let listed = service
            .files
            .iter()
            .any(|f| f.source == FileSource::Cert(name.clone()));
        if !listed {
            return Err(format!(
                "files: {name} is not a `cert:` file of service {}",
                tls.service
            ));
        }
    }
    let mut names: Vec<&String> = tls.files.values().collect();
    names.push(&tls.ca_key);
    names.sort();
    names.dedup();
    if names.len() != CertRole::ALL.len() + 1 {
        return Err("files: each role (and ca_key) needs its own file".into());
    }
    let mut set_names = Vec::new();
    for set in &tls.sets {
        check_name(&set.name, "sets: name")?;
        check_unit(&set.unit).map_err(|e| format!("sets: {}: unit: {e}", set.name))?;
        set_names.push(&set.name);
        for role in CertRole::LEAF_CERTS.into_iter().chain(CertRole::LEAF_KEYS) {
            let Some(name) = set.files.get(&role) else {
                return Err(format!("sets: {}: no file for role {role:?}", set.name));
            };
            if !service
                .files
                .iter()
                .any(|f| f.source == FileSource::Cert(name.clone()))
            {
                return Err(format!(
                    "sets: {}: {name} is not a `cert:` file of service {}",
                    set.name, tls.service
                ));
            }
            names.push(name);
        }
        if set.files.contains_key(&CertRole::Ca) {
            return Err(format!(
                "sets: {}: a set trusts the main CA; no `ca`",
                set.name
            ));
        }
    }
    let all = names.len();
    names.sort();
    names.dedup();
    if names.len() != all {
        return Err("sets: each file of a set needs its own name".into());
    }
    set_names.sort();
    set_names.dedup();
    if set_names.len() != tls.sets.len() {
        return Err("sets: each set needs its own name".into());
    }
    Ok(())
}

/// An organizational unit `certs issue` can put in a subject without escaping: letters,
/// digits, `-` and `.`.
fn check_unit(unit: &str) -> Result<(), String> {
    let plain = !unit.is_empty()
        && unit.len() <= 64
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if plain {
        Ok(())
    } else {
        Err(format!("{unit:?}: letters, digits, '-' and '.' only"))
    }
}

/// `services:` is a YAML map whose order is the restart order, so it is read entry by entry
/// rather than into a (sorted or hashed) map.
struct Services(Vec<ServiceSpec>);

impl<'de> Deserialize<'de> for Services {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ServicesVisitor;
        impl<'de> Visitor<'de> for ServicesVisitor {
            type Value = Services;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of container name to service")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Services, A::Error> {
                let mut services: Vec<ServiceSpec> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    check_name(&name, "container name").map_err(de::Error::custom)?;
                    if services.iter().any(|s| s.name == name) {
                        return Err(de::Error::custom(format!("service {name} listed twice")));
                    }
                    let body: ServiceYaml = map.next_value()?;
                    services.push(ServiceSpec {
                        name,
                        dir: body.dir,
                        when: body.when,
                        files: body.files,
                        ready: body.ready,
                        after_restart: body.after_restart,
                        reload: body.reload,
                        host: body.host,
                    });
                }
                Ok(Services(services))
            }
        }
        deserializer.deserialize_map(ServicesVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, try_from = "ServiceYamlRaw")]
struct ServiceYaml {
    dir: String,
    when: Option<String>,
    files: Vec<FileSpec>,
    ready: Option<ReadySpec>,
    after_restart: Vec<StepSpec>,
    reload: Option<ReloadSpec>,
    host: Option<HostServiceSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceYamlRaw {
    #[serde(deserialize_with = "de_template")]
    dir: String,
    #[serde(default, deserialize_with = "de_opt_expression")]
    when: Option<String>,
    files: Vec<FileSpec>,
    #[serde(default)]
    ready: Option<ReadySpec>,
    #[serde(default)]
    after_restart: Vec<StepSpec>,
    #[serde(default)]
    reload: Option<ReloadSpec>,
    #[serde(default)]
    host: Option<HostServiceSpec>,
}

impl TryFrom<ServiceYamlRaw> for ServiceYaml {
    type Error = String;
    fn try_from(raw: ServiceYamlRaw) -> Result<Self, String> {
        if let Some(reload) = &raw.reload {
            // A typo here would silently turn a live reload into a restart (or the reverse).
            for name in &reload.files {
                if !raw.files.iter().any(|f| &f.dest == name) {
                    return Err(format!(
                        "reload: file {name} is not the dest of any file of this service"
                    ));
                }
            }
        }
        Ok(ServiceYaml {
            dir: raw.dir,
            when: raw.when,
            files: raw.files,
            ready: raw.ready,
            after_restart: raw.after_restart,
            reload: raw.reload,
            host: raw.host,
        })
    }
}

impl<'de> Deserialize<'de> for FileSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = FileYaml::deserialize(deserializer)?;
        FileSpec::try_from(raw).map_err(de::Error::custom)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileYaml {
    template: Option<String>,
    cert: Option<String>,
    /// With `cert:`, the file taken when the certificate directories hold no `cert` file.
    fallback: Option<String>,
    dest: Option<String>,
    mode: serde_yaml_ng::Value,
    #[serde(default, deserialize_with = "de_opt_template")]
    owner: Option<String>,
    #[serde(default)]
    secret: bool,
    #[serde(default, deserialize_with = "de_opt_expression")]
    when: Option<String>,
    #[serde(default)]
    merge: Option<crate::Merge>,
    #[serde(default)]
    overrides: Vec<String>,
}

impl TryFrom<FileYaml> for FileSpec {
    type Error = String;
    fn try_from(raw: FileYaml) -> Result<Self, String> {
        let (source, default_dest) = match (raw.template, raw.cert) {
            (Some(t), None) => {
                check_name(&t, "template name")?;
                let dest = t.strip_suffix(".j2").unwrap_or(&t).to_string();
                (FileSource::Template(t), dest)
            }
            (None, Some(c)) => {
                check_name(&c, "cert name")?;
                if raw.merge.is_some() {
                    return Err("`merge` needs a template; certificates are copied whole".into());
                }
                (FileSource::Cert(c.clone()), c)
            }
            _ => return Err("a file entry needs exactly one of `template` or `cert`".into()),
        };
        if let Some(fallback) = &raw.fallback {
            if !matches!(source, FileSource::Cert(_)) {
                return Err("`fallback` names another certificate: it needs `cert`".into());
            }
            check_name(fallback, "fallback")?;
        }
        let dest = raw.dest.unwrap_or(default_dest);
        check_dest(&dest)?;
        if !raw.overrides.is_empty() && raw.merge != Some(crate::Merge::Ini) {
            return Err("`overrides` are merged as INI files: they need `merge: ini`".into());
        }
        Ok(FileSpec {
            overrides: raw.overrides,
            source,
            fallback: raw.fallback,
            dest,
            mode: parse_mode(&raw.mode)?,
            owner: raw.owner,
            secret: raw.secret,
            when: raw.when,
            merge: raw.merge,
        })
    }
}

/// Modes are octal strings ("0600"; an unquoted `0600` also reads as one). Integers are refused:
/// `600` or YAML 1.1's octal `0600` would silently mean something else than intended.
fn parse_mode(value: &serde_yaml_ng::Value) -> Result<u32, String> {
    let text = match value {
        serde_yaml_ng::Value::String(s) => s.as_str(),
        other => {
            return Err(format!(
                "mode {other:?}: write the mode as a quoted octal string, e.g. \"0600\""
            ))
        }
    };
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(format!(
            "mode {text:?} is not an octal permission like \"0600\""
        ));
    }
    u32::from_str_radix(digits, 8).map_err(|e| format!("mode {text:?}: {e}"))
}

/// A file name, or an absolute path of such names (no `.` or `..`): fixed in the playbook,
/// never templated, so no variable can point a file elsewhere.
fn check_dest(dest: &str) -> Result<(), String> {
    match dest.strip_prefix('/') {
        None => check_name(dest, "dest"),
        Some(path) => path
            .split('/')
            .try_for_each(|part| check_name(part, "dest path component"))
            .map_err(|e| format!("dest {dest:?}: {e}")),
    }
}

impl FileSpec {
    /// Where the file goes on the host: `dest` itself when absolute, else inside `dir`.
    pub fn path_in(&self, dir: &str) -> String {
        match self.dest.starts_with('/') {
            true => self.dest.clone(),
            false => format!("{dir}/{}", self.dest),
        }
    }
}

/// Names end up in host paths and container commands: keep them to a safe, flat alphabet.
fn check_name(name: &str, what: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} must be a plain file name (letters, digits, '.', '_', '-')"
        ))
    }
}

// Syntax checks at load time, so a typo in an expression is reported with the playbook's
// line number instead of only when some host happens to evaluate it.

fn check_expression(expr: &str) -> Result<(), String> {
    let env = minijinja::Environment::new();
    env.compile_expression(expr)
        .map(|_| ())
        .map_err(|e| format!("invalid expression {expr:?}: {e}"))
}

fn check_template(text: &str) -> Result<(), String> {
    let env = minijinja::Environment::new();
    env.template_from_str(text)
        .map(|_| ())
        .map_err(|e| format!("invalid template string {text:?}: {e}"))
}

pub(crate) fn de_opt_expression<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    if let Some(expr) = &value {
        check_expression(expr).map_err(de::Error::custom)?;
    }
    Ok(value)
}

pub(crate) fn de_expression<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = String::deserialize(d)?;
    check_expression(&value).map_err(de::Error::custom)?;
    Ok(value)
}

fn de_template<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = String::deserialize(d)?;
    check_template(&value).map_err(de::Error::custom)?;
    Ok(value)
}

fn de_opt_template<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    if let Some(text) = &value {
        check_template(text).map_err(de::Error::custom)?;
    }
    Ok(value)
}

fn de_template_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let value = Vec::<String>::deserialize(d)?;
    for text in &value {
        check_template(text).map_err(de::Error::custom)?;
    }
    Ok(value)
}

fn de_argv<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let argv = de_template_list(d)?;
    if argv.is_empty() {
        return Err(de::Error::custom("exec needs at least a command"));
    }
    Ok(argv)
}

fn de_argv_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<String>>, D::Error> {
    let list = Vec::<Vec<String>>::deserialize(d)?;
    for argv in &list {
        if argv.is_empty() {
            return Err(de::Error::custom("exec needs at least a command"));
        }
        for text in argv {
            check_template(text).map_err(de::Error::custom)?;
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Playbook, PlanError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yml");
        std::fs::write(&path, text).unwrap();
        load_playbook(&path)
    }

    const MINIMAL: &str = r#"
name: t
hosts: compute
container_engine: podman
template_search: ["{{ playbook_dir }}/templates"]
cert_search: []
services:
  zeta:
    dir: /etc/kolla/zeta
    files:
      - {template: a.conf.j2, mode: "0640"}
  alpha:
    dir: /etc/kolla/alpha
    files:
      - {cert: ca.pem, mode: "600", secret: true, when: "x | bool"}
"#;

    #[test]
    fn services_keep_yaml_order_and_fields() {
        let pb = load(MINIMAL).unwrap();
        let names: Vec<_> = pb.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha"]);
        let f = &pb.services[0].files[0];
        assert_eq!(f.source, FileSource::Template("a.conf.j2".into()));
        assert_eq!(
            f.dest, "a.conf",
            "dest defaults to the template name without .j2"
        );
        assert_eq!(f.mode, 0o640);
        let c = &pb.services[1].files[0];
        assert_eq!(c.dest, "ca.pem");
        assert_eq!(c.mode, 0o600);
        assert!(c.secret);
        assert_eq!(c.when.as_deref(), Some("x | bool"));
    }

    #[test]
    fn integer_mode_is_rejected_with_line() {
        // `0640` unquoted reads as the string "0640"; a plain integer is what is ambiguous.
        let text = MINIMAL.replace("mode: \"0640\"", "mode: 0640");
        assert_eq!(load(&text).unwrap().services[0].files[0].mode, 0o640);
        let text = MINIMAL.replace("mode: \"0640\"", "mode: 640");
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("quoted octal"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn merge_is_for_templates_and_names_a_known_kind() {
        let text = MINIMAL.replace(r#"mode: "0640"}"#, r#"mode: "0640", merge: ini}"#);
        assert_eq!(
            load(&text).unwrap().services[0].files[0].merge,
            Some(crate::Merge::Ini)
        );
        assert_eq!(load(MINIMAL).unwrap().services[0].files[0].merge, None);
        let text = MINIMAL.replace(r#"mode: "0640"}"#, r#"mode: "0640", merge: yaml}"#);
        assert!(load(&text).unwrap_err().to_string().contains("yaml"));
        let text = MINIMAL.replace("secret: true", "secret: true, merge: kolla_config");
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("`merge` needs a template"), "{err}");
    }

    #[test]
    fn a_host_service_names_its_restart_and_its_files_may_live_anywhere_absolute() {
        let text = MINIMAL.replace(
            "    dir: /etc/kolla/zeta\n",
            "    dir: /etc/kolla/zeta\n    host:\n      restart:\n        - exec: [systemctl, restart, zeta]\n          when: \"x | bool\"\n",
        );
        let text = text.replace(
            "{template: a.conf.j2, mode",
            "{template: a.conf.j2, dest: /etc/pki/zeta/a.conf, mode",
        );
        let playbook = load(&text).unwrap();
        let zeta = &playbook.services[0];
        let host = zeta.host.as_ref().unwrap();
        assert_eq!(host.restart[0].exec, ["systemctl", "restart", "zeta"]);
        assert_eq!(
            zeta.files[0].path_in("/etc/kolla/zeta"),
            "/etc/pki/zeta/a.conf"
        );
        assert!(playbook.services[1].host.is_none());
        for bad in ["/etc/../a.conf", "/etc//a.conf", "etc/a.conf", "/"] {
            let text = MINIMAL.replace(
                "{template: a.conf.j2, mode",
                &format!("{{template: a.conf.j2, dest: \"{bad}\", mode"),
            );
            assert!(load(&text).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_tls_set_names_leaf_files_of_the_tls_service_its_own_and_a_plain_unit() {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks/kolla.yml"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let load_shipped = |text: &str| {
            let path = dir.path().join("kolla.yml");
            std::fs::write(&path, text).unwrap();
            load_playbook(&path).map_err(|e| e.to_string())
        };
        let tls = load_shipped(&shipped).unwrap().tls.unwrap();
        assert_eq!(
            tls.role_of("qemu-clientkey.pem"),
            Some((CertRole::ClientKey, Some("qemu")))
        );
        assert_eq!(
            tls.role_of("clientkey.pem"),
            Some((CertRole::ClientKey, None))
        );
        let spec = load_shipped(&shipped).unwrap();
        let fallback = spec.services[0]
            .files
            .iter()
            .find(|f| f.source == FileSource::Cert("qemu-serverkey.pem".into()))
            .unwrap();
        assert_eq!(fallback.fallback.as_deref(), Some("serverkey.pem"));
        for (from, to, expected) in [
            (
                "client_key: qemu-clientkey.pem",
                "client_key: qemu-other.pem",
                "not a `cert:` file",
            ),
            (
                "client_key: qemu-clientkey.pem",
                "client_key: clientkey.pem",
                "its own name",
            ),
            ("unit: qemu", "unit: \"q,CN=x\"", "letters, digits"),
            (
                "        client_key: qemu-clientkey.pem\n",
                "",
                "no file for role ClientKey",
            ),
            (
                "        server_cert: qemu-servercert.pem\n",
                "        server_cert: qemu-servercert.pem\n        ca: cacert.pem\n",
                "no `ca`",
            ),
            (
                "fallback: servercert.pem",
                "fallback: ../servercert.pem",
                "plain file name",
            ),
        ] {
            assert!(shipped.contains(from), "{from}");
            let err = load_shipped(&shipped.replacen(from, to, 1)).unwrap_err();
            assert!(err.contains(expected), "{from} -> {to}: {err}");
        }
        let text = MINIMAL.replace(
            "{template: a.conf.j2,",
            "{template: a.conf.j2, fallback: b.pem,",
        );
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("needs `cert`"), "{err}");
    }

    #[test]
    fn bad_expression_is_rejected_at_load() {
        let text = MINIMAL.replace("x | bool", "x |");
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("invalid expression"), "{err}");
    }

    #[test]
    fn unknown_field_and_bad_names_are_rejected() {
        let text = MINIMAL.replace("secret: true", "secrte: true");
        assert!(load(&text).unwrap_err().to_string().contains("secrte"));
        let text = MINIMAL.replace("a.conf.j2", "../a.conf.j2");
        assert!(load(&text)
            .unwrap_err()
            .to_string()
            .contains("plain file name"));
        let text = MINIMAL.replace("{template: a.conf.j2,", "{template: a.conf.j2, cert: b,");
        assert!(load(&text).unwrap_err().to_string().contains("exactly one"));
    }

    #[test]
    fn reload_files_must_name_service_files() {
        let text = format!("{MINIMAL}    reload: {{files: [cb.pem], exec: [[x]]}}\n");
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("reload: file cb.pem"), "{err}");
        let text = format!("{MINIMAL}    reload: {{files: [ca.pem], exec: [[x]]}}\n");
        assert!(load(&text).unwrap().services[1].reload.is_some());
    }

    #[test]
    fn relative_path_gives_absolute_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.yml"), MINIMAL).unwrap();
        let cwd = std::env::current_dir().unwrap();
        let relative: PathBuf = std::iter::repeat_n("..", cwd.components().count())
            .collect::<PathBuf>()
            .join(dir.path().strip_prefix("/").unwrap())
            .join("p.yml");
        let pb = load_playbook(&relative).unwrap();
        assert!(pb.dir.is_absolute(), "{}", pb.dir.display());
        assert!(pb.dir.join("p.yml").is_file());
    }

    #[test]
    fn duplicate_service_is_rejected() {
        let text = format!("{MINIMAL}  zeta:\n    dir: /x\n    files: []\n");
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("zeta"), "{err}");
    }
}
