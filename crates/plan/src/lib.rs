//! Playbook + host variables + certificate search → the desired state of one host.
//!
//! Pure: reads the playbook, templates and certificate files, never touches a host. The engine
//! gets, per host, the files each service needs (content, mode, hash), how to tell the service
//! is ready, what to run after a restart and which changes can be applied live. Everything
//! libvirt-specific lives in the playbook's YAML and templates, not here.
//!
//! Playbook format (see `playbooks/kolla.yml`):
//! ```yaml
//! name: nova-libvirt
//! hosts: compute                      # inventory group
//! defaults: {libvirt_tls: false}      # lowest precedence; "{{ }}" values are rendered
//! require:                            # checked before anything is planned
//!   - {var: libvirt_sasl_password, when: "libvirt_enable_sasl | bool", hint: "..."}
//! template_search: ["{{ node_custom_config }}/nova/{{ inventory_hostname }}", ...]
//! cert_search: ["{{ node_custom_config }}/nova/nova-libvirt/{{ inventory_hostname }}", ...]
//! services:                           # container name -> service, in restart order
//!   nova_libvirt:
//!     dir: "{{ node_config_directory }}/nova-libvirt"
//!     files:                          # dest defaults to the template name minus .j2
//!       - {template: auth.conf.j2, dest: auth.conf, mode: "0600", secret: true, when: "..."}
//!       - {cert: cacert.pem, mode: "0600", when: "..."}
//!     ready: {exec: [virsh, version, --daemon], retries: 40, delay_ms: 250}
//!     after_restart: [{exec: [...], stdin: "{{ secret }}", when: "..."}]
//!     reload: {files: [cacert.pem], exec: [[kolla_set_configs]]}
//! ```
//! Templates and `{{ }}` strings use minijinja with strict undefined, Ansible's whitespace
//! rules (trim_blocks, final newline kept) and the filters `bool` (Ansible's yes/no/on/off/1/0),
//! `ipwrap`, `put_address_in_context('url')` and `keyfile_escape`. Magic variables:
//! `inventory_hostname`, `playbook_dir`, and `node_config` (the config directory) unless set.

mod error;
mod merge;
mod plan;
mod playbook;
mod redact;
mod render;
mod validate;
mod vars;

pub use error::PlanError;
pub use merge::{merge, Merge};
pub use plan::{
    plan_host, resolve_tls, resolve_vars, DesiredFile, HostPlan, PlanInput, ReadyCheck, Reload,
    ServicePlan, Step, TlsPlan, MARKER_NAME,
};
pub use playbook::{
    load_playbook, CertRole, FileSource, FileSpec, Playbook, ReadySpec, ReloadSpec, Requirement,
    ServiceSpec, StepSpec, TlsSpec,
};
pub use redact::redact;
pub use validate::VarType;
