//! The minijinja environment shared by templates, expressions and templated variables:
//! Ansible-like whitespace handling, strict undefined, and the few Ansible/Kolla filters
//! that libvirt templates need.

use std::collections::BTreeSet;
use std::path::PathBuf;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};

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
                format!("{text:?} is not a boolean (use yes/no, true/false, on/off, 1/0)"),
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
                format!("{n} is not a boolean"),
            )),
        };
    }
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("{value} is not a boolean"),
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
    env.set_loader(move |name| match find_in(&template_dirs, name) {
        Some(path) => std::fs::read_to_string(&path).map(Some).map_err(|e| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot read {}", path.display()),
            )
            .with_source(e)
        }),
        None => Ok(None),
    });
    env
}

/// The first directory holding `name`.
pub(crate) fn find_in(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// True when a string needs rendering at all.
pub(crate) fn is_templated(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// One line of explanation for a minijinja error, without the location (callers add theirs),
/// naming undefined variables when that is the cause.
pub(crate) fn describe(err: &Error, referenced: &BTreeSet<String>, known: &Value) -> String {
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
    fn keyfile_escape_round_trips_special_characters() {
        let got = eval("p | keyfile_escape", minijinja::context! { p => " a\\b" }).unwrap();
        assert_eq!(got.as_str(), Some("\\sa\\\\b"));
    }
}
