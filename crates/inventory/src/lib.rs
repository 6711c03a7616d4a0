//! Ansible inventories (INI/YAML), group_vars/host_vars, globals.yml and passwords.yml.
//!
//! Pure: reads files, never touches a host. Every parse error names the file and, where the
//! format allows, the line.

mod boolean;
mod builder;
mod error;
mod hostrange;
mod ini;
mod inventory;
mod limit;
pub mod limits;
mod names;
mod precedence;
mod pyliteral;
mod read;
mod shellwords;
mod ssh_args;
mod vars_dirs;
mod yaml_depth;
mod yaml_inventory;
mod yaml_vars;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use boolean::{parse_bool, truthy};
pub use error::InventoryError;
pub use inventory::Inventory;
pub use read::read_text_file;
pub use ssh_args::{jump_hosts, proxy_command, proxy_jump, JumpHost};
pub use yaml_vars::{load_vars_file, merge, unsafe_text, UNSAFE_KEY};

/// Variables of one host after precedence is applied: plain JSON values (YAML maps to them).
pub type Vars = serde_json::Map<String, serde_json::Value>;

/// Loads an Ansible inventory, INI or YAML (detected), with the `group_vars/` and `host_vars/`
/// directories beside it.
/// Reads within the limits of [`limits`].
pub fn load_inventory(path: &Path) -> Result<Inventory, InventoryError> {
    let mut budget = read::Budget::new();
    let text = budget.read(path)?;
    let builder = if looks_like_yaml(path, &text) {
        yaml_inventory::parse_yaml(path, &text)?
    } else {
        ini::parse_ini(path, &text)?
    };
    let mut inventory = builder.finish(path)?;
    vars_dirs::attach_vars_files(&mut inventory, &mut budget)?;
    Ok(inventory)
}

/// By extension when there is one; otherwise by the first meaningful line: YAML inventories
/// start with `---`, `{`, or a `group:` key, INI ones with `[section]` or a host line.
fn looks_like_yaml(path: &Path, text: &str) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yml" | "yaml" | "json") => return true,
        Some("ini") => return false,
        _ => {}
    }
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
    match first {
        None => false,
        Some(line) => {
            let line = line.split(" #").next().unwrap_or(line).trim_end();
            line.starts_with("---") || line.starts_with('{') || line.ends_with(':')
        }
    }
}
