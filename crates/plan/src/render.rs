//! The minijinja environment shared by templates, expressions and templated variables:
//! Ansible-like whitespace handling, strict undefined, the few Ansible/Kolla filters that
//! libvirt templates need, and a bound on the work of each render ([`TEMPLATE_FUEL`]).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{
    AutoEscape, Environment, Error, ErrorKind, Expression, Template, UndefinedBehavior,
};

/// minijinja's fuel for one render of a template, expression or templated variable: about
/// one unit per instruction and per 64 bytes of data made. Real templates use a few
/// thousand; three nested loops over `range(100000)` or `'x' * 10**8` run out and fail
/// with an error instead of hanging or exhausting memory (about 64 MiB at most).
pub const TEMPLATE_FUEL: u64 = 1_000_000;

/// What running out of fuel means, for error messages.
pub(crate) fn out_of_fuel() -> String {
    format!(
        "template work limit reached ({TEMPLATE_FUEL} fuel, about as many steps or 64 bytes \
         of data each): a loop or a value too large?"
    )
}

/// Strings Ansible reads as booleans (its `boolean()` helper), compared case-insensitively.
const TRUE_WORDS: &[&str] = &["yes", "on", "1", "true", "y", "t"];
const FALSE_WORDS: &[&str] = &["no", "off", "0", "false", "n", "f", ""];

/// Ansible's reading of a string as a boolean; `None` when it is not one.
pub(crate) fn parse_bool_str(text: &str) -> Option<bool> {
    let lower = text.trim().to_ascii_lowercase();
    if TRUE_WORDS.contains(&lower.as_str()) {
        Some(true)
    } else if FALSE_WORDS.contains(&lower.as_str()) {
        Some(false)
    } else {
        None
    }
}

/// Converts a template value to a boolean the way Ansible's `bool` filter does, but refuses
/// strings that are no boolean at all: `libvirt_tls: "ture"` must not silently mean false.
/// Messages say what kind of value it was, never the value (it may be a secret).
pub(crate) fn value_to_bool(value: &Value) -> Result<bool, Error> {
    if value.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            "bool of an undefined value",
        ));
    }
    if value.is_none() {
        return Ok(false);
    }
    if let Some(text) = value.as_str() {
        return parse_bool_str(text).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                "a string that is not a boolean (use yes/no, true/false, on/off, 1/0)",
            )
        });
    }
    if let Ok(b) = bool::try_from(value.clone()) {
        return Ok(b);
    }
    if let Ok(n) = i64::try_from(value.clone()) {
        return match n {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::new(
                ErrorKind::InvalidOperation,
                "a number other than 0 or 1 is not a boolean",
            )),
        };
    }
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("a {} is not a boolean", value.kind()),
    ))
}

fn bool_filter(value: &Value) -> Result<bool, Error> {
    value_to_bool(value)
}

/// Brackets IPv6 literals so they can sit in a URL host (`qemu+tcp://[fd00::1]/system`).
fn ipwrap(value: &Value) -> Result<String, Error> {
    let text = value
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string());
    Ok(wrap_ipv6(&text))
}

fn wrap_ipv6(text: &str) -> String {
    if text.contains(':') && !text.starts_with('[') {
        format!("[{text}]")
    } else {
        text.to_string()
    }
}

/// Kolla's filter of the same name, for operator templates copied from Kolla.
fn put_address_in_context(value: &Value, context: &str) -> Result<String, Error> {
    let text = value
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string());
    match context {
        "url" => Ok(wrap_ipv6(&text)),
        "memcache" if text.contains(':') => Ok(format!("inet6:[{text}]")),
        "memcache" => Ok(text),
        other => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("put_address_in_context: unknown context {other:?}"),
        )),
    }
}

/// Marks [`crate::provisional_facts`]: checks before any host is contacted.
pub(crate) const PROVISIONAL: &str = "virtfleet_provisional";

/// The address of `interface` in the host's facts, chosen as Kolla's `kolla_address` filter
/// chooses it: IPv4, the primary address (or, when that is a loopback address, the first
/// secondary one that is not); IPv6, the first global address not in `exclude` (Kolla leaves
/// out its VIPs). `ansible_facts | interface_address(migration_interface, migration_address_family)`.
fn interface_address(
    facts: &Value,
    interface: &str,
    family: &str,
    exclude: Option<Vec<String>>,
) -> Result<String, Error> {
    INTERFACES_READ.set(true);
    let fail = |msg: String| Error::new(ErrorKind::InvalidOperation, msg);
    let family = family.to_lowercase();
    if family != "ipv4" && family != "ipv6" {
        return Err(fail(format!(
            "unknown address family {family:?} (ipv4 or ipv6)"
        )));
    }
    if STAND_IN_FACTS.get() {
        return Ok(if family == "ipv4" {
            "192.0.2.1"
        } else {
            "2001:db8::1"
        }
        .into());
    }
    let found = facts
        .get_attr(&interface.replace('-', "_"))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_none())
        .ok_or_else(|| {
            fail(format!(
                "interface {interface:?} is not present on the host"
            ))
        })?;
    let missing = || {
        fail(format!(
            "{family} address missing on interface {interface:?}"
        ))
    };
    let text = |v: Value| v.as_str().map(str::to_string);
    let is_loopback = |a: &str| {
        a.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    };
    let exclude = exclude.unwrap_or_default();
    let address = match family.as_str() {
        "ipv4" => {
            let primary = found
                .get_attr("ipv4")
                .and_then(|v| v.get_attr("address"))
                .ok()
                .and_then(text)
                .ok_or_else(missing)?;
            let secondaries = found.get_attr("ipv4_secondaries").ok();
            let other = secondaries
                .iter()
                .flat_map(|list| list.try_iter().into_iter().flatten())
                .filter_map(|s| s.get_attr("address").ok().and_then(text))
                .find(|a| !is_loopback(a));
            match (is_loopback(&primary), other) {
                (true, Some(other)) => other,
                _ => primary,
            }
        }
        _ => found
            .get_attr("ipv6")
            .ok()
            .iter()
            .flat_map(|list| list.try_iter().into_iter().flatten())
            .filter(|a| a.get_attr("scope").ok().and_then(text).as_deref() == Some("global"))
            .filter_map(|a| a.get_attr("address").ok().and_then(text))
            .find(|a| !exclude.contains(a))
            .ok_or_else(missing)?,
    };
    Ok(address)
}

/// Escapes a value for a GLib key file (libvirt's auth.conf), so a password with a backslash
/// or leading blank reads back unchanged.
fn keyfile_escape(value: &Value) -> Result<String, Error> {
    let text = value
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string());
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' ' if i == 0 => out.push_str("\\s"),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// A fresh environment with our filters and Ansible's template whitespace rules
/// (`trim_blocks`, keep the final newline). `template_dirs` feeds `{% include %}`.
pub(crate) fn environment(template_dirs: Vec<PathBuf>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(TEMPLATE_FUEL));
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .expect("default delimiters are valid");
    env.set_syntax(syntax);
    // Ansible never escapes; minijinja would JSON-escape output of `*.json.j2` templates.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.add_filter("bool", bool_filter);
    env.add_filter("ipwrap", ipwrap);
    env.add_filter("put_address_in_context", put_address_in_context);
    env.add_filter("keyfile_escape", keyfile_escape);
    env.add_filter("interface_address", interface_address);
    env.set_loader(move |name| match find_in(&template_dirs, name) {
        Some(path) => virtfleet_inventory::read_text_file(&path)
            .map(Some)
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string())),
        None => Ok(None),
    });
    env
}

/// The environment of templated strings (variables, playbook fields): no template files, so a
/// string's compiled form depends on nothing but its text and is kept for the whole process.
/// Every host renders the same playbook defaults in every planning pass: compiled once, not
/// once per host and pass.
static STRINGS: LazyLock<RwLock<Environment<'static>>> =
    LazyLock::new(|| RwLock::new(environment(Vec::new())));

type CachedExpression = Arc<Expression<'static, 'static>>;

static EXPRESSIONS: LazyLock<Mutex<HashMap<String, CachedExpression>>> =
    LazyLock::new(Default::default);

/// The environment expressions are compiled in (as [`STRINGS`]'s: no files).
static EXPRESSION_ENV: LazyLock<Environment<'static>> = LazyLock::new(|| environment(Vec::new()));

/// `source` as a template of the strings environment, compiled on first use; `use_it` runs
/// with it (under a shared lock: many hosts render at once).
pub(crate) fn with_string_template<R>(
    source: &str,
    use_it: impl FnOnce(Template<'_, '_>) -> Result<R, Error>,
) -> Result<R, Error> {
    {
        let env = STRINGS.read().unwrap_or_else(|e| e.into_inner());
        if let Ok(template) = env.get_template(source) {
            return use_it(template);
        }
    }
    {
        let mut env = STRINGS.write().unwrap_or_else(|e| e.into_inner());
        if env.get_template(source).is_err() {
            env.add_template_owned(source.to_string(), source.to_string())?;
        }
    }
    let env = STRINGS.read().unwrap_or_else(|e| e.into_inner());
    use_it(env.get_template(source)?)
}

/// `expr` compiled once per process.
pub(crate) fn cached_expression(expr: &str) -> Result<CachedExpression, Error> {
    let mut cache = EXPRESSIONS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(compiled) = cache.get(expr) {
        return Ok(compiled.clone());
    }
    let compiled = Arc::new(EXPRESSION_ENV.compile_expression_owned(expr.to_string())?);
    cache.insert(expr.to_string(), compiled.clone());
    Ok(compiled)
}

thread_local! {
    /// Set when a render on this thread asked for an interface's address: a host is planned
    /// on one thread, so its planning can tell whether its facts must hold interfaces.
    static INTERFACES_READ: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a render on this thread read interface facts since the last call (and reset).
pub(crate) fn take_interfaces_read() -> bool {
    INTERFACES_READ.replace(false)
}

thread_local! {
    /// Set while a host is planned on stand-in facts ([`crate::provisional_facts`]): then
    /// `interface_address` answers a documentation address. A flag beside the facts rather
    /// than a key in them, so that templates see stand-in facts exactly as real ones.
    static STAND_IN_FACTS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as planning on stand-in facts until dropped.
pub(crate) struct StandInFacts(());

impl StandInFacts {
    pub(crate) fn begin() -> StandInFacts {
        STAND_IN_FACTS.set(true);
        StandInFacts(())
    }
}

impl Drop for StandInFacts {
    fn drop(&mut self) {
        STAND_IN_FACTS.set(false);
    }
}

/// The template environments of a run, one per template search path (the directories of it
/// that exist), shared by every host and planning pass: each template file is read and
/// compiled once per run, not once per host. Held by the [`crate::Playbook`], so a new
/// playbook load reads the files afresh.
#[derive(Clone, Default)]
pub struct CompiledTemplates(Arc<Mutex<HashMap<Vec<PathBuf>, SharedEnvironment>>>);

type SharedEnvironment = Arc<Environment<'static>>;

impl std::fmt::Debug for CompiledTemplates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompiledTemplates")
    }
}

impl CompiledTemplates {
    /// The environment loading templates from `dirs` (first match wins).
    pub(crate) fn environment(&self, dirs: &[PathBuf]) -> SharedEnvironment {
        // A directory that does not exist holds no template: hosts without their own
        // directory share one environment.
        let existing: Vec<PathBuf> = dirs.iter().filter(|d| d.is_dir()).cloned().collect();
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(existing)
            .or_insert_with_key(|dirs| Arc::new(environment(dirs.clone())))
            .clone()
    }
}

/// The first directory holding `name`.
pub(crate) fn find_in(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// True when a string needs rendering at all.
pub fn is_templated(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// One line of explanation for a minijinja error, without the location (callers add theirs),
/// naming undefined variables when that is the cause.
pub(crate) fn describe(err: &Error, referenced: &BTreeSet<String>, known: &Value) -> String {
    if err.kind() == ErrorKind::OutOfFuel {
        return out_of_fuel();
    }
    let mut message = err.kind().to_string();
    if let Some(detail) = err.detail() {
        message = format!("{message}: {detail}");
    }
    // minijinja names the culprit in some messages (`x` is undefined), not in all.
    if err.kind() == ErrorKind::UndefinedError && !message.contains("` is undefined") {
        let missing: Vec<&str> = referenced
            .iter()
            .filter(|name| {
                known
                    .get_attr(name)
                    .map(|v| v.is_undefined())
                    .unwrap_or(true)
            })
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            message = format!("{message} (undefined: {})", missing.join(", "));
        }
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(expr: &str, ctx: Value) -> Result<Value, Error> {
        let env = environment(Vec::new());
        let compiled = env.compile_expression(expr)?;
        compiled.eval(ctx)
    }

    #[test]
    fn bool_filter_reads_ansible_words() {
        for (text, want) in [
            ("yes", true),
            ("YES", true),
            ("On", true),
            ("1", true),
            ("True", true),
            ("no", false),
            ("OFF", false),
            ("0", false),
            ("false", false),
            ("", false),
        ] {
            let got = eval("v | bool", minijinja::context! { v => text }).unwrap();
            assert_eq!(got, Value::from(want), "{text:?}");
        }
        let got = eval("v | bool", minijinja::context! { v => true }).unwrap();
        assert_eq!(got, Value::from(true));
        let got = eval("v | bool", minijinja::context! { v => 0 }).unwrap();
        assert_eq!(got, Value::from(false));
        let err = eval("v | bool", minijinja::context! { v => "ture" }).unwrap_err();
        assert!(err.to_string().contains("not a boolean"), "{err}");
    }

    #[test]
    fn strict_undefined_but_default_works() {
        let env = environment(Vec::new());
        assert!(env
            .render_str("{{ missing }}", minijinja::context! {})
            .is_err());
        assert!(eval("missing | bool", minijinja::context! {}).is_err());
        let got = eval("missing | default('x')", minijinja::context! {}).unwrap();
        assert_eq!(got.as_str(), Some("x"));
    }

    #[test]
    fn address_filters() {
        let got = eval("a | ipwrap", minijinja::context! { a => "fd00::1" }).unwrap();
        assert_eq!(got.as_str(), Some("[fd00::1]"));
        let got = eval(
            "a | put_address_in_context('url')",
            minijinja::context! { a => "10.0.0.1" },
        )
        .unwrap();
        assert_eq!(got.as_str(), Some("10.0.0.1"));
    }

    #[test]
    fn interface_address_chooses_as_kolla_does() {
        let facts = Value::from(minijinja::value::Serde(serde_json::json!({
            "br_mgmt": {
                "ipv4": {"address": "192.0.2.2"},
                "ipv6": [
                    {"address": "fe80::1", "scope": "link"},
                    {"address": "2001:db8::10", "scope": "global"},
                    {"address": "2001:db8::2", "scope": "global"},
                ],
            },
            "lo": {
                "ipv4": {"address": "127.0.0.1"},
                "ipv4_secondaries": [{"address": "127.0.0.2"}, {"address": "198.51.100.7"}],
            },
            "eth9": {"ipv6": []},
        })));
        let call = |expr: &str| eval(expr, minijinja::context! { f => facts.clone() });
        assert_eq!(
            call("f | interface_address('br-mgmt', 'ipv4')").unwrap(),
            Value::from("192.0.2.2")
        );
        assert_eq!(
            call("f | interface_address('br-mgmt', 'IPv6')").unwrap(),
            Value::from("2001:db8::10")
        );
        assert_eq!(
            call("f | interface_address('br-mgmt', 'ipv6', ['2001:db8::10'])").unwrap(),
            Value::from("2001:db8::2"),
            "a VIP is never the host's address"
        );
        assert_eq!(
            call("f | interface_address('lo', 'ipv4')").unwrap(),
            Value::from("198.51.100.7")
        );
        for (expr, says) in [
            (
                "f | interface_address('eth0', 'ipv4')",
                "interface \"eth0\" is not present",
            ),
            (
                "f | interface_address('eth9', 'ipv6')",
                "ipv6 address missing on interface \"eth9\"",
            ),
            (
                "f | interface_address('eth9', 'ipv4')",
                "ipv4 address missing",
            ),
            (
                "f | interface_address('br-mgmt', 'ipx')",
                "unknown address family",
            ),
        ] {
            let err = call(expr).unwrap_err().to_string();
            assert!(err.contains(says), "{expr}: {err}");
        }
    }

    #[test]
    fn keyfile_escape_round_trips_special_characters() {
        let got = eval("p | keyfile_escape", minijinja::context! { p => " a\\b" }).unwrap();
        assert_eq!(got.as_str(), Some("\\sa\\\\b"));
    }

    #[test]
    fn bool_errors_do_not_repeat_the_value() {
        for v in [Value::from("Hunter2-Secret"), Value::from(987654321)] {
            let err = eval("v | bool", minijinja::context! { v }).unwrap_err();
            let message = describe(&err, &BTreeSet::new(), &Value::UNDEFINED);
            assert!(message.contains("not a boolean"), "{message}");
            assert!(
                !message.contains("Hunter2") && !message.contains("987654321"),
                "{message}"
            );
        }
    }

    #[test]
    fn every_render_is_bounded() {
        let env = environment(Vec::new());
        for template in [
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            "{{ 'x' * 100000000 }}",
        ] {
            let start = std::time::Instant::now();
            let err = env
                .render_str(template, minijinja::context! {})
                .unwrap_err();
            assert!(start.elapsed() < std::time::Duration::from_secs(5));
            let message = describe(&err, &BTreeSet::new(), &Value::UNDEFINED);
            assert!(message.contains("template work limit"), "{message}");
        }
    }

    #[test]
    fn template_files_are_read_within_the_file_limit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::File::create(dir.path().join("big.j2"))
            .unwrap()
            .set_len(17 << 20)
            .unwrap();
        let env = environment(vec![dir.path().to_path_buf()]);
        let err = env.get_template("big.j2").unwrap_err();
        let message = describe(&err, &BTreeSet::new(), &Value::UNDEFINED);
        assert!(
            message.contains("big.j2") && message.contains("16 MiB"),
            "{message}"
        );
    }
}
