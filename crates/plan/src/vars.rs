//! Renders variables whose values are templates (`migration_hostname: "{{ inventory_hostname }}"`)
//! against the other variables, in dependency order.
//!
//! Like Ansible, a variable that cannot be rendered (undefined reference, cycle) is only an
//! error if something uses it: Kolla's globals.yml often refers to variables that live in
//! Kolla's own group_vars, which a libvirt-only run never needs.
//!
//! Values loaded from Ansible's `!unsafe` tag are never templated. An error names the
//! variable (and its file when known) and what is wrong, never its value; for a secret one
//! (by its name, or from passwords.yml) not even what the template says. The work is
//! linear in the number of variables and references, and each render is bounded by
//! minijinja's fuel (see [`crate::render`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use minijinja::value::Value;
use minijinja::ErrorKind;
use serde_json::Value as Json;
use virtfleet_inventory::{unsafe_text, Vars};

use crate::render::{cached_expression, describe, is_templated, with_string_template};

/// Variables after rendering, and the ones that could not be rendered with the reason.
pub(crate) struct Resolved {
    pub vars: Vars,
    pub unresolved: BTreeMap<String, String>,
    /// Unresolved variables that read the host's facts ([`FACTS`]) when none were given,
    /// directly or through another: gathering facts would settle them.
    pub needs_facts: BTreeSet<String>,
}

/// The variable holding a host's facts, as Ansible names it.
pub const FACTS: &str = "ansible_facts";

/// What is known about variables beyond their values, for error messages.
#[derive(Default)]
pub(crate) struct Provenance {
    /// The file each variable was set in, when known: its errors name it.
    pub files: BTreeMap<String, PathBuf>,
    /// Variables whose values are secret whatever their names (those of passwords.yml).
    pub secret: BTreeSet<String>,
}

impl Provenance {
    /// ` (set in FILE)` when the file is known.
    fn origin(&self, name: &str) -> String {
        self.files
            .get(name)
            .map(|f| format!(" (set in {})", f.display()))
            .unwrap_or_default()
    }

    fn is_secret(&self, name: &str) -> bool {
        self.secret.contains(name) || secret_name(name)
    }
}

/// Names whose values are secrets by Kolla's naming: `*_password`, `*_key`, `*secret*`,
/// `*token*`, `*cookie*`, `*_pass`, `*passwd*`.
pub(crate) fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "cookie"]
        .iter()
        .any(|word| name.contains(word))
        || name.ends_with("key")
        || name.ends_with("_pass")
}

pub(crate) fn resolve(raw: Vars) -> Resolved {
    resolve_with(raw, &Provenance::default())
}

/// [`resolve`], naming files and hiding secret values as `known` says.
pub(crate) fn resolve_with(raw: Vars, known: &Provenance) -> Resolved {
    let mut vars = Vars::new();
    let mut pending: BTreeMap<String, (Json, BTreeSet<String>)> = BTreeMap::new();
    let mut unresolved = BTreeMap::new();
    let mut needs_facts = BTreeSet::new();
    let without_facts = !raw.contains_key(FACTS);
    for (name, value) in raw {
        if !contains_template(&value) {
            vars.insert(name, literal(value));
            continue;
        }
        match references(&value) {
            Ok(deps) => {
                pending.insert(name, (value, deps));
            }
            Err(err) => {
                let message = failure(&name, known, "is not a valid template", &err, || {
                    describe(&err, &BTreeSet::new(), &Value::UNDEFINED)
                });
                unresolved.insert(name, message);
            }
        }
    }

    // Kahn's algorithm: a variable is rendered once every pending variable it reads is
    // settled; what is left at the end is a loop or hangs off one.
    let mut waiting: HashMap<String, usize> = HashMap::new();
    let mut readers: HashMap<String, Vec<String>> = HashMap::new();
    for (name, (_, deps)) in &pending {
        let pending_deps: Vec<&String> = deps.iter().filter(|d| pending.contains_key(*d)).collect();
        waiting.insert(name.clone(), pending_deps.len());
        for dep in pending_deps {
            readers.entry(dep.clone()).or_default().push(name.clone());
        }
    }
    let mut ready: VecDeque<String> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(name, _)| name.clone())
        .collect();
    let mut values = ContextCache::default();
    while let Some(name) = ready.pop_front() {
        let (value, deps) = pending.remove(&name).expect("each name is ready once");
        if let Some(dep) = deps.iter().find(|d| unresolved.contains_key(*d)) {
            if needs_facts.contains(dep) {
                needs_facts.insert(name.clone());
            }
            unresolved.insert(
                name.clone(),
                format!("uses {dep}, which could not be rendered"),
            );
        } else {
            let context = values.context(&deps, &vars);
            match render_value(&value, &context) {
                Ok(rendered) => {
                    vars.insert(name.clone(), rendered);
                }
                Err((at, err)) => {
                    if without_facts && deps.contains(FACTS) {
                        needs_facts.insert(name.clone());
                    }
                    let message =
                        failure(&name, known, &format!("cannot render{at}"), &err, || {
                            describe(&err, &deps, &context)
                        });
                    unresolved.insert(name.clone(), message);
                }
            }
        }
        for reader in readers.remove(&name).unwrap_or_default() {
            let n = waiting.get_mut(&reader).expect("every reader waits");
            *n -= 1;
            if *n == 0 {
                ready.push_back(reader);
            }
        }
    }
    let deps: BTreeMap<String, BTreeSet<String>> = pending
        .into_iter()
        .map(|(name, (_, deps))| (name, deps))
        .collect();
    unresolved.extend(loop_messages(&deps));
    for (name, message) in unresolved.iter_mut() {
        message.push_str(&known.origin(name));
    }
    Resolved {
        vars,
        unresolved,
        needs_facts,
    }
}

/// `what: why`, the details only when the value is not secret.
fn failure(
    name: &str,
    known: &Provenance,
    what: &str,
    err: &minijinja::Error,
    details: impl FnOnce() -> String,
) -> String {
    if err.kind() == ErrorKind::OutOfFuel {
        return format!("{what}: {}", crate::render::out_of_fuel());
    }
    if known.is_secret(name) {
        format!(
            "{what}: {} (details hidden: the value is secret; if it is a literal password \
             containing '{{{{' or '{{%', tag it !unsafe)",
            err.kind()
        )
    } else {
        format!("{what}: {}", details())
    }
}

/// Settled variables as template values, converted once each, and a context holding just
/// the ones a template reads: rendering one variable never copies them all.
#[derive(Default)]
struct ContextCache {
    converted: HashMap<String, Value>,
}

impl ContextCache {
    fn context(&mut self, deps: &BTreeSet<String>, vars: &Vars) -> Value {
        let mut context = BTreeMap::new();
        for dep in deps {
            if let Some(json) = vars.get(dep) {
                let value = self
                    .converted
                    .entry(dep.clone())
                    .or_insert_with(|| Value::from(minijinja::value::Serde(json)));
                context.insert(dep.clone(), value.clone());
            }
        }
        Value::from_object(context)
    }
}

/// `value` with every `!unsafe` string replaced by its text.
fn literal(value: Json) -> Json {
    if let Some(text) = unsafe_text(&value) {
        return Json::String(text.to_string());
    }
    match value {
        Json::Array(items) => Json::Array(items.into_iter().map(literal).collect()),
        Json::Object(map) => Json::Object(map.into_iter().map(|(k, v)| (k, literal(v))).collect()),
        other => other,
    }
}

fn contains_template(value: &Json) -> bool {
    if unsafe_text(value).is_some() {
        return false;
    }
    match value {
        Json::String(s) => is_templated(s),
        Json::Array(items) => items.iter().any(contains_template),
        Json::Object(map) => map.values().any(contains_template),
        _ => false,
    }
}

/// Names of the variables the templated strings inside `value` read.
fn references(value: &Json) -> Result<BTreeSet<String>, minijinja::Error> {
    let mut names = BTreeSet::new();
    let mut strings = Vec::new();
    collect_strings(value, &mut strings);
    for text in strings {
        names.extend(string_references(text)?.iter().cloned());
    }
    Ok(names)
}

/// What one templated string reads, found once per process: every host's variables hold
/// the same strings, and finding them parses the source again.
fn string_references(text: &str) -> Result<Arc<BTreeSet<String>>, minijinja::Error> {
    static FOUND: LazyLock<Mutex<HashMap<String, Arc<BTreeSet<String>>>>> =
        LazyLock::new(Default::default);
    if let Some(found) = FOUND.lock().unwrap_or_else(|e| e.into_inner()).get(text) {
        return Ok(found.clone());
    }
    let found = match single_expression(text) {
        Some(expr) => cached_expression(expr).map(|e| e.undeclared_variables(false)),
        None => with_string_template(text, |t| Ok(t.undeclared_variables(false))),
    };
    let found: Arc<BTreeSet<String>> = Arc::new(found?.into_iter().collect());
    let mut cache = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    cache.insert(text.to_string(), found.clone());
    Ok(found)
}

fn collect_strings<'a>(value: &'a Json, out: &mut Vec<&'a str>) {
    if unsafe_text(value).is_some() {
        return;
    }
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

/// The rendered value, or where inside it (` at [1].key`) rendering failed, and why.
fn render_value(value: &Json, context: &Value) -> Result<Json, (String, minijinja::Error)> {
    if let Some(text) = unsafe_text(value) {
        return Ok(Json::String(text.to_string()));
    }
    let inside = |at: String| move |(rest, err): (String, _)| (format!("{at}{rest}"), err);
    match value {
        Json::String(text) if is_templated(text) => {
            render_string(text, context).map_err(|err| (String::new(), err))
        }
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| render_value(v, context).map_err(inside(format!(" at [{i}]"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Json::Array),
        Json::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let rendered = render_value(v, context).map_err(inside(format!(" at .{k}")))?;
                Ok((k.clone(), rendered))
            })
            .collect::<Result<Vars, _>>()
            .map(Json::Object),
        other => Ok(other.clone()),
    }
}

/// Largest value one templated variable may render to: fuel bounds the steps, not what one
/// step makes (`{{ 'x' * 30000000 }}`), and every host renders every variable.
const MAX_RENDERED_BYTES: usize = 1 << 20;

fn render_string(text: &str, context: &Value) -> Result<Json, minijinja::Error> {
    let rendered = render_unbounded(text, context)?;
    let size = match &rendered {
        Json::String(s) => s.len(),
        other => other.to_string().len(),
    };
    if size > MAX_RENDERED_BYTES {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "the value renders to more than {} MiB",
                MAX_RENDERED_BYTES >> 20
            ),
        ));
    }
    Ok(rendered)
}

fn render_unbounded(text: &str, context: &Value) -> Result<Json, minijinja::Error> {
    match single_expression(text) {
        Some(expr) => cached_expression(expr)
            .and_then(|e| e.eval(context.clone()))
            .and_then(|v| {
                // Expressions yield undefined instead of failing; treat it like printing it.
                if v.is_undefined() {
                    return Err(minijinja::Error::new(
                        ErrorKind::UndefinedError,
                        "the expression is undefined",
                    ));
                }
                serde_json::to_value(&v)
                    .map_err(|e| minijinja::Error::new(ErrorKind::BadSerialization, e.to_string()))
            }),
        None => with_string_template(text, |t| t.render(context.clone())).map(Json::String),
    }
}

/// Why each variable left over after rendering failed: it is in a loop of variables that
/// read each other (named, when the loop is short), or it reads one that is. Strongly
/// connected components (Tarjan, without recursion), so thousands of variables cost
/// linear time and no deep stack.
fn loop_messages(deps: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, String> {
    let names: Vec<&String> = deps.keys().collect();
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let edges: Vec<Vec<usize>> = names
        .iter()
        .map(|n| {
            deps[*n]
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    let component = strongly_connected(&edges);
    let mut size: HashMap<usize, usize> = HashMap::new();
    for c in &component {
        *size.entry(*c).or_default() += 1;
    }
    let mut messages = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let members = size[&component[i]];
        let in_loop = members > 1 || edges[i].contains(&i);
        let message = if !in_loop {
            "depends on a variable that refers to itself".to_string()
        } else if members <= 32 {
            let path = shortest_loop(&edges, &component, i);
            let path: Vec<&str> = path.iter().map(|j| names[*j].as_str()).collect();
            format!("refers to itself: {}", path.join(" -> "))
        } else {
            format!("refers to itself through a loop of {members} variables")
        };
        messages.insert((*name).clone(), message);
    }
    messages
}

/// Component number of each node of a directed graph.
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let n = edges.len();
    let (mut order, mut low) = (vec![UNSEEN; n], vec![0; n]);
    let mut component = vec![UNSEEN; n];
    let (mut stack, mut on_stack) = (Vec::new(), vec![false; n]);
    let (mut next_order, mut next_component) = (0, 0);
    for root in 0..n {
        if order[root] != UNSEEN {
            continue;
        }
        // (node, index of the next edge to follow)
        let mut walk = vec![(root, 0)];
        order[root] = next_order;
        low[root] = next_order;
        next_order += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (node, ref mut edge)) = walk.last_mut() {
            if let Some(&next) = edges[node].get(*edge) {
                *edge += 1;
                if order[next] == UNSEEN {
                    order[next] = next_order;
                    low[next] = next_order;
                    next_order += 1;
                    stack.push(next);
                    on_stack[next] = true;
                    walk.push((next, 0));
                } else if on_stack[next] {
                    low[node] = low[node].min(order[next]);
                }
                continue;
            }
            walk.pop();
            if let Some(&(parent, _)) = walk.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == order[node] {
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component[member] = next_component;
                    if member == node {
                        break;
                    }
                }
                next_component += 1;
            }
        }
    }
    component
}

/// The shortest path from `start` back to itself, inside its component (breadth first).
fn shortest_loop(edges: &[Vec<usize>], component: &[usize], start: usize) -> Vec<usize> {
    let mut came_from: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &next in &edges[node] {
            if component[next] != component[start] {
                continue;
            }
            if next == start {
                let mut path = vec![start, node];
                let mut at = node;
                while at != start {
                    at = came_from[&at];
                    path.push(at);
                }
                path.reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = came_from.entry(next) {
                slot.insert(node);
                queue.push_back(next);
            }
        }
    }
    vec![start, start]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolve_json(value: Json) -> Resolved {
        let Json::Object(map) = value else { panic!() };
        resolve(map)
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

    const SECRET: &str = "Hunter2Secret";

    /// `!unsafe` strings, as the inventory crate loads them, come out exactly as written.
    #[test]
    fn unsafe_values_are_never_templated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwords.yml");
        std::fs::write(
            &path,
            "pw: !unsafe \"pw{{ 7*7 }}\"\n\
             nested: !unsafe {list: [\"a{{ b }}\"], k: \"{% x %}\"}\n\
             mixed: [!unsafe \"{{ 1 }}\", \"{{ 2 }}\"]\n\
             uses: \"{{ pw }}\"\n",
        )
        .unwrap();
        let raw = virtfleet_inventory::load_vars_file(&path).unwrap();
        let r = resolve(raw);
        assert!(r.unresolved.is_empty(), "{:?}", r.unresolved);
        assert_eq!(r.vars["pw"], json!("pw{{ 7*7 }}"));
        assert_eq!(
            r.vars["nested"],
            json!({"list": ["a{{ b }}"], "k": "{% x %}"})
        );
        assert_eq!(r.vars["mixed"], json!(["{{ 1 }}", 2]));
        // What a template reads from an `!unsafe` value is not templated again either.
        assert_eq!(r.vars["uses"], json!("pw{{ 7*7 }}"));
    }

    /// Broken templates in secret values: no message repeats the value or a piece of it.
    #[test]
    fn errors_never_contain_secret_values() {
        let r = resolve_json(json!({
            "db_password": format!("{SECRET}{{{{"),
            "api_key": format!("x{{{{ nope_{SECRET} }}}}"),
            "osprofiler_secret": format!("{{{{ '{SECRET}' | frobnicate }}}}"),
            "rabbitmq_cluster_cookie": format!("{{% if {SECRET} %}}"),
            "tls_flag": format!("{{{{ '{SECRET}' | bool }}}}"),
            "uses": "{{ db_password }}",
        }));
        assert_eq!(r.unresolved.len(), 6, "{:?}", r.unresolved);
        for (name, message) in &r.unresolved {
            assert!(!message.contains(SECRET), "{name}: {message}");
        }
        assert!(r.unresolved["uses"].contains("db_password"));
        // Named by where they came from (passwords.yml), whatever their names.
        let raw = json!({"weird": format!("{{{{ nope_{SECRET} }}}}")});
        let Json::Object(raw) = raw else { panic!() };
        let known = Provenance {
            files: [("weird".to_string(), "/etc/kolla/passwords.yml".into())].into(),
            secret: ["weird".to_string()].into(),
        };
        let r = resolve_with(raw, &known);
        let message = &r.unresolved["weird"];
        assert!(!message.contains(SECRET), "{message}");
        assert!(message.contains("/etc/kolla/passwords.yml"), "{message}");
    }

    /// One step that makes a huge value is refused at the value, not after holding many.
    #[test]
    fn a_value_rendering_to_megabytes_is_refused() {
        let mut raw = Vars::new();
        for i in 0..4 {
            raw.insert(format!("v{i}"), serde_json::json!("{{ 'x' * 3000000 }}"));
        }
        let resolved = resolve(raw);
        assert!(resolved.vars.keys().all(|k| !k.starts_with('v')));
        let why = &resolved.unresolved["v0"];
        assert!(why.contains("more than 1 MiB"), "{why}");
    }

    /// Three nested loops in globals.yml: bounded by minijinja's fuel, not an endless render.
    #[test]
    fn template_work_is_bounded() {
        let start = std::time::Instant::now();
        let r = resolve_json(json!({
            "spin": "{% for a in range(100000) %}{% for b in range(100000) %}\
                     {% for c in range(100000) %}{{ a }}{% endfor %}{% endfor %}{% endfor %}",
            "big": "{{ 'x' * 100000000 }}",
        }));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        for name in ["spin", "big"] {
            let message = &r.unresolved[name];
            assert!(message.contains("template work limit"), "{name}: {message}");
            assert!(!message.contains("range"), "{name}: {message}");
        }
    }

    /// Long chains and loops of variables: linear work, no deep recursion.
    #[test]
    fn long_chains_and_loops_stay_fast() {
        let n = 20_000;
        let mut map = Vars::new();
        for i in 1..n {
            map.insert(format!("c{i}"), json!(format!("{{{{ c{} }}}}", i - 1)));
            map.insert(format!("l{i}"), json!(format!("{{{{ l{} }}}}", i - 1)));
        }
        map.insert("c0".into(), json!("start"));
        map.insert("l0".into(), json!(format!("{{{{ l{} }}}}", n - 1)));
        let start = std::time::Instant::now();
        let r = resolve(map);
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(r.vars[&format!("c{}", n - 1)], json!("start"));
        let message = &r.unresolved["l5"];
        assert!(message.contains("loop of 20000 variables"), "{message}");
    }

    /// tests/bad-input/: each file loaded as globals.yml or passwords.yml (by its name) and
    /// resolved; each must fail naming the variable and the file, within a second, with no
    /// secret in any message.
    #[test]
    fn bad_input_corpus() {
        const CASES: &[(&str, &str)] = &[
            ("globals-nested-loops.yml", "template work limit"),
            ("globals-huge-string.yml", "template work limit"),
            ("globals-huge-list.yml", "repeated sequence is too large"),
            (
                "globals-variable-loop.yml",
                "refers to itself: migration_hostname -> ",
            ),
            ("globals-long-variable-loop.yml", "loop of 2000 variables"),
            ("globals-secret-bool.yml", "not a boolean"),
            (
                "passwords-broken-template.yml",
                "syntax error (details hidden",
            ),
            ("passwords-undefined-in-template.yml", "(details hidden"),
            (
                "passwords-unknown-filter.yml",
                "unknown filter (details hidden",
            ),
            ("passwords-odd-name.yml", "syntax error (details hidden"),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-input");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".yml"))
            .collect();
        files.sort();
        let mut listed: Vec<&str> = CASES.iter().map(|(name, _)| *name).collect();
        listed.sort();
        assert_eq!(files, listed, "every corpus file needs a row in CASES");
        for (name, needle) in CASES {
            let path = dir.join(name);
            let raw = virtfleet_inventory::load_vars_file(&path).unwrap();
            let known = Provenance {
                files: raw.keys().map(|k| (k.clone(), path.clone())).collect(),
                secret: match name.starts_with("passwords-") {
                    true => raw.keys().cloned().collect(),
                    false => BTreeSet::new(),
                },
            };
            let start = std::time::Instant::now();
            let r = resolve_with(raw, &known);
            let took = start.elapsed();
            assert!(
                took < std::time::Duration::from_secs(1),
                "{name}: took {took:?}"
            );
            assert!(!r.unresolved.is_empty(), "{name}: no error");
            let set_in = format!("(set in {})", path.display());
            for (var, message) in &r.unresolved {
                assert!(!message.contains("Hunter2"), "{name}: {var}: {message}");
                assert!(message.contains(&set_in), "{name}: {var}: {message}");
            }
            assert!(
                r.unresolved.values().any(|m| m.contains(needle)),
                "{name}: {:?} should say {needle:?}",
                r.unresolved
            );
        }
    }
}
