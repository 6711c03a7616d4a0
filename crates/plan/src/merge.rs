//! Files virtfleet shares with kolla-ansible: it owns some settings in them, Kolla the rest.
//!
//! A merged file's template renders only what virtfleet owns; the host's current file supplies
//! everything else. Merging never removes anything virtfleet does not render, and a file that
//! already holds every owned setting comes back byte for byte, so a re-run changes nothing.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

/// How a playbook file is combined with the host's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    /// An INI file read by oslo.config (`nova.conf`): each `key = value` the template renders
    /// replaces that key in its section (added if missing; a key rendered several times keeps
    /// every line); every other line stays as it is.
    Ini,
    /// Kolla's `config.json` for `kolla_set_configs`: each `config_files` entry the template
    /// renders replaces the host's entry with the same `dest` (added if missing); the host's
    /// other entries, `command` and `permissions` stay. `command` comes from the template only
    /// when the host's file has none.
    KollaConfig,
    /// A flat settings file without sections, as libvirt (`key = value`: libvirtd.conf,
    /// qemu.conf) and Cyrus SASL (`key: value`) read them: each key the template renders
    /// replaces the host's first setting of it, in place (both readers take the first); later
    /// settings of it, which nothing reads, are dropped; a key the host lacks is added at the
    /// end. Comments, blank lines and every other setting stay byte for byte: distributions
    /// ship long commented files, and operators edit them.
    Conf,
}

/// The content to write: `owned` merged into `current` (the host's file, `None` when absent).
///
/// Merging the result with the same `owned` again gives it back byte for byte; a missing or
/// blank host file gets `owned` itself, which that property covers too.
pub fn merge(kind: Merge, current: Option<&[u8]>, owned: &[u8]) -> Result<Vec<u8>, String> {
    let owned = std::str::from_utf8(owned).map_err(|_| "the rendered template is not UTF-8")?;
    // Checked whether or not the host has the file: what is pushed now is merged next time.
    let wanted = match kind {
        Merge::Ini | Merge::Conf => None,
        Merge::KollaConfig => Some(rendered_kolla_config(owned)?),
    };
    let Some(current) = current.filter(|c| !c.iter().all(u8::is_ascii_whitespace)) else {
        return Ok(owned.as_bytes().to_vec());
    };
    let current = std::str::from_utf8(current).map_err(|_| "the host's file is not UTF-8")?;
    match (kind, wanted) {
        (Merge::Conf, _) => Ok(merge_conf(current, owned)?.into_bytes()),
        (_, None) => Ok(merge_ini(current, owned).into_bytes()),
        (_, Some(wanted)) => merge_kolla_config(current, wanted),
    }
}

/// One setting of a flat settings file: its key and lines `start..end` (a libvirt list may
/// span lines: `[` to its `]`).
struct ConfSetting<'a> {
    key: &'a str,
    start: usize,
    end: usize,
}

/// The settings of a libvirt / SASL settings file in order (blank lines and `#` comments
/// skipped). Whatever else the file holds is an error: a reader that saw a line differently
/// from libvirt or Cyrus SASL could leave a setting in force that it believes replaced (a
/// `;` between two settings on one line, a lone carriage return, which libvirt reads as a
/// line end, a `"""` string spanning lines, a line Cyrus reads in pieces).
fn parse_conf<'a>(lines: &[&'a str]) -> Result<Vec<ConfSetting<'a>>, String> {
    let mut settings = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let line = conf_line(lines[i], i)?.trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let unreadable = |why: &str| format!("line {}: {why}", start + 1);
        let Some(at) = line.find(['=', ':']) else {
            return Err(unreadable("neither `key = value` nor `key: value`"));
        };
        let key = line[..at].trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(unreadable("not a setting name before its `=` or `:`"));
        }
        // Cyrus SASL (`key: value`) reads every line alone; only libvirt has lists.
        if line.as_bytes()[at] == b':' {
            settings.push(ConfSetting { key, start, end: i });
            continue;
        }
        let mut depth = list_depth(&line[at + 1..]).map_err(unreadable)?;
        while depth > 0 {
            let Some(more) = lines.get(i) else {
                return Err(unreadable("a list `[` that is never closed"));
            };
            let more = conf_line(more, i)?;
            // A list holds strings, numbers and lists only: a line that reads as a setting
            // inside one is read otherwise by whichever reader does not see the list.
            if looks_like_setting(more) {
                return Err(format!("line {}: a setting inside an open list", i + 1));
            }
            depth += list_depth(more).map_err(|why| format!("line {}: {why}", i + 1))?;
            i += 1;
        }
        settings.push(ConfSetting { key, start, end: i });
    }
    Ok(settings)
}

/// Whether a libvirt or SASL settings file reads one setting per line, as virtfleet's merge
/// and audit read it (see [`Merge::Conf`]); the first line that does not, and why.
pub fn conf_readable(text: &str) -> Result<(), String> {
    parse_conf(&split_lines(text)).map(drop)
}

/// Whether a line starts like `key =` or `key:` (a name, then the separator).
fn looks_like_setting(line: &str) -> bool {
    let line = line.trim_start();
    let name = line
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
    let len = name.count();
    len > 0 && line[len..].trim_start().starts_with(['=', ':'])
}

/// One line as both readers see it (a CRLF line end aside), or why they would not.
fn conf_line(line: &str, index: usize) -> Result<&str, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let why = if line.contains('\r') {
        "a carriage return inside the line (libvirt reads it as a line end)"
    } else if line.len() > 4000 {
        "longer than 4000 bytes (Cyrus SASL reads a long line in pieces)"
    } else {
        return Ok(line);
    };
    Err(format!("line {}: {why}", index + 1))
}

/// How many libvirt lists a piece of a value opens and does not close (brackets inside
/// quoted strings and after a `#` comment do not count); an error for what libvirt reads
/// otherwise than one setting per line (`;`, `"""`).
fn list_depth(text: &str) -> Result<i32, &'static str> {
    if text.contains("\"\"\"") && !text.trim_start().starts_with('#') {
        return Err("a triple-quoted string (it may span lines)");
    }
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => break,
            (None, ';') => return Err("a `;`: libvirt reads a second setting after it"),
            (None, '[') => depth += 1,
            (None, ']') => depth -= 1,
            _ => {}
        }
    }
    Ok(depth)
}

/// See [`Merge::Conf`]. A key whose only setting already reads as rendered (spaces around
/// its lines aside) is left as it is, so a merged file comes back unchanged. Keys match in any
/// case (Cyrus SASL lowercases them), and a host file that cannot be read as both readers
/// read it is an error, never merged around.
fn merge_conf(current: &str, owned: &str) -> Result<String, String> {
    let lines = split_lines(current);
    let settings = parse_conf(&lines).map_err(|e| format!("the host's file, {e}"))?;
    let owned_lines = split_lines(owned);
    let rendered_settings =
        parse_conf(&owned_lines).map_err(|e| format!("the rendered template, {e}"))?;
    let mut skip: HashMap<usize, usize> = HashMap::new();
    let mut insert: HashMap<usize, Vec<&str>> = HashMap::new();
    let mut append: Vec<&str> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for rendered in &rendered_settings {
        if seen.iter().any(|k| k.eq_ignore_ascii_case(rendered.key)) {
            continue;
        }
        seen.push(rendered.key);
        let want = &owned_lines[rendered.start..rendered.end];
        let found: Vec<&ConfSetting> = settings
            .iter()
            .filter(|s| s.key.eq_ignore_ascii_case(rendered.key))
            .collect();
        let same = |s: &ConfSetting| {
            let have = &lines[s.start..s.end];
            have.len() == want.len() && have.iter().zip(want).all(|(a, b)| a.trim() == b.trim())
        };
        match found.as_slice() {
            [only] if same(only) => {}
            [] => append.extend(want),
            [first, ..] => {
                insert.insert(first.start, want.to_vec());
                skip.extend(found.iter().map(|s| (s.start, s.end)));
            }
        }
    }
    if skip.is_empty() && append.is_empty() {
        return Ok(current.to_string());
    }
    let mut out: Vec<&str> = Vec::with_capacity(lines.len() + append.len());
    let mut i = 0;
    while i < lines.len() {
        if let Some(block) = insert.get(&i) {
            out.extend(block);
        }
        match skip.get(&i) {
            Some(&end) => i = end,
            None => {
                out.push(lines[i]);
                i += 1;
            }
        }
    }
    out.extend(append);
    let mut text = out.join("\n");
    text.push('\n');
    Ok(text)
}

/// What oslo.config reads for `key` in `section` of an INI text: the last setting's value
/// (its first line after `=` or `:`, trimmed, one pair of matching quotes removed), in any
/// section of that name (oslo.config reads `[LIBVIRT]` as `[libvirt]`; only DEFAULT is
/// exact); None where the key is not set.
pub fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let lines = split_lines(text);
    let (settings, _) = parse_ini(&lines);
    let wanted = group(section);
    let last = settings
        .iter()
        .rev()
        .find(|s| group(s.section) == wanted && s.key == key)?;
    let line = lines[last.start].trim();
    let at = line.find(['=', ':'])?;
    let value = line[at + 1..].trim();
    let unquoted = ['"', '\''].iter().find_map(|q| {
        let inner = value.strip_prefix(*q)?.strip_suffix(*q)?;
        Some(inner)
    });
    Some(unquoted.unwrap_or(value).to_string())
}

/// A section name as oslo.config groups it: DEFAULT as itself, any other in any case.
fn group(name: &str) -> String {
    match name {
        "DEFAULT" => name.to_string(),
        _ => name.to_ascii_lowercase(),
    }
}

/// Whether an oslo.config boolean reads as true (`true`, `yes`, `on`, `1`; any case).
pub fn ini_true(value: &str) -> bool {
    ["true", "yes", "on", "1"]
        .iter()
        .any(|t| value.eq_ignore_ascii_case(t))
}

/// What one line of an oslo.config INI file is, read as oslo.config's parser does: an
/// indented line continues the value above it (even one that looks like a header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IniLine<'a> {
    Header(&'a str),
    Key(&'a str),
    Continuation,
    /// Blank lines, comments and lines that are none of the above.
    Other,
}

fn ini_line(line: &str) -> IniLine<'_> {
    let t = line.trim();
    if line.starts_with([' ', '\t']) {
        return if t.is_empty() {
            IniLine::Other
        } else {
            IniLine::Continuation
        };
    }
    if t.is_empty() || t.starts_with(['#', ';']) {
        return IniLine::Other;
    }
    if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return IniLine::Header(name.trim());
    }
    match t.find(['=', ':']) {
        Some(at) => IniLine::Key(t[..at].trim()),
        None => IniLine::Other,
    }
}

/// One `key = value` of an INI file: lines `start..end`, its continuation lines included.
struct Setting<'a> {
    section: &'a str,
    key: &'a str,
    start: usize,
    end: usize,
}

/// The settings of an INI file in order, and where each section ends: the index after its
/// last non-blank line (its header's, if it has nothing else), in its last occurrence. Lines
/// before the first header belong to DEFAULT, as oslo.config reads them.
fn parse_ini<'a>(lines: &[&'a str]) -> (Vec<Setting<'a>>, HashMap<&'a str, usize>) {
    let mut settings: Vec<Setting<'a>> = Vec::new();
    let mut section_end = HashMap::new();
    let mut section = "DEFAULT";
    let mut in_setting = false;
    for (i, line) in lines.iter().enumerate() {
        let kind = ini_line(line);
        match kind {
            IniLine::Header(name) => {
                section = name;
                section_end.insert(section, i + 1);
            }
            IniLine::Key(key) => settings.push(Setting {
                section,
                key,
                start: i,
                end: i + 1,
            }),
            IniLine::Continuation if in_setting => {
                settings.last_mut().expect("in a setting").end = i + 1;
            }
            IniLine::Continuation | IniLine::Other => {}
        }
        in_setting =
            matches!(kind, IniLine::Key(_)) || (in_setting && kind == IniLine::Continuation);
        if !line.trim().is_empty() {
            section_end.insert(section, i + 1);
        }
    }
    (settings, section_end)
}

/// The lines of `text` split at `\n` only (a `\r` stays in its line, so untouched lines keep
/// their bytes), without the empty piece after a final newline.
fn split_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    if text.ends_with('\n') {
        lines.pop();
    }
    lines
}

/// A key the template renders, with every setting of it in order, each as its lines.
struct OwnedKey<'a> {
    section: &'a str,
    key: &'a str,
    settings: Vec<Vec<&'a str>>,
}

/// Every key the template renders, once, in order of first appearance (a key rendered several
/// times in a section, like oslo.config's multi-valued options, keeps every setting). Each
/// setting's first line is trimmed; continuation lines are kept as they are.
fn owned_keys<'a>(lines: &[&'a str]) -> Vec<OwnedKey<'a>> {
    let (settings, _) = parse_ini(lines);
    let mut keys: Vec<OwnedKey> = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for s in settings {
        let mut text = vec![lines[s.start].trim()];
        text.extend(&lines[s.start + 1..s.end]);
        let at = *index.entry((s.section, s.key)).or_insert_with(|| {
            keys.push(OwnedKey {
                section: s.section,
                key: s.key,
                settings: Vec::new(),
            });
            keys.len() - 1
        });
        keys[at].settings.push(text);
    }
    keys
}

/// Each key the template renders replaces that key's settings in its section: its settings
/// go where the first one was and the others are dropped (oslo.config would let later ones
/// win); a key the section lacks is added after its last line, a section the file lacks at the
/// end. A key whose settings already read as rendered (same lines in the same order, spaces
/// around them aside) is left as it is, and a file where every key does comes back unchanged.
/// Sections are matched as oslo.config groups them: `[LIBVIRT]` is `[libvirt]` (DEFAULT only
/// as itself), so a host's differently written section cannot outvote a rendered key.
fn merge_ini(current: &str, owned: &str) -> String {
    let lines = split_lines(current);
    let (settings, raw_ends) = parse_ini(&lines);
    let mut section_end: HashMap<String, usize> = HashMap::new();
    for (name, end) in raw_ends {
        let at = section_end.entry(group(name)).or_default();
        *at = (*at).max(end);
    }
    let owned_lines = split_lines(owned);
    // Lines to drop (start -> end), lines to put before line i, sections to add at the end.
    let mut skip: HashMap<usize, usize> = HashMap::new();
    let mut insert: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    let mut new_sections: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut new_index: HashMap<String, usize> = HashMap::new();
    let mut by_key: HashMap<(String, &str), Vec<&Setting>> = HashMap::new();
    for s in &settings {
        by_key.entry((group(s.section), s.key)).or_default().push(s);
    }
    for owned in owned_keys(&owned_lines) {
        let (section, rendered) = (owned.section, owned.settings);
        let found = by_key
            .get(&(group(section), owned.key))
            .map_or(&[][..], Vec::as_slice);
        let have: Vec<Vec<&str>> = found
            .iter()
            .map(|s| lines[s.start..s.end].iter().map(|l| l.trim()).collect())
            .collect();
        let want: Vec<Vec<&str>> = rendered
            .iter()
            .map(|setting| setting.iter().map(|l| l.trim()).collect())
            .collect();
        if have == want {
            continue;
        }
        let block = rendered.into_iter().flatten();
        if let Some(first) = found.first() {
            insert.entry(first.start).or_default().extend(block);
            skip.extend(found.iter().map(|s| (s.start, s.end)));
        } else if let Some(&at) = section_end.get(&group(section)) {
            insert.entry(at).or_default().extend(block);
        } else if section == "DEFAULT" {
            insert.entry(0).or_default().extend(block);
        } else {
            let at = *new_index.entry(group(section)).or_insert_with(|| {
                new_sections.push((section, Vec::new()));
                new_sections.len() - 1
            });
            new_sections[at].1.extend(block);
        }
    }
    if insert.is_empty() && new_sections.is_empty() {
        return current.to_string();
    }
    let mut out: Vec<&str> = Vec::with_capacity(lines.len() + 8);
    let mut i = 0;
    while i <= lines.len() {
        if let Some(block) = insert.get(&i) {
            out.extend(block);
        }
        if i == lines.len() {
            break;
        }
        match skip.get(&i) {
            Some(&end) => i = end,
            None => {
                out.push(lines[i]);
                i += 1;
            }
        }
    }
    let headers: Vec<String> = new_sections
        .iter()
        .map(|(name, _)| format!("[{name}]"))
        .collect();
    for ((_, block), header) in new_sections.iter().zip(&headers) {
        if out.last().is_some_and(|l| !l.trim().is_empty()) {
            out.push("");
        }
        out.push(header);
        out.extend(block);
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// The rendered config.json: an object whose `config_files` (if any) lists entries that each
/// have a `dest`, no two the same, since entries are matched by `dest`.
fn rendered_kolla_config(owned: &str) -> Result<Value, String> {
    let wanted: Value = serde_json::from_str(owned)
        .map_err(|e| format!("the rendered template is not valid JSON ({e})"))?;
    let Some(map) = wanted.as_object() else {
        return Err("the rendered template is not a JSON object".into());
    };
    let entries = match map.get("config_files") {
        None => &Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err("`config_files` in the rendered template is not a list".into()),
    };
    let mut dests = std::collections::HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some(dest) = entry.get("dest") else {
            return Err(format!(
                "`config_files` entry {} in the rendered template has no `dest`",
                i + 1
            ));
        };
        if !dests.insert(dest.to_string()) {
            return Err(format!(
                "`config_files` in the rendered template has two entries for `dest` {dest}"
            ));
        }
    }
    Ok(wanted)
}

/// Kolla's config.json, as far as merging needs it.
fn merge_kolla_config(current: &str, wanted: Value) -> Result<Vec<u8>, String> {
    let mut host: Value = serde_json::from_str(current)
        .map_err(|e| format!("the host's file is not valid JSON ({e})"))?;
    let before = host.clone();
    let Some(host_map) = host.as_object_mut() else {
        return Err("the host's file is not a JSON object".into());
    };
    if let Some(command) = wanted.get("command") {
        host_map.entry("command").or_insert_with(|| command.clone());
    }
    let wanted_entries = match wanted.get("config_files").and_then(Value::as_array) {
        Some(entries) if !entries.is_empty() => entries,
        _ => &Vec::new(),
    };
    let entries = match host_map.get_mut("config_files") {
        Some(entries) => entries,
        None if wanted_entries.is_empty() => &mut Value::Array(Vec::new()),
        None => host_map
            .entry("config_files")
            .or_insert_with(|| Value::Array(Vec::new())),
    };
    let Some(entries) = entries.as_array_mut() else {
        return Err("`config_files` in the host's file is not a list".into());
    };
    for entry in wanted_entries {
        let dest = entry.get("dest");
        match entries.iter_mut().find(|e| e.get("dest") == dest) {
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

    const DEBIAN_LIBVIRTD_CONF: &str = "\
# Master libvirt daemon configuration file
#
#listen_tls = 0
#auth_tls = \"sasl\"
auth_tcp = \"none\"
max_clients = 5000
tls_allowed_dn_list = [\"C=GB,CN=old\",
   \"C=GB,CN=older\"]   # kept by hand
log_level = 3
auth_tcp = \"sasl\"
";

    #[test]
    fn a_conf_merge_sets_the_first_setting_in_place_and_keeps_every_other_line() {
        let owned = "auth_tcp = \"sasl\"\nauth_tls = \"sasl\"\ntls_allowed_dn_list = [\"CN=a\", \"CN=b\"]\n";
        let merged = merge(
            Merge::Conf,
            Some(DEBIAN_LIBVIRTD_CONF.as_bytes()),
            owned.as_bytes(),
        );
        let merged = String::from_utf8(merged.unwrap()).unwrap();
        assert_eq!(
            merged,
            "\
# Master libvirt daemon configuration file
#
#listen_tls = 0
#auth_tls = \"sasl\"
auth_tcp = \"sasl\"
max_clients = 5000
tls_allowed_dn_list = [\"CN=a\", \"CN=b\"]
log_level = 3
auth_tls = \"sasl\"
"
        );
        let again = merge(Merge::Conf, Some(merged.as_bytes()), owned.as_bytes()).unwrap();
        assert_eq!(
            again,
            merged.as_bytes(),
            "a merged file comes back byte for byte"
        );
        let untouched = "# none of ours\nmax_clients = 1\n";
        let merged = merge(
            Merge::Conf,
            Some(b"auth_tls = \"sasl\"\n# none of ours\nmax_clients = 1"),
            b"auth_tls = \"sasl\"\n",
        )
        .unwrap();
        assert_eq!(
            merged,
            format!("auth_tls = \"sasl\"\n{}", untouched.trim_end()).as_bytes()
        );
    }

    #[test]
    fn a_conf_file_read_otherwise_by_libvirt_or_sasl_is_refused_not_merged_around() {
        let owned = b"auth_tls = \"sasl\"\ntls_no_verify_certificate = 0\n";
        let hostile = [
            // Two settings on one line: libvirt takes this auth_tls first.
            "max_clients = 5000; auth_tls = \"none\"\nauth_tls = \"sasl\"\n",
            // A lone carriage return is a line end to libvirt.
            "max_clients = 1\rauth_tls = \"none\"\nauth_tls = \"sasl\"\n",
            // The expected lines hidden inside a triple-quoted string.
            "x = \"\"\"\nauth_tls = \"sasl\"\ntls_no_verify_certificate = 0\n\"\"\"\n",
            // Not a setting at all.
            "auth_tls \"none\"\n",
            // A "list" around settings: a reader that does not see the list reads them.
            "x = [\nauth_tls = \"none\"\n]\n",
            // A list never closed.
            "x = [\"a\",\n",
        ];
        for host in hostile {
            let err = merge(Merge::Conf, Some(host.as_bytes()), owned).unwrap_err();
            assert!(err.contains("line "), "{host:?}: {err}");
        }
        // Cyrus SASL reads each line alone: no "list" hides a setting from the merge.
        let host = b"x_open: [\nMECH_LIST: PLAIN\nx_close: ]\n";
        let merged = merge(Merge::Conf, Some(host), b"mech_list: scram-sha-256\n").unwrap();
        assert_eq!(merged, b"x_open: [\nmech_list: scram-sha-256\nx_close: ]\n");
        // A key written in capitals (Cyrus SASL lowercases keys) is the same key.
        let merged = merge(
            Merge::Conf,
            Some(b"MECH_LIST: plain\n"),
            b"mech_list: scram-sha-256\n",
        );
        assert_eq!(merged.unwrap(), b"mech_list: scram-sha-256\n");
        // CRLF line ends and `;` inside quotes or comments are read as libvirt does.
        let host = "a = \"x;y\" # c; d\r\nauth_tls = \"none\"\r\n";
        let merged = merge(Merge::Conf, Some(host.as_bytes()), b"auth_tls = \"sasl\"\n").unwrap();
        assert_eq!(merged, b"a = \"x;y\" # c; d\r\nauth_tls = \"sasl\"\n");
    }

    #[test]
    fn a_conf_merge_reads_sasl_colons_and_leaves_brackets_in_quotes_alone() {
        let host = "# SASL\nmech_list: gssapi\nkeytab: /etc/libvirt/krb5.tab\n";
        let merged = merge(
            Merge::Conf,
            Some(host.as_bytes()),
            b"mech_list: scram-sha-256\nsasldb_path: /etc/libvirt/passwd.db\n",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(merged).unwrap(),
            "# SASL\nmech_list: scram-sha-256\nkeytab: /etc/libvirt/krb5.tab\nsasldb_path: /etc/libvirt/passwd.db\n"
        );
        let host = "a = \"[not a list\"\nb = 1\n";
        let merged = merge(Merge::Conf, Some(host.as_bytes()), b"b = 2\n").unwrap();
        assert_eq!(merged, b"a = \"[not a list\"\nb = 2\n");
    }

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
    fn a_section_written_in_another_case_is_the_same_section_as_oslo_config_reads_it() {
        // nova reads [LIBVIRT] as [libvirt]: the rendered key replaces the host's setting
        // there, instead of a second [libvirt] whose value the host's later one would outvote.
        let host =
            "[DEFAULT]\ndebug = False\n\n[LIBVIRT]\nlive_migration_with_native_tls = false\n";
        let owned = "[libvirt]\nlive_migration_with_native_tls = true\n";
        let merged = ini(host, owned);
        assert_eq!(
            merged,
            "[DEFAULT]\ndebug = False\n\n[LIBVIRT]\nlive_migration_with_native_tls = true\n"
        );
        assert_eq!(
            crate::ini_value(&merged, "libvirt", "live_migration_with_native_tls").as_deref(),
            Some("true")
        );
        assert_eq!(ini(&merged, owned), merged, "a re-run changes nothing");
        // A key the host lacks goes into its section, whatever its case.
        let added = ini(
            "[Libvirt]\nvirt_type = kvm\n",
            "[libvirt]\nconnection_uri = x\n",
        );
        assert_eq!(added, "[Libvirt]\nvirt_type = kvm\nconnection_uri = x\n");
        // DEFAULT is only itself.
        let default = ini("[default]\na = 1\n", "[DEFAULT]\nb = 2\n");
        assert_eq!(default, "b = 2\n[default]\na = 1\n");
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

    /// Merges `owned` into `current`, then into the result again: the second merge must give
    /// the first one's bytes back (what fuzz/fuzz_targets/merge.rs checks on random input).
    fn merged_twice(kind: Merge, current: Option<&str>, owned: &str) -> String {
        let once = merge(kind, current.map(str::as_bytes), owned.as_bytes()).unwrap();
        let twice = merge(kind, Some(&once), owned.as_bytes()).unwrap();
        let once = String::from_utf8(once).unwrap();
        assert_eq!(
            String::from_utf8(twice).unwrap(),
            once,
            "{current:?} merged with {owned:?} changes on a re-run"
        );
        once
    }

    #[test]
    fn ini_merged_again_is_unchanged_whatever_the_layout() {
        // Each of these (found by the merge fuzz target) changed again on the second run.
        let cases: &[(Option<&str>, &str)] = &[
            // The template pushed as is (no host file), then merged into itself.
            (None, "state_path = /var/lib/nova"),
            (None, "state_path = /var/lib/nova \t\t\n[libvirt]\n"),
            (None, "[libvirt]\nconnection_uri = a\nconnection_uri = b\n"),
            (
                None,
                "[libvirt]\nconnection_uri = qemu:///system\n  continued\nvirt_type=kvm\n",
            ),
            (
                None,
                "[libvirt]\nconnection_uri = a\n\t[vnc]\nvirt_type = kvm\n",
            ),
            (None, "\r\r\rstate_path = /x\r"),
            // A host file with an indented header.
            (
                Some("[libvirt]\nvirt_type = kvm\n  [vnc]\nx = 1\n"),
                "[vnc]\nenabled = false\n[libvirt]\nx = 2\n",
            ),
        ];
        for (current, owned) in cases {
            merged_twice(Merge::Ini, *current, owned);
        }
        // Replaced, added and new-section settings, and no final newline, still hold.
        merged_twice(
            Merge::Ini,
            Some("debug = True"),
            "state_path = /var/lib/nova\n",
        );
        merged_twice(
            Merge::Ini,
            Some("[libvirt]\na = 1\n\n[vnc]\n"),
            "[libvirt]\na = 2\n  two\nb = 3\n[new]\nc = 4\n",
        );
    }

    #[test]
    fn ini_keeps_the_bytes_of_settings_that_already_read_as_rendered() {
        // CRLF line ends and blanks around a value: oslo.config reads the same setting.
        let current = "[libvirt]\r\nvirt_type = kvm  \r\ncpu_mode = host-model\r\n";
        assert_eq!(ini(current, "[libvirt]\nvirt_type = kvm\n"), current);
        assert_eq!(ini("a = 1", "a = 1\n"), "a = 1", "no final newline added");
        // Only the changed setting is rewritten.
        assert_eq!(
            ini(current, "[libvirt]\nvirt_type = qemu\n"),
            "[libvirt]\r\nvirt_type = qemu\ncpu_mode = host-model\r\n"
        );
    }

    #[test]
    fn ini_key_rendered_several_times_keeps_every_line_in_order() {
        // A multi-valued option (oslo.config MultiStrOpt): the template's lines replace the
        // host's, at the place of the first.
        let merged = merged_twice(
            Merge::Ini,
            Some("[pci]\ndevice_spec = old\nalias = x\ndevice_spec = older\n"),
            "[pci]\ndevice_spec = a\ndevice_spec = b\n",
        );
        assert_eq!(
            merged,
            "[pci]\ndevice_spec = a\ndevice_spec = b\nalias = x\n"
        );
        // A value's continuation lines go with it, both ways.
        let merged = merged_twice(
            Merge::Ini,
            Some("[libvirt]\ncpu_models = old\n  older\nvirt_type = kvm\n"),
            "[libvirt]\ncpu_models = a\n  b\n",
        );
        assert_eq!(merged, "[libvirt]\ncpu_models = a\n  b\nvirt_type = kvm\n");
    }

    #[test]
    fn ini_indented_lines_continue_values_as_in_oslo_config() {
        // `  [vnc]` under a key is part of its value, not a header.
        let merged = merged_twice(
            Merge::Ini,
            Some("[libvirt]\nvirt_type = kvm\n  [vnc]\n"),
            "[vnc]\nenabled = false\n",
        );
        assert_eq!(
            merged,
            "[libvirt]\nvirt_type = kvm\n  [vnc]\n\n[vnc]\nenabled = false\n"
        );
    }

    #[test]
    fn kolla_config_template_is_checked_even_without_a_host_file() {
        // Pushed unchecked, these failed every later run ("the host's file is not valid JSON").
        for (owned, message) in [
            ("{err}", "not valid JSON"),
            ("[]", "not a JSON object"),
            (r#"{"config_files": {}}"#, "is not a list"),
            (
                r#"{"config_files": [{"source": "a"}]}"#,
                "entry 1 in the rendered template has no `dest`",
            ),
            (
                r#"{"config_files": [{"dest": "/a"}, {"dest": "/a", "perm": "0600"}]}"#,
                "two entries for `dest` \"/a\"",
            ),
        ] {
            for current in [None, Some(&b"{}"[..])] {
                let err = merge(Merge::KollaConfig, current, owned.as_bytes()).unwrap_err();
                assert!(err.contains(message), "{owned}: {err}");
            }
        }
    }

    #[test]
    fn kolla_config_without_entries_on_either_side_is_left_alone() {
        let owned = r#"{"command": "nova-compute"}"#;
        assert_eq!(merged_twice(Merge::KollaConfig, None, owned), owned);
        let host = "{\"command\": \"x\", \"permissions\": []}\n";
        assert_eq!(merged_twice(Merge::KollaConfig, Some(host), owned), host);
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
