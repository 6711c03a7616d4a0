//! Reading the settings of libvirtd.conf (`key = value`, `#` comments), sasl2 files
//! (`key: value`) and nova.conf (`[section]` + `key = value`), each with its line number.

use std::collections::BTreeMap;

/// A setting's value (quotes removed) and the line it is on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub line: usize,
}

/// `key = value` / `key: value` lines outside any section; the last one of a key wins (as
/// libvirt reads them). `section` selects an INI section (`[libvirt]`), None: no sections.
pub fn settings(text: &str, section: Option<&str>) -> BTreeMap<String, Setting> {
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
        if section.is_some() && current.as_deref() != section {
            continue;
        }
        let Some(at) = line.find(['=', ':']) else {
            continue;
        };
        let key = line[..at].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            continue;
        }
        let value = line[at + 1..].trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
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
    fn settings_keep_the_last_value_and_its_line() {
        let text = "# c\nlisten_tcp = 1\nauth_tcp = \"none\"\n  listen_tcp = 0\n[x]\ny = 2\n";
        let s = settings(text, None);
        assert_eq!(
            s["listen_tcp"],
            Setting {
                value: "0".into(),
                line: 4
            }
        );
        assert_eq!(s["auth_tcp"].value, "none");
        let nova = "[DEFAULT]\na = 1\n[libvirt]\nconnection_uri = qemu+tcp://h/system\n";
        let l = settings(nova, Some("libvirt"));
        assert_eq!(l.len(), 1);
        assert_eq!(l["connection_uri"].line, 4);
        assert_eq!(
            settings("mech_list: scram-sha-256\n", None)["mech_list"].value,
            "scram-sha-256"
        );
        assert!(truthy("Yes") && !truthy("0"));
    }
}
