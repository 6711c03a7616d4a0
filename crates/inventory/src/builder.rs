//! What the INI and YAML parsers fill in; `finish` then applies Ansible's implicit rules
//! (`all` holds every top-level group, `ungrouped` only hosts that have no other group).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;

use serde_json::Value;

use crate::inventory::{Group, Inventory};
use crate::limits::{human_bytes, MAX_GROUPS, MAX_GROUP_MEMBERS, MAX_HOSTS, MAX_HOST_VARS_BYTES};
use crate::names::check_name;
use crate::{InventoryError, Vars};

pub(crate) const ALL: &str = "all";
pub(crate) const UNGROUPED: &str = "ungrouped";

#[derive(Debug, Default)]
pub(crate) struct GroupData {
    pub hosts: Vec<String>,
    /// `hosts` as a set: membership tests stay cheap with thousands of hosts.
    members: HashSet<String>,
    pub children: Vec<String>,
    pub vars: Vars,
}

#[derive(Debug)]
pub(crate) struct InventoryBuilder {
    hosts: Vec<String>,
    host_vars: HashMap<String, Vars>,
    groups: BTreeMap<String, GroupData>,
    /// Every `parent -> child` link in the order it was written, with its line (0: none).
    links: Vec<(String, String, usize)>,
    linked: HashSet<(String, String)>,
    /// What the host variables written in the inventory take, estimated.
    host_var_bytes: u64,
}

impl InventoryBuilder {
    pub fn new() -> Self {
        let mut builder = InventoryBuilder {
            hosts: Vec::new(),
            host_vars: HashMap::new(),
            groups: BTreeMap::new(),
            links: Vec::new(),
            linked: HashSet::new(),
            host_var_bytes: 0,
        };
        builder.groups.insert(ALL.to_string(), GroupData::default());
        builder
            .groups
            .insert(UNGROUPED.to_string(), GroupData::default());
        builder
    }

    /// Refuses a name Ansible would refuse (see [`check_name`]) and more than [`MAX_GROUPS`].
    pub fn add_group(&mut self, name: &str) -> Result<(), String> {
        if !self.groups.contains_key(name) {
            check_name("group", name)?;
            if self.groups.len() >= MAX_GROUPS {
                return Err(format!("the inventory has more than {MAX_GROUPS} groups"));
            }
            self.groups.insert(name.to_string(), GroupData::default());
        }
        Ok(())
    }

    /// Refuses a name Ansible would refuse (see [`check_name`]) and more than [`MAX_HOSTS`].
    pub fn add_host(&mut self, group: &str, host: &str) -> Result<(), String> {
        if !self.host_vars.contains_key(host) {
            check_name("host", host)?;
            if self.hosts.len() >= MAX_HOSTS {
                return Err(format!("the inventory has more than {MAX_HOSTS} hosts"));
            }
            self.hosts.push(host.to_string());
            self.host_vars.insert(host.to_string(), Vars::new());
        }
        let group = self.groups.entry(group.to_string()).or_default();
        if group.members.insert(host.to_string()) {
            group.hosts.push(host.to_string());
        }
        Ok(())
    }

    /// Accounts for `vars` about to be set on `hosts` hosts: every host gets its own copy,
    /// so a large value on a large host range is refused before it is copied.
    pub fn charge_host_vars<'a>(
        &mut self,
        hosts: usize,
        vars: impl IntoIterator<Item = (&'a String, &'a Value)>,
    ) -> Result<(), String> {
        let each: u64 = vars
            .into_iter()
            .map(|(key, value)| key.len() as u64 + approx_size(value))
            .sum();
        self.host_var_bytes = self
            .host_var_bytes
            .saturating_add(each.saturating_mul(hosts as u64));
        if self.host_var_bytes > MAX_HOST_VARS_BYTES {
            return Err(format!(
                "the host variables of this inventory, one copy per host, take more than {}",
                human_bytes(MAX_HOST_VARS_BYTES)
            ));
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

    /// Links `child` under `parent`, written at `line` (0 when unknown). Links that close a
    /// loop of groups are refused by [`finish`](Self::finish), as Ansible does: every walk
    /// over groups relies on there being none.
    pub fn add_child(&mut self, parent: &str, child: &str, line: usize) -> Result<(), String> {
        if child == ALL {
            return Err(format!(
                "group \"all\" cannot be a child of group {parent:?}"
            ));
        }
        if child == parent {
            return Err(loop_message(parent, child));
        }
        self.add_group(child)?;
        let link = (parent.to_string(), child.to_string());
        if self.linked.insert(link.clone()) {
            self.groups
                .entry(link.0.clone())
                .or_default()
                .children
                .push(link.1.clone());
            self.links.push((link.0, link.1, line));
        }
        Ok(())
    }

    /// The first link, in the order they were written, that closes a loop of groups.
    fn first_loop(&self) -> Option<&(String, String, usize)> {
        if !has_loop(&self.links) {
            return None;
        }
        // The shortest prefix of links that holds a loop ends with the culprit.
        let (mut lo, mut hi) = (1, self.links.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if has_loop(&self.links[..mid]) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        self.links.get(hi - 1)
    }

    pub fn finish(mut self, path: &Path) -> Result<Inventory, InventoryError> {
        if let Some((parent, child, line)) = self.first_loop() {
            let message = loop_message(parent, child);
            return Err(match line {
                0 => InventoryError::invalid(path, message),
                line => InventoryError::parse(path, *line, message),
            });
        }
        self.attach_orphans_to_all();
        self.reconcile_ungrouped();
        let parents = self.parents();
        let order = parents_first(&self.groups);
        let depths = depths(&self.groups, &order);
        let groups_var = groups_var(&self.groups, &order, &self.hosts)
            .map_err(|e| InventoryError::invalid(path, e))?;
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
        Ok(Inventory::new(
            path.to_path_buf(),
            self.hosts,
            self.host_vars,
            groups,
            groups_var,
        ))
    }

    fn attach_orphans_to_all(&mut self) {
        let mut has_parent: HashSet<&str> = HashSet::from([ALL]);
        for data in self.groups.values() {
            has_parent.extend(data.children.iter().map(String::as_str));
        }
        let orphans: Vec<String> = self
            .groups
            .keys()
            .filter(|name| !has_parent.contains(name.as_str()))
            .cloned()
            .collect();
        let all = self.groups.entry(ALL.to_string()).or_default();
        // `ungrouped` first, the way Ansible creates it, then the rest by name.
        all.children.retain(|c| c != UNGROUPED);
        all.children.insert(0, UNGROUPED.to_string());
        let mut listed: HashSet<String> = all.children.iter().cloned().collect();
        for orphan in orphans {
            if orphan != UNGROUPED && listed.insert(orphan.clone()) {
                all.children.push(orphan);
            }
        }
    }

    /// `ungrouped` ends up holding exactly the hosts that are in no group but `all`.
    fn reconcile_ungrouped(&mut self) {
        let mut elsewhere = HashSet::new();
        for (name, data) in &self.groups {
            if name != ALL && name != UNGROUPED {
                elsewhere.extend(data.hosts.iter().cloned());
            }
        }
        let all_direct = self.groups[ALL].hosts.clone();
        let ungrouped = self.groups.entry(UNGROUPED.to_string()).or_default();
        ungrouped.hosts.retain(|h| !elsewhere.contains(h));
        let mut listed: HashSet<String> = ungrouped.hosts.iter().cloned().collect();
        for host in all_direct {
            if !elsewhere.contains(&host) && listed.insert(host.clone()) {
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

fn loop_message(parent: &str, child: &str) -> String {
    format!("making {child:?} a child of {parent:?} creates a loop of groups")
}

/// Whether these links hold a loop: Kahn's algorithm leaves some group unsorted.
fn has_loop(links: &[(String, String, usize)]) -> bool {
    let mut incoming: HashMap<&str, usize> = HashMap::new();
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for (parent, child, _) in links {
        incoming.entry(parent).or_default();
        *incoming.entry(child).or_default() += 1;
        children.entry(parent).or_default().push(child);
    }
    let mut ready: VecDeque<&str> = incoming
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(g, _)| *g)
        .collect();
    let mut sorted = 0;
    while let Some(group) = ready.pop_front() {
        sorted += 1;
        for child in children.get(group).into_iter().flatten() {
            let n = incoming.get_mut(child).expect("every child is counted");
            *n -= 1;
            if *n == 0 {
                ready.push_back(child);
            }
        }
    }
    sorted < incoming.len()
}

/// Groups parents first (Kahn's algorithm; the graph has no loops).
fn parents_first(groups: &BTreeMap<String, GroupData>) -> Vec<&str> {
    let mut incoming: HashMap<&str, usize> = groups.keys().map(|g| (g.as_str(), 0)).collect();
    for data in groups.values() {
        for child in &data.children {
            *incoming.entry(child).or_default() += 1;
        }
    }
    let mut ready: VecDeque<&str> = groups
        .keys()
        .map(String::as_str)
        .filter(|g| incoming[g] == 0)
        .collect();
    let mut order = Vec::with_capacity(groups.len());
    while let Some(name) = ready.pop_front() {
        order.push(name);
        for child in groups.get(name).into_iter().flat_map(|d| &d.children) {
            let n = incoming.get_mut(child.as_str()).expect("counted above");
            *n -= 1;
            if *n == 0 {
                ready.push_back(child);
            }
        }
    }
    order
}

/// Depth is the longest path from `all` (Ansible sorts a host's groups by it, so that a
/// child group's vars beat its parent's): one pass, parents first.
fn depths(groups: &BTreeMap<String, GroupData>, order: &[&str]) -> HashMap<String, usize> {
    let mut depth: HashMap<String, usize> = HashMap::from([(ALL.to_string(), 0)]);
    for name in order {
        let Some(d) = depth.get(*name).copied() else {
            continue;
        };
        for child in &groups[*name].children {
            let entry = depth.entry(child.clone()).or_insert(0);
            *entry = (*entry).max(d + 1);
        }
    }
    depth
}

/// Ansible's `groups` magic variable: every group with its hosts, through child groups too,
/// in inventory order. Built children first, once; refused past [`MAX_GROUP_MEMBERS`]
/// entries, since every host gets a copy.
fn groups_var(
    groups: &BTreeMap<String, GroupData>,
    order: &[&str],
    hosts: &[String],
) -> Result<Vars, String> {
    let index: HashMap<&str, usize> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    let mut members: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut total = 0usize;
    for name in order.iter().rev() {
        let data = &groups[*name];
        let mut set: Vec<usize> = data
            .hosts
            .iter()
            .filter_map(|h| index.get(h.as_str()).copied())
            .collect();
        for child in &data.children {
            set.extend(members.get(child.as_str()).into_iter().flatten());
        }
        set.sort_unstable();
        set.dedup();
        total += set.len();
        if total > MAX_GROUP_MEMBERS {
            return Err(format!(
                "the inventory's groups, counting the hosts of child groups, hold more than {MAX_GROUP_MEMBERS} hosts in all"
            ));
        }
        members.insert(name, set);
    }
    Ok(groups
        .keys()
        .map(|g| {
            let names = members[g.as_str()]
                .iter()
                .map(|i| Value::from(hosts[*i].as_str()));
            (g.clone(), Value::Array(names.collect()))
        })
        .collect())
}

/// About what a value takes as JSON text: enough to refuse a copy per host of something big.
fn approx_size(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.len() as u64 + 2,
        Value::Array(items) => items.iter().map(approx_size).sum::<u64>() + 2,
        Value::Object(map) => {
            map.iter()
                .map(|(k, v)| k.len() as u64 + 4 + approx_size(v))
                .sum::<u64>()
                + 2
        }
        _ => 8,
    }
}

/// `ansible_group_priority` breaks ties between groups of equal depth (default 1).
fn group_priority(vars: &Vars) -> i64 {
    match vars.get("ansible_group_priority") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(1),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(1),
        _ => 1,
    }
}
