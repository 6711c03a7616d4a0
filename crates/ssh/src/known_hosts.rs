//! OpenSSH `known_hosts` files: host lookup (plain, `[host]:port`, wildcard, negated and
//! hashed `|1|` patterns), a verdict that names the file line, and appending newly accepted keys.
//!
//! A host is looked up under exactly one name, the one `ssh` would use: the dialled host
//! (`[host]:port` off port 22), or its `HostKeyAlias` when one is configured. Lines marked
//! `@cert-authority` never vouch for a plain key; `@revoked` lines refuse their key for the
//! hosts they name.
//!
//! russh ships `check_known_hosts_path`, but it miscounts lines after comments, fails the whole
//! check on one unparsable line and ignores markers, wildcards and negation; an operator told
//! "line N" must find the key on line N, so we parse the file ourselves (ssh-key parses entries).

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use russh::keys::{Algorithm, PublicKey};
use sha1::Sha1;

/// What a known_hosts file says about the key a server presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A line for this host records exactly this key.
    Trusted,
    /// No line mentions this host.
    Unknown,
    /// Lines mention this host, but with other keys; `line` is the first one (1-based).
    Changed { line: usize },
    /// The key is marked `@revoked` for this host at `line`.
    Revoked { line: usize },
}

/// The parsed entries of one known_hosts file, each with its 1-based line number.
#[derive(Debug, Default)]
pub(crate) struct KnownHosts {
    entries: Vec<(usize, Entry)>,
}

impl KnownHosts {
    pub(crate) fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .enumerate()
            .filter_map(|(index, line)| {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    return None;
                }
                // ssh-key splits fields on single spaces; OpenSSH accepts any run of blanks.
                let normalized = line.split_whitespace().collect::<Vec<_>>().join(" ");
                // Like OpenSSH, skip lines we cannot parse (unknown key types, typos) instead of
                // refusing every host because of one of them.
                Entry::from_str(&normalized)
                    .ok()
                    .map(|entry| (index + 1, entry))
            })
            .collect();
        KnownHosts { entries }
    }

    /// Reads `path`; a missing file is an empty one (every host is unknown).
    pub(crate) fn load(path: &Path) -> io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(err) => Err(err),
        }
    }

    /// Judges `key` for the host known as `name` (see [`lookup_name`]), as OpenSSH's
    /// `check_key_in_hostkeys` does: only lines whose patterns match `name` count.
    pub(crate) fn check(&self, name: &str, key: &PublicKey) -> Verdict {
        let mut trusted = false;
        let mut same_type_mismatch = None;
        let mut first_mention = None;
        for (line, entry) in &self.entries {
            if !entry_matches(entry.host_patterns(), name) {
                continue;
            }
            let same_key = entry.public_key().key_data() == key.key_data();
            match entry.marker() {
                // Revocation wins over any line trusting the key.
                Some(Marker::Revoked) if same_key => return Verdict::Revoked { line: *line },
                // @cert-authority lines only vouch for host certificates, never a plain key.
                Some(_) => continue,
                None => {}
            }
            if same_key {
                trusted = true;
            } else if entry.public_key().algorithm() == key.algorithm() {
                same_type_mismatch.get_or_insert(*line);
            }
            first_mention.get_or_insert(*line);
        }
        if trusted {
            Verdict::Trusted
        } else if let Some(line) = same_type_mismatch {
            Verdict::Changed { line }
        } else if let Some(line) = first_mention {
            // Only keys of other types are recorded. We asked the server for those types first
            // (see `recorded_algorithms`), so it no longer has them: treat it as a change.
            Verdict::Changed { line }
        } else {
            Verdict::Unknown
        }
    }

    /// Key algorithms recorded for the host, so the handshake can ask for one we can verify.
    pub(crate) fn recorded_algorithms(&self, name: &str) -> Vec<Algorithm> {
        let mut algorithms: Vec<Algorithm> = Vec::new();
        for (_, entry) in &self.entries {
            if entry.marker().is_none() && entry_matches(entry.host_patterns(), name) {
                let algorithm = entry.public_key().algorithm();
                if !algorithms.contains(&algorithm) {
                    algorithms.push(algorithm);
                }
            }
        }
        algorithms
    }
}

/// The one name `ssh` looks a host up under (with `CheckHostIP no`, its default): the
/// `HostKeyAlias` when there is one, used as it is; else the dialled host, as `[host]:port`
/// off port 22. Lowercased, as ssh does with both.
pub(crate) fn lookup_name(address: &str, port: u16, alias: Option<&str>) -> String {
    match alias {
        Some(alias) => alias.to_ascii_lowercase(),
        None if port == 22 => address.to_ascii_lowercase(),
        None => format!("[{}]:{port}", address.to_ascii_lowercase()),
    }
}

/// Whether `name` can be written as a known_hosts host field that names only itself: a host
/// name, an IP address (IPv6 with a `%zone`) or the `[host]:port` form. Anything else
/// (blanks, newlines, `,`, `*`, `!`, a leading `|` or `@`) would change what the line means.
pub(crate) fn is_plain_entry_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]%".contains(&b))
}

fn entry_matches(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => hashed_name_matches(salt, hash, name),
        HostPatterns::Patterns(patterns) => patterns_match(patterns, name),
    }
}

/// OpenSSH semantics: some positive pattern matches and no negated (`!`) pattern does.
fn patterns_match(patterns: &[String], name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        let pattern = pattern.to_ascii_lowercase();
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob_match(negated.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else if glob_match(pattern.as_bytes(), name.as_bytes()) {
            matched = true;
        }
    }
    matched
}

/// `*` matches any run of characters, `?` exactly one, anything else itself, ASCII letters
/// in either case (host names compare so). OpenSSH's patterns, in known_hosts and in
/// ssh_config's `Host` lines.
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was and which text position it is currently absorbing up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// `|1|salt|hash` entries store HMAC-SHA1(salt, name).
fn hashed_name_matches(salt: &[u8], hash: &[u8; 20], name: &str) -> bool {
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(hash).is_ok()
}

/// Serialises appends from concurrent connections of this process.
static APPEND_LOCK: Mutex<()> = Mutex::new(());

/// Accepts a new host key: re-reads the file under a lock (another connection may have
/// recorded this host meanwhile) and appends `key` under `name` (the lookup name, nothing
/// else) only if the host is still unknown. Returns the verdict found before writing;
/// `Unknown` means the key was appended.
pub(crate) fn learn(path: &Path, name: &str, key: &PublicKey) -> io::Result<Verdict> {
    let _guard = APPEND_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !is_plain_entry_name(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to record a key under {name:?}: not a plain host name"),
        ));
    }
    let verdict = KnownHosts::load(path)?.check(name, key);
    if verdict != Verdict::Unknown {
        return Ok(verdict);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let mut line = String::new();
    // Keep a hand-edited file without a final newline from gluing two entries together.
    if file.seek(SeekFrom::End(-1)).is_ok() {
        let mut last = [0u8; 1];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            line.push('\n');
        }
    }
    let key_text = key
        .to_openssh()
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
    line.push_str(name);
    line.push(' ');
    line.push_str(key_text.trim_end());
    line.push('\n');
    // One write with O_APPEND, so other processes appending at the same time cannot interleave.
    file.write_all(line.as_bytes())?;
    Ok(Verdict::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAjX4xNSlf0Pmtm/oEdYsoVmO2qVbOcbJbTt9irZI9qj";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDi9m9L+ffe7bx+v/Y2gH+dwzzH6RovZW9X44dErNzaj";
    const KEY_ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCBtSaf7wd1coOY2B35B/E1aGRobcDKNSBZFpOdQITX28BNvbTxldLS0emzUeUVZ9pV03VpVSI+hUkuu6RW6YWw=";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).unwrap()
    }

    /// What a known_hosts file holding `text` says about `key_text` for `name`.
    fn verdict(text: &str, name: &str, key_text: &str) -> Verdict {
        KnownHosts::parse(text).check(name, &key(key_text))
    }

    #[test]
    fn lookup_name_is_the_dialled_host_or_the_alias_only() {
        assert_eq!(lookup_name("10.0.0.1", 22, None), "10.0.0.1");
        assert_eq!(
            lookup_name("Compute1.Lab", 2222, None),
            "[compute1.lab]:2222"
        );
        assert_eq!(lookup_name("::1", 2222, None), "[::1]:2222");
        // HostKeyAlias replaces host and port, as in OpenSSH.
        assert_eq!(lookup_name("10.0.0.1", 2222, Some("Compute1")), "compute1");
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match(b"*.example.net", b"a.example.net"));
        assert!(glob_match(b"10.0.0.?", b"10.0.0.7"));
        assert!(!glob_match(b"10.0.0.?", b"10.0.0.17"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*b*c", b"aXXbYYbc"));
        assert!(!glob_match(b"a*b*c", b"aXXbYYb"));
        assert!(glob_match(b"[*.lab]:2222", b"[c1.lab]:2222"));
        assert!(!glob_match(b"[*.lab]:2222", b"[c1.lab]:22"));
    }

    #[test]
    fn trusted_by_plain_bracketed_and_list_entries() {
        let text = format!(
            "# comment\n\nother {KEY_B}\n[10.0.0.1]:2222 {KEY_A}\nalpha,10.0.0.9  {KEY_B}\n"
        );
        let file = KnownHosts::parse(&text);
        assert_eq!(file.check("[10.0.0.1]:2222", &key(KEY_A)), Verdict::Trusted);
        assert_eq!(file.check("10.0.0.9", &key(KEY_B)), Verdict::Trusted);
        // Same host, other port: unknown.
        assert_eq!(file.check("10.0.0.1", &key(KEY_A)), Verdict::Unknown);
    }

    #[test]
    fn changed_key_reports_the_real_line_number() {
        let text = format!("# one\n\n# three\nunrelated {KEY_A}\n10.0.0.1 {KEY_B}\n");
        assert_eq!(
            verdict(&text, "10.0.0.1", KEY_A),
            Verdict::Changed { line: 5 }
        );
    }

    #[test]
    fn a_trusting_line_does_not_hide_a_changed_one_for_another_name() {
        // Only the lookup name counts: a line for another name neither trusts nor masks.
        let text = format!("10.0.0.1 {KEY_B}\ncompute1 {KEY_A}\n");
        assert_eq!(
            verdict(&text, "10.0.0.1", KEY_A),
            Verdict::Changed { line: 1 }
        );
    }

    #[test]
    fn only_other_key_types_recorded_counts_as_changed() {
        let file = KnownHosts::parse(&format!("10.0.0.1 {KEY_ECDSA}\n"));
        assert_eq!(
            file.check("10.0.0.1", &key(KEY_A)),
            Verdict::Changed { line: 1 }
        );
        assert_eq!(
            file.recorded_algorithms("10.0.0.1"),
            vec![key(KEY_ECDSA).algorithm()]
        );
    }

    #[test]
    fn negated_pattern_excludes_a_host() {
        let file = KnownHosts::parse(&format!("*.lab,!evil.lab {KEY_A}\n"));
        assert_eq!(file.check("good.lab", &key(KEY_A)), Verdict::Trusted);
        assert_eq!(file.check("evil.lab", &key(KEY_A)), Verdict::Unknown);
        // Pattern order does not matter, and a negated name never falls back to a wildcard.
        let file = KnownHosts::parse(&format!("!evil.lab,* {KEY_A}\n"));
        assert_eq!(file.check("evil.lab", &key(KEY_A)), Verdict::Unknown);
    }

    #[test]
    fn hashed_entries_match() {
        // Produced by `ssh-keygen -H` for host "example.com".
        let text =
            format!("|1|i6NVOhaN0v1Et4uTjvCCNoTMJGg=|OTzHotb6MS2vJgOQhHXJ+UMGblE= {KEY_B}\n");
        let file = KnownHosts::parse(&text);
        assert_eq!(file.check("example.com", &key(KEY_B)), Verdict::Trusted);
        assert_eq!(file.check("example.org", &key(KEY_B)), Verdict::Unknown);
    }

    #[test]
    fn revoked_wins_and_cert_authority_lines_are_ignored() {
        let text = format!("h {KEY_A}\n@revoked * {KEY_A}\n@cert-authority h {KEY_B}\n");
        let file = KnownHosts::parse(&text);
        assert_eq!(file.check("h", &key(KEY_A)), Verdict::Revoked { line: 2 });
        assert_eq!(file.check("h", &key(KEY_B)), Verdict::Changed { line: 1 });
        // A CA line alone trusts no plain key.
        let file = KnownHosts::parse(&format!("@cert-authority * {KEY_B}\n"));
        assert_eq!(file.check("h", &key(KEY_B)), Verdict::Unknown);
    }

    #[test]
    fn revocation_applies_to_the_hosts_its_line_names() {
        // As in OpenSSH, `@revoked` lines are matched against the host like any other line.
        let text = format!("h {KEY_A}\n@revoked other,!h {KEY_A}\n@revoked *.lab {KEY_A}\n");
        let file = KnownHosts::parse(&text);
        assert_eq!(file.check("h", &key(KEY_A)), Verdict::Trusted);
        assert_eq!(
            file.check("c1.lab", &key(KEY_A)),
            Verdict::Revoked { line: 3 }
        );
    }

    #[test]
    fn unparsable_lines_are_skipped() {
        let text = format!("garbage\nh ssh-unknown AAAA\n@bogus h {KEY_A}\nh {KEY_A}\n");
        assert_eq!(
            KnownHosts::parse(&text).check("h", &key(KEY_A)),
            Verdict::Trusted
        );
    }

    #[test]
    fn learn_appends_once_and_keeps_lines_separate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        let name = lookup_name("10.0.0.1", 2222, None);
        assert_eq!(learn(&path, &name, &key(KEY_A)).unwrap(), Verdict::Unknown);
        assert_eq!(learn(&path, &name, &key(KEY_A)).unwrap(), Verdict::Trusted);
        assert_eq!(
            learn(&path, &name, &key(KEY_B)).unwrap(),
            Verdict::Changed { line: 1 }
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("[10.0.0.1]:2222 {KEY_A}\n"));

        // A file without a final newline gets one before the new entry.
        std::fs::write(&path, format!("other {KEY_B}")).unwrap();
        learn(&path, &name, &key(KEY_A)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("other {KEY_B}\n[10.0.0.1]:2222 {KEY_A}\n"));
    }

    #[test]
    fn learn_refuses_names_that_would_be_patterns_or_extra_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        for name in [
            "",
            "a b",
            "h\n* ssh-ed25519 AAAA",
            "*",
            "a,b",
            "!h",
            "|1|x",
            "@revoked",
        ] {
            assert!(learn(&path, name, &key(KEY_A)).is_err(), "{name:?}");
        }
        assert!(!path.exists());
        assert!(is_plain_entry_name("[fe80::1%eth0]:2222"));
    }
}
