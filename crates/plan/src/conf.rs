//! Reading the settings of libvirtd.conf (`key = value`, `#` comments), sasl2 files
//! (`key: value`) and nova.conf (`[section]` + `key = value`), each with its line number.

use std::collections::BTreeMap;

/// A setting's value (quotes removed) and the line it is on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub line: usize,
}

/// Which setting of a key written twice the program reading the file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeated {
    /// libvirt (virConfGetValue returns the first entry: a `max_processes` appended after
    /// Kolla's is ignored, seen in the lab) and Cyrus SASL's config lookup.
    FirstWins,
    /// oslo.config (nova.conf).
    LastWins,
    /// Cyrus SASL's config lookup: the first setting of a key wins, keys in any case (it
    /// lowercases them), and the value is the rest of the line (no quotes, no comments:
    /// `mech_list: scram-sha-256 #x anonymous` offers ANONYMOUS).
    Sasl,
}

/// `key = value` / `key: value` lines outside any section, each key's setting as `repeated`
/// says the file's reader takes it. `section` selects an INI section (`[libvirt]`), None: no
/// sections.
pub fn settings(
    text: &str,
    section: Option<&str>,
    repeated: Repeated,
) -> BTreeMap<String, Setting> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim().to_string());
            continue;
        }
        // oslo.config reads `[LIBVIRT]` as `[libvirt]` (DEFAULT only as itself).
        if let Some(want) = section {
            let same = current.as_deref().is_some_and(|c| match c == "DEFAULT" {
                true => want == "DEFAULT",
                false => c.eq_ignore_ascii_case(want),
            });
            if !same {
                continue;
            }
        }
        let Some(at) = line.find(['=', ':']) else {
            continue;
        };
        let key = line[..at].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            continue;
        }
        let key = match repeated {
            Repeated::Sasl => key.to_ascii_lowercase(),
            _ => key.to_string(),
        };
        let key = key.as_str();
        let value = line[at + 1..].trim();
        let value = match repeated {
            Repeated::Sasl => value,
            // libvirt's syntax: a string in double or single quotes, a comment after it.
            Repeated::FirstWins => libvirt_value(value),
            Repeated::LastWins => ['"', '\'']
                .iter()
                .find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q))
                .unwrap_or(value),
        };
        if repeated != Repeated::LastWins && out.contains_key(key) {
            continue;
        }
        out.insert(
            key.to_string(),
            Setting {
                value: value.to_string(),
                line: i + 1,
            },
        );
    }
    out
}

/// A value as libvirt's parser reads it: the text inside the first quoted string (double or
/// single quotes), else everything before a `#` comment.
fn libvirt_value(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(rest) = value.strip_prefix(quote) {
            return rest.find(quote).map_or(rest, |end| &rest[..end]);
        }
    }
    value.split('#').next().unwrap_or(value).trim()
}

/// A libvirtd.conf / nova.conf boolean: `1`, `true`, `yes`, `on`.
pub fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_keep_the_value_their_reader_uses_and_its_line() {
        let text = "# c\nlisten_tcp = 1\nauth_tcp = \"none\"\n  listen_tcp = 0\n[x]\ny = 2\n";
        let s = settings(text, None, Repeated::LastWins);
        assert_eq!(
            s["listen_tcp"],
            Setting {
                value: "0".into(),
                line: 4
            }
        );
        // libvirt's quotes and comments.
        let libvirt = "auth_tcp = 'none'\nlisten_tcp = 1 # on\nmech = \"a#b\" # c\n";
        let l = settings(libvirt, None, Repeated::FirstWins);
        assert_eq!(l["auth_tcp"].value, "none");
        assert_eq!(l["listen_tcp"].value, "1");
        assert_eq!(l["mech"].value, "a#b");
        // oslo.config's section names other than DEFAULT in any case, and its quotes.
        let upper = "[LIBVIRT]\nlive_migration_tunnelled = 'true'\n";
        let n = settings(upper, Some("libvirt"), Repeated::LastWins);
        assert_eq!(n["live_migration_tunnelled"].value, "true");
        // libvirt reads the first: a later `auth_tcp = "sasl"` does not make it safe.
        let appended = "auth_tcp = \"none\"\nauth_tcp = \"sasl\"\n";
        let first = settings(appended, None, Repeated::FirstWins);
        assert_eq!(
            (first["auth_tcp"].value.as_str(), first["auth_tcp"].line),
            ("none", 1)
        );
        assert_eq!(s["auth_tcp"].value, "none");
        let nova = "[DEFAULT]\na = 1\n[libvirt]\nconnection_uri = qemu+tcp://h/system\n";
        let l = settings(nova, Some("libvirt"), Repeated::LastWins);
        assert_eq!(l.len(), 1);
        assert_eq!(l["connection_uri"].line, 4);
        assert_eq!(
            settings("mech_list: scram-sha-256\n", None, Repeated::FirstWins)["mech_list"].value,
            "scram-sha-256"
        );
        assert!(truthy("Yes") && !truthy("0"));
    }
}
