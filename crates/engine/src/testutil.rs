//! Builders for the engine's unit tests.

use virtfleet_plan::{DesiredFile, Reload, ServicePlan};

/// A desired file of mode 0600 with sha256 `sha` (the content is not looked at).
pub(crate) fn file(path: &str, sha: &str) -> DesiredFile {
    DesiredFile {
        path: path.into(),
        content: Vec::new(),
        mode: 0o600,
        owner: None,
        secret: false,
        sha256: sha.into(),
        source: Default::default(),
        merge: None,
        role: None,
        cert_set: None,
    }
}

/// Service `svc` in a container, its files in /k/svc, reloading live when `reload` names files.
pub(crate) fn service(files: Vec<DesiredFile>, reload: &[&str]) -> ServicePlan {
    ServicePlan {
        runs: virtfleet_plan::Runs::Container,
        name: "svc".into(),
        dir: "/k/svc".into(),
        files,
        ready: None,
        after_restart: Vec::new(),
        reload: (!reload.is_empty()).then(|| Reload {
            files: reload.iter().map(|s| s.to_string()).collect(),
            exec: vec![vec!["true".into()]],
        }),
        marker_path: "/k/svc/.virtfleet-applied".into(),
    }
}
