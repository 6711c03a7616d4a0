//! What the INI and YAML parsers fill in; `finish` then applies Ansible's implicit rules
//! (`all` holds every top-level group, `ungrouped` only hosts that have no other group).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

use crate::inventory::{Group, Inventory};
use crate::names::check_name;
use crate::Vars;

pub(crate) const ALL: &str = "all";
pub(crate) const UNGROUPED: &str = "ungrouped";

#[derive(Debug, Default)]
pub(crate) struct GroupData {
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub vars: Vars,
}

#[derive(Debug)]
pub(crate) struct InventoryBuilder {
    hosts: Vec<String>,
    host_vars: HashMap<String, Vars>,
    groups: BTreeMap<String, GroupData>,
}

impl InventoryBuilder {
    pub fn new() -> Self {
        let mut builder = InventoryBuilder {
            hosts: Vec::new(),
            host_vars: HashMap::new(),
            groups: BTreeMap::new(),
        };
        builder.groups.insert(ALL.to_string(), GroupData::default());
        builder
            .groups
            .insert(UNGROUPED.to_string(), GroupData::default());
        builder
    }

    /// Refuses a name Ansible would refuse (see [`check_name`]).
    pub fn add_group(&mut self, name: &str) -> Result<(), String> {
        if !self.groups.contains_key(name) {
            check_name("group", name)?;
            self.groups.insert(name.to_string(), GroupData::default());
        }
        Ok(())
    }

    /// Refuses a name Ansible would refuse (see [`check_name`]).
    pub fn add_host(&mut self, group: &str, host: &str) -> Result<(), String> {
        if !self.host_vars.contains_key(host) {
            check_name("host", host)?;
            self.hosts.push(host.to_string());
            self.host_vars.insert(host.to_string(), Vars::new());
        }
        let members = &mut self.groups.entry(group.to_string()).or_default().hosts;
        if !members.iter().any(|h| h == host) {
            members.push(host.to_string());
        }
        Ok(())
    }

    /// Later definitions win, as when Ansible meets the same host on several lines.
    pub fn set_host_var(&mut self, host: &str, key: &str, value: Value) {
        let vars = self.host_vars.entry(host.to_string()).or_default();
        vars.insert(key.to_string(), value);
    }

    pub fn set_group_var(&mut self, group: &str, key: &str, value: Value) {
        let group = self.groups.entry(group.to_string()).or_default();
        group.vars.insert(key.to_string(), value);
    }

    /// Refuses edges that would make the group graph cyclic: Ansible does too, and every
    /// recursive walk over groups relies on it.
    pub fn add_child(&mut self, parent: &str, child: &str) -> Result<(), String> {
        if child == ALL {
            return Err(format!(
                "group \"all\" cannot be a child of group {parent:?}"
            ));
        }
        if child == parent || self.reaches(child, parent) {
            return Err(format!(
                "making {child:?} a child of {parent:?} creates a loop of groups"
            ));
        }
        self.add_group(child)?;
        let children = &mut self.groups.entry(parent.to_string()).or_default().children;
        if !children.iter().any(|c| c == child) {
            children.push(child.to_string());
        }
        Ok(())
    }

    fn reaches(&self, from: &str, to: &str) -> bool {
        let mut stack = vec![from];
        let mut seen = std::collections::HashSet::new();
        while let Some(group) = stack.pop() {
            if group == to {
                return true;
            }
            if seen.insert(group) {
                if let Some(data) = self.groups.get(group) {
                    stack.extend(data.children.iter().map(String::as_str));
                }
            }
        }
        false
    }

    pub fn finish(mut self, path: &Path) -> Inventory {
        self.attach_orphans_to_all();
        self.reconcile_ungrouped();
        let parents = self.parents();
        let depths = depths(&self.groups);
        let groups = self
            .groups
            .into_iter()
            .map(|(name, data)| {
                let group = Group {
                    priority: group_priority(&data.vars),
                    depth: depths.get(&name).copied().unwrap_or(1),
                    parents: parents.get(&name).cloned().unwrap_or_default(),
                    hosts: data.hosts,
                    children: data.children,
                    inline_vars: data.vars,
                    file_vars: Vars::new(),
                };
                (name, group)
            })
            .collect();
        Inventory::new(path.to_path_buf(), self.hosts, self.host_vars, groups)
    }

    fn attach_orphans_to_all(&mut self) {
        let mut has_parent: Vec<&str> = vec![ALL];
        for data in self.groups.values() {
            has_parent.extend(data.children.iter().map(String::as_str));
        }
        let orphans: Vec<String> = self
            .groups
            .keys()
            .filter(|name| !has_parent.contains(&name.as_str()))
            .cloned()
            .collect();
        let all = self.groups.entry(ALL.to_string()).or_default();
        // `ungrouped` first, the way Ansible creates it, then the rest by name.
        all.children.retain(|c| c != UNGROUPED);
        all.children.insert(0, UNGROUPED.to_string());
        for orphan in orphans {
            if orphan != UNGROUPED && !all.children.contains(&orphan) {
                all.children.push(orphan);
            }
        }
    }

    /// `ungrouped` ends up holding exactly the hosts that are in no group but `all`.
    fn reconcile_ungrouped(&mut self) {
        let mut elsewhere = std::collections::HashSet::new();
        for (name, data) in &self.groups {
            if name != ALL && name != UNGROUPED {
                elsewhere.extend(data.hosts.iter().cloned());
            }
        }
        let all_direct = self.groups[ALL].hosts.clone();
        let ungrouped = self.groups.entry(UNGROUPED.to_string()).or_default();
        ungrouped.hosts.retain(|h| !elsewhere.contains(h));
        for host in all_direct {
            if !elsewhere.contains(&host) && !ungrouped.hosts.contains(&host) {
                ungrouped.hosts.push(host);
            }
        }
        // Hosts reach `all` through its children; keeping them listed twice would only confuse.
        if let Some(all) = self.groups.get_mut(ALL) {
            all.hosts.clear();
        }
        let ungrouped = &mut self
            .groups
            .get_mut(UNGROUPED)
            .expect("created in new")
            .hosts;
        let order: HashMap<&String, usize> =
            self.hosts.iter().enumerate().map(|(i, h)| (h, i)).collect();
        ungrouped.sort_by_key(|h| order.get(h).copied().unwrap_or(usize::MAX));
    }

    fn parents(&self) -> HashMap<String, Vec<String>> {
        let mut parents: HashMap<String, Vec<String>> = HashMap::new();
        for (name, data) in &self.groups {
            for child in &data.children {
                parents.entry(child.clone()).or_default().push(name.clone());
            }
        }
        parents
    }
}

/// Depth is the longest path from `all` (Ansible sorts a host's groups by it, so that a
/// child group's vars beat its parent's).
fn depths(groups: &BTreeMap<String, GroupData>) -> HashMap<String, usize> {
    let mut depth: HashMap<String, usize> = HashMap::from([(ALL.to_string(), 0)]);
    // The graph is acyclic, so relaxing edges at most |groups| times settles every depth.
    for _ in 0..groups.len() {
        let mut changed = false;
        for (name, data) in groups {
            let Some(&d) = depth.get(name) else { continue };
            for child in &data.children {
                let entry = depth.entry(child.clone()).or_insert(0);
                if *entry < d + 1 {
                    *entry = d + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

/// `ansible_group_priority` breaks ties between groups of equal depth (default 1).
fn group_priority(vars: &Vars) -> i64 {
    match vars.get("ansible_group_priority") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(1),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(1),
        _ => 1,
    }
}
