//! The loaded inventory and the questions the other crates ask of it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::builder::ALL;
use crate::{InventoryError, Vars};

#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// Hosts listed in this group itself, not through children.
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub parents: Vec<String>,
    /// Vars written in the inventory file (`[g:vars]`, `vars:`).
    pub inline_vars: Vars,
    /// Vars from `group_vars/<g>` beside the inventory.
    pub file_vars: Vars,
    pub depth: usize,
    pub priority: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Host {
    pub inline_vars: Vars,
    pub file_vars: Vars,
    /// Groups that list this host themselves (not through children).
    pub direct_groups: Vec<String>,
}

/// An Ansible inventory: hosts in the order the file first names them, groups, and variables.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub(crate) path: PathBuf,
    pub(crate) hosts: Vec<String>,
    pub(crate) host_data: HashMap<String, Host>,
    pub(crate) groups: BTreeMap<String, Group>,
    /// Ansible's `groups` magic variable, built once: every host gets a copy.
    pub(crate) groups_var: Vars,
}

impl Inventory {
    pub(crate) fn new(
        path: PathBuf,
        hosts: Vec<String>,
        mut inline_vars: HashMap<String, Vars>,
        groups: BTreeMap<String, Group>,
        groups_var: Vars,
    ) -> Self {
        let mut host_data: HashMap<String, Host> = hosts
            .iter()
            .map(|h| {
                let host = Host {
                    inline_vars: inline_vars.remove(h).unwrap_or_default(),
                    file_vars: Vars::new(),
                    direct_groups: Vec::new(),
                };
                (h.clone(), host)
            })
            .collect();
        for (name, group) in &groups {
            for host in &group.hosts {
                if let Some(data) = host_data.get_mut(host) {
                    data.direct_groups.push(name.clone());
                }
            }
        }
        Inventory {
            path,
            hosts,
            host_data,
            groups,
            groups_var,
        }
    }

    /// The inventory file this was loaded from (error messages name it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every host, in inventory order.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    pub fn has_host(&self, host: &str) -> bool {
        self.host_data.contains_key(host)
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// Every group name, `all` and `ungrouped` included, sorted.
    pub fn group_names(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// Hosts of `group` and of all its descendants, in inventory order.
    pub fn group_hosts(&self, group: &str) -> Result<Vec<String>, InventoryError> {
        let members = self
            .member_set(group)
            .ok_or_else(|| InventoryError::UnknownGroup {
                group: group.to_string(),
                path: self.path.clone(),
            })?;
        Ok(self.in_inventory_order(&members))
    }

    /// The groups `host` belongs to, directly or through child groups, without `all`, sorted:
    /// Ansible's `group_names`.
    pub fn groups_of(&self, host: &str) -> Vec<String> {
        self.host_groups(host)
            .into_iter()
            .filter(|g| *g != ALL)
            .map(str::to_string)
            .collect()
    }

    /// Ansible's `groups` magic variable: every group with its hosts, in inventory order.
    pub fn groups_map(&self) -> BTreeMap<String, Vec<String>> {
        self.groups_var
            .iter()
            .map(|(g, hosts)| {
                let hosts = hosts.as_array().into_iter().flatten();
                (
                    g.clone(),
                    hosts.filter_map(|h| h.as_str().map(String::from)).collect(),
                )
            })
            .collect()
    }

    pub(crate) fn member_set(&self, group: &str) -> Option<HashSet<&str>> {
        self.groups.get(group)?;
        let mut members = HashSet::new();
        let mut seen = HashSet::new();
        let mut stack = vec![group];
        while let Some(name) = stack.pop() {
            if !seen.insert(name) {
                continue;
            }
            if let Some(g) = self.groups.get(name) {
                members.extend(g.hosts.iter().map(String::as_str));
                stack.extend(g.children.iter().map(String::as_str));
            }
        }
        Some(members)
    }

    pub(crate) fn in_inventory_order(&self, members: &HashSet<&str>) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| members.contains(h.as_str()))
            .cloned()
            .collect()
    }

    /// All groups of a host including `all` and ancestors, sorted by name.
    pub(crate) fn host_groups(&self, host: &str) -> Vec<&str> {
        let mut found = HashSet::new();
        let mut stack: Vec<&str> = self
            .host_data
            .get(host)
            .map(|h| h.direct_groups.iter().map(String::as_str).collect())
            .unwrap_or_default();
        while let Some(name) = stack.pop() {
            if found.insert(name) {
                if let Some(g) = self.groups.get(name) {
                    stack.extend(g.parents.iter().map(String::as_str));
                }
            }
        }
        if self.has_host(host) {
            found.insert(ALL);
        }
        let mut groups: Vec<&str> = found.into_iter().collect();
        groups.sort_unstable();
        groups
    }
}
