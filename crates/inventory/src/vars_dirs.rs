//! `group_vars/` and `host_vars/` beside the inventory file, found the way Ansible's
//! `host_group_vars` plugin finds them: `<name>`, `<name>.yml`, `<name>.yaml`, `<name>.json`,
//! each either a file or a directory of such files (read recursively, in name order).

use std::path::{Path, PathBuf};

use crate::inventory::Inventory;
use crate::names::name_problem;
use crate::yaml_vars::{merge, parse_vars_text};
use crate::{InventoryError, Vars};

const EXTENSIONS: [&str; 4] = ["", ".yml", ".yaml", ".json"];

pub(crate) fn attach_vars_files(inventory: &mut Inventory) -> Result<(), InventoryError> {
    let base = inventory
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let group_dir = base.join("group_vars");
    for (name, group) in inventory.groups.iter_mut() {
        group.file_vars = load_entity(&group_dir, name)?;
    }
    let host_dir = base.join("host_vars");
    for (name, host) in inventory.host_data.iter_mut() {
        host.file_vars = load_entity(&host_dir, name)?;
    }
    Ok(())
}

/// All variable files for one group or host, later files overriding earlier ones. `name`
/// must be one path component (names are checked when the inventory is parsed; this is the
/// last line of defence), so nothing outside `dir` is ever looked at.
fn load_entity(dir: &Path, name: &str) -> Result<Vars, InventoryError> {
    let mut vars = Vars::new();
    if let Some(why) = name_problem(name) {
        return Err(InventoryError::invalid(
            dir,
            format!("refusing to look up vars for {name:?}: {why}"),
        ));
    }
    if !dir.is_dir() {
        return Ok(vars);
    }
    for extension in EXTENSIONS {
        let candidate = dir.join(format!("{name}{extension}"));
        let files = if candidate.is_dir() {
            files_in(&candidate)?
        } else if candidate.is_file() {
            vec![candidate]
        } else {
            continue;
        };
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| InventoryError::io(&file, e))?;
            merge(&mut vars, &parse_vars_text(&file, &text)?);
        }
    }
    Ok(vars)
}

/// Variable files under `dir`, sorted, skipping hidden and backup (`~`) files and files with
/// extensions Ansible would not read as variables.
fn files_in(dir: &Path) -> Result<Vec<PathBuf>, InventoryError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| InventoryError::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| InventoryError::io(dir, e))?;
    entries.sort();
    let mut files = Vec::new();
    for entry in entries {
        let name = entry.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        if entry.is_dir() {
            files.extend(files_in(&entry)?);
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
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::load_entity;

    #[test]
    fn a_name_that_is_not_one_path_component_is_never_looked_up() {
        let dir = tempfile::tempdir().unwrap();
        let vars = dir.path().join("host_vars");
        std::fs::create_dir_all(&vars).unwrap();
        std::fs::write(dir.path().join("x.yml"), "leaked: true\n").unwrap();
        for name in ["../x", "/etc/passwd", "..", ".", ""] {
            let err = load_entity(&vars, name).unwrap_err().to_string();
            assert!(err.contains("refusing to look up"), "{err}");
        }
    }
}
