//! Playbook + host variables + certificate search → the desired state of one host.
//!
//! Pure: reads the playbook, templates and certificate files, never touches a host. The engine
//! gets, per host, the files each service needs (content, mode, hash), how to tell the service
//! is ready, what to run after a restart and which changes can be applied live. Everything
//! libvirt-specific lives in the playbook's YAML and templates, not here.
//!
//! Playbook format (a generic sketch; `playbooks/kolla.yml` is the real one):
//! ```yaml
//! name: example
//! hosts: compute                      # inventory group
//! defaults: {tls_on: false}           # lowest precedence; "{{ }}" values are rendered
//! require:                            # checked before anything is planned
//!   - {var: sasl_password, when: "sasl_on | bool", hint: "..."}
//! validate: {listen_address: host, tls_port: port, virt: {enum: [kvm, qemu]}}
//! container_engine: "{{ engine }}"    # the engine's command on the hosts
//! tls:                                # what rotation, its gate and `certs` need
//!   when: "tls_on | bool"
//!   service: daemon                   # serves TLS; peers run `connect` inside theirs
//!   address: "{{ listen_address }}"
//!   server_name: "{{ inventory_hostname }}"
//!   port: "{{ tls_port }}"
//!   connect: [client, --connect, "tls://{{ inventory_hostname }}:{{ tls_port }}"]
//!   files: {ca: ca.pem, server_cert: server.pem, server_key: server.key,
//!           client_cert: client.pem, client_key: client.key}
//!   ca_key: ca.key                    # the built-in CA's key, never pushed
//! template_search: ["{{ node_config }}/{{ inventory_hostname }}", "{{ playbook_dir }}/t"]
//! cert_search: ["{{ node_config }}/certs/{{ inventory_hostname }}", "{{ node_config }}/certs"]
//! services:                           # container name -> service, in restart order
//!   daemon:
//!     dir: "/etc/example/daemon"
//!     files:                          # dest defaults to the template name minus .j2
//!       - {template: auth.conf.j2, dest: auth.conf, mode: "0600", secret: true, when: "..."}
//!       - {cert: ca.pem, mode: "0600", when: "..."}
//!     ready: {exec: [client, --ping], retries: 40, delay_ms: 250}
//!     after_restart: [{exec: [...], stdin: "{{ secret }}", when: "..."}]
//!     reload: {files: [ca.pem], exec: [[client, --reload-tls]]}
//! transitions:                        # fleet-wide moves in phases (see `transition`)
//!   - name: plain to tls
//!     when: "tls_on | bool"           # the variables ask for the new side
//!     held: {plain: {file: conf, key: listen_plain}}   # `audit:` file kinds
//!     pending: "virtfleet_held.plain == '1'"           # this host is on the old side
//!     phases:
//!       - {title: both, done: "...", vars: {keep_plain: true}, keep: [client_svc]}
//!       - {title: tls only}           # the last phase is the plan itself
//!     downgrade: {when: "...", message: "..."}          # refused without --allow-downgrade
//! ```
//! Templates and `{{ }}` strings use minijinja with strict undefined, Ansible's whitespace
//! rules (trim_blocks, final newline kept) and the filters `bool` (Ansible's yes/no/on/off/1/0),
//! `ipwrap`, `put_address_in_context('url')` and `keyfile_escape`. Magic variables:
//! `inventory_hostname`, `playbook_dir`, and `node_config` (the config directory) unless set.

pub mod conf;
mod error;
mod merge;
mod plan;
mod playbook;
mod redact;
mod render;
mod transition;
mod validate;
mod vars;

pub use error::PlanError;
pub use merge::{conf_readable, ini_true, ini_value, merge, Merge};
pub use plan::{
    cert_dirs, plan_host, provisional_facts, resolve_tls, resolve_vars, stood_in_exactly,
    AuditCertSetPlan, AuditPlan, DesiredFile, HostPlan, PlanInput, ReadyCheck, Reload, Runs,
    ServicePlan, Step, TlsPlan, MARKER_NAME,
};
pub use playbook::{
    load_playbook, AuditCertSet, AuditSpec, CertRole, CertSetSpec, Conflict, FileSource, FileSpec,
    HostServiceSpec, Playbook, ReadySpec, ReloadSpec, Requirement, ServiceSpec, StepSpec, TlsSpec,
};
pub use redact::redact;
pub use render::is_templated;
pub use transition::{
    held_paths, held_values, host_transitions, start_phase, Downgrade, HeldSpec, HostTransition,
    PhaseSpec, TransitionSpec, HELD_VAR,
};
pub use validate::VarType;
