//! Renders variables whose values are templates (`migration_hostname: "{{ inventory_hostname }}"`)
//! against the other variables, in dependency order.
//!
//! Like Ansible, a variable that cannot be rendered (undefined reference, cycle) is only an
//! error if something uses it: Kolla's globals.yml often refers to variables that live in
//! Kolla's own group_vars, which a libvirt-only run never needs.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::value::Value;
use minijinja::Environment;
use serde_json::Value as Json;
use virtfleet_inventory::Vars;

use crate::render::{describe, is_templated};

/// Variables after rendering, and the ones that could not be rendered with the reason.
pub(crate) struct Resolved {
    pub vars: Vars,
    pub unresolved: BTreeMap<String, String>,
}

pub(crate) fn resolve(env: &Environment<'static>, raw: Vars) -> Resolved {
    let mut vars = Vars::new();
    let mut pending: BTreeMap<String, (Json, BTreeSet<String>)> = BTreeMap::new();
    let mut unresolved = BTreeMap::new();
    for (name, value) in raw {
        if !contains_template(&value) {
            vars.insert(name, value);
            continue;
        }
        match references(env, &value) {
            Ok(deps) => {
                pending.insert(name, (value, deps));
            }
            Err(message) => {
                unresolved.insert(name, message);
            }
        }
    }

    // Each pass renders the variables whose references are all settled; a pass that settles
    // nothing leaves only cycles and what hangs off them.
    while !pending.is_empty() {
        let context = Value::from(minijinja::value::Serde(&vars));
        let ready: Vec<String> = pending
            .iter()
            .filter(|(name, (_, deps))| {
                deps.iter()
                    .all(|d| d != *name && !pending.contains_key(d) && !unresolved.contains_key(d))
                    || deps.iter().any(|d| unresolved.contains_key(d))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if ready.is_empty() {
            break;
        }
        for name in ready {
            let (value, deps) = pending.remove(&name).expect("listed above");
            if let Some(dep) = deps.iter().find(|d| unresolved.contains_key(*d)) {
                let reason = format!("uses {dep}, which could not be rendered");
                unresolved.insert(name, reason);
                continue;
            }
            match render_value(env, &value, &context, &deps) {
                Ok(rendered) => {
                    vars.insert(name, rendered);
                }
                Err(message) => {
                    unresolved.insert(name, message);
                }
            }
        }
    }
    let deps: BTreeMap<String, BTreeSet<String>> = pending
        .iter()
        .map(|(name, (_, deps))| (name.clone(), deps.clone()))
        .collect();
    for name in deps.keys() {
        let message = match find_cycle(&deps, name) {
            Some(cycle) => format!("refers to itself: {}", cycle.join(" -> ")),
            None => "depends on a variable that refers to itself".to_string(),
        };
        unresolved.insert(name.clone(), message);
    }
    Resolved { vars, unresolved }
}

fn contains_template(value: &Json) -> bool {
    match value {
        Json::String(s) => is_templated(s),
        Json::Array(items) => items.iter().any(contains_template),
        Json::Object(map) => map.values().any(contains_template),
        _ => false,
    }
}

/// Names of the variables the templated strings inside `value` read.
fn references(env: &Environment<'static>, value: &Json) -> Result<BTreeSet<String>, String> {
    let mut names = BTreeSet::new();
    let mut strings = Vec::new();
    collect_strings(value, &mut strings);
    for text in strings {
        let found = match single_expression(text) {
            Some(expr) => env
                .compile_expression(expr)
                .map(|e| e.undeclared_variables(false)),
            None => env
                .template_from_str(text)
                .map(|t| t.undeclared_variables(false)),
        };
        names.extend(found.map_err(|e| format!("invalid template {text:?}: {e}"))?);
    }
    Ok(names)
}

fn collect_strings<'a>(value: &'a Json, out: &mut Vec<&'a str>) {
    match value {
        Json::String(s) if is_templated(s) => out.push(s),
        Json::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Json::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// `"{{ expr }}"` and nothing else: evaluated to a native value (so `"{{ 16514 if tls else
/// 16509 }}"` is a number and `"{{ ['SCRAM-SHA-256'] }}"` a list), instead of text.
fn single_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

fn render_value(
    env: &Environment<'static>,
    value: &Json,
    context: &Value,
    deps: &BTreeSet<String>,
) -> Result<Json, String> {
    match value {
        Json::String(text) if is_templated(text) => render_string(env, text, context, deps),
        Json::Array(items) => items
            .iter()
            .map(|v| render_value(env, v, context, deps))
            .collect::<Result<Vec<_>, _>>()
            .map(Json::Array),
        Json::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), render_value(env, v, context, deps)?)))
            .collect::<Result<Vars, String>>()
            .map(Json::Object),
        other => Ok(other.clone()),
    }
}

fn render_string(
    env: &Environment<'static>,
    text: &str,
    context: &Value,
    deps: &BTreeSet<String>,
) -> Result<Json, String> {
    let result = match single_expression(text) {
        Some(expr) => env
            .compile_expression(expr)
            .and_then(|e| e.eval(context.clone()))
            .and_then(|v| {
                // Expressions yield undefined instead of failing; treat it like printing it.
                if v.is_undefined() {
                    return Err(minijinja::Error::new(
                        minijinja::ErrorKind::UndefinedError,
                        "the expression is undefined",
                    ));
                }
                serde_json::to_value(&v).map_err(|e| {
                    minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string())
                })
            }),
        None => env.render_str(text, context.clone()).map(Json::String),
    };
    result.map_err(|e| format!("cannot render {text:?}: {}", describe(&e, deps, context)))
}

/// A path from `start` back to itself, if there is one.
fn find_cycle(deps: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        deps: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        node: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in deps.get(node).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if deps.contains_key(next) && seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(deps, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(deps, start, start, &mut path, &mut seen).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::environment;
    use serde_json::json;

    fn resolve_json(value: Json) -> Resolved {
        let Json::Object(map) = value else { panic!() };
        resolve(&environment(Vec::new()), map)
    }

    #[test]
    fn chains_resolve_in_dependency_order() {
        let r = resolve_json(json!({
            "c": "{{ b }}-c",
            "b": "{{ a }}-b",
            "a": "a",
        }));
        assert!(r.unresolved.is_empty(), "{:?}", r.unresolved);
        assert_eq!(r.vars["c"], json!("a-b-c"));
    }

    #[test]
    fn single_expressions_keep_native_types() {
        let r = resolve_json(json!({
            "tls": "yes",
            "port": "{{ 16514 if tls | bool else 16509 }}",
            "mechs": "{{ ['SCRAM-SHA-256'] if tls | bool else ['DIGEST-MD5'] }}",
            "text": "port {{ port }}",
            "nested": {"list": ["{{ port }}"]},
        }));
        assert!(r.unresolved.is_empty(), "{:?}", r.unresolved);
        assert_eq!(r.vars["port"], json!(16514));
        assert_eq!(r.vars["mechs"], json!(["SCRAM-SHA-256"]));
        assert_eq!(r.vars["text"], json!("port 16514"));
        assert_eq!(r.vars["nested"], json!({"list": [16514]}));
    }

    #[test]
    fn cycles_and_undefined_are_reported_per_variable() {
        let r = resolve_json(json!({
            "a": "{{ b }}",
            "b": "{{ a }}",
            "c": "{{ a }}",
            "d": "{{ nowhere }}",
            "e": "{{ d }}",
            "ok": "fine",
        }));
        assert!(
            r.unresolved["a"].contains("a -> b -> a"),
            "{:?}",
            r.unresolved
        );
        assert!(r.unresolved["b"].contains("b -> a -> b"));
        assert!(r.unresolved["c"].contains("refers to itself"));
        assert!(r.unresolved["d"].contains("nowhere"), "{:?}", r.unresolved);
        assert!(r.unresolved["e"].contains("uses d"));
        assert_eq!(r.vars["ok"], json!("fine"));
        assert!(!r.vars.contains_key("a"));
    }

    #[test]
    fn self_reference_is_a_cycle() {
        let r = resolve_json(json!({"a": "{{ a }}"}));
        assert!(r.unresolved["a"].contains("a -> a"), "{:?}", r.unresolved);
    }
}
