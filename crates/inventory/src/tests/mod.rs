//! Fixture-based tests: small inventories written into temporary directories.

mod errors;
mod ini;
mod limit;
mod limits;
mod names;
mod precedence;
mod secrets;
mod yaml;

use std::path::{Path, PathBuf};

use crate::{load_inventory, Inventory};

/// Writes `content` to `dir/rel`, creating parent directories, and returns the path.
pub(crate) fn write(dir: &Path, rel: &str, content: &str) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    path
}

pub(crate) fn load(dir: &Path, rel: &str, content: &str) -> Inventory {
    let path = write(dir, rel, content);
    load_inventory(&path).unwrap_or_else(|e| panic!("loading {rel}: {e}"))
}

pub(crate) fn inventory_error(dir: &Path, name: &str, content: &str) -> String {
    let path = write(dir, name, content);
    match load_inventory(&path) {
        Ok(_) => panic!("{name} loaded without error"),
        Err(e) => e.to_string(),
    }
}

/// Asserts the message starts with `<dir>/<file>:<line>: ` and contains `needle`.
pub(crate) fn assert_at(message: &str, dir: &Path, file: &str, line: usize, needle: &str) {
    let prefix = format!("{}:{line}: ", dir.join(file).display());
    assert!(
        message.starts_with(&prefix),
        "{message:?} should start with {prefix:?}"
    );
    assert!(
        message.contains(needle),
        "{message:?} should contain {needle:?}"
    );
}

/// Runs `f`, failing the test if it takes a second or longer.
pub(crate) fn quickly<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = std::time::Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(
        took < std::time::Duration::from_secs(1),
        "{what} took {took:?}"
    );
    out
}

/// Loads each `(content, line, needle)` case as `inv<i><extension>` in `dir` and checks that
/// it fails at that line with that text.
pub(crate) fn assert_inventory_errors(dir: &Path, extension: &str, cases: &[(&str, usize, &str)]) {
    for (i, (content, line, needle)) in cases.iter().enumerate() {
        let name = format!("inv{i}{extension}");
        let message = inventory_error(dir, &name, content);
        assert_at(&message, dir, &name, *line, needle);
    }
}

pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A Kolla-style `multinode` inventory.
pub(crate) const MULTINODE: &str = r#"# Kolla-style multinode
lonely

[control]
control01 ansible_host=10.0.0.10

[compute]
compute[01:03] ansible_user=kolla
compute04 ansible_host="10.0.0.24" note="two words" port_num=22 flag=True  # trailing comment
edge01:2222

[storage:children]
compute

[nova:children]
control
compute

; semicolon comment
[nova-compute:children]
compute

[compute:vars]
libvirt_tls = yes
nova_libvirt_port=16514

[all:vars]
ansible_user=root
kolla_container_engine=podman
"#;
