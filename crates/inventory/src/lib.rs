//! Ansible inventories (INI/YAML), group_vars/host_vars, globals.yml and passwords.yml.

/// Variables of one host after precedence is applied: plain JSON values (YAML maps to them).
pub type Vars = serde_json::Map<String, serde_json::Value>;
