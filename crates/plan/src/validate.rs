//! Types of the variables that reach config files, command lines and host paths, checked
//! for every host before anything is rendered. A value that is not what it claims to be
//! (an "address" holding a quote and a newline, a "port" holding words) would otherwise end
//! up inside libvirtd.conf or a remote command. Messages name the variable and what is
//! wrong, never the value (it may be a secret, or hostile).

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value as Json;

/// What a variable must hold (the playbook's `validate:` section): a type name, or
/// `{enum: [a, b]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "TypeYaml")]
pub enum VarType {
    /// An IPv4 or IPv6 address.
    Ip,
    /// A DNS host name (RFC 1123 labels).
    Hostname,
    /// An IP address or a host name.
    Host,
    /// A TCP port, 1 to 65535.
    Port,
    /// A whole number from 1 to 2^32 - 1 (limits such as `max_workers`, `max_files`).
    Count,
    /// A plain word: letters, digits, `.`, `_`, `-` (user names, mechanisms, commands).
    Name,
    /// A user or group by name: a plain word, not a number (a file's owner is read back by
    /// name, so a numeric one would never be seen as in place).
    Account,
    /// A list of names, or one string of names separated by blanks (as Cyrus SASL reads
    /// `mech_list`).
    Names,
    /// An Ansible boolean: true/false, yes/no, on/off, 1/0 (any case), or a YAML boolean.
    Bool,
    /// An absolute path without `..`, control characters or quotes.
    Path,
    /// One line of text that fits inside a quoted config value: no control characters, no
    /// `"` and no `\`.
    Text,
    /// One of the listed words.
    Enum(Vec<String>),
    /// A list (maybe empty) of entries for one of libvirt's allow lists
    /// (`tls_allowed_dn_list`, `sasl_allowed_username_list`; `*` and `?` are wildcards there):
    /// each non-empty, one line, no `"` (libvirt's config strings have no escapes).
    Patterns,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TypeYaml {
    Named(String),
    Enum {
        #[serde(rename = "enum")]
        words: Vec<String>,
    },
}

impl TryFrom<TypeYaml> for VarType {
    type Error = String;
    fn try_from(raw: TypeYaml) -> Result<Self, String> {
        Ok(match raw {
            TypeYaml::Enum { words } => VarType::Enum(words),
            TypeYaml::Named(name) => match name.as_str() {
                "ip" => VarType::Ip,
                "hostname" => VarType::Hostname,
                "host" => VarType::Host,
                "port" => VarType::Port,
                "count" => VarType::Count,
                "name" => VarType::Name,
                "account" => VarType::Account,
                "names" => VarType::Names,
                "bool" => VarType::Bool,
                "path" => VarType::Path,
                "text" => VarType::Text,
                "patterns" => VarType::Patterns,
                other => {
                    return Err(format!(
                        "unknown type {other:?} (ip, hostname, host, port, count, name, account, \
                         names, bool, path, text, patterns, or {{enum: [...]}})"
                    ))
                }
            },
        })
    }
}

impl VarType {
    /// None when `value` is of this type, else what is wrong with it.
    pub fn check(&self, value: &Json) -> Option<String> {
        let text = match value {
            Json::String(s) => s.clone(),
            Json::Number(n) => n.to_string(),
            Json::Array(items) if *self == VarType::Names => {
                let bad =
                    items.is_empty() || items.iter().any(|i| VarType::Name.check(i).is_some());
                return bad.then(|| self.expected());
            }
            Json::Array(items) if *self == VarType::Patterns => {
                let bad = items.iter().any(|i| {
                    i.as_str().is_none_or(|dn| {
                        dn.is_empty() || dn.chars().any(|c| c.is_control() || c == '"')
                    })
                });
                return bad.then(|| self.expected());
            }
            _ if *self == VarType::Patterns => return Some(self.expected()),
            Json::Bool(_) if *self == VarType::Bool => return None,
            Json::Bool(_) if matches!(self, VarType::Enum(_)) => {
                return Some(self.expected());
            }
            _ => return Some(format!("{} (it is not a string)", self.expected())),
        };
        let ok = match self {
            VarType::Ip => text.parse::<IpAddr>().is_ok(),
            VarType::Hostname => is_hostname(&text),
            VarType::Host => text.parse::<IpAddr>().is_ok() || is_hostname(&text),
            VarType::Port => text.parse::<u16>().is_ok_and(|p| p > 0),
            VarType::Count => {
                text.bytes().all(|b| b.is_ascii_digit()) && text.parse::<u32>().is_ok_and(|n| n > 0)
            }
            VarType::Name => is_name(&text),
            VarType::Account => is_name(&text) && !text.bytes().all(|b| b.is_ascii_digit()),
            VarType::Bool => crate::render::parse_bool_str(&text).is_some(),
            VarType::Names => {
                let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
                !words.is_empty() && words.iter().all(|w| is_name(w))
            }
            VarType::Path => {
                text.starts_with('/')
                    && !text.split('/').any(|part| part == "..")
                    && !text
                        .chars()
                        .any(|c| c.is_control() || c == '"' || c == '\'')
            }
            VarType::Text => !text
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\'),
            VarType::Enum(words) => words.contains(&text),
            VarType::Patterns => false,
        };
        (!ok).then(|| self.expected())
    }

    fn expected(&self) -> String {
        match self {
            VarType::Ip => "must be an IP address".into(),
            VarType::Hostname => "must be a host name (letters, digits, '-', dots)".into(),
            VarType::Host => "must be an IP address or a host name".into(),
            VarType::Port => "must be a port number (1-65535)".into(),
            VarType::Count => "must be a whole number from 1 to 4294967295".into(),
            VarType::Name => "must be a plain word (letters, digits, '.', '_', '-')".into(),
            VarType::Account => {
                "must be a user or group name (letters, digits, '.', '_', '-'), not a number".into()
            }
            VarType::Names => {
                "must be a list of plain words (letters, digits, '.', '_', '-'), or one string of \
                 them separated by blanks"
                    .into()
            }
            VarType::Bool => "must be a boolean (yes/no, true/false, on/off, 1/0)".into(),
            VarType::Path => {
                "must be an absolute path without '..', quotes or control characters".into()
            }
            VarType::Text => "must be one line without '\"', '\\' or control characters".into(),
            VarType::Enum(words) => format!("must be one of: {}", words.join(", ")),
            VarType::Patterns => "must be a list of strings, each one line without '\"'".into(),
        }
    }
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with('-')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn is_hostname(text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_type_takes_its_values_and_refuses_the_rest() {
        let cases: &[(VarType, &[Json], &[Json])] = &[
            (
                VarType::Ip,
                &[json!("10.0.0.1"), json!("fd00::5")],
                &[
                    json!("10.0.0.1\"\nunix_sock_rw_perms = \"0777"),
                    json!("host"),
                    json!(5),
                ],
            ),
            (
                VarType::Hostname,
                &[
                    json!("compute01"),
                    json!("c1.example.com."),
                    json!("node_1"),
                ],
                &[
                    json!("a b"),
                    json!("x\"y"),
                    json!("-x"),
                    json!(""),
                    json!("a..b"),
                ],
            ),
            (VarType::Host, &[json!("::1"), json!("c1")], &[json!("c 1")]),
            (
                VarType::Account,
                &[json!("libvirt-qemu"), json!("nova"), json!("qemu2")],
                &[json!("107"), json!(107), json!("root:x"), json!("-g")],
            ),
            (
                VarType::Port,
                &[json!(16514), json!("16509")],
                &[json!(0), json!("70000"), json!("1; rm")],
            ),
            (
                VarType::Count,
                &[json!(50), json!("131072"), json!(4294967295u32)],
                &[
                    json!(0),
                    json!("-1"),
                    json!("+5"),
                    json!("20\nx"),
                    json!(1.5),
                ],
            ),
            (
                VarType::Name,
                &[json!("nova"), json!("SCRAM-SHA-256")],
                &[json!("-rf"), json!("a=b"), json!("")],
            ),
            (
                VarType::Names,
                &[json!(["SCRAM-SHA-256"]), json!("DIGEST-MD5 GSSAPI")],
                &[
                    json!(["ok", "no way"]),
                    json!(""),
                    json!("a\"b"),
                    json!("SCRAM-SHA-256,DIGEST-MD5"),
                ],
            ),
            (
                VarType::Bool,
                &[
                    json!(true),
                    json!("yes"),
                    json!("False"),
                    json!(1),
                    json!("on"),
                ],
                &[json!("yess"), json!("2"), json!([true])],
            ),
            (
                VarType::Path,
                &[json!("/etc/kolla")],
                &[
                    json!("etc"),
                    json!("/x/../y"),
                    json!("/x';touch /tmp/p;'"),
                    json!("/a\nb"),
                ],
            ),
            (
                VarType::Text,
                &[json!("3:stderr"), json!("1:file:/var/log/x.log")],
                &[json!("a\"\nb"), json!("a\\b")],
            ),
            (
                VarType::Enum(vec!["kvm".into(), "qemu".into()]),
                &[json!("qemu")],
                &[json!("xen"), json!(true)],
            ),
        ];
        for (ty, good, bad) in cases {
            for v in *good {
                assert_eq!(ty.check(v), None, "{ty:?} {v}");
            }
            for v in *bad {
                let e = ty.check(v).unwrap_or_else(|| panic!("{ty:?} took {v}"));
                assert!(e.starts_with("must be"), "{e}");
            }
        }
    }
}
