//! The OpenSSH client configuration (`~/.ssh/config`, or the file of `ssh -F`), as far as it
//! says how to reach a host: `Host` blocks (patterns with `*`, `?` and `!`), and in them
//! `HostName`, `User`, `Port`, `IdentityFile`, `ProxyJump`, `StrictHostKeyChecking`,
//! `UserKnownHostsFile` and `ConnectTimeout`. As in `ssh`, the first value found for a
//! keyword wins, reading the file top to bottom. Other keywords are OpenSSH's business;
//! `Match` blocks and `Include` are not read, and said so (see [`SshConfig::skipped`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A parsed client configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshConfig {
    path: PathBuf,
    blocks: Vec<Block>,
    /// `file:line: what` for each line not read (`Match`, `Include`).
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    /// None: the lines before the first `Host` (they apply to every host).
    patterns: Option<Vec<String>>,
    settings: Vec<(String, String, usize)>,
}

/// `StrictHostKeyChecking`: how an unknown or changed host key is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeys {
    /// `yes` or `ask`: only keys in known_hosts.
    Yes,
    /// `accept-new`: unknown keys are recorded; changed ones still refused.
    AcceptNew,
    /// `no` or `off`: OpenSSH would accept anything. virtfleet does not.
    No,
}

/// What the configuration says for one host (`None`: nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    pub proxy_jump: Option<String>,
    /// Read as `ssh -W %h:%p` jump only (the caller refuses any other command).
    pub proxy_command: Option<String>,
    pub strict_host_keys: Option<StrictHostKeys>,
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
}

impl SshConfig {
    /// Reads `path`; every problem names the file and line. As `ssh`, refuses a file that
    /// someone other than its owner (root or this user) may write: it says where root's
    /// connections go and which host keys they trust.
    pub fn load(path: &Path) -> Result<SshConfig, String> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: geteuid(2) has no preconditions.
        let me = unsafe { libc::geteuid() };
        if (meta.uid() != 0 && meta.uid() != me) || meta.mode() & 0o022 != 0 {
            return Err(format!(
                "{}: bad owner or permissions (owned by uid {}, mode {:04o}): it must belong \
                 to root or you and be writable by no one else",
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        SshConfig::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<SshConfig, String> {
        let mut config = SshConfig {
            path: path.to_path_buf(),
            blocks: vec![Block {
                patterns: None,
                settings: Vec::new(),
            }],
            skipped: Vec::new(),
        };
        let mut in_match = false;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let at = || format!("{}:{number}", path.display());
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, value) = split_keyword(line)
                .ok_or_else(|| format!("{}: {line:?} is not `Keyword value`", at()))?;
            let keyword = keyword.to_ascii_lowercase();
            match keyword.as_str() {
                "host" => {
                    in_match = false;
                    let patterns: Vec<String> =
                        words(value).map_err(|e| format!("{}: {e}", at()))?;
                    if patterns.is_empty() {
                        return Err(format!("{}: Host without a pattern", at()));
                    }
                    config.blocks.push(Block {
                        patterns: Some(patterns),
                        settings: Vec::new(),
                    });
                }
                "match" => {
                    in_match = true;
                    config
                        .skipped
                        .push(format!("{}: Match blocks are not read", at()));
                }
                "include" => config
                    .skipped
                    .push(format!("{}: Include is not read", at())),
                _ if in_match => {}
                // A command: the rest of the line, as ssh hands it to a shell.
                "proxycommand" => {
                    let block = config.blocks.last_mut().expect("one block at least");
                    block.settings.push((keyword, value.to_string(), number));
                }
                _ => {
                    // Every other keyword read takes one value (the first of a list).
                    let value = words(value)
                        .map_err(|e| format!("{}: {e}", at()))?
                        .into_iter()
                        .next()
                        .unwrap_or_default();
                    let block = config.blocks.last_mut().expect("one block at least");
                    block.settings.push((keyword, value, number));
                }
            }
        }
        Ok(config)
    }

    /// The settings for `host` (the name given to `ssh`: Ansible's `ansible_host`, else the
    /// inventory name), first value of each keyword wins.
    pub fn host(&self, host: &str) -> Result<HostConfig, String> {
        let mut found = HostConfig::default();
        let mut seen: Vec<&str> = Vec::new();
        for block in &self.blocks {
            if !block.patterns.as_ref().is_none_or(|p| matches(p, host)) {
                continue;
            }
            for (keyword, value, line) in &block.settings {
                let at = || format!("{}:{line}", self.path.display());
                // IdentityFile adds to a list; every other keyword's first value wins.
                if keyword != "identityfile" && seen.contains(&keyword.as_str()) {
                    continue;
                }
                seen.push(keyword);
                // A ProxyCommand's %h and %p are the connection's (`-W %h:%p`), kept as written.
                let value = match keyword.as_str() {
                    "proxycommand" => value.clone(),
                    _ => expand_tokens(value, host),
                };
                match keyword.as_str() {
                    "hostname" => found.hostname = Some(value),
                    "user" => found.user = Some(value),
                    "port" => {
                        let port = value.parse().ok().filter(|p| *p > 0);
                        found.port = Some(port.ok_or_else(|| format!("{}: Port {value:?}", at()))?);
                    }
                    "identityfile" => found.identity_files.push(expand_home(&value)),
                    "proxyjump" => found.proxy_jump = Some(value),
                    "proxycommand" => found.proxy_command = Some(value),
                    "stricthostkeychecking" => {
                        found.strict_host_keys = Some(match value.to_ascii_lowercase().as_str() {
                            "yes" | "ask" => StrictHostKeys::Yes,
                            "accept-new" => StrictHostKeys::AcceptNew,
                            "no" | "off" => StrictHostKeys::No,
                            _ => return Err(format!("{}: StrictHostKeyChecking {value:?}", at())),
                        })
                    }
                    // Of a list, the first file: the one read first and written to.
                    "userknownhostsfile" => {
                        let path = expand_home(&value);
                        if !path.is_absolute() {
                            return Err(format!(
                                "{}: UserKnownHostsFile {value:?}: virtfleet checks every host \
                                 key against a file named by an absolute path",
                                at()
                            ));
                        }
                        found.known_hosts = Some(path);
                    }
                    "connecttimeout" => {
                        let secs = value.parse::<u64>().ok().filter(|s| (1..=3600).contains(s));
                        let secs = secs.ok_or_else(|| {
                            format!("{}: ConnectTimeout {value:?} (1 to 3600 seconds)", at())
                        })?;
                        found.connect_timeout = Some(Duration::from_secs(secs));
                    }
                    _ => {}
                }
            }
        }
        Ok(found)
    }
}

/// `%h` the host, `%%` a percent sign; other tokens are left as written.
fn expand_tokens(value: &str, host: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('%', Some('h')) => {
                out.push_str(host);
                chars.next();
            }
            ('%', Some('%')) => {
                out.push('%');
                chars.next();
            }
            (c, _) => out.push(c),
        }
    }
    out
}

/// `Keyword value` or `Keyword=value` (the value may be empty: checked per keyword).
fn split_keyword(line: &str) -> Option<(&str, &str)> {
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    if end == 0 {
        return None;
    }
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    Some((keyword, rest))
}

/// Whitespace-separated words, `"..."` quoting one with spaces.
fn words(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let (word, after) = quoted
                .split_once('"')
                .ok_or_else(|| format!("{value:?}: no closing quote"))?;
            out.push(word.to_string());
            rest = after.trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    Ok(out)
}

/// A `Host` line matches when one of its patterns does and none of its `!` patterns does.
fn matches(patterns: &[String], host: &str) -> bool {
    let mut any = false;
    for pattern in patterns {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated, host) => return false,
            Some(_) => {}
            None => any |= glob(pattern, host),
        }
    }
    any
}

fn glob(pattern: &str, text: &str) -> bool {
    crate::known_hosts::glob_match(pattern.as_bytes(), text.as_bytes())
}

/// `~/x` means the operator's home, as in OpenSSH and Ansible.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# global
ConnectTimeout 7

Host bastion
    HostName 192.0.2.10
    User ops

Host compute* !compute9*
    ProxyJump ops@bastion:2222
    User=kolla
    Port 2200
    IdentityFile ~/.ssh/kolla
    StrictHostKeyChecking accept-new
    UserKnownHostsFile \"/etc/kolla/known hosts\" /tmp/other

Match host compute01
    User ignored

Host *
    User fallback
    IdentityFile /id_%h
    Port 22
";

    fn config() -> SshConfig {
        SshConfig::parse(Path::new("/c"), CONFIG).unwrap()
    }

    #[test]
    fn first_value_wins_over_matching_blocks_and_identity_files_add_up() {
        let c = config().host("compute01").unwrap();
        assert_eq!(c.user.as_deref(), Some("kolla"));
        assert_eq!(c.port, Some(2200));
        assert_eq!(c.proxy_jump.as_deref(), Some("ops@bastion:2222"));
        assert_eq!(c.strict_host_keys, Some(StrictHostKeys::AcceptNew));
        assert_eq!(c.known_hosts, Some(PathBuf::from("/etc/kolla/known hosts")));
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(
            c.identity_files.last(),
            Some(&PathBuf::from("/id_compute01"))
        );
        assert_eq!(c.identity_files.len(), 2);
        assert_eq!(c.hostname, None);
        assert_eq!(config().skipped, ["/c:16: Match blocks are not read"]);
    }

    #[test]
    fn patterns_glob_and_negate() {
        let c = config();
        assert_eq!(
            c.host("compute91").unwrap().user.as_deref(),
            Some("fallback")
        );
        assert_eq!(c.host("COMPUTE01").unwrap().user.as_deref(), Some("kolla"));
        let b = c.host("bastion").unwrap();
        assert_eq!(
            (b.hostname.as_deref(), b.user.as_deref()),
            (Some("192.0.2.10"), Some("ops"))
        );
        assert!(glob("c?mp*e0*", "compute01") && !glob("c?mp", "compute"));
        assert!(glob("*", "") && !glob("a*b", "ac"));
        assert!(glob("COMP*.Example", "compute01.example") && !glob("comp?", "comp"));
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let err = SshConfig::parse(Path::new("/c"), "Host a\n  Port nope\n")
            .unwrap()
            .host("a")
            .unwrap_err();
        assert_eq!(err, "/c:2: Port \"nope\"");
        let err = SshConfig::parse(Path::new("/c"), "Host\n").unwrap_err();
        assert_eq!(err, "/c:1: Host without a pattern");
        let err = SshConfig::parse(Path::new("/c"), "Host a\nUser \"x\n").unwrap_err();
        assert!(err.starts_with("/c:2:"), "{err}");
        for bad in [
            "UserKnownHostsFile none",
            "UserKnownHostsFile kh",
            "ConnectTimeout 0",
        ] {
            let config = SshConfig::parse(Path::new("/c"), &format!("Host a\n{bad}\n")).unwrap();
            assert!(config.host("a").is_err(), "{bad}");
        }
        assert_eq!(expand_tokens("%%h-%h%", "x"), "%h-x%");
    }

    #[test]
    fn a_file_others_may_write_is_refused_as_ssh_refuses_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "Host a\n  User b\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SshConfig::load(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        let err = SshConfig::load(&path).unwrap_err();
        assert!(err.contains("bad owner or permissions"), "{err}");
    }
}
