//! Ansible host patterns, as used by `--limit`: `a,b` or `a:b` (union), `&a` (intersection),
//! `!a` (exclusion); each item a host, a group, a glob (`compute0*`), optionally with a
//! subscript (`compute[0]`, `compute[1:2]`, inclusive). Unlike Ansible, an item that matches
//! nothing is an error: a typo in `--limit` should not silently shrink a rollout.

use std::collections::HashSet;
use std::net::Ipv6Addr;

use crate::inventory::Inventory;
use crate::InventoryError;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Union,
    Intersect,
    Exclude,
}

impl Inventory {
    /// The hosts of `hosts` that `pattern` selects, in inventory order.
    pub fn select(&self, hosts: &[String], pattern: &str) -> Result<Vec<String>, InventoryError> {
        let mut items: Vec<(Op, &str)> = split_pattern(pattern)
            .into_iter()
            .map(|item| match item.as_bytes()[0] {
                b'&' => (Op::Intersect, item[1..].trim()),
                b'!' => (Op::Exclude, item[1..].trim()),
                _ => (Op::Union, item),
            })
            .collect();
        if items.is_empty() {
            return Err(bad(pattern, "the pattern is empty"));
        }
        // Ansible applies unions first, then intersections, then exclusions.
        items.sort_by_key(|(op, _)| *op);
        let mut selected: HashSet<&str> = if items[0].0 == Op::Union {
            HashSet::new()
        } else {
            self.hosts.iter().map(String::as_str).collect()
        };
        for (op, item) in items {
            if item.is_empty() {
                return Err(bad(pattern, "'&' or '!' without a name"));
            }
            let matched = self.resolve_item(item)?;
            match op {
                Op::Union => selected.extend(matched),
                Op::Intersect => selected.retain(|h| matched.contains(h)),
                Op::Exclude => selected.retain(|h| !matched.contains(h)),
            }
        }
        let wanted: HashSet<&str> = hosts.iter().map(String::as_str).collect();
        Ok(self
            .hosts
            .iter()
            .filter(|h| selected.contains(h.as_str()) && wanted.contains(h.as_str()))
            .cloned()
            .collect())
    }

    fn resolve_item<'a>(&'a self, item: &str) -> Result<HashSet<&'a str>, InventoryError> {
        let (base, subscript) = split_subscript(item);
        let mut matched = self.match_name(base)?;
        if let Some(subscript) = subscript {
            let ordered: Vec<&str> = self
                .hosts
                .iter()
                .map(String::as_str)
                .filter(|h| matched.contains(h))
                .collect();
            matched = subscript.apply(&ordered).into_iter().collect();
        }
        if matched.is_empty() {
            return Err(InventoryError::NoMatch {
                item: item.to_string(),
                path: self.path.clone(),
            });
        }
        Ok(matched)
    }

    fn match_name<'a>(&'a self, name: &str) -> Result<HashSet<&'a str>, InventoryError> {
        if name.starts_with('~') {
            return Err(bad(
                name,
                "regular-expression patterns (~) are not supported",
            ));
        }
        let mut matched = HashSet::new();
        if name.contains(['*', '?', '[']) {
            let glob = glob::Pattern::new(name).map_err(|e| bad(name, &e.to_string()))?;
            for group in self.groups.keys().filter(|g| glob.matches(g)) {
                matched.extend(self.member_set(group).unwrap_or_default());
            }
            matched.extend(
                self.hosts
                    .iter()
                    .map(String::as_str)
                    .filter(|h| glob.matches(h)),
            );
        } else {
            matched.extend(self.member_set(name).unwrap_or_default());
            if let Some((host, _)) = self.host_data.get_key_value(name) {
                matched.insert(host.as_str());
            }
        }
        Ok(matched)
    }
}

fn bad(pattern: &str, message: &str) -> InventoryError {
    InventoryError::BadPattern {
        pattern: pattern.to_string(),
        message: message.to_string(),
    }
}

/// Commas separate items; without commas colons do, except inside `[...]` and in a bare
/// IPv6 address.
fn split_pattern(pattern: &str) -> Vec<&str> {
    let parts: Vec<&str> = if pattern.contains(',') {
        pattern.split(',').collect()
    } else if pattern.trim().parse::<Ipv6Addr>().is_ok() {
        vec![pattern]
    } else {
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0usize, 0);
        for (i, c) in pattern.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                ':' if depth == 0 => {
                    parts.push(&pattern[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&pattern[start..]);
        parts
    };
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

enum Subscript {
    Index(i64),
    /// Inclusive; `None` runs to the last host.
    Range(usize, Option<usize>),
}

impl Subscript {
    fn apply<'a>(&self, hosts: &[&'a str]) -> Vec<&'a str> {
        let len = hosts.len() as i64;
        match *self {
            Subscript::Index(i) => {
                let at = if i < 0 { len + i } else { i };
                if (0..len).contains(&at) {
                    vec![hosts[at as usize]]
                } else {
                    Vec::new()
                }
            }
            Subscript::Range(start, end) => {
                let end = end.map_or(hosts.len(), |e| (e + 1).min(hosts.len()));
                hosts.get(start..end).map(<[_]>::to_vec).unwrap_or_default()
            }
        }
    }
}

/// `name[3]`, `name[-1]`, `name[1:2]`, `name[2:]`. Anything else in brackets (like `[1-3]`)
/// stays part of a glob.
fn split_subscript(item: &str) -> (&str, Option<Subscript>) {
    let Some(body) = item.strip_suffix(']') else {
        return (item, None);
    };
    let Some(open) = body.rfind('[') else {
        return (item, None);
    };
    let (base, inside) = (&body[..open], &body[open + 1..]);
    if base.is_empty() {
        return (item, None);
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let subscript = match inside.split_once(':') {
        None if digits(inside.strip_prefix('-').unwrap_or(inside)) => {
            inside.parse().ok().map(Subscript::Index)
        }
        Some((start, end)) if digits(start) && (end.is_empty() || digits(end)) => {
            let end = if end.is_empty() {
                None
            } else {
                end.parse().ok()
            };
            start.parse().ok().map(|s| Subscript::Range(s, end))
        }
        _ => None,
    };
    match subscript {
        Some(s) => (base, Some(s)),
        None => (item, None),
    }
}
