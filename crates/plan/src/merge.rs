//! Files virtfleet shares with kolla-ansible: it owns some settings in them, Kolla the rest.
//!
//! A merged file's template renders only what virtfleet owns; the host's current file supplies
//! everything else. Merging never removes anything virtfleet does not render, and a file that
//! already holds every owned setting comes back byte for byte, so a re-run changes nothing.

use serde::Deserialize;
use serde_json::Value;

/// How a playbook file is combined with the host's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    /// An INI file read by oslo.config (`nova.conf`): each `key = value` the template renders
    /// replaces that key in its section (added if missing); every other line stays as it is.
    Ini,
    /// Kolla's `config.json` for `kolla_set_configs`: each `config_files` entry the template
    /// renders replaces the host's entry with the same `dest` (added if missing); the host's
    /// other entries, `command` and `permissions` stay. `command` comes from the template only
    /// when the host's file has none.
    KollaConfig,
}

/// The content to write: `owned` merged into `current` (the host's file, `None` when absent).
pub fn merge(kind: Merge, current: Option<&[u8]>, owned: &[u8]) -> Result<Vec<u8>, String> {
    let Some(current) = current.filter(|c| !c.iter().all(u8::is_ascii_whitespace)) else {
        return Ok(owned.to_vec());
    };
    let current = std::str::from_utf8(current).map_err(|_| "the host's file is not UTF-8")?;
    let owned = std::str::from_utf8(owned).map_err(|_| "the rendered template is not UTF-8")?;
    match kind {
        Merge::Ini => Ok(merge_ini(current, owned).into_bytes()),
        Merge::KollaConfig => merge_kolla_config(current, owned),
    }
}

/// `[section]` of a header line.
fn section_name(line: &str) -> Option<&str> {
    let t = line.trim();
    t.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

/// Key of an oslo.config `key = value` (or `key: value`) line; None for comments and blanks.
fn ini_key(line: &str) -> Option<&str> {
    if line.starts_with([' ', '\t']) {
        return None; // a continuation of the previous value
    }
    let t = line.trim();
    if t.is_empty() || t.starts_with(['#', ';']) || section_name(t).is_some() {
        return None;
    }
    let at = t.find(['=', ':'])?;
    Some(t[..at].trim())
}

/// The owned settings of a rendered INI template, in order: (section, key, line).
fn owned_settings(owned: &str) -> Vec<(String, String, String)> {
    let mut section = "DEFAULT".to_string();
    let mut settings = Vec::new();
    for line in owned.lines() {
        if let Some(name) = section_name(line) {
            section = name.to_string();
        } else if let Some(key) = ini_key(line) {
            settings.push((section.clone(), key.to_string(), line.trim().to_string()));
        }
    }
    settings
}

fn merge_ini(current: &str, owned: &str) -> String {
    let mut lines: Vec<String> = current.lines().map(str::to_string).collect();
    for (section, key, setting) in owned_settings(owned) {
        set_ini(&mut lines, &section, &key, &setting);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Sets `key` in `section` to the line `setting`: replaces its first occurrence (and drops
/// later ones, which oslo.config would let win), else adds it at the end of the section,
/// else adds the section at the end of the file.
fn set_ini(lines: &mut Vec<String>, section: &str, key: &str, setting: &str) {
    // Lines before the first header belong to DEFAULT, as oslo.config reads them.
    let mut current = "DEFAULT".to_string();
    // Index after the section's last non-blank line; None while the section was not met.
    let mut section_end = None;
    let mut found = false;
    let mut i = 0;
    while i < lines.len() {
        if let Some(name) = section_name(&lines[i]) {
            current = name.to_string();
            if current == section {
                section_end = Some(i + 1);
            }
            i += 1;
            continue;
        }
        if current != section {
            i += 1;
            continue;
        }
        if ini_key(&lines[i]) == Some(key) {
            // The value's continuation lines go with it.
            let mut end = i + 1;
            while end < lines.len()
                && lines[end].starts_with([' ', '\t'])
                && !lines[end].trim().is_empty()
            {
                end += 1;
            }
            if !found {
                lines.splice(i..end, [setting.to_string()]);
                found = true;
                i += 1;
            } else {
                lines.drain(i..end);
            }
            section_end = Some(i);
            continue;
        }
        if !lines[i].trim().is_empty() {
            section_end = Some(i + 1);
        }
        i += 1;
    }
    if found {
        return;
    }
    match section_end {
        Some(at) => lines.insert(at, setting.to_string()),
        // No DEFAULT settings or header at all: settings before the first header.
        None if section == "DEFAULT" => lines.insert(0, setting.to_string()),
        None => {
            if lines.last().is_some_and(|l| !l.trim().is_empty()) {
                lines.push(String::new());
            }
            lines.push(format!("[{section}]"));
            lines.push(setting.to_string());
        }
    }
}

/// Kolla's config.json, as far as merging needs it.
fn merge_kolla_config(current: &str, owned: &str) -> Result<Vec<u8>, String> {
    let mut host: Value = serde_json::from_str(current)
        .map_err(|e| format!("the host's file is not valid JSON ({e})"))?;
    let wanted: Value = serde_json::from_str(owned)
        .map_err(|e| format!("the rendered template is not valid JSON ({e})"))?;
    let before = host.clone();
    let Some(host_map) = host.as_object_mut() else {
        return Err("the host's file is not a JSON object".into());
    };
    if let Some(command) = wanted.get("command") {
        host_map.entry("command").or_insert_with(|| command.clone());
    }
    let entries = host_map
        .entry("config_files")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(entries) = entries.as_array_mut() else {
        return Err("`config_files` in the host's file is not a list".into());
    };
    for entry in wanted
        .get("config_files")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let dest = entry.get("dest");
        match entries
            .iter_mut()
            .find(|e| dest.is_some() && e.get("dest") == dest)
        {
            Some(existing) => *existing = entry.clone(),
            None => entries.push(entry.clone()),
        }
    }
    if host == before {
        return Ok(current.as_bytes().to_vec());
    }
    // Indented by four, as kolla-ansible writes it.
    let mut text = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut text, formatter);
    serde::Serialize::serialize(&host, &mut serializer).expect("a JSON value serialises");
    text.push(b'\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KOLLA_NOVA_CONF: &str = "\
[DEFAULT]
debug = False
transport_url = rabbit://openstack:Rabbit-Secret@10.0.0.10:5672//
compute_driver = libvirt.LibvirtDriver

[libvirt]
connection_uri = qemu+tcp://10.0.0.21/system
live_migration_inbound_addr = 10.0.0.21
cpu_mode = host-passthrough

[keystone_authtoken]
password = Keystone-Secret
";

    const OWNED: &str = "\
# written by virtfleet
[DEFAULT]
compute_driver = libvirt.LibvirtDriver

[libvirt]
connection_uri = qemu+tls://compute01/system
live_migration_scheme = tls
live_migration_inbound_addr = compute01
";

    fn ini(current: &str, owned: &str) -> String {
        String::from_utf8(merge(Merge::Ini, Some(current.as_bytes()), owned.as_bytes()).unwrap())
            .unwrap()
    }

    #[test]
    fn ini_sets_owned_keys_and_keeps_everything_else() {
        let merged = ini(KOLLA_NOVA_CONF, OWNED);
        assert_eq!(
            merged,
            "\
[DEFAULT]
debug = False
transport_url = rabbit://openstack:Rabbit-Secret@10.0.0.10:5672//
compute_driver = libvirt.LibvirtDriver

[libvirt]
connection_uri = qemu+tls://compute01/system
live_migration_inbound_addr = compute01
cpu_mode = host-passthrough
live_migration_scheme = tls

[keystone_authtoken]
password = Keystone-Secret
"
        );
        // Merging again changes nothing.
        assert_eq!(ini(&merged, OWNED), merged);
    }

    #[test]
    fn ini_adds_missing_sections_and_handles_duplicates_and_continuations() {
        let current = "\
# comment before any section
[DEFAULT]
debug = True
[libvirt]
connection_uri = qemu:///system
  continued = part of the old value
virt_type=kvm
connection_uri = qemu+tcp://old/system
";
        let merged = ini(
            current,
            "[libvirt]\nconnection_uri = qemu+tls://h/system\n[vnc]\nenabled = false\n",
        );
        assert_eq!(
            merged,
            "\
# comment before any section
[DEFAULT]
debug = True
[libvirt]
connection_uri = qemu+tls://h/system
virt_type=kvm

[vnc]
enabled = false
"
        );
        assert_eq!(
            ini(
                &merged,
                "[libvirt]\nconnection_uri = qemu+tls://h/system\n[vnc]\nenabled = false\n"
            ),
            merged
        );
    }

    #[test]
    fn ini_into_a_file_without_the_default_header() {
        let merged = ini(
            "[libvirt]\nvirt_type = kvm\n",
            "[DEFAULT]\nstate_path = /var/lib/nova\n",
        );
        assert_eq!(
            merged,
            "state_path = /var/lib/nova\n[libvirt]\nvirt_type = kvm\n"
        );
    }

    #[test]
    fn a_missing_or_empty_host_file_gets_the_rendered_template() {
        for current in [None, Some(&b""[..]), Some(&b"\n"[..])] {
            let out = merge(Merge::Ini, current, OWNED.as_bytes()).unwrap();
            assert_eq!(out, OWNED.as_bytes());
        }
    }

    const KOLLA_CONFIG: &str = r#"{
    "command": "nova-compute",
    "config_files": [
        {
            "source": "/var/lib/kolla/config_files/nova.conf",
            "dest": "/etc/nova/nova.conf",
            "owner": "nova",
            "perm": "0600"
        },
        {
            "source": "/var/lib/kolla/config_files/ceph.conf",
            "dest": "/etc/ceph/ceph.conf",
            "owner": "nova",
            "perm": "0600",
            "optional": true
        }
    ],
    "permissions": [
        {"path": "/var/log/kolla/nova", "owner": "nova:nova", "recurse": true}
    ]
}
"#;

    fn config(current: &str, owned: &str) -> Value {
        let out = merge(
            Merge::KollaConfig,
            Some(current.as_bytes()),
            owned.as_bytes(),
        )
        .unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn kolla_config_upserts_entries_by_dest_and_keeps_the_rest() {
        let owned = r#"{"command": "sleep", "config_files": [
            {"source": "/var/lib/kolla/config_files/nova.conf", "dest": "/etc/nova/nova.conf", "owner": "nova", "perm": "0600"},
            {"source": "/var/lib/kolla/config_files/cacert.pem", "dest": "/etc/pki/CA/cacert.pem", "owner": "nova", "perm": "0640"}
        ]}"#;
        let merged = config(KOLLA_CONFIG, owned);
        assert_eq!(
            merged["command"], "nova-compute",
            "the host's command stays"
        );
        let dests: Vec<&str> = merged["config_files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["dest"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            [
                "/etc/nova/nova.conf",
                "/etc/ceph/ceph.conf",
                "/etc/pki/CA/cacert.pem"
            ]
        );
        assert_eq!(merged["permissions"][0]["owner"], "nova:nova");
        // Already merged: the host's bytes come back unchanged.
        let text = merge(
            Merge::KollaConfig,
            Some(KOLLA_CONFIG.as_bytes()),
            owned.as_bytes(),
        )
        .unwrap();
        assert!(String::from_utf8_lossy(&text).contains("\n    \"command\""));
        let again = merge(Merge::KollaConfig, Some(&text), owned.as_bytes()).unwrap();
        assert_eq!(again, text);
        // Nothing to add: the host's formatting is kept too.
        let none = r#"{"config_files": [{"source": "/var/lib/kolla/config_files/nova.conf", "dest": "/etc/nova/nova.conf", "owner": "nova", "perm": "0600"}]}"#;
        let same = merge(
            Merge::KollaConfig,
            Some(KOLLA_CONFIG.as_bytes()),
            none.as_bytes(),
        )
        .unwrap();
        assert_eq!(same, KOLLA_CONFIG.as_bytes());
    }

    #[test]
    fn kolla_config_takes_the_template_command_only_when_the_host_has_none() {
        let merged = config(
            r#"{"config_files": []}"#,
            r#"{"command": "nova-compute", "config_files": []}"#,
        );
        assert_eq!(merged["command"], "nova-compute");
    }

    #[test]
    fn kolla_config_that_is_not_json_is_an_error() {
        let err = merge(Merge::KollaConfig, Some(b"{not json"), b"{}").unwrap_err();
        assert!(err.contains("not valid JSON"), "{err}");
        let err = merge(Merge::KollaConfig, Some(b"[]"), b"{}").unwrap_err();
        assert!(err.contains("not a JSON object"), "{err}");
    }
}
