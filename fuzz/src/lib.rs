//! What the fuzz targets share: each target is one function here, so a reproducer can also be
//! replayed from a plain test or a debugger (`cargo fuzz run <target> <file>` is the usual way).
//!
//! Inputs that are files in real use (inventories, vars files) are written to a scratch
//! directory and loaded through the public, path-based API, as the `virtfleet` binary does.
//! Properties the code documents are asserted, so breaking one is a crash like a panic.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use time::OffsetDateTime;

/// A directory private to this process (under `$TMPDIR`, which scripts/fuzz.sh points into
/// fuzz/target/ and removes afterwards), with nothing beside the file under test: no
/// `group_vars/` or `host_vars/` unless the input itself names them.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("virtfleet-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("inv")).expect("scratch directory");
        dir
    })
}

/// Writes `data` as `scratch/inv/<name>` and returns the path.
fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch().join("inv").join(name);
    std::fs::write(&path, data).expect("writing the scratch file");
    path
}

/// `text NUL rest`: the text before the last NUL, and what follows it (if there is a NUL).
fn split_last_nul(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().rposition(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    }
}

/// At most this many hosts and groups are asked about per input: an inventory may hold up to
/// 100 000 hosts (host ranges), and a copy of Ansible's `groups` goes into each host's vars.
const ASKED_PER_INPUT: usize = 4;

/// Inventories whose host ranges add up to more hosts than this are not loaded, unless one
/// line alone asks for more than the inventory limit (100 000 hosts, which must be refused
/// before anything is expanded). Loading 100 000 hosts takes 0.65 s in a release build but
/// about 8 s with the fuzzer's instrumentation, which would read as a hang (the limit itself is
/// tested in crates/inventory).
const MAX_FUZZED_HOSTS: u64 = 20_000;
const INVENTORY_MAX_HOSTS: u64 = 100_000;

/// An over-estimate of what the host ranges of `text` expand to: the sum over lines of the
/// product of each line's `[a:b]` / `[a:b:step]` brackets, and the largest line's count.
fn range_hosts(text: &[u8]) -> (u64, u64) {
    fn one(inner: &[u8]) -> Option<u64> {
        let inner = std::str::from_utf8(inner).ok()?;
        let parts: Vec<&str> = inner.split(':').map(str::trim).collect();
        let (start, end, step) = match parts[..] {
            [a, b] => (a, b, "1"),
            [a, b, s] => (a, b, s),
            _ => return None,
        };
        let step = step.parse::<u64>().unwrap_or(1).max(1);
        match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(a), Ok(b)) => Some((b.saturating_sub(a) / step).saturating_add(1)),
            _ => Some(26), // letters, or something the parser will refuse
        }
    }
    let (mut total, mut largest) = (0u64, 0u64);
    for line in text.split(|&b| b == b'\n') {
        let (mut count, mut ranged, mut rest) = (1u64, false, line);
        while let Some(open) = rest.iter().position(|&b| b == b'[') {
            let after = &rest[open + 1..];
            let Some(close) = after.iter().position(|&b| b == b']') else {
                break;
            };
            if let Some(n) = one(&after[..close]) {
                count = count.saturating_mul(n);
                ranged = true;
            }
            rest = &after[close + 1..];
        }
        if ranged {
            total = total.saturating_add(count);
            largest = largest.max(count);
        }
    }
    (total, largest)
}

/// An inventory file (`name` decides INI or YAML by its extension), then what the other crates
/// ask of it. After a NUL, the input is a `--limit` pattern applied to it.
pub fn inventory(data: &[u8], name: &str) {
    let (text, limit) = split_last_nul(data);
    let (total, largest) = range_hosts(text);
    if total > MAX_FUZZED_HOSTS && largest <= INVENTORY_MAX_HOSTS {
        return;
    }
    let path = scratch_file(name, text);
    let Ok(inventory) = virtfleet_inventory::load_inventory(&path) else {
        return;
    };
    let hosts = inventory.hosts();
    for host in hosts.iter().take(ASKED_PER_INPUT) {
        let vars = inventory.host_vars(host);
        for value in vars.values().take(8) {
            let _ = virtfleet_inventory::truthy(value);
        }
        let _ = inventory.groups_of(host);
    }
    for group in inventory.group_names().iter().take(ASKED_PER_INPUT) {
        let members = inventory
            .group_hosts(group)
            .expect("a listed group has hosts");
        assert!(
            members.len() <= hosts.len(),
            "group {group:?} has hosts not listed"
        );
    }
    if let Some(pattern) = limit.and_then(|p| std::str::from_utf8(p).ok()) {
        if let Ok(selected) = inventory.select(hosts, pattern) {
            assert!(selected.len() <= hosts.len());
        }
    }
}

/// The Kolla playbook the vars are resolved for (its defaults take part in the rendering).
fn playbook() -> &'static virtfleet_plan::Playbook {
    static PLAYBOOK: OnceLock<virtfleet_plan::Playbook> = OnceLock::new();
    PLAYBOOK.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks/kolla.yml");
        virtfleet_plan::load_playbook(&path).expect("playbooks/kolla.yml loads")
    })
}

/// A vars file such as globals.yml or passwords.yml, loaded, then resolved for one host as
/// planning does (defaults, magic variables, `{{ }}` values rendered in dependency order).
pub fn vars(data: &[u8]) {
    let path = scratch_file("globals.yml", data);
    let Ok(vars) = virtfleet_inventory::load_vars_file(&path) else {
        return;
    };
    let input = virtfleet_plan::PlanInput {
        playbook: playbook(),
        host: "compute01",
        vars: &vars,
        configdir: Path::new("/etc/kolla"),
        facts: None,
    };
    let _ = virtfleet_plan::resolve_vars(&input);
}

/// Fixed so runs are reproducible: 2026-01-01T00:00:00Z.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("a valid time")
}

/// Up to seven NUL-separated parts: CA bundle, server cert, server key, client cert, client
/// key, migration hostname, migration address. A part that is absent is `None` (not checked);
/// one that is present but empty is an empty file.
pub fn pki(data: &[u8]) {
    use virtfleet_pki::{CertFile, HostCerts, Role};
    let parts: Vec<&[u8]> = data.splitn(7, |&b| b == 0).collect();
    for part in &parts[..parts.len().min(5)] {
        if let Ok(certs) = virtfleet_pki::parse_certs(part) {
            for cert in certs {
                assert_eq!(
                    cert.fingerprint_sha256,
                    virtfleet_pki::fingerprint_sha256(&cert.der)
                );
                let _ = cert.days_left(now());
                // Printed by `certs show` / `certs expiry`: escaped like findings.
                for text in [&cert.subject, &cert.issuer]
                    .into_iter()
                    .chain(&cert.dns_names)
                {
                    assert!(
                        !text.chars().any(char::is_control),
                        "raw control in {text:?}"
                    );
                }
            }
        }
    }
    let part = |i: usize| parts.get(i).copied();
    if let (Some(cert), Some(key)) = (part(1), part(2)) {
        let _ = virtfleet_pki::key_matches_certificate(cert, key);
    }
    if let (Some(leaf), Some(ca)) = (part(3), part(0)) {
        let _ = virtfleet_pki::signed_by_any(leaf, ca);
    }
    let mut host = HostCerts::new("compute01");
    for (i, role) in Role::ALL.into_iter().enumerate() {
        if let Some(bytes) = part(i) {
            host.set_file(role, CertFile::new(format!("/etc/kolla/{i}.pem"), bytes));
        }
    }
    let text = |i: usize| part(i).map(|b| String::from_utf8_lossy(b).into_owned());
    host.migration_hostname = text(5);
    host.migration_address = text(6);
    for finding in virtfleet_pki::validate_host(&host, now(), 30) {
        // Findings reach terminals: nothing in them may act on one.
        assert!(
            !finding.message.chars().any(char::is_control),
            "control character in {:?}",
            finding.message
        );
    }
}

/// Paths asked for in the `parse_files` checks.
const PATHS: [&str; 3] = ["/etc/kolla/nova-libvirt/a", "/b c", "/c"];

/// Probe output as the engine reads it (lossy UTF-8, as SSH output is decoded), and the same
/// bytes as framed file reads for one to three paths.
pub fn probe(data: &[u8]) {
    use virtfleet_engine::state::{HostState, Marker};
    let state = HostState::parse(&String::from_utf8_lossy(data));
    for marker in state.markers.values() {
        // What virtfleet writes as a marker reads back as itself.
        assert_eq!(Marker::parse(&marker.render()).as_ref(), Some(marker));
    }
    for n in 1..=PATHS.len() {
        let paths = &PATHS[..n];
        let Some(files) = virtfleet_engine::wire::parse_files(data, paths) else {
            continue;
        };
        // Accepted output is exactly the frames of what was read: nothing skipped or guessed.
        let mut framed = Vec::new();
        for path in paths {
            match &files[*path] {
                None => framed.extend_from_slice(b"A\n"),
                Some(file) => {
                    let header = format!(
                        "R {} {:x} {} {}\n",
                        file.content.len(),
                        file.st_mode,
                        file.owner,
                        file.group
                    );
                    framed.extend_from_slice(header.as_bytes());
                    framed.extend_from_slice(&file.content);
                    framed.push(b'\n');
                }
            }
        }
        assert_eq!(
            framed, data,
            "parse_files accepted output that is not its frames"
        );
    }
}

/// `k` or anything else (INI) as the first byte, then the host's file, NUL, the rendered
/// template (no NUL: no host file). The template is UTF-8 in real use (minijinja's output).
pub fn merge(data: &[u8]) {
    use virtfleet_plan::Merge;
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let kind = if kind == b'k' {
        Merge::KollaConfig
    } else {
        Merge::Ini
    };
    let (current, rendered) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    if std::str::from_utf8(rendered).is_err() {
        return;
    }
    let Ok(merged) = virtfleet_plan::merge(kind, current, rendered) else {
        return;
    };
    // Documented: a file that already holds every owned setting comes back byte for byte, so
    // a re-run changes nothing.
    let again = virtfleet_plan::merge(kind, Some(&merged), rendered)
        .unwrap_or_else(|e| panic!("merging the merged file again fails: {e}"));
    assert!(
        again == merged,
        "merge is not idempotent:\nmerged once: {:?}\nmerged again: {:?}",
        String::from_utf8_lossy(&merged),
        String::from_utf8_lossy(&again)
    );
}
