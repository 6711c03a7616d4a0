//! One host's desired state: the playbook evaluated with that host's variables.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::value::Value;
use minijinja::Environment;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use virtfleet_inventory::Vars;

use crate::error::PlanError;
use crate::playbook::{CertRole, FileSource, FileSpec, Playbook, ServiceSpec};
use crate::render::{
    cached_expression, describe, find_in, is_templated, value_to_bool, with_string_template,
};
use crate::vars::{resolve, FACTS};

/// Name of the per-service file holding the digest of the files it last restarted with.
pub const MARKER_NAME: &str = ".virtfleet-applied";

pub struct PlanInput<'a> {
    pub playbook: &'a Playbook,
    /// Inventory name of the host.
    pub host: &'a str,
    /// Inventory, globals and passwords merged, without the playbook's defaults.
    pub vars: &'a Vars,
    /// The operator's config directory (Kolla's, on the deploy host).
    pub configdir: &'a Path,
    /// The host's facts (`ansible_facts`), when gathered. Without them, planning a host whose
    /// variables read facts fails with [`PlanError::NeedsFacts`].
    pub facts: Option<&'a Json>,
}

#[derive(Clone)]
pub struct HostPlan {
    pub host: String,
    /// Final variables: defaults applied, templated values rendered. Holds secrets.
    pub vars: Vars,
    /// In restart order.
    pub services: Vec<ServicePlan>,
    /// The container engine's command on this host (`docker`, `podman`).
    pub container_engine: String,
    /// How this host serves TLS; None when the playbook's `tls.when` is false for it.
    pub tls: Option<TlsPlan>,
    /// Where this host's certificate files are looked up, host directory first.
    pub cert_dirs: Vec<PathBuf>,
    /// What `audit` reads and probes on this host.
    pub audit: Option<AuditPlan>,
    /// Refused configurations the operator let through on this host (see `refuse:`), for a
    /// warning: (the variable that let it through, the refusal's message).
    pub let_through: Vec<(String, String)>,
    /// Planning asked for an interface's address (`interface_address`): the host's facts
    /// must hold its interfaces, not only its nodename.
    pub reads_interfaces: bool,
    /// Files whose settings the playbook's transitions read (`held:`), every candidate path:
    /// the probe reads their contents with the rest, so deciding costs no round trip.
    pub held_paths: Vec<String>,
}

/// The playbook's `audit:` section evaluated for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPlan {
    /// Kind of file → paths to try, first existing wins.
    pub files: BTreeMap<String, Vec<String>>,
    pub address: String,
    pub tcp_port: u16,
    pub tls_port: u16,
    /// Certificate role → paths to try, first existing wins.
    pub certs: BTreeMap<CertRole, Vec<String>>,
    pub server_name: Option<String>,
    /// QEMU's live migration ports, which a peer must reach.
    pub migration_ports: Option<std::ops::RangeInclusive<u16>>,
    /// More certificate sets (QEMU's own), checked where the host holds them.
    pub cert_sets: Vec<AuditCertSetPlan>,
}

/// One of [`AuditPlan::cert_sets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCertSetPlan {
    pub name: String,
    /// The group meant to read its keys besides root.
    pub key_group: Option<String>,
    /// Certificate role → paths to try, first existing wins.
    pub files: BTreeMap<CertRole, Vec<String>>,
}

/// The playbook's `tls:` section evaluated for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPlan {
    /// The service (container) serving TLS.
    pub service: String,
    pub address: String,
    pub server_name: String,
    pub port: u16,
    /// What a peer runs inside its own TLS service to connect to this host.
    pub connect: Vec<String>,
    /// The `tls.sets` this host holds (their `when` true), by name.
    pub sets: Vec<String>,
    /// The subject patterns peers let in (the playbook's `tls.let_in` variable): no set's
    /// client subject may match one.
    pub let_in: Vec<String>,
}

impl HostPlan {
    /// The TLS service's file playing `role` in the main set (e.g. the server certificate
    /// this host serves).
    pub fn tls_file(&self, role: CertRole) -> Option<&DesiredFile> {
        self.set_file(None, role)
    }

    /// The TLS service's file playing `role` in `set` (None: the main set). A set's CA is
    /// the main set's.
    pub fn set_file(&self, set: Option<&str>, role: CertRole) -> Option<&DesiredFile> {
        let tls = self.tls.as_ref()?;
        let set = if role == CertRole::Ca { None } else { set };
        self.services
            .iter()
            .filter(|s| s.name == tls.service)
            .flat_map(|s| &s.files)
            .find(|f| f.role == Some(role) && f.cert_set.as_deref() == set)
    }

    /// Every file, in any service, playing one of `roles`.
    pub fn files_in_roles<'a>(
        &'a self,
        roles: &'a [CertRole],
    ) -> impl Iterator<Item = &'a DesiredFile> + 'a {
        self.services
            .iter()
            .flat_map(|s| &s.files)
            .filter(|f| f.role.is_some_and(|r| roles.contains(&r)))
    }

    /// [`HostPlan::files_in_roles`], to change them (a rollover's intermediate trust).
    pub fn files_in_roles_mut<'a>(
        &'a mut self,
        roles: &'a [CertRole],
    ) -> impl Iterator<Item = &'a mut DesiredFile> + 'a {
        self.services
            .iter_mut()
            .flat_map(|s| &mut s.files)
            .filter(|f| f.role.is_some_and(|r| roles.contains(&r)))
    }
}

#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// Container name (a label for a host service).
    pub name: String,
    /// Where the service runs, and so where its commands run and how it restarts.
    pub runs: Runs,
    /// Host directory of the service's files (the playbook's `dir`).
    pub dir: String,
    pub files: Vec<DesiredFile>,
    pub ready: Option<ReadyCheck>,
    /// Run in order once the restarted container is ready.
    pub after_restart: Vec<Step>,
    pub reload: Option<Reload>,
    /// `<dir>/.virtfleet-applied`: the container ID and each file's sha256 and mode the
    /// service was last applied with, written once it is healthy.
    pub marker_path: String,
}

#[derive(Clone, PartialEq, Eq)]
pub struct DesiredFile {
    /// Absolute path on the host.
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
    pub owner: Option<String>,
    /// Never print the content; `redact` gives a printable form.
    pub secret: bool,
    /// Hex sha256 of `content`.
    pub sha256: String,
    /// The template or certificate file the content came from.
    pub source: PathBuf,
    /// Set when `content` is only virtfleet's part of a file shared with kolla-ansible: the
    /// engine merges it into the host's current file (and recomputes `sha256`) before comparing.
    pub merge: Option<crate::Merge>,
    /// The certificate role this file plays (from the playbook's `tls.files`, or a set's).
    pub role: Option<CertRole>,
    /// The `tls.sets` entry the file belongs to; None for the main set (and other files).
    pub cert_set: Option<String>,
}

/// Where a service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runs {
    /// In the container of the service's name, under the host's container engine, which
    /// restarts it; its commands run inside it (`exec`).
    Container,
    /// On the host, under its own service manager: these commands (run on the host, in
    /// order) restart it, and its other commands run on the host too.
    Host { restart: Vec<Step> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyCheck {
    /// argv run inside the container; ready once it exits 0.
    pub exec: Vec<String>,
    pub retries: u32,
    pub delay_ms: u64,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Step {
    /// argv run inside the container.
    pub exec: Vec<String>,
    /// Secret input for the command: never log it.
    pub stdin: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload {
    /// Absolute paths whose change can be applied without a restart.
    pub files: Vec<String>,
    /// Commands run in order inside the container to apply them.
    pub exec: Vec<Vec<String>>,
}

// Debug output ends up in logs and panics: it shows sizes and hashes, never contents, stdin
// or variable values (which hold passwords).

impl fmt::Debug for HostPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostPlan")
            .field("host", &self.host)
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("services", &self.services)
            .finish()
    }
}

impl DesiredFile {
    /// The file as it should be on a host whose current version is `current` (`None`: absent):
    /// itself, or, for a merged file, its content merged into `current`.
    pub fn merged_into(&self, current: Option<&[u8]>) -> Result<DesiredFile, String> {
        let Some(kind) = self.merge else {
            return Ok(self.clone());
        };
        let content = crate::merge(kind, current, &self.content)
            .map_err(|e| format!("{}: cannot merge with the host's file: {e}", self.path))?;
        Ok(DesiredFile {
            sha256: sha256_hex(&content),
            content,
            ..self.clone()
        })
    }
}

impl fmt::Debug for DesiredFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DesiredFile")
            .field("path", &self.path)
            .field("content", &format_args!("<{} bytes>", self.content.len()))
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("owner", &self.owner)
            .field("secret", &self.secret)
            .field("sha256", &self.sha256)
            .field("source", &self.source)
            .field("merge", &self.merge)
            .field("role", &self.role)
            .field("cert_set", &self.cert_set)
            .finish()
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("exec", &self.exec)
            .field(
                "stdin",
                &self
                    .stdin
                    .as_ref()
                    .map(|s| format!("<{} bytes redacted>", s.len())),
            )
            .finish()
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Evaluates the playbook for one host. Pure apart from reading templates and certificates.
pub fn plan_host(input: &PlanInput) -> Result<HostPlan, PlanError> {
    crate::render::take_interfaces_read();
    let mut plan = plan_host_here(input)?;
    plan.reads_interfaces = crate::render::take_interfaces_read();
    Ok(plan)
}

/// [`plan_host`], on this thread (see [`HostPlan::reads_interfaces`]).
fn plan_host_here(input: &PlanInput) -> Result<HostPlan, PlanError> {
    let ctx = HostContext::new(input)?;
    check_types(&ctx)?;
    check_requirements(&ctx)?;
    let let_through = check_refusals(&ctx)?;
    let mut services = Vec::new();
    for spec in &input.playbook.services {
        if let Some(when) = &spec.when {
            if !ctx.eval_when(when, &format!("service {}: when", spec.name))? {
                continue;
            }
        }
        services.push(ctx.plan_service(spec)?);
    }
    ctx.check_conflicts(&services)?;
    let container_engine = ctx.container_engine()?;
    let tls = ctx.tls(true)?;
    let audit = ctx.audit()?;
    let held_paths = match &audit {
        Some(audit) => crate::transition::held_paths(&input.playbook.transitions, audit),
        None => Vec::new(),
    };
    Ok(HostPlan {
        host: input.host.to_string(),
        vars: ctx.vars,
        services,
        container_engine,
        tls,
        cert_dirs: ctx.cert_dirs,
        audit,
        let_through,
        reads_interfaces: false,
        held_paths,
    })
}

/// What `certs` needs before any certificate exists: the host's certificate search
/// directories (host directory first, shared last) and its TLS facts as they are once TLS
/// is on (`tls.when` is not evaluated; None only for a playbook without TLS).
pub fn resolve_tls(input: &PlanInput) -> Result<(Vec<PathBuf>, Option<TlsPlan>), PlanError> {
    let ctx = HostContext::new(input)?;
    let tls = ctx.tls(false)?;
    Ok((ctx.cert_dirs, tls))
}

/// Facts that stand in for a host's real ones while inputs are checked before any host is
/// contacted: the inventory name as nodename, no interface listed, and a documentation
/// address (192.0.2.1, 2001:db8::1) for any interface asked for. The real facts are
/// gathered before anything is pushed; see [`stood_in_exactly`] for when the plan stands.
pub fn provisional_facts(host: &str) -> Json {
    serde_json::json!({"nodename": host, "interfaces": [], crate::render::PROVISIONAL: true})
}

/// Whether a plan made on `host`'s stand-in facts is exactly the plan its real `facts` give:
/// it asked for no interface's address (the one thing stand-in facts answer differently),
/// and the real facts are what stood in (the nodename is the inventory name, and the facts
/// gathered without interfaces list none). Planning is a function of its inputs, so the
/// host need not be planned again.
pub fn stood_in_exactly(host: &str, plan: &HostPlan, facts: &Json) -> bool {
    let mut stand_in = provisional_facts(host);
    if let Some(map) = stand_in.as_object_mut() {
        map.remove(crate::render::PROVISIONAL);
    }
    !plan.reads_interfaces && *facts == stand_in
}

/// The host's certificate directories, host first, shared last: nothing else is rendered,
/// so neither certificates nor facts are needed.
pub fn cert_dirs(input: &PlanInput) -> Result<Vec<PathBuf>, PlanError> {
    Ok(HostContext::new(input)?.cert_dirs)
}

/// The host's final variables (playbook defaults applied, `{{ }}` strings rendered) without
/// planning any file: what certificate issuing needs before certificates exist.
///
/// Also says whether some variable could not be rendered for want of the host's facts
/// (`ansible_facts`): then the caller gathers them before planning.
pub fn resolve_vars(input: &PlanInput) -> Result<(Vars, bool), PlanError> {
    let ctx = HostContext::new(input)?;
    let needs_facts = !ctx.needs_facts.is_empty();
    Ok((ctx.vars, needs_facts))
}

/// Everything needed to render for one host.
pub(crate) struct HostContext<'a> {
    input: &'a PlanInput<'a>,
    vars: Vars,
    /// Variables whose templates failed, with why; reported when something uses them.
    unresolved: BTreeMap<String, String>,
    /// Those of them that only need the host's facts.
    needs_facts: BTreeSet<String>,
    context: Value,
    env: Arc<Environment<'static>>,
    template_dirs: Vec<PathBuf>,
    cert_dirs: Vec<PathBuf>,
    /// Held while the host is planned on stand-in facts.
    _stand_in: Option<crate::render::StandInFacts>,
}

impl<'a> HostContext<'a> {
    pub(crate) fn new(input: &'a PlanInput<'a>) -> Result<Self, PlanError> {
        let playbook = input.playbook;
        let mut raw = playbook.defaults.clone();
        raw.extend(input.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        // Ansible's magic variables: they describe the run and cannot be overridden.
        raw.insert("inventory_hostname".into(), Json::from(input.host));
        raw.insert(
            "playbook_dir".into(),
            Json::from(playbook.dir.display().to_string()),
        );
        // Kolla's name for its config directory; `node_custom_config` builds on it.
        raw.entry("node_config")
            .or_insert_with(|| Json::from(input.configdir.display().to_string()));
        let mut stand_in = None;
        if let Some(facts) = input.facts {
            let mut facts = facts.clone();
            if let Some(map) = facts.as_object_mut() {
                if map.remove(crate::render::PROVISIONAL) == Some(Json::Bool(true)) {
                    stand_in = Some(crate::render::StandInFacts::begin());
                }
            }
            raw.insert(FACTS.into(), facts);
        }

        let resolved = resolve(raw);
        let mut ctx = HostContext {
            _stand_in: stand_in,
            input,
            context: Value::from(minijinja::value::Serde(&resolved.vars)),
            vars: resolved.vars,
            unresolved: resolved.unresolved,
            needs_facts: resolved.needs_facts,
            env: playbook.templates.environment(&[]),
            template_dirs: Vec::new(),
            cert_dirs: Vec::new(),
        };
        ctx.template_dirs = ctx.search_dirs(&playbook.template_search, "template_search")?;
        ctx.cert_dirs = ctx.search_dirs(&playbook.cert_search, "cert_search")?;
        // Templates and certificates come from the operator's config directory or the
        // playbook's own: a variable (node_custom_config, set in any input file) must not
        // point the search at a directory someone else controls.
        for dir in ctx.template_dirs.iter().chain(&ctx.cert_dirs) {
            let dir = lexical(dir);
            let inside = |root: &Path| dir.starts_with(lexical(root));
            if !(inside(input.configdir) || inside(&playbook.dir)) {
                return Err(PlanError::Expression {
                    host: ctx.host(),
                    context: "template_search / cert_search".into(),
                    message: format!(
                        "{} is outside the config directory {} (node_custom_config must stay \
                         under --configdir)",
                        dir.display(),
                        input.configdir.display()
                    ),
                });
            }
        }
        ctx.env = playbook.templates.environment(&ctx.template_dirs);
        Ok(ctx)
    }

    fn search_dirs(&self, entries: &[String], what: &str) -> Result<Vec<PathBuf>, PlanError> {
        entries
            .iter()
            .map(|entry| {
                let text = self.render_string(entry, what)?;
                let path = PathBuf::from(text);
                Ok(if path.is_relative() {
                    self.input.playbook.dir.join(path)
                } else {
                    path
                })
            })
            .collect()
    }

    fn host(&self) -> String {
        self.input.host.to_string()
    }

    /// Error for a failed expression or templated string from the playbook.
    fn expression_error(
        &self,
        err: &minijinja::Error,
        source: &str,
        context: &str,
        referenced: BTreeSet<String>,
    ) -> PlanError {
        if let Some(e) = self.unresolved_use(err, &referenced) {
            return e;
        }
        PlanError::Expression {
            host: self.host(),
            context: format!("{context} ({source:?})"),
            message: describe(err, &referenced, &self.context),
        }
    }

    /// When a failure is an undefined variable that exists but could not be rendered, the
    /// useful error is why that variable failed.
    fn unresolved_use(
        &self,
        err: &minijinja::Error,
        referenced: &BTreeSet<String>,
    ) -> Option<PlanError> {
        if err.kind() != minijinja::ErrorKind::UndefinedError {
            return None;
        }
        let var = referenced
            .iter()
            .find(|v| self.unresolved.contains_key(*v))?;
        Some(self.unresolved_error(var))
    }

    /// Why `var` (unresolved) cannot be used: it needs the host's facts, or what failed.
    fn unresolved_error(&self, var: &str) -> PlanError {
        match self.needs_facts.contains(var) {
            true => PlanError::NeedsFacts {
                host: self.host(),
                var: var.to_string(),
            },
            false => PlanError::Variable {
                host: self.host(),
                var: var.to_string(),
                message: self.unresolved[var].clone(),
            },
        }
    }

    pub(crate) fn eval_when(&self, expr: &str, context: &str) -> Result<bool, PlanError> {
        let compiled = cached_expression(expr)
            .map_err(|e| self.expression_error(&e, expr, context, BTreeSet::new()))?;
        // What the expression reads matters only to explain a failure (and costs a parse).
        let referenced = || compiled.undeclared_variables(false).into_iter().collect();
        let value = compiled
            .eval(self.context.clone())
            .map_err(|e| self.expression_error(&e, expr, context, referenced()))?;
        // A bare `when: some_var` holding "no" must be false, as the playbook author meant.
        value_to_bool(&value).map_err(|e| self.expression_error(&e, expr, context, referenced()))
    }

    fn render_string(&self, text: &str, context: &str) -> Result<String, PlanError> {
        if !is_templated(text) {
            return Ok(text.to_string());
        }
        let render = |template: minijinja::Template<'_, '_>| {
            template.render(self.context.clone()).map_err(|e| {
                let referenced = template.undeclared_variables(false).into_iter().collect();
                (e, referenced)
            })
        };
        let compile_error =
            |e: minijinja::Error| self.expression_error(&e, text, context, BTreeSet::new());
        // Without statements (`{% include %}` needs the template directories) the string's
        // compiled form is shared by every host and pass.
        let rendered = match text.contains("{%") {
            true => render(self.env.template_from_str(text).map_err(compile_error)?),
            false => with_string_template(text, |t| Ok(render(t))).map_err(compile_error)?,
        };
        rendered.map_err(|(e, referenced)| self.expression_error(&e, text, context, referenced))
    }

    fn render_argv(&self, argv: &[String], context: &str) -> Result<Vec<String>, PlanError> {
        argv.iter()
            .map(|a| self.render_string(a, context))
            .collect()
    }

    /// A service's steps (`after_restart`, a host service's restart) for this host: those
    /// whose `when` holds, rendered.
    fn render_steps(
        &self,
        service: &str,
        steps: &[crate::StepSpec],
        what: &str,
    ) -> Result<Vec<Step>, PlanError> {
        let mut out = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let context = format!("service {service}: {what} step {}", i + 1);
            if let Some(when) = &step.when {
                if !self.eval_when(when, &format!("{context}: when"))? {
                    continue;
                }
            }
            let exec = self.render_argv(&step.exec, &context)?;
            let stdin = step
                .stdin
                .as_ref()
                .map(|s| self.render_string(s, &format!("{context}: stdin")))
                .transpose()?;
            // These reach the host as shell words, which cannot hold NUL: refused here, before
            // any host is touched, rather than half-way through a host's change. The message
            // names the step, never the value (stdin is a password).
            if exec.iter().chain(&stdin).any(|word| word.contains('\0')) {
                return Err(PlanError::Service {
                    host: self.host(),
                    service: service.to_string(),
                    message: format!("{context}: a command word or its input holds a NUL byte"),
                });
            }
            out.push(Step {
                exec,
                stdin: stdin.map(String::into_bytes),
            });
        }
        Ok(out)
    }

    fn plan_service(&self, spec: &ServiceSpec) -> Result<ServicePlan, PlanError> {
        let service_error = |message: String| PlanError::Service {
            host: self.host(),
            service: spec.name.clone(),
            message,
        };
        let label = |what: &str| format!("service {}: {what}", spec.name);
        let dir = self.render_string(&spec.dir, &label("dir"))?;
        let dir = dir.trim_end_matches('/').to_string();
        if !dir.starts_with('/') || dir.split('/').any(|part| part == "..") {
            return Err(service_error(format!(
                "dir {dir:?} must be an absolute path without '..'"
            )));
        }

        let mut files: Vec<DesiredFile> = Vec::new();
        for file in &spec.files {
            let context = label(&format!("file {}", file.dest));
            if let Some(when) = &file.when {
                if !self.eval_when(when, &format!("{context}: when"))? {
                    continue;
                }
            }
            let desired = self.desired_file(&dir, file, &context)?;
            if files.iter().any(|f| f.path == desired.path) {
                return Err(service_error(format!(
                    "two file entries write {}",
                    desired.path
                )));
            }
            files.push(desired);
        }

        let ready = spec
            .ready
            .as_ref()
            .map(|r| -> Result<ReadyCheck, PlanError> {
                Ok(ReadyCheck {
                    exec: self.render_argv(&r.exec, &label("ready"))?,
                    retries: r.retries,
                    delay_ms: r.delay_ms,
                })
            })
            .transpose()?;

        let after_restart = self.render_steps(&spec.name, &spec.after_restart, "after_restart")?;
        let runs = match &spec.host {
            None => Runs::Container,
            Some(host) => Runs::Host {
                restart: self.render_steps(&spec.name, &host.restart, "host restart")?,
            },
        };

        let reload = match &spec.reload {
            None => None,
            Some(r) => {
                // Only files this host actually manages: the rest can never change.
                let reload_files: Vec<String> = r
                    .files
                    .iter()
                    .filter_map(|name| spec.files.iter().find(|f| &f.dest == name))
                    .map(|f| f.path_in(&dir))
                    .filter(|path| files.iter().any(|f| &f.path == path))
                    .collect();
                if reload_files.is_empty() {
                    None
                } else {
                    Some(Reload {
                        files: reload_files,
                        exec: r
                            .exec
                            .iter()
                            .map(|argv| self.render_argv(argv, &label("reload")))
                            .collect::<Result<_, _>>()?,
                    })
                }
            }
        };

        Ok(ServicePlan {
            name: spec.name.clone(),
            runs,
            marker_path: format!("{dir}/{MARKER_NAME}"),
            dir,
            files,
            ready,
            after_restart,
            reload,
        })
    }

    fn desired_file(
        &self,
        dir: &str,
        file: &FileSpec,
        context: &str,
    ) -> Result<DesiredFile, PlanError> {
        let (mut content, source) = match &file.source {
            FileSource::Template(name) => self.render_template(name)?,
            FileSource::Cert(name) => self.read_cert(name, file.fallback.as_deref())?,
        };
        for entry in &file.overrides {
            content = self.apply_override(content, entry, context)?;
        }
        let owner = file
            .owner
            .as_ref()
            .map(|o| self.render_string(o, &format!("{context}: owner")))
            .transpose()?;
        // Private keys are secret whatever the playbook says.
        let secret = file.secret || crate::redact::has_private_key(&content);
        let role = match (&file.source, &self.input.playbook.tls) {
            (FileSource::Cert(name), Some(tls)) => tls.role_of(name),
            _ => None,
        };
        Ok(DesiredFile {
            path: file.path_in(dir),
            sha256: sha256_hex(&content),
            content,
            mode: file.mode,
            owner,
            secret,
            source,
            merge: file.merge,
            role: role.map(|(role, _)| role),
            cert_set: role.and_then(|(_, set)| set.map(str::to_string)),
        })
    }

    /// `content` with the override file at `entry` (a templated path) merged over it, when
    /// that file exists: rendered as a template, then its keys replace or join the rendered
    /// ones (Kolla's `merge_configs`).
    fn apply_override(
        &self,
        content: Vec<u8>,
        entry: &str,
        context: &str,
    ) -> Result<Vec<u8>, PlanError> {
        let Some((path, rendered)) = self.render_override(entry, context)? else {
            return Ok(content);
        };
        crate::merge(crate::Merge::Ini, Some(&content), rendered.as_bytes()).map_err(|e| {
            PlanError::Template {
                host: self.host(),
                template: path.clone(),
                line: None,
                message: e,
            }
        })
    }

    /// The override file at `entry` (a templated path), rendered; None when it does not exist.
    fn render_override(
        &self,
        entry: &str,
        context: &str,
    ) -> Result<Option<(PathBuf, String)>, PlanError> {
        let path = PathBuf::from(self.render_string(entry, &format!("{context}: overrides"))?);
        // Like the searches: only the operator's config directory may feed a host's files.
        if !lexical(&path).starts_with(lexical(self.input.configdir)) {
            return Err(PlanError::Expression {
                host: self.host(),
                context: format!("{context}: overrides"),
                message: format!(
                    "{} is outside the config directory {}",
                    path.display(),
                    self.input.configdir.display()
                ),
            });
        }
        if !path.is_file() {
            return Ok(None);
        }
        let text = virtfleet_inventory::read_text_file(&path).map_err(|e| PlanError::Template {
            host: self.host(),
            template: path.clone(),
            line: None,
            message: e.to_string(),
        })?;
        let template_error = |err: &minijinja::Error, referenced: &BTreeSet<String>| {
            self.unresolved_use(err, referenced)
                .unwrap_or_else(|| PlanError::Template {
                    host: self.host(),
                    template: path.clone(),
                    line: err.line(),
                    message: describe(err, referenced, &self.context),
                })
        };
        let rendered = self.render_compiled(self.env.template_from_str(&text), template_error)?;
        Ok(Some((path, rendered)))
    }

    /// A setting the playbook's `conflicts:` rule out, in the rendered files of `services`:
    /// named with the file that sets it (the last override that does, else the template).
    fn check_conflicts(&self, services: &[ServicePlan]) -> Result<(), PlanError> {
        for conflict in &self.input.playbook.conflicts {
            let context = format!("conflicts: {} {}", conflict.service, conflict.file);
            if !self.eval_when(&conflict.when, &context)? {
                continue;
            }
            let Some(service) = services.iter().find(|s| s.name == conflict.service) else {
                continue;
            };
            let path = format!("{}/{}", service.dir, conflict.file);
            let Some(file) = service.files.iter().find(|f| f.path == path) else {
                continue;
            };
            let text = String::from_utf8_lossy(&file.content);
            let value = |key: &str| crate::ini_value(&text, &conflict.section, key);
            let all_true = conflict
                .keys
                .iter()
                .all(|key| value(key).is_some_and(|v| crate::ini_true(&v)));
            if !all_true {
                continue;
            }
            let key = &conflict.keys[0];
            let value = value(key).unwrap_or_default();
            let spec = self
                .input
                .playbook
                .services
                .iter()
                .find(|s| s.name == service.name);
            let entries = spec
                .and_then(|s| s.files.iter().find(|f| f.dest == conflict.file))
                .map_or(&[][..], |f| f.overrides.as_slice());
            let mut source = file.source.clone();
            for entry in entries {
                if let Some((at, rendered)) = self.render_override(entry, &context)? {
                    if crate::ini_value(&rendered, &conflict.section, key).is_some() {
                        source = at;
                    }
                }
            }
            return Err(PlanError::Conflict {
                host: self.host(),
                file: source,
                setting: format!("[{}] {key} = {value}", conflict.section),
                message: conflict.message.trim().to_string(),
            });
        }
        Ok(())
    }

    fn render_template(&self, name: &str) -> Result<(Vec<u8>, PathBuf), PlanError> {
        let Some(path) = find_in(&self.template_dirs, name) else {
            return Err(PlanError::TemplateNotFound {
                host: self.host(),
                name: name.to_string(),
                searched: self.template_dirs.iter().map(|d| d.join(name)).collect(),
            });
        };
        let template_error = |err: &minijinja::Error, referenced: &BTreeSet<String>| {
            if let Some(e) = self.unresolved_use(err, referenced) {
                return e;
            }
            // The error may point into an included template rather than this one.
            let at = err
                .name()
                .and_then(|n| find_in(&self.template_dirs, n))
                .unwrap_or_else(|| path.clone());
            PlanError::Template {
                host: self.host(),
                template: at,
                line: err.line(),
                message: describe(err, referenced, &self.context),
            }
        };
        let text = self.render_compiled(self.env.get_template(name), template_error)?;
        Ok((text.into_bytes(), path))
    }

    /// Renders a loaded template against the host's variables; `error` turns a failure (and
    /// the variables the template reads) into the error to report.
    fn render_compiled(
        &self,
        template: Result<minijinja::Template<'_, '_>, minijinja::Error>,
        error: impl Fn(&minijinja::Error, &BTreeSet<String>) -> PlanError,
    ) -> Result<String, PlanError> {
        let template = template.map_err(|e| error(&e, &BTreeSet::new()))?;
        template
            .render(self.context.clone())
            .map_err(|e| {
                // Only a failure needs what the template reads (finding it parses the source again).
                let referenced: BTreeSet<String> =
                    template.undeclared_variables(false).into_iter().collect();
                error(&e, &referenced)
            })
            .map(|mut text| {
                // Kept for the whole run, for every host: not the spare room of its growth.
                text.shrink_to_fit();
                text
            })
    }

    /// The first of the certificate directories' files `name`, else `fallback`'s.
    fn read_cert(
        &self,
        name: &str,
        fallback: Option<&str>,
    ) -> Result<(Vec<u8>, PathBuf), PlanError> {
        let names = std::iter::once(name).chain(fallback);
        let Some(path) = names.clone().find_map(|n| find_in(&self.cert_dirs, n)) else {
            return Err(PlanError::CertNotFound {
                host: self.host(),
                name: name.to_string(),
                searched: names
                    .flat_map(|n| self.cert_dirs.iter().map(move |d| d.join(n)))
                    .collect(),
            });
        };
        let content = std::fs::read(&path).map_err(|source| PlanError::Io {
            path: path.clone(),
            source,
        })?;
        Ok((content, path))
    }
}

impl HostContext<'_> {
    fn container_engine(&self) -> Result<String, PlanError> {
        // None: every service runs under the host's own service manager (checked at load).
        if self.input.playbook.container_engine.is_empty() {
            return Ok(String::new());
        }
        let engine =
            self.render_string(&self.input.playbook.container_engine, "container_engine")?;
        // It becomes the first word of commands on the host: a plain command name only.
        let plain = !engine.is_empty()
            && engine
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !engine.starts_with('-');
        if !plain {
            return Err(PlanError::Expression {
                host: self.host(),
                context: "container_engine".into(),
                message: format!("{engine:?} is not a command name (e.g. docker, podman)"),
            });
        }
        Ok(engine)
    }

    fn port(&self, text: &str, context: &str) -> Result<u16, PlanError> {
        let rendered = self.render_string(text, context)?;
        rendered.trim().parse().map_err(|_| PlanError::Expression {
            host: self.host(),
            context: context.into(),
            message: format!("{rendered:?} is not a port number"),
        })
    }

    fn audit(&self) -> Result<Option<AuditPlan>, PlanError> {
        let Some(spec) = &self.input.playbook.audit else {
            return Ok(None);
        };
        let render_all = |paths: &[String], context: String| {
            paths
                .iter()
                .map(|p| self.render_string(p, &context))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut files = BTreeMap::new();
        for (kind, paths) in &spec.files {
            files.insert(
                kind.clone(),
                render_all(paths, format!("audit: files: {kind}"))?,
            );
        }
        let mut certs = BTreeMap::new();
        for (role, paths) in &spec.certs {
            certs.insert(*role, render_all(paths, format!("audit: certs: {role:?}"))?);
        }
        let mut cert_sets = Vec::new();
        for (name, set) in &spec.cert_sets {
            let context = format!("audit: cert_sets: {name}");
            let mut files = BTreeMap::new();
            for (role, paths) in &set.files {
                files.insert(*role, render_all(paths, format!("{context}: {role:?}"))?);
            }
            cert_sets.push(AuditCertSetPlan {
                name: name.clone(),
                key_group: set
                    .key_group
                    .as_ref()
                    .map(|g| self.render_string(g, &format!("{context}: key_group")))
                    .transpose()?,
                files,
            });
        }
        let server_name = spec
            .server_name
            .as_ref()
            .map(|name| self.render_string(name, "audit: server_name"))
            .transpose()?;
        let migration_ports = match &spec.migration_ports {
            None => None,
            Some(text) => {
                let context = "audit: migration_ports";
                let text = self.render_string(text, context)?;
                let range = text.split_once('-').and_then(|(a, b)| {
                    let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
                    (0 < a && a <= b).then_some(a..=b)
                });
                Some(range.ok_or_else(|| PlanError::Expression {
                    host: self.host(),
                    context: context.into(),
                    message: format!("{text:?}: not a port range first-last"),
                })?)
            }
        };
        Ok(Some(AuditPlan {
            migration_ports,
            files,
            address: self.render_string(&spec.address, "audit: address")?,
            tcp_port: self.port(&spec.tcp_port, "audit: tcp_port")?,
            tls_port: self.port(&spec.tls_port, "audit: tls_port")?,
            certs,
            cert_sets,
            server_name,
        }))
    }

    fn tls(&self, check_when: bool) -> Result<Option<TlsPlan>, PlanError> {
        let Some(spec) = &self.input.playbook.tls else {
            return Ok(None);
        };
        if let (Some(when), true) = (&spec.when, check_when) {
            if !self.eval_when(when, "tls: when")? {
                return Ok(None);
            }
        }
        let port_text = self.render_string(&spec.port, "tls: port")?;
        let port = port_text
            .trim()
            .parse()
            .map_err(|_| PlanError::Expression {
                host: self.host(),
                context: "tls: port".into(),
                message: format!("{port_text:?} is not a port number"),
            })?;
        Ok(Some(TlsPlan {
            service: spec.service.clone(),
            address: self.render_string(&spec.address, "tls: address")?,
            server_name: self.render_string(&spec.server_name, "tls: server_name")?,
            port,
            connect: self.render_argv(&spec.connect, "tls: connect")?,
            sets: self.active_sets(spec)?,
            let_in: spec
                .let_in
                .as_ref()
                .and_then(|var| self.vars.get(var)?.as_array().cloned())
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        }))
    }

    fn active_sets(&self, spec: &crate::TlsSpec) -> Result<Vec<String>, PlanError> {
        let mut active = Vec::new();
        for set in &spec.sets {
            let context = format!("tls: sets: {}: when", set.name);
            let holds = match &set.when {
                Some(when) => self.eval_when(when, &context)?,
                None => true,
            };
            if holds {
                active.push(set.name.clone());
            }
        }
        Ok(active)
    }
}

/// `path` with `.` and `..` resolved by name (not through the filesystem).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Variables that say how to reach a host: they end up in DNS queries and connections
/// before any host key is checked.
const CONNECTION_VARS: [&str; 10] = [
    "ansible_host",
    "ansible_ssh_host",
    "ansible_user",
    "ansible_ssh_user",
    "ansible_port",
    "ansible_ssh_port",
    "ansible_ssh_private_key_file",
    "ansible_become_user",
    // The jump hosts (ProxyJump) are read from these.
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
];

/// Shortest secret value looked for inside other values (shorter ones match by chance).
const MIN_SECRET_LEN: usize = 8;

/// The playbook's `validate:` types, on the host's final values (a variable that is not set
/// is `require:`'s business; one that failed to render is reported where it is used). A
/// checked or connection variable may not hold a secret's value (`{{ a_password }}` in
/// `ansible_host` or `nova_compute_command` would carry it to DNS, files or command lines):
/// secrets go only where the playbook puts them (secret files, stdin).
fn check_types(ctx: &HostContext) -> Result<(), PlanError> {
    let secrets: Vec<(&String, &str)> = ctx
        .vars
        .iter()
        .filter(|(name, _)| crate::vars::secret_name(name))
        .filter_map(|(name, v)| Some((name, v.as_str()?)))
        .filter(|(_, v)| v.len() >= MIN_SECRET_LEN)
        .collect();
    // The operator's own variables first: a bad value is named where it was set, not in a
    // playbook default that copies it (`libvirt_sasl_allowed_usernames` from the authname).
    let set_by_operator = |var: &&str| ctx.input.vars.contains_key(*var);
    let all: Vec<&str> = CONNECTION_VARS
        .into_iter()
        .chain(ctx.input.playbook.validate.keys().map(String::as_str))
        .collect();
    let (own, derived): (Vec<&str>, Vec<&str>) = all.into_iter().partition(set_by_operator);
    let checked: Vec<&str> = own.into_iter().chain(derived).collect();
    for &var in &checked {
        let Some(value) = ctx.vars.get(var) else {
            continue;
        };
        let text = value.to_string();
        if let Some((secret, _)) = secrets
            .iter()
            .find(|(name, v)| name.as_str() != var && text.contains(v))
        {
            return Err(PlanError::Variable {
                host: ctx.host(),
                var: var.to_string(),
                message: format!(
                    "holds the value of the secret variable {secret}; secrets go only where \
                     the playbook puts them"
                ),
            });
        }
    }
    for var in checked {
        let Some(ty) = ctx.input.playbook.validate.get(var) else {
            continue;
        };
        let Some(value) = ctx.vars.get(var).filter(|v| !v.is_null()) else {
            continue;
        };
        if let Some(problem) = ty.check(value) {
            return Err(PlanError::Variable {
                host: ctx.host(),
                var: var.to_string(),
                message: problem,
            });
        }
    }
    Ok(())
}

/// Errs on the first refused configuration; returns those the operator let through.
fn check_refusals(ctx: &HostContext) -> Result<Vec<(String, String)>, PlanError> {
    let mut let_through = Vec::new();
    for refusal in &ctx.input.playbook.refuses {
        if !ctx.eval_when(&refusal.when, "refuse: when")? {
            continue;
        }
        let allowed = match &refusal.unless {
            Some(var) => {
                ctx.eval_when(&format!("{var} | bool"), &format!("refuse: unless {var}"))?
            }
            None => false,
        };
        if !allowed {
            let read = cached_expression(&refusal.when)
                .map(|e| {
                    let sorted: BTreeSet<String> =
                        e.undeclared_variables(false).into_iter().collect();
                    sorted.into_iter().collect()
                })
                .unwrap_or_default();
            return Err(PlanError::Refused {
                host: ctx.host(),
                message: refusal.message.trim().to_string(),
                unless: refusal.unless.clone(),
                read,
            });
        }
        let message = refusal.message.trim().to_string();
        if let Some(var) = &refusal.unless {
            let_through.push((var.clone(), message));
        }
    }
    Ok(let_through)
}

fn check_requirements(ctx: &HostContext) -> Result<(), PlanError> {
    for req in &ctx.input.playbook.requires {
        if let Some(when) = &req.when {
            if !ctx.eval_when(when, &format!("require {}: when", req.var))? {
                continue;
            }
        }
        if ctx.unresolved.contains_key(&req.var) {
            return Err(ctx.unresolved_error(&req.var));
        }
        let missing = match ctx.vars.get(&req.var) {
            None | Some(Json::Null) => true,
            Some(Json::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if missing {
            return Err(PlanError::MissingVariable {
                host: ctx.host(),
                var: req.var.clone(),
                hint: req.hint.clone(),
            });
        }
    }
    Ok(())
}
