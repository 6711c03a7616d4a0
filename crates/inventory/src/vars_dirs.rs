//! `group_vars/` and `host_vars/` beside the inventory file, found the way Ansible's
//! `host_group_vars` plugin finds them: `<name>`, `<name>.yml`, `<name>.yaml`, `<name>.json`,
//! each either a file or a directory of such files (read recursively, in name order).

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::inventory::Inventory;
use crate::limits::MAX_VARS_DIR_DEPTH;
use crate::names::name_problem;
use crate::read::Budget;
use crate::yaml_vars::{merge, parse_vars_text};
use crate::{InventoryError, Vars};

const EXTENSIONS: [&str; 4] = ["", ".yml", ".yaml", ".json"];

pub(crate) fn attach_vars_files(
    inventory: &mut Inventory,
    budget: &mut Budget,
) -> Result<(), InventoryError> {
    let base = inventory
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let group_dir = VarsDir::open(base.join("group_vars"))?;
    for (name, group) in inventory.groups.iter_mut() {
        group.file_vars = group_dir.load_entity(name, budget)?;
    }
    let host_dir = VarsDir::open(base.join("host_vars"))?;
    for name in &inventory.hosts {
        if let Some(host) = inventory.host_data.get_mut(name) {
            host.file_vars = host_dir.load_entity(name, budget)?;
        }
    }
    Ok(())
}

/// `group_vars/` or `host_vars/`, listed once: a fleet of hosts without host vars costs one
/// directory read, not a lookup per host.
struct VarsDir {
    dir: PathBuf,
    entries: HashSet<OsString>,
}

impl VarsDir {
    fn open(dir: PathBuf) -> Result<Self, InventoryError> {
        let mut entries = HashSet::new();
        if dir.is_dir() {
            for entry in std::fs::read_dir(&dir).map_err(|e| InventoryError::io(&dir, e))? {
                entries.insert(entry.map_err(|e| InventoryError::io(&dir, e))?.file_name());
            }
        }
        Ok(VarsDir { dir, entries })
    }

    /// All variable files for one group or host, later files overriding earlier ones.
    /// `name` must be one path component (names are checked when the inventory is parsed;
    /// this is the last line of defence), so nothing outside the directory is looked at.
    fn load_entity(&self, name: &str, budget: &mut Budget) -> Result<Vars, InventoryError> {
        let mut vars = Vars::new();
        if let Some(why) = name_problem(name) {
            return Err(InventoryError::invalid(
                &self.dir,
                format!("refusing to look up vars for {name:?}: {why}"),
            ));
        }
        for extension in EXTENSIONS {
            let file_name = format!("{name}{extension}");
            if !self
                .entries
                .contains(OsString::from(&file_name).as_os_str())
            {
                continue;
            }
            let candidate = self.dir.join(file_name);
            let files = if candidate.is_dir() {
                let mut files = Vec::new();
                files_in(&candidate, 0, &mut HashSet::new(), &mut files)?;
                files
            } else if candidate.is_file() {
                vec![candidate]
            } else {
                continue;
            };
            for file in files {
                let text = budget.read(&file)?;
                merge(&mut vars, &parse_vars_text(&file, &text)?);
            }
        }
        Ok(vars)
    }
}

/// Variable files under `dir`, sorted, skipping hidden and backup (`~`) files and files with
/// extensions Ansible would not read as variables. At most [`MAX_VARS_DIR_DEPTH`] levels
/// deep, and a directory reached twice (a symlink loop) is an error, not endless work.
fn files_in(
    dir: &Path,
    depth: usize,
    seen: &mut HashSet<PathBuf>,
    files: &mut Vec<PathBuf>,
) -> Result<(), InventoryError> {
    if depth > MAX_VARS_DIR_DEPTH {
        return Err(InventoryError::invalid(
            dir,
            format!("directory is nested more than {MAX_VARS_DIR_DEPTH} levels deep"),
        ));
    }
    let real = dir.canonicalize().map_err(|e| InventoryError::io(dir, e))?;
    if !seen.insert(real) {
        return Err(InventoryError::invalid(
            dir,
            "directory is reached a second time (a symlink loop?)",
        ));
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| InventoryError::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| InventoryError::io(dir, e))?;
    entries.sort();
    for entry in entries {
        let name = entry.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        if entry.is_dir() {
            files_in(&entry, depth + 1, seen, files)?;
            continue;
        }
        let extension = entry
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        if EXTENSIONS.contains(&extension.as_str()) {
            files.push(entry);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::VarsDir;
    use crate::read::Budget;

    #[test]
    fn a_name_that_is_not_one_path_component_is_never_looked_up() {
        let dir = tempfile::tempdir().unwrap();
        let vars = dir.path().join("host_vars");
        std::fs::create_dir_all(&vars).unwrap();
        std::fs::write(dir.path().join("x.yml"), "leaked: true\n").unwrap();
        let vars = VarsDir::open(vars).unwrap();
        for name in ["../x", "/etc/passwd", "..", ".", ""] {
            let err = vars
                .load_entity(name, &mut Budget::new())
                .unwrap_err()
                .to_string();
            assert!(err.contains("refusing to look up"), "{err}");
        }
    }
}
