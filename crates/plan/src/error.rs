use std::path::PathBuf;

/// Everything that can go wrong between reading a playbook and producing a host's plan.
/// Each variant names what an operator needs to find the problem: file, line, host, variable.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The YAML itself, or a playbook field that failed validation while parsing
    /// (serde_yaml_ng puts the line and column into the message).
    #[error("playbook {}: {source}", path.display())]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },

    /// A playbook that parsed but makes no sense as a whole.
    #[error("playbook {}: {message}", path.display())]
    Playbook { path: PathBuf, message: String },

    /// A variable reads the host's facts and none were gathered: the caller gathers them
    /// (one round trip) and plans again.
    #[error("host {host}: {var} needs the host's facts (ansible_facts), which were not gathered")]
    NeedsFacts { host: String, var: String },

    #[error("host {host}: template {}{}: {message}", template.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Template {
        host: String,
        template: PathBuf,
        line: Option<usize>,
        message: String,
    },

    #[error(
        "host {host}: template {name} not found; searched {}",
        join_paths(searched)
    )]
    TemplateNotFound {
        host: String,
        name: String,
        searched: Vec<PathBuf>,
    },

    #[error(
        "host {host}: certificate file {name} not found; searched {}",
        join_paths(searched)
    )]
    CertNotFound {
        host: String,
        name: String,
        searched: Vec<PathBuf>,
    },

    /// An expression or templated string from the playbook itself (`when`, `dir`, `exec`, ...).
    #[error("host {host}: {context}: {message}")]
    Expression {
        host: String,
        context: String,
        message: String,
    },

    /// A variable whose value is a template that could not be rendered, and which is used.
    #[error("host {host}: variable {var}: {message}")]
    Variable {
        host: String,
        var: String,
        message: String,
    },

    /// A variable the playbook requires (see `require:`) is not set.
    #[error("host {host}: variable {var} is not set{}", hint.as_ref().map(|h| format!(": {h}")).unwrap_or_default())]
    MissingVariable {
        host: String,
        var: String,
        hint: Option<String>,
    },

    /// A configuration the playbook refuses (see `refuse:`), and how to let it through.
    #[error("host {host}: refused: {message}{}", match unless {
        Some(var) => format!(" (set {var} to true to deploy it anyway)"),
        None => String::new(),
    })]
    Refused {
        host: String,
        message: String,
        /// The switch that lets it through; None for a configuration that cannot work.
        unless: Option<String>,
        /// The variables the refused condition reads, so a caller can say where each is set.
        read: Vec<String>,
    },

    /// A rendered file holds a setting the playbook's `conflicts:` rule out.
    #[error("host {host}: {}: {setting}: {message}", file.display())]
    Conflict {
        host: String,
        /// The file that sets it: the operator's override, or the template.
        file: PathBuf,
        /// `[section] key = value`, as read.
        setting: String,
        message: String,
    },

    /// The rendered plan is inconsistent (e.g. two files with the same destination).
    #[error("host {host}: service {service}: {message}")]
    Service {
        host: String,
        service: String,
        message: String,
    },
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", then ")
}
