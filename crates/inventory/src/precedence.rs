//! Ansible's inventory variable precedence (lowest first), as documented and as Ansible's
//! default `VARIABLE_PRECEDENCE` applies it:
//!
//! 1. group vars written in the inventory file, for `all` then the host's other groups;
//! 2. `group_vars/` files, for `all` then the other groups;
//! 3. host vars written in the inventory file;
//! 4. `host_vars/` files.
//!
//! Within 1 and 2 groups are ordered by depth (parents before children), then
//! `ansible_group_priority`, then name. Extra vars (globals.yml, passwords.yml) go on top,
//! through [`merge`](crate::merge), which is the caller's step.

use serde_json::Value;

use crate::inventory::{Group, Inventory};
use crate::{merge, Vars};

impl Inventory {
    /// The variables Ansible would give `host` from the inventory, plus the magic variables
    /// `inventory_hostname`, `inventory_hostname_short`, `group_names`, `groups`,
    /// `inventory_file` and `inventory_dir`. An unknown host gets `all`'s variables.
    pub fn host_vars(&self, host: &str) -> Vars {
        let groups = self.groups_by_precedence(host);
        let mut vars = Vars::new();
        for group in &groups {
            merge(&mut vars, &group.inline_vars);
        }
        for group in &groups {
            merge(&mut vars, &group.file_vars);
        }
        if let Some(data) = self.host_data.get(host) {
            merge(&mut vars, &data.inline_vars);
            merge(&mut vars, &data.file_vars);
        }
        self.add_magic_vars(host, &mut vars);
        vars
    }

    fn groups_by_precedence(&self, host: &str) -> Vec<&Group> {
        let mut names = self.host_groups(host);
        if names.is_empty() {
            names.push(crate::builder::ALL);
        }
        let mut groups: Vec<(&str, &Group)> = names
            .into_iter()
            .filter_map(|n| self.groups.get(n).map(|g| (n, g)))
            .collect();
        groups
            .sort_by(|(an, a), (bn, b)| (a.depth, a.priority, an).cmp(&(b.depth, b.priority, bn)));
        groups.into_iter().map(|(_, g)| g).collect()
    }

    fn add_magic_vars(&self, host: &str, vars: &mut Vars) {
        let short = host.split('.').next().unwrap_or(host);
        let group_names: Vec<Value> = self.groups_of(host).into_iter().map(Value::from).collect();

        let dir = self.path.parent().unwrap_or(&self.path);
        vars.insert("inventory_hostname".into(), host.into());
        vars.insert("inventory_hostname_short".into(), short.into());
        vars.insert("group_names".into(), Value::Array(group_names));
        vars.insert("groups".into(), Value::Object(self.groups_var.clone()));
        vars.insert(
            "inventory_file".into(),
            self.path.display().to_string().into(),
        );
        vars.insert("inventory_dir".into(), dir.display().to_string().into());
    }
}
