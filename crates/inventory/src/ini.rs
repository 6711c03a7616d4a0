//! Ansible INI inventories (Kolla's `multinode`/`all-in-one`): `[group]`, `[group:vars]`,
//! `[group:children]`, host lines `name key=value ...`, `#`/`;` comment lines.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::Value;

use crate::builder::{InventoryBuilder, UNGROUPED};
use crate::hostrange::expand_host_pattern;
use crate::pyliteral::ini_value;
use crate::{shellwords, InventoryError};

#[derive(Clone, Copy, PartialEq)]
enum Section {
    Hosts,
    Vars,
    Children,
}

struct IniParser<'a> {
    path: &'a Path,
    builder: InventoryBuilder,
    group: String,
    section: Section,
    /// Groups declared by `[g]` or `[g:children]`; others may not get `:vars` or be children.
    declared: HashSet<String>,
    /// First line of `[g:vars]` per group, checked against `declared` at the end.
    vars_sections: Vec<(String, usize)>,
    /// `(parent, child, line)` for each `[parent:children]` entry.
    child_refs: Vec<(String, String, usize)>,
    /// Where each group var was first set, to reject duplicates.
    var_lines: HashMap<(String, String), usize>,
    line_no: usize,
}

pub(crate) fn parse_ini(path: &Path, text: &str) -> Result<InventoryBuilder, InventoryError> {
    let mut parser = IniParser {
        path,
        builder: InventoryBuilder::new(),
        group: UNGROUPED.to_string(),
        section: Section::Hosts,
        declared: HashSet::from(["all".into(), UNGROUPED.into()]),
        vars_sections: Vec::new(),
        child_refs: Vec::new(),
        var_lines: HashMap::new(),
        line_no: 0,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        parser.line_no = index + 1;
        parser
            .line(line)
            .map_err(|message| InventoryError::parse(path, index + 1, message))?;
    }
    parser.check_references()?;
    Ok(parser.builder)
}

impl IniParser<'_> {
    fn line(&mut self, line: &str) -> Result<(), String> {
        if let Some((group, section)) = section_header(line)? {
            return self.enter_section(group, section);
        }
        match self.section {
            Section::Hosts => self.host_line(line),
            Section::Vars => self.var_line(line),
            Section::Children => self.child_line(line),
        }
    }

    fn enter_section(&mut self, group: &str, section: &str) -> Result<(), String> {
        self.section = match section {
            "" | "hosts" => Section::Hosts,
            "vars" => Section::Vars,
            "children" => Section::Children,
            other => {
                return Err(format!(
                    "section [{group}:{other}] has unknown type {other:?} (expected hosts, vars or children)"
                ))
            }
        };
        self.builder.add_group(group)?;
        self.group = group.to_string();
        if self.section == Section::Vars {
            self.vars_sections.push((group.to_string(), self.line_no));
        } else {
            self.declared.insert(group.to_string());
        }
        Ok(())
    }

    fn host_line(&mut self, line: &str) -> Result<(), String> {
        // Messages name the host and the variable, never the line: it may hold a password.
        let words =
            shellwords::split(line).map_err(|e| format!("host line cannot be split: {e}"))?;
        let Some((pattern, args)) = words.split_first() else {
            return Ok(()); // only a comment after all
        };
        if pattern == "---" {
            return Err("host line \"---\" looks like YAML; is this file YAML?".into());
        }
        let (names, port) = expand_host_pattern(pattern)?;
        let mut vars: Vec<(String, Value)> = Vec::new();
        if let Some(port) = port {
            vars.push(("ansible_port".into(), Value::from(port)));
        }
        let mut seen = HashSet::new();
        for (n, arg) in args.iter().enumerate() {
            let Some((key, value)) = arg.split_once('=') else {
                return Err(format!(
                    "host {pattern:?}: argument {} is not key=value (quote a value that contains blanks)",
                    n + 1
                ));
            };
            if key.is_empty() {
                return Err(format!(
                    "host {pattern:?}: argument {} has an empty variable name",
                    n + 1
                ));
            }
            if !seen.insert(key) {
                return Err(format!("host {pattern:?} sets {key:?} twice"));
            }
            let value = ini_value(value).map_err(|e| format!("host {pattern:?}: {key}: {e}"))?;
            vars.push((key.to_string(), value));
        }
        self.builder
            .charge_host_vars(names.len(), vars.iter().map(|(k, v)| (k, v)))?;
        for name in &names {
            self.builder.add_host(&self.group, name)?;
            for (key, value) in &vars {
                self.builder.set_host_var(name, key, value.clone());
            }
        }
        Ok(())
    }

    fn var_line(&mut self, line: &str) -> Result<(), String> {
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("expected key=value in [{}:vars]", self.group));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("empty variable name in [{}:vars]", self.group));
        }
        let slot = (self.group.clone(), key.to_string());
        if let Some(first) = self.var_lines.get(&slot) {
            return Err(format!(
                "{key:?} is set again for group {:?} (first set on line {first})",
                self.group
            ));
        }
        self.var_lines.insert(slot, self.line_no);
        let value =
            ini_value(value.trim()).map_err(|e| format!("[{}:vars] {key}: {e}", self.group))?;
        self.builder.set_group_var(&self.group, key, value);
        Ok(())
    }

    fn child_line(&mut self, line: &str) -> Result<(), String> {
        let name = line.split('#').next().unwrap_or_default().trim();
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains([':', ']', '[']) {
            return Err(format!(
                "expected a group name in [{}:children], got {line:?}",
                self.group
            ));
        }
        let line_no = self.line_no;
        self.child_refs
            .push((self.group.clone(), name.to_string(), line_no));
        let parent = self.group.clone();
        self.builder.add_child(&parent, name, line_no)
    }

    fn check_references(&self) -> Result<(), InventoryError> {
        let declared = |g: &str| self.declared.contains(g);
        for (group, line) in &self.vars_sections {
            if !declared(group) {
                return Err(InventoryError::parse(
                    self.path,
                    *line,
                    format!(
                        "section [{group}:vars] is for group {group:?}, which is never defined"
                    ),
                ));
            }
        }
        for (parent, child, line) in &self.child_refs {
            if !declared(child) {
                return Err(InventoryError::parse(
                    self.path,
                    *line,
                    format!(
                        "section [{parent}:children] names group {child:?}, which is never defined"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `[name]` or `[name:kind]`, optionally followed by a `#` comment. A line that is not a valid
/// header but looks like one is an error rather than a host.
fn section_header(line: &str) -> Result<Option<(&str, &str)>, String> {
    let Some(rest) = line.strip_prefix('[') else {
        return Ok(None);
    };
    let parsed = rest.split_once(']').and_then(|(inside, after)| {
        let after = after.trim_start();
        if !(after.is_empty() || after.starts_with('#')) {
            return None;
        }
        let (name, kind) = inside.split_once(':').unwrap_or((inside, ""));
        let name_ok = !name.is_empty() && !name.contains(char::is_whitespace);
        let kind_ok = kind.chars().all(|c| c.is_alphanumeric() || c == '_');
        (name_ok && kind_ok && !(inside.contains(':') && kind.is_empty())).then_some((name, kind))
    });
    match parsed {
        Some(header) => Ok(Some(header)),
        None if line.ends_with(']') => Err(format!(
            "invalid section header {line:?} (expected [group], [group:vars] or [group:children], no spaces)"
        )),
        None => Ok(None),
    }
}
