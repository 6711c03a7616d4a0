//! YAML variable files (group_vars, host_vars, globals.yml, passwords.yml) and the conversion
//! of YAML values into the JSON values the rest of virtfleet works with.

use std::path::Path;

use serde_json::{Map, Number, Value};
use serde_yaml_ng::{Mapping, Value as Yaml};

use crate::limits::MAX_NESTING;
use crate::{InventoryError, Vars};

/// Loads a YAML (or JSON) file whose top level is a mapping of variables, e.g. Kolla's
/// `globals.yml` or `passwords.yml`. An empty file gives no variables. Reads within the
/// limits of [`limits`](crate::limits).
pub fn load_vars_file(path: &Path) -> Result<Vars, InventoryError> {
    let text = crate::read_text_file(path)?;
    parse_vars_text(path, &text)
}

/// The key of Ansible's JSON form of an `!unsafe` string (its `AnsibleJSONEncoder` writes
/// `{"__ansible_unsafe": "text"}`), which is how such a string is carried here.
pub const UNSAFE_KEY: &str = "__ansible_unsafe";

/// The text of a value loaded from an `!unsafe` string, which must never be templated:
/// `Some` for `{"__ansible_unsafe": "text"}`, `None` for anything else. Only strings that
/// look like templates are carried this way; other `!unsafe` strings are plain strings.
pub fn unsafe_text(value: &Value) -> Option<&str> {
    match value {
        Value::Object(map) if map.len() == 1 => map.get(UNSAFE_KEY)?.as_str(),
        _ => None,
    }
}

fn unsafe_value(text: String) -> Value {
    if ["{{", "{%", "{#"].iter().any(|open| text.contains(open)) {
        Value::Object(Map::from_iter([(
            UNSAFE_KEY.to_string(),
            Value::String(text),
        )]))
    } else {
        Value::String(text)
    }
}

/// Ansible's default `hash_behaviour=replace`: each top-level key of `higher` replaces the
/// same key of `lower` whole, even when both values are maps.
pub fn merge(lower: &mut Vars, higher: &Vars) {
    for (key, value) in higher {
        lower.insert(key.clone(), value.clone());
    }
}

pub(crate) fn parse_vars_text(path: &Path, text: &str) -> Result<Vars, InventoryError> {
    precheck_yaml(path, text)?;
    let mapping: Option<Mapping> =
        serde_yaml_ng::from_str(text).map_err(|e| yaml_error(path, e))?;
    mapping_to_vars(path, mapping.unwrap_or_default(), "")
}

/// What is checked before YAML text reaches the parser. Kolla users often keep passwords.yml
/// encrypted: say so instead of a confusing YAML error. Flow collections nested past
/// [`MAX_NESTING`] are refused before parsing, which would take quadratic time.
pub(crate) fn precheck_yaml(path: &Path, text: &str) -> Result<(), InventoryError> {
    if text.trim_start().starts_with("$ANSIBLE_VAULT;") {
        return Err(InventoryError::parse(
            path,
            1,
            "file is encrypted with ansible-vault; decrypt it first (ansible-vault decrypt)",
        ));
    }
    if let Some(line) = crate::yaml_depth::too_deep_at(text) {
        return Err(InventoryError::parse(
            path,
            line,
            format!("[ ] or {{ }} nested deeper than {MAX_NESTING} levels"),
        ));
    }
    Ok(())
}

/// A YAML error as `file:line: message`, without repeating serde_yaml_ng's own
/// "at line L column C" for that same line, and without the value serde quotes in a type
/// error (`invalid type: string "..."`): it may be a password.
pub(crate) fn yaml_error(path: &Path, error: serde_yaml_ng::Error) -> InventoryError {
    let text = without_values(&error.to_string());
    match error.location() {
        Some(at) => {
            let location = format!(" at line {} column {}", at.line(), at.column());
            InventoryError::parse(path, at.line(), text.replacen(&location, "", 1))
        }
        None => InventoryError::invalid(path, text),
    }
}

/// serde's `invalid type: string "hunter2", expected a map` (and `invalid value: ...`) with
/// only the kind of value kept: `invalid type: string, expected a map`.
fn without_values(message: &str) -> String {
    for lead in ["invalid type: ", "invalid value: "] {
        let Some(start) = message.find(lead).map(|i| i + lead.len()) else {
            continue;
        };
        let Some(end) = message.rfind(", expected ").filter(|end| *end >= start) else {
            continue;
        };
        let found = &message[start..end];
        // serde writes the value after the kind: `string "x"`, `integer `5``, ...
        let kind = found.find([' ', '`', '"']).map_or(found, |i| &found[..i]);
        let kind = match kind {
            "floating" => "floating point number",
            "byte" => "byte array",
            "unit" => "unit value",
            other => other,
        };
        return format!("{}{kind}{}", &message[..start], &message[end..]);
    }
    message.to_string()
}

/// `context` names where the mapping sits (e.g. `host "compute01"`) for errors with no line.
pub(crate) fn mapping_to_vars(
    path: &Path,
    mapping: Mapping,
    context: &str,
) -> Result<Vars, InventoryError> {
    let mut value = Yaml::Mapping(mapping);
    value.apply_merge().map_err(|e| {
        InventoryError::invalid(path, format!("{}YAML merge key (<<): {e}", prefix(context)))
    })?;
    match to_json(value, &mut Vec::new(), false) {
        Ok(Value::Object(vars)) => Ok(vars),
        Ok(_) => unreachable!("a mapping converts to an object"),
        Err((at, message)) => Err(InventoryError::invalid(
            path,
            format!("{}variable {}: {message}", prefix(context), at.join(".")),
        )),
    }
}

fn prefix(context: &str) -> String {
    if context.is_empty() {
        String::new()
    } else {
        format!("{context}: ")
    }
}

type ConvertError = (Vec<String>, String);

/// `literal`: inside an `!unsafe` value, whose text is never templated.
fn to_json(value: Yaml, at: &mut Vec<String>, literal: bool) -> Result<Value, ConvertError> {
    Ok(match value {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => number(&n),
        Yaml::String(s) if literal => unsafe_value(s),
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                at.push(i.to_string());
                out.push(to_json(item, at, literal)?);
                at.pop();
            }
            Value::Array(out)
        }
        Yaml::Mapping(mapping) => {
            let mut out = Map::new();
            for (key, item) in mapping {
                let key = key_text(&key).ok_or_else(|| {
                    (
                        at.clone(),
                        "map keys must be strings, numbers or booleans".to_string(),
                    )
                })?;
                at.push(key.clone());
                let item = to_json(item, at, literal)?;
                at.pop();
                out.insert(key, item);
            }
            Value::Object(out)
        }
        Yaml::Tagged(tagged) => {
            if tagged.tag == "vault" {
                return Err((
                    at.clone(),
                    "!vault values are not supported; decrypt them first".to_string(),
                ));
            }
            // Ansible's `!unsafe` stops templating, for everything inside the value; other
            // tags carry no meaning here.
            let literal = literal || tagged.tag == "unsafe";
            to_json(tagged.value, at, literal)?
        }
    })
}

fn number(n: &serde_yaml_ng::Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::from(i)
    } else if let Some(u) = n.as_u64() {
        Value::from(u)
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        // JSON has no NaN or infinity: keep YAML's spelling as text.
        Number::from_f64(f).map_or_else(|| Value::String(n.to_string()), Value::Number)
    }
}

fn key_text(key: &Yaml) -> Option<String> {
    match key {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        Yaml::Null => Some("null".to_string()),
        Yaml::Tagged(t) => key_text(&t.value),
        Yaml::Sequence(_) | Yaml::Mapping(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::without_values;

    #[test]
    fn type_errors_keep_the_kind_not_the_value() {
        for (message, want) in [
            (
                "invalid type: string \"pw, expected x\", expected a YAML mapping at line 1",
                "invalid type: string, expected a YAML mapping at line 1",
            ),
            (
                "all.hosts.h1: invalid value: integer `5`, expected a map",
                "all.hosts.h1: invalid value: integer, expected a map",
            ),
            (
                "invalid type: floating point `1.5`, expected a string",
                "invalid type: floating point number, expected a string",
            ),
            (
                "invalid type: sequence, expected a map",
                "invalid type: sequence, expected a map",
            ),
            (
                "duplicate entry with key \"a\"",
                "duplicate entry with key \"a\"",
            ),
        ] {
            assert_eq!(without_values(message), want);
        }
    }
}
