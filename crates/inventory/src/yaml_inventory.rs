//! Ansible YAML inventories: top-level groups (usually just `all`), each with optional
//! `hosts`, `vars` and `children`. Deserialized through typed structs so that shape errors
//! (a typo like `host:`, a list where a map belongs, a duplicate host) carry a line.

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_yaml_ng::Mapping;

use crate::builder::InventoryBuilder;
use crate::hostrange::expand_host_pattern;
use crate::names::check_name;
use crate::yaml_vars::{mapping_to_vars, precheck_yaml, yaml_error};
use crate::InventoryError;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a group: a mapping with hosts, vars or children"
)]
struct GroupNode {
    #[serde(default)]
    hosts: Entries<Option<Mapping>>,
    #[serde(default)]
    vars: Option<Mapping>,
    #[serde(default)]
    children: Entries<Option<GroupNode>>,
}

/// A YAML mapping kept in document order that rejects duplicate keys. Like Ansible, it also
/// accepts null (nothing) and a bare string (one entry with no value).
#[derive(Debug)]
struct Entries<V>(Vec<(String, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: Deserialize<'de> + Default + Entry> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EntriesVisitor {
            bare_name_ok: true,
            values: PhantomData,
        })
    }
}

/// What the names of a mapping's entries are, so a bad one is refused while parsing, where
/// the error still gets a line.
trait Entry {
    fn check_name(name: &str) -> Result<(), String>;
}

/// `hosts:` entries are host patterns (`compute[01:03]`): every name they expand to counts.
impl Entry for Option<Mapping> {
    fn check_name(pattern: &str) -> Result<(), String> {
        let (names, _) = expand_host_pattern(pattern)?;
        names.iter().try_for_each(|n| check_name("host", n))
    }
}

impl Entry for Option<GroupNode> {
    fn check_name(name: &str) -> Result<(), String> {
        check_name("group", name)
    }
}

/// The top level must be a real mapping of group names: a bare string there means the file
/// is not an inventory at all.
#[derive(Debug, Default)]
struct TopLevel(Entries<Option<GroupNode>>);

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let visitor = EntriesVisitor {
            bare_name_ok: false,
            values: PhantomData,
        };
        deserializer.deserialize_any(visitor).map(TopLevel)
    }
}

struct EntriesVisitor<V> {
    bare_name_ok: bool,
    values: PhantomData<V>,
}

impl<'de, V: Deserialize<'de> + Default + Entry> Visitor<'de> for EntriesVisitor<V> {
    type Value = Entries<V>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of names")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Entries::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Entries::default())
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        if !self.bare_name_ok {
            return Err(de::Error::invalid_type(de::Unexpected::Str(name), &self));
        }
        V::check_name(name).map_err(de::Error::custom)?;
        Ok(Entries(vec![(name.to_string(), V::default())]))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries: Vec<(String, V)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format_args!("duplicate entry {key:?}")));
            }
            V::check_name(&key).map_err(de::Error::custom)?;
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Entries(entries))
    }
}

pub(crate) fn parse_yaml(path: &Path, text: &str) -> Result<InventoryBuilder, InventoryError> {
    precheck_yaml(path, text)?;
    let top: Option<TopLevel> = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(path, e))?;
    let mut builder = InventoryBuilder::new();
    for (group, node) in top.unwrap_or_default().0 .0 {
        builder
            .add_group(&group)
            .map_err(|e| InventoryError::invalid(path, e))?;
        add_group(&mut builder, path, &group, node.unwrap_or_default())?;
    }
    Ok(builder)
}

fn add_group(
    builder: &mut InventoryBuilder,
    path: &Path,
    group: &str,
    node: GroupNode,
) -> Result<(), InventoryError> {
    if let Some(vars) = node.vars {
        let vars = mapping_to_vars(path, vars, &format!("group {group:?}"))?;
        for (key, value) in vars {
            builder.set_group_var(group, &key, value);
        }
    }
    for (pattern, vars) in node.hosts.0 {
        let (names, port) = expand_host_pattern(&pattern)
            .map_err(|e| InventoryError::invalid(path, format!("group {group:?}: {e}")))?;
        let vars = match vars {
            Some(vars) => mapping_to_vars(path, vars, &format!("host {pattern:?}"))?,
            None => Default::default(),
        };
        builder
            .charge_host_vars(names.len(), &vars)
            .map_err(|e| InventoryError::invalid(path, e))?;
        for name in &names {
            builder
                .add_host(group, name)
                .map_err(|e| InventoryError::invalid(path, e))?;
            if let Some(port) = port {
                builder.set_host_var(name, "ansible_port", Value::from(port));
            }
            for (key, value) in &vars {
                builder.set_host_var(name, key, value.clone());
            }
        }
    }
    for (child, child_node) in node.children.0 {
        builder
            .add_child(group, &child, 0)
            .map_err(|e| InventoryError::invalid(path, e))?;
        add_group(builder, path, &child, child_node.unwrap_or_default())?;
    }
    Ok(())
}
