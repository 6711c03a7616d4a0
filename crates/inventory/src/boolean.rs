//! Ansible's boolean conversion (`ansible.module_utils.parsing.convert_bool`), which the `bool`
//! filter and `when:` conditions on plain variables rely on.

use serde_json::Value;

/// The strict reading: `Some` only for values Ansible recognises as a boolean.
///
/// True: `true`, `1`, `1.0` and the strings `y yes on 1 true t`; false: `false`, `0`, `0.0` and
/// `n no off 0 false f`. Strings are trimmed and case-insensitive. Anything else is `None`.
pub fn parse_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" | "on" | "1" | "true" | "t" => Some(true),
            "n" | "no" | "off" | "0" | "false" | "f" => Some(false),
            _ => None,
        },
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The lenient reading Ansible uses by default: whatever is not recognised as true is false
/// (so `"2"`, `""`, `null` and lists are all false).
pub fn truthy(value: &Value) -> bool {
    parse_bool(value).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_case_insensitive_and_trimmed() {
        for s in ["yes", "YES", " on ", "True", "t", "Y", "1"] {
            assert_eq!(parse_bool(&json!(s)), Some(true), "{s:?}");
        }
        for s in ["no", "Off", "FALSE", "f", "n", "0 "] {
            assert_eq!(parse_bool(&json!(s)), Some(false), "{s:?}");
        }
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(parse_bool(&json!(true)), Some(true));
        assert_eq!(parse_bool(&json!(false)), Some(false));
        assert_eq!(parse_bool(&json!(1)), Some(true));
        assert_eq!(parse_bool(&json!(1.0)), Some(true));
        assert_eq!(parse_bool(&json!(0)), Some(false));
        assert_eq!(parse_bool(&json!(2)), None);
    }

    #[test]
    fn unrecognised_values_are_not_booleans_and_not_truthy() {
        for v in [
            json!("2"),
            json!(""),
            json!("enabled"),
            json!(null),
            json!([1]),
            json!({"a": 1}),
        ] {
            assert_eq!(parse_bool(&v), None, "{v}");
            assert!(!truthy(&v), "{v}");
        }
        assert!(truthy(&json!("On")));
        assert!(!truthy(&json!("off")));
    }
}
